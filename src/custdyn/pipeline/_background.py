"""The parts of :func:`custdyn.pipeline.analyze` that need only the log and ``as_of``, run in
a second thread while the new messages are scored (the purchase models) and the features are
computed (the rest).

The purchase models (fitted, or kept and only scored), the loyalty counts and the tables the
stage rules read do not depend on the features. On two cores, computing them beside the
features hides most of their time: both sides spend much of it in numpy, Arrow and DuckDB,
which let the other thread run. The second thread has a database cursor of its own (DuckDB
runs the two connections side by side); each result is taken when the analysis reaches it,
and an error there is raised at that point, as if the step had run in line.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from custdyn.pipeline._common import _PurchaseModels
from custdyn.store import Workspace

#: In ``p_alive_at``: the model the purchase models chose (BG/NBD when they were skipped).
CHOSEN = ""


class _InLine:
    """An executor that runs each task at once, in the calling thread (``[analysis]
    background = false``)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - raised where the result is taken
            f.set_exception(e)
        return f

    def shutdown(self, wait: bool = True) -> None:
        pass


class PurchaseResult:
    """The purchase models at ``as_of`` and their per-customer predictions (None when they
    were skipped), with the warnings they gave."""

    def __init__(self, pm: _PurchaseModels, pred: dict[str, Any] | None) -> None:
        self.pm, self.pred = pm, pred


class Background:
    """Start the log-only parts of an analysis at ``as_of`` in a second thread.

    ``kept``: the purchase and spend models kept from an earlier run and their comparison
    (:class:`custdyn.pipeline.analysis.FittedModels`), or None to fit them. The purchase
    models start at once (they read only the purchases: they may run while the messages
    are scored); the other parts start with :meth:`rest`, called here when ``dates`` and
    ``stage_tables`` are given. ``background=False`` runs each part at once, in the calling
    thread (``[analysis] background = false``: the same results, one thing at a time).
    """

    def __init__(self, ws: Workspace, as_of: Any, kept: Any, dates: list[Any] | None = None,
                 stage_tables: Callable[[Workspace, Any], Any] | None = None,
                 p_alive_at: dict[Any, str] | None = None, background: bool = True,
                 leaving_at: Any = None) -> None:
        self._view = ws.on_own_cursor()
        self._as_of = as_of
        self.warnings: list[str] = []
        self._pool: ThreadPoolExecutor | _InLine = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="custdyn-analyze")
            if background else _InLine())
        self._purchase = self._pool.submit(self._purchase_models, as_of, kept)
        self._loyalty: Future[Any] | None = None
        self._stages: Future[Any] | None = None
        self._p_alive: Future[Any] | None = None
        self._leaving: Future[Any] | None = None
        if dates is not None and stage_tables is not None:
            self.rest(dates, stage_tables, p_alive_at, leaving_at)

    def rest(self, dates: list[Any], stage_tables: Callable[[Workspace, Any], Any],
             p_alive_at: dict[Any, str] | None = None, leaving_at: Any = None) -> None:
        """Start the other parts (once the messages are scored: some read their signals).

        ``dates``: the dates whose loyalty counts are needed. ``stage_tables``: reads what the
        stage rules need from the log (a function of the workspace and ``as_of``).
        ``p_alive_at``: ``{date: model name}``, the dates at which P(alive) alone is needed
        (:meth:`_PurchaseModels.p_alive_only` on the purchases read for ``as_of``, or on
        their summary at ``as_of`` itself; :data:`CHOSEN` for the model the purchase models
        chose). ``leaving_at``: a date whose leaving-phase counts
        (:func:`custdyn.pipeline.risk.leaving_table`) are read too."""
        from custdyn.pipeline.health import _loyalty_counts
        from custdyn.pipeline.risk import leaving_table

        as_of = self._as_of
        self._loyalty = self._pool.submit(_loyalty_counts, self._view, dates)
        self._stages = self._pool.submit(stage_tables, self._view, as_of)
        self._p_alive = self._pool.submit(self._p_alive_only, as_of, dict(p_alive_at or {}))
        self._leaving = (self._pool.submit(leaving_table, self._view, leaving_at)
                         if leaving_at is not None else None)

    @staticmethod
    def _started(f: Future[Any] | None) -> Future[Any]:
        if f is None:
            raise RuntimeError("Background.rest was not called")
        return f

    def _p_alive_only(self, as_of: Any, at: dict[Any, str]) -> dict[Any, Any]:
        import warnings as pywarnings

        bought = self._purchase.result()  # done: the tasks run in order
        out: dict[Any, Any] = {}
        chosen = (type(bought.pm.model).__name__ if bought.pm.model is not None
                  else "BetaGeo")
        for d, model in at.items():
            model = model or chosen
            with pywarnings.catch_warnings():
                pywarnings.simplefilter("ignore")
                pm = _PurchaseModels(self._view, d, [])
                got = (pm.p_alive_only(model, rfm=bought.pm.rfm) if d == as_of
                       else pm.p_alive_only(model, transactions=bought.pm.tx))
            out[d] = (got, pm)
        return out

    def _purchase_models(self, as_of: Any, kept: Any) -> PurchaseResult:
        pm = _PurchaseModels(self._view, as_of, self.warnings)
        ok = pm.fit() if kept is None else pm.reuse(kept.purchase, kept.spend, kept.comparison)
        return PurchaseResult(pm, pm.predict() if ok else None)

    def purchase(self) -> PurchaseResult:
        return self._purchase.result()

    def loyalty(self) -> dict[Any, Any]:
        return self._started(self._loyalty).result()

    def stage_tables(self) -> Any:
        return self._started(self._stages).result()

    def p_alive(self) -> dict[Any, tuple[Any, _PurchaseModels]]:
        """``{date: (Arrow table, models)}`` for the dates asked for: the table of
        ``customer_id`` and ``p_alive``, and the :class:`_PurchaseModels` that made it (its
        ``model`` and ``rfm``)."""
        return self._started(self._p_alive).result()

    def leaving(self) -> Any:
        """:func:`custdyn.pipeline.risk.leaving_table` at ``leaving_at`` (None when it was
        not asked for)."""
        return self._leaving.result() if self._leaving is not None else None

    def close(self) -> None:
        """Wait for what is under way (what has not started is dropped) and close the
        cursor."""
        for f in (self._purchase, self._loyalty, self._stages, self._p_alive, self._leaving):
            if f is not None:
                f.cancel()
        self._pool.shutdown(wait=True)
        self._view.close()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
