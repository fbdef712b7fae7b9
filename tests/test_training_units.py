"""Training building blocks: backtest plans, metrics and intervals, calibration, capacity,
preprocessing, bands and the promotion rule."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from training.config import TrainConfig
from training.evaluation import (
    _ranking_metrics,
    binary_metrics,
    compare_on_rows,
    expected_calibration_error,
    top_share_mask,
)
from training.fit import (
    blended_logit,
    capacity_params,
    choose_rounds,
    fit_linear_term,
    hindsight_line,
    scale_rounds,
)
from training.model import (
    OTHER_LEVEL,
    TIE_BREAK_STD,
    ChurnModel,
    FeatureInputError,
    LinearTerm,
    Preprocessor,
    ScoreTransfer,
    band_thresholds,
    band_warnings,
    calibrate,
    capped_bands,
    choose_calibration,
    fit_calibrator,
    linear_spread,
    signed_log1p,
)
from training.splits import Fold, plan_backtest, step_for_span, time_folds

DATES = list(pd.date_range("2024-01-01", periods=12, freq="30D"))


def test_the_holdout_trains_only_on_dates_whose_labels_end_before_it():
    plan = plan_backtest(DATES, horizon_days=45, holdout_dates=1, max_folds=3, min_train=3)
    assert plan.honest and plan.holdout == (DATES[-1],)
    assert all(d + pd.Timedelta(days=45) <= DATES[-1] for d in plan.pool)
    assert plan.pool == tuple(DATES[:-2])  # the date 30 days before the holdout is purged
    for fold in plan.folds:
        assert fold.kind == "time" and len(fold.valid) == 1
        assert max(fold.valid) <= max(plan.pool)  # selection never sees the holdout
        assert all(d + pd.Timedelta(days=45) <= fold.valid[0] for d in fold.train)
    assert plan.refit_folds[-1] == Fold(plan.pool, plan.holdout)


def test_time_folds_are_spaced_and_need_enough_training_dates():
    folds = time_folds(DATES, horizon_days=30, spacing_days=60, max_folds=5, min_train=3)
    valid = [f.valid[0] for f in folds]
    assert valid == [DATES[-1], DATES[-3], DATES[-5], DATES[-7], DATES[-9]]
    assert all(len(f.train) >= 3 for f in folds)
    assert time_folds(DATES[:3], horizon_days=30, spacing_days=30, max_folds=3, min_train=3) == []


def test_a_history_shorter_than_the_horizon_has_no_honest_holdout_but_customer_folds():
    dates = list(pd.date_range("2024-03-01", periods=8, freq="7D"))  # 7 weeks, 91-day horizon
    plan = plan_backtest(dates, horizon_days=91, max_folds=3, min_train=3)
    assert not plan.honest and plan.holdout == ()
    assert "no honest holdout" in plan.notes[0]
    assert [f.kind for f in plan.folds] == ["customers"] * 4
    frame = pd.DataFrame(
        {"as_of": np.repeat(dates, 50), "customer_id": np.tile([f"c{i}" for i in range(50)], 8)}
    )
    seen = np.zeros(len(frame), dtype=int)
    for fold in plan.folds:
        train, valid = fold.masks(frame)
        assert not (train & valid).any()
        # a validation customer is never a training customer of the same fold
        assert set(frame["customer_id"][valid]).isdisjoint(frame["customer_id"][train])
        seen += valid
    assert (seen == 1).all()  # every row is validated exactly once


def test_a_holdout_without_time_folds_chooses_on_customer_folds():
    dates = list(pd.date_range("2011-02-01", periods=20, freq="7D"))
    plan = plan_backtest(dates, horizon_days=90, max_folds=3, min_train=3)
    assert plan.honest and len(plan.pool) >= 3
    assert {f.kind for f in plan.folds} == {"customers"}
    assert "customer folds" in plan.notes[0]


def test_the_step_between_dates_follows_the_span():
    assert step_for_span(pd.Timestamp("2011-01-01"), pd.Timestamp("2011-06-01")) == 6
    assert step_for_span(pd.Timestamp("2022-01-01"), pd.Timestamp("2024-01-01")) == 27
    # A day short of whole weeks: seven dates in a row fall on seven weekdays, so a weekly run
    # on any weekday reads a week the model has seen (a Monday run of a B2B trained on Fridays
    # read "major drift" in the days since the last event every week).
    for first, last in [("2011-01-01", "2011-06-01"), ("2022-01-01", "2024-01-01")]:
        step = step_for_span(pd.Timestamp(first), pd.Timestamp(last))
        dates = pd.date_range(first, periods=7, freq=f"{step}D")
        assert sorted(dates.dayofweek) == list(range(7))


def test_metrics_on_a_hand_made_holdout():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    p = np.where(y == 1, 0.9, 0.1)
    m = binary_metrics(y, p)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["lift_top_decile"] == pytest.approx(1 / 0.2)  # top 10 rows all churn, base 20 %
    assert m["recall_top_decile"] == pytest.approx(0.5)
    # the 10 rows least at risk all stay, where 80 % stay overall
    assert m["retained_lift_bottom_decile"] == pytest.approx(1 / 0.8)
    assert m["rows"] == 100 and m["positive_rate"] == pytest.approx(0.2)
    assert m["ece"] == pytest.approx(expected_calibration_error(y, p))


def test_ece_uses_equal_frequency_bins():
    y = np.array([0] * 90 + [1] * 10)
    assert expected_calibration_error(y, np.full(100, 0.1)) == pytest.approx(0.0)  # ties: one bin
    assert expected_calibration_error(y, np.r_[np.zeros(90), np.ones(10)]) == 0.0
    p = np.r_[np.full(90, 0.2), np.full(10, 0.6)]  # two bins: |0.2 - 0| * 90 + |0.6 - 1| * 10
    assert expected_calibration_error(y, p) == pytest.approx((0.2 * 90 + 0.4 * 10) / 100)


def test_top_share_picks_exactly_a_tenth_even_with_ties():
    assert top_share_mask(np.zeros(95)).sum() == 10


def test_single_class_holdout_gives_undefined_ranking_metrics():
    m = binary_metrics(np.zeros(20), np.linspace(0, 1, 20))
    assert np.isnan(m["roc_auc"]) and np.isnan(m["lift_top_decile"])


def test_preprocessor_fixes_feature_order_and_categories():
    train = pd.DataFrame(
        {"customer_id": ["a", "b"], "x": [1, 2], "plan": ["pro", "basic"], "churned": [0, 1]}
    )
    pre = Preprocessor(min_level_customers=1).fit(train)
    assert pre.feature_names_ == ["x", "plan"]
    scored = pre.transform(
        pd.DataFrame({"plan": ["enterprise", "pro"], "x": [3, None], "extra": [1, 1]})
    )
    assert list(scored.columns) == ["x", "plan"]
    assert list(scored["plan"].cat.categories) == ["basic", "pro"]
    assert pd.isna(scored["plan"].iloc[0]) and scored["plan"].iloc[1] == "pro"
    assert scored["x"].dtype == "float64" and np.isnan(scored["x"].iloc[1])


def _countries(customers: dict[str, int], dates: int) -> pd.DataFrame:
    """Rows of customers with a country, each repeated over `dates` observation dates."""
    ids = [(f"{country}-{i:03d}", country) for country, n in customers.items() for i in range(n)]
    return pd.DataFrame(
        [
            {"as_of": d, "customer_id": c, "country": country, "x": float(d), "churned": 0}
            for d in range(dates)
            for c, country in ids
        ]
    )


def test_preprocessor_scores_levels_of_few_customers_as_one_level():
    # USA has 4 customers but 120 rows over 30 dates: rows do not make a level common
    train = _countries({"uk": 40, "usa": 4, "canada": 3}, dates=30)
    pre = Preprocessor().fit(train)
    assert pre.categorical["country"] == ["uk", OTHER_LEVEL]
    assert pre.grouped == {"country": ["canada", "usa"]}
    assert pre.known_levels("country") == ["canada", "uk", "usa"]
    assert pre.named_levels() == {"country": {"uk"}}
    assert pre.grouping_notes() == [
        "country: 2 levels that fewer than 30 customers had are scored as one level, (other) "
        "(e.g. canada, usa); 1 level with more customers scored by its own name"
    ]
    scored = pre.transform(
        pd.DataFrame({"x": [1.0] * 5, "country": ["usa", "canada", "uk", "narnia", None]})
    )
    assert scored["country"].tolist()[:4] == [OTHER_LEVEL, OTHER_LEVEL, "uk", OTHER_LEVEL]
    assert pd.isna(scored["country"].iloc[4])  # missing stays missing


def test_preprocessor_keeps_a_lone_rare_level_by_its_name():
    pre = Preprocessor().fit(_countries({"uk": 40, "de": 35, "usa": 4}, dates=3))
    assert pre.categorical["country"] == ["de", "uk", "usa"]
    assert pre.grouped == {} and pre.named_levels() == {}
    assert pd.isna(pre.transform(pd.DataFrame({"x": [1.0], "country": ["narnia"]}))["country"][0])


def test_preprocessor_pickled_before_level_groups_still_transforms():
    pre = Preprocessor(min_level_customers=1).fit(_countries({"uk": 2, "usa": 1}, dates=2))
    del pre.grouped, pre.min_level_customers  # as a model trained before the groups
    pre = pickle.loads(pickle.dumps(pre))
    scored = pre.transform(pd.DataFrame({"x": [1.0, 2.0], "country": ["usa", "narnia"]}))
    assert scored["country"].iloc[0] == "usa" and pd.isna(scored["country"].iloc[1])
    assert pre.named_levels() == {} and pre.known_levels("country") == ["uk", "usa"]


def test_preprocessor_names_missing_and_bad_columns():
    pre = Preprocessor().fit(pd.DataFrame({"x": [1.0], "y": [2.0]}))
    with pytest.raises(FeatureInputError, match=r"lack 1 columns.*\['y'\]"):
        pre.transform(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(FeatureInputError, match="feature 'y' must be a number, got 'many'"):
        pre.transform(pd.DataFrame({"x": [1.0], "y": ["many"]}))
    with pytest.raises(FeatureInputError, match="feature 'x' must be finite"):
        pre.transform(pd.DataFrame({"x": [np.inf], "y": [1.0]}))


def test_band_thresholds_follow_cumulative_shares():
    thresholds = band_thresholds(np.linspace(0, 1, 101), {"high": 0.10, "medium": 0.30})
    assert thresholds == {"high": pytest.approx(0.9), "medium": pytest.approx(0.7)}


def test_band_ceilings_keep_likely_leavers_out_of_low():
    """Where a third of the customers are near-certain leavers (lapsed players), the top 10 %
    alone start above 98 %: a player at 98 % would read 'low'. The ceilings put everyone at 50 %
    or more in 'high' and 25-50 % in 'medium'; below the ceilings the shares decide as before.
    (Where most customers are above the 'high' ceiling, the caps bind: the test below.)"""
    rng = np.random.default_rng(0)
    mostly_leaving = np.r_[rng.uniform(0.97, 0.9999, 350), rng.uniform(0.02, 0.45, 650)]
    ceilings = {"high": 0.5, "medium": 0.25}
    shares = {"high": 0.10, "medium": 0.30}
    thresholds = band_thresholds(mostly_leaving, shares, ceilings)
    assert thresholds == {"high": 0.5, "medium": 0.25}
    assert band_thresholds(mostly_leaving, shares)["high"] > 0.98  # the rank alone
    model = ChurnModel.__new__(ChurnModel)
    model.band_thresholds = thresholds
    bands = model.risk_band(np.array([0.99, 0.5, 0.3, 0.1]))
    assert list(bands) == ["high", "high", "medium", "low"]
    rare = np.linspace(0.001, 0.2, 1000)  # a SaaS with few churners: the ceilings do not bind
    assert band_thresholds(rare, shares, ceilings) == band_thresholds(rare, shares)


def test_where_most_customers_are_above_the_ceiling_the_caps_bind():
    """An order export where 98 % never buy again: every customer above 50 % was 'high', with an
    alert each; a shop log where 55 % do not buy again had half its buyers 'high'. The caps keep
    'high' to the riskiest quarter and 'high' with 'medium' to the riskiest half; below the caps
    the ceilings still bind (20 % above 50 %: all of them 'high')."""
    rng = np.random.default_rng(1)
    never_back = rng.uniform(0.9, 0.999, 1000)
    ceilings = {"high": 0.5, "medium": 0.25}
    shares = {"high": 0.10, "medium": 0.30}
    caps = {"high": 0.25, "medium": 0.5}
    assert capped_bands(never_back, ceilings, caps) == {"high": 1.0, "medium": 1.0}
    model = ChurnModel.__new__(ChurnModel)
    model.band_thresholds = band_thresholds(never_back, shares, ceilings, caps)
    counts = pd.Series(model.risk_band(never_back)).value_counts()
    assert counts["high"] == pytest.approx(250, abs=2)
    assert counts["medium"] == pytest.approx(250, abs=2)
    shop = np.r_[rng.uniform(0.55, 0.95, 550), rng.uniform(0.05, 0.45, 450)]
    assert capped_bands(shop, ceilings, caps) == pytest.approx(
        {"high": 0.55, "medium": 0.55 + 0.45 * 0.2 / 0.4}, abs=0.05
    )
    model.band_thresholds = band_thresholds(shop, shares, ceilings, caps)
    counts = pd.Series(model.risk_band(shop)).value_counts()
    assert counts["high"] == pytest.approx(250, abs=2)
    assert counts["medium"] == pytest.approx(250, abs=2)
    few = np.r_[rng.uniform(0.55, 0.95, 200), rng.uniform(0.05, 0.2, 800)]
    assert capped_bands(few, ceilings, caps) == {}
    few_thresholds = band_thresholds(few, shares, ceilings, caps)
    assert few_thresholds["high"] == 0.5  # the ceiling: everyone at 50 % or more
    assert few_thresholds["medium"] == pytest.approx(np.quantile(few, 0.7))  # the share decides
    model.band_thresholds = band_thresholds(few, shares, ceilings, caps)
    assert (model.risk_band(few) == "high").sum() == 200


def test_band_thresholds_move_continuously_with_the_share_above_the_ceiling():
    """Two retrains of one grocery export had 47 % and 54 % of their customers above the 'high'
    ceiling: under a switch at half, one model called 221 customers 'high' and the other 6 on the
    same day. Now the share in 'high' grows with the share above 50 % up to the cap and stays."""
    rng = np.random.default_rng(2)
    ceilings = {"high": 0.5, "medium": 0.25}
    shares = {"high": 0.10, "medium": 0.30}
    caps = {"high": 0.25, "medium": 0.5}
    held = []
    for above in (0.05, 0.2, 0.24, 0.26, 0.47, 0.54, 0.9):
        n_above = int(1000 * above)
        p = np.r_[rng.uniform(0.5, 0.99, n_above), rng.uniform(0.01, 0.49, 1000 - n_above)]
        thresholds = band_thresholds(p, shares, ceilings, caps)
        held.append(float((p >= thresholds["high"]).mean()))
    assert held == pytest.approx([0.10, 0.2, 0.24, 0.25, 0.25, 0.25, 0.25], abs=0.002)


def test_band_settings_are_checked():
    with pytest.raises(ValueError, match="cumulative from the top"):
        TrainConfig(risk_bands={"high": 0.3, "medium": 0.1})
    with pytest.raises(ValueError, match=r"'high' .* is below 'medium'"):
        TrainConfig(risk_band_ceilings={"high": 0.2, "medium": 0.4})
    with pytest.raises(ValueError, match=r"names bands \['urgent'\]"):
        TrainConfig(risk_band_ceilings={"urgent": 0.9})
    with pytest.raises(ValueError, match="above 0 and at most 1"):
        TrainConfig(risk_bands={"high": 0.0, "medium": 0.3})
    with pytest.raises(ValueError, match=r"risk_band_caps .* lie below the bands' shares"):
        TrainConfig(risk_band_caps={"high": 0.05, "medium": 0.5})
    with pytest.raises(ValueError, match="risk_band_caps: 'medium'"):
        TrainConfig(risk_band_caps={"high": 0.4, "medium": 0.35})
    only_high = TrainConfig(risk_bands={"high": 0.2})  # the default ceilings still take
    assert band_thresholds(
        np.linspace(0, 0.8, 101), only_high.risk_bands, only_high.risk_band_ceilings
    ) == {"high": 0.5}


def _scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw booster-like probabilities and labels drawn from a known, slightly miscalibrated
    relation (the true probability is the raw one squared towards zero)."""
    rng = np.random.default_rng(seed)
    raw = rng.beta(1.2, 12, n)
    y = (rng.random(n) < np.clip(raw * 1.5, 0, 1)).astype(int)
    return raw, y


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_keeps_the_ranking_and_makes_no_plateaus(method):
    raw, y = _scores(20_000)
    calibrator = fit_calibrator(method, raw, y)
    scored = np.sort(np.random.default_rng(1).beta(1.2, 12, 5000))
    p = calibrate(calibrator, scored)
    assert (np.diff(p) >= 0).all()  # monotone: the ranking is kept
    distinct_raw = np.unique(scored)
    _, counts = np.unique(calibrate(calibrator, distinct_raw), return_counts=True)
    assert counts.max() <= 0.01 * len(distinct_raw)  # no probability shared by >1 % of them
    # and it calibrates: mean prediction close to the churn rate on fresh rows
    raw2, y2 = _scores(20_000, seed=2)
    assert calibrate(calibrator, raw2).mean() == pytest.approx(y2.mean(), abs=0.005)


def test_plain_isotonic_would_have_tied_customers():
    """What the interpolation fixes: isotonic regression on few rows maps blocks to one value."""
    from sklearn.isotonic import IsotonicRegression

    raw, y = _scores(600)
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(raw)
    _, counts = np.unique(plain, return_counts=True)
    assert counts.max() > 0.10 * len(raw)
    p = calibrate(fit_calibrator("isotonic", raw, y), raw)
    _, counts = np.unique(p, return_counts=True)
    assert counts.max() <= 0.01 * len(raw)


def test_auto_calibration_is_platt_and_isotonic_only_when_configured():
    """Isotonic's end blocks follow the calibration rows' tails (here: the lowest tenth never
    churned); Platt, the default, keeps those customers at a rate a later date can hold."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20_000)
    rate = np.where(z < np.quantile(z, 0.1), 0.0, np.where(z < 0, 0.2, 0.5))
    raw, y = 1 / (1 + np.exp(-z)), (rng.random(len(z)) < rate).astype(int)
    assert choose_calibration("auto") == "sigmoid" and choose_calibration("isotonic") == "isotonic"
    lowest = raw.min() * np.ones(1)
    assert calibrate(fit_calibrator("isotonic", raw, y), lowest)[0] < 0.001
    assert calibrate(fit_calibrator("auto", raw, y), lowest)[0] > 0.01
    with pytest.raises(ValueError, match="only one class"):
        fit_calibrator("auto", np.linspace(0, 1, 10), np.zeros(10))


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_a_calibration_carried_to_a_wider_model_gives_what_the_fold_models_would(method):
    """The calibration is fitted on fold models' scores; the refit trained on more rows with
    more rounds gives the same customers log-odds twice as spread and shifted. Carried over by
    ScoreTransfer, the refit's probabilities are the fold models' calibrated ones; applied as
    fitted, they are overconfident and off the churn rate."""
    rng = np.random.default_rng(4)
    fold_logit = rng.normal(-2.5, 0.8, 20_000)
    y = (rng.random(len(fold_logit)) < 1 / (1 + np.exp(-fold_logit))).astype(int)
    calibrator = fit_calibrator(method, 1 / (1 + np.exp(-fold_logit)), y)
    refit_logit = -1.0 + 2.0 * (fold_logit + 2.5)  # the same order, twice the spread
    transfer = ScoreTransfer.between([fold_logit[:10_000], fold_logit[10_000:]], refit_logit)
    assert transfer.factor == pytest.approx(0.5, rel=0.02)
    refit_raw = 1 / (1 + np.exp(-refit_logit))
    carried = calibrate(calibrator.transferred(transfer), refit_raw)
    wanted = calibrate(calibrator, 1 / (1 + np.exp(-fold_logit)))
    np.testing.assert_allclose(carried, wanted, atol=0.004)
    assert carried.mean() == pytest.approx(y.mean(), abs=0.005)
    assert abs(calibrate(calibrator, refit_raw).mean() - y.mean()) > 0.05  # as fitted: off
    assert (np.diff(carried[np.argsort(refit_logit)]) >= 0).all()  # the ranking is kept


def test_a_score_transfer_between_models_without_spread_changes_nothing():
    transfer = ScoreTransfer.between([np.full(5, -2.0)], np.linspace(-3, 1, 5))
    assert transfer.factor == 1.0 and transfer.fitted_mean == transfer.model_mean
    calibrator = fit_calibrator("sigmoid", *_scores(2_000))
    raw = np.linspace(0.01, 0.9, 50)
    np.testing.assert_allclose(
        calibrate(calibrator.transferred(transfer), raw), calibrate(calibrator, raw)
    )


def test_a_calibration_slice_that_ranks_backwards_keeps_the_order_at_the_base_rate():
    raw = np.linspace(0.01, 0.5, 400)
    y = (raw < 0.1).astype(int)  # the booster ranks these rows backwards
    p = calibrate(fit_calibrator("sigmoid", raw, y), raw)
    assert (np.diff(p) > 0).all()  # never inverted
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)


def test_empty_risk_bands_are_reported():
    bands = np.array(["high"] * 10 + ["low"] * 90, dtype=object)
    warnings = band_warnings(bands, {"high": 0.5, "medium": 0.5}, "the test customers")
    assert len(warnings) == 1 and "'medium' is empty on the test customers" in warnings[0]
    assert "threshold (50.0%) coincides with the next band's" in warnings[0]
    warnings = band_warnings(bands, {"high": 0.5, "medium": 0.25}, "the test customers")
    assert "nobody's probability lies in [25.0%, 50.0%)" in warnings[0]


def test_capacity_grows_with_churners_and_shrinks_for_small_data():
    small = capacity_params(rows=3000, churners=90)
    large = capacity_params(rows=2_000_000, churners=60_000)
    assert small["num_leaves"] == 4 and large["num_leaves"] == 31
    # leaves are big enough to hold about 20 churners at the base rate
    assert large["min_data_in_leaf"] == round(20 / (60_000 / 2_000_000))
    assert capacity_params(rows=200_000, churners=6500, customers=6500)["num_leaves"] == 6
    assert small["min_data_in_leaf"] <= 3000 // (2 * small["num_leaves"])


def test_capacity_follows_the_rarer_class_when_most_customers_churn():
    """An order export where 98 % never buy again: the returners are the rare class, and a
    leaf of 20 rows would hold about half a returner."""
    rows, returners = 74_480, 1_681
    params = capacity_params(rows=rows, churners=rows - returners, customers=1_500)
    assert params["num_leaves"] == 4
    assert params["min_data_in_leaf"] == round(20 / (returners / rows))
    assert params == capacity_params(rows=rows, churners=returners, customers=1_500)


def test_rounds_follow_the_median_fold_curve_not_one_fold_that_creeps_up():
    """A fold whose flat curve creeps up until 270 rounds drags the peak of the mean curve there;
    the median curve (each fold measured from its own best) stays with the others."""
    a = np.r_[np.linspace(0.6, 0.8, 40), 0.8 - 0.0001 * np.arange(1, 261)]  # best at 40
    b = np.r_[np.linspace(0.6, 0.78, 50), 0.78 - 0.0001 * np.arange(1, 251)]  # best at 50
    c = np.r_[np.linspace(0.6, 0.7, 30), 0.7 + 0.0003 * np.arange(1, 241), np.full(30, 0.7)]
    assert int(np.argmax(np.mean([a, b, c], axis=0))) + 1 == 270  # the peak of the mean
    assert 40 <= choose_rounds([a, b, c]) <= 60
    # one fold: its plateau within 0.001 of the best runs from 40 to 50 rounds
    assert 44 <= choose_rounds([a]) <= 45  # sqrt(40 x 50)
    short = np.r_[np.linspace(0.6, 0.76, 60), np.linspace(0.76, 0.75, 10)]  # stopped early
    assert 40 <= choose_rounds([a, short]) <= 65  # two folds: the mean
    with pytest.raises(ValueError, match="at least one fold"):
        choose_rounds([])


def test_rounds_on_a_flat_curve_are_the_middle_of_its_plateau_not_its_noisy_peak():
    """Curves flat within 0.001 from 8 to 80 rounds, each peaking early by noise (Online Retail,
    2011-09-01: customer folds put the peak at 11 rounds where the holdout was best at 40): the
    rounds are the geometric middle of the plateau, not where noise put the peak."""
    rounds = np.arange(1, 201)
    rise = 0.74 - 0.04 * np.exp(-rounds / 2.0)  # reaches its plateau within 8 rounds
    fall = np.where(rounds > 80, 0.0001 * (rounds - 80), 0.0)  # then slowly worse after 80
    noise = np.random.default_rng(0).normal(0, 0.0002, (4, 200))
    noise[:, 10] += 0.0006  # every fold's peak at 11 rounds
    curves = list(rise - fall + noise)
    chosen = choose_rounds(curves)
    peak = int(np.argmax(np.median([c - c.max() for c in curves], axis=0))) + 1
    assert peak == 11
    assert 20 <= chosen <= 35


def test_bootstrap_intervals_resample_customers_and_cover_the_estimate():
    rng = np.random.default_rng(0)
    customers = np.repeat(np.arange(400), 3)  # each customer on three dates
    y = (rng.random(1200) < 0.3).astype(int)
    good = y + rng.normal(0, 0.8, 1200)
    noise = rng.random(1200)
    comparison = compare_on_rows(
        kind="time holdout",
        honest=True,
        dates=[pd.Timestamp("2024-01-01")],
        y=y,
        scores={"candidate": good, "recency_rule": noise},
        clusters=customers,
        probability_scores=(),
        reps=200,
    )
    auc = comparison.metrics["candidate"]["roc_auc"]
    lo, hi = comparison.intervals["candidate"]["roc_auc"]
    assert lo < auc < hi and hi - lo < 0.1
    gain_lo, _ = comparison.differences["recency_rule"]
    assert gain_lo > 0.1  # the candidate beats noise, surely
    assert comparison.churners == y.sum() and comparison.customers == 400
    assert np.isnan(comparison.metrics["recency_rule"]["log_loss"])


def test_fast_ranking_metrics_match_scikit_learn_with_ties():
    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.2).astype(float)
    p = np.round(rng.random(500) + 0.3 * y, 1)  # many ties
    m = binary_metrics(y, p)
    np.testing.assert_allclose(
        _ranking_metrics(y, p), [m["roc_auc"], m["pr_auc"], m["lift_top_decile"]]
    )


def test_a_holdout_without_churners_says_it_cannot_judge():
    comparison = compare_on_rows(
        kind="time holdout",
        honest=True,
        dates=[pd.Timestamp("2024-01-01")],
        y=np.zeros(50),
        scores={"candidate": np.linspace(0, 1, 50)},
        clusters=np.arange(50),
        reps=20,
    )
    assert not comparison.measurable and "no churners" in comparison.notes[-1]


def test_rounds_grow_with_the_training_rows_up_to_three_times():
    assert scale_rounds(40, [10_000, 10_000], 10_000) == 40
    assert scale_rounds(40, [10_000, 20_000], 30_000) == 80
    assert scale_rounds(40, [1_000], 100_000) == 120
    assert scale_rounds(40, [50_000], 10_000) == 40  # never fewer than the folds' peak


def test_the_linear_term_orders_equal_booster_scores_and_respects_directions():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"events_30d": rng.poisson(3, 2000).astype(float),
                          "noise": rng.normal(size=2000)})  # fmt: skip
    y = (rng.random(2000) < 1 / (1 + np.exp(0.5 * frame["events_30d"] - 1))).astype(int)
    tie = LinearTerm.fit(frame, y, {"events_30d": -1})
    terms = tie.terms(frame)
    assert np.std(terms.sum(axis=1)) == pytest.approx(1e-3, rel=1e-6)
    assert tie.coef[0] < 0  # more activity, lower risk: its learned direction
    # a direction the data contradicts is dropped, never reversed
    against = LinearTerm.fit(frame, y, {"events_30d": 1})
    assert against.coef[0] == 0.0
    with_missing = frame.assign(events_30d=np.nan)
    assert (tie.terms(with_missing)[:, 0] == 0).all()  # missing adds nothing


def test_a_column_against_its_direction_is_left_out_and_the_others_refitted():
    """Activity over 30 days raises the risk here once its 90-day partner is known (a steep
    drop reads as low recent use); its direction says it never does, so the term leaves it out,
    and the partner's coefficient is what it is without it, not the value fitted to offset it."""
    rng = np.random.default_rng(3)
    events_90d = rng.poisson(6, 4000).astype(float)
    frame = pd.DataFrame({"events_30d": rng.binomial(events_90d.astype(int), 0.4).astype(float),
                          "events_90d": events_90d, "tenure_days": rng.uniform(30, 900, 4000)})  # fmt: skip
    logit = (0.6 * np.log1p(frame["events_30d"]) - 1.2 * np.log1p(events_90d) + 3.5
             - 0.7 * np.log(frame["tenure_days"]))  # fmt: skip
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(int)
    free = LinearTerm.fit(frame, y, {}, spread=1.0)
    assert free.coef[0] > 0  # the unconstrained fit goes against the direction
    term = LinearTerm.fit(frame, y, {"events_30d": -1, "events_90d": -1}, spread=1.0)
    without = LinearTerm.fit(frame.drop(columns="events_30d"), y, {}, spread=1.0)
    assert term.coef[0] == 0.0
    np.testing.assert_allclose(term.coef[1:], without.coef, rtol=1e-6)
    # Zeroing the coefficient after one fit (as before) leaves the partner at its offsetting
    # value: another term than the refit, whatever its scale.
    zeroed = free.coef[1:] / np.linalg.norm(free.coef[1:])
    assert not np.allclose(zeroed, without.coef / np.linalg.norm(without.coef), atol=0.05)


def test_the_linear_term_takes_values_beyond_its_fitting_range_at_the_edge():
    """Counts of a short export grow with its age past every training value; a linear term
    that extrapolated lifted a 7-week export's probabilities week after week. Beyond the
    fitting rows' range a value counts as the edge, as in the trees; within it, as fitted."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"thumbs_down_events_90d": rng.poisson(2, 3000).astype(float)})
    y = (rng.random(3000) < 1 / (1 + np.exp(1.5 - 0.4 * frame.iloc[:, 0]))).astype(int)
    term = LinearTerm.fit(frame, y, {}, spread=1.0)
    top = frame.iloc[:, 0].max()
    edge = term.terms(pd.DataFrame({"thumbs_down_events_90d": [top]}))[0, 0]
    beyond = term.terms(pd.DataFrame({"thumbs_down_events_90d": [top * 3]}))[0, 0]
    assert edge > 0 and beyond == edge
    inside = term.terms(frame)
    x = signed_log1p(frame.to_numpy(float))
    np.testing.assert_allclose(inside, (x - term.center) / term.scale * term.coef)
    missing = term.terms(pd.DataFrame({"thumbs_down_events_90d": [np.nan]}))
    assert missing[0, 0] == 0.0


def _activity_rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Heavy-tailed counts and spend; churn falls with the log of the orders (as in order data)."""
    rng = np.random.default_rng(seed)
    orders = rng.negative_binomial(1, 0.1, n).astype(float)
    frame = pd.DataFrame({"orders": orders, "spend": orders * rng.lognormal(3, 1, n)})
    y = (rng.random(n) < 1 / (1 + np.exp(1.2 * np.log1p(orders) - 2))).astype(int)
    return frame, y


def test_the_linear_term_takes_its_share_of_the_score():
    assert linear_spread(0.0, np.array([-1.0, 1.0])) == TIE_BREAK_STD  # a tie-breaker only
    assert linear_spread(0.25, np.array([-0.9, 0.9])) == pytest.approx(0.3)  # 1/3 of 0.9
    assert linear_spread(0.25, np.zeros(5)) == TIE_BREAK_STD  # a booster without splits
    with pytest.raises(ValueError, match="linear_share"):
        linear_spread(1.0, np.ones(3))
    with pytest.raises(ValueError, match="linear_share"):
        TrainConfig(linear_share=-0.1)
    frame, y = _activity_rows(4000, 1)
    params = {"objective": "binary", "num_leaves": 4, "verbosity": -1, "seed": 1}
    import lightgbm as lgb

    booster = lgb.train(params, lgb.Dataset(frame, y), num_boost_round=30)
    config = TrainConfig(linear_share=0.25)
    linear = fit_linear_term(booster, 30, frame, y, config)
    booster_std = booster.predict(frame, raw_score=True).std()
    assert linear.terms(frame).sum(axis=1).std() == pytest.approx(booster_std / 3, rel=1e-6)
    np.testing.assert_allclose(
        blended_logit(booster, 30, linear, frame),
        booster.predict(frame, raw_score=True) + linear.terms(frame).sum(axis=1),
    )
    assert blended_logit(booster, 30, None, frame) == pytest.approx(
        booster.predict(frame, raw_score=True)
    )


def test_the_linear_term_reads_counts_on_a_log_scale():
    """On heavy-tailed counts the log scale ranks customers as their risk does: a linear model
    on the raw counts is driven by a few customers with hundreds of orders."""
    frame, y = _orders_and_recency(4000, 2)
    linear = LinearTerm.fit(frame, y, {}, spread=1.0)
    assert linear.log_scaled
    fresh, y_fresh = _orders_and_recency(4000, 3)
    on_log = binary_metrics(y_fresh, linear.terms(fresh).sum(axis=1))["roc_auc"]
    raw = LinearTerm(linear.columns, *_raw_fit(frame, y))
    on_raw = binary_metrics(y_fresh, raw.terms(fresh).sum(axis=1))["roc_auc"]
    assert on_log > on_raw + 0.01


def _orders_and_recency(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Two heavy-tailed signals whose log each moves the risk: how the raw scale weighs one
    against the other is set by a few extreme customers."""
    rng = np.random.default_rng(seed)
    orders = rng.negative_binomial(1, 0.1, n).astype(float)
    days = rng.lognormal(3, 1.2, n)
    frame = pd.DataFrame({"orders": orders, "days_since_last": days})
    log_odds = 1 - 1.2 * np.log1p(orders) + np.log1p(days)
    return frame, (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)


def test_the_linear_term_weighs_each_level_of_a_category():
    """A plan that doubles the churn odds gets its own term; a level unseen in training and a
    missing plan add nothing; a category with too many levels is left to the trees."""
    rng = np.random.default_rng(5)
    n = 6000
    plan = rng.choice(["basic", "pro", "team"], n)
    orders = rng.poisson(3, n).astype(float)
    log_odds = -1 + 0.7 * (plan == "basic") - 0.3 * np.log1p(orders)
    y = (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)
    raw = pd.DataFrame(
        {"orders": orders, "plan": plan, "account": [f"a{i % 80}" for i in range(n)]}
    )
    preprocessor = Preprocessor().fit(raw)
    transformed = preprocessor.transform(raw)
    linear = LinearTerm.fit(transformed, y, {}, spread=0.5)
    assert linear.feature_columns == ["orders", "plan"]  # 80 accounts: left to the trees
    basic, pro, team = linear.level_coef["plan"]
    assert basic > max(pro, team) + 0.1
    terms = linear.terms(transformed)
    assert terms.sum(axis=1).std() == pytest.approx(0.5, rel=1e-6)
    odd = preprocessor.transform(raw.head(2).assign(plan=["enterprise", None]))
    assert (linear.terms(odd)[:, 1] == 0).all()


def test_the_linear_term_fits_on_a_sample_of_many_rows(monkeypatch):
    import lightgbm as lgb

    import training.fit

    frame, y = _orders_and_recency(3000, 6)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(frame, y), 20)
    monkeypatch.setattr(training.fit, "LINEAR_FIT_ROWS", 1000)
    linear = fit_linear_term(booster, 20, frame, y, TrainConfig(linear_share=0.5))
    on_all = LinearTerm.fit(frame, y, {}, spread=1.0)
    # the sample's coefficients point the same way as all the rows'
    assert np.sign(linear.coef).tolist() == np.sign(on_all.coef).tolist()
    fresh, y_fresh = _orders_and_recency(3000, 7)
    assert binary_metrics(y_fresh, linear.terms(fresh).sum(axis=1))["roc_auc"] > 0.75


def _raw_fit(frame: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    x = frame.to_numpy(float)
    center, scale = np.median(x, axis=0), x.std(axis=0)
    model = LogisticRegression(C=0.1, solver="newton-cholesky").fit((x - center) / scale, y)
    return center, scale, model.coef_[0]


def test_a_model_saved_with_the_former_tie_breaker_loads_and_scores_as_before():
    """Models registered before the linear term held `tie_break`: a LinearTieBreak on the raw
    values, whose pickle lacks `log_scaled`."""
    frame, y = _activity_rows(500, 4)
    old = LinearTerm.fit(frame, y, {})
    state = {k: v for k, v in old.__dict__.items() if k not in ("log_scaled", "low", "high")}
    former = LinearTerm.__new__(LinearTerm)
    former.__dict__.update(state)
    assert former.log_scaled is False  # read on the raw values, as it was fitted
    x = frame.to_numpy(float)
    np.testing.assert_allclose(
        former.terms(frame), np.nan_to_num((x - old.center) / old.scale) * old.coef
    )
    model = ChurnModel.__new__(ChurnModel)
    model.__setstate__({"tie_break": former, "_booster": None})
    assert model.linear_term is former and not hasattr(model, "tie_break")
    # a registered logistic regression (training.simple_model) keeps its own `linear` pipeline
    from training.simple_model import LinearChurnModel

    simple = LinearChurnModel.__new__(LinearChurnModel)
    simple.__setstate__({"tie_break": None, "linear": "the fitted pipeline", "_booster": None})
    assert simple.linear == "the fitted pipeline" and simple.linear_term is None


def test_the_logistic_baseline_reads_heavy_tailed_numbers_on_a_log_scale():
    """The gate's baseline is the model an analyst would fit: on days and counts whose log
    moves the risk, it ranks fresh customers better than the same regression on raw values."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training.evaluation import fit_logistic, logistic_scores

    def rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
        rng = np.random.default_rng(seed)
        days = rng.lognormal(3, 1.5, n)
        orders = rng.negative_binomial(1, 0.05, n).astype(float)
        log_odds = -1 + 0.8 * np.log1p(days) - 0.8 * np.log1p(orders)
        frame = pd.DataFrame({"days_since_last_event": days, "orders": orders})
        return frame, (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)

    train, y = rows(3000, 1)
    fresh, y_fresh = rows(3000, 2)
    preprocessor = Preprocessor().fit(train)
    baseline = fit_logistic(train, y, preprocessor, 0)
    on_log = binary_metrics(y_fresh, logistic_scores(baseline, fresh, preprocessor))["roc_auc"]
    raw = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(train, y)
    on_raw = binary_metrics(y_fresh, raw.predict_proba(fresh)[:, 1])["roc_auc"]
    assert on_log > on_raw + 0.01


@pytest.mark.parametrize(
    ("gain", "interval", "verdict"),
    [
        (0.0012, (-0.0008, 0.0033), "within the noise"),
        (0.0001, (0.00002, 0.0003), "negligible"),
        (0.0150, (0.0060, 0.0240), "a measurable loss"),
    ],
)
def test_the_hindsight_line_tells_noise_a_negligible_loss_and_a_real_one(gain, interval, verdict):
    info = {"hindsight": 136, "chosen": 134, "hindsight_auc": 0.74 + gain, "chosen_auc": 0.74}
    line = hindsight_line({**info, "hindsight_gain_interval": interval})
    assert line.endswith(verdict) and f"{gain:+.4f} over the chosen 134" in line


def test_mlflow_noise_about_choices_made_on_purpose_is_left_out(caplog):
    """Every `churn train` printed MLflow's CloudPickle caution and its pip-version warning;
    other MLflow warnings still reach the user."""
    import logging

    from training.tracking import quiet_mlflow

    quiet_mlflow()
    quiet_mlflow()  # idempotent: one filter
    logger = logging.getLogger("mlflow.pyfunc")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="mlflow"):
        logger.warning("Passing a Python object as `python_model` causes it to be serialized")
        logging.getLogger("mlflow.utils.environment").warning(
            "Failed to resolve installed pip version. ``pip`` will be added"
        )
        logger.warning("Model signature does not match the input example")
        logging.getLogger("mlflow.store").info("Creating initial MLflow database tables...")
    assert [r.getMessage() for r in caplog.records] == [
        "Model signature does not match the input example"
    ]


def test_a_six_week_export_keeps_observation_dates_with_the_defaults():
    """A streaming app's 6-week export with a 14-day horizon: the last complete label date is
    27 days after the first record, and a warm-up floor of 30 days refused to train. The
    warm-up is a third of the span, at least a week, at most the longest window."""
    from features.config import ChurnDefinition, FeatureConfig
    from training.pipeline import MIN_WARMUP_DAYS, derived_warmup

    config = FeatureConfig(churn=ChurnDefinition(mode="contractual", horizon_days=14))
    first = pd.Timestamp("2018-10-01")
    assert derived_warmup(first, pd.Timestamp("2018-10-28"), config) == 9
    assert derived_warmup(first, pd.Timestamp("2018-10-10"), config) == MIN_WARMUP_DAYS == 7
    assert derived_warmup(first, pd.Timestamp("2019-10-01"), config) == max(config.windows)


def test_the_warmup_keeps_whole_windows_where_enough_dates_remain():
    """A grocery's 4-month export with a 30-day horizon: dates from 16 days in read every
    30-day window as the whole history. The warm-up is the longest window after which half the
    dates of a third of the span's warm-up remain, and two or more; else that third."""
    from features.config import ChurnDefinition, FeatureConfig
    from training.pipeline import MIN_DATES_WITH_WHOLE_WINDOWS, derived_warmup

    config = FeatureConfig(churn=ChurnDefinition(mode="non_contractual", horizon_days=30))
    assert config.windows == (7, 30, 90) and MIN_DATES_WITH_WHOLE_WINDOWS == 2
    first = pd.Timestamp("2000-11-01")
    day = pd.Timedelta(days=1)
    # Last complete date 45 days in: 6 dates 6 days apart after 15 days; 3 after 30.
    assert derived_warmup(first, first + 45 * day, config) == 30
    # 38 days in: 5 after 12 days, 2 after 30: fewer than half, so 12.
    assert derived_warmup(first, first + 38 * day, config) == 12
    # 35 days in, one date after 30 days: a third of the span.
    assert derived_warmup(first, first + 35 * day, config) == 35 // 3
    # 120 days in: 12 weekly dates after 40 days, 5 after 90: fewer than half, so 40.
    assert derived_warmup(first, first + 120 * day, config) == 40
    # 200 days in: 20 after 66 days, 16 after 90.
    assert derived_warmup(first, first + 200 * day, config) == 90
    # A configured step counts: every 28 days, 120 days give 3 dates after 40, 2 after 90.
    assert derived_warmup(first, first + 120 * day, config, every_days=28) == 90


def test_qualifying_events_that_never_occur_are_refused_before_any_training():
    """A typo in qualifying_events ("order" in a log of "purchase" events) made every customer
    look churned and ended `churn train` in an IndexError: the error names the table, the
    column, the events there are and the setting to change."""
    from features.config import ChurnDefinition, FeatureConfig
    from features.contract import ContractError
    from tests.factories import make_tables
    from training.pipeline import fit_from_tables

    customers = [{"customer_id": f"{i:03d}", "signup_at": "2024-01-01"} for i in range(5)]
    activity = [
        {"customer_id": f"{i:03d}", "at": f"2024-0{m}-1{i}", "event": "purchase", "value": 1.0}
        for i in range(5)
        for m in (2, 3, 4)
    ]
    tables = make_tables(customers, activity)
    churn = ChurnDefinition(mode="non_contractual", horizon_days=30, qualifying_events=("order",))
    with pytest.raises(ContractError) as err:
        fit_from_tables(tables, FeatureConfig(churn=churn), TrainConfig(), log=lambda _: None)
    text = str(err.value)
    assert "table 'activity', column 'event'" in text
    assert "qualifying events ['order'] never occur (events: ['purchase'])" in text
    assert "[features.churn] qualifying_events" in text


def test_a_training_set_without_rows_is_named_not_an_index_error():
    from training.pipeline import plan_for

    empty = pd.DataFrame({"as_of": pd.Series(dtype="datetime64[ns]"), "churned": []})
    with pytest.raises(ValueError, match="no customer is eligible at any observation date"):
        plan_for(empty, 30, TrainConfig())


def test_folds_and_a_holdout_of_one_label_class_give_way_instead_of_stopping_the_run():
    """A 92-backer export stopped at a fold whose validation date had no churner; such a fold is
    left out (said), a holdout of one class gives way to the folds (no honest holdout, said),
    and without any fold left customer folds take their place."""
    from training.splits import plan_backtest, with_both_classes

    dates = pd.date_range("2024-01-01", periods=8, freq="30D")
    rng = np.random.default_rng(0)
    rows = []
    for d in dates:
        for c in range(40):
            churned = int(rng.random() < 0.3) if d not in (dates[5], dates[7]) else 0
            rows.append({"as_of": d, "customer_id": f"{c:03d}", "churned": churned})
    frame = pd.DataFrame(rows)
    plan = plan_backtest(list(dates), 30, max_folds=3, min_train=2)
    assert plan.holdout == (dates[7],) and any(f.valid == (dates[5],) for f in plan.folds)
    fixed = with_both_classes(plan, frame)
    assert not fixed.honest and fixed.pool == tuple(dates)
    assert all(f.valid != (dates[5],) for f in fixed.folds) and fixed.folds
    assert any("holds one label class only" in n for n in fixed.notes)
    assert any("left out: one label class" in n for n in fixed.notes)
    # every fold of one class, the customer folds too: unchanged (the run says why, as before)
    assert with_both_classes(plan, frame.assign(churned=0)) is plan
    # a clean plan is returned as it was
    clean = frame.assign(churned=(frame.index % 3 == 0).astype(int))
    assert with_both_classes(plan, clean) is plan
