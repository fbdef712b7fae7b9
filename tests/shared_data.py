"""The real public data beside the project (../shared/data, see its README), and the mark that
skips a test when a data set is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONLINE_RETAIL = SHARED_DATA / "online_retail" / "online_retail.parquet"

needs_online_retail = pytest.mark.skipif(
    not ONLINE_RETAIL.exists(), reason="../shared/data/online_retail is not present"
)
