"""The trained demo model (12,000 customers): quality against the generator's truth,
calibration, directions of its drivers, MLflow logging and loading the registered model.
Reproducibility and the champion gate over two runs are in test_training_small_runs.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.config import config_path_for_data, feature_config_from_file
from features.dataset import build_training_set
from features.io import load_tables
from ingest.demo_data import DEMO_MODEL_NAME, DemoConfig, write_demo
from training.config import TrainConfig, train_config_from_file
from training.evaluation import binary_metrics
from training.pipeline import train_from_tables
from training.tracking import load_churn_model


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    # 12,000 customers: the gap to the truth on the holdout was 0.0058 ROC AUC at seeds 7, 8
    # and 9 (0.0065 with 20,000, which took twice as long: 174 s against 84 s)
    write_demo(root / "data", DemoConfig(n_customers=12_000, seed=7))
    tables = load_tables(root / "data")
    path = config_path_for_data(root / "data")
    return root, tables, feature_config_from_file(path), train_config_from_file(path)


@pytest.fixture(scope="module")
def trained(demo):
    """A full training run on 12,000 demo customers; it becomes the champion."""
    root, tables, features, config = demo
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        truth = pd.read_parquet(root / "data" / "truth.parquet")
        first = train_from_tables(
            tables, features, config, log=lambda _: None, tracking_uri=uri, truth=truth
        )
    return uri, first


def test_test_auc_is_close_to_the_oracle_and_probabilities_are_calibrated(demo, trained):
    """The demo's truth is scored on the same holdout rows as the model, in the result."""
    root = demo[0]
    _, first = trained
    truth = pd.read_parquet(root / "data" / "truth.parquet")
    test = first.evaluation.test.merge(
        truth, on=["customer_id", "as_of"], how="left", suffixes=("", "_true")
    )
    assert test["churn_probability_true"].notna().all()
    oracle = binary_metrics(test["churned"].to_numpy(), test["churn_probability_true"].to_numpy())
    holdout = first.holdout
    assert holdout.metrics["truth"]["roc_auc"] == pytest.approx(oracle["roc_auc"])
    model = first.evaluation.metrics
    print(
        f"model AUC {model['roc_auc']:.4f}, oracle AUC {oracle['roc_auc']:.4f}, ECE {model['ece']:.4f}"
    )
    assert model["roc_auc"] >= oracle["roc_auc"] - 0.01
    assert model["ece"] <= 0.03
    assert model["roc_auc"] > first.evaluation.baselines["recency_rule"]["roc_auc"]
    assert "truth" in first.metrics_table().columns


def test_more_tickets_lower_nps_or_an_activity_drop_never_lower_risk(demo, trained):
    _, tables, _, _ = demo
    model = trained[1].model
    rows = pd.concat(
        [
            build_training_set(tables, [d], model.features_config())[0]
            for d in trained[1].plan.holdout
        ]
    ).head(3000)
    base = model.predict_proba(rows)
    more_tickets = rows.assign(
        tickets_open=rows["tickets_open"] + 2, tickets_open_over_7d=rows["tickets_open_over_7d"] + 1
    )
    worse_nps = rows.assign(
        nps_last=np.maximum(rows["nps_last"].fillna(8) - 4, 0),
        nps_mean=np.maximum(rows["nps_mean"].fillna(8) - 3, 0),
    )
    drop = rows.assign(
        events_trend_30d=-1.0,
        events_7d=0.0,
        events_30d=0.0,
        active_days_7d=0.0,
        active_days_30d=0.0,
    )
    for name, changed in {"tickets": more_tickets, "nps": worse_nps, "activity drop": drop}.items():
        after = model.predict_proba(changed)
        assert (after >= base - 1e-12).all(), (
            f"{name}: risk fell for {(after < base - 1e-12).sum()} customers"
        )
        assert (after > base).any(), f"{name}: the model ignores this driver"


def test_runs_are_logged_with_metrics_baselines_and_plots(trained):
    uri, first = trained
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(first.run_id)
    assert {"test_roc_auc", "test_ece", "test_lift_top_decile", "baseline_logistic_regression_roc_auc",
            "baseline_recency_rule_roc_auc"} <= set(run.data.metrics)  # fmt: skip
    assert run.data.tags["data_fingerprint"] and run.data.tags["observation_dates"]
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert {
        "plots/roc.png",
        "plots/calibration.png",
        "plots/gains_lift.png",
        "plots/shap_summary.png",
    } <= artifacts


def test_the_registered_model_loads_with_one_call_and_scores_like_the_trained_one(demo, trained):
    uri, first = trained
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    loaded = load_churn_model(f"models:/{DEMO_MODEL_NAME}/{first.version}")
    rows = first.evaluation.test.head(50)
    features = build_training_set(demo[1], [rows["as_of"].iloc[0]], loaded.features_config())[0]
    np.testing.assert_allclose(loaded.predict_proba(features), first.model.predict_proba(features))
    scored = loaded.score(features.head(5))
    assert list(scored.columns) == [
            "customer_id", "churn_probability", "risk_band", "drivers", "lower_risk",
        ]  # fmt: skip
    assert set(scored["risk_band"]) <= {"low", "medium", "high"}


def test_training_errors_say_what_to_change(demo, tmp_path):
    _, tables, features, _ = demo
    late = TrainConfig(date_from="2024-12-20", every_days=30)
    with pytest.raises(ValueError, match="after the last date with a complete 30-day label"):
        train_from_tables(
            tables, features, late, log=lambda _: None, tracking_uri=f"sqlite:///{tmp_path}/m.db"
        )


def test_a_folds_rows_are_binned_as_all_rows_and_train_the_same_trees():
    """FoldTrainer.rows: a fold's rows as a Dataset of their own binned by all the rows' bins
    (LightGBM's Dataset.subset crashed the process on a shop's fold). The trees are those a
    subset of the same rows trains."""
    import lightgbm as lgb

    from training.config import TrainConfig
    from training.fit import FoldTrainer, lgbm_params
    from training.model import Preprocessor

    rng = np.random.default_rng(5)
    n = 3000
    dataset = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2024-01-01"),
            "customer_id": [f"c{i}" for i in range(n)],
            "days_since_last_event": rng.exponential(20, n),
            "events_30d": rng.poisson(3, n).astype(float),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    dataset["churned"] = (rng.random(n) < 1 / (1 + np.exp(2 - dataset["days_since_last_event"] / 15))).astype(int)  # fmt: skip
    pre = Preprocessor().fit(dataset)
    config = TrainConfig()
    trainer = FoldTrainer(dataset, pre, lgbm_params(config, pre), config)
    index = np.flatnonzero(rng.random(n) < 0.6)
    params = {**trainer.params, "verbosity": -1}
    own = lgb.train(params, trainer.rows(index), num_boost_round=20)
    subset = lgb.train(params, trainer.lgb_data.subset(index.tolist()), num_boost_round=20)
    x = pre.transform(dataset)
    np.testing.assert_array_equal(own.predict(x), subset.predict(x))
    assert own.num_trees() == 20
