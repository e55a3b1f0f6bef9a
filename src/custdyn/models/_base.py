"""Shared machinery of the customer-base models.

Every model keeps its parameters on a log scale while fitting (``theta = lower + exp(u)``),
minimises the weighted negative log-likelihood with analytic gradients (L-BFGS-B followed by
a few Newton steps), and derives the covariance of the parameters from the Hessian of the
log-likelihood (finite differences of the analytic gradient) by the delta method.

Data are compressed before fitting: customers with identical inputs become one weighted row.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from custdyn.errors import ConvergenceWarning, NotFittedError

FloatArray = NDArray[np.float64]

__all__ = ["BaseModel", "as_float_array", "compress_coded", "compress_rows", "dot", "value_codes"]


def as_float_array(x: Any, name: str = "value") -> FloatArray:
    """Convert a numpy array, list, pandas/polars Series or Arrow array to a 1-D float array.

    Parameters
    ----------
    x : array-like, shape (n,)
        The values. Scalars become a length-1 array.
    name : str
        Used in error messages.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):
        try:
            x = x.to_numpy()
        except TypeError:  # pyarrow ChunkedArray wants zero_copy_only=False
            x = x.to_numpy(zero_copy_only=False)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def compress_rows(
    columns: Sequence[FloatArray], weights: FloatArray | None = None
) -> tuple[list[FloatArray], FloatArray, NDArray[np.intp]]:
    """Collapse identical rows into one weighted row.

    Parameters
    ----------
    columns : sequence of arrays, each shape (n,)
        The columns that define a row.
    weights : array, shape (n,), optional
        Existing weights (default 1 per row).

    Returns
    -------
    unique_columns : list of arrays, each shape (m,)
        The distinct rows, in lexicographic order.
    unique_weights : array, shape (m,)
        Sum of the weights of the rows each unique row stands for.
    inverse : array of int, shape (n,)
        ``unique_columns[k][inverse]`` rebuilds column ``k``.
    """
    n = len(columns[0])
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    cols = [np.ascontiguousarray(c, dtype=np.float64) + 0.0 for c in columns]  # +0.0: no -0.0
    if n == 0:
        return cols, w.copy(), np.zeros(0, dtype=np.intp)
    # each column coded by its sorted distinct values; the codes combined into one integer key
    key: NDArray[np.int64] | None = None
    size = 1
    for c in cols:
        _, ci = value_codes(c)
        m = int(ci.max()) + 1
        if key is None:
            key, size = ci.astype(np.int64), m
            continue
        if size * m >= 2**62:  # renumber the combined key densely before widening it
            key, size = _dense_rank(key, size)
        key = key * m + ci
        size *= m
    assert key is not None
    inverse, n_groups = _dense_rank(key, size)
    rep = np.empty(n_groups, dtype=np.intp)
    rep[inverse] = np.arange(n)  # any row of each group represents it
    ucols = [c[rep] for c in cols]
    uw = np.asarray(np.bincount(inverse, weights=w, minlength=n_groups), dtype=np.float64)
    return ucols, uw, inverse


def _dense_rank(key: NDArray[np.int64], size: int) -> tuple[NDArray[np.intp], int]:
    """Rank of each key among the distinct keys (0..m-1, in key order) and m; keys in
    ``[0, size)``. Direct addressing for a narrow key range, else a sort."""
    n = len(key)
    if size <= 16 * n + 4096 and size < 2**31:
        seen = np.zeros(size, dtype=bool)
        seen[key] = True
        rank = np.cumsum(seen, dtype=np.int32)
        rank -= 1
        return rank[key].astype(np.intp), int(rank[-1]) + 1
    order = np.argsort(key)
    sk = key[order]
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(sk[1:], sk[:-1], out=change[1:])
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(change) - 1
    return inverse, int(change.sum())


def dot(a: FloatArray, b: FloatArray) -> float:
    """``sum(a * b)`` for long 1-D arrays in one pass, without BLAS (whose worker threads cost
    more than the sum itself on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the enclosed code with one BLAS thread.

    The fits make many tiny BLAS calls (L-BFGS-B's updates, dot products); a threaded BLAS
    wakes its worker threads for each, which costs more than the work itself, most of all on a
    busy machine. Uses ``threadpoolctl`` when it is installed; otherwise does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def value_codes(c: FloatArray) -> tuple[FloatArray, NDArray[np.intp]]:
    """Sorted distinct values of ``c`` and each element's index into them.

    Integer-valued columns in a narrow range (counts, ages in days) are coded by direct
    addressing, without sorting; other columns by ``np.unique``.
    """
    n = len(c)
    if n:
        lo, hi = float(c.min()), float(c.max())
        if hi - lo <= 4 * n + 1024 and -(2.0**52) < lo and hi < 2.0**52:
            iv = c.astype(np.int64)
            if np.array_equal(iv, c):
                off = iv - int(lo)
                seen = np.zeros(int(hi - lo) + 1, dtype=bool)
                seen[off] = True
                rank = np.cumsum(seen, dtype=np.intp) - 1
                return np.flatnonzero(seen).astype(np.float64) + lo, rank[off]
    ux, inv = np.unique(c, return_inverse=True)
    return np.asarray(ux, dtype=np.float64), inv.reshape(-1)


def compress_coded(
    columns: Sequence[FloatArray], weights: FloatArray | None = None
) -> tuple[list[FloatArray], FloatArray, list[tuple[FloatArray, NDArray[np.intp]]]] | None:
    """Like :func:`compress_rows` (rows in lexicographic order), and for each column its
    distinct values with the index of every unique row into them; None when the combined
    row codes would not fit 63 bits (then use :func:`compress_rows`)."""
    n = len(columns[0])
    if n == 0:
        return None
    coded = [value_codes(np.asarray(c, dtype=np.float64)) for c in columns]
    sizes = [len(u) for u, _ in coded]
    if math.prod(sizes) >= 2**62:
        return None
    key = coded[0][1].astype(np.int64)
    for (_, ci), m in zip(coded[1:], sizes[1:], strict=True):
        key *= m
        key += ci
    if weights is None:
        key.sort()
        sk = key
        w_sorted = None
    else:
        order = np.argsort(key, kind="stable")
        sk = key[order]
        w_sorted = np.asarray(weights, dtype=np.float64)[order]
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(sk[1:], sk[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ukey = sk[starts]
    if w_sorted is None:
        uw = np.diff(np.append(starts, n)).astype(np.float64)
    else:
        uw = np.asarray(np.add.reduceat(w_sorted, starts), dtype=np.float64)
    codes: list[NDArray[np.intp]] = []
    rem = ukey
    for m in sizes[:0:-1]:
        codes.append((rem % m).astype(np.intp))
        rem = rem // m
    codes.append(rem.astype(np.intp))
    codes.reverse()
    ucols = [u[ci] for (u, _), ci in zip(coded, codes, strict=True)]
    return ucols, uw, [(u, ci) for (u, _), ci in zip(coded, codes, strict=True)]


def _fmt_int(n: float) -> str:
    return f"{int(round(n)):,}"


class BaseModel:
    """Base class: parameter handling, fitting, covariance and summary.

    Subclasses define ``_param_names``, ``_lower`` (lower bound of each parameter, 0 or 1),
    ``_loglik(params, data) -> (ll, grad)`` returning per-row log-likelihoods, shape (m,), and
    their gradients with respect to the natural parameters, shape (k, m), and
    ``_initial(data, weights)`` returning deterministic starting values.

    Parameters
    ----------
    penalizer : float, default 0
        L2 penalty ``penalizer * sum(theta**2)`` added to the mean negative log-likelihood per
        customer (shrinks the parameters towards 0; useful for tiny data sets).
    max_iter : int, default 2000
        Maximum optimiser iterations.
    tol : float, default 1e-9
        Convergence tolerance on the projected gradient of the mean log-likelihood.
    """

    _param_names: tuple[str, ...] = ()
    _lower: tuple[float, ...] = ()
    _data_names: tuple[str, ...] = ()

    def __init__(self, penalizer: float = 0.0, max_iter: int = 2000, tol: float = 1e-9) -> None:
        self.penalizer = float(penalizer)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    # ------------------------------------------------------------------ parameters
    @property
    def _k(self) -> int:
        return len(self._param_names)

    def _to_natural(self, u: FloatArray) -> FloatArray:
        return np.asarray(self._lower) + np.exp(u)

    def _to_unconstrained(self, theta: FloatArray) -> FloatArray:
        return np.log(np.maximum(np.asarray(theta, dtype=float) - np.asarray(self._lower), 1e-300))

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def _p(self) -> tuple[float, ...]:
        self._check_fitted()
        return tuple(float(self.params_[n]) for n in self._param_names)

    def set_params(self, **params: float) -> BaseModel:
        """Set the model parameters directly (no fitting), e.g. published values.

        Returns
        -------
        self
        """
        missing = [n for n in self._param_names if n not in params]
        if missing:
            raise ValueError(f"missing parameters: {missing}")
        for n, lo in zip(self._param_names, self._lower, strict=True):
            if not params[n] > lo:
                raise ValueError(f"{n} must be > {lo}, got {params[n]}")
        self.params_ = {n: float(params[n]) for n in self._param_names}
        return self

    def _unique_index(self, x: FloatArray, slot: str = "x") -> tuple[FloatArray, NDArray[np.intp]]:
        """Distinct values of ``x`` and the inverse index, cached per ``slot`` for the array
        being fitted (terms that depend on one column only are computed once per value)."""
        caches: dict[Any, Any] = self.__dict__.setdefault("_uniq_cache", {})
        cache = caches.get((slot, id(x)))
        if cache is not None and cache[0] is x:
            return cache[1], cache[2]
        seeded = self.__dict__.get("_col_codes", {}).get(id(x))
        if seeded is not None and seeded[0] is x:  # coded while compressing the fitted data
            ux, inv = seeded[1], seeded[2]
        else:
            ux, inv = value_codes(x)
        caches[(slot, id(x))] = (x, ux, inv)
        return ux, inv

    def _seed_codes(self, columns: Sequence[FloatArray], coded: Sequence[tuple[FloatArray, NDArray[np.intp]]]) -> None:
        """Remember each column's distinct values and index (found while compressing)."""
        seeds: dict[int, Any] = self.__dict__.setdefault("_col_codes", {})
        for col, (u, ci) in zip(columns, coded, strict=True):
            seeds[id(col)] = (col, u, ci)

    # ------------------------------------------------------------------ model hooks
    def _loglik(self, params: FloatArray, data: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray]:
        raise NotImplementedError

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        raise NotImplementedError

    def _loglik_sum(
        self, params: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray
    ) -> tuple[float, FloatArray]:
        """Weighted log-likelihood and its gradient: from ``_loglik_sum_hess`` where the model
        has one (no Hessian asked), else summed from :meth:`_loglik`."""
        if hasattr(self, "_loglik_sum_hess"):
            ll_sum, g_sum, _ = self._loglik_sum_hess(params, data, weights, False)
            return ll_sum, g_sum
        ll, g = self._loglik(params, data)
        # elementwise products and sums: no BLAS call, whose threads fight on busy machines
        return float((weights * ll).sum()), (g * weights).sum(axis=1)

    # ------------------------------------------------------------------ fitting
    def _objective(
        self, u: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray, wsum: float
    ) -> tuple[float, FloatArray]:
        """Mean penalised negative log-likelihood and its gradient in unconstrained space."""
        theta = self._to_natural(u)
        with np.errstate(all="ignore"):
            ll_sum, g_sum = self._loglik_sum(theta, data, weights)
            f = -ll_sum / wsum
            grad_nat = -g_sum / wsum
        if self.penalizer:
            f += self.penalizer * float(theta @ theta)
            grad_nat = grad_nat + 2.0 * self.penalizer * theta
        grad = grad_nat * (theta - np.asarray(self._lower))
        if not np.isfinite(f) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(u)
        return f, grad

    def _objective_hess(
        self, u: FloatArray, data: tuple[FloatArray, ...], weights: FloatArray, wsum: float
    ) -> tuple[float, FloatArray, FloatArray]:
        """:meth:`_objective` with its analytic Hessian in unconstrained space (models with
        ``_loglik_sum_hess``): ``H_u = J H J + diag(g J)`` for ``theta = lower + exp(u)``,
        ``J = theta - lower``."""
        theta = self._to_natural(u)
        with np.errstate(all="ignore"):
            ll_sum, g_sum, h_sum = self._loglik_sum_hess(theta, data, weights)  # type: ignore[attr-defined]
        f = -ll_sum / wsum
        grad_nat = -g_sum / wsum
        hess_nat = -h_sum / wsum
        if self.penalizer:
            f += self.penalizer * float(theta @ theta)
            grad_nat = grad_nat + 2.0 * self.penalizer * theta
            hess_nat = hess_nat + 2.0 * self.penalizer * np.eye(len(theta))
        jac = theta - np.asarray(self._lower)
        grad = grad_nat * jac
        hess = hess_nat * np.outer(jac, jac) + np.diag(grad)
        if not np.isfinite(f) or not np.all(np.isfinite(grad)) or not np.all(np.isfinite(hess)):
            return 1e300, np.zeros_like(u), np.full((len(u), len(u)), np.nan)
        return f, grad, hess

    def _hessian_u(
        self,
        u: FloatArray,
        data: tuple[FloatArray, ...],
        weights: FloatArray,
        wsum: float,
        grad: FloatArray | None = None,
        rel_step: float = 1e-4,
    ) -> FloatArray:
        """Hessian of the mean objective in unconstrained space: differences of the analytic
        gradient. Forward differences (step ``1e-6``) when the gradient at ``u`` is given: cheap,
        for Newton steps; else central differences with ``rel_step``, accurate to about
        ``rel_step**2`` (for the covariance; small steps would amplify the rounding error of
        the gradient in weakly identified directions)."""
        k = len(u)
        h = np.empty((k, k))
        for j in range(k):
            step = (1e-6 if grad is not None else rel_step) * max(1.0, abs(u[j]))
            up = u.copy()
            up[j] += step
            g_up = self._objective(up, data, weights, wsum)[1]
            if grad is not None:
                h[:, j] = (g_up - grad) / step
            else:
                dn = u.copy()
                dn[j] -= step
                h[:, j] = (g_up - self._objective(dn, data, weights, wsum)[1]) / (2 * step)
        return 0.5 * (h + h.T)

    def _newton(
        self,
        u: FloatArray,
        data: tuple[FloatArray, ...],
        w: FloatArray,
        wsum: float,
        tol: float,
        max_steps: int = 25,
        hess_fixed: FloatArray | None = None,
        fg: tuple[float, FloatArray] | None = None,
    ) -> tuple[FloatArray, float, FloatArray, FloatArray | None, int]:
        """Newton steps with a backtracking line search; a Hessian that is not positive
        definite is shifted (Levenberg-Marquardt).

        The Hessian is analytic for models with ``_loglik_sum_hess`` (one pass per step gives
        value, gradient and Hessian), else finite differences of the analytic gradient. With
        ``hess_fixed`` the steps reuse that Hessian (one gradient per step), taking a new one
        only when a step reduces the gradient less than fivefold; the returned Hessian is the
        last one if it was taken at the returned ``u``, else None.
        ``fg``: the objective and gradient at ``u``, if known. Returns ``(u, f, g, hessian, steps)``; the Hessian is the last one
        computed on ``data``, taken at ``u`` (analytic) or a short step before it.
        """
        analytic = hess_fixed is None and hasattr(self, "_loglik_sum_hess")
        hess: FloatArray | None = None
        if analytic:
            f, g, hess = self._objective_hess(u, data, w, wsum)
        elif fg is not None:
            f, g = fg
        else:
            f, g = self._objective(u, data, w, wsum)
        steps = 0
        fresh = False  # hess_fixed was taken at the current u
        for _ in range(max_steps):
            if analytic:
                assert hess is not None
                h_use = hess
            elif hess_fixed is None:
                hess = self._hessian_u(u, data, w, wsum)
                h_use = hess
            else:
                h_use = hess_fixed
            g_before = float(np.max(np.abs(g)))
            if np.max(np.abs(g)) < tol or not np.all(np.isfinite(h_use)):
                break
            h_use = 0.5 * (h_use + h_use.T)
            lam = float(np.linalg.eigvalsh(h_use)[0])
            scale = float(np.max(np.abs(np.diag(h_use)))) or 1.0
            if lam <= 1e-10 * scale:
                h_use = h_use + (1e-6 * scale - lam) * np.eye(self._k)
            try:
                step = -np.linalg.solve(h_use, g)
            except np.linalg.LinAlgError:
                break
            if not np.all(np.isfinite(step)) or g @ step >= 0:
                break
            t = 1.0
            while t > 1e-6:
                cand = np.clip(u + t * step, -25, 25)
                if analytic:
                    fc, gc, hc = self._objective_hess(cand, data, w, wsum)
                else:
                    fc, gc = self._objective(cand, data, w, wsum)
                if fc <= f + 1e-15 * abs(f):  # no increase beyond rounding
                    u, f, g = cand, fc, gc
                    fresh = False
                    if analytic:
                        hess = hc
                    break
                t *= 0.5
            else:
                break
            steps += 1
            if np.max(np.abs(g)) < tol or np.max(np.abs(t * step)) < 1e-7:
                break
            g_now = float(np.max(np.abs(g)))
            if hess_fixed is not None and g_now > 0.2 * g_before and g_now > 10 * tol:
                hess_fixed = self._hessian_u(u, data, w, wsum, grad=g)
                fresh = True
        if hess_fixed is not None and fresh:
            hess = hess_fixed
        return u, f, g, hess, steps

    def _fit_arrays(self, data: tuple[FloatArray, ...], weights: FloatArray | None) -> BaseModel:
        """Compress ``data``, maximise the likelihood, fill the fitted attributes."""
        with single_threaded_blas():
            return self._fit_arrays_impl(data, weights)

    def _fit_arrays_impl(self, data: tuple[FloatArray, ...], weights: FloatArray | None) -> BaseModel:
        n = len(data[0])
        if n == 0:
            raise ValueError("cannot fit on zero customers")
        if weights is not None:
            weights = as_float_array(weights, "weights")
            if weights.shape != (n,) or np.any(weights < 0):
                raise ValueError("weights must be non-negative, one per customer")
        self.__dict__.pop("_col_codes", None)
        packed = compress_coded(list(data), weights)
        coded: list[tuple[FloatArray, NDArray[np.intp]]] | None = None
        if packed is None:
            cols, w, _ = compress_rows(list(data), weights)
        else:
            cols, w, coded = packed
        keep = w > 0
        if not np.all(keep):
            cols = [c[keep] for c in cols]
            w = w[keep]
            coded = None if coded is None else [(u, ci[keep]) for u, ci in coded]
        udata = tuple(cols)
        if coded is not None:
            self._seed_codes(udata, coded)
        wsum = float(w.sum())
        self.n_customers_ = wsum
        self.n_rows_ = len(w)

        u0 = self._to_unconstrained(self._initial(udata, w))
        warm = False
        sub: tuple[FloatArray, ...] = udata
        ws = w
        if len(w) > 40_000:
            # Deterministic warm start: fit a systematic 1-in-k subsample of the distinct rows
            # (weights scaled by k) first, then polish on everything.
            k = len(w) // 20_000
            sub = tuple(c[::k] for c in udata)
            ws = w[::k] * (wsum / w[::k].sum())
            if coded is not None:
                self._seed_codes(sub, [(u, ci[::k]) for u, ci in coded])
            res0 = optimize.minimize(
                self._objective,
                u0,
                args=(sub, ws, wsum),
                jac=True,
                method="L-BFGS-B",
                bounds=[(-25.0, 25.0)] * self._k,
                options={"maxiter": self.max_iter, "gtol": 1e-7},
            )
            if np.isfinite(res0.fun) and res0.fun < 1e299:
                u0 = np.asarray(res0.x, dtype=float)
                warm = True
        bounds = [(-25.0, 25.0)] * self._k
        n_iter = 0
        best_u = u0
        # from a warm start the first attempt is Newton, which evaluates there itself
        best_f = np.inf if warm else self._objective(u0, udata, w, wsum)[0]
        best_g: FloatArray = np.full(self._k, np.inf)
        best_h: FloatArray | None = None
        message = ""
        for attempt in range(3):
            if attempt == 0 and warm:
                # from the subsample's optimum Newton converges in a few steps
                u = best_u
                message = "Newton from the subsample fit"
            else:
                start = best_u if attempt <= 1 else best_u + 0.5 * (-1) ** attempt
                res = optimize.minimize(
                    self._objective,
                    start,
                    args=(udata, w, wsum),
                    jac=True,
                    method="L-BFGS-B",
                    bounds=bounds,
                    options={"maxiter": self.max_iter, "ftol": 1e-14, "gtol": 1e-6, "maxcor": 20},
                )
                n_iter += int(res.nit)
                message = str(res.message)
                u = np.asarray(res.x, dtype=float) if res.fun <= best_f else best_u
            fg: tuple[float, FloatArray] | None = None
            hess: FloatArray | None = None
            if attempt == 0 and warm and not hasattr(self, "_loglik_sum_hess"):
                # Newton with a finite-difference Hessian taken at the subsample's optimum and
                # renewed only when convergence is slow: one full-data gradient per step
                f, g = self._objective(u, udata, w, wsum)
                h0 = self._hessian_u(u, udata, w, wsum, grad=g)
                u, f, g, hess, steps = self._newton(u, udata, w, wsum, self.tol, 40, hess_fixed=h0, fg=(f, g))
                n_iter += steps
                fg = (f, g)
            if hess is None or float(np.max(np.abs(g))) >= self.tol:
                u, f, g, hess, steps = self._newton(u, udata, w, wsum, self.tol, fg=fg)
                n_iter += steps
            if f <= best_f:
                best_u, best_f, best_g, best_h = u, f, g, hess
            if float(np.max(np.abs(best_g))) < max(self.tol, 1e-7) and np.all(np.abs(best_u) < 24.9):
                break

        theta = self._to_natural(best_u)
        self.params_ = dict(zip(self._param_names, (float(t) for t in theta), strict=True))
        self.n_iter_ = n_iter
        self.gradient_norm_ = float(np.max(np.abs(best_g)))
        at_bound = bool(np.any(np.abs(best_u) >= 24.9))
        self.converged_ = bool(self.gradient_norm_ < 1e-6 and not at_bound)
        if best_f < 1e299:  # the mean penalised negative log-likelihood at the estimate
            self.log_likelihood_ = -(best_f - self.penalizer * float(theta @ theta)) * wsum
        else:
            with np.errstate(all="ignore"):
                ll, _ = self._loglik(theta, udata)
            self.log_likelihood_ = float((w * ll).sum())
        k = self._k
        self.aic_ = 2 * k - 2 * self.log_likelihood_
        self.bic_ = k * math.log(wsum) - 2 * self.log_likelihood_

        # Covariance via the Hessian of the total log-likelihood in log space, then the delta
        # method: cov(theta) = D cov(u) D with D = diag(theta - lower).
        if best_h is None:
            best_h = self._hessian_u(best_u, udata, w, wsum)
        hess_u = best_h * wsum
        jac = theta - np.asarray(self._lower)
        try:
            cov_u = np.linalg.inv(hess_u)
            ok = bool(np.all(np.isfinite(cov_u)) and np.all(np.diag(cov_u) > 0))
        except np.linalg.LinAlgError:
            cov_u = np.full((k, k), np.nan)
            ok = False
        self.covariance_log_ = cov_u
        self.covariance_ = cov_u * np.outer(jac, jac)
        se = np.sqrt(np.abs(np.diag(self.covariance_)))
        if not ok:
            se = np.full(k, np.inf)
        self.standard_errors_ = dict(zip(self._param_names, (float(s) for s in se), strict=True))
        self._fit_data_ = udata
        self._fit_weights_ = w
        self.converged_ = bool(self.converged_ and ok)
        if not self.converged_:
            warnings.warn(
                f"{type(self).__name__} did not converge cleanly (max |gradient| = "
                f"{self.gradient_norm_:.2e}, parameters at bound: {at_bound}, Hessian positive "
                f"definite: {ok}, optimiser: {message!r}); estimates are returned, see "
                f"converged_, gradient_norm_ and standard_errors_",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    # ------------------------------------------------------------------ sampling distribution
    def _parameter_draws(self, n_draws: int, seed: int | None = 0) -> FloatArray:
        """Draws of the parameters from their asymptotic normal distribution on the log scale.

        Returns
        -------
        array, shape (n_draws, k)
        """
        self._check_fitted()
        theta = np.array(self._p())
        cov = getattr(self, "covariance_log_", None)
        rng = np.random.default_rng(seed)
        if cov is None or not np.all(np.isfinite(cov)):
            return np.tile(theta, (n_draws, 1))
        u = self._to_unconstrained(theta)
        # eigen-decomposition tolerates a semi-definite matrix
        vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
        root = vecs * np.sqrt(np.clip(vals, 0, None))
        z = rng.standard_normal((n_draws, len(u)))
        return self._to_natural(u + z @ root.T)

    def _with_params(self, theta: FloatArray) -> BaseModel:
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.params_ = dict(zip(self._param_names, (float(t) for t in theta), strict=True))
        return clone

    # ------------------------------------------------------------------ reporting
    def summary(self) -> Any:
        """Estimates with standard errors and 95% intervals (Wald, on the log scale).

        Returns
        -------
        pandas.DataFrame
            One row per parameter; columns ``estimate``, ``std_error``, ``lower_95``,
            ``upper_95``.
        """
        import pandas as pd

        self._check_fitted()
        theta = np.array(self._p())
        se = np.array([getattr(self, "standard_errors_", {}).get(n, np.nan) for n in self._param_names])
        lo = np.asarray(self._lower)
        with np.errstate(all="ignore"):
            half = 1.959963984540054 * se / (theta - lo)
            lower = lo + (theta - lo) * np.exp(-half)
            upper = lo + (theta - lo) * np.exp(half)
        df = pd.DataFrame(
            {"estimate": theta, "std_error": se, "lower_95": lower, "upper_95": upper},
            index=pd.Index(list(self._param_names), name="parameter"),
        )
        if hasattr(self, "log_likelihood_"):
            df.attrs.update(
                log_likelihood=self.log_likelihood_, aic=self.aic_, bic=self.bic_, converged=self.converged_
            )
        return df

    def __repr__(self) -> str:
        name = f"custdyn.models.{type(self).__name__}"
        if not hasattr(self, "params_"):
            return f"<{name}: not fitted>"
        if not hasattr(self, "n_customers_"):
            ps = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"<{name}: parameters set ({ps})>"
        state = f"converged in {self.n_iter_} iterations" if self.converged_ else (
            f"NOT converged after {self.n_iter_} iterations"
        )
        return (
            f"<{name}: fitted on {_fmt_int(self.n_customers_)} customers "
            f"({_fmt_int(self.n_rows_)} distinct rows), {state}>"
        )


# ---------------------------------------------------------------------- numeric helpers


def log_beta(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """``log B(a, b)``, elementwise."""
    return np.asarray(special.betaln(a, b), dtype=float)


@functools.lru_cache(maxsize=8)
def _legendre_unit(nodes: int) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights moved to [0, 1] (computed once per ``nodes``; read
    only)."""
    x, wq = special.roots_legendre(nodes)
    u, w = 0.5 * (x + 1.0), 0.5 * wq
    u.setflags(write=False)
    w.setflags(write=False)
    return u, w


def beta_quantile_mean(
    fn: Callable[[FloatArray], FloatArray], a: FloatArray, b: FloatArray, nodes: int = 256
) -> FloatArray:
    """``E[fn(p)]`` for ``p ~ Beta(a, b)`` by quadrature on the quantile scale.

    A slow but unconditionally robust fallback for a bounded monotone ``fn`` (used only where a
    closed form is not finite or falls outside its known range).

    Parameters
    ----------
    fn : callable
        Maps an array of ``p`` values, shape (m, nodes), to values of the same shape.
    a, b : arrays, shape (m,)
    """
    u, wq = _legendre_unit(nodes)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    p = np.empty((a.shape[0], nodes))
    # With both shapes large the Beta is a narrow bump, normal to within its skewness
    # (~ 1 / sqrt(min(a, b)) < 0.01): its quantiles from the normal's, where the exact inverse
    # would cost most of a second per thousand rows.
    narrow = (a > 1e4) & (b > 1e4)
    if np.any(narrow):
        an, bn = a[narrow], b[narrow]
        mean = an / (an + bn)
        sd = np.sqrt(an * bn / ((an + bn) ** 2 * (an + bn + 1.0)))
        p[narrow] = mean[:, None] + sd[:, None] * special.ndtri(u)[None, :]
    wide = ~narrow
    if np.any(wide):
        p[wide] = special.betaincinv(a[wide, None], b[wide, None], u[None, :])
    p = np.clip(p, 1e-300, 1.0)
    return np.asarray(fn(p) @ wq, dtype=float)


def hyp2f1_neg(a: FloatArray, b: FloatArray, c: FloatArray, w: FloatArray) -> FloatArray:
    """``2F1(a, b; c; -w)`` for ``w >= 0`` (scipy, elementwise)."""
    return np.asarray(special.hyp2f1(a, b, c, -w), dtype=float)


def recip_beta_expectation(s: FloatArray, a: FloatArray, bb: FloatArray, w: FloatArray) -> FloatArray:
    """``E[(1 - (1 + p w)^(-s)) / p]`` for ``p ~ Beta(a, bb)``, ``s, w >= 0``.

    Closed form ``(a + bb - 1) / (a - 1) * (1 - 2F1(s, a - 1; a + bb - 1; -w))`` (the Pfaff
    transform of the expression in Fader, Hardie & Lee 2005), with a quantile-quadrature
    fallback near ``a = 1`` or wherever the closed form is not finite or leaves its bounds
    ``0 <= value <= s w``.
    """
    s, a, bb, w = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (s, a, bb, w)))
    out = np.empty(s.shape)
    with np.errstate(all="ignore"):
        h = hyp2f1_neg(s, a - 1.0, a + bb - 1.0, w)
        out[...] = (a + bb - 1.0) / (a - 1.0) * (1.0 - h)
    upper = s * w
    bad = (~np.isfinite(out)) | (out < -1e-12 * upper) | (out > upper * (1 + 1e-9)) | (np.abs(a - 1) < 1e-4)
    bad &= w > 0
    out[w <= 0] = 0.0
    if np.any(bad):
        sb, wb = s[bad][:, None], w[bad][:, None]

        def fn(p: FloatArray) -> FloatArray:
            return -np.expm1(-sb * np.log1p(p * wb)) / p

        out[bad] = beta_quantile_mean(fn, a[bad], bb[bad])
    return np.clip(out, 0.0, np.maximum(upper, 0.0))


def beta_power_expectation(s: FloatArray, a: FloatArray, bb: FloatArray, w: FloatArray) -> FloatArray:
    """``E[(1 + p w)^(-s)] = 2F1(s, a; a + bb; -w)`` for ``p ~ Beta(a, bb)``; in [0, 1]."""
    s, a, bb, w = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (s, a, bb, w)))
    out = np.ones(s.shape)
    live = w > 0
    if not np.any(live):
        return out
    with np.errstate(all="ignore"):
        out[live] = hyp2f1_neg(s[live], a[live], a[live] + bb[live], w[live])
    bad = (~np.isfinite(out)) | (out < 0) | (out > 1 + 1e-12)
    bad &= w > 0
    out[w <= 0] = 1.0
    if np.any(bad):
        sb, wb = s[bad][:, None], w[bad][:, None]

        def fn(p: FloatArray) -> FloatArray:
            return np.exp(-sb * np.log1p(p * wb))

        out[bad] = beta_quantile_mean(fn, a[bad], bb[bad])
    return np.clip(out, 0.0, 1.0)


def expm1_ratio(k: FloatArray, u: FloatArray) -> FloatArray:
    """``(1 - exp(-k u)) / k`` with its limit ``u`` at ``k = 0`` (elementwise, u >= 0)."""
    k, u = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(u, dtype=float))
    out = np.empty(k.shape)
    small = np.abs(k * u) < 1e-8
    with np.errstate(all="ignore"):
        out[~small] = -np.expm1(-k[~small] * u[~small]) / k[~small]
    out[small] = u[small] * (1 - 0.5 * k[small] * u[small])
    return out


def nb_survival(n: FloatArray, r: FloatArray, q: FloatArray) -> FloatArray:
    """``P(N >= n)`` for ``N ~ NegBin(r, success prob 1 - q)`` (gamma-Poisson with
    ``q = t / (alpha + t)``); 1 for ``n <= 0``."""
    n, r, q = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (n, r, q)))
    out = np.ones(n.shape)
    pos = n > 0
    out[pos] = special.betainc(n[pos], r[pos], q[pos])
    return out


def log_nb_pmf(n: ArrayLike, r: ArrayLike, alpha: ArrayLike, t: ArrayLike) -> FloatArray:
    """``log P(N(t) = n)`` for the gamma(r, alpha)-Poisson count over a window of length t."""
    n, r, alpha, t = (np.asarray(v, dtype=float) for v in (n, r, alpha, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(
            special.gammaln(r + n)
            - special.gammaln(r)
            - special.gammaln(n + 1)
            + r * (np.log(alpha) - np.log(alpha + t))
            + special.xlogy(n, t)
            - n * np.log(alpha + t)
        )


class TransactionModel(BaseModel):
    """Base of the continuous-time transaction models fitted on (frequency, recency, T)."""

    _data_names = ("frequency", "recency", "T")

    def fit(
        self,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        weights: ArrayLike | None = None,
    ) -> TransactionModel:
        """Fit by maximum likelihood.

        Parameters
        ----------
        frequency : array-like, shape (n,)
            Number of repeat purchases (purchase periods after the first) per customer.
        recency : array-like, shape (n,)
            Time from the first to the last purchase, in model time units (0 if no repeat).
        T : array-like, shape (n,)
            Time from the first purchase to the end of the calibration period.
        weights : array-like, shape (n,), optional
            Number of customers each row stands for.

        Returns
        -------
        self
        """
        x, tx, big_t = check_rfm(frequency, recency, T)
        self._fit_arrays((x, tx, big_t), None if weights is None else as_float_array(weights))
        return self

    def _pair_index(self, x: FloatArray, big_t: FloatArray) -> tuple[list[FloatArray], NDArray[np.intp]]:
        """Distinct (x, T) pairs and the inverse index, cached per pair of arrays (the cache is
        shared with the parameter-draw clones made for CLV intervals)."""
        caches: dict[Any, Any] = self.__dict__.setdefault("_xt_pairs", {})
        hit = caches.get((id(x), id(big_t)))
        if hit is not None and hit[0] is x and hit[1] is big_t:
            return hit[2], hit[3]
        cols, _, inv = compress_rows([x, big_t])
        caches[(id(x), id(big_t))] = (x, big_t, cols, inv)
        return cols, inv

    def _weighted_curve(
        self, ts: FloatArray, coef: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> FloatArray:
        """``sum_k coef_k E[X(T, T + ts_k) | history]`` per customer, shape (n,)."""
        curve = self._expected_curve(ts, x, tx, big_t)
        return np.asarray((coef[:, None] * curve).sum(axis=0), dtype=float)

    def _expected_curve(self, ts: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
        """Conditional expected purchases at several horizons, shape (len(ts), n)."""
        return np.stack([self.conditional_expected_purchases(t, x, tx, big_t) for t in ts])  # type: ignore[attr-defined]

    def _initial(self, data: tuple[FloatArray, ...], weights: FloatArray) -> FloatArray:
        x, _, big_t = data
        wsum = weights.sum()
        mx = max(dot(weights, x) / wsum, 1e-2)
        mt = max(dot(weights, big_t) / wsum, 1e-6)
        return np.array([1.0, mt / mx, 1.0, 1.0])

    def sample(self, n: int, T: ArrayLike, seed: int | None = None) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Simulate ``n`` customers from the fitted (or set) parameters.

        Parameters
        ----------
        n : int
            Number of customers.
        T : float or array-like, shape (n,)
            Each customer's observation length.
        seed : int, optional

        Returns
        -------
        frequency, recency, T : arrays, shape (n,)
        """
        raise NotImplementedError


def _bg_alive_expectation(
    params: tuple[float, ...], x: FloatArray, t: FloatArray, big_t: FloatArray, b_shift: float
) -> FloatArray:
    """BG/NBD-family ``E[X(T, T + t) | alive]``: ``b_shift`` is 0 for BG/NBD and 1 for MBG/NBD
    (whose Beta parameter is ``b + x + 1``)."""
    r, alpha, a, b = params
    return recip_beta_expectation(r + x, np.full_like(x, a), b + x + b_shift, t / (alpha + big_t))


def bg_conditional_expected(
    model: TransactionModel, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
    b_shift: float,
) -> FloatArray:
    """Expected repeat purchases in ``(T, T + t]`` given each customer's history, for a
    BG/NBD-family model (``b_shift`` as in :func:`_bg_alive_expectation`); shape (n,)."""
    params = model._p()
    x, tx, big_t = check_rfm(frequency, recency, T)
    t = np.broadcast_to(as_float_array(t, "t"), x.shape)
    alive = model.p_alive(x, tx, big_t)  # type: ignore[attr-defined]
    return alive * _bg_alive_expectation(params, x, t, big_t, b_shift)


def bg_expected_curve(
    model: TransactionModel, ts: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray, b_shift: float
) -> FloatArray:
    """Conditional expectations of a BG/NBD-family model at horizons ``ts``, shape
    (len(ts), n); the hypergeometric part depends on (x, T) only and is evaluated once per
    distinct pair. ``b_shift`` as in :func:`_bg_alive_expectation`."""
    params = model._p()
    alive = model.p_alive(x, tx, big_t)  # type: ignore[attr-defined]
    (ux, ut), inv = model._pair_index(x, big_t)
    out = np.empty((len(ts), len(x)))
    for k, t in enumerate(ts):
        out[k] = alive * _bg_alive_expectation(params, ux, np.full_like(ux, t), ut, b_shift)[inv]
    return out


def bg_weighted_curve(
    model: TransactionModel, ts: FloatArray, coef: FloatArray, x: FloatArray, tx: FloatArray,
    big_t: FloatArray, b_shift: float,
) -> FloatArray:
    """``sum_k coef_k E[X(T, T + ts_k) | history]`` per customer for a BG/NBD-family model:
    P(alive) times a sum over horizons that is evaluated once per distinct (x, T) pair."""
    params = model._p()
    alive = model.p_alive(x, tx, big_t)  # type: ignore[attr-defined]
    (ux, ut), inv = model._pair_index(x, big_t)
    acc = np.zeros(len(ux))
    for c, t in zip(coef, ts, strict=True):
        acc += c * _bg_alive_expectation(params, ux, np.full_like(ux, t), ut, b_shift)
    return alive * acc[inv]


def bg_time_terms(
    model: BaseModel, alpha: float, tx: FloatArray, big_t: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per row ``log(alpha + T)``, ``log(alpha + t_x)``, ``1 / (alpha + T)`` and
    ``1 / (alpha + t_x)`` of a BG/NBD-family likelihood, each computed once per distinct value."""
    ut, it = model._unique_index(big_t, "T")
    us, is_ = model._unique_index(tx, "recency")
    return (np.log(alpha + ut)[it], np.log(alpha + us)[is_],
            (1.0 / (alpha + ut))[it], (1.0 / (alpha + us))[is_])


def bg_per_x(
    r: float, alpha: float, a: float, b: float, ux: FloatArray, b_shift: float, hess: bool = False
) -> dict[str, FloatArray]:
    """The per-frequency terms of :func:`bg_family_sum` that BG/NBD (``b_shift`` 0) and
    MBG/NBD (``b_shift`` 1, Beta parameter ``b + x + 1``) share: ``lg``, ``dr``, ``da``,
    ``db`` and, with ``hess``, ``hrr``, ``haa``, ``hab``, ``hbb``. Each model adds its own
    ``c4`` and ``ib``."""
    bx = b + ux + b_shift
    abx = a + b + ux + b_shift
    psi_abx = special.digamma(abx)
    psi_ab = special.digamma(a + b)
    per_x = {
        "lg": special.gammaln(r + ux) - special.gammaln(r) + special.gammaln(bx) + special.gammaln(a + b)
        - special.gammaln(b) - special.gammaln(abx) + r * np.log(alpha),
        "dr": special.digamma(r + ux) - special.digamma(r) + np.log(alpha),
        "da": psi_ab - psi_abx,
        "db": special.digamma(bx) + psi_ab - special.digamma(b) - psi_abx,
    }
    if hess:
        tg_ab = special.polygamma(1, a + b)
        tg_abx = special.polygamma(1, abx)
        per_x["hrr"] = special.polygamma(1, r + ux) - special.polygamma(1, r)
        per_x["haa"] = tg_ab - tg_abx
        per_x["hab"] = per_x["haa"]
        per_x["hbb"] = special.polygamma(1, bx) + tg_ab - special.polygamma(1, b) - tg_abx
    return per_x


def bg_family_sum(
    model: BaseModel,
    r: float,
    alpha: float,
    a: float,
    data: tuple[FloatArray, ...],
    weights: FloatArray,
    per_x: dict[str, FloatArray],
    hess: bool = False,
) -> tuple[float, FloatArray, FloatArray | None]:
    """Weighted log-likelihood, gradient and (``hess=True``) Hessian in (r, alpha, a, b) of
    BG/NBD-type models.

    Each row's likelihood is ``exp(lg_x) [(alpha+T)^-(r+x) + exp(c4_x) (alpha+t_x)^-(r+x)]``.
    ``per_x`` holds per distinct frequency: ``lg`` (includes ``r log alpha``), ``c4``
    (``-inf`` where the second term is absent; ``d c4 / d a = 1/a``), ``ib`` (minus
    ``d c4 / d b``; ``d2 c4 / d b2 = ib**2``) and the derivatives ``dr`` (includes
    ``log alpha``), ``da``, ``db`` of ``lg``; for the Hessian also its second derivatives
    ``hrr``, ``haa``, ``hab``, ``hbb`` (the ``r log alpha`` terms are added here). Per-row work
    is a few passes; sums over rows go through ``bincount`` per distinct T / recency / frequency.

    With ``A3 = -(r+x) log(alpha+T)``, ``A4 = c4 - (r+x) log(alpha+t_x)`` and the mixture
    weights ``w3, w4`` of the two terms, the row Hessian is
    ``H(lg) + w3 H(A3) + w4 H(A4) + w3 w4 (dA4 - dA3)(dA4 - dA3)'``.
    """
    x, tx, big_t = data
    ux, inv = model._unique_index(x)
    ut, it = model._unique_index(big_t, "T")
    us, is_ = model._unique_index(tx, "recency")
    caches: dict[int, Any] = model.__dict__.setdefault("_bg_w_caches", {})
    cache = caches.get(id(weights))
    if cache is None or cache[0] is not weights:
        cache = (
            weights,
            np.bincount(inv, weights=weights, minlength=len(ux)),
            np.bincount(it, weights=weights, minlength=len(ut)),
            np.bincount(it, weights=weights * x, minlength=len(ut)),
            float(weights.sum()),
        )
        caches[id(weights)] = cache
    wx, wt, wxt, wsum = cache[1], cache[2], cache[3], cache[4]
    la_t_u, la_x_u = np.log(alpha + ut), np.log(alpha + us)
    ia_t_u, ia_x_u = 1.0 / (alpha + ut), 1.0 / (alpha + us)
    lat, lax = la_t_u[it], la_x_u[is_]
    rx = r + x
    d = per_x["c4"][inv] - rx * (lax - lat)
    e = np.exp(-np.abs(d))
    w4 = np.where(d > 0, 1.0, e) / (1.0 + e)
    ll_sum = float(wx @ per_x["lg"]) + float((weights * (np.maximum(d, 0.0) + np.log1p(e) - rx * lat)).sum())
    v = weights * w4
    vr = v * rx
    vt = np.bincount(it, weights=v, minlength=len(ut))
    vx = np.bincount(is_, weights=v, minlength=len(us))
    vrt = np.bincount(it, weights=vr, minlength=len(ut))
    vrx = np.bincount(is_, weights=vr, minlength=len(us))
    vxx = np.bincount(inv, weights=v, minlength=len(ux))
    ib = per_x["ib"]
    g = np.empty(4)
    g[0] = float(wx @ per_x["dr"] - wt @ la_t_u + vt @ la_t_u - vx @ la_x_u)
    g[1] = float(wsum * r / alpha - (r * wt + wxt) @ ia_t_u + vrt @ ia_t_u - vrx @ ia_x_u)
    v_sum = float(v.sum())
    g[2] = float(wx @ per_x["da"] + v_sum / a)
    g[3] = float(wx @ per_x["db"] - vxx @ ib)
    if not hess:
        return ll_sum, g, None
    # w3 w4 (dA4 - dA3)(dA4 - dA3)' with dA4 - dA3 = (lat - lax, (r+x)(1/(alpha+T) - 1/(alpha+t_x)), 1/a, -ib)
    q = v * (1.0 - w4)
    dr_ = lat - lax
    dal = rx * (ia_t_u[it] - ia_x_u[is_])
    q_r = q * dr_
    q_a = q * dal
    qx = np.bincount(inv, weights=q, minlength=len(ux))
    qx_r = np.bincount(inv, weights=q_r, minlength=len(ux))
    qx_a = np.bincount(inv, weights=q_a, minlength=len(ux))
    q_sum, qr_sum, qa_sum = float(qx.sum()), float(qx_r.sum()), float(qx_a.sum())
    w3t = wt - vt  # sum of w3 per distinct T
    h = np.empty((4, 4))
    h[0, 0] = float(wx @ per_x["hrr"]) + dot(q_r, dr_)
    h[0, 1] = wsum / alpha - float(w3t @ ia_t_u + vx @ ia_x_u) + dot(q_r, dal)
    h[1, 1] = (
        -wsum * r / alpha**2
        + float((r * wt + wxt - vrt) @ ia_t_u**2 + vrx @ ia_x_u**2)
        + dot(q_a, dal)
    )
    h[0, 2] = qr_sum / a
    h[0, 3] = -float(qx_r @ ib)
    h[1, 2] = qa_sum / a
    h[1, 3] = -float(qx_a @ ib)
    h[2, 2] = float(wx @ per_x["haa"]) - v_sum / a**2 + q_sum / a**2
    h[2, 3] = float(wx @ per_x["hab"]) - float(qx @ ib) / a
    h[3, 3] = float(wx @ per_x["hbb"]) + float(vxx @ ib**2) + float(qx @ ib**2)
    for i in range(4):
        for j in range(i):
            h[i, j] = h[j, i]
    return ll_sum, g, h


def check_rfm(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate and broadcast (frequency, recency, T) to float arrays."""
    x = as_float_array(frequency, "frequency")
    tx = as_float_array(recency, "recency")
    big_t = as_float_array(T, "T")
    x, tx, big_t = (np.ascontiguousarray(v, dtype=float) for v in np.broadcast_arrays(x, tx, big_t))
    if np.any(x < 0):
        raise ValueError("frequency must be >= 0")
    if np.any(tx < 0):
        raise ValueError("recency must be >= 0")
    if np.any(tx > big_t * (1 + 1e-12) + 1e-12):
        raise ValueError("recency must be <= T")
    return x, np.minimum(tx, big_t), big_t
