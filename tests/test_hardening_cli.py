"""Hardening of the weekly job's command line (issue #15, items 3, 6 and 10): a mistyped run
date is refused unless forced (and then never served), the output folder is checked before the
work, and system errors are one clear line."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features import io
from serving.partitions import PartitionStore

runner = CliRunner()


@pytest.fixture
def mlflow_env(small_champion, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_champion.tracking_uri)
    monkeypatch.chdir(small_champion.root)  # the MLflow store's relative artifact paths
    return small_champion


def score(small, out, as_of: str, *more: str):
    args = ["score", "--data", small.data_dir, "--as-of", as_of, "--out", out, *more]
    return runner.invoke(app, [str(a) for a in args])


def test_a_run_date_in_the_future_is_refused_before_any_work(mlflow_env, tmp_path):
    result = score(mlflow_env, tmp_path / "scores", "2030-01-08")
    assert result.exit_code == 2
    assert "error: run date 2030-01-08 is in the future" in result.output
    assert "--force" in result.output
    assert not (tmp_path / "scores").exists()


def test_a_run_date_far_past_the_data_is_refused_and_when_forced_never_served(mlflow_env, tmp_path):
    out = tmp_path / "scores"
    end = mlflow_env.tables.data_end()
    horizon = mlflow_env.champion.model.horizon_days
    late = (end + pd.Timedelta(days=horizon + 40)).date().isoformat()
    result = score(mlflow_env, out, late)
    assert result.exit_code == 2, result.output
    assert f"past the data's end ({end.date()})" in result.output
    real = (end + pd.Timedelta(days=1)).normalize().date().isoformat()
    assert score(mlflow_env, out, real).exit_code == 0
    forced = score(mlflow_env, out, late, "--force")
    assert forced.exit_code == 0, forced.output
    assert "warning: run date" in forced.output
    # the forced run's period lies after the data: its retention is not measured, the risk
    # view stands alone (no 100 % CRR for customers nobody observed)
    assert "retention not measured" in forced.output
    segments = pd.read_parquet(out / f"as_of={late}" / "segments.parquet")
    overall = segments[segments["dimension"] == "all"].iloc[0]
    assert segments["crr"].isna().all() and overall["customers_scored"] > 0
    store = PartitionStore(out, check_every=60)
    assert store.refresh().as_of.isoformat() == real
    assert list(store.status()["skipped_partitions"]) == [f"as_of={late}"]


def test_a_file_as_out_is_refused_before_any_work(mlflow_env, tmp_path):
    out = tmp_path / "scores"
    out.write_text("a file")
    result = score(mlflow_env, out, "2024-12-01")
    assert result.exit_code == 2
    assert f"error: the output {out} is a file, not a folder" in result.output


def test_a_full_disk_is_refused_before_any_work(mlflow_env, tmp_path, monkeypatch):
    class Full:
        total, used, free = 10 * 1024**3, 10 * 1024**3 - 4096, 4096

    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: Full)
    result = score(mlflow_env, tmp_path / "scores", "2024-12-01")
    assert result.exit_code == 2
    assert "has 4.0 KiB free; the run needs about 64.0 MiB" in result.output


def test_a_system_error_during_the_work_is_one_line_naming_the_file(mlflow_env, tmp_path):
    from serving import batch

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.parquet"))

    mp = pytest.MonkeyPatch()
    mp.setattr(batch, "run_scoring", no_space)
    try:
        result = score(mlflow_env, tmp_path / "scores", "2024-12-01")
    finally:
        mp.undo()
    assert result.exit_code == 2
    assert f"error: No space left on device: {tmp_path / 'x.parquet'}" in result.output
    assert "Traceback" not in result.output


def test_a_terminated_training_closes_its_mlflow_run_as_failed(tmp_path):
    import subprocess
    import sys
    import textwrap

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import os, signal
        import mlflow
        from churn.cli import stop_cleanly_on_sigterm
        stop_cleanly_on_sigterm()
        mlflow.set_tracking_uri({uri!r})
        with mlflow.start_run() as run:
            print(run.info.run_id, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # its own store
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 128 + 15, (done.stdout + done.stderr)[-3000:]
    import mlflow

    run_id = done.stdout.split()[0]
    assert mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.status == "FAILED"


def test_the_spark_engine_refuses_a_run_date_far_past_the_data_as_pandas_does(
    mlflow_env, tmp_path, monkeypatch
):
    """`churn score --engine spark` applies the pandas engine's run-date rule (not only the
    future one) once planning has found the data's end, before any bucket runs. Spark itself
    is replaced: the plan reports the data's end as the pandas engine computes it."""
    from types import SimpleNamespace

    import features.spark_engine
    import serving.spark_batch

    end = mlflow_env.tables.data_end()
    planned = []
    monkeypatch.setattr(features.spark_engine, "get_spark", lambda: "no spark here")

    def plan_run(spark, data_dir, config, until):
        planned.append(until)
        return SimpleNamespace(observed_until=end)

    def after_the_check(*args, **kwargs):
        raise RuntimeError("the run went past the run-date check")

    monkeypatch.setattr(serving.spark_batch, "plan_run", plan_run)
    monkeypatch.setattr(serving.spark_batch, "previous_partition_uri", after_the_check)
    horizon = mlflow_env.champion.model.horizon_days
    late = (end + pd.Timedelta(days=horizon + 40)).date().isoformat()
    out = tmp_path / "scores"
    result = score(mlflow_env, out, late, "--engine", "spark")
    assert result.exit_code == 2, result.output
    assert f"run date {late} is" in result.output
    assert f"past the data's end ({end.date()})" in result.output and "--force" in result.output
    assert len(planned) == 1
    forced = score(mlflow_env, out, late, "--engine", "spark", "--force")
    assert "warning: run date" in forced.output
    assert isinstance(forced.exception, RuntimeError)  # went on to the work
    real = (end + pd.Timedelta(days=1)).normalize().date().isoformat()
    assert isinstance(score(mlflow_env, out, real, "--engine", "spark").exception, RuntimeError)
