"""Training building blocks: time splits, metrics, preprocessing, bands and the promotion rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluation import binary_metrics, expected_calibration_error, top_share_mask
from training.model import FeatureInputError, Preprocessor, band_thresholds
from training.splits import split_dates

DATES = list(pd.date_range("2024-01-01", periods=12, freq="30D"))


def test_split_is_time_ordered_and_purges_overlapping_labels():
    split = split_dates(DATES, horizon_days=30, validation=2, calibration=2, test=3)
    assert split.test == tuple(DATES[-3:])
    assert split.calibration == tuple(DATES[-5:-3])
    assert split.validation == tuple(DATES[-7:-5])
    assert split.train == tuple(DATES[:5])
    # A 45-day horizon reaches into the next role: one date is dropped before each role.
    dates = list(pd.date_range("2024-01-01", periods=14, freq="30D"))
    purged = split_dates(dates, horizon_days=45, validation=2, calibration=2, test=3)
    assert purged.test == tuple(dates[11:]) and purged.calibration == tuple(dates[8:10])
    assert purged.validation == tuple(dates[5:7]) and purged.train == tuple(dates[:4])


def test_too_few_dates_say_what_to_change():
    with pytest.raises(ValueError, match=r"too few: need at least 10.*widen --from/--to"):
        split_dates(DATES[:6], horizon_days=30, validation=2, calibration=2, test=3)


def test_metrics_on_a_hand_made_holdout():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    p = np.where(y == 1, 0.9, 0.1)
    m = binary_metrics(y, p)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["lift_top_decile"] == pytest.approx(1 / 0.2)  # top 10 rows all churn, base 20 %
    assert m["recall_top_decile"] == pytest.approx(0.5)
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
    pre = Preprocessor().fit(train)
    assert pre.feature_names_ == ["x", "plan"]
    scored = pre.transform(
        pd.DataFrame({"plan": ["enterprise", "pro"], "x": [3, None], "extra": [1, 1]})
    )
    assert list(scored.columns) == ["x", "plan"]
    assert list(scored["plan"].cat.categories) == ["basic", "pro"]
    assert pd.isna(scored["plan"].iloc[0]) and scored["plan"].iloc[1] == "pro"
    assert scored["x"].dtype == "float64" and np.isnan(scored["x"].iloc[1])


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


def test_short_histories_can_calibrate_on_validation_and_purge_only_before_the_test():
    dates = list(pd.date_range("2011-01-30", periods=16, freq="14D"))
    split = split_dates(
        dates, horizon_days=90, validation=2, calibration=0, test=1, min_train=3, purge="test"
    )
    assert split.test == (dates[-1],)
    assert split.calibration == split.validation
    # every date before the test whose 90-day label reaches into it is dropped
    assert max(split.validation) + pd.Timedelta(days=90) <= dates[-1]
    with pytest.raises(ValueError, match="too few"):
        split_dates(
            dates, horizon_days=90, validation=2, calibration=0, test=1, min_train=3, purge="all"
        )
