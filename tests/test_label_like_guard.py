"""A declared customer attribute that looks like the label stops `churn train` before any work,
unless the analyst allows it by name; an undeclared one stays a segment and stops nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features.check import check_tables, label_like_attributes
from features.config import ChurnDefinition, FeatureConfig
from features.io import load_tables
from ingest.demo_data import DemoConfig, write_demo
from tests.factories import make_tables
from training.gate import LabelLikeAttributeError, refuse_label_like_attributes


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """A small demo whose CRM export carries `status` and today's MRR: both hold the label."""
    folder = tmp_path_factory.mktemp("leaky") / "data"
    write_demo(folder, DemoConfig(n_customers=400, seed=3))
    customers = pd.read_parquet(folder / "customers.parquet")
    gone = customers["churned_at"].notna()
    customers["status"] = np.where(gone, "canceled", "active")
    customers["mrr_now"] = np.where(gone, 0.0, 50.0)
    customers.to_parquet(folder / "customers.parquet")
    return folder


def test_a_declared_status_stops_training_and_says_how_to_go_on(leaky):
    tables = load_tables(leaky)
    config = FeatureConfig(customer_attributes=("plan", "status", "mrr_now"))
    with pytest.raises(LabelLikeAttributeError) as err:
        refuse_label_like_attributes(tables, config)
    text = str(err.value)
    assert "'status' (its name ('status')" in text and "'mrr_now'" in text
    assert "'plan'" not in text
    assert 'allow_label_like = ["status", "mrr_now"]' in text


def test_allowed_or_undeclared_attributes_do_not_stop_training(leaky):
    tables = load_tables(leaky)
    declared = FeatureConfig(customer_attributes=("plan", "status", "mrr_now"))
    refuse_label_like_attributes(tables, declared, allowed=("status", "mrr_now"))
    refuse_label_like_attributes(tables, FeatureConfig(customer_attributes=("plan", "country")))


def test_churn_train_refuses_before_any_work(leaky, tmp_path, monkeypatch):
    config = (leaky / "config.toml").read_text()
    start = config.index("customer_attributes = [") + len("customer_attributes = [")
    (leaky / "config.toml").write_text(config[:start] + '"status", ' + config[start:])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["train", "--data", str(leaky)])
    assert result.exit_code == 2, result.output
    assert "declared customer attributes look like the label: 'status'" in result.output
    assert "features 1/" not in result.output  # refused before building any training set
    (leaky / "config.toml").write_text(config)


def _shop(seed: int = 0) -> tuple:
    """Two years of a shop's orders, with the customers export written on the last day: its
    Total Orders and Total Spent count every order, those after any training date too. A
    household size that drives how often a customer buys is a trait, known all along."""
    rng = np.random.default_rng(seed)
    start, days = pd.Timestamp("2023-01-01"), 730
    customers, activity, revenue = [], [], []
    for i in range(400):
        household = int(rng.integers(1, 6))
        rate = household * rng.gamma(2.0, 0.004)  # orders per day
        first = rng.uniform(0, days - 30)
        times = [first]
        while (nxt := times[-1] + rng.exponential(1 / rate)) < days:
            times.append(nxt)
        amounts = np.round(rng.lognormal(3.5, 0.5, len(times)), 2)
        cid = f"{i:05d}"
        for day, amount in zip(times, amounts, strict=True):
            at = start + pd.Timedelta(days=day)
            activity.append({"customer_id": cid, "at": at, "event": "purchase", "value": 1.0})
            revenue.append({"customer_id": cid, "at": at, "amount": amount, "kind": "order"})
        customers.append(
            {"customer_id": cid, "signup_at": start + pd.Timedelta(days=first),
             "household_size": float(household), "first_order_value": float(amounts[0]),
             "total_orders": float(len(times)), "total_spent": float(amounts.sum())}
        )  # fmt: skip
    return make_tables(customers, activity, None, revenue)


SHOP_CONFIG = FeatureConfig(
    customer_attributes=("household_size", "first_order_value", "total_orders", "total_spent"),
    churn=ChurnDefinition(mode="non_contractual", horizon_days=90),
)


def test_a_shops_running_totals_are_caught_and_its_traits_are_not():
    """Shopify's customers export: Total Orders and Total Spent as of the export day told every
    training date the purchases after it (backtest ROC AUC 0.98, 0.85 at the cut) and nothing
    warned; the only finding called the heavy buyers entry errors to map to missing."""
    tables = _shop()
    flags = {flag.name: flag.reason for flag in label_like_attributes(tables, SHOP_CONFIG)}
    assert set(flags) == {"total_orders", "total_spent"}
    assert "number of events over the whole data" in flags["total_orders"]
    assert "revenue over the whole data" in flags["total_spent"]
    assert "running total exported on the last day" in flags["total_spent"]
    with pytest.raises(LabelLikeAttributeError, match="'total_orders'"):
        refuse_label_like_attributes(tables, SHOP_CONFIG)
    report = check_tables(tables, SHOP_CONFIG, data="shop")
    odd = [f.column for f in report.findings if f.code == "odd_attribute_values"]
    assert "total_orders" not in odd and "total_spent" not in odd
    label_like = [f.column for f in report.findings if f.code == "label_like"]
    assert sorted(label_like) == ["total_orders", "total_spent"]


def test_a_running_total_of_the_cut_day_is_no_leak():
    """The same export cut so that the totals count only orders before the middle of the
    history: as of then they are known; ranked against the whole data they are not caught."""
    tables = _shop()
    middle = pd.Timestamp("2024-01-01")
    before = tables.activity[tables.activity["at"] < middle]
    counts = before.groupby("customer_id", observed=True).size()
    customers = tables.customers.copy()
    customers["total_orders"] = customers["customer_id"].map(counts).fillna(0).astype(float)
    config = FeatureConfig(
        customer_attributes=("household_size", "total_orders"), churn=SHOP_CONFIG.churn
    )
    cut = dataclasses.replace(tables, customers=customers)
    assert [f.name for f in label_like_attributes(cut, config)] == ["total_spent"]  # still
