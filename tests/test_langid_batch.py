"""Batched language identification gives py3langid's answers, text by text."""

from __future__ import annotations

import functools
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custdyn.demo.texts import sample_messages
from custdyn.text import _langid as L

DEMO = sample_messages(250, seed=5)
EXTRA = [
    "La entrega llegó tarde y nadie respondió a mis correos.",
    "Die Lieferung kam zu spät und niemand hat geantwortet.",
    "Доставка опоздала, и никто не ответил на мои письма.",
    "配送が遅れ、誰もメールに返信しませんでした。",
    "التوصيل تأخر ولم يرد أحد على رسائلي",
    "ΠΟΛΥ ΚΑΛΗ ΕΞΥΠΗΡΕΤΗΣΗ ΣΑΣ ΕΥΧΑΡΙΣΤΩ",
    "THE DELIVERY WAS LATE AND NOBODY ANSWERED",
    "Cafe\u0301 com leite, por favor! https://example.com/x?a=1 @lumen #ajuda",
    "Ang ganda ng serbisyo, salamat po! 😀",
    "12345 !!!",
    "   ",
    "x",
    "e\u0301",
    "\u0301abc",
]


@functools.cache
def _py3langid():  # type: ignore[no-untyped-def]
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _detect_one(text: str | None) -> tuple[str | None, float]:
    """The rule, one text at a time: py3langid's ``classify`` on the cleaned text."""
    if not text:
        return None, 0.0
    cleaned = L._URL.sub(" ", text)
    if not L._HAS_LETTER.search(cleaned):
        return None, 0.0
    lang, prob = _py3langid().classify(cleaned)
    code = L.ALIASES.get(lang, lang)
    share = L._taglish_share(cleaned)
    if code != "tl" and share >= 0.2:
        return "tl", float(max(min(share * 2.5, 0.99), 0.5))
    return code, float(prob)


def _reference(texts: list[str | None]) -> list[tuple[str | None, float, float]]:
    """Per text: py3langid's answer one text at a time, and its top-two probability gap."""
    out = []
    for t in texts:
        lang, conf = _detect_one(t)
        gap = 1.0
        if t and lang is not None:
            p = np.sort(_py3langid()._decide(L._URL.sub(" ", t)))[::-1]
            gap = float(p[0] - p[1])
        out.append((lang, conf, gap))
    return out


def _assert_same(texts: list[str | None], tol: float = 1e-5) -> None:
    langs, confs = L.detect_many(texts)
    assert len(langs) == len(confs) == len(texts)
    singles = [L.detect(t) for t in texts]
    for t, lang, conf, (ref_lang, ref_conf, gap), one in zip(
        texts, langs, confs, _reference(texts), singles, strict=True
    ):
        # One text alone takes the plain-Python walk; the batch, the vectorised one.
        if gap >= 1e-4 or one[0] == lang:
            assert one[0] == lang and one[1] == pytest.approx(conf, abs=tol)
        if gap < 1e-4 and lang != ref_lang:  # a near tie: float rounding may pick either
            continue
        assert lang == ref_lang, t
        assert conf == pytest.approx(ref_conf, abs=tol), t


def test_demo_and_world_texts_match_per_text_detection():
    texts: list[str | None] = [*DEMO, *EXTRA, None, ""]
    _assert_same(texts)
    langs, _ = L.detect_many(DEMO)
    assert set(langs) >= {"en", "pt", "no", "tl"}


def test_long_texts_walked_in_pieces_match():
    texts = [" ".join(DEMO[i : i + 30]) for i in range(0, 240, 30)]
    assert all(len(t.encode()) > 3 * L._PIECE for t in texts)
    # Long texts sum thousands of float32 terms, in a different order than py3langid does.
    _assert_same([*texts, *DEMO[:20]], tol=1e-3)


def _visit_counts(text: str) -> Counter:
    from py3langid.langid import visit_counts

    ident = _py3langid()
    found = visit_counts(ident.tk_nextmove, ident._rowbase, ident.tk_output, L._encode(text))
    return found or Counter()


@pytest.mark.parametrize("piece", [3, 7, 64, 512])
def test_feature_counts_equal_py3langid_walk(monkeypatch, piece):
    monkeypatch.setattr(L, "_PIECE", piece)
    texts = [*DEMO[:40], *EXTRA, " ".join(DEMO[40:60])]
    model = L._batch_model()
    mat = model.counts(*model.encode(texts))
    for i, t in enumerate(texts):
        row = mat.getrow(i)
        got = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        assert got == {k: float(v) for k, v in _visit_counts(t).items()}, t


def test_automaton_depth_bounds_every_state():
    model = L._batch_model()
    d = model.depth
    assert 1 <= d <= 64
    # Reading ``d`` bytes from the start reaches the same state as reading the whole prefix.
    rng = np.random.default_rng(0)
    data = "".join(DEMO[:10]).encode()
    nm, rowbase = model.nextmove, model.rowbase
    state = 0
    for p in range(len(data)):
        state = int(nm[rowbase[state] + data[p]])
        if p >= d and rng.random() < 0.2:
            s = 0
            for b in data[p - d + 1 : p + 1]:
                s = int(nm[rowbase[s] + b])
            assert s == state


def test_letter_table_matches_the_regex():
    cps = np.arange(0x110000, dtype=np.uint32)
    got = L._is_letter(cps)
    want = np.fromiter(
        (L._HAS_LETTER.match(chr(c)) is not None for c in range(0x110000)), bool, 0x110000
    )
    assert np.array_equal(got, want)


WORDS = sorted(L._TAGALOG_MARKERS) + [
    "the", "delivery", "late", "NG", "Ang", "PO", "entrega", "på", "İstanbul", "ﬁne", "Σ",
    "καλά", "x2", "a_b", "co-op", "½", "١٢", "sobrangg", "MGA", "ninyo's",
]  # fmt: skip
PIECES = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from([" ", "  ", "\n", ", ", "! ", "#", "@user ", "https://x.io/a ", "www.y.z "]),
    st.text(max_size=6),
)
TEXTS = st.one_of(
    st.text(max_size=80),
    st.lists(PIECES, max_size=30).map("".join),
    st.lists(st.sampled_from(WORDS), max_size=25).map(" ".join),
    st.sampled_from(DEMO[:50] + EXTRA),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=12))
def test_taglish_shares_equal_per_text(texts):
    cleaned = [L._URL.sub(" ", t) or " " for t in texts]
    if any(L._SEP in t for t in cleaned):
        return
    letters, shares = L._letters_and_shares(L._SEP.join(cleaned), len(cleaned))
    for t, has, share in zip(cleaned, letters, shares, strict=True):
        assert bool(has) == bool(L._HAS_LETTER.search(t))
        assert share == L._taglish_share(t)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXTS), max_size=12))
def test_detect_many_equals_detect(texts):
    _assert_same(texts)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXTS), max_size=12))
def test_collection_weights_are_a_prior_and_keep_what_has_no_language(texts):
    w = L.collection_weights(texts)
    assert w.shape == (len(L._batch_model().classes),)
    assert np.all(np.isfinite(w)) and np.all(w >= 0) and w.max() > 0
    alone, _ = L.detect_many(texts)
    together, confs = L.detect_many(texts, collection=True)
    # a text without letters has no language either way; every other text gets one
    assert [g is None for g in together] == [g is None for g in alone]
    assert all(0.0 <= c <= 1.0 + 1e-6 for c in confs)


def test_collection_of_one_language_reads_every_line_in_it():
    lines = ["Leveransen kom for sent.", "Takk for hjelpen!", "Pakken var skadet.",
             "Jeg venter fortsatt på svar.", "Det holder ikke.", "Det stemmer nok."]  # fmt: skip
    assert L.detect_many(lines)[0].count("no") < len(lines)
    assert L.detect_many(lines, collection=True)[0] == ["no"] * len(lines)
    # the same prior, whatever the chunk size
    w = L.collection_weights(lines)
    a = L._detect_batch(lines, None, w)
    b = [L._detect_batch([t], None, w)[0][0] for t in lines]
    assert a[0] == b


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXTS), max_size=12))
def test_learnt_shares_are_a_distribution_and_weigh_as_the_collection_does(texts):
    shares = L.language_shares(texts)
    if not shares:  # no text with letters
        assert all(g is None for g in L.detect_many(texts)[0])
        return
    assert sum(shares.values()) == pytest.approx(1.0)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert all(v >= 1e-3 and L.canonical_language(g) == g for g, v in shares.items())
    # a collection's shares do not depend on the order of its texts
    again = L.language_shares(texts[::-1])
    assert again.keys() == shares.keys()
    assert all(abs(again[g] - v) < 1e-6 for g, v in shares.items())
    # kept and given back, the shares weigh each text as the collection's own prior does
    # (up to the languages under 0.1 % left out)
    together = L.detect_many(texts, collection=True)[0]
    kept = L.detect_many(texts, shares=shares)[0]
    assert [g is None for g in kept] == [g is None for g in together]
    assert sum(a != b for a, b in zip(kept, together, strict=True)) <= max(1, len(texts) // 10)


def test_shares_name_languages_and_numbers():
    assert L.shares_weights({"Norwegian": 0.9, "da": 0.1}).argmax() in np.flatnonzero(
        L._batch_model().codes == "no")
    with pytest.raises(ValueError, match="'elvish' is not a language"):
        L.shares_weights({"elvish": 1.0})
    for bad in (-0.5, float("nan"), "many", None):
        with pytest.raises(ValueError, match="share of 'no' must be a number >= 0"):
            L.shares_weights({"no": bad})
    assert np.array_equal(L.shares_weights({"no": np.float32(0.5)}), L.shares_weights({"no": 0.5}))
    with pytest.raises(ValueError, match="not both"):
        L.detect_many(["Hei"], collection=True, shares={"no": 1.0})


def test_chunks_and_separator_fall_back(monkeypatch):
    texts = [*DEMO[:30], "Oi\x1ftudo bem? A entrega atrasou.", None, *EXTRA]
    _assert_same(texts)
    monkeypatch.setattr(L, "_CHUNK", 4)
    monkeypatch.setattr(L, "_CHUNK_CHARS", 300)
    _assert_same(texts)


def test_plain_walk_equals_vectorised_walk():
    texts = [*DEMO[:60], *EXTRA, " ".join(DEMO[60:90])]
    model = L._batch_model()
    a_best, a_prob = model.classify(texts)
    b_best, b_prob = model.classify_few(texts)
    assert np.array_equal(a_best, b_best)
    np.testing.assert_allclose(a_prob, b_prob, atol=1e-4)


def test_encode_matches_py3langid():
    from py3langid.langid import LanguageIdentifier

    texts = [*EXTRA, *DEMO[:20], "ÅNGSTRÖM", "ǅ", "ﬃ"]
    model = L._batch_model()
    buf, starts, lens = model.encode(texts)
    for i, t in enumerate(texts):
        got = bytes(buf[starts[i] : starts[i] + lens[i]])
        assert got == LanguageIdentifier._encode(t)


def test_detect_many_is_much_faster_than_one_at_a_time():
    import time

    texts = sample_messages(2000, seed=11)
    L.detect_many(texts[:5])
    best_batch = best_each = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        L.detect_many(texts)
        best_batch = min(best_batch, time.process_time() - t0)
        t0 = time.process_time()
        for t in texts:
            L.detect(t)
        best_each = min(best_each, time.process_time() - t0)
    assert best_batch * 3 < best_each


def test_url_pattern_never_crosses_the_separator():
    # The batch cleans all texts with one substitution over the joined string.
    texts = ["see https://a.b/c", "#tag and @name", "www.x.y", "plain"]
    joined = L._URL.sub(" ", L._SEP.join(texts)).split(L._SEP)
    assert joined == [L._URL.sub(" ", t) for t in texts]
    assert re.fullmatch(r"\s", L._SEP)
