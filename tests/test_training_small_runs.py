"""Training runs on the session's small demo data (conftest.small_champion): the same data,
config and seed give the same model; a recency rule that ranks nobody is no baseline; the
linear share is chosen on the selection folds; the champion gate over two runs.
Apart from test_training_model.py so that the two files' trainings run on separate cores."""

from __future__ import annotations

import shutil

import pytest
from mlflow import MlflowClient

from features.config import config_path_for_data, feature_config_from_file
from features.dataset import build_training_set
from ingest.demo_data import DEMO_MODEL_NAME
from training.config import train_config_from_file
from training.fit import fit_churn_model
from training.pipeline import default_dates, plan_for, train_from_tables
from training.tracking import CHAMPION, force_promote


@pytest.fixture(scope="module")
def gate(small_champion, tmp_path_factory):
    """Two runs on the same small data in a fresh MLflow store: the first, the session's small
    champion (a copy of its store as it was trained), then a second run into that copy."""
    root = tmp_path_factory.mktemp("gate") / "store"
    shutil.copytree(small_champion.store_as_trained, root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # the MLflow store's relative artifact paths
        second = train_from_tables(
            small_champion.tables, features, config, log=lambda _: None, tracking_uri=uri
        )
    return uri, small_champion.result, second


@pytest.fixture(scope="module")
def full_training_set(small_champion):
    """The small demo's training rows at its default dates, built once for the module."""
    tables = small_champion.tables
    path = config_path_for_data(small_champion.data_dir)
    features, config = feature_config_from_file(path), train_config_from_file(path)
    dataset, resolved = build_training_set(
        tables, default_dates(tables, features, config), features
    )
    return dataset, resolved, config


@pytest.fixture(scope="module")
def training_set(full_training_set):
    """Those of every third customer (1,000): for claims that hold at any size (a fit of all
    the rows takes half a minute of CI)."""
    full, resolved, config = full_training_set
    ids = full["customer_id"].drop_duplicates().sort_values()
    return full[full["customer_id"].isin(ids.iloc[::3])].reset_index(drop=True), resolved, config


def test_same_data_config_and_seed_give_the_same_model(training_set):
    """Rows in another order train the same trees."""
    dataset, resolved, config = training_set
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


def test_a_recency_rule_that_ranks_nobody_is_no_baseline(training_set):
    """Monthly totals stamp every customer's last record at the same month end: the recency rule
    scored ROC AUC 0.5 with no probabilities and the gate said the model "beats" it. It is left
    out of the comparison, and the holdout says why."""
    from training.fit import RECENCY_RULE_LEFT_OUT

    dataset, resolved, config = training_set
    dataset = dataset.assign(
        days_since_last_event=0.5
    )  # as of a month's first instant, every customer
    plan = plan_for(dataset, resolved.churn.horizon_days, config)
    _, evaluation, _ = fit_churn_model(dataset, plan, resolved, config)
    assert "recency_rule" not in evaluation.holdout.metrics
    assert "logistic_regression" in evaluation.holdout.metrics
    assert RECENCY_RULE_LEFT_OUT in evaluation.holdout.notes


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


def test_a_version_keeps_the_fingerprint_of_the_data_it_was_trained_on(gate, small_champion):
    """What tells a retrain on corrected data (the same dates, other tables) from a rerun on
    the same data: the champion's fingerprint, read back from its run."""
    from training.tracking import champion_fingerprint, data_fingerprint

    uri, first, second = gate
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    expected = data_fingerprint(small_champion.tables)
    assert champion_fingerprint(client, DEMO_MODEL_NAME, first.version) == expected
    assert champion_fingerprint(client, DEMO_MODEL_NAME, second.version) == expected
    assert champion_fingerprint(client, DEMO_MODEL_NAME, "999") is None


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


def test_the_linear_share_is_chosen_on_the_selection_folds_only_for_a_clear_gain(
    full_training_set, monkeypatch
):
    """The alternative share is taken where the selection folds' out-of-fold ROC AUC gains at
    least MIN_SHARE_GAIN (an order export whose hazard is log-linear: +0.003 at two cuts);
    otherwise, or without an alternative, the configured share stays and no fold is trained."""
    from dataclasses import replace

    from training import fit as fit_module
    from training.fit import FoldTrainer, choose_linear_share, configured_capacity, lgbm_params
    from training.model import Preprocessor

    dataset, resolved, config = full_training_set
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
