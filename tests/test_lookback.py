"""The non-contractual lookback, when not configured, comes from the data: long enough for the
customers' typical gap between active days, in whole weeks, within a sane range."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.config import FeatureConfig, config_to_toml, feature_config_from_file
from features.dataset import build_training_set
from features.labels import (
    DEFAULT_LOOKBACK_DAYS,
    LOOKBACK_RANGE,
    data_lookback_days,
    eligible_mask,
    lookback_from_gaps,
    resolve_lookback,
)
from tests.factories import make_tables


def test_lookback_is_a_high_quantile_of_typical_gaps_in_whole_weeks():
    gaps = np.r_[np.full(80, 10.0), np.full(20, 38.0), np.nan]  # NaN: one active day only
    assert lookback_from_gaps(gaps) == 42  # the 0.9 quantile, 38 days, rounded up to 6 weeks
    gaps = np.r_[np.full(90, 10.0), np.full(10, 60.0)]
    assert lookback_from_gaps(gaps) == 28  # 15 days (interpolated) is 3 weeks: at least 4
    assert lookback_from_gaps(np.full(20, 40.0)) == 42
    assert lookback_from_gaps(np.full(20, 2.0)) == LOOKBACK_RANGE[0]  # daily use: 4 weeks
    assert lookback_from_gaps(np.full(20, 900.0)) == LOOKBACK_RANGE[1]
    assert lookback_from_gaps(np.array([np.nan, np.nan])) == DEFAULT_LOOKBACK_DAYS


def shop(every_days: dict[str, int], until: str = "2024-06-01"):
    """Customers buying every n days from 2024-01-01 until `until` (exclusive)."""
    customers = [{"customer_id": c, "signup_at": "2023-12-01"} for c in every_days]
    activity = [
        {"customer_id": c, "at": day, "event": "purchase", "value": 1.0}
        for c, step in every_days.items()
        for day in pd.date_range("2024-01-01", until, freq=f"{step}D", inclusive="left")
    ]
    return make_tables(customers, activity)


def test_the_lookback_is_never_shorter_than_the_horizon():
    """Months of history hide the long gaps: weekly and monthly buyers alone give 35 days, and
    with a 90-day horizon customers who bought 40 days ago were "churned already"."""
    assert lookback_from_gaps(np.full(20, 30.0)) == 35
    assert lookback_from_gaps(np.full(20, 30.0), horizon_days=90) == 90
    assert lookback_from_gaps(np.full(20, 200.0), horizon_days=90) == 203  # longer gaps: kept
    assert lookback_from_gaps(np.array([np.nan]), horizon_days=120) == 120
    tables = shop({"weekly": 7, "monthly": 30}, until="2024-04-20")  # last orders in April
    churn = FeatureConfig().with_churn(mode="non_contractual", horizon_days=90).churn
    resolved = resolve_lookback(tables, churn, "2024-06-01")
    assert resolved.lookback_days == 90
    assert eligible_mask(tables, "2024-06-01", resolved).all()
    assert not eligible_mask(tables, "2024-06-01", replace(churn, lookback_days=35)).any()


def test_the_data_lookback_follows_the_customers_rhythm_before_the_date():
    tables = shop({"weekly": 7, "monthly": 30, "bimonthly": 60})
    # Median gaps 7, 30, 60: the 0.9 quantile is 54 days, so 8 weeks.
    assert data_lookback_days(tables, ("purchase",), "2024-06-01") == 56
    # As of 2024-02-01 the bimonthly customer has bought once: gaps 7 and 30 only.
    assert data_lookback_days(tables, ("purchase",), "2024-02-01") == 28


def test_the_resolved_lookback_is_recorded_and_decides_who_is_scored():
    tables = shop({"weekly": 7, "monthly": 30, "bimonthly": 60})
    config = FeatureConfig().with_churn(mode="non_contractual", horizon_days=7)
    # On 2024-04-25 the bimonthly customer last bought 55 days ago (2024-03-01).
    frame, resolved = build_training_set(tables, ["2024-04-25"], config)
    assert resolved.churn.lookback_days == 56
    assert set(frame["customer_id"]) == {"weekly", "monthly", "bimonthly"}
    # It travels with the model: the configuration's dict form reads back the same.
    assert FeatureConfig.from_dict(resolved.to_dict()) == resolved
    short = replace(resolved.churn, lookback_days=28)
    assert eligible_mask(tables, "2024-04-25", short).tolist() == [True, True, False]


def test_a_configured_lookback_is_kept(tmp_path):
    tables = shop({"weekly": 7, "monthly": 30})
    config = FeatureConfig().with_churn(mode="non_contractual", lookback_days=90)
    _, resolved = build_training_set(tables, ["2024-05-01"], config.with_churn(horizon_days=7))
    assert resolved.churn.lookback_days == 90
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(FeatureConfig().with_churn(mode="non_contractual")))
    assert feature_config_from_file(path).churn.lookback_days is None  # left to the data


def test_check_says_the_lookback_training_will_use(tmp_path):
    """`churn check` resolved the lookback at the end of the data, training at its last
    observation date: a shop's check said 119 days where the model scored with 105. A buyer
    whose second order comes after the last training date widens the gaps only at the end."""
    from typer.testing import CliRunner

    from churn.cli import app
    from features.io import write_tables
    from training.config import TrainConfig
    from training.pipeline import default_dates

    buyers = {f"w{i}": 7 for i in range(5)} | {f"m{i}": 30 for i in range(5)}
    tables = shop(buyers)
    late = pd.DataFrame(
        {"customer_id": [f"late{i}" for i in range(5) for _ in range(2)],
         "at": [pd.Timestamp(d) for _ in range(5) for d in ("2024-01-02", "2024-05-25")],
         "event": "purchase", "value": 1.0}
    )  # fmt: skip
    tables = make_tables(
        [{"customer_id": c, "signup_at": "2023-12-01"}
         for c in [*buyers, *late["customer_id"].unique()]],
        [*tables.activity.astype({"customer_id": str}).to_dict("records"),
         *late.to_dict("records")],
    )  # fmt: skip
    config = FeatureConfig().with_churn(mode="non_contractual", horizon_days=30)
    last = max(default_dates(tables, config, TrainConfig()))
    training = data_lookback_days(tables, ("purchase",), last, 30, last + pd.Timedelta(days=30))
    at_end = data_lookback_days(tables, ("purchase",), tables.data_end().normalize(), 30)
    assert training != at_end  # the test can tell the two apart
    write_tables(tables, tmp_path / "data", {"config.toml": config_to_toml(config)})
    result = CliRunner().invoke(app, ["check", "--data", str(tmp_path / "data")])
    assert f"lookback {training} days" in result.output, result.output


def test_the_lookback_holds_the_pauses_after_which_customers_came_back():
    """A grocery's short export: weekly shoppers set the typical gap (4 weeks at most), yet
    some buyers come back after pausing 42 days; with a 30-day horizon they would be
    "churned already" in their pause. The pause of 95 % of the customers who came back within
    the last complete horizon is held (6 weeks). Without a horizon nothing is measured."""
    weekly = {f"w{i}": 7 for i in range(30)}
    tables = shop(weekly, until="2024-05-01")
    # weekly until 2024-02-19 too, then 42 days' pause before 2024-04-01 and back on 04-10
    days = [*pd.date_range("2024-01-01", "2024-02-19", freq="7D"), pd.Timestamp("2024-04-10")]
    pausing = [
        {"customer_id": f"p{i}", "at": day, "event": "purchase", "value": 1.0}
        for i in range(10)
        for day in days
    ]
    tables = make_tables(
        [{"customer_id": c, "signup_at": "2023-12-01"} for c in [*weekly, *(f"p{i}" for i in range(10))]],
        [*tables.activity.astype({"customer_id": str}).to_dict("records"), *pausing],
    )  # fmt: skip
    from features.labels import returning_recency
    from features.prepared import active_days, as_of_timestamp, prepare

    prep = prepare(tables)
    until = as_of_timestamp("2024-05-01").value
    pauses = returning_recency(active_days(prep, ("purchase",)), prep.n_customers, until, 30)
    assert len(pauses) == 40 and sorted(set(pauses)) == [7.0, 42.0]
    assert data_lookback_days(tables, ("purchase",), "2024-05-01", 30) == 42  # 6 weeks
    assert data_lookback_days(tables, ("purchase",), "2024-05-01") == 28  # no horizon: gaps only
    # From the rows before 2024-04-01 alone nobody has come back yet: the typical gaps and the
    # horizon. A training set whose last date is 2024-03-30 reads its labels to 2024-04-29,
    # and the returns among them (labels_until).
    assert data_lookback_days(tables, ("purchase",), "2024-04-01", 30) == 30
    assert data_lookback_days(tables, ("purchase",), "2024-04-01", 30, "2024-05-01") == 42
    frame, resolved = build_training_set(
        tables, ["2024-03-30"], FeatureConfig().with_churn(mode="non_contractual", horizon_days=30)
    )
    assert resolved.churn.lookback_days == 42 and frame["as_of"].nunique() == 1
    assert lookback_from_gaps(np.full(20, 7.0), 30, 41.0) == 42
    assert lookback_from_gaps(np.full(20, 7.0), 30, float("nan")) == 30


def test_training_records_the_lookback_its_training_set_was_built_with():
    """`churn train` resolved the lookback before building the training set, from the rows
    before the last date alone, and that lookback travelled with the model: a grocery's check
    said 42 days, its model scored with 30 and left out the buyers who pause for 6 weeks.
    The returns in the last date's label window count in training as in the check."""
    from training.config import TrainConfig
    from training.pipeline import default_dates, fit_from_tables

    def buyer(customer: str, days) -> list[dict]:
        return [{"customer_id": customer, "at": d, "event": "purchase", "value": 1.0} for d in days]

    weekly = [
        buyer(f"w{i}", pd.date_range("2024-01-02", "2024-05-01", freq="7D", inclusive="left"))
        for i in range(60)
    ]
    stopping = [
        buyer(f"s{i}", pd.date_range("2024-01-02", f"2024-0{2 + i % 3}-1{i % 9}", freq="7D"))
        for i in range(40)
    ]
    pause = [*pd.date_range("2024-01-02", "2024-02-20", freq="7D"), pd.Timestamp("2024-04-10")]
    pausing = [buyer(f"p{i}", pause) for i in range(20)]
    rows = [row for rows in [*weekly, *stopping, *pausing] for row in rows]
    customers = sorted({row["customer_id"] for row in rows})
    tables = make_tables([{"customer_id": c, "signup_at": "2023-12-01"} for c in customers], rows)
    config = FeatureConfig().with_churn(mode="non_contractual", horizon_days=30)
    last = max(default_dates(tables, config, TrainConfig()))
    assert data_lookback_days(tables, ("purchase",), last, 30) == 30  # before the last date
    fitted = fit_from_tables(tables, config, TrainConfig(), log=lambda _: None)
    assert fitted.feature_config.churn.lookback_days == 42
    assert fitted.model.features_config().churn.lookback_days == 42
