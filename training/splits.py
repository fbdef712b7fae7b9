"""Time-ordered splits of observation dates: never a random split across time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class DateSplit:
    """Observation dates per role; every date of a role is later than those of the roles before,
    and a date's label horizon ends before the next role begins (no label overlaps)."""

    train: tuple[pd.Timestamp, ...]
    validation: tuple[pd.Timestamp, ...]
    calibration: tuple[pd.Timestamp, ...]
    test: tuple[pd.Timestamp, ...]

    def describe(self) -> str:
        parts = []
        for role in ("train", "validation", "calibration", "test"):
            dates = getattr(self, role)
            parts.append(f"{role} {dates[0].date()}..{dates[-1].date()} ({len(dates)})")
        return ", ".join(parts)


def split_dates(
    dates: Sequence[pd.Timestamp],
    horizon_days: int,
    validation: int,
    calibration: int,
    test: int,
    min_train: int = 3,
    purge: str = "all",
) -> DateSplit:
    """The last `test` dates are the holdout, the `calibration` before them calibrate, the
    `validation` before those early-stop, the rest train. Dates whose label horizon would reach
    into the next role are dropped (purged), so no role learns from another's outcome.

    calibration=0 calibrates on the validation dates (for short histories). purge="test" purges
    only before the test dates (the holdout stays honest; early stopping and calibration may see
    overlapping outcomes), for data too short to leave gaps between every role."""
    if purge not in ("all", "test"):
        raise ValueError(f"purge must be 'all' or 'test', got {purge!r}")
    ordered = sorted(pd.Timestamp(d) for d in set(dates))
    needed = validation + calibration + test + min_train
    if len(ordered) < needed:
        raise ValueError(
            f"{len(ordered)} observation dates are too few: need at least {needed} "
            f"({min_train} train, {validation} validation, {calibration} calibration, {test} test); "
            "widen --from/--to, shorten the step between dates, or lower the split sizes"
        )
    horizon = pd.Timedelta(days=horizon_days)
    test_d = ordered[-test:]
    # The dates before the test whose labels would reach into it are dropped in every mode.
    earlier = [d for d in ordered[:-test] if d + horizon <= test_d[0]]
    cal_d = earlier[len(earlier) - calibration :] if calibration else []
    rest = earlier[: len(earlier) - calibration]
    if purge == "all" and cal_d:
        rest = [d for d in rest if d + horizon <= cal_d[0]]
    val_d = rest[len(rest) - validation :]
    train_d = rest[: len(rest) - validation]
    if purge == "all":
        train_d = [d for d in train_d if d + horizon <= val_d[0]] if val_d else train_d
    if calibration == 0:
        cal_d = list(val_d)
    if not cal_d or not val_d or len(train_d) < min_train:
        raise ValueError(
            f"after dropping dates whose {horizon_days}-day label reaches into the next split, too few "
            "dates remain; use a step between dates of at least the horizon or more dates"
        )
    return DateSplit(tuple(train_d), tuple(val_d), tuple(cal_d), tuple(test_d))
