"""engine="hf:PATH" and "onnx:PATH" on a tiny randomly initialised model built by the test."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from custdyn.schema import EMOTIONS  # noqa: E402
from custdyn.text import TextAnalyzer  # noqa: E402
from custdyn.text.engines import label_map  # noqa: E402

WORDS = "[PAD] [UNK] [CLS] [SEP] i love it hate this is bad good the service".split()


def _build(path, labels):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip
    cfg = BertConfig(
        vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
        id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)},
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model, fast


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sentiment")
    model, fast = _build(path, ["negative", "neutral", "positive"])
    return path, model, fast


TEXTS = ["i love it", "this is bad service", "the service is good good good", ""]


def test_hf_engine(sentiment_model):
    path, model, fast = sentiment_model
    ta = TextAnalyzer(engine=f"hf:{path}")
    assert ta.version.startswith("hf:")
    t = ta.analyze(TEXTS, language="en")
    assert t.num_rows == 4
    enc = fast(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = torch.softmax(model(**enc).logits, -1).numpy()
    got = t.column("sentiment_score").to_numpy(zero_copy_only=False)[:3]
    np.testing.assert_allclose(got, ref[:, 2] - ref[:, 0], atol=1e-5)
    assert t.column("sentiment").to_pylist()[3] is None
    # No emotion labels in this model: emotion columns stay null.
    assert t.column("joy").null_count == 4


def _export_onnx(path, model, fast) -> None:
    """``path/model.onnx``: the model exported as optimum would (dynamic batch and length)."""
    if (path / "model.onnx").exists():
        return
    enc = fast(["i love it"], return_tensors="pt")
    torch.onnx.export(
        model, (enc["input_ids"], enc["attention_mask"]), str(path / "model.onnx"),
        input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={k: {0: "b", 1: "s"} for k in ("input_ids", "attention_mask")},
        dynamo=False,
    )  # fmt: skip


def test_onnx_engine_matches_hf(sentiment_model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path, model, fast = sentiment_model
    _export_onnx(path, model, fast)
    hf = TextAnalyzer(engine=f"hf:{path}").analyze(TEXTS, language="en")
    ox = TextAnalyzer(engine=f"onnx:{path}").analyze(TEXTS, language="en")
    assert TextAnalyzer(engine=f"onnx:{path}").version.startswith("onnx:")
    np.testing.assert_allclose(
        ox.column("sentiment_score").to_numpy(zero_copy_only=False),
        hf.column("sentiment_score").to_numpy(zero_copy_only=False),
        atol=1e-4,
    )
    assert ox.column("sentiment").to_pylist() == hf.column("sentiment").to_pylist()


def test_emotion_model(tmp_path):
    _build(tmp_path, list(EMOTIONS))
    t = TextAnalyzer(engine=f"hf:{tmp_path}").analyze(["i love it"], language="en")
    row = t.to_pylist()[0]
    assert all(0 <= row[e] <= 1 for e in EMOTIONS)
    assert abs(sum(row[e] for e in EMOTIONS) - 1) < 1e-4  # softmax over emotion classes


def test_label_map_spellings():
    m, emo = label_map({0: "NEG", 1: "NEU", 2: "POS"})
    assert m.argmax(1).tolist() == [0, 1, 2] and emo == {}
    m, _ = label_map({0: "LABEL_0", 1: "LABEL_1"})
    assert m.argmax(1).tolist() == [0, 2]
    m, _ = label_map({i: f"{i + 1} stars" for i in range(5)})
    assert m.argmax(1).tolist() == [0, 0, 1, 2, 2]


def test_local_models_read_their_own_window(sentiment_model):
    """A text longer than the model's window is cut at the window (64 positions here), not
    at a fixed length the model may not have: a longer cut would run past its position table."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path, model, fast = sentiment_model
    _export_onnx(path, model, fast)
    long_text = " ".join(["the service is bad"] * 30 + ["i love it"] * 10)  # 160 words
    enc = fast([long_text], truncation=True, max_length=64, return_tensors="pt")
    assert enc["input_ids"].shape[1] == 64
    with torch.no_grad():
        ref = torch.softmax(model(**enc).logits, -1).numpy()[0]
    for name in ("hf", "onnx"):
        ta = TextAnalyzer(engine=f"{name}:{path}")
        assert ta.engine.max_length == 64
        assert ta.version.endswith("+body+window")
        old, max_bytes = ta.engine.carries_from
        assert old == ta.version.removesuffix("+window") and max_bytes <= 254
        row = ta.analyze([long_text], language="en").to_pylist()[0]
        assert row["sentiment_score"] == pytest.approx(float(ref[2] - ref[0]), abs=1e-4)
