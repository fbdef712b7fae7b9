"""Profile a data folder before anyone trains on it, and warn about leaks and broken units.

Everything here is a pure function over validated contract tables and the folder's churn
definition; `churn check` loads the folder and prints the report. Why: the costly mistakes of
churn projects are silent ones a model happily learns from, such as a CRM `status` exported on
the last day (it *is* the label: AUC 0.995), Stripe's unix seconds read as 1970, amounts in
cents, or a month with no rows. A report that shows them before training is cheaper than a
model that looks excellent and is useless.

The training pipeline calls :func:`label_like_attributes` to refuse declared customer
attributes that look like the label.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.config import RESERVED_CUSTOMER_COLUMNS, ChurnDefinition, FeatureConfig
from features.contract import EVENT_TIMESTAMPS, TABLES, TIMESTAMP_COLUMNS, Tables, plain_value
from features.dictionary import attribute_value_text, describe
from features.labels import (
    current_mask,
    eligible_mask,
    ever_active_before,
    label_mask,
    resolve_lookback,
)
from features.prepared import DAY_NS, prepare, qualifying_rows, to_ns
from reporting import formatting as fmt

# Words in an attribute's name that suggest it holds the customer's state on export day.
# Exact tokens: short words that are parts of innocent words ("weekend", "statement").
LABEL_NAME_TOKENS = frozenset(
    {"status", "state", "end", "ended", "ends", "active", "inactive", "closed", "close", "left",
     "lost", "deleted", "stage", "lifecycle", "live", "retained", "renewed", "renewal"}
)  # fmt: skip
# Prefixes: any token starting with them (canceled, cancelled, cancellation, churned, ...).
LABEL_NAME_PREFIXES = ("cancel", "churn", "terminat", "expir", "deactivat", "unsubscrib")

AUC_FLAG = 0.95  # single-attribute ROC AUC against churned-ever that flags an attribute
# A category whose churn share is <= 1 % or >= 99 % ... (an export-day status leaks almost
# perfectly; annual plans in a 15-month export, 6 of 332 churned before their first renewal
# against 9 % overall, are a real effect known at signup, and were refused at 2 %)
PURE_SHARE = 0.01
PURE_MIN_EXPECTED = 10  # ... where chance would have put >= 10 customers of the other class
# ... and holding at most this share of them: at a 98 % churn rate a plain value is 99 % churned
# by chance (an order export's 'boleto' payers: 3,211 of 3,239 churned, 99 % as overall).
PURE_OF_EXPECTED = 0.1
MIN_CATEGORY_CUSTOMERS = 20  # rarer categories are pooled before the AUC (no overfit ids)
MIN_CLASS_CUSTOMERS = 10  # churned and active customers needed to measure separation
DATE_AFTER_SIGNUP_SHARE = 0.5  # a date attribute after signup for most customers
# A numeric attribute whose rank correlation with a customer's totals over the whole data
# (events, payments, revenue) is at least this, and higher by RUNNING_TOTAL_MARGIN than with
# the totals before the middle of the history, is a running total of the export day.
RUNNING_TOTAL_RHO = 0.95
RUNNING_TOTAL_MARGIN = 0.02
MIN_RUNNING_TOTAL_CUSTOMERS = 50
MIN_CHURNERS = 50  # fewer churned customers: warn that the model has little to learn from
MIN_OBSERVATION_DATES = 6  # fewer monthly dates with a complete label: a short history
CENTS_MEDIAN = 1000.0  # whole-number amounts with a typical value in the thousands
# Payment kinds whose typical amounts differ this many times or more: one in cents, one not
# (a failed payment is an attempt at the price an invoice charges; 100 is the factor). Refunds
# are left out: a partial refund or a credit can be a small share of a payment.
SCALE_RATIO = 50.0
PRICED_ALIKE = ("invoice", "order", "failed_payment")
MONEY_NAME = re.compile(r"(amount|price|revenue|mrr|arr|ltv|value|total|charge|paid|cents?)")
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01")
MAX_CHURN_MONTHS = 120  # the churn table covers at most the last ten years of dates
MIN_ROWS_FOR_TIME_CHECKS = 10  # midnight/one-day checks need some rows to mean anything
WITHOUT_ACTIVITY_SHARE = 0.05  # warn when this share of customers has no activity at all

Level = Literal["error", "warning", "note"]  # a note is information, never a failure


class LabelLike(NamedTuple):
    """A customer attribute that looks like the label, and why (in words for the report)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Finding:
    """One error or warning: what, where (table, column) and a message a person can act on."""

    level: Level
    code: str
    message: str
    table: str | None = None
    column: str | None = None


@dataclass
class TableProfile:
    """Rows, customers, date range, rows per calendar month and suspicious rows of one table."""

    name: str
    rows: int
    customers: int
    time_column: str | None
    first: str | None
    last: str | None
    rows_per_month: dict[str, int]
    gap_months: list[str]
    duplicate_rows: int
    unknown_customer_rows: int
    future_rows: dict[str, int] = field(default_factory=dict)
    before_1990_rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ChurnMonth:
    """The label at one monthly observation date: eligible customers and how many churned."""

    as_of: str
    eligible: int
    churned: int

    @property
    def share(self) -> float:
        return self.churned / self.eligible if self.eligible else math.nan


@dataclass
class CheckReport:
    """The profile of a data folder and its findings; errors make `churn check` fail."""

    data: str
    definition: dict[str, Any] = field(default_factory=dict)
    tables: list[TableProfile] = field(default_factory=list)
    customers_without_activity: int = 0
    event_types: dict[str, int] = field(default_factory=dict)
    churn_by_month: list[ChurnMonth] = field(default_factory=list)
    churned_customers: int | None = None  # churned ever (by the end of the observed data)
    customers_measured: int = 0  # customers whose churned-ever status is known
    churned_means: str = "churned by the end of the data"  # what churned_customers counts
    label_like: list[LabelLike] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "note"]

    def exit_code(self, strict: bool = False) -> int:
        """2 on errors, 1 on warnings when strict, else 0."""
        if self.errors:
            return 2
        return 1 if strict and self.warnings else 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["churn_by_month"] = [
            {**asdict(m), "share": None if math.isnan(m.share) else round(m.share, 6)}
            for m in self.churn_by_month
        ]
        out["label_like"] = [{"name": f.name, "reason": f.reason} for f in self.label_like]
        out["errors"] = len(self.errors)
        out["warnings"] = len(self.warnings)
        out["notes"] = len(self.notes)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        """The report for a terminal: plain aligned text."""
        return "\n".join(_render(self, markdown=False)) + "\n"

    def to_markdown(self) -> str:
        return "\n".join(_render(self, markdown=True)) + "\n"


# --------------------------------------------------------------------------------------------
# Entry points


def value_unit_note(activity: pd.DataFrame, config: FeatureConfig) -> str | None:
    """Activity values that measure something (not all 1: quantities, minutes, amounts) without
    [features] value_unit: the reasons then read "Activity value 4 in the last 30 days" (a
    grocery's items bought). None when the unit is declared or the values count events."""
    if config.value_unit or "value" not in activity or activity.empty:
        return None
    values = activity["value"].dropna()
    if values.empty or bool((values == 1).all()):
        return None
    return (
        'activity values are not all 1 but have no unit: reasons read "Activity value 4 in the '
        'last 30 days"; declare what they measure, [features] value_unit = "items" (or '
        '"minutes", "EUR"), for "4 items in the last 30 days"'
    )


def check_tables(
    tables: Tables,
    config: FeatureConfig,
    *,
    data: str = "",
    now: pd.Timestamp | None = None,
    allow_label_like: tuple[str, ...] = (),
    training_dates: Sequence[pd.Timestamp] | None = None,
) -> CheckReport:
    """Profile validated tables under the folder's churn definition and collect the findings.

    `now` (naive UTC) is the instant after which rows count as dated in the future;
    `allow_label_like`: declared attributes confirmed as known before each date ([training]
    allow_label_like), which training uses despite looking like the label; `training_dates`:
    the observation dates `churn train` would learn from (training.pipeline.default_dates),
    which a short history's warning names."""
    config = _resolved(tables, config)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    churn = _churn(config)
    report = CheckReport(data=data, definition=_definition(config))
    known = tables.customers["customer_id"]
    for name in TABLES:
        df = getattr(tables, name)
        profile = profile_table(name, df, known, now)
        report.tables.append(profile)
        found = _table_findings(profile, df, now)
        said = {f.message for f in report.findings if f.code == "quiet_weeks"}
        # An order log's revenue rows are its activity rows: their quiet week is said once.
        report.findings += [f for f in found if f.code != "quiet_weeks" or f.message not in said]
    if tables.customers.empty:
        report.findings.append(
            Finding(
                "error", "no_rows", "table 'customers' has no rows: nothing to learn", "customers"
            )
        )
    if tables.activity.empty and (churn.mode != "contractual" or tables.revenue.empty):
        text = (
            "table 'activity' has no rows, and non-contractual churn is read from activity"
            if churn.mode != "contractual"
            else "tables 'activity' and 'revenue' have no rows: no behaviour to learn from"
        )
        report.findings.append(Finding("error", "no_rows", text, "activity"))
    if report.errors:  # no rows, or rows of unknown customers: labels cannot be computed
        return report
    with_activity = np.bincount(prepare(tables).activity.customer, minlength=len(known)) > 0
    report.customers_without_activity = int((~with_activity).sum())
    events = tables.activity["event"].value_counts(sort=True)
    report.event_types = {str(k): int(v) for k, v in events.items() if v > 0}
    report.findings += _activity_findings(report, churn, tables, with_activity)
    report.findings += _customers_without_rows(tables, churn)
    period_starts = None if config.activity_totals else period_start_warning(tables.activity)
    if period_starts:
        report.findings.append(Finding("warning", "period_starts", period_starts, "activity", "at"))
    report.findings += _amount_findings(tables)
    unit = value_unit_note(tables.activity, config)
    if unit:
        report.findings.append(Finding("note", "value_unit", unit, "activity", "value"))
    report.findings += _period_end_findings(tables)
    report.findings += _yearly_invoices_findings(tables, churn)
    report.findings += _attribute_findings(tables, config)
    report.findings += [
        Finding("warning", "churn_anchored_date", text, "customers", name)
        for name, text in churn_anchored_dates(tables, config)
    ]
    report.churn_by_month = churn_share_by_month(tables, config)
    measured, churned = churned_ever(tables, config)
    report.customers_measured = int(measured.sum())
    report.churned_customers = int((measured & churned).sum())
    report.churned_means = churned_ever_words(tables, config)
    report.findings += _churn_findings(report, tables, config, training_dates)
    report.findings += _lifecycle_findings(tables, churn, config.activity_totals)
    scheduled = tables.scheduled_end_warning()
    if scheduled:
        report.findings.append(
            Finding("warning", "scheduled_ends", scheduled, "customers", "churned_at")
        )
    end = tables.data_end() + pd.Timedelta(microseconds=1)  # every row is before it
    report.findings += [
        Finding("warning", "stale_table", text, table, "at")
        for table, text in _stale(days_before(tables, end)[0], end, "score as of")
    ]
    report.label_like = label_like_attributes(tables, config)
    # An attribute that holds the future is left out, not cleaned: its odd values (a running
    # total's heavy buyers) are no entry errors to map to missing.
    flagged = {flag.name for flag in report.label_like}
    report.findings = [
        f for f in report.findings if not (f.code == "odd_attribute_values" and f.column in flagged)
    ]
    declared = set(getattr(config, "customer_attributes", ()) or ())
    for flag in report.label_like:
        if flag.name in allow_label_like:
            use = "declared as a model feature and allowed ([training] allow_label_like)"
        elif flag.name in declared:
            use = "declared as a model feature: training will refuse it"
        else:
            use = "a segment of the reports only, as it should stay: do not declare it"
        report.findings.append(
            Finding(
                "warning",
                "label_like",
                f"customer attribute '{flag.name}' looks like the label: {flag.reason}; {use}",
                "customers",
                flag.name,
            )
        )
    return report


def error_report(data: str, message: str, code: str = "contract") -> CheckReport:
    """A report holding one error, for data that could not be loaded (a contract error)."""
    return CheckReport(data=data, findings=[Finding("error", code, message)])


def label_like_attributes(tables: Tables, config: FeatureConfig) -> list[LabelLike]:
    """Customer attributes that look like the churn label, with the reason in words.

    An attribute is flagged when its name suggests a state (status, cancel, churn, end, ...),
    when it separates churned from active customers almost perfectly (single-attribute ROC AUC
    >= 0.95 against churned-ever under the folder's definition, or a category of many
    customers that churned ~all or ~none where chance would not say so), or when it is a date
    after signup (an end or cancel date recorded on export day). Cheap: one pass per column,
    sorting at most once (seconds at 100k customers)."""
    config = _resolved(tables, config)
    customers = tables.customers
    attributes = [c for c in customers.columns if c not in RESERVED_CUSTOMER_COLUMNS]
    if not attributes:
        return []
    measured, churned = churned_ever(tables, config)
    y = churned[measured]
    can_measure = int(y.sum()) >= MIN_CLASS_CUSTOMERS and int((~y).sum()) >= MIN_CLASS_CUSTOMERS
    totals: RunningTotals | None = None
    # a date declared in date_cycles is read, as of each date, as its occurrence due then: no
    # export-day date (an insurer's next due date had been refused until allowed by name)
    cycled = {column for column, _ in getattr(config, "date_cycles", ()) or ()}
    flags = []
    for col in attributes:
        if col in cycled:
            continue  # its export-day value is no feature: each date reads the occurrence due then
        reasons = []
        hint = label_like_name(col)
        if hint:
            reasons.append(f"its name ('{hint}') suggests a state recorded on export day")
        values = customers[col]
        if pd.api.types.is_datetime64_any_dtype(values):
            reasons += _date_reasons(values, customers["signup_at"])
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            totals = totals or running_totals(tables, config)
            reasons += _running_total_reasons(values.to_numpy(dtype=float, na_value=np.nan), totals)
        if can_measure:
            reasons += _separation_reasons(values[measured].reset_index(drop=True), y)
        if reasons:
            flags.append(LabelLike(col, "; ".join(reasons)))
    return flags


def churned_ever(tables: Tables, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: (status known, churned by the end of the observed data).

    Contractual: churned_at set (and not after the end of observation); every customer is
    known. Non-contractual: no qualifying activity in the last horizon before the end, known
    for customers who signed up before that window began and had qualifying activity before it
    (a browser who never bought has no churn to know: a shop log counted 11,877 of 15,767
    "churned" where 8,817 had ever bought). This is what an attribute exported on the last day
    could know."""
    config = _resolved(tables, config)
    churn = _churn(config)
    end = _observed_end(tables, config)
    n = len(tables.customers)
    if churn.mode == "contractual":
        if "churned_at" not in tables.customers:
            return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        churned_at = tables.customers["churned_at"]
        return np.ones(n, dtype=bool), (churned_at.notna() & (churned_at <= end)).to_numpy()
    start = _lapse_start(end, churn.horizon_days)
    known = (tables.customers["signup_at"] < start).to_numpy() & ever_active_before(
        tables, start, churn
    )
    return known, label_mask(tables, start, churn) & known


def _lapse_start(end: pd.Timestamp, horizon_days: int) -> pd.Timestamp:
    """The first day of the last `horizon_days` whole days of the data, its last day included:
    counted from the last record's midnight, the window had ended there, and a game's 9
    players active only on the data's last day were counted as lapsed."""
    return end.normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)


def churned_ever_words(tables: Tables, config: FeatureConfig) -> str:
    """What churned_ever counts, with its dates: "433 of 533" alone left a reader of a ratings
    site's check asking which customers, as of when (benchmarks/README.md, session 32)."""
    config = _resolved(tables, config)
    churn = _churn(config)
    end = _observed_end(tables, config)
    if churn.mode == "contractual":
        return f"churned by the end of the data ({end.date()})"
    start = _lapse_start(end, churn.horizon_days)
    return (
        f"lapsed by the end of the data: no qualifying activity from {start.date()} to "
        f"{end.date()} (the last {churn.horizon_days} days), of the customers active before"
    )


def churn_share_by_month(tables: Tables, config: FeatureConfig) -> list[ChurnMonth]:
    """Eligible customers and churners at monthly observation dates (the first of each month)
    whose label horizon lies inside the observed data; the last ten years at most."""
    config = _resolved(tables, config)
    churn = _churn(config)
    dates = observation_months(tables, config)
    out = []
    for t in dates:
        eligible = eligible_mask(tables, t, churn)
        churned = label_mask(tables, t, churn) & eligible
        out.append(ChurnMonth(str(t.date()), int(eligible.sum()), int(churned.sum())))
    return out


def observation_months(tables: Tables, config: FeatureConfig) -> list[pd.Timestamp]:
    """First days of months T after the data starts (and, non-contractual, after a whole
    lookback) with T + horizon inside the observed data."""
    churn = _churn(config)
    start = tables.history_start()  # the recorded history: signups often reach further back
    if churn.mode == "non_contractual":
        start += pd.Timedelta(days=churn.lookback_days)
    last = _observed_end(tables, config) - pd.Timedelta(days=churn.horizon_days)
    first = start.to_period("M").to_timestamp()
    if first < start:
        first += pd.DateOffset(months=1)
    if first > last:
        return []
    dates = list(pd.date_range(first, last, freq="MS"))
    return dates[-MAX_CHURN_MONTHS:]


def profile_table(
    name: str, df: pd.DataFrame, known_ids: pd.Series, now: pd.Timestamp
) -> TableProfile:
    """Rows, customers, date range, rows per month (gaps), duplicates, rows dated in the
    future or before 1990, and rows whose customer is not in the customers table."""
    time_column = "signup_at" if name == "customers" else "at"
    time_column = time_column if time_column in df and len(df) else None
    per_month: dict[str, int] = {}
    gaps: list[str] = []
    first = last = None
    if time_column is not None:
        stamps = df[time_column].dropna()
        if len(stamps):
            first, last = str(stamps.min()), str(stamps.max())
            counts = month_counts(stamps)
            per_month = {k: int(v) for k, v in counts.items()}
            gaps = [k for k, v in per_month.items() if v == 0]
    future, ancient = {}, {}
    for col in _time_columns(name, df):
        values = df[col]
        n_future = int((values > now).sum())
        n_old = int((values < EARLIEST_PLAUSIBLE).sum())
        if n_future:
            future[col] = n_future
        if n_old:
            ancient[col] = n_old
    unknown = 0 if name == "customers" else int((~df["customer_id"].isin(known_ids)).sum())
    return TableProfile(
        name=name,
        rows=len(df),
        customers=int(df["customer_id"].nunique()) if len(df) else 0,
        time_column=time_column,
        first=first,
        last=last,
        rows_per_month=per_month,
        gap_months=gaps,
        duplicate_rows=int(repeated_rows(df).sum()),
        unknown_customer_rows=unknown,
        future_rows=future,
        before_1990_rows=ancient,
    )


def repeated_rows(df: pd.DataFrame) -> np.ndarray:
    """Per row: it repeats an earlier row exactly (DataFrame.duplicated), computed on one
    64-bit hash per row first and confirmed exactly only where hashes repeat: duplicated() over
    10M events took ~17 s, hashing and sorting ~3 s."""
    out = np.zeros(len(df), dtype=bool)
    if not len(df):
        return out
    hashes = pd.util.hash_pandas_object(df, index=False).to_numpy()
    ordered = np.sort(hashes)  # a sort beats a hash table of 10M distinct keys here
    same = ordered[1:] == ordered[:-1]
    if same.any():
        candidates = np.isin(hashes, ordered[1:][same])
        out[candidates] = df[candidates].duplicated().to_numpy()
    return out


def month_counts(stamps: pd.Series) -> pd.Series:
    """Rows per calendar month ('YYYY-MM'), every month from the first to the last (zeros
    included: a gap shows as 0). At most the last ten years, so a stray 1970 row does not
    make the table centuries long."""
    ns = to_ns(stamps)
    dt = ns.astype("datetime64[ns]")
    months = dt.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    low, high = int(months.min()), int(months.max())
    low = max(low, high - MAX_CHURN_MONTHS + 1)
    kept = months[months >= low] - low
    counts = np.bincount(kept, minlength=high - low + 1)
    labels = np.arange(low, high + 1).astype("datetime64[M]").astype(str)
    return pd.Series(counts, index=labels)


def suspicious_gaps(per_month: dict[str, int], around: int = 3) -> list[str]:
    """Months without rows where the months around them (up to `around` on each side, those
    with rows) average MIN_ROWS_FOR_TIME_CHECKS rows or more: a zero there is not chance."""
    months = list(per_month)
    counts = np.array([per_month[m] for m in months], dtype=float)
    out = []
    for i in np.flatnonzero(counts == 0):
        near = np.r_[counts[max(i - around, 0) : i], counts[i + 1 : i + 1 + around]]
        near = near[near > 0]
        if len(near) and near.mean() >= MIN_ROWS_FOR_TIME_CHECKS:
            out.append(months[i])
    return out


# A week with less than this share of the rows of the weeks around it (their median, up to
# QUIET_AROUND on each side) where those have QUIET_MIN_WEEKLY rows or more: not chance (a
# Poisson count of 200 falls below 50 never), but an outage, a missing export or a closure.
QUIET_SHARE = 0.25
QUIET_AROUND = 4
QUIET_MIN_WEEKLY = 200
QUIET_TABLES = ("activity", "revenue")


class QuietWeeks(NamedTuple):
    first: str  # the first Monday, YYYY-MM-DD
    last: str  # the last Sunday
    rows: int
    typical: int  # the median week around them

    @property
    def weeks(self) -> int:
        return (pd.Timestamp(self.last) - pd.Timestamp(self.first)).days // 7 + 1

    @property
    def share(self) -> float:
        """A week's rows in the run against a typical week's."""
        return self.rows / self.weeks / self.typical


def quiet_weeks(stamps: pd.Series) -> list[QuietWeeks]:
    """Runs of whole weeks (Monday to Sunday, UTC; the first and last weeks of the data are
    partial and left out) with less than QUIET_SHARE of the rows of the weeks around them.
    A month without rows is the month check's; a week is what a grocery's outage was (19 to
    25 December 2000 at 5 % of its volume: every customer's 30-day window read low at the
    next scoring date, and the ranking lost to an analyst's; benchmarks/README.md, session 39)."""
    if not len(stamps):
        return []
    return quiet_weeks_from_days(*_rows_per_day(stamps))


def _rows_per_day(stamps: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The days with rows (days since 1970-01-01) and the rows on each."""
    return np.unique(to_ns(stamps) // DAY_NS, return_counts=True)


def quiet_weeks_from_days(days: np.ndarray, counts: np.ndarray) -> list[QuietWeeks]:
    """quiet_weeks from the rows per day (days since 1970-01-01 and their counts): what the
    Spark engine collects, so both engines find the same weeks."""
    days = np.asarray(days, dtype="int64")
    if not len(days):
        return []
    weeks = (days + 3) // 7  # 1970-01-01 was a Thursday: week 0 starts on Monday 1969-12-29
    low, high = int(weeks.min()), int(weeks.max())
    low = max(low, high - 520)  # at most the last ten years, as month_counts
    kept = weeks >= low
    counts = np.bincount(
        weeks[kept] - low, weights=np.asarray(counts, dtype="float64")[kept],
        minlength=high - low + 1,
    )[1:-1]  # fmt: skip
    flagged = np.zeros(len(counts), dtype=bool)
    typical = np.zeros(len(counts))
    for i in range(1, len(counts)):
        before = counts[max(i - QUIET_AROUND, 0) : i]
        near = np.r_[before, counts[i + 1 : i + 1 + QUIET_AROUND]]
        if len(near) < QUIET_AROUND:
            continue
        typical[i] = np.median(near)
        # low against the weeks around it and against those before it: the first weeks of an
        # export that climb from zero (an app's launch) are no outage; the first whole week
        # has none before it, and is not judged
        flagged[i] = (
            typical[i] >= QUIET_MIN_WEEKLY
            and counts[i] < QUIET_SHARE * typical[i]
            and counts[i] < QUIET_SHARE * np.median(before)
        )
    out = []
    i = 0
    while i < len(counts):
        if not flagged[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(counts) and flagged[j + 1]:
            j += 1
        monday = np.datetime64(int(low + 1 + i) * 7 - 3, "D")
        sunday = np.datetime64(int(low + 1 + j) * 7 + 3, "D")
        out.append(
            QuietWeeks(
                str(monday),
                str(sunday),
                int(counts[i : j + 1].sum()),
                int(np.median(typical[i : j + 1])),
            )
        )
        i = j + 1
    return out


# A run's recent windows: a quiet week within this many days before the run date is said in
# run.json and the report (the features' 30-day windows are the shortest most models lean on).
QUIET_RECENT_DAYS = 30


def recent_quiet_week_notes(
    day_counts: dict[str, tuple[np.ndarray, np.ndarray]], as_of: object
) -> list[str]:
    """A sentence per event table whose rows before the run date hold a quiet week
    (quiet_weeks_from_days) ending within QUIET_RECENT_DAYS of it: every customer's recent
    windows hold it, so the scores read everyone as less active than the customers' own
    behaviour says, until the week leaves the windows. day_counts: per table, its days with
    rows before the run date (days since 1970-01-01) and their row counts."""
    t = pd.Timestamp(as_of)
    notes = []
    for name in ("activity", "revenue"):
        if name not in day_counts:
            continue
        days, counts = day_counts[name]
        for run in quiet_weeks_from_days(days, counts):
            last = pd.Timestamp(run.last)
            if last < t - pd.Timedelta(days=QUIET_RECENT_DAYS):
                continue
            until = (last + pd.Timedelta(days=QUIET_RECENT_DAYS + 1)).date()
            notes.append(
                f"the {name} before this run holds a quiet "
                f"{'week' if run.weeks == 1 else f'{run.weeks} weeks'}, {run.first} .. "
                f"{run.last}, at {run.share:.0%} of a typical week's rows: every customer's last "
                f"{QUIET_RECENT_DAYS} days hold it, so risks read higher than the customers' "
                f"own behaviour says, for everyone at once, until about {until} (a missing "
                "export, an outage or a closure; `churn check` names it)"
            )
    return notes


# --------------------------------------------------------------------------------------------
# Findings


def _table_findings(p: TableProfile, df: pd.DataFrame, now: pd.Timestamp) -> list[Finding]:
    found = []
    if p.duplicate_rows:
        example = _example(df, repeated_rows(df))
        found.append(
            Finding(
                "warning",
                "duplicate_rows",
                f"{'1 row repeats' if p.duplicate_rows == 1 else f'{p.duplicate_rows:,} rows repeat'}"
                " another row in every column of the table "
                f"(counted twice in features); example row: {example}. Two real events can "
                "look alike once the columns that told them apart were left out of the "
                "mapping (two products put in the cart in one second, two commits in one "
                "second): if so, map the column that tells them apart (an event or order id, "
                'e.g. event_id = "sha" under [activity.columns]) and they are counted as '
                "they are now; if they are copies, drop them in the source's query",
                p.name,
            )
        )
    if p.unknown_customer_rows:
        found.append(
            Finding(
                "error",
                "unknown_customers",
                f"{p.unknown_customer_rows:,} rows refer to customers not in 'customers'",
                p.name,
                "customer_id",
            )
        )
    gaps = suspicious_gaps(p.rows_per_month)
    if gaps:
        found.append(
            Finding(
                "warning",
                "month_gap",
                f"no rows in {_month_runs(gaps)} inside {p.first[:10]} .. {p.last[:10]}, "
                f"though the months around have {MIN_ROWS_FOR_TIME_CHECKS} or more a month: "
                + (
                    "no customer signed up then, or the customers export misses that month "
                    "(its customers are then missing from every table's figures)"
                    if p.name == "customers"
                    else "a missing export looks like churn"
                ),
                p.name,
                p.time_column,
            )
        )
    if p.name in QUIET_TABLES and p.time_column is not None:
        months = set(gaps)
        for run in quiet_weeks(df[p.time_column].dropna()):
            if run.rows == 0 and run.first[:7] in months and run.last[:7] in months:
                continue  # the month check's
            one = run.weeks == 1
            span = f"the week {run.first} .. {run.last}" if one else (
                f"the {run.weeks} weeks {run.first} .. {run.last}"
            )  # fmt: skip
            found.append(
                Finding(
                    "warning",
                    "quiet_weeks",
                    f"{span} {'holds' if one else 'hold'} {run.rows:,} rows, "
                    f"{run.share:.0%} of a typical week around "
                    f"{'it' if one else 'them'} ({run.typical:,}): a missing export, an "
                    "outage or a closure? If rows are missing, export them again; if it was "
                    "real, every customer's windows that hold it read low at once, and a "
                    "model trained on dates before it scores the dates within a window after "
                    "it as if everyone had slowed down",
                    p.name,
                    p.time_column,
                )
            )
    for col, n in p.future_rows.items():
        if (p.name, col) not in EVENT_TIMESTAMPS:
            # ahead by nature (a scheduled end, a paid period's end, a renewal date): counted
            # in the table's "future" column, no warning (an insurer's 3,742 renewal dates)
            continue
        found.append(
            Finding(
                "warning",
                "future_rows",
                f"{n:,} rows dated after now ({now:%Y-%m-%d %H:%M} UTC); example row: "
                f"{_example(df, df[col] > now)}",
                p.name,
                col,
            )
        )
    for col, n in p.before_1990_rows.items():
        hint = (
            " (1970: unix seconds or milliseconds read as nanoseconds? declare the epoch unit)"
            if (df[col].dt.year == 1970).any()
            else ""
        )
        found.append(
            Finding(
                "warning",
                "before_1990",
                f"{n:,} rows dated before 1990{hint}; example row: "
                f"{_example(df, df[col] < EARLIEST_PLAUSIBLE)}",
                p.name,
                col,
            )
        )
    for col in _time_columns(p.name, df):
        values = df[col].dropna()
        if len(values) < MIN_ROWS_FOR_TIME_CHECKS:
            continue
        ns = to_ns(values)
        if (ns % DAY_NS == 0).all() and col in ("at", "resolved_at"):
            # A note, not a warning: daily exports are dates, which the contract reads as
            # midnight (a SaaS export's 448,486 usage rows failed `--strict` for it).
            found.append(
                Finding(
                    "note",
                    "midnight",
                    f"all {len(values):,} timestamps are at midnight: dates without a time of "
                    "day. A day's rows count on that day: features as of T use the days before "
                    "T, and the rows of T itself fall in T's label window. If the export had "
                    "times of day, they were lost on the way",
                    p.name,
                    col,
                )
            )
        if (ns // DAY_NS == ns[0] // DAY_NS).all():
            # End dates shared by all: a term or a course that ended for everyone on that day
            # is as likely as an import date (OULAD: the one presentation that had ended by the
            # cut), so a note; activity or signups on one day are an import date.
            term = p.name == "customers" and col == "ended_at"
            found.append(
                Finding(
                    "note" if term else "warning",
                    "one_day",
                    f"all {len(values):,} timestamps fall on one day ({values.iloc[0].date()}): "
                    + (
                        "a term that ended for all of them on that day, or an import or export "
                        "date rather than when they ended?"
                        if term
                        else "an import or export date rather than when things happened?"
                    ),
                    p.name,
                    col,
                )
            )
    return found


# Period totals stamped at the period's start (a month's usage at 2024-07-01 00:00): at least
# this share of the rows at the first instant of a month, or at midnight on one weekday. Events
# with a date and no time put 1/30 of their rows on the 1st and 1/7 on each weekday.
PERIOD_START_MONTH_SHARE = 0.3
PERIOD_START_WEEK_SHARE = 0.5
PERIOD_START_MIN_PERIODS = 3  # distinct months (weeks) such rows fall in
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class PeriodStarts:
    """Counts, over batches of activity times, of the rows stamped at the first instant of a
    month or at midnight of each weekday, to tell period totals from events (`found`)."""

    rows: int = 0
    month_starts: int = 0
    weekday_midnights: list[int] = field(default_factory=lambda: [0] * 7)
    months: set[int] = field(default_factory=set)
    weeks: dict[int, set[int]] = field(default_factory=lambda: {d: set() for d in range(7)})
    example: pd.Timestamp | None = None

    def add(self, at: pd.Series) -> None:
        at = pd.Series(at).dropna()
        if not len(at):
            return
        self.rows += len(at)
        ns = to_ns(at)
        midnight = ns % DAY_NS == 0
        first = midnight & (at.dt.day == 1).to_numpy()
        self.month_starts += int(first.sum())
        month_index = (at.dt.year * 12 + at.dt.month - 1).to_numpy()
        self.months.update(np.unique(month_index[first]).tolist())
        weekday = at.dt.day_of_week.to_numpy()
        week_index = ns // (7 * DAY_NS)
        for d in range(7):
            on = midnight & (weekday == d)
            self.weekday_midnights[d] += int(on.sum())
            if on.any():
                self.weeks[d].update(np.unique(week_index[on]).tolist())
        if self.example is None and first.any():
            self.example = at[first].iloc[0]

    def found(self) -> str | None:
        """'month' or 'week' when the rows look like totals stamped at their period's start,
        else None."""
        if self.rows < MIN_ROWS_FOR_TIME_CHECKS:
            return None
        if (
            self.month_starts >= PERIOD_START_MONTH_SHARE * self.rows
            and len(self.months) >= PERIOD_START_MIN_PERIODS
        ):
            return "month"
        day = int(np.argmax(self.weekday_midnights))
        if (
            self.weekday_midnights[day] >= PERIOD_START_WEEK_SHARE * self.rows
            and len(self.weeks[day]) >= PERIOD_START_MIN_PERIODS
        ):
            return "week"
        return None

    def describe(self, remedy: str) -> str | None:
        """The warning, with what to do (`remedy`, where '{period}' names the period found),
        when found() finds period totals."""
        period = self.found()
        if period is None:
            return None
        if period == "month":
            share, where = self.month_starts / self.rows, "the first instant of a month"
            example = f" (e.g. {self.example:%Y-%m-%d %H:%M})" if self.example is not None else ""
        else:
            day = int(np.argmax(self.weekday_midnights))
            share, where = self.weekday_midnights[day] / self.rows, f"midnight of a {WEEKDAYS[day]}"
            example = ""
        return (
            f"{_pct(share)} of {self.rows:,} activity rows are stamped at {where}"
            f"{example}: totals of the {period} that starts there? A feature on a date inside "
            f"the {period} would count activity from after that date; "
            + remedy.format(period=period)
            + (
                ". Events that do happen on that day (a weekly dunning run, a delivery round on "
                "a fixed weekday) are no totals: keep them as they are"
                if period == "week"
                else ""
            )
        )


def period_start_warning(activity: pd.DataFrame) -> str | None:
    """The warning of PeriodStarts for a contract activity table (None when it has events)."""
    starts = PeriodStarts()
    starts.add(activity["at"])
    return starts.describe(
        "stamp each total at the last second of its period (an import mapping declares covers = "
        '"{period}" on activity.at)'
    )


def _activity_findings(
    report: CheckReport,
    churn: ChurnDefinition,
    tables: Tables | None = None,
    with_activity: np.ndarray | None = None,
) -> list[Finding]:
    found = []
    events = report.event_types
    if len(events) == 1:
        (only,) = events
        found.append(
            Finding(
                "warning",
                "single_event",
                f"one event type only ('{only}'): per-type counts and breadth of use carry "
                "no information; map more event types if the source has them",
                "activity",
                "event",
            )
        )
    if churn.mode == "non_contractual" and churn.qualifying_events is not None:
        absent = [e for e in churn.qualifying_events if e not in events]
        if absent:
            level: Level = "error" if len(absent) == len(churn.qualifying_events) else "warning"
            found.append(
                Finding(
                    level,
                    "qualifying_events",
                    f"qualifying events {absent} never occur in activity (events: "
                    f"{sorted(events)[:10]}): every customer would look churned",
                    "activity",
                    "event",
                )
            )
    n_customers = report.tables[0].rows
    if report.customers_without_activity == n_customers and churn.mode == "contractual":
        return found  # a billing-only export: no activity table, not customers who look idle
    if report.customers_without_activity >= WITHOUT_ACTIVITY_SHARE * n_customers:
        found.append(
            Finding(
                "warning",
                "customers_without_activity",
                f"{report.customers_without_activity:,} of {n_customers:,} customers have no "
                "activity at all (never scored in non-contractual mode; in contractual mode "
                f"they look inactive){_gone_before_activity(tables, churn, with_activity)}",
                "customers",
                "customer_id",
            )
        )
    return found


def _gone_before_activity(
    tables: Tables | None, churn: ChurnDefinition, seen: np.ndarray | None
) -> str:
    """Under contractual churn, how many of the customers without activity (not `seen`, per
    customers row) had churned before the activity table's first row: gone before it was
    recorded, no gap of theirs (a B2B export's 881 "customers without activity" were 855
    accounts lost before its event log began, and 5 current ones)."""
    if tables is None or seen is None or churn.mode != "contractual" or tables.activity.empty:
        return ""
    customers = tables.customers
    if "churned_at" not in customers:
        return ""
    first = tables.activity["at"].min()
    gone = (customers["churned_at"] < first).to_numpy(dtype=bool, na_value=False)
    current = customers["churned_at"].isna().to_numpy()
    before = int((~seen & gone).sum())
    if not before:
        return ""
    return (
        f"; {before:,} of them churned before the activity begins ({first.date()}), gone "
        f"before it was recorded, and {int((~seen & current).sum()):,} are current customers"
    )


# Current customers of a contractual export with no row in any table for this long before the
# data's end: scored from their signup date and attributes alone. A warning from this share of
# the current customers on (a mapping's join that made a phantom customer: a SaaS export's
# spells query gave 52 such "customers", scored "low" for a year), a note below it.
SILENT_CUSTOMER_DAYS = 30
SILENT_CUSTOMER_SHARE = 0.01


def _customers_without_rows(tables: Tables, churn: ChurnDefinition) -> list[Finding]:
    """Contractual churn: current customers at the data's end, signed up SILENT_CUSTOMER_DAYS
    before it or more, without any activity, payment or feedback: counted with an example."""
    if churn.mode != "contractual":
        return []  # non-contractual: customers without qualifying activity are not scored
    prep = prepare(tables)
    end = tables.data_end()
    seen = np.zeros(prep.n_customers, dtype=bool)
    for rows in (prep.activity.customer, prep.revenue.customer, prep.feedback.customer):
        seen[rows] = True
    signed_up = prep.signup_at <= end.value - SILENT_CUSTOMER_DAYS * DAY_NS
    current = current_mask(tables, end) & signed_up
    silent = current & ~seen
    if not silent.any():
        return []
    share = silent.sum() / max(int(current.sum()), 1)
    level: Level = "warning" if share >= SILENT_CUSTOMER_SHARE else "note"
    text = (
        f"{int(silent.sum()):,} of {int(current.sum()):,} current customers signed up "
        f"{SILENT_CUSTOMER_DAYS} days or more before the data's end ({end.date()}) have no "
        "activity, no payment and no feedback at all: they are scored from their signup date "
        "and attributes alone. Customers who never used the product? Or rows a mapping's join "
        f"made (a spell or account with nothing of its own)? Example row: "
        f"{_example(tables.customers, silent)}"
    )
    return [Finding(level, "customers_without_rows", text, "customers", "customer_id")]


PERIOD_OVERLAP_DAYS = 7  # a paid period may run this far past the next invoice (late renewal)
PERIOD_OVERLAP_SHARE = 0.5  # of the invoices followed by another: ones whose period runs on


def _payments(revenue: pd.DataFrame) -> np.ndarray:
    """Per revenue row: a payment (any kind but refund and failed_payment; a missing kind is
    an invoice), as features.prepared reads the kinds."""
    if "kind" not in revenue:
        return np.ones(len(revenue), dtype=bool)
    return ~revenue["kind"].isin(["refund", "failed_payment"]).to_numpy(dtype=bool)


def _period_end_findings(tables: Tables) -> list[Finding]:
    """revenue.period_end that is not the end of the period an invoice pays: where most
    invoices are followed by the customer's next one long before their period_end, the column
    holds something else (a contract's minimum-term end: a mobile operator's mapping read "Paid
    period ends in 9 weeks" and spread each monthly bill over the term in the revenue metrics)."""
    rev = tables.revenue
    if "period_end" not in rev or rev["period_end"].isna().all():
        return []
    paid = rev[_payments(rev)]
    paid = paid.sort_values(["customer_id", "at"], kind="stable")
    following = paid.groupby("customer_id", sort=False, observed=True)["at"].shift(-1)
    known = following.notna() & paid["period_end"].notna()
    if not known.any():
        return []
    runs_on = paid["period_end"] > following + pd.Timedelta(days=PERIOD_OVERLAP_DAYS)
    share = float(runs_on[known].mean())
    if share <= PERIOD_OVERLAP_SHARE:
        return []
    example = paid[known & runs_on].iloc[0]
    return [
        Finding(
            "warning",
            "period_end_not_paid_period",
            f"{share:.0%} of the invoices that the customer's next one follows have a period_end "
            f"more than {PERIOD_OVERLAP_DAYS} days after that next invoice (e.g. customer "
            f"{example['customer_id']}: invoice of {example['at']:%Y-%m-%d}, period_end "
            f"{example['period_end']:%Y-%m-%d}): period_end should be the end of the period an "
            "invoice pays (a subscription's paid-until date), not a contract's term end; map it "
            "so, or leave it out",
            "revenue",
            "period_end",
        )
    ]


def _yearly_invoices_findings(tables: Tables, churn: ChurnDefinition) -> list[Finding]:
    """Subscriptions invoiced about once a year without a period_end
    (retention.metrics.yearly_billing): MRR counts each yearly invoice in its month, so
    the months between read as churned revenue (a gym's yearly plan read NRR 0 % and revenue
    churn 100 % while 94 % of its members stayed), and revenue at risk counts a year's fee in
    one month and nothing in the eleven others."""
    from retention.metrics import yearly_billing, yearly_billing_matters

    if churn.mode != "contractual":
        return []
    yearly, customers = yearly_billing(tables.revenue)
    compared = len(customers)
    if not yearly_billing_matters(len(yearly), compared):
        return []
    rev = tables.revenue
    example = rev[(rev["customer_id"] == yearly[0]).to_numpy(dtype=bool)].sort_values("at")
    rows = ", ".join(f"{at:%Y-%m-%d} {amount:,.2f}" for at, amount in
                     zip(example["at"].head(3), example["amount"].head(3), strict=True))  # fmt: skip
    return [
        Finding(
            "warning",
            "yearly_invoices_without_period_end",
            f"{len(yearly):,} of the {compared:,} customers with two invoices or more are "
            f"invoiced about once a year (e.g. customer {yearly[0]}: {rows}), and the "
            "invoices carry no period_end: MRR counts each yearly invoice in its month (the "
            "months between would read as lost revenue, the renewal as a twelvefold expansion), "
            "so NRR and revenue churn are not measured, and revenue at risk counts a year's fee "
            "in one month. Map period_end, the end of the period each invoice pays (in a DuckDB "
            "query: the invoice date + interval 1 year for yearly invoices, + interval 1 month "
            "for monthly ones)",
            "revenue",
            "period_end",
        )
    ]


def _amount_findings(tables: Tables) -> list[Finding]:
    """Amounts that look like cents: whole numbers with a typical value in the thousands, or a
    column named in cents."""
    found = []
    candidates: list[tuple[str, str]] = [("revenue", "amount")]
    candidates += [
        ("customers", c)
        for c in tables.customers.columns
        if c not in RESERVED_CUSTOMER_COLUMNS
        and MONEY_NAME.search(c.lower())
        and pd.api.types.is_numeric_dtype(tables.customers[c])
        and not pd.api.types.is_bool_dtype(tables.customers[c])
    ]
    for name in TABLES:
        for col in getattr(tables, name).columns:
            if re.search(r"(^|_)cents?($|_)|incents|_in_cents", col.lower()):
                found.append(
                    Finding(
                        "warning",
                        "cents",
                        f"'{col}' is named in cents: amounts should be in currency units "
                        "(divide by 100 in the mapping)",
                        name,
                        col,
                    )
                )
    named = {(f.table, f.column) for f in found}
    for name, col in candidates:
        if (name, col) in named:
            continue
        table = getattr(tables, name)
        whole = _cents_like(_money_values(table[col]))
        if whole is not None:
            found.append(_cents_finding(f"every amount is {whole}", name, col))
            continue
        if name == "revenue" and "kind" in table:
            found += _kind_scale_findings(table)
    return found


def _money_values(values: pd.Series) -> np.ndarray:
    """The non-zero amounts' sizes."""
    v = values.to_numpy(dtype="float64", na_value=np.nan)
    return np.abs(v[~np.isnan(v) & (v != 0)])


def _cents_like(v: np.ndarray) -> str | None:
    """'a whole number and the typical one is 1,999' where the amounts (_money_values) read as
    cents, else None."""
    if len(v) < MIN_ROWS_FOR_TIME_CHECKS:
        return None
    median = float(np.median(v))
    if (v == np.round(v)).all() and median >= CENTS_MEDIAN:
        return f"a whole number and the typical one is {median:,.0f}"
    return None


def _cents_finding(what: str, table: str, column: str) -> Finding:
    return Finding(
        "warning",
        "cents",
        f"{what}: cents rather than currency units? (Stripe exports cents; divide by 100 in "
        "the mapping)",
        table,
        column,
    )


def _kind_scale_findings(revenue: pd.DataFrame) -> list[Finding]:
    """Revenue kinds (invoices, orders, refunds, failed payments) often come from different
    exports: one left in cents beside another divided by 100 mixes the scales, and the check of
    the whole column misses it. Each kind is checked on its own, and payment kinds whose typical
    amounts differ by SCALE_RATIO or more are named."""
    found = []
    medians = {}
    for kind, amounts in revenue.groupby(revenue["kind"].astype("string"), sort=True)["amount"]:
        v = _money_values(amounts)
        whole = _cents_like(v)
        if whole is not None:
            found.append(_cents_finding(f"every {kind} amount is {whole}", "revenue", "amount"))
        if kind in PRICED_ALIKE and len(v) >= MIN_ROWS_FOR_TIME_CHECKS:
            medians[str(kind)] = float(np.median(v))
    if not found and len(medians) > 1:
        high, low = max(medians, key=medians.get), min(medians, key=medians.get)
        if medians[high] >= SCALE_RATIO * medians[low]:
            found.append(
                Finding(
                    "warning",
                    "cents",
                    f"the typical {high} amount is {medians[high]:,.2f} and the typical {low} "
                    f"amount {medians[low]:,.2f}, {medians[high] / medians[low]:,.0f} times "
                    f"less: is one export in cents and the other in currency units? (divide "
                    "that source's amounts by 100 in the mapping)",
                    "revenue",
                    "amount",
                )
            )
    return found


# A declared numeric attribute's values that look like placeholders or entry errors: below 0
# where at least 95 % are not, or more than FAR_ABOVE_IQRS interquartile ranges of log10 above
# the upper quartile of the positive values (a long tail of company sizes or MRR stays inside;
# a KKBox age of 1,051 among 20-40 does not). Needs MIN_ATTRIBUTE_VALUES values to judge.
FAR_ABOVE_IQRS = 5.0
MIN_ATTRIBUTE_VALUES = 200
# A placeholder at an edge of the values: the lowest or highest value, held by at least
# PLACEHOLDER_MIN_ROWS rows and at most PLACEHOLDER_MAX_SHARE of them, and at least
# PLACEHOLDER_GAP_IQRS interquartile ranges from the next value, in an attribute of at least
# PLACEHOLDER_MIN_DISTINCT values (a gym's birth year 1900 for 0.7 % of members, the next
# 1944; an age of 0 beside 14-70). A real extreme is rarely repeated exactly, far from the rest.
PLACEHOLDER_MIN_ROWS = 5
PLACEHOLDER_MAX_SHARE = 0.05
PLACEHOLDER_GAP_IQRS = 0.75
PLACEHOLDER_MIN_DISTINCT = 20


def _missing_map(values: np.ndarray) -> str:
    """The value map that makes the first three distinct of `values` missing in the import
    (a value mapped to "" is missing), as an export writes whole numbers: "1900"."""
    distinct = list(dict.fromkeys(float(v) for v in values))[:3]
    texts = [str(int(v)) if v.is_integer() else repr(v) for v in distinct]
    entries = ", ".join(f'"{t}" = ""' for t in texts)
    return f'map = {{ {entries} }}, unmapped = "keep"'


def _edge_placeholders(x: np.ndarray) -> list[tuple[float, float, int]]:
    """The edge values of `x` (no NaN) that look like placeholders (see PLACEHOLDER_*):
    (value, the nearest other value, rows)."""
    distinct, counts = np.unique(x, return_counts=True)
    if len(distinct) < PLACEHOLDER_MIN_DISTINCT:
        return []
    q1, q3 = np.quantile(x, [0.25, 0.75])
    if q3 <= q1:
        return []
    found = []
    for edge, nearest in ((0, 1), (-1, -2)):
        rows = int(counts[edge])
        apart = abs(float(distinct[nearest] - distinct[edge]))
        if PLACEHOLDER_MIN_ROWS <= rows <= PLACEHOLDER_MAX_SHARE * len(
            x
        ) and apart >= PLACEHOLDER_GAP_IQRS * (q3 - q1):
            found.append((float(distinct[edge]), float(distinct[nearest]), rows))
    return found


def _attribute_findings(tables: Tables, config: FeatureConfig) -> list[Finding]:
    """Declared numeric customer attributes (model features, so reasons: "Bd: 1,051") with
    values that look like placeholders or entry errors: negative where nearly all are not, or
    far above the rest. Counted with examples; the remedy is a value map to missing in the
    import mapping, or leaving the attribute out."""
    customers = tables.customers
    declared_text = _declared_text(customers, config)
    found = [f for f in map(_dates_as_text, declared_text) if f]
    found += [f for f in map(_text_placeholders, declared_text) if f]
    for name in getattr(config, "customer_attributes", ()) or ():
        if name not in customers or not pd.api.types.is_numeric_dtype(customers[name]):
            continue
        if pd.api.types.is_bool_dtype(customers[name]):
            continue
        x = customers[name].to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(x)
        if present.sum() < MIN_ATTRIBUTE_VALUES:
            continue
        values = x[present]
        parts = []
        negative = present & (x < 0)
        if 0 < negative.sum() <= 0.05 * present.sum():
            parts.append(
                f"{int(negative.sum()):,} below 0 (e.g. {fmt.number(float(x[negative][0]))}) "
                "where the others are 0 or more"
            )
        positive = values[values > 0]
        far = np.zeros(len(x), dtype=bool)
        if len(positive) >= MIN_ATTRIBUTE_VALUES:
            q1, q3 = np.quantile(np.log10(positive), [0.25, 0.75])
            limit = 10 ** (q3 + FAR_ABOVE_IQRS * (q3 - q1)) if q3 > q1 else np.inf
            far = present & (x > limit)
            if far.any():
                low, high = (fmt.number(10**q, 0 if q >= 1 else 2) for q in (q1, q3))
                parts.append(
                    f"{int(far.sum()):,} far above the typical {low}-{high} "
                    f"(e.g. {fmt.number(float(x[far][0]))})"
                )
        odd = negative | far
        for value, nearest, rows in _edge_placeholders(values):
            if odd[present & (x == value)].any():
                continue
            odd |= present & (x == value)
            parts.append(
                f"{rows:,} at {attribute_value_text(name, value)}, apart from the others (the "
                f"nearest other value is {attribute_value_text(name, nearest)})"
            )
        if parts:
            shown = describe(name, [name]).text(float(x[odd][0]))
            found.append(
                Finding(
                    "warning",
                    "odd_attribute_values",
                    f"declared customer attribute '{name}' has values that look like "
                    f"placeholders or entry errors: {'; '.join(parts)}, e.g. "
                    f"{_example(customers, odd)}. It is a model feature, so they become "
                    f'reasons ("{shown}"): map them to missing in the import mapping '
                    f"({_missing_map(x[odd])} on its column), or leave the attribute out",
                    "customers",
                    name,
                )
            )
    return found


DATE_TEXT_SHARE = 0.9  # of a declared text attribute's values that read as dates
MIN_DATE_VALUES = 20  # values a check of dates needs (declared text, churned and kept)
# 2024-05-01, 01.05.2024, 5/1/24, with a time after it or not
DATE_TEXT = r"\s*(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?:[ T].*)?"


def _declared_text(customers: pd.DataFrame, config: FeatureConfig) -> list[pd.Series]:
    """The declared customer attributes held as text."""
    return [
        customers[name]
        for name in getattr(config, "customer_attributes", ()) or ()
        if name in customers
        and (
            pd.api.types.is_string_dtype(customers[name])
            or pd.api.types.is_object_dtype(customers[name])
        )
    ]


# Texts an export writes where it has no value (R's and SAS's "?" and ".", spreadsheets'
# "#N/A", databases' "NULL"), compared stripped and case-folded. Words such as "unknown" or
# "other" are left alone: they read as a category and often are one.
TEXT_PLACEHOLDERS = frozenset(
    {"?", "??", "-", "--", ".", "#n/a", "n/a", "na", "null", "nan", "none", "(blank)", "(null)"}
)


def _text_placeholders(values: pd.Series) -> Finding | None:
    """A declared text attribute with values that are an export's stand-in for no value ("?"
    for 1,111 of OULAD's imd_band): the model learns them as a category and monitoring reports
    a segment named "imd_band ?". The remedy is a value map to missing in the mapping."""
    present = values.dropna().astype("str")
    folded = present.str.strip().str.casefold()
    hit = folded.isin(TEXT_PLACEHOLDERS).to_numpy()
    if not hit.any():
        return None
    held = present[hit].value_counts()
    shown = ", ".join(f"'{v}' ({n:,} rows)" for v, n in held.head(3).items())
    entries = ", ".join(f'"{v}" = ""' for v in held.index[:3])
    return Finding(
        "warning",
        "placeholder_attribute_values",
        f"declared customer attribute '{values.name}' holds text that exports often write "
        f"for no value: {shown} of {len(present):,}. If it means missing here, map it to "
        f'missing in the import mapping (map = {{ {entries} }}, unmapped = "keep" on its '
        "column): else the model learns it as a category of its own and reports show it as a "
        "segment. If it is a real category (an occupation 'none'), nothing is wrong",
        "customers",
        str(values.name),
    )


def _dates_as_text(values: pd.Series) -> Finding | None:
    """A declared attribute whose text values are nearly all dates ("2024-05-01"): as text it is
    one category per date, and the model learns nothing it can use on a later date; mapped as a
    timestamp it is the days from T to the date (a minimum-term end, a renewal)."""
    present = values.dropna().astype("str")
    present = present[present.str.strip() != ""]
    if len(present) < MIN_DATE_VALUES:
        return None
    sample = present.iloc[:1000]
    if sample.str.fullmatch(DATE_TEXT).mean() < DATE_TEXT_SHARE:
        return None
    return Finding(
        "warning",
        "dates_as_text",
        f"declared customer attribute '{values.name}' holds dates as text (e.g. "
        f"'{sample.iloc[0]}'): as text each date is a category of its own. Map it as a "
        f'timestamp (`{values.name} = {{ column = "...", type = "timestamp" }}`, with '
        "`dayfirst` or `format` as its dates need) and it becomes the days from T to the date",
        "customers",
        str(values.name),
    )


ANCHOR_WINDOW_DAYS = (-31, 366)  # a date this far from the churn date is the churn's term
ANCHORED_SHARE = 0.9  # of churned customers (dates on their churn), and of the others (dates
# still ahead on the export day): a snapshot of the current term


def _cycled_date_in_the_past(customers: pd.DataFrame, name: str, data_end: object) -> str:
    """A warning ("" for none) when a date declared in date_cycles lies before the data's end
    for most current customers: the cycle moves a date after each observation date back to
    the renewal due then, never a past one forward. A gym's signup dates so declared read
    "Renovacion 3.0 years ago" with nothing said."""
    current = customers["churned_at"].isna() if "churned_at" in customers else True
    dates = customers.loc[current & customers[name].notna(), name]
    if len(dates) < MIN_DATE_VALUES:
        return ""
    before = dates < pd.Timestamp(data_end)
    if before.mean() < 0.5:
        return ""
    example = dates[before].index[0]
    return (
        f"declared date attribute '{name}' ([features] date_cycles) lies before the data's end "
        f"for {before.mean():.0%} of current customers (e.g. customer "
        f"{customers.loc[example, 'customer_id']}: {dates[example]:%Y-%m-%d}): a cycle moves "
        "a date that lies after each observation date back to the renewal due then, not a "
        "past date forward. Map the next renewal as of the export day (a signup's next "
        "anniversary, computed in a `query`)"
    )


def churn_anchored_dates(tables: Tables, config: FeatureConfig) -> list[tuple[str, str]]:
    """Declared date attributes that look like an export-day snapshot of the current term:
    (name, sentence). For nearly every churned customer the date lies in the year after the
    churn (the term that ended with it), for nearly every other customer it is still ahead on
    the export day. A renewal date that moves on at each renewal then shows the next term on
    observation dates before the renewal: in training only churners have a near date, and
    the model calls near renewals certain (a B2B export: 58 % predicted, 20 % churned).
    Invoices that say until when they pay (revenue.period_end) tell the same as of each date.
    A date that never moves (a fixed term) is the same pattern without the leak: hence a
    warning, which asks."""
    customers = tables.customers
    if "churned_at" not in customers:
        return []
    churned = customers["churned_at"]
    end = tables.data_end() - pd.Timedelta(days=-ANCHOR_WINDOW_DAYS[0])
    out = []
    cycled = {column for column, _ in getattr(config, "date_cycles", ()) or ()}
    for name in getattr(config, "customer_attributes", ()) or ():
        if name not in customers or not pd.api.types.is_datetime64_any_dtype(customers[name]):
            continue
        if name in cycled:  # rolled back to the renewal due at each date: nothing leaks
            past = _cycled_date_in_the_past(customers, name, tables.data_end())
            if past:
                out.append((name, past))
            continue
        dates = customers[name]
        gone = churned.notna() & dates.notna()
        kept = churned.isna() & dates.notna()
        if gone.sum() < MIN_DATE_VALUES or kept.sum() < MIN_DATE_VALUES:
            continue
        days = (dates[gone] - churned[gone]) / pd.Timedelta(days=1)
        low, high = ANCHOR_WINDOW_DAYS
        on_churn = float(((days >= low) & (days <= high)).mean())
        ahead = float((dates[kept] >= end).mean())
        if on_churn < ANCHORED_SHARE or ahead < ANCHORED_SHARE:
            continue
        paid = "period_end" in tables.revenue and tables.revenue["period_end"].notna().any()
        cycle = f'[features] date_cycles = {{ {name} = "year" }} (or "month", "quarter")'
        remedy = (
            "the invoices' period_end already says, as of each date, until when a customer "
            f"has paid: leave it out of customer_attributes, or, if it moves on by whole "
            f"terms, declare {cycle}, which reads it as the renewal due at each date"
            if paid
            else f"if it moves on by whole terms, declare {cycle}, which reads it as the "
            "renewal due at each date; where the export has each term's end as of its date, "
            "map that instead (revenue.period_end on the term's invoices)"
        )
        out.append(
            (
                name,
                f"declared date attribute '{name}' looks like the export day's current term: "
                f"it lies in the year after the churn date for {on_churn:.0%} of churned "
                f"customers and is still ahead on the export day for {ahead:.0%} of the "
                "others. If it moves on when a customer renews, then on observation dates "
                "before a renewal it already shows the next term, only churners have a near "
                "date, and near dates' probabilities come out too high; " + remedy,
            )
        )
    return out


def _churn_findings(
    report: CheckReport,
    tables: Tables,
    config: FeatureConfig,
    training_dates: Sequence[pd.Timestamp] | None = None,
) -> list[Finding]:
    churn = _churn(config)
    found = []
    if churn.mode == "contractual" and (
        "churned_at" not in tables.customers or tables.customers["churned_at"].isna().all()
    ):
        found.append(
            Finding(
                "warning",
                "no_churned_at",
                "contractual churn, but customers.churned_at is empty: nobody ever churns "
                '(map the end of service, or use mode = "non_contractual")',
                "customers",
                "churned_at",
            )
        )
    labelled = sum(m.churned for m in report.churn_by_month)
    if report.churned_customers is not None and report.churned_customers < MIN_CHURNERS:
        found.append(
            Finding(
                "warning",
                "few_churners",
                f"only {report.churned_customers:,} of {report.customers_measured:,} customers "
                f"churned under the definition ({labelled:,} churn labels over "
                f"{len(report.churn_by_month)} monthly observation dates): a model needs some "
                f"(at least {MIN_CHURNERS}, better hundreds) to learn and to be measured",
            )
        )
    dates = len(report.churn_by_month)
    if dates < MIN_OBSERVATION_DATES:
        start = tables.history_start()
        end = _observed_end(tables, config)
        months = (end - start) / pd.Timedelta(days=30.4375)
        lookback = (
            f" and a {churn.lookback_days}-day lookback" if churn.mode == "non_contractual" else ""
        )
        found.append(
            Finding(
                "warning",
                "short_history",
                f"short history: {months:.1f} months of activity for a {churn.horizon_days}-day "
                f"horizon{lookback} leave {dates} monthly observation date"
                f"{'s' if dates != 1 else ''} with a complete label (a backtest wants at "
                f"least {MIN_OBSERVATION_DATES}): shorten the horizon or wait for more data"
                + _training_dates_note(training_dates),
            )
        )
    span = (tables.data_end() - tables.history_start()) / pd.Timedelta(days=1)
    longer = [w for w in config.windows if w > span]
    if longer and span > 0:
        kept = [w for w in config.windows if w <= span] or [max(1, int(span // 4))]
        found.append(  # a note: such counts still rank (a 7-week export lost without them)
            Finding(
                "note",
                "windows_longer_than_data",
                f"the feature windows {longer} (days) are longer than the "
                f"{fmt.duration_days(span)} of data: their counts are each customer's whole "
                'recorded history, and reasons say so ("Active on 12 of the 49 days since the '
                'first recorded activity"); [features] windows = '
                f"{kept} would keep only windows that fit the data (on a 7-week export the "
                "model ranked worse without the 90-day counts: ROC AUC -0.012 to -0.021)",
            )
        )
    return found


def _training_dates_note(dates: Sequence[pd.Timestamp] | None) -> str:
    """What `churn train` does with a short history: the observation dates it learns from (a
    grocery's 3 months read "0 monthly observation dates", and training used 5 weekly ones)."""
    if not dates:
        return ""
    dates = sorted(pd.Timestamp(d) for d in dates)
    if len(dates) == 1:
        return f"; churn train learns from one observation date, {dates[0].date()}"
    step = (dates[1] - dates[0]).days
    return (
        f"; churn train learns from {len(dates)} observation dates, every {step} days from "
        f"{dates[0].date()} to {dates[-1].date()}"
    )


LATE_CHURN_MIN_EXPECTED = 10  # churns the quiet days before the data's end should have held
LATE_CHURN_RATE_DAYS = 180  # the churn rate is that of this many days before the last churn


def late_churn_records(
    tables: Tables, churn: ChurnDefinition, labels_until: pd.Timestamp
) -> str | None:
    """A sentence when customers.churned_at stops well before the data's end although churn
    went on at a steady rate until then: the export records a churn late (a subscription is
    churned 30 days after it lapses without renewal; a CRM closes accounts monthly). Left at
    the data's end, observed_until would label the customers of those last days as staying,
    so the model learns a lower churn rate and the wrong signs of it (on a KKBox-shaped export
    the ROC AUC at the cut fell from 0.79 to 0.77). Only for contractual churn without a
    configured observed_until, and only when the label windows run past the last recorded
    churn (`labels_until`: the end of the latest one; the demo's dates stop where its churn
    does); None when the quiet days are within chance (Poisson: fewer than
    LATE_CHURN_MIN_EXPECTED churns expected in them)."""
    if (
        churn.mode != "contractual"
        or churn.observed_until is not None
        or "churned_at" not in tables.customers
    ):
        return None
    end = tables.data_end()
    churned = tables.customers["churned_at"].dropna()  # the contract types it: datetime64
    churned = churned[churned < end]
    if churned.empty:
        return None
    last = churned.max()
    if pd.Timestamp(labels_until) <= last + pd.Timedelta(days=1):
        return None
    window = pd.Timedelta(days=LATE_CHURN_RATE_DAYS)
    start = max(churned.min(), last - window)
    days = (last - start) / pd.Timedelta(days=1)
    if days < 30:
        return None
    per_day = int((churned >= start).sum()) / days
    quiet = (end - last) / pd.Timedelta(days=1)
    expected = per_day * quiet
    if expected < LATE_CHURN_MIN_EXPECTED:
        return None
    until = (last + pd.Timedelta(days=1)).normalize().date()
    return (
        f"customers.churned_at ends on {last.date()}, {quiet:.0f} days before the data's end "
        f"({end.date()}), although churn ran at about {per_day * 30:.0f} customers per 30 days "
        f"until then ({expected:.0f} expected in those days): the export seems to record churn "
        "late, and the customers of those days would be labelled as staying. Set "
        f'[features.churn] observed_until = "{until}" (the day after the last recorded churn, '
        "or the day your export stopped recording cancellations)"
    )


STALE_MIN_DAYS = 7  # a table ending this much before the others (and the run date) is stale
STALE_GAPS = 4  # ... and more than this many of its usual gaps between days with rows
STALE_MIN_DAYS_WITH_ROWS = 10  # fewer: too sparse to have a usual rhythm


EVENT_TABLES = ("activity", "feedback", "revenue")


def stale_tables(tables: Tables, as_of: object, remedy: str = "score as of") -> list[str]:
    """Event tables whose rows stop well before the run date while another table runs on: a
    billing export taken a month before the events. Their features (payments, revenue, NPS,
    tickets in the last days) would read as if nothing had happened since, for every customer,
    and no error says so. One sentence per stale table, with its end, its usual rhythm and the
    run date to use instead (`remedy` words it); empty when the tables end together."""
    return stale_from_days(days_before(tables, as_of)[0], as_of, remedy)


def stale_from_days(
    days: dict[str, tuple[np.ndarray, pd.Timestamp]], as_of: object, remedy: str = "score as of"
) -> list[str]:
    """stale_tables from each table's distinct days with rows before the run date and its last
    timestamp (what the Spark engine collects, so both engines say the same)."""
    return [text for _, text in _stale(days, as_of, remedy)]


def days_before(
    tables: Tables, as_of: object
) -> tuple[dict[str, tuple[np.ndarray, pd.Timestamp]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per event table, from one pass over its rows before the run date: its distinct days
    and last timestamp (stale_from_days), and its days (since 1970-01-01) with their rows
    (recent_quiet_week_notes); what serving.spark_batch collects on the Spark engine."""
    t = pd.Timestamp(as_of)
    days, counted = {}, {}
    for name in EVENT_TABLES:
        at = getattr(tables, name)["at"]
        at = at[at < t]
        if not at.empty:
            numbers, counts = _rows_per_day(at)
            days[name] = (numbers.astype("datetime64[D]"), pd.Timestamp(at.max()))
            counted[name] = (numbers, counts)
    return days, counted


# Invoices that are issued and not paid yet are the export's last days: a mapping that drops
# them (Stripe's status 'open') ends the revenue table early, while the training dates saw the
# same invoices, settled since, from their issue date on.
UNPAID_INVOICES = (
    ". Or does the mapping drop the invoices issued but not paid yet (Stripe's status 'open')? "
    "An invoice counts from when it is issued, as the older ones did: map them as invoices of "
    "the amount billed (amount_due)"
)


def recurring_pause(days: np.ndarray) -> int:
    """The second-longest gap, in days, between a table's consecutive days with rows: a pause
    the table has taken at least twice (a survey sent in quarterly waves, a shop closed each
    winter) is its rhythm, and a table within one is not stale; a single outage does not make
    one. Two judges' wave surveys had been called stale ("usually has rows every day") with
    the advice to score 11 days early. 0 with fewer than two gaps."""
    gaps = np.diff(np.sort(np.asarray(days, dtype="datetime64[D]"))).astype(int)
    return int(np.sort(gaps)[-2]) if len(gaps) >= 2 else 0


def _stale(
    days: dict[str, tuple[np.ndarray, pd.Timestamp]], as_of: object, remedy: str
) -> list[tuple[str, str]]:
    """(table, sentence) per stale table (stale_tables)."""
    t = pd.Timestamp(as_of)
    ends, rhythm, pauses = {}, {}, {}
    for name, (distinct, last) in days.items():
        ends[name] = pd.Timestamp(last)
        distinct = np.sort(np.asarray(distinct, dtype="datetime64[D]"))
        if len(distinct) >= STALE_MIN_DAYS_WITH_ROWS:
            recent = distinct[distinct >= distinct[-1] - np.timedelta64(180, "D")]
            gaps = np.diff(recent if len(recent) > 1 else distinct).astype(int)
            rhythm[name] = float(np.median(gaps)) if len(gaps) else np.nan
            pauses[name] = recurring_pause(distinct)
    if not ends:
        return []
    freshest = max(ends, key=lambda k: ends[k])
    found = []
    # The whole export behind the run date: every table ends long before it (a run on the
    # 20th of an export taken on the 31st of the month before raised the high band from 730 to
    # 2,000 customers, each quieter by 19 days than it was, without a word).
    last, usual = ends[freshest], rhythm.get(freshest)
    lag = (t - last) / pd.Timedelta(days=1)
    if (
        usual is not None
        and np.isfinite(usual)
        and lag > max(STALE_MIN_DAYS, STALE_GAPS * usual, pauses.get(freshest, 0))
    ):
        every = "every day" if usual <= 1 else f"every {usual:g} days"
        found.append(
            (
                "(all)",
                f"the data ends {last.date()}, {lag:.0f} days before {t.date()}, though "
                f"'{freshest}' usually has rows {every}: every customer's last {lag:.0f} days "
                "read as if nothing had happened (no activity, no payment), and the risks rise "
                f"with them. An old export? Export again, or {remedy} "
                f"{(last + pd.Timedelta(days=1)).date()}",
            )
        )
    if len(ends) < 2:
        return found
    for name, end in ends.items():
        lag = (t - end) / pd.Timedelta(days=1)
        ahead = (ends[freshest] - end) / pd.Timedelta(days=1)
        usual = rhythm.get(name)
        if usual is None or not np.isfinite(usual):
            continue
        if ahead >= STALE_MIN_DAYS and lag > max(
            STALE_MIN_DAYS, STALE_GAPS * usual, pauses.get(name, 0)
        ):
            every = "every day" if usual <= 1 else f"every {usual:g} days"
            found.append(
                (
                    name,
                    f"table '{name}' ends {end.date()}, {lag:.0f} days before {t.date()}, though it "
                    f"usually has rows {every} and '{freshest}' runs to {ends[freshest].date()}: "
                    f"its features (counts and amounts of the last days) read as if nothing had "
                    f"happened since, for every customer. An export taken earlier than the others? "
                    f"Re-export it, or {remedy} {(end + pd.Timedelta(days=1)).date()} (if the "
                    "table really stopped, a survey that ended, this is as it should be)"
                    + (UNPAID_INVOICES if name == "revenue" else ""),
                )
            )
    return found


LIFECYCLE_SLACK = pd.Timedelta(days=1)  # time zones and end-of-day stamps
# Activity totals are stamped at their period's end: a month's total of a customer who churned
# on the 10th is dated on the 31st, and covers days before the churn.
TOTALS_SLACK_DAYS = {"day": 0, "week": 7, "month": 31}


def _lifecycle_findings(
    tables: Tables, churn: ChurnDefinition, activity_totals: str | None = None
) -> list[Finding]:
    """Activity outside the customer's life as the customers table tells it: before the signup
    (a signup date read the wrong way round, in another zone, or set after a trial), and, for
    contractual churn, after the churn date (a date that is not the end of service, or
    customers who came back); and an end of service without churn (ended_at) before the
    churn date, which hides the churn. None is refused: each is counted, with an example.
    With activity_totals, a total stamped up to one period after the churn date is no
    activity after it."""
    customers, act = tables.customers, tables.activity
    ids = act["customer_id"]
    position = pd.Index(customers["customer_id"]).get_indexer(ids)
    known = position >= 0  # validated tables have no others
    at = act["at"].to_numpy()
    found = []
    signup = customers["signup_at"].to_numpy()[position]
    early = known & (at < signup - LIFECYCLE_SLACK.to_timedelta64())
    if early.any():
        who = ids[early].nunique()
        found.append(
            Finding(
                "warning",
                "before_signup",
                f"{int(early.sum()):,} activity rows of {who:,} customers are dated more than a "
                f"day before the customer's signup_at (e.g. {_example(act, early)}): a signup "
                "date read the wrong way round or in another time zone, or set after a trial? "
                "The features count those rows as the customer's history",
                "activity",
                "at",
            )
        )
    if churn.mode == "contractual" and "churned_at" in customers:
        ended = customers["churned_at"].to_numpy()[position]
        slack = LIFECYCLE_SLACK + pd.Timedelta(days=TOTALS_SLACK_DAYS.get(activity_totals, 0))
        with np.errstate(invalid="ignore"):
            late = known & (at > ended + slack.to_timedelta64())  # NaT: never
        if late.any():
            who = ids[late].nunique()
            churned = int(customers["churned_at"].notna().sum())
            found.append(
                Finding(
                    "warning",
                    "after_churn",
                    f"{who:,} of {churned:,} churned customers are active more than "
                    f"{fmt.duration_days(slack / pd.Timedelta(days=1))} after their churned_at "
                    f"({int(late.sum()):,} activity rows, e.g. {_example(act, late)}): is churned_at the end of service, or the day the "
                    "cancellation was asked for or the record last changed? Customers who came "
                    "back count as churned at that date. (A product with a free tier is used "
                    "after the subscription lapsed: that activity is no error, and its events "
                    "are features like any other)",
                    "activity",
                    "at",
                )
            )
    if churn.mode == "contractual" and "churned_at" in customers:
        found += _paid_after_churn(tables)
    found += _notice_findings(customers)
    if "ended_at" in customers and "churned_at" in customers:
        both = (customers["ended_at"] < customers["churned_at"]).to_numpy()
        if both.any():
            found.append(
                Finding(
                    "warning",
                    "ended_before_churn",
                    f"{int(both.sum()):,} customers have an ended_at before their churned_at "
                    f"(e.g. {_example(customers, both)}): a customer is scored until the earlier "
                    "of the two, so their churn never counts. Is ended_at the end of service "
                    "without churn (a deactivation), or the same end as churned_at?",
                    "customers",
                    "ended_at",
                )
            )
    return found


def _notice_findings(customers: pd.DataFrame) -> list[Finding]:
    """What the notices (customers.cancel_requested_at) tell: how many took effect later (set
    apart from training while pending, scored apart at a run), how long before their churn they
    came, how many were withdrawn (no churned_at: customers like any other); a warning for
    notices dated after the churn (never pending: a request recorded after the end, or the two
    columns swapped)."""
    if "cancel_requested_at" not in customers:
        return []
    notice = customers["cancel_requested_at"]
    given = notice.notna().to_numpy()
    if not given.any():
        return []
    churned = (
        customers["churned_at"]
        if "churned_at" in customers
        else pd.Series(pd.NaT, index=customers.index, dtype="datetime64[ns]")
    )
    lead = (churned - notice).dt.total_seconds().to_numpy() / 86_400.0
    ahead = given & (lead > 0)
    withdrawn = given & churned.isna().to_numpy()
    text = f"{int(given.sum()):,} customers gave notice (cancel_requested_at): "
    parts = []
    if ahead.any():
        parts.append(
            f"{int(ahead.sum()):,} churned later (median {fmt.duration_days(float(np.median(lead[ahead])))} "
            "after the notice; from the notice on they are no training rows, and a run scores "
            "them apart as a scheduled cancellation)"
        )
    if withdrawn.any():
        parts.append(
            f"{int(withdrawn.sum()):,} have no churned_at (a notice withdrawn: scored like any "
            "customer)"
        )
    found = [Finding("note", "notices", text + "; ".join(parts or ["none churned later"]),
                     "customers", "cancel_requested_at")]  # fmt: skip
    late = given & (lead < -1.0)
    if late.any():
        found.append(
            Finding(
                "warning",
                "notice_after_churn",
                f"{int(late.sum()):,} customers have a cancel_requested_at more than a day after "
                f"their churned_at (e.g. {_example(customers, late)}): a request recorded after "
                "the end, or the two columns swapped? Such a notice is never pending",
                "customers",
                "cancel_requested_at",
            )
        )
    return found


# A payment after churned_at that follows the customer's previous one within this many times
# their usual gap between payments (at least NOTICE_GAP_MIN_DAYS) continues the subscription:
# members pay on through a notice period when churned_at is the day notice was given.
NOTICE_GAP_FACTOR = 1.5
NOTICE_GAP_MIN_DAYS = 35


def _paid_after_churn(tables: Tables) -> list[Finding]:
    """Contractual churn: payments more than a day after the customer's churned_at. Paid on
    without a break, they are a notice period (a gym's members pay until the contract ends,
    churned_at being the day notice was received): nothing to fix. After a break, a subscriber
    lapsed and came back (an app's users re-subscribe): one churned_at per customer cannot say
    both lapses, and the mapping chooses which is lost (README, "Subscribers who come back")."""
    customers, rev = tables.customers, tables.revenue
    if rev.empty:
        return []
    position = pd.Index(customers["customer_id"]).get_indexer(rev["customer_id"])
    churned_at = customers["churned_at"].to_numpy()[position]
    paid = _payments(rev) & (rev["amount"] > 0).to_numpy() & (position >= 0)
    with np.errstate(invalid="ignore"):
        late = paid & (rev["at"].to_numpy() > churned_at + LIFECYCLE_SLACK.to_timedelta64())
    if not late.any():
        return []
    who = rev["customer_id"][late].nunique()
    churned = int(customers["churned_at"].notna().sum())
    # A returned debit is a billing of its month: with it, the rhythm shows no break where a
    # gym re-debits the next month (a month with only a return had read as a comeback).
    failed = (
        rev["kind"].eq("failed_payment").to_numpy(dtype=bool)
        if "kind" in rev
        else np.zeros(len(rev), dtype=bool)
    )
    billed = (paid | failed) & (position >= 0)
    continued = _paid_on_without_a_break(
        position[billed], rev["at"].to_numpy()[billed], late[billed]
    )
    came_back = who - continued
    said = (
        f"{who:,} of {churned:,} churned customers paid again after their churned_at "
        f"({int(late.sum()):,} payments, e.g. {_example(rev, late)})"
    )
    parts = []
    if continued:
        parts.append(
            f"{continued:,} of them paid on without a break, as members do through a notice "
            "period (churned_at the day notice was given) or with a last bill in arrears: that "
            "is expected (they are not scored after it, and the churn date is what the model "
            "learns to foresee)"
        )
    if came_back:
        parts.append(
            f"{came_back:,} paid again after a break: subscribers who lapsed and came back? A "
            "customer has one churned_at: with the last lapse, the earlier ones are no churn in "
            "the labels and the months between count as subscribed; with the first, the "
            "customer is not scored after it. One customer per subscription spell keeps both "
            '(README, "Subscribers who come back")'
        )
    return [Finding("warning", "paid_after_churn", f"{said}: {'; '.join(parts)}", "revenue", "at")]


def _paid_on_without_a_break(customer: np.ndarray, at: np.ndarray, late: np.ndarray) -> int:
    """Customers whose first payment after churned_at follows their previous payment within
    NOTICE_GAP_FACTOR times their median gap between the payments before it (at least
    NOTICE_GAP_MIN_DAYS), or has none before it in the data (notice given before the export
    began: nothing shows a break; 72 of a gym's 78 "comebacks" were such members). Arguments:
    the billings' customer positions, dates and lateness (late: a payment after churned_at)."""
    order = np.lexsort((at, customer))
    customer, at, late = customer[order], at[order].astype("datetime64[ns]"), late[order]
    same = np.r_[False, customer[1:] == customer[:-1]]
    gap = np.full(len(at), np.nan)
    gap[same] = (at[1:][same[1:]] - at[:-1][same[1:]]) / np.timedelta64(1, "D")
    usual = (
        pd.Series(gap[~late & same]).groupby(customer[~late & same]).median()
        if (~late & same).any()
        else pd.Series(dtype="float64")
    )
    first_late = late & ~np.r_[False, late[:-1] & same[1:]]
    c, g = customer[first_late], gap[first_late]
    limit = np.maximum(
        usual.reindex(c).to_numpy(dtype="float64") * NOTICE_GAP_FACTOR, NOTICE_GAP_MIN_DAYS
    )
    limit = np.where(np.isnan(limit), NOTICE_GAP_MIN_DAYS, limit)
    return int(np.unique(c[(g <= limit) | np.isnan(g)]).size)


# --------------------------------------------------------------------------------------------
# Separation of churned and active customers by one attribute


def label_like_name(column: str) -> str | None:
    """The word of a column name that suggests the label, if any (snake, kebab and camel)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    for token in re.split(r"[^A-Za-z0-9]+", spaced.lower()):
        if token in LABEL_NAME_TOKENS or token.startswith(LABEL_NAME_PREFIXES):
            return token
    return None


def _date_reasons(values: pd.Series, signup_at: pd.Series) -> list[str]:
    present = values.notna()
    if not present.any():
        return []
    after = int((values[present] > signup_at[present]).sum())
    if after / int(present.sum()) < DATE_AFTER_SIGNUP_SHARE:
        return []
    return [
        f"a date after signup for {after:,} of {int(present.sum()):,} customers "
        "(an end, cancel or last-seen date recorded on export day holds the future)"
    ]


@dataclass(frozen=True)
class RunningTotals:
    """Per customer, what it did over the whole data and before the middle of the history:
    the totals an attribute exported on the last day would count if it is a running total."""

    middle: pd.Timestamp
    whole: dict[str, np.ndarray]  # "events", "payments", "revenue" -> per customer
    before: dict[str, np.ndarray]  # the same, from rows before `middle`
    active: np.ndarray  # customers with a row in the whole data
    active_before: np.ndarray  # customers with a row before `middle`


def running_totals(tables: Tables, config: FeatureConfig) -> RunningTotals:
    """The qualifying events, payments and revenue per customer over the whole data and before
    the middle of the recorded history (see RunningTotals)."""
    prep = prepare(tables)
    act, rev, n = prep.activity, prep.revenue, prep.n_customers
    start, end = tables.history_start(), tables.data_end()
    middle = (start + (end - start) / 2).normalize()
    mid = to_ns(pd.Series([middle]))[0]
    events = qualifying_rows(act, _churn(config).qualifying_events)
    if events is None:
        events = np.ones(len(act.at), dtype=bool)
    whole: dict[str, np.ndarray] = {}
    before: dict[str, np.ndarray] = {}
    for name, customer, at, keep, weights in (
        ("events", act.customer, act.at, events, None),
        ("payments", rev.customer, rev.at, rev.is_payment, None),
        ("revenue", rev.customer, rev.at, np.ones(len(rev.at), dtype=bool), rev.amount),
    ):
        for out, rows in ((whole, keep), (before, keep & (at < mid))):
            w = None if weights is None else weights[rows]
            out[name] = np.bincount(customer[rows], weights=w, minlength=n).astype(float)
    has = np.bincount(act.customer, minlength=n) + np.bincount(rev.customer, minlength=n)
    has_before = np.bincount(act.customer[act.at < mid], minlength=n) + np.bincount(
        rev.customer[rev.at < mid], minlength=n
    )
    return RunningTotals(middle, whole, before, has > 0, has_before > 0)


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two arrays without missing values; NaN when either is constant."""
    if len(a) < MIN_RUNNING_TOTAL_CUSTOMERS:
        return math.nan
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


_TOTAL_WORDS = {"events": "number of events", "payments": "number of payments",
                "revenue": "revenue"}  # fmt: skip


def _running_total_reasons(values: np.ndarray, totals: RunningTotals) -> list[str]:
    """A numeric attribute that counts what the customer did up to the export day (a shop's
    Total Spent or Total Orders, a CRM's lifetime value): it ranks customers almost exactly as
    their totals over the whole data do, and less so than their totals at an earlier date.
    As a feature it tells each training date the purchases made after it."""
    present = ~np.isnan(values)
    rows = present & totals.active
    rhos = {
        name: _rank_correlation(values[rows], whole[rows]) for name, whole in totals.whole.items()
    }
    name = max(rhos, key=lambda k: -math.inf if math.isnan(rhos[k]) else rhos[k])
    rho = rhos[name]
    if not rho >= RUNNING_TOTAL_RHO:
        return []
    rows = present & totals.active_before
    rho_before = _rank_correlation(values[rows], totals.before[name][rows])
    if rho_before >= rho - RUNNING_TOTAL_MARGIN:  # as close before: a trait, not a total
        return []
    what = _TOTAL_WORDS[name]
    earlier = "" if math.isnan(rho_before) else (
        f", {rho_before:.2f} with their {what} before {totals.middle:%Y-%m-%d}"
    )  # fmt: skip
    return [
        f"it ranks customers as their {what} over the whole data does (rank correlation "
        f"{rho:.2f}{earlier}): a running total exported on the last day (like a shop's "
        "Total Spent or Total Orders) counts what customers did after each training date"
    ]


def _separation_reasons(values: pd.Series, churned: np.ndarray) -> list[str]:
    """How well one attribute alone tells churned from active customers, in words."""
    reasons = []
    n_churned = int(churned.sum())
    base = n_churned / len(churned)
    auc = _single_attribute_auc(values, churned)
    if auc is not None and auc >= AUC_FLAG:
        reasons.append(
            f"alone it separates churned from active customers with ROC AUC {auc:.3f} "
            f"({n_churned:,} of {len(churned):,} churned)"
        )
    if _is_categorical(values):
        codes, names = _category_codes(values)
        total = np.bincount(codes, minlength=len(names))
        hits = np.bincount(codes, weights=churned, minlength=len(names))
        share = hits / np.maximum(total, 1)
        big = total >= MIN_CATEGORY_CUSTOMERS
        others = total - hits  # active customers with the value
        expected_others, expected_hits = total * (1 - base), total * base
        marks_churned = (
            big
            & (share >= 1 - PURE_SHARE)
            & (expected_others >= PURE_MIN_EXPECTED)
            & (others <= PURE_OF_EXPECTED * expected_others)
        )
        marks_active = (
            big
            & (share <= PURE_SHARE)
            & (expected_hits >= PURE_MIN_EXPECTED)
            & (hits <= PURE_OF_EXPECTED * expected_hits)
        )
        # the largest category that marks churned customers, else active ones: one is enough
        for word, mask in (("churned", marks_churned), ("active", marks_active)):
            if mask.any():
                i = int(np.flatnonzero(mask)[np.argmax(total[mask])])
                reasons.append(
                    f"value {names[i]!r}: {int(hits[i]):,} of {int(total[i]):,} customers "
                    f"churned ({share[i]:.0%}, {base:.0%} overall): it marks {word} customers"
                )
                break
    return reasons


def _is_categorical(values: pd.Series) -> bool:
    return (
        isinstance(values.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(values)
        or pd.api.types.is_string_dtype(values)
        or pd.api.types.is_object_dtype(values)
        or (pd.api.types.is_numeric_dtype(values) and values.nunique() <= 20)
    )


def _category_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes per customer: missing is its own category, categories with fewer than
    MIN_CATEGORY_CUSTOMERS customers are pooled (so ids and free text do not separate)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    keep = counts >= MIN_CATEGORY_CUSTOMERS
    remap = np.where(keep, np.cumsum(keep) - 1, -1)
    names = [str(u) for u, k in zip(uniques, keep, strict=True) if k]
    out = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    n_kept = len(names)
    names += ["(missing)", "(rare values)"]
    out = np.where(codes < 0, n_kept, np.where(out < 0, n_kept + 1, out))
    return out.astype(np.int64), names


def _single_attribute_auc(values: pd.Series, churned: np.ndarray) -> float | None:
    """ROC AUC of the attribute as the only score, the better of both directions.

    Categories score as their churn share (in-sample target encoding over pooled categories);
    numbers and dates score as themselves, with missing values tried at both ends (being
    empty is a signal too)."""
    if _is_categorical(values):
        codes, names = _category_codes(values)
        total = np.bincount(codes, minlength=len(names))
        hits = np.bincount(codes, weights=churned, minlength=len(names))
        score = (hits / np.maximum(total, 1))[codes]
        return _two_sided_auc(churned, score)
    if pd.api.types.is_datetime64_any_dtype(values):
        x = to_ns(values).astype("float64")
        x[values.isna().to_numpy()] = np.nan
    elif pd.api.types.is_numeric_dtype(values):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        return None
    missing = np.isnan(x)
    if missing.all():
        return None
    if not missing.any():
        return _two_sided_auc(churned, x)
    low, high = np.nanmin(x), np.nanmax(x)
    return max(
        _two_sided_auc(churned, np.where(missing, low - 1, x)),
        _two_sided_auc(churned, np.where(missing, high + 1, x)),
    )


def _two_sided_auc(y: np.ndarray, score: np.ndarray) -> float:
    auc = float(roc_auc_score(y, score))
    return max(auc, 1 - auc)


# --------------------------------------------------------------------------------------------
# Helpers


def _churn(config: FeatureConfig | ChurnDefinition) -> ChurnDefinition:
    return config if isinstance(config, ChurnDefinition) else config.churn


def _resolved(tables: Tables, config: FeatureConfig) -> FeatureConfig:
    """The configuration with a non-contractual lookback left to the data resolved from the
    rows before the end of observation (the same rule training uses)."""
    until = _observed_end(tables, config).normalize()
    churn = resolve_lookback(tables, config.churn, until)
    return config if churn is config.churn else dataclasses.replace(config, churn=churn)


def _observed_end(tables: Tables, config: FeatureConfig) -> pd.Timestamp:
    """Until when churn is observed: the configuration's observed_until, else the data's end."""
    for holder in (_churn(config), config):
        until = getattr(holder, "observed_until", None)
        if until is not None:
            return pd.Timestamp(until)
    return tables.data_end()


def _definition(config: FeatureConfig) -> dict[str, Any]:
    churn = _churn(config)
    out: dict[str, Any] = {
        "mode": churn.mode,
        "horizon_days": churn.horizon_days,
        "lookback_days": churn.lookback_days,
        "qualifying_events": list(churn.qualifying_events)
        if churn.qualifying_events is not None
        else None,
        "customer_attributes": list(getattr(config, "customer_attributes", ()) or ()),
    }
    for holder in (churn, config):
        until = getattr(holder, "observed_until", None)
        if until is not None:
            out["observed_until"] = str(until)
    return out


def _time_columns(name: str, df: pd.DataFrame) -> list[str]:
    """The contract's timestamp columns of a table and any other datetime column it has."""
    declared = [c for c in TIMESTAMP_COLUMNS[name] if c in df]
    extra = [
        c for c in df.columns if c not in declared and pd.api.types.is_datetime64_any_dtype(df[c])
    ]
    return declared + extra


def _example(df: pd.DataFrame, mask: pd.Series | np.ndarray) -> dict[str, Any]:
    idx = np.flatnonzero(np.asarray(mask))
    if not len(idx):
        return {}
    row = df.iloc[int(idx[0])]
    return {k: _plain_value(v) for k, v in row.items()}


def _plain_value(value: Any) -> Any:
    """A value as an example row shows it: as an error message shows it (features.contract:
    timestamps as ISO text, 14.0 not np.float64(14.0)), and missing values as None."""
    return None if fmt.is_missing(value) else plain_value(value)


def _month_runs(months: list[str]) -> str:
    """'2023-03, 2023-05..2023-07 (3 months)': consecutive months joined into runs."""
    ordinals = [int(m[:4]) * 12 + int(m[5:7]) - 1 for m in months]
    runs: list[list[int]] = []
    for o in ordinals:
        if runs and o == runs[-1][-1] + 1:
            runs[-1].append(o)
        else:
            runs.append([o])

    def label(o: int) -> str:
        return f"{o // 12:04d}-{o % 12 + 1:02d}"

    parts = [
        label(r[0]) if len(r) == 1 else f"{label(r[0])}..{label(r[-1])} ({len(r)} months)"
        for r in runs
    ]
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Rendering

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _render(report: CheckReport, *, markdown: bool) -> list[str]:
    h = (lambda s: f"\n## {s}\n") if markdown else (lambda s: f"\n{s}")
    lines = [f"# churn check: {report.data}" if markdown else f"churn check: {report.data}"]
    d = report.definition
    if d:
        text = f"churn definition: {d['mode']}, horizon {d['horizon_days']} days"
        if d["mode"] == "non_contractual":
            events = ", ".join(d["qualifying_events"]) if d["qualifying_events"] else "any event"
            text += f", lookback {d['lookback_days']} days, qualifying events: {events}"
        if "observed_until" in d:
            text += f", observed until {d['observed_until']}"
        lines.append(text)
    if report.tables:
        lines.append(h("Tables"))
        rows = [
            [
                p.name,
                f"{p.rows:,}",
                f"{p.customers:,}",
                f"{p.first[:10]} .. {p.last[:10]}" if p.first else "-",
                f"{p.duplicate_rows:,}",
                _counts(p.future_rows),
                _counts(p.before_1990_rows),
                f"{p.unknown_customer_rows:,}",
            ]
            for p in report.tables
        ]
        head = ["table", "rows", "customers", "dates", "duplicates", "future", "<1990", "unknown ids"]  # fmt: skip
        lines += _grid(head, rows, markdown)
        lines.append(
            f"customers without any activity: {report.customers_without_activity:,}"
            + (
                f"; event types: {', '.join(f'{k} {v:,}' for k, v in report.event_types.items())}"
                if report.event_types
                else ""
            )
        )
        for p in report.tables:
            if p.rows_per_month:
                lines.append(h(f"Rows per month: {p.name}"))
                lines += _month_grid(p.rows_per_month, markdown)
                if p.gap_months:
                    lines.append(f"months without rows: {_month_runs(p.gap_months)}")
    if report.churn_by_month:
        lines.append(h("Churn share per month (observation date: eligible, churned within the horizon)"))  # fmt: skip
        rows = [
            [m.as_of, f"{m.eligible:,}", f"{m.churned:,}", _pct(m.share)]
            for m in report.churn_by_month
        ]
        lines += _grid(["as of", "eligible", "churned", "share"], rows, markdown)
    if report.churned_customers is not None:
        lines.append(
            f"{report.churned_means}: {report.churned_customers:,} of "
            f"{report.customers_measured:,} customers"
        )
    sections = [("Errors", report.errors), ("Warnings", report.warnings)]
    if report.notes:
        sections.append(("Notes", report.notes))
    for level, items in sections:
        lines.append(h(f"{level} ({len(items)})"))
        for f in items:
            where = ".".join(x for x in (f.table, f.column) if x)
            lines.append(f"- {'[' + where + '] ' if where else ''}{f.message}")
        if not items:
            lines.append("none")
    return lines


def _counts(by_column: dict[str, int]) -> str:
    return ", ".join(f"{c} {n:,}" for c, n in by_column.items()) or "0"


def _pct(share: float) -> str:
    return "-" if math.isnan(share) else f"{share:.1%}"


def _grid(head: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(" --- " for _ in head) + "|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = lambda r: "  ".join(str(x).rjust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return ["  " + fmt(head), *("  " + fmt(r) for r in rows)]


def _month_grid(per_month: dict[str, int], markdown: bool) -> list[str]:
    """A year x month table of row counts; blank outside the range, months without rows '0!'."""
    years: dict[str, list[str]] = {}
    for month, n in per_month.items():
        row = years.setdefault(month[:4], [""] * 12)
        row[int(month[5:7]) - 1] = f"{n:,}" if n else "0!"
    rows = [[year, *cells] for year, cells in years.items()]
    return _grid(["year", *MONTH_NAMES], rows, markdown)
