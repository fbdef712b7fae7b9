"""When a baseline beats LightGBM: the baseline as a deployable model, behind the same interface.

A LinearChurnModel is a ChurnModel whose score is a logistic regression instead of a booster:
the logistic-regression baseline itself, or the recency rule made a model (a logistic regression
on days since the last event, with a flag for never-active customers). It has the same
predict_proba / risk_band / contributions / drivers / score, is logged and registered the same
way, and the weekly job and the service run it unchanged.

Contributions are exact for a linear model: coefficient x (transformed value - its training
mean), summed over the columns a feature becomes (one-hot levels, the missing flag), with the
intercept plus the mean terms as 'bias'; the row's contributions add up to its log-odds, as
LightGBM's pred_contrib do (the weekly job recomputes the probability from that sum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from features.config import FeatureConfig
from training.config import TrainConfig
from training.evaluation import (
    LAST_EVENT,
    binary_metrics,
    fit_logistic,
    recency_feature,
    sklearn_frame,
)
from training.gate import GateDecision, GateRules, judge, paired_auc_interval
from training.model import ChurnModel, Preprocessor, band_thresholds, calibrate, fit_calibrator
from training.reference import next_run_reason_sides, reference_for
from training.seasonal_level import SeasonalLevel
from training.splits import BacktestPlan

SIMPLE_KINDS = ("logistic_regression", "recency_rule")


@dataclass
class LinearChurnModel(ChurnModel):
    """A ChurnModel scored by a fitted scikit-learn pipeline ending in LogisticRegression, whose
    ColumnTransformer has one transformer per feature (named after it); see module docstring."""

    kind: str = "logistic_regression"
    linear: Pipeline | None = None
    column_means_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def explainer(self) -> None:  # type: ignore[override]
        """No TreeSHAP tables: a linear model's contributions are computed directly."""
        return None

    def _sklearn_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return sklearn_frame(frame, self.preprocessor)

    def _design(self, frame: pd.DataFrame) -> np.ndarray:
        if self.linear is None:
            raise RuntimeError("LinearChurnModel is not fitted")
        design = self.linear[:-1].transform(self._sklearn_frame(frame))
        return design.toarray() if hasattr(design, "toarray") else np.asarray(design, dtype=float)

    def raw_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """The logistic regression's probability, before calibration."""
        if self.linear is None:
            raise RuntimeError("LinearChurnModel is not fitted")
        return self.linear.predict_proba(self._sklearn_frame(frame))[:, 1]

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row contributions to the log-odds per feature, and 'bias' (module docstring)."""
        design = self._design(frame)
        regression: LogisticRegression = self.linear[-1]
        weights = regression.coef_[0]
        centred = (design - self.column_means_) * weights
        transformer: ColumnTransformer = self.linear[0]
        out = {}
        for name in self.feature_names:
            part = transformer.output_indices_[name]
            out[name] = centred[:, part].sum(axis=1)
        out["bias"] = np.full(
            len(frame), float(regression.intercept_[0] + self.column_means_ @ weights)
        )
        return pd.DataFrame(out, index=frame.index)


def fit_linear(
    train: pd.DataFrame, preprocessor: Preprocessor, seed: int, recency: bool = False
) -> tuple[Pipeline, np.ndarray]:
    """The logistic regression (training.evaluation.fit_logistic; the recency model with a
    missing-value flag), and the training means of its design columns (the reference point of
    the contributions)."""
    y = train["churned"].to_numpy()
    model = fit_logistic(train, y, preprocessor, seed, missing_flags=recency)
    design = model[:-1].transform(sklearn_frame(train, preprocessor))
    return model, np.asarray(design, dtype=float).mean(axis=0)


def recency_preprocessor(feature: str = LAST_EVENT) -> Preprocessor:
    """The recency model's only input: days since the last event (or last payment, where the
    data have no activity: training.evaluation.recency_feature)."""
    return Preprocessor(numeric=[feature], categorical={}, feature_names_=[feature])


def fit_simple_model(
    kind: str,
    train: pd.DataFrame,
    calibration: pd.DataFrame,
    preprocessor: Preprocessor,
    feature_config: FeatureConfig,
    config: TrainConfig,
    trained_until: str,
) -> LinearChurnModel:
    """The baseline `kind` as a calibrated, banded LinearChurnModel: fitted on the train rows,
    calibrated (sigmoid: strictly monotone, so the ranking and its AUC are kept) and banded on
    the calibration rows, like the LightGBM model."""
    if kind not in SIMPLE_KINDS:
        raise ValueError(f"simple model kind must be one of {SIMPLE_KINDS}, got {kind!r}")
    recency = kind == "recency_rule"
    feature = recency_feature(train)
    pre = recency_preprocessor(feature) if recency else preprocessor
    if recency and feature not in train:
        raise ValueError(f"the recency model needs the feature '{feature}'")
    linear, means = fit_linear(train, pre, config.seed, recency=recency)
    model = LinearChurnModel(
        feature_config=feature_config.to_dict(),
        preprocessor=pre,
        booster_text="",
        calibrator=None,
        band_thresholds={},
        horizon_days=feature_config.churn.horizon_days,
        trained_until=trained_until,
        kind=kind,
        linear=linear,
        column_means_=means,
    )
    raw = model.raw_probability(calibration)
    churned = calibration["churned"].to_numpy()
    model.calibrator = fit_calibrator("sigmoid", raw, churned)
    calibrated = calibrate(model.calibrator, raw)
    if "as_of" in calibration:  # the churn level of the time of year, as the LightGBM model's
        model.seasonal_level = SeasonalLevel.fit(calibration["as_of"], churned, calibrated)
    model.band_thresholds = band_thresholds(
        calibrated, config.risk_bands, config.risk_band_ceilings, config.risk_band_caps
    )
    return model


# --------------------------------------------------------------------- the fallback run


@dataclass
class SimpleResult:
    """The simple model registered because a baseline beat LightGBM, and its own gate."""

    kind: str
    run_id: str
    version: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    gate: GateDecision


def register_simple_model(
    kind: str,
    *,
    dataset: pd.DataFrame,
    plan: BacktestPlan,
    preprocessor: Preprocessor,
    feature_config: FeatureConfig,
    config: TrainConfig,
    name: str,
    baselines: dict[str, dict[str, float]],
    champion: tuple[str, ChurnModel] | None,
    champion_metrics: dict[str, float] | None,
    champion_problem: str | None,
    lost_run_id: str,
    lost_version: str,
    client: MlflowClient,
    log: Callable[[str], None] = print,
    champion_rows: pd.DataFrame | None = None,
    champion_not_comparable: str | None = None,
    champion_paired: tuple[pd.DataFrame, np.ndarray] | None = None,
    newer_by_days: int | None = None,
    next_run: tuple[pd.Timestamp, pd.DataFrame] | None = None,
) -> SimpleResult:
    """Register the baseline that won as a LinearChurnModel, gated (against the other baselines
    and the champion) on its backtest figures: the baseline was fitted on the dates before the
    holdout and measured on the same holdout rows as LightGBM. Like LightGBM, the registered
    model is then refit on every complete observation date (calibrated with a sigmoid, which
    keeps its ranking), logged as its own MLflow run and registered under the same name.
    champion_rows: the holdout rows the champion was measured on when not all of them
    (training.gate.champion_holdout), with the baseline's scores in the column `kind`;
    champion_not_comparable: why the champion is not compared (the gate's argument).
    champion_paired: the rows the champion was measured on (with the baseline's scores in the
    column `kind`) and the champion's probabilities for them, for the paired interval of the
    two; newer_by_days: how much later the data ends than the champion's (both as for
    LightGBM: training.gate.judge); next_run: the day after the data's end and its customers'
    features, which the bands, the typical risk and the reasons' medians are set on, as for
    LightGBM (training.fit.set_bands_for_next_run); without it, on the training rows."""
    from training.fit import set_bands_for_next_run
    from training.tracking import input_example, log_training_run, record_promotion

    model = fit_simple_model(
        kind,
        dataset,
        dataset,
        preprocessor,
        feature_config,
        config,
        str(pd.Timestamp(dataset["as_of"].max()).date()),
    )
    metrics = dict(baselines[kind])
    model.metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    if next_run is not None and len(next_run[1]):
        for warning in set_bands_for_next_run(model, next_run, config):
            log(f"warning: {kind} as the model: {warning}")
    model.reference = reference_for(model, dataset, metrics)  # for monitoring (issue 16)
    next_run_reason_sides(model, next_run)
    test = dataset[dataset["as_of"] == dataset["as_of"].max()]
    others = {k: v for k, v in baselines.items() if k != kind}
    versus = None
    if champion_rows is not None and kind in champion_rows:
        versus = binary_metrics(
            champion_rows["churned"].to_numpy(), champion_rows[kind].to_numpy(dtype="float64")
        )
    interval = None
    if champion_paired is not None and kind in champion_paired[0]:
        rows, theirs = champion_paired
        interval = paired_auc_interval(rows, rows[kind].to_numpy(), theirs, seed=config.seed)
    gate = simple_model_gate(
        kind,
        baselines,
        GateRules.from_config(config),
        champion_metrics=champion_metrics,
        champion_label=f"champion v{champion[0]}" if champion else "champion",
        champion_problem=champion_problem,
        candidate_vs_champion=versus,
        champion_not_comparable=champion_not_comparable,
        champion_interval=interval,
        newer_by_days=newer_by_days,
    )
    reason = f"{kind} as the model (it beat LightGBM v{lost_version}): {gate.reason}"
    tags = {
        "model_kind": kind,
        "fallback_for_run": lost_run_id,
        "fallback_for_version": lost_version,
        "split": plan.describe(),
        "promotion_decision": "promoted" if gate.promoted else "not promoted",
        "promotion_reason": reason,
        **gate.tags(),
    }
    logged = log_training_run(
        model=model,
        name=name,
        experiment=config.experiment,
        params={
            "model_kind": kind,
            "features.config": feature_config.to_dict(),
            "seed": config.seed,
        },
        tags=tags,
        metrics=metrics,
        baselines=others,
        champion_metrics=champion_metrics,
        tables_to_log={},
        plots=[],
        example=input_example(model, test),
        client=client,
        extra_metrics=gate.metrics(),
    )
    version_tags = {"model_kind": kind, **gate.tags()}
    record_promotion(
        client, name, logged.version, gate.promoted, reason, logged.run_id, log, version_tags
    )
    return SimpleResult(kind, logged.run_id, logged.version, gate.promoted, reason, metrics, gate)


def simple_model_gate(
    kind: str,
    baselines: dict[str, dict[str, float]],
    rules: GateRules,
    champion_metrics: dict[str, float] | None = None,
    champion_label: str = "champion",
    champion_problem: str | None = None,
    candidate_vs_champion: dict[str, float] | None = None,
    champion_not_comparable: str | None = None,
    champion_interval: tuple[float, float] | None = None,
    newer_by_days: int | None = None,
) -> GateDecision:
    """The gate for the baseline `kind` that beat LightGBM: its holdout figures against the other
    baselines and the champion, on the same rows (candidate_vs_champion: its figures on the
    rows the champion was measured on, when not the whole holdout; champion_interval and
    newer_by_days decide a tie with the champion, as training.gate.judge says)."""
    return judge(
        baselines[kind],
        rules,
        baselines={k: v for k, v in baselines.items() if k != kind},
        champion=champion_metrics,
        champion_label=champion_label,
        champion_problem=champion_problem,
        candidate_vs_champion=candidate_vs_champion,
        champion_not_comparable=champion_not_comparable,
        champion_interval=champion_interval,
        newer_by_days=newer_by_days,
    )


def with_kind(model: ChurnModel) -> str:
    """'lightgbm' or the simple model's kind: what scores behind a registered version."""
    return model.kind if isinstance(model, LinearChurnModel) else "lightgbm"
