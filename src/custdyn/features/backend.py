"""Where the features run: the workspace's DuckDB file, or Apache Spark.

The backend choice lives here and nowhere else. :func:`backend` turns a workspace, a workspace
folder or a folder of contract Parquet files into a :class:`Backend`: an Ibis connection plus
the contract tables it holds. Every feature expression is written against a :class:`Backend`
and runs unchanged on either engine.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from custdyn.errors import CustdynError, FeatureError  # noqa: F401  (FeatureError re-exported)
from custdyn.schema import PURCHASE_KINDS

__all__ = ["ENGINES", "Backend", "FeatureError", "backend", "spark_session"]

#: The engines a feature query can run on.
ENGINES = ("duckdb", "spark")

#: Contract tables the features read; only ``interactions`` is required.
CONTRACT_TABLES = ("interactions", "customers", "text_signals")


@dataclass
class Backend:
    """An Ibis connection and the contract tables it can read.

    Attributes
    ----------
    engine : {"duckdb", "spark"}
        The engine's name.
    con : ibis backend
        The Ibis connection the expressions run on.
    tables : dict of str to str
        Contract table name (``interactions``, ``customers``, ``text_signals``) to the name of
        the table on ``con``. Tables not listed are absent.
    purchase_kinds : list of str
        Interaction kinds that count as purchases (the ``[features] purchase_kinds`` setting).
    options : dict
        The ``[features]`` settings section (``unanswered_after_hours``, ``time_unit``, ...).
    workspace : Workspace or None
        The workspace it came from, if any (snapshots are written there).
    """

    engine: str
    con: Any
    tables: dict[str, str]
    purchase_kinds: list[str] = field(default_factory=lambda: list(PURCHASE_KINDS))
    options: dict[str, Any] = field(default_factory=dict)
    workspace: Any = None
    #: :meth:`has`'s answers, asked once per backend (one computation's lifetime)
    _has: dict[str, bool] = field(default_factory=dict, init=False, repr=False,
                                 compare=False)

    def has(self, name: str) -> bool:
        """Whether the contract table ``name`` exists and has at least one row (asked of the
        database once per backend)."""
        if name not in self.tables:
            return False
        if name == "interactions":
            return True
        if name not in self._has:
            self._has[name] = bool(self.execute_scalar(self.table(name).count()) > 0)
        return self._has[name]

    def table(self, name: str) -> Any:
        """The Ibis table expression of contract table ``name``."""
        if name not in self.tables:
            raise FeatureError(
                f"the {self.engine} backend has no {name!r} table; it has: "
                f"{', '.join(sorted(self.tables)) or 'none'}"
            )
        return self.con.table(self.tables[name])

    def execute_scalar(self, expr: Any) -> Any:
        """Run a scalar expression and return the Python value."""
        return self.con.execute(expr)

    def to_pyarrow(self, expr: Any) -> pa.Table:
        """Run a table expression; timestamps come back as UTC-aware Arrow timestamps."""
        t = self.con.to_pyarrow(expr)
        return _utc_timestamps(t)

    def __repr__(self) -> str:
        return f"<custdyn.features.Backend {self.engine}: {', '.join(sorted(self.tables))}>"


def _utc_timestamps(t: pa.Table) -> pa.Table:
    cols = []
    for f, col in zip(t.schema, t.columns, strict=True):
        if pa.types.is_timestamp(f.type):  # naive values are UTC (the session zone)
            col = col.cast(pa.timestamp("us", tz="UTC"))
        cols.append(col)
    return pa.table(cols, names=t.column_names)


def spark_session(conf: dict[str, Any] | None = None, master: str | None = None) -> Any:
    """A Spark session for custdyn: the active one, or a new local one.

    Parameters
    ----------
    conf : dict, optional
        Extra Spark settings (``spark.executor.memory`` ...), e.g. the ``[spark.conf]`` section
        of ``custdyn.toml``.
    master : str, optional
        Cluster URL (``spark://host:7077``, ``yarn``, ``k8s://...``); default ``local[*]``, or
        whatever ``spark-submit`` / ``SPARK_REMOTE`` already configured.

    Notes
    -----
    Calendar days and months are taken in UTC, so the session time zone is set to UTC.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None and not conf:
        active.conf.set("spark.sql.session.timeZone", "UTC")
        return active
    builder = SparkSession.builder.appName("custdyn")
    if master or not os.environ.get("SPARK_REMOTE"):
        builder = builder.master(master or "local[*]")
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "custdyn-spark-warehouse"),
    }
    settings.update({k: str(v) for k, v in (conf or {}).items()})
    for k, v in settings.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    return session


def backend(
    source: Any,
    engine: str | None = None,
    *,
    spark: Any = None,
    tables: dict[str, str] | None = None,
    parquet_dir: str | Path | None = None,
) -> Backend:
    """Choose where feature queries run.

    Parameters
    ----------
    source : Workspace, str or Path
        An open :class:`~custdyn.store.Workspace`, a workspace folder, or a folder holding the
        contract tables as Parquet (``interactions.parquet``, optionally ``customers.parquet``
        and ``text_signals.parquet``, as ``Workspace.export`` writes them). ``None`` with
        ``tables`` reads Spark catalog tables only.
    engine : {"duckdb", "spark"}, optional
        Default: the workspace's ``engine`` setting, else ``duckdb``.
    spark : pyspark.sql.SparkSession, optional
        The session to use (default: :func:`spark_session` from the ``[spark]`` settings).
    tables : dict of str to str, optional
        Spark only: contract table name to a table already known to Spark
        (``{"interactions": "crm.interactions"}``). These replace the Parquet files.
    parquet_dir : str or Path, optional
        Spark on a workspace: where the contract tables are exported as Parquet (default
        ``WORKSPACE/.spark``; re-exported when the workspace is newer).

    Returns
    -------
    Backend
    """
    from custdyn.store import DB_FILE, Workspace

    ws = None
    pq_dir: Path | None = None
    if isinstance(source, Workspace):
        ws = source
    elif source is not None:
        p = Path(source).expanduser()
        if (p / DB_FILE).exists():
            ws = Workspace.open(p, read_only=True)
        elif (p / "interactions.parquet").exists():
            pq_dir = p
        else:
            raise FeatureError(
                f"{p} is neither a custdyn workspace nor a folder with interactions.parquet; "
                "pass a workspace folder, or export one with Workspace.export(DIR)"
            )
    settings = ws.settings if ws is not None else None
    name = engine or (settings.engine if settings is not None else "duckdb")
    if name not in ENGINES:
        raise FeatureError(f"engine {name!r} is not known; allowed: {', '.join(ENGINES)}")
    feats = dict(settings.extra.get("features", {})) if settings is not None else {}
    kinds = list(settings.purchase_kinds) if settings is not None else list(PURCHASE_KINDS)
    spark_cfg = dict(settings.extra.get("spark", {})) if settings is not None else {}

    if name == "duckdb":
        if tables:
            raise FeatureError("tables= names Spark catalog tables; use engine='spark'")
        if ws is not None:
            known = _duckdb_tables(ws.con)
            return Backend("duckdb", ws.ibis, {t: t for t in CONTRACT_TABLES if t in known},
                           kinds, feats, ws)
        if pq_dir is None:
            raise FeatureError("the duckdb engine needs a workspace or a Parquet folder")
        import ibis

        con = ibis.duckdb.connect()
        con.raw_sql("SET TimeZone = 'UTC'")
        found = {}
        for t in CONTRACT_TABLES:
            f = pq_dir / f"{t}.parquet"
            if f.exists():
                con.read_parquet(str(f), table_name=t)
                found[t] = t
        return Backend("duckdb", con, found, kinds, feats, None)

    # ---- spark
    import ibis

    session = spark or spark_session(spark_cfg.get("conf"), spark_cfg.get("master"))
    session.conf.set("spark.sql.session.timeZone", "UTC")
    con = ibis.pyspark.connect(session)
    names: dict[str, str] = {}
    if tables or spark_cfg.get("tables"):
        names.update({str(k): str(v) for k, v in (tables or spark_cfg.get("tables", {})).items()})
        unknown = set(names) - set(CONTRACT_TABLES)
        if unknown:
            raise FeatureError(f"tables= names {sorted(unknown)}; allowed: {CONTRACT_TABLES}")
    else:
        if ws is not None:
            pq_dir = Path(parquet_dir or spark_cfg.get("data") or ws.path / ".spark")
            _export_if_stale(ws, pq_dir)
        elif pq_dir is None and spark_cfg.get("data"):
            pq_dir = Path(spark_cfg["data"])
        if pq_dir is None:
            raise FeatureError("the spark engine needs a workspace, a Parquet folder or tables=")
        for t in CONTRACT_TABLES:
            f = pq_dir / f"{t}.parquet"
            if f.exists():
                view = f"custdyn_{t}"
                con.read_parquet(str(f), table_name=view)
                names[t] = view
    if "interactions" not in names:
        raise FeatureError("the spark backend has no interactions table")
    return Backend("spark", con, names, kinds, feats, ws)


def _duckdb_tables(con: Any) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {r[0] for r in rows}


def _export_if_stale(ws: Any, directory: Path) -> None:
    """Export the contract tables to Parquet unless the export is newer than the database."""
    from custdyn.store import DB_FILE

    stamp = directory / "interactions.parquet"
    db = ws.path / DB_FILE
    if stamp.exists() and stamp.stat().st_mtime >= db.stat().st_mtime:
        return
    known = _duckdb_tables(ws.con)
    ws.export(directory, [t for t in CONTRACT_TABLES if t in known])


def as_utc(value: Any) -> dt.datetime:
    """A date, datetime or ISO string as a UTC-aware datetime (naive values are UTC)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise FeatureError(
                f"as_of {value!r} is not a date; write it as 2024-06-30 or "
                "2024-06-30T12:00:00+02:00"
            ) from None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if hasattr(value, "to_pydatetime"):
        return as_utc(value.to_pydatetime())
    raise FeatureError(f"as_of {value!r} is not a date or datetime")
