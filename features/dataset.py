"""Training sets: one row per (customer, observation date), features as of that date and the
label for [date, date + horizon). Built date by date with the one feature function."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import Tables
from features.io import ParquetChunkWriter, atomic_file
from features.labels import (
    build_labels,
    check_horizon_observed,
    eligible_mask,
    label_window_end,
    notice_pending_mask,
)
from features.prepared import as_of_timestamp
from features.signals import build_features, resolve_config

Progress = Callable[[int, int, pd.Timestamp, int], None]


def observation_dates(start: object, end: object, every_days: int) -> list[pd.Timestamp]:
    """Dates start, start + every, ... up to and including end."""
    first, last = as_of_timestamp(start), as_of_timestamp(end)
    if every_days <= 0:
        raise ValueError(
            f"the step between observation dates must be positive, got {every_days} days"
        )
    if last < first:
        raise ValueError(f"--to {last.date()} is before --from {first.date()}")
    return list(pd.date_range(first, last, freq=f"{every_days}D"))


def parse_days(text: str) -> int:
    """'30d', '4w' or '30' as a number of days."""
    raw = str(text).strip().lower()
    try:
        if raw.endswith("d"):
            return int(raw[:-1])
        if raw.endswith("w"):
            return 7 * int(raw[:-1])
        return int(raw)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration in days (use e.g. 30d or 4w)") from None


def training_rows(tables: Tables, dates: Sequence[object], config: FeatureConfig) -> int:
    """How many rows a training set over these dates has (customers eligible at each date,
    without a notice pending: training_mask), counted without building a feature. The
    configuration must be resolved."""
    return int(sum(training_mask(tables, d, config).sum() for d in dates))


def training_mask(tables: Tables, as_of: object, config: FeatureConfig) -> np.ndarray:
    """Per customer: a training row at T. The customers scored at T (eligible_mask) but those
    whose notice, given before T, is pending (notice_pending_mask): a run scores them apart,
    so the model learns the churn of the customers it will score."""
    return eligible_mask(tables, as_of, config.churn) & ~notice_pending_mask(tables, as_of)


def notice_rows(tables: Tables, dates: Sequence[object], config: FeatureConfig) -> int:
    """The rows a training set over these dates leaves out for a pending notice (training_mask):
    customers eligible at a date who had given notice before it."""
    notices = tables.customers.get("cancel_requested_at")
    if notices is None or not notices.notna().any():
        return 0
    return int(
        sum((eligible_mask(tables, d, config.churn) & notice_pending_mask(tables, d)).sum()
            for d in dates)
    )  # fmt: skip


def in_customer_sample(customer_ids: pd.Series | np.ndarray, share: float, seed: int) -> np.ndarray:
    """True for the customers of a random `share` of all customers, drawn by a hash of the id
    and the seed: the same customers at every date (whole histories, so nothing in a kept
    customer's rows changes) and in every run, whatever the order of the rows."""
    if share >= 1.0:
        return np.ones(len(customer_ids), dtype=bool)
    ids = np.asarray(customer_ids, dtype=object).astype(str)
    hashed = pd.util.hash_array(ids, hash_key=f"{seed % 10**16:016d}")
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53) < share


def iter_snapshots(
    tables: Tables,
    dates: Sequence[object],
    config: FeatureConfig,
    progress: Progress | None = None,
    customer_share: float = 1.0,
    seed: int = 0,
) -> Iterator[pd.DataFrame]:
    """For each observation date: its rows of features and label (as_of, customer_id, ..., churned)
    of the customers eligible then, but those with a notice pending (training_mask).
    With customer_share below 1, only the rows of that random share of customers
    (in_customer_sample); features are built for everyone, so each kept row is what it would be
    in the whole set.

    The configuration must be resolved (resolve_config) so every date yields the same columns."""
    if config.event_types is None:
        raise ValueError("resolve the feature configuration before building snapshots")
    dates = [as_of_timestamp(d) for d in dates]
    for d in dates:
        check_horizon_observed(tables, d, config.churn)
    for i, d in enumerate(dates, start=1):
        features = build_features(tables, d, config)
        labels = build_labels(tables, d, config.churn)
        rows = features.assign(churned=labels["churned"].to_numpy())
        pending = notice_pending_mask(tables, d)
        if pending.any():  # scored apart at a run: no training row (training_mask)
            gave_notice = tables.customers["customer_id"].to_numpy()[pending]
            rows = rows[~rows["customer_id"].isin(gave_notice)].reset_index(drop=True)
        if customer_share < 1.0:
            kept = in_customer_sample(rows["customer_id"], customer_share, seed)
            rows = rows[kept].reset_index(drop=True)
        rows.insert(0, "as_of", d)
        if progress is not None:
            progress(i, len(dates), d, len(rows))
        yield rows


def resolved_for_training(
    tables: Tables, config: FeatureConfig | None, dates: Sequence[object]
) -> FeatureConfig:
    """The configuration resolved for a training set on `dates`: from the rows before its last
    date, and the lookback also from the returns in that date's label window (rows the labels
    read). The one resolution of a training set: training sized its rows with a configuration
    resolved without those returns, which then travelled with the model (a grocery's check
    said a 42-day lookback, the model scored with 30 and left 1,043 more recent buyers unscored)."""
    config = config or FeatureConfig()
    last = max(as_of_timestamp(d) for d in dates)
    labels_until = label_window_end(last, config.churn.horizon_days)
    return resolve_config(tables, config, until=last, labels_until=labels_until)


def build_training_set(
    tables: Tables,
    dates: Sequence[object],
    config: FeatureConfig | None = None,
    progress: Progress | None = None,
    customer_share: float = 1.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, FeatureConfig]:
    """The whole training set in memory, with the resolved configuration that made it
    (customer_share, seed: only a random share of the customers' rows, see iter_snapshots)."""
    if not dates:
        raise ValueError("no observation dates given")
    config = resolved_for_training(tables, config, dates)
    frames = list(iter_snapshots(tables, dates, config, progress, customer_share, seed))
    return pd.concat(frames, ignore_index=True), config


def write_training_set(
    tables: Tables,
    dates: Sequence[object],
    out: str | Path,
    config: FeatureConfig | None = None,
    progress: Progress | None = None,
) -> tuple[int, FeatureConfig]:
    """Stream the training set to one Parquet file, date by date (memory stays that of one
    date), replacing `out` only when every date is written. Returns rows written and config."""
    if not dates:
        raise ValueError("no observation dates given")
    config = resolved_for_training(tables, config, dates)
    with atomic_file(out) as tmp:
        writer = ParquetChunkWriter(tmp)
        try:
            for rows in iter_snapshots(tables, dates, config, progress):
                writer.write(rows)
        finally:
            writer.close()
    return writer.rows, config
