"""The service's front door: bearer token, body size and content type, before any route runs.

``RequestGuard`` is a plain ASGI middleware (added to the BentoML service with
``add_asgi_middleware``). For every path except the open ones (health, readiness and metrics
probes, and the API docs) it requires ``Authorization: Bearer <token>`` with the token from
CHURN_API_TOKEN (compared in constant time), answering 401 otherwise; then, for requests with a
body, it answers 415 to anything but JSON and 413 to a body over CHURN_MAX_BODY_BYTES (checked on
Content-Length and again while reading, so a chunked body cannot slip past).

With CHURN_API_TOKEN unset the service refuses to start unless CHURN_ALLOW_OPEN=1 says to run it
open (local demos), and then it says so in the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("churn.serving")

TOKEN_ENV = "CHURN_API_TOKEN"
ALLOW_OPEN_ENV = "CHURN_ALLOW_OPEN"
MAX_BODY_ENV = "CHURN_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: 1,000 ids or 100 full feature records fit easily
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json"})
OPEN_PREFIXES = ("/static_content/",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuthConfigError(RuntimeError):
    """The service was asked to start without a token and without being told to run open."""


@dataclass(frozen=True)
class GuardSettings:
    token: bytes | None  # None: open (CHURN_ALLOW_OPEN=1)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls) -> GuardSettings:
        """Settings from the environment; raises AuthConfigError when there is no token and the
        service was not explicitly told to run open."""
        token = os.environ.get(TOKEN_ENV, "")
        raw_limit = os.environ.get(MAX_BODY_ENV) or str(DEFAULT_MAX_BODY_BYTES)
        try:
            limit = int(raw_limit)
        except ValueError:
            raise AuthConfigError(
                f"{MAX_BODY_ENV} must be a number of bytes, got {raw_limit!r}"
            ) from None
        if token.strip():
            return cls(token=token.encode("utf-8"), max_body_bytes=limit)
        if os.environ.get(ALLOW_OPEN_ENV, "").strip().lower() in ("1", "true", "yes"):
            return cls(token=None, max_body_bytes=limit)
        raise AuthConfigError(
            f"{TOKEN_ENV} is not set: the churn service refuses to start without a bearer token. "
            f"Set {TOKEN_ENV} to the token clients must send (Authorization: Bearer <token>), "
            f"or set {ALLOW_OPEN_ENV}=1 to run it without authentication (local demos only)."
        )

    def check_start(self) -> None:
        if self.token is None:
            logger.warning(
                "%s=1 and no %s: the churn service is running OPEN, without authentication "
                "(local demos only)",
                ALLOW_OPEN_ENV,
                TOKEN_ENV,
            )


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


def token_matches(presented: bytes | None, expected: bytes) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented, expected)


class RequestGuard:
    """ASGI middleware: auth (401), content type (415) and body size (413); see module doc."""

    def __init__(self, app: ASGIApp, settings: GuardSettings | None = None):
        self.app = app
        self.refusal: str | None = None
        if settings is None:
            try:
                settings = GuardSettings.from_env()
            except AuthConfigError as err:
                # Not raised here: the middleware is built inside the server's lifespan call,
                # where an error would be taken for "lifespan unsupported" and the server would
                # run on. The service's own start-up raises it and the start fails; until then
                # (and should it not), every guarded request is refused.
                settings, self.refusal = GuardSettings(token=b""), str(err)
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.refusal is not None:
            await _reply(send, 503, self.refusal, "authorization")
            return
        headers = scope["headers"]
        expected = self.settings.token
        if expected is not None:
            presented = bearer_token(headers)
            if presented is None:
                await _reply(
                    send, 401, "missing bearer token: send 'Authorization: Bearer <token>'",
                    "authorization", {"www-authenticate": "Bearer"},
                )  # fmt: skip
                return
            if not token_matches(presented, expected):
                await _reply(
                    send, 401, "invalid bearer token", "authorization",
                    {"www-authenticate": 'Bearer error="invalid_token"'},
                )  # fmt: skip
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = _header(headers, b"content-type")
        if content_type is not None:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media not in (b"application/json", b""):
                await _reply(
                    send, 415, f"content-type must be application/json, got {media.decode('latin-1')!r}",
                    "content-type",
                )  # fmt: skip
                return
        limit = self.settings.max_body_bytes
        declared = _header(headers, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reply(send, 400, "content-length is not a number", "content-length")
                return
            if too_big:
                await _reply(send, 413, _too_big(limit), "body")
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, _too_big(limit), "body")
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _too_big(limit: int) -> str:
    return f"request body is larger than the limit of {limit:,} bytes ({MAX_BODY_ENV})"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the body already read, then defers to the server."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(
    send: Send, status: int, error: str, field: str, extra: dict[str, str] | None = None
) -> None:
    payload = json.dumps({"error": error, "field": field}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
