"""Benchmark: cohort retention over 10 million activity events, against two baselines.

    uv run python benchmarks/bench_retention.py [--events 10000000] [--customers 1000000]

Generates synthetic Tables with numpy (ids and event names categorical, as load_tables reads
them from Parquet), times retention.metrics.cohort_retention in several modes, and
times the same monthly n-day table with DuckDB SQL and with a plain pandas groupby, checking
that all three agree. Prints the figures and the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

# pandera imports pyspark when it is installed, which warns about pandas 3: noise in the figures
warnings.filterwarnings("ignore", message="PySpark does not yet fully support")

from features.contract import Tables  # noqa: E402
from retention.metrics import cohort_retention  # noqa: E402

NS_PER_DAY = 86_400 * 10**9


def synthetic_tables(n_customers: int, n_events: int, seed: int = 0) -> Tables:
    """Customers signing up over two years; events per customer skewed (a few heavy users) and
    spaced with a decaying activity, cut at the end of the third year."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2022-01-01", "ns").astype("int64")
    end = np.datetime64("2025-01-01", "ns").astype("int64")
    signup = start + rng.integers(0, 730 * NS_PER_DAY, n_customers)
    ids = pd.Index(np.char.add("c", np.arange(n_customers).astype("U7")), dtype="str")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_at": signup.view("datetime64[ns]"),
            "plan": pd.Categorical(
                rng.choice(["free", "pro", "team"], n_customers, p=[0.6, 0.3, 0.1])
            ),
        }
    )
    weight = rng.pareto(1.5, n_customers) + 0.1
    owner = rng.choice(n_customers, n_events, p=weight / weight.sum())
    at = signup[owner] + (rng.exponential(120.0, n_events) * NS_PER_DAY).astype("int64")
    at = np.minimum(at, end - 1)
    activity = pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(owner.astype("int32"), categories=ids),
            "at": at.view("datetime64[ns]"),
            "event": pd.Categorical.from_codes(
                rng.integers(0, 3, n_events).astype("int8"),
                categories=["login", "view", "purchase"],
            ),
        }
    )
    return Tables(customers=customers, activity=activity)


def timed(
    fn: Callable[[], object], repeat: int, warmup: bool = True
) -> tuple[float, float, object]:
    """Median wall and CPU seconds over `repeat` runs (after a warm-up run), and the result.

    CPU time (all threads of this process) is reported next to wall time because a shared
    machine makes wall time noisy; DuckDB uses several threads, numpy here uses one.
    """
    result = fn() if warmup else None
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


MONTHLY_SQL = """
WITH c AS (
    SELECT customer_id, year(signup_at) * 12 + month(signup_at) - 1 AS m0 FROM customers
),
e AS (
    SELECT a.customer_id, c.m0, year(a.at) * 12 + month(a.at) - 1 AS m
    FROM activity a JOIN c ON a.customer_id = c.customer_id
)
SELECT m0 AS cohort, m - m0 AS period, count(DISTINCT customer_id) AS active
FROM e WHERE m <= {last} AND m >= m0
GROUP BY ALL
"""


def duckdb_monthly(tables: Tables, last_month_ordinal: int) -> pd.DataFrame:
    """The monthly n-day table in SQL, straight over the pandas frames (string ids)."""
    import duckdb

    con = duckdb.connect()
    con.register("customers", tables.customers[["customer_id", "signup_at"]])
    con.register("activity", tables.activity[["customer_id", "at"]])
    df = con.execute(MONTHLY_SQL.format(last=last_month_ordinal)).df()
    con.close()
    return df


def duckdb_native(tables: Tables):
    """DuckDB at its best: its own tables, integer ids, loaded before the clock starts."""
    import duckdb

    con = duckdb.connect()
    codes = tables.activity["customer_id"].cat.codes.to_numpy()
    act = pd.DataFrame({"customer_id": codes, "at": tables.activity["at"].to_numpy()})
    cust = pd.DataFrame(
        {
            "customer_id": np.arange(len(tables.customers), dtype="int32"),
            "signup_at": tables.customers["signup_at"].to_numpy(),
        }
    )
    con.register("act_df", act)
    con.register("cust_df", cust)
    con.execute("CREATE TABLE activity AS SELECT * FROM act_df")
    con.execute("CREATE TABLE customers AS SELECT * FROM cust_df")
    return con


def pandas_monthly(tables: Tables, last_month_ordinal: int) -> pd.DataFrame:
    """The naive pandas way: join the signup month, drop duplicate (customer, month), group."""
    cust = tables.customers[["customer_id", "signup_at"]]
    signup = cust.set_index("customer_id")["signup_at"]
    m0 = signup.dt.year * 12 + signup.dt.month - 1
    act = tables.activity[["customer_id", "at"]].copy()
    act["customer_id"] = act["customer_id"].astype("str")
    act["month"] = act["at"].dt.year * 12 + act["at"].dt.month - 1
    act["cohort"] = act["customer_id"].map(m0)
    act = act[(act["month"] <= last_month_ordinal) & (act["month"] >= act["cohort"])]
    act["period"] = act["month"] - act["cohort"]
    return act.groupby(["cohort", "period"])["customer_id"].nunique().rename("active").reset_index()


def as_cells(df: pd.DataFrame) -> dict[tuple[int, int], int]:
    return {
        (int(c), int(p)): int(a)
        for c, p, a in zip(df["cohort"], df["period"], df["active"], strict=True)
        if a > 0
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pandas", action="store_true", help="Leave out the slow baseline.")
    args = parser.parse_args()

    t = time.perf_counter()
    tables = synthetic_tables(args.customers, args.events, args.seed)
    print(
        f"generated {args.events:,} events for {args.customers:,} customers "
        f"in {time.perf_counter() - t:.1f} s (cpus: {os.cpu_count()})"
    )
    until = tables.data_end()
    last_month = (until.year * 12 + until.month - 1) - 1  # complete months only

    cases: list[tuple[str, Callable[[], object]]] = [
        ("n-day, monthly cohorts", lambda: cohort_retention(tables, mode="n-day")),
        ("unbounded, monthly", lambda: cohort_retention(tables, mode="unbounded")),
        ("bracket 1-7,8-30,31-90", lambda: cohort_retention(tables, mode="bracket")),
        (
            "n-day, weekly",
            lambda: cohort_retention(tables, mode="n-day", cohort_freq="week"),
        ),
        ("n-day, monthly, by plan", lambda: cohort_retention(tables, mode="n-day", by="plan")),
        (
            "n-day, month cohorts x day index",
            lambda: cohort_retention(tables, mode="n-day", period="day", max_period=365),
        ),
    ]
    results: dict[str, tuple[float, float]] = {}
    print(f"\n{'case':38s} {'wall s':>7s} {'cpu s':>7s} {'M events/s':>11s}")
    ours = None
    for name, fn in cases:
        wall, cpu, out = timed(fn, args.repeat)
        results[name] = (wall, cpu)
        if ours is None:
            ours = out
        print(f"{name:38s} {wall:7.2f} {cpu:7.2f} {args.events / wall / 1e6:11.1f}")

    ours_cells = {
        (int(c.year * 12 + c.month - 1), int(p)): int(a)
        for c, p, a in zip(
            ours.table["cohort"],  # type: ignore[union-attr]
            ours.table["period"],  # type: ignore[union-attr]
            ours.table["active"],  # type: ignore[union-attr]
            strict=True,
        )
        if a > 0
    }
    print("\nbaselines (monthly n-day, same run, same data, same answer):")
    baselines: dict[str, tuple[float, float]] = {}
    wall, cpu, duck = timed(lambda: duckdb_monthly(tables, last_month), 1)
    assert as_cells(duck) == ours_cells, "DuckDB and cohort_retention disagree"
    baselines["DuckDB SQL over the pandas frames"] = (wall, cpu)
    con = duckdb_native(tables)
    sql = MONTHLY_SQL.format(last=last_month)
    wall, cpu, native = timed(lambda: con.execute(sql).df(), 1)
    con.close()
    assert as_cells(native) == ours_cells, "DuckDB (native tables) and cohort_retention disagree"
    baselines["DuckDB SQL, native tables, int ids"] = (wall, cpu)
    if not args.skip_pandas:
        wall, cpu, naive = timed(lambda: pandas_monthly(tables, last_month), 1, warmup=False)
        assert as_cells(naive) == ours_cells, "pandas groupby and cohort_retention disagree"
        baselines["naive pandas groupby"] = (wall, cpu)
    for name, (wall, cpu) in baselines.items():
        print(f"{name:38s} {wall:7.2f} {cpu:7.2f} {args.events / wall / 1e6:11.1f}")
    base_wall, base_cpu = results["n-day, monthly cohorts"]
    print(f"\nratio baseline / cohort_retention n-day monthly ({base_wall:.2f} s wall):")
    for name, (wall, cpu) in baselines.items():
        print(f"  {name:36s} wall {wall / base_wall:5.1f}x   cpu {cpu / base_cpu:5.1f}x")
    print("all baselines give the same monthly cohort table as cohort_retention")


if __name__ == "__main__":
    main()
