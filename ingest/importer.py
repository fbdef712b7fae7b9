"""Apply an import mapping: read each source in batches, drop, map, type and aggregate its
rows, check the result against the contract, and write it with its config and report.

Every typed column goes through features/types.py (one implementation of parsing). Problems
are collected over all batches of a source and raised together as one ContractError that
names the mapping file, the table, the source, the column and an example raw row.
"""

from __future__ import annotations

import ctypes
import queue
import re
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.check import PeriodStarts
from features.config import DATA_CONFIG_FILE, RESERVED_CUSTOMER_COLUMNS
from features.contract import (
    EVENT_TIMESTAMPS,
    FEATURE_COLUMNS,
    REQUIRED_TABLES,
    TABLES,
    ContractError,
    Tables,
    check_unique_ids,
    empty_table,
    scheduled_end_warning,
    validate_table,
)
from features.types import (
    ZONE_SUFFIX,
    Problem,
    arrow_text,
    parse_ids,
    parse_numbers,
    parse_timestamps,
    problem_at,
)
from ingest.mapping import (
    DROP,
    ColumnSpec,
    Condition,
    Mapping,
    SourceMapping,
    label_like_attributes,
)
from ingest.report import ImportReport, SourceReport, TableSummary
from ingest.sources import (
    BATCH_ROWS,
    SourceError,
    batch_to_frame,
    declared_format,
    iter_part_batches,
    part_count,
    prefetched,
    several_cores,
)

MAX_PROBLEM_EXAMPLES = 3

# Raw rows handed over instead of reading a source: one frame, or named parts (the sheets of
# a workbook), which are to the import what the files of a glob are.
Handed = pd.DataFrame | dict[str, pd.DataFrame]


@dataclass
class _Problems:
    """Problems of one source over all its batches: rows summed per (column, problem), the
    first example rows kept as raw rows."""

    problems: dict[tuple[str | None, str], Problem] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, found: list[Problem], frame: pd.DataFrame) -> None:
        for p in found:
            key = (p.column, p.problem)
            kept = self.problems.setdefault(key, Problem(p.column, p.problem, 0, [], p.hint))
            kept.rows += p.rows
            for pos in p.examples[: MAX_PROBLEM_EXAMPLES - len(kept.examples)]:
                kept.examples.append(len(self.rows))
                self.rows.append(frame.iloc[int(pos)].to_dict())

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __len__(self) -> int:
        """Rows with a problem so far (a row may count under several problems)."""
        return sum(p.rows for p in self.problems.values())

    def error(self, table: str, where: str) -> ContractError:
        frame = pd.DataFrame(self.rows)
        return ContractError.from_problems(table, list(self.problems.values()), frame, where)


def run_import(
    mapping: Mapping,
    source_dir: str | Path,
    *,
    frames: dict[str, Handed] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> tuple[Tables, ImportReport]:
    """The contract's tables from the mapping's sources, checked, and the import report.

    Each batch of a source is mapped, checked against the contract (features.contract
    validate_table: the same checks and errors as loading a data folder) and checked for
    customers not in the customers table as soon as it is read, so no check needs the whole
    table at once: only the checked output rows are kept, and the customers (imported first)
    are the one table held whole. A source with an aggregate is checked after it is
    aggregated, as its output rows only exist then.

    frames: raw frames by source name, used instead of reading those sources (a command that
    reads a file its own way, such as an Excel workbook, hands the rows over).
    import_with_mapping writes the checked batches to Parquet as they come instead."""
    sink = _MemorySink()
    report = _run(mapping, Path(source_dir), frames, batch_rows, sink)
    return sink.tables(), report


def _run(
    mapping: Mapping,
    source_dir: Path,
    frames: dict[str, Handed] | None,
    batch_rows: int,
    sink: _MemorySink | _ParquetSink,
) -> ImportReport:
    """Import every table into `sink`, customers first (their ids are what the other tables'
    rows are looked up in); the report's figures are gathered from the checked batches."""
    from features.io import use_regular_memory_pages

    use_regular_memory_pages()  # as load_tables: huge pages made the peak 2x the batches' need
    return_freed_memory()
    report = ImportReport(mapping=mapping.path, sources=[])
    summaries: dict[str, TableSummary] = {}
    customers: pd.DataFrame | None = None
    index: _CustomerIndex | None = None
    for table in TABLES:
        sources = mapping.tables.get(table, ())
        if not sources:
            continue
        summary = summaries[table] = TableSummary(table, None if index is None else len(index))
        repeat_filters = _repeat_filters(sources, source_dir, frames)
        held: list[pd.DataFrame] = []  # customers: held whole (checked for repeats, looked up)
        for i, source in enumerate(sources):
            parts: list[pd.DataFrame] = []
            rows_before = summary.rows

            def emit(
                df: pd.DataFrame,
                positions: np.ndarray | None,
                table: str = table,
                i: int = i,
                parts: list[pd.DataFrame] = parts,
                summary: TableSummary = summary,
            ) -> None:
                summary.add(df, positions)
                if table == "customers":
                    parts.append(df)
                else:
                    sink.add(table, i, df, positions)

            source_report = _import_source(
                mapping, source, source_dir, frames, batch_rows, index, emit, repeat_filters[i]
            )
            report.sources.append(source_report)
            source_report.rows_out = summary.rows - rows_before
            if table == "customers":
                held.append(_concat(parts))
        if table == "customers":
            customers = pd.concat(held, ignore_index=True) if len(held) > 1 else held[0]
            del held
            try:  # a key may repeat across batches and sources
                check_unique_ids(customers)
            except ContractError as err:
                raise _in_mapping(mapping, err) from None
            index = _CustomerIndex(customers["customer_id"])
            report.warnings += index.case_or_space_twins()
            report.warnings += level_twin_warnings(customers)
            sink.customers(customers, index)
    assert customers is not None
    if "activity" not in mapping.tables:  # a billing-only export: the table exists, empty
        sink.add("activity", 0, empty_table("activity"))
    report.describe(summaries, customers["customer_id"])
    report.notes += unread_column_notes(mapping)
    # as Tables.scheduled_ends: only where activity, feedback or revenue rows tell the export's end
    if any(s.rows for name, s in summaries.items() if name != "customers"):
        lasts = [s.last for s in summaries.values() if s.last is not None and pd.notna(s.last)]
        scheduled = scheduled_end_warning(customers, max(lasts) if lasts else None)
        report.warnings += [scheduled] if scheduled else []
    report.warnings += [w for source in report.sources for w in source.warnings]
    report.notes += [n for source in report.sources for n in source.notes]
    mixed = mixed_totals_note(mapping)
    report.warnings += [mixed] if mixed else []
    report.warnings += [
        f"customer attribute {a!r} is declared as a model feature, and its name looks like the "
        "label (an export-day status or end date holds the future): check it is known before T"
        for a in label_like_attributes(mapping)
    ]
    return report


def _id_like(name: str) -> bool:
    """An identifier column (order_id, ticket_id, id): kept for `churn check`'s repeated rows."""
    lowered = name.lower()
    return lowered == "id" or lowered.endswith("_id")


def unread_column_notes(mapping: Mapping) -> list[str]:
    """A note per table on the mapped columns no model feature reads, so that a column mapped
    in the belief that the model learns from it is not silently kept for nothing (a shop's
    voucher code on its orders, a ticket's category: both accepted, neither read). Ids and the
    keys a source is aggregated by are left out of it (kept for the repeated-rows check), as
    is a currency (its own warning)."""
    notes = []
    for table in ("activity", "feedback", "revenue"):
        unread: dict[str, list[str]] = {}
        for source in mapping.tables.get(table, ()):
            keys = set(source.aggregate.by) if source.aggregate else set()  # an invoice number
            for spec in source.columns:
                name = spec.name
                if name in FEATURE_COLUMNS[table] or name in keys or _id_like(name):
                    continue
                if name == "currency":
                    continue
                unread.setdefault(name, []).append(source.label)
        if unread:
            shown = ", ".join(
                f"'{name}' (source {', '.join(repr(s) for s in sources)})"
                for name, sources in unread.items()
            )
            notes.append(
                f"{table} column{'s' if len(unread) > 1 else ''} {shown} "
                f"{'are' if len(unread) > 1 else 'is'} kept in the table, but no model feature "
                f"reads {'them' if len(unread) > 1 else 'it'} (the {table} features read "
                f"{', '.join(c for c in FEATURE_COLUMNS[table] if c != 'customer_id')}). To let "
                "the model learn from such a column, map it into the `event` of an [[activity]] "
                "source over the same rows: each value becomes an event type counted over the "
                "feature windows (tickets per category, orders with a voucher)"
            )
    features = mapping.features
    declared = set(features.get("customer_attributes", []) or [])
    declared |= set(features.get("date_attributes", []) or [])
    declared |= {features["seats_attribute"]} if features.get("seats_attribute") else set()
    segments = list(
        dict.fromkeys(
            spec.name
            for source in mapping.tables.get("customers", ())
            for spec in source.columns
            if spec.name not in RESERVED_CUSTOMER_COLUMNS and spec.name not in declared
        )
    )
    if segments:
        names = ", ".join(f"'{n}'" for n in segments)
        notes.append(
            f"customers column{'s' if len(segments) > 1 else ''} {names} "
            f"{'are segments' if len(segments) > 1 else 'is a segment'} of the reports "
            f"(--by), not {'model features' if len(segments) > 1 else 'a model feature'}: "
            "declare in [features] customer_attributes those "
            "known at signup (an export-day status or balance holds the future)"
        )
    return notes


MAX_LEVELS_CHECKED = 1_000  # a text column with more distinct values is no category


def level_twin_warnings(customers: pd.DataFrame) -> list[str]:
    """A warning per text column of the customers whose values differ from another only by
    surrounding spaces or letter case ('Germany' and 'Germany '): each is a segment and a
    model level of its own, each with part of the customers; trim (and lower) on the column
    makes them one. A CRM's country had seven such pairs and nothing said so."""
    found = []
    for column in customers.columns:
        values = customers[column]
        if column == "customer_id" or not (
            values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
        ):
            continue
        distinct = pd.Series(pd.unique(values.dropna())).astype("str")
        if len(distinct) > MAX_LEVELS_CHECKED:  # names, emails, notes: no segment, no level
            continue
        loose = distinct.str.strip().str.lower()
        twins = distinct[loose.duplicated(keep=False)]
        if twins.empty:
            continue
        groups = twins.groupby(loose[twins.index]).agg(list)
        shown = "; ".join(" / ".join(repr(v) for v in g) for g in groups.head(3))
        case = any(len({v.strip() for v in g}) > 1 for g in groups)
        fix = "trim = true, lower = true" if case else "trim = true"
        found.append(
            f"customers column '{column}' has {len(groups):,} "
            f"value{'' if len(groups) == 1 else 's'} written two ways or more "
            f"({shown}): each is a segment and a model level of its own; declare "
            f'{column} = {{ column = "...", {fix} }} in the mapping to make them one'
        )
    return found


REPEATED_ROW = "repeats a row of an earlier file or source (overlapping exports)"


def _handed_parts(handed: Handed) -> int:
    return len(handed) if isinstance(handed, dict) else 1


def _repeat_filters(
    sources: tuple[SourceMapping, ...], source_dir: Path, frames: dict[str, Handed] | None
) -> list[_RepeatFilter | None]:
    """Per source of a table, the filter of rows that repeat an earlier part: one shared by
    the sources that read the same raw columns (one export's layout) when they read more than
    one file or query between them; None where a source has no earlier part to repeat or
    says repeats = "keep"."""
    layouts: dict[tuple[str, ...], list[int]] = {}
    for i, source in enumerate(sources):
        if source.repeats == "drop":
            layouts.setdefault(tuple(sorted(source.raw_columns())), []).append(i)
    filters: list[_RepeatFilter | None] = [None] * len(sources)
    for members in layouts.values():
        parts = sum(
            _handed_parts(frames[sources[i].label])
            if frames is not None and sources[i].label in frames
            else part_count(sources[i].source, source_dir)
            for i in members
        )
        if parts > 1:
            shared = _RepeatFilter()
            for i in members:
                filters[i] = shared
    return filters


def _row_hashes(mapped: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each mapped row's values; values pandas cannot hash (lists, dicts of
    an `as_is` column from JSON lines) by their text."""
    try:
        return pd.util.hash_pandas_object(mapped, index=False).to_numpy()
    except TypeError:
        texts = {c: mapped[c].map(repr) if mapped[c].dtype == object else mapped[c] for c in mapped}
        return pd.util.hash_pandas_object(pd.DataFrame(texts), index=False).to_numpy()


Span = tuple[pd.Timestamp, pd.Timestamp]


def _time_range(mapped: pd.DataFrame) -> Span | None:
    """The first and last time of a mapped batch (its table's time column); None when a row
    has none."""
    column = "signup_at" if "signup_at" in mapped else "at"
    if column not in mapped or not pd.api.types.is_datetime64_any_dtype(mapped[column].dtype):
        return None
    times = mapped[column]
    if times.isna().any():
        return None
    return times.min(), times.max()


def _union(span: Span | None, more: Span) -> Span:
    return more if span is None else (min(span[0], more[0]), max(span[1], more[1]))


class _RepeatFilter:
    """Rows that repeat exactly (every mapped column) a row of an earlier file of the source,
    or of another source of the table with the same layout: overlapping exports, such as a
    "last 90 days" export taken every month, or Online Retail II's two yearly sheets that
    meet in December 2010. Each would count twice in the features, so they are dropped and
    counted. Repeats within one file are kept (two identical line items can both be real) and
    left to `churn check`.

    Rows are compared by a 64-bit hash of their mapped values (8 bytes a row, held only for
    tables fed by more than one file), kept in sorted runs whose sizes halve from the first
    (a finished file's run is merged into the last while that is not larger): a year of daily
    files costs a sort of each row a few times, not once per file."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []  # sorted hashes of the finished parts
        self.current: list[np.ndarray] = []
        self.part: tuple[str, str] | None = None
        self.found: dict[tuple[str, str], int] = {}  # (source, file) -> rows dropped
        # The times the finished parts' rows span, and the current part's: a batch outside
        # the former cannot repeat any of their rows. A batch without times anywhere: every
        # later batch is looked up.
        self.earlier_span: Span | None = None
        self.current_span: Span | None = None
        self.untimed = False

    def dropped_from(
        self, mapped: pd.DataFrame, source: str, part: str, report: SourceReport
    ) -> pd.DataFrame:
        """The batch without the rows an earlier part had; those counted in the report."""
        if (source, part) != self.part:
            self._finish_part()
            self.part = (source, part)
        if not len(mapped):
            return mapped
        hashes = _row_hashes(mapped)
        self.current.append(hashes)
        times = _time_range(mapped)
        if times is None:
            self.untimed = True
        else:
            self.current_span = _union(self.current_span, times)
        apart = (
            times is not None
            and self.earlier_span is not None
            and (times[1] < self.earlier_span[0] or times[0] > self.earlier_span[1])
        )
        if not self.runs or (apart and not self.untimed):
            return mapped  # e.g. the next day's file: no row of it can be an earlier row
        order = np.argsort(hashes)  # looked up in order: each run is read front to back
        ordered = hashes[order]
        hit = np.zeros(len(hashes), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, ordered), len(run) - 1)
            hit |= run[at] == ordered
        if not hit.any():
            return mapped
        repeated = np.empty(len(hashes), dtype=bool)
        repeated[order] = hit
        count = int(hit.sum())
        report.drop(REPEATED_ROW, count)
        self.found[(source, part)] = self.found.get((source, part), 0) + count
        return mapped[~repeated].reset_index(drop=True)

    def _finish_part(self) -> None:
        if not self.current:
            return
        run = np.sort(np.concatenate(self.current), kind="stable")  # radix sort for integers
        self.current = []
        if self.current_span is not None:
            self.earlier_span = _union(self.earlier_span, self.current_span)
        self.current_span = None
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.sort(np.concatenate([self.runs.pop(), run]), kind="stable")
        self.runs.append(run)

    def warnings(self, source: SourceMapping) -> list[str]:
        """One line per file of this source that repeated earlier rows."""
        return [
            f"{source.table} source '{source.label}': {count:,} "
            f"{'row' if count == 1 else 'rows'} of '{part}' "
            f"{'repeats a row' if count == 1 else 'repeat rows'} of an earlier file or source "
            "exactly (overlapping exports?); dropped, so that they count once"
            for (label, part), count in self.found.items()
            if label == source.label
        ]


# Tables whose rows are each one record of a thing that happened once (a ticket, an NPS
# answer, an invoice, a failed charge): a row repeated exactly within one source is counted,
# and warned about, as a copy the export made. Activity rows are left alone: two identical
# events in the same second are often real (clicks, line items).
SELF_REPEAT_TABLES = ("feedback", "revenue")


class _SelfRepeats:
    """Rows of one source that repeat another of its rows in every mapped column, counted by
    their 64-bit hashes (8 bytes a row, for the feedback and revenue tables only) with one
    example row found within a batch. They are kept (RepeatFilter's rule: within one file
    they can be real) but counted twice in the features, so the import says so: a SaaS
    judge's Zendesk export listed tickets twice and only `churn check` noticed."""

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.example: pd.Series | None = None

    def add(self, mapped: pd.DataFrame) -> None:
        if not len(mapped):
            return
        hashes = _row_hashes(mapped)
        self.hashes.append(hashes)
        if self.example is None:
            _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
            if (counts > 1).any():
                self.example = mapped.iloc[int(first[counts > 1][0])]

    def warning(self, source: SourceMapping) -> str | None:
        if not self.hashes:
            return None
        hashes = np.concatenate(self.hashes)
        extra = len(hashes) - len(np.unique(hashes))
        if not extra:
            return None
        example = ""
        if self.example is not None:
            cells = ", ".join(f"{k}={v}" for k, v in self.example.items() if pd.notna(v))
            example = f" (e.g. {cells})"
        share = extra / len(hashes)
        rows = "1 row repeats" if extra == 1 else f"{extra:,} rows repeat"
        counted = "ticket and answer counts" if source.table == "feedback" else "payments, revenue"
        return (
            f"{source.table} source '{source.label}': {rows} ({share:.1%}) another row of the "
            f"same source in every column{example}; kept, so each copy counts in the features "
            f"({counted}): if the export wrote them twice, remove the copies before importing; "
            "if they are distinct records, map the column that tells them apart (a ticket or "
            "invoice id)"
        )


ZERO_FRACTION = re.compile(r"\.0+$")  # 13085.0: a float column saved as text


class _CustomerIndex:
    """The customers' ids, for looking up the customer of each row of the other tables: one
    Arrow hash lookup per batch gives each row's position among the customers (-1: not a
    customer), which both finds unknown customers and tells the report which customers a
    table refers to, without a second pass over the ids."""

    def __init__(self, ids: pd.Series):
        values = arrow_text(ids)
        self.ids = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values

    def __len__(self) -> int:
        return len(self.ids)

    def near_misses(self, unknown: pd.Series, limit: int = 10_000) -> str:
        """Words for unknown ids that match a customer's id once surrounding spaces, letter
        case, leading zeros or a zero fraction (13085.0) are ignored (two exports writing one
        id two ways), with an example and the declarations that fix it; empty when none does.
        Run only on the error path."""

        def loose(text: str) -> str:
            return ZERO_FRACTION.sub("", text.strip().lower()).lstrip("0")

        known: dict[str, str] = {}
        for value in self.ids.to_pylist():
            if value is not None:
                known.setdefault(loose(value), value)
        distinct = pd.unique(unknown.dropna().astype("str"))[:limit]
        matched = [(v, known[loose(v)]) for v in distinct if loose(v) in known]
        if not matched:
            return ""
        ours, theirs = matched[0]
        spaces = any(a.strip() == b.strip() for a, b in matched)
        case = any(
            a.strip().lower() == b.strip().lower() and a.strip() != b.strip() for a, b in matched
        )
        whole = any(
            ZERO_FRACTION.search(a.strip()) or ZERO_FRACTION.search(b.strip()) for a, b in matched
        )
        declared = [
            *(["trim = true drops surrounding spaces"] if spaces else []),
            *(["lower = true ignores letter case (emails)"] if case else []),
            *(["whole = true reads 13085.0 as 13085 (where it is written so)"] if whole else []),
        ]
        fix = (
            f"; on the customer_id column (here and in the customers) {' and '.join(declared)}"
            if declared
            else ""
        )
        padded = [b for a, b in matched if a.strip().lstrip("0") == a.strip() != b.strip()]
        widths = {len(b.strip()) for b in padded if b.strip().isdigit()}
        if padded and len(widths) == 1:
            width = widths.pop()
            fix += f"; zero_pad = {width} on this source's customer_id restores the leading zeros"
        return (
            f"{len(matched):,} of the {len(distinct):,} unknown ids match a customer's id once "
            f"spaces, letter case, leading zeros or a .0 are ignored (e.g. {ours!r} here, {theirs!r} "
            f"in the customers): the exports write ids differently{fix}"
        )

    def case_or_space_twins(self) -> list[str]:
        """A warning when customer ids differ from another only by letter case or surrounding
        spaces ('Ann@x.com' and 'ann@x.com'): counted as different customers, each with part
        of the history. Ids whose case matters (Stripe's cus_...) rarely collide that way."""
        loose = pc.utf8_lower(pc.utf8_trim_whitespace(self.ids))
        if not pc.any(pc.not_equal(loose, self.ids)).as_py():
            return []  # no id changes when case and spaces are ignored: no two can meet
        frame = pd.DataFrame({"loose": loose.to_pandas(), "id": self.ids.to_pandas()})
        twins = frame[frame["loose"].duplicated(keep=False) & frame["loose"].notna()]
        if twins.empty:
            return []
        first = twins[twins["loose"] == twins["loose"].iloc[0]]["id"].tolist()
        return [
            f"{len(twins):,} customer ids differ from another only by letter case or surrounding "
            f"spaces (e.g. {first[0]!r} and {first[1]!r}): they are counted as different "
            "customers, each with part of the history. If they are one customer (emails), "
            "declare lower = true (and trim = true) on customer_id in every table"
        ]

    def positions(self, ids: pd.Series) -> np.ndarray:
        """Per row: the position of its id among the customers' ids, -1 when not one."""
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        found = pc.index_in(arrow_text(ids), value_set=self.ids).fill_null(-1)
        return np.asarray(found.to_numpy(), dtype=np.int64)


class _MemorySink:
    """Checked batches kept in memory and joined into Tables (run_import)."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, list[pd.DataFrame]]] = {}

    def customers(self, df: pd.DataFrame, index: _CustomerIndex) -> None:
        self.add("customers", 0, df)

    def add(
        self, table: str, source: int, df: pd.DataFrame, positions: np.ndarray | None = None
    ) -> None:
        self._parts.setdefault(table, {}).setdefault(source, []).append(df)

    def tables_held(self) -> list[str]:
        return list(self._parts)

    def joined(self, table: str) -> pd.DataFrame:
        """The table's batches in one frame: each source's joined column by column, then the
        sources one after the other (columns one source lacks are missing in its rows)."""
        by_source = self._parts.pop(table)
        joined = [_concat(parts) for parts in by_source.values()]
        by_source.clear()
        return pd.concat(joined, ignore_index=True) if len(joined) > 1 else joined[0]

    def tables(self) -> Tables:
        out = {table: self.joined(table) for table in self.tables_held()}
        return Tables(
            customers=out["customers"],
            activity=out.get("activity", empty_table("activity")),
            feedback=out.get("feedback", empty_table("feedback")),
            revenue=out.get("revenue", empty_table("revenue")),
        )


class _ParquetSink:
    """Checked batches written to one Parquet file per table as they come (a ParquetWriter
    each), so the output is never held in memory. The schema is the first batch's; a later
    batch whose columns cannot take it is an error naming the table and the column.

    A table whose sources give different columns (feedback from a survey and from tickets)
    is held in memory and joined as run_import joins it, then written whole."""

    def __init__(self, folder: Path, mapping: Mapping):
        self.folder = folder
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}
        self._held = _MemorySink()
        self._background = _Background()
        self._index: _CustomerIndex | None = None
        self._streamed = {
            table
            for table, sources in mapping.tables.items()
            if len({tuple(c.name for c in s.columns) for s in sources}) == 1
        }

    def customers(self, df: pd.DataFrame, index: _CustomerIndex) -> None:
        """The customers, whole; their ids encode the other tables' customer ids."""
        self._index = index
        self._write("customers", df)

    def add(
        self, table: str, source: int, df: pd.DataFrame, positions: np.ndarray | None = None
    ) -> None:
        """One checked batch of a table; positions: each row's customer among the customers
        (customer_id is then written dictionary-encoded from them, without hashing the ids
        again: the Parquet writer's own hashing of the ids was half its time)."""
        if table not in self._streamed:
            self._held.add(table, source, df)
            return
        self._write(table, df, positions)

    def _write(self, table: str, df: pd.DataFrame, positions: np.ndarray | None = None) -> None:
        writer = self._writers.get(table)
        if writer is None:
            arrow = self._encoded(pa.Table.from_pandas(df, preserve_index=False), positions)
            writer = pq.ParquetWriter(
                self.folder / f"{table}.parquet",
                arrow.schema,
                use_dictionary=_dictionary_columns(arrow.schema),
            )
            self._writers[table] = writer
            self.rows[table] = 0
        else:
            arrow = self._conform(table, df, writer.schema, positions)
        if arrow.num_rows:
            self._background.submit(writer.write_table, arrow)
            self.rows[table] += arrow.num_rows

    def _encoded(self, arrow: pa.Table, positions: np.ndarray | None) -> pa.Table:
        """customer_id as a dictionary array: the batch's distinct customers (in the order
        they first appear, as the Parquet writer's own encoding orders them) and each row's
        index among them, from the id lookup's positions.
        Read back (features.io.read_table) it is a categorical of the same values."""
        if positions is None or self._index is None or not len(positions):
            return arrow
        distinct = pd.unique(positions)  # in order of first appearance, as Arrow's own
        remap = np.empty(len(self._index), dtype=np.int32)
        remap[distinct] = np.arange(len(distinct), dtype=np.int32)
        ids = pa.DictionaryArray.from_arrays(
            pa.array(remap[positions]), self._index.ids.take(pa.array(distinct))
        )
        return arrow.set_column(arrow.schema.get_field_index("customer_id"), "customer_id", ids)

    def _conform(
        self, table: str, df: pd.DataFrame, schema: pa.Schema, positions: np.ndarray | None
    ) -> pa.Table:
        if list(df.columns) != schema.names:
            raise ContractError(
                table,
                None,
                f"sources of one table give different columns: {schema.names} and "
                f"{list(df.columns)}",
            )
        try:
            arrow = self._encoded(pa.Table.from_pandas(df, preserve_index=False), positions)
            if arrow.schema.equals(schema, check_metadata=False):
                return arrow
            return arrow.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            column = next(
                (f.name for f in schema if not _fits(df[f.name], f.type)), schema.names[0]
            )
            raise ContractError(
                table,
                column,
                f"column '{column}' holds {df[column].dtype} values in a later batch, where "
                f"the first held {schema.field(column).type} ({str(err).splitlines()[0][:120]})",
                _first_row(df),
            ) from None

    def close(self, complete: bool = True) -> None:
        """Write the held tables, close every file; a table other than customers and activity
        without rows gets no file (as features.io.write_tables does). complete=False: the
        import failed, only close the files."""
        try:
            for table in self._held.tables_held() if complete else ():
                self._write(table, self._held.joined(table))
        finally:
            self._background.finish(raise_error=complete)
            for writer in self._writers.values():
                writer.close()
        for table in self._writers:
            if table not in REQUIRED_TABLES and not self.rows[table]:
                (self.folder / f"{table}.parquet").unlink()
        self._writers.clear()


class _Background:
    """Calls run one after another on one thread, at most `depth` waiting: Parquet encoding
    (Arrow C++, without the GIL) of one batch overlaps the reading and checking of the next,
    and memory holds at most `depth` batches more. An error in a call is raised by the next
    submit or by finish. With one core (`threaded` False) each call runs at once instead."""

    def __init__(self, depth: int = 1, threaded: bool | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="parquet-writer", daemon=True)
        if several_cores() if threaded is None else threaded:
            self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    item[0](*item[1])
                except BaseException as err:  # handed to the importing thread
                    self._error = err

    def submit(self, call: Callable[..., object], *args: object) -> None:
        self._raise()
        if self._thread.is_alive():
            self._queue.put((call, args))
        else:
            call(*args)

    def finish(self, raise_error: bool = True) -> None:
        """Wait for every call to end; raise the first error (unless the import failed)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _dictionary_columns(schema: pa.Schema) -> list[str] | bool:
    """The columns worth Parquet's dictionary encoding: text (ids, events, kinds repeat). Times
    and amounts are mostly distinct, so hashing them only costs (3 M events: the writer's CPU
    0.59 s with every column, 0.42 s with text only, and a file 12 % smaller)."""
    text = [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_dictionary(f.type)
    ]
    return text or False


def _fits(values: pd.Series, kind: pa.DataType) -> bool:
    try:
        pa.Array.from_pandas(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def _first_row(df: pd.DataFrame) -> dict[str, Any] | None:
    return df.iloc[0].to_dict() if len(df) else None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Make glibc's malloc give every block of 1 MiB or more its own mapping, returned to the
    system when freed; True when it is so. Linux with glibc only; elsewhere nothing changes.

    Why: glibc raises its mapping threshold each time a large block is freed, so the arrays
    of later batches (a few MiB each) come from the heap instead, where the output kept
    between them stops the freed ones from going back: the import's peak memory grew by about
    55 MiB per million rows beyond its output. With the threshold fixed it grows by the
    output (benchmarks/bench_import.py)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts' rows in one frame, column by column, each column taken out of the parts as
    soon as it is joined: the peak is the output plus one column, not the output twice."""
    if len(parts) == 1:
        return parts[0]
    names = list(parts[0].columns)
    columns = {}
    for name in names:
        columns[name] = pd.concat([p[name] for p in parts], ignore_index=True)
        for p in parts:
            del p[name]
    return pd.DataFrame(columns)


def _in_mapping(mapping: Mapping, err: ContractError) -> ContractError:
    """The error with the mapping file named in front."""
    return ContractError(
        err.table,
        err.column,
        err.problem,
        err.example,
        problems=err.problems,
        text=f"mapping {mapping.path}: {err}",
    )


def _constant_hint(source: SourceMapping, missing: str) -> str:
    """For an output column named by a plain string that no source column has: how to give
    every row that value instead (`event = "purchase"` read 'purchase' as a column name)."""
    for spec in source.columns:
        if spec.column == missing and not spec.cases and spec.name in ("event", "kind", "status"):
            return (
                f"; if every row's {spec.name} is '{missing}', give the value, not a column: "
                f'{spec.name} = {{ value = "{missing}" }}'
            )
    return ""


def _headerless_hint(source: SourceMapping) -> str:
    """For a CSV file read with its first line as the column names: how to declare them where
    the file has no header line (MovieLens's u.data read "it has: ['196', '242', '3', ...]")."""
    spec = source.source
    if spec.header is not None or declared_format(spec) != "csv":
        return ""
    return (
        "; if the file has no header line (those are the first row's values), name its "
        'columns: source = { path = ..., header = ["customer_id", "date", ...] }'
    )


def _where(mapping: Mapping, source: SourceMapping) -> str:
    return f"mapping {mapping.path}, source '{source.label}'"


def _batches(
    source: SourceMapping,
    source_dir: Path,
    frames: dict[str, Handed] | None,
    batch_rows: int,
) -> Generator[tuple[str, pd.DataFrame], None, None]:
    """The source's raw rows, batch by batch, each with the part (file) it came from."""
    if frames is not None and source.label in frames:
        handed = frames[source.label]
        parts = handed if isinstance(handed, dict) else {source.label: handed}
        for part, frame in parts.items():
            for start in range(0, max(len(frame), 1), batch_rows):
                yield part, frame.iloc[start : start + batch_rows].reset_index(drop=True)
        return
    batches = iter_part_batches(source.source, source_dir, batch_rows)
    try:
        yield from prefetched((part, batch_to_frame(batch)) for part, batch in batches)
    except SourceError as err:  # named with its table, as the contract's errors are
        raise SourceError(f"table '{source.table}' ({source.source.describe()}): {err}") from None


def _period_starts(source: SourceMapping) -> PeriodStarts | None:
    """A counter of the source's activity times stamped at a period's start (period totals
    that features would count early), for activity sources that do not declare `covers`."""
    if source.table != "activity":
        return None
    at = next((c for c in source.columns if c.name == "at"), None)
    return PeriodStarts() if at is not None and at.covers is None else None


ZONED_DATES_MIN = 20  # values of a column before its zoned dates are warned about
ZONED_DATES_SHARE = 0.99  # of them at local midnight: dates without a time


class ZonedDates:
    """Counts, batch by batch, a source's timestamp columns with a declared time zone whose
    values are all local midnights (dates without a time) that fall on the previous day in
    UTC: a zone east of UTC turns "2024-07-01" into 2024-06-30 22:00. The contract stores UTC,
    so retention counts such a signup in the June cohort, an invoice's period in June's MRR, and
    features on 1 July count that day's events (a date says the day, not the hour)."""

    def __init__(self, source: SourceMapping):
        self.zones = {
            c.name: c.timestamp.timezone
            for c in source.columns
            if c.type == "timestamp"
            and c.timestamp is not None
            and c.timestamp.timezone
            and c.covers is None
        }
        self.counts = {name: [0, 0, 0] for name in self.zones}  # values, midnights, day before
        self.example: dict[str, pd.Timestamp] = {}

    def add(self, mapped: pd.DataFrame) -> None:
        for name, zone in self.zones.items():
            if name not in mapped:
                continue
            utc = mapped[name].dropna()
            if utc.empty:
                continue
            local = _local_time(utc, zone)
            midnight = local == local.dt.normalize()
            before = midnight & (utc.dt.normalize() < local)
            counts = self.counts[name]
            counts[0] += len(utc)
            counts[1] += int(midnight.sum())
            counts[2] += int(before.sum())
            if before.any() and name not in self.example:
                self.example[name] = local[before].iloc[0]

    def warnings(self, label: str) -> list[str]:
        out = []
        for name, (n, midnights, before) in self.counts.items():
            if n < ZONED_DATES_MIN or midnights < ZONED_DATES_SHARE * n or before < midnights / 2:
                continue
            day = self.example[name]
            stored = day.tz_localize(self.zones[name]).tz_convert("UTC").tz_localize(None)
            out.append(
                f"source '{label}', column '{name}': its values are dates without a time, and "
                f"timezone '{self.zones[name]}' is declared, so each is stored as its local "
                f"midnight in UTC ({day.date()} as {stored}), on the day before: retention "
                "counts a signup on the 1st in the previous month's cohort and an invoice's "
                "period in the previous month's MRR, and features on a date count that date's "
                "rows. Leave timezone off columns of dates"
            )
        return out


NAIVE_TIMES_SHARE = 0.01  # of a column's values with a time of day: no column of dates


class NaiveTimes:
    """A source's timestamp columns read as UTC because their values carry no time zone and
    none is declared (no `timezone`, no epoch `unit`), where the values have times of day: a
    survey tool's or a CRM's local times read as UTC are 1-2 hours off in Berlin, and a day's
    first hours fall on the day before. A note, not a warning: many exports write UTC without
    a zone. A judge's NPS answers in Berlin time were imported with no word of it."""

    def __init__(self, source: SourceMapping):
        self.columns = {
            c.name: c.column
            for c in source.columns
            if c.type == "timestamp"
            and c.column is not None
            and c.covers is None
            and (c.timestamp is None or (c.timestamp.timezone is None and c.timestamp.unit is None))
            and not (c.timestamp and c.timestamp.format and "%z" in c.timestamp.format.lower())
        }
        self.counts = {name: [0, 0] for name in self.columns}  # values, with a time of day
        self.example: dict[str, object] = {}

    def add(self, raw: pd.DataFrame, mapped: pd.DataFrame) -> None:
        for name, column in self.columns.items():
            if name not in mapped or column not in raw or not _without_zone(raw[column]):
                continue
            stamps = mapped[name].dropna()
            timed = stamps != stamps.dt.normalize()
            self.counts[name][0] += len(stamps)
            self.counts[name][1] += int(timed.sum())
            if timed.any() and name not in self.example:
                self.example[name] = raw[column][timed[timed].index[0]]

    def notes(self, label: str) -> list[str]:
        out = []
        for name, (n, timed) in self.counts.items():
            if n == 0 or timed < NAIVE_TIMES_SHARE * n:
                continue
            column = self.columns[name]
            out.append(
                f"source '{label}', column '{column}' ({name}): its times carry no time zone "
                f'("{self.example[name]}") and none is declared, so they are read as UTC. If '
                "they are local times (a survey tool's, a CRM's, a shop system's often are), "
                f'declare the zone: {name} = {{ column = "{column}", timezone = '
                '"Europe/Berlin" }: read as UTC, a Berlin time is 1-2 hours off and a day\'s '
                "first hours fall on the day before"
            )
        return out


def _without_zone(values: pd.Series) -> bool:
    """Whether a raw timestamp column's values carry no zone: naive datetimes, or text whose
    first value has no offset or Z (a column mixing both is refused when it is read)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return getattr(values.dt, "tz", None) is None
    if pd.api.types.is_numeric_dtype(values.dtype):
        return False  # epoch numbers: refused without a unit, UTC with one
    first = values.first_valid_index()
    if first is None:
        return False
    value = values[first]
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).tz is None
    return ZONE_SUFFIX.search(str(value)) is None


def _import_source(
    mapping: Mapping,
    source: SourceMapping,
    source_dir: Path,
    frames: dict[str, Handed] | None,
    batch_rows: int,
    index: _CustomerIndex | None,
    emit: Callable[[pd.DataFrame, np.ndarray | None], None],
    repeats: _RepeatFilter | None = None,
) -> SourceReport:
    """One source's rows, checked, handed to `emit` batch by batch with each row's position
    among the customers (None for the customers themselves), and its report. Problems of every
    batch are collected and raised together (no batch is emitted after the first problem);
    `index`: the customer ids rows may refer to. A source with an aggregate or a sort is
    emitted once, whole, as its output rows only exist then."""
    location = "rows handed over" if frames and source.label in frames else None
    report = SourceReport(source.table, source.label, location or source.source.describe())
    problems = _Problems()
    parts: list[pd.DataFrame] = []
    needed = source.raw_columns()
    seen_columns: list[str] | None = None
    checked_per_batch = source.aggregate is None
    whole = not checked_per_batch or bool(source.sort)
    emitted = False
    held_positions: list[np.ndarray] = []  # a sorted source's rows' customers, batch by batch
    starts = _period_starts(source)
    zoned = ZonedDates(source)
    naive = NaiveTimes(source)
    self_repeats = (
        _SelfRepeats() if source.table in SELF_REPEAT_TABLES and checked_per_batch else None
    )
    with closing(_batches(source, source_dir, frames, batch_rows)) as batches:
        for part, frame in batches:
            if seen_columns is None:
                seen_columns = list(frame.columns)
                missing = [c for c in needed if c not in frame.columns]
                if missing:
                    raise ContractError(
                        source.table,
                        missing[0],
                        "column is not in the source",
                        text=(
                            f"{_where(mapping, source)}, table '{source.table}': column "
                            f"'{missing[0]}' is not in the source (it has: {seen_columns})"
                            f"{_constant_hint(source, missing[0])}"
                            f"{'' if location else _headerless_hint(source)}"
                        ),
                    )
            report.rows_read += len(frame)
            before = len(problems)
            mapped, kept = _map_batch(source, frame, report, problems)
            if naive.columns and len(problems) == before:
                naive.add(kept, mapped)
            del frame
            if starts is not None and len(problems) == before:
                starts.add(mapped["at"])
            if zoned.zones and len(problems) == before:
                zoned.add(mapped)
            if repeats is not None and len(problems) == before:
                mapped = repeats.dropped_from(mapped, source.label, part, report)
            if len(problems) > before or (problems and not checked_per_batch):
                if checked_per_batch:
                    _ids_of_an_unmapped_batch(source, mapped, kept, index, problems)
                continue  # the rows could not be mapped: nothing else to check
            if checked_per_batch:
                mapped, positions = _checked(mapping, source, mapped, index, report, problems)
                if problems:
                    continue
                if self_repeats is not None:
                    self_repeats.add(mapped)
                if not whole:
                    emit(mapped, positions)
                    emitted = True
                    continue
                if positions is not None:
                    held_positions.append(positions)
            parts.append(mapped)
    if problems:
        raise problems.error(source.table, _where(mapping, source))
    report.warnings += currency_warnings([report])
    text = starts.describe('declare covers = "{period}" on this source\'s at') if starts else None
    report.warnings += [text] if text else []
    report.warnings += zoned.warnings(source.label)
    report.notes += naive.notes(source.label)
    if repeats is not None:
        report.warnings += repeats.warnings(source)
    text = self_repeats.warning(source) if self_repeats is not None else None
    report.warnings += [text] if text else []
    if seen_columns is None or not (parts or emitted):  # no rows at all: the typed columns
        empty = pd.DataFrame({c: pd.Series([], dtype="str") for c in needed})
        parts = [_map_batch(source, empty, report, problems)[0]]
        checked_per_batch = False
    if not parts:
        report.warnings += unknown_customer_warnings(report, index)
        return report
    df = _concat(parts)
    del parts
    if source.aggregate is not None:
        report.warnings += varying_attribute_warnings(df, source, mapping.customer_attributes())
        df = _aggregate(df, source, report)
    positions = np.concatenate(held_positions) if held_positions else None
    if not checked_per_batch:
        df, positions = _checked(mapping, source, df, index, report, problems)
        if problems:
            raise problems.error(source.table, _where(mapping, source))
    if source.sort:
        df = df.sort_values(list(source.sort), kind="stable")
        if positions is not None:
            positions = positions[df.index.to_numpy()]
        df = df.reset_index(drop=True)
    report.warnings += unknown_customer_warnings(report, index)
    emit(df, positions)
    return report


def _unknown_customers(
    df: pd.DataFrame,
    unknown: np.ndarray,
    index: _CustomerIndex,
    problems: _Problems,
    examples: pd.DataFrame | None = None,
) -> None:
    """The problem of rows whose customer_id is not in the customers table, with the ids'
    near misses (leading zeros, case, spaces) as the hint; example rows from `examples`
    (rows aligned with df), else df."""
    near = index.near_misses(df["customer_id"][unknown])
    hint = 'drop them with unknown_customers = "drop" on this source, or map those customers'
    problems.add(
        [
            problem_at(
                "customer_id",
                "rows refer to customers not in 'customers'",
                unknown,
                f"{near}; or {hint}" if near else hint,
            )
        ],
        df if examples is None else examples,
    )


def _ids_of_an_unmapped_batch(
    source: SourceMapping,
    df: pd.DataFrame,
    raw: pd.DataFrame,
    index: _CustomerIndex | None,
    problems: _Problems,
) -> None:
    """A batch with mapping problems is not checked, but its ids that were read are looked
    up, so that one error names every problem of the table: a gym's import said first "local
    times that do not exist", and only once that was fixed that the ids had lost their
    leading zeros. The example rows are the raw rows (`raw`, the batch's rows that were
    mapped), as for the batch's other problems."""
    if index is None or source.unknown_customers == "drop" or "customer_id" not in df:
        return
    ids = df["customer_id"]  # missing where the id itself could not be read
    unknown = ids.notna().to_numpy() & (index.positions(ids) < 0)
    if unknown.any():
        _unknown_customers(df, unknown, index, problems, examples=raw)


def _checked(
    mapping: Mapping,
    source: SourceMapping,
    df: pd.DataFrame,
    index: _CustomerIndex | None,
    report: SourceReport,
    problems: _Problems,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Output rows checked against the contract, with each row's position among the customers
    (None without an index): rows of customers not in the index dropped (counted) or recorded
    as a problem, then features.contract.validate_table. Problems that carry row counts go to
    `problems`; any other contract error is raised at once."""
    positions = None
    if index is not None:
        positions = index.positions(df["customer_id"])
        unknown = positions < 0
        if unknown.any():
            if source.unknown_customers == "drop":
                report.drop(UNKNOWN_DROPPED, int(unknown.sum()))
                _remember_unknown(report, df["customer_id"][unknown])
                df = df[~unknown].reset_index(drop=True)
                positions = positions[~unknown]
            else:
                _unknown_customers(df, unknown, index, problems)
                return df, positions
    try:
        return validate_table(source.table, df), positions
    except ContractError as err:
        if not err.problems:
            raise _in_mapping(mapping, err) from None
        problems.add([_with_drop_hint(p, source) for p in err.problems], df)
        return df, positions


MISSING_VALUE = "rows have no value"
UNKNOWN_DROPPED = "customer not in the customers table"
UNKNOWN_SAMPLE = 10_000  # distinct dropped ids kept for the warning (near_misses' limit)
# Dropping this share of a source's rows as unknown customers, or any that match a customer's
# id written another way, is warned about: a product log whose ids had lost their leading
# zeros was dropped whole (65,085 of 65,085 rows), and the import succeeded without a word.
UNKNOWN_WARN_SHARE = 0.5


def _remember_unknown(report: SourceReport, ids: pd.Series) -> None:
    room = UNKNOWN_SAMPLE - len(report.unknown_ids)
    if room > 0:
        new = pd.unique(ids.dropna().astype("str"))
        known = set(report.unknown_ids)
        report.unknown_ids += [v for v in new if v not in known][:room]


def unknown_customer_warnings(report: SourceReport, index: _CustomerIndex | None) -> list[str]:
    """A warning when a source dropped as unknown customers UNKNOWN_WARN_SHARE of its rows or
    more, or rows whose ids match a customer's once written alike (near_misses: leading zeros,
    case, spaces), with the fix; [] otherwise. Empties the report's sample of those ids."""
    dropped = report.dropped.get(UNKNOWN_DROPPED, 0)
    ids, report.unknown_ids = report.unknown_ids, []  # looked at here, not written out
    if not dropped or index is None:
        return []
    near = index.near_misses(pd.Series(ids, dtype="str"))
    share = dropped / report.rows_read if report.rows_read else 1.0
    if not near and share < UNKNOWN_WARN_SHARE:
        return []
    examples = ", ".join(repr(v) for v in ids[:3])
    text = (
        f"source '{report.label}': {dropped:,} of its {report.rows_read:,} rows "
        f"({share:.0%}) refer to customers not in the customers table and were dropped "
        f'(unknown_customers = "drop"), e.g. ids {examples}'
    )
    return [f"{text}. {near}" if near else f"{text}: check that both tables use the same ids"]


def _with_drop_hint(problem: Problem, source: SourceMapping) -> Problem:
    """A required column's missing values with the mapping's way out: a drop rule on the raw
    column, which counts the rows in the import report (OULAD judge: registrations without a
    date failed the import and the fix had to be found in the README)."""
    if problem.problem != MISSING_VALUE or problem.hint is not None:
        return problem
    spec = next((c for c in source.columns if c.name == problem.column), None)
    raw = spec.column if spec is not None and spec.column else None
    if spec is not None and spec.cases and spec.default is None:
        # the gym judge's cases on a booking's "attended": the rows no case held for had no
        # value, and the error (naming the mapped row) said nothing of where they came from
        read = ", ".join(dict.fromkeys(f"'{c.column}'" for c, _ in spec.cases))
        hint = (
            f"no case holds for these rows (the cases read {read}) and there is no default: "
            "add a case for them or a default = ..., or drop them, counted in the import "
            f"report, with a drop = [...] rule on {read} under this source"
        )
        return replace(problem, hint=hint)
    if raw is None:
        return problem
    rule = f'{{ column = "{raw}", missing = true, reason = "no {problem.column} in the export" }}'
    hint = (
        f"the contract needs a {problem.column} on every row: give the rows one, or drop them, "
        f"counted in the import report, with drop = [{rule}] under this source"
    )
    if source.table == "revenue" and problem.column == "amount":
        # RevenueCat's BILLING_ISSUE carries no price: dropped, the failures are lost
        hint += (
            "; failed payments without an amount need not be dropped: no feature reads a "
            "failed payment's amount, only its date, so a [[revenue]] block of them can give "
            "amount = { value = 0 }"
        )
    return replace(problem, hint=hint)


def _map_batch(
    source: SourceMapping, frame: pd.DataFrame, report: SourceReport, problems: _Problems
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One batch of raw rows as output columns (drop rules, value maps, then typed columns),
    and the raw rows kept, row for row."""
    keep = np.ones(len(frame), dtype=bool)
    for rule in source.drop:
        hit = keep & _holds(rule.condition, frame, problems)
        report.drop(rule.reason, int(hit.sum()))
        keep &= ~hit
    mapped: dict[str, pd.Series] = {}
    for spec in source.columns:
        if spec.map is not None:
            mapped[spec.name] = _apply_map(spec, frame, keep, report, problems)
    if source.table == "revenue":
        _count_currencies(source, frame, keep, report)
    if not keep.all():
        frame = frame[keep].reset_index(drop=True)
        mapped = {k: v[keep].reset_index(drop=True) for k, v in mapped.items()}
    # cases, like a value map, may send a row to "drop" (a case's value or the default): it
    # had become an event type named "drop" (27,258 on-time deliveries of a delivery app)
    cased = {
        spec.name: _cases_values(spec, frame, problems) for spec in source.columns if spec.cases
    }
    gone = np.zeros(len(frame), dtype=bool)
    for name, values in cased.items():
        hit = (values == DROP).to_numpy(dtype=bool, na_value=False) & ~gone
        if hit.any():
            report.drop(f"{name}: its cases map the row to drop", int(hit.sum()))
            gone |= hit
    if gone.any():
        frame = frame[~gone].reset_index(drop=True)
        mapped = {k: v[~gone].reset_index(drop=True) for k, v in mapped.items()}
        cased = {k: v[~gone].reset_index(drop=True) for k, v in cased.items()}
    mapped.update(cased)
    columns = {
        spec.name: _column(
            spec,
            frame,
            mapped.get(spec.name),
            problems,
            future=(source.table, spec.name) not in EVENT_TIMESTAMPS,
        )
        for spec in source.columns
    }
    for spec in source.columns:
        if spec.type in ("text", "as_is") and spec.column is not None:
            columns[spec.name] = _blank_as_missing(columns[spec.name], spec.column, report)
    return pd.DataFrame(columns, index=frame.index), frame


def _blank_as_missing(values: pd.Series, raw_column: str, report: SourceReport) -> pd.Series:
    """Text that is empty or only spaces is missing, as an empty cell is: a quoted "" in a CSV
    (Ta Feng's AGE_GROUP, 626 customers) or an empty string in Parquet or JSON had become a
    level of its own, a segment titled "age_group: " in the report. Counted per raw column."""
    if values.dtype != object and pd.api.types.is_string_dtype(values.dtype):
        blank = values.str.strip().eq("").to_numpy(dtype=bool, na_value=False)
    elif values.dtype == object:  # mixed values: only text can be blank
        blank = values.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    else:
        return values
    if not blank.any():
        return values
    key = str(raw_column)
    report.blank_as_missing[key] = report.blank_as_missing.get(key, 0) + int(blank.sum())
    return values.where(~blank, None)


CURRENCY_COLUMN = re.compile(
    r"(?i)^(?:.*[_ .-])?(?:currency|ccy|curr|w(?:ae|ä)hrung|devise|moneda|valuta)(?:[_ .-].*)?$"
)


def _count_currencies(
    source: SourceMapping, frame: pd.DataFrame, keep: np.ndarray, report: SourceReport
) -> None:
    """Values of the raw currency columns the mapping does not act on, over the kept rows. A
    column only copied into the table under a name of its own (currency = "currency") acts on
    nothing: euros and dollars were summed as "$" without a word. Read as purchase_currency
    (amounts converted by the tool already), or used by a drop rule, a case or a condition,
    it is the mapping's to say."""
    used = {r.condition.column for r in source.drop}
    for spec in source.columns:
        used |= set(spec.raw_columns()) - {spec.column}  # cases, conditions, times
        if spec.column and spec.name.startswith("purchase"):
            used.add(spec.column)
    for column in frame.columns:
        if column in used or not CURRENCY_COLUMN.match(str(column)):
            continue
        counts = _text(frame[column])[keep].value_counts()
        seen = report.currencies.setdefault(str(column), {})
        for value, n in counts.items():
            seen[str(value)] = seen.get(str(value), 0) + int(n)


# A currency as exports write it: an ISO 4217 code (USD, eur) or a symbol.
CURRENCY_VALUE = re.compile(r"^\s*(?:[A-Za-z]{3}|[€$£¥₹₩₽]|R\$)\s*$")
# A column named like a currency whose values are mostly something else (RevenueCat's
# price_in_purchased_currency holds prices) is no currency column.
CURRENCY_VALUE_SHARE = 0.9


def currency_warnings(sources: list[SourceReport]) -> list[str]:
    """A warning per revenue source whose kept rows carry more than one currency in a column
    the mapping leaves alone: their amounts would be added up as if one currency."""
    found = []
    for source in sources:
        for column, counts in source.currencies.items():
            if sum(n for v, n in counts.items() if CURRENCY_VALUE.match(v)) < (
                CURRENCY_VALUE_SHARE * sum(counts.values())
            ):
                continue
            spellings: dict[str, dict[str, int]] = {}  # 'eur' and 'EUR' are one currency
            for v, n in counts.items():
                if CURRENCY_VALUE.match(v):
                    spellings.setdefault(v.strip().upper(), {})[v] = n
            if len(spellings) < 2:
                continue
            ranked = sorted(spellings.values(), key=lambda w: -sum(w.values()))
            listed = ", ".join(f"{' / '.join(w)} ({sum(w.values()):,} rows)" for w in ranked[:5])
            main = '", "'.join(ranked[0])
            found.append(
                f"revenue source '{source.label}' has {len(spellings)} currencies in column "
                f"'{column}': {listed}. Their amounts are added up as if one currency: convert "
                f'them, or keep one with drop = [{{ column = "{column}", not_in = '
                f'["{main}"], reason = "other currencies" }}]. If the amount column is '
                "already in one currency (converted by the tool, like RevenueCat's price in "
                f'USD), read this column into the table to say so: purchase_currency = "{column}"'
            )
    return found


def _text(values: pd.Series) -> pd.Series:
    """Values as text for comparisons (maps, in/equals): typed values by their str(), true and
    false as JSON and Parquet write them ("true", "false"): a booking app's `"attended": true`
    had matched neither `"true"` nor `"True"` in a map, as the values stayed booleans."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.map({True: "true", False: "false"}).astype("object").where(values.notna())
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) != "string":
        return values.map(_value_text).where(values.notna())  # a C scan first: text stays as is
    if pd.api.types.is_string_dtype(values.dtype):
        return values
    return values.astype("str").where(values.notna())


def _value_text(value: object) -> object:
    """One value of a column of mixed or untyped values as text (missing ones as they are)."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _holds(cond: Condition, frame: pd.DataFrame, problems: _Problems) -> np.ndarray:
    """Per row: the condition is true (missing values never match in/equals/matches/below)."""
    values = frame[cond.column]
    present = values.notna().to_numpy()
    if cond.op == "missing":  # an empty text is missing, as an empty cell is (JSON's "")
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            blank = values.map(lambda v: isinstance(v, str) and not v.strip())
            present = present & ~blank.to_numpy(dtype=bool)
        return ~present if cond.arg else present
    if cond.op in ("below", "above"):
        numbers, found = parse_numbers(values, cond.column)
        if found:
            problems.add(found, frame)
            return np.zeros(len(frame), dtype=bool)
        x = numbers.to_numpy()
        return np.asarray((x < cond.arg) if cond.op == "below" else (x > cond.arg)) & present
    text = _text(values)
    if cond.op == "in":
        hit = text.isin(cond.arg).to_numpy()
    elif cond.op == "not_in":
        hit = ~text.isin(cond.arg).to_numpy()
    elif cond.op == "equals":
        hit = (text == cond.arg).to_numpy(dtype=bool, na_value=False)
    else:  # matches: a regular expression searched in the text
        hit = text.str.contains(cond.arg, regex=True, na=False).to_numpy(dtype=bool)
    return hit & present


def _apply_map(
    spec: ColumnSpec,
    frame: pd.DataFrame,
    keep: np.ndarray,
    report: SourceReport,
    problems: _Problems,
) -> pd.Series:
    """The raw column through its value map; rows mapped to "drop" are taken out of keep and
    counted per value, rows mapped to "" are missing; values the map does not know are an
    error unless declared otherwise."""
    assert spec.map is not None and spec.column is not None
    raw = frame[spec.column]
    text = _text(raw)
    known = text.isin(list(spec.map)).to_numpy()
    present = raw.notna().to_numpy()
    unknown = keep & present & ~known
    result = text.map(spec.map).astype("object")
    if unknown.any():
        values = text[unknown].value_counts()
        if spec.unmapped == "error":
            listed = (  # one value: the problem's own row count says how many
                repr(values.index[0])
                if len(values) == 1
                else ", ".join(f"{v!r} ({n} rows)" for v, n in values.head(5).items())
            )
            problems.add(
                [
                    problem_at(
                        spec.column,
                        f"values without an entry in the map of '{spec.name}': {listed}",
                        unknown,
                        'add them to map (a value, or "drop"), or set unmapped = "keep" or "drop"',
                    )
                ],
                frame,
            )
        elif spec.unmapped == "drop":
            for value, n in values.items():
                report.drop(f"{spec.column} = {value!r}: not in the map of '{spec.name}'", n)
            keep &= ~unknown
        else:
            result = result.where(known | ~present, text.astype("object"))
    # mapped to "": missing, as an empty cell is (a placeholder birth year of 1900)
    empty = result.map(lambda value: isinstance(value, str) and not value.strip())
    result = result.where(~empty.to_numpy(dtype=bool), None)
    dropped = keep & (result == DROP).to_numpy(dtype=bool, na_value=False)
    if dropped.any():
        for value, n in text[dropped].value_counts().items():
            report.drop(f"{spec.column} = {value!r} (mapped to drop)", n)
        keep &= ~dropped
    return result


def _cases_values(spec: ColumnSpec, frame: pd.DataFrame, problems: _Problems) -> pd.Series:
    """A cases column's raw values: the first case that holds, else the default."""
    raw = pd.Series([spec.default] * len(frame), index=frame.index, dtype="object")
    for cond, value in reversed(spec.cases):  # the first case that holds wins
        raw = raw.mask(_holds(cond, frame, problems), value)
    return raw


def _column(
    spec: ColumnSpec,
    frame: pd.DataFrame,
    mapped: pd.Series | None,
    problems: _Problems,
    *,
    future: bool = False,
) -> pd.Series:
    """One typed output column; its problems go to `problems` (named by the raw column).
    future: its times may lie after today (any but the contract's event times,
    features.contract.EVENT_TIMESTAMPS: a contract's end, a paid period's end)."""
    n = len(frame)
    if spec.value is not None:
        raw = pd.Series([spec.value] * n, index=frame.index, dtype="object")
        label = f"{spec.name} (constant)"
    elif spec.cases:
        raw = mapped if mapped is not None else _cases_values(spec, frame, problems)
        label = f"{spec.name} (cases)"
    else:
        assert spec.column is not None
        raw = mapped if mapped is not None else frame[spec.column]
        label = spec.column if spec.column == spec.name else f"{spec.column} (as {spec.name})"
    if spec.when is not None:  # parsed only where it holds: the other rows are missing
        raw = raw.where(_holds(spec.when, frame, problems))
    if spec.type != "as_is" and raw.dtype == object and spec.value is None:
        raw = raw.infer_objects()
    if spec.trim:  # declared: surrounding spaces are not part of the value
        raw = _text_op(raw, "strip")
    if spec.lower:  # declared: letter case is not part of the value (emails)
        raw = _text_op(raw, "lower")
    if spec.whole:  # declared: 13085.0 is the id 13085 (a float column saved as text)
        raw, found = _whole_ids(raw, label)
        if found:
            problems.add(found, frame)
    if spec.zero_pad:  # declared: 91943 is the id 0091943 (stored as a number somewhere)
        raw = _zero_padded(raw, spec.zero_pad)
    if spec.type == "id":
        optional = spec.name != "customer_id"  # only the customer's own id is required
        if isinstance(raw.dtype, pd.StringDtype):  # text already: nothing to parse per value
            values, found = parse_ids(raw, label, optional)
        else:
            values, found = _parse_distinct(lambda v: parse_ids(v, label, optional), raw)
    elif spec.type == "timestamp":
        if raw.dtype == object:
            raw = raw.astype("str").where(raw.notna())
        if _undeclared_numbers(raw, spec):
            # Digits only, from a CSV: the numeric diagnosis (and its unit hint) applies.
            raw = pd.to_numeric(raw)
        declared = spec.timestamp is not None and (
            spec.timestamp.format is not None or spec.timestamp.dayfirst is not None
        )
        if declared:  # pandas parses these value by value: once per distinct value
            values, found = _parse_distinct(
                lambda v: parse_timestamps(v, label, spec.timestamp, future=future), raw
            )
        else:  # ISO 8601 or epoch numbers: vectorised (Arrow, numpy) already
            values, found = parse_timestamps(raw, label, spec.timestamp, future=future)
        if spec.covers is not None and not found:
            zone = spec.timestamp.timezone if spec.timestamp is not None else None
            values = period_end(values, spec.covers, zone)
    elif spec.type == "number":
        values, found = parse_numbers(
            raw, label, scale=spec.scale, decimal=spec.decimal, thousands=spec.thousands
        )
        if spec.times is not None and not found:
            other, found = parse_numbers(frame[spec.times], spec.times)
            values = values * other
        if spec.abs:
            values = values.abs()
        if spec.negate_when is not None:
            values = values.mask(_holds(spec.negate_when, frame, problems), -values.abs())
    elif spec.type == "text":
        values, found = _as_text(raw), []
    else:
        values, found = raw, []
    if found:
        problems.add(found, frame)
    return values


def _local_time(utc: pd.Series, zone: str) -> pd.Series:
    """Naive UTC times as the naive wall-clock times of a zone."""
    return utc.dt.tz_localize("UTC").dt.tz_convert(zone).dt.tz_localize(None)


PERIOD_OFFSETS = {
    "day": pd.DateOffset(days=1),
    "week": pd.DateOffset(weeks=1),
    "month": pd.DateOffset(months=1),
}


LAST_SECOND = pd.Timedelta(seconds=1)


def period_end(starts: pd.Series, period: str, timezone: str | None = None) -> pd.Series:
    """The last second of the period (features.config.ACTIVITY_PERIODS) that starts at each
    time (naive UTC): a month's total stamped 2024-07-01 is stamped 2024-07-31 23:59:59, a
    billing cycle's from the 15th at the next 14th's last second. Features as of T count rows
    strictly before T, so the total of a month counts from the next month's first instant on,
    and not before. In the declared zone's calendar when there is one (a Berlin month ends at
    22:00 or 23:00 UTC)."""
    offset = PERIOD_OFFSETS[period]
    if timezone is None:
        return starts + offset - LAST_SECOND
    local = _local_time(starts, timezone)
    # An end that falls in a daylight-saving change is read as its later instant: never early.
    later = np.zeros(len(local), dtype=bool)
    ends = (local + offset).dt.tz_localize(timezone, ambiguous=later, nonexistent="shift_forward")
    return ends.dt.tz_convert("UTC").dt.tz_localize(None) - LAST_SECOND


DISTINCT_MIN_ROWS = 50_000


def _parse_distinct(
    parse: Callable[[pd.Series], tuple[pd.Series, list[Problem]]], raw: pd.Series
) -> tuple[pd.Series, list[Problem]]:
    """parse(raw), computed once per distinct value when values repeat (customer ids in an
    event table, dates without times): the same result, a fraction of the work.

    Parsing is value by value, so parsing the distinct values and spreading them back gives
    what parsing every row gives. Whenever the distinct values have a problem (or a value is
    missing), the whole column is parsed instead, so counts and example rows are the rows'."""
    if len(raw) < DISTINCT_MIN_ROWS or not pd.api.types.is_string_dtype(raw.dtype):
        return parse(raw)
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    if len(uniques) > len(raw) // 4 or (codes < 0).any():
        return parse(raw)
    parsed, found = parse(pd.Series(uniques, dtype=raw.dtype))
    if found:
        return parse(raw)
    return pd.Series(parsed.array.take(codes), index=raw.index, name=raw.name), []


WHOLE_WITH_ZEROS = r"^\s*[+-]?\d+\.0+\s*$"
WITH_FRACTION = r"^\s*[+-]?\d*\.\d+\s*$"


def _whole_ids(values: pd.Series, column: str) -> tuple[pd.Series, list[Problem]]:
    """Ids written as whole numbers with a zero fraction (13085.0) without it; ids with any
    other fraction (13085.5) are a problem (no id is rounded)."""
    if not pd.api.types.is_string_dtype(values.dtype):
        return values, []  # numbers: parse_ids takes whole floats and refuses fractions
    text = values.astype("str")
    zeros = text.str.match(WHOLE_WITH_ZEROS).fillna(False).to_numpy(dtype=bool)
    other = text.str.match(WITH_FRACTION).fillna(False).to_numpy(dtype=bool) & ~zeros
    if other.any():
        return values, [problem_at(column, "ids with a fraction other than .0", other)]
    return text.where(~zeros, text.str.strip().str.replace(r"\.0+$", "", regex=True)), []


def _zero_padded(values: pd.Series, width: int) -> pd.Series:
    """Ids of digits shorter than `width`, left-padded with zeros; other ids and missing
    values as they are. Integer columns are read as their digits first."""
    if pd.api.types.is_integer_dtype(values.dtype):
        values = values.astype("Int64").astype("string")
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        return values
    text = values.astype("string")
    digits = text.str.fullmatch(r"\d+").fillna(False).to_numpy(dtype=bool)
    return text.where(~digits, text.str.zfill(width))


def _text_op(values: pd.Series, name: str) -> pd.Series:
    """A str method ("strip", "lower") on the text values of a column (numbers and missing
    values left as they are)."""
    if isinstance(values.dtype, pd.StringDtype):
        return getattr(values.str, name)()
    if values.dtype == object:
        return values.map(lambda v: getattr(v, name)() if isinstance(v, str) else v)
    return values


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values
    return values.astype("str").where(values.notna()).astype("str")


def _aggregate(
    df: pd.DataFrame, source: SourceMapping, report: SourceReport | None = None
) -> pd.DataFrame:
    """Rows grouped by the aggregate's columns (in order of first appearance)."""
    assert source.aggregate is not None
    by = list(source.aggregate.by)
    grouped = df.groupby(by, sort=False, observed=True, dropna=False)
    result = pd.DataFrame(index=grouped.size().index)
    for col, fn in source.aggregate.functions.items():
        if fn == "mode":
            result[col] = _mode(df, by, col)
        elif fn == "count":
            result[col] = grouped[col].count().astype("float64")
        elif fn == "max_if_all":  # empty while any row is empty (a subscription still running)
            result[col] = grouped[col].max().where(grouped[col].count() == grouped.size())
        else:
            result[col] = grouped[col].agg(fn)
    if report is not None:
        report.merged += len(df) - len(result)
        report.merged_by = by
        report.warnings += _open_end_warnings(df, source, grouped, result)
        report.warnings += repeated_total_warnings(df, source, grouped)
    names = [c.name for c in source.columns]
    return result.reset_index()[names]


# A "sum" whose groups of several rows repeat one value on every row at least this often adds a
# total once per row (with at least REPEATED_TOTAL_MIN_GROUPS such groups to tell).
REPEATED_TOTAL_SHARE = 0.9
REPEATED_TOTAL_MIN_GROUPS = 20


def repeated_total_warnings(df: pd.DataFrame, source: SourceMapping, grouped: Any) -> list[str]:
    """A warning per column aggregated with "sum" whose groups of several rows nearly all hold
    one value on every row: an order's total repeated on each of its line items (WooCommerce's
    Order Total), which "sum" counts once per item. A fashion shop's revenue came out 2.6
    times its own, silently; "first" takes it once."""
    assert source.aggregate is not None
    out = []
    size = grouped.size()
    several = size > 1
    n_several = int(several.sum())
    if n_several < REPEATED_TOTAL_MIN_GROUPS:
        return []
    for col, fn in source.aggregate.functions.items():
        if fn != "sum" or col not in df:
            continue
        same = (grouped[col].nunique(dropna=True) == 1) & (grouped[col].count() == size)
        repeated = several & same
        if int(repeated.sum()) < REPEATED_TOTAL_SHARE * n_several:
            continue
        key = repeated[repeated].index[0]
        keys = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{b} {v!r}" for b, v in zip(source.aggregate.by, keys, strict=True))
        value = df[col].iloc[grouped.indices[key][0]]
        out.append(
            f"{source.table} source '{source.label}': {col} = \"sum\" adds one value repeated on "
            f"every row of {int(repeated.sum()):,} of the {n_several:,} groups with several "
            f"rows (e.g. {where}: {int(size[key])} rows of {value}). If it is a total repeated "
            f'on each line item (an order total), "sum" counts it once per row: use '
            f'{col} = "first". If the rows really add up, ignore this'
        )
    return out


# A declared attribute whose value differs between a customer's rows for at least this share
# of the customers with several rows is no fact of the customer but of its rows over time.
VARYING_ATTRIBUTE_SHARE = 0.05


def varying_attribute_warnings(
    df: pd.DataFrame, source: SourceMapping, attributes: Sequence[str]
) -> list[str]:
    """A warning per declared customer attribute (model feature) that the customers source
    aggregates from rows whose values differ within a customer: the aggregate ('mode', 'last')
    is taken over the whole export, rows dated after a training date included, so the model
    learns from what was not known then (Superstore's Region, the most frequent over each
    customer's order lines, differed between orders for 766 of 793 customers; benchmarks/
    README.md, session 38)."""
    if source.table != "customers" or source.aggregate is None:
        return []
    by = list(source.aggregate.by)
    checked = [
        c
        for c in attributes
        if c in df and c not in by and source.aggregate.functions.get(c) is not None
    ]
    if not checked:
        return []
    grouped = df.groupby(by, sort=False, observed=True, dropna=False)  # once for every column
    several = int((grouped.size() > 1).sum())
    out = []
    for col in checked:
        varying = int((grouped[col].nunique(dropna=True) > 1).sum())
        if several and varying >= max(1, VARYING_ATTRIBUTE_SHARE * several):
            fn = source.aggregate.functions[col]
            out.append(
                f"customers.{col}: its value differs between a customer's rows for {varying:,} "
                f"of the {several:,} customers with several rows, and '{fn}' takes it over the "
                "whole export, rows after each training date included: as a model feature "
                "([features] customer_attributes) it tells the model what was not known then. "
                "Declare only attributes fixed for a customer (at signup); keep this one for "
                "reports (churn score --by)"
            )
    return out


# Aggregations that skip empty values: on an end date they read a customer with one ended and
# one running subscription as ended.
SKIPPING_EMPTY = ("min", "max", "first", "last")


def _open_end_warnings(
    df: pd.DataFrame, source: SourceMapping, grouped: Any, result: pd.DataFrame
) -> list[str]:
    """A warning when the customers' churned_at is aggregated with a function that skips empty
    values, its column has no `when` (so an empty value is not simply another kind of row), and
    some customers have both rows with a date and rows without: a subscriptions export where
    an empty end date is a subscription still running, whose customer has not churned."""
    fn = source.aggregate.functions.get("churned_at") if source.aggregate else None
    spec = next((c for c in source.columns if c.name == "churned_at"), None)
    if source.table != "customers" or fn not in SKIPPING_EMPTY or spec is None or spec.when:
        return []
    filled = grouped["churned_at"].count()
    mixed = (filled > 0) & (filled < grouped.size())
    if not mixed.any():
        return []
    example = mixed[mixed].index[0]
    rows = int(grouped.size()[example])
    customer = example[0] if isinstance(example, tuple) else example
    return [
        f"customers source '{source.label}': {int(mixed.sum()):,} customers have rows with a "
        f"churned_at and rows without (e.g. customer {customer}: {int(filled[example])} of "
        f'{rows} rows have one), and churned_at = "{fn}" counts them as churned on '
        f"{result.loc[example, 'churned_at']}. If an empty churned_at is a subscription still "
        'running, use churned_at = "max_if_all" (churned when the last one ended); if only '
        "some kinds of rows carry the date, declare them with `when` on the column"
    ]


def _mode(df: pd.DataFrame, by: list[str], col: str) -> pd.Series:
    """The most frequent value per group; ties go to the smallest value."""
    counts = df.groupby([*by, col], sort=True, observed=True).size().rename("_n").reset_index()
    top = counts.sort_values(
        [*by, "_n"], ascending=[True] * len(by) + [False], kind="stable"
    ).drop_duplicates(by)
    return top.set_index(by)[col]


def _covers(source: SourceMapping) -> str | None:
    return next((c.covers for c in source.columns if c.name == "at" and c.covers), None)


def activity_totals(mapping: Mapping) -> str | None:
    """The period activity rows total, when every activity source declares the same `covers`
    on `at`. Where one source totals months and another holds events (a bank's month-end
    balances beside its ledger), the activity is events, and its words are events' ("Active on
    4 of the last 30 days"), not "Activity recorded on 3 dates ... (usage reported monthly)";
    each total still counts from its period's end (mixed_totals_note says so)."""
    periods = {_covers(source) for source in mapping.tables.get("activity", ())}
    return periods.pop() if len(periods) == 1 else None


def mixed_totals_note(mapping: Mapping) -> str | None:
    """The import report's words for activity sources that total periods beside sources of
    events (activity_totals is then None), or None."""
    sources = mapping.tables.get("activity", ())
    totals = {s.label: _covers(s) for s in sources if _covers(s)}
    if not totals or (len(totals) == len(sources) and len(set(totals.values())) == 1):
        return None
    listed = ", ".join(f"'{label}' ({period})" for label, period in totals.items())
    return (
        f"activity source(s) {listed} total a period beside sources of events: each total "
        "counts from its period's end, and activity is worded as events (no [features] "
        "activity_totals)"
    )


def config_toml(mapping: Mapping) -> str:
    """The output's config.toml: the mapping's [features] (with [features.churn]),
    [training] and [scoring] sections, as features/config.py, training/config.py and
    serving/config.py read them."""
    lines: list[str] = []
    if mapping.training:
        lines += _section("training", mapping.training)
    if mapping.scoring:
        lines += _section("scoring", mapping.scoring)
    features = {k: v for k, v in mapping.features.items() if k != "churn"}
    totals = activity_totals(mapping)
    if totals and "activity_totals" not in features:
        features["activity_totals"] = totals
    churn = mapping.features.get("churn", {})
    if features or churn:
        lines += _section("features", features)
    if churn:
        lines += _section("features.churn", churn)
    return "\n".join(lines)


def _section(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in values.items()), ""]


def _toml(value: Any) -> str:
    import datetime as dt
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        return json.dumps(value.isoformat())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(str(value))


def write_import(tables: Tables, report: ImportReport, mapping: Mapping, out: str | Path) -> None:
    """The tables as Parquet with config.toml, report.md and report.json, written atomically."""
    from features.io import write_tables

    write_tables(tables, out, extra_files=_extra_files(report, mapping))


def _extra_files(report: ImportReport, mapping: Mapping) -> dict[str, str | pd.DataFrame]:
    return {
        DATA_CONFIG_FILE: config_toml(mapping),
        "report.md": report.to_markdown(),
        "report.json": report.to_json(),
    }


def import_with_mapping(
    mapping: Mapping,
    source_dir: str | Path,
    out: str | Path,
    *,
    frames: dict[str, Handed] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Run a mapping and write its output folder; returns the report.

    Each checked batch is written to its table's Parquet file as it comes (the customers,
    needed whole to look up the other tables' ids, are written after their checks), inside
    features.io.atomic_dir's temporary folder: the output is never held in memory, and an
    error in any batch leaves the previous output folder (or none) as it was."""
    from features.io import atomic_dir

    with atomic_dir(out) as tmp:
        sink = _ParquetSink(tmp, mapping)
        try:
            report = _run(mapping, Path(source_dir), frames, batch_rows, sink)
        except BaseException:
            sink.close(complete=False)  # atomic_dir removes the folder
            raise
        sink.close()
        for name, content in _extra_files(report, mapping).items():
            (tmp / name).write_text(str(content))
    return report


EPOCH_TEXT = r"[+-]?\d{6,}(?:\.\d+)?"


def _undeclared_numbers(values: pd.Series, spec: ColumnSpec) -> bool:
    """Text that is only epoch-like numbers in a timestamp column with no declaration."""
    declared = spec.timestamp is not None and (
        spec.timestamp.unit or spec.timestamp.format or spec.timestamp.dayfirst is not None
    )
    if declared or not pd.api.types.is_string_dtype(values.dtype):
        return False
    first = values.first_valid_index()
    if first is None or not re.fullmatch(EPOCH_TEXT, str(values[first])):
        return False  # all() below would be False: one look instead of every row
    present = values.dropna()
    if present.str.len().eq(8).all():  # 20240105: a date, not an epoch
        return False
    return bool(present.str.fullmatch(EPOCH_TEXT).all())
