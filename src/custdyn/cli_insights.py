"""Action lists: ``worth-saving``, ``backlog`` and ``responders`` (see docs/actions.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.markup import escape

from custdyn.cli import JsonOpt, _fail, _open, _workspace, app, console, emit, err
from custdyn.errors import CustdynError, WorkspaceLockedError

OutFileOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Also write the list to FILE (.parquet, .csv or .json)."),
]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Default: the latest analysis.")]


def _reasons_text(reasons: list[dict[str, Any]] | None) -> str:
    parts = []
    for r in reasons or []:
        v = r.get("value")
        parts.append(f"{r['feature']}={v:.3g}" if isinstance(v, int | float) else r["feature"])
    return "; ".join(parts)


def _last_text(items: list[dict[str, Any]] | None) -> str:
    parts = []
    for x in items or []:
        when = x["occurred_at"].strftime("%Y-%m-%d") if x.get("occurred_at") else "?"
        arrow = "<-" if x.get("direction") == "inbound" else "->"
        s = f"{when} {x.get('channel') or '?'} {x.get('kind') or ''} {arrow}"
        if x.get("snippet"):
            s += f" {x['snippet'][:60]}"
        parts.append(s)
    return " | ".join(parts)


@app.command("worth-saving")
def worth_saving_cmd(
    top: Annotated[int, typer.Option("--top", help="How many customers (0: all).")] = 20,
    uplift: Annotated[float | None, typer.Option(
        help="Share of the value at risk an action wins back (default: [insights] uplift in "
        "custdyn.toml, or 0.1).")] = None,
    as_of: AsOfOpt = None,
    include_lost: Annotated[bool, typer.Option(
        help="Also list customers already in the lost stage.")] = False,
    as_json: JsonOpt = False,
    out: OutFileOpt = None,
) -> None:
    """Customers worth saving: ranked by the expected value of acting on them (CLV x defection
    risk x uplift), with the top reasons for their risk and their last three interactions."""
    from custdyn.insights import worth_saving

    with _workspace() as ws:
        t = worth_saving(ws, as_of, uplift=uplift, top=top or None,
                         include_lost=include_lost)
    rows = t.to_pylist()
    shown = pa.Table.from_pylist([{
        "rank": r["rank"], "customer_id": r["customer_id"], "stage": r["stage"],
        "clv": r["clv"], "risk": r["defection_risk"], "expected_value": r["expected_value"],
        "reasons": _reasons_text(r["reasons"])} for r in rows]) if rows else pa.table(
        {"customer_id": pa.array([], pa.string())})
    u = rows[0]["uplift"] if rows else None
    emit(t, as_json, out, title="customers worth saving", widths={"reasons": 80}, shown=shown,
         caption=f"expected value = CLV x risk x uplift {u:g}" if u else None)
    if not as_json and rows:
        console.print("[bold]last interactions[/] (<- from the customer, -> from you)")
        for r in rows:
            console.print(f"{r['rank']:>3}. {r['customer_id']}", highlight=False)
            for x in r["last_interactions"]:
                console.print(f"       {escape(_last_text([x]))}", highlight=False)


@app.command()
def backlog(
    top: Annotated[int, typer.Option("--top", help="How many themes (0: all).")] = 15,
    days: Annotated[int, typer.Option(help="Messages of the last DAYS before AS_OF.")] = 365,
    trend_days: Annotated[int, typer.Option(
        help="Trend: messages in the last N days against the N days before.")] = 90,
    max_embed: Annotated[int, typer.Option(
        help="Texts embedded to find the themes (the rest take the theme their words point to).")
    ] = 600,
    max_themes: Annotated[int, typer.Option(
        help="At most this many themes (the silhouette picks the number).")] = 16,
    refit: Annotated[bool, typer.Option(help="Find the themes again even if stored.")] = False,
    labels: Annotated[bool, typer.Option(
        "--labels/--no-labels",
        help="Learn the themes named in the workspace's labels (a theme column in `label "
             "--import`); --no-labels finds themes from the texts alone.")] = True,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
    out: OutFileOpt = None,
) -> None:
    """Feedback backlog: themes in what customers write (across languages) with their
    customers, total CLV, CLV at risk, sentiment, trend and example quotes in their languages,
    ranked by CLV at risk: what to improve or build next.

    Themes you named in your labels (at least 3 labelled texts each; "none" for texts with no
    theme) are learnt: the groups of texts they explain take your names, the others stay
    themes found on their own."""
    from custdyn.insights import backlog_themes, feedback_backlog, scores_as_of

    try:
        try:  # writable, so the themes found are stored for the next run
            ws = _open(read_only=False, purpose="custdyn backlog")
        except WorkspaceLockedError:
            ws = _open()
        with ws:
            with err.status("finding themes (the first run embeds texts; later runs reuse "
                            "them)..."):
                at = scores_as_of(ws, as_of)
                ts = backlog_themes(ws, at, days=days, trend_days=trend_days,
                                    max_embed=max_embed, max_themes=max_themes, refit=refit,
                                    labels=labels)
                t = feedback_backlog(ws, at, days=days, trend_days=trend_days, themes=ts)
    except CustdynError as e:
        raise _fail(e) from None
    if ts.unused_labels and not as_json:
        few = ", ".join(f"{escape(h)} ({k})" for h, k in sorted(ts.unused_labels.items()))
        err.print(f"themes named with too few labels to learn (3 needed): {few}",
                  highlight=False)
    if top:
        t = t.slice(0, top)
    rows = t.to_pylist()
    shown = pa.Table.from_pylist([{
        "rank": r["rank"], "theme": r["name"], "by": "you" if r["named"] else "found",
        "customers": r["customers"],
        "clv": r["clv"], "clv_at_risk": r["clv_at_risk"], "sentiment": r["mean_sentiment"],
        "trend": None if r["trend"] is None else f"{r['trend']:+.0%}",
    } for r in rows]) if rows else pa.table({"theme": pa.array([], pa.string())})
    emit(t, as_json, out, title="feedback backlog (by CLV at risk)", widths={"theme": 50},
         shown=shown, caption=f"trend: messages in the last {trend_days} days against the "
         f"{trend_days} before; by: a theme you named in your labels, or found in the texts")
    if as_json:
        return
    if not rows:
        console.print("no themes found")
    elif labels and not any(r["named"] for r in rows):
        err.print("[dim]name your own themes: `custdyn label --themes`, or a theme column in "
                  "`custdyn label --import`; backlog learns them[/]")
    for r in rows:
        console.print(f"[bold]{r['rank']}. {escape(r['name'])}[/] "
                      f"({escape(', '.join(r['key_phrases'][:6]))})", highlight=False)
        for q in r["examples"][:4]:
            console.print(f"   [dim]{escape(str(q['language']))}[/] {escape(q['text'] or '')}",
                          highlight=False)


@app.command()
def responders(
    as_of: AsOfOpt = None,
    slow_factor: Annotated[float | None, typer.Option(
        help="Flag agents this many times slower than the norm (default: [insights] "
        "slow_factor, or 2).")] = None,
    min_turns: Annotated[int, typer.Option(help="Replies needed before an agent is flagged.")
                         ] = 10,
    as_json: JsonOpt = False,
    out: OutFileOpt = None,
) -> None:
    """Responsiveness per agent: median and 90th-percentile first-reply time, unanswered
    messages, customers served and their value at risk; slow agents flagged against the base's
    norm (each channel's median first reply)."""
    from custdyn.insights import responders as run

    with _workspace() as ws:
        t = run(ws, as_of, slow_factor=slow_factor, min_turns=min_turns)
    shown = pa.Table.from_pylist([{
        "rank": r["rank"], "agent": r["agent_id"], "replied": r["replied"],
        "median h": r["median_first_reply_h"], "p90 h": r["p90_first_reply_h"],
        "slowness": r["slowness"], "unanswered": r["unanswered_share"],
        "customers": r["customers"], "clv_at_risk": r["clv_at_risk"],
        "flag": "SLOW" if r["slow"] else ""} for r in t.to_pylist()]) if t.num_rows else t
    emit(t, as_json, out, title="agents by first-reply time against the norm", shown=shown,
         caption="slowness: median of reply time / the channel's median (1 = typical); "
         "unanswered: share of turns without a reply in time (--json for every column)")
