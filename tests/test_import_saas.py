"""The SaaS example mapping on its generated sample: five exports with the quirks of their
tools (day-first CRM dates, ids with leading zeros, Stripe's unix seconds and cents, Segment's
ISO times, Zendesk statuses), imported through `churn import`, then trained on."""

from __future__ import annotations

import csv
import json
import tomllib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from examples.saas.generate import write_sample
from features.io import load_tables

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "examples" / "saas" / "mapping.toml"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("saas")
    write_sample(root / "raw", customers=300, seed=3)
    out = root / "out"
    result = CliRunner().invoke(
        app, ["import", "--mapping", str(MAPPING), "--source", str(root / "raw"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return root / "raw", out, result.output


def _raw(raw_dir: Path, name: str) -> list[dict[str, str]]:
    with (raw_dir / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_ids_keep_leading_zeros_and_day_first_dates_read_as_declared(imported):
    raw_dir, out, _ = imported
    tables = load_tables(out)
    crm = {r["id"]: r for r in _raw(raw_dir, "crm_customers.csv") if r["plan"] != "internal"}
    customers = tables.customers.set_index("customer_id")
    assert set(customers.index) == set(crm)
    assert all(len(i) == 6 and i.startswith("000") for i in customers.index)
    for cid, row in crm.items():
        assert customers.loc[cid, "signup_at"] == datetime.strptime(row["created"], "%d/%m/%Y")
        churned = customers.loc[cid, "churned_at"]
        if row["canceled_at"]:
            assert churned == datetime.strptime(row["canceled_at"], "%d/%m/%Y")
        else:
            assert pd.isna(churned)
    # "NA" is Namibia: only an empty field is a missing value.
    assert (customers["country"] == "NA").sum() == sum(r["country"] == "NA" for r in crm.values())
    assert "status" not in tables.customers.columns


def test_stripe_seconds_and_cents_statuses_and_refunds(imported):
    raw_dir, out, _ = imported
    revenue = load_tables(out).revenue
    invoices = _raw(raw_dir, "stripe_invoices.csv")
    kept = [r for r in invoices if r["status"] != "void"]
    failed = [r for r in invoices if r["status"] == "uncollectible"]
    assert failed and len(revenue) == len(kept) + len(failed)
    assert revenue["at"].min() >= pd.Timestamp("2023-01-01")  # not 1970: seconds were declared
    rows = {(i, k): row for (i, k), row in revenue.set_index(["invoice_id", "kind"]).iterrows()}
    for row in kept[:200] + failed:
        expected = int(row["amount_due"]) / 100
        if row["status"] == "refunded":
            got = rows[(row["id"], "refund")]
            assert got["amount"] == -expected
        else:  # every issued invoice is an invoice, whatever its fate on the export day
            got = rows[(row["id"], "invoice")]
            assert got["amount"] == expected
        assert got["at"] == pd.Timestamp(int(row["created"]), unit="s")
    # Failed for good: the failure is a row beside the invoice, at its date.
    for row in failed:
        assert rows[(row["id"], "failed_payment")]["at"] == pd.Timestamp(
            int(row["created"]), unit="s"
        )
    by_id = revenue[revenue["kind"] != "failed_payment"].set_index("invoice_id")
    assert (revenue["kind"] == "refund").any()
    # Issued and not paid yet: an invoice of what it bills, as the settled ones were when issued.
    issued = [r for r in invoices if r["status"] == "open"]
    assert issued and all(by_id.loc[r["id"], "kind"] == "invoice" for r in issued)
    assert all(by_id.loc[r["id"], "amount"] == int(r["amount_due"]) / 100 for r in issued)


def test_feedback_nps_in_utc_and_zendesk_statuses(imported):
    raw_dir, out, _ = imported
    feedback = load_tables(out).feedback
    nps = feedback[feedback["kind"] == "nps"]
    first = _raw(raw_dir, "nps_survey.csv")[0]
    local = pd.Timestamp(first["created_at"]).tz_localize("Europe/Berlin")
    match = nps[
        (nps["customer_id"] == first["customer_id"]) & (nps["score"] == int(first["score"]))
    ]
    assert local.tz_convert("UTC").tz_localize(None) in set(match["at"])
    tickets = feedback[feedback["kind"] == "ticket"]
    raw_tickets = _raw(raw_dir, "zendesk_tickets.csv")
    assert len(tickets) == len(raw_tickets)
    open_raw = sum(r["status"] in ("new", "open", "pending", "hold") for r in raw_tickets)
    assert (tickets["status"] == "open").sum() == open_raw
    assert tickets.loc[tickets["status"] == "closed", "resolved_at"].notna().all()


def test_report_counts_every_dropped_row_with_its_reason(imported):
    raw_dir, out, output = imported
    report = json.loads((out / "report.json").read_text())
    sources = {s["label"]: s for s in report["sources"]}
    invoices = _raw(raw_dir, "stripe_invoices.csv")
    stripe = sources["stripe"]
    assert stripe["rows_read"] == len(invoices)
    assert stripe["dropped"] == {
        "status = 'void' (mapped to drop)": sum(r["status"] == "void" for r in invoices),
    }
    assert stripe["rows_read"] - sum(stripe["dropped"].values()) == stripe["rows_out"]
    assert sources["crm"]["dropped"] == {"internal test accounts": 5}
    events = [json.loads(line) for line in (raw_dir / "segment_tracks.jsonl").open()]
    test_account_events = sum(e["userId"].startswith("9") for e in events)
    assert sources["segment"]["dropped"] == {
        "customer not in the customers table": test_account_events
    }
    assert report["tables"]["customers"]["rows"] == 300
    assert report["customers_without_activity"] >= 0
    assert "customers without any activity" in output
    assert "internal test accounts: 5" in output
    assert "Rows dropped, and why" in (out / "report.md").read_text()


def test_config_declares_contractual_churn_and_never_the_crm_status(imported):
    _, out, _ = imported
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["features"]["churn"]["mode"] == "contractual"
    assert config["features"]["churn"]["observed_until"] == "2024-12-31"
    attributes = config["features"]["customer_attributes"]
    assert "status" not in attributes and "mrr" not in attributes
    assert set(attributes) <= set(load_tables(out).customers.columns)
    assert config["scoring"]["currency"] == "USD"  # reasons read "$49", not "49"


def test_trains_end_to_end_on_the_imported_folder(imported, tmp_path, monkeypatch):
    """`churn train --data OUT` on the import's output, with the config.toml it wrote."""
    _, out, _ = imported
    data = out
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["train", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "backtest (" in result.output and "ROC AUC" in result.output
