"""The workspace: a folder with ``custdyn.toml`` and ``custdyn.duckdb``.

It owns the database file, its schema migrations, the writer lock and ingest: each source
file is one batch in one transaction, which commits whole or leaves the workspace as it was.
Analytics read its tables through Ibis (:meth:`Workspace.table`), so the same expressions can
run on another backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Mapping as Layout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from custdyn import __version__
from custdyn.errors import (
    BatchRefusedError,
    CustdynError,
    InputFormatError,
    SchemaVersionError,
    WorkspaceExistsError,
    WorkspaceLockedError,
    WorkspaceNotFoundError,
)
from custdyn.io import Chunk, Mapping, RowError, detect_format, load_mapping, open_source
from custdyn.io.normalize import normalize_sql, q
from custdyn.schema import CUSTOMER_FIELDS, INTERACTION_FIELDS
from custdyn.settings import FILENAME as SETTINGS_FILE
from custdyn.settings import Settings

DB_FILE = "custdyn.duckdb"
LOCK_FILE = "custdyn.lock"
ENV_VAR = "CUSTDYN_WORKSPACE"
#: DuckDB's memory during ingest; the rest spills to disk (override with CUSTDYN_INGEST_MEMORY).
INGEST_MEMORY_LIMIT = os.environ.get("CUSTDYN_INGEST_MEMORY", "512MB")
#: DuckDB's rows per row group; ingest writes whole ones where it can.
ROW_GROUP_ROWS = 122_880
#: Ingest gathers reader chunks up to this many rows or raw bytes per statement.
FLUSH_ROWS = 8 * ROW_GROUP_ROWS
FLUSH_BYTES = 256 << 20

# --------------------------------------------------------------------------- migrations
#: Ordered schema migrations. Each is (version, description, statements). Never edit a
#: released one: add a new version instead.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "the interaction log: interactions, customers, batches, rejected",
        [
            "CREATE SEQUENCE batch_seq START 1",
            """CREATE TABLE batches (
                batch_id BIGINT PRIMARY KEY, source VARCHAR, format VARCHAR, target VARCHAR,
                fingerprint VARCHAR, mapping VARCHAR, strict BOOLEAN,
                rows_read BIGINT, rows_loaded BIGINT, rows_duplicate BIGINT,
                rows_updated BIGINT, rows_rejected BIGINT,
                started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, custdyn_version VARCHAR)""",
            """CREATE TABLE interactions (
                interaction_id VARCHAR NOT NULL, customer_id VARCHAR NOT NULL,
                occurred_at TIMESTAMPTZ NOT NULL, channel VARCHAR, kind VARCHAR,
                direction VARCHAR, amount DECIMAL(18,4), currency VARCHAR, subject VARCHAR,
                text VARCHAR, thread_id VARCHAR, agent_id VARCHAR, source VARCHAR,
                attributes JSON, batch_id BIGINT)""",
            """CREATE TABLE customers (
                customer_id VARCHAR PRIMARY KEY, name VARCHAR, email VARCHAR, segment VARCHAR,
                country VARCHAR, language VARCHAR, created_at TIMESTAMPTZ, attributes JSON,
                batch_id BIGINT)""",
            """CREATE TABLE rejected (
                batch_id BIGINT, source VARCHAR, row_number BIGINT, field VARCHAR,
                reason VARCHAR, raw VARCHAR)""",
        ],
    ),
    (
        2,
        "text signals per interaction and engine",
        [
            """CREATE TABLE text_signals (
                interaction_id VARCHAR NOT NULL, engine VARCHAR NOT NULL, language VARCHAR,
                language_confidence FLOAT, sentiment VARCHAR, sentiment_score FLOAT,
                confidence FLOAT, anger FLOAT, anticipation FLOAT, disgust FLOAT, fear FLOAT,
                joy FLOAT, sadness FLOAT, surprise FLOAT, trust FLOAT,
                intent_to_switch BOOLEAN, mentions JSON, theme_id VARCHAR,
                scored_at TIMESTAMPTZ, PRIMARY KEY (interaction_id, engine))""",
        ],
    ),
]
MIGRATIONS.append((
    3,
    "analysis results: model runs and per-customer scores",
    [
        """CREATE TABLE model_runs (
            run_id VARCHAR PRIMARY KEY, as_of TIMESTAMPTZ, created_at TIMESTAMPTZ,
            kind VARCHAR, model VARCHAR, params JSON, diagnostics JSON,
            data_from TIMESTAMPTZ, data_to TIMESTAMPTZ, fingerprint VARCHAR,
            custdyn_version VARCHAR)""",
        """CREATE TABLE scores (
            customer_id VARCHAR NOT NULL, as_of TIMESTAMPTZ NOT NULL, run_id VARCHAR,
            p_alive DOUBLE, expected_purchases_90d DOUBLE, expected_purchases_365d DOUBLE,
            clv DOUBLE, clv_lower DOUBLE, clv_upper DOUBLE, defection_risk DOUBLE,
            health DOUBLE, loyalty DOUBLE, attention DOUBLE, quadrant VARCHAR, stage VARCHAR,
            reasons JSON, contributions JSON, PRIMARY KEY (customer_id, as_of))""",
    ],
))
MIGRATIONS.append((
    4,
    "user labels for text and workspace-trained text models",
    [
        """CREATE TABLE labels (
            label_id VARCHAR PRIMARY KEY, interaction_id VARCHAR, text VARCHAR NOT NULL,
            language VARCHAR, sentiment VARCHAR, emotions JSON, theme VARCHAR,
            labelled_by VARCHAR, labelled_at TIMESTAMPTZ, source VARCHAR)""",
        """CREATE TABLE text_models (
            name VARCHAR PRIMARY KEY, version INTEGER NOT NULL, kind VARCHAR,
            base_engine VARCHAR, path VARCHAR, created_at TIMESTAMPTZ, n_labels INTEGER,
            metrics JSON, is_default BOOLEAN DEFAULT FALSE, rolled_back BOOLEAN DEFAULT FALSE)""",
    ],
))
# ``scores`` without its primary-key index: keeping a (customer_id, as_of) index of every
# snapshot made writing 1M customers' scores cost ~4x more (the index insert and its
# checkpoint) and re-writing an as_of far more (deleting 1M index entries). The key still
# holds: ``analyze``, the table's only writer, checks its customers are distinct and
# deletes the as_of's rows in the same transaction that inserts them.
MIGRATIONS.append((
    5,
    "scores kept without a primary-key index (one writer keeps (customer_id, as_of) unique)",
    [
        """CREATE TABLE scores_v5 (
            customer_id VARCHAR NOT NULL, as_of TIMESTAMPTZ NOT NULL, run_id VARCHAR,
            p_alive DOUBLE, expected_purchases_90d DOUBLE, expected_purchases_365d DOUBLE,
            clv DOUBLE, clv_lower DOUBLE, clv_upper DOUBLE, defection_risk DOUBLE,
            health DOUBLE, loyalty DOUBLE, attention DOUBLE, quadrant VARCHAR, stage VARCHAR,
            reasons JSON, contributions JSON)""",
        """INSERT INTO scores_v5 SELECT customer_id, as_of, run_id, p_alive,
            expected_purchases_90d, expected_purchases_365d, clv, clv_lower, clv_upper,
            defection_risk, health, loyalty, attention, quadrant, stage, reasons, contributions
            FROM scores""",
        "DROP TABLE scores",
        "ALTER TABLE scores_v5 RENAME TO scores",
    ],
))
MIGRATIONS.append((
    6,
    "how common each language is among the workspace's messages (language detection's prior)",
    [
        """CREATE TABLE language_shares (
            language VARCHAR PRIMARY KEY, share DOUBLE NOT NULL, learnt_from BIGINT,
            messages BIGINT, learnt_at TIMESTAMPTZ, learnt_among VARCHAR)""",
    ],
))
SCHEMA_VERSION = MIGRATIONS[-1][0]


# --------------------------------------------------------------------------- score parts
# ``scores.contributions`` holds each score's parts, ``{group: {name: value}}`` (health,
# loyalty, attention, health_trend). The tables are created with a JSON column; the first
# analysis writes a STRUCT of DOUBLE fields there instead (about 3x faster to write than the
# JSON text at 1M customers, and 40% smaller), converting any rows already there. Its
# fields are those of every analysis written so far: when a run brings parts the column
# lacks (another scorecard), the column is widened and older rows read null for them.
# ``to_json(contributions)`` gives the JSON text either way.

def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parts_type(layout: Layout[str, Sequence[str]]) -> str:
    """The STRUCT type of the parts ``layout`` (``{group: [names]}``; groups without names
    left out)."""
    groups = [f"{_quoted(g)} STRUCT({', '.join(f'{_quoted(n)} DOUBLE' for n in names)})"
              for g, names in layout.items() if names]
    return f"STRUCT({', '.join(groups)})"


def check_part_names(layout: Layout[str, Sequence[str]]) -> None:
    """Raise :class:`CustdynError` unless the names can be a STRUCT's fields: at each level
    not empty and distinct ignoring case."""
    for level, names in [("groups", list(layout)), *[(f"parts of {g!r}", list(v))
                                                      for g, v in layout.items()]]:
        folded = [str(n).casefold() for n in names]
        bad = sorted({str(n) for n, f in zip(names, folded, strict=True)
                      if not f or folded.count(f) > 1})
        if bad:
            raise CustdynError(f"score parts: the {level} need distinct, non-empty names "
                               f"(ignoring case); these are not: {bad}")


def _parts_kind(con: duckdb.DuckDBPyConnection) -> str:
    """The type of ``scores.contributions``, as DuckDB writes it."""
    row = con.execute("SELECT data_type FROM duckdb_columns() WHERE database_name = "
                      "current_database() AND schema_name = 'main' AND table_name = 'scores' "
                      "AND column_name = 'contributions'").fetchone()
    if row is None:
        raise CustdynError("the workspace has no scores table")
    return str(row[0])


def _stored_parts(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, list[str]]:
    """The parts the contributions column holds (``{group: [names]}``): its STRUCT's
    fields, or the keys of its rows' JSON."""
    if kind != "JSON":
        typ = con.execute("SELECT contributions FROM scores LIMIT 0").to_arrow_table(
            ).schema.field("contributions").type
        return {typ.field(i).name: [typ.field(i).type.field(j).name
                                    for j in range(typ.field(i).type.num_fields)]
                for i in range(typ.num_fields)}

    def keys(path: str) -> list[str]:
        """The keys of the objects at ``path``, in the order the rows give them (each
        distinct list of keys read once: memory stays small on a million rows)."""
        out: list[str] = []
        for (ks,) in con.execute(
                f"SELECT ks FROM (SELECT json_keys(contributions, {_sql_str(path)}) AS ks, "
                f"min(rowid) AS first FROM scores WHERE json_type(contributions, "
                f"{_sql_str(path)}) = 'OBJECT' GROUP BY ks) ORDER BY first").fetchall():
            out += [k for k in ks if k not in out]
        return out

    return {g: keys("/" + _pointer(g)) for g in keys("")}


def fit_parts_column(con: duckdb.DuckDBPyConnection,
                     layout: Layout[str, Sequence[str]]) -> dict[str, list[str]]:
    """Make ``scores.contributions`` a STRUCT holding the parts ``layout`` (``{group:
    [names]}``) and those of the rows already there (kept: the column is converted in
    place, new fields null in older rows); returns the column's parts in its order (rows
    written there give every one, null where they have none). Run it inside the
    transaction that writes the scores."""

    def canonical(typ: str) -> str:
        row = con.execute(f"SELECT typeof(NULL::{typ})").fetchone()
        return str(row[0]) if row else typ

    check_part_names(layout)
    if not any(layout.values()):
        raise CustdynError("score parts: there are none to write")
    kind = _parts_kind(con)
    if canonical(parts_type(layout)) == kind:
        return {g: list(v) for g, v in layout.items() if v}
    merged = _stored_parts(con, kind)
    for g, names in layout.items():
        merged.setdefault(g, [])
        merged[g] += [n for n in names if n not in merged[g]]
    merged = {g: v for g, v in merged.items() if v}
    check_part_names(merged)
    typ = parts_type(merged)
    if canonical(typ) != kind:
        shape = json.dumps({g: {n: "DOUBLE" for n in v} for g, v in merged.items()})
        src = "contributions" if kind == "JSON" else "to_json(contributions)"
        con.execute(f"ALTER TABLE scores ALTER contributions SET DATA TYPE {typ} "
                    f"USING json_transform({src}, {_sql_str(shape)})")
    return merged


def part_sql(con: duckdb.DuckDBPyConnection, group: str, name: str) -> str:
    """A SQL expression of ``scores`` for one part (a DOUBLE; NULL where no row has it),
    whichever type the contributions column has."""
    if _parts_kind(con) == "JSON":
        path = "/" + _pointer(group) + "/" + _pointer(name)
        return f"CAST(json_extract(contributions, {_sql_str(path)}) AS DOUBLE)"
    expr = f"contributions.{_quoted(group)}.{_quoted(name)}"
    try:
        con.execute(f"SELECT {expr} FROM scores LIMIT 0")
    except duckdb.BinderException:
        return "NULL::DOUBLE"
    return expr


def _pointer(key: str) -> str:
    """One key of a JSON pointer (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


# --------------------------------------------------------------------------- results
@dataclass
class BatchResult:
    """What one ingested file did to the workspace."""

    batch_id: int
    source: str
    format: str
    target: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_updated: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    sample_rejections: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- the lock
class _WriterLock:
    """An exclusive advisory lock on ``custdyn.lock`` naming its holder.

    The operating system releases it when the holder dies, so a killed ingest never leaves
    a stale lock behind.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, purpose: str) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkspaceLockedError(
                f"the workspace {self.path.parent} is held for writing by {self.holder()}; "
                "wait for it to finish (or close that session) and try again"
            ) from None
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "user": _user(),
            "host": socket.gethostname(),
            "command": purpose,
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.write(fd, json.dumps(info).encode())
        self._fd = fd

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "another process"
        return (
            f"process {info.get('pid')} ({info.get('command')}) of {info.get('user')} "
            f"on {info.get('host')} since {info.get('since')}"
        )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# --------------------------------------------------------------------------- workspace
@contextlib.contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """DuckDB works within ``limit`` (e.g. ``"4GB"``; beyond it, it spills to the
    workspace's ``.tmp`` folder) inside the block, with its allocator's background threads
    on: they hand the memory of finished queries back to the system within seconds (without
    them, gigabytes freed by large queries stay with the process). The previous settings are
    restored after."""
    row = con.execute("SELECT current_setting('memory_limit'), "
                      "current_setting('allocator_background_threads')").fetchone()
    before = str(row[0]) if row else None
    threads_before = bool(row and row[1])
    con.execute(f"SET memory_limit = {_sql_str(limit)}")
    con.execute("SET allocator_background_threads = true")
    try:
        yield
    finally:
        if not threads_before:
            con.execute("SET allocator_background_threads = false")
        if before:
            con.execute(f"SET memory_limit = {_sql_str(_shown_limit_to_set(before))}")


def release_memory() -> None:
    """Hand freed buffers back to the system: Arrow's pool and the C library keep large
    freed blocks otherwise, and a process doing big steps one after another only grows."""
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


_MEMORY_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
                 "PiB": 2**50}


def _shown_limit_to_set(shown: str) -> str:
    """A memory limit as DuckDB shows it (``"1.1 GiB"``) in a form DuckDB reads back to it.

    DuckDB shows the limit cut to one decimal (``SET memory_limit = '1234MB'`` reads
    ``1.1 GiB``): setting the shown text again would lower the limit by up to a tenth of the
    unit each time, and ``PiB`` (what "no limit" reads as) is not a unit it accepts. The
    middle of the shown tenth, in bytes, reads back the same and is within a tenth of the
    unit of the limit that was set (DuckDB's display is at times a tenth low: 1.40024 GiB
    shows as 1.3 GiB).
    """
    number, _, unit = shown.strip().partition(" ")
    whole, dot, tenths = number.partition(".")
    if unit not in _MEMORY_UNITS or not whole.isdigit() or (dot and not tenths.isdigit()):
        return shown
    step = 10.0 ** -len(tenths) if dot else 0.0
    return f"{int((float(number) + step / 2) * _MEMORY_UNITS[unit])}B"


class Workspace:
    """A custdyn workspace.

    Use :meth:`create` or :meth:`open`; close it (or use ``with``) to release the database.

    Examples
    --------
    >>> import tempfile, custdyn
    >>> d = tempfile.mkdtemp()
    >>> with custdyn.Workspace.create(d) as ws:
    ...     ws.status()["interactions"]
    0
    """

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, settings: Settings,
                 read_only: bool, lock: _WriterLock | None) -> None:
        self.path = path
        self.con = con
        self.settings = settings
        self.read_only = read_only
        self._lock = lock
        self._ibis: Any = None

    # ---- finding, creating, opening
    @staticmethod
    def find(start: str | Path | None = None) -> Path:
        """The workspace folder: ``start`` itself, ``$CUSTDYN_WORKSPACE``, or the current
        folder or one of its parents holding a ``custdyn.toml``."""
        if start is not None:
            p = Path(start).expanduser().resolve()
            if (p / DB_FILE).exists() or (p / SETTINGS_FILE).exists():
                return p
            raise WorkspaceNotFoundError(
                f"{p} is not a custdyn workspace (no {SETTINGS_FILE}); create one with "
                f"`custdyn init {start}`"
            )
        env = os.environ.get(ENV_VAR)
        if env:
            return Workspace.find(env)
        here = Path.cwd().resolve()
        for p in (here, *here.parents):
            if (p / SETTINGS_FILE).exists() and (p / DB_FILE).exists():
                return p
        raise WorkspaceNotFoundError(
            f"no custdyn workspace in {here} or its parents; run `custdyn init DIR`, "
            f"pass --workspace DIR, or set {ENV_VAR}"
        )

    @classmethod
    def create(cls, path: str | Path, settings: Settings | None = None,
               exist_ok: bool = False) -> Workspace:
        """Create a workspace folder (with its database and settings) and open it for writing."""
        p = Path(path).expanduser().resolve()
        if (p / DB_FILE).exists() and not exist_ok:
            raise WorkspaceExistsError(f"{p} already holds a workspace; open it instead")
        p.mkdir(parents=True, exist_ok=True)
        if settings is not None or not (p / SETTINGS_FILE).exists():
            (settings or Settings()).save(p)
        return cls.open(p)

    @classmethod
    def open(cls, path: str | Path | None = None, read_only: bool = False,
             purpose: str | None = None) -> Workspace:
        """Open a workspace. Writers hold an exclusive lock; readers may share."""
        p = cls.find(path)
        settings = Settings.load(p)
        lock = None
        if not read_only:
            lock = _WriterLock(p)
            lock.acquire(purpose or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]))
        try:
            con = duckdb.connect(str(p / DB_FILE), read_only=read_only)
        except duckdb.IOException as e:
            if lock:
                lock.release()
            if "lock" in str(e).lower():
                holder = _WriterLock(p).holder()
                raise WorkspaceLockedError(
                    f"the workspace {p} is held for writing by {holder} "
                    f"(database says: {str(e).splitlines()[0]})"
                ) from None
            raise
        except Exception:
            if lock:
                lock.release()
            raise
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = {_sql_str(str(p / '.tmp'))}")
        ws = cls(p, con, settings, read_only, lock)
        try:
            ws._migrate()
        except Exception:
            ws.close()
            raise
        return ws

    def on_own_cursor(self) -> Workspace:
        """This workspace on a database cursor of its own (the same database, settings and
        folder), for work in a second thread; closing it closes only the cursor."""
        return Workspace(self.path, self.con.cursor(), self.settings, self.read_only, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.con.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"<custdyn.Workspace {self.path} ({mode}, schema v{self.schema_version})>"

    # ---- schema
    @property
    def schema_version(self) -> int:
        try:
            row = self.con.execute(
                "SELECT value FROM _custdyn_meta WHERE key = 'schema_version'"
            ).fetchone()
        except duckdb.CatalogException:
            return 0
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} was written by a newer custdyn (schema v{current}; this one knows "
                f"up to v{SCHEMA_VERSION}); upgrade custdyn"
            )
        if current == SCHEMA_VERSION:
            return
        if self.read_only:
            raise SchemaVersionError(
                f"{self.path} needs schema migrations (v{current} -> v{SCHEMA_VERSION}); "
                "open it once for writing (any writing command does it)"
            )
        self.con.execute("BEGIN TRANSACTION")
        try:
            if current == 0:
                self.con.execute(
                    "CREATE TABLE IF NOT EXISTS _custdyn_meta (key VARCHAR PRIMARY KEY, "
                    "value VARCHAR)"
                )
            for version, _desc, statements in MIGRATIONS:
                if version <= current:
                    continue
                for stmt in statements:
                    self.con.execute(stmt)
            self.con.execute(
                "INSERT OR REPLACE INTO _custdyn_meta VALUES ('schema_version', ?)",
                [str(SCHEMA_VERSION)],
            )
            self.con.execute("COMMIT")
        except Exception:
            self.con.execute("ROLLBACK")
            raise

    # ---- settings
    def save_settings(self) -> None:
        self.settings.save(self.path)

    # ---- Ibis
    @property
    def ibis(self) -> Any:
        """The Ibis backend over this workspace's database."""
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.con)
        return self._ibis

    def table(self, name: str) -> Any:
        """An Ibis table expression for one of the workspace's tables."""
        return self.ibis.table(name)

    # ---- ingest
    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        format: str | None = None,
        mapping: str | Path | Mapping | None = None,
        into: str | None = None,
        strict: bool = False,
        delimiter: str | None = None,
        encoding: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> list[BatchResult]:
        """Ingest each file as one batch in its own transaction.

        Parameters
        ----------
        paths : file(s) or folder(s) of .eml files.
        format : csv, tsv, parquet, jsonl, eml, mbox or cdnow; guessed from the name if None.
        mapping : a mapping file (see :mod:`custdyn.io.mapping`) or a parsed Mapping.
        into : ``interactions`` or ``customers``; guessed from the columns if None.
        strict : refuse the whole file (raise :class:`BatchRefusedError`) if any record is
            invalid, instead of loading the valid ones and keeping the rest in ``rejected``.
        progress : called as ``progress(path, bytes_done, bytes_total)``.
        """
        self._require_writer()
        if isinstance(paths, str | Path):
            paths = [paths]
        m = mapping if isinstance(mapping, Mapping) else (
            load_mapping(mapping) if mapping else Mapping()
        )
        return [
            self._ingest_one(Path(p).expanduser().resolve(), format, m, into, strict,
                             delimiter, encoding, progress)
            for p in paths
        ]

    def _require_writer(self) -> None:
        if self.read_only:
            raise CustdynError("this workspace was opened read-only; open it for writing")

    def _customer_emails(self) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT lower(email), customer_id FROM customers WHERE email IS NOT NULL"
        ).fetchall()
        return dict(rows)

    def _ingest_one(
        self, path: Path, format: str | None, mapping: Mapping, into: str | None, strict: bool,
        delimiter: str | None, encoding: str | None,
        progress: Callable[[str, int, int], None] | None,
    ) -> BatchResult:
        t0 = time.perf_counter()
        if not path.exists():
            raise InputFormatError(f"{path}: no such file or folder")
        fmt = format or detect_format(path)
        src = open_source(
            path, fmt, delimiter=delimiter, encoding=encoding,
            vendor_domains=self.settings.vendor_domains,
            customer_by_email=self._customer_emails() if fmt in ("eml", "mbox") else None,
            currency=self.settings.currency,
        )
        started = dt.datetime.now(dt.UTC)
        con = self.con
        # timestamps written without an offset are local to the mapping's or workspace's zone
        zone = mapping.timezone or src.implied.timezone or self.settings.timezone
        con.execute(f"SET TimeZone = {_sql_str(zone)}")
        # bounded memory: what does not fit spills to the workspace's .tmp folder
        with memory_limit(con, INGEST_MEMORY_LIMIT):
            con.execute("BEGIN TRANSACTION")
            try:
                batch_id = int(con.execute("SELECT nextval('batch_seq')").fetchone()[0])  # type: ignore[index]
                py_errors: list[RowError] = []
                target: str | None = into or mapping.into
                projections: dict[tuple[str, ...], Any] = {}
                staged = _Staged(con, batch_id, str(path))
                for chunk in src.chunks():
                    if not isinstance(chunk, Chunk):  # RESTART: the reader starts over
                        staged.clear()
                        py_errors.clear()
                        continue
                    py_errors.extend(chunk.errors)
                    t = chunk.table
                    if t.num_rows:
                        cols = tuple(t.column_names)
                        if target is None:
                            target = _guess_target(list(cols), mapping, src.implied)
                        if cols not in projections:
                            projections[cols] = normalize_sql(
                                list(cols), target, mapping, implied=src.implied,
                                source_name=path.name, default_currency=self.settings.currency,
                            )
                        t = t.append_column("_row", pa.array(chunk.rows, pa.int64()))
                        staged.add(t, projections[cols], target, skip_valid=strict)
                    if progress:
                        progress(str(path), src.bytes_read, src.total_bytes)
                staged.flush()
                target = target or "interactions"
                result = BatchResult(batch_id, str(path), src.format, target)
                result.rows_read = staged.rows + len(py_errors)
                if py_errors:
                    con.executemany(
                        "INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?)",
                        [(batch_id, str(path), e.row, e.field, e.reason, e.raw) for e in py_errors],
                    )
                n_rej = staged.rejected + len(py_errors)
                result.rows_rejected = n_rej
                if n_rej:
                    result.sample_rejections = [
                        {"row": r, "field": f, "reason": why}
                        for r, f, why in con.execute(
                            "SELECT row_number, field, reason FROM rejected WHERE batch_id = ? "
                            "ORDER BY row_number LIMIT 5", [batch_id]
                        ).fetchall()
                    ]
                if strict and n_rej:
                    raise BatchRefusedError(
                        f"{path}: refused (--strict): {n_rej:,} of {result.rows_read:,} records are "
                        "invalid; nothing was loaded. First: "
                        + "; ".join(f"row {s['row']}: {s['reason']}" for s in result.sample_rejections),
                        result.sample_rejections,
                    )
                if target == "interactions":
                    self._dedupe_interactions(batch_id, staged.valid, result)
                else:
                    names = ", ".join(q(f) for f in CUSTOMER_FIELDS)
                    staged.ensure_customers()
                    self._load_customers(f"(SELECT _row, {names} FROM _norm)", batch_id, result)
                    con.execute("DROP TABLE _norm")
                con.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, str(path), src.format, target, _fingerprint(path),
                     str(mapping.path) if mapping.path else None, strict,
                     result.rows_read, result.rows_loaded, result.rows_duplicate,
                     result.rows_updated, result.rows_rejected, started,
                     dt.datetime.now(dt.UTC), __version__],
                )
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.execute("SET TimeZone = 'UTC'")
        result.seconds = time.perf_counter() - t0
        return result

    def _dedupe_interactions(self, batch_id: int, n_valid: int, result: BatchResult) -> None:
        """Keep the first record of each id within the batch, unless the workspace already
        had it. Where records sharing an id may differ, the batch was appended in source order,
        so the first is the one with the lowest rowid; elsewhere they are equal."""
        con = self.con
        deleted = 0
        # ids the workspace already holds (the join builds on the smaller side)
        had_any = con.execute(
            f"SELECT 1 FROM interactions WHERE batch_id IS DISTINCT FROM {batch_id} LIMIT 1"
        ).fetchone()
        if had_any:
            con.execute(
                f"""DELETE FROM interactions WHERE rowid IN (
                    SELECT n.rowid FROM interactions n JOIN interactions o
                      ON o.interaction_id = n.interaction_id
                    WHERE n.batch_id = {batch_id} AND o.batch_id IS DISTINCT FROM {batch_id})"""
            )
            deleted += int(con.fetchone()[0])  # type: ignore[index]
        # repeats within the batch: group on a 64-bit hash first (cheap), then compare the ids
        # themselves only where a hash repeats (usually nowhere: then one scan is all it costs)
        mine = f"FROM interactions WHERE batch_id = {batch_id}"
        con.execute(f"""CREATE TEMP TABLE _rep AS
            SELECT hash(interaction_id) AS h {mine} GROUP BY 1 HAVING count(*) > 1""")
        if con.execute("SELECT count(*) FROM _rep").fetchone()[0]:  # type: ignore[index]
            con.execute(
                f"""DELETE FROM interactions WHERE rowid IN (
                    SELECT rid FROM (
                        SELECT rowid AS rid, interaction_id {mine}
                          AND hash(interaction_id) IN (SELECT h FROM _rep))
                    QUALIFY rid <> min(rid) OVER (PARTITION BY interaction_id))"""
            )
            deleted += int(con.fetchone()[0])  # type: ignore[index]
        con.execute("DROP TABLE _rep")
        result.rows_loaded = n_valid - deleted
        result.rows_duplicate = deleted

    def _load_customers(self, valid: str, batch_id: int, result: BatchResult) -> None:
        con = self.con
        con.execute(
            f"""CREATE TEMP TABLE _cust AS SELECT * EXCLUDE (_row) FROM {valid}
            QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY _row DESC) = 1"""
        )
        n_valid = int(con.execute(f"SELECT count(*) FROM {valid}").fetchone()[0])  # type: ignore[index]
        names = ", ".join(q(f) for f in CUSTOMER_FIELDS)
        con.execute(
            f"""INSERT INTO customers SELECT {names}, {batch_id} FROM _cust c
            WHERE NOT EXISTS (SELECT 1 FROM customers x WHERE x.customer_id = c.customer_id)"""
        )
        loaded = int(con.fetchone()[0])  # type: ignore[index]
        other = [f for f in CUSTOMER_FIELDS if f != "customer_id"]
        sets = ", ".join(f"{q(f)} = coalesce(c.{q(f)}, customers.{q(f)})" for f in other)
        changed = " OR ".join(
            f"coalesce(c.{q(f)}, customers.{q(f)}) IS DISTINCT FROM customers.{q(f)}"
            for f in other
        )
        con.execute(
            f"""UPDATE customers SET {sets}, batch_id = {batch_id} FROM _cust c
            WHERE customers.customer_id = c.customer_id AND customers.batch_id <> {batch_id}
              AND ({changed})"""
        )
        updated = int(con.fetchone()[0])  # type: ignore[index]
        con.execute("DROP TABLE _cust")
        result.rows_loaded = loaded
        result.rows_updated = updated
        result.rows_duplicate = n_valid - loaded - updated

    # ---- reading
    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run SQL against the workspace and return an Arrow table."""
        return self.con.execute(sql, params or []).to_arrow_table()

    def latest_run(self, kind: str, fingerprint: str) -> tuple[str, Any, Any] | None:
        """The newest ``model_runs`` row of ``kind`` with this data ``fingerprint``:
        ``(run_id, params, diagnostics)`` with the JSON decoded, or None."""
        row = self.con.execute(
            "SELECT run_id, params, diagnostics FROM model_runs WHERE kind = ? AND "
            "fingerprint = ? ORDER BY created_at DESC LIMIT 1", [kind, fingerprint]).fetchone()
        if row is None:
            return None
        return (str(row[0]), json.loads(row[1]) if row[1] is not None else None,
                json.loads(row[2]) if row[2] is not None else None)

    def status(self) -> dict[str, Any]:
        """Counts by channel, kind and direction, the time span, and the batch history."""
        c = self.con

        def counts(col: str) -> dict[str, int]:
            rows = c.execute(
                f"SELECT coalesce({col}, '(none)'), count(*) FROM interactions GROUP BY 1 "
                "ORDER BY 2 DESC"
            ).fetchall()
            return {k: int(v) for k, v in rows}

        n, first, last = c.execute(
            "SELECT count(*), min(occurred_at), max(occurred_at) FROM interactions"
        ).fetchone()  # type: ignore[misc]
        n_cust_in_log = c.execute(
            "SELECT count(DISTINCT customer_id) FROM interactions"
        ).fetchone()[0]  # type: ignore[index]
        batches = c.execute(
            "SELECT batch_id, source, format, target, rows_read, rows_loaded, rows_duplicate, "
            "rows_updated, rows_rejected, finished_at FROM batches ORDER BY batch_id"
        ).to_arrow_table().to_pylist()
        for b in batches:
            b["finished_at"] = b["finished_at"].isoformat() if b["finished_at"] else None
        return {
            "workspace": str(self.path),
            "schema_version": self.schema_version,
            "interactions": int(n),
            "customers": int(c.execute("SELECT count(*) FROM customers").fetchone()[0]),  # type: ignore[index]
            "customers_with_interactions": int(n_cust_in_log),
            "first": first.isoformat() if first else None,
            "last": last.isoformat() if last else None,
            "by_channel": counts("channel"),
            "by_kind": counts("kind"),
            "by_direction": counts("direction"),
            "rejected": int(c.execute("SELECT count(*) FROM rejected").fetchone()[0]),  # type: ignore[index]
            "batches": batches,
        }

    def rejected(self, batch: int | None = None, limit: int | None = 100) -> pa.Table:
        """Rejected records (newest batch first), with row number, field and reason."""
        where = "WHERE batch_id = ?" if batch is not None else ""
        lim = f"LIMIT {int(limit)}" if limit else ""
        return self.query(
            f"SELECT batch_id, source, row_number, field, reason, raw FROM rejected {where} "
            f"ORDER BY batch_id DESC, row_number {lim}",
            [batch] if batch is not None else [],
        )

    def customers(self, limit: int | None = 100, search: str | None = None) -> pa.Table:
        """Customers with their interaction counts, first and last contact, and spend."""
        where, params = "", []
        if search:
            where = "WHERE c.customer_id ILIKE ? OR c.name ILIKE ? OR c.email ILIKE ?"
            params = [f"%{search}%"] * 3
        lim = f"LIMIT {int(limit)}" if limit else ""
        return self.query(
            f"""WITH agg AS (
                SELECT customer_id, count(*) AS interactions, min(occurred_at) AS first_seen,
                       max(occurred_at) AS last_seen,
                       count(*) FILTER (WHERE kind = 'order') AS orders,
                       sum(amount) FILTER (WHERE kind IN ('order', 'return')) AS spend
                FROM interactions GROUP BY customer_id)
            SELECT coalesce(c.customer_id, a.customer_id) AS customer_id, c.name, c.email,
                   c.segment, c.country, c.language, c.created_at,
                   coalesce(a.interactions, 0) AS interactions, coalesce(a.orders, 0) AS orders,
                   a.spend, a.first_seen, a.last_seen
            FROM customers c FULL OUTER JOIN agg a ON a.customer_id = c.customer_id
            {where}
            ORDER BY a.interactions DESC NULLS LAST, customer_id {lim}""",
            params,
        )

    def timeline(self, customer_id: str) -> pa.Table:
        """Everything that happened between the vendor and one customer, oldest first."""
        t = self.query(
            """SELECT occurred_at, channel, kind, direction, amount, currency, subject, text,
                      thread_id, agent_id, source, interaction_id
               FROM interactions WHERE customer_id = ? ORDER BY occurred_at, interaction_id""",
            [customer_id],
        )
        if t.num_rows == 0:
            known = self.con.execute(
                "SELECT 1 FROM customers WHERE customer_id = ?", [customer_id]
            ).fetchone()
            if not known:
                near = [r[0] for r in self.con.execute(
                    "SELECT customer_id FROM (SELECT DISTINCT customer_id FROM interactions) "
                    "ORDER BY jaro_winkler_similarity(customer_id, ?) DESC LIMIT 3",
                    [customer_id],
                ).fetchall()]
                hint = f" Did you mean: {', '.join(near)}?" if near else ""
                raise CustdynError(f"no customer {customer_id!r} in this workspace.{hint}")
        return t

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        t = self.query("SELECT * FROM customers WHERE customer_id = ?", [customer_id])
        return t.to_pylist()[0] if t.num_rows else None

    def sample_customer(self) -> str | None:
        """A customer with a rich history (for tours and demos)."""
        row = self.con.execute(
            """SELECT customer_id FROM interactions GROUP BY customer_id
               ORDER BY count(DISTINCT channel) DESC, count(*) DESC, customer_id LIMIT 1"""
        ).fetchone()
        return row[0] if row else None

    def export(self, directory: str | Path, tables: Iterable[str] | None = None) -> list[Path]:
        """Write tables as Parquet files into ``directory``; return the files written."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        names = list(tables or ["interactions", "customers", "batches", "rejected"])
        known = {r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()}
        written = []
        for name in names:
            if name not in known:
                raise CustdynError(
                    f"no table {name!r}; tables: {', '.join(sorted(k for k in known if not k.startswith('_')))}"
                )
            f = out / f"{name}.parquet"
            self.con.execute(f"COPY {q(name)} TO {_sql_str(str(f))} (FORMAT parquet)")
            written.append(f)
        return written

    def iter_batches(self) -> Iterator[dict[str, Any]]:
        yield from self.query("SELECT * FROM batches ORDER BY batch_id").to_pylist()


class _Staged:
    """Where one batch's chunks go, each parsed and checked once: valid interactions straight
    into ``interactions`` (in source order where the source gives ids, so the first of a
    repeated id has the lowest rowid), valid customers into the temporary ``_norm`` for the upsert, and rejected records,
    with the raw record as JSON, into ``rejected``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, batch_id: int, source: str) -> None:
        self.con = con
        self.batch_id = batch_id
        self.source = source
        self.rows = 0  # records seen
        self.valid = 0  # records that passed every check and were written
        self.rejected = 0
        self._norm = False
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._pending_how: tuple[Any, str, bool] | None = None

    def add(self, t: pa.Table, proj: Any, target: str, skip_valid: bool = False) -> None:
        """Take one chunk (a table of raw columns plus ``_row``).

        Chunks are gathered and written in whole row groups of the table (each statement
        that ends in a part-filled row group costs a little extra at every later append)."""
        how = (proj, target, skip_valid)
        if self._pending and (how[0] is not self._pending_how[0]  # type: ignore[index]
                              or t.schema != self._pending[0].schema):
            self.flush()
        self._pending.append(t)
        self._pending_how = how
        self._pending_rows += t.num_rows
        self._pending_bytes += t.nbytes
        if self._pending_rows >= FLUSH_ROWS:
            keep = self._pending_rows % ROW_GROUP_ROWS
            self.flush(keep)
        elif self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self, keep: int = 0) -> None:
        """Write what is pending but the last ``keep`` rows."""
        if not self._pending or self._pending_how is None:
            return
        table = pa.concat_tables(self._pending)
        n = table.num_rows - keep
        rest = table.slice(n) if keep else None
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if n:
            self._write(table.slice(0, n), *self._pending_how)
        if rest is not None and rest.num_rows:
            self._pending, self._pending_rows, self._pending_bytes = (
                [rest], rest.num_rows, rest.nbytes)

    def _write(self, t: pa.Table, proj: Any, target: str, skip_valid: bool = False) -> None:
        """Check and write one table of raw columns plus ``_row``.

        Valid records are parsed, checked and written in one statement. A chunk with
        rejected records is checked a second time to write those with their reasons (a clean
        chunk, the usual case, costs one pass). ``skip_valid``: once a record is rejected, stop
        writing valid ones (``--strict`` refuses the batch anyway; rejections are still counted
        to the end).
        """
        con = self.con
        names = _fields(target)
        cols = ", ".join(q(f) for f in names)
        query = proj.select("_chunk", names)
        n = t.num_rows

        def stream(name: str) -> None:
            # a stream, not the table: DuckDB holds what a query in a transaction scanned
            # until the commit, and a consumed stream holds nothing
            with contextlib.suppress(Exception):
                con.unregister(name)
            con.register(name, pa.RecordBatchReader.from_batches(t.schema, iter(t.to_batches())))

        stream("_chunk")
        # The filter on _reason must run after the projection: pushed below it, the optimizer
        # would inline (and so repeat) every parse and check into the filter.
        before = str(con.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0])  # type: ignore[index]
        off = ",".join(x for x in (before, "filter_pushdown") if x)
        con.execute(f"SET disabled_optimizers = {_sql_str(off)}")
        try:
            n_ok = None
            if not (skip_valid and self.rejected):
                valid = f"FROM ({query}) WHERE _reason IS NULL"
                if target == "interactions":
                    # source order decides which of a repeated id is kept (lowest rowid)
                    order = " ORDER BY _row" if proj.repeats_may_differ else ""
                    con.execute(f"INSERT INTO interactions ({cols}, batch_id) "
                                f"SELECT {cols}, {self.batch_id} {valid}{order}")
                elif self._norm:
                    con.execute(f"INSERT INTO _norm SELECT _row, {cols} {valid}")
                else:
                    con.execute(f"CREATE TEMP TABLE _norm AS SELECT _row, {cols} {valid}")
                    self._norm = True
                    n_ok = int(con.execute("SELECT count(*) FROM _norm").fetchone()[0])  # type: ignore[index]
                if n_ok is None:
                    n_ok = int(con.fetchone()[0])  # type: ignore[index]
                self.valid += n_ok
            self.rows += n
            if n_ok is None or n_ok < n:
                stream("_chunk")
                stream("_chunk_raw")
                con.execute(
                    f"""INSERT INTO rejected
                    SELECT {self.batch_id}, {_sql_str(self.source)}, c._row, r._field, r._reason,
                           json_merge_patch(to_json(c), '{{"_row": null}}')::VARCHAR
                    FROM _chunk_raw c JOIN (SELECT _row, _reason, _field FROM ({query})
                                        WHERE _reason IS NOT NULL) r ON r._row = c._row"""
                )
                self.rejected += int(con.fetchone()[0])  # type: ignore[index]
        finally:
            con.execute(f"SET disabled_optimizers = {_sql_str(before)}")
            for name in ("_chunk", "_chunk_raw"):
                with contextlib.suppress(Exception):
                    con.unregister(name)

    def clear(self) -> None:
        """Forget everything written for this batch (the reader starts over)."""
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self.con.execute(f"DELETE FROM interactions WHERE batch_id = {self.batch_id}")
        self.con.execute(f"DELETE FROM rejected WHERE batch_id = {self.batch_id}")
        if self._norm:
            self.con.execute("DELETE FROM _norm")
        self.rows = self.valid = self.rejected = 0

    def ensure_customers(self) -> None:
        """Create an empty ``_norm`` when no valid customer record arrived."""
        if self._norm:
            return
        cols = ", ".join(
            f"NULL::{'TIMESTAMPTZ' if f == 'created_at' else 'VARCHAR'} AS {q(f)}"
            for f in CUSTOMER_FIELDS
        )
        self.con.execute(f"CREATE TEMP TABLE _norm AS SELECT NULL::BIGINT AS _row, {cols} WHERE false")
        self._norm = True


def _fields(target: str) -> tuple[str, ...]:
    return INTERACTION_FIELDS if target == "interactions" else CUSTOMER_FIELDS


def _guess_target(cols: list[str], mapping: Mapping, implied: Mapping) -> str:
    mapped = {**{c: c for c in cols}, **implied.columns, **mapping.columns}
    targets = {mapped.get(c, c).lower() for c in cols} | set(implied.defaults) | set(
        mapping.derive)
    if "occurred_at" in targets:
        return "interactions"
    if "customer_id" in targets:
        return "customers"
    raise InputFormatError(
        f"cannot tell whether the columns {cols[:12]} are interactions or customers: map a "
        "column to occurred_at (interactions) or pass --into customers"
    )


def _fingerprint(path: Path) -> str:
    """A cheap content fingerprint: size plus the first and last MiB (sha256)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(str(p.stat().st_size).encode())
        return "dir-" + h.hexdigest()[:32]
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:32]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
