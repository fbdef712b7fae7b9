"""Retention metrics over a period and cohort retention, by segment: pure functions over Tables.

The service, the batch job and the CLI call these same functions; nothing here reads or writes
files. Conventions shared by every function:

- A period is two instants ``t0 < t1``. "At t0" and "at t1" are states at those instants; what
  happens during the period falls in the half-open window ``(t0, t1]`` (as the churn label in
  DESIGN.md: an event exactly at t0 belongs to the previous period, one exactly at t1 to this one).
- Rates and shares are fractions in [0, 1]; NPS is in points from -100 to 100.
- Rates about customers carry a Wilson score interval (``*_low``, ``*_high``), and a group with
  fewer than ``min_group_size`` customers at the start is flagged ``small_group``; it is never
  dropped, so a segment of 12 customers is shown as such rather than read like one of 12,000.
- Segments (``by``) are customer attributes (columns of ``customers``), ``signup_cohort`` (the
  signup month, ``YYYY-MM``) or ``risk_band`` (from a ``scores`` frame). A tuple of names crosses
  them. A missing attribute value is its own segment, ``(missing)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd

from features.config import RESERVED_CUSTOMER_COLUMNS
from features.contract import Tables

ChurnMode = Literal["contractual", "non_contractual"]
RetentionMode = Literal["n-day", "unbounded", "bracket"]
PeriodUnit = Literal["day", "week", "month"]
Anchor = Literal["signup", "first_activity"]
SegmentSpec = str | tuple[str, ...]
Instant = pd.Timestamp | datetime | date | np.datetime64 | str  # naive = UTC, like the contract

CHURN_MODES = ("contractual", "non_contractual")
RETENTION_MODES = ("n-day", "unbounded", "bracket")
PERIOD_UNITS = ("day", "week", "month")
ANCHORS = ("signup", "first_activity")
DERIVED_SEGMENTS = ("signup_cohort", "risk_band")
DEFAULT_BRACKETS: tuple[tuple[int, int], ...] = ((1, 7), (8, 30), (31, 90))
MISSING_SEGMENT = "(missing)"
UNSCORED_SEGMENT = "(unscored)"
ALL = "all"
_RESERVED_COLUMNS = frozenset(RESERVED_CUSTOMER_COLUMNS)

_NS_PER_DAY = 86_400 * 10**9
_AVG_MONTH_DAYS = 365.2425 / 12
_NEVER = np.iinfo(np.int64).max
_PURCHASE_KINDS = ("order", "invoice")
_REVENUE_KINDS = ("invoice", "order", "refund")


class MetricsInputError(ValueError):
    """A request the metrics cannot answer as asked: unknown segment column, bad period, ..."""


class PeriodNotCovered(MetricsInputError):
    """A period the data does not cover (it ends after the data's last record or starts before
    its first): its retention is not measured, rather than read as 0 % or 100 %.

    ``covered_from`` / ``covered_until`` are the span the data covers (see data_coverage), so
    a caller can say which period would work (the CLI refuses, the service answers a 4xx)."""

    def __init__(self, message: str, covered_from: pd.Timestamp, covered_until: pd.Timestamp):
        super().__init__(message)
        self.covered_from = covered_from
        self.covered_until = covered_until


# --------------------------------------------------------------------------- formulas


def customer_retention_rate(start: float, new: float, end: float) -> float:
    """CRR = (E - N) / S: the share of the customers at the start still there at the end.

    ``new`` (N) are the customers at the end who were not customers at the start. NaN when S = 0.
    """
    return (end - new) / start if start else float("nan")


def churn_rate(start: float, lost: float) -> float:
    """Churn rate = customers lost during the period / customers at the start. NaN when S = 0."""
    return lost / start if start else float("nan")


def wilson_interval(
    successes: np.ndarray | float, n: np.ndarray | float, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion successes / n (vectorized); NaN where n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small n, which is
    what keeps a 12-customer segment from being read like a 12,000-customer one.
    """
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(n, dtype="float64")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        # exact at the edges: 0 successes has lower bound 0, n successes upper bound 1
        low = np.where(k <= 0, 0.0, np.clip(center - half, 0.0, 1.0))
        high = np.where(k >= n, 1.0, np.clip(center + half, 0.0, 1.0))
        low = np.where(n > 0, low, np.nan)
        high = np.where(n > 0, high, np.nan)
    return low, high


def nps_summary(scores: Sequence[float] | np.ndarray | pd.Series) -> dict[str, float]:
    """NPS of a set of 0-10 scores: promoters 9-10, passives 7-8, detractors 0-6 (NaN ignored).

    NPS = 100 x (promoter share - detractor share); NaN when there are no responses.
    """
    s = np.asarray(scores, dtype="float64")
    s = s[~np.isnan(s)]
    n = len(s)
    promoter, passive, detractor = nps_categories(s)
    promoters, passives, detractors = int(promoter.sum()), int(passive.sum()), int(detractor.sum())
    share = (lambda c: c / n) if n else (lambda c: float("nan"))
    return {
        "responses": n,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
        "promoter_share": share(promoters),
        "passive_share": share(passives),
        "detractor_share": share(detractors),
        "nps": 100 * (share(promoters) - share(detractors)),
    }


def nps_categories(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (promoter 9-10, passive 7-8, detractor 0-6) of 0-10 scores; NaN is none."""
    s = np.asarray(scores, dtype="float64")
    return s >= 9, (s >= 7) & (s < 9), s <= 6


def customer_lifetime_value(
    revenue_per_customer_month: float, monthly_churn: float, gross_margin: float = 1.0
) -> tuple[float, str]:
    """CLV = average revenue per customer per month x gross margin / monthly churn rate.

    The expected lifetime in months is 1 / monthly churn (a constant monthly hazard). Returns
    (value, reason): the value is NaN and the reason says why when it cannot be computed.
    """
    value, reason = _clv(
        np.array([revenue_per_customer_month], "float64"),
        np.array([monthly_churn], "float64"),
        gross_margin,
    )
    return float(value[0]), str(reason[0])


def _clv(
    arpc: np.ndarray, monthly_churn: np.ndarray, gross_margin: float
) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = arpc * gross_margin / monthly_churn
    reason = np.full(len(arpc), "", dtype=object)
    reason[np.isnan(arpc)] = "no revenue per customer (no customers or no revenue data)"
    reason[np.isnan(monthly_churn) & (reason == "")] = "no churn rate (no customers at start)"
    zero = (monthly_churn == 0) & (reason == "")
    reason[zero] = "no churn in the period: expected lifetime is unbounded"
    value = np.where(reason == "", value, np.nan)
    return value, reason


# --------------------------------------------------------------------------- small helpers


def _timestamp(value: object, name: str) -> pd.Timestamp:
    """An instant as a naive UTC Timestamp, like the contract's columns."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise MetricsInputError(f"{name}: cannot read {value!r} as a date or timestamp") from err
    if ts is pd.NaT:
        raise MetricsInputError(f"{name}: a date is required, got {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _check_period(t0: Instant, t1: Instant) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = _timestamp(t0, "t0"), _timestamp(t1, "t1")
    if end <= start:
        raise MetricsInputError(
            f"the period must end after it starts: t1 = {end} is not after t0 = {start}"
        )
    return start, end


def _ns(values: pd.Series | pd.Index, never: int | None = None) -> np.ndarray:
    """Timestamps as int64 nanoseconds; NaT becomes ``never`` (or stays the NaT sentinel)."""
    arr = pd.to_datetime(values).to_numpy(dtype="datetime64[ns]").view("int64")
    if never is not None:
        arr = np.where(arr == np.iinfo(np.int64).min, never, arr)
    return arr


def _customer_codes(ids: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each row's customer in ``index`` (-1 if unknown); fast for categorical ids."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        categories = ids.cat.categories.astype("str")
        codes = ids.cat.codes.to_numpy().astype("int64")
        if categories.equals(index):
            return codes  # categories are the customers, in order: codes are positions
        lookup = index.get_indexer(categories)
        if len(codes) == 0 or codes.min() >= 0:
            return np.take(lookup, codes, mode="clip")
        return np.where(codes >= 0, np.take(lookup, codes, mode="clip"), -1)
    return index.get_indexer(ids.astype("str"))


def _unit_ordinal(ns: np.ndarray, unit: str) -> np.ndarray:
    """Calendar period number of each instant: days, Monday-weeks or months since 1970."""
    return _days_to_ordinal(np.floor_divide(ns, _NS_PER_DAY), unit)


def _instant_ordinal(t: pd.Timestamp, unit: str) -> int:
    """Calendar period number of one instant (see _unit_ordinal)."""
    return int(_unit_ordinal(np.array([t.value]), unit)[0])


def _days_to_ordinal(days: np.ndarray, unit: str) -> np.ndarray:
    """Calendar period number of each day number (days since 1970-01-01).

    Months go through a lookup table over the days spanned (a gather), which is an order of
    magnitude faster than numpy's datetime64[M] cast on millions of rows.
    """
    if unit == "day":
        return days
    if unit == "week":
        return np.floor_divide(days + 3, 7)  # 1970-01-01 was a Thursday
    if len(days) == 0:
        return days
    lo, hi = int(days.min()), int(days.max())
    table = np.arange(lo, hi + 1).astype("datetime64[D]").astype("datetime64[M]").astype("int64")
    return np.take(table, days - lo, mode="clip")


def _ordinal_start(ordinal: np.ndarray, unit: str) -> pd.DatetimeIndex:
    """The first instant of each calendar period number (inverse of ``_unit_ordinal``)."""
    ordinal = np.asarray(ordinal, dtype="int64")
    if unit == "month":
        stamps = ordinal.astype("datetime64[M]")
    elif unit == "week":
        stamps = (ordinal * 7 - 3).astype("datetime64[D]")
    else:
        stamps = ordinal.astype("datetime64[D]")
    return pd.DatetimeIndex(stamps.astype("datetime64[ns]"))


def _event_mask(activity: pd.DataFrame, activity_events: Sequence[str] | None) -> np.ndarray | None:
    if activity_events is None:
        return None
    return activity["event"].isin(list(activity_events)).to_numpy()


# --------------------------------------------------------------------------- coverage


def data_coverage(tables: Tables) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The span the data covers, in whole days: from midnight of the activity table's first
    record to the last instant of the day of the data's last record (Tables.data_end).

    The customers table is a snapshot that may reach back years before the activity starts
    (signups from 2018, events from 2023), so it does not extend the span; without any activity
    the earliest revenue or feedback row starts it, and without those the earliest signup."""
    start = tables.history_start().normalize()
    end = tables.data_end().normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return start, end


def _period_text(t0: pd.Timestamp, t1: pd.Timestamp) -> str:
    """The period (t0, t1] in words: whole days as their dates ("2024-06-01 .. 2024-06-30",
    where t0 is the instant before the first day's midnight and t1 the last day's last), any
    other bound as its instant."""
    tick = pd.Timedelta(1, "ns")
    if (t0 + tick) == (t0 + tick).normalize() and (t1 + tick) == (t1 + tick).normalize():
        return f"{(t0 + tick).date()} .. {t1.date()}"
    return f"({t0} .. {t1}]"


def check_period_covered(
    tables: Tables,
    t0: Instant,
    t1: Instant,
    *,
    churn_mode: ChurnMode = "contractual",
    lookback_days: int = 90,
    churn_observed_until: Instant | None = None,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Raise PeriodNotCovered when the data does not cover the period (t0, t1]; else return the
    covered span (data_coverage).

    The period must end by the end of the data's last day and start on or after its first day;
    with non-contractual churn the lookback window before t0 (who was a customer at t0) must be
    covered as well. Past the data, nobody is seen leaving (CRR 100 %, churn 0 %); before it,
    nobody is seen at all. With contractual churn and churn_observed_until (the churn
    definition's observed_until: an export that records churn late), the period must end by
    it too: after it the churns are not recorded yet, and the period would read churn 0 %
    beside the revenue its leavers no longer pay. An observed_until after the data's last
    record extends the covered span to it: the export says it observed the days between."""
    t0, t1 = _check_period(t0, t1)
    start, end = data_coverage(tables)
    period = _period_text(t0, t1)
    if churn_observed_until is not None:
        known = _timestamp(churn_observed_until, "churn_observed_until")
        # An export declared observed until a day later than its last record: the days
        # between had nothing to record (a ratings site's export of 2018-01-01, last rating on
        # 2017-12-28, was told to end its report's period on 2017-12-28).
        end = max(end, known - pd.Timedelta(1, "ns"))
    if churn_mode == "contractual" and churn_observed_until is not None and t1 > known:
        raise PeriodNotCovered(
            f"the period {period} ends after the day churn is recorded until "
            f"([features.churn] observed_until = {known.date()}): churns after it are not "
            f"recorded yet, so retention over it is not measured; end the period on "
            f"{(known - pd.Timedelta(1, 'ns')).date()} or earlier",
            start,
            min(end, known),
        )
    if t1 > end:
        raise PeriodNotCovered(
            f"the period {period} ends after the data's last record "
            f"({tables.data_end()}): what happens after it is not observed, so retention over "
            f"it is not measured; end the period on {end.date()} or earlier",
            start,
            end,
        )
    needed = t0
    why = "starts"
    if churn_mode == "non_contractual":
        needed = t0 - pd.Timedelta(days=lookback_days)
        why = f"needs its {lookback_days}-day lookback window (who was a customer at t0), which starts"
    if needed + pd.Timedelta(1, "ns") < start:  # (t0, t1]: its first instant is t0 + 1 ns
        earliest = start + (t0 - needed)
        raise PeriodNotCovered(
            f"the period {period} {why} before the data's first activity record "
            f"({start.date()}): customers are not observed then, so retention over it is not "
            f"measured; start the period on {earliest.date()} or later",
            start,
            end,
        )
    return start, end


# --------------------------------------------------------------------------- segments


def segment_labels(
    tables: Tables, by: Sequence[SegmentSpec] = (), *, scores: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One label column per requested segment, indexed by customer_id (customers' order).

    A name is a customers column, ``signup_cohort`` (signup month, ``YYYY-MM``) or ``risk_band``
    (needs ``scores`` with customer_id and risk_band; customers without a score are
    ``(unscored)``). A tuple crosses names; its column is named ``a+b`` with labels ``x / y``.
    Raises MetricsInputError naming an unknown column.
    """
    customers = tables.customers
    specs = [(s,) if isinstance(s, str) else tuple(s) for s in by]
    base: dict[str, pd.Series] = {}
    for name in dict.fromkeys(n for spec in specs for n in spec):
        base[name] = _single_segment(customers, name, scores)
    out = pd.DataFrame(index=pd.Index(customers["customer_id"], name="customer_id"))
    for spec in specs:
        col = "+".join(spec)
        if col == ALL:  # the whole base's row: dimension 'all', segment 'all'
            raise MetricsInputError(
                f"'{ALL}' cannot be used as a segment name (the report's row for every "
                "customer): rename the customers column in the import mapping"
            )
        label = base[spec[0]]
        for name in spec[1:]:
            label = label + " / " + base[name]
        out[col] = label.to_numpy()
    return out


def _single_segment(customers: pd.DataFrame, name: str, scores: pd.DataFrame | None) -> pd.Series:
    reserved = _RESERVED_COLUMNS
    if name == "signup_cohort" and name not in customers:
        return customers["signup_at"].dt.strftime("%Y-%m").reset_index(drop=True)
    if name == "risk_band" and name not in customers:
        if scores is None:
            raise MetricsInputError(
                "segment 'risk_band' needs scores (a frame with customer_id and risk_band)"
            )
        missing = [c for c in ("customer_id", "risk_band") if c not in scores]
        if missing:
            raise MetricsInputError(
                f"scores need columns customer_id and risk_band; missing: {missing}"
            )
        ids = scores["customer_id"].astype("str")
        band = scores.assign(customer_id=ids).drop_duplicates("customer_id", keep="last")
        band = band.set_index("customer_id")["risk_band"]
        mapped = pd.Series(
            customers["customer_id"].astype("str").map(band).to_numpy(), dtype=object
        )
        return mapped.where(mapped.notna(), UNSCORED_SEGMENT).astype("str")
    if name not in customers or name in reserved:
        available = [c for c in customers.columns if c not in reserved]
        raise MetricsInputError(
            f"unknown segment column '{name}': customers has attributes {available}; "
            f"also available: {', '.join(DERIVED_SEGMENTS)} (risk_band needs scores)"
        )
    values = pd.Series(customers[name].to_numpy(dtype=object))
    return values.where(values.notna(), MISSING_SEGMENT).astype("str")


# --------------------------------------------------------------------------- per-customer parts


def customer_flows(
    tables: Tables,
    t0: Instant,
    t1: Instant,
    *,
    churn_mode: ChurnMode = "contractual",
    lookback_days: int = 90,
    activity_events: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Who was a customer at t0 and t1, who was won and who was lost, per customer (0/1).

    contractual: a customer is active at t when signup_at <= t and (churned_at is NaT or
    churned_at > t) and (ended_at, when the table has it, is NaT or > t): a service that ended
    without churn (a deactivated SIM) leaves the base too, so it counts among the lost.
    at_start = active at t0, at_end = active at t1, lost = at_start and not at_end, new =
    at_end and not at_start, acquired_and_lost = signed up in (t0, t1] and gone by t1 (in
    neither S nor E). Requires customers.churned_at.

    non_contractual (shops, apps): at_start = had activity in the lookback window
    (t0 - lookback_days, t0]; at_end = had activity in (t0, t1]; lost = at_start without activity
    in (t0, t1]; new = active in (t0, t1] without activity in the lookback window, of which
    ``reactivated`` had activity before it (a return after a gap). ``activity_events`` limits
    the qualifying events (None: all).

    In both modes E = S + new - lost, so CRR = (E - new) / S = 1 - churn rate.
    """
    t0, t1 = _check_period(t0, t1)
    if churn_mode not in CHURN_MODES:
        raise MetricsInputError(f"churn_mode must be one of {CHURN_MODES}, got {churn_mode!r}")
    customers = tables.customers
    n = len(customers)
    a, b = t0.value, t1.value
    reactivated = np.zeros(n, dtype=bool)
    acquired_and_lost = np.zeros(n, dtype=bool)
    if churn_mode == "contractual":
        if "churned_at" not in customers:
            raise MetricsInputError(
                "churn_mode='contractual' needs customers.churned_at; "
                "for data without it (a shop) use churn_mode='non_contractual'"
            )
        signup = _ns(customers["signup_at"])
        gone = _gone_at(customers)  # an end of service without churn (ended_at) too
        at_start = (signup <= a) & (gone > a)
        at_end = (signup <= b) & (gone > b)
        acquired_and_lost = (signup > a) & (signup <= b) & ~at_end
    else:
        if lookback_days <= 0:
            raise MetricsInputError(f"lookback_days must be positive, got {lookback_days}")
        act = tables.activity
        codes = _customer_codes(act["customer_id"], pd.Index(customers["customer_id"]))
        at = _ns(act["at"])
        keep = codes >= 0
        events = _event_mask(act, activity_events)
        if events is not None:
            keep &= events
        lb_start = a - lookback_days * _NS_PER_DAY
        at_start = np.zeros(n, dtype=bool)
        at_end = np.zeros(n, dtype=bool)
        before = np.zeros(n, dtype=bool)
        at_start[codes[keep & (at > lb_start) & (at <= a)]] = True
        at_end[codes[keep & (at > a) & (at <= b)]] = True
        before[codes[keep & (at <= lb_start)]] = True
        reactivated = at_end & ~at_start & before
    frame = pd.DataFrame(
        {
            "at_start": at_start,
            "at_end": at_end,
            "new": at_end & ~at_start,
            "reactivated": reactivated,
            "lost": at_start & ~at_end,
            "acquired_and_lost": acquired_and_lost,
        },
        index=pd.Index(customers["customer_id"], name="customer_id"),
    )
    return frame.astype("int64")


def monthly_mrr(revenue: pd.DataFrame) -> pd.DataFrame:
    """MRR per customer and month: what each customer pays per month at the month's end.

    Rows count when kind is 'invoice' or missing (no kind column: all rows). A row with a paid
    period (``period_end``) counts in the months whose last instant it pays for, at its monthly
    rate (_mrr_rows); a row with only a ``period`` counts in that month; rows whose period is
    missing are not recurring and are left out; without a period column a row counts in the
    month of ``at``. Returns customer_id, month (month start), mrr.
    """
    inv = revenue.loc[_invoice_mask(revenue)]
    row, month, amount = _mrr_rows(inv)
    out = pd.DataFrame(
        {
            "customer_id": inv["customer_id"].astype("str").to_numpy()[row],
            "month": _ordinal_start(month, "month"),
            "mrr": amount,
        }
    )
    return out.groupby(["customer_id", "month"], as_index=False, sort=True)["mrr"].sum()


AVERAGE_MONTH_NS = int(pd.Timedelta(days=365.25 / 12).value)
# A paid period of at least this many average months is billed by the month (monthly,
# quarterly, yearly plans): its monthly rate is its amount over its whole months, so a
# monthly plan of 30 reads 30 in February as in March. A shorter one (weekly, fortnightly)
# is scaled to an average month: a weekly 10 is 43.48 a month.
WHOLE_MONTHS_FROM = 0.75
# A customer's next paid period that starts at most this long after the previous one ends
# continues it: a renewal invoice dated a day after its period ended (an export that gives
# `at` and `period_end` only) or paid on a retry does not read as a month of churn.
RENEWAL_GAP = pd.Timedelta(days=7)


def _mrr_rows(invoices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each invoice row's MRR by calendar month: (its position among the rows, the month
    ordinal, its monthly amount), one entry per row and month.

    A row with a paid period (_paid_spans: [period or at, period_end)) counts in each month
    whose last instant the period holds (a month-end snapshot), at its monthly rate
    (_months_paid): a yearly plan's 1,200 is 100 in each of its 12 months, so the months
    between renewals do not read as churn nor the renewal month as a twelvefold expansion; a
    plan billed every 30 days is one invoice per month-end, where counting invoices by the
    month they start in gave the month that holds two renewals twice the MRR and the next
    month a contraction; a weekly plan is its weekly amount scaled to a month, not the 4 or 5
    invoices a month happens to hold. Periods of one customer that follow within
    RENEWAL_GAP are read as one (_bridged_ends). Otherwise the row pays for its period's
    month (with neither column, the month of ``at``); where the export says which invoices
    pay a period, the others are left out (not recurring: a gym's one-off starter pack)."""
    missing = np.iinfo(np.int64).min
    spans = _paid_spans(invoices)
    known = spans[2]
    month = _mrr_month_ordinal(invoices, spans)
    monthly = invoices["amount"].to_numpy(dtype="float64") / _months_paid(spans)
    counts = np.where(month != missing, 1, 0).astype(np.int64)
    if known.any():
        bridged = _bridged_ends(invoices["customer_id"], spans)
        # months m with start <= last instant of m < end: from start's month to end's month - 1
        last = _unit_ordinal(bridged[known], "month")
        counts[known] = np.maximum(last - month[known], 0)
    row = np.flatnonzero(counts > 0)
    counts = counts[row]
    expanded = np.repeat(row, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.arange(len(expanded), dtype=np.int64) - first
    return expanded, month[expanded] + offset, monthly[expanded]


def _bridged_ends(
    customer_id: pd.Series, spans: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per row, the end of its paid period, moved to the start of the customer's next period
    where that starts within RENEWAL_GAP after it (the gap is read as paid); the row's own end
    elsewhere. Only rows with a known period (``spans[2]``) are read."""
    start, end, known = spans
    out = end.copy()
    rows = np.flatnonzero(known)
    if len(rows) < 2:
        return out
    codes = pd.factorize(customer_id.to_numpy()[rows])[0]
    by_customer_and_start = np.lexsort((start[rows], codes))
    order, ordered_codes = rows[by_customer_and_start], codes[by_customer_and_start]
    same = ordered_codes[1:] == ordered_codes[:-1]
    gap = start[order[1:]] - end[order[:-1]]
    bridge = same & (gap > 0) & (gap <= RENEWAL_GAP.value)
    out[order[:-1][bridge]] = start[order[1:][bridge]]
    return out


def _paid_spans(revenue: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the period it pays for as int64 ns (start, end, known): [period, period_end),
    or [at, period_end) where the row has a period_end but no period. An export that gives
    only the end (a gym's "paid until", the README's invoices generated from a subscriptions
    table) pays from the invoice's date; read as having no period, a yearly plan's 334.80 was
    all in its renewal month and the segment's NRR 0 %. known: both ends, end after start."""
    missing = np.iinfo(np.int64).min
    n = len(revenue)
    if "period_end" not in revenue:
        none = np.full(n, missing, dtype=np.int64)
        return none, none, np.zeros(n, dtype=bool)
    end = _ns(revenue["period_end"])
    start = _ns(revenue["period"]) if "period" in revenue else np.full(n, missing, dtype=np.int64)
    start = np.where(start == missing, _ns(revenue["at"]), start)
    known = (start != missing) & (end != missing) & (end > start)
    return start, end, known


def _months_paid(spans: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Per row of _paid_spans, the months its amount pays for (float): its length in average
    months, rounded to whole months from WHOLE_MONTHS_FROM on (a quarterly plan's 91 days are
    3); 1 where the period is not known."""
    start, end, known = spans
    months = np.ones(len(known), dtype="float64")
    length = (end[known] - start[known]) / AVERAGE_MONTH_NS
    months[known] = np.where(length >= WHOLE_MONTHS_FROM, np.maximum(np.rint(length), 1), length)
    return months


def paid_monthly_revenue(revenue: pd.DataFrame, as_of: Instant) -> pd.Series | None:
    """Per customer, the monthly revenue of the invoices issued before `as_of` whose paid
    period (_paid_spans: [period or at, period_end)) holds the instant just before it, each
    its amount over the months it pays for (_months_paid): what a customer pays per month
    now, for revenue at risk.
    An annual customer who paid 1,200 ten months ago pays 100 a month, where the revenue of the
    last 30 days reads 0. None when the revenue rows carry no paid period (a shop), or bill in
    arrears (a postpaid bill after its month: no bill holds the run date yet); the revenue of
    the last 30 days stands in."""
    from features.signals import billed_in_advance

    if "period_end" not in revenue:
        return None
    if not billed_in_advance(revenue, as_of):
        return None
    inv = revenue.loc[_invoice_mask(revenue)]
    paid = _paid_spans(inv)
    start, end, spans = paid
    if not spans.any():
        return None
    t = _timestamp(as_of, "as_of").value - 1
    at = _ns(inv["at"])
    now = spans & (at <= t) & (start <= t) & (t < end)
    monthly = inv["amount"].to_numpy(dtype="float64")[now] / _months_paid(paid)[now]
    ids = inv["customer_id"].astype("str").to_numpy()[now]
    return pd.Series(monthly, index=ids).groupby(level=0).sum()


# A customer whose fee invoices follow each other by this many days (median) is billed about
# yearly; their fee repeats within FEE_REPEAT_CHANGE (a price increase), and an invoice under
# FEE_SHARE_OF_LARGEST of the customer's largest is a one-off charge, not the fee. Yearly
# billing matters when at least YEARLY_MIN_CUSTOMERS and YEARLY_MIN_SHARE of the customers
# with two fee invoices or more are billed so.
YEARLY_GAP_DAYS = (300, 430)
FEE_SHARE_OF_LARGEST = 0.5
FEE_REPEAT_CHANGE = 0.25
YEARLY_MIN_CUSTOMERS = 5
YEARLY_MIN_SHARE = 0.02


def yearly_billing(revenue: pd.DataFrame) -> tuple[pd.Index, pd.Index]:
    """Customers whose invoices without a paid period repeat a fee about once a year, and the
    customers with two fee invoices or more they are out of. Empty where any invoice
    carries a period_end (MRR then spreads each invoice over the months it pays: _paid_spans).

    Why: without a period_end MRR counts an invoice in its month, and a yearly plan's members
    read as lost revenue in every period that does not hold their renewal (a gym's yearly plan:
    NRR 0 %, revenue churn 100 %, while 94 % of its members stayed)."""
    none = pd.Index([], dtype="str")
    if revenue.empty or ("period_end" in revenue and revenue["period_end"].notna().any()):
        return none, none
    invoices = revenue.loc[_invoice_mask(revenue) & (revenue["amount"] > 0).to_numpy(dtype=bool)]
    if invoices.empty:
        return none, none
    codes, customers = pd.factorize(invoices["customer_id"])
    amount = invoices["amount"].to_numpy(dtype="float64")
    largest = np.zeros(len(customers))
    np.maximum.at(largest, codes, amount)
    fee = amount >= FEE_SHARE_OF_LARGEST * largest[codes]  # not a one-off charge
    codes, amount, at = codes[fee], amount[fee], _ns(invoices["at"])[fee]
    order = np.lexsort((at, codes))
    codes, amount, at = codes[order], amount[order], at[order]
    follows = np.r_[False, codes[1:] == codes[:-1]]  # the customer's invoice before it exists
    gap = (at[1:] - at[:-1])[follows[1:]] / 86_400e9
    change = np.abs(amount[1:] / amount[:-1] - 1)[follows[1:]]
    usual = (
        pd.DataFrame({"gap": gap, "change": change}).groupby(codes[follows], sort=False).median()
    )
    usual.index = pd.Index(customers.astype("str")[usual.index.to_numpy()])
    low, high = YEARLY_GAP_DAYS
    yearly = (usual["gap"] >= low) & (usual["gap"] <= high) & (usual["change"] <= FEE_REPEAT_CHANGE)
    return usual.index[yearly.to_numpy()], usual.index


def yearly_billing_matters(yearly: int, compared: int) -> bool:
    """Whether `yearly` of `compared` customers billed about yearly are enough to say so."""
    return yearly >= max(YEARLY_MIN_CUSTOMERS, YEARLY_MIN_SHARE * compared)


def _invoice_mask(revenue: pd.DataFrame) -> np.ndarray:
    if "kind" not in revenue:
        return np.ones(len(revenue), dtype=bool)
    kind = revenue["kind"]
    return (kind.isna() | (kind == "invoice")).to_numpy(dtype=bool)


def _mrr_month_ordinal(
    invoices: pd.DataFrame, spans: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """Month number paid for, per invoice row: of its paid period's start (`spans`, the rows'
    _paid_spans), else of its period; with neither column, of ``at``. The NaT sentinel where
    the export says which invoices pay a period (a period or period_end on some row) and this
    one pays none."""
    missing = np.iinfo(np.int64).min
    start, _, known = spans
    if "period" in invoices:
        ns = np.where(known, start, _ns(invoices["period"]))
    elif known.any():
        ns = np.where(known, start, missing)
    else:
        ns = _ns(invoices["at"])
    out = np.full(len(ns), missing, dtype="int64")
    ok = ns != missing
    out[ok] = _unit_ordinal(ns[ok], "month")
    return out


def mrr_months(t0: pd.Timestamp, t1: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The starts of the two calendar months whose MRR a period (t0, t1] compares: that of its
    first instant and that of t1. `churn metrics --from 2024-12-01` is t0 = the instant before
    that day, so t0's month is the month of the day asked for (December), not the month t0
    itself falls in (November's had been compared: two judges read it as a wrong MRR t0)."""
    first = t0 + pd.Timedelta(nanoseconds=1)
    return first.replace(day=1).normalize(), t1.replace(day=1).normalize()


def _mrr_month_ordinals(t0: pd.Timestamp, t1: pd.Timestamp) -> tuple[int, int]:
    """mrr_months as month ordinals (_unit_ordinal's)."""
    start, end = mrr_months(t0, t1)
    return _instant_ordinal(start, "month"), _instant_ordinal(end, "month")


MRR_MOVEMENTS = ("mrr_start", "expansion", "contraction", "churned_mrr", "new_mrr", "mrr_end")


def mrr_movements(
    tables: Tables, t0: Instant, t1: Instant, at_start: np.ndarray | None = None
) -> pd.DataFrame:
    """Per customer: MRR in the month of t0 and of t1, and how it moved between them.

    MRR as in :func:`monthly_mrr`. A customer has MRR in a month when it is > 0. For customers
    with MRR in both months the change is expansion (up) or contraction (down, as a positive
    amount); churned_mrr is the t0 MRR of customers with none at t1; new_mrr is the t1 MRR of
    customers with none at t0. mrr_end = mrr_start + expansion - contraction - churned + new.
    at_start (per customer, bool): the customers at t0 (customer_flows' S), as the period
    metrics give it: only theirs is MRR at t0; a customer who joined later in t0's month is
    new at t1.
    """
    return _mrr_movements_and_not_due(tables, t0, t1, at_start)[0]


def _mrr_movements_and_not_due(
    tables: Tables, t0: Instant, t1: Instant, at_start: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """mrr_movements, and per customer (0/1) whether its churned_mrr is not due yet: the next
    monthly invoice after its last one of t0's month falls after t1, so no invoice of t1's
    month says it left. Where the data ends within t1's month (not_due_note) such a
    customer's revenue is not observed, not lost: a weekly run on the 15th read 39 % revenue
    churn where 1.9 % was true (customers billed on the 20th had no October invoice yet).
    One pass over the invoices for both; the flags add up by segment and Spark bucket."""
    t0, t1 = _check_period(t0, t1)
    customers = tables.customers
    n = len(customers)
    rev = tables.revenue
    inv = rev.loc[_invoice_mask(rev)]
    row, month, amount = _mrr_rows(inv)
    codes = _customer_codes(inv["customer_id"], pd.Index(customers["customer_id"]))[row]
    m0, m1 = _mrr_month_ordinals(t0, t1)
    ok = codes >= 0
    in_start, in_end = ok & (month == m0), ok & (month == m1)
    start = np.bincount(codes[in_start], amount[in_start], minlength=n)
    end = np.bincount(codes[in_end], amount[in_end], minlength=n)
    if at_start is not None:
        # A customer of S who leaves within t0's month (a cover that ended at t0 itself: an
        # insurer's 381 policies ended on 1 January) holds no MRR at that month's end: its MRR
        # at t0 is the month before's, what it paid until it left. Without it
        # a period from 1 January read churn 13.7 % beside gross revenue churn 0.8 %.
        in_before = ok & (month == m0 - 1)
        before = np.bincount(codes[in_before], amount[in_before], minlength=n)
        month_end = mrr_months(t0, t1)[0] + pd.DateOffset(months=1)
        left_in_month = (
            at_start & (start <= 0) & (before > 0) & (_gone_at(customers) < month_end.value)
        )
        start = np.where(left_in_month, before, start)
        in_start = in_start | (in_before & left_in_month[np.clip(codes, 0, None)])
    had, has = start > 0, end > 0
    if at_start is not None:
        # MRR at t0 is the S customers' (customer_flows' at_start): a customer who joined
        # during t0's month is new, not a base that then moved (a gym's March joiners, their
        # first receipt prorated with a joining fee, read as 57 contractions; the base held
        # April's joiners beside S's 984 customers).
        had &= at_start
    both = had & has
    delta = np.where(both, end - start, 0.0)
    movements = pd.DataFrame(
        {
            "mrr_start": np.where(had, start, 0.0),
            "mrr_end": np.where(has, end, 0.0),
            "expansion": np.clip(delta, 0, None),
            "contraction": np.clip(-delta, 0, None),
            "churned_mrr": np.where(had & ~has, start, 0.0),
            "new_mrr": np.where(has & ~had, end, 0.0),
        },
        index=pd.Index(customers["customer_id"], name="customer_id"),
    )
    not_due = np.zeros(n, dtype=bool)
    churned = had & ~has
    if churned.any():
        never = np.iinfo(np.int64).min
        last = np.full(n, never, dtype=np.int64)
        np.maximum.at(last, codes[in_start], _ns(inv["at"])[row][in_start])
        seen = churned & (last > never)
        if seen.any():
            next_invoice = pd.DatetimeIndex(last[seen].astype("datetime64[ns]")) + (
                pd.DateOffset(months=1)
            )
            not_due[np.flatnonzero(seen)] = next_invoice > t1
    return movements, not_due.astype("int64")


def _gone_at(customers: pd.DataFrame) -> np.ndarray:
    """Per customer, when it left the base (churned_at, or ended_at when earlier), ns; never
    (int64 max) for a customer who has not."""
    gone = np.full(len(customers), _NEVER, dtype=np.int64)
    for column in ("churned_at", "ended_at"):
        if column in customers:
            gone = np.minimum(gone, _ns(customers[column], never=_NEVER))
    return gone


def purchase_counts(
    tables: Tables, t0: Instant, t1: Instant, *, purchase_key: str | None = None
) -> pd.Series:
    """Number of distinct purchases per customer in (t0, t1].

    A purchase is a revenue row of kind order or invoice (or no kind) with a positive amount;
    rows are one purchase when they share ``purchase_key`` (a column such as an invoice number)
    or, by default, the same timestamp ``at``.
    """
    t0, t1 = _check_period(t0, t1)
    customers = tables.customers
    rev = tables.revenue
    if purchase_key is not None and purchase_key not in rev:
        raise MetricsInputError(f"purchase_key '{purchase_key}' is not a column of revenue")
    kind_ok = (
        rev["kind"].isna() | rev["kind"].isin(_PURCHASE_KINDS)
        if "kind" in rev
        else pd.Series(True, index=rev.index)
    )
    at = _ns(rev["at"])
    mask = kind_ok.to_numpy(dtype=bool) & (rev["amount"].to_numpy(dtype="float64") > 0)
    mask &= (at > t0.value) & (at <= t1.value)
    codes = _customer_codes(rev["customer_id"], pd.Index(customers["customer_id"]))
    mask &= codes >= 0
    codes = codes[mask]
    key = at[mask] if purchase_key is None else pd.factorize(rev.loc[mask, purchase_key])[0]
    pairs = pd.DataFrame({"c": codes, "k": key}).drop_duplicates()
    counts = np.bincount(pairs["c"].to_numpy(), minlength=len(customers))
    return pd.Series(
        counts, index=pd.Index(customers["customer_id"], name="customer_id"), name="purchases"
    )


def period_revenue(tables: Tables, t0: Instant, t1: Instant) -> pd.Series:
    """Net revenue per customer in (t0, t1]: invoices, orders and refunds (failed payments out).

    A row with a paid period (_paid_spans: [period or at, period_end)) issued by t1 counts
    with the share of that period inside (t0, t1], as revenue is earned: an annual plan's 1,200
    is 300 in a quarter, not 1,200 in the quarter that holds its renewal and 0 in the others (a
    billing export's lifetime value of an annual plan read 21,942). Other rows count when
    dated in (t0, t1]."""
    t0, t1 = _check_period(t0, t1)
    customers = tables.customers
    rev = tables.revenue
    kind_ok = (
        (rev["kind"].isna() | rev["kind"].isin(_REVENUE_KINDS)).to_numpy(dtype=bool)
        if "kind" in rev
        else np.ones(len(rev), dtype=bool)
    )
    at = _ns(rev["at"])
    amount = rev["amount"].to_numpy(dtype="float64")
    mask = kind_ok & (at > t0.value) & (at <= t1.value)
    if "period_end" in rev:
        start, end, spans = _paid_spans(rev)
        spans &= kind_ok
        overlap = np.minimum(end, t1.value + 1) - np.maximum(start, t0.value + 1)
        share = np.where(spans, np.clip(overlap, 0, None) / np.maximum(end - start, 1), 0.0)
        mask = np.where(spans, (at <= t1.value) & (share > 0), mask)
        amount = np.where(spans, amount * share, amount)
    codes = _customer_codes(rev["customer_id"], pd.Index(customers["customer_id"]))
    mask &= codes >= 0
    total = np.bincount(codes[mask], amount[mask], minlength=len(customers))
    return pd.Series(
        total, index=pd.Index(customers["customer_id"], name="customer_id"), name="revenue"
    )


def latest_nps(tables: Tables, t0: Instant, t1: Instant) -> pd.Series:
    """Each customer's latest NPS score in (t0, t1] (NaN without one).

    Only feedback of kind 'nps' with a score counts; a customer answering twice counts once, with
    the latest answer (ties at the same instant: the higher score), so frequent responders do not
    weigh more.
    """
    t0, t1 = _check_period(t0, t1)
    customers = tables.customers
    fb = tables.feedback
    out = np.full(len(customers), np.nan)
    if len(fb) and "score" in fb:
        at = _ns(fb["at"])
        score = fb["score"].to_numpy(dtype="float64")
        mask = (fb["kind"] == "nps").to_numpy(dtype=bool) & ~np.isnan(score)
        mask &= (at > t0.value) & (at <= t1.value)
        codes = _customer_codes(fb["customer_id"], pd.Index(customers["customer_id"]))
        mask &= codes >= 0
        c, t, s = codes[mask], at[mask], score[mask]
        order = np.lexsort((s, t, c))
        c, s = c[order], s[order]
        last = np.r_[c[1:] != c[:-1], True] if len(c) else np.zeros(0, dtype=bool)
        out[c[last]] = s[last]
    return pd.Series(
        out, index=pd.Index(customers["customer_id"], name="customer_id"), name="nps_score"
    )


def per_customer_metrics(
    tables: Tables,
    t0: Instant,
    t1: Instant,
    *,
    churn_mode: ChurnMode = "contractual",
    lookback_days: int = 90,
    activity_events: Sequence[str] | None = None,
    purchase_key: str | None = None,
) -> pd.DataFrame:
    """All per-customer parts of the period metrics in one frame; every column adds up by segment.

    Columns: the flows of :func:`customer_flows`, the MRR movements of :func:`mrr_movements`,
    revenue (:func:`period_revenue`), buyer / repeat_buyer (>= 1 / > 1 purchases,
    :func:`purchase_counts`), nps_response / promoter / passive / detractor (:func:`latest_nps`).
    """
    flows = customer_flows(
        tables,
        t0,
        t1,
        churn_mode=churn_mode,
        lookback_days=lookback_days,
        activity_events=activity_events,
    )
    mrr, not_due = _mrr_movements_and_not_due(
        tables, t0, t1, at_start=flows["at_start"].to_numpy(dtype=bool)
    )
    purchases = purchase_counts(tables, t0, t1, purchase_key=purchase_key).to_numpy()
    score = latest_nps(tables, t0, t1).to_numpy()
    frame = pd.concat([flows, mrr], axis=1)
    frame["revenue"] = period_revenue(tables, t0, t1).to_numpy()
    frame["buyer"] = (purchases >= 1).astype("int64")
    frame["repeat_buyer"] = (purchases > 1).astype("int64")
    promoter, passive, detractor = nps_categories(score)
    frame["nps_response"] = (~np.isnan(score)).astype("int64")
    frame["promoter"] = promoter.astype("int64")
    frame["passive"] = passive.astype("int64")
    frame["detractor"] = detractor.astype("int64")
    # Subscriptions billed yearly without a period_end: their MRR cannot be read by month
    # (metrics_from_sums then measures no NRR and revenue churn, and says why).
    none = pd.Index([], dtype="str")
    yearly, compared = (
        yearly_billing(tables.revenue) if churn_mode == "contractual" else (none, none)
    )
    ids = frame.index.astype("str")
    frame["billed_yearly"] = ids.isin(yearly).astype("int64")
    frame["fee_invoiced_twice"] = ids.isin(compared).astype("int64")
    frame["mrr_not_due"] = not_due
    return frame


# --------------------------------------------------------------------------- period metrics


METRIC_COLUMNS = (
    "customers_start",
    "new",
    "lost",
    "customers_end",
    "reactivated",
    "acquired_and_lost",
    "crr",
    "crr_low",
    "crr_high",
    "churn_rate",
    "churn_low",
    "churn_high",
    "small_group",
    "mrr_start",
    "expansion",
    "contraction",
    "churned_mrr",
    "new_mrr",
    "mrr_end",
    "gross_revenue_churn",
    "nrr",
    "mrr_note",
    "buyers",
    "repeat_buyers",
    "repeat_purchase_rate",
    "repeat_purchase_low",
    "repeat_purchase_high",
    "nps_responses",
    "promoters",
    "passives",
    "detractors",
    "promoter_share",
    "passive_share",
    "detractor_share",
    "nps",
    "revenue",
    "arpc_month",
    "monthly_churn",
    "clv",
    "clv_low",
    "clv_high",
    "clv_note",
)


def retention_metrics(
    tables: Tables,
    t0: Instant,
    t1: Instant,
    *,
    by: Sequence[SegmentSpec] = (),
    churn_mode: ChurnMode = "contractual",
    lookback_days: int = 90,
    activity_events: Sequence[str] | None = None,
    purchase_key: str | None = None,
    min_group_size: int = 30,
    gross_margin: float = 1.0,
    scores: pd.DataFrame | None = None,
    confidence: float = 0.95,
    churn_observed_until: Instant | None = None,
) -> pd.DataFrame:
    """Retention metrics over (t0, t1] for the whole base and for each segment of ``by``.
    churn_observed_until: the churn definition's observed_until (check_period_covered).

    One row per segment: ``dimension`` ('all' or the segment name) and ``segment`` (its value).

    - customers_start S, new N, lost, customers_end E (see :func:`customer_flows`);
      crr = (E - N) / S, churn_rate = lost / S, each with a Wilson interval; small_group when
      S < min_group_size (flagged, never dropped).
    - MRR (see :func:`mrr_movements`): gross_revenue_churn = (contraction + churned_mrr) /
      mrr_start; nrr = (mrr_start + expansion - contraction - churned_mrr) / mrr_start. Both
      NaN, with mrr_note saying why, when the month of t1 cannot be compared with that of t0
      (see :func:`mrr_comparison_note`).
    - repeat_purchase_rate = customers with > 1 purchase / customers with >= 1 in the period;
      NaN under contractual churn, where the revenue rows are a subscription's invoices, one
      per billing period, and no repeat purchases (a subscription's segments read 0 %).
    - NPS from each customer's latest response in the period: shares of promoters (9-10),
      passives (7-8), detractors (0-6); nps = 100 x (promoter - detractor share).
    - arpc_month = net revenue in the period / average customers ((S + E) / 2) / months in the
      period; monthly_churn = 1 - (1 - churn_rate) ** (1 / months); clv = arpc_month x
      gross_margin / monthly_churn (expected lifetime 1 / monthly churn); NaN with clv_note
      saying why when churn is 0 or there is nothing to divide by; clv_low and clv_high the
      same at the churn rate's interval (clv_high NaN where the interval reaches 0 churn).
    """
    t0, t1 = _check_period(t0, t1)
    check_period_covered(
        tables,
        t0,
        t1,
        churn_mode=churn_mode,
        lookback_days=lookback_days,
        churn_observed_until=churn_observed_until,
    )
    labels = segment_labels(tables, by, scores=scores)
    parts = per_customer_metrics(
        tables,
        t0,
        t1,
        churn_mode=churn_mode,
        lookback_days=lookback_days,
        activity_events=activity_events,
        purchase_key=purchase_key,
    )
    return metrics_from_sums(
        segment_sums(parts, labels),
        t0,
        t1,
        min_group_size=min_group_size,
        gross_margin=gross_margin,
        confidence=confidence,
        has_revenue=len(tables.revenue) > 0,
        observed_until=tables.data_end(),
        repeat_purchases=churn_mode != "contractual",
    )


def segment_sums(parts: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per-customer additive parts summed for the whole base ('all') and for each segment of each
    label column (rows aligned with parts): dimension, segment, then the sums.

    Sums of disjoint slices of the customers add up to the sums of the whole, which is how the
    Spark engine computes a report bucket by bucket (see :func:`combine_segment_sums`)."""
    pieces = [parts.sum().to_frame().T.assign(dimension=ALL, segment=ALL)]
    for dim in labels.columns:
        grouped = parts.groupby(labels[dim].to_numpy(), sort=True).sum()
        pieces.append(grouped.assign(dimension=dim, segment=grouped.index.astype("str")))
    sums = pd.concat(pieces, ignore_index=True)
    return sums[["dimension", "segment", *parts.columns]]


def combine_segment_sums(pieces: Sequence[pd.DataFrame], dimensions: Sequence[str]) -> pd.DataFrame:
    """The segment sums of several disjoint slices of the customers (e.g. Spark buckets) added
    up, in the order segment_sums gives for the whole: 'all', then each dimension in the given
    order with its segments sorted."""
    frames = [p for p in pieces if len(p)]
    if not frames:
        raise MetricsInputError("no segment sums to combine")
    total = pd.concat(frames, ignore_index=True).groupby(["dimension", "segment"], sort=False).sum()
    total = total.reset_index()
    rank = {ALL: 0, **{d: i + 1 for i, d in enumerate(dimensions)}}
    unknown = sorted(set(total["dimension"]) - set(rank))
    if unknown:
        raise MetricsInputError(f"segment sums have dimensions {unknown} not asked for")
    order = sorted(
        range(len(total)), key=lambda i: (rank[total["dimension"][i]], total["segment"][i])
    )
    return total.iloc[order].reset_index(drop=True)


def _no_recurring_revenue(sums: pd.DataFrame) -> bool:
    """Whether the whole base has no MRR at all in the period's months: every movement 0 (a
    shop's orders are no invoices; a grocery's segments read MRR 0.0 and NRR NaN without a
    word)."""
    everyone = sums["dimension"] == ALL
    present = [m for m in MRR_MOVEMENTS if m in sums]
    return bool(present) and not sums.loc[everyone, present].to_numpy(dtype="float64").any()


def metrics_from_sums(
    sums: pd.DataFrame,
    t0: Instant,
    t1: Instant,
    *,
    min_group_size: int = 30,
    gross_margin: float = 1.0,
    confidence: float = 0.95,
    has_revenue: bool = True,
    observed_until: Instant | None = None,
    repeat_purchases: bool = True,
) -> pd.DataFrame:
    """The metrics of :func:`retention_metrics` from segment sums of per_customer_metrics.

    observed_until: the data's last record (Tables.data_end), to tell an MRR month without data
    from one whose customers all left; None when unknown. repeat_purchases: False under
    contractual churn, whose revenue rows are invoices: the repeat purchase rate is then not
    measured (NaN; buyers and repeat_buyers stay the counts they are)."""
    t0, t1 = _check_period(t0, t1)
    months = (t1 - t0) / pd.Timedelta(days=_AVG_MONTH_DAYS)
    out = _derive_metrics(
        sums, months, min_group_size, gross_margin, confidence, has_revenue=has_revenue
    )
    note = mrr_comparison_note(t0, t1, observed_until) if has_revenue else ""
    if not note and has_revenue and "mrr_not_due" in sums:
        note = not_due_note(
            int(sums.loc[sums["dimension"] == ALL, "mrr_not_due"].sum()), t0, t1, observed_until
        )
        if note:
            out.loc[:, list(MRR_MOVEMENTS)] = np.nan  # not observed, not lost
    if not note and has_revenue and "billed_yearly" in sums:
        everyone = sums["dimension"] == ALL
        yearly = int(sums.loc[everyone, "billed_yearly"].sum())
        if yearly_billing_matters(yearly, int(sums.loc[everyone, "fee_invoiced_twice"].sum())):
            note = (
                f"{yearly:,} customers are billed about once a year and the invoices carry no "
                "period_end: counted in their invoice's month, their MRR would read the months "
                "between renewals as lost revenue; map period_end (the end of the period each "
                "invoice pays) to measure NRR and revenue churn"
            )
            out.loc[:, list(MRR_MOVEMENTS)] = np.nan  # what the months between misread
    if not note and has_revenue and _no_recurring_revenue(sums):
        note = (
            "no recurring revenue in either month (orders, not invoices of a subscription): "
            "MRR, NRR and revenue churn measure nothing here"
        )
        out.loc[:, list(MRR_MOVEMENTS)] = np.nan  # not 0: nothing was measured
    if not has_revenue:  # no revenue rows: nothing measured, not revenue or buyers of 0
        note = "no revenue data: MRR, NRR, revenue churn and purchases are not measured"
        measured_by_revenue = [*MRR_MOVEMENTS, "revenue", "buyers", "repeat_buyers"]
        out[measured_by_revenue] = out[measured_by_revenue].astype("float64")
        out.loc[:, measured_by_revenue] = np.nan
        out.loc[:, ["repeat_purchase_rate", "repeat_purchase_low", "repeat_purchase_high"]] = np.nan
    out["mrr_note"] = note
    if not repeat_purchases:
        out.loc[:, ["repeat_purchase_rate", "repeat_purchase_low", "repeat_purchase_high"]] = np.nan
    if note:
        out["gross_revenue_churn"] = np.nan
        out["nrr"] = np.nan
    # A row without customers at t0 (for example those who signed up during the period) has no
    # base to retain: its revenue of t0's month is not a retention base either.
    if "customers_start" in out:
        empty = out["customers_start"].fillna(0).to_numpy() == 0
        out.loc[empty, [c for c in ("gross_revenue_churn", "nrr") if c in out]] = np.nan
    out["period_start"], out["period_end"] = t0, t1
    return out[["dimension", "segment", "period_start", "period_end", *METRIC_COLUMNS]]


def not_due_note(
    not_due: int, t0: pd.Timestamp, t1: pd.Timestamp, observed_until: Instant | None
) -> str:
    """Why revenue churn and NRR are not measured ("" when they are): the data ends within t1's
    month and `not_due` customers of t0's month are not due for that month's invoice by t1
    (_mrr_movements_and_not_due). Unknown data end: t1's month is taken as observed."""
    if not not_due or observed_until is None:
        return ""
    end = _timestamp(observed_until, "observed_until")
    month_end = t1.replace(day=1).normalize() + pd.DateOffset(months=1)
    if end >= month_end - pd.Timedelta(nanoseconds=1):
        return ""
    whole = t1.replace(day=1).normalize() - pd.Timedelta(days=1)
    first, _ = mrr_months(t0, t1)
    return (
        f"the data ends on {end:%Y-%m-%d}, within {t1:%Y-%m}: {not_due:,} customers invoiced in "
        f"{first:%Y-%m} are not due for their {t1:%Y-%m} invoice by {t1:%Y-%m-%d} and would "
        f"read as lost revenue; revenue churn and NRR compare whole months: end the period on "
        f"{whole:%Y-%m-%d}, or measure once {t1:%Y-%m} is in the data"
    )


def mrr_comparison_note(t0: Instant, t1: Instant, observed_until: Instant | None = None) -> str:
    """Why the MRR of t1's month cannot be compared with that of t0's month ("" when it can).

    MRR is counted per calendar month (see :func:`mrr_movements`): within one month nothing
    can move, and a month after the data's last record has no invoices yet, which would count
    every customer's MRR as churned."""
    t0, t1 = _check_period(t0, t1)
    m0, m1 = _mrr_month_ordinals(t0, t1)
    if m0 == m1:
        return (
            f"the period lies within {t1:%Y-%m}: MRR is counted per calendar month, so revenue "
            "churn and NRR need a period that ends in a later month than it starts"
        )
    if observed_until is not None:
        end = _timestamp(observed_until, "observed_until")
        if end < t1.replace(day=1).normalize():
            return (
                f"the data ends on {end:%Y-%m-%d}, before {t1:%Y-%m}: that month's MRR is not "
                "observed yet"
            )
    return ""


def _derive_metrics(
    sums: pd.DataFrame,
    months: float,
    min_group_size: int,
    gross_margin: float,
    confidence: float,
    *,
    has_revenue: bool,
) -> pd.DataFrame:
    def col(name: str) -> np.ndarray:
        return sums[name].to_numpy(dtype="float64")

    s, e, new, lost = col("at_start"), col("at_end"), col("new"), col("lost")
    out = pd.DataFrame({"dimension": sums["dimension"], "segment": sums["segment"]})
    out["customers_start"] = s.astype("int64")
    out["new"] = new.astype("int64")
    out["lost"] = lost.astype("int64")
    out["customers_end"] = e.astype("int64")
    out["reactivated"] = col("reactivated").astype("int64")
    out["acquired_and_lost"] = col("acquired_and_lost").astype("int64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["crr"] = np.where(s > 0, (e - new) / s, np.nan)
        out["crr_low"], out["crr_high"] = wilson_interval(s - lost, s, confidence)
        out["churn_rate"] = np.where(s > 0, lost / s, np.nan)
        out["churn_low"], out["churn_high"] = wilson_interval(lost, s, confidence)
        out["small_group"] = s < min_group_size
        m0 = col("mrr_start")
        for name in MRR_MOVEMENTS:
            out[name] = col(name)
        exp, con, chu = col("expansion"), col("contraction"), col("churned_mrr")
        out["gross_revenue_churn"] = np.where(m0 > 0, (con + chu) / m0, np.nan)
        out["nrr"] = np.where(m0 > 0, (m0 + exp - con - chu) / m0, np.nan)
        buyers, repeat = col("buyer"), col("repeat_buyer")
        out["buyers"] = buyers.astype("int64")
        out["repeat_buyers"] = repeat.astype("int64")
        out["repeat_purchase_rate"] = np.where(buyers > 0, repeat / buyers, np.nan)
        out["repeat_purchase_low"], out["repeat_purchase_high"] = wilson_interval(
            repeat, buyers, confidence
        )
        resp = col("nps_response")
        out["nps_responses"] = resp.astype("int64")
        for count, share in (
            ("promoter", "promoter_share"),
            ("passive", "passive_share"),
            ("detractor", "detractor_share"),
        ):
            out[count + "s"] = col(count).astype("int64")
            out[share] = np.where(resp > 0, col(count) / resp, np.nan)
        out["nps"] = 100 * (out["promoter_share"] - out["detractor_share"])
        out["revenue"] = col("revenue")
        avg_customers = (s + e) / 2
        arpc = np.where(
            (avg_customers > 0) & has_revenue, col("revenue") / avg_customers / months, np.nan
        )
        out["arpc_month"] = arpc
        churn = out["churn_rate"].to_numpy()
        monthly = 1 - np.power(1 - churn, 1 / months)
        out["monthly_churn"] = monthly
    out["clv"], out["clv_note"] = _clv(arpc, monthly, gross_margin)
    # The churn rate's interval carried through: one lost customer of 77 made a segment's CLV
    # $19,271 beside $8,122 and $1,608, with no sign of how little it rests on.
    with np.errstate(divide="ignore", invalid="ignore"):
        monthly_low = 1 - np.power(1 - out["churn_low"].to_numpy(dtype="float64"), 1 / months)
        monthly_high = 1 - np.power(1 - out["churn_high"].to_numpy(dtype="float64"), 1 / months)
        known = ~np.isnan(out["clv"].to_numpy(dtype="float64"))
        out["clv_low"] = np.where(known, arpc * gross_margin / monthly_high, np.nan)
        high = arpc * gross_margin / monthly_low
        out["clv_high"] = np.where(known & np.isfinite(high), high, np.nan)
    if not has_revenue:
        out["clv_note"] = "no revenue data"
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- cohort retention


@dataclass(frozen=True)
class CohortRetention:
    """A cohort retention result: the tidy table plus what it was computed with.

    ``table`` columns: cohort (start of the cohort period), segment (when ``by`` was given),
    period (int index, or the bracket label), cohort_size, eligible (customers whose period was
    observed), active, retention = active / eligible, retention_low / retention_high (Wilson),
    small_group (cohort_size < min_group_size).
    """

    table: pd.DataFrame
    mode: str
    cohort_freq: str
    period: str
    anchor: str
    segment: str | None
    observed_until: pd.Timestamp
    min_group_size: int = 30
    observed_from: pd.Timestamp | None = None

    @property
    def pivot(self) -> pd.DataFrame:
        """Retention as cohort rows x period columns (segment, cohort rows with a segment)."""
        index = ["segment", "cohort"] if self.segment else ["cohort"]
        return self.table.pivot(index=index, columns="period", values="retention")

    @property
    def sizes(self) -> pd.Series:
        """Cohort sizes, indexed like the pivot's rows."""
        index = ["segment", "cohort"] if self.segment else ["cohort"]
        return self.table.groupby(index, sort=True)["cohort_size"].first()


def parse_brackets(text: str) -> tuple[tuple[int, int], ...]:
    """Brackets from text such as '1-7,8-30,31-90' (a single number is a one-day bracket)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise MetricsInputError(f"bracket '{part}' is not a day range such as 8-30") from None
        out.append((a, b))
    if not out:
        raise MetricsInputError(f"no brackets in {text!r}; expected day ranges such as 1-7,8-30")
    return tuple(out)


def _check_brackets(brackets: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    checked = tuple((int(a), int(b)) for a, b in brackets)
    for a, b in checked:
        if a < 0 or b < a:
            raise MetricsInputError(f"bracket {a}-{b}: days must satisfy 0 <= first <= last")
    if not checked:
        raise MetricsInputError("at least one bracket is needed")
    return checked


def month_of(instant: pd.Timestamp, months_after: int = 0) -> pd.Timestamp:
    """The first instant of the month holding `instant`, `months_after` months on, in its zone:
    where cohorts start in a recorded history (the month of its first record, or the next one,
    whose every period the data covers)."""
    start = pd.Timestamp(instant)
    naive = start.tz_localize(None) if start.tzinfo is not None else start
    first = (naive.to_period("M") + months_after).to_timestamp()
    return first.tz_localize(start.tzinfo) if start.tzinfo is not None else first


def cohort_retention(
    tables: Tables,
    *,
    mode: RetentionMode = "n-day",
    cohort_freq: PeriodUnit = "month",
    period: PeriodUnit | None = None,
    anchor: Anchor = "signup",
    brackets: Sequence[tuple[int, int]] | None = None,
    by: str | None = None,
    activity_events: Sequence[str] | None = None,
    cohorts_from: Instant | None = None,
    cohorts_to: Instant | None = None,
    observed_until: Instant | None = None,
    partial_periods: bool = False,
    max_period: int | None = None,
    min_group_size: int = 30,
    scores: pd.DataFrame | None = None,
    confidence: float = 0.95,
    observed_from: Instant | None = None,
) -> CohortRetention:
    """Cohort retention table, vectorized over events (no per-customer Python loop).

    - Each customer starts at its signup (``anchor='signup'``) or its first qualifying activity
      (``'first_activity'``); its cohort is the calendar ``cohort_freq`` period of that start
      (weeks start on Monday). ``cohorts_from`` / ``cohorts_to`` keep cohorts starting in that
      range (inclusive).
    - An activity's period index is the number of calendar ``period`` units (default: the
      cohort unit) between the customer's own start and the activity: day 0 is the start day,
      month 1 the next calendar month. Activity in a period before the start period is ignored
      (activity earlier within the start period counts for period 0).
    - n-day: share of the cohort active in exactly period N. unbounded: active in period N or
      any later period. bracket: active at any time within a bracket's day range [a, b] (days
      since the start, inclusive), ``period`` is then the bracket label such as '8-30'.
    - Censoring: data end at ``observed_until`` (default: the latest timestamp in the tables);
      later activity is ignored, as if not yet recorded. Data start at ``observed_from``
      (default: midnight of the activity table's first record, see :func:`data_coverage`);
      earlier activity is ignored. A customer counts (``eligible``) in period N only when the
      whole period lies within [observed_from, observed_until] (bracket: its days);
      ``partial_periods=True`` counts a period that overlaps it. Cells nobody is eligible for
      are absent (missing in the pivot: a cohort from before the data's first record is not
      measured there, rather than shown as 0 %); a cohort nobody returns to shows 0, not nothing.
    """
    if mode not in RETENTION_MODES:
        raise MetricsInputError(f"mode must be one of {RETENTION_MODES}, got {mode!r}")
    period = period or cohort_freq
    for name, value in (("cohort_freq", cohort_freq), ("period", period)):
        if value not in PERIOD_UNITS:
            raise MetricsInputError(f"{name} must be one of {PERIOD_UNITS}, got {value!r}")
    if anchor not in ANCHORS:
        raise MetricsInputError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    if max_period is not None and max_period < 0:
        raise MetricsInputError(f"max_period must be >= 0, got {max_period}")
    bracket_list = _check_brackets(brackets or DEFAULT_BRACKETS) if mode == "bracket" else ()
    since, until = _observed_span(tables, observed_from, observed_until)
    n = len(tables.customers)
    codes, at, start, in_scope = _starts_and_events(tables, anchor, activity_events, since, until)
    cohort_ord = np.zeros(n, dtype="int64")
    cohort_ord[in_scope] = _unit_ordinal(start[in_scope], cohort_freq)
    cohort_start = np.full(n, _NEVER, dtype="int64")
    cohort_start[in_scope] = _ordinal_start(cohort_ord[in_scope], cohort_freq).asi8
    if cohorts_from is not None:
        in_scope &= cohort_start >= _timestamp(cohorts_from, "cohorts_from").value
    if cohorts_to is not None:
        in_scope &= cohort_start <= _timestamp(cohorts_to, "cohorts_to").value

    # group = (cohort, segment) code per customer; -1 outside the requested cohorts
    if by is not None:
        seg_codes, seg_names = _segment_codes(tables, by, scores)
    else:
        seg_codes, seg_names = np.zeros(n, dtype="int64"), np.array([ALL], dtype=object)
    n_seg = len(seg_names)
    coh_names, coh_codes = np.unique(cohort_ord[in_scope], return_inverse=True)
    group = np.full(n, -1, dtype="int64")
    group[in_scope] = coh_codes.astype("int64") * n_seg + seg_codes[in_scope]
    n_groups = len(coh_names) * n_seg
    cohort_size = np.bincount(group[in_scope], minlength=n_groups)

    ev_day = np.floor_divide(at, _NS_PER_DAY)
    if mode == "bracket":
        labels, eligible, active = _bracket_counts(
            codes,
            ev_day,
            start,
            group,
            in_scope,
            n_groups,
            bracket_list,
            (since, until),
            partial_periods,
        )
    else:
        labels, eligible, active = _period_counts(
            codes,
            ev_day,
            start,
            group,
            in_scope,
            n_groups,
            period,
            (since, until),
            partial_periods,
            max_period,
            mode,
        )

    g_idx, p_idx = np.nonzero(eligible > 0)
    low, high = wilson_interval(active[g_idx, p_idx], eligible[g_idx, p_idx], confidence)
    table = pd.DataFrame({"cohort": _ordinal_start(coh_names, cohort_freq)[g_idx // n_seg]})
    if by is not None:
        table["segment"] = seg_names[g_idx % n_seg].astype("str")
    table["period"] = labels[p_idx]
    if mode == "bracket":
        table["period"] = pd.Categorical(table["period"], categories=list(labels), ordered=True)
    table["cohort_size"] = cohort_size[g_idx]
    table["eligible"] = eligible[g_idx, p_idx]
    table["active"] = active[g_idx, p_idx]
    table["retention"] = table["active"] / table["eligible"]
    table["retention_low"] = low
    table["retention_high"] = high
    table["small_group"] = table["cohort_size"] < min_group_size
    return CohortRetention(
        table=table,
        mode=mode,
        cohort_freq=cohort_freq,
        period="day" if mode == "bracket" else period,
        anchor=anchor,
        segment=by,
        observed_until=until,
        min_group_size=min_group_size,
        observed_from=since,
    )


def _observed_span(
    tables: Tables, observed_from: Instant | None, observed_until: Instant | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[since, until]: the given bounds, else data_coverage's span (whole days: a purchase log
    cut at 1 May 1997, its last record on 30 April, had left April out of every cohort)."""
    until = (
        _timestamp(observed_until, "observed_until")
        if observed_until is not None
        else data_coverage(tables)[1]
    )
    since = (
        _timestamp(observed_from, "observed_from")
        if observed_from is not None
        else data_coverage(tables)[0]
    )
    if since > until:
        raise MetricsInputError(
            f"observed_from ({since}) is after observed_until ({until}): nothing is observed"
        )
    return since, until


def _starts_and_events(
    tables: Tables,
    anchor: str,
    activity_events: Sequence[str] | None,
    since: pd.Timestamp,
    until: pd.Timestamp,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The observed qualifying events (customer codes, ns) and each customer's start (signup or
    first observed activity, ns) with whether it has one (in_scope)."""
    customers = tables.customers
    n = len(customers)
    act = tables.activity
    codes = _customer_codes(act["customer_id"], pd.Index(customers["customer_id"]))
    at = _ns(act["at"])
    # nothing outside the observed span is seen
    keep = (codes >= 0) & (at <= until.value) & (at >= since.value)
    events = _event_mask(act, activity_events)
    if events is not None:
        keep &= events
    if not keep.all():
        codes, at = codes[keep], at[keep]
    if anchor == "signup":
        start = _ns(customers["signup_at"])
        in_scope = np.ones(n, dtype=bool)
    else:
        start = np.full(n, _NEVER, dtype="int64")
        np.minimum.at(start, codes, at)
        in_scope = start != _NEVER
    return codes, at, start, in_scope


def cohorts_left_out(
    tables: Tables,
    cohorts_from: pd.Timestamp,
    anchor: Anchor = "signup",
    activity_events: Sequence[str] | None = None,
) -> tuple[int, int] | None:
    """How many customers start their cohort (as cohort_retention starts them: signup, or the
    first observed qualifying activity) before `cohorts_from`, of how many have a start; None
    when none do. A grocery's page left out its first month's 1,982 of 2,469 households
    without a word."""
    since, until = data_coverage(tables)
    _, _, start, in_scope = _starts_and_events(tables, anchor, activity_events, since, until)
    starts = start[in_scope & (start != np.iinfo(np.int64).min)]  # a NaT signup has no start
    before = int((starts < pd.Timestamp(cohorts_from).value).sum())
    return (before, len(starts)) if before else None


def cohort_cell(
    tables: Tables,
    cohort: Instant,
    period: int | str,
    *,
    mode: RetentionMode = "n-day",
    cohort_freq: PeriodUnit = "month",
    period_unit: PeriodUnit | None = None,
    anchor: Anchor = "signup",
    activity_events: Sequence[str] | None = None,
    observed_from: Instant | None = None,
    observed_until: Instant | None = None,
    partial_periods: bool = False,
) -> pd.DataFrame:
    """The customers behind one cell of :func:`cohort_retention` (same options): customer_id,
    start (signup or first activity), eligible (the data cover the period for them) and active
    (n-day: active in the period; unbounded: in it or later; bracket: within its days). Their
    sums are the cell's eligible and active counts. ``cohort`` is any instant in the cohort
    period (``2024-01`` for January); ``period`` the index, or a bracket label such as '8-30'.
    """
    if mode not in RETENTION_MODES:
        raise MetricsInputError(f"mode must be one of {RETENTION_MODES}, got {mode!r}")
    unit = period_unit or cohort_freq
    since, until = _observed_span(tables, observed_from, observed_until)
    codes, at, start, in_scope = _starts_and_events(tables, anchor, activity_events, since, until)
    target = _instant_ordinal(_timestamp(cohort, "cohort"), cohort_freq)
    member = in_scope.copy()
    member[in_scope] = _unit_ordinal(start[in_scope], cohort_freq) == target
    n = len(start)
    eligible = np.zeros(n, dtype=bool)
    active = np.zeros(n, dtype=bool)
    ev_day = np.floor_divide(at, _NS_PER_DAY)
    if mode == "bracket":
        ((a, b),) = parse_brackets(str(period))
        first_day, last_day = _observed_ordinals((since, until), "day", partial_periods)
        start_day = np.zeros(n, dtype="int64")
        start_day[member] = _unit_ordinal(start[member], "day")
        first_seen, last_seen = first_day - start_day, last_day - start_day
        if partial_periods:
            eligible = member & (last_seen >= a) & (first_seen <= b)
        else:
            eligible = member & (last_seen >= b) & (first_seen <= a)
        day = ev_day - start_day[codes]
        active[codes[(day >= a) & (day <= b)]] = True
    else:
        try:
            index = int(period)
        except ValueError:
            raise MetricsInputError(
                f"period must be a whole number for {mode}, got {period!r}"
            ) from None
        first_ord, last_ord = _observed_ordinals((since, until), unit, partial_periods)
        start_ord = np.zeros(n, dtype="int64")
        start_ord[member] = _unit_ordinal(start[member], unit)
        eligible = member & (first_ord - start_ord <= index) & (index <= last_ord - start_ord)
        offset = _days_to_ordinal(ev_day, unit) - start_ord[codes]
        hit = offset == index if mode == "n-day" else offset >= index
        active[codes[hit]] = True
    active &= eligible
    out = pd.DataFrame(
        {
            "customer_id": tables.customers["customer_id"].to_numpy()[member],
            "start": pd.to_datetime(start[member]),
            "eligible": eligible[member],
            "active": active[member],
        }
    )
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)


def _segment_codes(
    tables: Tables, by: str, scores: pd.DataFrame | None
) -> tuple[np.ndarray, np.ndarray]:
    """Segment code per customer and the segment names, as :func:`segment_labels` labels them,
    factorized straight from the column when it is a plain attribute (fast on many customers)."""
    customers = tables.customers
    if by in customers and by not in _RESERVED_COLUMNS:
        codes, uniques = pd.factorize(customers[by], sort=True)
        names = np.asarray(uniques, dtype=object).astype("str").astype(object)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(names), codes)
            names = np.append(names, MISSING_SEGMENT)
        return codes.astype("int64"), names
    labels = segment_labels(tables, [by], scores=scores).iloc[:, 0].to_numpy()
    codes, uniques = pd.factorize(labels, sort=True)
    return codes.astype("int64"), np.asarray(uniques, dtype=object)


def _period_counts(
    codes: np.ndarray,
    ev_day: np.ndarray,
    start: np.ndarray,
    group: np.ndarray,
    in_scope: np.ndarray,
    n_groups: int,
    period: str,
    span: tuple[pd.Timestamp, pd.Timestamp],
    partial: bool,
    max_period: int | None,
    mode: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """eligible and active counts per (group, period index) for n-day and unbounded retention.

    A customer is eligible in the period indices [first_obs, last_obs] that lie within the
    observed span. Events of out-of-scope customers and events before a customer's start
    period fall out on their own (negative keys or reach), so the event arrays are touched
    only a few times.
    """
    n = len(start)
    start_ord = np.zeros(n, dtype="int64")
    start_ord[in_scope] = _unit_ordinal(start[in_scope], period)
    first_ord, last_ord = _observed_ordinals(span, period, partial)
    last_obs = np.where(in_scope, last_ord - start_ord, -1)
    n_periods = int(max(last_obs.max(initial=-1), 0)) + 1
    if max_period is not None:
        n_periods = min(n_periods, max_period + 1)
    obs = np.minimum(last_obs, n_periods - 1)
    first_obs = np.maximum(first_ord - start_ord, 0)
    eligible = _span_counts(group, first_obs, obs, n_groups, n_periods)

    ev_ord = _days_to_ordinal(ev_day, period)
    if mode == "unbounded":
        # retained at N <=> active in some period >= N: only each customer's last period matters
        last_active = np.full(n, np.iinfo(np.int64).min // 2, dtype="int64")
        np.maximum.at(last_active, codes, ev_ord)
        reach = np.minimum(last_active - start_ord, obs)
        active = _span_counts(group, first_obs, reach, n_groups, n_periods)
        return np.arange(n_periods), eligible, active

    # n-day: one key per (period index, customer), period-major, customers ordered by group, so
    # that each (period, group) is a contiguous run of keys; key = idx * n + pos = ev_ord * n +
    # offset[customer], which needs a single gather per event.
    sort_key = np.where(group >= 0, group, n_groups)
    order = np.argsort(sort_key, kind="stable")
    pos = np.empty(n, dtype="int64")
    pos[order] = np.arange(n)
    bounds = np.searchsorted(sort_key[order], np.arange(n_groups + 1), side="left")
    high = int(ev_ord.max(initial=0))
    offset = np.where(in_scope, pos - start_ord * n, -(high + 1) * n - 1)
    key = ev_ord * n + np.take(offset, codes, mode="clip")
    ok = (key >= 0) & (key < n_periods * n) & (ev_ord <= last_ord) & (ev_ord >= first_ord)
    active = _count_runs(key[ok], n, n_periods, bounds)
    return np.arange(n_periods), eligible, active


def _count_runs(keys: np.ndarray, n: int, n_periods: int, bounds: np.ndarray) -> np.ndarray:
    """Distinct keys per (group, period) when key = period * n + pos and groups are pos runs.

    Distinct keys come sorted from a bitmap when it is dense enough (at most ~4 slots per key:
    a scatter and a scan beat a sort), else from a sort; the count in each (period, group) run
    is then a difference of two binary-search positions.
    """
    n_groups = len(bounds) - 1
    if n * n_periods <= max(4 * len(keys), 2**20):
        seen = np.zeros(n * n_periods, dtype=bool)
        seen[keys] = True
        keys = np.flatnonzero(seen)
    else:
        keys = np.sort(keys)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    edges = (np.arange(n_periods)[:, None] * n + bounds[None, :]).ravel()
    at = np.searchsorted(keys, edges).reshape(n_periods, n_groups + 1)
    return np.diff(at, axis=1).T


def _observed_ordinals(
    span: tuple[pd.Timestamp, pd.Timestamp], unit: str, partial: bool
) -> tuple[int, int]:
    """The first and last calendar period numbers inside the observed span [since, until]:
    complete periods lie wholly inside it; with ``partial`` a period that overlaps it counts."""
    since, until = span
    # until is inclusive: a period that ends at its last instant (the end of the data's last
    # day, 23:59:59.999999999) is complete
    from_ord = _instant_ordinal(since, unit)
    starts_on_boundary = _ordinal_start(np.array([from_ord]), unit)[0] == since
    first = from_ord if partial or starts_on_boundary else from_ord + 1
    if partial:
        return first, _instant_ordinal(until, unit)
    return first, _instant_ordinal(until + pd.Timedelta(1, "ns"), unit) - 1


def _span_counts(
    group: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_groups: int, n_periods: int
) -> np.ndarray:
    """Per (group, N): how many customers have lo <= N <= hi (hi < lo counts nowhere), from a
    difference array: +1 at lo, -1 after hi, summed along the periods."""
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, n_periods - 1)
    ok = (group >= 0) & (hi >= lo)
    width = n_periods + 1
    size = n_groups * width
    g = group[ok] * width
    diff = np.bincount(g + lo[ok], minlength=size) - np.bincount(g + hi[ok] + 1, minlength=size)
    return np.cumsum(diff.reshape(n_groups, width), axis=1)[:, :n_periods]


def _bracket_counts(
    codes: np.ndarray,
    ev_day: np.ndarray,
    start: np.ndarray,
    group: np.ndarray,
    in_scope: np.ndarray,
    n_groups: int,
    brackets: tuple[tuple[int, int], ...],
    span: tuple[pd.Timestamp, pd.Timestamp],
    partial: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """eligible and active counts per (group, bracket): active on any day in [a, b] since start;
    eligible when the bracket's days lie within the observed span (partial: overlap it)."""
    n = len(start)
    start_day = np.zeros(n, dtype="int64")
    start_day[in_scope] = _unit_ordinal(start[in_scope], "day")
    first_day, last_day = _observed_ordinals(span, "day", partial)
    last_seen = last_day - start_day  # last observed day since start
    first_seen = first_day - start_day  # first observed day since start
    day = ev_day - np.take(start_day, codes, mode="clip")
    eligible = np.zeros((n_groups, len(brackets)), dtype="int64")
    active = np.zeros((n_groups, len(brackets)), dtype="int64")
    for k, (a, b) in enumerate(brackets):
        if partial:
            seen = (last_seen >= a) & (first_seen <= b)
        else:
            seen = (last_seen >= b) & (first_seen <= a)
        seen &= in_scope
        hit = np.zeros(n, dtype=bool)
        hit[codes[(day >= a) & (day <= b)]] = True
        eligible[:, k] = np.bincount(group[seen], minlength=n_groups)
        active[:, k] = np.bincount(group[seen & hit], minlength=n_groups)
    labels = np.array([f"{a}-{b}" for a, b in brackets], dtype=object)
    return labels, eligible, active


def retention_curve(result: CohortRetention, confidence: float = 0.95) -> pd.DataFrame:
    """Retention by period pooled over cohorts (sum of active / sum of eligible), per segment."""
    keys = ["segment", "period"] if result.segment else ["period"]
    sums = (
        result.table.groupby(keys, sort=True, observed=True)[["eligible", "active"]]
        .sum()
        .reset_index()
    )
    sums["retention"] = sums["active"] / sums["eligible"]
    sums["retention_low"], sums["retention_high"] = wilson_interval(
        sums["active"], sums["eligible"], confidence
    )
    return sums


# --------------------------------------------------------------------------- revenue cohorts


@dataclass(frozen=True)
class RevenueRetention:
    """Revenue cohort retention: the tidy table plus the span it observed.

    ``table`` columns: cohort (signup month), period (calendar months since it), cohort_size
    (customers who signed up), customers (those with MRR in the signup month: the base),
    customers_paying (of the base, those with MRR in the period), mrr_start (the base's MRR in
    the signup month), mrr (the base's MRR in the period: expansion, contraction and churn
    included, customers who started paying later left out, as in NRR), retention = mrr /
    mrr_start. Only cells the data cover are rows.
    """

    table: pd.DataFrame
    observed_from: pd.Timestamp
    observed_until: pd.Timestamp

    @property
    def pivot(self) -> pd.DataFrame:
        """Revenue retention as cohort rows x period columns (missing: not observed)."""
        return self.table.pivot(index="cohort", columns="period", values="retention")


FIRST_PAID_MONTHS = 1  # a customer's first paid month may follow the signup month by this many


def revenue_cohort_retention(
    tables: Tables,
    *,
    cohorts_from: Instant | None = None,
    cohorts_to: Instant | None = None,
    observed_from: Instant | None = None,
    observed_until: Instant | None = None,
    partial_periods: bool = False,
    max_period: int | None = None,
) -> RevenueRetention:
    """Per signup-month cohort, the share of the cohort's starting MRR kept in each later month,
    net of expansion: NRR (DESIGN.md) with t0 a customer's first paid month and t1 the month N
    later.

    MRR as in :func:`monthly_mrr` (invoices by the months they pay for). The base is the
    cohort's customers with MRR in their signup month or the next (FIRST_PAID_MONTHS: a trial,
    or a gym's first monthly debit on the 1st after joining; counted from the signup month
    alone, a gym's base was its 83 yearly payers of 576 members), each with the MRR of that
    first paid month, and period N is N months after it. A cohort's period counts when every
    base customer's month N is covered; a cohort whose signup month the data do not cover has
    no base and is left out. A month counts when the data cover it whole (``partial_periods``:
    when they overlap it); invoices dated outside [observed_from, observed_until] (default:
    :func:`data_coverage` and the data's last record) are not seen.
    """
    if max_period is not None and max_period < 0:
        raise MetricsInputError(f"max_period must be >= 0, got {max_period}")
    since, until = _observed_span(tables, observed_from, observed_until)
    first, last = _observed_ordinals((since, until), "month", partial_periods)
    customers = tables.customers
    signup_month = _unit_ordinal(_ns(customers["signup_at"]), "month")
    cohort_start = _ordinal_start(signup_month, "month")
    in_scope = (signup_month >= first) & (signup_month <= last)
    if cohorts_from is not None:
        in_scope &= cohort_start >= _timestamp(cohorts_from, "cohorts_from")
    if cohorts_to is not None:
        in_scope &= cohort_start <= _timestamp(cohorts_to, "cohorts_to")

    rev = tables.revenue
    inv = rev.loc[_invoice_mask(rev)]
    row, month, amount = _mrr_rows(inv)
    codes = _customer_codes(inv["customer_id"], pd.Index(customers["customer_id"]))[row]
    at = _ns(inv["at"])[row]
    ok = (codes >= 0) & (at >= since.value) & (at <= until.value) & (month <= last)
    codes, month, amount = codes[ok], month[ok], amount[ok]
    since_signup = month - signup_month[codes]
    ok = in_scope[codes] & (since_signup >= 0)
    monthly = (
        pd.DataFrame({"customer": codes[ok], "month": month[ok], "mrr": amount[ok]})
        .groupby(["customer", "month"], sort=False)["mrr"]
        .sum()
        .reset_index()
    )
    paid = monthly[monthly["mrr"] > 0]
    first_paid = paid.groupby("customer")["month"].min()
    delay = first_paid - signup_month[first_paid.index.to_numpy()]
    delay = delay[delay <= FIRST_PAID_MONTHS]
    first_paid = first_paid[delay.index]
    per = monthly[monthly["customer"].isin(first_paid.index)]
    per = per.assign(period=per["month"] - per["customer"].map(first_paid))
    per = per[per["period"] >= 0]
    if max_period is not None:
        per = per[per["period"] <= max_period]
    base = per.loc[per["period"] == 0, ["customer", "mrr"]]
    per = per.assign(cohort=signup_month[per["customer"].to_numpy()], paying=per["mrr"] > 0)
    base = base.assign(
        cohort=signup_month[base["customer"].to_numpy()], delay=base["customer"].map(delay)
    )
    sizes = pd.Series(signup_month[in_scope]).value_counts()
    starts = base.groupby("cohort").agg(
        customers=("customer", "size"), mrr_start=("mrr", "sum"), delay=("delay", "max")
    )
    kept = per.groupby(["cohort", "period"]).agg(
        customers_paying=("paying", "sum"), mrr=("mrr", "sum")
    )
    rows = []
    for cohort, (n_base, mrr_start, latest_start) in starts.iterrows():
        top = last - int(cohort) - int(latest_start)
        if max_period is not None:
            top = min(top, max_period)
        for period in range(top + 1):
            paying, mrr = (
                kept.loc[(cohort, period)].tolist() if (cohort, period) in kept.index else (0, 0.0)
            )
            rows.append((cohort, period, int(sizes[cohort]), n_base, paying, mrr_start, mrr))
    columns = [
        "cohort", "period", "cohort_size", "customers", "customers_paying", "mrr_start", "mrr",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns).astype(
        {"cohort": "int64", "period": "int64", "customers": "int64", "customers_paying": "int64"}
    )
    table["cohort"] = _ordinal_start(table["cohort"].to_numpy(), "month")
    table["retention"] = table["mrr"] / table["mrr_start"]
    return RevenueRetention(table=table, observed_from=since, observed_until=until)


# --------------------------------------------------------------------------- risk view


def risk_view(
    scores: pd.DataFrame,
    tables: Tables,
    by: Sequence[SegmentSpec] = (),
    *,
    revenue_column: str = "monthly_revenue",
    bands: Sequence[str] = ("high", "medium", "low"),
) -> pd.DataFrame:
    """Predicted risk per segment, from one scoring run: customers scored, mean risk, expected
    churners (sum of probabilities), revenue at risk (sum of probability x monthly revenue) and
    the share of customers in each risk band. `scores` has customer_id, churn_probability,
    risk_band and `revenue_column`; segments as in segment_labels (risk_band included)."""
    missing = [
        c
        for c in ("customer_id", "churn_probability", "risk_band", revenue_column)
        if c not in scores
    ]
    if missing:
        raise MetricsInputError(f"scores lack the columns {missing}")
    labels = segment_labels(tables, by, scores=scores).reindex(scores["customer_id"].to_numpy())
    labels = labels.fillna(MISSING_SEGMENT).astype(str)
    return risk_from_sums(segment_sums(risk_parts(scores, revenue_column, bands), labels), bands)


def risk_parts(
    scores: pd.DataFrame,
    revenue_column: str = "monthly_revenue",
    bands: Sequence[str] = ("high", "medium", "low"),
) -> pd.DataFrame:
    """Per scored customer, the additive parts of the risk view (rows aligned with scores)."""
    p = scores["churn_probability"].to_numpy(dtype=float)
    band = scores["risk_band"].astype(str).to_numpy()
    parts = pd.DataFrame(
        {
            "customers_scored": np.ones(len(scores), dtype="int64"),
            "expected_churners": p,
            "revenue_at_risk": p * scores[revenue_column].to_numpy(dtype=float),
        }
    )
    for name in bands:
        parts[f"band_{name}"] = (band == name).astype("int64")
    return parts


def risk_from_sums(
    sums: pd.DataFrame, bands: Sequence[str] = ("high", "medium", "low")
) -> pd.DataFrame:
    """The risk view from segment sums of risk_parts: customers scored, mean risk, expected
    churners, revenue at risk and the share of each band."""
    n = sums["customers_scored"].to_numpy(dtype=float)
    out = pd.DataFrame({"dimension": sums["dimension"], "segment": sums["segment"]})
    out["customers_scored"] = n.astype("int64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mean_risk"] = np.where(n > 0, sums["expected_churners"].to_numpy(float) / n, np.nan)
        out["expected_churners"] = sums["expected_churners"].to_numpy(float)
        out["revenue_at_risk"] = sums["revenue_at_risk"].to_numpy(float)
        for name in bands:
            out[f"share_{name}"] = np.where(n > 0, sums[f"band_{name}"].to_numpy(float) / n, np.nan)
    return out.reset_index(drop=True)
