"""Cox proportional hazards regression (Cox 1972) and plain-language procedure effects.

The partial likelihood handles tied event times by Efron's (1977) approximation (default) or
Breslow's (1974); it is maximised by Newton-Raphson with the analytic gradient and Hessian,
on covariates centred and scaled to unit standard deviation (the estimates are reported on
the original scale). The baseline cumulative hazard is Breslow's estimator.

Everything here is observational: a hazard ratio says how the defection rate of customers
with a trait compares with that of otherwise comparable customers (adjusted for the other
covariates in the model), not what would happen if the trait were changed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from custdyn.errors import ConvergenceWarning, InsufficientDataError, NotFittedError
from custdyn.models._params import SettingsMixin

FloatArray = NDArray[np.float64]

__all__ = ["CoxPH", "ProcedureEffect", "concordance_index", "plot_hazard_ratios", "procedure_effects"]

_Z95 = 1.959963984540054


def _as_matrix(X: Any, feature_names: Sequence[str] | None) -> tuple[FloatArray, list[str]]:
    """A 2-D float matrix and its column names from an array, a DataFrame or a mapping."""
    names: list[str] | None = None
    if isinstance(X, Mapping):
        names = [str(k) for k in X]
        X = np.column_stack([np.asarray(X[k], dtype=float).reshape(-1) for k in X])
    elif hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        X = X.to_numpy(dtype=float)
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if feature_names is not None:
        names = [str(f) for f in feature_names]
    if names is None:
        names = [f"x{j}" for j in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise ValueError(f"{len(names)} feature names given for {arr.shape[1]} columns")
    return arr, names


def _exp(x: FloatArray) -> FloatArray:
    with np.errstate(over="ignore"):
        return np.exp(x)


def concordance_index(durations: ArrayLike, risk: ArrayLike, events: ArrayLike | None = None) -> float:
    """Harrell's concordance index of a risk score against censored durations.

    A pair (i, j) is comparable when customer i had the event first (``t_i < t_j``, or
    ``t_i == t_j`` with j censored); it is concordant when ``risk_i > risk_j`` and counts one
    half when the risks tie. Pairs whose events share a time are not comparable (the
    convention of lifelines' ``concordance_index`` with ``-risk``). O(n log^2 n).

    Parameters
    ----------
    durations : array-like, shape (n,)
        Time to the event or to censoring (any unit).
    risk : array-like, shape (n,)
        Higher means an earlier event is expected (e.g. the partial hazard).
    events : array-like of {0, 1}, shape (n,), optional
        1 where the event was observed (default: all observed).

    Returns
    -------
    float in [0, 1]; 0.5 is a random ranking. NaN when no pair is comparable.
    """
    t = np.asarray(durations, dtype=float).reshape(-1)
    r = np.asarray(risk, dtype=float).reshape(-1)
    e = np.ones(len(t), dtype=bool) if events is None else np.asarray(events).reshape(-1).astype(bool)
    if not (len(t) == len(r) == len(e)):
        raise ValueError("durations, risk and events must have the same length")
    n = len(t)
    if not np.any(e):
        return float("nan")
    # Order by time, events before censorings at the same time, higher risk first among tied
    # events. Then every row after an event is comparable with it, except the events that
    # share its time (subtracted at the end).
    order = np.lexsort((-r, ~e, t))
    rank = np.unique(r, return_inverse=True)[1].reshape(-1)[order].astype(np.int64)
    ev = e[order]
    big = np.int64(rank.max() + 2)
    idx = np.arange(n)
    later_less = np.int64(0)
    later_equal = np.int64(0)
    # Bottom-up merge counting: at each level a pair (p < q) of positions lies in the left and
    # right halves of exactly one block; count, for each event on the left, the right-half
    # rows of lower and of equal risk. O(n log^2 n), all in numpy.
    size = 1
    while size < n:
        blk = (idx // (2 * size)).astype(np.int64)
        right = (idx % (2 * size)) >= size
        left_ev = ~right & ev
        if np.any(right) and np.any(left_ev):
            keys = np.sort(blk[right] * big + rank[right])
            lb = blk[left_ev] * big
            q = lb + rank[left_ev]
            base = np.searchsorted(keys, lb, side="left")
            lo = np.searchsorted(keys, q, side="left")
            hi = np.searchsorted(keys, q, side="right")
            later_less += np.int64((lo - base).sum())
            later_equal += np.int64((hi - lo).sum())
        size *= 2
    pos_ev = np.flatnonzero(ev)
    later_all = np.int64((n - 1 - pos_ev).sum())
    # events sharing a time: not comparable
    te = t[order][ev]
    re_ = rank[ev]
    _, d = np.unique(te, return_counts=True)
    same_pairs = np.int64((d * (d - 1) // 2).sum())
    _, m = np.unique(np.column_stack([te, re_]), axis=0, return_counts=True)
    same_tied = np.int64((m * (m - 1) // 2).sum())
    pairs = later_all - same_pairs
    tied = later_equal - same_tied
    correct = later_less - (same_pairs - same_tied)
    if pairs == 0:
        return float("nan")
    return float((correct + 0.5 * tied) / pairs)


class CoxPH(SettingsMixin):
    """Cox proportional hazards model, ``h(t | x) = h0(t) exp(x' beta)``.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default "efron"
        Approximation of the partial likelihood for tied event times.
    penalizer : float, default 0
        L2 penalty ``n * penalizer / 2 * sum(b**2)`` on the coefficients ``b`` of the
        standardised covariates (the convention of lifelines' ``CoxPHFitter(penalizer=...,
        l1_ratio=0)``); stabilises fits with separated or collinear covariates.
    alpha : float, default 0.05
        ``1 - alpha`` is the level of the confidence intervals.
    max_iter : int, default 50
        Newton-Raphson iterations.
    tol : float, default 1e-9
        Convergence: the Newton decrement ``g' H^-1 g`` below ``tol`` (per unit of
        log-likelihood).

    Attributes
    ----------
    params_ : ndarray of shape (n_features,)
        Log hazard ratios, per unit of each covariate.
    standard_errors_ : ndarray of shape (n_features,)
    hazard_ratios_ : ndarray of shape (n_features,)
        ``exp(params_)``.
    confidence_intervals_ : ndarray of shape (n_features, 2)
        Wald intervals of the hazard ratios at level ``1 - alpha``.
    p_values_ : ndarray of shape (n_features,)
        Two-sided Wald tests of ``beta = 0``.
    variance_matrix_ : ndarray of shape (n_features, n_features)
    log_likelihood_ : float
        Partial log-likelihood at the estimate.
    log_likelihood_null_ : float
        Partial log-likelihood with all coefficients 0.
    concordance_ : float
        Harrell's C of the partial hazard on the training data.
    baseline_cumulative_hazard_ : ndarray of shape (n_times,)
        Breslow's estimator at ``baseline_times_``, for covariates at their means.
    baseline_times_ : ndarray of shape (n_times,)
        Distinct event times.
    feature_names_in_ : list of str
    n_samples_, n_events_, n_iter_, converged_
    """

    def __init__(
        self,
        *,
        ties: str = "efron",
        penalizer: float = 0.0,
        alpha: float = 0.05,
        max_iter: int = 50,
        tol: float = 1e-9,
    ) -> None:
        self.ties = ties
        self.penalizer = penalizer
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol


    # ------------------------------------------------------------------ likelihood
    @staticmethod
    def _prepare(t: FloatArray, e: NDArray[np.bool_]) -> dict[str, Any]:
        """Group the (time-sorted) rows by distinct time and list the tied event slots."""
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        group = np.cumsum(np.r_[True, t[1:] != t[:-1]]) - 1
        n_groups = len(starts)
        d = np.bincount(group, weights=e.astype(float), minlength=n_groups).astype(np.int64)
        # one slot per event: (group, l) with l = 0..d_g - 1
        slot_group = np.repeat(np.arange(n_groups), d)
        first = np.cumsum(d) - d
        slot_l = np.arange(len(slot_group)) - np.repeat(first, d)
        return {
            "starts": starts,
            "group": group,
            "d": d,
            "slot_group": slot_group,
            "slot_l": slot_l.astype(float),
            "times": t[starts],
        }

    def _loglik(
        self, beta: FloatArray, X: FloatArray, e: NDArray[np.bool_], prep: dict[str, Any], hessian: bool = True
    ) -> tuple[float, FloatArray, FloatArray | None]:
        """Partial log-likelihood, gradient and Hessian at ``beta`` (X sorted by time)."""
        eta = X @ beta
        m = float(eta.max())
        w = np.exp(eta - m)
        wx = X * w[:, None]
        starts, group, d = prep["starts"], prep["group"], prep["d"]
        sg, sl = prep["slot_group"], prep["slot_l"]
        ef = e.astype(float)
        s0g = np.add.reduceat(w, starts)
        s1g = np.add.reduceat(wx, starts, axis=0)
        s0r = np.cumsum(s0g[::-1])[::-1]
        s1r = np.cumsum(s1g[::-1], axis=0)[::-1]
        if self.ties == "efron":
            d0g = np.add.reduceat(w * ef, starts)
            d1g = np.add.reduceat(wx * ef[:, None], starts, axis=0)
            c = sl / np.maximum(d[sg], 1)
        else:
            d0g = np.zeros_like(s0g)
            d1g = np.zeros_like(s1g)
            c = np.zeros_like(sl)
        den = s0r[sg] - c * d0g[sg]
        num = s1r[sg] - c[:, None] * d1g[sg]
        ll = float(ef @ (eta - m) - np.log(den).sum())
        grad = X.T @ ef - (num / den[:, None]).sum(axis=0)
        if not hessian:
            return ll, grad, None
        n_groups = len(starts)
        a_g = np.bincount(sg, weights=1.0 / den, minlength=n_groups)
        b_g = np.bincount(sg, weights=c / den, minlength=n_groups)
        a_cum = np.cumsum(a_g)[group]  # sum of a_g over event times <= t_i: i is in those risk sets
        diag = w * a_cum - ef * w * b_g[group]
        v = num / den[:, None]
        h = -((X * diag[:, None]).T @ X - v.T @ v)
        return ll, grad, h

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        durations: ArrayLike,
        events: ArrayLike,
        X: Any,
        feature_names: Sequence[str] | None = None,
    ) -> CoxPH:
        """Fit by maximum partial likelihood.

        Parameters
        ----------
        durations : array-like, shape (n_samples,)
            Time from the start of observation to the event or to censoring (e.g. days),
            ``>= 0``.
        events : array-like of {0, 1} or bool, shape (n_samples,)
            1 where the event (defection, cancellation) was observed, 0 if censored.
        X : array-like of shape (n_samples, n_features), DataFrame or mapping of columns
            Covariates; no missing values.
        feature_names : sequence of str, optional
            Names of the columns (taken from a DataFrame or mapping otherwise).

        Returns
        -------
        self
        """
        if self.ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {self.ties!r}")
        if not self.penalizer >= 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer!r}")
        Xa, names = _as_matrix(X, feature_names)
        t = np.asarray(durations, dtype=float).reshape(-1)
        e_raw = np.asarray(events, dtype=float).reshape(-1)
        n, p = Xa.shape
        if not (len(t) == len(e_raw) == n):
            raise ValueError(f"durations ({len(t)}), events ({len(e_raw)}) and X ({n} rows) differ in length")
        if not np.all(np.isfinite(Xa)):
            bad = [names[j] for j in np.flatnonzero(~np.all(np.isfinite(Xa), axis=0))]
            raise ValueError(f"X has missing or infinite values in columns {bad}; impute or drop them first")
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise ValueError("durations must be finite and >= 0")
        if not np.all(np.isin(e_raw, (0.0, 1.0))):
            raise ValueError("events must be 0 (censored) or 1 (event observed)")
        e = e_raw.astype(bool)
        if e.sum() == 0:
            raise InsufficientDataError("no events observed: the Cox model cannot be fitted")
        mean = Xa.mean(axis=0)
        std = Xa.std(axis=0, ddof=1) if n > 1 else np.zeros(p)
        const = [names[j] for j in np.flatnonzero(~(std > 0))]
        if const:
            raise InsufficientDataError(f"covariates {const} are constant; drop them before fitting")

        order = np.argsort(t, kind="stable")
        ts, es = t[order], e[order]
        Z = (Xa[order] - mean) / std
        prep = self._prepare(ts, es)
        pen = float(self.penalizer) * n

        def objective(b: FloatArray, hessian: bool = True) -> tuple[float, FloatArray, FloatArray | None]:
            ll, g, h = self._loglik(b, Z, es, prep, hessian)
            ll -= 0.5 * pen * float(b @ b)
            g = g - pen * b
            if h is not None:
                h = h - pen * np.eye(p)
            return ll, g, h

        beta = np.zeros(p)
        ll, g, h = objective(beta)
        ll0 = ll
        converged = False
        n_iter = 0  # Newton steps taken
        for _ in range(int(self.max_iter) + 1):
            assert h is not None
            try:
                step = np.linalg.solve(-h, g)
            except np.linalg.LinAlgError:
                step = np.linalg.lstsq(-h, g, rcond=None)[0]
            decrement = float(g @ step)
            if decrement < self.tol:
                converged = True
                break
            if n_iter == int(self.max_iter):
                break
            n_iter += 1
            t_step = 1.0
            while t_step > 1e-8:
                cand = beta + t_step * step
                ll_c, _, _ = objective(cand, hessian=False)
                if np.isfinite(ll_c) and ll_c >= ll - 1e-12 * abs(ll):
                    break
                t_step *= 0.5
            beta = beta + t_step * step
            ll, g, h = objective(beta)
        assert h is not None
        if not converged:
            warnings.warn(
                f"CoxPH did not converge in {self.max_iter} Newton-Raphson iterations (max |gradient| = "
                f"{np.max(np.abs(g)):.2e}); a covariate may separate events from non-events. Try "
                f"penalizer=0.1, or drop the covariate; see docs/insights.md",
                ConvergenceWarning,
                stacklevel=2,
            )
        try:
            cov_std = np.linalg.inv(-h)
        except np.linalg.LinAlgError:
            cov_std = np.full((p, p), np.nan)
        self.feature_names_in_ = names
        self.n_features_in_ = p
        self.n_samples_ = n
        self.n_events_ = int(e.sum())
        self.n_iter_ = n_iter
        self.converged_ = converged
        self._mean_ = mean
        self._std_ = std
        self.params_ = beta / std
        self.variance_matrix_ = cov_std / np.outer(std, std)
        self.standard_errors_ = np.sqrt(np.clip(np.diag(self.variance_matrix_), 0, None))
        z_a = float(stats.norm.ppf(1 - self.alpha / 2))
        with np.errstate(over="ignore"):  # a diverging (separated) coefficient gives inf
            self.hazard_ratios_ = np.exp(self.params_)
            self.confidence_intervals_ = np.exp(
                np.column_stack(
                    [self.params_ - z_a * self.standard_errors_, self.params_ + z_a * self.standard_errors_]
                )
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            self.z_ = self.params_ / self.standard_errors_
        self.p_values_ = 2 * stats.norm.sf(np.abs(self.z_))
        # likelihoods without the penalty
        self.log_likelihood_ = self._loglik(beta, Z, es, prep, hessian=False)[0]
        self.log_likelihood_null_ = ll0 if pen == 0 else self._loglik(np.zeros(p), Z, es, prep, False)[0]
        self.aic_partial_ = 2 * p - 2 * self.log_likelihood_
        self.log_likelihood_ratio_test_ = (
            2 * (self.log_likelihood_ - self.log_likelihood_null_),
            p,
            float(stats.chi2.sf(2 * (self.log_likelihood_ - self.log_likelihood_null_), p)),
        )
        # Breslow baseline cumulative hazard, covariates at their means
        eta = Z @ beta
        w = np.exp(eta - eta.max())
        s0r = np.cumsum(np.add.reduceat(w, prep["starts"])[::-1])[::-1]
        d = prep["d"]
        has = d > 0
        inc = d[has] / (s0r[has] * math.exp(float(eta.max())))
        self.baseline_times_ = prep["times"][has]
        self.baseline_cumulative_hazard_ = np.cumsum(inc)
        risk = np.empty(n)
        risk[order] = eta
        self.concordance_ = concordance_index(t, risk, e)
        return self

    # ------------------------------------------------------------------ predictions
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise NotFittedError("CoxPH is not fitted yet; call fit(durations, events, X) first")

    def _design(self, X: Any) -> FloatArray:
        self._check_fitted()
        if isinstance(X, Mapping) or hasattr(X, "columns"):
            cols = list(X.keys()) if isinstance(X, Mapping) else [str(c) for c in X.columns]
            missing = [f for f in self.feature_names_in_ if f not in cols]
            if missing:
                raise ValueError(f"X lacks the fitted covariates {missing}; it has {cols}")
            Xa = np.column_stack([np.asarray(X[f], dtype=float).reshape(-1) for f in self.feature_names_in_])
        else:
            Xa = np.asarray(X, dtype=float)
            if Xa.ndim == 1:
                Xa = Xa.reshape(1, -1) if self.n_features_in_ > 1 else Xa.reshape(-1, 1)
            if Xa.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {Xa.shape[1]} columns; the model was fitted on {self.n_features_in_}")
        return Xa

    def predict_log_partial_hazard(self, X: Any) -> FloatArray:
        """``(x - mean)' beta`` for each row, shape (n,) (log of the hazard ratio against an
        average customer of the training data)."""
        Xa = self._design(X)
        return np.asarray((Xa - self._mean_) @ self.params_, dtype=float)

    def predict_partial_hazard(self, X: Any) -> FloatArray:
        """``exp((x - mean)' beta)``: each row's hazard relative to an average customer, shape (n,)."""
        return np.exp(self.predict_log_partial_hazard(X))

    def baseline_cumulative_hazard(self, times: ArrayLike) -> FloatArray:
        """Breslow's ``H0(t)`` (covariates at their training means) at ``times``, shape (m,)."""
        self._check_fitted()
        tt = np.asarray(times, dtype=float).reshape(-1)
        idx = np.searchsorted(self.baseline_times_, tt, side="right")
        cum = np.r_[0.0, self.baseline_cumulative_hazard_]
        return np.asarray(cum[idx], dtype=float)

    def predict_survival_function(self, X: Any, times: ArrayLike) -> FloatArray:
        """``S(t | x) = exp(-H0(t) exp((x - mean)' beta))``.

        Parameters
        ----------
        X : array-like of shape (n, n_features), DataFrame or mapping
        times : array-like, shape (m,)
            In the unit of the fitted durations.

        Returns
        -------
        ndarray of shape (m, n)
            Survival probability of each row (column) at each time (row).
        """
        h0 = self.baseline_cumulative_hazard(times)
        ph = self.predict_partial_hazard(X)
        return np.asarray(np.exp(-np.outer(h0, ph)), dtype=float)

    def predict_event_probability(self, X: Any, durations: ArrayLike, horizon: float) -> FloatArray:
        """Probability of the event (e.g. cancellation) within ``horizon`` for customers still
        active after ``durations``: ``1 - S(d + h | x) / S(d | x)``.

        Parameters
        ----------
        X : array-like of shape (n, n_features), DataFrame or mapping
        durations : array-like, shape (n,)
            Time each customer has been active so far (tenure), in the fitted unit.
        horizon : float
            Length of the window ahead, in the same unit.

        Returns
        -------
        ndarray of shape (n,), in [0, 1]

        Notes
        -----
        Breslow's baseline is flat after the last event time seen in training, so windows
        reaching past it understate the risk.
        """
        d = np.asarray(durations, dtype=float).reshape(-1)
        ph = self.predict_partial_hazard(X)
        if d.size == 1 and ph.size > 1:
            d = np.full(ph.size, d[0])
        if d.shape != ph.shape:
            raise ValueError(f"durations has {d.size} values for {ph.size} rows of X")
        if not horizon >= 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        dh = self.baseline_cumulative_hazard(d + float(horizon)) - self.baseline_cumulative_hazard(d)
        return np.asarray(-np.expm1(-dh * ph), dtype=float)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> Any:
        """Estimates table, one row per covariate.

        Returns
        -------
        pandas.DataFrame
            Columns ``coef``, ``exp(coef)``, ``se(coef)``, ``coef lower 95%``, ``coef upper
            95%``, ``exp(coef) lower 95%``, ``exp(coef) upper 95%``, ``z``, ``p``,
            ``-log2(p)``; ``attrs`` holds the log-likelihood, AIC, concordance and the
            likelihood-ratio test.
        """
        import pandas as pd

        self._check_fitted()
        z_a = float(stats.norm.ppf(1 - self.alpha / 2))
        pct = round(100 * (1 - self.alpha))
        lo = self.params_ - z_a * self.standard_errors_
        hi = self.params_ + z_a * self.standard_errors_
        with np.errstate(divide="ignore"):
            log2p = -np.log2(self.p_values_)
        df = pd.DataFrame(
            {
                "coef": self.params_,
                "exp(coef)": self.hazard_ratios_,
                "se(coef)": self.standard_errors_,
                f"coef lower {pct}%": lo,
                f"coef upper {pct}%": hi,
                f"exp(coef) lower {pct}%": _exp(lo),
                f"exp(coef) upper {pct}%": _exp(hi),
                "z": self.z_,
                "p": self.p_values_,
                "-log2(p)": log2p,
            },
            index=pd.Index(self.feature_names_in_, name="covariate"),
        )
        df.attrs.update(
            log_likelihood=self.log_likelihood_,
            aic_partial=self.aic_partial_,
            concordance=self.concordance_,
            log_likelihood_ratio_test=self.log_likelihood_ratio_test_,
            n_samples=self.n_samples_,
            n_events=self.n_events_,
            ties=self.ties,
            penalizer=self.penalizer,
        )
        return df

    def print_summary(self, decimals: int = 3) -> str:
        """The summary as text (also printed), lifelines-style."""
        df = self.summary()
        cols = ["coef", "exp(coef)", "se(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "z", "p"]
        cols = [c for c in cols if c in df.columns]
        lr, dof, lr_p = self.log_likelihood_ratio_test_
        text = (
            f"{self!r}\n{df[cols].round(decimals).to_string()}\n---\n"
            f"Concordance = {self.concordance_:.{decimals}f}    partial AIC = {self.aic_partial_:.2f}    "
            f"log-likelihood ratio test = {lr:.2f} on {dof} df, p = {lr_p:.3g}"
        )
        print(text)
        return text

    def __repr__(self) -> str:
        name = "custdyn.models.CoxPH"
        if not hasattr(self, "params_"):
            return f"<{name}: not fitted>"
        state = f"converged in {self.n_iter_} iterations" if self.converged_ else "NOT converged"
        return (
            f"<{name}: fitted on {self.n_samples_:,} customers ({self.n_events_:,} events), "
            f"{self.ties} ties, {state}>"
        )


# ---------------------------------------------------------------------- procedure effects


class ProcedureEffect(NamedTuple):
    """The adjusted association of one procedure covariate with defection.

    ``hazard_ratio`` is per ``per`` units for a continuous covariate and for having the trait
    (1 vs 0) for a binary one.
    """

    name: str
    kind: str
    per: float
    unit: str
    hazard_ratio: float
    lower_95: float
    upper_95: float
    p_value: float
    n_customers: int
    n_with: int
    sentence: str


def _fmt_ratio(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if x >= 10:
        return f"{x:.0f}"
    return f"{x:.2f}".rstrip("0").rstrip(".") if x < 1 else f"{x:.1f}"


def procedure_effects(
    durations: ArrayLike,
    events: ArrayLike,
    X: Any,
    procedures: Mapping[str, Mapping[str, Any]],
    feature_names: Sequence[str] | None = None,
    *,
    ties: str = "efron",
    penalizer: float = 0.0,
    outcome: str = "left",
) -> list[ProcedureEffect]:
    """Hazard ratios of named procedure covariates, adjusted for all the other columns of X,
    each with a plain-language sentence.

    Parameters
    ----------
    durations, events : array-like, shape (n,)
        As for :meth:`CoxPH.fit` (event = defection or cancellation).
    X : array-like of shape (n, n_features), DataFrame or mapping of columns
        The procedure covariates and the adjustment covariates (e.g. tenure, spend,
        segment indicators).
    procedures : mapping of column name to a description
        Each value is a mapping with ``kind`` (``"binary"`` or ``"continuous"``) and
        ``description``: for a binary covariate the clause that completes "Customers ...",
        e.g. ``"whose first reply took more than 24 h"``; for a continuous one the name of
        the quantity, e.g. ``"median first-reply time"``, plus ``unit`` (e.g. ``"hours"``)
        and ``per`` (the step the ratio is quoted for, default 1).
    feature_names : sequence of str, optional
    ties, penalizer
        Passed to :class:`CoxPH`.
    outcome : str, default "left"
        The verb of the sentence ("left", "cancelled").

    Returns
    -------
    list of ProcedureEffect, in the order of ``procedures``

    Notes
    -----
    Observational: the ratios compare customers who differ in the procedure but are alike
    in the other covariates; unmeasured differences can explain them.
    """
    model = CoxPH(ties=ties, penalizer=penalizer).fit(durations, events, X, feature_names)
    names = model.feature_names_in_
    Xa, _ = _as_matrix(X, feature_names)
    out: list[ProcedureEffect] = []
    for col, spec in procedures.items():
        if col not in names:
            raise ValueError(f"procedure {col!r} is not a column of X; columns are {names}")
        j = names.index(col)
        kind = str(spec.get("kind", "binary"))
        if kind not in ("binary", "continuous"):
            raise ValueError(f"procedure {col!r}: kind must be 'binary' or 'continuous', got {kind!r}")
        per = float(spec.get("per", 1.0)) if kind == "continuous" else 1.0
        unit = str(spec.get("unit", ""))
        desc = str(spec.get("description", col))
        b, se = float(model.params_[j]), float(model.standard_errors_[j])
        hr, lo, hi = (float(v) for v in _exp(np.array([b, b - _Z95 * se, b + _Z95 * se]) * per))
        p = float(model.p_values_[j])
        n_with = int(np.sum(Xa[:, j] != 0)) if kind == "binary" else int(np.sum(np.isfinite(Xa[:, j])))
        ci = f"95% CI {_fmt_ratio(lo)}-{_fmt_ratio(hi)}"
        unclear = lo <= 1.0 <= hi
        if kind == "binary":
            if unclear:
                sentence = (
                    f"Customers {desc} {outcome} at {_fmt_ratio(hr)}x the rate ({ci}) of comparable "
                    f"customers; the interval includes no difference"
                )
            else:
                sentence = f"Customers {desc} {outcome} at {_fmt_ratio(hr)}x the rate ({ci}) of comparable customers"
        else:
            step = f"{per:g} {unit}".strip()
            sentence = (
                f"Each additional {step} of {desc} went with {_fmt_ratio(hr)}x the rate of customers who "
                f"{outcome} ({ci}) among comparable customers"
            )
            if unclear:
                sentence += "; the interval includes no difference"
        sentence += "; observational, not causal."
        out.append(
            ProcedureEffect(
                name=col,
                kind=kind,
                per=per,
                unit=unit,
                hazard_ratio=hr,
                lower_95=lo,
                upper_95=hi,
                p_value=p,
                n_customers=model.n_samples_,
                n_with=n_with,
                sentence=sentence,
            )
        )
    return out


def plot_hazard_ratios(source: CoxPH | Sequence[ProcedureEffect], title: str | None = None) -> Any:
    """Forest plot of hazard ratios with their 95% intervals, on a log axis.

    Parameters
    ----------
    source : fitted CoxPH, or the list returned by :func:`procedure_effects`

    Returns
    -------
    plotly.graph_objects.Figure
        One marker per covariate with error bars, and a line at 1 (no difference).
    """
    import plotly.graph_objects as go

    if isinstance(source, CoxPH):
        source._check_fitted()
        names = list(source.feature_names_in_)
        hr = source.hazard_ratios_.tolist()
        lo = source.confidence_intervals_[:, 0].tolist()
        hi = source.confidence_intervals_[:, 1].tolist()
        text = [f"p = {p:.3g}" for p in source.p_values_]
    else:
        names = [e.name for e in source]
        hr = [e.hazard_ratio for e in source]
        lo = [e.lower_95 for e in source]
        hi = [e.upper_95 for e in source]
        text = [e.sentence for e in source]
    fig = go.Figure()
    fig.add_scatter(
        x=hr,
        y=names,
        mode="markers",
        name="hazard ratio",
        error_x={
            "type": "data",
            "symmetric": False,
            "array": [h - m for h, m in zip(hi, hr, strict=True)],
            "arrayminus": [m - lo_ for m, lo_ in zip(hr, lo, strict=True)],
        },
        text=text,
        hovertemplate="%{y}: %{x:.2f}x<br>%{text}<extra></extra>",
    )
    fig.add_vline(x=1.0, line_dash="dot", line_color="gray")
    fig.update_layout(
        title=title or "Hazard ratios (95% CI), adjusted for the other covariates; observational",
        xaxis={"type": "log", "title": "hazard ratio (rate of leaving relative to comparable customers)"},
        yaxis={"autorange": "reversed"},
    )
    return fig
