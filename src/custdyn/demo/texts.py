"""Compose the demo world's messages from the per-language banks.

A message is built from parts (opener, a theme core with slots, an optional detail, a phrase
that carries the emotion, a sign-off), so each one carries a known theme, sentiment and emotion
while thousands of them stay varied. Languages: ``en``, ``pt``, ``no``, ``tl`` and ``taglish``
(Tagalog-English code switching, labelled ``tl`` with ``code_switched``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from custdyn.demo import texts_en, texts_no, texts_pt, texts_taglish, texts_tl

LANGS = ("en", "pt", "no", "tl", "taglish")
BANKS: dict[str, dict[str, Any]] = {
    "en": texts_en.BANK,
    "pt": texts_pt.BANK,
    "no": texts_no.BANK,
    "tl": texts_tl.BANK,
    "taglish": texts_taglish.BANK,
}

#: emotions a negative / positive / neutral message may carry, per theme (weights)
THEME_EMOTIONS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "late_delivery": (("anger", "sadness", "fear"), (0.5, 0.3, 0.2)),
    "damaged_goods": (("anger", "disgust", "sadness", "surprise"), (0.35, 0.2, 0.3, 0.15)),
    "price": (("disgust", "anger", "sadness"), (0.4, 0.4, 0.2)),
    "app_bug": (("anger", "surprise", "fear"), (0.5, 0.25, 0.25)),
    "missing_feature": (("anticipation", "sadness"), (0.7, 0.3)),
    "staff_praise": (("joy", "trust", "surprise"), (0.5, 0.35, 0.15)),
}

FIRST_NAMES: dict[str, Sequence[str]] = {
    "en": ("Oliver", "Emma", "James", "Sophie", "Liam", "Chloe", "Jack", "Grace", "Noah", "Mia",
           "Harry", "Ella", "Daniel", "Ruby", "Aoife", "Conor", "Megan", "Ethan", "Hannah",
           "Samuel", "Olivia", "Lucas", "Isla", "Ryan"),
    "pt": ("Ana", "João", "Maria", "Pedro", "Beatriz", "Tiago", "Inês", "Rafael", "Mariana",
           "Gonçalo", "Leonor", "Diogo", "Camila", "Lucas", "Larissa", "Gabriel", "Júlia",
           "Rodrigo", "Sofia", "Matheus", "Carolina", "Bruno", "Fernanda", "André"),
    "no": ("Ola", "Kari", "Lars", "Ingrid", "Henrik", "Nora", "Jonas", "Emma", "Sindre", "Thea",
           "Magnus", "Ingvild", "Eirik", "Silje", "Håkon", "Maja", "Øystein", "Ragnhild",
           "Jørgen", "Solveig", "Kristian", "Marte", "Torbjørn", "Åse"),
    "tl": ("Juan", "Maria", "Jose", "Andrea", "Mark", "Kristine", "John Paul", "Angelica", "Rommel",
           "Mary Grace", "Carlo", "Jasmine", "Paolo", "Rowena", "Jerome", "Lea", "Arnel",
           "Joy", "Rafael", "Princess", "Miguel", "Camille", "Edgardo", "Liza"),
}
LAST_NAMES: dict[str, Sequence[str]] = {
    "en": ("Smith", "Jones", "Taylor", "Brown", "Murphy", "Kelly", "Walsh", "Wilson", "Evans",
           "Johnson", "Clarke", "Byrne", "Hughes", "Wright", "Miller", "Davis", "Walker",
           "O'Brien"),
    "pt": ("Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins",
           "Sousa", "Fernandes", "Gonçalves", "Almeida", "Ribeiro", "Carvalho", "Lima", "Araújo",
           "Melo", "Barbosa"),
    "no": ("Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
           "Jensen", "Karlsen", "Johnsen", "Berg", "Haugen", "Hagen", "Solberg", "Bakken",
           "Strøm", "Dahl", "Sæther", "Løken"),
    "tl": ("Santos", "Reyes", "Cruz", "Bautista", "Garcia", "Mendoza", "Torres", "Ramos",
           "Aquino", "Villanueva", "Dela Cruz", "Castillo", "Flores", "Gonzales", "Navarro",
           "Pascual", "Manalo", "Soriano"),
}
#: first names of women (Portuguese adjectives and thanks agree with the writer)
FEMALE_NAMES: frozenset[str] = frozenset({
    "Emma", "Sophie", "Chloe", "Grace", "Mia", "Ella", "Ruby", "Aoife", "Megan", "Hannah",
    "Olivia", "Isla", "Ana", "Maria", "Beatriz", "Inês", "Mariana", "Leonor", "Camila", "Larissa",
    "Júlia", "Sofia", "Carolina", "Fernanda", "Kari", "Ingrid", "Nora", "Thea", "Ingvild",
    "Silje", "Maja", "Ragnhild", "Solveig", "Marte", "Åse", "Andrea", "Kristine", "Angelica",
    "Mary Grace", "Jasmine", "Rowena", "Lea", "Joy", "Princess", "Camille", "Liza",
})

MAIL_DOMAINS: dict[str, Sequence[str]] = {
    "en": ("example.com", "mail.example", "example.co.uk", "inbox.example"),
    "pt": ("example.pt", "example.com.br", "correio.example", "example.com"),
    "no": ("example.no", "epost.example", "example.com", "online.example"),
    "tl": ("example.ph", "example.com", "koreo.example", "mail.example"),
}


class Texts:
    """Message composer. Deterministic for a given seed."""

    def __init__(self, seed: int, vendor: str) -> None:
        self.r = random.Random(seed)
        self.vendor = vendor

    # -- helpers
    def pick(self, seq: Sequence[str]) -> str:
        return seq[int(self.r.random() * len(seq))]

    def bank(self, lang: str) -> dict[str, Any]:
        return BANKS[lang]

    def money(self, lang: str, value: float) -> str:
        s = f"{abs(value):.2f}"
        if lang in ("pt", "no"):
            s = s.replace(".", ",")
        return str(self.bank(lang)["money"]).format(v=s)

    def ctx(self, lang: str, **given: Any) -> dict[str, Any]:
        b = self.bank(lang)
        c: dict[str, Any] = {
            "vendor": self.vendor,
            "product": self.pick(b["products"]),
            "feature": self.pick(b["features"]),
            "offer": self.pick(b["offers"]),
            "weekday": self.pick(b["weekdays"]),
            "days": self.r.randint(2, 12),
            "order_no": f"LU-{self.r.randint(100000, 999999)}",
            "ticket_no": f"#{self.r.randint(10000, 99999)}",
            "amount": self.money(lang, self.r.choice((19.9, 39.0, 49.9, 89.0, 129.0, 249.0))),
            "name": "",
            "agent": "",
            "staff": "Marta",
            "competitor": "",
            "reason": self.pick(b["cancel_reason"]),
            "o": "o",  # Portuguese gender ending; "a" for women
        }
        for k, v in given.items():
            if v is not None and v != "":
                c[k] = v
        return c

    def fill(self, tmpl: str, c: dict[str, Any]) -> str:
        out = tmpl.format(**c)
        return out[:1].upper() + out[1:] if out[:1].islower() else out

    def emotion_phrase(self, lang: str, emotion: str, sentiment: str,
                       c: dict[str, Any]) -> str:
        emo = self.bank(lang)["emotion"]
        if emotion == "surprise":
            key = "surprise_neg" if sentiment == "negative" else "surprise_pos"
        else:
            key = emotion
        return self.fill(self.pick(emo[key]), c) if key in emo else ""

    def sample_emotion(self, theme: str, s: float) -> tuple[str, str]:
        """(sentiment, emotion) for a themed message by a customer whose satisfaction is s."""
        if theme == "staff_praise":
            sentiment = "positive"
        elif theme == "missing_feature":
            sentiment = "neutral" if s >= 0.45 and self.r.random() < 0.75 else "negative"
            if sentiment == "neutral":
                return sentiment, "anticipation"
            return sentiment, "sadness" if self.r.random() < 0.6 else "anger"
        else:
            sentiment = "negative"
        names, weights = THEME_EMOTIONS[theme]
        w = list(weights)
        if sentiment == "negative" and "anger" in names and s < 0.35:
            w[names.index("anger")] *= 2.0
        return sentiment, self.r.choices(names, weights=w)[0]

    # -- customer messages
    def themed(self, lang: str, theme: str, sentiment: str, emotion: str, c: dict[str, Any],
               *, letter: bool = True, detail: float = 0.5, emotion_p: float = 1.0) -> str:
        """A customer message about a theme; ``letter`` adds an opener and a sign-off."""
        b = self.bank(lang)
        parts = [self.fill(self.pick(b["theme"][theme]), c)]
        if self.r.random() < detail:
            parts.append(self.fill(self.pick(b["theme_extra"][theme]), c))
        if emotion != "neutral" and self.r.random() < emotion_p:
            e = self.emotion_phrase(lang, emotion, sentiment, c)
            if e:
                if self.r.random() < 0.3:
                    parts.insert(0, e)
                else:
                    parts.append(e)
        return self._letter(lang, parts, c, letter)

    def _letter(self, lang: str, parts: list[str], c: dict[str, Any], letter: bool) -> str:
        b = self.bank(lang)
        body = " ".join(p for p in parts if p)
        if not letter:
            return body
        out = []
        if self.r.random() < 0.85:
            out.append(self.fill(self.pick(b["greet"]), c))
        out.append(body)
        if self.r.random() < 0.9:
            out.append(self.fill(self.pick(b["sign"]), c))
        return "\n\n".join(out)

    def generic(self, lang: str, key: str, sentiment: str, emotion: str, c: dict[str, Any],
                *, letter: bool = True, n: int = 1) -> str:
        """A customer message from a flat list (question, positive, followup, ...)."""
        b = self.bank(lang)
        items = b[key]
        parts = [self.fill(t, c) for t in self.r.sample(items, min(n, len(items)))]
        if emotion != "neutral":
            e = self.emotion_phrase(lang, emotion, sentiment, c)
            if e:
                parts.append(e)
        return self._letter(lang, parts, c, letter)

    def mention(self, lang: str, intent: bool, sentiment: str, emotion: str,
                c: dict[str, Any], *, theme: str | None, letter: bool) -> str:
        b = self.bank(lang)
        parts = []
        if theme is not None:
            parts.append(self.fill(self.pick(b["theme"][theme]), c))
        parts.append(self.fill(self.pick(b["switch" if intent else "compare"]), c))
        if emotion != "neutral":
            e = self.emotion_phrase(lang, emotion, sentiment, c)
            if e:
                parts.append(e)
        return self._letter(lang, parts, c, letter)

    def survey_comment(self, lang: str, sentiment: str, theme: str | None,
                       c: dict[str, Any]) -> str:
        b = self.bank(lang)
        if theme is not None and self.r.random() < 0.6:
            return self.fill(self.pick(b["theme"][theme]), c)
        return self.fill(self.pick(b["survey"][sentiment]), c)

    # -- vendor messages
    def agent_reply(self, lang: str, topic: str, c: dict[str, Any], *, escalate: bool = False,
                    letter: bool = True, first: bool = True) -> str:
        b = self.bank(lang)
        parts = []
        if first:
            parts.append(self.fill(self.pick(b["agent_first"]), c))
        if escalate:
            parts.append(self.fill(self.pick(b["agent_escalate"]), c))
        else:
            parts.append(self.fill(self.pick(b["agent_topic"].get(topic) or
                                             b["agent_topic"]["question"]), c))
        if self.r.random() < 0.6:
            parts.append(self.fill(self.pick(b["agent_close"]), c))
        body = " ".join(parts)
        if not letter:
            return body
        greet = b["agent_greet"] if first else b["agent_greet"][:-1]  # last one thanks
        return "\n\n".join([self.fill(self.pick(greet), c), body,
                            self.fill(self.pick(b["agent_sign"]), c)])

    def line(self, lang: str, key: str, c: dict[str, Any]) -> str:
        return self.fill(self.pick(self.bank(lang)[key]), c)

    def subject(self, lang: str, key: str, c: dict[str, Any]) -> str:
        return self.fill(self.pick(self.bank(lang)["subject"][key]), c)

    def quote_header(self, lang: str, when: datetime, name: str) -> str:
        b = self.bank(lang)
        date = str(b["date_fmt"]).format(day=when.day, month=b["months"][when.month - 1],
                                         year=when.year, time=when.strftime("%H:%M"))
        return str(b["quote"]).format(date=date, name=name)


def fixed_sentences(lang: str) -> list[str]:
    """The sentences of a language's bank that have no slot to fill (no ``{name}``), of
    four characters or more: short texts in one known language, for checks and benchmarks.

    >>> "Middels." in fixed_sentences("no")
    True
    """

    def walk(part: Any) -> list[str]:
        if isinstance(part, str):
            return [part] if "{" not in part and len(part) > 3 else []
        items = part.values() if isinstance(part, dict) else part
        return [s for v in items for s in walk(v)]

    return walk(BANKS[lang])


def sample_messages(n: int, seed: int = 3, vendor: str = "Lumen") -> list[str]:
    """``n`` themed customer messages cycling through the languages and themes (half with an
    opener and sign-off): a quick multilingual sample for checks and benchmarks."""
    gen = Texts(seed, vendor)
    rnd = random.Random(seed)
    themes = list(THEME_EMOTIONS)
    out = []
    for k in range(n):
        theme, lang = themes[k % len(themes)], LANGS[k % len(LANGS)]
        sentiment, emotion = gen.sample_emotion(theme, rnd.random())
        c = gen.ctx(lang)
        out.append(gen.themed(lang, theme, sentiment, emotion, c, letter=rnd.random() < 0.5))
    return out
