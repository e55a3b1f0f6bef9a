"""Hashed byte n-gram features for the bulk engine, vectorised over a whole batch with numpy.

Each text is lower-cased, wrapped in boundary markers and read as UTF-8 bytes; every byte
n-gram (n in :data:`NGRAMS`) that does not cross into a neighbouring text is hashed into one of
``2**bits`` buckets. The same code builds the training matrix and scores at run time, so the
two can never drift apart.
"""

from __future__ import annotations

import numpy as np

NGRAMS = (1, 2, 3, 4, 5, 6)
MAX_BYTES = 1000
_MULT = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(1099511628211)


def _ngram_groups(texts: list[str], bits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per n-gram size: (bucket ids in text order, the text each belongs to)."""
    parts = [
        b"\x02" + (t or "").lower().encode("utf-8", "replace")[:MAX_BYTES] + b"\x03" for t in texts
    ]
    lens = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    data = np.frombuffer(b"".join(parts), np.uint8).astype(np.uint64)
    doc = np.repeat(np.arange(len(parts)), lens)
    total = data.shape[0]
    shift = np.uint64(64 - bits)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    h = np.zeros(total, np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, max(NGRAMS) + 1):
            m = total - n + 1
            if m <= 0:
                break
            h = h[:m] * _PRIME + data[n - 1 : n - 1 + m] + np.uint64(n)
            if n not in NGRAMS:
                continue
            ok = doc[:m] == doc[n - 1 : n - 1 + m]
            out.append((((h[ok] * _MULT) >> shift).astype(np.int64), doc[:m][ok]))
    return out


def ngram_buckets(texts: list[str], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids of every n-gram and, per text, the offset of its first id.

    Returns ``(buckets, offsets)``: ``buckets`` int64 of shape (m,), grouped by text;
    ``offsets`` int64 of shape (len(texts) + 1,), text i owns ``buckets[offsets[i]:offsets[i+1]]``.
    """
    if not texts:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    groups = _ngram_groups(texts, bits)
    bucket = np.concatenate([b for b, _ in groups])
    d = np.concatenate([doc for _, doc in groups])
    order = np.argsort(d, kind="stable")
    counts = np.bincount(d, minlength=len(texts))
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return bucket[order], offsets


def sparse_features(texts: list[str], bits: int):  # type: ignore[no-untyped-def]
    """A scipy CSR matrix (len(texts), 2**bits): n-gram counts scaled by 1/sqrt(n-grams)."""
    from scipy import sparse

    buckets, offsets = ngram_buckets(texts, bits)
    counts = np.diff(offsets)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    vals = np.repeat(scale, counts).astype(np.float32)
    mat = sparse.csr_matrix((vals, buckets, offsets), shape=(len(texts), 2**bits))
    mat.sum_duplicates()
    return mat


def linear_scores(texts: list[str], table: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``features @ table + bias`` without building the sparse matrix: (len(texts), k)."""
    bits = int(np.log2(table.shape[0]))
    n = len(texts)
    out = np.zeros((n, table.shape[1]), np.float32)
    counts = np.zeros(n, np.int64)
    if not n:
        return out + bias.astype(np.float32)
    for buckets, doc in _ngram_groups(texts, bits):
        # ``doc`` is sorted: sum each text's rows with one reduceat per n-gram size.
        c = np.bincount(doc, minlength=n)
        counts += c
        have = c > 0
        if not have.any():
            continue
        starts = np.zeros(n, np.int64)
        np.cumsum(c[:-1], out=starts[1:])
        out[have] += np.add.reduceat(table[buckets], starts[have], axis=0, dtype=np.float32)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    return out * scale[:, None].astype(np.float32) + bias.astype(np.float32)
