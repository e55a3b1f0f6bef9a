"""Health: the configured or learned scorecard, its inputs and its trend over 30 and 90 days."""

from __future__ import annotations

from typing import Any

from custdyn.pipeline._common import ID_COLUMNS, _align, _col, _PurchaseModels
from custdyn.pipeline.risk import RiskHistory
from custdyn.store import Workspace

#: Health scorecard used when custdyn.toml has no [health] section (components, weights and
#: thresholds as a customer-success team would set them; good -> 1, bad -> 0, linear between).
DEFAULT_HEALTH: dict[str, Any] = {
    "components": [
        {"name": "p_alive", "column": "p_alive", "weight": 0.30, "good": 0.9, "bad": 0.2},
        {"name": "days since the customer's last contact",
         "column": "days_since_customer_contact", "weight": 0.15, "good": 14, "bad": 180},
        {"name": "sentiment (90 days)", "column": "sentiment_90d", "weight": 0.15,
         "good": 0.5, "bad": -0.5},
        {"name": "first reply (median hours)", "column": "first_response_median_h",
         "weight": 0.15, "good": 4, "bad": 72},
        {"name": "messages left unanswered", "column": "unanswered_inbound", "weight": 0.10,
         "good": 0, "bad": 3},
        {"name": "order problems per order", "column": "order_issues_per_order",
         "weight": 0.15, "good": 0.0, "bad": 0.5},
    ]
}


def _day_key(ws: Workspace) -> str:
    """SQL for the calendar day of ``occurred_at`` in the session's zone: whole days since
    the epoch when that zone is UTC (what a workspace connection uses; a cast to DATE on a
    zoned timestamp goes through the calendar, seconds on millions of rows), else the
    cast."""
    zone = ws.con.execute("SELECT current_setting('TimeZone')").fetchone()[0]  # type: ignore[index]
    return ("epoch_us(occurred_at) // 86400000000" if str(zone) in ("UTC", "Etc/UTC")
            else "CAST(occurred_at AS DATE)")


def _loyalty_counts(ws: Workspace, dates: list[Any]) -> dict[Any, Any]:
    """What :func:`_loyalty_inputs` counts over the 365 days before each of ``dates``, in
    one pass over the log: ``{date: Arrow table}`` with ``customer_id``, ``purchase_days``
    (distinct days with a purchase), ``answered`` and ``asked`` (surveys and feedback the
    customer sent, and the vendor sent); customers with none of them are left out."""
    import datetime as dt

    dates = list(dict.fromkeys(dates))
    params: dict[str, Any] = {"kinds": list(ws.settings.purchase_kinds),
                              "lo": min(dates) - dt.timedelta(days=365), "hi": max(dates)}
    days, sent, names = [], [], []
    for k, at in enumerate(dates):
        params[f"lo{k}"], params[f"hi{k}"] = at - dt.timedelta(days=365), at
        # a (customer, day) pair counts if one of its purchases is in the window: with
        # windows longer than a day, if its last is on or after the start and its first
        # before the end
        days.append(f"count(*) FILTER (WHERE last_at >= $lo{k} AND first_at < $hi{k}) "
                    f"AS purchase_days_{k}")
        within = f"occurred_at >= $lo{k} AND occurred_at < $hi{k}"
        sent.append(f"count(*) FILTER (WHERE direction = 'inbound' AND {within}) "
                    f"AS answered_{k}")
        sent.append(f"count(*) FILTER (WHERE direction = 'outbound' AND {within}) "
                    f"AS asked_{k}")
        names.append(k)
    cols = ", ".join(f"coalesce({c}_{k}, 0) AS {c}_{k}" for k in names
                     for c in ("purchase_days", "answered", "asked"))
    sql = f"""
WITH w AS (
  SELECT customer_id, occurred_at, kind, direction FROM interactions
  WHERE occurred_at >= $lo AND occurred_at < $hi
    AND (list_contains($kinds::VARCHAR[], kind) OR kind IN ('survey', 'feedback'))),
pday AS (
  SELECT customer_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at FROM w
  WHERE list_contains($kinds::VARCHAR[], kind)
  GROUP BY customer_id, {_day_key(ws)}),
p AS (SELECT customer_id, {", ".join(days)} FROM pday GROUP BY customer_id),
s AS (SELECT customer_id, {", ".join(sent)} FROM w WHERE kind IN ('survey', 'feedback')
      GROUP BY customer_id)
SELECT customer_id, {cols} FROM p FULL JOIN s USING (customer_id)"""
    got = ws.con.execute(sql, params).to_arrow_table()
    return {at: got.select(["customer_id", f"purchase_days_{k}", f"answered_{k}",
                            f"asked_{k}"]).rename_columns(
        ["customer_id", "purchase_days", "answered", "asked"])
        for k, at in enumerate(dates)}


def _loyalty_inputs(ws: Workspace, as_of: Any, ids: Any, pm: Any,
                    counts: Any = None) -> dict[str, Any]:
    """``purchase_regularity``: purchase days in the last 52 weeks over those the customer-base
    model expects for the customer while alive (posterior mean rate x weeks observed, at most
    52); ``survey_response_rate``: surveys and feedback the customer sent in the last 365 days
    per survey or feedback request the vendor sent (capped at 1; customers never asked count
    1 if they wrote anyway, else 0). ``counts``: this date's table of
    :func:`_loyalty_counts` when already read."""
    import numpy as np

    if counts is None:
        counts = _loyalty_counts(ws, [as_of])[as_of]
    got = _align(ids, counts, fill=0.0)
    days, answered, asked = got["purchase_days"], got["answered"], got["asked"]
    n = len(ids)
    expected = np.full(n, np.nan)
    if pm is not None and pm.model is not None and pm.rfm is not None:
        import pyarrow as pa

        p = pm.model.params_
        f = np.asarray(pm.rfm["frequency"], dtype=float)
        T = np.asarray(pm.rfm["T"], dtype=float)
        keys = (pm.rfm.column(0).cast(pa.string()) if isinstance(pm.rfm, pa.Table) else
                pa.array(np.asarray(pm.rfm.index if hasattr(pm.rfm, "index")
                                    else pm.rfm["customer_id"]).astype(str), pa.string()))
        lam = (p["r"] + f) / (p["alpha"] + T)  # posterior mean purchase rate per week
        expected = _align(ids, pa.table({"customer_id": keys,
                                         "e": lam * np.minimum(T, 52.0)}))["e"]
    with np.errstate(divide="ignore", invalid="ignore"):
        regularity = np.where(expected > 0, days / expected, np.nan)
        survey = np.where(asked > 0, np.minimum(1.0, answered / np.maximum(asked, 1.0)),
                          np.where(answered > 0, 1.0, 0.0))
    return {"purchase_regularity": regularity, "survey_response_rate": survey}


HEALTH_MODES = ("configured", "learned")


def _health_settings(ws: Workspace) -> tuple[str, dict[str, Any], tuple[float, ...]]:
    """``[health]``: the mode (``configured`` or ``learned``), the scorecard configuration
    (the default card's components where none are given) and the trend windows in days."""
    from custdyn.errors import CustdynError

    cfg = dict(ws.settings.extra.get("health") or {})
    mode = str(cfg.pop("mode", "configured"))
    if mode not in HEALTH_MODES:
        raise CustdynError(f"[health] mode = {mode!r}; allowed: {', '.join(HEALTH_MODES)}")
    trend = tuple(float(d) for d in cfg.pop("trend_days", (30, 90)))
    if "components" not in cfg:
        cfg = {**DEFAULT_HEALTH, **cfg}
    return mode, cfg, trend


def learned_health_card(card: Any, history: RiskHistory, as_of: Any, horizon_days: float,
                        warnings: list[str]) -> Any:
    """The scorecard with weights learned from past snapshots against later defection.

    The components (and their good and bad values) are the configured card's; the weights
    are fitted by :class:`~custdyn.models.health.LearnedScorecard` on the snapshots the
    defection model learns from (labels known by ``as_of``). Falls back to the configured
    weights with a warning when that is not possible.
    """
    import warnings as pywarnings

    import numpy as np

    from custdyn.models.health import Component, LearnedScorecard

    try:
        snaps, labels = history.training_set(as_of, horizon_days)
        if not snaps:
            raise ValueError("no past snapshot has a known outcome yet")
        names = snaps[0].names
        X = {k: np.concatenate([s.X[:, j] for s in snaps]) for j, k in enumerate(names)}
        y = np.concatenate(labels)
        comps = [Component.from_dict(c) for c in card.components]
        usable = [c for c in comps if (c.column or c.name) in X
                  and (not c.denominator or c.denominator in X)]
        left_out = [c.name for c in comps if c not in usable]
        if not usable:
            raise ValueError("no component's column is in the snapshots")
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            learned = LearnedScorecard(components=[c.to_dict() for c in usable],
                                       bands=card.bands).fit(X, y)
        if left_out:
            warnings.append(f"learned health: components {left_out} have no history and "
                            "were left out")
        return learned.scorecard_
    except Exception as e:  # noqa: BLE001 - thin data keeps the configured weights
        warnings.append(f"learned health weights skipped ({e}); the configured weights are "
                        "used")
        return card


def _scorecard_columns(config: dict[str, Any]) -> set[str]:
    """The input columns (and denominators) of the configured scorecard's components."""
    from custdyn.models.health import Component, Scorecard

    out: set[str] = set()
    for c in Scorecard.from_config(config).components:
        comp = c if isinstance(c, Component) else Component.from_dict(c)
        out.add(comp.column or comp.name)
        if comp.denominator:
            out.add(comp.denominator)
    return out


def _health_table(ws: Workspace, at: Any, feats: Any, p_alive: Any, pm: Any,
                  counts: Any = None) -> dict[str, Any]:
    """The columns a scorecard reads: features, P(alive) and the loyalty inputs
    (``counts``: the date's :func:`_loyalty_counts` when already read)."""
    import numpy as np

    ids = feats.column("customer_id")
    table = {name: np.asarray(_col(feats, name), dtype=float)
             for name in feats.column_names if name not in ID_COLUMNS
             and not name.endswith("_at")}
    table["p_alive"] = p_alive
    table.update(_loyalty_inputs(ws, at, ids, pm, counts))
    return table


def health_trend(ws: Workspace, as_of: Any, ids: Any, health_now: Any, card: Any,
                 days: tuple[float, ...] = (30.0, 90.0),
                 purchase_model: str = "BetaGeo",
                 features_at: dict[Any, Any] | None = None, *,
                 transactions: Any = None,
                 loyalty: dict[Any, Any] | None = None,
                 p_alive_at: dict[Any, Any] | None = None) -> dict[str, Any]:
    """Change of each customer's health over the last ``days``: the score now minus the same
    scorecard's score ``d`` days before (from the features and the ``purchase_model`` fitted
    at that date; NaN for customers not known then or before the first data).

    What was read already can be passed in (the results are the same): ``features_at``
    (``{date: feature table}``), ``transactions`` (the purchases before ``as_of`` or a later
    date, :meth:`_PurchaseModels.transactions`; each date's are taken from them) and
    ``loyalty`` (``{date: table}`` of :func:`_loyalty_counts`) and ``p_alive_at``
    (``{date: (table, models)}``: :meth:`_PurchaseModels.p_alive_only`'s table with
    ``purchase_model`` at that date, and the models object that made it)."""
    import datetime as dt
    import warnings as pywarnings

    import numpy as np
    import pyarrow as pa

    import custdyn.features as cf

    first = ws.con.execute("SELECT min(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
    out: dict[str, Any] = {}
    now = np.asarray(health_now, dtype=float)
    dates = {f"{d:g}d": as_of - dt.timedelta(days=d) for d in days}
    dates = {k: at for k, at in dates.items() if first is not None and at > first}
    if loyalty is None or any(at not in loyalty for at in dates.values()):
        loyalty = _loyalty_counts(ws, list(dates.values())) if dates else {}
    for d in days:  # the dates before the data first (the order the rows show them in)
        if f"{d:g}d" not in dates:
            out[f"{d:g}d"] = np.full(len(ids), np.nan)
    for key, at in dates.items():
        feats = (features_at or {}).get(at)
        if feats is None:
            feats = cf.features(ws, at)
        then_ids = feats.column("customer_id")
        if p_alive_at is not None and at in p_alive_at:
            got, pm = p_alive_at[at]
        else:
            pm = _PurchaseModels(ws, at, [])
            with pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore")
                got = pm.p_alive_only(purchase_model, transactions=transactions)
        p_alive = _align(then_ids, got)["p_alive"]
        table = _health_table(ws, at, feats, p_alive, pm, loyalty[at])
        then = pa.table({"customer_id": then_ids, "health": card.score(table)})
        # the change against the score then (NaN for customers not known then)
        out[key] = now - _align(ids, then)["health"]
    return out
