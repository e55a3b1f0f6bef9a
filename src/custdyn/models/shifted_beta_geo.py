"""sBG: the shifted-beta-geometric model of contractual churn (Fader & Hardie 2007)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from custdyn.models._base import BaseModel, FloatArray, as_float_array, log_beta

__all__ = ["ShiftedBetaGeo"]


class ShiftedBetaGeo(BaseModel):
    """sBG model: each subscriber renews every period with probability ``1 - theta``,
    ``theta ~ Beta(alpha, beta)`` across subscribers.

    ``P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta)`` and the survival function is
    ``S(t) = B(alpha, beta + t) / B(alpha, beta)``, ``t = 1, 2, ...``.

    Attributes
    ----------
    params_ : dict
        ``alpha``, ``beta``.
    """

    _param_names = ("alpha", "beta")
    _lower = (0.0, 0.0)
    _data_names = ("periods", "churned")

    def fit(self, periods: ArrayLike, churned: ArrayLike, weights: ArrayLike | None = None) -> ShiftedBetaGeo:
        """Fit by maximum likelihood.

        Parameters
        ----------
        periods : array-like of int, shape (n,)
            For a churned subscriber the period ``t >= 1`` in which they left; for an active one
            the number of periods they have survived (renewed) so far.
        churned : array-like of bool, shape (n,)
        weights : array-like, shape (n,), optional
            Subscribers per row (aggregate cohort data).

        Returns
        -------
        self
        """
        t = as_float_array(periods, "periods")
        c = as_float_array(churned, "churned")
        t, c = (np.ascontiguousarray(v) for v in np.broadcast_arrays(t, c))
        if np.any(t < 0) or np.any((c > 0) & (t < 1)):
            raise ValueError("periods must be >= 0, and >= 1 for churned subscribers")
        return self._fit_arrays(  # type: ignore[return-value]
            (t, (c > 0).astype(float)), None if weights is None else as_float_array(weights)
        )

    @staticmethod
    def from_survivors(survivors: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Turn a cohort's survivor counts ``[n_0, n_1, ..., n_k]`` into ``fit`` inputs.

        Returns
        -------
        periods, churned, weights : arrays
            Churners in each period 1..k and the ``n_k`` still active after ``k`` periods.
        """
        s = as_float_array(survivors, "survivors")
        k = len(s) - 1
        lost = s[:-1] - s[1:]
        periods = np.concatenate([np.arange(1, k + 1, dtype=float), [float(k)]])
        churned = np.concatenate([np.ones(k), [0.0]])
        weights = np.concatenate([lost, [s[-1]]])
        return periods, churned, weights

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        return np.array([1.0, 1.0])

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        al, be = (float(v) for v in params)
        t, c = data
        ch = c > 0
        tt = np.where(ch, t - 1.0, t)
        aa = np.where(ch, al + 1.0, al)
        ll = log_beta(aa, be + tt) - log_beta(al, be)
        psi_sum = special.digamma(aa + be + tt)
        g = np.empty((2, len(t)))
        g[0] = special.digamma(aa) - psi_sum - special.digamma(al) + special.digamma(al + be)
        g[1] = special.digamma(be + tt) - psi_sum - special.digamma(be) + special.digamma(al + be)
        return ll, g

    # -------------------------------------------------------------- predictions
    def survival(self, t: ArrayLike) -> FloatArray:
        """``S(t)``: share of a new cohort still subscribed after ``t`` periods; in [0, 1]."""
        al, be = self._p()
        t = as_float_array(t, "t")
        return np.clip(np.exp(log_beta(al, be + t) - log_beta(al, be)), 0.0, 1.0)

    def churn_probability(self, t: ArrayLike) -> FloatArray:
        """``P(T = t)``: probability a new subscriber leaves in period ``t >= 1``."""
        al, be = self._p()
        t = as_float_array(t, "t")
        with np.errstate(all="ignore"):
            out = np.exp(log_beta(al + 1, be + t - 1) - log_beta(al, be))
        return np.clip(np.where(t >= 1, out, 0.0), 0.0, 1.0)

    def retention_rate(self, t: ArrayLike) -> FloatArray:
        """Cohort retention rate in period ``t >= 1``: ``(beta + t - 1) / (alpha + beta + t - 1)``."""
        al, be = self._p()
        t = as_float_array(t, "t")
        return (be + t - 1) / (al + be + t - 1)

    def p_alive(self, periods: ArrayLike, t: ArrayLike = 1) -> FloatArray:
        """Probability that a subscriber active after ``periods`` periods is still active after
        ``periods + t``: ``S(n + t) / S(n)``."""
        al, be = self._p()
        n, t_arr = np.broadcast_arrays(as_float_array(periods, "periods"), as_float_array(t, "t"))
        return np.clip(np.exp(log_beta(al, be + n + t_arr) - log_beta(al, be + n)), 0.0, 1.0)

    def expected_residual_payments(self, periods: ArrayLike, discount_rate: float, horizon: int | None = None) -> FloatArray:
        """Discounted expected number of future renewals of an active subscriber.

        ``sum_{k >= 1} S(n + k) / S(n) (1 + d)^-k`` (the discounted expected residual lifetime
        of Fader & Hardie 2010, counted from the next renewal); with ``horizon`` the sum stops at
        ``k = horizon``.

        Parameters
        ----------
        periods : array-like, shape (n,)
            Periods survived so far.
        discount_rate : float
            Per period, ``> 0`` unless ``horizon`` is given.
        horizon : int, optional

        Returns
        -------
        array, shape (n,)
        """
        al, be = self._p()
        n = as_float_array(periods, "periods")
        z = 1.0 / (1.0 + discount_rate)
        if horizon is None:
            if discount_rate <= 0:
                raise ValueError("an infinite horizon needs discount_rate > 0")
            with np.errstate(all="ignore"):
                out = special.hyp2f1(1.0, be + n, al + be + n, z) - 1.0
            good = np.isfinite(out) & (out >= 0) & (out <= z / (1 - z) * (1 + 1e-9))
            if np.all(good):
                return np.asarray(out, dtype=float)
            horizon_bad = int(min(np.ceil(40 / max(-np.log(z), 1e-6)), 1_000_000))
            out[~good] = self._residual_sum(al, be, n[~good], z, horizon_bad)
            return np.asarray(out, dtype=float)
        return self._residual_sum(al, be, n, z, int(horizon))

    @staticmethod
    def _residual_sum(al: float, be: float, n: FloatArray, z: float, horizon: int) -> FloatArray:
        out = np.zeros_like(n)
        lp = np.zeros_like(n)
        for k in range(1, horizon + 1):
            lp = lp + np.log((be + n + k - 1) / (al + be + n + k - 1)) + np.log(z)
            out += np.exp(lp)
        return out

    def sample(self, n: int, n_periods: int, seed: int | None = None) -> tuple[FloatArray, FloatArray]:
        """Simulate ``n`` subscribers observed for ``n_periods``; returns ``(periods, churned)``."""
        al, be = self._p()
        rng = np.random.default_rng(seed)
        theta = rng.beta(al, be, n)
        life = rng.geometric(np.clip(theta, 1e-300, 1.0)).astype(float)  # period of churn
        churned = life <= n_periods
        return np.where(churned, life, float(n_periods)), churned.astype(float)
