"""Declarative import mappings: raw exports and SQL tables onto the data contract.

A mapping is a TOML file the user edits (like dbt's sources.yml): for each contract table one
or more sources, and per source the rows to drop (with a reason), the output columns (a raw
column renamed, a constant, or cases), their declared types (timestamp format, epoch unit,
day-first, zone; an amount scale), value maps, and an optional aggregation. The code that
applies it (ingest/importer.py) is generic. Parsing a mapping refuses unknown keys, naming the
key and where it is, so a typo never silently does nothing.

    [customers]
    source = "crm_customers.csv"
    drop = [{ column = "plan", in = ["internal"], reason = "internal test accounts" }]

    [customers.columns]
    customer_id = "id"                                   # ids stay text: 000123
    signup_at = { column = "created", dayfirst = true }  # 03/02/2024 is 3 February
    mrr = { column = "mrr", type = "number" }

    [[revenue]]                                          # [[...]]: several sources
    source = "stripe_invoices.csv"
    [revenue.columns]
    at = { column = "created", unit = "s" }
    amount = { column = "amount_due", scale = 0.01, negate_when = { column = "status", in = ["refunded"] } }
    kind = { column = "status", map = { paid = "invoice", open = "invoice", refunded = "refund", void = "drop" } }

A column with `when = { ... }` has a value only on the rows where the condition holds (a
cancellation date from the cancellation event of an event log; aggregated with "min").

Period totals (a month's usage per row) stamped at the period's start are declared with
`covers`: `at = { column = "month", format = "%Y-%m", covers = "month" }` stamps each row at its
month's last second, so that it counts from the next month on, when the total is known; left at
the start, a feature on the 15th would count the whole month.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from features.config import (
    ACTIVITY_PERIODS,
    RESERVED_CUSTOMER_COLUMNS,
    ChurnDefinition,
    FeatureConfig,
)
from features.contract import REQUIRED_COLUMNS, TABLES, TIMESTAMP_COLUMNS
from features.types import (
    DECIMAL_MARKS,
    DST_POLICIES,
    EPOCH_UNITS,
    THOUSANDS_MARKS,
    TimestampSpec,
)
from ingest.sources import FILE_FORMATS, SourceSpec, declared_format

ColumnType = Literal["id", "text", "timestamp", "number", "as_is"]
COLUMN_TYPES = ("id", "text", "timestamp", "number", "as_is")
# max_if_all: the largest value when every row of the group has one, else empty (churned_at
# over a subscriptions export: churned when the last subscription ended, not while one runs).
# min, max, first and last skip empty values; mode ties go to the smallest value.
AGGREGATIONS = ("min", "max", "max_if_all", "sum", "first", "last", "count", "mode")
DROP = "drop"  # a value map's target that drops the row (counted in the import report)
UNMAPPED = ("error", "keep", "drop")

TOP_KEYS = {"mapping", "features", "training", "scoring", *TABLES}
MAPPING_KEYS = {"description"}
SOURCE_KEYS = {
    "source",
    "name",
    "drop",
    "columns",
    "aggregate",
    "sort",
    "unknown_customers",
    "repeats",
}
SOURCE_TABLE_KEYS = {
    "path",
    "format",
    "delimiter",
    "encoding",
    "header",
    "sheet",
    "url",
    "url_env",
    "query",
}
COLUMN_KEYS = {
    "column",
    "value",
    "cases",
    "default",
    "type",
    "format",
    "unit",
    "dayfirst",
    "timezone",
    "scale",
    "times",
    "abs",
    "negate_when",
    "map",
    "unmapped",
    "when",
    "decimal",
    "thousands",
    "trim",
    "lower",
    "whole",
    "zero_pad",
    "dst",
    "covers",
}
# Options of timestamp columns. `covers`: the time starts the period a row totals (a month's
# usage stamped at the month's first instant; ACTIVITY_PERIODS), and it is moved to the
# period's last second: features count it from the period's end on, when the total is known.
# Left at the start, features on dates inside the period would count usage from after them.
TIMESTAMP_KEYS = ("format", "unit", "dayfirst", "timezone", "dst", "covers")
NUMBER_KEYS = ("scale", "times", "abs", "negate_when", "decimal", "thousands")
CONDITION_OPS = ("in", "not_in", "equals", "matches", "missing", "below", "above")
NUMBER_COLUMNS = {"activity": ("value",), "feedback": ("score",), "revenue": ("amount",)}
TEXT_COLUMNS = ("event", "kind", "status", "text")
# Ids: text as they come (000123 keeps its zeros); activity.user_id is who acted for the account.
ID_COLUMNS = {"activity": ("customer_id", "user_id")}


class MappingError(ValueError):
    """The mapping file itself is wrong: an unknown key, a missing source, a bad value. Names
    the file and where in it."""


@dataclass(frozen=True)
class Condition:
    """A test on one raw column, row by row: in/not_in/equals compare the text of the value,
    matches searches a regular expression, missing is true for empty values, below/above
    compare numbers."""

    column: str
    op: str
    arg: Any

    def describe(self) -> str:
        if self.op == "missing":
            return f"{self.column} is {'missing' if self.arg else 'present'}"
        if self.op in ("in", "not_in"):
            return f"{self.column} {self.op.replace('_', ' ')} {list(self.arg)}"
        return f"{self.column} {self.op} {self.arg!r}"


@dataclass(frozen=True)
class DropRule:
    condition: Condition
    reason: str


@dataclass(frozen=True)
class ColumnSpec:
    """How one output column is made from a source's raw rows."""

    name: str
    type: ColumnType
    column: str | None = None
    value: Any = None
    cases: tuple[tuple[Condition, Any], ...] = ()
    default: Any = None  # with cases: the value where no case holds
    timestamp: TimestampSpec | None = None
    scale: float = 1.0
    times: str | None = None
    abs: bool = False
    negate_when: Condition | None = None
    map: dict[str, Any] | None = None
    unmapped: str = "error"
    trim: bool = False  # id and text columns: surrounding spaces dropped
    lower: bool = False  # id and text columns: letter case ignored (emails as customer ids)
    # id columns: 13085.0 (a float column saved as text by pandas or Excel) read as 13085;
    # any other fraction is refused
    whole: bool = False
    # id columns: ids of digits shorter than this many, left-padded with zeros (a billing
    # system or a spreadsheet that stored them as numbers wrote 91943 for 0091943)
    zero_pad: int | None = None
    decimal: str = "."  # number text: 1.234,56 is decimal = ",", thousands = "."
    thousands: str | None = None
    # Only on the rows where this holds does the column have a value; missing elsewhere (a
    # cancellation date taken from the one event that says so, in a log of every event).
    when: Condition | None = None
    # timestamp columns: the row totals the day, week or month that starts at the time; it is
    # stamped at the period's last second (ACTIVITY_PERIODS)
    covers: str | None = None

    def raw_columns(self) -> list[str]:
        """The raw columns this output column reads."""
        cols = [self.column] if self.column else []
        cols += [c.column for c, _ in self.cases]
        if self.times:
            cols.append(self.times)
        if self.negate_when:
            cols.append(self.negate_when.column)
        if self.when:
            cols.append(self.when.column)
        return cols


@dataclass(frozen=True)
class Aggregate:
    """Rows grouped by output columns; every other output column reduced by a function."""

    by: tuple[str, ...]
    functions: dict[str, str]


@dataclass(frozen=True)
class SourceMapping:
    table: str
    label: str
    source: SourceSpec
    columns: tuple[ColumnSpec, ...]
    drop: tuple[DropRule, ...] = ()
    aggregate: Aggregate | None = None
    sort: tuple[str, ...] = ()
    unknown_customers: str = "error"  # or "drop": rows of customers not in customers
    # Rows repeating a row of an earlier file of this source, or of another source of the
    # table that reads the same raw columns (overlapping exports): "drop" (counted) or "keep".
    repeats: str = "drop"

    def raw_columns(self) -> list[str]:
        cols = [r.condition.column for r in self.drop]
        for spec in self.columns:
            cols += spec.raw_columns()
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file: sources per table, and the settings for the output's config.toml."""

    path: str
    tables: dict[str, tuple[SourceMapping, ...]]
    features: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    scoring: dict[str, Any] = field(default_factory=dict)  # currency, alerts (serving.config)

    def customer_attributes(self) -> list[str]:
        return list(self.features.get("customer_attributes", []) or [])


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file (TOML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file '{path}' does not exist")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"mapping {path}: not valid TOML: {err}") from None
    return parse_mapping(raw, str(path))


def parse_mapping(raw: dict[str, Any], path: str = "<mapping>") -> Mapping:
    """Check a mapping given as a dict (the parsed TOML) and build it."""
    where = f"mapping {path}"
    _no_unknown(raw, TOP_KEYS, where)
    meta = raw.get("mapping", {})
    _need(isinstance(meta, dict), f"{where}: [mapping] must be a table")
    _no_unknown(meta, MAPPING_KEYS, f"{where} [mapping]")
    features = _parse_features(raw.get("features", {}), where)
    training = _parse_training(raw.get("training", {}), where)
    scoring = _parse_scoring(raw.get("scoring", {}), where)
    tables: dict[str, tuple[SourceMapping, ...]] = {}
    for table in TABLES:
        if table not in raw:
            continue
        entries = raw[table]
        if isinstance(entries, dict):
            entries = [entries]
        _need(
            isinstance(entries, list) and all(isinstance(e, dict) for e in entries),
            f"{where}: [{table}] must be a table, or [[{table}]] tables for several sources",
        )
        tables[table] = tuple(
            _parse_source(table, i, entry, where, len(entries)) for i, entry in enumerate(entries)
        )
    _need("customers" in tables, f"{where}: the contract needs a [customers] table; none is mapped")
    # A billing-only export (a telecom's, a gym's) has no product events: contractual churn is
    # learnt from the customers and their payments, and the activity table is written empty.
    # Churn read from activity cannot be.
    mode = features.get("churn", {}).get("mode", ChurnDefinition.mode)
    _need(
        "activity" in tables or mode == "contractual",
        f"{where}: non-contractual churn is read from the customers' activity: map an [activity] "
        'table, or set [features.churn] mode = "contractual" with churned_at in [customers]',
    )
    description = str(meta.get("description", ""))
    mapping = Mapping(path, tables, features, training, description, scoring)
    _check_attributes(mapping, where)
    return mapping


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise MappingError(message)


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise MappingError(
            f"{where}: unknown key {unknown[0]!r}"
            + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
            + f"; known keys: {sorted(known)}"
        )


def _parse_source(
    table: str, index: int, raw: dict[str, Any], where: str, count: int
) -> SourceMapping:
    here = f"{where} [{table}]" + (f" source {index + 1}" if count > 1 else "")
    _no_unknown(raw, SOURCE_KEYS, here)
    _need("source" in raw, f"{here}: 'source' is missing (a file or glob, or {{ url, query }})")
    source = _parse_source_spec(raw["source"], here)
    label = str(raw.get("name") or source.describe())
    here = f"{where} [{table}] source '{label}'"
    columns_raw = raw.get("columns")
    _need(isinstance(columns_raw, dict) and columns_raw, f"{here}: 'columns' is missing or empty")
    columns = tuple(_parse_column(table, name, spec, here) for name, spec in columns_raw.items())
    names = [c.name for c in columns]
    missing = [c for c in REQUIRED_COLUMNS[table] if c not in names]
    _need(not missing, f"{here}: required column {missing[:1]} of '{table}' is not mapped")
    drops = tuple(_parse_drop(rule, here) for rule in _as_list(raw.get("drop", []), here, "drop"))
    aggregate = _parse_aggregate(raw.get("aggregate"), names, here)
    sort = tuple(_as_list(raw.get("sort", []), here, "sort"))
    for col in sort:
        _need(col in names, f"{here}: sort column {col!r} is not an output column {names}")
    unknown = raw.get("unknown_customers", "error")
    _need(
        unknown in ("error", "drop") and (table != "customers" or unknown == "error"),
        f"{here}: unknown_customers must be 'error' or 'drop' (activity, feedback, revenue)",
    )
    repeats = raw.get("repeats", "drop")
    _need(repeats in ("drop", "keep"), f"{here}: repeats must be 'drop' or 'keep'")
    return SourceMapping(table, label, source, columns, drops, aggregate, sort, unknown, repeats)


def _as_list(value: Any, where: str, key: str) -> list[Any]:
    _need(isinstance(value, list), f"{where}: '{key}' must be a list")
    return value


def _line_encoding(encoding: Any) -> bool:
    """A text encoding Python knows that writes a line end as the byte b"\\n" (the CSV reader
    cuts blocks at those bytes: UTF-16 is out)."""
    import codecs

    try:
        codecs.lookup(str(encoding))
        return "a\n".encode(str(encoding)) == b"a\n"
    except (LookupError, UnicodeError):
        return False


def _parse_source_spec(raw: Any, where: str) -> SourceSpec:
    if isinstance(raw, str):
        return SourceSpec(path=raw)
    _need(isinstance(raw, dict), f"{where}: 'source' must be a path or a table")
    _no_unknown(raw, SOURCE_TABLE_KEYS, f"{where} source")
    header = raw.get("header")
    if header is not None:
        _need(
            isinstance(header, list)
            and header
            and all(isinstance(h, str) and h.strip() for h in header),
            f"{where}: 'header' is the column names of a CSV without a header line, a list of "
            f'texts (header = ["customer_id", "date", "amount"]), got {header!r}',
        )
        raw = {**raw, "header": tuple(header)}
    spec = SourceSpec(**raw)
    if spec.path is not None:
        _need(
            spec.url is None and spec.url_env is None and spec.query is None,
            f"{where}: a source is a file (path) or a query (url, query), not both",
        )
        _need(
            spec.format in (None, *FILE_FORMATS),
            f"{where}: format must be one of {FILE_FORMATS}, got {spec.format!r}",
        )
        _need(
            _line_encoding(spec.encoding),
            f"{where}: unknown or unsupported encoding "
            f"{spec.encoding!r} (e.g. 'utf-8', 'cp1252', 'latin-1')",
        )
        excel = spec.format == "xlsx" or (spec.format is None and spec.path.endswith(".xlsx"))
        _need(spec.sheet is None or excel, f"{where}: 'sheet' is for Excel workbooks (.xlsx)")
        _need(
            spec.header is None or declared_format(spec) == "csv",
            f"{where}: 'header' is for CSV files (a file named .csv, .tsv or .txt, or "
            'format = "csv")',
        )
        return spec
    _need(spec.header is None, f"{where}: 'header' is for CSV files, not a SQL source")
    _need(
        (spec.url is None) != (spec.url_env is None),
        f"{where}: a SQL source needs url or url_env (one of them)",
    )
    _need(bool(spec.query), f"{where}: a SQL source needs a query")
    return spec


def _parse_condition(raw: Any, where: str) -> Condition:
    _need(isinstance(raw, dict), f"{where}: a condition is a table {{ column = ..., in = [...] }}")
    _no_unknown(raw, {"column", *CONDITION_OPS}, where)
    _need("column" in raw, f"{where}: a condition needs 'column'")
    ops = [k for k in CONDITION_OPS if k in raw]
    _need(len(ops) == 1, f"{where}: a condition needs exactly one of {list(CONDITION_OPS)}")
    op, arg = ops[0], raw[ops[0]]
    if op in ("in", "not_in"):
        _need(isinstance(arg, list), f"{where}: '{op}' takes a list of values")
        arg = tuple(str(v) for v in arg)
    elif op == "matches":
        try:
            re.compile(arg)
        except (re.error, TypeError) as err:
            raise MappingError(f"{where}: 'matches' is not a regular expression: {err}") from None
    elif op in ("below", "above"):
        _need(isinstance(arg, int | float) and not isinstance(arg, bool), f"{where}: number")
    elif op == "missing":
        _need(isinstance(arg, bool), f"{where}: 'missing' is true or false")
    else:
        arg = str(arg)
    return Condition(str(raw["column"]), op, arg)


def _parse_drop(raw: Any, where: str) -> DropRule:
    _need(isinstance(raw, dict), f"{where}: each 'drop' rule is a table")
    rest = {k: v for k, v in raw.items() if k != "reason"}
    condition = _parse_condition(rest, f"{where} drop rule")
    return DropRule(condition, str(raw.get("reason") or condition.describe()))


def default_type(table: str, name: str, raw: dict[str, Any]) -> ColumnType:
    """The type a column has unless declared: the contract's for its own columns; a timestamp
    or a number when timestamp or number options are given; text with trim or lower (a plan
    column written "Pro " and "pro"); else the value as it comes."""
    if name in ID_COLUMNS.get(table, ("customer_id",)):
        return "id"
    if name in TIMESTAMP_COLUMNS.get(table, ()):
        return "timestamp"
    if name in NUMBER_COLUMNS.get(table, ()):
        return "number"
    if name in TEXT_COLUMNS:
        return "text"
    if any(k in raw for k in TIMESTAMP_KEYS):
        return "timestamp"
    if any(k in raw for k in NUMBER_KEYS):
        return "number"
    if raw.get("trim") or raw.get("lower"):  # declared text treatment: text
        return "text"
    return "as_is"


def _parse_column(table: str, name: str, raw: Any, where: str) -> ColumnSpec:
    here = f"{where} column '{name}'"
    if isinstance(raw, str):
        raw = {"column": raw}
    _need(isinstance(raw, dict), f"{here}: give a raw column name or a table of options")
    _no_unknown(raw, COLUMN_KEYS, here)
    kinds = [k for k in ("column", "value", "cases") if k in raw]
    _need(len(kinds) == 1, f"{here}: needs exactly one of 'column', 'value' or 'cases'")
    _need("default" not in raw or "cases" in raw, f"{here}: 'default' goes with 'cases'")
    ctype = raw.get("type", default_type(table, name, raw))
    _need(ctype in COLUMN_TYPES, f"{here}: type must be one of {COLUMN_TYPES}, got {ctype!r}")
    contract_type = default_type(table, name, {})
    _need(
        contract_type == "as_is" or ctype == contract_type,
        f"{here}: the contract's '{name}' is of type {contract_type}, not {ctype}",
    )
    ts_keys = [k for k in TIMESTAMP_KEYS if k in raw]
    _need(not ts_keys or ctype == "timestamp", f"{here}: {ts_keys} are for timestamp columns")
    num_keys = [k for k in NUMBER_KEYS if k in raw]
    _need(not num_keys or ctype == "number", f"{here}: {num_keys} are for number columns")
    timestamp = None
    if ctype == "timestamp":
        unit = raw.get("unit")
        _need(unit in (None, *EPOCH_UNITS), f"{here}: unit must be one of {EPOCH_UNITS}")
        _need(
            not (raw.get("format") and unit),
            f"{here}: declare a text format or an epoch unit, not both",
        )
        dayfirst = raw.get("dayfirst")
        _need(dayfirst in (None, True, False), f"{here}: dayfirst is true or false")
        timezone = raw.get("timezone")
        if timezone is not None:
            _check_zone(timezone, here)
        dst = raw.get("dst")
        _need(dst in DST_POLICIES, f"{here}: dst is one of {DST_POLICIES[1:]}")
        _need(dst is None or timezone is not None, f"{here}: 'dst' goes with 'timezone'")
        timestamp = TimestampSpec(raw.get("format"), unit, dayfirst, timezone, dst)
    cases: tuple[tuple[Condition, Any], ...] = ()
    if "cases" in raw:
        entries = _as_list(raw["cases"], here, "cases")
        _need(
            bool(entries),
            f"{here}: 'cases' is empty; a column with one value for every row is {{ value = ... }}",
        )
        parsed = []
        for i, case in enumerate(entries):
            ok = isinstance(case, dict) and set(case) == {"when", "value"}
            _need(ok, f"{here}: case {i + 1} must be {{ when = {{...}}, value = ... }}")
            parsed.append((_parse_condition(case["when"], f"{here} case {i + 1}"), case["value"]))
        cases = tuple(parsed)
    value_map = raw.get("map")
    if value_map is not None:
        _need(isinstance(value_map, dict) and value_map, f"{here}: 'map' is a table of values")
        _need("column" in raw, f"{here}: 'map' applies to a raw 'column'")
    unmapped = raw.get("unmapped", "error")
    _need(unmapped in UNMAPPED, f"{here}: unmapped must be one of {UNMAPPED}")
    _need("unmapped" not in raw or value_map is not None, f"{here}: 'unmapped' goes with 'map'")
    scale = raw.get("scale", 1.0)
    _need(isinstance(scale, int | float) and scale > 0, f"{here}: scale is a positive number")
    decimal, thousands = raw.get("decimal", "."), raw.get("thousands")
    _need(decimal in DECIMAL_MARKS, f"{here}: decimal is one of {DECIMAL_MARKS}")
    _need(
        thousands is None or (thousands in THOUSANDS_MARKS and thousands != decimal),
        f"{here}: thousands is one of {THOUSANDS_MARKS}, not the decimal mark {decimal!r}",
    )
    trim = raw.get("trim", False)
    _need(trim in (True, False), f"{here}: trim is true or false")
    _need(
        not trim or ctype in ("id", "text"),
        f"{here}: 'trim' is for id and text columns (type = \"text\")",
    )
    lower = raw.get("lower", False)
    _need(lower in (True, False), f"{here}: lower is true or false")
    _need(
        not lower or ctype in ("id", "text"),
        f"{here}: 'lower' is for id and text columns (type = \"text\")",
    )
    whole = raw.get("whole", False)
    _need(whole in (True, False), f"{here}: whole is true or false")
    _need(not whole or ctype == "id", f"{here}: 'whole' is for id columns")
    zero_pad = raw.get("zero_pad")
    _need(
        zero_pad is None or (isinstance(zero_pad, int) and not isinstance(zero_pad, bool)
                             and 1 <= zero_pad <= 64),
        f"{here}: zero_pad is the number of digits of an id (1 to 64), got {zero_pad!r}",
    )  # fmt: skip
    _need(zero_pad is None or ctype == "id", f"{here}: 'zero_pad' is for id columns")
    covers = raw.get("covers")
    _need(covers in (None, *ACTIVITY_PERIODS), f"{here}: covers is one of {ACTIVITY_PERIODS}")
    negate = raw.get("negate_when")
    when = raw.get("when")
    return ColumnSpec(
        name=name,
        type=ctype,
        column=raw.get("column"),
        value=raw.get("value"),
        cases=cases,
        default=raw.get("default"),
        timestamp=timestamp,
        scale=float(scale),
        times=raw.get("times"),
        abs=bool(raw.get("abs", False)),
        negate_when=_parse_condition(negate, f"{here} negate_when") if negate else None,
        map={str(k): v for k, v in value_map.items()} if value_map else None,
        unmapped=unmapped,
        decimal=decimal,
        thousands=thousands,
        trim=bool(trim),
        lower=bool(lower),
        whole=bool(whole),
        zero_pad=zero_pad,
        when=_parse_condition(when, f"{here} when") if when is not None else None,
        covers=covers,
    )


def _check_zone(zone: str, where: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"{where}: unknown time zone {zone!r} (e.g. 'Europe/Berlin')") from None


def _parse_aggregate(raw: Any, names: list[str], where: str) -> Aggregate | None:
    if raw is None:
        return None
    here = f"{where} aggregate"
    _need(isinstance(raw, dict) and "by" in raw, f"{here}: needs 'by' (a list of output columns)")
    by = tuple(_as_list(raw["by"], here, "by"))
    functions = {k: v for k, v in raw.items() if k != "by"}
    for col in [*by, *functions]:
        _need(col in names, f"{here}: {col!r} is not an output column {names}")
    for col, fn in functions.items():
        _need(fn in AGGREGATIONS, f"{here}: {col} = {fn!r}; functions: {AGGREGATIONS}")
    rest = [c for c in names if c not in by and c not in functions]
    if rest:
        raise MappingError(f"{here}: output column {rest[0]!r} needs a function (or goes in 'by')")
    return Aggregate(by, functions)


def _parse_features(raw: Any, where: str) -> dict[str, Any]:
    """The [features] section as written to config.toml; checked with FeatureConfig."""
    _need(isinstance(raw, dict), f"{where}: [features] must be a table")
    _no_unknown(raw, set(FeatureConfig.__dataclass_fields__), f"{where} [features]")
    churn = raw.get("churn", {})
    _need(isinstance(churn, dict), f"{where}: [features.churn] must be a table")
    _no_unknown(churn, set(ChurnDefinition.__dataclass_fields__), f"{where} [features.churn]")
    try:
        FeatureConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise MappingError(f"{where} [features]: {err}") from None
    attrs = raw.get("customer_attributes", [])
    _need(
        isinstance(attrs, list) and all(isinstance(a, str) for a in attrs),
        f"{where} [features] customer_attributes: a list of customer column names",
    )
    return dict(raw)


def _parse_training(raw: Any, where: str) -> dict[str, Any]:
    from training.config import TrainConfig

    _need(isinstance(raw, dict), f"{where}: [training] must be a table")
    _no_unknown(raw, set(TrainConfig.__dataclass_fields__), f"{where} [training]")
    return dict(raw)


def _parse_scoring(raw: Any, where: str) -> dict[str, Any]:
    """The weekly job's [scoring] settings (serving.config.ScoringConfig), checked here so a
    bad currency or alert setting fails the import, not the first scoring run."""
    from serving.config import ScoringConfig

    _need(isinstance(raw, dict), f"{where}: [scoring] must be a table")
    try:
        ScoringConfig.from_dict(dict(raw))
    except (TypeError, ValueError) as err:
        raise MappingError(f"{where}: {err}") from None
    return dict(raw)


def _check_attributes(mapping: Mapping, where: str) -> None:
    """Declared customer attributes must be customer columns, never the label's own date."""
    names = {c.name for s in mapping.tables["customers"] for c in s.columns}
    for attr in mapping.customer_attributes():
        _need(
            attr in names,
            f"{where} [features] customer_attributes: {attr!r} is not a column of the "
            f"customers table (mapped: {sorted(names)})",
        )
        _need(
            attr not in RESERVED_CUSTOMER_COLUMNS,
            f"{where} [features] customer_attributes: {attr!r} cannot be a model feature",
        )


def label_like_attributes(mapping: Mapping) -> list[str]:
    """Declared attributes whose names look like the label (status, cancel, end dates):
    the report warns about them, since an export-day snapshot holds the future."""
    attributes = mapping.customer_attributes()
    if not attributes:
        return []
    from features.check import label_like_name  # here: it imports scikit-learn (seconds)

    return [a for a in attributes if label_like_name(a)]
