"""Who is scored at T, and the churn label for [T, T + horizon).

Features use rows dated strictly before T and the label window starts at T itself, so nothing
falls between them: daily data stamped at midnight puts a day's purchases (or a cancellation)
on T, and they count in the label."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import ChurnDefinition
from features.contract import Tables
from features.prepared import (
    DAY_NS,
    NAT,
    Prepared,
    as_of_timestamp,
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


def eligible_mask(tables: Tables, as_of: object, churn: ChurnDefinition) -> np.ndarray:
    """Customers scored at T: signed up before T, not churned before T and, for non-contractual
    churn, with qualifying activity in the lookback window [T - lookback, T).

    A customer whose churned_at is T itself is still a customer before T: eligible at T, and
    its label (churned_at in [T, T + horizon)) is 1."""
    prep = prepare(tables)
    t = as_of_timestamp(as_of).value
    mask = (prep.signup_at < t) & ((prep.churned_at == NAT) | (prep.churned_at >= t))
    if churn.mode == "non_contractual":
        mask &= _active_between(prep, churn, t - churn.lookback_days * DAY_NS, t)
    return mask


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
    observed_until (never later than the data's end), else the data's end."""
    data_end = tables.data_end()
    if churn.observed_until is not None:
        configured = pd.Timestamp(churn.observed_until)
        if configured <= data_end:
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
