"""What an integrator reads and meets at the service's edge: the OpenAPI spec (the bearer scheme,
the one error shape on every operation), the docs page (the service's own title, version and
description, nothing loaded from outside), the errors themselves (one JSON shape for every 4xx,
naming the field), their log lines (INFO, one line), and GET /model_info.

Through the ASGI app with a test client; schemathesis against the running Bento is in
tests/test_service.py (test_schemathesis_finds_no_violation_of_the_served_spec)."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re

import pytest

from tests.test_service import AUTH, TOKEN, env  # noqa: F401  (env: the service's fixture)

ERROR_STATUSES = ("400", "401", "405", "413", "415", "500", "503", "default")


@pytest.fixture(scope="module")
def client(env):  # noqa: F811
    from starlette.testclient import TestClient

    from serving.service import ChurnService

    with TestClient(ChurnService.to_asgi(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spec(client) -> dict:
    response = client.get("/docs.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


# --------------------------------------------------------------------------- the spec


def test_the_spec_names_the_service_and_the_package_version(spec):
    info = spec["info"]
    assert info["title"] == "Churn service"
    assert info["version"] == importlib.metadata.version("churn-service")
    assert "Bearer" in info["description"] and '"error"' in info["description"]
    assert "contact" not in info and "BentoML" not in json.dumps([info, spec["tags"]])


def test_the_spec_declares_the_bearer_scheme_on_every_guarded_operation(spec):
    from serving.auth import is_open_path

    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        name: {**schemes[name], "type": "http", "scheme": "bearer"} for name in schemes
    }
    (name,) = schemes
    assert spec["security"] == [{name: []}]
    guarded = [(p, m) for p, m, op in operations(spec) if op["security"] == [{name: []}]]
    open_ = [(p, m) for p, m, op in operations(spec) if op["security"] == []]
    assert sorted(guarded + open_) == sorted((p, m) for p, m, _ in operations(spec))
    assert {p for p, _ in open_} == {"/healthz", "/livez", "/readyz", "/metrics"}
    assert all(not is_open_path(p) for p, _ in guarded)
    assert ("/score", "post") in guarded and ("/model_info", "get") in guarded


def test_every_operation_documents_its_errors_in_the_one_error_shape(spec):
    schemas = spec["components"]["schemas"]
    assert set(schemas["ErrorResponse"]["properties"]) == {"error"}
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "field", "details"}
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        assert name not in schemas  # BentoML's error models, which the service never answered
    for path, method, operation in operations(spec):
        errors = {k: v for k, v in operation["responses"].items() if not k.startswith("2")}
        assert "default" in errors and "500" in errors, (path, method)
        if method == "post":
            assert {"400", "401", "413", "415"} <= errors.keys(), (path, method)
        for code, response in errors.items():
            assert code in ERROR_STATUSES, (path, method, code)
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }, (path, method, code)


def test_request_schemas_accept_the_nulls_the_models_accept(spec):
    """BentoML's own copy of the request schemas dropped `null` (period_end: null was refused
    by the spec and accepted by the service)."""
    segments = spec["components"]["schemas"]["SegmentsRequest"]["properties"]
    assert {"type": "null"} in segments["period_end"]["anyOf"]
    body = spec["paths"]["/score"]["post"]["requestBody"]
    assert body["required"] is True
    assert spec["paths"]["/model_info"]["post"]["requestBody"]["required"] is False


# --------------------------------------------------------------------------- Authorize


def authorize_header(spec: dict, token: str) -> dict[str, str]:
    """The header Swagger's Authorize button sends for the spec's security scheme."""
    (scheme,) = spec["components"]["securitySchemes"].values()
    assert scheme["type"] == "http" and scheme["scheme"].lower() == "bearer"
    return {"Authorization": f"{scheme['scheme'].capitalize()} {token}"}


def test_a_request_authorized_with_the_specs_scheme_succeeds(client, spec):
    header = authorize_header(spec, TOKEN)
    example = spec["components"]["schemas"]["ScoreRequest"]["properties"]["customer_ids"]
    body = {"customer_ids": example["examples"][0]}
    assert client.post("/score", json=body, headers=header).status_code == 200
    assert client.get("/model_info", headers=header).status_code == 200
    assert client.post("/model_info", json={}, headers=header).status_code == 200
    assert client.post("/score", json=body).status_code == 401


# --------------------------------------------------------------------------- one error shape


def _big_body() -> bytes:
    return json.dumps({"customer_ids": ["C" * 1_100_000]}).encode()


JSON = {"Content-Type": "application/json"}
ERRORS = [
    # case, method, path, headers, body, status, code, field
    ("validation", "POST", "/score", {**AUTH, **JSON}, b'{"customer_ids": []}', 400,
     "too_short", "customer_ids"),
    ("nested validation", "POST", "/score_records", {**AUTH, **JSON},
     b'{"records": [{"base_customer_id": "C1", "features": {"tickets_open": true}}]}', 400,
     "float_type", "records[0].features.tickets_open"),
    ("extra field", "POST", "/score", {**AUTH, **JSON}, b'{"customer_ids": ["C1"], "limit": 3}',
     400, "extra_forbidden", "limit"),
    ("malformed JSON", "POST", "/score", {**AUTH, **JSON}, b'{"customer_ids": [', 400,
     "json_invalid", None),
    ("number as a date", "POST", "/segments", {**AUTH, **JSON},
     b'{"by": ["plan"], "period_end": 0}', 400, "value_error", "period_end"),
    ("domain error", "POST", "/score_records", {**AUTH, **JSON},
     b'{"records": [{"features": {"x": 1}}]}', 400, "invalid_value", "records[0].features.x"),
    ("no token", "POST", "/score", JSON, b'{"customer_ids": ["C1"]}', 401, "missing_token",
     "authorization"),
    ("wrong token", "GET", "/model_info", {"Authorization": "Bearer nope"}, None, 401,
     "invalid_token", "authorization"),
    ("unknown route", "GET", "/no/such/route", AUTH, None, 404, "not_found", None),
    ("wrong method", "GET", "/score", AUTH, None, 405, "method_not_allowed", None),
    ("wrong method on a probe", "POST", "/metrics", {}, None, 405, "method_not_allowed", None),
    ("too large", "POST", "/score", {**AUTH, **JSON}, _big_body(), 413, "payload_too_large",
     "body"),
    ("not JSON", "POST", "/score", {**AUTH, "Content-Type": "text/csv"}, b"C1", 415,
     "unsupported_media_type", "content-type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "headers", "body", "status", "code", "field"),
    ERRORS,
    ids=[e[0] for e in ERRORS],
)
def test_every_error_status_has_the_one_shape(
    client, case, method, path, headers, body, status, code, field
):
    from serving.schemas import ErrorResponse

    response = client.request(method, path, headers=headers, content=body)
    assert response.status_code == status, (case, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    error = ErrorResponse.model_validate_json(response.content).error  # extra keys refused
    assert (error.code, error.field) == (code, field), (case, response.text[:300])
    if field is not None:
        assert error.message.startswith(field) or status in (401, 413, 415), error.message


def test_a_validation_error_lists_every_problem_and_names_each_field(client):
    body = b'{"records": [{"features": {}, "colour": 1}], "top_drivers": 99}'
    response = client.post("/score_records", content=body, headers={**AUTH, **JSON})
    error = response.json()["error"]
    assert {d["field"] for d in error["details"]} == {"records[0].colour", "top_drivers"}
    assert "and 1 more problem" in error["message"]


def test_a_405_lists_every_method_of_the_route(client):
    response = client.put("/model_info", headers=AUTH)
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    assert "allowed: GET, POST" in response.json()["error"]["message"]


def test_a_server_error_keeps_the_shape(monkeypatch):
    """A BentoML 5xx, a plain-text error and BentoML's one-item list for a 4xx all leave in
    the one shape (a tiny app behind the same middleware)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from serving.auth import ErrorShape

    async def boom(_):
        return JSONResponse({"error": "An unexpected error has occurred"}, status_code=500)

    async def plain(_):
        return PlainTextResponse("Service Unavailable", status_code=503)

    async def listed(_):
        return JSONResponse([{"error": "by: unknown segment column 'x'"}], status_code=400)

    app = Starlette(routes=[Route("/boom", boom), Route("/plain", plain), Route("/listed", listed)])
    with TestClient(ErrorShape(app)) as http:
        assert http.get("/boom").json() == {
            "error": {"code": "internal_error", "message": "An unexpected error has occurred",
                      "field": None, "details": []}
        }  # fmt: skip
        assert http.get("/plain").json()["error"]["code"] == "service_unavailable"
        listed = http.get("/listed").json()["error"]
        assert (listed["code"], listed["field"]) == ("invalid_value", "by")


# --------------------------------------------------------------------------- logs


def test_a_client_error_is_logged_at_info_in_one_line_without_a_traceback(client, caplog):
    caplog.set_level(logging.INFO, logger="churn.serving")
    caplog.set_level(logging.INFO, logger="bentoml")  # the tests' env silences it otherwise
    caplog.clear()
    response = client.post(
        "/score_records", content=b'{"records": [{"features": {"x": 1}}]}', headers={**AUTH, **JSON}
    )
    assert response.status_code == 400
    response = client.post("/score", content=b'{"customer_ids": []}', headers={**AUTH, **JSON})
    assert response.status_code == 400
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO], [
        (r.name, r.levelname, r.getMessage()[:120]) for r in records
    ]
    for record in records:
        line = record.getMessage()
        assert "\n" not in line and record.exc_info is None and record.exc_text is None
        assert line.startswith("client error 400 POST /score")
    assert "records[0].features.x" in records[0].getMessage()
    assert "customer_ids" in records[1].getMessage()


def test_a_server_error_keeps_its_traceback_in_the_log():
    """Only a client's mistakes lose BentoML's ERROR record; anything else keeps it."""
    import sys

    from bentoml.exceptions import InvalidArgument, ServiceUnavailable

    from serving.auth import ClientErrorLogFilter

    def record_for(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord("x", logging.ERROR, __file__, 1, "Exception on", (), info)

    keep = ClientErrorLogFilter().filter
    assert keep(record_for(RuntimeError("bug"))) and keep(record_for(ServiceUnavailable("no")))
    assert not keep(record_for(InvalidArgument("field: bad")))


# --------------------------------------------------------------------------- the docs page

URL_ATTRIBUTE = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?([^"' )>]+)""", re.IGNORECASE)


def test_the_docs_page_shows_the_service_and_loads_nothing_from_outside(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    version = importlib.metadata.version("churn-service")
    assert f"<title>Churn service {version}" in page
    assert "Which customers are about to leave" in page
    for marker in ("googletagmanager", "BentoML", "github.com", "shields.io"):
        assert marker not in page, marker
    targets = URL_ATTRIBUTE.findall(page)
    assert any(t.endswith("swagger-ui-bundle.js") for t in targets), targets
    for target in targets:
        assert not re.match(r"^(https?:)?//", target), target  # nothing from another host
        asset = client.get(target.removeprefix("."))
        assert asset.status_code == 200, target  # and all of it served by the service itself
    assert "https://" not in client.get("/docs.json").json()["info"]["description"]


def test_the_package_version_falls_back_to_the_pyproject_beside_the_code(monkeypatch):
    """In a Bento the code runs without the package installed (bentofile.yaml includes
    pyproject.toml for this)."""
    from serving import service

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    installed = service.package_version()
    monkeypatch.setattr(service.importlib.metadata, "version", not_installed)
    assert service.package_version() == installed != "unknown"


# --------------------------------------------------------------------------- GET /model_info


def test_get_model_info_answers_what_post_answers(client):
    got = client.get("/model_info", headers=AUTH)
    posted = client.post("/model_info", json={}, headers=AUTH)
    assert got.status_code == 200 and got.json() == posted.json()
    assert got.json()["features"] and got.json()["version"]
