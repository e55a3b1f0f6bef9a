"""Defection reasons (``DefectionModel.top_reasons``) for 100,000 customers: tree contributions
worked out once per distinct decision path (``custdyn.models._tree_contrib``) against
LightGBM's ``pred_contrib`` on every row (the peer, and the route taken before).

Each route runs in its own child process on the same model and rows (time around
``top_reasons`` only; peak RSS of the process); the parent checks that both give the same
``(which, value, contribution)`` arrays, bit for bit.

``python -m benchmarks.bench_reasons`` uses a synthetic snapshot: a ``DefectionModel`` (its
defaults: 100 trees of 15 leaves) fitted on 50,000 rows of count, duration, share and flag
columns with missing values, explaining 100,000 other rows. ``--model PKL --rows NPY`` adds a
real model and rows: a pickled ``DefectionModel`` (or the ``FittedModels`` that analyze keeps
in ``analysis-models/``, whose ``.risk`` is taken) and an ``.npy`` matrix of the snapshot rows
analyze explains (``snap_now.X[explain]`` in ``custdyn.pipeline.analysis``).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks._common import DATA, child, machine, run_measured, shared_note, update_section

N_EXPLAIN = 100_000
N_FIT = 50_000
P = 112  # the width of analyze's risk snapshot


def synthetic(n: int, seed: int) -> tuple[Any, Any]:
    """Snapshot-like features (counts, durations, shares, flags; some missing) and a label
    driven by a few of them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cols = []
    for j in range(P):
        kind = j % 4
        if kind == 0:  # counts, mostly small
            c = rng.poisson(rng.gamma(1.0, 2.0, n)).astype(float)
        elif kind == 1:  # durations in days, missing when it never happened
            c = np.round(rng.exponential(60 + j, n))
            c[rng.random(n) < 0.3] = np.nan
        elif kind == 2:  # shares, rounded as ratios of small counts are
            c = np.round(rng.beta(1, 3, n) * 20) / 20
            c[rng.random(n) < 0.2] = np.nan
        else:  # flags
            c = (rng.random(n) < 0.2).astype(float)
        cols.append(c)
    X = np.column_stack(cols)
    z = (0.02 * np.nan_to_num(X[:, 1], nan=200.0) - 0.4 * X[:, 0] + 1.5 * X[:, 3]
         + 2 * np.nan_to_num(X[:, 2], nan=0.5) - 0.1 * X[:, 4] - 1.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return X, y


def _load_model(path: Path) -> Any:
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    return getattr(obj, "risk", obj)


def run_child(route: str, model_path: str, rows_path: str, out_path: str) -> None:
    """One route on the saved model and rows; prints seconds and writes the arrays."""
    import numpy as np

    import custdyn.models.churn as churn

    model = _load_model(Path(model_path))
    X = np.load(rows_path)
    if route == "pred_contrib":
        churn._PATHS_FROM_ROWS = 10**12  # every row through LightGBM's pred_contrib
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    which, value, contrib = model.top_reasons(X, top=3)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    np.savez(out_path, which=which, value=value, contrib=contrib)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))


def measure(label: str, model_path: Path, rows_path: Path, tmp: Path) -> dict[str, Any]:
    import numpy as np

    model = _load_model(model_path)
    X = np.load(rows_path)
    trees = model.booster_.num_trees()
    from custdyn.models._tree_contrib import tables_of

    tables = tables_of(model.booster_)
    res: dict[str, Any] = {"label": label, "rows": int(X.shape[0]), "trees": trees,
                           "leaves": int(model.booster_.params.get("num_leaves", 0)),
                           "features": len(model.features_used_),
                           "split_on": len(tables.used_features) if tables else None,
                           "load": []}
    outs = {}
    for route in ("pred_contrib", "per_path"):
        out = tmp / f"{label}-{route}.npz"
        res["load"].append(os.getloadavg()[0])
        r = run_measured(child("benchmarks.bench_reasons", "--child", route, str(model_path),
                               str(rows_path), str(out)))
        res[route] = {**r["result"], "peak_rss_mib": r["peak_rss_mib"]}
        outs[route] = np.load(out)
        print(f"{label} {route}: {r['result']['seconds']:.2f} s", flush=True)
    res["load"].append(os.getloadavg()[0])
    a, b = outs["pred_contrib"], outs["per_path"]
    res["identical"] = bool(np.array_equal(a["which"], b["which"])
                            and np.array_equal(a["value"], b["value"], equal_nan=True)
                            and np.array_equal(a["contrib"], b["contrib"], equal_nan=True))
    return res


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        run_child(*argv[1:5])
        return
    import numpy as np

    from custdyn.models import DefectionModel

    model_arg = argv[argv.index("--model") + 1] if "--model" in argv else None
    rows_arg = argv[argv.index("--rows") + 1] if "--rows" in argv else None
    results = []
    with tempfile.TemporaryDirectory(dir=DATA if DATA.exists() else None) as d:
        tmp = Path(d)
        Xf, yf = synthetic(N_FIT, seed=1)
        Xe, _ = synthetic(N_EXPLAIN, seed=2)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = DefectionModel().fit(Xf, yf)
        print(f"synthetic model fitted in {time.perf_counter() - t0:.0f} s", flush=True)
        with open(tmp / "model.pkl", "wb") as fh:
            pickle.dump(model, fh)
        np.save(tmp / "rows.npy", Xe)
        results.append(measure("synthetic", tmp / "model.pkl", tmp / "rows.npy", tmp))
        if model_arg and rows_arg:
            results.append(measure("real", Path(model_arg), Path(rows_arg), tmp))

    loads = [x for r in results for x in r["load"]]
    lines = [
        "## Defection reasons: tree contributions for 100,000 customers",
        "",
        "Command: `python -m benchmarks.run reasons"
        + (" --model WORKSPACE/analysis-models/RUN.pkl --rows ROWS.npy" if model_arg else "")
        + f"`. "
        f"Machine: {machine()}. 1-minute load average before, between and after the routes: "
        + "; ".join(", ".join(f"{x:.1f}" for x in r["load"]) for r in results)
        + f"{shared_note(*loads)}.",
        "",
        "`DefectionModel.top_reasons(X, top=3)`, what analyze calls for the riskiest customers. "
        "Peer: LightGBM's `pred_contrib` (path-dependent TreeSHAP) on every row, the route "
        "taken before. custdyn: TreeSHAP once per distinct decision path of each tree, its "
        "terms added to every row in LightGBM's order (`custdyn.models._tree_contrib`). Each "
        "route in its own process; time around `top_reasons` (CPU seconds in brackets), peak "
        "RSS of the process. *Identical*: the same `(which, value, contribution)` arrays, bit "
        "for bit.",
        "",
        "| data | rows | trees x leaves | columns (split on) | pred_contrib | per path | ratio "
        "(wall) | ratio (CPU) | peak RSS pred_contrib / per path (MiB) | identical |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        a, b = r["pred_contrib"], r["per_path"]
        what = ("synthetic snapshot (112 columns)" if r["label"] == "synthetic"
                else "real model and rows (below)")
        lines.append(
            f"| {what} | {r['rows']:,} | {r['trees']} x {r['leaves']} | "
            f"{r['features']} ({r['split_on']}) | "
            f"{a['seconds']:.2f} s ({a['cpu_seconds']:.2f}) | "
            f"{b['seconds']:.2f} s ({b['cpu_seconds']:.2f}) | "
            f"{a['seconds'] / b['seconds']:.1f}x faster | "
            f"{a['cpu_seconds'] / b['cpu_seconds']:.1f}x less | "
            f"{a['peak_rss_mib']:.0f} / {b['peak_rss_mib']:.0f} | "
            f"{'yes' if r['identical'] else 'NO'} |")
    if model_arg:
        lines += ["", "Real model and rows: the risk model that analyze fitted on the "
                  "1,000,000-customer, 10,100,000-interaction workspace of the analyze "
                  "benchmark (state right after its re-run with 1% new interactions), and the "
                  "rows that re-run explains: its 100,000 riskiest of the 668,975 active "
                  "customers, their risk snapshot at the run's `as_of` "
                  "(`snap_now.X[explain]` in `custdyn.pipeline.analysis`)."]
    else:
        lines += ["", "A real model and rows are added with `--model "
                  "WORKSPACE/analysis-models/RUN.pkl --rows ROWS.npy` (see the module's notes)."]
    update_section("reasons", "\n".join(lines))
    for r in results:
        if not r["identical"]:
            raise SystemExit(f"{r['label']}: the two routes differ")


if __name__ == "__main__":
    main(sys.argv[1:])
