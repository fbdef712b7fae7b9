"""What the churn service accepts and answers: pydantic request and response models, the limits
on request sizes, and the domain errors (4xx that name the field).

Requests forbid unknown fields, reject NaN and infinity, and bound every list and string, so a
client's mistake is a 400 naming the field and never reaches the model. Limits come from the
environment (read once, when this module is imported; see ``Limits``) so that the OpenAPI
schema states them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from bentoml.exceptions import InvalidArgument
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Request limits. Environment: CHURN_MAX_CUSTOMER_IDS, CHURN_MAX_RECORDS,
    CHURN_MAX_SEGMENT_DIMENSIONS (body size: CHURN_MAX_BODY_BYTES, see serving.auth)."""

    max_customer_ids: int = 1000
    max_records: int = 100
    max_segment_dimensions: int = 5

    @classmethod
    def from_env(cls) -> Limits:
        def read(name: str, default: int) -> int:
            raw = os.environ.get(name)
            if raw is None or raw == "":
                return default
            value = int(raw)
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {raw!r}")
            return value

        return cls(
            max_customer_ids=read("CHURN_MAX_CUSTOMER_IDS", cls.max_customer_ids),
            max_records=read("CHURN_MAX_RECORDS", cls.max_records),
            max_segment_dimensions=read("CHURN_MAX_SEGMENT_DIMENSIONS", cls.max_segment_dimensions),
        )


LIMITS = Limits.from_env()
MAX_TOP_DRIVERS = 10
MIN_DATE, MAX_DATE = date(1970, 1, 1), date(2200, 12, 31)


# --------------------------------------------------------------------------- errors


class InvalidField(InvalidArgument):
    """A request that is well-formed but cannot be answered as asked (unknown feature, unknown
    segment, bad period): a 400 whose message starts with the field's path (``FIELD: message``,
    the form ``split_field`` reads back when the error reaches the client)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}")


_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\.[A-Za-z0-9_-]+)*): ")


def split_field(message: str) -> tuple[str | None, str]:
    """(field, rest) of an InvalidField message ``FIELD: message``; (None, message) otherwise."""
    match = _FIELD_PREFIX.match(message)
    if match is None:
        return None, message
    return match["field"], message[match.end() :]


class ErrorItem(BaseModel):
    """One problem with a request."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="Machine-readable reason: for validation errors pydantic's error type "
        "(missing, extra_forbidden, too_short, json_invalid, ...), otherwise the kind of error "
        "(invalid_value, missing_token, invalid_token, not_found, method_not_allowed, "
        "payload_too_large, unsupported_media_type, service_unavailable, ...).",
        examples=["too_short"],
    )
    message: str = Field(
        description="What is wrong, for people; names the field.",
        examples=["customer_ids: List should have at least 1 item after validation, not 0"],
    )
    field: str | None = Field(
        description="The request field at fault as a path (records[0].features.plan), or the "
        "header (authorization, content-type) or body; null when no field is at fault.",
        examples=["customer_ids"],
    )


class ErrorBody(ErrorItem):
    """The first problem, and all of them when there are several."""

    details: list[ErrorItem] = Field(
        default_factory=list,
        description="Every problem found (validation reports them all); empty otherwise.",
    )


class ErrorResponse(BaseModel):
    """The one shape of every error the service answers (4xx and 5xx)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


# --------------------------------------------------------------------------- shared types


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


CustomerId = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=128,
        description="A customer id as in the contract's customers table.",
        examples=["C000001"],
    ),
]
FeatureName = Annotated[StrictStr, Field(min_length=1, max_length=128)]
FeatureValue = (
    Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[StrictStr, Field(max_length=256)]
    | None
)
SegmentName = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="A customer attribute (plan, country, ...), signup_cohort or risk_band.",
        examples=["plan"],
    ),
]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    """Only a date or ISO 8601 text (YYYY-MM-DD) is a date: pydantic alone would also read a
    number, or digits in text, as seconds since 1970."""
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
        return value
    raise ValueError("must be a date in ISO 8601 form, YYYY-MM-DD")


RequestDate = Annotated[date, BeforeValidator(_iso_date), Field(ge=MIN_DATE, le=MAX_DATE)]


class Driver(_Response):
    """A feature pushing this customer's risk up: what it is, its value, how much it adds (in
    log-odds and in percentage points of the probability) and the reason in words, from the
    feature dictionary (features.dictionary)."""

    feature: str = Field(description="Feature name.", examples=["days_since_last_event"])
    label: str = Field(
        description="The feature's label for people.", examples=["Days since last activity"]
    )
    value: float | None = Field(
        description="The feature's value as a number; null for a categorical attribute (see "
        "value_text) or a missing value.",
        examples=[34.2],
    )
    value_text: str | None = Field(
        default=None,
        description="A categorical attribute's value (plan, country, ...); null for numbers.",
        examples=[None],
    )
    contribution: float = Field(
        description="Contribution to the log-odds of churn of the raw model, before "
        "calibration (exact per-row tree contributions plus the linear term's; positive "
        "raises the risk).",
        examples=[0.42],
    )
    risk_points: float | None = Field(
        description="Its share of the churn probability in percentage points: the change "
        "from the base probability to this customer's, shared among the features in "
        "proportion to their contributions (all features' points sum to that change). Null "
        "in partitions written before risk points existed.",
        examples=[4.2],
    )
    reason: str = Field(
        description="The value in words, with units and context.",
        examples=["No activity in the last 34 days (usually active every 3 days)"],
    )

    @classmethod
    def from_record(cls, record: dict[str, Any], attributes: tuple[str, ...] = ()) -> Driver:
        """A driver from a partition's record; records of partitions written before labels,
        reasons and risk points existed ({feature, value as text, contribution}) get them from
        the feature dictionary (a reason without the customer's context, no risk points)."""
        if "reason" in record:
            return cls(**record)
        from features.dictionary import describe

        raw = record.get("value")
        try:
            value, text = (None, None) if raw is None else (float(raw), None)
        except (TypeError, ValueError):
            value, text = None, str(raw)
        feature = str(record["feature"])
        entry = describe(feature, attributes, strict=False)
        return cls(
            feature=feature,
            label=entry.label,
            value=value,
            value_text=text,
            contribution=float(record["contribution"]),
            risk_points=None,
            reason=entry.text(text if text is not None else value),
        )


LOWER_RISK = (
    "For a customer at or below the typical customer's risk (who has no driver raising it): "
    "the features that hold the risk down, largest first, with negative contribution and "
    'risk_points ("Last activity 3 days ago (usually active every 4 days)"). Empty above it, '
    "and in partitions written before it existed."
)


class MovedDriver(_Response):
    """A feature whose contribution changed most since the previous score."""

    feature: str = Field(description="Feature name.", examples=["tickets_open"])
    change: float = Field(
        description="Change in its contribution to the log-odds since the previous score.",
        examples=[0.31],
    )
    reason: str | None = Field(
        default=None,
        description="Its value now in words: as a risk where the change raised it, as what "
        "holds the risk down where it fell (none in partitions written before it).",
        examples=["No activity in the last 13 days (usually active every 20 days)"],
    )


class Change(_Response):
    """What changed since the customer's previous score (the previous weekly partition)."""

    previous_as_of: date | None = Field(
        description="Run date of the previous partition.", examples=["2024-12-08"]
    )
    previous_probability: float | None = Field(
        description="Churn probability in the previous partition.", examples=[0.12]
    )
    probability_delta: float | None = Field(
        description="churn_probability - previous_probability.", examples=[0.07]
    )
    level_delta: float | None = Field(
        default=None,
        description="The part of probability_delta that the churn level of the time of year "
        "made: the customer's score at this run's level minus the same at the previous run's "
        "(0 for a model without one; null in partitions written before it existed).",
        examples=[0.01],
    )
    drivers_moved: list[MovedDriver] = Field(
        description="Features whose contribution moved most, largest change first."
    )


# --------------------------------------------------------------------------- /score


class ScoreRequest(_Request):
    """Customers to look up in the latest scored partition."""

    customer_ids: list[CustomerId] = Field(
        min_length=1,
        max_length=LIMITS.max_customer_ids,
        description=f"Customer ids, 1 to {LIMITS.max_customer_ids}; each is answered on its own.",
        examples=[["C000001", "C000042"]],
    )


class CustomerScore(_Response):
    """One customer's risk as of the partition's date, or why there is none."""

    customer_id: str = Field(description="The id asked for.", examples=["C000001"])
    status: Literal["scored", "lapsed", "unknown"] = Field(
        description="'lapsed' (non-contractual churn): a buyer with no qualifying activity in "
        "the model's lookback, listed in the run's win-back list and not scored; 'unknown': "
        "the id is not in the partition (not a customer, or not eligible on the run date: "
        "signed up later or already churned).",
        examples=["scored"],
    )
    churn_probability: Probability | None = Field(
        default=None,
        description="Calibrated probability of churn within the model's horizon.",
        examples=[0.19],
    )
    risk_band: str | None = Field(
        default=None, description="Risk band: high, medium or low.", examples=["high"]
    )
    drivers: list[Driver] = Field(
        default_factory=list, description="Top features raising the risk, largest first."
    )
    lower_risk: list[Driver] = Field(default_factory=list, description=LOWER_RISK)
    change: Change | None = Field(
        default=None,
        description="Change since the previous score; null without one (first run, or a "
        "customer new since then).",
    )
    model_version: str | None = Field(
        default=None, description="Registered model version that scored it.", examples=["3"]
    )
    as_of: date = Field(description="Run date of the partition.", examples=["2024-12-15"])
    error: str | None = Field(
        default=None, description="Why a lapsed or unknown id has no score.", examples=[None]
    )


class ScoreResponse(_Response):
    as_of: date = Field(description="Run date of the partition answered from.")
    model_version: str = Field(description="Model version of the partition.", examples=["3"])
    results: list[CustomerScore] = Field(description="One entry per id asked for, in order.")
    unknown_ids: list[str] = Field(
        description="The ids with status unknown (lapsed ones are known: their status says so).",
        examples=[[]],
    )


# --------------------------------------------------------------------------- /score_records


class FeatureRecord(_Request):
    """Feature values to score on the spot: all the model's features, or a customer of the
    latest partition to start from (base_customer_id) and the values to change (what-if)."""

    customer_id: CustomerId | None = Field(
        default=None, description="An id to echo back with the score (optional)."
    )
    base_customer_id: CustomerId | None = Field(
        default=None,
        description="Start from this customer's features in the latest partition; `features` "
        "then overrides some of them.",
    )
    features: dict[FeatureName, FeatureValue] = Field(
        max_length=1000,
        description="Feature name -> value: numbers for numeric features, text (one of the "
        "trained levels) for categorical ones, null for missing.",
        examples=[{"tickets_open": 3, "plan": "basic"}],
    )


class ScoreRecordsRequest(_Request):
    records: list[FeatureRecord] = Field(
        min_length=1,
        max_length=LIMITS.max_records,
        description=f"1 to {LIMITS.max_records} feature records.",
        examples=[[{"base_customer_id": "C000001", "features": {"tickets_open": 3}}]],
    )
    top_drivers: int = Field(
        default=3, ge=0, le=MAX_TOP_DRIVERS, description="Drivers per record.", examples=[3]
    )
    as_of: RequestDate | None = Field(
        default=None,
        description="The date the records describe, for the churn level of that time of year "
        "(a model trained on a year or more of dates); default: the run date of the partition "
        "being served, or none when there is none.",
        examples=["2024-12-15"],
    )


class RecordScore(_Response):
    customer_id: str | None = Field(description="The record's customer_id or base_customer_id.")
    churn_probability: Probability = Field(description="Calibrated churn probability.")
    risk_band: str = Field(description="Risk band: high, medium or low.", examples=["medium"])
    drivers: list[Driver] = Field(description="Top features raising the risk.")
    lower_risk: list[Driver] = Field(default_factory=list, description=LOWER_RISK)


class ScoreRecordsResponse(_Response):
    model_version: str = Field(description="Version of the model that scored the records.")
    results: list[RecordScore] = Field(description="One score per record, in order.")


# --------------------------------------------------------------------------- /segments


class SegmentsRequest(_Request):
    """Segments and period for the retention metrics and the risk view."""

    by: list[SegmentName] = Field(
        min_length=1,
        max_length=LIMITS.max_segment_dimensions,
        description="Segment dimensions (risk_band is always added).",
        examples=[["plan"]],
    )
    period_start: RequestDate | None = Field(
        default=None,
        description="Start of the period (exclusive); default: 30 days before period_end.",
        examples=["2024-11-15"],
    )
    period_end: RequestDate | None = Field(
        default=None,
        description="End of the period (inclusive); default: the partition's run date.",
        examples=["2024-12-15"],
    )


SEGMENT_KEY_METRICS = (
    "customers_start", "new", "lost", "customers_end", "crr", "churn_rate", "nrr",
    "gross_revenue_churn", "nps", "clv", "customers_scored", "mean_risk", "expected_churners",
    "revenue_at_risk", "share_high", "share_medium", "share_low",
)  # fmt: skip


class SegmentRow(_Response):
    """Retention metrics over the period and the risk view of the partition, for one segment."""

    dimension: str = Field(description="'all' or the segment dimension.", examples=["plan"])
    segment: str = Field(description="The segment's value.", examples=["basic"])
    small_group: bool | None = Field(description="Fewer than 30 customers at the start.")
    customers_start: int | None = Field(description="S: customers at the period's start.")
    new: int | None = Field(description="N: new customers during the period.")
    lost: int | None = Field(description="Customers lost during the period.")
    customers_end: int | None = Field(description="E: customers at the period's end.")
    crr: float | None = Field(description="Customer retention rate (E - N) / S.")
    churn_rate: float | None = Field(description="Lost / S.")
    nrr: float | None = Field(description="Net revenue retention.")
    gross_revenue_churn: float | None = Field(description="MRR lost / MRR at the start.")
    nps: float | None = Field(description="Net promoter score (-100..100).")
    clv: float | None = Field(description="Customer lifetime value.")
    customers_scored: int | None = Field(description="Customers in the partition.")
    mean_risk: float | None = Field(description="Mean churn probability.")
    expected_churners: float | None = Field(description="Sum of churn probabilities.")
    revenue_at_risk: float | None = Field(description="Sum of probability x monthly revenue.")
    share_high: float | None = Field(description="Share of customers in the high band.")
    share_medium: float | None = Field(description="Share in the medium band.")
    share_low: float | None = Field(description="Share in the low band.")
    other: dict[str, float | int | str | bool | None] = Field(
        description="Every other metric of the segment report (intervals, MRR movements, ...)."
    )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SegmentRow:
        clean = {k: _json_value(v) for k, v in record.items()}
        named = {k: clean.pop(k, None) for k in (*SEGMENT_KEY_METRICS, "small_group")}
        for key in ("customers_start", "new", "lost", "customers_end", "customers_scored"):
            if named[key] is not None:
                named[key] = int(named[key])
        return cls(
            dimension=str(clean.pop("dimension")),
            segment=str(clean.pop("segment")),
            **named,
            other=clean,
        )


class SegmentsResponse(_Response):
    as_of: date = Field(description="Run date of the partition the risk view comes from.")
    period_start: date = Field(description="Start of the period (exclusive).")
    period_end: date = Field(description="End of the period (inclusive).")
    by: list[str] = Field(description="The dimensions reported (risk_band included).")
    segments: list[SegmentRow] = Field(description="One row per segment, 'all' first.")


def _json_value(value: Any) -> float | int | str | bool | None:
    """A value from a pandas row as JSON can carry it: NaN/NaT become null, dates text."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy scalar -> Python
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "isoformat"):
        try:
            return None if value != value else value.isoformat()  # NaT != NaT
        except (TypeError, ValueError):
            return None
    return str(value)


# --------------------------------------------------------------------------- /model_info


class ModelInfoRequest(_Request):
    """No parameters: send {} or an empty body."""


class FeatureInfo(_Response):
    name: str = Field(description="Feature name.", examples=["tenure_days"])
    kind: Literal["numeric", "categorical"] = Field(description="How the model reads it.")
    label: str | None = Field(
        default=None, description="What it measures, in words.", examples=["Tenure"]
    )
    unit: str | None = Field(
        default=None,
        description="What its value counts: days, events, money, share, category, ...; a "
        "date attribute (a contract's minimum-term end) is sent as 'days from T': the days from "
        "the scoring date to the date, negative once it has passed.",
        examples=["days"],
    )
    levels: list[str] | None = Field(
        default=None, description="Categorical: the levels known at training."
    )
    grouped_levels: list[str] | None = Field(
        default=None,
        description="Categorical: the levels fewer than the model's minimum of customers had "
        "in training, scored together as one level (as is a level never seen in training).",
    )


class PartitionInfo(_Response):
    as_of: date = Field(description="Run date of the partition being served.")
    previous_as_of: date | None = Field(description="Run date of the partition before it.")
    model_version: str = Field(description="Model version that scored it.")
    customers: int = Field(description="Customers scored in it.")


class ModelInfo(_Response):
    name: str = Field(description="Registered model name.", examples=["churn-risk"])
    version: str = Field(description="MLflow registered model version.", examples=["3"])
    run_id: str = Field(description="MLflow training run id.")
    bento_model: str = Field(description="Tag of the model in the BentoML store / Bento.")
    trained_until: str = Field(description="Last date of the data the model was trained on.")
    horizon_days: int = Field(description="Churn horizon the probability refers to.")
    metrics: dict[str, float | None] = Field(description="Holdout metrics of the training run.")
    risk_bands: dict[str, float] = Field(description="Band -> lowest probability in it.")
    features: list[FeatureInfo] = Field(description="The model's features, in order.")
    partition: PartitionInfo | None = Field(description="The scored partition being served.")


# --------------------------------------------------------------------------- /alerts

AlertKind = Literal["entered_high", "new_high", "rose", "new_top_reason"]


class AlertsRequest(_Request):
    """Which of the latest partition's alerts to return (send {} for all of them)."""

    kinds: list[AlertKind] | None = Field(
        default=None,
        max_length=4,
        description="Only alerts of these kinds (any of them); null: every alert.",
        examples=[["entered_high"]],
    )
    limit: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="At most this many alerts, riskiest first.",
        examples=[100],
    )


class Alert(_Response):
    """A customer to look at this week, and why."""

    customer_id: str = Field(description="The customer.", examples=["C000001"])
    kinds: list[AlertKind] = Field(
        description="entered_high: in the high band now and not at the previous run; "
        "new_high: in the high band and not scored at the previous run (new, or back); "
        "rose: the probability rose by at least the configured points of the customer's own "
        "(the time of year's part, level_change_points, does not count); new_top_reason: the "
        "feature raising the risk most changed.",
        examples=[["entered_high", "rose"]],
    )
    churn_probability: Probability = Field(description="Churn probability now.", examples=[0.41])
    previous_probability: Probability | None = Field(
        description="At the previous run (null: first run, or a customer new since then).",
        examples=[0.18],
    )
    change_points: float | None = Field(
        description="Change in percentage points since the previous run.", examples=[23.0]
    )
    level_change_points: float | None = Field(
        default=None,
        description="The part of change_points that the churn level of the time of year made "
        "(it moves every customer at once; 0 for a model without one; null on a first run, "
        "for a customer new since then, and in alerts written before it existed).",
        examples=[1.5],
    )
    risk_band: str = Field(description="Risk band now.", examples=["high"])
    previous_risk_band: str | None = Field(description="Risk band at the previous run.")
    top_feature: str | None = Field(
        description="The feature raising the risk most.", examples=["days_since_last_event"]
    )
    reason: str | None = Field(
        description="The top reason in words.",
        examples=["No activity in the last 34 days (usually active every 3 days)"],
    )
    risk_points: float | None = Field(
        description="The top reason's share of the probability, in percentage points (null "
        "for partitions written before risk points existed)."
    )
    previous_top_feature: str | None = Field(description="The top feature at the previous run.")
    previous_reason: str | None = Field(description="The top reason at the previous run.")


class AlertsResponse(_Response):
    as_of: date = Field(description="Run date of the partition the alerts come from.")
    previous_as_of: date | None = Field(description="The run they compare with (null: first).")
    total: int = Field(description="Alerts in the partition matching the kinds asked for.")
    alerts: list[Alert] = Field(description="At most `limit` alerts, riskiest first.")
