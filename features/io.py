"""Reading the contract's tables from disk and writing results atomically: the IO edge."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import REQUIRED_TABLES, TABLES, ContractError, Tables, validate_tables


def find_table_file(data_dir: Path, name: str) -> Path | None:
    """The file (or Parquet folder) holding a table: NAME.parquet, NAME/ or NAME.csv."""
    for candidate in (data_dir / f"{name}.parquet", data_dir / name, data_dir / f"{name}.csv"):
        if candidate.exists():
            return candidate
    return None


def read_table(path: Path) -> pd.DataFrame:
    """Read one table; customer ids and event names are read dictionary-encoded (categorical)."""
    if path.suffix == ".csv":
        return pd.read_csv(path)
    schema = pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    dictionary = [c for c in ("customer_id", "event", "kind") if c in schema.names]
    table = pq.read_table(path, read_dictionary=dictionary)
    df = table.to_pandas()
    # customers need plain ids (unique key); the other tables keep categorical ids for speed.
    if "signup_at" in df.columns and isinstance(df["customer_id"].dtype, pd.CategoricalDtype):
        df["customer_id"] = df["customer_id"].astype(df["customer_id"].cat.categories.dtype)
    return df


def load_tables(data_dir: str | Path) -> Tables:
    """Load and validate the contract's tables from a folder; feedback and revenue are optional."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder '{data_dir}' does not exist")
    frames: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        path = find_table_file(data_dir, name)
        if path is None:
            if name in REQUIRED_TABLES:
                raise ContractError(
                    name, None, f"table is missing: expected {data_dir / name}.parquet or .csv"
                )
            continue
        frames[name] = read_table(path)
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


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside target; on success it replaces target in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside target; on success it replaces target in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
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
