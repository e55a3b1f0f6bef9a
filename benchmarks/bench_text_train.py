"""Workspace text models: learning curves (macro-F1 per language against labels used) on
held-out text never trained on, training time for 1,000 labels, and scoring speed beside the
shipped default engine.

Data (``../shared/data``): AfriSenti Portuguese and Nigerian Pidgin tweets (labels drawn from
``train``, scored on ``test``); XED subtitle lines (Öhman et al., 2020) mapped to polarity
(joy, trust -> positive; anger, disgust, fear, sadness -> negative; the English neutral lines
-> neutral), split once with a fixed seed into a label pool and a held-out part. Norwegian XED
has no neutral lines, so its curve is two-class text scored as three-class.

``--quick``: two sizes, one draw, Portuguese only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT, machine, update_section

DATA = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("CUSTDYN_BENCH_CACHE", "/tmp/custdyn-text-cache"))
SEED = 7
SENT = ("negative", "neutral", "positive")


def _afrisenti(lang: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_text as tt  # the script that trained the shipped heads: same reading, same cache

    out: dict[str, Any] = {}
    for split in ("train", "test"):
        texts, labels = tt.read_afrisenti(DATA, lang, split)
        out[split] = (texts, np.array([SENT.index(v) for v in labels]),
                      tt.embed_cached(f"afri-{lang}-{split}", texts, CACHE))  # fmt: skip
    return out


def _xed(lang: str, cap: int, n_neutral: int, n_pool: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_text as tt

    from custdyn.text.train import embed_texts

    pol = {1: 0, 3: 0, 4: 0, 6: 0, 5: 2, 8: 2}
    texts, labels = tt.read_xed(DATA, lang)
    keep = []
    for t, labs in zip(texts, labels, strict=True):
        ps = {pol[v] for v in labs if v in pol}
        if len(ps) == 1:
            keep.append((t, ps.pop()))
    rng = np.random.default_rng(SEED)
    rows = [keep[i] for i in rng.permutation(len(keep))[:cap]]
    if n_neutral:
        neu = tt.read_neutral(DATA)
        rows += [(neu[i], 1) for i in rng.permutation(len(neu))[:n_neutral]]
    emb = embed_texts([r[0] for r in rows], CACHE / f"xed-polarity-{lang}.npz")
    order = np.random.default_rng(SEED + 1).permutation(len(rows))
    y = np.array([r[1] for r in rows])[order]
    t = [rows[i][0] for i in order]
    emb = emb[order]
    return {"train": (t[:n_pool], y[:n_pool], emb[:n_pool]),
            "test": (t[n_pool:], y[n_pool:], emb[n_pool:])}  # fmt: skip


def curves(quick: bool) -> dict[str, Any]:
    from custdyn.text.train import HeadConfig, build_features, learning_curve

    sets = {"pt (AfriSenti tweets)": ("pt", lambda: _afrisenti("pt")),
            "pcm (AfriSenti tweets)": ("pcm", lambda: _afrisenti("pcm")),
            "en (XED subtitles)": ("en", lambda: _xed("en", 3000, 1500, 3000)),
            "no (XED subtitles, 2-class)": ("no", lambda: _xed("no", 3000, 0, 2000))}  # fmt: skip
    if quick:
        sets = {k: v for k, v in sets.items() if v[0] == "pt"}
    sizes = [100, 1000] if quick else [50, 100, 250, 500, 1000]
    repeats = 1 if quick else 2
    out: dict[str, Any] = {}
    for name, (code, load) in sets.items():
        d = load()
        for cname, cfg in (("head", HeadConfig()), ("head, no n-grams", HeadConfig(use_ngrams=False))):
            tr = build_features(d["train"][0], [code] * len(d["train"][0]), emb=d["train"][2],
                                bits=cfg.bits)  # fmt: skip
            te = build_features(d["test"][0], [code] * len(d["test"][0]), emb=d["test"][2],
                                bits=cfg.bits)  # fmt: skip
            t0 = time.perf_counter()
            c = learning_curve(tr, d["train"][1], sizes, config=cfg, heldout=(te, d["test"][1]),
                               repeats=repeats, seed=SEED)  # fmt: skip
            c["seconds"] = time.perf_counter() - t0
            c["n_heldout"] = len(d["test"][1])
            out[f"{name} | {cname}"] = c
            print(name, cname, json.dumps(c["per_language"]), flush=True)
    return out


def timing() -> dict[str, Any]:
    """Training a head on 1,000 labels (as train-text: 5-fold CV + final fit), and scoring."""
    from custdyn.text.engines import DefaultEngine
    from custdyn.text.train import HeadConfig, build_features, train_head
    from custdyn.text.workspace_models import WorkspaceEngine

    d = _afrisenti("pt")
    texts, y, emb = d["train"]
    rng = np.random.default_rng(SEED)
    pick = rng.choice(len(y), 1000, replace=False)
    out: dict[str, Any] = {}
    # embedding rate on fresh texts (no cache): what train-text pays once per new label
    fresh = [texts[i] + " ." for i in pick[:200]]
    t0 = time.perf_counter()
    build_features(fresh, ["pt"] * len(fresh))
    out["embed_per_s"] = len(fresh) / (time.perf_counter() - t0)
    for cname, cfg in (("head", HeadConfig()), ("head, no n-grams", HeadConfig(use_ngrams=False))):
        f = build_features([texts[i] for i in pick], ["pt"] * 1000, emb=emb[pick], bits=cfg.bits)
        t0 = time.perf_counter()
        head, _, _ = train_head(f, y[pick], cfg, folds=5)
        out[f"fit_1000_s | {cname}"] = time.perf_counter() - t0
    # scoring speed: the trained engine against the shipped default on the same 256 texts
    sample = [texts[i] for i in pick[:256]]
    langs: list[str | None] = ["pt"] * len(sample)
    ws_engine = WorkspaceEngine(head=head, version="workspace:bench")
    default = DefaultEngine()
    for name, eng in (("default", default), ("workspace", ws_engine), ("default", default)):
        t0 = time.perf_counter()
        eng.predict(sample, langs)
        out[f"score_per_s | {name}"] = len(sample) / (time.perf_counter() - t0)
    return out


def _md(res: dict[str, Any], tim: dict[str, Any], load: str) -> str:
    lines = [
        "Command: `OPENBLAS_NUM_THREADS=1 python -m benchmarks.run text_train`. "
        f"Machine: {machine()}. Load average while measuring: {load} (the machine is shared; "
        "absolute times are noisy).",
        "",
        "Learning curves: sentiment macro-F1 on held-out text (never trained on) against labels "
        "drawn from the same domain (mean of draws); 0 = the shipped default engine.",
        "",
    ]
    sizes = sorted({s for c in res.values() for s in c["sizes"]})
    lines.append("| data | model | held-out n | " + " | ".join(str(s) for s in sizes) + " |")
    lines.append("|---|---|---:|" + "---:|" * len(sizes))
    for key, c in res.items():
        name, model = key.split(" | ")
        for _lang, pts in c["per_language"].items():
            got = {p["n"]: p["macro_f1"] for p in pts}
            cells = [f"{got[s]:.3f}" if s in got else "" for s in sizes]
            lines.append(f"| {name} | {model} | {c['n_heldout']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training (1,000 Portuguese labels, 5-fold CV of the three candidate settings + final "
        "fit, embeddings cached): "
        f"{tim['fit_1000_s | head']:.0f} s with n-grams, "
        f"{tim['fit_1000_s | head, no n-grams']:.0f} s without; embedding new labels "
        f"{tim['embed_per_s']:.0f} texts/s, so `train-text` on 1,000 new labels takes about "
        f"{1000 / tim['embed_per_s'] + tim['fit_1000_s | head']:.0f} s in all.",
        "",
        f"Scoring 256 tweets: default engine {tim['score_per_s | default']:.0f} texts/s, "
        f"trained workspace engine {tim['score_per_s | workspace']:.0f} texts/s (ratio "
        f"{tim['score_per_s | workspace'] / tim['score_per_s | default']:.2f}; both spend their "
        "time in the same encoder).",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    res = curves(quick)
    tim = timing()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    (CACHE / "bench-text-train.json").write_text(json.dumps({"curves": res, "timing": tim}))
    update_section("text-train", _md(res, tim, load))
    print(json.dumps(tim, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
