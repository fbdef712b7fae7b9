"""Fitting the churn model on a training set split by time, and judging it on the holdout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.config import FeatureConfig
from training.config import TrainConfig
from training.evaluation import (
    binary_metrics,
    fit_logistic_baseline,
    logistic_scores,
    metrics_by_segment,
    recency_rule,
)
from training.model import ChurnModel, Preprocessor, band_thresholds, calibrate, fit_calibrator
from training.splits import DateSplit

Log = Callable[[str], None]


@dataclass
class Evaluation:
    """A fitted model's holdout: predictions, metrics, baselines and per-segment metrics."""

    test: pd.DataFrame  # as_of, customer_id, churned, segments, probability columns
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    segments: pd.DataFrame
    calibration_raw: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    best_iteration: int = 0
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)


def lgbm_params(config: TrainConfig, preprocessor: Preprocessor) -> dict:
    """LightGBM parameters with reproducibility settings and monotone constraints by name."""
    constraints = [int(config.monotone.get(name, 0)) for name in preprocessor.feature_names_]
    params = {
        **config.lgbm_params,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": config.num_threads,
    }
    if any(constraints):
        params["monotone_constraints"] = constraints
    return params


def fit_booster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: Preprocessor,
    config: TrainConfig,
    log: Log | None = None,
) -> lgb.Booster:
    """Gradient boosting on the train rows, early-stopped on the (later) validation rows."""
    for name, part in (("train", train), ("validation", validation)):
        if part["churned"].nunique() < 2:
            raise ValueError(
                f"the {name} slice has only one label class ({int(part['churned'].iloc[0]) if len(part) else 'no rows'}); "
                "use more observation dates or a longer horizon"
            )
    dtrain = lgb.Dataset(
        preprocessor.transform(train), train["churned"].to_numpy(), free_raw_data=True
    )
    dvalid = lgb.Dataset(
        preprocessor.transform(validation), validation["churned"].to_numpy(), reference=dtrain
    )
    callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
    if log is not None:
        callbacks.append(_log_every(50, log))
    return lgb.train(
        lgbm_params(config, preprocessor),
        dtrain,
        num_boost_round=config.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["validation"],
        callbacks=callbacks,
    )


def _log_every(period: int, log: Log):
    def callback(env: lgb.callback.CallbackEnv) -> None:
        if env.iteration % period == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0]
            log(f"  tree {env.iteration:4d}: validation {metric} {value:.4f}")

    return callback


def fit_churn_model(
    dataset: pd.DataFrame,
    split: DateSplit,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log | None = None,
) -> tuple[ChurnModel, Evaluation]:
    """Train on the train dates, early-stop on validation, calibrate on calibration, and
    evaluate on the test dates against the baselines."""
    parts = {
        role: dataset[dataset["as_of"].isin(getattr(split, role))]
        for role in ("train", "validation", "calibration", "test")
    }
    for role, part in parts.items():
        if part.empty:
            raise ValueError(f"no eligible customers on the {role} dates {getattr(split, role)}")
    preprocessor = Preprocessor().fit(parts["train"])
    if log:
        log(
            f"training on {len(parts['train']):,} rows x {len(preprocessor.feature_names_)} features"
        )
    booster = fit_booster(parts["train"], parts["validation"], preprocessor, config, log)
    booster_text = booster.model_to_string(num_iteration=booster.best_iteration)
    model = ChurnModel(
        feature_config=feature_config.to_dict(),
        preprocessor=preprocessor,
        booster_text=booster_text,
        calibrator=None,
        band_thresholds={},
        horizon_days=feature_config.churn.horizon_days,
        trained_until=str(max(split.train).date()),
    )
    cal_raw = model.raw_probability(parts["calibration"])
    model.calibrator = fit_calibrator(
        config.calibration, cal_raw, parts["calibration"]["churned"].to_numpy()
    )
    model.band_thresholds = band_thresholds(calibrate(model.calibrator, cal_raw), config.risk_bands)

    test = parts["test"]
    y = test["churned"].to_numpy()
    probability = model.predict_proba(test)
    metrics = binary_metrics(y, probability)
    logistic = fit_logistic_baseline(
        parts["train"], parts["train"]["churned"].to_numpy(), preprocessor, config.seed
    )
    logistic_p = logistic_scores(logistic, test, preprocessor)
    recency = recency_rule(test)
    baselines = {
        "logistic_regression": binary_metrics(y, logistic_p),
        "recency_rule": binary_metrics(y, recency),
    }
    # The recency rule's score is days, not a probability: only its ranking metrics mean something.
    for key in ("log_loss", "brier", "ece"):
        baselines["recency_rule"][key] = float("nan")
    segments = list(preprocessor.categorical)
    keep = ["as_of", "customer_id", "churned", *segments]
    test_out = test[keep].assign(
        churn_probability=probability, logistic_regression=logistic_p, recency_rule=recency
    )
    importance = pd.DataFrame(
        {
            "feature": preprocessor.feature_names_,
            "gain": booster.feature_importance("gain", iteration=booster.best_iteration),
            "splits": booster.feature_importance("split", iteration=booster.best_iteration),
        }
    ).sort_values("gain", ascending=False, ignore_index=True)
    model.metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    evaluation = Evaluation(
        test=test_out,
        metrics=metrics,
        baselines=baselines,
        segments=metrics_by_segment(test, y, probability, segments, config.min_segment_rows),
        calibration_raw=cal_raw,
        best_iteration=int(booster.best_iteration or booster.current_iteration()),
        feature_importance=importance,
    )
    return model, evaluation
