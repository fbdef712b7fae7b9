"""Hardening against slow clients (issue #15, item 2): headers or a body trickled past the read
timeout are cut off; whole requests and keep-alive connections are not affected."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn

from serving.timeouts import (
    cancel_answered_request_timers,
    install_read_timeout,
    read_timeout_from_env,
)

TIMEOUT = 0.5


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"got %d bytes" % len(body)
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def server():
    install_read_timeout(TIMEOUT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="h11", log_level="error",
                            lifespan="off", timeout_keep_alive=30)  # fmt: skip
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started
    yield port
    running.should_exit = True
    thread.join(10)


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    return conn


def _read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 5 s pass)."""
    data = b""
    while True:
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            return data + b"<still open>"
        if not chunk:
            return data
        data += chunk


def _answer(conn: socket.socket) -> bytes:
    """One whole response (headers and the body its content-length announces)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(4096)
    return body


def test_headers_trickled_past_the_timeout_get_408_and_a_closed_connection(server):
    with _connect(server) as conn:
        started = time.monotonic()
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
        answer = _read_all(conn)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
        assert TIMEOUT * 0.8 < time.monotonic() - started < TIMEOUT + 3


def test_a_connection_that_sends_nothing_is_closed(server):
    with _connect(server) as conn:
        assert _read_all(conn).startswith(b"HTTP/1.1 408")


def test_a_body_trickled_past_the_timeout_is_cut_off(server):
    with _connect(server) as conn:
        started = time.monotonic()
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = _read_all(conn)
        assert b"<still open>" not in answer and b"got" not in answer
        assert time.monotonic() - started < TIMEOUT + 3


def test_whole_requests_on_a_keep_alive_connection_are_answered(server):
    with _connect(server) as conn:
        for _ in range(3):
            conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            assert _answer(conn) == b"got 5 bytes"
            time.sleep(TIMEOUT * 1.5)  # idle between requests longer than the read timeout
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
        time.sleep(TIMEOUT / 3)  # a body split in two reads, within the time
        conn.sendall(b"abcd")
        assert _answer(conn) == b"got 4 bytes"


def test_the_timeout_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("CHURN_READ_TIMEOUT_SECONDS", raising=False)
    assert read_timeout_from_env() == 10.0
    monkeypatch.setenv("CHURN_READ_TIMEOUT_SECONDS", "2.5")
    assert read_timeout_from_env() == 2.5
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("CHURN_READ_TIMEOUT_SECONDS", bad)
        with pytest.raises(ValueError, match="CHURN_READ_TIMEOUT_SECONDS must be a positive"):
            read_timeout_from_env()


def run_through_timeout_middleware(app, timeout: float) -> tuple[list[dict], list]:
    """Call BentoML's TimeoutMiddleware (as patched by the service) around `app` once; the
    messages sent and the timers it scheduled."""
    import asyncio

    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    cancel_answered_request_timers()
    middleware = TimeoutMiddleware(app, timeout=timeout)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def main():
        loop = asyncio.get_running_loop()
        timers = []
        call_later = loop.call_later

        def recording_call_later(*args, **kwargs):
            timers.append(call_later(*args, **kwargs))
            return timers[-1]

        loop.call_later = recording_call_later
        scope = {"type": "http", "method": "POST", "path": "/score", "headers": []}
        await middleware(scope, receive, send)
        return timers

    return sent, asyncio.run(main())


def test_an_answered_request_leaves_no_timer_behind():
    """BentoML's handler timeout scheduled a 60 s timer per request and never cancelled it:
    12,000 live timers at 200 requests a second, walked by every full garbage collection."""
    sent, timers = run_through_timeout_middleware(app, timeout=60)
    assert sent[0]["status"] == 200
    assert len(timers) == 1 and timers[0].cancelled()


def test_a_handler_past_the_timeout_still_gets_a_504():
    import asyncio

    async def slow(scope, receive, send):
        await asyncio.sleep(30)

    sent, _ = run_through_timeout_middleware(slow, timeout=0.05)
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {  # the service's one error shape
        "error": {
            "code": "timeout",
            "message": "not able to process the request in 0.05 seconds",
            "field": None,
            "details": [],
        }
    }
