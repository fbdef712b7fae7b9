"""A budget of training rows: above config.max_training_rows, the rows of a random share of the
customers (whole histories), counted before any feature is built; every customer still scored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.dataset import build_training_set, in_customer_sample, training_rows
from features.signals import build_features, resolve_config
from ingest.demo_data import DemoConfig, demo_settings, generate_demo
from training.config import TrainConfig
from training.pipeline import (
    PEAK_BYTES_BESIDES,
    PEAK_BYTES_PER_ROW,
    customer_share,
    default_dates,
    fit_from_tables,
    memory_warning,
)


@pytest.fixture(scope="module")
def demo():
    config = DemoConfig(n_customers=800, seed=5, months=12)
    tables, _ = generate_demo(config)
    features, training = demo_settings(config)
    return tables, features, training


def test_the_sample_is_the_same_customers_whatever_the_order_and_about_the_share():
    ids = pd.Series([f"{i:06d}" for i in range(20_000)])
    kept = in_customer_sample(ids, 0.3, seed=42)
    assert 0.28 < kept.mean() < 0.32
    shuffled = ids.sample(frac=1.0, random_state=1)
    again = in_customer_sample(shuffled, 0.3, seed=42)
    assert set(shuffled[again]) == set(ids[kept])
    assert set(ids[in_customer_sample(ids, 0.3, seed=7)]) != set(ids[kept])  # the seed draws
    assert in_customer_sample(ids, 1.0, seed=42).all()


def test_a_training_set_over_the_budget_keeps_whole_histories_of_a_share_of_customers(demo):
    tables, features, training = demo
    config = TrainConfig.from_dict(training)
    dates = default_dates(tables, features, config)
    resolved = resolve_config(tables, features, until=max(dates))
    rows = training_rows(tables, dates, resolved)
    full, _ = build_training_set(tables, dates, resolved)
    assert rows == len(full)  # counted without building a feature

    assert customer_share(tables, dates, resolved, config, log=print) == 1.0
    lines: list[str] = []
    budget = TrainConfig.from_dict(training | {"max_training_rows": rows // 3})
    share = customer_share(tables, dates, resolved, budget, log=lines.append)
    assert share == pytest.approx((rows // 3) / rows)
    assert len(lines) == 1 and f"{rows:,} training rows" in lines[0]
    assert f"random {share:.1%} of the customers" in lines[0]

    sampled, _ = build_training_set(tables, dates, resolved, customer_share=share, seed=3)
    assert 0.8 * rows / 3 < len(sampled) < 1.2 * rows / 3
    kept = set(sampled["customer_id"])
    # each kept customer's rows are exactly the whole set's: every date, every value
    expected = full[full["customer_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sampled, expected)


def test_a_budget_of_rows_trains_on_a_share_and_scores_everyone(demo):
    tables, features, training = demo
    config = TrainConfig.from_dict(training | {"max_training_rows": 3_000})
    lines: list[str] = []
    fitted = fit_from_tables(tables, features, config, log=lines.append)
    assert fitted.customer_share < 1.0
    assert len(fitted.dataset) < 3_600
    assert any("exceed max_training_rows (3,000)" in line for line in lines)
    as_of = fitted.dataset["as_of"].max()
    everyone = build_features(tables, as_of, fitted.model.features_config())
    p = fitted.model.predict_proba(everyone)
    assert len(p) == len(everyone) > fitted.dataset["customer_id"].nunique()
    assert np.isfinite(p).all()


def test_a_budget_too_small_to_learn_from_is_refused_and_zero_means_none():
    with pytest.raises(ValueError, match="max_training_rows must be at least 1,000"):
        TrainConfig(max_training_rows=500)
    assert TrainConfig(max_training_rows=0).max_training_rows == 0


def test_a_training_set_too_large_for_the_machine_is_warned_with_a_budget_that_fits(demo):
    assert memory_warning(1_000_000, 24 * 2**30) is None  # about 6 GB of 24
    assert memory_warning(1_000_000, None) is None  # memory unknown: nothing to say
    text = memory_warning(2_000_000, 8 * 2**30)
    assert "2,000,000 training rows need about 10.6 GB" in text and "has 8.0 GB" in text
    fits = int(text.split("max_training_rows = ")[1].split()[0])
    assert 1_000_000 <= fits < 2_000_000 and memory_warning(fits, 8 * 2**30) is None
    # twice the features: about twice the memory per row, and a budget half as large
    wide = memory_warning(2_000_000, 8 * 2**30, features=164)
    assert "need about 20.4 GB" in wide
    assert int(wide.split("max_training_rows = ")[1].split()[0]) == pytest.approx(
        fits / 2, rel=0.05
    )
    assert memory_warning(2_000_000, 8 * 2**30, features=20) == text  # never scaled down

    tables, features, training = demo
    config = TrainConfig.from_dict(training)
    dates = default_dates(tables, features, config)
    resolved = resolve_config(tables, features, until=max(dates))
    lines: list[str] = []
    rows = training_rows(tables, dates, resolved)
    tiny = (rows * PEAK_BYTES_PER_ROW + PEAK_BYTES_BESIDES) // 2  # a machine half too small
    assert customer_share(tables, dates, resolved, config, lines.append, memory=tiny) == 1.0
    assert len(lines) == 1 and lines[0].startswith(f"warning: {rows:,} training rows need")
    lines.clear()
    customer_share(tables, dates, resolved, config, lines.append, memory=64 * 2**30)
    assert lines == []
