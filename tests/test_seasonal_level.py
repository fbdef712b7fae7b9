"""The churn level of the time of year (training.seasonal_level) and how the model, the weekly
job and the drivers apply it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.signals import build_features
from training.drivers import risk_points
from training.seasonal_level import SeasonalLevel, sample_per_date


def _rows(dates: pd.DatetimeIndex, rate_of, predicted: float, n: int, seed: int = 0):
    """n customers per date, churning at rate_of(date), all predicted at `predicted`."""
    rng = np.random.default_rng(seed)
    as_of = np.repeat(dates.to_numpy(), n)
    rates = np.repeat([rate_of(d) for d in dates], n)
    churned = (rng.random(len(as_of)) < rates).astype(int)
    return as_of, churned, np.full(len(as_of), predicted)


def _winter(d: pd.Timestamp) -> float:
    """6 % in December to February, 2 % otherwise."""
    return 0.06 if d.month in (12, 1, 2) else 0.02


def test_the_weeks_of_a_year_before_set_the_level_of_a_date():
    dates = pd.date_range("2022-01-05", "2023-12-20", freq="14D")
    level = SeasonalLevel.fit(*_rows(dates, _winter, predicted=0.035, n=20_000))
    assert level is not None and level.between > 0
    january, july = level.shift(pd.Timestamp("2024-01-15")), level.shift(pd.Timestamp("2024-07-15"))
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    # Near what the same weeks showed: 6 % and 2 % against 3.5 % predicted.
    assert january == pytest.approx(logit(0.06) - logit(0.035), abs=0.1)
    assert july == pytest.approx(logit(0.02) - logit(0.035), abs=0.1)
    assert "same weeks a year before" in level.describe(pd.Timestamp("2024-01-15"))


def test_misses_within_their_noise_give_every_date_the_mean_miss():
    """No calendar: the dates differ only by chance, so no date gets a level of its own; the
    level is the mean over all dates (here the model over-predicts by half)."""
    dates = pd.date_range("2022-01-05", "2023-12-20", freq="14D")
    level = SeasonalLevel.fit(*_rows(dates, lambda d: 0.04, predicted=0.06, n=3_000, seed=3))
    assert level is not None and level.between == 0.0
    expected = np.log(0.04 / 0.96) - np.log(0.06 / 0.94)
    for day in ("2024-01-15", "2024-07-15", "2023-03-01"):
        assert level.shift(pd.Timestamp(day)) == pytest.approx(level.mean_miss)
    assert level.mean_miss == pytest.approx(expected, abs=0.06)


def test_less_than_a_year_of_dates_gives_the_mean_miss():
    dates = pd.date_range("2023-03-01", "2023-10-31", freq="7D")
    level = SeasonalLevel.fit(*_rows(dates, _winter, predicted=0.02, n=5_000))
    assert level is not None
    assert level.shift(pd.Timestamp("2023-12-01")) == level.mean_miss
    assert "none falls in the same weeks" in level.describe(pd.Timestamp("2023-12-01"))


def test_a_date_without_churners_and_a_single_date():
    dates = pd.date_range("2023-01-01", periods=3, freq="30D")
    as_of, churned, p = _rows(dates, lambda d: 0.05, predicted=0.05, n=200)
    churned[as_of == dates[0].to_datetime64()] = 0
    level = SeasonalLevel.fit(as_of, churned, p)
    assert level is not None and np.isfinite(level.miss).all() and np.isfinite(level.mean_miss)
    one = dates[:1]
    assert SeasonalLevel.fit(*_rows(one, lambda d: 0.05, predicted=0.05, n=100)) is None


def test_rows_are_sampled_per_date():
    as_of = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=3, freq="7D"), [5, 50, 10]))
    kept = sample_per_date(as_of, 20, seed=1)
    assert (np.diff(kept) > 0).all()
    assert as_of.iloc[kept].value_counts().sort_index().tolist() == [5, 20, 10]


def test_the_model_the_weekly_job_and_the_drivers_apply_the_level(small_champion):
    """The model carries a level (the small demo: two years of dates); a date's scores move by
    one shift in log-odds, so their order stays, and the weekly job's scores, the drivers'
    points and predict_proba agree."""
    from serving.batch import score_features

    model = small_champion.lightgbm
    assert model.seasonal_level is not None
    features = build_features(small_champion.tables, "2024-12-01", model.features_config())
    frame = features.head(400)
    calibrated = model.predict_proba(frame)  # no date: as calibrated
    december = model.predict_proba(frame, "2024-12-01")
    shift = model.seasonal_level.shift(pd.Timestamp("2024-12-01"))
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(logit(december) - logit(calibrated), shift, atol=1e-6)
    assert (np.argsort(december, kind="stable") == np.argsort(calibrated, kind="stable")).all()
    # The training rows carry their date: the same as passing it.
    dated = frame.assign(as_of=pd.Timestamp("2024-12-01"))
    np.testing.assert_allclose(model.predict_proba(dated), december)

    scored = score_features(model, frame, "1", top=2, as_of=pd.Timestamp("2024-12-01"))
    np.testing.assert_allclose(scored["churn_probability"], december, rtol=1e-6)
    contrib = model.contributions(frame)
    bias = contrib["bias"].to_numpy()
    shifts = model.level_shift(frame, "2024-12-01")
    points = risk_points(
        contrib[model.feature_names].to_numpy(), bias, model.probability_of_logit, shifts
    )
    p_base = model.probability_of_logit(bias, shifts)
    np.testing.assert_allclose(points.sum(axis=1), 100 * (december - p_base), atol=1e-6)
    assert model.level_shift(frame) is None  # records without a date


def test_the_simple_model_registered_instead_carries_a_level_too():
    """A logistic regression registered in LightGBM's place is calibrated on rows of several
    dates: it gets their level the same way (in-sample, so its mean miss is near nothing)."""
    from features.config import FeatureConfig
    from training.config import TrainConfig
    from training.model import Preprocessor
    from training.simple_model import fit_simple_model

    rng = np.random.default_rng(5)
    parts = []
    for i, day in enumerate(pd.date_range("2023-01-01", periods=6, freq="30D")):
        days = rng.exponential(20, 2000)
        churned = (rng.random(2000) < 1 / (1 + np.exp(3 - 0.04 * days))).astype(int)
        parts.append(
            pd.DataFrame(
                {
                    "as_of": day,
                    "customer_id": [f"C{i}-{j}" for j in range(2000)],
                    "churned": churned,
                    "days_since_last_event": days,
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    model = fit_simple_model(
        "logistic_regression",
        rows,
        rows,
        Preprocessor().fit(rows),
        FeatureConfig(),
        TrainConfig(model_name="t"),
        "2023-06-01",
    )
    assert model.seasonal_level is not None and len(model.seasonal_level.dates) == 6
    assert abs(model.seasonal_level.mean_miss) < 0.05
    probability = model.predict_proba(rows)  # the rows carry their dates
    assert probability.mean() == pytest.approx(rows["churned"].mean(), abs=0.005)


def test_the_weekly_report_says_when_the_time_of_year_moves_the_probabilities():
    from reporting.report_html import run_notes

    level = SeasonalLevel(("2023-01-10", "2023-07-10"), (0.6, -0.2), (0.01, 0.01), 0.0, 0.2)
    january = level.note(pd.Timestamp("2024-01-12"))
    assert january is not None and "odds x1.7" in january and "churned more" in january
    assert "churned less" in level.note(pd.Timestamp("2024-07-10"))
    assert level.note(pd.Timestamp("2024-04-10")) is None  # no training date of those weeks
    flat = SeasonalLevel(("2023-01-10", "2023-07-10"), (0.02, 0.0), (0.01, 0.01), 0.0, 0.2)
    assert flat.note(pd.Timestamp("2024-01-10")) is None  # less than x1.1 on the odds
    notes = run_notes({"level_note": january, "band_notes": []})
    assert notes == [january[0].upper() + january[1:]]


def test_the_weekly_report_says_how_far_the_time_of_year_moved_everyone_since_the_last_run():
    from reporting.report_html import run_notes

    level = SeasonalLevel(("2023-11-24", "2023-12-08"), (-0.5, 0.5), (0.01, 0.01), 0.0, 0.25)
    before, now = pd.Timestamp("2024-12-01"), pd.Timestamp("2024-12-08")
    odds = np.exp(level.shift(now) - level.shift(before))
    note = level.moved_note(now, before)
    assert note is not None and f"odds x{odds:.2f}" in note and "2024-12-01" in note
    assert f"50 % became {odds / (1 + odds):.1%}" in note
    assert level.moved_note(now, now) is None  # the same level: nothing moved
    notes = run_notes({"level_moved_note": note, "band_notes": []})
    assert notes == [note[0].upper() + note[1:]]
