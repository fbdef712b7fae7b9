"""Whole-history signals: lifetime frequency, first and last active day, typical gap between
active days, how overdue a customer is against it, order value; subscription-only signals only
where the data has subscriptions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import features.prepared as prepared
from features.config import FeatureConfig
from features.signals import build_features, feature_names, resolve_config
from tests.factories import make_tables

T = "2024-03-01"
SHOP = FeatureConfig().with_churn(
    mode="non_contractual", lookback_days=60, qualifying_events=("purchase",)
)


def shop_tables(period: bool = False):
    customers = [
        {"customer_id": "a", "signup_at": "2023-12-01"},
        {"customer_id": "b", "signup_at": "2023-12-01"},
        {"customer_id": "c", "signup_at": "2023-12-01"},
    ]
    buy = [
        ("a", "2024-01-01 10:00"), ("a", "2024-01-01 18:00"), ("a", "2024-01-05"),
        ("a", "2024-01-15"), ("a", "2024-02-14 23:00"), ("a", "2024-03-01"),  # at T: excluded
        ("b", "2024-02-20"),
        ("c", "2024-01-10"), ("c", "2024-01-20"),
    ]  # fmt: skip
    activity = [{"customer_id": c, "at": at, "event": "purchase", "value": 1.0} for c, at in buy]
    activity += [
        {"customer_id": "a", "at": "2024-02-28", "event": "page_view", "value": 1.0},
        {"customer_id": "c", "at": "2024-02-27", "event": "page_view", "value": 1.0},
    ]
    revenue = [
        {"customer_id": "a", "at": "2024-01-01 10:00", "amount": 30.0, "kind": "order"},
        {"customer_id": "a", "at": "2024-01-05", "amount": 50.0, "kind": "order"},
        {"customer_id": "a", "at": "2024-01-06", "amount": -20.0, "kind": "refund"},
        {"customer_id": "a", "at": "2024-02-14 23:00", "amount": 40.0, "kind": "order"},
        {"customer_id": "a", "at": "2024-03-01", "amount": 999.0, "kind": "order"},  # at T
        {"customer_id": "b", "at": "2024-02-20", "amount": 10.0, "kind": "order"},
    ]
    if period:
        for row in revenue:
            row["period"] = pd.Timestamp(row["at"]).normalize().replace(day=1)
    return make_tables(customers, activity, revenue=revenue)


def test_lifetime_frequency_gaps_and_overdue_worked_by_hand():
    frame = build_features(shop_tables(), T, SHOP).set_index("customer_id")
    a = frame.loc["a"]
    # Purchases before T: 5 (the one at T is the label's); active days Jan 1, 5, 15, Feb 14.
    assert a["lifetime_events"] == 5 and a["lifetime_active_days"] == 4
    assert a["days_since_first_active"] == 60 and a["days_since_last_active"] == 16
    # Gaps 4, 10, 30 days: mean 44 / 3, median 10; 16 days since the last is 1.6 gaps.
    assert a["active_gap_mean_days"] == pytest.approx(44 / 3)
    assert a["active_gap_median_days"] == 10
    assert a["overdue_ratio"] == pytest.approx(1.6)
    assert a["active_day_rate"] == pytest.approx(4 / 60)
    assert a["mean_payment_amount"] == pytest.approx(40.0)  # (30 + 50 + 40) / 3, no refund
    assert a["last_payment_amount"] == 40.0
    assert a["days_since_last_event"] == 2  # the page view: all events, not only purchases
    c = frame.loc["c"]
    assert c["active_gap_median_days"] == 10 and c["overdue_ratio"] == pytest.approx(4.1)
    assert math.isnan(c["mean_payment_amount"])  # no revenue: nothing to measure


def test_one_active_day_has_no_gap_and_an_even_count_takes_the_middle_two():
    frame = build_features(shop_tables(), T, SHOP).set_index("customer_id")
    b = frame.loc["b"]
    assert b["lifetime_active_days"] == 1 and b["days_since_last_active"] == 10
    assert math.isnan(b["active_gap_median_days"]) and math.isnan(b["overdue_ratio"])
    # As of Feb 1, a has gaps 4 and 10: the median of an even count is their mean.
    early = build_features(shop_tables(), "2024-02-01", SHOP).set_index("customer_id")
    assert early.loc["a", "active_gap_median_days"] == 7
    assert early.loc["a", "lifetime_events"] == 4


def test_subscription_signals_only_where_the_data_has_subscriptions():
    orders = resolve_config(shop_tables(), SHOP, until=T)
    assert orders.subscription_signals is False
    names = feature_names(orders)
    assert "last_payment_change" not in names and "upgrades_90d" not in names
    assert "mean_payment_amount" in names and "revenue_total" in names
    # periods, but every order a different amount: bills that follow usage (metered_amounts)
    assert resolve_config(shop_tables(period=True), SHOP, until=T).subscription_signals is False
    steady = shop_tables(period=True)
    steady.revenue.loc[steady.revenue["kind"] == "order", "amount"] = 30.0
    periods = resolve_config(steady, SHOP, until=T)
    assert periods.subscription_signals is True
    assert {"last_payment_change", "upgrades_90d", "downgrades_90d"} <= set(
        build_features(steady, T, periods).columns
    )
    contractual = resolve_config(steady, FeatureConfig(), until=T)
    assert contractual.subscription_signals is True


def test_without_qualifying_events_first_and_last_active_are_not_repeated():
    names = feature_names(resolve_config(shop_tables(), FeatureConfig(), until=T))
    assert "days_since_first_active" not in names and "days_since_last_event" in names
    assert {"lifetime_events", "active_gap_median_days", "overdue_ratio"} <= set(names)


def reference(activity: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The history signals computed the slow, obvious way with pandas group-bys."""
    before = activity[activity["at"] < as_of]
    days = before.assign(day=before["at"].dt.normalize())
    rows = []
    for cid, group in days.groupby("customer_id"):
        active = np.sort(group["day"].unique())
        gaps = np.diff(active) / pd.Timedelta(days=1)
        since_last = (as_of - active[-1]) / pd.Timedelta(days=1)
        rows.append(
            {
                "customer_id": cid,
                "lifetime_events": float(len(group)),
                "lifetime_active_days": float(len(active)),
                "active_gap_mean_days": gaps.mean() if len(gaps) else np.nan,
                "active_gap_median_days": np.median(gaps) if len(gaps) else np.nan,
                "overdue_ratio": since_last / np.median(gaps) if len(gaps) else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("customer_id")


@pytest.mark.parametrize("use_bitmap", [True, False])
def test_history_signals_equal_a_plain_pandas_reference(monkeypatch, use_bitmap):
    """Random shuffled activity over several dates, with the bitmap and the sorting path."""
    if not use_bitmap:
        monkeypatch.setattr(prepared, "BITMAP_CELLS", 0)
    rng = np.random.default_rng(7)
    n = 40
    customers = [{"customer_id": f"c{i}", "signup_at": "2023-01-01"} for i in range(n)]
    at = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 400 * 24, 1500), unit="h")
    activity = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in rng.integers(0, n, 1500)],
            "at": at,
            "event": rng.choice(["login", "purchase"], 1500),
            "value": 1.0,
        }
    )
    tables = make_tables(customers, activity.to_dict("records"))
    config = FeatureConfig()  # contractual: every customer is scored, every event qualifies
    for as_of in ("2023-02-01", "2023-06-15", "2024-01-01", "2024-03-01"):
        got = build_features(tables, as_of, config).set_index("customer_id")
        expected = reference(activity, pd.Timestamp(as_of))
        pd.testing.assert_frame_equal(
            got.loc[expected.index, expected.columns], expected, check_names=False
        )
        silent = got.drop(expected.index)  # no activity before T yet
        assert (silent["lifetime_events"] == 0).all()
        assert silent["active_gap_median_days"].isna().all()
    assert len(expected) == n  # the last date sees everyone's history


def subscription_tables(period_end: bool = True):
    """Monthly invoices with the end of the paid period (a Stripe or KKBox export's expiry)."""
    customers = [{"customer_id": c, "signup_at": "2023-12-01"} for c in ("renews", "lapsed", "x")]
    rows = [
        ("renews", "2024-01-01", 10.0, "invoice", "2024-02-01"),
        ("renews", "2024-02-01", 10.0, "invoice", "2024-03-01"),
        ("renews", "2024-03-01", 10.0, "invoice", "2024-04-01"),  # at T: not known yet
        ("lapsed", "2024-01-01", 10.0, "invoice", "2024-01-21"),
        ("lapsed", "2024-01-21", 0.0, "failed_payment", "2024-02-21"),  # not paid: not a period
        ("lapsed", "2024-01-25", -10.0, "refund", "2024-03-25"),  # a refund pays no period
        ("x", "2024-02-10", 10.0, "invoice", None),  # no end given
    ]
    revenue = [
        {"customer_id": c, "at": at, "amount": amount, "kind": kind, "period": at,
         "period_end": end}
        for c, at, amount, kind, end in rows
    ]  # fmt: skip
    if not period_end:
        for row in revenue:
            del row["period_end"]
    return make_tables(customers, revenue=revenue)


def test_days_until_the_paid_period_ends_from_the_latest_payment_before_t():
    tables = subscription_tables()
    config = resolve_config(tables, FeatureConfig(), until=T)
    assert config.paid_period_signals is True
    frame = build_features(tables, T, config).set_index("customer_id")
    days = frame["days_until_paid_period_ends"]
    assert days["renews"] == 0  # paid until T; the renewal at T is the label's side
    assert days["lapsed"] == -40  # ended 2024-01-21, nothing paid since
    assert np.isnan(days["x"])
    # The renewal counts from the next day on.
    later = build_features(tables, "2024-03-02", config).set_index("customer_id")
    assert later.loc["renews", "days_until_paid_period_ends"] == 30
    # Without period_end in the export: no column (a column of NaN measures nothing).
    plain = resolve_config(subscription_tables(period_end=False), FeatureConfig(), until=T)
    assert plain.paid_period_signals is False
    assert "days_until_paid_period_ends" not in feature_names(plain)
    # Only rows before the date decide: before the first invoice, no paid period is known.
    assert resolve_config(tables, FeatureConfig(), until="2024-01-01").paid_period_signals is False


def test_bills_in_arrears_are_no_paid_period():
    """A telecom's postpaid bill comes after the month it bills: its period end says what was
    used, not until when the customer has paid ("Paid period ended 4 days ago, not renewed"
    for 953 subscribers whose next bill was not due yet). Billed mostly in arrears: no
    paid-period signals; in advance (the subscription export above): they are there."""
    customers = [{"customer_id": c, "signup_at": "2023-12-01"} for c in ("a", "b")]
    revenue = [
        {"customer_id": c, "at": f"2024-{m + 1:02d}-05", "amount": 30.0, "kind": "invoice",
         "period": f"2024-{m:02d}-01", "period_end": f"2024-{m + 1:02d}-01"}
        for c in ("a", "b") for m in (1, 2, 3)
    ]  # fmt: skip
    arrears = make_tables(customers, revenue=revenue)
    assert resolve_config(arrears, FeatureConfig(), until=T).paid_period_signals is False
    assert "days_until_paid_period_ends" not in build_features(arrears, T)
    assert resolve_config(subscription_tables(), FeatureConfig(), until=T).paid_period_signals


def test_bills_that_follow_usage_are_no_plan_changes():
    """A telecom's bills vary with minutes and roaming: a lower bill is no downgrade (711 of
    3,590 subscribers read "1 downgrade in the last 90 days" without a tariff change). Where
    most consecutive payments differ, the subscription signals are left out."""
    customers = [{"customer_id": c, "signup_at": "2023-12-01"} for c in ("a", "b")]
    bills = {"a": [24.99, 29.99, 27.5, 31.0], "b": [40.0, 38.2, 45.9, 41.0]}
    revenue = [
        {"customer_id": c, "at": f"2024-{m + 1:02d}-05", "amount": amount, "kind": "invoice"}
        for c, amounts in bills.items() for m, amount in enumerate(amounts[:2])
    ]  # fmt: skip
    revenue += [
        {"customer_id": c, "at": f"2023-{m + 9:02d}-05", "amount": amount, "kind": "invoice"}
        for c, amounts in bills.items() for m, amount in enumerate(amounts[2:])
    ]  # fmt: skip
    metered = make_tables(customers, revenue=revenue)
    contractual = FeatureConfig().with_churn(mode="contractual")
    config = resolve_config(metered, contractual, until=T)
    assert config.subscription_signals is False
    assert not {"downgrades_90d", "upgrades_90d", "last_payment_change"} & set(
        feature_names(config)
    )
    steady = make_tables(
        customers, revenue=[{**row, "amount": 29.99} for row in revenue]
    )  # a price rise or a plan change now and then is what the signals are for
    assert resolve_config(steady, contractual, until=T).subscription_signals is True


def test_a_paid_period_that_ends_before_it_starts_is_a_contract_error():
    from features.contract import ContractError

    tables = subscription_tables()
    bad = tables.revenue.copy()
    bad.loc[0, "period_end"] = pd.Timestamp("2023-12-01")
    with pytest.raises(ContractError) as error:
        make_tables(tables.customers.to_dict("records"), revenue=bad.to_dict("records"))
    text = str(error.value)
    assert "revenue" in text and "period_end" in text and "end before they start" in text
    assert "renews" in text
