"""Model quality on a holdout: ranking, calibration and lift metrics, per segment, and baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.model import Preprocessor

METRIC_NAMES = (
    "roc_auc", "pr_auc", "log_loss", "brier", "lift_top_decile", "recall_top_decile", "ece", "positive_rate", "rows",
)  # fmt: skip
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False, "lift_top_decile": True,
                    "recall_top_decile": True, "ece": False}  # fmt: skip


def top_share_mask(score: np.ndarray, share: float = 0.10) -> np.ndarray:
    """The top `share` of rows by score (ties broken by position, so exactly ceil(share*n) rows)."""
    n_top = max(1, int(np.ceil(share * len(score))))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:n_top]] = True
    return mask


def quantile_bins(p: np.ndarray, bins: int = 10) -> np.ndarray:
    """Bin index per row from the quantiles of p; equal scores always share a bin."""
    if len(p) == 0:
        return np.zeros(0, dtype=int)
    edges = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(np.unique(edges), p, side="right")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over equal-frequency bins, weighted by bin size.

    Equal-frequency bins, because churn probabilities crowd near zero: equal-width bins would
    put nearly every row in the first bin and make any model look calibrated."""
    if len(y) == 0:
        return float("nan")
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    index = quantile_bins(p, bins)
    counts = np.bincount(index)
    gap = np.abs(np.bincount(index, weights=p) - np.bincount(index, weights=y))
    return float(gap[counts > 0].sum() / len(y))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """All holdout metrics of one score; ranking metrics are NaN when only one class is present."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    both = len(np.unique(y)) == 2
    base = y.mean() if len(y) else float("nan")
    top = top_share_mask(p) if len(y) else np.zeros(0, bool)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])) if len(y) else float("nan"),
        "brier": float(brier_score_loss(y, clipped)) if len(y) else float("nan"),
        "lift_top_decile": float(y[top].mean() / base) if base > 0 else float("nan"),
        "recall_top_decile": float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan"),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(base),
        "rows": float(len(y)),
    }


def metrics_by_segment(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, segments: list[str], min_rows: int
) -> pd.DataFrame:
    """The metrics per value of each segment column, for groups with at least min_rows rows."""
    rows = []
    for col in segments:
        values = frame[col].astype("str").where(frame[col].notna(), "(missing)").to_numpy()
        for value in np.unique(values):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            rows.append({"segment": col, "value": value, **binary_metrics(y[mask], p[mask])})
    return pd.DataFrame(rows)


def fit_logistic_baseline(
    train: pd.DataFrame, y: np.ndarray, preprocessor: Preprocessor, seed: int
):
    """Logistic regression on the same features: imputed, scaled, categories one-hot with the
    training levels. The pipeline's predict_proba takes the model's transformed frame."""
    numeric, categorical = preprocessor.numeric, list(preprocessor.categorical)
    transformer = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", categories=[preprocessor.categorical[c] for c in categorical]), categorical),
        ]
    )  # fmt: skip
    model = make_pipeline(transformer, LogisticRegression(max_iter=2000, C=0.5, random_state=seed))
    return model.fit(_for_sklearn(preprocessor.transform(train), categorical), y)


def logistic_scores(model, frame: pd.DataFrame, preprocessor: Preprocessor) -> np.ndarray:
    return model.predict_proba(
        _for_sklearn(preprocessor.transform(frame), list(preprocessor.categorical))
    )[:, 1]


def _for_sklearn(transformed: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = transformed.copy()
    for col in categorical:
        out[col] = out[col].astype(object).where(out[col].notna(), "(missing)")
    return out


def recency_rule(frame: pd.DataFrame) -> np.ndarray:
    """The rule a CS team uses without a model: the longer since the last activity, the riskier.
    Never-active customers rank as the riskiest."""
    if "days_since_last_event" not in frame:
        raise ValueError("the recency baseline needs the feature 'days_since_last_event'")
    days = frame["days_since_last_event"].to_numpy(dtype=float)
    top = np.nanmax(days) if np.isfinite(days).any() else 0.0
    return np.where(np.isnan(days), top + 1.0, days)
