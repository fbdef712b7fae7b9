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
import pyarrow.compute as pc

from features.contract import TABLES, Tables
from features.types import arrow_text

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

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())


@dataclass
class ImportReport:
    mapping: str
    sources: list[SourceReport]
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    customers_without_activity: int = 0
    example_customers_without_activity: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe_tables(self, tables: Tables) -> None:
        """Rows, customers and date range of every table, and customers without activity."""
        distinct = {}
        for name in TABLES:
            df: pd.DataFrame = getattr(tables, name)
            time_col = "signup_at" if name == "customers" else "at"
            distinct[name] = pc.unique(arrow_text(df["customer_id"]))  # one pass per table
            entry: dict[str, object] = {
                "rows": len(df),
                "customers": len(distinct[name]),
                "from": _iso(df[time_col].min()) if len(df) else None,
                "to": _iso(df[time_col].max()) if len(df) else None,
            }
            if name == "customers" and "churned_at" in df:
                entry["churned"] = int(df["churned_at"].notna().sum())
                entry["last_churned_at"] = _iso(df["churned_at"].max())
            self.tables[name] = entry
        ids = tables.customers["customer_id"].astype("str")
        active = pc.is_in(arrow_text(ids), value_set=distinct["activity"])
        without = ids[~np.asarray(active.to_numpy(zero_copy_only=False), dtype=bool)]
        self.customers_without_activity = len(without)
        self.example_customers_without_activity = without.head(MAX_EXAMPLE_IDS).tolist()

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
            lines.append(text)
        for name, t in self.tables.items():
            if t["rows"]:
                lines.append(f"{name:<9} {t['rows']:,} rows, {t['from']} .. {t['to']}")
        lines.append(f"customers without any activity: {self.customers_without_activity:,}")
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
        out.append(
            f"\nCustomers without any activity: {self.customers_without_activity:,}"
            + (
                " (for example " + ", ".join(self.example_customers_without_activity) + ")."
                if self.example_customers_without_activity
                else "."
            )
        )
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
