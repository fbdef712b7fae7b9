"""The plots analysts look at for a model: ROC, precision-recall, gains and lift by decile,
calibration, feature importance and a SHAP summary (from LightGBM's exact contributions)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from training.evaluation import quantile_bins


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the test dates")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_precision_recall(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), color="grey", linestyle=":", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the test dates")
    ax.legend(loc="upper right")
    return _save(fig, path)


def gains_table(y: np.ndarray, score: np.ndarray, groups: int = 10) -> pd.DataFrame:
    """Per decile of score (1 = riskiest): customers, churners, churn rate, lift, cumulative gain."""
    order = np.argsort(-score, kind="stable")
    chunks = np.array_split(order, groups)
    base = y.mean()
    rows, captured = [], 0.0
    for i, idx in enumerate(chunks, start=1):
        churners = float(y[idx].sum())
        captured += churners
        rate = churners / len(idx) if len(idx) else float("nan")
        rows.append(
            {
                "decile": i,
                "customers": len(idx),
                "churners": churners,
                "churn_rate": rate,
                "lift": rate / base if base > 0 else float("nan"),
                "cumulative_gain": captured / y.sum() if y.sum() > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def plot_gains_and_lift(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, s in scores.items():
        table = gains_table(y, s)
        share = table["decile"] / len(table)
        left.plot([0, *share], [0, *table["cumulative_gain"]], marker="o", markersize=3, label=name)
        right.plot(table["decile"], table["lift"], marker="o", markersize=3, label=name)
    left.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="share of customers contacted (riskiest first)", ylabel="share of churners reached",
             title="Cumulative gains")  # fmt: skip
    right.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    right.set(xlabel="decile (1 = riskiest)", ylabel="lift over base rate", title="Lift by decile")
    right.set_xticks(range(1, 11))
    left.legend(loc="lower right")
    return _save(fig, path)


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted against observed churn per equal-frequency bin (the bins of the ECE)."""
    frame = pd.DataFrame({"bin": quantile_bins(p, bins), "predicted": p, "observed": y})
    table = frame.groupby("bin").agg(
        predicted=("predicted", "mean"),
        observed=("observed", "mean"),
        customers=("observed", "size"),
    )
    return table.reset_index(drop=True)


def plot_calibration(y: np.ndarray, p: np.ndarray, path: Path) -> Path:
    table = calibration_table(y, p)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(table["predicted"].max(), table["observed"].max()) * 1.1
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.plot(table["predicted"], table["observed"], marker="o", label="model (deciles of risk)")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration")
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_feature_importance(importance: pd.DataFrame, path: Path, top: int = 20) -> Path:
    head = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(head) + 1.2))
    ax.barh(head["feature"], head["gain"])
    ax.set(xlabel="total gain", title=f"Feature importance (top {len(head)})")
    return _save(fig, path)


def plot_shap_summary(
    contributions: pd.DataFrame, values: pd.DataFrame, path: Path, top: int = 15
) -> Path:
    """Beeswarm-style summary: per feature, each row's contribution to the log-odds, coloured
    by the feature's value (low blue, high red; grey when missing or categorical)."""
    contrib = contributions.drop(columns="bias", errors="ignore")
    ranked = contrib.abs().mean().sort_values(ascending=False).head(top).index[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(ranked) + 1.5))
    rng = np.random.default_rng(0)
    for i, name in enumerate(ranked):
        x = contrib[name].to_numpy()
        raw = values[name]
        if pd.api.types.is_numeric_dtype(raw):
            v = raw.to_numpy(dtype=float, na_value=np.nan)
            lo, hi = np.nanpercentile(v, [5, 95]) if np.isfinite(v).any() else (0.0, 1.0)
            colour = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.full(len(v), 0.5)
        else:
            colour = np.full(len(x), np.nan)
        jitter = rng.uniform(-0.3, 0.3, len(x))
        known = np.isfinite(colour)
        ax.scatter(x[~known], i + jitter[~known], s=3, color="lightgrey", alpha=0.5)
        ax.scatter(
            x[known],
            i + jitter[known],
            s=3,
            c=colour[known],
            cmap="coolwarm",
            vmin=0,
            vmax=1,
            alpha=0.6,
        )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(ranked)), ranked)
    ax.set(xlabel="contribution to churn log-odds (SHAP)", title="What drives predicted risk")
    return _save(fig, path)


def model_report_plots(
    out_dir: Path,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    probability: np.ndarray,
    importance: pd.DataFrame,
    contributions: pd.DataFrame,
    values: pd.DataFrame,
) -> list[Path]:
    """Every plot of a training run, written as PNG files into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_roc(y, scores, out_dir / "roc.png"),
        plot_precision_recall(y, scores, out_dir / "precision_recall.png"),
        plot_gains_and_lift(y, scores, out_dir / "gains_lift.png"),
        plot_calibration(y, probability, out_dir / "calibration.png"),
        plot_feature_importance(importance, out_dir / "feature_importance.png"),
        plot_shap_summary(contributions, values, out_dir / "shap_summary.png"),
    ]
