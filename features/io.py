"""Reading the contract's tables from disk and writing results atomically: the IO edge."""

from __future__ import annotations

import csv
import ctypes
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.contract import (
    NUMERIC_COLUMNS,
    REQUIRED_TABLES,
    TABLES,
    TIMESTAMP_COLUMNS,
    ContractError,
    Tables,
    validate_tables,
)


def table_candidates(data_dir: Path, name: str) -> list[Path]:
    """The places a table may be stored: NAME.parquet, a Parquet folder NAME/, or NAME.csv."""
    return [data_dir / f"{name}.parquet", data_dir / name, data_dir / f"{name}.csv"]


def find_table_file(data_dir: Path, name: str) -> Path | None:
    """The file (or Parquet folder) holding a table: NAME.parquet, NAME/ or NAME.csv. Two of
    them side by side is an error: which one holds the data cannot be known."""
    found = [c for c in table_candidates(data_dir, name) if c.exists()]
    if len(found) > 1:
        raise ContractError(
            name,
            None,
            f"the table is stored twice ({', '.join(p.name for p in found)} in {data_dir}): "
            "remove or rename all but one",
        )
    return found[0] if found else None


DICTIONARY_COLUMNS = ("customer_id", "event", "kind", "user_id")
TEXT_COLUMNS = ("customer_id", "event", "kind", "status", "text", "user_id")
PLAIN_NUMBER = r"[+-]?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|[+-]?0?\.\d+"


def read_table(path: Path, table: str | None = None) -> pd.DataFrame:
    """Read one table; customer ids and event names are read dictionary-encoded (categorical),
    except the customers' own ids (their unique key), which stay plain text.

    A CSV is read as text (ids keep their leading zeros; timestamps and numbers are parsed by
    the contract's checks); an empty or unreadable file is a ContractError naming the table."""
    table = table or path.name.split(".")[0]
    if path.is_file() and path.stat().st_size == 0:
        raise ContractError(table, None, f"the file {path} is empty (0 bytes)")
    if path.suffix == ".csv":
        return read_csv_as_text(path, table)
    try:
        schema = pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    except (pa.ArrowInvalid, OSError) as err:
        raise ContractError(
            table,
            None,
            f"{path} cannot be read as Parquet ({str(err).splitlines()[0][:120]}); "
            "if it is a CSV file, name it .csv",
        ) from None
    is_customers = "signup_at" in schema.names
    dictionary = [
        c
        for c in DICTIONARY_COLUMNS
        if c in schema.names and not (is_customers and c == "customer_id")
    ]
    df = _read_columnar(path, dictionary) if path.is_file() else None
    if df is None:
        df = arrow_to_frame(pq.read_table(path, read_dictionary=dictionary))
    if is_customers and isinstance(df["customer_id"].dtype, pd.CategoricalDtype):
        df["customer_id"] = df["customer_id"].astype(df["customer_id"].cat.categories.dtype)
    return df


def read_csv_as_text(path: Path, table: str) -> pd.DataFrame:
    """A CSV with every column read as text, nothing guessed per row. Afterwards, a column that
    is not the contract's own and whose every value is a plain number (no leading zeros, which
    would make it a code) becomes float64, so numeric attributes such as MRR stay numbers."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise ContractError(table, None, f"the file {path} has no header line")
    try:
        arrow = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise ContractError(
            table, None, f"{path} cannot be read as CSV: {str(err).splitlines()[0][:200]}"
        ) from None
    df = arrow.to_pandas()
    contract_columns = set(TEXT_COLUMNS) | {
        c for cols in (*TIMESTAMP_COLUMNS.values(), *NUMERIC_COLUMNS.values()) for c in cols
    }
    for column in df.columns:
        if column in contract_columns:
            continue
        values = df[column]
        present = values.dropna().str.strip()
        if len(present) and present.str.fullmatch(PLAIN_NUMBER).all():
            df[column] = pd.to_numeric(values.str.strip())
    return df


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Table.to_pandas, except that dictionary columns whose chunks all share one dictionary
    become categoricals directly: Arrow would unify the (equal) dictionaries chunk by chunk,
    which for 10M ids read in ~80 chunks costs more than the read itself."""
    categoricals = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_dictionary(column.type):
            categorical = _shared_dictionary_categorical(column)
            if categorical is not None:
                categoricals[name] = categorical
    if not categoricals:
        return table.to_pandas()
    rest = table.drop_columns(list(categoricals)).to_pandas()
    if not rest.index.equals(pd.RangeIndex(table.num_rows)):
        return table.to_pandas()  # an index restored from pandas metadata: keep to_pandas' frame
    return pd.DataFrame(
        {
            name: categoricals[name] if name in categoricals else rest[name]
            for name in table.column_names
        },
        copy=False,
    )


def _shared_dictionary_categorical(column: pa.ChunkedArray) -> pd.Categorical | None:
    """A dictionary column as a Categorical when every chunk has the same dictionary of
    distinct, non-null text (what Parquet files written from pandas hold); None otherwise."""
    if column.num_chunks == 0:
        return None
    first = column.chunk(0).dictionary
    if not (pa.types.is_string(first.type) or pa.types.is_large_string(first.type)):
        return None
    if any(not (c.dictionary is first or c.dictionary.equals(first)) for c in column.chunks):
        return None
    categories = pd.Index(first.to_pandas())
    if categories.hasnans or not categories.is_unique:
        return None
    codes = np.concatenate([_codes(c) for c in column.chunks])
    return pd.Categorical.from_codes(
        codes,
        dtype=pd.CategoricalDtype(categories, ordered=column.type.ordered),
        validate=False,
    )


def _codes(chunk: pa.DictionaryArray) -> np.ndarray:
    """A chunk's dictionary indices as numpy, missing values as -1 (pandas' code for NaN)."""
    indices = chunk.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    return indices.to_numpy()


def _plain_dtype(field: pa.Field, pandas_columns: dict[str, dict]) -> np.dtype | None:
    """The numpy dtype Table.to_pandas gives a float64 or naive nanosecond timestamp column
    (None for any other column, or one the pandas metadata maps to another dtype)."""
    kind = field.type
    if pa.types.is_float64(kind):
        dtype = np.dtype("float64")
    elif pa.types.is_timestamp(kind) and kind.unit == "ns" and kind.tz is None:
        dtype = np.dtype("datetime64[ns]")
    else:
        return None
    stored = pandas_columns.get(field.name, {}).get("numpy_type", str(dtype))
    return dtype if stored == str(dtype) else None


COLUMNAR_MIN_ROWS = 1_000_000  # smaller files are read whole
READ_THREADS = min(4, os.cpu_count() or 1)  # row groups of one file decoded side by side


def _read_row_group_into(
    file: pq.ParquetFile,
    dictionary: list[str],
    index: int,
    start: int,
    arrays: dict[str, np.ndarray],
) -> dict[str, pa.Array] | None:
    """Decode one row group into arrays[name][start:...]; dictionary columns store their codes.
    Returns each dictionary column's dictionary (None if it changes within the row group)."""
    part = file.read_row_group(index, use_threads=False)
    dictionaries: dict[str, pa.Array] = {}
    for name, out in arrays.items():
        at = start
        for chunk in part.column(name).chunks:
            end = at + len(chunk)
            if name in dictionary:
                known = dictionaries.setdefault(name, chunk.dictionary)
                if not (chunk.dictionary is known or chunk.dictionary.equals(known)):
                    return None
                out[at:end] = _codes(chunk)
            else:
                out[at:end] = chunk.to_numpy(zero_copy_only=False)
            at = end
    return dictionaries


def _is_text_dictionary(kind: pa.DataType) -> bool:
    return pa.types.is_dictionary(kind) and (
        pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
    )


def _read_columnar(path: Path, dictionary: list[str]) -> pd.DataFrame | None:
    """Read a large Parquet file of dictionary-encoded text, float64 and naive nanosecond
    timestamps (the shape of an event table) row group by row group into numpy arrays.

    Why: reading the whole file first holds every column twice (Arrow, then pandas) and Arrow
    unifies the per-chunk dictionaries; one row group at a time reuses Arrow's buffers and
    takes the dictionary codes as they are. Returns None for any other shape (or dictionaries
    that differ between row groups): the caller then reads the file whole."""
    file = pq.ParquetFile(path, read_dictionary=dictionary)
    meta, schema = file.metadata, file.schema_arrow
    if meta.num_row_groups < 2 or meta.num_rows < COLUMNAR_MIN_ROWS:
        return None  # small: the whole-table read is as fast
    pandas_meta = schema.pandas_metadata or {}
    if any(not isinstance(c, dict) for c in pandas_meta.get("index_columns", [])):
        return None  # an index stored as a column: to_pandas would restore it
    pandas_columns = {c.get("field_name"): c for c in pandas_meta.get("columns", [])}
    rows = meta.num_rows
    arrays: dict[str, np.ndarray] = {}
    for field in schema:
        if field.name in dictionary:
            if not _is_text_dictionary(field.type):
                return None
            arrays[field.name] = np.empty(rows, field.type.index_type.to_pandas_dtype())
        else:
            dtype = _plain_dtype(field, pandas_columns)
            if dtype is None:
                return None
            arrays[field.name] = np.empty(rows, dtype)
    # Each thread decodes a run of row groups into its own slice of the arrays: decoding, and
    # first touching fresh memory (most of the time on a VM), then happen on all cores.
    starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    threads = min(READ_THREADS, meta.num_row_groups)

    def read_groups(indices: np.ndarray) -> list[dict[str, pa.Array] | None]:
        reader = pq.ParquetFile(path, read_dictionary=dictionary)  # one reader per thread
        return [
            _read_row_group_into(reader, dictionary, int(i), int(starts[i]), arrays)
            for i in indices
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        runs = np.array_split(np.arange(meta.num_row_groups), threads)
        seen = [part for parts in pool.map(read_groups, runs) for part in parts]
    # Hand the readers' decode buffers back now: the arrays built next (the contract checks,
    # the array form) then reuse that memory instead of touching more (peak -140 MB at 10M rows).
    pa.default_memory_pool().release_unused()
    if any(part is None for part in seen):
        return None
    dictionaries: dict[str, pa.Array] = {}
    for part in seen:
        for name, values in part.items():
            known = dictionaries.setdefault(name, values)
            if not (values is known or values.equals(known)):
                return None  # row groups with other dictionaries: their codes mean other ids
    columns: dict[str, object] = {}
    for field in schema:
        if field.name not in dictionary:
            columns[field.name] = arrays[field.name]
            continue
        categories = pd.Index(dictionaries[field.name].to_pandas())
        if categories.hasnans or not categories.is_unique:
            return None
        columns[field.name] = pd.Categorical.from_codes(
            arrays[field.name],
            dtype=pd.CategoricalDtype(categories, ordered=field.type.ordered),
            validate=False,
        )
    return pd.DataFrame(columns, copy=False)


PR_SET_THP_DISABLE = 41  # linux/prctl.h
PR_GET_THP_DISABLE = 42


def use_regular_memory_pages() -> bool:
    """Stop this process (and the processes it starts) from taking transparent huge pages;
    True when it is so. Linux only; elsewhere, or where prctl is refused, nothing changes.

    Why: numpy and Arrow's allocator ask for huge pages for large buffers. On virtual machines
    that hand freed memory back to their host (virtio-balloon free page reporting, common in
    the cloud and on CI), a huge page touched for the first time costs several times what the
    same bytes cost in regular pages: loading 10M events took 3 CPU seconds instead of 1.3
    (benchmarks/bench_features.py, cold memory). Database vendors (MongoDB, Redis) advise
    the same for their servers. The price where memory is warm is small (about 0.3 CPU
    seconds on the same load)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        if prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1:
            return True
        return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def load_tables(data_dir: str | Path, *, need_rows: tuple[str, ...] = ("customers",)) -> Tables:
    """Load and validate the contract's tables from a folder; feedback and revenue are optional.
    The tables in `need_rows` must have rows. The activity table may be empty: a billing-only
    export learns contractual churn from customers and revenue (training.pipeline.
    fit_from_tables refuses non-contractual churn without activity).

    The process uses regular memory pages from here on (see use_regular_memory_pages)."""
    data_dir = Path(data_dir)
    use_regular_memory_pages()
    if data_dir.is_file():  # a labeled table's file, given where a folder is read
        raise FileNotFoundError(
            f"'{data_dir}' is a file, not a data folder: --data reads a folder of the "
            "contract's tables (customers, activity, ...; churn import writes one). A model "
            "trained on a labeled table (churn train --labeled-table) scores a table: "
            "`churn score-table --table FILE --id COLUMN --out DIR`; its run lists each "
            "customer's cross-validated probability (tables/oof_predictions.csv among its "
            "MLflow artifacts)"
        )
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder '{data_dir}' does not exist")
    frames: dict[str, pd.DataFrame] = {}
    for name in TABLES:  # one after another: read side by side they were slower here
        path = find_table_file(data_dir, name)
        if path is None:
            if name in REQUIRED_TABLES:
                raise ContractError(
                    name, None, f"table is missing: expected {data_dir / name}.parquet or .csv"
                )
            continue
        frames[name] = read_table(path, name)
        if name in need_rows and frames[name].empty:
            raise ContractError(
                name, None, f"{path} has no rows: churn cannot be learned from an empty table"
            )
    return validate_tables(**frames)


def write_tables(
    tables: Tables, out_dir: str | Path, extra_files: dict[str, str | pd.DataFrame] | None = None
) -> None:
    """Write the tables as Parquet into out_dir, replacing it whole (never half-written).

    extra_files: more files for the same folder, text or DataFrames (written as Parquet)."""
    with atomic_dir(out_dir) as tmp:
        for name in TABLES:
            df = getattr(tables, name)
            if name not in REQUIRED_TABLES and df.empty:
                continue
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        for file_name, content in (extra_files or {}).items():
            if isinstance(content, pd.DataFrame):
                content.to_parquet(tmp / file_name, index=False)
            else:
                (tmp / file_name).write_text(content)


class OutputError(ValueError):
    """An output folder that cannot take the run's files: named with the reason, before any
    work is done (a file where a folder should be, no write permission, too little space)."""


TEMP_MARK, OLD_MARK = ".tmp-", ".old-"
STALE_LEGACY_SECONDS = 3600.0  # temporary folders of older versions carry no process id
RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100
# .NAME.tmp-HOST-PID-XXXXXXXX (this version) and .NAME.tmp-XXXXXXXX / .NAME.old-PID (earlier ones)
_OWNED = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]{8}$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.(?:tmp-[a-z0-9_]{8}|old-\d+)$")


def current_umask() -> int:
    """The process's umask (read from /proc on Linux: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, mode: int) -> None:
    """mkdtemp and mkstemp create 0700 folders and 0600 files whatever the umask: give `path`
    the mode an ordinary mkdir or open would have, so that a service or an analyst running as
    another user can read the output."""
    os.chmod(path, mode & ~current_umask())


def _temp_prefix(target: Path, mark: str) -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
    return f".{target.name}{mark}{host}-{os.getpid()}-"


def _process_alive(host: str, pid: int) -> bool:
    """Whether the process that made a temporary folder may still be running (another host's
    processes cannot be seen: they are taken as alive)."""
    if host != re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def clean_dead_temporaries(
    folder: str | Path, log: Callable[[str], None] | None = None
) -> list[Path]:
    """Remove the temporary folders and files that runs killed mid-write left in `folder` (those
    of this version name their host and process; older ones are removed after an hour). A
    previous output set aside by a run that died between its two renames (filesystems without
    an atomic exchange) is put back when nothing replaced it. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.iterdir():
        owned = _OWNED.match(path.name)
        if owned:
            if _process_alive(owned["host"], int(owned["pid"])):
                continue
            kind, name = owned["kind"], owned["name"]
        else:
            legacy = _LEGACY.match(path.name)
            if legacy is None or now - _mtime(path) < STALE_LEGACY_SECONDS:
                continue
            kind, name = ("old" if OLD_MARK in path.name else "tmp"), legacy["name"]
        target = folder / name
        if kind == "old" and not os.path.lexists(target):
            os.replace(path, target)  # the run died between its renames: restore the output
            if log:
                log(f"restored {target} from {path.name} (a run died while replacing it)")
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
        if log:
            log(f"removed {path} (left by a run that did not finish)")
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def folder_bytes(path: str | Path) -> int:
    """The size of the files under a folder (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def check_writable(folder: str | Path, need_bytes: int = 0) -> Path:
    """Check before the work that `folder` is a folder this process can write in, or can be
    created where it would be, with at least `need_bytes` free; else an OutputError saying
    which and why. Nothing is created: a refused run leaves no empty folder behind."""
    from reporting.formatting import size_bytes

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"the output {folder} is a file, not a folder: give a folder path")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"the output {folder} cannot be created: {existing} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(folder, TEMP_MARK), dir=existing)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise OutputError(f"cannot write in the output folder {existing}: {err.strerror}") from None
    free = shutil.disk_usage(existing).free
    if free < need_bytes:
        raise OutputError(
            f"the output folder {existing} has {size_bytes(free)} free; the run needs about "
            f"{size_bytes(need_bytes)}: free some space or choose another folder"
        )
    return folder


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or the filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside target; on success it takes target's place in one atomic
    step, so a reader sees the old folder or the new one, never none and never a mix.

    The replacement is one renameat2(RENAME_EXCHANGE) where Linux and the filesystem allow it
    (ext4, xfs, btrfs, tmpfs, overlayfs); elsewhere two renames, and a run that dies between
    them is repaired by the next one (clean_dead_temporaries puts the old folder back).
    Temporary folders of runs that were killed are removed first. The folder honours the
    umask (mkdtemp alone would make it 0700)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_dead_temporaries(target.parent)
    if os.path.lexists(target) and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder: move it away or choose another")
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target, TEMP_MARK), dir=target.parent))
    try:
        _honour_umask(tmp, 0o777)
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # now the old content
        else:
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target, OLD_MARK), dir=target.parent))
            os.rmdir(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside target; on success it replaces target in one rename. The
    file honours the umask (mkstemp alone would make it 0600)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise OutputError(f"{target} is a folder: give a file path")
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(target, TEMP_MARK), dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        _honour_umask(tmp, 0o666)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ParquetChunkWriter:
    """Append DataFrames to one Parquet file chunk by chunk, with a fixed schema."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        else:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self.rows += len(df)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
