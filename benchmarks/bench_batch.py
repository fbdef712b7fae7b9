"""Benchmark: the weekly job (`churn score`) for a million customers on this machine.

    uv run python benchmarks/bench_batch.py [--customers 1000000] [--events-per-customer 10]
                                            [--chunk-rows 100000]

Target: scores and drivers for 1,000,000 customers in under 5 minutes on 2 cores, with memory
bounded by scoring in chunks.

Data: ingest.demo_data at --customers with the activity scaled to --events-per-customer (as
bench_spark.py; cached in benchmarks/.data/spark_<customers>_<events>/). Model: a champion
trained on 3,000 demo customers (cached in benchmarks/.data/batch_model/, MLflow SQLite).

Each measurement runs in a fresh process (peak RSS is that process's own):

* ``job``: load_tables, then serving.batch.run_scoring for two run dates a week apart (the
  first has no previous partition; the second, the steady state of a weekly job, also explains
  the previous run's features with the current model for "drivers that moved", which doubles
  the pred_contrib work). Stage times come from the job's own progress lines.
* ``bare``: the same load_tables and build_features, then LightGBM's plain predict of the
  probability (no drivers, no comparison, no report) and one Parquet file: the least a scoring
  job can do, as the baseline measured in the same run.

Peak memory of each stage is sampled every 0.1 s with psutil (RSS of the process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_spark import data_dir  # noqa: E402  (same data as the Spark benchmark)

CACHE = HERE / ".data"
MARK = "@@BATCHBENCH@@"
TARGET_SECONDS = 300.0
RUN_DATES = ("2024-12-01", "2024-12-08")


class PeakSampler:
    """Peak RSS of this process while a block runs, sampled every 0.1 s."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.1)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def model_uri() -> str:
    """A champion trained once on 3,000 demo customers; returns the MLflow tracking URI."""
    workdir = CACHE / "batch_model"
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    if (workdir / "done").is_file():
        return uri
    from features.config import config_path_for_data, feature_config_from_file
    from features.io import load_tables
    from ingest.demo_data import DemoConfig, write_demo
    from training.config import train_config_from_file
    from training.pipeline import train_from_tables

    workdir.mkdir(parents=True, exist_ok=True)
    print(f"training a champion on 3,000 demo customers in {workdir} ...", flush=True)
    write_demo(workdir / "data", DemoConfig(n_customers=3000, seed=7))
    path = config_path_for_data(workdir / "data")
    cwd = os.getcwd()
    os.chdir(workdir)  # MLflow's artifacts land beside its database
    try:
        train_from_tables(
            load_tables(workdir / "data"), feature_config_from_file(path),
            train_config_from_file(path), log=lambda _: None, tracking_uri=uri,
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    (workdir / "done").write_text("trained\n")
    return uri


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints its figures as one JSON line."""
    import pandas as pd

    from features.io import load_tables
    from ingest.demo_data import DEMO_MODEL_NAME
    from training.tracking import load_champion

    champion = load_champion(DEMO_MODEL_NAME, args.uri)
    model = champion.model
    result: dict = {"stages": {}}
    with PeakSampler() as peak:
        started = time.perf_counter()
        tables = load_tables(args.data)
        result["stages"]["load_tables"] = (time.perf_counter() - started, peak.mb)
    result["events"] = len(tables.activity)
    out = Path(args.out)

    if args.child == "bare":
        from features.signals import build_features

        with PeakSampler() as peak:
            t0 = time.perf_counter()
            features = build_features(tables, RUN_DATES[-1], model.features_config())
            t1 = time.perf_counter()
            probability = model.predict_proba(features)
            t2 = time.perf_counter()
            pd.DataFrame(
                {"customer_id": features["customer_id"], "churn_probability": probability}
            ).to_parquet(out / "bare.parquet", index=False)
            t3 = time.perf_counter()
        result["customers"] = len(features)
        result["stages"]["features"] = (t1 - t0, None)
        result["stages"]["predict (probability only)"] = (t2 - t1, None)
        result["stages"]["write"] = (t3 - t2, None)
        result["run_seconds"] = t3 - t0
        result["run_peak_mb"] = peak.mb
    else:
        from serving.batch import run_scoring

        for i, run_date in enumerate(RUN_DATES):
            marks: list[tuple[str, float]] = []

            def log(message: str, marks: list = marks) -> None:
                marks.append((message, time.perf_counter()))
                if "scored" in message:
                    print(f"    {message}", file=sys.stderr, flush=True)

            with PeakSampler() as peak:
                t0 = time.perf_counter()
                run = run_scoring(
                    tables, run_date, model, champion.version, out / "scores",
                    chunk_rows=args.chunk_rows, log=log,
                )  # fmt: skip
                t_end = time.perf_counter()
            scored_at = [t for m, t in marks if m.startswith("  scored")]
            first_score = next(t for m, t in marks if m.startswith("scoring"))
            label = "run 1 (no previous)" if i == 0 else "run 2 (with previous)"
            result["stages"][f"{label}: features"] = (first_score - t0, None)
            result["stages"][f"{label}: scores + drivers"] = (scored_at[-1] - first_score, None)
            result["stages"][f"{label}: report + write"] = (t_end - scored_at[-1], None)
            result["stages"][f"{label}: whole run"] = (t_end - t0, peak.mb)
            result["customers"] = int(run.summary["customers_scored"])
            result[f"run{i + 1}_seconds"] = t_end - t0
            result[f"run{i + 1}_peak_mb"] = peak.mb
            sizes = sum(f.stat().st_size for f in Path(run.partition).iterdir())
            result[f"run{i + 1}_partition_mb"] = sizes / 2**20
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(MARK + json.dumps(result), flush=True)


def measure(kind: str, data: Path, uri: str, chunk_rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as out:
        cmd = [
            sys.executable, __file__, "--child", kind, "--data", str(data), "--uri", uri,
            "--out", out, "--chunk-rows", str(chunk_rows),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"the {kind} measurement failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(MARK) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events-per-customer", type=float, default=10.0)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--child", choices=["job", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    data = data_dir(args.customers, args.events_per_customer)
    uri = model_uri()
    print(f"data: {data}; model: {uri}; chunk rows {args.chunk_rows:,}; {os.cpu_count()} CPUs")
    started = time.perf_counter()
    job = measure("job", data, uri, args.chunk_rows)
    bare = measure("bare", data, uri, args.chunk_rows)
    load = os.getloadavg()[0]

    print(
        f"\n{job['customers']:,} customers scored as of {RUN_DATES[-1]}, "
        f"{job['events']:,} activity events in the data"
    )
    print(f"{'':46}{'wall s':>8}{'peak RSS MB':>13}")
    for title, figures in (("weekly job (run_scoring)", job), ("bare baseline", bare)):
        print(title)
        for stage, (seconds, mb) in figures["stages"].items():
            mem = f"{mb:13,.0f}" if mb is not None else ""
            print(f"  {stage:44}{seconds:8.1f}{mem}")
    steady = job["run2_seconds"]
    print(
        f"\nweekly run with drivers and comparison: {steady:.1f} s for {job['customers']:,} "
        f"customers ({job['customers'] / steady:,.0f} customers/s); target < {TARGET_SECONDS:.0f} s: "
        + ("met" if steady < TARGET_SECONDS else "MISSED")
    )
    print(
        f"ratio to the bare baseline (features + plain predict + write): "
        f"{steady / bare['run_seconds']:.2f}x time, "
        f"{job['run2_peak_mb'] / bare['run_peak_mb']:.2f}x peak memory "
        f"({job['run2_peak_mb']:,.0f} / {bare['run_peak_mb']:,.0f} MB)"
    )
    print(
        f"loading the tables: {job['stages']['load_tables'][0]:.1f} s, "
        f"{job['stages']['load_tables'][1]:,.0f} MB (not in the run figures); partition on disk "
        f"{job['run2_partition_mb']:,.0f} MB"
    )
    print(
        f"load average at the end {load:.1f}; benchmark took {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
