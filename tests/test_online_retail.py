"""The real UCI Online Retail data: import counts, features and labels over several dates."""

from __future__ import annotations

import pandas as pd
import pytest

from features.dataset import build_training_set, observation_dates
from features.signals import build_features
from ingest.online_retail import ONLINE_RETAIL_CONFIG, import_online_retail, read_online_retail
from tests.shared_data import ONLINE_RETAIL, needs_online_retail
from training.model import OTHER_LEVEL, Preprocessor

RAW = ONLINE_RETAIL
pytestmark = needs_online_retail


@pytest.fixture(scope="module")
def raw():
    return read_online_retail(RAW)


@pytest.fixture(scope="module")
def imported(raw):
    return import_online_retail(raw)


def test_import_counts_match_the_data_readme(raw, imported):
    tables, report = imported
    assert report.raw_rows == 541_909
    assert report.dropped_without_customer == 135_080
    assert report.customers == 4_372 == len(tables.customers)
    assert raw["InvoiceNo"].nunique() == 25_900
    assert raw["Country"].nunique() == 38
    # Every invoice with a customer becomes exactly one activity and one revenue row.
    with_customer = raw[raw["CustomerID"].notna()]
    assert report.invoices == with_customer["InvoiceNo"].nunique() == len(tables.activity)


def test_cancellations_are_negative_experience_events_and_refunds(raw, imported):
    tables, _ = imported
    with_customer = raw[raw["CustomerID"].notna()]
    cancelled_invoices = with_customer.loc[
        with_customer["InvoiceNo"].str.startswith("C"), "InvoiceNo"
    ].nunique()
    events = tables.activity["event"].astype(str).value_counts()
    assert events["cancellation"] == cancelled_invoices
    refunds = tables.revenue[tables.revenue["kind"] == "refund"]
    assert len(refunds) == cancelled_invoices and (refunds["amount"] <= 0).all()
    line_total = (with_customer["Quantity"] * with_customer["UnitPrice"]).sum()
    assert tables.revenue["amount"].sum() == pytest.approx(line_total, rel=1e-9)


def test_features_and_labels_build_for_several_dates(imported):
    tables, _ = imported
    dates = observation_dates("2011-03-01", "2011-09-01", 45)
    frame, config = build_training_set(tables, dates, ONLINE_RETAIL_CONFIG)
    assert frame["as_of"].nunique() == len(dates) == 5
    assert not frame.duplicated(["as_of", "customer_id"]).any()
    assert config.event_types == ("cancellation", "purchase")
    assert frame["country"].nunique() > 20
    # The lookback comes from the data (the customers' typical gap between purchases and the
    # pauses after which 95 % of the returning buyers came back: 31 weeks) and every eligible
    # customer bought within it before T, by the definition of eligibility.
    lookback = config.churn.lookback_days
    assert lookback is not None and 90 <= lookback <= 245 and lookback % 7 == 0
    assert (frame["days_since_last_active"] <= lookback).all()
    assert (frame["days_since_last_active"] > 90).any()  # beyond the former fixed 90 days
    assert frame.groupby("as_of")["churned"].mean().between(0.2, 0.6).all()


def test_countries_of_few_customers_are_one_level_for_the_model(imported):
    """27 of 37 countries have fewer than 10 customers; repeated over the observation dates
    their rows would pass LightGBM's minimum per category and the model learn 4 customers."""
    tables, _ = imported
    dates = observation_dates("2011-03-01", "2011-09-01", 14)
    frame, _ = build_training_set(tables, dates, ONLINE_RETAIL_CONFIG)
    usa = frame.loc[frame["country"] == "USA", "customer_id"]
    assert usa.nunique() < 5 and len(usa) > usa.nunique()  # the same customers on many dates
    pre = Preprocessor().fit(frame)
    assert pre.categorical["country"] == ["France", "Germany", "United Kingdom", OTHER_LEVEL]
    assert {"USA", "Canada", "EIRE", "Spain"} <= set(pre.grouped["country"])
    rows = frame[frame["country"].isin(["USA", "Germany"])]
    scored = pre.transform(rows)["country"].astype(str)
    assert set(scored[rows["country"] == "USA"]) == {OTHER_LEVEL}
    assert set(scored[rows["country"] == "Germany"]) == {"Germany"}


def test_churn_share_at_the_last_full_horizon_matches_the_readme(raw, imported):
    """README: 33.3 % of customers bought nothing in the final 90 days."""
    from features.labels import build_labels

    tables, _ = imported
    end = raw["InvoiceDate"].max()
    last_t = (end - pd.Timedelta(days=90)).normalize()
    labels = build_labels(tables, last_t, ONLINE_RETAIL_CONFIG.with_churn(lookback_days=400).churn)
    # The same definition computed independently from the raw lines: bought before T, and
    # bought nothing in [T, T + 90 days).
    bought = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C")]
    ids = bought["CustomerID"].astype("int64").astype(str)
    before = set(ids[bought["InvoiceDate"] < last_t])
    in_horizon = set(
        ids[
            (bought["InvoiceDate"] >= last_t)
            & (bought["InvoiceDate"] < last_t + pd.Timedelta(days=90))
        ]
    )
    assert set(labels["customer_id"]) == before
    assert set(labels.loc[labels["churned"] == 1, "customer_id"]) == before - in_horizon
    share_of_all_customers = labels["churned"].sum() / len(tables.customers)
    assert share_of_all_customers == pytest.approx(0.333, abs=0.01)


def test_features_at_t_ignore_invoices_from_t_on(imported):
    tables, _ = imported
    at_t = build_features(tables, "2011-06-01", ONLINE_RETAIL_CONFIG)
    cut = tables.activity["at"] < "2011-06-01"
    from features.contract import validate_tables

    truncated = validate_tables(
        tables.customers,
        tables.activity[cut],
        revenue=tables.revenue[tables.revenue["at"] < "2011-06-01"],
    )
    pd.testing.assert_frame_equal(
        at_t, build_features(truncated, "2011-06-01", ONLINE_RETAIL_CONFIG)
    )
