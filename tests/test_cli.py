"""The command line mirrors the library: exit codes, --json, --out, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from custdyn.cli import app

runner = CliRunner()
HEADER = "customer_id,occurred_at,channel,kind,direction,amount,currency,text\n"


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def make_ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    r = run("init", str(w), "--timezone", "Europe/Oslo", "--vendor-domain", "vendor.no")
    assert r.exit_code == 0, r.output
    return w


def test_init_ingest_status_and_exit_codes(tmp_path):
    w = make_ws(tmp_path)
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "C1,2024-01-01T10:00:00Z,web,order,inbound,5,EUR,\n"
                    "C1,2024-02-01T10:00:00Z,email,contact,outbound,,,Hei\n")
    r = run("-w", str(w), "ingest", str(good))
    assert r.exit_code == 0 and "2 loaded" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "C2,2024-01-01,web,order,inbound,oops,EUR,\n")
    r = run("-w", str(w), "ingest", str(bad))
    assert r.exit_code == 1 and "1 rejected" in r.output and "expected a number" in r.output
    r = run("-w", str(w), "ingest", "--strict", str(bad))
    assert r.exit_code == 2 and "refused" in r.output
    r = run("-w", str(w), "status", "--json")
    s = json.loads(r.stdout)
    assert s["interactions"] == 2 and s["by_channel"] == {"web": 1, "email": 1}
    assert [b["rows_rejected"] for b in s["batches"]] == [0, 1]
    r = run("-w", str(w), "status")
    assert r.exit_code == 0 and "2 interactions" in r.output
    # 80 columns: the batches' columns that say something, each value whole
    rows = [line for line in r.output.splitlines() if line.startswith("│ ")]
    assert len(rows) == 2 and all(line.count("│") == 7 for line in rows), r.output
    assert "good.csv" in rows[0] and "bad.csv" in rows[1] and " dup " not in r.output


def test_rejected_timeline_customers_export(tmp_path):
    w = make_ws(tmp_path)
    p = tmp_path / "a.csv"
    p.write_text(HEADER + "C1,2024-01-01T10:00:00Z,web,order,inbound,5,EUR,first\n"
                 "C1,2024-03-01T10:00:00Z,phone,contact,outbound,,,second\n"
                 "C2,not a date,web,order,inbound,5,EUR,\n")
    run("-w", str(w), "ingest", str(p))
    r = run("-w", str(w), "rejected", "--json")
    [rej] = json.loads(r.stdout)
    assert rej["row_number"] == 3 and rej["field"] == "occurred_at"
    r = run("-w", str(w), "timeline", "C1", "--json", "--out", str(tmp_path / "t.parquet"))
    tl = json.loads(r.stdout)
    assert [e["text"] for e in tl["events"]] == ["first", "second"]
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 2
    r = run("-w", str(w), "timeline", "C1")
    assert "customer →" in r.output and "← vendor" in r.output and "Europe/Oslo" in r.output
    # 80 columns: one line per event (when, channel · kind, who, amount), the text below it
    lines = r.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("2024-01-01 11:00"))
    assert "web · order" in lines[at] and "5.00 EUR" in lines[at]
    assert lines[at + 1].strip() == "first"
    r = run("-w", str(w), "timeline", "--sample", "--json")
    assert json.loads(r.stdout)["customer_id"] == "C1"
    r = run("-w", str(w), "timeline", "nobody")
    assert r.exit_code == 2 and "no customer 'nobody'" in r.output
    # the failed command closed the workspace: it can be opened for writing again
    q = tmp_path / "b.csv"
    q.write_text(HEADER + "C3,2024-04-01T10:00:00Z,web,order,inbound,7,EUR,\n")
    r = run("-w", str(w), "ingest", str(q))
    assert r.exit_code == 0 and "1 loaded" in r.output
    r = run("-w", str(w), "customers", "--json")
    assert json.loads(r.stdout)[0]["customer_id"] == "C1"
    r = run("-w", str(w), "export", str(tmp_path / "exp"))
    assert r.exit_code == 0 and (tmp_path / "exp" / "interactions.parquet").exists()


def test_missing_workspace_and_help(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUSTDYN_WORKSPACE", raising=False)
    r = run("status")
    assert r.exit_code == 2 and "custdyn init" in r.output
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("init", "ingest", "status", "rejected", "customers", "timeline", "export", "demo"):
        assert cmd in r.output
    r = run("ingest", "--help")
    assert "--mapping" in r.output and "--strict" in r.output


def test_features_out_writes_every_row_and_prints_the_short_table_once(tmp_path):
    w = make_ws(tmp_path)
    p = tmp_path / "a.csv"
    p.write_text(HEADER + "".join(f"C{i},2024-0{1 + i % 3}-0{1 + i}T10:00:00Z,web,order,inbound,"
                                  f"{5 + i},EUR,\n" for i in range(6)))
    run("-w", str(w), "ingest", str(p))
    out = tmp_path / "f.csv"
    r = run("-w", str(w), "features", "--as-of", "2024-06-01", "--limit", "2", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 1 + 6
    assert r.stdout.count("features at 2024-06-01") == 1
    assert "C0" in r.stdout and "C5" not in r.stdout  # the first 2 rows shown, not all
    assert "6 customers x" in r.stdout and "first 2 shown" in r.stdout
