"""The `churn` command line: one entry point for data, features, training, scoring and metrics."""

from __future__ import annotations

import typer

app = typer.Typer(help="Customer-churn prediction: data, features, models, scores and retention metrics.", no_args_is_help=True)
