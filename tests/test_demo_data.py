"""The demo generator: contract-shaped, reproducible, point-in-time sane, and its truth is honest
(calibrated against the realised churn, drivers pointing the documented way)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import config_for_data, config_path_for_data
from features.contract import FEEDBACK_KINDS, REVENUE_KINDS, TICKET_STATUSES, validate_tables
from features.io import load_tables
from ingest.demo_data import HAZARD, DemoConfig, demo_settings, generate_demo, write_demo
from training.config import train_config_from_file

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def small():
    cfg = DemoConfig(n_customers=300, seed=3)
    tables, truth = generate_demo(cfg)
    return cfg, tables, truth


@pytest.fixture(scope="module")
def large():
    """A few thousand customers: enough for calibration and direction checks."""
    cfg = DemoConfig(n_customers=4000, seed=11)
    tables, truth = generate_demo(cfg)
    churned_at = tables.customers.set_index("customer_id")["churned_at"]
    c = churned_at.reindex(truth["customer_id"]).to_numpy()
    t = truth["as_of"].to_numpy()
    truth = truth.assign(churned=(c > t) & (c <= t + np.timedelta64(cfg.step_days, "D")))
    return cfg, tables, truth


def _counts_between(tables, customer_ids, lo, hi) -> np.ndarray:
    """Activity rows per (customer, [lo, hi)) pair, vectorized with a sorted composite key."""
    ids = pd.Index(tables.customers["customer_id"])
    act = tables.activity
    code = ids.get_indexer(act["customer_id"].astype(str)).astype(np.int64)
    origin = tables.customers["signup_at"].min()
    sec = ((act["at"] - origin) // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)
    key = np.sort(code * 10**10 + sec)
    q = ids.get_indexer(pd.Index(customer_ids)).astype(np.int64) * 10**10
    lo_s = ((pd.Series(lo) - origin) // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)
    hi_s = ((pd.Series(hi) - origin) // pd.Timedelta(seconds=1)).to_numpy().astype(np.int64)
    return np.searchsorted(key, q + hi_s) - np.searchsorted(key, q + lo_s)


def test_tables_pass_the_contract_and_look_like_the_contract(small):
    cfg, tables, _ = small
    again = validate_tables(tables.customers, tables.activity, tables.feedback, tables.revenue)
    assert len(again.activity) == len(tables.activity) > 0
    cust = tables.customers
    assert cust["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert {"plan", "country", "channel", "company_size"} <= set(cust.columns)
    assert set(cust["plan"]) == {"basic", "pro", "enterprise"}
    assert set(tables.feedback["kind"].astype(str)) == set(FEEDBACK_KINDS)
    assert set(tables.revenue["kind"].astype(str)) <= set(REVENUE_KINDS)
    assert {"invoice", "refund", "failed_payment"} <= set(tables.revenue["kind"].astype(str))
    rev = tables.revenue
    assert (rev.loc[rev["kind"] == "refund", "amount"] < 0).all()
    assert (rev.loc[rev["kind"] != "refund", "amount"] > 0).all()
    assert (
        rev["period"].notna().all()
        and (rev["period"] == rev["period"].dt.to_period("M").dt.start_time).all()
    )
    fb = tables.feedback
    tickets = fb[fb["kind"] == "ticket"]
    assert set(tickets["status"]) <= set(TICKET_STATUSES)
    assert tickets.loc[tickets["status"] == "closed", "resolved_at"].notna().all()
    assert tickets.loc[tickets["status"] == "open", "resolved_at"].isna().all()
    assert (
        tickets["resolved_at"].dropna() >= tickets.loc[tickets["resolved_at"].notna(), "at"]
    ).all()
    assert tickets["score"].isna().all() and fb.loc[fb["kind"] != "ticket", "status"].isna().all()
    nps = fb.loc[fb["kind"] == "nps", "score"]
    assert nps.between(0, 10).all() and (nps == nps.round()).all()
    assert fb.loc[fb["kind"].isin(["csat", "review"]), "score"].between(1, 5).all()
    assert fb["text"].notna().any() and fb["text"].isna().any()
    assert (tables.activity["value"] >= 0).all()
    assert tables.activity["event"].nunique() >= 5
    # some customers were already there at the start, and new ones arrive every month
    assert (cust["signup_at"] < cfg.start).mean() == pytest.approx(cfg.initial_share, abs=0.05)
    new = cust.loc[cust["signup_at"] >= cfg.start, "signup_at"].dt.to_period("M")
    assert new.nunique() == cfg.months


def test_same_seed_same_data_other_seed_other_data(small):
    _, tables, truth = small
    tables2, truth2 = generate_demo(DemoConfig(n_customers=300, seed=3))
    for name in ("customers", "activity", "feedback", "revenue"):
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(tables2, name))
    pd.testing.assert_frame_equal(truth, truth2)
    tables3, truth3 = generate_demo(DemoConfig(n_customers=300, seed=4))
    assert not tables.customers.equals(tables3.customers)
    assert not tables.activity.equals(tables3.activity)
    assert not truth.equals(truth3)


def test_rows_lie_between_signup_and_churn_and_before_the_data_end(small):
    cfg, tables, _ = small
    cust = tables.customers.set_index("customer_id")
    for name in ("activity", "feedback", "revenue"):
        df = getattr(tables, name)
        ids = df["customer_id"].astype(str)
        assert ids.isin(cust.index).all()
        signup = cust["signup_at"].reindex(ids).to_numpy()
        churned = cust["churned_at"].reindex(ids).to_numpy()
        at = df["at"].to_numpy()
        assert (at >= signup).all(), name
        assert (at >= np.datetime64(cfg.start)).all(), name
        assert (at < np.datetime64(cfg.end)).all(), name
        ok = np.isnat(churned) | (at <= churned)
        assert ok.all(), name
    resolved = tables.feedback["resolved_at"].dropna()
    assert (resolved < cfg.end).all()
    assert (cust["churned_at"].dropna() < cfg.end).all()


def test_truth_covers_exactly_the_customers_active_at_each_step(small):
    cfg, tables, truth = small
    assert list(truth.columns) == ["customer_id", "as_of", "churn_probability"]
    assert truth["as_of"].dtype == "datetime64[ns]"
    p = truth["churn_probability"]
    assert ((p > 0) & (p < 1)).all()
    steps = sorted(truth["as_of"].unique())
    expected = [cfg.start + k * cfg.step_days * DAY for k in range(1, len(steps) + 1)]
    assert [pd.Timestamp(s) for s in steps] == expected
    assert expected[-1] + cfg.step_days * DAY <= cfg.end < expected[-1] + 2 * cfg.step_days * DAY
    cust = tables.customers
    for t, rows in truth.groupby("as_of"):
        active = (cust["signup_at"] < t) & ~(cust["churned_at"] <= t)
        assert set(rows["customer_id"]) == set(cust.loc[active, "customer_id"])
        assert not rows["customer_id"].duplicated().any()


def test_realised_churn_matches_the_truth(large):
    _, _, truth = large
    per_step = truth.groupby("as_of").agg(
        p=("churn_probability", "mean"),
        y=("churned", "mean"),
        n=("churned", "size"),
        v=("churn_probability", lambda s: (s * (1 - s)).sum()),
    )
    # each step within 4 standard deviations of its expected churners
    z = (per_step["y"] - per_step["p"]) * per_step["n"] / np.sqrt(per_step["v"])
    assert (z.abs() < 4).all(), per_step
    pooled = (truth["churned"].sum() - truth["churn_probability"].sum()) / np.sqrt(
        (truth["churn_probability"] * (1 - truth["churn_probability"])).sum()
    )
    assert abs(pooled) < 4
    assert 0.02 <= truth["churned"].mean() <= 0.05
    # a decile check: the truth ranks customers, and the top decile is calibrated too
    top = truth[truth["churn_probability"] >= truth["churn_probability"].quantile(0.9)]
    assert top["churned"].mean() == pytest.approx(top["churn_probability"].mean(), rel=0.15)
    assert top["churned"].mean() > 3 * truth["churned"].mean()


def test_churners_use_the_product_less_before_they_leave(large):
    cfg, tables, truth = large
    month = cfg.step_days * DAY
    churners = truth[truth["churned"]]
    stayers = truth[~truth["churned"]]
    churned_at = (
        tables.customers.set_index("customer_id")["churned_at"]
        .reindex(churners["customer_id"])
        .to_numpy()
    )
    before_churn = _counts_between(
        tables, churners["customer_id"], churned_at - month.to_timedelta64(), churned_at
    )
    # stayers over the same month (they are active throughout (T, T + 30 days])
    same_month = _counts_between(
        tables, stayers["customer_id"], stayers["as_of"] + DAY, stayers["as_of"] + month + DAY
    )
    assert before_churn.mean() < 0.6 * same_month.mean()
    # and what is observable at T already differs: activity in [T - 30 days, T)
    seen_c = _counts_between(
        tables, churners["customer_id"], churners["as_of"] - month, churners["as_of"]
    )
    seen_s = _counts_between(
        tables, stayers["customer_id"], stayers["as_of"] - month, stayers["as_of"]
    )
    assert seen_c.mean() < 0.8 * seen_s.mean()


def test_drivers_point_the_documented_way(large):
    _, tables, truth = large
    p = truth["churn_probability"].to_numpy()
    t = truth["as_of"].to_numpy()
    ids = truth["customer_id"].to_numpy()

    # open tickets at T (opened before T, not resolved before T)
    fb = tables.feedback
    tickets = fb[fb["kind"] == "ticket"].assign(customer_id=lambda d: d["customer_id"].astype(str))
    pairs = truth[["customer_id", "as_of"]].merge(
        tickets[["customer_id", "at", "resolved_at"]], on="customer_id"
    )
    open_at_t = (pairs["at"] < pairs["as_of"]) & ~(pairs["resolved_at"] < pairs["as_of"])
    flagged = pairs.loc[open_at_t, ["customer_id", "as_of"]].drop_duplicates().assign(open=True)
    has_open = truth.merge(flagged, on=["customer_id", "as_of"], how="left")["open"].fillna(False)
    has_open = has_open.to_numpy(dtype=bool)
    assert has_open.any() and p[has_open].mean() > 1.3 * p[~has_open].mean()

    # last NPS answer before T: detractors above passives above promoters
    nps = (
        fb[fb["kind"] == "nps"]
        .assign(customer_id=lambda d: d["customer_id"].astype(str))
        .sort_values("at")
    )
    last = pd.merge_asof(
        truth.sort_values("as_of"),
        nps[["customer_id", "at", "score"]].rename(columns={"at": "as_of"}),
        on="as_of",
        by="customer_id",
        allow_exact_matches=False,
    )
    mean_by = last.groupby(
        pd.cut(last["score"], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"]),
        observed=True,
    )["churn_probability"].mean()
    assert mean_by["detractor"] > mean_by["passive"] > mean_by["promoter"]

    # plan, tenure and recent activity
    cust = tables.customers.set_index("customer_id")
    plan = cust["plan"].reindex(ids).to_numpy()
    assert p[plan == "basic"].mean() > p[plan == "pro"].mean() > p[plan == "enterprise"].mean()
    tenure = (t - cust["signup_at"].reindex(ids).to_numpy()) / np.timedelta64(1, "D")
    assert p[tenure < 60].mean() > p[tenure > 365].mean()
    recent = _counts_between(tables, ids, truth["as_of"] - 30 * DAY, truth["as_of"])
    assert p[recent == 0].mean() > p[recent >= np.median(recent)].mean()

    # the coefficients are signed as documented, which makes each driver monotone
    for up in (
        "usage_drop",
        "no_activity",
        "nps",
        "detractor",
        "open_tickets",
        "long_open",
        "price_rise",
        "failed_payments",
        "downgrade",
        "new_customer",
    ):
        assert HAZARD[up] > 0, up
    for down in ("activity", "promoter", "upgrade"):
        assert HAZARD[down] < 0, down


def test_write_demo_writes_tables_and_truth(tmp_path):
    out = tmp_path / "demo"
    summary = write_demo(out, DemoConfig(n_customers=200, seed=1))
    assert {p.name for p in out.iterdir()} == {
        "customers.parquet",
        "activity.parquet",
        "feedback.parquet",
        "revenue.parquet",
        "truth.parquet",
        "config.toml",
    }
    loaded = load_tables(out)
    assert summary["customers"] == len(loaded.customers) == 200
    assert summary["activity"] == len(loaded.activity)
    truth = pd.read_parquet(out / "truth.parquet")
    assert summary["truth"] == len(truth) and truth["churn_probability"].between(0, 1).all()
    assert 0 < summary["churn_share"] < 1
    # writing again replaces the folder whole
    write_demo(out, DemoConfig(n_customers=100, seed=2))
    assert len(load_tables(out).customers) == 100
    assert set(pd.read_parquet(out / "truth.parquet")["customer_id"]) <= set(
        load_tables(out).customers["customer_id"]
    )


def test_the_demo_folder_carries_demo_settings(tmp_path):
    """What `churn train --data` reads from a demo folder is demo_settings, the settings the
    backtest benchmark trains with: the declared attributes, the step as horizon, the grid."""
    demo = DemoConfig(n_customers=100, seed=2, months=6)
    write_demo(tmp_path, demo)
    features, training = demo_settings(demo)
    assert config_for_data(tmp_path) == features
    assert set(features.customer_attributes) == {"plan", "country", "channel", "company_size"}
    assert features.churn.horizon_days == demo.step_days
    read = train_config_from_file(config_path_for_data(tmp_path))
    assert (read.date_from, read.every_days, read.model_name) == (
        training["date_from"],
        training["every_days"],
        training["model_name"],
    )
