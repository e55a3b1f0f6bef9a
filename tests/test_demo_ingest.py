"""`custdyn demo` walks the real path: files written, ingested by the readers, truth joins back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.store import Workspace


def test_demo_command_ingests_every_file_and_truth_joins(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "120", "--seed", "11"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with Workspace.open(d, read_only=True) as ws:
        s = ws.status()
        assert s["rejected"] == 0
        assert {b["format"] for b in s["batches"]} >= {"csv", "mbox", "jsonl"}
        assert set(s["by_channel"]) >= {"email", "phone", "meeting", "chat", "ticket", "web"}
        assert s["by_direction"]["outbound"] > 0 and s["by_direction"]["inbound"] > 0
        truth = pq.read_table(d / "sources" / "truth" / "messages.parquet")
        with_id = [i for i in truth.column("interaction_id").to_pylist() if i]
        ws.con.register("_truth_ids", pq.read_table(
            d / "sources" / "truth" / "messages.parquet").select(["interaction_id"]))
        missing = ws.con.execute(
            "SELECT count(*) FROM _truth_ids t WHERE t.interaction_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM interactions i WHERE i.interaction_id = t.interaction_id)").fetchone()
        assert with_id and missing[0] == 0
        # e-mail replies share the thread of the message they answer
        threads = ws.con.execute(
            "SELECT count(*) FROM interactions WHERE channel = 'email' AND direction = 'outbound' "
            "AND thread_id IN (SELECT interaction_id FROM interactions WHERE direction = 'inbound')"
        ).fetchone()[0]
        assert threads > 0
        # the CRM export went through its mapping: local Oslo times, derived kinds, attributes
        crm = ws.query("SELECT kind, attributes FROM interactions WHERE source = "
                       "'crm_activities.csv'").to_pylist()
        assert crm and {c["kind"] for c in crm} <= {"contact", "cancellation"}
        assert all("Outcome" in json.loads(c["attributes"]) for c in crm if c["attributes"])
        # every template slot was filled (emotion phrases once kept Portuguese "{o}" endings)
        slots = ws.con.execute(r"SELECT count(*) FROM interactions "
                               r"WHERE regexp_matches(text, '\{[a-z_]*\}')").fetchone()
        assert slots[0] == 0
        # the labelled sample: inbound texts as ingested, with their true sentiment
        from custdyn.text import read_labelled

        texts, labels, langs = read_labelled(d / "sources" / "truth" / "labelled.csv")
        assert 0 < len(texts) <= 2000 and set(labels) <= {"negative", "neutral", "positive"}
        assert langs is not None and set(langs) <= {"en", "pt", "no", "tl"}
        # the workspace knows its customers' languages: detection chooses among them
        from custdyn.text.analyzer import workspace_languages

        assert workspace_languages(ws) == ("en", "no", "pt", "tl")
        ws.con.register("_truth_msgs", truth)
        inbound = dict(ws.con.execute(
            "SELECT i.text, t.sentiment FROM interactions i JOIN _truth_msgs t USING "
            "(interaction_id) WHERE i.direction = 'inbound'").fetchall())
        assert all(inbound[t] == y for t, y in zip(texts, labels, strict=True))
    r = CliRunner().invoke(app, ["demo", str(d), "--customers", "50"])
    assert r.exit_code == 2 and "--force" in r.output
