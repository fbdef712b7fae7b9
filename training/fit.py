"""Fitting the churn model by a backtest plan: settings chosen on purged folds, the backtest on
the holdout beside the baselines, and the refit on every complete observation date.

Why this order: early stopping on dates right after the training dates (whose labels overlap the
training labels) never stops, and calibration on two dates makes plateaus. Here the rounds are
the middle of the plateau of the median validation curve of folds whose training labels end
before their validation dates, the calibration is fitted on those folds' out-of-fold predictions
with a strictly increasing map, the model's capacity follows the number of rows and churners,
and the model that is registered is refit on every date whose label is complete, with the
settings so chosen (its rounds from the fold nearest it in time: refit). Each
booster gets a linear term fitted on its own training rows (training.model.LinearTerm), in the
folds, the backtest and the refit alike, so the calibration and the holdout see the score the
registered model gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from features.config import FeatureConfig
from training.config import TrainConfig
from training.evaluation import (
    HoldoutComparison,
    bootstrap_intervals,
    compare_on_rows,
    fit_logistic_baseline,
    logistic_scores,
    metrics_by_segment,
    recency_rule,
)
from training.model import (
    BandPopulation,
    ChurnModel,
    LinearTerm,
    Preprocessor,
    ScoreTransfer,
    band_thresholds,
    band_warnings,
    calibrate,
    capped_bands,
    choose_calibration,
    fit_calibrator,
    linear_spread,
    shifted,
)
from training.seasonal_level import SeasonalLevel
from training.splits import BacktestPlan, Fold, dates_text

Log = Callable[[str], None]


@dataclass
class Evaluation:
    """The backtest: holdout predictions, metrics, baselines on the same rows, per-segment
    metrics, and how the settings were chosen."""

    test: pd.DataFrame  # as_of, customer_id, churned, segments, probability columns
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    segments: pd.DataFrame
    holdout: HoldoutComparison
    calibration_raw: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    best_iteration: int = 0  # rounds of the backtest model
    feature_importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    rounds: dict[str, Any] = field(default_factory=dict)  # chosen, per fold, hindsight


@dataclass
class Refit:
    """What the registered model saw: its dates, rows, churners and settings."""

    trained_from: str
    trained_until: str
    dates: int
    rows: int
    churners: int
    rounds: int
    calibration: str
    calibration_rows: int
    params: dict[str, Any]
    rounds_from: str = ""  # the folds whose validation curves chose the rounds
    band_warnings: list[str] = field(default_factory=list)
    linear_share: float = 0.25  # the share the model has (choose_linear_share)
    # log-odds added at the last training date for its time of year (training.seasonal_level)
    level_shift: float = 0.0

    def as_params(self) -> dict[str, Any]:
        return {f"refit.{k}": v for k, v in self.__dict__.items() if k != "params"}


# Where every holdout customer has the same recency (activity exported as monthly totals, each
# customer's last one stamped at the same month end) the rule ranks nobody: ROC AUC 0.5 and no
# probabilities. It is no baseline then, and the gate's words do not list it.
RECENCY_RULE_LEFT_OUT = (
    "the recency rule is left out: every holdout customer has the same time since the last "
    "activity, so it ranks nobody"
)


def capacity_params(rows: int, churners: int, customers: int | None = None) -> dict[str, Any]:
    """Tree size from the data: about one leaf per 1,000 churning customers (4 to 31 leaves), and
    leaves that hold enough rows to contain about 20 churners at the base rate (at least 20
    rows, at most what lets every leaf be used). `churners` counts rows; the same customer on
    many dates is one customer's information, so with `customers` (distinct customers of the
    smaller class) the leaves follow those. Small data with few churners gets small trees.
    Where most rows churn (an order export: 98 % never buy again) the customers who stay are
    the rare class, and they size the leaves: 20 rows would hold half a returner."""
    churners = max(min(int(churners), int(rows) - int(churners)), 1)
    rate = churners / max(int(rows), 1)
    independent = churners if customers is None else max(int(customers), 1)
    leaves = int(np.clip(independent // 1000, 4, 31))
    min_leaf = int(np.clip(round(20 / rate), 20, max(20, rows // (2 * leaves))))
    return {"num_leaves": leaves, "min_data_in_leaf": min_leaf}


def configured_capacity(
    config: TrainConfig, rows: int, churners: int, customers: int | None = None
) -> dict[str, Any]:
    """capacity_params when `[training] capacity = "auto"` (the default); nothing with
    "fixed" (the configured lgbm_params stand)."""
    return capacity_params(rows, churners, customers) if config.capacity == "auto" else {}


# Below this many training rows one thread is faster: a tree's histograms take milliseconds,
# and OpenMP threads that wait for a busy core cost milliseconds per round (10x slower seen on
# a shared 2-core machine).
ONE_THREAD_ROWS = 1_000_000


def lgbm_params(
    config: TrainConfig,
    preprocessor: Preprocessor,
    capacity: dict[str, Any] | None = None,
    rows: int | None = None,
) -> dict:
    """LightGBM parameters with reproducibility settings and monotone constraints by name;
    `capacity` (num_leaves, min_data_in_leaf) overrides the configured values; `rows` (training
    rows) sets the thread count when the configuration leaves it open."""
    constraints = [int(config.monotone.get(name, 0)) for name in preprocessor.feature_names_]
    threads = config.num_threads
    if threads is None:
        threads = 1 if rows is not None and rows < ONE_THREAD_ROWS else 2
    params = {
        **config.lgbm_params,
        **(capacity or {}),
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
    }
    if any(constraints):
        params["monotone_constraints"] = constraints
    return params


def fit_booster(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    preprocessor: Preprocessor,
    config: TrainConfig,
    log: Log | None = None,
    capacity: dict[str, Any] | None = None,
) -> lgb.Booster:
    """Gradient boosting on the train rows, early-stopped on the validation rows (the labeled
    table's inner split; event data uses the fold machinery below); `capacity` as in
    lgbm_params."""
    for name, part in (("train", train), ("validation", validation)):
        if part["churned"].nunique() < 2:
            raise ValueError(
                f"the {name} slice has only one label class ({int(part['churned'].iloc[0]) if len(part) else 'no rows'}); "
                "use more observation dates or a longer horizon"
            )
    dtrain = lgb.Dataset(
        preprocessor.transform(train), train["churned"].to_numpy(), free_raw_data=True
    )
    dvalid = lgb.Dataset(
        preprocessor.transform(validation), validation["churned"].to_numpy(), reference=dtrain
    )
    callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
    if log is not None:
        callbacks.append(_log_every(50, log))
    return lgb.train(
        lgbm_params(config, preprocessor, capacity),
        dtrain,
        num_boost_round=config.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["validation"],
        callbacks=callbacks,
    )


def _log_every(period: int, log: Log):
    def callback(env: lgb.callback.CallbackEnv) -> None:
        if env.iteration % period == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0]
            log(f"  tree {env.iteration:4d}: validation {metric} {value:.4f}")

    return callback


# --------------------------------------------------------------------------------- folds


@dataclass
class FoldRun:
    """One fold's booster and its validation curve (ROC AUC after each round)."""

    fold: Fold
    booster: lgb.Booster
    curve: np.ndarray  # curve[i]: validation ROC AUC with i + 1 rounds
    train_index: np.ndarray
    valid_index: np.ndarray

    @property
    def best_rounds(self) -> int:
        """Best in hindsight on this fold's validation rows."""
        return int(np.argmax(self.curve)) + 1


class _Patience:
    """Stop when the validation AUC has not improved for `patience` rounds, but never before
    `min_rounds` (a fold must reach the rounds another fold chose, to be scored with them)."""

    order = 30

    def __init__(self, patience: int, min_rounds: int):
        self.patience, self.min_rounds = patience, min_rounds
        self.best, self.best_round = -np.inf, 0

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        _, _, score, _ = env.evaluation_result_list[0]
        rounds = env.iteration + 1
        if score > self.best:
            self.best, self.best_round = score, rounds
        if rounds >= self.min_rounds and rounds - self.best_round >= self.patience:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)


class FoldTrainer:
    """Trains folds of one training set with one set of parameters; a fold is trained once
    (the holdout fold serves the backtest and the refit's choice of rounds)."""

    def __init__(
        self,
        dataset: pd.DataFrame,
        preprocessor: Preprocessor,
        params: dict[str, Any],
        config: TrainConfig,
        log: Log | None = None,
    ):
        self.dataset, self.config, self.log = dataset, config, log
        self.preprocessor = preprocessor
        self.params = {**params, "metric": "auc"}
        self.y = dataset["churned"].to_numpy()
        self.x = preprocessor.transform(dataset)
        # The bins of every fold: those of all the rows. A fold's rows are binned by them as a
        # Dataset of their own (reference=), not as Dataset.subset: LightGBM 4.7 crashed the
        # process (a segmentation fault in Booster.update, "Check failed: (best_split_info.
        # right_count) > (0)") on a subset of a shop's 116,888 rows that trains as a Dataset of
        # its own, with the same bins and the same trees where both run.
        self.lgb_data = lgb.Dataset(self.x, self.y, free_raw_data=False, params=self.params)
        self.lgb_data.construct()
        self.runs: dict[Fold, FoldRun] = {}
        self.linear_terms: dict[Fold, LinearTerm | None] = {}  # fitted once per fold

    def linear_term(self, run: FoldRun, rounds: int) -> LinearTerm | None:
        """The linear term beside this fold's booster at `rounds` (fit_linear_term): the
        regression is fitted once per fold and scaled for each number of rounds."""
        if run.fold in self.linear_terms and self.linear_terms[run.fold] is None:
            return None  # no signal a linear model can use on these rows
        rows = run.train_index[linear_rows(len(run.train_index), self.config.seed)]
        x = self.preprocessor.transform(self.dataset.iloc[rows])
        linear = fit_linear_term(
            run.booster, rounds, x, self.y[rows], self.config, self.linear_terms.get(run.fold)
        )
        self.linear_terms[run.fold] = linear
        return linear

    def rows(self, index: np.ndarray) -> lgb.Dataset:
        """The training set's rows at `index`, binned as all the rows are."""
        return lgb.Dataset(
            self.x.iloc[index], self.y[index], reference=self.lgb_data, params=self.params
        )

    def run(self, fold: Fold, min_rounds: int = 1) -> FoldRun:
        done = self.runs.get(fold)
        if done is not None and len(done.curve) >= min_rounds:
            return done
        train_mask, valid_mask = fold.masks(self.dataset)
        train_index, valid_index = np.flatnonzero(train_mask), np.flatnonzero(valid_mask)
        for name, index in (("training", train_index), ("validation", valid_index)):
            if len(np.unique(self.y[index])) < 2:
                raise ValueError(
                    f"fold {fold.describe()}: its {name} rows ({len(index):,}) have only one "
                    "label class; use more observation dates or a longer horizon"
                )
        dtrain, dvalid = self.rows(train_index), self.rows(valid_index)
        record: dict[str, dict[str, list[float]]] = {}
        booster = lgb.train(
            self.params,
            dtrain,
            num_boost_round=self.config.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["validation"],
            callbacks=[
                lgb.record_evaluation(record),
                _Patience(self.config.early_stopping_rounds, min_rounds),
            ],
        )
        curve = np.asarray(record["validation"]["auc"], dtype=float)
        result = FoldRun(fold, booster, curve, train_index, valid_index)
        self.runs[fold] = result
        if self.log:
            self.log(
                f"  fold {fold.describe()}: {len(train_index):,} -> {len(valid_index):,} rows, "
                f"best {result.best_rounds} rounds (AUC {curve.max():.4f})"
            )
        return result


# Rounds whose median fold curve is within this much ROC AUC of its peak are as good as the
# peak on the folds' evidence (fold AUCs move by more than this between neighbouring rounds).
ROUNDS_PLATEAU_AUC = 0.001


def choose_rounds(curves: Sequence[np.ndarray]) -> int:
    """The middle of the plateau of the folds' median validation curve: each fold's curve
    measured from its own best ROC AUC (a curve that stopped early keeps its last value: past its
    best, so it only pulls towards fewer rounds), the rounds whose median is within
    ROUNDS_PLATEAU_AUC of its peak, and the geometric middle of the first and last of those.
    With one or two folds the median is the mean.

    Why the median: near their peaks the curves are flat, so the peak of the mean is set by the
    one fold that still creeps up (Online Retail, 2011-07-01: five folds best at 8, 31, 47, 68
    and 270 rounds put the mean's peak at 167 rounds, 501 once scaled for the refit, where 50 to
    150 rounds score best at the cut); the median ignores one such fold.

    Why the plateau's middle, not its peak: on a flat curve the peak is wherever noise puts it.
    Online Retail, 2011-09-01, 91 days: four customer folds flat within 0.003 from 5 to 80
    rounds put the median's peak at 11 rounds (15 once scaled) where the holdout was best at 40;
    the plateau's middle gives 36 (48). Over 31 cuts of Online Retail, CDNOW and the demo it scored
    the same at the cut as the peak on average, and no worse at the worst cut."""
    if not curves:
        raise ValueError("choose_rounds needs at least one fold's validation curve")
    length = max(len(c) for c in curves)
    padded = np.array([np.r_[c, np.full(length - len(c), c[-1])] for c in curves])
    below_best = np.median(padded - padded.max(axis=1, keepdims=True), axis=0)
    plateau = np.flatnonzero(below_best >= below_best.max() - ROUNDS_PLATEAU_AUC) + 1
    return round(float(np.sqrt(plateau[0] * plateau[-1])))


# The rounds a fold peaks at grow with its training rows (each round overfits less when there
# is more data): a model trained on more rows than the folds gets proportionally more rounds,
# at most this many times as many.
MAX_ROUNDS_SCALE = 3.0


def scale_rounds(rounds: int, fold_rows: Sequence[int], target_rows: int) -> int:
    """Rounds chosen on folds with `fold_rows` training rows, for a model trained on
    `target_rows` rows: in proportion to the rows, between 1x and MAX_ROUNDS_SCALE x."""
    ratio = target_rows / max(float(np.mean(fold_rows)), 1.0)
    return max(1, round(rounds * float(np.clip(ratio, 1.0, MAX_ROUNDS_SCALE))))


# ------------------------------------------------------------------------------ backtest


@dataclass
class Backtest:
    evaluation: Evaluation
    rounds: int
    calibration: str
    capacity: dict[str, Any]


def _features(dataset: pd.DataFrame, preprocessor: Preprocessor, index: np.ndarray) -> pd.DataFrame:
    return preprocessor.transform(dataset.iloc[index])


# The linear term is fitted on at most this many of the booster's training rows (a random
# sample beyond): a hundred coefficients are settled long before, and a million rows would
# cost seconds per fold.
LINEAR_FIT_ROWS = 100_000


def linear_rows(rows: int, seed: int) -> np.ndarray:
    """Positions of the rows the linear term is fitted on: all, or a seeded sample of
    LINEAR_FIT_ROWS in their order."""
    if rows <= LINEAR_FIT_ROWS:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, LINEAR_FIT_ROWS, replace=False))


def fit_linear_term(
    booster: lgb.Booster,
    rounds: int,
    x: pd.DataFrame,
    y: np.ndarray,
    config: TrainConfig,
    fitted: LinearTerm | None = None,
) -> LinearTerm | None:
    """The linear term beside a booster at `rounds`, fitted on the booster's own training rows
    (`fitted`: already fitted on them, only scaled), with `config.linear_share` of the score's
    spread (training.model.LinearTerm)."""
    sample = linear_rows(len(x), config.seed)
    x, y = x.iloc[sample], y[sample]
    term = fitted if fitted is not None else LinearTerm.fit(x, y, config.monotone)
    if term is None:
        return None
    booster_logit = booster.predict(x, num_iteration=rounds, raw_score=True)
    return term.scaled_to(linear_spread(config.linear_share, booster_logit))


def blended_logit(
    booster: lgb.Booster, rounds: int, linear: LinearTerm | None, x: pd.DataFrame
) -> np.ndarray:
    """The score's log-odds as the registered model computes them: booster plus linear term."""
    logit = booster.predict(x, num_iteration=rounds, raw_score=True)
    return logit if linear is None else logit + linear.terms(x).sum(axis=1)


# The hindsight interval's sample of holdout customers (hindsight_gain_interval).
HINDSIGHT_CUSTOMERS = 50_000


def hindsight_gain_interval(
    booster: lgb.Booster,
    chosen: int,
    hindsight: int,
    x: pd.DataFrame,
    y: np.ndarray,
    customers: np.ndarray,
    config: TrainConfig,
) -> tuple[float, float] | None:
    """95 % bootstrap interval (whole customers resampled) of the holdout ROC AUC the best
    round in hindsight gains over the chosen one, the booster's alone. The best round of a
    holdout with a hundred churners is itself noise: an interval that reaches 0 says the rounds
    the folds chose lost nothing that can be measured. None without bootstrap draws.

    A diagnostic, so it is measured on at most HINDSIGHT_CUSTOMERS holdout customers (a seeded
    sample beyond): 200 draws over 200,000 rows would add 20 s to a training run."""
    ids, customer = np.unique(customers, return_inverse=True)
    if len(ids) > HINDSIGHT_CUSTOMERS:
        picked = np.random.default_rng(config.seed).choice(
            len(ids), HINDSIGHT_CUSTOMERS, replace=False
        )
        rows = np.flatnonzero(np.isin(customer.ravel(), picked))
        x, y, customers = x.iloc[rows], y[rows], customers[rows]
    at = {
        "candidate": booster.predict(x, num_iteration=hindsight, raw_score=True),
        "chosen": booster.predict(x, num_iteration=chosen, raw_score=True),
    }
    _, differences = bootstrap_intervals(y, at, customers, reps=config.bootstrap, seed=config.seed)
    return differences.get("chosen")


# A gain in ROC AUC below this is negligible even when the interval excludes 0 (a holdout of
# 60,000 rows detects +0.0001).
NEGLIGIBLE_AUC_GAIN = 0.001


def hindsight_line(info: dict[str, Any]) -> str:
    """The chosen rounds against the best in hindsight on the holdout, in words."""
    gain = info["hindsight_auc"] - info["chosen_auc"]
    line = (
        f"  best in hindsight on the holdout: {info['hindsight']} rounds, ROC AUC "
        f"{gain:+.4f} over the chosen {info['chosen']} (booster alone)"
    )
    interval = info.get("hindsight_gain_interval")
    if interval is None:
        return line
    if interval[0] <= 0:
        verdict = "within the noise"
    elif gain < NEGLIGIBLE_AUC_GAIN:  # many rows detect a loss nobody would act on
        verdict = f"a loss the interval detects, under {NEGLIGIBLE_AUC_GAIN} ROC AUC: negligible"
    else:
        verdict = "a measurable loss"
    return line + f", 95 % interval {interval[0]:+.4f} to {interval[1]:+.4f}: {verdict}"


def _fold_predictions(
    trainer: FoldTrainer,
    runs: Sequence[FoldRun],
    rounds: int,
    preprocessor: Preprocessor,
) -> tuple[np.ndarray, np.ndarray, list[LinearTerm | None]]:
    """Out-of-fold raw probabilities as the registered model would give them (each fold's
    booster at `rounds` with a linear term fitted on that fold's training rows), and the terms."""
    linears, raws = [], []
    for run in runs:
        linear = trainer.linear_term(run, rounds)
        valid_x = _features(trainer.dataset, preprocessor, run.valid_index)
        raws.append(expit(blended_logit(run.booster, rounds, linear, valid_x)))
        linears.append(linear)
    return np.concatenate([r.valid_index for r in runs]), np.concatenate(raws), linears


def score_transfer(
    trainer: FoldTrainer,
    runs: Sequence[FoldRun],
    linears: Sequence[LinearTerm | None],
    rounds: int,
    model_logit: np.ndarray,
) -> ScoreTransfer:
    """How a model's log-odds (`model_logit`, on its own training rows) relate to those of the
    fold models whose out-of-fold predictions its calibration was fitted on (each at `rounds`
    with its linear term, on its own training rows): training.model.ScoreTransfer."""
    fitted = []
    for run, linear in zip(runs, linears, strict=True):
        rows = run.train_index[linear_rows(len(run.train_index), trainer.config.seed)]
        x = _features(trainer.dataset, trainer.preprocessor, rows)
        fitted.append(blended_logit(run.booster, rounds, linear, x))
    return ScoreTransfer.between(fitted, model_logit)


def run_backtest(
    dataset: pd.DataFrame,
    plan: BacktestPlan,
    preprocessor: Preprocessor,
    trainer: FoldTrainer,
    config: TrainConfig,
    log: Log | None = None,
    truth: pd.DataFrame | None = None,
) -> Backtest:
    """Rounds from the selection folds, the holdout scored by the model trained on the dates
    before it (time holdout), or by the customer folds when the history allows no holdout."""
    y = dataset["churned"].to_numpy()
    runs = [trainer.run(f) for f in plan.folds]
    chosen_on, rounds_from = nearest_fold_runs(runs, y)
    fold_rounds = choose_rounds([r.curve for r in chosen_on])
    cal_index, cal_raw, fold_linears = _fold_predictions(trainer, runs, fold_rounds, preprocessor)
    method = choose_calibration(config.calibration)
    info: dict[str, Any] = {
        "folds": [{"fold": r.fold.describe(), "best": r.best_rounds} for r in runs],
        "chosen_on_folds": fold_rounds,
        "rounds_from": rounds_from,
    }
    rounds = fold_rounds
    if plan.honest:
        pool_rows = int(plan.holdout_fold.masks(dataset)[0].sum())
        rounds = scale_rounds(fold_rounds, [len(r.train_index) for r in chosen_on], pool_rows)
        holdout_run = trainer.run(plan.holdout_fold, min_rounds=rounds)
        # LightGBM stops by itself when no split is left: the booster has no more rounds.
        rounds = min(rounds, len(holdout_run.curve))
        test_index = holdout_run.valid_index
        # Scored as the registered model scores: booster, linear term, calibration.
        fit_index = holdout_run.train_index
        linear = trainer.linear_term(holdout_run, rounds)
        test_x = _features(dataset, preprocessor, test_index)
        raw = expit(blended_logit(holdout_run.booster, rounds, linear, test_x))
        fit_rows = fit_index[linear_rows(len(fit_index), config.seed)]
        transfer = score_transfer(
            trainer,
            runs,
            fold_linears,
            fold_rounds,
            blended_logit(
                holdout_run.booster, rounds, linear, _features(dataset, preprocessor, fit_rows)
            ),
        )
        calibrator = fit_calibrator(method, cal_raw, y[cal_index]).transferred(transfer)
        probability = calibrate(calibrator, raw)
        # At the churn level of the holdout date's time of year, read on this model's own
        # training rows as the registered model's is (refit): the holdout's log loss and
        # calibration are those of the probabilities the weekly job serves.
        as_of = dataset["as_of"].to_numpy()

        def fit_probability(rows: np.ndarray) -> np.ndarray:
            x = _features(dataset, preprocessor, fit_index[rows])
            return calibrate(
                calibrator, expit(blended_logit(holdout_run.booster, rounds, linear, x))
            )

        level = SeasonalLevel.of_rows(as_of[fit_index], y[fit_index], fit_probability, config.seed)
        if level is not None:
            probability = shifted(probability, level.shifts(as_of[test_index]))
            info["level_shift"] = level.shift(pd.Timestamp(max(plan.holdout)))
        logistic = fit_logistic_baseline(
            dataset.iloc[fit_index], y[fit_index], preprocessor, config.seed
        )
        logistic_p = logistic_scores(logistic, dataset.iloc[test_index], preprocessor)
        info["hindsight"] = holdout_run.best_rounds
        info["hindsight_auc"] = float(holdout_run.curve.max())
        info["chosen_auc"] = float(holdout_run.curve[rounds - 1])
        info["hindsight_gain_interval"] = hindsight_gain_interval(
            holdout_run.booster, rounds, holdout_run.best_rounds, test_x, y[test_index],
            dataset["customer_id"].to_numpy()[test_index], config,
        )  # fmt: skip
        booster, importance_rounds = holdout_run.booster, rounds
        kind = "time holdout"
    else:
        # Customer folds: each fold's validation rows are scored by the models that did not see
        # those customers, calibrated on the other folds' predictions; reported on the last date.
        last = max(plan.pool)
        test_parts, raw_parts, p_parts, logistic_parts = [], [], [], []
        for run, linear in zip(runs, fold_linears, strict=True):
            keep = run.valid_index[dataset["as_of"].to_numpy()[run.valid_index] == last]
            others = np.isin(cal_index, run.valid_index, invert=True)
            calibrator = fit_calibrator(method, cal_raw[others], y[cal_index][others])
            keep_x = _features(dataset, preprocessor, keep)
            fold_raw = expit(blended_logit(run.booster, rounds, linear, keep_x))
            logistic = fit_logistic_baseline(
                dataset.iloc[run.train_index], y[run.train_index], preprocessor, config.seed
            )
            test_parts.append(keep)
            raw_parts.append(fold_raw)
            p_parts.append(calibrate(calibrator, fold_raw))
            logistic_parts.append(logistic_scores(logistic, dataset.iloc[keep], preprocessor))
        order = np.argsort(np.concatenate(test_parts), kind="stable")
        test_index = np.concatenate(test_parts)[order]
        raw = np.concatenate(raw_parts)[order]
        probability = np.concatenate(p_parts)[order]
        logistic_p = np.concatenate(logistic_parts)[order]
        booster, importance_rounds = runs[0].booster, rounds
        kind = "customer folds (no time holdout)"
    info["chosen"] = rounds

    test = dataset.iloc[test_index]
    y_test = y[test_index]
    recency = recency_rule(test)
    scores = {"candidate": probability, "logistic_regression": logistic_p, "recency_rule": recency}
    notes = list(plan.notes)
    if len(np.unique(recency)) < 2:  # ranks nobody: no baseline to beat or to promote
        del scores["recency_rule"]
        notes.append(RECENCY_RULE_LEFT_OUT)
    if truth is not None:
        truth_p = _truth_on(test, truth)
        if truth_p is not None:
            scores["truth"] = truth_p
    holdout = compare_on_rows(
        kind=kind,
        honest=plan.honest,
        dates=sorted(test["as_of"].unique()),
        y=y_test,
        scores=scores,
        clusters=test["customer_id"].to_numpy(),
        probability_scores=("candidate", "logistic_regression", "truth"),
        notes=notes,
        reps=config.bootstrap,
        seed=config.seed,
    )
    metrics = holdout.metrics["candidate"]
    baselines = {k: v for k, v in holdout.metrics.items() if k not in ("candidate", "truth")}
    segments = list(preprocessor.categorical)
    keep = ["as_of", "customer_id", "churned", *segments]
    test_out = test[keep].assign(
        churn_probability=probability,
        raw_probability=raw,
        logistic_regression=logistic_p,
        recency_rule=recency,
    )
    if "truth" in scores:
        test_out["true_probability"] = scores["truth"]
    importance = pd.DataFrame(
        {
            "feature": preprocessor.feature_names_,
            "gain": booster.feature_importance("gain", iteration=importance_rounds),
            "splits": booster.feature_importance("split", iteration=importance_rounds),
        }
    ).sort_values("gain", ascending=False, ignore_index=True)
    evaluation = Evaluation(
        test=test_out,
        metrics=metrics,
        baselines=baselines,
        segments=metrics_by_segment(test, y_test, probability, segments, config.min_segment_rows),
        holdout=holdout,
        calibration_raw=cal_raw,
        best_iteration=rounds,
        feature_importance=importance,
        rounds=info,
    )
    if log:
        log(
            f"backtest ({kind}): {rounds} rounds (from {rounds_from}), {method} calibration; "
            f"{holdout.summary()}"
        )
        if "hindsight" in info:
            log(hindsight_line(info))
    return Backtest(evaluation, rounds, method, dict(trainer.params))


def _truth_on(test: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray | None:
    """The generator's true probabilities for the holdout rows, when it has all of them."""
    merged = test[["as_of", "customer_id"]].merge(
        truth[["as_of", "customer_id", "churn_probability"]],
        on=["as_of", "customer_id"],
        how="left",
    )
    values = merged["churn_probability"].to_numpy(dtype=float)
    return values if len(values) and np.isfinite(values).all() else None


# --------------------------------------------------------------------------------- refit


# A fold whose validation rows hold fewer churners (or non-churners) than this does not choose
# the rounds alone: its curve moves by noise from one round to the next (18 churners in the
# SaaS example's holdout).
NEAREST_FOLD_MIN_EVENTS = 100


def nearest_fold_runs(runs: Sequence[FoldRun], y: np.ndarray) -> tuple[list[FoldRun], str]:
    """The folds whose curves choose a model's rounds, and the words for them: the time fold
    whose validation dates come after every other fold's (the one nearest the model in time and
    rows), when it has NEAREST_FOLD_MIN_EVENTS churners and non-churners; else all of them.

    Why the nearest fold: the others are older and smaller, or customer folds over the same
    dates, and mislead where behaviour moves: 9-month demo, seed 4, the time folds best at 184
    and 251 rounds, the latest date at 60, the cut at 60. Over 25 cuts of Online Retail, CDNOW
    and the demo (benchmarks/README.md, session 11) the refit, with the holdout fold as its
    nearest, lost 0.0016 ROC AUC at the cut to the best rounds in hindsight on average (worst
    0.0065), against 0.0024 (worst 0.0141) with the rounds from all folds; the backtest model,
    with the latest selection fold, 0.0024 on its holdout against 0.0030 (16 cuts with time
    folds)."""
    runs = list(runs)
    latest = max(runs, key=lambda r: max(r.fold.valid))
    first = min(latest.fold.valid)
    if latest.fold.kind != "time" or len(runs) < 2:
        return runs, "all folds" if len(runs) > 1 else "the one fold"
    if any(max(r.fold.valid) >= first for r in runs if r is not latest):
        return runs, "all folds"
    churners = int(y[latest.valid_index].sum())
    if min(churners, len(latest.valid_index) - churners) < NEAREST_FOLD_MIN_EVENTS:
        return runs, (
            f"all folds: the latest, {dates_text(latest.fold.valid)}, has {churners:,} "
            f"churners among {len(latest.valid_index):,} rows, too few to choose alone"
        )
    return [latest], f"the latest fold, {dates_text(latest.fold.valid)}"


def refit(
    dataset: pd.DataFrame,
    plan: BacktestPlan,
    preprocessor: Preprocessor,
    trainer: FoldTrainer,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log | None = None,
    next_run: tuple[pd.Timestamp, pd.DataFrame] | None = None,
) -> tuple[ChurnModel, Refit]:
    """The registered model: every observation date with a complete label; its rounds from
    the fold nearest it in time (nearest_fold_runs: the holdout fold, when there is a time
    holdout with enough churners), calibrated on the selection and holdout folds' out-of-fold
    predictions; bands from the quantiles of the customers of `next_run` (the date after the
    data's end and their features: whom the first run after training scores), else of the
    latest date's."""
    y = dataset["churned"].to_numpy()
    runs = [trainer.run(f) for f in plan.refit_folds]
    chosen_on, rounds_from = nearest_fold_runs(runs, y)
    fold_rounds = choose_rounds([r.curve for r in chosen_on])
    cal_index, cal_raw, fold_linears = _fold_predictions(trainer, runs, fold_rounds, preprocessor)
    rounds = scale_rounds(fold_rounds, [len(r.train_index) for r in chosen_on], len(dataset))
    method = choose_calibration(config.calibration)
    calibrator = fit_calibrator(method, cal_raw, y[cal_index])
    booster = lgb.train(
        {k: v for k, v in trainer.params.items() if k != "metric"},
        trainer.lgb_data,
        num_boost_round=rounds,
    )
    rows = linear_rows(len(dataset), config.seed)  # transformed only where it is fitted
    x_rows = preprocessor.transform(dataset.iloc[rows])
    linear = fit_linear_term(booster, rounds, x_rows, y[rows], config)
    transfer = score_transfer(
        trainer, runs, fold_linears, fold_rounds, blended_logit(booster, rounds, linear, x_rows)
    )
    calibrator = calibrator.transferred(transfer)
    dates = sorted(dataset["as_of"].unique())
    model = ChurnModel(
        feature_config=feature_config.to_dict(),
        preprocessor=preprocessor,
        booster_text=booster.model_to_string(),
        calibrator=calibrator,
        band_thresholds={},
        horizon_days=feature_config.churn.horizon_days,
        trained_until=str(pd.Timestamp(dates[-1]).date()),
        linear_term=linear,
    )
    model.seasonal_level = SeasonalLevel.of_rows(
        dataset["as_of"].to_numpy(),
        y,
        lambda rows: model.predict_proba(dataset.iloc[rows]),
        config.seed,
    )
    if next_run is not None and len(next_run[1]):
        warnings = set_bands_for_next_run(model, next_run, config)
    else:
        latest = dataset[dataset["as_of"] == dates[-1]]
        day = pd.Timestamp(dates[-1]).date()
        warnings = set_risk_bands(model, model.predict_proba(latest), config, day)
    summary = Refit(
        trained_from=str(pd.Timestamp(dates[0]).date()),
        trained_until=str(pd.Timestamp(dates[-1]).date()),
        dates=len(dates),
        rows=len(dataset),
        churners=int(y.sum()),
        rounds=rounds,
        calibration=method,
        calibration_rows=len(cal_index),
        rounds_from=rounds_from,
        params={k: v for k, v in trainer.params.items() if k != "monotone_constraints"},
        band_warnings=warnings,
        linear_share=config.linear_share,
        level_shift=model.seasonal_level.shift(pd.Timestamp(dates[-1]))
        if model.seasonal_level
        else 0.0,
    )
    if log:
        log(
            f"refit on {summary.dates} dates {summary.trained_from}..{summary.trained_until} "
            f"({summary.rows:,} rows, {summary.churners:,} churn labels): {rounds} rounds "
            f"(from {summary.rounds_from}), "
            f"{method} calibration on {len(cal_index):,} out-of-fold rows (their log-odds "
            f"spread {transfer.factor:.2f}x the refit's on the training rows)"
        )
        if model.seasonal_level:
            log(f"  {model.seasonal_level.describe(pd.Timestamp(dates[-1]))}")
        if model.band_population is not None:
            bands = ", ".join(f"'{b}' from {v:.1%}" for b, v in model.band_thresholds.items())
            log(
                f"  risk bands ({bands}) and the typical risk "
                f"({model.band_population.median:.1%}, the median: reasons for risk are given "
                f"above it) set on the {model.band_population.customers:,} customers of "
                f"{model.band_population.as_of}, whom the first run after training scores"
            )
        for warning in warnings:
            log(f"warning: {warning}")
    return model, summary


def set_bands_for_next_run(
    model: ChurnModel, next_run: tuple[pd.Timestamp, pd.DataFrame], config: TrainConfig
) -> list[str]:
    """Set the risk bands and the typical risk (model.band_population) on the customers of
    `next_run` (the day after the data's end and their features: training.pipeline.
    next_run_features) at that day's level; the warnings about the bands (set_risk_bands)."""
    day, customers = next_run
    population = model.predict_proba(customers, day)
    model.band_population = BandPopulation(
        str(day.date()), len(population), float(np.median(population))
    )
    return set_risk_bands(model, population, config, day.date())


def set_risk_bands(
    model: ChurnModel, population: np.ndarray, config: TrainConfig, day: object
) -> list[str]:
    """Set the model's risk-band thresholds from the probabilities of the customers of `day`
    (training.model.band_thresholds) and return the warnings about them: an empty band, and
    bands capped because most customers are above a ceiling."""
    model.band_thresholds = band_thresholds(
        population, config.risk_bands, config.risk_band_ceilings, config.risk_band_caps
    )
    warnings = band_warnings(
        model.risk_band(population), model.band_thresholds, f"the customers of {day}"
    )
    for band, above in capped_bands(
        population, config.risk_band_ceilings, config.risk_band_caps
    ).items():
        which = f"'{band}' holds" if band == "high" else f"'high' and '{band}' together hold"
        warnings.append(
            f"{above:.0%} of the customers of {day} are at or above the '{band}' ceiling "
            f"({config.risk_band_ceilings[band]:.0%}): {which} the riskiest "
            f"{config.risk_band_caps[band]:.0%} of them ('{band}' from "
            f"{model.band_thresholds.get(band, 1.0):.1%}; `[training] risk_band_caps`), so "
            "that the bands single customers out"
        )
    return warnings


# The alternative linear share must beat the configured one by this much ROC AUC on the
# selection folds (their mean): below it the difference is fold noise.
MIN_SHARE_GAIN = 0.002


def best_setting(fold_aucs: dict[Any, list[float]], configured: Any) -> Any:
    """The setting (a linear share; for labelled tables a capacity and a share) whose folds'
    mean ROC AUC is the highest, where it beats the configured one's by MIN_SHARE_GAIN; else
    the configured one (also when the configured one was not measured)."""
    means = {s: float(np.mean(a)) for s, a in fold_aucs.items() if a}
    if configured not in means:
        return configured
    best = max(means, key=lambda s: (means[s], s == configured))
    return best if means[best] - means[configured] >= MIN_SHARE_GAIN else configured


def choose_linear_share(
    trainer: FoldTrainer, plan: BacktestPlan, config: TrainConfig, log: Log | None = None
) -> TrainConfig:
    """The configuration with the linear share the selection folds prefer: the configured
    `linear_share`, or `linear_share_alternative` where its out-of-fold ROC AUC (each fold's
    booster at the rounds the folds choose, with its linear term) is higher by MIN_SHARE_GAIN
    on average over the folds. The folds are trained once; the holdout is not looked at."""
    other = config.linear_share_alternative
    if other is None or other == config.linear_share:
        return config
    runs = [trainer.run(fold) for fold in plan.folds]
    chosen_on, _ = nearest_fold_runs(runs, trainer.y)
    rounds = choose_rounds([r.curve for r in chosen_on])
    fold_aucs: dict[float, list[float]] = {}
    for share in (config.linear_share, other):
        trainer.config = replace(config, linear_share=share)
        aucs = []
        for run in runs:
            y = trainer.y[run.valid_index]
            if len(np.unique(y)) < 2:
                continue
            x = _features(trainer.dataset, trainer.preprocessor, run.valid_index)
            linear = trainer.linear_term(run, rounds)
            aucs.append(roc_auc_score(y, blended_logit(run.booster, rounds, linear, x)))
        fold_aucs[share] = aucs
    trainer.config = config
    chosen = best_setting(fold_aucs, config.linear_share)
    if log:
        log(
            f"linear share {chosen} (selection folds' ROC AUC: "
            + ", ".join(
                f"{k} -> {float(np.mean(v)) if v else float('nan'):.4f}"
                for k, v in fold_aucs.items()
            )
            + ")"
        )
    return replace(config, linear_share=chosen) if chosen != config.linear_share else config


def fit_churn_model(
    dataset: pd.DataFrame,
    plan: BacktestPlan,
    feature_config: FeatureConfig,
    config: TrainConfig,
    log: Log | None = None,
    truth: pd.DataFrame | None = None,
    next_run: tuple[pd.Timestamp, pd.DataFrame] | None = None,
) -> tuple[ChurnModel, Evaluation, Refit]:
    """Backtest by the plan, then refit on every date: the registered model, the backtest's
    evaluation and what the refit saw. next_run: the date after the data's end and its
    customers' features, for the risk bands and the typical risk (refit)."""
    dataset = dataset[dataset["as_of"].isin(plan.dates)].reset_index(drop=True)
    if dataset.empty:
        raise ValueError(f"no eligible customers on the observation dates {plan.describe()}")
    preprocessor = Preprocessor().fit(dataset)
    fit_rows = dataset[dataset["as_of"].isin(plan.pool)]
    churners = int(fit_rows["churned"].sum())
    classes = fit_rows.groupby("churned")["customer_id"].nunique()
    customers = int(classes.min()) if len(classes) == 2 else 0
    capacity = configured_capacity(config, len(fit_rows), churners, customers)
    params = lgbm_params(config, preprocessor, capacity, rows=len(dataset))
    if log:
        log(
            f"training set {len(dataset):,} rows x {len(preprocessor.feature_names_)} features; "
            f"capacity from {len(fit_rows):,} rows (customers x dates) and {churners:,} churn "
            f"labels ({int(classes.get(1, 0)):,} customers): "
            f"{params['num_leaves']} leaves, at least {params['min_data_in_leaf']} rows per leaf"
        )
        for line in preprocessor.grouping_notes():
            log(line)
    trainer = FoldTrainer(dataset, preprocessor, params, config, log)
    config = choose_linear_share(trainer, plan, config, log)
    trainer.config = config
    backtest = run_backtest(dataset, plan, preprocessor, trainer, config, log, truth)
    model, summary = refit(
        dataset, plan, preprocessor, trainer, feature_config, config, log, next_run
    )
    model.metrics = {k: v for k, v in backtest.evaluation.metrics.items() if np.isfinite(v)}
    return model, backtest.evaluation, summary
