"""The fast paths of loading and feature building give exactly what the plain paths give."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import features.contract as contract
import features.io as fio
from features.config import FeatureConfig
from features.contract import ContractError, validate_tables
from features.labels import build_labels
from features.prepared import prepare
from features.signals import build_features
from ingest.demo_data import DemoConfig, write_demo

DATES = ("2023-06-01", "2023-11-15", "2024-06-01")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo data folder whose activity file has many row groups."""
    data = tmp_path_factory.mktemp("fast") / "data"
    write_demo(data, DemoConfig(n_customers=300, seed=5))
    table = pq.read_table(data / "activity.parquet")
    pq.write_table(table, data / "activity.parquet", row_group_size=len(table) // 7 + 1)
    return data


def plain_read(path) -> pd.DataFrame:
    """What read_table did before the fast paths: Arrow read, then to_pandas."""
    names = pq.read_schema(path).names
    dictionary = [c for c in ("customer_id", "event", "kind") if c in names]
    df = pq.read_table(path, read_dictionary=dictionary).to_pandas()
    if "signup_at" in names and isinstance(df["customer_id"].dtype, pd.CategoricalDtype):
        df["customer_id"] = df["customer_id"].astype(df["customer_id"].cat.categories.dtype)
    return df


@pytest.mark.parametrize("threads", [1, 3])  # 7 row groups: runs of 3, 2 and 2 with 3 threads
def test_row_group_reader_equals_arrow_to_pandas(demo, monkeypatch, threads):
    monkeypatch.setattr(fio, "COLUMNAR_MIN_ROWS", 0)
    monkeypatch.setattr(fio, "READ_THREADS", threads)
    path = demo / "activity.parquet"
    assert fio._read_columnar(path, ["customer_id", "event"]) is not None  # the fast path ran
    for name in ("customers", "activity", "feedback", "revenue"):
        pd.testing.assert_frame_equal(
            fio.read_table(demo / f"{name}.parquet"), plain_read(demo / f"{name}.parquet")
        )


def test_row_groups_with_other_dictionaries_fall_back(tmp_path, monkeypatch):
    monkeypatch.setattr(fio, "COLUMNAR_MIN_ROWS", 0)
    path = tmp_path / "activity.parquet"
    schema = pa.schema(
        [("customer_id", pa.string()), ("at", pa.timestamp("ns")), ("event", pa.string())]
    )
    with pq.ParquetWriter(path, schema) as writer:  # one row group per write, own dictionary
        for ids in (["b", "a", None], ["c", "a", "c"]):
            at = pa.array([1, 2, None], pa.timestamp("ns"))
            writer.write_table(pa.table({"customer_id": ids, "at": at, "event": ["x", "y", "x"]}))
    assert fio._read_columnar(path, ["customer_id", "event"]) is None
    pd.testing.assert_frame_equal(fio.read_table(path), plain_read(path))


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    return df.iloc[np.random.default_rng(seed).permutation(len(df))].reset_index(drop=True)


def test_time_ordered_and_shuffled_events_give_the_same_features_and_labels(demo):
    ordered = fio.load_tables(demo)
    shuffled_tables = validate_tables(
        ordered.customers,
        shuffled(ordered.activity, 1),
        shuffled(ordered.feedback, 2),
        shuffled(ordered.revenue, 3),
    )
    assert prepare(ordered).activity.time_ordered
    assert not prepare(shuffled_tables).activity.time_ordered
    config = FeatureConfig(windows=(7, 30, 90), trend_window=30)
    for as_of in DATES:
        pd.testing.assert_frame_equal(
            build_features(ordered, as_of, config), build_features(shuffled_tables, as_of, config)
        )
        pd.testing.assert_frame_equal(
            build_labels(ordered, as_of, config.churn),
            build_labels(shuffled_tables, as_of, config.churn),
        )


def frames():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "signup_at": ["2024-01-01"] * 2})
    activity = pd.DataFrame(
        {"customer_id": ["a", "b"], "at": ["2024-03-01", "2024-03-02"], "event": ["x", "y"]}
    )
    feedback = pd.DataFrame(
        {"customer_id": ["a", "b"], "at": ["2024-03-01"] * 2, "kind": ["nps", "csat"]}
    )
    revenue = pd.DataFrame({"customer_id": ["a", "b"], "at": ["2024-03-01"] * 2, "amount": 1.0})
    return customers, activity, feedback, revenue


BAD = {
    "negative value": {"activity": {"value": [1.0, -3.0]}},
    "minus infinity": {"activity": {"value": [-np.inf, 2.0]}},
    "score above 10": {"feedback": {"score": [11.0, 3.0]}},
    "negative score": {"feedback": {"score": [np.nan, -0.5]}},
    "unknown kind": {"feedback": {"kind": ["nps", "tweet"]}},
    "unknown categorical kind": {"feedback": {"kind": pd.Categorical(["tweet", "nps"])}},
    "unknown status": {"feedback": {"status": ["open", "weird"]}},
    "unknown revenue kind": {"revenue": {"kind": ["invoice", "gift"]}},
    "missing amount": {"revenue": {"amount": [np.nan, 1.0]}},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_numpy_checks_raise_pandera_s_own_errors(case, monkeypatch):
    def run():
        tables = dict(zip(("customers", "activity", "feedback", "revenue"), frames(), strict=True))
        for name, columns in BAD[case].items():
            tables[name] = tables[name].assign(**columns)
        with pytest.raises(ContractError) as err:
            validate_tables(**tables)
        return str(err.value)

    fast = run()
    # pandera every time:
    monkeypatch.setattr(contract, "_passes", lambda schema, df, complete: False)
    assert fast == run()


def test_valid_tables_skip_pandera(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pandera ran on valid tables")

    monkeypatch.setattr(contract.pa.DataFrameSchema, "validate", fail)
    customers, activity, feedback, revenue = frames()
    feedback = feedback.assign(score=[7.0, np.nan], status=["open", None])
    tables = validate_tables(customers, activity.assign(value=[0.0, np.nan]), feedback, revenue)
    assert len(tables.activity) == 2


def test_load_tables_raises_the_first_table_s_error(tmp_path):
    customers, activity, _, revenue = frames()
    customers.assign(customer_id=["a", "a"]).to_parquet(tmp_path / "customers.parquet")
    activity.assign(value=[-1.0, 1.0]).to_parquet(tmp_path / "activity.parquet")
    revenue.assign(amount=[np.nan, 1.0]).to_parquet(tmp_path / "revenue.parquet")
    with pytest.raises(ContractError, match="table 'customers', column 'customer_id'"):
        fio.load_tables(tmp_path)
    customers.to_parquet(tmp_path / "customers.parquet")
    with pytest.raises(ContractError, match="table 'activity', column 'value'"):
        fio.load_tables(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_load_tables_leaves_the_process_without_transparent_huge_pages(demo):
    """Huge pages cost several times more to touch first on ballooned VMs: after load_tables
    the process and the processes it starts use regular pages (Linux reports THP_enabled 0)."""
    script = (
        "import ctypes, subprocess\n"
        "from features.io import PR_SET_THP_DISABLE, load_tables\n"
        # This process inherits the flag when the test run itself loaded tables: undo it.
        "ctypes.CDLL(None).prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)\n"
        "def thp(text): return [l.split()[1] for l in text.splitlines() if l.startswith('THP_')]\n"
        "print(thp(open('/proc/self/status').read()))\n"
        f"load_tables({str(demo)!r})\n"
        "print(thp(open('/proc/self/status').read()))\n"
        "status = subprocess.run(['cat', '/proc/self/status'], capture_output=True, text=True)\n"
        "print(thp(status.stdout))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after, child = run.stdout.split()
    if before == "[]":
        pytest.skip("this kernel does not report THP_enabled")
    assert (before, after, child) == ("['1']", "['0']", "['0']")
