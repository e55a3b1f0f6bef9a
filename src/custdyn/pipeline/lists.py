"""Ranked lists and flows read from the scores: stage flows, counter-offer alerts, procedures."""

from __future__ import annotations

from typing import Any

from custdyn.pipeline._common import _as_utc, _col, _num, default_as_of
from custdyn.store import Workspace


def stage_flow_table(ws: Workspace, from_as_of: Any = None, to_as_of: Any = None) -> Any:
    """Customers (and CLV) moving between lifecycle stages from one analysis to the next
    (default: the two latest ``as_of`` in ``scores``)."""
    import pyarrow as pa

    from custdyn.dynamics import stage_flows
    from custdyn.errors import CustdynError

    dates = [r[0] for r in ws.con.execute(
        "SELECT DISTINCT as_of FROM scores ORDER BY as_of").fetchall()]
    if to_as_of is None:
        if len(dates) < 2:
            raise CustdynError("flows need two analyses: run `custdyn analyze --as-of DATE` for "
                               "an earlier date too")
        to_as_of = dates[-1]
    to_as_of = _as_utc(to_as_of)
    if from_as_of is None:
        earlier = [d for d in dates if d < to_as_of]
        if not earlier:
            raise CustdynError(f"no analysis before {to_as_of.date()}")
        from_as_of = earlier[-1]
    from_as_of = _as_utc(from_as_of)

    def stages(at: Any) -> tuple[dict[str, str], dict[str, float]]:
        rows = ws.con.execute("SELECT customer_id, stage, clv FROM scores WHERE as_of = ?",
                              [at]).fetchall()
        if not rows:
            raise CustdynError(f"no scores at {at.date()}; run `custdyn analyze --as-of "
                               f"{at.date()}`")
        return {r[0]: r[1] for r in rows}, {r[0]: r[2] or 0.0 for r in rows}

    prev, _ = stages(from_as_of)
    cur, value = stages(to_as_of)
    rows = stage_flows(prev, cur, value)
    t = pa.Table.from_pylist(rows)
    return t.append_column("from_as_of", pa.array([from_as_of] * t.num_rows)).append_column(
        "to_as_of", pa.array([to_as_of] * t.num_rows))


def plot_flows(flows: Any, title: str = "Lifecycle flows") -> Any:
    """A Plotly Sankey of a :func:`stage_flow_table`."""
    import plotly.graph_objects as go

    rows = flows.to_pylist()
    left = sorted({r["from_stage"] for r in rows})
    right = sorted({r["to_stage"] for r in rows})
    labels = [f"{x} (before)" for x in left] + [f"{x} (now)" for x in right]
    return go.Figure(go.Sankey(
        node={"label": labels, "pad": 14},
        link={"source": [left.index(r["from_stage"]) for r in rows],
              "target": [len(left) + right.index(r["to_stage"]) for r in rows],
              "value": [r["customers"] for r in rows],
              "customdata": [r["value"] for r in rows],
              "hovertemplate": "%{value} customers, CLV %{customdata:,.0f}<extra></extra>"},
    )).update_layout(title=title)


def counter_offer_alerts(ws: Workspace, as_of: Any, days: int = 30, limit: int = 50) -> Any:
    """Competitor mentions and intent to switch in the ``days`` before ``as_of``, one row per
    message, ranked by the customer's value at risk (CLV x defection risk at ``as_of``)."""
    import datetime as dt
    import json

    import pyarrow as pa

    at = _as_utc(as_of)
    rows = ws.con.execute(
        """SELECT i.customer_id, i.occurred_at, i.channel, s.mentions, s.intent_to_switch,
                  i.text, sc.clv, sc.defection_risk, sc.clv * sc.defection_risk AS value_at_risk
           FROM text_signals s
           JOIN interactions i ON i.interaction_id = s.interaction_id
           LEFT JOIN scores sc ON sc.customer_id = i.customer_id AND sc.as_of = ?
           WHERE i.occurred_at >= ? AND i.occurred_at < ?
             AND (s.intent_to_switch OR (s.mentions IS NOT NULL AND json_array_length(s.mentions) > 0))
           ORDER BY value_at_risk DESC NULLS LAST, i.occurred_at DESC""",
        [at, at - dt.timedelta(days=days), at]).fetchall()
    seen: set[tuple[str, Any]] = set()
    out = []
    for cid, when, channel, mentions, intent, text, clv, risk, var in rows:
        if (cid, when) in seen:  # the same message scored by several engines
            continue
        seen.add((cid, when))
        hits = json.loads(mentions or "[]")
        out.append({
            "customer_id": cid, "occurred_at": when, "channel": channel,
            "competitor": ", ".join(sorted({h.get("competitor", "") for h in hits})) or None,
            "intent_to_switch": bool(intent),
            "snippet": hits[0]["snippet"] if hits else (text or "")[:160],
            "clv": clv, "defection_risk": risk, "value_at_risk": var,
        })
        if len(out) >= limit:
            break
    if not out:
        return pa.table({k: pa.array([], pa.string()) for k in (
            "customer_id", "occurred_at", "channel", "competitor", "snippet")})
    return pa.Table.from_pylist(out)


#: The procedures whose association with defection ``procedures`` estimates.
PROCEDURES: dict[str, dict[str, Any]] = {
    "slow_first_reply": {"kind": "binary",
                         "description": "whose median first reply took more than 24 hours"},
    "unanswered_messages": {"kind": "continuous", "description": "messages left unanswered",
                            "unit": "of the customer's messages", "per": 0.1},
    "order_problems": {"kind": "continuous", "description": "order problems",
                       "unit": "problems per order", "per": 0.1},
    "returns": {"kind": "continuous", "description": "returns", "unit": "returns per order",
                "per": 0.1},
    "slow_resolution": {"kind": "binary",
                        "description": "whose tickets took more than 72 hours to resolve"},
}


def procedures(ws: Workspace, as_of: Any = None, horizon_days: float = 90.0,
               features: Any = None) -> list[dict[str, Any]]:
    """Hazard ratios of defection for the vendor's procedures (slow first replies, unanswered
    messages, order problems, returns, slow resolution), adjusted for each other and for the
    customer's spend, from a Cox model over customers with a purchase before ``as_of``.

    Defection is the last purchase or contact of the customer's own, when nothing followed
    for ``horizon_days`` before ``as_of``; the others are censored at ``as_of``. Durations run
    from the first purchase, in weeks. Observational: see ``docs/insights.md``.
    """
    import numpy as np

    import custdyn.features as cf
    from custdyn.models.survival import procedure_effects

    at = _as_utc(as_of) if as_of is not None else default_as_of(ws)
    feats = features if features is not None else cf.features(ws, at)
    n_orders = np.nan_to_num(np.asarray(_col(feats, "n_orders"), dtype=float), nan=0.0)
    keep = n_orders > 0
    T = np.asarray(_col(feats, "T"), dtype=float)[keep]
    rec = np.asarray(_col(feats, "recency"), dtype=float)[keep]
    since_purchase = (T - rec) * 7.0
    since_contact = np.nan_to_num(
        np.asarray(_col(feats, "days_since_customer_contact"), dtype=float)[keep], nan=np.inf)
    quiet_days = np.minimum(since_purchase, since_contact)
    event = quiet_days >= horizon_days
    duration = np.where(event, np.maximum(T - quiet_days / 7.0, 0.0), T) + 1.0 / 7.0

    def get(name: str) -> Any:
        return np.asarray(_col(feats, name), dtype=float)[keep]

    frt = get("first_response_median_h")
    resolve = get("ticket_resolve_median_h")
    X = {
        "slow_first_reply": (np.nan_to_num(frt, nan=0.0) > 24).astype(float),
        "unanswered_messages": np.nan_to_num(
            get("unanswered_inbound") / np.maximum(get("customer_turns"), 1.0), nan=0.0),
        "order_problems": np.nan_to_num(get("order_issues_per_order"), nan=0.0),
        "returns": np.nan_to_num(get("returns_per_order"), nan=0.0),
        "slow_resolution": (np.nan_to_num(resolve, nan=0.0) > 72).astype(float),
        "log_spend": np.log1p(np.nan_to_num(get("monetary_value"), nan=0.0)),
    }
    present = {k: v for k, v in PROCEDURES.items() if np.ptp(X[k]) > 0}
    X = {k: v for k, v in X.items() if k in present or k == "log_spend"}
    if not present or event.sum() < 10:
        return []
    effects = procedure_effects(duration, event.astype(float), X, present, penalizer=0.01)
    rows = []
    for e in effects:
        d = e._asdict() if hasattr(e, "_asdict") else dict(vars(e))
        rows.append({k: (_num(v) if isinstance(v, float | np.floating) else v)
                     for k, v in d.items()})
    return rows
