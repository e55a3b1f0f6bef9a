"""Commands of the features room: ``features``, ``snapshots``, ``cohorts``."""

from __future__ import annotations

from typing import Annotated

import typer

from custdyn.cli import (
    JsonOpt,
    OutOpt,
    _fail,
    _workspace,
    app,
    console,
    emit,
    err,
    print_json,
    write_figure,
)
from custdyn.errors import CustdynError

#: What a features command reports as an error (ImportError: the Spark engine not installed).
_ERRORS = (CustdynError, ImportError)

EngineOpt = Annotated[
    str | None,
    typer.Option("--engine", "-e", envvar="CUSTDYN_ENGINE",
                 help="duckdb or spark (default: the workspace's engine setting)."),
]
_SHOWN = ["customer_id", "frequency", "recency", "T", "monetary_value", "n_interactions",
          "first_response_median_h", "unanswered_inbound", "tickets_opened",
          "days_since_customer_contact", "tenure_days"]


@app.command()
def features(
    as_of: Annotated[str, typer.Option("--as-of", help="The moment described (2025-06-30 or an "
                                       "ISO timestamp; UTC unless it has an offset).")],
    engine: EngineOpt = None,
    limit: Annotated[int, typer.Option(help="Rows to print (all rows go to --out / --json).")]
    = 20,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Per-customer features at AS_OF, from interactions before it (docs/features.md)."""
    import custdyn.features as cf

    with _workspace(catch=_ERRORS) as ws:
        t = cf.features(ws, as_of, engine=engine)
    shown = t.select([c for c in _SHOWN if c in t.column_names]).slice(0, limit)
    emit(t, as_json, out, title=f"features at {as_of}", shown=shown,
         caption=f"{t.num_rows:,} customers x {t.num_columns - 2} features"
         + ("" if t.num_rows <= limit else f"; first {limit} shown, all with --out FILE"))


@app.command()
def snapshots(
    start: Annotated[str, typer.Option("--from", help="First as_of date.")],
    end: Annotated[str, typer.Option("--to", help="Last as_of date (included).")],
    every: Annotated[str, typer.Option(help="month, week or day.")] = "month",
    engine: EngineOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Features at every date from --from to --to, stored in the workspace's snapshots table."""
    import time

    import custdyn.features as cf

    try:
        dates = cf.snapshot_dates(start, end, every)
    except CustdynError as e:
        raise _fail(e) from None
    with _workspace(read_only=False, purpose="custdyn snapshots", catch=_ERRORS) as ws:
        t0 = time.perf_counter()
        n = cf.snapshots(ws, dates, engine=engine)
        secs = time.perf_counter() - t0
    info = {"dates": len(dates), "first": dates[0].date().isoformat(),
            "last": dates[-1].date().isoformat(), "rows": n, "seconds": round(secs, 2)}
    if as_json:
        print_json(info)
    else:
        console.print(f"snapshots: {n:,} rows at {len(dates)} dates ({info['first']} .. "
                      f"{info['last']}, every {every}) in {secs:.1f} s")


@app.command()
def cohorts(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Only purchases before this.")]
    = None,
    engine: EngineOpt = None,
    html: Annotated[str | None, typer.Option(
        help="Also write retention curves (customers and revenue, one line per cohort) to "
             "this HTML file.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
) -> None:
    """Acquisition-month x months-since retention: customers and revenue."""
    import custdyn.features as cf

    with _workspace(catch=_ERRORS) as ws:
        t = cf.cohorts(ws, as_of=as_of, engine=engine)
    if html:
        if t.num_rows == 0:
            raise _fail(CustdynError("no purchases before --as-of: there are no cohorts to "
                                     "draw")) from None
        write_figure(cf.cohort_figure(t), html)
        err.print(f"wrote {html}")
    emit(t, as_json, out, title="cohorts (by month of first purchase)")
