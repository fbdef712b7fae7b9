"""The weekly job: score every eligible customer as of the run date with the champion model.

Writes one partition per run date, OUT/as_of=YYYY-MM-DD/, replaced atomically:
- scores.parquet: customer_id, churn_probability, risk_band, drivers (top features raising the
  risk: feature, label, value, value_text, contribution in log-odds, risk_points, reason in
  words; see training.drivers), model_version, previous_probability, probability_delta,
  level_delta (the part of the change the time of year's churn level made: level_change),
  drivers_moved (features whose contribution changed most since the previous run), lower_risk
  (for a customer at or below the typical customer's risk, who has no reason for risk: the
  features that hold the risk down, the same records with negative points);
- scores.csv: the same scores for a CRM import or a spreadsheet (serving.handoff);
- lapsed.csv (non-contractual churn): the buyers not scored because they have no qualifying
  activity in the lookback, the most recently lapsed first: the win-back list
  (features.labels.lapsed_customers; the Spark engine's features.spark_engine.lapsed_buyers);
- features.parquet: the features behind the scores (what the service looks up);
- contributions.parquet: every feature's contribution for every customer (float32), which the
  next run compares with when the same model scores it;
- segments.parquet: retention metrics over the horizon before the run and the risk view
  per segment;
- alerts.parquet, alerts.csv: customers newly high, risen, or with a new top reason
  (serving.alerts); on a first run (no earlier partition) against the scores the model gives
  the same data a week before the run date (first_run_baseline), as are the changes in
  scores.parquet;
- report.html: the page people open in a browser (reporting.report_html);
- run.json: run date, model name/version/run id, counts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.check import days_before, recent_quiet_week_notes, stale_from_days
from features.config import ChurnDefinition
from features.contract import Tables
from features.io import atomic_dir
from features.labels import (
    lapsed_count,
    lapsed_customers,
    never_active_count,
    never_active_signed_up_before_history,
    scheduled_cancellations,
    signups_from,
)
from features.prepared import as_of_timestamp
from features.signals import build_features
from reporting import formatting
from reporting.report_html import REPORT_FILE, riskiest_customers, write_partition_report
from reporting.table_report import TableReportInputs, attribute_segments, render_table_report
from retention.metrics import (
    ALL,
    METRIC_COLUMNS,
    MISSING_SEGMENT,
    UNSCORED_SEGMENT,
    PeriodNotCovered,
    check_period_covered,
    metrics_from_sums,
    paid_monthly_revenue,
    per_customer_metrics,
    risk_from_sums,
    risk_parts,
    segment_labels,
    segment_sums,
)
from serving.alerts import FEATURES_FILE, write_partition_alerts
from serving.config import ScoringConfig
from serving.handoff import (
    LAPSED_CSV,
    SCHEDULED_COLUMN,
    SCORES_CSV,
    write_lapsed_csv,
    write_scores_csv,
)
from training.drivers import (
    DRIVER_TYPE,
    MOVED_TYPE,
    lower_risk_drivers,
    moved_drivers,
    risk_points,
    top_drivers,
    wording_of,
)
from training.model import ChurnModel

PARTITION_PREFIX = "as_of="
SCORES_FILE, SEGMENTS_FILE, RUN_FILE = "scores.parquet", "segments.parquet", "run.json"
CONTRIBUTIONS_FILE = "contributions.parquet"  # every feature's contribution, float32
Log = Callable[[str], None]

SCORES_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("churn_probability", pa.float64()),
        ("risk_band", pa.string()),
        ("drivers", DRIVER_TYPE),
        ("model_version", pa.string()),
        ("previous_probability", pa.float64()),
        ("probability_delta", pa.float64()),
        ("level_delta", pa.float64()),
        ("drivers_moved", MOVED_TYPE),
        ("lower_risk", DRIVER_TYPE),
    ]
)  # scores.parquet, from either engine


SLIM_COLUMNS = [
    "customer_id", "churn_probability", "risk_band", "previous_probability", "probability_delta",
    "level_delta",
]  # fmt: skip


@dataclass
class ScoringRun:
    """One weekly run: where it was written and its headline figures (run.json). With the
    pandas engine, `scores` holds the slim columns (SLIM_COLUMNS) of every customer; drivers
    are in the partition's scores.parquet."""

    as_of: pd.Timestamp
    partition: Path | str  # a cluster URI for the Spark engine
    summary: dict
    segments: pd.DataFrame
    previous_as_of: pd.Timestamp | None
    scores: pd.DataFrame | None = None


def run_summary(
    as_of: pd.Timestamp,
    previous_as_of: pd.Timestamp | None,
    model_version: str,
    model_info: dict | None,
    segments: pd.DataFrame,
    model: ChurnModel | None = None,
    currency: str | None = None,
) -> dict:
    """run.json: the run date, the model, the reasons' currency (the service's /score_records
    says amounts in it too), and the headline figures (from the report's 'all' row;
    the customers in each band now from its band shares: the report's risk_band rows group
    customers by the band they had at the start of the period). With the model, `band_notes`
    says which of its risk bands holds nobody today (empty_band_notes), and `level_note` how
    the time of year moves the probabilities (training.seasonal_level), when it does, and
    `level_moved_note` how it moved them since the previous run."""
    everyone = segments[segments["dimension"] == ALL].iloc[0]
    scored = int(everyone["customers_scored"])
    shares = {c[len("share_") :]: everyone[c] for c in segments.columns if c.startswith("share_")}
    bands = {
        band: round(float(share) * scored)
        for band, share in shares.items()
        if pd.notna(share) and round(float(share) * scored) > 0
    }
    summary = {
        "as_of": as_of.date().isoformat(),
        "previous_as_of": previous_as_of.date().isoformat() if previous_as_of is not None else None,
        "model_version": str(model_version),
        **(model_info or {}),
        "currency": currency,
        "customers_scored": scored,
        "mean_risk": float(everyone["mean_risk"]),
        "expected_churners": float(everyone["expected_churners"]),
        "bands": bands,
    }
    if model is not None:
        summary["band_notes"] = empty_band_notes(bands, scored, model, as_of)
        ranking = ranking_band_note(model, summary["mean_risk"])
        if ranking:
            summary["band_notes"].append(ranking)
        level = getattr(model, "seasonal_level", None)
        note = level.note(as_of) if level is not None else None
        if note:
            summary["level_note"] = note
        moved = (
            level.moved_note(as_of, previous_as_of)
            if level is not None and previous_as_of is not None
            else None
        )
        if moved:
            summary["level_moved_note"] = moved
    return summary


# Where the lowest band above 'low' starts at this probability or higher, 'low' holds customers
# more likely to leave than not, and the page must say that the bands only rank.
RANKING_BANDS_FROM = 0.5


def ranking_band_note(model: ChurnModel, mean_risk: float) -> str | None:
    """Why 'low' does not mean unlikely to leave, where the bands rank: most customers churn
    within a horizon (a ratings site's users, a game's players), so the bands are the riskiest
    shares of the customers at training (training.model.band_thresholds), and 'low' reaches up
    to the lowest threshold, at RANKING_BANDS_FROM or more. A page that reads "at risk: 36"
    beside 392 expected churners (MovieLens, benchmarks/README.md session 32) must say why."""
    thresholds = model.band_thresholds
    if not thresholds or min(thresholds.values()) < RANKING_BANDS_FROM:
        return None
    starts = ", ".join(f"'{band}' from {value:.1%}" for band, value in thresholds.items())
    return (
        f"the risk bands rank the customers here: most were likely to churn within "
        f"{model.horizon_days} days when the model was trained (the customers of "
        f"{model.bands_set_on()}), so the bands are their riskiest shares ({starts}); 'low' "
        f"holds customers up to {min(thresholds.values()):.1%} and does not mean unlikely to "
        f"leave (mean risk today {mean_risk:.1%}): read the probabilities."
    )


# Probabilities whose log-odds spread less than this (standard deviation over the scored) tell
# the customers apart by almost nothing: a store's 656 customers all lay within 67.403-67.421 %,
# and the bands, a ranking and a page of "riskiest customers" read as if they meant something
# (benchmarks/README.md, session 38). A weak model that still ranks spreads ten times more.
NEAR_TIE_LOGIT_STD = 0.05


def near_tie_note(logit_std: float, low: float, high: float) -> str | None:
    """What a reader must know when the scored customers' probabilities hardly differ: the
    spread of their log-odds (logit_std) and the probabilities of the 10th and 90th
    percentiles (low, high). None when they spread enough to rank."""
    if not np.isfinite(logit_std) or logit_std >= NEAR_TIE_LOGIT_STD:
        return None
    return (
        f"the probabilities hardly differ ({low:.2%} to {high:.2%} for 80 % of the scored "
        "customers): the model tells them apart by little, so the bands and the order of the "
        "riskiest are near-ties; read the level, not the ranking, and retrain on more history "
        "or more customers"
    )


def probability_spread(probability: np.ndarray) -> tuple[float, float, float]:
    """(the standard deviation of the log-odds, the 10th and 90th percentile probabilities)
    of scored probabilities, for near_tie_note; NaN without any."""
    p = np.asarray(probability, dtype="float64")
    p = p[np.isfinite(p)]
    if not len(p):
        return float("nan"), float("nan"), float("nan")
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    logit = np.log(clipped / (1 - clipped))
    low, high = np.quantile(p, [0.1, 0.9])
    return float(np.std(logit)), float(low), float(high)


def empty_band_notes(
    bands: dict[str, int], scored: int, model: ChurnModel, as_of: pd.Timestamp
) -> list[str]:
    """Why a risk band above 'low' holds nobody on a run date. Bands are fixed probability
    thresholds, set at training as shares of the customers of the day after the data's end
    (ChurnModel.bands_set_on; the last training date in models trained before it), so a band
    means the same risk from week to week; when the risk of the scored customers has moved
    since, a band can empty, and a reader of "high 0" should learn why, not guess."""
    notes = []
    for band, threshold in model.band_thresholds.items():
        if scored and bands.get(band, 0) == 0:
            notes.append(
                f"risk band '{band}' holds none of the {scored:,} customers scored on "
                f"{as_of.date()}: it starts at {threshold:.1%}, a threshold set on the customers "
                f"of {model.bands_set_on()} at training, and nobody reaches it now. The risk has "
                "moved since training: read the probabilities, or retrain."
            )
    return notes


def partition_path(out_dir: str | Path, as_of: pd.Timestamp) -> Path:
    return Path(out_dir) / f"{PARTITION_PREFIX}{as_of.date().isoformat()}"


def list_partitions(out_dir: str | Path) -> list[tuple[pd.Timestamp, Path]]:
    """Complete partitions (those with run.json), oldest first; temporary folders are skipped."""
    root = Path(out_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith(PARTITION_PREFIX) and (path / RUN_FILE).is_file():
            found.append((pd.Timestamp(path.name[len(PARTITION_PREFIX) :]), path))
    return sorted(found)


def previous_partition(
    out_dir: str | Path, as_of: pd.Timestamp
) -> tuple[pd.Timestamp, Path] | None:
    earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
    return earlier[-1] if earlier else None


@dataclass(frozen=True)
class PreviousRun:
    """What a run compares with: the previous run's date, its probabilities, and its features or
    (when the same model scored it) its stored contributions, by customer id."""

    probabilities: pd.Series | None = None
    features: pd.DataFrame | None = None  # indexed by customer_id
    contributions: pd.DataFrame | None = None  # indexed by customer_id, float32 per feature
    as_of: pd.Timestamp | None = None  # the previous run's date (its churn level: level_change)

    @classmethod
    def of(
        cls,
        scores: pd.DataFrame | None = None,
        features: pd.DataFrame | None = None,
        contributions: pd.DataFrame | None = None,
        as_of: pd.Timestamp | None = None,
    ) -> PreviousRun:
        def by_id(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            return frame.set_index("customer_id") if frame is not None else None

        probabilities = (
            by_id(scores)["churn_probability"] if scores is not None and len(scores) else None
        )
        return cls(probabilities, by_id(features), by_id(contributions), as_of)


def _previous_contributions(
    model: ChurnModel, previous: PreviousRun
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """A lookup of the previous run's contributions (float32, the current model's feature
    order) for a chunk's ids: (known, their rows). None when there is nothing to compare with.
    Stored contributions are taken as they are; otherwise the previous features are explained
    by the current model, chunk by chunk."""
    names = model.feature_names
    stored = previous.contributions
    if stored is not None and all(c in stored for c in names):
        index, matrix = stored.index, stored[names].to_numpy(dtype=np.float32)

        def stored_rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            positions = index.get_indexer(ids)
            known = positions >= 0
            return known, matrix[positions[known]]

        return stored_rows
    before = previous.features
    if before is None or not all(c in before for c in names):
        return None

    def explained_rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = before.index.get_indexer(ids)
        known = positions >= 0
        if not known.any():
            return known, np.zeros((0, len(names)), dtype=np.float32)
        rows = before.iloc[positions[known]].reset_index()
        return known, model.contributions(rows)[names].to_numpy().astype(np.float32)

    return explained_rows


def level_change(
    model: ChurnModel,
    frame: pd.DataFrame,
    logit: np.ndarray,
    probability: np.ndarray,
    shift: np.ndarray | None,
    previous_as_of: pd.Timestamp | None,
) -> np.ndarray:
    """Per row, the part of the probability's change since the previous run that the churn
    level of the time of year made (training.seasonal_level): this run's `probability` (of the
    raw log-odds `logit` at its level, `shift`: ChurnModel.level_shift) minus the same log-odds'
    probability at the level of the previous run's date. The rest of the change is the customer's own (and a new
    model's). 0 where the probabilities carry no level (a model without one, rows without a
    date); NaN without a previous run date.

    Why: a weekly rise alert ("risk rose by 10 points") is about the customer; where churn
    follows the calendar, the level of the weeks moves every customer's probability at once,
    and the rise rule (serving.alerts) leaves that part out."""
    if previous_as_of is None:
        return np.full(len(frame), np.nan)
    before = model.level_shift(frame, previous_as_of)
    if shift is None or before is None:
        return np.zeros(len(frame))
    return probability - model.probability_of_logit(logit, before)


def iter_scores(
    model: ChurnModel,
    features: pd.DataFrame,
    model_version: str,
    previous: PreviousRun | None = None,
    top: int = 3,
    chunk_rows: int = 100_000,
    currency: str | None = None,
    as_of: pd.Timestamp | None = None,
    scheduled: pd.Series | None = None,
    scheduled_share: float = 1.0,
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Scores (SCORES_SCHEMA) and contributions (customer_id + float32 per feature) for
    feature rows, chunk by chunk, so that memory stays bounded whatever the number of rows.

    Drivers are the model's SHAP contributions (ChurnModel.contributions: training.tree_shap,
    equal to LightGBM's pred_contrib). The change since a previous run is the
    probability delta, the part of it the time of year's churn level made (level_change), and
    the drivers that moved most: both runs' features explained by the current model (so the
    movement is the customer's, not the model's), compared at float32.

    scheduled: the dates of the cancellations the export holds, by customer_id
    (scheduled_dates): those customers' probability is with_scheduled_cancellations'
    (scheduled_share of the notices take effect), and their first driver says so; their other
    reasons are the model's."""
    names = model.feature_names
    if scheduled is not None and len(scheduled) and as_of is None:
        raise ValueError("scheduled cancellations need the run date (as_of) to be said")
    reason_settings = model.reason_settings()
    previous = previous or PreviousRun()
    lookup = _previous_contributions(model, previous)
    for start in range(0, len(features), chunk_rows):
        chunk = features.iloc[start : start + chunk_rows]
        ids = chunk["customer_id"].to_numpy()
        contrib = model.contributions(chunk)
        logit = contrib.sum(axis=1).to_numpy()
        shift = model.level_shift(chunk, as_of)
        probability = model.probability_of_logit(logit, shift)
        modelled = probability  # the model's, without a scheduled cancellation
        due = np.zeros(0, dtype=np.int64)
        if scheduled is not None and len(scheduled) and scheduled_share > 0:
            found = scheduled.index.get_indexer(pd.Index(ids).astype(str))
            due = np.flatnonzero(found >= 0)
            if len(due):
                dates = scheduled.to_numpy()[found[due]]
                horizon_end = pd.Timestamp(as_of) + pd.Timedelta(days=model.horizon_days)
                within = dates < np.datetime64(horizon_end)
                probability = probability.copy()
                probability[due] = with_scheduled_cancellations(
                    modelled[due], scheduled_share, within
                )
        current = contrib[names].to_numpy()
        points = risk_points(current, contrib["bias"].to_numpy(), model.probability_of_logit, shift)
        current32 = current.astype(np.float32)
        delta = np.zeros_like(current)
        if lookup is not None:
            known, before = lookup(ids)
            delta[known] = current32[known].astype(np.float64) - before.astype(np.float64)
        if previous.probabilities is not None:
            before_p = previous.probabilities.reindex(ids).to_numpy(dtype=np.float64)
        else:
            before_p = np.full(len(chunk), np.nan)
        level = level_change(model, chunk, logit, modelled, shift, previous.as_of)
        level[np.isnan(before_p)] = np.nan
        explained = {"currency": currency, "probability": modelled, **reason_settings}
        drivers = top_drivers(current, names, chunk, top, points, **explained)
        if len(due):
            drivers = prepend_scheduled_drivers(
                drivers, due, dates, pd.Timestamp(as_of), modelled[due], probability[due], top,
                int(model.horizon_days),
            )  # fmt: skip
        scores = pa.table(
            [
                pa.array(ids, pa.string()),
                pa.array(probability, pa.float64()),
                pa.array(model.risk_band(probability), pa.string()),
                drivers,
                pa.array(np.full(len(chunk), str(model_version), dtype=object), pa.string()),
                pa.array(before_p, pa.float64(), from_pandas=True),
                pa.array(probability - before_p, pa.float64(), from_pandas=True),
                pa.array(level, pa.float64(), from_pandas=True),
                moved_drivers(delta, names, top, chunk, **wording_of(explained)),
                lower_risk_drivers(current, names, chunk, top, points, **explained),
            ],
            schema=SCORES_SCHEMA,
        )
        contributions = pa.table(
            {"customer_id": pa.array(ids, pa.string())}
            | {name: pa.array(current32[:, j]) for j, name in enumerate(names)}
        )
        yield scores, contributions


def score_features(
    model: ChurnModel,
    features: pd.DataFrame,
    model_version: str,
    previous: PreviousRun | None = None,
    top: int = 3,
    chunk_rows: int = 100_000,
    as_of: pd.Timestamp | None = None,
    currency: str | None = None,
) -> pd.DataFrame:
    """Scores, bands, drivers and the change since a previous run for feature rows, as one
    frame (see iter_scores; for what-if records and for tests)."""
    chunks = iter_scores(
        model, features, model_version, previous, top, chunk_rows, currency=currency, as_of=as_of
    )
    tables = [s for s, _ in chunks]
    return (pa.concat_tables(tables) if tables else SCORES_SCHEMA.empty_table()).to_pandas()


def scheduled_summary(
    leaving: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int, share: float
) -> dict:
    """run.json's count of the scored customers whose cancellation is scheduled, of those
    within the horizon, and the share of them scored as sure to take effect (both engines)."""
    horizon_end = pd.Timestamp(as_of) + pd.Timedelta(days=horizon_days)
    return {
        "cancellations_scheduled": len(leaving),
        "cancellations_scheduled_in_horizon": int((leaving["churned_at"] < horizon_end).sum()),
        "scheduled_cancellation_share": float(share),
    }


SCHEDULED_FEATURE = SCHEDULED_COLUMN  # the driver a scheduled cancellation is, as scores.csv


def scheduled_dates(leaving: pd.DataFrame) -> pd.Series:
    """scheduled_cancellations' dates by customer_id (both engines)."""
    return pd.Series(
        leaving["churned_at"].to_numpy(), index=pd.Index(leaving["customer_id"].astype(str)),
        name="at",
    )  # fmt: skip


def signups_note(count: int, as_of: pd.Timestamp) -> str:
    """The run's line on the customers it does not score yet (both engines)."""
    return (
        f"{count:,} customers sign up on or after the run date ({pd.Timestamp(as_of).date()}): "
        "not scored yet (a customer is scored from the first run after its signup)"
    )


def scheduled_note(
    scheduled: pd.Series, as_of: pd.Timestamp, horizon_days: int, share: float
) -> str:
    """The run's line on the scheduled cancellations (both engines): how many, their dates,
    how many within the horizon and how they are scored (share 0: by the model alone)."""
    horizon_end = pd.Timestamp(as_of) + pd.Timedelta(days=horizon_days)
    due = int((scheduled < horizon_end).sum())
    how = (
        f"scored as {formatting.percent(share, 0)} sure to take effect then ([scoring] "
        "scheduled_cancellation_share), and at the model's risk otherwise"
        if share > 0
        else "scored by the model alone ([scoring] scheduled_cancellation_share = 0)"
    )
    return (
        f"{len(scheduled):,} customers have a cancellation scheduled in the export "
        f"({scheduled.min().date()} to {scheduled.max().date()}; scores.csv's "
        f"cancellation_scheduled), {due:,} within the {horizon_days}-day horizon: {how}"
    )


def with_scheduled_cancellations(
    probability: np.ndarray, share: float, within: np.ndarray
) -> np.ndarray:
    """The churn probability of a customer whose cancellation the export holds: `share` of such
    notices take effect on their date ([scoring] scheduled_cancellation_share), the others are
    withdrawn and leave the customer at the model's risk p. Within the horizon: share + (1 -
    share) x p; after it the customer stays through the horizon unless the notice is withdrawn:
    (1 - share) x p. The model cannot learn it (a notice's own date is no feature: at a
    training date it would read its own label). Left to the model, 59 of a subscription app's
    608 cancellations within 30 days sat in the low band at 3 to 18 % while 98 % of them took
    effect, and its 1,291 cancellations after the 30 days (none of whom churned within them)
    averaged 4 %, above many who did churn."""
    p = np.asarray(probability, dtype="float64")
    return np.where(np.asarray(within, dtype=bool), share + (1.0 - share) * p, (1.0 - share) * p)


def _scheduled_driver(
    at: pd.Timestamp, as_of: pd.Timestamp, before: float, now: float, horizon_days: int
) -> dict:
    """The driver record (training.drivers.DRIVER_FIELDS) of a scheduled cancellation: its
    days from T, the log-odds and the points it adds to (after the horizon: takes from) the
    model's probability."""
    days = (pd.Timestamp(at) - pd.Timestamp(as_of)) / pd.Timedelta(days=1)
    when = "today" if days < 1 else f"in {formatting.duration_days(days)}"
    where = "in the export" if days < horizon_days else f"after the {horizon_days}-day horizon"
    logit = lambda p: float(np.log(p / (1.0 - p))) if 0 < p < 1 else float("nan")  # noqa: E731
    return {
        "feature": SCHEDULED_FEATURE,
        "label": "Cancellation scheduled",
        "value": float(days),
        "value_text": None,
        "contribution": logit(now) - logit(before),
        "risk_points": (now - before) * 100.0,
        "reason": f"Cancellation scheduled for {pd.Timestamp(at).date()} ({when}), {where}",
    }


def prepend_scheduled_drivers(
    drivers: pa.Array,
    rows: np.ndarray,
    dates: np.ndarray,
    as_of: pd.Timestamp,
    before: np.ndarray,
    now: np.ndarray,
    top: int,
    horizon_days: int,
) -> pa.Array:
    """The drivers lists (DRIVER_TYPE) with a scheduled cancellation's driver first for the
    given rows (their dates, and the probability without and with it), `top` drivers each."""
    lists = drivers.to_pylist()
    for k, row in enumerate(rows):
        lists[row] = [
            _scheduled_driver(dates[k], as_of, float(before[k]), float(now[k]), horizon_days),
            *(lists[row] or []),
        ][:top]
    return pa.array(lists, DRIVER_TYPE)


def write_model_scores_csv(
    model: ChurnModel,
    folder: Path,
    changes: bool = True,
    scheduled: pd.DataFrame | None = None,
) -> dict[str, str]:
    """scores.csv beside the folder's scores.parquet, its bands in words and its typical
    customer's risk the model's (serving.handoff; changes: the columns of the change since a
    previous run; scheduled: the customers whose cancellation the export holds already);
    returns the band ranges."""
    ranges = formatting.band_ranges(model.band_thresholds)
    write_scores_csv(
        folder / SCORES_FILE,
        folder / SCORES_CSV,
        band_ranges=ranges,
        typical_probability=model.typical_probability(),
        changes=changes,
        scheduled=scheduled,
    )
    return ranges


def write_table_scores(
    model: ChurnModel,
    features: pd.DataFrame,
    model_version: str,
    out_dir: str | Path,
    model_info: dict | None = None,
    top: int = 3,
    log: Callable[[str], None] = print,
    validation: dict[str, float] | None = None,
    notes: list[str] | None = None,
) -> dict:
    """Score a customer table with a labeled-table model (training.labeled_table.
    table_for_scoring gives `features`) into out_dir, replaced as a whole: scores.parquet
    (SCORES_SCHEMA, without a previous run), scores.csv (serving.handoff: riskiest first,
    probabilities in percent, bands with their ranges, reasons in words), report.html
    (reporting.table_report; `validation`: the training run's cv_* metrics, `notes` under the
    page) and run.json (the model, the rows, the customers per band). Returns run.json's
    content."""
    with atomic_dir(out_dir) as tmp:
        bands: dict[str, int] = {}
        with pq.ParquetWriter(tmp / SCORES_FILE, SCORES_SCHEMA) as writer:
            for scores, _ in iter_scores(model, features, model_version, top=top):
                writer.write_table(scores)
                counts = scores.column("risk_band").to_pandas().value_counts()
                for band, count in counts.items():
                    bands[str(band)] = bands.get(str(band), 0) + int(count)
                log(f"  scored {sum(bands.values()):,}/{len(features):,} customers")
        ranges = write_model_scores_csv(model, tmp, changes=False)
        summary = {
            **(model_info or {}),
            "model_version": str(model_version),
            "customers_scored": len(features),
            "bands": {band: bands.get(band, 0) for band in ("high", "medium", "low")},
            "band_ranges": ranges,
            "scored_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        }
        write_table_report(tmp, model, features, summary, validation or {}, notes or [])
        (tmp / RUN_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def write_table_report(
    folder: Path,
    model: ChurnModel,
    features: pd.DataFrame,
    summary: dict,
    validation: dict[str, float],
    notes: list[str],
) -> None:
    """report.html beside a scored table's scores.parquet: the page of reporting.table_report,
    with risk by the model's categorical columns (the table's own attributes)."""
    scores = pd.read_parquet(
        folder / SCORES_FILE, columns=["customer_id", "churn_probability", "risk_band"]
    )
    columns = [c for c in model.preprocessor.categorical if c in features.columns]
    attributes = (
        features.assign(customer_id=features["customer_id"].astype(str))
        .set_index("customer_id")[columns]
        .reindex(scores["customer_id"].astype(str).to_numpy())
        .reset_index(drop=True)
    )
    segments, left_out = attribute_segments(scores, attributes)
    version = summary.get("model_version", "")
    name = summary.get("model_name")
    page = render_table_report(
        TableReportInputs(
            table=Path(str(summary.get("table", "the table"))).name,
            model=f"model {name} v{version}" if name else f"model v{version}",
            probabilities=scores["churn_probability"].to_numpy(float),
            bands=scores["risk_band"].astype(str).to_numpy(),
            band_ranges=summary.get("band_ranges", {}),
            riskiest=riskiest_customers(folder / SCORES_FILE),
            segments=segments,
            validation=validation,
            notes=[*notes, *(f"Not shown by attribute: {n}." for n in left_out)],
        )
    )
    (folder / REPORT_FILE).write_text(page, encoding="utf-8")


@dataclass(frozen=True)
class SegmentSums:
    """The additive parts of a segment report, summed per segment: what one slice of the
    customers (all of them, or one Spark bucket) contributes."""

    metrics: pd.DataFrame  # segment sums of per_customer_metrics
    risk: pd.DataFrame  # segment sums of risk_parts


NOT_SCORED_AT_START = "not scored at the start"  # the risk_band row of customers without a band


def report_segments(by: list[str]) -> list[str]:
    """The report's dimensions: the requested segments, then the risk band (at the start of
    the period; absent without a partition scored then)."""
    return [*by, "risk_band"]


def start_bands(out_dir: str | Path, period_start: pd.Timestamp) -> pd.DataFrame | None:
    """customer_id and risk_band of the partition scored at the start of a period: the newest
    complete partition dated on or before period_start (None when there is none)."""
    earlier = [(d, p) for d, p in list_partitions(out_dir) if d <= pd.Timestamp(period_start)]
    if not earlier:
        return None
    return pd.read_parquet(earlier[-1][1] / SCORES_FILE, columns=["customer_id", "risk_band"])


def band_rows_note(start_scores: pd.DataFrame | None, period_start: pd.Timestamp) -> str:
    """Why a segment report has no risk_band rows ("" when it has them)."""
    if start_scores is not None:
        return ""
    return (
        "no risk-band rows: no partition was scored at the start of the period (on or before "
        f"{pd.Timestamp(period_start).date()}, one churn horizon back), so no band has had its "
        "horizon to be measured against; the runs from one horizon after the first will have them"
    )


def report_plan(
    model: ChurnModel, segments_by: list[str] | None, as_of: pd.Timestamp
) -> tuple[list[str], pd.Timestamp]:
    """A run's report: its segments (those asked for, else the model's categorical features)
    and the start of its period: one label horizon before the run, whenever the previous run
    was.

    Why the horizon: the risk is the chance of churn within it, and under non-contractual churn
    a customer is lost after a horizon without a qualifying event. Over the week since the
    previous run a grocery's report read 67 % churn ("no purchase this week") where 10 % of its
    customers had gone 30 days without one, and its high band's 57 % risk for 30 days sat beside
    83 % "churn" in 7 days. Over one horizon the retention figures follow the churn definition,
    and the risk_band rows (the bands of the run one horizon back) measure what they predicted."""
    by = segments_by if segments_by is not None else list(model.preprocessor.categorical)
    horizon = pd.Timedelta(days=model.features_config().churn.horizon_days)
    return by, as_of - horizon


def segment_sums_for(
    tables: Tables,
    scores: pd.DataFrame,
    features: pd.DataFrame,
    model: ChurnModel,
    period_start: pd.Timestamp,
    as_of: pd.Timestamp,
    by: list[str],
    *,
    start_scores: pd.DataFrame | None = None,
) -> SegmentSums:
    """Per-segment sums of the retention metrics over (period_start, as_of] and of the risk
    view, for the customers in tables.

    The risk_band rows group customers by the band they had at the start of the period
    (``start_scores``: customer_id and risk_band of the partition scored then), so that churn
    by band measures how well the bands predicted; customers without a band then form the
    row 'not scored at the start'. Without start_scores there are no risk_band rows."""
    churn = model.features_config().churn
    # What a customer pays per month now: the paid period holding the run date (an annual
    # plan's twelfth), else the revenue of the last 30 days (a shop's orders).
    revenue = paid_monthly_revenue(tables.revenue, as_of)
    if revenue is None and "revenue_30d" in features:
        revenue = features.set_index("customer_id")["revenue_30d"]
    scored = scores.assign(
        monthly_revenue=revenue.reindex(scores["customer_id"]).fillna(0.0).to_numpy()
        if revenue is not None
        else 0.0
    )
    t0, t1 = _report_period(period_start, as_of)
    labels = segment_labels(tables, [b for b in by if b != "risk_band"], scores=scored)
    if start_scores is not None:
        band = segment_labels(tables, ["risk_band"], scores=start_scores)["risk_band"]
        labels["risk_band"] = band.replace(UNSCORED_SEGMENT, NOT_SCORED_AT_START).to_numpy()
    parts = per_customer_metrics(
        tables,
        t0,
        t1,
        churn_mode=churn.mode,
        lookback_days=churn.lookback_days,
        activity_events=churn.qualifying_events,
    )
    scored_labels = labels.reindex(scored["customer_id"].to_numpy())
    scored_labels = scored_labels.fillna(MISSING_SEGMENT).astype(str)
    return SegmentSums(
        metrics=segment_sums(parts, labels), risk=segment_sums(risk_parts(scored), scored_labels)
    )


def _report_period(
    period_start: pd.Timestamp, as_of: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    # The run date T is excluded (features use data strictly before T): the period ends just
    # before it, so "MRR at the end" is that of the month before a run on the 1st.
    just_before = pd.Timedelta(nanoseconds=1)
    return pd.Timestamp(period_start) - just_before, pd.Timestamp(as_of) - just_before


def report_from_sums(
    sums: SegmentSums,
    period_start: pd.Timestamp,
    as_of: pd.Timestamp,
    has_revenue: bool,
    observed_until: pd.Timestamp | None,
    churn_mode: str = "contractual",
) -> pd.DataFrame:
    """The segment report (retention metrics beside the risk view) from its summed parts;
    observed_until is the data's last record (Tables.data_end); churn_mode: the model's, under
    which invoices are no repeat purchases (metrics_from_sums)."""
    t0, t1 = _report_period(period_start, as_of)
    metrics = metrics_from_sums(
        sums.metrics, t0, t1, has_revenue=has_revenue, observed_until=observed_until,
        repeat_purchases=churn_mode != "contractual",
    )  # fmt: skip
    risk = risk_from_sums(sums.risk)
    if not has_revenue:  # no revenue rows: nothing measured (metrics_from_sums: the metrics)
        risk["revenue_at_risk"] = np.nan
    report = metrics.merge(risk, on=["dimension", "segment"], how="outer", sort=False)
    # Said as the run dates ([previous run, this run): the run date is excluded, as features
    # exclude T), not as the instants just before them (2024-10-31 23:59:59.999999999).
    report["period_start"], report["period_end"] = pd.Timestamp(period_start), pd.Timestamp(as_of)
    return report


PAID_PERIOD_FEATURE = "days_until_paid_period_ends"


def paid_period_ended(
    features: pd.DataFrame, churn: ChurnDefinition, as_of: pd.Timestamp
) -> tuple[int, str | None]:
    """Scored customers whose latest paid period ended before the run date without a renewal in
    the data (days_until_paid_period_ends below 0), and the warning of paid_period_warning."""
    if PAID_PERIOD_FEATURE not in features:
        return 0, None
    ended = int((features[PAID_PERIOD_FEATURE] < 0).sum())
    return ended, paid_period_warning(ended, len(features), churn, as_of)


def scored_data_churn(model: ChurnModel, observed_until: str | None) -> ChurnDefinition:
    """The model's churn definition with the scored data's observed_until (None: churn recorded
    as it happens). The model's own is the training export's: scored on an export two weeks
    newer, a model trained on a cut of 2018-10-01 left every later retention report unmeasured
    ("the period ends after the day churn is recorded until")."""
    return replace(model.features_config().churn, observed_until=observed_until)


def paid_period_warning(
    ended: int, scored: int, churn: ChurnDefinition, as_of: pd.Timestamp
) -> str | None:
    """Where `ended` of the `scored` customers' paid period ended unrenewed and churn is recorded
    late ([features.churn] observed_until), many of them have left already, and no training date
    showed the model such a member leave (by then their churn was recorded), so it scores them as
    late payers, low (a KKBox-shaped export: 147 of 334 had left; median 1.5 %). Without
    observed_until churn is recorded as it happens: None; so it is when observed_until is the
    run date or later (a billing export that records cancellations at once and declares its
    export day). One text for both engines."""
    if not ended or churn.mode != "contractual" or churn.observed_until is None:
        return None
    if pd.Timestamp(churn.observed_until) >= as_of.normalize():
        return None
    return (
        f"{ended:,} of {scored:,} scored customers' paid period ended before "
        f"{as_of.date()} without a renewal in the data; churn is recorded only until "
        f"{churn.observed_until} ([features.churn] observed_until), so many of them may have "
        "left already, and the model, which never saw such a customer leave, scores them as "
        f"late payers: find them in features.parquet ({PAID_PERIOD_FEATURE} below 0)"
    )


def segment_report(
    tables: Tables,
    scores: pd.DataFrame,
    features: pd.DataFrame,
    model: ChurnModel,
    period_start: pd.Timestamp,
    as_of: pd.Timestamp,
    by: list[str],
    *,
    start_scores: pd.DataFrame | None = None,
    measure_retention: bool = True,
    churn: ChurnDefinition | None = None,
) -> pd.DataFrame:
    """Retention metrics over (period_start, as_of] and the risk view, per segment, one table;
    the risk_band rows by the band at the start of the period (see segment_sums_for).
    Raises PeriodNotCovered (retention.metrics) when the data do not cover the period, unless
    measure_retention is False: then the retention columns are left empty (not measured) and
    the risk view stands alone. churn: the definition with the scored data's observed_until
    (scored_data_churn; None: the model's own)."""
    churn = churn or model.features_config().churn
    t0, t1 = _report_period(period_start, as_of)
    if measure_retention:
        check_period_covered(
            tables,
            t0,
            t1,
            churn_mode=churn.mode,
            lookback_days=churn.lookback_days,
            churn_observed_until=churn.observed_until,
        )
    sums = segment_sums_for(
        tables, scores, features, model, period_start, as_of, by, start_scores=start_scores
    )
    report = report_from_sums(
        sums,
        period_start,
        as_of,
        has_revenue=len(tables.revenue) > 0,
        observed_until=tables.data_end(),
        churn_mode=churn.mode,
    )
    if not measure_retention:
        retention = [c for c in METRIC_COLUMNS if c in report and c != "mrr_note"]
        report[retention] = np.nan
    return report


def same_model(info: dict, model_version: str, model_info: dict | None) -> bool:
    """Whether a partition's run.json says it was scored by this very model."""
    keys = ("model_name", "model_run_id")
    return str(info.get("model_version")) == str(model_version) and all(
        info.get(k) == (model_info or {}).get(k) for k in keys
    )


def read_previous(
    partition: Path,
    model: ChurnModel,
    model_version: str,
    model_info: dict | None,
    as_of: pd.Timestamp | None = None,
) -> PreviousRun:
    """The previous partition's probabilities, and its stored contributions when the same model
    scored it (no second pred_contrib pass), else its features; `as_of` its run date."""
    scores = pd.read_parquet(partition / SCORES_FILE, columns=["customer_id", "churn_probability"])
    info = json.loads((partition / RUN_FILE).read_text())
    stored = partition / CONTRIBUTIONS_FILE
    if stored.exists() and same_model(info, model_version, model_info):
        columns = ["customer_id", *model.feature_names]
        contributions = pd.read_parquet(stored, columns=columns)
        return PreviousRun.of(scores, contributions=contributions, as_of=as_of)
    features = pd.read_parquet(partition / FEATURES_FILE)
    return PreviousRun.of(scores, features=features, as_of=as_of)


# A first run has no earlier partition to compare with: its alerts and changes are against the
# scores the model gives the same data this many days before the run date (the weekly job's
# cadence). Without it every customer already 'high' was "newly high": a commit log's first
# run alerted 104 contributors, all one-time ones gone 8-12 months, and none whose risk was
# rising.
FIRST_RUN_BASELINE_DAYS = 7
BASELINE_DIR = "_baseline"


def baseline_date(as_of: pd.Timestamp) -> pd.Timestamp:
    """The date a first run compares with: FIRST_RUN_BASELINE_DAYS before it."""
    return as_of - pd.Timedelta(days=FIRST_RUN_BASELINE_DAYS)


def scores_as_previous(
    model: ChurnModel,
    features: pd.DataFrame,
    model_version: str,
    as_of: pd.Timestamp,
    *,
    top: int = 3,
    chunk_rows: int = 100_000,
    currency: str | None = None,
    sink: Callable[[pa.Table], None] | None = None,
    scheduled: pd.Series | None = None,
    scheduled_share: float = 1.0,
) -> PreviousRun:
    """The scores of feature rows built as of `as_of` (iter_scores, nothing to compare with),
    as the PreviousRun a later run's changes are measured against; each chunk's score table
    (SCORES_SCHEMA) goes to `sink` when given (the alerts read them), not kept in memory.
    Both engines take a first run's baseline from here. scheduled, scheduled_share: the run's
    scheduled cancellations, scored as the run scores them (first_run_baseline)."""
    probabilities, contributions = [], []
    for scores, contrib in iter_scores(
        model,
        features,
        model_version,
        None,
        top,
        chunk_rows,
        currency=currency,
        as_of=as_of,
        scheduled=scheduled,
        scheduled_share=scheduled_share,
    ):
        if sink is not None:
            sink(scores)
        probabilities.append(scores.select(["customer_id", "churn_probability"]))
        contributions.append(contrib)
    if not probabilities:
        return PreviousRun()
    return PreviousRun.of(
        scores=pa.concat_tables(probabilities).to_pandas(),
        contributions=pa.concat_tables(contributions).to_pandas(),
        as_of=as_of,
    )


def first_run_baseline(
    tables: Tables,
    as_of: pd.Timestamp,
    model: ChurnModel,
    model_version: str,
    folder: Path,
    *,
    top: int = 3,
    chunk_rows: int = 100_000,
    currency: str | None = None,
    scheduled: pd.Series | None = None,
    scheduled_share: float = 1.0,
) -> tuple[pd.Timestamp, PreviousRun] | None:
    """The scores of FIRST_RUN_BASELINE_DAYS before `as_of` on the same data (data before that
    date only, as a run then would have seen), written as a partition's scores.parquet into
    `folder` for the alerts (with its features.parquet), and as the PreviousRun the run's
    changes are measured against.
    scheduled: the cancellations the export holds (scheduled_dates), scored then as the run
    scores them: the export does not say when a notice was given, and without them a carrier's
    first run alerted 118 customers (all 15 of the report's) for notices months old, "new top
    reason: Cancellation scheduled", where the baseline is there to leave only the week's news.
    None when nobody was eligible then (an export that starts later)."""
    base = baseline_date(as_of)
    features = build_features(tables, base, model.features_config())
    if features.empty:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    features.to_parquet(folder / FEATURES_FILE, index=False)  # the alerts' values then
    with pq.ParquetWriter(folder / SCORES_FILE, SCORES_SCHEMA) as writer:
        previous = scores_as_previous(
            model, features, model_version, base, top=top, chunk_rows=chunk_rows,
            currency=currency, sink=writer.write_table, scheduled=scheduled,
            scheduled_share=scheduled_share,
        )  # fmt: skip
    return base, previous


def compared_with_baseline(scored: pd.DataFrame) -> bool:
    """Whether a first run's scores compared with its baseline: a customer scored now had a
    score then (run.json's first_run_baseline is that date only then, on either engine)."""
    return bool(scored["previous_probability"].notna().any())


def run_scoring(
    tables: Tables,
    as_of: object,
    model: ChurnModel,
    model_version: str,
    out_dir: str | Path,
    *,
    model_info: dict | None = None,
    segments_by: list[str] | None = None,
    top: int = 3,
    chunk_rows: int = 100_000,
    log: Log = print,
    settings: ScoringConfig | None = None,
    observed_until: str | None = None,
) -> ScoringRun:
    """Build features as of the run date with the model's own configuration, score, compare with
    the previous partition, and write this run's partition atomically. Scores and
    contributions are streamed to the partition chunk by chunk; the run keeps only the slim
    columns (id, probability, band, change) in memory. run.json records the data's end
    (data_end), as the Spark engine's does, so the service can check the run date against it.
    observed_until: the scored data's [features.churn] observed_until (None: churn recorded as
    it happens), for the retention report and the paid-period warning (scored_data_churn)."""
    t = as_of_timestamp(as_of)
    model_info = {"data_end": tables.data_end().isoformat(), **(model_info or {})}
    config = model.features_config()
    churn = scored_data_churn(model, observed_until)
    days, day_counts = days_before(tables, t)  # as serving.spark_batch._days_and_counts
    stale = stale_from_days(days, t)
    for warning in stale:
        log(f"warning: {warning}")
    quiet = recent_quiet_week_notes(day_counts, t)
    for warning in quiet:
        log(f"warning: {warning}")
    log(f"features as of {t.date()} ...")
    features = build_features(tables, t, config)
    if features.empty:
        raise ValueError(
            f"no customers are eligible on {t.date()}: check the run date against the data"
        )
    ended, ended_warning = paid_period_ended(features, churn, t)
    if ended_warning:
        log(f"warning: {ended_warning}")
    previous = previous_partition(out_dir, t)
    before = PreviousRun()
    if previous is not None:
        log(f"previous run: {previous[0].date()}")
        before = read_previous(previous[1], model, model_version, model_info, previous[0])
    previous_as_of = previous[0] if previous is not None else None
    by, period_start = report_plan(model, segments_by, t)
    target = partition_path(out_dir, t)
    currency = (settings or ScoringConfig()).currency
    log(f"scoring {len(features):,} customers with model version {model_version}")
    leaving = scheduled_cancellations(tables, t)
    leaving = leaving[leaving["customer_id"].isin(features["customer_id"])]  # the scored
    due = scheduled_dates(leaving)
    share = (settings or ScoringConfig()).scheduled_cancellation_share
    with atomic_dir(target) as tmp:
        baseline = None
        if previous is None:
            baseline = first_run_baseline(
                tables, t, model, model_version, tmp / BASELINE_DIR, top=top,
                chunk_rows=chunk_rows, currency=currency, scheduled=due, scheduled_share=share,
            )  # fmt: skip
        if baseline is not None:
            log(
                f"first run: changes and alerts against the scores of {baseline[0].date()}, "
                f"{FIRST_RUN_BASELINE_DAYS} days earlier on the same data"
            )
            before = baseline[1]
        slim = []
        scores_file = pq.ParquetWriter(tmp / SCORES_FILE, SCORES_SCHEMA)
        contributions_file = None
        if len(due):
            log(scheduled_note(due, t, model.horizon_days, share))
        try:
            for scores, contributions in iter_scores(
                model, features, model_version, before, top, chunk_rows, currency=currency,
                as_of=t, scheduled=due, scheduled_share=share,
            ):  # fmt: skip
                scores_file.write_table(scores)
                if contributions_file is None:
                    contributions_file = pq.ParquetWriter(
                        tmp / CONTRIBUTIONS_FILE, contributions.schema
                    )
                contributions_file.write_table(contributions)
                slim.append(scores.select(SLIM_COLUMNS))
                done = sum(len(part) for part in slim)
                log(f"  scored {done:,}/{len(features):,} customers")
        finally:
            scores_file.close()
            if contributions_file is not None:
                contributions_file.close()
        ranges = write_model_scores_csv(model, tmp, scheduled=leaving)
        scored = pa.concat_tables(slim).to_pandas()
        compared = (baseline[0], tmp / BASELINE_DIR) if baseline is not None else previous
        alerts = write_partition_alerts(tmp, t, compared, settings, ranges)
        shutil.rmtree(tmp / BASELINE_DIR, ignore_errors=True)
        log(f"alerts: {len(alerts):,} customers (alerts.parquet, alerts.csv)")
        start = start_bands(out_dir, period_start) if previous is not None else None
        try:
            segments = segment_report(
                tables, scored, features, model, period_start, t, by, start_scores=start,
                churn=churn,
            )  # fmt: skip
        except PeriodNotCovered as err:  # a run date past the data (forced): risk view only
            log(f"segment report: retention not measured, the risk view stands alone: {err}")
            segments = segment_report(
                tables, scored, features, model, period_start, t, by, start_scores=start,
                measure_retention=False, churn=churn,
            )  # fmt: skip
        if start is None:
            log(f"segment report: {band_rows_note(start, period_start)}")
        summary = run_summary(
            t, previous_as_of, model_version, model_info, segments, model, currency
        )
        tie = near_tie_note(*probability_spread(scored["churn_probability"].to_numpy()))
        if tie:
            summary["band_notes"].append(tie)
        summary["first_run_baseline"] = (
            baseline[0].date().isoformat()
            if baseline is not None and compared_with_baseline(scored)
            else None
        )
        summary.update(scheduled_summary(leaving, t, config.churn.horizon_days, share))
        summary["customers_signing_up_from_run_date"] = signups_from(tables, t)
        if summary["customers_signing_up_from_run_date"]:
            log(signups_note(summary["customers_signing_up_from_run_date"], t))
        summary["customers_lapsed"] = lapsed_count(tables, t, config.churn)
        summary["customers_never_active"] = never_active_count(tables, t, config.churn)
        early = never_active_signed_up_before_history(tables, t, config.churn)
        if early:  # the pandas engine's alone (the Spark engine does not split them yet)
            summary["customers_never_active_before_history"] = early
            summary["history_start"] = str(tables.history_start().date())
        if config.churn.mode == "non_contractual":
            lapsed = lapsed_customers(tables, t, config.churn)
            listed = write_lapsed_csv(lapsed, tmp / LAPSED_CSV, currency)
            summary["customers_lapsed_listed"] = listed
        summary["paid_period_ended"] = ended
        summary["stale_tables"] = stale
        summary["quiet_week_notes"] = quiet
        features.to_parquet(tmp / FEATURES_FILE, index=False)
        segments.to_parquet(tmp / SEGMENTS_FILE, index=False)
        write_partition_report(
            tmp, tables, segments, summary, previous, alerts=alerts, churn_mode=config.churn.mode,
            currency=currency,
            activity_events=config.churn.qualifying_events,
            model=f"{(model_info or {}).get('model_name', 'model')} version {model_version}",
        )  # fmt: skip
        (tmp / RUN_FILE).write_text(json.dumps(summary, indent=1, sort_keys=True))
    log(f"wrote {target}")
    return ScoringRun(t, target, summary, segments, previous_as_of, scored)


def log_scoring_run(
    run: ScoringRun, model_name: str, model_version: str, experiment: str = "churn-scoring"
) -> str:
    """Record a scoring run in MLflow: run date, model, headline figures and the segment report."""
    import tempfile

    import mlflow

    from training.tracking import use_experiment

    use_experiment(experiment)
    with mlflow.start_run(run_name=f"score {run.as_of.date()}") as active:
        mlflow.log_params({"as_of": run.as_of.date().isoformat(), "model_name": model_name,
                           "model_version": model_version, "partition": str(run.partition)})  # fmt: skip
        summary = run.summary
        scored = summary["customers_scored"]
        mlflow.log_metrics(
            {
                "customers_scored": float(scored),
                "mean_risk": summary["mean_risk"],
                "expected_churners": summary["expected_churners"],
                "share_high": summary["bands"].get("high", 0) / scored if scored else 0.0,
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "segments.csv"
            run.segments.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
        return active.info.run_id
