"""enrich: scores only what is not yet scored, commits batch by batch, resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custdyn.settings import Settings
from custdyn.store import Workspace

pytest.importorskip("custdyn.text")

TEXTS = [
    ("en", "The delivery was late again and nobody answered my emails. I'm furious."),
    ("en", "Thank you so much, Anna solved everything in minutes!"),
    ("pt", "A entrega atrasou outra vez, estou muito chateado."),
    ("no", "Takk for rask levering, veldig fornøyd!"),
    ("tl", "Ang bagal ng delivery, sobrang nakakainis na talaga."),
    ("en", "Nordvik offered me 20% off, I'm thinking of switching to them."),
]


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace.create(tmp_path / "ws", Settings(
        competitors=[{"name": "Nordvik", "aliases": ["nordviks", "nordvik.no"]}]))
    rows = [
        {"interaction_id": f"m{i}", "customer_id": f"C{i % 3}",
         "occurred_at": f"2024-01-{1 + i:02d}T10:00:00Z", "channel": "email", "kind": "feedback",
         "direction": "inbound", "text": t}
        for i, (_, t) in enumerate(TEXTS * 5)
    ]
    rows.append({"interaction_id": "out1", "customer_id": "C1",
                 "occurred_at": "2024-02-01T10:00:00Z", "channel": "email", "kind": "contact",
                 "direction": "outbound", "text": "We are sorry, here is a voucher."})
    p = tmp_path / "msgs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w.ingest(p)
    yield w
    w.close()


def test_enrich_scores_inbound_once_and_resumes(ws):
    from custdyn.pipeline import enrich

    first = enrich(ws, "bulk", batch_size=7, limit=10)
    assert first.scored == 10 and first.pending == 10
    rest = enrich(ws, "bulk", batch_size=7)
    assert rest.scored == 20 and rest.already_scored == 10
    again = enrich(ws, "bulk")
    assert again.scored == 0
    n, distinct = ws.con.execute(
        "SELECT count(*), count(DISTINCT interaction_id) FROM text_signals").fetchone()
    assert n == distinct == 30  # the outbound message was not scored
    row = ws.con.execute(
        "SELECT mentions, intent_to_switch, sentiment_score FROM text_signals "
        "WHERE interaction_id = 'm5'").fetchone()
    hits = json.loads(row[0])
    assert hits and hits[0]["competitor"] == "Nordvik" and row[1] is True
    scores = [r[0] for r in ws.con.execute("SELECT sentiment_score FROM text_signals").fetchall()]
    assert all(-1 <= s <= 1 for s in scores)


def test_enrich_all_directions_adds_the_vendors_messages(ws):
    from custdyn.pipeline import enrich

    enrich(ws, "bulk")
    more = enrich(ws, "bulk", directions=("inbound", "outbound"))
    assert more.scored == 1
