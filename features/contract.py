"""The data contract: the four input tables every dataset is mapped onto, and their checks.

Each table is validated when it is loaded. A missing column, a wrong type, an unparseable
timestamp, a duplicate customer id, a row for an unknown customer or a negative value where
none is allowed raises :class:`ContractError`, which names the table, the column and an
example row. Nothing is coerced to zero or dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow.compute as pc
from pandera.engines import pandas_engine

from features.types import Problem, arrow_text, parse_numbers, parse_timestamps, problem_at

TABLES = ("customers", "activity", "feedback", "revenue")
REQUIRED_TABLES = ("customers", "activity")

FEEDBACK_KINDS = ("nps", "csat", "review", "ticket")
TICKET_STATUSES = ("open", "closed")
REVENUE_KINDS = ("invoice", "order", "refund", "failed_payment")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "signup_at"),
    "activity": ("customer_id", "at", "event"),
    "feedback": ("customer_id", "at", "kind"),
    "revenue": ("customer_id", "at", "amount"),
}
TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("signup_at", "churned_at", "ended_at", "cancel_requested_at"),
    "activity": ("at",),
    "feedback": ("at", "resolved_at"),
    "revenue": ("at", "period", "period_end"),
}
# The contract's times that may lie after the export's day: a paid period (an invoice for next
# month, its end), a cancellation scheduled at a term's end, a service's end. The others are
# things that happened, and a time after now is a mistake (features.types.parse_timestamps).
END_COLUMNS = ("churned_at", "ended_at")  # a customer's churn, and an end without churn
FUTURE_TIMESTAMPS: dict[str, tuple[str, ...]] = {
    "customers": END_COLUMNS,
    "revenue": ("period", "period_end"),
}
# The times that record what happened: never after now.
EVENT_TIMESTAMPS: frozenset[tuple[str, str]] = frozenset(
    (table, column)
    for table, columns in TIMESTAMP_COLUMNS.items()
    for column in columns
    if column not in FUTURE_TIMESTAMPS.get(table, ())
)


class ContractError(ValueError):
    """Input data breaks the contract; the message names table, column and an example row.

    One error may carry several problems of one table (all found in one pass): `problems`
    lists them, and the message shows each with its count, an example row and a hint, cut to
    fit a screen."""

    def __init__(
        self,
        table: str,
        column: str | None,
        problem: str,
        example: object = None,
        *,
        problems: list[Problem] | None = None,
        text: str | None = None,
    ):
        self.table = table
        self.column = column
        self.problem = problem
        self.example = example
        self.problems = problems or []
        if text is None:
            where = f"table '{table}'" + (f", column '{column}'" if column else "")
            text = f"{where}: {problem}"
            if example is not None:
                text += f"; example row: {_short(example)}"
        super().__init__(text)

    @classmethod
    def from_problems(
        cls, table: str, problems: list[Problem], frame: pd.DataFrame, source: str | None = None
    ) -> ContractError:
        """One error for all problems of a table; examples are rows of `frame` (by position)."""
        first = problems[0]
        example = _row(frame, first.examples[0]) if first.examples else None
        if len(problems) == 1:
            text = _problem_line(table, first, frame, source)
        else:
            where = f"table '{table}'" + (f" ({source})" if source else "")
            lines = [f"{where}: {len(problems)} problems"]
            lines += ["  - " + _problem_line(None, p, frame, None) for p in problems[:MAX_LINES]]
            if len(problems) > MAX_LINES:
                lines.append(f"  - and {len(problems) - MAX_LINES} more")
            text = "\n".join(lines)
        return cls(table, first.column, first.problem, example, problems=problems, text=text)


MAX_LINES = 8  # problems listed in one message
MAX_VALUE_CHARS = 60  # a value shown in an example row
MAX_ROW_CHARS = 300


def _problem_line(table: str | None, p: Problem, frame: pd.DataFrame, source: str | None) -> str:
    where = []
    if table:
        where.append(f"table '{table}'" + (f" ({source})" if source else ""))
    if p.column:
        where.append(f"column '{p.column}'")
    count = f" ({p.rows} row{'s' if p.rows != 1 else ''})" if p.rows else ""
    text = (", ".join(where) + ": " if where else "") + p.problem + count
    if p.examples:
        text += f"; example row: {_short(_row(frame, p.examples[0]))}"
    if p.hint:
        text += f"; hint: {p.hint}"
    return text


def _row(frame: pd.DataFrame, position: int) -> dict:
    return {k: plain_value(v) for k, v in frame.iloc[int(position)].items()}


def _short(example: object) -> str:
    """An example row as text that fits a line: long values and long rows are cut."""
    if isinstance(example, dict):
        parts = []
        for key, value in example.items():
            shown = repr(value)
            if len(shown) > MAX_VALUE_CHARS:
                shown = shown[: MAX_VALUE_CHARS - 3] + "..."
            parts.append(f"{key!r}: {shown}")
        text = "{" + ", ".join(parts) + "}"
    else:
        text = str(example)
    return text if len(text) <= MAX_ROW_CHARS else text[: MAX_ROW_CHARS - 4] + "...}"


@dataclass
class Tables:
    """The contract's tables, validated. feedback and revenue may be empty but never None."""

    customers: pd.DataFrame
    activity: pd.DataFrame
    feedback: pd.DataFrame = field(default_factory=lambda: empty_table("feedback"))
    revenue: pd.DataFrame = field(default_factory=lambda: empty_table("revenue"))
    # Derived arrays (integer customer positions, parsed times) computed once per Tables.
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def history_start(self) -> pd.Timestamp:
        """Where the recorded history begins: the activity table's first row; without activity
        (a billing-only export) the earliest revenue or feedback row, and without those the
        earliest signup. The customers table is a snapshot whose signups may reach back years
        before the history starts, so it does not start it while other rows exist."""
        first = self.activity["at"].min() if len(self.activity) else pd.NaT
        if pd.isna(first):
            candidates = [self.revenue["at"].min(), self.feedback["at"].min()]
            candidates = [c for c in candidates if pd.notna(c)]
            first = min(candidates) if candidates else self.customers["signup_at"].min()
        if pd.isna(first):
            raise ContractError(
                "customers",
                "signup_at",
                "no dated row",
                text="the data has no dated row in any table: there is no date to start from",
            )
        return pd.Timestamp(first)

    def records_end(self) -> pd.Timestamp | None:
        """The latest signup, activity, feedback or revenue row (None when there is none)."""
        stamps = [self.customers["signup_at"].max(), self.activity["at"].max()]
        stamps += [self.feedback["at"].max(), self.revenue["at"].max()]
        known = [s for s in stamps if pd.notna(s)]
        return max(known) if known else None

    def end_dates(self) -> list[pd.Timestamp]:
        """The latest churned_at and ended_at, where the customers table has them."""
        ends = [self.customers[c].max() for c in END_COLUMNS if c in self.customers]
        return [e for e in ends if pd.notna(e)]

    def data_end(self) -> pd.Timestamp:
        """The edge of what has been observed (observed_end): the latest record, and a churn
        or end date no later than a day after it; scheduled ends do not move it."""
        end = observed_end(self.records_end(), self.end_dates(), self.has_events())
        if end is None:
            raise ContractError(
                "customers",
                "signup_at",
                "no dated row",
                text="the data has no dated row in any table (no customers, activity, feedback "
                "or revenue): nothing has been observed yet, so there is no date to work from",
            )
        return end

    def has_events(self) -> bool:
        """Whether any activity, feedback or revenue row exists (observed_end's `events`)."""
        return bool(len(self.activity) or len(self.feedback) or len(self.revenue))

    def scheduled_ends(self) -> dict[str, np.ndarray]:
        """Per end column, the customers whose end is scheduled (scheduled_end_rows); none in
        a customers table alone (observed_end)."""
        return scheduled_end_rows(self.customers, self._events_end())

    def scheduled_end_warning(self) -> str | None:
        """scheduled_end_warning on these tables (None in a customers table alone)."""
        return scheduled_end_warning(self.customers, self._events_end())

    def _events_end(self) -> pd.Timestamp | None:
        """records_end where event rows tell the export's end, else None (nothing scheduled)."""
        return self.records_end() if self.has_events() else None

    def next_run_date(self) -> pd.Timestamp:
        """The first whole day after the data's end: the run date the first weekly run after
        this export scores (`churn demo`'s run; the customers the risk bands are set on)."""
        return self.data_end().normalize() + pd.Timedelta(days=1)


# A churn or end date later than this after the latest record was not seen happening by the
# export: it is scheduled (a subscription set to end at its term: Chargebee's non_renewing with
# its cancelled_at, Stripe's cancel_at). One day lets a cancellation processed after the last
# event of the export's last day count as observed.
SCHEDULED_AFTER = pd.Timedelta(days=1)


def observed_end(
    records_end: pd.Timestamp | None, end_dates: Sequence[pd.Timestamp], events: bool = True
) -> pd.Timestamp | None:
    """The edge of what has been observed: the latest record (signup, activity, feedback,
    revenue), or a churn or end date after it by at most SCHEDULED_AFTER. Scheduled ends do not
    count: 45 of a Chargebee export's non_renewing customers, mapped as churned_at, had put the
    data's end ten months ahead, and the risk bands and the typical risk were set on the
    customers of a date ten months away (96 % of customers left without a reason). `events`:
    whether any activity, feedback or revenue row exists; a customers table alone (signups and
    cancellations) has nothing else to tell scheduled ends by, and all its dates count. Both
    engines call this (features.spark_engine)."""
    ends = [pd.Timestamp(e) for e in end_dates if pd.notna(e)]
    if records_end is None or pd.isna(records_end) or not events:
        known = ends + ([] if records_end is None or pd.isna(records_end) else [records_end])
        return max(known) if known else None
    end = pd.Timestamp(records_end)
    observed = [e for e in ends if e <= end + SCHEDULED_AFTER]
    return max([end, *observed])


def scheduled_end_rows(
    customers: pd.DataFrame, records_end: pd.Timestamp | None
) -> dict[str, np.ndarray]:
    """Per end column (churned_at, ended_at), the customers whose date lies more than
    SCHEDULED_AFTER after the latest record: a cancellation set for the end of a term."""
    if records_end is None or pd.isna(records_end):
        return {}
    edge = pd.Timestamp(records_end) + SCHEDULED_AFTER
    out = {}
    for column in END_COLUMNS:
        if column in customers:
            later = (customers[column] > edge).to_numpy(dtype=bool, na_value=False)
            if later.any():
                out[column] = later
    return out


def scheduled_end_warning(customers: pd.DataFrame, records_end: pd.Timestamp | None) -> str | None:
    """The churn or end dates after what the export has observed, in words: how many, their
    range and an example row, and what the tool does with them (None when there are none)."""
    found = scheduled_end_rows(customers, records_end)
    if not found:
        return None
    parts = []
    example = None
    for column, later in found.items():
        dates = customers.loc[later, column]
        parts.append(
            f"{int(later.sum()):,} {column} from {dates.min().date()} to {dates.max().date()}"
        )
        example = example or _example(customers, later)
    return (
        f"customers: {' and '.join(parts)} lie after the export's last record "
        f"({pd.Timestamp(records_end).date()}), so the export cannot have seen them happen: "
        "they are scheduled ends (a subscription set to end at its term: Chargebee's "
        "non_renewing, Stripe's cancel_at). They do not move the data's end, and each takes "
        f"effect only from its date on; example row: {example}"
    )


def empty_table(name: str) -> pd.DataFrame:
    """An empty table with the contract's columns and types, for optional tables left out."""
    columns: dict[str, pd.Series] = {}
    for col in REQUIRED_COLUMNS[name]:
        if col in TIMESTAMP_COLUMNS[name]:
            columns[col] = pd.Series([], dtype="datetime64[ns]")
        elif col == "amount":
            columns[col] = pd.Series([], dtype="float64")
        else:
            columns[col] = pd.Series([], dtype="str")
    return pd.DataFrame(columns)


def _example(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> dict:
    """The first offending row as a plain dict, for error messages."""
    idx = np.flatnonzero(np.asarray(mask))
    row = df.iloc[int(idx[0])]
    return {k: plain_value(v) for k, v in row.items()}


def plain_value(value: object) -> object:
    """A value as it reads best in an error message: timestamps as ISO text, numpy as Python."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _normalize_ids(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """customer_id as string: integer ids are turned into their decimal text, nothing else."""
    ids = df["customer_id"]
    if isinstance(ids.dtype, pd.CategoricalDtype):
        cats = ids.cat.categories
        if not (pd.api.types.is_string_dtype(cats) or pd.api.types.is_object_dtype(cats)):
            text = cats.astype("int64").astype("str")
        else:
            text = cats.astype("str")
        if text.dtype != cats.dtype or not text.equals(cats):  # renaming copies the codes
            df["customer_id"] = ids.cat.rename_categories(text)
        _check_no_missing(df, table, "customer_id")
        return df
    if pd.api.types.is_integer_dtype(ids):
        df["customer_id"] = ids.astype("str")
    elif pd.api.types.is_float_dtype(ids):
        bad = ids.notna() & (ids != np.floor(ids))
        if bad.any():
            raise ContractError(
                table, "customer_id", "ids must be text or whole numbers", _example(df, bad)
            )
        _check_no_missing(df, table, "customer_id")
        df["customer_id"] = ids.astype("int64").astype("str")
    elif isinstance(ids.dtype, pd.StringDtype):
        df["customer_id"] = ids.astype("str")  # text by its dtype: no value-by-value check
    elif pd.api.types.is_string_dtype(ids) or pd.api.types.is_object_dtype(ids):
        is_text = ids.map(lambda v: isinstance(v, str | int | np.integer)).astype(bool)
        notstr = ids.notna() & ~is_text
        if notstr.any():
            raise ContractError(
                table, "customer_id", "ids must be text or whole numbers", _example(df, notstr)
            )
        df["customer_id"] = ids.astype("str").where(ids.notna())
    else:
        raise ContractError(
            table,
            "customer_id",
            f"ids must be text or whole numbers, got {ids.dtype}",
            _example(df, np.ones(len(df), bool)) if len(df) else None,
        )
    _check_no_missing(df, table, "customer_id")
    return df


def _check_no_missing(df: pd.DataFrame, table: str, column: str) -> None:
    missing = df[column].isna()
    if missing.any():
        raise ContractError(
            table, column, f"{int(missing.sum())} rows have no value", _example(df, missing)
        )


# The columns of each event table that the features read (features.prepared, the Spark engine,
# retention.metrics). Any other column is kept in its table (an order or ticket id, by which
# `churn check` finds repeated rows; a field of the user's own) but no model feature comes
# from it: ingest.importer names such columns.
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "activity": ("customer_id", "at", "event", "value", "user_id"),
    "feedback": ("customer_id", "at", "kind", "score", "text", "status", "resolved_at"),
    "revenue": ("customer_id", "at", "amount", "kind", "period", "period_end"),
}

NUMERIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "activity": ("value",),
    "feedback": ("score",),
    "revenue": ("amount",),
}


def _schema(table: str, df: pd.DataFrame) -> pa.DataFrameSchema:
    """The pandera schema for a table; optional columns are checked when present."""
    ts = pa.Column("datetime64[ns]")
    ts_opt = pa.Column("datetime64[ns]", nullable=True)
    numeric = pa.Column(float)
    cols: dict[str, pa.Column] = {}
    if table == "customers":
        cols = {"customer_id": pa.Column(unique=True), "signup_at": ts}
        for ends in ("churned_at", "ended_at", "cancel_requested_at"):
            if ends in df:
                cols[ends] = ts_opt
    elif table == "activity":
        cols = {"customer_id": pa.Column(), "at": ts, "event": pa.Column(nullable=False)}
        if "value" in df:
            cols["value"] = pa.Column(float, pa.Check.ge(0), nullable=True)
        if "user_id" in df:  # the person acting for the account (B2B): optional per row
            cols["user_id"] = pa.Column(nullable=True)
    elif table == "feedback":
        cols = {
            "customer_id": pa.Column(),
            "at": ts,
            "kind": pa.Column(checks=pa.Check.isin(FEEDBACK_KINDS)),
        }
        if "score" in df:
            cols["score"] = pa.Column(float, pa.Check.in_range(0, 10), nullable=True)
        if "status" in df:
            cols["status"] = pa.Column(checks=pa.Check.isin(TICKET_STATUSES), nullable=True)
        if "resolved_at" in df:
            cols["resolved_at"] = ts_opt
        if "text" in df:
            cols["text"] = pa.Column(nullable=True)
    elif table == "revenue":
        cols = {"customer_id": pa.Column(), "at": ts, "amount": numeric}
        if "kind" in df:
            cols["kind"] = pa.Column(checks=pa.Check.isin(REVENUE_KINDS), nullable=True)
        if "period" in df:
            cols["period"] = ts_opt
        if "period_end" in df:
            cols["period_end"] = ts_opt
    return pa.DataFrameSchema(cols, name=table, strict=False)


def _passes(schema: pa.DataFrameSchema, df: pd.DataFrame, complete: frozenset[str]) -> bool:
    """True when every column of the schema certainly passes: its dtype, nulls, uniqueness and
    the built-in checks it uses (ge, in_range, isin), evaluated with numpy on the column.
    Columns in `complete` were already found to have no missing values and no duplicates
    (where unique): those two are not checked again.

    Why: pandera copies the frame and, on its first use in a process, imports its check
    backends (hypothesis included), which costs more than reading 10M events. Anything this
    cannot decide (another check, an unknown dtype) returns False, and so does every failure:
    pandera then validates the frame and words the error exactly as before."""
    for name, column in schema.columns.items():
        if name not in df:
            return False
        values = df[name]
        if column.dtype is not None:
            try:
                if not column.dtype.check(pandas_engine.Engine.dtype(values.dtype)):
                    return False
            except (TypeError, ValueError):
                return False
        if name in complete:
            missing = np.zeros(len(values), dtype=bool)
        else:
            missing = values.isna().to_numpy()
            if missing.any() and not column.nullable:
                return False
            if column.unique and values.duplicated().any():
                return False
        for check in column.checks:
            if not _check_passes(check, values, missing):
                return False
    return True


def _check_passes(check: pa.Check, values: pd.Series, missing: np.ndarray) -> bool:
    """One built-in pandera check over the present values; False when it fails or is unknown."""
    stats = check.statistics or {}
    if check.name == "isin":
        return bool((values.isin(stats["allowed_values"]).to_numpy() | missing).all())
    if check.name not in ("greater_than_or_equal_to", "in_range"):
        return False
    if not pd.api.types.is_float_dtype(values.dtype) or isinstance(values.dtype, pd.ArrowDtype):
        return False
    x = values.to_numpy()  # float64: missing values are NaN and compare False below
    if check.name == "greater_than_or_equal_to":
        return not (x < stats["min_value"]).any()
    low, high = stats["min_value"], stats["max_value"]
    too_low = (x < low) if stats.get("include_min", True) else (x <= low)
    too_high = (x > high) if stats.get("include_max", True) else (x >= high)
    return not (too_low | too_high).any()


def _run_schema(table: str, df: pd.DataFrame, complete: frozenset[str]) -> pd.DataFrame:
    schema = _schema(table, df)
    if _passes(schema, df, complete):
        return df
    try:
        return schema.validate(df, lazy=False)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors) as err:
        column = getattr(err, "column_name", None)
        cases = err.failure_cases
        example = None
        if isinstance(cases, pd.DataFrame) and "index" in cases and len(cases):
            pos = cases["index"].iloc[0]
            if pos is not None and pos in df.index:
                example = _example(df, df.index == pos)
        reason = str(err).splitlines()[0]
        raise ContractError(table, column, reason, example) from None


# Values that other tools use for the contract's categories, and the contract value they mean:
# the hint of an error names the map to declare in the import mapping.
CATEGORY_SYNONYMS: dict[str, dict[str, str]] = {
    "status": {
        "solved": "closed",
        "resolved": "closed",
        "done": "closed",
        "new": "open",
        "pending": "open",
        "hold": "open",
        "on-hold": "open",
        "in progress": "open",
    },
    "revenue.kind": {
        "paid": "invoice",
        "charge": "invoice",
        "payment": "invoice",
        "subscription": "invoice",
        "refunded": "refund",
        "credit_note": "refund",
        "failed": "failed_payment",
        "uncollectible": "failed_payment",
        "declined": "failed_payment",
        "purchase": "order",
        "sale": "order",
    },
    "feedback.kind": {"survey": "nps", "support": "ticket", "rating": "review"},
}
ALLOWED: dict[tuple[str, str], tuple[str, ...]] = {
    ("feedback", "kind"): FEEDBACK_KINDS,
    ("feedback", "status"): TICKET_STATUSES,
    ("revenue", "kind"): REVENUE_KINDS,
}


def _category_problem(table: str, column: str, values: pd.Series) -> Problem | None:
    """Values outside the contract's set for a category column, named with their counts and
    the value each probably means."""
    allowed = ALLOWED[(table, column)]
    outside = (values.notna() & ~values.isin(allowed)).to_numpy()
    if not outside.any():
        return None
    counts = values[outside].astype("str").value_counts()
    # one value: the problem's own row count says it ("'payment' (3 rows) (3 rows)" had)
    shown = (
        repr(counts.index[0])
        if len(counts) == 1
        else ", ".join(f"{v!r} ({n} rows)" for v, n in counts.head(5).items())
    )
    more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
    synonyms = CATEGORY_SYNONYMS.get(column, CATEGORY_SYNONYMS.get(f"{table}.{column}", {}))
    maps = [f"{v!r} to {synonyms[v.lower()]!r}" for v in counts.index[:5] if v.lower() in synonyms]
    hint = f"allowed: {', '.join(allowed)}"
    if maps:
        hint = f"map {', '.join(maps)} in the import mapping ({hint})"
    plural = f"{column}es" if column.endswith("s") else f"{column}s"  # "statuses", "kinds"
    return problem_at(column, f"values that are not {plural}: {shown}{more}", outside, hint)


def _rule_problems(table: str, df: pd.DataFrame) -> list[Problem]:
    """The contract's value rules, each violation counted with an example: categories, score
    ranges per kind, signs per kind, non-negative values, order of dates."""
    problems: list[Problem] = []

    def add(column: str, problem: str, mask: object, hint: str | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            problems.append(problem_at(column, problem, mask, hint))

    for (name, column), _ in ALLOWED.items():
        if name == table and column in df:
            found = _category_problem(table, column, df[column])
            if found is not None:
                problems.append(found)
    if table == "customers" and "churned_at" in df:
        add(
            "churned_at",
            "churned before signing up",
            df["churned_at"] < df["signup_at"],
            "swapped columns, or a contract revoked before its start date (signed in December "
            "to start in January, cancelled in December): such customers never started; drop "
            "them in the mapping, or take signup_at as the day the contract was signed (a SQL "
            "source's least(start, cancelled))",
        )
    if table == "customers" and "ended_at" in df:
        add("ended_at", "ended before signing up", df["ended_at"] < df["signup_at"])
    if table == "activity" and "value" in df:
        add(
            "value",
            "negative values (values are amounts, quantities or durations)",
            df["value"] < 0,
        )
    if table == "feedback" and "score" in df:
        score = df["score"].to_numpy()
        add("score", "scores outside 0-10", (score < 0) | (score > 10))
        five_point = df["kind"].isin(["csat", "review"]).to_numpy()
        add("score", "csat and review scores must be 1-5", five_point & ((score < 1) | (score > 5)))
    if table == "feedback" and "resolved_at" in df:
        add("resolved_at", "resolved before it was opened", df["resolved_at"] < df["at"])
    if table == "feedback" and "status" in df:
        resolved = df["resolved_at"] if "resolved_at" in df else pd.Series(pd.NaT, index=df.index)
        add(
            "resolved_at",
            "closed tickets need resolved_at (when they were closed) to be used point-in-time",
            (df["kind"] == "ticket") & (df["status"] == "closed") & resolved.isna(),
            "map the time each was closed (a solved_at, or the last update of a closed "
            "ticket); an export that keeps only today's status cannot say which tickets were "
            "open at an earlier date: map the tickets without status (they count as tickets, "
            "not as open ones)",
        )
    if table == "revenue" and "period" in df and "period_end" in df:
        add(
            "period_end",
            "paid periods that end before they start (period_end < period)",
            df["period_end"] < df["period"],
        )
    if table == "revenue":
        kind = df["kind"] if "kind" in df else pd.Series("invoice", index=df.index)
        amount = df["amount"].to_numpy()
        add("amount", "amounts must not be missing", np.isnan(amount))
        is_refund = (kind == "refund").to_numpy()
        add(
            "amount",
            "negative amounts are only allowed for kind 'refund' (and refunds are <= 0)",
            (~is_refund & (amount < 0)) | (is_refund & (amount > 0)),
            "give refunds kind 'refund' (a value map in the import mapping)",
        )
    return problems


def check_unique_ids(df: pd.DataFrame, table: str = "customers") -> None:
    """A ContractError when a customer id repeats (with the count and an example row). Also
    used by the importer once its batches are joined, as a key may repeat across batches."""
    repeated = df["customer_id"].duplicated()
    if repeated.any():
        raise ContractError(
            table,
            "customer_id",
            f"duplicate customer id ({int(repeated.sum())} rows repeat one)",
            _example(df, df["customer_id"].duplicated(keep=False)),
        )


def ids_in(ids: pd.Series, known: pd.Series | pd.Index) -> np.ndarray:
    """Per row: the id is one of `known`, looked up in an Arrow hash set (pandas' isin on its
    str dtype converts the set value by value in Python: seconds for 100,000 customers)."""
    if not len(ids):
        return np.zeros(0, dtype=bool)
    hit = pc.is_in(arrow_text(ids), value_set=arrow_text(pd.Series(known)))
    return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def validate_table(table: str, df: pd.DataFrame, *, now: object = None) -> pd.DataFrame:
    """Check one table against the contract and return it with parsed timestamps and text ids.

    Every problem of the table is found in one pass and reported in one ContractError (a few
    example rows each). Timestamps must be Parquet timestamps or ISO 8601 text (an import
    mapping declares any other form); they may not lie before 1900 or after `now` (default:
    the current time)."""
    if table not in TABLES:
        raise ValueError(f"unknown table '{table}', expected one of {TABLES}")
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in df.columns]
    if missing:
        raise ContractError(
            table,
            missing[0],
            f"required column{'s are' if len(missing) > 1 else ' is'} missing: "
            f"{', '.join(missing)} (has: {list(df.columns)})",
        )
    df = df.reset_index(drop=True)  # a new frame; copy-on-write keeps the caller's intact
    df = _normalize_ids(df, table)  # ids present (and unique customers, below): not re-checked
    complete = {"customer_id"}
    problems: list[Problem] = []
    for col in TIMESTAMP_COLUMNS[table]:
        if col in df:
            future = col in FUTURE_TIMESTAMPS.get(table, ())
            parsed, found = parse_timestamps(df[col], col, now=now, future=future)
            problems += found
            if not found:
                df[col] = parsed
    for col in NUMERIC_COLUMNS.get(table, ()):
        if col in df:
            parsed, found = parse_numbers(df[col], col)
            problems += found
            if not found:
                df[col] = parsed
    for col in REQUIRED_COLUMNS[table]:
        if col == "customer_id":
            continue
        absent = df[col].isna().to_numpy()
        if absent.any() and not any(p.column == col for p in problems):
            problems.append(problem_at(col, "rows have no value", absent))
        complete.add(col)
    if problems:
        raise ContractError.from_problems(table, problems, df)
    for col in ("event", "kind"):
        if col in REQUIRED_COLUMNS[table] and not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype("str")
    if table == "customers":
        check_unique_ids(df, table)
    problems = _rule_problems(table, df)
    if problems:
        raise ContractError.from_problems(table, problems, df)
    return _run_schema(table, df, frozenset(complete))


def validate_tables(
    customers: pd.DataFrame,
    activity: pd.DataFrame,
    feedback: pd.DataFrame | None = None,
    revenue: pd.DataFrame | None = None,
) -> Tables:
    """Validate all tables and their references to customers; returns the checked Tables."""
    checked = {
        "customers": validate_table("customers", customers),
        "activity": validate_table("activity", activity),
        "feedback": validate_table("feedback", feedback)
        if feedback is not None
        else empty_table("feedback"),
        "revenue": validate_table("revenue", revenue)
        if revenue is not None
        else empty_table("revenue"),
    }
    known = pd.Index(checked["customers"]["customer_id"])
    for name in ("activity", "feedback", "revenue"):
        df = checked[name]
        ids = df["customer_id"]
        if isinstance(ids.dtype, pd.CategoricalDtype):
            categories = ids.cat.categories
            if len(categories) <= len(known) and categories.equals(known[: len(categories)]):
                continue  # the customers' own ids, in order (no hash lookup needed)
            unknown_cats = known.get_indexer(categories) < 0
            if unknown_cats.any():
                unknown = ids.isin(ids.cat.categories[unknown_cats])
            else:
                continue
        else:
            unknown = ~ids_in(ids, known)
        if unknown.any():
            raise ContractError(
                name,
                "customer_id",
                f"{int(unknown.sum())} rows refer to customers not in 'customers'",
                _example(df, unknown),
            )
    return Tables(**checked)
