"""A subscriptions export (Stripe's, Chargebee's): one row per subscription, several per
customer when they re-subscribe or add a product, an empty end date while one runs. A customer
has churned when every subscription has ended, on the last end: `max_if_all`. `max` would read
a customer with one ended and one running subscription as churned; the import warns when the
mapping does that."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingest.importer import run_import
from ingest.mapping import AGGREGATIONS, load_mapping

MAPPING = """
[features.churn]
mode = "contractual"
horizon_days = 30

[customers]
name = "subscriptions"
source = "subscriptions.csv"

[customers.columns]
customer_id = "Customer ID"
signup_at = { column = "Created (UTC)" }
churned_at = { column = "Ended At (UTC)" }
plan = "Plan"

[customers.aggregate]
by = ["customer_id"]
signup_at = "min"
churned_at = "{function}"
plan = "last"

[activity]
source = "logins.csv"

[activity.columns]
customer_id = "customer"
at = { column = "at" }
event = { value = "login" }
"""

# Stripe's column names; cus_A re-subscribed after cancelling and runs, cus_B ended both,
# cus_C runs one, cus_D ended its only one.
SUBSCRIPTIONS = """\
id,Customer ID,Plan,Created (UTC),Ended At (UTC)
sub_1,cus_A,basic,2024-01-05 10:00,2024-03-05 10:00
sub_2,cus_A,pro,2024-04-01 09:00,
sub_3,cus_B,basic,2024-01-10 08:00,2024-02-10 08:00
sub_4,cus_B,addon,2024-01-20 08:00,2024-05-20 08:00
sub_5,cus_C,pro,2024-02-01 12:00,
sub_6,cus_D,basic,2024-02-15 12:00,2024-06-15 12:00
"""


LOGINS = "customer,at\ncus_A,2024-05-01 10:00\ncus_C,2024-05-02 11:00\ncus_C,2024-06-20 09:00\n"


def _import(tmp_path: Path, function: str):
    (tmp_path / "subscriptions.csv").write_text(SUBSCRIPTIONS)
    (tmp_path / "logins.csv").write_text(LOGINS)
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING.replace("{function}", function))
    tables, report = run_import(load_mapping(path), tmp_path)
    return tables.customers.set_index("customer_id")["churned_at"], report


def test_a_customer_churns_when_the_last_subscription_ended(tmp_path):
    churned, report = _import(tmp_path, "max_if_all")
    assert pd.isna(churned["cus_A"])  # one ended, one running: still a customer
    assert churned["cus_B"] == pd.Timestamp("2024-05-20 08:00")  # both ended: the later end
    assert pd.isna(churned["cus_C"])
    assert churned["cus_D"] == pd.Timestamp("2024-06-15 12:00")
    assert report.warnings == []
    assert "max_if_all" in AGGREGATIONS


def test_max_over_running_subscriptions_is_warned_about_with_the_remedy(tmp_path):
    churned, report = _import(tmp_path, "max")
    assert churned["cus_A"] == pd.Timestamp("2024-03-05 10:00")  # what was asked for
    (warning,) = report.warnings
    assert "customers source 'subscriptions'" in warning
    assert "1 customers have rows with a churned_at and rows without" in warning
    assert "customer cus_A: 1 of 2 rows" in warning
    assert 'churned_at = "max_if_all"' in warning
    assert warning in report.to_markdown()


def test_an_end_date_declared_on_some_rows_only_is_not_warned_about(tmp_path):
    # `when`: the date only on the rows that say so (an event log's cancellation event), empty
    # elsewhere by declaration.
    (tmp_path / "subscriptions.csv").write_text(SUBSCRIPTIONS)
    text = MAPPING.replace("{function}", "min").replace(
        'churned_at = { column = "Ended At (UTC)" }',
        'churned_at = { column = "Ended At (UTC)", when = { column = "Plan", not_in = ["pro"] } }',
    )
    (tmp_path / "logins.csv").write_text(LOGINS)
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    _, report = run_import(load_mapping(path), tmp_path)
    assert report.warnings == []


ENDS = """\
msisdn,activated,status,end_date,min_term_end
0049151000001,2024-01-03,ACTIVE,,03.05.2024
0049151000002,2024-01-04,PORTED_OUT,2024-04-10,04.01.2026
0049151000003,2024-01-05,DEACTIVATED,2024-03-02,
0049151000004,2024-02-01,DEACTIVATED,2024-05-20,
"""

ENDS_MAPPING = """
[features.churn]
mode = "contractual"
horizon_days = 30

[customers]
source = "subscribers.csv"

[customers.columns]
customer_id = "msisdn"
signup_at = "activated"
# One end date, two meanings: a port-out is churn; the operator deactivating a dormant SIM
# ends the service without churn.
churned_at = { column = "end_date", when = { column = "status", in = ["PORTED_OUT"] } }
ended_at = { column = "end_date", when = { column = "status", in = ["DEACTIVATED"] } }

[activity]
source = "logins.csv"

[activity.columns]
customer_id = "msisdn"
at = "at"
event = { value = "call" }
"""


def test_an_end_of_service_that_is_not_churn_maps_to_ended_at(tmp_path):
    """A telecom's one end date: churn when the number was ported out, an end without churn
    when the operator deactivated it. From ended_at on the subscriber is not scored."""
    from features.config import FeatureConfig
    from features.signals import build_features

    (tmp_path / "subscribers.csv").write_text(ENDS)
    (tmp_path / "logins.csv").write_text("msisdn,at\n0049151000001,2024-03-01 10:00\n")
    path = tmp_path / "mapping.toml"
    path.write_text(ENDS_MAPPING)
    tables, report = run_import(load_mapping(path), tmp_path)
    customers = tables.customers.set_index("customer_id")
    assert customers["churned_at"].notna().tolist() == [False, True, False, False]
    assert customers["ended_at"].tolist()[2:] == [
        pd.Timestamp("2024-03-02"),
        pd.Timestamp("2024-05-20"),
    ]
    assert report.tables["customers"]["ended"] == 2
    assert "service ended without churn (ended_at): 2" in report.to_markdown()
    config = FeatureConfig().with_churn(mode="contractual")
    scored = build_features(tables, "2024-04-01", config)["customer_id"].tolist()
    assert scored == ["0049151000001", "0049151000002", "0049151000004"]


def test_a_minimum_term_end_mapped_as_a_timestamp_is_a_date_attribute(tmp_path):
    """The CRM's minimum-term end (day first) declared as a model feature: days from T."""
    from features.config import FeatureConfig
    from features.signals import build_features

    (tmp_path / "subscribers.csv").write_text(ENDS)
    (tmp_path / "logins.csv").write_text("msisdn,at\n0049151000001,2024-03-01 10:00\n")
    path = tmp_path / "mapping.toml"
    path.write_text(
        ENDS_MAPPING.replace(
            "[activity]",
            'min_term_end = { column = "min_term_end", dayfirst = true }\n\n[activity]',
            1,
        )
    )
    tables, _ = run_import(load_mapping(path), tmp_path)
    config = FeatureConfig(customer_attributes=("min_term_end",)).with_churn(mode="contractual")
    rows = build_features(tables, "2024-04-01", config).set_index("customer_id")
    days = rows["min_term_end"]
    assert days["0049151000001"] == 32 and days["0049151000002"] == 643
    assert pd.isna(days["0049151000004"])  # no term: missing, not a category
