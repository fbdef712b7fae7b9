"""The weekly job on Apache Spark: serving.batch.run_scoring for customer bases beyond one machine.

The same code does the work: each customer-hash bucket (features.spark_engine) runs
features.signals.build_features, serving.batch.iter_scores with the champion model (broadcast
once to the executors) and serving.batch.segment_sums_for. The previous run's features and
probabilities are shuffled into the same buckets, so "change since the previous run" is
computed exactly as in the pandas engine. A bucket returns its customers' features and scores,
and one row holding its segment sums (Arrow IPC bytes): sums add up over buckets, and the driver
turns the total into the report with serving.batch.report_from_sums.

The partition has the pandas engine's layout, OUT/as_of=YYYY-MM-DD/ with scores.parquet,
features.parquet and contributions.parquet (Parquet folders here: pandas, pyarrow and the service read them as tables),
segments.parquet and run.json, built in a temporary folder and swapped in whole at the end; in
a local folder also scores.csv, alerts.parquet, alerts.csv, (non-contractual churn)
lapsed.csv (serving.handoff, serving.alerts) and report.html without cohort retention
(reporting.report_html).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.check import EVENT_TABLES, recent_quiet_week_notes, stale_from_days
from features.contract import TIMESTAMP_COLUMNS, Tables
from features.prepared import DAY_NS, as_of_timestamp
from features.spark_engine import (
    BucketJob,
    BucketTables,
    atomic_output,
    current_customers,
    current_never_active,
    delete_path,
    lapsed_buyers,
    list_folder,
    output_schema,
    path_exists,
    plan_run,
    run_buckets,
    signups_from,
    write_bytes,
    write_parquet,
)
from features.spark_engine import scheduled_cancellations as spark_scheduled_cancellations
from reporting.report_html import write_partition_report
from retention.metrics import combine_segment_sums, segment_labels
from serving.alerts import write_partition_alerts
from serving.batch import (
    CONTRIBUTIONS_FILE,
    FEATURES_FILE,
    PAID_PERIOD_FEATURE,
    PARTITION_PREFIX,
    RUN_FILE,
    SCORES_FILE,
    SCORES_SCHEMA,
    SEGMENTS_FILE,
    Log,
    PreviousRun,
    ScoringRun,
    SegmentSums,
    band_rows_note,
    baseline_date,
    iter_scores,
    near_tie_note,
    paid_period_warning,
    report_from_sums,
    report_plan,
    report_segments,
    run_summary,
    scheduled_dates,
    scheduled_note,
    scheduled_summary,
    scored_data_churn,
    scores_as_previous,
    segment_sums_for,
    signups_note,
    write_model_scores_csv,
)
from serving.config import ScoringConfig
from serving.handoff import LAPSED_CSV, write_lapsed_csv
from serving.partitions import refuse_run_date
from training.model import ChurnModel

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

KIND = "_kind"  # 0: a customer's features and score; 1: a bucket's segment sums
CUSTOMER_ROW, SUMS_ROW = 0, 1
FEATURE_PREFIX, SCORE_PREFIX, CONTRIB_PREFIX = "feature__", "score__", "contribution__"
PREVIOUS = "previous"  # the extra table: the previous run's features and probability
START = "start_bands"  # the extra table: the bands of the run one horizon back (report_plan)


def local_folder(uri: str) -> Path | None:
    """The local path of a folder URI (a plain path or file:), None on a cluster's file
    system (hdfs://, s3a://)."""
    uri = str(uri)
    if uri.startswith("file:"):
        return Path(urlparse(uri).path)
    return None if "://" in uri else Path(uri)


def baseline_bands(scores_parquet: Path, model: ChurnModel) -> pd.DataFrame:
    """A first run's scores a week before, as serving.alerts compares with them: each
    customer's probability then (previous_probability) and its band, without the drivers
    (the buckets kept none); customers without one are left out (new, as in the pandas
    engine's baseline)."""
    table = ds.dataset(str(scores_parquet), format="parquet").to_table(
        columns=["customer_id", "previous_probability"]
    )
    frame = table.to_pandas()
    frame = frame[frame["previous_probability"].notna()].reset_index(drop=True)
    probability = frame["previous_probability"].to_numpy(dtype="float64")
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "churn_probability": probability,
            "risk_band": model.risk_band(probability),
            "top_feature": None,
            "top_reason": None,
        }
    )


def _partition_uri(out_dir: str, as_of: pd.Timestamp) -> str:
    return f"{str(out_dir).rstrip('/')}/{PARTITION_PREFIX}{as_of.date().isoformat()}"


def previous_partition_uri(
    spark: SparkSession, out_dir: str, as_of: pd.Timestamp
) -> tuple[pd.Timestamp, str] | None:
    """The latest complete partition (with run.json) before as_of, on Spark's file system."""
    found = []
    for name in list_folder(spark, out_dir):
        if not name.startswith(PARTITION_PREFIX):
            continue
        try:
            date = pd.Timestamp(name[len(PARTITION_PREFIX) :])
        except ValueError:
            continue
        uri = f"{str(out_dir).rstrip('/')}/{name}"
        if date < as_of and path_exists(spark, f"{uri}/{RUN_FILE}"):
            found.append((date, uri))
    return max(found) if found else None


def _wide_schema(features: pa.Schema, model: ChurnModel) -> pa.Schema:
    fields = [pa.field(KIND, pa.int8()), pa.field("customer_id", pa.string())]
    fields += [
        pa.field(FEATURE_PREFIX + f.name, f.type) for f in features if f.name != "customer_id"
    ]
    fields += [
        pa.field(SCORE_PREFIX + f.name, f.type) for f in SCORES_SCHEMA if f.name != "customer_id"
    ]
    fields += [pa.field(CONTRIB_PREFIX + name, pa.float32()) for name in model.feature_names]
    fields += [pa.field("metric_sums", pa.binary()), pa.field("risk_sums", pa.binary())]
    return pa.schema(fields)


def _ipc_bytes(frame: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pandas()


def _bucket_rows(n: int, columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
    """n rows of the wide schema: the given columns, nulls elsewhere."""
    return pa.table(
        {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema
    )


def _scoring_rows(
    as_of: pd.Timestamp,
    period_start: pd.Timestamp,
    by: list[str],
    model_ref: Any,
    model_version: str,
    top: int,
    previous_as_of: pd.Timestamp | None,
    feature_schema: pa.Schema,
    currency: str | None,
    has_start: bool = False,
    scheduled: pd.Series | None = None,
    scheduled_share: float = 1.0,
) -> Callable[[BucketTables, BucketJob], pa.Table]:
    def build(tables: BucketTables, job: BucketJob) -> pa.Table:
        from features.signals import build_features

        model: ChurnModel = model_ref.value
        features = build_features(tables, as_of, job.config)
        before = PreviousRun()
        # the band at the period's start: from the partition scored then (serving.batch.
        # start_bands), when the run has a previous one
        start = tables.extras[START][["customer_id", "risk_band"]] if has_start else None
        if previous_as_of is not None:
            previous = tables.extras[PREVIOUS]
            scores = previous[previous["churn_probability"].notna()]
            rows = previous[previous["_in_features"].fillna(False).astype(bool)]
            before = PreviousRun.of(
                scores[["customer_id", "churn_probability"]],
                features=rows.drop(columns=["churn_probability", "risk_band", "_in_features"]),
                as_of=previous_as_of,
            )
        else:  # a first run: the same bucket's scores a week earlier (serving.batch)
            base = baseline_date(as_of)
            then = build_features(tables, base, job.config)
            if not then.empty:
                before = scores_as_previous(
                    model,
                    then,
                    model_version,
                    base,
                    top=top,
                    currency=currency,
                    scheduled=scheduled,
                    scheduled_share=scheduled_share,
                )
        chunks = list(
            iter_scores(
                model, features, model_version, before, top, currency=currency, as_of=as_of,
                scheduled=scheduled, scheduled_share=scheduled_share,
            )
        )  # fmt: skip
        score_table = (
            pa.concat_tables([s for s, _ in chunks]) if chunks else SCORES_SCHEMA.empty_table()
        )
        scores = score_table.to_pandas()
        sums = segment_sums_for(
            tables, scores, features, model, period_start, as_of, by,
            start_scores=start,
        )  # fmt: skip

        schema = job.out_schema
        n = len(features)
        feature_table = pa.Table.from_pandas(features, schema=feature_schema, preserve_index=False)
        if chunks:
            contributions = pa.concat_tables([c for _, c in chunks])
        else:
            contributions = pa.table({n: pa.array([], pa.float32()) for n in model.feature_names})
        columns: dict[str, pa.Array] = {
            KIND: pa.array([CUSTOMER_ROW] * n, pa.int8()),
            "customer_id": feature_table.column("customer_id"),
        }
        for name in feature_table.column_names[1:]:
            columns[FEATURE_PREFIX + name] = feature_table.column(name)
        for name in score_table.column_names[1:]:
            columns[SCORE_PREFIX + name] = score_table.column(name)
        for name in model.feature_names:
            columns[CONTRIB_PREFIX + name] = contributions.column(name)
        customers = _bucket_rows(n, columns, schema)
        totals = _bucket_rows(
            1,
            {
                KIND: pa.array([SUMS_ROW], pa.int8()),
                "metric_sums": pa.array([_ipc_bytes(sums.metrics)], pa.binary()),
                "risk_sums": pa.array([_ipc_bytes(sums.risk)], pa.binary()),
            },
            schema,
        )
        return pa.concat_tables([customers, totals])

    return build


def _probability_spread(customers: DataFrame) -> tuple[float, float, float]:
    """serving.batch.probability_spread of the scored customers' probabilities, in one Spark
    job: the population standard deviation of their log-odds and the 10th and 90th percentiles
    (Spark SQL's exact percentile, interpolated as numpy's)."""
    from pyspark.sql import functions as F

    p = F.col(SCORE_PREFIX + "churn_probability")
    clipped = F.least(F.greatest(p, F.lit(1e-9)), F.lit(1 - 1e-9))
    row = customers.agg(
        F.stddev_pop(F.log(clipped / (1 - clipped))).alias("std"),
        F.percentile(p, F.array(F.lit(0.1), F.lit(0.9))).alias("q"),
    ).first()
    if row is None or row["std"] is None:
        return float("nan"), float("nan"), float("nan")
    return float(row["std"]), float(row["q"][0]), float(row["q"][1])


def _check_segments(plan_customers: DataFrame, by: list[str]) -> None:
    """Unknown segment names fail on the driver, with segment_labels' own message."""
    columns = {
        c: pd.Series(dtype="datetime64[ns]" if c in TIMESTAMP_COLUMNS["customers"] else object)
        for c in plan_customers.columns
    }
    empty = Tables(customers=pd.DataFrame(columns), activity=pd.DataFrame())
    segment_labels(empty, [s for s in by if s != "risk_band"])


def _previous_frame(spark: SparkSession, partition: str) -> DataFrame:
    from pyspark.sql import functions as F

    features = spark.read.parquet(f"{partition}/{FEATURES_FILE}")
    features = features.withColumn("_in_features", F.lit(True))
    scores = spark.read.parquet(f"{partition}/{SCORES_FILE}").select(
        "customer_id", "churn_probability", "risk_band"
    )
    return features.join(scores, on="customer_id", how="full_outer")


def _days_and_counts(
    frames: dict[str, Any], t: pd.Timestamp
) -> tuple[dict[str, tuple[Any, pd.Timestamp]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per event table: its distinct days with rows before t and its last timestamp before t
    (features.check.stale_from_days), and its rows per day (features.check.
    recent_quiet_week_notes), from one Spark aggregation per table: a few thousand days."""
    from pyspark.sql import functions as F

    found, counted = {}, {}
    for name in EVENT_TABLES:
        frame = frames.get(name)
        if frame is None:
            continue
        before = frame.where(F.col("at") < F.lit(t.value))  # "at": nanoseconds since 1970
        day = F.floor(F.col("at") / F.lit(DAY_NS)).cast("long").alias("day")
        rows = before.groupBy(day).agg(F.max("at").alias("last"), F.count("*").alias("n"))
        rows = sorted(rows.collect(), key=lambda r: r["day"])
        if rows:
            numbers = np.array([r["day"] for r in rows], dtype="int64")
            found[name] = (
                numbers.astype("datetime64[D]"),
                pd.Timestamp(max(r["last"] for r in rows), unit="ns"),
            )
            counted[name] = (numbers, np.array([r["n"] for r in rows], dtype="int64"))
    return found, counted


def spark_run_scoring(
    spark: SparkSession,
    data_dir: str,
    as_of: object,
    model: ChurnModel,
    model_version: str,
    out_dir: str,
    *,
    model_info: dict | None = None,
    segments_by: list[str] | None = None,
    top: int = 3,
    buckets: int | None = None,
    log: Log = print,
    force: bool = False,
    currency: str | None = None,
    observed_until: str | None = None,
    settings: ScoringConfig | None = None,
) -> ScoringRun:
    """serving.batch.run_scoring on Spark: the data folder and the partitions are Parquet paths
    (local or a cluster's file system); the result has the same rows and values (observed_until
    as there: the scored data's).

    The run date is checked as `churn score` checks it on the pandas engine
    (serving.partitions.refuse_run_date: not in the future, not further past the data's end
    than the model's horizon, unless `force`) once planning has found the data's end, before
    any bucket runs; run.json records that end (data_end), so the service can apply the same
    rule to the partition. currency: for amounts in the reasons (the [scoring] section);
    settings: the alert rules (the [scoring] section).

    In a local output folder the partition also gets the pandas engine's hand-off files,
    written by the same functions from the Parquet folders: scores.csv, lapsed.csv under
    non-contractual churn (features.spark_engine.lapsed_buyers), and alerts.parquet and
    alerts.csv against the previous partition, or on a first run against the probabilities
    and bands a week before (without their drivers, so no "new top reason" alert on a first
    run). On a cluster's file system those files are not written (the log says so)."""
    t = as_of_timestamp(as_of)
    config = model.features_config()
    log(f"planning: reading the tables under {data_dir} ...")
    plan = plan_run(spark, str(data_dir), config, until=t)
    data_end = pd.Timestamp(plan.observed_until)
    refuse_run_date(t.date(), data_end.to_pydatetime(), model.horizon_days, force, log)
    model_info = {"data_end": data_end.isoformat(), **(model_info or {})}
    previous = previous_partition_uri(spark, out_dir, t)
    previous_as_of = previous[0] if previous is not None else None
    by, period_start = report_plan(model, segments_by, t)
    _check_segments(plan.frames["customers"], by)
    start = None
    if previous is not None:
        log(f"previous run: {previous[0].date()}")
        plan.extras[PREVIOUS] = _previous_frame(spark, previous[1])
        # as serving.batch.start_bands: the newest partition on or before the period's start
        start = previous_partition_uri(spark, out_dir, period_start + pd.Timedelta(1, "ns"))
    if start is not None:
        plan.extras[START] = spark.read.parquet(f"{start[1]}/{SCORES_FILE}").select(
            "customer_id", "risk_band"
        )
    else:
        log(f"segment report: {band_rows_note(None, period_start)}")
    days, day_counts = _days_and_counts(plan.frames, t)
    stale = stale_from_days(days, t)
    for warning in stale:
        log(f"warning: {warning}")
    quiet = recent_quiet_week_notes(day_counts, t)
    for warning in quiet:
        log(f"warning: {warning}")
    has_revenue = "revenue" in plan.frames and bool(plan.frames["revenue"].limit(1).count())

    feature_schema = output_schema(plan.config, plan.segment_types, with_labels=False)
    schema = _wide_schema(feature_schema, model)
    model_ref = spark.sparkContext.broadcast(model)
    leaving = spark_scheduled_cancellations(plan, t)  # a few rows, on the driver
    due = scheduled_dates(leaving)
    share = (settings or ScoringConfig()).scheduled_cancellation_share
    if len(due):
        log(scheduled_note(due, t, model.horizon_days, share))
    build = _scoring_rows(
        t, period_start, by, model_ref, str(model_version), top, previous_as_of,
        feature_schema, currency, has_start=start is not None, scheduled=due,
        scheduled_share=share,
    )  # fmt: skip
    rows = run_buckets(spark, plan, build, schema, buckets)

    target = _partition_uri(out_dir, t)
    with atomic_output(spark, target) as tmp:
        log(f"features and scores per bucket as of {t.date()} with model version {model_version}")
        write_parquet(rows, f"{tmp}/_rows")
        wide = spark.read.parquet(f"{tmp}/_rows")
        customers = wide.where(wide[KIND] == CUSTOMER_ROW)
        scored = customers.count()
        if scored == 0:
            raise ValueError(
                f"no customers are eligible on {t.date()}: check the run date against the data"
            )
        log(f"writing features and scores of {scored:,} customers")
        for prefix, names, file in (
            (FEATURE_PREFIX, feature_schema.names[1:], FEATURES_FILE),
            (SCORE_PREFIX, SCORES_SCHEMA.names[1:], SCORES_FILE),
            (CONTRIB_PREFIX, model.feature_names, CONTRIBUTIONS_FILE),
        ):  # each file: customer_id, then its own columns without the prefix
            columns = [customers[prefix + name].alias(name) for name in names]
            write_parquet(customers.select("customer_id", *columns), f"{tmp}/{file}")
        parts = wide.where(wide[KIND] == SUMS_ROW).select("metric_sums", "risk_sums").collect()
        dimensions = report_segments(by)
        sums = SegmentSums(
            metrics=combine_segment_sums([_from_ipc(r[0]) for r in parts], dimensions),
            risk=combine_segment_sums([_from_ipc(r[1]) for r in parts], dimensions),
        )
        segments = report_from_sums(
            sums, period_start, t, has_revenue, plan.observed_until, config.churn.mode
        )
        summary = run_summary(
            t, previous_as_of, model_version, model_info, segments, model, currency
        )
        tie = near_tie_note(*_probability_spread(customers))
        if tie:
            summary["band_notes"].append(tie)
        # as serving.batch.compared_with_baseline: a customer scored now had a score a week ago
        compared = previous is None and bool(
            customers.where(customers[SCORE_PREFIX + "previous_probability"].isNotNull())
            .limit(1)
            .count()
        )
        summary["first_run_baseline"] = baseline_date(t).date().isoformat() if compared else None
        if len(leaving):  # the scored among them (a few rows; the scored stay in Spark)
            ids = spark.createDataFrame(leaving[["customer_id"]].astype(str))
            found = ids.join(customers.select("customer_id"), "customer_id").toPandas()
            leaving = leaving[leaving["customer_id"].astype(str).isin(found["customer_id"])]
        summary.update(scheduled_summary(leaving, t, config.churn.horizon_days, share))
        local = local_folder(tmp)
        report_alerts: pd.DataFrame | None = None
        if local is None:
            log(
                "scores.csv, alerts, lapsed.csv and report.html: written into a local output "
                "folder only, not to " + tmp
            )
        else:
            ranges = write_model_scores_csv(model, local, scheduled=leaving)
            against: tuple[pd.Timestamp, Path | pd.DataFrame] | None = None
            if previous is not None:
                against = (previous[0], Path(local_folder(previous[1]) or previous[1]))
            elif compared:
                against = (baseline_date(t), baseline_bands(local / SCORES_FILE, model))
            alerts = write_partition_alerts(local, t, against, settings, ranges)
            log(f"alerts: {len(alerts):,} customers (alerts.parquet, alerts.csv)")
            if config.churn.mode == "non_contractual":  # the win-back list, as serving.batch
                lapsed = lapsed_buyers(plan, config, t)
                listed = write_lapsed_csv(lapsed, local / LAPSED_CSV, currency)
                summary["customers_lapsed_listed"] = listed
            report_alerts = alerts
        summary["customers_lapsed"] = (
            current_customers(plan, t) - scored if config.churn.mode == "non_contractual" else 0
        )  # as serving.batch counts them (features.labels.lapsed_count)
        summary["customers_never_active"] = (
            current_never_active(plan, config, t) if config.churn.mode == "non_contractual" else 0
        )  # features.labels.never_active_count
        summary["customers_signing_up_from_run_date"] = signups_from(plan, t)
        if summary["customers_signing_up_from_run_date"]:
            log(signups_note(summary["customers_signing_up_from_run_date"], t))
        summary["stale_tables"] = stale
        summary["quiet_week_notes"] = quiet
        ended = 0  # as serving.batch.paid_period_ended counts them
        if PAID_PERIOD_FEATURE in feature_schema.names:
            ended = customers.where(customers[FEATURE_PREFIX + PAID_PERIOD_FEATURE] < 0).count()
            churn = scored_data_churn(model, observed_until)
            warning = paid_period_warning(ended, scored, churn, t)
            if warning:
                log(f"warning: {warning}")
        summary["paid_period_ended"] = ended
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(segments, preserve_index=False), sink)
        write_bytes(spark, f"{tmp}/{SEGMENTS_FILE}", sink.getvalue().to_pybytes())
        write_bytes(
            spark, f"{tmp}/{RUN_FILE}", json.dumps(summary, indent=1, sort_keys=True).encode()
        )
        if local is not None:  # the page people open, without cohort retention (its tables)
            shown = None
            if previous is not None:
                shown = (previous[0], Path(local_folder(previous[1]) or previous[1]))
            write_partition_report(
                local, None, segments, summary, shown, alerts=report_alerts,
                churn_mode=config.churn.mode, currency=currency,
                activity_events=config.churn.qualifying_events,
                model=f"{(model_info or {}).get('model_name', 'model')} version {model_version}",
            )  # fmt: skip
            log("report: report.html (without cohort retention: churn retention measures it)")
        delete_path(spark, f"{tmp}/_rows")
    model_ref.unpersist()
    log(f"wrote {target}")
    return ScoringRun(t, target, summary, segments, previous_as_of)
