"""The analyst's notebooks: they run top to bottom on demo data, and are committed without
outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RETRAIN = NOTEBOOKS / "retrain.ipynb"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path):
    notebook = json.loads(path.read_text())
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name} cell {i} has outputs: strip them"
            assert cell["execution_count"] is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.slow
def test_retrain_notebook_runs_and_registers_a_model(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHURN_DEMO_CUSTOMERS", "1500")
    monkeypatch.setenv("CHURN_NUM_THREADS", "1")  # shared CI cores: one LightGBM thread is faster
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)

    notebook = nbformat.read(RETRAIN, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell, on any error

    assert (tmp_path / "data" / "customers.parquet").exists()
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(
        "name='churn-demo'"
    )
    assert [str(v.version) for v in versions] == ["1"]
    decision = next(c for c in notebook.cells if c.get("id") == "decision")
    printed = "".join(o.get("text", "") for o in decision.outputs)
    assert "promoted - no champion yet" in printed and "version 1" in printed
