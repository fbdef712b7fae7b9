"""The import report: what was read, what was dropped and why, what came out.

Nothing is dropped silently: every row a filter or a value map removes is counted here under
its reason. The report is written beside the tables (report.md for people, report.json for
tools) and summarised on the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features.contract import TABLES

MAX_EXAMPLE_IDS = 5


@dataclass
class SourceReport:
    """Rows read from one source, rows dropped per reason, rows it gave its table."""

    table: str
    label: str
    location: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rows_out: int = 0
    # Revenue sources: the kept rows per value of a currency column the mapping does not read
    # (amounts of several currencies would be added up as one: warned about).
    currencies: dict[str, dict[str, int]] = field(default_factory=dict)
    # What the import report warns about this source (e.g. an aggregation that reads running
    # subscriptions as ended).
    warnings: list[str] = field(default_factory=list)
    # What the import report notes about this source: facts to confirm, not faults (times
    # read as UTC because they carry no zone and none is declared).
    notes: list[str] = field(default_factory=list)
    # Ids of rows dropped as unknown customers (unknown_customers = "drop"), a sample of at
    # most UNKNOWN_SAMPLE distinct ones: what the import's warning about them looks at.
    unknown_ids: list[str] = field(default_factory=list)
    # Per raw column: rows whose text was empty or only spaces, read as missing (never a level).
    blank_as_missing: dict[str, int] = field(default_factory=dict)
    # Rows an [aggregate] combined with others of the same key (kept rows minus groups) and
    # that key: no row is lost, but 117,329 rows read beside 116,138 out must say where the
    # difference went (a warehouse export's repeated ride rows, merged by ride_id).
    merged: int = 0
    merged_by: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())


class TableSummary:
    """What the import report says of one table, gathered batch by batch as rows are checked:
    rows, date range, churn dates (customers), and which customers the rows refer to.

    The customers a table refers to are flags over the customers' positions (one byte per
    customer), filled from the positions the importer's id lookup already computed, so the
    state carried across batches does not grow with the rows."""

    def __init__(self, name: str, n_customers: int | None):
        self.name = name
        self.time_column = "signup_at" if name == "customers" else "at"
        self.rows = 0
        self.first: pd.Timestamp | None = None
        self.last: pd.Timestamp | None = None
        self.churned: int | None = None
        self.last_churned: pd.Timestamp | None = None
        self.ended: int | None = None  # customers.ended_at: service ended without churn
        self.seen = None if n_customers is None else np.zeros(n_customers, dtype=bool)

    def add(self, df: pd.DataFrame, positions: np.ndarray | None) -> None:
        """One checked batch; positions: each row's customer among the customers' ids (the
        customers table itself passes None: its ids are unique, one customer per row)."""
        self.rows += len(df)
        if self.name == "customers" and "churned_at" in df:
            self.churned = (self.churned or 0) + int(df["churned_at"].notna().sum())
            self.last_churned = _latest(self.last_churned, df["churned_at"].max())
        if self.name == "customers" and "ended_at" in df:
            self.ended = (self.ended or 0) + int(df["ended_at"].notna().sum())
        if not len(df):
            return
        times = df[self.time_column]
        self.first = _earliest(self.first, times.min())
        self.last = _latest(self.last, times.max())
        if positions is not None and self.seen is not None:
            self.seen[positions] = True

    def entry(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "rows": self.rows,
            "customers": self.rows if self.seen is None else int(self.seen.sum()),
            "from": _iso(self.first),
            "to": _iso(self.last),
        }
        if self.name == "customers" and self.churned is not None:
            entry["churned"] = self.churned
            entry["last_churned_at"] = _iso(self.last_churned)
        if self.name == "customers" and self.ended is not None:
            entry["ended"] = self.ended
        return entry


def _earliest(a: object, b: object) -> object:
    if a is None or pd.isna(a):
        return b
    return a if pd.isna(b) or a <= b else b


def _latest(a: object, b: object) -> object:
    if a is None or pd.isna(a):
        return b
    return a if pd.isna(b) or a >= b else b


@dataclass
class ImportReport:
    mapping: str
    sources: list[SourceReport]
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    customers_without_activity: int = 0
    activity_mapped: bool = True  # False: a billing-only export (no [activity] in the mapping)
    example_customers_without_activity: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What the model does not read of the mapped columns; times read as UTC (NaiveTimes)
    notes: list[str] = field(default_factory=list)

    def describe(self, summaries: dict[str, TableSummary], customer_ids: pd.Series) -> None:
        """Rows, customers and date range of every table, and the customers without activity,
        from the summaries gathered batch by batch while the rows were checked (no second
        pass over the tables). customer_ids: the customers' ids, in their table's order."""
        for name in TABLES:
            summary = summaries.get(name) or TableSummary(name, len(customer_ids))
            self.tables[name] = summary.entry()
        self.activity_mapped = "activity" in summaries
        active = summaries["activity"].seen if self.activity_mapped else None
        if active is None:
            active = np.zeros(len(customer_ids), dtype=bool)
        without = customer_ids[~active]
        self.customers_without_activity = len(without)
        self.example_customers_without_activity = [
            str(v) for v in without.head(MAX_EXAMPLE_IDS).tolist()
        ]

    def _activity_line(self) -> str:
        if not self.activity_mapped:
            return (
                "no activity mapped (a billing-only export): the activity table is empty, and "
                "the model learns from the customers, their payments and their feedback"
            )
        return f"customers without any activity: {self.customers_without_activity:,}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def summary_lines(self) -> list[str]:
        """A few lines for the terminal: per source read/dropped, per table rows and dates."""
        lines = []
        for s in self.sources:
            text = f"{s.table:<9} <- {s.label}: {s.rows_read:,} rows read"
            if s.dropped:
                text += f", {s.rows_dropped:,} dropped (" + "; ".join(
                    f"{reason}: {count:,}" for reason, count in s.dropped.items()
                )
                text += ")"
            if s.merged:
                text += f"; {s.merged:,} combined with rows of the same {', '.join(s.merged_by)}"
            if s.blank_as_missing:
                text += "; empty text read as missing: " + ", ".join(
                    f"{column} {count:,}" for column, count in s.blank_as_missing.items()
                )
            lines.append(text)
        for name, t in self.tables.items():
            if t["rows"]:
                lines.append(f"{name:<9} {t['rows']:,} rows, {t['from']} .. {t['to']}")
        lines.append(self._activity_line())
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"warning: {w}" for w in self.warnings]
        return lines

    def to_markdown(self) -> str:
        out = [f"# Import report\n\nMapping: `{self.mapping}`\n", "## Sources\n"]
        out.append("| table | source | rows read | rows dropped | rows out |")
        out.append("| --- | --- | ---: | ---: | ---: |")
        for s in self.sources:
            out.append(
                f"| {s.table} | {_md(s.label)} | {s.rows_read:,} | {s.rows_dropped:,} | "
                f"{s.rows_out:,} |"
            )
        dropped = [(s, r, c) for s in self.sources for r, c in s.dropped.items()]
        out.append("\n## Rows dropped, and why\n")
        if dropped:
            out.append("| table | source | reason | rows |")
            out.append("| --- | --- | --- | ---: |")
            out += [f"| {s.table} | {_md(s.label)} | {_md(r)} | {c:,} |" for s, r, c in dropped]
        else:
            out.append("None.")
        blanks = [(s, c, n) for s in self.sources for c, n in s.blank_as_missing.items()]
        if blanks:
            out.append("\n## Empty text read as missing\n")
            out.append("| table | source | raw column | rows |")
            out.append("| --- | --- | --- | ---: |")
            out += [f"| {s.table} | {_md(s.label)} | {_md(c)} | {n:,} |" for s, c, n in blanks]
        merged = [s for s in self.sources if s.merged]
        if merged:
            out.append("\n## Rows combined by an aggregate\n")
            out.append("| table | source | by | rows combined with another |")
            out.append("| --- | --- | --- | ---: |")
            out += [
                f"| {s.table} | {_md(s.label)} | {_md(', '.join(s.merged_by))} | {s.merged:,} |"
                for s in merged
            ]
        out.append("\n## Tables\n")
        out.append("| table | rows | customers | from | to |")
        out.append("| --- | ---: | ---: | --- | --- |")
        for name, t in self.tables.items():
            out.append(
                f"| {name} | {t['rows']:,} | {t['customers']:,} | {t['from'] or ''} | "
                f"{t['to'] or ''} |"
            )
        churned = self.tables.get("customers", {}).get("churned")
        if churned is not None:
            out.append(f"\nCustomers with a churn date: {churned:,}.")
        ended = self.tables.get("customers", {}).get("ended")
        if ended is not None:
            out.append(
                f"\nCustomers whose service ended without churn (ended_at): {ended:,}; they "
                "are not scored from that date on."
            )
        if not self.activity_mapped:
            out.append(f"\n{self._activity_line()}.")
        else:
            out.append(
                f"\nCustomers without any activity: {self.customers_without_activity:,}"
                + (
                    " (for example " + ", ".join(self.example_customers_without_activity) + ")."
                    if self.example_customers_without_activity
                    else "."
                )
            )
        if self.notes:
            out.append("\n## Notes\n")
            out += [f"- {n}" for n in self.notes]
        if self.warnings:
            out.append("\n## Warnings\n")
            out += [f"- {w}" for w in self.warnings]
        return "\n".join(out) + "\n"


def _iso(value: object) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).isoformat()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
