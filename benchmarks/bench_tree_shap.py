"""TreeSHAP contributions: LightGBM `pred_contrib=True` vs `training.tree_shap.TreeShapExplainer`.

A binary model like the production one (num_leaves 15, ~220 trees, numeric features with NaNs
and a few pandas categoricals, weak signal so trees grow deep and unbalanced) is trained on
random rows, then both implementations explain the same scoring rows. Prints CPU and wall
seconds, µs per row, the CPU ratio and the largest absolute difference. Compare CPU seconds:
LightGBM runs on all cores, the numpy code mostly on one.

    uv run python benchmarks/bench_tree_shap.py [--train-rows 50000] [--rows 100000]
                                                [--features 75] [--trees 220] [--block-bits 10]
"""

from __future__ import annotations

import argparse
import os
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from bench_training import numeric_columns  # benchmarks/ is on the path when run as a script

from training.model import lightgbm_matrix
from training.tree_shap import TreeShapExplainer

N_CATEGORICAL = 4


def synthetic_frame(rows: int, n_features: int, seed: int) -> pd.DataFrame:
    """Numeric columns (counts, skewed values with 10 % NaN, normals) and a few categoricals."""
    rng = np.random.default_rng(seed)
    data = numeric_columns(rng, rows, n_features - N_CATEGORICAL)
    for i in range(N_CATEGORICAL):
        levels = [f"s{k}" for k in range(3 + 3 * i)]
        data[f"segment_{i}"] = pd.Categorical(rng.choice(levels, rows), categories=levels)
    return pd.DataFrame(data)


def labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A weak, partly non-linear signal: trees end up deep and lopsided."""
    rng = np.random.default_rng(seed)
    x = frame.select_dtypes("number").fillna(0.0).to_numpy()
    score = 0.3 * x[:, 0] - 0.02 * x[:, 1] + 0.5 * np.sin(x[:, 2]) + 0.2 * x[:, 3] * x[:, 5]
    score += 0.4 * (frame["segment_1"].cat.codes.to_numpy() % 2)
    return (score + rng.logistic(size=len(frame)) > 1.5).astype(int)


def depths(node: dict, depth: int = 0) -> list[int]:
    if "split_index" not in node:
        return [depth]
    return depths(node["left_child"], depth + 1) + depths(node["right_child"], depth + 1)


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=75)
    parser.add_argument("--trees", type=int, default=220)
    parser.add_argument("--block-bits", type=int, nargs="+", default=[10, 12])
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}  load average: {os.getloadavg()}")

    train = synthetic_frame(args.train_rows, args.features, seed=0)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.05,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.8,
        "verbose": -1,
    }
    booster, cpu, wall = timed(
        lambda: lgb.train(params, lgb.Dataset(train, labels(train, 1)), args.trees)
    )
    leaf_depths = [
        d for t in booster.dump_model()["tree_info"] for d in depths(t["tree_structure"])
    ]
    print(
        f"model: {booster.num_trees()} trees, leaf depth mean {np.mean(leaf_depths):.1f} "
        f"max {max(leaf_depths)}  (trained in {wall:.1f} s)"
    )

    X = lightgbm_matrix(synthetic_frame(args.rows, args.features, seed=2))
    reference, ref_cpu, ref_wall = timed(lambda: booster.predict(X, pred_contrib=True))
    n = len(X)
    print(f"\n{'method':<28}{'cpu s':>9}{'wall s':>9}{'cpu µs/row':>12}{'wall µs/row':>13}")
    print(
        f"{'lightgbm pred_contrib':<28}{ref_cpu:>9.2f}{ref_wall:>9.2f}"
        f"{ref_cpu / n * 1e6:>12.1f}{ref_wall / n * 1e6:>13.1f}"
    )
    for bits in args.block_bits:
        explainer, build_cpu, _ = timed(lambda b=bits: TreeShapExplainer(booster, block_bits=b))
        ours, cpu, wall = timed(lambda e=explainer: e.contributions(X))
        diff = float(np.abs(ours - reference).max())
        label = f"tree_shap (block_bits={bits})"
        print(
            f"{label:<28}{cpu:>9.2f}{wall:>9.2f}{cpu / n * 1e6:>12.1f}{wall / n * 1e6:>13.1f}"
            f"   cpu ratio {ref_cpu / cpu:.1f}x  max |diff| {diff:.2e}"
            f"  build {build_cpu:.2f} s cpu, tables {explainer.plan.table.nbytes / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
