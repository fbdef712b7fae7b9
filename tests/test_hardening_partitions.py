"""Hardening of the service's partitions (issue #15, items 3 and 8): a partition dated in the
future or far past its data is never preferred, a rerun of a date is picked up, and a corrupt
newest partition is shown in the status and the metrics while the previous one is served."""

from __future__ import annotations

import gc
import json
import platform
import sys
import time
import weakref
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.io import atomic_dir
from serving.batch import SCORES_SCHEMA
from serving.partitions import PartitionStore, run_date_problem

DATA_END = "2024-11-30T18:00:00"


def write_partition(
    root: Path, as_of: str, ids: tuple[str, ...] = ("a", "b"), **info: object
) -> Path:
    """A small complete partition as the weekly job writes it (two customers by default)."""
    target = root / f"as_of={as_of}"
    with atomic_dir(target) as tmp:
        n = len(ids)
        columns = {
            "customer_id": list(ids),
            "churn_probability": [0.1 * (i + 1) for i in range(n)],
            "risk_band": ["low"] * n,
            "drivers": [[] for _ in ids],
            "model_version": [str(info.get("model_version", "1"))] * n,
            "previous_probability": [None] * n,
            "probability_delta": [None] * n,
            "level_delta": [None] * n,
            "drivers_moved": [[] for _ in ids],
            "lower_risk": [[] for _ in ids],
        }
        pq.write_table(pa.Table.from_pydict(columns, schema=SCORES_SCHEMA), tmp / "scores.parquet")
        features = pd.DataFrame({"customer_id": list(ids), "recency_days": [1.0] * n})
        features.to_parquet(tmp / "features.parquet", index=False)
        run = {"as_of": as_of, "model_version": "1", "data_end": DATA_END, "horizon_days": 30}
        (tmp / "run.json").write_text(json.dumps({**run, **info}))
    return target


def test_a_run_date_in_the_future_or_far_past_the_data_is_a_problem():
    today = date(2026, 12, 2)
    end = pd.Timestamp(DATA_END).to_pydatetime()
    assert run_date_problem(date(2024, 12, 1), end, 30, today) is None
    assert run_date_problem(date(2024, 12, 30), end, 30, today) is None  # within the horizon
    late = run_date_problem(date(2030, 1, 8), end, 30, today)
    assert late and "in the future" in late
    past = run_date_problem(date(2025, 3, 1), end, 30, today)
    assert past and "past the data's end (2024-11-30)" in past and "horizon of 30 days" in past
    assert run_date_problem(today + timedelta(days=1), None, None, today) is None  # tomorrow
    assert "future" in run_date_problem(today + timedelta(days=2), None, None, today)


def test_the_service_never_prefers_a_partition_dated_after_its_data_or_after_now(tmp_path):
    write_partition(tmp_path, "2024-12-01")
    write_partition(tmp_path, "2025-06-01")  # a mistyped date, half a year past the data
    future = (date.today() + timedelta(days=30)).isoformat()
    write_partition(tmp_path, future, data_end=None, horizon_days=None)  # older run.json
    store = PartitionStore(tmp_path, check_every=60)
    assert store.refresh().as_of == date(2024, 12, 1)
    skipped = store.status()["skipped_partitions"]
    assert sorted(skipped) == ["as_of=2025-06-01", f"as_of={future}"]
    assert "past the data's end" in skipped["as_of=2025-06-01"]
    assert "in the future" in skipped[f"as_of={future}"]
    assert "churn_partition_skipped 2" in store.exposition()


def test_a_rerun_of_the_same_date_is_picked_up(tmp_path):
    write_partition(tmp_path, "2024-12-01", ids=("a", "b"))
    store = PartitionStore(tmp_path, check_every=60)
    assert len(store.refresh()) == 2
    write_partition(tmp_path, "2024-12-01", ids=("a", "b", "c"))
    assert len(store.refresh()) == 3


def test_a_corrupt_newest_partition_is_reported_while_the_previous_one_is_served(tmp_path):
    write_partition(tmp_path, "2024-12-01")
    store = PartitionStore(tmp_path, check_every=60)
    now = time.time()
    assert store.refresh().as_of == date(2024, 12, 1)
    assert "churn_partition_load_failing 0" in store.exposition(now)
    broken = write_partition(tmp_path, "2024-12-08")
    (broken / "scores.parquet").write_bytes(b"PAR1 not parquet at all")
    assert store.refresh().as_of == date(2024, 12, 1)
    status = store.status(now)
    assert status["ready"] and status["as_of"] == "2024-12-01"
    assert status["last_load_error"].startswith("as_of=2024-12-08: ")
    assert status["partition_age_seconds"] == pytest.approx(
        now - pd.Timestamp("2024-12-01", tz="UTC").timestamp(), abs=1
    )
    lines = store.exposition(now)
    assert "churn_partition_load_failing 1" in lines
    assert "churn_partition_load_errors_total 1" in lines
    assert any(line.startswith("churn_partition_age_seconds 6") for line in lines)
    store.refresh()  # the same broken folder is not read again and again
    assert store.load_errors == 1
    write_partition(tmp_path, "2024-12-08")  # repaired by a rerun
    assert store.refresh().as_of == date(2024, 12, 8)
    assert store.status()["last_load_error"] is None


def test_an_error_while_preparing_a_partition_keeps_the_previous_one(tmp_path):
    write_partition(tmp_path, "2024-12-01")
    refuse = {"on": False}

    def on_load(partition):
        if refuse["on"]:
            raise LookupError(f"no model v{partition.model_version} in the store")

    store = PartitionStore(tmp_path, check_every=60, on_load=on_load)
    assert store.refresh().as_of == date(2024, 12, 1)
    refuse["on"] = True
    write_partition(tmp_path, "2024-12-08", model_version="2")
    assert store.refresh().as_of == date(2024, 12, 1)
    assert "LookupError: no model v2" in store.status()["last_load_error"]


def test_an_empty_folder_is_not_ready_and_says_so(tmp_path):
    store = PartitionStore(tmp_path, check_every=60)
    assert store.refresh() is None
    status = store.status()
    assert status["ready"] is False and status["partition"] is None
    assert "churn_partition_age_seconds NaN" in store.exposition()


def wait_for(store: PartitionStore, as_of: date) -> None:
    """Poll until the store serves `as_of` (its load runs in a background thread)."""
    deadline = time.monotonic() + 30
    while (store.current() is None or store.current().as_of != as_of) or store._loading.locked():
        assert time.monotonic() < deadline, f"the store never served {as_of}: {store.status()}"
        time.sleep(0.01)


def test_after_a_swap_in_the_background_the_previous_partition_is_unreachable(tmp_path):
    """Nothing (the on_load callback, the store's caches, the frozen gc generation) keeps the
    old partition alive: a weekly swap frees its memory instead of piling partitions up."""
    write_partition(tmp_path, "2024-12-01")
    seen: list[str] = []
    store = PartitionStore(
        tmp_path, check_every=0, on_load=lambda p: seen.append(p.info["model_version"])
    )
    old = weakref.ref(store.refresh())
    write_partition(tmp_path, "2024-12-08")
    wait_for(store, date(2024, 12, 8))
    assert seen == ["1", "1"]
    assert old() is None, [type(r).__name__ for r in gc.get_referrers(old())]


def test_settling_after_a_load_hands_freed_memory_back_to_the_system(tmp_path, monkeypatch):
    """After a swap the allocators are asked to return what the old partition held (Arrow's
    pool keeps freed buffers, glibc keeps free pages in its heaps): without it the soak's worker
    stayed ~30 MB higher after the first swap."""
    import serving.partitions as partitions

    calls: list[list[str]] = []
    real = partitions.return_free_memory
    monkeypatch.setattr(partitions, "return_free_memory", lambda: calls.append(real()) or [])
    write_partition(tmp_path, "2024-12-01")
    store = PartitionStore(tmp_path, check_every=0)
    store.refresh()
    write_partition(tmp_path, "2024-12-08")
    wait_for(store, date(2024, 12, 8))
    assert len(calls) == 2
    assert calls[0][0] == pa.default_memory_pool().backend_name
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert calls[0][1:] == ["glibc"]


def test_a_partition_written_before_level_delta_is_read_without_it(tmp_path):
    """Partitions of earlier versions have no level_delta column (the time of year's part of
    each change) and no lower_risk: the service, the alerts, the report and the hand-off CSV
    read them, the part unknown and no lower-risk reason."""
    from reporting.report_html import riskiest_customers
    from serving.alerts import read_top_drivers
    from serving.handoff import write_scores_csv
    from serving.partitions import load_partition

    path = write_partition(tmp_path, "2024-12-01")
    table = pq.read_table(path / "scores.parquet").drop_columns(["level_delta", "lower_risk"])
    pq.write_table(table, path / "scores.parquet")
    row = load_partition(path).lookup("a")
    assert row is not None and row.level_delta is None and row.lower_risk == []
    assert read_top_drivers(path)["level_delta"].isna().all()
    assert riskiest_customers(path / "scores.parquet")["level_points"].isna().all()
    older = write_partition(tmp_path / "lower", "2024-12-01")
    table = pq.read_table(older / "scores.parquet").drop_columns(["lower_risk"])
    pq.write_table(table, older / "scores.parquet")
    assert write_scores_csv(older / "scores.parquet", tmp_path / "scores.csv") == 2
    written = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False)
    assert written["lower_risk_reason"].tolist() == ["", ""]
