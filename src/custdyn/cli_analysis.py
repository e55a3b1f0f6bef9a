"""Analysis commands: ``analyze``, ``scores`` and ``risk``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import typer

from custdyn.cli import (
    EXIT_OK,
    EXIT_WARN,
    JsonOpt,
    OutOpt,
    _fail,
    _workspace,
    app,
    console,
    emit,
    err,
    print_json,
    print_warning,
    write_figure,
)
from custdyn.errors import CustdynError

if TYPE_CHECKING:
    from custdyn.pipeline import AnalysisResult


@app.command()
def analyze(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Date the analysis describes (default: the day after the last "
        "interaction).")] = None,
    text_engine: Annotated[str | None, typer.Option(
        help="Text engine for messages not yet scored (default: bulk).")] = None,
    horizon_days: Annotated[float | None, typer.Option(
        help="Defection horizon H in days (the label is the [risk] label setting: by "
        "default 'gone', no purchase and no contact of the customer's own from H days on).")
    ] = None,
    force: Annotated[bool, typer.Option(
        help="Recompute even if nothing changed, and fit the models again (they are otherwise "
             "kept for `[analysis] refit_every_days`, default 30).")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit with code 1 when the analysis finished with warnings (by "
        "default it exits 0: the warnings are printed and kept in the JSON).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Score every customer at AS_OF: text signals, features, purchase models (BG/NBD, MBG/NBD,
    Pareto/NBD by holdout error), CLV, defection risk (backtested), health, loyalty,
    attention and lifecycle stage. Results go to the `scores` and `model_runs` tables."""
    from custdyn.pipeline import analyze as run

    with (_workspace(read_only=False, purpose="custdyn analyze") as ws,
          err.status("analysing...") as status):
        r = run(ws, as_of, text_engine=text_engine, horizon_days=horizon_days, force=force,
                progress=lambda msg: status.update(f"{msg}..."))
    if as_json:
        print_json(r.to_dict())
    else:
        _print_analysis(r)
    for w in r.warnings:
        print_warning(w)
    raise typer.Exit(EXIT_WARN if strict and r.warnings else EXIT_OK)


def _print_analysis(r: AnalysisResult) -> None:
    how = "reused (nothing changed)" if r.reused else f"done in {r.seconds:.0f} s"
    console.print(f"analysis at [bold]{r.as_of.date()}[/] of {r.n_customers:,} customers: {how}")
    if r.purchase_model:
        console.print(f"purchase model: {r.purchase_model} (lowest holdout error; see "
                      "`custdyn scores`)")
    if r.models_from:
        console.print(f"models kept from the run of {r.models_from['as_of'][:10]} "
                      f"({r.models_from['run_id']}; refitted every `[analysis] "
                      "refit_every_days`, or with --force)")
    if r.backtest:
        bt = pa.Table.from_pylist([
            {k: (int(b[k]) if k == "n" and b.get(k) is not None else b.get(k))
             for k in ("scorer", "n", "base_rate", "roc_auc", "pr_auc", "lift_top_decile",
                       "brier", "ece")} for b in r.backtest])
        emit(bt, False, None, title="defection risk, backtest on the last horizon")
    if r.text_engine:
        console.print(f"text signals: {r.text_engine}", highlight=False)
        if r.text_engine == "bulk":
            console.print("  tip: the shipped bulk table reads customers' words less well than "
                          "the default engine; `custdyn train-text --bulk` teaches it this "
                          "workspace's words (about a minute, no labels needed)", highlight=False)
    console.print("stages: " + ", ".join(f"{k} {v:,}" for k, v in r.stages.items()))
    console.print("quadrants: " + ", ".join(
        f"{q['quadrant']} {q['customers']:,} (value {q['value']:,.0f})" for q in r.quadrants))


_SCORE_COLUMNS = ("customer_id", "stage", "quadrant", "p_alive", "expected_purchases_365d",
                  "clv", "defection_risk", "health", "loyalty", "attention")


def _trend_sql(ws) -> str:
    """The health trend, read from the parts (change over the last 30 and 90 days)."""
    from custdyn.store import part_sql

    return ", ".join(f"{part_sql(ws.con, 'health_trend', k)} AS health_change_{k}"
                     for k in ("30d", "90d"))


def _latest(ws, as_of: str | None) -> object:
    if as_of:
        return as_of
    row = ws.con.execute("SELECT max(as_of) FROM scores").fetchone()
    if row is None or row[0] is None:
        raise CustdynError("no scores yet; run `custdyn analyze` first")
    return row[0]


@app.command()
def scores(
    customer_id: Annotated[str | None, typer.Argument(help="One customer (default: all).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the latest.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Scores per customer: stage, quadrant, P(alive), expected purchases, CLV, defection risk,
    health, loyalty and attention; one customer's with their parts and reasons."""
    with _workspace() as ws:
        at = _latest(ws, as_of)
        if customer_id:
            # the parts as JSON text, whichever type the column has
            t = ws.query("SELECT * REPLACE (to_json(contributions)::VARCHAR AS contributions) "
                         "FROM scores WHERE customer_id = ? AND as_of = ?",
                         [customer_id, at])
            if t.num_rows == 0:
                raise CustdynError(f"no scores for {customer_id!r} at {at}")
        else:
            lim = f"LIMIT {int(limit)}" if limit else ""
            t = ws.query(f"SELECT {', '.join(_SCORE_COLUMNS)}, {_trend_sql(ws)} "
                         "FROM scores WHERE as_of = ? "
                         f"ORDER BY clv DESC NULLS LAST {lim}", [at])
    if customer_id and not as_json and not out:
        row = t.to_pylist()[0]
        for k in _SCORE_COLUMNS[1:] + ("clv_lower", "clv_upper", "expected_purchases_90d"):
            v = row[k]
            console.print(f"{k:>24}: {v:,.3f}" if isinstance(v, float) else f"{k:>24}: {v}")
        parts = json.loads(row["contributions"] or "{}")
        trend = parts.pop("health_trend", None) or {}
        for side, comps in parts.items():
            console.print(f"[bold]{side}[/] = " + " + ".join(
                f"{name} {val:.1f}" for name, val in (comps or {}).items() if val is not None))
        if trend:
            console.print("[bold]health trend[/]: " + ", ".join(
                f"{val:+.1f} over {k}" if val is not None else f"n/a over {k}"
                for k, val in trend.items()))
        for r in json.loads(row["reasons"] or "[]"):
            console.print(f"  risk reason: {r['feature']} = {r['value']} "
                          f"(pushes risk {'up' if (r['contribution'] or 0) > 0 else 'down'})")
        return
    shown = _narrow(t, _SCORES_NARROW, 140)
    emit(t, as_json, out, title=f"scores at {at}", shown=shown, caption=_narrow_caption(t, shown))


#: Columns ``scores`` shows in a terminal too narrow for all of them (header as shown).
_SCORES_NARROW = {"customer_id": "customer", "stage": "stage", "clv": "clv",
                  "defection_risk": "risk", "health": "health", "loyalty": "loyalty",
                  "attention": "attention"}


def _narrow(t: pa.Table, columns: dict[str, str], full_width: int) -> pa.Table | None:
    """The ``columns`` of ``t`` under their short headers when the terminal is narrower than
    ``full_width``; None when it can show every column. A timestamp column shows its date, a
    yes-or-no column "yes" or nothing."""
    if console.width >= full_width or t.num_rows == 0:
        return None
    cols = []
    for name in columns:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            col = pa.array([None if v is None else v.date().isoformat() for v in col.to_pylist()],
                           pa.string())
        elif pa.types.is_boolean(col.type):
            col = pa.array(["yes" if v else "" for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, names=list(columns.values()))


def _narrow_caption(t: pa.Table, shown: pa.Table | None) -> str | None:
    if shown is None:
        return None
    return (f"a terminal this narrow shows {shown.num_columns} of the {t.num_columns} "
            "columns: --json or --out give all")


@app.command()
def risk(
    top: Annotated[int, typer.Option("--top", help="How many customers.")] = 20,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the latest.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Customers most likely to drift away, ranked by value at risk (CLV x risk), with their
    top reasons."""
    with _workspace() as ws:
        at = _latest(ws, as_of)
        t = ws.query(
            """SELECT customer_id, stage, defection_risk, clv,
                      clv * defection_risk AS value_at_risk, reasons
               FROM scores WHERE as_of = ? AND stage NOT IN ('lost', 'prospect')
               ORDER BY value_at_risk DESC NULLS LAST LIMIT ?""", [at, top])
    rows = t.to_pylist()
    for r in rows:
        rs = json.loads(r["reasons"] or "[]")
        r["reasons"] = "; ".join(f"{x['feature']}={x['value']:.3g}" for x in rs
                                 if x.get("value") is not None)
    full = pa.Table.from_pylist(rows) if rows else t
    # the terminal's view: short headers and reasons in words, so that 80 columns hold it
    # (--json and --out keep the column and feature names)
    shown = pa.table({
        "customer": full.column("customer_id"), "stage": full.column("stage"),
        "risk": full.column("defection_risk"), "clv": full.column("clv"),
        "at risk": full.column("value_at_risk"),
        "top reasons": pa.array([_reasons_in_words(r["reasons"]) for r in rows], pa.string()),
    })
    emit(full, as_json, out, title=f"value at risk at {at}", widths={"top reasons": 70},
         shown=shown)


def _reasons_in_words(reasons: str, top: int = 2) -> str:
    """The first ``top`` reasons of ``feature=value; ...`` as words: the leaving-phase mark
    dropped, underscores as spaces.

    >>> _reasons_in_words("leaving:complaints_90d=3; leaving:nps_last=5; p_alive=0.2")
    'complaints 90d 3; nps last 5'
    """
    out = []
    for part in [x for x in reasons.split("; ") if x][:top]:
        name, _, value = part.rpartition("=")
        out.append(f"{name.removeprefix('leaving:').replace('_', ' ')} {value}")
    return "; ".join(out)


@app.command()
def alerts(
    days: Annotated[int, typer.Option(help="Look back this many days before AS_OF.")] = 30,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the latest scores.")
                     ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Counter-offer alerts: customers who mentioned a competitor or an intent to switch in the
    last DAYS, ranked by value at risk, with the snippet, channel and date."""
    from custdyn.pipeline import counter_offer_alerts

    with _workspace() as ws:
        t = counter_offer_alerts(ws, _latest(ws, as_of), days=days, limit=limit)
    shown = _narrow(t, {"customer_id": "customer", "occurred_at": "date",
                        "competitor": "competitor", "intent_to_switch": "switch",
                        "value_at_risk": "at risk",
                        "snippet": "snippet"}, 140)
    emit(t, as_json, out, title=f"counter-offer alerts (last {days} days)",
         widths={"snippet": 60}, shown=shown, caption=_narrow_caption(t, shown))


@app.command("procedures")
def procedures_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the day after the "
                                              "last interaction.")] = None,
    horizon_days: Annotated[float, typer.Option(help="Quiet this long counts as left.")] = 90,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Procedures that move loyalty: how slow first replies, unanswered messages, order
    problems, returns and slow resolution go with defection (hazard ratios with 95% intervals
    from a Cox model, adjusted for each other and for spend). Observational, not causal."""
    from custdyn.pipeline import procedures as run

    with _workspace() as ws:
        rows = run(ws, as_of, horizon_days=horizon_days)
    if not rows:
        console.print("not enough defections or variation in the procedures to estimate effects")
        return
    t = pa.Table.from_pylist([{k: r[k] for k in ("name", "hazard_ratio", "lower_95",
                                                   "upper_95", "p_value", "n_with")}
                              for r in rows])
    if as_json or out:
        emit(pa.Table.from_pylist(rows), as_json, out)
        return
    emit(t, False, None, title="procedures and defection (hazard ratios)")
    for r in rows:
        console.print(f"- {r['sentence']}", highlight=False)


@app.command()
def backtest(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Default: the day after the "
                                              "last interaction.")] = None,
    horizon_days: Annotated[float, typer.Option(help="Defection horizon H in days.")] = 90,
    figures: Annotated[str | None, typer.Option(
        help="Folder for the calibration and ROC figures (HTML).")] = "backtest-figures",
    truth: Annotated[str | None, typer.Option(
        help="A known truth to check against instead (the demo's DIR/sources/truth): score "
        "at AS_OF (default: the truth's end minus the horizon) as in production and compare "
        "with who truly left within the horizon.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Validate defection risk against what happened: fit on earlier snapshots, score the
    latest snapshot whose outcome is known at AS_OF, and compare ROC AUC, PR AUC, top-decile
    lift, Brier score and calibration error with two baselines (days since last purchase;
    1 - P(alive)). With --truth, against the demo world's hidden truth."""
    from pathlib import Path

    from custdyn.pipeline import _as_utc, default_as_of, risk_backtest, risk_truth_check

    with _workspace() as ws:
        if truth:
            with err.status("checking against the truth..."):
                res = risk_truth_check(ws, truth, _as_utc(as_of) if as_of else None,
                                       horizon_days)
        else:
            at = _as_utc(as_of) if as_of else default_as_of(ws)
            with err.status("backtesting..."):
                _hist, bt = risk_backtest(ws, at, horizon_days)
    if truth:
        t = pa.Table.from_pylist(res["metrics"])
        emit(t, as_json, out, title=(
            f"defection risk against the truth at {res['as_of'].date()}: {res['n']:,} customers "
            f"truly there, {res['positives']:,} left within {horizon_days:.0f} days "
            f"(label {res['label']})"))
        return
    if bt is None:
        raise _fail(CustdynError(f"not enough history before {at.date()} for a backtest with "
                                 f"a horizon of {horizon_days:.0f} days"))
    t = pa.Table.from_pandas(bt.metrics, preserve_index=False)
    for name in ("n_train", "n", "positives"):  # counts, whatever dtype the frame gave them
        if name in t.column_names:
            i = t.column_names.index(name)
            t = t.set_column(i, name, t.column(name).cast(pa.int64()))
    if figures and not as_json:
        d = Path(figures)
        d.mkdir(parents=True, exist_ok=True)
        write_figure(bt.plot_calibration(), d / "calibration.html")
        write_figure(bt.plot_roc(), d / "roc.html")
        err.print(f"figures: {d / 'calibration.html'}, {d / 'roc.html'}")
    title = f"defection backtest, horizon {horizon_days:.0f} days"
    if not as_json and not out and "as_of" in t.column_names:
        dates = {str(v)[:10] for v in t.column("as_of").to_pylist()}
        if len(dates) == 1:  # one tested date: say it once, leave the columns to the numbers
            t = t.drop_columns(["as_of"])
            title += f", tested at {dates.pop()}"
    emit(t, as_json, out, title=title)


@app.command()
def flows(
    from_as_of: Annotated[str | None, typer.Option("--from", help="Earlier analysis date.")
                          ] = None,
    to_as_of: Annotated[str | None, typer.Option("--to", help="Later analysis date.")] = None,
    html: Annotated[str | None, typer.Option(help="Also write a Sankey figure to FILE.html.")
                    ] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Lifecycle stage-to-stage flows between two analyses, with counts and value."""
    from custdyn.pipeline import plot_flows, stage_flow_table

    with _workspace() as ws:
        t = stage_flow_table(ws, from_as_of, to_as_of)
    if html:
        write_figure(plot_flows(t), html)
        err.print(f"wrote {html}")
    emit(t.drop_columns(["from_as_of", "to_as_of"]) if not as_json else t, as_json, out,
         title="stage flows")
