"""Monitoring at the edge: reads the weekly job's partitions and the data's labels, runs the pure
measures of serving.monitoring per partition, and writes SCORES/monitoring.json (what the
service's /monitoring answers from), a plot, and MLflow metrics stepped by run date.

A partition is re-examined only when something can have changed: it is new, it was scored by
another model version than the one recorded, or its labels have matured since the previous
monitoring run (T + horizon <= the last instant churn is observed). So the weekly job can call
this after every run at the cost of the new partitions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import Tables
from features.io import atomic_file
from features.labels import label_mask, observation_end
from serving.batch import (
    FEATURES_FILE,
    RUN_FILE,
    SCORES_FILE,
    list_partitions,
    scored_data_churn,
)
from serving.monitoring import (
    NO_NEWER_LABELS,
    cbpe,
    feature_drift,
    no_newer_labels,
    realized_by_group,
    realized_metrics,
    verdict,
)
from training.model import ChurnModel

MONITORING_FILE = "monitoring.json"
PLOT_FILE = "monitoring.png"
VERDICT_CODE = {"fine": 0, "watch": 1, "retrain": 2}
Log = Callable[[str], None]
ModelFor = Callable[[dict], "tuple[ChurnModel, str] | None"]


@dataclass
class MonitoringResult:
    """What one call computed: every partition's entry (as in monitoring.json), those computed
    in this call, and where the file is."""

    entries: list[dict]
    computed: list[str]  # as_of dates (re)examined in this call
    path: Path

    @property
    def latest(self) -> dict | None:
        return self.entries[-1] if self.entries else None


def read_monitoring(scores_dir: str | Path) -> dict | None:
    """The monitoring file the job wrote into the scores folder, or None when there is none."""
    path = Path(scores_dir) / MONITORING_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def importance_of(model: ChurnModel) -> dict[str, float]:
    """The model's gain importance per feature (LightGBM); empty for models without trees (the
    simple model registered when a baseline wins: only the score's drift is then 'top')."""
    if not model.booster_text:
        return {}
    gains = model.booster.feature_importance("gain")
    return dict(zip(model.feature_names, (float(g) for g in gains), strict=True))


def labels_for(
    tables: Tables, as_of: pd.Timestamp, model: ChurnModel, ids: np.ndarray
) -> np.ndarray:
    """The realized label (features.labels) of each scored customer for [T, T + horizon) under
    the model's churn definition, for a matured partition (its label window ends by the
    monitored data's observation end, examine_partition). The model's own observed_until is
    the training export's, and is not applied: a model trained on a 7-week export cut on
    2018-10-01 read its first partition's churn as 0 % (0 of 1,964 customers, where 147 had
    cancelled) on data to 2018-10-15, and said "retrain"."""
    churn = replace(model.features_config().churn, observed_until=None)
    churned = label_mask(tables, as_of, churn)
    known = tables.cache.get("monitoring_customer_index")
    if known is None:  # built once per loaded tables: 52 partitions share it
        known = pd.Index(tables.customers["customer_id"].astype("str"))
        tables.cache["monitoring_customer_index"] = known
    positions = known.get_indexer(pd.Index(ids).astype("str"))
    if (positions < 0).any():
        example = ids[np.flatnonzero(positions < 0)[0]]
        raise ValueError(
            f"partition as_of={as_of.date()}: table 'scores', column 'customer_id' has "
            f"{int((positions < 0).sum()):,} ids the customers table lacks, e.g. {example!r}: "
            "is it this dataset's scores folder?"
        )
    return churned[positions].astype("int8")


def with_attributes(frame: pd.DataFrame, tables: Tables, columns: list[str]) -> pd.DataFrame:
    """The scored rows with customer attributes that are segments but not model features."""
    if not columns:
        return frame
    absent = [c for c in columns if c not in tables.customers.columns]
    if absent:
        raise ValueError(
            f"segment '{absent[0]}' is neither a feature of the model nor a column of table "
            f"'customers' (it has {list(tables.customers.columns)})"
        )
    attributes = tables.customers.assign(
        customer_id=tables.customers["customer_id"].astype("str")
    ).set_index("customer_id")[columns]
    values = attributes.reindex(frame["customer_id"].astype("str").to_numpy())
    return frame.assign(**{c: values[c].to_numpy() for c in columns})


def scored_by(info: dict) -> dict:
    """What a partition was scored by and on (its run.json): the model's name, version and
    training run, and the data's end. An entry of monitoring.json is reused only for the same:
    a partition scored again by a model of the same version number (a new registry, another
    model name) or on a newer export is examined again."""
    keys = ("model_name", "model_version", "model_run_id", "data_end", "customers_scored")
    return {k: info.get(k) for k in keys}


def examine_partition(
    tables: Tables,
    path: Path,
    model: ChurnModel,
    *,
    matured_until: pd.Timestamp,
    segments: list[str] | None = None,
    reps: int = 200,
) -> dict:
    """One partition's monitoring entry: drift against the model's reference, the CBPE estimate,
    realized performance when T + horizon <= matured_until, and the verdict."""
    info = json.loads((path / RUN_FILE).read_text())
    as_of = pd.Timestamp(info["as_of"])
    scores = pd.read_parquet(
        path / SCORES_FILE, columns=["customer_id", "churn_probability", "risk_band"]
    )
    p = scores["churn_probability"].to_numpy(dtype=float)
    horizon = int(model.features_config().churn.horizon_days)
    window_end = as_of + pd.Timedelta(days=horizon)
    entry: dict = {
        "as_of": str(as_of.date()),
        "model_version": str(info.get("model_version", "")),
        "model_name": info.get("model_name"),
        "scored": scored_by(info),
        "customers": len(scores),
        "label_window_end": str(window_end.date()),
        "matured": bool(window_end <= matured_until),
    }
    expected = cbpe(p, reps=reps)
    entry["expected"] = expected.to_dict()
    reference = model.reference
    drift = None
    if reference is not None:
        names = list(reference.features)
        features = pd.read_parquet(path / FEATURES_FILE, columns=["customer_id", *names])
        if (
            len(features) != len(scores)
            or not (
                features["customer_id"].astype("str").to_numpy()
                == scores["customer_id"].astype("str").to_numpy()
            ).all()
        ):
            features = (
                features.set_index("customer_id").reindex(scores["customer_id"]).reset_index()
            )
        drift = feature_drift(reference, features, p, importance_of(model), as_of)
        entry["drift"] = _records(drift)
        entry["drifted_features"] = drift.loc[drift["drifted"], "feature"].tolist()
        entry["psi_max"] = largest_psi(drift)
        score_row = drift[drift["feature"] == "churn_probability"]
        entry["psi_score"] = float(score_row["psi"].iloc[0]) if len(score_row) else None
        entry["backtest"] = reference.backtest
        dims = [
            "risk_band",
            *(segments if segments is not None else model.preprocessor.categorical),
        ]
        frame = scores.assign(**{d: features[d].to_numpy() for d in dims if d in features})
        frame = with_attributes(frame, tables, [d for d in dims if d not in frame])
    else:
        entry["drift"], entry["drifted_features"] = [], []
        dims, frame = ["risk_band"], scores
    realized = None
    if entry["matured"]:
        frame = frame.assign(
            churned=labels_for(tables, as_of, model, scores["customer_id"].to_numpy())
        )
        realized = realized_metrics(frame["churned"].to_numpy(), p)
        entry["realized"] = realized
        dims = [d for d in dims if d in frame.columns]
        entry["realized_by_group"] = _records(realized_by_group(frame, dims))
    judged = verdict(
        reference.backtest if reference else None,
        drift,
        realized,
        expected,
        no_newer=no_newer_labels(
            [*(reference.dates if reference else []), model.trained_until], horizon, matured_until
        ),
    )
    entry["verdict"] = judged.status
    entry["reasons"] = judged.reasons
    return entry


def run_monitoring(
    tables: Tables,
    scores_dir: str | Path,
    model_for: ModelFor,
    *,
    segments: list[str] | None = None,
    reps: int = 200,
    out: str | Path | None = None,
    observed_until: str | None = None,
    log: Log = print,
) -> MonitoringResult:
    """Examine every partition under scores_dir that is new, re-scored, or whose labels have
    matured since the previous monitoring run, keep the others' entries, and write the file
    (default SCORES/monitoring.json) atomically. `model_for(run.json contents)` gives the model
    that scored a partition and its version (None: the partition is skipped and said so).
    observed_until: the monitored data's [features.churn] observed_until (None: the data's
    end). The model's own is that of the export it was trained on: a model trained on a cut
    of 2018-11-12 had kept every later partition "not matured" on data to 2018-12-03."""
    scores_dir = Path(scores_dir)
    target = Path(out) if out is not None else scores_dir / MONITORING_FILE
    before = {}
    if target.is_file():
        before = {e["as_of"]: e for e in json.loads(target.read_text()).get("partitions", [])}
    partitions = list_partitions(scores_dir)
    if not partitions:
        raise ValueError(
            f"no scored partitions (as_of=YYYY-MM-DD with run.json) under {scores_dir}"
        )
    entries, computed = [], []
    observed: pd.Timestamp | None = None
    for as_of, path in partitions:
        info = json.loads((path / RUN_FILE).read_text())
        found = model_for(info)
        if found is None:
            log(
                f"  {as_of.date()}: model {info.get('model_name')} v{info.get('model_version')} not found: skipped"
            )
            continue
        model, version = found
        if observed is None:
            churn = scored_data_churn(model, observed_until)
            observed, _ = observation_end(tables, churn)
        horizon = pd.Timedelta(days=int(model.features_config().churn.horizon_days))
        matured = as_of + horizon <= observed
        old = before.get(str(as_of.date()))
        if (
            old is not None
            and old.get("model_version") == str(version)
            and old.get("scored") == scored_by(info)
            and old.get("matured") == matured
            and (old.get("drift") or model.reference is None)
        ):
            entries.append(old)
            continue
        entry = examine_partition(
            tables, path, model, matured_until=observed, segments=segments, reps=reps
        )
        entries.append(entry)
        computed.append(entry["as_of"])
        shown = entry["reasons"][:1]
        shown += [r for r in entry["reasons"][1:] if r.startswith(NO_NEWER_LABELS)]
        log(f"  {entry['as_of']}: {entry['verdict']}" + (f" ({'; '.join(shown)})" if shown else ""))
    document = {
        "generated_at": pd.Timestamp.now("UTC").isoformat(),
        "observed_until": str(observed) if observed is not None else None,
        "latest": entries[-1]["as_of"] if entries else None,
        "partitions": entries,
    }
    with atomic_file(target) as tmp:
        tmp.write_text(
            json.dumps(_clean(document), indent=1, default=_json_default, allow_nan=False)
        )
    return MonitoringResult(entries, computed, target)


def summary_table(entries: list[dict]) -> pd.DataFrame:
    """One row per partition: run date, verdict, realized and predicted churn, realized and
    expected AUC, the score's PSI and the drifted features (for the CLI, the plot and MLflow)."""
    rows = []
    for e in entries:
        realized, expected = e.get("realized") or {}, e.get("expected") or {}
        rows.append(
            {
                "as_of": pd.Timestamp(e["as_of"]),
                "verdict": e["verdict"],
                "matured": e["matured"],
                "customers": e["customers"],
                "predicted_rate": expected.get("churn_rate", np.nan),
                "realized_rate": realized.get("realized_rate", np.nan),
                "realized_rate_lo": realized.get("realized_rate_lo", np.nan),
                "realized_rate_hi": realized.get("realized_rate_hi", np.nan),
                "realized_roc_auc": realized.get("roc_auc", np.nan),
                "expected_roc_auc": expected.get("roc_auc", np.nan),
                "expected_roc_auc_lo": expected.get("roc_auc_lo", np.nan),
                "expected_roc_auc_hi": expected.get("roc_auc_hi", np.nan),
                "realized_ece": realized.get("ece", np.nan),
                "psi_score": e.get("psi_score") if e.get("psi_score") is not None else np.nan,
                "psi_max": e.get("psi_max", np.nan),
                "drifted": ", ".join(e.get("drifted_features", [])),
                "reason": (e.get("reasons") or [""])[0],
            }
        )
    return pd.DataFrame(rows)


def plot_monitoring(entries: list[dict], out: str | Path) -> Path:
    """A PNG of monitoring_figure."""
    import matplotlib.pyplot as plt

    fig = monitoring_figure(entries)
    path = Path(out)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def monitoring_figure(entries: list[dict]) -> Any:
    """Realized against predicted churn over time (Wilson intervals), realized against expected
    (CBPE) ROC AUC, and the largest PSI per run with the 0.1 / 0.25 bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary_table(entries)
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ax = axes[0]
    ax.plot(table["as_of"], table["predicted_rate"], "o-", label="predicted (mean probability)")
    done = table[table["matured"]]
    ax.errorbar(
        done["as_of"], done["realized_rate"],
        yerr=[done["realized_rate"] - done["realized_rate_lo"], done["realized_rate_hi"] - done["realized_rate"]],
        fmt="s", capsize=3, label="realized (95 % Wilson interval)",
    )  # fmt: skip
    ax.set_ylabel("churn rate in the horizon")
    ax.legend(loc="best", fontsize=8)
    ax = axes[1]
    ax.fill_between(
        table["as_of"],
        table["expected_roc_auc_lo"],
        table["expected_roc_auc_hi"],
        alpha=0.25,
        label="expected if calibrated (CBPE, 95 %)",
    )
    ax.plot(table["as_of"], table["expected_roc_auc"], "o-", label="expected ROC AUC (CBPE)")
    ax.plot(done["as_of"], done["realized_roc_auc"], "s", label="realized ROC AUC")
    ax.set_ylabel("ROC AUC")
    ax.legend(loc="best", fontsize=8)
    ax = axes[2]
    ax.plot(table["as_of"], table["psi_max"], "o-", label="largest feature PSI")
    ax.plot(table["as_of"], table["psi_score"], "^-", label="score PSI")
    ax.axhline(0.1, color="orange", linestyle="--", linewidth=1)
    ax.axhline(0.25, color="red", linestyle="--", linewidth=1)
    ax.set_ylabel("PSI")
    ax.legend(loc="best", fontsize=8)
    if done.empty:  # say why the realized marks are missing rather than leave them out
        for ax in axes[:2]:
            ax.text(
                0.5, 0.06, "realized figures appear once a run's horizon has passed",
                transform=ax.transAxes, ha="center", fontsize=8, color="#555",
            )  # fmt: skip
    if len(table) == 1:  # one run: a week either side, not matplotlib's five years around it
        day = pd.Timestamp(table["as_of"].iloc[0])
        axes[-1].set_xlim(day - pd.Timedelta(days=7), day + pd.Timedelta(days=7))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def log_monitoring(
    entries: list[dict],
    model_name: str,
    computed: list[str],
    experiment: str = "churn-monitoring",
    client=None,
) -> str:
    """MLflow: one monitoring run per model version (found by its tags and reused across calls),
    with each (re)examined partition's figures as metrics stepped by run date (step = days since
    1970-01-01, timestamp = the run date)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from training.tracking import experiment_id

    client = client or MlflowClient()
    exp_id = experiment_id(client, experiment)
    run_ids = {}
    for entry in entries:
        if entry["as_of"] not in computed:
            continue
        version = entry["model_version"]
        if version not in run_ids:
            found = client.search_runs(
                [exp_id],
                filter_string=f"tags.model_name = '{model_name}' and tags.model_version = '{version}'",
                max_results=1,
            )
            if found:
                run_ids[version] = found[0].info.run_id
            else:
                run = client.create_run(
                    exp_id,
                    tags={
                        "model_name": model_name,
                        "model_version": version,
                        "mlflow.runName": f"monitor {model_name} v{version}",
                    },
                )
                run_ids[version] = run.info.run_id
        as_of = pd.Timestamp(entry["as_of"])
        step = int((as_of - pd.Timestamp("1970-01-01")).days)
        stamp = int(as_of.timestamp() * 1000)
        values = {"verdict": VERDICT_CODE[entry["verdict"]], "customers": entry["customers"]}
        values |= {
            f"expected_{k}": v for k, v in (entry.get("expected") or {}).items() if k != "reps"
        }
        values |= {f"realized_{k}": v for k, v in (entry.get("realized") or {}).items()}
        values["drifted_features"] = len(entry.get("drifted_features", []))
        for key in ("psi_max", "psi_score"):
            if entry.get(key) is not None:
                values[key] = entry[key]
        for row in entry.get("drift", []):
            if row.get("top") and np.isfinite(row.get("psi", np.nan)):
                values[f"psi_{row['feature']}"] = row["psi"]
        metrics = [
            Metric(k, float(v), stamp, step)
            for k, v in values.items()
            if v is not None and np.isfinite(float(v))
        ]
        for start in range(0, len(metrics), 500):
            client.log_batch(run_ids[entry["model_version"]], metrics=metrics[start : start + 500])
    return ", ".join(run_ids.values())


def _records(frame: pd.DataFrame) -> list[dict]:
    out = frame.astype(object).where(frame.notna(), None)
    return out.to_dict("records")


def _clean(value: object) -> object:
    """NaN and infinities as null (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"cannot write {type(value).__name__} to monitoring.json")


def registry_models(default_name: str, log: Log = print) -> ModelFor:
    """model_for from the MLflow registry: the version named in each partition's run.json (its
    model_name, else default_name), loaded once per version; None when the registry lacks it."""
    from mlflow.exceptions import MlflowException

    from training.tracking import load_churn_model

    cache: dict[tuple[str, str], tuple[ChurnModel, str] | None] = {}

    def model_for(info: dict) -> tuple[ChurnModel, str] | None:
        key = (str(info.get("model_name") or default_name), str(info.get("model_version", "")))
        if key not in cache:
            try:
                cache[key] = (load_churn_model(f"models:/{key[0]}/{key[1]}"), key[1])
            except (MlflowException, OSError) as err:
                log(f"model {key[0]} version {key[1]} cannot be loaded from MLflow: {err}")
                cache[key] = None
        return cache[key]

    return model_for


def monitor_and_record(
    tables: Tables,
    scores_dir: str | Path,
    model_name: str,
    *,
    out: str | Path | None = None,
    segments: list[str] | None = None,
    observed_until: str | None = None,
    log: Log = print,
    client=None,
) -> MonitoringResult:
    """What `churn monitor` and the weekly job run: monitoring of every partition that needs
    it (run_monitoring, models from the registry), the figures of the examined partitions in
    MLflow (one run per model version), and the plot beside the monitoring file."""
    result = run_monitoring(
        tables, scores_dir, registry_models(model_name, log), out=out, segments=segments,
        observed_until=observed_until, log=log,
    )  # fmt: skip
    if result.computed:
        log_monitoring(result.entries, model_name, result.computed, client=client)
    if result.entries:
        plot_monitoring(result.entries, result.path.with_name(PLOT_FILE))
    return result


@dataclass(frozen=True)
class EntryInWords:
    """One partition's monitoring as people read it, for the terminal and report.html alike."""

    churn: str  # "5.2% (4.1–6.5%) vs 4.8% predicted", or "not matured; 3.1% expected"
    roc_auc: str  # "0.741 realized", or "0.731 expected (0.700–0.760)" (CBPE)
    drifted: str  # the features with major drift (PSI >= 0.25), or "none"
    reason: str  # the verdict's first reason, or ""


def largest_psi(drift: pd.DataFrame) -> float | None:
    """monitoring.json's psi_max: the largest PSI over the features the verdict reads, not
    those that grow with the export's age (days since the first event of an export begun 3
    months ago), whose PSI of 3-4 a dashboard reading psi_max alarmed on while the verdict
    rightly left them out; nor the score (psi_score). None when no feature is left."""
    counted = ~drift["grows_with_export"].astype(bool) & (drift["feature"] != "churn_probability")
    psi = drift.loc[counted, "psi"].dropna()
    return float(psi.max()) if len(psi) else None


def entry_in_words(entry: dict) -> EntryInWords:
    """Realized churn against predicted (or, before the horizon has passed, the expected churn
    and the ROC AUC the probabilities imply), drifted features and the first reason."""
    from reporting import formatting as fmt

    realized, expected = entry.get("realized") or {}, entry.get("expected") or {}
    if realized:
        churn = (
            f"{fmt.percent(realized.get('realized_rate'))} "
            f"({fmt.interval(realized.get('realized_rate_lo'), realized.get('realized_rate_hi'))})"
            f" vs {fmt.percent(realized.get('predicted_rate'))} predicted"
        )
        auc = f"{fmt.number(realized.get('roc_auc'), 3)} realized"
    else:
        churn = f"not matured; {fmt.percent(expected.get('churn_rate'))} expected"
        auc = (
            f"{fmt.number(expected.get('roc_auc'), 3)} expected "
            f"({fmt.interval(expected.get('roc_auc_lo'), expected.get('roc_auc_hi'), 'number')})"
        )
    return EntryInWords(
        churn=churn,
        roc_auc=auc,
        drifted=", ".join(entry.get("drifted_features") or []) or "none",
        reason=(entry.get("reasons") or [""])[0],
    )


def summary_lines(entries: list[dict], last: int = 8) -> list[str]:
    """The latest partitions as lines people read: date, verdict, realized against predicted
    churn, realized or expected ROC AUC, drifted features, first reason."""
    lines = []
    for e in entries[-last:]:
        words = entry_in_words(e)
        reason = f"; why: {words.reason}" if words.reason else ""
        lines.append(
            f"{e['as_of']}  {e['verdict']:<7}  churn {words.churn}; ROC AUC {words.roc_auc}; "
            f"major drift: {words.drifted}{reason}"
        )
    return lines
