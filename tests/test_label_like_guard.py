"""A declared customer attribute that looks like the label stops `churn train` before any work,
unless the analyst allows it by name; an undeclared one stays a segment and stops nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features.config import FeatureConfig
from features.io import load_tables
from ingest.demo_data import DemoConfig, write_demo
from training.gate import LabelLikeAttributeError, refuse_label_like_attributes


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """A small demo whose CRM export carries `status` and today's MRR: both hold the label."""
    folder = tmp_path_factory.mktemp("leaky") / "data"
    write_demo(folder, DemoConfig(n_customers=400, seed=3))
    customers = pd.read_parquet(folder / "customers.parquet")
    gone = customers["churned_at"].notna()
    customers["status"] = np.where(gone, "canceled", "active")
    customers["mrr_now"] = np.where(gone, 0.0, 50.0)
    customers.to_parquet(folder / "customers.parquet")
    return folder


def test_a_declared_status_stops_training_and_says_how_to_go_on(leaky):
    tables = load_tables(leaky)
    config = FeatureConfig(customer_attributes=("plan", "status", "mrr_now"))
    with pytest.raises(LabelLikeAttributeError) as err:
        refuse_label_like_attributes(tables, config)
    text = str(err.value)
    assert "'status' (its name ('status')" in text and "'mrr_now'" in text
    assert "'plan'" not in text
    assert 'allow_label_like = ["status", "mrr_now"]' in text


def test_allowed_or_undeclared_attributes_do_not_stop_training(leaky):
    tables = load_tables(leaky)
    declared = FeatureConfig(customer_attributes=("plan", "status", "mrr_now"))
    refuse_label_like_attributes(tables, declared, allowed=("status", "mrr_now"))
    refuse_label_like_attributes(tables, FeatureConfig(customer_attributes=("plan", "country")))


def test_churn_train_refuses_before_any_work(leaky, tmp_path, monkeypatch):
    config = (leaky / "config.toml").read_text()
    start = config.index("customer_attributes = [") + len("customer_attributes = [")
    (leaky / "config.toml").write_text(config[:start] + '"status", ' + config[start:])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["train", "--data", str(leaky)])
    assert result.exit_code == 2, result.output
    assert "declared customer attributes look like the label: 'status'" in result.output
    assert "features 1/" not in result.output  # refused before building any training set
    (leaky / "config.toml").write_text(config)
