"""Writing analyze's results: the reasons JSON built in bulk equals the row-by-row texts,
the parts (a STRUCT column) read as the JSON text they were written as, ``scores`` (no primary-key index since schema v5) keeps one row per
customer and as_of, the v5 migration keeps the rows, and ``enrich`` reads the pending
messages the straightforward anti-join finds, in its order."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from custdyn.pipeline.analysis import _reasons_text, _reasons_texts
from custdyn.store import Workspace

# ---------------------------------------------------------------- reasons, in bulk

_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(rows=st.integers(0, 30), top=st.integers(0, 4), data=st.data())
def test_reasons_texts_equal_each_rows_reasons_text(rows, top, data):
    names = [json.dumps(f) for f in ("a", 'q "x"', "caf\u00e9", "n\\m", "e")]
    which = data.draw(hnp.arrays(np.int64, (rows, top), elements=st.integers(-1, 4)))
    values = data.draw(hnp.arrays(np.float64, (rows, top), elements=_floats))
    pushes = data.draw(hnp.arrays(np.float64, (rows, top), elements=_floats))
    got = _reasons_texts(names, which, values, pushes)
    assert got == [_reasons_text(names, w, v, x) for w, v, x in
                   zip(which.tolist(), values.tolist(), pushes.tolist(), strict=True)]
    for text, w, v, x in zip(got, which.tolist(), values.tolist(), pushes.tolist(),
                             strict=True):
        parsed = json.loads(text)  # valid JSON, the features named, the numbers themselves
        kept = [(j, a, b) for j, a, b in zip(w, v, x, strict=True) if j >= 0]
        assert [r["feature"] for r in parsed] == [json.loads(names[j]) for j, _, _ in kept]
        for r, (_, a, b) in zip(parsed, kept, strict=True):
            assert r["value"] == (a if math.isfinite(a) else None)
            assert r["contribution"] == (b if math.isfinite(b) else None)


def test_reasons_texts_refuses_a_flat_array():
    with pytest.raises(ValueError, match="shape"):
        _reasons_texts(['"a"'], np.zeros(3, np.int64), np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------- contributions (parts)

def _reference_sql(groups: dict[str, dict[str, object]]) -> str:
    """The contributions SQL as first written: json_object at every level."""
    def lit(text: str) -> str:
        return "'" + str(text).replace("'", "''") + "'"

    parts, k = [], 0
    for group, members in groups.items():
        inner = []
        for name in members:
            k += 1
            inner.append(f"{lit(name)}, c{k}")
        parts.append(f"{lit(group)}, json_object({', '.join(inner)})")
    return f"json_object({', '.join(parts)})"


def _build(sql: str, groups: dict[str, dict[str, np.ndarray]], n: int) -> list[str]:
    cols = {}
    for members in groups.values():
        for v in members.values():
            cols[f"c{len(cols) + 1}"] = pa.array(np.where(np.isfinite(v), v, np.nan),
                                                 pa.float64(), from_pandas=True)
    con = duckdb.connect()
    con.register("t", pa.table({"_row": np.arange(n, dtype=np.int64), **cols}))
    return [r[0] for r in con.execute(f"SELECT ({sql})::VARCHAR FROM t ORDER BY _row")
            .fetchall()]


_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                 max_size=6)
_level = st.lists(_names, min_size=1, max_size=4, unique_by=str.casefold)


@given(groups=_level.flatmap(lambda gs: st.tuples(st.just(gs), st.lists(
    _level, min_size=len(gs), max_size=len(gs)))), n=st.integers(1, 6), data=st.data())
def test_parts_struct_writes_the_json_object_text(groups, n, data):
    """The parts as a STRUCT column: ``to_json`` of a row is the text json_object wrote
    when the column was JSON, with the numbers themselves (non-finite as null)."""
    from custdyn.pipeline.analysis import _parts_struct

    layout = dict(zip(groups[0], groups[1], strict=True))
    values = {g: {name: data.draw(hnp.arrays(np.float64, n, elements=_floats))
                  for name in names} for g, names in layout.items()}
    con = duckdb.connect()
    con.register("t", pa.table({"_row": np.arange(n, dtype=np.int64),
                                "p": _parts_struct(values, layout, n)}))
    got = [r[0] for r in con.execute("SELECT to_json(p)::VARCHAR FROM t ORDER BY _row")
           .fetchall()]
    assert got == _build(_reference_sql(values), values, n)
    for i, text in enumerate(got):
        parsed = json.loads(text)
        assert list(parsed) == list(values)
        for g, members in values.items():
            assert list(parsed[g]) == list(members)
            for name, v in members.items():
                assert parsed[g][name] == (float(v[i]) if math.isfinite(v[i]) else None)


def test_parts_refuse_names_a_struct_cannot_hold():
    from custdyn.errors import CustdynError
    from custdyn.store import check_part_names

    check_part_names({"health": ["p_alive", "it's \"q\"", "caf\u00e9"], "trend": ["30d"]})
    for bad in ({"health": ["x", "X"]}, {"health": [""]}, {"a": ["x"], "A": ["y"]}):
        with pytest.raises(CustdynError, match="distinct, non-empty"):
            check_part_names(bad)


def _kind(w: Workspace) -> str:
    return w.con.execute("SELECT data_type FROM information_schema.columns WHERE "
                         "table_name = 'scores' AND column_name = 'contributions'").fetchone()[0]


def test_parts_column_takes_the_json_rows_and_widens_for_new_parts(tmp_path: Path):
    """A workspace with JSON parts (before they were a struct) keeps them: the column
    becomes a STRUCT of every part written so far; another scorecard widens it again."""
    from custdyn.store import fit_parts_column, part_sql

    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with Workspace.create(tmp_path / "w") as w:
        assert _kind(w) == "JSON"
        old = [{"health": {"a": 1.5, "b": None}, "health_trend": {"30d": -2.0}},
               {"health": {"a": 3.0}, "health_trend": {}}]
        w.con.executemany("INSERT INTO scores (customer_id, as_of, contributions) "
                          "VALUES (?, ?, ?)", [[f"C{i}", at, json.dumps(p)]
                                               for i, p in enumerate(old)])
        trend = part_sql(w.con, "health_trend", "30d")
        assert [r[0] for r in w.con.execute(f"SELECT {trend} FROM scores ORDER BY 1")
                .fetchall()] == [-2.0, None]
        w.con.execute("BEGIN TRANSACTION")
        layout = fit_parts_column(w.con, {"health": ["a", "c"], "loyalty": ["x"]})
        w.con.execute("COMMIT")
        assert layout == {"health": ["a", "b", "c"], "health_trend": ["30d"], "loyalty": ["x"]}
        assert _kind(w).startswith("STRUCT(")
        rows = [json.loads(r[0]) for r in w.con.execute(
            "SELECT to_json(contributions) FROM scores ORDER BY customer_id").fetchall()]
        assert rows[0] == {"health": {"a": 1.5, "b": None, "c": None},
                           "health_trend": {"30d": -2.0}, "loyalty": None}
        assert rows[1]["health"] == {"a": 3.0, "b": None, "c": None}
        trend = part_sql(w.con, "health_trend", "30d")
        assert [r[0] for r in w.con.execute(f"SELECT {trend} FROM scores ORDER BY 1")
                .fetchall()] == [-2.0, None]
        assert part_sql(w.con, "health_trend", "90d") == "NULL::DOUBLE"
        # the same parts again: nothing to change; fewer: the column keeps them all
        before = _kind(w)
        assert fit_parts_column(w.con, {"health": ["c", "a"]}) == layout
        assert _kind(w) == before
        # a part the column lacks, then a rollback: as it was
        w.con.execute("BEGIN TRANSACTION")
        fit_parts_column(w.con, {"attention": ["reply"]})
        assert "attention" in _kind(w)
        w.con.execute("ROLLBACK")
        assert _kind(w) == before


# ---------------------------------------------------------------- the scores table

def _scores_constraints(ws: Workspace) -> list[str]:
    return [r[0] for r in ws.con.execute(
        "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'scores' "
        "ORDER BY 1").fetchall()]


def test_v5_migration_keeps_the_scores_and_drops_only_the_index(tmp_path: Path):
    from custdyn import store

    orig, orig_v = store.MIGRATIONS, store.SCHEMA_VERSION
    store.MIGRATIONS, store.SCHEMA_VERSION = orig[:4], 4
    try:
        with Workspace.create(tmp_path / "w") as w:
            assert "PRIMARY KEY" in _scores_constraints(w)
            at = [dt.datetime(2025, 1, d, tzinfo=dt.UTC) for d in (1, 8)]
            w.con.executemany(
                "INSERT INTO scores VALUES (?, ?, 'run-1', ?, 1, 2, 3, 2, 4, 0.5, 60, 55, 70,"
                " 'both high', 'active', ?, ?)",
                [[f"C{i}", a, i / 10, json.dumps([{"feature": "f", "value": i}]),
                  json.dumps({"health": {"p_alive": i * 1.5}})]
                 for a in at for i in range(7)])
            before = w.con.execute("SELECT * FROM scores ORDER BY as_of, customer_id").fetchall()
    finally:
        store.MIGRATIONS, store.SCHEMA_VERSION = orig, orig_v
    with Workspace.open(tmp_path / "w") as w:
        assert w.schema_version == store.SCHEMA_VERSION >= 5
        after = w.con.execute("SELECT * FROM scores ORDER BY as_of, customer_id").fetchall()
        assert after == before and len(after) == 14
        cons = _scores_constraints(w)
        assert "PRIMARY KEY" not in cons and cons.count("NOT NULL") == 2
        with pytest.raises(duckdb.ConstraintException):
            w.con.execute("INSERT INTO scores (customer_id, as_of) VALUES (NULL, now())")
        kinds = dict(w.con.execute("SELECT column_name, data_type FROM information_schema.columns"
                                   " WHERE table_name = 'scores'").fetchall())
        assert kinds["reasons"] == kinds["contributions"] == "JSON"


@pytest.fixture(scope="module")
def demo(make_demo) -> Path:
    return make_demo(300, 11)


@pytest.mark.slow
def test_rewriting_an_as_of_keeps_one_row_per_customer(demo: Path):
    from custdyn.pipeline import analyze

    with Workspace.open(demo) as ws:
        first = analyze(ws)
        rows1 = ws.con.execute(
            "SELECT * EXCLUDE (run_id) FROM scores WHERE as_of = ? ORDER BY customer_id",
            [first.as_of]).fetchall()
        again = analyze(ws, first.as_of, force=True)
        assert not again.reused and again.run_id != first.run_id
        dup = ws.con.execute("SELECT count(*) FROM (SELECT customer_id, as_of FROM scores "
                             "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        assert dup == 0
        rows2 = ws.con.execute(
            "SELECT * EXCLUDE (run_id) FROM scores WHERE as_of = ? ORDER BY customer_id",
            [first.as_of]).fetchall()
        assert len(rows2) == len(rows1) == first.n_customers
        assert {r[0] for r in ws.con.execute("SELECT DISTINCT run_id FROM scores WHERE "
                                             "as_of = ?", [first.as_of]).fetchall()} == {
            again.run_id}
        # a forced re-fit gives the same numbers, and the JSON reads back
        assert [r[:2] for r in rows2] == [r[:2] for r in rows1]
        risky = [json.loads(r[-2]) for r in rows2 if r[-2] != "[]"]
        assert risky and all({"feature", "value", "contribution"} <= set(x)
                             for rs in risky for x in rs)
        contrib = rows2[0][-1]  # a struct: {group: {name: value}}
        assert {"health", "loyalty", "attention"} <= set(contrib)


@pytest.mark.slow
def test_another_scorecard_widens_the_parts_and_keeps_the_earlier_ones(demo: Path,
                                                                       tmp_path: Path):
    """A run with a scorecard of other components: its parts are written beside those of
    the earlier run, whose rows read null for the new ones; `custdyn scores` reads both."""
    import shutil

    from custdyn.pipeline import analyze
    from custdyn.pipeline.health import DEFAULT_HEALTH
    from custdyn.settings import Settings

    d = tmp_path / "card"
    shutil.copytree(demo, d, ignore=shutil.ignore_patterns("custdyn.lock"))
    with Workspace.open(d) as ws:
        first = analyze(ws)
    s = Settings.load(d)
    extra = {"name": "Tenure (days)", "column": "tenure_days", "weight": 0.1, "good": 365,
             "bad": 0}
    s.extra["health"] = {"components": [*DEFAULT_HEALTH["components"][:3], extra]}
    s.save(d)
    with Workspace.open(d) as ws:
        later = analyze(ws, first.as_of - dt.timedelta(days=7))
        rows = {(r[0], r[1]): json.loads(r[2]) for r in ws.con.execute(
            "SELECT as_of, customer_id, to_json(contributions) FROM scores").fetchall()}
        health = dict(((r[0], r[1]), r[2]) for r in ws.con.execute(
            "SELECT as_of, customer_id, health FROM scores").fetchall())
    names_then = [c["name"] for c in DEFAULT_HEALTH["components"]]
    names_now = [c["name"] for c in s.extra["health"]["components"]]
    assert len(rows) == first.n_customers + later.n_customers
    for (at, _cid), parts in rows.items():
        assert list(parts["health"]) == [*names_then, "Tenure (days)"]
        own = names_then if at == first.as_of else names_now
        assert all(parts["health"][k] is None for k in parts["health"] if k not in own)
        assert sum(v for v in parts["health"].values() if v is not None) == pytest.approx(
            health[(at, _cid)], abs=1e-6)
    assert any(p["health"]["Tenure (days)"] for (at, _), p in rows.items()
               if at != first.as_of)


# ---------------------------------------------------------------- pending messages

_REFERENCE_PENDING = """
    SELECT i.interaction_id, i.text, c.language
    FROM interactions i LEFT JOIN customers c ON c.customer_id = i.customer_id
    WHERE i.text IS NOT NULL AND length(trim(i.text)) > 0
      AND (i.direction IS NULL OR i.direction IN ('inbound'))
      AND NOT EXISTS (SELECT 1 FROM text_signals s
                      WHERE s.interaction_id = i.interaction_id AND s.engine = ?)
    ORDER BY i.occurred_at, i.interaction_id
"""


@pytest.fixture
def texts_ws(tmp_path: Path):
    pytest.importorskip("custdyn.text")
    rng = np.random.default_rng(4)
    words = ["late", "thanks", "great", "broken", "refund", "switching", "happy", "slow"]
    rows = []
    for i in range(240):
        text = " ".join(rng.choice(words, 5)) if i % 9 else ("   " if i % 2 else None)
        rows.append({
            "interaction_id": f"m{i:04d}", "customer_id": f"C{i % 17}",
            # ties in time: the id orders them
            "occurred_at": f"2024-0{1 + i % 6}-{1 + i % 5:02d}T10:00:00Z",
            "channel": "email", "kind": "feedback",
            "direction": ["inbound", "outbound", None][i % 3], "text": text})
    p = tmp_path / "msgs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w = Workspace.create(tmp_path / "ws")
    w.ingest(p)
    yield w
    w.close()


def test_enrich_scores_what_the_anti_join_finds_in_its_order(texts_ws):
    from custdyn.pipeline import enrich, pending_texts
    from custdyn.text import TextAnalyzer

    ws = texts_ws
    version = TextAnalyzer("bulk").version
    want = [r[0] for r in ws.con.execute(_REFERENCE_PENDING, [version]).fetchall()]
    assert 100 < len(want) < 240
    # another engine's rows do not count as scored for this one
    ws.con.execute("INSERT INTO text_signals (interaction_id, engine) "
                   "SELECT interaction_id, 'other:1' FROM interactions LIMIT 50")

    def scored() -> list[str]:
        return [r[0] for r in ws.con.execute(
            "SELECT interaction_id FROM text_signals WHERE engine = ? ORDER BY scored_at, "
            "interaction_id", [version]).fetchall()]

    first = enrich(ws, "bulk", batch_size=8, limit=25)
    assert first.pending == first.scored == 25
    assert set(scored()) == set(want[:25])  # the earliest 25, as the reference orders them
    assert pending_texts(ws, version, ("inbound",)) == len(want) - 25
    rest = enrich(ws, "bulk", batch_size=16)
    assert rest.pending == rest.scored == len(want) - 25 and rest.already_scored == 25
    assert sorted(scored()) == sorted(want)
    again = enrich(ws, "bulk")
    assert again.pending == again.scored == 0
    # the pending rows' temporary tables went with the reader
    assert ws.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN "
                          "('_custdyn_pending', '_custdyn_unscored')").fetchone()[0] == 0


def test_enrich_sees_messages_ingested_after_it_ran(texts_ws, tmp_path: Path):
    from custdyn.pipeline import enrich

    ws = texts_ws
    enrich(ws, "bulk")
    p = tmp_path / "more.jsonl"
    p.write_text(json.dumps({"interaction_id": "late1", "customer_id": "C1",
                             "occurred_at": "2023-01-01T00:00:00Z", "channel": "email",
                             "kind": "feedback", "direction": "inbound",
                             "text": "thanks, great"}) + "\n")
    ws.ingest(p)
    more = enrich(ws, "bulk")
    assert more.scored == 1
    assert ws.con.execute("SELECT count(*) FROM text_signals WHERE interaction_id = 'late1'"
                          ).fetchone()[0] == 1
