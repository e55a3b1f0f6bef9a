"""A workspace's languages, learnt once over its customers' messages and kept
(``language_shares``), read each message's language: a short Norwegian line that alone reads
as Danish reads as Norwegian in a workspace of Norwegian messages, whatever it is scored with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from custdyn.demo.texts import fixed_sentences
from custdyn.pipeline import enrich
from custdyn.settings import Settings
from custdyn.store import Workspace
from custdyn.text import TextAnalyzer
from custdyn.text._langid import detect_many
from custdyn.text.analyzer import (
    MIN_SHARE_TEXTS,
    language_shares_status,
    learn_language_shares,
    workspace_language_shares,
)

NORWEGIAN = fixed_sentences("no")
ENGLISH = fixed_sentences("en")[:60]


def _workspace(path: Path, texts: list[str], start: int = 0, ws: Workspace | None = None) -> Workspace:
    """Messages by customers whose language the log does not give."""
    w = ws or Workspace.create(path / "ws", Settings())
    p = path / f"log{start}.jsonl"
    p.write_text("\n".join(json.dumps({
        "interaction_id": f"m{start + i}", "customer_id": f"C{(start + i) % 40}",
        "occurred_at": "2024-03-01T10:00:00Z", "channel": "chat", "kind": "feedback",
        "direction": "inbound", "text": t}) for i, t in enumerate(texts)) + "\n")
    w.ingest(p)
    return w


def _languages(w: Workspace) -> dict[str, str]:
    return dict(w.con.execute("SELECT i.text, s.language FROM text_signals s "
                              "JOIN interactions i USING (interaction_id)").fetchall())


def test_enrich_learns_the_languages_once_and_reads_every_message_with_them(tmp_path):
    alone = dict(zip(NORWEGIAN, detect_many(NORWEGIAN)[0], strict=True))
    misread = [t for t, g in alone.items() if g != "no"]
    assert len(misread) > 20  # alone, many short Norwegian lines read as a neighbour

    w = _workspace(tmp_path, NORWEGIAN + ENGLISH)
    try:
        first = enrich(w, "bulk")
        assert first.languages_learnt
        shares = workspace_language_shares(w)
        assert shares == first.language_shares
        assert list(shares)[:2] == ["no", "en"] and sum(shares.values()) == pytest.approx(1)
        got = _languages(w)
        still = [t for t in misread if got[t] != "no"]  # "Hallo," reads English beside English
        assert len(still) <= len(misread) // 20, still
        # the minority language keeps its lines (only greetings such as "Hey," are unclear)
        english_alone = sum(g == "en" for g in detect_many(ENGLISH)[0])
        assert english_alone <= sum(got[t] == "en" for t in ENGLISH) >= len(ENGLISH) - 3
        # a later message, scored on its own, is read with the kept shares
        _workspace(tmp_path, [misread[0]], start=10_000, ws=w)
        again = enrich(w, "bulk")
        assert not again.languages_learnt and again.scored == 1
        assert w.con.execute("SELECT language FROM text_signals s JOIN interactions i "
                             "USING (interaction_id) WHERE i.interaction_id = 'm10000'"
                             ).fetchone() == ("no",)
        # and so does any analyzer of the workspace
        ta = TextAnalyzer.in_workspace(w, "bulk")
        assert ta.analyze([misread[1]]).column("language").to_pylist() == ["no"]
    finally:
        w.close()


def test_a_clear_minority_keeps_its_language(tmp_path):
    danish = "Tak for hjælpen, I har været utroligt søde og hjælpsomme hele vejen igennem."
    w = _workspace(tmp_path, NORWEGIAN + [danish])
    try:
        enrich(w, "bulk")
        assert _languages(w)[danish] == "da"
    finally:
        w.close()


def test_shares_are_relearnt_when_asked_and_when_the_workspace_doubles(tmp_path):
    w = _workspace(tmp_path, NORWEGIAN[:MIN_SHARE_TEXTS + 10])
    try:
        enrich(w, "bulk")
        first = language_shares_status(w)
        assert first is not None and first["learnt_from"] == MIN_SHARE_TEXTS + 10
        assert first["messages"] == MIN_SHARE_TEXTS + 10
        assert list(workspace_language_shares(w))[0] == "no"
        # fewer than twice as many messages: kept as they are
        _workspace(tmp_path, ENGLISH[:20], start=1000, ws=w)
        assert not enrich(w, "bulk").languages_learnt
        # asked for: learnt again, from all the messages
        r = enrich(w, "bulk", relearn_languages=True)
        assert r.languages_learnt and "en" in r.language_shares
        assert language_shares_status(w)["learnt_from"] == MIN_SHARE_TEXTS + 30
        # the workspace more than doubles: learnt again by itself
        _workspace(tmp_path, ENGLISH[20:60] + NORWEGIAN[100:160], start=2000, ws=w)
        r = enrich(w, "bulk")
        assert r.languages_learnt
        assert language_shares_status(w)["learnt_from"] == MIN_SHARE_TEXTS + 130
        # learnt from a sample, the shares remember how many messages there were
        assert learn_language_shares(w, sample=MIN_SHARE_TEXTS + 5) is not None
        status = language_shares_status(w)
        assert (status["learnt_from"], status["messages"]) == (MIN_SHARE_TEXTS + 5,
                                                                MIN_SHARE_TEXTS + 130)
        assert not enrich(w, "bulk").languages_learnt
    finally:
        w.close()


def test_shares_are_relearnt_when_the_workspace_names_its_languages(tmp_path):
    w = _workspace(tmp_path, NORWEGIAN[:100] + ENGLISH[:20])
    try:
        enrich(w, "bulk")
        assert language_shares_status(w)["learnt_among"] is None
        assert len(workspace_language_shares(w)) > 2
        assert not enrich(w, "bulk").languages_learnt
        w.settings.extra["text"] = {"languages": ["Norwegian", "en"]}
        r = enrich(w, "bulk")
        assert r.languages_learnt and set(r.language_shares) == {"no", "en"}
        assert language_shares_status(w)["learnt_among"] == ("no", "en")
        assert not enrich(w, "bulk").languages_learnt
    finally:
        w.close()


def test_a_workspace_with_too_few_messages_keeps_no_shares(tmp_path):
    w = _workspace(tmp_path, NORWEGIAN[:MIN_SHARE_TEXTS - 1])
    try:
        r = enrich(w, "bulk")
        assert not r.languages_learnt and r.language_shares is None
        assert learn_language_shares(w) is None
        assert workspace_language_shares(w) is None and language_shares_status(w) is None
    finally:
        w.close()


def test_enrich_command_reports_the_shares_it_learnt(tmp_path, monkeypatch):
    from custdyn.cli import app

    w = _workspace(tmp_path, NORWEGIAN[:80] + ENGLISH[:40])
    w.close()
    monkeypatch.setenv("CUSTDYN_WORKSPACE", str(tmp_path / "ws"))
    runner = CliRunner()
    out = runner.invoke(app, ["enrich", "--engine", "bulk", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["languages_learnt"] and list(got["language_shares"])[:2] == ["no", "en"]
    out = runner.invoke(app, ["enrich", "--engine", "bulk", "--relearn-languages"])
    assert out.exit_code == 0, out.output
    assert "learnt now" in out.stdout
    assert re.search(r"no \d\d%,\s+en \d\d%", out.stdout), out.stdout
    got = json.loads(runner.invoke(app, ["status", "--json"]).stdout)["language_shares"]
    assert got["learnt_from"] == 120 and list(got["shares"])[:2] == ["no", "en"]
    assert "languages of the customers' messages (learnt" in runner.invoke(app, ["status"]).stdout
