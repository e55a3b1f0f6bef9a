"""Ingest semantics: one transaction per file, idempotency, rejected records with reasons,
strict mode, mappings, customers, migrations, the writer lock and a kill -9 mid-ingest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from custdyn.errors import (
    BatchRefusedError,
    SchemaVersionError,
    WorkspaceExistsError,
    WorkspaceLockedError,
    WorkspaceNotFoundError,
)
from custdyn.settings import Settings
from custdyn.store import SCHEMA_VERSION, Workspace

HEADER = "customer_id,occurred_at,channel,kind,direction,amount,currency,text\n"


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace.create(tmp_path / "ws", Settings(timezone="Europe/Oslo", currency="NOK",
                                                   vendor_domains=["vendor.no"]))
    yield w
    w.close()


def write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def count(ws: Workspace, table: str = "interactions") -> int:
    return ws.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


BAD_CASES = [
    # (row, expected field, words the reason must contain)
    (",2024-01-05T10:00:00Z,web,order,inbound,5,EUR,", "customer_id", "no customer id"),
    ("C1,yesterday,web,order,inbound,5,EUR,", "occurred_at", "cannot read 'yesterday'"),
    ("C1,2024-02-30,web,order,inbound,5,EUR,", "occurred_at", "cannot read '2024-02-30'"),
    ("C1,1066-10-14,web,order,inbound,5,EUR,", "occurred_at", "impossible timestamp"),
    ("C1,2999-01-01,web,order,inbound,5,EUR,", "occurred_at", "impossible timestamp"),
    ("C1,,web,order,inbound,5,EUR,", "occurred_at", "missing"),
    ("C1,2024-01-05,web,order,inbound,N/A,EUR,", "amount", "expected a number, got 'N/A'"),
    ("C1,2024-01-05,fax,order,inbound,5,EUR,", "channel", "unknown value 'fax'"),
    ("C1,2024-01-05,web,purchase-ish,inbound,5,EUR,", "kind", "unknown value 'purchase-ish'"),
    ("C1,2024-01-05,web,order,sideways,5,EUR,", "direction", "unknown value 'sideways'"),
    ("C1,2024-01-05,web,order,inbound,5,EURO,", "currency", "3-letter ISO 4217"),
]


@pytest.mark.parametrize("line,field,words", BAD_CASES)
def test_bad_record_is_rejected_with_a_reason_while_good_rows_load(ws, tmp_path, line, field,
                                                                   words):
    p = write(tmp_path / "in.csv", HEADER + "C0,2024-01-01T12:00:00Z,web,order,inbound,9.5,EUR,\n"
              + line + "\n")
    [r] = ws.ingest(p)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected) == (2, 1, 1)
    rej = ws.rejected().to_pylist()[0]
    assert rej["row_number"] == 2 and rej["field"] == field and words in rej["reason"]
    assert rej["source"] == str(p) and json.loads(rej["raw"])["customer_id"] in ("C1", None)


def test_undecodable_bytes_are_rejected_not_lost(ws, tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes((HEADER + "C1,2024-01-01,web,order,inbound,5,EUR,Bjørn\n"
                   "C2,2024-01-01,web,order,inbound,5,EUR,ok\n").encode("latin-1"))
    [r] = ws.ingest(p)
    assert (r.rows_loaded, r.rows_rejected) == (1, 1)
    rej = ws.rejected().to_pylist()[0]
    assert rej["row_number"] == 1 and "UTF-8" in rej["reason"] and "Bj" in rej["raw"]
    [r] = ws.ingest(p, encoding="latin-1")
    assert r.rows_loaded == 1 and r.rows_duplicate == 1
    text = ws.query("SELECT text FROM interactions WHERE customer_id='C1'").to_pylist()
    assert text == [{"text": "Bjørn"}]


def test_timestamps_honour_offsets_and_the_workspace_zone(ws, tmp_path):
    p = write(tmp_path / "t.csv", HEADER
              + "C1,2024-01-05T10:00:00+02:00,web,order,inbound,1,,\n"
              + "C1,2024-07-05 10:00,web,order,inbound,2,,\n"  # Oslo summer: UTC+2
              + "C1,2024-01-05,web,order,inbound,3,,\n")
    ws.ingest(p)
    got = ws.con.execute(
        "SELECT strftime(occurred_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), currency "
        "FROM interactions ORDER BY amount").fetchall()
    assert got == [("2024-01-05 08:00", "NOK"), ("2024-07-05 08:00", "NOK"),
                   ("2024-01-04 23:00", "NOK")]


def test_reingest_adds_nothing_and_counts_duplicates(ws, tmp_path):
    p = write(tmp_path / "a.csv", HEADER + "".join(
        f"C{i % 7},2024-01-{1 + i % 28:02d}T10:00:00Z,web,order,inbound,{i},EUR,\n"
        for i in range(50)))
    [a] = ws.ingest(p)
    [b] = ws.ingest(p)
    assert a.rows_loaded == 50 and b.rows_loaded == 0 and b.rows_duplicate == 50
    assert count(ws) == 50
    ids = ws.con.execute("SELECT count(DISTINCT interaction_id) FROM interactions").fetchone()[0]
    assert ids == 50
    assert [x["rows_loaded"] for x in ws.iter_batches()] == [50, 0]


def test_same_records_from_another_format_get_the_same_ids(ws, tmp_path):
    csv = write(tmp_path / "a.csv", HEADER + "C1,2024-01-01T10:00:00Z,web,order,inbound,5.00,"
                "EUR,hi\n")
    jl = write(tmp_path / "a.jsonl", json.dumps({
        "customer_id": "C1", "occurred_at": "2024-01-01T11:00:00+01:00", "channel": "Web",
        "kind": "order", "direction": "inbound", "amount": 5, "currency": "eur", "text": "hi"})
        + "\n")
    ws.ingest(csv)
    [r] = ws.ingest(jl)
    assert r.rows_duplicate == 1 and count(ws) == 1


def test_strict_refuses_the_whole_file(ws, tmp_path):
    p = write(tmp_path / "s.csv", HEADER + "C1,2024-01-01,web,order,inbound,5,EUR,\n"
              "C2,never,web,order,inbound,5,EUR,\n")
    with pytest.raises(BatchRefusedError, match="row 2"):
        ws.ingest(p, strict=True)
    assert count(ws) == 0 and count(ws, "rejected") == 0 and count(ws, "batches") == 0


def test_content_ids_are_stable_across_versions(ws, tmp_path):
    # ids are part of the data: a different id for the same record would duplicate it when a
    # file is ingested again into a workspace written by an earlier version
    import datetime as dt
    import hashlib

    p = write(tmp_path / "i.csv", HEADER + "C1,2024-01-01T10:00:00Z,Web,order,in,5,eur,hi\n")
    ws.ingest(p)
    [(iid,)] = ws.con.execute("SELECT interaction_id FROM interactions").fetchall()
    us = int(dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC).timestamp()) * 1_000_000
    parts = ["C1", str(us), "web", "order", "inbound", "5.0000", "EUR", "", "hi", "", "", ""]
    assert iid == "i-" + hashlib.md5("\x1f".join(parts).encode()).hexdigest()


def test_repeated_ids_keep_the_first_record_within_and_across_chunks(ws, tmp_path, monkeypatch):
    from custdyn.io import CsvSource

    monkeypatch.setattr("custdyn.io.csv.BLOCK_SIZE", 4096)
    head = "interaction_id," + HEADER
    ws.ingest(write(tmp_path / "old.csv",
                    head + "X0,C9,2024-01-01T00:00:00Z,web,order,inbound,1,EUR,old\n"))
    p = write(tmp_path / "rep.csv", head + "".join(
        f"X{i % 250},C{i},2024-01-02T00:00:00Z,web,order,inbound,{i},EUR,row {i + 1}\n"
        for i in range(600)))
    assert len([c for c in CsvSource(p).chunks() if c.table.num_rows]) > 4
    [r] = ws.ingest(p)
    assert (r.rows_read, r.rows_loaded, r.rows_duplicate) == (600, 249, 351)
    got = dict(ws.con.execute("SELECT interaction_id, text FROM interactions").fetchall())
    assert len(got) == 250 and got["X0"] == "old"
    assert all(got[f"X{k}"] == f"row {k + 1}" for k in range(1, 250))
    [again] = ws.ingest(p)
    assert (again.rows_loaded, again.rows_duplicate) == (0, 600) and count(ws) == 250


def _many_rows(n: int, bad: int) -> str:
    # quoted line breaks make record numbers differ from line numbers
    rows = [f'C{i},2024-01-03T00:00:00Z,web,order,inbound,{i},EUR,"line\nbreak {i}"\n'
            for i in range(n)]
    rows[bad] = f"C{bad},2024-01-03T00:00:00Z,web\n"  # too few fields
    return HEADER + "".join(rows)


def test_a_malformed_line_late_in_a_large_file_is_numbered_exactly_and_loads_once(
        ws, tmp_path, monkeypatch):
    monkeypatch.setattr("custdyn.io.csv.BLOCK_SIZE", 4096)
    p = write(tmp_path / "late.csv", _many_rows(500, 450))
    [r] = ws.ingest(p)
    assert (r.rows_read, r.rows_loaded, r.rows_rejected, r.rows_duplicate) == (500, 499, 1, 0)
    assert count(ws) == 499 and count(ws, "rejected") == 1
    [rej] = ws.rejected().to_pylist()
    assert rej["row_number"] == 451 and "expected 8 fields, found 3" in rej["reason"]
    texts = {t for (t,) in ws.con.execute("SELECT text FROM interactions").fetchall()}
    assert f"line\nbreak {449}" in texts and f"line\nbreak {451}" in texts


def test_strict_refuses_a_file_whose_only_bad_record_comes_late(ws, tmp_path, monkeypatch):
    monkeypatch.setattr("custdyn.io.csv.BLOCK_SIZE", 4096)
    rows = [f"C{i},2024-01-03T00:00:00Z,web,order,inbound,{i},EUR,x\n" for i in range(800)]
    rows[790] = "C790,2024-01-03T00:00:00Z,web,order,inbound,lots,EUR,x\n"
    p = write(tmp_path / "late.csv", HEADER + "".join(rows))
    with pytest.raises(BatchRefusedError, match="1 of 800 records.*row 791"):
        ws.ingest(p, strict=True)
    assert count(ws) == 0 and count(ws, "rejected") == 0 and count(ws, "batches") == 0
    [r] = ws.ingest(p)
    assert (r.rows_loaded, r.rows_rejected) == (799, 1)


def test_mapping_renames_maps_values_parses_dates_and_keeps_extras(ws, tmp_path):
    m = write(tmp_path / "map.toml", """
[columns]
"Activity ID" = "interaction_id"
Account = "customer_id"
Date = "occurred_at"
Type = "channel"
Direction = "direction"
Notes = "text"
[values.channel]
Call = "phone"
Ticket = "ticket"
Visit = "meeting"
[values.direction]
In = "inbound"
Out = "outbound"
[derive.kind]
column = "Type"
map = { Call = "contact", Ticket = "support", Visit = "contact" }
[dates]
format = "%d/%m/%Y %H:%M"
timezone = "America/Sao_Paulo"
[amounts]
decimal = ","
""")
    p = write(tmp_path / "crm.csv", "Activity ID,Account,Date,Type,Direction,Notes,Outcome,Cost\n"
              "A1,C1,31/01/2024 10:00,Call,Out,Ligação,won,\"1,5\"\n"
              "A2,C2,01/02/2024 09:30,Ticket,In,Problema,open,\n"
              "A3,C3,01/02/2024 09:30,Fax,In,x,open,\n")
    [r] = ws.ingest(p, mapping=m)
    assert (r.rows_loaded, r.rows_rejected) == (2, 1)
    rows = ws.query("SELECT interaction_id, channel, kind, direction, text, attributes, "
                    "strftime(occurred_at AT TIME ZONE 'UTC', '%H:%M') AS t FROM interactions "
                    "ORDER BY 1").to_pylist()
    assert [(x["interaction_id"], x["channel"], x["kind"], x["direction"], x["t"]) for x in rows] \
        == [("A1", "phone", "contact", "outbound", "13:00"),
            ("A2", "ticket", "support", "inbound", "12:30")]
    assert json.loads(rows[0]["attributes"]) == {"Outcome": "won", "Cost": "1,5"}
    assert "unknown value 'Fax'" in ws.rejected().to_pylist()[0]["reason"]


def test_customers_insert_update_and_email_matching(ws, tmp_path):
    c = write(tmp_path / "customers.csv", "customer_id,name,email,segment,created_at,tier\n"
              "C1,Ana,Ana@Cliente.pt,smb,2023-05-01,gold\nC2,Bo,bo@x.no,,2023-06-01,\n"
              "C3,Bad,not-an-email,,2023-06-01,\n")
    [r] = ws.ingest(c)
    assert r.target == "customers" and (r.rows_loaded, r.rows_rejected) == (2, 1)
    c2 = write(tmp_path / "c2.csv", "customer_id,name,email,segment\nC1,Ana,ana@cliente.pt,smb\n"
               "C2,Bo,bo@x.no,enterprise\n")
    [r] = ws.ingest(c2)
    assert (r.rows_loaded, r.rows_updated, r.rows_duplicate) == (0, 1, 1)
    assert ws.customer("C2")["segment"] == "enterprise"
    assert json.loads(ws.customer("C1")["attributes"]) == {"tier": "gold"}
    from email.message import EmailMessage

    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ana@cliente.pt", "help@vendor.no", "Olá"
    m["Date"], m["Message-ID"] = "Fri, 01 Mar 2024 10:00:00 +0000", "<z1@cliente.pt>"
    m.set_content("Bom dia")
    (tmp_path / "m.eml").write_bytes(m.as_bytes())
    [r] = ws.ingest(tmp_path / "m.eml")
    assert r.rows_loaded == 1
    assert ws.timeline("C1").column("interaction_id").to_pylist() == ["z1@cliente.pt"]


def test_timeline_orders_and_suggests(ws, tmp_path):
    p = write(tmp_path / "a.csv", HEADER + "CUST-1,2024-02-01,phone,contact,outbound,,,b\n"
              "CUST-1,2024-01-01,web,order,inbound,5,EUR,a\n")
    ws.ingest(p)
    assert ws.timeline("CUST-1").column("text").to_pylist() == ["a", "b"]
    with pytest.raises(Exception, match="Did you mean: CUST-1"):
        ws.timeline("CUST-l")


def test_export_writes_parquet(ws, tmp_path):
    ws.ingest(write(tmp_path / "a.csv", HEADER + "C1,2024-01-01,web,order,inbound,5,EUR,\n"))
    files = ws.export(tmp_path / "out", ["interactions"])
    import pyarrow.parquet as pq

    assert pq.read_table(files[0]).num_rows == 1


def test_create_open_and_schema_version(tmp_path):
    with Workspace.create(tmp_path / "w") as w:
        assert w.schema_version == SCHEMA_VERSION
    with pytest.raises(WorkspaceExistsError):
        Workspace.create(tmp_path / "w")
    with pytest.raises(WorkspaceNotFoundError, match="custdyn init"):
        Workspace.open(tmp_path / "nowhere")
    with Workspace.open(tmp_path / "w") as w:
        w.con.execute("UPDATE _custdyn_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="newer custdyn"):
        Workspace.open(tmp_path / "w")


def test_migrations_upgrade_an_old_workspace(tmp_path):
    import custdyn.store as store

    old = store.MIGRATIONS[:1]
    orig, orig_v = store.MIGRATIONS, store.SCHEMA_VERSION
    store.MIGRATIONS, store.SCHEMA_VERSION = old, 1
    try:
        Workspace.create(tmp_path / "w").close()
    finally:
        store.MIGRATIONS, store.SCHEMA_VERSION = orig, orig_v
    with Workspace.open(tmp_path / "w") as w:
        assert w.schema_version == SCHEMA_VERSION
        w.con.execute("SELECT count(*) FROM text_signals").fetchone()


def test_find_walks_up_from_the_current_folder(tmp_path, monkeypatch):
    Workspace.create(tmp_path / "w").close()
    (tmp_path / "w" / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "w" / "sub" / "deeper")
    monkeypatch.delenv("CUSTDYN_WORKSPACE", raising=False)
    assert Workspace.find() == (tmp_path / "w").resolve()


HOLDER = """
import sys, time
from custdyn.store import Workspace
ws = Workspace.open(sys.argv[1], purpose="holder-test")
print("held", flush=True)
time.sleep(60)
"""


def test_second_writer_gets_a_message_naming_the_holder(tmp_path):
    Workspace.create(tmp_path / "w").close()
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "w")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceLockedError) as e:
            Workspace.open(tmp_path / "w")
        assert f"process {proc.pid} (holder-test)" in str(e.value)
        with pytest.raises(WorkspaceLockedError, match="holder-test"):
            Workspace.open(tmp_path / "w", read_only=True)
    finally:
        proc.kill()
        proc.wait()
    Workspace.open(tmp_path / "w").close()  # the lock died with its holder


def _big_csv(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        f.write(HEADER)
        for i in range(n):
            f.write(f"C{i % 50_000},2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00Z,"
                    f"web,order,inbound,{i % 997}.5,EUR,text number {i}\n")
    return path


def test_kill_9_during_a_large_ingest_leaves_the_workspace_as_it_was(tmp_path):
    w = tmp_path / "w"
    with Workspace.create(w) as ws:
        ws.ingest(write(tmp_path / "small.csv", HEADER + "C1,2024-01-01,web,order,inbound,5,,\n"))
        before = (count(ws), count(ws, "batches"))
    big = _big_csv(tmp_path / "big.csv", 1_500_000)
    proc = subprocess.Popen([sys.executable, "-m", "custdyn.cli", "-w", str(w), "ingest",
                             str(big)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = w / "custdyn.lock"
    deadline = time.time() + 30
    while time.time() < deadline and "ingest" not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.05)
    time.sleep(1.5)  # well into reading and staging
    assert proc.poll() is None, "ingest finished before it could be killed; make the file bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Workspace.open(w) as ws:
        assert (count(ws), count(ws, "batches")) == before
        [r] = ws.ingest(write(tmp_path / "after.csv", HEADER
                              + "C2,2024-01-01,web,order,inbound,5,,\n"))
        assert r.rows_loaded == 1
