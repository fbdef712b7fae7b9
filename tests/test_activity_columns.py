"""Activity columns resolved from the data and recorded with the model: the long windows
(FeatureConfig.long_windows: events and active days over the last half year and year, where the
history spans them), the value columns (FeatureConfig.activity_values: only with values) and the
per-kind columns (FeatureConfig.activity_kinds: only with two kinds or more)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import FeatureConfig
from features.signals import build_features, feature_names, resolve_config
from tests.factories import make_tables

T = "2024-07-01"
SHOP = FeatureConfig().with_churn(mode="non_contractual", lookback_days=365)


def shop_tables(first: str = "2022-06-01", extra: tuple[dict, ...] = ()):
    """Customer 007: bought on 2022-06-01 (or `first`), twice on 2024-01-10, on 2024-05-01 and
    at T itself (the label's, not a feature's); b: once on 2024-06-20; then the `extra` rows."""
    customers = [
        {"customer_id": "007", "signup_at": "2022-01-01"},
        {"customer_id": "b", "signup_at": "2022-01-01"},
    ]
    buys = [
        ("007", first), ("007", "2024-01-10 09:00"), ("007", "2024-01-10 17:00"),
        ("007", "2024-05-01"), ("007", T), ("b", "2024-06-20"),
    ]  # fmt: skip
    activity = [{"customer_id": c, "at": at, "event": "purchase", "value": 1.0} for c, at in buys]
    return make_tables(customers, [*activity, *extra])


def test_long_windows_count_events_and_active_days_strictly_before_t():
    config = resolve_config(shop_tables(), SHOP, until=T)
    assert config.long_windows == (180, 365)
    frame = build_features(shop_tables(), T, config).set_index("customer_id")
    a = frame.loc["007"]
    # 180 days before 2024-07-01 is 2024-01-03: the two purchases of 2024-01-10 (one active
    # day) and 2024-05-01; the one at T is not counted. 365 days back (2023-07-02) the same.
    assert a["events_180d"] == 3 and a["active_days_180d"] == 2
    assert a["events_365d"] == 3 and a["active_days_365d"] == 2
    assert a["lifetime_events"] == 4 and a["lifetime_active_days"] == 3
    b = frame.loc["b"]
    assert b["events_180d"] == 1 and b["active_days_365d"] == 1
    # The 90-day window is unchanged by them.
    assert a["events_90d"] == 1 and a["active_days_90d"] == 1


def test_an_event_on_a_windows_first_day_is_inside():
    tables = shop_tables(first="2023-07-02")  # 365 days before T
    frame = build_features(tables, T, FeatureConfig(long_windows=(365,))).set_index("customer_id")
    assert frame.loc["007", "events_365d"] == 4
    assert frame.loc["007", "active_days_365d"] == 3


def test_only_windows_the_history_spans_twice_over_and_none_below_the_configured_windows():
    # 173 days of history before T: no long window; 396 days: the half year only (a year's
    # window would count nearly the whole history at most training dates).
    short = shop_tables(first="2024-01-10")
    assert resolve_config(short, SHOP, until=T).long_windows == ()
    assert "events_180d" not in build_features(short, T, SHOP).columns
    assert resolve_config(shop_tables(first="2023-06-01"), SHOP, until=T).long_windows == (180,)
    # A configuration with a 180-day window of its own gets the year only.
    own = FeatureConfig(windows=(7, 30, 180)).with_churn(mode="non_contractual", lookback_days=365)
    assert resolve_config(shop_tables(), own, until=T).long_windows == (365,)
    # Declared: kept as declared; () turns them off.
    off = FeatureConfig(long_windows=()).with_churn(mode="non_contractual", lookback_days=365)
    assert resolve_config(shop_tables(), off, until=T).long_windows == ()
    assert "events_365d" not in build_features(shop_tables(), T, off).columns


def test_the_resolved_windows_name_their_columns_and_a_window_too_short_is_refused():
    config = resolve_config(shop_tables(), SHOP, until=T)
    names = feature_names(config)
    assert {"events_180d", "active_days_180d", "events_365d", "active_days_365d"} <= set(names)
    assert "event_types_365d" not in names and "value_365d" not in names
    assert FeatureConfig.from_dict({"long_windows": [365]}).long_windows == (365,)
    with pytest.raises(ValueError, match="long_windows must be longer than the longest"):
        FeatureConfig(windows=(7, 30, 90), long_windows=(60,))


def test_monthly_totals_count_whole_months():
    """Activity exported as month totals (stamped at each month's last second): the 180-day
    window is the 6 whole months before T's month, whatever day T is."""
    customers = [{"customer_id": "a", "signup_at": "2023-01-01"}]
    months = pd.date_range("2023-01-31 23:59:59", periods=18, freq="ME")
    activity = [{"customer_id": "a", "at": str(m), "event": "usage", "value": 1.0} for m in months]
    tables = make_tables(customers, activity)
    config = FeatureConfig(activity_totals="month", long_windows=(180, 365))
    for as_of in ("2024-04-01", "2024-04-17"):
        frame = build_features(tables, as_of, config).set_index("customer_id")
        assert frame.loc["a", "events_180d"] == 6  # October to March
        assert frame.loc["a", "events_365d"] == 12


def test_a_model_trained_before_long_windows_builds_none():
    from training.model import ChurnModel

    model = ChurnModel.__new__(ChurnModel)
    model.feature_config = FeatureConfig(event_types=()).to_dict()
    del model.feature_config["long_windows"]
    assert model.features_config().long_windows == ()


def test_activity_without_values_has_no_value_columns():
    """A commit log without values had value_7d..value_90d columns of zeros and a value trend
    missing everywhere: the value columns come only where a row before T has a value."""
    customers = [{"customer_id": "a", "signup_at": "2024-01-01"}]
    rows = [{"customer_id": "a", "at": "2024-05-01", "event": "commit", "value": 0.0}]
    without = make_tables(customers, rows)
    config = resolve_config(without, SHOP, until=T)
    assert config.activity_values is False
    frame = build_features(without, T, SHOP)
    assert not [c for c in frame.columns if c.startswith("value_")]
    # a value at T is the label window's, not a reason for the columns
    at_t = make_tables(customers, [*rows, {**rows[0], "at": T, "value": 3.0}])
    assert resolve_config(at_t, SHOP, until=T).activity_values is False
    valued = make_tables(customers, [{**rows[0], "value": 2.5}])
    frame = build_features(valued, T, SHOP).set_index("customer_id")
    assert frame.loc["a", "value_90d"] == 2.5 and "value_trend_30d" in frame.columns


def test_a_model_trained_before_activity_values_builds_the_value_columns():
    from training.model import ChurnModel

    model = ChurnModel.__new__(ChurnModel)
    model.feature_config = FeatureConfig(event_types=()).to_dict()
    del model.feature_config["activity_values"]
    assert model.features_config().activity_values is True


def test_a_log_of_one_kind_has_no_per_kind_columns():
    """A commit log of one kind had commit_events_7d.. equal to events_7d.. and event_types_7d..
    saying only whether the window had an event: those come only with two kinds or more."""
    tables = shop_tables()
    config = resolve_config(tables, SHOP, until=T)
    assert config.activity_kinds is False and config.event_types == ()
    frame = build_features(tables, T, config)
    assert not [c for c in frame.columns if c.startswith(("event_types_", "purchase_"))]
    assert list(frame.columns) == ["customer_id", *feature_names(config)]
    # A second kind before T brings them; one dated at T is the label window's.
    visit = {"customer_id": "b", "at": "2024-06-21", "event": "visit", "value": 0.0}
    at_t = shop_tables(extra=({**visit, "at": T},))
    assert resolve_config(at_t, SHOP, until=T).activity_kinds is False
    two = shop_tables(extra=(visit,))
    config = resolve_config(two, SHOP, until=T)
    assert config.activity_kinds is True and config.event_types == ("purchase", "visit")
    frame = build_features(two, T, config).set_index("customer_id")
    assert frame.loc["b", "event_types_30d"] == 2 and frame.loc["b", "visit_events_30d"] == 1
    assert frame.loc["007", "purchase_events_90d"] == 1


def test_declared_event_types_keep_their_counts_on_a_log_of_one_kind():
    declared = FeatureConfig(event_types=("purchase",)).with_churn(
        mode="non_contractual", lookback_days=365
    )
    config = resolve_config(shop_tables(), declared, until=T)
    assert config.activity_kinds is False and config.event_types == ("purchase",)
    frame = build_features(shop_tables(), T, config).set_index("customer_id")
    assert frame.loc["007", "purchase_events_90d"] == 1
    assert "event_types_90d" not in frame.columns


def test_a_model_trained_before_activity_kinds_builds_the_per_kind_columns():
    from training.model import ChurnModel

    model = ChurnModel.__new__(ChurnModel)
    model.feature_config = FeatureConfig(event_types=("purchase",)).to_dict()
    del model.feature_config["activity_kinds"]
    config = model.features_config()
    assert config.activity_kinds is True
    frame = build_features(shop_tables(), T, config)
    assert {"event_types_30d", "purchase_events_30d"} <= set(frame.columns)
