"""The pandas feature code on Apache Spark, for customer bases that outgrow one machine.

Nothing here computes a feature. Spark only moves rows: every table of the data contract is read
from Parquet, each row gets ``bucket = pmod(hash(customer_id), B)``, the four tables are stacked
into one frame (a ``_table`` tag and one column per source column, ``<table>__<column>``) and
shuffled so that partition ``b`` holds exactly bucket ``b`` (``repartition(B, customer_id)`` hashes
the same way). Each partition is then handed to Python whole (``mapInArrow``), turned back into the
four pandas tables exactly as :func:`features.io.read_table` would read them, validated with
:func:`features.contract.validate_tables`, and passed to the SAME functions the pandas engine
uses: :func:`features.dataset.iter_snapshots` (features and labels per observation date) or
:func:`features.signals.build_features`. Few large groups, not one group per customer: a group
costs about 2 ms of fixed overhead, and the feature code is vectorised over a bucket's customers.

Why a bucket gives the same numbers as the whole data set: every feature and label depends on one
customer's own rows only, and all rows of a customer land in the same bucket. The parts that
depend on the whole data set are done once on the driver, over all of it:

* the configuration (event types with their own counts; the declared customer attributes checked
  and typed) is resolved with a small Spark aggregation and shipped to the workers resolved, so
  no bucket decides for itself;
* the edge of the observed data (``Tables.data_end``, which decides whether a label's horizon is
  observed) is the global one: buckets see it through :class:`BucketTables`;
* the output schema comes from :func:`features.signals.feature_names`.

Each row is validated exactly once, in its bucket; a bucket is a complete sub-dataset (customers
and all their rows), so the contract's reference and duplicate checks hold per bucket too. A
contract error in a worker is raised on the driver as the same :class:`ContractError`.

Row order: where two rows of a customer share a timestamp, the pandas code keeps file order
(last payment, previous invoice). Spark does not keep row order through a shuffle, so every row
carries its position in its source (file rank, ``_metadata.row_index``) and each bucket is sorted
back into file order before the pandas code sees it.

Output: a folder of Parquet part files, written beside ``out`` under a temporary name and swapped
in at the end through the Hadoop file system API (an atomic rename on a local disk and on HDFS;
object stores such as S3 have no atomic rename). A failed job leaves the previous output whole.

Scoring: :func:`run_buckets` takes any per-bucket function of a :class:`Tables`;
serving/spark_batch.py runs the weekly job with it (the broadcast model scores the bucket's
``build_features``), with the previous run's rows shuffled into the same buckets as an extra.
"""

from __future__ import annotations

import os
import re
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.config import DATA_CONFIG_FILE, FeatureConfig, feature_config_from_file
from features.contract import (
    END_COLUMNS,
    REQUIRED_COLUMNS,
    REQUIRED_TABLES,
    TABLES,
    ContractError,
    Tables,
    observed_end,
)
from features.io import DICTIONARY_COLUMNS  # read dictionary-encoded in the workers too
from features.prepared import as_of_timestamp

if TYPE_CHECKING:  # pyspark is an optional dependency: imported only when a Spark job runs
    from pyspark.sql import Column, DataFrame, SparkSession

INSTALL_HINT = "install with: uv sync --extra spark"
BUCKETS_PER_CORE = 2
TABLE_CODES = {name: i for i, name in enumerate(TABLES)}
EXTRA_CODE_BASE = len(TABLES)  # extras are tagged after the contract's tables
# Timestamp columns that decide something on the driver (data end, event types as of T).
DRIVER_TIMESTAMPS = {
    "customers": ("signup_at", "churned_at", "ended_at"),
    "activity": ("at",),
    "feedback": ("at",),
    "revenue": ("at",),
}
NS_PER_DAY = 86_400 * 10**9


def require_pyspark() -> None:
    """Fail with the install command when the optional Spark dependency is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ValueError(
            f"the Spark engine needs pyspark, which is not installed; {INSTALL_HINT}"
        ) from None


def get_spark(master: str | None = None, app_name: str = "churn", **conf: Any) -> SparkSession:
    """A Spark session for the feature jobs.

    Under spark-submit (the JVM started this Python) the session spark-submit configured is
    returned. Otherwise a local session is started (``master``, default ``local[*]``) whose Python
    workers run this very interpreter: PYSPARK_PYTHON and PYSPARK_DRIVER_PYTHON are set to
    sys.executable, or the workers would start whatever ``python3`` is on PATH, without the
    project's packages. ``conf``: more Spark settings, e.g. ``**{"spark.driver.memory": "8g"}``.

    pyspark 4.x warns (FutureWarning) that it does not fully support pandas 3; the warning is
    left visible on purpose. This engine does not use pyspark's pandas conversion (workers get
    Arrow and convert with pyarrow, as the pandas engine does), and the Spark test checks the
    results against the pandas engine value by value."""
    require_pyspark()
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        master = master or "local[*]"
    if master is not None and master.startswith("local"):
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "8")
        )
    if master is not None:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    configure_session(spark)
    return spark


def configure_session(spark: SparkSession) -> None:
    """Session settings the engine relies on (set on every call: a session may be shared).

    UTC session time zone: timestamps without zone are wall-clock times, as in pandas.
    nanosAsLong: pandas writes Parquet timestamps in nanoseconds, which Spark cannot read as
    timestamps; read as int64 nanoseconds they stay exact, and the contract parses int64 times
    as nanoseconds since the epoch, exactly as for the pandas engine."""
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")


# -- what the driver learns about the input, once ----------------------------------------------


@dataclass(frozen=True)
class TableInput:
    """One contract table as found on the file system."""

    name: str
    path: str
    is_folder: bool
    columns: tuple[str, ...]
    nanos_columns: tuple[str, ...]  # Parquet TIMESTAMP(NANOS): int64 nanoseconds in Spark


@dataclass(frozen=True)
class BucketJob:
    """Everything a worker needs, decided on the driver and shipped with the task."""

    tables: dict[str, TableInput]
    config: FeatureConfig  # resolved: the same event types and segments in every bucket
    observed_until: pd.Timestamp  # the global data end (Tables.data_end of the whole data)
    object_columns: tuple[str, ...]  # customers columns pandas reads as object (bool with nulls)
    out_schema: pa.Schema
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> its columns


@dataclass
class BucketTables(Tables):
    """The tables of one bucket: a slice of a data set whose observed edge is the whole data's."""

    observed_until: pd.Timestamp | None = field(default=None, compare=False)
    # Other per-customer frames shuffled with the bucket (e.g. the previous scoring run's).
    extras: dict[str, pd.DataFrame] = field(default_factory=dict, compare=False)

    def data_end(self) -> pd.Timestamp:
        if self.observed_until is None:
            return super().data_end()
        return self.observed_until


def _hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(spark._jsc.hadoopConfiguration()), jpath


def _exists(spark: SparkSession, path: str) -> bool:
    fs, jpath = _hadoop_path(spark, path)
    return bool(fs.exists(jpath))


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def find_tables(spark: SparkSession, data_dir: str) -> dict[str, tuple[str, bool]]:
    """The contract's tables in a folder (local or cluster URI): NAME.parquet or NAME/ (Parquet).

    CSV tables are refused: their column types would be Spark's guess, not the contract's."""
    if not _exists(spark, data_dir):
        raise FileNotFoundError(f"data folder '{data_dir}' does not exist")
    found: dict[str, tuple[str, bool]] = {}
    for name in TABLES:
        for candidate in (_join(data_dir, f"{name}.parquet"), _join(data_dir, name)):
            fs, jpath = _hadoop_path(spark, candidate)
            if fs.exists(jpath):
                found[name] = (candidate, bool(fs.getFileStatus(jpath).isDirectory()))
                break
        else:
            if _exists(spark, _join(data_dir, f"{name}.csv")):
                raise ValueError(
                    f"table '{name}' is a CSV file; the Spark engine reads Parquet only "
                    f"(write it as {name}.parquet, e.g. with pandas' to_parquet)"
                )
            if name in REQUIRED_TABLES:
                raise ContractError(
                    name, None, f"table is missing: expected {_join(data_dir, name)}.parquet"
                )
    return found


def _nanos_columns(spark: SparkSession, df: DataFrame) -> tuple[str, ...]:
    """Top-level columns stored as Parquet TIMESTAMP(NANOS), from the first file's footer."""
    files = df.inputFiles()
    if not files:
        return ()
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    jpath = jvm.org.apache.hadoop.fs.Path(sorted(files)[0])
    reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
        jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(jpath, conf)
    )
    try:
        schema = str(reader.getFooter().getFileMetaData().getSchema().toString())
    finally:
        reader.close()
    pattern = re.compile(r"^\s{2}(?:optional|required)\s+int64\s+(.+?)\s+\(TIMESTAMP\(NANOS")
    return tuple(m.group(1) for line in schema.splitlines() if (m := pattern.match(line)))


def _read(
    spark: SparkSession, name: str, path: str, is_folder: bool
) -> tuple[DataFrame, TableInput]:
    df = spark.read.parquet(path)
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in df.columns]
    if missing:
        raise ContractError(
            name, missing[0], f"required column is missing (has: {list(df.columns)})"
        )
    info = TableInput(name, path, is_folder, tuple(df.columns), _nanos_columns(spark, df))
    return df, info


def _customer_key(df: DataFrame, table: str) -> Column:
    """customer_id as the contract normalises it (text; whole numbers as their decimal text)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = df.schema["customer_id"].dataType
    col = F.col("customer_id")
    if isinstance(dtype, T.StringType):
        return col
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return col.cast("string")
    if isinstance(dtype, T.FloatType | T.DoubleType):
        bad = df.where(col.isNotNull() & (col != F.floor(col))).limit(1).collect()
        if bad:
            raise ContractError(
                table, "customer_id", "ids must be text or whole numbers", bad[0].asDict()
            )
        return col.cast("long").cast("string")
    raise ContractError(
        table, "customer_id", f"ids must be text or whole numbers, got {dtype.simpleString()}"
    )


def _as_ns(df: DataFrame, info: TableInput, column: str) -> Column:
    """A timestamp column as int64 nanoseconds since the epoch, read as the contract reads it."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = df.schema[column].dataType
    col = F.col(column)
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return col.cast("long")  # Parquet nanoseconds (or integers, which pandas reads as ns)
    if isinstance(dtype, T.TimestampType):
        return F.unix_micros(col) * 1000
    if isinstance(dtype, T.TimestampNTZType):
        return F.unix_micros(col.cast("timestamp")) * 1000  # session time zone is UTC
    if isinstance(dtype, T.DateType):
        return F.unix_date(col).cast("long") * NS_PER_DAY
    raise ValueError(
        f"table '{info.name}', column '{column}': the Spark engine needs Parquet timestamps here, "
        f"got {dtype.simpleString()} (convert the column with pandas.to_datetime and rewrite it)"
    )


def _customer_stats(
    customers: DataFrame, info: TableInput, config: FeatureConfig
) -> tuple[dict[str, int], list[str], dict[str, str], tuple[str, ...]]:
    """One pass over customers: their latest timestamps, and the segment columns.

    Segments mirror features.signals.segment_columns on the dtypes pyarrow gives the pandas
    engine: numbers and bools are segments; text, dates, decimals, and bools with missing values
    (object in pandas) are segments when they have at most max_segment_categories distinct
    values; timestamps are not. Returns (the latest stamp in ns per timestamp column, chosen
    columns, their output type,
    columns pandas reads as object)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from features.signals import RESERVED_CUSTOMER_COLUMNS

    numeric = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType)
    textual = (T.StringType, T.DateType, T.DecimalType, T.BinaryType)
    kinds: dict[str, str] = {}
    for f in customers.schema.fields:
        if f.name in RESERVED_CUSTOMER_COLUMNS or f.name in info.nanos_columns:
            continue
        if isinstance(f.dataType, T.BooleanType):
            kinds[f.name] = "bool"
        elif isinstance(f.dataType, numeric):
            kinds[f.name] = "number"
        elif isinstance(f.dataType, textual):
            kinds[f.name] = "text"
    stamps = [c for c in DRIVER_TIMESTAMPS["customers"] if c in customers.columns]
    aggs = [F.max(_as_ns(customers, info, c)).alias(f"max:{c}") for c in stamps]
    for name, kind in kinds.items():
        if kind == "bool":
            aggs.append(F.sum(F.col(name).isNull().cast("long")).alias(f"nulls:{name}"))
        if kind in ("bool", "text"):
            aggs.append(F.countDistinct(F.col(name)).alias(f"distinct:{name}"))
    stats = customers.agg(*aggs).first().asDict()
    latest = {c: int(stats[f"max:{c}"]) for c in stamps if stats[f"max:{c}"] is not None}
    object_columns = tuple(n for n, k in kinds.items() if k == "bool" and stats[f"nulls:{n}"] > 0)
    chosen: list[str] = []
    types: dict[str, str] = {}
    for name, kind in kinds.items():
        if kind == "number" or (kind == "bool" and name not in object_columns):
            chosen.append(name)
            types[name] = "double"
        elif stats[f"distinct:{name}"] <= config.max_segment_categories:
            chosen.append(name)
            types[name] = "string"
    return latest, chosen, types, object_columns


def _timestamp_columns(df: DataFrame, info: TableInput) -> set[str]:
    """Columns the pandas engine reads as datetime64: Spark timestamps and Parquet
    TIMESTAMP(NANOS) (int64 in Spark)."""
    from pyspark.sql import types as T

    stamps = (T.TimestampType, T.TimestampNTZType)
    return {f.name for f in df.schema.fields if isinstance(f.dataType, stamps)} | set(
        info.nanos_columns
    )


def _activity_stats(
    activity: DataFrame, info: TableInput, config: FeatureConfig, until: int
) -> tuple[list[int], tuple[str, ...], int, int | None, bool]:
    """One pass over activity: its latest timestamp, resolve_config's event types (the most
    frequent before `until`) and the number of kinds with rows before `until`
    (FeatureConfig.activity_kinds), its first timestamp before `until` (None: no row before), and
    whether a row before `until` has a value above 0 (features.signals.has_activity_values).

    Ties at the cut-off are broken by name (the pandas engine breaks them by the order of the
    Parquet dictionary); this only matters with more than max_event_types event types."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    event = F.col("event")
    if isinstance(activity.schema["event"].dataType, T.BooleanType):
        event = F.when(event, "True").otherwise("False")  # pandas' str() of a bool
    at = _as_ns(activity, info, "at")
    valued = F.max(F.lit(0))  # no value column: none
    if "value" in activity.columns:
        valued = F.count(F.when((at < F.lit(until)) & (F.col("value") > 0), 1))
    groups = (
        activity.groupBy(event.cast("string").alias("event"))
        .agg(
            F.count(F.when(at < F.lit(until), 1)).alias("n"),
            F.max(at).alias("latest"),
            F.min(F.when(at < F.lit(until), at)).alias("first"),
            valued.alias("valued"),
        )
        .collect()
    )
    latest = [int(r["latest"]) for r in groups if r["latest"] is not None]
    firsts = [int(r["first"]) for r in groups if r["first"] is not None]
    ranked = sorted((-r["n"], r["event"]) for r in groups if r["event"] is not None and r["n"])
    types = tuple(sorted(name for _, name in ranked[: config.max_event_types]))
    has_values = any(r["valued"] for r in groups)
    return latest, types, len(ranked), min(firsts) if firsts else None, has_values


def _active_days_before(
    activity: DataFrame, info: TableInput, config: FeatureConfig, until: int
) -> DataFrame:
    """(customer, day): the distinct days before `until` with qualifying activity (days since
    the epoch), what the lookback and the buying process are resolved from."""
    from pyspark.sql import functions as F

    from features.prepared import DAY_NS

    at = _as_ns(activity, info, "at")
    rows = _qualifying_before(activity, info, config, until)
    return rows.select(
        _customer_key(rows, "activity").alias("customer"),
        ((at - F.pmod(at, F.lit(DAY_NS))) / F.lit(DAY_NS)).cast("long").alias("day"),
    ).distinct()


def _qualifying_before(
    activity: DataFrame, info: TableInput, config: FeatureConfig, until: int
) -> DataFrame:
    """The activity rows before `until` (ns) of the churn definition's qualifying events (all
    events when it names none), as features.labels._qualifying reads them."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    rows = activity.where(_as_ns(activity, info, "at") < F.lit(until))
    if config.churn.qualifying_events is not None:
        event = F.col("event")
        if isinstance(activity.schema["event"].dataType, T.BooleanType):
            event = F.when(event, "True").otherwise("False")
        rows = rows.where(event.cast("string").isin(list(config.churn.qualifying_events)))
    return rows


def _lookback_days(
    activity: DataFrame, info: TableInput, config: FeatureConfig, until: int, labels_until: int
) -> int:
    """features.labels.data_lookback_days on Spark: the distinct active days of each customer
    before `until` (qualifying events only), the median gap between consecutive ones per
    customer, the pauses of the customers who came back in the last horizon before
    `labels_until` (features.labels.returning_recency), and the quantiles of those that
    lookback_from_quantile takes (exact percentiles with linear interpolation, as numpy's
    median and quantile)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from features.labels import LOOKBACK_QUANTILE, RETURN_QUANTILE, lookback_from_quantile
    from features.prepared import DAY_NS

    horizon = config.churn.horizon_days
    days = _active_days_before(activity, info, config, labels_until)
    before = days.where(F.col("day") < until // DAY_NS)
    previous = F.lag("day").over(Window.partitionBy("customer").orderBy("day"))
    gaps = before.select("customer", (F.col("day") - previous).alias("gap")).where(
        "gap IS NOT NULL"
    )
    medians = gaps.groupBy("customer").agg(F.expr("percentile(gap, 0.5)").alias("median"))
    quantile = medians.agg(F.expr(f"percentile(median, {LOOKBACK_QUANTILE})")).first()[0]
    gap = float("nan") if quantile is None else float(quantile)
    back = float("nan")
    if horizon > 0:  # as features.labels.returning_recency, before labels_until
        t_day = labels_until // DAY_NS - horizon
        last = days.where(F.col("day") < t_day).groupBy("customer").agg(F.max("day").alias("last"))
        came_back = days.where(F.col("day") >= t_day).select("customer").distinct()
        pauses = last.join(came_back, "customer").select((F.lit(t_day) - F.col("last")).alias("p"))
        found = pauses.agg(F.expr(f"percentile(p, {RETURN_QUANTILE})")).first()[0]
        back = float("nan") if found is None else float(found)
    return lookback_from_quantile(gap, horizon, back)


def _buying_process(
    activity: DataFrame, info: TableInput, config: FeatureConfig, until: int
) -> tuple[float, ...]:
    """features.signals.data_buying_process on Spark: per customer, the distinct active days
    before `until` (qualifying events only) as (repeat days, first to last day, first day to
    `until`), counted per distinct triple, and the same fit on the collected counts."""
    from pyspark.sql import functions as F

    from features.buying_process import fit_buying_process
    from features.prepared import DAY_NS

    days = _active_days_before(activity, info, config, until)
    spans = days.groupBy("customer").agg(
        (F.count("day") - 1).alias("x"),
        (F.max("day") - F.min("day")).alias("tx"),
        (F.lit(until // DAY_NS) - F.min("day")).alias("age"),
    )
    counted = spans.groupBy("x", "tx", "age").count().collect()
    if not counted:
        return ()
    triples = np.array([[r["x"], r["tx"], r["age"]] for r in counted], dtype=np.int64)
    counts = np.array([r["count"] for r in counted], dtype=np.int64)
    order = np.lexsort(triples.T[::-1])  # as np.unique orders them: the same sums in the fit
    return fit_buying_process(triples[order], counts[order]) or ()


def _current(plan: Plan, as_of: pd.Timestamp) -> DataFrame:
    """The customers table's rows signed up before T and not churned or ended before T (as
    features.labels._current)."""
    from pyspark.sql import functions as F

    customers, info = plan.frames["customers"], plan.infos["customers"]
    t = F.lit(as_of_timestamp(as_of).value)
    current = _as_ns(customers, info, "signup_at") < t
    for ends in ("churned_at", "ended_at"):
        if ends in customers.columns:
            end = _as_ns(customers, info, ends)
            current = current & (end.isNull() | (end >= t))
    return customers.where(current)


def current_customers(plan: Plan, as_of: pd.Timestamp) -> int:
    """Customers signed up before T and not churned or ended before T (as features.labels
    counts them for lapsed_count): one Spark job on the customers table."""
    return int(_current(plan, as_of).count())


def signups_from(plan: Plan, as_of: pd.Timestamp) -> int:
    """Customers whose signup is at or after T (as features.labels.signups_from counts them):
    one Spark job on the customers table."""
    from pyspark.sql import functions as F

    customers, info = plan.frames["customers"], plan.infos["customers"]
    t = F.lit(as_of_timestamp(as_of).value)
    return int(customers.where(_as_ns(customers, info, "signup_at") >= t).count())


def current_never_active(plan: Plan, config: FeatureConfig, as_of: pd.Timestamp) -> int:
    """Customers signed up before T and not churned or ended before T without qualifying
    activity before T (as features.labels.never_active_count counts them): one Spark job."""
    current = _current(plan, as_of)
    ids = current.select(_customer_key(current, "customers").alias("customer"))
    t = as_of_timestamp(as_of).value
    active = _active_days_before(plan.frames["activity"], plan.infos["activity"], config, t)
    return int(ids.join(active.select("customer").distinct(), "customer", "left_anti").count())


def scheduled_cancellations(plan: Plan, as_of: pd.Timestamp) -> pd.DataFrame:
    """features.labels.scheduled_cancellations on Spark: the current customers whose notice,
    given before T (cancel_requested_at), takes effect at T or later, and, at a run on or after
    the data's last day, those whose churned_at lies after the data's end (plan.observed_until,
    features.contract.observed_end) and not before T; soonest first. One Spark job; the few
    rows come to the driver (scores.csv's cancellation_scheduled)."""
    from pyspark.sql import functions as F

    from features.labels import no_scheduled_cancellations

    empty = no_scheduled_cancellations()
    customers, info = plan.frames["customers"], plan.infos["customers"]
    end = plan.observed_until
    t = as_of_timestamp(as_of)
    if "churned_at" not in customers.columns or end is None:
        return empty
    churned = _as_ns(customers, info, "churned_at")
    known = F.lit(False)
    if "cancel_requested_at" in customers.columns:  # as features.labels._notice_pending
        notice = _as_ns(customers, info, "cancel_requested_at")
        known = notice.isNotNull() & (notice < F.lit(t.value))
    if t >= end.normalize():
        known = known | (churned > F.lit(end.value))
    rows = _current(plan, as_of).where(churned.isNotNull() & (churned >= F.lit(t.value)) & known)
    found = rows.select(
        _customer_key(rows, "customers").alias("customer_id"), churned.alias("at")
    ).toPandas()
    if found.empty:
        return empty
    out = pd.DataFrame(
        {
            "customer_id": found["customer_id"].astype("string"),
            "churned_at": pd.to_datetime(found["at"].astype("int64"), unit="ns"),
        }
    )
    return out.sort_values(["churned_at", "customer_id"], kind="stable").reset_index(drop=True)


def lapsed_buyers(plan: Plan, config: FeatureConfig, as_of: pd.Timestamp) -> pd.DataFrame:
    """features.labels.lapsed_customers on Spark: the current customers with qualifying activity
    before T and none in the lookback window [T - lookback, T), with the last qualifying event's
    time, the days since it, the qualifying events and the revenue before T (NaN without
    revenue rows; failed payments left out). Two aggregations, joined; the list comes to the
    driver, which writes it as lapsed.csv (serving.handoff.write_lapsed_csv)."""
    from pyspark.sql import functions as F

    from features.labels import LAPSED_COLUMNS
    from features.prepared import DAY_NS

    t = as_of_timestamp(as_of).value
    start = t - (config.churn.lookback_days or 0) * DAY_NS
    current = _current(plan, as_of)
    ids = current.select(_customer_key(current, "customers").alias("customer")).distinct()
    activity, info = plan.frames["activity"], plan.infos["activity"]
    at = _as_ns(activity, info, "at")
    rows = _qualifying_before(activity, info, config, t)
    per = rows.groupBy(_customer_key(rows, "activity").alias("customer")).agg(
        F.max(at).alias("last"), F.count(F.lit(1)).alias("events")
    )
    lapsed = ids.join(per.where(F.col("last") < F.lit(start)), "customer")
    lapsed = lapsed.join(_back_last_season(plan, config, t), "customer", "left_anti")
    revenue = plan.frames.get("revenue")
    has_revenue = revenue is not None and bool(revenue.limit(1).count())
    if has_revenue:
        paid = revenue.where(_as_ns(revenue, plan.infos["revenue"], "at") < F.lit(t))
        if "kind" in revenue.columns:
            kind = F.col("kind").cast("string")
            paid = paid.where(kind.isNull() | (kind != "failed_payment"))
        sums = paid.groupBy(_customer_key(paid, "revenue").alias("customer")).agg(
            F.sum(F.col("amount").cast("double")).alias("revenue")
        )
        lapsed = lapsed.join(sums, "customer", "left").fillna(0.0, subset=["revenue"])
    found = lapsed.toPandas()
    out = pd.DataFrame(
        {
            "customer_id": found["customer"].astype("string"),
            "last_activity_at": pd.to_datetime(found["last"].astype("int64"), utc=True),
            "days_since_last_activity": (t - found["last"].astype("int64")) / DAY_NS,
            "qualifying_events": found["events"].astype("int64"),
            "revenue_total": found["revenue"].astype("float64") if has_revenue else np.nan,
        },
        columns=list(LAPSED_COLUMNS),
    )
    out = out.sort_values(["days_since_last_activity", "customer_id"], kind="stable")
    return out.reset_index(drop=True)


def _back_last_season(plan: Plan, config: FeatureConfig, t: int) -> DataFrame:
    """features.labels._back_last_season on Spark: the customers (one column, `customer`)
    who came back, within the horizon after T - a year, from a pause of at least the lookback
    and have paused no longer than that now: scored (in the buckets, by eligible_mask), so no
    lapsed buyers. One aggregation over the qualifying active days before T."""
    from pyspark.sql import functions as F

    from features.labels import SEASON_DAYS
    from features.prepared import DAY_NS

    activity, info = plan.frames["activity"], plan.infos["activity"]
    days = _active_days_before(activity, info, config, t)
    year_day, t_day = t // DAY_NS - SEASON_DAYS, t // DAY_NS
    day = F.col("day")
    sides = days.groupBy("customer").agg(
        F.max(F.when(day < F.lit(year_day), day)).alias("paused_from"),
        F.min(F.when(day >= F.lit(year_day), day)).alias("back_on"),
        F.max(day).alias("last"),
    )
    pause = F.col("back_on") - F.col("paused_from")
    return sides.where(
        F.col("paused_from").isNotNull()
        & F.col("back_on").isNotNull()
        & (F.col("back_on") < F.lit(year_day + config.churn.horizon_days))
        & (pause >= F.lit(config.churn.lookback_days or 0))
        & (F.lit(t_day) - F.col("last") <= pause)
    ).select("customer")


def _latest_events(frames: dict[str, DataFrame], infos: dict[str, TableInput]) -> list[int]:
    """The latest `at` of feedback and revenue, in one Spark job."""
    from pyspark.sql import functions as F

    parts = [
        frames[n].select(_as_ns(frames[n], infos[n], "at").alias("at"))
        for n in ("feedback", "revenue")
        if n in frames
    ]
    if not parts:
        return []
    stacked = parts[0] if len(parts) == 1 else parts[0].unionAll(parts[1])
    latest = stacked.agg(F.max("at")).first()[0]
    return [] if latest is None else [int(latest)]


def _has_subscriptions(
    frames: dict[str, DataFrame], infos: dict[str, TableInput], config: FeatureConfig, until: Any
) -> bool:
    """Contractual churn, or revenue rows before `until` with a period; and payments whose
    amount mostly repeats (as features.signals.has_subscriptions)."""
    from pyspark.sql import functions as F

    revenue = frames.get("revenue")
    if config.churn.mode != "contractual":
        if revenue is None or "period" not in revenue.columns:
            return False
        before = _as_ns(revenue, infos["revenue"], "at") < as_of_timestamp(until).value
        if not revenue.where(before & F.col("period").isNotNull()).limit(1).count():
            return False
    return not _metered_amounts(revenue, infos.get("revenue"), until)


def _metered_amounts(revenue: DataFrame | None, info: TableInput | None, until: Any) -> bool:
    """As features.signals.metered_amounts: consecutive payments of a customer (time order)
    before `until` that differ in amount, more than METERED_SHARE of them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from features.signals import METERED_SHARE

    if revenue is None or info is None:
        return False
    at = _as_ns(revenue, info, "at")
    payment = F.lit(True)
    if "kind" in revenue.columns:
        payment = F.col("kind").isNull() | ~F.col("kind").isin("refund", "failed_payment")
    paid = revenue.where(payment).select("customer_id", at.alias("_at"), "amount")
    order = Window.partitionBy("customer_id").orderBy("_at")
    pairs = paid.withColumn("_previous", F.lag("amount").over(order)).where(
        (F.col("_at") < as_of_timestamp(until).value) & F.col("_previous").isNotNull()
    )
    counts = pairs.agg(
        F.count(F.lit(1)).alias("pairs"),
        F.sum(F.when(F.col("amount") != F.col("_previous"), 1).otherwise(0)).alias("changed"),
    ).first()
    if not counts or not counts["pairs"]:
        return False
    return bool(counts["changed"] / counts["pairs"] > METERED_SHARE)


def _has_paid_periods(
    frames: dict[str, DataFrame], infos: dict[str, TableInput], until: Any
) -> bool:
    """Revenue rows before `until` with a period_end, billed in advance (as
    features.signals.has_paid_periods)."""
    from pyspark.sql import functions as F

    from features.signals import ADVANCE_BILLING_SHARE

    revenue = frames.get("revenue")
    if revenue is None or "period_end" not in revenue.columns:
        return False
    at = _as_ns(revenue, infos["revenue"], "at")
    ends = _as_ns(revenue, infos["revenue"], "period_end")
    rows = revenue.where((at < as_of_timestamp(until).value) & F.col("period_end").isNotNull())
    counts = rows.agg(
        F.count(F.lit(1)).alias("rows"), F.sum(F.when(at < ends, 1).otherwise(0)).alias("ahead")
    ).first()
    if not counts or not counts["rows"]:
        return False
    return bool(counts["ahead"] / counts["rows"] >= ADVANCE_BILLING_SHARE)


def _churn_on_anniversaries(
    frames: dict[str, DataFrame], infos: dict[str, TableInput], config: FeatureConfig, until: Any
) -> bool:
    """features.signals.churn_on_anniversaries on the customers churned before `until` (one
    Spark job; their signup and churn instants only, collected: churners are a share of the
    customers, two numbers each)."""
    from features.signals import churn_on_anniversaries

    customers = frames["customers"]
    if config.churn.mode != "contractual" or "churned_at" not in customers.columns:
        return False
    info = infos["customers"]
    churned, signup = _as_ns(customers, info, "churned_at"), _as_ns(customers, info, "signup_at")
    t = as_of_timestamp(until).value
    rows = customers.where(churned.isNotNull() & signup.isNotNull() & (churned < t))
    got = rows.select(signup.alias("signup_at"), churned.alias("churned_at")).toPandas()
    frame = pd.DataFrame(
        {c: pd.to_datetime(got[c].astype("int64"), unit="ns") for c in ("signup_at", "churned_at")}
    )
    return churn_on_anniversaries(frame, config, until)


def _feedback_kinds(
    frames: dict[str, DataFrame], infos: dict[str, TableInput], until: Any
) -> tuple[str, ...]:
    """The kinds of feedback with rows before `until`, in FEEDBACK_KINDS order (as
    features.signals.feedback_kinds): one Spark job."""
    from pyspark.sql import functions as F

    from features.contract import FEEDBACK_KINDS

    feedback = frames.get("feedback")
    if feedback is None:
        return ()
    before = _as_ns(feedback, infos["feedback"], "at") < as_of_timestamp(until).value
    rows = feedback.where(before).select(F.col("kind").cast("string").alias("kind")).distinct()
    present = {r["kind"] for r in rows.collect()}
    return tuple(kind for kind in FEEDBACK_KINDS if kind in present)


def _revenue_kinds(
    frames: dict[str, DataFrame], infos: dict[str, TableInput], until: Any
) -> tuple[str, ...]:
    """The kinds of revenue rows before `until`, in REVENUE_SIGNAL_KINDS order (as
    features.signals.revenue_kinds: a row without a kind, an invoice or an order is a
    payment): one Spark job."""
    from pyspark.sql import functions as F

    from features.config import REVENUE_SIGNAL_KINDS

    revenue = frames.get("revenue")
    if revenue is None:
        return ()
    before = _as_ns(revenue, infos["revenue"], "at") < as_of_timestamp(until).value
    kind = F.col("kind").cast("string") if "kind" in revenue.columns else F.lit(None)
    signal = (
        F.when(kind == "refund", "refund")
        .when(kind == "failed_payment", "failed_payment")
        .otherwise("payment")
    )
    rows = revenue.where(before).select(signal.alias("kind")).distinct()
    present = {r["kind"] for r in rows.collect()}
    return tuple(k for k in REVENUE_SIGNAL_KINDS if k in present)


def _has_users(activity: DataFrame, info: TableInput, until: Any) -> bool:
    """Activity rows before `until` with a user_id (as features.signals.has_users)."""
    from pyspark.sql import functions as F

    if "user_id" not in activity.columns:
        return False
    at = _as_ns(activity, info, "at")
    rows = activity.where((at < as_of_timestamp(until).value) & F.col("user_id").isNotNull())
    return bool(rows.limit(1).count())


def output_schema(
    config: FeatureConfig, segment_types: dict[str, str], with_labels: bool
) -> pa.Schema:
    """as_of, customer_id, feature_names(config) (segments last), churned: the pandas columns."""
    from features.signals import feature_names

    segments = set(config.customer_attributes)
    fields = [pa.field("as_of", pa.timestamp("us"))] if with_labels else []
    fields.append(pa.field("customer_id", pa.string()))
    for name in feature_names(config):
        kind = segment_types.get(name, "double") if name in segments else "double"
        fields.append(pa.field(name, pa.float64() if kind == "double" else pa.string()))
    if with_labels:
        fields.append(pa.field("churned", pa.int8()))
    return pa.schema(fields)


def _spark_type(dtype: pa.DataType) -> Any:
    from pyspark.sql import types as T

    if pa.types.is_list(dtype):
        return T.ArrayType(_spark_type(dtype.value_type), True)
    if pa.types.is_struct(dtype):
        return T.StructType([T.StructField(f.name, _spark_type(f.type), True) for f in dtype])
    mapping = {
        pa.timestamp("us"): T.TimestampNTZType(),
        pa.string(): T.StringType(),
        pa.float64(): T.DoubleType(),
        pa.float32(): T.FloatType(),
        pa.int8(): T.ByteType(),
        pa.int64(): T.LongType(),
        pa.binary(): T.BinaryType(),
    }
    return mapping[dtype]


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, _spark_type(f.type), True) for f in schema])


@dataclass
class Plan:
    """The driver's view of one run: inputs, stacked frame, resolved configuration."""

    frames: dict[str, DataFrame]
    infos: dict[str, TableInput]
    config: FeatureConfig
    observed_until: pd.Timestamp
    segment_types: dict[str, str]
    object_columns: tuple[str, ...]
    # Per-customer frames (customer_id + columns) that travel with each bucket, by name.
    extras: dict[str, DataFrame] = field(default_factory=dict)


def plan_run(
    spark: SparkSession,
    data_dir: str,
    config: FeatureConfig | None,
    until: pd.Timestamp,
    labels_until: pd.Timestamp | None = None,
) -> Plan:
    """Read the tables, check what can be checked from their schemas, and resolve the
    configuration over the whole data set (as resolve_config does with `until` and
    `labels_until`)."""
    from dataclasses import replace

    configure_session(spark)
    config = config or FeatureConfig()
    frames: dict[str, DataFrame] = {}
    infos: dict[str, TableInput] = {}
    for name, (path, is_folder) in find_tables(spark, str(data_dir)).items():
        frames[name], infos[name] = _read(spark, name, path, is_folder)
    # Three Spark jobs: customers, activity, feedback + revenue.
    latest, _segments, types, object_columns = _customer_stats(
        frames["customers"], infos["customers"], config
    )
    activity_latest, event_types, kinds, first_before, has_values = _activity_stats(
        frames["activity"], infos["activity"], config, as_of_timestamp(until).value
    )
    records = [latest[c] for c in ("signup_at",) if c in latest]
    events_latest = activity_latest + _latest_events(frames, infos)
    records += events_latest
    events = bool(events_latest)
    observed_until = observed_end(  # Tables.data_end of all the data
        pd.Timestamp(max(records), unit="ns") if records else None,
        [pd.Timestamp(latest[c], unit="ns") for c in END_COLUMNS if c in latest],
        events,
    )
    if observed_until is None:
        raise ContractError("customers", "signup_at", "the data has no timestamps at all")
    if config.activity_kinds is None:  # as features.signals.resolve_config
        config = replace(config, activity_kinds=kinds >= 2)
    if config.event_types is None:
        config = replace(config, event_types=event_types if config.activity_kinds else ())
    churn = config.churn
    if churn.mode == "non_contractual" and churn.lookback_days is None:  # as resolve_lookback
        from features.labels import returns_until

        t = as_of_timestamp(until).value
        end = returns_until(t, labels_until)
        lookback = _lookback_days(frames["activity"], infos["activity"], config, t, end)
        config = config.with_churn(lookback_days=lookback)
    if config.subscription_signals is None:  # as features.signals.has_subscriptions
        config = replace(
            config, subscription_signals=_has_subscriptions(frames, infos, config, until)
        )
    if config.paid_period_signals is None:  # as features.signals.has_paid_periods
        config = replace(config, paid_period_signals=_has_paid_periods(frames, infos, until))
    if config.anniversary_signals is None:  # as features.signals.churn_on_anniversaries
        config = replace(
            config, anniversary_signals=_churn_on_anniversaries(frames, infos, config, until)
        )
    if config.user_signals is None:  # as features.signals.has_users
        config = replace(
            config, user_signals=_has_users(frames["activity"], infos["activity"], until)
        )
    if config.feedback_kinds is None:  # as features.signals.feedback_kinds
        config = replace(config, feedback_kinds=_feedback_kinds(frames, infos, until))
    if config.revenue_kinds is None:  # as features.signals.revenue_kinds
        config = replace(config, revenue_kinds=_revenue_kinds(frames, infos, until))
    if config.revenue_windows is None:  # as features.signals.resolve_config
        config = replace(config, revenue_windows="month")
    if config.payment_changes is None:  # as features.signals.resolve_config
        config = replace(config, payment_changes="lasting")
    if config.activity_values is None:  # as features.signals.has_activity_values
        config = replace(config, activity_values=has_values)
    if config.long_windows is None:  # as features.signals.spanned_long_windows
        from features.prepared import DAY_NS
        from features.signals import long_windows_within

        spanned: tuple[int, ...] = ()
        if first_before is not None:
            history_days = (as_of_timestamp(until).value - first_before) / DAY_NS
            spanned = long_windows_within(config, history_days)
        config = replace(config, long_windows=spanned)
    if config.buying_process is None:  # as features.signals.resolve_config
        fitted: tuple[float, ...] = ()
        if churn.mode == "non_contractual":
            fitted = _buying_process(
                frames["activity"], infos["activity"], config, as_of_timestamp(until).value
            )
        config = replace(config, buying_process=fitted)
    if config.date_attributes is None:  # as features.signals.resolve_config
        stamps = _timestamp_columns(frames["customers"], infos["customers"])
        dates = tuple(c for c in config.customer_attributes if c in stamps)
        config = replace(config, date_attributes=dates)
    from features.signals import check_customer_attributes, check_resolved

    check_customer_attributes(pd.DataFrame(columns=frames["customers"].columns), config)
    check_resolved(config)
    for col in config.customer_attributes:  # only declared attributes are features
        types.setdefault(col, "double" if col in config.date_attributes else "string")
    return Plan(frames, infos, config, observed_until, types, object_columns)


def _stacked(spark: SparkSession, plan: Plan, buckets: int) -> DataFrame:
    """All tables in one frame: _table, customer_id (normalised), bucket, source order, and
    each table's columns as <table>__<column> (null in the other tables' rows)."""
    from pyspark.sql import functions as F

    parts = []
    for name, df in plan.frames.items():
        info = plan.infos[name]
        key = _customer_key(df, name)
        if info.is_folder:
            files = sorted(r[0] for r in df.select("_metadata.file_path").distinct().collect())
            ranks = F.create_map(*[F.lit(x) for i, f in enumerate(files) for x in (f, i)])
            file_rank = ranks[F.col("_metadata.file_path")].cast("int")
        else:
            file_rank = F.lit(0)
        parts.append(
            df.select(
                F.lit(TABLE_CODES[name]).cast("byte").alias("_table"),
                key.alias("customer_id"),
                file_rank.alias("_file"),
                F.col("_metadata.row_index").alias("_row"),
                *[F.col(c).alias(f"{name}__{c}") for c in df.columns if c != "customer_id"],
            )
        )
    for i, (name, df) in enumerate(plan.extras.items()):
        parts.append(
            df.select(
                F.lit(EXTRA_CODE_BASE + i).cast("byte").alias("_table"),
                F.col("customer_id").cast("string").alias("customer_id"),
                F.lit(0).alias("_file"),
                F.lit(0).cast("long").alias("_row"),
                *[F.col(c).alias(f"{name}__{c}") for c in df.columns if c != "customer_id"],
            )
        )
    stacked = parts[0]
    for part in parts[1:]:
        stacked = stacked.unionByName(part, allowMissingColumns=True)
    stacked = stacked.withColumn("bucket", F.pmod(F.hash("customer_id"), F.lit(buckets)))
    # Hash partitioning on customer_id into `buckets` partitions puts row r into partition
    # pmod(hash(customer_id), buckets) = its bucket: one bucket per task, no two buckets sharing.
    return stacked.repartition(buckets, "customer_id")


# -- in the workers ---------------------------------------------------------------------------


def bucket_tables(part: pa.Table, job: BucketJob) -> BucketTables:
    """One bucket's rows as the contract's tables, read as features.io.read_table reads them,
    validated, and bounded by the whole data's observed edge."""
    from features.contract import validate_tables

    code = part.column("_table")
    frames: dict[str, pd.DataFrame] = {}
    for name, info in job.tables.items():
        own = ["customer_id", "_file", "_row"]
        own += [f"{name}__{c}" for c in info.columns if c != "customer_id"]
        rows = part.select(own).filter(pc.equal(code, TABLE_CODES[name]))
        order = pc.sort_indices(
            rows.select(["_file", "_row"]), [("_file", "ascending"), ("_row", "ascending")]
        )
        rows = rows.take(order)
        columns = {"customer_id": rows.column("customer_id")}
        for col in info.columns:
            if col != "customer_id":
                columns[col] = rows.column(f"{name}__{col}")
        for col in info.nanos_columns:  # int64 nanoseconds back to what pyarrow reads
            columns[col] = pc.cast(columns[col], pa.timestamp("ns"))
        table = pa.table({c: columns[c] for c in info.columns})
        if name != "customers":
            for col in DICTIONARY_COLUMNS:
                if col in table.column_names and pa.types.is_string(table.schema.field(col).type):
                    i = table.column_names.index(col)
                    table = table.set_column(i, col, pc.dictionary_encode(table.column(col)))
        df = table.to_pandas()
        if name == "customers":
            for col in job.object_columns:
                df[col] = df[col].astype(object).where(df[col].notna(), None)
        frames[name] = df
    tables = validate_tables(**frames)
    extras = {}
    for i, (name, columns) in enumerate(job.extras.items()):
        rows = part.filter(pc.equal(code, EXTRA_CODE_BASE + i))
        extras[name] = pa.table(
            {c: rows.column(c if c == "customer_id" else f"{name}__{c}") for c in columns}
        ).to_pandas()
    return BucketTables(
        customers=tables.customers,
        activity=tables.activity,
        feedback=tables.feedback,
        revenue=tables.revenue,
        observed_until=job.observed_until,
        extras=extras,
    )


BucketFunction = Callable[[BucketTables, BucketJob], "pd.DataFrame | pa.Table"]


def _partition_runner(
    job: BucketJob, func: BucketFunction
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        started = time.perf_counter()
        batches = list(batches)
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        del batches
        if table.num_rows == 0:
            return
        received = time.perf_counter()
        buckets = pc.unique(table.column("bucket")).to_pylist()
        for b in sorted(buckets):  # one, unless Spark's hash partitioning ever changes
            part = table if len(buckets) == 1 else table.filter(pc.equal(table["bucket"], b))
            began = time.perf_counter()
            tables = bucket_tables(part, job)
            loaded = time.perf_counter()
            frame = func(tables, job)
            done = time.perf_counter()
            # One line per bucket in the executor's stderr log: where a bucket's time goes.
            print(
                f"churn bucket {b}: {len(tables.customers):,} customers, {part.num_rows:,} rows "
                f"({part.nbytes / 2**20:,.0f} MB as Arrow); received {received - started:.1f}s, "
                f"tables {loaded - began:.1f}s, features {done - loaded:.1f}s, "
                f"{len(frame):,} rows out",
                file=sys.stderr,
                flush=True,
            )
            if len(frame):
                out = (
                    frame
                    if isinstance(frame, pa.Table)
                    else pa.Table.from_pandas(frame, schema=job.out_schema, preserve_index=False)
                )
                yield from out.to_batches(max_chunksize=100_000)

    return run


def _training_rows(dates: tuple[pd.Timestamp, ...]) -> BucketFunction:
    def build(tables: BucketTables, job: BucketJob) -> pd.DataFrame:
        from features.dataset import iter_snapshots

        frames = list(iter_snapshots(tables, dates, job.config))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return build


def _feature_rows(as_of: pd.Timestamp) -> BucketFunction:
    def build(tables: BucketTables, job: BucketJob) -> pd.DataFrame:
        from features.signals import build_features

        return build_features(tables, as_of, job.config)

    return build


# -- running and writing ----------------------------------------------------------------------


_WORKER_ERROR = re.compile(r"^(?:[\w.]+\.)?(ContractError|ValueError): (.+)$", flags=re.MULTILINE)
_CONTRACT_TEXT = re.compile(
    r"^table '(?P<table>[^']+)'(?:, column '(?P<column>[^']+)')?: (?P<problem>.+?)"
    r"(?:; example row: (?P<example>.*))?$"
)


def _reraise_worker_error(err: Exception) -> None:
    """A contract or input error raised in a Python worker, raised again on the driver as itself
    (the CLI prints it as one line) instead of a page of JVM stack trace."""
    found = _WORKER_ERROR.findall(str(err))
    if not found:
        return
    kind, text = found[-1]
    m = _CONTRACT_TEXT.match(text) if kind == "ContractError" else None
    if m:
        raise ContractError(m["table"], m["column"], m["problem"], m["example"]) from err
    raise ValueError(text) from err


def run_buckets(
    spark: SparkSession,
    plan: Plan,
    func: BucketFunction,
    out_schema: pa.Schema,
    buckets: int | None = None,
) -> DataFrame:
    """The lazy Spark frame of func applied to every bucket (nothing runs until it is written)."""
    buckets = buckets or BUCKETS_PER_CORE * spark.sparkContext.defaultParallelism
    if buckets < 1:
        raise ValueError(f"the number of buckets must be positive, got {buckets}")
    job = BucketJob(
        tables=plan.infos,
        config=plan.config,
        observed_until=plan.observed_until,
        object_columns=plan.object_columns,
        out_schema=out_schema,
        extras={name: tuple(df.columns) for name, df in plan.extras.items()},
    )
    stacked = _stacked(spark, plan, buckets)
    return stacked.mapInArrow(_partition_runner(job, func), _spark_schema(out_schema))


@contextmanager
def atomic_output(spark: SparkSession, out: str) -> Iterator[str]:
    """A temporary folder beside out to write into; swapped in for out when the block ends
    without an error, through the Hadoop file system API (an atomic rename on a local disk and
    on HDFS; object stores have no atomic rename). On an error the previous out stays whole."""
    out = str(out).rstrip("/")
    name = out.rsplit("/", 1)[-1]
    parent = out[: -len(name)]  # with its trailing slash; empty for a relative name
    tag = uuid.uuid4().hex[:12]
    tmp = f"{parent}.{name}.tmp-{tag}"
    old = f"{parent}.{name}.old-{tag}"
    fs, jout = _hadoop_path(spark, out)
    _, jtmp = _hadoop_path(spark, tmp)
    _, jold = _hadoop_path(spark, old)
    if jout.getParent() is not None:
        fs.mkdirs(jout.getParent())
    try:
        yield tmp
        if fs.exists(jout):
            if not fs.rename(jout, jold):
                raise OSError(f"could not move the previous output {out} aside")
            if not fs.rename(jtmp, jout):
                fs.rename(jold, jout)
                raise OSError(f"could not move the new output into {out}")
            fs.delete(jold, True)
        elif not fs.rename(jtmp, jout):
            raise OSError(f"could not move the new output into {out}")
    finally:
        if fs.exists(jtmp):
            fs.delete(jtmp, True)


def write_parquet(frame: DataFrame, path: str) -> None:
    """frame.write.parquet, with an error raised in a Python worker raised again as itself."""
    try:
        frame.write.mode("errorifexists").parquet(path)
    except Exception as err:
        _reraise_worker_error(err)
        raise


def write_atomically(spark: SparkSession, frame: DataFrame, out: str) -> int:
    """Write frame as a Parquet folder at out, replacing what was there only when the whole
    job succeeded; returns the rows written."""
    with atomic_output(spark, out) as tmp:
        write_parquet(frame, tmp)
    return int(spark.read.parquet(str(out).rstrip("/")).count())  # from the Parquet footers


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """A small file written from the driver (a report, run.json) on Spark's file system."""
    fs, jpath = _hadoop_path(spark, path)
    stream = fs.create(jpath, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def list_folder(spark: SparkSession, path: str) -> list[str]:
    """Names of the entries of a folder on Spark's file system ([] if it does not exist)."""
    fs, jpath = _hadoop_path(spark, path)
    if not fs.exists(jpath):
        return []
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(jpath))


def path_exists(spark: SparkSession, path: str) -> bool:
    return _exists(spark, path)


def delete_path(spark: SparkSession, path: str) -> None:
    """Delete a file or folder (recursively) on Spark's file system."""
    fs, jpath = _hadoop_path(spark, path)
    fs.delete(jpath, True)


def spark_training_set(
    spark: SparkSession,
    data_dir: str,
    dates: Sequence[object],
    config: FeatureConfig | None,
    out: str,
    buckets: int | None = None,
) -> tuple[int, FeatureConfig]:
    """features.dataset.write_training_set on Spark: one row per (customer, observation date),
    features as of the date and the label, as a Parquet folder at out. Returns rows and the
    resolved configuration."""
    from features.labels import check_horizon_observed, label_window_end

    if not dates:
        raise ValueError("no observation dates given")
    stamps = tuple(as_of_timestamp(d) for d in dates)
    horizon = (config or FeatureConfig()).churn.horizon_days
    labels_until = label_window_end(max(stamps), horizon)
    plan = plan_run(spark, data_dir, config, until=max(stamps), labels_until=labels_until)
    edge = BucketTables(
        customers=pd.DataFrame(), activity=pd.DataFrame(), observed_until=plan.observed_until
    )
    for d in stamps:
        check_horizon_observed(edge, d, plan.config.churn)
    schema = output_schema(plan.config, plan.segment_types, with_labels=True)
    frame = run_buckets(spark, plan, _training_rows(stamps), schema, buckets)
    return write_atomically(spark, frame, out), plan.config


def spark_features(
    spark: SparkSession,
    data_dir: str,
    as_of: object,
    config: FeatureConfig | None,
    out: str,
    buckets: int | None = None,
) -> tuple[int, FeatureConfig]:
    """features.signals.build_features on Spark: one row per customer eligible at T, as a
    Parquet folder at out. Returns rows and the resolved configuration."""
    t = as_of_timestamp(as_of)
    plan = plan_run(spark, data_dir, config, until=t)
    schema = output_schema(plan.config, plan.segment_types, with_labels=False)
    frame = run_buckets(spark, plan, _feature_rows(t), schema, buckets)
    return write_atomically(spark, frame, out), plan.config


def spark_config_for_data(
    spark: SparkSession, data_dir: str, config_path: str | os.PathLike | None = None
) -> FeatureConfig:
    """features.config.config_for_data for a folder Spark reads (local or a cluster URI)."""
    if config_path is not None:
        return feature_config_from_file(config_path)
    path = _join(str(data_dir), DATA_CONFIG_FILE)
    if not _exists(spark, path):
        return FeatureConfig()
    text = "\n".join(r.value for r in spark.read.text(path).collect())
    return FeatureConfig.from_dict(tomllib.loads(text).get("features", {}))


def read_output(path: str | os.PathLike, sort_by: Sequence[str] = ("as_of", "customer_id")):
    """A Spark output folder as one pandas frame, in a stable order (for tests and checks)."""
    frame = pd.read_parquet(path)
    keys = [k for k in sort_by if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True) if keys else frame


__all__ = [
    "BucketJob",
    "BucketTables",
    "atomic_output",
    "configure_session",
    "delete_path",
    "get_spark",
    "list_folder",
    "output_schema",
    "path_exists",
    "plan_run",
    "read_output",
    "require_pyspark",
    "run_buckets",
    "spark_config_for_data",
    "spark_features",
    "spark_training_set",
    "write_atomically",
    "write_bytes",
    "write_parquet",
]

if __name__ == "__main__":  # spark-submit needs a .py file: spark-submit features/spark_engine.py
    from churn.cli import app

    app()
