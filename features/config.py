"""Configuration of features and of the churn label: windows, churn definition, event types.

The same configuration object travels from the training set to the model artifact, so that
scoring computes exactly the columns the model was trained on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

ChurnMode = Literal["contractual", "non_contractual"]

# Customers-table columns with a role of their own: never a segment, never a declared attribute
# (churned_at as a feature would be the label itself; ended_at says who is still a customer;
# cancel_requested_at, when a notice was given, sets its customer apart until churned_at).
RESERVED_CUSTOMER_COLUMNS = (
    "customer_id", "signup_at", "churned_at", "ended_at", "cancel_requested_at",
)  # fmt: skip


@dataclass(frozen=True)
class ChurnDefinition:
    """What counts as churn in [T, T + horizon), and who is eligible at T.

    contractual: the customer's churned_at falls in [T, T + horizon).
    non_contractual: a customer with qualifying activity in the lookback window [T - lookback, T)
    has no qualifying activity in [T, T + horizon). Only such customers are eligible at T.
    Without a configured lookback it comes from the data: long enough for the customers'
    typical gap between active days (see features.labels.lookback_from_gaps).

    observed_until (YYYY-MM-DD, midnight at the start of that day): the last instant at which
    churn is observed; None: the data's end. A subscription export usually stops recording
    cancellations some days before its last event. No label window reaches past it, and a
    churned_at after it does not count as churn.
    """

    mode: ChurnMode = "contractual"
    horizon_days: int = 30
    # None: from the data (features.labels.data_lookback_days), recorded when resolved.
    lookback_days: int | None = None
    qualifying_events: tuple[str, ...] | None = None  # None: every event type qualifies
    observed_until: str | None = None  # ISO date; None: the data's end

    def __post_init__(self) -> None:
        if self.observed_until is not None:
            object.__setattr__(self, "observed_until", _iso_date(self.observed_until))
        if self.mode not in ("contractual", "non_contractual"):
            raise ValueError(
                f"churn mode must be 'contractual' or 'non_contractual', got {self.mode!r}"
            )
        if self.horizon_days <= 0 or (self.lookback_days is not None and self.lookback_days <= 0):
            raise ValueError("churn horizon_days and lookback_days must be positive")


def _iso_date(value: object) -> str:
    """A date (a TOML date, or YYYY-MM-DD text) as YYYY-MM-DD text; anything else is an error."""
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0) or value.tzinfo is not None:
            raise ValueError(f"observed_until must be a date (YYYY-MM-DD), got {value!r}")
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise ValueError(f"observed_until must be a date (YYYY-MM-DD), got {value!r}")


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# The cycles a renewal date may move on by (FeatureConfig.date_cycles), in months.
CYCLE_MONTHS = {"month": 1, "quarter": 3, "year": 12}

# The kinds of revenue rows whose signals are features where the data has them (FeatureConfig.
# revenue_kinds): payments (invoices and orders: revenue, payment counts and recency, order
# value, paid periods), refunds, failed payments.
REVENUE_SIGNAL_KINDS = ("payment", "refund", "failed_payment")

# The periods an activity row may total (a month's usage in one row): `covers` on an import
# mapping's activity.at, and FeatureConfig.activity_totals.
ACTIVITY_PERIODS = ("day", "week", "month")
# The long windows a configuration gets where the data's history spans them (FeatureConfig.
# long_windows): the events and active days of the last half year and year.
LONG_WINDOWS = (180, 365)
# The length of the periods that activity windows over totals count whole (features.signals.
# window_start) and that reasons say them in (features.dictionary), in days.
PERIOD_DAYS = {"week": 7.0, "month": 30.4375}


@dataclass(frozen=True)
class FeatureConfig:
    """Which behavioural signals to compute, and over which windows (in days before T).

    customer_attributes are the customers-table columns that are model features. Customer
    attributes are a snapshot taken on the day of the export and can hold the future (a
    `status` of canceled, today's MRR): only the attributes declared here become features; the
    others stay segments for the retention and risk reports, which read the customers table.
    """

    windows: tuple[int, ...] = (7, 30, 90)
    # Windows longer than `windows` over which only the events and active days are counted: how
    # much of the last half year or year the customer was active, beside the whole history (a
    # commit log's occasional contributors differ there, not in the last 90 days). None:
    # resolved from the data (LONG_WINDOWS that the history before the last observation date
    # spans twice over); (): none.
    long_windows: tuple[int, ...] | None = None
    trend_window: int = 30  # last trend_window days against the trend_window days before
    event_types: tuple[str, ...] | None = None  # per-type counts; None: resolved from the data
    max_event_types: int = 20
    customer_attributes: tuple[str, ...] = ()  # declared attributes that are model features
    # Declared attributes that are dates (a contract's minimum-term end, a renewal date): their
    # feature is the days from T to the date (negative: past). None: resolved from the data
    # (the declared attributes the customers table holds as timestamps).
    date_attributes: tuple[str, ...] | None = None
    # Date attributes that move on by whole cycles at each renewal (a CRM's next renewal date):
    # (column, "month" | "quarter" | "year") pairs; as of each date T such a date is rolled
    # back to its first occurrence on or after T, the renewal due then. The export day's value,
    # which already shows the terms renewed since, would tell who renewed (features.signals).
    date_cycles: tuple[tuple[str, str], ...] = ()
    max_segment_categories: int = 100  # text attributes with more values are no segment
    # Upgrades, downgrades and the last payment change: only for subscriptions (on order data
    # "last payment change" only says "bought twice"). None: resolved from the data (contractual
    # churn, or revenue rows with a period).
    subscription_signals: bool | None = None
    # Days until the latest payment's paid period ends (negative: ended, not renewed), from
    # revenue.period_end. None: resolved from the data (revenue rows with a period_end).
    paid_period_signals: bool | None = None
    # Active users per account (distinct activity.user_id in each window, and their trend), for
    # accounts that several people use (B2B products). None: resolved from the data (activity
    # rows with a user_id).
    user_signals: bool | None = None
    # The kinds of feedback the data has (nps, csat, review, ticket): each kind's signals only
    # where it has rows, so that no feature is a column of missing values (a shop's behaviour
    # log had 30 NPS, CSAT and ticket columns, all empty). None: resolved from the data (rows
    # dated before the last observation date).
    feedback_kinds: tuple[str, ...] | None = None
    # The kinds of revenue rows the data has (REVENUE_SIGNAL_KINDS: payments, refunds, failed
    # payments): each kind's signals only where it has rows (a bank's snapshots without revenue
    # had 5 columns of missing values and 20 of zeros; a shop without refunds a refunds column of
    # zeros). None: resolved from the data (rows dated before the last observation date).
    revenue_kinds: tuple[str, ...] | None = None
    # Revenue windows of a month or more ("month": the 30 and 90 days before T are the last 1 and
    # 3 calendar months, so each holds as many monthly debits whatever T's day; "day": days, as
    # models trained before it). A gym's members, debited on the 1st, read "No payments in the
    # last 30 days" on every 1 August (the 30 days from 2 July miss 1 July) and "+100 %" revenue
    # on 1 October (August's debit on the 1st falls outside the 30 days before 1 September).
    # None: "month".
    revenue_windows: str | None = None
    # Which payment changes are upgrades and downgrades ("lasting": not undone by the next
    # payment before T and no return to the amount two payments back, so a one-off fee is none;
    # "any": every change, as models trained before it). A gym's freeze fee (5,00 between two
    # 29,90) and a returned debit's surcharge read "1 downgrade in the last 90 days" for members
    # who never changed plan. None: "lasting".
    payment_changes: str | None = None
    # The customers-table column holding each account's licensed seats: adds the share of seats
    # active in the trend window (license utilization). Needs activity.user_id.
    seats_attribute: str | None = None
    long_open_ticket_days: int = 7
    # Whether activity rows carry values (activity.value: seconds listened, items, amounts):
    # the value per window and its trend only then (a commit log without values had
    # value_7d..value_90d columns of zeros and a value trend missing everywhere). None:
    # resolved from the data (a value above 0 dated before the last observation date).
    activity_values: bool | None = None
    # Whether activity has several kinds (activity.event): the per-type counts and the number
    # of kinds per window only then (a commit log of one kind had commit_events_7d.. equal to
    # events_7d.. and event_types_7d.. saying only whether the window had an event). None:
    # resolved from the data (two or more kinds dated before the last observation date); an
    # explicit event_types keeps its per-type counts.
    activity_kinds: bool | None = None
    # Contractual churn gathered around the signup's yearly anniversaries (annual terms that
    # start at signup: a gym's 12-month memberships, a carrier's 24-month contracts): the days
    # to the next anniversary are a feature only then. None: resolved from the data (churn
    # dated before the last observation date: features.signals.churn_on_anniversaries).
    anniversary_signals: bool | None = None
    # What activity.value measures, for the reasons ("seconds listened": "6,861 seconds listened
    # in the last 30 days"); None: "Activity value 6,861 in the last 30 days".
    value_unit: str | None = None
    # Activity rows are totals of this period ("day", "week", "month": a month's usage per row),
    # each stamped at its period's last second; the import sets it from `covers` on activity.at.
    activity_totals: str | None = None
    churn: ChurnDefinition = field(default_factory=ChurnDefinition)
    # Non-contractual churn: the BG/NBD parameters (r, alpha, a, b) of the customer base, for
    # the no_activity_chance feature (features.buying_process). None: resolved from the data
    # (recorded with the model); (): none (contractual churn, or too little data to fit).
    buying_process: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        from features.contract import FEEDBACK_KINDS

        unknown_kinds = set(self.feedback_kinds or ()) - set(FEEDBACK_KINDS)
        if isinstance(self.feedback_kinds, str) or unknown_kinds:
            raise ValueError(
                f"feedback_kinds lists kinds of feedback from {list(FEEDBACK_KINDS)}, got "
                f"{self.feedback_kinds!r}"
            )
        unknown_kinds = set(self.revenue_kinds or ()) - set(REVENUE_SIGNAL_KINDS)
        if isinstance(self.revenue_kinds, str) or unknown_kinds:
            raise ValueError(
                f"revenue_kinds lists kinds of revenue rows from {list(REVENUE_SIGNAL_KINDS)}, "
                f"got {self.revenue_kinds!r}"
            )
        if self.payment_changes not in (None, "lasting", "any"):
            raise ValueError(f'payment_changes is "lasting" or "any", got {self.payment_changes!r}')
        if self.revenue_windows not in (None, "day", "month"):
            raise ValueError(f'revenue_windows is "day" or "month", got {self.revenue_windows!r}')
        if not self.windows or any(w <= 0 for w in self.windows):
            raise ValueError(f"feature windows must be positive day counts, got {self.windows}")
        if self.long_windows is not None and any(w <= max(self.windows) for w in self.long_windows):
            raise ValueError(
                f"long_windows must be longer than the longest of windows {list(self.windows)}, "
                f"got {list(self.long_windows)}"
            )
        if self.trend_window <= 0:
            raise ValueError("trend_window must be positive")
        attributes = self.customer_attributes
        if isinstance(attributes, str) or not all(isinstance(a, str) for a in attributes):
            raise ValueError(
                f"customer_attributes must be a list of column names, got {attributes!r}"
            )
        reserved = [a for a in attributes if a in RESERVED_CUSTOMER_COLUMNS]
        if reserved:
            raise ValueError(
                f"customer_attributes cannot hold {reserved}: {', '.join(RESERVED_CUSTOMER_COLUMNS)} "
                "have a role of their own (churned_at is the label)"
            )
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"customer_attributes lists a column twice: {list(attributes)}")
        dates = self.date_attributes
        if dates is not None and not set(dates) <= set(attributes):
            raise ValueError(
                f"date_attributes {sorted(set(dates) - set(attributes))} are not among the "
                f"declared customer_attributes {list(attributes)}"
            )
        seats = self.seats_attribute
        if seats is not None and (not isinstance(seats, str) or seats in RESERVED_CUSTOMER_COLUMNS):
            raise ValueError(
                f"seats_attribute must name a customers-table column of seat counts, got {seats!r}"
            )
        cycles = self.date_cycles
        if not all(isinstance(c, tuple) and len(c) == 2 for c in cycles):
            raise ValueError(f"date_cycles must map columns to cycles, got {cycles!r}")
        for column, cycle in cycles:
            if column not in attributes:
                raise ValueError(
                    f"date_cycles names '{column}', which is not among the declared "
                    f"customer_attributes {list(attributes)}"
                )
            if cycle not in CYCLE_MONTHS:
                raise ValueError(
                    f"date_cycles: '{column}' = {cycle!r}; a cycle is one of {list(CYCLE_MONTHS)}"
                )
        if self.activity_totals not in (None, *ACTIVITY_PERIODS):
            raise ValueError(
                "activity_totals must be 'day', 'week' or 'month' (the period each activity row "
                f"totals), got {self.activity_totals!r}"
            )
        process = self.buying_process
        if process is not None and (
            len(process) not in (0, 4) or not all(float(v) > 0 for v in process)
        ):
            raise ValueError(
                "buying_process must be four positive numbers (r, alpha, a, b) or empty, "
                f"got {process!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureConfig:
        """A configuration from its dict form (a TOML section, or the dict stored with a model).

        Models trained before customer_attributes existed stored the attributes they took as
        features under segment_columns, and always had the subscription signals: read so, they
        get the same columns."""
        raw = dict(raw)
        if "segment_columns" in raw:
            legacy = raw.pop("segment_columns")
            if "customer_attributes" in raw:
                raise ValueError(
                    "give customer_attributes only (segment_columns is its former name)"
                )
            raw["customer_attributes"] = legacy or ()
            raw.setdefault("subscription_signals", True)
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown feature settings {sorted(unknown)}; known: {sorted(known)}")
        churn = raw.pop("churn", {}) or {}
        if isinstance(churn, dict):
            unknown = set(churn) - set(ChurnDefinition.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown churn settings {sorted(unknown)}")
            if churn.get("qualifying_events") is not None:
                churn["qualifying_events"] = tuple(churn["qualifying_events"])
            churn = ChurnDefinition(**churn)
        for key in (
            "windows",
            "long_windows",
            "event_types",
            "feedback_kinds",
            "revenue_kinds",
            "customer_attributes",
            "date_attributes",
            "buying_process",
        ):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raw[key] = tuple(raw[key])
        cycles = raw.get("date_cycles")
        if cycles is not None:  # a TOML table { renewal_date = "year" }, or stored pairs
            pairs = cycles.items() if isinstance(cycles, dict) else cycles
            try:
                raw["date_cycles"] = tuple((str(c), str(v)) for c, v in pairs)
            except (TypeError, ValueError):
                raise ValueError(
                    f'date_cycles must map columns to cycles ({{ renewal_date = "year" }}), '
                    f"got {cycles!r}"
                ) from None
        return cls(churn=churn, **raw)

    def with_churn(self, **changes: Any) -> FeatureConfig:
        return replace(self, churn=replace(self.churn, **changes))


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML or JSON configuration file into a dict (empty when no path is given)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file '{path}' does not exist")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with path.open("rb") as fh:
        return tomllib.load(fh)


def feature_config_from_file(path: str | Path | None) -> FeatureConfig:
    """The [features] section of a configuration file (with [features.churn]) as a FeatureConfig."""
    return FeatureConfig.from_dict(load_config(path).get("features", {}))


DATA_CONFIG_FILE = "config.toml"


def config_path_for_data(
    data_dir: str | Path, config_path: str | Path | None = None
) -> Path | None:
    """The configuration file for a dataset: --config if given, else the data folder's own
    config.toml (written by the importers and the demo), else None (defaults)."""
    if config_path is not None:
        return Path(config_path)
    own = Path(data_dir) / DATA_CONFIG_FILE
    return own if own.is_file() else None


def config_for_data(data_dir: str | Path, config_path: str | Path | None = None) -> FeatureConfig:
    """The feature configuration for a dataset (see config_path_for_data)."""
    return feature_config_from_file(config_path_for_data(data_dir, config_path))


def config_to_toml(
    config: FeatureConfig,
    training: dict[str, Any] | None = None,
    scoring: dict[str, Any] | None = None,
) -> str:
    """A FeatureConfig as the [features] section of a TOML file (what config_for_data reads),
    with optional [training] and [scoring] sections of plain settings."""
    lines = []
    if training:
        lines += ["[training]", *(f"{k} = {_toml_value(v)}" for k, v in training.items()), ""]
    if scoring:
        lines += ["[scoring]", *(f"{k} = {_toml_value(v)}" for k, v in scoring.items()), ""]
    lines.append("[features]")
    churn_lines = ["", "[features.churn]"]
    for key, value in config.to_dict().items():
        if key == "churn":
            churn_lines += [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + churn_lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
