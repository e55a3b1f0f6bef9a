"""A workspace's languages: each message detected alone (the peer, as ``enrich`` did before)
against detected with the shares of languages learnt once over the workspace's messages
(``custdyn enrich`` now; :func:`custdyn.text.language_shares`).

Sets of customer-like messages, each standing for one workspace (the truth is the language
each message was written in):

- the demo world's short Norwegian sentences (the text banks' fixed lines) with its English
  ones, one part English to four Norwegian: short texts, where close languages are confused;
- 20,000 demo customer messages (en, pt, no, tl and Taglish in equal parts; 126 characters
  on average);
- with ``../shared/data/xed`` present: XED's Norwegian subtitle lines (4,000) with a fifth as
  many English ones, and its Portuguese and Brazilian Portuguese lines (2,000 each) with a
  tenth as many Spanish ones.

For each: the share of messages read as their language, per language, alone and with the
shares; the time to learn the shares (from a sample of at most 20,000 messages) and the speed
of detection both ways. Then the whole path: ``custdyn enrich`` (bulk engine) on a workspace
of the 20,000 demo messages, and how much of its time learning the shares took.

``python -m benchmarks.run text_languages``
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, fmt_ratio, machine, update_section

XED = ROOT.parent / "shared" / "data" / "xed"


def _short_lines() -> tuple[list[str], list[str]]:
    from custdyn.demo.texts import fixed_sentences

    no, en = fixed_sentences("no"), fixed_sentences("en")
    en = en[: len(no) // 4]
    return no + en, ["no"] * len(no) + ["en"] * len(en)


def _demo_messages(n: int = 20_000) -> tuple[list[str], list[str]]:
    from custdyn.demo.texts import LANGS, sample_messages

    texts = sample_messages(n)
    return texts, [{"taglish": "tl"}.get(LANGS[k % len(LANGS)], LANGS[k % len(LANGS)])
                   for k in range(n)]  # fmt: skip


def _xed(files: dict[str, tuple[str, int]], seed: int = 11) -> tuple[list[str], list[str]]:
    """``files``: XED file stem -> (language code, lines); a seeded sample of each."""
    rnd = random.Random(seed)
    texts, langs = [], []
    for stem, (code, n) in files.items():
        name = "en-annotated.tsv" if stem == "en" else f"{stem}-projections.tsv"
        with open(XED / name, encoding="utf-8") as f:
            lines = [ln.split("\t")[0].strip() for ln in f if ln.strip()]
        lines = [t for t in dict.fromkeys(lines) if t]
        for t in rnd.sample(lines, min(n, len(lines))):
            texts.append(t)
            langs.append(code)
    return texts, langs


def _read_right(found: list[str | None], truth: list[str]) -> dict[str, float]:
    out: dict[str, list[int]] = {}
    for g, t in zip(found, truth, strict=True):
        out.setdefault(t, [0, 0])
        out[t][0] += g == t
        out[t][1] += 1
    return {t: a / b for t, (a, b) in out.items()}


def _best(fn: Callable[[], Any], repeat: int = 3) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def measure_set(texts: list[str], truth: list[str]) -> dict[str, Any]:
    from custdyn.text import detect_languages, language_shares

    alone, t_alone = _best(lambda: detect_languages(texts)[0])
    shares, t_learn = _best(lambda: language_shares(texts))
    kept, t_kept = _best(lambda: detect_languages(texts, shares=shares)[0])
    return {"n": len(texts), "chars": sum(map(len, texts)) / len(texts),
            "alone": _read_right(alone, truth), "shares": _read_right(kept, truth),
            "learn_s": t_learn, "alone_per_s": len(texts) / t_alone,
            "shares_per_s": len(texts) / t_kept,
            "top": {g: round(v, 3) for g, v in list(shares.items())[:4]}}  # fmt: skip


def measure_enrich(texts: list[str]) -> dict[str, Any]:
    """``enrich`` (bulk engine) on a fresh workspace of ``texts``, which learns the shares
    first; then learning them again on its own, for its part of the run."""
    from custdyn.pipeline import enrich
    from custdyn.settings import Settings
    from custdyn.store import Workspace
    from custdyn.text.analyzer import learn_language_shares

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        log.write_text("\n".join(json.dumps({
            "interaction_id": f"m{i}", "customer_id": f"C{i % 4000}",
            "occurred_at": "2024-03-01T10:00:00Z", "channel": "email", "kind": "feedback",
            "direction": "inbound", "text": t}) for i, t in enumerate(texts)) + "\n")
        w = Workspace.create(Path(tmp) / "ws", Settings())
        try:
            w.ingest(log)
            r = enrich(w, "bulk")
            t0 = time.perf_counter()
            learn_language_shares(w)
            learn_s = time.perf_counter() - t0
        finally:
            w.close()
    if not r.languages_learnt or r.scored != len(texts):
        raise RuntimeError(f"enrich scored {r.scored} of {len(texts)} messages")
    return {"n": r.scored, "seconds": r.seconds, "learn_s": learn_s}


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sets: dict[str, tuple[list[str], list[str]]] = {
        "demo's short Norwegian and English sentences": _short_lines(),
        "20,000 demo customer messages": _demo_messages(),
    }
    if XED.exists():
        sets["XED Norwegian lines, a fifth as many English"] = _xed(
            {"no": ("no", 4000), "en": ("en", 800)})
        sets["XED Portuguese lines (pt, br), a tenth as many Spanish"] = _xed(
            {"pt": ("pt", 2000), "br": ("pt", 2000), "es": ("es", 400)})
    rows = {}
    for name, (texts, truth) in sets.items():
        rows[name] = measure_set(texts, truth)
        print(name, json.dumps(rows[name]), flush=True)
    e = measure_enrich(_demo_messages()[0])
    print("enrich", json.dumps(e), flush=True)

    lines = [
        "## A workspace's languages (language detection with its shares)",
        "",
        f"Command: `python -m benchmarks.run text_languages`. Machine: {machine()}.",
        "",
        "Each set stands for one workspace's messages. Read right: the share of messages "
        "detected as the language they were written in, each message alone (the peer: how "
        "`enrich` detected them before) and with the shares of languages learnt once over "
        "the set (how `enrich` detects them now). Speeds are detection of the whole set, "
        "best of 3.",
        "",
        "| set | messages | characters | language | read right alone | with the shares |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, r in rows.items():
        for k, lang in enumerate(r["alone"]):  # languages in the order the set holds them
            head = f"| {name} | {r['n']:,} | {r['chars']:.0f} |" if k == 0 else "| | | |"
            lines.append(f"{head} {lang} | {r['alone'][lang]:.3f} | "
                         f"**{r['shares'][lang]:.3f}** |")
    lines += ["", "| set | learning the shares | detection alone | with the shares | shares learnt |",
              "|---|---:|---:|---:|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['learn_s'] * 1000:,.0f} ms | {r['alone_per_s']:,.0f} texts/s | "
                     f"{r['shares_per_s']:,.0f} texts/s "
                     f"({fmt_ratio(1 / r['shares_per_s'], 1 / r['alone_per_s'])}) | "
                     f"{', '.join(f'{g} {v:.0%}' for g, v in r['top'].items())} |")
    lines += [
        "",
        f"`custdyn enrich --engine bulk` on a fresh workspace of the {e['n']:,} demo messages "
        f"(customers without a language): {e['seconds']:.1f} s in all, of which learning the "
        f"shares (reading a sample of up to 20,000 messages and keeping them) "
        f"{e['learn_s']:.2f} s ({e['learn_s'] / e['seconds']:.0%}); {e['n'] / e['seconds']:,.0f} messages/s in all. Later runs read the kept "
        "shares and learn nothing until the messages have doubled.",
    ]
    update_section("text-languages", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
