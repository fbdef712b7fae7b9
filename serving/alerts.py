"""Alerts: the customers a customer-success team should look at this week.

A customer is an alert when, since the previous weekly partition,
- ``entered_high``: it is in the high band now and was not then, its risk having risen by at
  least ``alert_entered_high_points`` net of the time of year's level (a step over the band's
  threshold is no alert);
- ``new_high``: it is in the high band and was not scored at the previous run (a new customer,
  or one back from a lapse): a grocery's "entered the high band" held 674 new buyers of 895;
- ``rose``: its probability rose by at least ``alert_rise_points`` percentage points of its
  own, and it is in a band of ``alert_rise_bands`` now (high and medium by default: a rise
  that leaves a customer in the low band asks nothing of anyone yet): the part the churn
  level of the time of year made (the partition's ``level_delta``, serving.batch.level_change)
  moves every customer at once and does not count;
- ``new_top_reason``: its top driver (the feature raising its risk most) changed while its
  risk rose by at least ``alert_new_reason_points`` net of the level (two drivers of equal
  weight trade places as a week passes: no news), counted in the bands of
  ``alert_new_reason_bands`` (the high band by default), and the new top driver's value
  changed otherwise than by the days between the runs (news_of_top_values): a meal-delivery
  shop's first run raised 25 such alerts, each "Only one day with a purchase so far, 29 days
  ago" overtaking last week's reason, the same silence a week older.
A first run (no previous partition) compares with the scores the model gives the same data a
week before its date (serving.batch.first_run_baseline); where even those cannot be had (an
export that starts within the week) it alerts on the high band: nothing to compare with.

Each alert carries the probability now and before, the bands, the top reason in words (the
driver's ``reason`` when the partition has it, else its feature, value and contribution) and
the run dates. The rules are pure functions of two score frames (``find_alerts``); reading
the partitions' drivers and writing alerts.parquet / alerts.csv are the edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from reporting import formatting
from serving.config import ScoringConfig

ALERTS_FILE, ALERTS_CSV = "alerts.parquet", "alerts.csv"
FEATURES_FILE = "features.parquet"  # a partition's features (serving.batch writes it)
# Features that count days from the run date: a week later they are a week older (or nearer)
# with nothing new having happened.
AGING_PREFIXES, AGING_FEATURES = ("days_since_",), frozenset({"tenure_days"})
COUNTDOWN_PREFIXES = ("days_until_",)
AGING_SLACK_DAYS = 0.5
ENTERED_HIGH, NEW_HIGH, ROSE, NEW_TOP_REASON = "entered_high", "new_high", "rose", "new_top_reason"
KINDS = (ENTERED_HIGH, NEW_HIGH, ROSE, NEW_TOP_REASON)
HIGH = "high"

# What find_alerts reads from each partition, one row per customer (see top_driver_frame).
FRAME_COLUMNS = ["customer_id", "churn_probability", "risk_band", "top_feature", "top_reason"]

ALERTS_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("kinds", pa.list_(pa.string())),
        ("churn_probability", pa.float64()),
        ("previous_probability", pa.float64()),
        ("change_points", pa.float64()),
        ("level_change_points", pa.float64()),
        ("risk_band", pa.string()),
        ("previous_risk_band", pa.string()),
        ("top_feature", pa.string()),
        ("reason", pa.string()),
        ("risk_points", pa.float64()),
        ("previous_top_feature", pa.string()),
        ("previous_reason", pa.string()),
        ("as_of", pa.date32()),
        ("previous_as_of", pa.date32()),
    ]
)


# --------------------------------------------------------------------------- drivers -> reasons


def driver_reason(driver: dict[str, Any] | None) -> str | None:
    """A driver in words: its own ``reason`` when the partition has one, else its feature,
    value and contribution to the log-odds (partitions written before reasons existed)."""
    if not driver:
        return None
    reason = driver.get("reason")
    if isinstance(reason, str) and reason.strip():
        return reason
    feature = driver.get("feature")
    if feature is None:
        return None
    value = driver.get("value")
    if formatting.is_missing(value):
        value = driver.get("value_text")
    shown = _value_text(value)
    contribution = driver.get("contribution")
    added = (
        ""
        if formatting.is_missing(contribution)
        else f" (adds {formatting.number(contribution, 2)} to the log-odds of churn)"
    )
    return f"{feature} = {shown}{added}"


def _value_text(value: object) -> str:
    if formatting.is_missing(value):
        return formatting.MISSING
    try:
        return formatting.number(float(value), 2)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)


def _top_structs(scores: pa.Table) -> tuple[np.ndarray, pa.StructArray]:
    """Per row of a scores table: whether it has a driver, and its first driver (a struct)."""
    drivers = scores.column("drivers").combine_chunks()
    offsets = drivers.offsets.to_numpy()
    has_top = (offsets[1:] > offsets[:-1]) & drivers.is_valid().to_numpy(zero_copy_only=False)
    first = pa.array(np.where(has_top, offsets[:-1], 0), pa.int64(), mask=~has_top)
    flat = drivers.values
    top = flat.take(first) if len(flat) else pa.nulls(len(drivers), flat.type)
    return has_top, top


def top_driver_frame(scores: pa.Table, words: bool = True) -> pd.DataFrame:
    """From a partition's scores (customer_id, churn_probability, risk_band, drivers, and
    level_delta where the partition has it): one row per customer with its top driver's
    feature, reason in words and risk points (missing where it has no driver), and the level's
    part of its change. Vectorised over customers: only the first driver of each list is read.
    Drivers without a ``reason`` (partitions written before reasons existed) are put into words
    one by one, so with ``words=False`` they are left missing (see reasons_for: the weekly job
    words only its alerts)."""
    has_top, top = _top_structs(scores)
    names = {field.name for field in top.type}

    def column(name: str) -> np.ndarray | None:
        if name not in names:
            return None
        return top.field(name).to_numpy(zero_copy_only=False)

    # One Arrow -> pandas conversion (building pandas' strings from Python objects is slow).
    frame = pa.table(
        {
            "customer_id": scores.column("customer_id").cast(pa.string()),
            "churn_probability": scores.column("churn_probability").cast(pa.float64()),
            "risk_band": scores.column("risk_band").cast(pa.string()),
            "top_feature": top.field("feature")
            if "feature" in names
            else pa.nulls(len(top), pa.string()),
            # partitions written before it have none: no part of their change was the level's
            "level_delta": scores.column("level_delta").cast(pa.float64())
            if "level_delta" in scores.column_names
            else pa.nulls(len(top), pa.float64()),
        }
    ).to_pandas()
    reason = column("reason")
    reasons = reason.astype(object) if reason is not None else np.full(len(frame), None, object)
    if words:
        needs_words = np.flatnonzero(has_top & pd.isna(reasons))
        if len(needs_words):
            picked = top.take(pa.array(needs_words)).to_pylist()
            reasons[needs_words] = [driver_reason(d) for d in picked]
    reasons[~has_top] = None
    frame["top_reason"] = reasons
    points = column("risk_points")
    frame["top_risk_points"] = points.astype("float64") if points is not None else np.nan
    value = column("value")
    # A category's value (older partitions keep it as text) is no number to compare: missing.
    frame["top_value"] = (
        pd.to_numeric(pd.Series(value), errors="coerce").to_numpy(dtype="float64")
        if value is not None
        else np.nan
    )
    # A struct's children ignore the struct's own nulls: customers without a driver are blanked.
    frame.loc[~has_top, "top_feature"] = None
    frame.loc[~has_top, "top_risk_points"] = np.nan
    frame.loc[~has_top, "top_value"] = np.nan
    text = column("value_text")
    frame["top_text"] = text.astype(object) if text is not None else None
    frame.loc[~has_top, "top_text"] = None
    return frame


def reasons_for(scores: pa.Table, customer_ids: Sequence[str]) -> pd.Series:
    """The top reason in words of some customers of a scores table (indexed by id; missing for
    ids not in it or without a driver)."""
    ids = pd.Index(scores.column("customer_id").to_numpy(zero_copy_only=False).astype(str))
    positions = ids.get_indexer(pd.Index(customer_ids).astype(str))
    found = positions >= 0
    subset = top_driver_frame(scores.take(pa.array(positions[found])))
    out = pd.Series(None, index=pd.Index(customer_ids).astype(str), dtype=object)
    out.iloc[np.flatnonzero(found)] = subset["top_reason"].to_numpy(dtype=object)
    return out


SCORE_COLUMNS = [
    "customer_id", "churn_probability", "risk_band", "drivers", "level_delta", "drivers_moved",
]  # fmt: skip


def moved_reasons(scores: pa.Table, customer_ids: Sequence[str]) -> pd.Series:
    """What raised the risk of some customers since the previous scores, in words: the first
    driver that moved up (drivers_moved, its reason); missing where none did, where the
    partition has no words for it, or for ids not in the table."""
    out = pd.Series(None, index=pd.Index(customer_ids).astype(str), dtype=object)
    if "drivers_moved" not in scores.column_names:
        return out
    ids = pd.Index(scores.column("customer_id").to_numpy(zero_copy_only=False).astype(str))
    positions = ids.get_indexer(out.index)
    found = np.flatnonzero(positions >= 0)
    moved = scores.column("drivers_moved").take(pa.array(positions[found])).to_pylist()
    for k, drivers in zip(found, moved, strict=True):
        rising = [d for d in drivers or [] if d["change"] > 0 and d.get("reason")]
        if rising:
            out.iloc[k] = rising[0]["reason"]
    return out


def read_scores(partition: Path) -> pa.Table:
    """The columns of a partition's scores.parquet that alerts read (level_delta only where
    the partition has it: those written before it have none)."""
    scores = ds.dataset(str(Path(partition) / "scores.parquet"), format="parquet")
    present = set(scores.schema.names)  # a file, or the Spark engine's folder of part files
    return scores.to_table(columns=[c for c in SCORE_COLUMNS if c in present])


def read_feature_values(partition: Path, features: Sequence[str]) -> pd.DataFrame | None:
    """Some features of a partition's features.parquet (a file, or the Spark engine's folder
    of part files), indexed by customer_id; None where the partition has no such file."""
    path = Path(partition) / FEATURES_FILE
    if not path.exists():
        return None
    table = ds.dataset(str(path), format="parquet")
    present = set(table.schema.names)
    columns = ["customer_id", *[f for f in features if f in present and f != "customer_id"]]
    frame = table.to_table(columns=columns).to_pandas()
    return frame.set_index(frame["customer_id"].astype(str)).drop(columns="customer_id")


def read_top_drivers(partition: Path, words: bool = True) -> pd.DataFrame:
    """top_driver_frame of a partition's scores.parquet."""
    return top_driver_frame(read_scores(partition), words)


# --------------------------------------------------------------------------- the rules


def same_fact(feature: str, now: np.ndarray, before: np.ndarray, days: float) -> np.ndarray:
    """Per pair of values of one feature: whether the value now says what the value `days`
    earlier said: equal (both missing counts), or a count of days from the run date that moved
    by exactly the days between the runs (no activity then, still none now; the same renewal
    date, nearer)."""
    now, before = np.asarray(now, dtype="float64"), np.asarray(before, dtype="float64")
    same = (np.isnan(now) & np.isnan(before)) | (
        np.abs(now - before) <= 1e-9 * np.maximum(1.0, np.abs(now))
    )
    if feature in AGING_FEATURES or feature.startswith(AGING_PREFIXES):
        same |= np.abs(now - before - days) <= AGING_SLACK_DAYS
    elif feature.startswith(COUNTDOWN_PREFIXES):
        same |= np.abs(before - now - days) <= AGING_SLACK_DAYS
    return same


def news_of_top_values(
    current: pd.DataFrame, previous_values: pd.DataFrame, days: float
) -> np.ndarray:
    """Per row of `current` (FRAME_COLUMNS, top_value and top_text): whether its top feature's
    value changed since the previous run otherwise than by the `days` between them
    (same_fact; a category: whether its level differs). previous_values: the previous run's
    features, indexed by customer_id. True where the previous value is unknown (a feature or
    customer it lacks): nothing says it is old news."""
    news = np.ones(len(current), dtype=bool)
    if "top_value" not in current:
        return news
    positions = previous_values.index.astype(str).get_indexer(
        current["customer_id"].astype(str).to_numpy()
    )
    top = current["top_feature"].to_numpy(dtype=object)
    for feature in pd.unique(top[~pd.isna(top)]):
        column = previous_values.get(feature)
        if column is None:
            continue
        rows = np.flatnonzero((top == feature) & (positions >= 0))
        then = column.to_numpy()[positions[rows]]
        if pd.api.types.is_numeric_dtype(column):
            now = current["top_value"].to_numpy(dtype="float64")[rows]
            old = same_fact(str(feature), now, then.astype("float64"), days)
        elif "top_text" in current:  # a category: the same level as then
            texts = current["top_text"].to_numpy(dtype=object)[rows]
            old = np.array(
                [
                    t is not None and not pd.isna(v) and str(v) == str(t)
                    for t, v in zip(texts, then, strict=True)
                ],
                dtype=bool,
            )
        else:
            continue
        news[rows[old]] = False
    return news


def find_alerts(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    as_of: object,
    previous_as_of: object | None = None,
    config: ScoringConfig | None = None,
    previous_values: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """This run's alerts (ALERTS_SCHEMA columns, riskiest first) from the current and the
    previous run's customers (FRAME_COLUMNS each, e.g. from top_driver_frame; previous None on
    the first run). A customer absent from the previous run counts as newly high when high.
    previous_values: the previous run's features by customer_id, when known; a new top reason
    whose value is the same fact as then (news_of_top_values) is then no alert."""
    config = config or ScoringConfig()
    for name, frame in (("current", current), ("previous", previous)):
        if frame is None:
            continue
        missing = [c for c in FRAME_COLUMNS if c not in frame]
        if missing:
            raise ValueError(f"the {name} scores lack the columns {missing} (alerts need them)")
        duplicated = frame["customer_id"][frame["customer_id"].duplicated()]
        if len(duplicated):
            raise ValueError(
                f"the {name} scores hold customer_id {duplicated.iloc[0]!r} twice (alerts need "
                "one row per customer)"
            )
    now = current.reset_index(drop=True)
    if previous is not None:
        before = (
            previous.set_index("customer_id")[FRAME_COLUMNS[1:]]
            .reindex(now["customer_id"])
            .reset_index(drop=True)
        )
        for text in ("risk_band", "top_feature", "top_reason"):  # missing as None, not NaN
            before[text] = before[text].astype(object).where(before[text].notna(), None)
    else:
        before = pd.DataFrame(index=now.index, columns=FRAME_COLUMNS[1:], dtype=object)
    known = before["churn_probability"].notna().to_numpy()
    high = (now["risk_band"] == HIGH).to_numpy()
    was_high = (before["risk_band"] == HIGH).to_numpy() & known

    p_now = now["churn_probability"].to_numpy(dtype="float64")
    p_before = before["churn_probability"].to_numpy(dtype="float64")
    change = (p_now - p_before) * 100.0
    # The time of year's part of the change (none where the scores do not say it).
    level = (
        now["level_delta"].to_numpy(dtype="float64") * 100.0
        if "level_delta" in now
        else np.full(len(now), np.nan)
    )
    level = np.where(known, np.nan_to_num(level, nan=0.0), np.nan)
    # Rounded: 0.2 -> 0.3 is 9.999999999999998 points in floating point, and it is 10.
    net = np.round(change - np.nan_to_num(level), 9)
    rising_bands = now["risk_band"].isin(config.alert_rise_bands).to_numpy()
    rose = known & (net >= config.alert_rise_points) & rising_bands
    # Into the high band by a real rise, not a step over its threshold (ScoringConfig); with
    # nothing at all to compare with, the whole high band (said as such on a first run).
    entered_high = high & ~was_high & (known & (net >= config.alert_entered_high_points))
    if previous is None:
        entered_high |= high
    new_high = high & ~known if previous is not None else np.zeros(len(now), dtype=bool)

    top_now = now["top_feature"].astype(object).to_numpy()
    top_before = before["top_feature"].astype(object).to_numpy()
    both = known & ~pd.isna(top_now) & ~pd.isna(top_before)
    in_bands = now["risk_band"].isin(config.alert_new_reason_bands).to_numpy()
    new_reason = np.zeros(len(now), dtype=bool)
    new_reason[both] = top_now[both] != top_before[both]
    new_reason &= in_bands & (net >= config.alert_new_reason_points)
    if previous_values is not None and previous_as_of is not None and new_reason.any():
        days = (pd.Timestamp(as_of) - pd.Timestamp(previous_as_of)) / pd.Timedelta(days=1)
        rows = np.flatnonzero(new_reason)
        new_reason[rows] = news_of_top_values(now.iloc[rows], previous_values, days)

    flags = np.column_stack([entered_high, new_high, rose, new_reason])
    hit = flags.any(axis=1)
    rows = np.flatnonzero(hit)
    rows = rows[np.argsort(-p_now[rows], kind="stable")]
    kinds = [[k for k, on in zip(KINDS, flags[i], strict=True) if on] for i in rows]
    out = pd.DataFrame(
        {
            "customer_id": now["customer_id"].to_numpy()[rows].astype(str),
            "kinds": kinds,
            "churn_probability": p_now[rows],
            "previous_probability": p_before[rows],
            "change_points": change[rows],
            "level_change_points": level[rows],
            "risk_band": now["risk_band"].to_numpy()[rows],
            "previous_risk_band": before["risk_band"].to_numpy()[rows],
            "top_feature": top_now[rows],
            "reason": now["top_reason"].to_numpy()[rows],
            "risk_points": now["top_risk_points"].to_numpy(dtype="float64")[rows]
            if "top_risk_points" in now
            else np.nan,
            "previous_top_feature": top_before[rows],
            "previous_reason": before["top_reason"].to_numpy()[rows],
            "as_of": pd.Timestamp(as_of).date(),
            "previous_as_of": pd.Timestamp(previous_as_of).date()
            if previous_as_of is not None
            else None,
        }
    )
    return out[ALERTS_SCHEMA.names]


# --------------------------------------------------------------------------- files


def alerts_table(alerts: pd.DataFrame) -> pa.Table:
    """Alerts as an Arrow table of ALERTS_SCHEMA (missing values as nulls)."""
    frame = alerts.astype(object).where(alerts.notna(), None)
    return pa.Table.from_pandas(frame, schema=ALERTS_SCHEMA, preserve_index=False)


def alerts_csv_frame(
    alerts: pd.DataFrame, band_ranges: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The CSV hand-off: probabilities in % and the change in points (one decimal, numbers a
    spreadsheet or a CRM import reads) with the part the time of year's churn level made, the
    alert kinds joined by '; ', the band with its probabilities in words (band_ranges:
    reporting.formatting.band_ranges of the scoring model; empty without them), the reasons in
    words."""
    ranges = band_ranges or {}
    return pd.DataFrame(
        {
            "customer_id": alerts["customer_id"].astype(str),
            "alert": ["; ".join(k) for k in alerts["kinds"]],
            "probability_pct": (alerts["churn_probability"].astype(float) * 100).round(
                formatting.PROBABILITY_DIGITS
            ),
            "previous_probability_pct": (alerts["previous_probability"].astype(float) * 100).round(
                formatting.PROBABILITY_DIGITS
            ),
            "change_pts": alerts["change_points"].astype(float).round(1),
            "level_change_pts": alerts["level_change_points"].astype(float).round(1),
            "risk_band": alerts["risk_band"],
            "risk_band_range": [ranges.get(b) for b in alerts["risk_band"]],
            "previous_risk_band": alerts["previous_risk_band"],
            "reason": alerts["reason"],
            "previous_reason": alerts["previous_reason"],
            "as_of": alerts["as_of"].astype(str),
        }
    )


def write_alerts(
    folder: Path, alerts: pd.DataFrame, band_ranges: Mapping[str, str] | None = None
) -> None:
    """alerts.parquet and alerts.csv (UTF-8, one header row) into a partition folder."""
    folder = Path(folder)
    pq.write_table(alerts_table(alerts), folder / ALERTS_FILE)
    alerts_csv_frame(alerts, band_ranges).to_csv(folder / ALERTS_CSV, index=False, encoding="utf-8")


def write_partition_alerts(
    folder: Path,
    as_of: pd.Timestamp,
    previous: tuple[pd.Timestamp, Path | pd.DataFrame] | None,
    config: ScoringConfig | None = None,
    band_ranges: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The weekly job's step: compare the scores just written into ``folder`` with the previous
    partition's (when there is one), and write this run's alerts beside them. previous: its
    date and folder, or its scores as a frame of FRAME_COLUMNS (the Spark engine's first run:
    the probabilities and bands a week before, without their drivers). band_ranges: the bands'
    probabilities in words, for alerts.csv."""
    now = read_scores(folder)
    then = None
    before = None
    values = None
    current = top_driver_frame(now, words=False)
    if previous is not None and isinstance(previous[1], pd.DataFrame):
        before = previous[1]
    elif previous is not None:
        then = read_scores(previous[1])
        before = top_driver_frame(then, words=False)
        values = read_feature_values(previous[1], current["top_feature"].dropna().unique())
    alerts = find_alerts(
        current, before, as_of, previous[0] if previous is not None else None, config, values
    )
    # Reasons in words cost a Python call each on partitions without them: alerts only.
    for column, table in (("reason", now), ("previous_reason", then)):
        missing = (
            alerts[column].isna().to_numpy()
            & alerts["top_feature" if column == "reason" else "previous_top_feature"]
            .notna()
            .to_numpy()
        )
        if table is not None and missing.any():
            ids = alerts["customer_id"].to_numpy()[missing]
            alerts.loc[missing, column] = reasons_for(table, ids).to_numpy()
    # A risen risk below the typical customer's has no reason for risk: what moved says why.
    rose = np.array(["rose" in list(k) for k in alerts["kinds"]], dtype=bool)
    bare = alerts["reason"].isna().to_numpy() & rose
    if bare.any():
        ids = alerts["customer_id"].to_numpy()[bare]
        alerts.loc[bare, "reason"] = moved_reasons(now, ids).to_numpy()
    write_alerts(folder, alerts, band_ranges)
    return alerts


def read_alerts(partition: Path) -> pd.DataFrame:
    """A partition's alerts.parquet; a partition written before alerts existed has none (an
    empty frame of the same columns)."""
    path = Path(partition) / ALERTS_FILE
    if not path.is_file():
        return ALERTS_SCHEMA.empty_table().to_pandas()
    return pq.read_table(path).to_pandas()


_CACHE: dict[str, tuple[Path, float, list[dict[str, Any]]]] = {}  # the last partition read


def alert_records(partition: Path, kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """A partition's alerts as JSON-ready dicts (the service's /alerts), riskiest first,
    optionally only those of the given kinds. Read once per version of the file (a rerun that
    rewrites the partition is read again)."""
    path = Path(partition) / ALERTS_FILE
    stamp = path.stat().st_mtime if path.is_file() else -1.0
    cached = _CACHE.get("last")
    if cached is None or cached[:2] != (path, stamp):
        frame = read_alerts(partition).drop(columns=["as_of", "previous_as_of"])
        frame = frame.astype(object).where(frame.notna(), None)
        records = frame.to_dict("records")
        for record in records:
            record["kinds"] = list(record["kinds"])
        cached = (path, stamp, records)
        _CACHE["last"] = cached
    records = cached[2]
    if kinds is not None:
        wanted = set(kinds)
        records = [r for r in records if wanted.intersection(r["kinds"])]
    return records
