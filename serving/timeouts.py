"""Cut off clients that send a request too slowly (slowloris: headers or a body trickled for
minutes), so that they cannot hold the server's connections.

BentoML 1.4 runs uvicorn with its h11 protocol and passes no read timeout: uvicorn's
``timeout_keep_alive`` only closes idle connections between requests, h11 bounds the size of
the headers (16 KiB) but not the time they take, and BentoML's ``traffic.timeout`` bounds the
handler, which only starts once the headers are in. So the request's read is bounded here, on
uvicorn's h11 protocol class (the worker's only HTTP protocol; httptools is not installed):
a deadline is set when a connection opens and when a request's first bytes arrive, and
cancelled once the request (headers and body) is complete. A client still sending when it
passes gets ``408 Request Timeout`` if its headers were not complete, and the connection is
closed in every case (the handler, if it was waiting for the body, sees a disconnect).

A whole request that arrives in one read (nearly all of them) never sets a timer, so the cost
on /score is a state check per read. The time is CHURN_READ_TIMEOUT_SECONDS (default 10 s:
the largest allowed body, 1 MiB, at 100 KB/s).

``cancel_answered_request_timers`` fixes BentoML's handler timeout, which left a live timer per
request for the whole timeout (see there: it was the soak benchmark's p99 tail).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

READ_TIMEOUT_ENV = "CHURN_READ_TIMEOUT_SECONDS"
DEFAULT_READ_TIMEOUT = 10.0
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 40\r\n\r\nthe request was not sent in time: closed"
)
_settings = {"seconds": DEFAULT_READ_TIMEOUT, "installed": False}


def read_timeout_from_env() -> float:
    """CHURN_READ_TIMEOUT_SECONDS as a positive number of seconds (ValueError otherwise)."""
    raw = os.environ.get(READ_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_READ_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{READ_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return seconds


def install_read_timeout(seconds: float) -> None:
    """Bound the time a client may take to send a request (headers and body) on every uvicorn
    h11 connection opened from now on in this process."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    _settings["seconds"] = float(seconds)
    if _settings["installed"]:
        return
    connection_made = H11Protocol.connection_made
    data_received = H11Protocol.data_received
    connection_lost = H11Protocol.connection_lost

    def connection_made_with_deadline(self: Any, transport: asyncio.Transport) -> None:
        connection_made(self, transport)
        _arm(self)

    def data_received_with_deadline(self: Any, data: bytes) -> None:
        data_received(self, data)
        _follow(self)

    def connection_lost_without_deadline(self: Any, exc: Exception | None) -> None:
        _disarm(self)
        connection_lost(self, exc)

    H11Protocol.connection_made = connection_made_with_deadline
    H11Protocol.data_received = data_received_with_deadline
    H11Protocol.connection_lost = connection_lost_without_deadline
    _settings["installed"] = True


def _arm(protocol: Any) -> None:
    if getattr(protocol, "_read_deadline", None) is None:
        protocol._read_deadline = protocol.loop.call_later(_settings["seconds"], _expire, protocol)


def _disarm(protocol: Any) -> None:
    deadline = getattr(protocol, "_read_deadline", None)
    if deadline is not None:
        deadline.cancel()
        protocol._read_deadline = None


def _follow(protocol: Any) -> None:
    """After a read: a request still incomplete keeps (or starts) its deadline; a complete one
    cancels it (the keep-alive timeout then covers the wait for the next request)."""
    import h11

    state = protocol.conn.their_state
    partial_headers = state is h11.IDLE and bool(protocol.conn.trailing_data[0])
    if state is h11.SEND_BODY or partial_headers:
        _arm(protocol)
    else:
        _disarm(protocol)


def _expire(protocol: Any) -> None:
    import h11

    protocol._read_deadline = None
    transport = protocol.transport
    if transport.is_closing():
        return
    state = protocol.conn.their_state
    if state is h11.IDLE and not (protocol.cycle and not protocol.cycle.response_complete):
        if not protocol.conn.trailing_data[0] and protocol.cycle is not None:
            return  # idle between requests: the keep-alive timeout's business
        transport.write(TIMEOUT_RESPONSE)  # headers not complete: nobody else answers
        transport.close()
    elif state is h11.SEND_BODY:
        transport.close()  # the handler waiting for the body sees a disconnect


def cancel_answered_request_timers() -> None:
    """Make BentoML's handler timeout (``traffic.timeout``) cancel its timer once a request is
    answered, in this process. BentoML 1.4's TimeoutMiddleware schedules a timer per request
    (``loop.call_later(timeout, ...)``, 60 s here) and never cancels it, so every request
    leaves a timer, its callback, its context and a future alive for the whole timeout: ~12,000
    timers (60,000 objects) at 200 requests a second. Those live long enough to reach the
    garbage collector's oldest generation, and its full collections, every few seconds, then
    walked them all: 50-430 ms of CPU each (pauses seen as the soak's p99 of 60-140 ms). A
    cancelled timer drops its callback at once and asyncio discards it.

    Same behaviour otherwise: the handler runs in its own task, and a 504 after the timeout
    when nothing was sent yet, now in the service's one error shape (code "timeout")."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from starlette.responses import Response

    from serving.auth import error_json

    if getattr(TimeoutMiddleware.__call__, "_cancels_its_timer", False):
        return

    async def call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if task.cancel():
                message = f"not able to process the request in {self.timeout} seconds"
                resp = Response(
                    error_json("timeout", message, None),
                    status_code=504,
                    media_type="application/json",
                )
                await resp(scope, receive, send)
        else:
            timer.cancel()  # answered: the timeout no longer applies
            await task
        finally:
            timer.cancel()

    call._cancels_its_timer = True  # type: ignore[attr-defined]
    TimeoutMiddleware.__call__ = call
