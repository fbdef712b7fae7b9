"""The customers' buying process as a BG/NBD model (Fader, Hardie & Lee 2005, "Counting your
customers the easy way"), for non-contractual churn: each customer buys at their own Poisson
rate while alive (rates gamma-distributed over customers: r, alpha) and may drop out after any
purchase (dropout probabilities beta-distributed: a, b). Its four parameters describe the whole
customer base; with them, a customer's repeat purchases x, the time of the last one t_x and
their age T (all since the first purchase) give the chance of no purchase in the next h days.

Why a model of its own beside the trees: with months of history the trees see young customers
only and cannot extrapolate in age, while the BG/NBD formula does (CDNOW, 6 months before the
cut: BG/NBD alone ranked the customers better than the project; benchmarks/README.md, session
10). Its probability is one more feature; the trees and the linear term decide how much it is
worth.

The parameters are a property of the customer base at a date, like the non-contractual
lookback: resolve_config fits them once on the qualifying activity before the last training
date (all customers with a purchase by then, lapsed ones included: they are what tells a
dropout from a long gap) and records them in the configuration that travels with the model, so
training, the weekly job, the service and the Spark engine compute the same feature. For the
training rows of earlier dates this is a look-ahead of four population numbers (how customers
in general buy, fitted on thousands of customers), never of a customer's own future; the
lookback is resolved the same way. The fit
sees each customer as one (x, t_x, T) triple in whole days; equal triples are counted once with
a weight, so the fit costs the number of distinct triples, not of customers. Time is in weeks
inside the model (days / 7), as in the literature.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln

# Fewer customers with a purchase than this, or fewer repeat buyers than this: no parameters
# (the likelihood is flat in them; the feature is then missing for every customer).
MIN_CUSTOMERS = 50
MIN_REPEAT_BUYERS = 10
WEEK_DAYS = 7.0
PARAM_MIN, PARAM_MAX = 1e-6, 1e6


def distinct_triples(
    x: np.ndarray, tx_days: np.ndarray, age_days: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (x, t_x, T) rows (whole days) and how many customers have each: what the
    fit reads (fit_buying_process)."""
    stacked = np.column_stack([x, tx_days, age_days]).astype(np.int64)
    if not len(stacked):
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    triples, counts = np.unique(stacked, axis=0, return_counts=True)
    return triples, counts


# The likelihood is evaluated a few hundred times: beyond this many distinct triples, times are
# binned (to whole weeks, then 4 weeks, ...) so the fit stays near a second for millions of
# customers; the bins are far finer than the parameters can resolve.
MAX_TRIPLES = 20_000


def _coarsened(triples: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_TRIPLES distinct triples: t_x and T moved to the middle of bins of 7, 28,
    84, ... days until they fit (a one-time buyer's t_x stays 0; deterministic: both engines
    pass the same sorted counts)."""
    counts = np.asarray(counts, dtype=np.int64)
    width = 7
    while len(triples) > MAX_TRIPLES:
        binned = triples.copy()
        binned[:, 1:] = binned[:, 1:] // width * width + width // 2
        binned[:, 1] = np.where(binned[:, 0] > 0, binned[:, 1], 0)
        binned[:, 2] = np.maximum(binned[:, 2], binned[:, 1])
        triples, inverse = np.unique(binned, axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=counts).astype(np.int64)
        width *= 4 if width == 7 else 3
    return triples, counts


def _neg_log_likelihood(
    log_params: np.ndarray, x: np.ndarray, tx: np.ndarray, age: np.ndarray, weight: np.ndarray
) -> float:
    """The BG/NBD negative log-likelihood of weighted (x, t_x, T) rows (Fader, Hardie & Lee
    2005, eq. 6); huge where the optimiser wanders out of the numbers' range."""
    r, alpha, a, b = np.exp(log_params)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        part1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        part2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        part3 = -(r + x) * np.log(alpha + age)
        part4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + tx),
            -np.inf,
        )
        value = -float(np.sum(weight * (part1 + part2 + np.logaddexp(part3, part4))))
    return value if np.isfinite(value) else 1e300


def fit_buying_process(
    triples: np.ndarray, counts: np.ndarray
) -> tuple[float, float, float, float] | None:
    """Maximum-likelihood (r, alpha, a, b) from distinct (x, t_x, T) triples in days and their
    customer counts; alpha per week. None with too few customers or repeat buyers to tell the
    parameters apart, or when the optimiser does not settle."""
    triples, counts = _coarsened(np.asarray(triples, dtype=np.int64).reshape(-1, 3), counts)
    triples = triples.astype(float)
    counts = np.asarray(counts, dtype=float)
    if counts.sum() < MIN_CUSTOMERS or counts[triples[:, 0] > 0].sum() < MIN_REPEAT_BUYERS:
        return None
    x = triples[:, 0]
    tx = triples[:, 1] / WEEK_DAYS
    age = np.maximum(triples[:, 2] / WEEK_DAYS, tx)
    start = np.log([0.5, max(float(np.average(age, weights=counts)), 1.0), 0.5, 2.0])
    result = minimize(
        _neg_log_likelihood,
        start,
        args=(x, tx, age, counts),
        method="Nelder-Mead",
        options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6},
    )
    if not np.all(np.isfinite(result.x)) or result.fun >= 1e300:
        return None
    # A customer base without dropouts drives a (or b) towards 0: kept just above it, where the
    # formulas hold and the model is the plain NBD it tends to.
    r, alpha, a, b = (float(v) for v in np.clip(np.exp(result.x), PARAM_MIN, PARAM_MAX))
    if not (PARAM_MIN < r < PARAM_MAX and PARAM_MIN < alpha < PARAM_MAX):
        return None  # purchase rates the data cannot pin down: no parameters, no feature
    return r, alpha, a, b


def no_purchase_probability(
    params: tuple[float, float, float, float],
    x: np.ndarray,
    tx_days: np.ndarray,
    age_days: np.ndarray,
    horizon_days: float,
) -> np.ndarray:
    """P(no purchase in the next `horizon_days`) per customer: dead, or alive and not buying,
    P(dead) + P(alive) ((alpha + T) / (alpha + T + h))^(r + x). NaN where a value is missing."""
    r, alpha, a, b = params
    x = np.asarray(x, dtype=float)
    tx = np.asarray(tx_days, dtype=float) / WEEK_DAYS
    age = np.maximum(np.asarray(age_days, dtype=float) / WEEK_DAYS, tx)
    h = horizon_days / WEEK_DAYS
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        odds = np.where(
            x > 0,
            a / np.maximum(b + x - 1, 1e-12) * ((alpha + age) / (alpha + tx)) ** (r + x),
            0.0,
        )
        alive = 1.0 / (1.0 + odds)
        silent = ((alpha + age) / (alpha + age + h)) ** (r + x)
        return alive * silent + (1.0 - alive)
