"""A billing-only export (examples/billing: a customer list and its invoices, no product events).
Contractual churn is learnt from the customers and their payments; the activity table is written
empty instead of the mapping having to pass invoices off as activity (which said one fact twice:
"4 payment failed events" beside "4 failed payments")."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from examples.billing.generate import write_sample
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
from training.evaluation import recency_feature
from training.pipeline import fit_from_tables
from training.simple_model import fit_simple_model

MAPPING = Path(__file__).resolve().parents[1] / "examples" / "billing" / "mapping.toml"


@pytest.fixture(scope="module")
def billing(tmp_path_factory) -> tuple[Path, Path]:
    """The example's raw exports (1,200 customers) and the folder its mapping imports them to."""
    root = tmp_path_factory.mktemp("billing")
    write_sample(root / "raw", customers=1200, seed=3)
    report = import_with_mapping(load_mapping(MAPPING), root / "raw", root / "data")
    assert not report.activity_mapped
    return root / "raw", root / "data"


def test_a_billing_only_export_imports_checks_trains_and_explains_by_payments(billing, tmp_path):
    _, data = billing
    assert (data / "activity.parquet").is_file()  # the contract's table, empty
    tables = load_tables(data)
    assert tables.activity.empty and len(tables.revenue) > 5000
    assert tables.customers["customer_id"].str.startswith("0").all()  # leading zeros kept
    mapping = load_mapping(MAPPING)
    config = FeatureConfig.from_dict(mapping.features)
    report = check_tables(tables, config)
    assert not report.errors
    assert not [f for f in report.findings if f.code == "customers_without_activity"]
    assert "plan_at_signup" not in dict(report.label_like)  # annual plans: a real effect

    fitted = fit_from_tables(tables, config, TrainConfig(bootstrap=20), log=lambda _: None)
    # the recency rule goes by the last payment where nobody has an event (it had read 0.5)
    assert recency_feature(fitted.dataset) == "days_since_last_payment"
    assert fitted.evaluation.baselines["recency_rule"]["roc_auc"] != 0.5
    simple = fit_simple_model(
        "recency_rule", fitted.dataset, fitted.dataset, fitted.model.preprocessor,
        fitted.feature_config, TrainConfig(), "2024-05-01",
    )  # fmt: skip
    assert simple.feature_names == ["days_since_last_payment"]
    frame = build_features(tables, "2024-06-01", fitted.feature_config)
    assert len(frame) > 300 and frame["failed_payments_90d"].gt(0).any()
    risk = pd.Series(fitted.model.predict_proba(frame), index=frame.index)
    failed = frame["failed_payments_90d"] > 0
    assert risk[failed].mean() > 2 * risk[~failed].mean()  # the model learnt from the payments
    drivers = fitted.model.drivers(frame, top=3)
    reasons = [d["reason"] for row in drivers for d in row]
    assert any("failed payment" in r for r in reasons)
    assert not [r for r in reasons if "activity" in r.lower() or "event" in r.lower()]

    # The weekly job: revenue at risk from what each customer pays per month now (an annual
    # plan's twelfth), the report's revenue retention by cohort, and no retention-by-activity
    # table that measures nothing.
    run = run_scoring(
        tables, "2024-06-01", fitted.model, "1", tmp_path / "scores", log=lambda _: None
    )
    overall = run.segments[run.segments["dimension"] == "all"].iloc[0]
    monthly = paid_monthly_revenue(tables.revenue, "2024-06-01")
    paying = monthly.reindex(frame["customer_id"]).fillna(0.0).to_numpy()
    annual = tables.customers.set_index("customer_id")["plan_at_signup"].str.endswith("annual")
    yearly = paying[annual.reindex(frame["customer_id"]).fillna(False).to_numpy(dtype=bool)]
    assert len(yearly) and np.median(yearly[yearly > 0]) < 100  # 190-590 a year, per month
    expected = (fitted.model.predict_proba(frame, "2024-06-01") * paying).sum()
    assert overall["revenue_at_risk"] == pytest.approx(expected)
    page = (Path(run.partition) / "report.html").read_text()
    assert "retention by activity is not measured" in page
    assert "Revenue retention by signup cohort" in page


def test_churn_read_from_activity_needs_an_activity_table(billing):
    raw, _ = billing
    text = MAPPING.read_text().replace('mode = "contractual"', 'mode = "non_contractual"')
    with pytest.raises(MappingError, match=r"non-contractual churn is read from the customers'"):
        parse_mapping(tomllib.loads(text), "billing.toml")
    tables, _ = run_import(load_mapping(MAPPING), raw)
    config = FeatureConfig.from_dict(tomllib.loads(text)["features"])
    with pytest.raises(ContractError, match=r"table 'activity'.*non-contractual churn is read"):
        fit_from_tables(tables, config, TrainConfig(), log=lambda _: None)
    report = check_tables(tables, config)
    assert [f.message for f in report.errors] == [
        "table 'activity' has no rows, and non-contractual churn is read from activity"
    ]
