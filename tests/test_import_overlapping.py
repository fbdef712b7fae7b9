"""Overlapping exports: the same rows in two files of one table (a "last 90 days" export taken
every month; two yearly sheets that meet in the same month). Rows that repeat a
row of an earlier file or source exactly are dropped and counted, so that they count once;
repeats inside one file are kept (two identical line items can both be real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.importer import REPEATED_ROW, run_import
from ingest.mapping import MappingError, load_mapping

CUSTOMERS = """
[customers]
source = "crm.csv"
[customers.columns]
customer_id = "id"
signup_at = "created"
"""

CRM = "id,created\n001,2024-01-01\n002,2024-01-02\n"

JANUARY = """user,ts,name
001,2024-01-10T10:00:00Z,login
001,2024-01-10T10:00:00Z,login
002,2024-01-30T09:00:00Z,login
002,2024-01-31T09:00:00Z,export
"""
# The February export starts two days early: the last two January rows again.
FEBRUARY = """user,ts,name
002,2024-01-30T09:00:00Z,login
002,2024-01-31T09:00:00Z,export
001,2024-02-03T11:00:00Z,login
"""


def _import(tmp_path: Path, mapping: str, files: dict[str, str]):
    for name, text in {"crm.csv": CRM, **files}.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "mapping.toml").write_text(CUSTOMERS + mapping)
    return run_import(load_mapping(tmp_path / "mapping.toml"), tmp_path)


ONE_GLOB = """
[activity]
name = "product events"
source = "events_*.csv"
[activity.columns]
customer_id = "user"
at = "ts"
event = "name"
"""


def test_rows_of_an_overlapping_monthly_export_count_once(tmp_path):
    files = {"events_2024-01.csv": JANUARY, "events_2024-02.csv": FEBRUARY}
    tables, report = _import(tmp_path, ONE_GLOB, files)
    events = tables.activity.sort_values("at")
    assert events["customer_id"].tolist() == ["001", "001", "002", "002", "001"]
    (source,) = [s for s in report.sources if s.table == "activity"]
    assert source.rows_read == 7 and source.dropped == {REPEATED_ROW: 2}
    (warning,) = report.warnings
    assert "activity source 'product events': 2 rows of 'events_2024-02.csv'" in warning
    assert "overlapping exports" in warning


def test_identical_rows_inside_one_file_are_kept(tmp_path):
    tables, report = _import(tmp_path, ONE_GLOB, {"events_2024-01.csv": JANUARY})
    assert len(tables.activity) == 4  # 001's two logins at 10:00 both stay
    assert report.warnings == [] and not any(s.dropped for s in report.sources)


TICKETS = """
[feedback]
name = "zendesk"
source = "tickets.csv"
[feedback.columns]
customer_id = "requester"
at = "created_at"
kind = { value = "ticket" }
status = "status"
resolved_at = "solved_at"
"""


def test_tickets_repeated_inside_one_export_are_kept_and_warned_about(tmp_path):
    """A helpdesk export listed tickets twice: kept (within one file two equal rows can be
    real), but "2 support tickets in the last 30 days" would then be one ticket said twice,
    so the import says how many rows repeat and shows one; events are left alone."""
    tickets = (
        "requester,created_at,status,solved_at\n"
        "001,2024-01-12T08:00:00Z,closed,2024-01-13T08:00:00Z\n"
        "001,2024-01-12T08:00:00Z,closed,2024-01-13T08:00:00Z\n"
        "002,2024-01-15T08:00:00Z,open,\n"
        "002,2024-01-16T08:00:00Z,open,\n"
    )
    files = {"events_2024-01.csv": JANUARY, "tickets.csv": tickets}
    tables, report = _import(tmp_path, ONE_GLOB + TICKETS, files)
    assert len(tables.feedback) == 4 and len(tables.activity) == 4
    assert not any(s.dropped for s in report.sources)
    (warning,) = report.warnings
    assert warning.startswith("feedback source 'zendesk': 1 row repeats (25.0%) another row")
    assert "customer_id=001, at=2024-01-12 08:00:00" in warning
    assert "remove the copies before importing" in warning
    once = tickets.replace("001,2024-01-12T08:00:00Z,closed,2024-01-13T08:00:00Z\n", "", 1)
    assert _import(tmp_path, ONE_GLOB + TICKETS, {**files, "tickets.csv": once})[1].warnings == []


def test_two_sources_of_one_table_that_overlap_count_once(tmp_path):
    two = ONE_GLOB.replace("[activity]", "[[activity]]").replace(
        '"events_*.csv"', '"events_2024-01.csv"'
    ) + ONE_GLOB.replace("[activity]", "[[activity]]").replace(
        '"events_*.csv"', '"events_2024-02.csv"'
    ).replace("product events", "february")
    files = {"events_2024-01.csv": JANUARY, "events_2024-02.csv": FEBRUARY}
    tables, report = _import(tmp_path, two, files)
    assert len(tables.activity) == 5
    assert [s.dropped for s in report.sources if s.table == "activity"] == [{}, {REPEATED_ROW: 2}]


def test_order_lines_in_two_overlapping_files_are_not_summed_twice(tmp_path):
    lines = """invoice,customer,at,qty,price
A1,001,2024-01-30T10:00:00Z,2,1.50
A1,001,2024-01-30T10:00:00Z,2,1.50
A1,001,2024-01-30T10:00:00Z,1,4.00
"""
    later = """invoice,customer,at,qty,price
A1,001,2024-01-30T10:00:00Z,2,1.50
A1,001,2024-01-30T10:00:00Z,2,1.50
A1,001,2024-01-30T10:00:00Z,1,4.00
A2,002,2024-02-02T10:00:00Z,1,9.99
"""
    mapping = """
[activity]
source = "orders_*.csv"
[activity.columns]
customer_id = "customer"
at = "at"
event = { value = "purchase" }

[revenue]
source = "orders_*.csv"
[revenue.columns]
invoice = "invoice"
customer_id = "customer"
at = "at"
amount = { column = "qty", times = "price" }
[revenue.aggregate]
by = ["invoice", "customer_id", "at"]
amount = "sum"
"""
    tables, report = _import(tmp_path, mapping, {"orders_1.csv": lines, "orders_2.csv": later})
    amounts = tables.revenue.set_index("customer_id")["amount"]
    assert amounts["001"] == 10.0  # 2 x 1.50 twice (both lines are real) + 4.00, once
    assert amounts["002"] == 9.99
    revenue = next(s for s in report.sources if s.table == "revenue")
    assert revenue.dropped == {REPEATED_ROW: 3}


def test_sources_of_other_layouts_and_declared_repeats_are_kept(tmp_path):
    # Web and app visits from two systems, by day: the same customer-day in both is two
    # visits, not an overlap. The sources read different columns: not compared.
    web = "user,day\n001,2024-01-10\n"
    app = "account,date,platform\n001,2024-01-10,ios\n"
    mapping = """
[[activity]]
source = "web.csv"
[activity.columns]
customer_id = "user"
at = "day"
event = { value = "visit" }

[[activity]]
source = "app.csv"
[activity.columns]
customer_id = "account"
at = "date"
event = { value = "visit" }
"""
    tables, report = _import(tmp_path, mapping, {"web.csv": web, "app.csv": app})
    assert len(tables.activity) == 2 and report.warnings == []
    # One layout in two files, declared as partitions whose equal rows are real.
    kept = ONE_GLOB.replace('source = "events_*.csv"', 'source = "events_*.csv"\nrepeats = "keep"')
    files = {"events_2024-01.csv": JANUARY, "events_2024-02.csv": FEBRUARY}
    tables, report = _import(tmp_path, kept, files)
    assert len(tables.activity) == 7 and report.warnings == []


def test_repeats_is_drop_or_keep(tmp_path):
    bad = ONE_GLOB.replace('source = "events_*.csv"', 'source = "events_*.csv"\nrepeats = "no"')
    with pytest.raises(MappingError, match="repeats must be 'drop' or 'keep'"):
        _import(tmp_path, bad, {"events_2024-01.csv": JANUARY})


def test_a_repeat_of_any_earlier_file_is_found_among_many_daily_files(tmp_path):
    days = {
        f"events_2024-01-{d:02d}.csv": f"user,ts,name\n00{1 + d % 2},2024-01-{d:02d}T0{h}:00:00Z,login\n"
        for d in range(1, 8)
        for h in [d % 3]
    }
    # A re-run of the export of the 1st and the 3rd, saved under a later name.
    days["events_2024-01-99.csv"] = (
        "user,ts,name\n002,2024-01-01T01:00:00Z,login\n002,2024-01-03T00:00:00Z,login\n"
        "001,2024-01-31T00:00:00Z,login\n"
    )
    tables, report = _import(tmp_path, ONE_GLOB, days)
    assert len(tables.activity) == 8  # 7 days and the one new row
    (warning,) = report.warnings
    assert "2 rows of 'events_2024-01-99.csv'" in warning


def test_rows_with_nested_values_are_compared_by_their_text(tmp_path):
    # JSON lines with a nested object kept as it is: compared, not a crash.
    line = '{"user": "001", "ts": "2024-01-10T10:00:00Z", "name": "login", "props": {"a": [1, 2]}}'
    other = line.replace('"a": [1, 2]', '"a": [3]')
    mapping = (
        ONE_GLOB.replace('"events_*.csv"', '"events_*.jsonl"')
        + 'props = { column = "props", type = "as_is" }\n'
    )
    files = {"events_1.jsonl": line + "\n", "events_2.jsonl": line + "\n" + other + "\n"}
    tables, report = _import(tmp_path, mapping, files)
    assert len(tables.activity) == 2  # the repeat of the first line dropped, the other kept
    assert "1 row of 'events_2.jsonl' repeats a row" in report.warnings[0]


def test_files_of_one_name_in_two_folders_are_two_parts(tmp_path):
    (tmp_path / "2024-01").mkdir()
    (tmp_path / "2024-02").mkdir()
    files = {"2024-01/events.csv": JANUARY, "2024-02/events.csv": FEBRUARY}
    mapping = ONE_GLOB.replace('"events_*.csv"', '"*/events.csv"')
    tables, report = _import(tmp_path, mapping, files)
    assert len(tables.activity) == 5
    assert "2 rows of '2024-02/events.csv' repeat rows" in report.warnings[0]
