"""A billing-only export (a telecom's, a gym's, a subscription box's): a customer list and its
invoices, no product events. Contractual churn is learnt from the customers and their payments;
the activity table is written empty instead of the mapping having to pass invoices off as
activity (which said one fact twice: "4 payment failed events" beside "4 failed payments")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.check import check_tables
from features.config import FeatureConfig
from features.contract import ContractError
from features.io import load_tables
from features.signals import build_features
from ingest.importer import import_with_mapping, run_import
from ingest.mapping import MappingError, load_mapping, parse_mapping
from retention.metrics import paid_monthly_revenue
from serving.batch import run_scoring
from training.config import TrainConfig
from training.pipeline import fit_from_tables

MAPPING = """
[features]
windows = [30, 90]
customer_attributes = ["region"]

[features.churn]
mode = "contractual"
horizon_days = 30

[customers]
source = "customers.csv"

[customers.columns]
customer_id = "customer_no"
signup_at = { column = "signup_date", dayfirst = true }
churned_at = { column = "cancelled_on", dayfirst = true }
region = "region"

[revenue]
source = "invoices.csv"

[revenue.columns]
customer_id = "customer_no"
at = { column = "issued_at", unit = "s" }
amount = { column = "amount_cents", scale = 0.01 }
kind = { column = "status", map = { paid = "invoice", failed = "failed_payment" } }
period = "period_start"
period_end = "period_end"
"""

EXPORT_DAY = pd.Timestamp("2024-07-01")


def write_billing(folder: Path, customers: int = 600, seed: int = 0) -> None:
    """Monthly invoices in cents (unix seconds), ids with leading zeros, day-first dates; a
    failed payment makes a customer fifteen times as likely to cancel within the next months."""
    rng = np.random.default_rng(seed)
    people, invoices = [], []
    for i in range(customers):
        cid = f"{i:06d}"
        signup = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 330)))
        cancelled = None
        last_failed = pd.Timestamp("1970-01-01")
        month = signup
        while month < EXPORT_DAY:
            failed = rng.random() < 0.08
            issued = month + pd.Timedelta(hours=int(rng.integers(0, 24)))
            invoices.append(
                (cid, int(issued.timestamp()), 1900 if failed else 2900, "failed" if failed else "paid",
                 month.date().isoformat(), (month + pd.DateOffset(months=1)).date().isoformat())
            )  # fmt: skip
            if failed:
                last_failed = month
            recent = (month - last_failed).days < 60
            if rng.random() < (0.3 if recent else 0.02):
                cancelled = month + pd.Timedelta(days=int(rng.integers(1, 28)))
                break
            month = month + pd.DateOffset(months=1)
        region = rng.choice(["north", "south"])
        left = (
            cancelled.strftime("%d/%m/%Y")
            if cancelled is not None and cancelled < EXPORT_DAY
            else ""
        )
        people.append((cid, signup.strftime("%d/%m/%Y"), left, region))
    pd.DataFrame(people, columns=["customer_no", "signup_date", "cancelled_on", "region"]).to_csv(
        folder / "customers.csv", index=False
    )
    pd.DataFrame(
        invoices,
        columns=[
            "customer_no",
            "issued_at",
            "amount_cents",
            "status",
            "period_start",
            "period_end",
        ],
    ).to_csv(folder / "invoices.csv", index=False)


def _mapping(tmp_path: Path, text: str = MAPPING):
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return load_mapping(path)


def test_a_billing_only_export_imports_checks_trains_and_explains_by_payments(tmp_path):
    source = tmp_path / "raw"
    source.mkdir()
    write_billing(source)
    mapping = _mapping(tmp_path)
    out = tmp_path / "data"
    import_with_mapping(mapping, source, out)
    assert (out / "activity.parquet").is_file()  # the contract's table, empty
    tables = load_tables(out)
    assert tables.activity.empty and len(tables.revenue) > 5000
    assert tables.customers["customer_id"].str.startswith("0").all()  # leading zeros kept
    config = FeatureConfig.from_dict(mapping.features)
    report = check_tables(tables, config)
    assert not report.errors
    assert not [f for f in report.findings if f.code == "customers_without_activity"]

    fitted = fit_from_tables(tables, config, TrainConfig(bootstrap=20), log=lambda _: None)
    frame = build_features(tables, "2024-06-01", fitted.feature_config)
    assert len(frame) > 100 and frame["failed_payments_90d"].gt(0).any()
    risk = pd.Series(fitted.model.predict_proba(frame), index=frame.index)
    failed = frame["failed_payments_90d"] > 0
    assert risk[failed].mean() > 2 * risk[~failed].mean()  # the model learnt from the payments
    drivers = fitted.model.drivers(frame, top=3)
    reasons = [d["reason"] for row in drivers for d in row]
    assert any("failed payment" in r for r in reasons)
    assert not [r for r in reasons if "activity" in r.lower() or "event" in r.lower()]

    # The weekly job: revenue at risk from what each customer pays per month now, the report's
    # revenue retention by cohort, and no retention-by-activity table that measures nothing.
    run = run_scoring(
        tables, "2024-06-01", fitted.model, "1", tmp_path / "scores", log=lambda _: None
    )
    overall = run.segments[run.segments["dimension"] == "all"].iloc[0]
    monthly = paid_monthly_revenue(tables.revenue, "2024-06-01")
    paying = monthly.reindex(frame["customer_id"]).fillna(0.0).to_numpy()
    assert set(np.round(paying, 2)) == {0.0, 29.0}  # a month's invoice, or a failed one
    expected = (fitted.model.predict_proba(frame) * paying).sum()
    assert overall["revenue_at_risk"] == pytest.approx(expected)
    page = (Path(run.partition) / "report.html").read_text()
    assert "retention by activity is not measured" in page


def test_churn_read_from_activity_needs_an_activity_table(tmp_path):
    text = MAPPING.replace('mode = "contractual"', 'mode = "non_contractual"')
    with pytest.raises(
        MappingError, match=r"non-contractual churn is read from the customers' activity"
    ):
        parse_mapping(__import__("tomllib").loads(text), "billing.toml")
    source = tmp_path / "raw"
    source.mkdir()
    write_billing(source, customers=40)
    tables, _ = run_import(_mapping(tmp_path), source)
    config = FeatureConfig.from_dict(mapping_features(text))
    with pytest.raises(ContractError, match=r"table 'activity'.*non-contractual churn is read"):
        fit_from_tables(tables, config, TrainConfig(), log=lambda _: None)
    report = check_tables(tables, config)
    assert [f.message for f in report.errors] == [
        "table 'activity' has no rows, and non-contractual churn is read from activity"
    ]


def mapping_features(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)["features"]
