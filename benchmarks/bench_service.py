"""Benchmark: the BentoML churn service against a bare FastAPI + LightGBM app doing the same work.

    uv run python benchmarks/bench_service.py [--customers 3000] [--requests 2000]
                                              [--rounds 3] [--records 300]
                                              [--slices 10] [--seconds 3]

Both servers run on loopback as separate processes, each with one worker, the same champion
model (read from the same BentoML model store), the same scored partition (serving.partitions),
the same pydantic request/response models, and the same ASGI middlewares (serving.auth's bearer
token, body limit and content type check; serving.metrics' /metrics); the only difference is the
framework around them. Measured, in alternating rounds (A B, B A, ...) so that load from other
jobs on the machine hits both alike:

* POST /score for one customer id (precomputed probability, band, drivers and change, looked up
  in the partition): p50 and p99 latency sequentially over one keep-alive connection, and
  throughput and p99 with 16 concurrent clients (aiohttp, 16 connections) in --slices pairs of
  short runs, the two apps back to back; the throughput ratio is the median of the pairs'
  ratios, which cancels the drift of this machine's speed over tens of seconds;
* POST /score_records for one feature record (LightGBM scored on the spot, with pred_contrib
  drivers): p50 and p99 sequentially, to show what the lookups save.

Targets: /score p99 at most 10 ms sequentially; BentoML within 1.2x of the bare app (latency
ratio and throughput ratio). The clients run in this process on the same cores as the servers,
so absolute figures include client overhead; the ratios are the point.

The first run prepares benchmarks/.data/service_<customers>/ (demo data, a trained champion in a
local MLflow SQLite store, two weekly partitions, the champion imported into a BentoML store
there), which later runs reuse (--workdir to choose another folder).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Module level: FastAPI resolves the (postponed) annotations of the bare app's routes here.
from serving.schemas import (
    ScoreRecordsRequest,
    ScoreRecordsResponse,
    ScoreRequest,
    ScoreResponse,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".data"
TOKEN = "bench-token"
TARGET_P99_MS = 10.0
TARGET_RATIO = 1.2
RUN_DATES = ("2024-12-08", "2024-12-15")


# --------------------------------------------------------------------------- preparation


def prepare(workdir: Path, customers: int) -> dict[str, str]:
    """Demo data, champion, partitions and the BentoML store under workdir (reused)."""
    env = {
        "BENTOML_HOME": str(workdir / "bentoml"),
        "CHURN_SCORES_DIR": str(workdir / "scores"),
        "CHURN_DATA_DIR": str(workdir / "data"),
        "CHURN_API_TOKEN": TOKEN,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    os.environ.update(env)
    done = workdir / "prepared.json"
    if done.is_file():
        return env
    from features.config import config_path_for_data, feature_config_from_file
    from features.io import load_tables
    from ingest.demo_data import DEMO_MODEL_NAME, DemoConfig, write_demo
    from serving.batch import run_scoring
    from serving.model_store import import_champion
    from training.config import train_config_from_file
    from training.pipeline import train_from_tables
    from training.tracking import load_champion

    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    print(f"preparing {workdir} ({customers:,} demo customers, a champion, two partitions) ...")
    data = workdir / "data"
    write_demo(data, DemoConfig(n_customers=customers, seed=7))
    tables = load_tables(data)
    path = config_path_for_data(data)
    uri = env["MLFLOW_TRACKING_URI"]
    cwd = os.getcwd()
    os.chdir(workdir)  # MLflow's artifacts land beside its database
    try:
        train_from_tables(
            tables, feature_config_from_file(path), train_config_from_file(path),
            log=lambda _: None, tracking_uri=uri,
        )  # fmt: skip
        champion = load_champion(DEMO_MODEL_NAME, uri)
        for run_date in RUN_DATES:
            run_scoring(
                tables, run_date, champion.model, champion.version, workdir / "scores",
                model_info={"model_name": DEMO_MODEL_NAME, "model_run_id": champion.run_id},
                log=lambda _: None,
            )  # fmt: skip
        import_champion(DEMO_MODEL_NAME, uri)
    finally:
        os.chdir(cwd)
    done.write_text(json.dumps({"customers": customers}))
    return env


# --------------------------------------------------------------------------- the bare app


def bare_app() -> Any:
    """FastAPI doing what the BentoML service does for /score and /score_records."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from serving.auth import RequestGuard
    from serving.metrics import RequestMetrics
    from serving.model_store import load_served_model, model_tag
    from serving.partitions import PartitionStore
    from serving.schemas import Driver, RecordScore
    from serving.service import customer_score, records_frame

    served = load_served_model(model_tag())
    store = PartitionStore.from_env()
    store.refresh()
    app = FastAPI()
    # The service's own work around the routes, as in the service: bearer token, body limits
    # and content type (RequestGuard), and /metrics (RequestMetrics, the outer one).
    app.add_middleware(RequestGuard)
    app.add_middleware(RequestMetrics, routes=["/score", "/score_records", "/healthz"])

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("\n")

    @app.post("/score", response_model=ScoreResponse)
    async def score(request: ScoreRequest) -> Any:
        partition = store.current()
        results = [customer_score(partition, cid) for cid in request.customer_ids]
        return ScoreResponse(
            as_of=partition.as_of,
            model_version=partition.model_version,
            results=results,
            unknown_ids=[r.customer_id for r in results if r.status == "unknown"],
        )

    @app.post("/score_records", response_model=ScoreRecordsResponse)
    def score_records(request: ScoreRecordsRequest) -> Any:
        from serving.batch import score_features

        frame = records_frame(served, request.records, store.current())
        scored = score_features(served.model, frame, served.version, top=request.top_drivers)
        return ScoreRecordsResponse(
            model_version=served.version,
            results=[
                RecordScore(
                    customer_id=r.customer_id or r.base_customer_id,
                    churn_probability=float(p),
                    risk_band=str(b),
                    drivers=[Driver(**d) for d in ds],
                )
                for r, p, b, ds in zip(
                    request.records,
                    scored["churn_probability"],
                    scored["risk_band"],
                    scored["drivers"],
                    strict=True,
                )
            ],
        )

    return app


def run_bare(port: int) -> None:
    import logging

    import uvicorn

    logging.getLogger("churn.serving").setLevel(logging.WARNING)
    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str, port: int, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    if name == "bentoml":
        cmd = [
            sys.executable, "-m", "bentoml", "serve", "serving.service:ChurnService",
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-app", "--port", str(port)]
    log = (log_dir / f"{name}.log").open("w")
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server on port {port} not ready within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- clients

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def sequential(port: int, path: str, bodies: list[bytes]) -> list[float]:
    """Latency in ms of each request, one after the other on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for body in bodies:
        started = time.perf_counter()
        conn.request("POST", path, body=body, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        out.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    conn.close()
    return out


async def _concurrent(
    port: int, path: str, bodies: list[bytes], clients: int, seconds: float
) -> tuple[list[float], float]:
    import aiohttp

    url = f"http://127.0.0.1:{port}{path}"
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, data=bodies[i % len(bodies)]) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{path} answered {response.status}")
                latencies.append((time.perf_counter() - started) * 1000)
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        wall = time.perf_counter() - started
    return latencies, wall


def concurrent(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    latencies, wall = asyncio.run(_concurrent(port, path, bodies, clients, seconds))
    return {"rps": len(latencies) / wall, "p99": pct(latencies, 99), "p50": pct(latencies, 50)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- main


def load_ids_and_records(env: dict[str, str], n_records: int) -> tuple[list[str], list[bytes]]:
    import pandas as pd

    from serving.batch import list_partitions

    latest = list_partitions(env["CHURN_SCORES_DIR"])[-1][1]
    ids = pd.read_parquet(latest / "scores.parquet", columns=["customer_id"])["customer_id"]
    ids = [str(i) for i in ids]
    rng = random.Random(0)
    records = [
        json.dumps({"records": [{"base_customer_id": rng.choice(ids), "features": {}}]}).encode()
        for _ in range(n_records)
    ]
    return ids, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=2000, help="sequential /score requests")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of one concurrent slice (3 s)"
    )
    parser.add_argument(
        "--slices", type=int, default=10, help="concurrent slices per app, paired (10)"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=300, help="sequential /score_records")
    parser.add_argument("--bare-app", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.bare_app:
        run_bare(args.port)
        return

    workdir = args.workdir or CACHE / f"service_{args.customers}"
    env = prepare(workdir.resolve(), args.customers)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env["OMP_NUM_THREADS"] = "1"  # as `churn serve` and the Bento set it: one thread a request
    ids, records = load_ids_and_records(env, args.records)
    rng = random.Random(1)
    score_bodies = [
        json.dumps({"customer_ids": [rng.choice(ids)]}).encode() for _ in range(args.requests)
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"partition: {len(ids):,} customers; {args.rounds} rounds, alternating order\n")

    log_dir = workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    ports = {"bentoml": free_port(), "fastapi": free_port()}
    procs = {}
    try:
        for name, port in ports.items():
            procs[name] = start(name, port, env, log_dir)
        wait_ready(ports["bentoml"], "/readyz", procs["bentoml"])
        wait_ready(ports["fastapi"], "/healthz", procs["fastapi"])
        results: dict[str, dict[str, list[float]]] = {n: {} for n in ports}
        for port in ports.values():  # warm-up
            sequential(port, "/score", score_bodies[:200])
            sequential(port, "/score_records", records[:20])
            concurrent(port, "/score", score_bodies, args.clients, 1.0)
        for r in range(args.rounds):
            order = list(ports) if r % 2 == 0 else list(reversed(ports))
            for name in order:
                port, res = ports[name], results[name]
                seq = sequential(port, "/score", score_bodies)
                res.setdefault("seq_p50", []).append(pct(seq, 50))
                res.setdefault("seq_p99", []).append(pct(seq, 99))
                rec = sequential(port, "/score_records", records)
                res.setdefault("rec_p50", []).append(pct(rec, 50))
                res.setdefault("rec_p99", []).append(pct(rec, 99))
                print(
                    f"round {r + 1} {name:8s} /score seq p50 {pct(seq, 50):6.2f} ms "
                    f"p99 {pct(seq, 99):6.2f} ms | /score_records seq p50 {pct(rec, 50):6.2f} ms "
                    f"p99 {pct(rec, 99):6.2f} ms",
                    flush=True,
                )
        # Throughput in short slices, the two apps back to back in alternating order: this
        # machine's speed drifts over tens of seconds (other VMs on the host), and a ratio taken
        # within each pair of slices cancels most of that drift.
        for k in range(args.slices):
            order = list(ports) if k % 2 == 0 else list(reversed(ports))
            line = []
            for name in order:
                conc = concurrent(ports[name], "/score", score_bodies, args.clients, args.seconds)
                results[name].setdefault("conc_rps", []).append(conc["rps"])
                results[name].setdefault("conc_p99", []).append(conc["p99"])
                line.append(f"{name} {conc['rps']:6.0f} req/s p99 {conc['p99']:6.2f} ms")
            print(f"slice {k + 1:2d} {args.clients} clients: " + " | ".join(line), flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    report(results, args)


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    b, f = med["bentoml"], med["fastapi"]
    paired = {  # the median of the ratios of runs made back to back
        key: statistics.median(
            (x / y if higher_better else y / x)
            for x, y in zip(results["fastapi"][key], results["bentoml"][key], strict=True)
        )
        for key, higher_better in (("seq_p50", False), ("conc_rps", True), ("conc_p99", False))
    }
    rows = [
        ("/score sequential p50 (ms)", "seq_p50", False),
        ("/score sequential p99 (ms)", "seq_p99", False),
        (f"/score {args.clients} clients throughput (req/s)", "conc_rps", True),
        (f"/score {args.clients} clients p99 (ms)", "conc_p99", False),
        ("/score_records sequential p50 (ms)", "rec_p50", False),
        ("/score_records sequential p99 (ms)", "rec_p99", False),
    ]
    print(
        f"\nmedians over {args.rounds} rounds (sequential) and {args.slices} slices of "
        f"{args.seconds:g} s (concurrent); ratio = how many times worse BentoML is, the median "
        "of the ratios of back-to-back runs where marked *"
    )
    print(f"{'':42s} {'BentoML':>10s} {'FastAPI':>10s} {'ratio':>7s}")
    for label, key, higher_better in rows:
        ratio = paired.get(key, f[key] / b[key] if higher_better else b[key] / f[key])
        mark = "*" if key in paired else ""
        print(f"{label:42s} {b[key]:10.2f} {f[key]:10.2f} {ratio:7.2f}{mark}")
    p99_ok = b["seq_p99"] <= TARGET_P99_MS
    latency_ratio = paired["seq_p50"]
    rps_ratio = paired["conc_rps"]
    print(
        f"\ntargets: /score p99 <= {TARGET_P99_MS:g} ms sequential: "
        f"{'met' if p99_ok else 'MISSED'} ({b['seq_p99']:.2f} ms); BentoML within "
        f"{TARGET_RATIO}x of bare FastAPI: latency {latency_ratio:.2f}x, throughput "
        f"{rps_ratio:.2f}x: {'met' if max(latency_ratio, rps_ratio) <= TARGET_RATIO else 'MISSED'}"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
