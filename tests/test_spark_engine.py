"""The Spark engine gives exactly the pandas engine's rows: same customers and dates, values
within 1e-9. Runs Spark in local mode (local[2]); skipped when pyspark is not installed
(it is the optional extra: uv sync --extra spark)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("pyspark is installed but there is no Java runtime", allow_module_level=True)

from features.config import config_for_data
from features.contract import ContractError
from features.dataset import build_training_set, observation_dates
from features.io import load_tables
from features.signals import build_features, resolve_config
from features.spark_engine import (
    get_spark,
    read_output,
    spark_features,
    spark_training_set,
)
from ingest.demo_data import DemoConfig, write_demo

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spark():
    session = get_spark("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spark") / "demo"
    write_demo(out, DemoConfig(n_customers=300, seed=3))
    return out


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    expected = expected.sort_values(keys, kind="stable").reset_index(drop=True)
    got = got.sort_values(keys, kind="stable").reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=0, atol=TOLERANCE)


def test_training_set_equals_the_pandas_engine(spark, demo, tmp_path):
    config = config_for_data(demo)
    dates = observation_dates("2023-03-01", "2024-11-01", 60)
    out = tmp_path / "train.parquet"
    rows, resolved = spark_training_set(spark, str(demo), dates, config, str(out), buckets=3)
    expected, expected_config = build_training_set(load_tables(demo), dates, config)
    assert resolved == expected_config
    assert resolved.long_windows and resolved.activity_values  # resolved alike
    assert resolved.activity_kinds and len(resolved.event_types) >= 2
    assert {f"events_{w}d" for w in resolved.long_windows} <= set(expected.columns)
    assert rows == len(expected)
    assert_same_rows(read_output(out), expected, ["as_of", "customer_id"])
    # One bucket per task: 3 part files, each customer in one of them only.
    parts = sorted(out.glob("part-*.parquet"))
    ids = [set(pd.read_parquet(p, columns=["customer_id"])["customer_id"]) for p in parts]
    assert len(parts) == 3 and sum(len(s) for s in ids) == len(set().union(*ids))


def awkward_copy(demo: Path, out: Path) -> Path:
    """The demo data written the ways real data comes: tables split over several files in
        shuffled order, integer customer ids in some tables, microsecond timestamps, segments with
        missing values (a bool with nulls is object in pandas), and rows of one customer that share
        a timestamp (which the pandas engine resolves by file order), and paid periods' ends on most
    invoices."""
    rng = np.random.default_rng(0)
    out.mkdir()
    customers = pd.read_parquet(demo / "customers.parquet")
    numeric_id = customers["customer_id"].str[1:].astype("int64")
    customers["customer_id"] = numeric_id
    n = len(customers)
    customers["is_partner"] = pd.array(rng.random(n) < 0.3, dtype=object)
    customers.loc[rng.random(n) < 0.1, "is_partner"] = None
    customers["seats"] = pd.array(rng.integers(1, 50, n), dtype="Int64")
    customers.loc[rng.random(n) < 0.1, "seats"] = pd.NA
    customers["region"] = customers["country"].where(rng.random(n) < 0.9)
    # Service that ended without churn (a deactivated SIM): no customer from then on.
    ended = customers["churned_at"].isna() & (rng.random(n) < 0.15)
    customers["ended_at"] = (customers["signup_at"] + pd.Timedelta(days=200)).where(ended)
    # A contract's renewal date, declared as a model feature: days from T on both engines.
    renews = customers["signup_at"] + pd.to_timedelta(rng.integers(300, 800, n), unit="D")
    customers["renews_at"] = renews.where(rng.random(n) < 0.8)
    customers = customers.sample(frac=1, random_state=1)
    (out / "customers").mkdir()
    customers.iloc[: n // 2].to_parquet(out / "customers" / "part-b.parquet", index=False)
    customers.iloc[n // 2 :].to_parquet(out / "customers" / "part-a.parquet", index=False)

    activity = pd.read_parquet(demo / "activity.parquet").sample(frac=1, random_state=2)
    activity["customer_id"] = activity["customer_id"].astype(str).str[1:].str.lstrip("0")
    # Who acted for the account: ids with leading zeros, some acting for two accounts, some
    # rows without one.
    users = pd.Series([f"{u:05d}" for u in rng.integers(0, 900, len(activity))])
    activity["user_id"] = users.where(rng.random(len(activity)) < 0.95).to_numpy()
    (out / "activity").mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(activity)), 3)):
        activity.iloc[chunk].to_parquet(out / "activity" / f"{i}.parquet", index=False)

    revenue = pd.read_parquet(demo / "revenue.parquet")
    revenue["customer_id"] = revenue["customer_id"].astype(str).str[1:].astype("int64")
    invoices = revenue[revenue["kind"].astype(str) == "invoice"].sample(80, random_state=3)
    revenue = pd.concat([revenue, invoices.assign(amount=invoices["amount"] * 1.5)])
    # The end of the paid period, where the export gives one.
    revenue["period_end"] = (revenue["period"] + pd.DateOffset(months=1)).where(
        rng.random(len(revenue)) < 0.8
    )
    revenue.to_parquet(out / "revenue.parquet", index=False)

    feedback = pd.read_parquet(demo / "feedback.parquet")
    feedback["customer_id"] = feedback["customer_id"].astype(str).str[1:].str.lstrip("0")
    nps = feedback[feedback["kind"].astype(str) == "nps"].sample(40, random_state=4)
    feedback = pd.concat([feedback, nps.assign(score=10 - nps["score"])])
    pq.write_table(
        pa.Table.from_pandas(feedback, preserve_index=False),
        out / "feedback.parquet",
        coerce_timestamps="us",
    )
    shutil.copy(demo / "config.toml", out / "config.toml")
    return out


def test_features_equal_the_pandas_engine_on_awkward_data(spark, demo, tmp_path):
    data = awkward_copy(demo, tmp_path / "awkward")
    config = config_for_data(data)
    declared = ("is_partner", "seats", "region", "renews_at")
    config = replace(
        config,
        customer_attributes=(*config.customer_attributes, *declared),
        seats_attribute="seats",
        date_cycles=(("renews_at", "year"),),
    )
    out = tmp_path / "features.parquet"
    rows, resolved = spark_features(spark, str(data), "2024-06-01", config, str(out), buckets=2)
    expected = build_features(load_tables(data), "2024-06-01", config)
    assert set(declared) <= set(resolved.customer_attributes) and set(declared) <= set(expected)
    assert resolved.paid_period_signals and "days_until_paid_period_ends" in expected
    assert resolved.date_attributes == ("renews_at",) and expected["renews_at"].dtype == "float64"
    assert resolved.user_signals and expected["active_users_30d"].max() > 1
    assert expected["seat_utilization_30d"].notna().sum() > 0
    assert rows == len(expected)
    assert_same_rows(read_output(out, ["customer_id"]), expected, ["customer_id"])
    customers = load_tables(data).customers
    gone = customers.loc[customers["ended_at"] < pd.Timestamp("2024-06-01"), "customer_id"]
    assert len(gone) and not set(gone) & set(expected["customer_id"])


def test_a_billing_only_folder_gives_the_pandas_engines_features(spark, demo, tmp_path):
    """A billing-only export: the activity table is there, empty (ingest writes it so)."""
    data = tmp_path / "billing"
    shutil.copytree(demo, data)
    activity = pq.read_table(data / "activity.parquet")
    pq.write_table(activity.slice(0, 0), data / "activity.parquet")
    config = config_for_data(data)
    out = tmp_path / "features.parquet"
    rows, resolved = spark_features(spark, str(data), "2024-06-01", config, str(out), buckets=2)
    expected = build_features(load_tables(data), "2024-06-01", config)
    assert rows == len(expected) and expected["days_since_last_event"].isna().all()
    # no activity: no long windows and no value columns
    assert resolved.long_windows == () and resolved.activity_values is False
    assert resolved.activity_kinds is False and resolved.event_types == ()
    assert "value_30d" not in expected and "events_180d" not in expected
    assert "event_types_30d" not in expected
    assert_same_rows(read_output(out, ["customer_id"]), expected, ["customer_id"])


def test_bills_in_arrears_give_no_paid_period_on_both_engines(spark, demo, tmp_path):
    """Invoices issued after the period they bill, for amounts that follow usage (postpaid):
    no paid-period signals and no plan changes, on both engines."""
    data = tmp_path / "arrears"
    shutil.copytree(demo, data)
    revenue = pd.read_parquet(data / "revenue.parquet")
    revenue["period_end"] = revenue["period"] + pd.DateOffset(months=1)
    issued = revenue["period_end"] + pd.Timedelta(days=3)
    revenue = revenue.assign(at=issued.where(revenue["period_end"].notna(), revenue["at"]))
    varied = np.random.default_rng(0).uniform(0.7, 1.3, len(revenue))  # bills follow usage
    revenue["amount"] = (revenue["amount"] * varied).round(2)
    revenue[revenue["at"] < pd.Timestamp("2024-12-01")].to_parquet(data / "revenue.parquet")
    config = config_for_data(data)
    out = tmp_path / "features.parquet"
    _, resolved = spark_features(spark, str(data), "2024-06-01", config, str(out), buckets=2)
    expected = build_features(load_tables(data), "2024-06-01", config)
    assert not resolved.paid_period_signals and "days_until_paid_period_ends" not in expected
    assert not resolved.subscription_signals and "downgrades_90d" not in expected
    assert_same_rows(read_output(out, ["customer_id"]), expected, ["customer_id"])


def test_a_lookback_left_to_the_data_and_history_signals_equal_the_pandas_engine(
    spark, demo, tmp_path
):
    """Non-contractual, no lookback configured: the Spark driver derives the same lookback
    (recorded in the resolved configuration) and the same whole-history signals."""
    config = config_for_data(demo).with_churn(
        mode="non_contractual", lookback_days=None, qualifying_events=("export", "api_call")
    )
    out = tmp_path / "features.parquet"
    rows, resolved = spark_features(spark, str(demo), "2024-06-01", config, str(out), buckets=2)
    tables = load_tables(demo)
    expected_config = resolve_config(tables, config, until="2024-06-01")
    assert resolved == expected_config and resolved.churn.lookback_days is not None
    assert len(resolved.buying_process) == 4  # the same BG/NBD fit from Spark's counts
    expected = build_features(tables, "2024-06-01", config)
    assert "overdue_ratio" in expected and rows == len(expected)
    chance = f"no_activity_chance_{config.churn.horizon_days}d"
    assert expected[chance].notna().all() and expected[chance].between(0, 1).all()
    assert_same_rows(read_output(out, ["customer_id"]), expected, ["customer_id"])
    # The unscored customers who never had qualifying activity: counted alike
    from features.labels import never_active_count
    from features.spark_engine import current_never_active, plan_run

    t = pd.Timestamp("2024-06-01")
    never = never_active_count(tables, t, resolved.churn)
    assert never > 0
    plan = plan_run(spark, str(demo), resolved, until=t)
    assert current_never_active(plan, resolved, t) == never
    # ... and the lapsed buyers, the win-back list of lapsed.csv, listed alike
    from features.labels import lapsed_count, lapsed_customers
    from features.spark_engine import lapsed_buyers

    expected = lapsed_customers(tables, t, resolved.churn)
    got = lapsed_buyers(plan, resolved, t)
    assert len(expected) > 0 and len(expected) <= lapsed_count(tables, t, resolved.churn)
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        got, expected.astype({"customer_id": "string"}), check_dtype=False, rtol=1e-9
    )


def test_seasonal_pauses_are_no_lapsed_buyers_on_spark(spark, tmp_path):
    """A customer back after the same pause a year before is no lapsed buyer on the driver,
    as features.labels._back_last_season says on pandas."""
    from features.config import FeatureConfig
    from features.io import write_tables
    from features.labels import lapsed_customers
    from features.spark_engine import lapsed_buyers, plan_run
    from tests.test_seasonal_pause import CHURN, T, seasonal_tables

    tables = seasonal_tables()
    write_tables(tables, tmp_path / "seasonal")
    config = resolve_config(tables, FeatureConfig(churn=CHURN), until=T)
    # the buckets score with features.labels.eligible_mask itself (the training set's parity
    # test); the driver's list of lapsed buyers is Spark's own code
    plan = plan_run(spark, str(tmp_path / "seasonal"), config, until=pd.Timestamp(T))
    expected = lapsed_customers(tables, T, config.churn)
    got = lapsed_buyers(plan, config, pd.Timestamp(T))
    assert set(got["customer_id"]) == set(expected["customer_id"]) == {
        "left", "long_gone", "late_this_year",
    }  # fmt: skip


def test_cli_spark_engine_and_a_contract_error_that_keeps_the_previous_output(
    spark, demo, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from churn.cli import app

    runner = CliRunner()
    out = tmp_path / "features.parquet"
    args = ["features", "--as-of", "2024-06-01", "--out", str(out)]
    result = runner.invoke(app, [*args, "--data", str(demo), "--engine", "spark", "--buckets", "2"])
    assert result.exit_code == 0, result.output
    assert "(spark)" in result.output
    expected = build_features(load_tables(demo), "2024-06-01", config_for_data(demo))
    before = read_output(out, ["customer_id"])
    assert_same_rows(before, expected, ["customer_id"])

    # A row for an unknown customer fails in its bucket's worker: the driver raises the same
    # ContractError as the pandas engine (one line, exit 2) and the previous output stays whole.
    broken = tmp_path / "broken"
    shutil.copytree(demo, broken)
    activity = pd.read_parquet(broken / "activity.parquet")
    stray = activity.iloc[:1].assign(customer_id="NOBODY")
    pd.concat([activity, stray]).to_parquet(broken / "activity.parquet", index=False)
    result = runner.invoke(app, [*args, "--data", str(broken), "--engine", "spark"])
    assert result.exit_code == 2
    assert "error: table 'activity', column 'customer_id': 1 rows refer to customers" in (
        result.output
    )
    pd.testing.assert_frame_equal(read_output(out, ["customer_id"]), before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    result = runner.invoke(app, [*args, "--data", str(demo), "--engine", "dask"])
    assert result.exit_code == 2 and "--engine must be 'pandas' or 'spark'" in result.output
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if the extra were not installed
    result = runner.invoke(app, [*args, "--data", str(demo), "--engine", "spark"])
    assert result.exit_code == 2
    assert "install with: uv sync --extra spark" in result.output


def _drivers(values: pd.Series) -> list[list[dict]]:
    return [[dict(d) for d in (v if v is not None else [])] for v in values]


def _alerts(partition: Path, first_run: bool) -> pd.DataFrame:
    """A partition's alerts by customer. A first run's Spark baseline has no drivers: no "new
    top reason" alert and no previous reason there, so those are left out of both."""
    alerts = pd.read_parquet(partition / "alerts.parquet")
    alerts["kinds"] = [
        [k for k in kinds if not (first_run and k == "new_top_reason")] for kinds in alerts["kinds"]
    ]
    alerts = alerts[[len(k) > 0 for k in alerts["kinds"]]]
    columns = ["customer_id", "kinds", "churn_probability", "previous_probability", "risk_band",
               "previous_risk_band", "reason"]  # fmt: skip
    if not first_run:
        columns += ["previous_top_feature", "previous_reason"]
    return alerts[columns].sort_values("customer_id").reset_index(drop=True)


def assert_same_hand_off(spark_part: Path, pandas_part: Path, first_run: bool) -> None:
    """scores.csv, alerts.parquet and alerts.csv of two partitions agree."""
    read = lambda p, f: pd.read_csv(p / f, dtype={"customer_id": str}).sort_values(  # noqa: E731
        "customer_id", ignore_index=True
    )
    got, expected = read(spark_part, "scores.csv"), read(pandas_part, "scores.csv")
    assert len(got) > 1000
    # two decimals of a percentage: one rounding step apart at most
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=0, atol=0.0101)
    got, expected = _alerts(spark_part, first_run), _alerts(pandas_part, first_run)
    assert len(got) > 0 and list(got["customer_id"]) == list(expected["customer_id"])
    assert [list(k) for k in got["kinds"]] == [list(k) for k in expected["kinds"]]
    pd.testing.assert_frame_equal(
        got.drop(columns="kinds"), expected.drop(columns="kinds"), check_dtype=False, atol=1e-9
    )
    assert len(pd.read_csv(spark_part / "alerts.csv")) == len(
        pd.read_parquet(spark_part / "alerts.parquet")
    )


def assert_same_partition(spark_part: Path, pandas_part: Path) -> None:
    """Scores (with drivers), features, segment report and run.json of two partitions agree."""
    got = read_output(spark_part / "scores.parquet", ["customer_id"])
    expected = read_output(pandas_part / "scores.parquet", ["customer_id"])
    nested = ["drivers", "drivers_moved"]
    assert_same_rows(got.drop(columns=nested), expected.drop(columns=nested), ["customer_id"])
    for col in nested:
        for a, b in zip(_drivers(got[col]), _drivers(expected[col]), strict=True):
            assert [d["feature"] for d in a] == [d["feature"] for d in b]
            assert [d.get("value") for d in a] == [d.get("value") for d in b]
            key = "contribution" if col == "drivers" else "change"
            np.testing.assert_allclose([d[key] for d in a], [d[key] for d in b], atol=TOLERANCE)
    assert_same_rows(
        read_output(spark_part / "features.parquet", ["customer_id"]),
        read_output(pandas_part / "features.parquet", ["customer_id"]),
        ["customer_id"],
    )
    got_seg = pd.read_parquet(spark_part / "segments.parquet")
    expected_seg = pd.read_parquet(pandas_part / "segments.parquet")
    pd.testing.assert_frame_equal(got_seg, expected_seg, check_dtype=False, rtol=1e-9)
    got_info = json.loads((spark_part / "run.json").read_text())
    expected_info = json.loads((pandas_part / "run.json").read_text())
    for key in ("mean_risk", "expected_churners"):
        assert got_info.pop(key) == pytest.approx(expected_info.pop(key), rel=1e-9)
    assert got_info == expected_info


def test_scoring_equals_the_pandas_engine_and_a_failed_run_keeps_the_partitions(
    spark, small_champion, tmp_path
):
    from serving.batch import list_partitions, run_scoring
    from serving.config import ScoringConfig
    from serving.spark_batch import spark_run_scoring

    champion = small_champion.champion
    model, version = champion.model, champion.version
    data = small_champion.data_dir
    # The second run one horizon after the first: it compares with the first (drivers moved)
    # and groups that horizon's churn by the first run's bands (the segment report's risk_band
    # rows), on both engines; a run a week later and a third one had cost CI a minute.
    first = "2024-12-01"
    later = str((pd.Timestamp(first) + pd.Timedelta(days=int(model.horizon_days))).date())
    runs = (first, later)
    pandas_out, spark_out = tmp_path / "pandas", tmp_path / "spark"
    quiet = lambda _: None  # noqa: E731
    settings = ScoringConfig(currency="EUR")  # amounts in the reasons carry it on both engines
    for run in runs:
        run_scoring(
            small_champion.tables, run, model, version, pandas_out, log=quiet, settings=settings
        )
        result = spark_run_scoring(
            spark, str(data), run, model, version, str(spark_out), buckets=3, log=quiet,
            currency=settings.currency,
        )  # fmt: skip
        assert result.summary["customers_scored"] > 1000
    reasons = pd.read_parquet(spark_out / f"as_of={runs[0]}" / "scores.parquet")["drivers"]
    assert any("€" in d["reason"] for row in reasons for d in row)
    assert [p.name for _, p in list_partitions(spark_out)] == [f"as_of={r}" for r in runs]
    for run in runs:
        assert_same_partition(spark_out / f"as_of={run}", pandas_out / f"as_of={run}")
        # the hand-off files too: a first run against the scores a week before, then the first
        assert_same_hand_off(
            spark_out / f"as_of={run}", pandas_out / f"as_of={run}", first_run=run == runs[0]
        )
    moved = pd.read_parquet(spark_out / f"as_of={runs[1]}" / "scores.parquet")["drivers_moved"]
    assert sum(len(m) for m in moved) > 0  # the second run did compare with the first
    # the page people open: the pandas engine's, but for the cohort retention it cannot measure
    page = (spark_out / f"as_of={runs[1]}" / "report.html").read_text()
    same = (pandas_out / f"as_of={runs[1]}" / "report.html").read_text()
    assert "Cohort retention is not measured on the Spark engine" in page
    riskiest = pd.read_parquet(pandas_out / f"as_of={runs[1]}" / "scores.parquet").nlargest(
        3, "churn_probability"
    )
    for cid in riskiest["customer_id"]:
        assert f"<th>{cid}</th>" in page and f"<th>{cid}</th>" in same
    bands = pd.read_parquet(spark_out / f"as_of={later}" / "segments.parquet")
    assert (bands["dimension"] == "risk_band").sum() >= 2

    # A contract error in a worker: the error reaches the caller, the partition stays whole.
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    activity = pd.read_parquet(broken / "activity.parquet")
    stray = activity.iloc[:1].assign(customer_id="NOBODY")
    pd.concat([activity, stray]).to_parquet(broken / "activity.parquet", index=False)
    partition = spark_out / f"as_of={runs[1]}"
    before = {p.relative_to(partition): p.read_bytes() for p in partition.rglob("*") if p.is_file()}
    with pytest.raises(ContractError, match="refer to customers"):
        spark_run_scoring(spark, str(broken), runs[1], model, version, str(spark_out), log=quiet)
    after = {p.relative_to(partition): p.read_bytes() for p in partition.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in spark_out.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="unknown segment column 'tier'"):
        spark_run_scoring(
            spark, str(data), runs[1], model, version, str(spark_out), segments_by=["tier"]
        )


def test_score_command_on_spark(spark, small_champion, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from churn.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_champion.tracking_uri)
    monkeypatch.chdir(small_champion.root)
    out = tmp_path / "s"
    args = ["score", "--data", str(small_champion.data_dir), "--as-of", "2024-12-15"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--engine", "spark"])
    assert result.exit_code == 0, result.output
    assert "scored" in result.output and "risk bands: high" in result.output
    info = json.loads((out / "as_of=2024-12-15" / "run.json").read_text())
    assert info["model_version"] == small_champion.champion.version
    assert (
        len(pd.read_parquet(out / "as_of=2024-12-15" / "scores.parquet"))
        == (info["customers_scored"])
    )


def test_a_stale_export_is_named_the_same_by_both_engines(spark, demo, tmp_path):
    from features.check import (
        days_before,
        recent_quiet_week_notes,
        stale_from_days,
        stale_tables,
    )
    from features.io import write_tables
    from features.spark_engine import plan_run
    from serving.spark_batch import _days_and_counts

    tables = load_tables(demo)
    run = tables.data_end().normalize() + pd.Timedelta(days=1)
    # and a quiet week of activity in everyone's last 30 days (recent_quiet_week_notes)
    monday = (run - pd.Timedelta(days=21)).to_period("W-SUN").start_time
    at = tables.activity["at"]
    quiet = at.between(monday, monday + pd.Timedelta(days=7), inclusive="left")
    activity = tables.activity[~quiet | (np.arange(len(at)) % 20 == 0)].reset_index(drop=True)
    early = replace(
        tables,
        revenue=tables.revenue[tables.revenue["at"] < run - pd.Timedelta(days=40)],
        activity=activity,
    )
    write_tables(early, tmp_path / "early")
    config = resolve_config(early, config_for_data(demo), run)
    plan = plan_run(spark, str(tmp_path / "early"), config, until=run)
    expected = stale_tables(early, run)
    assert len(expected) == 1 and expected[0].startswith("table 'revenue' ends")
    days, counts = _days_and_counts(plan.frames, run)
    assert stale_from_days(days, run) == expected
    said = recent_quiet_week_notes(days_before(early, run)[1], run)
    assert len(said) == 1 and f"quiet week, {monday.date()} .. " in said[0]
    assert recent_quiet_week_notes(counts, run) == said


def test_scheduled_cancellations_and_the_data_end_are_the_pandas_engines(spark, demo, tmp_path):
    """A churned_at after the export's last record (a subscription set to end at its term):
    both engines keep it out of the data's end and list the same customers at a run; and a
    notice the export dates (cancel_requested_at) at a run on a past date."""
    from features.io import write_tables
    from features.labels import scheduled_cancellations
    from features.spark_engine import plan_run
    from features.spark_engine import scheduled_cancellations as on_spark

    tables = load_tables(demo)
    end = tables.data_end()
    run = end.normalize() + pd.Timedelta(days=1)
    current = tables.customers[tables.customers["churned_at"].isna()]["customer_id"].head(3)
    when = dict(zip(current, [run + pd.Timedelta(days=d) for d in (40, 9, 300)], strict=True))
    customers = tables.customers.assign(
        churned_at=tables.customers["customer_id"].map(when).fillna(tables.customers["churned_at"])
    )
    # a notice the export dates, 20 days before a churn it saw: known at a past run after it
    long_gone = customers["churned_at"] < end - pd.Timedelta(days=60)
    a_year_in = customers["churned_at"] - customers["signup_at"] > pd.Timedelta(days=365)
    gone = customers[long_gone & a_year_in].iloc[0]
    past = gone["churned_at"].normalize() - pd.Timedelta(days=10)
    notice = pd.Series(past - pd.Timedelta(days=10), index=customers.index)
    customers["cancel_requested_at"] = notice.where(customers["customer_id"] == gone["customer_id"])
    noticed = replace(tables, customers=customers, cache={})
    write_tables(noticed, tmp_path / "noticed")
    config = resolve_config(noticed, config_for_data(demo), run)
    plan = plan_run(spark, str(tmp_path / "noticed"), config, until=run)
    assert noticed.data_end() == end == plan.observed_until
    expected = scheduled_cancellations(noticed, run)
    assert list(expected["customer_id"]) == [current.iloc[1], current.iloc[0], current.iloc[2]]
    got = on_spark(plan, run)
    pd.testing.assert_frame_equal(
        got.astype({"customer_id": str}), expected.astype({"customer_id": str}), check_dtype=False
    )
    assert on_spark(plan, end.normalize() - pd.Timedelta(days=7)).empty
    expected = scheduled_cancellations(noticed, past)
    assert expected["customer_id"].tolist() == [gone["customer_id"]]
    got = on_spark(plan, past)
    pd.testing.assert_frame_equal(
        got.astype({"customer_id": str}), expected.astype({"customer_id": str}), check_dtype=False
    )


def test_a_scheduled_cancellation_is_scored_alike_by_both_engines(spark, small_champion, tmp_path):
    """A cancellation the export holds within the horizon: both engines score it as
    serving.batch.with_scheduled_cancellations does and say it first."""
    from features.io import write_tables
    from serving.batch import run_scoring
    from serving.spark_batch import spark_run_scoring

    tables = small_champion.tables
    run = tables.data_end().normalize() + pd.Timedelta(days=1)
    soon = tables.customers[tables.customers["churned_at"].isna()]["customer_id"].iloc[0]
    customers = tables.customers.copy()
    customers.loc[customers["customer_id"] == soon, "churned_at"] = run + pd.Timedelta(days=5)
    noticed = replace(tables, customers=customers, cache={})
    write_tables(noticed, tmp_path / "noticed")
    model, version = small_champion.champion.model, small_champion.champion.version
    quiet = lambda _: None  # noqa: E731
    pandas_run = run_scoring(noticed, run, model, version, tmp_path / "pandas", log=quiet)
    spark_run_scoring(
        spark, str(tmp_path / "noticed"), run, model, version, str(tmp_path / "spark"),
        buckets=2, log=quiet,
    )  # fmt: skip
    day = f"as_of={run.date()}"
    on_spark = pd.read_parquet(tmp_path / "spark" / day / "scores.parquet").set_index("customer_id")
    on_pandas = pandas_run.scores.set_index("customer_id")
    assert on_pandas.loc[soon, "churn_probability"] >= 0.95
    assert on_spark.loc[soon, "churn_probability"] == pytest.approx(
        on_pandas.loc[soon, "churn_probability"]
    )
    assert on_spark.loc[soon, "drivers"][0]["feature"] == "cancellation_scheduled"
