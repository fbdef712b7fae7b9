"""examples/subscriptions: KKBox-shaped exports (members, transactions, daily listening logs)
mapped by examples/subscriptions/mapping.toml: churn known 30 days after the expiry, the expiry
as revenue.period_end, cancellations and the auto-renew flag as activity events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from examples.subscriptions.generate import write_sample
from features.check import check_tables
from features.config import FeatureConfig
from features.signals import build_features
from ingest.importer import run_import
from ingest.mapping import load_mapping

MAPPING = Path(__file__).resolve().parents[1] / "examples" / "subscriptions" / "mapping.toml"
EXPORT_DAY = pd.Timestamp("2016-07-01")


def test_the_subscription_example_imports_with_churn_known_30_days_after_the_expiry(tmp_path):
    counts = write_sample(tmp_path, members=300, seed=1)
    mapping = load_mapping(MAPPING)
    tables, report = run_import(mapping, tmp_path)
    assert len(tables.customers) == counts["members"] == 300
    # churned_at: the latest transaction's expiry, where 30 days have passed since it.
    tx = pd.read_csv(tmp_path / "transactions.csv", dtype=str)
    tx["key"] = tx["transaction_date"] + tx["membership_expire_date"]
    last = tx.sort_values("key").groupby("msno")["membership_expire_date"].last()
    expiry = pd.to_datetime(last, format="%Y%m%d")
    known = expiry[expiry + pd.Timedelta(days=30) < EXPORT_DAY]
    churned = tables.customers.set_index("customer_id")["churned_at"].dropna()
    assert len(churned) == len(known) > 0
    assert (churned.sort_index() == known.sort_index()).all()
    # Cancellations are events, not revenue; every paying transaction has its period's end.
    cancels = int((tx["is_cancel"] == "1").sum())
    dropped = {s.label: s.dropped for s in report.sources}
    assert dropped["transactions"] == {"is_cancel = '1' (mapped to drop)": cancels}
    events = tables.activity["event"].value_counts()
    assert events["cancel"] == cancels and {"listen", "auto_renewal", "manual_payment"} <= set(
        events.index
    )
    assert tables.revenue["period_end"].notna().all()
    assert (tables.revenue["period_end"] >= tables.revenue["period"]).all()
    # The features see the paid period and the auto-renewals; nothing breaks the contract.
    config = FeatureConfig.from_dict(mapping.features)
    assert config.value_unit == "seconds listened"
    frame = build_features(tables, "2016-05-01", config)
    days = frame["days_until_paid_period_ends"]
    assert days.notna().mean() > 0.9 and (days < 0).any() and (days > 0).any()
    assert (
        "auto_renewal_events_30d" in frame and np.isfinite(frame["auto_renewal_events_90d"]).all()
    )
    assert not [f for f in check_tables(tables, config).findings if f.level == "error"]
