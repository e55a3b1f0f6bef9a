"""Teach the bulk engine a workspace's own words: distil its default engine into the table.

The shipped bulk table learnt from tweets and film subtitles, read by the default engine. A
workspace's messages use other words (its products, its customers' complaints), and there the
table falls well behind the engine it was distilled from. :func:`distil_bulk` lets the
workspace's default engine (the shipped one, or a model trained on its labels) read a seeded
sample of the workspace's own messages, and refits the table's rows for the n-grams those
messages hold to what it read; every other row stays as shipped, and a penalty keeps the
refitted rows near their shipped values (:func:`fit_table`). No label is needed; the result is
a workspace model of kind ``bulk`` (``workspace:vN``) that reads as fast as the shipped table.

It is put to use (:func:`custdyn.text.workspace_models.bulk_engine_name`) only when it reads
better than the bulk table in use: on the workspace's labels when there are enough of them
(labelled texts are never in the sample), otherwise by agreement with its teacher on a fifth of
the sample kept out of the fit.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.schema import SENTIMENTS

__all__ = ["HOLDOUT", "SAMPLE", "distil_bulk", "fit_table", "sample_messages", "teach"]

#: Messages the teacher reads (a seeded sample of the customers' own messages).
SAMPLE = 3000
#: Share of the sample kept out of the fit, to measure agreement with the teacher.
HOLDOUT = 0.2
#: Labels needed to decide on them rather than on agreement with the teacher.
MIN_LABELS = 30
#: Penalty pulling refitted rows toward their shipped values (per row, squared distance).
L2 = 1e-4
EPOCHS = 150
LEARNING_RATE = 0.05


def fit_table(
    texts: list[str],
    targets: np.ndarray,
    table: np.ndarray,
    bias: np.ndarray,
    *,
    l2: float = L2,
    epochs: int = EPOCHS,
    lr: float = LEARNING_RATE,
    weights: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The bulk ``table`` (2**bits, 11) and ``bias`` (11,) refitted to soft ``targets``
    (n, 11): sentiment probabilities in columns 0-2 (softmax), emotion probabilities in 3-10
    (independent sigmoids), by full-batch Adam on the mean cross-entropy plus
    ``l2 * ||rows - shipped rows||^2`` (``weights``: one per text, for a weighted mean;
    ``offsets``: (n, 3) added to each text's sentiment logits, as the engine adds its
    language's bias, so that the table is fitted as it will be read). Only
    the rows of n-grams the texts hold move; the others are returned as given. Returns new
    arrays (float32); the inputs are not changed. ``scripts/train_text.py`` builds the shipped
    table with it, from a table of zeros.
    """
    from custdyn.text._hashing import sparse_features

    table = np.asarray(table, np.float32)
    bits = int(np.log2(table.shape[0]))
    X = sparse_features(texts, bits).tocsc()
    rows = np.flatnonzero(np.diff(X.indptr))  # buckets some text holds
    Xs = X[:, rows].tocsr()
    XT = Xs.T.tocsr()
    Y = np.asarray(targets, np.float32)
    W0 = table[rows].copy()
    W, b = W0.copy(), np.asarray(bias, np.float32).copy()
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    w = np.ones(len(texts), np.float32) if weights is None else np.asarray(weights, np.float32)
    scale = (w / max(float(w.sum()), 1e-12)).astype(np.float32)[:, None]
    off = None if offsets is None else np.asarray(offsets, np.float32)
    for t in range(1, epochs + 1):
        z = Xs @ W + b
        if off is not None:
            z[:, :3] += off
        g = np.empty_like(z)
        e = np.exp(z[:, :3] - z[:, :3].max(axis=1, keepdims=True))
        g[:, :3] = e / e.sum(axis=1, keepdims=True) - Y[:, :3]
        g[:, 3:] = 1.0 / (1.0 + np.exp(-np.clip(z[:, 3:], -30, 30))) - Y[:, 3:]
        g *= scale
        for p, grad, m, v in ((W, XT @ g + l2 * (W - W0), mW, vW), (b, g.sum(axis=0), mb, vb)):
            m *= 0.9
            m += 0.1 * grad
            v *= 0.999
            v += 0.001 * grad * grad
            p -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    out = table.copy()
    out[rows] = W
    return out, b


def sample_messages(
    ws: Any, n: int = SAMPLE, seed: int = 0, labelled: set[str] | None = None
) -> list[str]:
    """Up to ``n`` distinct texts of the customers' own messages (inbound, or without a
    direction, as ``enrich`` scores them), drawn by a seeded hash of
    their interaction (the same workspace and seed give the same sample), none of them a
    labelled text. Fewer when the first ``3 * n`` messages by that hash repeat each other
    that much. ``labelled``: the labelled texts, when the caller has read them already."""
    from custdyn.text.analyzer import customers_own
    from custdyn.text.labels import read_labels

    if labelled is None:
        labelled = {str(r["text"]) for r in read_labels(ws)}
    # the first messages by the seeded hash (a top-k: no sort of all messages), three times
    # as many as asked for, so that repeated texts still leave n distinct ones
    rows = ws.con.execute(
        f"SELECT text FROM interactions WHERE {customers_own()} "
        "AND length(trim(coalesce(text, ''))) > 0 "
        "ORDER BY hash(interaction_id || ?), interaction_id LIMIT ?",
        [f":{int(seed)}", 3 * (int(n) + len(labelled))],
    ).fetchall()
    texts = dict.fromkeys(str(r[0]) for r in rows)
    return [t for t in texts if t not in labelled][: int(n)]


def teach(
    texts: list[str], teacher: Any, progress: Callable[[int, int], None] | None = None
) -> tuple[list[str], list[str | None], np.ndarray]:
    """What the ``teacher`` (a :class:`~custdyn.text.TextAnalyzer`) reads in ``texts``, as a
    bulk table learns it: ``(bodies, languages, targets)`` for the texts that are not empty,
    ``bodies`` the texts as the bulk engine reads them (greeting and sign-off set aside),
    ``targets`` (n, 11) the teacher's sentiment and emotion probabilities."""
    from custdyn.text.salutations import strip_all

    langs, _, sent, emo = teacher.scores(texts, progress=progress)
    ok = ~np.isnan(sent).any(axis=1)
    kept = [t for t, k in zip(texts, ok, strict=True) if k]
    targets = np.hstack([sent[ok], np.nan_to_num(emo[ok], nan=0.0)]).astype(np.float32)
    return strip_all(kept), [g for g, k in zip(langs, ok, strict=True) if k], targets


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    from custdyn.text.evaluation import macro_f1

    return round(macro_f1(y, p), 4)


def distil_bulk(
    ws: Any,
    *,
    sample: int = SAMPLE,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Distil the workspace's default engine into a bulk table of its own (see the module).

    Registers the next ``workspace:vN`` (kind ``bulk``) and puts it to use when it reads better
    than the bulk engine in use. ``progress(done, total, stage)`` follows the teacher's reading.
    Returns the model's name, whether it is now in use, the engine it replaces and the figures
    it was judged by.
    """
    from custdyn.text.analyzer import TextAnalyzer, workspace_languages
    from custdyn.text.engines import BulkEngine, make_engine
    from custdyn.text.evaluation import decide
    from custdyn.text.labels import read_labels
    from custdyn.text.workspace_models import (
        BULK_FILE,
        BULK_KIND,
        bulk_engine_name,
        default_engine_name,
        register_model,
    )

    t0 = time.perf_counter()
    labels = [r for r in read_labels(ws) if str(r["text"]).strip()]
    texts = sample_messages(ws, sample, seed, labelled={str(r["text"]) for r in labels})
    if len(texts) < 50:
        raise ValueError(f"{len(texts)} messages with text to learn from; distilling a bulk "
                         "table needs at least 50 (ingest some messages first)")  # fmt: skip
    teacher_name = default_engine_name(ws)
    among = workspace_languages(ws)
    teacher = TextAnalyzer.in_workspace(ws, teacher_name)

    def step(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(d, t, stage))

    bodies, langs, targets = teach(texts, teacher, step(f"{teacher_name} reads"))
    current_name = bulk_engine_name(ws)
    current = make_engine(current_name, ws.path)
    base = make_engine("bulk")
    assert isinstance(base, BulkEngine)

    # agreement with the teacher on a fifth kept out of the fit
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(bodies))
    n_out = max(1, int(round(HOLDOUT * len(bodies))))
    out_i, in_i = np.sort(order[:n_out]), np.sort(order[n_out:])
    fit_t0 = time.perf_counter()
    # the shipped table's language biases stay with it, and the refit reads through them
    offsets = base.language_offsets(langs)
    table, bias = fit_table([bodies[i] for i in in_i], targets[in_i], base.table, base.bias,
                            offsets=offsets[in_i])
    fit_seconds = time.perf_counter() - fit_t0
    candidate = base.with_table(table, bias, "candidate")
    held = [bodies[i] for i in out_i]
    held_langs = [langs[i] for i in out_i]
    truth = targets[out_i, :3].argmax(axis=1)
    metrics: dict[str, Any] = {
        "teacher": teacher_name,
        "sample": len(bodies),
        "held_out": int(n_out),
        "agreement": {
            "current": _macro_f1(truth, current.predict(held, held_langs).sentiment.argmax(1)),
            "candidate": _macro_f1(truth, candidate.predict(held, held_langs).sentiment.argmax(1)),
        },
        "fit_seconds": round(fit_seconds, 2),
    }
    decided_on = "agreement"
    if labels:
        ltexts = [str(r["text"]) for r in labels]
        y = np.array([SENTIMENTS.index(r["sentiment"]) for r in labels], np.int64)
        given = [r["language"] for r in labels]
        scores = {}  # labels without neutral ones are judged as two classes, as eval-text does
        for key, eng in (("current", current), ("candidate", candidate)):
            s = TextAnalyzer(eng, languages=among,
                             language_shares=teacher.language_shares).scores(ltexts, given)[2]
            scores[key] = _macro_f1(y, decide(np.nan_to_num(s), y))
        s = teacher.scores(ltexts, given, progress=step("labels"))[2]
        scores["teacher"] = _macro_f1(y, decide(np.nan_to_num(s), y))
        metrics["labels"] = scores | {"n": len(labels)}
        if len(labels) >= MIN_LABELS:
            decided_on = "labels"
    judged = metrics["labels"] if decided_on == "labels" else metrics["agreement"]
    better = judged["candidate"] > judged["current"]

    # the model kept is fitted on the whole sample
    table, bias = fit_table(bodies, targets, base.table, base.bias, offsets=offsets)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=Path(ws.path))
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {"table": table.astype(np.float16),
                                      "bias": bias.astype(np.float32), "version": np.int64(1)}
            if base.lang_bias is not None:  # the per-language biases go with the table
                arrays |= {"lang_codes": np.array(base.lang_codes), "lang_bias": base.lang_bias}
            np.savez_compressed(fh, **arrays)  # fmt: skip
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        name = register_model(
            ws, None, n_labels=len(labels), metrics=metrics | {"decided_on": decided_on},
            kind=BULK_KIND, make_default=better, files={BULK_FILE: Path(tmp)},
            card_extra={"teacher": teacher_name, "teacher_version": teacher.version,
                        "seed": int(seed), "l2": L2, "epochs": EPOCHS},
            base_engine=teacher_name,
        )  # fmt: skip
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"name": name, "made_default": better, "current": current_name,
            "decided_on": decided_on, "metrics": metrics}  # fmt: skip
