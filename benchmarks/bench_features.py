"""Benchmark: features as of one date (pandas path) against a hand-written DuckDB query.

    uv run python benchmarks/bench_features.py [--customers 100000] [--data DIR] [--dates 6]

Generates the demo data (ingest.demo_data, about 100 events per customer) into
benchmarks/.data/demo_<customers> unless --data points at a folder of Parquet tables, then
measures, each in a fresh Python process so that peak memory (the child's ru_maxrss) belongs to
one measurement only:

* the pandas path end to end: load_tables (read Parquet + validate the contract), the array
  form (features.prepared) and build_features for one observation date, with the split
  ("read" is from the first table read's start to the last one's end, "validate" the rest of
  load_tables);
* build_features alone on loaded tables: the first date (which builds the array form) and the
  next dates (the warm per-date cost);
* a hand-written DuckDB query computing a comparable subset of the features (DUCKDB_SQL below)
  over the same Parquet files, in a fresh process, and over DuckDB in-memory tables;
* the fresh-process runs of both sides under two memory conditions, cold and warm (see
  MEMORY_CONDITIONS), and what touching fresh memory costs under each;
* write_training_set for 1, a few and --dates observation dates (30 days apart): peak memory
  must not grow with the number of dates.

It checks that DuckDB and pandas agree on the shared columns, prints a table of wall time, CPU
time, events per second and peak RSS with the ratios pandas / DuckDB (target: within 1.5x), and
writes the figures as JSON to benchmarks/results/. The exit status is 1 if the two disagree.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".data"
RESULTS = HERE / "results"
MARK = "@@BENCH@@"
TABLE_NAMES = ("customers", "activity", "feedback", "revenue")
TARGET_RATIO = 1.5
WINDOWS = (7, 30, 90)  # the windows the SQL below is written for
TREND_WINDOW = 30

# The columns both sides compute, under the pandas feature names.
SHARED_COLUMNS = (
    "events_7d",
    "events_30d",
    "events_90d",
    "active_days_7d",
    "active_days_30d",
    "active_days_90d",
    "event_types_90d",
    "value_30d",
    "days_since_last_event",
    "events_trend_30d",
    "tickets_open",
    "nps_last",
    "revenue_90d",
)

# Hand-written SQL for the same features as of T, for customers eligible at T (signed up
# before T, not churned before T). {t} is T as a TIMESTAMP_NS literal, {t7}... T minus 7 days,
# {d7}... the same as DATE literals (T is a midnight, so "at >= T - 7 days" is
# "date(at) >= date(T) - 7"). Activity is first reduced to one row per (customer, day) for the
# last 90 days; distinct event types and the last event time are separate aggregates.
DUCKDB_SQL = """
WITH eligible AS (
  SELECT customer_id FROM {customers}
  WHERE signup_at < {t} AND (churned_at IS NULL OR churned_at >= {t})
),
act AS (
  SELECT customer_id, "at", event, value FROM {activity} WHERE "at" < {t}
),
daily AS (
  SELECT customer_id, CAST("at" AS DATE) AS day, count(*) AS n, sum(value) AS v
  FROM act WHERE "at" >= {t90}
  GROUP BY ALL
),
windows AS (
  SELECT customer_id,
    sum(n) FILTER (day >= {d7}) AS events_7d,
    sum(n) FILTER (day >= {d30}) AS events_30d,
    sum(n) AS events_90d,
    count(*) FILTER (day >= {d7}) AS active_days_7d,
    count(*) FILTER (day >= {d30}) AS active_days_30d,
    count(*) AS active_days_90d,
    sum(v) FILTER (day >= {d30}) AS value_30d,
    sum(n) FILTER (day < {d30} AND day >= {d60}) AS events_prev_30d
  FROM daily GROUP BY customer_id
),
types AS (
  SELECT customer_id, count(DISTINCT event) AS event_types_90d
  FROM act WHERE "at" >= {t90} GROUP BY customer_id
),
last_event AS (
  SELECT customer_id, max("at") AS last_at FROM act GROUP BY customer_id
),
fb AS (
  SELECT customer_id,
    count(*) FILTER (kind = 'ticket' AND (resolved_at IS NULL OR resolved_at >= {t}))
      AS tickets_open,
    arg_max(score, "at") FILTER (kind = 'nps' AND score IS NOT NULL AND NOT isnan(score))
      AS nps_last
  FROM {feedback} WHERE "at" < {t}
  GROUP BY customer_id
),
rev AS (
  SELECT customer_id, sum(amount) AS revenue_90d
  FROM {revenue}
  WHERE "at" < {t} AND "at" >= {t90} AND kind IS DISTINCT FROM 'failed_payment'
  GROUP BY customer_id
)
SELECT e.customer_id,
  coalesce(w.events_7d, 0)::DOUBLE AS events_7d,
  coalesce(w.events_30d, 0)::DOUBLE AS events_30d,
  coalesce(w.events_90d, 0)::DOUBLE AS events_90d,
  coalesce(w.active_days_7d, 0)::DOUBLE AS active_days_7d,
  coalesce(w.active_days_30d, 0)::DOUBLE AS active_days_30d,
  coalesce(w.active_days_90d, 0)::DOUBLE AS active_days_90d,
  coalesce(ty.event_types_90d, 0)::DOUBLE AS event_types_90d,
  coalesce(w.value_30d, 0)::DOUBLE AS value_30d,
  (epoch_ns({t}) - epoch_ns(le.last_at)) / 86400000000000 AS days_since_last_event,
  CASE WHEN coalesce(w.events_30d, 0) + coalesce(w.events_prev_30d, 0) > 0
    THEN (coalesce(w.events_30d, 0) - coalesce(w.events_prev_30d, 0))
       / (coalesce(w.events_30d, 0) + coalesce(w.events_prev_30d, 0))
  END AS events_trend_30d,
  coalesce(f.tickets_open, 0)::DOUBLE AS tickets_open,
  f.nps_last,
  coalesce(r.revenue_90d, 0)::DOUBLE AS revenue_90d
FROM eligible e
LEFT JOIN windows w USING (customer_id)
LEFT JOIN types ty USING (customer_id)
LEFT JOIN last_event le USING (customer_id)
LEFT JOIN fb f USING (customer_id)
LEFT JOIN rev r USING (customer_id)
ORDER BY e.customer_id
"""


# ---- helpers shared by parent and children ----------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident memory now (Linux), after a garbage collection."""
    import gc

    gc.collect()
    return _proc_status_mb("VmRSS")


_PEAK_WINDOW = {"ok": False}


def reset_peak() -> None:
    """Start a new peak-memory window: on Linux, writing 5 to clear_refs resets VmHWM."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _PEAK_WINDOW["ok"] = True
    except OSError:
        _PEAK_WINDOW["ok"] = False


def window_peak_mb() -> float | None:
    """Peak resident memory since reset_peak() (VmHWM); None where it cannot be reset."""
    return _proc_status_mb("VmHWM") if _PEAK_WINDOW["ok"] else None


class Clock:
    """Wall and CPU seconds (all threads of this process) of a block."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def sql_for(as_of: str, sources: dict[str, str]) -> str:
    """DUCKDB_SQL for observation date as_of (YYYY-MM-DD) over the given table sources."""
    day = dt.date.fromisoformat(as_of)
    literals = {"t": f"TIMESTAMP_NS '{day} 00:00:00'"}
    for k in (7, 30, 60, 90):
        literals[f"t{k}"] = f"TIMESTAMP_NS '{day - dt.timedelta(days=k)} 00:00:00'"
        literals[f"d{k}"] = f"DATE '{day - dt.timedelta(days=k)}'"
    return DUCKDB_SQL.format(**sources, **literals)


def parquet_sources(data: Path) -> dict[str, str]:
    return {name: f"read_parquet('{data / name}.parquet')" for name in TABLE_NAMES}


def bench_config(data: Path) -> Any:
    """The data folder's feature configuration with the windows the SQL is written for and
    contractual eligibility (signed up before T, not churned by T), as in the SQL."""
    from dataclasses import replace

    from features.config import config_for_data

    config = config_for_data(data)
    return replace(config, windows=WINDOWS, trend_window=TREND_WINDOW).with_churn(
        mode="contractual"
    )


# ---- children: one measurement each, result as one JSON line on stdout ---------------------


def child_generate(p: dict) -> dict:
    from ingest.demo_data import DemoConfig, write_demo

    return write_demo(p["data"], DemoConfig(n_customers=p["customers"]))


def child_pandas_e2e(p: dict) -> dict:
    """load_tables + build_features for one date in a fresh process, with the split."""
    import features.io as fio
    from features.prepared import prepare
    from features.signals import build_features

    data, config = Path(p["data"]), bench_config(Path(p["data"]))
    spans: list[tuple[float, float, float, float]] = []  # wall and CPU clock at start and end
    original_read = fio.read_table

    def timed_read(path: Path) -> Any:  # load_tables looks read_table up in features.io
        start = (time.perf_counter(), time.process_time())
        out = original_read(path)
        spans.append((*start, time.perf_counter(), time.process_time()))
        return out

    fio.read_table = timed_read
    with Clock() as total:
        with Clock() as load:
            tables = fio.load_tables(data)
        peak_load = peak_rss_mb()
        # Reading is from the first read's start to the last one's end (CPU: the process clock
        # over that span, all threads, should reads ever overlap), validating is the rest.
        read = {
            "wall": max(s[2] for s in spans) - min(s[0] for s in spans),
            "cpu": max(s[3] for s in spans) - min(s[1] for s in spans),
        }
        with Clock() as prep:
            prepare(tables)  # what build_features does first; timed apart to show it
        with Clock() as feat:
            frame = build_features(tables, p["as_of"], config)
    return {
        "wall": total.wall,
        "cpu": total.cpu,
        "read_wall": read["wall"],
        "read_cpu": read["cpu"],
        "validate_wall": load.wall - read["wall"],
        "validate_cpu": load.cpu - read["cpu"],
        "prepare_wall": prep.wall,
        "prepare_cpu": prep.cpu,
        "features_wall": feat.wall,
        "features_cpu": feat.cpu,
        "rows": len(frame),
        "columns": frame.shape[1],
        "peak_load_mb": peak_load,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_pandas_features(p: dict) -> dict:
    """build_features on loaded tables: the first date (builds the arrays), then repeats."""
    from features.io import load_tables
    from features.signals import build_features

    data, config = Path(p["data"]), bench_config(Path(p["data"]))
    tables = load_tables(data)
    peak_load, rss_loaded = peak_rss_mb(), current_rss_mb()
    reset_peak()
    with Clock() as first:
        frame = build_features(tables, p["as_of"], config)
    peak_first = window_peak_mb()
    reset_peak()
    walls, cpus = [], []
    for _ in range(p["repeat"]):
        with Clock() as c:
            frame = build_features(tables, p["as_of"], config)
        walls.append(c.wall)
        cpus.append(c.cpu)
    peak_next = window_peak_mb()
    frame[["customer_id", *SHARED_COLUMNS]].to_parquet(p["out"], index=False)
    return {
        "first_wall": first.wall,
        "first_cpu": first.cpu,
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "walls": walls,
        "rows": len(frame),
        "peak_load_mb": peak_load,
        "rss_after_load_mb": rss_loaded,
        "peak_first_mb": peak_first,  # during the first date (tables loaded, arrays built)
        "peak_next_mb": peak_next,  # during the next dates
    }


def child_duckdb_parquet(p: dict) -> dict:
    """The SQL over the Parquet files in a fresh process: connect, query, fetch to pandas."""
    import duckdb
    import pandas  # noqa: F401  imported up front, as on the pandas side: .df() needs it

    sql = sql_for(p["as_of"], parquet_sources(Path(p["data"])))
    with Clock() as c:
        con = duckdb.connect()
        result = con.execute(sql).df()
    peak = peak_rss_mb()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    if p.get("out"):
        result.to_parquet(p["out"], index=False)
    return {
        "wall": c.wall,
        "cpu": c.cpu,
        "rows": len(result),
        "threads": int(threads),
        "version": duckdb.__version__,
        "peak_rss_mb": peak,
    }


def child_duckdb_memory(p: dict) -> dict:
    """The SQL over DuckDB in-memory tables loaded from the Parquet files: the warm cost."""
    import duckdb
    import pandas  # noqa: F401  imported up front, as on the pandas side: .df() needs it

    data = Path(p["data"])
    con = duckdb.connect()
    with Clock() as load:
        for name in TABLE_NAMES:
            con.execute(
                f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{data / name}.parquet')"
            )
    peak_load, rss_loaded = peak_rss_mb(), current_rss_mb()
    sql = sql_for(p["as_of"], {name: name for name in TABLE_NAMES})
    reset_peak()
    with Clock() as first:
        con.execute(sql).df()
    peak_first = window_peak_mb()
    reset_peak()
    walls, cpus = [], []
    for _ in range(p["repeat"]):
        with Clock() as c:
            result = con.execute(sql).df()
        walls.append(c.wall)
        cpus.append(c.cpu)
    return {
        "load_wall": load.wall,
        "load_cpu": load.cpu,
        "first_wall": first.wall,
        "first_cpu": first.cpu,
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "walls": walls,
        "rows": len(result),
        "peak_load_mb": peak_load,
        "rss_after_load_mb": rss_loaded,
        "peak_first_mb": peak_first,
        "peak_next_mb": window_peak_mb(),
    }


def child_training_set(p: dict) -> dict:
    """load_tables, then write_training_set for the given observation dates."""
    from features.dataset import write_training_set
    from features.io import load_tables

    data, config = Path(p["data"]), bench_config(Path(p["data"]))
    with Clock() as load:
        tables = load_tables(data)
    peak_load, rss_loaded = peak_rss_mb(), current_rss_mb()
    reset_peak()
    with tempfile.TemporaryDirectory() as tmp, Clock() as write:
        rows, _ = write_training_set(tables, p["dates"], Path(tmp) / "training.parquet", config)
    peak_write = window_peak_mb()
    return {
        "dates": len(p["dates"]),
        "rows": rows,
        "load_wall": load.wall,
        "write_wall": write.wall,
        "write_cpu": write.cpu,
        "peak_load_mb": peak_load,
        "rss_after_load_mb": rss_loaded,
        "peak_write_mb": peak_write,  # while writing: tables + arrays + one date's rows
        "peak_rss_mb": max(peak_load, peak_write or 0.0, peak_rss_mb()),
    }


def child_profile(p: dict) -> dict:
    """cProfile of the pandas path end to end (load_tables + build_features)."""
    import cProfile
    import io
    import pstats

    from features.io import load_tables
    from features.signals import build_features

    data, config = Path(p["data"]), bench_config(Path(p["data"]))
    profiler = cProfile.Profile()
    profiler.enable()
    build_features(load_tables(data), p["as_of"], config)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(r"features[/\\]", 30)
    stats.sort_stats("tottime").print_stats(25)
    return {"text": text.getvalue()}


def child_touch(p: dict) -> dict:
    """Allocate and write p["mb"] MiB of fresh memory, then free it: seconds taken. With
    p["regular"], in regular pages, as load_tables leaves the process (numpy otherwise asks for
    transparent huge pages for large arrays)."""
    import numpy as np

    if p.get("regular"):
        from features.io import use_regular_memory_pages

        use_regular_memory_pages()
    with Clock() as c:
        block = np.empty(p["mb"] << 20, dtype=np.uint8)
        block.fill(1)
    del block
    return {"wall": c.wall, "mb": p["mb"]}


PANDAS_MODULES = ("features.io", "features.signals", "features.dataset")
DUCKDB_MODULES = ("duckdb", "pandas")  # the DuckDB result is fetched as a pandas DataFrame
CHILDREN = {  # kind: (function, modules imported before it runs, outside its timings)
    "generate": (child_generate, ()),
    "pandas_e2e": (child_pandas_e2e, PANDAS_MODULES),
    "pandas_features": (child_pandas_features, PANDAS_MODULES),
    "duckdb_parquet": (child_duckdb_parquet, DUCKDB_MODULES),
    "duckdb_memory": (child_duckdb_memory, DUCKDB_MODULES),
    "training_set": (child_training_set, PANDAS_MODULES),
    "profile": (child_profile, PANDAS_MODULES),
    "touch": (child_touch, ("numpy",)),
}


def child_main(kind: str, params: dict) -> None:
    """Import what the measurement needs (timed apart), run it, print its result."""
    import importlib

    function, modules = CHILDREN[kind]
    with Clock() as imports:
        for module in modules:
            importlib.import_module(module)
    rss_imports = peak_rss_mb()
    result = function(params)
    result.update(import_wall=imports.wall, import_cpu=imports.cpu, rss_imports_mb=rss_imports)
    print(MARK + json.dumps(result), flush=True)


def run_child(kind: str, **params: Any) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-6000:])
        raise SystemExit(f"benchmark step '{kind}' failed (exit status {proc.returncode})")
    return json.loads(lines[-1][len(MARK) :])


# ---- parent -------------------------------------------------------------------------------------


def demo_folder(customers: int) -> Path:
    """The cached demo data for this size, (re)generated when missing or when the generator's
    source changed since it was written."""
    data = CACHE / f"demo_{customers}"
    stamp = CACHE / f"demo_{customers}.stamp"
    source = (ROOT / "features" / "demo_data.py").read_bytes()
    want = hashlib.sha256(source + str(customers).encode()).hexdigest()
    present = all((data / f"{name}.parquet").is_file() for name in TABLE_NAMES)
    if present and stamp.is_file() and stamp.read_text().strip() == want:
        print(f"data: {rel(data)} (reused)")
        return data
    print(f"data: generating {customers:,} demo customers into {rel(data)} ...", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    info = run_child("generate", data=str(data), customers=customers)
    stamp.write_text(want + "\n")
    print(f"      done in {info['seconds']:.1f} s")
    return data


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def describe_data(data: Path, horizon_days: int) -> dict:
    """Row counts and the latest observation date whose label horizon is inside the data."""
    import duckdb

    missing = [n for n in TABLE_NAMES if not (data / f"{n}.parquet").is_file()]
    if missing:
        raise SystemExit(f"{data} lacks {', '.join(m + '.parquet' for m in missing)}")
    con = duckdb.connect()
    src = parquet_sources(data)
    rows = {n: con.execute(f"SELECT count(*) FROM {src[n]}").fetchone()[0] for n in TABLE_NAMES}
    # The same data end as Tables.data_end(): signups, churns and every event table's "at".
    end = con.execute(
        f"""SELECT greatest(
            (SELECT max(signup_at) FROM {src["customers"]}),
            (SELECT max(churned_at) FROM {src["customers"]}),
            (SELECT max("at") FROM {src["activity"]}),
            (SELECT max("at") FROM {src["feedback"]}),
            (SELECT max("at") FROM {src["revenue"]}))"""
    ).fetchone()[0]
    latest = (end - dt.timedelta(days=horizon_days)).date()
    return {"rows": rows, "data_end": str(end), "latest_as_of": latest.isoformat()}


def compare(pandas_file: Path, duckdb_file: Path) -> tuple[bool, list[str]]:
    """Same customers, and every shared column equal within 1e-9 (relative above 1)."""
    import numpy as np
    import pandas as pd

    ours = pd.read_parquet(pandas_file)
    theirs = pd.read_parquet(duckdb_file)
    lines: list[str] = []
    only_ours = set(ours["customer_id"]) - set(theirs["customer_id"])
    only_theirs = set(theirs["customer_id"]) - set(ours["customer_id"])
    if only_ours or only_theirs:
        lines.append(
            f"eligible customers differ: {len(only_ours)} only in pandas "
            f"(e.g. {sorted(only_ours)[:3]}), {len(only_theirs)} only in DuckDB "
            f"(e.g. {sorted(only_theirs)[:3]})"
        )
    both = ours.merge(theirs, on="customer_id", suffixes=("_pd", "_db"))
    worst = 0.0
    for col in SHARED_COLUMNS:
        a = both[f"{col}_pd"].to_numpy(dtype="float64")
        b = both[f"{col}_db"].to_numpy(dtype="float64")
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            diff = np.where(nan_a | nan_b, 0.0, np.abs(a - b))
            scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
        bad = (nan_a != nan_b) | (diff > 1e-9 * scale)
        worst = max(worst, float(np.max(diff / scale, initial=0.0)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            lines.append(
                f"{col}: {int(bad.sum())} of {len(both)} customers differ, e.g. "
                f"{both['customer_id'].iloc[i]}: pandas {float(a[i])!r}, DuckDB {float(b[i])!r}"
            )
    ok = not lines
    summary = (
        f"pandas and DuckDB agree on {len(SHARED_COLUMNS)} columns for {len(both):,} customers "
        f"(largest relative difference {worst:.1e}, tolerance 1e-9)"
        if ok
        else f"MISMATCH between pandas and DuckDB on {len(both):,} shared customers:"
    )
    return ok, [summary, *lines]


def fmt_rate(events: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    rate = events / seconds
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


# Fresh processes pay for every page of memory they touch first. On a VM that hands freed memory
# back to its host (virtio-balloon free page reporting, as on this project's CI machines), a page
# the host took back costs ten times more to touch than one freed a moment ago. Each fresh-process
# measurement therefore runs under a stated memory condition, the same for both sides:
# "cold": wait until memory freed by the previous process has gone back to the host;
# "warm": right after a helper process touched and freed more memory than the step needs.
MEMORY_CONDITIONS = ("cold", "warm")
COLD_WAIT_SECONDS = 4.0
WARM_TOUCH_MB = 1536


def set_memory(condition: str) -> None:
    """Put this machine's free memory into the given condition before a fresh process."""
    if condition == "cold":
        time.sleep(COLD_WAIT_SECONDS)
    else:
        run_child("touch", mb=WARM_TOUCH_MB)


def first_touch_cost() -> dict[str, float]:
    """Milliseconds per MiB of fresh memory (512 MiB), cold and warm, in regular pages (how
    load_tables leaves the process) and in transparent huge pages (numpy's default)."""
    costs = {}
    for condition in MEMORY_CONDITIONS:
        for pages in ("regular", "huge"):
            set_memory(condition)
            touched = run_child("touch", mb=512, regular=pages == "regular")
            costs[f"{condition} {pages}"] = 1000 * touched["wall"] / touched["mb"]
    return costs


def date_counts(n: int) -> list[int]:
    return sorted({1, max(1, round(n / 2)), n})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="demo size (default 100000)")
    parser.add_argument("--data", type=Path, help="use this folder of Parquet tables instead")
    parser.add_argument(
        "--dates", type=int, default=6, help="most observation dates in the memory test (6)"
    )
    parser.add_argument("--as-of", help="observation date (default: latest with a full label)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of timed parts (3)")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of the pandas path"
    )
    parser.add_argument(
        "--memory",
        choices=[*MEMORY_CONDITIONS, "both"],
        default="both",
        help="memory condition of the fresh-process runs (both; see MEMORY_CONDITIONS)",
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.dates < 1:
        parser.error("--repeat and --dates must be at least 1")

    began = time.perf_counter()
    data = args.data.resolve() if args.data else demo_folder(args.customers)
    if args.data:
        print(f"data: {data}")
    from features.config import config_for_data  # light: the parent imports no pandera

    horizon = config_for_data(data).churn.horizon_days
    info = describe_data(data, horizon)
    try:
        as_of = dt.date.fromisoformat(args.as_of or info["latest_as_of"]).isoformat()
    except ValueError:
        parser.error(f"--as-of {args.as_of!r} is not a date (use YYYY-MM-DD)")
    step = 30
    last = dt.date.fromisoformat(as_of)
    events = info["rows"]["activity"]
    rows = info["rows"]
    load_start = os.getloadavg()[0]
    print(
        f"{rows['customers']:,} customers, {events:,} activity events, "
        f"{rows['feedback']:,} feedback and {rows['revenue']:,} revenue rows; as of {as_of}"
    )
    import duckdb
    import numpy
    import pandas
    import pyarrow

    print(
        f"python {platform.python_version()}, pandas {pandas.__version__}, numpy "
        f"{numpy.__version__}, pyarrow {pyarrow.__version__}, duckdb {duckdb.__version__}; "
        f"{os.cpu_count()} CPUs, load average {load_start:.1f}; repeats: {args.repeat}",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        pandas_out, duckdb_out = Path(tmp) / "pandas.parquet", Path(tmp) / "duckdb.parquet"
        common = {"data": str(data), "as_of": as_of}
        conditions = MEMORY_CONDITIONS if args.memory == "both" else (args.memory,)
        print("measuring: first touch of fresh memory", end="", flush=True)
        touch_ms = first_touch_cost()
        e2e: dict[str, list[dict]] = {c: [] for c in conditions}
        duck: dict[str, list[dict]] = {c: [] for c in conditions}
        for i in range(args.repeat):  # alternate, so a busy machine hits both alike
            for c in conditions:
                print(f", pandas end to end {c} {i + 1}", end="", flush=True)
                set_memory(c)
                e2e[c].append(run_child("pandas_e2e", **common))
                print(f", DuckDB over Parquet {c} {i + 1}", end="", flush=True)
                set_memory(c)
                first = i == 0 and c == conditions[0]
                duck[c].append(
                    run_child("duckdb_parquet", **common, out=str(duckdb_out) if first else "")
                )
        print(", pandas features", end="", flush=True)
        warm = run_child("pandas_features", **common, repeat=args.repeat, out=str(pandas_out))
        print(", DuckDB in memory", end="", flush=True)
        duck_mem = run_child("duckdb_memory", **common, repeat=args.repeat)
        training = []
        for k in date_counts(args.dates):
            dates = [(last - dt.timedelta(days=step * (k - 1 - j))).isoformat() for j in range(k)]
            print(f", training set {k} dates", end="", flush=True)
            training.append(run_child("training_set", data=str(data), dates=dates))
        print(flush=True)
        agree, agree_lines = compare(pandas_out, duckdb_out)
        profile = run_child("profile", **common)["text"] if args.profile else None

    def med(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    every_e2e = [r for runs in e2e.values() for r in runs]
    every_duck = [r for runs in duck.values() for r in runs]
    threads = every_duck[0]["threads"]
    Row = tuple[str, float | None, float | None, str, float | None]
    table: list[Row] = [
        (
            "imports: features (pandas, pandera)",
            med(every_e2e, "import_wall"),
            med(every_e2e, "import_cpu"),
            "",
            max(r["rss_imports_mb"] for r in every_e2e),
        ),
        (
            "imports: duckdb, pandas",
            med(every_duck, "import_wall"),
            med(every_duck, "import_cpu"),
            "",
            max(r["rss_imports_mb"] for r in every_duck),
        ),
    ]
    for c in conditions:
        runs, wall = e2e[c], med(e2e[c], "wall")
        table += [
            (
                f"pandas end to end (fresh, {c} memory)",
                wall,
                med(runs, "cpu"),
                fmt_rate(events, wall),
                max(r["peak_rss_mb"] for r in runs),
            ),
            (
                "  load_tables: read Parquet",
                med(runs, "read_wall"),
                med(runs, "read_cpu"),
                "",
                None,
            ),
            (
                "  load_tables: validate contract",
                med(runs, "validate_wall"),
                med(runs, "validate_cpu"),
                "",
                max(r["peak_load_mb"] for r in runs),
            ),
            (
                "  prepare (array form)",
                med(runs, "prepare_wall"),
                med(runs, "prepare_cpu"),
                "",
                None,
            ),
            ("  build_features", med(runs, "features_wall"), med(runs, "features_cpu"), "", None),
            (
                f"DuckDB over Parquet ({threads} threads, fresh, {c} memory)",
                med(duck[c], "wall"),
                med(duck[c], "cpu"),
                fmt_rate(events, med(duck[c], "wall")),
                max(r["peak_rss_mb"] for r in duck[c]),
            ),
        ]
    table += [
        (
            "pandas build_features, 1st date *",
            warm["first_wall"],
            warm["first_cpu"],
            fmt_rate(events, warm["first_wall"]),
            warm["peak_first_mb"],
        ),
        (
            "pandas build_features, next dates *",
            warm["wall"],
            warm["cpu"],
            fmt_rate(events, warm["wall"]),
            warm["peak_next_mb"],
        ),
        (
            "DuckDB load Parquet into tables",
            duck_mem["load_wall"],
            duck_mem["load_cpu"],
            "",
            duck_mem["peak_load_mb"],
        ),
        (
            "DuckDB over tables, 1st query *",
            duck_mem["first_wall"],
            duck_mem["first_cpu"],
            fmt_rate(events, duck_mem["first_wall"]),
            duck_mem["peak_first_mb"],
        ),
        (
            "DuckDB over tables, next queries *",
            duck_mem["wall"],
            duck_mem["cpu"],
            fmt_rate(events, duck_mem["wall"]),
            duck_mem["peak_next_mb"],
        ),
    ]

    def num(x: float | None, spec: str) -> str:
        return " " * len(format(0.0, spec)) if x is None else format(x, spec)

    print(
        f"\nFeatures as of {as_of} for {warm['rows']:,} eligible customers "
        f"(pandas {every_e2e[0]['columns']} columns, DuckDB {len(SHARED_COLUMNS)} of them); "
        f"times are medians"
    )
    print(f"{'':42s} {'wall s':>7s} {'cpu s':>7s} {'events/s':>9s} {'peak RSS MB':>12s}")
    for label, wall, cpu, rate, rss in table:
        print(f"{label:42s} {num(wall, '7.2f')} {num(cpu, '7.2f')} {rate:>9s} {num(rss, '12.0f')}")
    touch = ", ".join(f"{cost:.2f} {kind}" for kind, cost in touch_ms.items())
    print(
        f"fresh memory, ms per MiB: {touch} (cold: {COLD_WAIT_SECONDS:.0f} s after the last "
        f"process freed its memory; warm: just after a process touched and freed "
        f"{WARM_TOUCH_MB} MiB; regular pages: as load_tables leaves the process)\n"
        "imports: each fresh process imports these first; not included in the rows below them\n"
        "*: tables already loaded in the process; peak RSS while the step runs (loaded data included)"
    )

    peak_e2e = max(r["peak_rss_mb"] for r in every_e2e)
    peak_duck = max(r["peak_rss_mb"] for r in every_duck)
    ratios = {  # label: (wall ratio, CPU ratio)
        f"end to end, {c} memory: pandas / DuckDB over Parquet": (
            med(e2e[c], "wall") / med(duck[c], "wall"),
            med(e2e[c], "cpu") / med(duck[c], "cpu"),
        )
        for c in conditions
    }
    ratios |= {
        "features only: next dates / DuckDB next queries": (
            warm["wall"] / duck_mem["wall"],
            warm["cpu"] / duck_mem["cpu"],
        ),
        "features only: 1st date / DuckDB 1st query": (
            warm["first_wall"] / duck_mem["first_wall"],
            warm["first_cpu"] / duck_mem["first_cpu"],
        ),
    }
    print(
        f"\nRatios pandas / DuckDB (target: wall time within {TARGET_RATIO}x; CPU time counts "
        f"all {threads} DuckDB threads)"
    )
    print(f"  {'':50s} {'wall':>7s} {'cpu':>7s}")
    for label, (wall_ratio, cpu_ratio) in ratios.items():
        verdict = "meets target" if wall_ratio <= TARGET_RATIO else "MISSES target"
        print(f"  {label:50s} {wall_ratio:6.2f}x {cpu_ratio:6.2f}x  {verdict}")
    print(
        f"  {'peak RSS end to end: pandas / DuckDB over Parquet':50s} {peak_e2e / peak_duck:6.2f}x"
        f"  ({peak_e2e:.0f} MB / {peak_duck:.0f} MB)"
    )

    print("\nAgreement: " + "\n  ".join(agree_lines))

    print(
        f"\nMemory vs observation dates: write_training_set, dates {step} days apart up to {as_of}"
    )
    print(
        f"{'dates':>5s} {'rows':>9s} {'load s':>7s} {'write s':>8s} {'s/date':>7s} "
        f"{'peak load MB':>13s} {'RSS loaded MB':>14s} {'peak write MB':>14s} {'vs 1 date':>10s}"
    )
    for r in training:
        growth = (
            r["peak_write_mb"] - training[0]["peak_write_mb"]
            if r["peak_write_mb"] is not None
            else None
        )
        print(
            f"{r['dates']:5d} {r['rows']:9,d} {r['load_wall']:7.2f} {r['write_wall']:8.2f} "
            f"{r['write_wall'] / r['dates']:7.2f} {r['peak_load_mb']:13.0f} "
            f"{num(r['rss_after_load_mb'], '14.0f')} {num(r['peak_write_mb'], '14.0f')} "
            f"{num(growth, '+10.0f')}"
        )
    if len(training) > 1:
        a, b = training[0], training[-1]
        per_date = (b["write_wall"] - a["write_wall"]) / (b["dates"] - a["dates"])
        line = f"marginal cost per extra date: {per_date:.2f} s"
        if a["peak_write_mb"] is not None and b["peak_write_mb"] is not None:
            growth = (b["peak_write_mb"] - a["peak_write_mb"]) / (b["dates"] - a["dates"])
            line += f", {growth:+.1f} MB peak RSS while writing"
        print(line + f" ({a['dates']} -> {b['dates']} dates)")
        print(
            "peak load: peak RSS of load_tables; RSS loaded: after it, garbage collected; "
            "peak write: peak RSS while write_training_set runs"
        )

    load_end = os.getloadavg()[0]
    total = time.perf_counter() - began
    print(f"\nload average at the end {load_end:.1f}; benchmark took {total:.0f} s")
    if profile:
        print("\ncProfile of the pandas path end to end (load_tables + build_features):")
        print(profile)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"features_{rows['customers']}_{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "data": str(data),
                "rows": rows,
                "as_of": as_of,
                "duckdb_threads": threads,
                "cpus": os.cpu_count(),
                "load_average": [load_start, load_end],
                "first_touch_ms_per_mib": touch_ms,
                "pandas_e2e": e2e,
                "pandas_features": warm,
                "duckdb_parquet": duck,
                "duckdb_memory": duck_mem,
                "training_set": training,
                "ratios": {k: {"wall": w, "cpu": c} for k, (w, c) in ratios.items()},
                "agree": agree,
                "agreement": agree_lines,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"figures written to {rel(out)}")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_main(sys.argv[2], json.loads(sys.argv[3]))
    else:
        main()
