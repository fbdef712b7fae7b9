"""Training time and peak memory: 1 million (customer, date) rows x about 100 features, 500 trees.

Target (issue 3): 3 minutes or less on 2 cores. The baseline, measured in the same run, is
LightGBM trained straight on a float32 numpy matrix with the same parameters: the ratio shows
what our preprocessing (fixed categories, pandas frames) and monotone constraints add.

    uv run python benchmarks/bench_training.py [--rows 1000000] [--features 100] [--trees 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def numeric_columns(rng: np.random.Generator, rows: int, n: int) -> dict[str, object]:
    """n feature columns in turn: counts, skewed recencies with 10 % NaN, and normal rates."""
    data: dict[str, object] = {}
    for i in range(n):
        kind = i % 3
        if kind == 0:
            data[f"count_{i}"] = rng.poisson(3.0, rows).astype("float64")
        elif kind == 1:
            values = rng.exponential(20.0, rows)
            values[rng.random(rows) < 0.1] = np.nan
            data[f"days_{i}"] = values
        else:
            data[f"rate_{i}"] = rng.normal(0.0, 1.0, rows)
    return data


def synthetic_training_set(rows: int, n_features: int, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like a training set: counts, recencies, rates, a few segments, 3 % churn."""
    rng = np.random.default_rng(seed)
    n_cat = 4
    data = numeric_columns(rng, rows, n_features - n_cat)
    for i in range(n_cat):
        data[f"segment_{i}"] = rng.choice(
            np.array([f"s{k}" for k in range(6 + 3 * i)], dtype=object), rows
        )
    frame = pd.DataFrame(data)
    names = list(frame.columns)
    logit = (
        -3.6
        + 0.3 * frame[names[1]].fillna(0) / 20
        - 0.2 * frame[names[0]] / 3
        + 0.4 * frame[names[2]]
    )
    frame["churned"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int8")
    frame.insert(
        0,
        "as_of",
        pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 12, rows) * 30, "D"),
    )
    frame.insert(1, "customer_id", rng.integers(0, rows // 10, rows).astype(str))
    return frame


def run_child(mode: str, rows: int, n_features: int, trees: int) -> dict:
    import lightgbm as lgb

    from training.config import TrainConfig
    from training.fit import lgbm_params
    from training.model import Preprocessor

    frame = synthetic_training_set(rows, n_features)
    config = TrainConfig(num_threads=2, monotone={"count_0": -1, "days_1": 1})
    started = time.perf_counter()
    if mode == "ours":
        pre = Preprocessor().fit(frame)
        dataset = lgb.Dataset(pre.transform(frame), frame["churned"].to_numpy())
        booster = lgb.train(lgbm_params(config, pre), dataset, num_boost_round=trees)
    else:
        numeric = frame.drop(columns=["as_of", "customer_id", "churned"]).select_dtypes("number")
        matrix = numeric.to_numpy(dtype=np.float32)
        params = {
            k: v
            for k, v in lgbm_params(config, Preprocessor().fit(numeric)).items()
            if k != "monotone_constraints"
        }
        booster = lgb.train(
            params, lgb.Dataset(matrix, frame["churned"].to_numpy()), num_boost_round=trees
        )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "seconds": seconds, "peak_mb": peak_mb, "trees": booster.num_trees()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.rows, args.features, args.trees)))
        return
    results = {}
    for mode in ("baseline", "ours"):
        print(
            f"running {mode} ({args.rows:,} rows x {args.features} features, {args.trees} trees) ...",
            flush=True,
        )
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--rows", str(args.rows), "--features", str(args.features),
             "--trees", str(args.trees)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base, ours = results["baseline"], results["ours"]
    print()
    print(f"{'':28}{'time (s)':>10}{'peak RSS (MB)':>16}")
    print(f"{'LightGBM on numpy (baseline)':28}{base['seconds']:>10.1f}{base['peak_mb']:>16.0f}")
    print(f"{'churn training (ours)':28}{ours['seconds']:>10.1f}{ours['peak_mb']:>16.0f}")
    print(
        f"ratio ours / baseline: time {ours['seconds'] / base['seconds']:.2f}x, memory {ours['peak_mb'] / base['peak_mb']:.2f}x"
    )
    print(f"target: <= 180 s -> {'met' if ours['seconds'] <= 180 else 'NOT met'}")


if __name__ == "__main__":
    main()
