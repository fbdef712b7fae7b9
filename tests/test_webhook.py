"""The alerts webhook against a real local HTTP server (http.server in a thread): down, then
failing with 500, then accepting; pending alerts are delivered at the next run, signed, oldest
first, and never twice once acknowledged."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from serving.alerts import find_alerts, write_alerts
from serving.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    STATE_FILE,
    WebhookSettings,
    alerts_body,
    deliver_from_env,
    deliver_pending,
    read_state,
    sign,
    verify,
)

SECRET = "s3cret-for-tests"


class Receiver:
    """A local endpoint: answers `status` to every POST and keeps what it received."""

    def __init__(self) -> None:
        self.status = 500
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {"body": body, "headers": dict(self.headers), "path": self.path}
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/churn"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the endpoint is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/churn"


def write_partition(out: Path, as_of: str, ids: list[str]) -> None:
    """A scored partition as the weekly job leaves it, as far as the webhook reads it."""
    folder = out / f"as_of={as_of}"
    folder.mkdir(parents=True)
    current = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": [0.5] * len(ids),
            "risk_band": ["high"] * len(ids),
            "top_feature": ["days_since_last_event"] * len(ids),
            "top_reason": ["No activity in the last 34 days"] * len(ids),
        }
    )
    write_alerts(folder, find_alerts(current, None, as_of))
    (folder / "run.json").write_text(json.dumps({"as_of": as_of}))


def settings_for(url: str) -> WebhookSettings:
    return WebhookSettings(url=url, secret=SECRET, attempts=3, backoff_seconds=0.01)


def test_pending_alerts_wait_while_the_endpoint_is_down_and_arrive_signed_at_the_next_run(
    tmp_path, receiver
):
    out = tmp_path / "scores"
    pauses: list[float] = []
    write_partition(out, "2024-12-01", ["007", "042"])

    # Run 1: nothing listens. Three tries with backoff, then the alerts stay pending.
    down = deliver_pending(out, settings_for(closed_port_url()), lambda _: None, pauses.append)
    assert [(d.as_of, d.delivered, d.attempts) for d in down] == [("2024-12-01", False, 3)]
    assert pauses == [0.01, 0.02]
    assert read_state(out)["delivered"] == {}

    # Run 2: a new partition; the endpoint answers 500 to every try.
    write_partition(out, "2024-12-08", ["100"])
    failing = deliver_pending(out, settings_for(receiver.url), lambda _: None, lambda _: None)
    assert [(d.as_of, d.delivered, d.status) for d in failing] == [("2024-12-01", False, 500)]
    assert len(receiver.received) == 3  # retried, and the later partition waits its turn
    assert read_state(out)["delivered"] == {}

    # Run 3: the endpoint accepts. Both partitions arrive, oldest first, each signed.
    receiver.received.clear()
    receiver.status = 204
    lines: list[str] = []
    sent = deliver_pending(out, settings_for(receiver.url), lines.append, lambda _: None)
    assert [(d.as_of, d.delivered, d.attempts) for d in sent] == [
        ("2024-12-01", True, 1),
        ("2024-12-08", True, 1),
    ]
    assert len(receiver.received) == 2 and "delivered the alerts of 2024-12-08" in lines[-1]
    bodies = []
    for request in receiver.received:
        assert request["path"] == "/hooks/churn"
        assert verify(request["body"], SECRET, request["headers"][SIGNATURE_HEADER])
        assert not verify(request["body"], "another secret", request["headers"][SIGNATURE_HEADER])
        bodies.append(json.loads(request["body"]))
    assert [b["as_of"] for b in bodies] == ["2024-12-01", "2024-12-08"]
    assert [a["customer_id"] for a in bodies[0]["alerts"]] == ["007", "042"]
    assert bodies[0]["alerts"][0]["kinds"] == ["entered_high"]
    assert bodies[0]["alerts"][0]["reason"] == "No activity in the last 34 days"
    assert bodies[0]["alerts"][0]["previous_probability"] is None
    assert receiver.received[1]["headers"][DELIVERY_HEADER] == "alerts-2024-12-08"

    # Run 4 (and a rerun of the same date): nothing is sent twice once acknowledged.
    receiver.received.clear()
    assert deliver_pending(out, settings_for(receiver.url), lambda _: None) == []
    assert receiver.received == []
    assert set(read_state(out)["delivered"]) == {"2024-12-01", "2024-12-08"}


def test_a_client_error_is_not_retried_and_the_alerts_stay_pending(tmp_path, receiver):
    out = tmp_path / "scores"
    write_partition(out, "2024-12-01", ["1"])
    receiver.status = 401
    [result] = deliver_pending(out, settings_for(receiver.url), lambda _: None, lambda _: None)
    assert (result.delivered, result.attempts, result.status) == (False, 1, 401)
    assert "not retried" in result.error and read_state(out)["delivered"] == {}


def test_a_new_webhook_starts_with_the_latest_partition_and_skips_empty_ones(tmp_path, receiver):
    out = tmp_path / "scores"
    write_partition(out, "2024-11-24", ["old"])
    write_partition(out, "2024-12-01", [])
    receiver.status = 200
    [result] = deliver_pending(out, settings_for(receiver.url), lambda _: None)
    assert (result.as_of, result.alerts, result.delivered) == ("2024-12-01", 0, True)
    assert receiver.received == []  # no history replayed, nothing sent for an empty week
    write_partition(out, "2024-12-08", ["new"])
    [result] = deliver_pending(out, settings_for(receiver.url), lambda _: None)
    assert result.as_of == "2024-12-08" and len(receiver.received) == 1


def test_settings_come_from_the_environment_and_refuse_an_unsigned_webhook(
    tmp_path, receiver, monkeypatch
):
    out = tmp_path / "scores"
    write_partition(out, "2024-12-01", ["1"])
    monkeypatch.delenv("CHURN_ALERTS_WEBHOOK_URL", raising=False)
    assert deliver_from_env(out, lambda _: None) is None
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_URL", receiver.url)
    monkeypatch.delenv("CHURN_ALERTS_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ValueError, match="CHURN_ALERTS_WEBHOOK_SECRET is not set"):
        deliver_from_env(out, lambda _: None)
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_SECRET", SECRET)
    receiver.status = 200
    [result] = deliver_from_env(out, lambda _: None)
    assert result.delivered and (out / STATE_FILE).is_file()


def test_the_signature_is_the_hmac_sha256_of_the_body():
    body = alerts_body("2024-12-01", pd.DataFrame({"customer_id": ["1"]}))
    assert json.loads(body) == {
        "event": "churn.alerts",
        "as_of": "2024-12-01",
        "count": 1,
        "alerts": [{"customer_id": "1"}],
    }
    # echo -n '{}' | openssl dgst -sha256 -hmac key
    expected = "sha256=a777724d943eb48dc69bca8a4a6d57a04db3f9ec7e1de4e581e860265bdf3032"
    assert sign(b"{}", "key") == expected
    assert verify(b"{}", "key", expected) and not verify(b"{ }", "key", expected)


def test_churn_score_sends_this_runs_alerts_and_those_left_pending(
    small_champion, tmp_path, monkeypatch, receiver
):
    """Two weekly `churn score` runs: the first while the endpoint is down (the run succeeds,
    its alerts stay pending), the second when it is back: both weeks arrive, signed."""
    from typer.testing import CliRunner

    from churn.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_champion.tracking_uri)
    monkeypatch.chdir(small_champion.root)
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_ATTEMPTS", "2")
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_BACKOFF_SECONDS", "0.01")
    out = tmp_path / "scores"

    def score(as_of: str):
        args = ["score", "--data", str(small_champion.data_dir), "--as-of", as_of,
                "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return result

    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_URL", closed_port_url())
    first = score("2024-12-01")
    assert "stay pending" in first.output and read_state(out)["delivered"] == {}
    receiver.status = 200
    monkeypatch.setenv("CHURN_ALERTS_WEBHOOK_URL", receiver.url)
    score("2024-12-08")
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert [b["as_of"] for b in bodies] == ["2024-12-01", "2024-12-08"]
    assert all(verify(r["body"], SECRET, r["headers"][SIGNATURE_HEADER]) for r in receiver.received)
    stored = pd.read_parquet(out / "as_of=2024-12-01" / "alerts.parquet")
    assert [a["customer_id"] for a in bodies[0]["alerts"]] == list(stored["customer_id"])
