"""The public calls: features at one date, snapshots over many, cohorts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from custdyn.features.backend import Backend, FeatureError, as_utc, backend
from custdyn.features.build import as_of_arrow, as_of_table, feature_expr

__all__ = ["features", "snapshots", "snapshot_dates", "cohorts", "cohorts_expr"]

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


def snapshots(
    ws: Any,
    dates: list[Any],
    *,
    engine: str | None = None,
    table: str = SNAPSHOTS_TABLE,
    dates_per_query: int | None = None,
    **options: Any,
) -> int:
    """Compute the features at every date and store them in the workspace.

    All dates go into one query (the interactions joined to the list of dates) unless the
    customers times the dates exceed :data:`ROWS_PER_QUERY`; then the dates are split into
    groups of ``dates_per_query``, each one query, all in one transaction. Rows of ``table``
    (default ``snapshots``) at these ``as_of`` dates are replaced; rows at other dates stay,
    so the table grows into a history keyed by (customer_id, as_of).

    Parameters
    ----------
    ws : Workspace
        Opened for writing.
    dates : list of date, datetime or ISO string
        The ``as_of`` moments (see :func:`snapshot_dates`).
    engine : {"duckdb", "spark"}, optional
        Where the features are computed; the result is stored in the workspace either way.
    dates_per_query : int, optional
        Dates per query (default: all of them, or as many as keep customers x dates under
        :data:`ROWS_PER_QUERY`).
    **options
        As for :func:`custdyn.features.feature_expr`.

    Returns
    -------
    int
        Rows written.
    """
    from custdyn.store import Workspace

    if not isinstance(ws, Workspace):
        raise FeatureError("snapshots are stored in a workspace; pass an open Workspace")
    if ws.read_only:
        raise FeatureError("the workspace is open read-only; open it for writing")
    b = backend(ws, engine)
    moments = sorted({as_utc(d) for d in dates})
    if not moments:
        raise FeatureError("no as_of dates given")
    if dates_per_query is None:
        it = b.table("interactions")
        n_customers = max(1, int(b.execute_scalar(it.customer_id.nunique())))
        dates_per_query = max(1, ROWS_PER_QUERY // n_customers)
    if dates_per_query < 1:
        raise FeatureError(f"dates_per_query={dates_per_query}; it must be 1 or more")
    groups = [moments[i:i + dates_per_query] for i in range(0, len(moments), dates_per_query)]
    con = ws.con
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    exists = bool(found and found[0])
    when = "as_of IN (SELECT unnest(?::TIMESTAMPTZ[]))"
    con.execute("BEGIN TRANSACTION")
    try:
        for group in groups:
            if b.engine == "duckdb":  # the dates as a view the SQL can name
                con.register("_custdyn_as_of", as_of_arrow(group))
                expr = feature_expr(b, b.con.table("_custdyn_as_of"), **options)
                source = f"({ibis.to_sql(expr, dialect='duckdb')})"
            else:
                expr = feature_expr(b, as_of_table(group), **options)
                con.register("_custdyn_arrow", b.to_pyarrow(expr))
                source = "_custdyn_arrow"
            if exists:
                con.execute(f'DELETE FROM "{table}" WHERE {when}', [group])
                con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM {source}')
            else:
                con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM {source}')
                exists = True
            con.unregister("_custdyn_arrow" if b.engine != "duckdb" else "_custdyn_as_of")
        row = con.execute(f'SELECT count(*) FROM "{table}" WHERE {when}', [moments]).fetchone()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return int(row[0]) if row else 0


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
