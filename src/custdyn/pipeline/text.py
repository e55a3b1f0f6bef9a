"""Text signals for the workspace: ``enrich`` scores the text of interactions that have no
``text_signals`` row for the chosen engine yet, committing batch by batch, so an interrupted
run resumes where it stopped."""

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
    #: rows of the engine's previous version taken over for texts it scores as before
    carried: int = 0
    #: how common each language is among the workspace's messages, as detection used it
    language_shares: dict[str, float] | None = None
    #: whether this run learnt those shares (first run, ``relearn_languages``, other
    #: languages named in ``custdyn.toml``, or the customers' messages doubled since)
    languages_learnt: bool = False


def pending_texts(ws: Workspace, engine_version: str, directions: tuple[str, ...]) -> int:
    """How many interactions with text still lack a signal row for ``engine_version``."""
    cur = ws.con.cursor()
    try:
        return _find_pending(cur, engine_version, directions)
    finally:
        cur.close()


# the pending messages are found once: their row ids into a temporary table (a few MB even
# when every message is pending), counted there and read back through it (the scan of
# interactions skips all but the row groups those ids fall in). The rows with a text and no
# signals come first, then, among those only, the texts that are not blank: a blank check
# on every text reads every text (about a second per million)
_PENDING_IDS = """
    CREATE OR REPLACE TEMP TABLE _custdyn_unscored AS
    SELECT i.rowid AS rid FROM interactions i
    WHERE i.text IS NOT NULL
      AND (i.direction IS NULL OR i.direction IN ({dirs}))
      AND NOT EXISTS (SELECT 1 FROM text_signals s
                      WHERE s.interaction_id = i.interaction_id AND s.engine = ?)
"""
_PENDING_TEXTS = """
    CREATE OR REPLACE TEMP TABLE _custdyn_pending AS
    SELECT u.rid FROM _custdyn_unscored u JOIN interactions i ON i.rowid = u.rid
    WHERE length(trim(i.text)) > 0
"""
_PENDING_READ = """
    SELECT i.interaction_id, i.text, c.language
    FROM interactions i LEFT JOIN customers c ON c.customer_id = i.customer_id
    WHERE i.rowid IN (SELECT rid FROM _custdyn_pending)
    ORDER BY i.occurred_at, i.interaction_id
"""


def _find_pending(cur: Any, engine_version: str, directions: tuple[str, ...]) -> int:
    """The pending messages' row ids into the temporary table ``_custdyn_pending`` of the
    cursor ``cur`` (it goes when the cursor closes); how many there are."""
    cur.execute(_PENDING_IDS.format(dirs=_dirs(directions)), [engine_version])
    cur.execute(_PENDING_TEXTS)
    cur.execute("DROP TABLE _custdyn_unscored")
    row = cur.execute("SELECT count(*) FROM _custdyn_pending").fetchone()
    return int(row[0]) if row else 0


def _dirs(directions: tuple[str, ...]) -> str:
    return ", ".join("'" + d.replace("'", "''") + "'" for d in directions)


def resolve_text_engine(ws: Workspace, fallback: str) -> str:
    """The text engine a workspace uses when none is named: the text room's choice
    (``custdyn.text.default_engine_name``, e.g. a trained workspace model) where it offers
    one, else ``fallback``. Where the fallback is the fast ``bulk`` engine, a bulk table the
    workspace distilled from its default engine (``custdyn.text.bulk_engine_name``) comes
    first: it reads as that engine does, at the bulk engine's speed."""
    import custdyn.text as text

    if fallback == "bulk":
        fast = getattr(text, "bulk_engine_name", None)
        name = str(fast(ws)) if fast is not None else fallback
        if name != fallback:
            return name
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
    relearn_languages: bool = False,
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
    relearn_languages : learn again how common each language is among the messages
        (``custdyn.text.analyzer.learn_language_shares``). They are learnt on the first run and kept;
        detection reads each message with them, so a short Norwegian message is not read
        as Danish in a workspace of Norwegian messages. Messages scored before keep their
        language.
    """
    import time

    from custdyn.text import CompetitorMatcher, TextAnalyzer, enrich_batches
    from custdyn.text.analyzer import ensure_language_shares

    t0 = time.perf_counter()
    shares, learnt = ensure_language_shares(ws, relearn=relearn_languages)
    analyzer = TextAnalyzer.in_workspace(ws, engine or resolve_text_engine(ws, "default"),
                                         language_shares=shares)
    version = analyzer.version
    if batch_size is None:
        batch_size = 8192 if getattr(analyzer.engine, "name", "") == "bulk" else 512
    carried = _carry_over(ws, analyzer.engine, version)
    already = int(ws.con.execute(
        "SELECT count(*) FROM text_signals WHERE engine = ?", [version]).fetchone()[0])  # type: ignore[index]
    matcher = CompetitorMatcher(ws.settings.competitors) if ws.settings.competitors else None
    done = 0
    # a second cursor reads while the first one writes; the temporary table of the pending
    # rows is its own, and goes when it closes
    reader = ws.con.cursor()
    try:
        total = _find_pending(reader, version, directions)
    except BaseException:
        reader.close()
        raise
    if limit is not None:
        total = min(total, limit)

    def rows() -> Iterator[tuple[str, str, str | None]]:
        if total == 0:
            return
        reader.execute(_PENDING_READ)
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

    try:
        for table in enrich_batches(rows(), analyzer, matcher=matcher, batch_size=batch_size):
            ws.con.execute("BEGIN TRANSACTION")
            ws.con.register("_signals", table)
            ws.con.execute("INSERT OR IGNORE INTO text_signals SELECT * FROM _signals")
            ws.con.unregister("_signals")
            ws.con.execute("COMMIT")
            done += table.num_rows
            if progress:
                progress(done, total)
    finally:
        reader.close()  # its temporary table goes with it
    return EnrichResult(version, total, done, already, time.perf_counter() - t0, carried,
                        shares, learnt)  # fmt: skip


def _carry_over(ws: Workspace, engine: Any, version: str) -> int:
    """Copy the rows of the engine's previous version for texts the new one scores exactly as
    before (``engine.carries_from`` names the version and the longest text in bytes; none that
    matches ``engine.carries_unless``, a regular expression over the lower-cased text), so a
    new version scores again only what it reads differently. Returns the count."""
    spec = getattr(engine, "carries_from", None)
    if not spec:
        return 0
    old, max_bytes = spec
    unless = getattr(engine, "carries_unless", None) or r"[^\s\S]"  # that: matches no text
    ws.con.execute("BEGIN TRANSACTION")
    try:
        inserted = ws.con.execute(
            "INSERT OR IGNORE INTO text_signals SELECT s.* REPLACE (CAST(? AS VARCHAR) AS engine) "
            "FROM text_signals s JOIN interactions i USING (interaction_id) "
            "WHERE s.engine = ? AND strlen(coalesce(i.text, '')) <= ? "
            "AND NOT regexp_matches(lower(coalesce(i.text, '')), ?)",
            [version, old, int(max_bytes), unless],
        ).fetchone()
        ws.con.execute("COMMIT")
    except BaseException:
        ws.con.execute("ROLLBACK")
        raise
    return int(inserted[0]) if inserted else 0  # the rows the INSERT added


def language_status(ws: Workspace) -> dict[str, Any] | None:
    """How common each language is among the customers' messages, as language detection
    reads them (``custdyn.text.analyzer.language_shares_status``), ready for JSON: ``shares``,
    ``learnt_from``, ``messages``, ``learnt_at`` (ISO time), ``learnt_among`` (a list, or
    None: all languages); None when never learnt."""
    from custdyn.text.analyzer import language_shares_status

    s = language_shares_status(ws)
    if s is None:
        return None
    among = s["learnt_among"]
    return {**s, "learnt_at": s["learnt_at"].isoformat(),
            "learnt_among": None if among is None else list(among)}  # fmt: skip


def text_status(ws: Workspace) -> list[dict[str, Any]]:
    """Per engine version in ``text_signals``: ``engine``, ``name`` (what ``--engine`` takes),
    ``rows``, ``last_scored`` (ISO time) and ``current``: the version the engine of that name scores with now (equal to
    ``engine`` when up to date; another string when custdyn has changed how it scores, so
    ``custdyn enrich --engine NAME`` would score the messages again; None for an engine
    this workspace cannot load here)."""
    from custdyn.text.analyzer import TextAnalyzer

    rows = ws.con.execute(
        "SELECT engine, count(*), max(scored_at) FROM text_signals GROUP BY engine "
        "ORDER BY count(*) DESC, engine").fetchall()
    out: list[dict[str, Any]] = []
    for version, n, last in rows:
        name = _engine_name(str(version))
        try:
            current: str | None = TextAnalyzer(name, workspace=ws.path).version
        except Exception:  # a model folder gone, an optional extra missing
            current = None
        out.append({"engine": str(version), "name": name, "rows": int(n),
                    "last_scored": last.isoformat() if last is not None else None,
                    "current": current})  # fmt: skip
    return out


def _engine_name(version: str) -> str:
    """The name an engine is chosen by, from a stored version: ``bulk:1`` and
    ``bulk:1+body`` -> ``bulk``; ``hf:NAME:HASH`` -> ``hf:NAME``; ``workspace:v2`` and
    ``workspace:v2+heads2`` -> ``workspace:v2``."""
    if version.startswith("workspace:"):
        return version.split("+")[0]
    head, _, rest = version.partition(":")
    if head in ("hf", "onnx"):
        return f"{head}:{rest.split(':')[0]}"
    return head


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
