"""Retention metrics on the real UCI Online Retail data, checked against DuckDB SQL.

The SQL below is written from the definitions, independently of retention.metrics:
if the vectorized code and the SQL disagree on any cohort cell or country, one of them is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import Tables, validate_tables
from retention.metrics import cohort_retention, retention_metrics, wilson_interval
from retention.plots import (
    plot_metrics_by_segment,
    plot_retention_curves,
    plot_retention_heatmap,
)

DATA = Path(__file__).parents[1] / "../shared/data/online_retail/online_retail.parquet"

duckdb = pytest.importorskip("duckdb")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"Online Retail data not found at {DATA}"),
]


def map_online_retail(raw: pd.DataFrame) -> Tables:
    """The raw line items onto the contract (until ingest.online_retail exists).

    customers: CustomerID as an integer string, first invoice as signup_at, Country of the first
    invoice line. revenue: Quantity x UnitPrice per line; cancellations (InvoiceNo 'C...') and
    negative quantities are refunds with negative amounts, the rest orders. activity: one
    'purchase' event per line.
    """
    df = raw[raw["CustomerID"].notna()].sort_values(["InvoiceDate", "InvoiceNo"], kind="stable")
    cid = df["CustomerID"].astype("int64").astype("str")
    refund = (df["InvoiceNo"].str.startswith("C") | (df["Quantity"] < 0)).to_numpy()
    amount = (df["Quantity"] * df["UnitPrice"]).to_numpy()
    customers = (
        df.assign(customer_id=cid)
        .groupby("customer_id", sort=True)
        .agg(signup_at=("InvoiceDate", "min"), country=("Country", "first"))
        .reset_index()
    )
    revenue = pd.DataFrame(
        {
            "customer_id": cid.to_numpy(),
            "at": df["InvoiceDate"].to_numpy(),
            "amount": np.where(refund, -np.abs(amount), amount),
            "kind": np.where(refund, "refund", "order"),
            "invoice_no": df["InvoiceNo"].to_numpy(),
        }
    )
    activity = pd.DataFrame(
        {
            "customer_id": cid.to_numpy(),
            "at": df["InvoiceDate"].to_numpy(),
            "event": "purchase",
            "value": np.abs(amount),
        }
    )
    return validate_tables(customers, activity, None, revenue)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_parquet(DATA)


@pytest.fixture(scope="module")
def retail(raw) -> Tables:
    return map_online_retail(raw)


@pytest.fixture(scope="module")
def sql(retail):
    con = duckdb.connect()
    for name in ("customers", "activity", "revenue"):
        con.register(name, getattr(retail, name))
    yield con
    con.close()


def test_the_mapping_keeps_every_identified_customer(raw, retail):
    """4,372 customers with an id, 37 countries among them; signup is the first invoice."""
    assert len(retail.customers) == raw["CustomerID"].nunique() == 4372
    assert retail.customers["country"].nunique() == 37
    assert retail.customers["signup_at"].min() == pd.Timestamp("2010-12-01 08:26")
    assert (retail.revenue["kind"] == "refund").sum() == 8905


def sql_monthly_cohorts(con, last_month: str, event: str | None = None) -> pd.DataFrame:
    """cohort, period, cohort_size, active for 2011 signup cohorts, periods up to last_month."""
    only = f"WHERE a.event = '{event}'" if event else ""
    return con.execute(
        f"""
        WITH c AS (
            SELECT customer_id, year(signup_at) * 12 + month(signup_at) AS m0,
                   date_trunc('month', signup_at) AS cohort
            FROM customers
            WHERE signup_at >= TIMESTAMP '2011-01-01' AND signup_at < TIMESTAMP '2012-01-01'
        ),
        sizes AS (SELECT cohort, m0, count(*) AS cohort_size FROM c GROUP BY cohort, m0),
        grid AS (
            SELECT s.cohort, s.m0, s.cohort_size, p.period
            FROM sizes s, range(0, 13) p(period)
            WHERE s.m0 + p.period <= year(TIMESTAMP '{last_month}') * 12 + month(TIMESTAMP '{last_month}')
        ),
        act AS (
            SELECT c.cohort, year(a.at) * 12 + month(a.at) - c.m0 AS period,
                   count(DISTINCT a.customer_id) AS active
            FROM activity a JOIN c USING (customer_id)
            {only}
            GROUP BY ALL
        )
        SELECT g.cohort, g.period, g.cohort_size, coalesce(act.active, 0) AS active
        FROM grid g LEFT JOIN act USING (cohort, period)
        ORDER BY g.cohort, g.period
        """
    ).df()


def ours(result) -> pd.DataFrame:
    t = result.table
    out = t[["cohort", "period", "cohort_size", "active"]].astype(
        {"period": "int64", "cohort_size": "int64", "active": "int64"}
    )
    return out.sort_values(["cohort", "period"]).reset_index(drop=True)


def theirs(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(cohort=pd.to_datetime(df["cohort"]).astype("datetime64[ns]"))
    return df.astype({"period": "int64", "cohort_size": "int64", "active": "int64"}).reset_index(
        drop=True
    )


def test_monthly_cohort_retention_2011_matches_sql(retail, sql, tmp_path):
    """Complete months only: the data end on 2011-12-09, so December is not a column."""
    r = cohort_retention(
        retail,
        mode="n-day",
        cohort_freq="month",
        cohorts_from="2011-01-01",
        cohorts_to="2011-12-31",
    )
    # the data cover whole days, to the end of the last record's (2011-12-09 12:50)
    assert r.observed_until == pd.Timestamp("2011-12-10") - pd.Timedelta(1, "ns")
    pd.testing.assert_frame_equal(
        ours(r), theirs(sql_monthly_cohorts(sql, "2011-11-01")), check_dtype=False
    )
    assert (r.table["eligible"] == r.table["cohort_size"]).all()
    # pinned: the January 2011 cohort and its first-month return rate
    jan = r.table[r.table["cohort"] == pd.Timestamp("2011-01-01")].set_index("period")
    assert jan.loc[0, "cohort_size"] == 421
    assert jan.loc[1, "active"] == 101
    assert jan.loc[1, "retention"] == pytest.approx(101 / 421)
    assert sorted(r.table["cohort"].dt.month.unique()) == list(range(1, 12))
    plot_retention_heatmap(r, tmp_path / "heatmap.png")
    plot_retention_curves(r, tmp_path / "curves.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 10_000


def test_monthly_cohort_retention_2011_with_december_partial_matches_sql(retail, sql):
    r = cohort_retention(
        retail,
        mode="n-day",
        cohorts_from="2011-01-01",
        cohorts_to="2011-12-31",
        partial_periods=True,
    )
    pd.testing.assert_frame_equal(
        ours(r), theirs(sql_monthly_cohorts(sql, "2011-12-01")), check_dtype=False
    )


def test_unbounded_monthly_retention_2011_matches_sql(retail, sql):
    r = cohort_retention(
        retail, mode="unbounded", cohorts_from="2011-01-01", cohorts_to="2011-12-31"
    )
    want = sql.execute(
        """
        WITH c AS (
            SELECT customer_id, year(signup_at) * 12 + month(signup_at) AS m0,
                   date_trunc('month', signup_at) AS cohort
            FROM customers
            WHERE signup_at >= TIMESTAMP '2011-01-01' AND signup_at < TIMESTAMP '2012-01-01'
        ),
        last AS (
            SELECT c.customer_id, c.cohort, c.m0,
                   max(year(a.at) * 12 + month(a.at)) - c.m0 AS last_period
            FROM c LEFT JOIN activity a USING (customer_id)
            GROUP BY c.customer_id, c.cohort, c.m0
        ),
        grid AS (
            SELECT l.*, p.period FROM last l, range(0, 13) p(period)
            WHERE l.m0 + p.period <= 2011 * 12 + 11
        )
        SELECT cohort, period, count(*) AS cohort_size,
               count(*) FILTER (WHERE last_period >= period) AS active
        FROM grid GROUP BY cohort, period ORDER BY cohort, period
        """
    ).df()
    pd.testing.assert_frame_equal(ours(r), theirs(want), check_dtype=False)


def test_repeat_purchase_rate_2011_overall_and_by_country_matches_sql(retail, sql):
    """Purchases: order lines with a positive amount from March 2011 to the data's last day,
    one per distinct timestamp. (The period's 90-day lookback starts with the data, on
    2010-12-01; a period past 2011-12-09 is not covered.)"""
    m = retention_metrics(
        retail,
        "2011-03-01",
        "2011-12-09 23:00",
        by=["country"],
        churn_mode="non_contractual",
        lookback_days=90,
    )
    want = sql.execute(
        """
        WITH p AS (
            SELECT r.customer_id, count(DISTINCT r.at) AS n
            FROM revenue r
            WHERE r.kind IN ('order', 'invoice') AND r.amount > 0
              AND r.at > TIMESTAMP '2011-03-01' AND r.at <= TIMESTAMP '2011-12-09 23:00'
            GROUP BY r.customer_id
        )
        SELECT c.country, count(*) AS buyers, count(*) FILTER (WHERE n > 1) AS repeat_buyers
        FROM p JOIN customers c USING (customer_id)
        GROUP BY c.country ORDER BY c.country
        """
    ).df()
    got = m[m["dimension"] == "country"].set_index("segment")
    merged = want.set_index("country").join(
        got[["buyers", "repeat_buyers"]], suffixes=("", "_ours")
    )
    assert (merged["buyers"] == merged["buyers_ours"]).all()
    assert (merged["repeat_buyers"] == merged["repeat_buyers_ours"]).all()
    everyone = m.iloc[0]
    assert everyone.buyers == want["buyers"].sum() == 4016
    assert everyone.repeat_buyers == want["repeat_buyers"].sum() == 2535
    assert everyone.repeat_purchase_rate == pytest.approx(2535 / 4016)
    uk = got.loc["United Kingdom"]
    assert uk.repeat_purchase_rate == pytest.approx(uk.repeat_buyers / uk.buyers)


def test_customer_flows_by_country_for_a_quarter_match_sql(retail, sql, tmp_path):
    """Non-contractual churn for Q3 2011 with a 90-day lookback, by country."""
    t0, t1 = pd.Timestamp("2011-07-01"), pd.Timestamp("2011-10-01")
    m = retention_metrics(
        retail, t0, t1, by=["country"], churn_mode="non_contractual", lookback_days=90
    )
    want = sql.execute(
        """
        WITH flags AS (
            SELECT c.customer_id, c.country,
                bool_or(a.at > TIMESTAMP '2011-07-01' - INTERVAL 90 DAY
                        AND a.at <= TIMESTAMP '2011-07-01') AS at_start,
                bool_or(a.at > TIMESTAMP '2011-07-01' AND a.at <= TIMESTAMP '2011-10-01') AS at_end
            FROM customers c JOIN activity a USING (customer_id)
            GROUP BY ALL
        ),
        money AS (
            SELECT c.country, sum(r.amount) AS revenue
            FROM revenue r JOIN customers c USING (customer_id)
            WHERE r.at > TIMESTAMP '2011-07-01' AND r.at <= TIMESTAMP '2011-10-01'
            GROUP BY c.country
        )
        SELECT f.country,
               count(*) FILTER (WHERE at_start) AS customers_start,
               count(*) FILTER (WHERE at_end AND NOT at_start) AS new,
               count(*) FILTER (WHERE at_start AND NOT at_end) AS lost,
               count(*) FILTER (WHERE at_end) AS customers_end,
               coalesce(any_value(m.revenue), 0) AS revenue
        FROM flags f LEFT JOIN money m USING (country)
        GROUP BY f.country ORDER BY f.country
        """
    ).df()
    got = m[m["dimension"] == "country"].set_index("segment")
    cols = ["customers_start", "new", "lost", "customers_end"]
    merged = want.set_index("country").join(
        got[[*cols, "revenue", "crr", "crr_low", "small_group"]], suffixes=("", "_ours")
    )
    for col in cols:
        assert (merged[col] == merged[f"{col}_ours"]).all(), col
    assert np.allclose(merged["revenue"], merged["revenue_ours"])
    s = merged["customers_start"].to_numpy(dtype=float)
    e, new = merged["customers_end"].to_numpy(dtype=float), merged["new"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(merged["crr"], (e - new) / s)
    low, _ = wilson_interval(s - merged["lost"].to_numpy(dtype=float), s)
    np.testing.assert_allclose(merged["crr_low"], low)
    assert (merged["small_group"] == (s < 30)).all()
    # pinned headline numbers for the whole base
    everyone = m.iloc[0]
    assert (everyone.customers_start, everyone.lost) == (
        want["customers_start"].sum(),
        want["lost"].sum(),
    )
    assert everyone.customers_start == 2001 and everyone.lost == 765
    assert everyone.churn_rate == pytest.approx(765 / 2001)
    assert np.isnan(everyone.nrr)  # a shop has orders, not recurring invoices
    plot_metrics_by_segment(m, tmp_path / "metrics_by_country.png")
    assert (tmp_path / "metrics_by_country.png").stat().st_size > 10_000


def test_lead_importer_gives_the_same_cohorts_as_sql_when_available(raw):
    """When ingest.online_retail exists, cohorts of its purchases must agree with SQL over the
    same Tables (its activity has one event per invoice: purchase, cancellation, return)."""
    online_retail = pytest.importorskip("ingest.online_retail")
    imported = online_retail.import_online_retail(raw)
    tables = imported[0] if isinstance(imported, tuple) else imported
    con = duckdb.connect()
    for name in ("customers", "activity", "revenue"):
        con.register(name, getattr(tables, name))
    events = ["purchase"] if (tables.activity["event"] == "purchase").any() else None
    r = cohort_retention(
        tables,
        mode="n-day",
        activity_events=events,
        cohorts_from="2011-01-01",
        cohorts_to="2011-12-31",
    )
    last = (r.observed_until.to_period("M") - 1).start_time.strftime("%Y-%m-%d")
    want = sql_monthly_cohorts(con, last, event=events[0] if events else None)
    pd.testing.assert_frame_equal(ours(r), theirs(want), check_dtype=False)
    assert len(tables.customers) == 4372
