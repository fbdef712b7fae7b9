"""Order lines of a small online shop, in the shape of UCI Online Retail, for
examples/orders/mapping.toml.

order_lines.csv: InvoiceNo (C... for cancellations), StockCode, Description, Quantity
(negative on cancelled and returned lines), InvoiceDate (month-first, 12/1/2010 8:26),
UnitPrice, CustomerID (empty on some guest orders), Country. Customers buy at their own rate
until they stop (the churn the non-contractual definition finds), now and then cancel an
invoice or return items.

Run: ``uv run python examples/orders/generate.py --out examples/orders/sample``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2010-12-01 08:00")
END = pd.Timestamp("2011-12-09 18:00")
COUNTRIES = ["United Kingdom"] * 8 + ["France", "Germany", "EIRE", "Spain"]
PRODUCTS = [
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.55),
    ("71053", "WHITE METAL LANTERN", 3.39),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER", 2.75),
    ("22752", "SET 7 BABUSHKA NESTING BOXES", 7.65),
    ("21730", "GLASS STAR FROSTED T-LIGHT HOLDER", 4.25),
    ("22633", "HAND WARMER UNION JACK", 1.85),
]


def _stamp(ts: pd.Timestamp) -> str:
    return f"{ts.month}/{ts.day}/{ts.year} {ts.hour}:{ts.minute:02d}"


def write_sample(out: str | Path, customers: int = 300, seed: int = 0) -> int:
    """Write order_lines.csv into out; returns its number of lines."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    span = (END - START).total_seconds()
    rows: list[dict[str, object]] = []
    invoice = 536365
    for i in range(customers):
        customer = str(12346 + i)
        country = str(rng.choice(COUNTRIES))
        first = START + pd.Timedelta(seconds=float(rng.uniform(0, span * 0.7)))
        stop = first + pd.Timedelta(days=float(rng.exponential(300)))  # stops buying then
        gap_days = float(rng.lognormal(3.3, 0.6))  # typical days between orders
        at = first
        while at < min(stop, END):
            invoice += 1
            lines = _lines(rng, int(rng.integers(1, 6)))
            cancelled = rng.random() < 0.03
            number = f"C{invoice}" if cancelled else str(invoice)
            for code, text, qty, price in lines:
                rows.append(
                    _row(
                        number, code, text, -qty if cancelled else qty, at, price, customer, country
                    )
                )
            if not cancelled and rng.random() < 0.02:  # a return, on an invoice of its own
                invoice += 1
                code, text, qty, price = lines[0]
                later = at + pd.Timedelta(days=int(rng.integers(1, 20)))
                if later < END:
                    rows.append(_row(str(invoice), code, text, -1, later, price, customer, country))
            at += pd.Timedelta(
                days=float(rng.exponential(gap_days)), minutes=int(rng.integers(0, 600))
            )
    for _ in range(customers // 3):  # guest orders: no CustomerID
        invoice += 1
        at = START + pd.Timedelta(seconds=float(rng.uniform(0, span)))
        for code, text, qty, price in _lines(rng, 2):
            rows.append(_row(str(invoice), code, text, qty, at, price, "", "United Kingdom"))
    frame = pd.DataFrame(rows)
    frame = frame.sort_values("_at", kind="stable").drop(columns="_at")
    frame.to_csv(out / "order_lines.csv", index=False)
    return len(frame)


def _lines(rng: np.random.Generator, n: int) -> list[tuple[str, str, int, float]]:
    picks = rng.choice(len(PRODUCTS), size=n, replace=False)
    return [
        (PRODUCTS[p][0], PRODUCTS[p][1], int(rng.integers(1, 25)), PRODUCTS[p][2]) for p in picks
    ]


def _row(number, code, text, qty, at, price, customer, country) -> dict[str, object]:
    at = at.floor("min")
    return {
        "InvoiceNo": number,
        "StockCode": code,
        "Description": text,
        "Quantity": qty,
        "InvoiceDate": _stamp(at),
        "UnitPrice": price,
        "CustomerID": customer,
        "Country": country,
        "_at": at,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample"))
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"order_lines: {write_sample(args.out, args.customers, args.seed):,} rows")


if __name__ == "__main__":
    main()
