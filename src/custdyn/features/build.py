"""Per-customer features at one or many ``as_of`` moments, as one Ibis expression.

Every feature uses only interactions with ``occurred_at < as_of``. Times are compared as UTC
epoch seconds, so the same expression gives the same numbers on DuckDB and on Spark. The
definitions and units of every column are in ``docs/features.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from custdyn.features.backend import Backend, FeatureError, as_utc
from custdyn.models.rfm import TIME_UNITS
from custdyn.schema import CHANNELS, DIRECTIONS, EMOTIONS

__all__ = [
    "WINDOWS_DAYS",
    "NON_CONTACT_KINDS",
    "feature_expr",
    "as_of_table",
    "feature_columns",
]

DAY_S = 86_400.0
HOUR_S = 3_600.0
#: Look-back windows (days) of the windowed counts.
WINDOWS_DAYS = (30, 90, 365)
#: Kinds that are not conversation (besides the purchase kinds): they never count as a contact.
NON_CONTACT_KINDS = ("account_opened", "return")
#: Hours after which an inbound message without a reply counts as unanswered (default).
UNANSWERED_AFTER_HOURS = 48.0

_STATUS_RE = r'"status"\s*:\s*"([^"]*)"'
_TICKET_RE = r'"ticket_id"\s*:\s*"([^"]*)"'


def as_of_arrow(as_of: Any | Iterable[Any]) -> pa.Table:
    """The ``as_of`` moments as an Arrow table: ``as_of`` (UTC timestamp) and ``as_of_s``
    (UTC epoch seconds), sorted and distinct."""
    values = [as_of] if isinstance(as_of, str | dt.date) or not isinstance(as_of, Iterable) \
        else list(as_of)
    moments = sorted({as_utc(v) for v in values})
    if not moments:
        raise FeatureError("no as_of dates given")
    return pa.table({
        "as_of": pa.array(moments, pa.timestamp("us", tz="UTC")),
        "as_of_s": pa.array([m.timestamp() for m in moments], pa.float64()),
    })


def as_of_table(as_of: Any | Iterable[Any]) -> ir.Table:
    """A small Ibis table of ``as_of`` moments: ``as_of`` (UTC timestamp) and ``as_of_s``.

    Parameters
    ----------
    as_of : date, datetime, ISO string, or an iterable of them
        Naive values are UTC; a date means midnight UTC at its start.
    """
    return ibis.memtable(as_of_arrow(as_of))


def _epoch(ts: ir.TimestampValue) -> ir.FloatingValue:
    return ts.epoch_seconds().cast("float64")


#: 1 and 0 typed as doubles in the SQL: a bare ``1.0`` is a DECIMAL in DuckDB, whose sums run
#: in 128-bit integers (and integer sums likewise), several times slower than a double sum
_ONE = ibis.literal(1, "int64").cast("float64")
_ZERO = ibis.literal(0, "int64").cast("float64")


def _count(t: ir.Table, where: ir.BooleanValue) -> ir.IntegerScalar:
    return ibis.ifelse(where, _ONE, _ZERO).sum().cast("int64")


def _span_per_gap(ts: ir.FloatingColumn, where: ir.BooleanValue) -> ir.FloatingScalar:
    """Mean days between consecutive events: (last - first) / (n - 1); null under two events."""
    n = ibis.ifelse(where, _ONE, _ZERO).sum()
    first = ts.min(where=where)
    last = ts.max(where=where)
    return ibis.cases((n >= 2, (last - first) / DAY_S / (n - 1.0)),
                      else_=ibis.null("float64"))


def feature_expr(
    b: Backend,
    as_of: Any,
    *,
    purchase_kinds: Sequence[str] | None = None,
    time_unit: str | float | None = None,
    unanswered_after_hours: float | None = None,
    text_engine: str | None = None,
) -> ir.Table:
    """The feature table as an Ibis expression: one row per (customer_id, as_of).

    Parameters
    ----------
    b : Backend
        Where it runs (see :func:`custdyn.features.backend`).
    as_of : date, datetime, ISO string, iterable of them, or an Ibis table from
        :func:`as_of_table`
        The moment(s) described. Only interactions strictly before each ``as_of`` count.
    purchase_kinds : sequence of str, optional
        Kinds that count as purchases (default: the workspace setting, ``["order"]``).
    time_unit : {"D", "W", "M", "Y", "H"} or float, optional
        Unit of ``recency`` and ``T`` as in :func:`custdyn.models.rfm_summary` (default "W",
        or ``[features] time_unit``); a float is the unit's length in days.
    unanswered_after_hours : float, optional
        An inbound message with no reply after this many hours counts as unanswered
        (default 48, or ``[features] unanswered_after_hours``).
    text_engine : str, optional
        Which engine's ``text_signals`` rows to use (default: the engine with most rows).

    Returns
    -------
    ibis.Table
        Customers with any interaction before ``as_of`` or a ``created_at`` before it.
    """
    kinds, unit_days, wait_h = _settings(b, purchase_kinds, time_unit, unanswered_after_hours)
    A = as_of if isinstance(as_of, ir.Table) else as_of_table(as_of)

    ev = _events(b, kinds)

    def at(t: ir.Table, ts_col: str = "ts") -> ir.Table:
        j = t.join(A, t[ts_col] < A.as_of_s)
        return j.mutate(age=j.as_of_s - j[ts_col])

    keys = ["customer_id", "as_of_s"]

    # ---- everything that is a plain count or extreme over the rows before as_of
    x = at(ev.drop("attributes"))
    inbound = x.direction == "inbound"
    outbound = x.direction == "outbound"
    purchase = x.kind.isin(kinds)
    aggs: dict[str, Any] = {
        "n_interactions": x.count(),
    }
    for w in WINDOWS_DAYS:
        inw = x.age <= w * DAY_S
        for ch in CHANNELS:
            for d in DIRECTIONS:
                aggs[f"n_{ch}_{d}_{w}d"] = _count(
                    x, inw & (x.channel == ch) & (x.direction == d))
        aggs[f"n_inbound_{w}d"] = _count(x, inw & inbound)
        aggs[f"n_outbound_{w}d"] = _count(x, inw & outbound)
    aggs.update(
        meetings_365d=_count(x, (x.channel == "meeting") & (x.age <= 365 * DAY_S)),
        meeting_interval_days=_span_per_gap(x.ts, x.channel == "meeting"),
        last_customer_contact_s=x.ts.max(where=inbound & x.is_contact),
        last_vendor_contact_s=x.ts.max(where=outbound & x.is_contact),
        n_orders=_count(x, purchase),
        n_order_issues=_count(x, x.kind == "order_issue"),
        n_returns=_count(x, x.kind == "return"),
        first_contact_at=x.occurred_at.min(),
        first_s=x.ts.min(),
        opened_event_at=x.occurred_at.min(where=x.kind == "account_opened"),
        opened_event_s=x.ts.min(where=x.kind == "account_opened"),
        first_order_at=x.occurred_at.min(where=purchase),
        first_order_s=x.ts.min(where=purchase),
    )
    base = x.group_by(keys).aggregate(**aggs)

    # ---- contacts: each thread counts once (its first message), each unthreaded row once
    c = at(_contact_starts(ev))
    c_in = c.direction == "inbound"
    c_out = c.direction == "outbound"
    contacts = c.group_by(keys).aggregate(
        contacts_365d=_count(c, c.age <= 365 * DAY_S),
        customer_started_365d=_count(c, c_in & (c.age <= 365 * DAY_S)),
        vendor_contacts_90d=_count(c, c_out & (c.age <= 90 * DAY_S)),
        vendor_contacts_365d=_count(c, c_out & (c.age <= 365 * DAY_S)),
        vendor_contact_interval_days=_span_per_gap(c.ts, c_out),
    )

    # ---- the vendor's replies: customer turns in a thread and the first reply after each
    u = at(_turns(ev))
    replied = u.reply_s.notnull() & (u.reply_s < u.as_of_s)
    u = u.mutate(resp_h=ibis.cases((replied, (u.reply_s - u.ts) / HOUR_S)))
    due = u.ts + wait_h * HOUR_S
    replies = u.group_by(keys).aggregate(
        customer_turns=u.count(),
        first_response_median_h=u.resp_h.median(),
        first_response_p90_h=u.resp_h.quantile(0.9),
        unanswered_inbound=_count(
            u, (due <= u.as_of_s) & (u.reply_s.isnull() | (u.reply_s > due))),
    )

    # ---- support tickets (status from attributes when the source wrote it)
    y = at(_ticket_events(ev))
    per_ticket = y.group_by([*keys, "ticket"]).aggregate(
        opened_s=y.ts.min(),
        resolved_s=y.ts.min(where=y.status == "resolved"),
        reopened=y.status.isin(["reopened"]).any(),
        escalated=y.status.isin(["escalated"]).any(),
        has_status=y.status.notnull().any(),
    )
    pt = per_ticket.mutate(
        resolve_h=(per_ticket.resolved_s - per_ticket.opened_s) / HOUR_S,
        recent=(per_ticket.as_of_s - per_ticket.opened_s) <= 365 * DAY_S,
    )
    known = pt.has_status.cast("int64").max() > 0
    support = pt.group_by(keys).aggregate(
        tickets_opened=pt.count(),
        tickets_opened_365d=_count(pt, pt.recent),
        ticket_resolve_median_h=pt.resolve_h.median(),
        tickets_open=ibis.cases((known, _count(pt, pt.has_status & pt.resolved_s.isnull()))),
        tickets_reopened=ibis.cases((known, _count(pt, pt.reopened))),
        tickets_escalated=ibis.cases((known, _count(pt, pt.escalated))),
    )

    # ---- purchases: the rfm_summary definitions (same-UTC-day purchases merged)
    p = at(ev.filter(ev.kind.isin(kinds)).select("customer_id", "ts", "amount"))
    p = p.mutate(day=(p.ts / DAY_S).floor().cast("float64"), amount=p.amount.fill_null(0.0))
    pday = p.group_by([*keys, "day"]).aggregate(amt=p.amount.sum())
    r = pday.group_by(keys).aggregate(
        n_days=pday.count(),
        first_day=pday.day.min(),
        last_day=pday.day.max(),
        total=pday.amt.sum(),
        first_amt=pday.amt.argmin(pday.day),
        end_day=(pday.as_of_s / DAY_S).floor().max().cast("float64"),
    )
    freq = (r.n_days - 1).cast("float64")
    rfm = r.select(
        *keys,
        frequency=freq,
        recency=(r.last_day - r.first_day) / unit_days,
        T=(r.end_day - r.first_day) / unit_days,
        monetary_value=ibis.cases((freq > 0, (r.total - r.first_amt) / freq), else_=0.0),
        revenue=r.total,
    )

    # ---- text signals of the customer's own messages
    text = None
    z0 = _text_events(b, ev, text_engine)
    if z0 is not None:
        z = at(z0)
        y365 = z.age <= 365 * DAY_S
        y90 = z.age <= 90 * DAY_S
        prev90 = (z.age > 90 * DAY_S) & (z.age <= 180 * DAY_S)
        text = z.group_by(keys).aggregate(
            scored_messages_365d=_count(z, y365),
            sentiment_90d=z.score.mean(where=y90),
            sentiment_prev_90d=z.score.mean(where=prev90),
            sentiment_365d=z.score.mean(where=y365),
            **{f"emotion_{e}_365d": z[e].mean(where=y365) for e in EMOTIONS},
            competitor_mentions_365d=_count(z, z.mention & y365),
            switch_intent_365d=_count(z, z.switch & y365),
        )

    # ---- who is described: anyone with an event before as_of, or an account opened before it
    people = base.select(*keys)
    created = None
    if b.has("customers"):
        cu = b.table("customers")
        cu = cu.filter(cu.created_at.notnull()).select(
            "customer_id", created_at=cu.created_at, created_s=_epoch(cu.created_at))
        created = cu.join(A, cu.created_s < A.as_of_s).select(
            "customer_id", "as_of_s", "created_at", "created_s")
        people = people.union(created.select(*keys), distinct=True)

    out = people.join(A, "as_of_s", how="inner")
    parts = [base, rfm, contacts, replies, support]
    if text is not None:
        parts.append(text)
    if created is not None:
        parts.append(created)
    for part in parts:
        j = out.left_join(part, keys)
        out = j.select(*[out[c] for c in out.columns],
                       *[part[c] for c in part.columns if c not in keys])
    return _finish(out, unit_days, text is not None, created is not None)


def _settings(b: Backend, purchase_kinds: Sequence[str] | None, time_unit: str | float | None,
              unanswered_after_hours: float | None) -> tuple[list[str], float, float]:
    """Purchase kinds, the length of ``time_unit`` in days and the unanswered wait in hours."""
    kinds = list(purchase_kinds or b.purchase_kinds)
    if not kinds:
        raise FeatureError("purchase_kinds is empty; name at least one kind, e.g. ['order']")
    unit_spec = time_unit if time_unit is not None else b.options.get("time_unit", "W")
    if isinstance(unit_spec, str):
        if unit_spec not in TIME_UNITS:
            raise FeatureError(f"time_unit {unit_spec!r} is not known; allowed: "
                               f"{', '.join(TIME_UNITS)} or a length in days")
        unit_days = TIME_UNITS[unit_spec]
    else:
        unit_days = float(unit_spec)
    wait_h = float(unanswered_after_hours if unanswered_after_hours is not None
                   else b.options.get("unanswered_after_hours", UNANSWERED_AFTER_HOURS))
    return kinds, unit_days, wait_h


def _events(b: Backend, kinds: list[str]) -> ir.Table:
    """The interactions with epoch seconds (``ts``), float amounts and ``is_contact``."""
    return _events_of(b.table("interactions"), kinds)


def event_columns(it: ir.Table) -> ir.Table:
    """The interactions' columns the features read, with their epoch seconds ``ts``: what a
    backend can store once so that every later query reads ``ts`` instead of converting the
    time zone of each row again (DuckDB repeats the conversion wherever ``ts`` is used)."""
    return it.select("interaction_id", "customer_id", "channel", "kind", "direction",
                     "thread_id", "occurred_at", "attributes", "amount",
                     ts=_epoch(it.occurred_at))


def _events_of(it: ir.Table, kinds: list[str]) -> ir.Table:
    """:func:`_events` of a table with the interactions' columns."""
    non_contact = [*kinds, *NON_CONTACT_KINDS]
    ev = it.select(
        "interaction_id", "customer_id", "channel", "kind", "direction", "thread_id",
        "occurred_at", "attributes",
        # a stored ``ts`` (see :func:`event_columns`) is read, not computed again
        ts=it.ts if "ts" in it.columns else _epoch(it.occurred_at),
        amount=it.amount.cast("float64"),
    )
    ev = ev.mutate(is_contact=ev.kind.isnull() | ~ev.kind.isin(non_contact))
    return ev


def _contact_starts(ev: ir.Table) -> ir.Table:
    """Contacts: a thread's first contact message, or an unthreaded contact message."""
    threaded = ev.filter(ev.thread_id.notnull() & ev.is_contact)
    starts_thr = threaded.group_by(["customer_id", "thread_id"]).aggregate(
        ts=threaded.ts.min(),
        direction=threaded.direction.argmin(threaded.ts),
    ).select("customer_id", "ts", "direction")
    starts_one = ev.filter(ev.thread_id.isnull() & ev.is_contact).select(
        "customer_id", "ts", "direction")
    return starts_thr.union(starts_one, distinct=False)


def _turns(ev: ir.Table) -> ir.Table:
    """Customer turns (an inbound message after none or after an outbound one, in a thread)
    with the time of the first outbound reply at or after it (``reply_s``, null if none)."""
    th = ev.filter(ev.thread_id.notnull())
    win = ibis.window(group_by=[th.customer_id, th.thread_id],
                      order_by=[th.ts, th.interaction_id])
    after = ibis.window(group_by=[th.customer_id, th.thread_id],
                        order_by=[th.ts, th.interaction_id], rows=(0, None))
    th = th.mutate(
        prev_dir=th.direction.lag().over(win),
        reply_s=ibis.cases((th.direction == "outbound", th.ts)).min().over(after),
    )
    turns = th.filter((th.direction == "inbound")
                      & (th.prev_dir.isnull() | (th.prev_dir != "inbound")))
    return turns.select("customer_id", "ts", "reply_s")


def _is_support(t: ir.Table) -> ir.BooleanValue:
    """Whether a row of the interactions is a support (ticket) row."""
    return (t.kind == "support") | (t.channel == "ticket")


def _ticket_of(t: ir.Table) -> ir.StringValue:
    """A support row's ticket: its attributes' ``ticket_id``, else its thread, else the row."""
    return ibis.coalesce(t.attributes.cast("string").re_extract(_TICKET_RE, 1).nullif(""),
                         t.thread_id, t.interaction_id)


def _ticket_events(ev: ir.Table) -> ir.Table:
    """Support rows with their ticket (:func:`_ticket_of`) and status."""
    tk = ev.filter(_is_support(ev))
    tk = tk.mutate(
        status=tk.attributes.cast("string").re_extract(_STATUS_RE, 1).nullif(""),
        ticket=_ticket_of(tk),
    )
    return tk.select("customer_id", "ticket", "ts", "status")


def _text_events(b: Backend, ev: ir.Table, text_engine: str | None) -> ir.Table | None:
    """The customer's own scored messages (one engine's ``text_signals``), or None."""
    if not b.has("text_signals"):
        return None
    sig = b.table("text_signals")
    engine = text_engine or _busiest_engine(b, sig)
    sig = sig.filter(sig.engine == engine)
    msg = ev.filter(ev.direction == "inbound").select("interaction_id", "customer_id", "ts")
    ts_ = msg.join(sig, "interaction_id")
    ts_ = ts_.select(
        "customer_id", "ts",
        score=ts_.sentiment_score.cast("float64"),
        switch=ts_.intent_to_switch.fill_null(False),
        mention=ts_.mentions.cast("string").length().fill_null(0) > 2,
        **{e: ts_[e].cast("float64") for e in EMOTIONS},
    )
    return ts_


def _busiest_engine(b: Backend, sig: ir.Table) -> str:
    """The engine with most rows; on a tie, the one that scored last (a new engine version
    that has caught up with the old one)."""
    top = sig.group_by("engine").aggregate(n=sig.count(), last=sig.scored_at.max()).order_by(
        [ibis.desc("n"), ibis.desc("last"), "engine"]).limit(1)
    rows = b.to_pyarrow(top).to_pylist()
    return str(rows[0]["engine"])


def _days(a: ir.FloatingValue, b_: ir.FloatingValue) -> ir.FloatingValue:
    return (a - b_) / DAY_S


def _finish(t: ir.Table, unit_days: float, has_text: bool, has_created: bool) -> ir.Table:
    """Order, fill and derive the final columns."""
    zero_counts = [c for c in t.columns if c.startswith("n_") or c in (
        "meetings_365d", "contacts_365d", "customer_started_365d",
        "vendor_contacts_90d", "vendor_contacts_365d", "customer_turns", "unanswered_inbound",
        "tickets_opened", "tickets_opened_365d")]
    fill = {c: t[c].fill_null(0) for c in zero_counts}
    t = t.mutate(**fill)
    if has_created:
        opened_s = ibis.least(t.opened_event_s, t.created_s)
        opened_at = ibis.least(t.opened_event_at, t.created_at)
    else:
        opened_s, opened_at = t.opened_event_s, t.opened_event_at
    t = t.mutate(account_opened_s=opened_s, account_opened_at=opened_at)
    start = ibis.least(t.first_s, t.account_opened_s)
    cols: dict[str, Any] = {
        "customer_id": t.customer_id,
        "as_of": t.as_of,
        # purchases
        "frequency": t.frequency,
        "recency": t.recency,
        "T": t.T,
        "monetary_value": t.monetary_value,
        "revenue": t.revenue,
        "n_orders": t.n_orders,
        # the customer's side
        "n_interactions": t.n_interactions,
    }
    for w in WINDOWS_DAYS:
        cols[f"n_inbound_{w}d"] = t[f"n_inbound_{w}d"]
        cols[f"n_outbound_{w}d"] = t[f"n_outbound_{w}d"]
    for w in WINDOWS_DAYS:
        for ch in CHANNELS:
            for d in DIRECTIONS:
                cols[f"n_{ch}_{d}_{w}d"] = t[f"n_{ch}_{d}_{w}d"]
    breadth = sum((t[f"n_{ch}_inbound_365d"] > 0).cast("int64") for ch in CHANNELS)
    cols.update(
        channel_breadth_365d=breadth,
        contacts_365d=t.contacts_365d,
        customer_started_share_365d=ibis.cases(
            (t.contacts_365d > 0,
             t.customer_started_365d.cast("float64") / t.contacts_365d.cast("float64"))),
        meetings_365d=t.meetings_365d,
        meeting_interval_days=t.meeting_interval_days,
        days_since_customer_contact=_days(t.as_of_s, t.last_customer_contact_s),
        # the vendor's side
        customer_turns=t.customer_turns,
        first_response_median_h=t.first_response_median_h,
        first_response_p90_h=t.first_response_p90_h,
        unanswered_inbound=t.unanswered_inbound,
        vendor_contacts_90d=t.vendor_contacts_90d,
        vendor_contacts_365d=t.vendor_contacts_365d,
        vendor_contact_interval_days=t.vendor_contact_interval_days,
        days_since_vendor_contact=_days(t.as_of_s, t.last_vendor_contact_s),
        # support
        tickets_opened=t.tickets_opened,
        tickets_opened_365d=t.tickets_opened_365d,
        tickets_open=t.tickets_open,
        ticket_resolve_median_h=t.ticket_resolve_median_h,
        tickets_reopened=t.tickets_reopened,
        tickets_escalated=t.tickets_escalated,
        # ease of ordering
        n_order_issues=t.n_order_issues,
        n_returns=t.n_returns,
        order_issues_per_order=ibis.cases(
            (t.n_orders > 0, t.n_order_issues.cast("float64") / t.n_orders.cast("float64"))),
        returns_per_order=ibis.cases(
            (t.n_orders > 0, t.n_returns.cast("float64") / t.n_orders.cast("float64"))),
        days_to_first_order=_days(t.first_order_s, t.account_opened_s),
    )
    f64 = ibis.null("float64")
    i64 = ibis.null("int64")
    if has_text:
        cols.update(
            scored_messages_365d=t.scored_messages_365d,
            sentiment_90d=t.sentiment_90d,
            sentiment_365d=t.sentiment_365d,
            sentiment_trend_90d=t.sentiment_90d - t.sentiment_prev_90d,
            **{f"emotion_{e}_365d": t[f"emotion_{e}_365d"] for e in EMOTIONS},
            competitor_mentions_365d=t.competitor_mentions_365d,
            switch_intent_365d=t.switch_intent_365d,
        )
    else:
        cols.update(
            scored_messages_365d=i64, sentiment_90d=f64, sentiment_365d=f64,
            sentiment_trend_90d=f64, **{f"emotion_{e}_365d": f64 for e in EMOTIONS},
            competitor_mentions_365d=i64, switch_intent_365d=i64,
        )
    cols.update(
        first_contact_at=t.first_contact_at,
        account_opened_at=t.account_opened_at,
        first_order_at=t.first_order_at,
        tenure_days=_days(t.as_of_s, start),
    )
    typed = {k: (v.cast("float64") if k in _FLOAT_COLS else v) for k, v in cols.items()}
    return t.select(**typed)


_FLOAT_COLS = {
    "frequency", "recency", "T", "monetary_value", "revenue", "customer_started_share_365d",
    "meeting_interval_days", "days_since_customer_contact", "first_response_median_h",
    "first_response_p90_h", "vendor_contact_interval_days", "days_since_vendor_contact",
    "ticket_resolve_median_h", "order_issues_per_order", "returns_per_order",
    "days_to_first_order", "sentiment_90d", "sentiment_365d", "sentiment_trend_90d",
    "tenure_days", *(f"emotion_{e}_365d" for e in EMOTIONS),
}


def feature_columns() -> list[str]:
    """The names of the feature table's columns, in order (without text: same names)."""
    cols = ["customer_id", "as_of", "frequency", "recency", "T", "monetary_value", "revenue",
            "n_orders", "n_interactions"]
    for w in WINDOWS_DAYS:
        cols += [f"n_inbound_{w}d", f"n_outbound_{w}d"]
    for w in WINDOWS_DAYS:
        cols += [f"n_{ch}_{d}_{w}d" for ch in CHANNELS for d in DIRECTIONS]
    cols += ["channel_breadth_365d", "contacts_365d", "customer_started_share_365d",
             "meetings_365d", "meeting_interval_days", "days_since_customer_contact",
             "customer_turns", "first_response_median_h", "first_response_p90_h",
             "unanswered_inbound", "vendor_contacts_90d", "vendor_contacts_365d",
             "vendor_contact_interval_days", "days_since_vendor_contact",
             "tickets_opened", "tickets_opened_365d", "tickets_open", "ticket_resolve_median_h",
             "tickets_reopened", "tickets_escalated", "n_order_issues", "n_returns",
             "order_issues_per_order", "returns_per_order", "days_to_first_order",
             "scored_messages_365d", "sentiment_90d", "sentiment_365d", "sentiment_trend_90d",
             *(f"emotion_{e}_365d" for e in EMOTIONS), "competitor_mentions_365d",
             "switch_intent_365d", "first_contact_at", "account_opened_at", "first_order_at",
             "tenure_days"]
    return cols
