"""Does the project's model win on data it has not seen? A backtest as a user meets it.

For each cut date: give the project only the data recorded before the cut, train with the
defaults (the data folder's configuration, as `churn train --data` would), score every eligible
customer at the cut, and compare with what happened in the horizon after it, beside models an
analyst writes in an afternoon on the same rows: a LightGBM and a logistic regression on
recency, frequency, tenure, money and counts over 7-365 days, and where the data has them
failed payments over 90 days, the last NPS score and the tickets open (computed here, not by
the project), the project's own backtest figures, and on demo data the generator's truth.

Datasets: UCI Online Retail (several cuts, 60- and 90-day horizons), demo data with 9 and
24 months of history before the cut (30-day horizon: the simulation step), for several seeds
(one simulated business's gap to the truth has a standard error of about 0.006), and, when its
file is given, CDNOW: another shop's purchase log, 6 to 14 months before the cut, 13 weeks
after (not in ../shared/data; the lifetimes package on PyPI ships it:
`pip download lifetimes==0.11.3 --no-deps` and unzip lifetimes/datasets/CDNOW_master.txt).

    uv run python benchmarks/bench_backtest.py [--retail PATH] [--demo-customers 10000]
        [--demo-seeds 3,4,5,6] [--cdnow CDNOW_master.txt]
        [--only retail|demo|shapes|cdnow|saas|events] [--example-seeds 0,1,2]
        [--set linear_share=0] [--out benchmarks/results/backtest.csv]

`--only shapes` cuts Online Retail into 13 shapes of other exports (months of history, 30- to
120-day horizons, a few hundred customers, an export that starts mid-stream); `--only saas` and
`--only events` generate the examples' raw exports (examples/saas: a SaaS company's CRM, Stripe,
Segment, NPS and Zendesk exports, 2,000 customers from January 2023, 30- and 90-day horizons;
examples/events: a streaming app's event log, 4,000 listeners over 6 months) for each seed,
import them through their mappings and cut them; `--set` changes a [training] setting for every
run, to measure the defaults against an alternative.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.config import FeatureConfig
from features.contract import Tables
from features.labels import build_labels, eligible_mask
from features.signals import build_features
from ingest.demo_data import DemoConfig, demo_settings, generate_demo
from ingest.importer import run_import
from ingest.mapping import load_mapping
from ingest.online_retail import (
    ONLINE_RETAIL_CONFIG,
    ONLINE_RETAIL_TRAINING,
    import_online_retail,
    read_online_retail,
)
from training.config import TrainConfig
from training.evaluation import (
    binary_metrics,
    bootstrap_intervals,
    fit_logistic_baseline,
    logistic_scores,
)
from training.gate import GateRules, data_problems, judge
from training.pipeline import default_dates, fit_from_tables
from training.simple_model import fit_simple_model, simple_model_gate

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data from the project root (a worktree one level deeper finds it one level up).
RETAIL = next(
    (p / "shared" / "data" / "online_retail" for p in (ROOT.parent, ROOT.parent.parent)
     if (p / "shared" / "data" / "online_retail").exists()),
    ROOT.parent / "shared" / "data" / "online_retail",
)  # fmt: skip
RETAIL_CUTS = {60: ["2011-07-01", "2011-08-10", "2011-10-09"], 90: ["2011-07-01", "2011-09-10"]}
CDNOW_MAPPING = Path(__file__).with_name("cdnow_mapping.toml")
CDNOW_CUTS = ("1997-07-01", "1997-10-01", "1998-01-01", "1998-03-01")
CDNOW_COLUMNS = ("customer_id", "date", "cds", "dollars")
RFM_WINDOWS = (7, 30, 90, 180, 365)
# Scores whose probabilities are compared with what happened (log loss, ECE at the cut).
CALIBRATED = ("project", "project_calibrated", "project_logistic", "rfm_lightgbm", "rfm_logistic")
DEMO_SEEDS = (3, 4, 5, 6)
TRUTH_TARGET = 0.01  # the target: the demo model within 0.01 ROC AUC of the truth
SCORES = (
    "project",
    "registered",
    "rfm_lightgbm",
    "rfm_logistic",
    "truth",
    "project_raw",
    "project_logistic",
)


def before(tables: Tables, cut: pd.Timestamp) -> Tables:
    """What was recorded before the cut: rows dated before it, customers signed up before it,
    and churn dates only when they had happened."""
    customers = tables.customers[tables.customers["signup_at"] < cut].copy()
    if "churned_at" in customers:
        customers["churned_at"] = customers["churned_at"].where(customers["churned_at"] < cut)

    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["at"] < cut].reset_index(drop=True)

    return Tables(
        customers=customers.reset_index(drop=True),
        activity=rows(tables.activity),
        feedback=rows(tables.feedback),
        revenue=rows(tables.revenue),
    )


# ----------------------------------------------------------------- the analyst's RFM models


def rfm_features(tables: Tables, as_of: pd.Timestamp, config: FeatureConfig) -> pd.DataFrame:
    """Recency, frequency, tenure, money and counts over 7-365 days, per customer eligible at
    T, from the qualifying activity and the revenue dated before T."""
    ids = tables.customers["customer_id"].to_numpy()
    eligible = eligible_mask(tables, as_of, config.churn)
    act = tables.activity[tables.activity["at"] < as_of]
    events = config.churn.qualifying_events
    if events is not None:
        act = act[act["event"].isin(events)]
    billing = "kind" in tables.revenue and tables.revenue["kind"].eq("failed_payment").any()
    rev = tables.revenue[tables.revenue["at"] < as_of]
    failed = rev["kind"].eq("failed_payment") if billing else pd.Series(False, index=rev.index)
    out = pd.DataFrame(index=pd.Index(ids[eligible], name="customer_id"))
    age = (as_of - act["at"]).dt.total_seconds() / 86_400
    grouped = age.groupby(act["customer_id"].to_numpy())
    out["recency"] = grouped.min()
    out["tenure"] = grouped.max()
    out["frequency"] = grouped.size()
    for w in RFM_WINDOWS:
        out[f"events_{w}d"] = (age < w).groupby(act["customer_id"].to_numpy()).sum()
    rev_age = (as_of - rev["at"]).dt.total_seconds() / 86_400
    rev_ids = rev["customer_id"].to_numpy()
    paid = rev["amount"].where(~failed, 0.0)  # a failed payment brought no money
    out["money"] = paid.groupby(rev_ids).sum()
    for w in (30, 90, 365):
        out[f"money_{w}d"] = paid.where(rev_age < w, 0.0).groupby(rev_ids).sum()
    out["order_value"] = out["money"] / out["frequency"]
    if billing:  # subscription billing: the payments that failed lately
        out["failed_payments_90d"] = (failed & (rev_age < 90)).groupby(rev_ids).sum()
    out = out.join(feedback_columns(tables.feedback, as_of))
    signup = tables.customers.set_index("customer_id")["signup_at"]
    out["age"] = (as_of - signup.reindex(out.index)).dt.total_seconds() / 86_400
    counts = [c for c in out.columns if c.startswith(("events_", "failed_", "tickets_"))]
    out[[*counts, "frequency"]] = out[[*counts, "frequency"]].fillna(0)
    return out.reset_index()


def feedback_columns(feedback: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The analyst's feedback columns where the export has them: the last NPS score before T
    and the support tickets open at T (opened before T, not resolved before T)."""
    columns = {}
    if "score" in feedback and feedback["kind"].eq("nps").any():
        nps = feedback[feedback["kind"].eq("nps") & feedback["score"].notna()]
        nps = nps[nps["at"] < as_of].sort_values("at")
        columns["nps_last"] = nps.groupby("customer_id")["score"].last()
    if feedback["kind"].eq("ticket").any():
        tickets = feedback[feedback["kind"].eq("ticket") & (feedback["at"] < as_of)]
        resolved = tickets.get("resolved_at", pd.Series(pd.NaT, index=tickets.index))
        still_open = resolved.isna() | (resolved >= as_of)
        columns["tickets_open"] = still_open.groupby(tickets["customer_id"]).sum()
    if not columns:
        return pd.DataFrame(index=pd.Index([], name="customer_id"))
    return pd.DataFrame(columns).rename_axis("customer_id")


def rfm_training_set(
    tables: Tables, dates: list[pd.Timestamp], config: FeatureConfig
) -> pd.DataFrame:
    parts = []
    for d in dates:
        rows = rfm_features(tables, d, config)
        labels = build_labels(tables, d, config.churn)
        parts.append(rows.merge(labels, on="customer_id").assign(as_of=d))
    return pd.concat(parts, ignore_index=True)


def rfm_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("customer_id", "churned", "as_of")]


def fit_rfm_models(train: pd.DataFrame, seed: int = 0):
    """A LightGBM (fixed, sensible settings, no tuning) and a logistic regression on log1p."""
    cols = rfm_columns(train)
    y = train["churned"].to_numpy()
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15,
              "min_data_in_leaf": 50, "feature_fraction": 0.9, "seed": seed,
              "deterministic": True, "num_threads": 1, "verbosity": -1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(train[cols].to_numpy(float), y), 200)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    logistic.fit(_log_features(train[cols]), y)
    return booster, logistic


def _log_features(frame: pd.DataFrame) -> np.ndarray:
    x = frame.to_numpy(float)
    x = np.sign(x) * np.log1p(np.abs(x))
    return np.where(np.isnan(x), -1.0, x)  # never bought / no revenue: below every value


# ------------------------------------------------------------------------------- one cut


def run_cut(
    name: str,
    full: Tables,
    cut: pd.Timestamp,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    truth: pd.DataFrame | None = None,
) -> dict:
    """Train on the data before the cut, score at the cut, compare with what happened."""
    seen = before(full, cut)
    began = time.perf_counter()
    fitted = fit_from_tables(seen, feature_config, train_config, log=lambda _: None)
    seconds = time.perf_counter() - began
    model = fitted.model
    features = build_features(seen, cut, model.features_config())
    labels = build_labels(full, cut, feature_config.churn)  # what happened after the cut
    rows = features.merge(labels, on="customer_id", validate="one_to_one")
    y = rows["churned"].to_numpy()
    scores = {"project": model.predict_proba(rows, cut)}  # as the weekly job scores the cut
    # The calibration alone, without the level of the date (training.seasonal_level).
    scores["project_calibrated"] = model.predict_proba(rows.drop(columns="as_of", errors="ignore"))
    # Diagnostics beside it: the booster before calibration (does calibration cost ranking?),
    # and the project's logistic-regression baseline refit on the same rows as the champion
    # (the simple model the gate registers when it wins on the holdout).
    scores["project_raw"] = model.raw_probability(rows)
    train_rows = fitted.dataset[fitted.dataset["as_of"].isin(fitted.plan.dates)]
    logistic = fit_logistic_baseline(
        train_rows, train_rows["churned"].to_numpy(), model.preprocessor, train_config.seed
    )
    scores["project_logistic"] = logistic_scores(logistic, rows, model.preprocessor)
    # What `churn train` makes the champion on a first run: LightGBM if the gate promotes it,
    # else the baseline that beat it (registered as a model) if that one passes its own gate.
    registered, registered_scores = registered_champion(seen, fitted, train_rows, train_config)
    if registered_scores is not None:
        scores["registered"] = registered_scores(rows)

    dates = default_dates(seen, feature_config, train_config)
    rfm_train = rfm_training_set(seen, dates, feature_config)
    booster, logistic = fit_rfm_models(rfm_train)
    rfm_now = rfm_features(seen, cut, feature_config).set_index("customer_id")
    rfm_now = rfm_now.reindex(rows["customer_id"])
    cols = rfm_columns(rfm_train)
    scores["rfm_lightgbm"] = booster.predict(rfm_now[cols].to_numpy(float))
    scores["rfm_logistic"] = logistic.predict_proba(_log_features(rfm_now[cols]))[:, 1]
    if truth is not None:
        true = rows[["customer_id"]].merge(
            truth[truth["as_of"] == cut][["customer_id", "churn_probability"]],
            on="customer_id",
            how="left",
        )["churn_probability"]
        if true.notna().all():
            scores["truth"] = true.to_numpy()
    result = {
        "data": name,
        "horizon": feature_config.churn.horizon_days,
        "cut": str(cut.date()),
        "rows": len(y),
        "churners": int(y.sum()),
        "fit_s": round(seconds, 1),
        "registered": registered,
    }
    for score, p in scores.items():
        m = binary_metrics(y, p)
        result.update({f"{score}_auc": m["roc_auc"], f"{score}_pr": m["pr_auc"],
                       f"{score}_lift": m["lift_top_decile"]})  # fmt: skip
    # Calibration at the cut: the probabilities people read, against what happened.
    for score in CALIBRATED:
        m = binary_metrics(y, scores[score])
        result.update({f"{score}_log_loss": m["log_loss"], f"{score}_ece": m["ece"]})
    # Calibration in the large: the mean probability against the share that churned.
    result["project_mean"], result["churn_rate"] = (
        float(np.mean(scores["project"])),
        float(y.mean()),
    )
    result["project_calibrated_mean"] = float(np.mean(scores["project_calibrated"]))
    result["level_shift"] = float(model.level_shift(rows, cut)[0]) if model.seasonal_level else 0.0
    _values, counts = np.unique(scores["project"], return_counts=True)
    result["max_tie_share"] = counts.max() / len(y)
    result.update(difference_intervals(y, scores, rows["customer_id"].to_numpy(), result))
    holdout = fitted.evaluation.holdout
    lo, hi = holdout.intervals.get("candidate", {}).get("roc_auc", (np.nan, np.nan))
    result.update(
        backtest_kind=holdout.kind,
        backtest_auc=holdout.metrics["candidate"]["roc_auc"],
        backtest_ci=f"{lo:.3f}-{hi:.3f}",
        backtest_logistic_auc=holdout.metrics["logistic_regression"]["roc_auc"],
        rounds=fitted.refit.rounds,
        rounds_backtest=fitted.evaluation.rounds.get("chosen"),
        rounds_hindsight=fitted.evaluation.rounds.get("hindsight"),
        leaves=fitted.refit.params.get("num_leaves"),
        trained_until=fitted.refit.trained_until,
    )
    return result


DIFFERENCE_REPS = 500  # bootstrap resamples of the customers scored at a cut


def difference_intervals(
    y: np.ndarray, scores: dict[str, np.ndarray], customers: np.ndarray, measured: dict
) -> dict:
    """95 % intervals, by a bootstrap over the customers scored at the cut, of the project's ROC
    AUC minus the better analyst model's (the one that scored higher at this cut, by the ROC
    AUCs in `measured`: the comparison the target is judged by) and, on demo data, of the
    truth's minus the project's. A difference whose interval holds 0 is one these customers
    cannot tell from none."""
    analyst = max(("rfm_lightgbm", "rfm_logistic"), key=lambda s: measured[f"{s}_auc"])
    compared = {"candidate": scores["project"], "analyst": scores[analyst]}
    if "truth" in scores:
        compared["truth"] = scores["truth"]
    _, differences = bootstrap_intervals(y, compared, customers, reps=DIFFERENCE_REPS)
    out = {"best_analyst": analyst}
    lo, hi = differences.get("analyst", (np.nan, np.nan))
    out["over_analyst_lo"], out["over_analyst_hi"] = lo, hi
    if "truth" in differences:  # candidate minus truth -> truth minus candidate
        lo, hi = differences["truth"]
        out["truth_gap_lo"], out["truth_gap_hi"] = -hi, -lo
    return out


def registered_champion(seen: Tables, fitted, train_rows: pd.DataFrame, config: TrainConfig):
    """The kind of model a first `churn train` on these tables registers as champion
    (training.pipeline.train_from_tables without MLflow) and a function scoring rows with it;
    ("none", None) when nothing passes the gate."""
    evaluation = fitted.evaluation
    rules = GateRules.from_config(config)
    gate = judge(
        evaluation.metrics,
        rules,
        baselines=evaluation.baselines,
        data_problems=data_problems(seen),
        differences=evaluation.holdout.differences,
        auc_interval=evaluation.holdout.auc_interval,
    )
    if gate.promoted:
        return "lightgbm", fitted.model.predict_proba
    if gate.lost_to is None:
        return "none", None
    kind = gate.lost_to.against
    if not simple_model_gate(kind, evaluation.baselines, rules).promoted:
        return "none", None
    simple = fit_simple_model(
        kind,
        train_rows,
        train_rows,
        fitted.model.preprocessor,
        fitted.feature_config,
        config,
        fitted.refit.trained_until,
    )
    return kind, simple.predict_proba


def training_config(settings: dict, overrides: dict | None = None) -> TrainConfig:
    """The [training] settings a data folder carries, with the benchmark's --set overrides."""
    return TrainConfig.from_dict({**settings, **(overrides or {})})


def retail_runs(path: Path, overrides: dict | None = None) -> list[dict]:
    tables, _ = import_online_retail(read_online_retail(path))
    config = training_config(ONLINE_RETAIL_TRAINING, overrides)  # the importer's: defaults
    results = []
    for horizon, cuts in RETAIL_CUTS.items():
        features = ONLINE_RETAIL_CONFIG.with_churn(horizon_days=horizon)
        for cut in cuts:
            results.append(run_cut("retail", tables, pd.Timestamp(cut), features, config))
            _print_row(results[-1])
    return results


def read_cdnow(path: Path) -> pd.DataFrame:
    """CDNOW_master.txt: whitespace-separated, every column as text (the mapping declares the
    types: ids keep their leading zeros). The original file has no header; the copy in the
    lifetimes package has one (customer_id date number_of_cds dollar_value): it is skipped."""
    raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
    if len(raw) and not str(raw.iloc[0, 0]).isdigit():
        raw = raw.iloc[1:].reset_index(drop=True)
    if raw.shape[1] != len(CDNOW_COLUMNS):
        raise ValueError(
            f"'{path}': expected {len(CDNOW_COLUMNS)} columns {CDNOW_COLUMNS}, found "
            f"{raw.shape[1]}; first row: {raw.iloc[0].tolist() if len(raw) else None}"
        )
    return raw.set_axis(list(CDNOW_COLUMNS), axis=1)


def cdnow_runs(path: Path, overrides: dict | None = None) -> list[dict]:
    """CDNOW through its mapping (benchmarks/cdnow_mapping.toml), as `churn import` maps an
    export, trained with the mapping's settings at each cut of CDNOW_CUTS."""
    mapping = load_mapping(CDNOW_MAPPING)
    tables, _ = run_import(mapping, ".", frames={"purchases": read_cdnow(path)})
    features = FeatureConfig.from_dict(mapping.features)
    config = training_config(mapping.training, overrides)
    results = []
    for cut in CDNOW_CUTS:
        results.append(run_cut("cdnow", tables, pd.Timestamp(cut), features, config))
        _print_row(results[-1])
    return results


def example_tables(example: str, size: int, seed: int) -> tuple[Tables, FeatureConfig, dict]:
    """An example's raw exports (examples/<example>/generate.py: day-first dates, cents, unix
    times, JSON lines, statuses named by other tools) imported through its mapping, as
    `churn import` maps a company's exports: the tables, the features and [training] settings."""
    folder = ROOT / "examples" / example
    spec = importlib.util.spec_from_file_location(f"{example}_generate", folder / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    mapping = load_mapping(folder / "mapping.toml")
    with tempfile.TemporaryDirectory() as tmp:
        generate.write_sample(tmp, size, seed=seed)
        tables, _ = run_import(mapping, tmp)
    return tables, FeatureConfig.from_dict(mapping.features), mapping.training


# The example exports (examples/): the SaaS company (2,000 customers from January 2023, the
# issue's "15 months" at the first cut) and the streaming app's event log (from June 2018).
EXAMPLE_CUTS = {
    "saas": {30: ("2024-04-01", "2024-07-01", "2024-10-01"), 90: ("2024-04-01", "2024-07-01")},
    "events": {30: ("2018-10-01", "2018-10-31")},
}
EXAMPLE_SIZES = {"saas": 2_000, "events": 4_000}
EXAMPLE_SEEDS = (0, 1, 2)


def example_runs(
    example: str, seeds: tuple[int, ...] = EXAMPLE_SEEDS, overrides: dict | None = None
) -> list[dict]:
    """An example's exports for several seeds, cut at EXAMPLE_CUTS, trained with its mapping's
    settings (the horizon set per cut)."""
    results = []
    for seed in seeds:
        tables, features, training = example_tables(example, EXAMPLE_SIZES[example], seed)
        config = training_config(training, overrides)
        for horizon, cuts in EXAMPLE_CUTS[example].items():
            for cut in cuts:
                row = run_cut(example, tables, pd.Timestamp(cut),
                              features.with_churn(horizon_days=horizon), config)  # fmt: skip
                results.append({**row, "seed": seed})
                _print_row(results[-1])
    return results


def demo_runs(
    customers: int, seeds: tuple[int, ...] = DEMO_SEEDS, overrides: dict | None = None
) -> list[dict]:
    """9 and 24 months of demo history before the cut, the cut on the simulation's grid, for
    each seed (one simulated business per seed): trained with the data folder's settings
    (ingest.demo_data.demo_settings, what `churn train --data` reads from a demo folder)."""
    results = []
    for seed in seeds:
        for months in (9, 24):
            demo = DemoConfig(n_customers=customers, seed=seed, months=months + 1)
            tables, truth = generate_demo(demo)
            steps = months * 30 // demo.step_days
            cut = demo.start + pd.Timedelta(days=demo.step_days * steps)
            features, training = demo_settings(demo)
            config = training_config(training, overrides)
            row = run_cut(f"demo {months}m", tables, cut, features, config, truth)
            results.append({**row, "seed": seed})
            _print_row(results[-1])
    return results


def shaped_like(
    tables: Tables, share: float | None = None, start: str | None = None, seed: int = 0
) -> Tables:
    """Online Retail as another company's export might look: a random `share` of its customers
    (a smaller business), or an export that starts at `start` (customers known from then on,
    their signup the first purchase the export shows)."""
    customers = tables.customers
    if share is not None:
        customers = customers[np.random.default_rng(seed).random(len(customers)) < share]
    ids = customers["customer_id"]

    def rows(df: pd.DataFrame) -> pd.DataFrame:
        df = df[df["customer_id"].isin(ids)]
        if start is not None:
            df = df[df["at"] >= pd.Timestamp(start)]
        return df.reset_index(drop=True)

    activity, feedback, revenue = rows(tables.activity), rows(tables.feedback), rows(tables.revenue)
    if start is not None:
        first = activity.groupby("customer_id")["at"].min()
        customers = customers[customers["customer_id"].isin(first.index)].copy()
        customers["signup_at"] = customers["customer_id"].map(first)
    return Tables(customers.reset_index(drop=True), activity, feedback, revenue)


# Shapes of a purchase log the project may meet (name, customers' share, export start, cut,
# horizon): months rather than years of history, horizons from 30 to 120 days, a few hundred
# customers, an export that starts mid-stream.
SHAPES = (
    ("4 months", None, None, "2011-04-01", 30),
    ("4 months", None, None, "2011-04-01", 60),
    ("5.5 months", None, None, "2011-05-15", 30),
    ("5.5 months", None, None, "2011-05-15", 60),
    ("5.5 months", None, None, "2011-05-15", 90),
    ("7 months", None, None, "2011-07-01", 30),
    ("9 months", None, None, "2011-09-01", 30),
    ("30 % of customers", 0.3, None, "2011-08-01", 60),
    ("30 % of customers", 0.3, None, "2011-10-01", 30),
    ("15 % of customers", 0.15, None, "2011-09-01", 60),
    ("export from March", None, "2011-03-01", "2011-09-01", 60),
    ("export from March", None, "2011-03-01", "2011-10-01", 30),
    ("12 months", None, None, "2011-08-10", 120),
)


def shape_runs(path: Path, overrides: dict | None = None) -> list[dict]:
    """Online Retail cut into the shapes above, each trained with the importer's defaults."""
    tables, _ = import_online_retail(read_online_retail(path))
    config = training_config(ONLINE_RETAIL_TRAINING, overrides)
    results = []
    for number, (name, share, start, cut, horizon) in enumerate(SHAPES):
        shaped = shaped_like(tables, share, start, seed=number)
        features = ONLINE_RETAIL_CONFIG.with_churn(horizon_days=horizon)
        results.append(run_cut(name, shaped, pd.Timestamp(cut), features, config))
        _print_row(results[-1])
    return results


def over_analyst(frame: pd.DataFrame) -> pd.Series:
    """Per cut, the project's ROC AUC minus the better of the two analyst models'."""
    return frame["project_auc"] - frame[["rfm_lightgbm_auc", "rfm_logistic_auc"]].max(axis=1)


def shapes_summary(results: list[dict]) -> str:
    """The project minus the better analyst model over the cuts: mean, worst, how many below."""
    frame = pd.DataFrame(results)
    over = over_analyst(frame)
    clearly_below = int((frame["over_analyst_hi"] < 0).sum()) if "over_analyst_hi" in frame else 0
    clearly_above = int((frame["over_analyst_lo"] > 0).sum()) if "over_analyst_lo" in frame else 0
    return (
        f"project minus best analyst model over {len(frame)} cuts: mean {over.mean():+.4f}, "
        f"worst {over.min():+.4f}, below at {int((over < 0).sum())}; the 95 % interval of the "
        f"difference below 0 at {clearly_below}, above 0 at {clearly_above}"
    )


def demo_summary(results: list[dict]) -> pd.DataFrame:
    """Per history length: the truth's ROC AUC minus the project's over the seeds (mean, its
    standard error, worst), and how many seeds are within the target of the truth. One seed's
    gap has a standard error of about 0.006 (200-250 churners at the cut): the mean over
    seeds is the figure to judge."""
    frame = pd.DataFrame([r for r in results if "truth_auc" in r])
    if frame.empty:
        return frame
    frame["gap"] = frame["truth_auc"] - frame["project_auc"]
    frame["over_analyst"] = over_analyst(frame)
    frame["registered_gap"] = frame["truth_auc"] - frame.get("registered_auc", np.nan)
    rows = []
    for data, part in frame.groupby("data", sort=False):
        gaps = part["gap"].to_numpy()
        rows.append(
            {
                "data": data,
                "seeds": len(part),
                "truth_minus_project_mean": gaps.mean(),
                "standard_error": gaps.std(ddof=1) / np.sqrt(len(gaps))
                if len(gaps) > 1
                else np.nan,
                "worst": gaps.max(),
                f"within_{TRUTH_TARGET}": int((gaps <= TRUTH_TARGET).sum()),
                "project_minus_best_analyst_mean": part["over_analyst"].mean(),
                "below_analyst": int((part["over_analyst"] < 0).sum()),
                # seeds whose interval of the gap lies wholly beyond the target
                f"beyond_{TRUTH_TARGET}_clearly": int((part["truth_gap_lo"] > TRUTH_TARGET).sum())
                if "truth_gap_lo" in part
                else 0,
                "registered_not_lightgbm": int((part["registered"] != "lightgbm").sum()),
                "truth_minus_registered_mean": part["registered_gap"].mean(),
            }
        )
    return pd.DataFrame(rows)


def _print_row(row: dict) -> None:
    best = max(row.get(f"{s}_auc", -1) for s in ("rfm_lightgbm", "rfm_logistic"))
    print(
        f"{row['data']:<10} h={row['horizon']:>3} cut {row['cut']}: project AUC "
        f"{row['project_auc']:.4f} vs best analyst model {best:.4f}"
        + (
            f" (difference 95 % {row['over_analyst_lo']:+.4f}..{row['over_analyst_hi']:+.4f})"
            if "over_analyst_lo" in row
            else ""
        )
        + (f", truth {row['truth_auc']:.4f}" if "truth_auc" in row else "")
        + f"; its logistic baseline {row['project_logistic_auc']:.4f}"
        + f"; registered: {row['registered']}"
        + (f" {row['registered_auc']:.4f}" if "registered_auc" in row else "")
        + f"; mean p {row['project_mean']:.4f} (calibration alone "
        f"{row['project_calibrated_mean']:.4f}, level {row['level_shift']:+.3f}), churned "
        f"{row['churn_rate']:.4f}; log loss {row['project_log_loss']:.5f} "
        f"({row['project_log_loss'] - row['project_calibrated_log_loss']:+.5f})"
        + f" (fit {row['fit_s']} s)",
        flush=True,
    )


def table(results: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(results)
    cols = ["data", "seed", "horizon", "cut", "rows", "churners"]
    for metric in ("auc", "pr", "lift"):
        cols += [f"{s}_{metric}" for s in SCORES if f"{s}_{metric}" in frame]
    cols += [f"{s}_{m}" for s in CALIBRATED for m in ("log_loss", "ece")]
    cols += ["project_mean", "project_calibrated_mean", "churn_rate"]
    cols += ["best_analyst", "over_analyst_lo", "over_analyst_hi", "truth_gap_lo", "truth_gap_hi"]
    cols += ["registered", "backtest_auc", "backtest_ci", "backtest_logistic_auc", "rounds_backtest",
             "rounds_hindsight", "rounds", "leaves", "max_tie_share", "trained_until", "fit_s"]  # fmt: skip
    return frame[[c for c in cols if c in frame]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retail", type=Path, default=RETAIL)
    parser.add_argument("--demo-customers", type=int, default=10_000)
    parser.add_argument(
        "--demo-seeds",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=DEMO_SEEDS,
        help="simulated businesses, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--only",
        choices=("retail", "demo", "shapes", "cdnow", "saas", "events"),
        help="one part; shapes (Online Retail cut like other exports), saas and events (the "
        "examples' exports) run only when named",
    )
    parser.add_argument(
        "--example-seeds",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=EXAMPLE_SEEDS,
        help="seeds of the examples' generators for --only saas|events (default %(default)s)",
    )
    parser.add_argument(
        "--cdnow",
        type=Path,
        help="CDNOW_master.txt (see the module docstring); its cuts run when it is given",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [training] setting for every run, in TOML (e.g. linear_share=0)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/backtest.csv"))
    args = parser.parse_args()
    print(f"CPUs: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = tomllib.loads(f"value = {value}")["value"]
    results = []
    if args.only in (None, "retail"):
        results += retail_runs(args.retail, overrides)
    if args.only in (None, "demo"):
        results += demo_runs(args.demo_customers, args.demo_seeds, overrides)
    if args.only == "shapes":
        results += shape_runs(args.retail, overrides)
    if args.only in ("saas", "events"):
        results += example_runs(args.only, args.example_seeds, overrides)
    if args.only == "cdnow" and args.cdnow is None:
        parser.error("--only cdnow needs --cdnow PATH (CDNOW_master.txt)")
    if args.only in (None, "cdnow") and args.cdnow is not None:
        results += cdnow_runs(args.cdnow, overrides)
    frame = table(results)
    with pd.option_context("display.width", 250, "display.max_columns", 60):
        print(frame.round(4).to_string(index=False))
        if args.only in ("shapes", "saas", "events"):
            print("\n" + shapes_summary(results))
        summary = demo_summary(results)
        if not summary.empty:
            print("\ndemo over the seeds (truth minus project, ROC AUC):")
            print(summary.round(4).to_string(index=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
