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


def test_status_names_engines_that_now_score_differently(ws):
    from typer.testing import CliRunner

    from custdyn.cli import app
    from custdyn.pipeline import enrich, text_status

    enrich(ws, "bulk")
    current = text_status(ws)[0]["current"]
    assert current.startswith("bulk:") and current.endswith("+body+long")
    # rows of an earlier version of the engine (before messages were read without greetings)
    ws.con.execute("UPDATE text_signals SET engine = 'bulk:1' WHERE interaction_id IN "
                   "(SELECT interaction_id FROM text_signals ORDER BY 1 LIMIT 10)")
    got = {e["engine"]: e for e in text_status(ws)}
    assert got["bulk:1"]["rows"] == 10 and got["bulk:1"]["current"] == current
    assert got[current]["rows"] == 20 and got[current]["current"] == current
    path = ws.path
    ws.close()
    r = CliRunner().invoke(app, ["-w", str(path), "status"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert f"bulk:1 is an earlier version of the bulk engine (now {current})" in out
    assert "custdyn enrich --engine bulk" in out


def test_a_new_version_takes_over_the_scores_of_texts_it_reads_as_before(tmp_path):
    """An engine that now reads long texts through scores again only the long ones; the short
    ones' rows of the version before are taken over, not scored again."""
    from custdyn.pipeline import enrich

    w = Workspace.create(tmp_path / "ws")
    long_text = "The parcel came a week late and the box was crushed. " * 40  # 2,120 bytes
    texts = [t for _, t in TEXTS] + [long_text, long_text.replace("late", "early"),
                                     "Late again.\n\nThis e-mail is CONFIDENTIAL."]
    rows = [{"interaction_id": f"m{i}", "customer_id": "C1", "channel": "email",
             "occurred_at": f"2024-01-{1 + i:02d}T10:00:00Z", "text": t}
            for i, t in enumerate(texts)]  # fmt: skip
    p = tmp_path / "msgs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w.ingest(p)
    try:
        first = enrich(w, "bulk")
        assert first.scored == 9 and first.carried == 0
        new, (old, max_bytes) = first.engine, w_engine_carries("bulk")
        assert new == old + "+long" and max_bytes == 600
        # make the rows an earlier version's, with a mark that shows whether they were copied
        w.con.execute("UPDATE text_signals SET engine = ?, sentiment_score = 0.125", [old])
        again = enrich(w, "bulk")
        # short ones taken over; long ones and one that may hold a disclaimer scored again
        assert again.carried == 6 and again.pending == 3 and again.scored == 3
        got = dict(w.con.execute(
            "SELECT interaction_id, sentiment_score FROM text_signals WHERE engine = ?",
            [new]).fetchall())  # fmt: skip
        assert len(got) == 9
        assert all(got[f"m{i}"] == 0.125 for i in range(6))  # taken over
        assert all(got[f"m{i}"] != 0.125 for i in (6, 7, 8))  # scored again
        n_old = w.con.execute("SELECT count(*) FROM text_signals WHERE engine = ?", [old])
        assert n_old.fetchone()[0] == 9  # the earlier rows stay
        assert enrich(w, "bulk").carried == 0  # nothing left to take over
    finally:
        w.close()


def w_engine_carries(name: str) -> tuple[str, int]:
    from custdyn.text import TextAnalyzer

    return TextAnalyzer(name).engine.carries_from


def test_enrich_detects_among_the_workspace_languages(tmp_path):
    from custdyn.pipeline import enrich

    rows = [{"interaction_id": f"d{i}", "customer_id": "C1",
             "occurred_at": f"2024-01-0{1 + i}T10:00:00Z", "channel": "chat", "kind": "feedback",
             "direction": "inbound", "text": t}
            for i, t in enumerate(["Tak for hjælpen", "Thanks, all good"])]  # fmt: skip
    found = {}
    for name, extra in [("plain", {}), ("known", {"text": {"languages": ["Norwegian", "en"]}})]:
        w = _log(tmp_path / name, rows, Settings(extra=extra))
        try:
            enrich(w, "bulk")
            found[name] = dict(w.con.execute(
                "SELECT interaction_id, language FROM text_signals").fetchall())
        finally:
            w.close()
    assert found["plain"] == {"d0": "da", "d1": "en"}  # a short Norwegian line reads Danish
    assert found["known"] == {"d0": "no", "d1": "en"}


def test_unknown_workspace_language_is_refused_naming_the_file(tmp_path):
    from custdyn.pipeline import enrich

    w = _log(tmp_path, [_ev(1, "C1", "2024-01-01", "feedback", text="hei")],
             Settings(extra={"text": {"languages": ["no", "elvish"]}}))
    try:
        with pytest.raises(ValueError, match=r"custdyn.toml: \[text\] languages: language 'elvish'"):
            enrich(w, "bulk")
    finally:
        w.close()


def _log(tmp_path: Path, rows: list[dict], settings: Settings | None = None) -> Workspace:
    w = Workspace.create(tmp_path / "log", settings or Settings(
        competitors=[{"name": "Nordvik", "aliases": ["nordvik.no"]}]))
    p = tmp_path / "log.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w.ingest(p)
    return w


def _ev(i: int, cid: str, day: str, kind: str, direction: str = "inbound", text: str | None = None,
        thread: str | None = None, **attrs: object) -> dict:
    r = {"interaction_id": f"e{i}", "customer_id": cid, "occurred_at": f"{day}T10:00:00Z",
         "channel": "email", "kind": kind, "direction": direction}
    if text:
        r["text"] = text
    if thread:
        r["thread_id"] = thread
    if attrs:
        r["attributes"] = json.dumps(attrs)
    return r


def test_leaving_features_count_what_happened_in_each_window(tmp_path):
    import datetime as dt

    import numpy as np

    from custdyn.pipeline import enrich, leaving_features

    rows = [
        # A: a steady buyer until 200 days ago, then loud: complaints, a competitor, an
        # unanswered thread, a low NPS
        *[_ev(k, "A", f"2024-0{1 + k}-10", "order") for k in range(6)],  # Jan..Jun
        _ev(10, "A", "2024-11-20", "feedback", text="Nordvik offered me 20% off, I'm thinking "
            "of switching to them. The delivery was late again, I'm furious."),
        _ev(11, "A", "2024-12-10", "feedback", text="Still waiting. Terrible service."),
        _ev(12, "A", "2024-12-15", "support", text="Where is my refund?", thread="T1"),
        _ev(13, "A", "2024-12-01", "order_issue"),
        _ev(14, "A", "2024-12-05", "survey", nps=2),
        _ev(15, "A", "2024-06-05", "survey", nps=9),
        # B: buys every month, one answered thread
        *[_ev(20 + k, "B", f"2024-{1 + k:02d}-15", "order") for k in range(12)],
        _ev(40, "B", "2024-12-16", "support", text="Can I change my address?", thread="T2"),
        _ev(41, "B", "2024-12-16", "support", direction="outbound", text="Done!", thread="T2"),
    ]
    with _log(tmp_path, rows) as ws:
        enrich(ws, "bulk")
        at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        f = leaving_features(ws, at, ["A", "B", "C"])
    a, b, c = 0, 1, 2
    assert f["orders_90d"][a] == 0 and f["orders_prev_275d"][a] == 6
    assert f["orders_90d"][b] == 3 and f["orders_30d"][b] == 1
    assert f["complaints_90d"][a] == 2 and f["complaints_30d"][a] == 1
    assert f["competitor_mentions_90d"][a] == 1 and f["competitor_mentions_90d"][b] == 0
    assert f["days_since_competitor_talk"][a] == pytest.approx(41 + 14 / 24)
    assert np.isnan(f["days_since_competitor_talk"][b])
    assert f["order_issues_90d"][a] == 1 and f["unanswered_90d"][a] == 1
    assert f["unanswered_90d"][b] == 0
    assert f["nps_last"][a] == 2 and f["nps_min_180d"][a] == 2
    assert f["order_pace_90d"][a] < 0.5 < f["order_pace_90d"][b]
    assert f["negative_messages_90d"][a] >= 1
    assert f["sentiment_30d_recent"][a] < 0
    assert f["orders_90d"][c] == 0 and np.isnan(f["sentiment_30d_recent"][c])


def test_defection_labels_follow_their_rule(tmp_path):
    import datetime as dt

    from custdyn.pipeline import defection_labels, label_lag_days

    day = dt.date(2024, 1, 1)

    def d(k: int) -> str:
        return (day + dt.timedelta(days=k)).isoformat()

    rows = [
        _ev(1, "quiet", d(10), "order"),                       # nothing after at
        _ev(2, "loud", d(110), "feedback", text="goodbye"),     # complains, then silence
        _ev(3, "back", d(200), "order"),                        # quiet in H, buys after H
        _ev(4, "buyer", d(120), "order"), _ev(5, "buyer", d(250), "order"),
        _ev(6, "sub", d(130), "order"), _ev(7, "sub", d(140), "cancellation"),
        _ev(8, "sub", d(250), "contact"),
    ]
    ids = ["quiet", "loud", "back", "buyer", "sub"]
    at = dt.datetime(2024, 4, 1, tzinfo=dt.UTC)  # day 91
    with _log(tmp_path, rows) as ws:
        late = at + dt.timedelta(days=200)
        got = {rule: dict(zip(ids, defection_labels(ws, ids, at, 90, late, rule), strict=True))
               for rule in ("gone", "no_activity", "no_purchase")}
        assert label_lag_days("gone", 90) == 180 and label_lag_days("no_purchase", 90) == 90
        with pytest.raises(ValueError, match="not known"):
            defection_labels(ws, ids, at, 90, at + dt.timedelta(days=100), "gone")
    assert got["no_activity"] == {"quiet": 1, "loud": 0, "back": 1, "buyer": 0, "sub": 1}
    assert got["no_purchase"] == {"quiet": 1, "loud": 1, "back": 1, "buyer": 0, "sub": 1}
    assert got["gone"] == {"quiet": 1, "loud": 1, "back": 0, "buyer": 0, "sub": 1}


def test_contractual_customers_need_a_marker(tmp_path):
    from custdyn.pipeline import contractual_customers

    rows = [_ev(1, "A", "2024-01-05", "order"), _ev(2, "A", "2024-03-05", "cancellation"),
            _ev(3, "B", "2024-01-05", "order")]
    with _log(tmp_path, rows) as ws:
        assert contractual_customers(ws) == set()  # cancellations alone: chosen by outcome
    cust = tmp_path / "customers.csv"
    cust.write_text("customer_id,plan\nB,subscription\nC,standard\n")
    (tmp_path / "log").rename(tmp_path / "old")
    with _log(tmp_path, rows) as ws:
        ws.ingest(cust)
        assert contractual_customers(ws) == {"A", "B"}
        s = ws.settings
        s.extra["risk"] = {"contract_attribute": "plan", "contract_values": ["standard"]}
        assert contractual_customers(ws) == {"A", "C"}
