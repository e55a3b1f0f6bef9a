"""Hashed byte n-gram features for the bulk engine, vectorised over a whole batch with numpy.

Each text is lower-cased, wrapped in boundary markers and read as UTF-8 bytes; every byte
n-gram (n in :data:`NGRAMS`) that does not cross into a neighbouring text is hashed into one of
``2**bits`` buckets. The same code builds the training matrix and scores at run time, so the
two can never drift apart.
"""

from __future__ import annotations

import numpy as np

NGRAMS = (1, 2, 3, 4, 5, 6)
#: A longer text is read as its first and last ``MAX_BYTES // 2`` bytes (a long message states
#: its matter first and its verdict last).
MAX_BYTES = 4000
#: What models trained before (``long_texts=False``) read: the first this many bytes.
START_BYTES = 1000
_MULT = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(1099511628211)


def _ends(data: bytes, long_texts: bool) -> bytes:
    if not long_texts:
        return data[:START_BYTES]
    if len(data) <= MAX_BYTES:
        return data
    half = MAX_BYTES // 2
    return data[:half] + b" " + data[len(data) - half :]


def ngram_buckets(
    texts: list[str], bits: int, *, long_texts: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids of every n-gram and, per text, the offset of its first id.

    Returns ``(buckets, offsets)``: ``buckets`` int64 of shape (m,), grouped by text (within a
    text, by position, then by n); ``offsets`` int64 of shape (len(texts) + 1,), text i owns
    ``buckets[offsets[i]:offsets[i+1]]``. ``long_texts=False``: a text's first
    :data:`START_BYTES` bytes only, as models trained before read it.
    """
    if not texts:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    parts = [b"\x02" + _ends((t or "").lower().encode("utf-8", "replace"), long_texts) + b"\x03" for t in texts]
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    data = np.frombuffer(b"".join(parts), np.uint8)
    total = data.shape[0]
    shift = np.uint64(64 - bits)
    sizes = np.array(NGRAMS, np.int64)
    column = {n: i for i, n in enumerate(NGRAMS)}
    # One row per byte position, one column per n: the n-gram that starts there.
    grid = np.empty((total, len(NGRAMS)), np.int64)
    h = np.zeros(total, np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, max(NGRAMS) + 1):
            m = total - n + 1
            if m <= 0:
                break
            h = h[:m] * _PRIME + data[n - 1 : n - 1 + m] + np.uint64(n)
            if n in column:
                grid[:m, column[n]] = (h * _MULT) >> shift
    # An n-gram belongs to its text when the text has n bytes left from where it starts;
    # the row-major mask keeps the ids grouped by text.
    left = np.repeat(np.cumsum(lens), lens) - np.arange(total)
    buckets = grid[left[:, None] >= sizes]
    counts = np.maximum(lens[:, None] - sizes + 1, 0).sum(axis=1)
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return buckets, offsets


def _count_matrix(texts: list[str], bits: int):  # type: ignore[no-untyped-def]
    """CSR (len(texts), 2**bits) of n-gram counts, duplicates not yet summed; and the counts."""
    from scipy import sparse

    buckets, offsets = ngram_buckets(texts, bits)
    ones = np.ones(len(buckets), np.float32)
    mat = sparse.csr_matrix((ones, buckets, offsets), shape=(len(texts), 2**bits))
    return mat, np.diff(offsets)


def sparse_features(texts: list[str], bits: int, *, long_texts: bool = True):  # type: ignore[no-untyped-def]
    """A scipy CSR matrix (len(texts), 2**bits): n-gram counts scaled by 1/sqrt(n-grams)."""
    from scipy import sparse

    buckets, offsets = ngram_buckets(texts, bits, long_texts=long_texts)
    counts = np.diff(offsets)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    vals = np.repeat(scale, counts).astype(np.float32)
    mat = sparse.csr_matrix((vals, buckets, offsets), shape=(len(texts), 2**bits))
    mat.sum_duplicates()
    return mat


def linear_scores(texts: list[str], table: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``features @ table + bias`` (float32, (len(texts), k)) with one sparse product.

    Each text's n-gram rows of ``table`` are summed, then scaled by 1/sqrt(its n-grams): the
    same as :func:`sparse_features` ``@ table + bias``.
    """
    bits = int(np.log2(table.shape[0]))
    n = len(texts)
    if not n:
        return np.zeros((0, table.shape[1]), np.float32) + bias.astype(np.float32)
    mat, counts = _count_matrix(texts, bits)
    out = np.asarray(mat @ np.asarray(table, np.float32), np.float32)
    scale = (1.0 / np.sqrt(np.maximum(counts, 1))).astype(np.float32)
    out *= scale[:, None]
    out += bias.astype(np.float32)
    return out
