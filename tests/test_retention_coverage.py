"""Retention that measures only what the data cover: cohort cells outside the data are missing
(never 0 % or 100 %), pooled curves leave them out, plots grey them; revenue cohort retention;
the customers behind one cohort cell."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from features.contract import validate_tables
from retention.metrics import (
    cohort_cell,
    cohort_retention,
    data_coverage,
    retention_curve,
    revenue_cohort_retention,
)
from retention.plots import MISSING_COLOUR, plot_retention_heatmap

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
    C signs up in January but first pays in February (new MRR, not in the base). Feb cohort:
    D 50 -> 50. The data cover 2024-01-01 to 2024-04-01 (January to March whole)."""
    customers = pd.DataFrame(
        {
            "customer_id": list("ABCD"),
            "signup_at": [T("2024-01-10"), T("2024-01-12"), T("2024-01-20"), T("2024-02-05")],
        }
    )
    jan, feb, mar = T("2024-01-01"), T("2024-02-01"), T("2024-03-01")
    rows = [
        ("A", jan, 100.0), ("A", feb, 150.0), ("A", mar, 150.0),
        ("B", jan, 200.0), ("B", feb, 120.0),
        ("C", feb, 80.0), ("C", mar, 80.0),
        ("D", feb, 50.0), ("D", mar, 50.0),
    ]  # fmt: skip
    revenue = pd.DataFrame(rows, columns=["customer_id", "period", "amount"])
    revenue = revenue.assign(at=revenue["period"] + pd.Timedelta(days=10), kind="invoice")
    activity = pd.DataFrame(
        {"customer_id": ["A", "A"], "at": [T("2024-01-01"), T("2024-04-01")], "event": "login"}
    )
    return validate_tables(customers, activity, revenue=revenue)


def test_revenue_cohort_retention_hand_computed():
    """Jan: base A + B = 300; February 150 + 120 = 270 (90 %), March 150 (50 %); C's later MRR
    is new, not kept. Feb: 50 -> 50 (100 %)."""
    r = revenue_cohort_retention(revenue_tables())
    cells = r.table.set_index(["cohort", "period"])
    jan = cells.loc[T("2024-01-01")]
    assert jan["mrr"].tolist() == [300.0, 270.0, 150.0]
    assert jan["retention"].tolist() == pytest.approx([1.0, 0.9, 0.5])
    assert jan["customers_paying"].tolist() == [2, 2, 1]
    assert jan["customers"].iloc[0] == 2 and jan["cohort_size"].iloc[0] == 3
    feb = cells.loc[T("2024-02-01")]
    assert feb["retention"].tolist() == pytest.approx([1.0, 1.0])
    assert math.isnan(r.pivot.loc[T("2024-02-01"), 2])  # April is after the data


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
