"""Small contract tables built inside tests."""

from __future__ import annotations

import pandas as pd

from features.contract import Tables, validate_tables


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def make_tables(
    customers: list[dict],
    activity: list[dict] | None = None,
    feedback: list[dict] | None = None,
    revenue: list[dict] | None = None,
) -> Tables:
    """Validated Tables from lists of row dicts (missing optional tables stay empty)."""
    cust = pd.DataFrame(customers)
    if "churned_at" not in cust:
        cust["churned_at"] = pd.NaT
    act = pd.DataFrame(activity or [], columns=["customer_id", "at", "event", "value"])
    fb = pd.DataFrame(feedback) if feedback else None
    rev = pd.DataFrame(revenue) if revenue else None
    return validate_tables(cust, act.astype({"customer_id": "str", "event": "str"}), fb, rev)
