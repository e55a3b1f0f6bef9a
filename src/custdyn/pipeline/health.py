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


def _loyalty_inputs(ws: Workspace, as_of: Any, ids: list[str], pm: Any) -> dict[str, Any]:
    """``purchase_regularity``: purchase days in the last 52 weeks over those the customer-base
    model expects for the customer while alive (posterior mean rate x weeks observed, at most
    52); ``survey_response_rate``: surveys and feedback the customer sent in the last 365 days
    per survey or feedback request the vendor sent (capped at 1; customers never asked count
    1 if they wrote anyway, else 0)."""
    import datetime as dt

    import numpy as np

    kinds = list(ws.settings.purchase_kinds)
    rows = ws.con.execute(
        """SELECT customer_id,
                  count(DISTINCT CAST(occurred_at AS DATE)) FILTER (
                      WHERE kind IN (SELECT unnest(?::VARCHAR[]))) AS purchase_days,
                  count(*) FILTER (WHERE kind IN ('survey', 'feedback')
                                   AND direction = 'inbound') AS answered,
                  count(*) FILTER (WHERE kind IN ('survey', 'feedback')
                                   AND direction = 'outbound') AS asked
           FROM interactions WHERE occurred_at >= ? AND occurred_at < ?
           GROUP BY customer_id""",
        [kinds, as_of - dt.timedelta(days=365), as_of]).to_arrow_table()
    got = _align(ids, rows, fill=0.0)
    days, answered, asked = got["purchase_days"], got["answered"], got["asked"]
    n = len(ids)
    expected = np.full(n, np.nan)
    if pm is not None and pm.model is not None and pm.rfm is not None:
        import pyarrow as pa

        p = pm.model.params_
        f = np.asarray(pm.rfm["frequency"], dtype=float)
        T = np.asarray(pm.rfm["T"], dtype=float)
        keys = pa.array(np.asarray(pm.rfm.index if hasattr(pm.rfm, "index")
                                   else pm.rfm["customer_id"]).astype(str), pa.string())
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


def _health_table(ws: Workspace, at: Any, feats: Any, p_alive: Any, pm: Any) -> dict[str, Any]:
    """The columns a scorecard reads: features, P(alive) and the loyalty inputs."""
    import numpy as np

    ids = [str(x) for x in feats.column("customer_id").to_pylist()]
    table = {name: np.asarray(_col(feats, name), dtype=float)
             for name in feats.column_names if name not in ID_COLUMNS
             and not name.endswith("_at")}
    table["p_alive"] = p_alive
    table.update(_loyalty_inputs(ws, at, ids, pm))
    return table


def health_trend(ws: Workspace, as_of: Any, ids: list[str], health_now: Any, card: Any,
                 days: tuple[float, ...] = (30.0, 90.0),
                 purchase_model: str = "BetaGeo",
                 features_at: dict[Any, Any] | None = None) -> dict[str, Any]:
    """Change of each customer's health over the last ``days``: the score now minus the same
    scorecard's score ``d`` days before (from the features and the ``purchase_model`` fitted
    at that date; NaN for customers not known then or before the first data)."""
    import datetime as dt
    import warnings as pywarnings

    import numpy as np

    import custdyn.features as cf
    from custdyn.models.health import score_trend

    first = ws.con.execute("SELECT min(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
    earlier: dict[str, tuple[Any, Any]] = {}
    out: dict[str, Any] = {}
    for d in days:
        key = f"{d:g}d"
        at = as_of - dt.timedelta(days=d)
        if first is None or at <= first:
            out[key] = np.full(len(ids), np.nan)
            continue
        feats = (features_at or {}).get(at)
        if feats is None:
            feats = cf.features(ws, at)
        then_ids = [str(x) for x in feats.column("customer_id").to_pylist()]
        pm = _PurchaseModels(ws, at, [])
        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            got = pm.p_alive_only(purchase_model)
        p_alive = _align(then_ids, got)["p_alive"]
        table = _health_table(ws, at, feats, p_alive, pm)
        earlier[key] = (then_ids, card.score(table))
    out.update(score_trend(ids, health_now, earlier))
    return out
