"""Customer attributes are segments by default and model features only when declared.

A CRM export's attributes are a snapshot taken on export day: a `status` column (active or
canceled as of today) holds the label. Undeclared, it must not reach the model; declared, it
passes through as a categorical; declared but absent, it is an error that names it."""

from __future__ import annotations

import pytest

from features.config import FeatureConfig, config_to_toml, feature_config_from_file
from features.dataset import build_training_set
from features.signals import build_features, segment_columns
from retention.metrics import retention_metrics
from tests.factories import make_tables

T = "2024-03-01"


@pytest.fixture
def tables():
    customers = [
        {"customer_id": "a", "signup_at": "2024-01-01", "plan": "pro", "status": "active"},
        {"customer_id": "b", "signup_at": "2024-01-05", "plan": "basic", "status": "canceled",
         "churned_at": "2024-03-10"},
        {"customer_id": "c", "signup_at": "2024-01-09", "plan": "basic", "status": "active"},
    ]  # fmt: skip
    activity = [
        {"customer_id": c, "at": f"2024-02-{d:02d}", "event": "login", "value": 1.0}
        for c in "abc"
        for d in (3, 17)
    ] + [{"customer_id": "a", "at": "2024-04-20", "event": "login", "value": 1.0}]
    return make_tables(customers, activity)


def test_an_undeclared_status_column_is_not_a_feature(tables):
    frame = build_features(tables, T)
    assert "status" not in frame.columns and "plan" not in frame.columns
    training, config = build_training_set(tables, [T], FeatureConfig())
    assert {"status", "plan"}.isdisjoint(training.columns)
    assert config.customer_attributes == ()


def test_a_declared_attribute_is_a_feature(tables):
    config = FeatureConfig(customer_attributes=("plan", "status"))
    frame = build_features(tables, T, config).set_index("customer_id")
    assert list(frame.columns[-2:]) == ["plan", "status"]
    assert frame["status"].to_dict() == {"a": "active", "b": "canceled", "c": "active"}
    training, resolved = build_training_set(tables, [T], config)
    assert resolved.customer_attributes == ("plan", "status")
    assert {"plan", "status"} <= set(training.columns)


def test_a_declared_attribute_missing_from_customers_is_an_error_naming_it(tables):
    with pytest.raises(ValueError, match=r"table 'customers'.*'tier'.*\['plan', 'status'\]"):
        build_features(tables, T, FeatureConfig(customer_attributes=("plan", "tier")))


def test_reserved_columns_and_a_bare_string_cannot_be_declared():
    with pytest.raises(ValueError, match="churned_at is the label"):
        FeatureConfig(customer_attributes=("plan", "churned_at"))
    with pytest.raises(ValueError, match="list of column names"):
        FeatureConfig.from_dict({"customer_attributes": "plan"})
    with pytest.raises(ValueError, match="twice"):
        FeatureConfig(customer_attributes=("plan", "plan"))


def test_the_declaration_round_trips_through_toml_and_old_models_keep_their_columns(tmp_path):
    config = FeatureConfig(customer_attributes=("plan", "country"))
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(config))
    assert feature_config_from_file(path) == config
    # A model trained before the declaration existed stored its attribute features this way.
    legacy = {**FeatureConfig().to_dict(), "segment_columns": ["plan"]}
    del legacy["customer_attributes"]
    del legacy["subscription_signals"]
    old = FeatureConfig.from_dict(legacy)
    assert old.customer_attributes == ("plan",) and old.subscription_signals is True


def test_undeclared_attributes_remain_segments_of_the_reports(tables):
    assert segment_columns(tables.customers, FeatureConfig()) == ["plan", "status"]
    report = retention_metrics(tables, "2024-02-03", "2024-03-31", by=["plan"])
    basic = report[(report["dimension"] == "plan") & (report["segment"] == "basic")].iloc[0]
    assert basic["customers_start"] == 2 and basic["lost"] == 1


def test_a_declared_date_attribute_is_the_days_from_t_to_it():
    """A contract's minimum-term end is worth what it is relative to T: 45 days ahead on one
    observation date and 15 a month later. As text it would be a category per date."""
    import numpy as np
    import pandas as pd

    from features.dictionary import describe

    customers = [
        {"customer_id": "locked", "signup_at": "2023-01-01", "term_end": "2024-04-15"},
        {"customer_id": "past", "signup_at": "2023-01-01", "term_end": "2024-01-31"},
        {"customer_id": "none", "signup_at": "2023-01-01", "term_end": None},
    ]
    activity = [{"customer_id": "locked", "at": "2024-05-20", "event": "call", "value": 1.0}]
    tables = make_tables(customers, activity)
    tables.customers["term_end"] = pd.to_datetime(tables.customers["term_end"])
    config = FeatureConfig(customer_attributes=("term_end",))
    march = build_features(tables, T, config).set_index("customer_id")["term_end"]
    assert march["locked"] == 45 and march["past"] == -30 and np.isnan(march["none"])
    april = build_features(tables, "2024-04-01", config).set_index("customer_id")["term_end"]
    assert april["locked"] == 14
    training, resolved = build_training_set(tables, [T], config)
    assert resolved.date_attributes == ("term_end",)
    assert training["term_end"].dtype == "float64"
    assert FeatureConfig.from_dict(resolved.to_dict()) == resolved
    entry = describe("term_end", ("term_end",), date_attributes=("term_end",))
    assert (
        entry.text(45.0) == "Term end in 45 days" and entry.text(-92.0) == "Term end 3 months ago"
    )
    assert entry.text(0.2) == "Term end today" and entry.text(np.nan) == "No term end"
    assert describe("MRR_end", date_attributes=("MRR_end",)).missing == "No MRR end"
    from training.drivers import top_drivers

    values = march.to_frame().iloc[:1]
    said = top_drivers(np.array([[0.3]]), ["term_end"], values, 1, np.array([[3.0]]),
                       attributes=("term_end",), date_attributes=("term_end",)).to_pylist()  # fmt: skip
    assert said[0][0]["reason"] == "Term end in 45 days"
    # Scoring data that holds the model's date attribute as text is an error, not a category.
    as_text = make_tables([{**c, "term_end": c["term_end"] or ""} for c in customers], activity)
    with pytest.raises(ValueError, match="'term_end': a date attribute of the model"):
        build_features(as_text, T, resolved)
    with pytest.raises(ValueError, match="date_attributes"):
        FeatureConfig(customer_attributes=("plan",), date_attributes=("term_end",))


def test_a_renewal_date_that_moves_on_by_terms_is_read_as_the_renewal_due_at_t():
    """A CRM's next renewal date on the export day already shows the terms renewed since: on
    2024-05-01 the renewed customer's 2025-06-01 and the churned one's 2024-06-01 are the same
    renewal, 31 days ahead. Rolled back by whole years, they read the same; as they are, only
    the churner has a near date (the leak the current-term warning names)."""
    import pandas as pd

    customers = [
        {"customer_id": "renewed", "signup_at": "2022-06-01", "renewal": "2025-06-01"},
        {"customer_id": "churner", "signup_at": "2022-06-01", "renewal": "2024-06-01",
         "churned_at": "2024-06-01"},
        {"customer_id": "monthly", "signup_at": "2023-01-01", "renewal": None},
        {"customer_id": "late", "signup_at": "2023-01-01", "renewal": "2026-04-30"},
    ]  # fmt: skip
    activity = [{"customer_id": "renewed", "at": "2024-07-20", "event": "call", "value": 1.0}]
    tables = make_tables(customers, activity)
    tables.customers["renewal"] = pd.to_datetime(tables.customers["renewal"])
    plain = FeatureConfig(customer_attributes=("renewal",))
    cycled = FeatureConfig.from_dict(
        {"customer_attributes": ["renewal"], "date_cycles": {"renewal": "year"}}
    )
    as_is = build_features(tables, "2024-05-01", plain).set_index("customer_id")["renewal"]
    assert as_is["renewed"] == 396 and as_is["churner"] == 31
    rolled = build_features(tables, "2024-05-01", cycled).set_index("customer_id")["renewal"]
    assert rolled["renewed"] == rolled["churner"] == 31
    assert rolled["late"] == 364 and pd.isna(rolled["monthly"])  # 2025-04-30; none stays none
    # The cycle travels with the model, and a cycle for a date held as text is an error.
    _, resolved = build_training_set(tables, ["2024-05-01"], cycled)
    assert FeatureConfig.from_dict(resolved.to_dict()).date_cycles == (("renewal", "year"),)
    as_text = make_tables([{**c, "renewal": c["renewal"] or ""} for c in customers], activity)
    with pytest.raises(ValueError, match=r"column 'renewal': .*date_cycles rolls back a date"):
        build_features(as_text, "2024-05-01", cycled)
    with pytest.raises(ValueError, match="a cycle is one of"):
        FeatureConfig(customer_attributes=("renewal",), date_cycles=(("renewal", "weekly"),))
    with pytest.raises(ValueError, match="not among the declared customer_attributes"):
        FeatureConfig(date_cycles=(("renewal", "year"),))
