"""What the analysis steps share: dates, Arrow and numpy alignment, the purchase models, feature tables at many dates."""

from __future__ import annotations

from typing import Any

from custdyn._keys import _positions
from custdyn.store import Workspace

ID_COLUMNS = ("customer_id", "as_of")


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


def _numeric_matrix(table: Any, exclude: tuple[str, ...] = (), rows: Any = None,
                    extra: int = 0) -> tuple[Any, list[str]]:
    """The numeric feature columns of an Arrow table as a float matrix (NaN for nulls): of
    the ``rows`` where that boolean mask is true (default all), with ``extra`` more columns
    left for the caller to fill."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = [f.name for f in table.schema
             if f.name not in ID_COLUMNS and f.name not in exclude
             and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
                  or pa.types.is_decimal(f.type) or pa.types.is_boolean(f.type))]
    idx = None if rows is None else np.flatnonzero(rows)
    n = table.num_rows if idx is None else len(idx)
    # filled column by column (no second copy), so stored column by column: writing the
    # columns of a row-major matrix costs seconds on a million rows
    out = np.empty((n, len(names) + extra), order="F")
    pieces: dict[tuple[int, ...], list[tuple[int, int, Any]]] = {}
    for j, name in enumerate(names):
        c = table.column(name)
        if not (c.null_count == 0 and (pa.types.is_integer(c.type)
                                       or pa.types.is_floating(c.type))):
            c = c.cast(pa.float64())  # nulls (NaN), decimals, booleans: through Arrow
            if c.null_count:
                c = pc.fill_null(c, float("nan"))
        # chunk by chunk, each read in place (numpy converts to float as it fills the
        # column); the kept rows gathered by index, ten times a boolean mask's speed
        lengths = tuple(len(ch) for ch in c.chunks)
        if lengths not in pieces:
            pieces[lengths] = _chunk_rows(lengths, idx)
        for (lo, hi, sel), ch in zip(pieces[lengths], c.chunks, strict=True):
            if hi > lo:
                v = np.asarray(ch.to_numpy(zero_copy_only=False))
                dst = out[lo:hi, j]
                if sel is None:
                    dst[:] = v
                elif v.dtype == out.dtype:
                    np.take(v, sel, out=dst)
                else:
                    dst[:] = np.take(v, sel)
    return out, names


def _chunk_rows(lengths: tuple[int, ...], idx: Any) -> list[tuple[int, int, Any]]:
    """For chunks of ``lengths`` rows: the output rows ``lo:hi`` each fills and the rows
    of it to take (None: all of them), of the rows ``idx`` (sorted; None: all)."""
    import numpy as np

    out: list[tuple[int, int, Any]] = []
    start = 0
    for length in lengths:
        if idx is None:
            out.append((start, start + length, None))
        else:
            lo, hi = np.searchsorted(idx, [start, start + length])
            out.append((int(lo), int(hi), idx[lo:hi] - start))
        start += length
    return out


def _col(table: Any, name: str) -> Any:
    import numpy as np
    import pyarrow as pa

    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    c = table.column(name)
    if pa.types.is_timestamp(c.type):
        return c
    return np.asarray(c.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


def _align(ids: Any, table: Any, fill: float = float("nan")) -> dict[str, Any]:
    """The numeric columns of ``table`` (first column: customer ids) lined up with ``ids``
    (a list or an Arrow array of ids; ``fill`` for customers the table does not have, NaN
    for its nulls)."""
    import numpy as np
    import pyarrow as pa

    key = table.column(0).cast(pa.string())
    key = key.combine_chunks() if isinstance(key, pa.ChunkedArray) else key
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    value_set = (ids.cast(pa.string()) if isinstance(ids, pa.Array)
                 else pa.array(ids, pa.string()))
    pos = _positions(key, value_set)
    src = np.flatnonzero(pos >= 0)
    dst = pos[src]
    same = len(dst) == len(value_set) == len(pos) and bool(
        np.array_equal(dst, np.arange(len(dst))))
    out: dict[str, Any] = {}
    for name in table.column_names[1:]:
        vals = np.asarray(table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False),
                          dtype=float)
        if same:  # the table's rows are the ids, in order
            out[name] = np.array(vals, dtype=float)
            continue
        col = np.full(len(value_set), fill)
        col[dst] = vals[src]
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
        #: the purchases before ``as_of`` (:meth:`transactions`) once read, kept for the
        #: summaries at earlier dates (:func:`transactions_before`)
        self.tx: Any = None
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

    def p_alive_only(self, model: str = "BetaGeo", *, rfm: Any = None,
                     transactions: Any = None) -> Any:
        """P(alive) per customer from one model fitted at ``as_of`` (no comparison, spend or
        CLV): what the risk snapshots and the health trend need, at a fraction of the cost.
        An Arrow table (``customer_id``, ``p_alive``; line it up with :func:`_align`). Sets
        ``rfm`` and ``model``; no rows when there are no purchases or the fit fails.

        ``rfm``: the customers' summary at ``as_of`` when already computed (the purchase
        models' :attr:`rfm` at the same date); ``transactions``: purchases read up to a
        later date (:meth:`transactions`), of which those before ``as_of`` are used instead
        of a query of their own. Either gives the same result as reading afresh."""
        import numpy as np
        import pyarrow as pa

        from custdyn import models as m

        none = pa.table({"customer_id": pa.array([], pa.string()),
                         "p_alive": pa.array([], pa.float64())})
        if rfm is None:
            tx = (self.transactions(self.as_of) if transactions is None
                  else transactions_before(transactions, self.as_of))
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
        from custdyn.models._base import compress_rows

        # once per distinct history, spread back; Arrow ids as they are (no Python strings)
        (uf, ur, uT), _, inv = compress_rows([f, r, T])
        id_col = (ids.cast(pa.string()) if isinstance(ids, pa.ChunkedArray | pa.Array)
                  else pa.array(np.asarray(ids).astype(str), pa.string()))
        return pa.table({"customer_id": id_col,
                         "p_alive": np.asarray(mod.p_alive(uf, ur, uT), dtype=float)[inv]})

    def fit(self) -> bool:
        import datetime as dt
        import warnings

        import numpy as np

        from custdyn import models as m
        from custdyn.errors import ConvergenceWarning

        tx = self.tx = self.transactions(self.as_of)
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

        tx = self.tx = self.transactions(self.as_of)
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
        from custdyn.models._base import compress_rows

        f = np.asarray(self.rfm["frequency"], dtype=float)
        r = np.asarray(self.rfm["recency"], dtype=float)
        T = np.asarray(self.rfm["T"], dtype=float)
        ids = _id_list(self.rfm.index if hasattr(self.rfm, "index")
                       else self.rfm["customer_id"])
        # each quantity is a function of (frequency, recency, T): computed once per distinct
        # history (a third of the customers on a large base) and spread back
        (uf, ur, uT), _, inv = compress_rows([f, r, T])
        out = {
            "customer_id": ids,
            "p_alive": self.model.p_alive(uf, ur, uT)[inv],
            "expected_purchases_90d": self.model.conditional_expected_purchases(
                90 / 7, uf, ur, uT)[inv],
            "expected_purchases_365d": self.model.conditional_expected_purchases(
                365 / 7, uf, ur, uT)[inv],
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


def _id_list(values: Any) -> list[str]:
    """Customer ids as a list of ``str`` (an Arrow column converted at once)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray | pa.Array):
        return [str(x) for x in values.cast(pa.string()).to_pylist()]
    return [str(x) for x in values]


def transactions_before(tx: Any, end: Any) -> Any:
    """The rows of ``tx`` (:meth:`_PurchaseModels.transactions`: UTC times without a zone,
    sorted by customer and time) before ``end``: what ``transactions(end)`` reads, for an
    ``end`` no later than the date ``tx`` was read at."""
    import pyarrow as pa
    import pyarrow.compute as pc

    at = pa.scalar(_naive(_as_utc(end)), tx.schema.field("occurred_at").type)
    return tx.filter(pc.less(tx.column("occurred_at"), at))


def features_many(ws: Workspace, dates: list[Any],
                  columns: dict[Any, list[str]] | None = None,
                  state: bool = False) -> dict[Any, Any]:
    """The feature table at each of ``dates`` (``{date: Arrow table}``, rows as
    :func:`custdyn.features.features` gives them), computed in one incremental pass
    (:func:`custdyn.features.feature_tables`) on a DuckDB workspace, else one query per date.
    ``columns`` (``{date: [names]}``) keeps only those columns at the dates it names.
    ``state``: keep the rolling feature state in a writable DuckDB workspace and roll it
    forward when it can (:mod:`custdyn.features.rolling`)."""
    import custdyn.features as cf

    dates = sorted(set(dates))
    state = state and ws.settings.engine == "duckdb" and not ws.read_only
    if (len(dates) < 2 and not state) or ws.settings.engine != "duckdb":
        out = {d: cf.features(ws, d) for d in dates}
        return {d: t.select([c for c in t.column_names if c in ID_COLUMNS
                             or c in (columns or {}).get(d, t.column_names)])
                for d, t in out.items()}
    got = cf.feature_tables(ws, dates, columns=columns, state=state)
    return {d: got[_as_utc(d)] for d in dates}


def json_key(d: Any) -> str:
    import json

    return json.dumps(d, sort_keys=True, default=str)


def _num(v: Any) -> float | None:
    import math

    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
