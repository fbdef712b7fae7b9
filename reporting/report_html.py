"""report.html: the weekly page a customer-success lead opens in a browser.

One self-contained file written into each partition: inline CSS, plots as inline SVG (text
drawn as paths), no script, and nothing loaded from outside (no CDN, no web font, no image
link), so it opens the same from a laptop, a mail attachment or a locked-down network.

It shows the headline figures with their change since the previous run (customers at risk =
the high band, expected churners = the sum of probabilities, revenue at risk = the sum of
probability x monthly revenue, in the configured currency), this week's alerts, the
distribution of risk, the riskiest customers with their reasons in words, the segment table,
and retention curves with customer and revenue retention by signup cohort (cells the data does
not cover are grey, never 0 %). Every number goes through reporting.formatting.

``render_report`` is pure (inputs -> HTML text); ``write_partition_report`` gathers the inputs
from a partition being written and the data's tables.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from reporting import formatting as fmt
from serving.handoff import LAPSED_CSV, SCHEDULED_COLUMN

if TYPE_CHECKING:
    from features.config import ChurnDefinition

REPORT_FILE = "report.html"
MONITORING_FILE = "monitoring.json"  # written by serving.monitoring_job beside the partitions
MONITORING_START, MONITORING_END = "<!-- monitoring -->", "<!-- /monitoring -->"
MONITORING_ROWS = 8
BAND_COLOURS = {"high": "#c0392b", "medium": "#e67e22", "low": "#7f8c8d"}
BANDS = ("high", "medium", "low")
MAX_COHORTS = 24  # the latest cohorts in the cohort tables (a readable page at 70+ cohorts)
MAX_PERIODS = 12


@dataclass(frozen=True)
class Headline:
    """The run's headline figures (None where not measured)."""

    customers_scored: int
    at_risk: int  # customers in the high band
    expected_churners: float
    revenue_at_risk: float | None
    alerts: int | None = None


@dataclass
class ReportInputs:
    """Everything the page shows, already computed."""

    as_of: str
    headline: Headline
    probabilities: np.ndarray  # every scored customer's probability
    bands: np.ndarray  # and band
    riskiest: pd.DataFrame  # customer_id, churn_probability, risk_band, change_points, reasons
    segments: pd.DataFrame
    previous_as_of: str | None = None
    previous: Headline | None = None
    # A first run's changes and alerts are against the scores the model gives the same data a
    # week earlier (serving.batch.first_run_baseline): that date, else None.
    baseline_as_of: str | None = None
    model: str = ""
    currency: str | None = None
    churn_mode: str = "contractual"
    alerts: pd.DataFrame | None = None
    retention: pd.DataFrame | None = None  # cohort x period pivot of customer retention
    retention_sizes: pd.Series | None = None
    retention_curve: pd.DataFrame | None = None  # period, retention, retention_low/high
    revenue_retention: pd.DataFrame | None = None  # cohort x period pivot of MRR kept
    period_unit: str = "month"
    # What starts a customer's cohort: "signup", or under non-contractual churn the first
    # qualifying event, named here ("purchase"): a shop's cohorts are its buyers'
    cohort_start: str = "signup"
    notes: list[str] = field(default_factory=list)
    monitoring: list[dict] | None = None  # entries of SCORES/monitoring.json, oldest first


# --------------------------------------------------------------------------- pieces


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _svg(fig: Figure) -> str:
    """A figure as inline SVG: no XML prologue, no metadata, text as paths (no fonts)."""
    FigureCanvasSVG(fig)
    buffer = io.StringIO()
    # A fixed salt for the SVG's element ids: a rerun writes the same bytes.
    with matplotlib.rc_context({"svg.hashsalt": "churn-report"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return f'<div class="plot">{text}</div>'


def risk_histogram(probabilities: np.ndarray, bands: np.ndarray) -> str:
    """The distribution of risk: customers per probability bin, stacked by band."""
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax = fig.add_subplot()
    p = np.asarray(probabilities, dtype=float) * 100
    if len(p) == 0:
        ax.text(0.5, 0.5, "no customers scored", ha="center", va="center")
        ax.set_axis_off()
        return _svg(fig)
    top = max(float(np.nanmax(p)), 1.0)
    edges = np.linspace(0, top * 1.02, 41)
    present = [b for b in BANDS if (bands == b).any()]
    ax.hist(
        [p[bands == b] for b in present],
        bins=edges,
        stacked=True,
        color=[BAND_COLOURS[b] for b in present],
        label=[f"{b} band" for b in present],
    )
    ax.set_xlabel("churn probability (%)")
    ax.set_ylabel("customers")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def retention_curve_plot(curve: pd.DataFrame, unit: str) -> str:
    """Retention by period pooled over the observed cohorts, with its 95 % interval."""
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax = fig.add_subplot()
    x = curve["period"].astype(int).to_numpy()
    ax.plot(x, curve["retention"] * 100, color="#2c3e50", marker="o", ms=3)
    ax.fill_between(
        x, curve["retention_low"] * 100, curve["retention_high"] * 100, color="#2c3e50", alpha=0.15
    )
    ax.set_xlabel(f"{unit}s since signup")
    ax.set_ylabel("customers active (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    return _svg(fig)


def _cell_colour(share: float) -> str:
    """White (0 %) to dark green (100 %+) for a retention share."""
    s = min(max(share, 0.0), 1.0)
    r, g, b = (int(255 - (255 - c) * s) for c in (39, 174, 96))
    ink = "#fff" if s > 0.6 else "#222"
    return f"background:rgb({r},{g},{b});color:{ink}"


def cohort_table(
    pivot: pd.DataFrame, sizes: pd.Series | None, unit: str, caption: str, size_label: str
) -> str:
    """A cohort x period table: each cell's share coloured; cells the data does not cover
    (missing) are grey with a dash, never 0 %."""
    if pivot is None or pivot.empty:
        return '<p class="note">No cohort the data covers.</p>'
    periods = list(pivot.columns)
    size_head = f"<th>{_e(size_label)}</th>" if sizes is not None else ""
    head = "".join(f"<th>{_e(p)}</th>" for p in periods)
    rows = []
    for cohort, values in pivot.iterrows():
        label = pd.Timestamp(cohort).strftime("%Y-%m" if unit == "month" else "%Y-%m-%d")
        size = f"<td>{fmt.count(sizes.get(cohort))}</td>" if sizes is not None else ""
        cells = []
        for value in values.tolist():
            if fmt.is_missing(value):
                cells.append(f'<td class="na" title="not covered by the data">{fmt.MISSING}</td>')
            else:
                cells.append(
                    f'<td style="{_cell_colour(float(value))}">{_e(fmt.percent(value, 0))}</td>'
                )
        rows.append(f"<tr><th>{_e(label)}</th>{size}{''.join(cells)}</tr>")
    return (
        f'<table class="cohorts"><caption>{_e(caption)}</caption>'
        f"<thead><tr><th>cohort</th>{size_head}{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


# (column, header, form) of the segment table; forms: count, percent, number, money, nps.
SEGMENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("customers_scored", "customers scored", "count"),
    ("share_high", "in the high band", "percent"),
    ("mean_risk", "mean risk", "percent"),
    ("expected_churners", "expected churners", "number"),
    ("revenue_at_risk", "revenue at risk", "money"),
    ("customers_start", "customers at start", "count"),
    ("lost", "lost", "count"),
    ("crr", "retention (CRR)", "percent"),
    ("churn_rate", "churn rate", "percent"),
    ("nrr", "net revenue retention", "percent"),
    ("gross_revenue_churn", "revenue churn", "percent"),
    ("repeat_purchase_rate", "repeat purchase rate", "percent"),
    ("nps", "NPS", "nps"),
    ("clv", "lifetime value", "money"),
)
INTERVALS = {
    "crr": ("crr_low", "crr_high"),
    "churn_rate": ("churn_low", "churn_high"),
    "repeat_purchase_rate": ("repeat_purchase_low", "repeat_purchase_high"),
    "clv": ("clv_low", "clv_high"),
}


def _format(value: object, form: str, currency: str | None) -> str:
    if form == "count":
        return fmt.count(value)
    if form == "percent":
        return fmt.percent(value)
    if form == "money":
        return fmt.money(value, currency)
    if form == "nps":
        return fmt.number(value, 0) if not fmt.is_missing(value) else fmt.MISSING
    return fmt.number(value)


def segment_columns(segments: pd.DataFrame, churn_mode: str) -> list[tuple[str, str, str]]:
    """The segment table's columns: those of SEGMENT_COLUMNS the report has, without any that
    is missing in every row, and without repeat purchases for subscriptions."""
    chosen = []
    for name, header, form in SEGMENT_COLUMNS:
        if name not in segments or segments[name].isna().all():
            continue
        if name == "repeat_purchase_rate" and churn_mode == "contractual":
            continue
        chosen.append((name, header, form))
    return chosen


def segment_period_line(segments: pd.DataFrame, churn_mode: str = "contractual") -> str:
    """What period the segment table's retention figures cover, and the bands they judge ("" for
    a table without its period). Under non-contractual churn, also who the customers at the
    start and the end are: a commit log read 145 at the end beside 459 scored, two bases."""
    if segments.empty or not {"period_start", "period_end"} <= set(segments.columns):
        return ""
    start = pd.Timestamp(segments["period_start"].iloc[0])
    end = pd.Timestamp(segments["period_end"].iloc[0])
    last = (end - pd.Timedelta(days=1)).date()
    bands = (
        f"; the risk_band rows group customers by their band in the last run on or before "
        f"{start.date()}"
        if "risk_band" in set(segments["dimension"])
        else ""
    )
    bases = (
        " Customers at the start had a qualifying event in the lookback before it, those at the "
        "end one within the period; the run scores everyone with one in the model's lookback, "
        "a wider base than the end's."
        if churn_mode == "non_contractual"
        else ""
    )
    return (
        f'<p class="note">Retention from {start.date()} to {last} ({(end - start).days} days: '
        f"the churn horizon before this run){bands}. Mean risk, expected churners and the bands "
        f"are this run's, for the horizon ahead.{bases}</p>"
    )


def segment_table(segments: pd.DataFrame, currency: str | None, churn_mode: str) -> str:
    """The segment report as an HTML table: formatted numbers, intervals under their rate."""
    columns = segment_columns(segments, churn_mode)
    head = "".join(f"<th>{_e(h)}</th>" for _, h, _ in columns)
    rows = []
    for record in segments.to_dict("records"):
        dimension, segment = str(record["dimension"]), str(record["segment"])
        name = "all customers" if dimension == "all" else f"{dimension}: {segment}"
        if record.get("small_group") is True:
            name += " (small group)"
        cells = []
        for column, _, form in columns:
            text = _e(_format(record.get(column), form, currency))
            low_high = INTERVALS.get(column)
            if low_high and all(k in record for k in low_high):
                band = fmt.interval(
                    record[low_high[0]], record[low_high[1]], form, currency=currency
                )
                if band != fmt.MISSING:
                    text += f'<br><span class="ci">{_e(band)}</span>'
            cells.append(f"<td>{text}</td>")
        kind = ' class="total"' if dimension == "all" else ""
        rows.append(f"<tr{kind}><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return (
        '<table class="segments"><thead><tr><th>segment</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _card(title: str, value: str, change: str | None, note: str) -> str:
    delta = f'<div class="delta">{_e(change)}</div>' if change is not None else ""
    return (
        f'<div class="card"><div class="label">{_e(title)}</div>'
        f'<div class="value">{_e(value)}</div>{delta}<div class="sub">{_e(note)}</div></div>'
    )


def headline_cards(inputs: ReportInputs) -> str:
    now, before, currency = inputs.headline, inputs.previous, inputs.currency
    since = f"since {inputs.previous_as_of}" if inputs.previous_as_of else None

    def delta(current: float | None, previous: float | None, form: str) -> str | None:
        if before is None or since is None:
            return None
        if current is None or previous is None:
            return f"{fmt.MISSING} {since}"
        return f"{fmt.change(current - previous, form, currency)} {since}"

    cards = [
        _card(
            "Customers at risk",
            fmt.count(now.at_risk),
            delta(now.at_risk, before.at_risk if before else None, "count"),
            f"high band: {fmt.percent(now.at_risk / now.customers_scored, 0)} of "
            f"{fmt.count(now.customers_scored)} scored"
            if now.customers_scored
            else "high band, of 0 scored",
        ),
        _card(
            "Expected churners",
            # a head count: whole from 100 on ("12,785.8" read as a false precision)
            fmt.number(now.expected_churners, 0 if now.expected_churners >= 100 else 1),
            delta(now.expected_churners, before.expected_churners if before else None, "number"),
            "sum of the churn probabilities",
        ),
        _card(
            "Revenue at risk",
            fmt.money(now.revenue_at_risk, currency),
            delta(now.revenue_at_risk, before.revenue_at_risk if before else None, "money"),
            "not measured: the data has no revenue rows"
            if now.revenue_at_risk is None
            else "probability x monthly revenue"
            + ("" if currency else " (no currency configured)"),
        ),
    ]
    if now.alerts is not None:
        what = (
            "newly high, risen or new top reason"
            if inputs.previous_as_of
            else f"newly high, risen or new top reason since {inputs.baseline_as_of} "
            "(a first run: that date's scores, recomputed)"
            if inputs.baseline_as_of
            else "the high band: a first run has nothing to compare with"
        )
        cards.append(_card("Alerts", fmt.count(now.alerts), None, what))
    return f'<div class="cards">{"".join(cards)}</div>'


def riskiest_table(riskiest: pd.DataFrame, changes: bool = True) -> str:
    """The riskiest customers with their reasons; `changes`: with the change since the previous
    run (a table scored once has none)."""
    rows = []
    for r in riskiest.to_dict("records"):
        reasons = "".join(
            f"<li>{_e(text)}{'' if fmt.is_missing(pts) else f' <span class=pts>{_e(fmt.points(pts))}</span>'}</li>"
            for text, pts in r["reasons"]
        )
        change = (
            f"<td>{_e(fmt.points_with_level(r['change_points'], r.get('level_points')))}</td>"
            if changes
            else ""
        )
        rows.append(
            f"<tr><th>{_e(r['customer_id'])}</th>"
            f"<td>{_e(fmt.probability(r['churn_probability']))}</td>"
            f'<td><span class="band {_e(r["risk_band"])}">{_e(r["risk_band"])}</span></td>'
            f"{change}<td><ul>{reasons}</ul></td></tr>"
        )
    return (
        '<table class="riskiest"><thead><tr><th>customer</th><th>churn probability</th>'
        f"<th>band</th>{'<th>change</th>' if changes else ''}<th>reasons</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


KIND_WORDS = {
    "entered_high": "entered the high band",
    "new_high": "new in the high band",
    "rose": "risk rose",
    "new_top_reason": "new top reason",
}
# A first run (no previous run) alerts on the high band (serving.alerts): nobody "entered" it,
# as a grocery's first report said of 2,843 customers.
FIRST_RUN_KIND_WORDS = KIND_WORDS | {"entered_high": "in the high band"}


def alerts_table(alerts: pd.DataFrame, limit: int = 15, baseline_as_of: str | None = None) -> str:
    if alerts is None or alerts.empty:
        return '<p class="note">No alerts this week.</p>'
    first_run = bool(alerts["previous_as_of"].isna().all())
    words = FIRST_RUN_KIND_WORDS if first_run else KIND_WORDS
    counts = {k: int(sum(k in list(ks) for ks in alerts["kinds"])) for k in words}
    summary = ", ".join(f"{fmt.count(n)} {words[k]}" for k, n in counts.items() if n)
    if sum(counts.values()) > len(alerts):  # "71 alerts: 46 ..., 8 ..., 26 ..." summed to 80
        summary += " (one customer can raise more than one)"
    if first_run:
        summary += " (a first run: no previous run to compare with)"
    elif baseline_as_of:
        summary += f" since the scores of {baseline_as_of}, recomputed (a first run)"
    rows = []
    for r in alerts.head(limit).to_dict("records"):
        kinds = ", ".join(words.get(k, k) for k in r["kinds"])
        before = fmt.probability(r["previous_probability"])
        moved = fmt.points_with_level(r["change_points"], r.get("level_change_points"))
        rows.append(
            f"<tr><th>{_e(r['customer_id'])}</th><td>{_e(kinds)}</td>"
            f"<td>{_e(fmt.probability(r['churn_probability']))}</td><td>{_e(before)}</td>"
            f"<td>{_e(moved)}</td>"
            f"<td>{_e(r['reason'] if not fmt.is_missing(r['reason']) else fmt.MISSING)}</td></tr>"
        )
    more = (
        f'<p class="note">{fmt.count(len(alerts) - limit)} more in alerts.csv.</p>'
        if len(alerts) > limit
        else ""
    )
    return (
        f"<p>{_e(fmt.count(len(alerts)))} alert{'' if len(alerts) == 1 else 's'}: "
        f"{_e(summary)}.</p>"
        '<table class="alerts"><thead><tr><th>customer</th><th>why</th><th>probability now</th>'
        "<th>before</th><th>change</th><th>top reason</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;background:#f4f6f8;color:#222}
main{max-width:1150px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 10px;border-bottom:2px solid #dde3e8;
padding-bottom:4px}.meta{color:#555;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:14px}.card{background:#fff;border-radius:8px;padding:14px 18px;
min-width:200px;flex:1;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card .label{color:#555;font-size:13px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:30px;font-weight:700;margin:6px 0}.card .delta{font-weight:600;color:#2c3e50}
.card .sub{color:#777;font-size:12px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0;
box-shadow:0 1px 3px rgba(0,0,0,.1)}
th,td{padding:5px 8px;border-bottom:1px solid #e5e9ed;text-align:right;vertical-align:top}
thead th{background:#2c3e50;color:#fff;font-weight:600;position:sticky;top:0}
tbody th{text-align:left;font-weight:600}tr.total{background:#eef3f7}
.riskiest td:last-child,.alerts td:last-child{text-align:left}
.riskiest ul{margin:0;padding-left:16px}.pts{color:#c0392b;font-weight:600}
.ci{color:#777;font-size:11px}.note{color:#666;font-size:13px}
.monitoring td{text-align:left}.verdict-fine{color:#1e8449;font-weight:600}
.verdict-watch{color:#d68910;font-weight:600}.verdict-retrain{color:#c0392b;font-weight:600}
.band{padding:1px 7px;border-radius:9px;color:#fff;font-size:12px}
.band.high{background:#c0392b}.band.medium{background:#e67e22}.band.low{background:#7f8c8d}
.cohorts td{min-width:34px;text-align:center;font-size:12px}.cohorts td.na{background:#d5d8dc;color:#888}
.plot{background:#fff;padding:8px;box-shadow:0 1px 3px rgba(0,0,0,.1);display:inline-block}
.plot svg{max-width:100%;height:auto}.scroll{overflow-x:auto}
"""


def render_report(inputs: ReportInputs) -> str:
    """The page for one run, as HTML text (self-contained: inline CSS and SVG, no script)."""
    previous = (
        f" · compared with the run of {_e(inputs.previous_as_of)}"
        if inputs.previous_as_of
        else f" · first run: changes and alerts against the scores of "
        f"{_e(inputs.baseline_as_of)}, recomputed from the same data"
        if inputs.baseline_as_of
        else " · first run: no previous run to compare with"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Churn risk as of {_e(inputs.as_of)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Churn risk as of {_e(inputs.as_of)}</h1>",
        f'<p class="meta">{_e(inputs.model)}{previous}</p>',
        headline_cards(inputs),
        "<h2>Alerts this week</h2>",
        alerts_table(inputs.alerts, baseline_as_of=inputs.baseline_as_of)
        if inputs.alerts is not None
        else "",
        "<h2>Distribution of risk</h2>",
        risk_histogram(inputs.probabilities, inputs.bands),
        "<h2>Riskiest customers</h2>",
        riskiest_table(inputs.riskiest),
        *(
            [f'<p class="note">{_e(leaving_out_note(inputs.riskiest))}</p>']
            if leaving_out_note(inputs.riskiest)
            else []
        ),
        "<h2>Segments</h2>",
        segment_period_line(inputs.segments, inputs.churn_mode),
        '<div class="scroll">'
        + segment_table(inputs.segments, inputs.currency, inputs.churn_mode)
        + "</div>",
    ]
    parts += [f'<p class="note">{_e(n)}</p>' for n in inputs.notes]
    by_signup = inputs.cohort_start == "signup"
    start = "signup" if by_signup else f"first {inputs.cohort_start}"
    parts.append(f"<h2>Retention by {start} cohort</h2>")
    if inputs.retention_curve is not None and not inputs.retention_curve.empty:
        parts.append(retention_curve_plot(inputs.retention_curve, inputs.period_unit))
    active = (
        "active"
        if inputs.cohort_start in ("signup", "activity")
        else f"with a {inputs.cohort_start}"
    )
    parts.append(
        '<div class="scroll">'
        + cohort_table(
            inputs.retention,
            inputs.retention_sizes,
            inputs.period_unit,
            f"Customers {active} in each {inputs.period_unit} since their {start} (grey: not "
            "covered by the data)",
            "customers",
        )
        + "</div>"
    )
    if inputs.revenue_retention is not None:
        parts.append("<h2>Revenue retention by signup cohort</h2>")
        parts.append(
            '<div class="scroll">'
            + cohort_table(
                inputs.revenue_retention,
                None,
                "month",
                "Share of the cohort's recurring revenue of their first paid month (the signup "
                "month or the next) kept in each month since, net of expansion (grey: not "
                "covered by the data)",
                "",
            )
            + "</div>"
        )
    parts.append(monitoring_section(inputs.monitoring))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def monitoring_section(entries: list[dict] | None) -> str:
    """Were past scores right, and do this run's customers look like the training data: the
    latest partitions' monitoring verdicts (serving.monitoring_job), between markers so that
    the weekly job can refresh it once this run's own monitoring is done."""
    from serving.monitoring_job import entry_in_words  # the terminal's words, too

    parts = [MONITORING_START, "<h2>Monitoring</h2>"]
    if not entries:
        parts.append(
            '<p class="note">Not monitored yet: <code>churn score</code> examines each run after '
            "writing it (or run <code>churn monitor</code>).</p>"
        )
        return "\n".join([*parts, MONITORING_END])
    parts.append(
        '<p class="note">Realized churn once a run\'s horizon has passed (with its 95 % '
        "interval) against what was predicted; before that, the ROC AUC the calibrated "
        "probabilities imply (CBPE). Major drift: features whose distribution moved away from "
        "the training data (PSI of 0.25 or more); a moderate one (0.1-0.25) can be a reason "
        "to watch.</p>"
    )
    rows = []
    for e in entries[-MONITORING_ROWS:][::-1]:
        words = entry_in_words(e)
        churn, auc, drifted, reason = words.churn, words.roc_auc, words.drifted, words.reason
        verdict = str(e.get("verdict", ""))
        rows.append(
            f"<tr><td>{_e(e.get('as_of', ''))}</td>"
            f'<td><span class="verdict-{_e(verdict)}">{_e(verdict)}</span></td>'
            f"<td>{_e(churn)}</td><td>{_e(auc)}</td><td>{_e(drifted)}</td><td>{_e(reason)}</td></tr>"
        )
    parts.append(
        '<table class="monitoring"><thead><tr><th>run</th><th>verdict</th><th>churn</th>'
        "<th>ROC AUC</th><th>major drift</th><th>why</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return "\n".join([*parts, MONITORING_END])


def read_monitoring(scores_dir: Path) -> list[dict] | None:
    """The entries of SCORES/monitoring.json, or None when there is none (or it is unreadable:
    the report then says it is not monitored rather than failing the run)."""
    path = Path(scores_dir) / MONITORING_FILE
    if not path.is_file():
        return None
    try:
        return list(json.loads(path.read_text()).get("partitions", []))
    except (OSError, ValueError, AttributeError):
        return None


def refresh_monitoring(report: Path, entries: list[dict] | None) -> bool:
    """Replace the monitoring section of a written report.html (atomically) with `entries`;
    False when the page has no such section (a report written before it existed)."""
    from features.io import atomic_file

    report = Path(report)
    text = report.read_text(encoding="utf-8")
    start, end = text.find(MONITORING_START), text.find(MONITORING_END)
    if start < 0 or end < start:
        return False
    updated = text[:start] + monitoring_section(entries) + text[end + len(MONITORING_END) :]
    with atomic_file(report) as tmp:
        tmp.write_text(updated, encoding="utf-8")
    return True


# --------------------------------------------------------------------------- gathering


def _driver_reasons(drivers: Sequence[dict[str, Any]] | None) -> list[tuple[str, float | None]]:
    from serving.alerts import driver_reason

    out = []
    for d in list(drivers if drivers is not None else [])[:3]:
        text = driver_reason(d)
        if text:
            out.append((text, d.get("risk_points")))
    return out


def has_scheduled_cancellation(drivers: object) -> bool:
    """Whether a scored customer's first reason is a cancellation the export holds (serving.
    batch: such a customer's first driver says so)."""
    return drivers is not None and len(drivers) > 0 and drivers[0]["feature"] == SCHEDULED_COLUMN


def riskiest_customers(scores_path: Path, n: int = 20) -> pd.DataFrame:
    """The n riskiest customers of a scores.parquet with their change and reasons, leaving out
    those whose cancellation the export holds: they lead scores.csv at 95 % and more, and a
    news site's first report listed nothing else, where 274 others in the high band were still
    to be saved. `leaving_out`: in .attrs, how many such customers ranked above the last one
    listed."""
    slim = pq.read_table(scores_path, columns=["customer_id", "churn_probability"])
    p = slim.column("churn_probability").to_numpy()
    ids = slim.column("customer_id").to_numpy(zero_copy_only=False).astype(str)
    order = np.argsort(-p, kind="stable")
    # level_delta: not in older partitions; a dataset's schema, so that the Spark engine's
    # folder of part files reads as a file does
    dataset = ds.dataset(str(scores_path), format="parquet")
    columns = ["customer_id", "churn_probability", "risk_band", "probability_delta", "drivers"]
    columns += [c for c in ["level_delta"] if c in dataset.schema.names]
    take, frame = 4 * n, None
    while True:  # the drivers of the riskiest rows only, more of them while notices fill them
        wanted = ids[order[:take]]
        rows = dataset.to_table(columns=columns, filter=ds.field("customer_id").isin(wanted))
        frame = (
            rows.to_pandas()
            .assign(customer_id=lambda f: f["customer_id"].astype(str))
            .set_index("customer_id")
            .loc[wanted]
            .reset_index()
        )
        notice = frame["drivers"].map(has_scheduled_cancellation).to_numpy(dtype=bool)
        if (~notice).sum() >= n or take >= len(order):
            break
        take *= 4
    kept = np.flatnonzero(~notice)[:n]
    last = kept[-1] if len(kept) else len(frame) - 1
    leaving_out = int(notice[: last + 1].sum())
    frame = frame.iloc[kept].reset_index(drop=True)
    level = frame["level_delta"] if "level_delta" in frame else pd.Series(np.nan, frame.index)
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "churn_probability": frame["churn_probability"],
            "risk_band": frame["risk_band"].astype(str),
            "change_points": frame["probability_delta"] * 100,
            "level_points": level * 100,
            "reasons": [_driver_reasons(d) for d in frame["drivers"]],
        }
    )
    out.attrs["leaving_out"] = leaving_out
    return out


def leaving_out_note(riskiest: pd.DataFrame) -> str:
    """The line under the riskiest customers on those left out of them ("" when none)."""
    count = int(riskiest.attrs.get("leaving_out", 0))
    if not count:
        return ""
    who = "customer" if count == 1 else "customers"
    return (
        f"Not listed: {fmt.count(count)} {who} whose cancellation the export holds, who rank "
        "among these; scores.csv lists them first, with the date in cancellation_scheduled."
    )


def headline_of(summary: dict[str, Any], segments: pd.DataFrame, alerts: int | None) -> Headline:
    """Headline figures from a run's run.json and its segment report's 'all' row."""
    everyone = segments[segments["dimension"] == "all"]
    revenue = None
    if len(everyone) and "revenue_at_risk" in everyone:
        value = everyone["revenue_at_risk"].iloc[0]
        revenue = None if fmt.is_missing(value) else float(value)
    return Headline(
        customers_scored=int(summary["customers_scored"]),
        at_risk=int(summary.get("bands", {}).get("high", 0)),
        expected_churners=float(summary["expected_churners"]),
        revenue_at_risk=revenue,
        alerts=alerts,
    )


def previous_headline(partition: Path) -> Headline | None:
    """The headline of an earlier partition (None when its files cannot tell it)."""
    try:
        summary = json.loads((partition / "run.json").read_text())
        segments = pd.read_parquet(partition / "segments.parquet")
        return headline_of(summary, segments, None)
    except (OSError, KeyError, ValueError):
        return None


def revenue_cohort_retention(
    revenue: pd.DataFrame,
    customers: pd.DataFrame,
    cohorts_from: pd.Timestamp,
    observed_until: pd.Timestamp,
    max_period: int = MAX_PERIODS,
) -> pd.DataFrame:
    """The page's revenue retention by signup month: retention.metrics.revenue_cohort_retention
    (the one implementation: the share of the cohort's first paid month's MRR kept, net of
    expansion; months the data do not cover whole are missing, never 0 %) as cohort rows x
    period columns, the latest MAX_COHORTS cohorts."""
    from features.contract import Tables, empty_table
    from retention.metrics import revenue_cohort_retention as by_cohort

    tables = Tables(
        customers=customers,
        activity=empty_table("activity"),
        feedback=empty_table("feedback"),
        revenue=revenue,
    )
    result = by_cohort(
        tables,
        cohorts_from=cohorts_from,
        observed_from=cohorts_from,
        observed_until=observed_until,
        max_period=max_period,
    )
    if result.table.empty:
        return pd.DataFrame()
    share = result.pivot
    share.index = pd.DatetimeIndex(share.index)
    share.columns = [int(c) for c in share.columns]
    share = share.dropna(how="all")
    return share.dropna(axis=1, how="all").tail(MAX_COHORTS)


def measured_cohorts(pivot: pd.DataFrame, from_first_event: bool) -> pd.DataFrame:
    """The cohort table without what measures nothing: cohorts counted from their first
    qualifying event are all active in their month 0 (100 % by construction), so that column
    goes, and a cohort with no later month observed goes with it (a grocery's 4-month export
    showed one cell, "2000-12 | 3,282 | 100%"). Cohorts by signup keep month 0 (who was active
    in the month they signed up)."""
    if not from_first_event or 0 not in pivot.columns:
        return pivot
    return pivot.drop(columns=0).dropna(how="all")


def not_scored_note(
    summary: dict[str, Any], churn: ChurnDefinition | None = None, as_of: str | None = None
) -> str | None:
    """Who a non-contractual run left unscored, in words (None: nobody): customers without
    qualifying activity in the lookback window, split into those who had some before (churned
    already under the definition) and those who never had any (browsers who never bought: no
    churn of theirs; a shop log's 21,455 "churned already" were 4,096 lapsed buyers and
    17,359 browsers). `churn` and `as_of` name the events and the window; without them the
    sentence says "qualifying" and "the model's lookback window"."""
    lapsed = int(summary.get("customers_lapsed", 0) or 0)
    if not lapsed:
        return None
    events = "qualifying"
    window = "in the model's lookback window"
    if churn is not None:
        if churn.qualifying_events:
            events = " or ".join(f"'{e}'" for e in churn.qualifying_events)
        if churn.lookback_days and as_of:
            window = f"in the {churn.lookback_days} days before {as_of} (the model's lookback)"
    text = f"{lapsed:,} customers without {events} activity {window}"
    never = summary.get("customers_never_active")
    if never is None:  # a run from before the split
        return f"{text}: churned already under the churn definition"
    never, before = int(never), lapsed - int(never)
    parts = []
    if before:
        listed = (
            f" ({LAPSED_CSV} lists them, the most recently lapsed first: a win-back list)"
            if summary.get("customers_lapsed_listed")
            else ""
        )
        parts.append(
            f"{before:,} had some before, churned already under the churn definition{listed}"
        )
    if never:
        early = int(summary.get("customers_never_active_before_history") or 0)
        start = summary.get("history_start")
        parts.append(
            f"{never:,} never had any in the data, not buyers yet"
            + (
                f" ({early:,} of them signed up before its first record on {start}: a purchase "
                "of theirs before that is not in the export)"
                if early and start
                else ""
            )
        )
    return f"{text}: {'; '.join(parts)}"


def run_notes(summary: dict[str, Any]) -> list[str]:
    """What run.json says a reader of the figures should know: customers not scored because
    they had lapsed already or sign up on or after the run date, customers whose cancellation
    is scheduled, an export that ends long before the run date or a table that stops before the
    others (stale_tables), a quiet week in everyone's recent windows (features.check.
    recent_quiet_week_notes), risk bands that hold nobody (serving.batch.empty_band_notes) and
    how the time of year moves the probabilities (level_note) and moved them since the
    previous run (level_moved_note)."""
    notes = []
    unscored = not_scored_note(summary)
    if unscored:
        notes.append(f"Not scored: {unscored}.")
    leaving = int(summary.get("cancellations_scheduled") or 0)
    if leaving:
        soon = int(summary.get("cancellations_scheduled_in_horizon") or 0)
        share = summary.get("scheduled_cancellation_share")
        how = (
            f"scored as {fmt.percent(float(share), 0)} sure to leave on that date and at the "
            "model's risk otherwise, with the date as their first reason; those after the "
            "horizon as staying through it unless they withdraw"
            if share
            else "scored by their behaviour"
        )
        notes.append(
            f"{fmt.count(leaving)} customer{'s have' if leaving > 1 else ' has'} a cancellation "
            f"scheduled in the export ({fmt.count(soon)} within the model's horizon: {how}); "
            "scores.csv gives the date (cancellation_scheduled)."
        )
    joining = int(summary.get("customers_signing_up_from_run_date") or 0)
    if joining:
        notes.append(
            f"{fmt.count(joining)} customer{'s sign' if joining > 1 else ' signs'} up on or "
            "after the run date: not scored yet, from the first run after the signup on."
        )
    levels = [summary.get("level_note"), summary.get("level_moved_note")]
    said = [
        *summary.get("stale_tables", []),
        *summary.get("quiet_week_notes", []),
        *summary.get("band_notes", []),
        *filter(None, levels),
    ]
    return notes + [f"{note[0].upper()}{note[1:]}" for note in said]


def write_partition_report(
    folder: Path,
    tables: Any,
    segments: pd.DataFrame,
    summary: dict[str, Any],
    previous: tuple[pd.Timestamp, Path] | None,
    *,
    currency: str | None = None,
    churn_mode: str = "contractual",
    activity_events: Sequence[str] | None = None,
    model: str = "",
    alerts: pd.DataFrame | None = None,
) -> Path:
    """Gather a partition's figures (its scores already written into ``folder``), the previous
    partition's headline and the data's cohort retention, and write report.html. tables None
    (the Spark engine, whose tables do not fit one machine): the page without cohort
    retention, and a note that says where to measure it."""
    from retention.metrics import cohort_retention, cohorts_left_out, month_of, retention_curve

    folder = Path(folder)
    scores = pq.read_table(folder / "scores.parquet", columns=["churn_probability", "risk_band"])
    notes = [n for n in segments.get("mrr_note", pd.Series(dtype=str)).dropna().unique() if n]
    notes = [f"Net revenue retention not measured: {notes[0]}."] if notes else []
    notes += run_notes(summary)
    retention = sizes = curve = revenue = None
    if tables is None:
        notes.append(
            "Cohort retention is not measured on the Spark engine (it reads the whole tables): "
            "`churn retention --data FOLDER` measures it on one machine, on the data or a sample "
            "of its customers."
        )
    activity = tables.activity if tables is not None else pd.DataFrame()
    revenue_rows = tables.revenue if tables is not None else pd.DataFrame()
    # Non-contractual: cohorts of buyers, from their first qualifying event (a shop log's
    # cohorts by first visit read 20 % in their first month: most visitors never buy).
    buyers = churn_mode == "non_contractual"
    cohort_start = "signup"
    if buyers:
        from features.dictionary import qualifying_noun

        cohort_start = qualifying_noun(activity_events) if activity_events else "activity"
    if len(activity) or len(revenue_rows):
        start = tables.history_start()
        # Only cohorts that signed up once the recorded history had started: their every period
        # is covered by the data (an earlier cohort's first periods were never recorded).
        cohorts_from = month_of(start, months_after=1)
        if len(activity):
            result = cohort_retention(
                tables,
                cohorts_from=cohorts_from,
                activity_events=activity_events,
                max_period=MAX_PERIODS,
                anchor="first_activity" if buyers else "signup",
            )
            pivot = measured_cohorts(result.pivot, buyers) if not result.table.empty else None
            earlier = cohorts_left_out(
                tables, cohorts_from, "first_activity" if buyers else "signup", activity_events
            )
            if earlier:
                whose = f"first {cohort_start}" if buyers else "signup"
                notes.append(
                    f"Cohorts start in {cohorts_from:%Y-%m}: the {earlier[0]:,} of "
                    f"{earlier[1]:,} customers whose {whose} came before are left out: the data "
                    f"begins on {start.date()}, and its first month can hold customers who started "
                    "before it, whose first months it does not hold (the churn retention command "
                    "shows them)."
                )
            if pivot is not None and not pivot.empty:
                retention = pivot.tail(MAX_COHORTS)
                if len(pivot) > MAX_COHORTS:  # a judge read the missing ones as dropped
                    notes.append(
                        f"The cohort table shows the latest {MAX_COHORTS} of {len(pivot)} "
                        f"cohorts (from {retention.index[0]:%Y-%m}); `churn retention` lists "
                        "them all."
                    )
                sizes = result.sizes
                curve = retention_curve(result)
            elif buyers and not result.table.empty:
                notes.append(
                    f"No cohort has a whole month after its first {cohort_start} inside the data "
                    "yet: no retention table."
                )
            else:
                notes.append("No cohort since the activity data started: no retention table.")
        else:  # a billing-only export: retention by activity measures nothing
            notes.append(
                "No activity in the data: retention by activity is not measured; revenue "
                "retention is."
            )
        if len(tables.revenue):
            revenue = revenue_cohort_retention(
                tables.revenue, tables.customers, cohorts_from, tables.data_end()
            )
            revenue = revenue if not revenue.empty else None  # no recurring revenue (orders)
    count = None if alerts is None else len(alerts)
    inputs = ReportInputs(
        as_of=str(summary["as_of"]),
        previous_as_of=previous[0].date().isoformat() if previous else None,
        baseline_as_of=summary.get("first_run_baseline"),
        headline=headline_of(summary, segments, count),
        previous=previous_headline(previous[1]) if previous else None,
        probabilities=scores.column("churn_probability").to_numpy(),
        bands=scores.column("risk_band").to_numpy(zero_copy_only=False).astype(str),
        riskiest=riskiest_customers(folder / "scores.parquet"),
        segments=segments,
        model=model,
        currency=currency,
        churn_mode=churn_mode,
        alerts=alerts,
        retention=retention,
        retention_sizes=sizes,
        retention_curve=curve,
        revenue_retention=revenue,
        cohort_start=cohort_start,
        notes=notes,
        # the folder being written sits beside the partitions (features.io.atomic_dir)
        monitoring=read_monitoring(folder.parent),
    )
    path = folder / REPORT_FILE
    path.write_text(render_report(inputs), encoding="utf-8")
    return path
