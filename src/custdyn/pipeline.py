"""Orchestration over a workspace: the steps that use several rooms at once.

``enrich`` scores the text of interactions that have no ``text_signals`` row for the chosen
engine yet, committing batch by batch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from custdyn.store import Workspace


@dataclass
class EnrichResult:
    """What one ``enrich`` run did."""

    engine: str
    pending: int
    scored: int
    already_scored: int
    seconds: float


def pending_texts(ws: Workspace, engine_version: str, directions: tuple[str, ...]) -> int:
    """How many interactions with text still lack a signal row for ``engine_version``."""
    row = ws.con.execute(_PENDING_COUNT.format(dirs=_dirs(directions)), [engine_version]).fetchone()
    return int(row[0]) if row else 0


_PENDING = """
    SELECT i.interaction_id, i.text, c.language
    FROM interactions i LEFT JOIN customers c ON c.customer_id = i.customer_id
    WHERE i.text IS NOT NULL AND length(trim(i.text)) > 0
      AND (i.direction IS NULL OR i.direction IN ({dirs}))
      AND NOT EXISTS (SELECT 1 FROM text_signals s
                      WHERE s.interaction_id = i.interaction_id AND s.engine = ?)
    ORDER BY i.occurred_at, i.interaction_id
"""
_PENDING_COUNT = """
    SELECT count(*) FROM interactions i
    WHERE i.text IS NOT NULL AND length(trim(i.text)) > 0
      AND (i.direction IS NULL OR i.direction IN ({dirs}))
      AND NOT EXISTS (SELECT 1 FROM text_signals s
                      WHERE s.interaction_id = i.interaction_id AND s.engine = ?)
"""


def _dirs(directions: tuple[str, ...]) -> str:
    return ", ".join("'" + d.replace("'", "''") + "'" for d in directions)


def enrich(
    ws: Workspace,
    engine: str = "default",
    *,
    directions: tuple[str, ...] = ("inbound",),
    batch_size: int = 512,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EnrichResult:
    """Score interactions' text with a text engine; only what is not yet scored.

    Parameters
    ----------
    engine : a text engine name (``default``, ``bulk``, ``hf:PATH``, ``onnx:PATH``).
    directions : which messages to score; by default the customers' own (inbound, plus
        records without a direction).
    batch_size : texts per committed batch (an interrupted run loses at most one batch).
    limit : score at most this many (for a quick look).
    progress : called as ``progress(done, total)`` after each batch.
    """
    import time

    from custdyn.text import CompetitorMatcher, TextAnalyzer, enrich_batches

    t0 = time.perf_counter()
    analyzer = TextAnalyzer(engine)
    version = analyzer.version
    total = pending_texts(ws, version, directions)
    already = int(ws.con.execute(
        "SELECT count(*) FROM text_signals WHERE engine = ?", [version]).fetchone()[0])  # type: ignore[index]
    if limit is not None:
        total = min(total, limit)
    matcher = CompetitorMatcher(ws.settings.competitors) if ws.settings.competitors else None
    done = 0

    def rows() -> Iterator[tuple[str, str, str | None]]:
        reader = ws.con.cursor()  # a second cursor reads while the first one writes
        reader.execute(_PENDING.format(dirs=_dirs(directions)), [version])
        n = 0
        while True:
            chunk = reader.fetchmany(batch_size)
            if not chunk:
                break
            for r in chunk:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield r[0], r[1], r[2]

    for table in enrich_batches(rows(), analyzer, matcher=matcher, batch_size=batch_size):
        ws.con.execute("BEGIN TRANSACTION")
        ws.con.register("_signals", table)
        ws.con.execute("INSERT OR IGNORE INTO text_signals SELECT * FROM _signals")
        ws.con.unregister("_signals")
        ws.con.execute("COMMIT")
        done += table.num_rows
        if progress:
            progress(done, total)
    return EnrichResult(version, total, done, already, time.perf_counter() - t0)


def text_summary(ws: Workspace, engine: str | None = None) -> dict[str, Any]:
    """Counts of scored texts by engine, language and sentiment."""
    where = "WHERE engine = ?" if engine else ""
    params = [engine] if engine else []
    rows = ws.con.execute(
        f"""SELECT engine, language, sentiment, count(*) FROM text_signals {where}
        GROUP BY ALL ORDER BY 1, 2, 3""", params).fetchall()
    out: dict[str, Any] = {}
    for eng, lang, sent, n in rows:
        out.setdefault(eng, {}).setdefault(lang or "?", {})[sent or "?"] = int(n)
    return out


# =========================================================================== analyze
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
ID_COLUMNS = ("customer_id", "as_of")


@dataclass
class AnalysisResult:
    """What :func:`analyze` produced (also written to ``scores`` and ``model_runs``)."""

    as_of: Any
    run_id: str
    reused: bool
    n_customers: int
    purchase_model: str | None
    model_comparison: list[dict[str, Any]]
    backtest: list[dict[str, Any]]
    quadrants: list[dict[str, Any]]
    stages: dict[str, int]
    warnings: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def _as_utc(value: Any) -> Any:
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def default_as_of(ws: Workspace) -> Any:
    """Midnight UTC after the last interaction in the workspace."""
    import datetime as dt

    last = ws.con.execute("SELECT max(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
    if last is None:
        from custdyn.errors import CustdynError

        raise CustdynError("the workspace has no interactions yet; ingest some first")
    last = last.astimezone(dt.UTC)
    return dt.datetime(last.year, last.month, last.day, tzinfo=dt.UTC) + dt.timedelta(days=1)


def _fingerprint(ws: Workspace, as_of: Any, settings_key: str) -> str:
    import hashlib

    row = ws.con.execute(
        "SELECT count(*), max(batch_id), (SELECT count(*) FROM text_signals), "
        "(SELECT max(batch_id) FROM customers) FROM interactions").fetchone()
    return hashlib.sha256(f"{row}|{as_of.isoformat()}|{settings_key}".encode()).hexdigest()[:24]


def _numeric_matrix(table: Any, exclude: tuple[str, ...] = ()) -> tuple[Any, list[str]]:
    """The numeric feature columns of an Arrow table as a float matrix (NaN for nulls)."""
    import numpy as np
    import pyarrow as pa

    names, cols = [], []
    for f in table.schema:
        if f.name in ID_COLUMNS or f.name in exclude:
            continue
        if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(
                f.type) or pa.types.is_boolean(f.type):
            arr = table.column(f.name).cast(pa.float64()).to_numpy(zero_copy_only=False)
            names.append(f.name)
            cols.append(np.asarray(arr, dtype=float))
    return (np.column_stack(cols) if cols else np.empty((table.num_rows, 0))), names


def _col(table: Any, name: str) -> Any:
    import numpy as np
    import pyarrow as pa

    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    c = table.column(name)
    if pa.types.is_timestamp(c.type):
        return c
    return np.asarray(c.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


def _days_since(ts_col: Any, as_of: Any) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(ts_col, pa.ChunkedArray | pa.Array):
        return np.full(len(ts_col), np.nan)
    secs = pc.divide(pc.cast(pc.subtract(pa.scalar(as_of, ts_col.type), ts_col), pa.int64()),
                     1_000_000)
    return np.asarray(pc.cast(secs, pa.float64()).to_numpy(zero_copy_only=False)) / 86400.0


def _naive(ts: Any) -> Any:
    """A UTC datetime without its zone (what the numpy-level models take)."""
    import datetime as dt

    return ts.astimezone(dt.UTC).replace(tzinfo=None)


class _PurchaseModels:
    """BG/NBD, MBG/NBD and Pareto/NBD compared on a holdout; the winner refitted; Gamma-Gamma."""

    CANDIDATES = ("BetaGeo", "ModifiedBetaGeo", "ParetoNBD")

    def __init__(self, ws: Workspace, as_of: Any, warnings: list[str]) -> None:
        self.ws, self.as_of, self.warnings = ws, as_of, warnings
        self.kinds = tuple(ws.settings.purchase_kinds)
        self.comparison: list[dict[str, Any]] = []
        self.model: Any = None
        self.spend: Any = None
        self.rfm: Any = None

    def transactions(self, end: Any) -> Any:
        kinds = ", ".join("'" + k.replace("'", "''") + "'" for k in self.kinds)
        return self.ws.query(
            "SELECT customer_id, CAST(timezone('UTC', occurred_at) AS TIMESTAMP) AS occurred_at, "
            f"CAST(amount AS DOUBLE) AS amount FROM interactions "
            f"WHERE kind IN ({kinds}) AND occurred_at < ? ORDER BY customer_id, occurred_at",
            [end])

    def fit(self) -> bool:
        import datetime as dt
        import warnings

        import numpy as np

        from custdyn import models as m
        from custdyn.errors import ConvergenceWarning

        tx = self.transactions(self.as_of)
        if tx.num_rows == 0:
            self.warnings.append("no purchases before as_of: the purchase models were skipped; "
                                 "p_alive, expected purchases and CLV are empty")
            return False
        first = min(tx.column("occurred_at").to_pylist()).replace(tzinfo=dt.UTC)
        span_weeks = (self.as_of - first).total_seconds() / 86400 / 7
        holdout_weeks = float(min(52.0, max(4.0, 0.3 * span_weeks)))
        cal_end = self.as_of - dt.timedelta(weeks=holdout_weeks)
        classes = {n: getattr(m, n) for n in self.CANDIDATES}
        best, best_key = None, None
        try:
            cal = m.rfm_summary(tx, "customer_id", "occurred_at", "amount",
                                observation_end=_naive(self.as_of),
                                calibration_end=_naive(cal_end))
            f, r, T = (np.asarray(cal[c], dtype=float) for c in ("frequency", "recency", "T"))
            fh = np.asarray(cal["frequency_holdout"], dtype=float)
            dh = np.asarray(cal["duration_holdout"], dtype=float)
        except Exception as e:  # noqa: BLE001 - thin data must not stop the run
            self.warnings.append(f"holdout comparison skipped ({e})")
            cal = None
        if cal is not None and len(f) >= 20:
            for name, cls in classes.items():
                try:
                    with warnings.catch_warnings():  # convergence is in the comparison row
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        mod = cls().fit(f, r, T)
                    pred = mod.conditional_expected_purchases(dh, f, r, T)
                    err = float(np.sqrt(np.mean((pred - fh) ** 2)))
                    row: dict[str, Any] = {"model": name, "holdout_rmse": err,
                           "holdout_mae": float(np.mean(np.abs(pred - fh))),
                           "aic": float(mod.aic_), "log_likelihood": float(mod.log_likelihood_),
                           "converged": bool(mod.converged_), "holdout_weeks": holdout_weeks}
                except Exception as e:  # noqa: BLE001
                    row = {"model": name, "error": str(e)}
                self.comparison.append(row)
                if "holdout_rmse" in row and row["converged"]:
                    key = (round(float(row["holdout_rmse"]), 4), float(row["aic"]))
                    if best_key is None or key < best_key:
                        best, best_key = name, key
        best = best or "BetaGeo"
        self.rfm = m.rfm_summary(tx, "customer_id", "occurred_at", "amount",
                                 observation_end=_naive(self.as_of))
        f = np.asarray(self.rfm["frequency"], dtype=float)
        r = np.asarray(self.rfm["recency"], dtype=float)
        T = np.asarray(self.rfm["T"], dtype=float)
        self.model = classes[best]().fit(f, r, T)
        mv = np.asarray(self.rfm["monetary_value"], dtype=float)
        repeat = (f > 0) & (mv > 0)
        if repeat.sum() >= 20:
            try:
                self.spend = m.GammaGamma().fit(f[repeat], mv[repeat])
            except Exception as e:  # noqa: BLE001
                self.warnings.append(f"spend model skipped ({e})")
        else:
            self.warnings.append("fewer than 20 repeat customers: CLV uses mean spend as is")
        return True

    def predict(self) -> dict[str, Any]:
        """Per-customer p_alive, expected purchases (90 and 365 days) and CLV with interval."""
        import numpy as np

        from custdyn import models as m

        f = np.asarray(self.rfm["frequency"], dtype=float)
        r = np.asarray(self.rfm["recency"], dtype=float)
        T = np.asarray(self.rfm["T"], dtype=float)
        ids = [str(x) for x in (self.rfm.index if hasattr(self.rfm, "index") else
                                self.rfm["customer_id"])]
        out = {
            "customer_id": ids,
            "p_alive": self.model.p_alive(f, r, T),
            "expected_purchases_90d": self.model.conditional_expected_purchases(90 / 7, f, r, T),
            "expected_purchases_365d": self.model.conditional_expected_purchases(
                365 / 7, f, r, T),
        }
        try:
            v = m.clv(self.model, self.spend, self.rfm, horizon=12, discount_rate=0.01,
                      time_unit="W", n_draws=50)
            out["clv"] = np.asarray(v["clv"], dtype=float)
            out["clv_lower"] = np.asarray(v["clv_lower"], dtype=float) if "clv_lower" in v \
                else np.full(len(ids), np.nan)
            out["clv_upper"] = np.asarray(v["clv_upper"], dtype=float) if "clv_upper" in v \
                else np.full(len(ids), np.nan)
        except Exception as e:  # noqa: BLE001
            self.warnings.append(f"CLV skipped ({e})")
            out["clv"] = out["clv_lower"] = out["clv_upper"] = np.full(len(ids), np.nan)
        return out


#: Defection labels (``[risk] label``): no purchase and no contact of the customer's own in
#: the next H days (default), or no purchase in the next H days (complaints and goodbyes do
#: not count as staying). An explicit cancellation is a defection under either.
RISK_LABELS = ("no_activity", "no_purchase")


def _activity_labels(ws: Workspace, ids: list[str], start: Any, end: Any) -> Any:
    """1 for customers who defected in [start, end) by the ``[risk] label`` rule, else 0."""
    import numpy as np

    from custdyn.errors import CustdynError

    rule = ws.settings.extra.get("risk", {}).get("label", "no_activity")
    if rule not in RISK_LABELS:
        raise CustdynError(f"[risk] label = {rule!r}; allowed: {', '.join(RISK_LABELS)}")
    kinds = ", ".join("'" + k.replace("'", "''") + "'" for k in ws.settings.purchase_kinds)
    contact = " OR direction = 'inbound'" if rule == "no_activity" else ""
    active = {r[0] for r in ws.con.execute(
        f"""SELECT DISTINCT customer_id FROM interactions
        WHERE occurred_at >= ? AND occurred_at < ?
          AND (kind IN ({kinds}){contact})""",
        [start, end]).fetchall()}
    cancelled = {r[0] for r in ws.con.execute(
        "SELECT DISTINCT customer_id FROM interactions WHERE kind = 'cancellation' "
        "AND occurred_at >= ? AND occurred_at < ?", [start, end]).fetchall()}
    active -= cancelled  # an explicit cancellation is a defection whatever else happened
    return np.array([0.0 if c in active else 1.0 for c in ids])


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
        [kinds, as_of - dt.timedelta(days=365), as_of]).fetchall()
    got = {r[0]: r[1:] for r in rows}
    n = len(ids)
    regularity = np.full(n, np.nan)
    survey = np.zeros(n)
    rate: dict[str, float] = {}
    if pm is not None and pm.model is not None and pm.rfm is not None:
        p = pm.model.params_
        f = np.asarray(pm.rfm["frequency"], dtype=float)
        T = np.asarray(pm.rfm["T"], dtype=float)
        keys = [str(x) for x in (pm.rfm.index if hasattr(pm.rfm, "index")
                                 else pm.rfm["customer_id"])]
        lam = (p["r"] + f) / (p["alpha"] + T)  # posterior mean purchase rate per week
        rate = dict(zip(keys, lam * np.minimum(T, 52.0), strict=True))
    for i, c in enumerate(ids):
        days, answered, asked = got.get(c, (0, 0, 0))
        exp = rate.get(c)
        if exp is not None and exp > 0:
            regularity[i] = days / exp
        survey[i] = min(1.0, answered / asked) if asked else (1.0 if answered else 0.0)
    return {"purchase_regularity": regularity, "survey_response_rate": survey}


def _risk_snapshot(ws: Workspace, at: Any, horizon_days: float, with_label: bool,
                   p_alive_cache: dict[Any, dict[str, float]], active_within_days: float,
                   feats: Any = None) -> Any:
    """Features, P(alive) and (optionally) the defection label at ``at`` for the customers
    who can still drift away."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa

    import custdyn.features as cf

    feats = cf.features(ws, at) if feats is None else feats
    # who can still drift away: customers with a purchase who were active (a purchase or a
    # contact of their own) within ``active_within_days`` before ``at``
    recent = np.minimum(
        np.nan_to_num(np.asarray(_col(feats, "days_since_customer_contact"), dtype=float),
                      nan=np.inf),
        np.nan_to_num((np.asarray(_col(feats, "T"), dtype=float)
                       - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0, nan=np.inf))
    keep = (np.asarray(_col(feats, "n_orders"), dtype=float) > 0) & (recent < active_within_days)
    feats = feats.filter(pa.array(keep))
    ids = [str(x) for x in feats.column("customer_id").to_pylist()]
    if at not in p_alive_cache:
        pm = _PurchaseModels(ws, at, [])
        if pm.fit():
            pr = pm.predict()
            p_alive_cache[at] = dict(zip(pr["customer_id"], pr["p_alive"], strict=True))
        else:
            p_alive_cache[at] = {}
    pa_map = p_alive_cache[at]
    p_alive = np.array([pa_map.get(c, np.nan) for c in ids])
    X, names = _numeric_matrix(feats)
    X = np.column_stack([X, p_alive])
    names = [*names, "p_alive"]
    y = _activity_labels(ws, ids, at, at + dt.timedelta(days=horizon_days)) if with_label \
        else None
    days_since_purchase = (np.asarray(_col(feats, "T"), dtype=float)
                           - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0
    return ids, X, names, y, {"days since last purchase": days_since_purchase,
                              "1 - P(alive)": 1.0 - p_alive}


def risk_backtest(ws: Workspace, as_of: Any, horizon_days: float = 90.0,
                  active_within_days: float = 365.0, *, first: Any = None,
                  n_snapshots: int = 3) -> tuple[list[Any], Any]:
    """Time-based backtest of the defection model at ``as_of``.

    Snapshots at ``as_of - k*H`` (k = n_snapshots..1) carry the features, P(alive) and the
    outcome over the following H days; the model is fitted on the earlier snapshots whose
    outcome was known by the last one, and scores the last one, beside the two baselines
    (days since the last purchase; 1 - P(alive)). Returns the snapshots and the
    :class:`~custdyn.models.churn.BacktestResult` (None with fewer than two snapshots).
    """
    import datetime as dt

    from custdyn.models.churn import DefectionModel, Snapshot
    from custdyn.models.churn import backtest as run_backtest

    at0 = _as_utc(as_of)
    if first is None:
        first = ws.con.execute("SELECT min(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
    h = dt.timedelta(days=horizon_days)
    cache: dict[Any, dict[str, float]] = {}
    snaps = []
    for steps in range(n_snapshots, 0, -1):
        at = at0 - steps * h
        if first is None or at <= first:
            continue
        sid, X, names, y, base = _risk_snapshot(ws, at, horizon_days, True, cache,
                                                active_within_days)
        snaps.append((at, sid, X, names, y, base))
    if len(snaps) < 2:
        return snaps, None
    names = snaps[-1][3]
    bt = run_backtest([Snapshot(at, X, y, base) for at, _s, X, _n, y, base in snaps],
                      DefectionModel(), horizon=h, feature_names=names)
    return snaps, bt


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


def analyze(
    ws: Workspace,
    as_of: Any = None,
    *,
    text_engine: str | None = None,
    horizon_days: float | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Text signals -> features -> purchase models -> risk -> scores -> stages, at ``as_of``.

    Writes one row per customer to ``scores`` (keyed by customer and ``as_of``) and the
    fitted models to ``model_runs``. A re-run with no new data and the same settings reuses
    what exists (``force=True`` recomputes).

    Parameters
    ----------
    as_of : datetime-like, optional
        The moment described; default midnight after the last interaction.
    text_engine : str, optional
        Engine for messages not yet scored; default the ``[analysis] text_engine`` setting, or
        ``bulk``.
    horizon_days : float, optional
        Defection label: no purchase and no contact from the customer in the next H days
        (default the ``[risk] horizon_days`` setting, or 90).
    progress : called with a short description of each step.
    """
    import datetime as dt
    import json
    import time
    import uuid
    import warnings as pywarnings

    import numpy as np
    import pyarrow as pa

    import custdyn.features as cf
    from custdyn import __version__
    from custdyn.errors import CustdynError, DataWarning
    from custdyn.models.health import Scorecard, quadrants, relationship_scores

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    extra = ws.settings.extra
    text_engine = text_engine or extra.get("analysis", {}).get("text_engine", "bulk")
    horizon = float(horizon_days or extra.get("risk", {}).get("horizon_days", 90))
    active_days = float(extra.get("risk", {}).get("active_within_days", 365))
    as_of = _as_utc(as_of) if as_of is not None else default_as_of(ws)
    first = ws.con.execute("SELECT min(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
    if first is None:
        raise CustdynError("the workspace has no interactions yet; ingest some first")
    if as_of <= first:
        raise CustdynError(
            f"as_of {as_of.date()} is before any data (the first interaction is on "
            f"{first.date()}); choose a later date")
    warnings: list[str] = []

    say("scoring new messages")
    enrich(ws, text_engine)
    settings_key = json.dumps([text_engine, horizon, ws.settings.to_dict()], sort_keys=True,
                              default=str)
    fp = _fingerprint(ws, as_of, settings_key)
    if not force:
        row = ws.con.execute(
            "SELECT run_id, diagnostics FROM model_runs WHERE kind = 'analysis' AND "
            "fingerprint = ? ORDER BY created_at DESC LIMIT 1", [fp]).fetchone()
        if row:
            d = json.loads(row[1])
            d.update(reused=True, seconds=time.perf_counter() - t0, as_of=as_of)
            return AnalysisResult(**{k: d[k] for k in AnalysisResult.__dataclass_fields__})

    say("computing features")
    feats = cf.features(ws, as_of)
    ids = [str(x) for x in feats.column("customer_id").to_pylist()]
    n = len(ids)
    if n == 0:
        raise CustdynError(f"no customer has an interaction before {as_of.date()}")
    if n < 50:
        warnings.append(f"only {n} customers: scores fall back to the scorecard; risk models "
                        "need at least 50")

    say("fitting purchase models")
    pm = _PurchaseModels(ws, as_of, warnings)
    cols: dict[str, Any] = {k: np.full(n, np.nan) for k in (
        "p_alive", "expected_purchases_90d", "expected_purchases_365d", "clv", "clv_lower",
        "clv_upper")}
    if pm.fit():
        pred = pm.predict()
        pos = {c: i for i, c in enumerate(ids)}
        idx = np.array([pos.get(c, -1) for c in pred["customer_id"]])
        ok = idx >= 0
        for k in cols:
            cols[k][idx[ok]] = np.asarray(pred[k], dtype=float)[ok]
    n_orders = np.nan_to_num(np.asarray(_col(feats, "n_orders"), dtype=float), nan=0.0)
    cols["clv"] = np.where(n_orders > 0, cols["clv"], 0.0)

    say("scoring defection risk")
    risk = 1.0 - cols["p_alive"]
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    backtest_rows: list[dict[str, Any]] = []
    h = dt.timedelta(days=horizon)
    risk_quiet = pywarnings.catch_warnings()
    risk_quiet.__enter__()
    pywarnings.simplefilter("ignore", DataWarning)  # dropped constant features: expected
    try:
        from custdyn.models.churn import DefectionModel

        snaps, bt = risk_backtest(ws, as_of, horizon, active_days, first=first)
        if bt is not None:
            backtest_rows = json.loads(bt.metrics.to_json(orient="records", date_format="iso"))
        train = [s for s in snaps if s[0] + h <= as_of]
        if train:
            Xtr = np.vstack([s[2] for s in train])
            ytr = np.concatenate([s[4] for s in train])
            names = train[-1][3]
            model = DefectionModel().fit(Xtr, ytr, feature_names=names)
            sid, Xnow, names_now, _y, _b = _risk_snapshot(
                ws, as_of, horizon, False,
                {as_of: dict(zip(ids, cols["p_alive"], strict=True))}, active_days, feats)
            p = model.predict_proba(Xnow)
            why = model.reasons(Xnow, top=3)
            pos = {c: i for i, c in enumerate(ids)}
            for c, pr, rs in zip(sid, p, why, strict=True):
                i = pos[c]
                risk[i] = float(pr)
                reasons[i] = [{"feature": r.feature, "value": _num(r.value),
                               "contribution": _num(r.contribution)} for r in rs]
        else:
            warnings.append("not enough history for the supervised risk model (needs one "
                            f"horizon of {horizon:.0f} days before as_of): risk = 1 - P(alive)")
    except Exception as e:  # noqa: BLE001 - thin data falls back to P(alive)
        warnings.append(f"supervised risk model skipped ({e}); risk = 1 - P(alive)")
    finally:
        risk_quiet.__exit__(None, None, None)

    say("scoring relationships")
    table = {name: np.asarray(_col(feats, name), dtype=float)
             for name in feats.column_names if name not in ID_COLUMNS
             and not name.endswith("_at")}
    table["p_alive"] = cols["p_alive"]
    table.update(_loyalty_inputs(ws, as_of, ids, pm))
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        rel = relationship_scores(table)
        health_cfg = extra.get("health") or DEFAULT_HEALTH
        card = Scorecard.from_config(health_cfg)
        contrib = card.contributions(table)
        health = contrib.sum(axis=1)
    warnings.extend(sorted({str(w.message) for w in caught}))
    quad = quadrants(rel.loyalty, rel.attention, np.nan_to_num(cols["clv"], nan=0.0))

    say("assigning stages")
    from custdyn.dynamics import assign_stages

    extra_sql = ws.con.execute(
        """SELECT customer_id,
                  bool_or(kind = 'cancellation') AS cancelled,
                  max(gap) AS max_gap_days
           FROM (SELECT customer_id, kind,
                        CASE WHEN kind IN (SELECT unnest(?::VARCHAR[])) THEN
                          date_diff('day', lag(occurred_at) OVER (PARTITION BY customer_id,
                            kind IN (SELECT unnest(?::VARCHAR[])) ORDER BY occurred_at),
                            occurred_at) END AS gap
                 FROM interactions WHERE occurred_at < ?)
           GROUP BY customer_id""",
        [ws.settings.purchase_kinds, ws.settings.purchase_kinds, as_of]).fetchall()
    ex = {r[0]: (bool(r[1]), r[2]) for r in extra_sql}
    stages = assign_stages(
        n_orders=n_orders,
        has_account=[x is not None for x in feats.column("account_opened_at").to_pylist()]
        if "account_opened_at" in feats.column_names else np.zeros(n, bool),
        days_since_account=_days_since(_col(feats, "account_opened_at"), as_of),
        days_since_first_order=_days_since(_col(feats, "first_order_at"), as_of),
        days_since_last_order=(np.asarray(_col(feats, "T"), dtype=float)
                               - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0,
        days_since_customer_contact=_col(feats, "days_since_customer_contact"),
        p_alive=cols["p_alive"],
        defection_risk=risk,
        cancelled=[ex.get(c, (False, None))[0] for c in ids],
        max_gap_days=[float(ex[c][1]) if c in ex and ex[c][1] is not None else np.nan
                      for c in ids],
        rules=extra.get("stages"),
    )

    say("writing scores")
    run_id = "run-" + uuid.uuid4().hex[:12]
    contributions = [
        json.dumps({
            "health": {k: _num(v) for k, v in zip(card.component_names, contrib[i],
                                                    strict=True)},
            "loyalty": {k: _num(v) for k, v in zip(rel.loyalty_components,
                                                     rel.loyalty_contributions[i], strict=True)},
            "attention": {k: _num(v) for k, v in zip(rel.attention_components,
                                                       rel.attention_contributions[i],
                                                       strict=True)},
        })
        for i in range(n)
    ]
    out = pa.table({
        "customer_id": ids,
        "as_of": pa.array([as_of] * n, pa.timestamp("us", tz="UTC")),
        "run_id": [run_id] * n,
        **{k: pa.array(v, pa.float64(), from_pandas=True) for k, v in cols.items()},
        "defection_risk": pa.array(risk, pa.float64(), from_pandas=True),
        "health": pa.array(health, pa.float64(), from_pandas=True),
        "loyalty": pa.array(rel.loyalty, pa.float64(), from_pandas=True),
        "attention": pa.array(rel.attention, pa.float64(), from_pandas=True),
        "quadrant": list(quad.labels),
        "stage": list(stages),
        "reasons": [json.dumps(r) for r in reasons],
        "contributions": contributions,
    })
    quad_rows = json.loads(quad.table.to_json(orient="records"))
    stage_counts = {s: int((stages == s).sum()) for s in sorted(set(stages))}
    result = AnalysisResult(
        as_of=as_of, run_id=run_id, reused=False, n_customers=n,
        purchase_model=type(pm.model).__name__ if pm.model is not None else None,
        model_comparison=pm.comparison, backtest=backtest_rows, quadrants=quad_rows,
        stages=stage_counts, warnings=warnings, seconds=time.perf_counter() - t0)
    con = ws.con
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM scores WHERE as_of = ?", [as_of])
        con.register("_scores", out)
        con.execute("INSERT INTO scores SELECT * FROM _scores")
        con.unregister("_scores")
        now = dt.datetime.now(dt.UTC)
        diag = result.to_dict()
        diag.pop("as_of")
        if pm.model is not None:
            con.execute(
                "INSERT INTO model_runs VALUES (?, ?, ?, 'purchase', ?, ?, ?, ?, ?, ?, ?)",
                [run_id + "-purchase", as_of, now, type(pm.model).__name__,
                 json.dumps({k: _num(v) for k, v in pm.model.params_.items()}),
                 json.dumps({"log_likelihood": _num(pm.model.log_likelihood_),
                             "aic": _num(pm.model.aic_), "converged": bool(pm.model.converged_),
                             "comparison": pm.comparison}),
                 first, as_of, fp, __version__])
        if pm.spend is not None:
            con.execute(
                "INSERT INTO model_runs VALUES (?, ?, ?, 'spend', 'GammaGamma', ?, ?, ?, ?, ?, ?)",
                [run_id + "-spend", as_of, now,
                 json.dumps({k: _num(v) for k, v in pm.spend.params_.items()}),
                 json.dumps({"log_likelihood": _num(pm.spend.log_likelihood_)}),
                 first, as_of, fp, __version__])
        con.execute(
            "INSERT INTO model_runs VALUES (?, ?, ?, 'analysis', 'analyze', ?, ?, ?, ?, ?, ?)",
            [run_id, as_of, now, json.dumps({"text_engine": text_engine,
                                             "horizon_days": horizon}),
             json.dumps(diag, default=str), first, as_of, fp, __version__])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result.seconds = time.perf_counter() - t0
    return result


def _num(v: Any) -> float | None:
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


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
