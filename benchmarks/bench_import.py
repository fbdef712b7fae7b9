"""Benchmark: `churn import --mapping` on millions of event rows, from CSV and from PostgreSQL,
beside a plain pyarrow CSV read and a plain `COPY ... TO STDOUT` of the same rows.

    uv run python benchmarks/bench_import.py [--rows 1000000 3000000] [--customers 100000]
                                             [--skip-postgres]

For each size in --rows (10000000 is the issue's size; two sizes show whether memory grows
with the rows), writes a customers CSV and an events CSV (user_id with leading zeros, ISO 8601
times with Z, an event name) into a temporary folder, loads the events into a PostgreSQL
server started on loopback (tests/pg_server.py; skipped when PostgreSQL is not installed),
then runs each step in a fresh Python process so that its peak memory (VmHWM) is its own:

- arrow_csv: pyarrow.csv.read_csv of the events file (types inferred, timestamps parsed);
- import_csv: ingest.importer.import_with_mapping (what `churn import` runs) with a mapping
  over both CSV files: read as text in batches, typed and checked against the contract batch
  by batch, each checked batch written to the output Parquet as it comes;
- pg_copy: COPY (select ...) TO STDOUT of the events, the bytes counted and dropped;
- import_pg: the same with the events from a SQL query on that server;
- with --parts N, import_parts and import_parts_keep: the events cut into N files read with a
  glob, with and without (repeats = "keep") the search for rows repeating an earlier file
  (overlapping exports); target: at most 1.75x the time without it.

Prints per step the seconds of the work itself (and, apart, the seconds to import the
project's modules, which a long-running process pays once), the CPU seconds of all its
threads, rows per second, peak memory, the memory of the tables the step holds at its end
(the baselines' tables; the import holds none: its output is on disk, size shown) and the
peak beyond them; then the ratios against the baselines measured in the same run, and how the memory
beyond the output changes between the sizes. Results also go to benchmarks/results/ as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
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
    result: dict[str, float] = {"import_s": 0.0}
    if name.startswith("import"):
        t = time.perf_counter()
        import ingest.importer  # noqa: F401  (pandas, pyarrow, pandera: timed apart)

        result["import_s"] = time.perf_counter() - t
    started = time.perf_counter()
    cpu_started = time.process_time()  # every thread of the process: the baselines use both cores
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

        from features.io import folder_bytes
        from ingest.importer import import_with_mapping
        from ingest.mapping import parse_mapping

        events = (
            '"events.csv"'
            if name == "import_csv"
            else '"parts/events_*.csv"'
            if name == "import_parts"
            else '"parts/events_*.csv"\nrepeats = "keep"'
            if name == "import_parts_keep"
            else json.dumps({"url": url, "query": "select user_id, ts, name from events"})
            .replace('{"url": ', "{ url = ")
            .replace(', "query": ', ", query = ")
            .replace("}", " }")
        )
        mapping = parse_mapping(tomllib.loads(MAPPING.format(events=events)), "bench")
        out = folder / f"out-{name}"
        report = import_with_mapping(mapping, folder, out)
        result["rows"] = report.tables["activity"]["rows"]
        result["output_mb"] = 0.0  # written batch by batch: none of it is held at the end
        result["disk_mb"] = folder_bytes(out) / 2**20
        shutil.rmtree(out)
    result["seconds"] = time.perf_counter() - started
    result["cpu_s"] = time.process_time() - cpu_started
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


STEPS = ("arrow_csv", "import_csv", "pg_copy", "import_pg", "import_parts", "import_parts_keep")
PAIRS = (
    ("import_csv", "arrow_csv"),
    ("import_pg", "pg_copy"),
    ("import_parts", "import_parts_keep"),  # the cost of looking for overlapping exports
)


def write_parts(folder: Path, parts: int) -> None:
    """events.csv cut into `parts` files under parts/ (a folder of daily exports), in order."""
    table = pacsv.read_csv(folder / "events.csv", convert_options=pacsv.ConvertOptions(
        column_types={"user_id": pa.string(), "ts": pa.string(), "name": pa.string()}))  # fmt: skip
    (folder / "parts").mkdir()
    shutil.copy(folder / "customers.csv", folder / "parts" / "customers.csv")
    for k in range(parts):
        start, stop = k * table.num_rows // parts, (k + 1) * table.num_rows // parts
        pacsv.write_csv(table.slice(start, stop - start), folder / "parts" / f"events_{k:04d}.csv")


def run_size(
    rows: int, customers: int, skip_postgres: bool, parts: int = 0
) -> dict[str, dict[str, float]]:
    """Every step on one size of data, each in a fresh process; results by step."""
    from tests.pg_server import postgres_bin, postgres_server

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        write_data(folder, rows, customers)
        size = (folder / "events.csv").stat().st_size / 2**20
        print(
            f"\n{rows:,} events ({size:,.0f} MiB CSV), {customers:,} customers, "
            f"written in {time.perf_counter() - t:.1f}s",
            flush=True,
        )
        results = {name: run_step(name, folder, None) for name in ("arrow_csv", "import_csv")}
        if parts > 1:
            write_parts(folder, parts)
            for name in ("import_parts", "import_parts_keep"):
                results[name] = run_step(name, folder, None)
        if not skip_postgres and postgres_bin() is not None:
            with postgres_server() as url:
                t = time.perf_counter()
                load_postgres(url, folder)
                print(f"loaded into PostgreSQL in {time.perf_counter() - t:.1f}s", flush=True)
                for name in ("pg_copy", "import_pg"):
                    results[name] = run_step(name, folder, url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--parts",
        type=int,
        default=0,
        help="also import the events cut into this many files (a glob), looking for rows that "
        "repeat an earlier file and not (repeats = 'keep')",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.folder, args.url)))
        return
    sys.path.insert(0, str(ROOT))
    print(f"CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
    by_size = {
        rows: run_size(rows, args.customers, args.skip_postgres, args.parts) for rows in args.rows
    }
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    header = (
        f"{'rows':>11} {'step':<11} {'import s':>8} {'seconds':>8} {'CPU s':>7} {'rows/s':>12} "
        f"{'peak MiB':>9} {'output MiB':>11} {'beyond MiB':>11} {'disk MiB':>9}"
    )
    print("\n" + header)
    for rows, results in by_size.items():
        for name, r in results.items():
            r["beyond_mb"] = r["peak_mb"] - r["output_mb"]
            disk = f"{r['disk_mb']:9,.0f}" if "disk_mb" in r else f"{'':9}"
            print(
                f"{rows:>11,} {name:<11} {r['import_s']:8.2f} {r['seconds']:8.2f} "
                f"{r['cpu_s']:7.2f} {r['rows'] / r['seconds']:12,.0f} {r['peak_mb']:9,.0f} "
                f"{r['output_mb']:11,.0f} {r['beyond_mb']:11,.0f} {disk}"
            )
    for rows, results in by_size.items():
        for ours, base in PAIRS:
            if ours in results and base in results:
                ratio = results[ours]["seconds"] / results[base]["seconds"]
                cpu = results[ours]["cpu_s"] / results[base]["cpu_s"]
                target = 1.75 if ours == "import_parts" else 2
                verdict = "meets" if ratio <= target else "MISSES"
                print(
                    f"{rows:,} rows: {ours} / {base}: {ratio:.2f}x the time ({verdict} {target}x), "
                    f"{cpu:.2f}x the CPU time"
                )
    sizes = sorted(by_size)
    for small, large in itertools.pairwise(sizes):  # each step up in size
        for name in ("import_csv", "import_pg"):
            if name in by_size[small] and name in by_size[large]:
                grew = by_size[large][name]["beyond_mb"] - by_size[small][name]["beyond_mb"]
                print(
                    f"{name}: memory beyond the output {grew:+,.0f} MiB from {small:,} to "
                    f"{large:,} rows ({grew / (large - small) * 1e6:+,.1f} MiB per million rows)"
                )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"import_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({str(k): v for k, v in by_size.items()}, indent=2))
    print(f"results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
