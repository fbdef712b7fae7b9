"""A product's event log as the only export (like Sparkify's or a Segment dump): the customers,
their signup and their cancellation all come from the one log, the cancellation being the event
that says so (`when` on a column: a value only on the rows where a condition holds)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.contract import ContractError
from ingest.importer import run_import
from ingest.mapping import MappingError, load_mapping
from ingest.sources import SourceError

MAPPING = """
[features.churn]
mode = "contractual"
horizon_days = 30

[customers]
source = "events.jsonl"
drop = [{ column = "userId", missing = true, reason = "logged-out page views" }]

[customers.columns]
customer_id = "userId"
signup_at = { column = "registration", unit = "ms" }
churned_at = { column = "ts", unit = "ms", when = { column = "page", equals = "Cancellation Confirmation" } }
level = "level"

[customers.aggregate]
by = ["customer_id"]
signup_at = "min"
churned_at = "min"
level = "last"

[activity]
source = "events.jsonl"
drop = [{ column = "userId", missing = true, reason = "logged-out page views" }]

[activity.columns]
customer_id = "userId"
at = { column = "ts", unit = "ms" }
event = { column = "page", map = { NextSong = "song", "Thumbs Down" = "thumbs_down", "Cancellation Confirmation" = "cancellation" }, unmapped = "keep" }
"""

MS = 1_000
REGISTERED = 1_530_000_000 * MS  # 2018-06-26
CANCELLED = 1_539_000_000 * MS  # 2018-10-08 12:00 UTC


def _event(user: str | None, ts: int, page: str, level: str = "free") -> dict:
    return {"userId": user, "ts": ts, "page": page, "level": level, "registration": REGISTERED}


def _log(tmp_path: Path, events: list[dict], mapping: str = MAPPING) -> Path:
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    path = tmp_path / "mapping.toml"
    path.write_text(mapping)
    return path


EVENTS = [
    _event("0042", CANCELLED - 86_400 * MS, "NextSong"),
    _event("0042", CANCELLED - 3_600 * MS, "Thumbs Down", "paid"),
    _event("0042", CANCELLED, "Cancellation Confirmation", "paid"),
    _event("0043", CANCELLED - 86_400 * MS, "NextSong"),
    _event("0043", CANCELLED + 86_400 * MS, "Home", "paid"),
    _event(None, CANCELLED, "Home"),  # logged out: no customer
]


def test_the_cancellation_date_comes_from_the_event_that_says_so(tmp_path):
    tables, report = run_import(load_mapping(_log(tmp_path, EVENTS)), tmp_path)
    customers = tables.customers.set_index("customer_id")
    assert list(customers.index) == ["0042", "0043"]  # ids as written
    assert customers.loc["0042", "churned_at"] == pd.Timestamp("2018-10-08 12:00")
    assert pd.isna(customers.loc["0043", "churned_at"])  # never cancelled: still a customer
    assert (customers["signup_at"] == pd.Timestamp("2018-06-26 08:00")).all()
    assert customers.loc["0042", "level"] == "paid"
    events = tables.activity.groupby("customer_id")["event"].apply(list).to_dict()
    assert events["0042"] == ["song", "thumbs_down", "cancellation"]
    assert events["0043"] == ["song", "Home"]  # kept as named: unmapped = "keep"
    dropped = {s.table: s.dropped for s in report.sources}
    assert dropped == {t: {"logged-out page views": 1} for t in ("customers", "activity")}


def test_an_empty_text_id_is_missing_like_a_null_one(tmp_path):
    """Sparkify's logged-out rows have userId "" (not null): `missing = true` drops them too,
    as the README says of an empty value; they had reached the customers table."""
    blank = [*EVENTS[:-1], _event("", CANCELLED, "Home"), _event("  ", CANCELLED, "Home")]
    tables, report = run_import(load_mapping(_log(tmp_path, blank)), tmp_path)
    assert list(tables.customers["customer_id"]) == ["0042", "0043"]
    dropped = {s.table: s.dropped for s in report.sources}
    assert dropped == {t: {"logged-out page views": 2} for t in ("customers", "activity")}


def test_the_first_of_two_cancellations_is_the_churn_date_with_min(tmp_path):
    again = _event("0042", CANCELLED + 7 * 86_400 * MS, "Cancellation Confirmation")
    tables, _ = run_import(load_mapping(_log(tmp_path, [*EVENTS, again])), tmp_path)
    churned = tables.customers.set_index("customer_id")["churned_at"]
    assert churned["0042"] == pd.Timestamp("2018-10-08 12:00")


def test_a_bad_value_where_the_condition_holds_is_an_error_naming_the_row(tmp_path):
    broken = [*EVENTS[:2], {**EVENTS[2], "ts": "yesterday"}]
    with pytest.raises(ContractError) as err:
        run_import(load_mapping(_log(tmp_path, broken)), tmp_path)
    text = str(err.value)
    assert "customers" in text and "ts (as churned_at)" in text and "yesterday" in text


def test_when_is_checked_like_any_condition(tmp_path):
    typo = MAPPING.replace('equals = "Cancellation Confirmation"', 'equal = "Cancel"')
    with pytest.raises(MappingError, match=r"churned_at' when.*'equal'"):
        load_mapping(_log(tmp_path, EVENTS, typo))
    absent = MAPPING.replace('when = { column = "page"', 'when = { column = "pagename"')
    with pytest.raises(ContractError, match="pagename"):
        run_import(load_mapping(_log(tmp_path, EVENTS, absent)), tmp_path)


def test_a_key_with_numbers_on_some_lines_and_text_on_others_is_read_as_declared(tmp_path):
    # Logs written by two versions of a tracker: ts a number here, a quoted number there.
    mixed = [*EVENTS[:3], {**EVENTS[3], "ts": str(EVENTS[3]["ts"])}, *EVENTS[4:]]
    tables, _ = run_import(load_mapping(_log(tmp_path, mixed)), tmp_path)
    (tmp_path / "typed").mkdir()
    typed = tmp_path / "typed"
    expected, _ = run_import(load_mapping(_log(typed, EVENTS)), typed)
    pd.testing.assert_frame_equal(tables.activity, expected.activity)
    pd.testing.assert_frame_equal(tables.customers, expected.customers)


def test_a_line_that_is_not_json_is_named_with_its_number(tmp_path):
    path = _log(tmp_path, EVENTS)
    text = (tmp_path / "events.jsonl").read_text().splitlines()
    text.insert(3, '{"userId": "0044", "ts": 1539000000000, "page": "Home"')  # cut short
    (tmp_path / "events.jsonl").write_text("\n".join(text) + "\n")
    with pytest.raises(SourceError, match=r"'events\.jsonl' is not valid JSON lines.*row 3"):
        run_import(load_mapping(path), tmp_path)


def test_text_after_the_first_blocks_continues_from_the_line_pyarrow_stopped_at(
    tmp_path, monkeypatch
):
    import ingest.sources

    monkeypatch.setattr(ingest.sources, "BLOCK_BYTES", 256)  # a few lines per block
    songs = [_event("0043", CANCELLED - k * 60 * MS, "NextSong") for k in range(40, 0, -1)]
    late = [{**e, "ts": str(e["ts"])} for e in EVENTS[:3]]  # quoted by a later tracker
    tables, _ = run_import(load_mapping(_log(tmp_path, [*songs, *late])), tmp_path)
    counts = tables.activity["customer_id"].value_counts()
    assert counts.to_dict() == {"0043": 40, "0042": 3}  # every line once, none skipped
    churned = tables.customers.set_index("customer_id")["churned_at"]
    assert churned["0042"] == pd.Timestamp("2018-10-08 12:00")


NESTED = """
[customers]
source = "events.jsonl"
[customers.columns]
customer_id = "groups.company_id"
signup_at = { column = "event_time", format = "%Y-%m-%d %H:%M:%S.%f" }
[customers.aggregate]
by = ["customer_id"]
signup_at = "min"

[activity]
source = "events.jsonl"
[activity.columns]
customer_id = "groups.company_id"
at = { column = "event_time", format = "%Y-%m-%d %H:%M:%S.%f" }
event = "event_type"
user_id = "user_id"
"""


@pytest.mark.parametrize("mixed", [False, True])
def test_a_nested_key_is_named_by_its_path(tmp_path, mixed):
    """Amplitude's B2B export keeps the account in a nested object ("groups": {"company_id":
    "007"}): the mapping names it "groups.company_id", read by pyarrow and, where a key's
    values mix JSON types, line by line; the id keeps its leading zeros."""
    events = [
        {"user_id": "u1", "event_type": "login", "event_time": "2024-03-05 14:02:11.123456",
         "groups": {"company_id": "007", "plan": {"name": "growth"}}},
        {"user_id": "u2", "event_type": "report", "event_time": "2024-03-06 09:00:00.000001",
         "groups": {"company_id": "008", "plan": {"name": "starter"}}},
        {"user_id": "u1", "event_type": "export", "event_time": "2024-03-07 10:30:00.5",
         "groups": {"company_id": "007", "plan": {"name": "growth"}}},
    ]  # fmt: skip
    if mixed:  # a later tracker writes the plan as text: read line by line from there
        events[2]["groups"]["plan"] = "growth"
    tables, _ = run_import(load_mapping(_log(tmp_path, events, NESTED)), tmp_path)
    assert tables.activity["customer_id"].tolist() == ["007", "008", "007"]
    assert tables.customers["customer_id"].tolist() == ["007", "008"]
    assert tables.activity["user_id"].tolist() == ["u1", "u2", "u1"]
    missing = NESTED.replace('event = "event_type"', 'event = "groups.kind"')
    (tmp_path / "m2").mkdir()
    with pytest.raises(
        ContractError, match=r"'groups\.kind' is not in the source \(it has: .*'groups\.company_id'"
    ):
        run_import(load_mapping(_log(tmp_path / "m2", events, missing)), tmp_path / "m2")


@pytest.mark.parametrize("nulls", [False, True], ids=["booleans", "booleans_and_nulls"])
def test_json_booleans_match_true_and_false_in_maps_and_conditions(tmp_path, nulls):
    """A booking app's `"attended": true` is matched by "true" and "false", as the file writes
    them, in a map and in a case's `in` (it had stayed a boolean that no text key matched, and
    the error listed True and False, which did not match either)."""
    source = tmp_path / "exports"
    source.mkdir()
    (source / "members.csv").write_text("id,signup\n001,2024-01-01\n002,2024-01-02\n")
    values = [True, False, None] if nulls else [True, False]
    rows = [
        {"member_id": f"00{1 + i % 2}", "booked_at": 1717000000 + 3600 * i,
         "attended": values[i % len(values)]}
        for i in range(6)
    ]  # fmt: skip
    (source / "bookings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held = sum(r["attended"] is not None for r in rows)
    head = """
[features.churn]
mode = "non_contractual"
[customers]
source = "members.csv"
[customers.columns]
customer_id = "id"
signup_at = "signup"
[activity]
source = "bookings.jsonl"
drop = [{ column = "attended", missing = true, reason = "booking not held yet" }]
[activity.columns]
customer_id = "member_id"
at = { column = "booked_at", unit = "s" }
"""
    by_map = 'event = { column = "attended", map = { "true" = "visit", "false" = "no_show" } }'
    by_cases = (
        'event = { cases = [{ when = { column = "attended", in = ["true"] }, value = "visit" }], '
        'default = "no_show" }'
    )
    for i, event in enumerate((by_map, by_cases)):
        path = tmp_path / f"mapping{i}.toml"
        path.write_text(head + event + "\n")
        tables, report = run_import(load_mapping(path), source)
        expected = [
            "visit" if r["attended"] else "no_show" for r in rows if r["attended"] is not None
        ]
        assert tables.activity["event"].tolist() == expected, event
        activity = next(s for s in report.sources if s.table == "activity")
        assert activity.rows_out == held and activity.rows_dropped == len(rows) - held
    # cases without a default: the rows no case holds for are an error that says so
    path = tmp_path / "mapping_no_default.toml"
    path.write_text(head + by_cases.replace(', default = "no_show"', "") + "\n")
    with pytest.raises(ContractError) as err:
        run_import(load_mapping(path), source)
    assert "no case holds for these rows (the cases read 'attended') and there is no default" in (
        str(err.value)
    )
