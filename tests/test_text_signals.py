from __future__ import annotations

import json
from datetime import UTC, datetime

from custdyn.schema import TEXT_SIGNALS_SCHEMA
from custdyn.text import CompetitorMatcher, TextAnalyzer, enrich_batches, score_interactions


def test_rows_match_text_signals_schema():
    ta = TextAnalyzer(engine="bulk")
    m = CompetitorMatcher([{"name": "Nordvik", "aliases": ["nordvik.no"]}])
    when = datetime(2026, 1, 1, tzinfo=UTC)
    t = score_interactions(
        ["i1", "i2", "i3"],
        ["Jeg bytter til Nordvik, dere er for dyre", "Thanks, all good!", None],
        ta,
        matcher=m,
        scored_at=when,
    )
    assert t.schema.equals(TEXT_SIGNALS_SCHEMA)
    d = t.to_pydict()
    assert d["engine"] == [ta.version] * 3
    assert d["intent_to_switch"] == [True, False, None]
    (hit,) = json.loads(d["mentions"][0])
    assert hit["competitor"] == "Nordvik" and hit["intent"] is True and "Nordvik" in hit["snippet"]
    assert json.loads(d["mentions"][1]) == []
    assert d["mentions"][2] is None and d["sentiment"][2] is None


def test_enrich_batches_progress():
    ta = TextAnalyzer(engine="bulk")
    rows = [(f"i{k}", f"message {k} was great", None) for k in range(25)]
    seen = []
    tables = list(enrich_batches(iter(rows), ta, batch_size=10, progress=seen.append))
    assert [tb.num_rows for tb in tables] == [10, 10, 5]
    assert seen == [10, 10, 5]
    assert tables[0].column("interaction_id").to_pylist()[0] == "i0"
