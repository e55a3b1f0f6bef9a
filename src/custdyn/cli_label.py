"""Labelling commands: ``label`` (interactive, or through a spreadsheet), ``train-text``,
``text-models`` and ``learning-curve``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from custdyn.cli import (
    EXIT_REFUSED,
    EXIT_WARN,
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
    split_languages,
    write_figure,
)
from custdyn.errors import CustdynError
from custdyn.schema import EMOTIONS

_KEYS = {"n": "negative", "1": "negative", "u": "neutral", "2": "neutral", "0": "neutral",
         "p": "positive", "3": "positive"}  # fmt: skip
#: ``label --emotions``: the key of each emotion (a key press adds it, a second removes it)
_EMOTION_KEYS = {str(i): e for i, e in enumerate(EMOTIONS, start=1)}


def _progress(label: str, quiet: bool) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True,
                    disable=quiet or not err.is_terminal)  # fmt: skip


def _getkey() -> str:
    """One key press from the terminal, or one character of piped input ("q" at its end)."""
    if sys.stdin.isatty():
        return click.getchar()
    return sys.stdin.read(1) or "q"


def _ask_emotions() -> list[str] | None:
    """The emotions a text expresses, one key each (1-8, again to take one back), Enter to
    finish (none pressed: the text expresses none), x to say nothing of its emotions."""
    console.print("  ".join(rf"\[{k}] {e}" for k, e in _EMOTION_KEYS.items())
                  + r"  \[Enter] done  \[x] not said ", end="")
    chosen: list[str] | None = []
    while True:
        key = _getkey().lower()
        if key in ("\r", "\n", "q"):  # q: the end of piped input
            break
        if key == "x":
            chosen = None
            break
        if key in _EMOTION_KEYS and chosen is not None:
            e = _EMOTION_KEYS[key]
            chosen = [c for c in chosen if c != e] if e in chosen else [*chosen, e]
    console.print("not said" if chosen is None else (", ".join(chosen) or "none"))
    return None if chosen is None else sorted(chosen, key=EMOTIONS.index)


def _getline() -> str:
    """One line from the terminal (echoed, editable), or from piped input."""
    if sys.stdin.isatty():
        return console.input("")
    chars = []
    while (ch := sys.stdin.read(1)) not in ("", "\n", "\r"):
        chars.append(ch)
    return "".join(chars)


def _ask_theme(known: list[str], guess: dict[str, Any] | None = None) -> str | None:
    """The theme a text is about: the number of a theme named before, or a new name; "-" for
    no theme; Enter alone says nothing of it. ``guess``: the theme the backlog's last fit gave
    the text; one of yours is taken with "=", a found one is shown by its key phrases."""
    if guess is not None:
        if guess["named"]:
            console.print(rf"backlog says: {escape(guess['name'])}  \[=] take it")
        else:
            console.print(f"backlog says: found theme {escape(guess['id'])} "
                          f"([italic]{escape(guess['name'])}[/])")
    shown = "  ".join(rf"\[{k}] {escape(t)}" for k, t in enumerate(known[:9], start=1))
    console.print(f"theme: {shown + '  ' if shown else ''}or type a name  \\[-] none  "
                  r"\[Enter] not said: ", end="")
    got = _getline().strip()
    if got == "=":  # the backlog's theme, where it is one of yours; else as Enter
        got = str(guess["name"]) if guess is not None and guess["named"] else ""
    if got.isdigit() and 1 <= int(got) <= min(9, len(known)):
        got = known[int(got) - 1]
    theme = None if not got else ("none" if got == "-" else got)
    if not sys.stdin.isatty():
        console.print(theme or "not said")
    return theme


def _show(i: int, total: int, c: Any) -> None:
    head = [f"[bold]{i}/{total}[/]", c.language]
    if c.channel:
        head.append(c.channel)
    if c.occurred_at is not None:
        head.append(str(c.occurred_at)[:16])
    if c.customer_id:
        head.append(f"customer {escape(str(c.customer_id))}")
    body = []
    for line in c.context:
        body.append(f"[dim]{escape(line[:300])}[/]")
    if c.subject:
        body.append(f"[italic]{escape(str(c.subject))}[/]")
    text = str(c.text)
    if len(text) > 2000:  # its start and its end, where a long message's verdict usually is
        body.append(escape(text[:1500].rstrip()))
        body.append(f"[dim]... {len(text) - 2000:,} characters not shown ...[/]")
        body.append(escape(text[-500:].lstrip()))
    else:
        body.append(escape(text))
    guess = f"model says {c.predicted} ({c.confidence:.2f})" if c.predicted and c.confidence else ""
    felt = ", ".join(f"{e} {p:.2f}" for e, p in c.likely_emotions())
    guess = "; ".join(x for x in (guess, felt) if x)
    console.print(Panel("\n".join(body), title="  ".join(head), subtitle=guess, expand=False))


@app.command()
def label(
    n: Annotated[int, typer.Option("--n", help="Texts to propose this round.")] = 20,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write the next N texts to label to FILE (.csv or .tsv) instead, "
        "with the model's sentiment, likeliest emotions and the backlog's theme as hints.")
    ] = None,
    import_: Annotated[Path | None, typer.Option(
        "--import", help="Add the labels of FILE (CSV, TSV, JSON Lines, JSON or Parquet: text, "
        "label, optional language, emotions and theme; a row with a theme and no label "
        "labels the theme alone).")
    ] = None,
    engine: Annotated[str | None, typer.Option(
        help="Engine whose prediction is shown beside each text (default: the workspace "
        "default).")
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who labels (default: the system user).")] = None,
    emotions: Annotated[bool, typer.Option(
        "--emotions", help="After each answer, also ask which emotions the text expresses "
        "(keys 1-8; Enter: done, none pressed = none; x: not said). `train-text` learns them.")
    ] = False,
    themes: Annotated[bool, typer.Option(
        "--themes", help="After each answer, also ask what theme the text is about (the "
        "number of one named before, or a new name; - for none; Enter: not said; = takes the "
        "backlog's theme for it when that is one you named). `backlog` learns the themes "
        "you name.")
    ] = False,
    label_scheme: LabelSchemeOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Label texts of the workspace, one key per answer: n (negative), u (neutral),
    p (positive), s (skip), q (quit); 1/2/3 work too. Each answer is saved at once: stop any
    time and run again to resume. A file to --import may carry `emotions` and `theme`
    columns too."""
    from custdyn.text.labels import (
        add_label,
        export_candidates,
        import_labels,
        label_count,
        read_theme_labels,
        select_for_labelling,
    )
    from custdyn.text.themes import theme_label

    with _workspace(read_only=False, purpose="custdyn label",
                    catch=(CustdynError, ValueError, OSError)) as ws:
        who = by
        if who is None:
            from custdyn.store import _user

            who = _user()
        if import_ is not None:
            note_encoding(import_)
            r = import_labels(ws, import_, labelled_by=who, scheme=label_scheme)
            total = label_count(ws)
            if as_json:
                print_json({"added": r.added, "replaced": r.replaced, "labels": total,
                            "bad_rows": [{"row": b.row, "reason": b.reason} for b in r.bad]})
            else:
                again = (f"; {r.replaced:,} rows replaced an earlier answer for the same text"
                         if r.replaced else "")
                console.print(f"added {r.added:,} labels from {import_} ({total:,} in all)"
                              f"{again}", highlight=False)
                for b in r.bad:
                    err.print(f"  row {b.row}: {escape(b.reason)}", highlight=False)
            if r.bad:
                raise typer.Exit(EXIT_WARN)
            return
        with _progress("reading the workspace's messages", as_json) as bar:
            task = bar.add_task("embed", total=None)
            cands = select_for_labelling(
                ws, n, engine=engine,
                progress=lambda d, t: bar.update(task, completed=d, total=t))
        from custdyn.insights import stored_themes_of

        guesses = (stored_themes_of(ws, [c.interaction_id for c in cands])
                   if export is not None or themes else {})  # fmt: skip
        for c in cands:  # what the backlog calls each: a theme you named, or a found one
            g = guesses.get(c.interaction_id)
            if g is not None:
                c.theme_guess = g["name"] if g["named"] else f"{g['id']}: {g['name']}"
        if export is not None:
            k = export_candidates(export, cands)
            if as_json:
                print_json({"exported": k, "file": str(export)})
            else:
                console.print(f"wrote {k:,} texts to label to {export}; fill the label column "
                              f"and run `custdyn label --import {export}`")  # fmt: skip
            return
        if not cands:
            console.print("nothing left to label: every inbound text with words is labelled")
            return
        done = skipped = 0
        named: list[str] = []
        if themes:  # the themes named so far, the most labelled first
            from collections import Counter

            counts = Counter(r["theme"] for r in read_theme_labels(ws) if theme_label(r["theme"]))
            named = [t for t, _ in counts.most_common()]
        for i, c in enumerate(cands, start=1):
            _show(i, len(cands), c)
            while True:
                console.print(r"\[n]egative  ne\[u]tral  \[p]ositive  \[s]kip  \[q]uit ", end="")
                key = _getkey().lower()
                console.print(key)
                if key in _KEYS or key in ("s", "q"):
                    break
            if key == "q":
                break
            if key == "s":
                skipped += 1
                continue
            felt = _ask_emotions() if emotions else None
            about = _ask_theme(named, guesses.get(c.interaction_id)) if themes else None
            if about is not None and theme_label(about) and about not in named:
                named.append(about)
            add_label(ws, c.text, _KEYS[key], interaction_id=c.interaction_id,
                      language=c.language, emotions=felt, theme=about, labelled_by=who,
                      source="cli")  # fmt: skip
            done += 1
        total = label_count(ws)
    if as_json:
        print_json({"labelled": done, "skipped": skipped, "labels": total})
    else:
        console.print(f"labelled {done}, skipped {skipped}; {total:,} labels in the workspace")


def _config(no_ngrams: bool) -> Any:
    from custdyn.text.train import HeadConfig

    return HeadConfig(use_ngrams=not no_ngrams)


def _emotion_line(emo: dict[str, Any]) -> str:
    """One line on the emotions ``train-text`` learnt (or not) from the labels."""
    if "average_precision" not in emo:
        return f"emotions: {emo['reason']}; the shipped emotion heads are kept"
    ap, top = emo["average_precision"], emo["top_emotion_right"]
    said = (f"emotions: {emo['labels']} labels carry them; cross-validated mean average "
            f"precision {ap['candidate']:.3f} against {ap['shipped']:.3f} for the shipped "
            f"heads (likeliest emotion right {top['candidate']:.3f} against "
            f"{top['shipped']:.3f})")
    if emo["used"]:
        return said + ": the model reads emotions with its own heads"
    return said + ": the shipped emotion heads are kept"


def _metrics_table(metrics: dict[str, Any], current: str) -> Table:
    t = Table(header_style="bold")
    for col in ("language", "labels", "trained (cross-validated)", current):
        t.add_column(col, justify="left" if col == "language" else "right")
    items = list(metrics["per_language"].items()) + [("all", metrics["overall"])]
    for lang, s in items:
        t.add_row(lang, f"{s['n']:,}", f"{s['candidate']:.3f}", f"{s['current']:.3f}")
    return t


@app.command("train-text")
def train_text(
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    no_ngrams: Annotated[bool, typer.Option(
        "--no-ngrams", help="Sentence embedding only (no hashed n-grams of the texts).")] = False,
    finetune: Annotated[bool, typer.Option(
        "--finetune", help="Also fine-tune the encoder's top layers on the labels, on the CPU "
        "(needs the text-models extra).")] = False,
    max_minutes: Annotated[float, typer.Option(
        "--max-minutes", min=0.1, help="Time budget of --finetune (all folds and the final "
        "model together).")] = 25.0,
    layers: Annotated[int, typer.Option(
        "--layers", min=1, max=12, help="Top encoder layers --finetune trains.")] = 3,
    bulk: Annotated[bool, typer.Option(
        "--bulk", help="Instead: distil the default engine into a bulk table of this "
        "workspace's own (no labels needed; see --sample).")] = False,
    sample: Annotated[int, typer.Option(
        "--sample", min=50, help="With --bulk: messages the default engine reads for it.")
    ] = 3000,
    as_json: JsonOpt = False,
) -> None:
    """Train the next workspace text model (workspace:vN) from the workspace's labels on top of
    the shipped engine. It becomes the default only if cross-validation shows it better than the
    current default; the numbers are printed either way. With --finetune the encoder itself is
    fine-tuned too (inside each cross-validation fold, so the comparison stays honest).

    With --bulk, the workspace's default engine reads a sample of its messages and the fast
    bulk table learns from what it read: the table `custdyn analyze` then uses reads the
    workspace's words about as the default engine does, thousands of texts a second. It is
    put to use only if it reads better than the bulk table in use (on the labels, when there
    are 30 or more; else by agreement with the default engine on a fifth of the sample)."""
    from custdyn.text.workspace_models import finetune_workspace, train_workspace

    if bulk:
        if finetune:
            raise _fail(ValueError("give --bulk or --finetune, not both"))
        _distil(sample, as_json)
        return
    if finetune:
        try:
            from custdyn.text.finetune import FinetuneConfig, require_torch

            require_torch()
        except ImportError as e:
            raise _fail(e) from None
    with _workspace(read_only=False, purpose="custdyn train-text",
                    catch=(CustdynError, ValueError, OSError, ImportError)) as ws:
        from custdyn.text.workspace_models import bulk_engine_name

        fast = bulk_engine_name(ws)
        with _progress("embedding labelled texts", as_json) as bar:
            task = bar.add_task("embed", total=None)
            if finetune:
                def step(d: int, t: int, stage: str) -> None:
                    bar.update(task, completed=d, total=t, description=stage)

                bar.columns = (TextColumn("[bold]{task.description}"), *bar.columns[1:])
                r = finetune_workspace(
                    ws, _config(no_ngrams),
                    FinetuneConfig(max_minutes=max_minutes, layers=layers), folds=folds,
                    progress=step,
                )  # fmt: skip
            else:
                r = train_workspace(ws, _config(no_ngrams), folds=folds,
                                    progress=lambda d, t: bar.update(task, completed=d, total=t))
    if as_json:
        print_json(r)
        return
    console.print(_metrics_table(r["metrics"], r["current"]))
    console.print(f"compared on {r['compared_on']}", highlight=False)
    if len(r["metrics"].get("classes", ())) == 2:
        console.print("[yellow]no label is neutral:[/] the scores above are two-class (each text "
                      "the likelier of negative and positive), and the model learnt two classes: "
                      "it will seldom answer 'neutral'. Label some neutral messages if your "
                      "customers write them.", highlight=False)
    if "finetune" in r["metrics"]:
        s = r["metrics"]["finetune"]
        console.print(
            f"fine-tuned the top {s['layers']} encoder layers in {s['seconds']:.0f} s "
            f"({s['final_epochs']:g} epochs on all labels"
            + ("; stopped by the time budget" if s["stopped_by_time"] else "") + "); "
            f"cross-validated macro-F1 {r['metrics']['candidate_all_labels']:.3f} against "
            f"{r['metrics']['head_only_all_labels']:.3f} for a head on the unchanged encoder",
            highlight=False,
        )
    emo = r["metrics"].get("emotions") or {}
    if emo.get("labels"):
        console.print(_emotion_line(emo), highlight=False)
    if r["made_default"]:
        console.print(f"[green]{r['name']} is now the default[/] (was {r['current']}); "
                      "`custdyn text-models --rollback` undoes it")  # fmt: skip
        if fast != "bulk":
            console.print(f"the bulk table {fast} learnt from {r['current']}: until "
                          "`custdyn train-text --bulk` distils the new default, the shipped "
                          "bulk table is used", highlight=False)  # fmt: skip
    else:
        console.print(f"{r['name']} saved; {r['current']} stays the default "
                      f"(use `custdyn text-models --use {r['name']}` to switch anyway)")


def _distil(sample: int, as_json: bool) -> None:
    from custdyn.text.distil import distil_bulk

    with _workspace(read_only=False, purpose="custdyn train-text --bulk",
                    catch=(CustdynError, ValueError, OSError)) as ws:
        with _progress("reading messages", as_json) as bar:
            task = bar.add_task("read", total=None)
            bar.columns = (TextColumn("[bold]{task.description}"), *bar.columns[1:])

            def step(d: int, t: int, stage: str) -> None:
                bar.update(task, completed=d, total=t, description=stage)

            r = distil_bulk(ws, sample=sample, progress=step)
    if as_json:
        print_json(r)
        return
    m = r["metrics"]
    t = Table(header_style="bold", title=f"{r['name']}: distilled from {m['teacher']} "
              f"on {m['sample']:,} messages")  # fmt: skip
    for col in ("measured on", "n", "new table", f"in use ({r['current']})", m["teacher"]):
        t.add_column(col)
    a = m["agreement"]
    t.add_row("agreement with the teacher (kept out)", f"{m['held_out']:,}",
              f"{a['candidate']:.3f}", f"{a['current']:.3f}", "1.000")  # fmt: skip
    if "labels" in m:
        lab = m["labels"]
        t.add_row("your labels", f"{lab['n']:,}", f"{lab['candidate']:.3f}",
                  f"{lab['current']:.3f}", f"{lab['teacher']:.3f}")  # fmt: skip
    console.print(t)
    console.print(f"macro-F1; decided on {'your labels' if r['decided_on'] == 'labels' else 'agreement'}; "
                  f"{m['seconds']:.0f} s in all", highlight=False)  # fmt: skip
    if r["made_default"]:
        console.print(f"[green]{r['name']} is now the workspace's bulk engine[/] (was "
                      f"{r['current']}); `custdyn text-models --rollback --bulk` undoes it")  # fmt: skip
    else:
        console.print(f"{r['name']} saved; {r['current']} stays the bulk engine (use "
                      f"`custdyn text-models --use {r['name']}` to switch anyway)")  # fmt: skip


@app.command("text-models")
def text_models(
    rollback: Annotated[bool, typer.Option(
        "--rollback", help="Retire the default model; the one before it comes back.")] = False,
    bulk: Annotated[bool, typer.Option(
        "--bulk", help="With --rollback: retire the workspace's bulk table instead.")] = False,
    use: Annotated[str | None, typer.Option(
        "--use", help="Make NAME the default (workspace:vN, or 'default' for the shipped one); "
        "a bulk table (kind bulk) becomes the bulk engine ('bulk': the shipped table).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the workspace's trained text models; roll back or choose the default."""
    from custdyn.text import workspace_models as wm

    with _workspace(read_only=not (rollback or use), purpose="custdyn text-models",
                    catch=(CustdynError, ValueError)) as ws:
        if rollback and use:
            raise ValueError("give --rollback or --use, not both")
        if bulk and not rollback:
            raise ValueError("--bulk goes with --rollback (--use NAME knows a bulk table by "
                             "its kind)")  # fmt: skip
        msg = None
        if rollback:
            old, new = wm.rollback(ws, bulk=bulk)
            msg = f"rolled back {old}; the {'bulk engine' if bulk else 'default'} is now {new}"
        elif use:
            name = wm.set_default(ws, use)
            msg = (f"the {'bulk engine' if wm.role(ws, name) == wm.SHIPPED_BULK else 'default'} "
                   f"is now {name}")
        models = wm.list_models(ws)
        default = wm.default_engine_name(ws)
        fast = wm.bulk_engine_name(ws)
    if as_json:
        print_json({"default": default, "bulk": fast, "models": models})
        return
    if msg:
        console.print(msg)
    t = Table(header_style="bold", caption=(
        f"default engine: {default}; bulk engine: {fast}\nscore: macro-F1 cross-validated on "
        "the labels; a bulk table's, what it was judged on (labels, or agreement with its "
        "teacher)"))
    for col in ("name", "kind", "created", "labels", "score", "in use", "rolled back"):
        # the name is what --use takes: never cut, in a terminal of 80 columns either
        t.add_column(col, no_wrap=col in ("name", "created"))
    for m in models:
        cv = m["metrics"].get("candidate_all_labels")
        if m["kind"] == "bulk":  # judged on the labels, or by agreement with its teacher
            cv = m["metrics"].get(m["metrics"].get("decided_on", ""), {}).get("candidate")
        t.add_row(m["name"], m["kind"] or "", str(m["created_at"])[:16], f"{m['n_labels']:,}",
                  f"{cv:.3f}" if cv is not None else "", "yes" if m["is_default"] else "",
                  "yes" if m["rolled_back"] else "")  # fmt: skip
    console.print(t)


@app.command("learning-curve")
def learning_curve(
    labels_file: Annotated[Path | None, typer.Option(
        "--labels", help="Labelled file (CSV, TSV, JSON Lines, JSON, Parquet: text, label, "
        "optional language) instead of the workspace's labels.")] = None,
    heldout: Annotated[Path | None, typer.Option(
        help="Score on this labelled file instead of cross-validating.")] = None,
    sizes: Annotated[str, typer.Option(help="Label counts to try, comma-separated.")] =
        "50,100,250,500,1000",
    repeats: Annotated[int, typer.Option(help="Random draws per size.")] = 3,
    html: Annotated[Path | None, typer.Option(help="Write the Plotly figure to FILE.html.")] =
        None,
    no_ngrams: Annotated[bool, typer.Option("--no-ngrams", help="Embedding only.")] = False,
    label_scheme: LabelSchemeOpt = "auto",
    languages: LanguagesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sentiment macro-F1 per language against the number of labels a workspace model is
    trained on (0 = the shipped engine): how many more labels are worth asking for."""
    from custdyn.text.evaluation import normalize_label, read_labelled
    from custdyn.text.train import build_features, curve_figure, curve_table
    from custdyn.text.train import learning_curve as curve

    cfg = _config(no_ngrams)
    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
        among = split_languages(languages)
        note_encoding(labels_file, heldout)
        with _progress("learning curve", as_json) as bar:
            task = bar.add_task("curve", total=None)
            if labels_file is not None:
                texts, labs, langs = read_labelled(labels_file, label_scheme)
                feats = build_features(texts, langs, bits=cfg.bits, among=among)
                y = [normalize_label(v) for v in labs]
            else:
                from custdyn.text.workspace_models import label_features

                with _workspace(read_only=False, purpose="custdyn learning-curve") as ws:
                    feats, yy, _ = label_features(ws, cfg.bits)
                y = yy.tolist()
            ho = None
            if heldout is not None:
                ht, hl, hg = read_labelled(heldout, label_scheme)
                import numpy as np

                ho = (build_features(ht, hg, bits=cfg.bits, among=among),
                      np.array([normalize_label(v) for v in hl]))  # fmt: skip
            import numpy as np

            c = curve(feats, np.array(y), size_list, config=cfg, heldout=ho, repeats=repeats,
                      progress=lambda d, t: bar.update(task, completed=d, total=t))
    except (CustdynError, ValueError, OSError) as e:
        raise _fail(e, EXIT_REFUSED) from None
    if html is not None:
        write_figure(curve_figure(c), str(html))
        err.print(f"wrote {html}")
    if as_json:
        print_json(c)
        return
    t = Table(header_style="bold", title="sentiment macro-F1 by labels used",
              caption="0 = the shipped engine; blank = not enough labels")
    t.add_column("language")
    for s in c["sizes"]:
        t.add_column(str(s), justify="right")
    for row in curve_table(c):
        t.add_row(row["language"], *["" if row[str(s)] is None else f"{row[str(s)]:.3f}"
                                     for s in c["sizes"]])  # fmt: skip
    console.print(t)


__all__: list[str] = []
