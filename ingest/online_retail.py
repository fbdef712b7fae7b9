"""Map the UCI Online Retail data (invoice lines of a UK gift shop) onto the contract.

Non-contractual: there is no churn date, a customer has churned when it stops buying.
- customers: CustomerID, first invoice as signup_at, the customer's most frequent Country.
- activity: one event per invoice: 'purchase' (value: items bought), 'cancellation' for
  invoices numbered C... (value: items cancelled), 'return' for other negative lines.
  Cancellations and returns are the data's only dissatisfaction signal.
- revenue: one row per invoice: kind 'order' with the positive line total, kind 'refund'
  with the (negative) total of cancelled and returned lines.
Rows without a CustomerID cannot be attributed and are dropped, with the count reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.config import ChurnDefinition, FeatureConfig
from features.contract import ContractError, Tables, validate_tables

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
    churn=ChurnDefinition(
        mode="non_contractual", horizon_days=90, lookback_days=90, qualifying_events=("purchase",)
    ),
)


# No training overrides: the backtest derives the step between dates, the warm-up, the holdout
# and the folds from the span of the data and the horizon (training.pipeline, training.splits).
ONLINE_RETAIL_TRAINING: dict[str, object] = {}


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
    """Read the raw file (Parquet, CSV or Excel as published by UCI)."""
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
        return pd.read_csv(
            path, dtype={"InvoiceNo": "str", "StockCode": "str"}, encoding_errors="replace"
        )
    if path.suffix in (".xlsx", ".xls"):
        return pd.read_excel(path, dtype={"InvoiceNo": "str", "StockCode": "str"})
    return pd.read_parquet(path)


def import_online_retail(raw: pd.DataFrame) -> tuple[Tables, ImportReport]:
    """The contract's tables from raw invoice lines, and a report of what was dropped."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ContractError(
            "online_retail", missing[0], f"required column is missing (has: {list(raw.columns)})"
        )
    has_customer = raw["CustomerID"].notna()
    lines = raw.loc[has_customer, list(RAW_COLUMNS)].copy()
    lines["customer_id"] = lines["CustomerID"].astype("int64").astype("str")
    lines["InvoiceNo"] = lines["InvoiceNo"].astype("str")
    lines["at"] = pd.to_datetime(lines["InvoiceDate"])
    lines["amount"] = lines["Quantity"] * lines["UnitPrice"]
    cancelled = lines["InvoiceNo"].str.startswith("C")
    lines["event"] = "purchase"
    lines.loc[cancelled, "event"] = "cancellation"
    lines.loc[~cancelled & (lines["Quantity"] < 0), "event"] = "return"

    # One event per (invoice, kind); an invoice's time is its first line's time.
    per_invoice = lines.groupby(
        ["InvoiceNo", "event", "customer_id"], sort=False, observed=True
    ).agg(at=("at", "min"), items=("Quantity", "sum"), amount=("amount", "sum"))
    per_invoice = per_invoice.reset_index()
    activity = pd.DataFrame(
        {
            "customer_id": per_invoice["customer_id"],
            "at": per_invoice["at"],
            "event": per_invoice["event"],
            "value": per_invoice["items"].abs().astype("float64"),
            "invoice": per_invoice["InvoiceNo"],
        }
    ).sort_values(["at", "invoice"], kind="stable", ignore_index=True)

    is_refund = per_invoice["event"] != "purchase"
    revenue = pd.DataFrame(
        {
            "customer_id": per_invoice["customer_id"],
            "at": per_invoice["at"],
            "amount": per_invoice["amount"].where(~is_refund, -per_invoice["amount"].abs()),
            "kind": is_refund.map({True: "refund", False: "order"}),
            "invoice": per_invoice["InvoiceNo"],
        }
    ).sort_values(["at", "invoice"], kind="stable", ignore_index=True)
    # An order whose lines net below zero (price adjustments) is not a sale: report, do not hide.
    negative_orders = (revenue["kind"] == "order") & (revenue["amount"] < 0)
    if negative_orders.any():
        raise ContractError(
            "online_retail",
            "UnitPrice",
            "an invoice without a C number totals below zero",
            revenue[negative_orders].iloc[0].to_dict(),
        )

    first = lines.groupby("customer_id", sort=True).agg(signup_at=("at", "min"))
    country = (
        lines.groupby(["customer_id", "Country"], sort=True).size().rename("n").reset_index()
        .sort_values(["customer_id", "n"], ascending=[True, False], kind="stable")
        .drop_duplicates("customer_id")
        .set_index("customer_id")["Country"]
    )  # fmt: skip
    customers = first.join(country.rename("country")).reset_index()

    tables = validate_tables(customers=customers, activity=activity, revenue=revenue)
    report = ImportReport(
        raw_rows=len(raw),
        dropped_without_customer=int((~has_customer).sum()),
        customers=len(customers),
        invoices=int(lines["InvoiceNo"].nunique()),
        activity_rows=len(activity),
        revenue_rows=len(revenue),
    )
    return tables, report
