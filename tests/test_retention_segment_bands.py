"""The segment report's risk-band rows: customers grouped by the band they had at the start of
the period (from the partition scored then), so churn by band measures the bands' foresight."""

from __future__ import annotations

import pandas as pd
import pytest

from features.config import FeatureConfig
from features.contract import validate_tables
from retention.metrics import PeriodNotCovered
from serving.batch import (
    NOT_SCORED_AT_START,
    band_rows_note,
    run_summary,
    segment_report,
    start_bands,
)

T = pd.Timestamp
START, RUN = T("2024-03-01"), T("2024-04-01")


class ContractualModel:
    """Just what the segment report asks of a model: its churn definition."""

    def features_config(self) -> FeatureConfig:
        return FeatureConfig().with_churn(mode="contractual", horizon_days=30)


def bands_tables():
    """a, b high and c, d low at the start; f was a customer then but not scored; e signs up
    during the period. a (high) and c (low) churn in March."""
    customers = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "signup_at": [T("2024-01-05")] * 4 + [T("2024-03-10"), T("2024-01-20")],
            "churned_at": [T("2024-03-15"), pd.NaT, T("2024-03-20"), pd.NaT, pd.NaT, pd.NaT],
            "plan": ["pro", "pro", "basic", "basic", "pro", "basic"],
        }
    )
    activity = pd.DataFrame(
        {"customer_id": ["a", "b"], "at": [T("2024-01-05"), T("2024-03-31 12:00")], "event": "x"}
    )
    return validate_tables(customers, activity)


START_SCORES = pd.DataFrame(
    {"customer_id": list("abcd"), "risk_band": ["high", "high", "low", "low"]}
)
NOW = pd.DataFrame(
    {
        "customer_id": list("bdef"),
        "churn_probability": [0.6, 0.1, 0.2, 0.3],
        "risk_band": ["high", "low", "low", "medium"],
    }
)
FEATURES = pd.DataFrame({"customer_id": list("bdef")})


def report(start_scores):
    return segment_report(
        bands_tables(), NOW, FEATURES, ContractualModel(), START, RUN, ["plan"],
        start_scores=start_scores,
    )  # fmt: skip


def test_band_rows_group_customers_by_their_band_at_the_start():
    """Of the two high-risk customers at the start one churned: 50 %, not the survivors'
    100 %; the customer without a band then has its own row, named so."""
    seg = report(START_SCORES)
    bands = seg[seg["dimension"] == "risk_band"].set_index("segment")
    assert set(bands.index) == {"high", "low", NOT_SCORED_AT_START}
    assert bands.loc["high", ["customers_start", "lost"]].tolist() == [2, 1]
    assert bands.loc["high", "churn_rate"] == pytest.approx(0.5)
    assert bands.loc["low", "churn_rate"] == pytest.approx(0.5)
    # f was a customer at the start without a band; e signed up during the period
    assert bands.loc[NOT_SCORED_AT_START, ["customers_start", "new"]].tolist() == [1, 1]
    # the risk view of each row is today's scores of the customers in it: b is still high
    assert bands.loc["high", "customers_scored"] == 1
    assert bands.loc["high", "share_high"] == 1.0
    assert bands.loc[NOT_SCORED_AT_START, "customers_scored"] == 2


def test_without_a_partition_at_the_start_there_are_no_band_rows_and_a_reason():
    seg = report(None)
    assert "risk_band" not in set(seg["dimension"])
    assert set(seg["dimension"]) == {"all", "plan"}
    note = band_rows_note(None, pd.Timestamp("2024-03-01"))
    assert "no partition was scored at the start" in note and "2024-03-01" in note
    assert band_rows_note(START_SCORES, pd.Timestamp("2024-03-01")) == ""
    summary = run_summary(RUN, None, "1", None, seg)
    assert summary["bands"] == {"high": 1, "low": 2, "medium": 1}  # today's bands


def test_a_report_period_after_the_data_is_refused():
    with pytest.raises(PeriodNotCovered, match="after the data's last record"):
        segment_report(
            bands_tables(), NOW, FEATURES, ContractualModel(), START, T("2024-05-01"), ["plan"]
        )


class LateChurnModel:
    """A model of an export that records churn late: churn is known until 2024-03-18."""

    def features_config(self) -> FeatureConfig:
        return FeatureConfig().with_churn(
            mode="contractual", horizon_days=30, observed_until="2024-03-18"
        )


def test_a_report_period_past_the_day_churn_is_recorded_until_is_not_measured():
    """c's churn on 2024-03-20 would not be in such an export yet: the period would read
    churn 0 % beside the revenue its leavers no longer pay. Refused, naming the setting and
    the last day that works; by then, measured."""
    with pytest.raises(PeriodNotCovered, match="observed_until = 2024-03-18") as err:
        segment_report(bands_tables(), NOW, FEATURES, LateChurnModel(), START, RUN, ["plan"])
    assert "end the period on 2024-03-17 or earlier" in str(err.value)
    assert err.value.covered_until == T("2024-03-18")
    early = segment_report(
        bands_tables(), NOW, FEATURES, LateChurnModel(), START, T("2024-03-18"), ["plan"]
    )
    assert early.set_index("dimension").loc["all", "lost"] == 1  # a, on 2024-03-15


def test_start_bands_come_from_the_newest_partition_on_or_before_the_start(tmp_path):
    for day, band in (("2024-02-01", "low"), ("2024-03-01", "high"), ("2024-03-08", "medium")):
        part = tmp_path / f"as_of={day}"
        part.mkdir()
        pd.DataFrame({"customer_id": ["a"], "risk_band": [band]}).to_parquet(
            part / "scores.parquet"
        )
        (part / "run.json").write_text("{}")
    assert start_bands(tmp_path, START)["risk_band"].tolist() == ["high"]
    assert start_bands(tmp_path, T("2024-01-01")) is None


def test_the_service_answers_a_period_the_data_do_not_cover_with_the_field_to_change(tmp_path):
    """/segments maps PeriodNotCovered to a 4xx naming period_end (after the data) or
    period_start (before them), with the dates that work; a covered period takes the bands
    of the partition scored at its start."""
    from datetime import date
    from types import SimpleNamespace

    from serving.schemas import InvalidField
    from serving.service import computed_report

    part = tmp_path / "as_of=2024-03-01"
    part.mkdir()
    START_SCORES.to_parquet(part / "scores.parquet")
    (part / "run.json").write_text("{}")
    latest = tmp_path / "as_of=2024-04-01"
    partition = SimpleNamespace(tables=bands_tables(), scores=NOW, revenue=FEATURES, path=latest)
    served = SimpleNamespace(model=ContractualModel())
    with pytest.raises(InvalidField, match=r"^period_end: .*end the period on 2024-03-31"):
        computed_report(served, partition, ["plan"], date(2024, 3, 1), date(2024, 5, 1))
    with pytest.raises(InvalidField, match=r"^period_start: .*start the period on 2024-01-05"):
        computed_report(served, partition, ["plan"], date(2023, 12, 1), date(2024, 4, 1))
    seg = computed_report(served, partition, ["plan"], date(2024, 3, 1), date(2024, 4, 1))
    bands = seg[seg["dimension"] == "risk_band"].set_index("segment")
    assert bands.loc["high", "churn_rate"] == pytest.approx(0.5)


def test_without_revenue_rows_revenue_at_risk_is_not_measured_rather_than_zero():
    """A streaming log without payments: the report's headline read "Revenue at risk 0" and
    segments.parquet revenue_at_risk 0.0; nothing was measured. The card says so."""
    from reporting.report_html import ReportInputs, headline_cards, headline_of

    seg = report(START_SCORES)
    assert seg["revenue_at_risk"].isna().all() and seg["mrr_start"].isna().all()
    # Nor were revenue or purchases (a grocery's dates-only log read "buyers 0" beside 301
    # customers who bought), and the note says why the MRR columns are empty.
    for column in ("revenue", "buyers", "repeat_buyers", "repeat_purchase_rate"):
        assert seg[column].isna().all(), column
    assert seg["mrr_note"].str.startswith("no revenue data").all()
    summary = {"customers_scored": 4, "bands": {"high": 1}, "expected_churners": 1.2}
    headline = headline_of(summary, seg, None)
    assert headline.revenue_at_risk is None
    inputs = ReportInputs(
        as_of="2024-04-01", headline=headline, probabilities=NOW["churn_probability"].to_numpy(),
        bands=NOW["risk_band"].to_numpy(), riskiest=pd.DataFrame(), segments=seg,
    )  # fmt: skip
    assert "not measured: the data has no revenue rows" in headline_cards(inputs)
