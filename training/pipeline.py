"""Training runs end to end: data -> training set -> model -> holdout -> MLflow -> champion gate."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import Tables
from features.dataset import build_training_set, observation_dates
from features.labels import last_labeled_date
from features.signals import build_features
from training.config import TrainConfig
from training.fit import Evaluation, fit_churn_model
from training.gate import (
    GateDecision,
    GateRules,
    data_problems,
    judge,
    measure_champion,
    refuse_label_like_attributes,
)
from training.model import ChurnModel
from training.plots import calibration_table, gains_table, model_report_plots
from training.simple_model import SimpleResult, register_simple_model
from training.splits import DateSplit, split_dates
from training.tracking import (
    configure,
    current_champion,
    data_fingerprint,
    input_example,
    log_training_run,
    record_promotion,
    require_model_name,
)

Log = Callable[[str], None]


@dataclass
class TrainingResult:
    run_id: str
    version: str
    promoted: bool
    promotion_reason: str
    split: DateSplit
    model: ChurnModel
    evaluation: Evaluation
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    plots: list[Path] = field(default_factory=list)
    gate: GateDecision | None = None
    model_name: str = ""
    simple: SimpleResult | None = None  # the baseline registered as a model, when one won

    def metrics_table(self) -> pd.DataFrame:
        """Candidate, champion and baselines side by side on the same test rows."""
        columns = {"candidate": self.evaluation.metrics}
        if self.champion_metrics is not None:
            columns[f"champion (v{self.champion_version})"] = self.champion_metrics
        columns.update(self.evaluation.baselines)
        return pd.DataFrame(columns).loc[
            [
                "roc_auc",
                "pr_auc",
                "log_loss",
                "brier",
                "lift_top_decile",
                "recall_top_decile",
                "ece",
                "rows",
            ]
        ]


def default_dates(
    tables: Tables, feature_config: FeatureConfig, config: TrainConfig
) -> list[pd.Timestamp]:
    """Observation dates from config, or from the first activity + warmup to the last date whose
    label horizon lies inside the data, every `every_days`, aligned to end on the last one."""
    last_full = last_labeled_date(tables, feature_config.churn)  # observed_until, else data end
    end = pd.Timestamp(config.date_to) if config.date_to else last_full
    if config.date_from:
        return observation_dates(config.date_from, end, config.every_days)
    # Warm up from the first activity: signups may predate the recorded history by years.
    start = tables.activity["at"].min().normalize() + pd.Timedelta(days=config.warmup_days)
    if start > end:
        raise ValueError(
            f"the data spans too little time: first usable date {start.date()} is after {end.date()}"
        )
    steps = (end - start).days // config.every_days
    return [end - pd.Timedelta(days=config.every_days * k) for k in range(steps, -1, -1)]


def champion_on_test(champion: ChurnModel, tables: Tables, test: pd.DataFrame) -> np.ndarray:
    """The champion's probabilities for the candidate's test rows, with features rebuilt by the
    champion's own configuration (the one feature function, its columns)."""
    config = champion.features_config()
    parts = []
    for as_of, rows in test.groupby("as_of", sort=True):
        features = build_features(tables, as_of, config)
        aligned = rows[["as_of", "customer_id"]].merge(features, on="customer_id", how="left")
        parts.append(pd.Series(champion.predict_proba(aligned), index=rows.index))
    return pd.concat(parts).reindex(test.index).to_numpy()


def train_from_tables(
    tables: Tables,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log = print,
    tracking_uri: str | None = None,
) -> TrainingResult:
    """Build the training set, fit, evaluate, log to MLflow, register and apply the gate."""
    refuse_label_like_attributes(tables, feature_config, config.allow_label_like)
    dates = default_dates(tables, feature_config, config)
    split = split_dates(
        dates,
        feature_config.churn.horizon_days,
        config.validation_dates,
        config.calibration_dates,
        config.test_dates,
        config.min_train_dates,
        config.purge,
    )
    log(f"observation dates: {split.describe()}")
    used = sorted({*split.train, *split.validation, *split.calibration, *split.test})

    def progress(i: int, total: int, as_of: pd.Timestamp, rows: int) -> None:
        log(f"  features {i}/{total} as of {as_of.date()}: {rows:,} customers")

    dataset, resolved = build_training_set(tables, used, feature_config, progress)
    model, evaluation = fit_churn_model(dataset, split, resolved, config, log)
    log(
        f"best iteration {evaluation.best_iteration}; test ROC AUC {evaluation.metrics['roc_auc']:.4f}"
    )

    name = require_model_name(config.model_name)
    client = configure(tracking_uri)
    champion = current_champion(client, name)
    champion_metrics, champion_problem = measure_champion(
        champion, name, tables, resolved, evaluation.test, champion_on_test, log
    )
    gate = judge(
        evaluation.metrics,
        GateRules.from_config(config),
        baselines=evaluation.baselines,
        champion=champion_metrics,
        champion_label=f"champion v{champion[0]}" if champion else "champion",
        champion_problem=champion_problem,
        data_problems=data_problems(tables),
    )
    promoted, reason = gate.promoted, gate.reason
    if champion_metrics is not None and pd.Timestamp(champion[1].trained_until) >= split.test[0]:
        reason += f" (note: the champion was trained on data up to {champion[1].trained_until}, into the test dates)"

    test_rows = dataset[dataset["as_of"].isin(split.test)]
    sample = test_rows.sample(n=min(len(test_rows), 2000), random_state=config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        y = evaluation.test["churned"].to_numpy()
        scores = {
            "model": evaluation.test["churn_probability"].to_numpy(),
            "logistic regression": evaluation.test["logistic_regression"].to_numpy(),
            "recency rule": evaluation.test["recency_rule"].to_numpy(),
        }
        plots = model_report_plots(
            Path(tmp),
            y,
            scores,
            scores["model"],
            evaluation.feature_importance,
            model.contributions(sample),
            model.preprocessor.transform(sample),
        )
        params = {
            **{f"train.{k}": v for k, v in config.to_dict().items() if k != "lgbm_params"},
            **{f"lgbm.{k}": v for k, v in config.lgbm_params.items()},
            "features.config": resolved.to_dict(),
            "best_iteration": evaluation.best_iteration,
            "n_features": len(model.feature_names),
        }
        tags = {
            "data_fingerprint": data_fingerprint(tables),
            "observation_dates": ",".join(str(d.date()) for d in used),
            "split": split.describe(),
            "churn_mode": resolved.churn.mode,
            "horizon_days": str(resolved.churn.horizon_days),
            "promotion_decision": "promoted" if promoted else "not promoted",
            "promotion_reason": reason,
            "champion_version": champion[0] if champion else "",
            **gate.tags(),
        }
        logged = log_training_run(
            model=model,
            name=name,
            experiment=config.experiment,
            params=params,
            tags=tags,
            metrics=evaluation.metrics,
            baselines=evaluation.baselines,
            champion_metrics=champion_metrics,
            tables_to_log={
                "segment_metrics.csv": evaluation.segments,
                "gains.csv": gains_table(y, scores["model"]),
                "calibration.csv": calibration_table(y, scores["model"]),
                "feature_importance.csv": evaluation.feature_importance,
            },
            plots=plots,
            example=input_example(model, test_rows),
            client=client,
            extra_metrics=gate.metrics(),
        )
        kept_plots = keep_plots(plots, logged.run_id)
    record_promotion(
        client, name, logged.version, promoted, reason, logged.run_id, log, gate.tags()
    )
    simple = None
    if gate.lost_to is not None:  # a baseline won: register it as a model analysts can deploy
        simple = register_simple_model(
            gate.lost_to.against, dataset=dataset, split=split, preprocessor=model.preprocessor,
            feature_config=resolved, config=config, name=name, baselines=evaluation.baselines,
            champion=champion, champion_metrics=champion_metrics, champion_problem=champion_problem,
            lost_run_id=logged.run_id, lost_version=logged.version, client=client, log=log,
        )  # fmt: skip
    return TrainingResult(
        run_id=logged.run_id,
        version=logged.version,
        promoted=promoted,
        promotion_reason=reason,
        split=split,
        model=model,
        evaluation=evaluation,
        champion_version=champion[0] if champion else None,
        champion_metrics=champion_metrics,
        plots=kept_plots,
        gate=gate,
        model_name=name,
        simple=simple,
    )


def keep_plots(plots: list[Path], run_id: str) -> list[Path]:
    """Copy the run's plots to a stable local folder (for notebooks to show inline)."""
    target = Path(tempfile.gettempdir()) / "churn-plots" / run_id
    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for plot in plots:
        dest = target / plot.name
        dest.write_bytes(plot.read_bytes())
        kept.append(dest)
    return kept
