"""Labels for [T, T + horizon) under both churn definitions, and training sets over many dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import ChurnDefinition, FeatureConfig
from features.dataset import build_training_set, observation_dates, parse_days, write_training_set
from features.labels import (
    build_labels,
    lapsed_count,
    lapsed_customers,
    never_active_count,
    never_active_signed_up_before_history,
)
from features.signals import build_features
from tests.factories import make_tables

CUSTOMERS = [
    {"customer_id": "stays", "signup_at": "2024-01-01"},
    {"customer_id": "leaves", "signup_at": "2024-01-01", "churned_at": "2024-03-10"},
    {"customer_id": "left_at_t", "signup_at": "2024-01-01", "churned_at": "2024-03-01"},
    {"customer_id": "leaves_later", "signup_at": "2024-01-01", "churned_at": "2024-04-15"},
    {"customer_id": "new", "signup_at": "2024-03-05"},
]
ACTIVITY = [
    {"customer_id": "stays", "at": "2024-02-20", "event": "login", "value": 1.0},
    {"customer_id": "stays", "at": "2024-03-20", "event": "login", "value": 1.0},
    {"customer_id": "leaves", "at": "2024-02-25", "event": "login", "value": 1.0},
    {"customer_id": "leaves_later", "at": "2024-02-01", "event": "report", "value": 1.0},
    {"customer_id": "leaves_later", "at": "2024-03-30", "event": "report", "value": 1.0},
    {"customer_id": "new", "at": "2024-05-01", "event": "login", "value": 1.0},
]


@pytest.fixture
def tables():
    return make_tables(CUSTOMERS, ACTIVITY)


def test_contractual_label_is_churn_date_in_horizon(tables):
    labels = build_labels(tables, "2024-03-01", ChurnDefinition(horizon_days=30))
    assert dict(zip(labels["customer_id"], labels["churned"], strict=True)) == {
        "stays": 0,
        "leaves": 1,
        "left_at_t": 1,
        "leaves_later": 0,
    }  # left_at_t churned at T itself: a customer before T, churned in [T, T + 30 days)
    # new signs up after T: not scored


def test_contractual_churn_at_t_is_in_the_label_and_at_t_plus_horizon_is_not():
    """churned_at == T: eligible at T and churned; churned_at == T + horizon: not churned at T,
    and churned at T + horizon (where it is eligible, since it had not churned before)."""
    tables = make_tables(
        [
            {"customer_id": "at_t", "signup_at": "2024-01-01", "churned_at": "2024-03-01"},
            {"customer_id": "at_end", "signup_at": "2024-01-01", "churned_at": "2024-03-31"},
            {"customer_id": "before_t", "signup_at": "2024-01-01", "churned_at": "2024-02-29"},
            {"customer_id": "anchor", "signup_at": "2024-01-01", "churned_at": "2024-06-01"},
        ]
    )
    churn = ChurnDefinition(horizon_days=30)
    at_t = build_labels(tables, "2024-03-01", churn).set_index("customer_id")["churned"]
    assert at_t.to_dict() == {"at_t": 1, "at_end": 0, "anchor": 0}
    at_end = build_labels(tables, "2024-03-31", churn).set_index("customer_id")["churned"]
    assert at_end.to_dict() == {"at_end": 1, "anchor": 0}


def test_a_purchase_stamped_at_t_counts_in_the_label_and_not_in_the_features():
    """Daily data at midnight: a purchase on T keeps the customer; one on T + horizon does not."""
    customers = [
        {"customer_id": "buys_on_t", "signup_at": "2024-01-01"},
        {"customer_id": "buys_at_end", "signup_at": "2024-01-01"},
    ]
    activity = [
        {"customer_id": "buys_on_t", "at": "2024-02-20", "event": "purchase", "value": 1.0},
        {"customer_id": "buys_on_t", "at": "2024-03-01", "event": "purchase", "value": 1.0},
        {"customer_id": "buys_at_end", "at": "2024-02-20", "event": "purchase", "value": 1.0},
        {"customer_id": "buys_at_end", "at": "2024-03-31", "event": "purchase", "value": 1.0},
    ]
    tables = make_tables(customers, activity)
    churn = ChurnDefinition(mode="non_contractual", horizon_days=30, lookback_days=30)
    labels = build_labels(tables, "2024-03-01", churn).set_index("customer_id")["churned"]
    assert labels.to_dict() == {"buys_on_t": 0, "buys_at_end": 1}
    features = build_features(tables, "2024-03-01", FeatureConfig(churn=churn)).set_index(
        "customer_id"
    )
    assert features.loc["buys_on_t", "events_7d"] == 0  # the purchase on T is not a feature
    assert features.loc["buys_on_t", "days_since_last_event"] == 10


def test_non_contractual_label_is_no_qualifying_activity_in_horizon(tables):
    churn = ChurnDefinition(mode="non_contractual", horizon_days=30, lookback_days=30)
    labels = build_labels(tables, "2024-03-01", churn)
    # eligible: activity in [2024-01-31, 2024-03-01)
    assert dict(zip(labels["customer_id"], labels["churned"], strict=True)) == {
        "stays": 0,
        "leaves": 1,
        "leaves_later": 0,
    }
    only_login = ChurnDefinition(
        mode="non_contractual", horizon_days=30, lookback_days=30, qualifying_events=("login",)
    )
    labels = build_labels(tables, "2024-03-01", only_login)
    assert set(labels["customer_id"]) == {"stays", "leaves"}


def test_lapsed_customers_are_counted_not_dropped_silently(tables):
    """Current customers at T without qualifying activity in the lookback are not scored; the
    scoring job reports how many (left_at_t: no activity; with logins only, leaves_later too).
    'new' signs up after T: not a customer yet, not lapsed."""
    churn = ChurnDefinition(mode="non_contractual", horizon_days=30, lookback_days=30)
    assert lapsed_count(tables, "2024-03-01", churn) == 1
    only_login = ChurnDefinition(
        mode="non_contractual", horizon_days=30, lookback_days=30, qualifying_events=("login",)
    )
    assert lapsed_count(tables, "2024-03-01", only_login) == 2
    assert lapsed_count(tables, "2024-03-01", ChurnDefinition(horizon_days=30)) == 0


def test_lapsed_buyers_are_listed_most_recent_first_for_win_back(tmp_path):
    """The customers not scored because they lapsed are named, not only counted: their last
    purchase, the days since, their purchases and revenue before T, the most recently lapsed
    first; browsers who never bought and customers still in the lookback are not on it; under
    contractual churn nobody is. The hand-off file keeps the ids as text."""
    from serving.handoff import write_lapsed_csv

    customers = [
        {"customer_id": c, "signup_at": "2024-01-01"} for c in ("007", "008", "010", "011", "012")
    ]
    activity = [
        {"customer_id": "007", "at": "2024-01-10 09:30", "event": "purchase", "value": 1.0},
        {"customer_id": "007", "at": "2024-01-20 18:00", "event": "purchase", "value": 1.0},
        {"customer_id": "008", "at": "2024-01-05", "event": "purchase", "value": 1.0},
        {"customer_id": "008", "at": "2024-02-25", "event": "view", "value": 1.0},
        {"customer_id": "010", "at": "2024-02-20", "event": "purchase", "value": 1.0},  # active
        {"customer_id": "011", "at": "2024-02-01", "event": "view", "value": 1.0},  # browser
    ]
    revenue = [
        {"customer_id": "007", "at": "2024-01-10 09:30", "amount": 12.5, "kind": "order"},
        {"customer_id": "007", "at": "2024-01-20 18:00", "amount": 7.25, "kind": "order"},
        {"customer_id": "007", "at": "2024-03-05", "amount": 99.0, "kind": "order"},  # after T
    ]
    tables = make_tables(customers, activity, revenue=revenue)
    churn = ChurnDefinition(
        mode="non_contractual", horizon_days=30, lookback_days=28, qualifying_events=("purchase",)
    )
    lapsed = lapsed_customers(tables, "2024-03-01", churn)
    assert lapsed["customer_id"].tolist() == ["007", "008"]  # lapsed on 01-20, then 01-05
    assert lapsed["last_activity_at"].tolist() == [
        pd.Timestamp("2024-01-20 18:00", tz="UTC"), pd.Timestamp("2024-01-05", tz="UTC")
    ]  # fmt: skip
    np.testing.assert_allclose(lapsed["days_since_last_activity"], [40.25, 56.0])
    assert lapsed["qualifying_events"].tolist() == [2, 1]  # the view is no purchase
    np.testing.assert_allclose(lapsed["revenue_total"], [19.75, 0.0])
    assert lapsed_count(tables, "2024-03-01", churn) == 4  # with the browser and "012"
    assert lapsed_customers(tables, "2024-03-01", ChurnDefinition(horizon_days=30)).empty
    assert write_lapsed_csv(lapsed, tmp_path / "lapsed.csv") == 2
    assert (tmp_path / "lapsed.csv").read_text().splitlines() == [
        '"customer_id","last_activity_at","days_since_last_activity","qualifying_events",'
        '"revenue_total"',
        '"007","2024-01-20T18:00:00Z",40.2,2,19.75',
        '"008","2024-01-05T00:00:00Z",56,1,0',
    ]
    # With the [scoring] section's currency the column says it (a bare 19.75 is read in the
    # reader's own currency).
    write_lapsed_csv(lapsed, tmp_path / "eur.csv", "EUR")
    assert (tmp_path / "eur.csv").read_text().splitlines()[0].endswith('"revenue_total_eur"')
    # A log of dates only (no revenue rows): no always-empty revenue column.
    dates_only = make_tables(customers, activity)
    write_lapsed_csv(lapsed_customers(dates_only, "2024-03-01", churn), tmp_path / "dates.csv")
    assert (tmp_path / "dates.csv").read_text().splitlines()[:2] == [
        '"customer_id","last_activity_at","days_since_last_activity","qualifying_events"',
        '"007","2024-01-20T18:00:00Z",40.2,2',
    ]


def test_unscored_customers_who_never_qualified_are_told_apart_from_lapsed_ones(tables):
    """Of the customers left unscored, those without any qualifying activity before T are not
    lapsed buyers (a shop log's browsers read "churned already"): counted apart, and said so."""
    from reporting.report_html import not_scored_note, run_notes

    short = ChurnDefinition(mode="non_contractual", horizon_days=30, lookback_days=10)
    # leaves_later's last event is 2024-02-01, before the 10 days; left_at_t has none at all
    assert lapsed_count(tables, "2024-03-01", short) == 2
    assert never_active_count(tables, "2024-03-01", short) == 1
    only_login = ChurnDefinition(
        mode="non_contractual", horizon_days=30, lookback_days=30, qualifying_events=("login",)
    )
    assert never_active_count(tables, "2024-03-01", only_login) == 2  # reports are no logins
    assert never_active_count(tables, "2024-03-01", ChurnDefinition(horizon_days=30)) == 0
    summary = {"customers_lapsed": 2, "customers_never_active": 1}
    assert not_scored_note(summary, short, "2024-03-01") == (
        "2 customers without qualifying activity in the 10 days before 2024-03-01 (the model's "
        "lookback): 1 had some before, churned already under the churn definition; 1 never had "
        "any in the data, not buyers yet"
    )
    assert not_scored_note(
        {"customers_lapsed": 2, "customers_never_active": 2}, only_login, "2024-03-01"
    ) == (
        "2 customers without 'login' activity in the 30 days before 2024-03-01 (the model's "
        "lookback): 2 never had any in the data, not buyers yet"
    )
    # who signed up before the export's first record may have bought before it
    early = {"customers_never_active_before_history": 1, "history_start": "2024-01-01"}
    assert not_scored_note(
        {"customers_lapsed": 2, "customers_never_active": 2, **early}, only_login, "2024-03-01"
    ).endswith(
        "2 never had any in the data, not buyers yet (1 of them signed up before its first "
        "record on 2024-01-01: a purchase of theirs before that is not in the export)"
    )
    # the export's first record is 2024-02-01; both never-login customers signed up in January
    assert tables.history_start() == pd.Timestamp("2024-02-01")
    assert never_active_signed_up_before_history(tables, "2024-03-01", only_login) == 2
    late = make_tables(
        [{**c, "signup_at": "2024-02-10"} for c in CUSTOMERS if c["customer_id"] != "new"],
        [a for a in ACTIVITY if a["customer_id"] != "new"],
    )
    assert never_active_count(late, "2024-03-01", only_login) == 2
    assert never_active_signed_up_before_history(late, "2024-03-01", only_login) == 0
    assert never_active_signed_up_before_history(tables, "2024-03-01", short.__class__()) == 0
    assert run_notes({"customers_lapsed": 2, "customers_never_active": 0}) == [
        "Not scored: 2 customers without qualifying activity in the model's lookback window: "
        "2 had some before, churned already under the churn definition."
    ]
    assert not_scored_note({"customers_lapsed": 0, "customers_never_active": 0}) is None


def test_label_needs_the_whole_horizon_in_the_data(tables):
    with pytest.raises(
        ValueError,
        match=r"needs churn observed until 2024-05-30.*the data ends at 2024-05-01.*"
        r"use observation dates up to 2024-04-01",
    ):
        build_labels(tables, "2024-04-30", ChurnDefinition(horizon_days=30))


def test_observation_dates_and_durations():
    dates = observation_dates("2024-01-01", "2024-03-01", 30)
    assert [d.date().isoformat() for d in dates] == ["2024-01-01", "2024-01-31", "2024-03-01"]
    assert parse_days("30d") == 30 and parse_days("2w") == 14 and parse_days("7") == 7
    with pytest.raises(ValueError, match="not a duration"):
        parse_days("monthly")
    with pytest.raises(ValueError, match="before --from"):
        observation_dates("2024-03-01", "2024-01-01", 30)


def test_training_set_has_one_row_per_customer_and_date(tables):
    frame, config = build_training_set(tables, ["2024-02-15", "2024-03-01"], FeatureConfig())
    assert frame.groupby("as_of")["customer_id"].apply(sorted).to_dict() == {
        pd.Timestamp("2024-02-15"): ["leaves", "leaves_later", "left_at_t", "stays"],
        pd.Timestamp("2024-03-01"): ["leaves", "leaves_later", "left_at_t", "stays"],
    }
    feb = frame[frame["as_of"] == "2024-02-15"].set_index("customer_id")["churned"]
    mar = frame[frame["as_of"] == "2024-03-01"].set_index("customer_id")["churned"]
    assert mar.to_dict() == {"stays": 0, "leaves": 1, "left_at_t": 1, "leaves_later": 0}
    assert feb.to_dict() == {"stays": 0, "leaves": 1, "left_at_t": 1, "leaves_later": 0}
    assert config.event_types == ("login", "report")
    assert frame["churned"].dtype == "int8"


def test_written_training_set_equals_the_in_memory_one(tables, tmp_path):
    dates = ["2024-02-15", "2024-03-01"]
    rows, _ = write_training_set(tables, dates, tmp_path / "train.parquet")
    frame, _ = build_training_set(tables, dates)
    written = pd.read_parquet(tmp_path / "train.parquet")
    assert rows == len(frame)
    pd.testing.assert_frame_equal(written, frame, check_dtype=False)


def test_a_failed_training_set_leaves_the_previous_file_whole(tables, tmp_path):
    out = tmp_path / "train.parquet"
    write_training_set(tables, ["2024-02-15"], out)
    before = out.read_bytes()
    with pytest.raises(ValueError, match="needs churn observed until"):
        write_training_set(tables, ["2024-03-01", "2024-12-01"], out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.parquet"]


def test_a_service_ended_without_churn_is_no_customer_from_then_on_and_no_churner():
    """customers.ended_at: a dormant prepaid SIM deactivated by the operator, an account
    merged into another. From its end on the customer is neither scored nor a training row;
    an end inside the label window is not churn (churn is what churned_at says)."""
    tables = make_tables(
        [
            {"customer_id": "ended_before", "signup_at": "2024-01-01", "ended_at": "2024-02-20"},
            {"customer_id": "ended_at_t", "signup_at": "2024-01-01", "ended_at": "2024-03-01"},
            {"customer_id": "ends_in_window", "signup_at": "2024-01-01", "ended_at": "2024-03-15"},
            {"customer_id": "churns", "signup_at": "2024-01-01", "churned_at": "2024-03-10"},
            {"customer_id": "anchor", "signup_at": "2024-01-01", "churned_at": "2024-06-01"},
        ]
    )
    churn = ChurnDefinition(horizon_days=30)
    labels = build_labels(tables, "2024-03-01", churn).set_index("customer_id")["churned"]
    assert labels.to_dict() == {"ended_at_t": 0, "ends_in_window": 0, "churns": 1, "anchor": 0}
    features = build_features(tables, "2024-03-01", FeatureConfig().with_churn(mode="contractual"))
    assert "ended_before" not in set(features["customer_id"])
    assert "ended_at" not in features.columns  # a role of its own, never a feature or segment
    with pytest.raises(ValueError, match="customer_attributes cannot hold"):
        FeatureConfig(customer_attributes=("ended_at",))
