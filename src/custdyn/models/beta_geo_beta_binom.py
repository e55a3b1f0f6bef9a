"""BG/BB: the beta-geometric / beta-Bernoulli model for discrete-time non-contractual settings
(Fader, Hardie & Shang 2010)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from custdyn.models._base import BaseModel, FloatArray, as_float_array, log_beta

__all__ = ["BetaGeoBetaBinom"]


def _check(frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = as_float_array(frequency, "frequency")
    tx = as_float_array(recency, "recency")
    n = as_float_array(n_periods, "n_periods")
    x, tx, n = (np.ascontiguousarray(v, dtype=float) for v in np.broadcast_arrays(x, tx, n))
    if np.any(x < 0) or np.any(x > tx) or np.any(tx > n):
        raise ValueError("BG/BB needs 0 <= frequency <= recency <= n_periods")
    if np.any(np.round(n) != n) or np.any(np.round(tx) != tx) or np.any(np.round(x) != x):
        raise ValueError("BG/BB inputs count periods and must be whole numbers")
    return x, tx, n


class BetaGeoBetaBinom(BaseModel):
    """BG/BB model: at each of ``n`` discrete transaction opportunities a living customer buys
    with probability ``p ~ Beta(alpha, beta)``; before each opportunity a living customer leaves
    with probability ``theta ~ Beta(gamma, delta)``.

    Inputs are ``frequency`` (number of opportunities with a purchase, ``x``), ``recency``
    (the opportunity of the last purchase, ``t_x``, 0 if none) and ``n_periods`` (``n``).

    Attributes
    ----------
    params_ : dict
        ``alpha``, ``beta``, ``gamma``, ``delta``.
    """

    _param_names = ("alpha", "beta", "gamma", "delta")
    _lower = (0.0, 0.0, 0.0, 0.0)
    _data_names = ("frequency", "recency", "n_periods")

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        n_periods: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> BetaGeoBetaBinom:
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency, recency, n_periods : array-like, shape (m,)
            Whole numbers with ``0 <= frequency <= recency <= n_periods``.
        weights : array-like, shape (m,), optional
            Number of customers per row (e.g. the donations data are given this way).

        Returns
        -------
        self
        """
        data = _check(frequency, recency, n_periods)
        return self._fit_arrays(data, None if weights is None else as_float_array(weights))  # type: ignore[return-value]

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        return np.array([1.0, 1.0, 1.0, 1.0])

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        al, be, ga, de = (float(v) for v in params)
        x, tx, n = data
        m = len(x)
        # constants from the normalising B(alpha, beta) B(gamma, delta)
        c = np.array(
            [
                special.digamma(al) - special.digamma(al + be),
                special.digamma(be) - special.digamma(al + be),
                special.digamma(ga) - special.digamma(ga + de),
                special.digamma(de) - special.digamma(ga + de),
            ]
        )
        base = -log_beta(al, be) - log_beta(ga, de)
        l0 = log_beta(al + x, be + n - x) + log_beta(ga, de + n) + base
        g0 = np.empty((4, m))
        g0[0] = special.digamma(al + x) - special.digamma(al + be + n)
        g0[1] = special.digamma(be + n - x) - special.digamma(al + be + n)
        g0[2] = special.digamma(ga) - special.digamma(ga + de + n)
        g0[3] = special.digamma(de + n) - special.digamma(ga + de + n)
        # running log-sum-exp over the terms i = 0 .. n - t_x - 1
        mx = l0.copy()
        acc = np.ones(m)
        gacc = g0.copy()
        gap = n - tx
        for i in range(int(gap.max()) if m else 0):
            act = gap > i
            xi, txi = x[act], tx[act]
            li = log_beta(al + xi, be + txi - xi + i) + log_beta(ga + 1, de + txi + i) + base
            gi = np.empty((4, len(xi)))
            gi[0] = special.digamma(al + xi) - special.digamma(al + be + txi + i)
            gi[1] = special.digamma(be + txi - xi + i) - special.digamma(al + be + txi + i)
            gi[2] = special.digamma(ga + 1) - special.digamma(ga + 1 + de + txi + i)
            gi[3] = special.digamma(de + txi + i) - special.digamma(ga + 1 + de + txi + i)
            new_m = np.maximum(mx[act], li)
            scale = np.exp(mx[act] - new_m)
            e = np.exp(li - new_m)
            acc[act] = acc[act] * scale + e
            gacc[:, act] = gacc[:, act] * scale + e * gi
            mx[act] = new_m
        ll = mx + np.log(acc)
        g = gacc / acc - c[:, None]
        return ll, g

    # -------------------------------------------------------------- predictions
    def _log_lik_rows(self, x: FloatArray, tx: FloatArray, n: FloatArray) -> FloatArray:
        return self._loglik(np.array(self._p()), (x, tx, n))[0]

    def p_alive(
        self, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike, t: ArrayLike = 0
    ) -> FloatArray:
        """Probability that each customer is alive at opportunity ``n + t``.

        ``t = 1`` gives the probability of being alive for the next opportunity (Table 6 of
        Fader, Hardie & Shang 2010).

        Returns
        -------
        array, shape (m,), in [0, 1]
        """
        al, be, ga, de = self._p()
        x, tx, n = _check(frequency, recency, n_periods)
        t = np.broadcast_to(as_float_array(t, "t"), x.shape)
        ll = self._log_lik_rows(x, tx, n)
        num = log_beta(al + x, be + n - x) - log_beta(al, be) + log_beta(ga, de + n + t) - log_beta(ga, de)
        return np.clip(np.exp(num - ll), 0.0, 1.0)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, n_periods: ArrayLike
    ) -> FloatArray:
        """Expected purchases in the next ``t`` opportunities (``n+1 .. n+t``) per customer.

        Returns
        -------
        array, shape (m,)
        """
        al, be, ga, de = self._p()
        x, tx, n = _check(frequency, recency, n_periods)
        t_arr = np.broadcast_to(as_float_array(t, "t"), x.shape)
        ll = self._log_lik_rows(x, tx, n)
        head = log_beta(al + x + 1, be + n - x) - log_beta(al, be) - log_beta(ga, de) - ll
        total = np.zeros_like(x)
        for k in range(1, int(np.max(t_arr, initial=0)) + 1):
            act = t_arr >= k
            total[act] += np.exp(head[act] + log_beta(ga, de + n[act] + k))
        return np.maximum(total, 0.0)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected purchases in the first ``t`` opportunities for a new customer; shape of t."""
        al, be, ga, de = self._p()
        t_arr = as_float_array(t, "t")
        out = np.zeros_like(t_arr)
        for k in range(1, int(np.max(t_arr, initial=0)) + 1):
            out[t_arr >= k] += np.exp(log_beta(ga, de + k) - log_beta(ga, de))
        return al / (al + be) * out

    def probability_of_n_purchases(self, t: ArrayLike, n: ArrayLike) -> FloatArray:
        """``P(X(t) = n)``: exactly ``n`` purchases in the first ``t`` opportunities."""
        al, be, ga, de = self._p()
        t_arr, x = np.broadcast_arrays(as_float_array(t, "t"), as_float_array(n, "n"))
        t_arr, x = t_arr.astype(float), x.astype(float)
        lab, lgd = log_beta(al, be), log_beta(ga, de)

        def lchoose(a: FloatArray, b: FloatArray) -> FloatArray:
            return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)

        with np.errstate(all="ignore"):
            out = np.where(
                x <= t_arr,
                np.exp(lchoose(t_arr, x) + log_beta(al + x, be + t_arr - x) - lab + log_beta(ga, de + t_arr) - lgd),
                0.0,
            )
            for i in range(int(np.max(t_arr, initial=0))):
                act = (i >= x) & (i < t_arr)
                if np.any(act):
                    xa = x[act]
                    out[act] += np.exp(
                        lchoose(np.full_like(xa, i), xa)
                        + log_beta(al + xa, be + i - xa)
                        - lab
                        + log_beta(ga + 1, de + i)
                        - lgd
                    )
        return np.clip(np.nan_to_num(out), 0.0, 1.0)

    def sample(self, n: int, n_periods: int, seed: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Simulate ``n`` customers over ``n_periods`` opportunities.

        Returns
        -------
        frequency, recency, n_periods : arrays, shape (n,)
        """
        al, be, ga, de = self._p()
        rng = np.random.default_rng(seed)
        p = rng.beta(al, be, n)
        theta = rng.beta(ga, de, n)
        life = rng.geometric(np.clip(theta, 1e-300, 1.0)) - 1  # opportunities survived
        x = np.zeros(n)
        tx = np.zeros(n)
        for k in range(1, n_periods + 1):
            buy = (life >= k) & (rng.random(n) < p)
            x += buy
            tx[buy] = k
        return x, tx, np.full(n, float(n_periods))
