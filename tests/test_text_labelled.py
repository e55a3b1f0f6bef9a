"""Reading labelled files (custdyn.text.labelled): the formats, column names, numeric label
schemes and language spellings that users' and public datasets' files come in, and the bad
rows, named by row and field."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from custdyn.cli import app
from custdyn.schema import SENTIMENTS
from custdyn.text import TextAnalyzer, canonical_language, label_scheme, read_labelled
from custdyn.text.labelled import SCHEMES, normalize_label, read_label_rows

ENCODE = {  # class index -> the number each scheme writes for it
    "signed": {0: "-1", 1: "0", 2: "1"},
    "012": {0: "0", 1: "1", 2: "2"},
    "stars": {0: "1", 1: "3", 2: "5"},
    "binary": {0: "0", 2: "1"},
    "123": {0: "1", 1: "2", 2: "3"},
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SCHEMES)), st.lists(st.integers(0, 2), min_size=1, max_size=40),
       st.booleans())
def test_numeric_labels_read_back_in_every_scheme(scheme, classes, float_spelling):
    """Written in a scheme, labels read back as the classes written: named, always; told
    apart automatically whenever the numbers present fit one scheme only."""
    classes = [c for c in classes if c in ENCODE[scheme]] or [0]  # binary: no neutral
    written = [ENCODE[scheme][c] for c in classes]
    if float_spelling:  # as pandas writes integers held in a float column
        written = [f"{float(w):.1f}" for w in written]
    assert [normalize_label(w, label_scheme(written, scheme)) for w in written] == classes
    present = set(classes)
    distinct = {"signed": 0 in present, "012": {0, 2} <= present,
                "stars": 2 in present, "binary": False, "123": False}[scheme]  # fmt: skip
    if distinct:
        assert label_scheme(written) == scheme
    else:
        try:
            auto = label_scheme(written)
        except ValueError as e:
            assert "ambiguous" in str(e) or "fit no scheme" in str(e)
        else:  # whatever it picked reads the same classes
            assert [normalize_label(w, auto) for w in written] == classes


def test_ambiguous_and_unknown_numbers_are_refused():
    with pytest.raises(ValueError, match="ambiguous.*-1/0/1 or 0/1/2"):
        label_scheme(["0", "1", "1"])
    with pytest.raises(ValueError, match="fit no scheme"):
        label_scheme(["7", "1"])
    with pytest.raises(ValueError, match="unknown label scheme"):
        label_scheme(["1"], "percent")
    assert label_scheme(["0", "1"], "012") == "012"
    with pytest.raises(ValueError, match="--label-scheme signed, 012 or binary"):
        label_scheme(["0", "1"])
    assert [normalize_label(v, "binary") for v in ("0", "1", "1.0")] == [0, 2, 2]
    # SentiTaglish numbers negative, neutral, positive, mixed as 1-4: not stars without a 5
    with pytest.raises(ValueError, match="without a single 5"):
        label_scheme(["1", "2", "3", "4"])
    with pytest.raises(ValueError, match="stars or 123"):
        label_scheme(["1", "2", "3"])
    assert [normalize_label(v, "123") for v in ("1", "2", "3")] == [0, 1, 2]
    assert [normalize_label(v, None) for v in ("Negative", "fair", "Mixed", "POS")] == [0, 1, 1, 2]
    assert label_scheme(["1", "2", "3", "4", "5"]) == "stars"
    with pytest.raises(ValueError, match="unknown sentiment label '3'"):
        normalize_label("3", "012")


def _write_csv(path, header, rows, delimiter=",", bom=False):
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


ROWS = [("Adorei o atendimento", "2", "pt-BR"), ("Pakke kom aldri fram", "0", "nb"),
        ("Hvor er kontoret?", "1", "Norwegian"), ("Ang bagal ng delivery", "0", "fil"),
        ("Salamat po, ang ganda!", "2", "TL")]  # fmt: skip
WANT_LABELS = ["positive", "negative", "neutral", "negative", "positive"]
WANT_LANGS = ["pt", "no", "no", "tl", "tl"]


@pytest.mark.parametrize("form", ["csv-bom", "txt-comma", "tsv", "jsonl", "json-wrapped",
                                  "parquet"])
def test_formats_column_names_schemes_and_languages(tmp_path, form):
    """A 0/1/2 file with the columns named as in public datasets, in every format read."""
    header = ["Sentence", "Polarity", "Lang"]
    records = [dict(zip(header, r, strict=True)) for r in ROWS]
    if form == "csv-bom":
        p = tmp_path / "f.csv"
        _write_csv(p, header, ROWS, bom=True)
    elif form == "txt-comma":  # a .txt reads as TSV unless its header holds commas only
        p = tmp_path / "f.txt"
        _write_csv(p, header, ROWS)
    elif form == "tsv":
        p = tmp_path / "f.tsv"
        _write_csv(p, header, ROWS, delimiter="\t")
    elif form == "jsonl":
        p = tmp_path / "f.jsonl"
        p.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n")
    elif form == "json-wrapped":
        p = tmp_path / "f.json"
        p.write_text(json.dumps({"data": records}))
    else:
        p = tmp_path / "f.parquet"
        pq.write_table(pa.Table.from_pylist(
            [{**r, "Polarity": int(r["Polarity"])} for r in records]), p)
    texts, labels, langs = read_labelled(p)
    assert texts == [r[0] for r in ROWS]
    assert labels == WANT_LABELS
    assert langs == WANT_LANGS


def test_tsv_fields_quoted_by_a_writer_and_raw_tweets(tmp_path):
    p = tmp_path / "q.tsv"
    texts = ['she said "never again"', '"quoted" start and end "x"', '"whole"']
    with open(p, "w", encoding="utf-8", newline="") as f:
        f.write("text\tlabel\n")
        f.write('"she said ""never again"""\tneg\n')  # as csv.writer quotes it
        f.write('"quoted" start and end "x"\tneu\n')  # a raw tweet: left as it is
        f.write('"""whole"""\tpos\n')
    assert read_labelled(p)[0] == texts


def test_bad_rows_are_named_by_row_and_field(tmp_path):
    p = tmp_path / "bad.csv"
    _write_csv(p, ["text", "label", "language"], [
        ("fine", "positive", "en"),  # row 2
        ("", "negative", "en"),  # row 3: empty text
        ("hmm", "furious", "en"),  # row 4: unknown label
        ("later", "", "pt"),  # row 5: unlabelled, skipped
        ("ok", "neg", "12"),  # row 6: not a language
        ("fine too", "neu", "NaN"),  # row 7: a missing language, as pandas writes it
        ("what", "None", "en"),  # row 8: "None" is no label name
    ])
    got = read_label_rows(p)
    assert got.rows == [2, 7] and got.unlabelled == 1 and got.languages == ["en", None]
    assert [(b.row, b.reason.split(":")[0]) for b in got.bad] == [
        (3, "field 'text' is empty"), (4, "field 'label'"), (6, "field 'language'"),
        (8, "field 'label'")]
    with pytest.raises(ValueError, match=r"bad\.csv: 4 row\(s\) could not be read: row 3: "):
        read_labelled(p)
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"text": "ok", "label": "pos"}\n{not json\n[1, 2]\n')
    got = read_label_rows(jl)
    assert [b.row for b in got.bad] == [2, 3] and got.texts == ["ok"]
    mixed = tmp_path / "mixed.csv"
    _write_csv(mixed, ["text", "label"], [("a", "-1"), ("b", "2")])
    got = read_label_rows(mixed)  # -1 says signed: the 2 is the bad row
    assert got.scheme == "signed" and [b.row for b in got.bad] == [3]


def test_canonical_language_spellings():
    assert [canonical_language(c) for c in
            ["nb", "NN", "nob", "Bokmål", "pt_BR", "por", "fil", "Filipino", "Tagalog", "EN-us",
             "sw", "", None, "12", "not a language"]] == [
        "no", "no", "no", "no", "pt", "pt", "tl", "tl", "tl", "en", "sw", None, None, None,
        None]  # fmt: skip


def test_given_languages_reach_the_engine_in_their_canonical_spelling():
    texts = ["Pakken kom aldri, og ingen svarer.", "Tusen takk, veldig fornøyd!"]
    ta = TextAnalyzer(engine="bulk")
    as_no = ta.analyze(texts, language=["no", "no"])
    as_nb = ta.analyze(texts, language=["nb", "Norwegian"])
    assert as_nb.column("language").to_pylist() == ["no", "no"]
    assert as_nb.column("sentiment_score").to_pylist() == as_no.column(
        "sentiment_score").to_pylist()


def test_eval_text_reads_numeric_schemes_and_refuses_ambiguous_ones(tmp_path):
    p = tmp_path / "held.tsv"
    rows = [("I love it, thank you so much!", "2", "en"), ("Awful, never again.", "0", "en"),
            ("What time do you open?", "1", "en"), ("Muito bom, obrigado!", "2", "pt-BR")]
    _write_csv(p, ["text", "label", "language"], rows, delimiter="\t")
    run = CliRunner()
    r = run.invoke(app, ["eval-text", str(p), "--engine", "bulk", "--json", "--n-boot", "20"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["n"] == {"en": 3, "pt": 1}
    support = out["per_language"]["en"]["support"]
    assert [support[s] for s in SENTIMENTS] == [1, 1, 1]  # 0/1/2 read as neg/neu/pos
    amb = tmp_path / "amb.csv"
    _write_csv(amb, ["text", "label"], [("fine", "1"), ("meh", "0")])
    r = run.invoke(app, ["eval-text", str(amb), "--engine", "bulk"])
    assert r.exit_code == 2 and "amb.csv" in r.output and "ambiguous" in r.output
    r = run.invoke(app, ["eval-text", str(amb), "--engine", "bulk", "--label-scheme", "012",
                         "--json", "--n-boot", "20"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["overall"]["n"] == 2


def test_eval_text_languages_option_for_files_without_a_language(tmp_path):
    p = tmp_path / "no.csv"
    _write_csv(p, ["text", "label"], [("Tak for hjælpen", "positive"),
                                      ("Leveransen kom for sent.", "negative"),
                                      ("Hva koster frakten?", "neutral")])  # fmt: skip
    run = CliRunner()
    base = ["eval-text", str(p), "--engine", "bulk", "--json", "--n-boot", "20"]
    r = run.invoke(app, base)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n"] != {"no": 3}  # detected alone, the first reads Danish
    r = run.invoke(app, [*base, "--languages", "no"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n"] == {"no": 3}
    r = run.invoke(app, [*base, "--languages", "no,elvish"])
    assert r.exit_code == 2 and "'elvish'" in r.output


def test_training_features_detect_among_given_languages():
    import numpy as np

    from custdyn.text.train import build_features

    texts = ["Tak for hjælpen", "Thanks a lot", "Obrigado pela ajuda"]
    emb = np.eye(3, 384, dtype=np.float32)
    given = build_features(texts, [None, None, "pt"], emb=emb, among=["no", "en"]).languages
    assert given == ["no", "en", "pt"]  # a given language stays as it is
    assert build_features(texts, None, emb=emb).languages[0] == "da"


TEXTS_WITH_ACCENTS = ["Leveransen kom for sent, jeg er sur på dere", "Tusen takk, veldig fornøyd",
                      "Hvorfor koster frakten så mye?", "Não recebi o pedido, péssimo"]  # fmt: skip


@pytest.mark.parametrize(("encoding", "suffix", "expect"), [
    ("utf-8", ".csv", "utf-8-sig"), ("utf-8-sig", ".csv", "utf-8-sig"),
    ("cp1252", ".csv", "cp1252"),  # Excel's "CSV" on Western-European Windows
    ("utf-16", ".txt", "utf-16"),  # Excel's "Unicode text": tab-separated UTF-16
])  # fmt: skip
def test_spreadsheet_encodings_read_the_same_text(tmp_path, encoding, suffix, expect):
    from custdyn.text.labelled import text_encoding

    delim = "\t" if suffix == ".txt" else ","
    p = tmp_path / f"labels{suffix}"
    rows = zip(TEXTS_WITH_ACCENTS, ["neg", "pos", "neu", "neg"], strict=True)
    with open(p, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f, delimiter=delim)
        w.writerow(["text", "label"])
        w.writerows(rows)
    assert text_encoding(p) == expect
    texts, labels, _ = read_labelled(p)
    assert texts == TEXTS_WITH_ACCENTS
    assert labels == ["negative", "positive", "neutral", "negative"]


def test_eval_text_says_when_a_file_is_not_utf8(tmp_path):
    p = tmp_path / "excel.csv"
    with open(p, "w", encoding="cp1252", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(TEXTS_WITH_ACCENTS, ["neg", "pos", "neu", "neg"], strict=True))
    r = CliRunner().invoke(app, ["eval-text", str(p), "--engine", "bulk", "--n-boot", "10",
                                 "--languages", "no,pt"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "is not UTF-8: read as Windows-1252" in " ".join(r.output.split())


def test_product_review_columns_rating_as_stars(tmp_path):
    p = tmp_path / "reviews.csv"
    _write_csv(p, ["review_text", "rating", "product"],
               [("Ang ganda, sulit!", "5", "a"), ("Sira pagdating", "1", "b"),
                ("Okay lang", "3", "c"), ("Medyo maganda", "4", "d")])  # fmt: skip
    got = read_label_rows(p)
    assert got.scheme == "stars"
    assert [SENTIMENTS[k] for k in got.labels] == ["positive", "negative", "neutral", "positive"]
    both = tmp_path / "both.csv"
    _write_csv(both, ["comment", "rating", "label"], [("fine", "1", "positive")])
    assert read_labelled(both)[1] == ["positive"]  # 'label' comes before 'rating'


def test_review_datasets_html_is_read_as_plain_text(tmp_path):
    from custdyn.text.labelled import plain_text

    p = tmp_path / "reviews.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review_text", "rating"])
        w.writerow(["Great phone!<br /><br />Battery &amp; screen are <b>superb</b>.", 5])
        w.writerow(["Sira agad.<br>Hindi ko &quot;recommend&quot;.&nbsp;", 1])
        w.writerow(["5 < 10 & R&D said ok", 3])
    got = read_label_rows(p)
    assert got.texts == ["Great phone!\n\nBattery & screen are superb.",
                         'Sira agad.\nHindi ko "recommend".', "5 < 10 & R&D said ok"]  # fmt: skip
    assert [SENTIMENTS[k] for k in got.labels] == ["positive", "negative", "neutral"]
    assert plain_text("<br/>") == "<br/>"  # markup alone is kept, not emptied


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_characters="<&")))
def test_text_without_markup_is_left_as_it_is(text):
    from custdyn.text.labelled import plain_text

    assert plain_text(text) == text


def test_eval_text_on_a_seeded_sample_of_a_large_file(tmp_path):
    p = tmp_path / "big.csv"
    rows = [(f"Order {i} arrived {'late and broken' if i % 2 else 'early, thank you'}",
             "negative" if i % 2 else "positive", "en") for i in range(200)]  # fmt: skip
    _write_csv(p, ["text", "label", "language"], rows)
    run = CliRunner()
    base = ["eval-text", str(p), "--engine", "bulk", "--json", "--n-boot", "20"]
    a = json.loads(run.invoke(app, [*base, "--sample", "50"]).output)
    b = json.loads(run.invoke(app, [*base, "--sample", "50"]).output)
    assert a["sample"] == {"n": 50, "of": 200, "seed": 0} and a["n"] == {"en": 50}
    assert a["per_language"] == b["per_language"]  # the same sample every run
    whole = json.loads(run.invoke(app, [*base, "--sample", "500"]).output)
    assert "sample" not in whole and whole["n"] == {"en": 200}
    r = run.invoke(app, ["eval-text", str(p), "--engine", "bulk", "--sample", "50"])
    assert r.exit_code == 0 and "a random sample of 50 of the 200 texts in big.csv" in r.output
