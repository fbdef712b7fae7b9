"""The churn service: risk by customer id (from the latest weekly partition), risk for feature
records (scored on the spot), segment retention metrics with the risk view, and model info.

The champion is declared on the class (``model_ref``), so `bentoml build` packs it into the
Bento and the service starts with no MLflow server or database. The routes are thin: requests
and responses are in serving.schemas, the partition in serving.partitions, the model store in
serving.model_store, the bearer token, body limits and the one error shape in serving.auth.

The service's own face (below the class): the docs page at / (Swagger UI from the assets BentoML
ships, served here, so it loads nothing from outside), the OpenAPI spec at /docs.json (BentoML's,
with the service's title, the package's version and description, the bearer scheme, the error
shape on every operation and pydantic's own request and response schemas) and GET /model_info,
in a small Starlette app mounted ahead of BentoML's routes for / and /docs.json.

Environment: CHURN_API_TOKEN (or CHURN_ALLOW_OPEN=1), CHURN_SCORES_DIR (the weekly job's output),
CHURN_DATA_DIR (the contract's tables, for /segments), CHURN_MODEL_NAME (the registered model,
one per dataset, whose newest import is served) or CHURN_BENTO_MODEL (an exact BentoML tag; see
serving.model_store.model_tag), CHURN_PARTITION_CHECK_SECONDS, CHURN_MAX_BODY_BYTES, CHURN_MAX_CUSTOMER_IDS,
CHURN_MAX_RECORDS; OMP_NUM_THREADS=1 is advised (`churn serve` and the Bento set it).

Speed (benchmarks/bench_service.py): /score answers from precomputed scores and drivers (a dict
lookup; LightGBM's pred_contrib costs milliseconds a row) in an async handler (no thread hop);
the access log is off; BentoML's Prometheus middleware is replaced by serving.metrics (about a
tenth of the throughput); adaptive batching is off (nothing to batch in a lookup); /score is left
out of OpenTelemetry tracing: BentoML records spans even with sampling at zero, about 1 ms a
request, three times the rest of the request (the other routes, which do real work, are traced).
"""

from __future__ import annotations

import copy
import functools
import html
import importlib.metadata
import inspect
import tomllib
import typing
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from features.dictionary import WORDING, describe
from serving.auth import ErrorShape, GuardSettings, RequestGuard, error_json
from serving.metrics import ReadinessProbe, RequestMetrics, set_source, set_status
from serving.model_store import (
    ServedModel,
    load_served_model,
    model_for_partition,
    model_tag,
)
from serving.monitoring_api import (
    NO_MONITORING_PARAMETERS,
    MonitoringFile,
    MonitoringRequest,
    MonitoringResponse,
)
from serving.partitions import Partition, PartitionStore
from serving.schemas import (
    Alert,
    AlertsRequest,
    AlertsResponse,
    Change,
    CustomerScore,
    Driver,
    ErrorResponse,
    FeatureInfo,
    FeatureRecord,
    InvalidField,
    ModelInfo,
    ModelInfoRequest,
    MovedDriver,
    PartitionInfo,
    RecordScore,
    ScoreRecordsRequest,
    ScoreRecordsResponse,
    ScoreRequest,
    ScoreResponse,
    SegmentRow,
    SegmentsRequest,
    SegmentsResponse,
)
from serving.timeouts import (
    cancel_answered_request_timers,
    install_read_timeout,
    read_timeout_from_env,
)

DEFAULT_SEGMENT_DAYS = 30
NO_PARAMETERS = ModelInfoRequest()
ALL_ALERTS = AlertsRequest()


SERVICE_NAME = "churn-service"  # the package, and the service's name in BentoML
SERVICE_TITLE = "Churn service"
SERVICE_DESCRIPTION = """\
Which customers are about to leave, and why; how retention stands across segments.

* **POST /score**: churn probability, risk band, top reasons and the change since the previous
  weekly run, by customer id (from the latest scored partition).
* **POST /score_records**: the same for feature records sent with the request (what-if).
* **POST /segments**: retention metrics over a period and the risk view, per segment.
* **GET or POST /model_info**: the served model, its features and the partition.

**Authentication**: every data route needs `Authorization: Bearer <token>` (the server's
`CHURN_API_TOKEN`); press *Authorize* and enter the token to try the routes here. The probes
(`/healthz`, `/livez`, `/readyz`, `/metrics`) and this page are open.

**Errors** (4xx and 5xx) all have one JSON shape,
`{"error": {"code": "...", "message": "...", "field": "...", "details": [...]}}`: `field` is
the path of the request field at fault (`records[0].features.plan`), or the header
(`authorization`, `content-type`); `details` lists every problem of an invalid request.
"""


# The docs page, the OpenAPI spec and GET /model_info (routes added below the class): mounted
# before BentoML's own routes for / and /docs.json, so these answer.
docs_app = Starlette()


@bentoml.service(
    name=SERVICE_NAME,
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [r"/score$"]},  # see the module docstring
    metrics={"enabled": False},  # serving.metrics answers /metrics instead (module docstring)
)
@bentoml.asgi_app(docs_app, name="churn-docs")
class ChurnService:
    """Churn risk, drivers and retention metrics for customer-success tools."""

    model_ref = bentoml.models.BentoModel(model_tag())

    @bentoml.on_deployment
    def refuse_to_start_open() -> None:
        """Runs once in `bentoml serve`, before any worker: without CHURN_API_TOKEN (and without
        CHURN_ALLOW_OPEN=1) the server stops here and says why."""
        GuardSettings.from_env()

    @bentoml.on_deployment
    def refuse_to_start_without_its_model() -> None:
        """Runs once in `bentoml serve`, before any worker: a model that cannot be loaded (not
        a churn model, artifacts deleted) or a missing CHURN_SCORES_DIR stops the server here
        with a non-zero exit, instead of workers failing and restarting forever."""
        check_can_start()

    def __init__(self) -> None:
        guard = GuardSettings.from_env()  # the same check for any other way of starting it
        guard.check_start()
        self.served: ServedModel = load_served_model(self.model_ref)
        self.partitions = PartitionStore.from_env(on_load=self._follow_partition_model)
        self.partitions.refresh()
        set_source("partitions", self.partitions.exposition)
        set_status(self.status)
        install_read_timeout(read_timeout_from_env())  # slow clients are cut off
        cancel_answered_request_timers()  # no timer left alive per request (gc pauses)

    def _follow_partition_model(self, partition: Partition) -> None:
        """Serve the model a new partition was scored with (run.json's name, version and run
        id), from the BentoML store, before the partition is swapped in; when the store lacks
        it the partition is not served (the error shows in /readyz and /metrics)."""
        self.served = model_for_partition(self.served, partition.info)

    def status(self) -> dict:
        """/readyz: the partition served and its age, the last load error, and the model."""
        self.partitions.current()  # a check for a newer partition when one is due
        served = self.served
        return {
            **self.partitions.status(),
            "model": {
                "name": served.name,
                "version": served.version,
                "run_id": served.run_id,
                "bento_model": served.bento_tag,
            },
        }

    def __is_ready__(self) -> bool:
        return self.partitions.current() is not None

    def _partition(self) -> Partition:
        partition = self.partitions.current()
        if partition is None:
            raise ServiceUnavailable(
                f"no scored partition under {self.partitions.root} yet: run `churn score`"
            )
        return partition

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """Risk, band, top drivers and the change since the previous score, by customer id, from
        the latest weekly partition. Unknown ids are reported per id."""
        partition = self._partition()
        results = [customer_score(partition, cid) for cid in request.customer_ids]
        return ScoreResponse(
            as_of=partition.as_of,
            model_version=partition.model_version,
            results=results,
            unknown_ids=[r.customer_id for r in results if r.status == "unknown"],
        )

    @bentoml.api(route="/score_records")
    def score_records(self, request: ScoreRecordsRequest, /) -> ScoreRecordsResponse:
        """Score feature records sent by the caller (what-if, or systems with their own data)."""
        from serving.batch import score_features

        served = self.served
        needs_partition = any(r.base_customer_id for r in request.records)
        partition = self._partition() if needs_partition else None
        frame = records_frame(served, request.records, partition)
        current = partition or self.partitions.current()
        as_of = request.as_of or (current.as_of if current is not None else None)
        scored = score_features(
            served.model,
            frame,
            served.version,
            top=request.top_drivers,
            as_of=pd.Timestamp(as_of) if as_of is not None else None,
            # the weekly run's ([scoring] currency): "$300", as /score says it, not "300"
            currency=current.info.get("currency") if current is not None else None,
        )
        results = [
            RecordScore(
                customer_id=record.customer_id or record.base_customer_id,
                churn_probability=float(p),
                risk_band=str(band),
                drivers=[Driver(**d) for d in drivers],
                lower_risk=[Driver(**d) for d in lower],
            )
            for record, p, band, drivers, lower in zip(
                request.records, scored["churn_probability"], scored["risk_band"],
                scored["drivers"], scored["lower_risk"], strict=True,
            )
        ]  # fmt: skip
        return ScoreRecordsResponse(model_version=served.version, results=results)

    @bentoml.api(route="/segments")
    def segments(self, request: SegmentsRequest, /) -> SegmentsResponse:
        """Retention metrics over a period and the risk view of the latest partition, per
        segment. Computed from the data folder (CHURN_DATA_DIR) and the partition's scores;
        without the data folder, the weekly job's own report for its period (segments.parquet)."""
        partition = self._partition()
        by = list(dict.fromkeys(b for b in request.by if b != "risk_band"))
        if partition.tables is None:
            report, start, end = weekly_report(partition, by, request)
        else:
            end = request.period_end or partition.as_of
            start = request.period_start or end - timedelta(days=DEFAULT_SEGMENT_DAYS)
            report = computed_report(self.served, partition, by, start, end)
        report = report.drop(columns=["period_start", "period_end"], errors="ignore")
        report = report.astype(object).where(report.notna(), None)
        return SegmentsResponse(
            as_of=partition.as_of,
            period_start=start,
            period_end=end,
            by=[*by, "risk_band"],
            segments=[SegmentRow.from_record(r) for r in report.to_dict("records")],
        )

    @bentoml.api(route="/alerts")
    def alerts(self, request: AlertsRequest = ALL_ALERTS, /) -> AlertsResponse:
        """The latest partition's alerts (serving.alerts): customers who entered the high band,
        whose risk rose by the configured points, or who got a new top reason; riskiest first."""
        from serving.alerts import alert_records

        partition = self._partition()
        records = alert_records(partition.path, request.kinds)
        return AlertsResponse(
            as_of=partition.as_of,
            previous_as_of=partition.previous_as_of,
            total=len(records),
            alerts=[Alert(**r) for r in records[: request.limit]],
        )

    @bentoml.api(route="/model_info")
    async def model_info(self, request: ModelInfoRequest = NO_PARAMETERS, /) -> ModelInfo:
        """The served model: version, training date, metrics, features, and the partition
        (also GET /model_info)."""
        return self.describe_model()

    def describe_model(self) -> ModelInfo:
        """What /model_info answers (POST, and GET through the docs app)."""
        served, model = self.served, self.served.model
        partition = self.partitions.current()
        pre = model.preprocessor
        settings = model.reason_settings()

        wording = {k: settings[k] for k in WORDING}

        def words(name: str) -> dict[str, str]:
            entry = describe(name, settings["attributes"], strict=False, **wording)
            return {"label": entry.label, "unit": entry.unit}

        return ModelInfo(
            name=served.name,
            version=served.version,
            run_id=served.run_id,
            bento_model=served.bento_tag,
            trained_until=str(model.trained_until),
            horizon_days=int(model.horizon_days),
            metrics={k: _finite(v) for k, v in model.metrics.items()},
            risk_bands={k: float(v) for k, v in model.band_thresholds.items()},
            features=[FeatureInfo(name=n, kind="numeric", **words(n)) for n in pre.numeric]
            + [
                FeatureInfo(
                    name=n,
                    kind="categorical",
                    **words(n),
                    levels=pre.known_levels(n),
                    grouped_levels=pre.grouped.get(n) or None,
                )
                for n in pre.categorical
            ],
            partition=None
            if partition is None
            else PartitionInfo(
                as_of=partition.as_of,
                previous_as_of=partition.previous_as_of,
                model_version=partition.model_version,
                customers=len(partition),
            ),
        )

    # ---- /monitoring (issue 16): the latest verdict and figures, read from the monitoring
    # file the weekly job writes into the scores folder (never computed at request time).
    @bentoml.api(route="/monitoring")
    async def monitoring(
        self, request: MonitoringRequest = NO_MONITORING_PARAMETERS, /
    ) -> MonitoringResponse:
        """Monitoring of the weekly runs: the latest partition's verdict (fine, watch, retrain)
        with its reasons, realized performance of the latest matured partition, the expected
        performance (CBPE), drift of the features and the score against training, history."""
        if getattr(self, "monitoring_file", None) is None:
            self.monitoring_file = MonitoringFile(self.partitions.root)
        return self.monitoring_file.answer()


PROBE_ROUTES = ("/healthz", "/livez", "/readyz")
ChurnService.add_asgi_middleware(  # outside the guard: refused requests are counted too
    RequestMetrics, routes=[*PROBE_ROUTES, *(api.route for api in ChurnService.apis.values())]
)
ROUTE_METHODS = {
    **{path: ("GET",) for path in (*PROBE_ROUTES, "/metrics", "/", "/docs.json")},
    **{api.route: ("POST",) for api in ChurnService.apis.values()},
    "/model_info": ("GET", "POST"),
}
ChurnService.add_asgi_middleware(ErrorShape, methods=ROUTE_METHODS)  # outside the guard
ChurnService.add_asgi_middleware(RequestGuard)
ChurnService.add_asgi_middleware(ReadinessProbe)  # /readyz with the partition's status


def check_can_start() -> None:
    """The checks of refuse_to_start_without_its_model: the declared model loads as a churn
    model and the partitions folder is configured."""
    try:
        read_timeout_from_env()
        load_served_model(model_tag())
        PartitionStore.from_env()
    except Exception as err:  # whatever it is, the server stops with one line and exit code 1
        raise SystemExit(f"churn service cannot start: {type(err).__name__}: {err}") from None


# --------------------------------------------------------------------------- docs and GET routes


def package_version() -> str:
    """The churn-service package's version: installed metadata, else the pyproject.toml beside
    the code (a Bento carries the code, not the installed package), else 'unknown'."""
    try:
        return importlib.metadata.version(SERVICE_NAME)
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    return "unknown"


SECURITY_SCHEME = "bearerAuth"
SCHEMA_REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": SCHEMA_REF.format(model="ErrorResponse")}
ERROR_DESCRIPTIONS = {
    "400": "Invalid request: the field at fault is named.",
    "401": "Missing or wrong bearer token.",
    "405": "Method not allowed on this route.",
    "413": "Request body over the size limit (CHURN_MAX_BODY_BYTES).",
    "415": "Content type other than application/json.",
    "500": "Unexpected server error (see the server log).",
    "503": "Not ready: no scored partition yet.",
    "default": "Any other error (404 for an unknown route, ...), in the same shape.",
}
OPEN_OPERATION_ERRORS = ("405", "500", "503", "default")
GUARDED_GET_ERRORS = ("401", "405", "500", "503", "default")
GUARDED_POST_ERRORS = ("400", "401", "405", "413", "415", "500", "503", "default")
UNUSED_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError", "TaskStatusResponse")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI spec: BentoML's (request and response models of every route) with
    the service's own title, version and description, the bearer scheme on the guarded routes,
    the one error shape (ErrorResponse) on every operation, and GET /model_info."""
    from serving.auth import is_open_path

    spec = copy.deepcopy(ChurnService.openapi_spec.asdict())
    # pydantic writes JSON Schema 2020-12 (a null as {"type": "null"}): OpenAPI 3.1's dialect.
    spec["openapi"] = "3.1.0"
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
    spec["info"] = {
        "title": SERVICE_TITLE,
        "version": package_version(),
        "description": SERVICE_DESCRIPTION,
    }
    descriptions = {
        "Service APIs": "Churn risk with reasons, segment metrics and the served model "
        "(bearer token).",
        "Infrastructure": "Probes and Prometheus metrics (open).",
    }
    spec["tags"] = [
        {**tag, "description": descriptions.get(tag["name"], tag.get("description", ""))}
        for tag in spec.get("tags", [])
    ]
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in UNUSED_SCHEMAS:
        schemas.pop(name, None)
    for name in [n for n in schemas if n.endswith("IODescriptor")]:
        del schemas[name]  # BentoML's flattened copies, replaced below by the models themselves

    def component(model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=SCHEMA_REF, mode=mode)  # type: ignore[arg-type]
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": SCHEMA_REF.format(model=model.__name__)}

    # Request and response bodies as pydantic states them: BentoML's copies keep only OpenAPI
    # 3.0's keywords, which lose every `null` the models accept (period_end: null, ...).
    for api in ChurnService.apis.values():
        request_model, response_model = api_models(api.func)
        operation = spec["paths"][api.route]["post"]
        if request_model is not None:
            operation["requestBody"] = {
                "required": any(f.is_required() for f in request_model.model_fields.values()),
                "content": {"application/json": {"schema": component(request_model, "validation")}},
            }
        if response_model is not None:
            operation["responses"]["200"]["content"] = {
                "application/json": {"schema": component(response_model, "serialization")}
            }
    component(ErrorResponse, "serialization")
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's CHURN_API_TOKEN, sent as `Authorization: Bearer <token>`.",
        }
    }
    spec["security"] = [{SECURITY_SCHEME: []}]
    info_post = spec["paths"]["/model_info"]["post"]
    spec["paths"]["/model_info"]["get"] = {
        "responses": {"200": copy.deepcopy(info_post["responses"]["200"])},
        "tags": info_post.get("tags", []),
        "description": "The served model (as POST /model_info, without a body).",
        "operationId": f"{SERVICE_NAME}__model_info_get",
    }
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            if is_open_path(path):
                operation["security"] = []
                codes = OPEN_OPERATION_ERRORS
            else:
                operation["security"] = [{SECURITY_SCHEME: []}]
                codes = GUARDED_POST_ERRORS if method == "post" else GUARDED_GET_ERRORS
            responses = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            for code in codes:
                responses[code] = {
                    "description": ERROR_DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
            operation["responses"] = responses
    return spec


def api_models(func: Any) -> tuple[type[BaseModel] | None, type[BaseModel] | None]:
    """The request and response models of a route's function (its one argument and its
    return), each None unless a pydantic model (BentoML's own schema is kept then)."""
    hints = typing.get_type_hints(func)
    params = [n for n in inspect.signature(func).parameters if n != "self"]

    def model(hint: Any) -> type[BaseModel] | None:
        return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None

    request = model(hints.get(params[0])) if len(params) == 1 else None
    return request, model(hints.get("return"))


SWAGGER_ASSETS = Path(bentoml.__file__).parent / "_internal" / "server" / "static_content"
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} {version}: API</title>
  <meta name="description" content="{summary}">
  <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css">
  <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png">
  <style>body {{ margin: 0; background: #fafafa; }}</style>
</head>
<body>
  <noscript><h1>{title} {version}</h1><p>{summary}</p>
    <p>The OpenAPI spec is at <a href="./docs.json">docs.json</a>.</p></noscript>
  <div id="swagger-ui"></div>
  <script src="./static_content/swagger-ui-bundle.js" charset="utf-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "./docs.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
        validatorUrl: null,
      }});
    }};
  </script>
</body>
</html>
"""


async def docs_page(_: Request) -> Response:
    """The API docs: Swagger UI from the assets BentoML ships, served here (nothing external)."""
    info = openapi_document()["info"]
    page = DOCS_PAGE.format(
        title=html.escape(info["title"]),
        version=html.escape(info["version"]),
        summary=html.escape(info["description"].split("\n", 1)[0]),
    )
    return HTMLResponse(page)


async def docs_json(_: Request) -> Response:
    return JSONResponse(openapi_document())


async def model_info_get(_: Request) -> Response:
    """GET /model_info: what POST /model_info answers, for clients that read with GET."""
    try:
        # The instance itself: its API methods, called from here, would go through BentoML's
        # proxy (an HTTP call to this server, without the caller's token).
        service: ChurnService = bentoml.get_current_service()
    except BentoMLException as err:  # before the service has started
        return Response(error_json("service_unavailable", str(err), None), status_code=503,
                        media_type="application/json")  # fmt: skip
    return JSONResponse(service.describe_model().model_dump(mode="json"))


DOCS_ROUTES = [
    Route("/", docs_page, methods=["GET"]),
    Route("/docs.json", docs_json, methods=["GET"]),
    Route("/model_info", model_info_get, methods=["GET"]),
    Mount("/static_content", StaticFiles(directory=SWAGGER_ASSETS), name="swagger-assets"),
]
docs_app.router.routes.extend(DOCS_ROUTES)


def customer_score(partition: Partition, customer_id: str) -> CustomerScore:
    """The partition's answer for one id: its precomputed score, or 'unknown'."""
    row = partition.lookup(customer_id)
    lapsed = partition.lapsed_since(customer_id) if row is None else None
    if lapsed is not None:
        last, days = lapsed
        return CustomerScore(
            customer_id=customer_id,
            status="lapsed",
            as_of=partition.as_of,
            error=f"no score as of {partition.as_of}: lapsed, no qualifying activity for "
            f"{days:.0f} days (the last on {last[:10]}), longer than the model's lookback; "
            "a buyer to win back (the run's lapsed.csv), not one the model scores",
        )
    if row is None:
        similar = partition.similar_id(customer_id)
        hint = f"; ids are matched exactly: did you mean {similar!r}?" if similar else ""
        return CustomerScore(
            customer_id=customer_id,
            status="unknown",
            as_of=partition.as_of,
            error=f"no score as of {partition.as_of}: not a customer, or not eligible then "
            f"(signed up later or already churned){hint}",
        )
    change = None
    if row.previous_probability is not None:
        change = Change(
            previous_as_of=partition.previous_as_of,
            previous_probability=row.previous_probability,
            probability_delta=row.probability_delta,
            level_delta=row.level_delta,
            drivers_moved=[MovedDriver(**m) for m in row.drivers_moved],
        )
    return CustomerScore(
        customer_id=customer_id,
        status="scored",
        churn_probability=row.churn_probability,
        risk_band=row.risk_band,
        drivers=[Driver.from_record(d) for d in row.drivers],
        lower_risk=[Driver(**d) for d in row.lower_risk],
        change=change,
        model_version=row.model_version,
        as_of=partition.as_of,
    )


def records_frame(
    served: ServedModel, records: list[FeatureRecord], partition: Partition | None
) -> pd.DataFrame:
    """Feature records as the model's input frame, checked against the model's features: every
    problem is an InvalidField naming records[i].features.NAME (or base_customer_id)."""
    model = served.model
    names = model.feature_names
    numeric = model.preprocessor.numeric
    levels = {
        name: model.preprocessor.known_levels(name) for name in model.preprocessor.categorical
    }
    numeric_set = set(numeric)
    rows = []
    for i, record in enumerate(records):
        where = f"records[{i}]"
        values: dict[str, object] = {}
        if record.base_customer_id is not None:
            base = partition.feature_row(record.base_customer_id) if partition else None
            if base is None:
                raise InvalidField(
                    f"{where}.base_customer_id",
                    f"'{record.base_customer_id}' is not in the partition as of "
                    f"{partition.as_of if partition else '?'}",
                )
            values = base
        for name, value in record.features.items():
            field = f"{where}.features.{name}"
            if name in numeric_set:
                if isinstance(value, str):
                    raise InvalidField(field, f"must be a number or null, got text {value!r}")
            elif name in levels:
                if value is not None and not isinstance(value, str):
                    raise InvalidField(field, f"must be text, one of {levels[name]}")
                if value is not None and value not in levels[name]:
                    raise InvalidField(field, f"unknown level {value!r}; known: {levels[name]}")
            else:
                raise InvalidField(field, "unknown feature (see /model_info for the list)")
            values[name] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise InvalidField(
                f"{where}.features",
                f"lacks {len(missing)} of the model's features, e.g. {missing[:5]}: send them "
                "all (null for missing) or give base_customer_id",
            )
        rows.append(values)
    block = np.array([[row[n] for n in numeric] for row in rows], dtype="float64")  # None: NaN
    columns: dict[str, object] = {
        "customer_id": [
            r.customer_id or r.base_customer_id or f"record-{i}" for i, r in enumerate(records)
        ]
    }
    columns.update({name: block[:, j] for j, name in enumerate(numeric)})
    columns.update({name: pd.array([row[name] for row in rows], dtype=object) for name in levels})
    return pd.DataFrame(columns)[["customer_id", *names]]


def computed_report(
    served: ServedModel, partition: Partition, by: list[str], start: date, end: date
) -> pd.DataFrame:
    """Retention metrics over (start, end] from the data folder, and the partition's risk view."""
    from retention.metrics import MetricsInputError, PeriodNotCovered
    from serving.batch import segment_report, start_bands

    if start >= end:
        raise InvalidField("period_start", f"must be before period_end ({start} >= {end})")
    try:
        return segment_report(
            partition.tables, partition.scores, partition.revenue, served.model,
            pd.Timestamp(start), pd.Timestamp(end), by,
            start_scores=start_bands(partition.path.parent, pd.Timestamp(start)),
        )  # fmt: skip
    except PeriodNotCovered as err:  # not measured: a period the data do not cover
        after = pd.Timestamp(end) - pd.Timedelta(1, "ns") > err.covered_until  # as segment_report
        field = "period_end" if after else "period_start"
        raise InvalidField(field, str(err)) from None
    except MetricsInputError as err:
        raise InvalidField("by", str(err)) from None


def weekly_report(
    partition: Partition, by: list[str], request: SegmentsRequest
) -> tuple[pd.DataFrame, date, date]:
    """The weekly job's segment report, for a service started without the data folder: its
    own period and dimensions only."""
    hint = "other periods and segments need the data folder (start the service with CHURN_DATA_DIR)"
    if request.period_start is not None or request.period_end is not None:
        raise InvalidField("period_start", f"only the weekly report's period is available: {hint}")
    report = pd.read_parquet(partition.path / "segments.parquet")
    dimensions = set(report["dimension"])
    unknown = [b for b in by if b not in dimensions]
    if unknown:
        available = sorted(dimensions - {"all", "risk_band"})
        raise InvalidField("by", f"{unknown} not in the weekly report (it has {available}); {hint}")
    report = report[report["dimension"].isin(["all", *by, "risk_band"])]
    # The job's period ends just before its run date (reports of earlier versions stored that
    # instant; now the run dates themselves).
    start = pd.Timestamp(report["period_start"].iloc[0]).ceil("D").date()
    end = pd.Timestamp(report["period_end"].iloc[0]).ceil("D").date()
    return report, start, end


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
