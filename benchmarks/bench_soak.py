"""Soak benchmark: the churn service under steady load with abuse mixed in, on loopback.

    uv run python benchmarks/bench_soak.py [--duration 60] [--rate 200] [--window 10]
    uv run python benchmarks/bench_soak.py --duration 600 --rate 200 --window 60   # issue #15

One `bentoml serve` of serving.service:ChurnService (one worker, the champion and partitions of
benchmarks/bench_service.py's prepared folder, copied so that the run can add to them) gets:

* POST /score for one random customer id, open loop at --rate requests a second (a request
  is sent on schedule whether or not earlier ones were answered, so a stall shows as latency);
* every --abuse-every seconds, a burst of abusive requests: malformed JSON, a wrong token,
  made-up HTTP methods and paths (which must not grow /metrics), a body over the size limit,
  and a few connections that send half their headers and wait (cut off by the read timeout);
* at --swap-at (a share of the duration) a new weekly partition appears (written with the
  weekly job's atomic_dir) and the service swaps to it without a restart.

Per window (--window seconds; default 60 s for runs of 5 minutes or more, else 10 s): /score
requests, client errors (no answer, timeouts), 5xx, other non-200, p50 and p99 latency, and the
worker's resident memory (RSS); abusive requests that got a 5xx are counted too. Targets (issue
#15): 0 errors, 0 5xx, memory flat after warm-up (slope under 1 MB a minute, first window
excluded), p99 under 50 ms outside the window of the swap. The clients run in this process on
the same cores as the server, so latencies include client overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_service import (  # noqa: E402
    CACHE,
    TOKEN,
    free_port,
    pct,
    prepare,
    start,
    stop,
    wait_ready,
)

TARGET_P99_MS = 50.0
TARGET_MB_PER_MINUTE = 1.0
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass
class Window:
    """What happened in one window of the run."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    server_errors: int = 0
    other_status: int = 0
    abusive: int = 0
    abusive_5xx: int = 0
    rss_mb: list[float] = field(default_factory=list)


def worker_process(server_pid: int):
    """The BentoML worker (the child process that serves requests) of a `bentoml serve`."""
    import psutil

    children = psutil.Process(server_pid).children(recursive=True)
    workers = [p for p in children if "worker" in " ".join(p.cmdline())]
    if not workers:
        raise RuntimeError(
            f"no worker process under {server_pid}: {[p.cmdline() for p in children]}"
        )
    return max(workers, key=lambda p: p.memory_info().rss)


def add_partition(scores: Path) -> str:
    """A new weekly partition, a week after the newest, written as the weekly job writes one."""
    from datetime import timedelta

    from features.io import atomic_dir
    from serving.batch import list_partitions

    newest_date, newest = list_partitions(scores)[-1]
    as_of = (newest_date.date() + timedelta(days=7)).isoformat()
    with atomic_dir(scores / f"as_of={as_of}") as tmp:
        for path in newest.iterdir():
            if path.name != "run.json":
                shutil.copyfile(path, tmp / path.name)
        info = json.loads((newest / "run.json").read_text())
        info.update(as_of=as_of, previous_as_of=newest_date.date().isoformat())
        (tmp / "run.json").write_text(json.dumps(info))
    return as_of


async def half_open(port: int, hold: float) -> None:
    """A slow client: half a request's headers, then silence, until the server cuts it off."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /score HTTP/1.1\r\nHost: soak\r\nContent-Length: 30\r\n")
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(reader.read(), timeout=hold)
    writer.close()


async def soak(args: argparse.Namespace, port: int, ids: list[str], scores: Path, worker) -> dict:
    import aiohttp

    url = f"http://127.0.0.1:{port}"
    windows: dict[int, Window] = {}
    rng = random.Random(3)
    started = time.perf_counter()
    swap: dict[str, float | str] = {}
    pending: set[asyncio.Task] = set()

    def window(at: float | None = None) -> Window:
        k = int(((time.perf_counter() if at is None else at) - started) // args.window)
        return windows.setdefault(k, Window())

    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def score_one(customer_id: str) -> None:
            sent = time.perf_counter()
            body = json.dumps({"customer_ids": [customer_id]})
            try:
                async with session.post(f"{url}/score", data=body, headers=HEADERS) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                window(sent).errors += 1
                return
            w = window(sent)
            w.latencies.append((time.perf_counter() - sent) * 1000)
            if status >= 500:
                w.server_errors += 1
            elif status != 200:
                w.other_status += 1

        async def abusive(method: str, path: str, data: bytes, headers: dict) -> None:
            w = window()
            w.abusive += 1
            try:
                async with session.request(method, url + path, data=data, headers=headers) as r:
                    await r.read()
                    if r.status >= 500:
                        w.abusive_5xx += 1
            except (aiohttp.ClientError, TimeoutError):
                pass  # a server may close on a body over the limit: not an error

        def burst(k: int) -> list:
            calls = []
            for i in range(args.burst):
                made_up = f"X{k}{i}{rng.randrange(10**6)}"
                calls += [
                    abusive("POST", "/score", b"{not json", HEADERS),
                    abusive("POST", "/score", b'{"customer_ids": ["a"]}',
                            {**HEADERS, "Authorization": "Bearer wrong"}),
                    abusive(made_up, f"/{made_up}", b"", {}),
                    abusive("GET", f"/nowhere/{made_up}", b"", {}),
                ]  # fmt: skip
            calls.append(abusive("POST", "/score", b"x" * (2 * 1024 * 1024), HEADERS))
            calls += [half_open(port, 20.0) for _ in range(args.slow_clients)]
            return calls

        async def sample_memory() -> None:
            while time.perf_counter() - started < args.duration:
                window().rss_mb.append(worker.memory_info().rss / 1e6)
                await asyncio.sleep(1.0)

        memory = asyncio.create_task(sample_memory())
        interval = 1.0 / args.rate
        next_at, next_abuse, n, k = started, started + args.abuse_every, 0, 0
        swap_at = started + args.swap_at * args.duration
        while (now := time.perf_counter()) - started < args.duration:
            if now >= swap_at and "as_of" not in swap:
                swap.update(at=now - started, as_of=await asyncio.to_thread(add_partition, scores))
            if now >= next_abuse:
                for call in burst(k):
                    task = asyncio.create_task(call)
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_abuse += args.abuse_every
                k += 1
            while next_at <= now:
                task = asyncio.create_task(score_one(ids[rng.randrange(len(ids))]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += interval
                n += 1
            await asyncio.sleep(max(0.0, min(next_at, next_abuse) - time.perf_counter()))
        await asyncio.gather(*pending, return_exceptions=True)
        memory.cancel()
        async with session.get(f"{url}/readyz") as r:
            ready = await r.json()
        async with session.get(f"{url}/metrics") as r:
            metrics_bytes = len(await r.read())
    return {"windows": windows, "swap": swap, "sent": n, "ready": ready,
            "metrics_bytes": metrics_bytes}  # fmt: skip


def report(result: dict, args: argparse.Namespace) -> bool:
    windows: dict[int, Window] = result["windows"]
    swap = result["swap"]
    swap_window = int(swap["at"] // args.window) if swap else None
    print(f"\n{'window':>8s} {'/score':>7s} {'errors':>6s} {'5xx':>4s} {'other':>5s} "
          f"{'p50 ms':>7s} {'p99 ms':>7s} {'abusive':>7s} {'ab.5xx':>6s} {'RSS MB':>7s}")  # fmt: skip
    rss_points = []
    for k in sorted(windows):
        w = windows[k]
        rss = statistics.median(w.rss_mb) if w.rss_mb else float("nan")
        if w.rss_mb:
            rss_points.append(((k + 0.5) * args.window / 60, rss))
        mark = " swap" if k == swap_window else ""
        print(
            f"{k * args.window:>6.0f} s {len(w.latencies):7d} {w.errors:6d} {w.server_errors:4d} "
            f"{w.other_status:5d} {pct(w.latencies, 50) if w.latencies else 0:7.2f} "
            f"{pct(w.latencies, 99) if w.latencies else 0:7.2f} {w.abusive:7d} "
            f"{w.abusive_5xx:6d} {rss:7.1f}{mark}"
        )
    errors = sum(w.errors for w in windows.values())
    server_errors = sum(w.server_errors + w.abusive_5xx for w in windows.values())
    others = sum(w.other_status for w in windows.values())
    steady = [k for k in windows if k != swap_window and k > 0]
    worst_p99 = max((pct(windows[k].latencies, 99) for k in steady if windows[k].latencies),
                    default=float("nan"))  # fmt: skip
    after_warmup = rss_points[1:]
    slope = (
        statistics.linear_regression([t for t, _ in after_warmup], [m for _, m in after_warmup])[0]
        if len(after_warmup) >= 2
        else float("nan")
    )
    print(f"\nsent {result['sent']:,} /score requests; swap to {swap.get('as_of')} at "
          f"{swap.get('at', float('nan')):.0f} s; served after the run: {result['ready'].get('as_of')}; "
          f"/metrics {result['metrics_bytes']:,} bytes")  # fmt: skip
    checks = {
        "errors": (errors == 0, f"{errors}"),
        "5xx": (server_errors == 0, f"{server_errors}"),
        "other non-200 on /score": (others == 0, f"{others}"),
        f"p99 outside the swap < {TARGET_P99_MS:g} ms": (worst_p99 < TARGET_P99_MS,
                                                          f"worst {worst_p99:.2f} ms"),
        f"memory slope after warm-up < {TARGET_MB_PER_MINUTE:g} MB/min": (
            abs(slope) < TARGET_MB_PER_MINUTE, f"{slope:+.2f} MB/min"),
        "swapped to the new partition": (result["ready"].get("as_of") == swap.get("as_of"),
                                         str(result["ready"].get("as_of"))),
    }  # fmt: skip
    for name, (ok, figure) in checks.items():
        print(f"  {'met   ' if ok else 'MISSED'} {name}: {figure}")
    return all(ok for ok, _ in checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (issue: 600)")
    parser.add_argument("--rate", type=float, default=200.0, help="/score requests a second")
    parser.add_argument("--window", type=float, default=None, help="seconds per figure row")
    parser.add_argument("--swap-at", type=float, default=0.5, help="share of the duration")
    parser.add_argument("--abuse-every", type=float, default=5.0, help="seconds between bursts")
    parser.add_argument("--burst", type=int, default=10, help="abusive requests of each kind")
    parser.add_argument("--slow-clients", type=int, default=5, help="half-open connections")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.window is None:
        args.window = 60.0 if args.duration >= 300 else 10.0
    workdir = (args.workdir or CACHE / f"service_{args.customers}").resolve()
    env = prepare(workdir, args.customers)
    scores = workdir / "soak_scores"
    if scores.exists():
        shutil.rmtree(scores)
    shutil.copytree(workdir / "scores", scores)
    env.update({
        "CHURN_SCORES_DIR": str(scores), "BENTOML_DO_NOT_TRACK": "True", "OMP_NUM_THREADS": "1",
        "CHURN_PARTITION_CHECK_SECONDS": "1", "CHURN_READ_TIMEOUT_SECONDS": "5",
    })  # fmt: skip
    import pandas as pd

    from serving.batch import list_partitions

    ids = pd.read_parquet(list_partitions(scores)[-1][1] / "scores.parquet")["customer_id"]
    ids = [str(i) for i in ids]
    log_dir = workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    port = free_port()
    print(f"soak: {args.duration:g} s at {args.rate:g} req/s on 127.0.0.1:{port}, "
          f"{len(ids):,} customers; load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    proc = start("bentoml", port, env, log_dir)
    try:
        wait_ready(port, "/readyz", proc)
        worker = worker_process(proc.pid)
        result = asyncio.run(soak(args, port, ids, scores, worker))
    finally:
        stop(proc)
    ok = report(result, args)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
