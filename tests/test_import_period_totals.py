"""Activity exported as period totals (a mobile operator's monthly usage: one row per subscriber
and month, the month written "2024-07"). Stamped at the month's first instant, a feature on the
15th would count the whole month, including the half after it: a leak nothing showed. The import
and `churn check` now say so, and `covers = "month"` stamps each total at its month's end."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from features.check import PeriodStarts, check_tables, period_start_warning
from features.config import FeatureConfig
from features.dictionary import describe
from features.signals import build_features
from ingest.importer import config_toml, period_end, run_import
from ingest.mapping import MappingError, parse_mapping
from training.drivers import top_drivers

MONTHS = [f"2024-{m:02d}" for m in range(1, 9)]


def raw_exports(n: int = 40) -> dict[str, pd.DataFrame]:
    ids = [f"0049151{k:05d}" for k in range(n)]  # leading zeros
    customers = pd.DataFrame({"msisdn": ids, "activated": "01.12.2023"})
    rng = np.random.default_rng(0)
    usage = pd.DataFrame(
        [(i, m, float(rng.integers(50, 500))) for i in ids for m in MONTHS],
        columns=["msisdn", "month", "minutes"],
    )
    return {"subscribers": customers, "usage": usage}


def mapping(covers: str | None = None) -> dict:
    at = {"column": "month", "format": "%Y-%m"} | ({"covers": covers} if covers else {})
    return {
        "features": {"value_unit": "minutes", "churn": {"mode": "contractual"}},
        "customers": {
            "source": "subscribers.csv",
            "name": "subscribers",
            "columns": {
                "customer_id": "msisdn",
                "signup_at": {"column": "activated", "dayfirst": True},
            },
        },
        "activity": {
            "source": "usage.csv",
            "name": "usage",
            "columns": {
                "customer_id": "msisdn",
                "at": at,
                "event": {"value": "usage"},
                "value": "minutes",
            },
        },
    }


def minutes_of(month: str, ids: pd.Index) -> np.ndarray:
    """Each customer's minutes in the raw export for one month ("2024-07")."""
    usage = raw_exports()["usage"]
    return usage[usage["month"] == month].set_index("msisdn")["minutes"].loc[ids].to_numpy()


def imported(covers: str | None = None):
    frames = raw_exports()
    return run_import(parse_mapping(mapping(covers), "m.toml"), ".", frames=frames)


def test_month_totals_stamped_at_the_month_start_are_warned_at_import_check_and_training():
    tables, report = imported()
    usage = next(s for s in report.sources if s.label == "usage")
    assert any('covers = "month"' in w and "100.0%" in w for w in usage.warnings), usage.warnings
    config = FeatureConfig.from_dict(mapping()["features"])
    found = [f for f in check_tables(tables, config).findings if f.code == "period_starts"]
    assert len(found) == 1 and found[0].table == "activity" and found[0].column == "at"
    assert "totals of the month" in found[0].message
    # The leak itself: on the 15th of July the whole of July's total already counts.
    july = build_features(tables, pd.Timestamp("2024-07-15"), config).set_index("customer_id")
    assert (july["value_30d"] == minutes_of("2024-07", july.index)).all()


def test_covers_month_stamps_each_total_at_its_month_end_and_features_wait_for_it():
    tables, report = imported("month")
    assert not [w for s in report.sources for w in s.warnings]
    stamps = sorted(tables.activity["at"].unique())
    assert pd.Timestamp(stamps[0]) == pd.Timestamp("2024-01-31 23:59:59")  # January's total
    assert pd.Timestamp(stamps[-1]) == pd.Timestamp("2024-08-31 23:59:59")  # August's
    mapped = parse_mapping(mapping("month"), "m.toml")
    config = FeatureConfig.from_dict(tomllib.loads(config_toml(mapped))["features"])
    assert config.activity_totals == "month"
    assert not [f for f in check_tables(tables, config).findings if f.code == "period_starts"]
    mid = build_features(tables, pd.Timestamp("2024-07-15"), config).set_index("customer_id")
    ids = mid.index
    assert (mid["value_30d"] == minutes_of("2024-06", ids)).all()  # July's is not known yet
    # A run on the 1st sees the month just ended (a run date is its first instant): the
    # period's end itself would be no row before it, and everyone would look idle.
    start = build_features(tables, pd.Timestamp("2024-08-01"), config).set_index("customer_id")
    assert (start.loc[ids, "value_7d"] == minutes_of("2024-07", ids)).all()
    # Windows count whole months: on the last day of July the "7-day" window is still June's
    # total, as on the 15th; every day of a month reads the same.
    last_day = build_features(tables, pd.Timestamp("2024-07-31"), config).set_index("customer_id")
    assert (last_day.loc[ids, "value_7d"] == minutes_of("2024-06", ids)).all()
    assert last_day.loc[ids].equals(
        mid.loc[ids].assign(tenure_days=last_day.loc[ids, "tenure_days"])
    )


def test_windows_over_month_totals_hold_whole_months_after_a_short_february():
    """In days, the 30 days before 1 March 2024 held January's total (01-31 23:59:59) and
    February's, the 30 before them none: a bank's snapshot export read every customer's
    activity as doubled and its trend as +100 %, and expected a third of its churners."""
    tables, _ = imported("month")
    mapped = parse_mapping(mapping("month"), "m.toml")
    config = FeatureConfig.from_dict(tomllib.loads(config_toml(mapped))["features"])
    march = build_features(tables, pd.Timestamp("2024-03-01"), config).set_index("customer_id")
    ids = march.index
    assert (march["value_30d"] == minutes_of("2024-02", ids)).all()
    assert (march["events_30d"] == 1).all()
    three = sum(minutes_of(m, ids) for m in ("2023-12", "2024-01", "2024-02") if m >= "2024-01")
    assert (march["value_90d"] == three).all()  # December is before the export
    feb, jan = minutes_of("2024-02", ids), minutes_of("2024-01", ids)
    trend = march[f"value_trend_{config.trend_window}d"].to_numpy()
    assert np.allclose(trend, (feb - jan) / (feb + jan))


def test_period_end_follows_the_declared_zone_and_billing_cycles():
    second = pd.Timedelta(seconds=1)
    starts = pd.Series(pd.to_datetime(["2024-01-31", "2024-07-15", "2024-02-29"]))
    assert period_end(starts, "month").tolist() == list(
        pd.to_datetime(["2024-02-29", "2024-08-15", "2024-03-29"]) - second
    )
    assert period_end(starts.iloc[:1], "week").iloc[0] == pd.Timestamp("2024-02-07") - second
    assert period_end(starts.iloc[:1], "day").iloc[0] == pd.Timestamp("2024-02-01") - second
    # A Berlin month: 2024-07-01 00:00 local is 2024-06-30 22:00 UTC; it ends 2024-07-31 22:00.
    berlin = pd.Series([pd.Timestamp("2024-06-30 22:00"), pd.Timestamp("2024-02-29 23:00")])
    assert period_end(berlin, "month", "Europe/Berlin").tolist() == [
        pd.Timestamp("2024-07-31 22:00") - second,
        pd.Timestamp("2024-03-31 22:00") - second,  # into summer time: 23:00 -> 22:00 UTC
    ]


def test_events_are_not_period_totals_but_weekly_totals_are():
    rng = np.random.default_rng(1)
    days = pd.Series(pd.date_range("2024-01-01", "2024-06-30", freq="D"))
    dated = pd.DataFrame({"at": days.sample(2000, replace=True, random_state=1).to_numpy()})
    assert period_start_warning(dated) is None  # dates without a time: 1/30 on the 1st
    timed = dated.assign(at=dated["at"] + pd.to_timedelta(rng.integers(0, 86400, 2000), "s"))
    assert period_start_warning(timed) is None
    month_ends = pd.DataFrame({"at": pd.date_range("2024-01-31", periods=6, freq="ME").repeat(20)})
    assert period_start_warning(month_ends) is None  # stamped when known: no leak
    mondays = pd.DataFrame({"at": pd.date_range("2024-01-01", periods=12, freq="W-MON").repeat(9)})
    assert "midnight of a Monday" in period_start_warning(mondays)
    counter = PeriodStarts()
    for part in np.array_split(mondays["at"], 4):  # batch by batch, as the importer reads
        counter.add(part)
    assert counter.found() == "week"
    # Two months of totals are too few to tell from chance.
    two = pd.DataFrame({"at": pd.to_datetime(["2024-01-01", "2024-02-01"]).repeat(30)})
    assert period_start_warning(two) is None


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"column": "month", "format": "%Y-%m", "covers": "year"}, "covers is one of"),
        ({"column": "minutes", "covers": "month"}, r"\[.covers.\] are for timestamp columns"),
    ],
)
def test_covers_is_checked_in_the_mapping(column, message):
    raw = mapping()
    raw["activity"]["columns"]["at" if column["column"] == "month" else "value"] = column
    with pytest.raises(MappingError, match=message):
        parse_mapping(raw, "m.toml")


def test_activity_totals_is_a_known_period():
    with pytest.raises(ValueError, match="activity_totals must be"):
        FeatureConfig(activity_totals="quarter")


def test_reasons_on_month_totals_speak_of_records_and_months_not_of_days_active():
    """With one record per month, "Active on 4% of days" and "Active within the last hour"
    would describe the export's cadence; the reasons count records and gaps in months."""
    frames = raw_exports()
    quiet = frames["usage"]["msisdn"].eq(frames["usage"]["msisdn"].iloc[0]) & frames["usage"][
        "month"
    ].isin(["2024-03", "2024-07", "2024-08"])
    frames["usage"] = frames["usage"][~quiet]  # the first subscriber skips March, July, August
    tables, _ = run_import(parse_mapping(mapping("month"), "m.toml"), ".", frames=frames)
    config = FeatureConfig.from_dict(mapping("month")["features"] | {"activity_totals": "month"})
    rows = build_features(tables, pd.Timestamp("2024-09-01"), config).set_index("customer_id")
    names = [
        "active_day_rate", "days_since_last_event", "active_gap_median_days", "overdue_ratio",
        "lifetime_active_days", "active_days_30d",
    ]  # fmt: skip

    def said(customer: str, totals: str | None = "month") -> dict[str, str]:
        ctx = rows.loc[customer].to_dict()
        return {n: describe(n, activity_totals=totals).text(ctx[n], ctx) for n in names}

    regular = said(rows.index[1])
    assert regular == {
        "active_day_rate": "Activity recorded on 8 dates in the 7 months since the first "
        "(usage reported monthly)",
        "days_since_last_event": "Activity recorded for the latest month (usually every month)",
        "active_gap_median_days": "Activity usually recorded every month",
        "overdue_ratio": "Within the usual gap between activity records (recorded for the "
        "latest month, usually every month)",
        "lifetime_active_days": "Activity recorded on 8 dates over the whole history "
        "(usage reported monthly)",
        "active_days_30d": "Activity recorded on 1 date in the last month (usage reported monthly)",
    }
    skipping = said(rows.index[0])
    assert skipping["active_day_rate"].startswith("Activity recorded on 5 dates in the 7 months")
    assert skipping["days_since_last_event"] == (
        "No activity recorded in the last 8 weeks (usually every month)"  # since 30 June
    )
    assert skipping["active_days_30d"] == "No activity recorded in the last month"
    once = rows.loc[rows.index[1]].to_dict() | {"lifetime_active_days": 1.0}
    assert describe("active_day_rate", activity_totals="month").text(0.005, once) == (
        "Activity recorded once, 7 months ago (usage reported monthly)"
    )
    # Without the setting the same values read as days, which here says nothing of the customer.
    assert said(rows.index[1], None)["active_day_rate"] == (
        "Active on 4% of days since its first activity in the data"  # signed up before it
    )
    # The model's reasons carry the setting (reason_settings -> top_drivers).
    values = rows.loc[[rows.index[0]], ["days_since_last_event", "active_gap_median_days"]]
    got = top_drivers(
        np.array([[0.4, 0.0]]), list(values.columns), values, 1, np.array([[4.0, 0.0]]),
        activity_totals="month",
    ).to_pylist()  # fmt: skip
    assert got[0][0]["reason"] == "No activity recorded in the last 8 weeks (usually every month)"
    assert got[0][0]["label"] == "Days since the last activity record"
    # A record for the latest month is activity, no reason for risk, whatever the contribution
    recent = rows.loc[[rows.index[1]], ["days_since_last_event", "active_gap_median_days"]]
    got = top_drivers(
        np.array([[0.4, 0.0]]), list(recent.columns), recent, 1, np.array([[4.0, 0.0]]),
        activity_totals="month",
    ).to_pylist()  # fmt: skip
    assert got == [[]]


def test_dates_without_a_time_declared_in_a_zone_east_of_utc_are_warned_about():
    """ "2024-07-01" in Europe/Berlin is stored as 2024-06-30 22:00 UTC: July's invoice would be
    June's MRR and a signup on the 1st the previous month's cohort. The import says so, for
    date columns only: times of day and zones west of UTC keep their day."""
    n = 30
    ids = [f"{k:03d}" for k in range(n)]
    days = [f"2024-07-{1 + k % 28:02d}" for k in range(n)]
    frames = {
        "c.csv": pd.DataFrame({"id": ids, "signup": days}),
        "a.csv": pd.DataFrame({"id": ids, "at": [f"{d} 10:30" for d in days]}),
        "r.csv": pd.DataFrame({"id": ids, "at": days, "amount": "10", "period": "2024-07-01"}),
    }

    def zoned(column: str, zone: str) -> dict:
        return {"column": column, "timezone": zone}

    def run(zone: str):
        raw = {
            "features": {"churn": {"mode": "contractual"}},
            "customers": {"source": "c.csv", "columns": {
                "customer_id": "id", "signup_at": zoned("signup", zone)}},
            "activity": {"source": "a.csv", "columns": {
                "customer_id": "id", "at": zoned("at", zone), "event": {"value": "login"}}},
            "revenue": {"source": "r.csv", "columns": {
                "customer_id": "id", "at": zoned("at", zone), "amount": "amount",
                "period": zoned("period", zone)}},
        }  # fmt: skip
        return run_import(parse_mapping(raw, "m.toml"), ".", frames=frames)

    tables, report = run("Europe/Berlin")
    assert tables.revenue["period"].iloc[0] == pd.Timestamp("2024-06-30 22:00")
    warned = [w for w in report.warnings if "dates without a time" in w]
    assert [w.split("'")[3] for w in warned] == ["signup_at", "at", "period"]  # not activity.at
    assert "(2024-07-01 as 2024-06-30 22:00:00)" in warned[0]
    assert "Leave timezone off columns of dates" in warned[0]
    _, west = run("America/New_York")
    assert not [w for w in west.warnings if "dates without a time" in w]


def test_a_month_total_dated_after_a_churn_in_that_month_is_no_activity_after_it():
    """A subscriber who left on 10 August has August's total dated 31 August 23:59:59: usage
    before the churn, not a customer who came back. A total a month later is."""
    tables, _ = imported("month")
    config = FeatureConfig.from_dict(mapping("month")["features"] | {"activity_totals": "month"})
    customers = tables.customers.copy()
    customers.loc[0, "churned_at"] = pd.Timestamp("2024-08-10")
    same_month = check_tables(replace_customers(tables, customers), config)
    assert "after_churn" not in {f.code for f in same_month.findings}
    customers.loc[0, "churned_at"] = pd.Timestamp("2024-07-10")  # August's total is after it
    found = {f.code: f for f in check_tables(replace_customers(tables, customers), config).findings}
    assert found["after_churn"].message.startswith(
        "1 of 1 churned customers are active more than 32 days after their churned_at"
    )


def replace_customers(tables, customers):
    from features.contract import validate_tables

    return validate_tables(customers, tables.activity, tables.feedback, tables.revenue)


def test_period_totals_beside_events_are_worded_as_events():
    """A bank's month-end balances (covers = "month") beside its ledger of events: activity is
    events ("(usage reported monthly)" was said of daily card payments), each total still
    counted from its month's end, and the import report says so."""
    frames = raw_exports()
    frames["calls"] = pd.DataFrame(
        {"msisdn": frames["subscribers"]["msisdn"], "at": "2024-03-05 10:00:00"}
    )
    mixed = mapping("month")
    mixed["activity"] = [
        mixed["activity"],
        {
            "source": "calls.csv",
            "name": "calls",
            "columns": {"customer_id": "msisdn", "at": "at", "event": {"value": "call"}},
        },
    ]
    parsed = parse_mapping(mixed, "m.toml")
    tables, report = run_import(parsed, ".", frames=frames)
    assert pd.Timestamp("2024-01-31 23:59:59") in set(tables.activity["at"])  # still at its end
    config = tomllib.loads(config_toml(parsed))["features"]
    assert "activity_totals" not in config
    assert any(
        "'usage' (month) total a period beside sources of events" in w for w in report.warnings
    )
    only_totals = parse_mapping(mapping("month"), "m.toml")
    assert tomllib.loads(config_toml(only_totals))["features"]["activity_totals"] == "month"
    _, alone = run_import(only_totals, ".", frames=raw_exports())
    assert not [w for w in alone.warnings if "total a period" in w]


def test_window_words_over_month_totals_say_months_and_records():
    """A bank's monthly snapshots read "3 events in the last 90 days", "No products held in the
    last 60 days" and "First activity within the last hour"."""
    words = {
        (f, v): describe(f, activity_totals="month", value_unit="products held").text(v, {})
        for f, v in [
            ("events_90d", 3.0), ("events_30d", 1.0), ("value_trend_30d", np.nan),
            ("days_since_first_event", 1e-5), ("events_trend_30d", -0.5),
        ]
    }  # fmt: skip
    assert words[("events_90d", 3.0)] == "3 records in the last 3 months"
    assert words[("events_30d", 1.0)] == "1 record in the last month"
    assert words[("value_trend_30d", np.nan)] == "No products held in the last 2 months"
    assert words[("days_since_first_event", 1e-5)] == "First activity recorded for the latest month"
    assert words[("events_trend_30d", -0.5)] == "Activity down 67% on the previous month"
    assert describe("events_90d", activity_totals="month").label == "Records in 3 months"
    assert describe("revenue_30d", activity_totals="month").text(0.0, {}) == (
        "No revenue in the last 30 days"  # payments are events, in days
    )
