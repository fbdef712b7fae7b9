"""Who is scored at T, and the churn label for [T, T + horizon).

Features use rows dated strictly before T and the label window starts at T itself, so nothing
falls between them: daily data stamped at midnight puts a day's purchases (or a cancellation)
on T, and they count in the label."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.config import ChurnDefinition
from features.contract import Tables
from features.prepared import (
    DAY_NS,
    NAT,
    ActiveDays,
    Prepared,
    active_day_counts,
    active_days,
    as_of_timestamp,
    median_gaps,
    prepare,
    qualifying_rows,
)


def _qualifying(prep: Prepared, churn: ChurnDefinition) -> np.ndarray:
    """Mask over activity rows that count as 'still a customer' in non-contractual mode."""
    mask = qualifying_rows(prep.activity, churn.qualifying_events)
    return np.ones(len(prep.activity.at), dtype=bool) if mask is None else mask


def _active_between(
    prep: Prepared, churn: ChurnDefinition, start_ns: int, end_ns: int
) -> np.ndarray:
    """Per customer: any qualifying activity in [start, end)."""
    act = prep.activity
    in_window = (act.at >= start_ns) & (act.at < end_ns) & _qualifying(prep, churn)
    return np.bincount(act.customer[in_window], minlength=prep.n_customers) > 0


# Data-derived lookback: the LOOKBACK_QUANTILE of the customers' median gaps between active
# days, rounded up to whole weeks, within LOOKBACK_RANGE days; DEFAULT_LOOKBACK_DAYS when no
# customer has two active days yet; never shorter than the horizon.
LOOKBACK_QUANTILE = 0.9
LOOKBACK_RANGE = (28, 365)
DEFAULT_LOOKBACK_DAYS = 90


# The share of returning buyers the lookback should hold: a customer whose next qualifying event
# comes after a pause longer than the lookback is "churned already" when scored in that pause.
RETURN_QUANTILE = 0.95


def lookback_from_quantile(
    gap_quantile: float, horizon_days: int = 0, return_quantile: float = float("nan")
) -> int:
    """A lookback in days from a high quantile of typical gaps: whole weeks, rounded up, within
    LOOKBACK_RANGE (NaN: DEFAULT_LOOKBACK_DAYS), and at least the horizon.

    Why the horizon: gaps longer than the history cannot be seen, so months of history make
    the typical gap look short. A shop with 6 months of data got 35 days where its full
    history gave 105 (horizon 90), and left unscored, as "churned already", buyers whose last
    order was 35 to 90 days ago: 20 to 37 % of those 30 to 60 days out bought again within
    the horizon, 30 % of the next quarter's buyers were not scored. A customer who bought
    within the last horizon is as current as the label's own window.

    return_quantile (RETURN_QUANTILE of returning_recency, in days; NaN: not measured): the
    lookback also holds the pause after which that share of the customers who came back did
    so. Typical gaps say how often regular customers buy, not how long the others pause: a
    grocery's 4-month export gave 26 days (so 30, its horizon), and 11 % of the next month's
    returning buyers had paused longer (451 buyers scored as "churned already")."""
    days = DEFAULT_LOOKBACK_DAYS
    if np.isfinite(gap_quantile):
        days = _weeks_in_range(gap_quantile)
    if np.isfinite(return_quantile):
        days = max(days, _weeks_in_range(return_quantile))
    return max(days, int(horizon_days))


def _weeks_in_range(days: float) -> int:
    """Days rounded up to whole weeks, within LOOKBACK_RANGE."""
    return int(np.clip(7 * int(np.ceil(days / 7)), *LOOKBACK_RANGE))


def returning_recency(days: ActiveDays, n: int, until: int, horizon_days: int) -> np.ndarray:
    """The pauses of the customers who came back in the last horizon before `until` (a
    midnight, ns): for T = until - horizon, the days from each customer's last active day
    before T to T, over the customers with an active day before T and one in [T, until).
    Only rows before `until`. Empty without a horizon or such a customer."""
    if horizon_days <= 0:
        return np.empty(0)
    t = until - horizon_days * DAY_NS
    before = active_day_counts(days, n, t)
    by_end = active_day_counts(days, n, until)
    back = np.flatnonzero((before > 0) & (by_end > before))
    if not len(back):
        return np.empty(0)
    last_key = days.key[days.start[back] + before[back] - 1].astype(np.int64)
    last_day = last_key - back.astype(np.int64) * days.span + days.day0
    return (t // DAY_NS - last_day).astype("float64")


def lookback_from_gaps(
    median_gaps: np.ndarray, horizon_days: int = 0, return_quantile: float = float("nan")
) -> int:
    """The non-contractual lookback for customers whose median gaps between active days (in
    days; NaN for a customer with fewer than two) are given: long enough that it holds the
    typical gap of LOOKBACK_QUANTILE of them, so a regular customer between two purchases
    still counts as a customer, and at least the horizon (lookback_from_quantile). Pure: the
    Spark engine feeds it its own quantile."""
    gaps = np.asarray(median_gaps, dtype="float64")
    gaps = gaps[np.isfinite(gaps)]
    quantile = float(np.quantile(gaps, LOOKBACK_QUANTILE)) if len(gaps) else float("nan")
    return lookback_from_quantile(quantile, horizon_days, return_quantile)


def label_window_end(last_date: object, horizon_days: int) -> pd.Timestamp:
    """The end of the label window of a training set's last observation date: the rows its
    labels read, whose returns the lookback measures too (data_lookback_days' labels_until)."""
    return as_of_timestamp(last_date) + pd.Timedelta(days=horizon_days)


def returns_until(until: int, labels_until: object | None) -> int:
    """Where the returns the lookback measures end (ns): labels_until, never before `until`."""
    return until if labels_until is None else max(until, as_of_timestamp(labels_until).value)


def data_lookback_days(
    tables: Tables,
    qualifying_events: tuple[str, ...] | None,
    until: object,
    horizon_days: int = 0,
    labels_until: object | None = None,
) -> int:
    """The lookback the data calls for, at least `horizon_days`: the customers' typical gaps from
    qualifying activity dated before `until`, and the pauses of those who came back in the last
    horizon before `labels_until` (default `until`; a training set passes the end of its last
    date's label window, rows it reads anyway: the pauses seen before the last date alone are
    cut short by a short export's start)."""
    prep = prepare(tables)
    days = active_days(prep, qualifying_events)
    t = as_of_timestamp(until).value
    count = active_day_counts(days, prep.n_customers, t)
    end = returns_until(t, labels_until)
    pauses = returning_recency(days, prep.n_customers, end, horizon_days)
    back = float(np.quantile(pauses, RETURN_QUANTILE)) if len(pauses) else float("nan")
    return lookback_from_gaps(median_gaps(days, count), horizon_days, back)


def resolve_lookback(
    tables: Tables, churn: ChurnDefinition, until: object, labels_until: object | None = None
) -> ChurnDefinition:
    """The churn definition with its lookback resolved from the data before `until` (and the
    returns before `labels_until`, see data_lookback_days) when it is non-contractual and has
    none configured (contractual churn does not use it)."""
    if churn.mode != "non_contractual" or churn.lookback_days is not None:
        return churn
    days = data_lookback_days(
        tables, churn.qualifying_events, until, churn.horizon_days, labels_until
    )
    return replace(churn, lookback_days=days)


def _current(prep: Prepared, t: int) -> np.ndarray:
    """Customers signed up before T, not churned before T (churned_at at T: still one) and
    whose service did not end otherwise before T (customers.ended_at: a dormant SIM the
    operator deactivated, an account merged into another; not churn, but no customer either)."""
    return (
        (prep.signup_at < t)
        & ((prep.churned_at == NAT) | (prep.churned_at >= t))
        & ((prep.ended_at == NAT) | (prep.ended_at >= t))
    )


def _notice_pending(prep: Prepared, t: int) -> np.ndarray:
    """Customers who gave notice before T (customers.cancel_requested_at) and whose churned_at
    is T or later: their churn is known at T. A notice without a churned_at was withdrawn."""
    notice = prep.cancel_requested_at
    return (notice != NAT) & (notice < t) & (prep.churned_at != NAT) & (prep.churned_at >= t)


def notice_pending_mask(tables: Tables, as_of: object) -> np.ndarray:
    """Per customer (all of them): a customer at T whose notice, given before T, takes effect
    at T or later (cancel_requested_at). A run scores such a customer apart from the model
    (scheduled_cancellations) and no training row is made of one (features.dataset): the rows
    of customers who had already given notice taught a gym's and a SaaS firm's models churn
    they could read only at the notice, and the customers without one scored 7.7 % and 13.9 %
    against 4.9 % and 8.9 % realized."""
    prep = prepare(tables)
    t = as_of_timestamp(as_of).value
    return _current(prep, t) & _notice_pending(prep, t)


def current_mask(tables: Tables, at: pd.Timestamp) -> np.ndarray:
    """Per customer (all of them): a customer at the instant `at` (_current), whatever the
    churn definition."""
    return _current(prepare(tables), at.value)


# A year, in days: the same season last year (_back_last_season).
SEASON_DAYS = 365


def _back_last_season(prep: Prepared, churn: ChurnDefinition, t: int, lookback: int) -> np.ndarray:
    """Per customer: a seasonal pause. A year before T the customer was pausing, and came back
    within the horizon after that date from a pause of at least the lookback; its pause now has
    lasted no longer than that one. A wholesaler's coastal hotels order from April to October:
    at a February cut 83 of them were "churned already" with a 90-day lookback, and 34 ordered
    within the 90 days after it (29 of the 36 silent for 120 days or less)."""
    days = active_days(prep, churn.qualifying_events)
    n = prep.n_customers
    out = np.zeros(n, dtype=bool)
    year_ago = t - SEASON_DAYS * DAY_NS
    if not len(days.key) or year_ago // DAY_NS <= days.day0:
        return out
    before_year = active_day_counts(days, n, year_ago)
    before_t = active_day_counts(days, n, t)
    # the active days either side of T - a year: the pause then, and the one before T
    found = np.flatnonzero((before_year > 0) & (before_t > before_year))
    if not len(found):
        return out
    span = np.int64(days.span)
    offset = found.astype(np.int64) * span
    pos = days.start[found] + before_year[found] - 1
    paused_from = days.key[pos].astype(np.int64) - offset
    back_on = days.key[pos + 1].astype(np.int64) - offset
    last = days.key[days.start[found] + before_t[found] - 1].astype(np.int64) - offset
    year_day, t_day = year_ago // DAY_NS - days.day0, t // DAY_NS - days.day0
    pause = back_on - paused_from
    out[found] = (
        (back_on < year_day + churn.horizon_days) & (pause >= lookback) & (t_day - last <= pause)
    )
    return out


def eligible_mask(tables: Tables, as_of: object, churn: ChurnDefinition) -> np.ndarray:
    """Customers scored at T: signed up before T, not churned or ended before T and, for
    non-contractual churn, with qualifying activity in the lookback window [T - lookback, T)
    or in a seasonal pause (_back_last_season: back after such a pause a year before).

    A customer whose churned_at is T itself is still a customer before T: eligible at T, and
    its label (churned_at in [T, T + horizon)) is 1. A lookback left to the data is resolved
    from the rows before T (resolve_config resolves it once for a whole training set)."""
    prep = prepare(tables)
    t = as_of_timestamp(as_of).value
    mask = _current(prep, t)
    if churn.mode == "non_contractual":
        lookback = resolve_lookback(tables, churn, as_of).lookback_days or 0
        recent = _active_between(prep, churn, t - lookback * DAY_NS, t)
        mask &= recent | _back_last_season(prep, churn, t, lookback)
    return mask


def lapsed_count(tables: Tables, as_of: object, churn: ChurnDefinition) -> int:
    """Non-contractual churn: customers signed up before T and not churned before T, without
    qualifying activity in the lookback window: churned already under the definition, so not
    scored at T (eligible_mask). Contractual churn: 0 (every current customer is scored)."""
    if churn.mode != "non_contractual":
        return 0
    t = as_of_timestamp(as_of).value
    return int(_current(prepare(tables), t).sum() - eligible_mask(tables, as_of, churn).sum())


def no_scheduled_cancellations() -> pd.DataFrame:
    """scheduled_cancellations' frame without rows (either engine's "none")."""
    return pd.DataFrame(
        {"customer_id": pd.Series([], dtype="string"), "churned_at": pd.Series([], dtype="M8[ns]")}
    )


def signups_from(tables: Tables, as_of: object) -> int:
    """Customers whose signup is at or after T: not scored at T (features use what happened
    before it), scored from the first run after it. A gym's members all start on the 1st: a run
    on the 1st left that month's 203 joiners out without a word."""
    t = as_of_timestamp(as_of)
    return int((tables.customers["signup_at"] >= t).sum())


def scheduled_cancellations(tables: Tables, as_of: object) -> pd.DataFrame:
    """customer_id and churned_at of the customers scored at T whose cancellation is known at T,
    soonest first: a notice given before T (notice_pending_mask, where the export keeps
    cancel_requested_at), and a churned_at after what the data has observed (Tables.
    scheduled_ends, such as Chargebee's non_renewing). The latter only at a run on or after the
    data's last day: what an export knows of the future is known from its own day on, and a run
    dated before it would learn of a notice given later. No model feature reads them (a
    training date would read its own label); the run lists these customers beside their scores."""
    t = as_of_timestamp(as_of)
    if "churned_at" not in tables.customers:
        return no_scheduled_cancellations()
    end = tables.data_end()
    known = notice_pending_mask(tables, t)
    if t >= end.normalize():
        # after the data's end is scheduled (features.contract.observed_end), as the Spark
        # engine reads it (features.spark_engine.scheduled_cancellations)
        churned = tables.customers["churned_at"]
        later = ((churned > end) & (churned >= t)).to_numpy(dtype=bool, na_value=False)
        known |= later & current_mask(tables, t)
    rows = tables.customers.loc[known, ["customer_id", "churned_at"]]
    return rows.sort_values(["churned_at", "customer_id"], kind="stable").reset_index(drop=True)


LAPSED_COLUMNS = (
    "customer_id", "last_activity_at", "days_since_last_activity", "qualifying_events",
    "revenue_total",
)  # fmt: skip


def lapsed_customers(tables: Tables, as_of: object, churn: ChurnDefinition) -> pd.DataFrame:
    """Non-contractual churn: the lapsed buyers of lapsed_count (customers with qualifying
    activity before T, none in the lookback window), the win-back list: a grocery's 272 not
    scored at one cut were only counted, and 40 % of them bought again within the horizon.
    Columns LAPSED_COLUMNS: the last qualifying event's time (UTC), the days since it, the
    qualifying events and the revenue before T (NaN without revenue rows); most recently
    lapsed first (the likeliest to come back), then by id. Empty under contractual churn and
    for customers who never had a qualifying event (never_active_count counts them)."""
    ids = tables.customers["customer_id"]
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in LAPSED_COLUMNS})
    empty["customer_id"] = empty["customer_id"].astype(ids.dtype)
    empty["last_activity_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    if churn.mode != "non_contractual":
        return empty
    prep = prepare(tables)
    t = as_of_timestamp(as_of).value
    lapsed = _current(prep, t) & ~eligible_mask(tables, as_of, churn)
    act = prep.activity
    before = (act.at < t) & _qualifying(prep, churn)
    last = np.full(prep.n_customers, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, act.customer[before].astype(np.int64), act.at[before])
    lapsed &= last > np.iinfo(np.int64).min
    if not lapsed.any():
        return empty
    events = np.bincount(act.customer[before].astype(np.int64), minlength=prep.n_customers)
    rev = prep.revenue
    paid = (rev.at < t) & (rev.is_payment | rev.is_refund)  # as features.signals' revenue_total
    revenue = np.full(prep.n_customers, np.nan)
    if len(rev.at):
        revenue = np.bincount(
            rev.customer[paid].astype(np.int64), rev.amount[paid], minlength=prep.n_customers
        ).astype("float64")
    rows = np.flatnonzero(lapsed)
    out = pd.DataFrame(
        {
            "customer_id": ids.to_numpy()[rows],
            "last_activity_at": pd.to_datetime(last[rows], utc=True),
            "days_since_last_activity": (t - last[rows]) / DAY_NS,
            "qualifying_events": events[rows].astype("int64"),
            "revenue_total": revenue[rows],
        }
    )
    out = out.sort_values(["days_since_last_activity", "customer_id"], kind="stable")
    return out.reset_index(drop=True)


def never_active_count(tables: Tables, as_of: object, churn: ChurnDefinition) -> int:
    """Non-contractual churn: the customers of lapsed_count with no qualifying activity at all
    before T (browsers who never bought): not lapsed buyers, and no churn of theirs either.
    Contractual churn: 0."""
    if churn.mode != "non_contractual":
        return 0
    return int(_never_active(tables, as_of, churn).sum())


def _never_active(tables: Tables, as_of: object, churn: ChurnDefinition) -> np.ndarray:
    """Per customer: current at T, without qualifying activity before T."""
    current = current_mask(tables, as_of_timestamp(as_of))
    return current & ~ever_active_before(tables, as_of, churn)


def never_active_signed_up_before_history(
    tables: Tables, as_of: object, churn: ChurnDefinition
) -> int:
    """The customers of never_active_count who signed up before the data's first record
    (Tables.history_start): a purchase of theirs before the export began is not in the data,
    so they are not "not buyers yet" for sure (a shop's export from January held 1,073 such
    customers who had bought in the year before). Contractual churn: 0."""
    if churn.mode != "non_contractual":
        return 0
    early = (tables.customers["signup_at"] < tables.history_start()).to_numpy(dtype=bool)
    return int((_never_active(tables, as_of, churn) & early).sum())


def ever_active_before(tables: Tables, as_of: object, churn: ChurnDefinition) -> np.ndarray:
    """Per customer (all of them): any qualifying activity before T."""
    t = as_of_timestamp(as_of).value
    return _active_between(prepare(tables), churn, np.iinfo(np.int64).min, t)


def label_mask(tables: Tables, as_of: object, churn: ChurnDefinition) -> np.ndarray:
    """Per customer (all of them): churned in [T, T + horizon) under the churn definition.

    contractual: churned_at in [T, T + horizon); non-contractual: no qualifying activity in
    [T, T + horizon)."""
    prep = prepare(tables)
    t = as_of_timestamp(as_of).value
    end = t + churn.horizon_days * DAY_NS
    if churn.mode == "contractual":
        churned = (prep.churned_at != NAT) & (prep.churned_at >= t) & (prep.churned_at < end)
        if churn.observed_until is not None:  # cancellations after it are not recorded reliably
            churned &= prep.churned_at <= pd.Timestamp(churn.observed_until).value
        return churned
    return ~_active_between(prep, churn, t, end)


def observation_end(tables: Tables, churn: ChurnDefinition) -> tuple[pd.Timestamp, str]:
    """The last instant at which churn is observed, and what sets it: the configured
    observed_until (never later than the day after the data's last record: an export cut on
    a day holds records up to the evening before, and "observed until the cut" lost that last
    day of labels), else the data's end."""
    data_end = tables.data_end()
    if churn.observed_until is not None:
        configured = pd.Timestamp(churn.observed_until)
        if configured <= data_end.normalize() + pd.Timedelta(days=1):
            return configured, "churn is observed until ([features.churn] observed_until)"
    return data_end, "the data ends at"


def last_labeled_date(tables: Tables, churn: ChurnDefinition) -> pd.Timestamp:
    """The latest observation date whose whole label window [T, T + horizon) is observed."""
    end, _ = observation_end(tables, churn)
    return (end - pd.Timedelta(days=churn.horizon_days)).normalize()


def check_horizon_observed(tables: Tables, as_of: object, churn: ChurnDefinition) -> None:
    """Labels need the whole horizon observed (up to observed_until, by default the data's
    end); say which date to use otherwise."""
    t = as_of_timestamp(as_of)
    end = t + pd.Timedelta(days=churn.horizon_days)
    limit, what = observation_end(tables, churn)
    if end > limit:
        latest = last_labeled_date(tables, churn)
        raise ValueError(
            f"observation date {t.date()} needs churn observed until {end.date()} for a "
            f"{churn.horizon_days}-day label, but {what} {limit}; use observation dates up to "
            f"{latest.date()}"
        )


def build_labels(tables: Tables, as_of: object, churn: ChurnDefinition) -> pd.DataFrame:
    """customer_id and churned (0/1) for every customer eligible at T."""
    check_horizon_observed(tables, as_of, churn)
    eligible = eligible_mask(tables, as_of, churn)
    churned = label_mask(tables, as_of, churn)
    return pd.DataFrame(
        {
            "customer_id": tables.customers["customer_id"].to_numpy()[eligible],
            "churned": churned[eligible].astype("int8"),
        }
    )
