"""Hardening of the model in service and in the registry (issue #15, items 4, 5, 7 and 10):
the served model is the one the partitions were scored with, MLflow reachable or not; promote
checks the version; a service that cannot load its model exits at once with a clear line, and
when it can, /readyz and /metrics show the partition; a killed training run is marked failed;
a champion whose artifacts are gone is a clear message.

The BentoML store lives in this module's temporary folder (BentoMLContainer.model_store is
patched, never computed, so the other service tests keep theirs) and serving.service is only
imported by the `bentoml serve` subprocesses (its class declares the model at import)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import mlflow
import pytest
from simple_di import sentinel as _SENTINEL

from tests.test_hardening_partitions import write_partition
from training import tracking
from training.tracking import CHAMPION, configure, force_promote, load_champion

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-token-9d2"


class NotChurn(mlflow.pyfunc.PythonModel):
    """A registered model that is not a churn model (what `churn promote` must refuse)."""

    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture(scope="module")
def registry(small_champion, tmp_path_factory):
    """A copy of the small champion's MLflow store with a second version of the same run and a
    version that is not a churn model, and a private BentoML store holding v1 then v2."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    from serving.model_store import import_version

    base = tmp_path_factory.mktemp("hardening-models")
    root = base / "root"
    shutil.copytree(small_champion.root, root)
    home = base / "bentoml"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    untouched = [p for p in _bentoml_singletons(BentoMLContainer) if p._cache is _SENTINEL]
    with (
        pytest.MonkeyPatch.context() as mp,
        BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))),
    ):
        mp.setenv("BENTOML_HOME", str(home))  # whatever BentoML computes now lands here
        mp.chdir(root)  # the MLflow store's relative artifact paths
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        client = configure(uri)
        name, v1 = small_champion.champion.name, small_champion.champion.version
        first = client.get_model_version(name, v1)
        v2 = client.create_model_version(name, first.source, first.run_id).version
        mlflow.set_experiment("not-churn")
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=NotChurn(), pip_requirements=[]
            )
        bad = mlflow.register_model(info.model_uri, name).version
        stored = {str(v): import_version(name, str(v), uri=uri)[0] for v in (v1, v2)}
        yield SimpleNamespace(
            root=root, home=home, uri=uri, client=client, name=name, run_id=first.run_id,
            v1=str(v1), v2=str(v2), bad=str(bad), bad_run=run.info.run_id, stored=stored,
            small=small_champion,
        )  # fmt: skip
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])
    for provider in untouched:  # computed with this module's home: forget them
        provider._cache = _SENTINEL


def _bentoml_singletons(container) -> list:
    """BentoML's memoised settings (its home folder, stores, ...), in nested containers too."""
    from simple_di.providers import SingletonFactory

    found, seen = [], set()

    def walk(node) -> None:
        for name in dir(node):
            if name.startswith("_"):
                continue
            value = getattr(node, name, None)
            if id(value) in seen:
                continue
            if isinstance(value, SingletonFactory):
                seen.add(id(value))
                found.append(value)
            elif type(value).__name__.endswith("Container"):
                seen.add(id(value))
                walk(value)

    walk(container)
    return found


def partition_info(registry, version: str) -> dict:
    return {"as_of": "2024-12-01", "model_name": registry.name, "model_version": version,
            "model_run_id": registry.run_id}  # fmt: skip


# ------------------------------------------------------------ item 5: the partitions' model


def test_after_a_rollback_with_mlflow_out_of_reach_the_partitions_model_is_served(
    registry, monkeypatch
):
    from serving.model_store import ensure_champion, ensure_served_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    # v2 is the newest import; the partitions were scored by v1 (rolled back to).
    assert (
        ensure_champion(registry.name, log=lambda _: None).tag == registry.stored[registry.v2].tag
    )
    said: list[str] = []
    stored = ensure_served_model(registry.name, partition_info(registry, registry.v1), said.append)
    assert stored.tag == registry.stored[registry.v1].tag
    assert f"serving {registry.name} v{registry.v1}" in said[0]


def test_a_partition_of_a_model_missing_everywhere_is_a_clear_error(registry, monkeypatch):
    from serving.model_store import ensure_served_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match=r"scored by .* v99 .*not in the BentoML store"):
        ensure_served_model(registry.name, partition_info(registry, "99"), lambda _: None)
    other = {**partition_info(registry, registry.v1), "model_name": "churn-elsewhere"}
    with pytest.raises(ValueError, match="scored by model 'churn-elsewhere'"):
        ensure_served_model(registry.name, other, lambda _: None)


def test_the_service_follows_the_model_of_a_new_partition(registry):
    from serving.model_store import load_served_model, model_for_partition

    served = load_served_model(registry.stored[registry.v2])
    assert model_for_partition(served, partition_info(registry, registry.v2)) is served
    followed = model_for_partition(served, partition_info(registry, registry.v1))
    assert (followed.version, followed.run_id) == (registry.v1, registry.run_id)
    with pytest.raises(LookupError, match=r"v77 .*not in the BentoML store"):
        model_for_partition(served, partition_info(registry, "77"))


# ------------------------------------------------------------ item 4: promote checks


def test_promote_refuses_a_version_that_is_not_a_churn_model(registry):
    before = registry.client.get_model_version_by_alias(registry.name, CHAMPION).version
    with pytest.raises(ValueError, match=rf"version {registry.bad} of .* churn model"):
        force_promote(registry.bad, "try it", registry.name, registry.uri)
    after = registry.client.get_model_version_by_alias(registry.name, CHAMPION).version
    assert after == before


def test_promote_refuses_other_features_unless_allowed(registry, monkeypatch):
    champion = registry.small.champion.model
    other = SimpleNamespace(feature_config={**champion.feature_config, "windows": [3, 5]})
    monkeypatch.setattr(tracking, "current_champion_model", lambda client, name: ("1", other))
    with pytest.raises(ValueError, match=r"another configuration than the champion v1 .*windows"):
        force_promote(registry.v2, "same run", registry.name, registry.uri)
    force_promote(registry.v2, "same run", registry.name, registry.uri, allow_feature_change=True)
    champion = registry.client.get_model_version_by_alias(registry.name, CHAMPION)
    assert str(champion.version) == registry.v2
    force_promote(registry.v1, "back", registry.name, registry.uri, allow_feature_change=True)


def test_promote_takes_a_retrain_of_a_later_export_that_differs_only_in_observed_until(
    registry, monkeypatch
):
    """The README asks for observed_until per export: two exports' models differ in it and in
    nothing that builds features (OULAD judge: "differs in ['churn']" refused the retrain)."""
    champion = registry.small.champion.model
    churn = {**champion.feature_config["churn"], "observed_until": "2014-05-05"}
    other = SimpleNamespace(feature_config={**champion.feature_config, "churn": churn})
    monkeypatch.setattr(tracking, "current_champion_model", lambda client, name: ("1", other))
    force_promote(registry.v2, "the later export", registry.name, registry.uri)
    assert str(registry.client.get_model_version_by_alias(registry.name, CHAMPION).version) == (
        registry.v2
    )
    # Another churn horizon is another label: still refused.
    churn = {**churn, "horizon_days": churn["horizon_days"] + 30}
    other.feature_config = {**champion.feature_config, "churn": churn}
    with pytest.raises(ValueError, match=r"differs in \['churn'\]"):
        force_promote(registry.v1, "back", registry.name, registry.uri)
    force_promote(registry.v1, "back", registry.name, registry.uri, allow_feature_change=True)


def test_the_reason_is_recorded_before_the_alias_moves():
    calls: list[str] = []

    class Recorder:
        def get_model_version(self, name, version):
            calls.append("get")

        def set_model_version_tag(self, name, version, key, value):
            calls.append(f"tag:{key}")

        def set_registered_model_alias(self, name, alias, version):
            calls.append(f"alias:{alias}")

    tracking.set_champion(Recorder(), "m", "3", "better")
    assert calls.index("tag:promotion_reason") < calls.index("alias:champion")
    assert calls[-1] == "alias:champion"


# ------------------------------------------------------------ item 7: half-finished runs


def test_a_killed_training_run_is_marked_failed_and_its_version_never_promoted(registry):
    client = registry.client
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    experiment = "killed-training"
    experiment_id = client.create_experiment(experiment)
    tags = {tracking.RUN_HOST_TAG: socket.gethostname(), tracking.RUN_PID_TAG: str(dead.pid)}
    run = client.create_run(experiment_id, tags=tags)  # left RUNNING by the dead process
    first = client.get_model_version(registry.name, registry.v1)
    version = client.create_model_version(registry.name, first.source, run.info.run_id).version
    alive = client.create_run(experiment_id, tags=tracking.process_tags())  # this process
    failed = tracking.mark_dead_runs_failed(client, experiment)
    assert failed == [run.info.run_id]
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    tagged = client.get_model_version(registry.name, version).tags
    assert f"process {dead.pid}" in tagged["incomplete"]
    with pytest.raises(ValueError, match="is incomplete: the training process"):
        force_promote(version, "why not", registry.name, registry.uri)
    client.set_terminated(alive.info.run_id)


# ------------------------------------------------------------ item 10: deleted artifacts


def test_a_champion_whose_artifacts_are_gone_is_a_clear_message(registry):
    client = registry.client
    gone = client.create_model_version(
        registry.name, str(registry.root / "deleted"), registry.run_id
    )
    client.set_registered_model_alias(registry.name, CHAMPION, gone.version)
    try:
        with pytest.raises(ValueError, match=r"cannot be loaded from MLflow.*churn promote"):
            load_champion(registry.name, registry.uri)
    finally:
        client.set_registered_model_alias(registry.name, CHAMPION, registry.v1)


# ------------------------------------------------------------ `bentoml serve` (items 4, 5, 8)


def _serve_env(registry, scores: Path, tag: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env.update({
        "BENTOML_HOME": str(registry.home), "BENTOML_DO_NOT_TRACK": "True",
        "CHURN_API_TOKEN": TOKEN, "CHURN_SCORES_DIR": str(scores), "CHURN_BENTO_MODEL": tag,
        "CHURN_PARTITION_CHECK_SECONDS": "0.2", "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
    })  # fmt: skip
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:ChurnService",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_a_service_whose_model_is_not_a_churn_model_exits_at_once(registry, tmp_path):
    from serving.model_store import import_version

    bad = import_version(registry.name, registry.bad, uri=registry.uri)[0]
    scores = tmp_path / "scores"
    write_partition(scores, "2024-12-01")
    started = time.monotonic()
    proc = _serve(_serve_env(registry, scores, str(bad.tag)), _free_port(), tmp_path / "log")
    try:
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (tmp_path / "log").read_text()
    assert code != 0, output[-2000:]
    assert "churn service cannot start" in output and str(bad.tag) in output
    assert time.monotonic() - started < 90


def test_the_served_service_answers_with_the_partitions_model_and_shows_its_status(
    registry, tmp_path
):
    scores = tmp_path / "scores"
    info = partition_info(registry, registry.v1)
    write_partition(scores, "2024-12-01", **{k: v for k, v in info.items() if k != "as_of"})
    port = _free_port()
    env = _serve_env(registry, scores, str(registry.stored[registry.v2].tag))
    proc = _serve(env, port, tmp_path / "log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and ready is None:
            assert proc.poll() is None, (tmp_path / "log").read_text()[-3000:]
            try:
                answer = httpx.get(f"{url}/readyz", timeout=2)
                ready = answer if answer.status_code == 200 else None
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert ready is not None, (tmp_path / "log").read_text()[-3000:]
        status = ready.json()
        assert status["as_of"] == "2024-12-01" and status["last_load_error"] is None
        assert status["model"]["version"] == registry.v1  # not v2, the declared tag
        assert status["partition_age_seconds"] > 0
        broken = write_partition(scores, "2024-12-08")
        (broken / "scores.parquet").write_bytes(b"not parquet")
        time.sleep(1.0)
        httpx.get(f"{url}/readyz", timeout=2)  # triggers the check
        time.sleep(1.0)
        status = httpx.get(f"{url}/readyz", timeout=2).json()
        assert status["as_of"] == "2024-12-01"
        assert status["last_load_error"].startswith("as_of=2024-12-08")
        page = httpx.get(f"{url}/metrics", timeout=2).text
        assert "churn_partition_load_failing 1" in page
        assert "churn_partition_age_seconds " in page
        for i in range(50):
            httpx.request(f"MADEUP{i}", f"{url}/x{i}", timeout=2)
        page = httpx.get(f"{url}/metrics", timeout=2).text
        assert "MADEUP" not in page and 'method="OTHER"' in page
        scored = httpx.post(
            f"{url}/score", json={"customer_ids": ["a"]},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5,
        )  # fmt: skip
        assert scored.status_code == 200 and json.loads(scored.text)["as_of"] == "2024-12-01"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
