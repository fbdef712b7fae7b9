"""Settings of the weekly job's outputs for people: alerts and the report ([scoring] section of
the data folder's config.toml, beside [features] and [training]).

```toml
[scoring]
alert_rise_points = 10.0          # a rise of at least this many percentage points is an alert
alert_rise_bands = ["high", "medium"]  # ... for a customer in these bands now
alert_entered_high_points = 1.0    # an entry into the high band needs a rise of this many
alert_new_reason_bands = ["high"]  # bands in which a new top reason is an alert
alert_new_reason_points = 1.0      # ... where the risk rose by at least this many points
currency = "EUR"                   # revenue at risk in the report; none: plain numbers
scheduled_cancellation_share = 0.95  # of the cancellations an export holds, those that happen
```
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from features.config import load_config

BANDS = ("high", "medium", "low")


@dataclass(frozen=True)
class ScoringConfig:
    """What the weekly job tells people. A new top reason is an alert only in the bands listed
    (by default the high band: a low-risk customer whose largest small driver changed is noise
    to a customer-success team). An entry into the high band is an alert where the risk rose by
    at least alert_entered_high_points since the previous run (net of the time of year's
    level, as the rise rule), or the customer is new in the scores: a commit log's contributors
    "entered high" from 96.47 % to 96.55 %, a step over the band's threshold that is jitter.
    So a new top reason needs a rise of at least alert_new_reason_points: a purchase log's
    riskiest had "new top reasons" at +0.1 points, two drivers of equal weight trading places
    as a week passed ("Average order of $4.79", then "No activity in the last 50 days").
    A rise is an alert for a customer in the bands of alert_rise_bands now (by default high
    and medium): in a shop where most customers leave, 71 of a first run's 84 "risk rose"
    alerts were customers still in the low band, who churned less often than the average."""

    alert_rise_points: float = 10.0
    alert_rise_bands: tuple[str, ...] = ("high", "medium")
    alert_entered_high_points: float = 1.0
    alert_new_reason_bands: tuple[str, ...] = ("high",)
    alert_new_reason_points: float = 1.0
    currency: str | None = None
    # The share of the cancellations an export holds (a churned_at after its last record: a
    # subscription set to end at its term) that take effect rather than being withdrawn: the
    # churn probability of a customer whose cancellation falls within the horizon is this
    # share plus the rest times the model's, after it the rest times the model's (the customer
    # stays through the horizon unless it withdraws: serving.batch.with_scheduled_cancellations).
    scheduled_cancellation_share: float = 0.95

    def __post_init__(self) -> None:
        rise = self.alert_rise_points
        if isinstance(rise, bool) or not isinstance(rise, int | float) or not 0 < rise <= 100:
            raise ValueError(
                f"[scoring] alert_rise_points must be a number of percentage points in (0, 100], "
                f"got {rise!r}"
            )
        for name in ("alert_entered_high_points", "alert_new_reason_points"):
            step = getattr(self, name)
            if isinstance(step, bool) or not isinstance(step, int | float) or not 0 <= step <= 100:
                raise ValueError(
                    f"[scoring] {name} must be a number of percentage points in [0, 100], "
                    f"got {step!r}"
                )
        for name in ("alert_new_reason_bands", "alert_rise_bands"):
            bands = getattr(self, name)
            if isinstance(bands, str) or any(b not in BANDS for b in bands):
                raise ValueError(
                    f"[scoring] {name} must be a list of bands from {list(BANDS)}, got {bands!r}"
                )
            object.__setattr__(self, name, tuple(bands))
        share = self.scheduled_cancellation_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(
                "[scoring] scheduled_cancellation_share must be a share in [0, 1] (of the "
                f"scheduled cancellations that take effect), got {share!r}"
            )
        currency = self.currency
        if currency is not None and (not isinstance(currency, str) or not currency.strip()):
            raise ValueError(f"[scoring] currency must be a code such as 'EUR', got {currency!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScoringConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(
                f"unknown [scoring] settings {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**raw)


def scoring_config_from_file(path: str | Path | None) -> ScoringConfig:
    """The [scoring] section of a TOML/JSON configuration file (defaults when absent)."""
    return ScoringConfig.from_dict(load_config(path).get("scoring", {}))
