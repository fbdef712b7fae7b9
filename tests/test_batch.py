"""The weekly scoring job: partitions per run date, drivers, change since the previous run,
atomic writes and identical reruns."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features.signals import build_features
from serving import batch
from serving.batch import list_partitions, run_scoring
from serving.config import ScoringConfig
from training.drivers import (
    NEVER_ON_THE_SAFE_SIDE,
    lower_risk_drivers,
    merge_same_facts,
    moved_drivers,
    top_drivers,
)

RUN_1, RUN_2 = "2024-12-01", "2024-12-08"


@pytest.fixture
def scored(small_champion, tmp_path):
    model, version = small_champion.champion.model, small_champion.champion.version
    out = tmp_path / "scores"
    first = run_scoring(small_champion.tables, RUN_1, model, version, out, log=lambda _: None)
    second = run_scoring(small_champion.tables, RUN_2, model, version, out, log=lambda _: None)
    return out, first, second


def test_each_run_writes_a_complete_partition(small_champion, scored):
    out, _, second = scored
    assert [d.date().isoformat() for d, _ in list_partitions(out)] == [RUN_1, RUN_2]
    files = sorted(p.name for p in second.partition.iterdir())
    assert files == [
        "alerts.csv", "alerts.parquet", "contributions.parquet", "features.parquet",
        "report.html", "run.json", "scores.csv", "scores.parquet", "segments.parquet",
    ]  # fmt: skip
    info = json.loads((second.partition / "run.json").read_text())
    assert info["previous_as_of"] == RUN_1 and info["customers_scored"] == len(second.scores)
    # the data's end, for the service's run-date check (as the Spark engine records it)
    assert info["data_end"] == small_champion.tables.data_end().isoformat()


def test_scores_are_the_models_probabilities_with_positive_drivers(small_champion, scored):
    _, first, _ = scored
    model = small_champion.champion.model
    features = build_features(small_champion.tables, RUN_1, model.features_config())
    np.testing.assert_allclose(
        first.scores["churn_probability"], model.predict_proba(features, RUN_1), rtol=1e-9
    )
    assert set(first.scores["risk_band"]) <= {"high", "medium", "low"}
    written = pd.read_parquet(first.partition / "scores.parquet")
    assert written["customer_id"].tolist() == first.scores["customer_id"].tolist()
    for drivers in written["drivers"].head(200):
        assert len(drivers) <= 3
        assert all(d["contribution"] > 0 and d["feature"] in model.feature_names for d in drivers)
    # no reason states a value on the typical customer's lower-risk side (training.reference)
    sides = model.reference.reason_sides
    assert {"events_90d", "tenure_days"} <= set(sides)
    shown = [
        d
        for drivers in written["drivers"]
        for d in drivers
        if d["feature"] in sides and d["value"] is not None  # a missing value has its own words
    ]
    assert shown
    for d in shown:
        median, direction = sides[d["feature"]]
        safe = d["value"] > median if direction < 0 else d["value"] < median
        assert d["feature"] in NEVER_ON_THE_SAFE_SIDE or not safe, d


def test_second_run_reports_the_change_since_the_previous_one(scored):
    _, first, second = scored
    # A first run's changes are against the scores of a week before on the same data
    # (first_run_baseline): its customers scored then have a previous probability.
    assert first.summary["first_run_baseline"] is not None
    assert first.scores["previous_probability"].notna().any()
    assert second.summary["first_run_baseline"] is None
    both = second.scores.merge(
        first.scores[["customer_id", "churn_probability"]], on="customer_id", suffixes=("", "_1")
    )
    np.testing.assert_allclose(both["previous_probability"], both["churn_probability_1"])
    np.testing.assert_allclose(
        both["probability_delta"], both["churn_probability"] - both["churn_probability_1"]
    )
    moved = pd.read_parquet(second.partition / "scores.parquet")["drivers_moved"]
    assert moved.map(len).gt(0).any()


def test_scores_csv_beside_scores_parquet_holds_the_same_customers_in_words(small_champion, scored):
    _, _, second = scored
    parquet = pd.read_parquet(second.partition / "scores.parquet")
    csv = pd.read_csv(second.partition / "scores.csv", dtype=str, keep_default_na=False)
    assert list(csv.columns) == [
        "customer_id", "churn_probability_pct", "risk_band", "risk_band_range", "reason_1",
        "reason_2", "reason_3", "lower_risk_reason", "change_pts", "level_change_pts",
    ]  # fmt: skip
    # Riskiest first: the same customers as scores.parquet, in the order of their risk.
    parquet = parquet.sort_values(["churn_probability", "customer_id"], ascending=[False, True])
    parquet = parquet.reset_index(drop=True)
    assert csv["customer_id"].tolist() == parquet["customer_id"].tolist()
    np.testing.assert_allclose(
        csv["churn_probability_pct"].astype(float), parquet["churn_probability"] * 100, atol=0.05
    )
    assert csv["risk_band"].tolist() == parquet["risk_band"].tolist()
    # Each band says which probabilities it holds, from the model's thresholds.
    high = small_champion.champion.model.band_thresholds["high"]
    ranges = dict(zip(csv["risk_band"], csv["risk_band_range"], strict=True))
    assert ranges["high"] == f"{high * 100:.1f}% and above"
    assert ranges["low"].startswith("below ") and set(ranges) == {"high", "medium", "low"}
    first = [d[0]["reason"] if len(d) else "" for d in parquet["drivers"]]
    assert csv["reason_1"].tolist() == first
    # A customer at or below the typical risk is told what holds it down, never both.
    lower = [d[0]["reason"] if len(d) else "" for d in parquet["lower_risk"]]
    assert csv["lower_risk_reason"].tolist() == lower
    assert sum(map(bool, lower)) > 0
    both = zip(parquet["drivers"], parquet["lower_risk"], strict=True)
    assert not any(len(a) and len(b) for a, b in both)
    records = [r for d in parquet["lower_risk"] for r in d]
    assert all(r["risk_points"] < 0 and r["contribution"] < 0 for r in records)
    # Reasons for risk above the typical customer's risk (the training rows' median
    # probability), lower-risk ones at or below it.
    typical = small_champion.champion.model.typical_probability()
    assert typical is not None and 0 < typical < 1
    p = parquet["churn_probability"]
    assert (p[parquet["drivers"].map(len).gt(0)] > typical).all()
    assert (p[parquet["lower_risk"].map(len).gt(0)] <= typical).all()
    delta = parquet["probability_delta"] * 100
    assert ((csv["change_pts"] == "") == delta.isna()).all()
    known = delta.notna()
    np.testing.assert_allclose(csv.loc[known, "change_pts"].astype(float), delta[known], atol=0.05)
    level = parquet["level_delta"] * 100
    assert ((csv["level_change_pts"] == "") == level.isna()).all() and (
        level.isna() == delta.isna()
    ).all()
    np.testing.assert_allclose(
        csv.loc[known, "level_change_pts"].astype(float), level[known], atol=0.05
    )


def test_drivers_moved_from_stored_contributions_equal_a_recomputation(
    small_champion, scored, tmp_path
):
    """A run scored by the same model reuses the previous partition's contributions; another
    model explains the previous features again. Both give the same movements."""
    _, first, second = scored
    out = tmp_path / "recomputed"
    shutil.copytree(first.partition, out / first.partition.name)
    info = json.loads((out / first.partition.name / "run.json").read_text())
    (out / first.partition.name / "run.json").write_text(json.dumps(info | {"model_version": "0"}))
    model, version = small_champion.champion.model, small_champion.champion.version
    again = run_scoring(small_champion.tables, RUN_2, model, version, out, log=lambda _: None)
    reused = pd.read_parquet(second.partition / "scores.parquet")
    recomputed = pd.read_parquet(again.partition / "scores.parquet")
    assert reused["drivers_moved"].map(len).sum() > 0
    for a, b in zip(reused["drivers_moved"], recomputed["drivers_moved"], strict=True):
        assert [dict(d) for d in a] == [dict(d) for d in b]


def test_a_rare_level_driver_says_it_is_scored_with_the_other_rare_levels():
    contrib = np.array([[1.0, 0.1], [1.0, 0.1], [1.0, 0.1]])
    values = pd.DataFrame({"country": ["USA", "United Kingdom", "Narnia"], "x": [1.0, 2.0, 3.0]})
    got = top_drivers(
        contrib, ["country", "x"], values, 1, contrib * 10, attributes=("country",),
        named_levels={"country": {"United Kingdom"}}, min_level_customers=30,
    ).to_pylist()  # fmt: skip
    note = "(rare: fewer than 30 customers in training; scored with the other rare values)"
    assert [row[0]["reason"] for row in got] == [
        f"Country: USA {note}",
        "Country: United Kingdom",
        f"Country: Narnia {note}",
    ]
    assert [row[0]["value_text"] for row in got] == ["USA", "United Kingdom", "Narnia"]


def test_a_value_on_the_typical_customers_lower_risk_side_is_no_reason():
    """117 logins when the median customer has 10 does not read as a risk, whatever the
    contribution: the next reason takes its place. Below the median or missing, the value
    stays a reason; so does the recency, whose sentence carries the customer's own gap. At the
    median it tells nobody apart: a reason only where the row has no other."""
    names = ["login_events_90d", "failed_payments_90d", "days_since_last_event"]
    contrib = np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 0.5], [2.0, 1.0, 0.5], [2.0, 1.0, 0.5]])
    values = pd.DataFrame(
        {"login_events_90d": [117.0, 3.0, 10.0, np.nan], "failed_payments_90d": [1.0, 0.0, 0.0, 2.0],
         "days_since_last_event": [1.0, 1.0, 1.0, 1.0]}
    )  # fmt: skip
    typical = {
        "login_events_90d": (10.0, -1),  # more logins go with a lower risk
        "failed_payments_90d": (0.0, 1),
        "days_since_last_event": (20.0, 1),  # below the median, but stated against own gap
    }
    got = top_drivers(contrib, names, values, 2, contrib * 10, typical=typical).to_pylist()
    assert [[d["feature"] for d in row] for row in got] == [
        ["failed_payments_90d", "days_since_last_event"],
        ["login_events_90d", "days_since_last_event"],  # 3 logins: fewer than typical
        ["days_since_last_event"],  # 10 logins and no failed payment: the typical customer's
        ["login_events_90d", "failed_payments_90d"],  # missing: its own sentence
    ]
    assert got[0][0]["reason"] == "1 failed payment in the last 90 days"
    # A value at the median is said only where the row has no other reason: without the
    # recency, the typical customer's 10 logins are the row's reasons rather than none.
    alone = top_drivers(
        contrib[:, :2], names[:2], values[names[:2]], 2, contrib[:, :2] * 10, typical=typical
    ).to_pylist()
    assert [[d["feature"] for d in row] for row in alone] == [
        ["failed_payments_90d"],
        ["login_events_90d"],
        ["login_events_90d", "failed_payments_90d"],  # both at the median: no other reason
        ["login_events_90d", "failed_payments_90d"],
    ]
    # without the typical values the ranking is the contributions' alone, as before
    plain = top_drivers(contrib, names, values, 1, contrib * 10).to_pylist()
    assert [row[0]["feature"] for row in plain] == ["login_events_90d"] * 4


def test_an_order_exports_last_order_is_said_once_with_its_empty_windows():
    """Orders are activity and payments at once: a window without orders holds the last
    order's age, which is the last active day's and the recency's, so all of it is one reason
    ("No activity in the last 35 days"), not also "Last order 35 days ago" (a grocery's 178
    households read both)."""
    names = [
        "days_since_last_event", "days_since_last_active", "days_since_last_payment",
        "payments_30d", "revenue_30d",
    ]  # fmt: skip
    contrib = np.array([[1.0, -0.1, 0.05, 0.2, 0.3]])
    values = pd.DataFrame(
        {"days_since_last_event": [35.06], "days_since_last_active": [36.0],
         "days_since_last_payment": [35.06], "payments_30d": [0.0], "revenue_30d": [0.0]}
    )  # fmt: skip
    merged, _ = merge_same_facts(contrib, contrib * 10, names, values)
    np.testing.assert_allclose(merged, [[1.45, 0.0, 0.0, 0.0, 0.0]])
    got = top_drivers(contrib, names, values, 3, contrib * 10, orders=True).to_pylist()
    assert [d["reason"] for d in got[0]] == ["No activity in the last 35 days"]


def test_one_kind_of_activity_in_a_log_of_one_event_type_is_said_by_its_count():
    """A grocery's log has one event type: "1 kind of activity in the last 7 days (purchase)"
    is the count again, said by the type ("2 purchase events in the last 7 days"). Where the
    model counts more types, one kind is breadth of use and stays a reason of its own."""
    one = ["event_types_7d", "events_7d", "purchase_events_7d"]
    contrib = np.array([[0.5, 0.1, 0.2]])
    values = pd.DataFrame(
        {"event_types_7d": [1.0], "events_7d": [2.0], "purchase_events_7d": [2.0]}
    )
    got = top_drivers(contrib, one, values, 3, contrib * 10).to_pylist()
    assert [d["reason"] for d in got[0]] == ["2 purchase events in the last 7 days"]
    two = [*one, "login_events_7d"]
    values["login_events_7d"] = 0.0
    contrib = np.array([[0.5, 0.1, 0.2, 0.0]])
    got = top_drivers(contrib, two, values, 3, contrib * 10).to_pylist()
    assert got[0][0]["feature"] == "event_types_7d"


def test_the_typical_risk_is_the_median_customers_not_the_mean_log_odds():
    """A grocer's base probability (at the mean log-odds) was 70 % where half its customers
    were above 43 %: customers at 67 % in the high band had no reason. With the typical
    probability (the median of the training rows) a row above it gets reasons for risk, even
    where the points (counted from the base) sum below 0, and a row at or below it gets the
    lower-risk ones; without it, the base decides as before."""
    names = ["days_since_last_event", "events_30d"]
    contrib = np.array([[0.8, -1.0], [0.8, -1.0]])
    points = contrib * 10  # both sum below the base
    values = pd.DataFrame(
        {"days_since_last_event": [137.0, 137.0], "events_30d": [9.0, 9.0],
         "active_gap_median_days": [58.0, 58.0]}
    )  # fmt: skip
    typical = {"days_since_last_event": (150.0, 1), "events_30d": (2.0, -1)}
    settings = {"typical": typical, "probability": np.array([0.676, 0.30]),
                "typical_probability": 0.43}  # fmt: skip
    risky = top_drivers(contrib, names, values, 3, points, **settings).to_pylist()
    lower = lower_risk_drivers(contrib, names, values, 3, points, **settings).to_pylist()
    assert [[d["feature"] for d in row] for row in risky] == [["days_since_last_event"], []]
    assert (
        risky[0][0]["reason"] == "No activity in the last 4 months (usually active every 8 weeks)"
    )
    assert [[d["feature"] for d in row] for row in lower] == [[], ["events_30d"]]
    base_only = top_drivers(contrib, names, values, 3, points, typical=typical).to_pylist()
    assert base_only == [[], []]


def test_a_customer_below_the_typical_risk_is_told_what_holds_it_down():
    """Rows at or below the base probability get no reason for risk but the features that
    lower it most, held to the mirror of the reasons' rules: a recency shorter than the usual
    gap is said as the last activity; one as long as the usual gap or longer is still overdue,
    whatever the median; a value on the typical customer's risky side (fewer logins than the
    median) lowers nothing in words; nested windows of one count say one fact; a row above the
    typical risk gets none."""
    names = [
        "days_since_last_event", "login_events_90d", "events_7d", "events_30d", "plan",
        "failed_payments_90d",
    ]  # fmt: skip
    contrib = np.array(
        [
            [-1.0, -0.6, -0.5, -0.4, -0.3, 0.2],  # recent, many logins, a safe plan
            [-1.0, -0.6, -0.5, -0.4, -0.3, 0.2],  # overdue against own gap, few logins
            [-1.0, -0.6, -0.5, -0.4, -0.3, 3.0],  # above the typical risk
        ]
    )
    values = pd.DataFrame(
        {"days_since_last_event": [3.0, 12.0, 3.0], "login_events_90d": [40.0, 2.0, 40.0],
         "events_7d": [9.0, 9.0, 9.0], "events_30d": [30.0, 30.0, 30.0],
         "plan": pd.Series(["annual", "monthly", "annual"]),
         "failed_payments_90d": [1.0, 1.0, 1.0], "active_gap_median_days": [10.0, 5.0, 10.0]}
    )  # fmt: skip
    typical = {
        "days_since_last_event": (20.0, 1),
        "login_events_90d": (10.0, -1),
        "events_7d": (2.0, -1),
        "events_30d": (8.0, -1),
        "failed_payments_90d": (0.0, 1),
    }
    settings = {"typical": typical, "safe_levels": {"plan": ["annual"]}, "attributes": ("plan",)}
    points = contrib * 10
    got = lower_risk_drivers(contrib, names, values, 3, points, **settings).to_pylist()
    assert [[d["feature"] for d in row] for row in got] == [
        ["days_since_last_event", "login_events_90d", "events_7d"],
        ["events_7d"],  # the 30-day count is the same fact
        [],
    ]
    assert got[0][0]["reason"] == "Last activity 3 days ago (usually active every 10 days)"
    assert got[0][0]["risk_points"] == -10.0 and got[0][0]["contribution"] == -1.0
    assert got[1][0]["reason"] == "9 events in the last 7 days"
    # Those rows have no reason for risk; the row above the typical risk has.
    risky = top_drivers(contrib, names, values, 3, points, **settings).to_pylist()
    assert [bool(row) for row in risky] == [False, False, True]
    # A level is said where the model scores it below average, not otherwise.
    only_plan = np.array([[0.0, 0.0, 0.0, 0.0, -0.3, 0.0]] * 2)
    plans = values.iloc[:2]
    got = lower_risk_drivers(only_plan, names, plans, 3, only_plan * 10, **settings).to_pylist()
    assert [[d["reason"] for d in row] for row in got] == [["Plan: annual"], []]


def test_a_contribution_worth_less_than_a_twentieth_of_a_point_is_no_reason():
    contrib = np.array([[0.5, 0.01, 0.2], [0.002, 0.001, 0.0]])
    points = np.array([[3.0, 0.04, 1.2], [0.02, 0.01, 0.0]])  # a weak model's average customer
    names = ["days_since_last_event", "events_30d", "failed_payments_90d"]
    values = pd.DataFrame(
        {"days_since_last_event": [3.0, 4.0], "events_30d": [2.0, 3.0],
         "failed_payments_90d": [1.0, 0.0]}
    )  # fmt: skip
    got = top_drivers(contrib, names, values, 3, points).to_pylist()
    assert [[d["feature"] for d in row] for row in got] == [
        ["days_since_last_event", "failed_payments_90d"],
        [],
    ]


def test_a_contribution_far_below_the_first_reason_is_no_reason():
    """A player's tiny country effect (0.07 points) beside an absence worth 3.6 points: below a
    tenth of the first reason, it is not shown; a second reason of some weight still is."""
    names = ["days_since_last_event", "country", "events_30d"]
    contrib = np.array([[1.2, 0.023, 0.4]])
    points = contrib * 3.0  # 3.6, 0.07 and 1.2 points
    values = pd.DataFrame(
        {"days_since_last_event": [12.0], "country": pd.Series(["IN"]), "events_30d": [1.0]}
    )
    got = top_drivers(contrib, names, values, 3, points, attributes=("country",)).to_pylist()
    assert [d["feature"] for d in got[0]] == ["days_since_last_event", "events_30d"]


def test_drivers_are_the_largest_positive_contributions_with_their_values():
    contrib = np.array([[0.5, -1.0, 2.0, 0.0], [-0.1, -0.2, -0.3, -0.4], [1.0, 1.0, 0.4, 3.0]])
    points = contrib * 10
    names = ["days_since_last_event", "events_30d", "failed_payments_90d", "plan"]
    values = pd.DataFrame(
        {"days_since_last_event": [34.2, np.nan, np.nan], "events_30d": [1.0, 2.0, 0.0],
         "failed_payments_90d": [2.0, 1e12, 2.5], "plan": pd.Series(["pro", None, "basic"]),
         "active_gap_median_days": [3.0, 1.0, np.nan]}
    )  # fmt: skip
    got = top_drivers(contrib, names, values, 3, points, attributes=("plan",)).to_pylist()
    assert [[(d["feature"], d["value"], d["value_text"]) for d in row] for row in got] == [
        [("failed_payments_90d", 2.0, None), ("days_since_last_event", 34.2, None)],
        [],
        # no event in 30 days: events_30d's contribution is the recency's fact, one driver
        [("plan", None, "basic"), ("days_since_last_event", None, None),
         ("failed_payments_90d", 2.5, None)],
    ]  # fmt: skip
    first, third = got[0], got[2]
    assert [d["contribution"] for d in first] == [2.0, 0.5]
    assert [d["risk_points"] for d in first] == [20.0, 5.0]
    assert first[0]["reason"] == "2 failed payments in the last 90 days"
    assert first[0]["label"] == "Failed payments in 90 days"
    assert first[1]["reason"] == "No activity in the last 34 days (usually active every 3 days)"
    assert [d["reason"] for d in third][:2] == ["Plan: basic", "No activity recorded yet"]
    assert [d["contribution"] for d in third] == [3.0, 2.0, 0.4]
    moved = moved_drivers(np.array([[0.0, -2.0, 1.0], [0.0, 0.0, 0.0]]), ["a", "b", "c"], 2)
    assert moved.to_pylist() == [
        [{"feature": "b", "change": -2.0, "reason": None},
         {"feature": "c", "change": 1.0, "reason": None}],
        [],
    ]  # fmt: skip
    # With the rows' values each moved feature is said: as a risk where it rose, as what holds
    # the risk down where it fell (an alert for a risen risk below the typical one says why).
    names = ["days_since_last_event", "failed_payments_90d"]
    values = pd.DataFrame({"days_since_last_event": [13.0], "failed_payments_90d": [0.0],
                           "active_gap_median_days": [20.0]})  # fmt: skip
    said = moved_drivers(np.array([[0.3, -0.2]]), names, 2, values).to_pylist()[0]
    assert [d["feature"] for d in said] == names
    assert said[0]["reason"] == "Last activity 13 days ago (usually active every 20 days)"
    assert said[1]["reason"] == "No failed payments in the last 90 days"


def test_segment_report_has_retention_metrics_and_the_risk_view(small_champion, scored):
    _, _, second = scored
    seg = pd.read_parquet(second.partition / "segments.parquet")
    overall = seg[seg["dimension"] == "all"].iloc[0]
    assert overall["customers_scored"] == len(second.scores)
    assert overall["expected_churners"] == pytest.approx(second.scores["churn_probability"].sum())
    assert {"crr", "churn_rate", "nrr", "revenue_at_risk", "share_high", "mean_risk"} <= set(
        seg.columns
    )
    # The period is the churn horizon before the run (this one excluded), whenever the previous
    # run was: a week's "churn" beside the horizon's risk read 83 % against 57 %. No run was
    # scored a horizon back, so no band has had its horizon yet: no risk_band rows.
    horizon = pd.Timedelta(days=int(small_champion.champion.model.horizon_days))
    assert (seg["period_start"] == pd.Timestamp(RUN_2) - horizon).all()
    assert (seg["period_end"] == pd.Timestamp(RUN_2)).all()
    assert set(seg["dimension"]) >= {"all", "plan"} and "risk_band" not in set(seg["dimension"])


def test_the_bands_are_measured_one_horizon_after_they_were_scored(small_champion, scored):
    """A run one horizon after the first groups the churn of that horizon by the first run's
    bands: each band's churn beside the risk it was given."""
    out, first, _ = scored
    model, version = small_champion.champion.model, small_champion.champion.version
    later = pd.Timestamp(RUN_1) + pd.Timedelta(days=int(model.horizon_days))
    third = run_scoring(small_champion.tables, later, model, version, out, log=lambda _: None)
    seg = third.segments
    assert (seg["period_start"] == pd.Timestamp(RUN_1)).all()
    bands = seg[seg["dimension"] == "risk_band"].set_index("segment")
    counts = first.scores["risk_band"].value_counts()
    for band in counts.index:
        assert bands.loc[band, "customers_start"] <= counts[band]


def test_a_rerun_for_the_same_date_gives_identical_results(small_champion, scored):
    out, _, second = scored
    before = {p.name: p.read_bytes() for p in second.partition.iterdir()}
    model, version = small_champion.champion.model, small_champion.champion.version
    run_scoring(small_champion.tables, RUN_2, model, version, out, log=lambda _: None)
    after = {p.name: p.read_bytes() for p in second.partition.iterdir()}
    assert before.keys() == after.keys()
    for name in before:
        assert before[name] == after[name], name


def test_a_crash_mid_run_leaves_previous_partitions_whole(small_champion, scored, monkeypatch):
    out, _, second = scored
    before = {p.name: p.read_bytes() for p in second.partition.iterdir()}

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(batch, "segment_report", crash)
    model, version = small_champion.champion.model, small_champion.champion.version
    with pytest.raises(RuntimeError, match="killed"):
        run_scoring(small_champion.tables, RUN_2, model, version, out, log=lambda _: None)
    with pytest.raises(RuntimeError, match="killed"):
        run_scoring(small_champion.tables, "2024-12-15", model, version, out, log=lambda _: None)
    assert {p.name: p.read_bytes() for p in second.partition.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["as_of=2024-12-01", "as_of=2024-12-08"]


def test_no_eligible_customers_is_a_clear_error(small_champion, tmp_path):
    model, version = small_champion.champion.model, small_champion.champion.version
    with pytest.raises(ValueError, match="no customers are eligible on 1995-01-01"):
        run_scoring(
            small_champion.tables, "1995-01-01", model, version, tmp_path, log=lambda _: None
        )


def test_score_command_uses_the_champion_and_logs_the_run(small_champion, tmp_path, monkeypatch):
    from churn.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_champion.tracking_uri)
    monkeypatch.chdir(small_champion.root)
    result = CliRunner().invoke(
        app,
        [
            "score",
            "--data",
            str(small_champion.data_dir),
            "--as-of",
            "2024-12-15",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "scored" in result.output and "risk bands: high" in result.output
    # each band with the probabilities it holds
    assert re.search(
        r"risk bands: high [\d,]+ \(\d+\.\d+% and above\), medium [\d,]+ \(", result.output
    )
    assert re.search(r"low [\d,]+ \(below \d+\.\d+%\)", result.output)
    # The riskiest customers: probability in percent, band, reasons in words with points.
    listing = result.output.split("riskiest customers (reasons with their risk points):\n")[1]
    first, second = listing.splitlines()[:2]
    assert re.fullmatch(r"  \S+  +\d+\.\d%  (high|medium|low)", first), first
    assert re.fullmatch(r" +\+\d+\.\d pts  [A-Z0-9][^_]+", second), second
    assert (tmp_path / "s" / "as_of=2024-12-15" / "scores.parquet").exists()


def test_a_risk_band_nobody_reaches_is_explained_in_run_json(small_champion, tmp_path):
    """Bands are thresholds set at training; when today's customers all fall below the 'high'
    one, run.json says so and why (no silent "high 0")."""
    champion = small_champion.champion
    model = dataclasses.replace(champion.model, band_thresholds={"high": 0.999, "medium": 0.0})
    run = run_scoring(
        small_champion.tables, RUN_1, model, champion.version, tmp_path, log=lambda _: None
    )
    info = json.loads((run.partition / "run.json").read_text())
    assert "high" not in info["bands"] and info["bands"]["medium"] == info["customers_scored"]
    [note] = info["band_notes"]
    assert note.startswith(f"risk band 'high' holds none of the {info['customers_scored']:,}")
    # the date of the customers the bands were set on: the day after the training data's end
    end = small_champion.tables.data_end().normalize() + pd.Timedelta(days=1)
    assert model.bands_set_on() == str(end.date()) != model.trained_until
    assert "99.9%" in note and f"set on the customers of {end.date()} at training" in note
    assert "Risk band &#x27;high&#x27; holds none" in (run.partition / "report.html").read_text()
    normal = run_scoring(
        small_champion.tables, RUN_1, champion.model, champion.version, tmp_path / "b",
        log=lambda _: None,
    )  # fmt: skip
    assert normal.summary["band_notes"] == []


INACTIVE_NAMES = [
    "days_since_last_event", "events_30d", "active_days_30d", "value_30d", "purchase_events_30d",
    "events_90d", "active_days_90d", "value_90d", "purchase_events_90d", "revenue_total",
]  # fmt: skip


def inactive_rows() -> pd.DataFrame:
    """Row 0 bought nothing for 120 days; row 1 bought 20 days ago and did more besides
    (nothing to merge); row 2 bought 45 days ago (only the 30-day window is empty)."""
    return pd.DataFrame(
        {
            "days_since_last_event": [120.0, 20.0, 45.0],
            "events_30d": [0.0, 2.0, 0.0], "active_days_30d": [0.0, 1.0, 0.0],
            "value_30d": [0.0, 3.0, 0.0], "purchase_events_30d": [0.0, 1.0, 0.0],
            "events_90d": [0.0, 5.0, 1.0], "active_days_90d": [0.0, 3.0, 1.0],
            "value_90d": [0.0, 9.0, 1.0], "purchase_events_90d": [0.0, 3.0, 1.0],
            "revenue_total": [12.0, 300.0, 40.0],
            "active_gap_median_days": [30.0, 10.0, 20.0],
        }
    )  # fmt: skip


def test_an_empty_activity_window_is_one_driver_not_a_sentence_per_feature():
    """The CDNOW case: 'No activity value in the last 90 days' and 'Not active on any of the
    last 90 days' beside each other said one thing twice. Now the window's zeros add to the
    recency, whose sentence says it once, with their points together."""
    rng = np.random.default_rng(1)
    contrib = rng.uniform(0.1, 1.0, (3, len(INACTIVE_NAMES)))
    contrib[:, INACTIVE_NAMES.index("revenue_total")] += 1.0  # a reason beside the merged one
    points = contrib * 7
    got = top_drivers(contrib, INACTIVE_NAMES, inactive_rows(), 3, points).to_pylist()
    row0 = got[0]
    assert row0[0]["feature"] == "days_since_last_event"
    assert row0[0]["contribution"] == pytest.approx(contrib[0, :9].sum())
    assert row0[0]["risk_points"] == pytest.approx(points[0, :9].sum())
    assert row0[0]["reason"] == "No activity in the last 3 months (usually active every 30 days)"
    assert [d["feature"] for d in row0[1:]] == ["revenue_total"]  # nothing else is positive
    untouched = sorted(range(len(INACTIVE_NAMES)), key=lambda j: -contrib[1, j])[:3]
    assert [d["feature"] for d in got[1]] == [INACTIVE_NAMES[j] for j in untouched]
    merged = [d["feature"] for d in got[2]]
    assert not {"events_30d", "active_days_30d", "value_30d", "purchase_events_30d"} & set(merged)
    assert got[2][0]["contribution"] == pytest.approx(contrib[2, :5].sum())


def test_a_window_of_one_event_type_is_said_by_that_type():
    """A gym's door log has one event type: "3 events in the last 90 days" is said as "3
    checkin events in the last 90 days". Where other events happened too, the total stays."""
    names = ["events_90d", "checkin_events_90d", "tenure_days"]
    values = pd.DataFrame(
        {"events_90d": [3.0, 5.0], "checkin_events_90d": [3.0, 2.0], "tenure_days": [400.0] * 2}
    )
    contrib = np.array([[0.4, 0.1, 0.2], [0.4, 0.1, 0.2]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [d["feature"] for d in got[0]] == ["checkin_events_90d", "tenure_days"]
    assert got[0][0]["reason"] == "3 checkin events in the last 90 days"
    assert got[0][0]["contribution"] == pytest.approx(0.5)
    assert [d["feature"] for d in got[1]] == names[:1] + names[2:] + names[1:2]


def test_the_trend_of_an_empty_window_is_part_of_the_inactivity_fact():
    """The demo case: 'Activity down 100% on the previous 30 days' (or, with nothing before
    either, 'No activity in the last 60 days') beside 'No activity in the last 42 days'."""
    names = ["days_since_last_event", "events_30d", "events_trend_30d", "value_trend_30d"]
    values = pd.DataFrame(
        {"days_since_last_event": [42.0, 64.0, 5.0], "events_30d": [0.0, 0.0, 3.0],
         "events_trend_30d": [-1.0, np.nan, -0.5], "value_trend_30d": [-1.0, np.nan, -0.2]}
    )  # fmt: skip
    contrib = np.array([[0.4, 0.1, 0.3, 0.2], [0.4, 0.1, 0.3, 0.2], [0.4, 0.1, 0.3, 0.2]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [[d["feature"] for d in row] for row in got] == [
        ["days_since_last_event"], ["days_since_last_event"],
        ["days_since_last_event", "events_trend_30d", "value_trend_30d"],
    ]  # fmt: skip
    assert got[0][0]["contribution"] == pytest.approx(1.0)
    assert got[2][1]["reason"] == "Activity down 67% on the previous 30 days"


def test_the_recency_against_the_usual_gap_is_the_recencys_driver():
    names = ["days_since_last_event", "overdue_ratio", "tickets_open"]
    values = pd.DataFrame(
        {"days_since_last_event": [42.0, 3.0], "overdue_ratio": [10.5, 0.75],
         "tickets_open": [1.0, 1.0], "active_gap_median_days": [4.0, 4.0]}
    )  # fmt: skip
    contrib = np.array([[0.5, 0.2, 0.3], [-0.2, 0.4, 0.3]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [[(d["feature"], round(d["contribution"], 6)) for d in row] for row in got] == [
        [("days_since_last_event", 0.7), ("tickets_open", 0.3)],
        # 3 days of a usual 4 is no silence to worry about: no reason (training.drivers.
        # not_overdue; "No activity in the last 7 hours (usually active every 4 days)" had been)
        [("tickets_open", 0.3)],
    ]
    assert got[0][0]["reason"] == "No activity in the last 42 days (usually active every 4 days)"
    # the BG/NBD chance of no purchase is that fact again, as a second probability: one driver
    names = [*names, "no_activity_chance_30d"]
    values["no_activity_chance_30d"] = [1.0, 0.2]
    contrib = np.array([[0.5, 0.2, 0.3, 0.6], [-0.2, 0.4, 0.3, 0.0]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [(d["feature"], round(d["contribution"], 6)) for d in got[0]] == [
        ("days_since_last_event", 1.3), ("tickets_open", 0.3)
    ]  # fmt: skip


def test_the_purchase_rhythm_is_the_last_purchases_driver_not_the_last_e_mails():
    """A shop that imports e-mail opens beside its purchases: the top alert read "No activity in
    the last 14 hours" for a buyer 6 months past his last purchase, the BG/NBD chance of no
    purchase said on the e-mail he opened last night; and "Last activity 3 days ago (usually a
    purchase every 30 days)" of one 133 days past his. The rhythm (the chance, how overdue)
    is the last purchase's; any activity is said without the purchases' gap."""
    names = ["days_since_last_event", "days_since_last_active", "overdue_ratio",
             "no_activity_chance_60d", "tickets_open"]  # fmt: skip
    values = pd.DataFrame(
        {"days_since_last_event": [0.58, 3.0], "days_since_last_active": [173.0, 133.0],
         "overdue_ratio": [np.nan, 4.4], "no_activity_chance_60d": [0.92, 0.8],
         "tickets_open": [0.0, 0.0], "active_gap_median_days": [np.nan, 30.0],
         "lifetime_active_days": [1.0, 5.0]}
    )  # fmt: skip
    contrib = np.array([[-0.27, 0.3, 0.0, 1.13, 0.0], [-0.3, 0.5, 0.4, 0.6, 0.0]])
    got = top_drivers(
        contrib, names, values, 3, contrib * 10, qualifying_events=["purchase"]
    ).to_pylist()
    first = [(d["feature"], round(d["contribution"], 6)) for d in got[0]]
    assert first == [("days_since_last_active", 1.43)]
    assert got[0][0]["reason"] == "Last purchase 6 months ago"
    assert [(d["feature"], round(d["contribution"], 6)) for d in got[1]] == [
        ("days_since_last_active", 1.5)
    ]
    assert got[1][0]["reason"] == "Last purchase 4 months ago (usually every 30 days)"
    lower = describe_reason(
        "days_since_last_event", 3.0, values.iloc[1], qualifying=("purchase",), lowers=True
    )
    assert lower == "Last activity 3 days ago (last purchase 4 months ago)"
    # Where the last event is the last purchase, the purchases' gap is said with it.
    same = describe_reason(
        "days_since_last_event", 40.0, values.iloc[1].copy().replace({133.0: 40.0}),
        qualifying=("purchase",),
    )  # fmt: skip
    assert same == "No activity in the last 40 days (usually a purchase every 30 days)"


def describe_reason(feature, value, row, qualifying=(), lowers=False) -> str:
    """The sentence of one feature's value with the row's other values as its context."""
    from features.dictionary import LOWERS_RISK, describe

    context = {k: v for k, v in row.items() if pd.notna(v)} | (
        {LOWERS_RISK: True} if lowers else {}
    )
    return describe(feature, qualifying_events=qualifying).text(value, context=context)


def test_the_last_nps_response_is_one_driver():
    """Its score, flags and age are one response; without one, no average either."""
    names = ["nps_last", "nps_detractor", "nps_promoter", "days_since_nps", "nps_mean"]
    values = pd.DataFrame(
        {"nps_last": [6.0, np.nan], "nps_detractor": [1.0, np.nan], "nps_promoter": [0.0, np.nan],
         "days_since_nps": [240.0, np.nan], "nps_mean": [7.5, np.nan], "nps_responses": [2.0, 0.0]}
    )  # fmt: skip
    contrib = np.array([[0.1, 0.3, 0.05, 0.2, 0.15], [0.1, 0.1, 0.1, 0.1, 0.05]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [[(d["reason"], round(d["contribution"], 6)) for d in row] for row in got] == [
        [("NPS 6 of 10 (detractor), 8 months ago", 0.65), ("Average NPS 7.5 of 10 over 2 responses", 0.15)],
        [("No NPS response yet", 0.45)],
    ]  # fmt: skip


def test_values_that_state_one_fact_make_one_reason():
    """A KKBox-shaped export read "1 cancel event in the last 30 days" beside "... in the last 90
    days", and "Customer for 37 days" beside "First activity 37 days ago"."""
    names = [
        "cancel_events_7d",
        "cancel_events_30d",
        "cancel_events_90d",
        "tickets_30d",
        "tickets_90d",
        "tenure_days",
        "days_since_first_event",
    ]
    values = pd.DataFrame(
        {"cancel_events_7d": [0.0, 1.0], "cancel_events_30d": [1.0, 1.0],
         "cancel_events_90d": [1.0, 2.0], "tickets_30d": [0.0, 1.0], "tickets_90d": [0.0, 2.0],
         "tenure_days": [37.4, 400.0], "days_since_first_event": [37.0, 200.0]}
    )  # fmt: skip
    contrib = np.array(
        [[0.07, 0.3, 0.2, 0.1, 0.15, 0.25, 0.35], [0.07, 0.3, 0.2, 0.1, 0.15, 0.25, 0.35]]
    )
    got = top_drivers(contrib, names, values, 7, contrib * 10).to_pylist()
    assert [[(d["reason"], round(d["contribution"], 6)) for d in row] for row in got] == [
        [("Customer for 37 days", 0.6), ("1 cancel event in the last 30 days", 0.5),
         ("No support tickets since signing up 37 days ago", 0.25), ("No cancel events in the last 7 days", 0.07)],
        # Different values are different facts; the one cancel is said by its shortest window.
        [("1 cancel event in the last 7 days", 0.37), ("First recorded activity 7 months ago", 0.35),
         ("Customer for 13 months", 0.25), ("2 cancel events in the last 90 days", 0.2),
         ("2 support tickets in the last 90 days", 0.15), ("1 support ticket in the last 30 days", 0.1)],
    ]  # fmt: skip
    merged, points = merge_same_facts(contrib, contrib * 2, names, values)
    np.testing.assert_allclose(merged.sum(axis=1), contrib.sum(axis=1))  # nothing lost
    np.testing.assert_allclose(points, merged * 2)


def test_too_few_active_days_for_a_usual_gap_is_said_once():
    """A mobile game's new players: "Too few active days to measure a usual gap" filled two of
    three reasons (the mean and the median gap, both missing)."""
    names = ["active_gap_mean_days", "active_gap_median_days", "days_since_last_event"]
    values = pd.DataFrame(
        {"active_gap_mean_days": [np.nan, 6.2], "active_gap_median_days": [np.nan, 6.0],
         "days_since_last_event": [2.0, 9.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [[(d["feature"], round(d["contribution"], 6)) for d in row] for row in got] == [
        [("active_gap_median_days", 0.5), ("days_since_last_event", 0.1)],
        # the recency's sentence states the usual gap: one reason (a telecom export read
        # "(usually active every 5 months)" in its first reason and again as its third)
        [("days_since_last_event", 0.6)],
    ]
    assert got[0][0]["reason"] == "Too few active days to measure a usual gap"
    assert "(usually active every 6 days)" in got[1][0]["reason"]


def test_no_payment_is_said_once_not_again_as_no_paid_period():
    names = ["days_until_paid_period_ends", "days_since_last_payment", "tenure_days"]
    values = pd.DataFrame(
        {"days_until_paid_period_ends": [np.nan, np.nan], "days_since_last_payment": [np.nan, 12.0],
         "tenure_days": [400.0, 400.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [d["reason"] for d in got[0]][:1] == ["No payment recorded yet"]
    assert got[0][0]["contribution"] == pytest.approx(0.5)
    # payments without a period end: two facts, both said
    assert [d["reason"] for d in got[1]][:2] == [
        "No paid period recorded yet",
        "Last payment 12 days ago",
    ]


def test_no_order_is_said_once_not_by_each_payment_feature():
    """A game's players without a purchase read "No order yet | No order yet | No order yet":
    the last payment's amount, the average one and the last one's age, all missing."""
    names = ["last_payment_amount", "mean_payment_amount", "days_since_last_payment", "tenure_days"]
    values = pd.DataFrame(
        {"last_payment_amount": [np.nan, 4.99], "mean_payment_amount": [np.nan, 4.99],
         "days_since_last_payment": [np.nan, 3.0], "tenure_days": [40.0, 40.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.25, 0.2, 0.1]] * 2)
    got = top_drivers(contrib, names, values, 3, contrib * 10, orders=True).to_pylist()
    reasons = [d["reason"] for d in got[0]]
    assert reasons.count("No order yet") == 1 and reasons[0] == "No order yet"
    assert got[0][0]["contribution"] == pytest.approx(0.75)
    assert len({d["reason"] for d in got[1]}) == len(got[1])  # with orders: their own facts


def test_no_payment_is_said_once_not_again_as_no_revenue():
    """A B2B export's trials read "No payment recorded yet" and "No revenue so far" one under
    the other: one fact. With payments, the revenue over the whole history is its own fact."""
    names = ["revenue_total", "days_since_last_payment", "tenure_days"]
    values = pd.DataFrame(
        {"revenue_total": [0.0, 1440.0], "days_since_last_payment": [np.nan, 30.0],
         "tenure_days": [14.0, 400.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [d["reason"] for d in got[0]][:1] == ["No payment recorded yet"]
    assert got[0][0]["contribution"] == pytest.approx(0.5)
    assert "No revenue so far" not in [d["reason"] for d in got[0]]
    assert [d["feature"] for d in got[1]][:2] == ["revenue_total", "days_since_last_payment"]


def test_the_last_payment_says_the_period_it_paid_for_once():
    """An annual plan near its renewal: "Last payment 12 months ago" and "Paid period ends in 11
    days" were two reasons for one fact (a B2B export's riskiest accounts)."""
    names = ["days_until_paid_period_ends", "days_since_last_payment", "tenure_days"]
    values = pd.DataFrame(
        {"days_until_paid_period_ends": [11.0, -9.0, np.nan],
         "days_since_last_payment": [354.0, 40.0, 40.0], "tenure_days": [800.0, 400.0, 400.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1]] * 3)
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [[(d["reason"], round(d["contribution"], 6)) for d in row][:1] for row in got] == [
        [("Last payment 12 months ago, for a period that ends in 11 days", 0.5)],
        [("Last payment 40 days ago, for a period that ended 9 days ago", 0.5)],
        [("No paid period recorded yet", 0.3)],  # payments that pay no period: two facts
    ]
    assert [d["feature"] for d in got[0]] == ["days_since_last_payment", "tenure_days"]


def test_an_orders_last_payment_and_last_active_day_are_said_once():
    """An order export: the last order is the last payment and the last active day. "Last
    payment 5 months ago" beside "Last active 5 months ago" was one fact twice (891 customers);
    a payment on another day is its own fact."""
    names = ["days_since_last_payment", "days_since_last_active", "days_since_last_event"]
    values = pd.DataFrame(
        {"days_since_last_payment": [150.0, 20.0], "days_since_last_active": [151.0, 90.0],
         "days_since_last_event": [40.0, 3.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [(d["feature"], round(d["contribution"], 6)) for d in got[0]] == [
        ("days_since_last_active", 0.5), ("days_since_last_event", 0.1)
    ]  # fmt: skip
    assert [d["feature"] for d in got[1]][:2] == [
        "days_since_last_payment", "days_since_last_active"
    ]  # fmt: skip


def test_no_activity_over_the_whole_history_is_said_once():
    """ "No activity so far" (lifetime events 0) beside "No activity recorded yet" (no recency)
    was one fact twice on a telecom export."""
    names = ["lifetime_events", "lifetime_active_days", "days_since_last_event", "tenure_days"]
    values = pd.DataFrame(
        {"lifetime_events": [0.0], "lifetime_active_days": [0.0],
         "days_since_last_event": [np.nan], "tenure_days": [400.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1, 0.05]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [(d["feature"], round(d["contribution"], 6)) for d in got[0]] == [
        ("days_since_last_event", 0.6)
    ]
    assert got[0][0]["reason"] == "No activity recorded yet"


def test_a_window_without_payments_is_the_last_payments_age_and_no_activity_is_said_once():
    """From a KKBox-shaped export: "No payments in the last 30 days" beside "Last payment 31 days
    ago" (790 rows), "No activity recorded yet" beside "No active day recorded yet"."""
    names = [
        "payments_30d",
        "revenue_30d",
        "days_since_last_payment",
        "days_since_last_event",
        "days_since_last_active",
    ]
    values = pd.DataFrame(
        {"payments_30d": [0.0, 0.0], "revenue_30d": [0.0, -149.0],
         "days_since_last_payment": [31.0, 40.0], "days_since_last_event": [np.nan, 3.0],
         "days_since_last_active": [np.nan, 12.0]}
    )  # fmt: skip
    contrib = np.array([[0.2, 0.1, 0.3, 0.25, 0.15], [0.2, 0.1, 0.3, 0.25, 0.15]])
    got = top_drivers(contrib, names, values, 5, contrib * 10).to_pylist()
    assert [[(d["reason"], round(d["contribution"], 6)) for d in row] for row in got] == [
        [("Last payment 31 days ago", 0.6), ("No activity recorded yet", 0.4)],
        # Net refunds are their own fact; the last active day 12 days ago is not the last event.
        [("Last payment 40 days ago", 0.5), ("No activity in the last 3 days", 0.25),
         ("Last active 12 days ago", 0.15), ("Net refunds of 149 in the last 30 days", 0.1)],
    ]  # fmt: skip


def test_no_payment_while_the_paid_period_runs_is_no_reason():
    """An annual plan's invoice 40 days back read "Revenue down 100% on the previous 30 days"
    (78 annual payers of a SaaS export, 3 % of whom churned against 10 %): inside a paid period
    that still runs no payment was due. Once the period has ended, the empty window is the last
    payment's age as before."""
    names = [
        "payments_30d",
        "revenue_30d",
        "revenue_trend_30d",
        "days_since_last_payment",
        "days_until_paid_period_ends",
        "tickets_30d",
        "plan",
    ]
    values = pd.DataFrame(
        {"payments_30d": [0.0, 0.0, 0.0], "revenue_30d": [0.0, 0.0, 0.0],
         "revenue_trend_30d": [-1.0, -1.0, np.nan],
         "days_since_last_payment": [40.0, 400.0, 270.0],
         "days_until_paid_period_ends": [325.0, -35.0, 95.0], "tickets_30d": [2.0, 2.0, 2.0],
         "plan": ["annual", "monthly", "annual"]}
    )  # fmt: skip
    contrib = np.tile([0.2, 0.1, 0.3, 0.05, 0.0, 0.04, 0.0], (3, 1))
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    for row in (0, 2):  # revenue down 100 %, and none in either window
        running = [d["feature"] for d in got[row]]
        assert "revenue_trend_30d" not in running and "payments_30d" not in running
        assert "revenue_30d" not in running and running[0] == "days_since_last_payment"
    ended = [(d["feature"], round(d["contribution"], 6)) for d in got[1]]
    assert ended[:2] == [("days_since_last_payment", 0.35), ("revenue_trend_30d", 0.3)]


def test_a_downgrade_is_said_once_by_the_last_payments_change():
    """A SaaS export's 44 customers read "Last payment down 61% on the one before" beside
    "Revenue down 61% on the previous 30 days" and "1 downgrade in the last 90 days": one
    downgrade. A trend that is not the payment's change, or a downgrade before the last
    payment, stays its own fact."""
    names = ["last_payment_change", "revenue_trend_30d", "downgrades_90d", "tickets_30d", "plan"]
    values = pd.DataFrame(
        {"last_payment_change": [-0.61, -0.61, -0.61], "revenue_trend_30d": [-0.613, -0.2, -0.61],
         "downgrades_90d": [1.0, 1.0, 2.0], "days_since_last_payment": [12.0, 120.0, 12.0],
         "tickets_30d": [1.0, 1.0, 1.0], "plan": ["pro", "team", "pro"]}
    )  # fmt: skip
    contrib = np.tile([0.2, 0.3, 0.25, 0.1, 0.01], (3, 1))
    merged, _ = merge_same_facts(contrib, contrib * 10, names, values)
    np.testing.assert_allclose(merged[0], [0.75, 0.0, 0.0, 0.1, 0.01])
    np.testing.assert_allclose(merged[1], [0.2, 0.3, 0.25, 0.1, 0.01])  # paid 120 days ago
    np.testing.assert_allclose(merged[2], [0.5, 0.0, 0.25, 0.1, 0.01])  # two: one is older
    got = top_drivers(contrib[:1], names, values.iloc[:1], 3, contrib[:1] * 10).to_pylist()
    assert got[0][0]["reason"] == "Last payment down 61% on the one before"
    assert len(got[0]) == 2


def test_a_windows_events_each_on_a_day_of_their_own_are_its_active_days():
    """A commit log's occasional contributors read "1 event in the last 365 days" beside
    "Active on 1 of the last 365 days": one fact. Two events on one day are two facts (the
    count and the days differ), and so is a window where other event types are counted."""
    values = pd.DataFrame(
        {"active_days_365d": [1.0, 1.0, 3.0], "events_365d": [1.0, 2.0, 3.0],
         "active_days_30d": [1.0, 1.0, 2.0], "events_30d": [1.0, 1.0, 2.0],
         "commit_events_30d": [1.0, 1.0, 1.0], "days_since_last_event": [5.0, 5.0, 5.0]}
    )  # fmt: skip
    names = list(values.columns[:5])  # the model's features: all but the recency
    contrib = np.tile([0.3, 0.2, 0.1, 0.05, 0.04], (3, 1))
    merged, _ = merge_same_facts(contrib, contrib * 10, names, values)
    # one commit in 30 days and none before in the year: one fact, said by the 30 days
    np.testing.assert_allclose(merged[0], [0.0, 0.0, 0.69, 0.0, 0.0])
    np.testing.assert_allclose(merged[1], [0.0, 0.2, 0.49, 0.0, 0.0])  # 2 events on 1 day
    # 3 events on 3 days; in 30 days 2 on 2 days, 1 of them a commit: its own fact
    np.testing.assert_allclose(merged[2], [0.5, 0.0, 0.15, 0.0, 0.04])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [d["reason"] for d in got[0]] == ["Active on 1 of the last 30 days"]
    assert [d["reason"] for d in got[2]][:2] == [
        "Active on 3 of the last 365 days",
        "Active on 2 of the last 30 days",
    ]


def test_a_customer_below_the_typical_risk_has_no_reason_for_risk():
    """Points add up to the change from the base probability: a row whose sum is not positive
    is below the typical customer's risk, and a feature that raises it a little is no reason
    ("No alerts events in the last 30 days" at 3 %, on customers who churned at 0 %)."""
    names = ["tickets_30d", "events_30d"]
    values = pd.DataFrame({"tickets_30d": [3.0, 3.0], "events_30d": [40.0, 2.0]})
    contrib = np.array([[0.3, -0.9], [0.3, 0.2]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert got[0] == []
    assert [d["feature"] for d in got[1]] == ["tickets_30d", "events_30d"]


def test_without_the_recency_feature_the_longest_empty_window_holds_the_fact():
    names = [n for n in INACTIVE_NAMES if n != "days_since_last_event"]
    contrib = np.full((3, len(names)), 0.5)
    merged, points = merge_same_facts(contrib, contrib * 2, names, inactive_rows())
    assert merged[0, names.index("events_90d")] == pytest.approx(0.5 * 8)
    assert merged[2, names.index("events_30d")] == pytest.approx(0.5 * 4)
    np.testing.assert_allclose(merged.sum(axis=1), contrib.sum(axis=1))  # nothing lost
    np.testing.assert_allclose(points, merged * 2)
    np.testing.assert_array_equal(merged[1], contrib[1])


def test_a_run_past_the_end_of_one_export_warns_and_records_it(small_champion, tmp_path):
    tables = small_champion.tables
    billing_end = pd.Timestamp(RUN_1) - pd.Timedelta(days=30)
    early = dataclasses.replace(tables, revenue=tables.revenue[tables.revenue["at"] < billing_end])
    model, version = small_champion.champion.model, small_champion.champion.version
    lines: list[str] = []
    run = run_scoring(early, RUN_1, model, version, tmp_path / "scores", log=lines.append)
    warned = [line for line in lines if line.startswith("warning: table 'revenue' ends ")]
    assert len(warned) == 1 and f"score as of {billing_end.date()}" in warned[0]
    recorded = json.loads((run.partition / "run.json").read_text())["stale_tables"]
    assert recorded == [warned[0].removeprefix("warning: ")]
    fresh = run_scoring(tables, RUN_1, model, version, tmp_path / "fresh", log=lambda _: None)
    assert fresh.summary["stale_tables"] == []


def test_a_quiet_week_in_everyones_recent_windows_is_said_in_the_run_and_its_page(
    small_champion, tmp_path
):
    """A grocery's outage (a week at 5 % of its sales) sat in every customer's 30-day window at
    the next scoring date and the run said nothing: risks read higher for everyone at once.
    The run names the week, in the log, run.json and report.html, while it is in those
    windows; a run a month later, or on the whole data, does not."""
    tables = small_champion.tables
    activity = tables.activity
    week = activity["at"].between("2024-11-18", "2024-11-25", inclusive="left")
    thinned = activity[~week | (np.arange(len(activity)) % 20 == 0)]
    quiet = dataclasses.replace(tables, activity=thinned.reset_index(drop=True))
    model, version = small_champion.champion.model, small_champion.champion.version
    lines: list[str] = []
    run = run_scoring(quiet, RUN_1, model, version, tmp_path / "scores", log=lines.append)
    said = json.loads((run.partition / "run.json").read_text())["quiet_week_notes"]
    assert len(said) == 1 and said[0].startswith(
        "the activity before this run holds a quiet week, 2024-11-18 .. 2024-11-24, at "
    )
    assert "until about 2024-12-25" in said[0]
    assert f"warning: {said[0]}" in lines
    assert "The activity before this run holds a quiet week" in (
        (run.partition / "report.html").read_text()
    )
    later = run_scoring(quiet, "2025-01-05", model, version, tmp_path / "later", log=print)
    assert later.summary["quiet_week_notes"] == []
    fresh = run_scoring(tables, RUN_1, model, version, tmp_path / "fresh", log=lambda _: None)
    assert fresh.summary["quiet_week_notes"] == []


def test_customers_whose_paid_period_ended_are_counted_and_warned_about_where_churn_is_late():
    from features.config import ChurnDefinition
    from serving.batch import paid_period_ended

    features = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "days_until_paid_period_ends": [12.0, -3.0, -25.0, np.nan],
        }
    )
    late = ChurnDefinition(horizon_days=30, observed_until="2016-06-01")
    count, warning = paid_period_ended(features, late, pd.Timestamp("2016-07-01"))
    assert count == 2
    assert warning.startswith("2 of 4 scored customers' paid period ended before 2016-07-01")
    assert "observed_until" in warning and "days_until_paid_period_ends below 0" in warning
    # Churn recorded as it happens: counted, nothing to warn about; no such feature: nothing.
    assert paid_period_ended(features, ChurnDefinition(), pd.Timestamp("2016-07-01")) == (2, None)
    on_time = ChurnDefinition(horizon_days=30, observed_until="2016-07-01")  # the export day
    assert paid_period_ended(features, on_time, pd.Timestamp("2016-07-01")) == (2, None)
    plain = features.drop(columns="days_until_paid_period_ends")
    assert paid_period_ended(plain, late, pd.Timestamp("2016-07-01")) == (0, None)


def test_a_single_review_is_said_once_and_no_review_once():
    """A marketplace's buyers review one order: "Average review 2 of 5 over 1 review" had "Last
    review 2 of 5" under it (1,061 buyers). Differing scores are two facts; without any review,
    "No review yet" is said once, not three times."""
    names = ["review_mean", "review_last", "reviews", "tenure_days"]
    values = pd.DataFrame(
        {"review_mean": [2.0, 3.0, np.nan], "review_last": [2.0, 1.0, np.nan],
         "reviews": [1.0, 2.0, 0.0], "tenure_days": [100.0, 100.0, 100.0]}
    )  # fmt: skip
    contrib = np.array([[0.3, 0.2, 0.1, 0.05]] * 3)
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert [(d["reason"], round(d["contribution"], 6)) for d in got[0]][:1] == [
        ("Average review 2 of 5 over 1 review", 0.5)
    ]
    assert "Last review 2 of 5" not in [d["reason"] for d in got[0]]
    assert [d["reason"] for d in got[1]][:2] == [
        "Average review 3 of 5 over 2 reviews", "Last review 1 of 5"
    ]  # fmt: skip
    assert [d["reason"] for d in got[2]].count("No review yet") == 1


def test_a_rising_or_unchanged_activity_trend_is_no_reason_for_risk():
    """A 6-week streaming log read "Activity up 30% on the previous 30 days" as a risk reason
    404 times (the earlier window reached before the export's start): a rise of something
    whose rise lowers the risk is never a reason; a fall still is."""
    names = ["events_trend_30d", "tickets_open"]
    values = pd.DataFrame({"events_trend_30d": [0.3, 0.0, -0.3], "tickets_open": [1.0] * 3})
    contrib = np.array([[0.5, 0.2]] * 3)
    got = top_drivers(contrib, names, values, 2, contrib * 10).to_pylist()
    assert [[d["feature"] for d in row] for row in got] == [
        ["tickets_open"],
        ["tickets_open"],
        ["events_trend_30d", "tickets_open"],
    ]
    assert got[2][0]["reason"] == "Activity down 46% on the previous 30 days"


def test_retention_is_measured_until_the_scored_datas_observed_until_not_the_models(
    small_champion, tmp_path
):
    """A model trained on an export cut with observed_until = the cut left every later run's
    retention report unmeasured on exports weeks newer ("the period ends after the day churn is
    recorded until"). The run reads the scored data's observed_until (None: churn recorded as it
    happens); the model's own is the training export's."""
    from dataclasses import replace as copy_with

    model, version = small_champion.champion.model, small_champion.champion.version
    config = dict(model.feature_config)
    config["churn"] = {**dict(config.get("churn", {})), "observed_until": "2024-10-01"}
    cut = copy_with(model, feature_config=config)
    assert cut.features_config().churn.observed_until == "2024-10-01"
    quiet = lambda _: None  # noqa: E731
    run = run_scoring(small_champion.tables, RUN_2, cut, version, tmp_path / "a", log=quiet)
    overall = run.segments[run.segments["dimension"] == "all"].iloc[0]
    assert overall["crr"] > 0 and overall["customers_start"] > 0
    late = run_scoring(
        small_champion.tables, RUN_2, cut, version, tmp_path / "b", log=quiet,
        observed_until="2024-11-20",
    )  # fmt: skip
    overall = late.segments[late.segments["dimension"] == "all"].iloc[0]
    assert pd.isna(overall["crr"]) and overall["customers_scored"] == len(late.scores)


def test_the_time_of_years_part_of_each_change_is_said_apart(small_champion, tmp_path):
    """Where churn follows the calendar the level of the weeks (training.seasonal_level) moves
    every probability at once between two runs: each score says that part (level_delta: the
    same log-odds at this run's level minus at the previous run's), and run.json says how far
    it moved everyone. Without a calendar (a level that is one mean miss) it is 0."""
    from training.seasonal_level import SeasonalLevel

    model, version = small_champion.champion.model, small_champion.champion.version
    if model.seasonal_level is not None:  # one mean miss, whatever the training dates showed
        model = dataclasses.replace(
            model, seasonal_level=dataclasses.replace(model.seasonal_level, between=0.0)
        )
    flat = tmp_path / "flat"
    for run in (RUN_1, RUN_2):
        plain = run_scoring(small_champion.tables, run, model, version, flat, log=lambda _: None)
    known = plain.scores["previous_probability"].notna()
    assert known.any() and (plain.scores.loc[known, "level_delta"] == 0.0).all()
    assert plain.scores.loc[~known, "level_delta"].isna().all()
    assert "level_moved_note" not in plain.summary

    calendar = dataclasses.replace(
        model,
        seasonal_level=SeasonalLevel(
            ("2023-11-24", "2023-12-08"), (-0.5, 0.5), (0.01, 0.01), 0.0, 0.25
        ),
    )
    shift_1 = calendar.seasonal_level.shift(pd.Timestamp(RUN_1))
    shift_2 = calendar.seasonal_level.shift(pd.Timestamp(RUN_2))
    assert shift_2 - shift_1 > 0.1
    out = tmp_path / "calendar"
    first = run_scoring(small_champion.tables, RUN_1, calendar, version, out, log=lambda _: None)
    second = run_scoring(small_champion.tables, RUN_2, calendar, version, out, log=lambda _: None)
    # A first run compares with the scores of a week before (first_run_baseline), at that
    # date's level.
    week = pd.Timestamp(RUN_1) - pd.Timedelta(days=7)
    assert first.summary["first_run_baseline"] == str(week.date())
    assert (first.scores["level_delta"].dropna() != 0).all()
    rows = second.scores[second.scores["previous_probability"].notna()]
    p = rows["churn_probability"].to_numpy()
    at_previous_level = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - shift_2 + shift_1)))
    np.testing.assert_allclose(rows["level_delta"], p - at_previous_level, atol=1e-9)
    assert (rows["level_delta"] > 0).all()  # the level rose: every customer's part is up
    # The rest is the customers' own: with no calendar the same customers moved by just that.
    own = rows["probability_delta"] - rows["level_delta"]
    flat_delta = plain.scores.set_index("customer_id").loc[rows["customer_id"], "probability_delta"]
    np.testing.assert_allclose(own, flat_delta.to_numpy(), atol=0.02)
    note = second.summary["level_moved_note"]
    assert f"odds x{np.exp(shift_2 - shift_1):.2f}" in note and RUN_1 in note
    written = json.loads((second.partition / "run.json").read_text())
    assert written["level_moved_note"] == note


def test_bands_that_only_rank_say_that_low_is_no_safe_band(small_champion, tmp_path):
    """Where most customers churn within a horizon, the bands are the riskiest shares at
    training and 'low' reaches probabilities above 50 %: run.json and the page say so, with
    the thresholds and today's mean risk (a ratings site's 'low' band churned at 78 %)."""
    champion = small_champion.champion
    model = dataclasses.replace(champion.model, band_thresholds={"high": 0.881, "medium": 0.801})
    run = run_scoring(
        small_champion.tables, RUN_1, model, champion.version, tmp_path, log=lambda _: None
    )
    notes = [n for n in run.summary["band_notes"] if "rank the customers" in n]
    assert len(notes) == 1
    assert "'high' from 88.1%, 'medium' from 80.1%" in notes[0]
    assert "up to 80.1% and does not mean unlikely to leave" in notes[0]
    assert f"mean risk today {run.summary['mean_risk']:.1%}" in notes[0]
    page = (run.partition / "report.html").read_text()
    assert "The risk bands rank the customers here" in page
    normal = run_scoring(
        small_champion.tables, RUN_1, champion.model, champion.version, tmp_path / "b",
        log=lambda _: None,
    )  # fmt: skip
    assert not any("rank the customers" in n for n in normal.summary["band_notes"])


def test_a_customer_with_one_or_two_active_days_is_said_as_such():
    """A ratings site's users (benchmarks/README.md, session 32): one gap is no habit, so two
    active days read as two days and their gap, not "usually every day"; with one active day
    the share of days active is the count's fact, said once (three reasons had said it), and so
    with two."""
    names = ["days_since_last_event", "lifetime_active_days", "active_day_rate"]
    values = pd.DataFrame(
        {
            "days_since_last_event": [270.0, 270.0, 270.0],
            "lifetime_active_days": [2.0, 1.0, 12.0],
            "active_day_rate": [2 / 300, 1 / 270, 12 / 300],
            "active_gap_median_days": [1.0, np.nan, 6.0],
        }
    )
    contrib = np.array([[0.9, 0.4, 0.3], [0.9, 0.4, 0.3], [0.9, 0.4, 0.3]])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    assert (
        got[0][0]["reason"]
        == "No activity in the last 8 months (2 active days in all, 1 day apart)"
    )
    assert got[2][0]["reason"] == "No activity in the last 8 months (usually active every 6 days)"
    one_day = {d["feature"]: d for d in got[1]}
    # one active day: the count and the share of days active are the recency's sentence
    assert "active_day_rate" not in one_day and "lifetime_active_days" not in one_day
    assert one_day["days_since_last_event"]["contribution"] == pytest.approx(1.6)
    assert one_day["days_since_last_event"]["reason"] == "Only one active day so far, 9 months ago"
    # two days are no habit either (a grocery's two baskets 7 months apart read "A purchase on
    # <1% of days since the first" as a third reason); twelve are
    assert "active_day_rate" not in {d["feature"] for d in got[0]}
    assert "active_day_rate" in {d["feature"] for d in got[2]}
    # a lifetime count of events that each fell on a day of their own is the days' count
    names = [*names, "lifetime_events"]
    values["lifetime_events"] = [2.0, 3.0, 12.0]
    contrib = np.hstack([contrib, np.full((3, 1), 0.2)])
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    said = [{d["feature"] for d in row} for row in got]
    assert "lifetime_events" not in said[0] and "lifetime_events" not in said[2]
    assert "lifetime_events" in said[1]  # 3 events on 1 day: a fact of its own
    # With one active day there is no gap to measure: "Too few days with a commit to measure a
    # usual gap" beside "1 day with a commit" (167 of 459 contributors of a commit log) is the
    # count's fact; with two days the gap is known and the recency's sentence says it.
    names = [*names[:3], "active_gap_median_days", "active_gap_mean_days"]
    values["active_gap_mean_days"] = values["active_gap_median_days"]
    contrib = np.array([[0.9, 0.4, 0.3, 0.35, 0.1]] * 3)
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    one_day = {d["feature"]: d for d in got[1]}
    assert set(one_day) == {"days_since_last_event"}  # the gaps and the count: one fact
    assert one_day["days_since_last_event"]["contribution"] == pytest.approx(2.05)


def test_a_new_one_time_buyer_reads_as_one_not_as_a_silence():
    """An order export's alerts (benchmarks/README.md, session 38): buyers of one basket 10
    hours before the run entered the high band with "No activity in the last 10 hours". Their
    risk is the one purchase: said once, with the first purchase's age and the tenure that are
    that day's; the revenue stays a reason of its own. A customer who signed up long before
    their one active day keeps the tenure as a fact of its own."""
    names = ["days_since_last_event", "lifetime_active_days", "tenure_days",
             "days_since_first_event", "revenue_total"]  # fmt: skip
    values = pd.DataFrame(
        {
            "days_since_last_event": [0.41, 0.41, 0.41],
            "lifetime_active_days": [1.0, 1.0, 4.0],
            "tenure_days": [0.41, 400.0, 0.41],
            "days_since_first_event": [0.41, 0.41, 0.41],
            "revenue_total": [112.0, 112.0, 112.0],
            "active_gap_median_days": [np.nan, np.nan, 0.1],
        }
    )
    contrib = np.array([[0.05, 0.2, 0.16, 0.16, 0.4]] * 3)
    wording = {"qualifying_events": ("purchase",), "orders": True}
    got = top_drivers(contrib, names, values, 5, contrib * 10, **wording).to_pylist()
    first = {d["feature"]: d for d in got[0]}
    assert set(first) == {"days_since_last_event", "revenue_total"}
    assert first["days_since_last_event"]["reason"] == (
        "Only one day with a purchase so far, 10 hours ago"
    )
    assert first["days_since_last_event"]["contribution"] == pytest.approx(0.57)
    assert all("No activity" not in d["reason"] for row in got[:2] for d in row)
    signed_up_long_ago = {d["feature"] for d in got[1]}
    assert "tenure_days" in signed_up_long_ago
    assert "lifetime_active_days" not in signed_up_long_ago
    # its earlier purchases may predate the data: one day "in the data", not "so far"
    recency = next(d for d in got[1] if d["feature"] == "days_since_last_event")
    assert recency["reason"] == "Only one day with a purchase in the data, 10 hours ago"
    # four active days: the recency is what it was
    recency = next(d for d in got[2] if d["feature"] == "days_since_last_event")
    assert recency["reason"].startswith("No activity in the last 9 hours")
    # one purchase day 20 days back, a cancellation since (the recency counts any activity):
    # not "one day, 10 hours ago"; the count stays a fact of its own
    values["days_since_last_active"] = [1.0, 1.0, 1.0]
    values.loc[0, "days_since_last_active"] = 20.0
    got = top_drivers(contrib, names, values, 5, contrib * 10, **wording).to_pylist()
    cancelled = {d["feature"]: d for d in got[0]}
    assert "lifetime_active_days" in cancelled
    assert "Only one" not in cancelled["days_since_last_event"]["reason"]
    assert got[1][0]["reason"] == "Only one day with a purchase in the data, 10 hours ago"


def test_a_one_time_buyers_window_and_revenue_trend_are_that_day_again():
    """Ta Feng's one-time buyers (session 39's judge): "Only one day with a purchase so far, 49
    days ago", "Active on 1 of the 49 days since the first recorded activity" and "Revenue down
    100% on the previous month", one fact three times. A window's one active day and an order
    export's revenue trend of -100 % are the recency's; a buyer of four days keeps them."""
    names = ["days_since_last_event", "lifetime_active_days", "active_days_90d",
             "revenue_trend_30d"]  # fmt: skip
    values = pd.DataFrame(
        {
            "days_since_last_event": [49.0, 49.0],
            "lifetime_active_days": [1.0, 4.0],
            "active_days_90d": [1.0, 4.0],
            "revenue_trend_30d": [-1.0, -1.0],
            "days_since_first_event": [49.0, 80.0],
        }
    )
    contrib = np.array([[0.3, 0.2, 0.25, 0.15]] * 2)
    wording = {"qualifying_events": ("purchase",), "orders": True}
    got = top_drivers(contrib, names, values, 4, contrib * 10, **wording).to_pylist()
    assert [d["feature"] for d in got[0]] == ["days_since_last_event"]
    assert got[0][0]["reason"] == "Only one day with a purchase so far, 49 days ago"
    assert got[0][0]["contribution"] == pytest.approx(0.9)
    assert {d["feature"] for d in got[1]} >= {"active_days_90d", "revenue_trend_30d"}


def test_a_failed_payment_is_said_by_its_age_and_whether_a_payment_went_through():
    """A SaaS export's accounts with a failure in the last 30 days churned at twice the rate of
    the rest, and 3 of 1,600 reasons mentioned failures. The failure's age is a feature, said
    with whether a payment went through since; "1 failed payment in the last 3 months" beside
    it is the same failure, said once; two failures stay two facts."""
    names = ["days_since_failed_payment", "failed_payments_90d", "days_since_last_payment"]
    values = pd.DataFrame(
        {
            "days_since_failed_payment": [12.0, 12.0, 40.0],
            "failed_payments_90d": [1.0, 1.0, 2.0],
            "days_since_last_payment": [40.0, 3.0, 50.0],
        }
    )
    contrib = np.array([[0.4, 0.2, 0.05]] * 3)
    got = top_drivers(contrib, names, values, 3, contrib * 10).to_pylist()
    first = {d["feature"]: d for d in got[0]}
    assert "failed_payments_90d" not in first
    assert first["days_since_failed_payment"]["reason"] == (
        "Last failed payment 12 days ago (no payment since)"
    )
    assert first["days_since_failed_payment"]["contribution"] == pytest.approx(0.6)
    assert (
        got[1][0]["reason"] == "Last failed payment 12 days ago (a payment went through 3 days ago)"
    )
    assert "failed_payments_90d" in {d["feature"] for d in got[2]}


def test_an_amount_is_said_once_by_the_last_order():
    """A purchase log's riskiest (benchmarks/README.md, session 38): "Average order of $3.99"
    beside "Revenue of $3.99 in the last 3 months", and "Average order of £5.90" beside "Last
    order of £5.90", one amount twice. Amounts equal to the last order's, to the cent, are its
    fact; a different amount stays a reason of its own."""
    names = ["last_payment_amount", "mean_payment_amount", "revenue_total", "revenue_90d"]
    values = pd.DataFrame(
        {
            "last_payment_amount": [3.99, 3.99],
            "mean_payment_amount": [3.99, 7.5],
            "revenue_total": [3.99, 45.0],
            "revenue_90d": [3.99, 3.99],
        }
    )
    contrib = np.array([[0.1, 0.3, 0.2, 0.15]] * 2)
    got = top_drivers(contrib, names, values, 4, contrib * 10, orders=True).to_pylist()
    assert [(d["reason"], round(d["contribution"], 6)) for d in got[0]] == [
        ("Last order of 3.99", 0.75)
    ]
    assert {d["feature"] for d in got[1]} == {
        "last_payment_amount", "mean_payment_amount", "revenue_total",
    }  # fmt: skip
    merged, _ = merge_same_facts(contrib, contrib, names, values)
    np.testing.assert_allclose(merged.sum(axis=1), contrib.sum(axis=1))


def test_probabilities_that_hardly_differ_are_said_to_be_near_ties():
    """A store's 656 customers all lay within 67.403-67.421 % (benchmarks/README.md, session
    38): bands and a ranking of near-equal risks read as meaningful. Such a run says so; a weak
    model that still ranks (log-odds spread of a few tenths) does not get the note."""
    from serving.batch import near_tie_note, probability_spread

    rng = np.random.default_rng(0)
    flat = 0.6741 + rng.uniform(-0.0001, 0.0001, 656)
    spread = probability_spread(flat)
    assert spread[0] < 0.01 and 0.674 < spread[1] < spread[2] < 0.6743
    note = near_tie_note(*spread)
    assert note is not None and note.startswith("the probabilities hardly differ (67.40% to 67.42%")
    weak = 1 / (1 + np.exp(-(0.5 + rng.normal(0, 0.3, 656))))
    assert near_tie_note(*probability_spread(weak)) is None
    assert near_tie_note(*probability_spread(np.array([]))) is None


def by_previous(run) -> pd.Series:
    """A run's previous probability per customer (the previous run's, or a first run's
    baseline's)."""
    return run.scores.set_index("customer_id")["previous_probability"]


def drivers_of(run, customer: str) -> list[dict]:
    """A customer's drivers in a run's scores.parquet."""
    scores = pq.read_table(run.partition / "scores.parquet").to_pandas()
    return list(scores.set_index("customer_id").loc[customer, "drivers"])


def test_cancellations_the_export_holds_already_are_dated_beside_the_scores(
    small_champion, tmp_path
):
    """A subscription set to end at its term (Chargebee's non_renewing) carries its end as
    churned_at, after the export's last record. It does not move the data's end, the customer
    is scored as 95 % sure to leave on that date, and scores.csv and the report say it."""
    from features.labels import scheduled_cancellations

    tables = small_champion.tables
    end = tables.data_end()
    run_date = end.normalize() + pd.Timedelta(days=1)
    current = tables.customers[tables.customers["churned_at"].isna()]["customer_id"].head(2)
    soon, later = current.iloc[0], current.iloc[1]
    customers = tables.customers.copy()
    when = {soon: run_date + pd.Timedelta(days=12), later: run_date + pd.Timedelta(days=300)}
    customers["churned_at"] = customers["customer_id"].map(when).fillna(customers["churned_at"])
    noticed = dataclasses.replace(tables, customers=customers, cache={})
    assert noticed.data_end() == end  # scheduled ends do not move it
    leaving = scheduled_cancellations(noticed, run_date)
    assert list(leaving["customer_id"]) == [soon, later]  # soonest first
    # a run before the export's last day does not know of them (nor would it have then)
    assert scheduled_cancellations(noticed, end.normalize() - pd.Timedelta(days=7)).empty

    model, version = small_champion.champion.model, small_champion.champion.version
    run = run_scoring(noticed, run_date, model, version, tmp_path, log=lambda _: None)
    assert run.summary["cancellations_scheduled"] == 2
    assert run.summary["cancellations_scheduled_in_horizon"] == 1
    csv = pd.read_csv(run.partition / "scores.csv", dtype={"customer_id": str})
    dated = csv.set_index("customer_id")["cancellation_scheduled"]
    assert dated[soon] == when[soon].strftime("%Y-%m-%d")
    assert dated[later] == when[later].strftime("%Y-%m-%d")
    assert dated.notna().sum() == 2 and len(csv) == run.summary["customers_scored"]
    page = (run.partition / "report.html").read_text()
    assert "2 customers have a cancellation scheduled in the export (1 within" in page
    assert "scored as 95% sure to leave on that date and at the model" in page
    assert run.summary["scheduled_cancellation_share"] == 0.95
    # a first run's baseline, a week earlier on the same data, scores the notices as the run
    # does: the export does not say when one was given, and a carrier's first run alerted 118
    # notices months old ("new top reason: Cancellation scheduled")
    from serving.alerts import read_alerts

    assert run.summary.get("first_run_baseline")
    assert by_previous(run)[soon] >= 0.95
    assert soon not in set(read_alerts(run.partition)["customer_id"])
    # The riskiest customers are those still to be saved: the notice is left out of them, and
    # a line says so (a news site's first report listed nothing but its 266 notices)
    from churn.cli import riskiest_lines
    from reporting.report_html import riskiest_customers

    top = riskiest_customers(run.partition / "scores.parquet", 5)
    assert soon not in set(top["customer_id"]) and len(top) == 5
    assert top.attrs["leaving_out"] == 1
    assert "Not listed: 1 customer whose cancellation the export holds" in page
    lines = riskiest_lines(run.partition, 3)
    assert not any(soon in line for line in lines)
    assert lines[-1].strip().startswith("Not listed: 1 customer whose cancellation")
    # without any, scores.csv has no such column (an always-empty column says nothing)
    plain = run_scoring(tables, run_date, model, version, tmp_path / "b", log=lambda _: None)
    assert "cancellation_scheduled" not in pd.read_csv(plain.partition / "scores.csv").columns
    # the one within the horizon: 95 % sure to take effect, at the model's risk otherwise,
    # high, and said first; the one after the horizon keeps the model's probability
    by_id = run.scores.set_index("customer_id")
    model_p = plain.scores.set_index("customer_id")["churn_probability"]
    assert by_id.loc[soon, "churn_probability"] == pytest.approx(0.95 + 0.05 * model_p[soon])
    assert by_id.loc[soon, "risk_band"] == "high"
    # after the horizon: the customer stays through it unless the notice is withdrawn
    assert by_id.loc[later, "churn_probability"] == pytest.approx(0.05 * model_p[later])
    later_first = drivers_of(run, later)[0]
    assert later_first["reason"].endswith("after the 30-day horizon")
    assert later_first["risk_points"] < 0
    others = by_id.index.difference([soon, later])
    assert np.allclose(by_id.loc[others, "churn_probability"], model_p[others])
    first = drivers_of(run, soon)[0]
    assert first["feature"] == "cancellation_scheduled"
    day = when[soon].date()
    assert first["reason"] == f"Cancellation scheduled for {day} (in 12 days), in the export"
    assert first["risk_points"] == pytest.approx(
        (by_id.loc[soon, "churn_probability"] - model_p[soon]) * 100
    )
    assert len(drivers_of(run, soon)) <= 3
    assert csv.set_index("customer_id").loc[soon, "reason_1"].startswith("Cancellation scheduled")
    # a company whose notices are often withdrawn says how often they take effect
    never = run_scoring(
        noticed, run_date, model, version, tmp_path / "c", log=lambda _: None,
        settings=ScoringConfig(scheduled_cancellation_share=0.0),
    )  # fmt: skip
    assert never.scores.set_index("customer_id")["churn_probability"][soon] == pytest.approx(
        model_p[soon]
    )
    with pytest.raises(ValueError, match="scheduled_cancellation_share must be a share"):
        ScoringConfig(scheduled_cancellation_share=1.5)


def test_customers_who_sign_up_on_the_run_date_are_counted_not_dropped_silently(
    small_champion, tmp_path
):
    """A gym's members all start on the 1st: a run on the 1st scored none of that month's 203
    joiners (features use what happened before T) and said nothing. run.json counts them and
    the log says when they are scored."""
    from features.labels import signups_from

    tables = small_champion.tables
    day = tables.customers["signup_at"].sort_values().iloc[len(tables.customers) // 2].normalize()
    expected = int((tables.customers["signup_at"] >= day).sum())
    assert signups_from(tables, day) == expected > 0
    said: list[str] = []
    model, version = small_champion.champion.model, small_champion.champion.version
    run = run_scoring(tables, day, model, version, tmp_path, log=said.append)
    assert run.summary["customers_signing_up_from_run_date"] == expected
    assert any(f"{expected:,} customers sign up on or after the run date" in s for s in said)
    scored = set(run.scores["customer_id"])
    late = tables.customers.loc[tables.customers["signup_at"] >= day, "customer_id"]
    assert not scored & set(late)
