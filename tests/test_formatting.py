"""The one formatter for numbers people read."""

import math

import numpy as np
import pandas as pd
import pytest

from reporting import formatting as f


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, pd.NA, pd.NaT])
def test_missing_values_read_as_a_dash_in_every_formatter(missing):
    for fmt in (f.count, f.percent, f.probability, f.points, f.money, f.number, f.duration_days):
        assert fmt(missing) == f.MISSING
    assert f.interval(missing, 0.5) == f.MISSING


def test_counts_percentages_and_points():
    assert f.count(3177.0) == "3,177"
    assert f.percent(0.1234) == "12.3%"
    assert f.percent(1.0) == "100.0%"
    assert f.percent(0.0) == "0.0%"
    assert f.probability(0.0288) == "2.9%"
    assert f.probability(0.0004) == "<0.1%"
    assert f.points(4.24) == "+4.2 pts"
    assert f.points(-0.51) == "-0.5 pts"
    assert f.points(0.01) == "0.0 pts"
    assert f.points_with_level(12.04, 2.1) == "+12.0 pts (+2.1 the time of year)"
    assert f.points_with_level(-3.0, -1.26) == "-3.0 pts (-1.3 the time of year)"
    assert f.points_with_level(12.04, 0.04) == f.points_with_level(12.04, None) == "+12.0 pts"
    assert f.points_with_level(None, 2.0) == f.points(None)


def test_money_names_its_currency():
    assert f.money(1234.5, "EUR") == "€1,235"  # half away from zero, as prices are rounded
    assert f.money(1235.5, "usd") == "$1,236"
    assert f.money(-20, "GBP") == "-£20"
    assert f.money(99.5, "SEK", digits=2) == "99.50 SEK"
    assert f.money(1500) == "1,500"


def test_small_amounts_keep_their_cents():
    assert f.money(0.59, "USD") == "$0.59" and f.money(-0.67, "USD") == "-$0.67"
    assert f.money(5.0, "USD") == "$5" and f.money(12.4, "USD") == "$12.40"
    # a box's price keeps its pence below 100 (£34.50 had read "£34", £21.50 "£22")
    assert f.money(34.5, "GBP") == "£34.50" and f.money(21.5, "GBP") == "£21.50"
    assert f.money(99.999, "GBP") == "£100" and f.money(250.5, "GBP") == "£251"
    assert f.money(0.59, "USD", digits=1) == "$0.6"


def test_intervals():
    assert f.interval(0.1, 0.15) == "10.0–15.0%"
    assert f.interval(0.7012, 0.7534, kind="number") == "0.701–0.753"
    assert f.interval(1234.4, 98765.0, kind="money", currency="EUR") == "€1,234–€98,765"
    with pytest.raises(ValueError, match="unknown interval kind"):
        f.interval(0, 1, kind="count")


def test_durations_in_the_unit_people_use():
    assert f.duration_days(0.01) == "less than an hour"
    assert f.duration_days(0.5) == "12 hours"
    assert f.duration_days(1) == "1 day"
    assert f.duration_days(34.2) == "34 days"
    assert f.duration_days(60) == "9 weeks"
    assert f.duration_days(248.155) == "8 months"
    assert f.duration_days(1000) == "2.7 years"
    # at most: rounded down, for "nothing within" sentences
    assert f.duration_days(7.79) == "8 days" and f.duration_days(7.79, at_most=True) == "7 days"
    assert f.duration_days(88, at_most=True) == "12 weeks"
    assert f.duration_days(0.99, at_most=True) == "23 hours"
    assert f.duration_days(1000, at_most=True) == "2.7 years"
    assert f.duration_days(1009, at_most=True) == "2.7 years"  # 2.76: not 2.8
    with pytest.raises(ValueError, match="negative"):
        f.duration_days(-1)


def test_plain_numbers():
    assert f.number(3.0) == "3"
    assert f.number(2.345) == "2.3"
    assert f.number(math.inf) == "∞"
    assert f.number(12345.0) == "12,345"


def test_changes_since_the_previous_run_carry_their_sign_and_form():
    assert f.change(12) == "+12"
    assert f.change(-1234) == "-1,234"
    assert f.change(0) == "0"
    assert f.change(-3.25, "number") == "-3.2"
    assert f.change(0.01, "number") == "0"
    assert f.change(1234.6, "money", "EUR") == "+€1,235"
    assert f.change(-20, "money") == "-20"
    assert f.change(None) == f.MISSING
    with pytest.raises(ValueError, match="unknown change form"):
        f.change(1, "percent")


def test_plain_numbers_for_csv_columns():
    shares = np.array([0.1234, 0.0004, 1.0, np.nan])
    assert f.percent_number(shares) == ["12.3", "0.0", "100.0", None]
    assert f.points_number([4.24, -0.51, -0.01, 0.0, None, float("nan")]) == [
        "4.2", "-0.5", "0.0", "0.0", None, None,
    ]  # fmt: skip
    assert f.percent_number([0.12345], digits=2) == ["12.35"]


def test_sizes_in_binary_units():
    assert f.size_bytes(1) == "1 byte"
    assert f.size_bytes(512) == "512 bytes"
    assert f.size_bytes(1536) == "1.5 KiB"
    assert f.size_bytes(70 * 1024**2) == "70.0 MiB"
    assert f.size_bytes(3 * 1024**5) == "3,072.0 TiB"
    assert f.size_bytes(None) == f.MISSING
    with pytest.raises(ValueError, match="negative"):
        f.size_bytes(-1)


def test_a_quantity_of_one_takes_its_unit_in_the_singular():
    assert f.quantity("1", "score points") == "1 score point"
    assert f.quantity("1", "seconds listened") == "1 second listened"
    assert f.quantity("1", "boxes shipped") == "1 box shipped"
    assert f.quantity("1", "bonus points") == "1 bonus point"
    assert f.quantity("1", "EUR") == "1 EUR"
    assert f.quantity("2", "score points") == "2 score points"
    assert f.quantity("1.5", "hours") == "1.5 hours"


def test_band_ranges_say_which_probabilities_each_band_holds():
    """A spreadsheet's "low" read as safe where it held customers at 94 % (a commit log whose
    contributors mostly leave): each band carries its probabilities in words."""
    from reporting.formatting import band_ranges

    assert band_ranges({"high": 0.9646, "medium": 0.9412}) == {
        "high": "96.5% and above",
        "medium": "94.1% to 96.5%",
        "low": "below 94.1%",
    }
    # Thresholds that one decimal would read alike get more decimals.
    assert band_ranges({"high": 0.12345, "medium": 0.12341})["medium"] == "12.34% to 12.35%"
    assert band_ranges({}) == {"low": "all"}
