"""examples/events: a Sparkify-shaped event log, the only export, mapped by
examples/events/mapping.toml (customers, signup and cancellation all from the log)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from examples.events.generate import write_sample
from features.check import check_tables
from features.config import FeatureConfig
from ingest.importer import run_import
from ingest.mapping import load_mapping

MAPPING = Path(__file__).resolve().parents[1] / "examples" / "events" / "mapping.toml"


def test_the_event_log_example_imports_with_churn_from_the_cancellation_event(tmp_path):
    write_sample(tmp_path, users=120, seed=1)
    mapping = load_mapping(MAPPING)
    tables, report = run_import(mapping, tmp_path)
    log = pd.read_json(tmp_path / "events.json", lines=True, dtype={"userId": str})
    cancelled = log[log["page"] == "Cancellation Confirmation"]
    customers = tables.customers.set_index("customer_id")
    assert len(customers) == log.loc[log["userId"] != "", "userId"].nunique() == 120
    assert customers["churned_at"].notna().sum() == len(cancelled) > 0
    first = cancelled.iloc[0]
    assert customers.loc[first["userId"], "churned_at"] == pd.Timestamp(first["ts"], unit="ms")
    assert any(i.startswith("0") for i in customers.index)  # 000004 stays 000004
    dropped = {s.table: s.dropped for s in report.sources}
    logged_out = int((log["userId"] == "").sum())
    assert dropped["activity"] == {"logged-out page views": logged_out}
    # The cancellation is each churner's last event, and nobody is active before signing up.
    config = FeatureConfig.from_dict(mapping.features)
    codes = {f.code for f in check_tables(tables, config).findings}
    assert not codes & {"after_churn", "before_signup"}
