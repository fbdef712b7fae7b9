"""observed_until: no label reaches past the last instant at which churn is observed."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import ChurnDefinition, FeatureConfig, config_to_toml, feature_config_from_file
from features.dataset import build_training_set
from features.labels import build_labels, label_mask, last_labeled_date
from tests.factories import make_tables
from training.config import TrainConfig
from training.pipeline import default_dates

CUSTOMERS = [
    {"customer_id": "stays", "signup_at": "2024-01-01"},
    {"customer_id": "early", "signup_at": "2024-01-01", "churned_at": "2024-04-20"},
    # Recorded after the export stopped recording cancellations reliably.
    {"customer_id": "late", "signup_at": "2024-01-01", "churned_at": "2024-05-20"},
]
ACTIVITY = [
    {"customer_id": "stays", "at": "2024-06-01", "event": "login", "value": 1.0},  # data end
]


@pytest.fixture
def tables():
    return make_tables(CUSTOMERS, ACTIVITY)


def test_observation_dates_whose_horizon_runs_past_observed_until_are_refused(tables):
    churn = ChurnDefinition(horizon_days=30, observed_until="2024-05-01")
    labels = build_labels(tables, "2024-04-01", churn)  # [04-01, 05-01): fully observed
    assert labels.set_index("customer_id")["churned"].to_dict() == {
        "stays": 0,
        "early": 1,
        "late": 0,
    }
    with pytest.raises(
        ValueError,
        match=r"2024-04-02 needs churn observed until 2024-05-02.*observed_until\) 2024-05-01"
        r".*use observation dates up to 2024-04-01",
    ):
        build_labels(tables, "2024-04-02", churn)
    # Without observed_until the data's end decides: 2024-05-01 works.
    build_labels(tables, "2024-05-01", ChurnDefinition(horizon_days=30))
    with pytest.raises(ValueError, match="use observation dates up to 2024-04-01"):
        build_training_set(tables, ["2024-03-01", "2024-04-15"], FeatureConfig(churn=churn))


def test_a_churn_date_after_observed_until_does_not_count(tables):
    churn = ChurnDefinition(horizon_days=30, observed_until="2024-05-10")
    counted = label_mask(tables, "2024-05-01", churn)  # window [05-01, 05-31) reaches past it
    assert counted.tolist() == [False, False, False]
    unbounded = label_mask(tables, "2024-05-01", ChurnDefinition(horizon_days=30))
    assert unbounded.tolist() == [False, False, True]


def test_observed_until_later_than_the_data_is_bounded_by_the_data_end(tables):
    churn = ChurnDefinition(horizon_days=30, observed_until="2024-12-31")
    assert last_labeled_date(tables, churn) == pd.Timestamp("2024-05-02")
    with pytest.raises(ValueError, match="the data ends at 2024-06-01"):
        build_labels(tables, "2024-05-03", churn)


def test_observed_until_the_day_after_the_last_record_counts_that_day(tables):
    """A cut's export holds records up to the evening before the cut; observed until the cut
    (the README's advice) had fallen back to the last record and lost a day of labels."""
    evening = make_tables(
        CUSTOMERS, [{**ACTIVITY[0], "at": "2024-06-01 23:55"}]
    )  # data end: the evening before the cut
    churn = ChurnDefinition(horizon_days=30, observed_until="2024-06-02")
    assert last_labeled_date(evening, churn) == pd.Timestamp("2024-05-03")
    later = ChurnDefinition(horizon_days=30, observed_until="2024-06-03")  # a day beyond
    assert last_labeled_date(evening, later) == pd.Timestamp("2024-05-02")


def test_training_dates_by_default_end_where_churn_is_observed(tables):
    config = FeatureConfig().with_churn(horizon_days=30, observed_until="2024-05-01")
    dates = default_dates(tables, config, TrainConfig(date_from="2024-02-01", every_days=10))
    assert dates[-1] <= pd.Timestamp("2024-04-01") < dates[-1] + pd.Timedelta(days=10)


def test_observed_until_is_a_date_in_toml_or_text(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[features.churn]\nobserved_until = 2024-05-01\n")  # a TOML date
    config = feature_config_from_file(path)
    assert config.churn.observed_until == "2024-05-01"
    path.write_text(config_to_toml(config))  # written back as text, read the same
    assert feature_config_from_file(path) == config
    for bad in ("2024-05-01 12:00", "May 2024", "2024-02-30", 20240501):
        with pytest.raises(ValueError, match="observed_until must be a date"):
            ChurnDefinition(observed_until=bad)


def test_default_dates_start_where_the_label_windows_hold_a_recorded_churn():
    """A few stray activity rows a year before the export records any cancellation would add
    months of dates in which nobody ever left (a KKBox-shaped export: 11 months, 2.1 %
    predicted against 3.4 % churned)."""
    customers = [{"customer_id": f"c{i}", "signup_at": "2023-01-01"} for i in range(4)]
    customers[0]["churned_at"] = "2024-03-10"
    activity = [
        {"customer_id": "c1", "at": "2023-01-05", "event": "login", "value": 1.0},  # stray
        *({"customer_id": f"c{i}", "at": f"2024-0{m}-02", "event": "login", "value": 1.0}
          for i in range(1, 4) for m in range(1, 8)),
    ]  # fmt: skip
    tables = make_tables(customers, activity)
    config = FeatureConfig().with_churn(horizon_days=30)
    dates = default_dates(tables, config, TrainConfig(every_days=7))
    # The first date whose window [T, T + 30 days) holds 2024-03-10.
    assert dates[0] > pd.Timestamp("2024-02-09") and dates[0] <= pd.Timestamp("2024-03-10")
    assert dates[-1] == pd.Timestamp("2024-06-02")
    # Non-contractual churn has no recorded churn date: the warm-up alone decides.
    shop = config.with_churn(mode="non_contractual", lookback_days=60)
    assert default_dates(tables, shop, TrainConfig(every_days=7))[0] < pd.Timestamp("2023-12-01")
