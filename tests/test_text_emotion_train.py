"""Emotion heads learnt from a workspace's emotion labels: the parser of emotion fields, the
fit (recovering planted weights), the decision against the shipped heads, and the whole path
on the demo world's planted emotions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custdyn.schema import EMOTIONS
from custdyn.text.emotion_train import (
    MIN_EMOTION_LABELS,
    EmotionHead,
    average_precision,
    emotion_matrix,
    fit_emotion_head,
    learn_emotions,
    top_emotion_right,
)
from custdyn.text.labelled import parse_emotions


@given(st.sets(st.sampled_from(EMOTIONS)),
       st.lists(st.sampled_from([",", ";", " | ", "/", "  ", ", "]), min_size=8, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8))  # fmt: skip
def test_emotion_fields_read_back_the_emotions_they_name(names, seps, upper):
    order = sorted(names)
    words = [e.upper() if u else e for e, u in zip(order, upper, strict=False)]
    field = "".join(w + s for w, s in zip(words, seps, strict=False)).strip(",;|/ ")
    got = parse_emotions(field)
    if names:
        assert got == sorted(names, key=EMOTIONS.index)
    else:
        assert got is None  # an empty field says nothing of emotions


def test_emotion_fields_none_empty_lists_and_unknown_names():
    assert parse_emotions("none") == [] and parse_emotions("Neutral") == []
    assert parse_emotions("") is None and parse_emotions(None) is None
    assert parse_emotions(float("nan")) is None
    assert parse_emotions('["joy", "trust"]') == ["joy", "trust"]
    assert parse_emotions(["trust", "joy", "joy"]) == ["joy", "trust"]
    with pytest.raises(ValueError, match="'rage' is not an emotion"):
        parse_emotions("anger, rage")


def test_average_precision_and_top_emotion_by_hand():
    p = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.2]])
    Y = np.array([[1, 0], [0, 1], [1, 0]], float)
    # emotion 0: ranks 1 and 3 hold it: (1/1 + 2/3) / 2; emotion 1: rank 2 of 3 -> (1/2 + 0)...
    # emotion 1 ranking: .7 (row 1, has it), .2, .1 -> AP 1
    assert average_precision(p, Y) == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert top_emotion_right(p, Y) == pytest.approx(1 / 3)  # row 0 right, rows 1 and 2 wrong
    assert np.isnan(top_emotion_right(p, np.zeros_like(Y)))


def test_fit_recovers_planted_weights():
    """Targets drawn from a known model: the fit finds its weights again."""
    rng = np.random.default_rng(7)
    n, d = 6000, 12
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    S = rng.normal(0, 1.5, size=(n, 8))
    W = rng.normal(0, 2.0, size=(d, 8))
    a = rng.uniform(0.3, 1.5, 8)
    b = rng.uniform(-1.5, 0.0, 8)
    p = 1 / (1 + np.exp(-(S * a + X @ W + b)))
    Y = (rng.random((n, 8)) < p).astype(float)
    h = fit_emotion_head(X, S, Y, l2=1e-6, l2_prior=1e-6, max_iter=500)
    assert np.corrcoef(h.W.ravel(), W.ravel())[0, 1] > 0.95
    np.testing.assert_allclose(h.a, a, atol=0.15)
    np.testing.assert_allclose(h.b, b, atol=0.2)


def test_with_no_signal_the_fit_stays_the_shipped_heads():
    """Labels that agree with the shipped heads and embeddings that carry nothing: the
    shipped logit keeps its weight (a = 1) and new texts read as the shipped heads read them."""
    rng = np.random.default_rng(8)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, 16)) / 4
        S = rng.normal(0, 2, size=(n, 8))
        return X, S, (rng.random((n, 8)) < 1 / (1 + np.exp(-S))).astype(float)

    X, S, Y = draw(800)
    h = fit_emotion_head(X, S, Y, l2=3e-3)
    np.testing.assert_allclose(h.a, 1.0, atol=0.2)
    X2, S2, _ = draw(2000)
    assert np.abs(h.probs(X2, S2) - 1 / (1 + np.exp(-S2))).mean() < 0.05


def test_learn_emotions_needs_labels_and_must_beat_the_shipped_heads():
    rng = np.random.default_rng(9)
    n, d = 400, 16
    X = rng.normal(size=(n, d)) / 4
    S = rng.normal(0, 1, size=(n, 8))  # shipped heads: no idea
    planted = rng.integers(0, 8, n)
    X[np.arange(n), planted] += 1.5  # the emotion shows in the embedding
    labels = [[EMOTIONS[k]] for k in planted]
    head, rep = learn_emotions(X, S, [None] * n)
    assert head is None and rep["labels"] == 0 and "at least" in rep["reason"]
    head, rep = learn_emotions(X, S, labels[: MIN_EMOTION_LABELS - 1] + [None] * 10)
    assert head is None and rep["labels"] == MIN_EMOTION_LABELS - 1
    head, rep = learn_emotions(X, S, [[]] * n)
    assert head is None and rep["reason"] == "no label names an emotion"
    head, rep = learn_emotions(X, S, labels)
    assert isinstance(head, EmotionHead) and rep["used"]
    ap = rep["average_precision"]
    assert ap["candidate"] > 0.8 > 0.3 > ap["shipped"]
    assert rep["top_emotion_right"]["candidate"] > 0.8
    # labels the shipped heads already read perfectly: nothing to gain, nothing learnt
    S2 = np.where(np.eye(8)[planted] > 0, 6.0, -6.0)
    head, rep = learn_emotions(rng.normal(size=(n, d)) / 4, S2, labels)
    assert head is None and not rep["used"] and "not better" in rep["reason"]


def test_emotion_matrix_tells_none_from_unsaid():
    Y, has = emotion_matrix([["joy", "trust"], [], None])
    assert has.tolist() == [True, True, False]
    assert Y[0, EMOTIONS.index("joy")] == 1 and Y[0].sum() == 2 and Y[1].sum() == 0


def test_import_reads_emotions_and_names_bad_rows(tmp_path):
    from custdyn.store import Workspace
    from custdyn.text.labels import import_labels, read_labels

    w = Workspace.create(tmp_path / "ws")
    try:
        f = tmp_path / "labels.csv"
        f.write_text("text,label,emotions,theme\n"
                     "The parcel is late again,negative,Anger; sadness,late delivery\n"
                     "Thanks for the quick help,positive,joy,\n"
                     "What time do you open?,neutral,none,\n"
                     "Nice shop,positive,,\n"
                     "Awful,negative,fury,\n", encoding="utf-8")  # fmt: skip
        got = import_labels(w, f)
        assert got.added == 4
        assert [(b.row, b.reason) for b in got.bad] == [
            (6, "field 'emotions': 'fury' is not an emotion (use anger, anticipation, disgust, "
                "fear, joy, sadness, surprise, trust, or none)")]
        emo = {r["text"]: r["emotions"] for r in read_labels(w)}
        assert emo == {"The parcel is late again": ["anger", "sadness"],
                       "Thanks for the quick help": ["joy"], "What time do you open?": [],
                       "Nice shop": None}  # fmt: skip
        stored = w.con.execute("SELECT emotions FROM labels WHERE text = 'Nice shop'").fetchone()
        assert stored == (None,)
        themes = dict(w.con.execute("SELECT text, theme FROM labels").fetchall())
        assert themes["The parcel is late again"] == "late delivery"
        assert themes["Nice shop"] is None
        assert json.loads(w.con.execute(
            "SELECT emotions FROM labels WHERE text LIKE 'What%'").fetchone()[0]) == []
    finally:
        w.close()


def test_train_text_learns_the_demo_customers_emotions(small_demo_ws):
    """The whole path: 300 demo messages labelled with their sentiment and planted emotion;
    ``train_workspace`` learns emotion heads, saves them with the model, and the model reads
    the emotions of 300 other messages better than the shipped heads."""
    from custdyn.text import TextAnalyzer
    from custdyn.text import workspace_models as wm
    from custdyn.text.labels import add_label
    from custdyn.text.train import HeadConfig

    ws = small_demo_ws
    truth = str(ws.path / "sources" / "truth" / "messages.parquet")
    rows = ws.con.execute(
        "SELECT i.interaction_id, i.text, m.sentiment, m.emotion, m.language FROM interactions i "
        "JOIN read_parquet(?) m USING (interaction_id) WHERE i.direction = 'inbound' "
        "AND m.sentiment IN ('negative', 'neutral', 'positive') "
        "AND length(trim(coalesce(i.text, ''))) > 0 ORDER BY hash(i.interaction_id)", [truth],
    ).fetchall()
    train, held = rows[:300], [r for r in rows[300:] if r[3] != "neutral"][:300]
    for iid, text, sent, emo, lang in train:
        add_label(ws, text, sent, interaction_id=iid, language=lang,
                  emotions=[] if emo == "neutral" else [emo])
    r = wm.train_workspace(ws, HeadConfig(bits=12), folds=3)
    rep = r["metrics"]["emotions"]
    assert rep["labels"] == 300 and rep["used"], rep
    assert rep["average_precision"]["candidate"] > rep["average_precision"]["shipped"]
    folder = wm.find_model(r["name"], ws.path)
    assert (folder / "emotions.npz").exists()
    planted = np.array([EMOTIONS.index(h[3]) for h in held])
    texts, langs = [h[1] for h in held], [h[4] for h in held]

    def top_right(engine: str) -> float:
        t = TextAnalyzer(engine, workspace=ws.path).analyze(texts, language=langs)
        p = np.column_stack([t.column(e).to_numpy() for e in EMOTIONS])
        return float(np.mean(p.argmax(1) == planted))

    learnt, shipped = top_right(r["name"]), top_right("default")
    assert learnt > shipped + 0.05, (learnt, shipped)
