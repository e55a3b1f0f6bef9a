"""Text commands: ``enrich`` (score messages into text_signals), ``eval-text`` and
``eval-themes``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from custdyn.cli import (
    EXIT_REFUSED,
    JsonOpt,
    LabelSchemeOpt,
    LanguagesOpt,
    _fail,
    _workspace,
    app,
    console,
    err,
    note_encoding,
    print_json,
    shares_line,
    split_languages,
)
from custdyn.errors import CustdynError


@app.command()
def enrich(
    engine: Annotated[str | None, typer.Option(
        help="Text engine: default, bulk (fast, for millions), hf:PATH, onnx:PATH or "
        "workspace:vN (default: the workspace's default engine, see `custdyn text-models`).")
    ] = None,
    all_directions: Annotated[bool, typer.Option(
        "--all-directions", help="Also score the vendor's own messages.")] = False,
    batch_size: Annotated[int | None, typer.Option(
        help="Texts per committed batch (default 8,192 for the bulk engine, else 512).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score at most N texts.")] = None,
    relearn_languages: Annotated[bool, typer.Option(
        "--relearn-languages", help="Learn again how common each language is among the "
        "customers' messages (learnt on the first run, and again once they have doubled). "
        "Messages scored before keep their language.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Score the language, sentiment, emotions and competitor mentions of messages not yet
    scored by ENGINE. Safe to interrupt: a re-run continues where it stopped.

    Each message's language is read with the workspace's languages in mind: how common each
    is among its customers' messages, learnt once and kept (so a short Norwegian message is
    not taken for Danish among Norwegian ones). A customer's own language, where the
    customer record has one, is used as it is."""
    from custdyn.pipeline import enrich as run_enrich
    from custdyn.pipeline import text_summary
    from custdyn.text import default_engine_name

    directions = ("inbound", "outbound") if all_directions else ("inbound",)
    with _workspace(read_only=False, purpose=f"custdyn enrich --engine {engine or 'default'}",
                    catch=(CustdynError, ValueError)) as ws:
        engine = engine or default_engine_name(ws)
        with Progress(TextColumn("[bold]scoring texts"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True,
                      disable=as_json or not err.is_terminal) as bar:
            task = bar.add_task("enrich", total=None)
            r = run_enrich(ws, engine, directions=directions, batch_size=batch_size, limit=limit,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total),
                           relearn_languages=relearn_languages)
        summary = text_summary(ws, r.engine)
    if as_json:
        print_json({"engine": r.engine, "scored": r.scored, "already_scored": r.already_scored,
                    "carried": r.carried, "seconds": r.seconds, "by_language": summary.get(r.engine, {}),
                    "language_shares": r.language_shares, "languages_learnt": r.languages_learnt})
        return
    if r.languages_learnt and r.language_shares:
        console.print("languages of the customers' messages (learnt now, kept for detection): "
                      + shares_line(r.language_shares))
    rate = r.scored / r.seconds if r.seconds > 0 else 0.0
    console.print(f"{r.engine}: scored {r.scored:,} texts ({rate:,.0f}/s); "
                  f"{r.already_scored:,} were already scored")
    if r.carried:
        console.print(f"  {r.carried:,} of those are short texts it reads as its previous "
                      "version did: their scores were taken over")
    for lang, counts in summary.get(r.engine, {}).items():
        console.print(f"  {lang}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("eval-text")
def eval_text(
    file: Annotated[Path, typer.Argument(
        help="Labelled file (CSV, TSV, JSON Lines, JSON, Parquet): text, label, optional "
        "language.")],
    engine: Annotated[str, typer.Option(help="Text engine to evaluate.")] = "default",
    train_on: Annotated[Path | None, typer.Option(
        "--train-on", help="First train a model as train-text would, on this labelled file "
        "(text, label, optional language), and evaluate that model.")] = None,
    no_ngrams: Annotated[bool, typer.Option(
        "--no-ngrams", help="With --train-on: sentence embedding only.")] = False,
    finetune: Annotated[bool, typer.Option(
        "--finetune", help="With --train-on: also fine-tune the encoder's top layers, as "
        "train-text --finetune does (needs the text-models extra).")] = False,
    max_minutes: Annotated[float, typer.Option(
        "--max-minutes", min=0.1, help="Time budget of --finetune.")] = 25.0,
    layers: Annotated[int, typer.Option(
        "--layers", min=1, max=12, help="Top encoder layers --finetune trains.")] = 3,
    folds: Annotated[int, typer.Option(
        min=2, help="With --train-on: cross-validation folds (model choice, thresholds).")] = 5,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    sample: Annotated[int | None, typer.Option(
        "--sample", min=1, help="Score a random sample of N texts of FILE (seeded, the same "
        "every run): an estimate in minutes on a large file, its interval as wide as N makes "
        "it.")] = None,
    three_way: Annotated[bool, typer.Option(
        "--three-way", help="Score a file labelled negative/positive only as three classes "
        "too, counting 'neutral' answers as errors (by default such a file is scored as a "
        "two-class task: each text the likelier of the two).")] = False,
    label_scheme: LabelSchemeOpt = "auto",
    languages: LanguagesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sentiment macro-F1 per language, with a 95% bootstrap interval, on a labelled file.
    With --train-on LABELS, the engine evaluated is a model trained on LABELS (never on FILE).
    A file with an `emotions` column is scored on its emotions too.

    Files: CSV, TSV, JSON Lines, JSON or Parquet; labels as negative/neutral/positive (or
    neg/neu/pos, or numbers: see --label-scheme); languages as ISO 639-1 codes or names."""
    import contextlib
    import tempfile

    from custdyn.schema import SENTIMENTS
    from custdyn.text import evaluate_sentiment, render_report, report_to_json
    from custdyn.text.labelled import labelled_rows

    if finetune and train_on is None:
        raise _fail(ValueError("--finetune needs --train-on LABELS"), EXIT_REFUSED)
    try:
        # a fine-tune's encoder lives in a folder that goes when the evaluation is done
        with (tempfile.TemporaryDirectory(prefix="custdyn-eval-") if finetune
              else contextlib.nullcontext("")) as tmp:
            among = split_languages(languages)
            note_encoding(file, train_on)
            got = labelled_rows(file, label_scheme)
            texts, labels = got.texts, [SENTIMENTS[k] for k in got.labels]
            langs, emotions = got.languages, got.emotions
            total = len(texts)
            if sample is not None and sample < total:
                import numpy as np

                pick = np.sort(np.random.default_rng(0).permutation(total)[:sample])
                texts, labels = [texts[i] for i in pick], [labels[i] for i in pick]
                langs = None if langs is None else [langs[i] for i in pick]
                emotions = None if emotions is None else [emotions[i] for i in pick]
            chosen: object = engine
            if train_on is not None:
                ft = (max_minutes, layers, Path(tmp)) if finetune else None
                chosen = _train_on_file(train_on, no_ngrams, quiet=as_json, scheme=label_scheme,
                                        finetune=ft, folds=folds, among=among)  # fmt: skip
            with Progress(TextColumn("[bold]scoring held-out texts"), BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                          transient=True, disable=as_json or not err.is_terminal) as bar:
                task = bar.add_task("score", total=len(texts))
                report = evaluate_sentiment(
                    texts, labels, langs, engine=chosen, n_boot=n_boot, among=among,
                    two_class=False if three_way else None, emotions=emotions,
                    progress=lambda d, t: bar.update(task, completed=d, total=t))
    except (CustdynError, ValueError, OSError, ImportError) as e:
        raise _fail(e, EXIT_REFUSED) from None
    if as_json:
        import json

        out = json.loads(report_to_json(report))
        out["macro_f1"] = {k: v["macro_f1"] for k, v in out["per_language"].items()}
        out["n"] = {k: v["n"] for k, v in out["per_language"].items()}
        if len(texts) < total:
            out["sample"] = {"n": len(texts), "of": total, "seed": 0}
        print_json(out)
    else:
        if len(texts) < total:
            console.print(f"a random sample of {len(texts):,} of the {total:,} texts in "
                          f"{file.name} (seed 0)")
        console.print(render_report(report), highlight=False)
        if among is None and (langs is None or None in langs):
            err.print("[dim]languages were detected from the texts; where you know them, "
                      "--languages (e.g. no,en) keeps close languages apart[/dim]")


def _train_on_file(path: Path, no_ngrams: bool, quiet: bool, scheme: str = "auto",
                   finetune: tuple[float, int, Path] | None = None, folds: int = 5,
                   among: list[str] | None = None) -> object:
    """:func:`~custdyn.text.workspace_models.train_from_file` with a progress bar (with
    ``finetune=(max_minutes, layers, folder)``: fine-tuned, the encoder in the folder)."""
    from custdyn.text.train import HeadConfig
    from custdyn.text.workspace_models import train_from_file

    ft_config, folder = None, None
    if finetune is not None:
        from custdyn.text.finetune import FinetuneConfig

        minutes, layers, folder = finetune
        ft_config = FinetuneConfig(max_minutes=minutes, layers=layers)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task("embedding labels", total=None)
        return train_from_file(
            path, HeadConfig(use_ngrams=not no_ngrams), ft_config, scheme=scheme, folds=folds,
            encoder_dir=folder, among=among,
            progress=lambda d, t, stage: bar.update(task, completed=d, total=t,
                                                    description=stage))  # fmt: skip


@app.command("eval-themes")
def eval_themes(
    file: Annotated[Path, typer.Argument(
        help="File with a `text` and a `theme` column (CSV, TSV, JSON Lines, JSON, Parquet; "
        "optional `language`): your own categories, \"none\" for no theme.")],
    train_on: Annotated[Path | None, typer.Option(
        "--train-on", help="First learn the themes named in this file (text, theme), as "
        "`backlog` learns those of your labels, then read FILE with them.")] = None,
    max_embed: Annotated[int, typer.Option(
        min=10, help="Texts embedded (the rest take the theme their words point to), as "
        "`backlog --max-embed`.")] = 600,
    max_themes: Annotated[int, typer.Option(
        help="At most this many themes found, as `backlog --max-themes`.")] = 16,
    label_scheme: LabelSchemeOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """How well the backlog's themes match known ones: purity and adjusted Rand index per
    language, over all texts (no theme as a class of its own) and over those with a theme.
    With --train-on, also the share of texts given the theme of their own name."""
    import json

    from custdyn.text import evaluate_themes
    from custdyn.text.labelled import theme_rows

    try:
        note_encoding(file, train_on)
        texts, themes, langs = theme_rows(file, label_scheme)
        taught: tuple[list[str], list[str], list[str | None] | None] | None = None
        if train_on is not None:
            taught = theme_rows(train_on, label_scheme)
            both = len(set(texts) & set(taught[0]))
            if both and not as_json:
                err.print(f"warning: {both:,} texts of {file.name} are in {train_on.name} "
                          "too: the themes learnt them, so they read better than new texts "
                          "would", highlight=False)
        with err.status(f"embedding up to {max_embed:,} texts"
                        f"{' and the labels' if taught else ''}..."):
            report = evaluate_themes(
                texts, themes, langs, max_embed=max_embed, max_themes=max_themes,
                labelled_texts=taught[0] if taught else None,
                labelled_themes=taught[1] if taught else None,
                labelled_languages=taught[2] if taught else None)
    except (ValueError, OSError, CustdynError) as e:
        raise _fail(e, EXIT_REFUSED) from None
    report["file"] = str(file)
    if as_json:
        print_json(json.loads(json.dumps(report, default=float)))
        return
    t = Table(header_style="bold")
    cols = ["language", "texts", "with a theme", "purity", "ARI", "purity (themed)",
            "ARI (themed)"] + (["named right"] if train_on is not None else [])
    for c in cols:
        t.add_column(c, justify="left" if c == "language" else "right")

    def cell(s: dict, key: str) -> str:
        return f"{s[key]:.3f}" if key in s else "-"

    for lang, s in [*report["per_language"].items(), ("all", report["overall"])]:
        t.add_row(lang, f"{s['n']:,}", f"{s['with_theme']:,}", cell(s, "purity"), cell(s, "ari"),
                  cell(s, "purity_themed"), cell(s, "ari_themed"),
                  *([cell(s, "named_right")] if train_on is not None else []))
    console.print(t)
    named = report["themes_named"]
    console.print(f"{report['themes_found']} themes"
                  + (f", {len(named)} learnt from {train_on.name}: {', '.join(named)}"
                     if train_on is not None else " found in the texts alone")
                  + f"; {report['embedded']:,} texts embedded", highlight=False)
    if report["unused_labels"]:
        err.print("themes with too few labels to learn (3 needed): " + ", ".join(
            f"{h} ({k})" for h, k in sorted(report["unused_labels"].items())), highlight=False)
