"""Reading labelled text files: the one reader behind ``eval-text``, ``eval-text --train-on``,
``learning-curve`` and ``label --import``.

Files come from spreadsheets, notebooks and public datasets, so the reader is lenient about
form and strict about meaning:

- formats by extension: CSV, TSV (``.tsv``/``.tab``/``.txt``), JSON Lines, JSON (a list of
  objects) and Parquet; a byte-order mark is ignored, and a file whose header holds the other
  delimiter (a comma-separated ``.txt``, say) is read with that one;
- text encodings as spreadsheets write them (:func:`text_encoding`): UTF-8 (with or without
  a byte-order mark), UTF-16 with its byte-order mark (Excel's "Unicode text"), and
  otherwise Windows-1252 (Excel's CSV on a Western-European Windows: æ, ø, å, ç, ã, ñ);
- columns by name, in any case: the text (``text``, ``sentence``, ``tweet``, ``review``,
  ``review_text``, ``content``, ``message``, ``body``, ``comment``, ``feedback``,
  ``document``), the label (``label``, ``sentiment``, ``polarity``, ``class``, ``labels``,
  ``sentiment_label``, ``rating``, ``stars``, ``target``; the first found, in that order) and,
  optionally, the language (``language``, ``lang``, ``locale``) and the emotions the text
  expresses (``emotions``, ``emotion``: Plutchik's eight names in English, several separated
  by commas, semicolons, bars or spaces; ``none`` for a text that expresses none; left
  empty, the label says nothing of emotions; :func:`parse_emotions`), and its feedback
  theme (``theme``, ``topic``: free text, kept with the label);
- labels as names (negative / neutral / positive, their abbreviations and their Portuguese,
  Norwegian and Tagalog words) or as numbers in one of three schemes, told apart by the values
  the file holds (:func:`label_scheme`): ``-1/0/1``, ``0/1/2`` (negative, neutral, positive,
  as many published datasets number them) and star ratings ``1..5`` (1-2 negative, 3 neutral,
  4-5 positive). A file whose numbers fit more than one scheme (only 0 and 1, say) is refused
  unless the scheme is named: a misread scheme would score a model on the wrong answers;
- languages as ISO 639-1 codes or other common spellings, made canonical
  (:func:`custdyn.text.canonical_language`: ``nb`` and ``Norwegian`` are ``no``, ``fil`` is
  ``tl``, ``pt-BR`` is ``pt``);
- texts scraped from web pages as review datasets keep them (:func:`plain_text`): line-break
  and paragraph tags become line breaks, inline tags go, and entities such as ``&amp;`` and
  ``&#39;`` become their characters. A text without markup is left exactly as it is.

A row with an empty label is a text still to label and is skipped. Any other row that cannot be
read (an empty text, an unknown label, a wrong number of fields, a language that is not one,
an emotion that is not one of the eight) is returned with its row number and reason
(:class:`BadRow`); :func:`read_labelled` and :func:`labelled_rows` refuse the file naming
them, :func:`read_label_rows` returns them beside the good rows.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custdyn._mailtext import html_to_text
from custdyn.text._langid import canonical_language

__all__ = [
    "SCHEMES",
    "BadRow",
    "LabelledRows",
    "label_scheme",
    "labelled_rows",
    "normalize_label",
    "parse_emotions",
    "read_label_rows",
    "read_labelled",
    "text_encoding",
]

#: Label names (lower case) and their index into ``SENTIMENTS`` (negative, neutral, positive).
_NAMES = {
    "negative": 0, "neg": 0, "bad": 0, "negativo": 0, "negativ": 0, "negativt": 0,
    "negatibo": 0, "negatif": 0,
    "neutral": 1, "neu": 1, "neutro": 1, "nøytral": 1, "nøytralt": 1, "noytral": 1,
    "mixed": 1, "fair": 1,  # NoReC_document's three classes: negative, fair, positive
    "positive": 2, "pos": 2, "good": 2, "positivo": 2, "positiv": 2, "positivt": 2,
    "positibo": 2, "positif": 2,
}  # fmt: skip

#: Numeric label schemes: the class of each number.
SCHEMES: dict[str, dict[int, int]] = {
    "signed": {-1: 0, 0: 1, 1: 2},
    "012": {0: 0, 1: 1, 2: 2},
    "stars": {1: 0, 2: 0, 3: 1, 4: 2, 5: 2},
    # two classes, as binary datasets (NoReC_sentence's binary set, SST-2, IMDb) number them;
    # never told apart from the others by the values alone, so it is named when meant
    "binary": {0: 0, 1: 2},
    # 1/2/3 = negative, neutral, positive (SentiTaglish numbers its classes so)
    "123": {1: 0, 2: 1, 3: 2},
}
_SCHEME_WORDS = {"signed": "-1/0/1", "012": "0/1/2", "stars": "1-5 stars",
                 "binary": "0/1 = negative/positive", "123": "1/2/3"}  # fmt: skip

#: Column names accepted, in order of preference.
_TEXT_COLS = ("text", "sentence", "tweet", "review", "review_text", "content", "message",
              "body", "comment", "feedback", "document")
_LABEL_COLS = ("label", "sentiment", "polarity", "class", "labels", "sentiment_label",
               "rating", "stars", "target")
_LANG_COLS = ("language", "lang", "locale")
_EMOTION_COLS = ("emotions", "emotion")
_THEME_COLS = ("theme", "topic")
#: Words that say a text expresses no emotion (an emotion field left empty says nothing).
_NO_EMOTION = frozenset({"none", "neutral", "-", "no emotion", "no_emotion", "[]"})
_EMOTION_SPLIT = re.compile(r"[,;|/+\s]+")


def parse_emotions(value: object) -> list[str] | None:
    """The emotions named in a label file's field: Plutchik's eight names (any case, several
    separated by commas, semicolons, bars, slashes or spaces; a JSON list too), ``[]`` for
    ``none``/``neutral``/``-``, None for an empty field. Raises ValueError naming an unknown
    emotion.

    >>> parse_emotions("Anger, disgust")
    ['anger', 'disgust']
    >>> parse_emotions("none"), parse_emotions("")
    ([], None)
    """
    from custdyn.schema import EMOTIONS

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v).strip().lower() for v in value]
    else:
        raw = str(value).strip().lower()
        if raw in ("", "nan", "null"):
            return None
        if raw in _NO_EMOTION:
            return []
        parts = [t for t in _EMOTION_SPLIT.split(raw.strip("[]").replace('"', " ")) if t]
    unknown = [t for t in parts if t not in EMOTIONS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an emotion (use {', '.join(EMOTIONS)}, "
                         "or none)")  # fmt: skip
    return sorted(set(parts), key=EMOTIONS.index)


_MARKUP = re.compile(
    r"</?(?:br|p|div|li|ul|ol|b|i|u|em|strong|span|a|font|h[1-6])\b[^<>]{0,500}>"
    r"|&(?:[a-z][a-z0-9]{1,30}|#\d{1,7}|#x[0-9a-f]{1,6});",
    re.IGNORECASE,
)


def plain_text(text: str) -> str:
    """``text`` without the HTML that review datasets scraped from web pages keep, read as
    e-mail bodies are (:func:`custdyn._mailtext.html_to_text`: line-break and block tags
    become line breaks, inline tags go, entities become their characters). Text without
    markup comes back unchanged ("3 < 5" stays).

    >>> plain_text("Great phone!<br /><br />Battery &amp; screen are <b>superb</b>.")
    'Great phone!\\n\\nBattery & screen are superb.'
    >>> plain_text("Sulit!! 5 < 10 pesos")
    'Sulit!! 5 < 10 pesos'
    """
    if not _MARKUP.search(text):
        return text
    return html_to_text(text) or text


@dataclass
class BadRow:
    """A row that was not read: its number (CSV/TSV: the header is row 1, as in a
    spreadsheet; JSON Lines: the line; JSON and Parquet: the record, from 1) and why."""

    row: int
    reason: str


@dataclass
class LabelledRows:
    """The rows of a labelled file that were read, and those that were not."""

    path: Path
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # index into SENTIMENTS
    languages: list[str | None] | None = None  # None: the file has no language column
    rows: list[int] = field(default_factory=list)  # each good row's number
    #: each good row's ``interaction_id`` (None where empty); None: the file has no such column
    interaction_ids: list[str | None] | None = None
    #: each good row's emotions (:func:`parse_emotions`); None: the file has no such column
    emotions: list[list[str] | None] | None = None
    #: each good row's theme (None where empty); None: the file has no such column
    themes: list[str | None] | None = None
    bad: list[BadRow] = field(default_factory=list)
    unlabelled: int = 0  # rows with an empty label and no theme (texts still to label)
    #: rows with a theme but no label (text, theme, language, interaction_id, row)
    theme_only: list[dict[str, Any]] = field(default_factory=list)
    scheme: str | None = None  # the numeric scheme used, if the labels had numbers

    def refuse_bad(self, limit: int = 5) -> None:
        """Raise ValueError naming the bad rows (the first ``limit``) and their reasons."""
        if not self.bad:
            return
        shown = "; ".join(f"row {b.row}: {b.reason}" for b in self.bad[:limit])
        more = f" (and {len(self.bad) - limit} more)" if len(self.bad) > limit else ""
        raise ValueError(f"{self.path}: {len(self.bad)} row(s) could not be read: {shown}{more}")


def _number(s: str) -> int | None:
    """The integer a label spells (``1``, ``+1``, ``-1``, ``2.0``), or None."""
    try:
        x = float(s)
    except ValueError:
        return None
    return int(x) if math.isfinite(x) and x == int(x) else None


def label_scheme(values: Iterable[object], scheme: str = "auto") -> str | None:
    """The numeric scheme of a file's labels: ``"signed"`` (-1/0/1), ``"012"`` (0/1/2) or
    ``"stars"`` (1..5); None when no label is a number. ``"binary"`` (0/1 = negative,
    positive) and ``"123"`` (1/2/3) are read only when named.

    ``scheme="auto"`` tells them apart by the numbers present: a -1 means signed, a 0 with a 2
    means 0/1/2, a 5 (without 0 or -1) means stars. Numbers that fit several schemes
    (only 0 and 1; only 1, 2 and 3; ...) raise ValueError: name the scheme, or spell the labels
    out. A named scheme is returned as it is (after checking the name).

    >>> label_scheme(["2", "0", "1"]), label_scheme(["-1", "1"]), label_scheme(["5", "3"])
    ('012', 'signed', 'stars')
    >>> label_scheme(["positive", "neg"]) is None
    True
    """
    if scheme != "auto":
        if scheme not in SCHEMES:
            raise ValueError(f"unknown label scheme {scheme!r}: use auto, "
                             + ", ".join(SCHEMES))  # fmt: skip
        return scheme
    nums = {n for v in values if str(v).strip().lower() not in _NAMES
            and (n := _number(str(v).strip())) is not None}  # fmt: skip
    if not nums:
        return None
    if -1 in nums:
        return "signed"
    if 0 in nums and 2 in nums:
        return "012"
    if 0 not in nums and 5 in nums:
        return "stars"
    fits = [name for name, m in SCHEMES.items() if nums <= set(m)]
    listed = ", ".join(str(n) for n in sorted(nums))
    if fits == ["stars"]:  # a 4 and no 5: stars, or classes numbered 1, 2, 3 and 4
        raise ValueError(
            f"numeric labels {listed} are ambiguous: 1-5 stars without a single 5, or four "
            "classes numbered from 1 (SentiTaglish's 4 is 'mixed'); write them as "
            "negative/neutral/positive, or name the scheme (--label-scheme stars)")
    if len(fits) == 1:  # pragma: no cover - every single fit is caught above
        return fits[0]
    if not fits:
        raise ValueError(f"numeric labels {listed} fit no scheme (-1/0/1, 0/1/2, 1-5 stars, "
                         "0/1 binary, 1/2/3)")
    raise ValueError(
        f"numeric labels {listed} are ambiguous: they could be "
        + " or ".join(_SCHEME_WORDS[f] for f in fits)
        + "; write them as negative/neutral/positive, or name the scheme "
        "(--label-scheme " + ", ".join(fits[:-1]) + f" or {fits[-1]})")


def normalize_label(label: object, scheme: str | None = "signed") -> int:
    """Index into ``SENTIMENTS`` of a label spelt as a name or abbreviation (in English,
    Portuguese, Norwegian or Tagalog) or as a number in ``scheme`` (see :data:`SCHEMES`;
    -1/0/1 by default).

    >>> normalize_label("NEG"), normalize_label("+1"), normalize_label(2, "012")
    (0, 2, 2)
    """
    key = str(label).strip().lower()
    if key in _NAMES:
        return _NAMES[key]
    n = _number(key)
    if n is not None and scheme is not None and n in SCHEMES[scheme]:
        return SCHEMES[scheme][n]
    allowed = "negative, neutral or positive"
    if scheme is not None:
        allowed += f", or {_SCHEME_WORDS[scheme]}"
    raise ValueError(f"unknown sentiment label {label!r}: use {allowed}")


def _unquote(s: str) -> str:
    """A TSV field as a CSV writer quoted it (in double quotes, inner quotes doubled) back
    to its text; a raw field (a tweet that merely starts with a quote) is left as it is."""
    if len(s) >= 2 and s[0] == s[-1] == '"' and '"' not in s[1:-1].replace('""', ""):
        return s[1:-1].replace('""', '"')
    return s


def text_encoding(path: str | Path) -> str:
    """The encoding a labelled text file is read with: ``utf-8-sig`` (UTF-8, with or without
    a byte-order mark), ``utf-16`` (a UTF-16 byte-order mark: Excel's "Unicode text"), else
    ``cp1252`` (Windows-1252, what Excel writes as "CSV" on Western-European Windows), or
    ``latin-1`` when even that cannot read every byte.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as f:
    ...     _ = f.write("text,label\\nFornøyd,pos\\n".encode("cp1252"))
    >>> text_encoding(f.name)
    'cp1252'
    >>> os.remove(f.name)
    """
    return _decode(Path(path).read_bytes())[1]


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _records(p: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(row number, record, problem)`` for each record of the file (header excluded)."""
    import io

    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, r in enumerate(pq.read_table(p).to_pylist(), start=1):
            yield i, r, None
        return
    content, _ = _decode(p.read_bytes())
    if suffix in (".jsonl", ".ndjson"):
        with io.StringIO(content) as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError as e:
                    yield i, None, f"not JSON ({e.msg})"
                    continue
                yield (i, r, None) if isinstance(r, dict) else (i, None, "not a JSON object")
        return
    if suffix == ".json":
        data = json.loads(content)
        if isinstance(data, dict):  # {"data": [...]} and the like
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise ValueError(f"{p}: expected a list of objects")
        for i, r in enumerate(data, start=1):
            yield (i, r, None) if isinstance(r, dict) else (i, None, "not a JSON object")
        return
    delim = "\t" if suffix in (".tsv", ".tab", ".txt") else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with io.StringIO(content, newline="") as f:
        first = f.readline()
        other = "," if delim == "\t" else "\t"
        if delim not in first and other in first:
            delim = other
        f.seek(0)
        tsv = delim == "\t"
        reader = csv.reader(f, delimiter=delim,
                            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)  # fmt: skip
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        for n, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield n, None, f"{len(row)} fields, expected {len(header)}"
                continue
            yield n, dict(zip(header, (_unquote(c) for c in row) if tsv else row,
                              strict=True)), None


def _pick(keys: Iterable[str], names: tuple[str, ...]) -> str | None:
    by_lower: dict[str, str] = {}
    for k in keys:
        by_lower.setdefault(str(k).strip().lower(), k)
    return next((by_lower[n] for n in names if n in by_lower), None)


def read_label_rows(path: str | Path, scheme: str = "auto") -> LabelledRows:
    """Every row of a labelled file, read or refused (see the module's text).

    ``scheme``: how numeric labels read (``auto``, ``signed``, ``012``, ``stars``,
    ``binary`` or ``123``).
    Raises ValueError (naming the file) when it lacks a text column, or both a label and a
    theme column, or its numeric labels are ambiguous; bad rows are returned, not raised."""
    p = Path(path)
    records = list(_records(p))
    out = LabelledRows(p)
    keys = next((r.keys() for _, r, _ in records if r is not None), None)
    if keys is None:  # no rows (a header alone is a file with nothing to read yet)
        out.bad = [BadRow(n, why or "unreadable") for n, _, why in records]
        return out
    tk, lk, gk = _pick(keys, _TEXT_COLS), _pick(keys, _LABEL_COLS), _pick(keys, _LANG_COLS)
    ik = _pick(keys, ("interaction_id",))
    ek = _pick(keys, _EMOTION_COLS)
    hk = _pick(keys, _THEME_COLS)
    if tk is None or (lk is None and hk is None):
        raise ValueError(f"{p}: needs 'text' and 'label' columns (or 'text' and 'theme'), "
                         f"found {list(keys)}")
    try:
        out.scheme = label_scheme(
            (r.get(lk) for _, r, _ in records if r is not None and r.get(lk) is not None),
            scheme) if lk is not None else None
    except ValueError as e:
        raise ValueError(f"{p}: field '{lk}': {e}") from None
    out.languages = [] if gk is not None else None
    out.interaction_ids = [] if ik is not None else None
    out.emotions = [] if ek is not None else None
    out.themes = [] if hk is not None else None
    for n, r, why in records:
        if r is None:
            out.bad.append(BadRow(n, why or "unreadable"))
            continue
        raw_label = r.get(lk) if lk is not None else None
        label = "" if raw_label is None else str(raw_label).strip()
        theme = None
        if hk is not None:
            raw_theme = "" if r.get(hk) is None else str(r.get(hk)).strip()
            theme = raw_theme if raw_theme and raw_theme.lower() not in ("nan", "null") else None
        if (not label or label.lower() == "nan") and theme is None:
            out.unlabelled += 1
            continue
        text = r.get(tk)
        text = "" if text is None else plain_text(str(text))
        if not text.strip():
            out.bad.append(BadRow(n, f"field '{tk}' is empty"))
            continue
        k = None
        if label and label.lower() != "nan":
            try:
                k = normalize_label(label, out.scheme)
            except ValueError as e:
                out.bad.append(BadRow(n, f"field '{lk}': {e}"))
                continue
        lang = None
        if gk is not None:
            raw = r.get(gk)
            given = "" if raw is None else str(raw).strip()
            if given.lower() in ("nan", "none", "null"):  # a missing value, as pandas writes it
                given = ""
            if given:
                lang = canonical_language(given)
                if lang is None:
                    out.bad.append(BadRow(n, f"field '{gk}': {given!r} is not a language"))
                    continue
        emotions = None
        if ek is not None:
            try:
                emotions = parse_emotions(r.get(ek))
            except ValueError as e:
                out.bad.append(BadRow(n, f"field '{ek}': {e}"))
                continue
        iid = str(r.get(ik) or "").strip() or None if ik is not None else None
        if k is None:  # a theme without a sentiment: kept apart, the sentiment rows stay whole
            out.theme_only.append({"text": text, "theme": theme, "language": lang,
                                   "interaction_id": iid, "emotions": emotions, "row": n})
            continue
        out.texts.append(text)
        out.labels.append(k)
        out.rows.append(n)
        if out.interaction_ids is not None:
            out.interaction_ids.append(iid)
        if out.languages is not None:
            out.languages.append(lang)
        if out.emotions is not None:
            out.emotions.append(emotions)
        if out.themes is not None:
            out.themes.append(theme)
    return out


def theme_rows(path: str | Path, scheme: str = "auto"
               ) -> tuple[list[str], list[str], list[str | None] | None]:
    """The texts of a file that carry a theme, their themes and languages (None: the file
    has no language column): rows with a label and a theme, and rows with a theme alone.
    Raises ValueError naming the file and its bad rows, or when it has no ``theme`` column
    or no row with a theme."""
    got = read_label_rows(path, scheme)
    got.refuse_bad()
    if got.themes is None:
        raise ValueError(f"{got.path}: needs a 'theme' column")
    keep = [i for i, h in enumerate(got.themes) if h is not None]
    texts = [got.texts[i] for i in keep] + [r["text"] for r in got.theme_only]
    themes = [str(got.themes[i]) for i in keep] + [str(r["theme"]) for r in got.theme_only]
    langs = None
    if got.languages is not None:
        langs = [got.languages[i] for i in keep] + [r["language"] for r in got.theme_only]
    if not texts:
        raise ValueError(f"{got.path}: no row has a theme")
    return texts, themes, langs


def labelled_rows(path: str | Path, scheme: str = "auto") -> LabelledRows:
    """The rows of a labelled file (:func:`read_label_rows`: texts, label indices, languages,
    emotions), refused with a ValueError naming the file and its bad rows when any row is
    bad, or when no row is labelled."""
    got = read_label_rows(path, scheme)
    got.refuse_bad()
    if not got.texts:
        raise ValueError(f"{got.path}: no labelled rows")
    return got


def read_labelled(path: str | Path, scheme: str = "auto"
                  ) -> tuple[list[str], list[str], list[str | None] | None]:
    """Texts, labels (``negative``/``neutral``/``positive``) and, if the file has a language
    column, languages (ISO 639-1) of a labelled file; rows with an empty label are skipped.
    Raises ValueError naming the file and its bad rows, if any (see the module's text).

    ``scheme``: how numeric labels read (``auto``, ``signed``, ``012``, ``stars``,
    ``binary`` or ``123``)."""
    from custdyn.schema import SENTIMENTS

    got = labelled_rows(path, scheme)
    return got.texts, [SENTIMENTS[k] for k in got.labels], got.languages
