"""Emotion heads learnt from a workspace's own emotion labels (numpy and scipy only).

The shipped emotion heads learnt from film subtitles (XED); a business's customers voice
their feelings in their own words. A label may carry the emotions its text expresses
(``custdyn label --import`` reads an ``emotions`` column; ``add_label(..., emotions=[...])``),
or say it expresses none (an empty list). With enough such labels, ``train-text`` fits, per
emotion, a logistic model that reads the shipped head's logit with a learned weight
(initially 1: with few labels it stays close to the shipped heads) and the text's embedding:

    p_j(x) = sigmoid(a_j * s_j(x) + x . w_j + b_j)

by L-BFGS on the mean binary cross-entropy plus ``l2 * ||W||^2 + l2_prior * ||a - 1||^2``.
The penalty is chosen by cross-validation on the labels, and the heads are kept only when
their out-of-fold mean average precision beats the shipped heads' on the same labels.
Probabilities are not re-weighted, so they stay calibrated to the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.schema import EMOTIONS

__all__ = [
    "EMOTION_FILE",
    "EmotionHead",
    "MIN_EMOTION_LABELS",
    "average_precision",
    "emotion_matrix",
    "fit_emotion_head",
    "learn_emotions",
    "shipped_emotion_logits",
    "top_emotion_right",
]

#: The file of a workspace model's emotion heads, beside its ``head.npz``.
EMOTION_FILE = "emotions.npz"
#: Labels with emotions (an empty list counts: "no emotion") needed before any are learnt.
MIN_EMOTION_LABELS = 30
#: Penalties on the embedding weights tried by cross-validation.
L2_GRID = (3e-4, 3e-3, 3e-2)
#: Penalty pulling each emotion's weight on the shipped logit towards 1.
L2_PRIOR = 1e-3


@dataclass
class EmotionHead:
    """Per emotion: embedding weights ``W`` (dim, 8), weight ``a`` (8,) of the shipped
    head's logit and bias ``b`` (8,)."""

    W: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def logits(self, emb: np.ndarray, shipped: np.ndarray) -> np.ndarray:
        """Logits (n, 8) of texts with embeddings ``emb`` and shipped logits ``shipped``."""
        return np.asarray(shipped * self.a + emb @ self.W + self.b, np.float64)

    def probs(self, emb: np.ndarray, shipped: np.ndarray) -> np.ndarray:
        z = np.clip(self.logits(emb, shipped), -30.0, 30.0)
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, W=self.W.astype(np.float32), a=self.a.astype(np.float32),
                            b=self.b.astype(np.float32))  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> EmotionHead:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["W"].astype(np.float32), z["a"].astype(np.float32),
                       z["b"].astype(np.float32))  # fmt: skip


def shipped_emotion_logits(emb: np.ndarray,
                           weights: dict[str, np.ndarray] | None = None) -> np.ndarray:  # fmt: skip
    """The shipped emotion heads' logits (n, 8) for embeddings ``emb`` (``weights``: the
    shipped heads, when the caller holds them already)."""
    if weights is None:
        from custdyn.text.engines import load_weights

        weights = load_weights("heads")
    return np.asarray(emb @ weights["emo_W0"] + weights["emo_b0"], np.float64)


def emotion_matrix(labels: list[list[str] | None]) -> tuple[np.ndarray, np.ndarray]:
    """``(Y, has)``: one row per label, 1 for each emotion named (``Y``, (n, 8)), and which
    labels carry emotions at all (``has``; None means the label says nothing of emotions,
    an empty list that the text expresses none)."""
    Y = np.zeros((len(labels), len(EMOTIONS)), np.float64)
    has = np.zeros(len(labels), bool)
    for i, names in enumerate(labels):
        if names is None:
            continue
        has[i] = True
        for e in names:
            Y[i, EMOTIONS.index(e)] = 1.0
    return Y, has


def fit_emotion_head(emb: np.ndarray, shipped: np.ndarray, Y: np.ndarray, *,
                     l2: float = 3e-3, l2_prior: float = L2_PRIOR,
                     max_iter: int = 200) -> EmotionHead:  # fmt: skip
    """Fit the eight heads (see the module's text) on embeddings ``emb`` (n, d), shipped
    logits ``shipped`` (n, 8) and 0/1 targets ``Y`` (n, 8)."""
    from scipy.optimize import minimize

    X = np.asarray(emb, np.float64)
    S = np.asarray(shipped, np.float64)
    T = np.asarray(Y, np.float64)
    n, d = X.shape
    k = T.shape[1]

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return theta[: d * k].reshape(d, k), theta[d * k : d * k + k], theta[d * k + k :]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, a, b = unpack(theta)
        z = S * a + X @ W + b
        # mean binary cross-entropy, written stably: log(1 + e^z) - y z
        val = float(np.sum(np.logaddexp(0.0, z) - T * z) / n)
        val += l2 * float(np.sum(W * W)) + l2_prior * float(np.sum((a - 1.0) ** 2))
        G = (1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))) - T) / n
        gW = X.T @ G + 2.0 * l2 * W
        ga = np.sum(G * S, axis=0) + 2.0 * l2_prior * (a - 1.0)
        gb = G.sum(axis=0)
        return val, np.concatenate([gW.ravel(), ga, gb])

    theta0 = np.concatenate([np.zeros(d * k), np.ones(k), np.zeros(k)])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter)})  # fmt: skip
    W, a, b = unpack(np.asarray(res.x))
    return EmotionHead(W.astype(np.float32), a.astype(np.float32), b.astype(np.float32))


def average_precision(p: np.ndarray, Y: np.ndarray) -> float:
    """Mean over the emotions that some text has and some lacks of the average precision of
    ranking texts by ``p`` (the mean, over the texts with the emotion, of the share of texts
    with it among those ranked at or above it). NaN when no emotion qualifies."""
    aps = []
    for j in range(Y.shape[1]):
        y = Y[:, j] > 0
        if not y.any() or y.all():
            continue
        order = np.argsort(-p[:, j], kind="stable")
        hits = y[order]
        ranks = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.cumsum(hits)[ranks - 1] / ranks)))
    return float(np.mean(aps)) if aps else float("nan")


def top_emotion_right(p: np.ndarray, Y: np.ndarray) -> float:
    """Share of the texts with some emotion whose likeliest emotion is one of theirs (NaN
    when no text has one)."""
    rows = Y.sum(axis=1) > 0
    if not rows.any():
        return float("nan")
    top = p[rows].argmax(axis=1)
    return float(np.mean(Y[rows][np.arange(int(rows.sum())), top] > 0))


def _folds(n: int, k: int, seed: int) -> np.ndarray:
    fold = np.empty(n, np.int64)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    return fold


def learn_emotions(emb: np.ndarray, shipped: np.ndarray, labels: list[list[str] | None], *,
                   folds: int = 5, seed: int = 0) -> tuple[EmotionHead | None, dict[str, Any]]:  # fmt: skip
    """Emotion heads from the labels that carry emotions, and what was measured: ``labels``
    (with emotions), ``average_precision`` and ``top_emotion_right`` out of fold for the
    candidate and the shipped heads, the ``l2`` chosen and ``used``. The heads are None
    (``used`` False, with a ``reason``) when fewer than :data:`MIN_EMOTION_LABELS` labels carry
    emotions, when no emotion is named, or when they do not beat the shipped heads."""
    Y, has = emotion_matrix(labels)
    n = int(has.sum())
    report: dict[str, Any] = {"labels": n, "used": False}
    if n < MIN_EMOTION_LABELS:
        report["reason"] = (f"{n} labels carry emotions; at least {MIN_EMOTION_LABELS} are "
                            "needed to learn them")  # fmt: skip
        return None, report
    X, S, T = np.asarray(emb)[has], np.asarray(shipped)[has], Y[has]
    if not T.any():
        report["reason"] = "no label names an emotion"
        return None, report
    k = int(min(folds, n))
    fold = _folds(n, k, seed)
    shipped_p = 1.0 / (1.0 + np.exp(-np.clip(S, -30.0, 30.0)))
    best: tuple[float, float, np.ndarray] | None = None
    for l2 in L2_GRID:
        oof = np.zeros_like(T)
        for f in range(k):
            tr, te = fold != f, fold == f
            oof[te] = fit_emotion_head(X[tr], S[tr], T[tr], l2=l2).probs(X[te], S[te])
        ap = average_precision(oof, T)
        if best is None or ap > best[0]:
            best = (ap, l2, oof)
    assert best is not None
    ap, l2, oof = best
    report.update(
        l2=l2, folds=k,
        average_precision={"candidate": ap, "shipped": average_precision(shipped_p, T)},
        top_emotion_right={"candidate": top_emotion_right(oof, T),
                           "shipped": top_emotion_right(shipped_p, T)},
    )  # fmt: skip
    if not ap > report["average_precision"]["shipped"]:
        report["reason"] = "not better than the shipped emotion heads on these labels"
        return None, report
    report["used"] = True
    return fit_emotion_head(X, S, T, l2=l2), report
