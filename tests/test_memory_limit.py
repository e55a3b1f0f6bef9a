"""DuckDB's memory limit: set for the work (ingest, incremental snapshots), the previous one
restored after, also when the work fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import custdyn.features as cf
import custdyn.features.api as fapi
from custdyn.errors import BatchRefusedError
from custdyn.store import (
    _MEMORY_UNITS,
    INGEST_MEMORY_LIMIT,
    Workspace,
    _shown_limit_to_set,
    memory_limit,
)

ORDERS = "customer_id,occurred_at,channel,kind,direction,amount\n" + "".join(
    f"C{i % 7},2024-0{1 + i % 6}-1{i % 9}T12:00:00Z,web,order,inbound,{10 + i}\n"
    for i in range(40))


def _limit(con: Any) -> str:
    return str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])


_CON = duckdb.connect()


def _as_duckdb_says(limit: str) -> str:
    """``limit`` as DuckDB reports it once set (e.g. 512MB reads back as 488.2 MiB)."""
    _CON.execute(f"SET memory_limit = '{limit}'")
    return _limit(_CON)


@settings(max_examples=200, deadline=None)
@given(st.integers(64 * 2**20, 2**45))
@example(1_503_500_698)  # shown a tenth low: 1.3 GiB
def test_a_shown_limit_sets_back_to_itself(n_bytes: int) -> None:
    """DuckDB shows the limit to a tenth of its unit (cut, and at times a tenth below: 1.40024
    GiB shows as 1.3 GiB); restoring the shown text must not lower the limit (again and
    again), and stays within a tenth of the unit of what was set."""
    _CON.execute(f"SET memory_limit = '{n_bytes}B'")
    shown = _limit(_CON)
    restore = _shown_limit_to_set(shown)
    for _ in range(3):
        _CON.execute(f"SET memory_limit = '{restore}'")
        assert _limit(_CON) == shown
    unit = _MEMORY_UNITS[shown.split()[1]]
    assert abs(int(restore.removesuffix("B")) - n_bytes) <= 0.1 * unit + 2**18


def test_allocator_threads_on_inside_and_as_before_after() -> None:
    """Inside the block the allocator's background threads return freed memory; after it
    the setting is what it was, also when the block fails, and nested blocks keep it on."""
    con = duckdb.connect()

    def threads() -> bool:
        return bool(con.execute(
            "SELECT current_setting('allocator_background_threads')").fetchone()[0])

    assert not threads()
    with pytest.raises(RuntimeError):
        with memory_limit(con, "1GB"):
            assert threads()
            with memory_limit(con, "512MB"):
                assert threads()
            assert threads()
            raise RuntimeError("the work failed")
    assert not threads()


def test_no_limit_is_restored() -> None:
    """'-1' (no limit) reads as PiB, a unit SET does not take."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '-1'")
    before = _limit(con)
    with memory_limit(con, "1GB"):
        assert _limit(con) != before
    assert _limit(con) == before


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    w = Workspace.create(tmp_path / "w")
    p = tmp_path / "orders.csv"
    p.write_text(ORDERS)
    w.ingest(p)
    w.con.execute("SET memory_limit = '1234MB'")
    yield w
    w.close()


def test_context_manager_restores_also_on_error(ws: Any) -> None:
    before = _limit(ws.con)
    with memory_limit(ws.con, "300MB"):
        assert _limit(ws.con) == _as_duckdb_says("300MB") != before
    assert _limit(ws.con) == before
    with pytest.raises(ZeroDivisionError), memory_limit(ws.con, "300MB"):
        1 / 0  # noqa: B018
    assert _limit(ws.con) == before


def test_ingest_works_within_its_limit_and_restores_the_previous(ws: Any,
                                                                  tmp_path: Path) -> None:
    before = _limit(ws.con)
    seen: list[str] = []
    p = tmp_path / "more.csv"
    p.write_text(ORDERS.replace("C", "D"))
    ws.ingest(p, progress=lambda *_: seen.append(_limit(ws.con)))
    assert seen and set(seen) == {_as_duckdb_says(INGEST_MEMORY_LIMIT)}
    assert _limit(ws.con) == before  # the previous limit, not DuckDB's default


def test_refused_ingest_restores_the_previous_limit(ws: Any, tmp_path: Path) -> None:
    before = _limit(ws.con)
    bad = tmp_path / "bad.csv"
    bad.write_text(ORDERS + "E1,2024-03-01T12:00:00Z,web,order,inbound,not-a-number\n")
    with pytest.raises(BatchRefusedError):
        ws.ingest(bad, strict=True)
    assert _limit(ws.con) == before


def test_incremental_snapshots_limit_and_restore(ws: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = _limit(ws.con)
    seen: list[str] = []
    run = fapi._incremental_duckdb

    def spy(b: Any, con: Any, *args: Any) -> None:
        seen.append(_limit(con))
        run(b, con, *args)

    monkeypatch.setattr(fapi, "_incremental_duckdb", spy)
    dates = ["2024-03-01", "2024-05-01", "2024-07-01"]
    assert cf.snapshots(ws, dates) > 0
    assert seen == [_as_duckdb_says(fapi.MEMORY_LIMIT)]
    assert _limit(ws.con) == before

    def fail(*_: Any) -> None:
        raise RuntimeError("a part failed")

    monkeypatch.setattr(fapi, "_incremental_duckdb", fail)
    with pytest.raises(RuntimeError, match="a part failed"):
        cf.snapshots(ws, dates)
    assert _limit(ws.con) == before
