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

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from features.dictionary import UnknownFeature, describe

# Ten quantile bins per numeric feature (the usual PSI setting; Evidently's default is also ten
# bins, equal-width there); the percentiles keep the distribution finely enough for a KS test.
PSI_BINS = 10
CDF_POINTS = 101
if TYPE_CHECKING:
    from training.model import ChurnModel

EMPTY_BIN_SHARE = 1e-4  # Evidently's PSI: an empty bin counts as this share
SCORE = "churn_probability"  # the score's profile is stored under this name
OTHER = "(other)"  # categories the training rows did not have
MISSING = "(missing)"


@dataclass
class FeatureProfile:
    """One feature's training distribution. Numbers: interior bin `edges` (unique deciles of the
    non-missing values; a value equal to an edge falls in the bin above it), `bin_shares` per
    bin, and the share `cdf` of the non-missing values below each of `grid` (unique
    percentiles, which hold every edge). Categories: `levels` and their `bin_shares`, then '(other)'. Both end with the
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
            present = np.sort(x[~np.isnan(x)])
            if len(present):
                points = np.quantile(present, np.linspace(0, 1, CDF_POINTS))
                step = (CDF_POINTS - 1) // PSI_BINS
                edges = np.unique(points[step : CDF_POINTS - 1 : step])  # the deciles
                grid = np.unique(points)  # holds every edge: one search finds bin and CDF
                cdf = np.searchsorted(present, grid, side="left") / len(present)
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

    def numbers(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """New values of this numeric feature as float64 (NaN for missing)."""
        return _numbers(self.name, values)

    def counts(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Rows per bin (the last bin: missing values) for new values of this feature."""
        if self.kind == "numeric":
            return self.numeric_summary(values)[0]
        series = pd.Series(values)
        missing = series.isna().to_numpy()
        codes = pd.Index(self.levels).get_indexer(series.astype("str")[~missing])
        codes = np.where(codes < 0, len(self.levels), codes)  # an unseen level: '(other)'
        counts = np.bincount(codes, minlength=len(self.levels) + 1)
        return np.r_[counts, missing.sum()].astype(float)

    def numeric_summary(self, values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Numbers: rows per bin (the last: missing), the share of the non-missing values below
        each grid point (the `cdf` of the new values, as stored for training), and how many
        values are not missing. One binary search per value into the grid (about a hundred
        points) gives both, since every bin edge is a grid point."""
        x = _numbers(self.name, values)
        missing = np.isnan(x)
        present = x[~missing]
        grid = np.asarray(self.grid)
        slot = np.searchsorted(grid, present, side="right")  # grid points <= each value
        edges = np.asarray(self.edges)
        edge_prefix = np.r_[0, np.cumsum(np.isin(grid, edges))]
        if edge_prefix[-1] == len(edges):  # the edges are grid points, as fit makes them
            index = edge_prefix[slot]
        else:  # a profile built otherwise: its own search
            index = np.searchsorted(edges, present, side="right")
        counts = np.bincount(index, minlength=len(edges) + 1)
        below = np.cumsum(np.bincount(slot, minlength=len(grid) + 1))[: len(grid)]
        cdf = below / len(present) if len(present) else np.zeros(len(grid))
        return np.r_[counts, missing.sum()].astype(float), cdf, len(present)

    def outside_share(
        self, values: pd.Series | np.ndarray, counts: np.ndarray | None = None
    ) -> float:
        """The share of the present values that the training rows never had: numbers below
        their least or above their largest value, categories not among their levels (NaN when
        none is present). counts: the categories' counts (self.counts), when already taken."""
        if self.kind == "numeric":
            x = _numbers(self.name, values)
            present = x[~np.isnan(x)]
            if not len(present) or not len(self.grid):
                return float("nan")
            return float(np.mean((present < self.grid[0]) | (present > self.grid[-1])))
        counts = self.counts(values) if counts is None else counts
        present = counts[:-1].sum()
        return float(counts[-2] / present) if present else float("nan")

    def current_cdf(self, values: pd.Series | np.ndarray) -> tuple[np.ndarray, int]:
        """Numbers only: the new values' share below each grid point, and how many are present."""
        _, cdf, n = self.numeric_summary(values)
        return cdf, n


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index: sum over bins of (current - reference) * ln(current /
    reference), with empty bins counted as 0.0001 (Evidently's convention)."""
    ref = np.where(np.asarray(reference_shares, float) > 0, reference_shares, EMPTY_BIN_SHARE)
    cur = np.where(np.asarray(current_shares, float) > 0, current_shares, EMPTY_BIN_SHARE)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass
class Season:
    """The training rows of one date a year or so before the reference dates: each feature's
    (and the score's) profile, and per feature the largest PSI a date within
    SEASON_NEIGHBOUR_DAYS of it showed against it (spread), which a partition may differ by
    and still be like it."""

    profiles: dict[str, FeatureProfile]
    spread: dict[str, float] = field(default_factory=dict)


def _numbers(name: str, values: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype("float64", copy=False)
    if isinstance(values, pd.Series) and pd.api.types.is_float_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype="float64")
    except (ValueError, TypeError) as err:
        example = next((v for v in pd.Series(values) if not isinstance(v, int | float)), None)
        raise ValueError(f"feature '{name}' must be numeric, got {example!r}") from err


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
    # Per numeric feature with a direction: (the rows' median, +1 when a higher value goes with
    # a higher risk, -1 when with a lower one; see reason_sides). What a reason is measured
    # against (training.drivers.top_drivers): absent from profiles built before it (getattr).
    reason_sides: dict[str, tuple[float, int]] = field(default_factory=dict)
    # Per category, the levels whose rows the model scores below the rows' mean probability
    # (safe_levels): such a level is no reason for risk. Absent from older profiles (getattr).
    safe_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The export starts after many customers did (first_activity_piles_up), or the history is
    # shorter than a year (young_history): whole-history features grow with its age
    # (serving.monitoring). Absent from older profiles (getattr).
    export_start_censored: bool = False
    # With export_start_censored: the history before the latest reference date, in days (its
    # rows' largest days_since_first_event). An activity window longer than it counted the
    # whole history at every reference date, and grows with the export's age as the
    # whole-history features do (serving.monitoring). Absent from older profiles (getattr).
    export_age_days: float | None = None
    # Per feature (and the score): the PSI the reference dates' rows show against all of them
    # (dates_psi: the largest, or the mean plus three standard deviations). How much the
    # training dates already differ among themselves, which a weekly partition may differ by
    # without drifting. Absent from older profiles (getattr).
    dates_psi: dict[str, float] = field(default_factory=dict)
    # Per numeric feature that a category nearly determines (said_by_categories): that
    # category, whose reason states the same fact ("Plan: Flex" for an average payment of
    # 39.90). Absent from older profiles (getattr).
    said_by: dict[str, str] = field(default_factory=dict)
    # Per numeric customer attribute (a name the feature dictionary does not know), the value
    # ranges [low, high] whose customers did not churn more often than the others
    # (safe_ranges): such a value is no reason for risk. Absent from older profiles (getattr).
    safe_ranges: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # Per category, the levels a lower-risk reason may name (lower_levels): scored below the
    # mean and churned less often than the other customers. Absent from older profiles
    # (getattr: their lower-risk reasons name the safe_levels, as before).
    lower_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per training date of the year before the reference dates ("2013-11-09"), the profiles of
    # its rows, the score's under SCORE (season_profiles). A term-based or seasonal business
    # looks like itself a year before, not like its last 90 days. Absent from older profiles
    # (getattr).
    seasons: dict[str, Season] = field(default_factory=dict)


def build_reference(
    rows: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    probability: np.ndarray,
    backtest: dict[str, float] | None = None,
    export_start: float | None = None,
) -> ReferenceProfile:
    """The profile of training rows (a frame of the features, and `as_of`, `customer_id` and the
    label `churned` when present) and of the model's calibrated probabilities for them.
    export_start: the day first activities pile up on over all training dates (pile_up_start),
    when the rows are only some of them."""
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
    score = FeatureProfile.fit(SCORE, probability, "numeric")
    columns = {name: rows[name] for name in features} | {SCORE: pd.Series(probability)}
    labels = rows["churned"].to_numpy() if "churned" in rows else None
    customers = rows["customer_id"].to_numpy() if "customer_id" in rows else None
    return ReferenceProfile(
        features=features,
        score=score,
        rows=len(rows),
        dates=dates,
        dates_psi=dates_psi(features | {SCORE: score}, columns, rows.get("as_of")),
        backtest={k: float(v) for k, v in (backtest or {}).items() if np.isfinite(v)},
        reason_sides=reason_sides(rows, numeric, probability),
        safe_levels=safe_levels(rows, categorical, probability, labels, customers),
        export_start_censored=(
            censored := first_activity_piles_up(rows, export_start) or young_history(rows)
        ),
        export_age_days=export_age_days(rows) if censored else None,
        said_by=said_by_categories(rows, numeric, categorical),
        lower_levels=lower_levels(rows, categorical, probability, labels, customers),
        safe_ranges=safe_ranges(
            rows, [name for name in numeric if _customer_attribute(name)], labels, customers
        ),
    )


def _customer_attribute(name: str) -> bool:
    """A feature the dictionary has no entry for: a declared customer attribute."""
    try:
        describe(name)
    except UnknownFeature:
        return True
    return False


MIN_DATE_ROWS = 50  # a date of fewer rows is left out of dates_psi (its PSI is mostly noise)


def dates_psi(
    profiles: dict[str, FeatureProfile],
    columns: dict[str, pd.Series],
    as_of: pd.Series | None,
) -> dict[str, float]:
    """Per profile, the PSI a partition may show and still be like the training dates: the
    largest PSI of one observation date's rows against the profile of all the rows, or the mean
    of those PSIs plus three standard deviations when that is more (NannyML's default threshold
    from the reference chunks). Dates of fewer than MIN_DATE_ROWS rows are left out; {} with
    fewer than two dates.

    The training dates of a model differ among themselves: with monthly usage stamped at each
    month's end, days since the last event is about 1 on the 1st and about 15 mid-month, and a
    model trained over both has learned both. A partition that differs from the reference no
    more than one of its own dates did has not drifted (NannyML sets its drift thresholds from
    the spread of the reference period's chunks in the same way)."""
    if as_of is None:
        return {}
    codes, uniques = pd.factorize(pd.Series(as_of).reset_index(drop=True), sort=True)
    sizes = np.bincount(codes[codes >= 0], minlength=len(uniques))
    kept = [k for k in range(len(uniques)) if sizes[k] >= MIN_DATE_ROWS]
    if len(kept) < 2:
        return {}
    groups = [np.flatnonzero(codes == k) for k in kept]
    out: dict[str, float] = {}
    for name, profile in profiles.items():
        values = pd.Series(columns[name]).reset_index(drop=True)
        each = []
        for index in groups:
            counts = profile.counts(values.iloc[index])
            total = counts.sum()
            if total:
                each.append(psi(np.asarray(profile.bin_shares), counts / total))
        if each:
            out[name] = float(max(max(each), np.mean(each) + 3 * np.std(each)))
    return out


# At least this share of the rows had their first activity within one CENSORED_DAYS span:
# the export's first days, not the customers' own (a steady business spreads first activities
# over its history: two years put about 1 % of them in a week).
CENSORED_SHARE = 0.05
CENSORED_DAYS = 7.0
PILE_UP_FACTOR = 5.0  # times the rows each other span of the history holds, on average
MIN_SPANS = 3.0  # the history before a date, in spans, for its rows to show a pile-up


def _day_numbers(as_of: np.ndarray) -> np.ndarray:
    """Observation dates as days (since 1970 for dates; numbers as they are)."""
    if np.issubdtype(np.asarray(as_of).dtype, np.number):
        return np.asarray(as_of, dtype="float64")
    return pd.to_datetime(pd.Series(as_of)).to_numpy("datetime64[ns]").astype("int64") / 86.4e12


def _pile_ups(rows: pd.DataFrame) -> list[tuple[float, int]]:
    """Per observation date whose first activities pile up (see first_activity_piles_up):
    the pile-up's day (the date minus its days since the first event; see _day_numbers) and
    its rows."""
    if "days_since_first_event" not in rows or not len(rows):
        return []
    x = rows["days_since_first_event"].to_numpy(dtype="float64", na_value=np.nan)
    groups = _day_numbers(rows["as_of"].to_numpy()) if "as_of" in rows else np.zeros(len(rows))
    present = ~np.isnan(x)
    found = []
    for day, days in pd.Series(x[present]).groupby(groups[present]):
        values = days.to_numpy()
        # Spans of CENSORED_DAYS, twice with shifted edges: a pile-up split by an edge counts.
        most, centre = 0, 0.0
        for shift in (0.0, CENSORED_DAYS / 2):
            counts = np.bincount(np.floor((values + shift) / CENSORED_DAYS).astype(np.int64))
            if counts.max() > most:
                most = int(counts.max())
                centre = (int(counts.argmax()) + 0.5) * CENSORED_DAYS - shift
        spans = (float(values.max()) + CENSORED_DAYS) / CENSORED_DAYS
        if spans < MIN_SPANS:  # a week or two of history: nothing to compare the span with
            continue
        others = (len(values) - most) / (spans - 1)  # what each other span holds on average
        if most >= PILE_UP_FACTOR * others:  # far above the rest of the history
            found.append((float(day) - centre, most))
    return found


def pile_up_start(rows: pd.DataFrame) -> float | None:
    """The day of the earliest pile-up of first activities over all the rows' observation
    dates (_day_numbers), or None: where an export's start piles them up, every date shows it
    on that day."""
    found = _pile_ups(rows)
    return min(day for day, _ in found) if found else None


def first_activity_piles_up(rows: pd.DataFrame, export_start: float | None = None) -> bool:
    """Whether the rows' first activities pile up in a few days (the export's start, or a
    business's launch): at least CENSORED_SHARE of them within one CENSORED_DAYS span of their
    observation date (`as_of`; one group without it), where that is PILE_UP_FACTOR times what
    each other span of the history holds on average (dates with less than MIN_SPANS spans of
    history show none). Measured against the mean of all spans, the pile-up itself included, a
    7-week export never showed one: 79 % of first activities in one week of five read as 4.8
    times the mean. Then every whole-history feature is capped
    by the export's age and grows with it. The pile-up need not be the oldest first activity: a
    few older rows (payments of annual plans from before the logs begin) sit before it.

    export_start (pile_up_start over all the training dates): only pile-ups on that day count.
    A course provider's registrations pile their first activities up at each term's first
    assignment, a day that moves with the terms: that is the customers, not the export."""
    if "days_since_first_event" not in rows or not len(rows):
        return False
    present = int(rows["days_since_first_event"].notna().sum())
    if not present:
        return False
    piled = sum(
        most
        for day, most in _pile_ups(rows)
        if export_start is None or abs(day - export_start) <= 2 * CENSORED_DAYS
    )
    return piled / present >= CENSORED_SHARE


# A history shorter than this before the latest reference date caps the whole-history features
# at its length, whether the export started after its customers or with the business, and the
# next run sees them grown by the calendar: a 4-month grocery export whose first week held 3
# times the other weeks' first purchases (no pile-up) read "watch (top feature
# active_gap_mean_days: PSI 0.63)" on every run, and 51 % of its tenures lay beyond every
# training value one horizon after the last training date.
YOUNG_HISTORY_DAYS = 365.0


def young_history(rows: pd.DataFrame) -> bool:
    """Whether the history before the rows' latest observation date (export_age_days) is
    shorter than YOUNG_HISTORY_DAYS."""
    age = export_age_days(rows)
    return age is not None and age < YOUNG_HISTORY_DAYS


def export_age_days(rows: pd.DataFrame) -> float | None:
    """The history before the rows' latest observation date, in days: its rows' largest
    days_since_first_event (where first activities pile up at the export's start, the
    export's age then). None without that feature."""
    if "days_since_first_event" not in rows or not len(rows):
        return None
    latest = rows[rows["as_of"] == rows["as_of"].max()] if "as_of" in rows else rows
    age = latest["days_since_first_event"].max()
    return float(age) if pd.notna(age) else None


# A rank correlation weaker than this between a feature and the probability says nothing of
# the direction of a feature the dictionary gives none.
MIN_DIRECTION_CORRELATION = 0.05
DIRECTION_SAMPLE_ROWS = 50_000


def reason_sides(
    rows: pd.DataFrame, numeric: list[str], probability: np.ndarray, seed: int = 0
) -> dict[str, tuple[float, int]]:
    """Per numeric feature, its median on the rows and its direction: the feature dictionary's
    (features.dictionary: more refunds raise the risk, more events lower it), or for a feature
    it gives none (a count per event type, a payment amount, a declared numeric attribute) the
    sign of its rank (Spearman) correlation with the model's probability on the rows (a sample
    of 50,000), when that is at least MIN_DIRECTION_CORRELATION. Features without either are
    left out.

    Why: a reason says that the customer's value raises the risk. Contributions of correlated
    features share credit in ways that read as nonsense: a model that uses the 90-day count as
    the base of a trend gives "117 login events in the last 90 days" (the median customer has
    10) a positive contribution, and on the SaaS example more than half of the low-risk
    customers' reasons were of that kind. training.drivers leaves out a reason whose value is
    on the side of the median that goes with a lower risk. The dictionary comes first because
    the words are read by people: on Online Retail refunds go with a lower probability overall
    (the large buyers return the most), yet "Refunds of 903 in the last 90 days" beside net
    refunds over the whole history is a reason any reader understands."""
    if len(rows) > DIRECTION_SAMPLE_ROWS:
        picked = np.random.default_rng(seed).choice(len(rows), DIRECTION_SAMPLE_ROWS, replace=False)
        picked.sort()
    else:
        picked = np.arange(len(rows))
    score = np.asarray(probability, dtype="float64")[picked]
    sides: dict[str, tuple[float, int]] = {}
    for name in numeric:
        x = _numbers(name, rows[name])
        present = ~np.isnan(x)
        if not present.any():
            continue
        direction = describe(name, strict=False).direction
        if direction == 0:
            sample = x[picked]
            known = ~np.isnan(sample)
            if known.sum() > 2:
                with warnings.catch_warnings():  # a constant column: no correlation (NaN)
                    warnings.simplefilter("ignore", stats.ConstantInputWarning)
                    rho = stats.spearmanr(sample[known], score[known]).statistic
                if np.isfinite(rho) and abs(rho) >= MIN_DIRECTION_CORRELATION:
                    direction = int(np.sign(rho))
        if direction != 0:
            sides[name] = (float(np.median(x[present])), direction)
    return sides


MIN_LEVEL_ROWS = 30  # a level of fewer reference rows is not judged (its mean is noise)
# A level is a reason for risk only where its customers churned more often than the others' with
# A category says a numeric feature's fact when its levels explain at least this share of the
# variance of the feature's signed log (adjusted for the number of levels: epsilon squared).
SAID_BY_SHARE = 0.9
SAID_BY_MAX_LEVELS = 50  # a category of more levels is no plan or tier


def said_by_categories(
    rows: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, str]:
    """Per numeric feature, the category whose levels nearly determine it (SAID_BY_SHARE of
    the variance of its signed log over the rows where both are known), if any: the reasons
    then say that fact once, by the category (training.drivers.merge_same_facts).

    Why: a gym's plan fixes the monthly fee, and 1,169 of 3,797 members read "Plan: Flex
    Monatlich" beside "Average payment of €39", the same fact twice, which looked like a
    second, independent risk (there 0.98 of the average payment's variance). On the log, so
    that one plan far above the others (a yearly fee of 334.80) does not make an amount that
    varies within the rest (by seats) look determined."""
    out: dict[str, str] = {}
    # each category's level codes once (-1: missing), not once per numeric feature
    cats = {c: pd.factorize(rows[c].astype("string"))[0] for c in categorical if c in rows}
    for name in numeric:
        if name not in rows or not cats:
            continue
        x = _numbers(name, rows[name])
        best, share_best = None, SAID_BY_SHARE
        for cat, all_codes in cats.items():
            ok = ~np.isnan(x) & (all_codes >= 0)
            n = int(ok.sum())
            if n < MIN_LEVEL_ROWS:
                continue
            codes = all_codes[ok]
            counts = np.bincount(codes)
            k = int((counts > 0).sum())
            if not 2 <= k <= SAID_BY_MAX_LEVELS or n <= k:
                continue
            logs = np.sign(x[ok]) * np.log1p(np.abs(x[ok]))
            total = float(((logs - logs.mean()) ** 2).sum())
            if total <= 0:
                continue
            means = np.bincount(codes, logs) / np.maximum(counts, 1)
            within = float(((logs - means[codes]) ** 2).sum())
            share = 1.0 - (within / (n - k)) / (total / (n - 1))
            if share >= share_best:
                best, share_best = cat, share
        if best is not None:
            out[name] = best
    return out


# a one-sided Fisher test at this level, shared among the category's levels (Bonferroni).
LEVEL_EVIDENCE_ALPHA = 0.05


def _levels_scored_below_the_mean(
    rows: pd.DataFrame, categorical: list[str], probability: np.ndarray
) -> Iterator[tuple[str, pd.Series, set[str]]]:
    """Per categorical feature of the rows with a known level: its name, its levels as text,
    and those of at least MIN_LEVEL_ROWS rows that the model scores below the rows' mean."""
    score = np.asarray(probability, dtype="float64")
    overall = float(score.mean()) if len(score) else np.nan
    for name in categorical:
        if name not in rows:
            continue
        levels = rows[name].astype("string")
        known = levels.notna().to_numpy()
        if not known.any():
            continue
        by_level = pd.Series(score[known]).groupby(levels[known].to_numpy(), sort=True)
        stats_ = by_level.agg(["mean", "size"])
        below = stats_.index[(stats_["size"] >= MIN_LEVEL_ROWS) & (stats_["mean"] < overall)]
        yield name, levels, {str(level) for level in below}


def safe_levels(
    rows: pd.DataFrame,
    categorical: list[str],
    probability: np.ndarray,
    labels: np.ndarray | None = None,
    customers: np.ndarray | None = None,
) -> dict[str, tuple[str, ...]]:
    """Per categorical feature, the levels (as text) that are no reason for risk: those whose
    reference rows the model scores below the rows' mean probability (among levels of at least
    MIN_LEVEL_ROWS rows), and, given the rows' labels, those whose customers did not churn more
    often than the other customers' (levels_without_evidence).

    Why: as with reason_sides, a category's contribution is credit shared with correlated
    features. On a billing export "Plan at signup: premium_monthly" was a reason for risk for
    431 customers (+0.149 in log-odds, offset by -0.085 for its higher payment and -0.194 for
    its revenue), on the plan with the lowest churn of the monthly plans. A level whose
    customers the model itself scores below the average is not worded as a reason for risk.
    And a model learns some levels from noise: on a SaaS export whose country had no effect,
    "Country: DE" was a reason for 160 customers, of whom 9.4 % churned against 10.3 %."""
    out: dict[str, tuple[str, ...]] = {}
    for name, levels, safe in _levels_scored_below_the_mean(rows, categorical, probability):
        if labels is not None:
            safe |= levels_without_evidence(levels, labels, customers)
        if safe:
            out[name] = tuple(sorted(str(level) for level in safe))
    return out


RANGE_BINS = 5  # quantile bins of a numeric attribute, each judged as a category's level


def safe_ranges(
    rows: pd.DataFrame,
    attributes: list[str],
    labels: np.ndarray | None,
    customers: np.ndarray | None = None,
) -> dict[str, tuple[tuple[float, float], ...]]:
    """Per numeric attribute, the value ranges (of RANGE_BINS quantile bins, the outer ones
    open-ended) whose customers did not churn more often than the others' (levels_without_
    evidence): a value there is no reason for risk, as a category's level without evidence.

    Why: a model's contribution for an attribute is partly noise. On a gym's export "Birth
    year: 1962" was a reason for 114 members born 1974 or earlier, who churned less than the
    others (9.4 % against 11.2 %): the model's response over birth year was U-shaped by a
    percentage point. Without labels nothing is judged."""
    if labels is None:
        return {}
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for name in attributes:
        if name not in rows:
            continue
        x = _numbers(name, rows[name])
        known = ~np.isnan(x)
        if known.sum() < RANGE_BINS * MIN_LEVEL_ROWS:
            continue
        edges = np.unique(np.quantile(x[known], np.linspace(0, 1, RANGE_BINS + 1)))
        if len(edges) < 3:
            continue
        bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        levels = pd.Series(np.where(known, bins.astype(str), None), dtype="string")
        without = levels_without_evidence(levels, labels, customers)
        ranges = []
        for b in sorted(int(level) for level in without):
            low = -np.inf if b == 0 else float(edges[b])
            high = np.inf if b == len(edges) - 2 else float(np.nextafter(edges[b + 1], -np.inf))
            ranges.append((low, high))
        if ranges:
            out[name] = tuple(ranges)
    return out


def lower_levels(
    rows: pd.DataFrame,
    categorical: list[str],
    probability: np.ndarray,
    labels: np.ndarray | None,
    customers: np.ndarray | None = None,
) -> dict[str, tuple[str, ...]]:
    """Per categorical feature, the levels a lower-risk reason may name: scored below the
    rows' mean probability (of at least MIN_LEVEL_ROWS rows) and whose customers churned less
    often than the others' (levels_with_evidence, "less"). Without labels, none.

    Why: a level without evidence of more churn is no reason for risk (safe_levels), but that
    is no evidence of less either. A coffee box's "Postcode area: S" was a lower-risk reason
    for 56 customers, an area whose subscribers churned more than average (16.0 %) and which
    the generator gave no effect."""
    if labels is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name, levels, below in _levels_scored_below_the_mean(rows, categorical, probability):
        lower = below & levels_with_evidence(levels, labels, customers, "less")
        if lower:
            out[name] = tuple(sorted(str(level) for level in lower))
    return out


def levels_without_evidence(
    levels: pd.Series, labels: np.ndarray, customers: np.ndarray | None = None
) -> set[str]:
    """The levels whose customers did not churn more often than the other customers', by a
    one-sided Fisher exact test at LEVEL_EVIDENCE_ALPHA over the number of levels tested.

    A customer counts once per level (stacked observation dates repeat the same customers; the
    test counts people, not rows) and as a churner when any of its rows is labelled churned.
    A missing value is no level. Without churners or without a second level nothing can be
    measured, and no level is left out."""
    counts = _level_counts(levels, labels, customers)
    if counts is None:
        return set()
    return {str(level) for level in counts.index} - _tested_levels(counts, "greater")


def levels_with_evidence(
    levels: pd.Series, labels: np.ndarray, customers: np.ndarray | None, alternative: str
) -> set[str]:
    """The levels whose customers churned more ("greater") or less ("less") often than the
    other customers', by levels_without_evidence's test; none where nothing can be measured."""
    counts = _level_counts(levels, labels, customers)
    return set() if counts is None else _tested_levels(counts, alternative)


def _tested_levels(counts: pd.DataFrame, alternative: str) -> set[str]:
    """Of _level_counts' levels, those the one-sided Fisher test (`alternative`) finds at
    LEVEL_EVIDENCE_ALPHA over the number of levels."""
    total_churned, total = int(counts["sum"].sum()), int(counts["size"].sum())
    alpha = LEVEL_EVIDENCE_ALPHA / len(counts)
    found: set[str] = set()
    for level, churned, size in counts.itertuples():
        table = [
            [churned, size - churned],
            [total_churned - churned, total - size - (total_churned - churned)],
        ]
        if stats.fisher_exact(table, alternative=alternative).pvalue < alpha:
            found.add(str(level))
    return found


def _level_counts(
    levels: pd.Series, labels: np.ndarray, customers: np.ndarray | None
) -> pd.DataFrame | None:
    """Per level, its customers (size) and churners (sum), each customer once; None without
    churners, without customers who stayed or without a second level."""
    y = np.asarray(labels).astype(bool)
    frame = pd.DataFrame(
        {
            "level": levels.to_numpy(dtype=object),
            "who": np.arange(len(y)) if customers is None else np.asarray(customers),
            "y": y,
        }
    )
    frame = frame[levels.notna().to_numpy()]
    people = frame.groupby(["level", "who"], sort=False)["y"].max().reset_index()
    counts = people.groupby("level")["y"].agg(["sum", "size"])
    total_churned, total = int(counts["sum"].sum()), int(counts["size"].sum())
    if len(counts) < 2 or total_churned == 0 or total_churned == total:
        return None
    return counts


REFERENCE_MAX_ROWS = 200_000
REFERENCE_DAYS = 90
SEASON_MIN_ROWS = 200  # of a date's rows, for its season profile
SEASON_MAX_ROWS = 5_000  # a random sample of them beyond this (ten bins need no more)
SEASON_DAYS = 400  # training dates this long before the last one are kept as seasons
SEASON_NEIGHBOUR_DAYS = 21  # dates this near are a season's own spread, and a partition's match


def backtest_figures(
    metrics: dict[str, float], intervals: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """The backtest's holdout metrics with their 95 % interval bounds as '<metric>_lo/_hi'."""
    figures = dict(metrics)
    for metric, (lo, hi) in intervals.items():
        figures[f"{metric}_lo"], figures[f"{metric}_hi"] = lo, hi
    return figures


def reference_for(
    model: ChurnModel, rows: pd.DataFrame, backtest: dict[str, float], seed: int = 0
) -> ReferenceProfile:
    """The training distributions monitoring compares weekly runs with: the training rows of
    the observation dates in the last max(horizon, 90 days) (a random 200,000 when there are
    more) and the model's calibrated probabilities for them. The latest dates, not all of them:
    the population the model was last fit on is the one this week's customers should resemble;
    against two years of stacked dates every feature that grows with the calendar (tenure,
    lifetime totals) or a price change the model has already learned would read as drift."""
    last = pd.Timestamp(rows["as_of"].max())
    window = pd.Timedelta(days=max(int(model.horizon_days), REFERENCE_DAYS))
    recent = pd.to_datetime(rows["as_of"]) > last - window
    start = pile_up_start(rows)
    earlier, rows = rows[~recent], rows[recent]
    if len(rows) > REFERENCE_MAX_ROWS:
        rows = rows.sample(n=REFERENCE_MAX_ROWS, random_state=seed)
    pre = model.preprocessor
    probability = model.predict_proba(rows)
    profile = build_reference(
        rows, pre.numeric, list(pre.categorical), probability, backtest, export_start=start
    )
    profile.seasons = season_profiles(model, earlier, seed)
    return profile


def next_run_reason_sides(
    model: ChurnModel, next_run: tuple[pd.Timestamp, pd.DataFrame] | None
) -> None:
    """Measure the reasons' medians and directions (reason_sides) on the customers the bands
    were set on (training.fit.set_bands_for_next_run): the typical customer whose lower-risk
    side a reason's value must not be on is the one the typical risk is. Nothing without them."""
    if next_run is None or getattr(model, "band_population", None) is None:
        return
    if model.reference is None:
        raise ValueError("build the model's reference profile first (reference_for)")
    day, customers = next_run
    model.reference.reason_sides = reason_sides(
        customers, model.preprocessor.numeric, model.predict_proba(customers, day)
    )


def season_profiles(model: ChurnModel, rows: pd.DataFrame, seed: int = 0) -> dict[str, Season]:
    """Per training date of the year before the reference dates ("2013-11-09"), the profile of
    every model feature and of the score over its rows, and how much the dates within
    SEASON_NEIGHBOUR_DAYS of it differ from it (Season.spread). `rows`: those before the
    reference dates; dates more than SEASON_DAYS before the last of them, or of fewer than
    SEASON_MIN_ROWS rows, are left out; a random SEASON_MAX_ROWS of a date's rows when more.

    Why: monitoring compares a partition with the last 90 days of training dates. A business
    that follows a calendar (terms, courses, seasons) differs from its own last 90 days every
    autumn and is like itself a year before: on OULAD's November export the days to the course's
    end read PSI 5.95 against the summer's training dates, "drift" that was the term starting.
    One date, not a month of them: a feature the calendar sets (days to the term's end) takes
    a value or two per date, and a month of dates spreads it as no one date does."""
    if not len(rows):
        return {}
    pre = model.preprocessor
    as_of = pd.to_datetime(rows["as_of"]).to_numpy()
    rng = np.random.default_rng(seed)
    kept: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}  # each date's rows and scores
    for date in np.unique(as_of[as_of >= as_of.max() - np.timedelta64(SEASON_DAYS, "D")]):
        where = np.flatnonzero(as_of == date)
        if len(where) < SEASON_MIN_ROWS:
            continue
        if len(where) > SEASON_MAX_ROWS:
            where = np.sort(rng.choice(where, SEASON_MAX_ROWS, replace=False))
        part = rows.iloc[where]
        kept[str(pd.Timestamp(date).date())] = (part, model.predict_proba(part))
    out: dict[str, Season] = {}
    for key, (part, probability) in kept.items():
        profiles = {name: FeatureProfile.fit(name, part[name], "numeric") for name in pre.numeric}
        profiles |= {
            name: FeatureProfile.fit(name, part[name], "categorical") for name in pre.categorical
        }
        profiles[SCORE] = FeatureProfile.fit(SCORE, probability, "numeric")
        season = out[key] = Season({k: _slim(v) for k, v in profiles.items()})
        for other, (near, scores) in kept.items():
            apart = abs((pd.Timestamp(other) - pd.Timestamp(key)).days)
            if other == key or apart > SEASON_NEIGHBOUR_DAYS:
                continue
            for name, profile in season.profiles.items():
                counts = profile.counts(scores if name == SCORE else near[name])
                if counts.sum():
                    shift = psi(np.asarray(profile.bin_shares), counts / counts.sum())
                    season.spread[name] = max(season.spread.get(name, 0.0), shift)
    return out


def _slim(profile: FeatureProfile) -> FeatureProfile:
    """A profile that bins and tells its range as the full one does, without the percentile
    grid and CDF a KS test needs (a season profile is only binned: many are stored)."""
    if profile.kind != "numeric" or not profile.grid:
        return profile
    grid = sorted({profile.grid[0], *profile.edges, profile.grid[-1]})
    return replace(profile, grid=grid, cdf=[])
