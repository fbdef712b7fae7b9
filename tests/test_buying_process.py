"""The BG/NBD buying process behind the non-contractual feature no_activity_chance_<h>d."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.buying_process import (
    distinct_triples,
    fit_buying_process,
    no_purchase_probability,
)
from features.config import ChurnDefinition, FeatureConfig
from features.signals import build_features, resolve_config
from tests.factories import make_tables

TRUE = (0.25, 4.0, 0.8, 2.5)  # r, alpha (weeks), a, b: CDNOW-like


def simulate(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers drawn from a BG/NBD process: (repeat purchases, days from the first to the
    last purchase, days from the first purchase to the end), in whole days."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE
    rate = rng.gamma(r, 1 / alpha, n)  # purchases per week
    dropout = rng.beta(a, b, n)
    age = rng.integers(20 * 7, 40 * 7, n)
    x, last = np.zeros(n, dtype=np.int64), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rate[i]) * 7
            if t >= age[i]:
                break
            x[i] += 1
            last[i] = t
            if rng.random() < dropout[i]:
                break
    return x, np.floor(last).astype(np.int64), age


def test_the_fit_recovers_the_parameters_of_simulated_customers():
    triples, counts = distinct_triples(*simulate(8000))
    assert counts.sum() == 8000 and len(triples) < 8000  # equal triples counted once
    r, alpha, a, b = fit_buying_process(triples, counts)
    assert r == pytest.approx(TRUE[0], rel=0.2) and alpha == pytest.approx(TRUE[1], rel=0.25)
    assert a / (a + b) == pytest.approx(TRUE[2] / (TRUE[2] + TRUE[3]), rel=0.25)


def test_too_few_customers_or_repeat_buyers_give_no_parameters():
    x, tx, age = simulate(40)
    assert fit_buying_process(*distinct_triples(x, tx, age)) is None
    nobody_repeats = distinct_triples(np.zeros(500), np.zeros(500), np.full(500, 60))
    assert fit_buying_process(*nobody_repeats) is None


def test_the_chance_of_no_purchase_follows_the_formula_and_the_customer():
    r, alpha = TRUE[:2]
    # No repeat purchase yet: alive for sure, only the Poisson silence.
    p0 = no_purchase_probability(TRUE, np.array([0]), np.array([0]), np.array([70]), 28)
    assert p0[0] == pytest.approx(((alpha + 10) / (alpha + 14)) ** r)
    # Five purchases, the last one long ago: likelier gone than one who bought last week.
    x, age = np.array([5, 5]), np.array([140, 140])
    stale, fresh = no_purchase_probability(TRUE, x, np.array([20, 133]), age, 28)
    assert 0 < fresh < stale < 1
    assert np.isnan(no_purchase_probability(TRUE, np.array([np.nan]), [0], [10], 28)[0])


def purchase_log() -> pd.DataFrame:
    """Two months of a shop's purchases: 60 customers, most buying every 10-20 days."""
    rng = np.random.default_rng(3)
    rows = []
    for c in range(60):
        day = int(rng.integers(0, 20))
        while day < 150:
            rows.append({"customer_id": f"{c:03d}", "at": pd.Timestamp("2024-01-01") + pd.Timedelta(days=day), "event": "purchase"})  # fmt: skip
            day += int(rng.integers(5, 40)) if c % 4 else 200  # every fourth buys once
    return pd.DataFrame(rows)


def test_resolved_with_the_lookback_and_a_feature_of_non_contractual_data_only():
    activity = purchase_log()
    customers = activity.groupby("customer_id", as_index=False)["at"].min()
    tables = make_tables(
        customers.rename(columns={"at": "signup_at"}).to_dict("records"),
        activity.to_dict("records"),
    )
    churn = ChurnDefinition(
        mode="non_contractual", horizon_days=30, qualifying_events=("purchase",)
    )
    resolved = resolve_config(tables, FeatureConfig(churn=churn), until="2024-05-01")
    assert len(resolved.buying_process) == 4
    assert FeatureConfig.from_dict(resolved.to_dict()) == resolved  # travels with the model
    frame = build_features(tables, "2024-05-01", resolved)
    chance = frame["no_activity_chance_30d"]
    assert chance.notna().all() and chance.between(0, 1).all()
    contractual = resolve_config(tables, FeatureConfig(), until="2024-05-01")
    assert contractual.buying_process == ()
    assert not any(
        c.startswith("no_activity_chance")
        for c in build_features(tables, "2024-05-01", contractual)
    )
    # Too little data to fit (or `buying_process = []`): no column rather than one of NaN.
    unfitted = replace(resolved, buying_process=())
    assert not any(
        c.startswith("no_activity_chance") for c in build_features(tables, "2024-05-01", unfitted)
    )


def test_a_buying_process_that_is_not_four_positive_numbers_is_refused():
    with pytest.raises(ValueError, match="four positive numbers"):
        FeatureConfig(buying_process=(0.2, -1.0, 0.5, 1.0))
    with pytest.raises(ValueError, match="four positive numbers"):
        FeatureConfig.from_dict({"buying_process": [1.0, 2.0]})


def test_many_distinct_customers_are_binned_with_their_counts_and_the_same_answer(monkeypatch):
    """Beyond MAX_TRIPLES distinct (x, t_x, T) the times are binned (weeks, then coarser):
    every customer still counts once, and the parameters barely move."""
    import features.buying_process as bp

    triples, counts = distinct_triples(*simulate(8000))
    exact = fit_buying_process(triples, counts)
    monkeypatch.setattr(bp, "MAX_TRIPLES", 3000)  # 3,429 distinct: binned to weeks
    binned, binned_counts = bp._coarsened(triples, counts)
    assert len(binned) <= 3000 and binned_counts.sum() == counts.sum()
    assert (binned[:, 2] >= binned[:, 1]).all() and (binned[binned[:, 0] == 0, 1] == 0).all()
    assert fit_buying_process(triples, counts) == pytest.approx(exact, rel=0.1)
