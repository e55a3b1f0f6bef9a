"""The feature table at many ``as_of`` dates at once, without joining every event to every date.

:func:`custdyn.features.feature_expr` joins the interactions to the list of dates, so 24
dates cost about 24 single dates. Here each event is placed once on the date axis instead:

* the *index* of the first date at which it counts (a short binary search written as a
  ``CASE`` on the sorted dates), and for every look-back window the index of the first date
  at which it has left the window;
* per (customer, date index) the events that enter (+1, +amount, +score) and leave (-1, ...)
  are summed, and the latest times kept (max);
* over a grid of (customer, date) rows (each customer from the first date that describes
  them) running sums and maxima ordered by the date index give every count, sum, first and
  last; a windowed count is what entered minus what left;
* medians (first response, ticket resolution) are recomputed only at the dates where a new
  value arrived, over that customer's values so far, and carried forward to later dates.

The result is the table ``feature_expr`` gives for the same dates, row for row and column for
column (integers equal, floats up to summation order); ``tests/test_features.py`` checks it on a
planted log and on the demo world. The expression is plain Ibis (``CASE``, ``GROUP BY``,
``UNION ALL``, window running sums, joins), so it runs on Spark as on DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custdyn._keys import _positions
from custdyn.features.backend import Backend, FeatureError
from custdyn.features.build import (
    DAY_S,
    HOUR_S,
    WINDOWS_DAYS,
    _contact_starts,
    _epoch,
    _events,
    _finish,
    _settings,
    _text_events,
    _ticket_events,
    _turns,
    feature_columns,
)
from custdyn.schema import CHANNELS, DIRECTIONS, EMOTIONS

__all__ = ["Plan", "plan", "derive", "derive_arrow", "plan_tables", "snapshot_expr",
           "snapshot_arrow"]

KEYS = ["customer_id", "k"]
#: channel codes 0 .. len(CHANNELS) - 1, and len(CHANNELS) for any other value (or none)
N_CHANNELS = len(CHANNELS) + 1
#: direction codes likewise
N_DIRS = len(DIRECTIONS) + 1
N_CODES = N_CHANNELS * N_DIRS


def _first_index(moments: Sequence[float], after: Callable[[ir.Value], ir.BooleanValue]
                 ) -> ir.IntegerValue:
    """Index of the first date ``a`` (sorted epoch seconds) with ``after(a)`` true; ``len``
    when there is none. ``after`` must be monotone (false ... false true ... true)."""

    def search(lo: int, hi: int) -> ir.IntegerValue:
        if lo == hi:
            return ibis.literal(lo, "int64")
        mid = (lo + hi) // 2
        return ibis.ifelse(after(ibis.literal(moments[mid], "float64")),
                           search(lo, mid), search(mid + 1, hi))

    return search(0, len(moments))


#: 1.0 and 0.0 typed as doubles in the SQL (a bare 1.0 is a DECIMAL in DuckDB, and a sum of
#: decimals runs in 128-bit integers and comes back as Python objects)
ONE = ibis.literal(1, "int64").cast("float64")
ZERO = ibis.literal(0, "int64").cast("float64")


def _one(cond: ir.BooleanValue) -> ir.FloatingValue:
    return ibis.ifelse(cond, ONE, ZERO)


@dataclass
class Plan:
    """What :func:`plan` finds: the changes per (customer, date index) and per customer."""

    #: (table keyed by customer_id and k, {column: "sum" or "max"}), one per kind of change
    parts: list[tuple[ir.Table, dict[str, str]]]
    #: every change column and how it runs over the dates
    how: dict[str, str]
    #: one row per customer: first times, created_at, the first date index (``start_s``)
    cust: ir.Table
    #: medians at the dates where a new value arrived: (customer_id, k, ...)
    resp: ir.Table
    res: ir.Table
    unit_days: float
    has_text: bool
    has_created: bool
    #: with ``coded``: the interactions counted per (customer_id, k, code), where ``code`` is
    #: ``which * N_CODES + channel code * N_DIRS + direction code`` and ``which`` is 0 for
    #: events that enter at ``k`` and ``1 + i`` for those that leave window ``WINDOWS_DAYS[i]``
    counts: ir.Table | None = None
    #: the values behind ``resp`` and ``res``: (customer_id, k, v), ``k`` the date index from
    #: which the value counts (:func:`snapshot_arrow` takes the medians in numpy)
    resp_values: ir.Table | None = None
    res_values: ir.Table | None = None
    #: per date-index column (``k_in``, ``k_l30``, ..., ``k_late``) the change columns that
    #: its events change: which look-back windows matter for some columns only
    touches: dict[str, frozenset[str]] = field(default_factory=dict)

    def delta(self) -> ir.Table:
        """All changes in one table, one row per (customer_id, k)."""
        padded = []
        for t, h in self.parts:
            padded.append(t.select(
                customer_id=t.customer_id.cast("string"), k=t.k.cast("int64"),
                **{col: (t[col].cast("float64") if col in h else ibis.null("float64"))
                   for col in self.how}))
        d = ibis.union(*padded, distinct=False)
        return d.group_by(KEYS).aggregate(
            **{col: (d[col].sum() if h == "sum" else d[col].max())
               for col, h in self.how.items()})


def snapshot_expr(
    b: Backend,
    moments: Sequence[float],
    dates: ir.Table,
    *,
    part: tuple[int | ir.Table, int] | None = None,
    **options: Any,
) -> ir.Table:
    """The feature table at every date as one Ibis expression, computed incrementally.

    Running sums are window functions over (customer, date) rows: the generic form, for
    engines with fast window functions (Spark). On DuckDB :func:`snapshot_arrow` takes the
    running sums in numpy instead (many window aggregates are slow there).

    Parameters
    ----------
    b, moments, part
        As for :func:`plan`: where it runs, the ``as_of`` moments (UTC epoch seconds, sorted,
        distinct) and the optional part of the customers.
    dates : ibis.Table
        The same moments as a table: ``as_of`` (UTC timestamp), ``as_of_s`` and ``k`` (the
        position in ``moments``, from 0).
    **options
        ``purchase_kinds``, ``time_unit``, ``unanswered_after_hours``, ``text_engine``, as
        for :func:`custdyn.features.feature_expr`.

    Returns
    -------
    ibis.Table
        The columns of :func:`custdyn.features.feature_expr`, one row per (customer, as_of).
    """
    pl = plan(b, moments, part=part, **options)
    cust = pl.cust
    g = cust.join(dates, cust.start_s < dates.as_of_s)
    # the changes at each (customer, date index): every part joined on (keys are unique in
    # each part), a column found in several parts added up
    found: dict[str, list[str]] = {}
    for n_part, (t, h) in enumerate(pl.parts):
        names = {f"{col}__{n_part}": t[col].cast("float64") for col in h}
        j = g.left_join(t, KEYS)
        g = j.select(*[g[col] for col in g.columns], **names)
        for col in h:
            found.setdefault(col, []).append(f"{col}__{n_part}")
    merged: dict[str, Any] = {}
    for col, names_ in found.items():
        if len(names_) == 1:
            merged[col] = g[names_[0]]
        else:
            merged[col] = sum((g[n_].fill_null(0.0) for n_ in names_[1:]),
                              g[names_[0]].fill_null(0.0))
    g = g.select(*[col for col in g.columns if "__" not in col], **merged)

    # running sums and maxima over the dates
    win = ibis.cumulative_window(group_by=g.customer_id, order_by=g.k)
    g = g.mutate(**{col: (g[col].sum() if h == "sum" else g[col].max()).over(win)
                    for col, h in pl.how.items()})
    # medians where a new value arrived, carried forward
    g = g.mutate(resp_k=g.resp_k.cast("int64"), res_k=g.res_k.cast("int64"))
    resp = pl.resp.rename({"resp_k": "k"})
    res = pl.res.rename({"res_k": "k"})
    g = g.left_join(resp, ["customer_id", "resp_k"]).drop("customer_id_right", "resp_k_right")
    g = g.left_join(res, ["customer_id", "res_k"]).drop("customer_id_right", "res_k_right")
    return derive(g, pl)


def plan(
    b: Backend,
    moments: Sequence[float],
    *,
    part: tuple[int | ir.Table, int] | None = None,
    keep: Callable[[str, ir.Table], ir.Table] | None = None,
    purchase_kinds: Sequence[str] | None = None,
    time_unit: str | float | None = None,
    unanswered_after_hours: float | None = None,
    text_engine: str | None = None,
    coded: bool = False,
    scope: Callable[[str, Any], Any] | None = None,
) -> Plan:
    """Every event placed on the date axis: the changes per (customer, date index).

    Parameters
    ----------
    b : Backend
        Where it runs.
    moments : sequence of float
        The ``as_of`` moments as UTC epoch seconds, sorted, distinct.
    part : (int or ibis.Table, int), optional
        ``(i, n)``: only the customers whose ``customer_id`` hashes to ``i`` modulo ``n`` (the
        table is computed in ``n`` parts to bound memory). ``i`` may be a one-row table with
        an integer column ``i``, so that one compiled query serves every part.
    keep : callable, optional
        Called with each event-level table (name, table with its date indexes ``k_*``, one
        row per event, ticket, purchase day, ...) and the per-customer table; what it returns
        is used instead (e.g. the table materialised once, then filtered to a part).
    purchase_kinds, time_unit, unanswered_after_hours, text_engine
        As for :func:`custdyn.features.feature_expr`.
    coded : bool
        Count the interactions by channel and direction as one grouped count per
        (customer, date index, code) (:attr:`Plan.counts`, spread into columns by
        :func:`snapshot_arrow`) instead of one column per channel, direction and window.
    scope : callable, optional
        Called as ``scope("events", ev)``, ``scope("all events", ev)`` and
        ``scope("customers", customers)``; what it returns is read instead (e.g. some
        customers' events only). Each customer's first purchase day (``d0``) is taken over
        the "all events" table (all the purchases, also those out of scope), unless
        ``scope("first days", None)`` returns a table of them (``customer_id``, ``d0``:
        known already, e.g. kept from an earlier run).
    """
    kinds, unit_days, wait_h = _settings(b, purchase_kinds, time_unit, unanswered_after_hours)
    m = [float(x) for x in moments]
    n_dates = len(m)
    hold = keep or (lambda _name, t: t)

    ev_all = ev = _events(b, kinds)
    cu = b.table("customers") if b.has("customers") else None
    if scope is not None:
        ev = scope("events", ev)
        ev_all = scope("all events", ev_all)
        cu = scope("customers", cu) if cu is not None else None
    if part is not None:
        i, n = part
        which = i.i.max().as_scalar() if isinstance(i, ir.Table) else ibis.literal(i, "int64")
        ev = ev.filter((ev.customer_id.hash() % n + n) % n == which)
        if cu is not None:
            cu = cu.filter((cu.customer_id.hash() % n + n) % n == which)

    def enters(ts: ir.FloatingValue) -> ir.IntegerValue:
        """First date index at which an event at ``ts`` counts (n_dates if none or null)."""
        return _first_index(m, lambda a: ts < a)

    def leaves(ts: ir.FloatingValue, days: float) -> ir.IntegerValue:
        """First date index at which it is more than ``days`` old."""
        return _first_index(m, lambda a: (a - ts) > days * DAY_S)

    # the changes of one event-level table, whichever date index they are placed at, are
    # summed (or maxed) in one query: (table, [(date index column, {column: expr}, how)])
    pending: dict[int, tuple[ir.Table, list[tuple[str, dict[str, Any], str]]]] = {}

    touched: dict[str, set[str]] = {}

    def add(t: ir.Table, k: str, cols: dict[str, Any], how: str = "sum") -> None:
        pending.setdefault(id(t), (t, []))[1].append((k, cols, how))
        touched.setdefault(k, set()).update(cols)

    def merged(t: ir.Table, adds: list[tuple[str, dict[str, Any], str]]
               ) -> tuple[ir.Table, dict[str, str]]:
        how_ = {c: h for _, cols, h in adds for c in cols}
        sides = []
        for k, cols, _h in adds:
            s = t.filter(t[k] < n_dates)
            sides.append(s.select("customer_id", k=s[k], **{
                c: (cols[c].cast("float64") if c in cols
                    else ibis.null("float64")) for c in how_}))
        s = sides[0] if len(sides) == 1 else ibis.union(*sides, distinct=False)
        agg = {c: (s[c].sum() if h == "sum" else s[c].max()) for c, h in how_.items()}
        return s.group_by(KEYS).aggregate(**agg), how_

    # ---- all interactions: counts, windowed counts by channel and direction, last contacts
    x = ev.select("customer_id", "channel", "kind", "direction", "ts", "is_contact")
    extra: dict[str, Any] = {}
    if coded:
        ch_code = ibis.cases(*[(x.channel == ch, i) for i, ch in enumerate(CHANNELS)],
                             else_=len(CHANNELS))
        d_code = ibis.cases(*[(x.direction == d, i) for i, d in enumerate(DIRECTIONS)],
                            else_=len(DIRECTIONS))
        extra["code"] = (ch_code * N_DIRS + d_code).cast("int64")
    x = hold("x", x.mutate(k_in=enters(x.ts), **{f"k_l{w}": leaves(x.ts, w)
                                                  for w in WINDOWS_DAYS}, **extra))
    inbound = x.direction == "inbound"
    outbound = x.direction == "outbound"
    purchase = x.kind.isin(kinds)
    meeting = x.channel == "meeting"
    cd = {(ch, d): (x.channel == ch) & (x.direction == d) for ch in CHANNELS for d in DIRECTIONS}
    enter: dict[str, Any] = {
        "n_orders": _one(purchase),
        "n_order_issues": _one(x.kind == "order_issue"),
        "n_returns": _one(x.kind == "return"),
    }
    counts = None
    if coded:
        ks = ["k_in", *[f"k_l{w}" for w in WINDOWS_DAYS]]
        sides = [x.filter(x[k] < n_dates).select(
            "customer_id", k=x[k], code=x.code + which * N_CODES)
            for which, k in enumerate(ks)]
        u_ = ibis.union(*sides, distinct=False)
        counts = u_.group_by(["customer_id", "k", "code"]).aggregate(n=u_.count())
        # the columns spread from the counts (snapshot_arrow), by the window they leave
        for w in WINDOWS_DAYS:
            window = {f"n_{ch}_{d}_{w}d" for ch in CHANNELS for d in DIRECTIONS}
            window |= {f"n_inbound_{w}d", f"n_outbound_{w}d"}
            touched.setdefault(f"k_l{w}", set()).update(
                window | ({"meetings_365d"} if w == 365 else set()))
            touched.setdefault("k_in", set()).update(window)
        touched.setdefault("k_in", set()).update({"n_interactions", "meet_n", "meetings_365d"})
    else:
        enter.update(n_interactions=ONE, meet_n=_one(meeting), meetings_365d=_one(meeting))
        for w in WINDOWS_DAYS:
            for (ch, d), cond in cd.items():
                enter[f"n_{ch}_{d}_{w}d"] = _one(cond)
            enter[f"n_inbound_{w}d"] = _one(inbound)
            enter[f"n_outbound_{w}d"] = _one(outbound)
    add(x, "k_in", enter)
    add(x, "k_in", {
        "last_customer_contact_s": ibis.cases((inbound & x.is_contact, x.ts)),
        "last_vendor_contact_s": ibis.cases((outbound & x.is_contact, x.ts)),
        "meet_last": ibis.cases((meeting, x.ts)),
    }, "max")
    for w in WINDOWS_DAYS:
        if coded:
            break
        leave = {f"n_{ch}_{d}_{w}d": -_one(cond) for (ch, d), cond in cd.items()}
        leave[f"n_inbound_{w}d"] = -_one(inbound)
        leave[f"n_outbound_{w}d"] = -_one(outbound)
        if w == 365:
            leave["meetings_365d"] = -_one(meeting)
        add(x, f"k_l{w}", leave)

    # ---- contacts (fixed start times)
    c = _contact_starts(ev)
    c = hold("c", c.mutate(k_in=enters(c.ts), k_l90=leaves(c.ts, 90),
                           k_l365=leaves(c.ts, 365)))
    c_in, c_out = c.direction == "inbound", c.direction == "outbound"
    add(c, "k_in", {"contacts_365d": ONE, "customer_started_365d": _one(c_in),
                    "vendor_contacts_90d": _one(c_out), "vendor_contacts_365d": _one(c_out),
                    "vend_n": _one(c_out)})
    add(c, "k_in", {"vend_last": ibis.cases((c_out, c.ts))}, "max")
    add(c, "k_l90", {"vendor_contacts_90d": -_one(c_out)})
    add(c, "k_l365", {"contacts_365d": -ONE, "customer_started_365d": -_one(c_in),
                      "vendor_contacts_365d": -_one(c_out)})

    # ---- customer turns, replies, unanswered turns
    u = _turns(ev)
    due = u.ts + wait_h * HOUR_S
    late = u.reply_s.isnull() | (u.reply_s > due)
    u = hold("u", u.mutate(
        k_in=enters(u.ts),
        k_late=ibis.ifelse(late, _first_index(m, lambda a: (due <= a) & (u.ts < a)), n_dates),
        k_reply=enters(u.reply_s),
        v=(u.reply_s - u.ts) / HOUR_S,
    ))
    add(u, "k_in", {"customer_turns": ONE})
    add(u, "k_late", {"unanswered_inbound": ONE})
    r = u.filter(u.reply_s.notnull() & (u.k_reply < n_dates)).select(
        "customer_id", k=u.k_reply, v=u.v)
    add(u, "k_reply", {"resp_k": u.k_reply.cast("float64")}, "max")

    # ---- tickets: each ticket's first event, first status, first resolution, ...
    y = _ticket_events(ev)
    tick = y.group_by(["customer_id", "ticket"]).aggregate(
        opened_s=y.ts.min(),
        status_s=y.ts.min(where=y.status.notnull()),
        resolved_s=y.ts.min(where=y.status == "resolved"),
        reopened_s=y.ts.min(where=y.status == "reopened"),
        escalated_s=y.ts.min(where=y.status == "escalated"),
    )
    firsts = ("status", "resolved", "reopened", "escalated")
    tick = hold("tick", tick.mutate(
        k_in=enters(tick.opened_s), k_l365=leaves(tick.opened_s, 365),
        v=(tick.resolved_s - tick.opened_s) / HOUR_S,
        **{f"k_{f}": enters(tick[f"{f}_s"]) for f in firsts}))
    add(tick, "k_in", {"tickets_opened": ONE,
                       "tickets_opened_365d": ONE})
    add(tick, "k_l365", {"tickets_opened_365d": -ONE})
    for f in firsts:
        add(tick, f"k_{f}", {f"tk_{f}": ONE})
    rs = tick.filter(tick.resolved_s.notnull() & (tick.k_resolved < n_dates)).select(
        "customer_id", k=tick.k_resolved, v=tick.v)
    add(tick, "k_resolved", {"res_k": tick.k_resolved.cast("float64")}, "max")

    # ---- purchases: per UTC day; the first day's amount (first purchase day is fixed)
    p = ev.filter(ev.kind.isin(kinds))
    p = p.select("customer_id", "ts", day=(p.ts / DAY_S).floor().cast("float64"),
                 amount=p.amount.fill_null(0.0))
    given = scope("first days", None) if scope is not None else None
    if given is not None:
        first_day = given.select("customer_id", d0=given.d0.cast("float64"))
    elif scope is None:
        first_day = p.group_by("customer_id").aggregate(d0=p.day.min())
    else:  # the first purchase day over all the purchases, not only those in scope
        pa_ = ev_all.filter(ev_all.kind.isin(kinds))
        first_day = pa_.group_by("customer_id").aggregate(
            d0=(pa_.ts / DAY_S).floor().cast("float64").min())
    pj = p.join(first_day, "customer_id")
    pj = hold("p", pj.mutate(k_in=enters(pj.ts), first=pj.day == pj.d0))
    add(pj, "k_in", {"p_total": pj.amount, "p_first_amt": ibis.ifelse(pj.first, pj.amount, ZERO)})
    pdays = p.group_by(["customer_id", "day"]).aggregate(first_ts=p.ts.min())
    pdays = hold("pdays", pdays.mutate(k_in=enters(pdays.first_ts)))
    add(pdays, "k_in", {"p_days": ONE})
    add(pdays, "k_in", {"p_last_day": pdays.day}, "max")

    # ---- text signals of the customer's own messages
    z = _text_events(b, ev, text_engine)
    if z is not None:
        z = hold("z", z.mutate(k_in=enters(z.ts), **{f"k_l{w}": leaves(z.ts, w)
                                                      for w in (90, 180, 365)}))
        has = {"score": z.score.notnull(), **{e: z[e].notnull() for e in EMOTIONS}}
        val = {k_: ibis.ifelse(h, z[k_], ZERO) for k_, h in has.items()}
        w365: dict[str, Any] = {
            "scored_messages_365d": ONE,
            "competitor_mentions_365d": _one(z.mention),
            "switch_intent_365d": _one(z.switch),
            "s365_sum": val["score"], "s365_n": _one(has["score"]),
            **{f"e_{e}_sum": val[e] for e in EMOTIONS},
            **{f"e_{e}_n": _one(has[e]) for e in EMOTIONS},
        }
        w90 = {"s90_sum": val["score"], "s90_n": _one(has["score"])}
        wprev = {"sp_sum": val["score"], "sp_n": _one(has["score"])}
        add(z, "k_in", {"scored_n": ONE, **w365, **w90})
        add(z, "k_l365", {k_: -v for k_, v in w365.items()})
        add(z, "k_l90", {**{k_: -v for k_, v in w90.items()}, **wprev})
        add(z, "k_l180", {k_: -v for k_, v in wprev.items()})

    parts = [merged(t, adds) for t, adds in pending.values()]
    how: dict[str, str] = {}
    for _, h in parts:
        how.update(h)

    # ---- who is described, from which date: per customer constants
    e1 = ev.group_by("customer_id").aggregate(
        ev_first_s=ev.ts.min(),
        first_contact_at=ev.occurred_at.min(),
        opened_event_s=ev.ts.min(where=ev.kind == "account_opened"),
        opened_event_at=ev.occurred_at.min(where=ev.kind == "account_opened"),
        first_order_s=ev.ts.min(where=ev.kind.isin(kinds)),
        first_order_at=ev.occurred_at.min(where=ev.kind.isin(kinds)),
        meet_first=ev.ts.min(where=ev.channel == "meeting"),
    )
    c0 = _contact_starts(ev)
    c0 = c0.filter(c0.direction == "outbound")
    vf = c0.group_by("customer_id").aggregate(vend_first=c0.ts.min())
    cust = e1.left_join(vf, "customer_id").drop("customer_id_right")
    cust = cust.left_join(first_day, "customer_id").drop("customer_id_right")
    has_created = cu is not None
    if cu is not None:
        cr = cu.filter(cu.created_at.notnull()).select(
            "customer_id", created_at=cu.created_at, created_s=_epoch(cu.created_at))
        cust = cust.outer_join(cr, "customer_id")
        cust = cust.select(
            customer_id=ibis.coalesce(cust.customer_id, cust.customer_id_right),
            **{col: cust[col] for col in cust.columns
               if col not in ("customer_id", "customer_id_right")})
        start = ibis.least(cust.ev_first_s, cust.created_s)
    else:
        start = cust.ev_first_s
    cust = hold("cust", cust.mutate(start_s=start))

    def medians(vals: ir.Table, named: dict[str, Callable[[ir.FloatingColumn], Any]]
                ) -> ir.Table:
        changed = vals.select("customer_id", "k").distinct()
        j = changed.join(vals, [changed.customer_id == vals.customer_id, vals.k <= changed.k])
        j = j.select(customer_id=changed.customer_id, k=changed.k, v=vals.v)
        return j.group_by(KEYS).aggregate(**{n_: f(j.v) for n_, f in named.items()})

    resp = medians(r, {"first_response_median_h": lambda v: v.median(),
                       "first_response_p90_h": lambda v: v.quantile(0.9)})
    res = medians(rs, {"ticket_resolve_median_h": lambda v: v.median()})
    return Plan(parts, how, cust, resp, res, unit_days, z is not None, has_created, counts,
                resp_values=r, res_values=rs,
                touches={k: frozenset(v) for k, v in touched.items()})


def derive(g: ir.Table, pl: Plan) -> ir.Table:
    """The feature columns from the running sums and maxima at each (customer, date)."""
    unit_days = pl.unit_days
    a = g.as_of_s

    def count(col: str) -> ir.IntegerValue:
        return g[col].fill_null(0.0).cast("int64")

    def before(v: ir.Value, s: ir.FloatingValue) -> ir.Value:
        return ibis.cases((s < a, v))

    def span_per_gap(n: ir.FloatingValue, first: ir.FloatingValue,
                     last: ir.FloatingValue) -> ir.FloatingValue:
        return ibis.cases((n >= 2, (last - first) / DAY_S / (n - 1.0)),
                          else_=ibis.null("float64"))

    n_days = g.p_days.fill_null(0.0)
    buys = n_days > 0
    freq = n_days - 1.0
    d0 = g.d0
    st = g.tk_status.fill_null(0.0)
    known = st > 0
    cols: dict[str, Any] = {
        "customer_id": g.customer_id, "as_of": g.as_of, "as_of_s": a, "k": g.k,
        "n_interactions": count("n_interactions"),
    }
    for w in WINDOWS_DAYS:
        for ch in CHANNELS:
            for d in DIRECTIONS:
                cols[f"n_{ch}_{d}_{w}d"] = count(f"n_{ch}_{d}_{w}d")
        cols[f"n_inbound_{w}d"] = count(f"n_inbound_{w}d")
        cols[f"n_outbound_{w}d"] = count(f"n_outbound_{w}d")
    cols.update(
        meetings_365d=count("meetings_365d"),
        meeting_interval_days=span_per_gap(g.meet_n.fill_null(0.0), g.meet_first, g.meet_last),
        last_customer_contact_s=g.last_customer_contact_s,
        last_vendor_contact_s=g.last_vendor_contact_s,
        n_orders=count("n_orders"),
        n_order_issues=count("n_order_issues"),
        n_returns=count("n_returns"),
        first_contact_at=before(g.first_contact_at, g.ev_first_s),
        first_s=before(g.ev_first_s, g.ev_first_s),
        opened_event_at=before(g.opened_event_at, g.opened_event_s),
        opened_event_s=before(g.opened_event_s, g.opened_event_s),
        first_order_at=before(g.first_order_at, g.first_order_s),
        first_order_s=before(g.first_order_s, g.first_order_s),
        frequency=ibis.cases((buys, freq)),
        recency=ibis.cases((buys, (g.p_last_day - d0) / unit_days)),
        T=ibis.cases((buys, ((a / DAY_S).floor().cast("float64") - d0) / unit_days)),
        monetary_value=ibis.cases((buys, ibis.cases(
            (freq > 0, (g.p_total - g.p_first_amt) / freq), else_=0.0))),
        revenue=ibis.cases((buys, g.p_total)),
        contacts_365d=count("contacts_365d"),
        customer_started_365d=count("customer_started_365d"),
        vendor_contacts_90d=count("vendor_contacts_90d"),
        vendor_contacts_365d=count("vendor_contacts_365d"),
        vendor_contact_interval_days=span_per_gap(g.vend_n.fill_null(0.0), g.vend_first,
                                                  g.vend_last),
        customer_turns=count("customer_turns"),
        unanswered_inbound=count("unanswered_inbound"),
        first_response_median_h=g.first_response_median_h,
        first_response_p90_h=g.first_response_p90_h,
        tickets_opened=count("tickets_opened"),
        tickets_opened_365d=count("tickets_opened_365d"),
        tickets_open=ibis.cases((known, (st - g.tk_resolved.fill_null(0.0)).cast("int64"))),
        tickets_reopened=ibis.cases((known, count("tk_reopened"))),
        tickets_escalated=ibis.cases((known, count("tk_escalated"))),
        ticket_resolve_median_h=g.ticket_resolve_median_h,
    )
    if pl.has_text:
        scored = g.scored_n.fill_null(0.0) > 0

        def mean(s: str, n_: str) -> ir.FloatingValue:
            return ibis.cases((g[n_] > 0, g[s] / g[n_]))

        cols.update(
            scored_messages_365d=ibis.cases((scored, count("scored_messages_365d"))),
            sentiment_90d=mean("s90_sum", "s90_n"),
            sentiment_prev_90d=mean("sp_sum", "sp_n"),
            sentiment_365d=mean("s365_sum", "s365_n"),
            **{f"emotion_{e}_365d": mean(f"e_{e}_sum", f"e_{e}_n") for e in EMOTIONS},
            competitor_mentions_365d=ibis.cases((scored, count("competitor_mentions_365d"))),
            switch_intent_365d=ibis.cases((scored, count("switch_intent_365d"))),
        )
    if pl.has_created:
        cols.update(created_at=before(g.created_at, g.created_s),
                    created_s=before(g.created_s, g.created_s))
    out = g.select(**cols)
    return _finish(out, unit_days, pl.has_text, pl.has_created)


def derive_arrow(g: pa.Table, pl: Plan, only: Iterable[str] | None = None) -> pa.Table:
    """:func:`derive` in numpy: the feature table (its columns, order and types) from the
    table :func:`snapshot_arrow` gives, ready to be written as it is. ``only``: just these
    features (with ``customer_id`` and ``as_of``); the counts by channel, direction and
    window that are not asked for are not made.

    The same arithmetic in the same order as the SQL of :func:`derive` (a missing value is
    NaN here, null there, and stays missing through every operation)."""
    unit_days = pl.unit_days
    n_rows = g.num_rows
    names = set(g.column_names)
    asked = None if only is None else {"customer_id", "as_of", *only}

    def f(col: str) -> np.ndarray:
        return _numpy(g.column(col), np.float64)

    def count(col: str) -> np.ndarray:
        if col not in names:
            return np.zeros(n_rows, np.int64)
        c = g.column(col)
        if pa.types.is_integer(c.type) and not c.null_count:
            return _numpy(c, np.int64)
        return np.rint(np.nan_to_num(f(col))).astype(np.int64)

    def num(x: np.ndarray, where: np.ndarray | None = None) -> pa.Array:
        """Floats, NaN (and rows outside ``where``) as null."""
        mask = np.isnan(x) if where is None else (np.isnan(x) | ~where)
        return pa.array(x, pa.float64(), mask=mask if mask.any() else None)

    def ints(x: Any, where: np.ndarray | None = None) -> pa.Array:
        return pa.array(x, pa.int64(), mask=None if where is None or where.all() else ~where)

    def before(col: str, s: np.ndarray) -> pa.Array:
        """``col`` where ``s < as_of``, else null (a timestamp column or epoch seconds)."""
        keep = s < a  # NaN compares false
        c = g.column(col)
        if pa.types.is_timestamp(c.type):
            c = c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
            return pc.if_else(pa.array(keep), c, pa.scalar(None, c.type))
        return num(f(col), keep)

    def span_per_gap(n_: np.ndarray, first: np.ndarray, last: np.ndarray) -> pa.Array:
        with np.errstate(invalid="ignore", divide="ignore"):
            return num((last - first) / DAY_S / (n_ - 1.0), n_ >= 2)

    def days(x: np.ndarray, y: np.ndarray) -> pa.Array:
        return num((x - y) / DAY_S)

    a = f("as_of_s")
    out: dict[str, Any] = {"customer_id": g.column("customer_id"), "as_of": g.column("as_of")}
    n_days = np.nan_to_num(f("p_days"))
    buys = n_days > 0
    freq = n_days - 1.0
    d0 = f("d0")
    p_total = f("p_total")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["frequency"] = num(freq, buys)
        out["recency"] = num((f("p_last_day") - d0) / unit_days, buys)
        out["T"] = num((np.floor(a / DAY_S) - d0) / unit_days, buys)
        mv = np.where(freq > 0, (p_total - f("p_first_amt")) / np.where(freq > 0, freq, 1.0),
                      0.0)
    out["monetary_value"] = num(mv, buys)
    out["revenue"] = num(p_total, buys)
    counts = _Lazy(count)

    def counted(*cols: str) -> None:
        """The count columns of these names (those asked for)."""
        for col in cols:
            if asked is None or col in asked:
                out[col] = ints(counts[col])

    counted("n_orders", "n_interactions")
    for w in WINDOWS_DAYS:
        counted(f"n_inbound_{w}d", f"n_outbound_{w}d")
    for w in WINDOWS_DAYS:
        counted(*[f"n_{ch}_{d}_{w}d" for ch in CHANNELS for d in DIRECTIONS])
    out["channel_breadth_365d"] = ints(np.sum(
        [counts[f"n_{ch}_inbound_365d"] > 0 for ch in CHANNELS], axis=0, dtype=np.int64))
    contacts = counts["contacts_365d"]
    out["contacts_365d"] = ints(contacts)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts["customer_started_365d"].astype(np.float64) / contacts.astype(np.float64)
    out["customer_started_share_365d"] = num(share, contacts > 0)
    counted("meetings_365d")
    out["meeting_interval_days"] = span_per_gap(np.nan_to_num(f("meet_n")), f("meet_first"),
                                                f("meet_last"))
    out["days_since_customer_contact"] = days(a, f("last_customer_contact_s"))
    counted("customer_turns")
    out["first_response_median_h"] = num(f("first_response_median_h"))
    out["first_response_p90_h"] = num(f("first_response_p90_h"))
    counted("unanswered_inbound")
    counted("vendor_contacts_90d")
    counted("vendor_contacts_365d")
    out["vendor_contact_interval_days"] = span_per_gap(np.nan_to_num(f("vend_n")),
                                                       f("vend_first"), f("vend_last"))
    out["days_since_vendor_contact"] = days(a, f("last_vendor_contact_s"))
    st = np.nan_to_num(f("tk_status"))
    known = st > 0
    counted("tickets_opened")
    counted("tickets_opened_365d")
    out["tickets_open"] = ints(
        np.rint(st - np.nan_to_num(f("tk_resolved"))).astype(np.int64), known)
    out["ticket_resolve_median_h"] = num(f("ticket_resolve_median_h"))
    out["tickets_reopened"] = ints(counts["tk_reopened"], known)
    out["tickets_escalated"] = ints(counts["tk_escalated"], known)
    issues, returns = counts["n_order_issues"], counts["n_returns"]
    orders = counts["n_orders"].astype(np.float64)
    out["n_order_issues"] = ints(issues)
    out["n_returns"] = ints(returns)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["order_issues_per_order"] = num(issues / orders, orders > 0)
        out["returns_per_order"] = num(returns / orders, orders > 0)
    opened_s = before("opened_event_s", f("opened_event_s"))
    opened_at = before("opened_event_at", f("opened_event_s"))
    if pl.has_created:  # the earlier of the two (a missing one ignored)
        created_s = f("created_s")
        opened_s = num(np.fmin(_numpy(opened_s, np.float64),
                               np.where(created_s < a, created_s, np.nan)))
        ts_type = opened_at.type
        opened_at = pc.min_element_wise(
            opened_at.cast(pa.int64()), before("created_at", created_s).cast(pa.int64()),
            skip_nulls=True).cast(ts_type)
    opened = _numpy(opened_s, np.float64)
    out["days_to_first_order"] = days(_numpy(before("first_order_s", f("first_order_s")),
                                             np.float64), opened)
    if pl.has_text:
        scored = np.nan_to_num(f("scored_n")) > 0

        def mean(s_: str, n_: str) -> np.ndarray:
            k_ = f(n_)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(k_ > 0, f(s_) / np.where(k_ > 0, k_, 1.0), np.nan)

        s90, sprev = mean("s90_sum", "s90_n"), mean("sp_sum", "sp_n")
        out["scored_messages_365d"] = ints(counts["scored_messages_365d"], scored)
        out["sentiment_90d"] = num(s90)
        out["sentiment_365d"] = num(mean("s365_sum", "s365_n"))
        out["sentiment_trend_90d"] = num(s90 - sprev)
        for e in EMOTIONS:
            out[f"emotion_{e}_365d"] = num(mean(f"e_{e}_sum", f"e_{e}_n"))
        out["competitor_mentions_365d"] = ints(counts["competitor_mentions_365d"], scored)
        out["switch_intent_365d"] = ints(counts["switch_intent_365d"], scored)
    else:
        none_f, none_i = pa.nulls(n_rows, pa.float64()), pa.nulls(n_rows, pa.int64())
        out.update(scored_messages_365d=none_i, sentiment_90d=none_f, sentiment_365d=none_f,
                   sentiment_trend_90d=none_f, **{f"emotion_{e}_365d": none_f for e in EMOTIONS},
                   competitor_mentions_365d=none_i, switch_intent_365d=none_i)
    out["first_contact_at"] = before("first_contact_at", f("ev_first_s"))
    out["account_opened_at"] = opened_at
    out["first_order_at"] = before("first_order_at", f("first_order_s"))
    first_s = _numpy(before("ev_first_s", f("ev_first_s")), np.float64)
    out["tenure_days"] = days(a, np.fmin(first_s, opened))
    return pa.table({c: out[c] for c in feature_columns() if asked is None or c in asked})


#: Grid columns every derived table reads (the row's key and date).
GRID_KEY = ("customer_id", "k", "as_of", "as_of_s")


def derive_inputs(features: Iterable[str], pl: Plan) -> list[str]:
    """The grid columns :func:`derive_arrow` reads to make ``features`` (with
    :data:`GRID_KEY`; names that are not feature columns need nothing). A grid of only
    these columns, the others null (:func:`pad_grid`), gives the same values for
    ``features`` (``tests/test_features_rolling.py`` checks every feature)."""
    opened = ["opened_event_s", "opened_event_at",
              *(["created_s", "created_at"] if pl.has_created else [])]
    fixed: dict[str, list[str]] = {
        "frequency": ["p_days"], "recency": ["p_days", "p_last_day", "d0"],
        "T": ["p_days", "d0"], "monetary_value": ["p_days", "p_total", "p_first_amt"],
        "revenue": ["p_days", "p_total"],
        "channel_breadth_365d": [f"n_{ch}_inbound_365d" for ch in CHANNELS],
        "customer_started_share_365d": ["customer_started_365d", "contacts_365d"],
        "meeting_interval_days": ["meet_n", "meet_first", "meet_last"],
        "days_since_customer_contact": ["last_customer_contact_s"],
        "vendor_contact_interval_days": ["vend_n", "vend_first", "vend_last"],
        "days_since_vendor_contact": ["last_vendor_contact_s"],
        "tickets_open": ["tk_status", "tk_resolved"],
        "tickets_reopened": ["tk_status", "tk_reopened"],
        "tickets_escalated": ["tk_status", "tk_escalated"],
        "order_issues_per_order": ["n_order_issues", "n_orders"],
        "returns_per_order": ["n_returns", "n_orders"],
        "days_to_first_order": ["first_order_s", *opened],
        "scored_messages_365d": ["scored_messages_365d", "scored_n"],
        "sentiment_90d": ["s90_sum", "s90_n"], "sentiment_365d": ["s365_sum", "s365_n"],
        "sentiment_trend_90d": ["s90_sum", "s90_n", "sp_sum", "sp_n"],
        "competitor_mentions_365d": ["competitor_mentions_365d", "scored_n"],
        "switch_intent_365d": ["switch_intent_365d", "scored_n"],
        "first_contact_at": ["first_contact_at", "ev_first_s"],
        "account_opened_at": opened,
        "first_order_at": ["first_order_at", "first_order_s"],
        "tenure_days": ["ev_first_s", *opened],
        **{f"emotion_{e}_365d": [f"e_{e}_sum", f"e_{e}_n"] for e in EMOTIONS},
    }
    # the other features are the grid column of the same name (counts, medians)
    known = set(feature_columns())
    out = dict.fromkeys(GRID_KEY)
    for f in features:
        if f not in known or f in ("customer_id", "as_of"):
            continue
        out.update(dict.fromkeys(fixed.get(f, [f])))
    return list(out)


def pad_grid(g: pa.Table, schema: pa.Schema) -> pa.Table:
    """``g`` with the columns of ``schema`` it lacks added as nulls (one shared array per
    type), in ``schema``'s order: what :func:`derive_arrow` reads from a grid kept with only
    some columns (:func:`derive_inputs`)."""
    if g.column_names == schema.names:
        return g
    nulls: dict[pa.DataType, pa.Array] = {}
    cols = []
    for f in schema:
        if f.name in g.column_names:
            cols.append(g.column(f.name))
        else:
            if f.type not in nulls:
                nulls[f.type] = pa.nulls(g.num_rows, f.type)
            cols.append(nulls[f.type])
    return pa.Table.from_arrays(cols, schema=schema.remove_metadata())


class _Lazy(dict[str, np.ndarray]):
    """Values made on first use by ``make(key)``."""

    def __init__(self, make: Callable[[str], np.ndarray]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: str) -> np.ndarray:
        self[key] = v = self.make(key)
        return v


def _numpy(col: pa.Array | pa.ChunkedArray, dtype: Any) -> np.ndarray:
    """A column as numpy (nulls as NaN); one array first (much faster than chunk by chunk)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype)


def plan_tables(pl: Plan) -> dict[str, ir.Table]:
    """The tables :func:`snapshot_arrow` fetches, by name: ``cust``, ``resp``, ``res`` (the
    values behind the medians, :attr:`Plan.resp_values` and :attr:`Plan.res_values`) and
    ``part0``, ``part1``, ... (the plan's parts)."""
    out = {"cust": pl.cust,
           "resp": pl.resp if pl.resp_values is None else pl.resp_values,
           "res": pl.res if pl.res_values is None else pl.res_values}
    out.update({f"part{i}": t for i, (t, _) in enumerate(pl.parts)})
    if pl.counts is not None:
        out["counts"] = pl.counts
    return out


def snapshot_arrow(pl: Plan, dates: pa.Table, fetch: Callable[[str], pa.Table]) -> pa.Table:
    """The (customer, date) rows of ``pl`` with their running sums, maxima and medians.

    The changes, the per-customer constants and the medians are computed by the backend; the
    running sums over the dates are taken here with numpy, per customer and column, on a
    customers x dates array (no sum runs across customers). The result is the table
    :func:`derive` reads.

    Parameters
    ----------
    pl : Plan
        From :func:`plan`.
    dates : pyarrow.Table
        ``as_of``, ``as_of_s`` and ``k`` (sorted by ``k``).
    fetch : callable
        Runs one of the plan's tables, by name (see :func:`plan_tables`), and returns it as
        Arrow.
    """
    cust = fetch("cust")
    moments = _numpy(dates.column("as_of_s"), np.float64)
    n_k = len(moments)
    n = cust.num_rows
    start_s = _numpy(cust.column("start_s"), np.float64)
    first = np.searchsorted(moments, start_s, side="right")  # first k with start_s < as_of_s
    inside = np.arange(n_k)[None, :] >= first[:, None]
    rows, ks = np.nonzero(inside)  # row-major: sorted by customer, then date
    out: dict[str, Any] = {
        "customer_id": cust.column("customer_id").take(pa.array(rows)),
        "k": pa.array(ks.astype(np.int64)),
        "as_of": dates.column("as_of").take(pa.array(ks)),
        "as_of_s": pa.array(moments[ks]),
    }
    for col in cust.column_names:
        if col not in ("customer_id",):
            out[col] = cust.column(col).take(pa.array(rows))
    ids = cust.column("customer_id").combine_chunks()

    size = n * n_k

    def locate(t: pa.Table) -> np.ndarray:
        """Flat (customer, date index) positions of the rows of ``t``."""
        i = _positions(t.column("customer_id").combine_chunks(), ids)
        if (i < 0).any():
            raise FeatureError("a change belongs to a customer the plan does not describe")
        k = _numpy(t.column("k"), np.int64)
        return i * n_k + k

    def values(t: pa.Table, col: str) -> np.ndarray:
        return _numpy(t.column(col), np.float64)

    fetched = []
    for i, (_, cols) in enumerate(pl.parts):
        t = fetch(f"part{i}").combine_chunks()
        fetched.append((t, locate(t), cols))
    for col, how in pl.how.items():  # one column at a time: memory of one customers x dates
        m = np.zeros(size) if how == "sum" else np.full(size, np.nan)
        for t, at, cols in fetched:
            if col not in cols:
                continue
            v = values(t, col)
            if how == "sum":
                m += np.bincount(at, weights=np.nan_to_num(v), minlength=size)
            else:
                one = np.full(size, np.nan)
                one[at] = v  # one row per position in a part
                np.fmax(m, one, out=m)
        m = m.reshape(n, n_k)
        if how == "sum":
            np.cumsum(m, axis=1, out=m)
        else:
            m = np.fmax.accumulate(m, axis=1)
        out[col] = pa.array(m[inside], pa.float64(), from_pandas=True)
        del m
    del fetched
    if pl.counts is not None:
        out.update(_spread_counts(fetch("counts").combine_chunks(), locate, size, n, n_k,
                                  inside))
    for name in QUANTILES:
        t = fetch(name).combine_chunks()
        for col, v in quantile_columns(name, locate(t), values(t, "v"), n, n_k).items():
            out[col] = pa.array(v[inside], pa.float64(), from_pandas=True)
    return pa.table(out)


#: The quantile columns, by the table of values they are taken over (:func:`plan_tables`).
QUANTILES: dict[str, dict[str, float]] = {
    "resp": {"first_response_median_h": 0.5, "first_response_p90_h": 0.9},
    "res": {"ticket_resolve_median_h": 0.5},
}


def quantile_columns(name: str, at_v: np.ndarray, v: np.ndarray, n: int, n_k: int
                     ) -> dict[str, np.ndarray]:
    """The :data:`QUANTILES` columns of the values table ``name`` (``resp`` or ``res``) as
    customers x dates arrays (NaN before a customer's first value): each over the
    customer's values so far. ``at_v``: each value's flat position ``customer * n_k + k``
    (``k``: the date index from which it counts)."""
    named = QUANTILES[name]
    size = n * n_k
    # the quantiles at the positions where a value arrived, over the values so far
    at, got = _running_quantiles(at_v, v, n_k, list(named.values()))
    last = np.full(size, -1, np.int64)
    last[at] = at % n_k
    last = np.maximum.accumulate(last.reshape(n, n_k), axis=1)
    rows_ = np.arange(n)[:, None] * n_k
    out: dict[str, np.ndarray] = {}
    for col, q_v in zip(named, got, strict=True):
        m = np.full(size, np.nan)
        m[at] = q_v
        x = m[rows_ + np.maximum(last, 0)]
        x[last < 0] = np.nan
        out[col] = x
    return out


def _running_quantiles(at: np.ndarray, v: np.ndarray, n_k: int, qs: Sequence[float]
                       ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Quantiles of each customer's values so far, at every position where one arrived.

    ``at`` is ``customer * n_k + k`` (the value counts from date index ``k`` on). Returns the
    distinct positions (sorted) and, per ``q``, the quantile there of the customer's values at
    positions up to it, interpolated between order statistics as DuckDB's ``quantile_cont``
    and Spark's ``percentile`` do: at rank ``(n - 1) q``, ``lo + (hi - lo) * frac``.
    """
    changed = np.unique(at)
    if not len(at):
        return changed, [np.zeros(0) for _ in qs]
    # each value counts at its own position and at every later changed position of its
    # customer: the pairs (changed position, value)
    first = np.searchsorted(changed, at)
    stop = np.searchsorted(changed, (at // n_k + 1) * n_k)
    lens = stop - first
    group = np.repeat(first - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    vals = np.repeat(v, lens)
    order = np.lexsort((vals, group))
    group, vals = group[order], vals[order]
    n_in = np.bincount(group, minlength=len(changed))
    start = np.cumsum(n_in) - n_in
    got = []
    for q in qs:
        rank = (n_in - 1) * q
        lo = np.floor(rank)
        frac = rank - lo
        lo_i = start + lo.astype(np.int64)
        hi_i = start + np.ceil(rank).astype(np.int64)
        x_lo, x_hi = vals[lo_i], vals[hi_i]
        got.append(np.where(frac > 0, x_lo + (x_hi - x_lo) * frac, x_lo))
    return changed, got


def _spread_counts(t: pa.Table, locate: Callable[[pa.Table], np.ndarray], size: int, n: int,
                   n_k: int, inside: np.ndarray) -> dict[str, pa.Array]:
    """The interaction counts by channel, direction and window from :attr:`Plan.counts`.

    The changes are sorted by code once; each column is one ``bincount`` of its own slices
    (entering +n, leaving its window -n) and a running sum along the dates, in integers."""
    at = locate(t)
    code = _numpy(t.column("code"), np.int64)
    order = np.argsort(code, kind="stable")
    code, at = code[order], at[order]
    cnt = _numpy(t.column("n"), np.int64)[order]
    edge = np.searchsorted(code, np.arange(len(WINDOWS_DAYS) + 2) * N_CODES)
    edges = np.searchsorted(code, np.arange((len(WINDOWS_DAYS) + 1) * N_CODES + 1))

    def col(codes: list[int], window: int | None) -> pa.Array:
        """Running count of the interactions with these codes (those entering, minus those
        that left window number ``window`` when given)."""
        came = [slice(edges[c], edges[c + 1]) for c in codes]
        if window is None:
            if len(codes) == N_CODES:  # every code: one slice
                came = [slice(edge[0], edge[1])]
            a = np.concatenate([at[s] for s in came])
            return _running(a, np.concatenate([cnt[s] for s in came]), size, n, n_k, inside)
        off = (window + 1) * N_CODES
        left = [slice(edges[c + off], edges[c + off + 1]) for c in codes]
        a = np.concatenate([at[s] for s in [*came, *left]])
        w = np.concatenate([cnt[s] for s in came] + [-cnt[s] for s in left])
        return _running(a, w, size, n, n_k, inside)

    inb, outb = DIRECTIONS.index("inbound"), DIRECTIONS.index("outbound")
    meet = CHANNELS.index("meeting")
    meeting = [meet * N_DIRS + d for d in range(N_DIRS)]
    out: dict[str, pa.Array] = {}
    out["n_interactions"] = col(list(range(N_CODES)), None)
    out["meet_n"] = col(meeting, None)
    for i, w in enumerate(WINDOWS_DAYS):
        for c, ch in enumerate(CHANNELS):
            for d, dname in enumerate(DIRECTIONS):
                out[f"n_{ch}_{dname}_{w}d"] = col([c * N_DIRS + d], i)
        out[f"n_inbound_{w}d"] = col(list(range(inb, N_CODES, N_DIRS)), i)
        out[f"n_outbound_{w}d"] = col(list(range(outb, N_CODES, N_DIRS)), i)
        if w == 365:
            out["meetings_365d"] = col(meeting, i)
    return out


def _running(at: np.ndarray, w: np.ndarray, size: int, n: int, n_k: int,
             inside: np.ndarray) -> pa.Array:
    """Running sums along the dates of integer changes ``w`` at flat positions ``at``, at the
    rows of the grid (int64)."""
    m = np.bincount(at, weights=w, minlength=size) if len(at) else np.zeros(size)
    m = m.astype(np.int64).reshape(n, n_k)
    np.cumsum(m, axis=1, out=m)
    return pa.array(m[inside])
