"""Retention that measures only what the data cover: cohort cells outside the data are missing
(never 0 % or 100 %), pooled curves leave them out, plots grey them; revenue cohort retention;
the customers behind one cohort cell."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from churn.cli_metrics import register, segment_table
from features.contract import validate_tables
from features.io import write_tables
from reporting import formatting as fmt
from retention.metrics import (
    cohort_cell,
    cohort_retention,
    data_coverage,
    retention_curve,
    revenue_cohort_retention,
)
from retention.plots import MISSING_COLOUR, default_metric_columns, plot_retention_heatmap

T = pd.Timestamp


def old_cohort_tables():
    """Signups from 2023-11 on, activity from 2024-01-01 (the export starts then) to 2024-03-31.

    Nov cohort (2): n1 active in Jan and Mar, n2 in Feb. Jan cohort (4): j1..j3 active in Jan,
    j1 and j2 in Feb, j1 in Mar; j4 never. The data end at 2024-04-01 00:00 (a last event)."""
    customers = pd.DataFrame(
        {
            "customer_id": ["n1", "n2", "j1", "j2", "j3", "j4"],
            "signup_at": [T("2023-11-05"), T("2023-11-20")] + [T("2024-01-03")] * 4,
        }
    )
    events = [
        ("n1", "2024-01-01 08:00"), ("n1", "2024-03-03"), ("n2", "2024-02-10"),
        ("j1", "2024-01-04"), ("j2", "2024-01-05"), ("j3", "2024-01-06"),
        ("j1", "2024-02-04"), ("j2", "2024-02-05"), ("j1", "2024-03-04"),
        ("j4", "2024-04-01 00:00"),
    ]  # fmt: skip
    activity = pd.DataFrame(events, columns=["customer_id", "at"]).assign(event="login")
    activity["at"] = pd.to_datetime(activity["at"], format="ISO8601")
    return validate_tables(customers, activity)


def test_cells_before_the_first_record_are_missing_not_zero():
    t = old_cohort_tables()
    assert data_coverage(t)[0] == T("2024-01-01")
    r = cohort_retention(t, mode="n-day")
    pivot = r.pivot
    nov = pivot.loc[T("2023-11-01")]
    # Nov and Dec 2023 (periods 0 and 1) are before the data: missing, not 0 %
    assert math.isnan(nov[0]) and math.isnan(nov[1])
    assert nov[2] == pytest.approx(1 / 2)  # January: n1
    assert nov[3] == pytest.approx(1 / 2)  # February: n2
    assert nov[4] == pytest.approx(1 / 2)  # March: n1
    jan = pivot.loc[T("2024-01-01")]
    assert jan[0] == pytest.approx(3 / 4) and jan[1] == pytest.approx(2 / 4)
    assert jan[2] == pytest.approx(1 / 4)
    assert math.isnan(jan[3])  # April is after the data


def test_the_data_s_last_day_is_covered_whole():
    """A purchase log cut at 1 May, daily dates stamped at midnight, its last record on 30
    April (benchmarks/README.md, session 38): April is observed to its end, so it is a column;
    "observed until 1997-04-30 00:00:00, complete periods only" had left it blank in every
    cohort. A month the last day does not end stays out, and partial periods reach no further
    than the data."""
    t = old_cohort_tables()
    t = validate_tables(
        t.customers,
        t.activity.assign(
            at=t.activity["at"].where(t.activity["at"] < T("2024-04-01"), T("2024-03-31"))
        ),
    )
    r = cohort_retention(t, mode="n-day")
    assert r.observed_until == T("2024-04-01") - pd.Timedelta(1, "ns")
    jan = r.pivot.loc[T("2024-01-01")]
    assert jan[2] == pytest.approx(2 / 4)  # March: j1, and j4 on its last day
    assert 3 not in r.pivot.columns or math.isnan(jan[3])
    partial = cohort_retention(t, mode="n-day", partial_periods=True)
    assert 3 not in partial.pivot.columns or math.isnan(partial.pivot.loc[T("2024-01-01")][3])
    ends_mid_month = validate_tables(t.customers, t.activity[t.activity["at"] < T("2024-03-20")])
    r = cohort_retention(ends_mid_month, mode="n-day")
    assert math.isnan(r.pivot.loc[T("2024-01-01")][2])  # March is not over


def test_unbounded_retention_leaves_out_the_periods_before_the_data():
    r = cohort_retention(old_cohort_tables(), mode="unbounded")
    cells = r.table.set_index(["cohort", "period"])
    assert (T("2023-11-01"), 0) not in cells.index  # not 100 % from a later visit either
    assert cells.loc[(T("2023-11-01"), 2), "retention"] == pytest.approx(2 / 2)
    assert cells.loc[(T("2023-11-01"), 4), "retention"] == pytest.approx(1 / 2)


def test_the_pooled_curve_weighs_only_observed_cells():
    """Month 0: only the January cohort is observed (3 of 4), not (0 + 3) / (2 + 4)."""
    curve = retention_curve(cohort_retention(old_cohort_tables())).set_index("period")
    assert curve.loc[0, ["active", "eligible"]].tolist() == [3, 4]
    assert curve.loc[0, "retention"] == pytest.approx(3 / 4)
    assert curve.loc[2, ["active", "eligible"]].tolist() == [1 + 1, 2 + 4]


def test_bracket_retention_needs_the_bracket_inside_the_data():
    r = cohort_retention(old_cohort_tables(), mode="bracket", brackets=[(0, 7), (60, 90)])
    cells = r.table.set_index(["cohort", "period"])
    assert (T("2023-11-01"), "0-7") not in cells.index
    assert cells.loc[(T("2024-01-01"), "0-7"), ["active", "eligible"]].tolist() == [3, 4]
    # Nov signups: days 60-90 fall in January, inside the data
    assert cells.loc[(T("2023-11-01"), "60-90"), "eligible"] == 2


def test_heatmap_greys_the_cells_the_data_do_not_cover(tmp_path):
    r = cohort_retention(old_cohort_tables(), min_group_size=1)
    image = imread(plot_retention_heatmap(r, tmp_path / "heat.png"))[..., :3]
    grey = np.array([int(MISSING_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    assert (np.abs(image - grey).max(axis=-1) < 0.02).sum() > 100


def test_heatmap_with_many_cohorts_labels_every_kth_row(tmp_path):
    """74 monthly cohorts: the figure stays within a page and has at most 36 row labels."""
    n = 74
    signup = pd.date_range("2018-11-01", periods=n, freq="MS")
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "signup_at": signup})
    activity = pd.DataFrame(
        {"customer_id": customers["customer_id"], "at": signup + pd.Timedelta(days=40)}
    ).assign(event="x")
    t = validate_tables(customers, activity)
    r = cohort_retention(t, observed_from="2018-11-01", observed_until="2025-01-01")
    assert r.pivot.shape[0] == n
    path = plot_retention_heatmap(r, tmp_path / "many.png")
    height, width = imread(path).shape[:2]
    assert height < 60 * 110 and width < 24 * 110 + 200


def revenue_tables():
    """Jan cohort: A 100 -> 150 -> 150 (expansion), B 200 -> 120 -> gone (contraction, churn),
    C signs up in January but first pays in February (a trial: its first paid month is its
    month 0); E signs up in January and first pays in March, two months later (not in the
    base). Feb cohort: D 50 -> 50. The data cover 2024-01-01 to 2024-04-01 (January to March
    whole)."""
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCDE"),
            "signup_at": [
                T("2024-01-10"),
                T("2024-01-12"),
                T("2024-01-20"),
                T("2024-02-05"),
                T("2024-01-25"),
            ],
        }
    )
    jan, feb, mar = T("2024-01-01"), T("2024-02-01"), T("2024-03-01")
    rows = [
        ("A", jan, 100.0), ("A", feb, 150.0), ("A", mar, 150.0),
        ("B", jan, 200.0), ("B", feb, 120.0),
        ("C", feb, 80.0), ("C", mar, 80.0),
        ("D", feb, 50.0), ("D", mar, 50.0),
        ("E", mar, 70.0),
    ]  # fmt: skip
    revenue = pd.DataFrame(rows, columns=["customer_id", "period", "amount"])
    revenue = revenue.assign(at=revenue["period"] + pd.Timedelta(days=10), kind="invoice")
    activity = pd.DataFrame(
        {"customer_id": ["A", "A"], "at": [T("2024-01-01"), T("2024-04-01")], "event": "login"}
    )
    return validate_tables(customers, activity, revenue=revenue)


def test_revenue_cohort_retention_hand_computed():
    """Jan: base A + B (January) + C (February, its first paid month) = 380; a month later
    A 150 + B 120 + C 80 (March) = 350; two months later C's April is not covered yet, so the
    cohort's period 2 is missing; E, first paying two months after signing up, is no part of
    the base. Feb: D 50 -> 50 (100 %). (From the signup month alone the base had been A + B,
    and a gym's 83 yearly payers of 576 members, its monthly fees being debited from the 1st
    after joining.)"""
    r = revenue_cohort_retention(revenue_tables())
    cells = r.table.set_index(["cohort", "period"])
    jan = cells.loc[T("2024-01-01")]
    assert jan["mrr"].tolist() == [380.0, 350.0]
    assert jan["retention"].tolist() == pytest.approx([1.0, 350 / 380])
    assert jan["customers_paying"].tolist() == [3, 3]
    assert jan["customers"].iloc[0] == 3 and jan["cohort_size"].iloc[0] == 4
    assert (T("2024-01-01"), 2) not in cells.index  # C's second month: April, not covered
    feb = cells.loc[T("2024-02-01")]
    assert feb["retention"].tolist() == pytest.approx([1.0, 1.0])
    assert feb["customers"].iloc[0] == 1 and feb["cohort_size"].iloc[0] == 1
    assert (T("2024-02-01"), 2) not in cells.index  # April is after the data


def test_revenue_cohorts_whose_signup_month_the_data_miss_are_left_out():
    r = revenue_cohort_retention(revenue_tables(), observed_from="2024-02-01")
    assert set(r.table["cohort"]) == {T("2024-02-01")}
    capped = revenue_cohort_retention(revenue_tables(), max_period=1)
    assert capped.table["period"].max() == 1


@pytest.mark.parametrize(
    ("mode", "period_unit"), [("n-day", "month"), ("unbounded", "month"), ("n-day", "week"),
                              ("bracket", "day")]
)  # fmt: skip
def test_the_customers_behind_each_cell_add_up_to_it(mode, period_unit):
    t = old_cohort_tables()
    options = {"mode": mode, "period": period_unit, "brackets": [(0, 7), (60, 90)]}
    r = cohort_retention(t, **options)
    assert len(r.table) >= 2
    for cell in r.table.itertuples():
        who = cohort_cell(t, cell.cohort, cell.period, mode=mode, period_unit=period_unit)
        assert len(who) == cell.cohort_size
        assert (who["eligible"].sum(), who["active"].sum()) == (cell.eligible, cell.active)


def test_a_cell_lists_its_customers_with_signup_and_activity():
    who = cohort_cell(old_cohort_tables(), "2024-01", 1).set_index("customer_id")
    assert who["active"].to_dict() == {"j1": True, "j2": True, "j3": False, "j4": False}
    assert who["eligible"].all()
    assert who.loc["j1", "start"] == T("2024-01-03")
    before = cohort_cell(old_cohort_tables(), "2023-11-15", 0)
    assert before["customer_id"].tolist() == ["n1", "n2"]
    assert not before["eligible"].any() and not before["active"].any()  # before the data


# --------------------------------------------------------------------------- CLI and printing


def cli(*args):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_lists_the_customers_behind_a_cell_and_prints_revenue_retention(tmp_path):
    write_tables(old_cohort_tables(), tmp_path / "cohorts")
    res = cli("retention", "--data", tmp_path / "cohorts", "--cell", "2024-01,1")
    assert res.exit_code == 0, res.output
    assert "4 customers, 4 observed, 2 active" in res.output
    lines = {line.split()[0]: line for line in res.output.splitlines()[2:]}
    assert lines["j1"].endswith(" active") and lines["j3"].endswith("not active")
    res = cli("retention", "--data", tmp_path / "cohorts", "--cell", "2023-11,0")
    assert "2 observed" not in res.output and "not observed" in res.output
    res = cli("retention", "--data", tmp_path / "cohorts", "--cell", "2024-01")
    assert res.exit_code == 2 and "COHORT,PERIOD" in res.output

    write_tables(revenue_tables(), tmp_path / "revenue")
    out = tmp_path / "r.csv"
    res = cli(
        "retention", "--data", tmp_path / "revenue", "--revenue", "--out", out,
        "--plot-dir", tmp_path / "plots",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    revenue_part = res.output.split("revenue retention")[1]
    jan = next(line for line in revenue_part.splitlines() if line.startswith("2024-01 "))
    assert jan.split()[1:5] == ["3", "380", "100.0", "92.1"]
    kept = pd.read_csv(tmp_path / "r_revenue.csv")
    assert kept["retention"].round(3).tolist() == [1.0, 0.921, 1.0, 1.0]
    assert (tmp_path / "plots" / "revenue_retention_heatmap.png").exists()


def report_rows(**columns) -> pd.DataFrame:
    base = {
        "dimension": ["all", "plan", "plan"],
        "segment": ["all", "basic", "pro"],
        "customers_scored": [3177.0, 2000.0, 1177.0],
        "mean_risk": [0.021, 0.03, 0.012],
        "expected_churners": [66.7, 60.0, 6.7],
        "revenue_at_risk": [2239.9, 1000.0, 1239.9],
        "customers_start": [3200, 2010, 1190],
        "crr": [0.98, 0.97, 0.99],
        "churn_rate": [0.02, 0.03, 0.01],
        "nrr": [np.nan] * 3,
        "gross_revenue_churn": [np.nan] * 3,
        "nps": [np.nan] * 3,
        "mrr_note": ["the period lies within 2024-12: ..."] * 3,
    }
    return pd.DataFrame(base | columns)


def test_the_segment_table_leaves_out_what_no_row_measures_and_says_why():
    table, notes = segment_table(report_rows(), currency="EUR")
    assert "NRR" not in table and "NPS" not in table and "revenue churn" not in table
    assert notes == [
        "NRR and revenue churn not measured: the period lies within 2024-12: ....",
        "NPS not measured: no NPS responses in the period.",
    ]
    assert table["scored"].tolist() == ["3,177", "2,000", "1,177"]  # counts, not 3177.0
    assert table["mean risk"].tolist() == ["2.1%", "3.0%", "1.2%"]
    assert table["revenue at risk"].iloc[0] == "€2,240"
    assert table["segment"].tolist() == ["all", "plan=basic", "plan=pro"]
    for column in table.columns:
        assert not table[column].isin([fmt.MISSING]).all(), column


def test_the_segment_table_keeps_a_metric_some_rows_measure():
    rows = report_rows(nrr=[1.02, np.nan, 0.95], mrr_note=[""] * 3)
    table, notes = segment_table(rows)
    assert table["NRR"].tolist() == ["102.0%", fmt.MISSING, "95.0%"]
    assert all("NRR" not in note for note in notes)


def test_the_metrics_plot_shows_nrr_for_subscriptions_and_repeat_purchases_for_orders():
    subs = report_rows(mrr_start=[100.0, 60.0, 40.0], mrr_end=[90.0, 50.0, 40.0])
    assert "nrr" in default_metric_columns(subs)
    assert "gross_revenue_churn" in default_metric_columns(subs)
    assert "repeat_purchase_rate" not in default_metric_columns(subs)
    orders = report_rows(mrr_start=[0.0] * 3, mrr_end=[0.0] * 3, mrr_note=[""] * 3)
    assert "repeat_purchase_rate" in default_metric_columns(orders)
    assert "nrr" not in default_metric_columns(orders)
    assert "nrr" in default_metric_columns(orders, subscription=True)


def test_a_segment_without_customers_at_the_start_measures_no_revenue_retention():
    """Customers who signed up during the period have December revenue but were no customers at
    t0: their row shows no NRR or revenue churn (not 0 % and 100 %)."""
    from retention.metrics import retention_metrics
    from tests.factories import make_tables

    customers = [
        {"customer_id": "old", "signup_at": "2024-10-01", "plan": "basic"},
        {"customer_id": "new", "signup_at": "2024-12-10", "plan": "pro"},
    ]
    activity = [
        {"customer_id": c, "at": at, "event": "login", "value": 1.0}
        for c, at in [("old", "2024-10-02"), ("old", "2024-12-20"), ("new", "2024-12-11"),
                      ("old", "2025-01-15"), ("new", "2025-01-20"), ("old", "2025-02-27")]
    ]  # fmt: skip
    revenue = [
        {"customer_id": c, "at": at, "amount": 50.0, "kind": "invoice", "period": p}
        for c, at, p in [("old", "2024-12-01", "2024-12-01"), ("new", "2024-12-10", "2024-12-01"),
                         ("old", "2025-01-01", "2025-01-01"), ("new", "2025-01-10", "2025-01-01"),
                         ("old", "2025-02-01", "2025-02-01")]
    ]  # fmt: skip
    tables = make_tables(customers, activity, revenue=revenue)
    report = retention_metrics(tables, "2024-12-05", "2025-01-31", by=["plan"])
    pro = report[(report["dimension"] == "plan") & (report["segment"] == "pro")].iloc[0]
    basic = report[(report["dimension"] == "plan") & (report["segment"] == "basic")].iloc[0]
    assert pro["customers_start"] == 0
    assert np.isnan(pro["nrr"]) and np.isnan(pro["gross_revenue_churn"])
    assert basic["customers_start"] == 1 and basic["nrr"] == pytest.approx(1.0)
