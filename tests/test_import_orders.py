"""The orders mapping (order lines like UCI Online Retail) gives the same tables as the
hand-written Online Retail importer it replaced, on a generated sample and on the real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from churn.cli import app
from examples.orders.generate import write_sample
from features.config import feature_config_from_file
from features.contract import Tables, validate_tables
from features.io import load_tables, write_tables
from ingest.online_retail import (
    ONLINE_RETAIL_CONFIG,
    ONLINE_RETAIL_TRAINING,
    PRESET,
    import_online_retail,
    read_online_retail,
)
from serving.config import scoring_config_from_file
from training.config import train_config_from_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "orders" / "mapping.toml"
REAL = Path(
    os.environ.get(
        "ONLINE_RETAIL_PARQUET",
        ROOT / ".." / "shared" / "data" / "online_retail" / "online_retail.parquet",
    )
)


def reference_import(raw: pd.DataFrame) -> Tables:
    """ingest/online_retail.py as it was before the mapping (pandas code, kept to compare)."""
    lines = raw.loc[raw["CustomerID"].notna()].copy()
    lines["customer_id"] = lines["CustomerID"].astype("float64").astype("int64").astype("str")
    lines["InvoiceNo"] = lines["InvoiceNo"].astype("str")
    lines["at"] = (
        pd.to_datetime(lines["InvoiceDate"], format="%m/%d/%Y %H:%M")
        if lines["InvoiceDate"].dtype != "datetime64[ns]"
        else lines["InvoiceDate"]
    )
    lines["Quantity"] = lines["Quantity"].astype("int64")
    lines["UnitPrice"] = lines["UnitPrice"].astype("float64")
    lines["amount"] = lines["Quantity"] * lines["UnitPrice"]
    cancelled = lines["InvoiceNo"].str.startswith("C")
    lines["event"] = "purchase"
    lines.loc[cancelled, "event"] = "cancellation"
    lines.loc[~cancelled & (lines["Quantity"] < 0), "event"] = "return"
    per_invoice = (
        lines.groupby(["InvoiceNo", "event", "customer_id"], sort=False, observed=True)
        .agg(at=("at", "min"), items=("Quantity", "sum"), amount=("amount", "sum"))
        .reset_index()
    )
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
    first = lines.groupby("customer_id", sort=True).agg(signup_at=("at", "min"))
    country = (
        lines.groupby(["customer_id", "Country"], sort=True).size().rename("n").reset_index()
        .sort_values(["customer_id", "n"], ascending=[True, False], kind="stable")
        .drop_duplicates("customer_id")
        .set_index("customer_id")["Country"]
    )  # fmt: skip
    customers = first.join(country.rename("country")).reset_index()
    return validate_tables(customers=customers, activity=activity, revenue=revenue)


def assert_same_tables(got: Tables, expected: Tables) -> None:
    """Equal tables, value by value and dtype by dtype."""
    for name in ("customers", "activity", "revenue", "feedback"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("orders")
    write_sample(folder, customers=200, seed=5)
    return folder


def test_the_orders_mapping_matches_the_hand_written_importer_on_the_sample(sample, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "import",
            "--mapping",
            str(EXAMPLE),
            "--source",
            str(sample),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(sample / "order_lines.csv", dtype={"InvoiceNo": "str", "StockCode": "str"})
    expected = reference_import(raw)
    write_tables(expected, tmp_path / "reference")  # both read back the same way
    assert_same_tables(load_tables(tmp_path / "o"), load_tables(tmp_path / "reference"))
    assert (expected.activity["event"] == "cancellation").any()
    assert (expected.activity["event"] == "return").any()
    guests = int(raw["CustomerID"].isna().sum())
    assert f"no CustomerID: the line cannot be attributed: {guests}" in result.output


def test_import_online_retail_is_the_orders_mapping_with_its_preset(sample, tmp_path):
    assert PRESET.read_bytes() == EXAMPLE.read_bytes()
    result = CliRunner().invoke(
        app,
        ["import", "online-retail", str(sample / "order_lines.csv"), "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    assert "dropped rows without a CustomerID" in result.output
    assert (tmp_path / "r" / "report.md").is_file()
    raw = pd.read_csv(sample / "order_lines.csv", dtype={"InvoiceNo": "str", "StockCode": "str"})
    write_tables(reference_import(raw), tmp_path / "reference")
    assert_same_tables(load_tables(tmp_path / "r"), load_tables(tmp_path / "reference"))
    # The preset's churn definition and training settings are the ones the library exports.
    config_file = tmp_path / "r" / "config.toml"
    assert feature_config_from_file(config_file) == ONLINE_RETAIL_CONFIG
    training = train_config_from_file(config_file)
    assert {k: getattr(training, k) for k in ONLINE_RETAIL_TRAINING} == ONLINE_RETAIL_TRAINING
    assert scoring_config_from_file(config_file).currency == "GBP"  # a UK shop's pounds


@pytest.mark.slow
@pytest.mark.skipif(not REAL.exists(), reason="the real Online Retail data is not present")
def test_the_orders_mapping_matches_the_hand_written_importer_on_the_real_data():
    raw = read_online_retail(REAL)
    tables, report = import_online_retail(raw)
    assert_same_tables(tables, reference_import(raw))
    assert report.dropped_without_customer == 135_080


def test_orders_sample_imports_trains_and_scores_end_to_end(tmp_path, monkeypatch):
    """`churn import --mapping examples/orders/mapping.toml`, then `churn train` on its output
    folder (with the config.toml the import wrote), then `churn score` with the champion the
    gate chose: the same path a shop's analyst takes with their order lines."""
    write_sample(tmp_path / "raw", customers=300, seed=5)
    out = tmp_path / "orders"
    runner = CliRunner()
    imported = runner.invoke(
        app,
        ["import", "--mapping", str(EXAMPLE), "--source", str(tmp_path / "raw"), "--out", str(out)],
    )
    assert imported.exit_code == 0, imported.output
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    trained = runner.invoke(app, ["train", "--data", str(out)])
    assert trained.exit_code == 0, trained.output
    assert "model name: churn-orders (registered when training succeeds)" in trained.output
    # The gate's decision, with the figures it was taken on (candidate against baselines).
    assert "churn-orders version 1 (" in trained.output
    assert "roc_auc" in trained.output and "recency_rule" in trained.output
    # what the recency rule cannot measure is said, not printed as NaN
    assert "NaN" not in trained.output and "gives no probabilities" in trained.output
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("churn-orders", "champion")
    scores = tmp_path / "scores"
    scored = runner.invoke(
        app, ["score", "--data", str(out), "--as-of", "2011-12-01", "--out", str(scores)]
    )
    assert scored.exit_code == 0, scored.output
    assert f"with model version {champion.version}" in scored.output
    partition = pd.read_parquet(scores / "as_of=2011-12-01" / "scores.parquet")
    customers = load_tables(out).customers["customer_id"]
    assert len(partition) > 0 and partition["customer_id"].isin(customers).all()
    probability = partition["churn_probability"]
    assert probability.between(0, 1).all() and probability.nunique() > 1
    assert (partition["model_version"] == str(champion.version)).all()
    # The buyers not scored because they lapsed are named, the most recently lapsed first,
    # and none of them is scored.
    run = json.loads((scores / "as_of=2011-12-01" / "run.json").read_text())
    lapsed = pd.read_csv(scores / "as_of=2011-12-01" / "lapsed.csv", dtype={"customer_id": str})
    listed = run["customers_lapsed"] - run["customers_never_active"]
    assert run["customers_lapsed_listed"] == len(lapsed) == listed > 0
    assert not lapsed["customer_id"].isin(partition["customer_id"]).any()
    assert lapsed["days_since_last_activity"].is_monotonic_increasing
    assert "lapsed.csv lists them" in scored.output


def test_the_readmes_shopify_block_maps_each_order_once_without_cancelled_orders(tmp_path):
    """The README's Shopify recipe, as written there: one row per line item with the order's
    fields on its first line, a guest order, a cancelled order (no purchase, counted under its
    reason), Berlin offsets read as written."""
    from ingest.importer import run_import
    from ingest.mapping import load_mapping

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index('[activity]\nsource = "orders_export.csv"')
    block = readme[start : readme.index("```", start)]
    source = tmp_path / "exports"
    source.mkdir()
    pd.DataFrame(
        {"Name": ["#1001", "#1001", "#1002", "#1003", "#1004"],
         "Email": ["Anna@Example.com ", "", "", "ben@example.com", "anna@example.com"],
         "Created at": ["2024-05-01 10:22:33 +0200", "", "2024-05-02 09:00:00 +0200",
                        "2024-05-03 12:00:00 +0200", "2024-06-01 08:30:00 +0200"],
         "Financial Status": ["paid", "", "paid", "refunded", "paid"],
         "Cancelled at": ["", "", "", "2024-05-03 15:00:00 +0200", ""],
         "Total": ["30.00", "", "12.50", "20.00", "45.00"]}
    ).to_csv(source / "orders_export.csv", index=False)  # fmt: skip
    mapping = f"""
[features.churn]
mode = "non_contractual"

[customers]
source = "orders_export.csv"
drop = [{{ column = "Email", missing = true, reason = "no email" }}]
[customers.aggregate]
by = ["customer_id"]
signup_at = "min"
[customers.columns]
customer_id = {{ column = "Email", lower = true, trim = true }}
signup_at = "Created at"

{block}
"""
    (tmp_path / "mapping.toml").write_text(mapping)
    tables, report = run_import(load_mapping(tmp_path / "mapping.toml"), source)
    purchases = tables.activity.sort_values("at")
    assert list(purchases["customer_id"]) == ["anna@example.com", "anna@example.com"]
    assert list(purchases["at"]) == [pd.Timestamp("2024-05-01 08:22:33"),
                                     pd.Timestamp("2024-06-01 06:30:00")]  # fmt: skip
    assert list(purchases["value"]) == [30.0, 45.0]
    dropped = next(s for s in report.sources if s.table == "activity").dropped
    assert dropped == {
        "another line item of an order (its fields are on the first line)": 1,
        "guest order without email": 1,
        "cancelled order (no purchase)": 1,
    }


def test_a_total_repeated_on_each_line_item_and_summed_is_warned_about(tmp_path):
    """WooCommerce repeats the Order Total on every line item: `amount = "sum"` counted it once
    per item (a fashion shop's revenue 2.6 times its own) and nothing said so. The import
    warns, names the column and an order, and says what to use; "first" takes it once."""
    from ingest.importer import run_import
    from ingest.mapping import load_mapping

    rng = np.random.default_rng(3)
    rows = []
    for order in range(40):
        items = int(rng.integers(2, 4))
        for _ in range(items):
            rows.append({"Order Number": 5000 + order, "Billing Email": f"c{order % 9}@x.de",
                         "Order Date": f"2024-05-{1 + order % 28:02d} 10:00:00",
                         "Order Total": f"{20 + order}.90"})  # fmt: skip
    source = tmp_path / "exports"
    source.mkdir()
    pd.DataFrame(rows).to_csv(source / "orders.csv", index=False)

    def mapping(fn: str) -> Path:
        path = tmp_path / f"mapping_{fn}.toml"
        path.write_text(f"""
[features.churn]
mode = "non_contractual"

[customers]
source = "orders.csv"
[customers.aggregate]
by = ["customer_id"]
signup_at = "min"
[customers.columns]
customer_id = "Billing Email"
signup_at = "Order Date"

[activity]
source = "orders.csv"
[activity.aggregate]
by = ["order", "event", "customer_id"]
at = "min"
[activity.columns]
order = "Order Number"
customer_id = "Billing Email"
at = "Order Date"
event = {{ value = "purchase" }}

[revenue]
source = "orders.csv"
[revenue.aggregate]
by = ["order", "kind", "customer_id"]
at = "min"
amount = "{fn}"
[revenue.columns]
order = "Order Number"
customer_id = "Billing Email"
at = "Order Date"
amount = "Order Total"
kind = {{ value = "order" }}
""")
        return path

    tables, report = run_import(load_mapping(mapping("sum")), source)
    warned = [w for w in report.warnings if "repeated on every row" in w]
    assert len(warned) == 1, report.warnings
    assert "amount" in warned[0] and "of the 40 groups" in warned[0] and "'first'" not in warned[0]
    assert 'amount = "first"' in warned[0] and "order '5000'" in warned[0]
    tables, report = run_import(load_mapping(mapping("first")), source)
    assert not [w for w in report.warnings if "repeated on every row" in w]
    assert tables.revenue["amount"].sum() == pytest.approx(sum(20.9 + o for o in range(40)))
    # the line items combined into orders are counted: rows read = rows combined + rows out
    revenue = next(s for s in report.sources if s.table == "revenue")
    assert revenue.merged == len(rows) - 40 and revenue.merged_by == [
        "order",
        "kind",
        "customer_id",
    ]
    assert revenue.rows_read == revenue.rows_dropped + revenue.merged + revenue.rows_out
    line = next(t for t in report.summary_lines() if t.startswith("revenue"))
    assert f"{len(rows) - 40:,} combined with rows of the same order, kind, customer_id" in line
    assert "## Rows combined by an aggregate" in report.to_markdown()
