"""Training configuration: observation dates, time-ordered splits, LightGBM, promotion rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from features.config import load_config

DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    # Small, regularised trees: churn labels are rare and noisy (a few % per horizon).
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 5.0,
    "max_bin": 255,
    "verbosity": -1,
}

# Signals whose direction is known: +1 more never lowers risk, -1 more never raises it.
# Applied as LightGBM monotone constraints to the features that exist.
DEFAULT_MONOTONE: dict[str, int] = {
    "tickets_open": 1,
    "tickets_open_over_7d": 1,
    "nps_last": -1,
    "nps_mean": -1,
    "events_trend_30d": -1,
    "events_7d": -1,
    "events_30d": -1,
    "active_days_7d": -1,
    "active_days_30d": -1,
}


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and judged. Dates are split in time order:
    train < validation (early stopping) < calibration < test (the holdout)."""

    date_from: str | None = None  # first observation date; None: derived from the data
    date_to: str | None = None  # last observation date; None: the last with a full horizon
    every_days: int = 30
    validation_dates: int = 2
    calibration_dates: int = 2  # 0: calibrate on the validation dates (short histories)
    test_dates: int = 3
    min_train_dates: int = 3
    purge: str = "all"  # "test": gaps only before the test dates (short histories)
    warmup_days: int = 90  # first observation date = first signup + warmup, when not given
    num_boost_round: int = 1000
    early_stopping_rounds: int = 50
    seed: int = 42
    num_threads: int = 2
    lgbm_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LGBM_PARAMS))
    monotone: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MONOTONE))
    calibration: str = "isotonic"  # or "sigmoid"
    risk_bands: dict[str, float] = field(default_factory=lambda: {"high": 0.10, "medium": 0.30})
    # risk_bands: share of the calibration slice in each band from the top; the rest is "low".
    # The registered model name, one per dataset; None: derived from the data folder
    # (training.tracking.model_name_for_data), as `churn train` and the notebook do.
    model_name: str | None = None
    # Labeled-table models take CRM columns, not event features: registered under their own
    # name so that they never become the champion the weekly job and the service use.
    # None: churn-<file stem>-labeled.
    labeled_model_name: str | None = None
    promotion_metric: str = "roc_auc"
    promotion_min_gain: float = 0.0
    promotion_min_rows: int = 200  # a smaller holdout never promotes (training.gate)
    promotion_min_churners: int = 20  # churners and non-churners the holdout needs at least
    # Declared customer attributes that `churn check` flags as label-like stop training unless
    # listed here (an analyst who has checked that the value is known before each date).
    allow_label_like: tuple[str, ...] = ()
    experiment: str = "churn"
    min_segment_rows: int = 200
    cv_folds: int = 5  # labeled-table mode

    def __post_init__(self) -> None:
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ValueError(
                f"calibration must be 'isotonic' or 'sigmoid', got {self.calibration!r}"
            )
        for name in ("validation_dates", "test_dates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.calibration_dates < 0:
            raise ValueError("calibration_dates must be 0 (use the validation dates) or more")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        raw = dict(raw)
        if raw.get("allow_label_like") is not None:
            raw["allow_label_like"] = tuple(raw["allow_label_like"])
        if "lgbm_params" in raw:
            raw["lgbm_params"] = {**DEFAULT_LGBM_PARAMS, **raw["lgbm_params"]}
        return cls(**raw)


def train_config_from_file(path: str | Path | None) -> TrainConfig:
    """The [training] section of a TOML/JSON configuration file."""
    return TrainConfig.from_dict(load_config(path).get("training", {}))
