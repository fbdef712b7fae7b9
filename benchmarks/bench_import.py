"""Benchmark: `churn import --mapping` on 10 million event rows, from CSV and from PostgreSQL,
beside a plain pyarrow CSV read and a plain `COPY ... TO STDOUT` of the same rows.

    uv run python benchmarks/bench_import.py [--rows 10000000] [--customers 100000] [--skip-postgres]

Writes a customers CSV and an events CSV (user_id with leading zeros, ISO 8601 times with Z,
an event name) into a temporary folder, loads the events into a PostgreSQL server started on
loopback (tests/pg_server.py; skipped when PostgreSQL is not installed), then runs each step
in a fresh Python process so that its peak memory (ru_maxrss) is its own:

- arrow_csv: pyarrow.csv.read_csv of the events file (types inferred, timestamps parsed);
- import_csv: ingest.importer.run_import with a mapping over both CSV files (read as text in
  batches, typed through features/types.py, checked with validate_tables);
- pg_copy: COPY (select ...) TO STDOUT of the events, the bytes counted and dropped;
- import_pg: run_import with the events from a SQL query on that server.

Prints rows per second, peak memory, and the memory of the imported tables themselves (what
the peak cannot go below), and the ratios against the baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ["login", "report_viewed", "export_created", "invite_sent", "api_call"]

MAPPING = """
[customers]
source = "customers.csv"
[customers.columns]
customer_id = "id"
signup_at = "created"

[activity]
name = "events"
source = {events}
[activity.columns]
customer_id = "user_id"
at = "ts"
event = "name"
"""


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB: VmHWM, which (unlike ru_maxrss) starts
    afresh at exec, so the parent's memory does not count."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_data(folder: Path, rows: int, customers: int, seed: int = 0) -> None:
    """customers.csv and events.csv, written in chunks with pyarrow."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "s").astype("int64")
    ids = np.char.zfill(np.arange(1, customers + 1).astype("U7"), 7)
    signup = start + rng.integers(0, 180 * 86400, customers)
    pacsv.write_csv(pa.table({"id": ids, "created": _iso(signup)}), folder / "customers.csv")
    chunk = 1_000_000
    with pacsv.CSVWriter(
        folder / "events.csv",
        pa.schema([("user_id", pa.string()), ("ts", pa.string()), ("name", pa.string())]),
    ) as writer:
        for at in range(0, rows, chunk):
            n = min(chunk, rows - at)
            who = rng.integers(0, customers, n)
            ts = signup[who] + rng.integers(0, 540 * 86400, n)
            names = np.asarray(EVENTS)[rng.integers(0, len(EVENTS), n)]
            writer.write_table(pa.table({"user_id": ids[who], "ts": _iso(ts), "name": names}))


def _iso(seconds: np.ndarray) -> pa.Array:
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return pa.array(np.char.add(text, "Z"))


def step(name: str, folder: Path, url: str | None) -> dict[str, float]:
    """One measured step in this process: seconds, rows and peak memory."""
    started = time.perf_counter()
    result: dict[str, float] = {}
    if name == "arrow_csv":
        table = pacsv.read_csv(folder / "events.csv")
        result["rows"] = table.num_rows
        result["output_mb"] = table.nbytes / 2**20
    elif name == "pg_copy":
        import psycopg

        total = rows = 0
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            cur.copy(
                "COPY (select user_id, ts, name from events) TO STDOUT WITH (FORMAT csv, HEADER true)"
            ) as copy,
        ):
            for chunk in copy:
                total += len(chunk)
                rows += bytes(chunk).count(b"\n")
        result["rows"] = rows - 1
        result["output_mb"] = total / 2**20
    else:
        import tomllib

        from ingest.importer import run_import
        from ingest.mapping import parse_mapping

        events = (
            '"events.csv"'
            if name == "import_csv"
            else json.dumps({"url": url, "query": "select user_id, ts, name from events"})
            .replace('{"url": ', "{ url = ")
            .replace(', "query": ', ", query = ")
            .replace("}", " }")
        )
        mapping = parse_mapping(tomllib.loads(MAPPING.format(events=events)), "bench")
        tables, _ = run_import(mapping, folder)
        result["rows"] = len(tables.activity)
        result["output_mb"] = (
            tables.activity.memory_usage(deep=True).sum()
            + tables.customers.memory_usage(deep=True).sum()
        ) / 2**20
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = peak_rss_mb()
    return result


def load_postgres(url: str, folder: Path) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("create table events (user_id text, ts timestamptz, name text)")
        with (
            cur.copy("COPY events FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
            (folder / "events.csv").open("rb") as fh,
        ):
            while data := fh.read(1 << 20):
                copy.write(data)
        cur.execute("analyze events")


def run_step(name: str, folder: Path, url: str | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--step", name, "--folder", str(folder)]
    if url:
        cmd += ["--url", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.folder, args.url)))
        return
    sys.path.insert(0, str(ROOT))
    from tests.pg_server import postgres_bin, postgres_server

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        write_data(folder, args.rows, args.customers)
        size = (folder / "events.csv").stat().st_size / 2**20
        print(
            f"{args.rows:,} events ({size:,.0f} MiB CSV), {args.customers:,} customers, "
            f"written in {time.perf_counter() - t:.1f}s"
        )
        results = {name: run_step(name, folder, None) for name in ("arrow_csv", "import_csv")}
        if not args.skip_postgres and postgres_bin() is not None:
            with postgres_server() as url:
                t = time.perf_counter()
                load_postgres(url, folder)
                print(f"loaded into PostgreSQL in {time.perf_counter() - t:.1f}s")
                for name in ("pg_copy", "import_pg"):
                    results[name] = run_step(name, folder, url)
        print(f"\n{'step':<11} {'seconds':>8} {'rows/s':>12} {'peak MiB':>9} {'output MiB':>11}")
        for name, r in results.items():
            print(
                f"{name:<11} {r['seconds']:8.2f} {r['rows'] / r['seconds']:12,.0f} "
                f"{r['peak_mb']:9,.0f} {r['output_mb']:11,.0f}"
            )
        pairs = [("import_csv", "arrow_csv"), ("import_pg", "pg_copy")]
        for ours, base in pairs:
            if ours in results and base in results:
                ratio = results[ours]["seconds"] / results[base]["seconds"]
                extra = results[ours]["peak_mb"] - results[ours]["output_mb"]
                print(
                    f"{ours} / {base}: {ratio:.2f}x the time; peak beyond the output "
                    f"tables: {extra:,.0f} MiB"
                )


if __name__ == "__main__":
    main()
