"""Defection risk: the backtest on CDNOW and the check against the demo world's hidden truth.

CDNOW (Fader & Hardie's 1/10th sample of the CDNOW cohort of early 1997, shipped with the
``lifetimes`` package as ``CDNOW_master.txt``): orders only, so the outcome is *no purchase in
the holdout weeks* (the last H days before the end of the data, ``[risk] label =
"no_purchase"``); the model is scored beside P(alive) of the best customer-base model alone
and days since the last purchase.

Demo world (2,000 customers, seed 7): the observable backtest (default ``gone`` label) and the
check against the simulator's own departure times (:func:`custdyn.pipeline.risk_truth_check`).

``python -m benchmarks.bench_risk`` writes the ``risk`` section of BENCHMARKS.md.
``python -m benchmarks.bench_risk --choose`` reruns the comparison that chose the defection
model's defaults on other demo worlds (seeds 11 and 13, never the seed-7 world reported):
each world scored against its own truth at the end minus H and 90 days before that.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks._common import machine, shared_note, update_section


def _cdnow_path() -> Path | None:
    try:
        import lifetimes
    except ImportError:
        return None
    p = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    return p if p.exists() else None


def _rows(metrics: Any) -> list[dict[str, Any]]:
    rows = metrics if isinstance(metrics, list) else metrics.to_dict("records")
    return [{k: r[k] for k in ("scorer", "n", "positives", "roc_auc", "pr_auc",
                               "lift_top_decile", "brier", "ece")} for r in rows]


def _table(rows: list[dict[str, Any]]) -> str:
    out = ["| scorer | customers | positives | ROC AUC | PR AUC | top-decile lift | Brier | "
           "calibration error (ECE) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v: Any) -> str:
        return "–" if v is None or v != v else f"{v:.3f}"

    for r in rows:
        out.append(f"| {r['scorer']} | {r['n']:,.0f} | {r['positives']:,.0f} | "
                   f"{f(r['roc_auc'])} | {f(r['pr_auc'])} | {f(r['lift_top_decile'])} | "
                   f"{f(r['brier'])} | {f(r['ece'])} |")
    return "\n".join(out)


def cdnow(tmp: Path, horizon: float = 90.0) -> dict[str, Any] | None:
    from custdyn.pipeline import risk_backtest
    from custdyn.settings import Settings
    from custdyn.store import Workspace

    src = _cdnow_path()
    if src is None:
        return None
    s = Settings(currency="USD")
    s.extra["risk"] = {"label": "no_purchase"}
    t0 = time.perf_counter()
    with Workspace.create(tmp / "cdnow", s) as ws:
        ws.ingest(src, format="cdnow")
        end = dt.datetime(1998, 7, 1, tzinfo=dt.UTC)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hist, bt = risk_backtest(ws, end, horizon)
        n_customers = ws.con.execute(
            "SELECT count(DISTINCT customer_id) FROM interactions").fetchone()[0]
    if bt is None:
        return None
    return {"rows": _rows(bt.metrics), "tested": bt.tested[-1], "n_customers": n_customers,
            "n_train": int(bt.metrics["n_train"].iloc[0]), "seconds": time.perf_counter() - t0}


def demo(tmp: Path, n: int = 2000, seed: int = 7, horizon: float = 90.0) -> dict[str, Any]:
    from custdyn.pipeline import RiskHistory, default_as_of, enrich, risk_backtest, risk_truth_check
    from custdyn.store import Workspace

    d = tmp / "demo"
    exe = Path(sys.executable).parent / "custdyn"
    subprocess.run([str(exe), "demo", str(d), "--customers", str(n), "--seed", str(seed)],
                   check=True, capture_output=True)
    t0 = time.perf_counter()
    with Workspace.open(d) as ws:
        enrich(ws, "bulk")
        hist = RiskHistory(ws)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            truth = risk_truth_check(ws, d / "sources" / "truth", horizon_days=horizon,
                                     history=hist)
            _h, bt = risk_backtest(ws, default_as_of(ws), horizon, history=hist)
    return {"truth": truth, "observable": _rows(bt.metrics) if bt is not None else [],
            "observable_tested": bt.tested[-1] if bt is not None else None,
            "seconds": time.perf_counter() - t0, "n": n, "seed": seed}


#: Settings compared by ``--choose`` (DefectionModel keyword arguments), the old default first.
CHOICES: list[dict[str, Any]] = [
    {"n_estimators": 300, "learning_rate": 0.05},
    {"n_estimators": 300, "learning_rate": 0.02},
    {"n_estimators": 300, "learning_rate": 0.01},
    {"n_estimators": 150, "learning_rate": 0.02},
    {"n_estimators": 100, "learning_rate": 0.03},
    {"n_estimators": 60, "learning_rate": 0.05},
    {"n_estimators": 100, "learning_rate": 0.03, "num_leaves": 7},
    {"n_estimators": 100, "learning_rate": 0.03, "min_child_samples": 50},
    {"n_estimators": 100, "learning_rate": 0.03, "colsample_bytree": 0.5},
]


def choose(tmp: Path, seeds: tuple[int, ...] = (11, 13), n: int = 2000,
           horizon: float = 90.0, offsets: tuple[float, ...] = (0.0, 90.0),
           choices: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """ROC AUC against the truth of demo worlds ``seeds`` for each of ``choices``, the
    defection model fitted as :func:`custdyn.pipeline.fit_risk_model` fits it (contractual
    customers scored by the survival model, as in :func:`custdyn.pipeline.risk_truth_check`)."""
    import numpy as np

    from custdyn.demo.truth import defection_truth, truth_end
    from custdyn.models.churn import DefectionModel
    from custdyn.models.metrics import score_report
    from custdyn.pipeline import RiskHistory, contractual_customers, enrich, fit_contract_model
    from custdyn.store import Workspace

    exe = Path(sys.executable).parent / "custdyn"
    points = []
    for seed in seeds:
        d = tmp / f"demo{seed}"
        subprocess.run([str(exe), "demo", str(d), "--customers", str(n), "--seed", str(seed)],
                       check=True, capture_output=True)
        truth = d / "sources" / "truth"
        with Workspace.open(d) as ws, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enrich(ws, "bulk")
            hist = RiskHistory(ws)
            contract = contractual_customers(ws)
            for off in offsets:
                at = truth_end(truth) - dt.timedelta(days=horizon + off)
                snaps, labels = hist.training_set(at, horizon)
                snap = hist.snapshot(at)
                tr = defection_truth(truth, snap.ids, at, horizon)
                on = np.array([c in contract for c in snap.ids], dtype=bool)
                cm = fit_contract_model(hist, at, contract, horizon) if on.any() else None
                points.append({"seed": seed, "at": at, "X": np.vstack([s.X for s in snaps]),
                               "y": np.concatenate(labels), "names": snap.names,
                               "test": snap.X, "keep": tr.alive,
                               "truth": tr.defected[tr.alive].astype(float), "on": on,
                               "surv": None if cm is None else cm.predict(snap.X[on], horizon)})
    out = []
    for params in choices or CHOICES:
        aucs, lifts = [], []
        t0 = time.perf_counter()
        for p in points:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = DefectionModel(**params).fit(p["X"], p["y"], feature_names=p["names"])
            s = m.predict_proba(p["test"])
            if p["surv"] is not None:
                s[p["on"]] = p["surv"]
            rep = score_report(p["truth"], s[p["keep"]])
            aucs.append(rep["roc_auc"])
            lifts.append(rep["lift_top_decile"])
        out.append({"params": params, "roc_auc": aucs, "lift": lifts,
                    "seconds": time.perf_counter() - t0})
        print(params, " ".join(f"{a:.3f}" for a in aucs), f"mean {np.mean(aucs):.3f}",
              f"lift {np.mean(lifts):.2f}", flush=True)
    return out


def main() -> None:
    if "--choose" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            choose(Path(tmp))
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        c = cdnow(Path(tmp))
        dm = demo(Path(tmp))
    load_after = os.getloadavg()
    tr = dm["truth"]
    md = [
        "## Defection risk",
        "",
        f"`python -m benchmarks.bench_risk`, {machine()}; load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after"
        f"{shared_note(load_before[0], load_after[0])}. H = 90 days. Model: calibrated LightGBM on "
        "snapshot features, leaving-phase signals and P(alive), fitted on the snapshots "
        "before the tested date whose outcome was known by then; contractual customers "
        "(plan = subscription) by the landmark Cox model of cancellation.",
        "",
        f"### Demo world against its hidden truth ({dm['n']:,} customers, seed {dm['seed']})",
        "",
        f"Scored at {tr['as_of'].date()} as in production (labels read from the data before "
        f"that date only, label `{tr['label']}`); outcome: truly left within 90 days "
        f"(simulator's departure times), among the {tr['n']:,} of {tr['n_scored']:,} scored "
        f"customers truly still there ({tr['positives']} left).",
        "",
        _table(_rows(tr["metrics"])),
        "",
        f"Observable backtest on the same world (tested snapshot {dm['observable_tested']:%Y-%m-%d}"
        f", outcome the `{tr['label']}` label itself):",
        "",
        _table(dm["observable"]),
        "",
        f"Demo: {dm['seconds']:.0f} s for text scoring, snapshots, both checks.",
        "",
    ]
    if c is not None:
        md += [
            f"### CDNOW ({c['n_customers']:,} customers, orders only)",
            "",
            f"Tested snapshot {c['tested']:%Y-%m-%d}; outcome: no purchase in the 90 days "
            f"after it (the holdout weeks up to the end of the data, 1998-06-30); fitted on "
            f"{c['n_train']:,} customer-snapshots before it. `1 - P(alive)` is the "
            "customer-base model alone.",
            "",
            _table(c["rows"]),
            "",
            f"CDNOW: {c['seconds']:.0f} s including the ingest.",
        ]
    else:
        md += ["CDNOW: not run (the `lifetimes` package with its CDNOW_master.txt is not "
               "installed)."]
    update_section("risk", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
