"""Training sets: one row per (customer, observation date), features as of that date and the
label for [date, date + horizon). Built date by date with the one feature function."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from features.config import FeatureConfig
from features.contract import Tables
from features.io import ParquetChunkWriter, atomic_file
from features.labels import build_labels, check_horizon_observed
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


def iter_snapshots(
    tables: Tables, dates: Sequence[object], config: FeatureConfig, progress: Progress | None = None
) -> Iterator[pd.DataFrame]:
    """For each observation date: its rows of features and label (as_of, customer_id, ..., churned).

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
        rows.insert(0, "as_of", d)
        if progress is not None:
            progress(i, len(dates), d, len(rows))
        yield rows


def build_training_set(
    tables: Tables,
    dates: Sequence[object],
    config: FeatureConfig | None = None,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, FeatureConfig]:
    """The whole training set in memory, with the resolved configuration that made it."""
    if not dates:
        raise ValueError("no observation dates given")
    config = resolve_config(
        tables, config or FeatureConfig(), until=max(as_of_timestamp(d) for d in dates)
    )
    frames = list(iter_snapshots(tables, dates, config, progress))
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
    config = resolve_config(
        tables, config or FeatureConfig(), until=max(as_of_timestamp(d) for d in dates)
    )
    with atomic_file(out) as tmp:
        writer = ParquetChunkWriter(tmp)
        try:
            for rows in iter_snapshots(tables, dates, config, progress):
                writer.write(rows)
        finally:
            writer.close()
    return writer.rows, config
