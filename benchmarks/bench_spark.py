"""Benchmark: the pandas engine against Spark local[2] on the same data, same work.

    uv sync --extra spark
    uv run python benchmarks/bench_spark.py [--customers 200000] [--events-per-customer 10]
                                            [--dates 3] [--buckets 4] [--driver-memory 4g]

The issue's size is 1,000,000 customers and 10,000,000 activity events (``--customers 1000000``,
the default ten events per customer). Generating that and running both engines takes a good
20 minutes on this 2-core machine, so the default is 200,000 customers (about 2 million events;
5-8 minutes in all, plus about a minute to generate the data the first time).

The data is ingest.demo_data with the activity rate scaled to --events-per-customer (the
generator also writes about 12 revenue rows and 4 feedback rows per customer), cached in
benchmarks/.data/spark_<customers>_<events>/ (git-ignored). Three workloads, each engine in a
fresh process:

* ``features``: features as of one date for every eligible customer (the weekly job's step):
  pandas = ``load_tables`` + ``build_features`` + Parquet; Spark = ``spark_features``.
* ``dataset``: a training set over --dates observation dates 30 days apart:
  pandas = ``load_tables`` + ``write_training_set``; Spark = ``spark_training_set``.
* ``score``: the weekly job as of --as-of with the champion of bench_batch.py (first run, no
  previous partition): pandas = ``load_tables`` + ``run_scoring``; Spark = ``spark_run_scoring``.

Measured per run: wall time of the process (Spark: also the session start alone, which is a
fixed cost of about 10-20 s), and the peak resident memory of the whole process tree (the
Python process, and for Spark the JVM and the Python workers), sampled every 0.1 s with psutil.
The sum of RSS counts pages shared between forked Python workers more than once, so Spark's
figure is an upper bound. After both runs the outputs are compared row by row (same rows,
values within 1e-9); the exit status is 1 if they differ.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".data"
MARK = "@@SPARKBENCH@@"
DEFAULT_EVENTS_RATE = 0.24  # DemoConfig's events_per_active_day: about 96 events per customer
DEFAULT_EVENTS_PER_CUSTOMER = 96.0


def data_dir(customers: int, events: float) -> Path:
    """Generate (once) the demo data at this size; returns its folder."""
    from ingest.demo_data import DemoConfig, write_demo

    folder = CACHE / f"spark_{customers}_{events:g}"
    if not (folder / "customers.parquet").exists():
        rate = DEFAULT_EVENTS_RATE * events / DEFAULT_EVENTS_PER_CUSTOMER
        started = time.perf_counter()
        print(f"generating {customers:,} customers, ~{events:g} events each -> {folder}")
        write_demo(folder, DemoConfig(n_customers=customers, events_per_active_day=rate))
        print(f"  generated in {time.perf_counter() - started:.0f}s")
    return folder


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints its figures as one JSON line."""
    import pandas as pd

    from features.config import config_for_data
    from features.dataset import observation_dates

    started = time.perf_counter()
    result: dict = {}
    config = config_for_data(args.data)
    as_of = pd.Timestamp(args.as_of)
    dates = observation_dates(as_of - pd.Timedelta(days=30 * (args.dates - 1)), as_of, 30)
    if args.engine == "pandas":
        from features.dataset import write_training_set
        from features.io import load_tables
        from features.signals import build_features

        tables = load_tables(args.data)
        result["load_s"] = time.perf_counter() - started
        if args.workload == "score":
            from serving.batch import run_scoring

            model, version = scoring_model()
            run = run_scoring(tables, as_of, model, version, args.out, log=lambda _: None)
            result["rows"] = run.summary["customers_scored"]
        elif args.workload == "features":
            frame = build_features(tables, as_of, config)
            frame.to_parquet(args.out, index=False)
            result["rows"] = len(frame)
        else:
            result["rows"], _ = write_training_set(tables, dates, args.out, config)
    else:
        from features.spark_engine import get_spark, spark_features, spark_training_set

        spark = get_spark("local[2]", **{"spark.driver.memory": args.driver_memory})
        result["session_s"] = time.perf_counter() - started
        if args.workload == "score":
            from serving.spark_batch import spark_run_scoring

            model, version = scoring_model()
            run = spark_run_scoring(
                spark, str(args.data), as_of, model, version, str(args.out),
                buckets=args.buckets, log=lambda _: None,
            )  # fmt: skip
            result["rows"] = run.summary["customers_scored"]
        elif args.workload == "features":
            result["rows"], _ = spark_features(
                spark, str(args.data), as_of, config, str(args.out), args.buckets
            )
        else:
            result["rows"], _ = spark_training_set(
                spark, str(args.data), dates, config, str(args.out), args.buckets
            )
        spark.stop()
    result["in_process_s"] = time.perf_counter() - started
    print(MARK + json.dumps(result), flush=True)


def scoring_model():
    """The champion of bench_batch.py (trained once on 3,000 demo customers) and its version."""
    from bench_batch import model_uri

    from ingest.demo_data import DEMO_MODEL_NAME
    from training.tracking import load_champion

    champion = load_champion(DEMO_MODEL_NAME, model_uri())
    return champion.model, champion.version


def sample_tree(proc, cpu: dict[int, float]) -> int:
    """RSS of the process tree now; records each process's CPU seconds so far in cpu."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied), p.oneshot():
            total += p.memory_info().rss
            times = p.cpu_times()
            cpu[p.pid] = times.user + times.system
    return total


def measure(engine: str, workload: str, args: argparse.Namespace, out: Path, log: Path) -> dict:
    import psutil

    cmd = [
        sys.executable, __file__, "--child", "--engine", engine, "--workload", workload,
        "--data", str(args.data), "--out", str(out), "--as-of", args.as_of,
        "--dates", str(args.dates), "--buckets", str(args.buckets),
        "--driver-memory", args.driver_memory,
    ]  # fmt: skip
    started = time.perf_counter()
    with log.open("w") as err:
        proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        peak, cpu = 0, {}
        while proc.poll() is None:
            peak = max(peak, sample_tree(proc, cpu))
            time.sleep(0.1)
        stdout = proc.stdout.read()
    wall = time.perf_counter() - started
    lines = [line for line in stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{engine} {workload} failed (exit {proc.returncode}); see {log}")
    result = json.loads(lines[-1][len(MARK) :])
    result.update(engine=engine, workload=workload, wall_s=wall, peak_rss_mb=peak / 2**20)
    result["cpu_s"] = sum(cpu.values())  # all processes of the tree, sampled every 0.1 s
    return result


def same_rows(pandas_out: Path, spark_out: Path, keys: list[str], drop: list[str] = ()) -> str:
    import pandas as pd

    from features.spark_engine import read_output

    expected = read_output(pandas_out, keys).drop(columns=list(drop))
    got = read_output(spark_out, keys).drop(columns=list(drop))
    try:
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=0, atol=1e-9)
    except AssertionError as err:
        return f"DIFFERENT: {str(err).splitlines()[0]}"
    return f"equal ({len(got):,} rows x {got.shape[1]} columns)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--events-per-customer", type=float, default=10.0)
    parser.add_argument("--dates", type=int, default=3, help="observation dates of the dataset")
    parser.add_argument("--as-of", default="2024-12-01", help="(last) observation date")
    parser.add_argument("--buckets", type=int, default=4, help="Spark customer buckets")
    parser.add_argument("--driver-memory", default="4g", help="Spark local JVM heap")
    parser.add_argument("--workloads", default="features,dataset,score")
    parser.add_argument("--data", type=Path, help="use this data folder instead of generating")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    try:
        import psutil  # noqa: F401
        import pyspark
    except ImportError as err:
        raise SystemExit(f"{err.name} is missing: uv sync --extra spark") from None
    import pyarrow.parquet as pq

    args.data = args.data or data_dir(args.customers, args.events_per_customer)
    rows = {t: pq.ParquetFile(args.data / f"{t}.parquet").metadata.num_rows for t in
            ("customers", "activity", "feedback", "revenue")}  # fmt: skip
    print(f"data: {args.data}  " + "  ".join(f"{t} {n:,}" for t, n in rows.items()))
    print(
        f"pyspark {pyspark.__version__}, {os.cpu_count()} CPUs, buckets {args.buckets}, "
        f"driver memory {args.driver_memory}, load average {os.getloadavg()[0]:.1f} at start"
    )
    results, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        for workload in args.workloads.split(","):
            outs = {}
            for engine in ("pandas", "spark"):
                outs[engine] = Path(tmp) / f"{workload}_{engine}.parquet"
                log = Path(tmp) / f"{workload}_{engine}.log"
                result = measure(engine, workload, args, outs[engine], log)
                results.append(result)
                print(
                    f"  {workload:8s} {engine:6s} wall {result['wall_s']:7.1f}s"
                    + (f" (session {result['session_s']:.1f}s)" if "session_s" in result else "")
                    + f"  cpu {result['cpu_s']:7.1f}s  peak RSS {result['peak_rss_mb']:8,.0f} MB"
                    + f"  rows {result['rows']:,}",
                    flush=True,
                )
            keys = ["as_of", "customer_id"] if workload == "dataset" else ["customer_id"]
            if workload == "score":  # compare the partitions' scores (drivers aside)
                part = f"as_of={args.as_of}/scores.parquet"
                verdict = same_rows(
                    outs["pandas"] / part,
                    outs["spark"] / part,
                    keys,
                    drop=["drivers", "drivers_moved"],
                )
            else:
                verdict = same_rows(outs["pandas"], outs["spark"], keys)
            verdicts.append(verdict)
            print(f"  {workload}: spark vs pandas output {verdict}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print()
    print(f"| workload | engine | wall s | cpu s | peak RSS MB |  ({rows['customers']:,} customers, "
          f"{rows['activity']:,} events)")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['workload']} | {r['engine']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {r['peak_rss_mb']:,.0f} |"
        )
    if any(v.startswith("DIFFERENT") for v in verdicts):
        sys.exit(1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    main()
