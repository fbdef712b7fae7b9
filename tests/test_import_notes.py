"""The import says which mapped columns no model feature reads: a shop's voucher code and a
ticket's category were accepted and kept, and nothing said the model never saw them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from churn.cli import app
from ingest.importer import run_import
from ingest.mapping import load_mapping

MAPPING = """
[features]
customer_attributes = ["kanal"]

[customers]
source = "customers.csv"
[customers.columns]
customer_id = "kunden_nr"
signup_at = { column = "registriert", format = "%d.%m.%Y" }
kanal = "kanal"
newsletter = "newsletter"

[activity]
name = "orders"
source = "orders.csv"
[activity.columns]
customer_id = "kunden_nr"
at = "bestellt_am"
event = { value = "purchase" }
order_id = "bestell_nr"

[revenue]
name = "orders"
source = "orders.csv"
[revenue.columns]
customer_id = "kunden_nr"
at = "bestellt_am"
amount = { column = "betrag", decimal = "," }
kind = { value = "order" }
order_id = "bestell_nr"
voucher = "gutschein"

[feedback]
name = "support"
source = "support.csv"
[feedback.columns]
customer_id = "kunden_nr"
at = "erstellt"
kind = { value = "ticket" }
ticket_id = "ticket"
category = "kategorie"
"""


def write_exports(root: Path) -> Path:
    raw = root / "raw"
    raw.mkdir()
    pd.DataFrame(
        {"kunden_nr": ["0001", "0002"], "registriert": ["31.01.2024", "01.02.2024"],
         "kanal": ["seo", "partner"], "newsletter": ["ja", "nein"]}
    ).to_csv(raw / "customers.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"kunden_nr": ["0001", "0002", "0001"], "bestell_nr": ["A1", "A2", "A3"],
         "bestellt_am": ["2024-02-03T12:00:00", "2024-02-04T18:30:00", "2024-03-01T19:00:00"],
         "betrag": ["12,50", "30,00", "8,90"], "gutschein": ["WELCOME", "", ""]}
    ).to_csv(raw / "orders.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"kunden_nr": ["0002"], "ticket": ["T9"], "erstellt": ["2024-02-05T09:00:00"],
         "kategorie": ["late_delivery"]}
    ).to_csv(raw / "support.csv", index=False)  # fmt: skip
    (root / "mapping.toml").write_text(MAPPING)
    return raw


def test_columns_no_feature_reads_are_named_with_how_to_use_them(tmp_path):
    raw = write_exports(tmp_path)
    tables, report = run_import(load_mapping(tmp_path / "mapping.toml"), raw)
    assert "voucher" in tables.revenue and "category" in tables.feedback  # kept, as before
    notes = " ".join(report.notes)
    assert "revenue column 'voucher' (source 'orders') is kept" in notes
    assert "feedback column 'category' (source 'support') is kept" in notes
    assert "map it into the `event` of an [[activity]] source" in notes
    assert "customers column 'newsletter' is a segment of the reports" in notes
    # ids (repeated-row checks) and declared attributes are no such columns
    for name in ("order_id", "ticket_id", "'kanal'"):
        assert name not in notes
    assert not report.warnings  # a note, not a problem of the data
    assert "## Notes" in report.to_markdown()


def test_times_without_a_zone_read_as_utc_are_noted_once_per_column(tmp_path):
    """A judge's NPS answers in Berlin time were imported as UTC without a word (1-2 hours
    off). Times of day without a zone, none declared: a note naming the declaration. Not for
    dates (a day is a day in UTC), declared zones, or times that carry their own zone."""
    raw = write_exports(tmp_path)
    _, report = run_import(load_mapping(tmp_path / "mapping.toml"), raw)
    naive = [n for n in report.notes if "carry no time zone" in n]
    assert sorted(n.split("'")[1] for n in naive) == ["orders", "orders", "support"]
    assert "column 'bestellt_am' (at)" in naive[0] and '("2024-02-03T12:00:00")' in naive[0]
    assert 'timezone = "Europe/Berlin"' in naive[0]
    assert not [n for n in report.notes if "'registriert'" in n]  # dates only
    pd.DataFrame(
        {"kunden_nr": ["0002"], "ticket": ["T9"], "erstellt": ["2024-02-05T09:00:00Z"],
         "kategorie": ["late_delivery"]}
    ).to_csv(raw / "support.csv", index=False)  # fmt: skip
    text = (tmp_path / "mapping.toml").read_text()
    (tmp_path / "mapping.toml").write_text(
        text.replace('at = "bestellt_am"', 'at = { column = "bestellt_am", timezone = "UTC" }')
    )
    _, report = run_import(load_mapping(tmp_path / "mapping.toml"), raw)
    assert not [n for n in report.notes if "carry no time zone" in n]


def test_the_import_command_prints_the_notes(tmp_path):
    raw = write_exports(tmp_path)
    result = CliRunner().invoke(
        app,
        ["import", "--mapping", str(tmp_path / "mapping.toml"), "--source", str(raw),
         "--out", str(tmp_path / "data")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: revenue column 'voucher'" in result.output
