"""Raw exports of a small SaaS company, as its tools write them, for examples/saas/mapping.toml.

Five files, each with the quirks of its tool:
- crm_customers.csv: id with leading zeros (000042), created and canceled_at as day-first
  dates (03/02/2024 is 3 February), plan, mrr (0 once canceled: the CRM's value on export
  day), country ("NA" is Namibia, not a missing value), status on export day, and a few
  internal test accounts (plan "internal").
- stripe_invoices.csv: Stripe's invoice export: created, period_start and period_end in unix
  seconds, amount_paid and amount_due in cents, status paid/open/void/uncollectible, and
  refunds (status "refunded", amount_paid the refunded amount).
- segment_tracks.jsonl: Segment's track calls: userId, timestamp (ISO 8601 with Z), event.
- nps_survey.csv: customer_id, score, comment, created_at (local time in Berlin, no zone).
- zendesk_tickets.csv: id, organization_id, status new/open/pending/hold/solved/closed,
  created_at and solved_at (ISO 8601 with Z).

Churn follows engagement: customers who use the product less, answer NPS low and open more
tickets cancel more often, and their usage fades in the weeks before they cancel.

Run: ``uv run python examples/saas/generate.py --out examples/saas/sample``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2023-01-01")
EXPORT_DAY = pd.Timestamp("2024-12-31")
PLANS = {"starter": 29.0, "pro": 99.0, "enterprise": 499.0}
COUNTRIES = ["DE", "FR", "GB", "US", "NA", "NL"]
EVENTS = ["login", "report_viewed", "export_created", "invite_sent"]
COMMENTS = {
    "low": ["too slow", "missing features we need", "support never answers"],
    "mid": ["ok", "does the job", ""],
    "high": ["love it", "great support", "indispensable for our team"],
}


def _dmy(ts: pd.Timestamp | None) -> str:
    return "" if ts is None or pd.isna(ts) else ts.strftime("%d/%m/%Y")


def _iso_z(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def write_sample(out: str | Path, customers: int = 300, seed: int = 0) -> dict[str, int]:
    """Write the five exports into out; returns the rows per file."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    signup_span = (pd.Timestamp("2024-09-30") - START).days
    crm, invoices, tracks, nps, tickets = [], [], [], [], []
    for i in range(1, customers + 1):
        cid = f"{i:06d}"
        signup = START + pd.Timedelta(days=int(rng.integers(0, signup_span)))
        signup += pd.Timedelta(minutes=int(rng.integers(0, 24 * 60)))
        plan = str(rng.choice(list(PLANS), p=[0.6, 0.3, 0.1]))
        engagement = float(rng.lognormal(0.0, 0.6))
        # Monthly cancel hazard falls with engagement; the month of cancellation decides churn.
        hazard = min(0.5, 0.05 / engagement**1.2)
        canceled = None
        month = signup
        while True:
            month = month + pd.DateOffset(months=1)
            if month > EXPORT_DAY:
                break
            if rng.random() < hazard:
                canceled = month - pd.Timedelta(days=int(rng.integers(0, 28)))
                canceled = max(canceled, signup + pd.Timedelta(days=1))
                break
        end = canceled if canceled is not None else EXPORT_DAY
        crm.append(
            {
                "id": cid,
                "created": _dmy(signup),
                "plan": plan,
                "mrr": "0" if canceled is not None else f"{PLANS[plan]:.2f}",
                "country": str(rng.choice(COUNTRIES)),
                "status": "canceled" if canceled is not None else "active",
                "canceled_at": _dmy(canceled),
            }
        )
        _invoices(rng, cid, plan, signup, canceled, invoices)
        _tracks(rng, cid, engagement, signup, end, canceled, tracks)
        _feedback(rng, cid, engagement, signup, end, nps, tickets)
    for j in range(1, 6):  # internal test accounts, with a few events of their own
        cid = f"9{j:05d}"
        signup = START + pd.Timedelta(days=30 * j)
        crm.append(
            {
                "id": cid,
                "created": _dmy(signup),
                "plan": "internal",
                "mrr": "0",
                "country": "DE",
                "status": "test",
                "canceled_at": "",
            }
        )
        _tracks(rng, cid, 1.0, signup, signup + pd.Timedelta(days=20), None, tracks)
    pd.DataFrame(crm).to_csv(out / "crm_customers.csv", index=False)
    pd.DataFrame(invoices).to_csv(out / "stripe_invoices.csv", index=False)
    with (out / "segment_tracks.jsonl").open("w") as fh:
        for row in sorted(tracks, key=lambda r: r["timestamp"]):
            fh.write(json.dumps(row) + "\n")
    pd.DataFrame(nps, columns=["customer_id", "score", "comment", "created_at"]).to_csv(
        out / "nps_survey.csv", index=False
    )
    pd.DataFrame(
        tickets, columns=["id", "organization_id", "status", "created_at", "solved_at"]
    ).to_csv(out / "zendesk_tickets.csv", index=False)
    return {
        "crm_customers": len(crm),
        "stripe_invoices": len(invoices),
        "segment_tracks": len(tracks),
        "nps_survey": len(nps),
        "zendesk_tickets": len(tickets),
    }


def _invoices(rng, cid, plan, signup, canceled, rows) -> None:
    period = signup.normalize()
    while period <= EXPORT_DAY and (canceled is None or period < canceled):
        period_end = period + pd.DateOffset(months=1)
        due = round(PLANS[plan] * 100)
        if period_end > EXPORT_DAY:
            status, paid = "open", 0
        else:
            roll = rng.random()
            status, paid = (
                ("void", 0)
                if roll < 0.01
                else ("uncollectible", 0)
                if roll < 0.04
                else ("paid", due)
            )
        created = period + pd.Timedelta(hours=int(rng.integers(0, 6)))
        rows.append(_invoice_row(rng, cid, created, period, period_end, due, paid, status))
        if status == "paid" and rng.random() < 0.02:  # a refund a few days later
            refunded = created + pd.Timedelta(days=int(rng.integers(1, 10)))
            if refunded < EXPORT_DAY:
                rows.append(
                    _invoice_row(rng, cid, refunded, period, period_end, due, due, "refunded")
                )
        period = period_end


def _invoice_row(rng, cid, created, start, end, due, paid, status) -> dict[str, object]:
    return {
        "id": f"in_{rng.integers(16**12):012x}",
        "customer": cid,
        "created": int(created.timestamp()),
        "amount_paid": paid,
        "amount_due": due,
        "currency": "usd",
        "status": status,
        "period_start": int(start.timestamp()),
        "period_end": int(end.timestamp()),
    }


def _tracks(rng, cid, engagement, signup, end, canceled, rows) -> None:
    days = max(1, (end - signup).days)
    for week in range(0, days, 7):
        at = signup + pd.Timedelta(days=week)
        fade = 1.0
        if canceled is not None:  # usage fades over the 60 days before a cancellation
            left = (canceled - at).days
            fade = min(1.0, max(0.1, left / 60))
        for _ in range(int(rng.poisson(3.0 * engagement * fade))):
            ts = at + pd.Timedelta(seconds=int(rng.integers(0, 7 * 86400)))
            if ts >= end:
                continue
            rows.append({"userId": cid, "timestamp": _iso_z(ts), "event": str(rng.choice(EVENTS))})


def _feedback(rng, cid, engagement, signup, end, nps, tickets) -> None:
    wave = pd.Timestamp("2023-03-01")
    while wave < end:
        if wave > signup and rng.random() < 0.4:
            score = int(np.clip(round(rng.normal(4 + 3 * np.log1p(engagement) * 1.5, 1.5)), 0, 10))
            mood = "low" if score <= 6 else "mid" if score <= 8 else "high"
            local = wave + pd.Timedelta(
                hours=int(rng.integers(8, 20)), minutes=int(rng.integers(60))
            )
            nps.append(
                {
                    "customer_id": cid,
                    "score": score,
                    "comment": str(rng.choice(COMMENTS[mood])),
                    "created_at": local.strftime("%Y-%m-%d %H:%M"),
                }
            )
        wave += pd.DateOffset(months=3)
    rate = 0.15 / engagement  # tickets per 30 days
    days = max(1, (end - signup).days)
    for _ in range(int(rng.poisson(rate * days / 30))):
        created = signup + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))
        age = (EXPORT_DAY - created).days
        if age < 10 and rng.random() < 0.7:
            status, solved = str(rng.choice(["new", "open", "pending", "hold"])), None
        else:
            solved = created + pd.Timedelta(hours=float(rng.gamma(2.0, 12.0)))
            if solved > EXPORT_DAY:
                status, solved = "open", None
            else:
                status = "closed" if age > 30 else "solved"
        tickets.append(
            {
                "id": int(rng.integers(10_000, 10_000_000)),
                "organization_id": cid,
                "status": status,
                "created_at": _iso_z(created),
                "solved_at": _iso_z(solved) if solved is not None else "",
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample"))
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, rows in write_sample(args.out, args.customers, args.seed).items():
        print(f"{name}: {rows:,} rows")


if __name__ == "__main__":
    main()
