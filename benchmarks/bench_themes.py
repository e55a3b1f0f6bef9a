"""Feedback themes on the demo world, against the simulator's planted themes.

Two questions, on the world ``make demo`` builds (2,000 customers, seed 7; ``--quick``: 600,
seed 5), its customers' own messages as ``custdyn backlog`` reads them:

1. The texts the theme fit did not embed take a theme from those it did. The previous way,
   the similarity-weighted vote of the five nearest embedded texts on hashed byte n-grams
   (reproduced here as the peer), against the softmax regression on the same n-grams that
   ships (:func:`custdyn.text.themes.spread_themes`): both spread the same fit.
2. Themes the user names: N labelled messages per planted theme (and N labelled "none")
   added to the workspace, then :func:`custdyn.insights.fit_themes` as ``backlog`` runs it;
   and a partial naming (three of the six themes, and "none").

Purity and adjusted Rand index against the planted themes, over the messages nobody
labelled: over all of them (messages with no planted theme count as a class of their own),
and over the messages with a planted theme. Every fit embeds through one cache, so the
timings are those of the fit itself; the embedding is timed once.

``python -m benchmarks.run themes [--quick]``
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import ROOT, fmt_ratio, machine, update_section

LABELS = (5, 10, 25)
PARTIAL = ("app_bug", "late_delivery", "price")
DRAWS = 2


def _knn_vote(known: list[str], labels: list[str | None], new: list[str], k: int = 5,
              bits: int = 18) -> list[str | None]:
    """The peer: each new text takes the similarity-weighted vote of its ``k`` nearest known
    texts (cosine on hashed byte n-grams), as the theme fit did before."""
    from scipy import sparse

    from custdyn.text._hashing import sparse_features

    def unit(m: Any) -> Any:
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ m

    a = unit(sparse_features(known, bits))
    out: list[str | None] = []
    kk = min(k, len(known))
    for start in range(0, len(new), 2048):
        b = unit(sparse_features(new[start:start + 2048], bits))
        sim = np.asarray((b @ a.T).todense())
        near = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        for i in range(sim.shape[0]):
            votes: dict[str | None, float] = {}
            for j in near[i]:
                votes[labels[j]] = votes.get(labels[j], 0.0) + float(sim[i, j])
            out.append(max(votes, key=lambda lab: (votes[lab], lab is not None, lab or "")))
    return out


def _scores(truth: dict[str, str | None], got: dict[str, str | None],
            ids: list[str]) -> dict[str, float]:
    from custdyn.text.themes import adjusted_rand_index, purity

    ids = [i for i in ids if i in truth]
    tr = [truth[i] or "none" for i in ids]
    pr = [got.get(i) or "-" for i in ids]
    th = [j for j, i in enumerate(ids) if truth[i]]
    return {"n": len(ids), "purity": purity(tr, pr), "ari": adjusted_rand_index(tr, pr),
            "purity_themed": purity([tr[j] for j in th], [pr[j] for j in th]),
            "ari_themed": adjusted_rand_index([tr[j] for j in th], [pr[j] for j in th])}


def _world(d: Path, customers: int, seed: int) -> None:
    from typer.testing import CliRunner

    from custdyn.cli import app
    from custdyn.pipeline import analyze
    from custdyn.store import Workspace

    r = CliRunner().invoke(app, ["demo", str(d), "--customers", str(customers),
                                 "--seed", str(seed)])
    if r.exit_code != 0:
        raise RuntimeError(r.output)
    with Workspace.open(d) as ws:
        analyze(ws)


def run(quick: bool) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from custdyn.insights import _feedback_texts, fit_themes, scores_as_of
    from custdyn.store import Workspace
    from custdyn.text._encoder import encode
    from custdyn.text.labels import add_label
    from custdyn.text.salutations import strip_all
    from custdyn.text.themes import spread_themes

    customers, seed, max_embed = (600, 5, 400) if quick else (2000, 7, 600)
    res: dict[str, Any] = {"customers": customers, "seed": seed, "max_embed": max_embed}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "world"
        t0 = time.perf_counter()
        _world(base, customers, seed)
        res["world_s"] = time.perf_counter() - t0
        truth = {m["interaction_id"]: m["theme_id"] for m in
                 pq.read_table(base / "sources" / "truth" / "messages.parquet").to_pylist()}
        with Workspace.open(base, read_only=True) as ws:
            at = scores_as_of(ws, None)
            rows = _feedback_texts(ws, at, 365)
        ids = [r[0] for r in rows]
        texts = [str(r[3]) for r in rows]
        res["n_texts"] = len(rows)
        res["n_planted"] = sum(1 for i in ids if truth.get(i))
        cache: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        for t, v in zip(strip_all(texts), encode(strip_all(texts)), strict=True):
            cache[t] = v
        res["embed_s"] = time.perf_counter() - t0

        def cached(batch: list[str]) -> np.ndarray:
            missing = [t for t in dict.fromkeys(batch) if t not in cache]
            if missing:
                cache.update(zip(missing, encode(missing), strict=True))
            return np.stack([cache[t] for t in batch]) if batch else np.zeros((0, 384))

        # 1. spreading: the same fit, its sample's themes spread two ways
        with Workspace.open(base, read_only=True) as ws:
            t0 = time.perf_counter()
            plain = fit_themes(ws, max_embed=max_embed, embed=cached, store=False)
            res["fit_s"] = time.perf_counter() - t0
        sample = np.sort(np.random.default_rng(0).permutation(len(rows))[:max_embed])
        in_sample = set(int(i) for i in sample)
        rest = [i for i in range(len(rows)) if i not in in_sample]
        known = [texts[i] for i in sample]
        known_th = [plain.assignments[ids[i]] for i in sample]
        t0 = time.perf_counter()
        peer = _knn_vote(known, known_th, [texts[i] for i in rest])
        peer_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = spread_themes(known, known_th, [texts[i] for i in rest])
        ours_s = time.perf_counter() - t0
        rest_ids = [ids[i] for i in rest]
        res["spread"] = {
            "n_rest": len(rest),
            "peer": {**_scores(truth, dict(zip(rest_ids, peer, strict=True)), rest_ids),
                     "seconds": peer_s},
            "ours": {**_scores(truth, dict(zip(rest_ids, ours, strict=True)), rest_ids),
                     "seconds": ours_s},
            "embedded": _scores(truth, {ids[i]: plain.assignments[ids[i]] for i in sample},
                                [ids[i] for i in sample]),
        }
        print("spread", json.dumps(res["spread"], default=float), flush=True)

        # 2. themes the user names
        by: dict[str, list[str]] = defaultdict(list)
        for i in ids:
            if i in truth:
                by[truth[i] or "none"].append(i)
        text_of = dict(zip(ids, texts, strict=True))
        plans: list[tuple[str, int, tuple[str, ...] | None]] = [("none named", 0, None)]
        plans += [(f"{k} per theme", k, None) for k in LABELS]
        plans += [(f"10 per theme, {len(PARTIAL)} of {len(by) - 1} themes named", 10, PARTIAL)]
        res["named"] = {}
        for name, k, only in plans:
            draws = []
            for draw in range(DRAWS if k else 1):
                d = Path(tmp) / f"named-{k}-{draw}"
                shutil.copytree(base, d, ignore=shutil.ignore_patterns("custdyn.lock"))
                rnd = random.Random(draw)
                picked: dict[str, list[str]] = {}
                for th in sorted(by):
                    if k and (only is None or th in only or th == "none"):
                        picked[th] = rnd.sample(by[th], min(k, len(by[th])))
                labelled = {i for v in picked.values() for i in v}
                with Workspace.open(d) as ws:
                    for th, chosen in picked.items():
                        for i in chosen:
                            add_label(ws, text_of[i], "neutral", interaction_id=i, theme=th)
                    t0 = time.perf_counter()
                    ts = fit_themes(ws, max_embed=max_embed, embed=cached, store=False)
                    secs = time.perf_counter() - t0
                shutil.rmtree(d)
                free = [i for i in ids if i not in labelled]
                sc = _scores(truth, ts.assignments, free)
                sc.update(seconds=secs, themes=len(ts.themes),
                          named=sum(bool(t.get("named")) for t in ts.themes),
                          labels=len(labelled))
                if only:  # the themes nobody named: how much of each one found theme holds
                    sc["unnamed_found"] = {}
                    for th in sorted(set(by) - set(only) - {"none"}):
                        members = [ts.assignments.get(i) for i in free if truth.get(i) == th]
                        found = [t for t in members if t is not None and t not in only]
                        top = max(found.count(t) for t in set(found)) if found else 0
                        sc["unnamed_found"][th] = top / len(members) if members else 0.0
                draws.append(sc)
            avg: dict[str, Any] = {key: float(np.mean([s[key] for s in draws]))
                                   for key in ("purity", "ari", "purity_themed", "ari_themed",
                                               "seconds", "themes", "named", "labels")}
            if only:
                avg["unnamed_found"] = {th: float(np.mean([s["unnamed_found"][th]
                                                           for s in draws]))
                                        for th in draws[0]["unnamed_found"]}
            avg["draws"] = len(draws)
            res["named"][name] = avg
            print(name, json.dumps(avg, default=float), flush=True)
    return res


def markdown(res: dict[str, Any], load: str) -> str:
    s = res["spread"]
    p, o = s["peer"], s["ours"]
    lines = [
        "Command: `python -m benchmarks.run themes`. "
        f"Machine: {machine()}; load average at the end {load}.",
        "",
        f"The demo world ({res['customers']:,} customers, seed {res['seed']}): "
        f"{res['n_texts']:,} customer messages in the backlog's window, {res['n_planted']:,} "
        f"of them with a planted theme (six themes, in en, no, pt, tl and Taglish); "
        f"{res['max_embed']} embedded by the fit ({res['embed_s']:.0f} s to embed all of "
        f"them once, {res['fit_s']:.1f} s for a fit from the cache). Purity and adjusted "
        "Rand index against the planted themes; \"all\" counts the messages with no planted "
        "theme as a class of their own.",
        "",
        f"**Spreading the themes to the {s['n_rest']:,} texts the fit did not embed** (the "
        f"{res['max_embed']} embedded ones: purity {s['embedded']['purity']:.3f}, ARI "
        f"{s['embedded']['ari']:.3f}):",
        "",
        "| way | purity (all) | ARI (all) | purity (planted) | ARI (planted) | time |",
        "|---|---:|---:|---:|---:|---:|",
        f"| peer: vote of the 5 nearest on hashed n-grams | {p['purity']:.3f} | {p['ari']:.3f} "
        f"| {p['purity_themed']:.3f} | {p['ari_themed']:.3f} | {p['seconds']:.1f} s |",
        f"| ours: softmax regression on the same n-grams | {o['purity']:.3f} | {o['ari']:.3f} "
        f"| {o['purity_themed']:.3f} | {o['ari_themed']:.3f} | {o['seconds']:.1f} s |",
        "",
        f"Ours against the peer: purity (all) {o['purity'] / p['purity']:.2f}x, ARI (all) "
        f"{o['ari'] / p['ari']:.2f}x, time {fmt_ratio(o['seconds'], p['seconds'])}.",
        "",
        "**Themes the user names**: N labelled messages per planted theme and N labelled "
        "\"none\" (mean of "
        f"{DRAWS} draws), then the fit `custdyn backlog` makes; scored on the messages nobody "
        "labelled:",
        "",
        "| labels | purity (all) | ARI (all) | purity (planted) | ARI (planted) | themes "
        "(named) | fit |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in res["named"].items():
        lines.append(f"| {name} ({int(c['labels'])} labels) | {c['purity']:.3f} | "
                     f"{c['ari']:.3f} | {c['purity_themed']:.3f} | {c['ari_themed']:.3f} | "
                     f"{c['themes']:.1f} ({c['named']:.0f}) | {c['seconds']:.1f} s |")
    part = [c for c in res["named"].values() if "unnamed_found" in c]
    if part:
        found = ", ".join(f"{th} {v:.2f}" for th, v in part[0]["unnamed_found"].items())
        lines += ["", "With three themes named, the share of each unnamed planted theme's "
                  f"messages that the largest found theme holding them gathers: {found}."]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    res = run("--quick" in argv)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    update_section("themes", markdown(res, load))
    print(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:])
