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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.config import ChurnDefinition, FeatureConfig
from features.contract import ContractError, Tables
from ingest.importer import run_import
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


@dataclass(frozen=True)
class ImportReport:
    raw_rows: int
    dropped_without_customer: int
    customers: int
    invoices: int
    activity_rows: int
    revenue_rows: int

    def lines(self) -> list[str]:
        return [
            f"raw rows: {self.raw_rows:,}",
            f"dropped rows without a CustomerID: {self.dropped_without_customer:,}",
            f"customers: {self.customers:,}",
            f"invoices with a customer: {self.invoices:,}",
            f"activity rows: {self.activity_rows:,}",
            f"revenue rows: {self.revenue_rows:,}",
        ]


def read_online_retail(path: str | Path) -> pd.DataFrame:
    """Read the raw file (Parquet, CSV or Excel as published by UCI). A CSV is read with every
    column as text: the mapping declares the types (InvoiceDate is month-first)."""
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
        return pd.read_excel(path, dtype={"InvoiceNo": "str", "StockCode": "str"})
    return pd.read_parquet(path)


def online_retail_mapping() -> Mapping:
    """The orders mapping with the Online Retail preset (examples/orders/mapping.toml), its
    models registered as churn-online-retail (the generic example names none: a copy of it
    takes its name from the user's data folder), its amounts in pounds sterling (a UK shop:
    reasons and the report read "£15", not "15")."""
    mapping = load_mapping(PRESET)
    named = {**mapping.training, "model_name": ONLINE_RETAIL_TRAINING["model_name"]}
    scoring = {**mapping.scoring, "currency": ONLINE_RETAIL_CURRENCY}
    return dataclasses.replace(mapping, training=named, scoring=scoring)


def import_online_retail(raw: pd.DataFrame) -> tuple[Tables, ImportReport]:
    """The contract's tables from raw invoice lines (the orders mapping), and a report."""
    tables, _, report = import_online_retail_full(raw)
    return tables, report


def import_online_retail_full(
    raw: pd.DataFrame,
) -> tuple[Tables, MappingReport, ImportReport]:
    """As import_online_retail, with the mapping's full import report as well."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ContractError(
            "online_retail", missing[0], f"required column is missing (has: {list(raw.columns)})"
        )
    tables, full = run_import(online_retail_mapping(), ".", frames={SOURCE_NAME: raw})
    lines = full.sources[0]  # the customers' read of the lines
    report = ImportReport(
        raw_rows=lines.rows_read,
        dropped_without_customer=lines.rows_dropped,
        customers=len(tables.customers),
        invoices=int(tables.activity["invoice"].nunique()),
        activity_rows=len(tables.activity),
        revenue_rows=len(tables.revenue),
    )
    return tables, full, report
