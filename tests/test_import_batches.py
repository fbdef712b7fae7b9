"""The importer checks each batch as it is read: problems spread over several batches are
reported together with their total counts, a customer id repeated in two batches is still a
duplicate, and the fast Arrow parsing of ISO 8601 text gives what the pandas path gives."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import ContractError
from features.types import parse_timestamps
from ingest.importer import run_import
from ingest.mapping import parse_mapping

MAPPING = {
    "customers": {
        "source": "crm.csv",
        "columns": {"customer_id": "id", "signup_at": "created"},
    },
    "activity": {
        "name": "events",
        "source": "events.csv",
        "columns": {
            "customer_id": "user",
            "at": "ts",
            "event": "name",
            "value": {"column": "qty", "type": "number"},
        },
    },
}


def _frames(customers: list[str], events: list[tuple[str, str, str]]) -> dict[str, pd.DataFrame]:
    crm = pd.DataFrame({"id": customers, "created": ["2024-01-01"] * len(customers)}, dtype="str")
    users, stamps, qty = zip(*events, strict=True)
    ev = pd.DataFrame(
        {"user": users, "ts": stamps, "name": ["login"] * len(events), "qty": qty}, dtype="str"
    )
    return {"crm.csv": crm, "events": ev}


def _run(frames: dict[str, pd.DataFrame], batch_rows: int = 2, **source_keys: str):
    raw = {k: dict(v) for k, v in MAPPING.items()}
    raw["activity"] = {**raw["activity"], **source_keys}
    return run_import(parse_mapping(raw, "m.toml"), ".", frames=frames, batch_rows=batch_rows)


def test_batches_give_the_same_tables_as_one_batch():
    frames = _frames(
        ["001", "002", "003"],
        [("001", f"2024-02-0{d}T10:00:00Z", str(d)) for d in range(1, 8)]
        + [("003", "2024-03-01T00:00:00+02:00", "1")],
    )
    small, small_report = _run(frames, batch_rows=2)
    whole, whole_report = _run(frames, batch_rows=1000)
    for name in ("customers", "activity", "feedback", "revenue"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(whole, name), obj=name)
    assert small.activity["at"].iloc[-1] == pd.Timestamp("2024-02-29T22:00:00")
    assert small_report.tables == whole_report.tables
    assert small_report.customers_without_activity == 1  # 002


def test_contract_problems_in_several_batches_are_counted_together():
    """Negative values in the first and the last batch: one error, 3 rows, the first example."""
    events = [("001", "2024-02-01T10:00:00Z", "1")] * 6
    events[1] = ("001", "2024-02-02T10:00:00Z", "-5")
    events[4] = ("001", "2024-02-03T10:00:00Z", "-6")
    events[5] = ("001", "2024-02-04T10:00:00Z", "-7")
    with pytest.raises(ContractError) as err:
        _run(_frames(["001"], events), batch_rows=2)
    text = str(err.value)
    assert "table 'activity'" in text and "source 'events'" in text and "m.toml" in text
    assert "column 'value'" in text and "negative values" in text and "(3 rows)" in text
    assert "'value': -5.0" in text  # the first offending row, as the contract sees it


def test_unknown_customers_in_several_batches_are_counted_or_dropped_in_total():
    events = [("001", "2024-02-01T10:00:00Z", "1")] * 5
    events[0] = ("999", "2024-02-01T10:00:00Z", "1")
    events[3] = ("998", "2024-02-01T10:00:00Z", "1")
    frames = _frames(["001"], events)
    with pytest.raises(ContractError, match="customers not in 'customers' \\(2 rows\\)") as err:
        _run(frames, batch_rows=2)
    assert "'customer_id': '999'" in str(err.value)
    tables, report = _run(frames, batch_rows=2, unknown_customers="drop")
    assert len(tables.activity) == 3
    events_report = report.sources[-1]
    assert events_report.dropped == {"customer not in the customers table": 2}
    assert (events_report.rows_read, events_report.rows_out) == (5, 3)


def test_a_customer_id_repeated_in_another_batch_is_a_duplicate():
    frames = _frames(["001", "002", "003", "001"], [("001", "2024-02-01T10:00:00Z", "1")])
    with pytest.raises(ContractError, match="duplicate customer id \\(1 rows repeat one\\)") as err:
        _run(frames, batch_rows=2)
    assert "m.toml" in str(err.value) and "'customer_id': '001'" in str(err.value)


ISO_TEXT = st.builds(
    lambda day, h, m, s, frac, zone: (
        f"2023-{day[0]:02d}-{day[1]:02d}"
        + (f"T{h:02d}:{m:02d}:{s:02d}{frac}{zone}" if h is not None else "")
    ),
    st.tuples(st.integers(1, 12), st.integers(1, 31)),
    st.one_of(st.none(), st.integers(0, 23)),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".5", ".123456", ".123456789"]),
    st.sampled_from(["", "Z", "+02:00", "-0530", " ", "UTC"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(ISO_TEXT, st.just(""), st.none()), min_size=1, max_size=6))
def test_arrow_iso_parsing_agrees_with_the_pandas_path(values):
    """Text in pandas' Arrow str dtype goes through Arrow's cast; the same values as Python
    objects go through pandas: same times, or the same problems (impossible dates such as
    02-30, mixed zones, a 'UTC' suffix)."""
    fast, fast_problems = parse_timestamps(pd.Series(values, dtype="str"), "at")
    slow, slow_problems = parse_timestamps(pd.Series(values, dtype="object"), "at")
    assert [(p.problem, p.rows, p.examples) for p in fast_problems] == [
        (p.problem, p.rows, p.examples) for p in slow_problems
    ]
    pd.testing.assert_series_equal(fast, slow)
