"""The public calls: features at one date, snapshots over many, cohorts."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from custdyn.features.backend import Backend, FeatureError, as_utc, backend
from custdyn.features.build import as_of_arrow, as_of_table, feature_expr
from custdyn.features.incremental import snapshot_expr

__all__ = ["features", "feature_tables", "snapshots", "snapshot_dates", "cohorts",
           "cohorts_expr"]

SNAPSHOTS_TABLE = "snapshots"
EVERY = ("month", "week", "day")


def _resolve(source: Any, engine: str | None) -> Backend:
    return source if isinstance(source, Backend) else backend(source, engine)


def features(source: Any, as_of: Any, *, engine: str | None = None, **options: Any) -> pa.Table:
    """Per-customer features at ``as_of``.

    Parameters
    ----------
    source : Workspace, Backend, str or Path
        A workspace, a workspace folder, a folder of contract Parquet files, or a
        :class:`Backend` from :func:`custdyn.features.backend`.
    as_of : date, datetime or ISO string
        The moment described (naive values are UTC; a date is midnight UTC at its start).
        Only interactions strictly before it count.
    engine : {"duckdb", "spark"}, optional
        Default: the workspace's ``engine`` setting.
    **options
        ``purchase_kinds``, ``time_unit``, ``unanswered_after_hours``, ``text_engine``; see
        :func:`custdyn.features.feature_expr`.

    Returns
    -------
    pyarrow.Table
        One row per customer, sorted by ``customer_id``; columns and units in
        ``docs/features.md``.
    """
    b = _resolve(source, engine)
    expr = feature_expr(b, as_of_table(as_utc(as_of)), **options)
    return b.to_pyarrow(expr.order_by("customer_id"))


def snapshot_dates(start: Any, end: Any, every: str = "month") -> list[dt.datetime]:
    """The ``as_of`` moments from ``start`` to ``end`` (both included) every month, week or day.

    Monthly dates keep ``start``'s day of the month, clipped to the month's length
    (2024-01-31, 2024-02-29, 2024-03-31, ...) unless ``start`` is the 1st.
    """
    if every not in EVERY:
        raise FeatureError(f"every={every!r} is not known; allowed: {', '.join(EVERY)}")
    a, z = as_utc(start), as_utc(end)
    if z < a:
        raise FeatureError(f"--to {z.date()} is before --from {a.date()}")
    out: list[dt.datetime] = []
    if every in ("week", "day"):
        step = dt.timedelta(days=7 if every == "week" else 1)
        d = a
        while d <= z:
            out.append(d)
            d += step
        return out
    import calendar

    k = 0
    while True:
        y, m = divmod(a.month - 1 + k, 12)
        year, month = a.year + y, m + 1
        day = min(a.day, calendar.monthrange(year, month)[1])
        d = a.replace(year=year, month=month, day=day)
        if d > z:
            return out
        out.append(d)
        k += 1


#: Customer-dates computed per query when snapshots are split (bounds the query's memory).
ROWS_PER_QUERY = 2_000_000
#: Customer-dates per part of the incremental method (the part's rows are held in memory,
#: and on DuckDB one part is written while the next is computed: two parts at once).
ROWS_PER_PART = 500_000
#: DuckDB's memory limit while the incremental method runs (it spills to disk beyond it).
MEMORY_LIMIT = "2GB"
#: How :func:`snapshots` computes many dates.
METHODS = ("incremental", "per_date")


def snapshots(
    ws: Any,
    dates: list[Any],
    *,
    engine: str | None = None,
    table: str = SNAPSHOTS_TABLE,
    method: str = "incremental",
    parts: int | None = None,
    dates_per_query: int | None = None,
    **options: Any,
) -> int:
    """Compute the features at every date and store them in the workspace.

    Rows of ``table`` (default ``snapshots``) at these ``as_of`` dates are replaced; rows at
    other dates stay, so the table grows into a history keyed by (customer_id, as_of). The
    rows are those :func:`features` gives at each date. The per-date method writes in one
    transaction; the incremental method on DuckDB commits part by part (an open
    transaction's rows stay in memory), and if a part fails the rows at these dates are
    deleted, so a date is never left half written.

    Parameters
    ----------
    ws : Workspace
        Opened for writing.
    dates : list of date, datetime or ISO string
        The ``as_of`` moments (see :func:`snapshot_dates`).
    engine : {"duckdb", "spark"}, optional
        Where the features are computed; the result is stored in the workspace either way.
    method : {"incremental", "per_date"}
        ``incremental`` (default) places every event once on the date axis and takes running
        sums over the dates (:func:`custdyn.features.incremental.snapshot_expr`), in
        ``parts`` queries over disjoint sets of customers. ``per_date`` joins the interactions
        to the dates (:func:`custdyn.features.feature_expr`), ``dates_per_query`` dates per
        query; its cost grows with the number of dates.
    parts : int, optional
        Incremental method: customer parts, one query each (default: as many as keep
        customers x dates per query under :data:`ROWS_PER_PART`).
    dates_per_query : int, optional
        Per-date method: dates per query (default: as many as keep customers x dates under
        :data:`ROWS_PER_QUERY`).
    **options
        As for :func:`custdyn.features.feature_expr`.

    Returns
    -------
    int
        Rows written.
    """
    from custdyn.store import Workspace, memory_limit

    if not isinstance(ws, Workspace):
        raise FeatureError("snapshots are stored in a workspace; pass an open Workspace")
    if ws.read_only:
        raise FeatureError("the workspace is open read-only; open it for writing")
    if method not in METHODS:
        raise FeatureError(f"method={method!r} is not known; allowed: {', '.join(METHODS)}")
    b = backend(ws, engine)
    moments = sorted({as_utc(d) for d in dates})
    if not moments:
        raise FeatureError("no as_of dates given")
    n_customers = 0
    if (method == "per_date" and dates_per_query is None) or (
            method == "incremental" and parts is None):
        n_customers = _customers(b)
    if dates_per_query is None:
        dates_per_query = max(1, ROWS_PER_QUERY // max(1, n_customers))
    if parts is None:
        parts = _parts(n_customers, len(moments))
    if dates_per_query < 1 or parts < 1:
        raise FeatureError("dates_per_query and parts must be 1 or more")
    arrow, epochs = _dates_k(moments)

    con = ws.con
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    exists = bool(found and found[0])
    when = "as_of IN (SELECT unnest(?::TIMESTAMPTZ[]))"

    def write(source: str) -> None:
        nonlocal exists
        if exists:
            con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM {source}')
        else:
            con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM {source}')
            exists = True

    committed = False

    def checkpoint() -> None:
        """Commit what is written so far (DuckDB holds an open transaction's rows in memory)."""
        nonlocal committed
        con.execute("COMMIT")
        committed = True
        con.execute("BEGIN TRANSACTION")

    con.execute("BEGIN TRANSACTION")
    try:
        if exists:
            con.execute(f'DELETE FROM "{table}" WHERE {when}', [moments])
        if method == "per_date":
            for group in [moments[i:i + dates_per_query]
                          for i in range(0, len(moments), dates_per_query)]:
                if b.engine == "duckdb":  # the dates as a view the SQL can name
                    con.register("_custdyn_as_of", as_of_arrow(group))
                    expr = feature_expr(b, b.con.table("_custdyn_as_of"), **options)
                    write(f"({b.con.compile(expr)})")
                    con.unregister("_custdyn_as_of")
                else:
                    _write_arrow(con, write, b.to_pyarrow(
                        feature_expr(b, as_of_table(group), **options)))
        elif b.engine == "duckdb":
            with memory_limit(con, MEMORY_LIMIT):
                _incremental_duckdb(b, con, arrow, epochs, parts, write, checkpoint, options)
        else:  # window functions on the engine (fast there), one part at a time
            for i in range(parts):
                expr = snapshot_expr(b, epochs, ibis.memtable(arrow),
                                     part=None if parts == 1 else (i, parts), **options)
                _write_arrow(con, write, b.to_pyarrow(expr))
        row = con.execute(f'SELECT count(*) FROM "{table}" WHERE {when}', [moments]).fetchone()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        if committed:  # parts already committed: leave no partial dates behind
            con.execute(f'DELETE FROM "{table}" WHERE {when}', [moments])
        raise
    return int(row[0]) if row else 0


#: :func:`_feature_schema`'s answers in this process, by what the expression depends on.
_SCHEMAS: dict[str, pa.Schema] = {}


def _feature_schema(b: Backend, options: dict[str, Any], keep_in: Path | None = None
                    ) -> pa.Schema:
    """The schema :func:`features` returns, from the expression's types (nothing is run;
    remembered for the same tables, settings, options and version of custdyn: building the
    expression takes a second or two). ``keep_in``: a folder where it is also kept as a
    file, for the next process."""
    import hashlib
    import json
    import os

    from custdyn import __version__
    from custdyn.features.backend import _utc_timestamps

    key = json.dumps([__version__, b.engine,
                      {t: str(b.table(t).schema()) for t in sorted(b.tables)},
                      [b.has(t) for t in ("customers", "text_signals")], b.purchase_kinds,
                      b.options, options], sort_keys=True, default=str)
    kept = (None if keep_in is None else
            keep_in / f"schema-{hashlib.sha256(key.encode()).hexdigest()[:16]}.arrow")
    hit = _SCHEMAS.get(key)
    if hit is None and kept is not None and kept.exists():
        try:
            with pa.memory_map(str(kept), "rb") as f:
                hit = pa.ipc.open_file(f).schema
        except (OSError, pa.ArrowInvalid):
            hit = None
    if hit is None:
        expr = feature_expr(b, as_of_table(as_utc("1970-01-01")), **options)
        hit = _utc_timestamps(expr.schema().to_pyarrow().empty_table()).schema
    if kept is not None and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        for old in kept.parent.glob("schema-*.arrow"):  # one kept: the latest
            old.unlink(missing_ok=True)
        tmp = kept.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, hit):
            pass
        os.replace(tmp, kept)
    if len(_SCHEMAS) >= 32:
        _SCHEMAS.clear()
    _SCHEMAS[key] = hit
    return hit


def _customers(b: Backend) -> int:
    """Customers in the log (at least 1): what sizes the incremental method's parts."""
    return max(1, int(b.execute_scalar(b.table("interactions").customer_id.nunique())))


def _parts(n_customers: int, n_dates: int) -> int:
    """Customer parts that keep each part's customers x dates under :data:`ROWS_PER_PART`."""
    return max(1, -(-n_customers * n_dates // ROWS_PER_PART))


def _dates_k(moments: list[dt.datetime]) -> tuple[pa.Table, list[float]]:
    """The sorted dates as the incremental method reads them (with their index ``k``), and
    their epoch seconds."""
    arrow = as_of_arrow(moments)
    arrow = arrow.append_column("k", pa.array(range(arrow.num_rows), pa.int64()))
    return arrow, arrow.column("as_of_s").to_pylist()


def feature_tables(ws: Any, dates: list[Any], *,
                   columns: dict[Any, list[str]] | None = None,
                   parts: int | None = None, state: bool = False,
                   **options: Any) -> dict[dt.datetime, pa.Table]:
    """The feature table at each of ``dates``, in memory, from one incremental pass over a
    DuckDB workspace's log (as :func:`snapshots` computes them, without storing them).

    Each table has the rows and columns :func:`features` gives at that date, sorted by
    ``customer_id``; ``columns`` (``{date: [names]}``) keeps only the named columns (with
    ``customer_id`` and ``as_of``) at the dates it names, so a caller that needs a few
    columns at some dates does not hold every column of every date.

    With ``state=True`` (a workspace open for writing) the per-customer state behind these
    tables is kept in the workspace folder, and a later call for dates up to
    :data:`custdyn.features.rolling.MAX_ROLL_DAYS` later rolls it forward over what changed
    instead of reading the whole log again (same result; see
    :mod:`custdyn.features.rolling`).

    Returns
    -------
    dict
        ``{as_of (UTC datetime): Arrow table}``.
    """
    import pyarrow.compute as pc

    from custdyn.store import memory_limit

    b = backend(ws, "duckdb")
    moments = sorted({as_utc(d) for d in dates})
    if not moments:
        raise FeatureError("no as_of dates given")
    keep_cols = {as_utc(d): c for d, c in (columns or {}).items()}
    from custdyn.features import rolling

    state = state and not ws.read_only
    schema = _feature_schema(b, options, Path(ws.path) / rolling.STATE_DIR if state else None)
    arrow, epochs = _dates_k(moments)
    pieces: dict[dt.datetime, list[pa.Table]] = {d: [] for d in moments}
    wanted = {d: [f.name for f in schema if f.name in ("customer_id", "as_of")
                  or d not in keep_cols or f.name in keep_cols[d]] for d in moments}

    def sink(rows: pa.Table, only: dt.datetime | None = None) -> None:
        """Rows of every date (``only``: rows of that date alone) to their tables."""
        at = rows.column("as_of")
        for d in moments if only is None else [only]:
            part = rows if only is not None else rows.filter(pc.equal(at, pa.scalar(d, at.type)))
            part = part.select(wanted[d])
            ids = part.column("customer_id")
            if part.num_rows > 1 and not pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
                part = part.take(pc.sort_indices(ids))
            target = pa.schema([schema.field(c) for c in wanted[d]])
            pieces[d].append(part if part.schema.equals(target) else part.cast(target))

    with memory_limit(ws.con, MEMORY_LIMIT):
        if state:
            rolling.tables(ws, b, moments, lambda d, rows: sink(rows, d),
                           parts_for=lambda n_dates: parts or _parts(_customers(b), n_dates),
                           options=options, columns=keep_cols)
        else:
            if parts is None:
                parts = _parts(_customers(b), len(moments))
            _incremental_duckdb(b, ws.con, arrow, epochs, parts, None, None, options,
                                sink=sink)
    return {d: pa.concat_tables(pieces[d]).combine_chunks() if pieces[d] else
            pa.schema([schema.field(c) for c in wanted[d]]).empty_table() for d in moments}


def _fetch(con: Any, sql: dict[str, str], name: str) -> pa.Table:
    from custdyn.features.backend import _utc_timestamps

    return _utc_timestamps(con.execute(sql[name]).to_arrow_table())


def _write_arrow(con: Any, write: Any, t: pa.Table) -> None:
    con.register("_custdyn_arrow", t)
    try:
        write("_custdyn_arrow")
    finally:
        con.unregister("_custdyn_arrow")


def _incremental_duckdb(b: Backend, con: Any, dates: pa.Table, epochs: list[float], parts: int,
                        write: Any, checkpoint: Any, options: dict[str, Any],
                        sink: Any = None, *, scope: Any = None, rows_where: Any = None,
                        transform: Any = None, grid_sink: Any = None) -> Any:
    """The incremental method on DuckDB: the changes by SQL, the running sums by numpy.
    Each part's rows go to ``write`` (then ``checkpoint``), or to ``sink(rows)`` if given.

    The event-level tables (with their date indexes) are computed once into temporary
    tables sorted by customer; the per-part queries are compiled once and run for every
    range of customers (its first and last ``customer_id`` written into the SQL).

    For the rolling state (:mod:`custdyn.features.rolling`): ``scope`` is passed to
    :func:`~custdyn.features.incremental.plan`; ``rows_where(name, table)`` returns a filter
    of an event-level table's rows (or None) applied before it is stored;
    ``transform(name, arrow)`` changes each fetched table; ``grid_sink(grid)`` receives each
    part's rows before :func:`~custdyn.features.incremental.derive_arrow` (which is skipped
    when there is neither ``write`` nor ``sink``). Returns the plan.
    """
    from custdyn.features.incremental import derive_arrow, plan, plan_tables, snapshot_arrow
    from custdyn.store import release_memory

    temps: list[str] = []
    # the part's customer range as literals in the SQL (a constant range is pruned by the
    # sorted tables' statistics; a range read from a view is not, every part scanned all)
    marks = ("'__custdyn_part_lo__'", "'__custdyn_part_hi__'")

    def keep(name: str, t: ir.Table) -> ir.Table:
        """Each event-level table computed once, stored sorted by customer, read by part."""
        tmp = f"_custdyn_inc_{name}"
        where = rows_where(name, t) if rows_where is not None else None
        if where is not None:
            t = t.filter(where)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {tmp} AS SELECT * FROM "
                    f"({b.con.compile(t)}) ORDER BY customer_id")
        temps.append(tmp)
        v = b.con.table(tmp)
        lo, hi = (ibis.literal(m_.strip("'"), "string") for m_ in marks)
        return v.filter((v.customer_id >= lo) & (v.customer_id <= hi))

    def quote(x: str) -> str:
        return "'" + x.replace("'", "''") + "'"

    row = con.execute("SELECT current_setting('threads')").fetchone()
    threads = int(row[0]) if row else 1
    try:
        if scope is None:  # the events stored once, with their epoch seconds
            temps.append(materialize_events(b, con, "_custdyn_inc_events"))
            scope = events_scope(b, "_custdyn_inc_events", None, options, whole=True)
        pl = plan(b, epochs, keep=keep, coded=True, scope=scope, **options)
        ids = [r[0] for r in con.execute(
            "SELECT customer_id FROM _custdyn_inc_cust ORDER BY customer_id").fetchall()]
        starts = sorted({len(ids) * i // parts for i in range(parts)})
        ranges = [(ids[a], ids[z - 1]) for a, z in zip(starts, [*starts[1:], len(ids)],
                                                        strict=True) if z > a] or [("", "")]
        compiled = {name: b.con.compile(t) for name, t in plan_tables(pl).items()}
        if any(marks[0] not in q or marks[1] not in q for q in compiled.values()):
            raise FeatureError("the part's customer range is missing from a compiled query")

        def put(rows: pa.Table, last: bool) -> None:
            if sink is not None:
                sink(rows)
                return
            # one DuckDB thread: the Arrow rows are appended in order and compressed once
            # (with several threads DuckDB writes row groups it then merges: more CPU)
            con.execute("SET threads = 1")
            try:
                _write_arrow(con, write, rows)
            finally:
                con.execute(f"SET threads = {threads}")
            if not last:
                checkpoint()

        def fetch(lo: str, hi: str) -> dict[str, pa.Table]:
            sql = {name: q.replace(marks[0], quote(lo)).replace(marks[1], quote(hi))
                   for name, q in compiled.items()}
            got = {name: _fetch(con, sql, name) for name in sql}
            if transform is not None:
                got = {name: transform(name, t) for name, t in got.items()}
            return got

        # a part is written while the next one's numpy work runs (the connection is used by
        # one thread at a time: the next part's queries run before the write starts)
        with ThreadPoolExecutor(max_workers=1) as pool:
            writing: Future[None] | None = None
            try:
                fetched = fetch(*ranges[0])
                for i in range(len(ranges)):
                    grid = snapshot_arrow(pl, dates, fetched.pop)
                    if grid_sink is not None:
                        grid_sink(grid)
                    rows = (derive_arrow(grid, pl) if sink is not None or write is not None
                            else None)
                    del grid
                    if writing is not None:
                        writing.result()
                    release_memory()  # the part before: gone before the next grows
                    if i + 1 < len(ranges):
                        fetched = fetch(*ranges[i + 1])
                    if rows is not None:
                        writing = pool.submit(put, rows, i + 1 == len(ranges))
                    del rows
                if writing is not None:
                    writing.result()
            finally:
                if writing is not None:  # an error meanwhile: let the write end first
                    wait([writing])
        return pl
    finally:
        for tmp in temps:
            con.execute(f"DROP TABLE IF EXISTS {tmp}")


def materialize_events(b: Backend, con: Any, name: str,
                       where: Any = None, source: str | None = None) -> str:
    """Store the interactions the features read (:func:`~custdyn.features.build.event_columns`;
    with ``where(interactions)``, an Ibis condition, only the rows it keeps; from the table
    ``source`` with the interactions' columns instead if given) as the temporary table
    ``name``."""
    from custdyn.features.build import event_columns

    it = b.con.table(source) if source else b.table("interactions")
    if where is not None:
        it = it.filter(where(it))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {b.con.compile(event_columns(it))}")
    return name


def events_scope(b: Backend, events: str, customers: str | None, options: dict[str, Any],
                 whole: bool = False, first_days: str | None = None) -> Any:
    """A plan's ``scope``: the events of the temporary table ``events`` (from
    :func:`materialize_events`); with ``customers`` (a table with ``customer_id``), only
    the customer records listed there. ``whole``: ``events`` holds every interaction (it
    serves as "all events" too). ``first_days``: a table of the customers' first purchase
    days (``customer_id``, ``d0``), read instead of taking them over every purchase."""
    from custdyn.features.build import _events_of, _settings

    kinds = _settings(b, options.get("purchase_kinds"), options.get("time_unit"),
                      options.get("unanswered_after_hours"))[0]
    ev = _events_of(b.con.table(events), kinds)
    who = b.con.table(customers) if customers else None

    def scope(name: str, t: ir.Table) -> ir.Table | None:
        if name == "first days":
            return b.con.table(first_days) if first_days else None
        if name == "events" or (name == "all events" and whole):
            return ev
        if name == "all events":
            return t
        return t if who is None else t.filter(t.customer_id.isin(who.customer_id))

    return scope


def cohorts_expr(b: Backend, as_of: Any = None,
                 purchase_kinds: list[str] | None = None) -> ir.Table:
    """Acquisition-month x months-since retention, as an Ibis expression.

    A customer's cohort is the UTC calendar month of their first purchase. For each cohort and
    each month since (0 = the acquisition month), ``customers`` is how many of the cohort
    purchased in that month and ``revenue`` what they spent; ``cohort_size`` and
    ``cohort_revenue`` (month 0) give the denominators of ``retention`` and
    ``revenue_retention``.
    """
    kinds = list(purchase_kinds or b.purchase_kinds)
    it = b.table("interactions")
    p = it.filter(it.kind.isin(kinds))
    if as_of is not None:
        p = p.filter(p.occurred_at.epoch_seconds().cast("float64") < as_utc(as_of).timestamp())
    p = p.select(
        "customer_id",
        month=p.occurred_at.year().cast("int64") * 12 + p.occurred_at.month().cast("int64") - 1,
        amount=p.amount.cast("float64").fill_null(0.0),
    )
    first = p.group_by("customer_id").aggregate(cohort_m=p.month.min())
    j = p.join(first, "customer_id")
    cell = j.group_by(["cohort_m", j.month]).aggregate(
        customers=j.customer_id.nunique().cast("int64"), revenue=j.amount.sum())
    cell = cell.mutate(months_since=cell.month - cell.cohort_m)
    zero = cell.filter(cell.months_since == 0).select(
        "cohort_m", cohort_size=cell.customers, cohort_revenue=cell.revenue)
    out = cell.join(zero, "cohort_m")
    year = (out.cohort_m // 12).cast("int32")
    month = (out.cohort_m % 12 + 1).cast("int32")
    return out.select(
        cohort=ibis.date(year, month, ibis.literal(1, "int32")),
        months_since=out.months_since.cast("int64"),
        customers=out.customers,
        revenue=out.revenue,
        cohort_size=out.cohort_size,
        retention=out.customers.cast("float64") / out.cohort_size.cast("float64"),
        revenue_retention=ibis.cases(
            (out.cohort_revenue != 0, out.revenue / out.cohort_revenue)),
    ).order_by(["cohort", "months_since"])


def cohorts(source: Any, *, as_of: Any = None, engine: str | None = None,
            purchase_kinds: list[str] | None = None) -> pa.Table:
    """Cohort retention table (see :func:`cohorts_expr`) as a ``pyarrow.Table``.

    Columns: ``cohort`` (date, first day of the acquisition month), ``months_since`` (int),
    ``customers`` (int), ``revenue`` (float, in the amounts' currency), ``cohort_size`` (int),
    ``retention`` (share of the cohort, 0-1), ``revenue_retention`` (revenue / month-0 revenue).
    """
    b = _resolve(source, engine)
    return b.to_pyarrow(cohorts_expr(b, as_of, purchase_kinds))
