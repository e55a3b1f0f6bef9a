"""MBG/NBD: the modified BG/NBD of Batislam, Denizel & Filiztekin (2007)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from custdyn.models._base import (
    FloatArray,
    TransactionModel,
    as_float_array,
    beta_power_expectation,
    bg_conditional_expected,
    bg_expected_curve,
    bg_family_sum,
    bg_per_x,
    bg_time_terms,
    bg_weighted_curve,
    check_rfm,
    log_beta,
    log_nb_pmf,
    nb_survival,
    recip_beta_expectation,
)
from custdyn.models.beta_geo import _bg_sample

__all__ = ["ModifiedBetaGeo"]


class ModifiedBetaGeo(TransactionModel):
    """MBG/NBD model: as BG/NBD, but a customer may also drop out right after the first
    purchase (time 0), so customers without repeat purchases can be inactive.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``a``, ``b``.
    """

    _param_names = ("r", "alpha", "a", "b")
    _lower = (0.0, 0.0, 0.0, 0.0)

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        r, alpha, a, b = params
        x, tx, big_t = data
        la_t, la_x, ia_t, ia_x = bg_time_terms(self, alpha, tx, big_t)
        a3 = -(r + x) * la_t
        a4 = np.log(a) - np.log(b + x) - (r + x) * la_x
        m = np.logaddexp(a3, a4)
        w3 = np.exp(a3 - m)
        w4 = np.exp(a4 - m)
        ux, inv = self._unique_index(x)
        per_x = bg_per_x(r, alpha, a, b, ux, 1.0)
        ll = per_x["lg"][inv] + m
        g = np.empty((4, len(x)))
        g[0] = per_x["dr"][inv] - w3 * la_t - w4 * la_x
        g[1] = r / alpha - (r + x) * (w3 * ia_t + w4 * ia_x)
        g[2] = per_x["da"][inv] + w4 / a
        g[3] = per_x["db"][inv] - w4 / (b + x)
        return ll, g

    def _loglik_sum_hess(
        self, params: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray, hess: bool = True
    ) -> tuple[float, FloatArray, FloatArray | None]:
        """Weighted log-likelihood, its gradient (4,) and analytic Hessian (4, 4)."""
        r, alpha, a, b = (float(v) for v in params)
        ux, _ = self._unique_index(data[0])
        per_x = bg_per_x(r, alpha, a, b, ux, 1.0, hess)
        per_x["c4"] = np.log(a) - np.log(b + ux)
        per_x["ib"] = 1.0 / (b + ux)
        return bg_family_sum(self, r, alpha, a, data, weights, per_x, hess)

    def p_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, t: ArrayLike = 0.0
    ) -> FloatArray:
        """Probability each customer is alive at ``T`` (``t = 0``) or at ``T + t``.

        Returns
        -------
        array, shape (n,), in [0, 1]
        """
        r, alpha, a, b = self._p()
        x, tx, big_t = check_rfm(frequency, recency, T)
        t = np.broadcast_to(as_float_array(t, "t"), x.shape)
        with np.errstate(all="ignore"):
            lg = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))
            now = special.expit(-lg)
        later = beta_power_expectation(r + x, np.full_like(x, a), b + x + 1, t / (alpha + big_t))
        return np.clip(now * later, 0.0, 1.0)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected repeat purchases in ``(0, t]`` for a new customer; shape of ``t``."""
        r, alpha, a, b = self._p()
        t = as_float_array(t, "t")
        k = recip_beta_expectation(np.full_like(t, r), np.full_like(t, a), np.full_like(t, b + 1), t / alpha)
        return b / (a + b) * k

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected repeat purchases in ``(T, T + t]`` given each customer's history; shape (n,)."""
        return bg_conditional_expected(self, t, frequency, recency, T, b_shift=1.0)

    def _expected_curve(self, ts: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
        return bg_expected_curve(self, ts, x, tx, big_t, b_shift=1.0)

    def _weighted_curve(
        self, ts: FloatArray, coef: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> FloatArray:
        return bg_weighted_curve(self, ts, coef, x, tx, big_t, b_shift=1.0)

    def probability_of_n_purchases(self, t: ArrayLike, n: ArrayLike) -> FloatArray:
        """``P(X(t) = n)`` for a new customer; values in [0, 1]."""
        r, alpha, a, b = self._p()
        t_arr, n_arr = np.broadcast_arrays(as_float_array(t, "t"), as_float_array(n, "n"))
        lbab = log_beta(a, b)
        with np.errstate(all="ignore"):
            first = np.exp(log_beta(a, b + n_arr + 1) - lbab + log_nb_pmf(n_arr, r, alpha, t_arr))
            second = np.exp(log_beta(a + 1, b + n_arr) - lbab) * nb_survival(
                n_arr, np.full_like(t_arr, r), t_arr / (alpha + t_arr)
            )
        return np.clip(np.nan_to_num(first + second, nan=0.0), 0.0, 1.0)

    def sample(self, n: int, T: ArrayLike, seed: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Simulate ``n`` customers; returns ``(frequency, recency, T)``, each shape (n,)."""
        return _bg_sample(self, n, T, seed, drop_offset=1)
