"""Quality on real held-out text the models never trained on: AfriSenti test tweets and the
held-out part of XED. Thresholds sit a little below what was measured (see docs/text-model.md),
to allow for the sample's noise, not to hide a regression."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text import TextAnalyzer
from custdyn.text.evaluation import macro_f1

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (DATA / "afrisenti" / "pt_test.tsv").exists(), reason="shared data not present"
)


def _train_module():
    spec = importlib.util.spec_from_file_location("train_text", ROOT / "scripts" / "train_text.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_text", mod)
    spec.loader.exec_module(mod)
    return mod


def _sample(lang: str, n: int, seed: int = 7) -> tuple[list[str], np.ndarray]:
    tt = _train_module()
    texts, labels = tt.read_afrisenti(DATA, lang, "test")
    pick = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in pick], np.array([SENTIMENTS.index(labels[i]) for i in pick])


def _f1(engine: str, texts: list[str], y: np.ndarray, lang: str) -> float:
    t = TextAnalyzer(engine=engine).analyze(texts, language=lang)
    pred = np.array([SENTIMENTS.index(s) for s in t.column("sentiment").to_pylist()])
    return macro_f1(y, pred)


def test_default_portuguese_held_out():
    texts, y = _sample("pt", 200)
    assert _f1("default", texts, y, "pt") >= PT_DEFAULT


def test_bulk_held_out():
    for lang, floor in (("pt", PT_BULK), ("pcm", PCM_BULK)):
        texts, y = _sample(lang, 1500)
        assert _f1("bulk", texts, y, lang) >= floor, lang


@pytest.mark.slow
def test_default_pidgin_held_out():
    texts, y = _sample("pcm", 600)
    assert _f1("default", texts, y, "pcm") >= PCM_DEFAULT


def test_emotions_held_out_xed():
    tt = _train_module()
    d = tt.load_xed_subset(DATA, "en")
    idx = np.flatnonzero(d["is_test"])[:200]
    texts = [d["texts"][i] for i in idx]
    y = np.zeros((len(idx), 8))
    for r, i in enumerate(idx):
        y[r, [v - 1 for v in d["labels"][i]]] = 1
    from custdyn.text.engines import load_weights

    thr = load_weights("heads")["emo_threshold"]
    t = TextAnalyzer(engine="default").analyze(texts, language="en")
    p = np.column_stack([t.column(e).to_numpy() for e in EMOTIONS])
    assert tt.emotion_f1(p, y, thr) >= EMO_EN


# Measured floors (see docs/text-model.md for the full figures).
# Measured on the whole held-out sets: default pt .622 (n=3,662), pcm .443 (n=1,000);
# bulk pt .572, pcm .450; emotions en .442 (n=300). Floors allow for the smaller samples here.
PT_DEFAULT = 0.50
PT_BULK = 0.52
PCM_BULK = 0.40
PCM_DEFAULT = 0.38
EMO_EN = 0.35
# The demo's emotional messages: the likeliest emotion is the planted one for .487 of 3,000
# (en .525, no .463, pt .505, tl .422; heads version 1: .447); the commonest emotion, anger,
# is planted in a third of them.
EMO_DEMO_N = 400
EMO_DEMO_TOP1 = 0.40


def test_emotions_of_the_demo_customers_messages(small_demo):
    """The demo world plants one emotion in each emotional message (customer-like text in
    en, no, pt and tl, unlike the subtitles the heads learnt from): the default engine's
    likeliest emotion is the planted one far more often than the commonest emotion's share."""
    import duckdb

    con = duckdb.connect(str(small_demo / "custdyn.duckdb"), read_only=True)
    truth = str(small_demo / "sources" / "truth" / "messages.parquet")
    rows = con.execute(
        "SELECT i.text, m.emotion, m.language FROM interactions i JOIN read_parquet(?) m "
        "USING (interaction_id) WHERE i.direction = 'inbound' AND m.emotion <> 'neutral' "
        "AND length(trim(coalesce(i.text, ''))) > 0 ORDER BY i.interaction_id", [truth],
    ).fetchall()
    con.close()
    rows = rows[:EMO_DEMO_N]
    t = TextAnalyzer(engine="default").analyze([r[0] for r in rows], language=[r[2] for r in rows])
    p = np.column_stack([t.column(e).to_numpy() for e in EMOTIONS])
    planted = np.array([EMOTIONS.index(r[1]) for r in rows])
    top1 = float(np.mean(p.argmax(1) == planted))
    commonest = float(np.bincount(planted).max() / len(planted))
    assert len(rows) >= 150 and top1 >= max(EMO_DEMO_TOP1, commonest + 0.1), (top1, commonest)
