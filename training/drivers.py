"""Drivers: the features that push a customer's churn risk up the most, and those whose
contribution moved most since the previous score. Ranked from exact per-feature contributions
(LightGBM pred_contrib), vectorised over rows and returned as Arrow lists of structs, so that
a million customers' drivers cost no Python loop per customer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

DRIVER_TYPE = pa.list_(
    pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])
)
MOVED_TYPE = pa.list_(pa.struct([("feature", pa.string()), ("change", pa.float64())]))


def _value_text(
    values: pd.DataFrame, names: list[str], rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The feature values at (rows[k], cols[k]) as short text: numbers with 6 significant
    digits, categories as they are, missing as None."""
    out = np.empty(len(rows), dtype=object)
    for j in np.unique(cols):
        where = cols == j
        column = values[names[j]]
        if pd.api.types.is_float_dtype(column) or pd.api.types.is_integer_dtype(column):
            picked = column.to_numpy(dtype="float64", na_value=np.nan)[rows[where]]
            out[where] = [None if v != v else f"{v:.6g}" for v in picked.tolist()]
        else:
            picked = column.to_numpy(dtype=object)[rows[where]]
            out[where] = [None if pd.isna(v) else str(v) for v in picked]
    return out


def _ranked_lists(keep: np.ndarray, children: list[pa.Array], list_type: pa.DataType) -> pa.Array:
    """A list per row of the kept entries (children in row-major order) as structs."""
    offsets = np.zeros(len(keep) + 1, dtype=np.int32)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    struct = pa.StructArray.from_arrays(children, fields=list(list_type.value_type))
    return pa.ListArray.from_arrays(pa.array(offsets), struct, type=list_type)


def top_drivers(contrib: np.ndarray, names: list[str], values: pd.DataFrame, top: int) -> pa.Array:
    """Per row, the `top` features with the largest positive contribution to the risk:
    a list of {feature, value, contribution}, largest first."""
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(contrib, order, axis=1)
    keep = picked > 0
    rows = np.broadcast_to(np.arange(len(contrib))[:, None], order.shape)[keep]
    cols = order[keep]
    children = [
        pa.array(np.asarray(names, dtype=object)[cols], pa.string()),
        pa.array(_value_text(values, names, rows, cols), pa.string()),
        pa.array(picked[keep], pa.float64()),
    ]
    return _ranked_lists(keep, children, DRIVER_TYPE)


def moved_drivers(delta: np.ndarray, names: list[str], top: int) -> pa.Array:
    """Per row, the features whose contribution changed most since the previous run:
    a list of {feature, change}, largest change first."""
    order = np.argsort(-np.abs(delta), axis=1, kind="stable")[:, :top]
    picked = np.take_along_axis(delta, order, axis=1)
    keep = picked != 0
    children = [
        pa.array(np.asarray(names, dtype=object)[order[keep]], pa.string()),
        pa.array(picked[keep], pa.float64()),
    ]
    return _ranked_lists(keep, children, MOVED_TYPE)
