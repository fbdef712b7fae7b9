"""The backtest benchmark's CDNOW reader and mapping on a few lines shaped like the public file
(whitespace-aligned, no header, zero-padded ids, yyyymmdd dates)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_backtest

from ingest.importer import run_import
from ingest.mapping import load_mapping

LINES = """\
 00001 19970101  1   11.77
 00002 19970112  1   12.00
 00002 19970112  5   77.00
 00002 19970326  2   20.76
 00010 19970301  3    0.00
"""


@pytest.mark.parametrize("header", ["", "customer_id date number_of_cds dollar_value\n"])
def test_cdnow_lines_map_onto_the_contract_with_their_ids_and_days(tmp_path, header):
    """The original file (no header) and the lifetimes package's copy (a header line)."""
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(header + LINES)
    raw = bench_backtest.read_cdnow(path)
    tables, report = run_import(
        load_mapping(bench_backtest.CDNOW_MAPPING), ".", frames={"purchases": raw}
    )
    customers = tables.customers.set_index("customer_id")
    assert list(customers.index) == ["00001", "00002", "00010"]  # leading zeros kept
    assert customers.loc["00002", "signup_at"] == pd.Timestamp("1997-01-12")
    activity = tables.activity
    assert len(activity) == 5 and set(activity["event"]) == {"purchase"}
    assert activity.loc[activity["customer_id"] == "00002", "value"].tolist() == [1, 5, 2]
    assert tables.revenue["amount"].sum() == pytest.approx(121.53)
    assert report.sources[0].rows_read == 5


def test_a_cdnow_file_with_other_columns_is_refused_with_its_first_row(tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(" 00001 19970101 1\n")
    with pytest.raises(ValueError, match=r"expected 4 columns .* found 3; first row: \['00001'"):
        bench_backtest.read_cdnow(path)
