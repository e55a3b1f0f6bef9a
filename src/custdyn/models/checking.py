"""Model checking: holdout comparison, cumulative tracking, P(alive) grids, model comparison.

The numbers are computed with numpy; tables are returned as pandas DataFrames for reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from custdyn.models._base import BaseModel, FloatArray, as_float_array
from custdyn.models.clv import _col, _has
from custdyn.models.rfm import (
    TIME_UNITS,
    _column,
    _events,
    _factorize,
    _scalar_days,
    _segments,
    _to_days,
)

__all__ = ["holdout_comparison", "cumulative_tracking", "p_alive_matrix", "compare_models"]


def holdout_comparison(
    model: BaseModel,
    frequency: Any,
    recency: Any,
    T: Any,
    frequency_holdout: Any,
    duration_holdout: Any,
    max_frequency: int = 7,
) -> Any:
    """Predicted vs actual holdout repeat purchases, grouped by calibration frequency.

    Parameters
    ----------
    model : fitted transaction model
    frequency, recency, T : array-like, shape (n,)
        Calibration summary.
    frequency_holdout, duration_holdout : array-like, shape (n,)
        Actual purchases in the holdout period and its length (model time units).
    max_frequency : int, default 7
        Customers with more calibration repeat purchases share the last group ("7+").

    Returns
    -------
    pandas.DataFrame with columns ``frequency`` (group label), ``customers``, ``actual`` and
    ``predicted`` (mean holdout purchases per customer of the group).
    """
    import pandas as pd

    x = as_float_array(frequency, "frequency")
    actual = as_float_array(frequency_holdout, "frequency_holdout")
    dur = np.broadcast_to(as_float_array(duration_holdout, "duration_holdout"), x.shape)
    pred = model.conditional_expected_purchases(dur, x, recency, T)  # type: ignore[attr-defined]
    group = np.minimum(x, max_frequency).astype(int)
    k = max_frequency + 1
    n = np.bincount(group, minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        act = np.bincount(group, weights=actual, minlength=k) / n
        prd = np.bincount(group, weights=pred, minlength=k) / n
    labels = [str(i) for i in range(max_frequency)] + [f"{max_frequency}+"]
    keep = n > 0
    return pd.DataFrame(
        {
            "frequency": np.array(labels)[keep],
            "customers": n[keep].astype(int),
            "actual": act[keep],
            "predicted": prd[keep],
        }
    )


def cumulative_tracking(
    model: BaseModel,
    transactions: Any,
    customer_col: str,
    time_col: str,
    time_unit: str | float = "W",
    calibration_end: Any = None,
    observation_end: Any = None,
    step: float = 1.0,
    merge_same_day: bool = True,
) -> Any:
    """Cumulative repeat purchases over time, actual vs predicted by the model.

    The cohort is every customer whose first purchase is on or before ``calibration_end``
    (default: all). The prediction sums ``E[X(t - first_i)]`` over the cohort.

    Parameters
    ----------
    model : fitted transaction model with ``expected_purchases``
    transactions, customer_col, time_col, time_unit, merge_same_day
        As in :func:`custdyn.models.rfm_summary`.
    calibration_end, observation_end : datetime-like, optional
    step : float, default 1
        Grid spacing in model time units.

    Returns
    -------
    pandas.DataFrame with ``t`` (time units since the first transaction), ``actual``,
    ``predicted`` (cumulative repeat purchases) and ``calibration`` (bool: inside calibration).
    """
    import pandas as pd

    unit = TIME_UNITS[time_unit] if isinstance(time_unit, str) else float(time_unit)
    codes, _ = _factorize(_column(transactions, customer_col))
    days = _to_days(_column(transactions, time_col))
    end = float(days.max()) if observation_end is None else _scalar_days(observation_end)
    keep = days <= end + (1.0 if merge_same_day else 0.0)
    ec, et, _ = _events(codes[keep], days[keep], None, merge_same_day)
    starts = _segments(ec)
    first_of = np.repeat(et[starts], np.diff(np.append(starts, len(ec))))
    cut = end if calibration_end is None else _scalar_days(calibration_end)
    in_cohort = first_of <= cut + (1.0 if merge_same_day else 0.0) - 1e-9
    origin = float(et.min())
    repeat = np.ones(len(ec), dtype=bool)
    repeat[starts] = False
    rep_t = (et[repeat & in_cohort] - origin) / unit
    grid = np.arange(step, (end - origin) / unit + step, step)
    actual = np.searchsorted(np.sort(rep_t), grid, side="right").astype(float)
    births = (et[starts][et[starts] <= cut + (1.0 if merge_same_day else 0.0) - 1e-9] - origin) / unit
    ub, cnt = np.unique(births, return_counts=True)
    predicted = np.zeros_like(grid)
    for b, c in zip(ub, cnt, strict=True):
        ages = grid - b
        pos = ages > 0
        if np.any(pos):
            predicted[pos] += c * model.expected_purchases(ages[pos])  # type: ignore[attr-defined]
    return pd.DataFrame(
        {"t": grid, "actual": actual, "predicted": predicted, "calibration": grid <= (cut - origin) / unit}
    )


def p_alive_matrix(
    model: BaseModel, T: float, max_frequency: int = 20, recency_points: int = 40
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """P(alive) over a grid of frequency and recency for customers of age ``T``.

    Returns
    -------
    frequency : array, shape (f,)
    recency : array, shape (g,)
    p : array, shape (g, f)
        ``p[i, j]`` is P(alive) for ``recency[i]`` and ``frequency[j]``.
    """
    freq = np.arange(max_frequency + 1, dtype=float)
    rec = np.linspace(0.0, T, recency_points)
    ff, rr = np.meshgrid(freq, rec)
    rr = np.where(ff == 0, 0.0, rr)
    p = model.p_alive(ff.ravel(), rr.ravel(), np.full(ff.size, T)).reshape(ff.shape)  # type: ignore[attr-defined]
    return freq, rec, p


def compare_models(models: Mapping[str, BaseModel], holdout: Any = None) -> Any:
    """Compare fitted transaction models by log-likelihood, AIC/BIC and holdout error.

    Parameters
    ----------
    models : mapping name -> fitted model (all fitted on the same calibration data)
    holdout : frame with ``frequency``, ``recency``, ``T``, ``frequency_holdout`` and
        ``duration_holdout`` (as from ``rfm_summary(..., calibration_end=...)``), optional.

    Returns
    -------
    pandas.DataFrame, one row per model: ``parameters``, ``log_likelihood``, ``aic``, ``bic``,
    ``converged`` and, with holdout data, ``holdout_mae``, ``holdout_rmse`` (per customer) and
    ``holdout_total_error`` (predicted minus actual total purchases).
    """
    import pandas as pd

    rows = []
    for name, m in models.items():
        row: dict[str, Any] = {
            "model": name,
            "parameters": len(m._param_names),
            "log_likelihood": getattr(m, "log_likelihood_", np.nan),
            "aic": getattr(m, "aic_", np.nan),
            "bic": getattr(m, "bic_", np.nan),
            "converged": getattr(m, "converged_", None),
        }
        if holdout is not None and _has(holdout, "frequency_holdout"):
            x, tx, t = _col(holdout, "frequency"), _col(holdout, "recency"), _col(holdout, "T")
            act = _col(holdout, "frequency_holdout")
            dur = _col(holdout, "duration_holdout")
            pred = m.conditional_expected_purchases(dur, x, tx, t)  # type: ignore[attr-defined]
            err = pred - act
            row.update(
                holdout_mae=float(np.mean(np.abs(err))),
                holdout_rmse=float(np.sqrt(np.mean(err**2))),
                holdout_total_error=float(err.sum()),
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
