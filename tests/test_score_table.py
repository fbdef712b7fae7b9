"""Scoring a customer table with a model trained by `churn train --labeled-table`: scores.csv
riskiest first with reasons, and the table's problems named with their column and row."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from training.config import TrainConfig
from training.labeled_table import table_for_scoring, train_labeled_table

runner = CliRunner()


def snapshot(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A CRM snapshot: ids with leading zeros, tenure in months, a plan, monthly charges as
    text with blanks (as Telco's TotalCharges), churn driven by short tenure and the plan."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    plan = rng.choice(["monthly", "annual"], n)
    risk = 1 / (1 + np.exp(-(1.5 - 0.08 * tenure + 1.2 * (plan == "monthly"))))
    charges = np.round(rng.uniform(20, 110, n), 2).astype(str).astype(object)
    charges[:3] = " "
    return pd.DataFrame(
        {
            "customer": [f"{i:06d}" for i in range(n)],
            "tenure": tenure,
            "plan": plan,
            "charges": charges,
            "Churn": np.where(rng.random(n) < risk, "Yes", "No"),
        }
    )


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One labeled-table model for the module (training it took 10-26 s a test)."""
    root = tmp_path_factory.mktemp("score-table")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        mp.chdir(root)
        snapshot().to_csv(root / "crm.csv", index=False)
        result = train_labeled_table(
            root / "crm.csv", "customer", "Churn", TrainConfig(labeled_model_name="crm-labeled"),
            log=lambda _: None,
        )  # fmt: skip
    return root, result


@pytest.fixture
def trained(trained_once, tmp_path, monkeypatch):
    """The module's model in its MLflow store, and a folder of the test's own for its files."""
    root, result = trained_once
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.chdir(root)  # the MLflow store's relative artifact paths
    return tmp_path, result


def test_a_table_is_scored_riskiest_first_with_reasons(trained):
    folder, _ = trained
    current = snapshot(seed=1).drop(columns="Churn")
    current.to_csv(folder / "current.csv", index=False)
    out = folder / "scores"
    result = runner.invoke(
        app,
        ["score-table", "--table", str(folder / "current.csv"), "--id", "customer",
         "--out", str(out), "--model-name", "crm-labeled"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "scored 400 customers with crm-labeled v1" in result.output
    scores = pd.read_csv(out / "scores.csv", dtype={"customer_id": str})
    assert len(scores) == 400 and scores["customer_id"].str.len().eq(6).all()
    assert set(scores["customer_id"]) == set(current["customer"])
    p = scores["churn_probability_pct"]
    assert p.between(0, 100).all() and p.is_monotonic_decreasing
    assert set(scores["risk_band"]) <= {"high", "medium", "low"}
    # A table scored once has no change since a previous run: no always-empty columns.
    assert "change_pts" not in scores and "level_change_pts" not in scores
    assert list(scores.columns[:4]) == [
        "customer_id", "churn_probability_pct", "risk_band", "risk_band_range"
    ]  # fmt: skip
    # The riskiest customers read why, in words: short tenure or the monthly plan.
    top = scores.head(20)
    assert top["reason_1"].notna().all()
    assert top["reason_1"].str.contains("Tenure|Plan").all()
    # Short tenure on the monthly plan is riskier than long tenure on the annual one.
    merged = scores.merge(current, left_on="customer_id", right_on="customer")
    risky = merged[(merged.tenure < 12) & (merged.plan == "monthly")]
    safe = merged[(merged.tenure > 60) & (merged.plan == "annual")]
    assert risky["churn_probability_pct"].mean() > safe["churn_probability_pct"].mean() + 20
    run = json.loads((out / "run.json").read_text())
    assert run["model_name"] == "crm-labeled" and sum(run["bands"].values()) == 400
    assert pd.read_parquet(out / "scores.parquet")["churn_probability"].notna().all()


def test_the_report_shows_risk_reasons_model_quality_and_risk_by_attribute(trained):
    """report.html: the page a customer-success lead reads; with --label, who was left out."""
    folder, _ = trained
    snapshot(seed=1).to_csv(folder / "current.csv", index=False)
    out = folder / "scores"
    result = runner.invoke(
        app,
        ["score-table", "--table", str(folder / "current.csv"), "--id", "customer",
         "--label", "Churn", "--out", str(out), "--model-name", "crm-labeled"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    page = (out / "report.html").read_text()
    scores = pd.read_csv(out / "scores.csv", dtype={"customer_id": str})
    assert f'<div class="value">{len(scores):,}</div>' in page  # customers scored
    assert "cross-validated ROC AUC" in page  # from the training run in MLflow
    # the riskiest customer first, with its reasons in words, and no change column
    assert scores["customer_id"].iloc[0] in page and scores["reason_1"].iloc[0] in page
    assert "<th>change</th>" not in page
    # risk by the table's attribute: the monthly plan riskier than the annual one
    monthly = page.index("plan: monthly")
    assert monthly < page.index("plan: annual")
    left = len(snapshot(seed=1)) - len(scores)
    assert f"{left:,} of the table" in page and "&#x27;Churn&#x27; says" in page
    assert "revenue at risk" not in page and ">nan<" not in page.lower()


def test_risk_by_attribute_ranks_attributes_by_how_much_their_levels_differ():
    from reporting.table_report import MIN_LEVEL_CUSTOMERS, attribute_segments

    n = 600
    rng = np.random.default_rng(3)
    contract = rng.choice(["monthly", "annual"], n)
    region = rng.choice(["north", "south"], n)
    p = np.where(contract == "monthly", 0.4, 0.1) + np.where(region == "north", 0.02, 0.0)
    scores = pd.DataFrame(
        {"customer_id": [f"{i:04d}" for i in range(n)], "churn_probability": p,
         "risk_band": np.where(p > 0.3, "high", "low")}
    )  # fmt: skip
    attributes = pd.DataFrame(
        {
            "region": region,
            "contract": contract,
            "email": [f"c{i}@x.de" for i in range(n)],  # id-like: no segment
            "country": ["DE"] * n,  # one level: nothing to compare
            "rare": ["a"] * (n - MIN_LEVEL_CUSTOMERS + 1) + ["b"] * (MIN_LEVEL_CUSTOMERS - 1),
        }
    )
    segments, notes = attribute_segments(scores, attributes)
    assert list(segments["dimension"].unique()) == ["all", "contract", "region"]
    assert segments.loc[0, "customers_scored"] == n
    assert segments.loc[0, "mean_risk"] == pytest.approx(p.mean())
    contract_rows = segments[segments["dimension"] == "contract"]
    assert list(contract_rows["segment"]) == ["monthly", "annual"]  # riskiest level first
    high = segments.set_index(["dimension", "segment"]).loc[("contract", "monthly"), "share_high"]
    assert high == 1.0
    assert "revenue_at_risk" not in segments
    assert any(n.startswith("email: 600 levels") for n in notes)
    assert any(n.startswith("country: fewer than two levels") for n in notes)
    assert any(n.startswith("rare: fewer than two levels") for n in notes)


def test_the_label_left_in_is_not_used(trained):
    _, result = trained
    frame = snapshot(seed=1)
    logged = []
    features = table_for_scoring(frame, "customer", result.model, log=logged.append)
    assert "Churn" not in features.columns
    assert any("Churn" in line for line in logged)
    assert features["charges"].isna().sum() == 3  # blanks are missing, as in training
    assert features["customer_id"].iloc[0] == "000000"


def test_with_the_label_only_current_customers_are_scored(trained):
    _, result = trained
    frame = snapshot(seed=1).astype({"Churn": object})
    frame.loc[0, "Churn"] = None  # not known yet: a current customer
    logged = []
    features = table_for_scoring(
        frame, "customer", result.model, log=logged.append, label_column="Churn"
    )
    stayed = frame["Churn"].ne("Yes")
    assert list(features["customer_id"]) == list(frame.loc[stayed, "customer"])
    left = int((~stayed).sum())
    assert any(f"left out {left:,} customers whose 'Churn' says they churned" in m for m in logged)
    frame.loc[7, "Churn"] = "maybe"
    with pytest.raises(ValueError, match=r"got 'maybe' \(data row 8, customer '000007'\)"):
        table_for_scoring(frame, "customer", result.model, label_column="Churn")
    with pytest.raises(ValueError, match="nobody is left to score"):
        table_for_scoring(frame.assign(Churn="Yes"), "customer", result.model, label_column="Churn")


def test_a_tables_problems_are_named(trained):
    _, result = trained
    model = result.model
    frame = snapshot(seed=1)
    with pytest.raises(ValueError, match=r"lacks 1 of the model's columns: \['plan'\]"):
        table_for_scoring(frame.drop(columns="plan"), "customer", model)
    bad = frame.copy()
    bad.loc[5, "charges"] = "n/a"
    with pytest.raises(ValueError, match=r"'charges'.*'n/a' \(data row 6, customer '000005'\)"):
        table_for_scoring(bad, "customer", model)
    twice = pd.concat([frame, frame.head(1)])
    with pytest.raises(ValueError, match="1 duplicate ids"):
        table_for_scoring(twice, "customer", model)
    with pytest.raises(ValueError, match="did you mean 'customer'"):
        table_for_scoring(frame, "Customer", model)
    empty_id = frame.astype({"customer": object})
    empty_id.loc[3, "customer"] = None
    with pytest.raises(ValueError, match=r"empty in 1 rows \(e.g. data row 4\)"):
        table_for_scoring(empty_id, "customer", model)


def test_an_event_data_model_does_not_score_a_table(trained):
    _, result = trained
    event_model = copy.copy(result.model)
    event_model.feature_config = {"windows": [7, 30, 90]}  # what a data folder's model carries
    with pytest.raises(ValueError, match="trained on event data"):
        table_for_scoring(snapshot(), "customer", event_model)


def test_training_a_table_says_how_to_score_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    snapshot().to_csv(tmp_path / "crm.csv", index=False)
    result = runner.invoke(
        app,
        ["train", "--labeled-table", str(tmp_path / "crm.csv"), "--id", "customer",
         "--label", "Churn", "--model-name", "crm-labeled"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "crm-labeled version 1 (champion" in result.output
    assert (
        "score current customers: churn score-table --table FILE --id customer --label Churn "
        "--out DIR --model-name crm-labeled" in result.output
    )
