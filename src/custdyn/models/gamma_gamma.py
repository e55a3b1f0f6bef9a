"""Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005; Fader & Hardie 2013)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from custdyn.errors import DataWarning
from custdyn.models._base import BaseModel, FloatArray, as_float_array, dot

__all__ = ["GammaGamma"]


class GammaGamma(BaseModel):
    """Gamma-Gamma spend model.

    A customer's transaction values are ``Gamma(p, nu)``; across customers
    ``nu ~ Gamma(q, v)``. The mean spend of a customer is ``p / nu`` and the population mean is
    ``p v / (q - 1)``.

    Parameters
    ----------
    q_constraint : bool, default True
        Keep ``q > 1`` so that the expected spend is finite for every customer.
    penalizer, max_iter, tol
        See :class:`custdyn.models._base.BaseModel`.

    Attributes
    ----------
    params_ : dict
        ``p``, ``q``, ``v``.
    """

    _param_names = ("p", "q", "v")
    _data_names = ("frequency", "monetary_value")

    def __init__(
        self, q_constraint: bool = True, penalizer: float = 0.0, max_iter: int = 2000, tol: float = 1e-9
    ) -> None:
        super().__init__(penalizer=penalizer, max_iter=max_iter, tol=tol)
        self.q_constraint = bool(q_constraint)

    @property
    def _lower(self) -> tuple[float, ...]:  # type: ignore[override]
        return (0.0, 1.0 if self.q_constraint else 0.0, 0.0)

    def fit(
        self, frequency: ArrayLike, monetary_value: ArrayLike, weights: ArrayLike | None = None
    ) -> GammaGamma:
        """Fit on customers with at least one repeat purchase.

        Parameters
        ----------
        frequency : array-like, shape (n,)
            Number of repeat purchases ``x``; rows with ``x = 0`` are ignored.
        monetary_value : array-like, shape (n,)
            Mean value of the repeat purchases (currency units); must be > 0 where ``x > 0``.
        weights : array-like, shape (n,), optional

        Returns
        -------
        self
        """
        x = as_float_array(frequency, "frequency")
        m = as_float_array(monetary_value, "monetary_value")
        x, m = np.broadcast_arrays(x, m)
        w = None if weights is None else as_float_array(weights, "weights")
        keep = x > 0
        if not np.all(keep):
            warnings.warn(
                f"GammaGamma ignores {int((~keep).sum()):,} customers without repeat purchases",
                DataWarning,
                stacklevel=2,
            )
        if np.any(m[keep] <= 0):
            raise ValueError("monetary_value must be > 0 for customers with repeat purchases")
        return self._fit_arrays(  # type: ignore[return-value]
            (np.ascontiguousarray(x[keep]), np.ascontiguousarray(m[keep])),
            None if w is None else w[keep],
        )

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        _, m = data
        mean = dot(weights, m) / weights.sum()
        # p = 2, q = 3 gives population mean p v / (q - 1) = v
        return np.array([2.0, 3.0, max(mean, 1e-8)])

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        p, q, v = params
        x, m = data
        px = p * x
        lxm = np.log(x * m + v)
        ll = (
            special.gammaln(px + q)
            - special.gammaln(px)
            - special.gammaln(q)
            + q * np.log(v)
            + (px - 1) * np.log(m)
            + px * np.log(x)
            - (px + q) * lxm
        )
        psi = special.digamma(px + q)
        g = np.empty((3, len(x)))
        g[0] = x * (psi - special.digamma(px) + np.log(m) + np.log(x) - lxm)
        g[1] = psi - special.digamma(q) + np.log(v) - lxm
        g[2] = q / v - (px + q) / (x * m + v)
        return ll, g

    def _loglik_sum_hess(
        self, params: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray, hess: bool = True
    ) -> tuple[float, FloatArray, FloatArray | None]:
        """Weighted log-likelihood, gradient (3,) and analytic Hessian (3, 3).

        The gamma functions depend on ``x`` only and are evaluated once per distinct frequency;
        per row there remain ``log(x m + v)`` and its reciprocal, summed per frequency.
        """
        p, q, v = (float(t) for t in params)
        x, m = data
        ux, inv = self._unique_index(x)
        caches: dict[int, Any] = self.__dict__.setdefault("_gg_caches", {})
        cache = caches.get(id(weights))
        if cache is None or cache[0] is not weights or cache[1] is not x:
            lm = np.log(m)
            cache = (
                weights,
                x,
                x * m,
                np.bincount(inv, weights=weights, minlength=len(ux)),
                np.bincount(inv, weights=weights * lm, minlength=len(ux)),
                dot(weights, lm),
                float(weights.sum()),
            )
            caches[id(weights)] = cache
        xm, wx, wlm, wlm_sum, wsum = cache[2], cache[3], cache[4], cache[5], cache[6]
        s = xm + v
        ls = np.log(s)
        inv_s = 1.0 / s
        bl = np.bincount(inv, weights=weights * ls, minlength=len(ux))
        ws = weights * inv_s
        bi = np.bincount(inv, weights=ws, minlength=len(ux))
        pxq = p * ux + q
        lux = np.log(ux)
        ll = float(
            wx @ (special.gammaln(pxq) - special.gammaln(p * ux) + p * ux * lux)
            + wsum * (q * np.log(v) - special.gammaln(q))
            + p * (ux @ wlm)
            - wlm_sum
            - pxq @ bl
        )
        psi = special.digamma(pxq)
        g = np.empty(3)
        g[0] = float(wx @ (ux * (psi - special.digamma(p * ux) + lux)) + ux @ wlm - ux @ bl)
        g[1] = float(wx @ psi + wsum * (np.log(v) - special.digamma(q)) - bl.sum())
        g[2] = float(wsum * q / v - pxq @ bi)
        if not hess:
            return ll, g, None
        bi2 = np.bincount(inv, weights=ws * inv_s, minlength=len(ux))
        tg = special.polygamma(1, pxq)
        h = np.empty((3, 3))
        h[0, 0] = float(wx @ (ux**2 * (tg - special.polygamma(1, p * ux))))
        h[0, 1] = h[1, 0] = float(wx @ (ux * tg))
        h[0, 2] = h[2, 0] = -float(ux @ bi)
        h[1, 1] = float(wx @ tg) - wsum * float(special.polygamma(1, q))
        h[1, 2] = h[2, 1] = wsum / v - float(bi.sum())
        h[2, 2] = -wsum * q / v**2 + float(pxq @ bi2)
        return ll, g, h

    def conditional_expected_spend(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Expected mean transaction value of each customer given their history.

        ``E[Z | x, m] = p (v + x m) / (p x + q - 1)``; customers without repeat purchases get
        the population mean ``p v / (q - 1)``.

        Parameters
        ----------
        frequency, monetary_value : array-like, shape (n,)

        Returns
        -------
        array, shape (n,), currency units
        """
        p, q, v = self._p()
        x, m = np.broadcast_arrays(as_float_array(frequency), as_float_array(monetary_value))
        m = np.where(x > 0, m, 0.0)
        denom = p * x + q - 1.0
        with np.errstate(all="ignore"):
            out = p * (v + x * m) / denom
        bad = ~(denom > 0)
        if np.any(bad):
            warnings.warn(
                "expected spend is infinite where p*x + q <= 1 (q <= 1); those customers get "
                "their observed mean spend (0 with no repeat purchases)",
                DataWarning,
                stacklevel=2,
            )
            out[bad] = m[bad]
        return out

    def expected_spend(self) -> float:
        """Population mean transaction value ``p v / (q - 1)`` (inf if ``q <= 1``)."""
        p, q, v = self._p()
        return float(p * v / (q - 1.0)) if q > 1 else float("inf")
