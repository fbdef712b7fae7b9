"""The promotion gate: may a candidate model become the champion?

Pure functions, no MLflow: the pipeline measures the candidate, the baselines and the champion on
the same holdout rows and hands the numbers here; training.tracking records the decision.

A candidate is promoted only when all of these hold, checked in this order:
1. the data does not look broken (timestamps piled up at 1970, tables decades apart, data dated
   after today): a model of broken data must not replace a working one;
2. the holdout can measure it: enough rows, enough churners and non-churners, and a finite
   promotion metric (no churner on the test dates gives a NaN ROC AUC, never a promotion);
3. no baseline beats it on the promotion metric (logistic regression and the recency rule: a
   model that loses to the rule a CS team uses without a model has not earned its place). With
   the holdout's paired bootstrap (ROC AUC), a baseline ahead of the model by less than the
   holdout's noise (the 95 % interval of the model's gain spans 0) is a tie: the model passes
   this check and the reason says so, unless `ties` is "baseline". Why: the backtest benchmark
   (benchmarks/README.md) found the point-estimate rule handing 5 of 13 cuts to the logistic
   regression on ties, which then scored 0.016-0.021 ROC AUC below LightGBM at 4 of them;
4. it ranks better than chance: ROC AUC above 0.5 on the holdout (scores no better than a
   coin's would be read as if they meant something). To replace a champion, the lower end of
   its 95 % interval must be above 0.5 too; a first champion whose interval reaches 0.5 is
   promoted, like one on a small holdout, so that a small business gets scores at all, and
   the reason says the figures cannot be told from chance;
5. it beats the champion by more than `min_gain`, when there is one, and the champion could be
   scored on this data (a champion that cannot is reported and not replaced automatically).
   With the paired bootstrap of the two on the same rows (ROC AUC), a champion ahead by less
   than the holdout's noise (the 95 % interval of the gain spans 0) is a tie, and a candidate
   trained on later data wins it when `min_gain` is 0 (the default): it has seen the latest
   months, and keeping a model months older on a difference the holdout cannot tell from noise
   left a term-based service scored by a 7-month-old model while monitoring said "retrain"
   (OULAD judge: gain -0.0023, one holdout date of 10,115 rows).
   Both are measured on the holdout rows dated after the champion's last training date
   (champion_holdout): on the dates it was trained on, a champion would be scored on labels
   it learnt, and a retrain on the same history could never replace it. When too few of those
   rows remain to measure (a retrain on the same data, a week's new data), the champion is
   not compared: a candidate trained on later data replaces it once it passes checks 1-4,
   and the reason says so; one trained on the same or older dates does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import FUTURE_TIMESTAMPS, TIMESTAMP_COLUMNS, Tables
from training.evaluation import HIGHER_IS_BETTER, binary_metrics, bootstrap_intervals

EPOCH_EDGE = pd.Timestamp("1971-01-01")  # before it: a timestamp at "zero" of some unit
EPOCH_SHARE = 0.01  # more than 1 % of a column before 1971 is a unit or parsing mistake
MAX_SPAN_YEARS = 50  # customer data spanning more than this mixes units or placeholders
FUTURE_SLACK = pd.Timedelta(days=1)  # time zones and clock skew
TIE_WINNERS = ("model", "baseline")
CHANCE_AUC = 0.5  # a ROC AUC at or below it ranks no better than a coin


@dataclass(frozen=True)
class GateRules:
    """What a candidate must show. min_gain: over the champion on `metric`; min_rows and
    min_churners: the least holdout (rows, churners, non-churners) that measures anything."""

    metric: str = "roc_auc"
    min_gain: float = 0.0
    min_rows: int = 200
    min_churners: int = 20
    ties: str = "model"  # a baseline ahead within the holdout's noise: "model" or "baseline" wins

    def __post_init__(self) -> None:
        if self.ties not in TIE_WINNERS:
            raise ValueError(f"promotion_ties must be one of {TIE_WINNERS}, got {self.ties!r}")
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(
                f"promotion metric must be one of {sorted(HIGHER_IS_BETTER)}, got {self.metric!r}"
            )
        if self.min_rows < 1 or self.min_churners < 1:
            raise ValueError("promotion_min_rows and promotion_min_churners must be at least 1")

    @classmethod
    def from_config(cls, config: Any) -> GateRules:
        """The rules in a TrainConfig (promotion_metric, promotion_min_gain, ...)."""
        return cls(
            metric=config.promotion_metric,
            min_gain=float(config.promotion_min_gain),
            min_rows=int(getattr(config, "promotion_min_rows", cls.min_rows)),
            min_churners=int(getattr(config, "promotion_min_churners", cls.min_churners)),
            ties=str(getattr(config, "promotion_ties", cls.ties)),
        )


@dataclass(frozen=True)
class Comparison:
    """The candidate against one other score on the same holdout rows; gain > 0: candidate better."""

    against: str
    candidate: float
    other: float
    gain: float
    # The 95 % interval of the gain (paired bootstrap on the holdout), when it was measured.
    interval: tuple[float, float] | None = None

    @property
    def tie(self) -> bool:
        """The other is ahead (or level) by less than the holdout's noise: its interval spans 0."""
        if self.gain > 0 or self.interval is None:
            return False
        lo, hi = self.interval
        return lo <= 0 <= hi


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict, its reason in words, and the comparisons behind it."""

    promoted: bool
    reason: str
    metric: str
    stage: str  # data, holdout, baseline, chance, champion, or passed
    baselines: tuple[Comparison, ...] = ()
    champion: Comparison | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    ties_go_to: str = "baseline"  # GateRules.ties, set by judge (the default: point estimates)

    @property
    def lost_to(self) -> Comparison | None:
        """The baseline that beat the candidate by the most, if any did (a tie within the
        holdout's noise counts only when ties go to the baseline)."""
        return _worst_loss(self.baselines, self.ties_go_to)

    @property
    def tied_with(self) -> tuple[Comparison, ...]:
        """Baselines ahead of the candidate within the holdout's noise that did not stop it."""
        return _ties_kept(self.baselines, self.ties_go_to)

    def tags(self) -> dict[str, str]:
        """Tags for the run and the model version: the decision and the numbers behind it."""
        tags = {
            "gate_decision": "promoted" if self.promoted else "not promoted",
            "gate_stage": self.stage,
            "gate_metric": self.metric,
        }
        for c in self.baselines:
            tags[f"gate_gain_vs_{c.against}"] = f"{c.gain:+.4f}"
        lost = self.lost_to
        if lost is not None:
            tags["lost_to_baseline"] = lost.against
            tags["lost_to_baseline_by"] = f"{-lost.gain:.4f}"
        for c in self.tied_with:
            tags[f"gate_tie_with_{c.against}"] = f"{c.interval[0]:+.4f} to {c.interval[1]:+.4f}"
        if self.champion is not None:
            tags["gate_gain_vs_champion"] = f"{self.champion.gain:+.4f}"
            if self.champion.interval is not None:
                lo, hi = self.champion.interval
                tags["gate_gain_vs_champion_interval"] = f"{lo:+.4f} to {hi:+.4f}"
        return tags

    def metrics(self) -> dict[str, float]:
        """The gains as MLflow metrics: gate_gain_vs_<baseline>, gate_gain_vs_champion."""
        out = {f"gate_gain_vs_{c.against}": c.gain for c in self.baselines}
        if self.champion is not None:
            out["gate_gain_vs_champion"] = self.champion.gain
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def _ties_kept(comparisons: tuple[Comparison, ...], ties_go_to: str) -> tuple[Comparison, ...]:
    """The ties that do not stop the candidate (none when ties go to the baseline)."""
    return tuple(c for c in comparisons if c.tie) if ties_go_to == "model" else ()


def _worst_loss(comparisons: tuple[Comparison, ...], ties_go_to: str) -> Comparison | None:
    """The baseline ahead of the candidate by the most, leaving out the ties that are kept."""
    kept = _ties_kept(comparisons, ties_go_to)
    lost = [c for c in comparisons if c.gain <= 0 and c not in kept]
    return min(lost, key=lambda c: c.gain) if lost else None


def _finite(value: Any) -> bool:
    return value is not None and bool(np.isfinite(float(value)))


def _gain(candidate: float, other: float, metric: str) -> float:
    return candidate - other if HIGHER_IS_BETTER[metric] else other - candidate


def holdout_problems(metrics: dict[str, float], rules: GateRules) -> list[str]:
    """Why a holdout cannot measure the candidate: too few rows, churners or non-churners, or a
    promotion metric that is not a number. Empty when it can."""
    rows, rate = metrics.get("rows"), metrics.get("positive_rate")
    if not _finite(rows) or not _finite(rate):
        return ["the holdout's size and churn rate are unknown (no 'rows'/'positive_rate')"]
    rows = int(rows)
    churners = round(rows * float(rate))
    problems = []
    if rows < rules.min_rows:
        problems.append(f"{rows} holdout rows, fewer than {rules.min_rows}")
    if churners < rules.min_churners:
        problems.append(
            f"{churners} churners among {rows} holdout rows, fewer than {rules.min_churners}"
        )
    if rows - churners < rules.min_churners:
        problems.append(
            f"{rows - churners} non-churners among {rows} holdout rows, fewer than {rules.min_churners}"
        )
    if not _finite(metrics.get(rules.metric)):
        problems.append(f"the candidate's {rules.metric} is not a number on the holdout")
    return problems


def below_chance(metrics: dict[str, float], interval: tuple[float, float] | None = None) -> str:
    """Why the candidate's ranking cannot be told from chance on the holdout (its ROC AUC at or
    below 0.5, or the lower end of its 95 % interval, `interval`, at or below 0.5); empty when
    it can, or when there is no ROC AUC."""
    auc = metrics.get("roc_auc")
    if not _finite(auc):
        return ""
    auc = float(auc)
    known = interval is not None and all(map(_finite, interval))
    if auc > CHANCE_AUC and not (known and interval[0] <= CHANCE_AUC):
        return ""
    text = f"ROC AUC {auc:.4f}"
    if known:
        text += f", 95 % interval {interval[0]:.4f} to {interval[1]:.4f}"
    rows, rate = metrics.get("rows"), metrics.get("positive_rate")
    churners = round(float(rows) * float(rate)) if _finite(rows) and _finite(rate) else None
    if churners is not None and min(churners, float(rows) - churners) >= MANY_CHURNERS:
        # A store's 364 churners among 656 (benchmarks/README.md, session 38): more of them
        # would not help; what the data records does not tell who leaves.
        advice = (
            f"With {churners:,} churners among {int(rows):,} holdout rows there were enough to "
            "learn from: what the data records does not tell who leaves within the horizon. "
            "Check the mapping (the dates, the qualifying events, what counts as activity) and "
            "try another horizon"
        )
    else:
        advice = (
            "More history, more customers or a longer horizon give it more churners to learn from"
        )
    return (
        f"the model ranks churners no better than chance on the holdout ({text}; 0.5 is a "
        f"coin). {advice}"
    )


# Churners (and stayers) in a holdout from which a model at chance says the data, not their
# number, is what is missing.
MANY_CHURNERS = 200


def judge(
    candidate: dict[str, float],
    rules: GateRules,
    baselines: dict[str, dict[str, float]] | None = None,
    champion: dict[str, float] | None = None,
    champion_label: str = "champion",
    champion_problem: str | None = None,
    data_problems: list[str] | None = None,
    differences: dict[str, tuple[float, float]] | None = None,
    auc_interval: tuple[float, float] | None = None,
    candidate_vs_champion: dict[str, float] | None = None,
    champion_not_comparable: str | None = None,
    champion_interval: tuple[float, float] | None = None,
    newer_by_days: int | None = None,
) -> GateDecision:
    """Decide on a candidate (see the module docstring for the order of the checks).

    candidate, baselines and champion are binary_metrics() dicts measured on the same holdout
    rows. champion None with champion_problem None means there is no champion yet;
    champion_problem says why an existing champion could not be measured here. differences
    (the holdout's paired bootstrap: 95 % interval of the candidate's ROC AUC minus each
    baseline's) tell a baseline ahead within the holdout's noise (a tie: the interval spans 0,
    decided by rules.ties) from one better beyond it (always a refusal); without them the point
    estimates decide. auc_interval: the 95 % interval of the candidate's own ROC AUC on the
    holdout (below_chance). candidate_vs_champion: the candidate's metrics on the rows the
    champion was measured on, when not the whole holdout (champion_holdout);
    champion_not_comparable: why the champion cannot be compared fairly here (trained on the
    holdout's dates) and is replaced on checks 1-4 alone, as the module docstring says.
    champion_interval: the 95 % interval of the candidate's ROC AUC minus the champion's on
    those rows (paired bootstrap); newer_by_days: how many days later the candidate's training
    data ends than the champion's (None or <= 0: not newer). Together they decide a tie."""
    metric = rules.metric
    if data_problems:
        return GateDecision(
            False, "the data looks broken: " + "; ".join(data_problems), metric, "data"
        )
    problems = holdout_problems(candidate, rules)
    first = champion is None and champion_problem is None and champion_not_comparable is None
    small = first and bool(problems) and _finite(candidate.get(metric))
    if small:
        # No model serves yet: a small holdout that still measures (both classes, a finite
        # metric) may make the first champion, so that a small business gets scores at all;
        # replacing a champion needs the full holdout.
        problems = []
    # A champion that cannot be measured here is said in every refusal, not only at its stage.
    besides = f"; besides, {champion_problem}" if champion_problem else ""
    if problems:
        return GateDecision(
            False,
            "the holdout cannot measure the model (never promoted): "
            + "; ".join(problems)
            + besides,
            metric,
            "holdout",
        )
    new = float(candidate[metric])
    compared, notes = [], []
    for name, values in (baselines or {}).items():
        other = values.get(metric, float("nan"))
        if not _finite(other):
            notes.append(f"{name} has no {metric}")
            continue
        interval = (differences or {}).get(name) if metric == "roc_auc" else None
        if interval is not None and not all(map(_finite, interval)):
            interval = None
        gain = _gain(new, float(other), metric)
        compared.append(Comparison(name, new, float(other), gain, interval))
    summary = ", ".join(f"{c.against} {c.other:.4f}" for c in compared)

    def decided(decision: GateDecision) -> GateDecision:
        return replace(decision, ties_go_to=rules.ties)

    worst = _worst_loss(tuple(compared), rules.ties)
    if worst is not None:
        reason = (
            f"loses to the baseline {worst.against}: {metric} {worst.other:.4f} against the "
            f"candidate's {new:.4f} (by {-worst.gain:.4f}; baselines: {summary})"
        )
        if worst.interval is not None:
            lo, hi = worst.interval
            sure = (
                "a tie within the holdout's noise (ties go to the baseline: promotion_ties)"
                if worst.tie
                else "the baseline is better beyond the holdout's noise"
            )
            reason += (
                f"; 95 % interval of the candidate's gain over {worst.against}: "
                f"{lo:+.4f} to {hi:+.4f}, {sure}"
            )
        reason += besides
        return decided(
            GateDecision(False, reason, metric, "baseline", tuple(compared), None, tuple(notes))
        )
    chance = below_chance(candidate, None if first else auc_interval)
    if chance:
        return decided(
            GateDecision(
                False, chance + besides, metric, "chance", tuple(compared), None, tuple(notes)
            )
        )
    tied = _ties_kept(tuple(compared), rules.ties)
    if tied:
        beats = (
            f"{metric} {new:.4f}, "
            + ", ".join(
                f"{c.against} {c.other:.4f} ahead within the holdout's noise (95 % interval of the "
                f"gain {c.interval[0]:+.4f} to {c.interval[1]:+.4f})"
                for c in tied
            )
            + f": the model is kept (baselines: {summary})"
        )
    elif compared:
        # Ahead, but by less than the holdout's noise: said so, not "beats" (a 0.0003 lead read
        # as a win to a grocery's analyst).
        close = [c for c in compared if c.interval is not None and c.interval[0] <= 0]
        if close:
            beats = (
                f"at or above the baselines on {metric} {new:.4f} ({summary}), ahead of "
                + ", ".join(
                    f"{c.against} by {c.gain:.4f} within the holdout's noise (95 % interval of "
                    f"the gain {c.interval[0]:+.4f} to {c.interval[1]:+.4f})"  # type: ignore[index]
                    for c in close
                )
            )
        else:
            beats = f"beats the baselines on {metric} {new:.4f} ({summary})"
    else:
        beats = ""
    if not compared:
        notes.append("no baseline could be compared")
    if champion_problem:
        reason = f"{champion_problem}; not compared, not promoted"
        return decided(
            GateDecision(False, reason, metric, "champion", tuple(compared), None, tuple(notes))
        )
    if champion_not_comparable:
        reason = champion_not_comparable + (f"; {beats}" if beats else "")
        return decided(
            GateDecision(True, reason, metric, "passed", tuple(compared), None, tuple(notes))
        )
    if champion is None:
        reason = "no champion yet" + (f"; {beats}" if beats else "")
        if small:
            reason += (
                f" (a small holdout: {'; '.join(holdout_problems(candidate, rules))}; "
                "the figures are uncertain)"
            )
        if below_chance(candidate, auc_interval):
            lo, hi = auc_interval  # type: ignore[misc]
            reason += (
                f" (its ROC AUC cannot be told from chance on this holdout: 95 % interval "
                f"{lo:.4f} to {hi:.4f}; read its scores as uncertain)"
            )
        return decided(
            GateDecision(True, reason, metric, "passed", tuple(compared), None, tuple(notes))
        )
    old = champion.get(metric, float("nan"))
    if not _finite(old):
        reason = f"{champion_label} {metric} is not defined on the holdout; {beats}"
        return decided(
            GateDecision(True, reason, metric, "passed", tuple(compared), None, tuple(notes))
        )
    mine = float((candidate_vs_champion or candidate).get(metric, float("nan")))
    interval = champion_interval if metric == "roc_auc" else None
    if interval is not None and not all(map(_finite, interval)):
        interval = None
    versus = Comparison("champion", mine, float(old), _gain(mine, float(old), metric), interval)
    promoted = versus.gain > rules.min_gain
    fresher = not promoted and versus.tie and rules.min_gain <= 0 and (newer_by_days or 0) > 0
    verdict = "beats" if promoted else "ties with" if fresher else "does not beat"
    rows = ""
    if candidate_vs_champion is not None:
        shown = int(candidate_vs_champion.get("rows", 0))
        rows = f" on the {shown:,} holdout rows after its training dates"
    noise = ""
    if interval is not None:
        lo, hi = interval
        noise = f", 95 % interval {lo:+.4f} to {hi:+.4f}"
        if versus.tie:
            noise += ": within the holdout's noise"
    reason = (
        f"candidate {metric} {mine:.4f} {verdict} {champion_label} {old:.4f}{rows} "
        f"(gain {versus.gain:+.4f}{noise}; must exceed {rules.min_gain:+.4f})"
    )
    if fresher:
        promoted = True
        reason += f"; trained on {newer_by_days} more days of data, the candidate replaces it"
    elif versus.tie and not promoted and rules.min_gain <= 0:
        reason += "; trained on no later data than the champion, the candidate does not replace it"
    if beats:
        reason += f"; {beats}"
    stage = "passed" if promoted else "champion"
    return decided(
        GateDecision(promoted, reason, metric, stage, tuple(compared), versus, tuple(notes))
    )


# ------------------------------------------------------------------------- broken data


def _example(df: pd.DataFrame, mask: np.ndarray) -> dict[str, Any]:
    row = df.loc[mask].iloc[0]
    return {k: (str(v) if not isinstance(v, int | float) else v) for k, v in row.items()}


def data_problems(tables: Tables, now: pd.Timestamp | None = None) -> list[str]:
    """Signs that the timestamps are broken, each naming the table, the column and an example
    row: many timestamps before 1971 (integers read as time since 1970 without their unit, or
    1970-01-01 placeholders), activity that ends before the first customer signed up, a span of
    more than MAX_SPAN_YEARS years, timestamps after today. Empty when none is found."""
    now = pd.Timestamp.now("UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    problems: list[str] = []
    earliest: tuple[pd.Timestamp, str] | None = None
    latest: tuple[pd.Timestamp, str] | None = None
    for table, columns in TIMESTAMP_COLUMNS.items():
        df = getattr(tables, table)
        for col in columns:
            if col not in df or not len(df):
                continue
            values = pd.to_datetime(df[col])
            if values.dt.tz is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            present = values.notna().to_numpy()
            if not present.any():
                continue
            early = (values < EPOCH_EDGE).to_numpy() & present
            share = early.sum() / present.sum()
            if share > EPOCH_SHARE:
                problems.append(
                    f"table '{table}', column '{col}': {share:.0%} of the timestamps are before "
                    f"{EPOCH_EDGE.date()} (integers read as time since 1970 without their unit, "
                    f"or placeholder dates?); example row: {_example(df, early)}"
                )
            if col in FUTURE_TIMESTAMPS.get(table, ()):
                # a paid period's end, a scheduled cancellation: ahead of a live export's day
                # by their nature (features.contract.FUTURE_TIMESTAMPS checks their reach)
                continue
            future = (values > now + FUTURE_SLACK).to_numpy() & present
            if future.any():
                problems.append(
                    f"table '{table}', column '{col}': {int(future.sum())} timestamps after today "
                    f"({now.date()}); example row: {_example(df, future)}"
                )
            low, high = values.min(), values.max()
            where = f"{table}.{col}"
            if earliest is None or low < earliest[0]:
                earliest = (low, where)
            if latest is None or high > latest[0]:
                latest = (high, where)
    activity_end = tables.activity["at"].max() if len(tables.activity) else pd.NaT
    first_signup = tables.customers["signup_at"].min() if len(tables.customers) else pd.NaT
    if pd.notna(activity_end) and pd.notna(first_signup) and activity_end < first_signup:
        late = (tables.customers["signup_at"] == first_signup).to_numpy()
        problems.append(
            f"table 'activity', column 'at': the last event ({activity_end}) is before the first "
            f"signup ({first_signup}); example row of 'customers': {_example(tables.customers, late)}"
        )
    if earliest is not None and latest is not None:
        years = (latest[0] - earliest[0]).days / 365.25
        if years > MAX_SPAN_YEARS:
            problems.append(
                f"the data spans {years:.0f} years, from {earliest[0]} ({earliest[1]}) to "
                f"{latest[0]} ({latest[1]}): timestamps in different units or placeholders?"
            )
    return problems


def data_span(tables: Tables) -> tuple[str, str]:
    """The first and the last activity timestamps, as text for tags."""
    at = tables.activity["at"]
    if not len(at):
        return "", ""
    return str(at.min()), str(at.max())


# ------------------------------------------------------------------- the champion's fit


def champion_problems(champion: Any, tables: Tables, feature_config: Any) -> list[str]:
    """Why the champion cannot be measured on this data's holdout: it predicts another label
    (churn mode, horizon, lookback, qualifying events) or needs customer columns this data lacks
    (its segments). Empty when it can be scored. champion: a ChurnModel; feature_config: the
    candidate's resolved FeatureConfig."""
    problems = []
    if not champion.feature_config:
        return ["the champion was trained on a labeled table, not on event data"]
    theirs, ours = champion.features_config().churn, feature_config.churn
    for key in ("mode", "horizon_days", "lookback_days", "qualifying_events"):
        a, b = getattr(theirs, key), getattr(ours, key)
        if key == "lookback_days" and ours.mode == "contractual" and theirs.mode == ours.mode:
            continue  # only non-contractual eligibility uses the lookback
        if a != b:
            problems.append(f"the champion predicts churn with {key} {a!r}, this run {b!r}")
    needed = champion.features_config().customer_attributes or ()
    missing = [c for c in needed if c not in tables.customers.columns]
    if missing:
        problems.append(
            f"the champion needs customer columns {missing} that the customers table lacks "
            f"(it has {[c for c in tables.customers.columns if c != 'customer_id'][:8]})"
        )
    return problems


def lookback_moved_with_the_data(
    champion: Any,
    trained_until: str | None,
    tables: Tables,
    feature_config: FeatureConfig,
    configured: FeatureConfig,
) -> str | None:
    """Why a champion that differs from this run only in its non-contractual lookback is
    replaced uncompared, or None. The configuration leaves the lookback to the data
    (`configured`: the run's configuration before it is resolved), and each training resolves
    it from the customers' gaps and returns, which move as the export grows: it is the data's,
    not a new churn definition of the user's, and a champion kept for it would never be
    replaced (an Olist-shaped shop's retrain: 147 days then, 203 now, "not compared, not
    promoted"). It cannot be compared on this run's rows either: it counts other customers as
    customers. Replaced by a candidate trained on the same or later dates (`trained_until`:
    the candidate's), which must still pass the gate's other checks; otherwise kept."""
    if configured.churn.lookback_days is not None or not getattr(champion, "feature_config", None):
        return None
    theirs, ours = champion.features_config().churn, feature_config.churn
    if theirs.mode != "non_contractual" or theirs.lookback_days == ours.lookback_days:
        return None
    same_lookback = replace(feature_config, churn=replace(ours, lookback_days=theirs.lookback_days))
    if champion_problems(champion, tables, same_lookback):
        return None  # it differs in more than the lookback
    if champion.trained_until and trained_until and trained_until < champion.trained_until:
        return None
    return (
        f"the champion predicts churn with a {theirs.lookback_days}-day lookback, this run with "
        f"{ours.lookback_days} days, both resolved from the data (the customers' gaps and "
        "returns, which move as the export grows): not compared; the candidate, trained on "
        f"data up to {trained_until}, replaces it"
    )


_INSTANT = pd.Timedelta(1, "ns")  # strictly after the last training date


@dataclass(frozen=True)
class ChampionHoldout:
    """Where a champion can be compared with the candidate (champion_holdout): rows (None when
    it cannot be compared fairly), the candidate's metrics on them when they are not the whole
    holdout, and otherwise why not, with whether the candidate replaces it all the same."""

    rows: pd.DataFrame | None
    candidate: dict[str, float] | None = None
    not_comparable: str | None = None
    replaces: bool = False


def champion_holdout(
    holdout: pd.DataFrame,
    trained_until: str | None,
    rules: GateRules,
    candidate_trained_until: str | None,
    label: str = "the champion",
    horizon_days: int = 0,
    data_changed: bool = False,
) -> ChampionHoldout:
    """The holdout rows (as_of, churned, churn_probability: the candidate's) a champion can be
    compared on fairly: those whose label window [as_of, as_of + horizon) starts after the
    last label it learned from, at least a horizon after its last training date; all of them
    when it was trained before the holdout or its dates are unknown. A date inside its last
    label window asks it of churns it was trained on: a retrain a month after the first run
    was refused against a champion whose training labels held 28 of the 107 churners it was
    compared on, though the two tied on the weeks after. When too few remain to measure
    (holdout_problems), it is not compared: the candidate replaces it when trained on later
    data (candidate_trained_until > trained_until), or on the same dates of other data
    (data_changed: the tables' fingerprint differs, a corrected mapping or export: a shop's
    judge fixed its refunds and the retrain was kept out as "the same dates"), else it is kept."""
    if trained_until is None or "as_of" not in holdout:
        return ChampionHoldout(holdout)
    until = pd.Timestamp(trained_until)
    labels_until = until + pd.Timedelta(days=horizon_days)
    unseen = holdout[pd.to_datetime(holdout["as_of"]) >= max(labels_until, until + _INSTANT)]
    if len(unseen) == len(holdout):
        return ChampionHoldout(holdout)
    problems = ["no holdout rows are left"]
    if len(unseen):
        y, p = unseen["churned"].to_numpy(), unseen["churn_probability"].to_numpy()
        metrics = binary_metrics(y, p)
        problems = holdout_problems(metrics, rules)
    if not problems:
        return ChampionHoldout(unseen, metrics)
    learned = f" and labels up to {labels_until.date()}" if labels_until > until else ""
    why = (
        f"{label} was trained on the holdout's dates (up to {until.date()}{learned}) and after "
        f"them {'; '.join(problems)}: it cannot be compared fairly"
    )
    mine = None if candidate_trained_until is None else pd.Timestamp(candidate_trained_until)
    newer = mine is not None and mine > until
    if newer:
        why += f"; the candidate, trained on later data (up to {mine.date()}), replaces it"
    elif mine is not None and mine == until and data_changed:
        newer = True
        why += (
            "; the candidate was trained on the same dates of other data (the tables' "
            "fingerprint differs: a corrected mapping or export), and replaces it"
        )
    elif mine is not None and mine == until:
        why += (
            "; the candidate was trained on the same dates, so nothing tells them apart "
            "(churn promote replaces it by hand)"
        )
    else:
        why += f"; the candidate was trained on older data (up to {candidate_trained_until})"
    return ChampionHoldout(None, None, why, newer)


def measure_champion(
    champion: tuple[str, Any] | None,
    name: str,
    tables: Tables,
    feature_config: Any,
    holdout: pd.DataFrame | None,
    score: Callable[[Any, Tables, pd.DataFrame], np.ndarray],
    log: Callable[[str], None] = print,
    reps: int = 200,
    seed: int = 0,
) -> ChampionMeasure:
    """The champion's metrics on the candidate's holdout rows (score(model, tables, holdout)
    gives its probabilities) with the 95 % interval of the candidate's ROC AUC minus the
    champion's (paired bootstrap over customers, `reps` resamples; the candidate's
    probabilities are the holdout's churn_probability), or why it cannot be measured here. A
    champion that does not fit this data is reported (logged, and returned as the problem),
    never a crash of the run. holdout None: the champion is not compared (champion_holdout),
    only checked against the data: nothing measured when it fits."""
    if champion is None:
        return ChampionMeasure()
    version, model = champion
    problems = champion_problems(model, tables, feature_config)
    if not problems and holdout is None:
        return ChampionMeasure()
    if not problems:
        try:
            probability = score(model, tables, holdout)
        except ValueError as err:  # FeatureInputError, ContractError: it does not fit this data
            problems = [str(err)]
        else:
            y = holdout["churned"].to_numpy()
            interval = None
            if "churn_probability" in holdout:
                interval = paired_auc_interval(
                    holdout, holdout["churn_probability"].to_numpy(), probability, reps, seed
                )
            return ChampionMeasure(
                binary_metrics(y, probability), None, interval, np.asarray(probability, float)
            )
    problem = f"the champion of '{name}' (v{version}) cannot be scored on this data: " + "; ".join(
        problems
    )
    log(f"warning: {problem}")
    return ChampionMeasure(None, problem)


@dataclass(frozen=True)
class ChampionMeasure:
    """measure_champion's answer: the champion's metrics on the rows, why it could not be
    measured, and the 95 % interval of the candidate's ROC AUC minus the champion's."""

    metrics: dict[str, float] | None = None
    problem: str | None = None
    interval: tuple[float, float] | None = None
    # The champion's probabilities for the rows, in their order (a simple model that beat
    # LightGBM is compared with the champion on them too).
    probability: np.ndarray | None = field(default=None, compare=False, repr=False)


def paired_auc_interval(
    rows: pd.DataFrame, candidate: np.ndarray, champion: np.ndarray, reps: int = 200, seed: int = 0
) -> tuple[float, float] | None:
    """The 95 % interval of the candidate's ROC AUC minus the champion's on the same rows
    (`rows`: churned, and customer_id when present, whose customers are resampled whole)."""
    clusters = rows["customer_id"].to_numpy() if "customer_id" in rows else np.arange(len(rows))
    scores = {"candidate": np.asarray(candidate, float), "champion": np.asarray(champion, float)}
    _, differences = bootstrap_intervals(rows["churned"].to_numpy(), scores, clusters, reps, seed)
    return differences.get("champion")


class LabelLikeAttributeError(ValueError):
    """A declared customer attribute looks like the label; training stops before any work."""


def refuse_label_like_attributes(
    tables: Tables, feature_config: FeatureConfig, allowed: tuple[str, ...] = ()
) -> None:
    """Stop training when a customer attribute declared as a model feature looks like the label
    (features.check.label_like_attributes: its name, a near-perfect separation of churned and
    active customers, a date after signup), unless the analyst allowed it by name.

    Why: a CRM `status` exported on the last day is the label itself; a model trained on it
    looks excellent (AUC 0.995) and predicts nothing."""
    from features.check import label_like_attributes

    declared = set(feature_config.customer_attributes or ())
    if not declared - set(allowed):
        return
    flagged = [
        f
        for f in label_like_attributes(tables, feature_config)
        if f.name in declared and f.name not in allowed
    ]
    if flagged:
        names = ", ".join(f"'{f.name}' ({f.reason})" for f in flagged)
        listed = ", ".join(f'"{f.name}"' for f in flagged)
        customers = tables.customers
        cycled = {c for c, _ in feature_config.date_cycles}
        dates = [
            f.name
            for f in flagged
            if f.name in customers
            and pd.api.types.is_datetime64_any_dtype(customers[f.name])
            and f.name not in cycled
        ]
        renewal = (
            f"; a date that moves on by whole terms (a CRM's next renewal date) reads as the "
            f'renewal due at each date with [features] date_cycles = {{ {dates[0]} = "year" }}'
            if dates
            else ""
        )
        raise LabelLikeAttributeError(
            f"declared customer attributes look like the label: {names}. Remove them from "
            "[features] customer_attributes (they stay segments), or, if each value was known "
            f"before every observation date, allow them: [training] allow_label_like = [{listed}] "
            f"or churn train --allow-label-like NAME{renewal}"
        )
