"""Workspace text models: the head recovers planted truth, cross-validation never peeks,
versions are saved, chosen, rolled back and resolved by name, and eval-text --train-on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.pipeline.text import text_status
from custdyn.store import Workspace
from custdyn.text import TextAnalyzer, default_engine_name
from custdyn.text import workspace_models as wm
from custdyn.text.engines import heads_mark, load_weights
from custdyn.text.evaluation import macro_f1
from custdyn.text.labels import add_label
from custdyn.text.train import (
    HeadConfig,
    TrainedHead,
    _best_neutral_bias,
    build_features,
    cross_validate,
    fit_calibrated,
    fit_head,
    learning_curve,
    predict_logits,
    synthetic_features,
    train_head,
)

CFG = HeadConfig(bits=10)


def test_head_recovers_planted_classes_and_beats_chance_out_of_fold():
    rng = np.random.default_rng(1)
    f = synthetic_features(rng, 400)
    head = fit_head(f.subset(np.arange(300)), f.truth[:300], CFG)
    pred = predict_logits(head, f.subset(np.arange(300, 400))).argmax(1)
    assert macro_f1(f.truth[300:], pred) > 0.9


def test_cross_validation_does_not_peek_at_labels():
    # Labels unrelated to the features: in-sample fit is high, out-of-fold stays at chance.
    rng = np.random.default_rng(2)
    f = synthetic_features(rng, 240)
    y = rng.integers(0, 3, 240)
    head = fit_head(f, y, HeadConfig(bits=10, l2_embed=1e-5, l2_ngram=1e-5))
    assert macro_f1(y, predict_logits(head, f, calibrated=False).argmax(1)) > 0.6
    oof = cross_validate(f, y, CFG, folds=4)
    assert macro_f1(y, oof.argmax(1)) < 0.45


def test_prior_weight_follows_its_usefulness():
    # When the shipped engine's log-probabilities are the truth, the head leans on them.
    rng = np.random.default_rng(3)
    f = synthetic_features(rng, 300)
    f.emb = rng.normal(size=f.emb.shape).astype(np.float32) * 0.01  # no signal in embeddings
    f.ngrams = f.ngrams * 0
    f.prior = np.log(np.eye(3)[f.truth] * 0.8 + 0.2 / 3).astype(np.float32)
    head = fit_head(f, f.truth, CFG)
    assert head.alpha > 1.0
    assert macro_f1(f.truth, predict_logits(head, f).argmax(1)) > 0.95


def test_neutral_bias_recovers_a_planted_shift():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 3000)
    logp = np.log(np.eye(3)[y] * 0.6 + 0.4 / 3) + rng.normal(0, 0.3, (3000, 3))
    logp[:, 1] -= 0.8  # the model under-calls neutral by 0.8
    t = _best_neutral_bias(logp, y)
    assert 0.4 < t < 1.0


def test_head_saves_and_loads_identically(tmp_path):
    rng = np.random.default_rng(5)
    f = synthetic_features(rng, 200)
    head = fit_calibrated(f, f.truth, CFG, None, 0, inner=3)
    head.save(tmp_path / "h.npz")
    back = TrainedHead.load(tmp_path / "h.npz")
    np.testing.assert_allclose(predict_logits(back, f), predict_logits(head, f), atol=1e-5)
    assert back.config == head.config


def test_learning_curve_rises_with_labels():
    rng = np.random.default_rng(6)
    f = synthetic_features(rng, 900)
    f.emb = f.emb + rng.normal(0, 0.2, f.emb.shape).astype(np.float32)  # make it harder
    c = learning_curve(f, f.truth, [20, 400], config=CFG, repeats=2)
    pts = c["per_language"]["xx"]
    assert [p["n"] for p in pts] == [0, 20, 400]
    assert pts[2]["macro_f1"] > pts[1]["macro_f1"] > 0.2
    assert c["sizes"] == [0, 20, 400]


# ---------------------------------------------------------------- real texts, real encoder

POS = ["I love this shop, thank you!", "Great service, very happy with the order.",
       "Excelente atendimento, muito obrigado!", "Fantastic, it arrived early and works well.",
       "Adorei o produto, chegou rápido.", "Best support team I have ever dealt with.",
       "Tusen takk, veldig fornøyd med kjøpet!", "Perfect fit and lovely colour."]
NEG = ["Terrible, the parcel never arrived and nobody answers.", "I want my money back, awful.",
       "Péssimo serviço, quero o reembolso.", "The product broke after one day, very angry.",
       "Nunca mais compro aqui, uma vergonha.", "Worst experience ever, cancel my account.",
       "Elendig kundeservice, jeg er skuffet.", "Rude staff and a wrong order again."]
NEU = ["What time do you open on Saturday?", "Please send the invoice to my work address.",
       "Qual é o prazo de entrega para Lisboa?", "I changed my phone number last week.",
       "Vou buscar a encomenda amanhã.", "Can I pay by bank transfer?",
       "Hvor er nærmeste butikk?", "My order number is 4412."]  # fmt: skip


def _labelled() -> tuple[list[str], list[str]]:
    texts = POS + NEG + NEU
    labels = ["positive"] * len(POS) + ["negative"] * len(NEG) + ["neutral"] * len(NEU)
    return texts, labels


def test_train_head_on_real_texts_reports_both_engines():
    texts, labels = _labelled()
    f = build_features(texts, bits=12)
    head, metrics, oof = train_head(f, labels, HeadConfig(bits=12), folds=3)
    assert oof.shape == (len(texts), 3)
    assert set(metrics["overall"]) == {"n", "candidate", "current"}
    assert metrics["overall"]["n"] == len(texts)
    assert 0 <= metrics["overall"]["candidate"] <= 1
    assert macro_f1(np.array([2] * 8 + [0] * 8 + [1] * 8),
                    predict_logits(head, f).argmax(1)) > 0.8  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace.create(tmp_path / "ws")
    texts, labels = _labelled()
    rows = [{"interaction_id": f"m{i}", "customer_id": f"C{i % 4}",
             "occurred_at": f"2024-01-{1 + i:02d}T10:00:00Z", "channel": "email",
             "direction": "inbound", "text": t} for i, t in enumerate(texts)]  # fmt: skip
    p = tmp_path / "msgs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w.ingest(p)
    for i, (t, lab) in enumerate(zip(texts, labels, strict=True)):
        add_label(w, t, lab, interaction_id=f"m{i}")
    yield w
    w.close()


def test_versions_default_rollback_and_resolution(ws):
    assert default_engine_name(ws) == "default"
    r1 = wm.train_workspace(ws, HeadConfig(bits=12), folds=3)
    assert r1["name"] == "workspace:v1"
    assert (ws.path / "text-models" / "workspace-v1" / "head.npz").exists()
    assert r1["made_default"] == (
        r1["metrics"]["overall"]["candidate"] > r1["metrics"]["overall"]["current"])
    wm.set_default(ws, "workspace:v1")
    r2 = wm.train_workspace(ws, HeadConfig(bits=12, use_ngrams=False), folds=3)
    assert r2["name"] == "workspace:v2" and r2["current"] == "workspace:v1"
    assert "favoured" in r2["compared_on"]  # no labels added since v1
    wm.set_default(ws, "workspace:v2")
    assert default_engine_name(ws) == "workspace:v2"
    assert wm.rollback(ws) == ("workspace:v2", "workspace:v1")
    assert default_engine_name(ws) == "workspace:v1"
    assert wm.rollback(ws) == ("workspace:v1", "default")
    with pytest.raises(ValueError):
        wm.rollback(ws)
    ta = TextAnalyzer("workspace:v2", workspace=ws.path)
    # stored under its name, marked with the shipped heads it reads through
    assert ta.version == "workspace:v2+heads2" == "workspace:v2" + heads_mark(load_weights("heads"))
    assert ta.engine.long_texts and ta.engine.message_body  # what new models read, from the card
    t = ta.analyze(POS[:2] + NEG[:2])
    assert t.column("sentiment").to_pylist()[:1] == ["positive"]
    assert t.column("sentiment").to_pylist()[2] == "negative"
    assert t.column("joy").null_count == 0  # emotions from the shipped heads
    with pytest.raises(ValueError, match="not found"):
        TextAnalyzer("workspace:v9", workspace=ws.path)


@pytest.mark.parametrize("train", ["train_workspace", "finetune_workspace"])
def test_training_refuses_too_few_labels_or_one_sentiment(ws, train):
    """Both ways of training refuse, before any model is registered: fewer labels than
    ``min_labels``, or labels that are all one sentiment."""
    if train == "finetune_workspace":
        pytest.importorskip("torch")
    fit = getattr(wm, train)
    with pytest.raises(ValueError, match="24 labels; train-text needs at least 25"):
        fit(ws, HeadConfig(bits=10), folds=2, min_labels=25)
    ws.con.execute("UPDATE labels SET sentiment = 'positive'")
    with pytest.raises(ValueError, match="all labels are the same sentiment"):
        fit(ws, HeadConfig(bits=10), folds=2)
    assert wm.list_models(ws) == [] and default_engine_name(ws) == "default"


def test_cli_train_text_models_and_enrich_with_default(ws):
    path = ws.path
    ws.close()
    run = CliRunner()
    r = run.invoke(app, ["-w", str(path), "train-text", "--folds", "3", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["name"] == "workspace:v1"
    assert out["metrics"]["classes"] == ["negative", "neutral", "positive"]
    r = run.invoke(app, ["-w", str(path), "text-models", "--use", "workspace:v1"])
    assert r.exit_code == 0 and "workspace:v1" in r.output
    r = run.invoke(app, ["-w", str(path), "enrich", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["engine"] == "workspace:v1+heads2" and got["scored"] == 24
    r = run.invoke(app, ["-w", str(path), "enrich", "--json"])
    assert json.loads(r.output)["scored"] == 0  # resumable: nothing left for this engine
    # rows the model scored through the shipped heads before they changed are out of date:
    # status says so and enrich scores them again
    w = Workspace.open(path)
    try:
        w.con.execute("UPDATE text_signals SET engine = 'workspace:v1'")
        (st,) = text_status(w)
        assert (st["name"], st["current"]) == ("workspace:v1", "workspace:v1+heads2")
    finally:
        w.close()
    r = run.invoke(app, ["-w", str(path), "enrich", "--json"])
    assert json.loads(r.output)["scored"] == 24
    r = run.invoke(app, ["-w", str(path), "text-models", "--rollback"])
    assert r.exit_code == 0 and "default is now default" in r.output
    r = run.invoke(app, ["-w", str(path), "text-models", "--use", "workspace:v7"])
    assert r.exit_code == 2


def test_eval_text_train_on(tmp_path):
    texts, labels = _labelled()
    train = tmp_path / "train.csv"
    held = tmp_path / "held.csv"
    import csv

    with open(train, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels, strict=True))
    with open(held, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "language"])
        w.writerows([("Thanks a lot, very good!", "positive", "en"),
                     ("Awful, it never came.", "negative", "en"),
                     ("Where is your office?", "neutral", "en"),
                     ("Muito bom, obrigado!", "positive", "pt")])  # fmt: skip
    r = CliRunner().invoke(app, ["eval-text", str(held), "--train-on", str(train), "--json",
                                 "--n-boot", "50"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["macro_f1"]) == {"en", "pt"} and out["n"] == {"en": 3, "pt": 1}
    assert out["engine"] == "trained-on:train.csv"


def test_lbfgs_matches_scipy_on_a_logistic_problem():
    from scipy import optimize

    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 20))
    w_true = rng.normal(size=20)
    yb = (X @ w_true + rng.logistic(size=300) > 0).astype(float)

    def fun(w):
        z = X @ w
        p = 1 / (1 + np.exp(-z))
        f = -np.sum(yb * np.log(p + 1e-12) + (1 - yb) * np.log(1 - p + 1e-12)) + 0.5 * w @ w
        return f, X.T @ (p - yb) + w

    from custdyn.text.train import lbfgs

    ours = lbfgs(fun, np.zeros(20), max_iter=500, tol=1e-10)
    ref = optimize.minimize(fun, np.zeros(20), jac=True, method="BFGS").x
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert np.corrcoef(ours, w_true)[0, 1] > 0.9


def test_cli_learning_curve_table_json_and_figure(tmp_path):
    import csv

    texts, labels = _labelled()
    f = tmp_path / "labels.tsv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["text", "label", "language"])
        w.writerows((t.replace("\t", " "), lab, "en") for t, lab in zip(texts, labels, strict=True))
    html = tmp_path / "curve.html"
    r = CliRunner().invoke(app, ["learning-curve", "--labels", str(f), "--sizes", "10,500",
                                 "--repeats", "1", "--html", str(html), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    pts = out["per_language"]["en"]
    assert [p["n"] for p in pts] == [0, 10]  # 500 is more than the labels at hand
    assert all(0 <= p["macro_f1"] <= 1 for p in pts)
    assert html.exists() and "plotly" in html.read_text()[:5000].lower()


def test_selection_keeps_the_shipped_engine_when_labels_teach_nothing():
    rng = np.random.default_rng(8)
    f = synthetic_features(rng, 300)
    f.emb = rng.normal(size=f.emb.shape).astype(np.float32)  # no signal
    f.ngrams = f.ngrams * 0
    noisy = np.where(rng.random(300) < 0.75, f.truth, rng.integers(0, 3, 300))
    f.prior = np.log(np.eye(3)[noisy] * 0.7 + 0.1).astype(np.float32)
    head, metrics, _ = train_head(f, f.truth, CFG, folds=4)
    assert metrics["chosen"].startswith("shipped engine")
    shipped = metrics["candidates"]["shipped engine unchanged"]
    assert metrics["overall"]["candidate"] >= shipped - 0.03
    if metrics["chosen"] == "shipped engine unchanged":
        np.testing.assert_allclose(predict_logits(head, f), f.prior - np.log(
            np.exp(f.prior).sum(axis=1, keepdims=True)), atol=1e-5)


def _words_carry_it(seed: int, n: int, bits: int = 12):
    """Features whose n-grams alone carry the label: each class has 300 words of its own, a
    text uses 6 of them and 6 words all classes share; the embedding knows nothing."""
    rng = np.random.default_rng(seed)
    f = synthetic_features(rng, n, bits=bits)
    f.emb = rng.normal(size=f.emb.shape).astype(np.float32)
    f.emb /= np.linalg.norm(f.emb, axis=1, keepdims=True)
    vocab = rng.permutation(2**bits)[:900].reshape(3, 300)
    common = rng.permutation(2**bits)[900:1200]
    cols = np.hstack([vocab[f.truth[:, None], rng.integers(0, 300, (n, 6))],
                      common[rng.integers(0, 300, (n, 6))]])  # fmt: skip
    f.ngrams = sparse.csr_matrix(
        (np.full(n * 12, 12**-0.5, np.float32), cols.ravel(), np.arange(0, n * 12 + 1, 12)),
        shape=(n, 2**bits),
    )
    f.ngrams.sum_duplicates()
    return f


def test_selection_weakens_the_penalties_when_the_words_carry_the_label():
    f = _words_carry_it(3, 900)
    tr, te = np.arange(500), np.arange(500, 900)
    cfg = HeadConfig(bits=12)
    head, metrics, _ = train_head(f.subset(tr), f.truth[tr], cfg, folds=4)
    assert metrics["chosen"] == "weaker penalties"
    assert metrics["candidates"]["weaker penalties"] > metrics["candidates"]["as given"]
    plain, _, _ = train_head(f.subset(tr), f.truth[tr], cfg, folds=4, select=False)
    held = f.subset(te)
    chosen_f1 = macro_f1(f.truth[te], predict_logits(head, held).argmax(1))
    plain_f1 = macro_f1(f.truth[te], predict_logits(plain, held).argmax(1))
    assert chosen_f1 > plain_f1 + 0.01


def test_two_class_labels_judge_the_shipped_engine_on_negative_against_positive():
    """Labels without neutral: the shipped engine's 'neutral' answers are read as the likelier
    of negative and positive, so a head is not chosen for merely never saying neutral."""
    rng = np.random.default_rng(9)
    f = synthetic_features(rng, 300)
    f.emb = rng.normal(size=f.emb.shape).astype(np.float32)  # nothing to learn
    f.ngrams = f.ngrams * 0
    y = np.where(rng.random(300) < 0.5, 0, 2)
    # the shipped engine: right about polarity, but its likeliest class is mostly neutral
    p = np.full((300, 3), 0.1)
    p[np.arange(300), y] = 0.35
    p[:, 1] = 0.55
    f.prior = np.log(p / p.sum(1, keepdims=True)).astype(np.float32)
    assert macro_f1(y, f.prior.argmax(1)) < 0.1  # three-way: all neutral
    _, metrics, _ = train_head(f, y, CFG, folds=4)
    assert metrics["candidates"]["shipped engine unchanged"] == 1.0
    assert metrics["chosen"] == "shipped engine unchanged"
    curve = learning_curve(f, y, sizes=(50,), repeats=1, folds=3)
    base = curve["per_language"][f.languages[0]][0]
    assert base["n"] == 0 and base["macro_f1"] == 1.0


def test_train_text_says_when_no_label_is_neutral(tmp_path):
    w = Workspace.create(tmp_path / "ws")
    texts = POS + NEG + [t + " Again." for t in POS[:4] + NEG[:4]]
    for t in texts:
        add_label(w, t, "negative" if t.split(" Again.")[0] in NEG else "positive")
    path = w.path
    w.close()
    run = CliRunner()
    r = run.invoke(app, ["-w", str(path), "train-text", "--folds", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["metrics"]["classes"] == ["negative", "positive"]
    r = run.invoke(app, ["-w", str(path), "train-text", "--folds", "3"])
    assert r.exit_code == 0, r.output
    assert "no label is neutral" in " ".join(r.output.split())
