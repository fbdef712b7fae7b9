"""Monitoring, as pure functions over one scored partition: realized performance once the labels
have matured, drift against the model's training distributions, the performance expected from
the calibrated probabilities before the labels exist (CBPE), and a verdict. Whole-history
features of an export that starts after many of its customers, or of a history shorter than a
year, grow with the export's age: their PSI is shown and does not count as drift
(export_start_censored). Nor does a PSI no larger than
one of the training dates showed against all of them (ReferenceProfile.dates_psi), nor a feature
that is like the training date of the same weeks a year before (ReferenceProfile.seasons: a
term or a season the model has learned).

Definitions follow the known libraries so that the figures mean what readers expect:
- PSI over the training rows' quantile bins (training.reference), with empty bins counted as
  0.0001 as Evidently does, and the usual bands: below 0.1 stable, 0.1-0.25 moderate, 0.25 and
  above major (a feature "drifted").
- A Kolmogorov-Smirnov test for numbers (the statistic at the stored percentiles of the training
  rows, so a slight lower bound of the exact two-sample one; p-value from Kolmogorov's limiting
  distribution at sqrt(n m / (n + m)) D, the large-sample form of scipy's ks_2samp) and a
  chi-squared test of the 2 x k table of category counts for categories (Evidently's tests for
  small samples). P-values are reported, never the flag: at 100,000 customers every trivial
  shift is significant, which is why Evidently itself switches to a distance above 1,000 rows.
- CBPE as NannyML defines it: with calibrated probabilities p, a customer counts as p of a
  churner and 1 - p of a stayer, which gives the expected ROC curve and so the expected ROC AUC;
  the interval is that of the realized AUC if the labels were drawn from p (simulated labels).
The IO (reading partitions, labels, MLflow, files) is in serving.monitoring_job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import kolmogorov
from scipy.stats import binomtest, chi2_contingency, norm, rankdata

from features.dictionary import window_reach_days
from reporting import formatting as fmt
from training.evaluation import binary_metrics, quantile_bins
from training.reference import (
    SCORE,
    SEASON_NEIGHBOUR_DAYS,
    FeatureProfile,
    ReferenceProfile,
    Season,
    psi,
)

PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
MAX_OUTSIDE_SHARE = 0.01  # a partition within the training dates' spread: at most 1 % new values
TOP_FEATURES = 10  # drift of one of the model's 10 most important features can call a retrain
# A PSI whose own test (KS or chi-squared) gives p at or above this is no drift: on a few dozen
# customers PSI is large by chance (59 customers of a ratings site read "overdue_ratio: PSI
# 0.64 (major drift)" with KS p 0.21). Not where the missing share moved by more than
# CHANCE_MISSING_SHIFT, which the KS test does not see.
DRIFT_TEST_P = 0.05
CHANCE_MISSING_SHIFT = 0.05
LEVEL = 0.95
NO_REFERENCE = "no reference distributions: retrain"
NO_NEWER_LABELS = "a retrain would see no newer labels:"  # how no_newer_labels starts
REALIZED_METRICS = ("roc_auc", "pr_auc", "lift_top_decile", "brier", "ece", "log_loss")


# Whole-history features: on an export that starts after many customers did, they are capped
# at the export's age (a customer active since before it "first" appears on its first day) and
# grow with it from one run to the next; the oldest cohort of a business that launched with a
# crowd does the same, and so do the gaps between active days (none longer than the export can
# be seen: a 7-week export's mean gap read PSI 0.51 two weeks after training), and activity
# windows longer than the export's age at training (grows_with_export's export_age_days). So
# does the time since the last ticket or survey answer: before the export there is none to
# see, and more customers have had one the older the export is; and how overdue a customer is
# against its median gap, which the export's age caps (Online Retail's last two months read
# "watch (overdue_ratio: PSI 0.25)" on the first run after training). Their
# PSI then measures the calendar, not the customers: a KKBox-shaped export read "watch
# (feature days_since_first_event: PSI 1.97)" on every run. Such a move is shown
# (grows_with_export) and kept out of the verdict (export_start_censored).
GROWS_WITH_EXPORT = frozenset(
    {"days_since_first_event", "days_since_first_active", "lifetime_events",
     "lifetime_active_days", "revenue_total", "active_day_rate",
     "active_gap_mean_days", "active_gap_median_days", "overdue_ratio",
     "days_since_ticket", "days_since_nps", "days_since_failed_payment",
     # whole-history counts of answers: a gym's first run read "watch (nps_responses: PSI 0.35)"
     "nps_responses", "reviews"}
)  # fmt: skip
GROWS_WITH_EXPORT_PREFIXES = ("no_activity_chance_",)


def export_start_censored(reference: ReferenceProfile) -> bool:
    """Whether the reference rows' first activities piled up at the export's start
    (training.reference.first_activity_piles_up) or their history is shorter than a year
    (young_history): then the whole-history features (GROWS_WITH_EXPORT) grow with the
    export's age rather than with the customers."""
    return bool(getattr(reference, "export_start_censored", False))


# The days since the last activity or payment, where the training rows reached the export's age
# (a customer whose only activity was on its first day): capped by it as the whole-history
# features are. A 2-month shop export trained on dates up to 30 days into it read "major
# drift: days_since_last_active" when scored at 60 days with a 35-day lookback.
RECENCIES = ("days_since_last_event", "days_since_last_active", "days_since_last_payment")


def _reaches(reference: ReferenceProfile, name: str, age: float) -> bool:
    """Whether the training rows' largest value of the feature is the export's age (a day's
    slack): the history, not the customers, set the top of its range."""
    grid = reference.features[name].grid
    return bool(grid) and grid[-1] >= age - 1.0


TENURE = "tenure_days"
# Tenure is the first activity's age where the export dates each signup by it (an order export
# mapped `signup_at` to the first basket): then it grows with the export's age as that does. A
# grocery's exports read "watch (tenure_days: PSI 3.62, major drift)" on every run, beside the
# same PSI for days_since_first_event shown as the export's age.
SAME_AS_FIRST_ACTIVITY_SHARE = 0.95


def signup_is_first_activity(features: pd.DataFrame) -> bool:
    """Whether tenure is the days since the first activity (within a day) for at least
    SAME_AS_FIRST_ACTIVITY_SHARE of the rows that have both."""
    if not {TENURE, "days_since_first_event"} <= set(features.columns):
        return False
    tenure = features[TENURE].to_numpy(dtype="float64", na_value=np.nan)
    first = features["days_since_first_event"].to_numpy(dtype="float64", na_value=np.nan)
    both = ~np.isnan(tenure) & ~np.isnan(first)
    if not both.any():
        return False
    return bool(np.mean(np.abs(tenure[both] - first[both]) <= 1.0) >= SAME_AS_FIRST_ACTIVITY_SHARE)


# A business whose oldest customers signed up at most this long before its export began
# launched with the export: its tenures are capped by the calendar, not by the customers.
LAUNCH_SLACK_DAYS = 90


def launched_with_the_export(
    reference: ReferenceProfile, age: float | None, features: pd.DataFrame
) -> bool:
    """Whether the training rows' longest tenure is about the export's age at the latest
    reference date (at least it, at most LAUNCH_SLACK_DAYS more), and the scored rows' longest
    is still about the longest first activity's age: a business as young as its export, whose
    tenures grow with the calendar. A scooter app launched three weeks before its 10-month
    export read "watch (tenure_days: PSI 0.45, major drift)" on its first run. Tenures years
    longer than the export at the run (a CRM's signups) are the customers' own."""
    profile = reference.features.get(TENURE)
    if age is None or profile is None or not profile.grid:
        return False
    if not age - 1.0 <= profile.grid[-1] <= age + LAUNCH_SLACK_DAYS:
        return False
    if {TENURE, "days_since_first_event"} <= set(features.columns):
        tenure = features[TENURE].to_numpy(dtype="float64", na_value=np.nan)
        first = features["days_since_first_event"].to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(tenure).all() or np.isnan(first).all():
            return False
        return bool(np.nanmax(tenure) <= np.nanmax(first) + LAUNCH_SLACK_DAYS)
    return True


def grows_with_export(name: str, export_age_days: float | None = None) -> bool:
    """A whole-history feature, whose values grow with an export's age (GROWS_WITH_EXPORT), or
    a window (activity, revenue, payments, tickets) as long as the export's age at the latest
    reference date or longer (ReferenceProfile.export_age_days; at every earlier date it was
    cut short by the export's start): a 7-week export's 90-day counts read "retrain
    (song_events_90d: PSI 0.79)" on the first run after training, and Online Retail's last two
    months "watch (revenue_trend_30d: PSI 3.26)", its 60 days reaching past the export's 30."""
    if name in GROWS_WITH_EXPORT or name.startswith(GROWS_WITH_EXPORT_PREFIXES):
        return True
    reach = window_reach_days(name)
    return reach is not None and export_age_days is not None and reach >= export_age_days


# ---------------------------------------------------------------------------------- drift


def psi_band(value: float) -> str:
    """'stable' (< 0.1), 'moderate' (0.1-0.25) or 'major' (>= 0.25); '' when not measured."""
    if not np.isfinite(value):
        return ""
    return "major" if value >= PSI_MAJOR else "moderate" if value >= PSI_MODERATE else "stable"


def ks_test(profile: FeatureProfile, values: pd.Series | np.ndarray) -> tuple[float, float]:
    """KS statistic and p-value of new numeric values against the profile's stored percentiles
    (see the module docstring); NaN when either side has no values."""
    _, current, n = profile.numeric_summary(values)
    return _ks(profile, current, n)


def _ks(profile: FeatureProfile, current: np.ndarray, n: int) -> tuple[float, float]:
    m = round(profile.rows * (1 - profile.missing_share))
    if n == 0 or m == 0 or not len(profile.grid):
        return float("nan"), float("nan")
    statistic = float(np.max(np.abs(current - np.asarray(profile.cdf))))
    effective = n * m / (n + m)
    return statistic, float(kolmogorov(np.sqrt(effective) * statistic))


def chi2_test(profile: FeatureProfile, counts: np.ndarray) -> tuple[float, float]:
    """Chi-squared statistic and p-value of the 2 x k table of training and current counts per
    category (missing values and unseen levels are categories too); NaN with one category."""
    reference = np.asarray(profile.bin_shares) * profile.rows
    table = np.vstack([reference, counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or counts.sum() == 0:
        return float("nan"), float("nan")
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def drift_row(profile: FeatureProfile, values: pd.Series | np.ndarray) -> dict[str, object]:
    """One feature's drift: PSI and its band, the test (KS or chi-squared) with its statistic
    and p-value, and the missing share in training and now."""
    if profile.kind == "numeric":
        counts, current, n = profile.numeric_summary(values)
        test, (statistic, p_value) = "ks", _ks(profile, current, n)
    else:
        counts = profile.counts(values)
        test, (statistic, p_value) = "chi2", chi2_test(profile, counts)
    total = counts.sum()
    shares = counts / total if total else counts
    value = psi(np.asarray(profile.bin_shares), shares) if total else float("nan")
    return {
        "feature": profile.name,
        "kind": profile.kind,
        "psi": value,
        "psi_band": psi_band(value),
        "drifted": bool(np.isfinite(value) and value >= PSI_MAJOR),
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "missing_reference": profile.missing_share,
        "missing_current": float(counts[-1] / total) if total else float("nan"),
        "rows": int(total),
        "outside_training_range": profile.outside_share(
            values, None if profile.kind == "numeric" else counts
        ),
    }


def feature_drift(
    reference: ReferenceProfile,
    features: pd.DataFrame,
    probability: np.ndarray | None = None,
    importance: dict[str, float] | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Drift of every profiled feature of a partition (and of the score, as the feature
    'churn_probability', when probabilities are given), with each feature's importance rank in
    the model (1 = most important; `top` for the first TOP_FEATURES), largest PSI first.
    as_of: the partition's date, which picks the reference's season profile (season_for;
    season_psi: the PSI against the training date of the same weeks a year or two before)."""
    missing = [name for name in reference.features if name not in features.columns]
    if missing:
        raise ValueError(
            f"table 'features' of the partition lacks the model's features {missing[:5]} "
            f"(it has {len(features.columns)} columns, e.g. {list(features.columns[:5])})"
        )
    rows = [drift_row(profile, features[name]) for name, profile in reference.features.items()]
    if probability is not None:
        rows.append(drift_row(reference.score, probability))
    out = pd.DataFrame(rows)
    ranks = importance_ranks(importance or {})
    out["importance_rank"] = out["feature"].map(ranks).astype("float64")
    out["top"] = (out["importance_rank"] <= TOP_FEATURES) | (out["feature"] == SCORE)
    # Whole-history features of an export that starts after its customers: the calendar moves
    # them, so their PSI is shown and is no drift (export_start_censored).
    censored = export_start_censored(reference)
    age = getattr(reference, "export_age_days", None)
    out["grows_with_export"] = [censored and grows_with_export(f, age) for f in out["feature"]]
    if censored and (
        signup_is_first_activity(features) or launched_with_the_export(reference, age, features)
    ):
        out.loc[out["feature"] == TENURE, "grows_with_export"] = True
    if censored and age is not None:
        capped = [f for f in RECENCIES if f in reference.features and _reaches(reference, f, age)]
        out.loc[out["feature"].isin(capped), "grows_with_export"] = True
    out.loc[out["grows_with_export"], "drifted"] = False
    out["by_chance"] = (
        (out["p_value"] >= DRIFT_TEST_P)
        & ((out["missing_current"] - out["missing_reference"]).abs() <= CHANCE_MISSING_SHIFT)
    ).astype(bool)
    out.loc[out["by_chance"], "drifted"] = False
    # No more than one training date differed from all of them (ReferenceProfile.dates_psi),
    # inside the values training had: the model has seen such a population (monthly data
    # scored on the 1st, trained mid-month). PSI cannot tell values just above the top bin's
    # edge from values far beyond the training range, hence the range.
    out["dates_psi"] = out["feature"].map(getattr(reference, "dates_psi", None) or {})
    out["dates_psi"] = out["dates_psi"].astype("float64")
    out["within_training_dates"] = (
        (out["psi"] <= out["dates_psi"])
        & (out["outside_training_range"].fillna(0.0) <= MAX_OUTSIDE_SHARE)
    ).astype(bool)
    out.loc[out["within_training_dates"], "drifted"] = False
    # Like the training date of the same weeks a year before, or within what the dates around
    # it differed from it: a term or a season the model has learned, not drift
    # (training.reference.season_profiles).
    season = season_for(getattr(reference, "seasons", None) or {}, as_of)
    out["season_psi"] = np.nan
    if season is not None:
        columns = {n: features[n] for n in reference.features}
        if probability is not None:
            columns[SCORE] = probability
        out["season_psi"] = [
            _season_psi(season.profiles.get(name), columns.get(name)) for name in out["feature"]
        ]
    spread = out["feature"].map(season.spread if season is not None else {}).astype("float64")
    out["like_a_year_before"] = (
        (out["season_psi"] < PSI_MAJOR) | (out["season_psi"] <= spread)
    ).astype(bool)
    out.loc[out["like_a_year_before"], "drifted"] = False
    return out.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


SEASON_RANGE_SLACK = 0.1


def season_for(seasons: dict[str, Season], as_of: pd.Timestamp | str | None) -> Season | None:
    """The season profile of the training date nearest the partition's date one or two years
    before (within SEASON_NEIGHBOUR_DAYS), or None."""
    if as_of is None or not seasons:
        return None
    when = pd.Timestamp(as_of)
    best, distance = None, SEASON_NEIGHBOUR_DAYS + 1
    for key in seasons:
        for years in (1, 2):
            apart = abs((pd.Timestamp(key) + pd.DateOffset(years=years) - when).days)
            if apart < distance:
                best, distance = key, apart
    return seasons[best] if best is not None else None


def _season_psi(profile: FeatureProfile | None, values: pd.Series | np.ndarray | None) -> float:
    """The PSI of the values against a season profile, NaN without one, or when more than
    MAX_OUTSIDE_SHARE of them lie outside its range (PSI cannot tell how far outside)."""
    if profile is None or values is None:
        return float("nan")
    counts = profile.counts(values)
    total = counts.sum()
    if not total:
        return float("nan")
    if profile.kind == "numeric" and len(profile.grid):
        # Beyond the date's range by more than a tenth of its span: a partition a few days off
        # that date, and one date's range is narrower than the year's.
        x = profile.numbers(values)
        x = x[~np.isnan(x)]
        lo, hi = profile.grid[0], profile.grid[-1]
        pad = SEASON_RANGE_SLACK * (hi - lo)
        outside = float(np.mean((x < lo - pad) | (x > hi + pad))) if len(x) else 0.0
    else:
        outside = profile.outside_share(values, counts)
    if np.isfinite(outside) and outside > MAX_OUTSIDE_SHARE:
        return float("nan")
    return psi(np.asarray(profile.bin_shares), counts / total)


def importance_ranks(importance: dict[str, float]) -> dict[str, int]:
    """1 for the most important feature, 2 for the next, ... (features with no gain are left out)."""
    ordered = sorted((v, k) for k, v in importance.items() if v > 0)
    return {name: rank for rank, (_, name) in enumerate(reversed(ordered), start=1)}


# ---------------------------------------------------------------------------------- realized


def wilson_interval(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's binomtest.proportion_ci); NaN for 0 trials."""
    if trials <= 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(trials)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def auc_interval(
    auc: float, churners: int, stayers: int, level: float = LEVEL
) -> tuple[float, float]:
    """Hanley-McNeil interval of a ROC AUC from its churners and stayers (a closed form: one per
    partition costs nothing, where a bootstrap of 100,000 rows would cost seconds)."""
    if not np.isfinite(auc) or churners == 0 or stayers == 0:
        return float("nan"), float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (churners - 1) * (q1 - auc**2) + (stayers - 1) * (q2 - auc**2)
    ) / (churners * stayers)
    half = norm.ppf(0.5 + level / 2) * np.sqrt(max(variance, 0.0))
    return float(max(0.0, auc - half)), float(min(1.0, auc + half))


def realized_metrics(churned: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC AUC (with its interval), PR AUC, top-decile lift, Brier score, calibration error,
    log loss, the realized and predicted churn rates with the realized rate's Wilson interval
    (training.evaluation.binary_metrics for the metrics: one implementation of each)."""
    y = np.asarray(churned, dtype=float)
    p = np.asarray(probability, dtype=float)
    metrics = binary_metrics(y, p)
    churners = int(y.sum())
    out = {k: metrics[k] for k in REALIZED_METRICS}
    out["roc_auc_lo"], out["roc_auc_hi"] = auc_interval(out["roc_auc"], churners, len(y) - churners)
    out["customers"], out["churners"] = float(len(y)), float(churners)
    out["realized_rate"] = metrics["positive_rate"]
    out["realized_rate_lo"], out["realized_rate_hi"] = wilson_interval(churners, len(y))
    out["predicted_rate"] = float(p.mean()) if len(p) else float("nan")
    return out


def realized_by_group(
    frame: pd.DataFrame, dimensions: list[str], min_customers: int = 1
) -> pd.DataFrame:
    """Realized churn against predicted per value of each dimension (risk band, segments): one
    row per (dimension, segment) with customers, churners, the realized rate and its Wilson
    interval, the predicted rate (mean probability) and expected churners. `frame` has
    churned, churn_probability and the dimension columns; 'all' is the first row."""
    for column in ("churned", "churn_probability", *dimensions):
        if column not in frame.columns:
            raise ValueError(f"realized churn by group needs the column '{column}'")
    y = frame["churned"].to_numpy(dtype=float)
    p = frame["churn_probability"].to_numpy(dtype=float)
    rows = [_group_row("all", "all", len(y), int(y.sum()), float(p.sum()))]
    for dimension in dimensions:
        values = frame[dimension].astype("str").where(frame[dimension].notna(), "(missing)")
        codes, names = pd.factorize(values, sort=True)
        customers = np.bincount(codes, minlength=len(names))
        churners = np.bincount(codes, weights=y, minlength=len(names))
        expected = np.bincount(codes, weights=p, minlength=len(names))
        for k, name in enumerate(names):
            if customers[k] >= min_customers:
                rows.append(
                    _group_row(
                        dimension, str(name), int(customers[k]), int(churners[k]), expected[k]
                    )
                )
    return pd.DataFrame(rows)


def _group_row(
    dimension: str, segment: str, customers: int, churners: int, expected: float
) -> dict[str, object]:
    lo, hi = wilson_interval(churners, customers)
    return {
        "dimension": dimension,
        "segment": segment,
        "customers": customers,
        "churners": churners,
        "realized_rate": churners / customers if customers else float("nan"),
        "realized_rate_lo": lo,
        "realized_rate_hi": hi,
        "predicted_rate": expected / customers if customers else float("nan"),
        "expected_churners": float(expected),
    }


# ---------------------------------------------------------------------------------- CBPE


def expected_roc_auc(probability: np.ndarray) -> float:
    """NannyML's CBPE ROC AUC: the area under the expected ROC curve, where at each threshold
    the expected true positives are the sum of p above it and the false positives the sum of
    1 - p (equal probabilities form one step of the curve)."""
    p = np.asarray(probability, dtype=float)
    if len(p) == 0:
        return float("nan")
    _, inverse = np.unique(-p, return_inverse=True)  # descending probability
    positives = np.bincount(inverse, weights=p)
    negatives = np.bincount(inverse, weights=1 - p)
    if positives.sum() <= 0 or negatives.sum() <= 0:
        return float("nan")
    tpr = np.r_[0.0, np.cumsum(positives)] / positives.sum()
    fpr = np.r_[0.0, np.cumsum(negatives)] / negatives.sum()
    return float(np.trapezoid(tpr, fpr))


@dataclass
class Expected:
    """CBPE figures of one partition: the expected ROC AUC (NannyML) and the interval the realized
    AUC falls in with probability LEVEL if the probabilities are calibrated; the expected churn
    rate with its interval, and the calibration error that chance alone gives (its upper bound is
    the most a calibrated model shows on this many customers)."""

    roc_auc: float
    roc_auc_lo: float
    roc_auc_hi: float
    churn_rate: float
    churn_rate_lo: float
    churn_rate_hi: float
    ece_hi: float
    reps: int
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items() if k != "extra"} | self.extra


def cbpe(probability: np.ndarray, reps: int = 200, seed: int = 0, level: float = LEVEL) -> Expected:
    """Confidence-based performance estimation from calibrated probabilities (see Expected):
    `reps` sets of labels drawn from p give the spread of the realized AUC, churn rate and
    calibration error a calibrated model would show. Vectorized: each draw is one pass over the
    rows (ranks are computed once)."""
    p = np.asarray(probability, dtype=float)
    n = len(p)
    if n == 0:
        nan = float("nan")
        return Expected(nan, nan, nan, nan, nan, nan, nan, 0)
    rng = np.random.default_rng(seed)
    p32 = p.astype(np.float32)
    ranks = rankdata(p).astype(np.float32)  # sums of float32 ranks: AUC exact to about 1e-6
    bins = quantile_bins(p, 10)
    n_bins = int(bins.max()) + 1
    predicted_per_bin = np.bincount(bins, weights=p, minlength=n_bins)
    onehot = np.zeros((n, n_bins), dtype=np.float32)
    onehot[np.arange(n), bins] = 1.0
    aucs, rates, eces = [], [], []
    chunk = max(1, min(reps, 2_000_000 // max(n, 1)))
    for start in range(0, reps, chunk):
        # simulated labels (float32 draws: half the memory traffic; p's own precision is ample)
        draws = (rng.random((min(chunk, reps - start), n), dtype=np.float32) < p32).astype(
            np.float32
        )
        churners = draws.sum(axis=1, dtype=np.float64)
        stayers = n - churners
        rank_sum = draws @ ranks
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append((rank_sum - churners * (churners + 1) / 2) / (churners * stayers))
        rates.append(churners / n)
        realized_per_bin = draws @ onehot
        eces.append(np.abs(realized_per_bin - predicted_per_bin).sum(axis=1) / n)
    auc, rate, ece = (np.concatenate(x) for x in (aucs, rates, eces))
    auc = auc[np.isfinite(auc)]
    alpha = (1 - level) / 2
    auc_lo, auc_hi = np.quantile(auc, [alpha, 1 - alpha]) if len(auc) else (np.nan, np.nan)
    rate_lo, rate_hi = np.quantile(rate, [alpha, 1 - alpha])
    return Expected(
        roc_auc=expected_roc_auc(p),
        roc_auc_lo=float(auc_lo),
        roc_auc_hi=float(auc_hi),
        churn_rate=float(p.mean()),
        churn_rate_lo=float(rate_lo),
        churn_rate_hi=float(rate_hi),
        ece_hi=float(np.quantile(ece, level)),
        reps=reps,
    )


# ---------------------------------------------------------------------------------- verdict


@dataclass
class Verdict:
    """'fine', 'watch' or 'retrain', with every reason found (the worst first)."""

    status: str
    reasons: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "reasons": self.reasons}


def no_newer_labels(
    dates: Sequence[str], horizon_days: int, observed_until: pd.Timestamp
) -> str | None:
    """Why a retrain now would see nothing the model did not, or None: the model's training
    dates (`dates`, its reference dates or all of them) end within one step of the latest date
    whose label is complete by `observed_until` (T + horizon <= observed_until). A model trained
    today on every complete label is that: its first partitions differ from its training rows
    by the horizon at least (a 5-month shop export scored tenure 62 % beyond anything trained
    on, "retrain" on the first run of a model trained that day)."""
    if not len(dates):
        return None
    stamps = pd.DatetimeIndex(sorted({pd.Timestamp(d) for d in dates}))
    step = stamps.to_series().diff().median() if len(stamps) > 1 else pd.NaT
    if pd.isna(step) or step <= pd.Timedelta(0):
        step = pd.Timedelta(days=horizon_days)
    horizon = pd.Timedelta(days=horizon_days)
    following = stamps[-1] + step
    if following + horizon <= observed_until:
        return None
    return (
        f"{NO_NEWER_LABELS} the model was trained on dates until "
        f"{stamps[-1].date()}, and the next date's {horizon_days}-day label "
        f"({following.date()}) is complete on {(following + horizon).date()}"
    )


def verdict(
    backtest: dict[str, float] | None,
    drift: pd.DataFrame | None,
    realized: dict[str, float] | None = None,
    expected: Expected | None = None,
    no_newer: str | None = None,
) -> Verdict:
    """The partition's verdict from its figures.

    retrain: no reference distributions stored with the model; the realized ROC AUC's interval
    lies wholly below the backtest's; major drift (PSI >= 0.25) of the score or of one of the
    model's top features, that its test tells from chance (by_chance: p >= DRIFT_TEST_P),
    beyond what one training date differed from all of them by
    (within_training_dates) and than the training date of the same weeks of an earlier year
    (like_a_year_before); realized churn outside the interval a calibrated model gives and
    a calibration error above what chance gives on this many customers. With `no_newer`
    (no_newer_labels: a retrain would see no newer labels) these are a watch, with that reason.
    Drift is a stand-in for the performance the labels will show: once they have matured and the
    realized ROC AUC is within or above the backtest's interval, major drift is a watch, said
    with that AUC (a one-cohort grocery export read "retrain" at a realized 0.888 against a
    backtest of 0.883, its customers older than a year before).
    watch: the realized AUC below the backtest interval (its own interval overlapping it); the
    expected AUC's interval (CBPE: where a calibrated model's realized AUC falls) wholly below
    the backtest interval; moderate drift (0.1-0.25) of the score or a
    top feature, or major drift of another feature; one of the two calibration signs.
    fine: none of these."""
    if drift is None or backtest is None:
        return Verdict("retrain", [NO_REFERENCE])
    retrain: list[str] = []
    watch: list[str] = []
    lo, hi = backtest.get("roc_auc_lo", np.nan), backtest.get("roc_auc_hi", np.nan)
    span = fmt.interval(lo, hi, "number")
    auc = (realized or {}).get("roc_auc", np.nan)
    if realized is not None and np.isfinite(auc) and np.isfinite(lo):
        text = (
            f"realized ROC AUC {auc:.3f} (95 % CI "
            f"{fmt.interval(realized['roc_auc_lo'], realized['roc_auc_hi'], 'number')}) is below "
            f"the backtest's {span}"
        )
        if realized["roc_auc_hi"] < lo:
            retrain.append(text)
        elif auc < lo:
            watch.append(text)
    # The expected AUC is a forecast with chance in it: only when even its interval's top lies
    # below the backtest's would the realized AUC most likely fall below it (a game scored at
    # 0.988 expected, 0.984-0.990, against a backtest of 0.989-0.993 realized 0.993).
    if expected is not None and np.isfinite(lo) and expected.roc_auc_hi < lo:
        watch.append(
            f"expected ROC AUC (CBPE) {expected.roc_auc:.3f} "
            f"({fmt.interval(expected.roc_auc_lo, expected.roc_auc_hi, 'number')}) is below "
            f"the backtest's {span}"
        )
    drifted: list[str] = []  # major drift of the score or a top feature
    for row in drift.itertuples():
        if getattr(row, "grows_with_export", False):  # the export's age, not the customers
            continue
        if getattr(row, "by_chance", False):  # its own test cannot tell it from chance
            continue
        if getattr(row, "within_training_dates", False):  # a training date differed as much
            continue
        what = "the score" if row.feature == SCORE else f"top feature {row.feature}"
        if getattr(row, "like_a_year_before", False):  # a season the training years had
            if row.top and psi_band(row.season_psi) == "moderate":
                watch.append(
                    f"{what}: PSI {row.season_psi:.2f} against the same weeks of an earlier "
                    f"year (moderate drift, {PSI_MODERATE}-{PSI_MAJOR})"
                )
            continue
        # Against the same weeks of an earlier year when that is the nearer population: the
        # part of the shift the calendar explains is no drift, the rest is said as it is.
        value, against = row.psi, ""
        season = getattr(row, "season_psi", np.nan)
        if np.isfinite(season) and season < value:
            value, against = season, " against the same weeks of an earlier year"
        band = psi_band(value)
        text = f"{what}: PSI {value:.2f}{against}"
        if row.top and band == "major":
            drifted.append(f"{text} (major drift, >= {PSI_MAJOR})")
        elif row.top and band == "moderate":
            watch.append(f"{text} (moderate drift, {PSI_MODERATE}-{PSI_MAJOR})")
        elif band == "major":
            watch.append(
                f"feature {row.feature}: PSI {value:.2f}{against} (major drift, not a top feature)"
            )
    if realized is not None and expected is not None and np.isfinite(realized.get("ece", np.nan)):
        rate, predicted = realized["realized_rate"], realized["predicted_rate"]
        outside = not expected.churn_rate_lo <= rate <= expected.churn_rate_hi
        miscalibrated = realized["ece"] > expected.ece_hi
        signs = []
        if outside:
            signs.append(
                f"realized churn {fmt.percent(rate)} against {fmt.percent(predicted)} predicted "
                f"(a calibrated model gives {fmt.interval(expected.churn_rate_lo, expected.churn_rate_hi)})"
            )
        if miscalibrated:
            signs.append(
                f"calibration error {realized['ece']:.3f} above the {expected.ece_hi:.3f} chance "
                "gives a calibrated model on these customers"
            )
        if signs:
            (retrain if outside and miscalibrated else watch).append("; ".join(signs))
    holds = realized is not None and np.isfinite(auc) and np.isfinite(lo) and auc >= lo
    if drifted and holds:
        watch = [
            *drifted,
            f"the realized ROC AUC {auc:.3f} is within or above the backtest's {span}: the drift "
            "has not cost ranking yet",
            *watch,
        ]
    else:
        retrain = [*retrain, *drifted]
    if retrain and no_newer:
        return Verdict("watch", [*retrain, no_newer, *watch])
    if retrain:
        return Verdict("retrain", retrain + watch)
    if watch:
        return Verdict("watch", watch)
    return Verdict("fine", [])
