"""The service's /alerts route: the latest partition's alerts, behind the same bearer token as
the other routes (the class called directly, and its ASGI app through a test client)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from serving.batch import run_scoring
from serving.config import ScoringConfig

TOKEN = "alerts-token-9d2e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN_1, RUN_2 = "2024-12-01", "2024-12-08"
SERVICE_ENV = (
    "BENTOML_HOME", "CHURN_API_TOKEN", "CHURN_ALLOW_OPEN", "CHURN_SCORES_DIR", "CHURN_DATA_DIR",
    "CHURN_PARTITION_CHECK_SECONDS", "BENTOML_DO_NOT_TRACK", "CHURN_BENTO_MODEL", "CHURN_MODEL_NAME",
)  # fmt: skip


@pytest.fixture(scope="module")
def env(small_champion, tmp_path_factory):
    """Two weekly partitions (alerts on a 2-point rise, so that both kinds appear) and the
    service's environment, as tests/test_service.py sets it up."""
    root = tmp_path_factory.mktemp("alerts_service")
    scores = root / "scores"
    model, version = small_champion.champion.model, small_champion.champion.version
    info = {"model_name": small_champion.champion.name,
            "model_run_id": small_champion.champion.run_id}  # fmt: skip
    for run_date in (RUN_1, RUN_2):
        run_scoring(
            small_champion.tables, run_date, model, version, scores, model_info=info,
            log=lambda _: None, settings=ScoringConfig(alert_rise_points=2.0),
        )  # fmt: skip
    values = {
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "CHURN_API_TOKEN": TOKEN,
        "CHURN_SCORES_DIR": str(scores),
        "CHURN_PARTITION_CHECK_SECONDS": "0.2",
    }
    saved = {k: os.environ.get(k) for k in SERVICE_ENV}
    for key in SERVICE_ENV:
        os.environ.pop(key, None)
    os.environ.update(values)
    for name in ("bentoml", "churn.serving", "opentelemetry"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from serving.model_store import import_champion

    cwd = os.getcwd()
    os.chdir(small_champion.root)  # the MLflow store's relative artifact paths
    try:
        import_champion(small_champion.champion.name, small_champion.tracking_uri)
    finally:
        os.chdir(cwd)
    yield {"scores": scores}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def stored(env) -> pd.DataFrame:
    return pd.read_parquet(Path(env["scores"]) / f"as_of={RUN_2}" / "alerts.parquet")


def test_alerts_are_the_latest_partitions_riskiest_first(env, stored):
    from serving.schemas import AlertsRequest
    from serving.service import ChurnService

    response = ChurnService().alerts(AlertsRequest())
    assert response.as_of.isoformat() == RUN_2 and response.previous_as_of.isoformat() == RUN_1
    assert response.total == len(stored) > 0
    assert [a.customer_id for a in response.alerts] == list(stored["customer_id"])
    first, expected = response.alerts[0], stored.iloc[0]
    assert first.kinds == list(expected["kinds"]) and first.reason == expected["reason"]
    assert first.churn_probability == pytest.approx(expected["churn_probability"])
    rose = AlertsRequest(kinds=["rose"], limit=2)
    only = ChurnService().alerts(rose)
    n_rose = sum("rose" in k for k in stored["kinds"])
    assert only.total == n_rose and len(only.alerts) == min(2, n_rose)
    assert all("rose" in a.kinds for a in only.alerts)


def test_alerts_need_the_bearer_token_and_answer_json(env, stored):
    from starlette.testclient import TestClient

    from serving.service import ChurnService

    with TestClient(ChurnService.to_asgi(), raise_server_exceptions=False) as client:
        assert client.post("/alerts", json={}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/alerts", json={}, headers=wrong).status_code == 401
        answer = client.post("/alerts", json={"limit": 5}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total"] == len(stored) and len(body["alerts"]) == min(5, len(stored))
        assert body["alerts"][0]["customer_id"] == stored["customer_id"].iloc[0]
        bad = client.post("/alerts", json={"kinds": ["urgent"]}, headers=AUTH)
        assert bad.status_code == 400 and "kinds" in bad.text
