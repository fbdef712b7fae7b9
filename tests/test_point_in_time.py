"""Point-in-time correctness as a property: rows dated at or after T never move features at T."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.config import FeatureConfig
from features.contract import validate_tables
from features.labels import build_labels
from features.signals import build_features

BASE = pd.Timestamp("2024-01-01")
T = BASE + pd.Timedelta(days=120)
EVENTS = ["login", "export", "report_view"]
hours = st.integers(min_value=0, max_value=200 * 24)


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 6))
    customers = []
    for i in range(n):
        signup = BASE + pd.Timedelta(days=draw(st.integers(0, 150)))
        churn_days = draw(st.one_of(st.none(), st.integers(1, 100)))
        churned = signup + pd.Timedelta(days=churn_days) if churn_days else pd.NaT
        plan = draw(st.sampled_from(["basic", "pro"]))
        customers.append(
            {"customer_id": f"c{i}", "signup_at": signup, "churned_at": churned, "plan": plan}
        )
    ids = st.sampled_from([c["customer_id"] for c in customers])
    activity = [
        {"customer_id": draw(ids), "at": BASE + pd.Timedelta(hours=draw(hours)), "event": draw(st.sampled_from(EVENTS)),
         "value": float(draw(st.integers(0, 5)))}
        for _ in range(draw(st.integers(0, 25)))
    ]  # fmt: skip
    feedback = []
    for _ in range(draw(st.integers(0, 10))):
        at = BASE + pd.Timedelta(hours=draw(hours))
        kind = draw(st.sampled_from(["nps", "csat", "review", "ticket"]))
        row = {
            "customer_id": draw(ids),
            "at": at,
            "kind": kind,
            "score": None,
            "status": None,
            "resolved_at": pd.NaT,
        }
        if kind == "nps":
            row["score"] = float(draw(st.integers(0, 10)))
        elif kind in ("csat", "review"):
            row["score"] = float(draw(st.integers(1, 5)))
        else:
            resolve = draw(st.one_of(st.none(), st.integers(1, 400)))
            row["status"] = "open" if resolve is None else "closed"
            row["resolved_at"] = at + pd.Timedelta(hours=resolve) if resolve else pd.NaT
        feedback.append(row)
    revenue = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["invoice", "refund", "failed_payment"]))
        amount = float(draw(st.integers(1, 300)))
        revenue.append({"customer_id": draw(ids), "at": BASE + pd.Timedelta(hours=draw(hours)), "kind": kind,
                        "amount": -amount if kind == "refund" else amount})  # fmt: skip
    return customers, activity, feedback, revenue


@st.composite
def future_changes(draw, data):
    """A change that only touches what happens at or after T."""
    customers, activity, feedback, revenue = data
    ids = [c["customer_id"] for c in customers]
    after = T + pd.Timedelta(hours=draw(st.integers(0, 2000)))
    what = draw(
        st.sampled_from(
            ["activity", "feedback", "ticket_resolved", "revenue", "churn", "customer", "event"]
        )
    )
    customers = [dict(c) for c in customers]
    activity, feedback, revenue = list(activity), [dict(f) for f in feedback], list(revenue)
    who = draw(st.sampled_from(ids))
    if what == "activity":
        activity.append(
            {"customer_id": who, "at": after, "event": draw(st.sampled_from(EVENTS)), "value": 3.0}
        )
    elif what == "event":  # a type of event never seen before T
        activity.append(
            {"customer_id": who, "at": after, "event": "brand_new_feature", "value": 1.0}
        )
    elif what == "feedback":
        feedback.append({"customer_id": who, "at": after, "kind": "nps", "score": 0.0, "status": None,
                         "resolved_at": pd.NaT})  # fmt: skip
        feedback.append({"customer_id": who, "at": after, "kind": "ticket", "score": None, "status": "open",
                         "resolved_at": pd.NaT})  # fmt: skip
    elif what == "ticket_resolved":  # an open ticket gets resolved after T
        for f in feedback:
            if f["kind"] == "ticket" and pd.isna(f["resolved_at"]) and f["at"] <= after:
                f["status"], f["resolved_at"] = "closed", after
                break
    elif what == "revenue":
        revenue.append({"customer_id": who, "at": after, "kind": "refund", "amount": -50.0})
        revenue.append({"customer_id": who, "at": after, "kind": "invoice", "amount": 999.0})
    elif what == "churn":
        for c in customers:
            # Churn at T (after may be T itself) or later: still a customer before T, scored.
            churn_at = max(after, c["signup_at"] + pd.Timedelta(hours=1))
            if pd.isna(c["churned_at"]) or c["churned_at"] > churn_at:
                c["churned_at"] = churn_at
                break
    else:
        customers.append(
            {"customer_id": "newcomer", "signup_at": after, "churned_at": pd.NaT, "plan": "basic"}
        )
        activity.append({"customer_id": "newcomer", "at": after, "event": "login", "value": 1.0})
    return customers, activity, feedback, revenue


def tables_of(data):
    customers, activity, feedback, revenue = data
    return validate_tables(
        pd.DataFrame(customers),
        pd.DataFrame(activity, columns=["customer_id", "at", "event", "value"]),
        pd.DataFrame(
            feedback, columns=["customer_id", "at", "kind", "score", "status", "resolved_at"]
        ).astype({"score": "float64", "status": "str"}),
        pd.DataFrame(revenue, columns=["customer_id", "at", "kind", "amount"]),
    )


CONFIGS = [
    FeatureConfig(),
    FeatureConfig().with_churn(mode="non_contractual", lookback_days=60),
    # The lookback left to the data: derived from the rows before T only.
    FeatureConfig().with_churn(mode="non_contractual", qualifying_events=("login", "export")),
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_rows_dated_at_or_after_t_leave_features_at_t_unchanged(data):
    base = data.draw(datasets())
    changed = data.draw(future_changes(base))
    base_tables, changed_tables = tables_of(base), tables_of(changed)
    for config in CONFIGS:
        before = build_features(base_tables, T, config)
        after = build_features(changed_tables, T, config)
        pd.testing.assert_frame_equal(before, after)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_labels_use_only_the_horizon_after_t(data):
    """Changes at or after T + horizon never move the labels for T (the window is [T, T + h))."""
    base = data.draw(datasets())
    customers, activity, feedback, revenue = base
    horizon_end = T + pd.Timedelta(days=30)
    late = horizon_end + pd.Timedelta(hours=data.draw(st.integers(0, 500)))
    who = data.draw(st.sampled_from([c["customer_id"] for c in customers]))
    changed_activity = [*activity, {"customer_id": who, "at": late, "event": "login", "value": 1.0}]
    changed_customers = [dict(c) for c in customers]
    for c in changed_customers:
        if pd.isna(c["churned_at"]):
            c["churned_at"] = max(late, c["signup_at"])
            break
    # Data must reach beyond the horizon for labels at T to exist.
    anchor = {"customer_id": who, "at": late + pd.Timedelta(days=1), "event": "login", "value": 1.0}
    base_tables = tables_of((customers, [*activity, anchor], feedback, revenue))
    changed_tables = tables_of((changed_customers, [*changed_activity, anchor], feedback, revenue))
    for config in CONFIGS:
        churn = config.with_churn(horizon_days=30).churn
        pd.testing.assert_frame_equal(
            build_labels(base_tables, T, churn), build_labels(changed_tables, T, churn)
        )
