from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text import ANALYSIS_SCHEMA, TextAnalyzer

TEXTS = [
    "Thank you so much, the service was excellent!",
    "Péssimo atendimento, nunca mais compro aqui.",
    "Leveransen var elendig og pakken var ødelagt.",
    "Ang galing ng customer service ninyo, salamat po!",
    "",
    None,
    "What are your opening hours on Saturday?",
]


@pytest.fixture(scope="module", params=["default", "bulk"])
def table(request):
    ta = TextAnalyzer(engine=request.param)
    return ta, ta.analyze(TEXTS)


def test_schema_and_rows(table):
    ta, t = table
    assert t.schema.equals(ANALYSIS_SCHEMA)
    assert t.num_rows == len(TEXTS)
    assert ta.version.split(":")[0] in ("default", "bulk")
    for e in EMOTIONS:
        assert t.schema.field(e).type == pa.float32()


def test_values_in_range(table):
    _, t = table
    d = t.to_pydict()
    for i, text in enumerate(TEXTS):
        if not text:
            assert d["sentiment"][i] is None and d["sentiment_score"][i] is None
            assert d["language"][i] is None
            continue
        assert d["sentiment"][i] in SENTIMENTS
        assert -1.0 <= d["sentiment_score"][i] <= 1.0
        assert 1 / 3 - 1e-6 <= d["confidence"][i] <= 1.0
        for e in EMOTIONS:
            assert 0.0 <= d[e][i] <= 1.0


def test_clear_cases(table):
    _, t = table
    d = t.to_pydict()
    assert d["language"][:4] == ["en", "pt", "no", "tl"]
    assert d["sentiment"][0] == "positive" and d["sentiment"][3] == "positive"
    assert d["sentiment"][1] == "negative" and d["sentiment"][2] == "negative"
    assert d["sentiment_score"][0] > 0.3 > -0.3 > d["sentiment_score"][1]
    assert d["joy"][0] > d["joy"][1]


def test_language_override():
    ta = TextAnalyzer(engine="bulk")
    t = ta.analyze(["hello there", "olá"], language="pt")
    assert t.column("language").to_pylist() == ["pt", "pt"]
    assert t.column("language_confidence").to_pylist() == [1.0, 1.0]
    t = ta.analyze(["hello there", "olá tudo bem"], language=[None, "pt"])
    assert t.column("language").to_pylist()[1] == "pt"
    with pytest.raises(ValueError):
        ta.analyze(["a", "b"], language=["en"])


def test_empty_input_and_batching():
    ta = TextAnalyzer(engine="bulk", batch_size=3)
    assert ta.analyze([]).num_rows == 0
    texts = [f"great product number {i}" for i in range(10)]
    a = ta.analyze(texts)
    b = TextAnalyzer(engine="bulk", batch_size=100).analyze(texts)
    np.testing.assert_allclose(
        a.column("sentiment_score").to_numpy(), b.column("sentiment_score").to_numpy(), atol=1e-6
    )


def test_unknown_engine():
    with pytest.raises(ValueError, match="unknown text engine"):
        TextAnalyzer(engine="nope")


def test_bulk_scoring_matches_training_features():
    from custdyn.text._hashing import linear_scores, sparse_features

    rng = np.random.default_rng(0)
    table = rng.normal(size=(2**12, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    texts = ["Olá, tudo bem? 😀", "", "x", "Fantastisk service!", "ang ganda"]
    ref = sparse_features(texts, 12) @ table + bias
    np.testing.assert_allclose(linear_scores(texts, table, bias), ref, atol=1e-4)


def test_spans_equal_one_pass(monkeypatch):
    from custdyn.text import analyzer
    from custdyn.text._langid import detect

    texts = [t for _ in range(9) for t in TEXTS] + ["ANG GANDA PO", "   "]
    ta = TextAnalyzer(engine="bulk", batch_size=5)
    whole = ta.analyze(texts)
    monkeypatch.setattr(analyzer, "_DETECT_CHUNK", 7)
    spans = ta.analyze(texts)
    assert spans.column("language").to_pylist() == whole.column("language").to_pylist()
    assert spans.column("language").to_pylist() == [detect(t)[0] for t in texts]
    for name in ("language_confidence", "sentiment_score", "confidence", *EMOTIONS):
        np.testing.assert_allclose(
            spans.column(name).to_numpy(zero_copy_only=False),
            whole.column(name).to_numpy(zero_copy_only=False),
            atol=1e-6,
        )
    given = [None if i % 3 else "pt" for i in range(len(texts))]
    mixed = ta.analyze(texts, language=given).column("language").to_pylist()
    assert mixed == [g or d for g, d in zip(given, [detect(t)[0] for t in texts], strict=True)]
    assert ta.analyze(["hello", None], language="").column("language").to_pylist() == ["", ""]
