"""Strict parsing of the contract's typed columns: timestamps, numbers and ids.

Types are declared, never guessed row by row. A timestamp column is a Parquet timestamp or ISO
8601 text, unless a TimestampSpec declares how to read it (a strptime format, an epoch unit,
day-first, the zone of naive times). Whatever cannot be read that way is reported as a
:class:`Problem` (how many rows, a few examples, a hint), never coerced to NaT or 1970.
Times come out as naive UTC ``datetime64[ns]``. The contract (features.contract) reads data
folders with no declaration; the import mappings (ingest/) pass the declarations of a mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EpochUnit = Literal["s", "ms", "us", "ns"]
EPOCH_UNITS = ("s", "ms", "us", "ns")
EARLIEST = pd.Timestamp("1900-01-01")  # before this, a timestamp is a unit or parsing mistake
FUTURE_SLACK = pd.Timedelta(days=2)  # exports stamped in a zone ahead of UTC, clocks a bit off
# How far ahead a time that may lie in the future (a paid period's end, a cancellation
# scheduled at a term's end, a contract's end) may reach: further is a placeholder for "no
# end" (9999-12-31, 2099-12-31) or epoch numbers in the wrong unit.
FUTURE_REACH = pd.Timedelta(days=3653)
MAX_EXAMPLES = 3


DST_POLICIES = (None, "earlier", "later")


@dataclass(frozen=True)
class TimestampSpec:
    """How to read one timestamp column, as an import mapping declares it.

    format: a strptime format for text (``"%d/%m/%Y %H:%M"``); unit: numbers are epoch
    seconds/milliseconds/...; dayfirst: text like 03/02/2024 is day-first (True) or month-first
    (False), when no format is given; timezone: the zone of naive times (default UTC)."""

    format: str | None = None
    unit: EpochUnit | None = None
    dayfirst: bool | None = None
    timezone: str | None = None
    # Local times at a daylight-saving change: None refuses them (named rows); "earlier" reads
    # an ambiguous time (it happened twice) as the first instant and one in the spring gap as
    # the last instant before it; "later" the second instant and the first after the gap.
    dst: str | None = None

    def __post_init__(self) -> None:
        if self.dst not in DST_POLICIES:
            raise ValueError(f"dst must be one of {DST_POLICIES[1:]}, got {self.dst!r}")
        if self.unit is not None and self.unit not in EPOCH_UNITS:
            raise ValueError(f"epoch unit must be one of {EPOCH_UNITS}, got {self.unit!r}")
        if self.format is not None and self.unit is not None:
            raise ValueError("declare either a text format or an epoch unit, not both")


@dataclass
class Problem:
    """One thing wrong with one column: how many rows, a few example row positions, a hint."""

    column: str | None
    problem: str
    rows: int = 0
    examples: list[int] = field(default_factory=list)  # row positions in the frame
    hint: str | None = None


def problem_at(column: str | None, problem: str, mask: np.ndarray, hint: str | None = None):
    """A Problem for the rows where mask is True (their count and the first few positions)."""
    positions = np.flatnonzero(mask)
    return Problem(column, problem, len(positions), positions[:MAX_EXAMPLES].tolist(), hint)


# A zone after a time of day (a date alone, 2024-03-15, ends in "-15" but has no zone).
ZONE_SUFFIX = re.compile(
    r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)
# A time followed by something like an offset that ZONE_SUFFIX cannot read ("+518:00", which
# git wrote for a commit): worded as such, not as a value without a zone.
ODD_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*[+-]\d+(?::?\d+)?$")
ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")
SLASHED_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})\b")
NUMBER_TEXT = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def is_text(values: pd.Series) -> bool:
    """A column of text (object columns holding anything but str count as text too: the
    parsing then reports the values that are not)."""
    return pd.api.types.is_string_dtype(values.dtype) or pd.api.types.is_object_dtype(values.dtype)


def parse_timestamps(
    values: pd.Series,
    column: str,
    spec: TimestampSpec | None = None,
    *,
    now: object = None,
    future: bool = False,
) -> tuple[pd.Series, list[Problem]]:
    """The column as naive UTC datetime64[ns], and the problems that stop it from being one.

    Missing values stay missing (NaT); every present value that cannot be read under the
    declaration is a problem, so is a time before 1900 or after now (plus two days): an event
    cannot have happened yet. With `future`, a column whose times may lie ahead (a paid
    period's end, a scheduled cancellation, a contract's end: a live export's subscriptions
    are paid into next month) may reach FUTURE_REACH past now."""
    spec = spec or TimestampSpec()
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.cat.categories.dtype)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed, problems = _from_datetimes(values, column, spec)
    elif pd.api.types.is_bool_dtype(values.dtype):
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        problems = [problem_at(column, "true/false values are not timestamps", values.notna())]
    elif pd.api.types.is_numeric_dtype(values.dtype):
        parsed, problems = _from_numbers(values, column, spec)
    elif is_text(values):
        parsed, problems = _from_text(values, column, spec)
    else:
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        problems = [
            problem_at(column, f"a {values.dtype} column cannot hold timestamps", values.notna())
        ]
    if not problems:
        problems = _check_range(parsed, column, now, future)
    if problems:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]"), problems
    return parsed.astype("datetime64[ns]"), []


def _as_utc_naive(parsed: pd.Series, timezone: str | None, dst: str | None = None) -> pd.Series:
    if getattr(parsed.dt, "tz", None) is None and timezone:
        if dst is None:
            parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        else:  # declared: True marks the daylight-saving (first) reading of an ambiguous time
            first = np.full(len(parsed), dst == "earlier")
            # a time in the spring gap is read an hour either way too: 02:47 on the night the
            # clocks go forward is 01:47 (earlier) or 03:47 (later) local time, not the
            # gap's edge (shift_backward had stored 00:59:59.999999 UTC)
            gap = pd.Timedelta(hours=-1 if dst == "earlier" else 1)
            parsed = parsed.dt.tz_localize(timezone, ambiguous=first, nonexistent=gap)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _from_datetimes(
    values: pd.Series, column: str, spec: TimestampSpec
) -> tuple[pd.Series, list[Problem]]:
    parsed = _as_utc_naive(values, spec.timezone, spec.dst)
    lost = values.notna().to_numpy() & parsed.isna().to_numpy()
    if lost.any():
        return parsed, [_zone_gap_problem(column, spec, lost)]
    return parsed, []


def _zone_gap_problem(column: str, spec: TimestampSpec, lost: np.ndarray) -> Problem:
    return problem_at(
        column,
        f"local times that do not exist or are ambiguous in {spec.timezone} "
        "(a daylight-saving change)",
        lost,
        'export the times in UTC or with their offset, or declare dst = "earlier" or "later" '
        "(which reading of such a time to take; an hour either way)",
    )


def _from_numbers(
    values: pd.Series, column: str, spec: TimestampSpec
) -> tuple[pd.Series, list[Problem]]:
    empty = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    present = values.notna().to_numpy()
    if spec.unit is None:
        return empty, [
            problem_at(
                column,
                "numbers in a timestamp column, and no epoch unit is declared",
                present,
                _unit_hint(values),
            )
        ]
    x = values.to_numpy(dtype="float64", na_value=np.nan)
    bad = present & ~np.isfinite(x)
    if bad.any():
        return empty, [problem_at(column, "infinite numbers are not timestamps", bad)]
    parsed = pd.to_datetime(values, unit=spec.unit, utc=True, errors="coerce")
    lost = present & parsed.isna().to_numpy()
    if lost.any():
        return empty, [problem_at(column, f"numbers out of range as epoch {spec.unit}", lost)]
    parsed = parsed.dt.tz_localize(None)
    hint = _unit_hint(values)
    if f'unit = "{spec.unit}"' not in hint and 'declare unit = "' in hint:
        # milliseconds declared as seconds read as times in the future: say the unit, not
        # "a typing mistake or a placeholder"
        problems = _check_range(parsed, column, None)
        if problems:
            return empty, [replace(p, hint=hint) for p in problems]
    return parsed, []


def _unit_hint(values: pd.Series) -> str:
    """Which epoch unit the magnitude of the numbers suggests (today is about 1.7e9 seconds)."""
    magnitude = float(np.nanmedian(np.abs(values.to_numpy(dtype="float64", na_value=np.nan))))
    for unit, scale in (("s", 1), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)):
        if 3e8 * scale <= magnitude <= 5e9 * scale:
            return f'they look like unix {unit_name(unit)}: declare unit = "{unit}"'
    return 'declare the epoch unit (unit = "s" or "ms") in the import mapping'


def unit_name(unit: str) -> str:
    return {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}[unit]


def _from_text(
    values: pd.Series, column: str, spec: TimestampSpec
) -> tuple[pd.Series, list[Problem]]:
    fast = _iso_with_arrow(values, spec)
    if fast is not None:
        return fast, []
    empty = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    present = values.notna().to_numpy().copy()
    if not isinstance(values.dtype, pd.StringDtype):  # objects: each value must be a str
        is_str = values.map(lambda v: isinstance(v, str), na_action="ignore")
        not_text = present & ~is_str.fillna(True).astype(bool).to_numpy()
    else:
        not_text = np.zeros(len(values), dtype=bool)
    if not_text.any():
        return empty, [problem_at(column, "values that are neither text nor timestamps", not_text)]
    text = values.astype("str").str.strip().where(values.notna())
    blank = present & (text == "").to_numpy(dtype=bool)
    if blank.any():  # an empty string is a missing value in a CSV, never a time
        text = text.mask(pd.Series(blank, index=text.index))
        present &= ~blank
    if not present.any():
        return empty, []
    if spec.format is not None:
        parsed = pd.to_datetime(text, format=spec.format, errors="coerce", utc=False)
        return _text_result(text, parsed, present, column, spec, f"the format {spec.format!r}")
    if spec.unit is not None:
        not_number = present & ~_matches(text, NUMBER_TEXT.pattern, present)
        if not_number.any():
            return empty, [
                problem_at(column, f"text that is not an epoch number ({spec.unit})", not_number)
            ]
        return _from_numbers(pd.to_numeric(text), column, spec)
    not_iso = present & ~_matches(text, ISO_START.pattern, present, full=False)
    if not not_iso.any():
        return _from_iso(text, present, column, spec)
    if spec.dayfirst is None:
        return empty, [_non_iso_problem(text, not_iso, column)]
    # Day-first or month-first declared: pandas infers one format from the first value and
    # applies it to every row (no per-row guessing); rows in another format fail below.
    parsed = pd.to_datetime(text, dayfirst=spec.dayfirst, errors="coerce")
    order = "day-first" if spec.dayfirst else "month-first"
    first = text[present].iloc[0]
    hint = (
        f"the format is taken from the first value ({first!r}) and every row must be written "
        'the same way (with or without a time); declare format = "..." for the form most '
        "rows have"
    )
    return _text_result(text, parsed, present, column, spec, f"one {order} format", hint)


def _matches(
    text: pd.Series, pattern: str, rows: np.ndarray, *, full: bool = True, ignore_case: bool = False
) -> np.ndarray:
    """Per row: in `rows` and its text matches the pattern (whole text, or searched), with
    Arrow's vectorised regular expressions (RE2) instead of Python's re row by row."""
    found = np.zeros(len(text), dtype=bool)
    idx = np.flatnonzero(rows)
    if not len(idx):
        return found
    whole = len(idx) == len(text)
    values = arrow_text(text if whole else text.iloc[idx])
    regex = f"^(?:{pattern})$" if full else pattern
    hit = pc.match_substring_regex(values, regex, ignore_case=ignore_case)
    hit = hit.fill_null(False).to_numpy(zero_copy_only=False)
    if whole:
        return np.asarray(hit, dtype=bool) & rows
    found[idx] = hit
    return found


def arrow_text(text: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A column of text as an Arrow string array: without a copy when pandas already keeps it
    in Arrow (the str dtype), else converted (values that are not str become their str())."""
    if isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow":
        return pa.array(text)
    return pa.array(text.astype("str").to_numpy(dtype=object), type=pa.string())


def _iso_with_arrow(values: pd.Series, spec: TimestampSpec) -> pd.Series | None:
    """ISO 8601 text held in Arrow, parsed by Arrow's strict ISO 8601 cast; None when this
    fast path does not apply or any value fails it, and the pandas path below then decides
    (and words the problem). One cast checks everything the pandas path checks: Arrow reads
    only ISO 8601 (YYYY-MM-DD, then optionally a time), refuses a value without a zone when
    the type has one and a value with a zone when it has none (so zoned and naive never mix),
    and refuses impossible dates and surrounding blanks (which the pandas path strips)."""
    if spec.format is not None or spec.unit is not None:
        return None
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return None
    first = values.first_valid_index()
    if first is None:
        return None
    zoned = ZONE_SUFFIX.search(str(values[first])) is not None
    if zoned and spec.timezone:
        return None  # an error: the pandas path words it
    try:
        parsed = pc.cast(
            pa.array(values), pa.timestamp("ns", tz="UTC") if zoned else pa.timestamp("ns")
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    naive = parsed.cast(pa.timestamp("ns"))  # UTC instants, zone dropped
    if isinstance(naive, pa.ChunkedArray):
        naive = naive.combine_chunks()
    result = pd.Series(
        naive.to_numpy(zero_copy_only=False), index=values.index, dtype="datetime64[ns]"
    )
    if spec.timezone:
        result = _as_utc_naive(result, spec.timezone, spec.dst)
        if (result.isna().to_numpy() & values.notna().to_numpy()).any():
            return None  # a daylight-saving gap: the pandas path names the rows
    return result


def _from_iso(
    text: pd.Series, present: np.ndarray, column: str, spec: TimestampSpec
) -> tuple[pd.Series, list[Problem]]:
    empty = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    zoned = _matches(text, ZONE_SUFFIX.pattern, present, full=False, ignore_case=True)
    naive = present & ~zoned
    odd = naive & _matches(text, ODD_OFFSET.pattern, present, full=False)
    if odd.any():
        return empty, [
            problem_at(
                column,
                f"has a time-zone offset that cannot be read ({int(odd.sum()):,} "
                f"row{'' if odd.sum() == 1 else 's'}): an offset is +HH:MM, +HHMM or +HH",
                odd,
                "fix or leave out those rows in the source (or a drop rule in the import "
                "mapping: { column = ..., matches = ..., reason = ... }, which counts them)",
            )
        ]
    if zoned.any() and naive.any():
        few, many = (zoned, naive) if zoned.sum() < naive.sum() else (naive, zoned)
        return empty, [
            problem_at(
                column,
                f"mixes times with a time zone ({int(zoned.sum())}) and without "
                f"({int(naive.sum())}); the rows of the smaller group are counted",
                few if few.any() else many,
                "export every time in one form (UTC with Z, or all without a zone and "
                "declare the zone in the import mapping)",
            )
        ]
    if zoned.any() and spec.timezone:
        return empty, [
            problem_at(
                column,
                f"the times carry their own zone, yet timezone {spec.timezone!r} is declared",
                zoned,
                "remove the timezone declaration",
            )
        ]
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(zoned.any()))
    return _text_result(text, parsed, present, column, spec, "ISO 8601")


def _text_result(
    text: pd.Series,
    parsed: pd.Series,
    present: np.ndarray,
    column: str,
    spec: TimestampSpec,
    how: str,
    hint: str | None = None,
) -> tuple[pd.Series, list[Problem]]:
    empty = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    bad = present & parsed.isna().to_numpy()
    if bad.any():
        return empty, [problem_at(column, f"text that cannot be read as {how}", bad, hint)]
    if parsed.dtype == object:  # several offsets without utc=True: pandas keeps objects
        parsed = pd.to_datetime(parsed, utc=True)
    result = _as_utc_naive(parsed, spec.timezone, spec.dst)
    lost = present & result.isna().to_numpy()
    if lost.any():
        return empty, [_zone_gap_problem(column, spec, lost)]
    return result, []


def _non_iso_problem(text: pd.Series, rows: np.ndarray, column: str) -> Problem:
    """Text that is not ISO 8601: name the format to declare where the values tell it."""
    sample = text[rows]
    parts = sample.str.extract(SLASHED_DATE.pattern)
    hint = 'declare its format in the import mapping (format = "%d/%m/%Y", for example)'
    compact = sample.str.strip().str.fullmatch(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}")
    if len(sample) and compact.all():  # 19970101: CDNOW's log, many mainframe exports
        hint = 'the values read as year, month, day without separators: declare format = "%Y%m%d"'
    elif parts.notna().all(axis=None) and len(parts):
        first, second = parts[0].astype(int), parts[1].astype(int)
        if (first > 12).any() and not (second > 12).any():
            hint = "the days come first (a first number above 12): declare dayfirst = true"
        elif (second > 12).any() and not (first > 12).any():
            hint = "the months come first (a second number above 12): declare dayfirst = false"
        elif not (first > 12).any() and not (second > 12).any():
            hint = (
                "day-first or month-first cannot be told from the values: declare dayfirst = "
                "true or false (or a format) in the import mapping"
            )
        else:
            hint = "some rows are day-first and some month-first: export one format"
    return problem_at(
        column, "text that is not ISO 8601 (such as 2024-03-01T10:00:00Z)", rows, hint
    )


def _check_range(
    parsed: pd.Series, column: str, now: object, future: bool = False
) -> list[Problem]:
    present = parsed.notna().to_numpy()
    if not present.any():
        return []
    problems = []
    early = present & (parsed < EARLIEST).to_numpy()
    if early.any():
        problems.append(
            problem_at(
                column,
                f"times before {EARLIEST.year}",
                early,
                "epoch numbers read in the wrong unit, or a placeholder date",
            )
        )
    today = pd.Timestamp(now) if now is not None else pd.Timestamp.now()
    if future:
        latest = today + FUTURE_REACH
        years = round(FUTURE_REACH / pd.Timedelta(days=365.25))
        problem = f"times more than {years} years ahead"
        hint = "a placeholder for 'no end' (9999-12-31): map it to missing"
    else:
        latest = today + FUTURE_SLACK
        problem, hint = "times in the future", "a typing mistake or a placeholder"
    late = present & (parsed > latest).to_numpy()
    if late.any():
        problems.append(problem_at(column, problem, late, hint))
    return problems


DECIMAL_MARKS = (".", ",")
THOUSANDS_MARKS = (".", ",", " ", "'", "_")


def number_pattern(decimal: str = ".", thousands: str | None = None) -> str:
    """The regular expression a number written with these marks matches as a whole: digits
    grouped by three after the first group when `thousands` is given (1.234.567,89), a
    `decimal` mark and digits after it, a sign; with the dot, an exponent too."""
    d = re.escape(decimal)
    if thousands is None:
        whole = r"\d+"
    else:
        t = "[ \u00a0\u202f]" if thousands == " " else re.escape(thousands)
        whole = rf"\d{{1,3}}(?:{t}\d{{3}})+|\d+"
    exponent = r"(?:[eE][+-]?\d+)?" if decimal == "." else ""
    return rf"[+-]?(?:(?:{whole})(?:{d}\d*)?|{d}\d+){exponent}"


def parse_numbers(
    values: pd.Series,
    column: str,
    *,
    scale: float = 1.0,
    decimal: str = ".",
    thousands: str | None = None,
) -> tuple[pd.Series, list[Problem]]:
    """The column as float64 (multiplied by scale, e.g. 0.01 for cents), and its problems:
    text that is not a number, true/false, and infinite values are refused, not coerced.
    Text is read with the declared marks (decimal "," and thousands "." read 1.234,56 as
    1234.56); a value that does not follow them is refused, never read the other way."""
    empty = pd.Series(np.nan, index=values.index, dtype="float64")
    present = values.notna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        return empty, [problem_at(column, "true/false values where numbers belong", present)]
    if pd.api.types.is_numeric_dtype(values.dtype):
        x = values.astype("float64")
    elif is_text(values):
        text = values.astype("str").str.strip().where(values.notna())
        number = _matches(text, number_pattern(decimal, thousands), present)
        bad = present & ~number
        if bad.any():
            marks = f'decimal = "{decimal}"' + (
                f', thousands = "{thousands}"' if thousands is not None else ""
            )
            hint = (
                f"the column is declared with {marks}: write its numbers that way, without a "
                "currency sign"
                if (decimal, thousands) != (".", None)
                else "write numbers with a dot for decimals and no thousands separator or "
                'currency sign, or declare the marks: decimal = ",", thousands = "."'
            )
            # 2.093,97 under decimal = "," alone: the marks are right but one is undeclared.
            other = "." if decimal == "," else ","
            if thousands is None and decimal != ".":
                with_mark = _matches(text, number_pattern(decimal, other), bad)
                if with_mark[bad].all():
                    hint = f'these numbers have a thousands mark: declare thousands = "{other}" too'

            return empty, [problem_at(column, "text that is not a number", bad, hint)]
        if thousands is not None:
            gone = "[ \u00a0\u202f]" if thousands == " " else re.escape(thousands)
            text = text.str.replace(gone, "", regex=True)
        if decimal != ".":
            text = text.str.replace(decimal, ".", regex=False)
        x = pd.to_numeric(text).astype("float64")
    else:
        return empty, [problem_at(column, f"a {values.dtype} column cannot hold numbers", present)]
    infinite = present & np.isinf(x.to_numpy())
    if infinite.any():
        return empty, [problem_at(column, "infinite numbers", infinite)]
    return x * scale if scale != 1.0 else x, []


def parse_ids(
    values: pd.Series, column: str, optional: bool = False
) -> tuple[pd.Series, list[Problem]]:
    """Ids as text, exactly as written (leading zeros kept). Whole numbers from a typed source
    (Parquet int64) become their decimal text; fractions and other types are refused. A row
    without an id is refused unless the id is `optional` (activity.user_id: an event the
    system sent for the account, not a person)."""

    def empty() -> pd.Series:  # built only when refused: a batch of ids is the common case
        return pd.Series(pd.NA, index=values.index, dtype="str")

    present = values.notna().to_numpy()
    missing = ~present
    problems = []
    if missing.any() and not optional:
        problems.append(problem_at(column, "rows without an id", missing))
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("str").where(values.notna()), problems
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
        frac = present & (x != np.floor(x))
        if frac.any():
            return empty(), [
                *problems,
                problem_at(column, "ids must be text or whole numbers", frac),
            ]
        text = pd.Series(x, index=values.index).astype("Int64").astype("str")
        return text.where(values.notna()), problems
    if isinstance(values.dtype, pd.StringDtype):
        return values, problems
    if is_text(values):
        ok = values.map(lambda v: isinstance(v, str | int | np.integer), na_action="ignore")
        notstr = present & ~ok.fillna(True).astype(bool).to_numpy()
        if notstr.any():
            return empty(), [*problems, problem_at(column, "ids must be text", notstr)]
        return values.astype("str").where(values.notna()), problems
    return empty(), [
        *problems,
        problem_at(column, f"ids must be text, got {values.dtype}", present),
    ]
