"""report.html: the weekly page, its pieces on hand-made inputs, and the page of two real weekly
runs opened in a headless browser (Debian's chromium): it renders, logs nothing to the
console, is not blank, and references nothing outside itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reporting.report_html import (
    Headline,
    ReportInputs,
    alerts_table,
    cohort_table,
    monitoring_section,
    refresh_monitoring,
    render_report,
    revenue_cohort_retention,
    run_notes,
    segment_columns,
    segment_period_line,
    segment_table,
)

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (CI installs it: .ci/run)",
)
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


# --------------------------------------------------------------------------- pieces


def no_riskiest() -> pd.DataFrame:
    """The riskiest customers' table of a report that lists none."""
    return pd.DataFrame(
        columns=["customer_id", "churn_probability", "risk_band", "change_points", "reasons"]
    )


def test_revenue_cohort_retention_is_the_share_of_first_month_revenue_kept():
    """Jan cohort (A, B): 200 in January, 100 in February (B left), 150 in March (A expanded):
    100 %, 50 %, 75 %. Feb cohort (C): 50 then 50. April is not complete: missing, not 0 %. A
    cohort before cohorts_from (D, 2023) is left out."""
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D"],
            "signup_at": pd.to_datetime(
                ["2024-01-10", "2024-01-20", "2024-02-05", "2023-12-01"], utc=True
            ),
        }
    )
    rows = [("A", "2024-01-10", 100), ("A", "2024-02-10", 100), ("A", "2024-03-10", 150),
            ("B", "2024-01-20", 100), ("C", "2024-02-05", 50), ("C", "2024-03-05", 50),
            ("D", "2024-01-01", 70)]  # fmt: skip
    revenue = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "at": pd.to_datetime([r[1] for r in rows], utc=True),
            "amount": [float(r[2]) for r in rows],
        }
    )
    table = revenue_cohort_retention(
        revenue, customers, pd.Timestamp("2024-01-01", tz="UTC"),
        pd.Timestamp("2024-04-02", tz="UTC"), max_period=4,
    )  # fmt: skip
    assert [d.strftime("%Y-%m") for d in table.index] == ["2024-01", "2024-02"]
    assert table.loc["2024-01-01", [0, 1, 2]].tolist() == [1.0, 0.5, 0.75]
    assert table.loc["2024-02-01", [0, 1]].tolist() == [1.0, 1.0]
    assert np.isnan(table.loc["2024-02-01", 2])  # March is complete, April is not
    assert list(table.columns) == [0, 1, 2]  # no cohort reaches period 3: no empty column


def test_cohort_cells_the_data_does_not_cover_are_grey_never_zero():
    pivot = pd.DataFrame(
        {0: [0.8, 0.7], 1: [0.0, np.nan]},
        index=pd.to_datetime(["2024-01-01", "2024-02-01"]),
    )
    page = cohort_table(pivot, pd.Series([40, 30], index=pivot.index), "month", "c", "customers")
    assert page.count('class="na"') == 1 and page.count(">0%<") == 1  # the real zero stays
    assert "2024-02" in page and ">40<" in page


def test_segment_table_formats_numbers_and_leaves_out_columns_missing_everywhere():
    segments = pd.DataFrame(
        {
            "dimension": ["all", "plan"],
            "segment": ["all", "basic"],
            "customers_scored": [3177.0, 1200.0],
            "crr": [0.9, 0.85],
            "crr_low": [0.88, 0.8],
            "crr_high": [0.92, 0.9],
            "nrr": [np.nan, np.nan],
            "revenue_at_risk": [1234.5, 600.0],
            "repeat_purchase_rate": [0.1, 0.2],
            "small_group": [False, True],
            "clv": [1608.0, 19271.0],
            "clv_low": [1400.0, 3900.0],
            "clv_high": [1900.0, np.nan],
        }
    )
    names = [c for c, _, _ in segment_columns(segments, "contractual")]
    assert names == ["customers_scored", "revenue_at_risk", "crr", "clv"]
    assert "repeat_purchase_rate" in [c for c, _, _ in segment_columns(segments, "non_contractual")]
    page = segment_table(segments, "EUR", "contractual")
    assert "3,177" in page and "3177.0" not in page and "€1,235" in page
    assert "90.0%" in page and "88.0–92.0%" in page and "plan: basic (small group)" in page
    assert "nan" not in page.lower() and "net revenue retention" not in page
    # lifetime value with its interval (none where it is unbounded)
    assert '€1,608<br><span class="ci">€1,400–€1,900</span>' in page
    assert "€19,271</td>" in page


def test_headline_figures_show_the_change_since_the_previous_run():
    page = render_report(
        ReportInputs(
            as_of="2024-12-08",
            previous_as_of="2024-12-01",
            headline=Headline(1000, 120, 45.25, 5000.0, alerts=7),
            previous=Headline(990, 100, 40.0, 5600.0),
            probabilities=np.array([0.1, 0.5]),
            bands=np.array(["low", "high"]),
            riskiest=pd.DataFrame(
                {
                    "customer_id": ["007"],
                    "churn_probability": [0.5],
                    "risk_band": ["high"],
                    "change_points": [4.24],
                    "reasons": [[("NPS 3 of 10 (detractor)", 4.2)]],
                }
            ),
            segments=pd.DataFrame({"dimension": ["all"], "segment": ["all"]}),
            currency="GBP",
        )
    )
    assert "+20 since 2024-12-01" in page and "+5.2 since 2024-12-01" in page
    assert "£5,000" in page and "-£600 since 2024-12-01" in page
    assert "NPS 3 of 10 (detractor)" in page and "+4.2 pts" in page
    assert not EXTERNAL.search(page) and "<script" not in page
    assert "45.2<" in page or "45.3<" in page  # a few expected churners keep a decimal
    assert "high band: 12% of 1,000 scored" in page


def test_many_expected_churners_read_as_a_head_count():
    """A purchase log's headline read "Expected churners 12,785.8" beside "Customers at risk
    3,673" (benchmarks/README.md, session 38): a head count is whole, and the high band's
    count says what share of the scored it is."""
    page = render_report(
        ReportInputs(
            as_of="1997-05-01",
            headline=Headline(14692, 3673, 12785.8, None),
            probabilities=np.array([0.9, 0.95]),
            bands=np.array(["low", "high"]),
            riskiest=pd.DataFrame(
                columns=[
                    "customer_id",
                    "churn_probability",
                    "risk_band",
                    "change_points",
                    "reasons",
                ]
            ),
            segments=pd.DataFrame({"dimension": ["all"], "segment": ["all"]}),
        )
    )
    assert ">12,786<" in page and "12,785.8" not in page
    assert "high band: 25% of 14,692 scored" in page


def test_a_first_runs_alerts_say_the_band_not_that_anyone_entered_it():
    """The first run alerts on the high band (serving.alerts): with no previous run, nobody
    "entered" it (a grocery's first report said so of 2,843 customers)."""

    def alerts(previous_as_of: object) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": ["00291541", "00108202"],
                "kinds": [["entered_high"], ["entered_high"]],
                "churn_probability": [0.927, 0.926],
                "previous_probability": [np.nan, 0.4 if previous_as_of else np.nan],
                "change_points": [np.nan, 52.6 if previous_as_of else np.nan],
                "level_change_points": [np.nan, 2.04 if previous_as_of else np.nan],
                "reason": ["No activity in the last 36 days", None],
                "previous_as_of": [previous_as_of, previous_as_of],
            }
        )

    first = alerts_table(alerts(None))
    assert "entered" not in first and "2 in the high band" in first
    assert "a first run: no previous run to compare with" in first
    later = alerts_table(alerts(pd.Timestamp("2001-01-22").date()))
    assert "2 entered the high band" in later and "first run" not in later
    baseline = alerts_table(alerts(pd.Timestamp("2001-01-22").date()), baseline_as_of="2001-01-22")
    assert "2 entered the high band since the scores of 2001-01-22, recomputed" in baseline
    assert "+52.6 pts (+2.0 the time of year)" in later
    # one alert reads as one; kinds that add up to more than the alerts say why
    one = alerts(pd.Timestamp("2001-01-22").date()).iloc[:1]
    assert "<p>1 alert: 1 entered the high band.</p>" in alerts_table(one)
    both = alerts(pd.Timestamp("2001-01-22").date())
    both["kinds"] = [["entered_high", "rose"], ["entered_high"]]
    assert "2 alerts: 2 entered the high band, 1 risk rose" in alerts_table(both)
    assert "(one customer can raise more than one)" in alerts_table(both)
    page = render_report(
        ReportInputs(
            as_of="2001-01-29",
            headline=Headline(8558, 2, 3395.1, 0.0, alerts=2),
            probabilities=np.array([0.927, 0.926]),
            bands=np.array(["high", "high"]),
            riskiest=no_riskiest(),
            segments=pd.DataFrame({"dimension": ["all"], "segment": ["all"]}),
            alerts=alerts(None),
        )
    )
    assert "newly high" not in page and "a first run has nothing to compare with" in page


MONITORED = [
    {
        "as_of": "2024-11-01", "verdict": "fine", "drifted_features": [], "reasons": [],
        "realized": {"realized_rate": 0.052, "realized_rate_lo": 0.041, "realized_rate_hi": 0.065,
                     "predicted_rate": 0.048, "roc_auc": 0.7412},
    },
    {
        "as_of": "2024-12-01", "verdict": "retrain", "drifted_features": ["revenue_30d"],
        "reasons": ["major drift of revenue_30d (PSI 0.41)"],
        "expected": {"churn_rate": 0.031, "roc_auc": 0.731, "roc_auc_lo": 0.70, "roc_auc_hi": 0.76},
    },
]  # fmt: skip


def test_the_monitoring_section_shows_realized_and_expected_figures_newest_first():
    section = monitoring_section(MONITORED)
    assert section.index("2024-12-01") < section.index("2024-11-01")
    assert "5.2% (4.1–6.5%) vs 4.8% predicted" in section and "0.741 realized" in section
    assert "not matured; 3.1% expected" in section and "0.731 expected (0.700–0.760)" in section
    assert "revenue_30d" in section and "major drift of revenue_30d (PSI 0.41)" in section
    assert "nan" not in section.lower()
    assert "Not monitored yet" in monitoring_section(None)


def test_a_written_report_gets_this_runs_monitoring_in_place(tmp_path):
    page = render_report(
        ReportInputs(
            as_of="2024-12-01",
            headline=Headline(10, 1, 0.5, None),
            probabilities=np.array([0.1]),
            bands=np.array(["low"]),
            riskiest=no_riskiest(),
            segments=pd.DataFrame({"dimension": ["all"], "segment": ["all"]}),
        )
    )
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    assert "Not monitored yet" in page
    assert refresh_monitoring(report, MONITORED)
    updated = report.read_text(encoding="utf-8")
    assert "Not monitored yet" not in updated and "retrain" in updated
    assert updated.count("<h2>Monitoring</h2>") == 1 and updated.endswith("</html>")
    older = tmp_path / "old.html"
    older.write_text("<html><body>no section</body></html>")
    assert not refresh_monitoring(older, MONITORED)


# --------------------------------------------------------------------------- in a browser


def chromium(args: list[str], page: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def console_problems(stderr: str) -> list[str]:
    """Console output of the page (the report has no script: any is a problem), uncaught
    errors, and resources that failed to load."""
    return [
        line
        for line in stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "net::ERR" in line
    ]


def screenshot(page: Path, tmp_path: Path, name: str) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    shot = tmp_path / f"{name}.png"
    done = chromium([f"--screenshot={shot}", "--window-size=1200,2000"], page, tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype="float64")
    return pixels, console_problems(done.stderr)


@needs_chromium
def test_the_console_check_sees_a_page_that_fails(tmp_path):
    """The check below can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>throw new Error('boom')</script></body></html>")
    _, problems = screenshot(bad, tmp_path, "bad")
    assert any("Uncaught" in p for p in problems)


@needs_chromium
def test_the_weekly_report_renders_in_a_browser_without_errors(small_champion, tmp_path):
    """Two weekly runs; the second run's report.html opens in chromium with no console error,
    its screenshot is not blank, its text shows the figures with their change and currency,
    and it references nothing outside itself."""
    from serving.batch import run_scoring
    from serving.config import ScoringConfig

    model, version = small_champion.champion.model, small_champion.champion.version
    out = tmp_path / "scores"
    runs = [
        run_scoring(small_champion.tables, day, model, version, out, log=lambda _: None,
                    settings=ScoringConfig(currency="EUR"))
        for day in ("2024-12-01", "2024-12-08")
    ]  # fmt: skip
    page = Path(runs[1].partition) / "report.html"
    source = page.read_text(encoding="utf-8")
    assert not EXTERNAL.search(source), EXTERNAL.search(source)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", source)  # nothing from CSS either
    assert "<script" not in source and "@import" not in source and "@font-face" not in source

    pixels, problems = screenshot(page, tmp_path, "report")
    assert problems == []
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    assert (pixels < 100).mean() > 0.01  # dark text and bars, not only the page's background

    dom = chromium(["--dump-dom"], page, tmp_path)
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "Churn risk as of 2024-12-08" in text
    assert "since 2024-12-01" in text and "€" in text
    assert "Riskiest customers" in text and "Retention by signup cohort" in text
    for word in ("nan", "NaN", "None"):
        assert not re.search(rf"\b{word}\b", text), word
    assert (Path(runs[0].partition) / "report.html").is_file()
    first = (Path(runs[0].partition) / "report.html").read_text(encoding="utf-8")
    assert (
        "first run: changes and alerts against the scores of 2024-11-24, recomputed from the "
        "same data" in first
    )


def test_run_notes_name_lapsed_customers_and_empty_bands():
    summary = {"customers_lapsed": 18649, "band_notes": ["risk band 'high' holds none of the"]}
    assert run_notes(summary) == [
        "Not scored: 18,649 customers without qualifying activity in the model's lookback "
        "window: churned already under the churn definition.",
        "Risk band 'high' holds none of the",
    ]
    assert run_notes({"customers_lapsed": 0, "band_notes": []}) == []
    assert run_notes({}) == []  # a run.json written before these keys existed


def test_a_shops_cohorts_are_its_buyers_from_their_first_purchase(tmp_path):
    """Non-contractual: the cohort table starts customers at their first purchase (a shop log's
    cohorts by first visit read 20 % in their first month, as most visitors never buy); its
    first month is then every buyer, and later months say who bought again."""
    from reporting.report_html import write_partition_report
    from tests.factories import make_tables

    customers, activity = [], []
    for i in range(40):
        cid = f"c{i:02d}"
        customers.append({"customer_id": cid, "signup_at": "2024-01-03"})
        activity.append({"customer_id": cid, "at": "2024-01-05", "event": "view", "value": 1.0})
        if i < 10:  # a quarter buy in February, half of them again in March
            activity.append({"customer_id": cid, "at": "2024-02-10", "event": "purchase", "value": 1.0})  # fmt: skip
            if i < 5:
                activity.append({"customer_id": cid, "at": "2024-03-12", "event": "purchase", "value": 1.0})  # fmt: skip
    activity.append({"customer_id": "c39", "at": "2024-05-31", "event": "view", "value": 1.0})
    # a buyer first seen in the data's first month, who may have bought before it began
    activity.append({"customer_id": "c39", "at": "2024-01-20", "event": "purchase", "value": 1.0})
    tables = make_tables(customers, activity)
    folder = tmp_path / "as_of=2024-06-01"
    folder.mkdir()
    pd.DataFrame(
        {"customer_id": ["c00"], "churn_probability": [0.4], "risk_band": ["high"],
         "probability_delta": [np.nan], "drivers": [[]]}
    ).to_parquet(folder / "scores.parquet")  # fmt: skip
    segments = pd.DataFrame({"dimension": ["all"], "segment": ["all"], "customers_scored": [1]})
    summary = {"as_of": "2024-06-01", "customers_scored": 1, "mean_risk": 0.4,
               "expected_churners": 0.4, "bands": {"high": 1}}  # fmt: skip
    page = write_partition_report(
        folder, tables, segments, summary, None, churn_mode="non_contractual",
        activity_events=("purchase",),
    ).read_text(encoding="utf-8")  # fmt: skip
    assert "Retention by first purchase cohort" in page
    assert "Customers with a purchase in each month since their first purchase" in page
    table = page[page.index('<table class="cohorts">') :]
    table = table[: table.index("</table>")]
    assert "2024-02" in table and "2024-01" not in table  # the buyers' cohort, not the visitors'
    # month 0 is every buyer by construction, so it is no column; month 1: half bought again
    assert ">100%<" not in table and ">50%<" in table
    # the month left out is said, with how many it holds
    assert (
        "Cohorts start in 2024-02: the 1 of 11 customers whose first purchase came before are "
        "left out: the data begins on 2024-01-05"
    ) in page


def test_cohorts_from_a_first_purchase_keep_only_what_they_measure():
    """Month 0 of a cohort counted from its first purchase is 100 % by construction: the column
    goes, and a cohort with no later month goes with it; cohorts by signup keep month 0."""
    from reporting.report_html import measured_cohorts

    pivot = pd.DataFrame(
        {0: [1.0, 1.0, 1.0], 1: [0.5, 0.4, np.nan], 2: [0.3, np.nan, np.nan]},
        index=pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
    )
    kept = measured_cohorts(pivot, from_first_event=True)
    assert list(kept.columns) == [1, 2] and len(kept) == 2
    assert measured_cohorts(pivot, from_first_event=False).equals(pivot)
    assert measured_cohorts(pivot[[0]].iloc[2:], from_first_event=True).empty


def test_the_segment_period_says_whose_counts_differ_from_the_scored():
    """A commit log's report read 145 customers at the end beside 459 scored: under
    non-contractual churn the end counts those active within the period, the run those
    active within the lookback. Said there; not said for subscriptions."""
    segments = pd.DataFrame(
        {"dimension": ["all"], "segment": ["all"], "period_start": [pd.Timestamp("2025-04-02")],
         "period_end": [pd.Timestamp("2025-07-01")]}
    )  # fmt: skip
    shop = segment_period_line(segments, "non_contractual")
    assert "Retention from 2025-04-02 to 2025-06-30 (90 days" in shop
    assert "those at the end one within the period" in shop and "a wider base" in shop
    assert "wider base" not in segment_period_line(segments, "contractual")
