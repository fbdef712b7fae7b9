"""Training runs end to end: data -> training set -> backtest -> refit -> MLflow -> champion gate."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric

from features.check import (
    churn_anchored_dates,
    late_churn_records,
    period_start_warning,
    stale_tables,
)
from features.config import FeatureConfig
from features.contract import ContractError, Tables
from features.dataset import (
    build_training_set,
    notice_rows,
    observation_dates,
    resolved_for_training,
    training_rows,
)
from features.labels import last_labeled_date
from features.signals import build_features, feature_names
from training.config import TrainConfig
from training.evaluation import HoldoutComparison
from training.fit import Evaluation, Refit, fit_churn_model
from training.gate import (
    ChampionHoldout,
    GateDecision,
    GateRules,
    champion_holdout,
    data_problems,
    judge,
    lookback_moved_with_the_data,
    measure_champion,
    refuse_label_like_attributes,
)
from training.model import ChurnModel
from training.plots import calibration_table, gains_table, model_report_plots
from training.reference import backtest_figures, next_run_reason_sides, reference_for
from training.simple_model import SimpleResult, register_simple_model
from training.splits import BacktestPlan, plan_backtest, step_for_span, with_both_classes
from training.tracking import (
    champion_fingerprint,
    configure,
    current_champion,
    data_fingerprint,
    input_example,
    log_training_run,
    record_promotion,
    require_model_name,
)

Log = Callable[[str], None]


@dataclass
class TrainingResult:
    """A training run: the registered (refit) model, the backtest that chose its settings and
    judged the method on the holdout beside the baselines, and the gate's decision.

    `holdout` (= evaluation.holdout) has the comparison on the same rows: metrics and 95 %
    bootstrap intervals for "candidate", "logistic_regression", "recency_rule" (and "truth" on
    demo data), the number of rows and churners, and whether it is an honest time holdout."""

    run_id: str
    version: str
    promoted: bool
    promotion_reason: str
    plan: BacktestPlan
    model: ChurnModel
    evaluation: Evaluation
    refit: Refit
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    # The candidate on the rows the champion was measured on, when not the whole holdout (those
    # after the champion's training dates: training.gate.champion_holdout).
    candidate_vs_champion: dict[str, float] | None = None
    plots: list[Path] = field(default_factory=list)
    gate: GateDecision | None = None
    model_name: str = ""
    simple: SimpleResult | None = None  # the baseline registered as a model, when one won

    @property
    def holdout(self) -> HoldoutComparison:
        return self.evaluation.holdout

    def metrics_table(self) -> pd.DataFrame:
        """Candidate, champion, baselines (and the demo's truth) side by side on the same rows."""
        columns = {"candidate": self.evaluation.metrics}
        if self.champion_metrics is not None:
            if self.candidate_vs_champion is not None:  # the rows after its training dates
                columns["candidate, champion's rows"] = self.candidate_vs_champion
            columns[f"champion (v{self.champion_version})"] = self.champion_metrics
        columns.update(self.evaluation.baselines)
        if "truth" in self.holdout.metrics:
            columns["truth"] = self.holdout.metrics["truth"]
        return pd.DataFrame(columns).loc[
            [
                "roc_auc",
                "pr_auc",
                "log_loss",
                "brier",
                "lift_top_decile",
                "recall_top_decile",
                "retained_lift_bottom_decile",
                "ece",
                "rows",
            ]
        ]


MIN_WARMUP_DAYS = 7  # a week of history before the first observation date, at least
# Dates whose feature windows all hold history, when that leaves at least this many dates.
MIN_DATES_WITH_WHOLE_WINDOWS = 2


def derived_warmup(
    first: pd.Timestamp,
    last: pd.Timestamp,
    feature_config: FeatureConfig,
    every_days: int | None = None,
) -> int:
    """Days of history before the first observation date up to the last complete date `last`.

    The base is a third of the span (at least MIN_WARMUP_DAYS, at most the longest window), so
    that short histories keep dates to learn from. (A floor of 30 days refused a streaming
    app's 6-week export with a 14-day horizon; with a week it learned from 3 weekly dates and
    ranked its users as well as an analyst's model, ROC AUC 0.760 against 0.758.)

    It is lengthened to the longest feature window after which half the base's dates remain,
    and MIN_DATES_WITH_WHOLE_WINDOWS or more: a date whose window reaches before the first
    record reads every customer's window as the whole history (a 30-day count 16 days into the
    export is a 16-day count), while later dates and the scoring date read 30 days. A grocery's
    4-month export (Ta Feng, 30-day horizon) trained on 4 to 6 weekly dates from 16 days in,
    on 2 to 5 of them from 30 days in ranked its customers better at each of 3 cuts (ROC AUC
    +0.013, +0.014, +0.001). Trading more dates for a longer window cost: a streaming app's
    4-month log on 5 dates after 90 days instead of 12 after 40, -0.007, -0.004 and -0.001 at
    three seeds (benchmarks/README.md, session 41)."""
    available = max((last - first).days, 0)
    base = int(min(max(feature_config.windows), max(MIN_WARMUP_DAYS, available // 3)))

    def dates_after(warmup: int) -> int:
        start = first + pd.Timedelta(days=warmup)
        if start > last:
            return 0
        return (last - start).days // (every_days or step_for_span(start, last)) + 1

    keep = max(MIN_DATES_WITH_WHOLE_WINDOWS, -(-dates_after(base) // 2))
    for window in sorted(feature_config.windows, reverse=True):
        if window <= base:
            break
        if dates_after(window) >= keep:
            return int(window)
    return base


def first_recorded_churn(tables: Tables, feature_config: FeatureConfig) -> pd.Timestamp | None:
    """Contractual churn: the first observation date whose label window holds the first recorded
    churn (the day of the first churned_at minus the horizon, plus a day). Dates before it only
    add customers who stay: where the export records cancellations from some day on (a CRM
    started later than the event log, a few stray old rows), they read as a business in which
    nobody ever left and pull the probabilities down (a KKBox-shaped export: 11 months of such
    dates, 2.1 % predicted against 3.4 % churned). None without recorded churn."""
    churn = feature_config.churn
    if churn.mode != "contractual" or "churned_at" not in tables.customers:
        return None
    first = tables.customers["churned_at"].min()
    if pd.isna(first):
        return None
    horizon = pd.Timedelta(days=churn.horizon_days)
    return (pd.Timestamp(first) - horizon).normalize() + pd.Timedelta(days=1)


def default_dates(
    tables: Tables, feature_config: FeatureConfig, config: TrainConfig
) -> list[pd.Timestamp]:
    """Observation dates from config, or from the first record (Tables.history_start) + warmup
    to the last date whose label horizon lies inside the data (and before observed_until),
    every `every_days` (derived from the span when not set), aligned to end on the last one;
    with contractual churn, from no earlier than the first date whose label window holds a
    recorded churn (first_recorded_churn)."""
    last_full = last_labeled_date(tables, feature_config.churn)  # observed_until, else data end
    end = pd.Timestamp(config.date_to) if config.date_to else last_full
    if config.date_from:
        start = pd.Timestamp(config.date_from)
        if start > end:
            raise ValueError(
                f"the first observation date {start.date()} (date_from) is after the last date "
                f"with a complete {feature_config.churn.horizon_days}-day label, {end.date()}; "
                "use an earlier date_from or leave it out"
            )
        return observation_dates(start, end, config.every_days or step_for_span(start, end))
    # Warm up from the first record: signups may predate the recorded history by years.
    first = tables.history_start().normalize()
    warmup = config.warmup_days or derived_warmup(first, end, feature_config, config.every_days)
    start = first + pd.Timedelta(days=warmup)
    recorded = first_recorded_churn(tables, feature_config)
    if recorded is not None and recorded > start:
        start = min(recorded, end)
    if start > end:
        raise ValueError(
            f"the data spans too little time: first usable date {start.date()} (first record "
            f"{first.date()} + {warmup} days of history) is after the last date with a complete "
            f"{feature_config.churn.horizon_days}-day label, {end.date()}; shorten the horizon "
            "([features.churn] horizon_days), set fewer days of history before the first date "
            "([training] warmup_days, in the data folder's config.toml or the import mapping), "
            "or wait for more data"
        )
    every = config.every_days or step_for_span(start, end)
    steps = (end - start).days // every
    return [end - pd.Timedelta(days=every * k) for k in range(steps, -1, -1)]


def plan_for(
    dataset: pd.DataFrame, horizon_days: int, config: TrainConfig, log: Log | None = None
) -> BacktestPlan:
    """The backtest plan: the holdout is the last date, extended to earlier dates (within one
    horizon) until it holds min_holdout_churners churners, unless test_dates is set."""
    dates = sorted(dataset["as_of"].unique())
    if not dates:
        raise ValueError(
            "no customer is eligible at any observation date: nobody signed up before them, or "
            "(non-contractual churn) nobody had qualifying activity in the lookback; "
            "`churn check` profiles the data"
        )
    n = config.test_dates or 1
    if config.test_dates is None:
        churners = dataset.groupby("as_of")["churned"].sum().reindex(dates).to_numpy()
        limit = pd.Timestamp(dates[-1]) - pd.Timedelta(days=horizon_days)
        while (
            churners[-n:].sum() < config.min_holdout_churners
            and n < len(dates) // 3
            and pd.Timestamp(dates[-n - 1]) > limit
        ):
            n += 1
    kwargs = {"max_folds": config.folds, "min_train": config.min_train_dates}
    plan = plan_backtest(dates, horizon_days, holdout_dates=n, **kwargs)
    if not plan.honest and n > 1:
        plan = plan_backtest(dates, horizon_days, holdout_dates=1, **kwargs)
    plan = with_both_classes(plan, dataset)
    if log:
        log(f"backtest plan: {plan.describe()}")
        for note in plan.notes:
            log(f"note: {note}")
    return plan


def days_newer(candidate_until: str | None, champion_until: str | None) -> int | None:
    """How many days later the candidate's training data ends than the champion's (None when
    either date is unknown)."""
    if not candidate_until or not champion_until:
        return None
    return (pd.Timestamp(candidate_until) - pd.Timestamp(champion_until)).days


def champion_on_test(champion: ChurnModel, tables: Tables, test: pd.DataFrame) -> np.ndarray:
    """The champion's probabilities for the candidate's test rows, with features rebuilt by the
    champion's own configuration (the one feature function, its columns)."""
    config = champion.features_config()
    parts = []
    for as_of, rows in test.groupby("as_of", sort=True):
        features = build_features(tables, as_of, config)
        aligned = rows[["as_of", "customer_id"]].merge(features, on="customer_id", how="left")
        parts.append(pd.Series(champion.predict_proba(aligned), index=rows.index))
    return pd.concat(parts).reindex(test.index).to_numpy()


@dataclass
class Fitted:
    """Everything a training run computes before MLflow: see fit_from_tables."""

    dataset: pd.DataFrame
    feature_config: FeatureConfig
    plan: BacktestPlan
    model: ChurnModel
    evaluation: Evaluation
    refit: Refit
    customer_share: float = 1.0  # of the customers whose rows were trained on (customer_share)
    # The day after the data's end and its customers' features (next_run_features): the
    # bands and the typical risk of the registered model, LightGBM or the simple model.
    next_run: tuple[pd.Timestamp, pd.DataFrame] | None = None


# Peak memory of a training run per training row and besides them, measured with 82 features
# (100,000 demo customers: 0.5 M rows 3.3 GB, 1.1 M rows 6.2 GB; benchmarks/README.md, session 16).
# The rows' share is the feature matrix's copies, so wider data scales it up; narrower data is
# not scaled down (the estimate stays on the safe side where it was not measured).
PEAK_BYTES_PER_ROW = 5_300
PEAK_BYTES_FEATURES = 82
PEAK_BYTES_BESIDES = 700 * 2**20
MEMORY_SHARE = 0.8  # of the machine's memory a run may count on


def machine_memory() -> int | None:
    """The memory this process may use, in bytes: the machine's, or a smaller cgroup (container)
    limit; None where neither can be read."""
    sizes = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    with contextlib.suppress(OSError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()  # "max": no limit
        if limit.isdigit():
            sizes.append(int(limit))
    return min(sizes) if sizes else None


def memory_warning(
    rows: int, memory: int | None, features: int = PEAK_BYTES_FEATURES
) -> str | None:
    """A warning, with the max_training_rows that would fit, when a training set of `rows` rows
    of `features` features would need more than MEMORY_SHARE of the machine's memory at its
    peak (PEAK_BYTES_PER_ROW, scaled up for more than PEAK_BYTES_FEATURES features)."""
    if memory is None:
        return None
    per_row = PEAK_BYTES_PER_ROW * max(features, PEAK_BYTES_FEATURES) / PEAK_BYTES_FEATURES
    need = rows * per_row + PEAK_BYTES_BESIDES
    usable = MEMORY_SHARE * memory
    if need <= usable:
        return None
    fits = max(int((usable - PEAK_BYTES_BESIDES) / per_row) // 10_000 * 10_000, 0)
    gib = 2**30
    return (
        f"warning: {rows:,} training rows need about {need / gib:.1f} GB at the peak and this "
        f"machine has {memory / gib:.1f} GB; the run may run out of memory: set [training] "
        f"max_training_rows = {fits} (or lower) to train on a share of the customers"
    )


def customer_share(
    tables: Tables,
    dates: list[pd.Timestamp],
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log = print,
    memory: int | None = None,
) -> float:
    """The share of customers whose rows make the training set: 1, or what keeps the rows
    (customers eligible at each date, counted before any feature is built) within
    config.max_training_rows, which the log then says. It warns when the rows kept would not
    fit in the machine's memory (`memory`: bytes, default machine_memory()). `feature_config`
    is resolved (resolve_config): its features size the estimate."""
    if not dates:
        return 1.0
    rows = training_rows(tables, dates, feature_config)
    share = 1.0
    if config.max_training_rows and rows > config.max_training_rows:  # 0 or None: no limit
        share = config.max_training_rows / rows
        log(
            f"{rows:,} training rows over {len(dates)} dates exceed max_training_rows "
            f"({config.max_training_rows:,}): training on the rows of a random {share:.1%} of "
            "the customers (the same customers at every date); every customer is still scored"
        )
    warning = memory_warning(
        round(rows * share), memory or machine_memory(), len(feature_names(feature_config))
    )
    if warning:
        log(warning)
    return share


def fit_from_tables(
    tables: Tables,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log = print,
    truth: pd.DataFrame | None = None,
) -> Fitted:
    """Observation dates, training set, backtest plan, backtest and refit (no MLflow)."""
    if feature_config.churn.mode == "non_contractual" and tables.activity.empty:
        raise ContractError(
            "activity",
            None,
            "the table has no rows, and non-contractual churn is read from activity: map the "
            "customers' events, or use contractual churn (churned_at in customers)",
        )
    churn = feature_config.churn
    if churn.mode == "non_contractual" and churn.qualifying_events:
        present = set(tables.activity["event"].astype("string").dropna().unique())
        if not present & set(churn.qualifying_events):
            raise ContractError(
                "activity",
                "event",
                f"the churn definition's qualifying events {list(churn.qualifying_events)} "
                f"never occur (events: {sorted(present)[:10]}): every customer would look "
                "churned; set [features.churn] qualifying_events to the events that mean the "
                "customer is still one",
            )
    for _, text in churn_anchored_dates(tables, feature_config):  # said even when refused
        log(f"warning: {text}")
    refuse_label_like_attributes(tables, feature_config, config.allow_label_like)
    dates = default_dates(tables, feature_config, config)
    # An export that stops before the last observation dates: their features read as if
    # nothing had happened since (features.check.stale_tables).
    for warning in stale_tables(tables, max(dates), "train on data up to") if dates else []:
        log(f"warning: {warning}")
    totals = None if feature_config.activity_totals else period_start_warning(tables.activity)
    if totals:
        log(f"warning: {totals}")
    horizon = pd.Timedelta(days=feature_config.churn.horizon_days)
    late = late_churn_records(tables, feature_config.churn, max(dates) + horizon) if dates else None
    if late:
        log(f"warning: {late}")

    def progress(i: int, total: int, as_of: pd.Timestamp, rows: int) -> None:
        log(f"  features {i}/{total} as of {as_of.date()}: {rows:,} customers")

    resolved = resolved_for_training(tables, feature_config, dates) if dates else feature_config
    share = customer_share(tables, dates, resolved, config, log)
    notices = notice_rows(tables, dates, resolved)
    if notices:
        log(
            f"{notices:,} rows of customers who had given notice before the date "
            "(cancel_requested_at, churned_at at or after it) are not training rows: a run "
            "scores such customers apart (cancellation_scheduled), so the model learns the "
            "churn of the others"
        )
    dataset, resolved = build_training_set(
        tables, dates, resolved, progress, customer_share=share, seed=config.seed
    )
    plan = plan_for(dataset, resolved.churn.horizon_days, config, log)
    next_run = next_run_features(tables, resolved, dataset["as_of"].max())
    model, evaluation, refit = fit_churn_model(
        dataset, plan, resolved, config, log, truth, next_run=next_run
    )
    candidate = evaluation.holdout.intervals.get("candidate", {})
    backtest = backtest_figures(evaluation.metrics, candidate)
    model.reference = reference_for(model, dataset[dataset["as_of"].isin(plan.dates)], backtest)
    next_run_reason_sides(model, next_run)
    return Fitted(dataset, resolved, plan, model, evaluation, refit, share, next_run)


def next_run_features(
    tables: Tables, config: FeatureConfig, last_date: object
) -> tuple[pd.Timestamp, pd.DataFrame] | None:
    """The day after the data's end and the features of the customers eligible then: whom the
    first weekly run after training scores, which the risk bands and the typical risk (the
    line reasons for risk are told above) are set on. The last training date is one horizon
    older: where the customer base has moved since (a shop's single cohort of first buyers,
    most of them lapsed by the export's end), bands set on it held nobody above 'low' and
    reasons set against it none for risk (CDNOW at 1998-01-01, benchmarks/README.md session
    36). None when no customer is eligible then or the data ends before the last date."""
    day = tables.next_run_date()
    if day <= pd.Timestamp(last_date):
        return None
    features = build_features(tables, day, config)
    return (day, features) if len(features) else None


def train_from_tables(
    tables: Tables,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log = print,
    tracking_uri: str | None = None,
    truth: pd.DataFrame | None = None,
) -> TrainingResult:
    """Build the training set, backtest, refit on every complete date, log to MLflow, register
    and apply the gate. `truth` (the demo generator's true probabilities: as_of, customer_id,
    churn_probability) adds the best possible score on the same holdout rows."""
    fitted = fit_from_tables(tables, feature_config, config, log, truth)
    dataset, plan, resolved = fitted.dataset, fitted.plan, fitted.feature_config
    model, evaluation, refit = fitted.model, fitted.evaluation, fitted.refit

    name = require_model_name(config.model_name)
    client = configure(tracking_uri)
    champion = current_champion(client, name)
    rules = GateRules.from_config(config)
    fair = ChampionHoldout(evaluation.test)
    fingerprint = data_fingerprint(tables)
    if champion is not None:
        fair = champion_holdout(
            evaluation.test,
            champion[1].trained_until,
            rules,
            model.trained_until,
            f"champion v{champion[0]}",
            resolved.churn.horizon_days,
            data_changed=champion_fingerprint(client, name, champion[0]) not in (None, fingerprint),
        )
    moved = (
        lookback_moved_with_the_data(
            champion[1], model.trained_until, tables, resolved, feature_config
        )
        if champion is not None
        else None
    )
    not_comparable = moved
    champion_interval, champion_probability = None, None
    if moved is not None:
        champion_metrics, champion_problem = None, None
    else:
        # Not compared (fair.rows None): a champion that does not fit this data is still said.
        measured = measure_champion(
            champion, name, tables, resolved, fair.rows, champion_on_test, log, seed=config.seed
        )
        champion_metrics, champion_problem = measured.metrics, measured.problem
        champion_interval, champion_probability = measured.interval, measured.probability
    if moved is None and champion_problem is None and fair.not_comparable is not None:
        if fair.replaces:
            not_comparable = fair.not_comparable
        else:
            champion_problem = fair.not_comparable
    newer = days_newer(model.trained_until, champion[1].trained_until) if champion else None
    gate = judge(
        evaluation.metrics,
        rules,
        baselines=evaluation.baselines,
        champion=champion_metrics,
        champion_label=f"champion v{champion[0]}" if champion else "champion",
        champion_problem=champion_problem,
        data_problems=data_problems(tables),
        differences=evaluation.holdout.differences,
        auc_interval=evaluation.holdout.auc_interval,
        candidate_vs_champion=fair.candidate,
        champion_not_comparable=not_comparable,
        champion_interval=champion_interval,
        newer_by_days=newer,
    )
    promoted, reason = gate.promoted, gate.reason

    latest = dataset[dataset["as_of"] == dataset["as_of"].max()]
    sample = latest.sample(n=min(len(latest), 2000), random_state=config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        y = evaluation.test["churned"].to_numpy()
        scores = {
            "model": evaluation.test["churn_probability"].to_numpy(),
            "logistic regression": evaluation.test["logistic_regression"].to_numpy(),
            "recency rule": evaluation.test["recency_rule"].to_numpy(),
        }
        if "recency_rule" not in evaluation.holdout.metrics:  # it ranked nobody
            del scores["recency rule"]
        if "true_probability" in evaluation.test:
            scores["truth"] = evaluation.test["true_probability"].to_numpy()
        plots = model_report_plots(
            Path(tmp),
            y,
            scores,
            scores["model"],
            evaluation.feature_importance,
            model.contributions(sample),
            model.preprocessor.transform(sample),
        )
        params = {
            **{f"train.{k}": v for k, v in config.to_dict().items() if k != "lgbm_params"},
            **{f"lgbm.{k}": v for k, v in refit.params.items()},
            **refit.as_params(),
            "features.config": resolved.to_dict(),
            "best_iteration": evaluation.best_iteration,
            "backtest.rounds": evaluation.rounds,
            "n_features": len(model.feature_names),
            "training_rows": len(dataset),
            "training_customer_share": round(fitted.customer_share, 6),
        }
        tags = {
            "data_fingerprint": fingerprint,
            "observation_dates": ",".join(str(pd.Timestamp(d).date()) for d in plan.dates),
            "split": plan.describe(),
            "holdout_kind": evaluation.holdout.kind,
            "holdout_honest": str(evaluation.holdout.honest).lower(),
            "holdout_notes": " | ".join(evaluation.holdout.notes) or "-",
            "trained_until": refit.trained_until,
            "churn_mode": resolved.churn.mode,
            "horizon_days": str(resolved.churn.horizon_days),
            "promotion_decision": "promoted" if promoted else "not promoted",
            "promotion_reason": reason,
            "champion_version": champion[0] if champion else "",
            **gate.tags(),
        }
        logged = log_training_run(
            model=model,
            name=name,
            experiment=config.experiment,
            params=params,
            tags=tags,
            metrics=evaluation.metrics,
            baselines=evaluation.baselines,
            champion_metrics=champion_metrics,
            tables_to_log={
                "segment_metrics.csv": evaluation.segments,
                "holdout_comparison.csv": evaluation.holdout.table().reset_index(),
                "gains.csv": gains_table(y, scores["model"]),
                "calibration.csv": calibration_table(y, scores["model"]),
                "feature_importance.csv": evaluation.feature_importance,
            },
            plots=plots,
            example=input_example(model, latest),
            client=client,
            extra_metrics=gate.metrics(),
        )
        log_backtest_figures(client, logged.run_id, evaluation.holdout, refit)
        kept_plots = keep_plots(plots, logged.run_id)
    record_promotion(
        client, name, logged.version, promoted, reason, logged.run_id, log, gate.tags()
    )
    simple = None
    if gate.lost_to is not None:  # a baseline won: register it as a model analysts can deploy
        simple = register_simple_model(
            gate.lost_to.against, dataset=dataset, plan=plan, preprocessor=model.preprocessor,
            feature_config=resolved, config=config, name=name, baselines=evaluation.baselines,
            champion=champion, champion_metrics=champion_metrics, champion_problem=champion_problem,
            lost_run_id=logged.run_id, lost_version=logged.version, client=client, log=log,
            champion_rows=fair.rows if fair.candidate is not None else None,
            champion_not_comparable=not_comparable,
            champion_paired=(fair.rows, champion_probability)
            if fair.rows is not None and champion_probability is not None else None,
            newer_by_days=newer, next_run=fitted.next_run,
        )  # fmt: skip
    return TrainingResult(
        run_id=logged.run_id,
        version=logged.version,
        promoted=promoted,
        promotion_reason=reason,
        plan=plan,
        model=model,
        evaluation=evaluation,
        refit=refit,
        champion_version=champion[0] if champion else None,
        champion_metrics=champion_metrics,
        candidate_vs_champion=fair.candidate if champion_metrics is not None else None,
        plots=kept_plots,
        gate=gate,
        model_name=name,
        simple=simple,
    )


def log_backtest_figures(
    client: MlflowClient, run_id: str, holdout: HoldoutComparison, refit: Refit
) -> None:
    """The holdout's size, intervals, the demo's truth and what the refit saw, as run metrics."""
    values = {
        "holdout_rows": holdout.rows,
        "holdout_customers": holdout.customers,
        "holdout_churners": holdout.churners,
        "holdout_honest": float(holdout.honest),
        "refit_dates": refit.dates,
        "refit_rows": refit.rows,
        "refit_churners": refit.churners,
        "refit_rounds": refit.rounds,
    }
    for name, intervals in holdout.intervals.items():
        for metric, (lo, hi) in intervals.items():
            values[f"ci_{name}_{metric}_lo"], values[f"ci_{name}_{metric}_hi"] = lo, hi
    for name, (lo, hi) in holdout.differences.items():
        values[f"ci_auc_gain_over_{name}_lo"], values[f"ci_auc_gain_over_{name}_hi"] = lo, hi
    for metric, value in holdout.metrics.get("truth", {}).items():
        values[f"truth_{metric}"] = value
    now = int(pd.Timestamp.now("UTC").timestamp() * 1000)
    metrics = [
        Metric(key, float(value), now, 0)
        for key, value in values.items()
        if value is not None and np.isfinite(value)
    ]
    client.log_batch(run_id, metrics=metrics)


def keep_plots(plots: list[Path], run_id: str) -> list[Path]:
    """Copy the run's plots to a stable local folder (for notebooks to show inline)."""
    target = Path(tempfile.gettempdir()) / "churn-plots" / run_id
    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for plot in plots:
        dest = target / plot.name
        dest.write_bytes(plot.read_bytes())
        kept.append(dest)
    return kept
