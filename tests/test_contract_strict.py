"""Inputs shaped like real exports that used to load silently or fail unreadably: each is now a
ContractError naming the table, the column and an example row, with a hint where one is obvious."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import ContractError, validate_tables
from features.io import load_tables
from features.types import TimestampSpec, parse_numbers, parse_timestamps


def write_folder(root: Path, customers: str, activity: str, **more: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "customers.csv").write_text(customers)
    (root / "activity.csv").write_text(activity)
    for name, text in more.items():
        (root / f"{name}.csv").write_text(text)
    return root


CUSTOMERS = "customer_id,signup_at,plan\n000123,2024-01-05,basic\n000124,2024-02-01,pro\n"
ACTIVITY_12 = "customer_id,at,event\n1,2024-03-01T10:00:00Z,login\n2,2024-03-02T11:00:00Z,login\n"
ACTIVITY = (
    "customer_id,at,event\n000123,2024-03-01T10:00:00Z,login\n000124,2024-03-02T11:00:00Z,login\n"
)


def test_ids_keep_their_leading_zeros_from_csv(tmp_path):
    tables = load_tables(write_folder(tmp_path / "d", CUSTOMERS, ACTIVITY))
    assert tables.customers["customer_id"].tolist() == ["000123", "000124"]
    assert set(tables.activity["customer_id"].astype(str)) == {"000123", "000124"}
    assert tables.activity["at"].tolist() == [
        pd.Timestamp("2024-03-01 10:00"),
        pd.Timestamp("2024-03-02 11:00"),
    ]


def test_numeric_attributes_stay_numbers_and_codes_stay_text(tmp_path):
    customers = "customer_id,signup_at,mrr,zip\n1,2024-01-05,49.5,01234\n2,2024-02-01,99,20095\n"
    tables = load_tables(write_folder(tmp_path / "d", customers, ACTIVITY_12))
    assert tables.customers["mrr"].tolist() == [49.5, 99.0]
    assert tables.customers["zip"].tolist() == ["01234", "20095"]


def test_unix_seconds_in_a_timestamp_column_are_refused_with_the_unit_to_declare():
    revenue = pd.DataFrame({"customer_id": ["a"], "at": [1_717_200_000], "amount": [12.0]})
    with pytest.raises(ContractError) as err:
        validate_tables(customers(), activity(), revenue=revenue)
    text = str(err.value)
    assert "table 'revenue', column 'at': numbers in a timestamp column" in text
    assert "'at': 1717200000" in text and 'unit = "s"' in text


def test_day_first_dates_are_refused_not_read_two_ways(tmp_path):
    customers = "customer_id,signup_at\n1,03/02/2024\n2,25/02/2024\n"
    with pytest.raises(ContractError) as err:
        load_tables(write_folder(tmp_path / "d", customers, ACTIVITY_12))
    text = str(err.value)
    assert "table 'customers', column 'signup_at': text that is not ISO 8601" in text
    assert "(2 rows)" in text
    assert "dayfirst = true" in text and "'signup_at': '03/02/2024'" in text


def test_ambiguous_day_month_order_names_both_ways():
    values = pd.Series(["03/02/2024", "04/05/2024"])
    _, problems = parse_timestamps(values, "created")
    assert "cannot be told" in problems[0].hint
    parsed, problems = parse_timestamps(values, "created", TimestampSpec(dayfirst=True))
    assert not problems and parsed.tolist() == [
        pd.Timestamp("2024-02-03"),
        pd.Timestamp("2024-05-04"),
    ]


def test_day_first_dates_written_two_ways_name_the_row_and_the_way_out():
    # A German CRM: a time on some rows only. One format per column, never a guess per row.
    values = pd.Series(["05.01.2024", "06.01.2024 13:45", "07.01.2024"])
    parsed, problems = parse_timestamps(values, "created", TimestampSpec(dayfirst=True))
    assert parsed.isna().all()
    (problem,) = problems
    assert problem.rows == 1 and problem.examples == [1]
    assert "from the first value ('05.01.2024')" in problem.hint and "format =" in problem.hint


def test_mixed_time_zones_are_refused():
    act = activity(at=["2024-03-01T10:00:00Z", "2024-03-01 10:00:00"])
    with pytest.raises(ContractError, match=r"column 'at': mixes times with a time zone"):
        validate_tables(customers(), act)


def test_an_unreadable_offset_is_named_as_such():
    """git wrote "+518:00" for one commit of 73,070: the row has a zone, an unreadable one; it
    was reported as a time without a zone beside 73,068 with one."""
    values = pd.Series(["2011-08-29T06:50:23+02:00", "2011-08-29T06:50:23+518:00"])
    parsed, problems = parse_timestamps(values, "author_date", TimestampSpec())
    assert parsed.isna().all()
    (problem,) = problems
    assert "time-zone offset that cannot be read (1 row)" in problem.problem
    assert problem.examples == [1] and "drop rule" in problem.hint


def test_explicit_offsets_are_converted_to_utc():
    act = activity(at=["2024-03-01T10:00:00+02:00", "2024-03-01T10:00:00Z"])
    tables = validate_tables(customers(), act)
    assert tables.activity["at"].tolist() == [
        pd.Timestamp("2024-03-01 08:00"),
        pd.Timestamp("2024-03-01 10:00"),
    ]


def test_a_date_in_the_year_2500_is_refused():
    with pytest.raises(ContractError, match=r"column 'at': times in the future \(1 row\)"):
        validate_tables(customers(), activity(at=["2024-03-01", "2500-01-01"]))


def test_times_that_lie_ahead_by_nature_may_be_in_the_future_but_not_placeholders():
    """A live export's subscriptions are paid into next month (period_end) and some are set to
    end at their term (churned_at): both lie after the export's day, and the load had refused
    them as "times in the future". Events may not; nor may a "no end" placeholder."""
    now = pd.Timestamp.now().normalize()
    ahead = str((now + pd.Timedelta(days=40)).date())
    cust = customers().assign(churned_at=[ahead, None])
    revenue = pd.DataFrame(
        {"customer_id": ["a"], "at": ["2024-03-01"], "amount": [10.0], "period_end": [ahead]}
    )
    tables = validate_tables(cust, activity(), revenue=revenue)
    assert tables.revenue["period_end"].iloc[0] == pd.Timestamp(ahead)
    assert tables.customers["churned_at"].iloc[0] == pd.Timestamp(ahead)
    with pytest.raises(ContractError, match=r"'period_end': times more than 10 years ahead"):
        validate_tables(cust, activity(), revenue=revenue.assign(period_end=["9999-12-31"]))
    with pytest.raises(ContractError, match=r"column 'signup_at': times in the future"):
        validate_tables(cust.assign(signup_at=[ahead, "2024-02-01"]), activity())


@pytest.mark.parametrize("amount", [np.inf, "inf"])
def test_infinite_amounts_are_refused(amount):
    revenue = pd.DataFrame({"customer_id": ["a"], "at": ["2024-03-01"], "amount": [amount]})
    with pytest.raises(ContractError, match=r"table 'revenue', column 'amount'"):
        validate_tables(customers(), activity(), revenue=revenue)


def test_amounts_as_text_with_commas_are_refused_not_coerced():
    _, problems = parse_numbers(pd.Series(["12,50", "3.00"]), "amount")
    assert problems[0].rows == 1 and problems[0].examples == [0]
    assert "text that is not a number" in problems[0].problem


@pytest.mark.parametrize(
    ("decimal", "thousands", "text", "expected"),
    [
        (",", ".", ["1.234,56", "49,90", "-3", "1.234.567"], [1234.56, 49.9, -3.0, 1234567.0]),
        (",", None, ["1234,56", ",5"], [1234.56, 0.5]),
        (".", ",", ["1,234.56", "12"], [1234.56, 12.0]),
        (",", " ", ["1 234,5", "1\u00a0234,5", "1\u202f234"], [1234.5, 1234.5, 1234.0]),
        (".", "'", ["1'234.50"], [1234.5]),
    ],
)
def test_numbers_written_with_declared_marks_are_read(decimal, thousands, text, expected):
    values, problems = parse_numbers(
        pd.Series(text), "amount", decimal=decimal, thousands=thousands
    )
    assert problems == [] and values.tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("decimal", "thousands", "text"),
    [
        (",", ".", "1,234.56"),  # the other convention: refused, never read as 1.23456
        (",", ".", "1.23"),  # not groups of three: a dot decimal, not a thousands mark
        (".", None, "12,50"),
        (",", ".", "49,90 €"),
    ],
)
def test_numbers_that_do_not_follow_the_declared_marks_are_refused(decimal, thousands, text):
    _, problems = parse_numbers(
        pd.Series(["1", text]), "amount", decimal=decimal, thousands=thousands
    )
    assert problems[0].rows == 1 and problems[0].examples == [1]
    declared = (decimal, thousands) != (".", None)
    assert ("is declared with" in problems[0].hint) is declared  # else: how to declare them
    assert "decimal = " in problems[0].hint


def test_a_thousands_mark_left_undeclared_is_named():
    """A German bank's 2.093,97 under decimal = "," alone: the hint said "write its numbers
    that way" of numbers written that way; it names the missing declaration."""
    _, problems = parse_numbers(pd.Series(["5,90", "2.093,97"]), "Betrag", decimal=",")
    assert problems[0].examples == [1]
    assert problems[0].hint == 'these numbers have a thousands mark: declare thousands = "." too'
    _, problems = parse_numbers(pd.Series(["2.093,97", "49,90 €"]), "Betrag", decimal=",")
    assert "is declared with" in problems[0].hint  # not every refused value has a mark


def test_an_empty_activity_table_loads_but_empty_customers_do_not(tmp_path):
    """A billing-only export has no events (tests/test_import_billing_only.py); a table that a
    caller needs rows in is still refused, and so is an empty customers table."""
    folder = write_folder(tmp_path / "d", CUSTOMERS, "customer_id,at,event\n")
    assert load_tables(folder).activity.empty
    with pytest.raises(ContractError, match=r"table 'activity'.*has no rows"):
        load_tables(folder, need_rows=("customers", "activity"))
    empty = write_folder(tmp_path / "e", "customer_id,signup_at\n", "customer_id,at,event\n")
    with pytest.raises(ContractError, match=r"table 'customers'.*has no rows"):
        load_tables(empty)


def test_parquet_and_csv_of_one_table_side_by_side_is_refused(tmp_path):
    folder = write_folder(tmp_path / "d", CUSTOMERS, ACTIVITY)
    pd.read_csv(folder / "customers.csv", dtype=str).to_parquet(folder / "customers.parquet")
    with pytest.raises(ContractError, match=r"table 'customers'.*stored twice"):
        load_tables(folder)


def test_a_zero_byte_file_is_named(tmp_path):
    folder = write_folder(tmp_path / "d", CUSTOMERS, "")
    with pytest.raises(ContractError, match=r"table 'activity'.*is empty \(0 bytes\)"):
        load_tables(folder)


def test_a_csv_saved_as_parquet_is_named(tmp_path):
    folder = write_folder(tmp_path / "d", CUSTOMERS, ACTIVITY)
    (folder / "activity.csv").rename(folder / "activity.parquet")
    with pytest.raises(ContractError, match=r"table 'activity'.*cannot be read as Parquet.*\.csv"):
        load_tables(folder)


def test_a_zendesk_status_gets_a_short_error_with_the_map_to_declare():
    n = 5000
    feedback = pd.DataFrame(
        {
            "customer_id": ["a"] * n,
            "at": ["2024-03-01"] * n,
            "kind": ["ticket"] * n,
            "status": (["solved", "pending", "open"] * n)[:n],
            "resolved_at": ["2024-03-02"] * n,
        }
    )
    with pytest.raises(ContractError) as err:
        validate_tables(customers(), activity(), feedback=feedback)
    text = str(err.value)
    assert len(text) < 1000
    assert "'solved' (1667 rows)" in text
    assert "map 'solved' to 'closed', 'pending' to 'open'" in text


def test_one_unknown_kind_is_counted_once():
    """A single value outside the contract is named with one count ("'payment' (3 rows) (3
    rows)" had said it twice) and the kind it probably means."""
    revenue = pd.DataFrame(
        {"customer_id": ["a"] * 3, "at": ["2024-03-01"] * 3, "amount": [1.0] * 3,
         "kind": ["payment"] * 3}
    )  # fmt: skip
    with pytest.raises(ContractError) as err:
        validate_tables(customers(), activity(), revenue=revenue)
    text = str(err.value)
    assert "values that are not kinds: 'payment' (3 rows);" in text
    assert "map 'payment' to 'invoice'" in text


def test_all_problems_of_a_table_come_in_one_error():
    act = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "at": ["2024-03-01", "01/03/2024"],
            "event": ["login", "login"],
            "value": ["1", "one"],
        }
    )
    with pytest.raises(ContractError) as err:
        validate_tables(customers(), act)
    text = str(err.value)
    assert text.startswith("table 'activity': 2 problems")
    assert "column 'at'" in text and "column 'value'" in text
    assert [p.column for p in err.value.problems] == ["at", "value"]


def test_naive_times_in_a_declared_zone_become_utc():
    parsed, problems = parse_timestamps(
        pd.Series(["2024-07-01 12:00"]), "at", TimestampSpec(timezone="Europe/Berlin")
    )
    assert not problems and parsed.tolist() == [pd.Timestamp("2024-07-01 10:00")]


def customers() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "b"], "signup_at": ["2024-01-01", "2024-02-01"]})


def activity(at: list[str] | None = None) -> pd.DataFrame:
    at = at or ["2024-03-01", "2024-03-02"]
    return pd.DataFrame(
        {"customer_id": ["a", "b"][: len(at)], "at": at, "event": ["login"] * len(at)}
    )


def test_data_without_any_dated_row_says_so_instead_of_a_max_error():
    from features.contract import ContractError, Tables, empty_table

    tables = Tables(
        customers=empty_table("customers"),
        activity=empty_table("activity"),
        feedback=empty_table("feedback"),
        revenue=empty_table("revenue"),
    )
    with pytest.raises(ContractError, match="no dated row in any table"):
        tables.data_end()
