"""A music-subscription service's raw exports, in the shape of the WSDM KKBox churn data, for
examples/subscriptions/mapping.toml: members, their transactions and their daily listening.

- members.csv: msno (base64 ids), city, bd (age, with junk values such as 0, -40 and 1051 as in
  the real export), gender (often empty), registered_via, registration_init_time (YYYYMMDD).
- transactions.csv: msno, payment_method_id, payment_plan_days (30, 90, 180, 410; 7 for a free
  trial), plan_list_price, actual_amount_paid (NTD), is_auto_renew, transaction_date and
  membership_expire_date (YYYYMMDD), is_cancel (auto-renew switched off; it may end the
  membership early). Rows in no particular order.
- user_logs.csv: msno, date (YYYYMMDD), num_25 .. num_100 (songs by share played), num_unq,
  total_secs: one row per member and listening day.

Mechanism: every member has a daily latent risk (a member-level part plus an AR(1) with a
month's memory); at each expiry the member leaves with a probability that rises with it, and
more so on manual payment and after a free trial; listening falls as the risk rises. Auto-renew
members about to leave usually cancel first, days before the expiry. Manual payers renew up to
six days before the expiry or, three times in ten, late (up to 26 days after it, not listening
in between): a late payer has not churned. KKBox's churn: no new valid transaction within 30
days after the expiry, dated at the expiry; the export knows it only 30 days later.

Run: ``uv run python examples/subscriptions/generate.py --out examples/subscriptions/sample``
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

START = pd.Timestamp("2015-01-01")
END = pd.Timestamp("2016-06-30")
ORIGIN = pd.Timestamp("2014-01-01")  # day 0 of the latent matrix (initial txns go back)
HORIZON_END = END + pd.Timedelta(days=500)
ALPHA = -3.85
C_MANUAL = 0.7
C_TRIAL = 1.6
C_LONG = 0.4
PHI = 0.97
SD_U = 0.8
SD_B = 0.8
Q_CANCEL = 0.6
Q_CANCEL_STAY = 0.01
CANCEL_SPAN = 25

PLANS = {  # days: (list price, probability for a paying member)
    30: (149, 0.86),
    90: (447, 0.05),
    180: (894, 0.05),
    410: (1788, 0.04),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def day(ts: pd.Timestamp) -> int:
    return (ts - ORIGIN).days


def ymd(d: int) -> int:
    t = ORIGIN + pd.Timedelta(days=int(d))
    return t.year * 10000 + t.month * 100 + t.day


def _price(plan: int, discount: bool) -> int:
    """The plan's list price (NTD)."""
    return 149 if discount and plan == 30 else PLANS[plan][0]


def _paid(plan: int, discount: bool) -> int:
    """What a transaction pays (NTD): nothing for a trial, 99 a month on a discount."""
    if plan == 7:
        return 0
    return 99 if discount and plan == 30 else PLANS[plan][0]


def write_sample(out: str | Path, members: int = 2000, seed: int = 7) -> dict[str, int]:
    """Write members.csv, transactions.csv and user_logs.csv into out; returns their row counts."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    n_init = int(members * 0.62)
    n_new = members - n_init
    n = n_init + n_new
    n_days = day(HORIZON_END) + 1
    d_start, d_end = day(START), day(END)

    # --- members -------------------------------------------------------------------------
    ids = [base64.b64encode(rng.bytes(32)).decode() for _ in range(n)]
    reg = np.empty(n, dtype=int)
    reg[:n_init] = day(START) - np.minimum(rng.exponential(900, n_init).astype(int) + 20, 4000)
    reg[n_init:] = np.sort(rng.integers(d_start, d_end + 1, n_new))
    city = rng.choice(np.arange(1, 23), n, p=np.r_[0.5, np.full(21, 0.5 / 21)])
    bd = np.clip(rng.normal(29, 8, n).round(), 14, 70).astype(int)
    junk = rng.random(n) < 0.2
    bd[junk] = rng.choice([0, 0, 0, 0, 0, 0, -40, 1051, 2015, 3], junk.sum())
    gender = rng.choice(["", "male", "female"], n, p=[0.55, 0.23, 0.22])
    via = rng.choice([3, 4, 7, 9, 13], n, p=[0.25, 0.15, 0.3, 0.25, 0.05])

    # --- latent hazard: b + AR(1) -----------------------------------------------------
    b = rng.normal(0, SD_B, n)
    # registered_via 4 and city 1 slightly riskier: declared attributes carry a little signal
    b += 0.25 * (via == 4) + 0.1 * (city == 1)
    eps = rng.normal(0, SD_U * np.sqrt(1 - PHI**2), (n, n_days)).astype(np.float32)
    eps[:, 0] = rng.normal(0, SD_U, n)
    u = lfilter([1.0], [1.0, -PHI], eps, axis=1).astype(np.float32)
    h = u + b[:, None].astype(np.float32)
    e_level = rng.normal(0, 0.7, n)  # listening propensity, independent of the hazard

    allowed = np.zeros((n, n_days), dtype=bool)  # membership running that day
    churn_day = np.full(n, -1)
    txns: list[tuple] = []

    for m in range(n):
        auto = rng.random() < 0.75
        method = 41 if auto else int(rng.choice([36, 37, 38, 39, 40]))
        plan = int(rng.choice(list(PLANS), p=[v[1] for v in PLANS.values()]))
        discount = rng.random() < 0.08
        trial = False
        if m < n_init:
            expiry = d_start + int(rng.integers(0, plan))
            t0 = expiry - plan
        else:
            t0 = reg[m]
            trial = rng.random() < 0.4
            expiry = t0 + (7 if trial else plan)
        p_days = 7 if trial else plan
        txns.append(
            (
                m,
                method,
                p_days,
                0 if trial else _price(plan, discount),
                _paid(p_days, discount) if not trial else 0,
                int(auto and not trial),
                t0,
                expiry,
                0,
            )
        )
        start_run = t0
        while True:
            allowed[m, max(start_run, 0) : expiry] = True
            if expiry > d_end:
                break
            logit = (
                ALPHA
                + h[m, expiry]
                + C_MANUAL * (not auto or trial)
                + C_TRIAL * trial
                + C_LONG * (p_days > 30)
            )
            churn = rng.random() < sigmoid(logit)
            if churn:
                end = expiry
                if auto and not trial and rng.random() < Q_CANCEL:
                    lo = max(start_run + 1, expiry - CANCEL_SPAN)
                    cancel = int(rng.integers(lo, expiry)) if lo < expiry else expiry - 1
                    if rng.random() < 0.2:
                        end = int(rng.integers(cancel, expiry + 1))
                    txns.append(
                        (
                            m,
                            method,
                            p_days,
                            _price(plan, discount),
                            _paid(plan, discount),
                            0,
                            cancel,
                            end,
                            1,
                        )
                    )
                    allowed[m, end:expiry] = False
                churn_day[m] = end
                break
            if auto and not trial and rng.random() < Q_CANCEL_STAY:
                lo = max(start_run + 1, expiry - CANCEL_SPAN)
                c = int(rng.integers(lo, expiry)) if lo < expiry else expiry - 1
                txns.append(
                    (
                        m,
                        method,
                        p_days,
                        _price(plan, discount),
                        _paid(plan, discount),
                        0,
                        c,
                        expiry,
                        1,
                    )
                )
                auto = False
                method = int(rng.choice([36, 37, 38, 39, 40]))
            if trial:
                trial = False
            elif rng.random() < 0.03:
                auto = not auto
                method = 41 if auto else int(rng.choice([36, 37, 38, 39, 40]))
            if rng.random() < 0.05:
                plan = int(rng.choice(list(PLANS), p=[v[1] for v in PLANS.values()]))
            p_days = plan
            if auto:
                t = expiry - int(rng.random() < 0.3)
                new_e = expiry + plan
                start_run = expiry
            elif rng.random() < 0.7:
                t = expiry - int(rng.integers(0, 7))
                new_e = expiry + plan
                start_run = expiry
            else:
                t = expiry + int(rng.integers(1, 27))  # late payer: within 30 days, not churn
                new_e = t + plan
                start_run = t
            txns.append(
                (
                    m,
                    method,
                    plan,
                    _price(plan, discount),
                    _paid(plan, discount),
                    int(auto),
                    t,
                    new_e,
                    0,
                )
            )
            expiry = new_e

    # --- transactions ------------------------------------------------------------------
    tx = pd.DataFrame(
        txns,
        columns=[
            "m",
            "payment_method_id",
            "payment_plan_days",
            "plan_list_price",
            "actual_amount_paid",
            "is_auto_renew",
            "t",
            "e",
            "is_cancel",
        ],
    )
    tx = tx[tx["t"] <= d_end]
    tx.insert(0, "msno", np.array(ids)[tx["m"]])
    tx["transaction_date"] = [ymd(d) for d in tx["t"]]
    tx["membership_expire_date"] = [ymd(d) for d in tx["e"]]
    tx = tx.sample(frac=1, random_state=seed)  # exports are not sorted
    cols = [
        "msno",
        "payment_method_id",
        "payment_plan_days",
        "plan_list_price",
        "actual_amount_paid",
        "is_auto_renew",
        "transaction_date",
        "membership_expire_date",
        "is_cancel",
    ]
    tx[cols].to_csv(out / "transactions.csv", index=False)

    # --- members ---------------------------------------------------------------------
    pd.DataFrame(
        {
            "msno": ids,
            "city": city,
            "bd": bd,
            "gender": gender,
            "registered_via": via,
            "registration_init_time": [ymd(d) for d in reg],
        }
    ).to_csv(out / "members.csv", index=False)

    # --- user logs -------------------------------------------------------------------
    lo, hi = d_start, d_end + 1
    hw = h[:, lo:hi]
    p_active = sigmoid(e_level[:, None] + 0.3 - 0.9 * hw) * allowed[:, lo:hi]
    noise = rng.normal(0, 0.35, hw.shape)
    active = rng.random(hw.shape) < p_active
    mi, di = np.nonzero(active)
    mean_songs = np.exp(3.1 + 0.3 * e_level[mi] - 0.35 * hw[mi, di] + noise[mi, di])
    songs = rng.negative_binomial(2, 2 / (2 + mean_songs)) + 1
    parts = rng.multinomial(songs, [0.14, 0.04, 0.03, 0.03, 0.76])
    num_unq = np.maximum(1, np.round(songs * rng.uniform(0.55, 0.98, len(songs)))).astype(int)
    length = rng.normal(245, 25, len(songs))
    secs = (parts @ np.array([0.2, 0.45, 0.7, 0.95, 1.0])) * length
    date_ints = np.array([ymd(d) for d in range(lo, hi)])
    logs = pd.DataFrame(
        {
            "msno": np.array(ids)[mi],
            "date": date_ints[di],
            "num_25": parts[:, 0],
            "num_50": parts[:, 1],
            "num_75": parts[:, 2],
            "num_985": parts[:, 3],
            "num_100": parts[:, 4],
            "num_unq": num_unq,
            "total_secs": np.round(secs, 3),
        }
    )
    logs.to_csv(out / "user_logs.csv", index=False)

    return {"members": n, "transactions": len(tx), "user_logs": len(logs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("sample"))
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    counts = write_sample(args.out, args.members, args.seed)
    print(", ".join(f"{name}: {rows:,} rows" for name, rows in counts.items()), f"in {args.out}")


if __name__ == "__main__":
    main()
