"""An Excel workbook as a source (CRMs export reports as .xlsx): a sheet by name, each column
with its cells' type, mixed columns as text for the mapping to type, errors named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import ContractError
from ingest.importer import run_import
from ingest.mapping import MappingError, load_mapping
from ingest.sources import SourceError
from tests.test_import_errors import ACTIVITY

MAPPING = (
    """
[customers]
source = { path = "crm.xlsx", sheet = "Customers" }
[customers.columns]
customer_id = "Account Number"
signup_at = { column = "Created", dayfirst = true }
mrr = { column = "MRR", type = "number" }
"""
    + ACTIVITY
)


def _workbook(tmp_path: Path, created: list, mapping: str = MAPPING) -> Path:
    customers = pd.DataFrame(
        {"Account Number": ["000123", "000124"], "Created": created, "MRR": [49.9, 99]}
    )
    with pd.ExcelWriter(tmp_path / "crm.xlsx") as book:
        pd.DataFrame({"exported by": ["CRM"]}).to_excel(book, sheet_name="About", index=False)
        customers.to_excel(book, sheet_name="Customers", index=False)
    (tmp_path / "events.csv").write_text("user,ts,name\n000123,2024-03-01T10:00:00Z,login\n")
    path = tmp_path / "mapping.toml"
    path.write_text(mapping)
    return path


def test_a_sheet_keeps_its_dates_numbers_and_text_ids(tmp_path):
    path = _workbook(tmp_path, [pd.Timestamp("2024-02-03"), pd.Timestamp("2024-01-15")])
    tables, report = run_import(load_mapping(path), tmp_path)
    customers = tables.customers.set_index("customer_id")
    assert list(customers.index) == ["000123", "000124"]
    assert customers["signup_at"].tolist() == [
        pd.Timestamp("2024-02-03"),
        pd.Timestamp("2024-01-15"),
    ]
    assert customers["mrr"].tolist() == pytest.approx([49.9, 99.0])
    assert report.sources[0].rows_read == 2


def test_a_column_of_date_cells_and_typed_text_is_refused_with_the_row(tmp_path):
    # One date typed by hand as text beside real date cells: the column is read as text, and
    # text in two formats is not guessed at; the row is named for someone to fix the cell.
    path = _workbook(tmp_path, [pd.Timestamp("2024-02-03"), "15.01.2024"])
    with pytest.raises(ContractError) as err:
        run_import(load_mapping(path), tmp_path)
    text = str(err.value)
    assert "source 'crm.xlsx'" in text and "Created (as signup_at)" in text
    assert "'15.01.2024'" in text and "'000124'" in text


def test_a_missing_sheet_and_a_sheet_on_a_csv_are_named(tmp_path):
    path = _workbook(
        tmp_path, [pd.Timestamp("2024-02-03")] * 2, MAPPING.replace('"Customers"', '"Accounts"')
    )
    with pytest.raises(SourceError, match=r"crm\.xlsx.*Accounts"):
        run_import(load_mapping(path), tmp_path)
    on_csv = MAPPING.replace(
        'source = "events.csv"', 'source = { path = "events.csv", sheet = "x" }'
    )
    with pytest.raises(MappingError, match="'sheet' is for Excel"):
        load_mapping(_workbook(tmp_path, [pd.Timestamp("2024-02-03")] * 2, on_csv))
