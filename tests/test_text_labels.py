"""Labels: storing, spreadsheet import/export with bad-row reports, what to label next, and
the interactive ``custdyn label`` loop (keys fed through Typer's CliRunner)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.store import Workspace
from custdyn.text.labels import (
    add_label,
    allocate,
    choose_candidates,
    export_candidates,
    import_labels,
    kmeans,
    read_label_file,
    read_labels,
    select_for_labelling,
    typical_picks,
)

POS = ["I love this shop, thank you!", "Great service, very happy with the order.",
       "Excelente atendimento, muito obrigado!", "Fantastic, arrived early and works well."]
NEG = ["Terrible, the parcel never arrived and nobody answers.", "I want my money back, awful.",
       "Péssimo serviço, quero o reembolso.", "The product broke after one day, very angry."]
NEU = ["What time do you open on Saturday?", "Please send the invoice to my work address.",
       "Qual é o prazo de entrega para Lisboa?", "I changed my phone number last week."]  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace.create(tmp_path / "ws")
    rows = []
    for i, t in enumerate(POS + NEG + NEU):
        rows.append({"interaction_id": f"m{i}", "customer_id": f"C{i % 4}",
                     "occurred_at": f"2024-01-{1 + i:02d}T10:00:00Z",
                     "channel": "email" if i % 2 else "chat", "kind": "feedback",
                     "direction": "inbound", "thread_id": f"T{i % 3}", "text": t})  # fmt: skip
    rows.append({"interaction_id": "out1", "customer_id": "C1", "direction": "outbound",
                 "occurred_at": "2024-02-01T10:00:00Z", "text": "We are sorry, here is a voucher."})
    p = tmp_path / "msgs.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w.ingest(p)
    yield w
    w.close()


def test_labels_replace_earlier_answer_for_same_message(ws):
    add_label(ws, POS[0], "negative", interaction_id="m0")
    add_label(ws, POS[0], "positive", interaction_id="m0", language="en")
    add_label(ws, "free text, no message", "neu")
    got = {r["text"]: r for r in read_labels(ws)}
    assert len(got) == 2
    assert got[POS[0]]["sentiment"] == "positive"
    assert got["free text, no message"]["sentiment"] == "neutral"
    with pytest.raises(ValueError):
        add_label(ws, "   ", "positive")
    with pytest.raises(ValueError):
        add_label(ws, "x", "furious")


def test_label_file_reports_bad_rows_with_row_and_reason(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text(
        "text,label,language\n"
        "good one,positive,en\n"
        ",negative,en\n"  # row 3: empty text
        "meh,furious,en\n"  # row 4: unknown label
        "to do later,,pt\n"  # row 5: unlabelled, skipped quietly
        "x,neg,12\n"  # row 6: not a language
        "too,many,fields,here\n"  # row 7
        "ruim demais,-1,pt\n",
        encoding="utf-8",
    )
    good, bad = read_label_file(p)
    assert [(g["text"], g["sentiment"], g["language"]) for g in good] == [
        ("good one", 2, "en"), ("ruim demais", 0, "pt")]
    assert [b.row for b in bad] == [3, 4, 6, 7]
    assert "empty" in bad[0].reason and "furious" in bad[1].reason
    with pytest.raises(ValueError, match="'text' and 'label'"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        read_label_file(tmp_path / "x.csv")


texts_st = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(texts_st, st.sampled_from(["negative", "neutral", "positive"]),
                          st.sampled_from(["en", "pt", "no", "tl"])), max_size=15),
       st.sampled_from([".csv", ".tsv"]))  # fmt: skip
def test_label_file_round_trips(tmp_path_factory, rows, ext):
    rows = [r for r in rows if r[0].strip() and (ext == ".csv" or "\t" not in r[0])]
    p = tmp_path_factory.mktemp("rt") / f"l{ext}"
    with open(p, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="," if ext == ".csv" else "\t")
        w.writerow(["text", "label", "language"])
        w.writerows(rows)
    good, bad = read_label_file(p)
    assert bad == []
    names = ("negative", "neutral", "positive")
    assert [(g["text"], names[g["sentiment"]], g["language"]) for g in good] == rows


def _clusters(sizes, dim=16, spread=0.15, seed=0):
    """Unit vectors drawn around one random direction per cluster; cluster of each row."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    which = np.repeat(np.arange(len(sizes)), sizes)
    Z = centres[which] / np.linalg.norm(centres[which], axis=1, keepdims=True)
    Z = Z + spread * rng.normal(size=Z.shape) / np.sqrt(dim)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True), which


def test_typical_picks_one_per_cluster_largest_first_and_skips_covered_ones():
    Z, which = _clusters([80, 60, 40, 30, 20])
    pick = typical_picks(Z, np.zeros(len(Z), bool), 5)
    assert sorted(which[pick]) == [0, 1, 2, 3, 4]  # every planted cluster, once
    assert which[pick[0]] == 0  # the largest first
    # the pick is typical: nearer its cluster's centre than the cluster's average member
    for i in pick:
        m = which == which[i]
        centre = Z[m].mean(axis=0)
        assert Z[i] @ centre >= np.mean(Z[m] @ centre)
    # labels already in the two largest clusters: the next picks go to the other three
    covered = np.zeros(len(Z), bool)
    covered[[0, 1, 80, 81]] = True
    nxt = typical_picks(Z, covered, 3)
    assert sorted(which[nxt]) == [2, 3, 4]
    assert not covered[nxt].any()


def test_kmeans_recovers_planted_clusters():
    Z, which = _clusters([50, 40, 30, 20, 10], dim=32, spread=0.1, seed=3)
    lab = kmeans(Z, 5, seed=0)
    # the same partition as planted (cluster numbers may differ)
    pairs = {(int(a), int(b)) for a, b in zip(which, lab, strict=True)}
    assert len(pairs) == 5 and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 5
    assert kmeans(Z, 1).tolist() == [0] * len(Z)
    assert sorted(kmeans(Z[:3], 10).tolist()) == [0, 1, 2]  # k capped at the rows there are


def test_typical_picks_edges():
    Z, _ = _clusters([3, 2])
    assert typical_picks(Z, np.zeros(5, bool), 0) == []
    assert typical_picks(Z, np.ones(5, bool), 3) == []
    got = typical_picks(Z, np.array([True, False, False, True, False]), 10)
    assert sorted(got) == [1, 2, 4]  # fewer free rows than asked: all of them


@given(st.lists(st.integers(0, 500), min_size=1, max_size=8), st.integers(0, 300))
@settings(max_examples=200, deadline=None)
def test_allocate_property(counts, n):
    got = allocate(counts, n)
    assert sum(got) == min(n, sum(counts))
    assert all(0 <= g <= c for g, c in zip(got, counts, strict=True))
    # a larger group never gets fewer picks than a smaller one, unless the smaller ran out
    for a, ga, b, gb in ((a, ga, b, gb) for a, ga in zip(counts, got, strict=True)
                         for b, gb in zip(counts, got, strict=True)):
        if a > b and ga < gb:
            raise AssertionError((counts, n, got))


def test_allocate_between_equal_and_proportional():
    got = allocate([900, 100], 20)
    assert got == [15, 5]  # proportional would give 18/2, equal shares 10/10


def test_choose_candidates_spreads_over_groups_and_interleaves():
    Z, which = _clusters([60, 40, 30, 20], seed=1)
    groups = ["en" if w < 2 else "no" for w in which]
    pick = choose_candidates(Z, groups, np.zeros(len(Z), bool), 6)
    assert len(pick) == len(set(pick)) == 6
    got = [groups[i] for i in pick]
    assert got.count("en") == 4 and got.count("no") == 2  # sqrt(100) : sqrt(50) = 3.5 : 2.5
    assert got[:2] in (["en", "no"], ["no", "en"])  # interleaved, not one group then the other
    assert set(which[pick]) == {0, 1, 2, 3}


def test_select_for_labelling_excludes_labelled_and_outbound(ws):
    add_label(ws, POS[0], "positive", interaction_id="m0")
    cands = select_for_labelling(ws, 50)
    ids = {c.interaction_id for c in cands}
    assert "m0" not in ids and "out1" not in ids
    assert len(ids) == len(cands) >= 8
    assert {c.channel for c in cands} == {"email", "chat"}
    c = next(c for c in cands if c.interaction_id == "m9")
    assert c.context and all(": " in line for line in c.context)  # earlier thread messages


def test_select_for_labelling_embeds_once_for_train_text_and_covers_labelled(ws):
    from custdyn.text.workspace_models import label_features

    calls = []
    first = select_for_labelling(ws, 3, progress=lambda d, t: calls.append((d, t)))
    assert len(first) == 3 and calls and calls[-1][0] == calls[-1][1] == 12  # 12 inbound texts
    for c in first:
        add_label(ws, c.text, "neutral", interaction_id=c.interaction_id, language=c.language)
    calls.clear()
    again = select_for_labelling(ws, 3, progress=lambda d, t: calls.append((d, t)))
    assert calls == []  # every text, labelled or not, came from the workspace's cache
    assert not {c.interaction_id for c in again} & {c.interaction_id for c in first}
    steps = []
    label_features(ws, progress=lambda d, t: steps.append(d))
    assert steps == []  # train-text reads the labelled texts' embeddings from the same cache


def test_labels_without_language_cover_their_detected_language(ws):
    from custdyn.text.labels import _labelled_pool

    add_label(ws, "The parcel never arrived and nobody answers my e-mails.", "negative")
    add_label(ws, "Chegou tudo bem, obrigado!", "positive", language="Portuguese")
    assert sorted(g for _, g in _labelled_pool(ws, 10, 0)) == ["en", "pt"]


def test_themes_label_alone_or_with_a_sentiment_and_merge_with_earlier_labels(ws, tmp_path):
    """A theme may be labelled without a sentiment (in a file: an empty label, a theme); a
    later label keeps what it does not say from the earlier one."""
    from custdyn.text.labels import read_theme_labels

    p = tmp_path / "themes.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "theme", "interaction_id"])
        w.writerow([NEG[0], "negative", "late delivery", "m4"])
        w.writerow([NEU[0], "", "opening hours", "m8"])  # the theme alone
        w.writerow([NEU[1], "", "", "m9"])  # still to label: skipped
        w.writerow(["", "", "billing", ""])  # a theme with no text: a bad row
        w.writerow([POS[0], "positive", " None ", "m0"])  # about no theme
    rows, bad = read_label_file(p)
    assert [(b.row, "text" in b.reason) for b in bad] == [(5, True)]
    assert [(r["interaction_id"], r["sentiment"], r["theme"]) for r in rows] == [
        ("m4", 0, "late delivery"), ("m0", 2, "None"), ("m8", None, "opening hours")]
    r = import_labels(ws, p)
    assert r.added == 3 and len(r.bad) == 1
    assert {x["interaction_id"] for x in read_labels(ws)} == {"m4", "m0"}  # with a sentiment
    themes = {x["interaction_id"]: x["theme"] for x in read_theme_labels(ws)}
    assert themes == {"m4": "late delivery", "m8": "opening hours", "m0": "None"}
    # a sentiment for m8 later keeps its theme; a theme for m4 later keeps its sentiment
    add_label(ws, NEU[0], "neutral", interaction_id="m8", emotions=[])
    add_label(ws, NEG[0], None, interaction_id="m4", theme="  parcel   lost ")
    got = {x["interaction_id"]: x for x in read_labels(ws)}
    assert got["m8"]["sentiment"] == "neutral" and got["m8"]["emotions"] == []
    assert got["m4"]["sentiment"] == "negative"
    themes = {x["interaction_id"]: x["theme"] for x in read_theme_labels(ws)}
    assert themes["m8"] == "opening hours" and themes["m4"] == "parcel lost"
    with pytest.raises(ValueError, match="sentiment or a theme"):
        add_label(ws, "x", None)


def test_a_file_of_texts_and_themes_alone_imports_and_reads(ws, tmp_path):
    """A file with `text` and `theme` and no `label` column (a CRM's ticket categories)
    labels themes alone; theme_rows reads it for eval-themes; bad rows are named."""
    from custdyn.text.labelled import theme_rows
    from custdyn.text.labels import read_theme_labels

    p = tmp_path / "tickets.tsv"
    p.write_text("text\ttheme\tlanguage\n"
                 f"{NEG[0]}\tdelivery\ten\n{NEG[2]}\trefunds\tpt\n{NEU[0]}\tnone\ten\n"
                 "\tdelivery\ten\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 5"):
        theme_rows(p)
    p.write_text("\n".join(p.read_text(encoding="utf-8").splitlines()[:4]) + "\n",
                 encoding="utf-8")
    texts, themes, langs = theme_rows(p)
    assert themes == ["delivery", "refunds", "none"] and langs == ["en", "pt", "en"]
    assert texts[1] == NEG[2]
    r = import_labels(ws, p)
    assert r.added == 3 and r.bad == [] and read_labels(ws) == []
    assert sorted(x["theme"] for x in read_theme_labels(ws)) == ["delivery", "none", "refunds"]
    q = tmp_path / "nothing.csv"
    q.write_text("text,label\nhello,positive\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a 'theme' column"):
        theme_rows(q)


def test_export_then_import_round_trip(ws, tmp_path):
    from custdyn.schema import EMOTIONS
    from custdyn.text.labelled import parse_emotions

    cands = select_for_labelling(ws, 5)
    p = tmp_path / "todo.tsv"
    assert export_candidates(p, cands) == len(cands)
    lines = p.read_text(encoding="utf-8").splitlines()
    # the hints: the engine's likeliest emotions in the emotions column's own form (no theme
    # fit yet, so the backlog names none); import ignores them
    header = lines[0].split("\t")
    assert header[-2:] == ["predicted_emotions", "backlog_theme"]
    for c, line in zip(cands, lines[1:], strict=True):
        cells = line.split("\t")
        assert parse_emotions(cells[-2] or "none") == sorted(
            [e for e, _ in c.likely_emotions()], key=EMOTIONS.index)
        assert cells[-1] == ""
    filled = [lines[0]] + [line.replace("\t\t", "\tneutral\t", 1) for line in lines[1:]]
    p.write_text("\n".join(filled) + "\n", encoding="utf-8")
    r = import_labels(ws, p)
    assert r.added == len(cands) and r.bad == [] and r.replaced == 0
    got = ws.con.execute("SELECT interaction_id, sentiment FROM labels").fetchall()
    assert {g[0] for g in got} == {c.interaction_id for c in cands}
    assert {g[1] for g in got} == {"neutral"}
    # the same file again, one answer changed, one new free text twice: replaced, not added
    again = [filled[0], *[line.replace("\tneutral\t", "\tpositive\t", 1) if i == 0 else line
                          for i, line in enumerate(filled[1:])],
             "Brand new text\tnegative\ten" + "\t" * 7, "Brand new text\tpositive\ten" + "\t" * 7]
    p.write_text("\n".join(again) + "\n", encoding="utf-8")
    r = import_labels(ws, p)
    assert (r.added, r.replaced, r.bad) == (1, len(cands) + 1, [])
    got = dict(ws.con.execute("SELECT coalesce(interaction_id, text), sentiment FROM labels"
                              ).fetchall())  # fmt: skip
    assert got[cands[0].interaction_id] == "positive" and got["Brand new text"] == "positive"


def _invoke(ws_path: Path, args: list[str], keys: str = ""):
    return CliRunner().invoke(app, ["--workspace", str(ws_path), *args], input=keys)


def test_cli_label_one_key_per_answer_and_resume(ws):
    path = ws.path
    ws.close()
    r = _invoke(path, ["label", "--n", "4"], "nxpsq")  # x is ignored, s skips, q quits
    assert r.exit_code == 0, r.output
    assert "labelled 2, skipped 1" in r.output
    with Workspace.open(path, read_only=True) as w:
        got = w.con.execute("SELECT sentiment, labelled_by, source FROM labels "
                            "ORDER BY labelled_at").fetchall()  # fmt: skip
    assert [g[0] for g in got] == ["negative", "positive"]
    assert got[0][2] == "cli" and got[0][1]
    r = _invoke(path, ["label", "--n", "3", "--json"], "uuu")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["labels"] == 5


def test_cli_label_asks_emotions_when_told(ws):
    """With --emotions each answer is followed by emotion keys (1-8, a second press takes
    one back), Enter to finish (none pressed: no emotion), x for "not said"."""
    path = ws.path
    ws.close()
    # 1st: negative, anger + sadness (6), 5 pressed twice = joy taken back; 2nd: positive,
    # none; 3rd: neutral, not said; 4th: skipped; then quit
    r = _invoke(path, ["label", "--n", "4", "--emotions"], "n1556\np\nuxsq")
    assert r.exit_code == 0, r.output
    assert "labelled 3, skipped 1" in r.output and "anger, sadness" in r.output
    with Workspace.open(path, read_only=True) as w:
        got = w.con.execute("SELECT sentiment, emotions FROM labels ORDER BY labelled_at"
                            ).fetchall()  # fmt: skip
    assert [(g[0], None if g[1] is None else json.loads(g[1])) for g in got] == [
        ("negative", ["anger", "sadness"]), ("positive", []), ("neutral", None)]


def test_cli_label_asks_themes_when_told(ws):
    """With --themes each answer is followed by a theme: a new name, the number of one
    named before, - for none, Enter for not said."""
    from custdyn.text.labels import read_theme_labels

    add_label(ws, "Where is my refund?", "negative", theme="refunds")
    path = ws.path
    ws.close()
    r = _invoke(path, ["label", "--n", "4", "--themes"], "nlate delivery\np2\nu-\nn\n")
    assert r.exit_code == 0, r.output
    assert "labelled 4" in r.output and "[1] refunds" in r.output
    assert "[2] late delivery" in r.output
    with Workspace.open(path, read_only=True) as w:
        got = [(x["theme"]) for x in read_theme_labels(w)]
        n = w.con.execute("SELECT count(*) FROM labels WHERE theme IS NULL").fetchone()[0]
    assert got == ["refunds", "late delivery", "late delivery", "none"] and n == 1


def test_cli_label_shows_the_models_emotions_and_the_backlogs_theme(ws):
    """Each text to label shows the engine's likeliest emotions; with --themes, the theme the
    backlog's last fit gave it, and "=" takes it when it is one the user named."""
    import datetime as dt

    from custdyn.insights import ThemeSet, _store_themes
    from custdyn.schema import EMOTIONS

    cands = select_for_labelling(ws, 4)
    assert all(c.emotions is not None and set(c.emotions) == set(EMOTIONS) for c in cands)
    assert all(0 <= p <= 1 for c in cands for p in c.emotions.values())  # type: ignore[union-attr]
    rows = ws.con.execute("SELECT interaction_id, customer_id, occurred_at FROM interactions "
                          "WHERE direction = 'inbound' ORDER BY interaction_id").fetchall()
    themes = [{"id": "delivery", "name": "delivery", "named": True},
              {"id": "T01", "name": "opening hours, invoice", "named": False}]  # fmt: skip
    given = {r[0]: ("delivery" if int(r[0][1:]) % 2 else "T01") for r in rows}
    at = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    _store_themes(ws, ThemeSet(at, 365, themes, given, len(rows), "fp"), rows, "key", {}, None)
    path = ws.path
    ws.close()
    todo = path.parent / "todo.csv"
    r = _invoke(path, ["label", "--n", "4", "--export", str(todo)])
    assert r.exit_code == 0, r.output
    with open(todo, encoding="utf-8", newline="") as f:
        hints = {row["interaction_id"]: row["backlog_theme"] for row in csv.DictReader(f)}
    assert hints == {c.interaction_id: ("delivery" if given[c.interaction_id] == "delivery"
                                        else "T01: opening hours, invoice") for c in cands}
    r = _invoke(path, ["label", "--n", "4", "--themes"], "n=\n" * 4)
    assert r.exit_code == 0, r.output
    assert "labelled 4" in r.output
    assert "backlog says: delivery" in r.output and "backlog says: found theme T01" in r.output
    for c in cands:  # the likeliest emotion, where the engine reads one clearly
        top, p = max(c.emotions.items(), key=lambda kv: kv[1])  # type: ignore[union-attr]
        assert f"{top} {p:.2f}" in r.output or p < 0.3
    with Workspace.open(path, read_only=True) as w:
        got = dict(w.con.execute("SELECT interaction_id, theme FROM labels").fetchall())
    assert got == {c.interaction_id: (None if given[c.interaction_id] == "T01" else "delivery")
                   for c in cands}  # "=" on a found theme says nothing of it


def test_cli_label_import_reports_bad_rows(ws, tmp_path):
    path = ws.path
    ws.close()
    f = tmp_path / "l.csv"
    f.write_text("text,label\nfine,positive\nbad,???\n", encoding="utf-8")
    r = _invoke(path, ["label", "--import", str(f)])
    assert r.exit_code == 1
    assert "added 1 labels" in r.output and "row 3" in r.output


def test_a_long_message_to_label_shows_its_start_and_its_end():
    from custdyn import cli_label
    from custdyn.text.labels import Candidate

    text = "Opening words. " + "Details of the order. " * 200 + "Verdict: never again!"
    c = Candidate(interaction_id="m1", text=text, language="en", channel="email",
                  customer_id="C1", occurred_at=None, subject=None, predicted=None,
                  confidence=None)  # fmt: skip
    with cli_label.console.capture() as cap:
        cli_label._show(1, 1, c)
    out = cap.get()
    assert "Opening words." in out and "Verdict: never again!" in out
    assert f"{len(text) - 2000:,} characters not shown" in out
