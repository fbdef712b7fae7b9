"""The latest scored partition of the weekly job, in memory, for lookups by customer id.

A ``PartitionStore`` watches the folder of partitions (CHURN_SCORES_DIR): at most once every
``check_every`` seconds a request triggers a listing of the folder (a directory read, nothing
more); when a newer complete partition (one with run.json) appears it is loaded in a background
thread and swapped in whole, while requests keep being answered from the previous one. So a new
weekly run is picked up without a restart, and a lookup is a dict access.

The data folder (CHURN_DATA_DIR, optional) is loaded with each partition: the segment metrics
are computed from it.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import ContractError, Tables
from serving.batch import list_partitions

logger = logging.getLogger("churn.serving")

SCORES_DIR_ENV = "CHURN_SCORES_DIR"
DATA_DIR_ENV = "CHURN_DATA_DIR"
CHECK_EVERY_ENV = "CHURN_PARTITION_CHECK_SECONDS"
DEFAULT_CHECK_EVERY = 5.0
_LOAD_ERRORS = (OSError, ValueError, KeyError, pa.ArrowException, ContractError)
_UNFREEZE_AT_EXIT = False


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

    def __len__(self) -> int:
        return len(self.index)

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
        )

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
    )


class PartitionStore:
    """The latest complete partition under ``root``, reloaded when a newer one appears."""

    def __init__(
        self,
        root: str | Path,
        data_dir: str | Path | None = None,
        check_every: float = DEFAULT_CHECK_EVERY,
    ):
        self.root = Path(root)
        self.data_dir = Path(data_dir) if data_dir else None
        self.check_every = float(check_every)
        self._current: Partition | None = None
        self._next_check = 0.0
        self._loading = threading.Lock()
        self._failed: tuple[Path, float] | None = None
        self.last_error: str | None = None

    @classmethod
    def from_env(cls) -> PartitionStore:
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

    def _latest(self) -> Path | None:
        found = list_partitions(self.root)
        return found[-1][1] if found else None

    def _check(self, background: bool) -> None:
        latest = self._latest()
        if latest is None or (self._current is not None and self._current.path == latest):
            return
        stamp = (latest, _mtime(latest / "run.json"))
        if stamp == self._failed:
            return  # this exact partition failed to load; wait for it to change
        if not self._loading.acquire(blocking=not background):
            return  # a load is already under way
        if background:
            threading.Thread(
                target=self._load, args=(latest, stamp), name="partition-load", daemon=True
            ).start()
        else:
            self._load(latest, stamp)

    def _load(self, path: Path, stamp: tuple[Path, float]) -> None:
        try:
            started = time.perf_counter()
            partition = load_partition(path, self.data_dir)
            self._current = partition
            self._failed, self.last_error = None, None
            settle_heap()
            logger.info(
                "loaded partition %s: %d customers in %.2fs",
                path.name,
                len(partition),
                time.perf_counter() - started,
            )
        except _LOAD_ERRORS as err:
            # Keep answering from the partition we have; report the broken one once.
            self._failed, self.last_error = stamp, f"{path}: {err}"
            logger.error("could not load partition %s: %s", path, err)
        finally:
            self._loading.release()


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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
