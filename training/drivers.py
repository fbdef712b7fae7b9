"""Drivers: the features that push a customer's churn risk up the most, those that hold a
low risk down, and those whose contribution moved most since the previous score. Ranked from
exact per-feature contributions (LightGBM pred_contrib), vectorised over rows and returned as
Arrow lists of structs, so that a million customers' drivers cost no Python loop per customer
(only the top drivers' sentences are built one by one, feature by feature).

A driver is {feature, label, value, value_text, contribution, risk_points, reason}: value is
the feature's number (null for a categorical attribute, whose level is value_text, and for a
missing value), contribution is in log-odds of the raw model, risk_points is its share of the
calibrated probability in percentage points (see risk_points), and label and reason come from
the feature dictionary (features.dictionary; a column build_features does not make is
described from its own name).

One fact, one driver: a customer with no activity in a window has a zero in every activity
feature of that window (events, active days, kinds of activity, value, events per type; its
trends against the window before are -100 % or missing) and in those of the shorter windows;
shown one by one they would fill the top reasons with the same sentence. Their contributions
are added to the recency feature's (days since the last event: "No activity in the last 120
days"), or without it to the longest such window's event count,
and ranked as one driver (merge_same_facts). So are the features whose fact another's
sentence already states (SAME_FACT): the recency against the customer's usual gap and the
BG/NBD chance of no purchase, and the last NPS response's flags and age; and, where the values
agree, the first activity at signup ("Customer for 37 days" and "First activity 37 days ago") and a count over nested windows ("1
cancel event in the last 30 days" and "... in the last 90 days": same_value_facts).

A reason states a risk: a value on the typical customer's lower-risk side (more logins than the
median customer, no failed payment where the median has none) is never one, whatever its
contribution (on_the_safe_side, with the medians and directions stored in the model's
reference profile, training.reference.reason_sides).

A customer at or below the typical customer's risk has no reason for risk; what holds the risk
down is said instead (lower_risk_drivers: the mirror of those rules, negative points)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.dictionary import (
    LOWERS_RISK,
    NO_ACTIVITY_CHANCE,
    SIGNUP_IS_FIRST_RECORD,
    USUAL_GAP_MIN_DAYS,
    describe,
    in_latest_period,
)
from features.signals import FAILED_PAYMENT_RECENCY, event_slug

DRIVER_FIELDS = [
    pa.field("feature", pa.string()),
    pa.field("label", pa.string()),
    pa.field("value", pa.float64()),  # null: a categorical attribute (see value_text), missing
    pa.field("value_text", pa.string()),  # a categorical attribute's level; null otherwise
    pa.field("contribution", pa.float64()),  # log-odds of the raw (uncalibrated) model
    pa.field("risk_points", pa.float64()),  # percentage points of the calibrated probability
    pa.field("reason", pa.string()),
]
DRIVER_TYPE = pa.list_(pa.struct(DRIVER_FIELDS))
# A feature that raises the probability by less than this (percentage points) is not a reason:
# shown, it reads "0.0 pts" (a customer at the average risk of a weak model has dozens).
MIN_DRIVER_POINTS = 0.05
# A reason carries at least this share of the customer's first reason's points: "Country: IN"
# at 0.07 points beside "No activity in the last 12 days" at 3.6 says nothing to a reader.
MIN_DRIVER_SHARE_OF_FIRST = 0.10
MOVED_TYPE = pa.list_(
    pa.struct([("feature", pa.string()), ("change", pa.float64()), ("reason", pa.string())])
)


def risk_points(
    contrib: np.ndarray,
    bias: np.ndarray | float,
    probability_of_logit: Callable[..., np.ndarray],
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """Each feature's signed share of the calibrated churn probability, in percentage points.

    contrib: (rows, features) contributions to the raw model's log-odds; bias: the expected
    log-odds (the contributions' 'bias' column); probability_of_logit: the served probability
    as a function of the raw log-odds (calibration included), increasing; shift: per row, the
    log-odds of the time of year (ChurnModel.level_shift), passed on to probability_of_logit
    as its second argument, or None.

    Definition: the change from the base probability P(bias) to the customer's probability
    P(bias + sum of contributions) is shared among the features in proportion to their
    contributions: points_j = 100 x (P(z) - P(bias)) x c_j / sum_k c_k, i.e. each contribution
    times the slope of the calibrated curve between the base and the customer (its derivative
    at z when the contributions cancel out). So, per row, the points of all features sum exactly
    to 100 x (p - p_base), and a feature's points have the sign of its contribution (the
    calibration is increasing). Vectorised: two calls of probability_of_logit per row batch."""
    contrib = np.asarray(contrib, dtype=np.float64)
    n = len(contrib)
    base = np.broadcast_to(np.asarray(bias, dtype=np.float64), (n,))
    total = contrib.sum(axis=1)
    z = base + total

    def served(logit: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        if shift is None:
            return probability_of_logit(logit)
        return probability_of_logit(logit, np.broadcast_to(shift, (n,))[rows])

    p = served(z)
    p_base = served(base)
    small = np.abs(total) < 1e-9
    slope = np.empty(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope[~small] = (p[~small] - p_base[~small]) / total[~small]
    if small.any():
        h = 1e-4
        zs = z[small]
        slope[small] = (served(zs + h, small) - served(zs - h, small)) / (2 * h)
    return 100.0 * contrib * slope[:, None]


def _driver_values(
    values: pd.DataFrame,
    names: list[str],
    rows: np.ndarray,
    cols: np.ndarray,
    attributes: Sequence[str],
    currency: str | None,
    named_levels: Mapping[str, Collection[str]],
    min_level_customers: int,
    wording: Mapping[str, Any],
    lowers_risk: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the drivers at (rows[k], cols[k]): the number (NaN for text or missing), the text of
    a categorical value (None otherwise), the dictionary's label and the reason in words with
    the row's other feature values as context. Sentences are built feature by feature from
    column arrays (no per-row frame access). A level the model scores in its group of rare
    levels says so (rare_level_note). wording: describe()'s keywords from the model's
    configuration (features.dictionary.WORDING)."""
    number = np.full(len(rows), np.nan)
    text = np.full(len(rows), None, dtype=object)
    labels = np.empty(len(rows), dtype=object)
    reasons = np.empty(len(rows), dtype=object)
    for j in np.unique(cols):
        where = np.flatnonzero(cols == j)
        picked_rows = rows[where]
        entry = describe(names[j], attributes, strict=False, **wording)
        labels[where] = entry.label
        column = values[names[j]]
        if pd.api.types.is_float_dtype(column) or pd.api.types.is_integer_dtype(column):
            picked = column.to_numpy(dtype="float64", na_value=np.nan)[picked_rows]
            number[where] = picked
            shown = picked.tolist()
        else:
            raw = column.to_numpy(dtype=object)[picked_rows]
            shown = [None if pd.isna(v) else str(v) for v in raw]
            text[where] = shown
        context_names = context_columns_of(entry.context, values.columns)
        context_columns = [
            values[c].to_numpy(dtype="float64", na_value=np.nan)[picked_rows] for c in context_names
        ]
        named = named_levels.get(names[j])
        sentences = []
        for k, value in enumerate(shown):
            context = {c: col[k] for c, col in zip(context_names, context_columns, strict=True)}
            if lowers_risk:
                context[LOWERS_RISK] = True
            if wording.get("orders"):
                context[SIGNUP_IS_FIRST_RECORD] = True
            sentence = entry.text(value, context, currency)
            if named is not None and value is not None and value not in named:
                sentence = f"{sentence} {rare_level_note(min_level_customers)}"
            sentences.append(sentence)
        reasons[where] = sentences
    return number, text, labels, reasons


def context_columns_of(context: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The row's features a sentence reads: the entry's context names present in the frame,
    a name starting with '*' standing for every column ending like it (a window's counts per
    event type: features.dictionary.TYPED_COUNTS)."""
    out: list[str] = []
    for name in context:
        if name.startswith("*"):
            out += [c for c in columns if c.endswith(name[1:]) and c != name[2:]]
        elif name in columns:
            out.append(name)
    return out


def rare_level_note(min_customers: int) -> str:
    """What a reason adds to a level the model scores with the other rare levels (the
    Preprocessor's group: the level's own effect is not known, the group's is)."""
    return (
        f"(rare: fewer than {min_customers} customers in training; "
        "scored with the other rare values)"
    )


# A window's activity features: zero in all of them when there was no event in the window.
# Its trend against the window before is then -100 % or, with none before either, missing:
# "Activity down 100% on the previous 30 days" and "No activity in the last 60 days" beside
# "No activity in the last 42 days" said the recency's fact again (209 of 3,177 demo customers).
_ACTIVITY_WINDOW = re.compile(
    r"(?:events|active_days|event_types|value|.+_events|events_trend|value_trend)_(?P<w>\d+)d"
)
RECENCY_FEATURE = "days_since_last_event"
PAYMENT_RECENCY = "days_since_last_payment"
PAID_PERIOD = "days_until_paid_period_ends"
LIFETIME_ACTIVITY = ("lifetime_events", "lifetime_active_days")
LIFETIME_WINDOW = 1 << 30  # the whole history, longer than any window in days
# Features whose fact another feature's sentence already states, for every row: their
# contributions are that feature's. The recency against the usual gap is the recency's ("No
# activity in the last 42 days (usually active every 4 days)"; "Inactive for 10.5 times the
# usual gap (42 days since the last, usually every 4 days)" was the demo's third reason under
# it); the last NPS response's flags and age are its score's ("NPS 6 of 10 (detractor), 8
# months ago" had "Last NPS response 8 months ago (score 6 of 10)" under it).
SAME_FACT = {
    "overdue_ratio": RECENCY_FEATURE,
    "nps_detractor": "nps_last",
    "nps_promoter": "nps_last",
    "days_since_nps": "nps_last",
}
# The same, on the rows where the holder is missing: without a last NPS response there is no
# average and no count either, and "No NPS response yet" is one fact (and "No review yet").
# Without any payment, "No paid period recorded yet" is "No payment recorded yet" again (1,407
# prepaid subscribers of a mobile operator read it as a reason), and so is "No revenue so far"
# (a B2B export's trials read both, one under the other).
SAME_FACT_WHEN_MISSING = {
    "nps_mean": "nps_last",
    "nps_responses": "nps_last",
    "reviews": "review_mean",
    PAID_PERIOD: PAYMENT_RECENCY,
    "revenue_total": PAYMENT_RECENCY,
    # "No order yet" three times over: a game's players without a purchase (the last and the
    # average payment, missing with the last payment's age)
    "last_payment_amount": PAYMENT_RECENCY,
    "mean_payment_amount": PAYMENT_RECENCY,
}
# The same, on the rows where both are known: the last payment's sentence states the end of the
# period it paid for ("Last payment 12 months ago, for a period that ends in 11 days": an
# annual plan near its renewal had "Paid period ends in 11 days" as a second reason under it).
SAME_FACT_WHEN_BOTH_KNOWN = {PAID_PERIOD: PAYMENT_RECENCY}
# The share of days active, where the customer had one active day: the count's fact.
ONE_DAY_SHARE, ONE_DAY_COUNT = "active_day_rate", "lifetime_active_days"
LIFETIME_EVENTS = "lifetime_events"
GAP_FEATURES = ("active_gap_median_days", "active_gap_mean_days")
# Features that state another's fact on the rows where the two values agree (see
# same_value_facts): the mean and the usual gap between active days (a game's players without
# two active days read "Too few active days to measure a usual gap" twice), the first activity
# at signup ("Customer for 37 days" beside "First activity 37 days ago" on a subscription
# export), the first and last active day of the qualifying events where they are the first and
# last event. Listed in the order they are merged, so that a chain ends at the last holder.
SAME_FACT_WHEN_EQUAL = (
    ("active_gap_mean_days", "active_gap_median_days"),  # "Too few active days ..." once
    ("days_since_first_active", "days_since_first_event"),
    ("days_since_first_event", "tenure_days"),
    ("days_since_last_active", RECENCY_FEATURE),
)
# Scores whose mean and latest agree (a single answer, or answers that agree): the holder's
# sentence says it ("Average review 2 of 5 over 1 review" had "Last review 2 of 5" under it for
# 1,061 buyers of a marketplace). The last NPS holds its mean (its sentence says detractor and
# age); the review and CSAT means hold their last (theirs say how many answers).
SAME_FACT_WHEN_SAME_SCORE = (
    ("nps_mean", "nps_last"),
    ("review_last", "review_mean"),
    ("csat_last", re.compile(r"csat_mean_\d+d")),  # the mean over the longest window
)
# Counts and sums over nested windows: equal values over 30 and 90 days say one fact ("1 cancel
# event in the last 30 days" beside "... in the last 90 days").
_NESTED_WINDOW = re.compile(
    r"(?P<family>events|active_days|event_types|value|.+_events|revenue|payments|tickets)"
    r"_(?P<w>\d+)d"
)
_TYPED_EVENTS = re.compile(r".+_events_(?P<w>\d+)d")
_ACTIVE_DAYS = re.compile(r"active_days_(?P<w>\d+)d")
_FAILED_PAYMENTS = re.compile(r"failed_payments_(\d+)d")
_KINDS = re.compile(r"event_types_(?P<w>\d+)d")
# A window without payments ("No payments in the last 30 days", "Revenue of 0 in the last 30
# days") says what the last payment's age says ("Last payment 31 days ago").
_PAYMENT_WINDOW = re.compile(r"(?:payments|revenue)_(?P<w>\d+)d")
# Reasons never left out for a value on the typical customer's lower-risk side
# (on_the_safe_side): the features whose driver may hold other features' contributions
# (merge_same_facts), and those whose sentence measures the customer against their own usual
# gap ("Last active 20 days ago (usually active every 2 days)" is a reason where the median
# customer was last active 40 days ago).
# The last payment's age holds "No paid period recorded yet" only where it is missing itself,
# and a missing value is never on the safe side: it stays subject to the rule elsewhere.
FACT_HOLDERS = frozenset(
    {RECENCY_FEATURE, *SAME_FACT.values(), *SAME_FACT_WHEN_MISSING.values()} - {PAYMENT_RECENCY}
)
NEVER_ON_THE_SAFE_SIDE = FACT_HOLDERS | {"days_since_last_active", "overdue_ratio"}


def merge_same_facts(
    contrib: np.ndarray,
    points: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
    said_by: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Contributions and risk points for ranking drivers, with the activity features of every
    window the row had no event in moved onto one feature (see the module docstring): the
    recency feature when the model has it, else the longest empty window's event count; and
    the features of SAME_FACT (SAME_FACT_WHEN_MISSING: where it is missing;
    SAME_FACT_WHEN_BOTH_KNOWN: where both are known) moved onto the feature whose sentence
    states their fact. Rows and features the rules do not touch keep
    their values; each row's sum is unchanged. said_by (training.reference.said_by_categories):
    a numeric feature that a category nearly determines moves onto that category where it is
    known ("Plan: Flex" says the average payment of 39.90). Last, the features whose values
    agree with another's that states the same fact (same_value_facts)."""
    merged_contrib, merged_points = contrib.copy(), points.copy()
    every_row = np.ones(len(contrib), dtype=bool)
    rhythm = rhythm_recency(names)
    rules = [(f, rhythm if h == RECENCY_FEATURE else h, every_row) for f, h in SAME_FACT.items()]
    # The BG/NBD chance of no qualifying event is the recency against the customer's own
    # rhythm once more, as a probability beside the model's: a grocery's buyer at 78 % read
    # "Chance of no purchase in the next 30 days: 100%" as a reason. Its contribution is the
    # recency's ("Last purchase 40 days ago (usually every 9 days)").
    rules += [(f, rhythm, every_row) for f in names if NO_ACTIVITY_CHANCE.fullmatch(f)]
    rules += [
        (f, h, values[h].isna().to_numpy())
        for f, h in SAME_FACT_WHEN_MISSING.items()
        if h in values.columns
    ]
    rules += [
        (f, h, (values[f].notna() & values[h].notna()).to_numpy())
        for f, h in SAME_FACT_WHEN_BOTH_KNOWN.items()
        if {f, h} <= set(values.columns)
    ]
    rules += [
        (f, h, values[h].notna().to_numpy())
        for f, h in (said_by or {}).items()
        if h in values.columns
    ]
    # With one active day the share of days active is that day over the days since it: the
    # count says it ("1 day with a rating over the whole history" had "A rating on <1% of days
    # since the first" under it, beside the recency: one fact three times).
    # So with two: "A purchase on <1% of days since the first" beside "2 days with a purchase
    # over the whole history" (a grocery's buyers of two baskets 7 months apart), a share of
    # days no habit stands behind (USUAL_GAP_MIN_DAYS). And the lifetime count of events where
    # each fell on a day of its own: "2 purchase events over the whole history" is that count.
    if {ONE_DAY_SHARE, ONE_DAY_COUNT} <= set(values.columns):
        few_days = (values[ONE_DAY_COUNT] < USUAL_GAP_MIN_DAYS).to_numpy(dtype=bool, na_value=False)
        rules.append((ONE_DAY_SHARE, ONE_DAY_COUNT, few_days))
    # With fewer than two active days there is no gap: "Too few days with a commit to measure
    # a usual gap" beside "1 day with a commit over the whole history" said the count twice
    # (167 of 459 contributors of a commit log).
    if ONE_DAY_COUNT in values.columns:
        counted = values[ONE_DAY_COUNT].notna().to_numpy()
        for gap in GAP_FEATURES:
            if gap in values.columns:
                rules.append((gap, ONE_DAY_COUNT, values[gap].isna().to_numpy() & counted))
    if {LIFETIME_EVENTS, ONE_DAY_COUNT} <= set(values.columns):
        one_a_day = (values[LIFETIME_EVENTS] == values[ONE_DAY_COUNT]).to_numpy(
            dtype=bool, na_value=False
        )
        rules.append((LIFETIME_EVENTS, ONE_DAY_COUNT, one_a_day))
    for feature, holder, rows in rules:
        if feature in names and holder in names:
            to, j = names.index(holder), names.index(feature)
            merged_contrib[rows, to] += contrib[rows, j]
            merged_points[rows, to] += points[rows, j]
            merged_contrib[rows, j] = 0.0
            merged_points[rows, j] = 0.0
    _merge_empty_windows(contrib, points, merged_contrib, merged_points, names, values)
    same_value_facts(merged_contrib, merged_points, names, values)
    return merged_contrib, merged_points


def _same_duration(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two durations in days that the sentences say alike: within a day, or within 5 % for
    longer ones ("5 months"); False where either is missing."""
    with np.errstate(invalid="ignore"):
        return np.abs(a - b) <= np.maximum(1.0, 0.05 * np.maximum(a, b))


def _move(contrib: np.ndarray, points: np.ndarray, rows: np.ndarray, j: int, to: int) -> None:
    """Add feature j's contributions and points to feature `to`'s on `rows`, in place."""
    contrib[rows, to] += contrib[rows, j]
    points[rows, to] += points[rows, j]
    contrib[rows, j] = 0.0
    points[rows, j] = 0.0


def same_value_facts(
    contrib: np.ndarray, points: np.ndarray, names: list[str], values: pd.DataFrame
) -> None:
    """In place: on the rows where two features state one fact because their values agree,
    the contributions and points of one move onto the other (each row's sum is unchanged).

    - SAME_FACT_WHEN_EQUAL: two durations in days that agree within a day, or within 5 % for
      longer ones (the sentences round them alike: "5 months").
    - Both missing: "No activity recorded yet" once, not again as "No active day recorded yet".
    - A score's mean and latest where they are equal (SAME_FACT_WHEN_SAME_SCORE).
    - Without paid periods (orders), the last payment's age where it is the last active day's
      (or the last event's).
    - The usual gap, where the recency is known: the recency's sentence states it.
    - One active day in all: the count, and the first activity's age or the tenure where it is
      that day's, are the recency's ("Only one day with a purchase so far, 10 hours ago"); so
      are a window's one active day and, for orders, a revenue trend of -100 %.
    - A window without payments: its payment count and revenue are the last payment's age.
    - A window's one failed payment: the last failed payment's age.
    - A plan change: the revenue trend and the window's one downgrade or upgrade that are the
      last payment's change (_one_price_change).
    - An amount: the average payment and the revenue (whole history, a window) that are the
      last payment's amount (_one_amount).
    - A window's kinds of activity (1) where the model counts one event type: its count.
    - A window's event count where all its events are of one type: that type's count.
    - A window's event count (and its one type's) where each event fell on a day of its own:
      the window's active days.
    - Counts and sums of one family over nested windows (_NESTED_WINDOW) with equal values:
      a non-zero value is said by the shortest window that has it ("1 cancel event in the last
      30 days" holds the 90 days' count), a zero by the longest ("No tickets in the last 90
      days" holds the 30 days')."""

    def column(name: str) -> np.ndarray:
        return values[name].to_numpy(dtype="float64", na_value=np.nan)

    # "No payments in the last 30 days": the last payment's age. First, so that where the last
    # payment's age is the last active day's (orders, below) they move on together: a
    # grocery's "Last order 35 days ago" had stayed a reason beside "No activity in the last
    # 35 days" for 178 households, on the empty windows' contributions.
    if PAYMENT_RECENCY in names:
        to = names.index(PAYMENT_RECENCY)
        covered = paid_period_runs(values)  # no payment due yet: no reason at all (safe side)
        for j, name in enumerate(names):
            match = _PAYMENT_WINDOW.fullmatch(name)
            if match and name in values.columns:
                count = f"payments_{match.group('w')}d"
                if count in values.columns:
                    empty = (column(count) == 0) & (column(name) == 0)  # refunds say more
                    _move(contrib, points, np.flatnonzero(empty & ~covered), j, to)
    # Orders are payments and activity at once: "Last payment 5 months ago" beside "Last
    # active 5 months ago" (891 customers of an order export). Where payments pay for periods
    # the last payment's sentence says more (the period's end) and it stays on its own.
    if PAYMENT_RECENCY in names and PAID_PERIOD not in names:
        holder = "days_since_last_active" if "days_since_last_active" in names else RECENCY_FEATURE
        if holder in names and {PAYMENT_RECENCY, holder} <= set(values.columns):
            same = _same_duration(column(PAYMENT_RECENCY), column(holder))
            _move(contrib, points, np.flatnonzero(same), names.index(PAYMENT_RECENCY),
                  names.index(holder))  # fmt: skip
    for feature, holder in SAME_FACT_WHEN_EQUAL:
        if feature in names and holder in names and {feature, holder} <= set(values.columns):
            a, b = column(feature), column(holder)
            same = _same_duration(a, b)
            if holder != "tenure_days":  # "No activity recorded yet" once; tenure is signup's
                same |= np.isnan(a) & np.isnan(b)
            _move(contrib, points, np.flatnonzero(same), names.index(feature), names.index(holder))
    for feature, named in SAME_FACT_WHEN_SAME_SCORE:
        holder = (
            named if isinstance(named, str) else next((n for n in names if named.fullmatch(n)), "")
        )
        if feature in names and holder in names and {feature, holder} <= set(values.columns):
            a, b = column(feature), column(holder)
            same = (a == b) | (np.isnan(a) & np.isnan(b))  # "No review yet" once
            _move(contrib, points, np.flatnonzero(same), names.index(feature), names.index(holder))
    # The recency's sentence states the usual gap ("No activity in the last 5 months (usually
    # active every 5 months)"): a second reason "Usually active every 5 months" says it again.
    gap = "active_gap_median_days"
    if {gap, RECENCY_FEATURE} <= set(names) and {gap, RECENCY_FEATURE} <= set(values.columns):
        both = np.isfinite(column(gap)) & np.isfinite(column(RECENCY_FEATURE))
        _move(contrib, points, np.flatnonzero(both), names.index(gap), names.index(RECENCY_FEATURE))
    # One active day in all: the recency's sentence states it ("Only one day with a purchase
    # so far, 10 hours ago"), and the first activity's age (or the tenure holding it) where it
    # is that day's: "1 day with a purchase over the whole history" and "Customer for 10
    # hours" beside it said the one fact three times.
    if {ONE_DAY_COUNT, RECENCY_FEATURE} <= set(names) and {
        ONE_DAY_COUNT,
        RECENCY_FEATURE,
    } <= set(values.columns):
        one_day = (column(ONE_DAY_COUNT) == 1) & np.isfinite(column(RECENCY_FEATURE))
        if "days_since_last_active" in values.columns:  # the one day is the last activity,
            # within a day, as features.dictionary.one_active_day_is_the_last reads it
            apart = np.abs(column("days_since_last_active") - column(RECENCY_FEATURE))
            with np.errstate(invalid="ignore"):
                one_day &= ~(apart > 1.0)  # a missing last active day: as the sentence reads it
        to = names.index(RECENCY_FEATURE)
        _move(contrib, points, np.flatnonzero(one_day), names.index(ONE_DAY_COUNT), to)
        for first in ("tenure_days", "days_since_first_event", "days_since_first_active"):
            if first in names and first in values.columns:
                same = one_day & _same_duration(column(first), column(RECENCY_FEATURE))
                _move(contrib, points, np.flatnonzero(same), names.index(first), to)
        # "Active on 1 of the 49 days since the first recorded activity" and, for orders, the
        # revenue "down 100% on the previous month" that one purchase left: that day again (a
        # grocery's one-time buyers read the one fact three times).
        for j, name in enumerate(names):
            if name not in values.columns:
                continue
            if _ACTIVE_DAYS.fullmatch(name):
                same = one_day & (column(name) == 1)
            elif _REVENUE_TREND.fullmatch(name) and PAID_PERIOD not in names:
                same = one_day & (column(name) == -1)
            else:
                continue
            _move(contrib, points, np.flatnonzero(same), j, to)
    # "1 failed payment in the last 3 months" beside "Last failed payment 12 days ago": the one
    # failure, said once by its age.
    if FAILED_PAYMENT_RECENCY in names and FAILED_PAYMENT_RECENCY in values.columns:
        to = names.index(FAILED_PAYMENT_RECENCY)
        for j, name in enumerate(names):
            match = _FAILED_PAYMENTS.fullmatch(name)
            if match and name in values.columns:
                one = (column(name) == 1) & (column(FAILED_PAYMENT_RECENCY) < int(match.group(1)))
                _move(contrib, points, np.flatnonzero(one), j, to)
    _one_price_change(contrib, points, names, values)
    _one_amount(contrib, points, names, values)
    # A log of one event type: "1 kind of activity in the last 7 days (purchase)" is the
    # window's count again (187 households of a grocery read it as a reason, the kind being the
    # only one there is); the count says it, by the type's name below.
    for j, name in enumerate(names):
        kinds = _KINDS.fullmatch(name)
        if not kinds:
            continue
        w = kinds.group("w")
        typed = [n for n in names if n.endswith(f"_events_{w}d") and _TYPED_EVENTS.fullmatch(n)]
        total = f"events_{w}d"
        if len(typed) == 1 and total in names and {name, total} <= set(values.columns):
            one = np.flatnonzero(column(name) == 1)
            _move(contrib, points, one, j, names.index(total))
    # Every event of the window of one type: that type's count says it by its name ("3
    # checkin events in the last 90 days", where a gym's door log read "3 events").
    for j, name in enumerate(names):
        match = _TYPED_EVENTS.fullmatch(name)
        total = f"events_{match.group('w')}d" if match else ""
        if match and total in names and {name, total} <= set(values.columns):
            a, b = column(name), column(total)
            _move(contrib, points, np.flatnonzero((a == b) & (a > 0)), names.index(total), j)
    # Each event of the window on a day of its own: "1 event in the last 365 days" beside
    # "Active on 1 of the last 365 days" (a commit log's occasional contributors), as the
    # whole history's event count is its active days' where they agree.
    for j, name in enumerate(names):
        match = _ACTIVE_DAYS.fullmatch(name)
        total = f"events_{match.group('w')}d" if match else ""
        if not match or total not in names or not {name, total} <= set(values.columns):
            continue
        days, events = column(name), column(total)
        one_a_day = (events == days) & (days > 0)
        _move(contrib, points, np.flatnonzero(one_a_day), names.index(total), j)
        for k, typed in enumerate(names):
            kind = _TYPED_EVENTS.fullmatch(typed)
            if kind and kind.group("w") == match.group("w") and typed in values.columns:
                same = one_a_day & (column(typed) == events)
                _move(contrib, points, np.flatnonzero(same), k, j)
    families: dict[str, list[tuple[int, int]]] = {}
    for j, name in enumerate(names):
        match = _NESTED_WINDOW.fullmatch(name)
        if match and name in values.columns:
            families.setdefault(match.group("family"), []).append((int(match.group("w")), j))
    for windows in families.values():
        windows.sort()
        for (_, short), (_, long_) in reversed(list(pairwise(windows))):
            a, b = column(names[short]), column(names[long_])
            _move(contrib, points, np.flatnonzero((a == b) & (a != 0)), long_, short)
        for (_, short), (_, long_) in pairwise(windows):
            a, b = column(names[short]), column(names[long_])
            _move(contrib, points, np.flatnonzero((a == b) & (a == 0)), short, long_)


PRICE_CHANGE = "last_payment_change"
_REVENUE_TREND = re.compile(r"revenue_trend_\d+d")
_PLAN_CHANGES = re.compile(r"(?P<kind>downgrades|upgrades)_(?P<w>\d+)d")


def _one_price_change(
    contrib: np.ndarray, points: np.ndarray, names: list[str], values: pd.DataFrame
) -> None:
    """In place: a plan change said once, by the last payment's change ("Last payment down 61%
    on the one before"). On a SaaS export 44 customers read it beside "Revenue down 61% on the
    previous 30 days" and "1 downgrade in the last 90 days", three sentences for one downgrade.
    - The revenue trend, where it is the last payment's change (within a percentage point).
    - One downgrade (upgrade) in a window, where the last payment fell (rose) within it: the
      downgrade is that payment's."""
    if PRICE_CHANGE not in names or PRICE_CHANGE not in values.columns:
        return
    to = names.index(PRICE_CHANGE)
    change = values[PRICE_CHANGE].to_numpy(dtype="float64", na_value=np.nan)
    since = (
        values[PAYMENT_RECENCY].to_numpy(dtype="float64", na_value=np.nan)
        if PAYMENT_RECENCY in values.columns
        else np.full(len(values), np.nan)
    )
    with np.errstate(invalid="ignore"):
        for j, name in enumerate(names):
            trend, plan = _REVENUE_TREND.fullmatch(name), _PLAN_CHANGES.fullmatch(name)
            if not (trend or plan) or name not in values.columns:
                continue
            x = values[name].to_numpy(dtype="float64", na_value=np.nan)
            if plan:
                sign = -1 if plan.group("kind") == "downgrades" else 1
                same = (x == 1) & (np.sign(change) == sign) & (since < int(plan.group("w")))
            else:
                same = (change != 0) & (np.abs(x - change) < 0.01)
            _move(contrib, points, np.flatnonzero(same), j, to)


LAST_AMOUNT = "last_payment_amount"
_AMOUNTS = re.compile(r"mean_payment_amount|revenue_total|revenue_\d+d")


def _one_amount(
    contrib: np.ndarray, points: np.ndarray, names: list[str], values: pd.DataFrame
) -> None:
    """In place: an amount said once, by the last payment (order): the average payment, the
    revenue over the whole history and a window's revenue, where they are the last payment's
    amount to the cent. A one-order buyer read "Average order of $3.99" beside "Revenue of
    $3.99 in the last 3 months" (59 of the riskiest of a purchase log), and "Average order of
    £5.90" beside "Last order of £5.90" (benchmarks/README.md, session 38)."""
    if LAST_AMOUNT not in names or LAST_AMOUNT not in values.columns:
        return
    to = names.index(LAST_AMOUNT)
    last = values[LAST_AMOUNT].to_numpy(dtype="float64", na_value=np.nan)
    for j, name in enumerate(names):
        if _AMOUNTS.fullmatch(name) and name in values.columns:
            x = values[name].to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                same = np.abs(x - last) < 0.005
            _move(contrib, points, np.flatnonzero(same), j, to)


def _merge_empty_windows(
    contrib: np.ndarray,
    points: np.ndarray,
    merged_contrib: np.ndarray,
    merged_points: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
) -> None:
    """In place on merged_*: the activity features of every window the row had no event in
    moved onto the recency feature, or without it the longest empty window's event count."""
    windows: dict[int, list[int]] = {}
    for j, name in enumerate(names):
        match = _ACTIVITY_WINDOW.fullmatch(name)
        if match:
            windows.setdefault(int(match.group("w")), []).append(j)
    counted = {w: f"events_{w}d" for w in windows if f"events_{w}d" in values.columns}
    # The whole history as the longest window: "No activity so far" beside "No activity
    # recorded yet" said one fact twice.
    lifetime = [names.index(n) for n in LIFETIME_ACTIVITY if n in names]
    if "lifetime_events" in values.columns and lifetime:
        windows[LIFETIME_WINDOW] = lifetime
        counted[LIFETIME_WINDOW] = "lifetime_events"
    if not counted:
        return
    n = len(contrib)
    empty = {
        w: values[col].to_numpy(dtype="float64", na_value=np.nan) == 0 for w, col in counted.items()
    }
    if RECENCY_FEATURE in names:
        target = np.full(n, names.index(RECENCY_FEATURE))
    else:
        target = np.full(n, -1)
        for w in sorted(counted):  # the longest empty window last: it wins
            target[empty[w]] = names.index(counted[w])
    for w in counted:
        rows = np.flatnonzero(empty[w])
        for j in windows[w]:
            move = rows[target[rows] != j]
            to = target[move]
            merged_contrib[move, to] += contrib[move, j]
            merged_points[move, to] += points[move, j]
            merged_contrib[move, j] = 0.0
            merged_points[move, j] = 0.0


def paid_period_runs(values: pd.DataFrame) -> np.ndarray:
    """Per row: the last payment's paid period runs past T (days_until_paid_period_ends > 0)."""
    if PAID_PERIOD not in values.columns:
        return np.zeros(len(values), dtype=bool)
    until = values[PAID_PERIOD].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return until > 0


def nothing_due_yet(names: list[str], values: pd.DataFrame) -> np.ndarray:
    """(rows, features): True where a window without payments, or revenue down 100 % on the
    window before (or none in either), falls inside a paid period that still runs: no payment
    was due, so it is no reason for risk. An annual plan's invoice 40 days back read "Revenue
    down 100% on the previous 30 days" for 78 annual payers of a SaaS export, of whom 3 %
    churned (10 % overall); a monthly plan billed on the 1st read it after a 31-day month."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    covered = paid_period_runs(values)
    if not covered.any():
        return out
    for j, name in enumerate(names):
        window, trend = _PAYMENT_WINDOW.fullmatch(name), _REVENUE_TREND.fullmatch(name)
        if not (window or trend) or name not in values.columns:
            continue
        x = values[name].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            # a trend is missing where neither window had revenue: "No revenue in the last 60
            # days" for annual payers 9 months into their year (89 of a SaaS export's)
            out[:, j] = covered & ((x == 0) if window else ((x <= -0.999) | np.isnan(x)))
    return out


QUALIFYING_RECENCY = "days_since_last_active"


def rhythm_recency(names: Sequence[str]) -> str:
    """The recency the customer's rhythm (usual gap, how overdue, the BG/NBD chance) is
    measured against: the last qualifying event's (a shop's purchase) where the churn
    definition names them, else the last event's. A shop that also imports e-mail opens read
    "No activity in the last 14 hours" as its top alert's reason: the purchase rhythm's risk
    of a buyer whose last purchase was 6 months ago, said on the e-mail he opened last night."""
    return QUALIFYING_RECENCY if QUALIFYING_RECENCY in names else RECENCY_FEATURE


def not_overdue(names: list[str], values: pd.DataFrame) -> np.ndarray:
    """(rows, features): True for the recency (days since the last event or active day) where
    it is shorter than the customer's usual gap between active days: a silence the customer
    usually keeps is no reason for risk. A streaming app's user read "No activity in the last 7
    hours (usually active every 4 days)" as a reason; another "No activity in the last 8 days
    (usually active every 16 days)" in the high band. Missing gaps never count.

    With qualifying events the gap is theirs, and so is the last event's recency where that
    event was one of them (the two recencies within a day: merge_same_facts says them as one,
    by the last event's): a gym member who visits 24 days of 30 read "Last activity 18 hours
    ago (usually a visit every day)" as a first reason."""
    out = _recency_against_gap(names, values, np.less)
    rhythm = rhythm_recency([n for n in names if n in values.columns])
    gap = "active_gap_median_days"
    if rhythm != RECENCY_FEATURE and RECENCY_FEATURE in names and gap in values.columns:
        last = values[RECENCY_FEATURE].to_numpy(dtype="float64", na_value=np.nan)
        qualifying = values[rhythm].to_numpy(dtype="float64", na_value=np.nan)
        usual = values[gap].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            same_event = np.abs(qualifying - last) <= 1.0
            out[:, names.index(RECENCY_FEATURE)] |= same_event & (last < usual)
    return out


def _recency_against_gap(
    names: list[str], values: pd.DataFrame, compare: Callable[..., np.ndarray]
) -> np.ndarray:
    """(rows, features): compare(recency, usual gap between active days) at the recency the
    gap is measured against (rhythm_recency: the gap is between qualifying events, so any
    event's recency only where they are the same events); False elsewhere, and where either
    is missing."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    gap = "active_gap_median_days"
    name = rhythm_recency([n for n in names if n in values.columns])
    if gap not in values.columns or name not in names:
        return out
    usual = values[gap].to_numpy(dtype="float64", na_value=np.nan)
    x = values[name].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        out[:, names.index(name)] = compare(x, usual)
    return out


_RECENCY_OF_RECORDS = (RECENCY_FEATURE, QUALIFYING_RECENCY)
_TREND = re.compile(r".+_trend_\d+d")
UNCHANGED_TREND = 0.005  # a trend this close to 0 reads "unchanged"


# Recencies of trouble (a failed payment, a support ticket) whose missing value says the trouble
# never happened: the lowest risk in words, so never a reason for risk. A shop whose failed
# payments were retried orders read "No failed payment recorded" as a reason for 31 customers
# (its buyers had failures; those who never tried to buy had none).
NO_TROUBLE_WHEN_MISSING = ("days_since_failed_payment", "days_since_ticket")


def best_scores(names: list[str], values: pd.DataFrame) -> np.ndarray:
    """(rows, features): True where a score whose higher values lower the risk (an NPS, a CSAT,
    a review: unit "score of N") is at the top of its scale: "Average review 5 of 5 over 1
    review" had read as a reason for risk (a rider's, a ski guest's), credit the model shares
    between having a review at all and its score; no reader takes the best score as the
    reason."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    for j, name in enumerate(names):
        if name not in values.columns or not pd.api.types.is_numeric_dtype(values[name]):
            continue
        entry = describe(name, strict=False)
        scale = re.fullmatch(r"score of (\d+)", entry.unit or "")
        if entry.direction >= 0 or scale is None:
            continue
        x = values[name].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out[:, j] = x >= float(scale.group(1))
    return out


def no_trouble_recorded(names: list[str], values: pd.DataFrame) -> np.ndarray:
    """(rows, features): True at NO_TROUBLE_WHEN_MISSING's features where they are missing."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    for j, name in enumerate(names):
        if name in NO_TROUBLE_WHEN_MISSING and name in values.columns:
            out[:, j] = values[name].isna().to_numpy()
    return out


def empty_qualifying_windows_onto_the_recency(
    contrib: np.ndarray,
    points: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
    qualifying_events: Sequence[str],
) -> None:
    """In place: a qualifying event type's count in a window (<event>_events_<w>d) that is zero
    because the last qualifying activity is older than the window moves onto the recency, whose
    sentence says that last activity: "No checkin events in the last 90 days" stood beside "No
    activity in the last 10 weeks (last checkin 4 months ago)" for a gym's members whose course
    bookings were their last events, one fact said twice."""
    holder = RECENCY_FEATURE if RECENCY_FEATURE in names else QUALIFYING_RECENCY
    if holder not in names or QUALIFYING_RECENCY not in values.columns:
        return
    last = values[QUALIFYING_RECENCY].to_numpy(dtype="float64", na_value=np.nan)
    to = names.index(holder)
    for event in qualifying_events:
        pattern = re.compile(rf"{re.escape(event_slug(event))}_events_(?P<w>\d+)d")
        for j, name in enumerate(names):
            match = pattern.fullmatch(name)
            if match is None or name not in values.columns:
                continue
            count = values[name].to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                rows = (count == 0) & (last >= int(match["w"]))
            _move(contrib, points, rows, j, to)


def recent_activity_onto_the_qualifying_recency(
    contrib: np.ndarray,
    points: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
    typical: Mapping[str, tuple[float, int]],
) -> None:
    """In place: where the last event is no qualifying one (an e-mail opened, not a purchase)
    and came sooner than the typical customer's, the recency's driver (which holds the empty
    windows' contributions: merge_same_facts) moves onto the last qualifying event's age. The
    risk is the purchase's absence: "No activity in the last 13 hours (last purchase 12 weeks
    ago)" stood under "Last purchase 12 weeks ago" for 65 customers of a fashion shop whose
    activity was e-mail opens."""
    if RECENCY_FEATURE not in names or QUALIFYING_RECENCY not in names:
        return
    if RECENCY_FEATURE not in typical or RECENCY_FEATURE not in values.columns:
        return
    last_event = values[RECENCY_FEATURE].to_numpy(dtype="float64", na_value=np.nan)
    qualifying = values[QUALIFYING_RECENCY].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        rows = (qualifying > last_event + 1.0) & (last_event < typical[RECENCY_FEATURE][0])
    if rows.any():
        _move(contrib, points, rows, names.index(RECENCY_FEATURE), names.index(QUALIFYING_RECENCY))


def rising_trends(
    names: list[str], values: pd.DataFrame, above: float = -UNCHANGED_TREND
) -> np.ndarray:
    """(rows, features): True for a trend of something whose rise lowers the risk (activity,
    revenue, active users) where it rose or held (is above `above`): "Activity up 30% on the
    previous 30 days" is no reason for risk in anyone's reading. On a 6-week streaming log 404
    reasons said so: the trend's earlier window reached before the export's start, where every
    training row had read "after none". lower_risk_drivers asks for a rise (above
    UNCHANGED_TREND): an unchanged trend lowers no risk in words."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    for j, name in enumerate(names):
        if not _TREND.fullmatch(name) or name not in values.columns:
            continue
        if describe(name, strict=False).direction >= 0:
            continue
        x = values[name].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out[:, j] = x > above
    return out


def recorded_in_the_latest_period(
    names: list[str], values: pd.DataFrame, activity_totals: str | None
) -> np.ndarray:
    """(rows, features): True at the recency features of rows whose activity, exported as week or
    month totals, has a record for the latest whole period: "Activity recorded within the last
    day (usually every month)" was a reason for 3,118 customers of a bank's monthly snapshots,
    the same value as every customer's."""
    out = np.zeros((len(values), len(names)), dtype=bool)
    if activity_totals not in ("week", "month"):
        return out
    for j, name in enumerate(names):
        if name in _RECENCY_OF_RECORDS and name in values.columns:
            x = values[name].to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                out[:, j] = in_latest_period(x, activity_totals)
    return out


def on_the_safe_side(
    names: list[str],
    values: pd.DataFrame,
    typical: Mapping[str, tuple[float, int]],
    safe_levels: Mapping[str, Collection[str]] | None = None,
    safe_ranges: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    never: Collection[str] = NEVER_ON_THE_SAFE_SIDE,
    at_the_median: bool = False,
) -> np.ndarray:
    """(rows, features): True where the row's value is on the side of the typical customer's
    (the median of the model's latest training rows) that goes with a lower risk: above it for
    a feature whose higher values go with a lower risk, below it for one whose higher values go
    with a higher risk. Such a value does not read as a reason for risk whatever its
    contribution ("117 login events in the last 90 days", when the median customer has 10): a
    positive contribution there is credit shared among correlated features (the 90-day count
    as the base of a trend), and the words would say the opposite of what the customer does.
    A value at the median, a missing value, and the features of NEVER_ON_THE_SAFE_SIDE (merged facts,
    the recency against the customer's own gap) are never on the safe side. A category's level
    is on it when it is one of safe_levels[name] (scored below average on the reference rows);
    a numeric attribute's value when it lies in one of safe_ranges[name] (whose customers did
    not churn more often: training.reference.safe_ranges). never: the features left out (the
    reasons for risk leave out NEVER_ON_THE_SAFE_SIDE; lower_risk_drivers none). at_the_median:
    a value at the median counts too (the reasons for risk: the typical customer's own value
    tells nobody apart; a grocery's household at 64 % read "Active on 1 of the last 7 days" as
    its first reason, the weekly shopper's median; a lower-risk reason needs the strict side)."""
    safe = np.zeros((len(values), len(names)), dtype=bool)
    for j, name in enumerate(names):
        if safe_ranges and name in safe_ranges and name in values.columns:
            x = values[name].to_numpy(dtype="float64", na_value=np.nan)
            for low, high in safe_ranges[name]:
                with np.errstate(invalid="ignore"):
                    safe[:, j] |= (x >= low) & (x <= high)
        if safe_levels and name in safe_levels and name in values.columns:
            levels = values[name].astype("string")
            safe[:, j] = levels.isin(list(safe_levels[name])).to_numpy(dtype=bool, na_value=False)
            continue
        if name not in typical or name in never or name not in values.columns:
            continue
        column = values[name]
        if not (pd.api.types.is_float_dtype(column) or pd.api.types.is_integer_dtype(column)):
            continue
        median, direction = typical[name]
        x = column.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            safe[:, j] |= x > median if direction < 0 else x < median
            if at_the_median:
                safe[:, j] |= x == median
    return safe


def _ranked_lists(keep: np.ndarray, children: list[pa.Array], list_type: pa.DataType) -> pa.Array:
    """A list per row of the kept entries (children in row-major order) as structs."""
    offsets = np.zeros(len(keep) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    struct = pa.StructArray.from_arrays(children, fields=list(list_type.value_type))
    return pa.ListArray.from_arrays(pa.array(offsets), struct, type=list_type)


def above_the_typical_risk(
    points: np.ndarray, probability: np.ndarray | None, typical_probability: float | None
) -> np.ndarray:
    """Per row: above the typical customer's risk, the rows that get reasons for risk (the
    others get lower_risk_drivers). The typical risk is the median probability of the model's
    latest training rows (ChurnModel.typical_probability) where the model has it, else the base
    probability from which the points count (their sum is then above 0). Why the median: the
    base is the probability at the mean log-odds, which a split population pulls far from
    its customers; a grocer's base was 70 % where half its customers were above 43 %, and
    customers at 67 % in the high band had no reason at all."""
    if probability is not None and typical_probability is not None:
        return np.asarray(probability, dtype="float64") > typical_probability
    return np.asarray(points).sum(axis=1) > 0  # merges keep each row's sum


def top_drivers(
    contrib: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
    top: int,
    points: np.ndarray,
    *,
    attributes: Sequence[str] = (),
    currency: str | None = None,
    named_levels: Mapping[str, Collection[str]] | None = None,
    min_level_customers: int = 0,
    typical: Mapping[str, tuple[float, int]] | None = None,
    value_unit: str | None = None,
    safe_levels: Mapping[str, Collection[str]] | None = None,
    activity_totals: str | None = None,
    date_attributes: Sequence[str] = (),
    qualifying_events: Sequence[str] = (),
    orders: bool = False,
    revenue_windows: str | None = None,
    said_by: Mapping[str, str] | None = None,
    safe_ranges: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    probability: np.ndarray | None = None,
    typical_probability: float | None = None,
    lower_levels: Mapping[str, Collection[str]] | None = None,
) -> pa.Array:
    """Per row, the `top` features with the largest positive contribution to the risk that
    raise the probability by at least MIN_DRIVER_POINTS and by at least
    MIN_DRIVER_SHARE_OF_FIRST of the first one's points, on the rows above the typical
    customer's risk (above_the_typical_risk: a customer below it has no reason for risk; a
    SaaS export's low band read "No alerts events in the last 30 days" at 3 % and "1 payment
    in the last 90 days" at 1.4 %, whose customers churned at 0 % and 1 % against 10 %): a
    list of driver records
    (DRIVER_TYPE), largest first. points: risk_points of the same shape as
    contrib; attributes: the declared customer attributes (the dictionary describes them from
    their own name); currency: for amounts in the reasons; named_levels: per category whose
    rare levels the model scores as one, the levels it scores by name (Preprocessor.
    named_levels; min_level_customers words the others); typical: per feature, the reference
    rows' median and direction (training.reference.reason_sides): a value on the median's
    lower-risk side is not a reason (on_the_safe_side); value_unit: what activity.value measures
    (FeatureConfig.value_unit), for its sentences; safe_levels: per category, the levels the
    model scores below average (training.reference.safe_levels), which are no reason either;
    activity_totals: the period an activity row totals (FeatureConfig.activity_totals), for the
    day-based activity features' sentences; date_attributes: the declared attributes that are
    dates (FeatureConfig.date_attributes), said as days from T; qualifying_events: the churn
    definition's (ChurnDefinition.qualifying_events), for the words of the features measured on
    them; orders: the revenue rows are orders (non-contractual churn), said as orders;
    revenue_windows: "month" when revenue windows count calendar months, said so; said_by:
    per numeric feature, the category that states its fact (merge_same_facts); safe_ranges:
    per numeric attribute, the value ranges without evidence of more churn, no reason either
    (training.reference.safe_ranges); probability and typical_probability: each row's and the
    typical customer's, which say the rows above the typical risk (above_the_typical_risk). A
    row's
    empty activity windows
    make one driver (merge_same_facts)."""
    del lower_levels  # lower-risk reasons' (lower_risk_drivers): the model's settings hold both
    above_typical = above_the_typical_risk(points, probability, typical_probability)
    contrib, points = merge_same_facts(contrib, points, names, values, said_by)
    empty_qualifying_windows_onto_the_recency(contrib, points, names, values, qualifying_events)
    recent_activity_onto_the_qualifying_recency(contrib, points, names, values, typical or {})
    safe = (
        nothing_due_yet(names, values)
        | recorded_in_the_latest_period(names, values, activity_totals)
        | not_overdue(names, values)
        | rising_trends(names, values)
        | no_trouble_recorded(names, values)
        | best_scores(names, values)
    )
    at_median = np.zeros_like(safe)
    if typical or safe_levels or safe_ranges:
        safe |= on_the_safe_side(names, values, typical or {}, safe_levels, safe_ranges)
        at_median = (
            on_the_safe_side(
                names, values, typical or {}, never=NEVER_ON_THE_SAFE_SIDE, at_the_median=True
            )
            & ~safe
        )
    order, picked, picked_points, keep = _ranked(
        np.where(safe | at_median, 0.0, contrib), points, top, above_typical
    )
    # A value at the typical customer's tells nobody apart ("Active on 1 of the last 7 days",
    # a weekly shopper's median, was a grocery household's first reason at 64 %): said only
    # where the row has no other reason, so that no row above the typical risk reads blank.
    bare = above_typical & ~keep.any(axis=1)
    if bare.any() and at_median.any():
        fallback = _ranked(
            np.where(safe, 0.0, contrib)[bare], points[bare], top, above_typical[bare]
        )
        for whole, part in zip((order, picked, picked_points, keep), fallback, strict=True):
            whole[bare] = part
    words = _words(
        attributes=attributes, currency=currency, named_levels=named_levels,
        min_level_customers=min_level_customers, value_unit=value_unit,
        activity_totals=activity_totals, date_attributes=date_attributes,
        qualifying_events=qualifying_events, orders=orders, revenue_windows=revenue_windows,
    )  # fmt: skip
    return _driver_records(values, names, order, keep, picked, picked_points, words)


def _ranked(
    contrib: np.ndarray, points: np.ndarray, top: int, above_typical: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the `top` largest contributions (order, their values and points) and which of
    them are reasons: positive, worth MIN_DRIVER_POINTS and MIN_DRIVER_SHARE_OF_FIRST of the
    first one's points, on a row above the typical risk."""
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(contrib, order, axis=1)
    picked_points = np.take_along_axis(points, order, axis=1)
    first = picked_points[:, :1] if picked_points.shape[1] else picked_points
    keep = (
        (picked > 0)
        & (picked_points >= MIN_DRIVER_POINTS)
        & (picked_points >= MIN_DRIVER_SHARE_OF_FIRST * first)
        & above_typical[:, None]
    )
    return order, picked, picked_points, keep


def _words(
    *,
    attributes: Sequence[str] = (),
    currency: str | None = None,
    named_levels: Mapping[str, Collection[str]] | None = None,
    min_level_customers: int = 0,
    value_unit: str | None = None,
    activity_totals: str | None = None,
    date_attributes: Sequence[str] = (),
    qualifying_events: Sequence[str] = (),
    orders: bool = False,
    revenue_windows: str | None = None,
) -> tuple[Any, ...]:
    """_driver_values' wording arguments from top_drivers' keywords (an unknown keyword is a
    TypeError, as a call of top_drivers would make it)."""
    wording = {
        "value_unit": value_unit,
        "activity_totals": activity_totals,
        "date_attributes": date_attributes,
        "qualifying_events": tuple(qualifying_events),
        "orders": orders,
        "revenue_windows": revenue_windows,
    }
    return attributes, currency, named_levels or {}, min_level_customers, wording


_WORDING_KEYS = frozenset(inspect.signature(_words).parameters)


def wording_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Of top_drivers' keywords, those that only word the reasons (_words' own parameters):
    what moved_drivers takes from the settings the reasons for risk are given."""
    return {k: v for k, v in settings.items() if k in _WORDING_KEYS}


def _driver_records(
    values: pd.DataFrame,
    names: list[str],
    order: np.ndarray,
    keep: np.ndarray,
    picked: np.ndarray,
    picked_points: np.ndarray,
    words: tuple[Any, ...],
    lowers_risk: bool = False,
) -> pa.Array:
    """The kept entries of each row's ranked features (order, with their contributions and
    points) as driver records (DRIVER_TYPE), worded by _driver_values (words: its attributes,
    currency, named_levels, min_level_customers and wording)."""
    rows = np.broadcast_to(np.arange(len(order))[:, None], order.shape)[keep]
    cols = order[keep]
    number, text, labels, reasons = _driver_values(values, names, rows, cols, *words, lowers_risk)
    children = [
        pa.array(np.asarray(names, dtype=object)[cols], pa.string()),
        pa.array(labels, pa.string()),
        pa.array(number, pa.float64(), from_pandas=True),
        pa.array(text, pa.string()),
        pa.array(picked[keep], pa.float64()),
        pa.array(picked_points[keep], pa.float64()),
        pa.array(reasons, pa.string()),
    ]
    return _ranked_lists(keep, children, DRIVER_TYPE)


def lower_risk_drivers(
    contrib: np.ndarray,
    names: list[str],
    values: pd.DataFrame,
    top: int,
    points: np.ndarray,
    *,
    typical: Mapping[str, tuple[float, int]] | None = None,
    safe_levels: Mapping[str, Collection[str]] | None = None,
    safe_ranges: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    activity_totals: str | None = None,
    said_by: Mapping[str, str] | None = None,
    probability: np.ndarray | None = None,
    typical_probability: float | None = None,
    lower_levels: Mapping[str, Collection[str]] | None = None,
    **wording: Any,
) -> pa.Array:
    """Per row at or below the typical customer's risk (above_the_typical_risk: top_drivers
    gives it no reason for risk), the `top` features that lower its risk the most: why a
    customer is safe, so that no row of the hand-off reads blank (judges of a ratings site, a
    gym and a grocer asked why half the customers had no reason). Same records as top_drivers
    (DRIVER_TYPE, contribution and risk_points negative), largest lowering first, held to the
    mirror of its rules: a value must lie on the typical customer's lower-risk side
    (on_the_safe_side, here with the recency features: "Last purchase 3 days ago" where the
    median customer's was 40 days), or be a recency shorter than the customer's usual gap
    (not_overdue), or a trend of something whose rise lowers the risk that rose; a level of a
    category the model scores below average whose customers churned less often (lower_levels;
    a model without them: safe_levels, as before). A level or a numeric attribute's range
    without evidence of more churn (safe_levels, safe_ranges) is no evidence of less, and a
    record in the latest week or month of period totals is every active customer's: neither
    is said. Models without a reference profile (no medians) say
    only the recency against the usual gap and rising trends. The same keywords as top_drivers
    (`wording`: those that only word the reasons, _words)."""
    del safe_ranges  # no evidence of less churn: see the docstring
    levels = safe_levels if lower_levels is None else lower_levels
    below_typical = ~above_the_typical_risk(points, probability, typical_probability)
    contrib, points = merge_same_facts(contrib, points, names, values, said_by)
    supports = not_overdue(names, values) | rising_trends(names, values, above=UNCHANGED_TREND)
    if typical or levels:
        supports |= on_the_safe_side(names, values, typical or {}, levels, never=())
    supports &= ~recorded_in_the_latest_period(names, values, activity_totals)
    supports &= ~_overdue(names, values)
    lowering = _one_window_per_count(np.where(supports, -contrib, 0.0), names)
    order = np.argsort(-lowering, axis=1, kind="stable")[:, :top]
    picked_lowering = np.take_along_axis(lowering, order, axis=1)
    lowered_points = -np.take_along_axis(points, order, axis=1)
    first = lowered_points[:, :1] if lowered_points.shape[1] else lowered_points
    keep = (
        (picked_lowering > 0)
        & (lowered_points >= MIN_DRIVER_POINTS)
        & (lowered_points >= MIN_DRIVER_SHARE_OF_FIRST * first)
        & below_typical[:, None]
    )
    words = _words(activity_totals=activity_totals, **wording)
    return _driver_records(
        values, names, order, keep, -picked_lowering, -lowered_points, words, lowers_risk=True
    )


def _one_window_per_count(lowering: np.ndarray, names: list[str]) -> np.ndarray:
    """lowering with, per row, only the largest of each count or sum over nested windows kept
    (the others 0): "8 events in the last 7 days" beside "33 events in the last 30 days" says
    one fact twice, where the reasons for risk merge only equal values (same_value_facts)."""
    families: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        match = _NESTED_WINDOW.fullmatch(name)
        if match:
            families.setdefault(match["family"], []).append(j)
    out = lowering.copy()
    for columns in families.values():
        if len(columns) < 2:
            continue
        block = lowering[:, columns]
        best = np.argmax(block, axis=1)
        cleared = np.ones_like(block, dtype=bool)
        cleared[np.arange(len(block)), best] = False
        out[:, columns] = np.where(cleared, 0.0, block)
    return out


def _overdue(names: list[str], values: pd.DataFrame) -> np.ndarray:
    """(rows, features): True for the recency features where the customer's silence is as long
    as their usual gap or longer, and for the recency against that gap where it is 1 or more:
    below the typical customer's recency ("No activity in the last 29 days" where the median
    is 50) such a value is still overdue for this customer ("usually a purchase every 7 days"),
    no reason for a lower risk."""
    out = _recency_against_gap(names, values, np.greater_equal)
    if "overdue_ratio" in names and "overdue_ratio" in values.columns:
        x = values["overdue_ratio"].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            out[:, names.index("overdue_ratio")] = x >= 1
    return out


def moved_drivers(
    delta: np.ndarray,
    names: list[str],
    top: int,
    values: pd.DataFrame | None = None,
    **wording: Any,
) -> pa.Array:
    """Per row, the features whose contribution changed most since the previous run: a list of
    {feature, change, reason}, largest change first. reason: the feature's value now in words
    (values: the rows' features; wording: top_drivers' keywords that word reasons, _words),
    said as a risk where the change raised it and as what holds it down where it fell, so
    that an alert for a risen risk says what moved ("Last commit 8 days ago (usually every 6
    days)") where the customer, below the typical risk, has no reason for risk; None without
    values."""
    order = np.argsort(-np.abs(delta), axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(delta, order, axis=1)
    keep = picked != 0
    reasons = np.full(int(keep.sum()), None, dtype=object)
    if values is not None and keep.any():
        rows = np.broadcast_to(np.arange(len(order))[:, None], order.shape)[keep]
        cols = order[keep]
        rose = picked[keep] > 0
        words = _words(**wording)
        for lowers, part in ((False, rose), (True, ~rose)):
            if part.any():
                said = _driver_values(values, names, rows[part], cols[part], *words, lowers)
                reasons[part] = said[3]
    children = [
        pa.array(np.asarray(names, dtype=object)[order[keep]], pa.string()),
        pa.array(picked[keep], pa.float64()),
        pa.array(reasons, pa.string()),
    ]
    return _ranked_lists(keep, children, MOVED_TYPE)
