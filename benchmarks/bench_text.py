"""Text engines: throughput and peak memory of the default and bulk engines, side by side with a
peer route (zero-shot: the same encoder with class prompts and no trained head), and their
three-class macro-F1 on held-out AfriSenti test tweets (never trained on).

The bulk engine is also timed on demo customer messages (five languages, as ``custdyn demo``
writes them), with batched language identification against py3langid called once per text
on the same texts in the same process.

Each route runs in its own child process (so peak memory is its own) limited to two threads.
``--quick`` uses fewer texts.
"""

from __future__ import annotations

import json
import os
import sys
import time

from benchmarks._common import (
    ROOT,
    child,
    fmt_ratio,
    machine,
    peak_rss_mib,
    run_measured,
    shared_note,
    update_section,
)

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


def demo_texts(n: int, seed: int = 3) -> list[str]:
    """``n`` demo customer messages, themed, cycling through the demo world's languages."""
    sys.path.insert(0, str(ROOT / "src"))
    from custdyn.demo.texts import sample_messages

    return sample_messages(n, seed)


def _child_demo(n: int, repeat: int) -> None:
    """Bulk analyzer and language identification on ``n`` demo messages; print JSON."""
    sys.path.insert(0, str(ROOT / "src"))
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from custdyn.text import TextAnalyzer
    from custdyn.text import _langid as L

    def one_at_a_time(text: str) -> str | None:
        """The peer: py3langid's ``classify`` per text, with the same cleaning and rules."""
        cleaned = L._URL.sub(" ", text)
        if not L._HAS_LETTER.search(cleaned):
            return None
        lang = ident.classify(cleaned)[0]
        code = L.ALIASES.get(lang, lang)
        return "tl" if code != "tl" and L._taglish_share(cleaned) >= 0.2 else code

    texts = demo_texts(n)
    ta = TextAnalyzer(engine="bulk")
    ta.analyze(texts[:2])
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ta.analyze(texts)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    peak = peak_rss_mib()  # the analyzer's own, before the peer's model is loaded
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    batch, each = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        langs = L.detect_many(texts)[0]
        batch.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = [one_at_a_time(t) for t in texts]
        each.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "n": n,
                "chars": sum(map(len, texts)) / n,
                "texts_per_s": n / min(walls),
                "cpu_s_per_text": min(cpus) / n,
                "analyzer_peak_rss_mib": peak,
                "langid_batch_per_s": n / min(batch),
                "langid_each_per_s": n / min(each),
                "langid_agree": sum(a == b for a, b in zip(langs, ref, strict=True)) / n,
            }
        )
    )


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


def long_reviews(n: int, seed: int = 3) -> tuple[list[str], list[int]]:
    """``n`` long 'reviews' of 14-20 held-out Portuguese tweets each, 80 % of one sentiment
    (about 1,900 characters): real text, though not real reviews; and that sentiment."""
    import numpy as np

    from custdyn.schema import SENTIMENTS

    with open(DATA / "afrisenti" / "pt_test.tsv", encoding="utf-8") as f:
        rows = [r.rstrip("\n").split("\t") for r in f][1:]
    texts = np.array([r[1] for r in rows if len(r) >= 3])
    labels = np.array([SENTIMENTS.index(r[2].strip()) for r in rows if len(r) >= 3])
    rng = np.random.default_rng(seed)
    docs, y = [], []
    for i in range(n):
        c = i % 3
        k = int(rng.integers(14, 21))
        n_off = int(rng.binomial(k, 0.2))
        own = rng.choice(np.flatnonzero(labels == c), k - n_off, replace=False)
        off = rng.choice(np.flatnonzero(labels != c), n_off, replace=False)
        docs.append(" ".join(t.strip() for t in texts[rng.permutation(np.r_[own, off])]))
        y.append(c)
    return docs, y


def _child_long(n: int) -> None:
    """Default and bulk engines on long texts, read through (now) and from the start only (as
    before: the default engine's first 2,000 characters, the bulk engine's first 1,000 bytes)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    from custdyn.schema import SENTIMENTS
    from custdyn.text import TextAnalyzer, _encoder, _hashing
    from custdyn.text.evaluation import macro_f1

    docs, y = long_reviews(n)
    out: dict = {"n": n, "chars": sum(map(len, docs)) / n}
    encode, ends = _encoder.encode, _hashing._ends
    for engine in ("default", "bulk"):
        for through in (True, False):
            _encoder.encode = (encode if through else  # type: ignore[assignment]
                               lambda t, long_texts=True: encode(t, long_texts=False))  # fmt: skip
            _hashing._ends = ends if through else lambda d, long_texts: d[:1000]  # type: ignore[assignment]
            ta = TextAnalyzer(engine)
            ta.analyze(docs[:1], language="pt")
            t0 = time.perf_counter()
            got = ta.analyze(docs, language="pt")["sentiment"].to_pylist()
            seconds = time.perf_counter() - t0
            f1 = macro_f1(np.array(y), np.array([SENTIMENTS.index(s) for s in got]))
            out[f"{engine}-{'through' if through else 'start'}"] = {
                "texts_per_s": n / seconds, "f1": f1}
    print(json.dumps(out))


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
        if flags[i + 1] == "bulk-demo":
            _child_demo(int(flags[i + 2]), int(flags[i + 3]))
        elif flags[i + 1] == "long":
            _child_long(int(flags[i + 2]))
        else:
            _child(flags[i + 1], int(flags[i + 2]), int(flags[i + 3]))
        return
    quick = "--quick" in flags
    load_start = os.getloadavg()[0]
    n_full = 100 if quick else 400
    n_bulk = 2000 if quick else 6000
    env = {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    routes = [
        ("bulk-demo", 5000 if quick else 20000, 3),
        ("default", n_full, 1),
        ("bulk", n_bulk, 5),
        ("zero-shot", n_full, 1),
        ("long", 30 if quick else 90, 1),
    ]
    res = {}
    for route, n, repeat in routes:
        r = run_measured(child("benchmarks.bench_text", "--child", route, str(n), str(repeat)), env)
        res[route] = {**r["result"], "peak_rss_mib": r["peak_rss_mib"]}
        print(route, json.dumps(res[route]), flush=True)
    d, b, z, m = res["default"], res["bulk"], res["zero-shot"], res["bulk-demo"]
    lg = res["long"]
    load_end = os.getloadavg()[0]
    lines = [
        "## Text engines",
        "",
        f"Command: `python -m benchmarks.run text{' --quick' if quick else ''}`. "
        f"Machine: {machine()}; 1-minute load average {load_start:.1f} at the start of the run "
        f"and {load_end:.1f} at the end{shared_note(load_start, load_end)}. "
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
        "",
        f"Bulk engine on {m['n']:,} demo customer messages (en, pt, no, tl and Taglish; "
        f"{m['chars']:.0f} characters on average): `TextAnalyzer('bulk').analyze` "
        f"{m['texts_per_s']:,.0f} texts/s ({m['cpu_s_per_text'] * 1e6:.0f} us of process CPU "
        f"time per text), peak {m['analyzer_peak_rss_mib']:.0f} MiB. Language identification "
        f"for the whole batch at once (one automaton walk and one sparse product for all texts): "
        f"{m['langid_batch_per_s']:,.0f} texts/s; the peer, py3langid called once per text on "
        f"the same texts: {m['langid_each_per_s']:,.0f} texts/s "
        f"({fmt_ratio(1 / m['langid_batch_per_s'], 1 / m['langid_each_per_s'])}; "
        f"same language for {m['langid_agree']:.1%} of texts).",
        "",
        f"Long texts: {lg['n']} 'reviews' of 14-20 held-out Portuguese tweets each, 80 % of one "
        f"sentiment ({lg['chars']:,.0f} characters on average; real text, not real reviews). "
        "Read through (now: the default engine in pieces of at most 500 characters, the bulk "
        "engine from both ends) against read as before (the default engine: the text as one, "
        "cut at 2,000 characters; the bulk engine: its first 1,000 bytes):",
        "",
        "| engine | read through: texts/s | macro-F1 | as before: texts/s | macro-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for engine in ("default", "bulk"):
        a, s = lg[f"{engine}-through"], lg[f"{engine}-start"]
        lines.append(f"| {engine} | {a['texts_per_s']:,.1f} | {a['f1']:.3f} | "
                     f"{s['texts_per_s']:,.1f} | {s['f1']:.3f} |")  # fmt: skip
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
