"""The service's front door: bearer token, body size and content type, before any route runs.

``RequestGuard`` is a plain ASGI middleware (added to the BentoML service with
``add_asgi_middleware``). For every path except the open ones (health, readiness and metrics
probes, and the API docs) it requires ``Authorization: Bearer <token>`` with the token from
CHURN_API_TOKEN (compared in constant time), answering 401 otherwise; then, for requests with a
body, it answers 415 to anything but JSON and 413 to a body over CHURN_MAX_BODY_BYTES (checked on
Content-Length and again while reading, so a chunked body cannot slip past).

With CHURN_API_TOKEN unset the service refuses to start unless CHURN_ALLOW_OPEN=1 says to run it
open (local demos), and then it says so in the log.

``ErrorShape``, the middleware around it, gives every error response the one shape of
serving.schemas.ErrorResponse, ``{"error": {"code", "message", "field", "details"}}``, whoever
made it (the guard, BentoML's validation, a route's InvalidField, the router's 404 and 405), and
logs client errors at INFO in one line instead of BentoML's ERROR with a traceback.
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
            await _reply(send, 503, "not_configured", self.refusal, "authorization")
            return
        headers = scope["headers"]
        expected = self.settings.token
        if expected is not None:
            presented = bearer_token(headers)
            if presented is None:
                await _reply(
                    send, 401, "missing_token",
                    "missing bearer token: send 'Authorization: Bearer <token>'",
                    "authorization", {"www-authenticate": "Bearer"},
                )  # fmt: skip
                return
            if not token_matches(presented, expected):
                await _reply(
                    send, 401, "invalid_token", "invalid bearer token", "authorization",
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
                    send, 415, "unsupported_media_type",
                    f"content-type must be application/json, got {media.decode('latin-1')!r}",
                    "content-type",
                )  # fmt: skip
                return
        limit = self.settings.max_body_bytes
        declared = _header(headers, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reply(
                    send, 400, "invalid_header", "content-length is not a number", "content-length"
                )
                return
            if too_big:
                await _reply(send, 413, "payload_too_large", _too_big(limit), "body")
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, "payload_too_large", _too_big(limit), "body")
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


# --------------------------------------------------------------------------- one error shape

# Codes for errors whose body says no more than the status (the router's 404 and 405, BentoML's
# own 4xx and 5xx); the guard's and the validation errors carry their own.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
    504: "timeout",
}
# BentoML logs every exception of a route at ERROR with its traceback, a client's mistakes too.
BENTOML_ROUTE_LOGGER = "bentoml._internal.server.http_app"


class ErrorShape:
    """ASGI middleware: every error response (status >= 400) leaves in the one shape of
    serving.schemas.ErrorResponse, whoever made it: BentoML's validation errors (pydantic's
    list, each error with its field path), a route's InvalidField (``FIELD: message``),
    BentoML's other errors, the router's plain-text 404 and 405. Client errors (4xx) are logged
    at INFO in one line, and BentoML's traceback for them is dropped (ClientErrorLogFilter).

    ``methods`` (path -> the methods it answers) turns the router's 404 and 405 for a known
    path into a 405 that lists all of them (a route answered by a middleware, like /metrics,
    or by two apps, like GET and POST /model_info, is otherwise a 404 or lists one).

    Responses below 400 pass through untouched: the only cost on them is one check of the
    status."""

    def __init__(self, app: ASGIApp, methods: dict[str, tuple[str, ...]] | None = None):
        self.app = app
        self.methods = dict(methods or {})
        install_client_error_filter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def shaping_send(message: Message) -> None:
            nonlocal held
            if held is None:
                if message["type"] == "http.response.start" and message["status"] >= 400:
                    held = message
                    return
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._send_shaped(scope, held, b"".join(chunks), send)

        await self.app(scope, receive, shaping_send)

    async def _send_shaped(self, scope: Scope, start: Message, body: bytes, send: Send) -> None:
        status = int(start["status"])
        drop = (b"content-type", b"content-length")
        allowed = self.methods.get(scope.get("path", ""))
        if status in (404, 405) and allowed and scope.get("method") not in allowed:
            status, body = 405, b""
            drop += (b"allow",)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in drop]
        if status == 405 and allowed:
            headers.append((b"allow", ", ".join(allowed).encode()))
        error = shape_error(status, body, scope, headers)
        if status < 500:
            message, field = " ".join(str(error["message"]).split()), error["field"]  # one line
            logger.info(
                "client error %d %s %s: %s%s: %s",
                status,
                scope.get("method", ""),
                scope.get("path", ""),
                error["code"],
                f" [{field}]" if field and not message.startswith(field) else "",
                message,
            )
        payload = json.dumps({"error": error}).encode("utf-8")
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # A HEAD answer declares the length of the body a GET would get, and carries none.
        body_out = b"" if scope.get("method") == "HEAD" else payload
        await send({"type": "http.response.body", "body": body_out})


def shape_error(
    status: int, body: bytes, scope: Scope, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """The error object ({code, message, field, details}) for an error response's body."""
    from serving.schemas import split_field

    default_code = STATUS_CODES.get(status, "client_error" if status < 500 else "server_error")
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):  # already in shape
        error = data["error"]
        if {"code", "message", "field"} <= error.keys():
            known = {k: error[k] for k in ("code", "message", "field")}
            return {**known, "details": error.get("details") or []}
    if isinstance(data, dict) and isinstance(data.get("detail"), list) and data["detail"]:
        details = [_validation_item(item) for item in data["detail"] if isinstance(item, dict)]
        if details:
            return {**_first_problem(details), "details": details}
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML answers a BentoMLException's 4xx as a one-item list
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message = data["error"]
    elif status == 404:
        message = f"no such route: {scope.get('path', '')} (see /docs.json for the routes)"
    elif status == 405:
        allowed = _header(headers, b"allow")
        message = f"{scope.get('method', '')} is not allowed on {scope.get('path', '')}" + (
            f"; allowed: {allowed.decode('latin-1')}" if allowed else ""
        )
    else:
        text = body.decode("utf-8", "replace").strip()[:500]
        message = text or default_code.replace("_", " ")
    field, rest = split_field(message)
    code = "invalid_value" if field is not None and status == 400 else default_code
    return {"code": code, "message": message if field is None else f"{field}: {rest}",
            "field": field, "details": []}  # fmt: skip


def _first_problem(details: list[dict[str, Any]]) -> dict[str, Any]:
    """The first field's problem, in one message: a value that fits none of a union's types
    gets one error per type from pydantic, all for the same field."""
    first = details[0]
    field = first["field"]
    same = [d for d in details if d["field"] == field]
    reasons = list(dict.fromkeys(d["message"].removeprefix(f"{field}: ") for d in same))
    message = (f"{field}: " if field else "") + " or ".join(reasons)
    others = len(details) - len(same)
    if others:
        message += f" (and {others} more problem{'s' if others > 1 else ''}: see details)"
    return {"code": first["code"], "message": message, "field": field}


def _validation_item(item: dict[str, Any]) -> dict[str, Any]:
    """One of pydantic's errors (as BentoML sends them) as an ErrorItem."""
    field = field_path(item.get("loc") or ())
    message = str(item.get("msg", "invalid value"))
    return {
        "code": str(item.get("type", "invalid_value")),
        "message": f"{field}: {message}" if field else message,
        "field": field,
    }


def field_path(loc: Any) -> str | None:
    """pydantic's error location as a path: ("records", 0, "features", "x") ->
    records[0].features.x. The union member pydantic appends (float, constrained-str,
    function-after[...]) is left out; the body itself (an empty location) is None."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif isinstance(part, str) and not _is_union_tag(part):
            parts.append(f".{part}" if parts else part)
    return "".join(parts) or None


_UNION_TAGS = ("float", "int", "str", "bool", "none", "constrained-str", "function-")


def _is_union_tag(part: str) -> bool:
    return part in _UNION_TAGS or part.startswith(("function-", "constrained-", "json-or-python"))


class ClientErrorLogFilter(logging.Filter):
    """Drops BentoML's ERROR record with traceback for a client's mistake (a pydantic
    validation error, or a BentoMLException below 500: InvalidField and the like); ErrorShape
    logs those at INFO in one line instead. Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        error = record.exc_info[1]
        return not is_client_error(error)


def is_client_error(error: BaseException | None) -> bool:
    """A request's own fault: invalid input, not a failure of the service."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return True
    if isinstance(error, BentoMLException):
        return int(error.error_code) < 500
    return False


def install_client_error_filter() -> None:
    """Attach ClientErrorLogFilter to BentoML's route logger, once; and let the service's own
    INFO lines through (BentoML's server logging leaves other loggers at WARNING) unless the
    level of the service's logger was set explicitly."""
    target = logging.getLogger(BENTOML_ROUTE_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in target.filters):
        target.addFilter(ClientErrorLogFilter())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


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
    send: Send,
    status: int,
    code: str,
    message: str,
    field: str | None,
    extra: dict[str, str] | None = None,
) -> None:
    """Answer with the service's one error shape (serving.schemas.ErrorResponse)."""
    await _send_json(send, status, error_json(code, message, field), extra)


def error_json(
    code: str, message: str, field: str | None, details: list[dict[str, Any]] | None = None
) -> bytes:
    """The body of an error response: ``{"error": {"code", "message", "field", "details"}}``."""
    body = {"code": code, "message": message, "field": field, "details": details or []}
    return json.dumps({"error": body}).encode("utf-8")


async def _send_json(
    send: Send, status: int, payload: bytes, extra: dict[str, str] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
