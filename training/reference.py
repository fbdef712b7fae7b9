"""The training distributions stored with a model, so that monitoring never needs the training data.

A `ReferenceProfile` holds, for every feature and for the model's score, what drift measures need:
quantile bins with the training rows' share in each (numbers), the share of each category
(categories), the share of missing values, and the training rows' cumulative distribution at
the percentiles (for a Kolmogorov-Smirnov statistic). `FeatureProfile.shares` puts new values
into the same bins: the one binning that training and monitoring share.

Built at training time (training.pipeline) from the rows the registered model was refit on, and
the backtest's figures beside them (ROC AUC and its interval, calibration error), which
monitoring compares realized performance with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pandas as pd

# Ten quantile bins per numeric feature (the usual PSI setting; Evidently's default is also ten
# bins, equal-width there); the percentiles keep the distribution finely enough for a KS test.
PSI_BINS = 10
CDF_POINTS = 101
SCORE = "churn_probability"  # the score's profile is stored under this name
OTHER = "(other)"  # categories the training rows did not have
MISSING = "(missing)"


@dataclass
class FeatureProfile:
    """One feature's training distribution. Numbers: interior bin `edges` (unique deciles of the
    non-missing values; a value equal to an edge falls in the bin above it), `bin_shares` per
    bin, and the cumulative share `cdf` of the non-missing values at each of `grid` (unique
    percentiles). Categories: `levels` and their `bin_shares`, then '(other)'. Both end with the
    missing share, so a column that starts to go missing moves the PSI too."""

    name: str
    kind: str  # "numeric" or "categorical"
    rows: int
    bin_shares: list[float]  # the last one is the missing share
    edges: list[float] = field(default_factory=list)
    grid: list[float] = field(default_factory=list)
    cdf: list[float] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)

    @property
    def missing_share(self) -> float:
        return float(self.bin_shares[-1])

    @property
    def labels(self) -> list[str]:
        """A name per bin, in order (for tables and plots)."""
        if self.kind == "categorical":
            return [*self.levels, OTHER, MISSING]
        bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        return [f"[{lo}, {hi})" for lo, hi in pairwise(bounds)] + [MISSING]

    @classmethod
    def fit(cls, name: str, values: pd.Series | np.ndarray, kind: str) -> FeatureProfile:
        """The profile of the training rows' values (kind: 'numeric' or 'categorical')."""
        if kind == "numeric":
            x = _numbers(name, values)
            present = x[~np.isnan(x)]
            if len(present):
                quantiles = np.quantile(present, np.linspace(0, 1, PSI_BINS + 1)[1:-1])
                edges = np.unique(quantiles)
                grid = np.unique(np.quantile(present, np.linspace(0, 1, CDF_POINTS)))
                cdf = np.searchsorted(np.sort(present), grid, side="right") / len(present)
            else:
                edges = grid = cdf = np.zeros(0)
            profile = cls(name, kind, len(x), [], edges.tolist(), grid.tolist(), cdf.tolist())
        elif kind == "categorical":
            text = pd.Series(values).astype("str").where(pd.Series(values).notna())
            levels = sorted(text.dropna().unique().tolist())
            profile = cls(name, kind, len(text), [], levels=levels)
        else:
            raise ValueError(
                f"feature '{name}': kind must be 'numeric' or 'categorical', not {kind!r}"
            )
        counts = profile.counts(values)
        total = counts.sum()
        profile.bin_shares = (counts / total if total else counts).tolist()
        return profile

    def counts(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Rows per bin (the last bin: missing values) for new values of this feature."""
        if self.kind == "numeric":
            x = _numbers(self.name, values)
            missing = np.isnan(x)
            index = np.searchsorted(np.asarray(self.edges), x[~missing], side="right")
            counts = np.bincount(index, minlength=len(self.edges) + 1)
            return np.r_[counts, missing.sum()].astype(float)
        series = pd.Series(values)
        missing = series.isna().to_numpy()
        codes = pd.Index(self.levels).get_indexer(series.astype("str")[~missing])
        codes = np.where(codes < 0, len(self.levels), codes)  # an unseen level: '(other)'
        counts = np.bincount(codes, minlength=len(self.levels) + 1)
        return np.r_[counts, missing.sum()].astype(float)

    def current_cdf(self, values: pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
        """Numbers only: the new values' cumulative share at the stored grid, and how many
        non-missing values there are."""
        x = _numbers(self.name, values)
        present = np.sort(x[~np.isnan(x)])
        if not len(present):
            return np.zeros(len(self.grid)), 0
        return np.searchsorted(present, np.asarray(self.grid), side="right") / len(present), len(
            present
        )


@dataclass
class ReferenceProfile:
    """What monitoring compares each weekly partition with: the training rows' profile of every
    feature and of the score, and the backtest's figures (`backtest`: metric -> value, and
    '<metric>_lo' / '<metric>_hi' for its 95 % interval)."""

    features: dict[str, FeatureProfile]
    score: FeatureProfile
    rows: int
    dates: list[str]
    backtest: dict[str, float] = field(default_factory=dict)


def build_reference(
    rows: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    probability: np.ndarray,
    backtest: dict[str, float] | None = None,
) -> ReferenceProfile:
    """The profile of training rows (a frame of the features, and `as_of` when present) and of
    the model's calibrated probabilities for them."""
    if len(probability) != len(rows):
        raise ValueError(f"{len(probability)} probabilities for {len(rows)} reference rows")
    missing = [c for c in [*numeric, *categorical] if c not in rows.columns]
    if missing:
        raise ValueError(f"the reference rows lack the model's features {missing[:5]}")
    features = {name: FeatureProfile.fit(name, rows[name], "numeric") for name in numeric}
    features |= {name: FeatureProfile.fit(name, rows[name], "categorical") for name in categorical}
    dates = (
        sorted(str(pd.Timestamp(d).date()) for d in rows["as_of"].unique())
        if "as_of" in rows
        else []
    )
    return ReferenceProfile(
        features=features,
        score=FeatureProfile.fit(SCORE, probability, "numeric"),
        rows=len(rows),
        dates=dates,
        backtest={k: float(v) for k, v in (backtest or {}).items() if np.isfinite(v)},
    )


def _numbers(name: str, values: pd.Series | np.ndarray) -> np.ndarray:
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype="float64")
    except (ValueError, TypeError) as err:
        example = next((v for v in pd.Series(values) if not isinstance(v, int | float)), None)
        raise ValueError(f"feature '{name}' must be numeric, got {example!r}") from err
