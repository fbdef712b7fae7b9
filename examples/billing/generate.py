"""A billing-only company's raw exports (a telecom's, a gym's, a subscription box's): a customer
list and its invoices, no product events, for examples/billing/mapping.toml.

- customers.csv: customer_no (ids with leading zeros), signup_date and cancelled_on
  (day-first, DD/MM/YYYY; empty while the customer stays), plan (today's: after downgrades),
  region, acquisition_channel, status as the billing tool names it (Active, Suspended,
  Cancelled: an export-day snapshot).
- invoices.csv: invoice_id, customer_no, issued_at (unix seconds), amount_cents, currency,
  status (paid, failed, refunded; a failed charge is retried 3-5 days later, then 7 days after
  that), period_start and period_end (ISO dates), plan at that invoice. Monthly and annual
  plans, two list-price rises.
- truth.csv: cut, customer_id, p: the exact probability that a customer active at a month
  start churns within 30 days (including a latent term the data do not carry).

Mechanism, decided at each calendar month start M for every customer active at M, from
billing rows dated strictly before M and a latent u:

  logit h = a_cycle + 0.55*min(failed attempts in 90d, 4) + 1.2*[latest billed period unpaid]
            + 0.8*[first invoice at a raised list price within 90 d]
            + 0.9*[downgrade within 90 d] - 0.3*[upgrade within 90 d] + 0.5*[refund within 90 d]
            + 1.3*exp(-tenure/120) (monthly) | -0.4*(renewal number - 1) (annual)
            + tier + region + channel effects + u,   u ~ N(0, 0.7) (not in the data)

Monthly plans churn with probability h, the cancellation uniform in the month; annual plans
only at their period end. Written by a session that judged the project on this shape from
outside (benchmarks/README.md, session 19).

Run: ``uv run python examples/billing/generate.py --out examples/billing/sample``
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

START = dt.date(2022, 1, 1)
END = dt.date(2024, 7, 1)  # export day: everything before it
TIERS = ["basic", "plus", "premium"]
BASE_PRICE = {"basic": 19.0, "plus": 35.0, "premium": 59.0}
RISES = {"basic": (dt.date(2023, 3, 1), 22.0), "plus": (dt.date(2023, 10, 1), 39.0)}
REGIONS = ["North", "South", "East", "West", "Islands"]
REGION_P = [0.3, 0.25, 0.22, 0.21, 0.02]
REGION_EFF = {"North": 0.0, "South": 0.15, "East": -0.1, "West": 0.05, "Islands": 0.2}
CHANNELS = ["organic", "paid_search", "referral", "partner", "affiliate"]
CHANNEL_P = [0.35, 0.25, 0.15, 0.1, 0.15]
CHANNEL_EFF = {
    "organic": 0.0,
    "paid_search": 0.25,
    "referral": -0.3,
    "partner": -0.1,
    "affiliate": 0.3,
}
TIER_EFF = {"basic": 0.3, "plus": 0.0, "premium": -0.2}
A_MONTHLY, A_ANNUAL = -4.6, -1.9


def list_price(tier: str, cycle: str, day: dt.date) -> float:
    p = BASE_PRICE[tier]
    if tier in RISES and day >= RISES[tier][0]:
        p = RISES[tier][1]
    return p * (10 if cycle == "annual" else 1)


def add_months(d: dt.date, k: int) -> dt.date:
    m = d.month - 1 + k
    y, m = d.year + m // 12, m % 12 + 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def month_starts():
    m = dt.date(2022, 2, 1)
    while m < END:
        yield m
        m = add_months(m, 1)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def write_sample(out: str | Path, customers: int = 6000, seed: int = 7) -> dict[str, int]:
    """Write customers.csv, invoices.csv and truth.csv into out; returns their row counts."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    n = customers
    span = (END - START).days
    # mild growth: later months get more signups
    offs = np.sort((span * rng.uniform(0, 1, n) ** 0.8).astype(int))
    signup = [START + dt.timedelta(days=int(o)) for o in offs]
    ids = [f"{i:06d}" for i in rng.choice(np.arange(1, 40000), n, replace=False)]
    cycle0 = rng.choice(["monthly", "annual"], n, p=[0.75, 0.25])
    tier0 = rng.choice(TIERS, n, p=[0.45, 0.35, 0.2])
    region = rng.choice(REGIONS, n, p=REGION_P)
    channel = rng.choice(CHANNELS, n, p=CHANNEL_P)
    u = rng.normal(0, 0.7, n)
    bad_card = rng.random(n) < 0.15
    fail_rate = np.where(bad_card, rng.uniform(0.15, 0.35, n), 0.02)
    months = list(month_starts())

    inv_rows, truth_rows, cust_rows = [], [], []
    inv_no = 0

    def simulate(i: int) -> None:
        """One customer's invoices, truth rows and customer row, appended to the lists."""
        nonlocal inv_rows
        cid, s = ids[i], signup[i]
        cyc, tier = cycle0[i], tier0[i]
        rows = []  # dicts: at (datetime), status, amount, ps, pe, plan, tier, cycle, unit
        churn_at = None

        def charge(day: dt.date, ps: dt.date, pe: dt.date, tier: str, cyc: str):
            nonlocal inv_no
            amount = list_price(tier, cyc, ps)
            t = dt.datetime.combine(day, dt.time()) + dt.timedelta(
                seconds=int(rng.integers(3600, 80000))
            )
            attempts = [t]
            ok = rng.random() >= fail_rate[i]
            if not ok:
                t2 = t + dt.timedelta(days=int(rng.integers(3, 6)))
                attempts.append(t2)
                ok2 = rng.random() < 0.6
                if not ok2:
                    attempts.append(t2 + dt.timedelta(days=7))
                    ok3 = rng.random() < 0.4
                    results = ["failed", "failed", "paid" if ok3 else "failed"]
                else:
                    results = ["failed", "paid"]
            else:
                results = ["paid"]
            inv_no += 1
            for k, (ta, r) in enumerate(zip(attempts, results, strict=True)):
                rows.append(
                    dict(
                        at=ta,
                        status=r,
                        amount=amount,
                        ps=ps,
                        pe=pe,
                        tier=tier,
                        cycle=cyc,
                        inv=f"INV{inv_no:07d}" + (f"-R{k}" if k else ""),
                    )
                )
                if r == "paid" and rng.random() < 0.012:  # a refund a few days later
                    rows.append(
                        dict(
                            at=ta + dt.timedelta(days=int(rng.integers(2, 20))),
                            status="refunded",
                            amount=amount,
                            ps=ps,
                            pe=pe,
                            tier=tier,
                            cycle=cyc,
                            inv=f"INV{inv_no:07d}-RF",
                        )
                    )

        # billing schedule: the first charge at signup
        period_len = 1 if cyc == "monthly" else 12
        next_bill = s
        n_bills = 0
        renewals = 0

        def bill_until(limit: dt.date):
            nonlocal next_bill, tier, n_bills, renewals
            while next_bill < limit:
                ps = next_bill
                if cyc == "monthly" and n_bills > 0:
                    r = rng.random()
                    pd_ = 0.015 * np.exp(0.6 * u[i])
                    if tier != "basic" and r < pd_:
                        tier = TIERS[TIERS.index(tier) - 1]
                    elif tier != "premium" and r > 1 - 0.01:
                        tier = TIERS[TIERS.index(tier) + 1]
                if n_bills > 0 and cyc == "annual":
                    renewals += 1
                pe = add_months(s, period_len * (n_bills + 1))
                charge(ps, ps, pe, tier, cyc)
                n_bills += 1
                next_bill = pe

        for m in months:
            if m <= s:
                continue
            if churn_at is not None:
                break
            bill_until(m)
            # observable state before m
            before = [r for r in rows if r["at"].date() < m]
            m90 = m - dt.timedelta(days=90)
            nfail = sum(1 for r in before if r["status"] == "failed" and r["at"].date() >= m90)
            last_ps = max(r["ps"] for r in before)
            latest = [r for r in before if r["ps"] == last_ps and r["status"] != "refunded"]
            unpaid = not any(r["status"] == "paid" for r in latest)
            paid = [r for r in before if r["status"] == "paid"]
            rise = down = up = 0
            for a, b in itertools.pairwise(paid):
                if b["at"].date() < m90:
                    continue
                if TIERS.index(b["tier"]) < TIERS.index(a["tier"]):
                    down = 1
                elif TIERS.index(b["tier"]) > TIERS.index(a["tier"]):
                    up = 1
                elif b["amount"] > a["amount"] and b["cycle"] == a["cycle"]:
                    rise = 1
            refund = any(r["status"] == "refunded" and r["at"].date() >= m90 for r in before)
            tenure = (m - s).days
            x = (
                0.55 * min(nfail, 4)
                + 1.2 * unpaid
                + 0.8 * rise
                + 0.9 * down
                - 0.3 * up
                + 0.5 * refund
                + TIER_EFF[tier]
                + REGION_EFF[region[i]]
                + CHANNEL_EFF[channel[i]]
                + u[i]
            )
            nxt = add_months(m, 1)
            L = (nxt - m).days
            if cyc == "monthly":
                h = sigmoid(A_MONTHLY + 1.3 * np.exp(-tenure / 120) + x)
                p = h * min(30, L) / L
                if rng.random() < h:
                    churn_at = m + dt.timedelta(days=float(rng.uniform(0, L)))
            else:
                h = sigmoid(A_ANNUAL - 0.4 * renewals + x)
                if m <= next_bill < nxt:  # the period ends this month
                    p = h if next_bill < m + dt.timedelta(days=30) else 0.0
                    if rng.random() < h:
                        churn_at = next_bill
                else:
                    p = 0.0
            truth_rows.append((m.isoformat(), cid, p))
        if churn_at is None:
            bill_until(END)
        else:
            churn_dt = (
                churn_at
                if isinstance(churn_at, dt.datetime)
                else dt.datetime.combine(churn_at, dt.time())
            )
            bill_until(churn_dt.date() if cyc == "monthly" else churn_at)
            rows = [r for r in rows if r["at"] < churn_dt]
        rows = [r for r in rows if r["at"].date() < END]
        for r in rows:
            r["cid"] = cid
        inv_rows += rows
        last_plan = (
            rows[-1]["tier"] + "_" + rows[-1]["cycle"] if rows else f"{tier0[i]}_{cycle0[i]}"
        )
        if churn_at is not None:
            status, canc = "Cancelled", churn_at
        else:
            latest_ps = max(r["ps"] for r in rows)
            unpaid_now = not any(r["status"] == "paid" for r in rows if r["ps"] == latest_ps)
            status, canc = ("Suspended" if unpaid_now else "Active"), None
        cust_rows.append(
            dict(
                customer_no=cid,
                signup_date=s.strftime("%d/%m/%Y"),
                plan=last_plan,
                region=region[i],
                acquisition_channel=channel[i],
                status=status,
                cancelled_on=(canc if isinstance(canc, dt.date) else canc.date()).strftime(
                    "%d/%m/%Y"
                )
                if canc is not None
                else "",
            )
        )

    for i in range(n):
        simulate(i)

    cust = pd.DataFrame(cust_rows).sample(frac=1, random_state=1)
    cust.to_csv(out / "customers.csv", index=False)
    inv = pd.DataFrame(inv_rows).sort_values("at")
    epoch = dt.datetime(1970, 1, 1)
    inv_out = pd.DataFrame(
        {
            "invoice_id": inv["inv"],
            "customer_no": inv["cid"],
            "issued_at": [int((t - epoch).total_seconds()) for t in inv["at"]],
            "amount_cents": (inv["amount"] * 100).round().astype(int),
            "currency": "EUR",
            "status": inv["status"],
            "period_start": [d.isoformat() for d in inv["ps"]],
            "period_end": [d.isoformat() for d in inv["pe"]],
            "plan": inv["tier"] + "_" + inv["cycle"],
        }
    )
    inv_out.to_csv(out / "invoices.csv", index=False)
    truth = pd.DataFrame(truth_rows, columns=["cut", "customer_id", "p"])
    truth.to_csv(out / "truth.csv", index=False)
    return {"customers": len(cust), "invoices": len(inv_out), "truth": len(truth)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample"))
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    counts = write_sample(args.out, args.customers, args.seed)
    print(", ".join(f"{name}: {rows:,} rows" for name, rows in counts.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()
