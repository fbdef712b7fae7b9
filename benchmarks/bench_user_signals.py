"""Benchmark: what active users per account (activity.user_id) cost the features of one date.

    uv run python benchmarks/bench_user_signals.py [--customers 100000] [--events 5000000]

Builds a B2B-shaped activity table in memory (accounts with 1 to 8 users, events in time order
over a year), then measures, on the same rows:

* build_features for three observation dates without a user_id column (the baseline), with
  one (active users per window and their trend), and with a seats attribute too;
* the one-off array form (features.prepared.prepare), where the (customer, user) pairs are
  coded, with and without user_id;
* a hand-written DuckDB query counting distinct users per account in the same windows, over
  the same in-memory frame, and that its counts equal the project's.

Prints seconds per date and the ratios against the baseline and against DuckDB (target: the
user signals add at most half the baseline's per-date time). The exit status is 1 if the
counts disagree.
"""

from __future__ import annotations

import argparse
import sys
import time

import duckdb
import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import validate_tables
from features.prepared import prepare
from features.signals import build_features

DATES = ("2023-10-01", "2023-11-01", "2023-12-01")
WINDOWS = (7, 30, 90)


def make_tables(customers: int, events: int, seed: int = 0):
    """Accounts with 1-8 users each, events spread over 2023 in time order."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:07d}" for i in range(customers)], dtype=object)
    seats = rng.integers(1, 9, customers)
    cust = pd.DataFrame(
        {"customer_id": ids, "signup_at": pd.Timestamp("2023-01-01"), "seats": seats * 1.0}
    )
    owner = rng.integers(0, customers, events)
    user = owner * 8 + (rng.random(events) * seats[owner]).astype(np.int64)
    seconds = np.sort(rng.integers(0, 364 * 86_400, events))
    activity = pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(owner, ids),
            "at": pd.Timestamp("2023-01-02") + pd.to_timedelta(seconds, unit="s"),
            "event": pd.Categorical.from_codes(rng.integers(0, 5, events), list("abcde")),
            # dictionary-encoded, as features.io.load_tables reads it from Parquet
            "user_id": pd.Categorical(user.astype(str)),
        }
    )
    return cust, activity


def per_date(tables, config: FeatureConfig) -> tuple[float, pd.DataFrame]:
    build_features(tables, DATES[0], config)  # the array form, once
    start = time.perf_counter()
    for date in DATES:
        frame = build_features(tables, date, config)
    return (time.perf_counter() - start) / len(DATES), frame


def duckdb_users(activity: pd.DataFrame, date: str) -> tuple[float, pd.DataFrame]:
    con = duckdb.connect()
    con.register(
        "activity",
        activity.assign(customer_id=activity["customer_id"].astype(str)).rename(
            columns={"at": "ts"}
        ),
    )
    counts = ", ".join(
        f"count(DISTINCT user_id) FILTER (WHERE ts >= TIMESTAMP '{date}' - INTERVAL {w} DAY) "
        f"AS active_users_{w}d"
        for w in WINDOWS
    )
    query = (
        f"SELECT customer_id, {counts} FROM activity WHERE ts < TIMESTAMP '{date}' "
        "GROUP BY customer_id"
    )
    start = time.perf_counter()
    result = con.execute(query).df()
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    args = parser.parse_args()
    cust, activity = make_tables(args.customers, args.events)
    plain = validate_tables(customers=cust, activity=activity.drop(columns="user_id"))
    users = validate_tables(customers=cust, activity=activity)

    timings = {}
    for name, tables in (("without user_id", plain), ("with user_id", users)):
        fresh = validate_tables(customers=cust, activity=tables.activity.copy())
        start = time.perf_counter()
        prepare(fresh)
        timings[f"prepare, {name}"] = time.perf_counter() - start
    base, _ = per_date(plain, FeatureConfig())
    with_users, frame = per_date(users, FeatureConfig())
    with_seats, _ = per_date(users, FeatureConfig(seats_attribute="seats"))
    sql_seconds, sql = duckdb_users(activity, DATES[-1])

    ours = frame.set_index("customer_id")[[f"active_users_{w}d" for w in WINDOWS]]
    theirs = sql.set_index("customer_id").reindex(ours.index).fillna(0)
    agree = bool(np.array_equal(ours.to_numpy(), theirs[ours.columns].to_numpy(dtype=float)))

    print(f"{args.customers:,} accounts, {args.events:,} events, {len(DATES)} dates")
    for name, seconds in timings.items():
        print(f"  {name:32s} {seconds:7.3f} s (once)")
    rows = [
        ("features per date, no user_id", base),
        ("features per date, user_id", with_users),
        ("features per date, user_id + seats", with_seats),
        ("DuckDB distinct users per window", sql_seconds),
    ]
    for name, seconds in rows:
        print(f"  {name:36s} {seconds:7.3f} s  {seconds / base:5.2f}x the baseline")
    added = (with_users - base) / base
    print(f"  user signals add {added:+.0%} to a date's features (target: at most +50%)")
    print(f"  distinct users per window equal DuckDB's: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
