"""Offline language identification (py3langid, 97+ languages, ISO 639-1 codes where one exists).

py3langid's classifier (langid.py, Lui & Baldwin, 2012) is a byte automaton whose states emit
n-gram features, followed by multinomial naive Bayes over ``log1p`` feature counts. Here the
same model scores a whole batch at once with numpy: every text walks the automaton together
(one gather per byte position), the features are counted in a sparse matrix and scored with one
sparse product, giving py3langid's ``classify`` answer for each text.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

_LOCK = threading.Lock()
_BATCH: _BatchModel | None = None
_HAS_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_URL = re.compile(r"https?://\S+|www\.\S+|@\w+|#", re.UNICODE)

#: Codes folded together: Norwegian Nynorsk and Bokmål are reported as "no".
ALIASES = {"nb": "no", "nn": "no", "zxx": None}

#: Other spellings of languages that users give (ISO 639-2/3 codes, English and native
#: names), by the code custdyn reports.
_SPELLINGS = {
    "en": "eng english",
    "pt": "por portuguese português portugues",
    "no": "nor nob nno norwegian norsk bokmål bokmal nynorsk",
    "tl": "tgl fil filipino tagalog taglish",
    "es": "spa spanish español espanol",
    "fr": "fra fre french français francais",
    "de": "deu ger german deutsch",
    "it": "ita italian italiano",
    "nl": "nld dut dutch nederlands",
    "sv": "swe swedish svenska",
    "da": "dan danish dansk",
    "fi": "fin finnish suomi",
    "id": "ind indonesian",
    "pcm": "pidgin",
}
_CANONICAL = {w: code for code, words in _SPELLINGS.items() for w in words.split()}


def canonical_language(code: str | None) -> str | None:
    """The code custdyn uses for a language given in another spelling: any case, with a
    region (``pt-BR``, ``pt_br``), an ISO 639-2/3 code (``nob``, ``fil``) or a name
    (``Norwegian``, ``Tagalog``). Norwegian Bokmål and Nynorsk are ``no``, Filipino is ``tl``.
    Other two- or three-letter codes are returned in lower case; anything else (or an empty
    string) gives None.

    >>> [canonical_language(c) for c in ["nb", "pt-BR", "FIL", "Norwegian", "sw", "??"]]
    ['no', 'pt', 'tl', 'no', 'sw', None]
    """
    if code is None:
        return None
    s = str(code).strip().lower()
    if s in _CANONICAL:
        return _CANONICAL[s]
    base = s.replace("_", "-").split("-")[0]
    base = ALIASES.get(base, base) or base
    base = _CANONICAL.get(base, base)
    if 2 <= len(base) <= 3 and base.isascii() and base.isalpha():
        return base
    return None


#: Tagalog words: code-switched Taglish is reported as Tagalog when these appear.
_TAGALOG_MARKERS = frozenset(
    "ang ng mga sa na ako ko mo siya niya namin natin kami tayo sila nila po opo hindi "
    "talaga naman lang yung yun kasi pero sobrang grabe ba nga pa din rin dito diyan "
    "wala may meron kayo ninyo natin pag kung para nang lahat sana ulit "
    "salamat akong inyo walang parang pang pwede kaya ito iyan bakit paano "
    # words of reviews and support messages: a short one ("Sulit!", "Maganda") has no other
    "maganda ganda sulit ayos maayos mabilis bilis dumating pangit panget medyo "
    "kulay maliit malaki manipis makapal nasira agad kaagad mabait mabagal bagal matagal tagal "
    "magaling galing mahusay gumagana gumana kulang kwenta oorder umorder binili bumili "
    "ganun ganyan ganito".split()  # 9 letters at most: see _marker_key
)
#: Markers that are also common words of other languages (Norwegian, Danish and Swedish
#: "din", "sa", "pa", "na"; Spanish and Portuguese "para", "pero", "na"; Indonesian "kami",
#: "sana"; English "may"): they count towards the share only beside a marker that is Tagalog's
#: alone.
_SHARED_MARKERS = frozenset(
    "sa na pa ba may para pero din rin mo lang kami sana dito kung pag nga".split()
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

#: Texts scored together, and their most characters (bound the batch's working memory).
_CHUNK = 2048
_CHUNK_CHARS = 1 << 20
#: Batches this small are walked one text at a time (numpy's per-call cost would dominate).
_FEW = 4
#: Longer encoded texts are walked in pieces of this many bytes (plus an overlap).
_PIECE = 512
#: Joins a batch's texts: whitespace to the URL pattern, neither a letter nor a word character.
_SEP = "\x1f"


def _taglish_share(text: str) -> float:
    """Of the words of ``text``, the fraction that are Tagalog markers; 0 when all of them are
    markers other languages share (:data:`_SHARED_MARKERS`)."""
    words = _WORD.findall(text.lower())
    found = [w for w in words if w in _TAGALOG_MARKERS]
    if not any(w not in _SHARED_MARKERS for w in found):
        return 0.0
    return len(found) / len(words)


def detect(
    text: str | None, among: Collection[str] | None = None
) -> tuple[str | None, float]:
    """``(language, confidence)`` for one text; ``(None, 0.0)`` when it has no letters.

    Code-switched Tagalog-English (Taglish) is reported as ``"tl"`` when at least a fifth of
    its words are Tagalog words (with at least one that other languages do not share), since
    a character model often calls it English. ``among``: see :func:`detect_many`.

    >>> detect("A entrega atrasou e ninguém respondeu.")[0]
    'pt'
    """
    langs, confs = detect_many([text], among)
    return langs[0], confs[0]


def detect_many(
    texts: Sequence[str | None],
    among: Collection[str] | None = None,
    *,
    collection: bool = False,
    shares: Mapping[str, float] | None = None,
) -> tuple[list[str | None], list[float]]:
    """Languages and confidences for many texts: the same answers as :func:`detect` per text.

    The whole batch is cleaned, encoded and scored at once (see :class:`_BatchModel`).
    ``among``: the languages the texts are known to be written in (codes or names, see
    :func:`canonical_language`); each text gets the likeliest of them, its confidence
    renormalised over them. Short texts in close languages are often confused (Norwegian
    read as Danish, Portuguese as Galician); a workspace that knows its customers' languages
    avoids that.

    ``collection``: the texts are one collection (a labelled file, say), so how common each
    language is among them is learnt from the texts themselves (:func:`collection_weights`)
    and weighs each text's answer: a short Norwegian line that alone would read as Danish
    reads as Norwegian in a file of Norwegian lines, while a clearly Danish one ("Tak for
    hjælpen") stays Danish. Each text's answer then depends on the others.

    ``shares``: how common each language is where the texts come from, learnt once
    (:func:`language_shares`, e.g. over a workspace's messages) and weighing each text's
    answer as ``collection`` does; each text's answer then depends on the shares only, not on
    the texts it is detected with.

    >>> langs, confs = detect_many(["Leveransen kom for sent.", "", "Grabe, sobrang late ng order ko"])
    >>> langs
    ['no', None, 'tl']
    >>> detect_many(["Tak for hjælpen"])[0], detect_many(["Tak for hjælpen"], among=["no", "en"])[0]
    (['da'], ['no'])
    >>> norwegian = ["Leveransen kom for sent.", "Takk for hjelpen!", "Pakken var skadet.",
    ...              "Jeg venter fortsatt på svar.", "Det holder ikke."]
    >>> detect_many(norwegian)[0][-1], detect_many(norwegian, collection=True)[0][-1]
    ('da', 'no')
    """
    if collection and shares is not None:
        raise ValueError("give collection=True or shares, not both")
    allowed = None if among is None else _batch_model().allowed(among)
    weights = (collection_weights(texts, allowed) if collection
               else None if shares is None else shares_weights(shares))  # fmt: skip
    n = len(texts)
    langs: list[str | None] = [None] * n
    confs: list[float] = [0.0] * n
    idx: list[int] = []
    size = 0
    for i, t in enumerate(texts):
        if t:
            idx.append(i)
            size += len(t)
        if idx and (len(idx) == _CHUNK or size >= _CHUNK_CHARS or i == n - 1):
            la, co = _detect_batch([texts[j] for j in idx], allowed, weights)  # type: ignore[misc]
            for k, j in enumerate(idx):
                langs[j] = la[k]
                confs[j] = co[k]
            idx, size = [], 0
    return langs, confs


#: :func:`collection_weights` learns the shares from at most this many texts (a seeded sample).
_PRIOR_SAMPLE = 20_000
#: How strongly the shares weigh: weight = (share x languages) ** this. 1 is the full
#: posterior correction of Saerens et al. (2002); on close languages it swallowed a real
#: minority (90 Norwegian : 10 Danish subtitle lines: Danish read right .86 -> .00), 0.5 kept
#: most of it (.65) and still lifted the majority (.82 -> .99).
_PRIOR_POWER = 0.5
#: Added to every share before the weights are taken, so no language is ruled out.
_PRIOR_FLOOR = 1e-4


def collection_weights(
    texts: Sequence[str | None], allowed: np.ndarray | None = None, *, seed: int = 0
) -> np.ndarray:
    """One weight per language column: how common each language is in ``texts``
    (:func:`_em_shares`), tempered (:data:`_PRIOR_POWER`) so that a minority language with
    clear evidence keeps its texts."""
    share = _em_shares(texts, allowed, seed=seed)
    return _tempered(share) if share.any() else np.ones(len(share), np.float32)


def language_shares(
    texts: Sequence[str | None], among: Collection[str] | None = None, *, seed: int = 0
) -> dict[str, float]:
    """How common each language is among ``texts``: ``{code: share}``, largest first, the
    shares summing to 1 (languages under 0.1 % left out). ``among``: as in
    :func:`detect_many`. Learnt by expectation-maximisation (:func:`_em_shares`) from at
    most :data:`_PRIOR_SAMPLE` texts (a sample seeded by ``seed``); empty when no text has
    letters. Give them to :func:`detect_many` (``shares=``) to detect later texts from the
    same place.

    >>> norwegian = ["Leveransen kom for sent.", "Takk for hjelpen!", "Pakken var skadet.",
    ...              "Jeg venter fortsatt på svar.", "Det holder ikke."]
    >>> shares = language_shares(norwegian * 4)
    >>> next(iter(shares)), detect_many(["Det holder ikke."], shares=shares)[0]
    ('no', ['no'])
    """
    model = _batch_model()
    allowed = None if among is None else model.allowed(among)
    share = _em_shares(texts, allowed, seed=seed)
    if not share.any():
        return {}
    summed: dict[str, float] = {}  # a language may own several columns (nb and nn are no)
    for code, v in zip(model.codes.tolist(), share.tolist(), strict=True):
        if code is not None:
            summed[code] = summed.get(code, 0.0) + v
    out = {c: v for c, v in sorted(summed.items(), key=lambda cv: -cv[1]) if v >= 1e-3}
    total = sum(out.values())
    return {c: v / total for c, v in out.items()}


def shares_weights(shares: Mapping[str, float]) -> np.ndarray:
    """One weight per language column from ``{code: share}`` (:func:`language_shares`),
    tempered as :func:`collection_weights`; languages not named get the floor share
    (:data:`_PRIOR_FLOOR`), so none is ruled out. Codes in other spellings are made
    canonical; a code that is no language raises ValueError."""
    model = _batch_model()
    share = np.full(len(model.classes), _PRIOR_FLOOR, np.float64)
    for code, value in shares.items():
        c = canonical_language(code) or code
        cols = model.codes == c
        if not cols.any():
            raise ValueError(f"{code!r} is not a language custdyn detects")
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"the share of {code!r} must be a number >= 0, not {value!r}")
        share[cols] += v
    share[model.no_language] = 0.0
    return _tempered(share / share.sum())


def _tempered(share: np.ndarray) -> np.ndarray:
    """Shares as weights: ``(share x live languages) ** _PRIOR_POWER``."""
    return ((share * (share > 0).sum()) ** _PRIOR_POWER).astype(np.float32)


def _em_shares(
    texts: Sequence[str | None], allowed: np.ndarray | None = None, *, seed: int = 0
) -> np.ndarray:
    """One share per language column: how common each language is in ``texts`` (all zeros
    when no text has letters).

    The shares are estimated by expectation-maximisation over the texts' language
    probabilities, as Saerens, Latinne and Decaestecker (2002, "Adjusting the outputs of a
    classifier to new a priori probabilities: a simple procedure") re-estimate class priors on
    new data: each text's probabilities are reweighted by the current shares (tempered, as
    they will be used), the shares are the mean of the reweighted probabilities, until they
    settle.
    """
    model = _batch_model()
    k = len(model.classes)
    cleaned = [_URL.sub(" ", t) for t in texts if t]
    cleaned = [t for t in cleaned if _HAS_LETTER.search(t)]
    if not cleaned:
        return np.zeros(k, np.float64)
    if len(cleaned) > _PRIOR_SAMPLE:
        pick = np.sort(np.random.default_rng(seed).choice(len(cleaned), _PRIOR_SAMPLE, replace=False))
        cleaned = [cleaned[i] for i in pick]
    probs = np.vstack([model.probabilities(cleaned[i : i + _CHUNK], allowed)
                       for i in range(0, len(cleaned), _CHUNK)]).astype(np.float64)  # fmt: skip
    live = probs.sum(axis=0) > 0
    share = np.where(live, 1.0 / live.sum(), 0.0)
    for _ in range(100):
        w = (share * live.sum()) ** _PRIOR_POWER
        q = probs * w
        q /= np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
        new = np.where(live, q.mean(axis=0) + _PRIOR_FLOOR, 0.0)
        new /= new.sum()
        done = float(np.abs(new - share).max()) < 1e-6
        share = new
        if done:
            break
    return share


def _detect_batch(
    texts: list[str], allowed: np.ndarray | None = None, weights: np.ndarray | None = None
) -> tuple[list[str | None], list[float]]:
    """:func:`detect` for non-empty texts, vectorised over the batch; ``allowed``: a mask of
    the model's columns (:meth:`_BatchModel.allowed`); ``weights``: a collection's prior
    (:func:`collection_weights`).

    Cleaning: URLs, @names and "#" become spaces; a text without letters has no language; one
    whose words are at least a fifth Tagalog markers is Tagalog (Taglish).
    """
    model = _batch_model()
    joined = _SEP.join(texts)
    if len(texts) <= _FEW or joined.count(_SEP) != len(texts) - 1:
        # A few texts (or texts holding the separator): each on its own, with plain Python.
        cleaned = [_URL.sub(" ", t) for t in texts]
        letters = np.array([_HAS_LETTER.search(c) is not None for c in cleaned], bool)
        shares = np.array([_taglish_share(c) for c in cleaned], np.float64)
        best, prob = model.classify_few(cleaned, allowed, weights)
    else:
        # The separator is whitespace and no word character: no URL, @name or word crosses it.
        cleaned_joined = _URL.sub(" ", joined)
        cleaned = cleaned_joined.split(_SEP)
        letters, shares = _letters_and_shares(cleaned_joined, len(texts))
        best, prob = model.classify(cleaned, allowed, weights)
    code = model.codes[best]
    taglish = (code != "tl") & (shares >= 0.2)
    if allowed is not None and not allowed[model.codes == "tl"].any():
        taglish[:] = False
    conf = np.where(taglish, np.clip(shares * 2.5, 0.5, 0.99), prob.astype(np.float64))
    code[taglish] = "tl"
    none = ~letters
    code[none] = None
    conf[none] = 0.0
    return code.tolist(), conf.tolist()


def _codepoints(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le", errors="surrogatepass"), np.uint32)


def _is_letter(cp: np.ndarray) -> np.ndarray:
    """Per code point: whether ``[^\\W\\d_]`` matches it (alphanumeric and not a decimal digit)."""
    global _LETTER_BMP
    if _LETTER_BMP is None:
        _LETTER_BMP = np.array(
            [chr(c).isalnum() and not chr(c).isdecimal() for c in range(0x10000)], bool
        )
    out = _LETTER_BMP[np.minimum(cp, 0xFFFF)]
    astral = cp > 0xFFFF
    if astral.any():
        u, inv = np.unique(cp[astral], return_inverse=True)
        look = np.array([chr(c).isalnum() and not chr(c).isdecimal() for c in u.tolist()], bool)
        out[astral] = look[inv]
    return out


def _letters_and_shares(joined: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per text of ``joined`` (texts separated by :data:`_SEP`): has it a letter; its Taglish share.

    The share is :func:`_taglish_share`: of the words (letter runs) of the lower-cased text,
    the fraction that are Tagalog markers (0 when every marker found is a shared one).
    """
    sep = ord(_SEP) if n > 1 else -1  # one text: nothing separates
    cp = _codepoints(joined)
    seps = np.flatnonzero(cp == sep)
    starts = np.empty(n, np.int64)
    starts[0], starts[1:] = 0, seps + 1
    # Every span is non-empty (a cleaned text never is), as ``reduceat`` needs.
    letters = np.logical_or.reduceat(_is_letter(cp), starts)
    low = _codepoints(joined.lower())
    low_seps = np.flatnonzero(low == sep)
    pos = np.flatnonzero(_is_letter(low))
    if not len(pos):
        return letters, np.zeros(n, np.float64)
    brk = np.flatnonzero(np.diff(pos) > 1) + 1
    first = np.concatenate([[0], brk])
    start = pos[first]
    length = np.diff(np.append(first, len(pos)))
    word_doc = np.searchsorted(low_seps, start)
    cand = np.flatnonzero(length <= _MAX_MARKER)
    c_start, c_len = start[cand], length[cand]
    key = np.zeros(len(cand), np.int64)
    ascii_only = np.ones(len(cand), bool)
    last = len(low) - 1
    for w in range(_MAX_MARKER):
        ch = low[np.minimum(c_start + w, last)].astype(np.int64)
        ch[c_len <= w] = 0
        ascii_only &= ch < 128
        key |= ch << (7 * w)
    at = np.minimum(np.searchsorted(_MARKER_KEYS, key), len(_MARKER_KEYS) - 1)
    marker = (_MARKER_KEYS[at] == key) & ascii_only
    at = np.minimum(np.searchsorted(_SHARED_KEYS, key), len(_SHARED_KEYS) - 1)
    own = marker & (_SHARED_KEYS[at] != key)
    n_words = np.bincount(word_doc, minlength=n)
    n_mark = np.bincount(word_doc[cand[marker]], minlength=n)
    n_own = np.bincount(word_doc[cand[own]], minlength=n)
    share = np.zeros(n, np.float64)
    np.divide(n_mark, n_words, out=share, where=(n_words > 0) & (n_own > 0))
    return letters, share


def _marker_key(w: str) -> int:
    """A word of up to 9 ASCII letters as one int64 (7 bits per letter)."""
    return sum(ord(ch) << (7 * i) for i, ch in enumerate(w))


_MAX_MARKER = max(len(w) for w in _TAGALOG_MARKERS)
_MARKER_KEYS = np.array(sorted(_marker_key(w) for w in _TAGALOG_MARKERS), np.int64)
_SHARED_KEYS = np.array(sorted(_marker_key(w) for w in _SHARED_MARKERS), np.int64)
_LETTER_BMP: np.ndarray | None = None


def _batch_model() -> _BatchModel:
    global _BATCH
    with _LOCK:
        if _BATCH is None:
            _BATCH = _BatchModel(**_load_model())
        return _BATCH


def _load_model() -> dict[str, Any]:
    """py3langid's shipped model (LZMA-compressed npz) as the arrays :class:`_BatchModel` uses.

    The naive Bayes table is stored as float16 and widened to float32 a block of rows at a
    time, so the float16 copy is never held whole beside the float32 one.
    """
    import lzma
    import shutil
    import tempfile

    from py3langid.langid import MODEL_DIR, MODEL_FILE

    with tempfile.TemporaryFile(suffix=".npz") as tmp:
        with lzma.open(MODEL_DIR / MODEL_FILE) as src:
            shutil.copyfileobj(src, tmp, length=1 << 20)
        tmp.seek(0)
        with np.load(tmp, allow_pickle=False) as data:
            missing = {"ptc", "pc", "classes", "nextmove", "nextmove_row", "out_feat"}
            missing -= set(data.files)
            if missing:
                raise RuntimeError(
                    f"py3langid's model lacks {sorted(missing)}: custdyn reads the layout "
                    "of py3langid 0.4 (pip install 'py3langid>=0.4,<0.5')"
                )
            with data.zip.open("ptc.npy") as f:
                version = np.lib.format.read_magic(f)
                header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = header(f)
                if fortran or len(shape) != 2:
                    raise ValueError("unexpected py3langid model layout")
                ptc = np.empty(shape, np.float32)
                step = 8192
                for lo in range(0, shape[0], step):
                    rows = min(step, shape[0] - lo)
                    block = f.read(rows * shape[1] * dtype.itemsize)
                    ptc[lo : lo + rows] = np.frombuffer(block, dtype).reshape(rows, shape[1])
            return {
                "ptc": ptc,
                "pc": np.asarray(data["pc"], np.float32),
                "classes": [str(c) for c in data["classes"].tolist()],
                "nextmove": np.ascontiguousarray(data["nextmove"]).ravel(),
                "row": np.asarray(data["nextmove_row"]),
                "output": np.asarray(data["out_feat"], np.int32),
            }


def _encode(text: str) -> bytes:
    """py3langid's encoding: all-upper-case text lowered, NFC, UTF-8."""
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


class _BatchModel:
    """py3langid's model as numpy arrays, classifying a batch of texts at once."""

    def __init__(
        self,
        ptc: np.ndarray,
        pc: np.ndarray,
        classes: list[str],
        nextmove: np.ndarray,
        row: np.ndarray,
        output: np.ndarray,
    ) -> None:
        #: Naive Bayes: log P(feature | class) (features, classes) and log prior per class.
        self.ptc, self.pc = ptc, pc
        self.classes = classes
        #: The automaton: state s on byte b moves to ``nextmove[rowbase[s] + b]`` (rows of 256
        #: shared between states) and emits feature ``output[s]`` (-1: none).
        self.nextmove = nextmove
        self.rowbase = np.asarray(row, np.int64) << 8
        self.output = output
        #: Each column's reported code (see :data:`ALIASES`).
        self.codes = np.array([ALIASES.get(c, c) for c in classes], dtype=object)
        #: columns that name no language (``zxx``): a collection's prior never weighs them
        self.no_language = np.array([c is None for c in self.codes.tolist()], bool)
        # A label may own several columns (a language in two scripts): the first holds the sum.
        first: dict[str, int] = {}
        self.alias_pairs: list[tuple[int, int]] = []
        for i, c in enumerate(classes):
            if c in first:
                self.alias_pairs.append((first[c], i))
            else:
                first[c] = i
        self._depth: int | None = None

    @property
    def depth(self) -> int:
        """The longest byte string one automaton state stands for (its distance from the start).

        The state after any input depends only on its last ``depth`` bytes, so a long text can
        be walked in overlapping pieces.
        """
        if self._depth is None:
            rows = self.nextmove.reshape(-1, 256)
            row_of = (self.rowbase >> 8).astype(np.int64)
            dist = np.full(len(row_of), -1, np.int64)
            dist[0] = 0
            frontier = np.zeros(1, np.int64)
            level = 0
            while frontier.size:
                level += 1
                used = np.zeros(len(rows), bool)
                used[row_of[frontier]] = True
                reach = np.zeros(len(row_of), bool)
                for part in np.array_split(np.flatnonzero(used), max(1, used.sum() // 4096)):
                    reach[rows[part].ravel()] = True
                nxt = np.flatnonzero(reach & (dist < 0))
                dist[nxt] = level
                frontier = nxt
            self._depth = int(dist.max())
        return self._depth

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """py3langid's bytes of every text (see :func:`_encode`), joined: ``(buf, starts, lens)``.

        NFC never composes across the separator (a starter without compositions), so
        normalising the joined batch equals normalising each text.
        """
        parts = [t.lower() if t.isupper() else t for t in texts]
        joined = unicodedata.normalize("NFC", _SEP.join(parts))
        buf = np.frombuffer(joined.encode("utf8", errors="surrogatepass"), np.uint8)
        ends = np.flatnonzero(buf == ord(_SEP)) if len(texts) > 1 else np.zeros(0, np.int64)
        if len(ends) != len(texts) - 1:  # a text holds the separator: encode one at a time
            data = [_encode(t) for t in texts]
            buf = np.frombuffer(b"".join(data), np.uint8)
            lens = np.fromiter((len(d) for d in data), np.int64, len(data))
            starts = np.zeros(len(texts), np.int64)
            np.cumsum(lens[:-1], out=starts[1:])
            return buf, starts, lens
        starts = np.concatenate([[0], ends + 1]).astype(np.int64)
        stops = np.concatenate([ends, [len(buf)]]).astype(np.int64)
        return buf, starts, stops - starts

    def counts(self, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> Any:
        """CSR (texts, features) of feature counts (what py3langid's ``visit_counts`` finds).

        Text ``i`` is ``buf[starts[i] : starts[i] + lens[i]]``. All texts walk the automaton
        together, one byte position per step; a text longer than :data:`_PIECE` bytes is cut
        into pieces that each start :attr:`depth` bytes early, so that the state is exact
        where the piece's own bytes begin.
        """
        from scipy import sparse

        n = len(lens)
        n_feat = self.ptc.shape[0]
        # Pieces: (text, first byte, length, bytes walked before counting starts).
        p_text, p_start, p_len = np.arange(n), starts, lens
        p_skip = np.zeros(n, np.int64)
        long = lens > _PIECE
        if long.any():
            d = self.depth
            pt, ps, pl, pk = [p_text[~long]], [starts[~long]], [lens[~long]], [p_skip[~long]]
            for i in np.flatnonzero(long):
                s = np.arange(0, lens[i], _PIECE)
                first = np.maximum(s - d, 0)
                pt.append(np.full(len(s), i))
                ps.append(starts[i] + first)
                pl.append(np.minimum(s + _PIECE, lens[i]) - first)
                pk.append(s - first)
            p_text, p_start, p_len, p_skip = (np.concatenate(a) for a in (pt, ps, pl, pk))
        order = np.argsort(-p_len, kind="stable")
        p_text, p_start, p_len, p_skip = p_text[order], p_start[order], p_len[order], p_skip[order]
        n_max = int(p_len[0]) if len(p_len) else 0
        # Position-major layout: step j holds byte j of the pieces longer than j (a prefix,
        # since pieces are sorted longest first), contiguously.
        active = np.searchsorted(-p_len, -np.arange(n_max), side="left")
        off = np.zeros(n_max + 1, np.int64)
        np.cumsum(active, out=off[1:])
        total = int(off[-1])
        # 32-bit positions: a batch holds at most _CHUNK_CHARS characters (< 2**31 bytes).
        step = np.repeat(np.arange(n_max, dtype=np.int32), active)
        piece = np.arange(total, dtype=np.int32)
        piece -= np.repeat(off[:-1].astype(np.int32), active)
        src = p_start.astype(np.int32)[piece]
        src += step
        seq = buf[src]
        del src
        states = np.empty(total, self.nextmove.dtype)
        state = np.zeros(len(p_len), self.nextmove.dtype)
        nm, rowbase = self.nextmove, self.rowbase
        for j in range(n_max):
            a, b = off[j], off[j + 1]
            state = nm[rowbase[state[: b - a]] + seq[a:b]]
            states[a:b] = state
        del seq
        feat = self.output[states]
        del states
        keep = feat >= 0
        if long.any():
            keep &= step >= p_skip[piece]
        del step
        # (text, feature) as one sortable key; 32 bits suffice for a batch of _CHUNK texts.
        kt = np.uint32 if n * n_feat < 2**32 else np.uint64
        key: np.ndarray = p_text.astype(kt)[piece[keep]]
        del piece
        key *= kt(n_feat)
        key += feat[keep].astype(kt)
        del feat, keep
        key.sort()
        new = np.ones(len(key), bool)
        new[1:] = key[1:] != key[:-1]
        at = np.flatnonzero(new)
        counts = np.diff(np.append(at, len(key))).astype(np.float32)
        rows, cols = np.divmod(key[at], kt(n_feat))
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        cols = cols.astype(np.int32)
        return sparse.csr_matrix((counts, cols, indptr), shape=(n, n_feat))

    def allowed(self, among: Collection[str]) -> np.ndarray:
        """Mask of the columns whose reported code is one of ``among`` (codes or names): a
        text with letters then always gets one of them; an unknown language is refused,
        naming the known ones."""
        if isinstance(among, str):
            among = [among]
        wanted: set[str] = set()
        known = {str(c) for c in self.codes.tolist() if c is not None}
        for g in among:
            code = canonical_language(g)
            if code not in known:
                raise ValueError(
                    f"language {g!r} is not one the language identifier knows; known: "
                    + ", ".join(sorted(known))
                )
            wanted.add(code)
        if not wanted:
            raise ValueError("no languages given to choose among")
        return np.array([c in wanted for c in self.codes.tolist()], bool)

    def classify(
        self, texts: list[str], allowed: np.ndarray | None = None, weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best class index and its probability for each text, as py3langid's ``classify``
        (among the ``allowed`` columns only, when given; ``weights``: see :meth:`_decide`)."""
        scores, lens = self._scores(texts)
        return self._decide(scores, lens, allowed, weights)

    def probabilities(self, texts: list[str], allowed: np.ndarray | None = None) -> np.ndarray:
        """The probability of every class (texts, classes), as :meth:`classify` weighs them."""
        scores, lens = self._scores(texts)
        return self._proba(scores, lens, allowed)

    def _scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """py3langid's class scores of ``texts`` and their lengths in bytes."""
        buf, starts, lens = self.encode(texts)
        mat = self.counts(buf, starts, lens)
        np.log1p(mat.data, out=mat.data)
        scores = np.asarray(mat @ self.ptc, np.float32) + self.pc
        scores[np.diff(mat.indptr) == 0] = 0.0  # no features: py3langid scores all classes 0
        return scores, lens

    def classify_few(
        self, texts: list[str], allowed: np.ndarray | None = None, weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`classify`, walking the automaton in Python one text at a time."""
        nm = self.nextmove.data
        rowbase = self.rowbase.data
        output = self.output.data
        scores = np.zeros((len(texts), len(self.classes)), np.float32)
        lens = np.zeros(len(texts), np.int64)
        for k, text in enumerate(texts):
            data = _encode(text)
            lens[k] = len(data)
            state, found = 0, []
            for byte in data:
                state = nm[rowbase[state] + byte]
                f = output[state]
                if f >= 0:
                    found.append(f)
            if found:
                feat, count = np.unique(np.array(found, np.int64), return_counts=True)
                scores[k] = np.log1p(count.astype(np.float32)) @ self.ptc[feat] + self.pc
        return self._decide(scores, lens, allowed, weights)

    def _decide(
        self,
        scores: np.ndarray,
        lens: np.ndarray,
        allowed: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best class and its probability: :meth:`_proba`, times ``weights`` (one per column,
        a prior of the texts' collection) when given. The prior only chooses among
        languages: a text whose likeliest class is no language (``zxx``) stays so."""
        scores = self._proba(scores, lens, allowed)
        if weights is not None:
            plain = scores.argmax(axis=1)
            scores *= np.where(self.no_language, 0.0, weights).astype(np.float32)
            scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-30)
            best = scores.argmax(axis=1)
            none = self.no_language[plain]
            best[none] = plain[none]
            prob = scores[np.arange(len(scores)), best]
            prob[none] = 0.0
            return best, prob
        best = scores.argmax(axis=1)
        return best, scores[np.arange(len(scores)), best]

    def _proba(
        self, scores: np.ndarray, lens: np.ndarray, allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """Temperature sqrt(bytes), softmax (over the allowed columns), script columns folded."""
        scores *= (1.0 / np.sqrt(np.maximum(lens, 1))).astype(np.float32)[:, None]
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1, keepdims=True)
        for i, j in self.alias_pairs:
            scores[:, i] += scores[:, j]
            scores[:, j] = 0.0
        return scores
