"""Customer lifetime value from a transaction model and a spend model.

``CLV_i = sum_k spend_i * (E[X_i(t_k)] - E[X_i(t_{k-1})]) / (1 + d)^k`` over ``horizon``
discounting periods (months by default), with ``E[X_i(t)]`` the conditional expected repeat
purchases of the transaction model. Per-customer intervals come from re-evaluating the sum at
draws of both models' parameters from their asymptotic (log-normal) sampling distribution.
The expensive part is evaluated once per distinct purchase history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from custdyn.models._base import BaseModel, FloatArray, compress_rows, value_codes
from custdyn.models.beta_geo_beta_binom import BetaGeoBetaBinom
from custdyn.models.gamma_gamma import GammaGamma
from custdyn.models.rfm import TIME_UNITS, _column
from custdyn.models.shifted_beta_geo import ShiftedBetaGeo

__all__ = ["clv"]

_MONTH_DAYS = 365.25 / 12.0


def _has(data: Any, name: str) -> bool:
    try:
        _column(data, name)
        return True
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _col(data: Any, name: str) -> FloatArray:
    return np.asarray(_column(data, name), dtype=np.float64)


def _discount_weights(horizon: int, discount_rate: float, continuous: bool, sub: int) -> tuple[FloatArray, FloatArray]:
    """Step boundaries (in discount periods) and the discount factor of each step."""
    if continuous:
        edges = np.arange(horizon * sub + 1) / sub
        mid = 0.5 * (edges[1:] + edges[:-1])
        return edges, np.exp(-np.log1p(discount_rate) * mid)
    edges = np.arange(horizon + 1, dtype=float)
    return edges, (1.0 + discount_rate) ** -edges[1:]


def _discounted_purchases(model: BaseModel, rows: tuple[FloatArray, ...], edges: FloatArray, factor: float, disc: FloatArray) -> FloatArray:
    """``sum_k (E[X(t_k)] - E[X(t_{k-1})]) disc_k`` per distinct row, shape (m,)."""
    if isinstance(model, ShiftedBetaGeo):
        raise TypeError("use the sBG branch")
    ts = edges[1:] * factor
    # sum_k disc_k (E_k - E_{k-1}) = sum_k (disc_k - disc_{k+1}) E_k, with disc_{K+1} = 0
    coef = disc - np.append(disc[1:], 0.0)
    if isinstance(model, BetaGeoBetaBinom):
        ts = np.floor(ts + 1e-9)
        total = np.zeros(len(rows[0]))
        for c, t in zip(coef, ts, strict=True):
            total += c * model.conditional_expected_purchases(t, *rows)
    else:
        total = model._weighted_curve(ts, coef, *rows)  # type: ignore[attr-defined]
    return np.maximum(total, 0.0)


def clv(
    transaction_model: BaseModel,
    spend_model: GammaGamma | None,
    data: Any,
    horizon: int = 12,
    discount_rate: float = 0.01,
    time_unit: str | float = "W",
    continuous: bool = False,
    n_draws: int = 100,
    interval: float = 0.9,
    margin: float = 1.0,
    seed: int | None = 0,
    substeps: int = 8,
) -> Any:
    """Expected discounted value of each customer over a horizon.

    Parameters
    ----------
    transaction_model : fitted BetaGeo, ModifiedBetaGeo, ParetoNBD, BetaGeoBetaBinom or ShiftedBetaGeo
    spend_model : fitted GammaGamma or None
        None uses ``monetary_value`` as it is (or 1, i.e. discounted purchases, if absent).
        For ShiftedBetaGeo, ``monetary_value`` is the payment per period.
    data : pandas/polars DataFrame, Arrow table or dict
        Columns ``frequency``, ``recency``, ``T`` (BG/BB: ``n_periods`` instead of ``T``; sBG:
        ``periods`` survived by active subscribers, optional ``churned``) and
        ``monetary_value``.
    horizon : int, default 12
        Number of discounting periods.
    discount_rate : float, default 0.01
        Discount rate per discounting period.
    time_unit : {"D", "W", "M", "Y", "H"} or float, default "W"
        The unit of recency and T; the discounting period is a month (365.25/12 days). A float
        gives the number of model time units per discounting period directly (for BG/BB: the
        number of transaction opportunities per period; default 1 there).
    continuous : bool, default False
        Discount continuously (``substeps`` steps per period) instead of at period ends.
    n_draws : int, default 100
        Parameter draws for the intervals; 0 skips them.
    interval : float, default 0.9
        Central probability of the interval.
    margin : float, default 1.0
        Profit margin applied to spend.
    seed : int, optional
        Seed of the parameter draws.

    Returns
    -------
    pandas.DataFrame, one row per customer (index of ``data`` if it is pandas):
        ``clv``; ``clv_lower`` and ``clv_upper`` when ``n_draws > 0``; ``expected_spend``.
    """
    import pandas as pd

    if discount_rate < 0:
        raise ValueError("discount_rate must be >= 0")
    is_bgbb = isinstance(transaction_model, BetaGeoBetaBinom)
    is_sbg = isinstance(transaction_model, ShiftedBetaGeo)
    if isinstance(time_unit, str):
        factor = 1.0 if (is_bgbb or is_sbg) else _MONTH_DAYS / TIME_UNITS[time_unit]
    else:
        factor = float(time_unit)
    index = data.index if isinstance(data, pd.DataFrame) else None

    monetary = _col(data, "monetary_value") if _has(data, "monetary_value") else None
    if is_sbg:
        periods = _col(data, "periods")
        active = 1.0 - _col(data, "churned") if _has(data, "churned") else np.ones_like(periods)
        hist: tuple[FloatArray, ...] = (periods,)
    elif is_bgbb:
        hist = (_col(data, "frequency"), _col(data, "recency"), _col(data, "n_periods"))
    else:
        hist = (_col(data, "frequency"), _col(data, "recency"), _col(data, "T"))
    n = len(hist[0])
    freq = hist[0] if not is_sbg else np.zeros(n)

    def spend_for(model: GammaGamma | None) -> FloatArray:
        if model is None:
            return monetary if monetary is not None else np.ones(n)
        if monetary is None:
            raise ValueError("spend_model needs a monetary_value column")
        return model.conditional_expected_spend(freq, monetary)

    rows, _, inverse = compress_rows(list(hist))
    edges, disc = _discount_weights(int(horizon), float(discount_rate), continuous, substeps)

    def per_row(model: BaseModel) -> FloatArray:
        if is_sbg:
            assert isinstance(model, ShiftedBetaGeo)
            return model.expected_residual_payments(rows[0], discount_rate, horizon=int(horizon))
        return _discounted_purchases(model, tuple(rows), edges, factor, disc)

    base = per_row(transaction_model)[inverse]
    if is_sbg:
        base = base * active
    spend = spend_for(spend_model)
    out: dict[str, FloatArray] = {"clv": margin * spend * base}

    if n_draws > 0:
        rng_seed = None if seed is None else int(seed)
        t_draws = transaction_model._parameter_draws(n_draws, rng_seed)
        s_draws = spend_model._parameter_draws(n_draws, None if seed is None else int(seed) + 1) if spend_model else None
        lo_q, hi_q = 0.5 - interval / 2, 0.5 + interval / 2
        # each distinct history's draws side by side (a row per history): the quantiles
        # below then read contiguous rows
        row_draws = np.empty((len(rows[0]), n_draws))
        for j in range(n_draws):
            row_draws[:, j] = per_row(transaction_model._with_params(t_draws[j]))
        # the spend draws per distinct (frequency, monetary value), or the spend as it is
        if spend_model is not None:
            assert monetary is not None and s_draws is not None
            (s_freq, s_mon), _, s_inv = compress_rows([freq, monetary])
            spend_draws = np.empty((len(s_freq), n_draws))
            for j in range(n_draws):
                draw = spend_model._with_params(s_draws[j])
                assert isinstance(draw, GammaGamma)
                spend_draws[:, j] = draw.conditional_expected_spend(s_freq, s_mon)
        else:
            s_vals, s_inv = value_codes(spend)
            spend_draws = s_vals[:, None]
        # every customer's interval depends on (history, spend[, active]) only: the
        # quantiles are taken once per distinct combination of them
        parts = [inverse.astype(np.float64), s_inv.astype(np.float64)]
        if is_sbg:
            parts.append(active)
        combos, _, c_inv = compress_rows(parts)
        h_of = combos[0].astype(np.intp)
        s_of = combos[1].astype(np.intp)
        n_c = len(h_of)
        lower_c = np.empty(n_c)
        upper_c = np.empty(n_c)
        chunk = max(1, 4_000_000 // n_draws)
        for lo in range(0, n_c, chunk):
            hi = min(n_c, lo + chunk)
            vals = row_draws[h_of[lo:hi]] * spend_draws[s_of[lo:hi]]
            if is_sbg:
                vals = vals * combos[2][lo:hi, None]
            q = np.quantile(vals, [lo_q, hi_q], axis=1)
            lower_c[lo:hi], upper_c[lo:hi] = margin * q[0], margin * q[1]
        out["clv_lower"] = np.minimum(lower_c[c_inv], out["clv"])
        out["clv_upper"] = np.maximum(upper_c[c_inv], out["clv"])
    out["expected_spend"] = spend
    return pd.DataFrame(out, index=index)
