"""The data contract: bad input gets an error naming table, column and an example row."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import ContractError, validate_table, validate_tables
from features.io import load_tables, write_tables


def customers(**extra) -> pd.DataFrame:
    df = pd.DataFrame(
        {"customer_id": ["a", "b"], "signup_at": ["2024-01-01", "2024-02-01"], "plan": ["x", "y"]}
    )
    return df.assign(**extra)


def activity(**extra) -> pd.DataFrame:
    df = pd.DataFrame(
        {"customer_id": ["a", "b"], "at": ["2024-03-01", "2024-03-02"], "event": ["login", "login"]}
    )
    return df.assign(**extra)


def test_valid_tables_are_parsed_with_timestamps_and_text_ids():
    tables = validate_tables(customers(customer_id=[1, 2]), activity(customer_id=[1, 2]))
    assert tables.customers["customer_id"].tolist() == ["1", "2"]
    assert str(tables.activity["at"].dtype) == "datetime64[ns]"
    assert tables.feedback.empty and tables.revenue.empty
    assert tables.data_end() == pd.Timestamp("2024-03-02")


def test_missing_column_names_table_and_column():
    with pytest.raises(
        ContractError, match="table 'activity', column 'event': required column is missing"
    ):
        validate_tables(customers(), activity().drop(columns="event"))


def test_unparseable_timestamp_names_the_row():
    with pytest.raises(ContractError, match=r"column 'at'.*not ISO 8601.*'at': 'not a date'"):
        validate_tables(customers(), activity(at=["2024-03-01", "not a date"]))


def test_duplicate_customer_id_is_rejected():
    with pytest.raises(
        ContractError, match="table 'customers', column 'customer_id': duplicate customer id"
    ):
        validate_table("customers", customers(customer_id=["a", "a"]))


def test_event_for_unknown_customer_is_rejected():
    with pytest.raises(
        ContractError, match="table 'activity', column 'customer_id': 1 rows refer to customers"
    ):
        validate_tables(customers(), activity(customer_id=["a", "zz"]))


def test_negative_activity_value_is_rejected():
    with pytest.raises(ContractError, match=r"column 'value'.*example row"):
        validate_tables(customers(), activity(value=[1.0, -3.0]))


def test_negative_amount_is_allowed_only_for_refunds():
    rev = pd.DataFrame(
        {"customer_id": ["a"], "at": ["2024-03-01"], "amount": [-5.0], "kind": ["invoice"]}
    )
    with pytest.raises(ContractError, match="table 'revenue', column 'amount': negative amounts"):
        validate_tables(customers(), activity(), revenue=rev)
    ok = validate_tables(customers(), activity(), revenue=rev.assign(kind="refund"))
    assert ok.revenue["amount"].tolist() == [-5.0]


def test_wrong_type_is_named():
    rev = pd.DataFrame({"customer_id": ["a"], "at": ["2024-03-01"], "amount": ["lots"]})
    with pytest.raises(ContractError, match="table 'revenue', column 'amount'"):
        validate_tables(customers(), activity(), revenue=rev)


def test_scores_out_of_range_per_kind():
    fb = pd.DataFrame(
        {"customer_id": ["a"], "at": ["2024-03-01"], "kind": ["csat"], "score": [9.0]}
    )
    with pytest.raises(ContractError, match="csat and review scores must be 1-5"):
        validate_tables(customers(), activity(), feedback=fb)
    with pytest.raises(ContractError, match="column 'score'"):
        validate_tables(customers(), activity(), feedback=fb.assign(kind="nps", score=11.0))
    with pytest.raises(ContractError, match="column 'kind'"):
        validate_tables(customers(), activity(), feedback=fb.assign(kind="tweet"))


def test_closed_ticket_without_resolution_time_is_rejected():
    fb = pd.DataFrame(
        {
            "customer_id": ["a"],
            "at": ["2024-03-01"],
            "kind": ["ticket"],
            "status": ["closed"],
            "resolved_at": [None],
        }
    )
    with pytest.raises(ContractError, match="closed tickets need resolved_at"):
        validate_tables(customers(), activity(), feedback=fb)


def test_churn_before_signup_is_rejected():
    """... with the likely causes: a gym's members who revoked a contract before its start
    date (122 of them) had been told only "churned before signing up"."""
    with pytest.raises(ContractError, match="churned before signing up") as err:
        validate_table("customers", customers(churned_at=["2023-01-01", None]))
    assert "a contract revoked before its start date" in str(err.value)


def test_an_end_of_service_is_a_timestamp_and_not_before_signup():
    typed = validate_table("customers", customers(ended_at=[None, "2024-05-01"]))
    assert str(typed["ended_at"].dtype) == "datetime64[ns]"
    with pytest.raises(ContractError, match="'ended_at': ended before signing up") as err:
        validate_table("customers", customers(ended_at=["2023-01-01", None]))
    assert "example row" in str(err.value)
    with pytest.raises(ContractError, match="ended_at"):
        validate_table("customers", customers(ended_at=["soon", None]))


def test_missing_customer_id_is_counted():
    with pytest.raises(ContractError, match="1 rows have no value"):
        validate_tables(customers(), activity(customer_id=["a", None]))


def test_load_tables_round_trip_and_missing_table(tmp_path):
    tables = validate_tables(customers(), activity())
    write_tables(tables, tmp_path / "data")
    loaded = load_tables(tmp_path / "data")
    assert loaded.customers["customer_id"].tolist() == ["a", "b"]
    assert loaded.activity["event"].astype(str).tolist() == ["login", "login"]
    (tmp_path / "data" / "activity.parquet").unlink()
    with pytest.raises(ContractError, match="table 'activity': table is missing"):
        load_tables(tmp_path / "data")


def test_csv_tables_load_like_parquet(tmp_path):
    customers().to_csv(tmp_path / "customers.csv", index=False)
    activity().to_csv(tmp_path / "activity.csv", index=False)
    loaded = load_tables(tmp_path)
    assert len(loaded.activity) == 2


def test_failed_write_leaves_previous_folder_whole(tmp_path, monkeypatch):
    tables = validate_tables(customers(), activity())
    write_tables(tables, tmp_path / "data")
    before = sorted(p.name for p in (tmp_path / "data").iterdir())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_tables(tables, tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_scheduled_cancellations_do_not_move_the_data_end():
    """Chargebee's non_renewing subscriptions carry their term's end as cancelled_at: a churn
    date months after the export's last record. It had put the data's end ten months ahead (and
    the risk bands on that date's customers); now only observed ends count, a day's grace."""
    from features.contract import scheduled_end_warning

    people = customers(
        churned_at=[pd.NaT, "2025-07-18"],  # b: scheduled, ten months after the export
    )
    tables = validate_tables(people, activity())
    assert tables.data_end() == pd.Timestamp("2024-03-02")
    assert tables.next_run_date() == pd.Timestamp("2024-03-03")
    assert list(tables.scheduled_ends()) == ["churned_at"]
    words = scheduled_end_warning(tables.customers, tables.records_end())
    assert words.startswith("customers: 1 churned_at from 2025-07-18 to 2025-07-18 lie after")
    assert "(2024-03-02)" in words and "'customer_id': 'b'" in words
    # a cancellation processed within a day of the last record is observed, and ends the data
    late = validate_tables(customers(churned_at=[pd.NaT, "2024-03-02 20:00"]), activity())
    assert late.data_end() == pd.Timestamp("2024-03-02 20:00")
    assert not late.scheduled_ends()
    assert scheduled_end_warning(late.customers, late.records_end()) is None
    # a customers table alone (signups and cancellations): its dates are all there is
    alone = validate_tables(customers(churned_at=["2024-05-01", pd.NaT]), activity().iloc[:0])
    assert alone.data_end() == pd.Timestamp("2024-05-01")
    assert not alone.scheduled_ends()
