"""A SQLite MLflow store keeps its artifacts beside it, whichever folder the commands run from
(before: ./mlruns of the working folder of the first run, so a store in one folder had its
models in another)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from training.tracking import artifact_root, experiment_id, use_experiment


def test_artifact_root_of_a_sqlite_store_is_beside_the_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifact_root(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}") == (
        (tmp_path / "a" / "mlruns").as_uri()
    )
    assert artifact_root("sqlite:///relative/mlflow.db") == (
        (tmp_path / "relative" / "mlruns").as_uri()
    )
    assert artifact_root("http://mlflow.example:5000") is None
    assert artifact_root("databricks") is None


def test_runs_logged_from_another_folder_keep_their_artifacts_beside_the_store(
    tmp_path, monkeypatch
):
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        identifier = use_experiment("churn")
        note = elsewhere / "note.txt"
        note.write_text("kept")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(note))
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment(identifier)
        assert experiment.artifact_location == (store / "mlruns").as_uri()
        kept = list((store / "mlruns").rglob("note.txt"))
        assert [p.read_text() for p in kept] == ["kept"]
        assert run.info.run_id in str(kept[0])
        assert not (elsewhere / "mlruns").exists()
        # the second call finds the experiment; an experiment made elsewhere keeps its place
        assert experiment_id(client, "churn") == identifier
        own = client.create_experiment("own", artifact_location=(tmp_path / "own").as_uri())
        assert experiment_id(client, "own") == own
        assert client.get_experiment(own).artifact_location == (tmp_path / "own").as_uri()
    finally:
        mlflow.set_tracking_uri("")


@pytest.mark.parametrize("name", ["churn-scoring"])
def test_an_experiment_created_meanwhile_is_used(tmp_path, name):
    """Two commands creating the experiment at once: the one that loses the race uses the
    winner's experiment instead of failing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    winner = client.create_experiment(name)
    calls = {"n": 0}
    real = client.get_experiment_by_name

    def not_yet_then_found(lookup: str):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(lookup)

    client.get_experiment_by_name = not_yet_then_found  # type: ignore[method-assign]
    assert experiment_id(client, name) == winner
