"""scores.csv: the weekly partition's scores as a CRM import or a spreadsheet takes them.

One row per scored customer, riskiest first (ties by customer id), so that a spreadsheet opens on
the customers to call; UTF-8, one header row, comma-separated, text quoted where needed:

| column | what |
| --- | --- |
| customer_id | the id as text, exactly as in the data (leading zeros kept) |
| churn_probability_pct | the churn probability in percent, two decimals (12.34: one decimal tied 283 of a commit log's 459 contributors, whose probabilities sat within 96.2-96.6 %) |
| risk_band | high, medium or low |
| risk_band_range | the band's probabilities ("96.5% and above", "94.1% to 96.5%", "below 94.1%"): where most customers are likely to leave, the bands rank them, and "low" holds customers at 94 % |
| reason_1 .. reason_3 | the top reasons in words, largest risk first (empty when fewer; all empty for a customer at or below the typical customer's risk) |
| lower_risk_reason | for a customer at or below the typical customer's risk, what holds it down most ("Last activity 3 days ago (usually active every 4 days)"); empty above it |
| change_pts | the change since the previous run in percentage points, one decimal; empty when there is no previous score (a table's scores, `churn score-table`, have neither change column) |
| level_change_pts | the part of change_pts that the churn level of the time of year made (it moves every customer at once; 0 for a model without one); empty when change_pts is |
| cancellation_scheduled | the date (YYYY-MM-DD) the export already holds this customer's cancellation for (notice given before the run date, cancel_requested_at, with its churned_at still ahead; or a churned_at after the data's end: Chargebee's non_renewing, Stripe's cancel_at; features.labels.scheduled_cancellations), empty for the others; the column is there only when some customer has one |

A customer with neither a reason nor a lower-risk reason (features at the typical customer's,
or many small contributions none of which passes the rules for a reason) is said so, in
lower_risk_reason at or below the typical risk ("No feature sets this customer apart from the
typical customer (91.6%)"), in reason_1 above it: a purchase log's 296 customers at the typical
91.6 % had read as blank rows (benchmarks/README.md, session 38).

Numbers are plain, unquoted numbers (no % sign, no thousands separator, a dot for decimals;
50.0 is written 50) so that a spreadsheet or an import reads them as numbers; text is quoted.
Their rounding is reporting.formatting's (percent_number, points_number). The CSV's columns are
built from scores.parquet batch by batch (the drivers' lists are never all in memory); only those
short columns are held to sort them (about 200 bytes a customer: 200 MB for a million).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from reporting.formatting import PROBABILITY_DIGITS, percent, percent_number, points_number

SCORES_CSV = "scores.csv"
REASONS = 3
CSV_COLUMNS = [
    "customer_id",
    "churn_probability_pct",
    "risk_band",
    "risk_band_range",
    *(f"reason_{k}" for k in range(1, REASONS + 1)),
    "lower_risk_reason",
    "change_pts",
    "level_change_pts",
]
SCHEDULED_COLUMN = "cancellation_scheduled"
NUMBER_COLUMNS = ("churn_probability_pct", "change_pts", "level_change_pts")
CHANGE_COLUMNS = ("change_pts", "level_change_pts")
_READ = [
    "customer_id", "churn_probability", "risk_band", "drivers", "probability_delta", "level_delta",
    "lower_risk",
]  # fmt: skip


def _nth_reasons(drivers: pa.ListArray, count: int) -> list[pa.Array]:
    """The k-th driver's reason per row for k < count (null where a row has fewer drivers), from
    the list offsets (no Python loop over rows)."""
    drivers = drivers.combine_chunks() if isinstance(drivers, pa.ChunkedArray) else drivers
    offsets = drivers.offsets.to_numpy()
    starts, lengths = offsets[:-1], np.diff(offsets)
    reasons = drivers.values.field("reason")
    out = []
    for k in range(count):
        has = lengths > k
        picked = np.full(len(starts), None, dtype=object)
        if has.any():
            picked[has] = reasons.take(pa.array(starts[has] + k)).to_numpy(zero_copy_only=False)
        out.append(pa.array(picked, pa.string()))
    return out


def _first_lower_risk(scores: pa.Table | pa.RecordBatch) -> list[pa.Array]:
    """The lower_risk_reason column: the first lower-risk driver's reason (all null for
    partitions written before lower_risk existed)."""
    if "lower_risk" not in scores.schema.names:
        return [pa.nulls(scores.num_rows, pa.string())]
    return _nth_reasons(scores.column("lower_risk"), 1)


def _number(texts: list[str | None]) -> pa.Array:
    """Rounded numbers (reporting.formatting's text) as float64, so that the CSV holds them
    unquoted and as short as their rounding (12.3, not 12.299999999999999)."""
    return pa.array(texts, pa.string()).cast(pa.float64())


def nothing_stands_out(typical_probability: float) -> tuple[str, str]:
    """What scores.csv says of a customer without any reason: (above the typical customer's
    risk, at or below it)."""
    typical = percent(typical_probability)
    return (
        f"No single feature stands out: many small ones add up (typical customer: {typical})",
        f"No feature sets this customer apart from the typical customer ({typical})",
    )


def _said_when_blank(
    probability: np.ndarray,
    reasons: list[pa.Array],
    lower: pa.Array,
    typical_probability: float | None,
) -> tuple[list[pa.Array], pa.Array]:
    """reason_1 and lower_risk_reason with nothing_stands_out's words on the rows that have
    neither (unchanged without the typical probability)."""
    if typical_probability is None or not reasons:
        return reasons, lower
    blank = reasons[0].is_null().to_numpy(zero_copy_only=False) & lower.is_null().to_numpy(
        zero_copy_only=False
    )
    if not blank.any():
        return reasons, lower
    above_text, below_text = nothing_stands_out(typical_probability)
    above = blank & (probability > typical_probability)
    below = blank & ~above
    first = reasons[0].to_numpy(zero_copy_only=False).astype(object)
    first[above] = above_text
    held = lower.to_numpy(zero_copy_only=False).astype(object)
    held[below] = below_text
    return [pa.array(first, pa.string()), *reasons[1:]], pa.array(held, pa.string())


def handoff_table(
    scores: pa.Table | pa.RecordBatch,
    band_ranges: Mapping[str, str] | None = None,
    typical_probability: float | None = None,
) -> pa.Table:
    """The CSV's columns (CSV_COLUMNS) for a batch of scores.parquet rows; band_ranges: each
    band's probabilities in words (reporting.formatting.band_ranges; empty without them);
    typical_probability: the scoring model's typical customer's risk (ChurnModel.
    typical_probability), for the rows without any reason (nothing_stands_out)."""
    probability = scores.column("churn_probability").to_numpy(zero_copy_only=False)
    delta = scores.column("probability_delta").to_numpy(zero_copy_only=False)
    level = scores.column("level_delta").to_numpy(zero_copy_only=False)
    bands = scores.column("risk_band").cast(pa.string())
    named = pa.array(list(band_ranges or {}), pa.string())
    ranges = pa.array(list((band_ranges or {}).values()), pa.string()).take(
        pc.index_in(bands, value_set=named)
    )  # null where a band has no range
    reasons, lower = _said_when_blank(
        probability,
        _nth_reasons(scores.column("drivers"), REASONS),
        _first_lower_risk(scores)[0],
        typical_probability,
    )
    columns = [
        scores.column("customer_id").cast(pa.string()),
        _number(percent_number(probability, digits=PROBABILITY_DIGITS)),
        bands,
        ranges,
        *reasons,
        lower,
        _number(points_number(delta * 100.0)),
        _number(points_number(level * 100.0)),
    ]
    return pa.Table.from_arrays(columns, names=CSV_COLUMNS)


def write_scores_csv(
    scores_parquet: str | Path,
    out: str | Path,
    batch_rows: int = 100_000,
    band_ranges: Mapping[str, str] | None = None,
    typical_probability: float | None = None,
    changes: bool = True,
    scheduled: pd.DataFrame | None = None,
) -> int:
    """Write scores.csv (see the module docstring) from a partition's scores.parquet (a file,
    or the Spark engine's folder of part files); returns the number of customers written.
    band_ranges: the scoring model's bands in words (reporting.formatting.band_ranges);
    typical_probability: its typical customer's risk (handoff_table); changes: False leaves
    out change_pts and level_change_pts, for scores that have no previous run by nature (a
    table scored once: two columns always empty say nothing); scheduled: customer_id and
    churned_at of the customers whose cancellation the export holds already
    (features.labels.scheduled_cancellations), the cancellation_scheduled column when any."""
    source = ds.dataset(str(scores_parquet), format="parquet")
    names = [n for n in CSV_COLUMNS if changes or n not in CHANGE_COLUMNS]
    dates = None
    if scheduled is not None and len(scheduled):
        names.append(SCHEDULED_COLUMN)
        dates = pd.Series(
            pd.to_datetime(scheduled["churned_at"]).dt.strftime("%Y-%m-%d").to_numpy(),
            index=scheduled["customer_id"].astype(str).to_numpy(),
        )
    schema = pa.schema([(n, pa.float64() if n in NUMBER_COLUMNS else pa.string()) for n in names])
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    present = [c for c in _READ if c in source.schema.names]

    def rows_of(batch: pa.RecordBatch) -> pa.Table:
        table = handoff_table(batch, band_ranges, typical_probability)
        if dates is not None:
            ids = batch.column("customer_id").to_pandas().astype(str)
            table = table.append_column(
                SCHEDULED_COLUMN, pa.array(ids.map(dates).to_numpy(), pa.string(), from_pandas=True)
            )
        return table.select(names).append_column("_p", batch.column("churn_probability"))

    parts = [
        rows_of(batch)
        for batch in source.to_batches(batch_size=batch_rows, columns=present)
        if batch.num_rows
    ]
    rows = (
        pa.concat_tables(parts)
        if parts
        else schema.empty_table().append_column("_p", pa.array([], pa.float64()))
    )
    del parts
    order = pc.sort_indices(
        rows,
        sort_keys=[("_p", "descending"), ("customer_id", "ascending")],
    )
    rows = rows.drop_columns(["_p"])
    with pacsv.CSVWriter(str(out), schema, write_options=options) as writer:
        for start in range(0, len(order), batch_rows):
            writer.write_table(rows.take(order[start : start + batch_rows]))
    return rows.num_rows


LAPSED_CSV = "lapsed.csv"


def write_lapsed_csv(lapsed: pd.DataFrame, out: str | Path, currency: str | None = None) -> int:
    """lapsed.csv: the customers a non-contractual run does not score because they have no
    qualifying activity in the model's lookback (features.labels.lapsed_customers), the
    win-back list, most recently lapsed first: customer_id as text, last_activity_at (UTC,
    ISO 8601), days_since_last_activity (one decimal), qualifying_events, revenue_total (two
    decimals; left out when the data has no revenue rows: an always-empty column says
    nothing), named with its currency where the [scoring] section gives one
    (``revenue_total_eur``): a bare number in a win-back list is read in the reader's own.
    Returns the number of customers written."""
    frame = pd.DataFrame(
        {
            "customer_id": lapsed["customer_id"].astype("string"),
            "last_activity_at": pd.to_datetime(lapsed["last_activity_at"], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "days_since_last_activity": lapsed["days_since_last_activity"].round(1),
            "qualifying_events": lapsed["qualifying_events"].astype("int64"),
            "revenue_total": lapsed["revenue_total"].round(2),
        }
    )
    if frame["revenue_total"].isna().all():
        frame = frame.drop(columns="revenue_total")
    elif currency:
        frame = frame.rename(columns={"revenue_total": f"revenue_total_{currency.lower()}"})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    pacsv.write_csv(table, str(out), write_options=options)
    return len(frame)
