"""Long texts are read in pieces of whole sentences; the text's embedding is their mean."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custdyn.schema import SENTIMENTS
from custdyn.text._encoder import MAX_PIECES, PIECE_CHARS, pooled, split_pieces

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_sentences = st.lists(st.text(min_size=0, max_size=160), min_size=0, max_size=40)
_ends = st.sampled_from([". ", "! ", "? ", "\n", "\n\n", " ", "… ", ""])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    parts = draw(_sentences)
    return "".join(p + draw(_ends) for p in parts)


def _ink(s: str) -> str:
    return re.sub(r"\s+", "", s)


@settings(max_examples=300, deadline=None)
@given(_texts(), st.integers(20, 600))
def test_pieces_keep_every_character_within_the_size(text, size):
    got = split_pieces(text, size=size, limit=10**6)
    if len(text) <= size:
        assert got == [text]
        return
    if not text.strip():
        assert got == [" "]
        return
    assert got and all(0 < len(p) <= size for p in got)
    assert all(p == p.strip() for p in got)
    assert _ink("".join(got)) == _ink(text)  # nothing lost, nothing added, order kept


@settings(max_examples=200, deadline=None)
@given(_texts(), st.integers(20, 300), st.integers(1, 9))
def test_only_the_first_and_last_pieces_of_a_very_long_text(text, size, limit):
    every = split_pieces(text, size=size, limit=10**6)
    got = split_pieces(text, size=size, limit=limit)
    if len(every) <= limit:
        assert got == every
    else:
        assert len(got) == limit
        assert got == every[: limit // 2] + every[len(every) - (limit - limit // 2) :]


def test_sentences_stay_whole_and_a_sentence_longer_than_a_piece_is_cut_at_a_space():
    text = "Pakken kom aldri. " * 40  # 18 characters a sentence
    got = split_pieces(text.strip(), size=100)
    assert all(p.endswith("aldri.") and p.startswith("Pakken") for p in got)
    assert [len(p) for p in got[:2]] == [89, 89]  # five sentences a piece
    long_sentence = ("ord " * 200).strip()
    got = split_pieces(long_sentence, size=100)
    assert all(p.startswith("ord") and p.endswith("ord") for p in got)
    assert split_pieces("x" * 250, size=100) == ["x" * 100, "x" * 100, "x" * 50]
    assert split_pieces(" \n " * 100, size=100) == [" "]


def test_a_long_text_is_the_mean_of_its_pieces_and_short_ones_are_read_as_they_are():
    seen: list[list[str]] = []

    def query(batch: list[str]) -> np.ndarray:  # a stand-in encoder: length and vowels
        seen.append(list(batch))
        return np.array([[len(t), sum(c in "aeiou" for c in t), 1.0] for t in batch])

    short, long_ = "Great service, thanks.", "The parcel never came. " * 200
    x = pooled(query, [short, long_, "", "\x00"])
    pieces = split_pieces(long_)
    assert seen[-1] == [short, *pieces, " ", " "]
    assert np.allclose(x[0], query([short])[0])
    assert np.allclose(x[1], query(pieces).mean(axis=0))
    assert len(pieces) == MAX_PIECES and max(map(len, pieces)) <= PIECE_CHARS
    whole = pooled(query, [short, long_], long_texts=False)
    assert seen[-1] == [short, long_[:2000]] and np.allclose(whole[0], x[0])


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA / "afrisenti" / "pt_test.tsv").exists(), reason="shared data not present"
)
def test_long_reviews_read_in_pieces_score_better_than_read_whole(monkeypatch):
    """Long 'reviews' of 14-20 held-out Portuguese tweets (80 % of one sentiment): read whole,
    the encoder sees the first 512 tokens of a text unlike anything the heads learnt from."""
    import csv

    from custdyn.text import TextAnalyzer, _encoder
    from custdyn.text.evaluation import macro_f1

    with open(DATA / "afrisenti" / "pt_test.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    texts = np.array([r[1] for r in rows if len(r) >= 3])
    labels = np.array([SENTIMENTS.index(r[2].strip()) for r in rows if len(r) >= 3])
    rng = np.random.default_rng(3)
    docs, y = [], []
    for i in range(60):
        c = i % 3
        k = int(rng.integers(14, 21))
        n_off = int(rng.binomial(k, 0.2))
        own = rng.choice(np.flatnonzero(labels == c), k - n_off, replace=False)
        off = rng.choice(np.flatnonzero(labels != c), n_off, replace=False)
        idx = rng.permutation(np.r_[own, off])
        docs.append(" ".join(t.strip() for t in texts[idx]))
        y.append(c)

    def f1() -> float:
        t = TextAnalyzer("default").analyze(docs, language="pt")
        return macro_f1(np.array(y), np.array([SENTIMENTS.index(s) for s in t["sentiment"].to_pylist()]))

    pieces = f1()
    encode = _encoder.encode
    monkeypatch.setattr(_encoder, "encode", lambda t, long_texts=True: encode(t, long_texts=False))
    whole = f1()
    print(f"pieces {pieces:.3f} whole {whole:.3f}")
    assert pieces >= whole + 0.2  # measured .805 against .413


def test_older_workspace_models_read_a_long_text_whole(tmp_path, monkeypatch):
    import json

    from custdyn.text import _encoder
    from custdyn.text.train import HeadConfig, TrainedHead
    from custdyn.text.workspace_models import WorkspaceEngine

    asked: list[bool] = []
    monkeypatch.setattr(_encoder, "encode", lambda t, long_texts=True: asked.append(long_texts) or
                        np.zeros((len(t), 384), np.float32))  # fmt: skip
    head = TrainedHead(W=np.zeros((384, 3), np.float32), V=np.zeros((2**8, 3), np.float32),
                       b=np.zeros(3, np.float32), alpha=0.0, config=HeadConfig(bits=8))  # fmt: skip
    for card, expect in (({"name": "workspace:v1", "message_body": True}, False),
                         ({"name": "workspace:v2", "message_body": True, "long_texts": True}, True)):  # fmt: skip
        d = tmp_path / card["name"].replace(":", "-")
        d.mkdir()
        head.save(d / "head.npz", meta={"name": card["name"]})
        (d / "card.json").write_text(json.dumps(card))
        engine = WorkspaceEngine(d)
        assert engine.long_texts is expect
        engine.embed(["Pakken kom aldri. " * 50])
        assert asked[-1] is expect


def test_the_bulk_engine_reads_a_long_message_to_its_end():
    from custdyn.text import TextAnalyzer

    ta = TextAnalyzer("bulk")
    filler = "Order 1044 was placed on Monday and the parcel went out from the depot. " * 20
    angry = "It arrived broken, I am furious and want my money back. Terrible service!"
    a, b = ta.analyze([filler, filler + angry], language="en")["sentiment_score"].to_pylist()
    assert b < a - 0.02  # the verdict, past the first 1,440 bytes, is read (-.15 against -.11)
    middle = ["Wonderful, lovely, perfect! " * 40, "Awful, horrible, broken! " * 40]
    x, y = ta.analyze([filler * 2 + m + filler * 2 for m in middle], language="en")[
        "sentiment_score"
    ]
    assert x.as_py() == y.as_py()  # the middle of a very long text is not read
