"""The scoring artifact: preprocessing, booster, calibrator and risk bands in one object.

Training fits it, MLflow stores it, the weekly job and the service load it; whoever holds a
ChurnModel can go from build_features output to calibrated risk, band and drivers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from features.config import FeatureConfig
from training.reference import ReferenceProfile
from training.seasonal_level import SeasonalLevel
from training.tree_shap import TreeShapExplainer

ID_COLUMNS = ("as_of", "customer_id", "churned")


class FeatureInputError(ValueError):
    """Feature records do not match what the model was trained on."""


# A category level held by fewer distinct customers than this is scored with the other rare
# levels as one level, OTHER_LEVEL. Rows repeat each customer over every observation date, so
# a country with 4 customers has over 50 rows on 28 dates: enough for LightGBM's minimum rows
# per category, and its split then learns those 4 customers (on Online Retail "Country: USA"
# and "Country: Canada", 4 customers each, were the top reasons of the riskiest customers).
MIN_LEVEL_CUSTOMERS = 30
OTHER_LEVEL = "(other)"


@dataclass
class Preprocessor:
    """Fixed feature order and fixed category levels, learned at training time.

    A category's rare levels (fewer than min_level_customers distinct customers; two or more
    of them) are scored as one level, OTHER_LEVEL, and so is a level never seen in training;
    `grouped` keeps, per category, the training levels in that group (for the reasons and the
    service's list of accepted levels)."""

    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    feature_names_: list[str] = field(default_factory=list)
    grouped: dict[str, list[str]] = field(default_factory=dict)
    min_level_customers: int = MIN_LEVEL_CUSTOMERS

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        columns = [c for c in frame.columns if c not in ID_COLUMNS]
        self.numeric, self.categorical, self.grouped = [], {}, {}
        for col in columns:
            values = frame[col]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                self.numeric.append(col)
                continue
            customers = _customers_per_level(frame, col)
            rare = sorted(customers.index[customers < self.min_level_customers])
            if len(rare) >= 2:  # one rare level alone is already scored by itself
                self.grouped[col] = rare
                named = sorted(customers.index[customers >= self.min_level_customers])
                self.categorical[col] = [*named, OTHER_LEVEL]
            else:
                self.categorical[col] = sorted(customers.index)
        self.feature_names_ = [*self.numeric, *self.categorical]
        if not self.feature_names_:
            raise FeatureInputError("no feature columns to train on")
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before the level groups have none, as they were trained."""
        self.__dict__.update({"grouped": {}, "min_level_customers": 0, **state})

    def known_levels(self, col: str) -> list[str]:
        """The training levels of a category, grouped ones included (what a caller may send)."""
        grouped = self.grouped.get(col, [])
        return sorted([*(v for v in self.categorical[col] if v != OTHER_LEVEL), *grouped])

    def named_levels(self) -> dict[str, set[str]]:
        """Per category with a group of rare levels: the levels scored by their own name (any
        other value is scored as OTHER_LEVEL)."""
        return {col: set(self.categorical[col]) - {OTHER_LEVEL} for col in self.grouped}

    def grouping_notes(self) -> list[str]:
        """A line per category with a group of rare levels, for the training log."""
        return [
            f"{col}: {len(rare)} levels that fewer than {self.min_level_customers} customers had "
            f"are scored as one level, {OTHER_LEVEL} (e.g. {', '.join(rare[:3])}); "
            + (
                lambda named: (
                    f"{named} level{'' if named == 1 else 's'} with more customers "
                    f"scored by {'its' if named == 1 else 'their'} own name"
                )
            )(len(self.categorical[col]) - 1)
            for col, rare in self.grouped.items()
        ]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns in training order; numbers as float64; categories with the training levels
        (an unseen level is OTHER_LEVEL where the category has one, else missing; never a new
        column)."""
        if not self.feature_names_:
            raise RuntimeError("Preprocessor is not fitted")
        missing = [c for c in self.feature_names_ if c not in frame.columns]
        if missing:
            raise FeatureInputError(
                f"feature records lack {len(missing)} columns the model needs, e.g. {missing[:5]}"
            )
        out = {}
        for col in self.numeric:
            values = frame[col]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                converted = pd.to_numeric(values, errors="coerce")
                bad = values.notna() & converted.isna()
                if bad.any():
                    raise FeatureInputError(
                        f"feature '{col}' must be a number, got {values[bad].iloc[0]!r}"
                    )
                values = converted
            arr = values.to_numpy(dtype="float64", na_value=np.nan)
            if np.isinf(arr).any():
                raise FeatureInputError(f"feature '{col}' must be finite, got infinity")
            out[col] = arr
        for col, levels in self.categorical.items():
            values = frame[col].astype("str").where(frame[col].notna())
            if OTHER_LEVEL in levels:  # a rare or unseen level
                values = values.where(values.isin(levels) | values.isna(), OTHER_LEVEL)
            known = values.where(values.isin(levels))  # without a group, unseen is missing
            out[col] = pd.Categorical(known, categories=levels)
        return pd.DataFrame(out, index=frame.index)


def _customers_per_level(frame: pd.DataFrame, col: str) -> pd.Series:
    """Distinct customers per level of a categorical column (rows when there are no ids)."""
    values = frame[col].astype("str").where(frame[col].notna())
    if "customer_id" not in frame:
        return values.value_counts()
    pairs = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(), "level": values})
    return pairs.dropna().drop_duplicates().groupby("level")["customer_id"].size()


# The linear term's smallest spread in log-odds (standard deviation over the training rows): with
# `linear_share = 0` it only breaks ties, small enough to leave the booster's ranking alone
# wherever its scores differ by more than a few thousandths, large enough to order customers
# whose trees all agree (equal booster scores).
TIE_BREAK_STD = 1e-3


def linear_spread(share: float, booster_logit: np.ndarray) -> float:
    """The linear term's spread in log-odds for a share of the score: `share` of the blended
    score's spread is the linear term's, the rest the booster's (share / (1 - share) times the
    booster's spread over its training rows), never below TIE_BREAK_STD."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"linear_share must be at least 0 and below 1, got {share}")
    booster_std = float(np.std(booster_logit)) if len(booster_logit) else 0.0
    return max(share / (1.0 - share) * booster_std, TIE_BREAK_STD)


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): counts, amounts and day spans are heavy-tailed; on this scale a
    linear model sees a customer going from 1 to 3 orders as more than one going 101 to 103."""
    out = np.log1p(np.abs(values))
    return np.copysign(out, values, out=out)


@dataclass
class LinearTerm:
    """A ridge logistic regression on the features (numbers as signed log1p, then standardised;
    categories one-hot), added to the booster's log-odds with a set spread (training.fit:
    `linear_share` of the score). Two jobs:
    - Variance: on months of history or a few thousand customers, trees alone are noisier than
      a logistic regression (an analyst's afternoon model beat them at 3 of 13 shapes of Online
      Retail by up to 0.014 ROC AUC); a quarter of the score from the linear model keeps the
      ranking near the better of the two (benchmarks/README.md, session 9).
    - Ties: customers the trees cannot tell apart (the same leaf in every tree: exactly equal
      scores, sometimes hundreds of customers with different features) are ordered by it.
    Its coefficients respect the monotone constraints (a feature whose coefficient goes against
    its known direction is left out and the others refitted: _fit_within_directions), and it
    is additive per feature (each feature's term is part of its contribution, so drivers still
    sum to the score); a missing value adds nothing. Like the trees it does not extrapolate: a
    value beyond the fitting rows' range counts as the range's edge (on a 7-week export, counts
    grew with the export's age past every training value, and the term's mean log-odds rose
    from 0.06 to 0.16 in four weeks)."""

    columns: list[str]  # numeric features
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # log-odds per standard deviation, already scaled to the set spread
    # Models trained before the linear term saw log-scaled features and categories hold False
    # and None (then a tie-breaker on the raw numbers): read as they were fitted.
    log_scaled: bool = False
    levels: dict[str, list[str]] | None = None  # category -> its levels, in coefficient order
    level_coef: dict[str, np.ndarray] | None = None  # category -> log-odds per level
    spread: float = 0.0  # standard deviation of the summed terms over the fitting rows
    # The fitting rows' range of each column (signed log): values beyond it are taken at its
    # edge, as the trees take them (None: models trained before it extrapolate).
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @property
    def feature_columns(self) -> list[str]:
        """The features whose terms terms() returns, in its column order."""
        return [*self.columns, *(self.levels or {})]

    @classmethod
    def fit(
        cls,
        transformed: pd.DataFrame,
        y: np.ndarray,
        monotone: dict[str, int],
        spread: float = TIE_BREAK_STD,
    ) -> LinearTerm | None:
        """From a Preprocessor's frame, with `spread` log-odds of standard deviation over these
        rows; None when there is no signal to order by."""
        if len(np.unique(y)) < 2:
            return None
        columns = [
            c
            for c in transformed.columns
            if pd.api.types.is_float_dtype(transformed[c]) and transformed[c].notna().any()
        ]
        levels = {
            c: list(transformed[c].cat.categories)
            for c in transformed.columns
            if isinstance(transformed[c].dtype, pd.CategoricalDtype)
            and 1 < len(transformed[c].cat.categories) <= MAX_LINEAR_LEVELS
        }
        x = signed_log1p(transformed[columns].to_numpy(dtype=float))
        center = np.nanmedian(x, axis=0) if columns else np.zeros(0)
        scale = np.nanstd(x, axis=0) if columns else np.zeros(0)
        scale = np.where(scale > 0, scale, 1.0)
        z = np.nan_to_num((x - center) / scale, nan=0.0)
        onehot = [_one_hot(transformed[c], len(values)) for c, values in levels.items()]
        design = np.hstack([z, *onehot]) if onehot else z
        if design.shape[1] == 0:
            return None
        direction = np.array([monotone.get(c, 0) for c in columns])
        weights = _fit_within_directions(design, y, direction)
        coef = weights[: len(columns)]
        fitted_spread = float(np.std(design @ weights))
        if fitted_spread == 0:
            return None
        ratio = spread / fitted_spread
        level_coef, at = {}, len(columns)
        for c, values in levels.items():
            level_coef[c] = weights[at : at + len(values)] * ratio
            at += len(values)
        low = np.nanmin(x, axis=0) if columns else np.zeros(0)
        high = np.nanmax(x, axis=0) if columns else np.zeros(0)
        return cls(
            columns, center, scale, coef * ratio, True, levels, level_coef, spread, low, high
        )

    def scaled_to(self, spread: float) -> LinearTerm:
        """The same regression with `spread` log-odds of standard deviation over its fitting
        rows (a term fitted once, scaled for boosters of different strength)."""
        ratio = spread / self.spread
        return dataclasses.replace(
            self,
            coef=self.coef * ratio,
            level_coef={c: v * ratio for c, v in (self.level_coef or {}).items()},
            spread=spread,
        )

    def terms(self, transformed: pd.DataFrame) -> np.ndarray:
        """Per row and feature (feature_columns), the log-odds the term adds (missing values
        and categories unseen in training add 0)."""
        x = transformed[self.columns].to_numpy(dtype=float)
        if self.log_scaled:
            x = signed_log1p(x)
        if self.low is not None and self.high is not None:
            x = np.clip(x, self.low, self.high)  # NaN stays missing
        parts = [np.nan_to_num((x - self.center) / self.scale, nan=0.0) * self.coef]
        for c, values in (self.levels or {}).items():
            parts.append((_one_hot(transformed[c], len(values)) @ self.level_coef[c])[:, None])
        return np.hstack(parts)


def _fit_within_directions(design: np.ndarray, y: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Ridge logistic coefficients of the design's columns, none against its feature's known
    direction (`direction`: +1, -1 or 0 for the leading numeric columns; the rest free).
    A column whose coefficient goes against its direction is left out (coefficient 0) and the
    others refitted without it, until none does. Zeroing such coefficients after one fit, as
    this did before, left their correlated partners at values fitted to offset them: the term
    alone ranked 0.010 ROC AUC worse on the 13 Online Retail shapes (0.028 on 4 months of
    history) than the refit (benchmarks/README.md, session 37)."""
    signs = np.zeros(design.shape[1])
    signs[: len(direction)] = direction
    kept = np.ones(design.shape[1], dtype=bool)
    while kept.any():
        weights = np.zeros(design.shape[1])
        model = LogisticRegression(C=0.1, solver="newton-cholesky", max_iter=200)
        weights[kept] = model.fit(design[:, kept], y).coef_[0]
        against = signs * weights < 0
        if not against.any():
            return weights
        kept &= ~against
    return np.zeros(design.shape[1])


# A category with more levels than this is left to the trees (a one-hot column per level would
# make the linear model slow and each level's coefficient noise).
MAX_LINEAR_LEVELS = 50


def _one_hot(values: pd.Series, width: int) -> np.ndarray:
    """0/1 columns per level of a Preprocessor's categorical column; missing: all zero."""
    codes = values.cat.codes.to_numpy()
    out = np.zeros((len(codes), width))
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


# The class's name in models trained before the linear term carried a share of the score:
# their pickles refer to it.
LinearTieBreak = LinearTerm


@dataclass(frozen=True)
class BandPopulation:
    """The customers the risk bands and the typical risk were set on: those the first run after
    training scores (eligible the day after the data's end), their number and median risk."""

    as_of: str
    customers: int
    median: float


@dataclass
class ChurnModel:
    """Calibrated churn-risk model with drivers; see module docstring."""

    feature_config: dict[str, Any]
    preprocessor: Preprocessor
    booster_text: str
    calibrator: Calibrator | None
    band_thresholds: dict[str, float]  # band -> lowest calibrated probability in it, high first
    horizon_days: int
    trained_until: str
    metrics: dict[str, float] = field(default_factory=dict)
    # The linear part of the score (LinearTerm); None in models trained before it existed.
    linear_term: LinearTerm | None = None
    # The training distributions for monitoring (training.reference); None in models trained
    # before it existed, for which monitoring says to retrain.
    reference: ReferenceProfile | None = None
    # The churn level of the time of year (training.seasonal_level), added to the calibrated
    # log-odds of rows with an as_of; None in models trained before it and without dates.
    seasonal_level: SeasonalLevel | None = None
    # The customers the bands and the typical risk were set on (training.pipeline.
    # next_run_features); None: those of the last training date (models trained before it,
    # and models fitted without the tables).
    band_population: BandPopulation | None = None
    _booster: lgb.Booster | None = field(default=None, repr=False, compare=False)
    _explainer: TreeShapExplainer | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_booster"] = None  # rebuilt from booster_text: portable across pickles
        state["_explainer"] = None  # its tables are rebuilt in a second or two
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "tie_break" in state:  # its name in models trained before it had a share
            state["linear_term"] = state.pop("tie_break")
        self.__dict__.update(state)

    @property
    def booster(self) -> lgb.Booster:
        if self._booster is None:
            self._booster = lgb.Booster(model_str=self.booster_text)
        return self._booster

    @property
    def explainer(self) -> TreeShapExplainer:
        """The booster's TreeSHAP tables, built on first use (1-2 s) and kept."""
        if self._explainer is None:
            self._explainer = TreeShapExplainer(self.booster)
        return self._explainer

    @property
    def feature_names(self) -> list[str]:
        return list(self.preprocessor.feature_names_)

    def features_config(self) -> FeatureConfig:
        """The resolved feature configuration to build this model's inputs with. Models trained
        before feedback_kinds (revenue_kinds) had every kind's signals: read so, they get the same
        columns; those trained before revenue_windows (payment_changes) counted revenue windows in
        days (every payment change); those trained before long_windows had none, and those
        trained before activity_values (activity_kinds) had the value columns (the per-kind
        ones), and those trained before anniversary_signals no days to the signup's
        anniversary."""
        stored = dict(self.feature_config)
        if "feedback_kinds" not in stored:
            from features.contract import FEEDBACK_KINDS

            stored["feedback_kinds"] = FEEDBACK_KINDS
        if "revenue_kinds" not in stored:
            from features.config import REVENUE_SIGNAL_KINDS

            stored["revenue_kinds"] = REVENUE_SIGNAL_KINDS
        stored.setdefault("revenue_windows", "day")
        stored.setdefault("payment_changes", "any")
        stored.setdefault("long_windows", ())
        stored.setdefault("activity_values", True)
        stored.setdefault("activity_kinds", True)
        stored.setdefault("anniversary_signals", False)
        return FeatureConfig.from_dict(stored)

    def raw_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's probability with the linear term's log-odds, before calibration."""
        transformed = self.preprocessor.transform(frame)
        if self.linear_term is None:
            return self.booster.predict(transformed, num_threads=0)
        logit = self.booster.predict(transformed, raw_score=True, num_threads=0)
        return _expit(logit + self.linear_term.terms(transformed).sum(axis=1))

    def predict_proba(self, frame: pd.DataFrame, as_of: object = None) -> np.ndarray:
        """Calibrated probability of churn within the horizon, per row, at the level of the
        time of year of its date (level_shift)."""
        probability = calibrate(self.calibrator, self.raw_probability(frame))
        return shifted(probability, self.level_shift(frame, as_of))

    def level_shift(self, frame: pd.DataFrame, as_of: object = None) -> np.ndarray | None:
        """Per row, the log-odds the time of year adds to the calibrated probability
        (training.seasonal_level), for the observation date `as_of` or, without it, the
        frame's as_of column (training rows); None when the model has no seasonal level or
        the rows no date (records sent to the service without one)."""
        level = getattr(self, "seasonal_level", None)  # None in models pickled before it
        if level is None:
            return None
        if as_of is not None:
            return np.full(len(frame), level.shift(pd.Timestamp(as_of)))
        if "as_of" not in frame:
            return None
        return level.shifts(frame["as_of"])

    def risk_band(self, probability: np.ndarray) -> np.ndarray:
        """Band names ('high', 'medium', 'low') for calibrated probabilities."""
        bands = np.full(len(probability), "low", dtype=object)
        for name, threshold in sorted(self.band_thresholds.items(), key=lambda kv: kv[1]):
            bands[probability >= threshold] = name
        return bands

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row exact feature contributions to the log-odds: LightGBM's pred_contrib values
        (path-dependent TreeSHAP), computed about 10x faster by training.tree_shap, plus the
        linear term of each feature; the last column, 'bias', is the expected value.
        They sum to the log-odds of raw_probability."""
        transformed = self.preprocessor.transform(frame)
        out = self._tree_contributions(transformed, frame.index)
        if self.linear_term is not None:  # its per-feature log-odds belong to those features
            out[self.linear_term.feature_columns] += self.linear_term.terms(transformed)
        return out

    def tree_contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The booster's part of contributions() alone: exactly LightGBM's pred_contrib."""
        return self._tree_contributions(self.preprocessor.transform(frame), frame.index)

    def _tree_contributions(self, transformed: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
        contrib = self.explainer.contributions(lightgbm_matrix(transformed))
        return pd.DataFrame(contrib, columns=[*self.feature_names, "bias"], index=index)

    def probability_of_logit(
        self, logit: np.ndarray, shift: np.ndarray | None = None
    ) -> np.ndarray:
        """The calibrated probability for raw log-odds (the sum of contributions and bias),
        with `shift` (level_shift: per row, or None) added to the calibrated log-odds."""
        return shifted(calibrate(self.calibrator, _expit(logit)), shift)

    def drivers(
        self, frame: pd.DataFrame, top: int = 3, as_of: object = None
    ) -> list[list[dict[str, Any]]]:
        """The `top` features pushing each row's risk up the most: feature, label, value,
        contribution (log-odds), risk_points and reason in words (see training.drivers)."""
        return self.explain(frame, top, as_of)[0]

    def explain(
        self, frame: pd.DataFrame, top: int = 3, as_of: object = None
    ) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
        """Per row, the drivers (training.drivers.top_drivers) and, for a row at or below the
        typical customer's risk, what holds its risk down (lower_risk_drivers)."""
        from training.drivers import lower_risk_drivers, risk_points, top_drivers

        contrib = self.contributions(frame)
        matrix = contrib[self.feature_names].to_numpy()
        shift = self.level_shift(frame, as_of)
        points = risk_points(matrix, contrib["bias"].to_numpy(), self.probability_of_logit, shift)
        settings = self.reason_settings()
        settings["probability"] = self.probability_of_logit(contrib.sum(axis=1).to_numpy(), shift)
        names = self.feature_names
        return (
            top_drivers(matrix, names, frame, top, points, **settings).to_pylist(),
            lower_risk_drivers(matrix, names, frame, top, points, **settings).to_pylist(),
        )

    def reason_settings(self) -> dict[str, Any]:
        """What training.drivers.top_drivers needs from the model to word reasons: the declared
        customer attributes, the categories' rare-level groups and the typical customer's
        values with their directions and the numeric features a category states (from the
        reference profile; None in models trained before it, whose reasons are ranked as they
        were)."""
        config = self.features_config()
        return {
            "attributes": config.customer_attributes,
            "named_levels": self.preprocessor.named_levels(),
            "min_level_customers": self.preprocessor.min_level_customers,
            "typical": getattr(self.reference, "reason_sides", None),
            "safe_levels": getattr(self.reference, "safe_levels", None),
            "safe_ranges": getattr(self.reference, "safe_ranges", None),
            "lower_levels": getattr(self.reference, "lower_levels", None),
            "value_unit": config.value_unit,
            "activity_totals": config.activity_totals,
            "date_attributes": config.date_attributes or (),
            "qualifying_events": config.churn.qualifying_events or (),
            "orders": config.churn.mode == "non_contractual",
            "revenue_windows": config.revenue_windows,
            "said_by": getattr(self.reference, "said_by", None),
            "typical_probability": self.typical_probability(),
        }

    def typical_probability(self) -> float | None:
        """The typical customer's churn probability, which reasons for risk are told above and
        lower-risk reasons at or below (training.drivers.above_the_typical_risk): the median
        of the customers the bands were set on (band_population) or, without them, of the
        reference rows' (the model's latest training dates: training.reference). None for a
        model with neither."""
        population = getattr(self, "band_population", None)  # None in models pickled before
        if population is not None:
            return population.median
        score = getattr(self.reference, "score", None)
        if score is None or not score.grid or not score.cdf:
            return None
        return float(np.interp(0.5, score.cdf, score.grid))

    def bands_set_on(self) -> str:
        """The date of the customers the risk bands were set on (band_population), else the
        last training date."""
        population = getattr(self, "band_population", None)
        return population.as_of if population is not None else self.trained_until

    def score(
        self, frame: pd.DataFrame, top_drivers: int = 3, as_of: object = None
    ) -> pd.DataFrame:
        """customer_id, churn_probability, risk_band, drivers and lower_risk for feature
        records (as of `as_of`, or their as_of column: level_shift)."""
        probability = self.predict_proba(frame, as_of)
        out = pd.DataFrame(
            {
                "customer_id": frame["customer_id"].to_numpy()
                if "customer_id" in frame
                else frame.index,
                "churn_probability": probability,
                "risk_band": self.risk_band(probability),
            }
        )
        if top_drivers:
            out["drivers"], out["lower_risk"] = self.explain(frame, top_drivers, as_of)
        return out


def lightgbm_matrix(transformed: pd.DataFrame) -> np.ndarray:
    """What LightGBM receives from a Preprocessor's frame: float64, categories as their codes
    (the training levels' order), missing as NaN."""
    columns = []
    for name in transformed.columns:
        column = transformed[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy().astype("float64")
            codes[codes < 0] = np.nan
            columns.append(codes)
        else:
            columns.append(column.to_numpy(dtype="float64", na_value=np.nan))
    if not columns:
        return np.empty((len(transformed), 0))
    return np.column_stack(columns)


@dataclass(frozen=True)
class ScoreTransfer:
    """How the log-odds of a model relate to those of the models a calibration was fitted on,
    read from each one's own training rows: log-odds l of the model are taken as
    fitted_mean + factor * (l - model_mean) of theirs (the same mean and spread).

    Why: the calibration is fitted on out-of-fold predictions of the fold models, but the
    model it calibrates is trained on more rows with proportionally more rounds (scale_rounds),
    and its scores spread wider. Applied as fitted, a Platt slope above 1 (fold models stopped
    early are timid) widened them again: on the SaaS example's exports at 90 days, slope 1.55
    where 0.97 fitted what happened, 13.5 % predicted where 12.9 % churned, log loss 0.351
    against 0.337 with the transfer (benchmarks/README.md, session 15)."""

    factor: float
    fitted_mean: float
    model_mean: float

    @classmethod
    def between(cls, fitted_logits: Sequence[np.ndarray], model_logit: np.ndarray) -> ScoreTransfer:
        """From the calibration models' log-odds on their training rows (one array each) and
        the model's on its own; no change when either has no spread."""
        fitted_spread = float(np.mean([np.std(v) for v in fitted_logits]))
        model_spread = float(np.std(model_logit))
        fitted_mean = float(np.mean([np.mean(v) for v in fitted_logits]))
        if not (fitted_spread > 0 and model_spread > 0):
            return cls(1.0, fitted_mean, fitted_mean)
        return cls(fitted_spread / model_spread, fitted_mean, float(np.mean(model_logit)))


class LogitCalibrator:
    """Platt scaling on the logit of the booster's probability: a straight line in log-odds,
    fitted by (almost unpenalised) logistic regression. Two parameters, so it is stable with
    few churners, and strictly increasing, so it never ties customers the booster ranks apart."""

    def __init__(self) -> None:
        self.slope_: float | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> LogitCalibrator:
        model = LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), y)
        self.slope_ = float(model.coef_[0, 0])
        self.intercept_ = float(model.intercept_[0])
        if self.slope_ <= 0:
            # A ranking no better than chance on the calibration rows: keep the ranking and
            # predict the base rate around it rather than invert the order.
            self.slope_ = 1e-3
            self.intercept_ = float(_logit(np.array([np.mean(y)]))[0])
        return self

    def transferred(self, transfer: ScoreTransfer) -> LogitCalibrator:
        """This calibration for the scores of another model (ScoreTransfer): the same line
        through the log-odds the calibration rows' models would have given."""
        out = LogitCalibrator()
        out.slope_ = self.slope_ * transfer.factor
        out.intercept_ = self.intercept_ + self.slope_ * (
            transfer.fitted_mean - transfer.factor * transfer.model_mean
        )
        return out

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.slope_ is None:
            raise RuntimeError("LogitCalibrator is not fitted")
        z = self.intercept_ + self.slope_ * _logit(np.asarray(raw, dtype=float))
        return 1.0 / (1.0 + np.exp(-z))


class InterpolatedIsotonic:
    """Isotonic regression on the logit, turned into a strictly increasing curve: the knots are
    the isotonic blocks (mean logit, churn rate), joined by straight lines, and beyond the first
    and last knot the Platt slope continues in log-odds. Plain isotonic regression maps whole
    blocks to one value (plateaus that tie hundreds of customers); this keeps its flexible shape
    without the ties. Needs many churners per block: chosen only for large calibration sets."""

    def __init__(self) -> None:
        self.knots_x_: np.ndarray | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> InterpolatedIsotonic:
        x = _logit(np.asarray(raw, dtype=float))
        y = np.asarray(y, dtype=float)
        fitted = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(x)
        order = np.argsort(x, kind="stable")
        xs, fs = x[order], fitted[order]
        # One knot per block of equal fitted values: the block's mean logit and its rate.
        starts = np.r_[0, np.flatnonzero(np.diff(fs)) + 1]
        sizes = np.diff(np.r_[starts, len(fs)])
        knot_x = np.add.reduceat(xs, starts) / sizes
        knot_p = np.clip(fs[starts], 1e-4, 1 - 1e-4)
        # Blocks with the same clipped rate would tie again: keep strictly increasing knots.
        keep = np.r_[True, np.diff(knot_p) > 0] & np.r_[True, np.diff(knot_x) > 0]
        self.knots_x_, self.knots_p_ = knot_x[keep], knot_p[keep]
        self.tails_ = LogitCalibrator().fit(raw, y)
        return self

    def transferred(self, transfer: ScoreTransfer) -> InterpolatedIsotonic:
        """This calibration for the scores of another model (ScoreTransfer): the knots moved
        to the log-odds that model gives where the calibration rows' models gave theirs."""
        out = InterpolatedIsotonic()
        out.knots_x_ = (
            transfer.model_mean + (self.knots_x_ - transfer.fitted_mean) / transfer.factor
        )
        out.knots_p_ = self.knots_p_
        out.tails_ = self.tails_.transferred(transfer)
        return out

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.knots_x_ is None:
            raise RuntimeError("InterpolatedIsotonic is not fitted")
        x = _logit(np.asarray(raw, dtype=float))
        kx, kp = self.knots_x_, self.knots_p_
        p = np.interp(x, kx, kp)
        slope = self.tails_.slope_
        low, high = x < kx[0], x > kx[-1]
        p[low] = _expit(_logit(kp[:1])[0] + slope * (x[low] - kx[0]))
        p[high] = _expit(_logit(kp[-1:])[0] + slope * (x[high] - kx[-1]))
        if len(kx) == 1:  # one block: the Platt line through it
            p = _expit(_logit(kp[:1])[0] + slope * (x - kx[0]))
        return p


Calibrator = LogitCalibrator | InterpolatedIsotonic | IsotonicRegression | LogisticRegression


def choose_calibration(method: str) -> str:
    """The calibration to fit: 'auto' (the default) is Platt ('sigmoid'); 'isotonic'
    (interpolated) only when configured.

    Why not isotonic by default, even with many churners: it follows the calibration rows'
    shape closely, tails included, and the tails do not carry over to later dates. Online
    Retail, 60 days, 2011-07-01: its end blocks (no churner among them) put 218 customers at
    0.1 % who churned at 8.7 % after the cut, and the log loss at the cut was 0.706 against
    Platt's 0.620. Platt was as good or better at all 9 cuts of Online Retail and CDNOW, also
    when isotonic was chosen by its log loss on the latest complete date (benchmarks/README.md,
    session 11)."""
    return "sigmoid" if method == "auto" else method


def calibrate(calibrator: Calibrator | None, raw: np.ndarray) -> np.ndarray:
    """Map raw booster probabilities to calibrated ones (also for models pickled before the
    strictly increasing calibrators: plain isotonic and sigmoid by logistic regression)."""
    if calibrator is None:
        return raw
    if isinstance(calibrator, LogitCalibrator | InterpolatedIsotonic):
        return np.clip(calibrator.predict(raw), 1e-6, 1 - 1e-6)
    if isinstance(calibrator, IsotonicRegression):
        return np.clip(calibrator.predict(raw), 1e-6, 1 - 1e-6)
    return calibrator.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """A strictly increasing calibration (keeps the booster's ranking, no plateaus): 'sigmoid'
    (Platt on the logit) or 'isotonic' (interpolated isotonic); 'auto' is Platt
    (choose_calibration)."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"the calibration rows ({len(y)}) have only one class; use more observation dates"
        )
    chosen = choose_calibration(method)
    if chosen == "isotonic":
        return InterpolatedIsotonic().fit(raw, y)
    if chosen == "sigmoid":
        return LogitCalibrator().fit(raw, y)
    raise ValueError(f"calibration must be 'auto', 'sigmoid' or 'isotonic', got {method!r}")


def capped_bands(
    calibrated: np.ndarray,
    ceilings: dict[str, float] | None,
    caps: dict[str, float] | None,
) -> dict[str, float]:
    """The bands whose cap binds on the reference population: {band: share of it at or above
    the band's ceiling} where that share exceeds the band's cap (TrainConfig.risk_band_caps).
    Such a band holds its cap's share, the riskiest, and not everyone above its ceiling."""
    if not len(calibrated):
        return {}
    out = {}
    for name, cap in (caps or {}).items():
        ceiling = (ceilings or {}).get(name)
        if ceiling is None:
            continue
        share = float((np.asarray(calibrated) >= ceiling).mean())
        if share > cap:
            out[name] = share
    return out


def band_thresholds(
    calibrated: np.ndarray,
    shares: dict[str, float],
    ceilings: dict[str, float] | None = None,
    caps: dict[str, float] | None = None,
) -> dict[str, float]:
    """Probability cut-offs: band 'high' with share 0.10 starts at the 90th percentile of the
    reference population's probabilities (shares are cumulative from the top), but never above
    its ceiling (TrainConfig.risk_band_ceilings): where most customers churn, a rank alone would
    put a customer at 99 % in 'low'. The ceiling in turn never lets a band hold more than its
    cap (TrainConfig.risk_band_caps) of the population: where nearly everyone is above 50 %, an
    alert for each would single nobody out. Each threshold moves continuously with the
    probabilities: max(min(share's quantile, ceiling), cap's quantile)."""
    ceilings = ceilings or {}
    caps = caps or {}
    if not len(calibrated):
        return {name: float(ceilings.get(name, 1.0)) for name in shares}
    out = {}
    for name, share in shares.items():
        threshold = min(float(np.quantile(calibrated, 1 - share)), float(ceilings.get(name, 1.0)))
        if name in caps:
            threshold = max(threshold, float(np.quantile(calibrated, 1 - caps[name])))
        out[name] = threshold
    return out


def band_warnings(bands: np.ndarray, thresholds: dict[str, float], where: str) -> list[str]:
    """A warning per band that holds nobody, with the probabilities the band spans (ties at a
    threshold, thresholds that coincide, or nobody between a ceiling and the next band)."""
    counts = pd.Series(bands).value_counts()
    spans: dict[str, tuple[float, float | None]] = {}  # band -> [lowest, next band's) or None
    upper: float | None = None
    for name, threshold in thresholds.items():  # from the top: 'high', then 'medium'
        spans[name] = (threshold, upper)
        upper = threshold
    spans["low"] = (0.0, upper)
    out = []
    for name, (low, high) in spans.items():
        if counts.get(name, 0):
            continue
        if high is None:
            why = f"nobody's probability reaches its threshold ({low:.1%})"
        elif low >= high:
            why = f"its threshold ({low:.1%}) coincides with the next band's"
        else:
            why = f"nobody's probability lies in [{low:.1%}, {high:.1%})"
        out.append(f"risk band '{name}' is empty on {where} ({len(bands):,} customers): {why}")
    return out


def shifted(probability: np.ndarray, shift: np.ndarray | float | None) -> np.ndarray:
    """Probabilities with `shift` added to their log-odds (None: as they are)."""
    if shift is None:
        return probability
    return _expit(_logit(probability) + shift)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _expit(z: np.ndarray | float) -> np.ndarray:
    return expit(np.asarray(z, dtype=float))
