"""BG/NBD: the beta-geometric / negative binomial distribution model (Fader, Hardie & Lee 2005)."""

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

__all__ = ["BetaGeo"]


class BetaGeo(TransactionModel):
    """BG/NBD model of repeat purchasing in continuous time.

    While alive, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
    (shape ``r``, rate ``alpha``); after each repeat purchase the customer drops out with
    probability ``p ~ Beta(a, b)``.

    Parameters
    ----------
    penalizer : float, default 0
        L2 penalty on the parameters (see :class:`custdyn.models._base.BaseModel`).
    max_iter, tol
        Optimiser settings.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``a``, ``b``.
    standard_errors_, covariance_, log_likelihood_, aic_, bic_, converged_, n_iter_
        See :class:`custdyn.models._base.BaseModel`.
    """

    _param_names = ("r", "alpha", "a", "b")
    _lower = (0.0, 0.0, 0.0, 0.0)

    # -------------------------------------------------------------- likelihood
    def _per_x(self, r: float, alpha: float, a: float, b: float, ux: FloatArray, hess: bool) -> dict[str, FloatArray]:
        """Per distinct frequency: the terms of :func:`bg_per_x` and ``c4``, ``ib`` (the second
        likelihood term is absent at x = 0)."""
        per_x = bg_per_x(r, alpha, a, b, ux, 0.0, hess)
        upos = ux > 0
        bx1 = np.where(upos, b + ux - 1.0, 1.0)
        per_x["c4"] = np.where(upos, np.log(a) - np.log(bx1), -np.inf)
        per_x["ib"] = np.where(upos, 1.0 / bx1, 0.0)
        return per_x

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        r, alpha, a, b = (float(v) for v in params)
        x, tx, big_t = data
        # terms of one column only: once per distinct value, then gathered
        ux, inv = self._unique_index(x)
        la_t, la_x, ia_t, ia_x = bg_time_terms(self, alpha, tx, big_t)
        per_x = self._per_x(r, alpha, a, b, ux, False)
        # per row: log[(alpha+T)^-(r+x) + a/(b+x-1) (alpha+t_x)^-(r+x)] as a3 + softplus(a4 - a3)
        rx = r + x
        a3 = -rx * la_t
        d = per_x["c4"][inv] - rx * (la_x - la_t)
        e = np.exp(-np.abs(d))
        w4 = np.where(d > 0, 1.0, e) / (1.0 + e)
        w3 = 1.0 - w4
        ll = per_x["lg"][inv] + a3 + np.maximum(d, 0.0) + np.log1p(e)
        g = np.empty((4, len(x)))
        g[0] = per_x["dr"][inv] - w3 * la_t - w4 * la_x
        g[1] = r / alpha - rx * (w3 * ia_t + w4 * ia_x)
        g[2] = per_x["da"][inv] + w4 / a
        g[3] = per_x["db"][inv] - w4 * per_x["ib"][inv]
        return ll, g

    def _loglik_sum_hess(
        self, params: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray, hess: bool = True
    ) -> tuple[float, FloatArray, FloatArray | None]:
        """Weighted log-likelihood, its gradient (4,) and analytic Hessian (4, 4)."""
        r, alpha, a, b = (float(v) for v in params)
        ux, _ = self._unique_index(data[0])
        return bg_family_sum(self, r, alpha, a, data, weights, self._per_x(r, alpha, a, b, ux, hess), hess)

    # -------------------------------------------------------------- predictions
    def p_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, t: ArrayLike = 0.0
    ) -> FloatArray:
        """Probability that each customer is alive at ``T`` (``t = 0``) or at ``T + t``.

        Parameters
        ----------
        frequency, recency, T : array-like, shape (n,)
        t : float or array-like, shape (n,)
            Time after the end of observation, in model time units.

        Returns
        -------
        array, shape (n,), values in [0, 1]
        """
        r, alpha, a, b = self._p()
        x, tx, big_t = check_rfm(frequency, recency, T)
        t = np.broadcast_to(as_float_array(t, "t"), x.shape)
        pos = x > 0
        with np.errstate(all="ignore"):
            lg = (
                np.log(a)
                - np.log(np.where(pos, b + x - 1, 1.0))
                + (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))
            )
            now = np.where(pos, special.expit(-lg), 1.0)
        later = beta_power_expectation(r + x, np.full_like(x, a), b + x, t / (alpha + big_t))
        return np.clip(now * later, 0.0, 1.0)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected number of repeat purchases in ``(0, t]`` for a new customer.

        Parameters
        ----------
        t : float or array-like, shape (m,)
            Time since the first purchase, model time units.

        Returns
        -------
        array, shape (m,)
        """
        r, alpha, a, b = self._p()
        t = as_float_array(t, "t")
        return recip_beta_expectation(np.full_like(t, r), np.full_like(t, a), np.full_like(t, b), t / alpha)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected repeat purchases in ``(T, T + t]`` given each customer's history.

        Parameters
        ----------
        t : float or array-like, shape (n,)
            Length of the future window, model time units.
        frequency, recency, T : array-like, shape (n,)

        Returns
        -------
        array, shape (n,)
        """
        return bg_conditional_expected(self, t, frequency, recency, T, b_shift=0.0)

    def _expected_curve(self, ts: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
        return bg_expected_curve(self, ts, x, tx, big_t, b_shift=0.0)

    def _weighted_curve(
        self, ts: FloatArray, coef: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> FloatArray:
        return bg_weighted_curve(self, ts, coef, x, tx, big_t, b_shift=0.0)

    def probability_of_n_purchases(self, t: ArrayLike, n: ArrayLike) -> FloatArray:
        """``P(X(t) = n)``: probability of exactly ``n`` repeat purchases in ``(0, t]``.

        Parameters
        ----------
        t, n : float or array-like, broadcast together

        Returns
        -------
        array, values in [0, 1]
        """
        r, alpha, a, b = self._p()
        t_arr, n_arr = np.broadcast_arrays(as_float_array(t, "t"), as_float_array(n, "n"))
        lbab = log_beta(a, b)
        with np.errstate(all="ignore"):
            first = np.exp(log_beta(a, b + n_arr) - lbab + log_nb_pmf(n_arr, r, alpha, t_arr))
            second = np.where(
                n_arr > 0,
                np.exp(log_beta(a + 1, np.maximum(b + n_arr - 1, 1e-300)) - lbab)
                * nb_survival(n_arr, np.full_like(t_arr, r), t_arr / (alpha + t_arr)),
                0.0,
            )
        return np.clip(np.nan_to_num(first + second, nan=0.0), 0.0, 1.0)

    # -------------------------------------------------------------- simulation
    def sample(self, n: int, T: ArrayLike, seed: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Simulate ``n`` customers; returns ``(frequency, recency, T)``, each shape (n,)."""
        return _bg_sample(self, n, T, seed, drop_offset=0)


def _bg_sample(
    model: TransactionModel, n: int, T: ArrayLike, seed: int | None, drop_offset: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``n`` customers of BG/NBD (``drop_offset`` 0: a customer may leave after each repeat
    purchase) or MBG/NBD (1: also right after the first purchase); the recency is that of
    the x-th of the purchase times, uniform on [0, T]."""
    r, alpha, a, b = model._p()
    rng = np.random.default_rng(seed)
    big_t = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    # the repeat purchase after which the customer leaves (0: right after the first)
    drop_after = rng.geometric(np.clip(p, 1e-300, 1.0)) - drop_offset
    arrivals = rng.poisson(lam * big_t)
    x = np.minimum(arrivals, drop_after).astype(float)
    rec = np.zeros_like(big_t)
    pos = x > 0
    rec[pos] = big_t[pos] * rng.beta(x[pos], arrivals[pos] - x[pos] + 1.0)
    return x, rec, big_t
