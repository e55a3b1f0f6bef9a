"""Competitor mentions and intent-to-switch phrasing, matched on accent- and case-folded text.

>>> m = CompetitorMatcher([{"name": "Nordvik", "aliases": ["nordvik.no"]}])
>>> [h["competitor"] for h in m.find("Jeg bytter til Nordviks abonnement")]
['Nordvik']
>>> m.find("Jeg bytter til Nordviks abonnement")[0]["intent"]
True
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["CompetitorMatcher", "fold", "intent_to_switch", "SWITCH_PATTERNS"]


def fold(text: str) -> tuple[str, list[int]]:
    """Case- and accent-folded ``text`` and, for each folded character, its index in ``text``.

    >>> fold("Ørjan SÃO")[0]
    'orjan sao'
    """
    folded = _fold_str(text)
    if not text.translate(_NOT_ONE):  # every character folds to exactly one
        return folded, list(range(len(text)))
    index: list[int] = []
    for i, ch in enumerate(text):
        index.extend([i] * len(_FOLD[ord(ch)]))
    return folded, index


def _fold_str(text: str) -> str:
    """``fold(text)[0]``: each character replaced by its folded form, in one ``translate``."""
    return text.translate(_FOLD)


def _fold_char(ch: str) -> str:
    special = _SPECIAL.get(ch)
    if special is not None:
        return special
    return "".join(
        c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
    ).casefold()


class _FoldTable(dict[int, str]):
    """Code point -> folded form, computed on first sight (``str.translate``'s table)."""

    def __missing__(self, code: int) -> str:
        out = _fold_char(chr(code))
        self[code] = out
        return out


class _NotOneTable(dict[int, str | None]):
    """Code point -> None (deleted) when it folds to exactly one character, else itself."""

    def __missing__(self, code: int) -> str | None:
        out = None if len(_FOLD[code]) == 1 else chr(code)
        self[code] = out
        return out


_SPECIAL = {
    "ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "å": "a", "Å": "a", "ß": "ss",
    "đ": "d", "Đ": "d", "ł": "l", "Ł": "l", "’": "'", "‘": "'", "ı": "i",
}  # fmt: skip
_FOLD = _FoldTable()
_NOT_ONE = _NotOneTable()

# Inflection a brand name takes in the supported languages: English/Scandinavian genitive,
# Norwegian/Danish/Swedish definite forms, Portuguese/Spanish plural, Tagalog and Malay
# hyphenated affixes are handled as prefixes.
_SUFFIX = r"(?:'s|'|s|es|en|ens|et|ets|ene|enes|a|as|ar|er|ers|ns|n|ta|-?ng)?"
_PREFIX = r"(?:(?:mag|nag|naka|pa|i|ma|taga|ka)-)?"

#: Intent-to-switch phrasing per language, on folded text (lower case, no accents).
SWITCH_PATTERNS: dict[str, list[str]] = {
    "en": [
        r"\bswitch(?:ing|ed)?\s+(?:over\s+)?(?:to|providers?|suppliers?|banks?|companies)\b",
        r"\bmov(?:e|ing)\s+(?:over\s+)?to\b",
        r"\bgo(?:ing)?\s+(?:over\s+)?to\s+(?:a\s+)?(?:competitor|another)\b",
        r"\b(?:gonna|going\s+to|will|i'?ll|want\s+to|wanna|plan\s+to|about\s+to)\s+(?:switch|leave|cancel|move)\b",
        r"\bcancel(?:l?ing|l?ed)?\s+(?:my|the|our)\s+(?:subscription|account|contract|plan|membership|order|service)",
        r"\bclos(?:e|ing)\s+(?:my|our)\s+account\b",
        r"\bleav(?:e|ing)\s+(?:you|for)\b",
        r"\btake\s+(?:my|our)\s+business\s+elsewhere\b",
        r"\b(?:better|cheaper)\s+(?:deal|offer|price|plan)s?\s+(?:at|from|with|elsewhere)\b",
        r"\bconsider(?:ing)?\s+(?:switching|leaving|cancell?ing|other\s+options)\b",
        r"\bport(?:ing)?\s+my\s+number\b",
        r"\bterminat(?:e|ing)\s+(?:my|the|our)\s+(?:contract|subscription|account|agreement)\b",
        r"\bnever\s+(?:buy(?:ing)?|order(?:ing)?)\s+(?:from\s+you|here)\s+again\b",
        r"\bdone\s+with\s+you\b",
    ],
    "pt": [
        r"\b(?:vou|vamos|quero|pretendo|irei)\s+(?:mudar|trocar|passar|migrar|cancelar|sair)\b",
        r"\bmud(?:ar|ei|o|ando)\s+(?:de|para)\s+(?:operadora|banco|fornecedor|empresa|plano|a|o)\b",
        r"\btroc(?:ar|ei|o|ando)\s+(?:de|para)\b",
        r"\bcancel(?:ar|ei|o|ando)\s+(?:o|a|meu|minha|esse|essa|este|esta)\b",
        r"\bencerr(?:ar|ei|o)\s+(?:a|minha)\s+conta\b",
        r"\bportabilidade\b",
        r"\bconcorrencia\b",
        r"\b(?:oferta|preco|plano)\s+melhor\s+(?:na|no|em)\b",
        r"\bnunca\s+mais\s+(?:compro|volto|uso)\b",
    ],
    "no": [
        r"\bbytt(?:e|er|et)\s+(?:til|leverandor|selskap|bank|operator|forsikring)\b",
        r"\bbytt(?:e|er|et)\s+fra\b",
        r"\b(?:si|sier|sa|sagt)\s+opp\b",
        r"\boppsigelse\b",
        r"\b(?:ga|gar|gikk)\s+over\s+til\b",
        r"\bflytt(?:e|er|et)\s+(?:over\s+)?til\b",
        r"\bavslutt(?:e|er|et)\s+(?:avtalen|abonnementet|kontoen|kundeforholdet)\b",
        r"\b(?:billigere|bedre\s+tilbud|bedre\s+pris)\s+(?:hos|fra)\b",
        r"\baldri\s+mer\s+(?:handle|kjope|bestille)\b",
    ],
    "da": [r"\bskift(?:e|er)\s+til\b", r"\bopsig(?:e|er|else)\b", r"\bsige\s+op\b"],
    "sv": [r"\bbyt(?:a|er)\s+till\b", r"\bsag(?:a|er)\s+upp\b", r"\buppsagning\b"],
    "tl": [
        r"\b(?:li)?lipat\s+(?:na\s+)?(?:ako\s+|kami\s+)?(?:sa|ng)\b",
        r"\blumipat\s+(?:na\s+)?(?:ako\s+|kami\s+)?sa\b",
        r"\b(?:mag|magpa|pa)?palit\s+(?:na\s+)?(?:ako\s+)?(?:ng|sa)\b",
        r"\b(?:mag|nag|i|ipa|ika)-?switch\b",
        r"\b(?:i|ipa|ika|pa)-?cancel\b",
        r"\bmag-?cancel\b",
        r"\baalis\s+na\b",
        r"\bayoko\s+na\b",
        r"\bmas\s+(?:mura|maganda|mabilis|okay|ok)\s+(?:sa|ang)\b",
        r"\bipaputol\b",
        r"\bhindi\s+na\s+(?:ako\s+)?(?:bibili|oorder|babalik)\b",
    ],
    "es": [
        r"\b(?:cambiar(?:me)?|cambio|me\s+cambio|pasarme|me\s+paso)\s+(?:a|de)\b",
        r"\bcancelar\s+(?:mi|el|la)\b",
        r"\bdar(?:me)?\s+de\s+baja\b",
        r"\bportabilidad\b",
    ],
    "de": [
        r"\bwechs(?:le|eln|elt)\s+zu\b",
        r"\bkundig(?:e|en|ung)\b",
        r"\bgehe\s+zu\b",
        r"\banbieterwechsel\b",
    ],
    "fr": [
        r"\b(?:passer|passe|je\s+passe)\s+(?:chez|a)\b",
        r"\bchanger\s+(?:d'operateur|de\s+fournisseur|de\s+banque)\b",
        r"\bresilier\b",
        r"\bresiliation\b",
    ],
    "nl": [r"\boverstap(?:pen)?\s+naar\b", r"\bstap\s+over\s+naar\b", r"\bopzeggen\b"],
    "it": [r"\bpassare\s+a\b", r"\bcambiare\s+(?:operatore|gestore)\b", r"\bdisdett[ao]\b"],
    "id": [r"\bpindah\s+ke\b", r"\bberhenti\s+langganan\b"],
}

_COMPILED = {
    lang: re.compile("|".join(f"(?:{p})" for p in pats)) for lang, pats in SWITCH_PATTERNS.items()
}
_ALL = re.compile("|".join(f"(?:{p})" for pats in SWITCH_PATTERNS.values() for p in pats))


#: Languages whose phrasing is checked together (language id often confuses close neighbours).
_GROUPS = {"no": ("no", "da", "sv"), "da": ("no", "da", "sv"), "sv": ("no", "da", "sv"),
           "pt": ("pt", "es"), "es": ("es", "pt"), "tl": ("tl", "id"), "id": ("id", "tl")}  # fmt: skip


@lru_cache(maxsize=64)
def _intent_regex(language: str | None) -> re.Pattern[str]:
    if not language or language not in _COMPILED:
        return _ALL
    # Customers code-switch with English (Taglish and the like): English is always checked.
    langs = dict.fromkeys([*_GROUPS.get(language, (language,)), "en"])
    return re.compile("|".join(_COMPILED[g].pattern for g in langs))


def intent_to_switch(text: str | None, language: str | None = None) -> bool:
    """True when ``text`` says the customer means to leave, cancel or move to another vendor.

    ``language`` (ISO 639-1) narrows the phrase list to that language plus English; ``None``
    checks every supported language.

    >>> intent_to_switch("Vou mudar de operadora, chega!", "pt")
    True
    >>> intent_to_switch("Thanks, all good", "en")
    False
    """
    if not text:
        return False
    return _intent_regex(language).search(_fold_str(text)) is not None


class CompetitorMatcher:
    """Find competitor mentions in free text.

    ``competitors``: list of ``{"name": str, "aliases": [str, ...]}`` (the workspace settings).
    Matching folds case and accents, respects word boundaries, accepts common inflections
    (genitive ``-s``, Scandinavian definite ``-en/-et``, plural ``-s/-es``, Tagalog affixes such
    as ``mag-``) and treats spaces, hyphens and dots inside an alias alike.
    """

    def __init__(
        self, competitors: Iterable[Mapping[str, Any]] | None = None, *, window: int = 80
    ) -> None:
        self.competitors = [
            {"name": str(c["name"]), "aliases": [str(a) for a in c.get("aliases", []) or []]}
            for c in (competitors or [])
        ]
        self.window = int(window)
        patterns: list[str] = []
        firsts: list[str] = []
        self._names: list[tuple[str, str]] = []
        for c in self.competitors:
            name = str(c["name"])
            for alias in dict.fromkeys([name, *[str(a) for a in c["aliases"]]]):
                folded = fold(alias)[0].strip()
                if not folded:
                    continue
                parts = [part for part in re.split(r"[\s\-_]+", folded) if part]
                body = r"[\s\-_.]*".join(re.escape(part) for part in parts)
                firsts.append(re.escape(parts[0]))
                group = f"g{len(self._names)}"
                patterns.append(rf"(?<![^\W_]){_PREFIX}(?P<{group}>{body}){_SUFFIX}(?![^\W_])")
                self._names.append((name, alias))
        # Longer aliases first so "nordvik energi" wins over "nordvik".
        order = sorted(range(len(patterns)), key=lambda i: -len(self._names[i][1]))
        self._regex = re.compile("|".join(patterns[i] for i in order)) if patterns else None
        # Every mention contains its alias's first word verbatim: a plain alternation of those
        # words (which the regex engine scans quickly) rules most texts out.
        self._quick = re.compile("|".join(dict.fromkeys(firsts))) if firsts else None

    def find(self, text: str | None, language: str | None = None) -> list[dict[str, Any]]:
        """Mentions in ``text``: dicts ``{competitor, alias, snippet, start, end, intent}``.

        ``start``/``end`` index the original text; ``snippet`` is the surrounding passage;
        ``intent`` is True when intent-to-switch phrasing occurs near the mention.
        """
        if not text or self._regex is None or self._quick is None:
            return []
        folded = _fold_str(text)
        if self._quick.search(folded) is None:
            return []
        matches = list(self._regex.finditer(folded))
        if not matches:
            return []
        index = fold(text)[1]
        intent_re = _intent_regex(language)
        intents = [(m.start(), m.end()) for m in intent_re.finditer(folded)]
        hits: list[dict[str, Any]] = []
        for m in matches:
            group = next(k for k, v in m.groupdict().items() if v is not None)
            name, alias = self._names[int(group[1:])]
            fs, fe = m.start(group), m.end()
            start, end = index[fs], index[fe - 1] + 1
            near = any(s < fe + self.window and e > fs - self.window for s, e in intents)
            hits.append(
                {
                    "competitor": name,
                    "alias": alias,
                    "snippet": self._snippet(text, start, end),
                    "start": start,
                    "end": end,
                    "intent": bool(near),
                }
            )
        return hits

    def intent_to_switch(self, text: str | None, language: str | None = None) -> bool:
        """True when ``text`` carries intent-to-switch phrasing (see :func:`intent_to_switch`)."""
        return intent_to_switch(text, language)

    def _snippet(self, text: str, start: int, end: int) -> str:
        a = max(0, start - self.window)
        b = min(len(text), end + self.window)
        if a > 0:
            sp = text.find(" ", a, start)
            a = sp + 1 if sp != -1 else a
        if b < len(text):
            sp = text.rfind(" ", end, b)
            b = sp if sp != -1 else b
        snippet = " ".join(text[a:b].split())
        return ("…" if a > 0 else "") + snippet + ("…" if b < len(text) else "")
