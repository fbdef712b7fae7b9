"""Command-line options shared by the churn commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.config import DATA_CONFIG_FILE

# Text, not Path: with --engine spark the folder may be a cluster URI (hdfs://, s3a://), whose
# double slash a Path would fold.
DataUri = Annotated[
    str,
    typer.Option(
        "--data",
        help="Folder with the contract's tables (Parquet or CSV; --engine spark: Parquet, "
        "local or a cluster URI).",
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", help=f"TOML/JSON configuration; default: DATA/{DATA_CONFIG_FILE} if present."
    ),
]


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="pandas (one machine) or spark (local[*] here, the cluster under spark-submit).",
    ),
]
BucketsOption = Annotated[
    int | None,
    typer.Option(
        "--buckets",
        min=1,
        help="--engine spark: customer buckets, each processed whole by one task (default: 2 per core).",
    ),
]
EventsOption = Annotated[
    str | None,
    typer.Option(help="Qualifying activity events, comma separated (default: config, else all)."),
]
