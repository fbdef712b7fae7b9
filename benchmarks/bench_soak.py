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
requests, client errors (no answer, timeouts), 5xx, other non-200, p50 and p99 latency as the
client sees it, the p99 of requests sent at least --calm-after seconds after a burst, the share
of /score requests the server's own histogram (/metrics, scraped at each window's end) counts
slower than 25 and 50 ms, how late the client's own 10 ms timer fires (the clients run in this
process on the same cores as the server), and the worker's resident memory (RSS); abusive
requests that got a 5xx are counted too.

Targets (issue #15): 0 errors, 0 5xx, p99 under 50 ms outside the window of the swap (checked
on the client's p99, the stricter figure; the server's share over 50 ms must be under 1 %
too), and memory flat after warm-up: the RSS slope under 1 MB a minute both before the swap
(after the first window) and after it (from the end of the swap's window), and the step across
the swap no larger than what one more copy of the partition with its data folder takes in a
fresh process (printed beside it).
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
import subprocess
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
from serving.metrics import BUCKETS  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_MB_PER_MINUTE = 1.0
SERVER_BUCKETS = BUCKETS
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
    calm: list[float] = field(default_factory=list)  # latencies of requests away from bursts
    lag_ms: list[float] = field(default_factory=list)  # the client's own event loop lag
    server: list[int] | None = None  # /score requests per server-side histogram bucket


def score_buckets(exposition: str) -> list[int]:
    """/score requests per latency bucket of serving.metrics (cumulative counts made plain)."""
    prefix = 'churn_http_request_duration_seconds_bucket{route="/score",le="'
    cumulative = [int(line.rsplit(" ", 1)[1]) for line in exposition.splitlines()
                  if line.startswith(prefix)]  # fmt: skip
    if len(cumulative) != len(SERVER_BUCKETS) + 1:
        raise RuntimeError(f"/metrics has {len(cumulative)} /score buckets, expected "
                           f"{len(SERVER_BUCKETS) + 1}")  # fmt: skip
    return [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]


def share_over(buckets: list[int] | None, ms: float) -> float:
    """Share of the requests in a server-side histogram slower than `ms` (a bucket bound)."""
    if not buckets or not sum(buckets):
        return float("nan")
    i = SERVER_BUCKETS.index(ms / 1000) + 1
    return sum(buckets[i:]) / sum(buckets)


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
    rss_samples: list[tuple[float, float]] = []  # (seconds into the run, worker RSS MB)
    last_burst = [started - args.calm_after]  # when the latest burst of abuse was sent
    histograms: dict[int, list[int]] = {}  # window -> server-side /score buckets at its end

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
            ms = (time.perf_counter() - sent) * 1000
            w.latencies.append(ms)
            if sent - last_burst[0] >= args.calm_after:
                w.calm.append(ms)
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
                mb = worker.memory_info().rss / 1e6
                window().rss_mb.append(mb)
                rss_samples.append((time.perf_counter() - started, mb))
                await asyncio.sleep(1.0)

        async def watch_loop() -> None:
            """The client's own scheduling delay: how late a 10 ms sleep wakes up."""
            while time.perf_counter() - started < args.duration:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                window(before).lag_ms.append((time.perf_counter() - before - 0.01) * 1000)

        async def scrape_histograms() -> None:
            """The server's own /score latency histogram at the end of each window."""
            k = 0
            while True:
                k += 1
                await asyncio.sleep(max(0.0, started + k * args.window - time.perf_counter()))
                async with session.get(f"{url}/metrics") as r:
                    histograms[k - 1] = score_buckets(await r.text())
                if time.perf_counter() - started >= args.duration:
                    return

        memory = asyncio.create_task(sample_memory())
        lag = asyncio.create_task(watch_loop())
        scraper = asyncio.create_task(scrape_histograms())
        interval = 1.0 / args.rate
        next_at, next_abuse, n, k = started, started + args.abuse_every, 0, 0
        swap_at = started + args.swap_at * args.duration
        while (now := time.perf_counter()) - started < args.duration:
            if now >= swap_at and "as_of" not in swap:
                swap.update(at=now - started, as_of=await asyncio.to_thread(add_partition, scores))
            if now >= next_abuse:
                last_burst[0] = now
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
        lag.cancel()
        await scraper
        async with session.get(f"{url}/readyz") as r:
            ready = await r.json()
        async with session.get(f"{url}/metrics") as r:
            metrics_bytes = len(await r.read())
    previous = [0] * (len(SERVER_BUCKETS) + 1)
    for k in sorted(histograms):
        if k in windows:
            windows[k].server = [a - b for a, b in zip(histograms[k], previous, strict=True)]
        previous = histograms[k]
    return {"windows": windows, "swap": swap, "sent": n, "ready": ready,
            "metrics_bytes": metrics_bytes, "rss": rss_samples}  # fmt: skip


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points in MB a minute; NaN with under 10 s of them."""
    if len(points) < 2 or points[-1][0] - points[0][0] < 10:
        return float("nan")
    return statistics.linear_regression([t / 60 for t, _ in points], [m for _, m in points])[0]


def memory_figures(samples: list[tuple[float, float]], swap_at: float | None,
                   args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    """RSS slope before the swap (after the first window, the warm-up) and after it (from the
    end of the swap's window), and the step across the swap: the median of the first 10 s after
    against the last 10 s before."""
    nan = float("nan")
    if swap_at is None:
        after_warmup = [(t, m) for t, m in samples if t >= args.window]
        return {"before": slope_per_minute(after_warmup), "after": nan, "step": nan}
    swap_end = (swap_at // args.window + 1) * args.window
    before = [(t, m) for t, m in samples if args.window <= t < swap_at]
    after = [(t, m) for t, m in samples if t >= swap_end]
    step = nan
    if before and after:
        last = [m for t, m in before if t >= before[-1][0] - 10]
        first = [m for t, m in after if t < after[0][0] + 10]
        step = statistics.median(first) - statistics.median(last)
    return {"before": slope_per_minute(before), "after": slope_per_minute(after), "step": step,
            "rss_before": before[-1][1] if before else nan,
            "rss_end": after[-1][1] if after else nan}  # fmt: skip


def partition_footprint(partition: Path, data_dir: Path | None) -> float:
    """MB one more copy of a partition (with its data folder's tables, as the service loads
    it) adds to a fresh process that already holds one: what a swap may legitimately add."""
    code = (
        "import sys; from pathlib import Path\n"
        "from serving.partitions import load_partition, settle_heap\n"
        "def rss(): return int(Path('/proc/self/statm').read_text().split()[1]) * 4096 / 1e6\n"
        "data = Path(sys.argv[2]) if sys.argv[2] else None\n"
        "held = [load_partition(Path(sys.argv[1]), data)]; settle_heap(); before = rss()\n"
        "held.append(load_partition(Path(sys.argv[1]), data)); settle_heap()\n"
        "print(rss() - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(partition), str(data_dir or "")],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.split()[-1])


def report(result: dict, args: argparse.Namespace, footprint: float) -> bool:
    windows: dict[int, Window] = result["windows"]
    swap = result["swap"]
    swap_window = int(swap["at"] // args.window) if swap else None
    print(f"\n{'window':>8s} {'/score':>7s} {'errors':>6s} {'5xx':>4s} {'other':>5s} "
          f"{'p50 ms':>7s} {'p99 ms':>7s} {'calm p99':>8s} {'srv>25ms':>8s} {'srv>50ms':>8s} "
          f"{'lag p99':>7s} {'abusive':>7s} {'ab.5xx':>6s} {'RSS MB':>7s}")  # fmt: skip
    for k in sorted(windows):
        w = windows[k]
        rss = statistics.median(w.rss_mb) if w.rss_mb else float("nan")
        mark = " swap" if k == swap_window else ""
        print(
            f"{k * args.window:>6.0f} s {len(w.latencies):7d} {w.errors:6d} {w.server_errors:4d} "
            f"{w.other_status:5d} {pct(w.latencies, 50) if w.latencies else 0:7.2f} "
            f"{pct(w.latencies, 99) if w.latencies else 0:7.2f} "
            f"{pct(w.calm, 99) if w.calm else float('nan'):8.2f} "
            f"{share_over(w.server, 25) * 100:7.2f}% {share_over(w.server, 50) * 100:7.2f}% "
            f"{pct(w.lag_ms, 99) if w.lag_ms else float('nan'):7.2f} {w.abusive:7d} "
            f"{w.abusive_5xx:6d} {rss:7.1f}{mark}"
        )
    errors = sum(w.errors for w in windows.values())
    server_errors = sum(w.server_errors + w.abusive_5xx for w in windows.values())
    others = sum(w.other_status for w in windows.values())
    steady = [k for k in windows if k != swap_window and k > 0 and windows[k].latencies]
    worst_p99 = max((pct(windows[k].latencies, 99) for k in steady), default=float("nan"))
    worst_calm = max((pct(windows[k].calm, 99) for k in steady if windows[k].calm),
                     default=float("nan"))  # fmt: skip
    worst_server = max((share_over(windows[k].server, TARGET_P99_MS) for k in steady),
                       default=float("nan"))  # fmt: skip
    memory = memory_figures(result["rss"], swap.get("at"), args)
    print(f"\nsent {result['sent']:,} /score requests; swap to {swap.get('as_of')} at "
          f"{swap.get('at', float('nan')):.0f} s; served after the run: {result['ready'].get('as_of')}; "
          f"/metrics {result['metrics_bytes']:,} bytes")  # fmt: skip
    print("latency: p99 is the client's (this process, on the same cores as the server); calm "
          f"p99 leaves out requests sent within {args.calm_after:g} s of a burst of abuse; "
          "srv>Nms is the share of /score requests the server's own histogram (serving.metrics, "
          "from the request's arrival in the app to its answer) counts slower than N ms: p99 "
          "under 50 ms means under 1 % there; lag p99 is how late the client's own 10 ms "
          "timer fires.")  # fmt: skip
    print(f"memory: worker RSS {memory.get('rss_before', float('nan')):.1f} MB before the swap, "
          f"{memory.get('rss_end', float('nan')):.1f} MB at the end; slope before the swap "
          f"{memory['before']:+.2f} MB/min, after it {memory['after']:+.2f} MB/min; step at the "
          f"swap {memory['step']:+.1f} MB; one more copy of the partition with its data "
          f"(fresh process) {footprint:.1f} MB")  # fmt: skip
    checks = {
        "errors": (errors == 0, f"{errors}"),
        "5xx": (server_errors == 0, f"{server_errors}"),
        "other non-200 on /score": (others == 0, f"{others}"),
        f"server p99 outside the swap < {TARGET_P99_MS:g} ms (share over it < 1 %)": (
            worst_server < 0.01, f"worst window {worst_server * 100:.2f} %"),
        f"client p99 outside the swap < {TARGET_P99_MS:g} ms": (
            worst_p99 < TARGET_P99_MS,
            f"worst {worst_p99:.2f} ms (away from bursts {worst_calm:.2f} ms)"),
        f"memory slope before the swap < {TARGET_MB_PER_MINUTE:g} MB/min": (
            abs(memory["before"]) < TARGET_MB_PER_MINUTE, f"{memory['before']:+.2f} MB/min"),
        f"memory slope after the swap < {TARGET_MB_PER_MINUTE:g} MB/min": (
            abs(memory["after"]) < TARGET_MB_PER_MINUTE, f"{memory['after']:+.2f} MB/min"),
        "memory step at the swap <= one partition's footprint": (
            memory["step"] <= footprint, f"{memory['step']:+.1f} MB vs {footprint:.1f} MB"),
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
    parser.add_argument(
        "--calm-after",
        type=float,
        default=1.0,
        help="seconds after a burst from which a request counts as calm",
    )
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
    newest = list_partitions(scores)[-1][1]
    footprint = partition_footprint(newest, Path(env["CHURN_DATA_DIR"]))
    ok = report(result, args, footprint)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
