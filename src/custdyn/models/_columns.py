"""Column helpers shared by the models that take tables: any column as float with NaN."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def float_column(col: Any) -> FloatArray:
    """One column (array, list, pandas/polars Series, Arrow array) as float, with NaN for
    missing values (None, NaN, pandas' NA)."""
    if hasattr(col, "iloc") and hasattr(col, "to_numpy"):  # pandas, incl. nullable dtypes
        try:
            return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            col = col.to_numpy()
    elif hasattr(col, "to_numpy") and not isinstance(col, np.ndarray):
        try:
            col = col.to_numpy(zero_copy_only=False)
        except TypeError:
            col = col.to_numpy()
    try:
        return np.asarray(col, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        obj = np.asarray(col, dtype=object).reshape(-1)
        return np.array([np.nan if is_missing(v) else float(v) for v in obj], dtype=np.float64)


def is_missing(v: Any) -> bool:
    return v is None or type(v).__name__ in ("NAType", "NaTType")
