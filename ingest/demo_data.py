"""Demo data: a realistic subscription business in the contract's shape, from a known churn model.

Why: tests and demos need data whose true churn probability is known, so a model can be compared
with the best possible score on that data (and drivers can be checked for direction).

What is simulated (all vectorized; a Python loop only over the ~24 simulation steps):

* customers: ids "C000001"..., signup spread over the span (``initial_share`` already present at
  the start, signed up before it), plan at signup (``plan``), country, channel, company_size.
* revenue: monthly invoices on the signup anniversary (``period`` = the month paid for), amount by
  plan x seats x discount; upgrades/downgrades happen at an invoice (the new price is billed from
  that invoice on); one list-price rise (``price_rise_plan`` x ``price_rise_factor`` from
  ``start + price_rise_months``); failed payments (positive attempted amount, retried a few days
  later); refunds (negative amounts).
* activity: login, report_view, dashboard_edit, export, api_call, invite_user with a ``value``
  (minutes, rows, calls, invites). The rate follows a latent engagement that drifts and follows a
  latent satisfaction (which also drives NPS, tickets and reviews).
* feedback: quarterly NPS waves (~65 % don't answer), support tickets with skewed resolution times
  (some still open at the end), CSAT after some resolved tickets, occasional reviews, a few texts.

Churn mechanism. Time advances in steps of ``step_days`` (30) from ``start``. At each step date
T = start + k * step_days (k >= 1, T + step_days <= data end) every customer active at T (signed
up before T, not churned by T) gets a hazard for (T, T + step_days]::

    logit p = intercept
              + usage_drop * max(0, log1p(events[T-60,T-30)) - log1p(events[T-30,T)))
              + activity * log1p(events[T-30,T))        (negative coefficient)
              + no_activity * [no events in [T-30,T)]
              + nps * (7 - last NPS score before T) + detractor/promoter terms (responders only)
              + open_tickets * min(open tickets at T, 3) + long_open * min(open > 7 days, 2)
              + price_rise * [first invoice at the raised price within 90 days before T]
              + failed_payments * min(failed payments in 90 days, 2)
              + downgrade / upgrade * [plan change within 90 days]
              + plan (current) + company_size + channel effects
              + new_customer * exp(-tenure_days / 120)
              + season * cos(2 pi (day_of_year - 15) / 365.25)        (peaks in mid-January)
              + u_customer,  u ~ N(0, latent_noise_sd)               (latent, not in the data)

The activity windows are the last two steps (30 days each by default) and the intercept is per
step, so another ``step_days`` changes the churn per month. Every term uses data dated strictly
before T (plus the static segments), so p is a function of the observable history and one latent
frailty: it is exactly the ``churn_probability`` written to the truth frame for (customer, T).
Churn in (T, T + step] is drawn with p; churned_at is uniform inside that interval and nothing is
generated after it. The coefficients (:data:`HAZARD`) are signed so that each driver is monotone
in its stated direction (more open tickets, lower NPS, a sharper usage drop, less activity never
lower the hazard). Usage declines before churn twice
over: the latent satisfaction shocks that lower usage and NPS also raise tickets (and so the
hazard), and a customer who has decided to leave uses the product less in its last weeks
(``exit_usage_factor``; this happens after T so it does not change p).

There is no churn in the first step (no history yet) nor after the last full step before the
data end; truth rows exist only for intervals that lie inside the data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.config import DATA_CONFIG_FILE, FeatureConfig, config_to_toml
from features.contract import Tables, validate_tables
from features.io import write_tables

DEMO_MODEL_NAME = "churn-demo"
DAY = 86_400  # seconds; the simulation keeps times as int64 seconds from `start`
NEVER = np.iinfo(np.int64).max // 4  # "no such time yet" (churn, resolution)
LONG_AGO = -NEVER

PLANS = ("basic", "pro", "enterprise")
SIZES = ("1-10", "11-50", "51-200", "201+")
CHANNELS = ("organic", "paid", "partner", "sales")
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "NL", "AU", "IN", "BR")
# Customer attributes the demo config declares as model features (all known at signup).
DEMO_CUSTOMER_ATTRIBUTES = ("plan", "country", "channel", "company_size")
COUNTRY_SHARE = (0.38, 0.13, 0.12, 0.08, 0.07, 0.06, 0.06, 0.06, 0.04)
SIZE_SHARE = (0.45, 0.30, 0.17, 0.08)
# P(channel | size) and P(plan at signup | size): small companies come organic/paid on basic,
# large ones through sales on enterprise.
CHANNEL_BY_SIZE = np.array(
    [
        [0.50, 0.35, 0.12, 0.03],
        [0.42, 0.30, 0.18, 0.10],
        [0.30, 0.20, 0.20, 0.30],
        [0.15, 0.10, 0.20, 0.55],
    ]
)
PLAN_BY_SIZE = np.array(
    [[0.75, 0.22, 0.03], [0.50, 0.42, 0.08], [0.25, 0.50, 0.25], [0.10, 0.40, 0.50]]
)
LIST_PRICE = np.array([29.0, 99.0, 499.0])
SEATS_BY_SIZE = np.array([1.0, 1.5, 2.5, 4.0])  # price multiplier for pro / enterprise
USAGE_BY_SIZE = np.array([0.7, 1.0, 1.5, 2.2])
USAGE_BY_PLAN = np.array([0.8, 1.0, 1.4])
TICKETS_BY_SIZE = np.array([0.7, 1.0, 1.4, 2.0])
RESOLUTION_BY_PLAN = np.array([1.4, 1.0, 0.6])  # enterprise support answers faster

EVENTS = ("login", "report_view", "dashboard_edit", "export", "api_call", "invite_user")
EVENT_MIX_BY_PLAN = np.array(
    [
        [0.45, 0.28, 0.10, 0.10, 0.04, 0.03],
        [0.36, 0.27, 0.12, 0.10, 0.12, 0.03],
        [0.28, 0.24, 0.12, 0.08, 0.25, 0.03],
    ]
)
# value per event: exp(N(log median, sigma)); export rows and api calls are rounded counts.
EVENT_VALUE_MEDIAN = np.array([12.0, 3.0, 8.0, 400.0, 40.0, 1.0])
EVENT_VALUE_SIGMA = np.array([0.8, 0.7, 0.8, 1.2, 1.0, 0.0])

NEGATIVE_TEXT = (
    "too expensive",
    "support never answered",
    "missing features we need",
    "slow and buggy lately",
    "we are moving to a competitor",
    "hard to use",
)
NEUTRAL_TEXT = ("it's ok", "does the job", "a few rough edges")
POSITIVE_TEXT = (
    "great product",
    "support was quick and helpful",
    "easy to use",
    "saves us hours every week",
    "love the reports",
)

HAZARD: dict[str, float] = {
    "intercept": -3.9,
    "usage_drop": 0.55,  # per unit of log1p(previous 30 days) - log1p(last 30 days), if > 0
    "activity": -0.30,  # per unit of log1p(events in the last 30 days)
    "no_activity": 0.50,
    "nps": 0.10,  # per NPS point below 7 (above 7 lowers), responders only
    "detractor": 0.25,
    "promoter": -0.20,
    "open_tickets": 0.30,  # per open ticket at T, up to 3
    "long_open": 0.35,  # per ticket open for more than 7 days at T, up to 2
    "price_rise": 0.60,
    "failed_payments": 0.45,  # per failed payment in the last 90 days, up to 2
    "downgrade": 0.50,
    "upgrade": -0.30,
    "new_customer": 0.80,  # times exp(-tenure_days / 120)
    "season": 0.25,
}
HAZARD_PLAN = np.array([0.30, 0.0, -0.50])
HAZARD_SIZE = np.array([0.25, 0.10, 0.0, -0.20])
HAZARD_CHANNEL = np.array([0.0, 0.20, -0.05, -0.15])


@dataclass
class DemoConfig:
    """Size, seed, span and the knobs of the simulation (defaults give ~3 % monthly churn)."""

    n_customers: int = 2000
    seed: int = 0
    start: pd.Timestamp = field(default_factory=lambda: pd.Timestamp("2023-01-01"))
    months: int = 24  # simulated span: data end = start + months
    step_days: int = 30  # simulation step; truth dates are start + k * step_days
    initial_share: float = 0.30  # customers already present at the start
    events_per_active_day: float = 0.24  # mean activity rate (about 100 events per customer)
    exit_usage_factor: float = 0.5  # usage multiplier between the churn decision and churned_at
    nps_response_rate: float = 0.35
    tickets_per_month: float = 0.12
    csat_response_rate: float = 0.45
    reviews_per_month: float = 0.006
    text_share: float = 0.25  # share of NPS answers with a comment (reviews: 0.8)
    failed_payment_rate: float = 0.02
    refund_rate: float = 0.01
    upgrade_rate: float = 0.012  # per invoice
    downgrade_rate: float = 0.008  # per invoice
    price_rise_plan: str = "basic"
    price_rise_months: int = 13  # the rise takes effect at start + this many months
    price_rise_factor: float = 1.2
    latent_noise_sd: float = 0.15  # per-customer hazard noise (makes the truth not recoverable)
    # A planted change for monitoring demos and tests (None: no change): from drift_at on, the
    # rate of drift_event is multiplied by drift_event_factor (a product change that hides a
    # feature) and drift_price_plan's list price by drift_price_factor (a price rise).
    drift_at: pd.Timestamp | None = None
    drift_event: str = "report_view"
    drift_event_factor: float = 0.25
    drift_price_plan: str = "pro"
    drift_price_factor: float = 2.0

    def __post_init__(self) -> None:
        self.start = pd.Timestamp(self.start).as_unit("ns")
        if self.n_customers < 1 or self.months < 2 or self.step_days < 1:
            raise ValueError("n_customers >= 1, months >= 2 and step_days >= 1 are required")
        if self.price_rise_plan not in PLANS:
            raise ValueError(f"price_rise_plan must be one of {PLANS}")
        if self.drift_at is not None:
            self.drift_at = pd.Timestamp(self.drift_at).as_unit("ns")
            if not self.start < self.drift_at < self.end:
                raise ValueError(
                    f"drift_at {self.drift_at.date()} must fall inside the simulated span "
                    f"{self.start.date()}..{self.end.date()}"
                )
            if self.drift_event not in EVENTS:
                raise ValueError(f"drift_event must be one of {EVENTS}")
            if self.drift_price_plan not in PLANS:
                raise ValueError(f"drift_price_plan must be one of {PLANS}")
            if not 0 <= self.drift_event_factor <= 1 or self.drift_price_factor <= 0:
                raise ValueError("drift_event_factor must be in [0, 1], drift_price_factor > 0")

    @property
    def end(self) -> pd.Timestamp:
        """The data end: every timestamp in the generated data is before it."""
        return self.start + pd.DateOffset(months=self.months)


def _rows_choice(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per element: row `rows[i]` of `probs` gives its probabilities."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(rows))
    out = np.zeros(len(rows), dtype=np.int64)
    for r in range(len(probs)):  # a loop over the few categories, never over customers
        sel = rows == r
        out[sel] = np.searchsorted(cum[r], u[sel], side="right")
    return np.minimum(out, probs.shape[1] - 1)


def _bincount(idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, minlength=n) if len(idx) else np.zeros(n, dtype=np.int64)


def _last_per_customer(cust: np.ndarray, at: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """value of each customer's latest row (NaN when it has none)."""
    out = np.full(n, np.nan)
    if len(cust):
        order = np.lexsort((at, cust))
        c = cust[order]
        last = np.r_[c[1:] != c[:-1], True]
        out[c[last]] = value[order][last]
    return out


def _texts(
    rng: np.random.Generator,
    sentiment: np.ndarray,
    hint_price: np.ndarray,
    hint_support: np.ndarray,
) -> np.ndarray:
    """A comment per row from its sentiment (0 negative, 1 neutral, 2 positive) and its context."""
    out = np.empty(len(sentiment), dtype=object)
    for s, pool in enumerate((NEGATIVE_TEXT, NEUTRAL_TEXT, POSITIVE_TEXT)):
        rows = np.flatnonzero(sentiment == s)
        out[rows] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), len(rows))]
    neg = sentiment == 0
    u = rng.random(len(sentiment))
    out[neg & hint_support & (u < 0.6)] = "support never answered"
    out[neg & hint_price & (u >= 0.4)] = "too expensive"
    return out


def _timestamps(start: pd.Timestamp, seconds: np.ndarray) -> np.ndarray:
    """int64 seconds from start -> datetime64[ns] (NEVER -> NaT)."""
    never = seconds >= NEVER
    ns = start.value + np.where(never, 0, seconds).astype(np.int64) * 1_000_000_000
    out = ns.astype("datetime64[ns]")
    out[never] = np.datetime64("NaT")
    return out


def generate_demo(config: DemoConfig | None = None) -> tuple[Tables, pd.DataFrame]:
    """Simulate the business; return the validated contract tables and the true churn probabilities.

    The truth frame has customer_id, as_of (step date T) and churn_probability: the probability
    the simulation used for churned_at falling in (T, T + step_days], for each customer active at T.
    """
    cfg = config or DemoConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_customers
    step = cfg.step_days * DAY
    start64 = np.datetime64(cfg.start.value, "ns").astype("datetime64[s]")
    end_s = int((cfg.end - cfg.start).total_seconds())
    n_steps = math.ceil(end_s / step)

    # ---- customers -------------------------------------------------------------------------
    n_init = round(n * cfg.initial_share)
    before = -np.minimum(rng.exponential(365.0, n_init), 1500.0) * DAY
    after = rng.random(n - n_init) * (end_s - DAY)
    signup = np.sort(np.floor(np.r_[before, after]).astype(np.int64))  # ids follow signup order
    size = _rows_choice(rng, np.array([SIZE_SHARE]), np.zeros(n, dtype=np.int64))
    channel = _rows_choice(rng, CHANNEL_BY_SIZE, size)
    plan0 = _rows_choice(rng, PLAN_BY_SIZE, size)
    country = _rows_choice(rng, np.array([COUNTRY_SHARE]), np.zeros(n, dtype=np.int64))
    width = max(6, len(str(n)))
    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)

    # latent per-customer traits
    usage_base = rng.normal(0.0, 0.6, n)
    frailty = rng.normal(0.0, cfg.latent_noise_sd, n)
    sat_mean = rng.normal(0.2, 0.5, n)
    sat = sat_mean + rng.normal(0.0, 0.5, n)
    drift = np.zeros(n)
    discount = np.array([1.0, 0.9, 0.8])[
        _rows_choice(rng, np.array([[0.7, 0.2, 0.1]]), np.zeros(n, dtype=np.int64))
    ]
    seats = SEATS_BY_SIZE[size] * rng.uniform(0.9, 1.1, n)
    fail_prob = np.minimum(
        cfg.failed_payment_rate * np.exp(rng.normal(0.0, 0.7, n)) * np.where(size == 0, 1.5, 1.0),
        0.5,
    )
    usage_mult = USAGE_BY_SIZE[size]

    # ---- invoice schedule: one column per calendar month from the start month -------------------
    signup_dt = start64 + signup.astype("timedelta64[s]")
    sign_month = signup_dt.astype("datetime64[M]")
    sign_day = signup_dt.astype("datetime64[D]")
    bill_day = np.minimum((sign_day - sign_month.astype("datetime64[D]")).astype(np.int64), 27)
    tod = (signup_dt - sign_day.astype("datetime64[s]")).astype(np.int64)
    start_month = start64.astype("datetime64[M]")
    n_cols = cfg.months + 2
    months = start_month + np.arange(n_cols)
    month_s = (months.astype("datetime64[s]") - start64).astype(np.int64)
    inv = month_s[None, :] + bill_day[:, None] * DAY + tod[:, None]
    same_month = sign_month[:, None] == months[None, :]
    inv = np.where(same_month, signup[:, None], inv)
    inv = np.where((inv >= signup[:, None]) & (inv >= 0) & (inv < end_s), inv, NEVER)
    month_end_s = np.r_[month_s[1:], month_s[-1] + 31 * DAY]
    period_ns = months.astype("datetime64[ns]")

    rise_s = int(
        (cfg.start + pd.DateOffset(months=cfg.price_rise_months) - cfg.start).total_seconds()
    )
    rise_plan = PLANS.index(cfg.price_rise_plan)
    # The planted drift (DemoConfig.drift_at): seconds from start, or NEVER without it.
    drift_s = NEVER if cfg.drift_at is None else int((cfg.drift_at - cfg.start).total_seconds())
    drift_plan = PLANS.index(cfg.drift_price_plan)
    drift_event = EVENTS.index(cfg.drift_event)

    # ---- state --------------------------------------------------------------------------------
    plan = plan0.copy()
    churn = np.full(n, NEVER, dtype=np.int64)
    counts = np.zeros((n_steps, n), dtype=np.int32)
    last_inv_s = np.full(n, LONG_AGO, dtype=np.int64)
    last_inv_plan = plan0.copy()
    hike_s = np.full(n, NEVER, dtype=np.int64)
    up_s = np.full(n, LONG_AGO, dtype=np.int64)
    down_s = np.full(n, LONG_AGO, dtype=np.int64)
    failed_c: list[np.ndarray] = [np.zeros(0, np.int64)]
    failed_t: list[np.ndarray] = [np.zeros(0, np.int64)]
    tk_c: list[np.ndarray] = [np.zeros(0, np.int64)]
    tk_t: list[np.ndarray] = [np.zeros(0, np.int64)]
    tk_r: list[np.ndarray] = [np.zeros(0, np.int64)]
    nps_c: list[np.ndarray] = [np.zeros(0, np.int64)]
    nps_t: list[np.ndarray] = [np.zeros(0, np.int64)]
    nps_v: list[np.ndarray] = [np.zeros(0)]

    act_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    rev_parts: list[dict[str, np.ndarray]] = []
    fb_parts: list[dict[str, np.ndarray]] = []
    truth_parts: list[tuple[np.ndarray, int, np.ndarray]] = []
    waves = [s for s in month_s[::3] + 14 * DAY if 0 <= s < end_s]  # quarterly NPS survey dates

    for k in range(n_steps):
        t0 = k * step
        t1 = min(t0 + step, end_s)

        # ---- observable signals at T = t0 (rows dated strictly before T) --------------------
        recent = counts[k - 1].astype(float) if k >= 1 else np.zeros(n)
        prev = counts[k - 2].astype(float) if k >= 2 else np.zeros(n)
        fc, ft = np.concatenate(failed_c), np.concatenate(failed_t)
        failed90 = _bincount(fc[(ft < t0) & (ft >= t0 - 90 * DAY)], n)
        tc, tt, tr = np.concatenate(tk_c), np.concatenate(tk_t), np.concatenate(tk_r)
        is_open = (tt < t0) & (tr >= t0)
        open_now = _bincount(tc[is_open], n)
        long_open = _bincount(tc[is_open & (tt < t0 - 7 * DAY)], n)
        nc, nt = np.concatenate(nps_c), np.concatenate(nps_t)
        seen = nt < t0
        last_nps = _last_per_customer(nc[seen], nt[seen], np.concatenate(nps_v)[seen], n)
        hike_recent = (hike_s < t0) & (hike_s >= t0 - 90 * DAY)
        active = (signup < t0) & (churn > t0)

        if k >= 1 and t0 + step <= end_s:
            date = cfg.start + pd.Timedelta(seconds=t0)
            responded = ~np.isnan(last_nps)
            score = np.where(responded, last_nps, 7.0)
            logit = (
                HAZARD["intercept"]
                + HAZARD["usage_drop"] * np.maximum(np.log1p(prev) - np.log1p(recent), 0.0)
                + HAZARD["activity"] * np.log1p(recent)
                + HAZARD["no_activity"] * (recent == 0)
                + HAZARD["nps"] * (7.0 - score)
                + HAZARD["detractor"] * (responded & (score <= 6))
                + HAZARD["promoter"] * (responded & (score >= 9))
                + HAZARD["open_tickets"] * np.minimum(open_now, 3)
                + HAZARD["long_open"] * np.minimum(long_open, 2)
                + HAZARD["price_rise"] * hike_recent
                + HAZARD["failed_payments"] * np.minimum(failed90, 2)
                + HAZARD["downgrade"] * ((down_s < t0) & (down_s >= t0 - 90 * DAY))
                + HAZARD["upgrade"] * ((up_s < t0) & (up_s >= t0 - 90 * DAY))
                + HAZARD_PLAN[plan]
                + HAZARD_SIZE[size]
                + HAZARD_CHANNEL[channel]
                + HAZARD["new_customer"] * np.exp(-(t0 - signup) / DAY / 120.0)
                + HAZARD["season"] * math.cos(2 * math.pi * (date.day_of_year - 15) / 365.25)
                + frailty
            )
            idx = np.flatnonzero(active)
            p = 1.0 / (1.0 + np.exp(-logit[idx]))
            truth_parts.append((idx, t0, p))
            leaving = idx[rng.random(len(idx)) < p]
            churn[leaving] = t0 + 1 + np.floor(rng.random(len(leaving)) * step).astype(np.int64)

        # ---- latent dynamics for this step --------------------------------------------------
        jump = np.where(rng.random(n) < 0.04, -1.2, 0.0)
        hiked_last_step = (hike_s < t0) & (hike_s >= t0 - step)
        failed_last_step = _bincount(fc[(ft < t0) & (ft >= t0 - step)], n)
        sat = (
            sat_mean
            + 0.8 * (sat - sat_mean)
            + rng.normal(0.0, 0.3, n)
            + jump
            - 0.25 * np.minimum(long_open, 2)
            - 0.6 * hiked_last_step
            - 0.15 * np.minimum(failed_last_step, 2)
        )
        drift = 0.7 * drift + rng.normal(0.0, 0.25, n)
        engagement = usage_base + 0.6 * sat + drift

        # who is around in [t0, t1), and for how long
        present = np.flatnonzero((signup < t1) & (churn > t0))
        lo = np.maximum(signup[present], t0)
        hi = np.minimum(churn[present], t1)
        span = np.maximum(hi - lo, 0)
        exposure = span / step
        exiting = churn[present] <= t1

        # ---- activity ----------------------------------------------------------------------
        rate = (
            cfg.events_per_active_day
            * cfg.step_days
            * usage_mult[present]
            * USAGE_BY_PLAN[plan[present]]
            * np.exp(engagement[present] - 0.3)
            * exposure
            * np.where(exiting, cfg.exit_usage_factor, 1.0)
        )
        cnt = rng.poisson(rate)
        pos = np.repeat(np.arange(len(present)), cnt)
        ev_c = present[pos]
        ev_t = lo[pos] + np.floor(rng.random(len(pos)) * span[pos]).astype(np.int64)
        ev_e = _rows_choice(rng, EVENT_MIX_BY_PLAN, plan[ev_c]).astype(np.int8)
        val = np.exp(
            np.log(EVENT_VALUE_MEDIAN[ev_e])
            + EVENT_VALUE_SIGMA[ev_e] * rng.standard_normal(len(ev_e))
        )
        val = np.where(ev_e >= 3, np.ceil(val), np.round(val, 1))
        is_invite = ev_e == EVENTS.index("invite_user")
        val[is_invite] = 1 + rng.poisson(0.4, int(is_invite.sum()))
        if drift_s < t1:  # the product change: keep drift_event_factor of that event's rows
            hidden = (ev_e == drift_event) & (ev_t >= drift_s)
            hidden &= rng.random(len(ev_e)) >= cfg.drift_event_factor
            ev_c, ev_t, ev_e, val = ev_c[~hidden], ev_t[~hidden], ev_e[~hidden], val[~hidden]
        order = np.argsort(ev_t)
        act_parts.append((ev_c[order], ev_t[order], ev_e[order], val[order]))
        counts[k] = _bincount(ev_c, n)

        # ---- revenue: invoices due in [t0, t1), in calendar order -----------------------------
        for j in np.flatnonzero((month_s < t1) & (month_end_s > t0)):
            due = inv[:, j]
            rows = np.flatnonzero((due >= t0) & (due < t1) & (due < churn))
            if not len(rows):
                continue
            at = due[rows]
            u = rng.random(len(rows))
            renewal = at > signup[rows]
            p_up = (
                np.where(plan[rows] < 2, cfg.upgrade_rate * np.exp(0.5 * engagement[rows]), 0.0)
                * renewal
            )
            p_down = (
                np.where(plan[rows] > 0, cfg.downgrade_rate * np.exp(-0.9 * sat[rows]), 0.0)
                * renewal
            )
            up = u < p_up
            down = ~up & (u < p_up + p_down)
            plan[rows[up]] += 1
            plan[rows[down]] -= 1
            up_s[rows[up]] = at[up]
            down_s[rows[down]] = at[down]
            cur = plan[rows]
            list_price = LIST_PRICE[cur] * np.where(
                (cur == rise_plan) & (at >= rise_s), cfg.price_rise_factor, 1.0
            )
            drifted = (cur == drift_plan) & (at >= drift_s)
            list_price = list_price * np.where(drifted, cfg.drift_price_factor, 1.0)
            amount = np.round(list_price * np.where(cur > 0, seats[rows], 1.0) * discount[rows], 2)
            hiked = (
                (cur == rise_plan)
                & (at >= rise_s)
                & (last_inv_s[rows] < rise_s)
                & (last_inv_s[rows] >= 0)
            )
            hiked |= drifted & (last_inv_s[rows] < drift_s) & (last_inv_s[rows] >= 0)
            hiked &= last_inv_plan[rows] == cur
            hike_s[rows[hiked]] = at[hiked]
            last_inv_s[rows] = at
            last_inv_plan[rows] = cur

            fails = rng.random(len(rows)) < fail_prob[rows] * np.where(sat[rows] < -0.5, 1.5, 1.0)
            twice = fails & (rng.random(len(rows)) < 0.3)
            retry1 = at + 3 * DAY + rng.integers(0, DAY, len(rows))
            retry2 = retry1 + 4 * DAY
            paid_at = np.where(twice, retry2, np.where(fails, retry1, at))
            f_c = np.r_[rows[fails], rows[twice]]
            f_t = np.r_[at[fails], retry1[twice]]
            f_a = np.r_[amount[fails], amount[twice]]
            failed_c.append(f_c)
            failed_t.append(f_t)
            refund = rng.random(len(rows)) < cfg.refund_rate * np.where(sat[rows] < -0.5, 2.0, 1.0)
            partial = rng.random(len(rows)) < 0.4
            r_amt = -np.round(amount * np.where(partial, rng.uniform(0.2, 0.6, len(rows)), 1.0), 2)
            r_at = paid_at + rng.integers(1 * DAY, 20 * DAY, len(rows))
            rev_parts.append(
                {
                    "c": np.r_[rows, f_c, rows[refund]],
                    "t": np.r_[paid_at, f_t, r_at[refund]],
                    "amount": np.r_[amount, f_a, r_amt[refund]],
                    "kind": np.r_[
                        np.zeros(len(rows)), np.full(len(f_c), 3), np.full(int(refund.sum()), 2)
                    ].astype(np.int8),
                    "period": np.full(len(rows) + len(f_c) + int(refund.sum()), j, dtype=np.int64),
                }
            )

        # ---- tickets and CSAT ------------------------------------------------------------------
        t_rate = (
            cfg.tickets_per_month
            * (cfg.step_days / 30)
            * TICKETS_BY_SIZE[size[present]]
            * np.exp(-0.7 * sat[present])
            * exposure
        )
        pos = np.repeat(np.arange(len(present)), rng.poisson(t_rate))
        c = present[pos]
        at = lo[pos] + np.floor(rng.random(len(pos)) * span[pos]).astype(np.int64)
        hours = np.exp(rng.normal(math.log(18.0), 1.3, len(c))) * RESOLUTION_BY_PLAN[plan[c]]
        neglected = rng.random(len(c)) < 0.05 * np.where(sat[c] < -0.5, 2.0, 1.0)
        hours += neglected * rng.uniform(15 * 24, 60 * 24, len(c))
        resolved = at + np.ceil(hours * 3600).astype(np.int64)
        tk_c.append(c)
        tk_t.append(at)
        tk_r.append(resolved)
        answer = rng.random(len(c)) < cfg.csat_response_rate
        csat_at = resolved + np.ceil(rng.exponential(8.0, len(c)) * 3600 + 600).astype(np.int64)
        res_days = hours / 24
        csat = np.clip(
            np.round(4.4 - 0.45 * np.log1p(res_days) + 0.5 * sat[c] + rng.normal(0, 0.7, len(c))),
            1,
            5,
        )
        fb_parts.append(
            {
                "c": c,
                "t": at,
                "kind": np.full(len(c), 3),
                "score": np.full(len(c), np.nan),
                "resolved": resolved,
            }
        )
        fb_parts.append(
            {
                "c": c[answer],
                "t": csat_at[answer],
                "kind": np.full(int(answer.sum()), 1),
                "score": csat[answer],
            }
        )

        # ---- NPS survey waves -----------------------------------------------------------------
        for wave in (w for w in waves if t0 <= w < t1):
            eligible = np.flatnonzero((signup <= wave - 30 * DAY) & (churn > wave))
            p_answer = np.clip(
                cfg.nps_response_rate * (1 + 0.3 * np.tanh(engagement[eligible])), 0, 0.95
            )
            c = eligible[rng.random(len(eligible)) < p_answer]
            at = wave + np.ceil(rng.exponential(3.0, len(c)) * DAY).astype(np.int64)
            score = np.clip(np.round(7.2 + 1.8 * sat[c] + rng.normal(0, 1.2, len(c))), 0, 10)
            nps_c.append(c)
            nps_t.append(at)
            nps_v.append(score)
            with_text = rng.random(len(c)) < cfg.text_share
            sentiment = np.where(score <= 6, 0, np.where(score <= 8, 1, 2))
            text = _texts(rng, sentiment, hike_recent[c] | (plan[c] == 0), open_now[c] > 0)
            fb_parts.append(
                {
                    "c": c,
                    "t": at,
                    "kind": np.zeros(len(c)),
                    "score": score,
                    "text": np.where(with_text, text, None),
                }
            )

        # ---- reviews ----------------------------------------------------------------------------
        p_review = (
            cfg.reviews_per_month
            * (cfg.step_days / 30)
            * exposure
            * (1 + 1.5 * (np.abs(sat[present] - 0.2) > 1))
        )
        sel = rng.random(len(present)) < p_review
        c = present[sel]
        at = lo[sel] + np.floor(rng.random(len(c)) * span[sel]).astype(np.int64)
        score = np.clip(np.round(3.6 + 1.1 * sat[c] + rng.normal(0, 0.8, len(c))), 1, 5)
        sentiment = np.where(score <= 2, 0, np.where(score == 3, 1, 2))
        text = _texts(rng, sentiment, hike_recent[c] | (plan[c] == 0), open_now[c] > 0)
        text = np.where(rng.random(len(c)) < 0.8, text, None)
        fb_parts.append({"c": c, "t": at, "kind": np.full(len(c), 2), "score": score, "text": text})

    # ---- assemble: drop whatever falls after churn or after the data end ------------------------
    limit = np.minimum(churn, end_s)
    start = cfg.start
    cat_ids = pd.CategoricalDtype(pd.Index(ids.astype(str), dtype="str"))

    def ids_of(c: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(c.astype(np.int32), dtype=cat_ids)

    customers = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "signup_at": _timestamps(start, signup),
            "churned_at": _timestamps(start, churn),
            "plan": pd.array(np.asarray(PLANS, dtype=object)[plan0], dtype="str"),
            "country": pd.array(np.asarray(COUNTRIES, dtype=object)[country], dtype="str"),
            "channel": pd.array(np.asarray(CHANNELS, dtype=object)[channel], dtype="str"),
            "company_size": pd.array(np.asarray(SIZES, dtype=object)[size], dtype="str"),
        }
    )

    a_c = np.concatenate([p[0] for p in act_parts])
    a_t = np.concatenate([p[1] for p in act_parts])
    a_e = np.concatenate([p[2] for p in act_parts])
    a_v = np.concatenate([p[3] for p in act_parts])
    del act_parts
    activity = pd.DataFrame(
        {
            "customer_id": ids_of(a_c),
            "at": _timestamps(start, a_t),
            "event": pd.Categorical.from_codes(a_e, categories=list(EVENTS)),
            "value": a_v,
        }
    )
    del a_c, a_t, a_e, a_v

    r = {
        key: np.concatenate([p[key] for p in rev_parts]) if rev_parts else np.zeros(0)
        for key in ("c", "t", "amount", "kind", "period")
    }
    keep = r["t"] < limit[r["c"].astype(np.int64)] if len(r["c"]) else np.zeros(0, bool)
    order = np.lexsort((r["c"][keep], r["t"][keep]))
    rc = r["c"][keep][order].astype(np.int64)
    revenue = pd.DataFrame(
        {
            "customer_id": ids_of(rc),
            "at": _timestamps(start, r["t"][keep][order].astype(np.int64)),
            "amount": r["amount"][keep][order].astype(float),
            "kind": pd.Categorical.from_codes(
                r["kind"][keep][order].astype(np.int8),
                categories=["invoice", "order", "refund", "failed_payment"],
            ),
            "period": period_ns[r["period"][keep][order].astype(np.int64)],
        }
    )

    f_c = np.concatenate([p["c"] for p in fb_parts]).astype(np.int64)
    f_t = np.concatenate([p["t"] for p in fb_parts]).astype(np.int64)
    f_k = np.concatenate([p["kind"] for p in fb_parts]).astype(np.int8)
    f_s = np.concatenate([p["score"] for p in fb_parts]).astype(float)
    f_r = np.concatenate([p.get("resolved", np.full(len(p["c"]), NEVER)) for p in fb_parts]).astype(
        np.int64
    )
    f_x = np.concatenate(
        [p.get("text", np.full(len(p["c"]), None, dtype=object)) for p in fb_parts]
    )
    keep = f_t < limit[f_c]
    f_c, f_t, f_k, f_s, f_r, f_x = (x[keep] for x in (f_c, f_t, f_k, f_s, f_r, f_x))
    ticket = f_k == 3
    f_r = np.where(ticket & (f_r < limit[f_c]), f_r, NEVER)  # unresolved by churn / data end: open
    order = np.lexsort((f_c, f_t))
    status = np.where(ticket, np.where(f_r < NEVER, "closed", "open"), None).astype(object)
    feedback = pd.DataFrame(
        {
            "customer_id": ids_of(f_c[order]),
            "at": _timestamps(start, f_t[order]),
            "kind": pd.Categorical.from_codes(
                f_k[order], categories=["nps", "csat", "review", "ticket"]
            ),
            "score": f_s[order],
            "text": pd.array(f_x[order], dtype="str"),
            "status": pd.array(status[order], dtype="str"),
            "resolved_at": _timestamps(start, f_r[order]),
        }
    )

    tables = validate_tables(customers, activity, feedback, revenue)

    t_idx = np.concatenate([p[0] for p in truth_parts]) if truth_parts else np.zeros(0, np.int64)
    t_at = (
        np.concatenate([np.full(len(p[0]), p[1], dtype=np.int64) for p in truth_parts])
        if truth_parts
        else np.zeros(0, np.int64)
    )
    t_p = np.concatenate([p[2] for p in truth_parts]) if truth_parts else np.zeros(0)
    truth = pd.DataFrame(
        {
            "customer_id": pd.array(ids[t_idx], dtype="str"),
            "as_of": _timestamps(start, t_at),
            "churn_probability": t_p.astype(float),
        }
    )
    return tables, truth


def demo_settings(config: DemoConfig | None = None) -> tuple[FeatureConfig, dict[str, Any]]:
    """The feature configuration and the [training] settings a demo data folder carries: what
    `churn train --data` reads from its config.toml (write_demo) and what the backtest benchmark
    trains with, so that both see the same inputs.

    The generator's attributes are known at signup (plan at signup, not today's plan): they are
    declared as model features; an export-day snapshot such as a status would not be. The churn
    horizon is the simulation step (so labels match the truth), and the training dates lie on
    the simulation's step grid, where the true probabilities are known. model_name: the demo's
    own registered model (one per dataset, see training.tracking)."""
    cfg = config or DemoConfig()
    features = FeatureConfig(customer_attributes=DEMO_CUSTOMER_ATTRIBUTES).with_churn(
        mode="contractual", horizon_days=cfg.step_days
    )
    training = {
        "model_name": DEMO_MODEL_NAME,
        "date_from": str((cfg.start + pd.Timedelta(days=2 * cfg.step_days)).date()),
        "every_days": cfg.step_days,
    }
    return features, training


def write_demo(out_dir: str | Path, config: DemoConfig | None = None) -> dict:
    """Generate the demo data and write it: the contract's tables (atomically, via write_tables)
    with the truth as out_dir/truth.parquet and a config.toml of demo_settings, all in one
    atomic folder swap."""
    began = time.perf_counter()
    tables, truth = generate_demo(config)
    out_dir = Path(out_dir)
    churn, grid = demo_settings(config)
    # The generator's amounts are in euros: reasons and the report show them with the sign.
    settings = config_to_toml(churn, training=grid, scoring={"currency": "EUR"})
    extra = {"truth.parquet": truth, DATA_CONFIG_FILE: settings}
    write_tables(tables, out_dir, extra_files=extra)
    churned = int(tables.customers["churned_at"].notna().sum())
    return {
        "out_dir": str(out_dir),
        "customers": len(tables.customers),
        "activity": len(tables.activity),
        "feedback": len(tables.feedback),
        "revenue": len(tables.revenue),
        "truth": len(truth),
        "churned": churned,
        "churn_share": churned / max(len(tables.customers), 1),
        "mean_monthly_churn_probability": float(truth["churn_probability"].mean())
        if len(truth)
        else float("nan"),
        "seconds": round(time.perf_counter() - began, 2),
    }
