"""The latest scored partition of the weekly job, in memory, for lookups by customer id.

A ``PartitionStore`` watches the folder of partitions (CHURN_SCORES_DIR): at most once every
``check_every`` seconds a request triggers a listing of the folder (a directory read, nothing
more); when a newer complete partition (one with run.json) appears it is loaded in a background
thread and swapped in whole, while requests keep being answered from the previous one. So a new
weekly run is picked up without a restart, and a lookup is a dict access.

The data folder (CHURN_DATA_DIR, optional) is loaded with each partition: the segment metrics
are computed from it.

A partition dated in the future, or further past its data's end than the model's horizon (a
mistyped `churn score --as-of`), is never preferred: the newest plausible one is served and the
others are listed in ``status()``. A partition is known by its folder's inode and its run.json's
modification time, so a rerun of the same date (replaced in one atomic step) is picked up; a
load that saw the folder replaced under it is thrown away and retried. ``status()`` and
``exposition()`` (for /readyz and /metrics) give the partition's age and the last load error.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import gc
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import Tables
from serving.batch import list_partitions
from serving.handoff import LAPSED_CSV

logger = logging.getLogger("churn.serving")

SCORES_DIR_ENV = "CHURN_SCORES_DIR"
DATA_DIR_ENV = "CHURN_DATA_DIR"
CHECK_EVERY_ENV = "CHURN_PARTITION_CHECK_SECONDS"
DEFAULT_CHECK_EVERY = 5.0
_UNFREEZE_AT_EXIT = False
# A run date is the day after the last data it uses: tomorrow's date is not "in the future".
FUTURE_GRACE = timedelta(days=1)
Stamp = tuple[Path, int, int]  # folder, its inode, run.json's mtime in ns


def run_date_problem(
    as_of: date,
    data_end: datetime | date | None,
    horizon_days: int | None,
    today: date | None = None,
) -> str | None:
    """Why a run date should not be scored (or served), or None: it is in the future (after
    tomorrow, UTC), or further past the data's end than the model's horizon (features would
    describe customers as they were long before it). The one rule of `churn score` and the
    service."""
    from reporting.formatting import duration_days

    today = today or datetime.now(UTC).date()
    if as_of > today + FUTURE_GRACE:
        return f"is in the future (today is {today.isoformat()})"
    if data_end is not None and horizon_days:
        end = data_end.date() if isinstance(data_end, datetime) else data_end
        gap = (as_of - end).days
        if gap > horizon_days:
            return (
                f"is {duration_days(gap)} past the data's end ({end.isoformat()}), more than "
                f"the model's horizon of {horizon_days} days: a mistyped date? (the data's "
                "customers would be scored as they were on their last day)"
            )
    return None


def refuse_run_date(
    as_of: date,
    data_end: datetime | date | None,
    horizon_days: int | None,
    force: bool,
    warn: Callable[[str], None],
) -> None:
    """The run-date rule of `churn score`, both engines: a run date with a run_date_problem is
    a ValueError saying to give --force; forced, it is a warning (the service never serves that
    partition)."""
    problem = run_date_problem(as_of, data_end, horizon_days)
    if problem is None:
        return
    if not force:
        raise ValueError(
            f"run date {as_of} {problem}; give --force to score it anyway "
            "(the service will not serve it)"
        )
    warn(f"warning: run date {as_of} {problem} (--force)")


def partition_date_problem(info: dict[str, Any], today: date | None = None) -> str | None:
    """run_date_problem for a partition's run.json (data_end and horizon_days when recorded)."""
    data_end = info.get("data_end")
    horizon = info.get("horizon_days")
    return run_date_problem(
        date.fromisoformat(str(info["as_of"])),
        datetime.fromisoformat(str(data_end)) if data_end else None,
        int(horizon) if horizon else None,
        today,
    )


@dataclass(frozen=True)
class ScoredRow:
    """One customer's precomputed score, drivers and change since the previous run."""

    customer_id: str
    churn_probability: float
    risk_band: str
    drivers: list[dict[str, Any]]
    model_version: str
    previous_probability: float | None
    probability_delta: float | None
    drivers_moved: list[dict[str, Any]]
    level_delta: float | None = None  # the time of year's part of probability_delta
    lower_risk: list[dict[str, Any]] = field(default_factory=list)  # training.drivers


def fold_id(customer_id: str) -> str:
    """An id without what other tools change in it: case, surrounding spaces, and the leading
    zeros of an all-digit id."""
    text = customer_id.strip().casefold()
    return (text.lstrip("0") or "0") if text.isdigit() else text


@dataclass
class Partition:
    """One loaded partition: columns as Python lists and an id -> row index."""

    as_of: date
    previous_as_of: date | None
    model_version: str
    path: Path
    info: dict[str, Any]
    scores: pd.DataFrame  # customer_id, churn_probability, risk_band (for the risk view)
    revenue: pd.DataFrame  # customer_id and revenue_30d when the features have it (risk view)
    tables: Tables | None
    index: dict[str, int]
    columns: dict[str, list[Any]]
    feature_block: FeatureBlock
    loaded_at: float = field(default_factory=time.time)
    stamp: Stamp | None = None  # what the folder was when it was read (PartitionStore)
    # lapsed.csv's buyers (non-contractual runs): id -> (last qualifying activity, UTC ISO 8601;
    # days since it): not scored, but known, so /score says why rather than "unknown"
    lapsed: dict[str, tuple[str, float]] = field(default_factory=dict)
    _folded: dict[str, str | None] | None = field(default=None, repr=False)  # similar_id's

    def __len__(self) -> int:
        return len(self.index)

    def similar_id(self, customer_id: str) -> str | None:
        """The one scored id that `customer_id` is as typed elsewhere (another case, spaces
        around it, leading zeros dropped by a spreadsheet), or None: ids are matched exactly,
        and a shop's `/score` of "Lisa.Mueller818@outlook.com" had answered only "unknown"
        where its import had lower-cased the e-mails."""
        if self._folded is None:
            folded: dict[str, str | None] = {}
            for known in self.index:
                key = fold_id(known)
                folded[key] = known if key not in folded else None  # None: not one id
            self._folded = folded
        return self._folded.get(fold_id(customer_id))

    def lookup(self, customer_id: str) -> ScoredRow | None:
        i = self.index.get(customer_id)
        if i is None:
            return None
        c = self.columns
        return ScoredRow(
            customer_id=customer_id,
            churn_probability=c["churn_probability"][i],
            risk_band=c["risk_band"][i],
            drivers=c["drivers"][i],
            model_version=c["model_version"][i],
            previous_probability=c["previous_probability"][i],
            probability_delta=c["probability_delta"][i],
            drivers_moved=c["drivers_moved"][i],
            level_delta=c["level_delta"][i],
            lower_risk=c["lower_risk"][i],
        )

    def lapsed_since(self, customer_id: str) -> tuple[str, float] | None:
        """(last qualifying activity, days since it) of a buyer the run listed as lapsed."""
        return self.lapsed.get(customer_id)

    def feature_row(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's feature record (name -> value; NaN or None for missing), or None."""
        i = self.index.get(customer_id)
        return None if i is None else self.feature_block.row(i)


@dataclass(frozen=True)
class FeatureBlock:
    """The partition's features by scores row: numbers as one float64 array (compact at
    scale), other columns as lists."""

    numeric_names: list[str]
    numeric_values: np.ndarray
    other_values: dict[str, list[Any]]

    @classmethod
    def from_frame(cls, features: pd.DataFrame, ids: list[str]) -> FeatureBlock:
        frame = features.reindex(ids)
        numeric = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
        others = {
            c: frame[c].astype(object).where(frame[c].notna(), None).tolist()
            for c in frame.columns
            if c not in set(numeric)
        }
        return cls(numeric, frame[numeric].to_numpy(dtype="float64"), others)

    def row(self, i: int) -> dict[str, Any]:
        row = dict(zip(self.numeric_names, self.numeric_values[i].tolist(), strict=True))
        for name, values in self.other_values.items():
            row[name] = values[i]
        return row


def _finite_or_none(values: list[Any]) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) else float(v) for v in values]


def load_partition(path: Path, data_dir: Path | None = None) -> Partition:
    """Read a partition written by serving.batch (and the data folder, when given)."""
    info = json.loads((path / "run.json").read_text())
    table = pq.read_table(path / "scores.parquet")
    ids = [str(v) for v in table.column("customer_id").to_pylist()]
    columns: dict[str, list[Any]] = {
        "churn_probability": [float(v) for v in table.column("churn_probability").to_pylist()],
        "risk_band": [str(v) for v in table.column("risk_band").to_pylist()],
        "drivers": [list(v or []) for v in table.column("drivers").to_pylist()],
        "model_version": [str(v) for v in table.column("model_version").to_pylist()],
        "previous_probability": _finite_or_none(table.column("previous_probability").to_pylist()),
        "probability_delta": _finite_or_none(table.column("probability_delta").to_pylist()),
        "drivers_moved": [list(v or []) for v in table.column("drivers_moved").to_pylist()],
        # partitions written before it have none
        "level_delta": _finite_or_none(table.column("level_delta").to_pylist())
        if "level_delta" in table.column_names
        else [None] * len(ids),
        "lower_risk": [list(v or []) for v in table.column("lower_risk").to_pylist()]
        if "lower_risk" in table.column_names
        else [[] for _ in ids],
    }
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": columns["churn_probability"],
            "risk_band": columns["risk_band"],
        }
    )
    features = pd.read_parquet(path / "features.parquet")
    features["customer_id"] = features["customer_id"].astype("str")
    features = features.set_index("customer_id")
    revenue = features[[c for c in ("revenue_30d",) if c in features]].reset_index()
    tables = None
    if data_dir is not None:
        from features.io import load_tables

        tables = load_tables(data_dir)
    previous = info.get("previous_as_of")
    lapsed = _read_lapsed(path / LAPSED_CSV)
    return Partition(
        as_of=date.fromisoformat(info["as_of"]),
        previous_as_of=date.fromisoformat(previous) if previous else None,
        model_version=str(info.get("model_version", "")),
        path=path,
        info=info,
        scores=scores,
        revenue=revenue,
        tables=tables,
        index={cid: i for i, cid in enumerate(ids)},
        columns=columns,
        feature_block=FeatureBlock.from_frame(features, ids),
        lapsed=lapsed,
    )


def _read_lapsed(path: Path) -> dict[str, tuple[str, float]]:
    """lapsed.csv (serving.handoff.write_lapsed_csv) as id -> (last activity, days since);
    empty when the run wrote none (contractual churn, partitions from before it)."""
    if not path.exists():
        return {}
    types = {"customer_id": pa.string(), "last_activity_at": pa.string()}
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    return {
        str(cid): (str(at), float(days))
        for cid, at, days in zip(
            table.column("customer_id").to_pylist(),
            table.column("last_activity_at").to_pylist(),
            table.column("days_since_last_activity").to_pylist(),
            strict=True,
        )
    }


class PartitionStore:
    """The latest complete, plausibly dated partition under ``root``, reloaded when a newer one
    appears or it is replaced. ``on_load`` runs on a loaded partition before it is swapped in
    (the service loads the model that scored it there); an error in it keeps the previous one."""

    def __init__(
        self,
        root: str | Path,
        data_dir: str | Path | None = None,
        check_every: float = DEFAULT_CHECK_EVERY,
        on_load: Callable[[Partition], None] | None = None,
    ):
        self.root = Path(root)
        self.data_dir = Path(data_dir) if data_dir else None
        self.check_every = float(check_every)
        self.on_load = on_load
        self._current: Partition | None = None
        self._next_check = 0.0
        self._loading = threading.Lock()
        self._failed: Stamp | None = None
        self._infos: dict[Path, tuple[Stamp, dict[str, Any] | str]] = {}
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.load_errors = 0
        self.skipped: dict[str, str] = {}  # partition folder -> why it is not served

    @classmethod
    def from_env(cls, on_load: Callable[[Partition], None] | None = None) -> PartitionStore:
        root = os.environ.get(SCORES_DIR_ENV)
        if not root:
            raise RuntimeError(
                f"{SCORES_DIR_ENV} is not set: point it at the weekly job's output folder "
                "(the --out of `churn score`)"
            )
        check = os.environ.get(CHECK_EVERY_ENV)
        return cls(
            root,
            os.environ.get(DATA_DIR_ENV) or None,
            float(check) if check else DEFAULT_CHECK_EVERY,
            on_load,
        )

    def current(self) -> Partition | None:
        """The partition to answer from; checks for a newer one when a check is due (the load
        itself runs in the background)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_every
            self._check(background=True)
        return self._current

    def refresh(self) -> Partition | None:
        """Check now and load a newer partition before returning (start-up, tests)."""
        self._next_check = time.monotonic() + self.check_every
        self._check(background=False)
        return self._current

    def _info(self, path: Path, stamp: Stamp) -> dict[str, Any] | str:
        """A partition's run.json (cached while the folder is unchanged), or why it is unreadable."""
        cached = self._infos.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            info: dict[str, Any] | str = json.loads((path / "run.json").read_text())
            if not isinstance(info, dict) or "as_of" not in info:
                info = "run.json has no as_of"
        except (OSError, ValueError) as err:
            info = f"run.json cannot be read: {err}"
        self._infos[path] = (stamp, info)
        return info

    def _latest(self) -> tuple[Path, Stamp] | None:
        """The newest partition whose date is plausible; the others are noted in `skipped`."""
        skipped: dict[str, str] = {}
        chosen = None
        for _, path in reversed(list_partitions(self.root)):
            stamp = _stamp(path)
            if stamp is None:
                continue  # replaced or removed while listing
            info = self._info(path, stamp)
            if isinstance(info, str):
                chosen = (path, stamp)  # let the load report it (last_error) and keep the last
                break
            try:
                problem = partition_date_problem(info)
            except (KeyError, ValueError, TypeError) as err:
                problem = f"run.json has an unreadable date: {err}"
            if problem is None:
                chosen = (path, stamp)
                break
            skipped[path.name] = f"run date {info.get('as_of')} {problem}"
        if skipped != self.skipped:
            for name, why in skipped.items():
                if name not in self.skipped:
                    logger.warning("not serving partition %s: %s", name, why)
            self.skipped = skipped
        return chosen

    def newest_info(self) -> dict[str, Any] | None:
        """The run.json of the partition the store would serve now (None without one)."""
        latest = self._latest()
        if latest is None:
            return None
        info = self._info(*latest)
        return info if isinstance(info, dict) else None

    def _check(self, background: bool) -> None:
        latest = self._latest()
        if latest is None:
            return
        path, stamp = latest
        if self._current is not None and self._current.stamp == stamp:
            return
        if stamp == self._failed:
            return  # this exact partition failed to load; wait for it to change
        if not self._loading.acquire(blocking=not background):
            return  # a load is already under way
        if background:
            threading.Thread(
                target=self._load, args=(path, stamp), name="partition-load", daemon=True
            ).start()
        else:
            self._load(path, stamp)

    def _load(self, path: Path, stamp: Stamp) -> None:
        try:
            started = time.perf_counter()
            partition = load_partition(path, self.data_dir)
            if _stamp(path) != stamp:
                # Replaced while it was read: the files may mix two runs. Look again soon.
                self._next_check = 0.0
                logger.info("partition %s was replaced while loading; reading it again", path)
                return
            partition.stamp = stamp
            if self.on_load is not None:
                self.on_load(partition)
            self._current = partition
            self._failed, self.last_error = None, None
            settle_heap()
            logger.info(
                "loaded partition %s: %d customers in %.2fs",
                path.name,
                len(partition),
                time.perf_counter() - started,
            )
        except Exception as err:  # a corrupt file raises many kinds of errors
            # Keep answering from the partition we have; report the broken one (status, metrics).
            if _stamp(path) != stamp:
                self._next_check = 0.0  # replaced under us, not broken
                return
            self._failed = stamp
            self.last_error = f"{path.name}: {type(err).__name__}: {err}"[:500]
            self.last_error_at = time.time()
            self.load_errors += 1
            logger.error("could not load partition %s: %s", path, err)
        finally:
            self._loading.release()

    def status(self, now: float | None = None) -> dict[str, Any]:
        """What /readyz shows: the partition served, its age, the last load error, and the
        partitions not served because of their date."""
        now = time.time() if now is None else now
        partition = self._current
        return {
            "ready": partition is not None,
            "partition": None if partition is None else partition.path.name,
            "as_of": None if partition is None else partition.as_of.isoformat(),
            "model_version": None if partition is None else partition.model_version,
            "customers": None if partition is None else len(partition),
            "partition_age_seconds": None if partition is None else _age(partition, now),
            "loaded_at": None if partition is None else partition.loaded_at,
            "last_load_error": self.last_error,
            "last_load_error_at": self.last_error_at,
            "load_errors": self.load_errors,
            "skipped_partitions": dict(self.skipped),
        }

    def exposition(self, now: float | None = None) -> list[str]:
        """Prometheus lines: the partition's date and age, its customers, load errors, and
        whether the newest partition failed to load (a fixed set of series, no free text)."""
        status = self.status(now)
        partition = self._current
        gauges = [
            ("churn_partition_as_of_timestamp_seconds", "Run date of the partition served.",
             "gauge", None if partition is None else _midnight(partition.as_of)),
            ("churn_partition_age_seconds", "Time since the served partition's run date.",
             "gauge", status["partition_age_seconds"]),
            ("churn_partition_customers", "Customers in the served partition.",
             "gauge", status["customers"]),
            ("churn_partition_load_failing", "1 when the newest partition could not be loaded.",
             "gauge", int(self.last_error is not None)),
            ("churn_partition_last_load_error_timestamp_seconds", "When a load last failed.",
             "gauge", self.last_error_at),
            ("churn_partition_load_errors_total", "Partition loads that failed.",
             "counter", self.load_errors),
            ("churn_partition_skipped", "Partitions not served: dated in the future or far past "
             "their data.", "gauge", len(self.skipped)),
        ]  # fmt: skip
        lines = []
        for name, help_text, kind, value in gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines.append(f"{name} {'NaN' if value is None else value}")
        return lines


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _age(partition: Partition, now: float) -> float:
    return round(now - _midnight(partition.as_of), 3)


def _stamp(path: Path) -> Stamp | None:
    """A partition folder's identity: its inode (a rerun swaps in a new folder) and run.json's
    modification time; None when it is gone."""
    try:
        return (path, path.stat().st_ino, (path / "run.json").stat().st_mtime_ns)
    except OSError:
        return None


def settle_heap() -> None:
    """Collect once, then freeze what is alive (the model, the partition, the libraries) out of
    the cyclic garbage collector's reach. Without this a full collection walks those hundreds of
    thousands of long-lived objects every so often while requests wait (pauses of 0.2-0.4 s were
    measured under load); with it a full collection only walks what requests allocate. The
    previous partition is unfrozen and collected first, so swapping partitions leaks nothing, and
    everything is unfrozen at exit, so that the interpreter's last collection sees it all."""
    global _UNFREEZE_AT_EXIT
    if not _UNFREEZE_AT_EXIT:
        atexit.register(gc.unfreeze)
        _UNFREEZE_AT_EXIT = True
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return_free_memory()


def return_free_memory() -> list[str]:
    """Hand the memory freed by the previous partition back to the system; the allocators that
    did. Freeing a partition does not lower the process's memory by itself: Arrow's allocator
    (mimalloc in the pyarrow wheels) keeps the pages that held its Parquet buffers for reuse,
    and glibc's malloc keeps free pages inside its heaps, the load thread's own arena included.
    Measured on the soak benchmark's partition (3,000 customers with their data folder): the
    worker's memory stayed ~30 MB higher after each swap's first, of which `release_unused`
    returns ~22 MB and `malloc_trim` ~5 MB; what remains (~10 MB, Python's own arenas and
    malloc's fragments from the moment both partitions were alive) does not grow with more
    swaps."""
    done = []
    pa.default_memory_pool().release_unused()
    done.append(pa.default_memory_pool().backend_name)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
        done.append("glibc")
    return done


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None (another C library, another system)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
