"""Monitoring: drift measures on known distributions, realized metrics against independent
computations, CBPE, verdicts, and on the demo the planted drift found (and nothing without it)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp, spearmanr

from serving.monitoring import (
    NO_REFERENCE,
    PSI_MAJOR,
    TOP_FEATURES,
    Expected,
    cbpe,
    chi2_test,
    drift_row,
    expected_roc_auc,
    feature_drift,
    no_newer_labels,
    psi,
    psi_band,
    realized_by_group,
    realized_metrics,
    verdict,
    wilson_interval,
)
from training.drivers import on_the_safe_side, top_drivers
from training.reference import (
    SCORE,
    FeatureProfile,
    build_reference,
    first_activity_piles_up,
    levels_without_evidence,
    reason_sides,
    safe_levels,
    safe_ranges,
    said_by_categories,
)

# ------------------------------------------------------------------------------- drift units


def test_psi_of_known_shares_equals_the_formula():
    """PSI = sum (cur - ref) ln(cur / ref); identical shares give 0; empty bins count 0.0001."""
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(expected)
    with_empty = psi(np.array([0.5, 0.5, 0.0]), np.array([0.5, 0.4, 0.1]))
    manual = -0.1 * math.log(0.4 / 0.5) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert with_empty == pytest.approx(manual)
    assert [psi_band(v) for v in (0.05, 0.1, 0.2, 0.25, float("nan"))] == [
        "stable", "moderate", "moderate", "major", "",
    ]  # fmt: skip


def test_psi_and_ks_on_normal_distributions():
    """Same distribution: PSI near 0 and a large KS p-value; a mean shift of half a standard
    deviation: PSI near its theoretical 0.25 and the KS statistic of scipy's exact test."""
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 40_000)
    profile = FeatureProfile.fit("x", reference, "numeric")
    assert len(profile.edges) == 9 and sum(profile.bin_shares) == pytest.approx(1.0)
    same = drift_row(profile, rng.normal(0, 1, 20_000))
    assert same["psi"] < 0.01 and same["p_value"] > 0.01 and not same["drifted"]
    shifted_values = rng.normal(0.5, 1, 20_000)
    shifted = drift_row(profile, shifted_values)
    assert 0.18 < shifted["psi"] < 0.32
    exact = ks_2samp(reference, shifted_values).statistic
    assert shifted["test"] == "ks"
    assert shifted["statistic"] == pytest.approx(exact, abs=0.01)
    assert shifted["p_value"] < 1e-6


def test_missing_values_are_a_bin_of_their_own():
    """A column that starts to go missing drifts, and both missing shares are reported."""
    reference = np.r_[np.arange(1000.0), [np.nan] * 10]
    profile = FeatureProfile.fit("x", reference, "numeric")
    current = np.r_[np.arange(500.0) * 2, [np.nan] * 500]
    row = drift_row(profile, current)
    assert row["missing_reference"] == pytest.approx(10 / 1010)
    assert row["missing_current"] == pytest.approx(0.5)
    assert row["drifted"]


def test_categorical_chi2_equals_scipy_on_the_counts():
    """Chi-squared of training against current counts per category, unseen levels as '(other)'."""
    reference = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    profile = FeatureProfile.fit("plan", reference, "categorical")
    current = np.array(["a"] * 200 + ["b"] * 200 + ["c"] * 50 + ["z"] * 50, dtype=object)
    counts = profile.counts(current)
    assert counts.tolist() == [200, 200, 50, 50, 0]  # a, b, c, (other), (missing)
    statistic, p_value = chi2_test(profile, counts)
    table = np.array([[500, 300, 200, 0], [200, 200, 50, 50]])
    expected = chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue)


def test_reason_sides_are_the_median_and_the_direction_of_the_probability():
    rng = np.random.default_rng(0)
    n = 2_000
    logins = rng.poisson(10, n).astype(float)
    tickets = rng.poisson(1, n).astype(float)
    probability = 1 / (1 + np.exp(0.3 * logins - 0.5 * tickets))
    frame = pd.DataFrame(
        {"login_events_90d": logins, "tickets_90d": tickets,
         "nps_last": rng.integers(0, 11, n).astype(float),  # unrelated: the dictionary's -1
         "comments_90d": rng.poisson(2, n).astype(float),  # unrelated, no direction known
         "seats": np.full(n, np.nan)}
    )  # fmt: skip
    sides = reason_sides(frame, list(frame.columns), probability)
    assert sides["login_events_90d"] == (float(np.median(logins)), -1)
    assert sides["tickets_90d"] == (float(np.median(tickets)), 1)
    assert sides["nps_last"][1] == -1
    assert "comments_90d" not in sides and "seats" not in sides
    # the dictionary's direction is what readers expect, whatever the rows' correlation
    flipped = 1 / (1 + np.exp(0.5 * tickets - 0.3 * logins))
    sides_flipped = reason_sides(frame, ["tickets_90d", "login_events_90d"], flipped)
    assert sides_flipped["tickets_90d"][1] == 1
    assert sides_flipped["login_events_90d"][1] == 1  # no direction in the dictionary: the data's
    reference = build_reference(frame, list(frame.columns), [], probability)
    assert reference.reason_sides == sides


def test_an_event_type_named_for_trouble_raises_the_risk_whatever_the_rows_correlation():
    """A game's level failures went with a lower risk overall (more failures, more play), so
    "51 level fail events in the last 30 days" (median 5) was on the safe side and never said,
    though the model weighed it; an event named for trouble raises the risk in the words."""
    rng = np.random.default_rng(1)
    n = 2_000
    play = rng.poisson(20, n).astype(float)
    fails = rng.binomial(play.astype(int), 0.3).astype(float)
    probability = 1 / (1 + np.exp(0.2 * play - 0.3))  # more play, lower risk
    frame = pd.DataFrame(
        {"level_fail_events_30d": fails, "level_complete_events_30d": play - fails,
         "app_remove_events_30d": rng.poisson(0.1, n).astype(float)}
    )  # fmt: skip
    sides = reason_sides(frame, list(frame.columns), probability)
    assert spearmanr(fails, probability).statistic < -0.3
    assert sides["level_fail_events_30d"] == (float(np.median(fails)), 1)
    assert sides["level_complete_events_30d"][1] == -1  # no trouble in its name: the data's
    assert sides["app_remove_events_30d"][1] == 1
    names = list(frame.columns)
    busy = frame.iloc[[int(np.argmax(fails))]]
    assert not on_the_safe_side(names, busy, sides)[0, 0]  # a high failure count is a reason


def test_a_level_without_more_churners_is_no_reason():
    """A level the model learned from noise ("Country: DE", whose customers churned as often as
    the others) is no reason for risk; a level whose customers churned far more is one. A
    customer counts once however many observation dates repeat it, so 50 dates of one churner
    are no evidence; a frame without churners leaves every level to the model's scores."""
    rng = np.random.default_rng(0)
    n = 3000
    country = rng.choice(["US", "DE", "FR"], n)
    plan = rng.choice(["basic", "pro"], n)
    churned = rng.random(n) < np.where(plan == "basic", 0.20, 0.08)
    frame = pd.DataFrame(
        {
            "country": pd.Series(country, dtype="string"),
            "plan": pd.Series(plan, dtype="string"),
            "customer_id": np.arange(n).astype(str),
            "churned": churned,
        }
    )
    # a model that overfits the noise: every country above the mean for some rows
    probability = np.where(country == "DE", 0.2, 0.1) + np.where(plan == "basic", 0.1, 0.0)
    levels = safe_levels(
        frame, ["country", "plan"], probability, frame["churned"].to_numpy(),
        frame["customer_id"].to_numpy(),
    )  # fmt: skip
    assert "DE" in levels["country"] and "basic" not in levels["plan"]
    assert levels["plan"] == ("pro",)
    reference = build_reference(frame, [], ["country", "plan"], probability)
    assert reference.safe_levels == levels
    # one churning customer repeated over 50 dates is one person, not 50 churners
    repeated = pd.Series(["rare"] * 50 + ["common"] * 500, dtype="string")
    labels = np.r_[np.ones(50, bool), rng.random(500) < 0.1]
    who = np.r_[np.zeros(50, int), np.arange(1, 501)]
    assert "rare" in levels_without_evidence(repeated, labels, who)
    assert "rare" not in levels_without_evidence(repeated, labels)  # as 50 customers: evidence
    assert levels_without_evidence(repeated, np.zeros(550, bool), who) == set()


def test_a_lower_risk_reason_names_only_a_level_that_churned_less():
    """A coffee box's "Postcode area: S" was a lower-risk reason for 56 customers: no evidence
    of more churn (safe_levels) is no evidence of less, and S churned more than average. A
    lower-risk reason names a level scored below the mean whose customers churned less."""
    from training.drivers import lower_risk_drivers
    from training.reference import lower_levels

    rng = np.random.default_rng(0)
    n = 4000
    area = rng.choice(["N", "S", "W"], n)
    plan = rng.choice(["basic", "pro"], n)
    churned = rng.random(n) < np.where(plan == "basic", 0.20, 0.08) + np.where(area == "S", 0.02, 0)
    frame = pd.DataFrame(
        {"area": pd.Series(area, dtype="string"), "plan": pd.Series(plan, dtype="string"),
         "customer_id": np.arange(n).astype(str), "churned": churned}
    )  # fmt: skip
    # a model that learned S as lower-risk from noise
    probability = np.where(area == "S", 0.1, 0.14) + np.where(plan == "basic", 0.1, 0.0)
    args = (frame, ["area", "plan"], probability, churned, frame["customer_id"].to_numpy())
    assert "S" in safe_levels(*args)["area"]  # no reason for risk: no evidence of more churn
    lower = lower_levels(*args)
    assert lower == {"plan": ("pro",)}  # S churned more: never a lower-risk reason
    reference = build_reference(frame, [], ["area", "plan"], probability)
    assert reference.lower_levels == lower
    row = pd.DataFrame({"area": pd.Series(["S"], dtype="string"),
                        "plan": pd.Series(["pro"], dtype="string")})  # fmt: skip
    contrib, points = np.array([[-0.5, -0.4]]), np.array([[-5.0, -4.0]])
    said = lower_risk_drivers(
        contrib, ["area", "plan"], row, 3, points, safe_levels=safe_levels(*args),
        lower_levels=lower, attributes=("area", "plan"),
    ).to_pylist()[0]  # fmt: skip
    assert [d["feature"] for d in said] == ["plan"]
    before = lower_risk_drivers(
        contrib,
        ["area", "plan"],
        row,
        3,
        points,
        safe_levels=safe_levels(*args),
        attributes=("area", "plan"),
    ).to_pylist()[0]  # a model without lower_levels: as before
    assert [d["feature"] for d in before] == ["area", "plan"]


def test_safe_levels_are_the_categories_scored_below_the_mean():
    """The billing export's case: premium customers are scored below the average, so "Plan at
    signup: premium_monthly" is no reason for risk, however the credit was shared; a level of
    too few rows is not judged, and a missing value is never a level."""
    plan = np.array(
        ["basic"] * 600 + ["premium"] * 300 + ["trial"] * 10 + [None] * 90, dtype=object
    )
    probability = np.r_[
        np.full(600, 0.06), np.full(300, 0.02), np.full(10, 0.001), np.full(90, 0.01)
    ]
    frame = pd.DataFrame({"plan": pd.Series(plan, dtype="string"), "x": np.arange(1000.0)})
    assert safe_levels(frame, ["plan"], probability) == {"plan": ("premium",)}
    reference = build_reference(frame, ["x"], ["plan"], probability)
    assert reference.safe_levels == {"plan": ("premium",)}
    contrib = np.array([[0.3, 0.1], [0.3, 0.1]])
    values = pd.DataFrame({"plan": ["premium", "basic"], "x": [1.0, 1.0]})
    got = top_drivers(
        contrib, ["plan", "x"], values, 2, contrib * 10, attributes=("plan",),
        safe_levels=reference.safe_levels,
    ).to_pylist()  # fmt: skip
    assert [[d["feature"] for d in row] for row in got] == [["x"], ["plan", "x"]]


def test_a_fee_the_plan_fixes_is_said_once_by_the_plan():
    """A gym's members read "Plan: Flex Monatlich" beside "Average payment of €39": the plan
    fixes the fee, so the reference records the fee as said by the plan, and the reasons say
    the plan alone, with both contributions. An amount that follows seats within each plan,
    and a category of as many levels as rows, say no such thing."""
    rng = np.random.default_rng(3)
    n = 1200
    plan = rng.choice(["Basic", "Flex", "Premium", "Jahresabo"], n)
    fee = pd.Series(plan).map({"Basic": 29.9, "Flex": 39.9, "Premium": 24.9, "Jahresabo": 334.8})
    one_off = rng.random(n) < 0.05  # a starter pack or a freeze fee in the average
    average = np.where(one_off, fee.to_numpy() * 0.8, fee.to_numpy())
    seats = rng.integers(1, 60, n)
    frame = pd.DataFrame(
        {
            "plan": pd.Series(plan, dtype="string"),
            "mean_payment_amount": average,
            "seat_amount": np.where(plan == "Jahresabo", 300.0, 10.0) + seats * 2.0,
            "member": pd.Series([f"m{i}" for i in range(n)], dtype="string"),
            "tenure_days": rng.uniform(10, 700, n),
        }
    )
    numeric = ["mean_payment_amount", "seat_amount", "tenure_days"]
    said = said_by_categories(frame, numeric, ["plan", "member"])
    assert said == {"mean_payment_amount": "plan"}
    reference = build_reference(frame, numeric, ["plan", "member"], rng.uniform(0.01, 0.3, n))
    assert reference.said_by == said
    names = ["plan", "mean_payment_amount", "tenure_days"]
    contrib = np.array([[0.3, 0.25, 0.2], [0.3, 0.25, 0.2]])
    values = pd.DataFrame(
        {"plan": ["Flex", None], "mean_payment_amount": [39.9, 39.9], "tenure_days": [40.0, 40.0]}
    )
    got = top_drivers(
        contrib, names, values, 3, contrib * 10, attributes=("plan",), said_by=said,
    ).to_pylist()  # fmt: skip
    assert [[d["feature"] for d in row] for row in got] == [
        ["plan", "tenure_days"],
        ["plan", "mean_payment_amount", "tenure_days"],  # no plan known: the amount says it
    ]
    assert got[0][0]["contribution"] == pytest.approx(0.55)
    before = top_drivers(contrib, names, values, 3, contrib * 10, attributes=("plan",))
    assert [d["feature"] for d in before.to_pylist()[0]] == names  # models without said_by


def test_a_numeric_attribute_is_a_reason_only_in_ranges_whose_customers_churned_more():
    """A gym's "Birth year: 1962" was a reason for members who churned less than the others:
    the model's response over birth year was U-shaped by a point. A quantile range of values
    is a reason only with evidence that its customers churned more (as a category's level)."""
    rng = np.random.default_rng(5)
    n = 4000
    born = rng.integers(1950, 2007, n).astype("float64")
    churn_p = np.where(born >= 1996, 0.30, 0.10)  # the young churn more; the rest alike
    frame = pd.DataFrame(
        {
            "birth_year": born,
            "churned": rng.random(n) < churn_p,
            "customer_id": [f"c{i}" for i in range(n)],
        }
    )
    ranges = safe_ranges(frame, ["birth_year"], frame["churned"].to_numpy())
    assert ranges["birth_year"][0][0] == -np.inf  # the oldest: no evidence, no reason
    assert 1980 < max(high for _, high in ranges["birth_year"]) < 1996
    assert safe_ranges(frame, ["birth_year"], None) == {}
    # a name the dictionary does not know: an attribute
    reference = build_reference(frame, ["birth_year"], [], churn_p)
    assert reference.safe_ranges == ranges
    values = pd.DataFrame({"birth_year": [1962.0, 2004.0, 1930.0, np.nan]})
    got = top_drivers(
        np.full((4, 1), 0.4), ["birth_year"], values, 1, np.full((4, 1), 4.0),
        attributes=("birth_year",), safe_ranges=ranges,
    ).to_pylist()  # fmt: skip
    assert [[d["reason"] for d in row] for row in got] == [
        [],
        ["Birth year: 2004"],
        [],
        ["Birth year: unknown"],
    ]


def test_feature_drift_names_the_missing_feature():
    frame = pd.DataFrame({"x": np.arange(100.0), "plan": ["a", "b"] * 50})
    reference = build_reference(frame, ["x"], ["plan"], np.linspace(0.01, 0.5, 100))
    with pytest.raises(ValueError, match=r"table 'features'.*\['plan'\]"):
        feature_drift(reference, frame[["x"]])


def test_feature_drift_ranks_top_features_and_includes_the_score():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=2000) for i in range(12)})
    p = rng.uniform(0.01, 0.3, 2000)
    reference = build_reference(frame, list(frame.columns), [], p)
    importance = {f"f{i}": float(12 - i) for i in range(12)}
    current = frame.assign(f11=frame["f11"] + 3)  # the least important feature moves
    drift = feature_drift(reference, current, p, importance)
    assert drift.iloc[0]["feature"] == "f11" and drift.iloc[0]["drifted"]
    assert not drift.set_index("feature").loc["f11", "top"]
    assert drift.set_index("feature").loc[SCORE, "top"]
    assert drift["top"].sum() == TOP_FEATURES + 1
    judged = verdict({"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}, drift)
    assert judged.status == "watch" and "f11" in judged.reasons[0]
    top_moves = feature_drift(reference, frame.assign(f0=frame["f0"] + 3), p, importance)
    judged = verdict({"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}, top_moves)
    assert judged.status == "retrain" and "top feature f0" in judged.reasons[0]
    assert verdict({}, feature_drift(reference, frame, p, importance)).status == "fine"


def test_a_psi_its_own_test_cannot_tell_from_chance_is_no_drift():
    """On a few dozen customers PSI is large by chance (59 users of a ratings site read
    "overdue_ratio: PSI 0.64 (major drift)", KS p 0.21): the same draw from the training
    distribution is no drift; a real move on as few customers still is."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"f0": rng.normal(size=5000), "f1": rng.normal(size=5000)})
    p = rng.uniform(0.01, 0.3, 5000)
    reference = build_reference(frame, ["f0", "f1"], [], p)
    importance = {"f0": 2.0, "f1": 1.0}
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    found = None
    for seed in range(200):  # a small sample from the same distribution with a large PSI
        draw = np.random.default_rng(seed).normal(size=(30, 2))
        small = pd.DataFrame(draw, columns=["f0", "f1"])
        drift = feature_drift(reference, small, None, importance).set_index("feature")
        if drift.loc["f0", "psi"] >= PSI_MAJOR:
            found = drift
            break
    assert found is not None, "no small draw with a PSI of 0.25 or more"
    row = found.loc["f0"]
    assert row["p_value"] >= 0.05 and row["by_chance"] and not row["drifted"]
    assert verdict(backtest, found.reset_index()).status == "fine"
    moved = feature_drift(reference, small.assign(f0=small["f0"] + 2), None, importance)
    moved_row = moved.set_index("feature").loc["f0"]
    assert moved_row["p_value"] < 0.05 and moved_row["drifted"] and not moved_row["by_chance"]
    assert verdict(backtest, moved).status == "retrain"


def test_a_retrain_is_advised_only_when_it_would_see_newer_labels():
    """A model trained on every date whose label is complete: its first partitions differ from
    its training rows by a horizon at least (a 5-month shop export's tenure, PSI 1.65: "retrain"
    the day the model was trained). Drift then calls a watch, which says so; once the next
    training date's label is in, a retrain again."""
    dates = [str(d.date()) for d in pd.date_range("2024-01-05", "2024-03-29", freq="7D")]
    horizon = 60
    # the last date 2024-03-29, step 7 days: the next date's label is complete on 2024-06-04
    assert no_newer_labels(dates, horizon, pd.Timestamp("2024-06-04")) is None
    why = no_newer_labels(dates, horizon, pd.Timestamp("2024-06-03"))
    assert why == (
        "a retrain would see no newer labels: the model was trained on dates until 2024-03-29, "
        "and the next date's 60-day label (2024-04-05) is complete on 2024-06-04"
    )
    # one date: the step is the horizon
    assert no_newer_labels(["2024-03-29"], horizon, pd.Timestamp("2024-07-26")) is not None
    assert no_newer_labels(["2024-03-29"], horizon, pd.Timestamp("2024-07-27")) is None
    assert no_newer_labels([], horizon, pd.Timestamp("2024-06-03")) is None

    frame, p, reference, importance, moved = top_feature_moved()
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    assert verdict(backtest, moved).status == "retrain"
    judged = verdict(backtest, moved, no_newer=why)
    assert judged.status == "watch"
    assert "top feature f0" in judged.reasons[0] and judged.reasons[1] == why
    # nothing to retrain for: the reason is not added
    assert verdict(backtest, feature_drift(reference, frame, p, importance), no_newer=why) == (
        verdict(backtest, feature_drift(reference, frame, p, importance))
    )


def test_a_weeks_old_export_whose_customers_predate_it_shows_the_pile_up():
    """A 7-week streaming log trained on weekly dates 7 to 35 days into the export: four in five
    users were active before its first day. Against the mean of all spans, the pile-up itself
    included, no date showed one (1,684 of 2,123 first activities in one week of five read as
    4.8 times the mean); against the other spans it does. Users who all arrive within the
    export, at a steady rate, show none; nor does a date a week into the export alone."""
    rng = np.random.default_rng(5)

    def dates(old_share: float, ages=(7, 14, 21, 28, 35)) -> pd.DataFrame:
        parts = []
        for age in ages:
            n = 2000
            old = rng.random(n) < old_share
            first = np.where(old, age - rng.uniform(0, 1, n), rng.uniform(0, age, n))
            parts.append(pd.DataFrame({"days_since_first_event": first, "as_of": age}))
        return pd.concat(parts, ignore_index=True)

    assert first_activity_piles_up(dates(0.8))
    assert not first_activity_piles_up(dates(0.0))
    assert not first_activity_piles_up(dates(0.8, ages=(7,)))
    # Then a window longer than the export's age at the last reference date (35 days) counted
    # the whole history, and grows with the export as the whole-history features do; a window
    # within it, or the trend of 7 days against 7 (14 days), is drift as usual.
    frame = dates(0.8)
    age = frame["days_since_first_event"]
    frame = frame.assign(events_90d=age * 3, events_30d=np.minimum(age, 30) * 3,
                         events_trend_7d=rng.uniform(-1, 1, len(frame)))  # fmt: skip
    names = ["days_since_first_event", "events_90d", "events_30d", "events_trend_7d"]
    p = rng.uniform(0.01, 0.3, len(frame))
    reference = build_reference(frame, names, [], p)
    assert reference.export_start_censored and 34 < reference.export_age_days <= 35
    later = frame[frame["as_of"] == 35].copy()
    later[names[:2]] += 14  # scored two weeks later: every whole-history count larger
    later["events_30d"] *= 2
    later["events_trend_7d"] = rng.uniform(0.5, 1, len(later))
    drift = feature_drift(reference, later[names], p[: len(later)]).set_index("feature")
    assert drift.loc[["days_since_first_event", "events_90d"], "grows_with_export"].all()
    assert not drift.loc[["events_30d", "events_trend_7d"], "grows_with_export"].any()
    assert drift.loc[["events_30d", "events_trend_7d"], "drifted"].all()


def test_the_tenure_of_a_business_as_young_as_its_export_grows_with_the_calendar():
    """A scooter app launched three weeks before its 10-month export (signups are not first
    rides) read "watch (tenure_days: PSI 0.45, major drift)" on its first run: its longest
    tenure is the export's age and a few weeks, so the calendar moves it. An old business's
    tenures, years past its export's start, still drift."""
    rng = np.random.default_rng(48)

    def rows(age: float, oldest: float, n: int = 1500) -> pd.DataFrame:
        tenure = rng.uniform(0, oldest + age, n)
        return pd.DataFrame(
            {"tenure_days": tenure,
             "days_since_first_event": np.minimum(tenure, age) * rng.uniform(0.5, 1, n)}
        )  # fmt: skip

    ages = [120.0, 150.0, 180.0, 210.0]
    names = ["tenure_days", "days_since_first_event"]
    for launched_before, grows in ((21.0, True), (2000.0, False)):
        frame = pd.concat(
            [rows(a, launched_before).assign(as_of=a) for a in ages], ignore_index=True
        )
        p = rng.uniform(0.1, 0.4, len(frame))
        reference = build_reference(frame, names, [], p)
        assert reference.export_start_censored  # shorter than a year
        later = rows(300.0, launched_before)  # the first run, three months on
        later["tenure_days"] = later["tenure_days"] * (2.0 if not grows else 1.0)
        drift = feature_drift(reference, later[names], p[: len(later)]).set_index("feature")
        assert drift.loc["tenure_days", "psi"] >= 0.25
        assert bool(drift.loc["tenure_days", "grows_with_export"]) is grows
        assert bool(drift.loc["tenure_days", "drifted"]) is not grows


def test_a_history_shorter_than_a_year_grows_with_the_calendar_without_a_pile_up():
    """Ta Feng's 4 months: the first week held 3 times the other weeks' first purchases (no
    pile-up), yet every run read "watch" on the whole-history features, and half the tenures
    lay beyond every training value one horizon after the last training date. A history
    shorter than a year caps them at its length: their move is shown, marked
    grows_with_export, and is no drift; so are the 30-day counts of a reference whose latest
    date had 30 days of history, and the recency whose training values reached that age. A
    feature of the customers' own still drifts."""
    from training.reference import YOUNG_HISTORY_DAYS, young_history

    rng = np.random.default_rng(39)

    def rows(age: float, n: int = 1500) -> pd.DataFrame:
        first_week = rng.random(n) < 0.12  # three times a week's share of ~0.04
        first = np.where(first_week, age - rng.uniform(0, 7, n), rng.uniform(0, age, n))
        return pd.DataFrame(
            {"days_since_first_event": first, "tenure_days": first,
             "active_gap_mean_days": rng.uniform(0, 1, n) * first / 2,
             "overdue_ratio": rng.uniform(0, 35, n) / (1 + rng.uniform(0, 1, n) * first / 2),
             "events_30d": np.minimum(first, 30) * rng.uniform(0.5, 1.5, n),
             # the last activity: any day up to the 35-day lookback, the first one for some
             "days_since_last_event": np.where(
                 rng.random(n) < 0.2, first, np.minimum(first, rng.uniform(0, 35, n))),
             "x": rng.normal(size=n)}
        )  # fmt: skip

    ages = [9.0, 16.0, 23.0, 30.0]
    frame = pd.concat([rows(a).assign(as_of=a) for a in ages], ignore_index=True)
    assert not first_activity_piles_up(frame)
    assert young_history(frame) and 29 < max(ages) < YOUNG_HISTORY_DAYS
    names = ["days_since_first_event", "tenure_days", "active_gap_mean_days", "overdue_ratio",
             "events_30d", "days_since_last_event", "x"]  # fmt: skip
    p = rng.uniform(0.3, 0.7, len(frame))
    reference = build_reference(frame, names, [], p)
    assert reference.export_start_censored and 29 < reference.export_age_days <= 30
    later = rows(60.0)  # the first run: one 30-day horizon after the last training date
    drift = feature_drift(reference, later[names], p[: len(later)]).set_index("feature")
    grown = ["days_since_first_event", "tenure_days", "active_gap_mean_days", "overdue_ratio",
             "events_30d", "days_since_last_event"]  # fmt: skip
    assert (drift.loc[["days_since_first_event", "tenure_days"], "psi"] >= 0.25).all()
    assert drift.loc[grown, "grows_with_export"].all() and not drift["drifted"].any()
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    assert verdict(backtest, drift.reset_index()).status == "fine"
    # monitoring.json's psi_max is the verdict's too: not the grown features' PSI of 3
    from serving.monitoring_job import largest_psi

    assert largest_psi(drift.reset_index()) == pytest.approx(drift.loc["x", "psi"])
    assert largest_psi(drift.reset_index()) < 0.25
    moved = feature_drift(reference, later[names].assign(x=later["x"] + 3), p[: len(later)])
    assert moved.set_index("feature").loc["x", "drifted"]
    # Two years of history, first activities spread over it: not young, and no pile-up.
    spread = frame.assign(as_of=frame["as_of"] + 700)
    spread["days_since_first_event"] = rng.uniform(0, spread["as_of"])
    assert (
        not young_history(spread)
        and not build_reference(spread, names, [], p).export_start_censored
    )


def test_revenue_and_ticket_windows_as_long_as_a_young_export_are_its_age_not_drift():
    """Online Retail's last two months, first run after training, read "watch
    (revenue_trend_30d: PSI 3.26)": at the last training date, 30 days into the export, the
    trend's 60 days reached past its start. Payment, revenue and ticket windows are capped as
    activity windows are; shorter ones, and a feature of the customers' own, still drift."""
    from serving.monitoring import grows_with_export

    assert grows_with_export("revenue_trend_30d", 45.0) and grows_with_export("payments_30d", 30.0)
    assert grows_with_export("tickets_90d", 60.0) and grows_with_export("refund_amount_90d", 89.5)
    assert not grows_with_export("payments_30d", 45.0)
    assert not grows_with_export("revenue_trend_30d", 61.0)
    assert not grows_with_export("payments_30d", None)  # no export age: no young export
    assert grows_with_export("nps_responses") and grows_with_export("reviews")  # whole history
    assert not grows_with_export("last_payment_amount", 10.0)


def test_first_activities_piled_up_at_each_terms_start_are_the_customers_not_the_export():
    """OULAD: the registrations live at a date submitted their first assignment on the term's
    first due date, a pile-up that moves with the terms (February, October). The export's start
    piles them up on one day at every date; only that marks whole-history features as growing
    with the export."""
    from training.reference import pile_up_start

    rng = np.random.default_rng(8)
    dates = pd.date_range("2013-03-02", "2014-10-25", freq="14D")

    def rows(as_of: pd.Timestamp, start: pd.Timestamp, n: int = 600) -> pd.DataFrame:
        piled = rng.random(n) < 0.7
        since = (as_of - start).days
        first = np.where(piled, since - rng.uniform(0, 2, n), rng.uniform(0, since, n))
        return pd.DataFrame({"days_since_first_event": first, "as_of": as_of})

    def term_start(as_of: pd.Timestamp) -> pd.Timestamp:
        starts = [pd.Timestamp(f"{y}-{m:02d}-10") for y in (2012, 2013, 2014) for m in (2, 10)]
        return max(d for d in starts if d < as_of - pd.Timedelta(days=20))

    terms = pd.concat([rows(d, term_start(d)) for d in dates], ignore_index=True)
    start = pile_up_start(terms)
    assert start is not None
    recent = terms[terms["as_of"] > dates[-1] - pd.Timedelta(days=90)]
    assert first_activity_piles_up(recent)  # on their own, the recent dates pile up
    assert not first_activity_piles_up(recent, start)  # not on the day the earliest did
    export = pd.concat([rows(d, pd.Timestamp("2013-01-24")) for d in dates], ignore_index=True)
    recent = export[export["as_of"] > dates[-1] - pd.Timedelta(days=90)]
    assert first_activity_piles_up(recent, pile_up_start(export))


def test_whole_history_features_of_an_export_that_starts_late_grow_with_it_and_are_no_drift():
    """A quarter of the customers were active before the export's first day: at every training
    date their first activity is that day, and at a later run all of them are older than any
    training row. The PSI is shown, marked grows_with_export, and calls for nothing; another
    feature's drift still does, and where first activities do not pile up at the export's start
    the same move is drift."""
    rng = np.random.default_rng(3)

    def rows(export_age: float, n: int, piled: bool = True) -> pd.DataFrame:
        old = rng.random(n) < (0.25 if piled else 0.0)
        first = np.where(old, export_age, rng.uniform(0, export_age, n))
        # signup dated by the first activity (an order export): tenure is that age too
        return pd.DataFrame({"days_since_first_event": first, "lifetime_events": first / 4,
                             "tenure_days": first, "x": rng.normal(size=n)})  # fmt: skip

    def training(piled: bool) -> pd.DataFrame:
        dates = pd.date_range("2024-01-01", periods=10, freq="30D")
        return pd.concat(
            [rows(100 + 30 * k, 400, piled).assign(as_of=d) for k, d in enumerate(dates)],
            ignore_index=True,
        )

    names = ["days_since_first_event", "lifetime_events", "tenure_days", "x"]
    frame = training(piled=True)
    p = rng.uniform(0.01, 0.3, len(frame))
    reference = build_reference(frame, names, [], p)
    assert reference.export_start_censored
    later = rows(430, len(frame))
    drift = feature_drift(reference, later, p).set_index("feature")
    assert drift.loc["days_since_first_event", "psi"] >= 0.25
    grown = ["days_since_first_event", "lifetime_events", "tenure_days"]
    assert drift.loc[grown, "grows_with_export"].all()
    assert not drift["drifted"].any()
    # A signup of its own (a CRM's date, years before the export): its tenure's move is drift.
    crm = later.assign(tenure_days=later["tenure_days"] + rng.uniform(0, 2000, len(later)))
    assert feature_drift(reference, crm, p).set_index("feature").loc["tenure_days", "drifted"]
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    assert verdict(backtest, drift.reset_index()).status == "fine"
    moved = verdict(backtest, feature_drift(reference, later.assign(x=later["x"] + 3), p))
    assert moved.status == "watch" and "feature x" in " ".join(moved.reasons)
    # A few older rows before the pile-up (annual plans paid before the logs begin): still one.
    stray = frame.copy()
    stray.loc[stray.index[::50], "days_since_first_event"] += 300
    assert build_reference(stray, names, [], p).export_start_censored
    # First activities spread over the history (the customers all signed up within it), the
    # reference being the last 90 days of dates (training.reference.reference_for): a partition
    # much older than any of them has drifted.
    recent = training(piled=False).query("as_of >= '2024-08-28'")
    fresh = build_reference(recent, names, [], p[: len(recent)])
    assert not fresh.export_start_censored
    later = rows(600, len(recent), piled=False)
    drift = feature_drift(fresh, later, p[: len(recent)]).set_index("feature")
    assert not drift["grows_with_export"].any() and drift.loc["days_since_first_event", "drifted"]
    assert (
        drift.loc["days_since_first_event", "psi"]
        > drift.loc["days_since_first_event", "dates_psi"]
    )


def test_a_partition_that_differs_no_more_than_a_training_date_did_has_not_drifted():
    """Monthly usage stamped at each month's end, training dates a week apart and a run on the
    1st (a mobile operator's export): days since the last event is about 1 for everyone on the
    1st, 1 to 30 over the training dates. The PSI is major, yet a training date near a month's
    start differed from all of them as much: shown, no drift. Everyone silent for two months
    is beyond any training date: retrain."""
    rng = np.random.default_rng(5)
    dates = pd.date_range("2024-05-06", periods=13, freq="7D")

    def rows(as_of: pd.Timestamp, n: int = 300) -> pd.DataFrame:
        month_end = as_of - pd.Timedelta(days=as_of.day)  # last day of the previous month
        since = (as_of - month_end).days + rng.integers(0, 2, n)
        return pd.DataFrame({"days_since_last_event": since.astype(float),
                             "x": rng.normal(size=n), "as_of": as_of})  # fmt: skip

    frame = pd.concat([rows(d) for d in dates], ignore_index=True)
    p = rng.uniform(0.01, 0.3, len(frame))
    names = ["days_since_last_event", "x"]
    reference = build_reference(frame, names, [], p)
    assert reference.dates_psi["days_since_last_event"] >= 0.25
    assert reference.dates_psi["x"] < 0.1
    importance = {"days_since_last_event": 2.0, "x": 1.0}
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    first = rows(pd.Timestamp("2024-08-01"))
    drift = feature_drift(reference, first, p[:300], importance).set_index("feature")
    assert drift.loc["days_since_last_event", "psi"] >= 0.25
    assert drift.loc["days_since_last_event", "within_training_dates"]
    assert not drift["drifted"].any()
    assert verdict(backtest, drift.reset_index()).status == "fine"
    silent = first.assign(days_since_last_event=first["days_since_last_event"] + 60)
    judged = verdict(backtest, feature_drift(reference, silent, p[:300], importance))
    assert judged.status == "retrain" and "days_since_last_event" in judged.reasons[0]
    # One date, or dates of too few rows, measure no spread: the bands alone decide.
    assert build_reference(frame[frame["as_of"] == dates[0]], names, [], p[:300]).dates_psi == {}
    assert build_reference(frame.iloc[::10], names, [], p[::10]).dates_psi == {}


# ---------------------------------------------------------------------------- realized units


def test_a_term_based_business_is_compared_with_the_same_weeks_of_an_earlier_year():
    """OULAD's November export read "retrain (tenure_days PSI 2.51)" and the days to the
    course's end PSI 5.95 against the summer's training dates: the term had started, as it did
    the November before. Like the training date of those weeks a year earlier it is no drift;
    a November unlike that one is. The days to the course's end take a value per module on a
    date, so a month of dates pooled spreads them as no one date does: one date is compared."""
    from types import SimpleNamespace

    from serving.monitoring import season_for
    from training.reference import season_profiles

    rng = np.random.default_rng(11)

    def rows(as_of: pd.Timestamp, n: int = 400) -> pd.DataFrame:
        year = as_of.year if as_of.month >= 10 else as_of.year - 1
        # Modules start on the 1st or the 15th of October and run 240 or 270 days.
        start = pd.Timestamp(year, 10, 1) + pd.to_timedelta(rng.choice([0, 14], n), unit="D")
        end = start + pd.to_timedelta(rng.choice([240, 270], n), unit="D")
        return pd.DataFrame({"days_to_end": (end - as_of).days.astype(float),
                             "x": rng.normal(size=n), "as_of": as_of})  # fmt: skip

    dates = pd.date_range("2023-02-06", "2024-07-29", freq="7D")
    frame = pd.concat([rows(d) for d in dates], ignore_index=True)
    names = ["days_to_end", "x"]
    model = SimpleNamespace(
        preprocessor=SimpleNamespace(numeric=names, categorical=[]),
        predict_proba=lambda part: 1 / (1 + np.exp(part["days_to_end"].to_numpy() / 100)),
    )
    recent = frame["as_of"] > dates[-1] - pd.Timedelta(days=90)
    reference = build_reference(frame[recent], names, [], model.predict_proba(frame[recent]))
    reference.seasons = season_profiles(model, frame[~recent])
    earliest = frame.loc[~recent, "as_of"].max() - pd.Timedelta(days=400)
    assert min(reference.seasons) == str(dates[dates >= earliest][0].date())
    assert set(reference.seasons["2023-11-06"].profiles) == {"days_to_end", "x", SCORE}
    assert season_for(reference.seasons, "2024-11-04") is reference.seasons["2023-11-06"]
    assert season_for(reference.seasons, "2026-11-04") is None  # no training date then
    importance = {"days_to_end": 2.0, "x": 1.0}
    backtest = {"roc_auc_lo": 0.7, "roc_auc_hi": 0.8}
    november = rows(pd.Timestamp("2024-11-04"))
    p = model.predict_proba(november)
    drift = feature_drift(reference, november, p, importance, "2024-11-04").set_index("feature")
    assert drift.loc["days_to_end", "psi"] >= 0.25
    assert drift.loc["days_to_end", "season_psi"] < 0.1
    assert drift.loc["days_to_end", "like_a_year_before"]
    assert not drift["drifted"].any()
    assert verdict(backtest, drift.reset_index()).status == "fine"
    # Without the partition's date the last 90 days judge alone.
    alone = feature_drift(reference, november, p, importance)
    assert alone.set_index("feature").loc["days_to_end", "drifted"]
    assert verdict(backtest, alone).status == "retrain"
    # A November unlike the last one (everyone's course ends in a week) has drifted.
    odd = november.assign(days_to_end=7.0)
    judged = verdict(backtest, feature_drift(reference, odd, model.predict_proba(odd),
                                             importance, "2024-11-04"))  # fmt: skip
    assert judged.status == "retrain" and "days_to_end" in " ".join(judged.reasons)
    # Nearer the same weeks of last year than the last 90 days, yet beyond them too: said
    # against last year's (OULAD's tenure: PSI 3.49 against the summer, 0.55 so).
    row = drift.reset_index().iloc[[0]].assign(
        psi=3.49, psi_band="major", season_psi=0.55, like_a_year_before=False, top=True,
        within_training_dates=False, grows_with_export=False,
    )  # fmt: skip
    said = verdict(backtest, row)
    assert said.status == "retrain"
    assert said.reasons[0].endswith(
        "PSI 0.55 against the same weeks of an earlier year (major drift, >= 0.25)"
    )


def test_realized_metrics_equal_an_independent_computation():
    """ROC AUC by counting ordered pairs, Brier by hand, Wilson by its formula."""
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.6, 0.7, 0.1, 0.4, 0.3, 0.05, 0.5, 0.8])
    m = realized_metrics(y, p)
    pos, neg = p[y == 1], p[y == 0]
    pairs = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    assert m["roc_auc"] == pytest.approx(pairs / (len(pos) * len(neg)))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["realized_rate"] == pytest.approx(0.4) and m["predicted_rate"] == pytest.approx(
        p.mean()
    )
    z, n, k = 1.959963984540054, 10, 4
    center = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    assert m["realized_rate_lo"] == pytest.approx(center - half)
    assert m["realized_rate_hi"] == pytest.approx(center + half)
    assert m["roc_auc_lo"] < m["roc_auc"] < m["roc_auc_hi"]
    # top decile = the one highest score (0.9, a churner): lift = 1 / 0.4
    assert m["lift_top_decile"] == pytest.approx(2.5)


def test_realized_by_group_counts_each_band_and_segment():
    frame = pd.DataFrame(
        {
            "churned": [1, 0, 0, 1, 0, 0],
            "churn_probability": [0.8, 0.6, 0.1, 0.2, 0.1, 0.05],
            "risk_band": ["high", "high", "low", "low", "low", "low"],
            "plan": ["pro", "basic", "pro", None, "basic", "basic"],
        }
    )
    table = realized_by_group(frame, ["risk_band", "plan"]).set_index(["dimension", "segment"])
    assert table.loc[("all", "all"), "customers"] == 6
    assert table.loc[("risk_band", "high"), "realized_rate"] == pytest.approx(0.5)
    assert table.loc[("risk_band", "high"), "predicted_rate"] == pytest.approx(0.7)
    assert table.loc[("risk_band", "low"), "expected_churners"] == pytest.approx(0.45)
    assert table.loc[("plan", "(missing)"), "churners"] == 1
    lo, hi = wilson_interval(1, 2)
    assert table.loc[("risk_band", "high"), "realized_rate_lo"] == pytest.approx(lo)
    assert table.loc[("risk_band", "high"), "realized_rate_hi"] == pytest.approx(hi)
    with pytest.raises(ValueError, match="'segment_x'"):
        realized_by_group(frame, ["segment_x"])


# -------------------------------------------------------------------------------- CBPE units


def test_expected_auc_is_the_probability_weighted_pair_count():
    """NannyML's expected ROC AUC equals sum p_i (1 - p_j) [p_i > p_j] (ties half) over
    sum p * sum (1 - p)."""
    p = np.array([0.9, 0.5, 0.5, 0.2, 0.1, 0.3])
    num = sum(
        p[i] * (1 - p[j]) * ((p[i] > p[j]) + 0.5 * (p[i] == p[j]))
        for i in range(len(p))
        for j in range(len(p))
        if i != j
    )
    den = p.sum() * (1 - p).sum() - np.sum(p * (1 - p))
    # The curve's area counts each customer against itself too (half, a tie): the same pairs
    # with the diagonal in both sums.
    with_self = (num + 0.5 * np.sum(p * (1 - p))) / (p.sum() * (1 - p).sum())
    assert expected_roc_auc(p) == pytest.approx(with_self)
    assert num / den == pytest.approx(with_self, abs=0.05)


def test_cbpe_interval_holds_the_realized_auc_of_calibrated_labels():
    """Labels drawn from the probabilities: the realized AUC falls inside the CBPE interval in
    about 95 % of draws, and the expected AUC is the centre of those draws."""
    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-rng.normal(-3, 1.0, 4000)))
    estimate = cbpe(p, reps=300, seed=1)
    inside = 0
    aucs = []
    for _ in range(100):
        y = (rng.random(len(p)) < p).astype(int)
        auc = realized_metrics(y, p)["roc_auc"]
        aucs.append(auc)
        inside += estimate.roc_auc_lo <= auc <= estimate.roc_auc_hi
    assert inside >= 88
    assert np.mean(aucs) == pytest.approx(estimate.roc_auc, abs=0.01)
    assert estimate.churn_rate_lo < p.mean() < estimate.churn_rate_hi
    assert 0 < estimate.ece_hi < 0.05


def test_verdict_without_reference_says_retrain():
    judged = verdict(None, None)
    assert judged.status == "retrain" and judged.reasons == [NO_REFERENCE]


def test_realized_auc_far_below_the_backtest_calls_for_a_retrain():
    backtest = {"roc_auc_lo": 0.74, "roc_auc_hi": 0.80}
    drift = pd.DataFrame(columns=["feature", "psi", "psi_band", "top"])
    low = {"roc_auc": 0.60, "roc_auc_lo": 0.55, "roc_auc_hi": 0.65, "ece": float("nan")}
    assert verdict(backtest, drift, low).status == "retrain"
    near = {"roc_auc": 0.72, "roc_auc_lo": 0.66, "roc_auc_hi": 0.78, "ece": float("nan")}
    judged = verdict(backtest, drift, near)
    assert judged.status == "watch" and "0.720" in judged.reasons[0]


def top_feature_moved():
    """Three features of 2,000 customers, their reference, and a drift table where the top
    feature moved by three standard deviations."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=2000) for i in range(3)})
    p = rng.uniform(0.01, 0.3, 2000)
    reference = build_reference(frame, list(frame.columns), [], p)
    importance = {"f0": 3.0, "f1": 2.0, "f2": 1.0}
    moved = feature_drift(reference, frame.assign(f0=frame["f0"] + 3), p, importance)
    return frame, p, reference, importance, moved


def test_drift_is_a_watch_once_the_realized_auc_holds():
    """Drift stands in for the performance the labels will show. A one-cohort grocery export
    read "retrain" on the score's drift at a realized ROC AUC of 0.888 against a backtest of
    0.883: once the labels have matured and the AUC holds, drift is a watch, said with it;
    when the AUC falls below the backtest, drift still calls for a retrain."""
    *_, moved = top_feature_moved()
    backtest = {"roc_auc_lo": 0.86, "roc_auc_hi": 0.90}
    nan = float("nan")
    holds = {"roc_auc": 0.888, "roc_auc_lo": 0.86, "roc_auc_hi": 0.91, "ece": nan}
    judged = verdict(backtest, moved, holds)
    assert judged.status == "watch"
    assert "top feature f0" in judged.reasons[0] and "major drift" in judged.reasons[0]
    assert judged.reasons[1] == (
        "the realized ROC AUC 0.888 is within or above the backtest's 0.860–0.900: the drift "
        "has not cost ranking yet"
    )
    assert verdict(backtest, moved).status == "retrain"  # no labels yet: drift is the evidence
    below = {"roc_auc": 0.85, "roc_auc_lo": 0.82, "roc_auc_hi": 0.88, "ece": nan}
    assert verdict(backtest, moved, below).status == "retrain"


def test_expected_auc_watches_only_when_its_interval_is_below_the_backtest():
    """A mobile game scored 0.988 expected (0.984-0.990) against a backtest of 0.989-0.993 and
    realized 0.993: chance, not a warning. An interval wholly below the backtest's is one."""
    backtest = {"roc_auc_lo": 0.989, "roc_auc_hi": 0.993}
    drift = pd.DataFrame(columns=["feature", "psi", "psi_band", "top"])
    nan = float("nan")
    near = Expected(0.988, 0.984, 0.990, 0.82, 0.81, 0.83, 0.01, 200)
    assert verdict(backtest, drift, None, near).status == "fine"
    below = Expected(0.975, 0.970, 0.980, 0.82, 0.81, 0.83, 0.01, 200)
    judged = verdict(backtest, drift, None, below)
    assert judged.status == "watch"
    assert judged.reasons == [
        "expected ROC AUC (CBPE) 0.975 (0.970–0.980) is below the backtest's 0.989–0.993"
    ]
    assert verdict(backtest, drift, None, Expected(*[nan] * 7, 0)).status == "fine"


def test_a_model_pickled_before_reference_distributions_loads_without_them():
    """Backward compatible: a ChurnModel whose pickle has no 'reference' loads, with None."""
    from training.model import ChurnModel, Preprocessor

    model = ChurnModel({}, Preprocessor(), "", None, {}, 30, "2024-01-01")
    state = model.__getstate__()
    del state["reference"]
    old = ChurnModel.__new__(ChurnModel)
    old.__dict__.update(state)
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.reference is None


# --------------------------------------------------------------------------------- the demo

DRIFT_AT = "2024-10-01"
TRAINED_TO = "2024-08-15"  # the last observation date of training: its labels end before DRIFT_AT
RUN_DATES = pd.date_range("2024-08-20", "2024-12-10", freq="28D")  # the last one is not matured
CHANGED = {"report_view_events_30d", "revenue_30d", "last_payment_amount"}
# Features the demo moves with the calendar whatever happens: the quarterly NPS waves (days since
# the last answer depend on the date's place in the quarter) and the export's first day (the
# founding customers' first event is the data's first day, so their history grows with T).
CALENDAR = {"days_since_nps", "days_since_first_event"}


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """One model trained before DRIFT_AT (the data with and without the planted change are the
    same until then), and weekly-job partitions of both datasets, monitored."""
    from dataclasses import replace

    from features.config import config_path_for_data, feature_config_from_file
    from features.io import load_tables
    from ingest.demo_data import DemoConfig, write_demo
    from serving.batch import run_scoring
    from serving.monitoring_job import run_monitoring
    from training.config import train_config_from_file
    from training.pipeline import fit_from_tables

    root = tmp_path_factory.mktemp("monitoring")
    write_demo(root / "plain", DemoConfig(n_customers=3000, seed=11))
    write_demo(root / "drift", DemoConfig(n_customers=3000, seed=11, drift_at=DRIFT_AT))
    plain = load_tables(root / "plain")
    path = config_path_for_data(root / "plain")
    config = replace(train_config_from_file(path), date_to=TRAINED_TO)
    model = fit_from_tables(plain, feature_config_from_file(path), config, log=lambda _: None).model
    runs = {}
    for name, tables in (("plain", plain), ("drift", load_tables(root / "drift"))):
        scores = root / name / "scores"
        for as_of in RUN_DATES:
            run_scoring(tables, as_of, model, "1", scores, log=lambda _: None)
        result = run_monitoring(tables, scores, lambda info: (model, "1"), log=lambda _: None)
        runs[name] = (tables, scores, result)
    return model, runs


def _drifted(entry: dict) -> set[str]:
    return set(entry["drifted_features"])


def test_planted_drift_is_found_after_the_change_and_not_before(demo_runs):
    _, runs = demo_runs
    entries = {pd.Timestamp(e["as_of"]): e for e in runs["drift"][2].entries}
    start = pd.Timestamp(DRIFT_AT)
    for as_of, entry in entries.items():
        if as_of < start:
            assert not _drifted(entry) & CHANGED, entry["as_of"]
        elif as_of >= start + pd.Timedelta(days=30):  # the 30-day windows are all after it
            assert _drifted(entry) >= CHANGED, (entry["as_of"], entry["drifted_features"])
    assert sum(a >= start + pd.Timedelta(days=30) for a in entries) >= 2


def test_without_the_planted_change_nothing_is_flagged(demo_runs):
    """The same dates on the data without --drift-at: none of the changed features nor the
    score drift; only the two calendar-bound features the demo moves by design."""
    _, runs = demo_runs
    for entry in runs["plain"][2].entries:
        assert _drifted(entry) <= CALENDAR, (entry["as_of"], entry["drifted_features"])
        assert entry["psi_score"] < 0.25


def test_cbpe_interval_holds_the_realized_auc_of_matured_partitions(demo_runs):
    _, runs = demo_runs
    matured = [e for e in runs["plain"][2].entries if e["matured"]]
    assert len(matured) == len(RUN_DATES) - 1
    for entry in matured[:2]:  # the weeks right after training
        expected, realized = entry["expected"], entry["realized"]
        assert expected["roc_auc_lo"] <= realized["roc_auc"] <= expected["roc_auc_hi"], entry[
            "as_of"
        ]
        assert entry["realized_by_group"][0]["dimension"] == "all"
        assert {r["dimension"] for r in entry["realized_by_group"]} >= {"risk_band", "plan"}
    latest = runs["plain"][2].latest
    assert not latest["matured"] and "realized" not in latest
    assert latest["expected"]["roc_auc_lo"] < latest["expected"]["roc_auc"]


def test_monitoring_file_is_json_and_reruns_only_what_changed(demo_runs):
    from serving.monitoring_job import MONITORING_FILE, read_monitoring, run_monitoring

    model, runs = demo_runs
    tables, scores, first = runs["plain"]
    document = json.loads((scores / MONITORING_FILE).read_text())  # strict: no NaN
    assert document["latest"] == str(RUN_DATES[-1].date())
    assert [e["as_of"] for e in document["partitions"]] == [str(d.date()) for d in RUN_DATES]
    assert first.computed == [str(d.date()) for d in RUN_DATES]
    again = run_monitoring(tables, scores, lambda info: (model, "1"), log=lambda _: None)
    assert again.computed == []
    assert read_monitoring(scores)["partitions"] == document["partitions"]
    newer = run_monitoring(tables, scores, lambda info: (model, "2"), log=lambda _: None)
    assert newer.computed == first.computed  # another model version: examined again
    # The latest partition scored again by another model of the same version number (a new
    # registry): examined again, the others kept.
    from serving.monitoring_job import RUN_FILE

    latest = scores / f"as_of={RUN_DATES[-1].date()}" / RUN_FILE
    info = json.loads(latest.read_text())
    latest.write_text(json.dumps({**info, "model_run_id": "another run"}))
    try:
        rescored = run_monitoring(tables, scores, lambda info: (model, "1"), log=lambda _: None)
        assert rescored.computed == [str(RUN_DATES[-1].date())]
    finally:
        latest.write_text(json.dumps(info))


def test_a_model_without_reference_distributions_is_told_to_retrain(demo_runs, tmp_path):
    from dataclasses import replace as copy_with

    from serving.monitoring_job import run_monitoring

    model, runs = demo_runs
    tables, scores, _ = runs["plain"]
    old = copy_with(model, reference=None)
    result = run_monitoring(
        tables, scores, lambda info: (old, "1"), out=tmp_path / "m.json", log=lambda _: None
    )
    assert all(e["verdict"] == "retrain" and e["reasons"] == [NO_REFERENCE] for e in result.entries)
    assert "realized" in result.entries[0]  # realized performance needs no reference


def test_drift_on_a_model_trained_on_the_latest_labels_is_a_watch(demo_runs, tmp_path):
    """The planted change read by a model whose last training date is the latest with a
    complete label: the drifted partitions say "watch" and why, not "retrain"."""
    from dataclasses import replace as copy_with

    from features.labels import observation_end
    from serving.monitoring_job import run_monitoring

    model, runs = demo_runs
    tables, scores, before = runs["drift"]
    assert any(e["verdict"] == "retrain" for e in before.entries)
    churn = model.features_config().churn
    observed, _ = observation_end(tables, churn)
    latest = observed - pd.Timedelta(days=int(churn.horizon_days))
    fresh = copy_with(model, trained_until=str(latest.date()))
    result = run_monitoring(
        tables, scores, lambda info: (fresh, "1"), out=tmp_path / "m.json", log=lambda _: None
    )
    for old, new in zip(before.entries, result.entries, strict=True):
        if old["verdict"] == "retrain":
            assert new["verdict"] == "watch", new["as_of"]
            assert any(r.startswith("a retrain would see no newer labels") for r in new["reasons"])
        else:
            assert new["verdict"] == old["verdict"]


def test_the_service_answer_is_read_from_the_monitoring_file(demo_runs, tmp_path):
    """/monitoring's answer: the latest verdict, the last matured partition's realized figures,
    CBPE, the largest drifts, the history; a folder without monitoring says what to run."""
    from serving.monitoring_api import MonitoringFile

    _, runs = demo_runs
    _, scores, result = runs["drift"]
    answer = MonitoringFile(scores).answer()
    assert answer.available and answer.latest.as_of.isoformat() == result.latest["as_of"]
    assert answer.latest.verdict == result.latest["verdict"] and answer.latest.reasons
    assert answer.realized_as_of.isoformat() == str(RUN_DATES[-2].date())
    assert answer.realized["roc_auc"] == pytest.approx(result.entries[-2]["realized"]["roc_auc"])
    assert set(answer.drifted_features) >= CHANGED
    assert len(answer.drift) == 10 and answer.drift[0].psi >= answer.drift[-1].psi
    assert [h.as_of.isoformat() for h in answer.history] == [str(d.date()) for d in RUN_DATES]
    assert answer.backtest["roc_auc_lo"] < answer.backtest["roc_auc"]
    json.loads(answer.model_dump_json())
    empty = MonitoringFile(tmp_path).answer()
    assert not empty.available and "churn score" in empty.message
    (tmp_path / "monitoring.json").write_text("{not json")
    broken = MonitoringFile(tmp_path).answer()
    assert not broken.available and "cannot be read" in broken.message


def test_mlflow_gets_one_monitoring_run_per_model_version_stepped_by_run_date(demo_runs, tmp_path):
    from mlflow import MlflowClient

    from serving.monitoring_job import log_monitoring

    _, runs = demo_runs
    entries = runs["drift"][2].entries
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = log_monitoring(entries, "churn-demo", [e["as_of"] for e in entries[:2]], client=client)
    second = log_monitoring(entries, "churn-demo", [e["as_of"] for e in entries[2:]], client=client)
    assert first == second  # the same run, reused across calls
    history = client.get_metric_history(first, "psi_max")
    epoch = pd.Timestamp("1970-01-01")
    assert [m.step for m in history] == [(pd.Timestamp(e["as_of"]) - epoch).days for e in entries]
    matured = [e for e in entries if e["matured"]]
    auc = client.get_metric_history(first, "realized_roc_auc")
    assert [m.value for m in auc] == pytest.approx([e["realized"]["roc_auc"] for e in matured])
    verdicts = client.get_metric_history(first, "verdict")
    assert {m.value for m in verdicts} <= {0.0, 1.0, 2.0}


def test_churn_score_monitors_and_churn_monitor_reports(small_champion, tmp_path, monkeypatch):
    """The weekly job monitors after scoring (new and newly matured partitions); `churn monitor`
    prints the verdicts; the figures reach MLflow and a plot is written beside the file."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from churn.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_champion.tracking_uri)
    monkeypatch.chdir(small_champion.root)
    data, out = str(small_champion.data_dir), tmp_path / "s"
    for as_of in ("2024-11-10", "2024-12-15"):
        result = CliRunner().invoke(
            app, ["score", "--data", data, "--as-of", as_of, "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert "monitoring: 1 of" in result.output
        # this run's report.html shows the monitoring that includes this very run
        report = (out / f"as_of={as_of}" / "report.html").read_text(encoding="utf-8")
        assert "<h2>Monitoring</h2>" in report and "Not monitored yet" not in report
        assert f"<td>{as_of}</td>" in report
    document = json.loads((out / "monitoring.json").read_text())
    first, latest = document["partitions"]
    assert first["matured"] and "realized" in first and not latest["matured"]
    assert latest["verdict"] in ("fine", "watch", "retrain") and latest["drift"]
    assert (out / "monitoring.png").stat().st_size > 0
    result = CliRunner().invoke(app, ["monitor", "--scores", str(out), "--data", data])
    assert result.exit_code == 0, result.output
    assert "0 of 2 partitions examined" in result.output and "2024-11-10" in result.output
    client = MlflowClient(tracking_uri=small_champion.tracking_uri)
    experiment = client.get_experiment_by_name("churn-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["model_version"] == small_champion.champion.version
    missing = CliRunner().invoke(
        app, ["monitor", "--scores", str(tmp_path / "nope"), "--data", data]
    )
    assert missing.exit_code == 2 and "no folder of scored partitions" in missing.output


def test_the_plot_of_one_unmatured_run_spans_two_weeks_and_says_why_no_realized_mark():
    """A first run: matplotlib's default put one point on a 1999-2003 axis, and the ROC AUC
    panel was empty without a word."""
    from serving.monitoring_job import monitoring_figure

    entry = {
        "as_of": "2001-01-29", "verdict": "watch", "matured": False, "customers": 7515,
        "expected": {"churn_rate": 0.357, "roc_auc": 0.74, "roc_auc_lo": 0.73, "roc_auc_hi": 0.75},
        "psi_score": 0.02, "psi_max": 0.8,
    }  # fmt: skip
    fig = monitoring_figure([entry])
    low, high = fig.axes[-1].get_xlim()
    assert high - low == pytest.approx(14.0)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("realized figures appear once a run's horizon has passed") == 2


def test_maturity_follows_the_monitored_data_not_the_export_the_model_was_trained_on(
    demo_runs, tmp_path
):
    """A model trained on a cut with observed_until = the cut kept every later partition "not
    matured" on data months newer (a Sparkify-shaped export). Maturity reads the monitored
    data folder's observed_until (None: its end); the model's own is not used."""
    from dataclasses import replace as copy_with

    from serving.monitoring_job import run_monitoring

    model, runs = demo_runs
    tables, scores, before = runs["plain"]
    config = dict(model.feature_config)
    config["churn"] = {**dict(config.get("churn", {})), "observed_until": TRAINED_TO}
    cut = copy_with(model, feature_config=config)
    assert cut.features_config().churn.observed_until == TRAINED_TO
    result = run_monitoring(
        tables, scores, lambda info: (cut, "1"), out=tmp_path / "m.json", log=lambda _: None
    )
    assert [e["matured"] for e in result.entries] == [e["matured"] for e in before.entries]
    assert any(e["matured"] for e in result.entries)
    # Realized churn counts the cancellations after the model's observed_until too (a 7-week
    # export's first partition had read 0 of 1,964 churned, where 147 had).
    churners = [(e.get("realized") or {}).get("churners") for e in result.entries]
    assert churners == [(e.get("realized") or {}).get("churners") for e in before.entries]
    assert any(c for c in churners)
    limited = run_monitoring(
        tables, scores, lambda info: (cut, "1"), out=tmp_path / "l.json",
        observed_until=str(RUN_DATES[0].date()), log=lambda _: None,
    )  # fmt: skip
    assert not any(e["matured"] for e in limited.entries)
