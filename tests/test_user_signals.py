"""Active users per account (activity.user_id) and the share of seats in use: worked by hand,
left out where the data names no user, errors that name the table and column, the words of
the reasons, and the import of user ids as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from features.contract import ContractError, validate_tables
from features.dictionary import describe, reason
from features.io import load_tables, write_tables
from features.signals import build_features, feature_names, resolve_config
from ingest.importer import run_import
from ingest.mapping import load_mapping

T = "2024-04-01"


def account_tables(user_ids: bool = True, seats: object = (10.0, 4.0, None)):
    customers = pd.DataFrame(
        {
            "customer_id": ["001", "002", "003"],
            "signup_at": pd.to_datetime(["2024-01-01"] * 3),
            "seats": list(seats),
        }
    )
    activity = pd.DataFrame(
        {
            "customer_id": ["001", "001", "001", "001", "002", "002", "003", "003"],
            "at": pd.to_datetime(
                [
                    "2024-03-01",  # before the trend window: u1 in the 30 days before
                    "2024-03-20",
                    "2024-03-25",
                    "2024-04-01",  # at T: the label's side, not a feature's
                    "2024-02-10",
                    "2024-03-28",
                    "2024-03-29",
                    "2024-03-30",
                ]
            ),
            "event": "login",
            "user_id": ["u1", "u2", "u1", "u3", "u1", None, "u1", "u1"],
        }
    )
    if not user_ids:
        activity = activity.drop(columns="user_id")
    return validate_tables(customers=customers, activity=activity)


def test_active_users_trend_and_seats_in_use_worked_by_hand():
    frame = build_features(account_tables(), T, FeatureConfig(seats_attribute="seats"))
    f = frame.set_index("customer_id")
    # 001: u1 on Mar 1 and 25, u2 on Mar 20 (u3 at T does not count).
    assert f.loc["001", "active_users_7d"] == 1 and f.loc["001", "active_users_30d"] == 2
    # 2 users in the last 30 days against 1 (u1 on Mar 1) in the 30 before: (2 - 1) / 3.
    assert f.loc["001", "active_users_trend_30d"] == pytest.approx(1 / 3)
    assert f.loc["001", "seat_utilization_30d"] == pytest.approx(2 / 10)
    # 002: an event without a user in the window is no active user; u1 in February.
    assert f.loc["002", "active_users_30d"] == 0 and f.loc["002", "active_users_90d"] == 1
    assert (
        f.loc["002", "active_users_trend_30d"] == -1 and f.loc["002", "seat_utilization_30d"] == 0
    )
    # 003: u1 of account 001 also acts for 003 (counted in each); seats unknown: NaN, not 0.
    assert f.loc["003", "active_users_30d"] == 1 and np.isnan(f.loc["003", "seat_utilization_30d"])
    assert list(frame.columns[1:]) == feature_names(
        resolve_config(account_tables(), FeatureConfig(seats_attribute="seats"), until=T)
    )


def test_no_user_column_or_no_user_before_t_gives_no_user_features():
    plain = build_features(account_tables(user_ids=False), T)
    assert not any("users" in c for c in plain.columns)
    tables = account_tables()
    tables.activity["user_id"] = None
    resolved = resolve_config(tables, FeatureConfig(), until=T)
    assert resolved.user_signals is False
    # Users named only from T on are not known at T.
    late = account_tables()
    late.activity.loc[late.activity["at"] < pd.Timestamp(T), "user_id"] = None
    assert resolve_config(late, FeatureConfig(), until=T).user_signals is False


def test_a_model_with_users_scored_on_data_without_them_is_an_error():
    resolved = resolve_config(account_tables(), FeatureConfig(), until=T)
    assert resolved.user_signals is True
    with pytest.raises(ContractError) as err:
        build_features(account_tables(user_ids=False), T, resolved)
    assert err.value.table == "activity" and err.value.column == "user_id"


def test_seats_errors_name_the_table_and_column():
    with pytest.raises(ContractError, match="user_id") as err:
        build_features(account_tables(user_ids=False), T, FeatureConfig(seats_attribute="seats"))
    assert err.value.table == "activity"
    with pytest.raises(ValueError, match=r"'licenses'.*is not a column"):
        build_features(account_tables(), T, FeatureConfig(seats_attribute="licenses"))
    text = account_tables(seats=("10", "4", None))
    with pytest.raises(ValueError, match=r"column 'seats'.*numbers.*'10'"):
        build_features(text, T, FeatureConfig(seats_attribute="seats"))
    with pytest.raises(ValueError, match="seats_attribute"):
        FeatureConfig(seats_attribute="signup_at")


def test_reasons_say_users_and_seats_with_counts():
    assert reason("active_users_30d", 3.0) == "3 active users in the last 30 days"
    assert reason("active_users_7d", 0.0) == "No active user in the last 7 days"
    context = {"active_users_30d": 3.0}
    assert reason("seat_utilization_30d", 0.15, context) == (
        "3 of 20 seats in use in the last 30 days (15%)"
    )
    assert reason("seat_utilization_30d", 0.0, context) == "No seat in use in the last 30 days"
    assert reason("active_users_trend_30d", -0.5).startswith("Active users down")
    assert describe("seat_utilization_30d").missing == "Seats unknown"
    assert describe("seat_utilization_30d").unit == "share of seats"


MAPPING = """
[features]
customer_attributes = ["seats"]
seats_attribute = "seats"

[features.churn]
mode = "contractual"
horizon_days = 30

[customers]
source = "accounts.csv"

[customers.columns]
customer_id = "account"
signup_at = "created"
seats = { column = "seats", type = "number" }

[activity]
source = "tracks.csv"

[activity.columns]
customer_id = "account"
at = "timestamp"
event = "event"
user_id = "userId"
"""


def test_user_ids_import_as_text_and_train_the_user_features(tmp_path: Path):
    (tmp_path / "accounts.csv").write_text(
        "account,created,seats\n0001,2024-01-01,5\n0002,2024-01-01,3\n"
    )
    (tmp_path / "tracks.csv").write_text(
        "account,timestamp,event,userId\n"
        "0001,2024-03-20T10:00:00Z,login,007\n"
        "0001,2024-03-21T10:00:00Z,login,7\n"
        "0002,2024-03-22T10:00:00Z,login,\n"
    )
    (tmp_path / "mapping.toml").write_text(MAPPING)
    tables, _ = run_import(load_mapping(tmp_path / "mapping.toml"), tmp_path)
    assert tables.activity["user_id"].astype("object").tolist()[:2] == ["007", "7"]
    write_tables(tables, tmp_path / "data")
    read = load_tables(tmp_path / "data")
    config = FeatureConfig(customer_attributes=("seats",), seats_attribute="seats")
    f = build_features(read, T, config).set_index("customer_id")
    # '007' and '7' are two users (ids are text); 0002's row names no user.
    assert f.loc["0001", "active_users_30d"] == 2 and f.loc["0001", "seat_utilization_30d"] == 0.4
    assert f.loc["0002", "active_users_30d"] == 0
