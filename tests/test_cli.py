"""The churn command line, end to end on small data, including its error messages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app

runner = CliRunner()
RAW = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "online_retail"
    / "online_retail.parquet"
)


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    result = run("demo-data", "--out", out, "--customers", 300, "--seed", 3)
    assert result.exit_code == 0, result.output
    return out


def test_demo_data_writes_the_contract_tables_and_truth(demo_dir):
    names = sorted(p.name for p in demo_dir.iterdir())
    assert names == [
        "activity.parquet",
        "config.toml",
        "customers.parquet",
        "feedback.parquet",
        "revenue.parquet",
        "truth.parquet",
    ]


def test_features_command_writes_one_row_per_eligible_customer(demo_dir, tmp_path):
    out = tmp_path / "features.parquet"
    result = run("features", "--data", demo_dir, "--as-of", "2024-06-01", "--out", out)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    customers = pd.read_parquet(demo_dir / "customers.parquet")
    at = pd.Timestamp("2024-06-01")
    eligible = (customers["signup_at"] < at) & ~(customers["churned_at"] <= at)
    assert sorted(frame["customer_id"]) == sorted(customers.loc[eligible, "customer_id"])


def test_dataset_command_writes_labels_for_each_date(demo_dir, tmp_path):
    out = tmp_path / "train.parquet"
    result = run(
        "dataset", "--data", demo_dir, "--from", "2024-01-01", "--to", "2024-06-01", "--every", "30d",
        "--horizon", "30d", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame["as_of"].nunique() == 6
    assert set(frame["churned"].unique()) <= {0, 1}
    assert "contractual, horizon 30d" in result.output


def test_bad_input_gets_one_clear_line_and_exit_code_2(demo_dir, tmp_path):
    result = run("features", "--data", demo_dir, "--as-of", "June", "--out", tmp_path / "f.parquet")
    assert result.exit_code == 2
    assert "error: observation date 'June' is not a date" in result.output
    result = run(
        "features",
        "--data",
        tmp_path / "nowhere",
        "--as-of",
        "2024-01-01",
        "--out",
        tmp_path / "f.parquet",
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run(
        "dataset",
        "--data",
        demo_dir,
        "--from",
        "2024-01-01",
        "--to",
        "2025-06-01",
        "--out",
        tmp_path / "t.parquet",
    )
    assert result.exit_code == 2 and "use observation dates up to" in result.output
    assert not (tmp_path / "t.parquet").exists()


def test_broken_table_is_reported_with_table_and_column(demo_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in demo_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    activity = pd.read_parquet(broken / "activity.parquet")
    activity["customer_id"] = activity["customer_id"].astype(str)
    activity.loc[0, "customer_id"] = "nobody"
    activity.to_parquet(broken / "activity.parquet")
    result = run(
        "features", "--data", broken, "--as-of", "2024-06-01", "--out", tmp_path / "f.parquet"
    )
    assert result.exit_code == 2
    assert "table 'activity', column 'customer_id'" in result.output and "nobody" in result.output


@pytest.mark.skipif(not RAW.exists(), reason="../shared/data/online_retail is not present")
def test_import_online_retail_reports_dropped_rows_and_sets_non_contractual_churn(tmp_path):
    result = run("import", "online-retail", RAW, "--out", tmp_path / "retail")
    assert result.exit_code == 0, result.output
    assert "dropped rows without a CustomerID: 135,080" in result.output
    result = run(
        "dataset", "--data", tmp_path / "retail", "--from", "2011-06-01", "--to", "2011-09-01", "--every", "30d",
        "--out", tmp_path / "t.parquet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "non_contractual, horizon 90d" in result.output


def test_demo_runs_the_main_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = run("demo", "--out", tmp_path / "demo", "--customers", 1500)
    assert result.exit_code == 0, result.output
    assert "The ten riskiest customers" in result.output and "curl -s -X POST" in result.output
    assert "the generator's truth on the same" in result.output  # the best possible score
    assert list((tmp_path / "demo" / "scores").glob("as_of=*/scores.parquet"))
    # the segment table: bands at the start of the period, no NaN anywhere
    table = result.output.split("Segments: retention")[1].split("done in")[0]
    assert "risk_band=high" in table and "not scored at the start" in table
    assert "nan" not in table.lower()
