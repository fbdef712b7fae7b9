"""SQL sources: a query on a real PostgreSQL server started by the test (no mock), the URL
from an environment variable, and a DuckDB file, mapped like files are."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import ContractError
from ingest.importer import run_import
from ingest.mapping import load_mapping
from ingest.sources import SourceError
from tests.pg_server import postgres_bin, postgres_server

MAPPING = """
[customers]
name = "crm"
source = { url_env = "CRM_DATABASE_URL", query = "select id, created, plan, mrr from crm.accounts where plan <> 'internal'" }
[customers.columns]
customer_id = "id"
signup_at = "created"
plan = "plan"
mrr = { column = "mrr", type = "number" }

[activity]
name = "events"
source = { url_env = "CRM_DATABASE_URL", query = "select user_id, ts, name from crm.events" }
[activity.columns]
customer_id = "user_id"
at = { column = "ts", unit = "ms" }
event = "name"

[revenue]
name = "payments"
source = { url_env = "CRM_DATABASE_URL", query = "select account, paid_on, cents, status from crm.payments" }
[revenue.columns]
customer_id = "account"
at = { column = "paid_on", dayfirst = true }
amount = { column = "cents", scale = 0.01, negate_when = { column = "status", in = ["refunded"] } }
kind = { column = "status", map = { paid = "invoice", refunded = "refund", void = "drop" } }
"""

SCHEMA = """
create schema crm;
create table crm.accounts (id text, created timestamptz, plan text, mrr numeric(10, 2));
insert into crm.accounts values
  ('00042', '2024-01-02 10:00:00+01', 'pro', 99.00),
  ('042', '2024-01-03 00:00:00+00', 'starter', 29.50),
  ('T1', '2024-01-04 00:00:00+00', 'internal', 0);
create table crm.events (user_id text, ts bigint, name text);
insert into crm.events values ('00042', 1704200000000, 'login'), ('042', 1704300000000, 'export');
create table crm.payments (account text, paid_on text, cents integer, status text);
insert into crm.payments values
  ('00042', '03/02/2024', 9900, 'paid'), ('00042', '04/02/2024', 9900, 'refunded'),
  ('042', '05/02/2024', 2950, 'void');
"""


@pytest.fixture(scope="module")
def pg_url():
    if postgres_bin() is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: apt-get install -y postgresql"
        )
    import psycopg

    with postgres_server() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)
        yield url


def test_a_postgres_query_is_mapped_like_a_file(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", pg_url)
    path = tmp_path / "m.toml"
    path.write_text(MAPPING)
    tables, report = run_import(load_mapping(path), tmp_path)
    customers = tables.customers.set_index("customer_id")
    assert list(customers.index) == ["00042", "042"]  # ids as text, zeros kept
    assert customers.loc["00042", "signup_at"] == pd.Timestamp("2024-01-02 09:00")  # UTC
    assert customers["mrr"].tolist() == [99.0, 29.5]
    assert tables.activity["at"].tolist() == [
        pd.Timestamp(1704200000000, unit="ms"),
        pd.Timestamp(1704300000000, unit="ms"),
    ]
    revenue = tables.revenue
    assert revenue["at"].tolist() == [pd.Timestamp("2024-02-03"), pd.Timestamp("2024-02-04")]
    assert revenue["amount"].tolist() == [99.0, -99.0]
    assert revenue["kind"].tolist() == ["invoice", "refund"]
    payments = report.sources[-1]
    assert payments.rows_read == 3 and payments.dropped == {"status = 'void' (mapped to drop)": 1}
    assert pg_url not in repr(report.to_dict())  # the source is shown as $CRM_DATABASE_URL
    assert "$CRM_DATABASE_URL" in report.sources[0].location


def test_a_postgres_epoch_column_without_a_unit_is_refused(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", pg_url)
    path = tmp_path / "m.toml"
    path.write_text(MAPPING.replace('at = { column = "ts", unit = "ms" }', 'at = "ts"'))
    with pytest.raises(ContractError) as err:
        run_import(load_mapping(path), tmp_path)
    assert "source 'events'" in str(err.value) and 'unit = "ms"' in str(err.value)


def test_a_missing_url_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    path = tmp_path / "m.toml"
    path.write_text(MAPPING)
    with pytest.raises(SourceError, match="CRM_DATABASE_URL"):
        run_import(load_mapping(path), tmp_path)


def test_a_duckdb_file_is_a_source_too(tmp_path: Path):
    import duckdb

    db = tmp_path / "crm.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create table accounts (id varchar, created timestamp)")
        con.execute("insert into accounts values ('0007', '2024-01-02 10:00:00')")
        con.execute("create table events (user_id varchar, ts timestamptz, name varchar)")
        con.execute("insert into events values ('0007', '2024-01-05 10:00:00+00', 'login')")
    url = f"duckdb:///{db}"
    path = tmp_path / "m.toml"
    path.write_text(
        f"""
[customers]
source = {{ url = "{url}", query = "select * from accounts" }}
[customers.columns]
customer_id = "id"
signup_at = "created"
[activity]
source = {{ url = "{url}", query = "select * from events" }}
[activity.columns]
customer_id = "user_id"
at = "ts"
event = "name"
"""
    )
    tables, _ = run_import(load_mapping(path), tmp_path)
    assert tables.customers["customer_id"].tolist() == ["0007"]
    assert tables.activity["at"].tolist() == [pd.Timestamp("2024-01-05 10:00")]


def test_other_sqlalchemy_urls_are_read_through_sqlalchemy(tmp_path: Path):
    """SQLite through SQLAlchemy: integer ids become their text, decimals numbers."""
    import sqlite3

    db = tmp_path / "crm.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table accounts (id integer, created text, mrr real)")
        con.execute("insert into accounts values (42, '2024-01-02T10:00:00Z', 99.5)")
        con.execute("create table events (user_id integer, ts text, name text)")
        con.execute("insert into events values (42, '2024-01-05T10:00:00Z', 'login')")
    url = f"sqlite:///{db}"
    path = tmp_path / "m.toml"
    path.write_text(
        f"""
[customers]
source = {{ url = "{url}", query = "select * from accounts" }}
[customers.columns]
customer_id = "id"
signup_at = "created"
mrr = {{ column = "mrr", type = "number" }}
[activity]
source = {{ url = "{url}", query = "select * from events" }}
[activity.columns]
customer_id = "user_id"
at = "ts"
event = "name"
"""
    )
    tables, report = run_import(load_mapping(path), tmp_path)
    assert tables.customers["customer_id"].tolist() == ["42"]
    assert tables.customers["mrr"].tolist() == [99.5]
    assert tables.activity["customer_id"].tolist() == ["42"]
    assert report.sources[0].rows_read == 1


KKBOX_MAPPING = '''
[customers]
source = { url = "duckdb:///:memory:", query = """
  select m.msno, m.registration_init_time,
         min(t.transaction_date) filter (where t.is_cancel = '1') as canceled
  from read_csv('members.csv', all_varchar = true) m
  left join read_csv('transactions.csv', all_varchar = true) t using (msno)
  group by all order by m.msno
""" }
[customers.columns]
customer_id = "msno"
signup_at = { column = "registration_init_time", format = "%Y%m%d" }
churned_at = { column = "canceled", format = "%Y%m%d" }

[activity]
source = "user_logs.csv"
[activity.columns]
customer_id = "msno"
at = { column = "date", format = "%Y%m%d" }
event = { value = "listen" }
'''


def test_a_duckdb_query_joins_exports_found_under_the_source_folder(tmp_path, monkeypatch):
    # Members in one export, cancellations in the billing export: joined in the query, whose
    # file names are found under --source whatever the working directory.
    source = tmp_path / "exports"
    source.mkdir()
    (source / "members.csv").write_text(
        "msno,registration_init_time\n0001,20150105\n0002,20160301\n"
    )
    (source / "transactions.csv").write_text(
        "msno,transaction_date,is_cancel\n0001,20170101,0\n0001,20170201,1\n0002,20170115,0\n"
    )
    (source / "user_logs.csv").write_text("msno,date\n0001,20170105\n0002,20170120\n")
    (tmp_path / "mapping.toml").write_text(KKBOX_MAPPING)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tables, _ = run_import(load_mapping(tmp_path / "mapping.toml"), source)
    customers = tables.customers.set_index("customer_id")
    assert list(customers.index) == ["0001", "0002"]  # all_varchar: leading zeros kept
    assert customers.loc["0001", "churned_at"] == pd.Timestamp("2017-02-01")
    assert pd.isna(customers.loc["0002", "churned_at"])
    assert customers.loc["0002", "signup_at"] == pd.Timestamp("2016-03-01")


def test_a_query_that_cannot_run_is_a_source_error_naming_the_table(tmp_path):
    """A typo in a mapping's query, or a file it cannot find, is an error naming the mapping's
    table and source, not a driver's traceback."""
    source = tmp_path / "exports"
    source.mkdir()
    (source / "members.csv").write_text("msno,registration_init_time\n0001,20150105\n")
    (source / "user_logs.csv").write_text("msno,date\n0001,20170105\n")
    (tmp_path / "mapping.toml").write_text(KKBOX_MAPPING)  # no transactions.csv
    with pytest.raises(SourceError, match=r"^table 'customers' .*the duckdb query failed: "):
        run_import(load_mapping(tmp_path / "mapping.toml"), source)
    (source / "transactions.csv").write_text("msno,transaction_date,is_cancel\n")
    typo = KKBOX_MAPPING.replace("group by all", "group by all at")
    (tmp_path / "mapping.toml").write_text(typo)
    with pytest.raises(SourceError, match="the duckdb query failed: Parser Error"):
        run_import(load_mapping(tmp_path / "mapping.toml"), source)


def test_the_readmes_invoices_from_a_subscriptions_table_run(tmp_path):
    """The README's DuckDB recipe, as written there: monthly invoices up to a subscription's end
    or the export's date, an annual plan's one invoice a year, each with its period's end."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start = readme.index("-- invoices from a subscriptions table")
    query = readme[start : readme.index("```", start)]
    source = tmp_path / "exports"
    source.mkdir()
    (source / "subscriptions.csv").write_text(
        "subscription_id,account_id,start_date,end_date,mrr_amount,arr_amount,billing_frequency\n"
        "S1,A-01,2024-01-15,,49.0,588.0,monthly\n"
        "S2,A-02,2023-07-01,,99.0,1188.0,annual\n"
        "S3,A-03,2024-02-10,2024-04-20,29.0,348.0,monthly\n"
    )
    (source / "accounts.csv").write_text(
        "account_id,signup_date\nA-01,2024-01-15\nA-02,2023-07-01\nA-03,2024-02-10\n"
    )
    mapping = f'''
[customers]
source = "accounts.csv"
[customers.columns]
customer_id = "account_id"
signup_at = "signup_date"

[activity]
source = "accounts.csv"
[activity.columns]
customer_id = "account_id"
at = "signup_date"
event = {{ value = "signup" }}

[revenue]
source = {{ url = "duckdb:///:memory:", query = """{query}""" }}
[revenue.columns]
customer_id = "account_id"
at = "invoice_date"
amount = {{ column = "amount", type = "number" }}
kind = {{ value = "invoice" }}
period_end = "period_end"
'''
    (tmp_path / "mapping.toml").write_text(mapping)
    tables, _ = run_import(load_mapping(tmp_path / "mapping.toml"), source)
    invoices = tables.revenue.sort_values(["customer_id", "at"])
    per_account = invoices.groupby("customer_id")["at"].count().to_dict()
    assert per_account == {"A-01": 5, "A-02": 1, "A-03": 3}  # Jan..May; one year; Feb..Apr
    annual = invoices[invoices["customer_id"] == "A-02"].iloc[0]
    assert annual["amount"] == 1188.0 and annual["period_end"] == pd.Timestamp("2024-07-01")
    last = invoices[invoices["customer_id"] == "A-01"].iloc[-1]
    assert last["at"] == pd.Timestamp("2024-05-15") and last["period_end"] == pd.Timestamp(
        "2024-06-15"
    )
