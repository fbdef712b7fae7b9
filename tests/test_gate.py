"""The promotion gate: baselines, holdouts that cannot measure, broken data, a champion that does
not fit the data, the order of tags and alias, and model names per dataset. Units only (small
dicts and tables built here); the registry end to end is in test_registry_per_dataset.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from tests.factories import make_tables, ts
from training.config import TrainConfig
from training.evaluation import binary_metrics
from training.gate import (
    ChampionMeasure,
    GateRules,
    champion_holdout,
    champion_problems,
    data_problems,
    judge,
    lookback_moved_with_the_data,
    measure_champion,
)
from training.tracking import (
    CHAMPION,
    model_name_for_data,
    model_name_for_table,
    record_promotion,
    require_model_name,
)

RULES = GateRules(metric="roc_auc", min_gain=0.0, min_rows=200, min_churners=20)


def measured(roc_auc: float, rows: int = 1000, churners: int = 50, **more: float) -> dict:
    """A holdout's metrics as binary_metrics gives them (the parts the gate reads)."""
    return {"roc_auc": roc_auc, "rows": float(rows), "positive_rate": churners / rows, **more}


BASELINES = {"logistic_regression": {"roc_auc": 0.66}, "recency_rule": {"roc_auc": 0.62}}


# ------------------------------------------------------------------------- the decision


def test_a_first_model_that_beats_the_baselines_becomes_champion():
    decision = judge(measured(0.71), RULES, BASELINES)
    assert decision.promoted and decision.stage == "passed"
    assert decision.reason.startswith("no champion yet; beats the baselines on roc_auc 0.7100")
    assert "logistic_regression 0.6600" in decision.reason and decision.lost_to is None
    assert decision.metrics() == {
        "gate_gain_vs_logistic_regression": pytest.approx(0.05),
        "gate_gain_vs_recency_rule": pytest.approx(0.09),
    }


def test_a_lead_within_the_holdouts_noise_is_not_called_beating():
    """A grocery's run read "beats the baselines on roc_auc 0.8832 (logistic_regression
    0.8829)": a lead of 0.0003 whose interval spans 0 is said as what it is."""
    baselines = {"logistic_regression": {"roc_auc": 0.8829}, "recency_rule": {"roc_auc": 0.80}}
    differences = {"logistic_regression": (-0.0061, 0.0068), "recency_rule": (0.05, 0.11)}
    decision = judge(measured(0.8832), RULES, baselines, differences=differences)
    assert decision.promoted and "beats" not in decision.reason
    assert decision.reason.startswith(
        "no champion yet; at or above the baselines on roc_auc 0.8832 (logistic_regression "
        "0.8829, recency_rule 0.8000), ahead of logistic_regression by 0.0003 within the "
        "holdout's noise (95 % interval of the gain -0.0061 to +0.0068)"
    )
    sure = {"logistic_regression": (0.01, 0.03), "recency_rule": (0.05, 0.11)}
    assert (
        "beats the baselines" in judge(measured(0.8832), RULES, baselines, differences=sure).reason
    )


def test_a_model_that_ranks_no_better_than_chance_is_never_promoted():
    weak = {"logistic_regression": {"roc_auc": 0.40}, "recency_rule": {"roc_auc": 0.45}}
    coin = judge(measured(0.48), RULES, weak)
    assert not coin.promoted and coin.stage == "chance"
    assert "no better than chance" in coin.reason and "ROC AUC 0.4800" in coin.reason
    # Few churners: more data helps; hundreds of them (a store's 364 of 656): the data does not
    # tell who leaves, and more of it would not say more
    small = judge({**measured(0.48), "rows": 300, "positive_rate": 0.1}, RULES, weak)
    assert "More history, more customers or a longer horizon" in small.reason
    store = judge({**measured(0.48), "rows": 656, "positive_rate": 364 / 656}, RULES, weak)
    assert "With 364 churners among 656 holdout rows there were enough" in store.reason
    assert "Check the mapping" in store.reason and "More history" not in store.reason
    # Above 0.5, but the holdout cannot tell it from a coin: its interval reaches below 0.5.
    # It does not replace a champion; as the first one it serves, and the reason says so.
    unsure = judge(measured(0.55), RULES, weak, champion=measured(0.52), auc_interval=(0.47, 0.63))
    assert not unsure.promoted and unsure.stage == "chance"
    assert "95 % interval 0.4700 to 0.6300" in unsure.reason
    first = judge(measured(0.55), RULES, weak, auc_interval=(0.47, 0.63))
    assert first.promoted and "cannot be told from chance" in first.reason
    sure = judge(measured(0.55), RULES, weak, champion=measured(0.52), auc_interval=(0.51, 0.6))
    assert sure.promoted and "chance" not in sure.reason
    # Neither a champion in place nor a small holdout's leniency lets a coin through.
    assert not judge(measured(0.49), RULES, weak, champion=measured(0.40)).promoted
    assert judge(measured(0.49, rows=150, churners=12), RULES, weak).stage == "chance"
    # A baseline that beats it is still named, so the simple model can be registered instead.
    lost = judge(measured(0.48), RULES, {"recency_rule": {"roc_auc": 0.70}})
    assert lost.stage == "baseline" and lost.lost_to.against == "recency_rule"


def test_a_candidate_below_a_baseline_is_not_promoted_and_names_the_winner_and_the_gap():
    baselines = {"logistic_regression": {"roc_auc": 0.70}, "recency_rule": {"roc_auc": 0.74}}
    decision = judge(measured(0.71), RULES, baselines, champion=None)
    assert not decision.promoted and decision.stage == "baseline"
    assert decision.lost_to.against == "recency_rule"
    assert decision.lost_to.gain == pytest.approx(-0.03)
    assert "loses to the baseline recency_rule: roc_auc 0.7400 against the candidate's 0.7100" in (
        decision.reason
    )
    assert "(by 0.0300" in decision.reason
    tags = decision.tags()
    assert tags["lost_to_baseline"] == "recency_rule" and tags["lost_to_baseline_by"] == "0.0300"
    assert tags["gate_gain_vs_logistic_regression"] == "+0.0100"
    # Even against a weaker champion, a model below a baseline is not promoted.
    assert not judge(measured(0.71), RULES, baselines, champion=measured(0.60)).promoted


def test_a_tie_with_a_baseline_is_not_earning_a_place():
    decision = judge(measured(0.66), RULES, BASELINES)
    assert not decision.promoted and decision.lost_to.against == "logistic_regression"


def test_a_baseline_ahead_within_the_holdouts_noise_is_a_tie_and_the_model_is_kept():
    baselines = {"logistic_regression": {"roc_auc": 0.7102}, "recency_rule": {"roc_auc": 0.62}}
    tie = {"logistic_regression": (-0.012, 0.011)}
    within = judge(measured(0.71), RULES, baselines, differences=tie)
    assert within.promoted and within.stage == "passed" and within.lost_to is None
    assert (
        "logistic_regression 0.7102 ahead within the holdout's noise (95 % interval of the gain "
        "-0.0120 to +0.0110): the model is kept" in within.reason
    )
    assert within.tags()["gate_tie_with_logistic_regression"] == "-0.0120 to +0.0110"
    assert "lost_to_baseline" not in within.tags()
    # A tie passes the baseline check only: the champion must still be beaten.
    assert not judge(
        measured(0.71), RULES, baselines, champion=measured(0.72), differences=tie
    ).promoted
    # promotion_ties = "baseline": the tie goes to the baseline, which is then registered.
    to_baseline = GateRules(metric="roc_auc", ties="baseline")
    refused = judge(measured(0.71), to_baseline, baselines, differences=tie)
    assert not refused.promoted and refused.stage == "baseline"
    assert refused.lost_to.against == "logistic_regression" and not refused.tied_with
    assert "a tie within the holdout's noise (ties go to the baseline" in refused.reason


def test_a_baseline_better_beyond_the_holdouts_noise_always_stops_the_model():
    baselines = {"logistic_regression": {"roc_auc": 0.7302}, "recency_rule": {"roc_auc": 0.62}}
    beyond = judge(
        measured(0.71), RULES, baselines, differences={"logistic_regression": (-0.03, -0.004)}
    )
    assert not beyond.promoted and beyond.lost_to.against == "logistic_regression"
    assert "the baseline is better beyond the holdout's noise" in beyond.reason
    # Without the bootstrap (or for another metric than ROC AUC) the point estimates decide.
    plain = judge(measured(0.71), RULES, baselines)
    assert not plain.promoted and "interval" not in plain.reason


def test_promotion_ties_must_name_who_wins():
    with pytest.raises(ValueError, match="promotion_ties must be one of"):
        GateRules(ties="coin")
    with pytest.raises(ValueError, match="promotion_ties must be 'model' or 'baseline'"):
        TrainConfig(promotion_ties="coin")
    assert GateRules.from_config(TrainConfig(promotion_ties="baseline")).ties == "baseline"


def test_a_holdout_without_churners_is_never_promoted():
    y = np.zeros(500)
    metrics = binary_metrics(y, np.linspace(0.01, 0.2, 500))
    assert np.isnan(metrics["roc_auc"])
    decision = judge(metrics, RULES, BASELINES, champion=None)
    assert not decision.promoted and decision.stage == "holdout"
    assert "0 churners among 500 holdout rows" in decision.reason
    assert "roc_auc is not a number" in decision.reason


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (measured(0.8, rows=150, churners=40), "150 holdout rows, fewer than 200"),
        (measured(0.8, rows=1000, churners=12), "12 churners among 1000 holdout rows"),
        (measured(0.8, rows=300, churners=290), "10 non-churners among 300 holdout rows"),
        (measured(float("nan")), "the candidate's roc_auc is not a number"),
        ({"roc_auc": 0.8}, "size and churn rate are unknown"),
    ],
)
def test_a_holdout_that_cannot_measure_refuses_whatever_the_scores(metrics, expected):
    decision = judge(metrics, RULES, BASELINES, champion=measured(0.5))
    assert not decision.promoted and decision.stage == "holdout"
    assert expected in decision.reason


def test_a_small_holdout_that_measures_may_make_the_first_champion_but_not_replace_one():
    """A small business should get scores at all: with no champion yet, a holdout with both
    classes and a finite metric is enough (the reason says the figures are uncertain); an
    existing champion is replaced only on a full holdout."""
    small = measured(0.8, rows=150, churners=12)
    first = judge(small, RULES, BASELINES, champion=None)
    assert first.promoted and first.stage == "passed"
    assert "a small holdout: 150 holdout rows, fewer than 200" in first.reason
    assert "the figures are uncertain" in first.reason
    assert not judge(small, RULES, BASELINES, champion=measured(0.5)).promoted
    assert not judge(measured(0.6, rows=150, churners=12), RULES, BASELINES).promoted  # baseline


def test_broken_data_refuses_before_anything_else():
    decision = judge(measured(0.9), RULES, BASELINES, data_problems=["all at 1970"])
    assert not decision.promoted and decision.stage == "data"
    assert decision.reason == "the data looks broken: all at 1970"


def test_the_champion_must_be_beaten_by_more_than_the_minimum_gain():
    rules = GateRules(metric="roc_auc", min_gain=0.01)
    ok = judge(measured(0.72), rules, BASELINES, champion=measured(0.70), champion_label="v3")
    assert ok.promoted and "beats v3 0.7000 (gain +0.0200" in ok.reason
    assert ok.tags()["gate_gain_vs_champion"] == "+0.0200"
    no = judge(measured(0.705), rules, BASELINES, champion=measured(0.70))
    assert not no.promoted and "does not beat" in no.reason and no.stage == "champion"


def test_a_champion_ahead_within_the_holdouts_noise_is_replaced_by_a_candidate_on_later_data():
    """OULAD judge: a retrain 7 months later lost by 0.0023 ROC AUC on one holdout date and the
    weekly job kept scoring with the old model while monitoring said "retrain". Within the
    noise, the fresher model wins; beyond it, or on no later data, the champion stays."""
    candidate, champion = measured(0.6968), measured(0.6991)
    tie = judge(
        candidate, RULES, BASELINES, champion=champion, champion_label="champion v1",
        champion_interval=(-0.012, 0.008), newer_by_days=218,
    )  # fmt: skip
    assert tie.promoted and tie.stage == "passed"
    assert tie.reason.startswith(
        "candidate roc_auc 0.6968 ties with champion v1 0.6991 (gain -0.0023, 95 % interval "
        "-0.0120 to +0.0080: within the holdout's noise; must exceed +0.0000); trained on 218 "
        "more days of data, the candidate replaces it"
    )
    assert tie.champion.interval == (-0.012, 0.008)
    worse = judge(
        candidate, RULES, BASELINES, champion=champion, champion_interval=(-0.004, -0.001),
        newer_by_days=218,
    )  # fmt: skip
    assert not worse.promoted and "does not beat" in worse.reason
    same_dates = judge(
        candidate, RULES, BASELINES, champion=champion, champion_interval=(-0.012, 0.008),
        newer_by_days=0,
    )  # fmt: skip
    assert not same_dates.promoted
    assert "trained on no later data than the champion" in same_dates.reason
    # A minimum gain asked for is a gain: no tie replaces the champion then.
    strict = GateRules(metric="roc_auc", min_gain=0.005)
    assert not judge(
        candidate, strict, BASELINES, champion=champion, champion_interval=(-0.012, 0.008),
        newer_by_days=218,
    ).promoted  # fmt: skip
    # Without an interval the point estimates decide, as before.
    assert not judge(candidate, RULES, BASELINES, champion=champion, newer_by_days=218).promoted


def test_lower_is_better_metrics_and_baselines_without_the_metric():
    rules = GateRules(metric="log_loss")
    candidate = measured(0.7, log_loss=0.10)
    baselines = {"logistic_regression": {"log_loss": 0.12}, "recency_rule": {"log_loss": np.nan}}
    decision = judge(candidate, rules, baselines, champion=measured(0.7, log_loss=0.11))
    assert decision.promoted
    assert [c.against for c in decision.baselines] == ["logistic_regression"]
    assert "recency_rule has no log_loss" in decision.notes
    with pytest.raises(ValueError, match="promotion metric must be one of"):
        GateRules(metric="accuracy")


def test_a_champion_that_cannot_be_scored_is_reported_and_not_replaced():
    decision = judge(measured(0.9), RULES, BASELINES, champion_problem="needs column 'channel'")
    assert not decision.promoted and decision.stage == "champion"
    assert decision.reason == "needs column 'channel'; not compared, not promoted"


def _holdout(dates: list[str], rows_per_date: int = 300, churners_per_date: int = 30):
    """A candidate's holdout rows over observation dates (as_of, churned, churn_probability)."""
    rng = np.random.default_rng(0)
    parts = []
    for date in dates:
        churned = np.r_[np.ones(churners_per_date), np.zeros(rows_per_date - churners_per_date)]
        parts.append(
            pd.DataFrame({"as_of": pd.Timestamp(date), "churned": churned,
                          "churn_probability": 0.3 * churned + rng.random(rows_per_date)})
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_the_champion_is_compared_only_on_holdout_dates_it_was_not_trained_on():
    holdout = _holdout(["2024-05-01", "2024-05-15", "2024-06-01"])
    # Trained before the holdout: every row.
    before = champion_holdout(holdout, "2024-04-01", RULES, "2024-06-01")
    assert before.rows is holdout and before.candidate is None and before.not_comparable is None
    # Trained into it: the rows after its last date, with the candidate's figures on them.
    into = champion_holdout(holdout, "2024-05-01", RULES, "2024-06-01")
    assert len(into.rows) == 600 and (into.rows["as_of"] > pd.Timestamp("2024-05-01")).all()
    assert into.candidate["rows"] == 600
    decision = judge(
        measured(0.70), RULES, BASELINES, champion=measured(0.74), champion_label="champion v3",
        candidate_vs_champion=measured(0.75, rows=600),
    )  # fmt: skip
    assert decision.promoted and decision.champion.gain == pytest.approx(0.01)
    assert "beats champion v3 0.7400 on the 600 holdout rows after its training dates" in (
        decision.reason
    )


def test_a_champion_is_not_compared_on_dates_within_its_last_label_window():
    """Trained up to 2024-05-01 with 30-day labels, it learned the churns up to 2024-05-31:
    the dates before that ask it of churns it was trained on."""
    holdout = _holdout(["2024-05-15", "2024-06-01", "2024-06-15"])
    into = champion_holdout(holdout, "2024-05-01", RULES, "2024-06-15", horizon_days=30)
    assert sorted(into.rows["as_of"].dt.strftime("%m-%d").unique()) == ["06-01", "06-15"]
    alone = champion_holdout(holdout, "2024-05-20", RULES, "2024-06-15", "champion v1", 30)
    assert alone.rows is None and alone.replaces
    assert alone.not_comparable.startswith(
        "champion v1 was trained on the holdout's dates (up to 2024-05-20 and labels up to "
        "2024-06-19) and after them"
    )


def test_a_champion_trained_on_the_whole_holdout_is_not_compared_and_later_data_replaces_it():
    holdout = _holdout(["2024-05-01", "2024-05-15", "2024-06-01"])
    later = champion_holdout(holdout, "2024-06-01", RULES, "2024-06-15", "champion v3")
    assert later.rows is None and later.replaces
    assert later.not_comparable.startswith(
        "champion v3 was trained on the holdout's dates (up to 2024-06-01) and after them "
        "no holdout rows are left: it cannot be compared fairly; the candidate, trained on "
        "later data (up to 2024-06-15), replaces it"
    )
    decision = judge(measured(0.71), RULES, BASELINES, champion_not_comparable=later.not_comparable)
    assert decision.promoted and decision.reason.startswith(later.not_comparable)
    assert "beats the baselines" in decision.reason
    # It still has to beat the baselines and chance, with the full holdout a replacement needs.
    lost = judge(measured(0.60), RULES, BASELINES, champion_not_comparable=later.not_comparable)
    assert not lost.promoted and lost.stage == "baseline"
    small = judge(
        measured(0.9, rows=100), RULES, BASELINES, champion_not_comparable=later.not_comparable
    )
    assert not small.promoted and small.stage == "holdout"
    # Too few rows after its training: one date of 300 rows, 10 churners.
    few = champion_holdout(_holdout(["2024-05-01", "2024-06-01"], 300, 10), "2024-05-01",
                           RULES, "2024-06-01")  # fmt: skip
    assert few.rows is None and few.replaces and "10 churners among 300" in few.not_comparable
    # The same dates again (a retrain on the same data) or older ones: the champion is kept.
    same = champion_holdout(holdout, "2024-06-01", RULES, "2024-06-01")
    assert not same.replaces and "trained on the same dates" in same.not_comparable
    # The same dates of other data (a corrected mapping: the tables' fingerprint differs):
    # the candidate replaces it, as a shop's judge expected after fixing its refunds.
    fixed = champion_holdout(holdout, "2024-06-01", RULES, "2024-06-01", data_changed=True)
    assert fixed.replaces and fixed.not_comparable.endswith(
        "trained on the same dates of other data (the tables' fingerprint differs: a corrected "
        "mapping or export), and replaces it"
    )
    older = champion_holdout(holdout, "2024-06-01", RULES, "2024-05-01")
    assert not older.replaces and older.not_comparable.endswith(
        "trained on older data (up to 2024-05-01)"
    )
    kept = judge(measured(0.9), RULES, BASELINES, champion_problem=same.not_comparable)
    assert not kept.promoted and kept.stage == "champion"


# --------------------------------------------------------------------------- broken data


def _customers(n: int = 30, start: str = "2024-01-01") -> list[dict]:
    return [{"customer_id": f"C{i:03d}", "signup_at": ts(start)} for i in range(n)]


def _activity(n: int = 30, at: str = "2024-03-01") -> list[dict]:
    return [{"customer_id": f"C{i:03d}", "at": ts(at), "event": "login"} for i in range(n)]


NOW = pd.Timestamp("2025-06-01")


def test_clean_data_has_no_problems():
    assert data_problems(make_tables(_customers(), _activity()), now=NOW) == []


def test_timestamps_piled_up_at_1970_are_refused_with_table_column_and_row():
    activity = _activity()
    for i, row in enumerate(activity):
        row["at"] = pd.Timestamp(1_700_000_000 + i, unit="ns")  # seconds read as nanoseconds
    problems = data_problems(make_tables(_customers(), activity), now=NOW)
    assert len(problems) >= 1
    first = problems[0]
    assert first.startswith("table 'activity', column 'at': 100% of the timestamps are before 1971")
    assert "example row" in first and "C000" in first
    # ... and the events then end decades before the first signup.
    assert any("the last event (1970-01-01" in p for p in problems)


def test_data_spanning_a_century_or_dated_after_today_is_refused():
    old = make_tables(_customers(start="1920-01-01"), _activity(at="2024-01-01"))
    assert any("the data spans 104 years" in p for p in data_problems(old, now=NOW))
    future = make_tables(_customers(), _activity(at="2025-09-01"))  # after the gate's NOW
    problems = data_problems(future, now=NOW)
    assert len(problems) == 1 and "30 timestamps after today (2025-06-01)" in problems[0]
    # a paid period's end and a scheduled cancellation lie ahead by nature: no problem
    ahead = make_tables(_customers(), _activity(at="2025-05-01"))
    ahead.customers["churned_at"] = pd.Timestamp("2025-08-01")
    assert data_problems(ahead, now=NOW) == []


# ------------------------------------------------------------------- the champion's fit


class _Model:
    """What champion_problems reads of a ChurnModel: its feature configuration."""

    def __init__(self, config: FeatureConfig | None):
        self.feature_config = config.to_dict() if config else {}

    def features_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.feature_config)


def test_a_champion_of_another_dataset_is_recognised_before_scoring():
    tables = make_tables(_customers(), _activity())
    ours = FeatureConfig(customer_attributes=())
    theirs = FeatureConfig(customer_attributes=("channel",)).with_churn(horizon_days=90)
    problems = champion_problems(_Model(theirs), tables, ours)
    assert "the champion predicts churn with horizon_days 90, this run 30" in problems
    assert any("needs customer columns ['channel']" in p for p in problems)
    assert champion_problems(_Model(ours), tables, ours) == []
    assert champion_problems(_Model(None), tables, ours) == [
        "the champion was trained on a labeled table, not on event data"
    ]


class _Trained(_Model):
    def __init__(self, config: FeatureConfig, trained_until: str):
        super().__init__(config)
        self.trained_until = trained_until


def test_a_lookback_the_data_moved_is_no_new_churn_definition():
    """A non-contractual lookback left to the data is resolved at each training and moves as
    the export grows: a champion that differs only in it is replaced uncompared by a candidate
    trained on the same or later dates. A lookback the user set, another horizon, or an older
    candidate: not so."""
    tables = make_tables(_customers(), _activity())
    shop = FeatureConfig().with_churn(mode="non_contractual", horizon_days=30)
    ours = shop.with_churn(lookback_days=203)
    champion = _Trained(shop.with_churn(lookback_days=147), "2018-01-03")
    moved = lookback_moved_with_the_data(champion, "2018-01-31", tables, ours, shop)
    assert moved is not None and moved.startswith(
        "the champion predicts churn with a 147-day lookback, this run with 203 days, both "
        "resolved from the data"
    )
    assert moved.endswith("the candidate, trained on data up to 2018-01-31, replaces it")
    assert lookback_moved_with_the_data(champion, "2018-01-03", tables, ours, shop) is not None
    assert lookback_moved_with_the_data(champion, "2017-12-01", tables, ours, shop) is None
    configured = shop.with_churn(lookback_days=203)  # the user's definition changed
    assert lookback_moved_with_the_data(champion, "2018-01-31", tables, ours, configured) is None
    other = _Trained(shop.with_churn(lookback_days=147, horizon_days=90), "2018-01-03")
    assert lookback_moved_with_the_data(other, "2018-01-31", tables, ours, shop) is None
    same = _Trained(ours, "2018-01-03")
    assert lookback_moved_with_the_data(same, "2018-01-31", tables, ours, shop) is None


def test_a_retrain_whose_data_moved_the_lookback_replaces_the_champion(tmp_path):
    """Through the training run: a shop's champion resolved a 30-day lookback; a month later
    the returns in the last label window call for 42, and the retrain is promoted (before: "not
    compared, not promoted", for ever). Setting 42 days in the configuration is a new churn
    definition: the champion is kept."""
    import shutil

    from training.pipeline import train_from_tables

    def buyer(customer: str, days, value: float = 1.0) -> list[dict]:
        return [{"customer_id": customer, "at": d, "event": "purchase", "value": value} for d in days]  # fmt: skip

    weekly = pd.date_range("2024-01-02", "2024-06-01", freq="7D", inclusive="left")
    pause = [*pd.date_range("2024-01-02", "2024-02-20", freq="7D"), pd.Timestamp("2024-04-10")]
    rows = [
        *(r for i in range(300) for r in buyer(f"w{i}", weekly)),
        *(r for i in range(200) for r in buyer(
            f"s{i}", pd.date_range("2024-01-02", f"2024-0{2 + i % 4}-1{i % 9}", freq="7D"))),
        *(r for i in range(100) for r in buyer(f"p{i}", pause, 5.0)),  # back after 6 weeks
    ]  # fmt: skip

    def until(end: str):
        kept = [r for r in rows if r["at"] < pd.Timestamp(end)]
        ids = sorted({r["customer_id"] for r in kept})
        return make_tables([{"customer_id": c, "signup_at": "2023-12-01"} for c in ids], kept)

    shop = FeatureConfig().with_churn(mode="non_contractual", horizon_days=30)
    config = TrainConfig(model_name="shop")
    quiet = lambda _: None  # noqa: E731
    first_db, second_db = tmp_path / "a.db", tmp_path / "b.db"
    first = train_from_tables(until("2024-04-05"), shop, config, quiet, f"sqlite:///{first_db}")
    assert first.promoted and first.model.features_config().churn.lookback_days == 30
    shutil.copy(first_db, second_db)
    later = until("2024-05-01")
    retrain = train_from_tables(later, shop, config, quiet, f"sqlite:///{first_db}")
    assert retrain.model.features_config().churn.lookback_days == 42
    # The champion is replaced: by the model, or by the baseline that beat it on this toy's
    # few dates (registered as the model, through the same gate)
    replaced = (
        (retrain.promoted, retrain.promotion_reason)
        if retrain.simple is None
        else (retrain.simple.promoted, retrain.simple.reason)
    )
    assert replaced[0], replaced[1]
    assert "both resolved from the data" in replaced[1]
    assert retrain.champion_metrics is None
    redefined = shop.with_churn(lookback_days=42)
    kept = train_from_tables(later, redefined, config, quiet, f"sqlite:///{second_db}")
    kept_reason = kept.simple.reason if kept.simple else kept.promotion_reason
    assert not kept.promoted and not (kept.simple and kept.simple.promoted)
    assert (
        "the champion of 'shop' (v1) cannot be scored on this data: the champion predicts churn "
        "with lookback_days 30, this run 42; not compared, not promoted"
    ) in kept_reason


def test_measure_champion_reports_a_scoring_failure_instead_of_crashing():
    tables = make_tables(_customers(), _activity())
    ours = FeatureConfig(customer_attributes=())
    holdout = pd.DataFrame({"churned": [0, 1, 0, 1]})
    messages: list[str] = []

    def fails(model, tables, holdout):
        raise ValueError("segment column 'channel' is not in the customers table")

    failed = measure_champion(
        ("4", _Model(ours)), "shop", tables, ours, holdout, fails, messages.append
    )
    metrics, problem = failed.metrics, failed.problem
    assert metrics is None and failed.interval is None
    assert problem == (
        "the champion of 'shop' (v4) cannot be scored on this data: "
        "segment column 'channel' is not in the customers table"
    )
    assert messages == [f"warning: {problem}"]
    scores = lambda model, tables, holdout: np.array([0.1, 0.9, 0.2, 0.8])  # noqa: E731
    done = measure_champion(("4", _Model(ours)), "shop", tables, ours, holdout, scores)
    assert done.problem is None and done.metrics["roc_auc"] == 1.0
    assert done.interval is None  # no candidate probabilities on these rows: nothing paired
    assert measure_champion(None, "shop", tables, ours, holdout, scores) == ChampionMeasure()


def test_measure_champion_gives_the_paired_interval_of_the_candidate_minus_the_champion():
    """The candidate's and the champion's ROC AUC on the same rows, resampled together by
    customer: two equally good scores tie (the interval spans 0), a far better one does not."""
    tables = make_tables(_customers(), _activity())
    ours = FeatureConfig(customer_attributes=())
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.1).astype(int)
    signal = y + rng.normal(0, 1.0, len(y))
    holdout = pd.DataFrame(
        {"customer_id": np.arange(len(y)) % 700, "churned": y, "churn_probability": signal}
    )
    same = lambda model, tables, holdout: signal + rng.normal(0, 0.05, len(y))  # noqa: E731
    lo, hi = measure_champion(("4", _Model(ours)), "shop", tables, ours, holdout, same).interval
    assert lo < 0 < hi and hi - lo < 0.05
    noise = lambda model, tables, holdout: rng.random(len(y))  # noqa: E731
    lo, hi = measure_champion(("4", _Model(ours)), "shop", tables, ours, holdout, noise).interval
    assert lo > 0.15


# ------------------------------------------------------------------ recording the decision


class _RecordingClient:
    """Records the registry calls in order (the parts of MlflowClient the gate uses)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def get_model_version(self, name, version):
        return object()

    def set_model_version_tag(self, name, version, key, value):
        self.calls.append(("tag", key))

    def set_registered_model_alias(self, name, alias, version):
        self.calls.append(("alias", alias))


def test_the_reason_and_the_gate_tags_are_recorded_before_the_alias_moves():
    client = _RecordingClient()
    tags = {"gate_decision": "promoted", "gate_gain_vs_recency_rule": "+0.0900"}
    record_promotion(client, "shop", "2", True, "no champion yet", "run", lambda _: None, tags)
    assert client.calls[-1] == ("alias", CHAMPION)
    recorded = [key for kind, key in client.calls[:-1] if kind == "tag"]
    assert {"promotion_reason", "promoted_by", "promoted_at", *tags} == set(recorded)
    client = _RecordingClient()
    record_promotion(client, "shop", "3", False, "loses", "run", lambda _: None, tags)
    assert ("alias", CHAMPION) not in client.calls and ("tag", "not_promoted_because") in (
        client.calls
    )


# ------------------------------------------------------------------------ model names


def test_the_model_name_comes_from_the_option_the_config_or_the_folder(tmp_path):
    shop = tmp_path / "Shop Exports 2024"
    shop.mkdir()
    assert model_name_for_data(shop) == "churn-shop-exports-2024"
    assert model_name_for_data(shop, given="eu-shop") == "eu-shop"
    (shop / "config.toml").write_text('[training]\nmodel_name = "churn-eu"\n')
    assert model_name_for_data(shop) == "churn-eu"
    other = tmp_path / "other.toml"
    other.write_text("[training]\nevery_days = 14\n")
    assert model_name_for_data(shop, config_path=other) == "churn-shop-exports-2024"
    generic = tmp_path / "retail" / "data"
    generic.mkdir(parents=True)
    assert model_name_for_data(generic) == "churn-retail-data"
    with pytest.raises(ValueError, match="model name 'a/b' must be"):
        model_name_for_data(shop, given="a/b")
    assert model_name_for_table("../x/Telco-Customer-Churn.csv") == (
        "churn-telco-customer-churn-labeled"
    )
    assert model_name_for_table("Churn_Modelling.csv") == "churn-modelling-labeled"
    assert model_name_for_table("churn-labeled.parquet") == "churn-table-labeled"
    assert model_name_for_table("churnrate.csv") == "churn-churnrate-labeled"
    with pytest.raises(ValueError, match="no registered model name"):
        require_model_name(None)


def test_the_service_never_picks_another_datasets_model_by_default(monkeypatch):
    from serving import model_store

    monkeypatch.delenv(model_store.MODEL_TAG_ENV, raising=False)
    monkeypatch.delenv(model_store.MODEL_NAME_ENV, raising=False)
    monkeypatch.setattr(model_store, "imported_names", lambda: {"churn-a", "churn-b"})
    with pytest.raises(ValueError, match=r"several datasets \['churn-a', 'churn-b'\]"):
        model_store.model_tag()
    monkeypatch.setattr(model_store, "imported_names", lambda: {"churn-a"})
    assert model_store.model_tag() == "churn-risk:latest"
    monkeypatch.setenv(model_store.MODEL_NAME_ENV, "churn-c")
    monkeypatch.setattr(model_store, "newest_import", lambda name: None)
    with pytest.raises(ValueError, match="no model 'churn-c'"):
        model_store.model_tag()
    monkeypatch.setenv(model_store.MODEL_TAG_ENV, "churn-risk:abc")
    assert model_store.model_tag() == "churn-risk:abc"


def test_scoring_without_a_champion_says_why_the_latest_version_was_not_promoted(tmp_path):
    from training.tracking import configure, load_champion

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = configure(uri)
    with pytest.raises(ValueError, match="has no champion") as err:
        load_champion("churn-shop", uri)
    assert "was not promoted" not in str(err.value)  # no version at all
    client.create_registered_model("churn-shop")
    version = client.create_model_version("churn-shop", source=str(tmp_path)).version
    why = "the model ranks churners no better than chance on the holdout (ROC AUC 0.4312)"
    client.set_model_version_tag("churn-shop", version, "not_promoted_because", why)
    with pytest.raises(ValueError) as err:
        load_champion("churn-shop", uri)
    assert f"Version {version} was not promoted: {why}" in str(err.value)


def test_a_simple_model_that_beat_lightgbm_ties_with_the_champion_as_lightgbm_would():
    """The logistic regression registered because it beat LightGBM meets the champion under
    the same rule: within the paired interval, trained on later data, it replaces it."""
    from training.gate import paired_auc_interval
    from training.simple_model import simple_model_gate

    baselines = {"logistic_regression": measured(0.700), "recency_rule": measured(0.60)}
    rng = np.random.default_rng(4)
    y = (rng.random(3000) < 0.1).astype(int)
    signal = y + rng.normal(0, 1.2, len(y))
    rows = pd.DataFrame({"customer_id": np.arange(len(y)), "churned": y,
                         "logistic_regression": signal})  # fmt: skip
    interval = paired_auc_interval(
        rows, rows["logistic_regression"].to_numpy(), signal + rng.normal(0, 0.1, len(y))
    )
    assert interval[0] < 0 < interval[1]
    tie = simple_model_gate(
        "logistic_regression", baselines, RULES, champion_metrics=measured(0.703),
        champion_interval=interval, newer_by_days=60,
    )  # fmt: skip
    assert tie.promoted and "ties with champion" in tie.reason
    kept = simple_model_gate(
        "logistic_regression", baselines, RULES, champion_metrics=measured(0.703),
        champion_interval=interval, newer_by_days=0,
    )  # fmt: skip
    assert not kept.promoted
