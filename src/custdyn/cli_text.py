"""Text commands: ``enrich`` (score messages into text_signals) and ``eval-text``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from custdyn.cli import EXIT_REFUSED, JsonOpt, _fail, _open, app, console, err, print_json
from custdyn.errors import CustdynError


@app.command()
def enrich(
    engine: Annotated[str, typer.Option(
        help="Text engine: default, bulk (fast, for millions), hf:PATH or onnx:PATH.")] = "default",
    all_directions: Annotated[bool, typer.Option(
        "--all-directions", help="Also score the vendor's own messages.")] = False,
    batch_size: Annotated[int, typer.Option(help="Texts per committed batch.")] = 512,
    limit: Annotated[int | None, typer.Option(help="Score at most N texts.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the language, sentiment, emotions and competitor mentions of messages not yet
    scored by ENGINE. Safe to interrupt: a re-run continues where it stopped."""
    from custdyn.pipeline import enrich as run_enrich
    from custdyn.pipeline import text_summary

    try:
        ws = _open(read_only=False, purpose=f"custdyn enrich --engine {engine}")
    except CustdynError as e:
        raise _fail(e) from None
    directions = ("inbound", "outbound") if all_directions else ("inbound",)
    try:
        with Progress(TextColumn("[bold]scoring texts"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True,
                      disable=as_json or not err.is_terminal) as bar:
            task = bar.add_task("enrich", total=None)
            r = run_enrich(ws, engine, directions=directions, batch_size=batch_size, limit=limit,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))
        summary = text_summary(ws, r.engine)
    except (CustdynError, ValueError) as e:
        raise _fail(e) from None
    finally:
        ws.close()
    if as_json:
        print_json({"engine": r.engine, "scored": r.scored, "already_scored": r.already_scored,
                    "seconds": r.seconds, "by_language": summary.get(r.engine, {})})
        return
    rate = r.scored / r.seconds if r.seconds > 0 else 0.0
    console.print(f"{r.engine}: scored {r.scored:,} texts ({rate:,.0f}/s); "
                  f"{r.already_scored:,} were already scored")
    for lang, counts in summary.get(r.engine, {}).items():
        console.print(f"  {lang}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("eval-text")
def eval_text(
    file: Annotated[Path, typer.Argument(help="CSV/TSV with text, label and optional language.")],
    engine: Annotated[str, typer.Option(help="Text engine to evaluate.")] = "default",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Sentiment macro-F1 per language, with a 95% bootstrap interval, on a labelled file."""
    from custdyn.text import evaluate_sentiment, read_labelled, render_report, report_to_json

    try:
        texts, labels, langs = read_labelled(file)
        report = evaluate_sentiment(texts, labels, langs, engine=engine, n_boot=n_boot)
    except (CustdynError, ValueError, OSError) as e:
        raise _fail(e, EXIT_REFUSED) from None
    if as_json:
        import json

        print_json(json.loads(report_to_json(report)))
    else:
        console.print(render_report(report), highlight=False)
