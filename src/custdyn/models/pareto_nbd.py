"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987), with a stable likelihood.

The likelihood (Fader & Hardie 2005, "A Note on Deriving the Pareto/NBD Model and Related
Expressions") is

    L = Gamma(r+x) alpha^r beta^s / Gamma(r) * [E1 + s/(r+s+x) (H(t_x) - H(T))],
    E1 = (alpha+T)^-(r+x) (beta+T)^-s,
    H(t) = s/(r+s+x)-free antiderivative term = (alpha+t)^-(r+x) (beta+t)^-s G(t).

``H(t)`` is the Gauss hypergeometric term of the note rewritten with Euler's transformation so
that only ``F(z) = 2F1(1, b'; c'; z)`` with ``0 <= z < 1``, positive parameters and
``c' > b'`` is ever evaluated (a series of positive terms, ``1 <= F <= 1/(1-z)``):

* ``alpha >= beta``: ``G = 2F1(1, r+x; r+s+x+1; (alpha-beta)/(alpha+t))``;
* ``alpha < beta``: ``G = (alpha+t)/(beta+t) 2F1(1, s+1; r+s+x+1; (beta-alpha)/(beta+t))``.

Everything is combined in log space, so nothing overflows for any frequency or age. The
gradient is analytic except for the derivatives of ``F`` in its parameters ``b'`` and ``c'``,
which are central differences; ``F`` is evaluated once per distinct ``(x, t)`` pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from custdyn.models._base import (
    FloatArray,
    TransactionModel,
    as_float_array,
    check_rfm,
    compress_rows,
    dot,
    expm1_ratio,
    log_nb_pmf,
)

__all__ = ["ParetoNBD"]


_LAG_Y, _LAG_W = np.polynomial.laguerre.laggauss(24)


def _laguerre(b: FloatArray, c: FloatArray, z: FloatArray, grad: bool = False
              ) -> tuple[FloatArray, ...]:
    """``log 2F1(1, b; c; z)`` by Gauss-Laguerre quadrature of
    ``(c - 1) * int_0^inf exp(-(c - 1) y) g(y)^-b dy`` with ``g = 1 - z + z e^-y``, scaled by
    the integrand's decay rate at 0, ``k = c - 1 - b z``; with ``grad`` also its derivatives
    in ``b``, ``c`` and ``z`` (``E[-log g]``, ``1 / (c - 1) - E[y]``, ``E[b (1 - e^-y) / g]``
    under the integrand's normalised weights). Accurate (to ~1e-13 against the series) when
    ``k > 10``: the regime of large ``b`` near ``z = 1`` where the library routine is slow or
    returns NaN (a Pareto/NBD fit whose dropout rates barely vary across customers)."""
    k = (c - 1.0) - b * z
    yy = _LAG_Y[None, :] / k[:, None]
    em1 = np.expm1(-yy)  # e^-y - 1
    log_g = np.log1p(z[:, None] * em1)
    lv = -(c - 1.0)[:, None] * yy - b[:, None] * log_g + _LAG_Y[None, :]
    top = lv.max(axis=1, keepdims=True)
    wts = _LAG_W[None, :] * np.exp(lv - top)
    total = wts.sum(axis=1)
    lf = np.asarray(np.log((c - 1.0) / k) + top[:, 0] + np.log(total))
    if not grad:
        return (lf,)
    p = wts / total[:, None]
    d_b = -(p * log_g).sum(axis=1)
    d_c = 1.0 / (c - 1.0) - (p * yy).sum(axis=1)
    d_z = b * (p * (-em1) / np.exp(log_g)).sum(axis=1)
    return lf, d_b, d_c, d_z


def _log_f_laguerre(b: FloatArray, c: FloatArray, z: FloatArray) -> FloatArray:
    """:func:`_laguerre`'s value only."""
    return _laguerre(b, c, z)[0]


def _log_f(b: FloatArray, c: FloatArray, z: FloatArray) -> FloatArray:
    """``log 2F1(1, b; c; z)`` for ``0 <= z < 1``, ``c > b > 0``, clipped to its bounds."""
    b, c, z = np.broadcast_arrays(np.asarray(b, float), np.asarray(c, float),
                                  np.asarray(z, float))
    k = (c - 1.0) - b * z
    quad = (z > 0.3) & (k > 10.0) & (b >= 1000.0)
    lf = np.empty(b.shape)
    rest = ~quad
    with np.errstate(all="ignore"):
        if np.any(quad):
            lf[quad] = _log_f_laguerre(b[quad], c[quad], z[quad])
        if np.any(rest):
            lf[rest] = np.log(special.hyp2f1(1.0, b[rest], c[rest], z[rest]))
        bad = ~np.isfinite(lf) & (k > 10.0)
        if np.any(bad):
            lf[bad] = _log_f_laguerre(b[bad], c[bad], z[bad])
        hi = -np.log1p(-z)
    lf = np.where(np.isfinite(lf), lf, hi)
    return np.clip(lf, 0.0, hi)


def _series_log_f(
    b: FloatArray, c: FloatArray, z: FloatArray, max_terms: int = 200
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``log F``, ``d log F / db``, ``d log F / dc`` and ``d log F / dz`` for
    ``F = 2F1(1, b; c; z) = sum_n (b)_n / (c)_n z^n`` (``0 <= z <= 0.3``, ``c > b > 0``) from
    the series of positive terms and its term-by-term derivatives, in one pass."""
    m = len(b)
    total = np.ones(m)
    s_b = np.zeros(m)
    s_c = np.zeros(m)
    s_z = np.zeros(m)
    term = np.ones(m)
    hb = np.zeros(m)
    hc = np.zeros(m)
    idx = np.arange(m)
    bb, cc, zz = b.copy(), c.copy(), z.copy()
    for n in range(1, max_terms + 1):
        hb += 1.0 / (bb + (n - 1))
        hc += 1.0 / (cc + (n - 1))
        term = term * (bb + (n - 1)) / (cc + (n - 1)) * zz
        total[idx] += term
        s_b[idx] += term * hb
        s_c[idx] += term * hc
        s_z[idx] += n * term
        live = term > 1e-17 * total[idx]
        if not np.all(live):
            if not np.any(live):
                break
            idx, term, hb, hc, bb, cc, zz = idx[live], term[live], hb[live], hc[live], bb[live], cc[live], zz[live]
    with np.errstate(divide="ignore", invalid="ignore"):
        d_z = np.where(z > 0, s_z / (np.where(z > 0, z, 1.0) * total), b / c)
    return np.log(total), s_b / total, -s_c / total, d_z


def _log_g_and_grad(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, t: FloatArray, grad: bool = True
) -> tuple[FloatArray, FloatArray | None]:
    """``log G(t)`` and its gradient (shape (m, 4), order r, alpha, s, beta)."""
    c = r + s + x + 1.0
    if alpha >= beta:
        b = r + x
        z = (alpha - beta) / (alpha + t)
        lf = _log_f(b, c, z)
        lg = lf
    else:
        b = np.full_like(x, s + 1.0)
        z = (beta - alpha) / (beta + t)
        lf = _log_f(b, c, z)
        lg = np.log(alpha + t) - np.log(beta + t) + lf
    if not grad:
        return lg, None
    d_b = np.empty_like(z)
    d_c = np.empty_like(z)
    d_z = np.empty_like(z)
    near = z > 0.3  # the series needs > 35 terms: scipy's value, central differences in b, c
    far = ~near
    if np.any(far):
        _, d_b[far], d_c[far], d_z[far] = _series_log_f(b[far], c[far], z[far])
    if np.any(near):
        bn, cn, zn, lfn = b[near], c[near], z[near], lf[near]
        quad = ((cn - 1.0) - bn * zn > 10.0) & (bn >= 1000.0)  # where _log_f integrates
        db, dc, dz = (np.empty_like(zn) for _ in range(3))
        if np.any(quad):
            _, db[quad], dc[quad], dz[quad] = _laguerre(bn[quad], cn[quad], zn[quad], grad=True)
        rest = ~quad
        if np.any(rest):
            br, cr, zr = bn[rest], cn[rest], zn[rest]
            hb = 1e-6 * np.maximum(1.0, br)
            hc = 1e-6 * np.maximum(1.0, cr)
            db[rest] = (_log_f(br + hb, cr, zr) - _log_f(br - hb, cr, zr)) / (2 * hb)
            dc[rest] = (_log_f(br, cr + hc, zr) - _log_f(br, cr - hc, zr)) / (2 * hc)
            with np.errstate(all="ignore"):
                fz = br / cr * special.hyp2f1(2.0, br + 1.0, cr + 1.0, zr)
                dz[rest] = fz * np.exp(-lfn[rest])
        d_b[near], d_c[near], d_z[near] = db, dc, dz
    d_z = np.where(np.isfinite(d_z), d_z, 0.0)
    g = np.empty((4, len(x)))
    if alpha >= beta:
        g[0] = d_b + d_c
        g[2] = d_c
        g[1] = d_z * (beta + t) / (alpha + t) ** 2
        g[3] = -d_z / (alpha + t)
    else:
        g[0] = d_c
        g[2] = d_b + d_c
        g[1] = 1.0 / (alpha + t) - d_z / (beta + t)
        g[3] = -1.0 / (beta + t) + d_z * (alpha + t) / (beta + t) ** 2
    return lg, g


class ParetoNBD(TransactionModel):
    """Pareto/NBD model of repeat purchasing in continuous time.

    While alive a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``;
    the unobserved lifetime is exponential with rate ``mu ~ Gamma(s, beta)``.

    Attributes
    ----------
    params_ : dict
        ``r``, ``alpha``, ``s``, ``beta``.
    """

    _param_names = ("r", "alpha", "s", "beta")
    _lower = (0.0, 0.0, 0.0, 0.0)

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        x, _, big_t = data
        wsum = weights.sum()
        mx = max(dot(weights, x) / wsum, 1e-2)
        mt = max(dot(weights, big_t) / wsum, 1e-6)
        return np.array([1.0, mt / mx, 1.0, mt])

    def _pairs(self, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray, np.ndarray, np.ndarray]:
        """Distinct (x, t) pairs over (x, t_x) and (x, T), cached per data set."""
        caches: dict[int, Any] = self.__dict__.setdefault("_pair_caches", {})
        cache: Any = caches.get(id(data[0]))
        if cache is not None and cache[0] is data[0]:
            return cache[1]
        x, tx, big_t = data
        n = len(x)
        (ux, ut), _, inv = compress_rows([np.concatenate([x, x]), np.concatenate([tx, big_t])])
        out = (ux, ut, inv[:n], inv[n:])
        caches[id(data[0])] = (data[0], out)
        return out

    def _log_terms(
        self, params: FloatArray, data: tuple[FloatArray, ...], grad: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray | None, FloatArray | None]:
        """log E1, log c, log H(t_x), log H(T) and gradients of log H(t_x), log H(T)."""
        r, alpha, s, beta = (float(p) for p in params)
        x, tx, big_t = data
        ux, ut, ix, it = self._pairs(data)
        lg, gg = _log_g_and_grad(r, alpha, s, beta, ux, ut, grad)
        l_at, l_bt = np.log(alpha + big_t), np.log(beta + big_t)
        l_ax, l_bx = np.log(alpha + tx), np.log(beta + tx)
        le1 = -(r + x) * l_at - s * l_bt
        lc = np.log(s) - np.log(r + s + x)
        lhx = -(r + x) * l_ax - s * l_bx + lg[ix]
        lht = le1 + lg[it]
        ghx = ght = None
        if grad and gg is not None:
            ghx = gg[:, ix]
            ghx[0] -= l_ax
            ghx[1] -= (r + x) / (alpha + tx)
            ghx[2] -= l_bx
            ghx[3] -= s / (beta + tx)
            ght = gg[:, it]
            ght[0] -= l_at
            ght[1] -= (r + x) / (alpha + big_t)
            ght[2] -= l_bt
            ght[3] -= s / (beta + big_t)
        return le1, lc, lhx, lht, ghx, ght

    @staticmethod
    def _log_bracket(le1: FloatArray, lc: FloatArray, lhx: FloatArray, lht: FloatArray) -> tuple[FloatArray, FloatArray]:
        diff = np.minimum(lht - lhx, 0.0)
        with np.errstate(divide="ignore"):
            ld = lhx + np.log(-np.expm1(diff))
        return np.logaddexp(le1, lc + ld), ld

    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        """Per-row log-likelihood and gradient, shape (m,) and (4, m).

        With ``rho = H(T) / H(t_x)`` (in [0, 1]) and ``c = s / (r+s+x)`` the bracket is
        ``B = H(t_x) q`` with ``q = rho / G(T) + c (1 - rho)``, a sum of non-negative terms, so
        ``log B = log H(t_x) + log q`` needs no subtraction of large numbers. Terms that depend
        on one column only are computed once per distinct value and gathered.
        """
        r, alpha, s, beta = (float(p) for p in params)
        x, tx, big_t = data
        ux, inv = self._unique_index(x)
        ut, i_t = self._unique_index(big_t, "T")
        us, i_s = self._unique_index(tx, "recency")
        px, pt, ix, it = self._pairs(data)
        lg, gg = _log_g_and_grad(r, alpha, s, beta, px, pt, True)
        assert gg is not None
        lat, lbt = np.log(alpha + ut)[i_t], np.log(beta + ut)[i_t]
        iat, ibt = (1.0 / (alpha + ut))[i_t], (1.0 / (beta + ut))[i_t]
        lax, lbx = np.log(alpha + us)[i_s], np.log(beta + us)[i_s]
        iax, ibx = (1.0 / (alpha + us))[i_s], (1.0 / (beta + us))[i_s]
        rx = r + x
        lgx, lgt = lg[ix], lg[it]
        rho = np.exp(np.minimum(-rx * (lat - lax) - s * (lbt - lbx) + lgt - lgx, 0.0))
        rsx = 1.0 / (r + s + ux)
        c = (s * rsx)[inv]
        rho_g = rho * np.exp(-lgt)
        q = rho_g + c * (1.0 - rho)
        const = special.gammaln(r + ux) - special.gammaln(r)
        ll = const[inv] + r * np.log(alpha) + s * np.log(beta) - rx * lax - s * lbx + lgx + np.log(q)
        iq = 1.0 / q
        e1 = rho_g * iq
        hx = c * iq
        ht = hx * rho
        wd = hx - ht
        kt = e1 - ht
        dr = (special.digamma(r + ux) - special.digamma(r))[inv]
        rs = rsx[inv]
        g = np.empty((4, len(x)))
        g[0] = hx * (gg[0][ix] - lax) - ht * gg[0][it] - kt * lat - wd * rs + dr + np.log(alpha)
        g[1] = hx * (gg[1][ix] - rx * iax) - ht * gg[1][it] - kt * rx * iat + r / alpha
        g[2] = hx * (gg[2][ix] - lbx) - ht * gg[2][it] - kt * lbt + wd * (1.0 / s - rs) + np.log(beta)
        g[3] = hx * (gg[3][ix] - s * ibx) - ht * gg[3][it] - kt * s * ibt + s / beta
        return ll, g

    def _loglik_sum(
        self, params: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray
    ) -> tuple[float, FloatArray]:
        """Weighted sum of :meth:`_loglik` and of its gradient, shape (4,), computed without
        per-row gradient arrays: per-row weights are accumulated per distinct (x, t) pair
        (``bincount``) and combined with the per-pair derivatives."""
        r, alpha, s, beta = (float(p) for p in params)
        x, tx, big_t = data
        ux, inv = self._unique_index(x)
        px, pt, ix, it = self._pairs(data)
        npair = len(px)
        wcaches: dict[int, Any] = self.__dict__.setdefault("_wx_caches", {})
        cache: Any = wcaches.get(id(weights))
        if cache is None or cache[0] is not weights:
            cache = (weights, np.bincount(inv, weights=weights, minlength=len(ux)), float(weights.sum()))
            wcaches[id(weights)] = cache
        wx, wsum = cache[1], cache[2]
        lg, gg = _log_g_and_grad(r, alpha, s, beta, px, pt, True)
        assert gg is not None
        la, lb = np.log(alpha + pt), np.log(beta + pt)
        a_terms = (la, (r + px) / (alpha + pt), lb, s / (beta + pt))
        lh = -(r + px) * la - s * lb + lg
        lhx, lht, lgt = lh[ix], lh[it], lg[it]
        rho = np.exp(np.minimum(lht - lhx, 0.0))
        rsx = 1.0 / (r + s + ux)
        c = (s * rsx)[inv]
        rho_g = rho * np.exp(-lgt)
        q = rho_g + c * (1.0 - rho)
        const = special.gammaln(r + ux) - special.gammaln(r)
        ll_sum = float(wx @ const) + wsum * (r * np.log(alpha) + s * np.log(beta)) + float(
            (weights * (lhx + np.log(q))).sum()
        )
        iq = weights / q
        hxw = c * iq
        htw = hxw * rho
        ktw = rho_g * iq - htw
        bx = np.bincount(ix, weights=hxw, minlength=npair)
        bth = np.bincount(it, weights=htw, minlength=npair)
        btk = np.bincount(it, weights=ktw, minlength=npair)
        wd_x = np.bincount(inv, weights=hxw - htw, minlength=len(ux))
        g = np.empty(4)
        for j in range(4):
            g[j] = float((bx * (gg[j] - a_terms[j]) - bth * gg[j] - btk * a_terms[j]).sum())
        g[0] += float((wx * (special.digamma(r + ux) - special.digamma(r)) - wd_x * rsx).sum()) + wsum * np.log(alpha)
        g[1] += wsum * r / alpha
        g[2] += float((wd_x * (1.0 / s - rsx)).sum()) + wsum * np.log(beta)
        g[3] += wsum * s / beta
        return ll_sum, g

    # -------------------------------------------------------------- predictions
    def p_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, t: ArrayLike = 0.0
    ) -> FloatArray:
        """Probability each customer is alive at ``T`` (``t = 0``) or at ``T + t``.

        Parameters
        ----------
        frequency, recency, T : array-like, shape (n,)
        t : float or array-like, shape (n,), model time units after T

        Returns
        -------
        array, shape (n,), in [0, 1]
        """
        params = np.array(self._p())
        s, beta = params[2], params[3]
        x, tx, big_t = check_rfm(frequency, recency, T)
        t = np.broadcast_to(as_float_array(t, "t"), x.shape)
        data = (x, tx, big_t)
        self.__dict__.pop("_pair_caches", None)
        le1, lc, lhx, lht, _, _ = self._log_terms(params, data, False)
        self.__dict__.pop("_pair_caches", None)
        lb, _ = self._log_bracket(le1, lc, lhx, lht)
        with np.errstate(all="ignore"):
            out = np.exp(le1 - lb - s * np.log1p(t / (beta + big_t)))
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)

    def expected_purchases(self, t: ArrayLike) -> FloatArray:
        """Expected repeat purchases in ``(0, t]`` for a new customer; shape of ``t``."""
        r, alpha, s, beta = self._p()
        t = as_float_array(t, "t")
        return np.maximum(r / alpha * beta * expm1_ratio(np.full_like(t, s - 1.0), np.log1p(t / beta)), 0.0)

    def conditional_expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Expected repeat purchases in ``(T, T + t]`` given each customer's history.

        Returns
        -------
        array, shape (n,)
        """
        r, alpha, s, beta = self._p()
        x, tx, big_t = check_rfm(frequency, recency, T)
        t = np.broadcast_to(as_float_array(t, "t"), x.shape)
        alive = self.p_alive(x, tx, big_t)
        e = (r + x) * (beta + big_t) / (alpha + big_t) * expm1_ratio(s - 1.0 + 0 * x, np.log1p(t / (beta + big_t)))
        return np.maximum(alive * e, 0.0)

    def _expected_curve(self, ts: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
        """Conditional expectations at horizons ``ts``, shape (len(ts), n)."""
        r, alpha, s, beta = self._p()
        scale = self.p_alive(x, tx, big_t) * (r + x) * (beta + big_t) / (alpha + big_t)
        k = np.full_like(x, s - 1.0)
        return np.stack([np.maximum(scale * expm1_ratio(k, np.log1p(t / (beta + big_t))), 0.0) for t in ts])

    def _weighted_curve(
        self, ts: FloatArray, coef: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> FloatArray:
        """``sum_k coef_k E[X(T, T + ts_k) | history]`` per customer (per distinct (x, T))."""
        r, alpha, s, beta = self._p()
        alive = self.p_alive(x, tx, big_t)
        (ux, ut), inv = self._pair_index(x, big_t)
        k = np.full_like(ux, s - 1.0)
        acc = np.zeros(len(ux))
        for c, t in zip(coef, ts, strict=True):
            acc += c * expm1_ratio(k, np.log1p(t / (beta + ut)))
        return np.maximum(alive * ((r + ux) * (beta + ut) / (alpha + ut) * acc)[inv], 0.0)

    def probability_of_n_purchases(self, t: ArrayLike, n: ArrayLike, nodes: int = 96) -> FloatArray:
        """``P(X(t) = n)`` for a new customer.

        Computed as ``(beta/(beta+t))^s NB(n; t) + int_0^U NB(n; y(u)) du`` where ``u`` is the
        lifetime's distribution function, by Gauss-Legendre quadrature (the integrand lies in
        [0, 1]).

        Returns
        -------
        array, values in [0, 1]
        """
        r, alpha, s, beta = self._p()
        t_arr, n_arr = np.broadcast_arrays(as_float_array(t, "t"), as_float_array(n, "n"))
        shape = t_arr.shape
        t_arr, n_arr = t_arr.ravel(), n_arr.ravel()
        with np.errstate(all="ignore"):
            surv = np.exp(-s * np.log1p(t_arr / beta))
            first = surv * np.exp(log_nb_pmf(n_arr, r, alpha, t_arr))
            xg, wg = special.roots_legendre(nodes)
            upper = 1.0 - surv
            u = 0.5 * (xg[None, :] + 1.0) * upper[:, None]
            y = beta * np.expm1(-np.log1p(-u) / s)
            y = np.minimum(y, t_arr[:, None])
            inner = np.exp(log_nb_pmf(n_arr[:, None], r, alpha, y))
            second = 0.5 * upper * (np.nan_to_num(inner) @ wg)
        return np.clip(np.nan_to_num(first + second), 0.0, 1.0).reshape(shape)

    def sample(self, n: int, T: ArrayLike, seed: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Simulate ``n`` customers; returns ``(frequency, recency, T)``, each shape (n,)."""
        r, alpha, s, beta = self._p()
        rng = np.random.default_rng(seed)
        big_t = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
        lam = rng.gamma(r, 1.0 / alpha, n)
        mu = rng.gamma(s, 1.0 / beta, n)
        tau = rng.exponential(1.0, n) / np.maximum(mu, 1e-300)
        life = np.minimum(tau, big_t)
        x = rng.poisson(lam * life).astype(float)
        rec = np.zeros(n)
        pos = x > 0
        rec[pos] = life[pos] * rng.beta(x[pos], 1.0)
        return x, rec, big_t
