"""The champion in BentoML's model store.

``import_champion`` copies the registered champion from MLflow into the local BentoML model
store, labelled with its registered name, MLflow version and run id (once: a second call finds it
by those labels). ``load_served_model`` reads it back from the store (or from a Bento, which
carries the store's copy) with no MLflow server or database involved: MLflow is used only as a
file format.

Every dataset has its own registered model name; the store keeps them all under one BentoML
name (``churn-risk``) and tells them apart by the ``mlflow_name`` label. The service serves
CHURN_BENTO_MODEL (an exact tag), else the newest import of CHURN_MODEL_NAME, else the newest
import when the store holds one registered name only (a Bento carries exactly one model).

The partitions are the truth about which model answers: ``ensure_served_model`` (`churn serve`)
picks the version and run the newest partition was scored with, from the store or MLflow,
whether MLflow is reachable or not, and the service follows a new partition's model through
``find_partition_model``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import bentoml

from training.model import ChurnModel

BENTO_MODEL_NAME = "churn-risk"
MODEL_TAG_ENV = "CHURN_BENTO_MODEL"
MODEL_NAME_ENV = "CHURN_MODEL_NAME"
LABEL_VERSION = "mlflow_version"
LABEL_RUN_ID = "mlflow_run_id"
LABEL_NAME = "mlflow_name"
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
# `churn serve` asks MLflow once, briefly: its client would otherwise retry for minutes.
QUICK_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class NotAChurnModel(TypeError):
    """A stored model that does not load as a ChurnModel."""


@dataclass(frozen=True)
class ServedModel:
    """The model the service scores with, and where it came from."""

    model: ChurnModel
    bento_tag: str
    name: str
    version: str
    run_id: str


def model_tag() -> str:
    """The BentoML tag the service declares: CHURN_BENTO_MODEL, else the newest import of the
    registered model CHURN_MODEL_NAME, else the newest import when every import in the store is
    of one registered name. Never silently another dataset's model: with several names in the
    store and neither variable set, it fails and lists them."""
    explicit = os.environ.get(MODEL_TAG_ENV)
    if explicit:
        return explicit
    name = os.environ.get(MODEL_NAME_ENV)
    if name:
        stored = newest_import(name)
        if stored is None:
            raise ValueError(
                f"the BentoML store has no model '{name}' ({MODEL_NAME_ENV}): import its champion "
                f"with `churn serve --model-name {name}` or serving.model_store.import_champion"
            )
        return str(stored.tag)
    names = imported_names()
    if len(names) > 1:
        raise ValueError(
            f"the BentoML store holds the models of several datasets {sorted(names)}: set "
            f"{MODEL_NAME_ENV} to the registered name to serve (or {MODEL_TAG_ENV} to a tag)"
        )
    return f"{BENTO_MODEL_NAME}:latest"


def _imports(bento_name: str = BENTO_MODEL_NAME) -> list[bentoml.Model]:
    from bentoml.exceptions import NotFound

    try:
        return list(bentoml.models.list(bento_name))
    except NotFound:
        return []


def imported_names(bento_name: str = BENTO_MODEL_NAME) -> set[str]:
    """The registered model names (mlflow_name labels) of the store's imports."""
    return {m.info.labels.get(LABEL_NAME, "") for m in _imports(bento_name)}


def newest_import(name: str, bento_name: str = BENTO_MODEL_NAME) -> bentoml.Model | None:
    """The most recent import of registered model `name`, or None."""
    mine = [m for m in _imports(bento_name) if m.info.labels.get(LABEL_NAME) == name]
    return max(mine, key=lambda m: m.info.creation_time) if mine else None


def find_imported(
    version: str, run_id: str, bento_name: str = BENTO_MODEL_NAME, name: str | None = None
) -> bentoml.Model | None:
    """The store's copy of an MLflow model version (matched on version, run id and, when given,
    registered name), or None."""
    for stored in _imports(bento_name):
        labels = stored.info.labels
        same_name = name is None or labels.get(LABEL_NAME) == name
        same_run = labels.get(LABEL_RUN_ID) == run_id
        if same_name and same_run and labels.get(LABEL_VERSION) == str(version):
            return stored
    return None


def import_champion(
    name: str, uri: str | None = None, bento_name: str = BENTO_MODEL_NAME
) -> tuple[bentoml.Model, bool]:
    """Copy the champion of registered model `name` into the BentoML store, unless it is there
    already. Returns the stored model and whether it was imported now. Needs MLflow."""
    from mlflow.exceptions import MlflowException

    from training.tracking import CHAMPION, configure, no_champion_message, tracking_uri

    client = configure(uri)
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code not in NOT_FOUND_CODES:
            raise  # MLflow unreachable or failing: not the same as "no champion"
        raise ValueError(no_champion_message(client, name, uri or tracking_uri())) from None
    return _import(version, name, bento_name)


def import_version(
    name: str,
    version: str,
    run_id: str | None = None,
    uri: str | None = None,
    bento_name: str = BENTO_MODEL_NAME,
) -> tuple[bentoml.Model, bool]:
    """Copy version `version` of registered model `name` into the BentoML store (unless it is
    there already), checking that it comes from run `run_id` when given. Needs MLflow."""
    from mlflow.exceptions import MlflowException

    from training.tracking import configure, tracking_uri

    client = configure(uri)
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as err:
        if err.error_code not in NOT_FOUND_CODES:
            raise
        raise ValueError(
            f"model '{name}' has no version {version} in {uri or tracking_uri()}"
        ) from None
    if run_id and found.run_id != run_id:
        raise ValueError(
            f"model '{name}' version {version} comes from run {found.run_id} in MLflow, not from "
            f"run {run_id} as the partition says: is this the MLflow store the job used?"
        )
    return _import(found, name, bento_name)


def _import(version: Any, name: str, bento_name: str) -> tuple[bentoml.Model, bool]:
    existing = find_imported(str(version.version), version.run_id, bento_name, name)
    if existing is not None:
        return existing, False
    import bentoml.mlflow

    stored = bentoml.mlflow.import_model(
        bento_name,
        f"models:/{name}/{version.version}",
        labels={
            LABEL_NAME: name,
            LABEL_VERSION: str(version.version),
            LABEL_RUN_ID: version.run_id,
        },
        metadata={
            "trained_until": str(version.tags.get("trained_until", "")),
            "promotion_reason": str(version.tags.get("promotion_reason", "")),
        },
    )
    return bentoml.models.get(stored.tag), True  # the saved entry, not the build folder


def find_partition_model(
    info: dict[str, Any], bento_name: str = BENTO_MODEL_NAME
) -> bentoml.Model | None:
    """The store's import of the model a partition was scored with (its run.json's model name,
    version and, when recorded, run id): the newest such import, or None."""
    name, version = info.get("model_name"), str(info.get("model_version", ""))
    run_id = info.get("model_run_id")
    mine = [
        m
        for m in _imports(bento_name)
        if m.info.labels.get(LABEL_VERSION) == version
        and (not name or m.info.labels.get(LABEL_NAME) == name)
        and (not run_id or m.info.labels.get(LABEL_RUN_ID) == run_id)
    ]
    return max(mine, key=lambda m: m.info.creation_time) if mine else None


def same_model(served: ServedModel, info: dict[str, Any]) -> bool:
    """Whether the served model is the one a partition's run.json says scored it."""
    name, run_id = info.get("model_name"), info.get("model_run_id")
    return (
        served.version == str(info.get("model_version", ""))
        and (not name or served.name == name)
        and (not run_id or served.run_id == run_id)
    )


def model_for_partition(served: ServedModel, info: dict[str, Any]) -> ServedModel:
    """The model to answer with beside a partition: `served` when it scored the partition, else
    the store's import of the one that did; LookupError when the store lacks it."""
    if same_model(served, info):
        return served
    stored = find_partition_model(info)
    if stored is None:
        raise LookupError(
            f"the partition was scored by {describe_partition_model(info)}, which is not in "
            f"the BentoML store (serving {served.name} v{served.version}): import it, for "
            "example with `churn serve`, or rescore with the served model"
        )
    return load_served_model(stored)


def describe_partition_model(info: dict[str, Any]) -> str:
    """'churn-demo v3 (run abc)' for a partition's run.json."""
    name = info.get("model_name") or "the model"
    run = f" (run {info['model_run_id']})" if info.get("model_run_id") else ""
    return f"{name} v{info.get('model_version', '?')}{run}"


def load_served_model(stored: bentoml.Model | str) -> ServedModel:
    """The ChurnModel in a BentoML store entry (a Model or a tag), with its MLflow identity."""
    import bentoml.mlflow

    if isinstance(stored, str):
        stored = bentoml.models.get(stored)
    try:
        pyfunc = bentoml.mlflow.load_model(stored)
        model = getattr(pyfunc.unwrap_python_model(), "model", None)
    except Exception as err:  # MLflow and the flavours raise many kinds: say which model
        raise NotAChurnModel(f"BentoML model {stored.tag} cannot be loaded: {err}") from err
    if not isinstance(model, ChurnModel):
        raise NotAChurnModel(
            f"BentoML model {stored.tag} is not a churn model (it holds "
            f"{type(model).__name__}); serve a version trained by `churn train`"
        )
    model.explainer  # noqa: B018  (built now, not in the first /score_records request)
    labels = stored.info.labels
    return ServedModel(
        model=model,
        bento_tag=str(stored.tag),
        name=labels.get(LABEL_NAME, stored.tag.name),
        version=labels.get(LABEL_VERSION, ""),
        run_id=labels.get(LABEL_RUN_ID, ""),
    )


@contextmanager
def quick_mlflow() -> Iterator[None]:
    """MLflow's client asked once, briefly (it would otherwise retry for minutes)."""
    saved = {key: os.environ.get(key) for key in QUICK_MLFLOW}
    os.environ.update({k: v for k, v in QUICK_MLFLOW.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def ensure_champion(name: str, log: Callable[[str], None] = print) -> bentoml.Model:
    """The champion of registered model `name` in the BentoML store, imported now if needed.
    When MLflow cannot be reached, the newest import of that name already in the store is used,
    with a warning; with none there, it fails (never another dataset's model)."""
    from mlflow.exceptions import MlflowException

    try:
        with quick_mlflow():
            stored, imported = import_champion(name)
    except (MlflowException, OSError) as err:
        stored = newest_import(name)
        if stored is None:
            raise ValueError(
                f"cannot read the champion of '{name}' from MLflow ({err}) and the BentoML "
                f"store has no model '{name}' yet"
            ) from None
        log(f"warning: MLflow unreachable; serving {stored.tag} from the BentoML store ({err})")
        return stored
    labels = stored.info.labels
    verb = "imported" if imported else "already in the BentoML store:"
    log(f"champion {name} v{labels.get(LABEL_VERSION)} {verb} {stored.tag}")
    return stored


def ensure_served_model(
    name: str, partition_info: dict[str, Any] | None, log: Callable[[str], None] = print
) -> bentoml.Model:
    """The model to serve: the one the newest partition was scored with (its run.json's
    version and run id are the truth, so /score and /score_records never disagree), from the
    BentoML store or else imported from MLflow; without a partition, the champion."""
    from mlflow.exceptions import MlflowException

    if not partition_info or not partition_info.get("model_version"):
        return ensure_champion(name, log)
    scored_by = partition_info.get("model_name")
    if scored_by and scored_by != name:
        raise ValueError(
            f"the newest partition ({partition_info.get('as_of')}) was scored by model "
            f"'{scored_by}', not '{name}': point --scores at this dataset's partitions"
        )
    wanted = describe_partition_model(partition_info)
    stored = find_partition_model({**partition_info, "model_name": name})
    if stored is None:
        try:
            with quick_mlflow():
                stored, _ = import_version(
                    name, partition_info["model_version"], partition_info.get("model_run_id")
                )
        except (MlflowException, OSError) as err:
            raise ValueError(
                f"the newest partition ({partition_info.get('as_of')}) was scored by {wanted}, "
                f"which is not in the BentoML store and MLflow cannot be read ({err})"
            ) from None
        log(f"imported {wanted}, the model of the newest partition: {stored.tag}")
    else:
        log(f"serving {wanted}, the model of the newest partition: {stored.tag}")
    return stored
