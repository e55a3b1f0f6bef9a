"""``analyze``: text signals -> features -> purchase models -> risk -> scores -> stages, and
the models kept between runs."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from custdyn._keys import _positions
from custdyn.pipeline._background import CHOSEN, Background
from custdyn.pipeline._common import (
    _align,
    _as_utc,
    _col,
    _days_since,
    _num,
    default_as_of,
    features_many,
)
from custdyn.pipeline.health import (
    _day_key,
    _health_settings,
    _health_table,
    _scorecard_columns,
    health_trend,
    learned_health_card,
)
from custdyn.pipeline.risk import (
    RiskHistory,
    RiskSnapshot,
    _fit_risk,
    _risk_settings,
    _risk_snapshot,
    contractual_customers,
)
from custdyn.pipeline.text import enrich, resolve_text_engine
from custdyn.store import Workspace, fit_parts_column

_P = ParamSpec("_P")
_R = TypeVar("_R")


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
    #: the text engine that scored the messages (a workspace's taught bulk table, ``bulk``, ...)
    text_engine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


def _fingerprint(ws: Workspace, as_of: Any, settings_key: str) -> str:
    import hashlib

    row = ws.con.execute(
        "SELECT count(*), max(batch_id), (SELECT count(*) FROM text_signals), "
        "(SELECT max(batch_id) FROM customers) FROM interactions").fetchone()
    return hashlib.sha256(f"{row}|{as_of.isoformat()}|{settings_key}".encode()).hexdigest()[:24]


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
    """Run ``fn(ws, ...)`` with the database inside ``[analysis] memory_limit`` (4GB; see
    :func:`custdyn.store.memory_limit`)."""
    import functools

    from custdyn.store import memory_limit

    @functools.wraps(fn)
    def run(ws: Workspace, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        limit = str(ws.settings.extra.get("analysis", {}).get("memory_limit", "4GB"))
        with memory_limit(ws.con, limit):
            return fn(ws, *args, **kwargs)

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
    import hashlib
    import json
    import time
    import uuid
    import warnings as pywarnings

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pa_compute

    from custdyn import __version__
    from custdyn.errors import CustdynError, DataWarning
    from custdyn.models.health import Scorecard, quadrants, relationship_scores
    from custdyn.store import release_memory

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
        release_memory()  # what the step freed goes back to the system before the next
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
    settings_key = json.dumps([text_engine, horizon, ws.settings.to_dict()], sort_keys=True,
                              default=str)
    settings_hash = hashlib.sha256(settings_key.encode()).hexdigest()[:24]
    in_background = bool(extra.get("analysis", {}).get("background", True))
    # the purchase models, the loyalty counts and the stage rules' tables need only the log:
    # they are computed in a second thread. The purchase models read only the purchases:
    # when this run will compute (data came since the last run), they start now, beside
    # the scoring of the new messages
    early: Background | None = None
    kept: FittedModels | None = None
    try:
        if force or ws.latest_run("analysis", _fingerprint(ws, as_of, settings_key)) is None:
            kept = None if force else load_fitted(ws, as_of, settings_hash)
            early = Background(ws, as_of, kept, background=in_background)
        enrich(ws, text_engine)
        fp = _fingerprint(ws, as_of, settings_key)
        run = None if force else ws.latest_run("analysis", fp)
        if run is not None:
            if early is not None:
                early.close()
            d = run[2]
            d.update(reused=True, seconds=time.perf_counter() - t0, as_of=as_of,
                     step_seconds={}, step_peak_mib={}, text_engine=text_engine)
            return AnalysisResult(**{k: d[k] for k in AnalysisResult.__dataclass_fields__
                                     if k in d})
        if early is None:
            kept = None if force else load_fitted(ws, as_of, settings_hash)
        bg = early or Background(ws, as_of, kept, background=in_background)
    except BaseException:
        if early is not None:
            early.close()
        raise

    trend_at = [as_of - dt.timedelta(days=d) for d in trend_days
                if as_of - dt.timedelta(days=d) > first]
    # P(alive) alone at the trend's dates, and, for the kept defection model, today's and
    # the leaving-phase counts: also in the second thread, while the features are computed
    p_alive_at = {d: CHOSEN for d in trend_at}
    scores_kept = kept is not None and (kept.risk is not None or kept.contract is not None)
    if scores_kept:
        p_alive_at[as_of] = RiskHistory.purchase_model
    try:
        bg.rest([as_of, *trend_at], _stage_tables, p_alive_at,
                leaving_at=as_of if scores_kept and rcfg["leaving_features"] else None)
        say("computing features")
        # the trend's past tables: only the columns the scorecard reads
        needed = sorted(_scorecard_columns(health_cfg))
        # with the workspace's rolling feature state: a later run rolls it forward
        many = features_many(ws, [as_of, *trend_at], columns={d: needed for d in trend_at},
                             state=True)
        feats = many.pop(as_of)
        id_arr = feats.column("customer_id").combine_chunks().cast(pa.string())
        ids = id_arr.to_pylist()
        n = len(ids)
        if n == 0:
            raise CustdynError(f"no customer has an interaction before {as_of.date()}")
        if n < 50:
            warnings.append(f"only {n} customers: scores fall back to the scorecard; risk models "
                            "need at least 50")
        if kept is not None:
            warnings.extend(w for w in kept.warnings if w not in warnings)
        say("fitting purchase models" if kept is None else "purchase models (kept)")
        bought = bg.purchase()
        warnings.extend(bg.warnings)
        pm = bought.pm
        pm.warnings = warnings  # what it says later goes with the rest

        def rows_of(customers: Any) -> Any:
            """The row of each customer here (-1 for none)."""
            return _positions(pa.array(customers, pa.string()), id_arr)

        cols: dict[str, Any] = {k: np.full(n, np.nan) for k in (
            "p_alive", "expected_purchases_90d", "expected_purchases_365d", "clv", "clv_lower",
            "clv_upper")}
        if bought.pred is not None:
            pred = bought.pred
            idx = rows_of(pred["customer_id"])
            ok = idx >= 0
            for k in cols:
                cols[k][idx[ok]] = np.asarray(pred[k], dtype=float)[ok]
        n_orders = np.nan_to_num(np.asarray(_col(feats, "n_orders"), dtype=float), nan=0.0)
        cols["clv"] = np.where(n_orders > 0, cols["clv"], 0.0)

        say("scoring defection risk")
        fit_warnings_from = len(warnings)
        risk = 1.0 - cols["p_alive"]
        reasons: dict[int, str] = {}  # JSON by row; the other rows have none
        backtest_rows: list[dict[str, Any]] = []
        risk_quiet = pywarnings.catch_warnings()
        risk_quiet.__enter__()
        pywarnings.simplefilter("ignore", DataWarning)  # dropped constant features: expected
        history: RiskHistory | None = None
        model: Any = None
        cm: Any = None
        contract: set[str] = set()
        supervised: Future[tuple[Any, ...]] | None = None
        contract_risk: tuple[Any, Any, Any] | None = None
        try:
            if kept is None:
                history, model, cm, contract, backtest_rows = _fit_risk(
                    ws, first, as_of, horizon, n, active_days, warnings)
            else:
                model, cm, backtest_rows = kept.risk, kept.contract, kept.backtest
                contract = contractual_customers(ws) if cm is not None else set()
            snap_now: RiskSnapshot | None = None
            if model is not None or cm is not None:
                # P(alive) of the snapshot is fitted on the purchase models' summary at as_of
                snap_now = (history.score_snapshot(as_of, feats, pm.rfm) if history is not None
                            else _risk_snapshot(ws, as_of,
                                                {as_of: bg.p_alive()[as_of][0]},
                                                active_days, feats,
                                                rcfg["leaving_features"],
                                                RiskHistory.purchase_model, rfm=pm.rfm,
                                                leaving_read=bg.leaving()))
            if model is not None and snap_now is not None:
                # scored in a thread of its own while the relationships and the trend are
                # computed (the model's predictions and contributions are numpy and C++);
                # taken, with the contractual customers' survival risk, before the stages
                at_now = rows_of(snap_now.ids)
                scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="custdyn-risk")
                supervised = scoring.submit(_supervised_risk, model, snap_now.X,
                                            rcfg["reasons_for"])
                scoring.shutdown(wait=False)
            if cm is not None and snap_now is not None:
                on = np.array([c in contract for c in snap_now.ids], dtype=bool)
                if on.any():
                    contract_risk = (
                        rows_of(np.asarray(snap_now.ids, dtype=object)[on].tolist()),
                        cm.predict(snap_now.X[on], horizon), cm.reasons(snap_now.X[on], top=3))
            del snap_now
        except Exception as e:  # noqa: BLE001 - thin data falls back to P(alive)
            warnings.append(f"supervised risk model skipped ({e}); risk = 1 - P(alive)")
        finally:
            risk_quiet.__exit__(None, None, None)

        say("scoring relationships")
        # the loyalty counts of today and of the trend's dates in one pass
        loyalty = bg.loyalty()
        table = _health_table(ws, as_of, feats, cols["p_alive"], pm, loyalty[as_of])
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
                trend = health_trend(ws, as_of, id_arr, health, card, trend_days,
                                     type(pm.model).__name__ if pm.model is not None
                                     else "BetaGeo", features_at=many, transactions=pm.tx,
                                     loyalty=loyalty, p_alive_at=bg.p_alive())
            except Exception as e:  # noqa: BLE001 - the trend is a nicety; thin data skips it
                warnings.append(f"health trend skipped ({e})")
        quad = quadrants(rel.loyalty, rel.attention, np.nan_to_num(cols["clv"], nan=0.0))

        if supervised is not None:
            try:
                p, explain, which, values, pushes = supervised.result()
                risk[at_now] = p
                names = [json.dumps(f) for f in model.features_used_]
                reasons.update(zip(at_now[explain].tolist(),
                                   _reasons_texts(names, which, values, pushes), strict=True))
            except Exception as e:  # noqa: BLE001 - as above: risk = 1 - P(alive)
                warnings.append(f"supervised risk model skipped ({e}); risk = 1 - P(alive)")
        if contract_risk is not None:  # the contractual customers: their survival risk
            at_c, p_contract, why_c = contract_risk
            for row, pr, rs in zip(at_c.tolist(), p_contract, why_c, strict=True):
                risk[row] = float(pr)
                reasons[row] = json.dumps(rs)

        say("assigning stages")
        from custdyn.dynamics import assign_stages

        ex = _stage_inputs(id_arr, bg.stage_tables())
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
            cancelled=ex["cancelled"],
            max_gap_days=ex["max_gap_days"],
            rules=extra.get("stages"),
        )

        say("writing scores")
        run_id = "run-" + uuid.uuid4().hex[:12]
        parts = {
            "health": dict(zip(card.component_names, contrib.T, strict=True)),
            "loyalty": dict(zip(rel.loyalty_components, np.asarray(rel.loyalty_contributions).T,
                                strict=True)),
            "attention": dict(zip(rel.attention_components,
                                  np.asarray(rel.attention_contributions).T, strict=True)),
            "health_trend": trend,
        }
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
            "reasons": _reasons_json(reasons, n),
        })
        # scores keeps (customer_id, as_of) unique without an index: one row per customer here,
        # and the as_of's earlier rows deleted in the transaction that writes these
        if pa_compute.count_distinct(out.column("customer_id")).as_py() != n:
            raise CustdynError("the features list a customer twice; scores were not written")
        # one chunk: the insert then writes full row groups (chunks end row groups early, and
        # the next checkpoint rewrites them: ~20 s at 1M rows on a loaded machine)
        out = out.combine_chunks()
        quad_rows = json.loads(quad.table.to_json(orient="records"))
        warnings = list(dict.fromkeys(warnings))
        stage_counts = {s: int((stages == s).sum()) for s in sorted(set(stages))}
        result = AnalysisResult(
            as_of=as_of, run_id=run_id, reused=False, n_customers=n,
            purchase_model=type(pm.model).__name__ if pm.model is not None else None,
            model_comparison=pm.comparison, backtest=backtest_rows, quadrants=quad_rows,
            stages=stage_counts, warnings=warnings, seconds=time.perf_counter() - t0,
            step_seconds=steps, step_peak_mib=peaks, text_engine=text_engine,
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
            # the parts as a STRUCT column holding these and those of earlier runs
            layout = fit_parts_column(con, {g: list(v) for g, v in parts.items()})
            out = out.append_column("contributions", _parts_struct(parts, layout, n))
            con.register("_scores", out)
            con.execute(f"INSERT INTO scores ({', '.join(out.column_names)}) "
                        "SELECT * FROM _scores")
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
                    "INSERT INTO model_runs VALUES "
                    "(?, ?, ?, 'spend', 'GammaGamma', ?, ?, ?, ?, ?, ?)",
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
    finally:
        bg.close()


def _peak_mib() -> float:
    """This process's peak resident memory so far, in MiB (0 where it cannot be read)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak) / (2**20 if sys.platform == "darwin" else 1024)
    except (ImportError, OSError):
        return 0.0


def _reasons_json(reasons: dict[int, str], n: int) -> Any:
    """The ``reasons`` column: each row's reasons (JSON), ``[]`` for rows without any."""
    import pyarrow as pa

    out = ["[]"] * n
    for i, r in reasons.items():
        out[i] = r
    return pa.array(out, pa.string())


def _json_number(x: float) -> str:
    """``x`` as ``json.dumps`` writes it, null when not finite (as :func:`_num` makes it)."""
    import math

    return repr(float(x)) if math.isfinite(x) else "null"


def _reasons_text(names: list[str], which: list[int], values: list[float],
                  pushes: list[float]) -> str:
    """One row's reasons as ``json.dumps`` writes the list of ``{"feature", "value",
    "contribution"}`` (``names``: the features already as JSON strings; ``which`` -1 for
    none)."""
    return "[" + ", ".join(
        f'{{"feature": {names[j]}, "value": {_json_number(v)}, '
        f'"contribution": {_json_number(x)}}}'
        for j, v, x in zip(which, values, pushes, strict=True) if j >= 0) + "]"


def _supervised_risk(model: Any, X: Any, top_n: int) -> tuple[Any, Any, Any, Any, Any]:
    """The defection model's risk for every row of ``X`` and the top three reasons (tree
    contributions) of the ``top_n`` riskiest (all when ``top_n`` <= 0): ``(risk, rows
    explained, which, values, pushes)``. The reasons are what the ranked lists show; on a
    large base every customer's would cost minutes."""
    import numpy as np

    step = 100_000  # in slices: the model's working copies stay small
    p = np.concatenate([model.predict_proba(X[i:i + step])
                        for i in range(0, max(len(X), 1), step)])
    explain = (np.arange(len(p)) if top_n <= 0 or len(p) <= top_n
               else np.argsort(-p, kind="stable")[:top_n])
    which, values, pushes = model.top_reasons(X[explain], top=3)
    return p, explain, which, values, pushes


def _reasons_texts(names: list[str], which: Any, values: Any, pushes: Any) -> list[str]:
    """Every row's reasons as :func:`_reasons_text` writes them, for arrays of shape
    (rows, top) at once (``top_reasons``' output): the numbers are turned into text in one
    pass rather than one call each."""
    import numpy as np

    w = np.asarray(which, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"which must have shape (rows, top), got {w.shape}")
    n, top = w.shape

    def texts(a: Any) -> list[str]:
        a = np.asarray(a, dtype=float).reshape(-1)
        out = list(map(repr, a.tolist()))  # a float's repr is what json.dumps writes
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            out[i] = "null"
        return out

    items = [f'{{"feature": {names[j]}, "value": {v}, "contribution": {x}}}' if j >= 0 else ""
             for j, v, x in zip(w.reshape(-1).tolist(), texts(values), texts(pushes),
                                strict=True)]
    return ["[" + ", ".join(t for t in items[i:i + top] if t) + "]"
            for i in range(0, n * top, top)] if top else ["[]"] * n


def _stage_tables(ws: Workspace, as_of: Any) -> tuple[Any, Any]:
    """What the stage rules read from the log beyond the features: per customer the longest
    gap between two purchases before ``as_of`` (calendar days), and the customers with a
    cancellation before ``as_of`` (two Arrow tables; :func:`_stage_inputs` lines them up)."""
    con = ws.con
    day = _day_key(ws)
    gaps = con.execute(
        f"""SELECT customer_id, max(gap) AS max_gap_days
            FROM (SELECT customer_id,
                         {day} - lag({day}) OVER (PARTITION BY customer_id
                                                  ORDER BY occurred_at) AS gap
                  FROM interactions
                  WHERE occurred_at < ? AND list_contains(?::VARCHAR[], kind))
            GROUP BY customer_id""",
        [as_of, list(ws.settings.purchase_kinds)]).to_arrow_table()
    cancelled = con.execute(
        "SELECT DISTINCT customer_id FROM interactions "
        "WHERE kind = 'cancellation' AND occurred_at < ?", [as_of]).to_arrow_table()
    return gaps, cancelled


def _stage_inputs(ids: Any, tables: tuple[Any, Any]) -> dict[str, Any]:
    """The tables of :func:`_stage_tables` lined up with ``ids`` (a list or an Arrow
    array): ``max_gap_days`` (NaN with fewer than two purchases) and ``cancelled``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    gaps, cancelled = tables
    out = _align(ids, gaps)
    out["cancelled"] = np.asarray(pc.is_in(pa.array(ids, pa.string()),
                                           value_set=cancelled.column(0).cast(pa.string()))
                                  .to_numpy(zero_copy_only=False), dtype=bool)
    return out


def _parts_struct(groups: dict[str, dict[str, Any]], layout: dict[str, list[str]],
                  n: int) -> Any:
    """The parts ``groups`` (``{group: {name: n numbers}}``) as an Arrow struct array of
    structs of float64 in the order of ``layout`` (``{group: [names]}``; parts it names that
    ``groups`` lacks are null; non-finite values become null)."""
    import numpy as np
    import pyarrow as pa

    outer = []
    for g, names in layout.items():
        members = groups.get(g, {})
        cols = []
        for name in names:
            if name in members:
                v = np.asarray(members[name], dtype=float).reshape(-1)
                cols.append(pa.array(np.where(np.isfinite(v), v, np.nan), pa.float64(),
                                     from_pandas=True))
            else:
                cols.append(pa.nulls(n, pa.float64()))
        outer.append(pa.StructArray.from_arrays(cols, names))
    return pa.StructArray.from_arrays(outer, list(layout))

