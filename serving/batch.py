"""The weekly job: score every eligible customer as of the run date with the champion model.

Writes one partition per run date, OUT/as_of=YYYY-MM-DD/, replaced atomically:
- scores.parquet: customer_id, churn_probability, risk_band, drivers (top features raising the
  risk: feature, value, contribution), model_version, previous_probability, probability_delta,
  drivers_moved (features whose contribution changed most since the previous run);
- features.parquet: the features behind the scores (what the service looks up);
- segments.parquet: retention metrics over the period since the previous run and the risk view
  per segment;
- run.json: run date, model name/version/run id, counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import Tables
from features.io import atomic_dir
from features.prepared import as_of_timestamp
from features.retention_metrics import retention_metrics, risk_view
from features.signals import build_features
from training.model import ChurnModel, calibrate

PARTITION_PREFIX = "as_of="
Log = Callable[[str], None]


@dataclass
class ScoringRun:
    as_of: pd.Timestamp
    partition: Path
    scores: pd.DataFrame
    segments: pd.DataFrame
    previous_as_of: pd.Timestamp | None


def partition_path(out_dir: str | Path, as_of: pd.Timestamp) -> Path:
    return Path(out_dir) / f"{PARTITION_PREFIX}{as_of.date().isoformat()}"


def list_partitions(out_dir: str | Path) -> list[tuple[pd.Timestamp, Path]]:
    """Complete partitions (those with run.json), oldest first; temporary folders are skipped."""
    root = Path(out_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if (
            path.is_dir()
            and path.name.startswith(PARTITION_PREFIX)
            and (path / "run.json").is_file()
        ):
            found.append((pd.Timestamp(path.name[len(PARTITION_PREFIX) :]), path))
    return sorted(found)


def previous_partition(
    out_dir: str | Path, as_of: pd.Timestamp
) -> tuple[pd.Timestamp, Path] | None:
    earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
    return earlier[-1] if earlier else None


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def top_drivers(
    contrib: np.ndarray, names: list[str], values: pd.DataFrame, top: int
) -> list[list[dict]]:
    """Per row, the `top` features with the largest positive contribution to the risk."""
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
    raw = values.to_numpy(dtype=object)
    out = []
    for i, row in enumerate(order):
        out.append(
            [
                {
                    "feature": names[j],
                    "value": _text(raw[i, j]),
                    "contribution": float(contrib[i, j]),
                }
                for j in row
                if contrib[i, j] > 0
            ]
        )
    return out


def moved_drivers(delta: np.ndarray, names: list[str], top: int) -> list[list[dict]]:
    """Per row, the features whose contribution changed most since the previous run."""
    order = np.argsort(-np.abs(delta), axis=1, kind="stable")[:, :top]
    return [
        [{"feature": names[j], "change": float(delta[i, j])} for j in row if delta[i, j] != 0]
        for i, row in enumerate(order)
    ]


def score_features(
    model: ChurnModel,
    features: pd.DataFrame,
    model_version: str,
    previous_scores: pd.DataFrame | None = None,
    previous_features: pd.DataFrame | None = None,
    top: int = 3,
    chunk_rows: int = 100_000,
    log: Log | None = None,
) -> pd.DataFrame:
    """Scores, bands and drivers for feature rows, in chunks (memory stays bounded), with the
    change since a previous run: probability delta, and the drivers that moved most (both runs'
    features explained by the current model, so the movement is the customer's, not the model's)."""
    names = model.feature_names
    prev_feat = (
        previous_features.set_index("customer_id") if previous_features is not None else None
    )
    parts = []
    for start in range(0, len(features), chunk_rows):
        chunk = features.iloc[start : start + chunk_rows]
        contrib = model.contributions(chunk)
        logit = contrib.sum(axis=1).to_numpy()
        raw = 1.0 / (1.0 + np.exp(-logit))
        probability = calibrate(model.calibrator, raw)
        values = chunk[names]
        contributions = contrib[names].to_numpy()
        part = pd.DataFrame(
            {
                "customer_id": chunk["customer_id"].to_numpy(),
                "churn_probability": probability,
                "risk_band": model.risk_band(probability),
                "drivers": top_drivers(contributions, names, values, top),
                "model_version": str(model_version),
            }
        )
        moved: list[list[dict]] = [[] for _ in range(len(chunk))]
        if prev_feat is not None:
            ids = chunk["customer_id"].to_numpy()
            known = np.isin(ids, prev_feat.index.to_numpy())
            if known.any():
                before = prev_feat.loc[ids[known]].reset_index()
                missing = [c for c in names if c not in before]
                if not missing:
                    prev_contrib = model.contributions(before)[names].to_numpy()
                    for k, row in zip(
                        np.flatnonzero(known),
                        moved_drivers(contributions[known] - prev_contrib, names, top),
                        strict=True,
                    ):
                        moved[k] = row
        part["drivers_moved"] = moved
        parts.append(part)
        if log:
            log(f"  scored {min(start + chunk_rows, len(features)):,}/{len(features):,} customers")
    scores = pd.concat(parts, ignore_index=True) if parts else _empty_scores()
    if previous_scores is not None and len(previous_scores):
        prev = previous_scores.set_index("customer_id")["churn_probability"]
        scores["previous_probability"] = prev.reindex(scores["customer_id"]).to_numpy()
    else:
        scores["previous_probability"] = np.nan
    scores["probability_delta"] = scores["churn_probability"] - scores["previous_probability"]
    return scores[
        ["customer_id", "churn_probability", "risk_band", "drivers", "model_version", "previous_probability",
         "probability_delta", "drivers_moved"]
    ]  # fmt: skip


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": pd.Series([], dtype="str"), "churn_probability": pd.Series([], dtype=float),
         "risk_band": pd.Series([], dtype="str"), "drivers": [], "model_version": pd.Series([], dtype="str"),
         "drivers_moved": []}
    )  # fmt: skip


def segment_report(
    tables: Tables,
    scores: pd.DataFrame,
    features: pd.DataFrame,
    model: ChurnModel,
    period_start: pd.Timestamp,
    as_of: pd.Timestamp,
    by: list[str],
) -> pd.DataFrame:
    """Retention metrics over (period_start, as_of] and the risk view, per segment, one table."""
    churn = model.features_config().churn
    revenue = (
        features.set_index("customer_id")["revenue_30d"] if "revenue_30d" in features else None
    )
    scored = scores.assign(
        monthly_revenue=revenue.reindex(scores["customer_id"]).fillna(0.0).to_numpy()
        if revenue is not None
        else 0.0
    )
    segments = [*by, "risk_band"]
    # The run date T is excluded (features use data strictly before T): the period ends just
    # before it, so "MRR at the end" is that of the month before a run on the 1st.
    just_before = pd.Timedelta(nanoseconds=1)
    metrics = retention_metrics(
        tables,
        period_start - just_before,
        as_of - just_before,
        by=segments,
        churn_mode=churn.mode,
        lookback_days=churn.lookback_days,
        activity_events=churn.qualifying_events,
        scores=scored,
    )
    risk = risk_view(scored, tables, segments)
    return metrics.merge(risk, on=["dimension", "segment"], how="outer", sort=False)


def run_scoring(
    tables: Tables,
    as_of: object,
    model: ChurnModel,
    model_version: str,
    out_dir: str | Path,
    *,
    model_info: dict | None = None,
    segments_by: list[str] | None = None,
    top: int = 3,
    chunk_rows: int = 100_000,
    log: Log = print,
) -> ScoringRun:
    """Build features as of the run date with the model's own configuration, score, compare with
    the previous partition, and write this run's partition atomically."""
    t = as_of_timestamp(as_of)
    config = model.features_config()
    log(f"features as of {t.date()} ...")
    features = build_features(tables, t, config)
    if features.empty:
        raise ValueError(
            f"no customers are eligible on {t.date()}: check the run date against the data"
        )
    previous = previous_partition(out_dir, t)
    prev_scores = prev_features = None
    if previous is not None:
        log(f"previous run: {previous[0].date()}")
        prev_scores = pd.read_parquet(
            previous[1] / "scores.parquet", columns=["customer_id", "churn_probability"]
        )
        prev_features = pd.read_parquet(previous[1] / "features.parquet")
    log(f"scoring {len(features):,} customers with model version {model_version}")
    scores = score_features(
        model, features, model_version, prev_scores, prev_features, top, chunk_rows, log
    )
    by = segments_by if segments_by is not None else list(model.preprocessor.categorical)
    period_start = (
        previous[0] if previous is not None else t - pd.Timedelta(days=config.churn.horizon_days)
    )
    segments = segment_report(tables, scores, features, model, period_start, t, by)
    target = partition_path(out_dir, t)
    with atomic_dir(target) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        features.to_parquet(tmp / "features.parquet", index=False)
        segments.to_parquet(tmp / "segments.parquet", index=False)
        info = {
            "as_of": t.date().isoformat(),
            "previous_as_of": previous[0].date().isoformat() if previous else None,
            "model_version": str(model_version),
            **(model_info or {}),
            "customers_scored": len(scores),
            "mean_risk": float(scores["churn_probability"].mean()),
            "expected_churners": float(scores["churn_probability"].sum()),
            "bands": scores["risk_band"].value_counts().to_dict(),
        }
        (tmp / "run.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    log(f"wrote {target}")
    return ScoringRun(t, target, scores, segments, previous[0] if previous else None)


def log_scoring_run(
    run: ScoringRun, model_name: str, model_version: str, experiment: str = "churn-scoring"
) -> str:
    """Record a scoring run in MLflow: run date, model, headline figures and the segment report."""
    import tempfile

    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"score {run.as_of.date()}") as active:
        mlflow.log_params({"as_of": run.as_of.date().isoformat(), "model_name": model_name,
                           "model_version": model_version, "partition": str(run.partition)})  # fmt: skip
        scores = run.scores
        mlflow.log_metrics(
            {
                "customers_scored": float(len(scores)),
                "mean_risk": float(scores["churn_probability"].mean()),
                "expected_churners": float(scores["churn_probability"].sum()),
                "share_high": float((scores["risk_band"] == "high").mean()),
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "segments.csv"
            run.segments.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
        return active.info.run_id
