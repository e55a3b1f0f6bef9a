"""``custdyn analyze`` exit codes: warnings do not fail a finished analysis unless --strict."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.store import Workspace

pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def thin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every customer bought once: analyze finishes, and says what it had to skip."""
    d = tmp_path_factory.mktemp("thin")
    start = dt.date(2023, 1, 1)
    p = d / "orders.csv"
    p.write_text("customer_id,occurred_at,channel,kind,direction,amount\n" + "\n".join(
        f"C{i},{start + dt.timedelta(days=5 * i)}T12:00:00Z,web,order,inbound,{20 + i}"
        for i in range(120)) + "\n")
    with Workspace.create(d / "w") as ws:
        ws.ingest(p)
    return d / "w"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("custdyn.lock"))
    return dst


def test_warnings_exit_0_and_stay_in_the_json(thin: Path, tmp_path: Path) -> None:
    w = _copy(thin, tmp_path / "w")
    r = CliRunner().invoke(app, ["-w", str(w), "analyze", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["n_customers"] == 120
    assert got["warnings"], "a base of one-time buyers is worth a warning"
    for msg in got["warnings"]:  # each printed on stderr too, not only in the JSON
        assert msg[:40] in " ".join(r.stderr.split())
    with Workspace.open(w) as ws:
        assert ws.con.execute("SELECT count(*) FROM scores").fetchone()[0] == 120


def test_warnings_printed_and_exit_0_without_json(thin: Path, tmp_path: Path) -> None:
    w = _copy(thin, tmp_path / "w")
    r = CliRunner().invoke(app, ["-w", str(w), "analyze"])
    assert r.exit_code == 0, r.output
    assert "120 customers" in r.stdout and "warning:" in r.stderr


def test_strict_exits_1_on_warnings(thin: Path, tmp_path: Path) -> None:
    w = _copy(thin, tmp_path / "w")
    r = CliRunner().invoke(app, ["-w", str(w), "analyze", "--strict", "--json"])
    assert r.exit_code == 1, r.output
    assert json.loads(r.stdout)["warnings"]
    # a rerun with nothing changed is reused: the same warnings, the same verdict
    again = CliRunner().invoke(app, ["-w", str(w), "analyze", "--strict"])
    assert again.exit_code == 1 and "reused" in again.stdout


@pytest.mark.slow
def test_strict_exits_0_without_warnings(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "200", "--seed", "5"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["-w", str(d), "analyze", "--strict", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["warnings"] == [] and got["n_customers"] >= 200


def test_analysis_commands_read_the_scores_and_refuse_cleanly(thin: Path, tmp_path: Path) -> None:
    w = str(_copy(thin, tmp_path / "w"))

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["-w", w, *args])

    r = run("scores")
    assert r.exit_code == 2 and "no scores yet" in r.stderr
    assert run("analyze").exit_code == 0  # the refused command left the workspace closed
    rows = json.loads(run("scores", "--json", "--limit", "0").stdout)
    assert len(rows) == 120
    clv = [x["clv"] for x in rows]
    assert clv == sorted(clv, reverse=True)
    shown = run("scores", "--limit", "5").stdout  # 80 columns: the narrow view
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert "7 of the 12 columns" in " ".join(shown.split())
    assert sum(line.startswith("│ C") for line in shown.splitlines()) == 5
    r = run("scores", "C3")
    assert r.exit_code == 0 and "health" in r.stdout and "risk" in r.stdout
    top = json.loads(run("risk", "--json", "--top", "5").stdout)
    assert len(top) == 5 and not {x["stage"] for x in top} & {"lost", "prospect"}
    shown = run("risk", "--top", "5").stdout  # the terminal's view fits 80 columns
    assert "top reasons" in shown and max(len(line) for line in shown.splitlines()) <= 80
    for x in top:
        assert x["customer_id"] in shown
    assert json.loads(run("alerts", "--json").stdout) == []  # no messages, no mentions
    r = run("flows")
    assert r.exit_code == 2 and "two analyses" in r.stderr
    r = run("backtest", "--json", "--figures", "")
    assert r.exit_code == 2 and "defected" in r.stderr
    assert run("analyze", "--force").exit_code == 0  # still writable after the refusals
