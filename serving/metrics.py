"""The service's /metrics probe: request counts and latencies in the Prometheus text format.

``RequestMetrics`` is a plain ASGI middleware that counts every HTTP request by route, method
and status, keeps a latency histogram per route, and answers ``GET /metrics`` itself. It takes
the place of BentoML's own metrics middleware (switched off in the service's config), which
writes each update through Prometheus' multi-process files and cost about a tenth of the
service's throughput on /score (benchmarks/bench_service.py: 1.63x behind the bare app with it,
1.49x without). The counts live in the worker's
memory: the service runs one worker per process (scale out with replicas), so a scrape sees all
of that process's requests.

Every label takes a bounded set of values, so that no client can grow the server's memory or the
scrape: a path outside the known routes counts as ``other``, a method outside the standard ones
as ``OTHER``, and the status is a number. Other parts of the service add their own lines (for
example the partition's age and load errors) with ``set_source``.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METRICS_PATH = "/metrics"
PREFIX = "churn_http"
# Seconds: /score answers in about a millisecond, /segments may take seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
OTHER_ROUTE = "other"  # any path outside the known routes: keeps the label set bounded
OTHER_METHOD = "OTHER"  # any method outside the standard ones (made-up names): the same
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SOURCES: dict[str, Callable[[], list[str]]] = {}


_STATUS: list[Callable[[], dict[str, Any]]] = []  # the readiness status, once the service is up
READYZ_PATH = "/readyz"
JSON_TYPE = b"application/json"


def set_source(name: str, lines: Callable[[], list[str]]) -> None:
    """Add (or replace) a named source of exposition lines shown after the request metrics."""
    _SOURCES[name] = lines


def set_status(status: Callable[[], dict[str, Any]]) -> None:
    """The function ReadinessProbe answers /readyz with: a dict with 'ready' and the details
    (it must not block: a probe never hangs)."""
    _STATUS[:] = [status]


class ReadinessProbe:
    """ASGI middleware: GET /readyz answers the status given to set_status as JSON, 200 when it
    says ready, else 503 (the served partition, its age, the last load error and the model,
    instead of an empty line). Before any status is set, the app answers."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != READYZ_PATH
            or scope["method"] not in ("GET", "HEAD")
            or not _STATUS
        ):
            await self.app(scope, receive, send)
            return
        try:
            status = _STATUS[0]()
        except Exception as err:  # a probe answers, whatever went wrong
            status = {"ready": False, "error": f"{type(err).__name__}: {err}"}
        body = json.dumps(status, default=str, sort_keys=True).encode("utf-8")
        headers = [(b"content-type", JSON_TYPE), (b"content-length", str(len(body)).encode())]
        code = 200 if status.get("ready") else 503
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


class RequestMetrics:
    """ASGI middleware: count and time requests per route; serve them at GET /metrics."""

    def __init__(self, app: ASGIApp, routes: Iterable[str] = ()):
        self.app = app
        self.routes = frozenset(routes)
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.in_progress: dict[str, int] = {}
        # route -> (count per bucket, with +Inf last; sum of seconds)
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == METRICS_PATH and scope["method"] == "GET":
            await self._reply(send)
            return
        route = path if path in self.routes else OTHER_ROUTE
        status = 500  # what the client sees if the app fails before it answers
        start = time.perf_counter()
        self.in_progress[route] = self.in_progress.get(route, 0) + 1

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            method = scope["method"]
            method = method if method in KNOWN_METHODS else OTHER_METHOD
            self._record(route, method, status, time.perf_counter() - start)

    def _record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.in_progress[route] -= 1
        counts, total = self.latency.setdefault(route, ([0] * (len(BUCKETS) + 1), [0.0]))
        counts[bisect_left(BUCKETS, seconds)] += 1
        total[0] += seconds

    def exposition(self) -> str:
        """The Prometheus text format (version 0.0.4) of everything counted so far."""
        lines = [
            f"# HELP {PREFIX}_requests_total HTTP requests answered, by route, method and status.",
            f"# TYPE {PREFIX}_requests_total counter",
        ]
        for (route, method, status), n in sorted(self.requests.items()):
            labels = f'route="{route}",method="{method}",status="{status}"'
            lines.append(f"{PREFIX}_requests_total{{{labels}}} {n}")
        lines += [
            f"# HELP {PREFIX}_requests_in_progress HTTP requests being answered now, by route.",
            f"# TYPE {PREFIX}_requests_in_progress gauge",
        ]
        lines += [
            f'{PREFIX}_requests_in_progress{{route="{route}"}} {n}'
            for route, n in sorted(self.in_progress.items())
        ]
        lines += [
            f"# HELP {PREFIX}_request_duration_seconds Time to answer a request, by route.",
            f"# TYPE {PREFIX}_request_duration_seconds histogram",
        ]
        for route, (counts, total) in sorted(self.latency.items()):
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'{PREFIX}_request_duration_seconds_bucket{{route="{route}",le="{le}"}} '
                    f"{cumulative}"
                )
            lines.append(f'{PREFIX}_request_duration_seconds_sum{{route="{route}"}} {total[0]}')
            lines.append(f'{PREFIX}_request_duration_seconds_count{{route="{route}"}} {cumulative}')
        lines += [
            f"# HELP {PREFIX}_start_time_seconds When this worker started (Unix time).",
            f"# TYPE {PREFIX}_start_time_seconds gauge",
            f"{PREFIX}_start_time_seconds {self.started}",
        ]
        for source in list(_SOURCES.values()):
            lines += source()
        return "\n".join(lines) + "\n"

    async def _reply(self, send: Send) -> None:
        body = self.exposition().encode("utf-8")
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
