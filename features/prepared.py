"""Array views of the contract's tables that the point-in-time computations share.

Every row of activity, feedback and revenue is reduced once to integer arrays: the position of
its customer in the customers table, its time in nanoseconds, and coded categories. Features
and labels as of any date are then masks and bincounts over these arrays, which is what makes
one date cheap and many dates affordable. Cached on the Tables object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import Tables

DAY_NS = 86_400 * 10**9
NAT = np.iinfo(np.int64).min
NO_EVENT = np.iinfo(np.int64).max  # first_at of a customer without events

NEGATIVE_WORDS = (
    # English and German words that mark a complaint in a free-text comment.
    "expensive", "cancel", "slow", "bug", "broken", "crash", "never answered", "no answer",
    "waiting", "disappointed", "terrible", "awful", "bad", "worse", "worst", "useless",
    "frustrat", "annoy", "unhappy", "switch", "competitor", "refund", "complain", "poor",
    "teuer", "kündig", "langsam", "fehler", "absturz", "keine antwort", "enttäusch",
    "schlecht", "nutzlos", "ärger", "unzufrieden", "wechsel", "beschwerde",
)  # fmt: skip
_NEGATIVE_RE = re.compile("|".join(re.escape(w) for w in NEGATIVE_WORDS), re.IGNORECASE)


def as_of_timestamp(as_of: object) -> pd.Timestamp:
    """An observation date as a midnight Timestamp; times of day are rejected, not rounded."""
    if isinstance(as_of, str) and not _ISO_DATE.match(as_of.strip()):
        raise ValueError(f"observation date {as_of!r} is not a date (use YYYY-MM-DD)")
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as err:
        raise ValueError(f"observation date {as_of!r} is not a date (use YYYY-MM-DD)") from err
    if ts is pd.NaT:
        raise ValueError("observation date is missing")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if not pd.Timestamp("1900-01-01") <= ts <= pd.Timestamp("2200-01-01"):
        raise ValueError(f"observation date {as_of!r} is outside the years 1900-2200")
    if ts != ts.normalize():
        raise ValueError(f"observation date {as_of!r} has a time of day; give a date (YYYY-MM-DD)")
    return ts.as_unit("ns")


_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


def to_ns(values: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds, NaT as the int64 minimum."""
    return values.to_numpy(dtype="datetime64[ns]").view(np.int64)


def comment_flags(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row: has a comment (non-blank text), and the comment contains a complaint word
    (English or German lexicon). Only the rows with text are searched: most have none."""
    present = text.notna().to_numpy(dtype=bool)
    has_text = np.zeros(len(text), dtype=bool)
    negative = np.zeros(len(text), dtype=bool)
    if present.any():
        words = text[present].astype("str")
        has_text[present] = (words.str.strip() != "").to_numpy(dtype=bool)
        negative[present] = words.str.contains(_NEGATIVE_RE).to_numpy(dtype=bool)
    return has_text, negative


def customer_positions(customers: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    """Position in the customers table of each id; ids must all be known.

    int32 below 2**31 customers (int64 above). Categorical ids whose categories are the
    customers' ids in order (how the demo data and time-ordered exports are written) need no
    lookup at all: their codes are the positions, shared, not copied."""
    index = pd.Index(customers["customer_id"])
    dtype = np.int32 if len(index) < 2**31 else np.int64
    if isinstance(ids.dtype, pd.CategoricalDtype):
        categories = ids.cat.categories
        codes = ids.array.codes  # the Categorical's own codes: .cat.codes copies them
        if len(categories) <= len(index) and categories.equals(index[: len(categories)]):
            return codes.astype(dtype, copy=False)  # compared in order: no hash lookup needed
        return index.get_indexer(categories).astype(dtype)[codes]
    return index.get_indexer(ids).astype(dtype)


def _codes_by_name(values: pd.Series, codes: dict[str, int], default: int = -1) -> np.ndarray:
    """Fixed integer codes for a text column; categorical columns are mapped by category only."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = np.array(
            [codes.get(str(c), default) for c in values.cat.categories] + [default], dtype=np.int64
        )
        return lookup[values.array.codes]  # code -1 (missing) picks the default at the end
    return values.astype("str").map(codes).fillna(default).to_numpy(dtype="int64")


def _coded(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the category names of a text column."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # the codes as they are (often int8)
        return values.array.codes, np.asarray(values.cat.categories, dtype=object)
    codes, names = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(names, dtype=object)


@dataclass
class ActivityArrays:
    """Activity rows as arrays; customer positions and event codes are small integers (int32,
    int8...): cast before arithmetic that could overflow them."""

    customer: np.ndarray
    at: np.ndarray
    event: np.ndarray
    event_names: np.ndarray
    value: np.ndarray  # missing values as 0
    time_ordered: bool  # at never decreases: time windows are row ranges (searchsorted)
    first_at: np.ndarray  # per customer: time of the first event, NO_EVENT where none


@dataclass
class RevenueArrays:
    """Revenue rows sorted by time; change is the amount minus the customer's previous invoice."""

    customer: np.ndarray
    at: np.ndarray
    amount: np.ndarray
    is_payment: np.ndarray
    is_refund: np.ndarray
    is_failed: np.ndarray
    change: np.ndarray  # NaN for a customer's first payment and for non-payments


@dataclass
class FeedbackArrays:
    """Feedback rows sorted by time, split by kind."""

    customer: np.ndarray
    at: np.ndarray
    kind: np.ndarray  # index into FEEDBACK_KINDS order: nps, csat, review, ticket
    score: np.ndarray
    resolved_at: np.ndarray
    has_text: np.ndarray
    negative_text: np.ndarray


@dataclass
class Prepared:
    n_customers: int
    signup_at: np.ndarray
    churned_at: np.ndarray
    activity: ActivityArrays
    revenue: RevenueArrays
    feedback: FeedbackArrays


def prepare(tables: Tables) -> Prepared:
    """The array form of the tables, computed once per Tables object and cached on it."""
    cached = tables.cache.get("prepared")
    if cached is not None:
        return cached
    customers = tables.customers
    churned = (
        customers["churned_at"]
        if "churned_at" in customers
        else pd.Series(pd.NaT, index=customers.index)
    )
    prepared = Prepared(
        n_customers=len(customers),
        signup_at=to_ns(customers["signup_at"]),
        churned_at=to_ns(churned.astype("datetime64[ns]")),
        activity=_prepare_activity(tables),
        revenue=_prepare_revenue(tables),
        feedback=_prepare_feedback(tables),
    )
    tables.cache["prepared"] = prepared
    return prepared


def _prepare_activity(tables: Tables) -> ActivityArrays:
    """Views of the activity columns where possible: 10M events should not be copied."""
    act = tables.activity
    at = to_ns(act["at"])
    event, names = _coded(act["event"])
    if "value" in act:
        value = act["value"].to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(value).any():
            value = np.nan_to_num(value, nan=0.0)
    else:
        value = np.zeros(len(act))
    customer = customer_positions(tables.customers, act["customer_id"])
    first_at = np.full(len(tables.customers), NO_EVENT, dtype=np.int64)
    reduce_at(np.minimum, first_at, customer, at, slice(None))
    return ActivityArrays(
        customer=customer,
        at=at,
        event=event,
        event_names=names,
        value=value,
        time_ordered=is_time_ordered(at),
        first_at=first_at,
    )


BLOCK_ROWS = 1 << 20


def reduce_at(
    func: np.ufunc, out: np.ndarray, customer: np.ndarray, at: np.ndarray, rows: slice | np.ndarray
) -> None:
    """func.at(out, customer[rows], at[rows]) for an order-free func (maximum, minimum); a row
    range goes in blocks of 1M rows, so the int64 copy of the positions ufunc.at makes stays
    small and reused instead of a fresh 80 MB for 10M events."""
    if not isinstance(rows, slice):
        func.at(out, customer[rows], at[rows])
        return
    start, stop, _ = rows.indices(len(at))
    for low in range(start, stop, BLOCK_ROWS):
        high = min(low + BLOCK_ROWS, stop)
        func.at(out, customer[low:high], at[low:high])


def is_time_ordered(at: np.ndarray) -> bool:
    """True when the int64 times never decrease (event logs are usually written that way)."""
    return bool(len(at) < 2 or (at[1:] >= at[:-1]).all())


def _by_time(df: pd.DataFrame) -> pd.DataFrame:
    """The rows in time order (stable); the frame itself when they already are."""
    return df if df["at"].is_monotonic_increasing else df.sort_values("at", kind="stable")


def _prepare_revenue(tables: Tables) -> RevenueArrays:
    rev = _by_time(tables.revenue)
    customer = customer_positions(tables.customers, rev["customer_id"])
    # A missing kind is an invoice: only refunds and failed payments are told apart.
    kind = (
        _codes_by_name(rev["kind"], {"refund": 1, "failed_payment": 2}, 0)
        if "kind" in rev
        else np.zeros(len(rev), dtype=np.int64)
    )
    is_failed = kind == 2
    is_refund = kind == 1
    is_payment = ~is_failed & ~is_refund
    amount = rev["amount"].to_numpy(dtype="float64")
    # Previous payment of the same customer, in time order: upgrades and downgrades.
    change = np.full(len(rev), np.nan)
    pay_idx = np.flatnonzero(is_payment)
    if len(pay_idx):
        paid = amount[pay_idx]
        # The customer's payment before (rows are in time order): a hashed group-by shift.
        previous = pd.Series(paid).groupby(customer[pay_idx], sort=False).shift().to_numpy()
        change[pay_idx] = paid - previous  # NaN for each customer's first payment
    return RevenueArrays(
        customer=customer,
        at=to_ns(rev["at"]),
        amount=amount,
        is_payment=is_payment,
        is_refund=is_refund,
        is_failed=is_failed,
        change=change,
    )


def _prepare_feedback(tables: Tables) -> FeedbackArrays:
    fb = _by_time(tables.feedback)
    kinds = {"nps": 0, "csat": 1, "review": 2, "ticket": 3}
    kind = _codes_by_name(fb["kind"], kinds)
    score = (
        fb["score"].to_numpy(dtype="float64", na_value=np.nan)
        if "score" in fb
        else np.full(len(fb), np.nan)
    )
    resolved = (
        to_ns(fb["resolved_at"]) if "resolved_at" in fb else np.full(len(fb), NAT, dtype=np.int64)
    )
    if "text" in fb:
        has_text, negative = comment_flags(fb["text"])
    else:
        has_text = negative = np.zeros(len(fb), dtype=bool)
    return FeedbackArrays(
        customer=customer_positions(tables.customers, fb["customer_id"]),
        at=to_ns(fb["at"]),
        kind=kind,
        score=score,
        resolved_at=resolved,
        has_text=has_text,
        negative_text=negative,
    )
