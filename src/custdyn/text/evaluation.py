"""Evaluation harness: three-class sentiment macro-F1 per language with bootstrap intervals,
and, for labels that carry emotions, how well the engine reads them.

The Python API is :func:`evaluate_sentiment`, :func:`render_report` (a plain-text table) and
:func:`report_to_json`. ``custdyn eval-text`` is the full command (``--train-on``,
``--languages``, ``--label-scheme``, a progress bar); :func:`eval_text_main`
(``python -m custdyn.text.evaluation FILE``) is a minimal runner of the text room alone, for
scripts that do not install the command-line face.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from custdyn.schema import EMOTIONS, SENTIMENTS
from custdyn.text.labelled import labelled_rows, normalize_label, read_labelled

__all__ = [
    "decide",
    "eval_text_main",
    "evaluate_sentiment",
    "macro_f1",
    "normalize_label",
    "read_labelled",
    "render_report",
    "report_to_json",
]

def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> float:
    """Macro-averaged F1 over the classes present in ``y_true`` or ``y_pred``."""
    f1s = []
    for c in range(n_classes):
        t, p = y_true == c, y_pred == c
        if not t.any() and not p.any():
            continue
        tp = float(np.sum(t & p))
        denom = float(t.sum() + p.sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s)) if f1s else float("nan")


def decide(scores: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """Class indices from (n, 3) scores (probabilities or log-probabilities over negative,
    neutral, positive): the likeliest class; when the labels ``y_true`` hold no neutral (a
    two-class task), the likelier of negative and positive.

    >>> s = np.log([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    >>> decide(s, np.array([0, 1])).tolist(), decide(s, np.array([0, 2])).tolist()
    ([1, 0], [2, 0])
    """
    s = np.asarray(scores)
    if len(y_true) and not np.any(np.asarray(y_true) == 1):
        return np.where(s[:, 2] > s[:, 0], 2, 0).astype(np.int64)
    return s.argmax(1)


def _bootstrap(
    y_true: np.ndarray, y_pred: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float]:
    if len(y_true) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        stats[b] = macro_f1(y_true[i], y_pred[i])
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def _score(y_true: np.ndarray, y_pred: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    lo, hi = _bootstrap(y_true, y_pred, n_boot, seed)
    k = len(SENTIMENTS)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    f1 = {}
    for c, s in enumerate(SENTIMENTS):
        denom = confusion[c].sum() + confusion[:, c].sum()
        f1[s] = float(2 * confusion[c, c] / denom) if denom else float("nan")
    return {
        "n": int(len(y_true)),
        "macro_f1": macro_f1(y_true, y_pred),
        "ci_low": lo,
        "ci_high": hi,
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "support": {s: int(np.sum(y_true == k)) for k, s in enumerate(SENTIMENTS)},
        "predicted": {s: int(np.sum(y_pred == k)) for k, s in enumerate(SENTIMENTS)},
        "f1": f1,
        #: rows: the true sentiment, columns: the predicted one (negative, neutral, positive)
        "confusion": confusion.tolist(),
    }


MIN_PER_LANGUAGE = 5


def pool_rare_languages(langs: Sequence[str], min_n: int = MIN_PER_LANGUAGE) -> list[str]:
    """Languages with fewer than ``min_n`` texts reported together as ``other``.

    A macro-F1 on one or two texts says nothing, and language identification on short, noisy
    messages scatters a few texts over rare codes; pooling them keeps the report readable.
    """
    counts: dict[str, int] = {}
    for lang in langs:
        counts[lang] = counts.get(lang, 0) + 1
    return [lang if counts[lang] >= min_n else "other" for lang in langs]


def evaluate_sentiment(
    texts: Sequence[str],
    labels: Sequence[object],
    languages: Sequence[str | None] | None = None,
    engine: Any = "default",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Any = None,
    among: Collection[str] | None = None,
    two_class: bool | None = None,
    emotions: Sequence[list[str] | None] | None = None,
) -> dict[str, Any]:
    """Score an engine on labelled texts.

    ``emotions``: per text, the emotions its label names (``[]``: none; None: the label says
    nothing of them); where some label carries them, the report's ``emotions`` says how the
    engine reads them (``overall`` and ``per_language``: ``n``, ``top_emotion_right``,
    ``average_precision``).

    ``labels``: negative / neutral / positive (or neg/neu/pos, -1/0/1). ``languages``: ISO
    639-1 per text; None (or None entries) detects them (``among`` these languages, when
    given), the texts read as one collection, so that a file of Norwegian lines is read as
    Norwegian even where a short line alone would read as Danish
    (:func:`~custdyn.text._langid.detect_many`). ``engine``: a name, an engine or a
    :class:`~custdyn.text.TextAnalyzer`. Returns ``{"engine", "overall", "per_language"}``, each
    score a dict with ``n``, ``macro_f1``, the 95 % percentile-bootstrap interval
    ``ci_low``/``ci_high`` (``n_boot`` resamples), ``accuracy`` and per-class ``support``.
    ``progress(done, total)`` is called as the texts are scored.

    ``two_class``: labels of two classes only (negative and positive, as binary datasets have
    them) are scored as a two-class task, each text read as the likelier of the two
    (``sentiment_score`` > 0 is positive); None does so when no label is neutral, False counts
    "neutral" answers as errors. The report's ``classes`` names the classes scored.
    """
    from custdyn.text.analyzer import TextAnalyzer

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if emotions is not None and len(emotions) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(emotions)} emotion labels")
    ta = (engine if isinstance(engine, TextAnalyzer)
          else TextAnalyzer(engine=engine, languages=among))  # fmt: skip
    y_true = np.array([normalize_label(x) for x in labels], np.int64)
    has_neutral = bool(np.any(y_true == 1))
    if two_class and has_neutral:
        raise ValueError("a two-class evaluation needs labels without 'neutral'")
    two = (not has_neutral and len(y_true) > 0) if two_class is None else two_class
    given = list(languages) if languages is not None else [None] * len(texts)
    if any(not g for g in given):
        from custdyn.text._langid import detect_many

        found = detect_many(list(texts), among if among is not None else ta.languages,
                            collection=True)[0]  # fmt: skip
        given = [g or f for g, f in zip(given, found, strict=True)]
    table = ta.analyze(list(texts), language=given, progress=progress)
    if two:
        score = table.column("sentiment_score").to_numpy(zero_copy_only=False)
        y_pred = np.where(np.nan_to_num(np.asarray(score, np.float64)) > 0, 2, 0)
    else:
        pred = table.column("sentiment").to_pylist()
        y_pred = np.array([SENTIMENTS.index(p) if p else 1 for p in pred], np.int64)
    langs = [lang or "und" for lang in table.column("language").to_pylist()]
    if languages is None and among is None:  # detected freely: a few land on rare codes
        langs = pool_rare_languages(langs)
    per: dict[str, Any] = {}
    for lang in sorted(set(langs)):
        m = np.array([x == lang for x in langs])
        per[lang] = _score(y_true[m], y_pred[m], n_boot, seed)
    out = {
        "engine": ta.version,
        "classes": ["negative", "positive"] if two else list(SENTIMENTS),
        "overall": _score(y_true, y_pred, n_boot, seed),
        "per_language": per,
    }
    emo = None if emotions is None else _emotion_scores(table, emotions, langs)
    if emo is not None:
        out["emotions"] = emo
    return out


def _emotion_scores(table: Any, emotions: Sequence[list[str] | None],
                    langs: list[str]) -> dict[str, Any] | None:  # fmt: skip
    """How the engine's emotion probabilities in ``table`` read the labels' ``emotions``
    (None: a label that says nothing of them), overall and per language: ``n`` (labels with
    emotions), ``with_emotion``, ``top_emotion_right`` and ``average_precision``
    (:mod:`custdyn.text.emotion_train`). None when no label carries emotions or the engine
    reads none."""
    from custdyn.text.emotion_train import average_precision, emotion_matrix, top_emotion_right

    Y, has = emotion_matrix(list(emotions))
    cols = [table.column(e) for e in EMOTIONS]
    if not has.any() or any(c.null_count == len(c) for c in cols):
        return None
    P = np.column_stack([np.nan_to_num(np.asarray(c.to_numpy(zero_copy_only=False), float))
                         for c in cols])  # fmt: skip
    lang_arr = np.array(langs)

    def one(m: np.ndarray) -> dict[str, Any]:
        return {"n": int(m.sum()), "with_emotion": int((Y[m].sum(axis=1) > 0).sum()),
                "top_emotion_right": top_emotion_right(P[m], Y[m]),
                "average_precision": average_precision(P[m], Y[m])}  # fmt: skip

    return {"overall": one(has),
            "per_language": {g: one(has & (lang_arr == g)) for g in sorted(set(lang_arr[has]))}}


def render_report(report: dict[str, Any]) -> str:
    """A plain-text table of a report from :func:`evaluate_sentiment`."""
    rows = [("language", "n", "macro-F1", "95% CI", "accuracy")]
    items = list(report["per_language"].items()) + [("all", report["overall"])]
    for lang, s in items:
        rows.append(
            (
                lang,
                str(s["n"]),
                f"{s['macro_f1']:.3f}",
                (f"{s['ci_low']:.3f}-{s['ci_high']:.3f}"
                 if np.isfinite(s["ci_low"]) and np.isfinite(s["ci_high"]) else "-"),
                f"{s['accuracy']:.3f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"engine: {report['engine']}"]
    if len(report.get("classes", SENTIMENTS)) == 2:
        lines.append("two classes (no text labelled neutral): each text counts as the likelier "
                     "of negative and positive (--three-way counts 'neutral' answers as errors)")
    for k, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    overall = report["overall"]
    if "confusion" in overall:
        w = max(len(s) for s in SENTIMENTS)
        lines += ["", "all languages, true (rows) against predicted (columns):",
                  " " * w + "".join(f"  {s:>{w}}" for s in SENTIMENTS) + f"  {'F1':>5}"]
        for c, s in enumerate(SENTIMENTS):
            f1 = overall["f1"][s]
            cells = "".join(f"  {v:>{w},}" for v in overall["confusion"][c])
            lines.append(f"{s:<{w}}{cells}  " + (f"{f1:>5.3f}" if np.isfinite(f1) else "    -"))
    emo = report.get("emotions")
    if emo:
        lines += ["", "emotions: likeliest emotion right, mean average precision over the eight"]
        for lang, e in [*emo["per_language"].items(), ("all", emo["overall"])]:
            right, ap = e["top_emotion_right"], e["average_precision"]
            lines.append(f"  {lang:<8} n {e['n']:>6,}  right "
                         + (f"{right:.3f}" if np.isfinite(right) else "  -  ")
                         + "  mean AP " + (f"{ap:.3f}" if np.isfinite(ap) else "-"))
    return "\n".join(lines)


def report_to_json(report: dict[str, Any]) -> str:
    """The report as JSON text (NaN written as null)."""

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not np.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        return o

    return json.dumps(clean(report), indent=2, ensure_ascii=False)


def eval_text_main(argv: list[str] | None = None) -> int:
    """``custdyn eval-text FILE [--engine NAME] [--json] [--n-boot N]``: print macro-F1 per
    language (and, for a file with an ``emotions`` column, how the engine reads them)."""
    ap = argparse.ArgumentParser(prog="custdyn eval-text", description=eval_text_main.__doc__)
    ap.add_argument("file", type=Path)
    ap.add_argument("--engine", default="default")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--languages", help="comma-separated languages of the texts, e.g. no,en")
    args = ap.parse_args(argv)
    got = labelled_rows(args.file)
    among = args.languages.split(",") if args.languages else None
    report = evaluate_sentiment(got.texts, [SENTIMENTS[k] for k in got.labels], got.languages,
                                engine=args.engine, n_boot=args.n_boot, among=among,
                                emotions=got.emotions)  # fmt: skip
    print(report_to_json(report) if args.json else render_report(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(eval_text_main())
