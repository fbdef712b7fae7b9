"""Seasonal pauses: a customer who buys from April to October every year is no lapsed buyer in
February. A wholesaler's coastal hotels had been listed as "churned already" at a February cut
with a 90-day lookback, and 34 of 83 ordered within the 90 days after it."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import ChurnDefinition
from features.labels import eligible_mask, lapsed_count, lapsed_customers
from tests.factories import make_tables

T = "2025-02-01"
CHURN = ChurnDefinition(
    mode="non_contractual", horizon_days=90, lookback_days=90, qualifying_events=("order",)
)


def _orders(customer: str, days: pd.DatetimeIndex) -> list[dict]:
    return [{"customer_id": customer, "at": d, "event": "order", "value": 1.0} for d in days]


def _season(year: int) -> pd.DatetimeIndex:
    return pd.date_range(f"{year}-04-07", f"{year}-10-27", freq="14D")


def seasonal_tables():
    """Five buyers of a seasonal business, as of T (also the Spark engine's test data)."""
    customers = [
        {"customer_id": c, "signup_at": "2022-01-01"}
        for c in ("seasonal", "left", "regular", "long_gone", "late_this_year")
    ]
    activity = (
        _orders("seasonal", _season(2023).append(_season(2024)))
        # a regular buyer who stopped in July: no pause a year before, churned
        + _orders("left", pd.date_range("2023-01-05", "2024-07-01", freq="10D"))
        + _orders("regular", pd.date_range("2023-01-05", "2025-01-30", freq="10D"))
        # seasonal in 2023, silent since: its pause now is longer than last year's
        + _orders("long_gone", _season(2023).append(pd.DatetimeIndex(["2024-04-10"])))
        # back a year ago after a pause, but stopped this year in July: paused longer now
        + _orders(
            "late_this_year",
            _season(2023).append(pd.date_range("2024-04-07", "2024-07-01", freq="14D")),
        )
    )
    return make_tables(customers, activity)


@pytest.fixture
def tables():
    return seasonal_tables()


def _ids(tables, mask) -> set[str]:
    return set(tables.customers["customer_id"][mask])


def test_a_customer_back_after_the_same_pause_last_year_is_scored(tables):
    assert _ids(tables, eligible_mask(tables, T, CHURN)) == {"seasonal", "regular"}
    lapsed = lapsed_customers(tables, T, CHURN)
    assert set(lapsed["customer_id"]) == {"left", "long_gone", "late_this_year"}
    assert lapsed_count(tables, T, CHURN) == 3


def test_a_pause_shorter_than_the_lookback_last_year_is_no_season(tables):
    """Back a year ago within the horizon, but from a pause the lookback holds: no seasonal
    pause. With a 200-day lookback the winter pause (about 160 days) is inside it: the seasonal
    customer is scored by its recent orders, and one silent for 216 days stays lapsed."""
    longer = ChurnDefinition(
        mode="non_contractual", horizon_days=90, lookback_days=200, qualifying_events=("order",)
    )
    assert _ids(tables, eligible_mask(tables, T, longer)) == {"seasonal", "regular"}
    assert "late_this_year" in set(lapsed_customers(tables, T, longer)["customer_id"])


def test_without_a_year_of_history_nothing_changes():
    customers = [{"customer_id": "a", "signup_at": "2024-06-01"}]
    activity = _orders("a", pd.date_range("2024-06-02", "2024-09-30", freq="7D"))
    tables = make_tables(customers, activity)
    assert not eligible_mask(tables, T, CHURN).any()
    assert lapsed_count(tables, T, CHURN) == 1


def test_the_season_ahead_as_it_went_a_year_before_is_a_feature():
    """An Alpine rental chain's December customers: winter guests come back in the same weeks
    every year, summer-only bikers never in winter. The active days in the horizon after T a
    year before say which (an analyst's model with it 0.808, the project without it 0.754)."""
    from dataclasses import replace

    from features.config import FeatureConfig
    from features.dictionary import describe
    from features.signals import build_features, resolve_config

    tables = seasonal_tables()
    config = resolve_config(tables, FeatureConfig(churn=CHURN), until=T)
    assert 365 in config.long_windows
    rows = build_features(tables, T, config).set_index("customer_id")
    ahead = rows["active_days_next_90d_last_year"]
    # 365 days before T, 2 February 2024 (a leap year), to 1 May: back on 7 and 21 April
    assert ahead.to_dict() == {"seasonal": 2.0, "regular": 9.0}
    assert describe("active_days_next_90d_last_year").text(0.0, {}) == (
        "Not active in the 90 days after this date a year before"
    )
    # no year's window in the configuration: no such feature
    short = replace(config, long_windows=(180,))
    assert "active_days_next_90d_last_year" not in build_features(tables, T, short)
    # a customer whose first order came after that window has no season to compare: missing
    newcomer = make_tables(
        [
            {"customer_id": "new", "signup_at": "2024-07-01"},
            {"customer_id": "old", "signup_at": "2022-01-01"},
        ],
        _orders("new", pd.date_range("2024-07-02", "2025-01-30", freq="7D"))
        + _orders("old", pd.date_range("2023-01-05", "2025-01-30", freq="7D")),
    )
    both = build_features(newcomer, T, config).set_index("customer_id")
    assert pd.isna(both.loc["new", "active_days_next_90d_last_year"])
    assert both.loc["old", "active_days_next_90d_last_year"] == 12.0  # 8 Feb .. 25 Apr 2024
