"""Customer-base models: custdyn against lifetimes, side by side in one run.

A synthetic transaction log (1M customers, ~6M transactions, day-resolution dates, drawn from
a BG/NBD process) is written once to ``benchmarks/.data``. Each side then runs in its own child
process: the RFM summary from the transaction log, a BG/NBD fit with standard errors, a
Pareto/NBD fit, and 12-month CLV (BG/NBD + Gamma-Gamma) for every customer. Times are
measured inside the child around each step (file reading excluded); peak RSS is the child's.
Log-likelihoods of both sides' estimates are evaluated with the same likelihood on the same
summary so they are comparable.

``python -m benchmarks.run models`` (full size) or ``... models --quick`` (50k customers).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import DATA, child, fmt_ratio, machine, run_measured, update_section

OBS_START = np.datetime64("2024-01-01")
OBS_DAYS = 546  # 78 weeks
CAL_BIRTH_DAYS = 182  # customers arrive during the first 26 weeks
PEER_PARETO_CAP = 100_000  # lifetimes' Pareto/NBD fit is measured on this many customers
PEER_PARETO_TIMEOUT_S = 300


def make_transactions(n_customers: int, seed: int = 20240101) -> Path:
    """Simulate the transaction log (BG/NBD process) and store it as Parquet; cached."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / f"models_tx_{n_customers}.parquet"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = n_customers
    r, alpha, a, b = 1.2, 8.5, 0.5, 3.5  # weekly purchase rates, dropout after purchases
    birth = rng.integers(0, CAL_BIRTH_DAYS, n)
    age_w = (OBS_DAYS - birth) / 7.0
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    arrivals = rng.poisson(lam * age_w)
    drop_after = rng.geometric(p)
    keep = np.minimum(arrivals, drop_after)
    cust = np.repeat(np.arange(n), arrivals)
    times = rng.random(len(cust)) * np.repeat(age_w, arrivals)
    order = np.lexsort((times, cust))
    cust, times = cust[order], times[order]
    starts = np.concatenate([[0], np.cumsum(arrivals)[:-1]])
    rank = np.arange(len(cust)) - np.repeat(starts, arrivals)
    sel = rank < np.repeat(keep, arrivals)
    cust, times = cust[sel], times[sel]
    all_cust = np.concatenate([np.arange(n), cust])
    day = np.concatenate([birth, birth[cust] + np.floor(times * 7).astype(np.int64)])
    day = np.minimum(day, OBS_DAYS - 1)
    spend_mean = rng.gamma(4.0, 10.0, n)
    amount = np.round(rng.gamma(5.0, spend_mean[all_cust] / 5.0), 2)
    shuffle = rng.permutation(len(all_cust))
    table = pa.table(
        {
            "customer_id": all_cust[shuffle].astype(np.int64) + 1_000_000,
            "date": (OBS_START + day[shuffle].astype("timedelta64[D]")).astype("datetime64[ns]"),
            "amount": amount[shuffle],
        }
    )
    pq.write_table(table, path)
    return path


class _Clock:
    """Wall and CPU (``time.process_time``, all threads of the process) seconds of a step."""

    def __init__(self, out: dict, name: str) -> None:
        self.out, self.name = out, name

    def __enter__(self) -> _Clock:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.out[f"{self.name}_s"] = time.perf_counter() - self.t0
        self.out[f"{self.name}_cpu"] = time.process_time() - self.c0


def _end_date() -> str:
    return str(OBS_START + np.timedelta64(OBS_DAYS - 1, "D"))


# ---------------------------------------------------------------------- children


def child_ours(path: str) -> dict:
    import pyarrow.parquet as pq

    import custdyn.models as cm

    tx = pq.read_table(path).to_pandas()
    out: dict = {"n_tx": len(tx)}
    with _Clock(out, "rfm"):
        s = cm.rfm_summary(tx, "customer_id", "date", "amount", observation_end=_end_date(), time_unit="D")
    out["n_customers"] = len(s)
    x, rec, big_t, mon = (s[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))

    with _Clock(out, "bg"):
        bg = cm.BetaGeo().fit(x, rec, big_t)
    out["bg_params"] = bg.params_
    out["bg_se"] = bg.standard_errors_
    out["bg_rows"] = bg.n_rows_

    with _Clock(out, "pnbd"):
        pn = cm.ParetoNBD().fit(x, rec, big_t)
    out["pnbd_params"] = pn.params_
    out["pnbd_se"] = pn.standard_errors_

    rep = x > 0
    with _Clock(out, "gg"):
        gg = cm.GammaGamma().fit(x[rep], mon[rep])
    out["gg_params"] = gg.params_
    data = {"frequency": x, "recency": rec, "T": big_t, "monetary_value": mon}
    with _Clock(out, "clv"):
        v = cm.clv(bg, gg, data, horizon=12, discount_rate=0.01, time_unit="D", n_draws=0)
    out["clv_total"] = float(v["clv"].sum())
    with _Clock(out, "clv_interval"):
        vi = cm.clv(bg, gg, data, horizon=12, discount_rate=0.01, time_unit="D", n_draws=100)
    out["clv_interval_mean_width"] = float((vi["clv_upper"] - vi["clv_lower"]).mean())
    return out


def child_lifetimes(path: str, part: str) -> dict:
    import warnings

    import pyarrow.parquet as pq
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
    from lifetimes.utils import summary_data_from_transaction_data

    warnings.simplefilter("ignore")
    tx = pq.read_table(path).to_pandas()
    out: dict = {"n_tx": len(tx)}
    with _Clock(out, "rfm"):
        s = summary_data_from_transaction_data(
            tx, "customer_id", "date", monetary_value_col="amount", observation_period_end=_end_date(), freq="D"
        )
    out["n_customers"] = len(s)
    if part == "pareto":
        sub = s.iloc[: min(PEER_PARETO_CAP, len(s))]
        with _Clock(out, "pnbd"):
            pn = ParetoNBDFitter().fit(sub["frequency"], sub["recency"], sub["T"])
        out["pnbd_n"] = len(sub)
        out["pnbd_params"] = {k: float(v) for k, v in pn.params_.items()}
        return out
    with _Clock(out, "bg"):
        bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
        se = bg.standard_errors_  # computed from the Hessian after the fit
    out["bg_params"] = {k: float(v) for k, v in bg.params_.items()}
    out["bg_se"] = {k: float(v) for k, v in se.items()}
    rep = s[s["frequency"] > 0]
    with _Clock(out, "gg"):
        gg = GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    out["gg_params"] = {k: float(v) for k, v in gg.params_.items()}
    with _Clock(out, "clv"):
        v = gg.customer_lifetime_value(
            bg, s["frequency"], s["recency"], s["T"], s["monetary_value"], time=12, discount_rate=0.01, freq="D"
        )
    out["clv_total"] = float(v.sum())
    return out


# ---------------------------------------------------------------------- parent


def _loglik(cls: type, params: dict, x: np.ndarray, rec: np.ndarray, big_t: np.ndarray) -> float:
    m = cls()
    theta = np.array([params[k] for k in m._param_names])
    with np.errstate(all="ignore"):
        ll, _ = m._loglik(theta, (x, rec, big_t))
    return float(ll.sum())


def _run(args: list[str], timeout_s: float | None = None) -> dict:
    if timeout_s is None:
        return run_measured(args)
    import subprocess

    t0 = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"seconds": time.perf_counter() - t0, "peak_rss_mib": float("nan"), "result": None, "timed_out": True}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": float("nan"),
        "result": json.loads(lines[-1]) if proc.returncode == 0 and lines else None,
        "timed_out": False,
        "stderr": proc.stderr[-2000:],
    }


def main(flags: list[str]) -> None:
    quick = "--quick" in flags
    n = 50_000 if quick else 1_000_000
    print(f"models: generating {n:,} customers", flush=True)
    path = make_transactions(n)
    load_start = os.getloadavg()[0]
    ours = run_measured(child("benchmarks.bench_models", "--child", "ours", str(path)))
    print("models: custdyn done", flush=True)
    load_mid = os.getloadavg()[0]
    peer = run_measured(child("benchmarks.bench_models", "--child", "lifetimes", str(path), "main"))
    print("models: lifetimes done", flush=True)
    peer_pn = _run(
        child("benchmarks.bench_models", "--child", "lifetimes", str(path), "pareto"), timeout_s=PEER_PARETO_TIMEOUT_S
    )
    print("models: lifetimes Pareto/NBD done", flush=True)
    load_end = os.getloadavg()[0]

    # the same likelihood, on the same summary, for both sides' estimates
    import pyarrow.parquet as pq

    import custdyn.models as cm

    s = cm.rfm_summary(pq.read_table(path).to_pandas(), "customer_id", "date", "amount", observation_end=_end_date(), time_unit="D")
    x, rec, big_t = (s[c].to_numpy() for c in ("frequency", "recency", "T"))
    o, p = ours["result"], peer["result"]
    q = peer_pn.get("result")
    n_sub = min(PEER_PARETO_CAP, len(x))
    ll = {
        "bg_ours": _loglik(cm.BetaGeo, o["bg_params"], x, rec, big_t),
        "bg_peer": _loglik(cm.BetaGeo, p["bg_params"], x, rec, big_t),
        "pn_ours": _loglik(cm.ParetoNBD, o["pnbd_params"], x, rec, big_t),
        "pn_ours_sub": None,
        "pn_peer_sub": None,
    }
    if q is not None:
        sub = (x[:n_sub], rec[:n_sub], big_t[:n_sub])
        ll["pn_peer_sub"] = _loglik(cm.ParetoNBD, q["pnbd_params"], *sub)
        fit_sub = cm.ParetoNBD().fit(*sub)
        ll["pn_ours_sub"] = fit_sub.log_likelihood_

    def f(v: float | None, digits: int = 1) -> str:
        return "n/a" if v is None else f"{v:,.{digits}f}"

    def tm(res: dict | None, key: str) -> str:
        if res is None or f"{key}_s" not in res:
            return "n/a"
        return f"{res[key + '_s']:.2f} s ({res[key + '_cpu']:.2f})"

    pn_peer_time = "timed out" if peer_pn.get("timed_out") else (tm(q, "pnbd") if q else "failed")
    if n_sub < n:
        pn_note = (
            f"lifetimes was run on the first {n_sub:,} customers only, because its fit on all {n:,} takes "
            f"many minutes (run capped at {PEER_PARETO_TIMEOUT_S} s); it reports no standard errors"
        )
    else:
        pn_note = "lifetimes reports no standard errors for Pareto/NBD"
    def ratio(key: str, scale: float = 1.0) -> tuple[str, str]:
        """Wall and CPU ratios, peer over ours (ours scaled to the peer's number of customers)."""
        peer_res = q if key == "pnbd" else p
        if peer_res is None or f"{key}_s" not in peer_res:
            return "n/a", "n/a"
        suffix = " per customer" if scale != 1.0 else ""
        return (
            fmt_ratio(o[f"{key}_s"] * scale, peer_res[f"{key}_s"]) + suffix,
            fmt_ratio(o[f"{key}_cpu"] * scale, peer_res[f"{key}_cpu"]) + suffix,
        )

    rows = [
        ("rfm_summary from transactions", "<= 1.5 s", tm(o, "rfm"), tm(p, "rfm"), *ratio("rfm"), "", ""),
        (
            "BG/NBD fit with standard errors",
            "<= 1 s",
            tm(o, "bg"),
            tm(p, "bg"),
            *ratio("bg"),
            f(ll["bg_ours"]),
            f(ll["bg_peer"]),
        ),
        (
            "Pareto/NBD fit (custdyn: with standard errors)",
            "<= 10 s",
            tm(o, "pnbd"),
            f"{pn_peer_time} ({n_sub:,} customers)",
            *ratio("pnbd", n_sub / n),
            f(ll["pn_ours"]),
            f"{f(ll['pn_peer_sub'])} on its {n_sub:,} customers (custdyn there: {f(ll['pn_ours_sub'])})",
        ),
        ("Gamma-Gamma fit (repeat customers)", "", tm(o, "gg"), tm(p, "gg"), *ratio("gg"), "", ""),
        (
            "CLV, 12 months, all customers (BG/NBD + Gamma-Gamma)",
            "<= 2 s",
            tm(o, "clv"),
            tm(p, "clv"),
            *ratio("clv"),
            f"total {o['clv_total']:,.0f}",
            f"total {p['clv_total']:,.0f}",
        ),
    ]
    cmd = "python -m benchmarks.run models" + (" --quick" if quick else "")
    lines = [
        "## Customer-base models (`custdyn.models`) vs lifetimes 0.11.3",
        "",
        f"Command: `{cmd}`. Machine: {machine()}. The machine is shared: its 1-minute load average was "
        f"{load_start:.1f} when the run started, {load_mid:.1f} when custdyn's part ended and {load_end:.1f} "
        "at the end, so wall times (both sides) "
        "are inflated, unevenly (the two sides run one after the other); CPU seconds (in brackets) and their "
        "ratios are the steadier figures.",
        f"Data: synthetic, {o['n_customers']:,} customers, {o['n_tx']:,} transactions (BG/NBD process, dates at day "
        f"resolution, 78 weeks); {o['bg_rows']:,} distinct (frequency, recency, T) rows. Time unit: days.",
        "Each side runs in its own child process; times are taken inside it around each step (reading the file "
        "excluded): wall seconds, CPU seconds of the process in brackets. Targets are wall times on an idle "
        "2-core machine. LL: log-likelihood of each side's estimates, evaluated with the same likelihood on the "
        "same summary.",
        "",
        "| step | target | custdyn | lifetimes | ratio (wall) | ratio (CPU) | LL custdyn | LL lifetimes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, target, ot, pt, r_wall, r_cpu, llo, llp in rows:
        lines.append(f"| {name} | {target} | {ot} | {pt} | {r_wall} | {r_cpu} | {llo} | {llp} |")
    lines += [
        "",
        f"- Pareto/NBD: {pn_note}. custdyn fits all {n:,} customers, standard errors included; the ratio "
        "compares time per customer.",
        f"- CLV with 90% intervals from 100 parameter draws (no peer equivalent): {tm(o, 'clv_interval')}.",
        f"- Peak memory of the child processes: custdyn {ours['peak_rss_mib']:,.0f} MiB, lifetimes "
        f"{peer['peak_rss_mib']:,.0f} MiB (both include the loaded transaction table).",
        f"- Estimates, BG/NBD: custdyn {_fmt_params(o['bg_params'])}; lifetimes {_fmt_params(p['bg_params'])}.",
        f"- Estimates, Pareto/NBD (custdyn, all customers): {_fmt_params(o['pnbd_params'])}; standard errors "
        f"{_fmt_params(o['pnbd_se'])}.",
        "- lifetimes' CLV uses 30-day months, custdyn 365.25/12 days, hence the small difference in totals.",
    ]
    if quick:
        lines.insert(1, "\n_Quick run (`--quick`), not the reference size._")
    md = "\n".join(lines)
    print(md)
    update_section("models", md)


def _fmt_params(p: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in p.items())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        which, data_path = sys.argv[2], sys.argv[3]
        res = child_ours(data_path) if which == "ours" else child_lifetimes(data_path, sys.argv[4])
        print(json.dumps(res))
    else:
        main(sys.argv[1:])
