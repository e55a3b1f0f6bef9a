"""Rows for the ``text_signals`` table, and the incremental enrichment loop the store calls.

``custdyn enrich`` (owned by the store/CLI) selects interactions that have no row for the
analyzer's ``version`` yet and feeds them here in batches; each batch comes back as an Arrow
table in :data:`~custdyn.schema.TEXT_SIGNALS_SCHEMA`, ready to append. Because every batch is
written as soon as it is scored, an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from custdyn.schema import TEXT_SIGNALS_SCHEMA
from custdyn.text.analyzer import TextAnalyzer
from custdyn.text.competitors import CompetitorMatcher, intent_to_switch

__all__ = ["enrich_batches", "score_interactions"]


def score_interactions(
    interaction_ids: Sequence[str],
    texts: Sequence[str | None],
    analyzer: TextAnalyzer,
    *,
    matcher: CompetitorMatcher | None = None,
    themes: Any = None,
    languages: Sequence[str | None] | None = None,
    scored_at: datetime | None = None,
) -> pa.Table:
    """One ``text_signals`` row per interaction.

    ``matcher`` adds competitor mentions (JSON list) and ``themes`` (a fitted
    :class:`~custdyn.text.ThemeModel`) a theme id; ``intent_to_switch`` is always filled.
    ``languages`` (e.g. the customer's known language) overrides detection where given.
    """
    if len(interaction_ids) != len(texts):
        raise ValueError(f"{len(interaction_ids)} ids for {len(texts)} texts")
    table = analyzer.analyze(list(texts), language=languages)
    langs = table.column("language").to_pylist()
    mentions: list[str | None] = []
    intents: list[bool | None] = []
    for text, lang in zip(texts, langs, strict=True):
        if not text:
            mentions.append(None)
            intents.append(None)
            continue
        hits = matcher.find(text, lang) if matcher is not None else []
        mentions.append(
            json.dumps(
                [{k: h[k] for k in ("competitor", "alias", "snippet", "intent")} for h in hits],
                ensure_ascii=False,
            )
            if hits
            else "[]"
        )
        intents.append(intent_to_switch(text, lang))
    theme_ids: list[str | None] = [None] * len(texts)
    if themes is not None and len(texts):
        present = [i for i, t in enumerate(texts) if t]
        got = themes.assign([texts[i] for i in present], [langs[i] for i in present], update=False)
        for i, th in zip(present, got, strict=True):
            theme_ids[i] = th
    when = scored_at or datetime.now(UTC)
    n = len(texts)
    cols: dict[str, Any] = {
        "interaction_id": pa.array(list(interaction_ids), pa.string()),
        "engine": pa.array([analyzer.version] * n, pa.string()),
    }
    for name in table.column_names:
        cols[name] = table.column(name)
    cols["intent_to_switch"] = pa.array(intents, pa.bool_())
    cols["mentions"] = pa.array(mentions, pa.string())
    cols["theme_id"] = pa.array(theme_ids, pa.string())
    cols["scored_at"] = pa.array([when] * n, TEXT_SIGNALS_SCHEMA.field("scored_at").type)
    return pa.Table.from_pydict(cols, schema=TEXT_SIGNALS_SCHEMA)


def enrich_batches(
    rows: Iterable[tuple[str, str | None] | tuple[str, str | None, str | None]],
    analyzer: TextAnalyzer,
    *,
    matcher: CompetitorMatcher | None = None,
    themes: Any = None,
    batch_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> Iterator[pa.Table]:
    """Score ``(interaction_id, text[, language])`` rows in batches, yielding each batch's table.

    ``progress(n)`` is called after each batch with the number of rows it scored (hook for a
    progress bar). The caller writes every yielded table before asking for the next one, which
    makes the run resumable.
    """
    ids: list[str] = []
    texts: list[str | None] = []
    langs: list[str | None] = []

    def flush() -> pa.Table:
        t = score_interactions(
            ids, texts, analyzer, matcher=matcher, themes=themes, languages=langs
        )
        if progress is not None:
            progress(len(ids))
        return t

    for row in rows:
        ids.append(row[0])
        texts.append(row[1])
        langs.append(row[2] if len(row) > 2 else None)  # type: ignore[misc]
        if len(ids) >= batch_size:
            yield flush()
            ids, texts, langs = [], [], []
    if ids:
        yield flush()
