"""Array views of the contract's tables that the point-in-time computations share.

Every row of activity, feedback and revenue is reduced once to integer arrays: the position of
its customer in the customers table, its time in nanoseconds, and coded categories. Features
and labels as of any date are then masks and bincounts over these arrays, which is what makes
one date cheap and many dates affordable. Cached on the Tables object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract import Tables

DAY_NS = 86_400 * 10**9
NAT = np.iinfo(np.int64).min
NO_EVENT = np.iinfo(np.int64).max  # first_at of a customer without events

NEGATIVE_WORDS = (
    # Words that mark a complaint in a free-text comment (a review, a survey answer, a ticket),
    # matched anywhere in it regardless of case: stems and phrases chosen not to occur inside
    # ordinary words ("late" is in "template", "lent" in "excellent": left out).
    # English
    "expensive", "cancel", "slow", "bug", "broken", "crash", "never answered", "no answer",
    "waiting", "disappointed", "terrible", "awful", "bad", "worse", "worst", "useless",
    "frustrat", "annoy", "unhappy", "switch", "competitor", "refund", "complain", "poor",
    "never arrived", "not received", "damaged", "defective", "scam", "rude", "unacceptable",
    "ridiculous",
    # German
    "teuer", "kündig", "langsam", "fehler", "absturz", "keine antwort", "enttäusch",
    "schlecht", "nutzlos", "ärger", "unzufrieden", "wechsel", "beschwerde", "nicht erhalten",
    "kaputt", "defekt", "verspät", "betrug", "unverschämt", "frechheit", "nicht nachvollziehbar",
    "inakzeptabel", "unakzeptabel", "katastroph",
    # Portuguese (a Brazilian marketplace's reviews, with and without accents)
    "não recebi", "nao recebi", "não chegou", "nao chegou", "nunca chegou", "defeito",
    "atrasou", "atrasad", "atraso", "péssim", "pessim", "ruim", "demorou", "não recomendo",
    "nao recomendo", "devolv", "devoluç", "devoluc", "reembolso", "reclama", "insatisf",
    "decepcion", "quebrad", "errado",
    # Spanish
    "no llegó", "no llego", "nunca llegó", "nunca llego", "defectuos", "no recomiendo",
    "queja", "estafa", "pésimo", "malísim",
    # French
    "déçu", "jamais reçu", "pas reçu", "pas recu", "remboursement", "arnaque", "mauvais",
    "résili", "plainte", "en retard", "défectueu", "cassé",
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
    (NEGATIVE_WORDS: English, German, Portuguese, Spanish and French). Only the rows with text
    are searched: most have none."""
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
    # activity.user_id: per row, the code of its (customer, user) pair; rows without a user
    # get the extra last code. pair_customer: each pair's customer position, n_customers for
    # the extra code (a bin to drop). None without a user_id column.
    user_pair: np.ndarray | None = None
    pair_customer: np.ndarray | None = None


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
    period_end: np.ndarray  # int64 ns: when the paid period ends; NAT where not given
    # Per payment, the customer's next payment (amount; time, NAT where none) and the amount two
    # payments back (NaN where none): whether a change held (features.signals' level shifts).
    next_amount: np.ndarray | None = None
    next_at: np.ndarray | None = None
    amount_two_back: np.ndarray | None = None


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
class ActiveDays:
    """The distinct days with qualifying activity of every customer, over the whole data, for
    whole-history signals as of any date (see active_days). Built once per set of qualifying
    events; as of T, a customer's days before T are a prefix of its pairs.

    Days are whole days since day0 (UTC midnights). Gaps are the days between two consecutive
    active days of a customer, listed by (customer, gap length), each with the position in
    the customer's pairs of the later of its two days."""

    day0: int
    span: int  # days from day0 to the last active day, + 1
    # customer * span + day, sorted: one entry per (customer, active day); int32 when it fits
    key: np.ndarray
    start: np.ndarray  # int64, n + 1: customer c's pairs are key[start[c]:start[c + 1]]
    # Customer c's gaps are gap_days[gap_start[c]:gap_start[c + 1]], ascending, with gap_pos
    # (>= 1) the position of the later day among its pairs; int16 when the span allows.
    gap_days: np.ndarray
    gap_pos: np.ndarray
    gap_start: np.ndarray  # int64, n + 1
    total_events: np.ndarray  # int64 per customer: qualifying events over the whole data


@dataclass
class Prepared:
    n_customers: int
    signup_at: np.ndarray
    churned_at: np.ndarray
    ended_at: np.ndarray  # the end of service without churn (customers.ended_at); NAT: none
    # when the customer gave notice (customers.cancel_requested_at); NAT: none or not known
    cancel_requested_at: np.ndarray
    activity: ActivityArrays
    revenue: RevenueArrays
    feedback: FeedbackArrays
    # ActiveDays per tuple of qualifying events (None: every event), built on first use.
    active_days: dict = field(default_factory=dict, repr=False)


def prepare(tables: Tables) -> Prepared:
    """The array form of the tables, computed once per Tables object and cached on it."""
    cached = tables.cache.get("prepared")
    if cached is not None:
        return cached
    customers = tables.customers

    def stamps(column: str) -> np.ndarray:
        values = customers[column] if column in customers else pd.Series(pd.NaT, customers.index)
        return to_ns(values.astype("datetime64[ns]"))

    prepared = Prepared(
        n_customers=len(customers),
        signup_at=to_ns(customers["signup_at"]),
        churned_at=stamps("churned_at"),
        ended_at=stamps("ended_at"),
        cancel_requested_at=stamps("cancel_requested_at"),
        activity=_prepare_activity(tables),
        revenue=_prepare_revenue(tables),
        feedback=_prepare_feedback(tables),
    )
    tables.cache["prepared"] = prepared
    return prepared


def qualifying_rows(act: ActivityArrays, events: tuple[str, ...] | None) -> np.ndarray | None:
    """Mask over activity rows whose event is one of `events`; None when every event counts."""
    if events is None:
        return None
    wanted = np.isin(act.event_names, np.asarray(events, dtype=object))
    return wanted[act.event] if len(act.event_names) else np.zeros(len(act.at), dtype=bool)


# Above this many customer-days, distinct days are found by sorting instead of a bitmap.
BITMAP_CELLS = 1 << 27
# Rows per step of the ActiveDays passes: temporaries that stay in cache and reused memory
# (1M-row steps cost 3x more, most of it in touching fresh pages).
CACHE_ROWS = 1 << 16


def active_days(prep: Prepared, events: tuple[str, ...] | None) -> ActiveDays:
    """The ActiveDays of the qualifying events (None: every event), cached on prep.

    Distinct (customer, day) pairs come from a bitmap of customers x days (nonzero cells come
    out sorted, with no sort of the 10M event rows; BITMAP_CELLS bytes at most), or from
    np.unique beyond it. Built in blocks of rows and of customers, stored in the smallest
    integer types, so that memory stays near the size of the result."""
    events = None if events is None else tuple(events)
    cached = prep.active_days.get(events)
    if cached is not None:
        return cached
    act, n = prep.activity, prep.n_customers
    qual = qualifying_rows(act, events)
    day0, last = _day_range(act.at, qual)
    span = max(last - day0 + 1, 1)
    bitmap = n * span <= BITMAP_CELLS
    seen = np.zeros(n * span if bitmap else 0, dtype=bool)
    parts = []
    total = np.zeros(n, dtype=np.int64)
    for low in range(0, len(act.at), CACHE_ROWS):
        cust, days = act.customer[low : low + CACHE_ROWS], act.at[low : low + CACHE_ROWS] // DAY_NS
        if qual is not None:
            keep = qual[low : low + CACHE_ROWS]
            cust, days = cust[keep], days[keep]
        total += np.bincount(cust, minlength=n)
        cells = cust.astype(np.int64) * span + (days - day0)
        if bitmap:
            seen[cells] = True
        else:
            parts.append(np.unique(cells))
    key_type = np.int32 if n * span < 2**31 else np.int64
    if bitmap:
        counts = seen.reshape(n, span).sum(axis=1, dtype=np.int64)
        key = np.empty(int(counts.sum()), dtype=key_type)
        filled, step = 0, max(BLOCK_ROWS // span, 1) * span  # whole customers per block
        for cell in range(0, len(seen), step):
            found = np.flatnonzero(seen[cell : cell + step]) + cell
            key[filled : filled + len(found)] = found
            filled += len(found)
        del seen
    else:
        key = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        counts = np.bincount(key // span, minlength=n)
        key = key.astype(key_type)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    small = next(t for t in (np.int16, np.int32, np.int64) if span < np.iinfo(t).max)
    pieces = [
        _gaps(key, start, span, lo, hi, small) for lo, hi in _customer_chunks(start, CACHE_ROWS)
    ]
    gap_days, gap_pos = (
        np.concatenate([piece[i] for piece in pieces]) if pieces else np.zeros(0, small)
        for i in range(2)
    )
    gap_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.maximum(counts - 1, 0), out=gap_start[1:])
    result = ActiveDays(
        day0=day0,
        span=span,
        key=key,
        start=start,
        gap_days=gap_days,
        gap_pos=gap_pos,
        gap_start=gap_start,
        total_events=total,
    )
    prep.active_days[events] = result
    return result


def active_day_counts(days: ActiveDays, n: int, t: int) -> np.ndarray:
    """Per customer: its active days before T (a prefix of its pairs; T is a midnight)."""
    t_day = t // DAY_NS - days.day0
    bound = np.arange(n, dtype=np.int64) * days.span + min(max(t_day, 0), days.span)
    # bound in the key's own type: searchsorted would otherwise copy the key to int64
    return np.searchsorted(days.key, bound.astype(days.key.dtype), side="left") - days.start[:-1]


def median_gaps(days: ActiveDays, count: np.ndarray) -> np.ndarray:
    """Per customer, the median of the gaps between its first `count` active days (its days
    before T); NaN with fewer than two.

    Gaps are sorted by length within each customer; those before T are the ones whose later day
    is among the customer's first `count` days, count - 1 of them. Listed in that order, the
    valid gaps of all customers are one array in which each customer's middle ones sit at known
    offsets: no sort and no search per date."""
    n = len(count)
    out = np.full(n, np.nan)
    if not len(days.gap_days):
        return out
    limit = np.minimum(count, np.iinfo(days.gap_pos.dtype).max).astype(days.gap_pos.dtype)
    valid = np.flatnonzero(days.gap_pos < np.repeat(limit, np.diff(days.gap_start)))
    m = np.maximum(count - 1, 0)  # valid gaps per customer, in customer order in `valid`
    before = np.cumsum(m) - m  # valid gaps of the customers before
    who = np.flatnonzero(m > 0)
    m, before = m[who], before[who]
    low = days.gap_days[valid[before + (m - 1) // 2]]  # the two middle ones (one when m is odd)
    high = days.gap_days[valid[before + m // 2]]
    out[who] = (low + high.astype("float64")) / 2
    return out


def _customer_chunks(start: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Customer ranges [lo, hi) holding about `rows` pairs each (at least one customer)."""
    chunks, lo, n = [], 0, len(start) - 1
    while lo < n:
        hi = int(np.searchsorted(start, start[lo] + rows, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        chunks.append((lo, hi))
        lo = hi
    return chunks


def _gaps(
    key: np.ndarray, start: np.ndarray, span: int, lo: int, hi: int, dtype: type
) -> tuple[np.ndarray, np.ndarray]:
    """The gaps of customers [lo, hi): consecutive active days of one customer, sorted by
    (customer, gap length), each with the position of its later day among the customer's days.
    One int64 sort of bit-packed (customer, gap, position); no integer division."""
    counts = np.diff(start[lo : hi + 1])
    customer = np.repeat(np.arange(lo, hi, dtype=np.int64), counts)
    day = key[start[lo] : start[hi]].astype(np.int64) - customer * span
    # Sequential passes only: a pair whose customer is the previous pair's closes a gap.
    same = customer[1:] == customer[:-1]
    gap_customer = customer[1:][same]
    gap = np.diff(day)[same]
    pos = (np.arange(len(day)) - np.repeat(start[lo:hi] - start[lo], counts))[1:][same]
    bits = max(span - 1, 1).bit_length()
    if hi < 1 << (62 - 2 * bits):
        packed = np.sort((gap_customer << (2 * bits)) | (gap << bits) | pos)
        low_bits = (1 << bits) - 1
        gap_customer, gap, pos = (
            packed >> (2 * bits),
            (packed >> bits) & low_bits,
            packed & low_bits,
        )
    else:
        order = np.lexsort((gap, gap_customer))
        gap_customer, gap, pos = gap_customer[order], gap[order], pos[order]
    return gap.astype(dtype), pos.astype(dtype)


def _day_range(at: np.ndarray, qual: np.ndarray | None) -> tuple[int, int]:
    """First and last day (days since 1970) of the (qualifying) rows; (0, 0) when none.
    In blocks of rows: no copy of the selected times."""
    low, high = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for start in range(0, len(at), BLOCK_ROWS):
        values = at[start : start + BLOCK_ROWS]
        if qual is not None:
            values = values[qual[start : start + BLOCK_ROWS]]
        if len(values):
            low, high = min(low, int(values.min())), max(high, int(values.max()))
    if low > high:
        return 0, 0
    return low // DAY_NS, high // DAY_NS


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
    pairs = (
        _user_pairs(customer, act["user_id"], len(tables.customers))
        if "user_id" in act
        else (None, None)
    )
    return ActivityArrays(
        customer=customer,
        at=at,
        event=event,
        event_names=names,
        value=value,
        time_ordered=is_time_ordered(at),
        first_at=first_at,
        user_pair=pairs[0],
        pair_customer=pairs[1],
    )


def _user_pairs(
    customer: np.ndarray, user_id: pd.Series, n_customers: int
) -> tuple[np.ndarray, np.ndarray]:
    """(customer, user) pairs coded per row (ActivityArrays.user_pair): a user who acts for two
    accounts counts in each; rows without a user_id get the extra last code."""
    user, _ = _coded(user_id)  # -1: no user_id
    user = user.astype(np.int64)
    has_user = user >= 0
    width = int(user.max(initial=-1)) + 1  # users per customer, so pairs' keys are unique
    codes, keys = pd.factorize(customer[has_user].astype(np.int64) * width + user[has_user])
    pair = np.full(len(user), len(keys), dtype=np.int64)
    pair[has_user] = codes
    pair_customer = np.append(np.asarray(keys, dtype=np.int64) // max(width, 1), n_customers)
    return pair, pair_customer


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
    next_amount, two_back = np.full(len(rev), np.nan), np.full(len(rev), np.nan)
    at_ns = to_ns(rev["at"])
    next_at = np.full(len(rev), NAT, dtype=np.int64)
    pay_idx = np.flatnonzero(is_payment)
    if len(pay_idx):
        paid = amount[pay_idx]
        # The customer's payment before (rows are in time order): a hashed group-by shift.
        grouped = pd.Series(paid).groupby(customer[pay_idx], sort=False)
        previous = grouped.shift().to_numpy()
        change[pay_idx] = paid - previous  # NaN for each customer's first payment
        next_amount[pay_idx] = grouped.shift(-1).to_numpy()
        two_back[pay_idx] = grouped.shift(2).to_numpy()
        # The next payment's position (small, exact as a float), then its time.
        order = pd.Series(np.arange(len(pay_idx), dtype=np.float64))
        later = order.groupby(customer[pay_idx], sort=False).shift(-1).to_numpy()
        has = ~np.isnan(later)
        next_at[pay_idx[has]] = at_ns[pay_idx][later[has].astype(np.int64)]
    return RevenueArrays(
        customer=customer,
        at=at_ns,
        amount=amount,
        is_payment=is_payment,
        is_refund=is_refund,
        is_failed=is_failed,
        change=change,
        next_amount=next_amount,
        next_at=next_at,
        amount_two_back=two_back,
        period_end=(
            to_ns(rev["period_end"])
            if "period_end" in rev
            else np.full(len(rev), NAT, dtype=np.int64)
        ),
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
