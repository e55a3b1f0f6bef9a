"""Offline language identification (py3langid, 97+ languages, ISO 639-1 codes where one exists)."""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

_LOCK = threading.Lock()
_IDENT: Any = None
_HAS_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_URL = re.compile(r"https?://\S+|www\.\S+|@\w+|#", re.UNICODE)

#: Codes folded together: Norwegian Nynorsk and Bokmål are reported as "no".
ALIASES = {"nb": "no", "nn": "no", "zxx": None}

#: Tagalog function words: code-switched Taglish is reported as Tagalog when these appear.
_TAGALOG_MARKERS = frozenset(
    "ang ng mga sa na ako ko mo siya niya namin natin kami tayo sila nila po opo hindi "
    "talaga naman lang yung yun kasi pero sobrang grabe ba nga pa din rin dito diyan "
    "wala may meron kayo ninyo natin pag kung para nang lahat sana ulit".split()
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _identifier() -> Any:
    global _IDENT
    with _LOCK:
        if _IDENT is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _IDENT = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        return _IDENT


def _taglish_share(text: str) -> float:
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(w in _TAGALOG_MARKERS for w in words) / len(words)


def detect(text: str | None) -> tuple[str | None, float]:
    """``(language, confidence)`` for one text; ``(None, 0.0)`` when it has no letters.

    Code-switched Tagalog-English (Taglish) is reported as ``"tl"`` when at least a fifth of
    its words are Tagalog function words, since a character model often calls it English.
    """
    if not text:
        return None, 0.0
    cleaned = _URL.sub(" ", text)
    if not _HAS_LETTER.search(cleaned):
        return None, 0.0
    lang, prob = _identifier().classify(cleaned)
    code = ALIASES.get(lang, lang)
    share = _taglish_share(cleaned)
    if code != "tl" and share >= 0.2:
        return "tl", float(max(min(share * 2.5, 0.99), 0.5))
    return code, float(prob)


def detect_many(texts: Sequence[str | None]) -> tuple[list[str | None], list[float]]:
    """Languages and confidences for many texts."""
    langs: list[str | None] = []
    confs: list[float] = []
    for t in texts:
        lang, conf = detect(t)
        langs.append(lang)
        confs.append(conf)
    return langs, confs
