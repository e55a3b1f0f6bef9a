"""Hashed byte n-grams: the one-product scorer equals the per-n reference, and is faster."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custdyn.text import _hashing as H


def _reference_groups(texts: list[str], bits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per n: (bucket ids, their text), hashing each n-gram size in its own pass."""
    half = H.MAX_BYTES // 2
    raw = [(t or "").lower().encode("utf-8", "replace") for t in texts]
    parts = [b"\x02" + (r if len(r) <= H.MAX_BYTES else r[:half] + b" " + r[-half:]) + b"\x03"
             for r in raw]  # fmt: skip
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    data = np.frombuffer(b"".join(parts), np.uint8).astype(np.uint64)
    doc = np.repeat(np.arange(len(parts)), lens)
    total = data.shape[0]
    shift = np.uint64(64 - bits)
    out = []
    h = np.zeros(total, np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, max(H.NGRAMS) + 1):
            m = total - n + 1
            if m <= 0:
                break
            h = h[:m] * H._PRIME + data[n - 1 : n - 1 + m] + np.uint64(n)
            if n not in H.NGRAMS:
                continue
            ok = doc[:m] == doc[n - 1 : n - 1 + m]
            out.append((((h[ok] * H._MULT) >> shift).astype(np.int64), doc[:m][ok]))
    return out


def _reference_scores(texts: list[str], table: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Per n-gram size: gather the table rows and sum each text's with ``reduceat``.

    In float32 (the previous scorer, unchanged) or, given a float64 table, in float64.
    """
    bits = int(np.log2(table.shape[0]))
    n = len(texts)
    dt = table.dtype
    out = np.zeros((n, table.shape[1]), dt)
    counts = np.zeros(n, np.int64)
    if not n:
        return out + bias.astype(dt)
    for buckets, doc in _reference_groups(texts, bits):
        c = np.bincount(doc, minlength=n)
        counts += c
        have = c > 0
        if not have.any():
            continue
        starts = np.zeros(n, np.int64)
        np.cumsum(c[:-1], out=starts[1:])
        out[have] += np.add.reduceat(table[buckets], starts[have], axis=0, dtype=dt)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    return out * scale[:, None].astype(dt) + bias.astype(dt)


TEXT = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="abcç ã😀\n", min_size=2200, max_size=3000),  # about MAX_BYTES
    st.sampled_from(["", "x", "Olá, tudo bem? 😀", "ANG GANDA", "Fantastisk service!"]),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(TEXT, max_size=10), st.integers(6, 16), st.integers(0, 2**31))
def test_buckets_and_scores_equal_the_reference(texts, bits, seed):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(2**bits, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    got = H.linear_scores(texts, table, bias)
    want = _reference_scores(texts, table, bias)
    assert got.dtype == np.float32 and got.shape == (len(texts), 5)
    # Both add float32 rows one at a time, in different orders. Against the exact sum each is
    # within the textbook bound for such a sum: (terms * eps) * sum of |terms|, then scaled.
    exact = _reference_scores(texts, table.astype(np.float64), bias.astype(np.float64))
    buckets, offsets = H.ngram_buckets(texts, bits)
    count = np.diff(offsets)
    magnitude = np.add.reduceat(np.abs(table[buckets]).astype(np.float64), offsets[:-1], axis=0)
    magnitude[count == 0] = 0.0
    eps = float(np.finfo(np.float32).eps)
    bound = (count * eps / np.sqrt(np.maximum(count, 1)))[:, None] * magnitude + 1e-5
    assert (np.abs(got - exact) <= bound).all()
    # Texts of ordinary length agree with the previous scorer to float32 rounding.
    short = [i for i, t in enumerate(texts) if len(t.encode()) < 200]
    np.testing.assert_allclose(got[short], want[short], rtol=1e-5, atol=1e-5)

    ref = _reference_groups(texts, bits)
    for i in range(len(texts)):
        mine = np.sort(buckets[offsets[i] : offsets[i + 1]])
        theirs = np.sort(np.concatenate([b[d == i] for b, d in ref]))
        assert np.array_equal(mine, theirs)


def test_sparse_features_unchanged(rng):
    from scipy import sparse

    texts = ["Olá, tudo bem? 😀", "", "x", "Fantastisk service!", "ang ganda ng ang"] * 3
    mat = H.sparse_features(texts, 12)
    ref = _reference_groups(texts, 12)
    doc = np.concatenate([d for _, d in ref])
    col = np.concatenate([b for b, _ in ref])
    counts = np.bincount(doc, minlength=len(texts))
    vals = (1.0 / np.sqrt(np.maximum(counts, 1)))[doc].astype(np.float32)
    want = sparse.csr_matrix((vals, (doc, col)), shape=mat.shape)
    assert (abs(mat - want) > 1e-7).nnz == 0
    assert mat.has_canonical_format


@pytest.mark.parametrize("bits", [12, 19])
def test_linear_scores_faster_than_per_n_reference(bits, rng):
    words = ["entrega", "atrasou", "delivery", "late", "ang", "ganda", "leveransen", "😀", "!"]
    texts = [" ".join(rng.choice(words, size=rng.integers(5, 40))) for _ in range(2000)]
    table = rng.normal(size=(2**bits, 11)).astype(np.float32)
    bias = np.zeros(11, np.float32)
    np.testing.assert_allclose(
        H.linear_scores(texts, table, bias),
        _reference_scores(texts, table, bias),
        rtol=1e-5,
        atol=1e-5,
    )
    best_new = best_ref = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        H.linear_scores(texts, table, bias)
        best_new = min(best_new, time.process_time() - t0)
        t0 = time.process_time()
        _reference_scores(texts, table, bias)
        best_ref = min(best_ref, time.process_time() - t0)
    assert best_new < best_ref
