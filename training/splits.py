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

    def role_of(self) -> dict[pd.Timestamp, str]:
        return {
            d: role
            for role in ("train", "validation", "calibration", "test")
            for d in getattr(self, role)
        }

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
) -> DateSplit:
    """The last `test` dates are the holdout, the `calibration` before them calibrate, the
    `validation` before those early-stop, the rest train. Dates whose label horizon would reach
    into the next role are dropped (purged), so no role learns from another's outcome."""
    ordered = sorted(pd.Timestamp(d) for d in set(dates))
    needed = validation + calibration + test + min_train
    if len(ordered) < needed:
        raise ValueError(
            f"{len(ordered)} observation dates are too few: need at least {needed} "
            f"({min_train} train, {validation} validation, {calibration} calibration, {test} test); "
            "widen --from/--to, shorten the step between dates, or lower the split sizes"
        )
    test_d = ordered[-test:]
    cal_d = ordered[-test - calibration : -test]
    val_d = ordered[-test - calibration - validation : -test - calibration]
    train_d = ordered[: -test - calibration - validation]
    horizon = pd.Timedelta(days=horizon_days)

    def purge(block: list[pd.Timestamp], next_start: pd.Timestamp) -> list[pd.Timestamp]:
        return [d for d in block if d + horizon <= next_start]

    cal_d = purge(cal_d, test_d[0])
    val_d = purge(val_d, cal_d[0] if cal_d else test_d[0])
    train_d = purge(train_d, val_d[0] if val_d else test_d[0])
    if not cal_d or not val_d or len(train_d) < min_train:
        raise ValueError(
            f"after dropping dates whose {horizon_days}-day label reaches into the next split, too few "
            "dates remain; use a step between dates of at least the horizon or more dates"
        )
    return DateSplit(tuple(train_d), tuple(val_d), tuple(cal_d), tuple(test_d))
