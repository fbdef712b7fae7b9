"""Training configuration: observation dates, the backtest, LightGBM, calibration, promotion."""

from __future__ import annotations

import warnings
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


# A smaller budget of training rows would leave too few churners to learn from.
MIN_TRAINING_ROWS = 1_000

# Settings of the former fixed split (train < validation < calibration < test), still found in
# config files written before the backtest planned its roles from the data: accepted, ignored.
LEGACY_SETTINGS = ("validation_dates", "calibration_dates", "purge")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained and judged (see training.splits and training.fit): observation
    dates, a backtest with a time holdout after a purged gap, settings chosen on purged folds,
    a refit on every complete date, and the promotion rule."""

    date_from: str | None = None  # first observation date; None: derived from the data
    date_to: str | None = None  # last observation date; None: the last with a full horizon
    every_days: int | None = None  # None: from the span of the data (6, 13, 20 or 27 days)
    warmup_days: int | None = None  # first date = first activity + warmup; None: from the data
    test_dates: int | None = None  # holdout dates; None: the last date, more if few churners
    min_holdout_churners: int = 100  # when test_dates is None
    folds: int = 3  # time folds (inside the dates before the holdout) that choose the settings
    min_train_dates: int = 3
    num_boost_round: int = 1000  # at most
    early_stopping_rounds: int = 50  # patience inside each fold
    seed: int = 42
    num_threads: int | None = None  # None: 1 below 1,000,000 training rows, else 2
    lgbm_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_LGBM_PARAMS))
    capacity: str = "auto"  # num_leaves and min_data_in_leaf from rows and churners; "fixed"
    monotone: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MONOTONE))
    calibration: str = "auto"  # "auto" = "sigmoid" (Platt on the logit); "isotonic" (interpolated)
    # The linear term's share of the score's spread (training.model.LinearTerm): a ridge logistic
    # regression beside the booster steadies the trees on short histories and small customer
    # bases. 0: the booster alone (the term then only breaks its ties).
    linear_share: float = 0.25
    # Also try this share on the selection folds and take it where their out-of-fold ROC AUC is
    # higher by at least MIN_SHARE_GAIN (training.fit.choose_linear_share): where the data's
    # hazard is log-linear, a larger linear part ranks better (an order export where 98 %
    # never buy again: +0.003 at two cuts). None: linear_share as it is.
    linear_share_alternative: float | None = 0.5
    bootstrap: int = 200  # resamples for the holdout's confidence intervals
    risk_bands: dict[str, float] = field(default_factory=lambda: {"high": 0.10, "medium": 0.30})
    # risk_bands: share of the latest date's customers in each band from the top; rest "low".
    # risk_band_ceilings: a band's probability threshold is never above this, so that a
    # customer more likely to leave than stay is "high" (and one in four "medium") whatever
    # their rank: where most customers churn, the top 10 % alone would call 99 % "low".
    risk_band_ceilings: dict[str, float] = field(
        default_factory=lambda: {"high": 0.50, "medium": 0.25}
    )
    # risk_band_caps: the most of the latest date's customers a band may hold (cumulative from
    # the top) however many are above its ceiling, so that where most customers leave the
    # bands still single some out. A cap, not a switch: a band grows with the share above its
    # ceiling up to the cap and stays there (two retrains of one grocery export, 47 % and 54 %
    # above 50 %, had given 221 and 6 alerts for the same customers on the same day).
    risk_band_caps: dict[str, float] = field(default_factory=lambda: {"high": 0.25, "medium": 0.50})
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
    # A baseline ahead of the model by less than the holdout's noise (its 95 % interval of the
    # ROC AUC gain spans 0): "model" promotes the model anyway, "baseline" registers the
    # baseline instead (training.gate).
    promotion_ties: str = "model"
    # Declared customer attributes that `churn check` flags as label-like stop training unless
    # listed here (an analyst who has checked that the value is known before each date).
    allow_label_like: tuple[str, ...] = ()
    experiment: str = "churn"
    min_segment_rows: int = 200
    # At most this many training rows (customers x observation dates): above it, the rows of a
    # random share of the customers (whole histories), so that memory stays bounded (about 6 GB
    # per million rows of ~80 features at the peak). Every customer is still scored. 0: all.
    max_training_rows: int | None = 2_000_000
    cv_folds: int = 5  # labeled-table mode

    def __post_init__(self) -> None:
        if self.calibration not in ("auto", "isotonic", "sigmoid"):
            raise ValueError(
                f"calibration must be 'auto', 'isotonic' or 'sigmoid', got {self.calibration!r}"
            )
        if self.promotion_ties not in ("model", "baseline"):
            raise ValueError(
                f"promotion_ties must be 'model' or 'baseline', got {self.promotion_ties!r}"
            )
        if self.max_training_rows and self.max_training_rows < MIN_TRAINING_ROWS:
            raise ValueError(
                f"max_training_rows must be at least {MIN_TRAINING_ROWS:,} (or 0 for no limit), "
                f"got {self.max_training_rows!r}"
            )
        if self.capacity not in ("auto", "fixed"):
            raise ValueError(f"capacity must be 'auto' or 'fixed', got {self.capacity!r}")
        for name in ("linear_share", "linear_share_alternative"):
            share = getattr(self, name)
            if share is not None and not 0.0 <= share < 1.0:
                raise ValueError(f"{name} must be at least 0 and below 1, got {share!r}")
        if self.test_dates is not None and self.test_dates < 1:
            raise ValueError("test_dates must be at least 1 (or left out: derived)")
        for name in ("every_days", "warmup_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.folds < 1 or self.min_train_dates < 1:
            raise ValueError("folds and min_train_dates must be at least 1")
        _check_bands("risk_bands", self.risk_bands)
        _check_bands("risk_band_ceilings", self.risk_band_ceilings)
        _check_bands("risk_band_caps", self.risk_band_caps)
        below = {b: c for b, c in self.risk_band_caps.items() if c < self.risk_bands.get(b, 0.0)}
        if below:
            raise ValueError(
                f"risk_band_caps {below} lie below the bands' shares "
                f"({ {b: self.risk_bands[b] for b in below} }): a cap is the most a band may "
                "hold, at least its share"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)} | set(LEGACY_SETTINGS)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        legacy = sorted(set(raw) & set(LEGACY_SETTINGS))
        if legacy:
            warnings.warn(
                f"training settings {legacy} are ignored: the backtest plans its holdout and "
                "folds from the data (training.splits); remove them from the configuration",
                stacklevel=2,
            )
        raw = {k: v for k, v in raw.items() if k not in LEGACY_SETTINGS}
        if raw.get("allow_label_like") is not None:
            raw["allow_label_like"] = tuple(raw["allow_label_like"])
        if "lgbm_params" in raw:
            raw["lgbm_params"] = {**DEFAULT_LGBM_PARAMS, **raw["lgbm_params"]}
        return cls(**raw)


RISK_BANDS = ("high", "medium")  # from the top; the rest is "low"


def _check_bands(name: str, values: dict[str, float]) -> None:
    """Band settings name the bands above 'low', lie in (0, 1] and do not cross: 'high' has the
    smaller cumulative share and the larger probability ceiling. A ceiling of a band that
    risk_bands leaves out is not used."""
    unknown = [band for band in values if band not in RISK_BANDS]
    if unknown:
        raise ValueError(f"{name} names bands {unknown}; the bands are {list(RISK_BANDS)}")
    bad = {band: v for band, v in values.items() if not (0.0 < float(v) <= 1.0)}
    if bad:
        raise ValueError(f"{name} must lie above 0 and at most 1, got {bad}")
    if "high" in values and "medium" in values:
        high, medium = float(values["high"]), float(values["medium"])
        if name in ("risk_bands", "risk_band_caps") and medium < high:
            raise ValueError(
                f"{name}: 'medium' ({medium}) is below 'high' ({high}); the shares are "
                "cumulative from the top"
            )
        if name == "risk_band_ceilings" and high < medium:
            raise ValueError(f"risk_band_ceilings: 'high' ({high}) is below 'medium' ({medium})")


def train_config_from_file(path: str | Path | None) -> TrainConfig:
    """The [training] section of a TOML/JSON configuration file."""
    return TrainConfig.from_dict(load_config(path).get("training", {}))
