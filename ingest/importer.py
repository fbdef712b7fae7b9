"""Apply an import mapping: read each source in batches, drop, map, type and aggregate its
rows, check the result against the contract, and write it with its config and report.

Every typed column goes through features/types.py (one implementation of parsing). Problems
are collected over all batches of a source and raised together as one ContractError that
names the mapping file, the table, the source, the column and an example raw row.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import DATA_CONFIG_FILE
from features.contract import (
    TABLES,
    ContractError,
    Tables,
    check_unique_ids,
    empty_table,
    ids_in,
    validate_table,
)
from features.types import Problem, parse_ids, parse_numbers, parse_timestamps, problem_at
from ingest.mapping import (
    DROP,
    ColumnSpec,
    Condition,
    Mapping,
    SourceMapping,
    label_like_attributes,
)
from ingest.report import ImportReport, SourceReport
from ingest.sources import BATCH_ROWS, batch_to_frame, iter_batches

MAX_PROBLEM_EXAMPLES = 3


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
    frames: dict[str, pd.DataFrame] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> tuple[Tables, ImportReport]:
    """The contract's tables from the mapping's sources, checked, and the import report.

    Each batch of a source is mapped, checked against the contract (features.contract
    validate_table: the same checks and errors as loading a data folder) and checked for
    customers not in the customers table as soon as it is read, so no check needs the whole
    table at once: only the checked output rows are kept, and the customer ids (imported
    first) are the one state carried over. A source with an aggregate is checked after it is
    aggregated, as its output rows only exist then.

    frames: raw frames by source name, used instead of reading those sources (a command that
    reads a file its own way, such as an Excel workbook, hands the rows over)."""
    from features.io import use_regular_memory_pages

    use_regular_memory_pages()  # as load_tables: huge pages made the peak 2x the batches' need
    return_freed_memory()
    source_dir = Path(source_dir)
    report = ImportReport(mapping=mapping.path, sources=[])
    out: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        parts = []
        known = out["customers"]["customer_id"] if table != "customers" else None
        for source in mapping.tables.get(table, ()):
            df, source_report = _import_source(
                mapping, source, source_dir, frames, batch_rows, known
            )
            source_report.rows_out = len(df)
            report.sources.append(source_report)
            parts.append(df)
        if not parts:
            continue
        out[table] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if table == "customers":
            try:  # a key may repeat across batches and sources
                check_unique_ids(out[table])
            except ContractError as err:
                raise _in_mapping(mapping, err) from None
    tables = Tables(
        customers=out["customers"],
        activity=out["activity"],
        feedback=out.get("feedback", empty_table("feedback")),
        revenue=out.get("revenue", empty_table("revenue")),
    )
    report.describe_tables(tables)
    report.warnings += [
        f"customer attribute {a!r} is declared as a model feature, and its name looks like the "
        "label (an export-day status or end date holds the future): check it is known before T"
        for a in label_like_attributes(mapping)
    ]
    return tables, report


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


def _where(mapping: Mapping, source: SourceMapping) -> str:
    return f"mapping {mapping.path}, source '{source.label}'"


def _batches(
    source: SourceMapping,
    source_dir: Path,
    frames: dict[str, pd.DataFrame] | None,
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    if frames is not None and source.label in frames:
        frame = frames[source.label]
        for start in range(0, max(len(frame), 1), batch_rows):
            yield frame.iloc[start : start + batch_rows].reset_index(drop=True)
        return
    for batch in iter_batches(source.source, source_dir, batch_rows):
        yield batch_to_frame(batch)


def _import_source(
    mapping: Mapping,
    source: SourceMapping,
    source_dir: Path,
    frames: dict[str, pd.DataFrame] | None,
    batch_rows: int,
    known: pd.Series | None,
) -> tuple[pd.DataFrame, SourceReport]:
    """One source's rows as checked output rows, and its report. Problems of every batch are
    collected and raised together; `known`: the customer ids rows may refer to."""
    location = "rows handed over" if frames and source.label in frames else None
    report = SourceReport(source.table, source.label, location or source.source.describe())
    problems = _Problems()
    parts: list[pd.DataFrame] = []
    needed = source.raw_columns()
    seen_columns: list[str] | None = None
    checked_per_batch = source.aggregate is None
    for frame in _batches(source, source_dir, frames, batch_rows):
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
                    ),
                )
        report.rows_read += len(frame)
        before = len(problems)
        mapped = _map_batch(source, frame, report, problems)
        del frame
        if len(problems) > before or (problems and not checked_per_batch):
            continue  # the rows could not be mapped: nothing to check
        if checked_per_batch:
            mapped = _checked(mapping, source, mapped, known, report, problems)
        if not problems:
            parts.append(mapped)
    if problems:
        raise problems.error(source.table, _where(mapping, source))
    if seen_columns is None or not parts:  # no rows at all: the columns, typed, still
        empty = pd.DataFrame({c: pd.Series([], dtype="str") for c in needed})
        parts = [_map_batch(source, empty, report, problems)]
        checked_per_batch = False
    df = _concat(parts)
    del parts
    if source.aggregate is not None:
        df = _aggregate(df, source)
    if not checked_per_batch:
        df = _checked(mapping, source, df, known, report, problems)
        if problems:
            raise problems.error(source.table, _where(mapping, source))
    if source.sort:
        df = df.sort_values(list(source.sort), kind="stable", ignore_index=True)
    return df, report


def _checked(
    mapping: Mapping,
    source: SourceMapping,
    df: pd.DataFrame,
    known: pd.Series | None,
    report: SourceReport,
    problems: _Problems,
) -> pd.DataFrame:
    """Output rows checked against the contract: rows of customers not in `known` dropped
    (counted) or recorded as a problem, then features.contract.validate_table. Problems that
    carry row counts go to `problems`; any other contract error is raised at once."""
    if known is not None:
        unknown = ~ids_in(df["customer_id"], known)
        if unknown.any():
            if source.unknown_customers == "drop":
                report.drop("customer not in the customers table", int(unknown.sum()))
                df = df[~unknown].reset_index(drop=True)
            else:
                problems.add(
                    [
                        problem_at(
                            "customer_id",
                            "rows refer to customers not in 'customers'",
                            unknown,
                            'drop them with unknown_customers = "drop" on this source, or map '
                            "those customers",
                        )
                    ],
                    df,
                )
                return df
    try:
        return validate_table(source.table, df)
    except ContractError as err:
        if not err.problems:
            raise _in_mapping(mapping, err) from None
        problems.add(err.problems, df)
        return df


def _map_batch(
    source: SourceMapping, frame: pd.DataFrame, report: SourceReport, problems: _Problems
) -> pd.DataFrame:
    """One batch of raw rows as output columns: drop rules, value maps, then typed columns."""
    keep = np.ones(len(frame), dtype=bool)
    for rule in source.drop:
        hit = keep & _holds(rule.condition, frame, problems)
        report.drop(rule.reason, int(hit.sum()))
        keep &= ~hit
    mapped: dict[str, pd.Series] = {}
    for spec in source.columns:
        if spec.map is not None:
            mapped[spec.name] = _apply_map(spec, frame, keep, report, problems)
    if not keep.all():
        frame = frame[keep].reset_index(drop=True)
        mapped = {k: v[keep].reset_index(drop=True) for k, v in mapped.items()}
    columns = {
        spec.name: _column(spec, frame, mapped.get(spec.name), problems) for spec in source.columns
    }
    return pd.DataFrame(columns, index=frame.index)


def _text(values: pd.Series) -> pd.Series:
    """Values as text for comparisons (maps, in/equals): typed values by their str()."""
    if pd.api.types.is_string_dtype(values.dtype):
        return values
    return values.astype("str").where(values.notna())


def _holds(cond: Condition, frame: pd.DataFrame, problems: _Problems) -> np.ndarray:
    """Per row: the condition is true (missing values never match in/equals/matches/below)."""
    values = frame[cond.column]
    present = values.notna().to_numpy()
    if cond.op == "missing":
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
    counted per value; values the map does not know are an error unless declared otherwise."""
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
            listed = ", ".join(f"{v!r} ({n} rows)" for v, n in values.head(5).items())
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
    dropped = keep & (result == DROP).to_numpy(dtype=bool, na_value=False)
    if dropped.any():
        for value, n in text[dropped].value_counts().items():
            report.drop(f"{spec.column} = {value!r} (mapped to drop)", n)
        keep &= ~dropped
    return result


def _column(
    spec: ColumnSpec, frame: pd.DataFrame, mapped: pd.Series | None, problems: _Problems
) -> pd.Series:
    """One typed output column; its problems go to `problems` (named by the raw column)."""
    n = len(frame)
    if spec.value is not None:
        raw = pd.Series([spec.value] * n, index=frame.index, dtype="object")
        label = f"{spec.name} (constant)"
    elif spec.cases:
        raw = pd.Series([spec.default] * n, index=frame.index, dtype="object")
        for cond, value in reversed(spec.cases):  # the first case that holds wins
            raw = raw.mask(_holds(cond, frame, problems), value)
        label = f"{spec.name} (cases)"
    else:
        assert spec.column is not None
        raw = mapped if mapped is not None else frame[spec.column]
        label = spec.column if spec.column == spec.name else f"{spec.column} (as {spec.name})"
    if spec.type != "as_is" and raw.dtype == object and spec.value is None:
        raw = raw.infer_objects()
    if spec.type == "id":
        if isinstance(raw.dtype, pd.StringDtype):  # text already: nothing to parse per value
            values, found = parse_ids(raw, label)
        else:
            values, found = _parse_distinct(lambda v: parse_ids(v, label), raw)
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
                lambda v: parse_timestamps(v, label, spec.timestamp), raw
            )
        else:  # ISO 8601 or epoch numbers: vectorised (Arrow, numpy) already
            values, found = parse_timestamps(raw, label, spec.timestamp)
    elif spec.type == "number":
        values, found = parse_numbers(raw, label, scale=spec.scale)
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


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return values
    return values.astype("str").where(values.notna()).astype("str")


def _aggregate(df: pd.DataFrame, source: SourceMapping) -> pd.DataFrame:
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
        else:
            result[col] = grouped[col].agg(fn)
    names = [c.name for c in source.columns]
    return result.reset_index()[names]


def _mode(df: pd.DataFrame, by: list[str], col: str) -> pd.Series:
    """The most frequent value per group; ties go to the smallest value."""
    counts = df.groupby([*by, col], sort=True, observed=True).size().rename("_n").reset_index()
    top = counts.sort_values(
        [*by, "_n"], ascending=[True] * len(by) + [False], kind="stable"
    ).drop_duplicates(by)
    return top.set_index(by)[col]


def config_toml(mapping: Mapping) -> str:
    """The output's config.toml: the mapping's [features] (with [features.churn]) and
    [training] sections, as features/config.py and training/config.py read them."""
    lines: list[str] = []
    if mapping.training:
        lines += _section("training", mapping.training)
    features = {k: v for k, v in mapping.features.items() if k != "churn"}
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

    write_tables(
        tables,
        out,
        extra_files={
            DATA_CONFIG_FILE: config_toml(mapping),
            "report.md": report.to_markdown(),
            "report.json": report.to_json(),
        },
    )


def import_with_mapping(
    mapping: Mapping, source_dir: str | Path, out: str | Path, **kwargs: Any
) -> ImportReport:
    """Run a mapping and write its output folder; returns the report."""
    tables, report = run_import(mapping, source_dir, **kwargs)
    write_import(tables, report, mapping, out)
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
