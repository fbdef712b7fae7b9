"""A baseline as a deployable model: the logistic regression and the recency rule behind the
ChurnModel interface, with exact contributions, so the weekly job scores them unchanged."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from serving.batch import score_features
from training.config import TrainConfig
from training.evaluation import binary_metrics, fit_logistic_baseline, logistic_scores
from training.model import ChurnModel, Preprocessor, calibrate
from training.simple_model import LinearChurnModel, fit_simple_model


def frame(n: int, seed: int, as_of: str) -> pd.DataFrame:
    """Customers whose churn grows with days since the last event, plan 'basic' and fewer logins."""
    rng = np.random.default_rng(seed)
    days = rng.exponential(20, n)
    days[rng.random(n) < 0.05] = np.nan  # never active
    logins = rng.poisson(5, n).astype(float)
    plan = rng.choice(["basic", "pro", "team"], n)
    logit = -3 + 0.04 * np.nan_to_num(days, nan=90) - 0.2 * logins + (plan == "basic") * 0.8
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "as_of": pd.Timestamp(as_of),
            "customer_id": [f"C{seed}-{i}" for i in range(n)],
            "churned": churned,
            "days_since_last_event": days,
            "logins_30d": logins,
            "plan": pd.Categorical(plan),
        }
    )


@pytest.fixture(scope="module")
def parts():
    return frame(3000, 1, "2024-01-01"), frame(2000, 2, "2024-03-01"), frame(2000, 3, "2024-05-01")


CONFIG = TrainConfig(model_name="test")
FEATURES = FeatureConfig()


def fitted(kind: str, parts) -> LinearChurnModel:
    train, calibration, _ = parts
    pre = Preprocessor().fit(train)
    return fit_simple_model(kind, train, calibration, pre, FEATURES, CONFIG, "2024-01-01")


@pytest.mark.parametrize("kind", ["logistic_regression", "recency_rule"])
def test_contributions_add_up_to_the_log_odds_and_the_weekly_job_scores_the_same(kind, parts):
    model = fitted(kind, parts)
    test = parts[2]
    assert isinstance(model, ChurnModel) and model.kind == kind
    contrib = model.contributions(test)
    assert list(contrib.columns) == [*model.feature_names, "bias"]
    raw = model.raw_probability(test)
    np.testing.assert_allclose(1 / (1 + np.exp(-contrib.sum(axis=1))), raw, rtol=1e-9)
    np.testing.assert_allclose(model.predict_proba(test), calibrate(model.calibrator, raw))
    scored = score_features(model, test, "7", top=2)
    np.testing.assert_allclose(
        scored["churn_probability"].to_numpy(), model.predict_proba(test), rtol=1e-6
    )
    assert set(scored["risk_band"]) <= {"high", "medium", "low"}
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(test), model.predict_proba(test))


def test_the_logistic_model_ranks_exactly_like_the_logistic_baseline(parts):
    train, _, test = parts
    model = fitted("logistic_regression", parts)
    baseline = fit_logistic_baseline(train, train["churned"].to_numpy(), model.preprocessor, 42)
    expected = logistic_scores(baseline, test, model.preprocessor)
    np.testing.assert_allclose(model.raw_probability(test), expected, rtol=1e-6)
    y = test["churned"].to_numpy()
    assert binary_metrics(y, model.predict_proba(test))["roc_auc"] == pytest.approx(
        binary_metrics(y, expected)["roc_auc"]
    )


def test_the_recency_model_uses_only_recency_and_longer_silence_never_lowers_risk(parts):
    model = fitted("recency_rule", parts)
    assert model.feature_names == ["days_since_last_event"]
    rows = pd.DataFrame({"customer_id": ["a", "b", "c"], "days_since_last_event": [1.0, 30, 90]})
    risk = model.predict_proba(rows)
    assert risk[0] < risk[1] < risk[2]
    drivers = model.drivers(rows.tail(1), top=1)[0]
    assert drivers[0]["feature"] == "days_since_last_event"


def test_an_unknown_kind_is_refused(parts):
    with pytest.raises(ValueError, match="simple model kind must be one of"):
        fitted("random_forest", parts)
