"""Text engines: throughput and peak memory of the default and bulk engines, side by side with a
peer route (zero-shot: the same encoder with class prompts and no trained head), and their
three-class macro-F1 on held-out AfriSenti test tweets (never trained on).

Each route runs in its own child process (so peak memory is its own) limited to two threads.
``--quick`` uses fewer texts.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks._common import ROOT, child, fmt_ratio, machine, run_measured, update_section

DATA = ROOT.parent / "shared" / "data"


def _texts(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Up to ``n`` held-out test tweets (Portuguese and Pidgin, half each), labels and language."""
    import numpy as np

    texts, labels, langs = [], [], []
    for lang in ("pt", "pcm"):
        rows = []
        with open(DATA / "afrisenti" / f"{lang}_test.tsv", encoding="utf-8") as f:
            next(f)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 3:
                    rows.append((parts[1], parts[2]))
        rng = np.random.default_rng(seed)
        for i in rng.permutation(len(rows))[: n // 2]:
            texts.append(rows[i][0])
            labels.append(rows[i][1])
            langs.append(lang)
    return texts, labels, langs


def _child(route: str, n: int, repeat: int) -> None:
    """Score ``n`` texts with ``route`` and print JSON (texts/s, macro-F1 per language)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    from custdyn.schema import SENTIMENTS
    from custdyn.text import TextAnalyzer
    from custdyn.text.evaluation import macro_f1

    texts, labels, langs = _texts(n)
    if route == "zero-shot":
        from custdyn.text._encoder import encode
        from custdyn.text.engines import load_weights

        w = load_weights("heads")
        encode(texts[:2])
        t0 = time.perf_counter()
        sims = encode(texts) @ w["zs_prompts"].T
        seconds = time.perf_counter() - t0
        pred = sims.argmax(1)
    else:
        ta = TextAnalyzer(engine=route)
        ta.analyze(texts[:2])  # load weights before timing
        t0 = time.perf_counter()
        for _ in range(repeat):
            table = ta.analyze(texts * 1)
        seconds = (time.perf_counter() - t0) / repeat
        pred = np.array([SENTIMENTS.index(s) for s in table.column("sentiment").to_pylist()])
    y = np.array([SENTIMENTS.index(v) for v in labels])
    g = np.array(langs)
    f1 = {lang: macro_f1(y[g == lang], pred[g == lang]) for lang in ("pt", "pcm")}
    print(json.dumps({"texts_per_s": len(texts) / seconds, "n": len(texts), "f1": f1}))


def demo_themes(per_theme: int = 40, seed: int = 3) -> dict:
    """Planted themes of the demo world (six themes, five languages): purity and ARI."""
    import random

    sys.path.insert(0, str(ROOT / "src"))
    from custdyn.demo.texts import LANGS, THEME_EMOTIONS, Texts
    from custdyn.text import ThemeModel, adjusted_rand_index, purity

    gen = Texts(seed, "Lumen")
    rnd = random.Random(seed)
    texts, truth, langs, customers = [], [], [], []
    for theme in THEME_EMOTIONS:
        for k in range(per_theme):
            lang = LANGS[k % len(LANGS)]
            code = "tl" if lang == "taglish" else lang
            sentiment, emotion = gen.sample_emotion(theme, rnd.random())
            c = gen.ctx(lang)
            texts.append(gen.themed(lang, theme, sentiment, emotion, c, letter=rnd.random() < 0.5))
            truth.append(theme)
            langs.append(code)
            customers.append(f"C{rnd.randint(0, per_theme * 3)}")
    t0 = time.perf_counter()
    model = ThemeModel().fit(texts, customer_ids=customers, languages=langs)
    seconds = time.perf_counter() - t0
    pred = [x or "none" for x in model.labels_]
    return {
        "n": len(texts),
        "planted": len(THEME_EMOTIONS),
        "found": len(model.themes_),
        "purity": purity(truth, pred),
        "ari": adjusted_rand_index(truth, pred),
        "no_theme": sum(x is None for x in model.labels_) / len(texts),
        "seconds": seconds,
        "names": [t["name"] for t in model.themes_],
    }


def main(flags: list[str]) -> None:
    if "--child" in flags:
        i = flags.index("--child")
        _child(flags[i + 1], int(flags[i + 2]), int(flags[i + 3]))
        return
    quick = "--quick" in flags
    n_full = 100 if quick else 400
    n_bulk = 2000 if quick else 6000
    env = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    routes = [("default", n_full, 1), ("bulk", n_bulk, 5), ("zero-shot", n_full, 1)]
    res = {}
    for route, n, repeat in routes:
        r = run_measured(child("benchmarks.bench_text", "--child", route, str(n), str(repeat)), env)
        res[route] = {**r["result"], "peak_rss_mib": r["peak_rss_mib"]}
        print(route, json.dumps(res[route]), flush=True)
    d, b, z = res["default"], res["bulk"], res["zero-shot"]
    lines = [
        "## Text engines",
        "",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run "
        "(the cores are shared: throughput is lower than on idle cores). "
        "Two threads (`OMP_NUM_THREADS=2`). Texts: held-out AfriSenti "
        "test tweets (Mozambican Portuguese and Nigerian Pidgin, half each; never trained on). "
        "Macro-F1 is three-class sentiment on the same texts; peak memory is the whole child "
        "process (Python, numpy, weights, encoder). The peer is the zero-shot route: the same "
        "encoder with class prompts and no trained head.",
        "",
        "| route | texts | texts/s | peak MiB | macro-F1 pt | macro-F1 pcm |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("custdyn default", d), ("custdyn bulk", b), ("peer: zero-shot", z)):
        lines.append(
            f"| {name} | {r['n']} | {r['texts_per_s']:,.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['f1']['pt']:.3f} | {r['f1']['pcm']:.3f} |"
        )
    lines += [
        "",
        f"Bulk vs default: {fmt_ratio(1 / b['texts_per_s'], 1 / d['texts_per_s'])}; macro-F1 "
        f"difference pt {b['f1']['pt'] - d['f1']['pt']:+.3f}, pcm {b['f1']['pcm'] - d['f1']['pcm']:+.3f}. "
        f"Default vs zero-shot peer: {fmt_ratio(1 / d['texts_per_s'], 1 / z['texts_per_s'])}, "
        f"macro-F1 pt {d['f1']['pt'] - z['f1']['pt']:+.3f}, pcm {d['f1']['pcm'] - z['f1']['pcm']:+.3f}.",
    ]
    th = demo_themes(10 if quick else 20)
    print("themes", json.dumps(th, ensure_ascii=False), flush=True)
    lines += [
        "",
        f"Feedback themes on the demo world: {th['n']} themed customer messages "
        f"({th['planted']} planted themes in en, pt, no, tl and Taglish): {th['found']} themes "
        f"found, purity {th['purity']:.2f}, adjusted Rand index {th['ari']:.2f}, "
        f"{th['no_theme']:.0%} left without a theme, {th['seconds']:.0f} s (embedding included).",
    ]
    update_section("text", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
    os._exit(0)
