"""Orchestration over a workspace: the steps that use several rooms at once.

``enrich`` scores the text of interactions that have no ``text_signals`` row for the chosen
engine yet, committing batch by batch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from custdyn.store import Workspace

_P = ParamSpec("_P")
_R = TypeVar("_R")


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


def resolve_text_engine(ws: Workspace, fallback: str) -> str:
    """The text engine a workspace uses when none is named: the text room's choice
    (``custdyn.text.default_engine_name``, e.g. a trained workspace model) where it offers
    one, else ``fallback``."""
    import custdyn.text as text

    resolver = getattr(text, "default_engine_name", None)
    if resolver is None:
        return fallback
    return str(resolver(ws, fallback=fallback))


def enrich(
    ws: Workspace,
    engine: str | None = None,
    *,
    directions: tuple[str, ...] = ("inbound",),
    batch_size: int | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EnrichResult:
    """Score interactions' text with a text engine; only what is not yet scored.

    Parameters
    ----------
    engine : a text engine name (``default``, ``bulk``, ``hf:PATH``, ``onnx:PATH``); default
        the workspace's own (:func:`resolve_text_engine`), else ``default``.
    directions : which messages to score; by default the customers' own (inbound, plus
        records without a direction).
    batch_size : texts per committed batch (an interrupted run loses at most one batch);
        default 8,192 for the bulk engine (about a second of its work), else 512.
    limit : score at most this many (for a quick look).
    progress : called as ``progress(done, total)`` after each batch.
    """
    import time

    from custdyn.text import CompetitorMatcher, TextAnalyzer, enrich_batches

    t0 = time.perf_counter()
    analyzer = TextAnalyzer(engine or resolve_text_engine(ws, "default"))
    version = analyzer.version
    if batch_size is None:
        batch_size = 8192 if version.startswith("bulk:") else 512
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
    #: seconds spent in each step, in order (empty when the run was reused)
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: the process's peak memory (MiB) at the end of each step
    step_peak_mib: dict[str, float] = field(default_factory=dict)
    #: where the models came from: ``{"run_id", "as_of"}`` of the run that fitted them when
    #: they were kept from an earlier run (``[analysis] refit_every_days``), else None
    models_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def _as_utc(value: Any) -> Any:
    """:func:`custdyn.features.backend.as_utc`, letting ``None`` (no date given) through."""
    from custdyn.features.backend import as_utc

    return None if value is None else as_utc(value)


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


def _numeric_matrix(table: Any, exclude: tuple[str, ...] = (), rows: Any = None,
                    extra: int = 0) -> tuple[Any, list[str]]:
    """The numeric feature columns of an Arrow table as a float matrix (NaN for nulls): of
    the ``rows`` where that boolean mask is true (default all), with ``extra`` more columns
    left for the caller to fill."""
    import numpy as np
    import pyarrow as pa

    names = [f.name for f in table.schema
             if f.name not in ID_COLUMNS and f.name not in exclude
             and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                  or pa.types.is_decimal(f.type) or pa.types.is_boolean(f.type))]
    n = table.num_rows if rows is None else int(np.count_nonzero(rows))
    out = np.empty((n, len(names) + extra))  # filled column by column: no second copy
    for j, name in enumerate(names):
        col = np.asarray(table.column(name).cast(pa.float64()).to_numpy(
            zero_copy_only=False), dtype=float)
        out[:, j] = col if rows is None else col[rows]
    return out, names


def _col(table: Any, name: str) -> Any:
    import numpy as np
    import pyarrow as pa

    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    c = table.column(name)
    if pa.types.is_timestamp(c.type):
        return c
    return np.asarray(c.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


def _align(ids: list[str], table: Any, fill: float = float("nan")) -> dict[str, Any]:
    """The numeric columns of ``table`` (first column: customer ids) lined up with ``ids``
    (``fill`` for customers the table does not have, NaN for its nulls)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    key = table.column(0).cast(pa.string())
    pos = np.asarray(pc.index_in(key, value_set=pa.array(ids, pa.string())).fill_null(-1)
                     .to_numpy(zero_copy_only=False), dtype=np.int64)
    ok = pos >= 0
    out: dict[str, Any] = {}
    for name in table.column_names[1:]:
        vals = np.asarray(table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False),
                          dtype=float)
        col = np.full(len(ids), fill)
        col[pos[ok]] = vals[ok]
        out[name] = col
    return out


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
        #: customers the models were fitted on when a sample was used (else None)
        self.sampled: int | None = None

    def _sample(self, n: int) -> Any:
        """Rows the models are fitted on: all of them, or on a large base a fixed random
        ``[analysis] model_customers`` of them (default 100,000: the parameters of a
        four-parameter model are as good as settled by then; every customer is scored)."""
        import numpy as np

        cap = int(self.ws.settings.extra.get("analysis", {}).get("model_customers", 100_000))
        if cap <= 0 or n <= cap:
            return np.arange(n)
        self.sampled = cap
        return np.sort(np.random.default_rng(20240601).choice(n, cap, replace=False))

    def transactions(self, end: Any) -> Any:
        kinds = ", ".join("'" + k.replace("'", "''") + "'" for k in self.kinds)
        return self.ws.query(
            "SELECT customer_id, CAST(timezone('UTC', occurred_at) AS TIMESTAMP) AS occurred_at, "
            f"CAST(amount AS DOUBLE) AS amount FROM interactions "
            f"WHERE kind IN ({kinds}) AND occurred_at < ? ORDER BY customer_id, occurred_at",
            [end])

    def p_alive_only(self, model: str = "BetaGeo") -> Any:
        """P(alive) per customer from one model fitted at ``as_of`` (no comparison, spend or
        CLV): what the risk snapshots and the health trend need, at a fraction of the cost.
        An Arrow table (``customer_id``, ``p_alive``; line it up with :func:`_align`). Sets
        ``rfm`` and ``model``; no rows when there are no purchases or the fit fails."""
        import numpy as np
        import pyarrow as pa

        from custdyn import models as m

        none = pa.table({"customer_id": pa.array([], pa.string()),
                         "p_alive": pa.array([], pa.float64())})
        tx = self.transactions(self.as_of)
        if tx.num_rows == 0:
            return none
        rfm = m.rfm_summary(tx, "customer_id", "occurred_at", "amount",
                            observation_end=_naive(self.as_of))
        f, r, T = (np.asarray(rfm[c], dtype=float) for c in ("frequency", "recency", "T"))
        ids = rfm.index if hasattr(rfm, "index") else rfm["customer_id"]
        pick = self._sample(len(f))  # fitted on the sample, every customer scored
        try:
            mod = getattr(m, model)().fit(f[pick], r[pick], T[pick])
        except Exception:  # noqa: BLE001 - a thin early snapshot: no P(alive)
            return none
        self.rfm, self.model = rfm, mod
        return pa.table({"customer_id": pa.array(np.asarray(ids).astype(str), pa.string()),
                         "p_alive": np.asarray(mod.p_alive(f, r, T), dtype=float)})

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
            pick = self._sample(len(f))
            f, r, T, fh, dh = f[pick], r[pick], T[pick], fh[pick], dh[pick]
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
        pick = self._sample(len(self.rfm["frequency"]))
        f = np.asarray(self.rfm["frequency"], dtype=float)[pick]
        r = np.asarray(self.rfm["recency"], dtype=float)[pick]
        T = np.asarray(self.rfm["T"], dtype=float)[pick]
        self.model = classes[best]().fit(f, r, T)
        mv = np.asarray(self.rfm["monetary_value"], dtype=float)[pick]
        repeat = (f > 0) & (mv > 0)
        if repeat.sum() >= 20:
            try:
                self.spend = m.GammaGamma().fit(f[repeat], mv[repeat])
            except Exception as e:  # noqa: BLE001
                self.warnings.append(f"spend model skipped ({e})")
        else:
            self.warnings.append("fewer than 20 repeat customers: CLV uses mean spend as is")
        return True

    def reuse(self, model: Any, spend: Any, comparison: list[dict[str, Any]]) -> bool:
        """Take models fitted by an earlier run; only the customers' summaries at ``as_of``
        are computed (what :meth:`predict` needs)."""
        from custdyn import models as m

        tx = self.transactions(self.as_of)
        if tx.num_rows == 0 or model is None:
            return self.fit()
        self.rfm = m.rfm_summary(tx, "customer_id", "occurred_at", "amount",
                                 observation_end=_naive(self.as_of))
        self.model, self.spend, self.comparison = model, spend, list(comparison)
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


#: Signals of a leaving phase, computed from the log and the text signals at ``as_of``:
#: customers about to leave buy less than they used to, complain more, sound more negative,
#: mention competitors or an intent to switch, and have recent order problems or messages
#: left without a reply. Windows in days before ``as_of``.
_LEAVING_SQL = """
WITH eng AS (SELECT engine FROM text_signals GROUP BY engine
             ORDER BY count(*) DESC, engine LIMIT 1),
ev AS (
  SELECT i.customer_id, i.kind, i.direction, i.thread_id, i.attributes,
         i.occurred_at,
         date_diff('second', i.occurred_at, $at) / 86400.0 AS age,
         s.sentiment_score AS sent, coalesce(s.intent_to_switch, FALSE) AS intent,
         coalesce(json_array_length(s.mentions), 0) > 0 AS mention,
         i.kind IN (SELECT unnest($kinds::VARCHAR[])) AS is_order,
         i.direction = 'inbound' AS inb
  FROM interactions i
  LEFT JOIN text_signals s ON s.interaction_id = i.interaction_id
       AND s.engine = (SELECT engine FROM eng)
  WHERE i.occurred_at < $at AND i.occurred_at >= $at - INTERVAL 730 DAY),
thr AS (
  SELECT customer_id, thread_id, min(age) FILTER (WHERE inb) AS last_in,
         min(age) FILTER (WHERE direction = 'outbound') AS last_out
  FROM ev WHERE thread_id IS NOT NULL AND age <= 90 GROUP BY customer_id, thread_id),
unans AS (
  SELECT customer_id, count(*) AS unanswered_90d FROM thr
  WHERE last_in >= 2 AND (last_out IS NULL OR last_out > last_in) GROUP BY customer_id),
agg AS (
SELECT customer_id,
  count(*) FILTER (WHERE is_order AND age <= 30) AS orders_30d,
  count(*) FILTER (WHERE is_order AND age <= 90) AS orders_90d,
  count(*) FILTER (WHERE is_order AND age > 90 AND age <= 365) AS orders_prev_275d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age <= 30) AS complaints_30d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age <= 90) AS complaints_90d,
  count(*) FILTER (WHERE inb AND kind = 'feedback' AND age > 90 AND age <= 365)
    AS complaints_prev_275d,
  count(*) FILTER (WHERE inb AND kind IN ('support', 'contact') AND age <= 90)
    AS service_messages_90d,
  count(*) FILTER (WHERE inb AND sent < -0.2 AND age <= 30) AS negative_messages_30d,
  count(*) FILTER (WHERE inb AND sent < -0.2 AND age <= 90) AS negative_messages_90d,
  avg(sent) FILTER (WHERE inb AND age <= 30) AS sentiment_30d_recent,
  avg(sent) FILTER (WHERE inb AND age <= 90) AS sentiment_90d_recent,
  avg(sent) FILTER (WHERE inb AND age > 90 AND age <= 365) AS sentiment_prev_275d,
  count(*) FILTER (WHERE inb AND mention AND age <= 30) AS competitor_mentions_30d,
  count(*) FILTER (WHERE inb AND mention AND age <= 90) AS competitor_mentions_90d,
  count(*) FILTER (WHERE inb AND intent AND age <= 90) AS switch_intent_90d,
  min(age) FILTER (WHERE inb AND (mention OR intent)) AS days_since_competitor_talk,
  count(*) FILTER (WHERE kind = 'order_issue' AND age <= 90) AS order_issues_90d,
  count(*) FILTER (WHERE kind = 'return' AND age <= 90) AS returns_90d,
  min(TRY_CAST(json_extract_string(attributes, '$.nps') AS DOUBLE))
    FILTER (WHERE kind = 'survey' AND age <= 180) AS nps_min_180d,
  arg_min(TRY_CAST(json_extract_string(attributes, '$.nps') AS DOUBLE), age)
    FILTER (WHERE kind = 'survey' AND json_extract_string(attributes, '$.nps') IS NOT NULL)
    AS nps_last
FROM ev GROUP BY customer_id)
SELECT agg.*, coalesce(unans.unanswered_90d, 0) AS unanswered_90d
FROM agg LEFT JOIN unans USING (customer_id)
"""

#: Columns :func:`leaving_features` adds (beyond those of the query).
LEAVING_DERIVED = ("order_pace_90d", "complaints_change_90d", "sentiment_change_90d")


def leaving_features(ws: Workspace, at: Any, ids: list[str]) -> dict[str, Any]:
    """Leaving-phase signals per customer at ``at`` (lined up with ``ids``; NaN where a
    customer has nothing to measure).

    Counts over the last 30 and 90 days (orders, complaints, service messages, negative
    messages, competitor mentions, intent to switch, order problems, returns, threads whose
    last message is the customer's and is two days or more old), the mean sentiment over the
    last 30 and 90 days and the change against the 275 days before, the lowest and the last
    NPS, days since the customer last mentioned a competitor, and two paces against the
    customer's own past: ``order_pace_90d`` (orders in the last 90 days over the 90-day
    average of the 275 days before, smoothed) and ``complaints_change_90d``.
    """
    import numpy as np

    kinds = list(ws.settings.purchase_kinds)
    has_text = bool(ws.con.execute("SELECT count(*) FROM text_signals").fetchone()[0])  # type: ignore[index]
    sql = _LEAVING_SQL if has_text else _LEAVING_SQL.replace(
        "LEFT JOIN text_signals s ON s.interaction_id = i.interaction_id\n"
        "       AND s.engine = (SELECT engine FROM eng)",
        "LEFT JOIN (SELECT NULL::VARCHAR AS interaction_id, NULL::FLOAT AS sentiment_score, "
        "NULL::BOOLEAN AS intent_to_switch, NULL::JSON AS mentions) s "
        "ON s.interaction_id = i.interaction_id")
    out = _align(ids, ws.con.execute(sql, {"at": at, "kinds": kinds}).to_arrow_table())
    names = list(out)
    counts = [k for k in names if not k.startswith(("sentiment", "nps", "days_since"))]
    for k in counts:
        out[k] = np.nan_to_num(out[k], nan=0.0)
    past = out["orders_prev_275d"] * 90.0 / 275.0
    out["order_pace_90d"] = (out["orders_90d"] + 0.5) / (past + 0.5)
    out["complaints_change_90d"] = out["complaints_90d"] - out["complaints_prev_275d"] * 90 / 275
    out["sentiment_change_90d"] = out["sentiment_90d_recent"] - out["sentiment_prev_275d"]
    return out


def features_many(ws: Workspace, dates: list[Any],
                  columns: dict[Any, list[str]] | None = None) -> dict[Any, Any]:
    """The feature table at each of ``dates`` (``{date: Arrow table}``, rows as
    :func:`custdyn.features.features` gives them), computed in one incremental pass
    (:func:`custdyn.features.feature_tables`) on a DuckDB workspace, else one query per date.
    ``columns`` (``{date: [names]}``) keeps only those columns at the dates it names."""
    import custdyn.features as cf

    dates = sorted(set(dates))
    if len(dates) < 2 or ws.settings.engine != "duckdb":
        out = {d: cf.features(ws, d) for d in dates}
        return {d: t.select([c for c in t.column_names if c in ID_COLUMNS
                             or c in (columns or {}).get(d, t.column_names)])
                for d, t in out.items()}
    got = cf.feature_tables(ws, dates, columns=columns)
    return {d: got[_as_utc(d)] for d in dates}


class RiskSnapshot(NamedTuple):
    """Customers who can still drift away at ``at``, their features and two baseline scores."""

    at: Any
    ids: list[str]
    X: Any
    names: list[str]
    baselines: dict[str, Any]


def _risk_snapshot(ws: Workspace, at: Any, p_alive_cache: dict[Any, Any],
                   active_within_days: float, feats: Any = None,
                   leaving: bool = True, purchase_model: str = "BetaGeo") -> RiskSnapshot:
    """Features, P(alive) and the baselines at ``at`` for the customers who can still drift
    away: those with a purchase and a purchase or contact of their own within
    ``active_within_days`` before ``at``."""
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
            p_alive_cache[at] = _PurchaseModels(ws, at, []).p_alive_only(purchase_model)
    p_alive = _align(ids, p_alive_cache[at])["p_alive"]
    lf = leaving_features(ws, at, ids) if leaving else {}
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


def json_key(d: Any) -> str:
    import json

    return json.dumps(d, sort_keys=True, default=str)


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

    def snapshot(self, at: Any, feats: Any = None) -> RiskSnapshot:
        """The history's snapshot at ``at`` (of the sample, on a large base)."""
        if at not in self.snaps:
            key = self._key(at)
            hit = _SNAPSHOT_CACHE.get(key)
            if hit is None:
                hit = _risk_snapshot(self.ws, at, self.p_alive,
                                     self.cfg["active_within_days"], feats,
                                     self.cfg["leaving_features"], self.purchase_model)
                _remember(key, hit)
            self.snaps[at] = hit
        return self.snaps[at]

    def prefetch(self, dates: list[Any]) -> None:
        """Compute the features of the history's snapshots at ``dates`` in one incremental
        pass (:func:`custdyn.features.snapshots`, into a temporary table) instead of one
        query per date; the snapshots are then built from those rows."""
        need = sorted({d for d in dates if d not in self.snaps
                       and self._key(d) not in _SNAPSHOT_CACHE})
        if len(need) < 3 or self.ws.settings.engine != "duckdb" or self.ws.read_only:
            return
        for d, feats in features_many(self.ws, need).items():
            self.snapshot(d, feats)

    def score_snapshot(self, at: Any, feats: Any) -> RiskSnapshot:
        """Every customer who can still drift away at ``at`` (``feats``: the whole base's
        features at ``at``), to be scored by a model fitted on the history."""
        if self.ws is self.full:
            return self.snapshot(at, feats)
        return _risk_snapshot(self.full, at, {}, self.cfg["active_within_days"], feats,
                              self.cfg["leaving_features"], self.purchase_model)

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


#: Folder (inside the workspace) of the models each analysis fitted, kept for later runs.
FITTED_DIR = "analysis-models"
#: Files kept in :data:`FITTED_DIR` (the newest; older ones are removed).
FITTED_KEEP = 5


@dataclass
class FittedModels:
    """What :func:`analyze` fits, kept so that later runs within ``[analysis]
    refit_every_days`` (default 30) score new data with them instead of refitting: the
    purchase and spend models with their comparison, the defection and survival models with
    their backtest, and the health scorecard (learned weights included)."""

    run_id: str
    as_of: Any
    purchase: Any
    spend: Any
    comparison: list[dict[str, Any]]
    risk: Any
    contract: Any
    card: Any
    backtest: list[dict[str, Any]]
    #: what the fit said (thin data, skipped parts), repeated by the runs that reuse it
    warnings: list[str]


def _refit_every_days(ws: Workspace) -> float:
    return float(ws.settings.extra.get("analysis", {}).get("refit_every_days", 30))


def save_fitted(ws: Workspace, fitted: FittedModels) -> str | None:
    """Write ``fitted`` into the workspace's :data:`FITTED_DIR`; returns its path relative
    to the workspace (None for a workspace without a folder of its own)."""
    import pickle
    from pathlib import Path

    if getattr(ws, "path", None) is None:
        return None
    d = Path(ws.path) / FITTED_DIR
    d.mkdir(exist_ok=True)
    f = d / f"{fitted.run_id}.pkl"
    tmp = f.with_suffix(".tmp")
    try:
        tmp.write_bytes(pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(f)
    except OSError:  # a full or read-only disk: the next run refits
        tmp.unlink(missing_ok=True)
        return None
    for old in sorted(d.glob("*.pkl"), key=lambda x: x.stat().st_mtime)[:-FITTED_KEEP]:
        old.unlink(missing_ok=True)
    return str(f.relative_to(Path(ws.path)))


def load_fitted(ws: Workspace, as_of: Any, settings_hash: str) -> FittedModels | None:
    """The models of the latest analysis with the same settings and custdyn version whose
    ``as_of`` is at most ``[analysis] refit_every_days`` before ``as_of`` (and not after
    it), or None (then the models are fitted afresh)."""
    import datetime as dt
    import json
    import pickle
    from pathlib import Path

    from custdyn import __version__

    days = _refit_every_days(ws)
    if days <= 0 or getattr(ws, "path", None) is None:
        return None
    rows = ws.con.execute(
        "SELECT params FROM model_runs WHERE kind = 'analysis' AND custdyn_version = ? "
        "AND as_of <= ? AND as_of >= ? ORDER BY as_of DESC, created_at DESC",
        [__version__, as_of, as_of - dt.timedelta(days=days)]).fetchall()
    for (params,) in rows:
        p = json.loads(params or "{}")
        if p.get("settings_hash") != settings_hash or not p.get("models_file"):
            continue
        f = Path(ws.path) / p["models_file"]
        try:
            fitted = pickle.loads(f.read_bytes())
        except (OSError, pickle.UnpicklingError, AttributeError, EOFError, ImportError):
            continue  # removed or unreadable: look further back, else refit
        if isinstance(fitted, FittedModels) and fitted.as_of >= as_of - dt.timedelta(days=days):
            return fitted
    return None


def _under_memory_limit(fn: Callable[Concatenate[Workspace, _P], _R]
                        ) -> Callable[Concatenate[Workspace, _P], _R]:
    """Run ``fn(ws, ...)`` with the database inside ``[analysis] memory_limit`` (4GB), and
    its allocator's background threads on: they hand the memory of finished queries back to
    the system within seconds (without them, gigabytes freed by the feature queries stay
    with the process while the models work in numpy)."""
    import functools

    from custdyn.store import memory_limit

    @functools.wraps(fn)
    def run(ws: Workspace, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        limit = str(ws.settings.extra.get("analysis", {}).get("memory_limit", "4GB"))
        row = ws.con.execute("SELECT current_setting('allocator_background_threads')").fetchone()
        before = bool(row and row[0])
        ws.con.execute("SET allocator_background_threads = true")
        try:
            with memory_limit(ws.con, limit):
                return fn(ws, *args, **kwargs)
        finally:
            if not before:
                ws.con.execute("SET allocator_background_threads = false")

    return run


@_under_memory_limit
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
    what exists (``force=True`` recomputes). With new data, the models an analysis fitted
    (purchase, spend, defection, survival, learned health weights; :class:`FittedModels`)
    score it for ``[analysis] refit_every_days`` (default 30) after the ``as_of`` they were
    fitted at, as long as the settings stay the same; then, or with ``force=True``, they
    are fitted again. ``models_from`` in the result names the run that fitted them.

    Parameters
    ----------
    as_of : datetime-like, optional
        The moment described; default midnight after the last interaction.
    text_engine : str, optional
        Engine for messages not yet scored; default the workspace's own engine where the text
        room names one (:func:`resolve_text_engine`), else the ``[analysis] text_engine``
        setting, or ``bulk``.
    horizon_days : float, optional
        Defection horizon H (default the ``[risk] horizon_days`` setting, or 90); the label
        is the ``[risk] label`` setting (:data:`RISK_LABELS`).
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
    from custdyn.features.api import _release_memory
    from custdyn.models.health import Scorecard, quadrants, relationship_scores

    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    peaks: dict[str, float] = {}
    began: dict[str, float] = {}  # the step under way and when it began

    def say(msg: str) -> None:
        now = time.perf_counter()
        for name, at in began.items():
            steps[name] = steps.get(name, 0.0) + now - at
            peaks[name] = _peak_mib()
        began.clear()
        _release_memory()  # what the step freed goes back to the system before the next
        if msg:
            began[msg] = now
            if progress is not None:
                progress(msg)

    extra = ws.settings.extra
    text_engine = text_engine or resolve_text_engine(
        ws, extra.get("analysis", {}).get("text_engine", "bulk"))
    rcfg = _risk_settings(ws)
    health_mode, health_cfg, trend_days = _health_settings(ws)
    horizon = float(horizon_days or rcfg["horizon_days"])
    active_days = rcfg["active_within_days"]
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
            d.update(reused=True, seconds=time.perf_counter() - t0, as_of=as_of, step_seconds={},
                     step_peak_mib={})
            return AnalysisResult(**{k: d[k] for k in AnalysisResult.__dataclass_fields__
                                     if k in d})

    say("computing features")
    trend_at = [as_of - dt.timedelta(days=d) for d in trend_days
                if as_of - dt.timedelta(days=d) > first]
    # the trend's past tables: only the columns the scorecard reads
    needed = sorted(_scorecard_columns(health_cfg))
    many = (features_many(ws, [as_of, *trend_at], columns={d: needed for d in trend_at})
            if trend_at else {})
    feats = many.pop(as_of) if many else cf.features(ws, as_of)
    ids = [str(x) for x in feats.column("customer_id").to_pylist()]
    n = len(ids)
    if n == 0:
        raise CustdynError(f"no customer has an interaction before {as_of.date()}")
    if n < 50:
        warnings.append(f"only {n} customers: scores fall back to the scorecard; risk models "
                        "need at least 50")

    import hashlib

    settings_hash = hashlib.sha256(settings_key.encode()).hexdigest()[:24]
    kept = None if force else load_fitted(ws, as_of, settings_hash)
    if kept is not None:
        warnings.extend(w for w in kept.warnings if w not in warnings)
    say("fitting purchase models" if kept is None else "purchase models (kept)")
    pm = _PurchaseModels(ws, as_of, warnings)
    cols: dict[str, Any] = {k: np.full(n, np.nan) for k in (
        "p_alive", "expected_purchases_90d", "expected_purchases_365d", "clv", "clv_lower",
        "clv_upper")}
    if pm.fit() if kept is None else pm.reuse(kept.purchase, kept.spend, kept.comparison):
        pred = pm.predict()
        pos = {c: i for i, c in enumerate(ids)}
        idx = np.array([pos.get(c, -1) for c in pred["customer_id"]])
        ok = idx >= 0
        for k in cols:
            cols[k][idx[ok]] = np.asarray(pred[k], dtype=float)[ok]
    n_orders = np.nan_to_num(np.asarray(_col(feats, "n_orders"), dtype=float), nan=0.0)
    cols["clv"] = np.where(n_orders > 0, cols["clv"], 0.0)

    say("scoring defection risk")
    fit_warnings_from = len(warnings)
    risk = 1.0 - cols["p_alive"]
    reasons: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    backtest_rows: list[dict[str, Any]] = []
    risk_quiet = pywarnings.catch_warnings()
    risk_quiet.__enter__()
    pywarnings.simplefilter("ignore", DataWarning)  # dropped constant features: expected
    history: RiskHistory | None = None
    model: Any = None
    cm: Any = None
    contract: set[str] = set()
    try:
        if kept is None:
            history, model, cm, contract, backtest_rows = _fit_risk(
                ws, first, as_of, horizon, n, active_days, warnings)
        else:
            model, cm, backtest_rows = kept.risk, kept.contract, kept.backtest
            contract = contractual_customers(ws) if cm is not None else set()
        snap_now: RiskSnapshot | None = None
        if model is not None or cm is not None:
            snap_now = (history.score_snapshot(as_of, feats) if history is not None else
                        _risk_snapshot(ws, as_of, {}, active_days, feats,
                                       rcfg["leaving_features"], RiskHistory.purchase_model))
        pos = {c: i for i, c in enumerate(ids)}
        if model is not None and snap_now is not None:
            step = 100_000  # in slices: the model's working copies stay small
            p = np.concatenate([model.predict_proba(snap_now.X[i:i + step])
                                for i in range(0, max(len(snap_now.ids), 1), step)])
            # reasons (tree contributions) for the riskiest customers: they are what the
            # ranked lists show, and on a large base every customer's would cost minutes
            top_n = rcfg["reasons_for"]
            explain = (np.arange(len(p)) if top_n <= 0 or len(p) <= top_n
                       else np.argsort(-p, kind="stable")[:top_n])
            why = model.reasons(snap_now.X[explain], top=3)
            at_now = np.array([pos[c] for c in snap_now.ids], dtype=np.int64)
            risk[at_now] = p
            for j, rs in zip(explain, why, strict=True):
                reasons[int(at_now[j])] = [{"feature": r.feature, "value": _num(r.value),
                                            "contribution": _num(r.contribution)} for r in rs]
        if cm is not None and snap_now is not None:
            on = np.array([c in contract for c in snap_now.ids], dtype=bool)
            if on.any():
                pc = cm.predict(snap_now.X[on], horizon)
                why_c = cm.reasons(snap_now.X[on], top=3)
                for c, pr, rs in zip(np.asarray(snap_now.ids)[on], pc, why_c, strict=True):
                    risk[pos[c]] = float(pr)
                    reasons[pos[c]] = rs
        del snap_now
    except Exception as e:  # noqa: BLE001 - thin data falls back to P(alive)
        warnings.append(f"supervised risk model skipped ({e}); risk = 1 - P(alive)")
    finally:
        risk_quiet.__exit__(None, None, None)

    say("scoring relationships")
    table = _health_table(ws, as_of, feats, cols["p_alive"], pm)
    with pywarnings.catch_warnings(record=True) as caught:
        pywarnings.simplefilter("always")
        rel = relationship_scores(table)
        card = Scorecard.from_config(health_cfg) if kept is None else kept.card
        if health_mode == "learned" and kept is None:
            if history is not None and n >= 50:
                card = learned_health_card(card, history, as_of, horizon, warnings)
            else:
                warnings.append("learned health needs the risk history and 50 customers; "
                                "the configured weights are used")
        contrib = card.contributions(table)
        health = contrib.sum(axis=1)
    warnings.extend(sorted({str(w.message) for w in caught}))
    if history is not None:
        history.close()
    fit_warnings = warnings[fit_warnings_from:]
    trend: dict[str, Any] = {}
    if trend_days:
        say("health trend")
        try:
            trend = health_trend(ws, as_of, ids, health, card, trend_days,
                                 type(pm.model).__name__ if pm.model is not None
                                 else "BetaGeo", features_at=many)
        except Exception as e:  # noqa: BLE001 - the trend is a nicety; thin data skips it
            warnings.append(f"health trend skipped ({e})")
    quad = quadrants(rel.loyalty, rel.attention, np.nan_to_num(cols["clv"], nan=0.0))

    say("assigning stages")
    from custdyn.dynamics import assign_stages

    ex = _align(ids, ws.con.execute(
        """SELECT customer_id,
                  bool_or(kind = 'cancellation')::DOUBLE AS cancelled,
                  max(gap) AS max_gap_days
           FROM (SELECT customer_id, kind,
                        CASE WHEN kind IN (SELECT unnest(?::VARCHAR[])) THEN
                          date_diff('day', lag(occurred_at) OVER (PARTITION BY customer_id,
                            kind IN (SELECT unnest(?::VARCHAR[])) ORDER BY occurred_at),
                            occurred_at) END AS gap
                 FROM interactions WHERE occurred_at < ?)
           GROUP BY customer_id""",
        [ws.settings.purchase_kinds, ws.settings.purchase_kinds, as_of]).to_arrow_table())
    stages = assign_stages(
        n_orders=n_orders,
        has_account=np.asarray(feats.column("account_opened_at").is_valid(), dtype=bool)
        if "account_opened_at" in feats.column_names else np.zeros(n, bool),
        days_since_account=_days_since(_col(feats, "account_opened_at"), as_of),
        days_since_first_order=_days_since(_col(feats, "first_order_at"), as_of),
        days_since_last_order=(np.asarray(_col(feats, "T"), dtype=float)
                               - np.asarray(_col(feats, "recency"), dtype=float)) * 7.0,
        days_since_customer_contact=_col(feats, "days_since_customer_contact"),
        p_alive=cols["p_alive"],
        defection_risk=risk,
        cancelled=ex["cancelled"] == 1.0,
        max_gap_days=ex["max_gap_days"],
        rules=extra.get("stages"),
    )

    say("writing scores")
    run_id = "run-" + uuid.uuid4().hex[:12]
    contributions = _json_rows(ws.con, {
        "health": dict(zip(card.component_names, contrib.T, strict=True)),
        "loyalty": dict(zip(rel.loyalty_components, np.asarray(rel.loyalty_contributions).T,
                            strict=True)),
        "attention": dict(zip(rel.attention_components,
                              np.asarray(rel.attention_contributions).T, strict=True)),
        "health_trend": trend,
    }, n)
    out = pa.table({
        "customer_id": ids,
        "as_of": pa.repeat(pa.scalar(as_of, pa.timestamp("us", tz="UTC")), n),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
        **{k: pa.array(v, pa.float64(), from_pandas=True) for k, v in cols.items()},
        "defection_risk": pa.array(risk, pa.float64(), from_pandas=True),
        "health": pa.array(health, pa.float64(), from_pandas=True),
        "loyalty": pa.array(rel.loyalty, pa.float64(), from_pandas=True),
        "attention": pa.array(rel.attention, pa.float64(), from_pandas=True),
        "quadrant": list(quad.labels),
        "stage": list(stages),
        "reasons": [json.dumps(r) if r else "[]" for r in reasons],
        "contributions": contributions,
    })
    quad_rows = json.loads(quad.table.to_json(orient="records"))
    warnings = list(dict.fromkeys(warnings))
    stage_counts = {s: int((stages == s).sum()) for s in sorted(set(stages))}
    result = AnalysisResult(
        as_of=as_of, run_id=run_id, reused=False, n_customers=n,
        purchase_model=type(pm.model).__name__ if pm.model is not None else None,
        model_comparison=pm.comparison, backtest=backtest_rows, quadrants=quad_rows,
        stages=stage_counts, warnings=warnings, seconds=time.perf_counter() - t0,
        step_seconds=steps, step_peak_mib=peaks,
        models_from=None if kept is None else {"run_id": kept.run_id,
                                               "as_of": kept.as_of.isoformat()})
    if kept is None:  # kept for the runs of the next [analysis] refit_every_days
        models_file = save_fitted(ws, FittedModels(
            run_id=run_id, as_of=as_of, purchase=pm.model, spend=pm.spend,
            comparison=pm.comparison, risk=model, contract=cm, card=card,
            backtest=backtest_rows, warnings=fit_warnings))
    else:
        models_file = f"{FITTED_DIR}/{kept.run_id}.pkl"
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
            "INSERT INTO model_runs VALUES (?, ?, ?, 'health', ?, ?, ?, ?, ?, ?, ?)",
            [run_id + "-health", as_of, now, f"Scorecard ({health_mode})",
             json.dumps(card.to_config()), json.dumps({"trend_days": list(trend_days)}),
             first, as_of, fp, __version__])
        con.execute(
            "INSERT INTO model_runs VALUES (?, ?, ?, 'analysis', 'analyze', ?, ?, ?, ?, ?, ?)",
            [run_id, as_of, now, json.dumps({"text_engine": text_engine,
                                             "horizon_days": horizon,
                                             "risk_label": rcfg["label"],
                                             "health_mode": health_mode,
                                             "settings_hash": settings_hash,
                                             "models_file": models_file,
                                             "models_from": result.models_from}, default=str),
             json.dumps(diag, default=str), first, as_of, fp, __version__])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    say("")
    result.seconds = time.perf_counter() - t0
    return result


def _peak_mib() -> float:
    """This process's peak resident memory so far, in MiB (0 where it cannot be read)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak) / (2**20 if sys.platform == "darwin" else 1024)
    except (ImportError, OSError):
        return 0.0


def _json_rows(con: Any, groups: dict[str, dict[str, Any]], n: int) -> Any:
    """One JSON object per row, ``{group: {name: value}}``, from columns of ``n`` numbers
    (non-finite values become null), built by the database rather than row by row."""
    import numpy as np
    import pyarrow as pa

    def lit(text: str) -> str:
        return "'" + str(text).replace("'", "''") + "'"

    cols: dict[str, Any] = {"_row": pa.array(np.arange(n, dtype=np.int64))}
    parts = []
    for group, members in groups.items():
        inner = []
        for name, values in members.items():
            v = np.asarray(values, dtype=float).reshape(-1)
            col = f"c{len(cols)}"
            cols[col] = pa.array(np.where(np.isfinite(v), v, np.nan), pa.float64(),
                                 from_pandas=True)
            inner.append(f"{lit(name)}, {col}")
        parts.append(f"{lit(group)}, json_object({', '.join(inner)})")
    cur = con.cursor()
    try:
        cur.register("_json_rows", pa.table(cols))
        out = cur.execute(f"SELECT json_object({', '.join(parts)})::VARCHAR FROM _json_rows "
                          "ORDER BY _row").to_arrow_table().column(0)
    finally:
        cur.close()
    return out


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
