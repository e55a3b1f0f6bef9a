"""The rolling feature state: tables rolled forward from a stored state equal tables computed
from scratch, whatever arrived in between, and the state is not used when the data it
describes changed."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import custdyn
import custdyn.features as cf
from custdyn.features import rolling


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from custdyn.cli import app

    d = tmp_path_factory.mktemp("demo") / "ws"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "120", "--seed", "5"])
    assert r.exit_code in (0, 1), r.output
    r = CliRunner().invoke(app, ["-w", str(d), "enrich", "--engine", "bulk"])
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture
def ws(demo_dir: Path, tmp_path: Path) -> Any:
    d = tmp_path / "ws"
    shutil.copytree(demo_dir, d)
    shutil.rmtree(d / rolling.STATE_DIR, ignore_errors=True)
    w = custdyn.Workspace.open(d)
    yield w
    w.close()


@pytest.fixture
def rolls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every roll made: the pairs it was asked for and whether it finished."""
    seen: list[dict[str, Any]] = []
    real = rolling._roll

    def spy(ws: Any, b: Any, pairs: Any, *a: Any, **k: Any) -> Any:
        rec = {"pairs": dict(pairs), "done": False}
        seen.append(rec)
        out = real(ws, b, pairs, *a, **k)
        rec["done"] = True
        return out

    monkeypatch.setattr(rolling, "_roll", spy)
    return seen


def _last(ws: Any) -> dt.datetime:
    last = ws.con.execute("SELECT max(occurred_at) FROM interactions").fetchone()[0]
    return last.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _dates(x: dt.datetime, back: tuple[int, ...] = (0, 30, 90)) -> list[dt.datetime]:
    return [x - dt.timedelta(days=b) for b in back]


def assert_same(got: dict[Any, pa.Table], want: dict[Any, pa.Table]) -> None:
    assert set(got) == set(want)
    for d, w in want.items():
        g = got[d]
        assert g.schema.equals(w.schema), d
        assert g.num_rows == w.num_rows > 0, d
        assert g.column("customer_id").equals(w.column("customer_id")), d
        for c in w.column_names:
            x, y = g.column(c), w.column(c)
            if pa.types.is_floating(y.type):
                np.testing.assert_allclose(x.to_numpy(zero_copy_only=False),
                                           y.to_numpy(zero_copy_only=False),
                                           rtol=1e-9, atol=1e-9, err_msg=f"{d} {c}")
            else:
                assert x.equals(y), f"{d} {c}"


def _batch(ws: Any) -> int:
    return int(ws.con.execute("SELECT coalesce(max(batch_id), 0) + 1 FROM interactions")
               .fetchone()[0])


def _copy_rows(ws: Any, batch: int, where: str, at: str, prefix: str, n: int,
               customer: str = "customer_id") -> int:
    """Copies of ``n`` existing interactions (``where``) at the time ``at`` (SQL), with new
    ids, as the ingest batch ``batch``."""
    cols = ("channel, kind, direction, amount, currency, subject, text, thread_id, agent_id, "
            "source, attributes")
    ws.con.execute(f"""
        INSERT INTO interactions (interaction_id, customer_id, occurred_at, {cols}, batch_id)
        SELECT '{prefix}' || row_number() OVER (), {customer}, {at}, {cols}, {batch}
        FROM (SELECT * FROM interactions WHERE {where} ORDER BY interaction_id LIMIT {n})""")
    return n


@pytest.mark.parametrize("shift", [7, 0, 30])
def test_rolled_tables_equal_fresh_ones(ws: Any, rolls: list[dict[str, Any]],
                                        shift: int) -> None:
    s = _last(ws) - dt.timedelta(days=45)
    first = cf.feature_tables(ws, _dates(s), state=True)
    assert_same(first, cf.feature_tables(ws, _dates(s)))
    assert not rolls  # nothing stored yet: computed afresh
    d = s + dt.timedelta(days=shift)
    got = cf.feature_tables(ws, _dates(d), state=True)
    assert [r["done"] for r in rolls] == [True]
    # each new date from the latest stored date at or before it
    assert rolls[0]["pairs"] == {x: max(y for y in _dates(s) if y <= x) for x in _dates(d)}
    assert_same(got, cf.feature_tables(ws, _dates(d)))
    # the state now describes the new dates, and only their files are left
    man = json.loads((Path(ws.path) / rolling.STATE_DIR / rolling.MANIFEST).read_text())
    assert sorted(man["dates"]) == sorted(x.isoformat() for x in _dates(d))
    files = {p.name for p in (Path(ws.path) / rolling.STATE_DIR).glob("grid-*.arrow")}
    assert files == {e["file"] for e in man["dates"].values()}


def test_overlapping_ranges_and_columns(ws: Any, rolls: list[dict[str, Any]]) -> None:
    """Two new dates rolled from the same stored date (their ranges overlap), and only some
    columns asked for at one of them."""
    s = _last(ws) - dt.timedelta(days=40)
    cf.feature_tables(ws, [s, s - dt.timedelta(days=10)], state=True)
    new = [s + dt.timedelta(days=5), s + dt.timedelta(days=20)]
    cols = {new[0]: ["n_orders", "days_since_customer_contact", "sentiment_90d"]}
    got = cf.feature_tables(ws, new, columns=cols, state=True)
    assert rolls and rolls[-1]["done"] and set(rolls[-1]["pairs"].values()) == {s}
    assert_same(got, cf.feature_tables(ws, new, columns=cols))


def test_new_late_and_changed_data(ws: Any, rolls: list[dict[str, Any]]) -> None:
    """New events in the rolled range, events ingested later but dated before the stored
    date, new customers, a changed customer record and a message scored later: all in the
    rolled tables exactly as in fresh ones."""
    s = _last(ws) - dt.timedelta(days=40)
    ts = f"TIMESTAMPTZ '{s.isoformat()}'"
    # a message of long ago, not yet scored when the state is stored
    ws.con.execute(f"""CREATE TEMP TABLE held AS SELECT t.* FROM text_signals t
                       JOIN interactions i USING (interaction_id)
                       WHERE i.occurred_at < {ts} - INTERVAL 100 DAY ORDER BY 1 LIMIT 1""")
    assert ws.con.execute("SELECT count(*) FROM held").fetchone()[0] == 1
    ws.con.execute("DELETE FROM text_signals WHERE interaction_id IN "
                   "(SELECT interaction_id FROM held)")
    cf.feature_tables(ws, _dates(s), state=True)
    b = _batch(ws)
    before = f"occurred_at < {ts}"
    _copy_rows(ws, b, before, f"{ts} + INTERVAL 2 DAY + (occurred_at - "
               "date_trunc('day', occurred_at))", "NEW", 60)
    _copy_rows(ws, b, before, f"{ts} - INTERVAL 50 DAY", "LATE", 20)
    _copy_rows(ws, b, before, f"{ts} + INTERVAL 1 DAY", "NEWC", 5,
               customer="'NEWCUST-' || customer_id")
    # the first purchase of a customer described at the stored dates (their first purchase
    # day is not the stored one)
    _copy_rows(ws, b, "kind = 'order'", f"{ts} + INTERVAL 3 DAY", "FIRSTBUY", 1,
               customer=f"""(SELECT min(customer_id) FROM interactions
                             WHERE occurred_at < {ts} - INTERVAL 95 DAY AND customer_id NOT IN
                             (SELECT customer_id FROM interactions WHERE kind = 'order'))""")
    ws.con.execute(f"""UPDATE customers SET created_at = created_at - INTERVAL 3 DAY,
                       batch_id = {b} WHERE customer_id = (SELECT min(customer_id) FROM
                       customers WHERE created_at IS NOT NULL)""")
    ws.con.execute("INSERT INTO text_signals SELECT * REPLACE "
                   "(now() + INTERVAL 1 HOUR AS scored_at) FROM held")
    d = s + dt.timedelta(days=7)
    got = cf.feature_tables(ws, _dates(d), state=True)
    assert rolls and rolls[-1]["done"]
    assert_same(got, cf.feature_tables(ws, _dates(d)))


def test_ticket_across_threads_reads_no_part_of_a_thread(ws: Any,
                                                        rolls: list[dict[str, Any]]) -> None:
    """A ticket with rows in two threads and a band event in one: the other thread must not
    be read in part, or its first row read would pass for the thread's start (here an
    outbound reply would count as a contact the vendor started, and move the customer's
    vendor contact interval)."""
    s = _last(ws) - dt.timedelta(days=40)
    rows = [  # (id, days before s, channel, kind, direction, thread, ticket)
        ("TX1", 100, "email", "contact", "outbound", None, None),
        ("TX2", 60, "email", "contact", "outbound", None, None),
        ("TX3", 140, "email", "contact", "inbound", "TB", None),
        ("TX4", 139, "ticket", "contact", "outbound", "TB", "TK1"),
        ("TX5", 87, "ticket", "contact", "inbound", "TA", "TK1"),  # leaves the 90-day window
    ]
    b = _batch(ws)
    for iid, back, channel, kind, direction, thread, ticket in rows:
        ws.con.execute(
            "INSERT INTO interactions (interaction_id, customer_id, occurred_at, channel, kind, "
            "direction, thread_id, attributes, source, batch_id) VALUES (?, 'TICKETX', ?, ?, ?, "
            "?, ?, ?, 'test', ?)",
            [iid, s - dt.timedelta(days=back), channel, kind, direction, thread,
             None if ticket is None else json.dumps({"ticket_id": ticket}), b])
    cf.feature_tables(ws, _dates(s), state=True)
    d = s + dt.timedelta(days=7)
    got = cf.feature_tables(ws, _dates(d), state=True)
    assert rolls and rolls[-1]["done"]
    want = cf.feature_tables(ws, _dates(d))
    row = want[d].filter(pa.compute.equal(want[d].column("customer_id"), "TICKETX"))
    assert row.num_rows == 1
    assert row.column("vendor_contact_interval_days")[0].as_py() == pytest.approx(40.0)
    assert_same(got, want)


def test_state_not_used_when_old_data_changed(ws: Any, rolls: list[dict[str, Any]]) -> None:
    s = _last(ws) - dt.timedelta(days=40)
    cf.feature_tables(ws, _dates(s), state=True)
    ws.con.execute(f"""DELETE FROM interactions WHERE interaction_id = (
        SELECT min(interaction_id) FROM interactions
        WHERE occurred_at < TIMESTAMPTZ '{s.isoformat()}')""")
    d = s + dt.timedelta(days=7)
    got = cf.feature_tables(ws, _dates(d), state=True)
    assert not rolls  # a row the state saw is gone: computed afresh
    assert_same(got, cf.feature_tables(ws, _dates(d)))
    # a message scored again (a changed score of an old message): computed afresh
    ws.con.execute("""UPDATE text_signals SET sentiment_score = -sentiment_score,
                      scored_at = now() + INTERVAL 1 HOUR WHERE interaction_id = (
                      SELECT min(interaction_id) FROM text_signals)""")
    d = d + dt.timedelta(days=1)
    got = cf.feature_tables(ws, _dates(d), state=True)
    assert not rolls
    assert_same(got, cf.feature_tables(ws, _dates(d)))
    # too far from the stored dates: computed afresh too
    far = d + dt.timedelta(days=rolling.MAX_ROLL_DAYS + 1)
    cf.feature_tables(ws, [far], state=True)
    assert not rolls


def test_read_only_workspace_keeps_no_state(demo_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "ro"
    shutil.copytree(demo_dir, d)
    shutil.rmtree(d / rolling.STATE_DIR, ignore_errors=True)
    w = custdyn.Workspace.open(d, read_only=True)
    try:
        at = _last(w)
        got = cf.feature_tables(w, _dates(at), state=True)
        assert_same(got, cf.feature_tables(w, _dates(at)))
    finally:
        w.close()
    assert not (d / rolling.STATE_DIR).exists()


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(back=st.integers(20, 200), shift=st.integers(0, 35),
       gap=st.sampled_from([(0,), (0, 30), (0, 30, 90), (0, 3)]))
def test_any_roll_equals_fresh(ws: Any, back: int, shift: int, gap: tuple[int, ...]) -> None:
    """Property: for any stored dates and any shift within the limit, rolling equals
    computing afresh."""
    shutil.rmtree(Path(ws.path) / rolling.STATE_DIR, ignore_errors=True)
    s = _last(ws) - dt.timedelta(days=back)
    cf.feature_tables(ws, _dates(s, gap), state=True)
    d = s + dt.timedelta(days=shift)
    assert_same(cf.feature_tables(ws, _dates(d, gap), state=True),
                cf.feature_tables(ws, _dates(d, gap)))


def test_each_feature_from_its_grid_columns(ws: Any) -> None:
    """Every feature made from only the grid columns ``derive_inputs`` names for it (the
    others null), alone or with all the others, equals the feature made from the whole
    grid."""
    from custdyn.features import incremental
    from custdyn.features.backend import backend
    from custdyn.features.incremental import derive_arrow, derive_inputs, pad_grid, plan

    d = _last(ws)
    cf.feature_tables(ws, [d], state=True)
    store = rolling._Store(ws)
    grid = store.read(next(iter(store.manifest()["dates"].values()))["file"])
    b = backend(ws, "duckdb")
    pl = plan(b, [d.timestamp()], coded=True)
    whole = derive_arrow(grid, pl)
    assert pl.has_text
    checked = 0
    for f in whole.column_names:
        names = derive_inputs([f], pl)
        assert len(names) < grid.num_columns / 4, f
        part = rolling._keep_columns(grid, names)
        assert part.column_names == [c for c in grid.column_names if c in names]
        got = derive_arrow(pad_grid(part, rolling._whole_schema(part)), pl)
        assert got.column(f).equals(whole.column(f)), f
        # only that feature asked for: the same values, and no other feature made
        one = derive_arrow(pad_grid(part, rolling._whole_schema(part)), pl, only=[f])
        assert one.column_names == list(dict.fromkeys(["customer_id", "as_of", f])), f
        assert one.column(f).equals(whole.column(f)), f
        checked += whole.column(f).null_count < whole.num_rows  # a column with values
    assert checked > 100
    assert derive_inputs(["no_such_feature"], pl) == list(incremental.GRID_KEY)


def test_few_columns_kept_for_dates_that_need_few(ws: Any,
                                                  rolls: list[dict[str, Any]]) -> None:
    """Dates asked for with a few features keep a grid of only what those are made from;
    it is rolled forward for the same features, and never serves a date asked for with all
    of them."""
    s = _last(ws) - dt.timedelta(days=40)
    few = ["days_since_customer_contact", "first_response_median_h", "sentiment_90d",
           "order_issues_per_order", "unanswered_inbound"]
    olds = _dates(s)
    cols = {x: few for x in olds[1:]}
    cf.feature_tables(ws, olds, columns=cols, state=True)
    store = rolling._Store(ws)
    man = store.manifest()
    assert man["dates"][olds[0].isoformat()]["features"] is None
    for x in olds[1:]:
        e = man["dates"][x.isoformat()]
        assert e["features"] == few
        assert store.read(e["file"]).num_columns < 20
    news = _dates(s + dt.timedelta(days=7))
    new_cols = {x: few for x in news[1:]}
    got = cf.feature_tables(ws, news, columns=new_cols, state=True)
    assert rolls[-1]["done"] and rolls[-1]["pairs"] == dict(zip(news, olds, strict=True))
    assert_same(got, cf.feature_tables(ws, news, columns=new_cols))
    # all features at a date whose nearest stored grid has few: from the full grid before
    # it, or computed afresh; the same tables either way
    n = len(rolls)
    at = [news[1] + dt.timedelta(days=1)]
    got = cf.feature_tables(ws, at, state=True)
    assert all(rolls[i]["pairs"].get(at[0]) not in news[1:] for i in range(n, len(rolls)))
    assert_same(got, cf.feature_tables(ws, at))


def test_touches_name_every_change_column_by_its_windows(ws: Any) -> None:
    """The plan says which date-index column (entering, leaving a window, passing the reply
    deadline) changes which columns: every change column is named, the 90-day sentiment
    leaves only through the 90-day window, and the unanswered count changes only at the
    deadline; a roll skips the bands that change none of a date's kept columns."""
    from custdyn.features.backend import backend
    from custdyn.features.incremental import WINDOWS_DAYS, plan

    pl = plan(backend(ws, "duckdb"), [_last(ws).timestamp()], coded=True)
    named = set().union(*pl.touches.values())
    assert set(pl.how) - {"resp_k", "res_k"} <= named
    for w in WINDOWS_DAYS:
        assert f"n_email_inbound_{w}d" in pl.touches[f"k_l{w}"]
        assert f"n_email_inbound_{w}d" in pl.touches["k_in"]
    assert {"s90_sum", "s90_n"} <= pl.touches["k_l90"]
    assert not {"s90_sum", "s90_n"} & (pl.touches["k_l180"] | pl.touches["k_l365"])
    assert "unanswered_inbound" in pl.touches["k_late"]
    assert [k for k, v in pl.touches.items() if "unanswered_inbound" in v] == ["k_late"]


def test_feature_schema_kept_for_the_next_process(ws: Any, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    """The feature tables' schema is kept with the state: a later process reads it instead of
    building the feature expression again (read-only workspaces write nothing)."""
    from custdyn.features import api

    d = _last(ws)
    first = cf.feature_tables(ws, [d], state=True)
    kept = list((Path(ws.path) / rolling.STATE_DIR).glob("schema-*.arrow"))
    assert len(kept) == 1
    api._SCHEMAS.clear()  # as in a new process

    def built(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the feature expression was built again")

    monkeypatch.setattr(api, "feature_expr", built)
    again = cf.feature_tables(ws, [d + dt.timedelta(days=1)], state=True)
    assert again[d + dt.timedelta(days=1)].schema.equals(first[d].schema)
    # other options: another schema, built (and kept instead of the first)
    monkeypatch.undo()
    cf.feature_tables(ws, [d], state=True, unanswered_after_hours=12.0)
    assert [p.name for p in (Path(ws.path) / rolling.STATE_DIR).glob("schema-*.arrow")] \
        != [p.name for p in kept]
