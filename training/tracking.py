"""MLflow at the edge: runs, the logged scoring artifact, the registry and the champion alias."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from features.contract import Tables
from training.model import ChurnModel

CHAMPION = "champion"
REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "mlflow")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Folder names that say nothing about the dataset: the parent folder's name is put before them.
GENERIC_FOLDERS = frozenset({"data", "tables", "input", "inputs", "raw", "export", "exports"})


def check_model_name(name: str) -> str:
    """A registered model name: letters, digits, '.', '_', '-' (at most 100), else ValueError."""
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"model name {name!r} must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def name_slug(text: str) -> str:
    """Lower-case letters and digits joined by '-': a folder or file name as part of a model name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def model_name_for_data(
    data_dir: str | Path, config_path: str | Path | None = None, given: str | None = None
) -> str:
    """The registered model name of a dataset, so that each dataset has its own champion:
    `given` (--model-name), else `[training] model_name` of the configuration in use (--config,
    else DATA/config.toml; the demo and the importers write one), else `churn-<folder>` from
    the data folder's name (`churn-<parent>-<folder>` for generic names such as 'data')."""
    from features.config import config_path_for_data, load_config

    if given:
        return check_model_name(given)
    configured = (
        load_config(config_path_for_data(data_dir, config_path))
        .get("training", {})
        .get("model_name")
    )
    if configured:
        return check_model_name(str(configured))
    folder = Path(str(data_dir).rstrip("/")).resolve()
    parts = [folder.name]
    if folder.name.lower() in GENERIC_FOLDERS and folder.parent.name:
        parts.insert(0, folder.parent.name)
    slug = name_slug("-".join(parts))
    if not slug:
        raise ValueError(
            f"cannot derive a model name from the data folder '{data_dir}': "
            "give --model-name or [training] model_name"
        )
    return check_model_name(f"churn-{slug}"[:100])


def model_name_for_table(path: str | Path, given: str | None = None) -> str:
    """The registered name of a labeled-table model: `given`, else `churn-<file stem>-labeled`
    (never the name an event-data dataset's weekly job and service use); a stem that already
    starts or ends with those words keeps them once (Churn_Modelling.csv: churn-modelling-labeled)."""
    if given:
        return check_model_name(given)
    slug = name_slug(Path(path).stem)
    slug = re.sub(r"^churn(-|$)", "", re.sub(r"(^|-)labeled$", "", slug)) or "table"
    return check_model_name(f"churn-{slug}"[:92] + "-labeled")


def require_model_name(name: str | None) -> str:
    """The configured model name, or a ValueError saying how to give one."""
    if not name:
        raise ValueError(
            "no registered model name: give --model-name, [training] model_name, or derive one "
            "from the data folder with training.tracking.model_name_for_data"
        )
    return check_model_name(name)


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a local SQLite store in the working folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


# MLflow's messages about choices made here on purpose, printed on every training run: the
# model is a Python object (its scoring code is this package, pinned by the requirements),
# and the environment is described by pip_requirements, not by pip's own version.
KNOWN_MLFLOW_NOISE = (
    "Passing a Python object as `python_model`",
    "Failed to resolve installed pip version",
)


class _KnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_MLFLOW_NOISE)


def quiet_mlflow() -> None:
    """MLflow's log at warnings and above (its INFO lines on creating tables and experiments
    say nothing a user acts on), without KNOWN_MLFLOW_NOISE. Idempotent."""
    root = logging.getLogger("mlflow")
    root.setLevel(logging.WARNING)
    for name in ("mlflow.pyfunc", "mlflow.utils.environment"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownNoise) for f in logger.filters):
            logger.addFilter(_KnownNoise())


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: the folder `mlruns` beside a SQLite store
    (sqlite:///path/mlflow.db), so that a store and its models stay together whichever folder
    `churn train` runs from (MLflow's default is ./mlruns of the first run's working folder);
    None for other stores (a tracking server has its own artifact root)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :].split("?", 1)[0])
    return (database.resolve().parent / "mlruns").as_uri()


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created when missing with its artifacts beside a SQLite
    store (artifact_root). Two processes creating it at once both get the one experiment."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(client.tracking_uri))
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def use_experiment(name: str) -> str:
    """Make `name` the active experiment of the configured store (experiment_id); its id."""
    identifier = experiment_id(MlflowClient(), name)
    mlflow.set_experiment(experiment_id=identifier)
    return identifier


def configure(uri: str | None = None) -> MlflowClient:
    quiet_mlflow()
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_metrics(client: MlflowClient, run_id: str, prefix: str = "") -> dict[str, float]:
    """A run's latest metrics whose name starts with `prefix` (e.g. "cv_": a labeled table's
    cross-validated figures); empty when the run is gone from the store."""
    try:
        metrics = client.get_run(run_id).data.metrics
    except mlflow.exceptions.MlflowException:
        return {}
    return {k: float(v) for k, v in metrics.items() if k.startswith(prefix)}


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: predict() gives probability and band (at the churn level of each row's
    as_of when the input has that column: ChurnModel.level_shift); .model is the whole
    ChurnModel."""

    def __init__(self, model: ChurnModel):
        self.model = model

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        probability = self.model.predict_proba(model_input)
        return pd.DataFrame(
            {"churn_probability": probability, "risk_band": self.model.risk_band(probability)}
        )


def load_churn_model(uri: str) -> ChurnModel:
    """The ChurnModel behind a logged model URI (runs:/..., models:/name@champion, a path)."""
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def data_fingerprint(tables: Tables) -> str:
    """A hash of every table's content: two runs on the same data share it."""
    digest = hashlib.sha256()
    for name in ("customers", "activity", "feedback", "revenue"):
        df = getattr(tables, name)
        digest.update(f"{name}:{len(df)}:{list(df.columns)}".encode())
        if len(df):
            hashed = pd.util.hash_pandas_object(df, index=False).to_numpy()
            digest.update(hashed.sum(dtype=np.uint64).tobytes())
            digest.update(np.bitwise_xor.reduce(hashed).tobytes())
    return digest.hexdigest()[:16]


def pip_requirements() -> list[str]:
    """Pinned requirements for the logged model, given explicitly (inference costs seconds)."""
    return [f"{name}=={package_version(name)}" for name in REQUIREMENTS]


def input_example(model: ChurnModel, frame: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
    """A few feature records as the model takes them: numbers as float64, categories as text."""
    example = frame[model.feature_names].head(rows).copy()
    for col in model.preprocessor.numeric:
        example[col] = example[col].astype("float64")
    for col in model.preprocessor.categorical:
        example[col] = example[col].astype("str")
    return example


def current_champion(client: MlflowClient, name: str) -> tuple[str, ChurnModel] | None:
    """The version carrying the champion alias and its model, or None."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return version.version, load_churn_model(f"models:/{name}@{CHAMPION}")


def champion_fingerprint(client: MlflowClient, name: str, version: str) -> str | None:
    """The data_fingerprint tag of the run that made a registered version (None when the run
    or the tag cannot be read: an older store, a deleted run)."""
    try:
        run_id = client.get_model_version(name, str(version)).run_id
        return client.get_run(run_id).data.tags.get("data_fingerprint") if run_id else None
    except MlflowException:
        return None


def set_champion(
    client: MlflowClient, name: str, version: str, reason: str, forced: bool = False
) -> None:
    """Record why on the version, then move the champion alias to it (in that order)."""
    client.get_model_version(name, str(version))  # fails clearly for an unknown version
    # The reason first: an alias that moved without one (a crash in between) is never seen.
    client.set_model_version_tag(name, str(version), "promotion_reason", reason)
    client.set_model_version_tag(name, str(version), "promoted_by", "analyst" if forced else "gate")
    client.set_model_version_tag(
        name, str(version), "promoted_at", pd.Timestamp.now("UTC").isoformat()
    )
    client.set_registered_model_alias(name, CHAMPION, str(version))


def record_promotion(
    client: MlflowClient,
    name: str,
    version: str,
    promoted: bool,
    reason: str,
    run_id: str,
    log: Callable[[str], None],
    tags: dict[str, str] | None = None,
) -> None:
    """Carry out the gate's decision on a new version: its tags (the gate's numbers, e.g. the
    baseline that won and by how much), then champion, or the reason why not."""
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, value)
    if promoted:
        set_champion(client, name, version, reason)
    else:
        client.set_model_version_tag(name, version, "not_promoted_because", reason)
    log(f"run {run_id}: model {name} version {version}; "
        f"{'promoted to champion' if promoted else 'not promoted'}: {reason}")  # fmt: skip


def force_promote(
    version: str,
    reason: str,
    name: str,
    uri: str | None = None,
    allow_feature_change: bool = False,
) -> None:
    """An analyst's override: make VERSION the champion, recording the reason. The version must
    load as a churn model, be of this registered name, have finished its training run, and
    build its features as the champion does (the same feature configuration: churn definition,
    windows, customer attributes; the model kind may differ), unless `allow_feature_change`:
    a champion the weekly job and the service cannot use is never promoted."""
    if not reason.strip():
        raise ValueError("a reason is required to force a promotion")
    client = configure(uri)
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"model '{name}' has no version {version}") from None
    check_promotable(client, name, str(version), found, allow_feature_change)
    set_champion(client, name, str(version), f"forced: {reason}", forced=True)


def check_promotable(
    client: MlflowClient, name: str, version: str, found: Any, allow_feature_change: bool
) -> ChurnModel:
    """The version's ChurnModel, or a ValueError saying why it cannot be the champion."""
    label = f"version {version} of '{name}'"
    if found.tags.get("incomplete"):
        raise ValueError(f"{label} is incomplete: {found.tags['incomplete']}")
    try:
        model = load_churn_model(f"models:/{name}/{version}")
    except (MlflowException, OSError, AttributeError, TypeError) as err:
        raise ValueError(f"{label} cannot be loaded as a churn model: {_first_line(err)}") from None
    if not isinstance(model, ChurnModel):
        raise ValueError(
            f"{label} is not a churn model (it holds {type(model).__name__}): the weekly job "
            "and the service could not use it"
        )
    tagged = found.tags.get("registered_name")
    if tagged and tagged != name:
        raise ValueError(f"{label} was trained for the registered model '{tagged}', not '{name}'")
    champion = current_champion_model(client, name)
    if champion is not None and not allow_feature_change:
        current = _features_as_built(champion[1].feature_config)
        ours = _features_as_built(model.feature_config)
        differ = sorted(k for k in set(current) | set(ours) if current.get(k) != ours.get(k))
        if differ:
            raise ValueError(
                f"{label} builds its features with another configuration than the champion "
                f"v{champion[0]} (differs in {differ[:6]}): the weekly job's partitions of the "
                "two would not compare; give --allow-feature-change if that is intended"
            )
    return model


def _features_as_built(config: dict[str, Any] | None) -> dict[str, Any]:
    """A model's stored feature configuration without the churn definition's observed_until:
    that is the date its training export was cut (the README asks for it per export), not a
    way of building features; two retrains of successive exports differ in it and nothing
    else, and their partitions compare."""
    config = dict(config or {})
    churn = config.get("churn")
    if isinstance(churn, dict):
        config["churn"] = {k: v for k, v in churn.items() if k != "observed_until"}
    return config


def current_champion_model(client: MlflowClient, name: str) -> tuple[str, ChurnModel] | None:
    """The champion's version and model, or None when there is none or it cannot be loaded
    (then any loadable churn model may replace it)."""
    try:
        return current_champion(client, name)
    except (MlflowException, OSError, AttributeError, TypeError):
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


@dataclass
class LoggedRun:
    run_id: str
    version: str


def _flat(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)
    }


def log_training_run(
    *,
    model: ChurnModel,
    name: str,
    experiment: str,
    params: dict[str, Any],
    tags: dict[str, str],
    metrics: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion_metrics: dict[str, float] | None,
    tables_to_log: dict[str, pd.DataFrame],
    plots: list[Path],
    example: pd.DataFrame,
    client: MlflowClient,
    extra_metrics: dict[str, float] | None = None,
) -> LoggedRun:
    """One MLflow run with everything an analyst needs, the model logged and registered."""
    use_experiment(experiment)
    mark_dead_runs_failed(client, experiment)
    with mlflow.start_run(tags=process_tags()) as run:
        mlflow.log_params({k: _short(v) for k, v in params.items()})
        mlflow.set_tags(tags)
        mlflow.log_metrics(_flat("test_", metrics))
        for baseline, values in baselines.items():
            mlflow.log_metrics(_flat(f"baseline_{baseline}_", values))
        if champion_metrics:
            mlflow.log_metrics(_flat("champion_", champion_metrics))
        if extra_metrics:
            mlflow.log_metrics(_flat("", extra_metrics))
        with tempfile.TemporaryDirectory() as tmp:
            for file_name, table in tables_to_log.items():
                path = Path(tmp) / file_name
                table.to_csv(path, index=False)
                mlflow.log_artifact(str(path), artifact_path="tables")
            features = Path(tmp) / "features.json"
            features.write_text(json.dumps(model.feature_names, indent=1))
            mlflow.log_artifact(str(features))
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="plots")
        output = ChurnPyfunc(model).predict(None, example)
        signature = infer_signature(example, output)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnPyfunc(model),
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
        # The version is created with its tags in one call: never a version without them.
        registered = mlflow.register_model(
            info.model_uri,
            name,
            tags={
                "run_id": run.info.run_id,
                "trained_until": model.trained_until,
                "registered_name": name,
            },
        )
        return LoggedRun(run_id=run.info.run_id, version=str(registered.version))


RUN_HOST_TAG, RUN_PID_TAG = "churn.host", "churn.pid"


def process_tags() -> dict[str, str]:
    """Which process runs a training run: a later run can tell that it died unfinished."""
    return {RUN_HOST_TAG: socket.gethostname(), RUN_PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_runs_failed(
    client: MlflowClient, experiment: str, log: Callable[[str], None] | None = None
) -> list[str]:
    """Runs of `experiment` still RUNNING whose process (on this host) is gone, as a killed
    `churn train` leaves them: marked FAILED, and a model version they registered is tagged
    `incomplete` (never promoted by `churn promote`). Returns their run ids."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    host = socket.gethostname()
    failed = []
    runs = client.search_runs(
        [found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
    )
    for run in runs:
        tags = run.data.tags
        pid = tags.get(RUN_PID_TAG, "")
        if tags.get(RUN_HOST_TAG) != host or not pid.isdigit() or _alive(int(pid)):
            continue
        why = f"the training process {pid} on {host} ended before the run finished"
        client.set_tag(run.info.run_id, "failed_because", why)
        client.set_terminated(run.info.run_id, status="FAILED")
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            client.set_model_version_tag(version.name, version.version, "incomplete", why)
            client.set_model_version_tag(version.name, version.version, "not_promoted_because", why)
        failed.append(run.info.run_id)
        if log:
            log(f"run {run.info.run_id} marked FAILED: {why}")
    return failed


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 500 else text[:497] + "..."


@dataclass
class Champion:
    model: ChurnModel
    name: str
    version: str
    run_id: str


def no_champion_message(client: MlflowClient, name: str, uri: str) -> str:
    """Why there is nothing to score with: no champion, and why the latest version was not
    promoted when one was trained (the gate's reason, e.g. no better than chance)."""
    text = (
        f"model '{name}' has no champion in {uri}; train one with `churn train` or promote a "
        "version with `churn promote`"
    )
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return text
    if not versions:
        return text
    latest = max(versions, key=lambda v: int(v.version))
    why = (latest.tags or {}).get("not_promoted_because")
    return text + (f". Version {latest.version} was not promoted: {why}" if why else "")


def load_champion(name: str, uri: str | None = None) -> Champion:
    """The registered champion of `name`, with its version and training run id."""
    client = configure(uri)
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        where = tracking_uri() if uri is None else uri
        raise ValueError(no_champion_message(client, name, where)) from None
    try:
        model = load_churn_model(f"models:/{name}@{CHAMPION}")
    except (MlflowException, OSError, AttributeError) as err:
        raise ValueError(
            f"the champion of '{name}' (v{version.version}, run {version.run_id}) cannot be "
            f"loaded from MLflow: {_first_line(err)}. Its artifacts may have been deleted; "
            f"promote a version that loads with `churn promote VERSION --model-name {name}`"
        ) from None
    if not isinstance(model, ChurnModel):
        raise ValueError(
            f"the champion of '{name}' (v{version.version}) is not a churn model "
            f"({type(model).__name__}): promote a version trained by `churn train`"
        )
    return Champion(model, name, str(version.version), version.run_id)
