"""The importer checks each batch as it is read: problems spread over several batches are
reported together with their total counts, a customer id repeated in two batches is still a
duplicate, and the fast Arrow parsing of ISO 8601 text gives what the pandas path gives."""

from __future__ import annotations

import threading

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contract import ContractError
from features.io import load_tables
from features.types import parse_timestamps
from ingest.importer import import_with_mapping, run_import, write_import
from ingest.mapping import parse_mapping
from ingest.sources import SourceError, prefetched

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


def _write(frames, out, batch_rows: int = 2, **source_keys: str):
    raw = {k: dict(v) for k, v in MAPPING.items()}
    raw["activity"] = {**raw["activity"], **source_keys}
    return import_with_mapping(
        parse_mapping(raw, "m.toml"), ".", out, frames=frames, batch_rows=batch_rows
    )


def _read_folder(folder) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def test_written_batch_by_batch_the_output_is_what_the_whole_tables_give(tmp_path):
    """import_with_mapping streams each checked batch to Parquet (several row groups): the
    files and the report equal those of run_import's tables written whole."""
    frames = _frames(
        ["001", "002", "003"],
        [("001", f"2024-02-0{d}T10:00:00Z", str(d)) for d in range(1, 8)]
        + [("003", "2024-03-01T00:00:00+02:00", "1")],
    )
    streamed = _write(frames, tmp_path / "streamed", batch_rows=2)
    tables, whole = _run(frames, batch_rows=1000)
    write_import(tables, whole, parse_mapping(MAPPING, "m.toml"), tmp_path / "whole")
    got, want = _read_folder(tmp_path / "streamed"), _read_folder(tmp_path / "whole")
    assert list(got) == list(want) == ["activity.parquet", "customers.parquet"]
    # activity's customer ids are written dictionary-encoded from the id lookup (the same
    # values; read as a categorical, as features.io.read_table reads every such column)
    assert isinstance(got["activity.parquet"]["customer_id"].dtype, pd.CategoricalDtype)
    got["activity.parquet"]["customer_id"] = got["activity.parquet"]["customer_id"].astype("str")
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)
    assert pq.ParquetFile(tmp_path / "streamed" / "activity.parquet").num_row_groups == 4
    assert streamed.to_dict() == whole.to_dict()
    assert streamed.tables["activity"] == {
        "rows": 8,
        "customers": 2,
        "from": "2024-02-01T10:00:00",
        "to": "2024-02-29T22:00:00",
    }
    assert streamed.example_customers_without_activity == ["002"]
    loaded, reference = load_tables(tmp_path / "streamed"), load_tables(tmp_path / "whole")
    for name in ("customers", "activity"):  # categories too, in the same order
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(reference, name))


def test_a_problem_in_a_late_batch_leaves_the_previous_output_and_names_its_row(tmp_path):
    """Earlier batches were already written when the last one fails: the error names the
    late row, and the output folder keeps what it held before (no temporary folder left)."""
    events = [("001", f"2024-02-0{d}T10:00:00Z", "1") for d in range(1, 8)]
    events[6] = ("001", "2024-02-07T10:00:00Z", "-9")
    out = tmp_path / "out"
    out.mkdir()
    (out / "before.txt").write_text("previous output")
    with pytest.raises(ContractError) as err:
        _write(_frames(["001"], events), out, batch_rows=2)
    text = str(err.value)
    assert "negative values" in text and "(1 row)" in text and "'value': -9.0" in text
    assert "'at': '2024-02-07T10:00:00'" in text  # the 7th row, in the 4th batch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["before.txt"]


def test_unknown_customers_in_a_late_batch_are_reported_with_their_row_when_streaming(tmp_path):
    events = [("001", "2024-02-01T10:00:00Z", "1")] * 5
    events[4] = ("777", "2024-02-05T10:00:00Z", "1")
    with pytest.raises(ContractError, match="customers not in 'customers' \\(1 row\\)") as err:
        _write(_frames(["001"], events), tmp_path / "out", batch_rows=2)
    assert "'customer_id': '777'" in str(err.value)
    assert not (tmp_path / "out").exists()
    report = _write(_frames(["001"], events), tmp_path / "out", unknown_customers="drop")
    assert report.sources[-1].rows_out == 4
    assert len(pd.read_parquet(tmp_path / "out" / "activity.parquet")) == 4


def test_a_sorted_source_keeps_each_rows_customer_when_written(tmp_path):
    """A sorted source is written whole after its sort: each row's customer (written from the
    id lookup's positions, which the sort reorders too) is still the row's own."""
    events = [
        ("001", "2024-02-05T10:00:00Z", "1"),
        ("001", "2024-02-04T10:00:00Z", "2"),
        ("002", "2024-02-03T10:00:00Z", "3"),
        ("003", "2024-02-02T10:00:00Z", "4"),
        ("003", "2024-02-01T10:00:00Z", "5"),
    ]
    frames = _frames(["001", "002", "003"], events)
    report = _write(frames, tmp_path / "out", batch_rows=2, sort=["at"])
    tables, _ = _run(frames, batch_rows=2, sort=["at"])
    assert report.tables["activity"]["customers"] == 3
    assert report.customers_without_activity == 0
    got = pd.read_parquet(tmp_path / "out" / "activity.parquet")
    assert got["customer_id"].astype("str").tolist() == ["003", "003", "002", "001", "001"]
    assert got["value"].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]
    pd.testing.assert_frame_equal(got.astype({"customer_id": "str"}), tables.activity)


def test_prefetched_batches_come_in_order_and_a_producer_error_after_them():
    def produce():
        yield from range(5)
        raise SourceError("the source broke after 5 batches")

    got = []
    with pytest.raises(SourceError, match="after 5 batches"):
        for item in prefetched(produce()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_prefetched_stops_and_closes_its_source_when_the_consumer_stops_early():
    closed = threading.Event()

    def produce():
        try:
            yield from range(1_000_000)
        finally:
            closed.set()

    reader = prefetched(produce())
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()
    assert closed.is_set()  # close() returns once the producer has stopped


@pytest.mark.parametrize("block", [7, 16, 31, 64, 1 << 20])
def test_csv_blocks_cut_at_line_ends_give_the_rows_of_one_read(monkeypatch, block):
    """csv_batches cuts the file into blocks at line ends (a line longer than a block, CRLF,
    a byte-order mark, a quoted value over three lines with escaped quotes, a last line
    without a newline): the rows are those of one read."""
    import io

    import pyarrow as pa

    from ingest import sources

    raw = (
        b'\xef\xbb\xbfid,ts,note\r\n007,2024-01-01,"a, quoted"\r\n008,,\r\n\r\n'
        + b"009,2024-01-03,"
        + b"x" * 40
        + b'\r\n010,2024-01-04,NA\r\n011,2024-01-05,"two\nlines, ""quoted"" \r\nthree"\n'
        + b"012,2024-01-06,last"
    )
    monkeypatch.setattr(sources, "BLOCK_BYTES", block)
    batches = list(sources.csv_batches(io.BufferedReader(io.BytesIO(raw)), ",", "t.csv"))
    got = pa.Table.from_batches(batches).to_pylist()
    assert got == [
        {"id": "007", "ts": "2024-01-01", "note": "a, quoted"},
        {"id": "008", "ts": None, "note": None},
        {"id": "009", "ts": "2024-01-03", "note": "x" * 40},
        {"id": "010", "ts": "2024-01-04", "note": "NA"},
        {"id": "011", "ts": "2024-01-05", "note": 'two\nlines, "quoted" \r\nthree'},
        {"id": "012", "ts": "2024-01-06", "note": "last"},
    ]
    assert len(batches) >= 2 if block < len(raw) else len(batches) <= 2  # cut into blocks


@pytest.mark.parametrize("threaded", [True, False])
def test_background_writer_runs_calls_in_order_and_raises_their_error(threaded):
    """The Parquet writer's thread (or, on one core, the caller itself) runs the writes in
    order; a failed write is raised to the importing thread, and nothing runs after it."""
    from ingest.importer import _Background

    done: list[int] = []

    def write(i: int) -> None:
        if i == 3:
            raise OSError("No space left on device")
        done.append(i)

    background = _Background(threaded=threaded)
    with pytest.raises(OSError, match="No space left"):
        for i in range(10):
            background.submit(write, i)
        background.finish()
    background.finish(raise_error=False)
    assert done == [0, 1, 2]


def test_prefetched_on_one_core_reads_in_turn(monkeypatch):
    from ingest import sources

    monkeypatch.setattr(sources, "several_cores", lambda: False)
    before = threading.active_count()
    reader = sources.prefetched(iter(range(3)))
    assert next(reader) == 0 and threading.active_count() == before  # no reader thread
    assert list(reader) == [1, 2]


def test_only_text_columns_are_dictionary_encoded_in_the_output():
    import pyarrow as pa

    from ingest.importer import _dictionary_columns

    schema = pa.schema(
        [
            ("customer_id", pa.dictionary(pa.int32(), pa.string())),
            ("at", pa.timestamp("ns", tz="UTC")),
            ("event", pa.large_string()),
            ("value", pa.float64()),
        ]
    )
    assert _dictionary_columns(schema) == ["customer_id", "event"]
    assert _dictionary_columns(pa.schema([("amount", pa.float64())])) is False
