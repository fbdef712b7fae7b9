"""Online Retail II (UCI 502), as published: a workbook with a sheet per year (the years meet in
December 2010; here the sheets share its first days), with columns Invoice, Price and Customer
ID, or the CSV made from it (ISO dates, ids written 13085.0). `churn import online-retail` reads
both; rows the sheets share count once. Built from the real Online Retail lines in
../shared/data."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.cli import app
from features.contract import ContractError
from features.io import load_tables
from ingest.online_retail import import_online_retail, read_online_retail
from tests.shared_data import ONLINE_RETAIL, needs_online_retail

RAW = ONLINE_RETAIL
pytestmark = needs_online_retail

II_NAMES = {"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"}


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    """The lines of 60 customers (and some without one) up to February 2011, named as in II."""
    raw = pd.read_parquet(RAW)
    raw = raw[raw["InvoiceDate"] < "2011-03-01"]
    some = raw["CustomerID"].dropna().drop_duplicates().sample(60, random_state=0)
    keep = raw["CustomerID"].isin(some) | (raw["CustomerID"].isna() & (raw.index % 50 == 0))
    return raw[keep].rename(columns=II_NAMES).reset_index(drop=True)


def test_the_sheets_of_the_workbook_share_days_that_count_once(tmp_path, lines):
    first = lines[lines["InvoiceDate"] < "2010-12-10"]  # "Year 2009-2010" runs to 9 December
    second = lines[lines["InvoiceDate"] >= "2010-12-01"]  # "Year 2010-2011" starts on the 1st
    shared = len(first) + len(second) - len(lines)
    assert shared > 100
    shared_attributed = (
        shared
        - int(first["Customer ID"].isna().sum())
        - int(second["Customer ID"].isna().sum())
        + int(lines["Customer ID"].isna().sum())
    )  # lines without a customer are dropped first
    book = tmp_path / "online_retail_II.xlsx"
    with pd.ExcelWriter(book) as writer:
        first.to_excel(writer, sheet_name="Year 2009-2010", index=False)
        second.to_excel(writer, sheet_name="Year 2010-2011", index=False)
    sheets = read_online_retail(book)
    assert list(sheets) == ["Year 2009-2010", "Year 2010-2011"]
    tables, report = import_online_retail(sheets)
    once, _ = import_online_retail(lines)  # every line once, in one frame
    for name in ("customers", "activity", "revenue"):
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(once, name))
    assert report.repeated_rows == shared_attributed
    assert f"repeating a row of an earlier sheet: {shared_attributed:,}" in report.lines()[2]


def test_the_csv_with_iso_dates_and_float_written_ids_imports(tmp_path, lines):
    csv = tmp_path / "online_retail_II.csv"
    lines.to_csv(csv, index=False, date_format="%Y-%m-%d %H:%M:%S")  # Customer ID: 13085.0
    result = CliRunner().invoke(
        app, ["import", "online-retail", str(csv), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    tables = load_tables(tmp_path / "out")
    once, _ = import_online_retail(lines)
    assert tables.activity["at"].tolist() == once.activity["at"].tolist()
    assert tables.revenue["amount"].sum() == pytest.approx(once.revenue["amount"].sum())
    # ids as written: the CSV wrote them as 13085.0
    assert tables.customers["customer_id"].str.endswith(".0").all()


def test_dates_of_another_form_in_an_iso_file_are_refused_with_the_row(tmp_path, lines):
    text = lines.assign(InvoiceDate=lines["InvoiceDate"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    text.loc[5, "InvoiceDate"] = "12/1/2010 8:26"
    with pytest.raises(ContractError, match=r"InvoiceDate.*12/1/2010 8:26"):
        import_online_retail(text.astype({"Quantity": "str", "Price": "str"}))
