"""training.tree_shap must reproduce LightGBM's pred_contrib (path-dependent TreeSHAP) exactly."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.signals import build_features
from training.model import lightgbm_matrix
from training.tree_shap import TreeShapExplainer, shapley_terms

TOLERANCE = 1e-9
LEVELS = ["a", "b", "c", "d", "e", "f", "g"]


def random_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x0": rng.normal(size=rows),
            "x1": rng.exponential(3.0, rows),
            "x2": rng.poisson(2.0, rows).astype("float64"),  # many exact zeros
            "x3": rng.uniform(-1, 1, rows),
            "seg": pd.Categorical(rng.choice(LEVELS, rows), categories=LEVELS),
            "x5": rng.normal(size=rows),
        }
    )
    for col in ("x0", "x1", "x5"):
        frame.loc[rng.random(rows) < 0.15, col] = np.nan
    frame.loc[rng.random(rows) < 0.05, "seg"] = np.nan
    return frame


def random_labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = frame[["x0", "x1", "x2", "x3"]].fillna(0.0).to_numpy()
    seg = frame["seg"].cat.codes.to_numpy()
    # a sine of x0 forces repeated splits on x0 along one path
    score = np.sin(3 * x[:, 0]) + 0.3 * x[:, 1] - 0.5 * x[:, 2] + x[:, 3] + np.isin(seg, [1, 4])
    return (score + rng.logistic(size=len(frame)) > 0.8).astype(int)


def train(params: dict, rounds: int = 40, rows: int = 3000) -> tuple[lgb.Booster, np.ndarray]:
    frame = random_frame(rows, seed=0)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, **params},
        lgb.Dataset(frame, random_labels(frame, seed=1)),
        rounds,
    )
    return booster, scoring_rows()


def scoring_rows() -> np.ndarray:
    """Fresh rows, with NaNs everywhere, unseen/negative/fractional categories and edge values."""
    X = lightgbm_matrix(random_frame(700, seed=2))
    X[:20, 4] = 9.0  # category never seen in training
    X[20:30, 4] = -1.0
    X[30:40, 4] = 2.7  # truncated to 2, as LightGBM's static_cast<int>
    X[40:50, 4] = 1e12  # beyond int: goes right
    X[50:60, :] = np.nan
    X[60:70, :] = 0.0
    X[70:80, 0] = 1e-36  # below kZeroThreshold: read as zero
    X[80:90, 1] = -1e-40
    X[90:100, 3] = np.inf
    return X


def assert_same(booster: lgb.Booster, X: np.ndarray, **kwargs) -> TreeShapExplainer:
    explainer = TreeShapExplainer(booster, **kwargs)
    expected = booster.predict(X, pred_contrib=True)
    got = explainer.contributions(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    return explainer


def max_repeats(booster: lgb.Booster) -> int:
    """Largest number of splits on one feature along one root-to-leaf path."""

    def walk(node: dict, seen: tuple[int, ...]) -> int:
        if "split_index" not in node:
            return max((seen.count(f) for f in set(seen)), default=0)
        seen = (*seen, node["split_feature"])
        return max(walk(node["left_child"], seen), walk(node["right_child"], seen))

    return max(walk(t["tree_structure"], ()) for t in booster.dump_model()["tree_info"])


def test_shapley_terms_match_brute_force_shapley_values():
    """The closed form equals the Shapley values of the path game v(S) = prod over the leaf's
    features of (o_j if j in S else z_j), times the leaf value."""
    from itertools import combinations
    from math import factorial

    rng = np.random.default_rng(5)
    d = 4
    zeros = rng.uniform(0.1, 0.9, d)
    ones = rng.integers(0, 2, (6, d)).astype(float)
    got = shapley_terms(ones, zeros, 1.7)
    for row, o in zip(got, ones, strict=True):

        def game(subset, o=o):
            return 1.7 * np.prod([o[j] if j in subset else zeros[j] for j in range(d)])

        for i in range(d):
            others = [j for j in range(d) if j != i]
            phi = sum(
                factorial(k) * factorial(d - k - 1) / factorial(d) * (game({*s, i}) - game(set(s)))
                for k in range(d)
                for s in combinations(others, k)
            )
            assert row[i] == pytest.approx(phi, abs=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"num_leaves": 15}, id="default"),
        pytest.param({"num_leaves": 31, "max_depth": 10, "min_data_in_leaf": 5}, id="deep"),
        pytest.param({"num_leaves": 15, "zero_as_missing": True}, id="zero-as-missing"),
        pytest.param(
            {"num_leaves": 15, "monotone_constraints": [1, 1, -1, 1, 0, 0]}, id="monotone"
        ),
        pytest.param({"num_leaves": 15, "use_missing": False}, id="no-missing-handling"),
        pytest.param(
            {"num_leaves": 15, "max_cat_to_onehot": 8, "min_data_per_group": 5}, id="one-hot-cat"
        ),
    ],
)
def test_equal_to_lightgbm_pred_contrib(params):
    booster, X = train(params)
    explainer = assert_same(booster, X)
    assert explainer.plan.table.size > 0


def test_model_has_repeated_splits_deep_paths_and_categorical_splits():
    """Guard that the fixtures exercise what they claim to."""
    booster, _ = train({"num_leaves": 31, "max_depth": 10, "min_data_in_leaf": 5})
    dump = booster.dump_model()
    assert max_repeats(booster) >= 3
    assert any("==" in str(t) for t in dump["tree_info"])  # categorical splits
    assert any("'NaN'" in str(t) for t in dump["tree_info"])  # NaN-aware splits


@pytest.mark.parametrize("block_bits", [1, 4, 12])
def test_block_size_does_not_change_values(block_bits):
    booster, X = train({"num_leaves": 31, "max_depth": 10, "min_data_in_leaf": 5}, rounds=15)
    assert_same(booster, X, block_bits=block_bits, chunk_rows=100)


def test_leaves_too_deep_to_tabulate_are_computed_per_row():
    booster, X = train({"num_leaves": 31, "max_depth": 10, "min_data_in_leaf": 5}, rounds=15)
    explainer = assert_same(booster, X, block_bits=2, max_bits=3)
    assert explainer.plan.direct


def test_single_leaf_model_gives_only_the_bias():
    booster, X = train({"min_data_in_leaf": 10_000}, rounds=5)
    assert all(t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"])
    explainer = assert_same(booster, X)
    assert np.all(explainer.contributions(X)[:, :-1] == 0)


def test_row_count_edge_cases():
    booster, X = train({"num_leaves": 7}, rounds=5)
    explainer = TreeShapExplainer(booster, chunk_rows=64)
    assert explainer.contributions(X[:0]).shape == (0, X.shape[1] + 1)
    np.testing.assert_allclose(
        explainer.contributions(X[:1]), booster.predict(X[:1], pred_contrib=True), atol=TOLERANCE
    )
    np.testing.assert_allclose(
        explainer.contributions(X[:129]),
        booster.predict(X[:129], pred_contrib=True),
        atol=TOLERANCE,
    )
    with pytest.raises(ValueError, match="columns"):
        explainer.contributions(X[:, :3])


def test_multiclass_is_refused_clearly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(X, rng.integers(0, 3, 300)),
        3,
    )
    with pytest.raises(ValueError, match="multiclass"):
        TreeShapExplainer(booster)


def test_linear_trees_are_refused_clearly():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    booster = lgb.train(
        {"objective": "binary", "linear_tree": True, "verbose": -1},
        lgb.Dataset(X, (X[:, 0] > 0).astype(int)),
        3,
    )
    with pytest.raises(ValueError, match="linear"):
        TreeShapExplainer(booster)


def test_equal_on_the_project_lightgbm_model(small_champion):
    model = small_champion.lightgbm
    features = build_features(small_champion.tables, "2024-12-01", model.features_config())
    frame = model.preprocessor.transform(features)
    X = lightgbm_matrix(frame)
    expected = model.booster.predict(frame, pred_contrib=True)
    got = TreeShapExplainer(model.booster).contributions(X)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(
        got, model.tree_contributions(features).to_numpy(), rtol=0, atol=TOLERANCE
    )


def test_table_budget_shrinks_blocks_and_keeps_values():
    booster, X = train({"num_leaves": 31, "max_depth": 10, "min_data_in_leaf": 5}, rounds=15)
    explainer = assert_same(booster, X, block_bits=12, max_table_mb=0.5)
    assert explainer.block_bits < 12
    assert explainer.plan.table.nbytes <= 0.5e6 or explainer.block_bits <= 4
