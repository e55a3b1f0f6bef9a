"""Metrics of a risk score against what happened later: ranking, lift and calibration.

All functions take ``y_true`` (1 = the customer defected, 0 = stayed) and a score where
higher means more risk, optionally with ``sample_weight``. Ties in the score are handled
exactly (as if broken at random, in expectation), so every ranking metric is invariant to
strictly increasing transforms of the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

__all__ = [
    "CalibrationCurve",
    "brier_score",
    "calibration_curve",
    "expected_calibration_error",
    "lift",
    "pr_auc",
    "roc_auc",
    "roc_curve",
    "score_report",
    "top_decile_lift",
]


def _check(
    y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    y = np.asarray(y_true, dtype=float).reshape(-1)
    s = np.asarray(y_score, dtype=float).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values and y_score {s.size}; they must match")
    if not np.all(np.isin(y, (0.0, 1.0))):
        bad = np.unique(y[~np.isin(y, (0.0, 1.0))])[:5]
        raise ValueError(f"y_true must hold 0 and 1 only, got e.g. {bad.tolist()}")
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score contains NaN or infinite values; score every row or drop the row")
    if sample_weight is None:
        w = np.ones_like(y)
    else:
        w = np.asarray(sample_weight, dtype=float).reshape(-1)
        if w.shape != y.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("sample_weight must be finite, non-negative and one per row")
    return y, s, w


def _grouped(y: FloatArray, s: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Distinct scores in decreasing order with the positive and negative weight at each."""
    u, inv = np.unique(-s, return_inverse=True)
    inv = inv.reshape(-1)
    pos = np.bincount(inv, weights=w * y, minlength=len(u)).astype(np.float64)
    neg = np.bincount(inv, weights=w * (1 - y), minlength=len(u)).astype(np.float64)
    return -u, pos, neg


def roc_auc(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Area under the ROC curve: the probability that a random defector scores higher than a
    random stayer (ties count one half).

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_score : array-like, shape (n,)
        Higher = more risk.
    sample_weight : array-like, shape (n,), optional

    Returns
    -------
    float in [0, 1]; NaN if only one class is present.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    _, pos, neg = _grouped(y, s, w)
    wp, wn = pos.sum(), neg.sum()
    if wp <= 0 or wn <= 0:
        return float("nan")
    # negatives scoring strictly lower than each group = those in later groups
    neg_below = wn - np.cumsum(neg)
    return float((pos * (neg_below + 0.5 * neg)).sum() / (wp * wn))


def roc_curve(
    y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC curve at every distinct score.

    Returns
    -------
    fpr, tpr : ndarray of shape (m + 1,)
        False and true positive rates, starting at (0, 0).
    thresholds : ndarray of shape (m + 1,)
        Rows with ``score >= threshold`` are flagged; the first is ``inf``.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    u, pos, neg = _grouped(y, s, w)
    wp, wn = pos.sum(), neg.sum()
    tpr = np.r_[0.0, np.cumsum(pos)] / (wp if wp > 0 else np.nan)
    fpr = np.r_[0.0, np.cumsum(neg)] / (wn if wn > 0 else np.nan)
    return fpr, tpr, np.r_[np.inf, u]


def pr_auc(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Area under the precision-recall curve as average precision,
    ``AP = sum_k (R_k - R_{k-1}) P_k`` over decreasing distinct thresholds.

    Returns
    -------
    float in [0, 1]; its chance level is the base rate. NaN without positives.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    _, pos, neg = _grouped(y, s, w)
    wp = pos.sum()
    if wp <= 0:
        return float("nan")
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    precision = tp / np.maximum(tp + fp, 1e-300)
    recall_step = pos / wp
    return float((recall_step * precision).sum())


def lift(
    y_true: ArrayLike, y_score: ArrayLike, fraction: float = 0.1, sample_weight: ArrayLike | None = None
) -> float:
    """Defection rate among the ``fraction`` highest-scored rows divided by the overall rate.

    Rows tied with the cut-off score enter in proportion (the expected value under random
    tie-breaking), so the result does not depend on row order.

    Parameters
    ----------
    fraction : float in (0, 1], default 0.1
        Share of the (weighted) rows flagged.

    Returns
    -------
    float >= 0; 1 is no better than random. NaN without positives.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    y, s, w = _check(y_true, y_score, sample_weight)
    _, pos, neg = _grouped(y, s, w)
    tot = pos + neg
    total = tot.sum()
    base = pos.sum() / total if total > 0 else float("nan")
    if not base > 0:
        return float("nan")
    k = fraction * total
    cum = np.cumsum(tot)
    before = cum - tot
    take = np.clip(k - before, 0, tot)  # weight taken from each tie group
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(tot > 0, take / tot, 0.0)
    rate_top = float((share * pos).sum() / take.sum())
    return float(rate_top / base)


def top_decile_lift(y_true: ArrayLike, y_score: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Lift in the top 10% of scores (see :func:`lift`)."""
    return lift(y_true, y_score, 0.1, sample_weight)


def brier_score(y_true: ArrayLike, y_prob: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    """Mean squared difference between predicted probability and outcome, in [0, 1].

    Parameters
    ----------
    y_prob : array-like, shape (n,)
        Predicted probabilities of defection, in [0, 1].
    """
    y, p, w = _check(y_true, y_prob, sample_weight)
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("y_prob must be probabilities in [0, 1]")
    return float((w * (p - y) ** 2).sum() / w.sum())


@dataclass(frozen=True)
class CalibrationCurve:
    """Binned reliability of predicted probabilities (non-empty bins only).

    Attributes
    ----------
    mean_predicted : ndarray of shape (m,)
        Mean predicted probability in each bin.
    observed : ndarray of shape (m,)
        Observed defection rate in each bin.
    count : ndarray of shape (m,)
        Rows (sum of weights) in each bin.
    lower, upper : ndarray of shape (m,)
        Bin edges.
    """

    mean_predicted: FloatArray
    observed: FloatArray
    count: FloatArray
    lower: FloatArray
    upper: FloatArray

    @property
    def expected_calibration_error(self) -> float:
        """Count-weighted mean of ``|observed - mean_predicted|`` over the bins."""
        c = self.count
        if c.sum() <= 0:
            return float("nan")
        return float((c * np.abs(self.observed - self.mean_predicted)).sum() / c.sum())

    def to_frame(self) -> Any:
        """The bins as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(
            {
                "lower": self.lower,
                "upper": self.upper,
                "mean_predicted": self.mean_predicted,
                "observed": self.observed,
                "count": self.count,
            }
        )


def calibration_curve(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    n_bins: int = 10,
    strategy: str = "uniform",
    sample_weight: ArrayLike | None = None,
) -> CalibrationCurve:
    """Observed defection rate against mean predicted probability, in bins.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    y_prob : array-like, shape (n,), in [0, 1]
    n_bins : int, default 10
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins on [0, 1], or bins holding equal numbers of rows. Bins are closed on
        the right (``lower < p <= upper``), the first also on the left (as scikit-learn's
        ``calibration_curve``).
    sample_weight : array-like, shape (n,), optional

    Returns
    -------
    CalibrationCurve
    """
    y, p, w = _check(y_true, y_prob, sample_weight)
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("y_prob must be probabilities in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    ids = np.searchsorted(edges[1:-1], p)
    nb = len(edges) - 1
    cnt = np.bincount(ids, weights=w, minlength=nb).astype(np.float64)
    sp = np.bincount(ids, weights=w * p, minlength=nb)
    sy = np.bincount(ids, weights=w * y, minlength=nb)
    nz = cnt > 0
    return CalibrationCurve(
        mean_predicted=sp[nz] / cnt[nz],
        observed=sy[nz] / cnt[nz],
        count=cnt[nz],
        lower=edges[:-1][nz],
        upper=edges[1:][nz],
    )


def expected_calibration_error(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    n_bins: int = 10,
    strategy: str = "uniform",
    sample_weight: ArrayLike | None = None,
) -> float:
    """ECE: ``sum_b (n_b / n) |observed_b - mean_predicted_b|`` over the bins of
    :func:`calibration_curve`; 0 for perfect calibration, in [0, 1]."""
    return calibration_curve(y_true, y_prob, n_bins, strategy, sample_weight).expected_calibration_error


def score_report(
    y_true: ArrayLike,
    y_score: ArrayLike,
    sample_weight: ArrayLike | None = None,
    n_bins: int = 10,
) -> dict[str, float]:
    """All metrics of one score at once.

    The probability metrics (``brier``, ``ece``) are NaN when the score is not in [0, 1]
    (e.g. days since the last purchase).

    Returns
    -------
    dict with ``n``, ``positives``, ``base_rate``, ``roc_auc``, ``pr_auc``,
    ``lift_top_decile``, ``brier``, ``ece``.
    """
    y, s, w = _check(y_true, y_score, sample_weight)
    is_prob = bool(np.all((s >= 0) & (s <= 1)))
    total = float(w.sum())
    return {
        "n": total,
        "positives": float((w * y).sum()),
        "base_rate": float((w * y).sum() / total) if total > 0 else math.nan,
        "roc_auc": roc_auc(y, s, w),
        "pr_auc": pr_auc(y, s, w),
        "lift_top_decile": top_decile_lift(y, s, w),
        "brier": brier_score(y, s, w) if is_prob else math.nan,
        "ece": expected_calibration_error(y, s, n_bins, "uniform", w) if is_prob else math.nan,
    }
