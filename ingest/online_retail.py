"""Map the UCI Online Retail data (invoice lines of a UK gift shop) onto the contract.

Non-contractual: there is no churn date, a customer has churned when it stops buying.
- customers: CustomerID, first invoice as signup_at, the customer's most frequent Country.
- activity: one event per invoice: 'purchase' (value: items bought), 'cancellation' for
  invoices numbered C... (value: items cancelled), 'return' for other negative lines.
  Cancellations and returns are the data's only dissatisfaction signal.
- revenue: one row per invoice: kind 'order' with the positive line total, kind 'refund'
  with the (negative) total of cancelled and returned lines.
Rows without a CustomerID cannot be attributed and are dropped, with the count reported.

The mapping is examples/orders/mapping.toml (shipped as ingest/presets/orders.toml); this
module reads the raw file and holds the preset's settings as objects for the library's callers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.config import ChurnDefinition, FeatureConfig
from features.contract import ContractError, Tables
from ingest.importer import REPEATED_ROW, run_import
from ingest.mapping import Mapping, load_mapping
from ingest.report import ImportReport as MappingReport
from ingest.sources import csv_batches

RAW_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

ONLINE_RETAIL_CONFIG = FeatureConfig(
    windows=(7, 30, 90),
    customer_attributes=("country",),  # the customer's most frequent shipping country
    value_unit="items bought, cancelled or returned",  # activity.value: the invoice's items
    # No lookback: it comes from the data when the configuration is resolved (long enough for
    # the customers' typical gap between purchases: about 18 weeks over the first nine months)
    # and is recorded in the configuration that travels with the model.
    churn=ChurnDefinition(
        mode="non_contractual", horizon_days=90, lookback_days=None, qualifying_events=("purchase",)
    ),
)


# No training overrides but the model's name: the backtest derives the step between dates, the
# warm-up, the holdout and the folds from the span of the data and the horizon
# (training.pipeline, training.splits).
ONLINE_RETAIL_TRAINING: dict[str, object] = {"model_name": "churn-online-retail"}
ONLINE_RETAIL_CURRENCY = "GBP"  # UnitPrice is in pounds sterling


PRESET = Path(__file__).with_name("presets") / "orders.toml"
SOURCE_NAME = "lines"  # the mapping's name for the raw invoice lines
NO_CUSTOMER = "no CustomerID: the line cannot be attributed"  # the preset's drop reason


@dataclass(frozen=True)
class ImportReport:
    raw_rows: int
    dropped_without_customer: int
    repeated_rows: int  # rows of a later sheet that repeat a row of an earlier one
    customers: int
    invoices: int
    activity_rows: int
    revenue_rows: int

    def lines(self) -> list[str]:
        return [
            f"raw rows: {self.raw_rows:,}",
            f"dropped rows without a CustomerID: {self.dropped_without_customer:,}",
            *(
                [f"dropped rows repeating a row of an earlier sheet: {self.repeated_rows:,}"]
                if self.repeated_rows
                else []
            ),
            f"customers: {self.customers:,}",
            f"invoices with a customer: {self.invoices:,}",
            f"activity rows: {self.activity_rows:,}",
            f"revenue rows: {self.revenue_rows:,}",
        ]


# Online Retail II (UCI 502: the same shop, 2009-12-01 to 2011-12-09) names three columns
# differently; its rows are read under the names of the first data set.
ONLINE_RETAIL_II_NAMES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}


def read_online_retail(path: str | Path) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """Read the raw file (Parquet, CSV or Excel as published by UCI; Online Retail or Online
    Retail II). A CSV is read with every column as text: the mapping declares the types. A
    workbook of several sheets (Online Retail II: one per year) gives the sheets by name: they
    are imported as the files of one export, so the rows the sheets share count once."""
    path = Path(path)
    if path.is_dir():
        candidates = (
            sorted(path.glob("*.parquet"))
            + sorted(path.glob("*.csv"))
            + sorted(path.glob("*.xlsx"))
        )
        if not candidates:
            raise FileNotFoundError(f"no Online Retail file (.parquet, .csv, .xlsx) in '{path}'")
        path = candidates[0]
    if not path.exists():
        raise FileNotFoundError(f"Online Retail file '{path}' does not exist")
    if path.suffix == ".csv":
        with path.open("rb", buffering=1 << 20) as fh:
            batches = list(csv_batches(fh, ",", path.name))
        return pa.Table.from_batches(batches).to_pandas()
    if path.suffix in (".xlsx", ".xls"):
        text = {"InvoiceNo": "str", "Invoice": "str", "StockCode": "str"}
        sheets = pd.read_excel(path, sheet_name=None, dtype=text)
        return next(iter(sheets.values())) if len(sheets) == 1 else sheets
    return pd.read_parquet(path)


def online_retail_mapping(iso_dates: bool = False) -> Mapping:
    """The orders mapping with the Online Retail preset (examples/orders/mapping.toml), its
    models registered as churn-online-retail (the generic example names none: a copy of it
    takes its name from the user's data folder), its amounts in pounds sterling (a UK shop:
    reasons and the report read "£15", not "15"). iso_dates: InvoiceDate is written
    2009-12-01 07:45:00 (Online Retail II's CSV) rather than 12/1/2010 8:26; every row is
    still read strictly as ISO 8601."""
    mapping = load_mapping(PRESET)
    named = {**mapping.training, "model_name": ONLINE_RETAIL_TRAINING["model_name"]}
    scoring = {**mapping.scoring, "currency": ONLINE_RETAIL_CURRENCY}
    mapping = dataclasses.replace(mapping, training=named, scoring=scoring)
    if not iso_dates:
        return mapping

    def iso(spec):
        if spec.timestamp is None or spec.timestamp.format is None:
            return spec
        return dataclasses.replace(spec, timestamp=dataclasses.replace(spec.timestamp, format=None))

    tables = {
        table: tuple(
            dataclasses.replace(source, columns=tuple(iso(c) for c in source.columns))
            for source in sources
        )
        for table, sources in mapping.tables.items()
    }
    return dataclasses.replace(mapping, tables=tables)


def _written_iso(frames: dict[str, pd.DataFrame]) -> bool:
    """Whether the invoice dates are text that starts like ISO 8601 (2009-12-01), judged on
    the first date: the import then reads every row strictly in that one form."""
    for frame in frames.values():
        dates = frame["InvoiceDate"].dropna()
        if len(dates):
            first = dates.iloc[0]
            return isinstance(first, str) and bool(re.match(r"\d{4}-\d{2}-\d{2}", first.strip()))
    return False


def import_online_retail(
    raw: pd.DataFrame | dict[str, pd.DataFrame],
) -> tuple[Tables, ImportReport]:
    """The contract's tables from raw invoice lines (the orders mapping), and a report."""
    tables, _, report = import_online_retail_full(raw)
    return tables, report


def import_online_retail_full(
    raw: pd.DataFrame | dict[str, pd.DataFrame],
) -> tuple[Tables, MappingReport, ImportReport]:
    """As import_online_retail, with the mapping's full import report as well. `raw`: the
    invoice lines, or the sheets of a workbook by name (rows repeated across sheets count
    once, see ingest.importer)."""
    frames = raw if isinstance(raw, dict) else {SOURCE_NAME: raw}
    frames = {name: frame.rename(columns=ONLINE_RETAIL_II_NAMES) for name, frame in frames.items()}
    for name, frame in frames.items():
        missing = [c for c in RAW_COLUMNS if c not in frame.columns]
        if missing:
            raise ContractError(
                "online_retail",
                missing[0],
                f"required column is missing from {name!r} (has: {list(frame.columns)})",
            )
    handed = frames[SOURCE_NAME] if list(frames) == [SOURCE_NAME] else frames
    mapping = online_retail_mapping(iso_dates=_written_iso(frames))
    tables, full = run_import(mapping, ".", frames={SOURCE_NAME: handed})
    lines = full.sources[0]  # the customers' read of the lines
    report = ImportReport(
        raw_rows=lines.rows_read,
        dropped_without_customer=lines.dropped.get(NO_CUSTOMER, 0),
        # each table's read of the lines counts them; the revenue's reads every column used
        repeated_rows=max(s.dropped.get(REPEATED_ROW, 0) for s in full.sources),
        customers=len(tables.customers),
        invoices=int(tables.activity["invoice"].nunique()),
        activity_rows=len(tables.activity),
        revenue_rows=len(tables.revenue),
    )
    return tables, full, report
