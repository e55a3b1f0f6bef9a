"""The body of a message: its opening greeting and its sign-off set aside.

Customers' e-mails open with "Hi team," or "Magandang hapon po," and close with "Thanks,
Mia", "Med vennlig hilsen" or "Maraming salamat po". Those lines are courtesy, not feeling, yet
a sentiment model reads "thanks" and "salamat" as praise: an angry complaint that ends "Thank
you" comes out positive. The engines therefore score the body only.

The rule is conservative. Whole lines are set aside, and only these:

- at the start, a line that is a greeting alone (a greeting word of English, Portuguese,
  Norwegian, Danish, Swedish, Tagalog, Spanish, French, German, Italian or Dutch, then at
  most three more words, e.g. a name or "po", and no sentence: of "Hi, it broke." only the
  greeting clause goes, see below), or a name alone with a comma ("Larry,");
- at the end, a closing phrase alone on its line ("Thanks,", "Kind regards", "Salamat po
  ulit,", "Com os melhores cumprimentos,"; "Thanks for nothing." stays), with at most six
  short lines after it (a name, a title, a company, a telephone number, a web address); a
  "Sent from my phone" line; a name alone on the last line of a message that opened with a
  greeting, after a blank line; and anything after a ``-- `` signature line;
- at the end, a legal disclaimer that company mail adds ("This e-mail is confidential and
  intended solely for the addressee ..."): a closing paragraph, after a blank line, holding a
  confidentiality word (confidential, privileged, konfidensiell, confidencial, vertraulich,
  ...; :data:`DISCLAIMER_WORDS`) and either a word of the message being meant for someone
  else (intended recipient, addressee, received in error, destinatário, mottaker, ...) or a
  disclaimer's opening ("This e-mail", "Denne e-posten", "Esta mensagem", ...). The first
  paragraph always stays;
- a reply's quoted history: from the first line (after the first) that introduces it ("On
  ... wrote:", "Den ... skrev ...:", "Em ... escreveu:", "-----Original Message-----") or
  starts with ``>``, to the end (:mod:`custdyn._mailtext`, the rule e-mail files are read by).

Within a line, as chats and one-line e-mails carry them: a greeting clause opening the first
line ("Hi team, my order ...": the greeting then a comma, "!" or colon) and a closing
sentence ending the last ("... arrived broken. Thanks, Mia"; "Thanks, that solved it." is a
sentence of its own and stays).

A message that is nothing but courtesy ("Thanks!", "Salamat po") is left whole. Applying the
rule again changes nothing (it runs to a fixed point).

>>> strip_salutations("Hi team,\\n\\nMy order arrived broken. I'm furious.\\n\\nThanks,\\nMia")
"My order arrived broken. I'm furious."
>>> strip_salutations("Thank you so much, Anna solved everything!")
'Thank you so much, Anna solved everything!'
>>> strip_salutations("Thanks!")
'Thanks!'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from custdyn._mailtext import quoted_from

__all__ = ["DISCLAIMER_WORDS", "MAY_SET_ASIDE_MORE", "strip_salutations", "strip_all"]

#: Confidentiality words: every disclaimer paragraph holds one (lower case; a text without any
#: of them has no disclaimer to set aside).
DISCLAIMER_WORDS = (
    "confidential", "privileged", "konfidensiell", "taushetsbelagt", "fortrolig",
    "konfidentiell", "sekretess", "confidencial", "confidentiel", "vertraulich", "riservat",
    "vertrouwelijk", "kumpidensyal",
)  # fmt: skip
# the other mark a disclaimer carries: the message meant for someone else, sent in error
# (not "unauthorized" or "prohibited": a complaint about a data leak says those too)
_DISCLAIMER_MARKS = (
    "intended recipient", "intended solely", "intended only", "intended for the", "addressee",
    "in error", "mottaker", "adressat", "ved en feil", "feilaktig", "mottagare", "modtager",
    "destinatário", "destinatario", "por engano", "por error", "proibid", "prohibid",
    "destinataire", "par erreur", "empfänger", "irrtümlich", "destinatar", "geadresseerde",
)  # fmt: skip
_DISCLAIMER_OPENING = re.compile(
    r"^\W*(this (e-?mail|message|communication|transmission)|the (information|content)s? "
    r"(contained|in this)|confidentiality (notice|note)|disclaimer|"
    r"denne (e-?posten|e-?post|meldingen)|esta mensagem|este e-?mail|"
    r"ang (mensaheng|email na) ito)\b",
    re.IGNORECASE,
)

_GREETINGS = [
    # English
    r"hi", r"hello", r"hey", r"hiya", r"dear", r"to", r"attn\.?", r"good (?:morning|afternoon|evening|day)",
    r"greetings", r"to whom it may concern", r"hi there", r"hello there",
    # Portuguese
    r"olá", r"ola", r"oi", r"bom dia", r"boa tarde", r"boa noite", r"car[oa]s?",
    r"prezad[oa]s?", r"ex\.?m[oa]s?\.?", r"estimad[oa]s?", r"para",
    # Norwegian, Danish, Swedish
    r"hei", r"heisann", r"hallo", r"hej", r"hejsan", r"god (?:dag|morgen|ettermiddag|kveld|aften)",
    r"kjære", r"kære", r"bästa", r"goddag", r"til",
    # Tagalog
    r"magandang (?:umaga|hapon|gabi|araw|tanghali)", r"kumusta", r"kamusta", r"musta",
    r"mahal na", r"sa", r"sa kinauukulan", r"ginoo", r"ginang",
    # Spanish, French, German, Italian, Dutch
    r"hola", r"buen(?:os|as)? (?:días|dias|tardes|noches)", r"bonjour", r"bonsoir", r"salut",
    r"madame", r"monsieur", r"guten (?:tag|morgen|abend)", r"sehr geehrte[rs]?", r"liebe[rs]?",
    r"servus", r"moin", r"ciao", r"salve", r"buongiorno", r"buonasera", r"gentile", r"egregi[oa]",
    r"hoi", r"beste", r"geachte", r"goedendag", r"goedemorgen", r"goedemiddag",
]  # fmt: skip

_CLOSINGS = [
    # English
    r"thanks?(?: (?:again|a lot|so much|very much|in advance))?", r"thank you(?: (?:again|so much|very much|in advance))?",
    r"many thanks", r"thx", r"ty", r"(?:kind|best|warm|warmest|kindest) regards", r"regards",
    r"best(?: wishes)?", r"all the best", r"cheers", r"sincerely", r"yours(?: (?:sincerely|truly|faithfully))?",
    r"respectfully", r"br", r"take care", r"have a (?:nice|good|great) day",
    # Portuguese
    r"(?:muito )?obrigad[oa]s?(?: desde já)?", r"desde já(?: obrigad[oa])?", r"cumprimentos",
    r"com os melhores cumprimentos", r"melhores cumprimentos", r"atenciosamente", r"att\.?",
    r"abraços?", r"um abraço", r"beijos?", r"bjs", r"saudações", r"grat[oa]",
    # Norwegian, Danish, Swedish
    r"(?:tusen )?takk(?: (?:på forhånd|for hjelpen))?", r"mvh\.?", r"(?:med )?vennlig hilsen",
    r"(?:med )?venlig hilsen", r"(?:beste |mange )?hilsen", r"hilsen", r"hilsner", r"ha det(?: bra)?",
    r"tak(?: på forhånd)?", r"(?:med )?vänliga hälsningar", r"hälsningar", r"mvh", r"tack(?: på förhand)?",
    # Tagalog
    r"(?:maraming )?salamat(?: po)?(?: ulit)?", r"(?:lubos na )?gumagalang", r"nagpapasalamat",
    r"ingat(?: po)?", r"god bless",
    # Spanish, French, German, Italian, Dutch
    r"(?:muchas )?gracias", r"saludos(?: cordiales)?", r"un saludo", r"atentamente", r"cordialement",
    r"bien à vous", r"merci(?: beaucoup| d'avance)?", r"(?:mit )?freundlichen grüßen", r"(?:viele |liebe |beste )?grüße",
    r"danke(?: schön)?", r"mfg", r"(?:cordiali )?saluti", r"distinti saluti", r"grazie(?: mille)?",
    r"(?:met )?vriendelijke groet(?:en)?", r"groet(?:en|jes)?", r"bedankt", r"dank je(?: wel)?",
]  # fmt: skip

# A name or title after a greeting or on a sign-off line: capitalised words (and particles).
_NAMEWORD = r"(?-i:[A-ZÀ-ÖØ-ÞĀ-Ž][\w'./\-]*|de|da|do|dos|das|dela|del|van|von|der|den|la|le)"
_TAIL = r"(?:\s+(?:po|team|all|everyone|there|everybody|folks|sir|madam|ma'am|again|good day|" \
        r"alle|igjen|igen|todos|pessoal|equipa|equipe|senhores|senhoras|de novo|ulit|" \
        rf"kundeservice|support|customer|service|care|sales|or|and|og|e|{_NAMEWORD}))"  # fmt: skip
_GREETING_LINE = re.compile(
    r"^\s*(?:" + "|".join(_GREETINGS) + r")(?!\w)(?:[,!]?" + _TAIL + r"){0,3}\s*[,!:.]?\s*$",
    re.IGNORECASE,
)
# a greeting with a how-are-you: "Olá, tudo bem?", "Hi, how are you?", "Kumusta po kayo?"
_HOW_ARE_YOU = re.compile(
    r"^\s*(?:" + "|".join(_GREETINGS) + r")(?!\w)[,!]?\s*(?:po\s+)?(?:tudo bem|como vai|como está|"
    r"how are you|hope you(?:'re| are) well|hvordan går det|kayo|ka)[\s?!.]*$",
    re.IGNORECASE,
)
_CLOSING_LINE = re.compile(
    r"^\s*(?:" + "|".join(_CLOSINGS) + r")(?!\w)(?:\s+po)?[\s,!.]*(?:" + _NAMEWORD + r"(?:\s+" + _NAMEWORD
    + r"){0,3}[\s,!.]*)?$",
    re.IGNORECASE,
)
_SENT_FROM = re.compile(
    r"^\s*(?:sent from my|sendt fra min|sendt fra mi|enviado do meu|enviado de meu|enviado desde mi|"
    r"envoyé de mon|von meinem|inviato da|verzonden vanaf|skickat från|ipinadala mula)\b",
    re.IGNORECASE,
)
# a name alone: one to three capitalised words (particles allowed), nothing else
_NAME_LINE = re.compile(
    r"^\s*[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'\-]+(?:\s+(?:de|da|do|dos|das|dela|del|van|von|der|"
    r"[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'\-]+)){0,2}\s*$"
)
# a name alone with a comma, as e-mails open ("Larry,", "Ana Sofia,")
_NAME_COMMA = re.compile(
    r"^\s*[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'\-]+(?:\s+[A-ZÀ-ÖØ-ÞĀ-Ž][a-zà-öø-ÿā-ž'\-]+){0,2}\s*,\s*$"
)
_SIG_DELIM = re.compile(r"^-- ?$")
# a greeting opening a line that goes on: "Hi team, my order ...", "Magandang hapon po! ..."
_GREETING_CLAUSE = re.compile(
    r"^\s*(?:" + "|".join(_GREETINGS) + r")(?!\w)(?:[,!]?" + _TAIL + r"){0,3}\s*[,!:]\s+(?=\S)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# the most lines a sign-off block may hold after its closing phrase, and their most words
_AFTER_CLOSING, _SHORT = 6, 6


def _cut_end(lines: list[str], letter: bool) -> list[str]:
    """``lines`` without a sign-off at the end (see the module's text); ``letter``: the
    message opened with a greeting, so a name alone on the last line is a signature."""
    for i, line in enumerate(lines):
        if _SIG_DELIM.match(line) and i > 0:
            return lines[:i]
    content = [i for i, line in enumerate(lines) if line.strip()]
    if len(content) < 2:
        return lines
    last = content[-1]
    if _SENT_FROM.match(lines[last]):
        return lines[:last]
    # a closing phrase, then at most a few short lines (name, title, company)
    for k in range(len(content) - 1, max(len(content) - 2 - _AFTER_CLOSING, 0), -1):
        j = content[k]
        if any(len(lines[a].split()) > _SHORT for a in content[k + 1 :]):
            break
        if _CLOSING_LINE.match(lines[j]):
            return lines[:j]
    if letter and _NAME_LINE.match(lines[last]) and not lines[last - 1].strip():
        return lines[:last]
    return lines


def _is_disclaimer(paragraph: str) -> bool:
    low = paragraph.lower()
    if not any(w in low for w in DISCLAIMER_WORDS):
        return False
    return (any(m in low for m in _DISCLAIMER_MARKS)
            or _DISCLAIMER_OPENING.match(paragraph) is not None)


#: A regular expression (Python's and DuckDB's alike) over the lower-cased text, matching every
#: text whose body the disclaimer and quoted-history rules may shorten: one it does not match
#: has the body it had before those rules came (``enrich`` takes its scores over).
MAY_SET_ASIDE_MORE = "|".join(
    [re.escape(w) for w in DISCLAIMER_WORDS]
    + [r"(^|\n)\s*>", "wrote:", "escreveu:", "skrev", "sumulat", "escribió", "a écrit",
       "schrieb", "original message", "opprinnelig melding", "mensagem original",
       "forwarded message", r"(^|\n)\s*from: "]
)


def _cut_quoted(lines: list[str]) -> list[str]:
    """``lines`` without a reply's quoted history (from where it begins to the end)."""
    i = quoted_from(lines)
    return lines if i is None else lines[:i]


def _cut_disclaimer(lines: list[str]) -> list[str]:
    """``lines`` without closing paragraphs (after a blank line) that are legal disclaimers;
    the first paragraph always stays."""
    out = list(lines)
    while True:
        content = [i for i, line in enumerate(out) if line.strip()]
        if not content:
            return out
        blank = [i for i in range(content[0], content[-1]) if not out[i].strip()]
        if not blank:
            return out
        start = blank[-1] + 1
        if not _is_disclaimer(" ".join(out[start:])):
            return out
        out = out[: blank[-1]]


def _cut_start(lines: list[str]) -> list[str]:
    """``lines`` without a greeting line at the start."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    if len(content) < 2:
        return lines
    first, after = lines[content[0]], lines[content[1]].lstrip()
    # "Larry," opens a letter; "Sadly,\nthe order never came." is one sentence, wrapped
    named = _NAME_COMMA.match(first) is not None and not after[:1].islower()
    if _GREETING_LINE.match(first) or _HOW_ARE_YOU.match(first) or named:
        return lines[content[0] + 1 :]
    return lines


def _cut_inline(lines: list[str]) -> tuple[list[str], bool]:
    """``lines`` without a greeting clause opening the first line ("Hi team, my order ...")
    and a closing sentence ending the last ("... arrived broken. Thanks, Mia"), as chat
    messages and one-line e-mails carry them; whether a greeting went."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    if not content:
        return lines, False
    out = list(lines)
    greeted = False
    first = content[0]
    m = _GREETING_CLAUSE.match(out[first])
    if m and out[first][m.end() :].strip():
        out[first] = out[first][m.end() :]
        greeted = True
    last = content[-1]
    pieces = _SENTENCE_END.split(out[last].rstrip())
    if len(pieces) >= 2 and _CLOSING_LINE.match(pieces[-1]):
        kept = out[last].rstrip()[: -len(pieces[-1])].rstrip()
        if kept.strip():
            out[last] = kept
    return out, greeted


def strip_salutations(text: str) -> str:
    """``text`` without its opening greeting and its sign-off (see the module's text); the
    text unchanged when nothing else would be left."""
    lines = text.strip().split("\n")
    letter = False
    while True:
        start = _cut_start(lines)
        letter = letter or start != lines
        cut, greeted = _cut_inline(_cut_end(_cut_disclaimer(_cut_quoted(start)), letter))
        letter = letter or greeted
        if cut == lines or not any(line.strip() for line in cut):
            break
        lines = cut
    out = "\n".join(lines).strip()
    return out if out != text.strip() else text


def strip_all(texts: Iterable[str]) -> list[str]:
    """:func:`strip_salutations` of each text."""
    return [strip_salutations(t) for t in texts]
