"""The alerts webhook: each weekly partition's alerts POSTed as JSON to a customer-success tool.

Optional: set CHURN_ALERTS_WEBHOOK_URL (and CHURN_ALERTS_WEBHOOK_SECRET, required with it) and
`churn score` sends, after writing its partition, every partition's alerts that have not been
acknowledged yet, oldest first. Each body is signed: the header ``X-Churn-Signature-256`` holds
``sha256=<hex HMAC-SHA256 of the raw body with the secret>`` (as GitHub's webhooks do), so the
receiver can check it came from us; ``X-Churn-Delivery`` names the partition (``alerts-<as_of>``)
for receivers that deduplicate.

Delivery: up to ``attempts`` tries (CHURN_ALERTS_WEBHOOK_ATTEMPTS, default 4) with exponential
backoff (CHURN_ALERTS_WEBHOOK_BACKOFF_SECONDS, default 2: waits of 2, 4, 8 s; each try times out
after CHURN_ALERTS_WEBHOOK_TIMEOUT_SECONDS, default 10) on connection errors, timeouts,
429 and 5xx; another 4xx is not retried (a wrong URL or secret needs a person). A delivery is
acknowledged by a 2xx and recorded in ``alerts_delivered.json`` beside the partitions; the
alerts themselves stay in their partition, so when the endpoint is down they are sent at the
next run, and a partition once acknowledged is never sent again (a rerun of the same date
included). A webhook configured for the first time starts with the latest partition; it does
not replay the history. A partition without alerts is recorded and nothing is sent for it.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from features.io import atomic_file
from serving.alerts import read_alerts
from serving.batch import list_partitions

URL_ENV, SECRET_ENV = "CHURN_ALERTS_WEBHOOK_URL", "CHURN_ALERTS_WEBHOOK_SECRET"
ATTEMPTS_ENV = "CHURN_ALERTS_WEBHOOK_ATTEMPTS"
BACKOFF_ENV = "CHURN_ALERTS_WEBHOOK_BACKOFF_SECONDS"
TIMEOUT_ENV = "CHURN_ALERTS_WEBHOOK_TIMEOUT_SECONDS"
STATE_FILE = "alerts_delivered.json"
SIGNATURE_HEADER, DELIVERY_HEADER = "X-Churn-Signature-256", "X-Churn-Delivery"
RETRY_STATUSES = frozenset({408, 425, 429})  # and every 5xx
Log = Callable[[str], None]


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how alerts are sent. Backoff before retry k (from 0) is backoff_seconds * 2**k."""

    url: str
    secret: str
    attempts: int = 4
    backoff_seconds: float = 2.0
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError(f"{URL_ENV} must be an http(s):// URL, got {self.url!r}")
        if not self.secret:
            raise ValueError(
                f"{SECRET_ENV} is not set: alerts are only sent signed; set it to the secret the "
                f"receiver checks the {SIGNATURE_HEADER} header with"
            )
        if self.attempts < 1:
            raise ValueError(f"{ATTEMPTS_ENV} must be at least 1, got {self.attempts}")
        if self.backoff_seconds < 0 or self.timeout_seconds <= 0:
            raise ValueError(f"{BACKOFF_ENV} must be >= 0 and {TIMEOUT_ENV} > 0")

    @classmethod
    def from_env(cls) -> WebhookSettings | None:
        """The settings from the environment; None when no webhook URL is set."""
        url = os.environ.get(URL_ENV, "").strip()
        if not url:
            return None
        tuning: dict[str, Any] = {}
        for env, name, kind in (
            (ATTEMPTS_ENV, "attempts", int),
            (BACKOFF_ENV, "backoff_seconds", float),
            (TIMEOUT_ENV, "timeout_seconds", float),
        ):
            raw = os.environ.get(env, "").strip()
            if raw:
                try:
                    tuning[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{env} must be a number, got {raw!r}") from None
        return cls(url=url, secret=os.environ.get(SECRET_ENV, ""), **tuning)


@dataclass(frozen=True)
class Delivery:
    """One partition's delivery: acknowledged or not, after how many tries, and why not."""

    as_of: str
    alerts: int
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


# --------------------------------------------------------------------------- body and signature


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: 'sha256=' and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, signature: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return signature is not None and hmac.compare_digest(sign(body, secret), signature)


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _json_value(value.tolist())
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def alerts_body(as_of: str, alerts: pd.DataFrame) -> bytes:
    """The JSON body for one partition's alerts (UTF-8): run date, count and one object per
    alert (the columns of serving.alerts.ALERTS_SCHEMA; missing values as null)."""
    records = [
        {k: _json_value(v) for k, v in row.items()}
        for row in alerts.astype(object).to_dict("records")
    ]
    payload = {"event": "churn.alerts", "as_of": as_of, "count": len(records), "alerts": records}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- sending


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not an acknowledgement (and would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(settings: WebhookSettings, body: bytes, delivery_id: str) -> int:
    """POST a signed body once; returns the HTTP status (raises on connection errors)."""
    request = urllib.request.Request(
        settings.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "churn-service-alerts",
            SIGNATURE_HEADER: sign(body, settings.secret),
            DELIVERY_HEADER: delivery_id,
        },
    )
    try:
        with _OPENER.open(request, timeout=settings.timeout_seconds) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def send(
    settings: WebhookSettings,
    body: bytes,
    delivery_id: str,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, int, int | None, str | None]:
    """Send with retries: (acknowledged, tries, last status, last error)."""
    status: int | None = None
    error: str | None = None
    for attempt in range(settings.attempts):
        if attempt:
            sleep(settings.backoff_seconds * 2 ** (attempt - 1))
        try:
            status, error = post(settings, body, delivery_id), None
        except (OSError, http.client.HTTPException) as err:  # refused, unreachable, timed out
            status, error = None, str(getattr(err, "reason", err))
            continue
        if 200 <= status < 300:
            return True, attempt + 1, status, None
        error = f"HTTP {status}"
        if status < 500 and status not in RETRY_STATUSES:
            return False, attempt + 1, status, f"{error}: not retried (check the URL and secret)"
    return False, settings.attempts, status, error


# --------------------------------------------------------------------------- state


def read_state(out_dir: str | Path) -> dict[str, Any] | None:
    """The delivery record beside the partitions, or None before the first delivery."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not isinstance(state, dict) or not isinstance(state.get("delivered"), dict):
        raise ValueError(f"{path} is not a delivery record (no 'delivered' object): remove it")
    return state


def _write_state(out_dir: Path, state: dict[str, Any]) -> None:
    with atomic_file(out_dir / STATE_FILE) as tmp:
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))


def deliver_pending(
    out_dir: str | Path,
    settings: WebhookSettings,
    log: Log = print,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Send the alerts of every partition not yet acknowledged, oldest first, recording each
    acknowledgement as soon as it comes; stops at the first partition that cannot be delivered
    (the rest stay pending, in order, for the next run)."""
    root = Path(out_dir)
    partitions = list_partitions(root)
    if not partitions:
        return []
    state = read_state(root)
    if state is None:
        state = {"since": partitions[-1][0].date().isoformat(), "delivered": {}}
        _write_state(root, state)
    since = pd.Timestamp(state["since"])
    done: list[Delivery] = []
    for as_of, path in partitions:
        key = as_of.date().isoformat()
        if as_of < since or key in state["delivered"]:
            continue
        alerts = read_alerts(path)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if alerts.empty:
            state["delivered"][key] = {"alerts": 0, "at": now, "sent": False}
            _write_state(root, state)
            done.append(Delivery(key, 0, True, 0))
            continue
        body = alerts_body(key, alerts)
        ok, tries, status, error = send(settings, body, f"alerts-{key}", sleep)
        done.append(Delivery(key, len(alerts), ok, tries, status, error))
        if not ok:
            log(
                f"webhook: the alerts of {key} ({len(alerts):,}) were not delivered after "
                f"{tries} tries ({error}); they stay pending and are sent at the next run"
            )
            break
        state["delivered"][key] = {
            "alerts": len(alerts), "at": now, "sent": True, "status": status,
            "sha256": hashlib.sha256(body).hexdigest(),
        }  # fmt: skip
        _write_state(root, state)
        log(f"webhook: delivered the alerts of {key} ({len(alerts):,}) in {tries} tries")
    return done


def deliver_from_env(out_dir: str | Path, log: Log = print) -> list[Delivery] | None:
    """The weekly job's step: deliver pending alerts when a webhook is configured (None when it
    is not, or when the partitions are not in a local folder)."""
    settings = WebhookSettings.from_env()
    if settings is None:
        return None
    if not Path(out_dir).is_dir():
        log(f"webhook: {out_dir} is not a local folder; alerts are not sent from here")
        return None
    return deliver_pending(out_dir, settings, log)
