"""Defection risk: labels, past snapshots (on a sample of a large base), the supervised and
survival models, their time-based backtest and the check against a known truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from custdyn.pipeline._common import (
    _align,
    _as_utc,
    _col,
    _num,
    _numeric_matrix,
    _PurchaseModels,
    features_many,
    json_key,
)
from custdyn.store import Workspace

#: Defection labels (``[risk] label``), each read at a snapshot ``at`` with what is known by a
#: later ``cutoff``:
#:
#: - ``gone`` (default): no purchase and no contact of the customer's own from ``at + H`` up
#:   to the cutoff (at least H days), i.e. still gone a horizon after the one asked about.
#:   Customers about to leave are often louder before they go (complaints, competitor talk,
#:   goodbyes), so quiet in the next H days alone mislabels many leavers as stayers; quiet in
#:   the horizon after it marks those who left within H. Needs ``2H`` of hindsight.
#: - ``no_activity``: no purchase and no contact of the customer's own in the next H days.
#: - ``no_purchase``: no purchase in the next H days.
#:
#: An explicit cancellation before the cutoff (``gone``) or within H (the others) is a
#: defection under every rule.
RISK_LABELS = ("gone", "no_activity", "no_purchase")


def _risk_settings(ws: Workspace) -> dict[str, Any]:
    """The ``[risk]`` settings with their defaults, checked."""
    from custdyn.errors import CustdynError

    raw = dict(ws.settings.extra.get("risk", {}))
    out: dict[str, Any] = {
        "label": str(raw.get("label", "gone")),
        "horizon_days": float(raw.get("horizon_days", 90)),
        "active_within_days": float(raw.get("active_within_days", 365)),
        "snapshot_every_days": float(raw.get("snapshot_every_days", 30)),
        "training_snapshots": int(raw.get("training_snapshots", 12)),
        "leaving_features": bool(raw.get("leaving_features", True)),
        "training_customers": int(raw.get("training_customers", 30_000)),
        "training_rows": int(raw.get("training_rows", 150_000)),
        "reasons_for": int(raw.get("reasons_for", 100_000)),
    }
    if out["label"] not in RISK_LABELS:
        raise CustdynError(f"[risk] label = {out['label']!r}; allowed: {', '.join(RISK_LABELS)}")
    if out["snapshot_every_days"] <= 0 or out["training_snapshots"] < 1:
        raise CustdynError("[risk] snapshot_every_days must be > 0 and training_snapshots >= 1")
    return out


def label_lag_days(rule: str, horizon_days: float) -> float:
    """Days of hindsight a label needs after its snapshot (H, or 2H for ``gone``)."""
    return 2.0 * horizon_days if rule == "gone" else horizon_days


def defection_labels(ws: Workspace, ids: list[str], at: Any, horizon_days: float,
                     cutoff: Any, rule: str = "gone") -> Any:
    """1 for customers who defected after ``at`` by ``rule`` (see :data:`RISK_LABELS`), using
    only what happened before ``cutoff``; 0 otherwise."""
    import datetime as dt

    import numpy as np

    from custdyn.errors import CustdynError

    if rule not in RISK_LABELS:
        raise CustdynError(f"[risk] label = {rule!r}; allowed: {', '.join(RISK_LABELS)}")
    h = dt.timedelta(days=horizon_days)
    if cutoff < at + dt.timedelta(days=label_lag_days(rule, horizon_days)):
        raise ValueError(f"the {rule!r} label at {at} is not known by {cutoff}")
    kinds = ", ".join("'" + k.replace("'", "''") + "'" for k in ws.settings.purchase_kinds)
    contact = "" if rule == "no_purchase" else " OR direction = 'inbound'"
    start, end = (at + h, cutoff) if rule == "gone" else (at, at + h)
    active = {r[0] for r in ws.con.execute(
        f"""SELECT DISTINCT customer_id FROM interactions
        WHERE occurred_at >= ? AND occurred_at < ?
          AND (kind IN ({kinds}){contact})""",
        [start, end]).fetchall()}
    cancelled = {r[0] for r in ws.con.execute(
        "SELECT DISTINCT customer_id FROM interactions WHERE kind = 'cancellation' "
        "AND occurred_at >= ? AND occurred_at < ?", [at, end]).fetchall()}
    active -= cancelled  # an explicit cancellation is a defection whatever else happened
    return np.array([0.0 if c in active else 1.0 for c in ids])


#: Signals of a leaving phase, computed from the log and the text signals at ``as_of``:
#: customers about to leave buy less than they used to, complain more, sound more negative,
#: mention competitors or an intent to switch, and have recent order problems or messages
#: left without a reply. Windows in days before ``as_of``.
#:
#: One pass over the last 730 days of the log: ``age`` is whole seconds before ``$at`` in
#: days (epoch arithmetic: ``date_diff`` on zoned timestamps goes through the calendar and
#: costs seconds on millions of rows); rows older than 365 days are kept only where they
#: can matter (competitor talk, an NPS); vendor messages outside threads are left out of
#: the per-customer sums (none of them counts there). The sums are plain aggregates of
#: ``CASE`` expressions (``count(CASE WHEN c THEN 1 END)`` is ``count(*) FILTER (WHERE c)``):
#: DuckDB computes them in one pass, where each ``FILTER`` clause costs a selection of its
#: own (about half the query's time on a million customers). The attributes (an NPS) are
#: read for surveys only, not for every row of the log. ``{signals}`` is the text signals
#: of the busiest engine, one row per interaction.
_LEAVING_SQL = """
WITH {signals},
raw AS (
  SELECT i.customer_id, i.kind, i.direction, i.thread_id, i.nps,
         (epoch_us($at::TIMESTAMPTZ) // 1000000 - epoch_us(i.occurred_at) // 1000000) / 86400.0
           AS age,
         s.sentiment_score AS sent, coalesce(s.intent_to_switch, FALSE) AS intent,
         coalesce(s.mention, FALSE) AS mention,
         list_contains($kinds::VARCHAR[], i.kind) AS is_order,
         i.direction = 'inbound' AS inb
  FROM (SELECT interaction_id, customer_id, kind, direction, thread_id, occurred_at,
               NULL::VARCHAR AS nps
        FROM interactions
        WHERE kind IS DISTINCT FROM 'survey'
          AND occurred_at < $at AND occurred_at >= $at - INTERVAL 730 DAY
        UNION ALL
        SELECT interaction_id, customer_id, kind, direction, thread_id, occurred_at,
               json_extract_string(attributes, '$.nps') AS nps
        FROM interactions
        WHERE kind = 'survey'
          AND occurred_at < $at AND occurred_at >= $at - INTERVAL 730 DAY) i
  LEFT JOIN sig s ON s.interaction_id = i.interaction_id),
ev AS (SELECT * FROM raw WHERE age <= 365 OR nps IS NOT NULL OR (inb AND (mention OR intent))),
thr AS (
  SELECT customer_id, thread_id, min(CASE WHEN inb THEN age END) AS last_in,
         min(CASE WHEN direction = 'outbound' THEN age END) AS last_out
  FROM ev WHERE thread_id IS NOT NULL AND age <= 90 GROUP BY customer_id, thread_id),
unans AS (
  SELECT customer_id, count(*) AS unanswered_90d FROM thr
  WHERE last_in >= 2 AND (last_out IS NULL OR last_out > last_in) GROUP BY customer_id),
agg AS (
SELECT customer_id,
  count(CASE WHEN is_order AND age <= 30 THEN 1 END) AS orders_30d,
  count(CASE WHEN is_order AND age <= 90 THEN 1 END) AS orders_90d,
  count(CASE WHEN is_order AND age > 90 AND age <= 365 THEN 1 END) AS orders_prev_275d,
  count(CASE WHEN inb AND kind = 'feedback' AND age <= 30 THEN 1 END) AS complaints_30d,
  count(CASE WHEN inb AND kind = 'feedback' AND age <= 90 THEN 1 END) AS complaints_90d,
  count(CASE WHEN inb AND kind = 'feedback' AND age > 90 AND age <= 365 THEN 1 END)
    AS complaints_prev_275d,
  count(CASE WHEN inb AND kind IN ('support', 'contact') AND age <= 90 THEN 1 END)
    AS service_messages_90d,
  count(CASE WHEN inb AND sent < -0.2 AND age <= 30 THEN 1 END) AS negative_messages_30d,
  count(CASE WHEN inb AND sent < -0.2 AND age <= 90 THEN 1 END) AS negative_messages_90d,
  avg(CASE WHEN inb AND age <= 30 THEN sent END) AS sentiment_30d_recent,
  avg(CASE WHEN inb AND age <= 90 THEN sent END) AS sentiment_90d_recent,
  avg(CASE WHEN inb AND age > 90 AND age <= 365 THEN sent END) AS sentiment_prev_275d,
  count(CASE WHEN inb AND mention AND age <= 30 THEN 1 END) AS competitor_mentions_30d,
  count(CASE WHEN inb AND mention AND age <= 90 THEN 1 END) AS competitor_mentions_90d,
  count(CASE WHEN inb AND intent AND age <= 90 THEN 1 END) AS switch_intent_90d,
  min(CASE WHEN inb AND (mention OR intent) THEN age END) AS days_since_competitor_talk,
  count(CASE WHEN kind = 'order_issue' AND age <= 90 THEN 1 END) AS order_issues_90d,
  count(CASE WHEN kind = 'return' AND age <= 90 THEN 1 END) AS returns_90d,
  min(CASE WHEN kind = 'survey' AND age <= 180 THEN TRY_CAST(nps AS DOUBLE) END) AS nps_min_180d,
  arg_min(TRY_CAST(nps AS DOUBLE), age) FILTER (WHERE nps IS NOT NULL) AS nps_last
FROM ev WHERE inb OR is_order OR kind IN ('order_issue', 'return', 'survey')
GROUP BY customer_id)
SELECT agg.*, coalesce(unans.unanswered_90d, 0) AS unanswered_90d
FROM agg LEFT JOIN unans USING (customer_id)
"""

#: ``{signals}`` of :data:`_LEAVING_SQL`: the busiest engine's rows (a mention is a
#: non-empty array; ``'[]'`` needs no parsing).
_LEAVING_SIGNALS = """eng AS (SELECT engine FROM text_signals GROUP BY engine
             ORDER BY count(*) DESC, max(scored_at) DESC, engine LIMIT 1),
sig AS (
  SELECT interaction_id, sentiment_score, intent_to_switch,
         CASE WHEN mentions IS NULL OR mentions::VARCHAR = '[]' THEN FALSE
              ELSE coalesce(json_array_length(mentions), 0) > 0 END AS mention
  FROM text_signals WHERE engine = (SELECT engine FROM eng))"""
#: ``{signals}`` of a workspace without text signals.
_LEAVING_NO_SIGNALS = ("sig AS (SELECT NULL::VARCHAR AS interaction_id, "
                       "NULL::FLOAT AS sentiment_score, NULL::BOOLEAN AS intent_to_switch, "
                       "NULL::BOOLEAN AS mention WHERE FALSE)")

#: Columns :func:`leaving_features` adds (beyond those of the query).
LEAVING_DERIVED = ("order_pace_90d", "complaints_change_90d", "sentiment_change_90d")


def leaving_table(ws: Workspace, at: Any) -> Any:
    """The per-customer counts behind :func:`leaving_features` at ``at`` (an Arrow table,
    one row per customer with something to count): what it reads from the log."""
    kinds = list(ws.settings.purchase_kinds)
    has_text = bool(ws.con.execute("SELECT count(*) FROM text_signals").fetchone()[0])  # type: ignore[index]
    sql = _LEAVING_SQL.replace(
        "{signals}", _LEAVING_SIGNALS if has_text else _LEAVING_NO_SIGNALS)
    return ws.con.execute(sql, {"at": at, "kinds": kinds}).to_arrow_table()


def leaving_features(ws: Workspace, at: Any, ids: list[str],
                     table: Any = None) -> dict[str, Any]:
    """Leaving-phase signals per customer at ``at`` (lined up with ``ids``; NaN where a
    customer has nothing to measure). ``table``: :func:`leaving_table` at ``at`` when
    already read (e.g. by the analysis's second thread).

    Counts over the last 30 and 90 days (orders, complaints, service messages, negative
    messages, competitor mentions, intent to switch, order problems, returns, threads whose
    last message is the customer's and is two days or more old), the mean sentiment over the
    last 30 and 90 days and the change against the 275 days before, the lowest and the last
    NPS, days since the customer last mentioned a competitor, and two paces against the
    customer's own past: ``order_pace_90d`` (orders in the last 90 days over the 90-day
    average of the 275 days before, smoothed) and ``complaints_change_90d``.
    """
    import numpy as np

    out = _align(ids, leaving_table(ws, at) if table is None else table)
    names = list(out)
    counts = [k for k in names if not k.startswith(("sentiment", "nps", "days_since"))]
    for k in counts:
        out[k] = np.nan_to_num(out[k], nan=0.0)
    past = out["orders_prev_275d"] * 90.0 / 275.0
    out["order_pace_90d"] = (out["orders_90d"] + 0.5) / (past + 0.5)
    out["complaints_change_90d"] = out["complaints_90d"] - out["complaints_prev_275d"] * 90 / 275
    out["sentiment_change_90d"] = out["sentiment_90d_recent"] - out["sentiment_prev_275d"]
    return out


class RiskSnapshot(NamedTuple):
    """Customers who can still drift away at ``at``, their features and two baseline scores."""

    at: Any
    ids: list[str]
    X: Any
    names: list[str]
    baselines: dict[str, Any]


def _risk_snapshot(ws: Workspace, at: Any, p_alive_cache: dict[Any, Any],
                   active_within_days: float, feats: Any = None,
                   leaving: bool = True, purchase_model: str = "BetaGeo", *,
                   rfm: Any = None, leaving_read: Any = None) -> RiskSnapshot:
    """Features, P(alive) and the baselines at ``at`` for the customers who can still drift
    away: those with a purchase and a purchase or contact of their own within
    ``active_within_days`` before ``at``. ``rfm``: the customers' purchase summary at
    ``at`` when already computed (P(alive) is then fitted on it instead of reading the
    purchases again; the same values). ``leaving_read``: :func:`leaving_table` at ``at``
    when already read."""
    import numpy as np
    import pyarrow as pa

    import custdyn.features as cf

    feats = cf.features(ws, at) if feats is None else feats
    recent = np.minimum(
        np.nan_to_num(np.asarray(_col(feats, "days_since_customer_contact"), dtype=float),
                      nan=np.inf),
        np.nan_to_num((np.asarray(_col(feats, "T"), dtype=float)
                       - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0, nan=np.inf))
    keep = (np.asarray(_col(feats, "n_orders"), dtype=float) > 0) & (recent < active_within_days)
    ids = [str(x) for x in feats.column("customer_id").filter(pa.array(keep)).to_pylist()]
    if at not in p_alive_cache:
        import warnings as pywarnings

        with pywarnings.catch_warnings():
            pywarnings.simplefilter("ignore")
            p_alive_cache[at] = _PurchaseModels(ws, at, []).p_alive_only(purchase_model,
                                                                         rfm=rfm)
    p_alive = _align(ids, p_alive_cache[at])["p_alive"]
    lf = leaving_features(ws, at, ids, leaving_read) if leaving else {}
    lf_names = list(lf)
    # one matrix, filled column by column from the whole table's rows that are kept
    X, names = _numeric_matrix(feats, rows=keep, extra=1 + len(lf))
    X[:, len(names)] = p_alive
    for j, v in enumerate(lf.values()):
        X[:, len(names) + 1 + j] = v
    del lf
    names = [*names, "p_alive", *(f"leaving:{k}" for k in lf_names)]
    days_since_purchase = ((np.asarray(_col(feats, "T"), dtype=float)
                            - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0)[keep]
    return RiskSnapshot(at, ids, X, names, {"days since last purchase": days_since_purchase,
                                            "1 - P(alive)": 1.0 - p_alive})


#: Risk snapshots computed in this process, keyed by workspace, data, settings and date, so
#: a second analysis of the same data (another as_of on the same 30-day grid, the backtest
#: command, the truth check) does not recompute them. Bounded in entries and bytes.
_SNAPSHOT_CACHE: dict[tuple[Any, ...], RiskSnapshot] = {}
_CACHE_MAX_ENTRIES = 48
_CACHE_MAX_BYTES = 512 * 2**20


def _remember(key: tuple[Any, ...], snap: RiskSnapshot) -> None:
    size = int(getattr(snap.X, "nbytes", 0))
    if size > _CACHE_MAX_BYTES // 8:
        return
    _SNAPSHOT_CACHE[key] = snap
    while len(_SNAPSHOT_CACHE) > _CACHE_MAX_ENTRIES or sum(
            int(getattr(v.X, "nbytes", 0)) for v in _SNAPSHOT_CACHE.values()) > _CACHE_MAX_BYTES:
        _SNAPSHOT_CACHE.pop(next(iter(_SNAPSHOT_CACHE)))


def sample_workspace(ws: Workspace, customers: int) -> Workspace | None:
    """A view of about ``customers`` of the workspace's customers, drawn at random
    (a hash of the id, so the same customers every time), or None when the base is not
    larger than that or the workspace computes on Spark.

    The view is a cursor of its own whose temporary ``interactions``, ``customers`` and
    ``text_signals`` tables hold the sampled customers' rows and shadow the workspace's, so
    every query and feature expression runs on it unchanged.
    """
    from custdyn.store import Workspace as _Workspace

    if customers <= 0 or ws.settings.engine != "duckdb":
        return None
    total = int(ws.con.execute(
        "SELECT count(DISTINCT customer_id) FROM interactions").fetchone()[0])  # type: ignore[index]
    if total <= customers:
        return None
    per_million = max(1, int(customers / total * 1_000_000))
    cur = ws.con.cursor()
    db = cur.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    pick = f"hash(customer_id || '/custdyn-risk') % 1000000 < {per_million}"
    cur.execute(f'CREATE OR REPLACE TEMP TABLE interactions AS SELECT * FROM "{db}".main.'
                f"interactions WHERE {pick} ORDER BY customer_id, occurred_at")
    cur.execute(f'CREATE OR REPLACE TEMP TABLE customers AS SELECT * FROM "{db}".main.customers '
                f"WHERE {pick}")
    cur.execute(f'CREATE OR REPLACE TEMP TABLE text_signals AS SELECT * FROM "{db}".main.'
                "text_signals WHERE interaction_id IN (SELECT interaction_id FROM "
                "temp.main.interactions)")
    # writable only for temporary tables (the history's features); it never commits rows to
    # the workspace's own tables
    return _Workspace(ws.path, cur, ws.settings, read_only=False, lock=None)


class RiskHistory:
    """Risk snapshots of one workspace, computed once each and shared by the backtest, the
    production model and the check against a known truth.

    On a large base the history (the training snapshots and the backtest) is computed on a
    random sample of ``[risk] training_customers`` customers (default 30,000): the model's
    fit and its measured accuracy need that many, not millions, and each snapshot costs time
    in proportion to the customers in it. Today's scores (:meth:`score_snapshot`) cover
    every customer.
    """

    #: the customer-base model giving P(alive) at past snapshots (BG/NBD: fast and stable on
    #: the thin early snapshots)
    purchase_model = "BetaGeo"

    def __init__(self, ws: Workspace, first: Any = None, *,
                 sample_customers: int | None = None) -> None:
        self.full = ws
        self.cfg = _risk_settings(ws)
        n = self.cfg["training_customers"] if sample_customers is None else sample_customers
        sample = sample_workspace(ws, n) if n else None
        self.ws = sample if sample is not None else ws
        #: customers in the sample the history is computed on (None: every customer)
        self.sample_customers = (int(self.ws.con.execute(
            "SELECT count(DISTINCT customer_id) FROM interactions").fetchone()[0])  # type: ignore[index]
            if sample is not None else None)
        if first is None:
            first = ws.con.execute("SELECT min(occurred_at) FROM interactions").fetchone()[0]  # type: ignore[index]
        self.first = first
        self.p_alive: dict[Any, Any] = {}
        self.snaps: dict[Any, RiskSnapshot] = {}
        self._data_key: tuple[Any, ...] | None = None

    def _key(self, at: Any) -> tuple[Any, ...]:
        if self._data_key is None:
            self._data_key = (str(getattr(self.ws, "path", "")), self.ws.con.execute(
                "SELECT count(*), max(batch_id), (SELECT count(*) FROM text_signals), "
                "(SELECT count(*) FROM customers) FROM interactions").fetchone(),
                json_key(self.ws.settings.to_dict()), self.sample_customers)
        return (self._data_key, self.cfg["active_within_days"], self.cfg["leaving_features"],
                self.purchase_model, at)

    def snapshot(self, at: Any, feats: Any = None, rfm: Any = None) -> RiskSnapshot:
        """The history's snapshot at ``at`` (of the sample, on a large base; ``rfm``: the
        purchase summary of the same customers at ``at`` when already computed)."""
        if at not in self.snaps:
            key = self._key(at)
            hit = _SNAPSHOT_CACHE.get(key)
            if hit is None:
                hit = _risk_snapshot(self.ws, at, self.p_alive,
                                     self.cfg["active_within_days"], feats,
                                     self.cfg["leaving_features"], self.purchase_model,
                                     rfm=rfm)
                _remember(key, hit)
            self.snaps[at] = hit
        return self.snaps[at]

    def prefetch(self, dates: list[Any]) -> None:
        """Compute the features of the history's snapshots at ``dates`` in one incremental
        pass (:func:`custdyn.features.feature_tables`, in memory) instead of one
        query per date; the snapshots are then built from those rows."""
        need = sorted({d for d in dates if d not in self.snaps
                       and self._key(d) not in _SNAPSHOT_CACHE})
        if len(need) < 3 or self.ws.settings.engine != "duckdb":
            return
        for d, feats in features_many(self.ws, need).items():
            self.snapshot(d, feats)

    def score_snapshot(self, at: Any, feats: Any, rfm: Any = None) -> RiskSnapshot:
        """Every customer who can still drift away at ``at`` (``feats``: the whole base's
        features at ``at``; ``rfm``: the whole base's purchase summary at ``at`` when
        already computed), to be scored by a model fitted on the history."""
        if self.ws is self.full:
            return self.snapshot(at, feats, rfm)
        return _risk_snapshot(self.full, at, {}, self.cfg["active_within_days"], feats,
                              self.cfg["leaving_features"], self.purchase_model, rfm=rfm)

    def close(self) -> None:
        """Drop the sample's temporary tables."""
        if self.ws is not self.full:
            self.ws.con.close()
            self.ws = self.full

    def training_dates(self, cutoff: Any, horizon_days: float) -> list[Any]:
        """Snapshot dates whose label is known by ``cutoff``, newest first: ``cutoff - lag``,
        then every ``snapshot_every_days`` back, at most ``training_snapshots`` of them, none
        before the first interaction (plus 30 days, so there is some history)."""
        import datetime as dt

        lag = label_lag_days(self.cfg["label"], horizon_days)
        every = dt.timedelta(days=self.cfg["snapshot_every_days"])
        out: list[Any] = []
        at = cutoff - dt.timedelta(days=lag)
        while len(out) < self.cfg["training_snapshots"]:
            if self.first is None or at <= self.first + dt.timedelta(days=30):
                break
            out.append(at)
            at = at - every
        return out

    def training_set(self, cutoff: Any, horizon_days: float) -> tuple[list[RiskSnapshot],
                                                                        list[Any]]:
        """Snapshots and their labels (known by ``cutoff``) to fit a model used at cutoff."""
        snaps = [self.snapshot(at) for at in self.training_dates(cutoff, horizon_days)]
        labels = [defection_labels(self.ws, s.ids, s.at, horizon_days, cutoff,
                                   self.cfg["label"]) for s in snaps]
        return snaps, labels


def fit_risk_model(history: RiskHistory, cutoff: Any, horizon_days: float) -> Any:
    """The defection model as it would be fitted at ``cutoff`` (labels known by then), or
    None when there is no snapshot with a known outcome."""
    import numpy as np

    snaps, labels = history.training_set(cutoff, horizon_days)
    if not snaps:
        return None
    keep = _row_caps([len(s.ids) for s in snaps], history.cfg["training_rows"])
    X = np.vstack([s.X[k] for s, k in zip(snaps, keep, strict=True)])
    y = np.concatenate([lab[k] for lab, k in zip(labels, keep, strict=True)])
    return _defection_model(len(y)).fit(X, y, feature_names=snaps[0].names)


def _defection_model(n_rows: int) -> Any:
    """The defection model's settings for ``n_rows`` training rows: three calibration folds
    instead of five on large sets (the calibrator has plenty of rows either way)."""
    from custdyn.models.churn import DefectionModel

    return DefectionModel(n_folds=3 if n_rows > 100_000 else 5)


def _row_caps(sizes: list[int], cap: int, seed: int = 0) -> list[Any]:
    """Row indexes to keep of stacked snapshots of ``sizes`` rows: all of them, or the same
    random share of each snapshot so that about ``cap`` rows remain."""
    import numpy as np

    total = sum(sizes)
    if cap <= 0 or total <= cap:
        return [np.arange(n) for n in sizes]
    rng = np.random.default_rng(seed)
    share = cap / total
    return [np.sort(rng.choice(n, int(round(n * share)), replace=False)) for n in sizes]


#: Covariates of the contractual survival model (snapshot columns; the leaving-phase signals
#: with tenure, P(alive) and the days since the customer's last contact).
CONTRACT_COVARIATES = (
    "tenure_days", "p_alive", "days_since_customer_contact", "leaving:orders_90d",
    "leaving:order_pace_90d", "leaving:complaints_90d", "leaving:competitor_mentions_90d",
    "leaving:switch_intent_90d", "leaving:negative_messages_90d", "leaving:order_issues_90d",
    "leaving:unanswered_90d", "leaving:sentiment_90d_recent", "leaving:nps_last",
)


def contractual_customers(ws: Workspace) -> set[str]:
    """Customers on a contract, who leave with an explicit cancellation: those whose
    ``customers.attributes`` carry ``[risk] contract_attribute`` (default ``plan``) with one of
    ``[risk] contract_values`` (default ``subscription``, ``contract``, ``subscriber``), plus
    everyone with a ``cancellation`` in the log. Empty when no customer is marked: the
    customers who cancelled alone would be a population chosen by its outcome."""
    raw = ws.settings.extra.get("risk", {})
    attr = str(raw.get("contract_attribute", "plan"))
    values = [str(v) for v in raw.get("contract_values", ("subscription", "contract",
                                                           "subscriber"))]
    marked = {str(r[0]) for r in ws.con.execute(
        "SELECT customer_id FROM customers WHERE json_extract_string(attributes, ?) IN "
        "(SELECT unnest(?::VARCHAR[]))", ["$." + attr, values]).fetchall()}
    if not marked:
        return set()
    cancelled = {str(r[0]) for r in ws.con.execute(
        "SELECT DISTINCT customer_id FROM interactions WHERE kind = 'cancellation'").fetchall()}
    return marked | cancelled


@dataclass
class ContractModel:
    """A landmark Cox model of cancellation: at each past snapshot, the contractual customers
    still on contract, followed until they cancelled or the data ended (weeks)."""

    cox: Any
    columns: list[int]
    names: list[str]
    centre: Any
    scale: Any
    fill: Any
    n_rows: int
    n_events: int

    def design(self, X: Any) -> Any:
        import numpy as np

        Z = np.asarray(X, dtype=float)[:, self.columns]
        Z = np.where(np.isfinite(Z), Z, self.fill)
        return (Z - self.centre) / self.scale

    def predict(self, X: Any, horizon_days: float) -> Any:
        """P(cancellation within ``horizon_days``) for snapshot rows."""
        return self.cox.predict_event_probability(self.design(X), 0.0, horizon_days / 7.0)

    def reasons(self, X: Any, top: int = 3) -> list[list[dict[str, Any]]]:
        """Covariates pushing each row's hazard up most (coefficient x standardised value)."""
        import numpy as np

        Z = self.design(X)
        c = Z * np.asarray(self.cox.params_, dtype=float)
        raw = np.asarray(X, dtype=float)[:, self.columns]
        out = []
        for i in range(len(Z)):
            order = [j for j in np.argsort(-c[i]) if c[i, j] > 0][:top]
            out.append([{"feature": self.names[j], "value": _num(raw[i, j]),
                         "contribution": _num(c[i, j])} for j in order])
        return out


def fit_contract_model(history: RiskHistory, cutoff: Any, contract: set[str],
                       horizon_days: float) -> Any:
    """A :class:`ContractModel` from the snapshots before ``cutoff`` (None with fewer than
    ten cancellations or 50 customer-snapshots)."""

    import numpy as np

    from custdyn.models.survival import CoxPH

    ws = history.ws
    cancels: dict[str, list[Any]] = {}
    for cid, when in ws.con.execute(
            "SELECT customer_id, occurred_at FROM interactions WHERE kind = 'cancellation' "
            "AND occurred_at < ? ORDER BY occurred_at", [cutoff]).fetchall():
        cancels.setdefault(str(cid), []).append(when)
    dates = history.training_dates(cutoff, horizon_days)  # the defection model's snapshots
    Xs, durations, events = [], [], []
    for at in dates:
        snap = history.snapshot(at)
        for i, cid in enumerate(snap.ids):
            if cid not in contract:
                continue
            times = cancels.get(cid, [])
            if any(t <= at for t in times):
                continue
            nxt = next((t for t in times if t > at), None)
            end = nxt if nxt is not None else cutoff
            Xs.append(snap.X[i])
            durations.append(max((end - at).total_seconds() / 86400 / 7, 1 / 7))
            events.append(nxt is not None)
    if len(Xs) < 50 or sum(events) < 10:
        return None
    names_all = history.snapshot(dates[0]).names
    cols = [names_all.index(c) for c in CONTRACT_COVARIATES if c in names_all]
    X = np.asarray(Xs, dtype=float)[:, cols]
    fill = np.array([np.nanmedian(x) if np.isfinite(x).any() else 0.0 for x in X.T])
    X = np.where(np.isfinite(X), X, fill)
    centre = X.mean(axis=0)
    scale = X.std(axis=0)
    keep = scale > 0
    cols = [c for c, k in zip(cols, keep, strict=True) if k]
    model = ContractModel(None, cols, [names_all[c] for c in cols], centre[keep], scale[keep],
                          fill[keep], len(Xs), int(sum(events)))
    Z = (X[:, keep] - model.centre) / model.scale
    model.cox = CoxPH(penalizer=0.1).fit(np.asarray(durations), np.asarray(events, dtype=float),
                                         Z, feature_names=model.names)
    return model


def risk_backtest(ws: Workspace, as_of: Any, horizon_days: float = 90.0,
                  active_within_days: float | None = None, *, first: Any = None,
                  history: RiskHistory | None = None) -> tuple[RiskHistory, Any]:
    """Time-based backtest of the defection model at ``as_of``.

    The tested snapshot is the latest whose outcome is known at ``as_of`` (``as_of - H``, or
    ``as_of - 2H`` for the ``gone`` label); the model is fitted on the snapshots before it
    whose outcome was known *by then* (labels read with the data up to the tested date only),
    and scores the tested one beside the two baselines (days since the last purchase;
    1 - P(alive)). Returns the snapshot history (reused by :func:`analyze`) and the
    :class:`~custdyn.models.churn.BacktestResult` (None when there is too little history).
    """
    import datetime as dt

    from custdyn.models.churn import Snapshot
    from custdyn.models.churn import backtest as run_backtest

    at0 = _as_utc(as_of)
    hist = history or RiskHistory(ws, first)
    if active_within_days is not None:
        hist.cfg["active_within_days"] = float(active_within_days)
    lag = dt.timedelta(days=label_lag_days(hist.cfg["label"], horizon_days))
    test_at = at0 - lag
    if hist.first is None or test_at <= hist.first:
        return hist, None
    train, labels = hist.training_set(test_at, horizon_days)
    if not train:
        return hist, None
    test = hist.snapshot(test_at)
    y_test = defection_labels(ws, test.ids, test_at, horizon_days, at0, hist.cfg["label"])
    keep = _row_caps([len(s.ids) for s in train], hist.cfg["training_rows"])
    snaps = [Snapshot(s.at, s.X[k], y[k], {n: v[k] for n, v in s.baselines.items()})
             for s, y, k in zip(train[::-1], labels[::-1], keep[::-1], strict=True)]
    snaps.append(Snapshot(test_at, test.X, y_test, test.baselines))
    bt = run_backtest(snaps, _defection_model(sum(len(k) for k in keep)), horizon=lag,
                      feature_names=test.names)
    return hist, bt


def risk_truth_check(ws: Workspace, truth: Any, as_of: Any = None,
                     horizon_days: float = 90.0, *, history: RiskHistory | None = None,
                     n_bins: int = 10) -> dict[str, Any]:
    """The defection model against a known truth (the demo world's), as used in production.

    At ``as_of`` (default: the end of the simulated period minus the horizon) the model is
    fitted on the snapshots before it with labels read from the data up to ``as_of`` only,
    then scores the customers it would score. The outcome is the truth's: of the scored
    customers still truly a customer at ``as_of``, who truly left within ``horizon_days``.
    The two baselines are scored the same way.

    Parameters
    ----------
    truth : the demo's ``truth`` folder (``custdyn demo`` writes ``DIR/sources/truth``)

    Returns
    -------
    dict with ``as_of``, ``horizon_days``, ``label``, ``n_scored``, ``n`` (truly alive),
    ``positives`` and ``metrics``: one row per scorer (``model``, the baselines) with
    ``roc_auc``, ``pr_auc``, ``lift_top_decile``, ``brier`` and ``ece`` (calibration error; NaN
    for scores that are not probabilities).
    """
    import datetime as dt
    import warnings as pywarnings

    import numpy as np

    from custdyn.demo.truth import defection_truth, truth_end
    from custdyn.errors import CustdynError, DataWarning
    from custdyn.models.metrics import score_report

    at = (_as_utc(as_of) if as_of is not None
          else truth_end(truth) - dt.timedelta(days=horizon_days))
    hist = history or RiskHistory(ws)
    with pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", DataWarning)
        model = fit_risk_model(hist, at, horizon_days)
    if model is None:
        raise CustdynError(f"not enough history before {at.date()} to fit the defection model")
    snap = hist.snapshot(at)
    tr = defection_truth(truth, snap.ids, at, horizon_days)
    keep = tr.alive
    y = tr.defected[keep].astype(float)
    trees = model.predict_proba(snap.X)
    scores = {"model": trees.copy()}
    contract = contractual_customers(ws)
    on = np.array([c in contract for c in snap.ids], dtype=bool)
    cm = fit_contract_model(hist, at, contract, horizon_days) if on.any() else None
    extra_rows: list[dict[str, Any]] = []
    if cm is not None:
        surv = cm.predict(snap.X[on], horizon_days)
        scores["model"][on] = surv
        sub = keep & on
        ys = tr.defected[sub].astype(float)
        if 0 < ys.sum() < len(ys):
            for name, sc in (("contractual: survival model", surv[keep[on]]),
                             ("contractual: trees", trees[sub])):
                extra_rows.append({"scorer": name, **score_report(ys, sc, n_bins=n_bins)})
    for name, b in snap.baselines.items():
        b = np.asarray(b, dtype=float)
        scores[name] = np.where(np.isfinite(b), b, np.nanmax(b) if np.isfinite(b).any() else 0)
    rows = []
    for name, s in scores.items():
        rep = score_report(y, s[keep], n_bins=n_bins)
        rows.append({"scorer": name, **rep})
    rows.extend(extra_rows)
    return {"as_of": at, "horizon_days": horizon_days, "label": hist.cfg["label"],
            "n_scored": len(snap.ids), "n": int(keep.sum()), "positives": int(y.sum()),
            "metrics": rows}


def _fit_risk(ws: Workspace, first: Any, as_of: Any, horizon: float, n: int,
              active_days: float, warnings: list[str]
              ) -> tuple[RiskHistory, Any, Any, set[str], list[dict[str, Any]]]:
    """The risk step's fitting: the snapshot history, the backtest, the defection model and
    (for customers on contract) the survival model. Returns the history (for the learned
    health weights), the two models (None where not fitted), the contractual customers
    and the backtest rows."""
    import datetime as dt
    import json

    history = RiskHistory(ws, first)
    try:
        history.cfg["active_within_days"] = active_days
        label_lag = dt.timedelta(days=label_lag_days(history.cfg["label"], horizon))
        try:  # every past snapshot in one pass; one query per date if that fails
            history.prefetch([*history.training_dates(as_of - label_lag, horizon),
                              as_of - label_lag, *history.training_dates(as_of, horizon)])
        except Exception:  # noqa: BLE001 - the per-date path gives the same rows
            pass
        history, bt = risk_backtest(ws, as_of, horizon, history=history)
        rows = ([] if bt is None else
                json.loads(bt.metrics.to_json(orient="records", date_format="iso")))
        model = fit_risk_model(history, as_of, horizon) if n >= 50 else None
        contract: set[str] = set()
        cm = None
        if model is not None or n >= 50:
            contract = contractual_customers(ws)
            cm = fit_contract_model(history, as_of, contract, horizon) if contract else None
            if cm is None and contract:
                warnings.append("fewer than 10 cancellations in the history: contractual "
                                "customers are scored like the others")
            elif cm is None and ws.con.execute(
                    "SELECT count(*) FROM interactions "
                    "WHERE kind = 'cancellation'").fetchone()[0]:  # type: ignore[index]
                warnings.append("the log has cancellations but no customer is marked as on "
                                "contract ([risk] contract_attribute / contract_values): "
                                "no survival model; cancellations count as defections")
        if model is None and n >= 50:
            lag = label_lag_days(history.cfg["label"], horizon)
            warnings.append("not enough history for the supervised risk model (the "
                            f"{history.cfg['label']!r} label needs {lag:.0f} days before "
                            "as_of): risk = 1 - P(alive)")
        return history, model, cm, contract, rows
    except BaseException:
        history.close()
        raise
