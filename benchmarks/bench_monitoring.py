"""Benchmark: monitoring 52 weekly partitions of 100,000 customers (issue 16).

    uv run python benchmarks/bench_monitoring.py [--customers 200000] [--partitions 52]
                                                 [--events-per-customer 10] [--reference-only]

Target: serving.monitoring_job.run_monitoring over 52 partitions of 100,000 customers in under
a minute on this machine (2 cores): for each partition drift of every feature and of the score
against the model's reference distributions (PSI, KS or chi-squared, missing shares), CBPE with
200 simulated label sets, and, for the partitions whose 30-day horizon has passed, the labels
(features.labels) and realized metrics by risk band and segment.

Data: the demo at --customers (the same cached folders as bench_spark.py and bench_batch.py):
200,000 demo customers, of whom about 100,000 are customers on the data's last day.
Model: trained on 3,000 demo customers without MLflow (cached in benchmarks/.data/). The
partitions are written once (cached): the features of the customers eligible on the data's
last day, with a few columns shifted a little more every week so that the drift differs per
partition, and the model's probabilities; run dates are the 52 weeks up to the data's end, so
the last four or five are not matured. Measured: load_tables, then run_monitoring with no
previous monitoring file (everything examined), then a second call (nothing to re-examine).
Wall and CPU seconds are both reported: on a shared machine the wall time includes waiting.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_spark import data_dir  # noqa: E402  (same data as the Spark benchmark)

CACHE = HERE / ".data"
TARGET_SECONDS = 60.0


def small_model():
    """A model with reference distributions, trained on 3,000 demo customers (cached)."""
    path = CACHE / "monitoring_model.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from features.config import config_path_for_data, feature_config_from_file
    from features.io import load_tables
    from ingest.demo_data import DemoConfig, write_demo
    from training.config import train_config_from_file
    from training.pipeline import fit_from_tables

    folder = CACHE / "monitoring_train"
    if not (folder / "customers.parquet").exists():
        write_demo(folder, DemoConfig(n_customers=3000, seed=11))
    config_path = config_path_for_data(folder)
    fitted = fit_from_tables(
        load_tables(folder),
        feature_config_from_file(config_path),
        train_config_from_file(config_path),
        log=lambda _: None,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(fitted.model))
    return fitted.model


def write_partitions(data: Path, model, partitions: int, customers: int) -> Path:
    """The weekly partitions (cached): see the module docstring."""
    import numpy as np
    import pandas as pd

    from features.io import load_tables
    from features.signals import build_features
    from serving.batch import partition_path

    root = CACHE / f"monitoring_scores_{customers}_{partitions}"
    if (root / "done").exists():
        return root
    tables = load_tables(data)
    end = tables.data_end().normalize()
    features = build_features(tables, end, model.features_config())
    probability = model.predict_proba(features)
    bands = model.risk_band(probability)
    shifted = [c for c in ("events_30d", "revenue_30d", "tenure_days") if c in features]
    for k in range(partitions):
        as_of = end - pd.Timedelta(weeks=partitions - 1 - k)
        frame = features.copy()
        for column in shifted:
            frame[column] = frame[column] * (1 + 0.01 * k)
        folder = partition_path(root, as_of)
        folder.mkdir(parents=True, exist_ok=True)
        scores = pd.DataFrame(
            {
                "customer_id": frame["customer_id"].astype("str"),
                "churn_probability": np.clip(probability * (1 + 0.005 * k), 0, 1),
                "risk_band": bands,
            }
        )
        scores.to_parquet(folder / "scores.parquet", index=False)
        frame.to_parquet(folder / "features.parquet", index=False)
        info = {"as_of": str(as_of.date()), "model_version": "1", "model_name": "bench"}
        (folder / "run.json").write_text(json.dumps(info))
    (root / "done").write_text("")
    return root


def reference_cost(rows: int = 200_000, features: int = 80, dates: int = 13) -> dict:
    """What the training dates' own drift (training.reference.dates_psi) adds to building a
    model's reference profile: build_reference on the same rows with their observation dates
    and without them (the baseline: no per-date PSI), timed in the same run. Synthetic rows of
    the reference's largest size (REFERENCE_MAX_ROWS, 13 weekly dates of the last 90 days)."""
    import numpy as np
    import pandas as pd

    from training.reference import build_reference

    rng = np.random.default_rng(0)
    names = [f"f{k}" for k in range(features)]
    frame = pd.DataFrame(rng.lognormal(size=(rows, features)), columns=names)
    frame.iloc[rng.random(rows) < 0.2, 0] = np.nan
    frame["as_of"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        7 * rng.integers(0, dates, rows), "D"
    )
    probability = rng.uniform(0.01, 0.5, rows)
    timings = {}
    for name, data in (("without_dates", frame.drop(columns="as_of")), ("with_dates", frame)):
        started = time.perf_counter()
        reference = build_reference(data, names, [], probability)
        timings[name] = time.perf_counter() - started
    return {
        "reference_rows": rows,
        "reference_features": features,
        "reference_dates": dates,
        "build_reference_s": round(timings["without_dates"], 2),
        "with_dates_psi_s": round(timings["with_dates"], 2),
        "ratio": round(timings["with_dates"] / timings["without_dates"], 2),
        "dates_psi_profiles": len(reference.dates_psi),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=52)
    parser.add_argument("--events-per-customer", type=float, default=10)
    parser.add_argument(
        "--reference-only",
        action="store_true",
        help="only time building a reference profile with and without per-date PSI",
    )
    args = parser.parse_args()
    if args.reference_only:
        print(json.dumps(reference_cost(), indent=1))
        return

    from features.io import load_tables
    from serving.monitoring_job import MONITORING_FILE, run_monitoring

    data = data_dir(args.customers, args.events_per_customer)
    model = small_model()
    scores = write_partitions(data, model, args.partitions, args.customers)
    (scores / MONITORING_FILE).unlink(missing_ok=True)

    started = time.perf_counter()
    tables = load_tables(data)
    loaded = time.perf_counter() - started

    started, cpu = time.perf_counter(), time.process_time()
    result = run_monitoring(tables, scores, lambda info: (model, "1"), log=lambda _: None)
    first, first_cpu = time.perf_counter() - started, time.process_time() - cpu

    started = time.perf_counter()
    again = run_monitoring(tables, scores, lambda info: (model, "1"), log=lambda _: None)
    second = time.perf_counter() - started

    matured = sum(e["matured"] for e in result.entries)
    rows = sum(e["customers"] for e in result.entries)
    figures = {
        "partitions": len(result.entries),
        "matured": matured,
        "customers_per_partition": rows // max(len(result.entries), 1),
        "features": len(model.reference.features),
        "load_tables_s": round(loaded, 1),
        "monitoring_s": round(first, 1),
        "monitoring_cpu_s": round(first_cpu, 1),  # below the wall time on a busy machine
        "per_partition_s": round(first / max(len(result.entries), 1), 2),
        "rerun_s": round(second, 2),
        "rerun_examined": len(again.computed),
        "target_s": TARGET_SECONDS,
        "met": first < TARGET_SECONDS,
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
