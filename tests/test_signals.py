"""Behavioural signals as of T, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from features.signals import build_features, feature_names, resolve_config
from tests.factories import make_tables

T = "2024-04-01"


@pytest.fixture
def tables():
    customers = [
        {"customer_id": "a", "signup_at": "2024-01-01", "plan": "pro"},
        {"customer_id": "b", "signup_at": "2024-03-01", "plan": "basic"},
        {
            "customer_id": "late",
            "signup_at": "2024-04-01",
            "plan": "basic",
        },  # signs up at T: not scored
        {
            "customer_id": "gone",
            "signup_at": "2024-01-01",
            "churned_at": "2024-03-15",
            "plan": "pro",
        },
    ]
    activity = [
        {"customer_id": "a", "at": "2024-03-31 10:00", "event": "login", "value": 1.0},
        {"customer_id": "a", "at": "2024-03-31 11:00", "event": "export", "value": 2.0},
        {"customer_id": "a", "at": "2024-03-20 09:00", "event": "login", "value": 1.0},
        {
            "customer_id": "a",
            "at": "2024-02-15 09:00",
            "event": "login",
            "value": 4.0,
        },  # 46 days before T
        {
            "customer_id": "a",
            "at": "2024-04-01 00:00",
            "event": "login",
            "value": 9.0,
        },  # at T: excluded
        {"customer_id": "b", "at": "2024-03-05 12:00", "event": "login", "value": 1.0},
    ]
    feedback = [
        {"customer_id": "a", "at": "2024-02-01", "kind": "nps", "score": 9.0},
        {"customer_id": "a", "at": "2024-03-25", "kind": "nps", "score": 3.0},
        {
            "customer_id": "a",
            "at": "2024-03-10",
            "kind": "ticket",
            "status": "closed",
            "resolved_at": "2024-03-11",
        },
        {
            "customer_id": "a",
            "at": "2024-03-20",
            "kind": "ticket",
            "status": "closed",
            "resolved_at": "2024-04-05",
        },
        {"customer_id": "a", "at": "2024-03-30", "kind": "ticket", "status": "open"},
        {
            "customer_id": "a",
            "at": "2024-03-12",
            "kind": "csat",
            "score": 2.0,
            "text": "Support never answered",
        },
        {
            "customer_id": "b",
            "at": "2024-03-10",
            "kind": "review",
            "score": 5.0,
            "text": "great tool",
        },
    ]
    revenue = [
        {"customer_id": "a", "at": "2024-01-01", "amount": 100.0, "kind": "invoice"},
        {"customer_id": "a", "at": "2024-02-01", "amount": 100.0, "kind": "invoice"},
        {"customer_id": "a", "at": "2024-03-01", "amount": 60.0, "kind": "invoice"},
        {"customer_id": "a", "at": "2024-03-10", "amount": -20.0, "kind": "refund"},
        {"customer_id": "a", "at": "2024-03-15", "amount": 60.0, "kind": "failed_payment"},
        {"customer_id": "b", "at": "2024-03-01", "amount": 50.0, "kind": "invoice"},
    ]
    return make_tables(customers, activity, feedback, revenue)


def stored_before(config: FeatureConfig, *settings: str):
    """A model whose stored configuration predates `settings` (they are absent from it)."""
    from training.model import ChurnModel

    legacy = ChurnModel.__new__(ChurnModel)
    legacy.feature_config = {k: v for k, v in config.to_dict().items() if k not in settings}
    return legacy


def row(frame: pd.DataFrame, customer: str) -> pd.Series:
    return frame.set_index("customer_id").loc[customer]


def test_only_customers_signed_up_before_and_not_churned_by_t_are_scored(tables):
    frame = build_features(tables, T)
    assert sorted(frame["customer_id"]) == ["a", "b"]


def test_activity_recency_frequency_breadth_and_trend(tables):
    a = row(build_features(tables, T), "a")
    assert a["tenure_days"] == 91
    assert a["days_since_last_event"] == pytest.approx(13 / 24)  # 2024-03-31 11:00
    assert a["events_7d"] == 2 and a["events_30d"] == 3 and a["events_90d"] == 4
    assert a["active_days_30d"] == 2 and a["active_days_90d"] == 3
    assert a["event_types_7d"] == 2 and a["event_types_90d"] == 2
    assert a["value_30d"] == 4.0
    assert a["login_events_30d"] == 2 and a["export_events_30d"] == 1
    # last 30 days: 3 events, the 30 before: 1 -> (3 - 1) / (3 + 1)
    assert a["events_trend_30d"] == pytest.approx(0.5)


def test_revenue_level_change_refunds_and_failed_payments(tables):
    a = row(build_features(tables, T), "a")
    assert a["revenue_30d"] == pytest.approx(40.0)  # March: its invoice, less the refund
    assert a["revenue_90d"] == pytest.approx(240.0)  # January to March
    # Counted in days (models trained before revenue_windows), 2024-03-01 is 31 days before T.
    days = row(build_features(tables, T, FeatureConfig(revenue_windows="day")), "a")
    assert days["revenue_30d"] == pytest.approx(-20.0)  # the refund alone
    assert days["revenue_90d"] == pytest.approx(140.0)  # invoices of Feb and Mar, less the refund
    assert a["revenue_total"] == pytest.approx(240.0)
    assert a["refunds_90d"] == 1 and a["refund_amount_90d"] == 20.0
    assert a["failed_payments_90d"] == 1
    # how recent the failure is: 2024-03-15 is 17 days before T; b never had one
    assert a["days_since_failed_payment"] == pytest.approx(17.0)
    assert np.isnan(row(build_features(tables, T), "b")["days_since_failed_payment"])
    assert a["downgrades_90d"] == 1 and a["upgrades_90d"] == 0
    assert a["last_payment_amount"] == 60.0
    assert a["last_payment_change"] == pytest.approx(-0.4)


def test_feedback_nps_tickets_and_text(tables):
    a = row(build_features(tables, T), "a")
    assert a["nps_last"] == 3 and a["nps_mean"] == 6 and a["nps_responses"] == 2
    assert a["nps_detractor"] == 1 and a["nps_promoter"] == 0
    assert a["days_since_nps"] == 7
    assert a["tickets_30d"] == 3
    # The ticket resolved on 2024-04-05 was still open at T, whatever its status says today.
    assert a["tickets_open"] == 2
    assert a["tickets_open_over_7d"] == 1
    assert a["ticket_resolution_hours_90d"] == 24
    assert a["csat_last"] == 2 and a["negative_comments_90d"] == 1
    b = row(build_features(tables, T), "b")
    assert b["negative_comments_90d"] == 0 and b["comments_90d"] == 1 and b["review_mean"] == 5


def test_last_review_is_the_latest_score_before_t():
    tables = make_tables(
        [{"customer_id": "a", "signup_at": "2024-01-01"}],
        [{"customer_id": "a", "at": "2024-03-01", "event": "purchase", "value": 1.0}],
        [
            {"customer_id": "a", "at": "2024-02-01", "kind": "review", "score": 5.0},
            {"customer_id": "a", "at": "2024-03-05", "kind": "review", "score": 1.0},
            {"customer_id": "a", "at": "2024-04-01", "kind": "review", "score": 4.0},  # at T
            {"customer_id": "a", "at": "2024-03-20", "kind": "csat", "score": 3.0},
        ],
        [],
    )
    a = row(build_features(tables, T), "a")
    assert a["review_last"] == 1 and a["review_mean"] == 3 and a["reviews"] == 2
    config = resolve_config(tables, FeatureConfig(), until=T)  # as a training set resolves it
    assert math.isnan(row(build_features(tables, "2024-02-01", config), "a")["review_last"])
    # resolved on its own date, the data has no review yet: no review columns at all
    assert "review_last" not in build_features(tables, "2024-02-01")


def test_no_history_gives_zero_counts_and_missing_recency(tables):
    b = row(build_features(tables, T), "b")
    assert b["tickets_open"] == 0 and b["events_7d"] == 0
    assert math.isnan(b["nps_last"]) and math.isnan(b["days_since_ticket"])


def test_declared_attributes_pass_through_and_feature_names_are_stable(tables):
    config = resolve_config(tables, FeatureConfig(customer_attributes=("plan",)), until=T)
    frame = build_features(tables, T, config)
    assert list(frame.columns) == ["customer_id", *feature_names(config)]
    assert frame.columns[-1] == "plan" and frame["plan"].tolist() == ["pro", "basic"]
    undeclared = build_features(tables, T)
    assert list(undeclared.columns) == [
        "customer_id",
        *feature_names(resolve_config(tables, FeatureConfig(), until=T)),
    ]
    assert "plan" not in undeclared.columns


def test_features_do_not_depend_on_row_order(tables):
    shuffled = make_tables(
        tables.customers.sample(frac=1, random_state=1).to_dict("records"),
        tables.activity.sample(frac=1, random_state=2).to_dict("records"),
        tables.feedback.sample(frac=1, random_state=3).to_dict("records"),
        tables.revenue.sample(frac=1, random_state=4).to_dict("records"),
    )
    left = build_features(tables, T).sort_values("customer_id", ignore_index=True)
    right = build_features(shuffled, T).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(left, right)


def test_observation_date_with_time_of_day_is_rejected(tables):
    with pytest.raises(ValueError, match="has a time of day"):
        build_features(tables, "2024-04-01 12:00")
    with pytest.raises(ValueError, match="not a date"):
        build_features(tables, "someday")


def test_non_contractual_scores_only_recently_active_customers(tables):
    config = FeatureConfig().with_churn(mode="non_contractual", lookback_days=20)
    frame = build_features(tables, T, config)
    assert frame["customer_id"].tolist() == ["a"]


def test_an_empty_customer_base_gives_an_empty_frame_with_all_columns():
    tables = make_tables([{"customer_id": "x", "signup_at": "2025-01-01"}])
    frame = build_features(tables, T)
    assert frame.empty and "events_30d" in frame.columns
    assert np.all(frame.columns[:2] == ["customer_id", "tenure_days"])


def test_complaints_are_found_in_the_languages_of_real_reviews():
    """A Brazilian marketplace's reviews are in Portuguese (often without accents): none was
    counted as a complaint before. Praise in the same languages is not one."""
    from features.prepared import comment_flags

    complaints = [
        "Ainda não recebi o produto.", "nao recebi ate agora", "Produto veio com defeito",
        "Entrega atrasou muito, péssimo atendimento.", "Não recomendo, demorou demais.",
        "El pedido no llegó", "Producto defectuoso, no recomiendo", "Très déçu, jamais reçu",
        "Paket nicht erhalten, Gerät kaputt", "Item arrived damaged", "It never arrived",
        "Unverschämt!", "Die Gebühr ist nicht nachvollziehbar",
    ]  # fmt: skip
    praise = [
        "Produto chegou antes do prazo, muito bom.", "Recomendo a loja, entrega rápida.",
        "Ótimo produto, bem embalado.", "Tudo certo, chegou direitinho.", "Excelente qualidade!",
        "Muy buen producto, llegó rápido", "Excellent, je recommande", "Great template",
        "Alles bestens, schnell geliefert",
    ]  # fmt: skip
    has_text, negative = comment_flags(pd.Series([*complaints, *praise, None, "  "]))
    assert negative.tolist() == [True] * len(complaints) + [False] * (len(praise) + 2)
    assert has_text.tolist() == [True] * (len(complaints) + len(praise)) + [False, False]


def test_feedback_signals_only_for_the_kinds_the_data_has():
    """No column of missing values: a folder without feedback has no NPS, CSAT, review or ticket
    features; one with tickets only has the ticket signals and comments. A model stored before
    feedback_kinds existed reads as having every kind, so it gets the columns it was trained on."""
    from features.contract import FEEDBACK_KINDS

    customers = [{"customer_id": "a", "signup_at": "2024-01-01"}]
    activity = [{"customer_id": "a", "at": "2024-03-01", "event": "login", "value": 1.0}]
    none = make_tables(customers, activity, [], [])
    frame = build_features(none, T)
    feedback = ("nps", "csat", "review", "ticket", "comments", "negative_comments",
                "days_since_nps", "days_since_ticket")  # fmt: skip
    assert not [c for c in frame.columns if c.startswith(feedback)]
    assert resolve_config(none, FeatureConfig(), until=T).feedback_kinds == ()
    tickets = make_tables(customers, activity, [{"customer_id": "a", "at": "2024-03-02", "kind": "ticket"}], [])  # fmt: skip
    config = resolve_config(tickets, FeatureConfig(), until=T)
    assert config.feedback_kinds == ("ticket",)
    names = feature_names(config)
    assert "tickets_open" in names and "comments_90d" in names and "nps_last" not in names
    legacy = stored_before(config, "feedback_kinds")
    assert legacy.features_config().feedback_kinds == FEEDBACK_KINDS
    assert "nps_last" in feature_names(legacy.features_config())
    with pytest.raises(ValueError, match="feedback_kinds lists kinds of feedback"):
        FeatureConfig(feedback_kinds=("survey",))


def test_revenue_signals_only_for_the_kinds_the_data_has():
    """A bank's snapshots without revenue had 5 revenue columns of missing values and 20 of
    zeros; a shop without refunds a refunds column of zeros. Each kind of revenue row has its
    signals where the data has such rows; a model stored before revenue_kinds gets them all."""
    from features.config import REVENUE_SIGNAL_KINDS

    customers = [{"customer_id": "a", "signup_at": "2024-01-01"}]
    activity = [{"customer_id": "a", "at": "2024-03-01", "event": "login", "value": 1.0}]
    none = make_tables(customers, activity, [], [])
    assert resolve_config(none, FeatureConfig(), until=T).revenue_kinds == ()
    frame = build_features(none, T)
    revenue = ("revenue", "payments", "refund", "failed_payments", "last_payment",
               "mean_payment", "days_since_last_payment")  # fmt: skip
    assert not [c for c in frame.columns if c.startswith(revenue)]
    paid = make_tables(
        customers, activity, [], [{"customer_id": "a", "at": "2024-02-01", "amount": 10.0}]
    )
    config = resolve_config(paid, FeatureConfig(), until=T)
    assert config.revenue_kinds == ("payment",)
    names = feature_names(config)
    assert "revenue_30d" in names and "days_since_last_payment" in names
    assert not [n for n in names if n.startswith(("refund", "failed_payments"))]
    late = make_tables(
        customers, activity, [],
        [{"customer_id": "a", "at": "2024-02-01", "amount": 10.0},
         {"customer_id": "a", "at": "2024-02-03", "amount": 10.0, "kind": "failed_payment"},
         {"customer_id": "a", "at": "2024-09-01", "amount": -10.0, "kind": "refund"}],
    )  # fmt: skip
    assert resolve_config(late, FeatureConfig(), until=T).revenue_kinds == (
        "payment", "failed_payment"  # the refund is after T: not known then
    )  # fmt: skip
    legacy = stored_before(config, "revenue_kinds")
    assert legacy.features_config().revenue_kinds == REVENUE_SIGNAL_KINDS
    assert "refunds_90d" in feature_names(legacy.features_config())
    with pytest.raises(ValueError, match="revenue_kinds lists kinds of revenue rows"):
        FeatureConfig(revenue_kinds=("chargeback",))


def test_monthly_debits_fall_in_every_revenue_window_once_whatever_the_day():
    """A gym debits every member on the 1st. Counted in days, the 30 days before 1 August (from
    2 July) held no debit, and on 1 October the trend read +100 % (August's debit on the 1st lay
    outside the 30 days before 1 September): a drift alarm on the 1st of the month, and scores
    on features training never saw. Calendar months hold one debit each, whatever T's day."""
    customers = [{"customer_id": "m1", "signup_at": "2024-01-01"}]
    revenue = [
        {"customer_id": "m1", "at": day, "amount": 29.9, "kind": "invoice"}
        for day in pd.date_range("2024-01-01", "2024-12-01", freq="MS")
    ]
    tables = make_tables(customers, [], [], revenue)
    for t in ("2024-08-01", "2024-10-01", "2024-07-02", "2024-09-17"):
        m1 = row(build_features(tables, t), "m1")
        assert m1["payments_30d"] == 1 and m1["payments_90d"] == 3, t
        assert m1["revenue_trend_30d"] == pytest.approx(0.0), t
    days = FeatureConfig(revenue_windows="day")
    assert row(build_features(tables, "2024-08-01", days), "m1")["payments_30d"] == 0
    # A model stored before revenue_windows counted days, and is scored so.
    stored = resolve_config(tables, FeatureConfig(), "2024-08-01")
    legacy = stored_before(stored, "revenue_windows", "payment_changes")
    assert legacy.features_config().revenue_windows == "day"
    assert legacy.features_config().payment_changes == "any"
    assert row(build_features(tables, "2024-10-01", days), "m1")["revenue_trend_30d"] == 1.0
    assert resolve_config(tables, FeatureConfig(), "2024-08-01").revenue_windows == "month"
    with pytest.raises(ValueError, match='revenue_windows is "day" or "month"'):
        FeatureConfig(revenue_windows="week")


def test_revenue_windows_in_months_are_said_in_months():
    """Reasons over revenue windows counted in calendar months say months; those of models that
    count days still say days."""
    from features.dictionary import describe

    def said(feature: str, value: float, windows: str | None) -> str:
        return describe(feature, revenue_windows=windows).text(value, {}, "EUR")

    assert said("payments_30d", 0.0, "month") == "No payments in the last month"
    assert said("payments_30d", 0.0, "day") == "No payments in the last 30 days"
    assert said("failed_payments_90d", 2.0, "month") == "2 failed payments in the last 3 months"
    assert "3 months" in describe("revenue_90d", revenue_windows="month").label
    trend = said("revenue_trend_30d", float("nan"), "month")
    assert "days" not in trend, trend
    assert said("payments_7d", 0.0, "month") == said("payments_7d", 0.0, "day")


def test_a_one_off_fee_is_no_plan_change_and_a_held_change_is():
    """A gym member pays 29,90 a month; a freeze costs 5,00 once, a returned debit 7,50 more
    once: "1 downgrade in the last 90 days" for members who never changed plan. A change the
    next payment undoes is none, nor is a return to the usual fee; a fresh one counts at once."""
    customers = [{"customer_id": c, "signup_at": "2024-01-01"} for c in ("frozen", "downsized")]
    fees = {
        "frozen": [29.9, 29.9, 5.0, 29.9, 29.9, 37.4, 29.9],
        "downsized": [29.9] * 4 + [19.9] * 3,
    }
    revenue = [
        {"customer_id": c, "at": day, "amount": amount, "kind": "invoice"}
        for c, amounts in fees.items()
        for day, amount in zip(pd.date_range("2024-01-01", periods=7, freq="MS"), amounts, strict=True)
    ]  # fmt: skip
    tables = make_tables(customers, [], [], revenue)
    config = FeatureConfig().with_churn(mode="contractual", horizon_days=30)
    features = build_features(tables, "2024-08-01", config).set_index("customer_id")
    assert features.loc["frozen", ["downgrades_90d", "upgrades_90d"]].tolist() == [0, 0]
    assert features.loc["downsized", ["downgrades_90d", "upgrades_90d"]].tolist() == [1, 0]
    # On 1 June the 19,90 of 1 May is the latest payment: a downgrade at once.
    june = build_features(tables, "2024-06-01", config).set_index("customer_id")
    assert june.loc["downsized", "downgrades_90d"] == 1
    any_change = build_features(tables, "2024-08-01", replace_changes(config, "any"))
    assert any_change.set_index("customer_id").loc["frozen", "downgrades_90d"] == 1
    with pytest.raises(ValueError, match='payment_changes is "lasting" or "any"'):
        FeatureConfig(payment_changes="all")


def replace_changes(config: FeatureConfig, changes: str) -> FeatureConfig:
    from dataclasses import replace

    return replace(config, payment_changes=changes)


def test_days_to_the_signup_anniversary_count_to_the_next_one_at_its_time_of_day():
    from features.prepared import DAY_NS
    from features.signals import days_to_anniversary

    signup = (
        pd.DatetimeIndex(
            ["2023-03-10 08:00", "2020-02-29", "2024-06-01", "2024-03-10 08:00", "2025-01-01"]
        )
        .as_unit("ns")
        .asi8.copy()
    )
    signup[2] = np.iinfo(np.int64).min  # unknown
    t = pd.Timestamp("2024-03-10 08:00").value
    got = days_to_anniversary(signup, t)
    assert got[0] == 0.0  # today, at its hour
    assert got[1] == (pd.Timestamp("2025-02-28") - pd.Timestamp(t)) / pd.Timedelta(days=1)
    assert math.isnan(got[2]) and math.isnan(got[4])  # unknown; after T
    assert got[3] == 0.0
    later = days_to_anniversary(signup[:1], t + DAY_NS)
    assert later[0] == pytest.approx(364.0)  # 2025-03-10 08:00, a day short of a year


def test_the_anniversary_is_a_feature_only_where_contractual_churn_gathers_there():
    """A gym's 12-month memberships, billed monthly, end at the signup's anniversary: 44 % of
    its churners with a year's tenure left within 31 days of one, where uniform churn puts 17 %.
    There the days to it are a feature; with churn spread over the year, or none before T, and
    in models stored before it, not."""
    from features.signals import churn_on_anniversaries

    rng = np.random.default_rng(4)
    n = 300
    signup = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    years = rng.integers(1, 3, n)
    on_term = signup + pd.to_timedelta(years * 365.2425 + rng.integers(0, 25, n), unit="D")
    spread = signup + pd.to_timedelta(rng.integers(380, 1000, n), unit="D")
    contractual = FeatureConfig()
    until = "2025-06-01"

    def customers(churned):
        return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "signup_at": signup,
                             "churned_at": churned})  # fmt: skip

    assert churn_on_anniversaries(customers(on_term), contractual, until)
    assert not churn_on_anniversaries(customers(spread), contractual, until)
    assert not churn_on_anniversaries(customers(on_term), contractual, "2021-06-01")
    shop = FeatureConfig.from_dict({"churn": {"mode": "non_contractual"}})
    assert not churn_on_anniversaries(customers(on_term), shop, until)
    tables = make_tables(
        [{"customer_id": f"c{i}", "signup_at": s, "churned_at": c}
         for i, (s, c) in enumerate(zip(signup, on_term, strict=True))],
        [{"customer_id": "c0", "at": pd.Timestamp("2021-01-02"), "event": "visit", "value": 1.0}],
    )  # fmt: skip
    resolved = resolve_config(tables, FeatureConfig(), until=until)
    assert resolved.anniversary_signals
    assert "days_to_signup_anniversary" in feature_names(resolved)
    frame = build_features(tables, until, resolved)
    assert frame["days_to_signup_anniversary"].between(0, 366).all()
    legacy = stored_before(resolved, "anniversary_signals").features_config()
    assert "days_to_signup_anniversary" not in feature_names(legacy)
