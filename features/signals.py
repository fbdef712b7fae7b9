"""The one feature function: behavioural signals per customer as of an observation date T.

Training sets call it for each observation date, the weekly job for the run date, the service
for records it is sent. Every signal uses rows dated strictly before T only; ticket state at T
comes from resolved_at, never from today's status column.

Feature names follow the pattern <signal>_<window>d; counts are 0 when nothing happened, and
"days since" or averages are NaN when there is nothing to measure (LightGBM treats NaN as
missing, which is what it is).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.buying_process import (
    distinct_triples,
    fit_buying_process,
    no_purchase_probability,
)
from features.config import (
    CYCLE_MONTHS,
    LONG_WINDOWS,
    PERIOD_DAYS,
    RESERVED_CUSTOMER_COLUMNS,
    REVENUE_SIGNAL_KINDS,
    FeatureConfig,
)
from features.contract import FEEDBACK_KINDS, ContractError, Tables
from features.labels import SEASON_DAYS, eligible_mask, resolve_lookback
from features.prepared import (
    BLOCK_ROWS,
    DAY_NS,
    NAT,
    NO_EVENT,
    ActiveDays,
    ActivityArrays,
    FeedbackArrays,
    Prepared,
    RevenueArrays,
    active_day_counts,
    active_days,
    as_of_timestamp,
    median_gaps,
    prepare,
    qualifying_rows,
    reduce_at,
    to_ns,
)


def resolve_config(
    tables: Tables, config: FeatureConfig, until: object, labels_until: object | None = None
) -> FeatureConfig:
    """Fill what the configuration leaves to the data, using only rows dated before `until`:
    the event types that get their own counts, whether there are subscriptions, and the
    non-contractual lookback and buying process (features.buying_process). The declared customer
    attributes must be columns of the customers table. labels_until: the end of a training set's
    last label window, whose returns the lookback also reads (features.labels.
    data_lookback_days)."""
    t = as_of_timestamp(until).value
    check_customer_attributes(tables.customers, config)
    if config.date_attributes is None:  # recorded, so that scoring reads them as dates too
        customers = tables.customers
        dates = [c for c in config.customer_attributes if is_date_column(customers[c])]
        config = replace(config, date_attributes=tuple(dates))
    if config.churn.lookback_days is None:  # recorded, so it travels with the model
        config = replace(config, churn=resolve_lookback(tables, config.churn, until, labels_until))
    if config.subscription_signals is None:
        config = replace(config, subscription_signals=has_subscriptions(tables, config, until))
    if config.paid_period_signals is None:
        config = replace(config, paid_period_signals=has_paid_periods(tables, until))
    if config.user_signals is None:
        config = replace(config, user_signals=has_users(tables, until))
    if config.feedback_kinds is None:
        config = replace(config, feedback_kinds=feedback_kinds(tables, until))
    if config.revenue_kinds is None:
        config = replace(config, revenue_kinds=revenue_kinds(tables, until))
    if config.revenue_windows is None:  # recorded: models trained before it count days
        config = replace(config, revenue_windows="month")
    if config.activity_values is None:  # recorded: models trained before it had the columns
        config = replace(config, activity_values=has_activity_values(tables, until))
    if config.long_windows is None:  # recorded: models trained before it have none
        config = replace(config, long_windows=spanned_long_windows(tables, config, until))
    if config.payment_changes is None:  # recorded: models trained before it count any change
        config = replace(config, payment_changes="lasting")
    if config.anniversary_signals is None:  # recorded: models trained before it have none
        config = replace(
            config, anniversary_signals=churn_on_anniversaries(tables.customers, config, until)
        )
    check_resolved(config)
    if config.buying_process is None:  # recorded, like the lookback
        fitted: tuple[float, ...] = ()
        if config.churn.mode == "non_contractual":
            fitted = data_buying_process(tables, config.churn.qualifying_events, until)
        config = replace(config, buying_process=fitted)
    if config.event_types is None or config.activity_kinds is None:
        act = prepare(tables).activity
        counts = _code_counts(act.event[_rows(act, None, t)], len(act.event_names))
        if config.activity_kinds is None:  # recorded: models trained before it had the columns
            config = replace(config, activity_kinds=int((counts > 0).sum()) >= 2)
        if config.event_types is None:
            order = np.argsort(-counts, kind="stable")
            top = [str(act.event_names[i]) for i in order[: config.max_event_types] if counts[i]]
            config = replace(
                config, event_types=tuple(sorted(top)) if config.activity_kinds else ()
            )
    return config


# Churners whose churn fell within ANNIVERSARY_WINDOW_DAYS of a signup anniversary (either
# side), among those with at least a year's tenure less that window: as uniform churn would
# put there (2 x 31 / 365.25), at least ANNIVERSARY_FACTOR times as many, out of at least
# MIN_ANNIVERSARY_CHURNERS, with a one-sided binomial p below ANNIVERSARY_P.
ANNIVERSARY_WINDOW_DAYS = 31.0
ANNIVERSARY_FACTOR = 2.0
MIN_ANNIVERSARY_CHURNERS = 30
ANNIVERSARY_P = 1e-3
YEAR_DAYS = 365.2425


def churn_on_anniversaries(customers: pd.DataFrame, config: FeatureConfig, until: object) -> bool:
    """Whether contractual churn dated before `until` gathers around the signup's yearly
    anniversaries: annual terms that start at signup and end there (a gym's 12-month
    memberships, billed monthly, so no paid period says when a term ends). The days to the
    next anniversary are then a feature; elsewhere they would be noise."""
    if config.churn.mode != "contractual" or "churned_at" not in customers:
        return False
    t = as_of_timestamp(until)
    churned, signup = customers["churned_at"], customers["signup_at"]
    rows = churned.notna() & signup.notna() & (churned < t)
    tenure = ((churned[rows] - signup[rows]) / pd.Timedelta(days=1)).to_numpy(dtype="float64")
    tenure = tenure[tenure >= YEAR_DAYS - ANNIVERSARY_WINDOW_DAYS]
    if len(tenure) < MIN_ANNIVERSARY_CHURNERS:
        return False
    phase = np.mod(tenure, YEAR_DAYS)
    near = int((np.minimum(phase, YEAR_DAYS - phase) <= ANNIVERSARY_WINDOW_DAYS).sum())
    expected = 2 * ANNIVERSARY_WINDOW_DAYS / YEAR_DAYS
    if near < ANNIVERSARY_FACTOR * expected * len(tenure):
        return False
    from scipy.stats import binomtest

    return bool(
        binomtest(near, len(tenure), expected, alternative="greater").pvalue < ANNIVERSARY_P
    )


def days_to_anniversary(signup: np.ndarray, t: int) -> np.ndarray:
    """Days from T to the next yearly anniversary of each signup (0 on the day itself, at the
    signup's time of day; 29 February's in other years is the 28th: first_on_or_after); NaN
    without a signup or for one after T."""
    out = np.full(len(signup), np.nan)
    known = (signup != NAT) & (signup <= t)
    if known.any():
        dates = pd.Series(signup[known].astype("datetime64[ns]"))
        out[known] = (to_ns(first_on_or_after(dates, pd.Timestamp(t), 12)) - t) / DAY_NS
    return out


def has_activity_values(tables: Tables, until: object) -> bool:
    """Activity rows dated before `until` with a value above 0 (activity.value): without any,
    the value per window would be a column of zeros and its trend one of missing values."""
    act = prepare(tables).activity
    return bool((act.value[_rows(act, None, as_of_timestamp(until).value)] > 0).any())


def spanned_long_windows(tables: Tables, config: FeatureConfig, until: object) -> tuple[int, ...]:
    """The LONG_WINDOWS longer than the configuration's windows that the activity before
    `until` spans twice over (from its first row): a window about as long as the history counts
    the whole history again at most training dates (a year's window over 13 months of history)
    and only adds noise; measured on 9 months of subscriptions, a 180-day window lowered ROC AUC
    at 3 of 4 seeds."""
    t = as_of_timestamp(until).value
    first = int(prepare(tables).activity.first_at.min(initial=NO_EVENT))  # per customer, prepared
    if first >= t:  # no activity before `until` (NO_EVENT: none at all)
        return ()
    return long_windows_within(config, (t - first) / DAY_NS)


def long_windows_within(config: FeatureConfig, history_days: float) -> tuple[int, ...]:
    """The LONG_WINDOWS longer than config.windows and at most half of `history_days` (both
    engines resolve long_windows with this)."""
    return tuple(w for w in LONG_WINDOWS if max(config.windows) < w <= history_days / 2)


def has_users(tables: Tables, until: object) -> bool:
    """Activity rows dated before `until` that say which user acted (activity.user_id): an
    account that several people use, whose active users are signals of their own."""
    act = prepare(tables).activity
    if act.user_pair is None or act.pair_customer is None:
        return False
    no_user = len(act.pair_customer) - 1  # the extra last pair: rows without a user_id
    rows = act.user_pair[_rows(act, None, as_of_timestamp(until).value)]
    return bool((rows != no_user).any())


def feedback_kinds(tables: Tables, until: object) -> tuple[str, ...]:
    """The kinds of feedback (FEEDBACK_KINDS order) with rows dated before `until`: their
    signals are features; the others would be columns of missing values."""
    fb = prepare(tables).feedback
    before = fb.kind[fb.at < as_of_timestamp(until).value]
    present = np.bincount(before.astype(np.int64), minlength=len(FEEDBACK_KINDS)) > 0
    return tuple(kind for kind, has in zip(FEEDBACK_KINDS, present, strict=False) if has)


def revenue_kinds(tables: Tables, until: object) -> tuple[str, ...]:
    """The kinds of revenue rows (REVENUE_SIGNAL_KINDS order) dated before `until`: their
    signals are features; the others would be columns of zeros or missing values."""
    rev = prepare(tables).revenue
    before = rev.at < as_of_timestamp(until).value
    present = {
        "payment": bool((rev.is_payment & before).any()),
        "refund": bool((rev.is_refund & before).any()),
        "failed_payment": bool((rev.is_failed & before).any()),
    }
    return tuple(kind for kind in REVENUE_SIGNAL_KINDS if present[kind])


ADVANCE_BILLING_SHARE = 0.5  # of the rows with a period end: issued before it ends


def has_paid_periods(tables: Tables, until: object) -> bool:
    """Revenue rows dated before `until` that say when the period they pay for ends
    (revenue.period_end: a subscription's "paid until" or expiry date), billed in advance:
    at least ADVANCE_BILLING_SHARE of them issued before their period ends. A bill issued
    after its period (a telecom's postpaid bill, in arrears) says what was used, not until
    when the customer has paid: "Paid period ended 4 days ago, not renewed" was a reason for
    953 subscribers whose next bill was simply not due yet."""
    return billed_in_advance(tables.revenue, until)


def billed_in_advance(revenue: pd.DataFrame, until: object) -> bool:
    """Whether the revenue rows dated before `until` that carry a period_end were mostly issued
    before their period ended (see has_paid_periods); False without such rows."""
    if "period_end" not in revenue:
        return False
    rows = revenue[(revenue["at"] < as_of_timestamp(until)) & revenue["period_end"].notna()]
    if rows.empty:
        return False
    return bool((rows["at"] < rows["period_end"]).mean() >= ADVANCE_BILLING_SHARE)


METERED_SHARE = 0.5  # of a customer's consecutive payments: a different amount from the last


def has_subscriptions(tables: Tables, config: FeatureConfig, until: object) -> bool:
    """Subscriptions, for the subscription-only signals (upgrades, downgrades, the last
    payment's change): contractual churn, or revenue rows dated before `until` that say which
    period they pay for; and payments whose amount mostly repeats (metered_amounts)."""
    if config.churn.mode != "contractual":
        revenue = tables.revenue
        if "period" not in revenue:
            return False
        if not revenue["period"][revenue["at"] < as_of_timestamp(until)].notna().any():
            return False
    return not metered_amounts(tables, until)


def metered_amounts(tables: Tables, until: object) -> bool:
    """Whether more than METERED_SHARE of the customers' consecutive payments before `until`
    differ in amount: bills that follow usage (a telecom's minutes and roaming), where a lower
    bill is no downgrade ("1 downgrade in the last 90 days" was a reason for 711 of 3,590
    subscribers who never changed tariff). A subscription's amount changes with its plan or
    price only."""
    rev = prepare(tables).revenue
    before = (rev.at < as_of_timestamp(until).value) & np.isfinite(rev.change)
    if not before.any():
        return False
    return bool((rev.change[before] != 0).mean() > METERED_SHARE)


def is_date_column(values: pd.Series) -> bool:
    """A customers column of timestamps (a date attribute, when declared)."""
    return pd.api.types.is_datetime64_any_dtype(values)


def check_customer_attributes(customers: pd.DataFrame, config: FeatureConfig) -> None:
    """A declared customer attribute that the customers table lacks is an error naming it, and
    so is a date attribute of the model's that the table does not hold as timestamps (its days
    from T would otherwise be read as text), and a seats attribute that is not numbers."""
    missing = [c for c in config.customer_attributes if c not in customers.columns]
    if missing:
        have = [c for c in customers.columns if c not in RESERVED_CUSTOMER_COLUMNS]
        raise ValueError(
            f"table 'customers': declared customer attribute '{missing[0]}' "
            f"([features] customer_attributes) is not a column; its attributes are {have}"
        )
    for col in config.date_attributes or ():
        values = customers[col]
        if len(values) and not is_date_column(values):
            raise ValueError(
                f"table 'customers', column '{col}': a date attribute of the model, but the "
                f"table holds {values.dtype} (e.g. {values.dropna().iloc[:1].tolist()}); map "
                f'it as a timestamp (type = "timestamp" in the import mapping)'
            )
    seats = config.seats_attribute
    if seats is not None:
        if seats not in customers.columns:
            raise ValueError(
                f"table 'customers': seats_attribute '{seats}' ([features]) is not a column"
            )
        values = customers[seats]
        if len(values) and not pd.api.types.is_numeric_dtype(values):
            raise ValueError(
                f"table 'customers', column '{seats}': seats_attribute holds the seats as "
                f"numbers, but the table holds {values.dtype} (e.g. "
                f'{values.dropna().iloc[:1].tolist()}); map it with type = "number"'
            )


def check_resolved(config: FeatureConfig) -> None:
    """What the data decided must fit what was declared (both engines call this once the
    configuration is resolved): a cycle is for a date attribute (one the customers table holds
    as text cannot be rolled back), and the share of seats in use counts users (a seats
    attribute without activity.user_id would be a column of NaN). Errors name the column."""
    dates = set(config.date_attributes or ())
    for column, _ in config.date_cycles:
        if config.date_attributes is not None and column not in dates:
            raise ValueError(
                f"table 'customers', column '{column}': [features] date_cycles rolls back a "
                "date, but the table does not hold this attribute as timestamps; map it as a "
                'timestamp (type = "timestamp" in the import mapping)'
            )
    if config.seats_attribute and config.user_signals is False:
        raise ContractError(
            "activity",
            "user_id",
            f"seats_attribute '{config.seats_attribute}' asks for the share of seats in use, "
            "which needs who acted: map the activity's user id as user_id",
        )


def _code_counts(codes: np.ndarray, length: int) -> np.ndarray:
    """np.bincount of small integer codes in blocks of 1M rows (bincount copies its input to
    int64 first: 80 MB for 10M int8 event codes); empty when there are no codes."""
    if not len(codes):
        return np.zeros(0, int)
    counts = np.zeros(length, dtype=np.int64)
    for start in range(0, len(codes), BLOCK_ROWS):
        block = np.bincount(codes[start : start + BLOCK_ROWS], minlength=length)
        if len(block) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(block) - len(counts), np.int64)])
        counts[: len(block)] += block
    return counts


def segment_columns(customers: pd.DataFrame, config: FeatureConfig) -> list[str]:
    """Customer attributes usable as segments of a report: numbers, and text with few distinct
    values (at most max_segment_categories). Segments are not features unless declared."""
    chosen = []
    for col in customers.columns:
        if col in RESERVED_CUSTOMER_COLUMNS:
            continue
        values = customers[col]
        if (
            pd.api.types.is_bool_dtype(values)
            or pd.api.types.is_numeric_dtype(values)
            or (
                (
                    isinstance(values.dtype, pd.CategoricalDtype)
                    or pd.api.types.is_string_dtype(values)
                    or pd.api.types.is_object_dtype(values)
                )
                and values.nunique() <= config.max_segment_categories
            )
        ):
            chosen.append(col)
    return chosen


def feature_names(config: FeatureConfig) -> list[str]:
    """The feature columns build_features returns for a resolved configuration, in order:
    the behavioural signals, then the declared customer attributes."""
    if (
        config.event_types is None
        or config.subscription_signals is None
        or config.feedback_kinds is None
        or config.revenue_kinds is None
    ):
        raise ValueError("resolve the configuration first (resolve_config) to know its features")
    return [*_feature_columns(_empty_prepared(), 0, config), *config.customer_attributes]


def build_features(
    tables: Tables, as_of: object, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """One row per customer eligible at T (see features.labels.eligible_mask) with the
    behavioural signals of DESIGN.md: customer_id, then features, then the declared customer
    attributes (config.customer_attributes; the other attributes are not features; a date
    attribute as the days from T to its date)."""
    t = as_of_timestamp(as_of)
    config = resolve_config(tables, config or FeatureConfig(), until=t)
    prep = prepare(tables)
    eligible = eligible_mask(tables, t, config.churn)
    seats = None
    if config.seats_attribute:
        seats = tables.customers[config.seats_attribute].to_numpy(dtype="float64", na_value=np.nan)
    frame = _eligible_frame(_feature_columns(prep, t.value, config, seats), eligible)
    frame.insert(0, "customer_id", _text_values(tables.customers["customer_id"])[eligible])
    cycles = dict(config.date_cycles)
    for col in config.customer_attributes:
        values = tables.customers[col]
        if col in (config.date_attributes or ()):
            frame[col] = _days_from(values, t, cycles.get(col))[eligible]
        else:
            frame[col] = _segment_values(values)[eligible]
    return frame


def _days_from(values: pd.Series, t: pd.Timestamp, cycle: str | None = None) -> np.ndarray:
    """A date attribute as days from T (negative: before T), so that a minimum-term end 45 days
    ahead means the same on every observation date; NaN where it has none. A zoned column is
    read in UTC, as the contract stores times. With a `cycle` (FeatureConfig.date_cycles) a
    date after T is first rolled back to its first occurrence on or after T (roll_back)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    values = values.astype("datetime64[ns]")
    if cycle is not None:
        values = roll_back(values, t, CYCLE_MONTHS[cycle])
    stamps = to_ns(values)
    return np.where(stamps == NAT, np.nan, (stamps - t.value) / DAY_NS)


def roll_back(dates: pd.Series, t: pd.Timestamp, months: int) -> pd.Series:
    """Each date after T moved back by whole cycles of `months` to its first occurrence on or
    after T: a renewal date that the CRM moves on by a year at each renewal, read as of T, is
    the renewal due then (2025-06-01 on the export day is 2024-06-01 as of 2024-05-01, as for
    a customer who churned at that renewal and whose date stayed). Dates on or before T, and
    missing ones, stay as they are."""
    later = (dates > t).to_numpy()
    if not later.any():
        return dates
    out = dates.copy()
    out[later] = first_on_or_after(dates[later], t, months)
    return out


def first_on_or_after(dates: pd.Series, t: pd.Timestamp, months: int) -> pd.Series:
    """Each date moved by whole cycles of `months` (back from after T, forward from before it)
    to its first occurrence on or after T. Month ends clamp (31 January less a month: 31
    December, less two: 30 November; 29 February a year on: 28 February)."""
    apart = (dates.dt.year - t.year) * 12 + (dates.dt.month - t.month)  # from T's month
    cycles = (apart // months).to_numpy()  # the occurrence in T's month or the next ones
    moved_all = dates.copy()
    for k in np.unique(cycles):
        rows = cycles == k
        moved = dates[rows] - pd.DateOffset(months=int(k) * months)
        early = (moved < t).to_numpy()  # T's month, before T's day: one cycle on
        if early.any():
            moved[early] = dates[rows][early] - pd.DateOffset(months=(int(k) - 1) * months)
        moved_all[rows] = moved
    return moved_all


def _eligible_frame(columns: dict[str, np.ndarray], eligible: np.ndarray) -> pd.DataFrame:
    """The eligible rows of the float64 feature columns as one frame, taken straight into the
    frame's single 2-D block (no full-size frame, no per-column copies stacked afterwards)."""
    if not all(values.dtype == np.float64 for values in columns.values()):
        return pd.DataFrame({name: values[eligible] for name, values in columns.items()})
    rows = np.flatnonzero(eligible)
    block = np.empty((len(columns), len(rows)))
    for i, values in enumerate(columns.values()):
        np.take(values, rows, out=block[i])
    return pd.DataFrame(block.T, columns=list(columns), copy=False)


def _segment_values(values: pd.Series) -> np.ndarray | pd.api.extensions.ExtensionArray:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64").to_numpy()
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return _text_values(values.astype("str"))


def _text_values(values: pd.Series) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A text column for the feature frame: its own str array when it holds any text (what a
    frame would infer from the values anyway, without 100k Python strings in between)."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype == "str" and values.notna().any():
        return values.array
    return values.to_numpy()


def _feature_columns(
    prep: Prepared, t: int, config: FeatureConfig, seats: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The feature columns for every customer, in their order; `seats`: each customer's seats
    (config.seats_attribute) when the configuration names them."""
    cols: dict[str, np.ndarray] = {}
    signup = prep.signup_at
    cols["tenure_days"] = np.where(signup == NAT, np.nan, (t - signup) / DAY_NS)
    if config.anniversary_signals:
        cols["days_to_signup_anniversary"] = days_to_anniversary(signup, t)
    t_activity = activity_as_of(t, config.activity_totals)
    cols.update(_activity_signals(prep, t_activity, config, seats))
    cols.update(_history_signals(prep, t_activity, config))
    cols.update(_revenue_signals(prep, t, config))
    cols.update(_feedback_signals(prep, t, config))
    return cols


def activity_as_of(t: int, totals: str | None) -> int:
    """The instant activity features are measured at: T, or for monthly totals (stamped at each
    month's last second, FeatureConfig.activity_totals) the start of T's month, one day later
    when T is past it (a month that ends in a zone behind UTC is stamped hours after the UTC
    month's end). No month total is stamped between that instant and T, so the features read
    the same whichever day of the month T is, and the whole months before it."""
    if totals != "month":
        return t
    month_start = pd.Timestamp(t).normalize().replace(day=1).value
    return min(t, month_start + DAY_NS)


def window_start(t: int, days: int, totals: str | None, back: int = 1) -> int:
    """The start of the window of `days` ending at T, `back` windows back (2: the one before
    it, for trends). Activity exported as period totals counts whole periods: a window is the
    nearest whole number of weeks (at least one), or of calendar months back from T (see
    activity_as_of), so each window holds the same number of totals. In days, the 30 days
    before 1 March held both January's and February's totals (stamped 01-31 23:59:59 and
    02-29 23:59:59), the 30 before that none: a bank's snapshot export read every customer's
    activity as doubled, and its churn as a third of what it was."""
    if totals == "month":
        months = max(1, round(days / PERIOD_DAYS["month"])) * back
        return (pd.Timestamp(t) - pd.DateOffset(months=months)).value
    if totals == "week":
        days = int(PERIOD_DAYS["week"]) * max(1, round(days / PERIOD_DAYS["week"]))
    return t - back * days * DAY_NS


MONTH_WINDOW_DAYS = 28  # revenue windows this long or longer count calendar months


def revenue_window_start(t: int, days: int, windows: str | None, back: int = 1) -> int:
    """The start of the revenue window of `days` ending at T, `back` windows back (2: the one
    before it, for the trend): with revenue_windows "month" a window of MONTH_WINDOW_DAYS or more
    is the nearest whole number of calendar months (30 days: 1, 90: 3), so a debit on a fixed
    day of the month falls in every window once, whatever T's day; shorter ones, and all with
    "day", count days (FeatureConfig.revenue_windows)."""
    months = windows == "month" and days >= MONTH_WINDOW_DAYS
    return window_start(t, days, "month" if months else None, back)


def _count(
    customer: np.ndarray, mask: slice | np.ndarray, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    w = None if weights is None else weights[mask]
    return np.bincount(customer[mask], weights=w, minlength=n).astype("float64")


def _latest(customer: np.ndarray, at: np.ndarray, mask: slice | np.ndarray, n: int) -> np.ndarray:
    """Latest timestamp (ns) per customer among masked rows; NAT where none."""
    out = np.full(n, NAT, dtype=np.int64)
    reduce_at(np.maximum, out, customer, at, mask)
    return out


def _last_row(customer: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Index of the last masked row per customer (rows are in time order); -1 where none."""
    out = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(mask)
    np.maximum.at(out, customer[rows], rows)
    return out


def _days_since(t: int, stamps: np.ndarray) -> np.ndarray:
    return np.where(stamps == NAT, np.nan, (t - stamps) / DAY_NS)


def _trend(recent: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Relative change of the last window against the one before, in [-1, 1]; NaN if both 0."""
    total = recent + before
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (recent - before) / total, np.nan)


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _rows(act: ActivityArrays, start: int | None, end: int) -> slice | np.ndarray:
    """Activity rows with start <= at < end (no lower bound when start is None): a row range
    when activity is in time order (views, no 10M-row masks), a boolean mask otherwise."""
    if act.time_ordered:
        low = 0 if start is None else int(np.searchsorted(act.at, start, side="left"))
        return slice(low, int(np.searchsorted(act.at, end, side="left")))
    mask = act.at < end
    if start is not None:
        mask &= act.at >= start
    return mask


def _activity_signals(
    prep: Prepared, t: int, config: FeatureConfig, seats: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    act, n = prep.activity, prep.n_customers
    before = _rows(act, None, t)
    out: dict[str, np.ndarray] = {}
    out["days_since_last_event"] = _days_since(t, _latest(act.customer, act.at, before, n))
    # The first event before T is the customer's first event, if that is before T.
    first = act.first_at
    out["days_since_first_event"] = np.where(
        (first == NO_EVENT) | (first >= t), np.nan, (t - first) / DAY_NS
    )

    type_names = list(config.event_types or ())
    type_index = np.full(len(act.event_names), -1, dtype=np.int64)
    for i, name in enumerate(type_names):
        type_index[act.event_names == name] = i
    n_types_all = max(len(act.event_names), 1)
    # The rows of the longest window, prepared once; each window is a part of them (the last
    # rows when activity is in time order, a mask otherwise).
    totals = config.activity_totals
    starts = {w: window_start(t, w, totals) for w in config.windows}
    spans = {w: -(-(t - start) // DAY_NS) for w, start in starts.items()}  # whole days, up
    longest = max(spans.values())
    rows = _rows(act, min(starts.values()), t)
    at = act.at[rows]
    cust = act.customer[rows].astype(np.int64)  # int64: the flat indices below overflow int32
    event = act.event[rows]
    value = act.value[rows]
    typed = type_index[event] if type_names else None
    days_back = t // DAY_NS - np.floor_divide(at, DAY_NS)  # 1..longest
    seen_day = np.zeros(n * longest, dtype=bool)
    seen_day[cust * longest + (days_back - 1)] = True
    days_seen = seen_day.reshape(n, longest)  # column d: active d + 1 days before T
    for w in config.windows:
        start = starts[w]
        in_w = slice(int(np.searchsorted(at, start)), len(at)) if act.time_ordered else at >= start
        c = cust[in_w]
        out[f"events_{w}d"] = np.bincount(c, minlength=n).astype("float64")
        out[f"active_days_{w}d"] = days_seen[:, : spans[w]].sum(axis=1).astype("float64")
        if config.activity_kinds is not False:
            seen_type = np.zeros(n * n_types_all, dtype=bool)
            seen_type[c * n_types_all + event[in_w]] = True
            kinds = seen_type.reshape(n, n_types_all).sum(axis=1)
            out[f"event_types_{w}d"] = kinds.astype("float64")
        if config.activity_values is not False:
            out[f"value_{w}d"] = np.bincount(c, weights=value[in_w], minlength=n)
        if typed is not None:
            typed_w = typed[in_w]
            keep = typed_w >= 0
            per_type = np.bincount(
                c[keep] * len(type_names) + typed_w[keep], minlength=n * len(type_names)
            )
            per_type = per_type.reshape(n, len(type_names))
            for i, slug in enumerate(_unique_slugs(type_names)):
                out[f"{slug}_events_{w}d"] = per_type[:, i].astype("float64")
    if config.long_windows:
        out.update(_long_window_signals(prep, t, config))

    tw = config.trend_window
    recent_start = window_start(t, tw, totals)
    recent = _rows(act, recent_start, t)
    prior = _rows(act, window_start(t, tw, totals, back=2), recent_start)
    out[f"events_trend_{tw}d"] = _trend(
        _count(act.customer, recent, n), _count(act.customer, prior, n)
    )
    if config.activity_values is not False:
        out[f"value_trend_{tw}d"] = _trend(
            _count(act.customer, recent, n, act.value), _count(act.customer, prior, n, act.value)
        )
    if config.user_signals:
        out.update(_user_signals(act, n, t, config, seats))
    return out


def _long_window_signals(prep: Prepared, t: int, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Events and active days over the long windows (FeatureConfig.long_windows), as the
    windows count them (every event type), from the whole history's distinct active days: a
    prefix count per customer, no customers x days table over a year."""
    act, n = prep.activity, prep.n_customers
    days = active_days(prep, None)
    active_before_t = active_day_counts(days, n, t)
    out: dict[str, np.ndarray] = {}
    for w in config.long_windows or ():
        start = window_start(t, w, config.activity_totals)
        out[f"events_{w}d"] = _block_counts(act, _rows(act, start, t), None, n).astype("float64")
        # window_start is a midnight (T is one); the active days from there on
        active = active_before_t - active_day_counts(days, n, start)
        out[f"active_days_{w}d"] = active.astype("float64")
    h = config.churn.horizon_days
    seasonal = config.churn.mode == "non_contractual" and 0 < h < SEASON_DAYS
    if seasonal and SEASON_DAYS in (config.long_windows or ()):
        out[f"active_days_next_{h}d_last_year"] = _season_ahead_last_year(prep, t, config)
    return out


def _season_ahead_last_year(prep: Prepared, t: int, config: FeatureConfig) -> np.ndarray:
    """Days with qualifying activity in the horizon after T a year before ([T - a year, + the
    horizon), all before T): the season ahead as it went then. An Alpine rental chain's winter
    guests come back in the same weeks every year and its summer-only bikers never in winter:
    an analyst's model with it ranked the December customers at 0.808 against the project's
    0.754, 0.773 without it. Missing for a customer with no qualifying activity before that
    window's end (not a customer yet, or not in the export then): each customer's own rows
    decide, so a Spark bucket reads what the whole data does."""
    days = active_days(prep, config.churn.qualifying_events)
    n = prep.n_customers
    year_ago = t - SEASON_DAYS * DAY_NS
    by_end = active_day_counts(days, n, year_ago + config.churn.horizon_days * DAY_NS)
    counts = (by_end - active_day_counts(days, n, year_ago)).astype("float64")
    return np.where(by_end > 0, counts, np.nan)


def _user_signals(
    act: ActivityArrays, n: int, t: int, config: FeatureConfig, seats: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Active users per account: the distinct activity.user_id with an event in each window,
    their trend (the trend window against the one before) and, with a seats attribute, the
    share of the account's seats active in the trend window (license utilization)."""
    if act.user_pair is None or act.pair_customer is None:
        raise ContractError(
            "activity",
            "user_id",
            "the model counts active users per account (it was trained on activity with a "
            "user_id column), but this activity table has no user_id column: map it as in "
            "training, or retrain",
        )
    n_pairs = len(act.pair_customer)
    tw = config.trend_window

    def users(start: int, end: int) -> np.ndarray:
        """Distinct users per customer with an event in [start, end): the (customer, user)
        pairs seen there, counted per customer (the extra last pair, no user, dropped)."""
        seen = np.zeros(n_pairs, dtype=bool)
        seen[act.user_pair[_rows(act, start, end)]] = True
        return np.bincount(act.pair_customer[seen], minlength=n + 1)[:n].astype("float64")

    totals = config.activity_totals
    out = {f"active_users_{w}d": users(window_start(t, w, totals), t) for w in config.windows}
    recent_start = window_start(t, tw, totals)
    in_trend = out.get(f"active_users_{tw}d")
    if in_trend is None:
        in_trend = users(recent_start, t)
    before = users(window_start(t, tw, totals, back=2), recent_start)
    out[f"active_users_trend_{tw}d"] = _trend(in_trend, before)
    if config.seats_attribute:
        if seats is None:
            seats = np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"seat_utilization_{tw}d"] = np.where(seats > 0, in_trend / seats, np.nan)
    return out


def _history_signals(prep: Prepared, t: int, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Whole-history signals of the qualifying events (the churn definition's; every event when
    it names none), from rows strictly before T: how much and how regularly the customer has
    been active over its whole history, and how overdue it is against its own rhythm.

    An active day is a day with a qualifying event; gaps are the days between consecutive
    active days. Recency here is in whole days (T minus the start of the active day)."""
    qualifying = config.churn.qualifying_events
    days = active_days(prep, qualifying)
    count, first_day, last_day, t_day = _active_span(prep, t, qualifying)
    has = count > 0
    out: dict[str, np.ndarray] = {}
    out["lifetime_events"] = _events_before(prep, days, t, qualifying)
    out["lifetime_active_days"] = count.astype("float64")
    since_first = np.where(has, t_day - first_day, np.nan)
    since_last = np.where(has, t_day - last_day, np.nan)
    if qualifying is not None:  # else the same as days_since_first_event / _last_event
        out["days_since_first_active"] = since_first
        out["days_since_last_active"] = since_last
    gaps = count - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out["active_gap_mean_days"] = np.where(gaps > 0, (last_day - first_day) / gaps, np.nan)
        median = median_gaps(days, count)
        out["active_gap_median_days"] = median
        out["overdue_ratio"] = np.where(gaps > 0, since_last / median, np.nan)
        out["active_day_rate"] = np.where(has, count / since_first, np.nan)
    # Without parameters (contractual churn, or too little data to fit them) no column: a
    # column of missing values would measure nothing.
    if config.churn.mode == "non_contractual" and config.buying_process:
        name = f"no_activity_chance_{config.churn.horizon_days}d"
        out[name] = np.full(len(count), np.nan)
        out[name][has] = no_purchase_probability(
            config.buying_process,  # type: ignore[arg-type]
            count[has] - 1,
            (last_day - first_day)[has],
            (t_day - first_day)[has],
            config.churn.horizon_days,
        )
    return out


def _active_span(
    prep: Prepared, t: int, qualifying: tuple[str, ...] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per customer, from qualifying activity before T: active days, first and last active day
    (days since the data's first active day; read only where the count is positive), and T's
    day on that scale (T is a midnight: the days before it are those below)."""
    n = prep.n_customers
    days = active_days(prep, qualifying)
    t_day = t // DAY_NS - days.day0
    first = days.start[:-1]
    count = active_day_counts(days, n, t)  # a prefix of each customer's pairs
    has = count > 0
    first_day = last_day = np.zeros(n, dtype=np.int64)
    if len(days.key):
        first_day = (days.key[np.where(has, first, 0)] % days.span).astype(np.int64)
        last_day = (days.key[np.where(has, first + count - 1, 0)] % days.span).astype(np.int64)
    return count, first_day, last_day, int(t_day)


def data_buying_process(
    tables: Tables, qualifying: tuple[str, ...] | None, until: object
) -> tuple[float, ...]:
    """The BG/NBD parameters of the customer base (features.buying_process) from qualifying
    activity before `until`: every customer with a purchase by then; () when they cannot be
    fitted."""
    prep = prepare(tables)
    count, first_day, last_day, t_day = _active_span(prep, as_of_timestamp(until).value, qualifying)
    has = count > 0
    triples, counts = distinct_triples(
        count[has] - 1, (last_day - first_day)[has], t_day - first_day[has]
    )
    return fit_buying_process(triples, counts) or ()


def _events_before(
    prep: Prepared, days: ActiveDays, t: int, qualifying: tuple[str, ...] | None
) -> np.ndarray:
    """Qualifying events before T per customer: counted over the smaller side of T (all events
    less those from T on, when T is late in time-ordered data), in blocks of rows."""
    act, n = prep.activity, prep.n_customers
    qual = qualifying_rows(act, qualifying)
    rows = _rows(act, None, t)
    if isinstance(rows, slice) and rows.stop > len(act.at) // 2:
        return (
            days.total_events - _block_counts(act, slice(rows.stop, len(act.at)), qual, n)
        ).astype("float64")
    return _block_counts(act, rows, qual, n).astype("float64")


def _block_counts(
    act: ActivityArrays, rows: slice | np.ndarray, qual: np.ndarray | None, n: int
) -> np.ndarray:
    """Rows per customer among `rows` (and `qual`), bincount in blocks of 1M rows."""
    if not isinstance(rows, slice):
        keep = rows if qual is None else rows & qual
        return np.bincount(act.customer[keep], minlength=n)
    counts = np.zeros(n, dtype=np.int64)
    for low in range(rows.start, rows.stop, BLOCK_ROWS):
        high = min(low + BLOCK_ROWS, rows.stop)
        cust = act.customer[low:high]
        if qual is not None:
            cust = cust[qual[low:high]]
        counts += np.bincount(cust, minlength=n)
    return counts


def event_slug(name: str) -> str:
    """An event name as part of a column name: lower case, letters, digits and underscores."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in str(name).strip().lower())
    return "_".join(part for part in cleaned.split("_") if part) or "event"


def _unique_slugs(names: list[str]) -> list[str]:
    """Column-safe, distinct names for event types ('API call' and 'api_call' get _2)."""
    slugs: list[str] = []
    for name in names:
        slug, k = event_slug(name), 2
        while slug in slugs:
            slug, k = f"{event_slug(name)}_{k}", k + 1
        slugs.append(slug)
    return slugs


FAILED_PAYMENT_RECENCY = "days_since_failed_payment"


def _revenue_signals(prep: Prepared, t: int, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Revenue rows are in time order (prepare sorts them): windows are row ranges."""
    rev, n = prep.revenue, prep.n_customers
    end = int(np.searchsorted(rev.at, t, side="left"))  # rows [0, end) are before T

    def since(start_ns: int, stop: int = end) -> slice:
        """Rows with start_ns <= at, up to row stop."""
        return slice(min(int(np.searchsorted(rev.at, start_ns, side="left")), stop), stop)

    def count(rows: slice, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[rows]
        return _count(rev.customer[rows], mask[rows], n, w)

    kinds = set(REVENUE_SIGNAL_KINDS if config.revenue_kinds is None else config.revenue_kinds)
    out: dict[str, np.ndarray] = {}
    months = config.revenue_windows

    def start(days: int, back: int = 1) -> int:
        return revenue_window_start(t, days, months, back)

    long_w = max(config.windows)
    in_long = since(start(long_w))
    if "refund" in kinds:
        out[f"refunds_{long_w}d"] = count(in_long, rev.is_refund)
        out[f"refund_amount_{long_w}d"] = np.abs(count(in_long, rev.is_refund, rev.amount))
    if "failed_payment" in kinds:
        out[f"failed_payments_{long_w}d"] = count(in_long, rev.is_failed)
        # How recent the last failure is: one last week says more than one two months ago (a
        # SaaS export's accounts with a failure in the last 30 days churned at twice the rate
        # of the rest; the 90 days' count scored them like everyone else).
        out[FAILED_PAYMENT_RECENCY] = _days_since(
            t, _latest(rev.customer[:end], rev.at[:end], rev.is_failed[:end], n)
        )
    if "payment" not in kinds:
        return out
    counted = rev.is_payment | rev.is_refund
    for w in config.windows:
        in_w = since(start(w))
        out[f"revenue_{w}d"] = count(in_w, counted, rev.amount)
        out[f"payments_{w}d"] = count(in_w, rev.is_payment)
    before = slice(0, end)
    out["revenue_total"] = count(before, counted, rev.amount)
    tw = config.trend_window
    recent = since(start(tw))
    prior = since(start(tw, back=2), stop=recent.start)
    out[f"revenue_trend_{tw}d"] = _trend(
        count(recent, counted, rev.amount), count(prior, counted, rev.amount)
    )
    changed = np.nan_to_num(rev.change[in_long], nan=0.0)
    paid = rev.is_payment[in_long]
    if config.payment_changes != "any" and rev.next_at is not None:
        paid = paid & lasting_changes(rev, in_long, t)
    customer = rev.customer[in_long]
    if config.subscription_signals:
        out[f"downgrades_{long_w}d"] = _count(customer, paid & (changed < 0), n)
        out[f"upgrades_{long_w}d"] = _count(customer, paid & (changed > 0), n)
    # Row indices within [0, end) are row indices of the whole arrays.
    last = _last_row(rev.customer[before], rev.is_payment[before], n)
    has_last = last >= 0
    safe = np.where(has_last, last, 0)
    amount = rev.amount[safe] if len(rev.amount) else np.zeros(n)
    change = rev.change[safe] if len(rev.change) else np.zeros(n)
    out["last_payment_amount"] = np.where(has_last, amount, np.nan)
    # Mean order value: what a payment (an order, an invoice) brings on average, over all of them.
    out["mean_payment_amount"] = _mean(
        count(before, rev.is_payment, rev.amount), count(before, rev.is_payment)
    )
    if config.subscription_signals:
        previous = amount - change
        with np.errstate(invalid="ignore", divide="ignore"):
            out["last_payment_change"] = np.where(
                has_last & (previous > 0), change / previous, np.nan
            )
    out["days_since_last_payment"] = _days_since(
        t, _latest(rev.customer[before], rev.at[before], rev.is_payment[before], n)
    )
    if config.paid_period_signals:
        # The end of the latest payment's paid period, as known at T: a subscription that ran
        # out and was not renewed (yet: late payers renew after it) is behind by as many days.
        ends = rev.period_end[before]
        dated = _last_row(rev.customer[before], rev.is_payment[before] & (ends != NAT), n)
        end = np.where(dated >= 0, ends[np.maximum(dated, 0)] if len(ends) else NAT, NAT)
        out["days_until_paid_period_ends"] = np.where(end == NAT, np.nan, (end - t) / DAY_NS)
    return out


def lasting_changes(rev: RevenueArrays, rows: slice, t: int) -> np.ndarray:
    """Of the payments in `rows`, those whose change is no one-off (FeatureConfig.
    payment_changes "lasting"): not undone by the customer's next payment before T (back to the
    amount before it), and no return to the amount two payments back. Between monthly fees of
    29,90, a freeze's 5,00 and the 29,90 after it are no plan changes; the latest change counts
    at once, as a downgrade that precedes a cancellation should."""
    amount, upcoming = rev.amount[rows], rev.next_amount[rows]
    before = amount - rev.change[rows]
    next_known = (rev.next_at[rows] != NAT) & (rev.next_at[rows] < t)
    undone = next_known & ~np.isclose(upcoming, amount) & np.isclose(upcoming, before)
    back = rev.amount_two_back[rows]
    returned = ~np.isnan(back) & np.isclose(amount, back)
    return ~undone & ~returned


def _last_score(fb: FeedbackArrays, mask: np.ndarray, n: int) -> np.ndarray:
    """Per customer, the score of its last masked feedback row (rows are in time order); NaN
    where none."""
    last = _last_row(fb.customer, mask, n)
    if not len(fb.score):
        return np.full(n, np.nan)
    return np.where(last >= 0, fb.score[np.maximum(last, 0)], np.nan)


def _feedback_signals(prep: Prepared, t: int, config: FeatureConfig) -> dict[str, np.ndarray]:
    fb, n = prep.feedback, prep.n_customers
    before = fb.at < t
    scored = before & ~np.isnan(fb.score)
    score = np.nan_to_num(fb.score, nan=0.0)
    long_w = max(config.windows)
    in_long = before & (fb.at >= t - long_w * DAY_NS)
    out: dict[str, np.ndarray] = {}
    kinds = set(FEEDBACK_KINDS if config.feedback_kinds is None else config.feedback_kinds)
    if "nps" in kinds:
        out.update(_nps_signals(fb, scored, score, n, t))
    if "csat" in kinds:
        csat = scored & (fb.kind == 1)
        csat_w = csat & in_long
        out[f"csat_mean_{long_w}d"] = _mean(
            _count(fb.customer, csat_w, n, score), _count(fb.customer, csat_w, n)
        )
        out[f"csat_responses_{long_w}d"] = _count(fb.customer, csat_w, n)
        out["csat_last"] = _last_score(fb, csat, n)
    if "review" in kinds:
        review = scored & (fb.kind == 2)
        out["review_mean"] = _mean(
            _count(fb.customer, review, n, score), _count(fb.customer, review, n)
        )
        out["reviews"] = _count(fb.customer, review, n)
        out["review_last"] = _last_score(fb, review, n)
    if "ticket" in kinds:
        out.update(_ticket_signals(fb, before, n, t, config))
    if kinds:  # comments come with any kind of feedback
        out[f"comments_{long_w}d"] = _count(fb.customer, in_long & fb.has_text, n)
        out[f"negative_comments_{long_w}d"] = _count(fb.customer, in_long & fb.negative_text, n)
    return out


def _nps_signals(
    fb: FeedbackArrays, scored: np.ndarray, score: np.ndarray, n: int, t: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    nps = scored & (fb.kind == 0)
    last_score = _last_score(fb, nps, n)
    has = ~np.isnan(last_score)
    out["nps_last"] = last_score
    out["nps_mean"] = _mean(_count(fb.customer, nps, n, score), _count(fb.customer, nps, n))
    out["nps_responses"] = _count(fb.customer, nps, n)
    out["nps_detractor"] = np.where(has, (last_score <= 6).astype("float64"), np.nan)
    out["nps_promoter"] = np.where(has, (last_score >= 9).astype("float64"), np.nan)
    out["days_since_nps"] = _days_since(t, _latest(fb.customer, fb.at, nps, n))
    return out


def _ticket_signals(
    fb: FeedbackArrays, before: np.ndarray, n: int, t: int, config: FeatureConfig
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    long_w = max(config.windows)
    ticket = before & (fb.kind == 3)
    for w in config.windows:
        out[f"tickets_{w}d"] = _count(fb.customer, ticket & (fb.at >= t - w * DAY_NS), n)
    # Open at T: opened before T and not resolved before T (resolved_at is when it closed).
    open_at_t = ticket & ((fb.resolved_at == NAT) | (fb.resolved_at >= t))
    out["tickets_open"] = _count(fb.customer, open_at_t, n)
    long_open = open_at_t & (fb.at < t - config.long_open_ticket_days * DAY_NS)
    out[f"tickets_open_over_{config.long_open_ticket_days}d"] = _count(fb.customer, long_open, n)
    resolved = (
        (fb.kind == 3)
        & (fb.resolved_at != NAT)
        & (fb.resolved_at < t)
        & (fb.resolved_at >= t - long_w * DAY_NS)
    )
    hours = (fb.resolved_at - fb.at) / 3.6e12
    out[f"ticket_resolution_hours_{long_w}d"] = _mean(
        _count(fb.customer, resolved, n, hours), _count(fb.customer, resolved, n)
    )
    out["days_since_ticket"] = _days_since(t, _latest(fb.customer, fb.at, ticket, n))
    return out


def _empty_prepared() -> Prepared:
    """A Prepared with no customers and no rows, to read off the feature columns."""

    i64 = np.zeros(0, dtype=np.int64)
    f64 = np.zeros(0, dtype=np.float64)
    b = np.zeros(0, dtype=bool)
    return Prepared(
        n_customers=0,
        signup_at=i64,
        churned_at=i64,
        ended_at=i64,
        cancel_requested_at=i64,
        activity=ActivityArrays(
            i64, i64, i64, np.zeros(0, dtype=object), f64, True, i64, i64, np.zeros(1, np.int64)
        ),
        revenue=RevenueArrays(i64, i64, f64, b, b, b, f64, i64, f64, i64, f64),
        feedback=FeedbackArrays(i64, i64, i64, f64, i64, b, b),
    )
