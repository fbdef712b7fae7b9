"""Hardening of /metrics (issue #15, item 1): no client can grow the label set, whatever the
method names and paths it makes up; other parts add their lines through set_source."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse

from serving import metrics as metrics_module
from serving.metrics import OTHER_METHOD, OTHER_ROUTE, RequestMetrics, set_source


async def answer(scope, receive, send):
    await PlainTextResponse("no", status_code=405)(scope, receive, send)


def call(app, method: str, path: str) -> None:
    """One request straight through the ASGI interface (a test client refuses odd methods)."""
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    asyncio.run(app(scope, receive, send))


def exposition_series(metrics: RequestMetrics) -> int:
    return sum(len(f.samples) for f in text_string_to_metric_families(metrics.exposition()))


def test_made_up_methods_and_paths_fold_into_one_label_each():
    metrics = RequestMetrics(answer, routes=["/score"])
    call(metrics, "POST", "/score")
    before = exposition_series(metrics)
    for i in range(2000):
        call(metrics, f"FOO{i}", f"/made-up/{i}")
    series = exposition_series(metrics)
    assert series - before <= 1 + len(metrics_module.BUCKETS) + 4  # one new route, one new key
    assert metrics.requests[(OTHER_ROUTE, OTHER_METHOD, 405)] == 2000
    assert len(metrics.requests) == 2
    call(metrics, "GET", "/made-up")
    call(metrics, "DELETE", "/score")
    assert (OTHER_ROUTE, "GET", 405) in metrics.requests
    assert ("/score", "DELETE", 405) in metrics.requests


def test_sources_add_their_lines_to_the_page():
    metrics = RequestMetrics(answer, routes=["/score"])
    set_source("test-source", lambda: ["# TYPE churn_test_gauge gauge", "churn_test_gauge 7"])
    try:
        families = {f.name: f for f in text_string_to_metric_families(metrics.exposition())}
        assert families["churn_test_gauge"].samples[0].value == 7
    finally:
        metrics_module._SOURCES.pop("test-source")
