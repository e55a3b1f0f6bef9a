"""The bulk engine taught a workspace's words (``custdyn train-text --bulk``), against the
shipped bulk table and the default engine it learns from, on held-out text.

For each data set, a pool of texts stands for the workspace's messages: the default engine
reads them (no labels are used) and the shipped table's rows for their n-grams are refitted to
what it read (:func:`custdyn.text.distil.fit_table`, as ``train-text --bulk`` does). The three
engines are then scored on labelled texts that are not in the pool.

- English subtitles (XED, Öhman et al., 2020): lines the shipped heads and table never saw.
  Held out: the 1,500 lines of one clear polarity (joy, trust -> positive; anger, disgust,
  fear, sadness -> negative) and 750 neutral lines that ``scripts/train_text.py`` keeps out of
  all training (``xed_english_unseen``); the pool: 3,000 other lines, unlabelled.
- Portuguese tweets (AfriSenti, Muhammad et al., 2023): the test split (never trained on),
  halved at random: the pool is one half, the other half is held out.
- The demo world: a fresh ``custdyn demo`` workspace; held out: its labelled sample
  (``sources/truth/labelled.csv``); the pool: 3,000 of its other inbound messages. Its
  messages are composed from templates, so pool and held-out texts share phrasings: the
  best case for a workspace whose customers write alike.

``--quick``: pools of 1,000 and the demo world only.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT, machine, update_section

DATA = ROOT.parent / "shared" / "data"
SEED = 11
POOL = 3000


def _xed_en(pool: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_text as tt  # the script that trained the shipped heads and table

    unseen = tt.xed_english_unseen(DATA)
    trained = set(tt.xed_extra(DATA, "en")[0]) | set(tt.xed_extra(DATA, "neutral")[0])
    rest = [t for t, _ in unseen["rest"] if t not in trained]
    return {"pool": rest[:min(pool, tt.BENCH_POOL_EN)], "texts": [t for t, _ in unseen["held"]],
            "y": [y for _, y in unseen["held"]], "languages": ["en"] * len(unseen["held"])}  # fmt: skip


def _pt_tweets(pool: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_text as tt

    texts, labels = tt.read_afrisenti(DATA, "pt", "test")
    order = np.random.default_rng(SEED).permutation(len(texts))
    half = len(texts) // 2
    held = order[half:]
    return {"pool": [texts[i] for i in order[:half][:pool]],
            "texts": [texts[i] for i in held],
            "y": [("negative", "neutral", "positive").index(labels[i]) for i in held],
            "languages": ["pt"] * len(held)}  # fmt: skip


def _demo(pool: int, where: Path) -> dict[str, Any]:
    import subprocess

    import custdyn
    from custdyn.text.distil import sample_messages

    ws_dir = where / "demo"
    exe = Path(sys.executable).with_name("custdyn")
    done = subprocess.run([str(exe), "demo", str(ws_dir)], capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: the analysis ran and warned
        raise RuntimeError(f"custdyn demo failed: {done.stderr[-2000:]}")
    with open(ws_dir / "sources" / "truth" / "labelled.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    held = {r["text"] for r in rows}
    ws = custdyn.Workspace.open(ws_dir, read_only=True)
    try:
        texts = [t for t in sample_messages(ws, pool + len(held), seed=SEED) if t not in held]
    finally:
        ws.close()
    return {"pool": texts[:pool], "texts": [r["text"] for r in rows],
            "y": [("negative", "neutral", "positive").index(r["label"]) for r in rows],
            "languages": [r["language"] for r in rows]}  # fmt: skip


def _score(engine: Any, d: dict[str, Any]) -> tuple[dict[str, float], float]:
    from custdyn.text import TextAnalyzer
    from custdyn.text.evaluation import macro_f1

    ta = TextAnalyzer(engine)
    t0 = time.perf_counter()
    langs, _, sent, _ = ta.scores(d["texts"], d["languages"])
    seconds = time.perf_counter() - t0
    y, pred = np.array(d["y"]), np.nan_to_num(sent).argmax(1)
    out = {"all": macro_f1(y, pred)}
    for lang in sorted(set(d["languages"])):
        m = np.array([g == lang for g in d["languages"]])
        if m.sum() >= 50 and len(set(d["languages"])) > 1:
            out[lang] = macro_f1(y[m], pred[m])
    return out, len(d["texts"]) / seconds


def run(quick: bool) -> dict[str, Any]:
    from custdyn.text import TextAnalyzer
    from custdyn.text.distil import fit_table, teach
    from custdyn.text.engines import BulkEngine, make_engine

    pool = 1000 if quick else POOL
    shipped = make_engine("bulk")
    assert isinstance(shipped, BulkEngine)
    teacher = TextAnalyzer("default")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"demo world (templated)": lambda: _demo(pool, Path(tmp))}
        if not quick:
            sets = {"en XED subtitles": lambda: _xed_en(pool),
                    "pt AfriSenti tweets": lambda: _pt_tweets(pool)} | sets  # fmt: skip
        for name, load in sets.items():
            d = load()
            t0 = time.perf_counter()
            bodies, _, targets = teach(d["pool"], teacher)
            teach_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            table, bias = fit_table(bodies, targets, shipped.table, shipped.bias)
            fit_s = time.perf_counter() - t0
            taught = shipped.with_table(table, bias, "workspace:v1")
            res: dict[str, Any] = {"pool": len(bodies), "held_out": len(d["texts"]),
                                   "teacher_s": teach_s, "fit_s": fit_s}  # fmt: skip
            for label, eng in (("shipped bulk", shipped), ("taught bulk", taught),
                               ("default", "default")):  # fmt: skip
                res[label], res[f"{label} texts/s"] = _score(eng, d)
            print(name, json.dumps(res, default=float), flush=True)
            out[name] = res
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def markdown(res: dict[str, Any], load: str) -> str:
    lines = [
        "## The bulk engine taught a workspace's words (`train-text --bulk`)",
        "",
        "Command: `python -m benchmarks.bench_text_distil`. "
        f"Machine: {machine()}; load average at the end {load}.",
        "",
        "The default engine reads a pool of texts standing for the workspace's messages (no "
        "labels); the shipped bulk table's rows for their n-grams are refitted to what it read. "
        "Three-class sentiment macro-F1 on held-out labelled texts not in the pool (see the "
        "module's docstring for each set).",
        "",
        "| held-out set (pool, held out) | shipped bulk | taught bulk | default | gap to default: before → after |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in res.items():
        if not isinstance(r, dict):
            continue
        for key in r["default"]:
            label = (f"{name} ({r['pool']:,}, {r['held_out']:,})" if key == "all"
                     else f"{name}: {key} only")  # fmt: skip
            a, b, c = r["shipped bulk"][key], r["taught bulk"][key], r["default"][key]
            lines.append(f"| {label} | {a:.3f} | {b:.3f} | {c:.3f} | {a - c:+.3f} → {b - c:+.3f} |")
    sets = [(n, r) for n, r in res.items() if isinstance(r, dict)]
    lines += ["", "Cost: " + "; ".join(
        f"{n}: the default engine read the pool at {r['pool'] / r['teacher_s']:,.0f} texts/s, "
        f"the fit took {r['fit_s']:.1f} s" for n, r in sets) + ". Scoring speed of the taught "
        "table (texts/s, language identification included) against the shipped one: " + "; ".join(
        f"{r['taught bulk texts/s']:,.0f} against {r['shipped bulk texts/s']:,.0f}" for _, r in sets)
        + f" (the same table size: the same work). Peak memory of the run "
        f"{res['peak_rss_mib']:,.0f} MiB (the encoder included)."]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    res = run("--quick" in argv)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    update_section("text-distil", markdown(res, load))
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:])
