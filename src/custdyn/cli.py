"""The command line: each command parses its arguments, makes one library call and prints.

Exit codes: 0 done (warnings, if any, on stderr); 1 done, but with rejected records (or, under
``analyze --strict``, with warnings); 2 refused (bad arguments, a ``--strict`` batch refused,
the workspace held by another process).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from custdyn import __version__
from custdyn.errors import BatchRefusedError, CustdynError

app = typer.Typer(
    name="custdyn",
    help="custdyn: the customer dynamics engine. Ingest every interaction between a vendor "
    "and its customers into a workspace, then look at each relationship.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console()
err = Console(stderr=True)

EXIT_OK, EXIT_WARN, EXIT_REFUSED = 0, 1, 2


class _State:
    workspace: str | None = None


state = _State()

WorkspaceOpt = Annotated[
    str | None,
    typer.Option("--workspace", "-w", envvar="CUSTDYN_WORKSPACE",
                 help="Workspace folder (default: this folder or a parent holding custdyn.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LabelSchemeOpt = Annotated[str, typer.Option(
    "--label-scheme", help="How numeric labels read: auto (told apart by the values present), "
    "signed (-1/0/1), 012 (0/1/2 = negative, neutral, positive), stars (1-5: 1-2 negative, "
    "3 neutral, 4-5 positive), binary (0/1 = negative, positive) or 123 (1/2/3 = negative, "
    "neutral, positive).")]
LanguagesOpt = Annotated[str | None, typer.Option(
    "--languages", help="The languages the files' texts are written in, comma-separated "
    "(e.g. no,en): texts without a language column are detected among these only (short "
    "texts in close languages, Norwegian and Danish say, are otherwise often confused).")]


def split_languages(value: str | None) -> list[str] | None:
    """``--languages no,en`` as a list (None when not given)."""
    if value is None:
        return None
    got = [v.strip() for v in value.split(",") if v.strip()]
    if not got:
        raise ValueError("--languages needs at least one language, e.g. --languages no,en")
    return got


def note_encoding(*paths: Path | None) -> None:
    """Say so on stderr when a labelled text file was not UTF-8 (read as Windows-1252)."""
    from custdyn.text.labelled import text_encoding

    for p in paths:
        if p is None or p.suffix.lower() == ".parquet" or not p.is_file():
            continue
        enc = text_encoding(p)
        if enc in ("cp1252", "latin-1"):
            name = "Windows-1252" if enc == "cp1252" else "Latin-1"
            err.print(f"[dim]{escape(str(p))} is not UTF-8: read as {name}[/dim]")


OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Also write the table to FILE (.parquet, .csv or .json).")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"custdyn {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    workspace: WorkspaceOpt = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    state.workspace = workspace
    warnings.showwarning = _show_warning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Library warnings (our DataWarning, ConvergenceWarning, ...) as one readable line on
    stderr, without the Python source location."""
    print_warning(str(message))


def print_warning(message: str) -> None:
    """One warning line on stderr."""
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _open(read_only: bool = True, purpose: str | None = None) -> Any:
    from custdyn.store import Workspace

    return Workspace.open(state.workspace, read_only=read_only, purpose=purpose)


def _fail(e: Exception, code: int = EXIT_REFUSED) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def _workspace(read_only: bool = True, purpose: str | None = None,
               catch: tuple[type[Exception], ...] = (CustdynError,)) -> Iterator[Any]:
    """The workspace for one command's work: when it cannot be opened, or the block raises
    one of ``catch``, the error is printed and the command exits with code 2; the workspace
    is closed either way."""
    try:
        ws = _open(read_only=read_only, purpose=purpose)
    except CustdynError as e:
        raise _fail(e) from None
    try:
        yield ws
    except catch as e:
        raise _fail(e) from None
    finally:
        ws.close()


# --------------------------------------------------------------------------- output helpers
def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def write_figure(fig: Any, path: str | Path) -> None:
    """Write a Plotly figure as one self-contained HTML file (plotly.js inside: it opens
    offline)."""
    fig.write_html(str(path), include_plotlyjs=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), ensure_ascii=False, indent=2) + "\n")


def _cell(v: Any, width: int | None = None) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, decimal.Decimal | float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    s = str(v).replace("\n", " ")
    if width and len(s) > width:
        s = s[: width - 1] + "…"
    return s


def print_table(t: pa.Table, title: str | None = None, widths: dict[str, int] | None = None,
                caption: str | None = None) -> None:
    widths = widths or {}
    table = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    rows = [[_cell(row[n], widths.get(n, 60)) for n in t.column_names] for row in t.to_pylist()]
    headers = [name.replace("_", " ") for name in t.column_names]  # wrap between words
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type) for f in t.schema]  # fmt: skip
    # a number or a short value (an id, a stage) is not cut in two, when the terminal can
    # hold them all whole beside ten characters of each longer text
    need = [max([len(r[j]) for r in rows] + [len(w) for w in headers[j].split()])
            for j in range(len(headers))]
    whole = [numeric[j] or need[j] <= 12 for j in range(len(headers))]
    fits = sum(n if w else 10 for n, w in zip(need, whole, strict=True)) + 3 * len(need) + 1
    for j, header in enumerate(headers):
        table.add_column(header, justify="right" if numeric[j] else "left", overflow="fold",
                         no_wrap=whole[j] and fits <= console.width)
    for r in rows:
        table.add_row(*[escape(c) for c in r])
    console.print(table)


def _flat(t: pa.Table) -> pa.Table:
    """Nested columns (lists, structs) as JSON text, for CSV."""
    cols = []
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_list(col.type) or pa.types.is_struct(col.type):
            col = pa.array([None if v is None else json.dumps(_jsonable(v), ensure_ascii=False)
                            for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.table(cols, names=t.column_names)


def write_out(t: pa.Table, out: Path) -> None:
    """``--out``: Parquet (keeps nested columns), CSV (nested columns as JSON text) or JSON
    (a list of objects), by the file's suffix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".json":
        out.write_text(json.dumps(_jsonable(t.to_pylist()), ensure_ascii=False, indent=2) + "\n",
                       encoding="utf-8")
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(_flat(t), out)
    else:
        import pyarrow.parquet as pq

        pq.write_table(t, out)
    err.print(f"wrote {t.num_rows:,} rows to {out}")


def emit(t: pa.Table, as_json: bool, out: Path | None, title: str | None = None,
         widths: dict[str, int] | None = None, caption: str | None = None,
         shown: pa.Table | None = None) -> None:
    """``t`` to ``--out`` and as ``--json``, else as a table (``shown``: a narrower view of
    it for the terminal)."""
    if out:
        write_out(t, out)
    if as_json:
        print_json(t.to_pylist())
    else:
        print_table(t if shown is None else shown, title, widths, caption)


# --------------------------------------------------------------------------- commands
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] = Path("."),
    timezone: Annotated[str, typer.Option(help="Zone for timestamps without an offset.")] = "UTC",
    currency: Annotated[str, typer.Option(help="ISO 4217 code for amounts without one.")] = "EUR",
    vendor_domain: Annotated[list[str] | None, typer.Option(
        "--vendor-domain", help="Your e-mail domain (repeat for several).")] = None,
) -> None:
    """Create a workspace: a folder with custdyn.toml (settings) and custdyn.duckdb."""
    from custdyn.settings import Settings, SettingsError
    from custdyn.store import Workspace

    try:
        s = Settings.from_dict({"workspace": {
            "timezone": timezone, "currency": currency, "vendor_domains": vendor_domain or []}})
        ws = Workspace.create(directory, s)
    except (CustdynError, SettingsError) as e:
        raise _fail(e) from None
    ws.close()
    console.print(f"created workspace [bold]{ws.path}[/] (edit {ws.path / 'custdyn.toml'} for "
                  "vendor domains and competitors)")


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Files (or folders of .eml) to ingest.")],
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="csv, tsv, parquet, jsonl, eml, mbox or cdnow (default: from the "
        "file name).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", "-m", help="TOML file renaming columns and mapping values.")] = None,
    into: Annotated[str | None, typer.Option(
        help="interactions or customers (default: guessed from the columns).")] = None,
    strict: Annotated[bool, typer.Option(
        help="Refuse a whole file if any record is invalid.")] = False,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter (default , or tab).")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (default utf-8).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest files: each file is one batch that commits whole or not at all.

    Invalid records are kept in `rejected` with their row and reason while the valid ones
    load (exit code 1 when any were rejected); --strict refuses the file instead (exit 2).
    Re-ingesting the same records adds nothing.
    """
    if into not in (None, "interactions", "customers"):
        raise _fail(ValueError(f"--into {into!r}; allowed: interactions, customers"))
    try:
        ws = _open(read_only=False, purpose="custdyn ingest " + " ".join(map(str, files)))
    except CustdynError as e:
        raise _fail(e) from None
    results = []
    code = EXIT_OK
    try:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
            disable=as_json or not err.is_terminal,
        ) as bar:
            for f in files:
                task = bar.add_task(f.name, total=None)

                def progress(_path: str, done: int, total: int, task: Any = task) -> None:
                    bar.update(task, completed=done, total=total)

                try:
                    r = ws.ingest(f, format=format, mapping=mapping, into=into, strict=strict,
                                  delimiter=delimiter, encoding=encoding, progress=progress)[0]
                except BatchRefusedError as e:
                    err.print(f"[bold red]refused:[/] {escape(str(e))}", highlight=False)
                    code = EXIT_REFUSED
                    continue
                except CustdynError as e:
                    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
                    code = EXIT_REFUSED
                    continue
                finally:
                    bar.remove_task(task)
                results.append(r)
                if r.rows_rejected and code == EXIT_OK:
                    code = EXIT_WARN
                if not as_json:
                    _print_batch(r)
    finally:
        ws.close()
    if as_json:
        print_json([r.to_dict() for r in results])
    raise typer.Exit(code)


def _print_batch(r: Any) -> None:
    parts = [f"{r.rows_loaded:,} loaded"]
    if r.rows_updated:
        parts.append(f"{r.rows_updated:,} updated")
    if r.rows_duplicate:
        parts.append(f"{r.rows_duplicate:,} already there")
    if r.rows_rejected:
        parts.append(f"[yellow]{r.rows_rejected:,} rejected[/] (see `custdyn rejected --batch "
                     f"{r.batch_id}`)")
    console.print(f"{Path(r.source).name}: {r.rows_read:,} {r.target} records read, "
                  + ", ".join(parts) + f" [dim]({r.seconds:.1f} s, batch {r.batch_id})[/]",
                  highlight=False)
    for s in r.sample_rejections[:3]:
        console.print(f"  row {s['row']}: {escape(s['reason'])}", highlight=False, soft_wrap=True)


def shares_line(shares: dict[str, float], at_least: float = 0.01) -> str:
    """``no 62%, en 30%, ...`` for the languages with at least ``at_least`` of the messages."""
    shown = [f"{g} {v:.0%}" for g, v in shares.items() if v >= at_least]
    rest = sum(v for v in shares.values() if v < at_least)
    return ", ".join(shown) + (f", others {rest:.0%}" if rest >= 0.005 else "")


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """What the workspace holds: counts by channel, kind and direction, every batch, the
    text signals scored by each engine (and whether that engine now scores differently), and
    how common each language is among the customers' messages, as language detection reads
    them."""
    from custdyn.pipeline.text import language_status, text_status

    with _workspace() as ws:
        s = ws.status()
        s["text_signals"] = text_status(ws)
        s["language_shares"] = language_status(ws)
    if as_json:
        print_json(s)
        return
    console.print(f"[bold]{s['workspace']}[/] (schema v{s['schema_version']})")
    console.print(
        f"{s['interactions']:,} interactions from {s['customers_with_interactions']:,} customers "
        f"({s['customers']:,} in the customer list), {s['first'] or '-'} to {s['last'] or '-'}; "
        f"{s['rejected']:,} rejected records", highlight=False)
    grid = Table.grid(padding=(0, 4))
    cols = []
    for key, title in (("by_channel", "channel"), ("by_kind", "kind"),
                       ("by_direction", "direction")):
        t = Table(title=title, show_header=False, box=None)
        t.add_column()
        t.add_column(justify="right")
        for k, v in s[key].items():
            t.add_row(k, f"{v:,}")
        cols.append(t)
    grid.add_row(*cols)
    console.print(grid)
    if s["batches"]:
        rows = [
            {"batch": b["batch_id"], "source": Path(b["source"]).name, "into": b["target"],
             "read": b["rows_read"], "loaded": b["rows_loaded"], "dup": b["rows_duplicate"],
             "updated": b["rows_updated"], "rejected": b["rows_rejected"],
             "when": (b["finished_at"] or "")[:16].replace("T", " ")}
            for b in s["batches"]
        ]
        if console.width < 100:  # narrow: the date alone; "into", "dup", "updated" when told
            for r in rows:
                r["when"] = r["when"][:10]
            drop = {k for k in ("dup", "updated") if not any(r[k] for r in rows)}
            if len({r["into"] for r in rows}) == 1:
                drop.add("into")
            rows = [{k: v for k, v in r.items() if k not in drop} for r in rows]
        print_table(pa.Table.from_pylist(rows), title="batches", widths={"source": 32})
    for e in s["text_signals"]:
        when = (e["last_scored"] or "")[:16].replace("T", " ")
        console.print(f"text signals: {e['rows']:,} messages scored by {e['engine']} "
                      f"(last {when})", highlight=False)
        if e["current"] is not None and e["current"] != e["engine"]:
            console.print(f"  [yellow]{e['engine']} is an earlier version of the {e['name']} "
                          f"engine (now {e['current']}): `custdyn enrich --engine {e['name']}` "
                          "scores the messages again[/yellow]", highlight=False)
    if s["language_shares"]:
        ls = s["language_shares"]
        console.print(f"languages of the customers' messages (learnt {ls['learnt_at'][:10]} from "
                      f"{ls['learnt_from']:,} of them): {shares_line(ls['shares'])}",
                      highlight=False)


@app.command()
def rejected(
    batch: Annotated[int | None, typer.Option(help="Only this batch.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Records that could not be loaded, with file, row, field and reason."""
    with _workspace() as ws:
        t = ws.rejected(batch=batch, limit=limit or None)
    emit(t, as_json, out, title="rejected records", widths={"raw": 50, "reason": 80,
                                                           "source": 30})


@app.command()
def customers(
    search: Annotated[str | None, typer.Option(help="Match id, name or e-mail.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: all).")] = 50,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Customers with their interaction counts, orders, spend and first/last contact."""
    with _workspace() as ws:
        t = ws.customers(limit=limit or None, search=search)
    emit(t, as_json, out, title="customers")


@app.command()
def timeline(
    customer_id: Annotated[str | None, typer.Argument(help="The customer.")] = None,
    sample: Annotated[bool, typer.Option(help="Show a customer with a rich history.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most the last N events (0: all).")] = 0,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """The unified, chronological history of one customer across every channel."""
    with _workspace() as ws:
        if customer_id is None:
            if not sample:
                raise CustdynError("name a customer, or pass --sample")
            customer_id = ws.sample_customer()
            if customer_id is None:
                raise CustdynError("the workspace has no interactions yet")
        t = ws.timeline(customer_id)
        cust = ws.customer(customer_id)
        zone = ws.settings.timezone
    if limit and t.num_rows > limit:
        t = t.slice(t.num_rows - limit)
    if out:
        write_out(t, out)
    if as_json:
        print_json({"customer": cust, "customer_id": customer_id, "events": t.to_pylist()})
        return
    _print_timeline(customer_id, cust, t, zone)


_ARROW = {"inbound": "[cyan]customer →[/]", "outbound": "[magenta]← vendor[/]"}
#: From this terminal width on, a timeline is a table; below it, one line per event.
_TIMELINE_TABLE_WIDTH = 110


def _print_timeline(customer_id: str, cust: dict | None, t: pa.Table, zone: str) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    head = f"[bold]{customer_id}[/]"
    if cust:
        bits = [cust.get(k) for k in ("name", "email", "segment", "country", "language")]
        head += "  " + " · ".join(str(b) for b in bits if b)
    console.print(head, highlight=False)
    events = [(r["occurred_at"].astimezone(tz).strftime("%Y-%m-%d %H:%M"),
               r["channel"] or "", r["kind"] or "", _ARROW.get(r["direction"], ""),
               f"{r['amount']:,.2f} {r['currency'] or ''}" if r["amount"] is not None else "",
               " — ".join(x for x in (r["subject"], r["text"]) if x))
              for r in t.to_pylist()]  # fmt: skip
    if console.width < _TIMELINE_TABLE_WIDTH:  # a narrow terminal: one line per event, the
        for when, channel, kind, who, amount, what in events:  # message indented below it
            line = " · ".join(escape(x) for x in (channel, kind) if x)
            console.print(f"[bold]{when}[/]  {line}  {who}" + (f"  {amount}" if amount else ""),
                          highlight=False)
            if what:
                console.print(Padding(escape(_cell(what, 240)), (0, 0, 0, 4)), highlight=False)
        console.print(f"[dim]times in {zone}[/]")
        return
    table = Table(show_header=True, header_style="bold", caption=f"times in {zone}")
    for name, just in (("when", "left"), ("channel", "left"), ("kind", "left"), ("who", "left"),
                       ("amount", "right"), ("what", "left")):
        table.add_column(name, justify=just, overflow="fold")  # type: ignore[arg-type]
    for when, channel, kind, who, amount, what in events:
        table.add_row(when, channel, kind, who, amount, escape(_cell(what, 90)))
    console.print(table)


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Folder for the Parquet files.")],
    table: Annotated[list[str] | None, typer.Option(
        "--table", "-t", help="Table to export (repeat; default: the contract tables).")] = None,
) -> None:
    """Write workspace tables as Parquet files."""
    with _workspace() as ws:
        files = ws.export(directory, table)
    for f in files:
        console.print(f"wrote {f}")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo workspace.")] = Path(
        "demo-workspace"),
    customers: Annotated[int, typer.Option("--customers", "-n", help="How many customers.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 7,
    force: Annotated[bool, typer.Option(help="Replace an existing demo workspace.")] = False,
) -> None:
    """Simulate a vendor and its customers, write the world as real files (CSV, .mbox,
    JSON Lines) under DIR/sources and ingest them through the readers."""
    from custdyn.demo import write_labelled_sample, write_world
    from custdyn.demo.texts import LANGS as DEMO_LANGS
    from custdyn.settings import Settings
    from custdyn.store import DB_FILE, Workspace
    from custdyn.text import canonical_language

    directory = directory.expanduser().resolve()
    if (directory / DB_FILE).exists():
        if not force:
            raise _fail(CustdynError(f"{directory} already holds a workspace; pass --force to "
                                     "replace it"))
        import shutil

        shutil.rmtree(directory)
    with console.status(f"simulating {customers:,} customers (seed {seed})..."):
        world = write_world(directory / "sources", n_customers=customers, seed=seed)
    s = Settings.from_dict({"workspace": {
        "timezone": world.settings.get("timezone", "UTC"),
        "currency": world.settings.get("currency", "EUR"),
        "vendor_domains": world.settings.get("vendor_domains", []),
    }, "competitors": world.settings.get("competitors", []),
        # the vendor knows its markets: detection chooses among its customers' languages
        "text": {"languages": sorted({str(canonical_language(g)) for g in DEMO_LANGS})}})
    try:
        ws = Workspace.create(directory, s)
    except CustdynError as e:
        raise _fail(e) from None
    code = EXIT_OK
    try:
        for sf in world.files:
            with console.status(f"ingesting {sf.path.name} ({sf.description})..."):
                r = ws.ingest(sf.path, mapping=sf.mapping, into=sf.table)[0]
            _print_batch(r)
            if r.rows_rejected:
                code = EXIT_WARN
        labelled = write_labelled_sample(ws.con, world.truth_dir)
    finally:
        ws.close()
    console.print(f"demo workspace ready: [bold]{directory}[/] (truth in {world.truth_dir}); try "
                  f"`custdyn -w {directory} status`; `custdyn eval-text {labelled}` measures "
                  "the text engines on its messages")
    raise typer.Exit(code)



def _register_extensions() -> None:
    """Commands that live beside their rooms (features, text, analysis) join the app here."""
    import importlib

    for name in ("custdyn.cli_features", "custdyn.cli_text", "custdyn.cli_analysis",
                 "custdyn.cli_label", "custdyn.cli_insights"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


_register_extensions()


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # run the imported module, so registered commands are on its app
    from custdyn.cli import main as run_cli

    run_cli()
