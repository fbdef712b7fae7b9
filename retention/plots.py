"""Retention results as PNG files an analyst's notebook can show (matplotlib, Agg backend).

Figures are built with the object API on an Agg canvas (no pyplot, no global state), so the
service, the batch job and tests can draw concurrently. Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from features.io import atomic_file
from reporting.formatting import money
from retention.metrics import ALL, CohortRetention, RevenueRetention, retention_curve

_COHORT_FORMAT = {"month": "%Y-%m", "week": "%Y-%m-%d", "day": "%Y-%m-%d"}
_METRIC_LABELS = {
    "crr": ("Customer retention rate", "share"),
    "churn_rate": ("Churn rate", "share"),
    "repeat_purchase_rate": ("Repeat purchase rate", "share"),
    "nps": ("NPS", "points"),
    "nrr": ("Net revenue retention", "share"),
    "gross_revenue_churn": ("Gross revenue churn", "share"),
    "arpc_month": ("Revenue per customer per month", "amount"),
    "clv": ("Customer lifetime value", "amount"),
}
_INTERVALS = {
    "crr": ("crr_low", "crr_high"),
    "churn_rate": ("churn_low", "churn_high"),
    "repeat_purchase_rate": ("repeat_purchase_low", "repeat_purchase_high"),
}
DEFAULT_METRICS = ("crr", "churn_rate", "repeat_purchase_rate", "nps")  # order data
SUBSCRIPTION_METRICS = ("crr", "churn_rate", "nrr", "gross_revenue_churn", "nps")
_NOT_MEASURED = {
    "nrr": "no recurring revenue (MRR) at the start of the period",
    "gross_revenue_churn": "no recurring revenue (MRR) at the start of the period",
    "nps": "no NPS responses in the period",
    "repeat_purchase_rate": "no purchases in the period",
}
MISSING_COLOUR = "#d9d9d9"  # cells the data do not cover
MAX_TICK_LABELS = 36  # more rows or columns than this get a label every k-th one


def _save(fig: Figure, path: str | Path) -> Path:
    """Render on an Agg canvas and write the PNG atomically (a crash leaves no half file)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _period_title(result: CohortRetention) -> str:
    unit = {"n-day": "in exactly", "unbounded": "in or after"}.get(result.mode)
    if unit is None:
        return "active within day bracket (days since start)"
    return f"active {unit} {result.period} N since {result.anchor.replace('_', ' ')}"


def _top_segments(result: CohortRetention, limit: int) -> list[str]:
    """The segments with the most customers, largest first."""
    per_segment = (
        result.table.drop_duplicates(["segment", "cohort"]).groupby("segment")["cohort_size"].sum()
    )
    return list(per_segment.sort_values(ascending=False).index[:limit])


def _every_kth(n: int, limit: int = MAX_TICK_LABELS) -> int:
    """The step between tick labels so that at most ``limit`` of ``n`` are drawn."""
    return max(1, -(-n // limit))


def _draw_grid(
    ax,
    values: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    vmax: float,
    annotate_limit: int,
):
    """One heatmap panel: missing cells grey, at most MAX_TICK_LABELS labels per axis, values
    written in the cells when there are few enough of them to read."""
    from matplotlib import colormaps

    cmap = colormaps["YlGnBu"].with_extremes(bad=MISSING_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
    rows, cols = values.shape
    ky, kx = _every_kth(rows), _every_kth(cols)
    ax.set_xticks(range(0, cols, kx), col_labels[::kx], fontsize=8)
    ax.set_yticks(range(0, rows, ky), row_labels[::ky], fontsize=8 if ky == 1 else 7)
    if values.size <= annotate_limit and rows <= MAX_TICK_LABELS and cols <= MAX_TICK_LABELS:
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                colour = "white" if v > 0.6 * vmax else "black"
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7, color=colour)
    return image


def _panel_size(rows: int, cols: int) -> tuple[float, float]:
    """Inches for a panel: cells shrink as they get many, so 70+ cohorts stay on a page."""
    height = 0.32 * min(rows, MAX_TICK_LABELS) + 0.08 * max(rows - MAX_TICK_LABELS, 0) + 1.2
    width = 0.55 * min(cols, MAX_TICK_LABELS) + 0.12 * max(cols - MAX_TICK_LABELS, 0) + 3.0
    return width, height


def plot_retention_heatmap(
    result: CohortRetention,
    path: str | Path,
    *,
    title: str | None = None,
    max_segments: int = 6,
    annotate_limit: int = 900,
) -> Path:
    """Cohort x period heatmap of retention (one panel per segment, the largest first).

    Cells the data do not cover (before the first record or after the last) are grey, never
    0 %. Row labels carry the cohort size; small cohorts are marked with '*'. With many cohorts
    or periods, every k-th label is drawn and values are not written in the cells. The colour
    scale runs from 0 to the highest retention after period 0, so later periods stay readable.
    """
    table = result.table
    segments = _top_segments(result, max_segments) if result.segment else [None]
    fig = Figure(figsize=(1.0, 1.0), layout="constrained")
    if table.empty:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no observed cohort periods", ha="center", va="center")
        ax.set_axis_off()
        fig.set_size_inches(6, 2)
        return _save(fig, path)
    later = table.loc[table["period"].astype("str") != "0", "retention"]
    vmax = float(later.max()) if len(later) and later.max() > 0 else 1.0
    heights, widths = [], []
    panels = []
    for seg in segments:
        part = table if seg is None else table[table["segment"] == seg]
        grid = _full_grid(part.pivot(index="cohort", columns="period", values="retention"), result)
        sizes = part.groupby("cohort")["cohort_size"].first().reindex(grid.index)
        small = part.groupby("cohort")["small_group"].first().reindex(grid.index)
        panels.append((seg, grid, sizes, small))
        width, height = _panel_size(*grid.shape)
        heights.append(height)
        widths.append(width)
    fig.set_size_inches(min(max(max(widths), 6.0), 24.0), min(sum(heights) + 0.6, 60.0))
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    fmt = _COHORT_FORMAT[result.cohort_freq]
    image = None
    for ax, (seg, grid, sizes, small) in zip(axes, panels, strict=True):
        labels = [
            f"{pd.Timestamp(c).strftime(fmt)} (n={int(n)}){' *' if s else ''}"
            for c, n, s in zip(grid.index, sizes, small, strict=True)
        ]
        image = _draw_grid(
            ax,
            grid.to_numpy(dtype="float64"),
            labels,
            [str(c) for c in grid.columns],
            vmax,
            annotate_limit,
        )
        ax.set_xlabel(_period_title(result), fontsize=9)
        ax.set_title(
            f"{result.segment} = {seg}" if seg is not None else "all customers", fontsize=10
        )
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.6, label="retention (share of eligible)")
    note = (
        "* small cohort: read with care (see the confidence interval in the table); "
        f"grey: not observed (the data cover {_coverage(result)})"
    )
    fig.suptitle(
        title or f"Cohort retention ({result.mode}, by {result.cohort_freq} cohort)", fontsize=12
    )
    fig.text(0.01, -0.005, note, fontsize=7, ha="left", va="top")
    return _save(fig, path)


def plot_revenue_heatmap(
    result: RevenueRetention,
    path: str | Path,
    *,
    title: str | None = None,
    annotate_limit: int = 900,
) -> Path:
    """Signup cohort x month heatmap of revenue retention (the share of the cohort's starting
    MRR kept, net of expansion: above 100 % when expansion outweighs churn). Cells the data do
    not cover are grey. Row labels carry the paying customers and the starting MRR."""
    table = result.table
    fig = Figure(figsize=(1.0, 1.0), layout="constrained")
    if table.empty:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no cohort with MRR in its signup month", ha="center", va="center")
        ax.set_axis_off()
        fig.set_size_inches(6, 2)
        return _save(fig, path)
    grid = table.pivot(index="cohort", columns="period", values="retention")
    firsts = table.groupby("cohort")[["customers", "mrr_start"]].first().reindex(grid.index)
    vmax = max(1.0, float(table["retention"].max()))
    width, height = _panel_size(*grid.shape)
    fig.set_size_inches(min(max(width, 6.0), 24.0), min(height + 0.6, 60.0))
    ax = fig.add_subplot()
    labels = [
        f"{pd.Timestamp(c):%Y-%m} (n={int(n)}, {money(m)})"
        for c, n, m in zip(grid.index, firsts["customers"], firsts["mrr_start"], strict=True)
    ]
    image = _draw_grid(
        ax, grid.to_numpy(dtype="float64"), labels, [str(c) for c in grid.columns], vmax,
        annotate_limit,
    )  # fmt: skip
    ax.set_xlabel("calendar months since the signup month", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the starting MRR kept")
    span = f"{result.observed_from:%Y-%m-%d} to {result.observed_until:%Y-%m-%d}"
    fig.suptitle(title or "Revenue retention by signup cohort (net of expansion)", fontsize=12)
    note = f"n: customers paying in their signup month, with their MRR; grey: not observed (the data cover {span})"
    fig.text(0.01, -0.005, note, fontsize=7, ha="left", va="top")
    return _save(fig, path)


def _full_grid(grid: pd.DataFrame, result: CohortRetention) -> pd.DataFrame:
    """Every period column between the first and the last (missing ones as NaN), in order."""
    if result.mode == "bracket" or grid.empty:
        return grid
    return grid.reindex(columns=range(int(min(grid.columns)), int(max(grid.columns)) + 1))


def _coverage(result: CohortRetention) -> str:
    until = f"{result.observed_until:%Y-%m-%d}"
    if result.observed_from is None:
        return f"until {until}"
    return f"{result.observed_from:%Y-%m-%d} to {until}"


def plot_retention_curves(
    result: CohortRetention,
    path: str | Path,
    *,
    title: str | None = None,
    max_lines: int = 12,
) -> Path:
    """Retention curves: one per segment (pooled over cohorts, with its 95 % band) or, without
    segments, one thin line per cohort plus the pooled curve in black."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    table = result.table
    if table.empty:
        ax.text(0.5, 0.5, "no observed cohort periods", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    curve = retention_curve(result)
    categories = list(dict.fromkeys(curve["period"].astype("str")))
    xpos = {c: i for i, c in enumerate(categories)}

    def x_of(periods: pd.Series) -> np.ndarray:
        return np.array([xpos[str(p)] for p in periods])

    if result.segment:
        for seg in _top_segments(result, max_lines):
            part = curve[curve["segment"] == seg]
            x = x_of(part["period"])
            n = int(
                table.loc[table["segment"] == seg].drop_duplicates("cohort")["cohort_size"].sum()
            )
            if n < result.min_group_size:  # small: dashed, no band, so it does not dominate
                ax.plot(x, part["retention"], ls="--", lw=0.9, label=f"{seg} (n={n}, small)")
                continue
            (line,) = ax.plot(x, part["retention"], marker="o", ms=3, label=f"{seg} (n={n})")
            ax.fill_between(
                x, part["retention_low"], part["retention_high"], color=line.get_color(), alpha=0.15
            )
    else:
        cohorts = table.drop_duplicates("cohort").nlargest(max_lines, "cohort_size")["cohort"]
        colours = _cohort_colours(len(cohorts))
        fmt = _COHORT_FORMAT[result.cohort_freq]
        for colour, cohort in zip(colours, sorted(cohorts), strict=True):
            part = table[table["cohort"] == cohort]
            ax.plot(
                x_of(part["period"]),
                part["retention"],
                lw=0.9,
                alpha=0.8,
                color=colour,
                label=pd.Timestamp(cohort).strftime(fmt),
            )
        x = x_of(curve["period"])
        ax.plot(x, curve["retention"], color="black", lw=2.5, label="all cohorts")
        ax.fill_between(
            x, curve["retention_low"], curve["retention_high"], color="black", alpha=0.1
        )
    ax.set_xticks(range(len(categories)), categories, fontsize=8)
    ax.set_xlabel(_period_title(result))
    ax.set_ylabel("retention (share of eligible)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.set_title(title or f"Retention curves ({result.mode})")
    return _save(fig, path)


def _cohort_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))][:n]


def default_metric_columns(
    metrics: pd.DataFrame, subscription: bool | None = None
) -> tuple[str, ...]:
    """The metrics a plot shows: NRR and revenue churn for subscriptions, repeat purchase rate
    for orders. ``subscription`` None: subscriptions when the period has recurring revenue
    (MRR at its start or end) or a note on why its NRR is not measured."""
    if subscription is None:
        has_mrr = any(c in metrics and (metrics[c] > 0).any() for c in ("mrr_start", "mrr_end"))
        noted = "mrr_note" in metrics and metrics["mrr_note"].astype(bool).any()
        subscription = bool(has_mrr or noted)
    return SUBSCRIPTION_METRICS if subscription else DEFAULT_METRICS


def plot_metrics_by_segment(
    metrics: pd.DataFrame,
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    subscription: bool | None = None,
) -> Path:
    """Bars of the period metrics per segment, with Wilson intervals where the metric has one.

    The metrics shown by default follow the data: for subscriptions NRR and revenue churn
    (SUBSCRIPTION_METRICS), for orders the repeat purchase rate (DEFAULT_METRICS), beside CRR,
    churn and NPS. ``subscription`` None: subscriptions when the period has recurring revenue
    (MRR) or a note on why its NRR is not measured. The whole base is the dashed line; small
    groups are drawn pale and hatched with their n, so they are visible but not mistaken for
    solid numbers. A metric no row measures (NPS without survey data) is left out, and the
    footnote says why.
    """
    if columns is None:
        columns = default_metric_columns(metrics, subscription)
    rows = metrics[metrics["dimension"] != ALL]
    base = metrics[metrics["dimension"] == ALL]
    if rows.empty:
        rows = base
    # largest segments on top, dimensions kept together
    rows = rows.sort_values(
        ["dimension", "customers_start", "segment"], ascending=[True, False, True], kind="stable"
    )
    show = [c for c in columns if c in rows and rows[c].notna().any()]
    left_out = []
    for c in columns:
        if c not in show:
            why = _NOT_MEASURED.get(c, "no values")
            if c in ("nrr", "gross_revenue_churn") and "mrr_note" in metrics:
                why = next((n for n in metrics["mrr_note"] if n), why)
            left_out.append(f"{_METRIC_LABELS.get(c, (c, ''))[0]} not measured: {why}")
    multi = rows["dimension"].nunique() > 1
    labels = [
        f"{d}: {s}" if multi else str(s)
        for d, s in zip(rows["dimension"], rows["segment"], strict=True)
    ]
    labels = [f"{lab} (S={n})" for lab, n in zip(labels, rows["customers_start"], strict=True)]
    small = rows["small_group"].to_numpy(dtype=bool)
    height = max(0.28 * len(rows) + 1.6, 3.0)
    fig = Figure(figsize=(4.2 * max(len(show), 1) + 2.5, min(height, 40.0)), layout="constrained")
    if not show:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "\n".join(["no metric has values", *left_out]), ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    axes = fig.subplots(1, len(show), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    for ax, col in zip(axes, show, strict=True):
        values = rows[col].to_numpy(dtype="float64")
        colours = np.where(small, "#c9d6e3", "#2f6f9f")
        bars = ax.barh(y, np.nan_to_num(values), color=colours, edgecolor="#2f6f9f", linewidth=0.5)
        for bar, is_small in zip(bars, small, strict=True):
            if is_small:
                bar.set_hatch("///")
        if col in _INTERVALS:
            lo, hi = (rows[c].to_numpy(dtype="float64") for c in _INTERVALS[col])
            err = np.vstack([values - lo, hi - values])
            ax.errorbar(
                values, y, xerr=np.nan_to_num(err), fmt="none", ecolor="black", lw=0.8, capsize=2
            )
        if len(base) and pd.notna(base[col].iloc[0]):
            ax.axvline(
                float(base[col].iloc[0]), color="#d0452f", ls="--", lw=1, label="all customers"
            )
            ax.legend(fontsize=7, loc="lower right")
        name, unit = _METRIC_LABELS.get(col, (col, ""))
        ax.set_title(name, fontsize=10)
        if unit == "share":  # NRR may pass 100 % with expansion
            ax.set_xlim(0, max(1.0, float(np.nanmax(values)) * 1.05))
            ax.xaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    period = ""
    if "period_start" in metrics and len(metrics):
        p0, p1 = metrics["period_start"].iloc[0], metrics["period_end"].iloc[0]
        period = f" ({pd.Timestamp(p0):%Y-%m-%d} to {pd.Timestamp(p1):%Y-%m-%d})"
    fig.suptitle(title or f"Retention metrics by segment{period}", fontsize=12)
    note = "S: customers at start; hatched: small group (S below the minimum); whiskers: 95 % Wilson intervals"
    fig.text(0.01, -0.005, "\n".join([note, *left_out]), fontsize=7, ha="left", va="top")
    return _save(fig, path)
