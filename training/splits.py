"""Time-ordered backtest plans over observation dates: never a random split across time.

A plan has three parts:

* the holdout: the latest observation date(s), scored by a model that saw only dates whose
  labels ended before the holdout begins (the backtest's honest figures);
* the selection folds inside the dates before the holdout, used to choose the number of boosting
  rounds and to fit the calibration on out-of-fold predictions. A time fold validates on one
  date and trains on the dates whose label horizon ends before it (purged: no training label
  overlaps a validation label). When the history is too short for a purged time fold, the
  customers are split into groups instead (train on the other groups, validate on one): labels
  of the same period, but never the same customer's;
* the refit folds: the selection folds plus the holdout fold, for the settings of the model
  refit on every complete date.

When the dates cannot leave a purged gap before any holdout, the plan says so (`honest` False,
with the reason) and the model is still trained, its figures coming from the customer folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fold:
    """Training and validation rows of one fold: by date, and for customer folds by customer
    group (validation customers are those whose group is `group`, training the others)."""

    train: tuple[pd.Timestamp, ...]
    valid: tuple[pd.Timestamp, ...]
    group: int | None = None
    groups: int = 0

    @property
    def kind(self) -> str:
        return "time" if self.group is None else "customers"

    def masks(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Boolean row masks (train, valid) over a training set with as_of and customer_id."""
        as_of = frame["as_of"]
        train = as_of.isin(self.train).to_numpy()
        valid = as_of.isin(self.valid).to_numpy()
        if self.group is not None:
            in_group = customer_groups(frame["customer_id"], self.groups) == self.group
            train = train & ~in_group
            valid = valid & in_group
        return train, valid

    def describe(self) -> str:
        what = f"{dates_text(self.train)} -> {dates_text(self.valid)}"
        return what if self.group is None else f"{what}, customer group {self.group}/{self.groups}"


@dataclass(frozen=True)
class BacktestPlan:
    """Holdout, selection folds and refit folds over the observation dates (module docstring)."""

    dates: tuple[pd.Timestamp, ...]
    horizon_days: int
    holdout: tuple[pd.Timestamp, ...]  # empty when no honest holdout fits the history
    pool: tuple[pd.Timestamp, ...]  # dates whose labels end before the holdout starts
    folds: tuple[Fold, ...]  # choose rounds and calibrate for the backtest model
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def honest(self) -> bool:
        """A time holdout with a purged gap exists."""
        return bool(self.holdout)

    @property
    def holdout_fold(self) -> Fold | None:
        return Fold(self.pool, self.holdout) if self.holdout else None

    @property
    def refit_folds(self) -> tuple[Fold, ...]:
        """The folds whose out-of-sample predictions choose the refit's rounds and calibrate it."""
        return (*self.folds, self.holdout_fold) if self.holdout else self.folds

    def describe(self) -> str:
        parts = [f"{len(self.dates)} observation dates {dates_text(self.dates)}"]
        if self.holdout:
            parts.append(
                f"holdout {dates_text(self.holdout)} (model trained on {dates_text(self.pool)})"
            )
        else:
            parts.append("no time holdout")
        kinds = sorted({f.kind for f in self.folds})
        parts.append(f"{len(self.folds)} selection folds ({', '.join(kinds)})")
        return "; ".join(parts)


def customer_groups(customer_id: pd.Series, groups: int) -> np.ndarray:
    """A stable group number per customer id (a hash, so the same customer is in the same group
    on every date and in every run)."""
    hashed = pd.util.hash_pandas_object(customer_id.astype("str"), index=False).to_numpy()
    return (hashed % np.uint64(groups)).astype(np.int64)


def step_for_span(first: pd.Timestamp, last: pd.Timestamp) -> int:
    """Days between observation dates when not configured: about 24 dates over the span, a day
    short of whole weeks between 1 and 4 (6, 13, 20 or 27 days). Short histories get weekly
    dates (more label periods to learn from), long ones monthly (rows grow with dates;
    consecutive dates repeat the same customers). A day short, so that the dates move through
    the weekdays: on whole weeks every date fell on one weekday, and a weekly run on another
    read a weekend the model had never seen (a B2B's Monday runs after Friday dates: "major
    drift" in the days since the last event every week, probabilities 0.3 points high)."""
    days = max((pd.Timestamp(last) - pd.Timestamp(first)).days, 0)
    weeks = int(np.clip(round(days / 24 / 7), 1, 4))
    return 7 * weeks - 1


def purged_before(
    dates: Sequence[pd.Timestamp], start: pd.Timestamp, horizon_days: int
) -> list[pd.Timestamp]:
    """The dates whose label horizon ends by `start` (their outcome is known before it)."""
    horizon = pd.Timedelta(days=horizon_days)
    return [d for d in dates if d + horizon <= start]


def time_folds(
    dates: Sequence[pd.Timestamp],
    horizon_days: int,
    spacing_days: int,
    max_folds: int,
    min_train: int,
) -> list[Fold]:
    """Up to max_folds time folds, latest first: each validates on one date and trains on the
    dates whose labels end before it; validation dates at least spacing_days apart."""
    ordered = sorted(set(dates))
    folds: list[Fold] = []
    candidate = len(ordered) - 1
    while candidate >= 0 and len(folds) < max_folds:
        valid = ordered[candidate]
        train = purged_before(ordered, valid, horizon_days)
        if len(train) < min_train:
            break
        folds.append(Fold(tuple(train), (valid,)))
        limit = valid - pd.Timedelta(days=spacing_days)
        candidate = max((i for i, d in enumerate(ordered) if d <= limit), default=-1)
    return folds


def customer_folds(dates: Sequence[pd.Timestamp], groups: int) -> list[Fold]:
    """Folds over customers on the same dates: validate on one group, train on the others."""
    ordered = tuple(sorted(set(dates)))
    return [Fold(ordered, ordered, g, groups) for g in range(groups)]


def plan_backtest(
    dates: Sequence[pd.Timestamp],
    horizon_days: int,
    *,
    holdout_dates: int = 1,
    max_folds: int = 3,
    min_train: int = 3,
    customer_groups_n: int = 4,
) -> BacktestPlan:
    """The backtest plan for these observation dates (module docstring). The holdout is the last
    `holdout_dates` dates; it needs at least min_train earlier dates whose labels end before it."""
    ordered = tuple(sorted({pd.Timestamp(d) for d in dates}))
    if not ordered:
        raise ValueError("no observation dates to plan a backtest on")
    if holdout_dates < 1:
        raise ValueError(f"holdout_dates must be at least 1, got {holdout_dates}")
    notes: list[str] = []
    step = int(np.median(np.diff(ordered)).days) if len(ordered) > 1 else horizon_days
    spacing = max(step, horizon_days // 2)
    holdout = ordered[-holdout_dates:] if len(ordered) > holdout_dates else ()
    pool = tuple(purged_before(ordered, holdout[0], horizon_days)) if holdout else ()
    if len(pool) < min_train:
        notes.append(
            f"no honest holdout: the {len(ordered)} observation dates {dates_text(ordered)} leave "
            f"{len(pool)} date(s) whose {horizon_days}-day label ends before the last date "
            f"(at least {min_train} needed); figures come from customer folds over the same "
            "dates (other customers, same period: optimistic when behaviour drifts)"
        )
        holdout, pool = (), ordered
    folds = time_folds(pool, horizon_days, spacing, max_folds, min_train)
    if not folds:
        notes.append(
            f"no purged time fold fits in {dates_text(pool)}: rounds and calibration are chosen on "
            f"{customer_groups_n} customer folds"
        )
        folds = customer_folds(pool, customer_groups_n)
    return BacktestPlan(ordered, horizon_days, tuple(holdout), pool, tuple(folds), tuple(notes))


def with_both_classes(
    plan: BacktestPlan, frame: pd.DataFrame, customer_groups_n: int = 4
) -> BacktestPlan:
    """The plan without a holdout or folds whose training or validation rows hold one label
    class, which can neither stop boosting nor measure it (a 92-backer export stopped at a
    holdout date without a churner, where a run without an honest holdout trains on): the
    holdout gives way to the selection folds (no honest holdout, said), a fold is left out, and
    without any fold left, customer folds over the pool take their place. Unchanged when nothing
    is left to train on; frame: the training set (as_of, customer_id, churned)."""
    y = frame["churned"].to_numpy()

    def measurable(fold: Fold) -> bool:
        train, valid = fold.masks(frame)
        return len(np.unique(y[train])) == 2 and len(np.unique(y[valid])) == 2

    notes = list(plan.notes)
    holdout, pool = plan.holdout, plan.pool
    if plan.holdout_fold is not None and not measurable(plan.holdout_fold):
        notes.append(
            f"no honest holdout: the holdout {dates_text(holdout)} holds one label class only, "
            "so it measures nothing; figures come from the selection folds"
        )
        holdout, pool = (), plan.dates
    folds = [f for f in plan.folds if measurable(f)]
    for fold in plan.folds:
        if fold not in folds:
            notes.append(f"fold {fold.describe()} left out: one label class in its rows")
    if not folds:
        folds = [f for f in customer_folds(pool, customer_groups_n) if measurable(f)]
        if folds:
            notes.append(f"rounds and calibration are chosen on {len(folds)} customer folds")
    if not folds or (holdout == plan.holdout and len(folds) == len(plan.folds)):
        return plan
    return BacktestPlan(plan.dates, plan.horizon_days, holdout, pool, tuple(folds), tuple(notes))


def dates_text(dates: Sequence[pd.Timestamp]) -> str:
    """Dates in words: one date, or 'first..last (count)'."""
    if not len(dates):
        return "(none)"
    first, last = min(dates), max(dates)
    if first == last:
        return str(first.date())
    return f"{first.date()}..{last.date()} ({len(dates)})"
