"""The churn service: risk by customer id (from the latest weekly partition), risk for feature
records (scored on the spot), segment retention metrics with the risk view, and model info.

The champion is declared on the class (``model_ref``), so `bentoml build` packs it into the
Bento and the service starts with no MLflow server or database. The routes are thin: requests
and responses are in serving.schemas, the partition in serving.partitions, the model store in
serving.model_store, the bearer token and body limits in serving.auth.

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

from datetime import date, timedelta

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import ServiceUnavailable

from serving.auth import GuardSettings, RequestGuard
from serving.metrics import ReadinessProbe, RequestMetrics, set_source, set_status
from serving.model_store import (
    ServedModel,
    load_served_model,
    model_for_partition,
    model_tag,
)
from serving.partitions import Partition, PartitionStore
from serving.schemas import (
    Change,
    CustomerScore,
    Driver,
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
from serving.timeouts import install_read_timeout, read_timeout_from_env

DEFAULT_SEGMENT_DAYS = 30
NO_PARAMETERS = ModelInfoRequest()


@bentoml.service(
    name="churn-service",
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": [r"/score$"]},  # see the module docstring
    metrics={"enabled": False},  # serving.metrics answers /metrics instead (module docstring)
)
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
        scored = score_features(served.model, frame, served.version, top=request.top_drivers)
        results = [
            RecordScore(
                customer_id=record.customer_id or record.base_customer_id,
                churn_probability=float(p),
                risk_band=str(band),
                drivers=[Driver(**d) for d in drivers],
            )
            for record, p, band, drivers in zip(
                request.records, scored["churn_probability"], scored["risk_band"],
                scored["drivers"], strict=True,
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

    @bentoml.api(route="/model_info")
    async def model_info(self, request: ModelInfoRequest = NO_PARAMETERS, /) -> ModelInfo:
        """The served model: version, training date, metrics, features, and the partition."""
        served, model = self.served, self.served.model
        partition = self.partitions.current()
        pre = model.preprocessor
        return ModelInfo(
            name=served.name,
            version=served.version,
            run_id=served.run_id,
            bento_model=served.bento_tag,
            trained_until=str(model.trained_until),
            horizon_days=int(model.horizon_days),
            metrics={k: _finite(v) for k, v in model.metrics.items()},
            risk_bands={k: float(v) for k, v in model.band_thresholds.items()},
            features=[FeatureInfo(name=n, kind="numeric") for n in pre.numeric]
            + [
                FeatureInfo(name=n, kind="categorical", levels=list(levels))
                for n, levels in pre.categorical.items()
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


PROBE_ROUTES = ("/healthz", "/livez", "/readyz")
ChurnService.add_asgi_middleware(  # outside the guard: refused requests are counted too
    RequestMetrics, routes=[*PROBE_ROUTES, *(api.route for api in ChurnService.apis.values())]
)
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


def customer_score(partition: Partition, customer_id: str) -> CustomerScore:
    """The partition's answer for one id: its precomputed score, or 'unknown'."""
    row = partition.lookup(customer_id)
    if row is None:
        return CustomerScore(
            customer_id=customer_id,
            status="unknown",
            as_of=partition.as_of,
            error=f"no score as of {partition.as_of}: not a customer, or not eligible then "
            "(signed up later or already churned)",
        )
    change = None
    if row.previous_probability is not None:
        change = Change(
            previous_as_of=partition.previous_as_of,
            previous_probability=row.previous_probability,
            probability_delta=row.probability_delta,
            drivers_moved=[MovedDriver(**m) for m in row.drivers_moved],
        )
    return CustomerScore(
        customer_id=customer_id,
        status="scored",
        churn_probability=row.churn_probability,
        risk_band=row.risk_band,
        drivers=[Driver(**d) for d in row.drivers],
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
    levels = model.preprocessor.categorical
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
    from retention.metrics import MetricsInputError
    from serving.batch import segment_report

    if start >= end:
        raise InvalidField("period_start", f"must be before period_end ({start} >= {end})")
    try:
        return segment_report(
            partition.tables, partition.scores, partition.revenue, served.model,
            pd.Timestamp(start), pd.Timestamp(end), by,
        )  # fmt: skip
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
    # The job's period ends just before its run date (the report may store that instant).
    start = pd.Timestamp(report["period_start"].iloc[0]).ceil("D").date()
    end = pd.Timestamp(report["period_end"].iloc[0]).ceil("D").date()
    return report, start, end


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
