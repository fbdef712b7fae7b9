"""`churn metrics` and `churn retention`: retention metrics by segment and cohort retention.

The commands are thin: parse options, load the contract's tables, call the pure functions in
retention.metrics, print, and write the table (CSV or Parquet by extension) and the
PNG plots atomically. ``register(app)`` adds them to the main Typer app.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from churn.options import ConfigFile, EventsOption
from features.config import DATA_CONFIG_FILE, ChurnDefinition, config_for_data
from features.contract import ContractError, Tables
from features.io import atomic_file, load_tables
from reporting import formatting as fmt
from retention.metrics import (
    ALL,
    DEFAULT_BRACKETS,
    CohortRetention,
    MetricsInputError,
    RevenueRetention,
    cohort_cell,
    cohort_retention,
    month_of,
    mrr_months,
    parse_brackets,
    retention_metrics,
    revenue_cohort_retention,
)
from retention.plots import (
    plot_metrics_by_segment,
    plot_retention_curves,
    plot_retention_heatmap,
    plot_revenue_heatmap,
)

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OUT_SUFFIXES = (".csv", ".parquet")


def register(app: typer.Typer) -> None:
    """Add the `metrics` and `retention` commands to ``app``."""
    app.command("metrics")(metrics_command)
    app.command("retention")(retention_command)


# --------------------------------------------------------------------------- option parsing


def _parse_date(
    text: str, option: str, *, end_of_day: bool = False, start_of_day: bool = False
) -> pd.Timestamp:
    """A date or timestamp; with end_of_day a bare date means the end of that day (inclusive),
    with start_of_day the instant just before its midnight, so that a period (t0, t1] holds
    the rows stamped at that midnight: a gym's debits on the 1st at 00:00 had fallen out of
    every calendar month's revenue (ARPC €0.80 a month where €30.66 was paid)."""
    try:
        ts = pd.Timestamp(text)
    except (TypeError, ValueError):
        raise typer.BadParameter(
            f"cannot read {text!r} as a date (use YYYY-MM-DD)", param_hint=option
        ) from None
    if ts is pd.NaT:
        raise typer.BadParameter(
            f"cannot read {text!r} as a date (use YYYY-MM-DD)", param_hint=option
        )
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if end_of_day and _DATE_ONLY.match(text.strip()):
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    if start_of_day and _DATE_ONLY.match(text.strip()):
        ts = ts - pd.Timedelta(1, "ns")
    return ts


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _segments(text: str | None) -> list[str | tuple[str, ...]]:
    """--by 'plan,country' gives one breakdown per name; 'plan+country' crosses two names."""
    out: list[str | tuple[str, ...]] = []
    for part in _split(text):
        names = tuple(n.strip() for n in part.split("+") if n.strip())
        out.append(names[0] if len(names) == 1 else names)
    return out


def _check_out(path: Path | None, option: str) -> None:
    if path is not None and path.suffix.lower() not in _OUT_SUFFIXES:
        raise typer.BadParameter(f"'{path}' must end in .csv or .parquet", param_hint=option)


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet (by extension), atomically."""
    with atomic_file(path) as tmp:
        if path.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def _input_error(err: Exception) -> typer.Exit:
    """One readable line and exit code 2, as the other `churn` commands do."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=2)


def _load(data: Path) -> Tables:
    try:
        return load_tables(data, need_rows=("customers",))
    except (ContractError, FileNotFoundError) as err:
        raise _input_error(err) from None


def _data_churn(data: Path, config: Path | None) -> ChurnDefinition | None:
    """The churn definition configured for the data (--config or DATA/config.toml), if any."""
    if config is None and not (data / DATA_CONFIG_FILE).is_file():
        return None
    try:
        return config_for_data(data, config).churn
    except (ValueError, FileNotFoundError, OSError) as err:
        raise _input_error(err) from None


def _data_currency(data: Path, config: Path | None) -> str | None:
    """The [scoring] currency configured for the data (--config or DATA/config.toml), if any:
    "CLV 327" had read without the shop's USD."""
    from serving.config import scoring_config_from_file

    path = config if config is not None else data / DATA_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return scoring_config_from_file(path).currency
    except (ValueError, OSError) as err:
        raise _input_error(err) from None


@dataclasses.dataclass(frozen=True)
class Money:
    """A money column: said in the data's currency (fmt.money) with this many decimals."""

    digits: int = 0


Show = Callable[[object], str] | Money


def _cells(values: Iterable[object], show: Show, currency: str | None) -> list[str]:
    """One column's cells as people read them."""
    if isinstance(show, Money):
        return [fmt.money(v, currency, show.digits) for v in values]
    return [show(v) for v in values]


def _churn_definition(
    data: Path,
    config: Path | None,
    tables: Tables,
    churn_mode: str | None,
    lookback_days: int | None,
    events: str | None,
) -> tuple[str, int, list[str] | None]:
    """Churn mode, lookback and qualifying events: the options if given, else the data folder's
    config.toml (or --config), the same definition the labels use, else a guess from the data:
    contractual when customers have churned_at."""
    churn = _data_churn(data, config)
    if churn_mode is not None:
        mode = churn_mode.replace("-", "_")
        if mode not in ("contractual", "non_contractual"):
            raise typer.BadParameter(
                "use contractual or non-contractual", param_hint="--churn-mode"
            )
    elif churn is not None:
        mode = churn.mode
    else:
        mode = "contractual" if "churned_at" in tables.customers else "non_contractual"
    qualifying = _split(events) or (
        list(churn.qualifying_events) if churn is not None and churn.qualifying_events else None
    )
    lookback = lookback_days or (churn.lookback_days if churn is not None else None)
    if lookback is None:  # as the labels do: long enough for the customers' typical gap
        from features.labels import DEFAULT_LOOKBACK_DAYS, data_lookback_days

        until = (tables.data_end() + pd.Timedelta(days=1)).normalize()
        events_ = tuple(qualifying) if qualifying else None
        lookback = (
            data_lookback_days(tables, events_, until, churn.horizon_days if churn else 0)
            if mode == "non_contractual"
            else DEFAULT_LOOKBACK_DAYS  # contractual churn has no use for it
        )
    return mode, lookback, qualifying


def _load_scores(path: Path | None) -> pd.DataFrame | None:
    if path is None:
        return None
    if not path.exists():
        raise typer.BadParameter(f"'{path}' does not exist", param_hint="--scores")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def _fail(err: MetricsInputError) -> typer.BadParameter:
    return typer.BadParameter(str(err))


# --------------------------------------------------------------------------- metrics


def _nps_points(value: object) -> str:
    return fmt.MISSING if fmt.is_missing(value) else f"{float(value):+.0f}"  # type: ignore[arg-type]


_PRINT_COLUMNS: dict[str, tuple[str, Show]] = {
    "customers_start": ("S", fmt.count),
    "new": ("new", fmt.count),
    "lost": ("lost", fmt.count),
    "customers_end": ("E", fmt.count),
    "crr": ("CRR", fmt.percent),
    "churn_rate": ("churn", fmt.percent),
    "mrr_start": ("MRR t0", Money()),
    "expansion": ("expansion", Money()),
    "contraction": ("contraction", Money()),
    "churned_mrr": ("churned MRR", Money()),
    "gross_revenue_churn": ("GRC", fmt.percent),
    "nrr": ("NRR", fmt.percent),
    "repeat_purchase_rate": ("repeat", fmt.percent),
    "nps": ("NPS", _nps_points),
    "promoter_share": ("prom", lambda v: fmt.percent(v, 0)),
    "passive_share": ("pass", lambda v: fmt.percent(v, 0)),
    "detractor_share": ("detr", lambda v: fmt.percent(v, 0)),
    "nps_responses": ("NPS n", fmt.count),
    "arpc_month": ("ARPC/mo", Money(digits=2)),
    "clv": ("CLV", Money()),
}


def format_metrics(df: pd.DataFrame, currency: str | None = None) -> str:
    """The metrics table as text: counts, rates with their 95 % interval, money in the
    currency, small groups marked."""
    view = pd.DataFrame(
        {
            "segment": [
                s if d == ALL else f"{d}={s}"
                for d, s in zip(df["dimension"], df["segment"], strict=True)
            ]
        }
    )
    skip: set[str] = set()
    if not (df["mrr_start"].any() or df["mrr_end"].any()):  # no recurring revenue (a shop)
        skip |= {
            "mrr_start",
            "expansion",
            "contraction",
            "churned_mrr",
            "gross_revenue_churn",
            "nrr",
        }
    if not df["nps_responses"].any():  # no NPS survey answers in the period
        skip |= {"nps", "promoter_share", "passive_share", "detractor_share", "nps_responses"}
    if df["repeat_purchase_rate"].isna().all():  # a subscription's invoices: not measured
        skip.add("repeat_purchase_rate")
    for col, (label, show) in _PRINT_COLUMNS.items():
        if col in skip:
            continue
        values = df[col].to_numpy()
        if col in ("crr", "churn_rate"):
            prefix = "crr" if col == "crr" else "churn"
            lows, highs = df[f"{prefix}_low"].to_numpy(), df[f"{prefix}_high"].to_numpy()
            view[label] = [
                fmt.MISSING if pd.isna(v) else f"{fmt.percent(v)} [{fmt.interval(lo, hi)}]"
                for v, lo, hi in zip(values, lows, highs, strict=True)
            ]
        else:
            view[label] = _cells(values, show, currency)
    view["small"] = ["yes" if s else "" for s in df["small_group"]]
    return view.to_string(index=False)


_SEGMENT_COLUMNS: dict[str, tuple[str, Show]] = {
    "customers_scored": ("scored", fmt.count),
    "mean_risk": ("mean risk", fmt.percent),
    "expected_churners": ("expected churners", lambda v: fmt.number(v, 1)),
    "revenue_at_risk": ("revenue at risk", Money()),
    "customers_start": ("S", fmt.count),
    "crr": ("CRR", fmt.percent),
    "churn_rate": ("churn", fmt.percent),
    "nrr": ("NRR", fmt.percent),
    "gross_revenue_churn": ("revenue churn", fmt.percent),
    "nps": ("NPS", _nps_points),
}
_WHY_NOT_MEASURED = {
    "customers_scored": "nobody was scored",
    "mean_risk": "nobody was scored",
    "expected_churners": "nobody was scored",
    "revenue_at_risk": "nobody was scored",
    "crr": "no customers at the start of the period",
    "churn_rate": "no customers at the start of the period",
    "nrr": "no recurring revenue (MRR) at the start of the period",
    "gross_revenue_churn": "no recurring revenue (MRR) at the start of the period",
    "nps": "no NPS responses in the period",
}


def segment_table(
    report: pd.DataFrame,
    dimensions: Sequence[str] | None = None,
    *,
    currency: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The segment report (serving.batch.segment_report) as cells people read, and one line per
    metric left out because no row measures it (NRR without MRR, NPS without responses).

    Counts are whole numbers, shares percentages, money with the currency; a missing cell is a
    dash. ``dimensions`` keeps those dimensions ('all' always)."""
    rows = report
    if dimensions is not None:
        rows = report[report["dimension"].isin([ALL, *dimensions])]
    rows = rows.reset_index(drop=True)
    view = pd.DataFrame(
        {
            "segment": [
                s if d == ALL else f"{d}={s}"
                for d, s in zip(rows["dimension"], rows["segment"], strict=True)
            ]
        }
    )
    notes: list[str] = []
    left_out: dict[str, list[str]] = {}
    for col, (label, show) in _SEGMENT_COLUMNS.items():
        if col not in rows:
            continue
        if rows[col].isna().all():
            why = _WHY_NOT_MEASURED[col]
            if col in ("nrr", "gross_revenue_churn") and "mrr_note" in rows:
                why = next((n for n in rows["mrr_note"] if n), why)
            left_out.setdefault(why, []).append(label)
            continue
        view[label] = _cells(rows[col], show, currency)
    for why, labels in left_out.items():
        notes.append(f"{' and '.join(labels)} not measured: {why}.")
    return view, notes


def short_period_note(mode: str, days: int, horizon_days: int | None) -> str:
    """Under non-contractual churn a customer at the start is lost when the period has no
    qualifying event: over a period shorter than the churn horizon that is not churn under the
    definition ("no purchase this week" read 70 % where 10 % of a grocery's customers had gone
    the 30-day horizon without one). "" when the period is long enough or churn is contractual."""
    if mode != "non_contractual" or horizon_days is None or days >= horizon_days:
        return ""
    return (
        f"note: the period ({days} days) is shorter than the churn horizon ({horizon_days} days): "
        f"'lost' counts customers without a qualifying event in {days} days, not customers "
        f"churned under the definition; measure churn over {horizon_days} days or more"
    )


def metrics_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with the contract's tables.")],
    start: Annotated[
        str,
        typer.Option(
            "--from", help="Start of the period t0 (YYYY-MM-DD: that whole day, inclusive)."
        ),
    ],
    end: Annotated[
        str,
        typer.Option(
            "--to", help="End of the period t1 (YYYY-MM-DD: the end of that day, inclusive)."
        ),
    ],
    by: Annotated[
        str | None,
        typer.Option(
            help="Segments, comma separated: customer attributes, signup_cohort, risk_band; a+b crosses."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the full table here (.csv or .parquet).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of the metrics by segment here.")
    ] = None,
    churn_mode: Annotated[
        str | None,
        typer.Option(
            help="contractual or non-contractual; default: the data's config.toml, else "
            "contractual when customers have churned_at."
        ),
    ] = None,
    lookback_days: Annotated[
        int | None,
        typer.Option(
            help="Non-contractual: customers at t0 had activity in this many days before t0 "
            "(default: the data's config, else 90)."
        ),
    ] = None,
    events: EventsOption = None,
    config: ConfigFile = None,
    purchase_key: Annotated[
        str | None,
        typer.Option(help="Revenue column that identifies a purchase (default: its timestamp)."),
    ] = None,
    min_group_size: Annotated[
        int, typer.Option(help="Flag groups with fewer customers at start.")
    ] = 30,
    gross_margin: Annotated[
        float, typer.Option(help="Gross margin for the lifetime value (0-1).")
    ] = 1.0,
    scores: Annotated[
        Path | None, typer.Option(help="Scores with customer_id and risk_band, for --by risk_band.")
    ] = None,
) -> None:
    """Retention metrics over a period for the whole base and each segment: customers at start,
    new, lost and at end, CRR and churn (95 % Wilson intervals), MRR movements, gross revenue
    churn and NRR, repeat purchase rate, NPS, revenue per customer and lifetime value."""
    t0 = _parse_date(start, "--from", start_of_day=True)
    t1 = _parse_date(end, "--to", end_of_day=True)
    if t1 <= t0:
        raise typer.BadParameter(
            f"the period must end after it starts (--from {start})", param_hint="--to"
        )
    _check_out(out, "--out")
    tables = _load(data)
    mode, lookback, qualifying = _churn_definition(
        data, config, tables, churn_mode, lookback_days, events
    )
    defined = _data_churn(data, config)
    observed_until = defined.observed_until if defined is not None else None
    try:
        result = retention_metrics(
            tables,
            t0,
            t1,
            by=_segments(by),
            churn_mode=mode,  # type: ignore[arg-type]
            lookback_days=lookback,
            activity_events=qualifying,
            purchase_key=purchase_key,
            min_group_size=min_group_size,
            gross_margin=gross_margin,
            scores=_load_scores(scores),
            churn_observed_until=observed_until,
        )
    except MetricsInputError as err:
        raise _fail(err) from None
    how = "contractual" if mode == "contractual" else f"non-contractual, lookback {lookback} days"
    if qualifying:
        how += f", events {', '.join(qualifying)}"
    days = (t1 - t0).ceil("D").days
    first = (t0 + pd.Timedelta(1, "ns")).date()  # the instant before a day: that day
    typer.echo(f"Retention metrics from {first} to {t1.date()} ({days} days), churn {how}")
    short = short_period_note(mode, days, defined.horizon_days if defined is not None else None)
    if short:
        typer.echo(short)
    typer.echo(format_metrics(result, _data_currency(data, config)))
    notes = [n for n in result["mrr_note"].unique() if n]
    if notes:
        typer.echo(f"GRC and NRR not measured: {notes[0]}.")
    elif result["mrr_start"].notna().any() and result["mrr_start"].any():
        typer.echo(mrr_months_note(t0, t1))
        orders = orders_beside_mrr_note(tables, t0, t1, _data_currency(data, config))
        if orders:
            typer.echo(orders)
    if result["small_group"].any():
        typer.echo(
            f"small: fewer than {min_group_size} customers at start; read with the interval."
        )
    churned_new = new_and_lost_note(result)
    if churned_new:
        typer.echo(churned_new)
    if "clv" in result and result["clv"].notna().any():
        typer.echo(clv_margin_note(gross_margin))
    if out is not None:
        # --from a date is the instant before its midnight (rows at midnight count): written as
        # that midnight, the day asked for, not 2024-12-30 23:59:59.999999999 for 2024-12-31
        day = t0 + pd.Timedelta(1, "ns")
        shown = result.assign(period_start=day) if day == day.normalize() else result
        _write_table(shown, out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        plot_metrics_by_segment(result, plot, subscription=mode == "contractual")
        typer.echo(f"wrote {plot}")


def mrr_months_note(t0: pd.Timestamp, t1: pd.Timestamp) -> str:
    """Which months' MRR the table compares (retention.metrics.mrr_movements): the month of
    the period's first day and that of its last (retention.metrics.monthly_mrr: a paid period
    counts at the month's end)."""
    start, end = mrr_months(t0, t1)
    before = start - pd.DateOffset(months=1)
    return (
        f"MRR t0 and t1: what customers pay per month in {start:%B %Y} (those at t0; one who left "
        f"within {start:%B}, what it paid in {before:%B}) and in {end:%B %Y}"
    )


def orders_beside_mrr_note(
    tables: Tables, t0: pd.Timestamp, t1: pd.Timestamp, currency: str | None
) -> str:
    """What MRR leaves out where the period also has orders (revenue kind "order": rides paid
    one by one, top-ups): MRR, revenue churn and NRR are the invoices' (subscriptions, passes).
    A scooter app's NRR of 62.8 % stood beside €40k a month of rides that no figure counted,
    and nothing said so ("" without orders in the period)."""
    revenue = tables.revenue
    if revenue is None or revenue.empty or "kind" not in revenue:
        return ""
    period = (revenue["at"] > t0) & (revenue["at"] <= t1)
    orders = revenue.loc[period & (revenue["kind"] == "order"), "amount"]
    if orders.empty:
        return ""
    total = fmt.money(float(orders.sum()), currency)
    return (
        f"MRR, GRC and NRR count invoices (subscriptions, passes) only: the period's "
        f"{len(orders):,} order{'' if len(orders) == 1 else 's'} ({total}) are in no MRR figure"
    )


def new_and_lost_note(result: pd.DataFrame) -> str:
    """What "new" counts, where customers both joined and left within the period: those are
    neither new at the end nor lost from the start (CRR = (E - N) / S), and a subscription
    app's judge read 1,716 new beside 2,060 signups ("" when there are none)."""
    everyone = result[result["dimension"] == ALL]
    both = int(everyone["acquired_and_lost"].sum()) if "acquired_and_lost" in everyone else 0
    back = int(everyone["reactivated"].sum()) if "reactivated" in everyone else 0
    if not both and not back:
        return ""
    new = int(everyone["new"].sum())
    parts = [f"new: customers who joined in the period and are customers at its end ({new:,})"]
    if back:
        # a game's judge read its 602 "new" as installs, 24 of them players back from a lapse
        parts.append(
            f"{back:,} of them came back after a lapse (reactivated in --out), not first-time"
        )
    if both:
        parts.append(
            f"{both:,} more joined and left within it (acquired_and_lost in --out), in neither "
            "new nor lost"
        )
    return "; ".join(parts)


def clv_margin_note(gross_margin: float) -> str:
    """What the lifetime value counts: with the default margin of 100 % it is revenue, not
    value (a meal-kit shop's "CLV €111" was about three times its value, and nothing said so)."""
    if gross_margin >= 1.0:
        return (
            "CLV: revenue per customer over its expected lifetime, at a gross margin of 100 % "
            "(the default): give --gross-margin (e.g. 0.3) for the value the revenue leaves"
        )
    return f"CLV: at a gross margin of {gross_margin:.0%} of the revenue (--gross-margin)"


# --------------------------------------------------------------------------- retention


# What a terminal shows of a cohort table: 22 years of monthly cohorts printed lines 1,643
# characters wide. The whole table is what --out writes.
TERMINAL_PERIODS = 12
TERMINAL_COHORTS = 36


def format_retention(
    result: CohortRetention,
    max_periods: int = TERMINAL_PERIODS,
    max_cohorts: int = TERMINAL_COHORTS,
) -> str:
    """Cohort rows x period columns in percent, with the cohort size; small cohorts marked *.
    At most max_periods period columns and the latest max_cohorts cohorts (per segment), with
    a line that says what was left out and where the whole table is."""
    text = _retention_pivot(result)
    if result.table.empty:
        return text
    table = result.table
    periods = list(result.pivot.columns)
    cohorts = sorted(table["cohort"].unique())
    later, earlier = max(len(periods) - max_periods, 0), max(len(cohorts) - max_cohorts, 0)
    if not later and not earlier:
        return text
    keep = table["period"].isin(periods[:max_periods]) & table["cohort"].isin(
        cohorts[-max_cohorts:]
    )
    shown = dataclasses.replace(result, table=table[keep])
    left = []
    if later:
        left.append(f"{later:,} later periods")
    if earlier:
        left.append(f"{earlier:,} earlier cohorts")
    return (
        _retention_pivot(shown)
        + f"\n({' and '.join(left)} not shown: --out FILE writes the whole table)"
    )


def _retention_pivot(result: CohortRetention) -> str:
    table = result.table
    if table.empty:
        return "no observed cohort periods"
    index = ["segment", "cohort"] if result.segment else ["cohort"]
    pivot = result.pivot.map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
    sizes = table.groupby(index)["cohort_size"].first()
    small = table.groupby(index)["small_group"].first()
    pivot.insert(0, "size", [f"{n}{' *' if s else ''}" for n, s in zip(sizes, small, strict=True)])
    pivot.columns = [str(c) for c in pivot.columns]
    fmt = {"month": "%Y-%m", "week": "%Y-%m-%d", "day": "%Y-%m-%d"}[result.cohort_freq]
    pivot.index = pivot.index.map(
        lambda k: (
            (k[0], pd.Timestamp(k[1]).strftime(fmt))
            if isinstance(k, tuple)
            else pd.Timestamp(k).strftime(fmt)
        )
    )
    return pivot.to_string()


def format_revenue_retention(result: RevenueRetention) -> str:
    """Signup cohorts x months: the share of the starting MRR kept, in percent (blank: not
    observed), with the paying customers and their MRR in the signup month."""
    table = result.table
    if table.empty:
        return "no cohort with MRR in its signup month inside the data"
    pivot = result.pivot.map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
    firsts = table.groupby("cohort")[["customers", "mrr_start"]].first().reindex(pivot.index)
    pivot.insert(0, "MRR t0", [fmt.money(m) for m in firsts["mrr_start"]])
    pivot.insert(0, "paying", [fmt.count(n) for n in firsts["customers"]])
    pivot.columns = [str(c) for c in pivot.columns]
    pivot.index = pivot.index.map(lambda c: f"{pd.Timestamp(c):%Y-%m}")
    return pivot.to_string()


def format_cell(cell: pd.DataFrame) -> str:
    """The customers of one cohort cell: id, start date and whether they were active then."""
    state = [
        ("active" if a else "not active") if e else "not observed"
        for e, a in zip(cell["eligible"], cell["active"], strict=True)
    ]
    view = pd.DataFrame(
        {
            "customer_id": cell["customer_id"],
            "start": cell["start"].dt.strftime("%Y-%m-%d"),
            "in this period": state,
        }
    )
    return view.to_string(index=False)


def _parse_cell(text: str) -> tuple[pd.Timestamp, str]:
    """--cell COHORT,PERIOD: a date in the cohort (2024-01) and a period index or bracket."""
    cohort, sep, period = text.partition(",")
    if not sep or not period.strip():
        raise typer.BadParameter(
            f"{text!r}: use COHORT,PERIOD such as 2024-01,3 (or 2024-01,8-30 for brackets)",
            param_hint="--cell",
        )
    return _parse_date(cohort.strip(), "--cell"), period.strip()


def retention_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with the contract's tables.")],
    cohort: Annotated[str, typer.Option(help="Cohort period: day, week or month.")] = "month",
    period: Annotated[
        str | None, typer.Option(help="Period unit of the index (default: the cohort's).")
    ] = None,
    anchor: Annotated[str, typer.Option(help="Cohort by signup or first-activity.")] = "signup",
    mode: Annotated[str, typer.Option(help="n-day, unbounded or bracket.")] = "n-day",
    brackets: Annotated[
        str | None, typer.Option(help="Day brackets for --mode bracket, such as 1-7,8-30,31-90.")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Break down by one attribute (or signup_cohort, risk_band).")
    ] = None,
    events: EventsOption = None,
    config: ConfigFile = None,
    cohorts_from: Annotated[
        str | None, typer.Option("--from", help="First cohort to include (date).")
    ] = None,
    cohorts_to: Annotated[
        str | None, typer.Option("--to", help="Last cohort to include (date).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End of observation (default: the end of the data).")
    ] = None,
    partial_periods: Annotated[
        bool, typer.Option(help="Count periods that have started but not ended.")
    ] = False,
    max_period: Annotated[int | None, typer.Option(help="Highest period index to show.")] = None,
    min_group_size: Annotated[int, typer.Option(help="Flag cohorts with fewer customers.")] = 30,
    scores: Annotated[
        Path | None, typer.Option(help="Scores with customer_id and risk_band, for --by risk_band.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the tidy table here (.csv or .parquet).")
    ] = None,
    plot_dir: Annotated[
        Path | None,
        typer.Option(
            help="Write retention_heatmap.png and retention_curves.png here (with --revenue "
            "also revenue_retention_heatmap.png)."
        ),
    ] = None,
    revenue: Annotated[
        bool,
        typer.Option(
            "--revenue",
            help="Also revenue retention by signup month: the share of each cohort's starting "
            "MRR kept, net of expansion (--out writes it beside the table as NAME_revenue).",
        ),
    ] = False,
    cell: Annotated[
        str | None,
        typer.Option(
            help="List the customers behind one cell, COHORT,PERIOD (2024-01,3; brackets: "
            "2024-01,8-30): id, start, active or not in that period."
        ),
    ] = None,
) -> None:
    """Cohort retention table (n-day, unbounded or bracketed), printed as cohorts x periods, with a
    heatmap and retention curves as PNG. Cells the data do not cover (before its first record,
    after its last) are blank, never 0 %."""
    _check_out(out, "--out")
    picked = _parse_cell(cell) if cell else None
    for option, value in (("--cohort", cohort), ("--period", period or cohort)):
        if value not in ("day", "week", "month"):
            raise typer.BadParameter("use day, week or month", param_hint=option)
    if mode not in ("n-day", "unbounded", "bracket"):
        raise typer.BadParameter("use n-day, unbounded or bracket", param_hint="--mode")
    if anchor not in ("signup", "first-activity", "first_activity"):
        raise typer.BadParameter("use signup or first-activity", param_hint="--anchor")
    try:
        bracket_list = parse_brackets(brackets) if brackets else DEFAULT_BRACKETS
    except MetricsInputError as err:
        raise typer.BadParameter(str(err), param_hint="--brackets") from None
    c0 = _parse_date(cohorts_from, "--from") if cohorts_from else None
    c1 = _parse_date(cohorts_to, "--to") if cohorts_to else None
    if c0 is not None and c1 is not None and c1 < c0:
        raise typer.BadParameter(
            f"the last cohort is before the first (--from {cohorts_from})", param_hint="--to"
        )
    observed = _parse_date(until, "--until", end_of_day=True) if until else None
    tables = _load(data)
    recorded_from = None
    if c0 is None and (len(tables.activity) or len(tables.revenue)):
        c0 = recorded_from = month_of(tables.history_start())
    churn = _data_churn(data, config)
    qualifying = _split(events) or (
        list(churn.qualifying_events) if churn is not None and churn.qualifying_events else None
    )
    if picked is not None:
        _print_cell(
            tables, picked, mode, cohort, period, anchor, qualifying, observed, partial_periods, out
        )
        return
    try:
        result = cohort_retention(
            tables,
            mode=mode,  # type: ignore[arg-type]
            cohort_freq=cohort,  # type: ignore[arg-type]
            period=period,  # type: ignore[arg-type]
            anchor=anchor.replace("-", "_"),  # type: ignore[arg-type]
            brackets=bracket_list,
            by=by,
            activity_events=qualifying,
            cohorts_from=c0,
            cohorts_to=c1,
            observed_until=observed,
            partial_periods=partial_periods,
            max_period=max_period,
            min_group_size=min_group_size,
            scores=_load_scores(scores),
        )
    except MetricsInputError as err:
        raise _fail(err) from None
    typer.echo(
        f"{mode} retention (%), {cohort} cohorts by {anchor}, observed from "
        f"{result.observed_from:%Y-%m-%d} until {result.observed_until}"
        + ("" if partial_periods else ", complete periods only")
        + (f", events {', '.join(qualifying)}" if qualifying else "")
        + "; blank: not observed"
    )
    if recorded_from is not None:
        typer.echo(
            f"cohorts from {recorded_from:%Y-%m-%d}, the start of the month of the data's first "
            f"record ({tables.history_start():%Y-%m-%d}): an earlier cohort's first periods were "
            "never recorded, and those of its customers who left then are missing (a week "
            "cohort that began before that day is one, though some of its customers started "
            "within the data); --from includes them"
        )
    typer.echo(format_retention(result))
    if result.table["small_group"].any():
        typer.echo(
            f"* fewer than {min_group_size} customers in the cohort; see retention_low/high in --out"
        )
    ended = _ended_without_churn(tables, pd.Timestamp(result.observed_until))
    if ended:
        typer.echo(
            f"note: {fmt.count(ended)} customers' service ended without churn by then (ended_at: "
            "a course or a fixed term that ran its course): from that day they are no longer "
            "customers and count as not retained here; churn (churn metrics) counts only those "
            "who left"
        )
    if out is not None:
        _write_table(result.table, out)
        typer.echo(f"wrote {out}")
    if plot_dir is not None:
        for path in (
            plot_retention_heatmap(result, plot_dir / "retention_heatmap.png"),
            plot_retention_curves(result, plot_dir / "retention_curves.png"),
        ):
            typer.echo(f"wrote {path}")
    if revenue:
        money_kept = revenue_cohort_retention(
            tables,
            cohorts_from=c0,
            cohorts_to=c1,
            observed_until=observed,
            partial_periods=partial_periods,
            max_period=max_period,
        )
        typer.echo(
            "\nrevenue retention (% of the starting MRR kept, net of expansion; month 0 is a "
            "customer's first paid month, the signup month or the next), signup month "
            f"cohorts, data {money_kept.observed_from:%Y-%m-%d} to {money_kept.observed_until}"
        )
        typer.echo(format_revenue_retention(money_kept))
        if out is not None:
            path = out.with_name(f"{out.stem}_revenue{out.suffix}")
            _write_table(money_kept.table, path)
            typer.echo(f"wrote {path}")
        if plot_dir is not None:
            path = plot_revenue_heatmap(money_kept, plot_dir / "revenue_retention_heatmap.png")
            typer.echo(f"wrote {path}")


def _ended_without_churn(tables: Tables, until: pd.Timestamp) -> int:
    """Customers whose service ended (ended_at) without churn by `until`: the cohort table
    counts them as lost, which reads as churn unless said (OULAD: 69 % of registrations
    completed their course, and every cohort fell to 0-1 % by its tenth month)."""
    customers = tables.customers
    if "ended_at" not in customers:
        return 0
    ended = customers["ended_at"].notna() & (customers["ended_at"] <= until)
    if "churned_at" in customers:
        ended &= customers["churned_at"].isna()
    return int(ended.sum())


def _print_cell(
    tables: Tables,
    picked: tuple[pd.Timestamp, str],
    mode: str,
    cohort: str,
    period: str | None,
    anchor: str,
    qualifying: list[str] | None,
    observed: pd.Timestamp | None,
    partial_periods: bool,
    out: Path | None,
) -> None:
    """`churn retention --cell`: the customers behind one cohort cell."""
    when, index = picked
    try:
        who = cohort_cell(
            tables,
            when,
            index,
            mode=mode,  # type: ignore[arg-type]
            cohort_freq=cohort,  # type: ignore[arg-type]
            period_unit=period,  # type: ignore[arg-type]
            anchor=anchor.replace("-", "_"),  # type: ignore[arg-type]
            activity_events=qualifying,
            observed_until=observed,
            partial_periods=partial_periods,
        )
    except MetricsInputError as err:
        raise typer.BadParameter(str(err), param_hint="--cell") from None
    unit = "days" if mode == "bracket" else (period or cohort)
    typer.echo(
        f"{mode} cohort {when:%Y-%m-%d} ({cohort}), period {index} ({unit} since {anchor}): "
        f"{fmt.count(len(who))} customers, {fmt.count(who['eligible'].sum())} observed, "
        f"{fmt.count(who['active'].sum())} active"
    )
    if who.empty:
        return
    typer.echo(format_cell(who))
    if out is not None:
        _write_table(who, out)
        typer.echo(f"wrote {out}")
