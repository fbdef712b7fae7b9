"""The trained demo model: quality against the generator's truth, calibration, directions of
its drivers, reproducibility, MLflow logging and the champion gate."""

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
from training.fit import fit_churn_model
from training.pipeline import default_dates, plan_for, train_from_tables
from training.tracking import CHAMPION, force_promote, load_churn_model


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_demo(root / "data", DemoConfig(n_customers=20_000, seed=7))
    tables = load_tables(root / "data")
    path = config_path_for_data(root / "data")
    return root, tables, feature_config_from_file(path), train_config_from_file(path)


@pytest.fixture(scope="module")
def trained(demo):
    """A full training run on 20,000 demo customers; it becomes the champion."""
    root, tables, features, config = demo
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        truth = pd.read_parquet(root / "data" / "truth.parquet")
        first = train_from_tables(
            tables, features, config, log=lambda _: None, tracking_uri=uri, truth=truth
        )
    return uri, first


@pytest.fixture(scope="module")
def gate(small_champion, tmp_path_factory):
    """Two runs on the same small data in a fresh MLflow store: the first becomes champion."""
    root = tmp_path_factory.mktemp("gate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tables = small_champion.tables
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        first = train_from_tables(tables, features, config, log=lambda _: None, tracking_uri=uri)
        second = train_from_tables(tables, features, config, log=lambda _: None, tracking_uri=uri)
    return uri, first, second


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


def test_same_data_config_and_seed_give_the_same_model(small_champion):
    tables = small_champion.tables
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    dates = default_dates(tables, features, config)
    dataset, resolved = build_training_set(tables, dates, features)
    plan = plan_for(dataset, resolved.churn.horizon_days, config)
    a, ev_a, _ = fit_churn_model(dataset, plan, resolved, config)
    b, ev_b, _ = fit_churn_model(
        dataset.sample(frac=1.0, random_state=3).sort_values(["as_of", "customer_id"]),
        plan,
        resolved,
        config,
    )
    assert a.booster_text == b.booster_text
    assert ev_a.metrics == ev_b.metrics


def test_a_recency_rule_that_ranks_nobody_is_no_baseline(small_champion):
    """Monthly totals stamp every customer's last record at the same month end: the recency rule
    scored ROC AUC 0.5 with no probabilities and the gate said the model "beats" it. It is left
    out of the comparison, and the holdout says why."""
    from training.fit import RECENCY_RULE_LEFT_OUT

    tables = small_champion.tables
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    dates = default_dates(tables, features, config)
    dataset, resolved = build_training_set(tables, dates, features)
    dataset["days_since_last_event"] = 0.5  # as of a month's first instant, every customer
    plan = plan_for(dataset, resolved.churn.horizon_days, config)
    _, evaluation, _ = fit_churn_model(dataset, plan, resolved, config)
    assert "recency_rule" not in evaluation.holdout.metrics
    assert "logistic_regression" in evaluation.holdout.metrics
    assert RECENCY_RULE_LEFT_OUT in evaluation.holdout.notes


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


def test_the_champion_moves_only_for_a_better_model(gate):
    """The first run makes a champion: LightGBM (ahead of the baselines, or behind one within
    the holdout's noise), or the baseline registered after it when a baseline beat it beyond
    that noise. The same data and seed again give the same models: none of the second run's
    versions replaces that champion, and each says why (trained on the same dates, the champion
    cannot be compared on a holdout it learnt; training.gate.champion_holdout)."""
    uri, first, second = gate
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if first.promoted:
        assert first.promotion_reason.startswith("no champion yet; ")
        assert (
            "beats the baselines" in first.promotion_reason
            or "ahead within the holdout's noise" in first.promotion_reason
        )
        champion = first.version
    else:
        assert first.promotion_reason.startswith("loses to the baseline")
        assert first.simple is not None and first.simple.promoted
        champion = first.simple.version
    assert str(client.get_model_version_by_alias(DEMO_MODEL_NAME, CHAMPION).version) == champion
    assert not second.promoted
    assert second.simple is None or not second.simple.promoted
    for result in (second, second.simple):
        if result is not None:
            reason = client.get_model_version(DEMO_MODEL_NAME, result.version).tags[
                "not_promoted_because"
            ]
            assert (
                "does not beat" in reason
                or "loses to the baseline" in reason
                or "trained on the same dates, so nothing tells them apart" in reason
            ), reason


def test_an_analyst_can_force_a_promotion_with_a_reason(gate):
    uri, first, second = gate
    force_promote(second.version, "new pricing page launched", DEMO_MODEL_NAME, uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(DEMO_MODEL_NAME, CHAMPION)
    assert str(version.version) == second.version
    assert version.tags["promotion_reason"] == "forced: new pricing page launched"
    with pytest.raises(ValueError, match="has no version 99"):
        force_promote("99", "typo", DEMO_MODEL_NAME, uri)
    force_promote(first.version, "restore", DEMO_MODEL_NAME, uri)


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


def test_the_linear_share_is_chosen_on_the_selection_folds_only_for_a_clear_gain(
    small_champion, monkeypatch
):
    """The alternative share is taken where the selection folds' out-of-fold ROC AUC gains at
    least MIN_SHARE_GAIN (an order export whose hazard is log-linear: +0.003 at two cuts);
    otherwise, or without an alternative, the configured share stays and no fold is trained."""
    from dataclasses import replace

    from training import fit as fit_module
    from training.fit import FoldTrainer, choose_linear_share, configured_capacity, lgbm_params
    from training.model import Preprocessor

    tables = small_champion.tables
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    dataset, resolved = build_training_set(
        tables, default_dates(tables, features, config), features
    )
    plan = plan_for(dataset, resolved.churn.horizon_days, config)
    dataset = dataset[dataset["as_of"].isin(plan.dates)].reset_index(drop=True)
    pre = Preprocessor().fit(dataset)
    params = lgbm_params(config, pre, configured_capacity(config, len(dataset), 100, 100))
    trainer = FoldTrainer(dataset, pre, params, config)

    none = replace(config, linear_share_alternative=None)
    assert choose_linear_share(trainer, plan, none) is none and trainer.runs == {}
    lines: list[str] = []
    monkeypatch.setattr(fit_module, "MIN_SHARE_GAIN", -1.0)  # any difference is a gain
    assert choose_linear_share(trainer, plan, config, lines.append).linear_share == 0.5
    assert lines[0].startswith("linear share 0.5 (selection folds' ROC AUC: 0.25 -> 0.")
    monkeypatch.setattr(fit_module, "MIN_SHARE_GAIN", 1.0)  # no difference is enough
    assert choose_linear_share(trainer, plan, config).linear_share == 0.25
    assert trainer.config is config  # the trainer scores with the configured share again
    with pytest.raises(ValueError, match="linear_share_alternative must be at least 0"):
        replace(config, linear_share_alternative=1.5)


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
