"""The `churn` command line: one entry point for data, features, training, scoring and metrics.

Commands are thin: they parse options, call the library and print a summary. Errors in the
user's input (a broken table, a bad date) are printed as one clear line with exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer

from churn.cli_metrics import register as register_metrics_commands
from churn.options import BucketsOption, ConfigFile, DataUri, EngineOption
from features.config import FeatureConfig, config_for_data, config_path_for_data
from features.contract import ContractError, Tables

if TYPE_CHECKING:
    from features.check import Finding
    from training.config import TrainConfig

MODEL_NAME_ENV = "CHURN_MODEL_NAME"  # the same variable the service reads
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        "--name",
        help="Registered model name (one per dataset). Default: [training] model_name of the "
        "configuration, else churn-<data folder>.",
    ),
]
ServedModelName = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        "--name",
        envvar=MODEL_NAME_ENV,
        help="Registered model name whose champion is served. Default: the one of --data.",
    ),
]

app = typer.Typer(
    help="Customer-churn prediction: data, features, models, scores and retention metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(
    help="Map raw exports onto the data contract: --mapping FILE, or a ready preset.",
    no_args_is_help=True,
    invoke_without_command=True,
)
app.add_typer(import_app, name="import")
register_metrics_commands(app)  # churn metrics, churn retention


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn input errors into one readable line and exit code 2 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ContractError, ValueError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None
        except OSError as err:  # a missing file, a full disk, a read-only folder
            typer.echo(f"error: {os_error_text(err)}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper


def os_error_text(err: OSError) -> str:
    """One line for a system error: what failed and on which file, without the errno noise."""
    if err.strerror and err.filename:
        return f"{err.strerror}: {err.filename}"
    return str(err)


def echo_progress(label: str) -> Callable[[int, int, pd.Timestamp, int], None]:
    """A progress callback printing one line per observation date to stderr."""
    started = time.perf_counter()

    def report(i: int, total: int, as_of: pd.Timestamp, rows: int) -> None:
        elapsed = time.perf_counter() - started
        typer.echo(
            f"  {label} {i}/{total}  as of {as_of.date()}  {rows:,} rows  {elapsed:.1f}s", err=True
        )

    return report


def write_frame(df: pd.DataFrame, out: Path) -> None:
    """Write a table atomically as Parquet or CSV, chosen by the file's extension."""
    from features.io import atomic_file

    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"output '{out}' must end in .parquet or .csv")
    with atomic_file(out) as tmp:
        if out.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)


def _with_overrides(
    config: FeatureConfig, mode: str | None, horizon: str | None, lookback: str | None
) -> FeatureConfig:
    from features.dataset import parse_days

    changes: dict[str, Any] = {}
    if mode is not None:
        changes["mode"] = mode.replace("-", "_")
    if horizon is not None:
        changes["horizon_days"] = parse_days(horizon)
    if lookback is not None:
        changes["lookback_days"] = parse_days(lookback)
    return config.with_churn(**changes) if changes else config


@app.command("demo-data")
@user_errors
def demo_data(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the demo tables and truth.parquet into.")
    ],
    customers: Annotated[
        int, typer.Option("--customers", min=10, help="Number of customers.")
    ] = 2000,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same data.")
    ] = 0,
    drift_at: Annotated[
        str | None,
        typer.Option(
            "--drift-at",
            help="Plant a change from this date (YYYY-MM-DD) for monitoring to find: keep only "
            "a quarter of the report_view events and the pro plan's price doubled.",
        ),
    ] = None,
) -> None:
    """Generate a realistic demo dataset in the contract's shape, with each customer's true
    churn probability per observation date in truth.parquet."""
    from features.prepared import as_of_timestamp
    from ingest.demo_data import DemoConfig, write_demo

    started = time.perf_counter()
    drift = as_of_timestamp(drift_at) if drift_at else None
    summary = write_demo(out, DemoConfig(n_customers=customers, seed=seed, drift_at=drift))
    typer.echo(f"demo data written to {out} in {time.perf_counter() - started:.1f}s")
    for key, value in summary.items():
        typer.echo(f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}")


@import_app.callback()
@user_errors
def import_command(
    ctx: typer.Context,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping", help="The import mapping (TOML): sources, columns, types, churn."
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source", help="Folder the mapping's file paths are relative to (default: its own)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to write the contract's tables into.")
    ] = None,
) -> None:
    """Map raw exports (CSV, Parquet, JSON lines, SQL queries) onto the contract with a
    declarative mapping; writes the tables, config.toml and an import report (report.md,
    report.json)."""
    if ctx.invoked_subcommand is not None:
        if mapping is not None or source is not None or out is not None:
            raise ValueError("--mapping/--source/--out go with `churn import`, not with a preset")
        return
    if mapping is None or out is None:
        raise ValueError("churn import needs --mapping FILE and --out DIR (and --source DIR)")
    from ingest.importer import import_with_mapping
    from ingest.mapping import load_mapping

    started = time.perf_counter()
    parsed = load_mapping(mapping)
    report = import_with_mapping(parsed, source if source is not None else mapping.parent, out)
    typer.echo(f"imported to {out} in {time.perf_counter() - started:.1f}s (report: report.md)")
    for line in report.summary_lines():
        typer.echo(f"  {line}")


@import_app.command("online-retail")
@user_errors
def import_online_retail_command(
    src: Annotated[
        Path,
        typer.Argument(help="The raw Online Retail file (.parquet, .csv or .xlsx) or its folder."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the contract's tables into.")],
) -> None:
    """Map the UCI Online Retail invoice lines onto the contract (non-contractual churn): the
    orders mapping (examples/orders/mapping.toml) with its preset; writes an import report."""
    from ingest.importer import write_import
    from ingest.online_retail import (
        import_online_retail_full,
        online_retail_mapping,
        read_online_retail,
    )

    tables, full_report, report = import_online_retail_full(read_online_retail(src))
    write_import(tables, full_report, online_retail_mapping(), out)
    typer.echo(f"Online Retail imported to {out} (report: report.md)")
    for line in report.lines():
        typer.echo(f"  {line}")


@app.command("features")
@user_errors
def features_command(
    # --out is text, not Path: with --engine spark it may be a cluster URI.
    data: DataUri,
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of", help="Observation date T (YYYY-MM-DD): only data before T is used."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Output file (.parquet or .csv); --engine spark: a Parquet folder."
        ),
    ],
    config: ConfigFile = None,
    engine: EngineOption = "pandas",
    buckets: BucketsOption = None,
) -> None:
    """Features as of T: one row per customer eligible at T."""
    from features.prepared import as_of_timestamp

    if engine not in ("pandas", "spark"):
        raise ValueError(f"--engine must be 'pandas' or 'spark', got '{engine}'")
    if engine == "spark":
        from features.signals import feature_names
        from features.spark_engine import get_spark, spark_config_for_data, spark_features

        if not out.rstrip("/").endswith(".parquet"):
            raise ValueError(f"output '{out}' must be a .parquet folder with --engine spark")
        as_of_timestamp(as_of)  # a bad date fails before Spark starts
        spark = get_spark()  # without pyspark: "install with: uv sync --extra spark"
        feature_config = spark_config_for_data(spark, data, config)
        rows, resolved = spark_features(spark, data, as_of, feature_config, out, buckets)
        typer.echo(
            f"{rows:,} customers x {len(feature_names(resolved))} features as of {as_of} "
            f"written to {out} (spark)"
        )
        return
    from features.io import load_tables
    from features.signals import build_features

    tables = load_tables(data)
    frame = build_features(tables, as_of, config_for_data(data, config))
    write_frame(frame, Path(out))
    typer.echo(
        f"{len(frame):,} customers x {frame.shape[1] - 1} features as of {as_of} written to {out}"
    )


@app.command("dataset")
@user_errors
def dataset_command(
    # --out is text, not Path: with --engine spark it may be a cluster URI.
    data: DataUri,
    date_from: Annotated[str, typer.Option("--from", help="First observation date (YYYY-MM-DD).")],
    date_to: Annotated[str, typer.Option("--to", help="Last observation date (YYYY-MM-DD).")],
    out: Annotated[
        str,
        typer.Option("--out", help="Output Parquet file (--engine spark: a Parquet folder)."),
    ],
    every: Annotated[
        str, typer.Option("--every", help="Step between observation dates, e.g. 30d or 1w.")
    ] = "30d",
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="Label horizon, e.g. 30d (default: config).")
    ] = None,
    lookback: Annotated[
        str | None,
        typer.Option(
            "--lookback", help="Non-contractual: activity window that makes a customer eligible."
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="Churn definition: contractual or non-contractual (default: config)."
        ),
    ] = None,
    config: ConfigFile = None,
    engine: EngineOption = "pandas",
    buckets: BucketsOption = None,
) -> None:
    """The training set: one row per (customer, observation date), features as of the date and
    the label for [date, date + horizon)."""
    from features.dataset import observation_dates, parse_days, write_training_set
    from features.io import load_tables

    if engine not in ("pandas", "spark"):
        raise ValueError(f"--engine must be 'pandas' or 'spark', got '{engine}'")
    if Path(out.rstrip("/")).suffix != ".parquet":
        raise ValueError(f"output '{out}' must be a .parquet file")
    if engine == "spark":
        from features.spark_engine import get_spark, spark_config_for_data, spark_training_set

        dates = observation_dates(date_from, date_to, parse_days(every))
        _with_overrides(FeatureConfig(), mode, horizon, lookback)  # bad options fail before Spark
        spark = get_spark()  # without pyspark: "install with: uv sync --extra spark"
        feature_config = _with_overrides(
            spark_config_for_data(spark, data, config), mode, horizon, lookback
        )
        rows, feature_config = spark_training_set(spark, data, dates, feature_config, out, buckets)
    else:
        tables = load_tables(data)
        feature_config = _with_overrides(config_for_data(data, config), mode, horizon, lookback)
        dates = observation_dates(date_from, date_to, parse_days(every))
        rows, feature_config = write_training_set(
            tables, dates, Path(out), feature_config, progress=echo_progress("date")
        )
    churn = feature_config.churn  # resolved: a lookback left to the data is known now
    lookback = f", lookback {churn.lookback_days}d" if churn.mode == "non_contractual" else ""
    typer.echo(
        f"{rows:,} rows over {len(dates)} observation dates ({churn.mode}, horizon {churn.horizon_days}d{lookback}) written to {out}"
    )


@app.command("check")
def check_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with the contract's tables.")],
    config: ConfigFile = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the report: report.md (Markdown) or report.json."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 on warnings too (errors always exit 2).")
    ] = False,
) -> None:
    """Profile a data folder before training: rows, customers, dates and rows per month per
    table, the churn share per month under the folder's churn definition, and warnings about
    attributes that look like the label, cents, midnight-only times, few churners and more.
    Exit 2 on errors (broken data, no rows), 1 on warnings with --strict, else 0."""
    from features.check import check_tables, error_report
    from features.io import atomic_file, load_tables
    from training.config import train_config_from_file

    if out is not None and out.suffix not in (".md", ".json"):
        typer.echo(f"error: --out '{out}' must end in .md or .json", err=True)
        raise typer.Exit(code=2)
    try:
        feature_config = config_for_data(data, config)
        train_config = train_config_from_file(config_path_for_data(data, config))
        tables = load_tables(data)
    except ContractError as err:
        report = error_report(str(data), f"the data breaks the contract: {err}")
    except (ValueError, FileNotFoundError) as err:
        report = error_report(str(data), str(err), code="input")
    else:
        dates = _training_dates(tables, feature_config, train_config)
        feature_config = _lookback_as_training(tables, feature_config, dates)
        report = check_tables(
            tables,
            feature_config,
            data=str(data),
            allow_label_like=train_config.allow_label_like,
            training_dates=dates,
        )
        report.findings.extend(_import_warnings(data))
    typer.echo(report.to_text())
    if out is not None:
        with atomic_file(out) as tmp:
            tmp.write_text(report.to_json() if out.suffix == ".json" else report.to_markdown())
        typer.echo(f"report written to {out}")
    code = report.exit_code(strict)
    if code:
        reason = "errors" if report.errors else "warnings (--strict)"
        typer.echo(f"churn check failed: {reason}", err=True)
    raise typer.Exit(code=code)


def _import_warnings(data: Path) -> list[Finding]:
    """The warnings `churn import` wrote beside the tables (report.json), as check findings: a
    game's store export in 9 currencies was warned about once, in the import's summary, and
    check, the README's step before training, said nothing while the revenue at risk read
    $82,129 where $287 was true."""
    from features.check import Finding

    path = data / "report.json"
    if not path.is_file():
        return []
    try:
        warnings = json.loads(path.read_text()).get("warnings") or []
    except (ValueError, AttributeError):
        return []
    return [Finding("warning", "import", f"the import warned: {w}") for w in warnings]


def _training_dates(
    tables: Tables, feature_config: FeatureConfig, train_config: TrainConfig
) -> list[pd.Timestamp]:
    """The observation dates `churn train` would learn from; none when they cannot be planned
    (check says why)."""
    from training.pipeline import default_dates

    try:
        return default_dates(tables, feature_config, train_config)
    except ValueError:
        return []


def _lookback_as_training(
    tables: Tables, feature_config: FeatureConfig, dates: list[pd.Timestamp]
) -> FeatureConfig:
    """The configuration with a non-contractual lookback left to the data resolved as `churn
    train` resolves it (at its last observation date, `dates`: _training_dates), so that check
    and the model say one lookback (check had said 119 days where the model scored with 105).
    Unchanged when the lookback is set, or there are no training dates."""
    from dataclasses import replace

    from features.labels import label_window_end, resolve_lookback

    churn = feature_config.churn
    if churn.mode != "non_contractual" or churn.lookback_days is not None or not dates:
        return feature_config
    last = max(dates)
    labels_until = label_window_end(last, churn.horizon_days)  # as the training set reads
    return replace(feature_config, churn=resolve_lookback(tables, churn, last, labels_until))


def generator_truth(data_dir: Path) -> pd.DataFrame | None:
    """The demo generator's true churn probabilities (truth.parquet beside its tables), so that
    a run on demo data shows the best possible score on the same holdout rows; None elsewhere."""
    path = Path(data_dir) / "truth.parquet"
    return pd.read_parquet(path) if path.is_file() else None


def _print_training(result) -> None:
    typer.echo("")
    typer.echo(f"MLflow run: {result.run_id}")
    name = getattr(result, "model_name", "") or "model"
    typer.echo(
        f"{name} version {result.version} ({'champion' if result.promoted else 'not promoted'}: {result.promotion_reason})"
    )
    gate = getattr(result, "gate", None)
    lost = gate.lost_to if gate is not None else None
    if lost is not None:
        typer.echo(
            f"the baseline {lost.against} beat the model: {gate.metric} {lost.other:.4f} against "
            f"{lost.candidate:.4f} (by {-lost.gain:.4f})"
        )
    table = result.metrics_table().round(4)
    typer.echo(table.to_string(na_rep="–"))
    probability_metrics = [m for m in ("log_loss", "brier", "ece") if m in table.index]
    if "recency_rule" in table and table.loc[probability_metrics, "recency_rule"].isna().all():
        typer.echo(
            "(– : not measured; the recency rule ranks customers by the days since their last "
            "activity and gives no probabilities, so it has no log loss, Brier score or ECE)"
        )
    holdout = getattr(result, "holdout", None)
    if holdout is not None and "truth" in holdout.metrics:
        best = holdout.metrics["truth"]["roc_auc"]
        got = holdout.metrics["candidate"]["roc_auc"]
        typer.echo(
            f"the generator's truth on the same {holdout.rows:,} holdout rows (the best any model "
            f"can do): ROC AUC {best:.4f}; the model {got:.4f} ({best - got:+.4f} to go)"
        )
    simple = getattr(result, "simple", None)
    if simple is not None:
        typer.echo(
            f"\n{name} version {simple.version} is the {simple.kind} as a model (MLflow run "
            f"{simple.run_id}; same artifact, service and weekly job): "
            f"{'champion' if simple.promoted else 'not promoted'}: {simple.reason}"
        )


@app.command("train")
@user_errors
def train_command(
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder with the contract's tables.")
    ] = None,
    config: ConfigFile = None,
    labeled_table: Annotated[
        Path | None,
        typer.Option(
            "--labeled-table", help="A labeled customer table (CSV/Parquet) instead of --data."
        ),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Labeled table: the customer id column.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label", help="Labeled table: the churn label column.")
    ] = None,
    model_name: ModelName = None,
    allow_label_like: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-label-like",
            help="A declared customer attribute that looks like the label but was checked to be "
            "known before each observation date (repeat for several).",
        ),
    ] = None,
) -> None:
    """Train a churn model, log it to MLflow, register it under the dataset's model name and
    apply the champion gate (it must beat the baselines and the champion on the same holdout)."""
    from dataclasses import replace

    from features.config import config_path_for_data, feature_config_from_file
    from training.config import train_config_from_file
    from training.tracking import model_name_for_data, model_name_for_table

    stop_cleanly_on_sigterm()
    if (data is None) == (labeled_table is None):
        raise ValueError("give either --data DIR or --labeled-table FILE (with --id and --label)")
    if labeled_table is not None:
        from training.labeled_table import train_labeled_table

        if not id_column or not label_column:
            raise ValueError("--labeled-table needs --id COLUMN and --label COLUMN")
        labeled_config = train_config_from_file(config)
        name = model_name_for_table(labeled_table, model_name or labeled_config.labeled_model_name)
        result = train_labeled_table(
            labeled_table,
            id_column,
            label_column,
            replace(labeled_config, labeled_model_name=name),
            log=typer.echo,
        )
        _print_training(result)
        if result.promoted:
            typer.echo(
                f"score current customers: churn score-table --table FILE --id {id_column} "
                f"--label {label_column} --out DIR --model-name {name}"
            )
        return
    from features.io import load_tables
    from training.pipeline import train_from_tables

    path = config_path_for_data(data, config)
    name = model_name_for_data(data, config, model_name)
    # registered at the end, by a run that succeeds: a refused run leaves the registry as it was
    typer.echo(f"model name: {name} (registered when training succeeds)")
    tables = load_tables(data)
    train_config = replace(train_config_from_file(path), model_name=name)
    if allow_label_like:
        allowed = (*train_config.allow_label_like, *allow_label_like)
        train_config = replace(train_config, allow_label_like=allowed)
    result = train_from_tables(
        tables,
        feature_config_from_file(path),
        train_config,
        log=typer.echo,
        truth=generator_truth(data),
    )
    _print_training(result)


def riskiest_lines(partition: Path, n: int = 10) -> list[str]:
    """The n riskiest customers of a partition, each with its probability in percent, its band
    and its reasons in words with their risk points ("+4.2 pts  No activity in the last 34
    days (usually active every 3 days)"), as the report lists them: without the customers whose
    cancellation the export holds (a line says how many ranked among them)."""
    from reporting.formatting import points, probability
    from reporting.report_html import leaving_out_note, riskiest_customers

    top = riskiest_customers(Path(partition) / "scores.parquet", n)
    if top.empty:
        return []
    width = max(len(str(i)) for i in top["customer_id"])
    lines = []
    for row in top.itertuples():
        lines.append(
            f"  {row.customer_id!s:<{width}}  {probability(row.churn_probability):>6}  "
            f"{row.risk_band}"
        )
        for text, pts in row.reasons:
            lines.append(f"      {points(pts):>10}  {text}")
        if not row.reasons:
            lines.append("      (no feature raises the risk above the average customer's)")
    note = leaving_out_note(top)
    return lines + ([f"  {note}"] if note else [])


def stop_cleanly_on_sigterm() -> None:
    """A `kill` (SIGTERM) ends the command through Python's exit path, so that an open MLflow
    run is closed as FAILED instead of being left RUNNING (kill -9 cannot be caught: the next
    `churn train` marks such runs FAILED, training.tracking.mark_dead_runs_failed)."""
    import signal

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def _check_champion_fits(champion, tables, data: str) -> None:
    """Refuse, with the model's name and what is missing, a champion that cannot score this
    data (another dataset's model, or a labeled-table model), before any work is done."""
    if not champion.model.feature_config:
        raise ValueError(
            f"the champion of '{champion.name}' (v{champion.version}) was trained on a labeled "
            "table and cannot score event data; give the dataset's own --model-name"
        )
    needed = champion.model.features_config().customer_attributes or ()
    missing = [c for c in needed if c not in tables.customers.columns]
    if missing:
        raise ValueError(
            f"the champion of '{champion.name}' (v{champion.version}) needs customer columns "
            f"{missing} that the customers table of {data} lacks: is it this dataset's model? "
            "(--model-name)"
        )


MIN_FREE_BYTES = 64 * 1024**2  # a first run's partition of 100k customers is about 20 MB


def _check_run_date(
    run_date: pd.Timestamp, data_end: pd.Timestamp | None, horizon_days: int | None, force: bool
) -> None:
    """Refuse a run date in the future or further past the data than the horizon (a mistyped
    --as-of would otherwise become the partition the service answers from), unless forced:
    serving.partitions.refuse_run_date, which the Spark engine applies too."""
    from serving.partitions import refuse_run_date

    end = data_end.to_pydatetime() if data_end is not None else None
    refuse_run_date(run_date.date(), end, horizon_days, force, lambda m: typer.echo(m, err=True))


def _check_output_folder(out: Path) -> None:
    """The output folder can be written and has room for about two partitions (the new one is
    written beside the one it replaces), checked before the features are built."""
    from features.io import check_writable, folder_bytes
    from serving.batch import list_partitions

    found = list_partitions(out) if out.is_dir() else []
    newest = folder_bytes(found[-1][1]) if found else 0
    check_writable(out, need_bytes=max(2 * newest, MIN_FREE_BYTES))


@app.command("score-table")
@user_errors
def score_table_command(
    table: Annotated[
        Path,
        typer.Option(
            "--table", help="A customer table (CSV/Parquet) with the training table's columns."
        ),
    ],
    id_column: Annotated[str, typer.Option("--id", help="The customer id column.")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for scores.csv, scores.parquet, run.json.")
    ],
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="The churn label column, if the table has one: customers it marks as "
            "churned have left and are not scored.",
        ),
    ] = None,
    model_name: ModelName = None,
    top: Annotated[int, typer.Option("--top", min=1, max=20, help="Reasons per customer.")] = 3,
) -> None:
    """Score a customer table with a model trained by `churn train --labeled-table`: every
    row's churn probability, risk band and reasons, riskiest first (scores.csv). The label
    column may be left in or out; the model is the table's (--model-name, else the name
    `churn train --labeled-table` gives a file of this name)."""
    from serving.batch import write_table_scores
    from training.labeled_table import read_labeled_table, table_for_scoring
    from training.tracking import configure, load_champion, model_name_for_table, run_metrics

    progress = lambda m: typer.echo(m, err=True)  # noqa: E731
    name = model_name_for_table(table, model_name)
    client = configure()
    champion = load_champion(name)
    frame = read_labeled_table(table, id_column)
    progress(f"read {len(frame):,} rows x {frame.shape[1]} columns from {table}")
    features = table_for_scoring(
        frame, id_column, champion.model, log=progress, label_column=label_column
    )
    info = {"model_name": name, "model_run_id": champion.run_id, "table": str(table)}
    notes = []
    if label_column is not None and len(features) < len(frame):
        notes.append(
            f"{len(frame) - len(features):,} of the table's {len(frame):,} customers are not "
            f"scored: their '{label_column}' says they have already churned."
        )
    run = write_table_scores(
        champion.model,
        features,
        champion.version,
        out,
        model_info=info,
        top=top,
        log=progress,
        validation=run_metrics(client, champion.run_id, prefix="cv_"),
        notes=notes,
    )
    typer.echo(
        f"scored {run['customers_scored']:,} customers with {name} v{champion.version} -> {out}"
    )
    ranges = run["band_ranges"]
    typer.echo(
        "risk bands: "
        + ", ".join(
            f"{band} {run['bands'][band]:,} ({ranges[band]})"
            for band in ("high", "medium", "low")
            if band in ranges
        )
    )
    typer.echo(f"{out / 'report.html'}: the page to read (risk, reasons, risk by attribute)")
    typer.echo(f"{out / 'scores.csv'}: riskiest first, with reasons; riskiest customers:")
    for line in riskiest_lines(out, 5):
        typer.echo(line)


@app.command("score")
@user_errors
def score_command(
    # --out is text, not Path: with --engine spark it may be a cluster URI.
    data: DataUri,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Run date (YYYY-MM-DD): data before it is used.")
    ],
    out: Annotated[
        str, typer.Option("--out", help="Folder of scored partitions (one per run date).")
    ],
    model_name: ModelName = None,
    config: ConfigFile = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Segments for the report, e.g. plan,country.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=20, help="Drivers per customer.")] = 3,
    engine: EngineOption = "pandas",
    buckets: BucketsOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Score a run date in the future or further past the data's end than the "
            "model's horizon (refused otherwise; the service never serves such a partition).",
        ),
    ] = False,
) -> None:
    """The weekly job: score every eligible customer with the champion model, with drivers and
    the change since the previous run; write the partition and the segment report."""
    from features.prepared import as_of_timestamp
    from serving.batch import log_scoring_run, run_scoring
    from training.tracking import configure, load_champion, model_name_for_data

    if engine not in ("pandas", "spark"):
        raise ValueError(f"--engine must be 'pandas' or 'spark', got '{engine}'")
    from serving.webhook import WebhookSettings, deliver_from_env

    run_date = as_of_timestamp(as_of)  # a bad date fails before anything starts
    _check_run_date(run_date, None, None, force)
    WebhookSettings.from_env()  # so does an alerts webhook without its secret
    if "://" not in out:  # a local folder: checked before the work, not after it
        _check_output_folder(Path(out))
    name = model_name_for_data(data, config, model_name)
    configure()
    champion = load_champion(name)
    segments = [s.strip() for s in by.split(",") if s.strip()] if by else None
    info = {
        "model_name": name,
        "model_run_id": champion.run_id,
        "horizon_days": int(champion.model.horizon_days),
    }
    progress = lambda m: typer.echo(m, err=True)  # noqa: E731
    from features.config import config_path_for_data
    from serving.config import scoring_config_from_file

    # a cluster URI has no local config.toml: the defaults
    settings = scoring_config_from_file(config_path_for_data(data, config))
    if engine == "spark":
        from features.spark_engine import get_spark
        from serving.spark_batch import spark_run_scoring

        spark = get_spark()  # without pyspark: "install with: uv sync --extra spark"
        run = spark_run_scoring(
            spark, data, as_of, champion.model, champion.version, out, model_info=info,
            segments_by=segments, top=top, buckets=buckets, log=progress, force=force,
            currency=settings.currency, observed_until=_data_observed_until(data, config),
            settings=settings,
        )  # fmt: skip
    else:
        from features.io import load_tables

        tables = load_tables(data)
        _check_champion_fits(champion, tables, data)
        data_end = tables.data_end()
        _check_run_date(run_date, data_end, champion.model.horizon_days, force)
        info["data_end"] = data_end.isoformat()
        run = run_scoring(
            tables, as_of, champion.model, champion.version, out, model_info=info,
            segments_by=segments, top=top, log=progress, settings=settings,
            observed_until=_data_observed_until(data, config),
        )  # fmt: skip
    run_id = log_scoring_run(run, name, champion.version)
    deliver_from_env(out, log=progress)  # this run's alerts and any left pending before
    typer.echo(
        f"scored {run.summary['customers_scored']:,} customers as of {run.as_of.date()} -> {run.partition} (MLflow run {run_id})"
    )
    from reporting.report_html import not_scored_note

    unscored = not_scored_note(
        run.summary, champion.model.features_config().churn, str(run.as_of.date())
    )
    if unscored:
        typer.echo(f"not scored: {unscored}")
    if Path(str(run.partition), "report.html").is_file():
        typer.echo(f"report: {Path(str(run.partition), 'report.html')}")
    from reporting.formatting import band_ranges

    bands = run.summary["bands"]
    ranges = band_ranges(champion.model.band_thresholds)
    typer.echo(
        "risk bands: "
        + ", ".join(
            f"{band} {bands.get(band, 0):,} ({ranges[band]})" if band in ranges
            else f"{band} {bands.get(band, 0):,}"
            for band in ("high", "medium", "low")
        )
    )  # fmt: skip
    for note in run.summary.get("band_notes", []):
        typer.echo(f"  note: {note}")
    if engine == "pandas":  # a Spark partition may be a cluster URI
        typer.echo("riskiest customers (reasons with their risk points):")
        for line in riskiest_lines(Path(run.partition), 5):
            typer.echo(line)
        # monitoring: new partitions, and those whose horizon has passed
        _monitor(
            tables, out, name, segments, partition=Path(run.partition),
            observed_until=_data_observed_until(data, config),
        )  # fmt: skip
    else:
        typer.echo(f"monitoring: run `churn monitor --scores {out} --data {data}`")


def _data_observed_until(data: Path, config: Path | None) -> str | None:
    """The data folder's [features.churn] observed_until: until when churn is observed in the
    data being monitored (a newer export's, not the one the model was trained on)."""
    from features.config import feature_config_from_file

    return feature_config_from_file(config_path_for_data(data, config)).churn.observed_until


def _monitor(
    tables,
    scores: str | Path,
    name: str,
    segments: list[str] | None,
    out=None,
    partition: Path | None = None,
    observed_until: str | None = None,
) -> None:
    """Run monitoring over a scores folder and print the latest partitions' verdicts; with
    `partition` (this run's), its report.html gets the monitoring that includes this run.
    observed_until: the data folder's (_data_observed_until)."""
    from reporting.report_html import REPORT_FILE, refresh_monitoring
    from serving.monitoring_job import PLOT_FILE, monitor_and_record, summary_lines

    result = monitor_and_record(
        tables, scores, name, out=out, segments=segments, observed_until=observed_until,
        log=lambda m: typer.echo(m, err=True),
    )  # fmt: skip
    if partition is not None and out is None and (Path(partition) / REPORT_FILE).is_file():
        refresh_monitoring(Path(partition) / REPORT_FILE, result.entries)
    typer.echo(
        f"monitoring: {len(result.computed)} of {len(result.entries)} partitions examined -> "
        f"{result.path} (plot: {result.path.with_name(PLOT_FILE)})"
    )
    for line in summary_lines(result.entries):
        typer.echo(f"  {line}")


@app.command("monitor")
@user_errors
def monitor_command(
    scores: Annotated[
        Path,
        typer.Option("--scores", help="Folder of scored partitions (the --out of churn score)."),
    ],
    data: Annotated[Path, typer.Option("--data", help="Folder with the contract's tables.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Monitoring file to write (default: SCORES/monitoring.json)."),
    ] = None,
    model_name: ModelName = None,
    config: ConfigFile = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Segments for realized churn (default: the model's categories)."),
    ] = None,
) -> None:
    """Monitoring of the weekly runs: realized churn and performance of every partition whose
    label horizon has passed, drift of features and score against the model's training data,
    the expected performance (CBPE) of recent partitions, and a verdict (fine, watch, retrain)
    per partition; figures to MLflow (one run per model version) and SCORES/monitoring.json."""
    from features.io import load_tables
    from training.tracking import configure, model_name_for_data

    if not scores.is_dir():
        raise ValueError(f"no folder of scored partitions at {scores}: run `churn score` first")
    name = model_name_for_data(data, config, model_name)
    configure()
    segments = [s.strip() for s in by.split(",") if s.strip()] if by else None
    _monitor(
        load_tables(data), scores, name, segments, out=out,
        observed_until=_data_observed_until(data, config),
    )  # fmt: skip


@app.command("promote")
@user_errors
def promote_command(
    version: Annotated[str, typer.Argument(help="The registered model version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded on the model version.")],
    model_name: ModelName = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="The dataset whose model to promote (gives its name)."),
    ] = None,
    config: ConfigFile = None,
    allow_feature_change: Annotated[
        bool,
        typer.Option(
            "--allow-feature-change",
            help="Promote a version whose features differ from the champion's.",
        ),
    ] = False,
) -> None:
    """Force a model version to be the champion (an analyst's decision), recording the reason.
    The model is named by --model-name, or by --data (the same name `churn train` uses). The
    version must load as a churn model of that name with the champion's features."""
    from training.tracking import force_promote, model_name_for_data

    if model_name is None and data is None:
        raise ValueError("give --model-name NAME or --data DIR (the dataset whose model it is)")
    name = model_name_for_data(data, config, model_name) if data is not None else model_name

    force_promote(version, reason, name, allow_feature_change=allow_feature_change)
    typer.echo(f"model {name} version {version} is now the champion ({reason})")


@app.command("demo")
@user_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's data and outputs.")
    ] = Path("demo_out"),
    customers: Annotated[
        int, typer.Option("--customers", min=300, help="Number of demo customers.")
    ] = 5000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """The main job on demo data: generate it, train and register a model, score the latest
    week, and show the riskiest customers and the segment table."""
    from dataclasses import replace

    from churn.cli_metrics import segment_table
    from features.config import config_path_for_data, feature_config_from_file
    from features.io import load_tables
    from ingest.demo_data import DemoConfig, write_demo
    from serving.batch import band_rows_note, log_scoring_run, run_scoring
    from training.config import train_config_from_file
    from training.pipeline import train_from_tables
    from training.tracking import load_champion, model_name_for_data, tracking_uri

    started = time.perf_counter()
    data_dir = out / "data"
    typer.echo(f"1. generating demo data for {customers:,} customers -> {data_dir}")
    write_demo(data_dir, DemoConfig(n_customers=customers, seed=seed))
    tables = load_tables(data_dir)
    path = config_path_for_data(data_dir)
    typer.echo(f"2. training (MLflow: {tracking_uri()})")
    train_config = train_config_from_file(path)
    train_config = replace(train_config, model_name=model_name_for_data(data_dir))
    result = train_from_tables(
        tables,
        feature_config_from_file(path),
        train_config,
        log=typer.echo,
        truth=generator_truth(data_dir),
    )
    _print_training(result)
    champion = load_champion(train_config.model_name)
    as_of = tables.next_run_date()
    # a run one horizon earlier gives the bands at the start of the period the table measures
    earlier = as_of - pd.Timedelta(days=int(champion.model.horizon_days))
    typer.echo(
        f"\n3. scoring every customer as of {earlier.date()} and {as_of.date()} with champion "
        f"version {champion.version}"
    )
    from serving.config import scoring_config_from_file

    settings = scoring_config_from_file(path)  # read once: both runs and the table use it
    info = {
        "model_name": champion.name,
        "model_run_id": champion.run_id,
        "horizon_days": int(champion.model.horizon_days),
        "data_end": tables.data_end().isoformat(),
    }
    for run_date in (earlier, as_of):
        run = run_scoring(
            tables, run_date, champion.model, champion.version, out / "scores", model_info=info,
            log=typer.echo, settings=settings,
        )  # fmt: skip
    log_scoring_run(run, champion.name, champion.version)
    typer.echo(
        "\nThe ten riskiest customers, with their reasons and what each adds to the churn "
        "probability (percentage points):"
    )
    for line in riskiest_lines(Path(run.partition), 10):
        typer.echo(line)
    top_id = pd.read_parquet(
        Path(run.partition) / "scores.parquet", columns=["customer_id", "churn_probability"]
    ).nlargest(1, "churn_probability")["customer_id"]
    seg = run.segments
    table, notes = segment_table(seg, ["plan", "risk_band"], currency=settings.currency)
    typer.echo(
        f"\nSegments: retention from {earlier.date()} to {as_of.date()} (risk bands as of "
        f"{earlier.date()}, so churn by band shows how well they predicted) and predicted risk now:"
    )
    typer.echo(table.to_string(index=False))
    if "risk_band" not in set(seg["dimension"]):
        notes.append(band_rows_note(None, earlier))
    for note in notes:
        typer.echo(note)
    typer.echo(
        f"\ndone in {time.perf_counter() - started:.0f}s; outputs in {out}; `uv run mlflow ui --backend-store-uri {tracking_uri()}` shows the runs"
    )
    typer.echo(
        "\nServe the scores to customer-success tools:\n"
        f"  CHURN_API_TOKEN=secret CHURN_SCORES_DIR={out / 'scores'} CHURN_DATA_DIR={data_dir} uv run churn serve --model-name {champion.name} --port 3000\n"
        "  curl -s -X POST localhost:3000/score -H 'Authorization: Bearer secret' "
        f"-H 'Content-Type: application/json' -d '{{\"customer_ids\": [\"{top_id.iloc[0]}\"]}}'"
    )
    typer.echo(
        f"\nThe weekly report for a customer-success lead (open it in a browser):\n"
        f"  {Path(run.partition) / 'report.html'}"
    )


@app.command("serve")
@user_errors
def serve_command(
    scores: Annotated[
        Path,
        typer.Option(
            "--scores",
            envvar="CHURN_SCORES_DIR",
            help="Folder of scored partitions (the --out of `churn score`).",
        ),
    ] = Path("scores"),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", envvar="CHURN_DATA_DIR", help="The contract's tables, for /segments."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1.")
    ] = 3000,
    model_name: ServedModelName = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Run without a bearer token (local demos only).")
    ] = False,
) -> None:
    """Start the BentoML service on 127.0.0.1: imports the champion from MLflow into the BentoML
    store if needed, then runs `bentoml serve`. Clients send `Authorization: Bearer $CHURN_API_TOKEN`."""
    import os
    import signal
    import subprocess

    from serving.auth import ALLOW_OPEN_ENV, AuthConfigError, GuardSettings
    from serving.model_store import MODEL_NAME_ENV, MODEL_TAG_ENV, ensure_served_model
    from training.tracking import check_model_name, model_name_for_data

    if model_name is not None:
        name = check_model_name(model_name)
    elif data is not None:
        name = model_name_for_data(data)
    else:
        raise ValueError(
            "give --model-name NAME (or CHURN_MODEL_NAME) or --data DIR (its model is served)"
        )

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # LightGBM: one thread a request, the server scales
    if open_:
        env[ALLOW_OPEN_ENV] = "1"
    else:
        try:
            GuardSettings.from_env()
        except AuthConfigError as err:
            raise ValueError(f"{err} (`churn serve --open` does the latter)") from None
    if not scores.is_dir():
        raise ValueError(
            f"no folder of scored partitions at {scores}: run `churn score --out {scores}` first"
        )
    from serving.partitions import PartitionStore

    # The partitions say which model scored them: serve that one, MLflow reachable or not.
    newest = PartitionStore(scores).newest_info()
    stored = ensure_served_model(name, newest, log=lambda m: typer.echo(m, err=True))
    env.update(
        {
            MODEL_TAG_ENV: str(stored.tag),
            MODEL_NAME_ENV: name,
            "CHURN_SCORES_DIR": str(scores.resolve()),
        }
    )
    if data is not None:
        env["CHURN_DATA_DIR"] = str(data.resolve())
    root = Path(__file__).resolve().parents[1]
    service = "serving.service:ChurnService"
    command = [sys.executable, "-m", "bentoml", "serve", service, "--host", "127.0.0.1"]
    typer.echo(f"serving {stored.tag} on http://127.0.0.1:{port} (partitions: {scores})", err=True)
    server = subprocess.Popen([*command, "--port", str(port)], cwd=root, env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())  # stop the server with us
    try:
        code = server.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server too: let it shut down
        code = server.wait()
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
