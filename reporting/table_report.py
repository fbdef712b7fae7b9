"""report.html of `churn score-table`: the page for one scored customer table.

A labelled snapshot (a CRM table with a churn column) has no dates, so there is no change
since a last run, no alerts and no retention by cohort. What a customer-success lead needs
from it is on one self-contained page, built from the weekly report's pieces
(reporting.report_html): how many customers are at risk and how many are expected to leave,
how sure the model is (its cross-validated ROC AUC and lift against its logistic-regression
baseline, from the training run), the distribution of risk, the riskiest customers with their
reasons in words, and risk by the table's own attributes (contract, payment method, ...),
those whose levels differ most in risk first.

``render_table_report`` is pure (inputs -> HTML text); ``attribute_segments`` computes the
risk by attribute with the segment report's own sums (retention.metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reporting import formatting as fmt
from reporting.report_html import (
    BANDS,
    CSS,
    _card,
    _e,
    risk_histogram,
    riskiest_table,
    segment_table,
)
from retention.metrics import ALL, risk_from_sums, risk_parts, segment_sums

MAX_LEVELS = 12  # an attribute with more levels (an id-like text) is no segment to read
MAX_ATTRIBUTES = 6  # attributes shown, those whose levels differ most in mean risk first
MIN_LEVEL_CUSTOMERS = 30  # levels smaller than this do not rank an attribute (noise)


@dataclass
class TableReportInputs:
    """Everything the table's page shows, already computed."""

    table: str
    model: str
    probabilities: np.ndarray
    bands: np.ndarray
    band_ranges: dict[str, str]
    riskiest: pd.DataFrame  # customer_id, churn_probability, risk_band, reasons
    segments: pd.DataFrame  # risk_from_sums rows: 'all', then each attribute's levels
    validation: dict[str, float] = field(default_factory=dict)  # the run's cv_* metrics
    notes: list[str] = field(default_factory=list)


def attribute_segments(
    scores: pd.DataFrame,
    attributes: pd.DataFrame,
    max_levels: int = MAX_LEVELS,
    limit: int = MAX_ATTRIBUTES,
) -> tuple[pd.DataFrame, list[str]]:
    """Risk by attribute: customers, mean risk, expected churners and band shares for every
    customer ('all') and each level of up to `limit` attributes, those whose levels (of at
    least MIN_LEVEL_CUSTOMERS customers) differ most in mean risk first. `scores` and
    `attributes` are row-aligned. Returns the rows and a note per attribute left out."""
    parts = risk_parts(scores.assign(monthly_revenue=np.nan))
    p = scores["churn_probability"].to_numpy(float)
    spread: dict[str, float] = {}
    notes = []
    for column in attributes.columns:
        levels = attributes[column].astype("string").fillna("(blank)")
        if levels.nunique() > max_levels:
            notes.append(f"{column}: {levels.nunique():,} levels, more than {max_levels}")
            continue
        means = pd.Series(p).groupby(levels.to_numpy()).agg(["mean", "size"])
        means = means[means["size"] >= MIN_LEVEL_CUSTOMERS]
        if len(means) < 2:
            notes.append(f"{column}: fewer than two levels of {MIN_LEVEL_CUSTOMERS}+ customers")
            continue
        spread[column] = float(means["mean"].max() - means["mean"].min())
    chosen = sorted(spread, key=lambda c: -spread[c])[:limit]
    if len(spread) > limit:
        notes.append(
            f"{len(spread) - limit} more attribute(s) whose levels differ less in risk: "
            + ", ".join(sorted(spread, key=lambda c: -spread[c])[limit:])
        )
    labels = pd.DataFrame(
        {c: attributes[c].astype("string").fillna("(blank)").to_numpy() for c in chosen}
    )
    # a table has no revenue rows: its revenue at risk measures nothing (the sums would read 0)
    segments = risk_from_sums(segment_sums(parts, labels)).drop(columns="revenue_at_risk")
    order = {ALL: -1, **{c: i for i, c in enumerate(chosen)}}
    segments = segments.sort_values(
        ["dimension", "mean_risk"],
        key=lambda s: s.map(order) if s.name == "dimension" else -s,
        kind="stable",
    )
    return segments.reset_index(drop=True), notes


def validation_card(validation: dict[str, float]) -> str:
    """How sure the model is: the training run's cross-validated ROC AUC (mean ± sd over the
    folds), its top-decile lift and the logistic-regression baseline's AUC."""
    auc = validation.get("cv_roc_auc_mean")
    if fmt.is_missing(auc):
        return _card("Model quality", fmt.MISSING, None, "no cross-validated figures recorded")
    sd = validation.get("cv_roc_auc_std")
    value = fmt.number(auc, 3) + ("" if fmt.is_missing(sd) else f" ± {fmt.number(sd, 3)}")
    notes = ["cross-validated ROC AUC (0.5: chance, 1: perfect)"]
    lift = validation.get("cv_lift_top_decile_mean")
    if not fmt.is_missing(lift):
        notes.append(f"the riskiest 10 % hold {fmt.number(lift, 1)}x the average churn")
    baseline = validation.get("cv_baseline_logistic_regression_roc_auc_mean")
    if not fmt.is_missing(baseline):
        notes.append(f"logistic regression: {fmt.number(baseline, 3)}")
    return _card("Model quality", value, None, "; ".join(notes))


def render_table_report(inputs: TableReportInputs) -> str:
    """The page for one scored table, as HTML text (self-contained: inline CSS and SVG)."""
    p, bands = np.asarray(inputs.probabilities, float), np.asarray(inputs.bands).astype(str)
    scored = len(p)
    high = int((bands == "high").sum())
    expected = float(p.sum())
    cards = [
        _card("Customers scored", fmt.count(scored), None, f"from {inputs.table}"),
        _card(
            "Customers at risk",
            fmt.count(high),
            None,
            f"high band ({inputs.band_ranges.get('high', fmt.MISSING)}): "
            f"{fmt.percent(high / scored, 0) if scored else fmt.MISSING} of those scored",
        ),
        _card(
            "Expected churners",
            fmt.number(expected, 0 if expected >= 100 else 1),
            None,
            "sum of the churn probabilities, over the period the training label covered",
        ),
        validation_card(inputs.validation),
    ]
    band_line = ", ".join(
        f"{b} {fmt.count(int((bands == b).sum()))} ({inputs.band_ranges[b]})"
        for b in BANDS
        if b in inputs.band_ranges
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Churn risk of {_e(inputs.table)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Churn risk of {_e(inputs.table)}</h1>",
        f'<p class="meta">{_e(inputs.model)} · a table scored once: no earlier run to '
        "compare with, so no changes or alerts</p>",
        f'<div class="cards">{"".join(cards)}</div>',
        "<h2>Distribution of risk</h2>",
        risk_histogram(p, bands),
        f'<p class="note">Risk bands: {_e(band_line)}.</p>' if band_line else "",
        "<h2>Riskiest customers</h2>",
        riskiest_table(inputs.riskiest, changes=False),
        '<p class="note">Every customer, riskiest first, with up to three reasons: scores.csv.</p>',
        "<h2>Risk by attribute</h2>",
        '<div class="scroll">' + segment_table(inputs.segments, None, "contractual") + "</div>",
    ]
    parts += [f'<p class="note">{_e(n)}</p>' for n in inputs.notes]
    parts.append("</main></body></html>")
    return "\n".join(parts)


__all__ = ["TableReportInputs", "attribute_segments", "render_table_report", "validation_card"]
