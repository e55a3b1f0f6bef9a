"""The user's own sentiment labels: storing them, choosing what to label next, and moving them
to and from a spreadsheet.

Labels live in the workspace's ``labels`` table, one per text (labelling the same message or
text again replaces the earlier answer). Functions take any object with the workspace's DuckDB
``con`` (a :class:`custdyn.Workspace`); the text room does not import the store.

What to label next (:func:`select_for_labelling`): among unlabelled inbound messages, those the
current model is least sure of (entropy of its sentiment probabilities) and that stand for many
others (mean similarity to the rest of the pool, on hashed n-grams), taken in turn from each
language and channel so that no group crowds out the others, and never two near-duplicates.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.schema import SENTIMENTS
from custdyn.text.labelled import BadRow, normalize_label, read_label_rows

__all__ = [
    "BadRow",
    "Candidate",
    "ImportResult",
    "add_label",
    "export_candidates",
    "import_labels",
    "label_count",
    "read_labels",
    "read_label_file",
    "select_for_labelling",
]

#: Texts read from the workspace per selection round (a seeded sample when there are more).
POOL_SIZE = 3000


@dataclass
class Candidate:
    """A message proposed for labelling, with what the labeller needs to judge it."""

    interaction_id: str
    text: str
    language: str
    channel: str | None
    customer_id: str | None
    occurred_at: Any
    subject: str | None
    predicted: str | None
    confidence: float | None
    context: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    added: int  # labels that are new to the workspace
    bad: list[BadRow]
    replaced: int = 0  # rows whose text (or message) was labelled already: the answer replaced


def _label_id(interaction_id: str | None, text: str) -> str:
    if interaction_id:
        return f"i:{interaction_id}"
    return "t:" + hashlib.sha1(text.strip().encode("utf-8", "replace")).hexdigest()[:20]


def add_label(
    ws: Any,
    text: str,
    sentiment: str | int,
    *,
    interaction_id: str | None = None,
    language: str | None = None,
    emotions: Sequence[str] | None = None,
    theme: str | None = None,
    labelled_by: str | None = None,
    source: str = "cli",
    when: datetime | None = None,
) -> str:
    """Store one label (replacing an earlier one for the same message or text); its id."""
    if not str(text or "").strip():
        raise ValueError("empty text")
    k = sentiment if isinstance(sentiment, int) else normalize_label(sentiment)
    if k not in (0, 1, 2):
        raise ValueError(f"unknown sentiment {sentiment!r}")
    lid = _label_id(interaction_id, text)
    ws.con.execute(
        "INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [lid, interaction_id, text, language, SENTIMENTS[k],
         json.dumps(list(emotions)) if emotions else None, theme, labelled_by,
         when or datetime.now(UTC), source],
    )  # fmt: skip
    return lid


def label_count(ws: Any) -> int:
    return int(ws.con.execute("SELECT count(*) FROM labels").fetchone()[0])


def read_labels(ws: Any) -> list[dict[str, Any]]:
    """Every label with a sentiment, oldest first."""
    cols = ["label_id", "interaction_id", "text", "language", "sentiment", "labelled_at", "source"]
    rows = ws.con.execute(
        f"SELECT {', '.join(cols)} FROM labels WHERE sentiment IS NOT NULL "
        "ORDER BY labelled_at, label_id"
    ).fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows]


# ---------------------------------------------------------------- files


def read_label_file(path: str | Path, scheme: str = "auto"
                    ) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """Rows of a label file (``text``, ``label``, optional ``language`` and
    ``interaction_id``; every format and spelling :mod:`custdyn.text.labelled` reads) and the
    rows refused, with their row number (the header is row 1) and the reason. A row with an
    empty label is a text still to label and is skipped quietly."""
    got = read_label_rows(path, scheme)
    n = len(got.texts)
    langs = got.languages if got.languages is not None else [None] * n
    ids = got.interaction_ids if got.interaction_ids is not None else [None] * n
    good = [{"text": t, "sentiment": k, "language": g, "interaction_id": i}
            for t, k, g, i in zip(got.texts, got.labels, langs, ids, strict=True)]
    return good, got.bad


def import_labels(ws: Any, path: str | Path, labelled_by: str | None = None,
                  scheme: str = "auto") -> ImportResult:
    """Add the labels of a file (:func:`read_label_file`); bad rows are returned, not stored."""
    good, bad = read_label_file(path, scheme)
    now = datetime.now(UTC)
    before = label_count(ws)
    for r in good:
        add_label(ws, r["text"], r["sentiment"], interaction_id=r["interaction_id"],
                  language=r["language"], labelled_by=labelled_by,
                  source=f"import:{Path(path).name}", when=now)  # fmt: skip
    added = label_count(ws) - before
    return ImportResult(added, bad, replaced=len(good) - added)


def export_candidates(path: str | Path, candidates: Sequence[Candidate]) -> int:
    """Write texts to label as CSV/TSV (``text``, an empty ``label``, ``language``,
    ``interaction_id``, ``channel``, ``predicted``) for a spreadsheet; import it back later."""
    p = Path(path)
    delim = "\t" if p.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delim)
        w.writerow(["text", "label", "language", "interaction_id", "channel", "predicted"])
        for c in candidates:
            text = c.text.replace("\t", " ") if delim == "\t" else c.text
            w.writerow([text, "", c.language, c.interaction_id, c.channel or "", c.predicted or ""])
    return len(candidates)


# ---------------------------------------------------------------- what to label next


def _pool(ws: Any, engine_version: str | None, limit: int, seed: int) -> list[dict[str, Any]]:
    sql = f"""
        SELECT i.interaction_id, i.text, i.channel, i.customer_id, i.occurred_at, i.subject,
               i.thread_id, s.language, s.sentiment, s.confidence
        FROM interactions i
        LEFT JOIN (SELECT * FROM text_signals WHERE engine = ?) s
               ON s.interaction_id = i.interaction_id
        WHERE i.text IS NOT NULL AND length(trim(i.text)) > 0
          AND coalesce(i.direction, 'inbound') = 'inbound'
          AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.interaction_id = i.interaction_id)
        ORDER BY hash(i.interaction_id || '{int(seed)}')
        LIMIT {int(limit)}"""
    cols = ["interaction_id", "text", "channel", "customer_id", "occurred_at", "subject",
            "thread_id", "language", "sentiment", "confidence"]  # fmt: skip
    return [dict(zip(cols, r, strict=True)) for r in ws.con.execute(sql, [engine_version or ""]).fetchall()]


def _context(ws: Any, row: dict[str, Any], k: int = 2) -> list[str]:
    if not row.get("thread_id"):
        return []
    got = ws.con.execute(
        """SELECT direction, text FROM interactions
           WHERE thread_id = ? AND occurred_at < ? AND text IS NOT NULL
           ORDER BY occurred_at DESC LIMIT ?""",
        [row["thread_id"], row["occurred_at"], k],
    ).fetchall()
    return [f"{d or '?'}: {t}" for d, t in reversed(got)]


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-9, 1))).sum(axis=1) / np.log(3)


def rank_candidates(
    texts: Sequence[str],
    probs: np.ndarray,
    groups: Sequence[str],
    n: int,
    *,
    bits: int = 14,
    density_power: float = 1.0,
    duplicate_cosine: float = 0.9,
) -> list[int]:
    """Indices of ``n`` texts to label: uncertain (entropy of ``probs``) times representative
    (mean cosine similarity to the others on hashed n-grams), round-robin over ``groups``,
    skipping near-duplicates of texts already chosen."""
    from custdyn.text._hashing import sparse_features

    if not len(texts):
        return []
    X = sparse_features(list(texts), bits).astype(np.float64)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = X.multiply(1 / np.maximum(norms, 1e-9)[:, None]).tocsr()
    centroid = np.asarray(X.mean(axis=0)).ravel()
    density = np.clip(X @ centroid, 1e-6, None)
    density = density / density.max()
    score = _entropy(np.asarray(probs, np.float64)) * density**density_power
    by_group: dict[str, list[int]] = {}
    for i in np.argsort(-score, kind="stable"):
        by_group.setdefault(groups[i], []).append(int(i))
    chosen: list[int] = []
    order = sorted(by_group, key=lambda g: -len(by_group[g]))
    while len(chosen) < n and any(by_group[g] for g in order):
        for g in order:
            while by_group[g]:
                i = by_group[g].pop(0)
                if chosen:
                    sims = np.asarray((X[chosen] @ X[i].T).todense()).ravel()
                    if sims.max() >= duplicate_cosine:
                        continue
                chosen.append(i)
                break
            if len(chosen) >= n:
                break
    return chosen


def select_for_labelling(
    ws: Any,
    n: int = 20,
    *,
    engine: str | None = None,
    pool_size: int = POOL_SIZE,
    seed: int = 0,
) -> list[Candidate]:
    """The ``n`` unlabelled inbound messages most worth labelling next (see the module doc).

    Predictions come from ``text_signals`` for ``engine`` (the workspace default when None)
    where the message was scored, else from the fast ``bulk`` engine.
    """
    from custdyn.text.analyzer import TextAnalyzer, workspace_languages
    from custdyn.text.workspace_models import default_engine_name

    name = engine or default_engine_name(ws)
    version = name if name.startswith("workspace:") else None
    if version is None:
        try:
            version = TextAnalyzer(name, workspace=ws.path).version
        except Exception:
            version = None
    rows = _pool(ws, version, pool_size, seed)
    if not rows:
        return []
    texts = [str(r["text"]) for r in rows]
    missing = [i for i, r in enumerate(rows) if r["sentiment"] is None]
    probs = np.zeros((len(rows), 3))
    if missing:
        t = TextAnalyzer("bulk", languages=workspace_languages(ws)).analyze(
            [texts[i] for i in missing])
        conf = t.column("confidence").to_pylist()
        labs = t.column("sentiment").to_pylist()
        langs = t.column("language").to_pylist()
        for j, i in enumerate(missing):
            rows[i]["sentiment"], rows[i]["confidence"] = labs[j], conf[j]
            rows[i]["language"] = rows[i]["language"] or langs[j]
    for i, r in enumerate(rows):
        c = float(r["confidence"]) if r["confidence"] is not None else 1 / 3
        k = SENTIMENTS.index(r["sentiment"]) if r["sentiment"] in SENTIMENTS else 1
        probs[i] = (1 - c) / 2
        probs[i, k] = c
    groups = [f"{r['language'] or 'und'}/{r['channel'] or '-'}" for r in rows]
    pick = rank_candidates(texts, probs, groups, n)
    out = []
    for i in pick:
        r = rows[i]
        out.append(Candidate(
            interaction_id=str(r["interaction_id"]), text=texts[i],
            language=str(r["language"] or "und"), channel=r["channel"],
            customer_id=r["customer_id"], occurred_at=r["occurred_at"], subject=r["subject"],
            predicted=r["sentiment"], confidence=r["confidence"], context=_context(ws, r),
        ))  # fmt: skip
    return out
