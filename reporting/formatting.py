"""One formatter for numbers people read, used by the CLI, the weekly report, the CSV hand-off
and reasons in words, so that a probability, an amount or a duration reads the same everywhere.
Missing values read as a dash, never as "nan"."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

MISSING = "–"

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CHF": "CHF "}


def is_missing(value: object) -> bool:
    """True for None, NaN, pandas' NA and NaT: values that measure nothing."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def count(n: object) -> str:
    """A whole number with thousands separators: 3177.0 -> '3,177'."""
    if is_missing(n):
        return MISSING
    return f"{round(float(n)):,}"


def percent(share: object, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: 0.1234 -> '12.3%'. Shares that round to zero but are
    not zero read '<0.1%' so that a small risk is not shown as none."""
    if is_missing(share):
        return MISSING
    value = float(share) * 100
    smallest = 10.0**-digits
    if 0 < abs(value) < smallest:
        return f"<{smallest:.{digits}f}%" if value > 0 else f"-<{smallest:.{digits}f}%"
    return f"{value:.{digits}f}%"


def probability(p: object) -> str:
    """A churn probability as a percentage with one decimal: 0.0288 -> '2.9%'."""
    return percent(p, 1)


def band_ranges(thresholds: dict[str, float], low: str = "low") -> dict[str, str]:
    """Each risk band's probabilities in words, from its lowest probability (training.model's
    band_thresholds; the `low` band holds the rest): {"high": "96.5% and above", "medium":
    "94.1% to 96.5%", "low": "below 94.1%"}. One decimal, more where two thresholds would
    read alike. A spreadsheet's "low" otherwise reads as safe where it held customers at 94 %
    (a commit log whose contributors mostly leave)."""
    ordered = sorted(thresholds.items(), key=lambda kv: -kv[1])  # highest threshold first
    values = [v for _, v in ordered]
    digits = 1
    while digits < 4 and len({percent(v, digits) for v in values}) < len(set(values)):
        digits += 1
    out: dict[str, str] = {}
    upper: str | None = None
    for name, value in ordered:
        bound = percent(value, digits)
        out[name] = f"{bound} and above" if upper is None else f"{bound} to {upper}"
        upper = bound
    out[low] = f"below {upper}" if upper is not None else "all"
    return out


def points(pp: object, digits: int = 1) -> str:
    """A signed change in percentage points: 4.24 -> '+4.2 pts', -0.5 -> '-0.5 pts'."""
    if is_missing(pp):
        return MISSING
    value = float(pp)
    text = f"{value:+.{digits}f}"
    if float(text) == 0:
        text = f"{0:.{digits}f}"
    return f"{text} pts"


def points_with_level(pp: object, level_pp: object, digits: int = 1) -> str:
    """A change in points with the part the time of year's churn level made, when it shows at
    this rounding: (12.04, 2.1) -> '+12.0 pts (+2.1 the time of year)', (12.04, 0.01) ->
    '+12.0 pts'."""
    text = points(pp, digits)
    if is_missing(pp) or is_missing(level_pp) or float(f"{float(level_pp):.{digits}f}") == 0:
        return text
    return f"{text} ({points(level_pp, digits)[:-4]} the time of year)"


def change(value: object, form: str = "count", currency: str | None = None) -> str:
    """A signed change since the previous run, in the form of the figure it changes:
    change(12) -> '+12', change(-3.25, 'number') -> '-3.2', change(1234.6, 'money', 'EUR') ->
    '+€1,235'; a change that rounds to nothing has no sign ('0', '€0')."""
    if is_missing(value):
        return MISSING
    v = float(value)
    if form == "count":
        text = count(abs(v))
    elif form == "number":
        text = number(abs(v))
    elif form == "money":
        text = money(abs(v), currency)
    else:
        raise ValueError(f"unknown change form {form!r}: use 'count', 'number' or 'money'")
    if not any(ch.isdigit() and ch != "0" for ch in text):
        return text if form == "money" else "0"
    return f"+{text}" if v > 0 else f"-{text}"


# Amounts below it, unless whole, keep their cents: a coffee box's £34.50 and £11.50 boxes read
# "£34" and "£12", and a price rise from 11.50 to 13.00 "£12 -> £13".
SMALL_AMOUNT = 100


def money(amount: object, currency: str | None = None, digits: int = 0) -> str:
    """An amount with its currency: money(1234.5, 'EUR') -> '€1,235'; unknown codes follow the
    number ('1,235 SEK'); without a currency just the number. Amounts below SMALL_AMOUNT keep
    their cents unless whole (money(0.59, 'USD') -> '$0.59', money(5, 'USD') -> '$5')."""
    if is_missing(amount):
        return MISSING
    value = float(amount)
    small = 0 < abs(value) < SMALL_AMOUNT
    if digits == 0 and small and round(abs(value) * 100) % 100:  # not whole to the cent
        digits = 2  # "$0.59", not "$1": a grocery's basket of 59 cents read "Revenue of $1"
    # half away from zero, as prices are rounded: format() rounds half to even ("£34" for
    # 34.50 beside "£22" for 21.50)
    rounded = abs(value)
    if math.isfinite(rounded):
        step = Decimal(1).scaleb(-digits)
        rounded = float(Decimal(repr(rounded)).quantize(step, rounding=ROUND_HALF_UP))
    number = f"{rounded:,.{digits}f}"
    sign = "-" if value < 0 and float(number.replace(",", "")) != 0 else ""
    if not currency:
        return f"{sign}{number}"
    code = currency.upper()
    symbol = CURRENCY_SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{number} {code}"
    return f"{sign}{symbol}{number}"


def interval(low: object, high: object, kind: str = "percent", currency: str | None = None) -> str:
    """A confidence interval: interval(0.1, 0.15) -> '10.0–15.0%'; kind 'number' for plain
    numbers with 3 decimals (ROC AUC), 'money' for amounts in `currency` ('€1,200–€9,800')."""
    if is_missing(low) or is_missing(high):
        return MISSING
    if kind == "money":
        return f"{money(low, currency)}–{money(high, currency)}"
    if kind == "percent":
        return f"{float(low) * 100:.1f}–{float(high) * 100:.1f}%"
    if kind == "number":
        return f"{float(low):.3f}–{float(high):.3f}"
    raise ValueError(f"unknown interval kind {kind!r}: use 'percent', 'number' or 'money'")


def duration_days(days: object, *, at_most: bool = False) -> str:
    """A duration given in days, in the unit people use for it: '1 day', '34 days', '8 weeks'
    from 8 weeks up to 13, then months ('8 months') and years ('2.5 years').

    at_most: rounded down, for a sentence that claims nothing happened within it: "No activity
    in the last 8 days" had been said of a last event 7.8 days ago, and "... 13 weeks" of one
    88 days ago."""
    if is_missing(days):
        return MISSING
    d = float(days)
    if d < 0:
        raise ValueError(f"a duration cannot be negative: {d} days")
    whole = math.floor if at_most else round
    if d < 1:
        hours = d * 24
        return "less than an hour" if hours < 1 else _unit(whole(hours), "hour")
    if d < 56:
        return _unit(whole(d), "day")
    if d < 91:
        return _unit(whole(d / 7), "week")
    if d < 730:
        return _unit(whole(d / 30.4375), "month")
    years = d / 365.25
    return f"{math.floor(years * 10) / 10 if at_most else years:.1f} years"


def number(value: object, digits: int = 1) -> str:
    """A plain measurement: whole values without decimals (3.0 -> '3'), others rounded."""
    if is_missing(value):
        return MISSING
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == round(v) and abs(v) < 1e15:
        return f"{round(v):,}"
    return f"{v:,.{digits}f}"


# Decimals of a probability in percent in the hand-off files (scores.csv, alerts.csv): enough
# that a sort keeps the model's ranking where probabilities crowd together (one decimal tied
# 283 of a commit log's 459 contributors, near-certain leavers within 96.2-96.6 %).
PROBABILITY_DIGITS = 2


def percent_number(shares: Iterable[object], digits: int = 1) -> list[str | None]:
    """Shares as plain percentage numbers for a CSV column (no % sign, no thousands separator,
    a dot for decimals): [0.1234, nan] -> ['12.3', None]; None is written as an empty cell."""
    return [None if is_missing(v) else _plain(float(v) * 100, digits) for v in shares]


def points_number(values: Iterable[object], digits: int = 1) -> list[str | None]:
    """Percentage points as plain numbers for a CSV column: [4.24, -0.51, nan] ->
    ['4.2', '-0.5', None] (the sign only when negative, so every importer reads a number)."""
    return [None if is_missing(v) else _plain(float(v), digits) for v in values]


def _plain(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def size_bytes(n: object) -> str:
    """A size in bytes in binary units, as disks and memory are reported: 1536 -> '1.5 KiB',
    73400320 -> '70.0 MiB'."""
    if is_missing(n):
        return MISSING
    value = float(n)
    if value < 0:
        raise ValueError(f"a size cannot be negative, got {n!r}")
    if value < 1024:
        return _unit(round(value), "byte")
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}"
    raise AssertionError("unreachable")


def _unit(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


__all__ = [
    "CURRENCY_SYMBOLS",
    "MISSING",
    "PROBABILITY_DIGITS",
    "change",
    "count",
    "duration_days",
    "interval",
    "is_missing",
    "money",
    "number",
    "percent",
    "percent_number",
    "points",
    "points_number",
    "probability",
    "size_bytes",
]


_SIBILANT_PLURAL = re.compile(r"(?:ss|x|z|ch|sh)es$")


def quantity(shown: str, unit: str) -> str:
    """A number with its unit's words, in the singular for exactly 1: "1 score point",
    "1 second listened", "6,861 seconds listened". The words are the user's (value_unit,
    in the plural); the first word that reads as an English plural is made singular."""
    if shown not in ("1", "1.0", "-1", "-1.0"):
        return f"{shown} {unit}"
    words = unit.split(" ")
    for i, word in enumerate(words):
        if _SIBILANT_PLURAL.search(word):
            words[i] = word[:-2]
            break
        if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            words[i] = word[:-1]
            break
    return f"{shown} {' '.join(words)}"
