"""The /metrics probe (serving.metrics): counts, statuses and latencies per route."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from serving.metrics import BUCKETS, OTHER_ROUTE, RequestMetrics


async def answer(scope, receive, send):
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("the app failed before answering")
    status = 404 if path == "/missing" else 200
    await PlainTextResponse("ok", status_code=status)(scope, receive, send)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_are_counted_by_route_method_and_status():
    metrics = RequestMetrics(answer, routes=["/score", "/missing"])
    client = TestClient(metrics)
    for _ in range(3):
        client.post("/score", json={})
    client.get("/missing")
    client.get("/not-a-route")
    page = client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(page.text)

    def count(route, method, status):
        labels = frozenset({"route": route, "method": method, "status": status}.items())
        return got.get(("churn_http_requests_total", labels))

    assert count("/score", "POST", "200") == 3
    assert count("/missing", "GET", "404") == 1
    assert count(OTHER_ROUTE, "GET", "200") == 1  # unknown paths share one label value
    assert not any("metrics" in dict(labels).get("route", "") for _, labels in got)


def test_the_latency_histogram_is_cumulative_and_adds_up():
    metrics = RequestMetrics(answer, routes=["/score"])
    client = TestClient(metrics)
    for _ in range(5):
        client.post("/score", json={})
    got = samples(client.get("/metrics").text)
    route = ("route", "/score")
    buckets = [
        got[("churn_http_request_duration_seconds_bucket", frozenset({route, ("le", le)}))]
        for le in [*(str(b) for b in BUCKETS), "+Inf"]
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 5
    assert got[("churn_http_request_duration_seconds_count", frozenset({route}))] == 5
    assert got[("churn_http_request_duration_seconds_sum", frozenset({route}))] > 0
    assert got[("churn_http_requests_in_progress", frozenset({route}))] == 0


def test_a_request_the_app_fails_on_is_counted_as_500():
    metrics = RequestMetrics(answer, routes=["/boom"])
    with pytest.raises(RuntimeError):
        TestClient(metrics).get("/boom")
    labels = frozenset({"route": "/boom", "method": "GET", "status": "500"}.items())
    assert samples(metrics.exposition())[("churn_http_requests_total", labels)] == 1
    assert metrics.in_progress["/boom"] == 0
