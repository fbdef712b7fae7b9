"""The churn level of the time of year: how far the registered model's mean probability sat
from the churn its training dates showed, read on the dates of the same weeks a year or two
before the date being scored, and added to its log-odds.

Why: the model is calibrated on the out-of-fold predictions of a few recent validation dates,
pooled, and its features cannot tell a January from an April. A business whose churn follows
the calendar (a term's start, the weeks after Christmas) gets the level of those validation
dates everywhere. On OULAD's registrations (benchmarks/README.md, session 30) the model
predicted 2.9 % in May where 2.2 % withdrew and 2.4 % in November where 3.9 % did, and its
own training dates a year before missed the same way (-0.17 and +0.25 log-odds). The shift is
one number per date, so it moves the level and leaves the ranking of a date's customers alone.

How: per training date, e = logit(churn rate) - logit(mean probability) of the refit on its own
rows (a sample), with its binomial noise v = 1 / (n p (1 - p)). The dates of the same weeks
(SEASON_DAYS either side of the date a year or two before, weighted by closeness) give that
time of year's miss; it is shrunk towards the mean miss of all dates by how much the dates'
misses differ beyond their noise (an empirical-Bayes weight tau^2 / (tau^2 + v); tau^2 is zero
unless the dates differ significantly: between_dates), so that a business without a calendar
gets the mean miss. Without a training date of those weeks (less than a year of dates) the
shift is the mean miss too: the level of all training dates rather than that of the few
validation dates the calibration saw. Measured in benchmarks/README.md (session 30).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2

# Training dates within this many days of the same date a year (two years) before count for
# it, weighted by 1 - distance / SEASON_DAYS: the steps between observation dates are 7 to 30
# days, so one or two dates fall within it each year.
SEASON_DAYS = 30
YEARS_BACK = (1, 2)
# Rows per date the miss is read on (a seeded sample of larger dates): the noise of a date's
# miss at 20,000 rows and 3 % churn is 0.04 log-odds.
ROWS_PER_DATE = 20_000
# The dates' misses must differ beyond their noise at this significance (Cochran's Q) before
# any date gets a level of its own.
BETWEEN_P = 0.01
# The weekly report says how the time of year moves a run's probabilities from this factor on
# the odds (either way).
NOTE_ODDS = 1.1
# ... and how it moved them since the previous run from this factor on (a customer at 50 %
# moves by 1.2 points).
MOVED_NOTE_ODDS = 1.05


@dataclass(frozen=True)
class SeasonalLevel:
    """Per training date its miss in log-odds (`miss`) and that miss's noise variance (`noise`),
    the mean miss over all dates and the variance between dates beyond the noise."""

    dates: tuple[str, ...]
    miss: tuple[float, ...]
    noise: tuple[float, ...]
    mean_miss: float
    between: float  # tau^2

    @classmethod
    def fit(
        cls, as_of: pd.Series | np.ndarray, churned: np.ndarray, probability: np.ndarray
    ) -> SeasonalLevel | None:
        """From training rows: their dates, labels and the model's probabilities. None with
        fewer than two dates."""
        frame = pd.DataFrame(
            {"as_of": pd.to_datetime(np.asarray(as_of)), "y": churned, "p": probability}
        )
        per = frame.groupby("as_of").agg(n=("y", "size"), k=("y", "sum"), p=("p", "mean"))
        if len(per) < 2:
            return None
        rate = (per["k"] + 0.5) / (per["n"] + 1.0)  # never 0 or 1: a date without churners
        mean_p = per["p"].clip(1e-6, 1 - 1e-6)
        miss = np.log(rate / (1 - rate)) - np.log(mean_p / (1 - mean_p))
        noise = 1.0 / (per["n"] * rate * (1 - rate))
        between = between_dates(miss.to_numpy(), noise.to_numpy())
        weight = 1.0 / (noise + between)
        mean_miss = float((weight * miss).sum() / weight.sum())
        return cls(
            tuple(str(d.date()) for d in per.index),
            tuple(float(v) for v in miss),
            tuple(float(v) for v in noise),
            mean_miss,
            between,
        )

    @classmethod
    def of_rows(
        cls,
        as_of: np.ndarray,
        churned: np.ndarray,
        probability: Callable[[np.ndarray], np.ndarray],
        seed: int,
    ) -> SeasonalLevel | None:
        """fit() on at most ROWS_PER_DATE rows per date (a seeded sample of larger dates) of a
        model's own training rows: `probability` gives the model's probabilities for positions
        into them."""
        rows = sample_per_date(pd.Series(as_of), ROWS_PER_DATE, seed)
        return cls.fit(as_of[rows], churned[rows], probability(rows))

    def shift(self, as_of: pd.Timestamp) -> float:
        """The log-odds added to the calibrated probabilities of a date: the miss of the
        training dates of its weeks a year or two before, shrunk towards the mean miss; the
        mean miss when no training date falls in those weeks."""
        weights = self._season_weights(as_of)
        if not weights.any():
            return self.mean_miss
        weights = weights / weights.sum()
        season_miss = float(weights @ np.array(self.miss))
        season_noise = float((weights**2) @ np.array(self.noise))
        trust = self.between / (self.between + season_noise) if self.between > 0 else 0.0
        return self.mean_miss + trust * (season_miss - self.mean_miss)

    def shifts(self, as_of: pd.Series | np.ndarray) -> np.ndarray:
        """shift() per row (one computation per distinct date)."""
        dates = pd.to_datetime(pd.Series(np.asarray(as_of)))
        by_date = {d: self.shift(d) for d in dates.unique()}
        return dates.map(by_date).to_numpy(dtype=float)

    def seasonal(self, as_of: pd.Timestamp) -> bool:
        """Whether a training date falls in the weeks of `as_of` a year or two before."""
        return bool(self._season_weights(as_of).any())

    def _season_weights(self, as_of: pd.Timestamp) -> np.ndarray:
        """Per training date, 1 - its distance in days to the date of `as_of` a year (two
        years) before / SEASON_DAYS, summed over the years; 0 beyond SEASON_DAYS."""
        dates = pd.to_datetime(pd.Index(self.dates))
        weights = np.zeros(len(dates))
        for years in YEARS_BACK:
            distance = np.abs((dates - (as_of - pd.DateOffset(years=years))).days)
            weights += np.clip(1.0 - distance / SEASON_DAYS, 0.0, None)
        return weights

    def note(self, as_of: pd.Timestamp) -> str | None:
        """For the weekly report: how the time of year moves the probabilities of `as_of`
        against the training dates' average, when it does by NOTE_ODDS or more (None
        otherwise, and without a training date of those weeks)."""
        if not self.seasonal(as_of):
            return None
        odds = float(np.exp(self.shift(as_of) - self.mean_miss))
        if abs(np.log(odds)) < np.log(NOTE_ODDS):
            return None
        return (
            f"probabilities are at the churn level of these weeks: the odds x{odds:.2f} against "
            "the training dates' average, as the same weeks a year before churned "
            f"{'more' if odds > 1 else 'less'}."
        )

    def moved_note(self, as_of: pd.Timestamp, previous_as_of: pd.Timestamp) -> str | None:
        """For the weekly report: how the level moved every probability between the previous
        run's date and this one, when it moved the odds by MOVED_NOTE_ODDS or more (None
        otherwise): that part of each customer's change is the calendar's, and the rise
        alerts (serving.alerts) leave it out."""
        odds = float(np.exp(self.shift(as_of) - self.shift(previous_as_of)))
        if abs(np.log(odds)) < np.log(MOVED_NOTE_ODDS):
            return None
        at_half = odds / (1.0 + odds)  # a customer at 50 % before
        return (
            f"since the previous run ({previous_as_of.date()}) the churn level of the time of "
            f"year moved every customer's odds x{odds:.2f} (50 % became {at_half:.1%}): that "
            "part of each change is the calendar's, and the 'risk rose' alerts leave it out."
        )

    def describe(self, as_of: pd.Timestamp) -> str:
        """One line for logs: the shift at `as_of` and where it comes from."""
        shift = self.shift(as_of)
        source = (
            "the training dates of the same weeks a year before, shrunk towards the mean"
            if self.seasonal(as_of)
            else "the mean over the training dates (none falls in the same weeks a year before)"
        )
        return (
            f"level of {as_of.date()}: {shift:+.2f} log-odds (odds x{np.exp(shift):.2f}) from "
            f"{source}; mean miss {self.mean_miss:+.2f}, the dates' misses differ by "
            f"{np.sqrt(self.between):.2f} log-odds (standard deviation) beyond their noise"
        )


def between_dates(miss: np.ndarray, noise: np.ndarray) -> float:
    """The variance of the dates' misses beyond their noise (DerSimonian-Laird's tau^2), or 0
    unless Cochran's Q says the dates differ (p < BETWEEN_P): misses that differ by chance
    alone must not give any date a level of its own."""
    weight = 1.0 / noise
    mean = float((weight * miss).sum() / weight.sum())
    q = float((weight * (miss - mean) ** 2).sum())
    dof = len(miss) - 1
    if dof < 1 or chi2.sf(q, dof) >= BETWEEN_P:
        return 0.0
    scale = float(weight.sum() - (weight**2).sum() / weight.sum())
    return max(0.0, (q - dof) / scale)


def sample_per_date(as_of: pd.Series, rows: int, seed: int) -> np.ndarray:
    """Positions of at most `rows` rows per date (all of smaller dates), in order."""
    rng = np.random.default_rng(seed)
    keep = []
    for positions in pd.Series(np.arange(len(as_of))).groupby(as_of.to_numpy()).groups.values():
        positions = np.asarray(positions)
        if len(positions) > rows:
            positions = rng.choice(positions, rows, replace=False)
        keep.append(positions)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)
