"""Where an import mapping's rows come from: files (CSV, Parquet, JSON lines) and SQL queries.

Every source is read in batches of Arrow record batches, so an import holds one batch of raw
rows at a time beside its output. CSV files are read with every column as text (pyarrow's CSV
reader with declared string types): ids keep their leading zeros, and nothing is guessed per
row; the mapping then declares the types. Parquet, JSON lines, Excel sheets and SQL results
keep the types their source declares (a Parquet timestamp is a timestamp, a JSON string is
text); a JSON key or an Excel column whose values mix types is text.

PostgreSQL queries are streamed with ``COPY (query) TO STDOUT`` into the same CSV reader (the
fastest way out of the server, and the same all-text typing as files). Other SQLAlchemy URLs
are read through SQLAlchemy with a server-side cursor; ``duckdb:///path`` through DuckDB.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

BATCH_ROWS = 1_000_000  # rows per batch for Parquet and SQL; CSV batches follow BLOCK_BYTES
# CSV batches: ~350,000 rows of 3 short columns. 4 MiB blocks took twice the time (more
# batches, each hashing the customer ids) for ~20 MiB less peak memory.
BLOCK_BYTES = 16 << 20
FILE_FORMATS = ("csv", "parquet", "jsonl", "xlsx")
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".xlsx": "xlsx",
}


class SourceError(ValueError):
    """A source cannot be read (no such file, no URL, a failed query); names the source."""


@dataclass(frozen=True)
class SourceSpec:
    """One source of rows: a file or glob under the source folder, a SQL query on a database
    URL (or on the URL in an environment variable), or a frame handed over by name."""

    path: str | None = None
    format: str | None = None  # csv, parquet, jsonl, xlsx; None: from the file's suffix
    delimiter: str = ","
    encoding: str = "utf-8"  # a CSV's text encoding (cp1252: Excel on Windows)
    # A CSV without a header line (its first line is data): its column names, in order.
    header: tuple[str, ...] | None = None
    sheet: str | None = None  # an Excel workbook's sheet; None: its first
    url: str | None = None
    url_env: str | None = None
    query: str | None = None

    def describe(self) -> str:
        """Where the rows come from, safe to print: passwords in URLs are hidden."""
        if self.path is not None:
            return self.path
        where = f"${self.url_env}" if self.url_env else _hide_password(self.url or "")
        return f"{where}: {' '.join((self.query or '').split())[:120]}"


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        # unquoted: "duckdb:///:memory:" had read "duckdb:///%3Amemory%3A" in the report
        return unquote(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a URL SQLAlchemy understands: show only its scheme
        return url.split(":", 1)[0] + "://..."


def resolve_files(spec: SourceSpec, source_dir: Path) -> list[Path]:
    """The files a path or glob names under source_dir (sorted); an error when none match."""
    assert spec.path is not None
    pattern = Path(spec.path).expanduser()
    if not pattern.is_absolute():
        pattern = source_dir / pattern
    if any(ch in spec.path for ch in "*?["):
        anchor = Path(pattern.anchor)
        files = sorted(p for p in anchor.glob(str(pattern.relative_to(anchor))) if p.is_file())
    else:
        files = [pattern] if pattern.is_file() else []
    if not files:
        raise SourceError(f"no file matches '{spec.path}' under '{source_dir}'")
    return files


def declared_format(spec: SourceSpec) -> str | None:
    """A file source's format as the mapping declares it or its path's suffix names it; None
    when neither says (file_format then asks for a declaration)."""
    if spec.path is None:
        return None
    return spec.format or SUFFIX_FORMATS.get(Path(spec.path).suffix.lower())


def file_format(spec: SourceSpec, path: Path) -> str:
    """The declared format, else the one the file's suffix names."""
    if spec.format is not None:
        return spec.format
    found = SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        raise SourceError(
            f"cannot tell the format of '{path.name}' from its suffix: declare "
            f"format = one of {FILE_FORMATS}"
        )
    return found


def iter_part_batches(
    spec: SourceSpec, source_dir: Path, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """The source's rows as Arrow record batches, in source order, each with the part it came
    from: the file's path under source_dir (a glob reads several), or the query."""
    if spec.path is not None:
        for path in resolve_files(spec, source_dir):
            fmt = file_format(spec, path)
            name = (
                str(path.relative_to(source_dir)) if path.is_relative_to(source_dir) else str(path)
            )
            if fmt == "csv":
                with path.open("rb", buffering=1 << 20) as fh:
                    batches = csv_batches(fh, spec.delimiter, path.name, spec.encoding, spec.header)
                    for batch in batches:
                        yield name, batch
            elif fmt == "parquet":
                for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                    yield name, batch
            elif fmt == "xlsx":
                yield name, _excel_batch(path, spec.sheet)
            else:
                for batch in _json_batches(path):
                    yield name, batch
        return
    for batch in sql_batches(database_url(spec), spec.query or "", batch_rows, files=source_dir):
        yield "query", batch


def part_count(spec: SourceSpec, source_dir: Path) -> int:
    """How many parts (files; a query is one) the source reads."""
    return len(resolve_files(spec, source_dir)) if spec.path is not None else 1


def database_url(spec: SourceSpec) -> str:
    """The source's database URL, from the mapping or from the environment variable it names."""
    if spec.url_env:
        url = os.environ.get(spec.url_env)
        if not url:
            raise SourceError(f"environment variable {spec.url_env} (the database URL) is not set")
        return url
    assert spec.url is not None
    return spec.url


# `delimiter = "whitespace"`: fields separated by runs of spaces or tabs, as old systems write
# aligned text (CDNOW's log: ` 00001 19970101  1   11.77`); a field holds no space.
WHITESPACE = "whitespace"
_LINE_EDGES = re.compile(rb"(?m)^[ \t]+|[ \t]+(?=\r?$)")
_RUNS = re.compile(rb"[ \t]+")


def _whitespace_to_tabs(chunk: bytes) -> bytes:
    """Lines of fields separated by runs of spaces or tabs, as tab-separated lines."""
    return _RUNS.sub(b"\t", _LINE_EDGES.sub(b"", chunk))


def csv_header(
    fh: io.BufferedReader, delimiter: str, name: str, encoding: str = "utf-8"
) -> list[str]:
    """The column names on a CSV's first line, peeked: the stream stays where it was."""
    first = fh.peek(1 << 16).split(b"\n", 1)[0]
    if not first.strip():
        raise SourceError(f"'{name}' is empty: expected a header line")
    text = _decoded(first, encoding, name, 0).removeprefix("\ufeff").rstrip("\r")
    if delimiter == WHITESPACE:
        return text.split()
    return next(csv.reader([text], delimiter=delimiter))


def _is_utf8(encoding: str) -> bool:
    return encoding.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig")


def _decoded(data: bytes, encoding: str, name: str, lines_before: int) -> str:
    """data as text; bytes the encoding cannot read are a SourceError naming the file, the
    line and the bytes, with the declaration to add (Excel on Windows writes cp1252)."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = lines_before + data.count(b"\n", 0, err.start) + 1
        start = data.rfind(b"\n", 0, err.start) + 1
        end = data.find(b"\n", err.start)
        shown = data[start : end if end >= 0 else len(data)][:200]
        hint = (
            'declare the file\'s encoding: source = { path = ..., encoding = "cp1252" } (Excel '
            'on Windows) or "latin-1"'
            if _is_utf8(encoding)
            else "check the declared encoding"
        )
        raise SourceError(
            f"'{name}' line {line} is not {encoding} text (byte {data[err.start : err.start + 1]!r}"
            f" in {shown!r}): {hint}"
        ) from None


def csv_batches(
    fh: io.BufferedReader,
    delimiter: str,
    name: str,
    encoding: str = "utf-8",
    names: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of a CSV stream with every column read as text, one per BLOCK_BYTES of
    the file. The column names are on its first line, or, for a file without a header line
    (`names`: an export written by a tool that leaves it out), the names given: every line is
    data, and a line with another number of fields is an error naming it.

    Only an empty field is missing: "NA", "null" and "N/A" stay text (a country code, a name);
    the mapping decides what they mean.

    The stream is cut into blocks at line ends here and each block parsed with read_csv (on
    all cores): Arrow's streaming reader (open_csv) reads up to 32 blocks ahead of its
    consumer, so an import slower than the disk held most of the file in memory (+40 MiB per
    million rows). A block ends at the last line end outside a quoted value, so a comment or
    a ticket's text that spans lines (quoted, as RFC 4180 writes it) stays one value."""
    if names is None:
        header = csv_header(fh, delimiter, name, encoding)
    else:
        header = list(names)
        first = csv_header(fh, delimiter, name, encoding)  # the first data line
        if len(first) != len(header):
            raise SourceError(
                f"'{name}' line 1 has {len(first)} fields ({first[:6]}), and the source "
                f"declares {len(header)} column names in header = {header}: declare one name "
                "per field, or check the delimiter"
            )
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        aligned = delimiter in (" ", "\t") and "" in duplicated
        raise SourceError(
            f"'{name}' has the column names {duplicated} more than once"
            + (
                ": its columns are aligned with runs of spaces; declare "
                'delimiter = "whitespace" (fields separated by any run of spaces or tabs)'
                if aligned
                else ""
            )
        )
    if names is None:
        fh.readline()  # the header, read above
    read_options = pacsv.ReadOptions(
        column_names=header,
        block_size=BLOCK_BYTES + (1 << 20),
        use_threads=False,
        encoding="utf8" if _is_utf8(encoding) else encoding,
    )
    lines = 1 if names is None else 0  # lines before the chunk being parsed
    aligned = delimiter == WHITESPACE
    parse_options = (
        pacsv.ParseOptions(delimiter="\t", quote_char=False)
        if aligned
        else pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    )
    convert_options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    rest = b""
    while True:
        block = fh.read(BLOCK_BYTES)
        data = rest + block if rest else block
        # no quoted values in aligned text: any line end ends a row
        cut = last_row_end(data, quote=None if aligned else b'"') if block else len(data)
        rest = data[cut:]
        if cut:
            chunk = _whitespace_to_tabs(data[:cut]) if aligned else data[:cut]
            if len(chunk) > BLOCK_BYTES:  # a line longer than a block: one block still
                read_options.block_size = len(chunk) + 1
            try:
                table = pacsv.read_csv(
                    pa.py_buffer(chunk),
                    read_options=read_options,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
            except pa.ArrowInvalid as err:
                if "UTF8" not in str(err) and "utf8" not in str(err).lower():
                    raise _parse_error(err, name, lines, delimiter) from None
                _decoded(chunk, encoding, name, lines)  # raises, naming the line
                raise
            lines += chunk.count(b"\n")
            yield from table.to_batches()
        if not block:
            return


def _parse_error(
    err: pa.ArrowInvalid, name: str, lines_before: int, delimiter: str = ","
) -> SourceError:
    """Arrow's CSV parse error ("Row #2: Expected 4 columns, got 3: ...", counted within the
    block being parsed) as a SourceError naming the file and its line; with a space as the
    delimiter, the declaration for text aligned with runs of spaces."""
    text = str(err).removeprefix("CSV parse error: ")
    found = re.match(r"Row #(\d+): (.*)", text, flags=re.S)
    if found is None:
        return SourceError(f"'{name}' cannot be read as CSV: {text}")
    line = lines_before + int(found.group(1))
    hint = (
        '; if its columns are aligned with runs of spaces, declare delimiter = "whitespace"'
        if delimiter == " "
        else ""
    )
    return SourceError(f"'{name}' line {line}: {found.group(2).rstrip()}{hint}")


def last_row_end(data: bytes, quote: bytes | None = b'"') -> int:
    """Where the last complete CSV row of `data` ends: just after its last line end outside a
    quoted value (one with an even number of quote characters before it; an escaped quote,
    written twice, keeps the count even), or 0 when there is none yet. quote None: values are
    never quoted, and the last line end is the row's."""
    cut = data.rfind(b"\n") + 1
    if quote is None:
        return cut
    odd = data.count(quote, 0, cut) % 2 if quote in data else 0
    while cut and odd:  # inside a quoted value: step back one line end at a time
        previous = data.rfind(b"\n", 0, cut - 1) + 1
        odd ^= data.count(quote, previous, cut) % 2
        cut = previous
    return cut


def _json_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """JSON lines through pyarrow's reader (each key keeps its JSON type). A key whose values
    are of more than one JSON type (`"ts": 1539000000000` on one line, `"ts": "yesterday"` on
    another), which pyarrow refuses, is read as text from the line where pyarrow stopped, so
    the mapping's declared type decides, and a bad value is an error naming its row."""
    done = 0
    try:
        reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))
        for batch in reader:
            done += batch.num_rows
            yield flattened(batch)
        return
    except pa.ArrowInvalid as err:
        if "changed from" not in str(err):
            raise SourceError(f"'{path.name}' is not valid JSON lines: {err}") from None
    yield from _json_lines_as_read(path, skip=done, batch_rows=batch_rows)


def _json_lines_as_read(path: Path, skip: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The records of a JSON-lines file after its first `skip`, in batches: a key whose values
    all have one JSON type keeps it; one with several is text (numbers as JSON writes them)."""
    import json

    rows: list[dict] = []
    seen = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            seen += 1
            if seen <= skip:
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise SourceError(
                    f"'{path.name}' line {number} is not JSON ({err}): {line[:200]!r}"
                ) from None
            if not isinstance(record, dict):
                raise SourceError(
                    f"'{path.name}' line {number} is not a JSON object: {line[:200]!r}"
                )
            rows.append(_flat_record(record))
            if len(rows) >= batch_rows:
                yield _records_batch(rows)
                rows = []
    if rows:
        yield _records_batch(rows)


def flattened(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch whose nested objects' keys are also columns of their own, named by their path
    ("groups.company_id"): Amplitude's and Segment's B2B exports keep the account's id in a
    nested object, and a mapping could not name it without a SQL query. The object itself stays
    a column too (a mapping may keep it as it is)."""
    if not any(pa.types.is_struct(f.type) for f in batch.schema):
        return batch
    names: list[str] = []
    arrays: list[pa.Array] = []

    def add(name: str, array: pa.Array) -> None:
        names.append(name)
        arrays.append(array)
        if pa.types.is_struct(array.type):  # children with the parent's nulls (flatten)
            for field, child in zip(array.type, array.flatten(), strict=True):
                add(f"{name}.{field.name}", child)

    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        add(name, column)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _flat_record(record: dict, prefix: str = "") -> dict:
    """A JSON object with its nested objects' keys also under their paths, as flattened does
    for a batch (the object itself kept, read as text)."""
    out: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        out[name] = value
        if isinstance(value, dict) and value:
            out.update(_flat_record(value, f"{name}."))
    return out


def _records_batch(rows: list[dict]) -> pa.RecordBatch:
    import json

    keys = list(dict.fromkeys(k for row in rows for k in row))
    as_json = functools.partial(json.dumps, ensure_ascii=False)
    return pa.RecordBatch.from_pydict(
        {key: _typed_or_text([row.get(key) for row in rows], as_json) for key in keys}
    )


def _typed_or_text(values: list, text_of: Callable[[object], str]) -> pa.Array:
    """One column of JSON values or Excel cells: of one kind, typed as that kind; of several
    (or lists, objects, times of day), text (`text_of` writes the values that are not)."""
    kinds = {_value_kind(v) for v in values if v is not None}
    if len(kinds) > 1 or "other" in kinds:
        return pa.array(
            [v if v is None or isinstance(v, str) else text_of(v) for v in values], pa.string()
        )
    if kinds == {"time"}:
        return pa.array(pd.to_datetime(pd.Series(values, dtype=object)))
    return pa.array(values)


def _excel_batch(path: Path, sheet: str | None) -> pa.RecordBatch:
    """One sheet of an Excel workbook (.xlsx, as CRMs export reports), each column with the
    type its cells have (dates, numbers, text); a column whose cells mix types is text (a
    date typed in a text cell beside date cells), so the mapping's declared type decides."""
    try:
        frame = pd.read_excel(path, sheet_name=sheet or 0, dtype=object, engine="openpyxl")
    except ValueError as err:  # no such sheet
        raise SourceError(f"'{path.name}': {err}") from None
    return pa.RecordBatch.from_pydict(
        {
            str(name): _typed_or_text(column.where(column.notna(), None).tolist(), str)
            for name, column in frame.items()
        }
    )


def _value_kind(value: object) -> str:
    """The type of one JSON value or Excel cell; a column of one kind keeps it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, pd.Timestamp | datetime.datetime):
        return "time"
    return "other"  # JSON lists and objects, an Excel time of day: kept as text


def sql_batches(
    url: str, query: str, batch_rows: int = BATCH_ROWS, files: Path | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of a query's result: PostgreSQL by COPY, DuckDB natively, other
    databases through SQLAlchemy with a server-side cursor. `files`: the folder a DuckDB
    query's relative file names are found in (read_csv('members.csv') under --source)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    try:
        if backend == "postgresql":
            yield from _postgres_batches(parsed.set(drivername="postgresql"), query)
        elif backend == "duckdb":
            yield from _duckdb_batches(parsed.database or ":memory:", query, batch_rows, files)
        else:
            yield from _sqlalchemy_batches(url, query, batch_rows)
    except _query_errors(backend) as err:  # a typo in the query, a file it cannot find
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"the {backend} query failed: {first}") from None


def _query_errors(backend: str) -> tuple[type[BaseException], ...]:
    """The errors a database driver raises for a query that cannot run (not our own)."""
    if backend == "duckdb":
        import duckdb

        return (duckdb.Error,)
    if backend == "postgresql":
        import psycopg

        return (psycopg.Error,)
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError,)


class _ChunkStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (COPY's output), for pyarrow's reader.

    COPY hands over one row per chunk: each read gathers the rows it needs and joins them
    once, so the cost per row is an append, not a copy of what is left of a buffer."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        size = len(target)
        parts = [self._rest]
        have = len(self._rest)
        chunks = self._chunks
        while have < size:
            chunk = next(chunks, None)
            if chunk is None:
                break
            chunk = bytes(chunk)  # psycopg's memoryview: held, each keeps libpq's buffer
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        n = min(size, len(data))
        target[:n] = data[:n]
        self._rest = data[n:]
        return n


def _postgres_batches(url, query: str) -> Iterator[pa.RecordBatch]:
    import psycopg

    conninfo = url.render_as_string(hide_password=False)
    command = f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)"
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor() as cur,
        cur.copy(command) as copy,
    ):
        stream = io.BufferedReader(_ChunkStream(iter(copy)), buffer_size=1 << 20)
        yield from csv_batches(stream, ",", "COPY output")


def _duckdb_batches(
    database: str, query: str, batch_rows: int, files: Path | None = None
) -> Iterator[pa.RecordBatch]:
    import duckdb

    with duckdb.connect(database, read_only=database != ":memory:") as con:
        if files is not None:  # read_csv('members.csv') in the query: under the source folder
            con.execute("SET file_search_path = ?", [str(Path(files).resolve())])
        relation = con.sql(query)
        # DuckDB 2.x: a relation's to_arrow_reader; 1.x: fetch_record_batch on the result.
        if hasattr(relation, "to_arrow_reader"):
            reader = relation.to_arrow_reader(batch_rows)
        else:
            reader = con.execute(query).fetch_record_batch(batch_rows)
        yield from reader


def _sqlalchemy_batches(url: str, query: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect().execution_options(stream_results=True) as conn:
            result = conn.execute(text(query))
            names = list(result.keys())
            for rows in result.partitions(batch_rows):
                columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
                arrays = [_arrow_column(values) for values in columns]
                yield pa.RecordBatch.from_arrays(arrays, names=names)
    finally:
        engine.dispose()


def _arrow_column(values: tuple) -> pa.Array:
    """Python values of one result column as Arrow, with the type they have (decimals as
    float64: amounts; the mapping scales them)."""
    array = pa.array(values, from_pandas=True)
    if pa.types.is_decimal(array.type):
        array = array.cast(pa.float64())
    return array


def batch_to_frame(batch: pa.RecordBatch | pa.Table) -> pd.DataFrame:
    """A record batch as pandas: text as pandas' string dtype, timestamps as datetime64.

    Text stays in Arrow (pandas' str dtype holds an Arrow array): mapping the type directly
    avoids a round trip through Python objects, several times the cost of reading the CSV."""
    return batch.to_pandas(types_mapper=_TEXT_TYPES.get)


_TEXT = pd.StringDtype("pyarrow", na_value=float("nan"))  # pandas' default str dtype
_TEXT_TYPES = {pa.string(): _TEXT, pa.large_string(): _TEXT}


def several_cores() -> bool:
    """Whether this process may run on more than one CPU: the import overlaps reading, checking
    and writing on threads only then (on 2 idle cores 3 M rows took 1.3-1.5 s instead of
    1.8-2.5 s; on a single or fully busy core the threads only cost switching)."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:  # not Linux
        return (os.cpu_count() or 1) > 1


_END = object()
T = TypeVar("T")


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of `items`, produced on a thread of their own at most `depth` ahead: reading
    and parsing the next batch (Arrow's CSV reader, COPY, to_pandas: mostly without the GIL)
    overlaps the checking of this one. An error in the producer is raised here, in order;
    when the consumer stops early, the producer stops and its iterator is closed (files and
    connections it holds with it)."""
    if not several_cores():  # one core: a thread only adds switching
        yield from items
        return
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as err:  # handed to the consumer
            put((_END, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="batch-reader", daemon=True)
    worker.start()
    try:
        while True:
            item, err = box.get()
            if item is _END:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        worker.join()
