from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custdyn.text import evaluate_sentiment, read_labelled, render_report, report_to_json
from custdyn.text.evaluation import eval_text_main, macro_f1, normalize_label


def test_macro_f1_reference():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert macro_f1(y, y) == 1.0
    p = np.array([0, 1, 1, 1, 2, 0])
    # per class F1: neg 0.5, neu 0.8, pos 0.667
    assert macro_f1(y, p) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_label_spellings():
    assert [normalize_label(x) for x in ["NEG", "neutral", "+1", "positivo", -1]] == [0, 1, 2, 2, 0]
    with pytest.raises(ValueError):
        normalize_label("meh")


def test_report_per_language(tmp_path, capsys):
    rows = [
        ("I love it, fantastic service", "positive", "en"),
        ("Terrible, I want my money back", "negative", "en"),
        ("The order number is 1234", "neutral", "en"),
        ("Adorei, excelente atendimento", "positive", "pt"),
        ("Horrível, quero o meu dinheiro de volta", "negative", "pt"),
        ("O número da encomenda é 1234", "neutral", "pt"),
    ]
    texts, labels, langs = (list(c) for c in zip(*rows, strict=True))
    report = evaluate_sentiment(texts, labels, langs, engine="bulk", n_boot=50)
    assert set(report["per_language"]) == {"en", "pt"}
    assert report["overall"]["n"] == 6
    s = report["per_language"]["en"]
    assert s["n"] == 3 and 0 <= s["ci_low"] <= s["macro_f1"] + 1e-9 and s["ci_high"] <= 1
    assert "macro-F1" in render_report(report)
    assert json.loads(report_to_json(report))["engine"].startswith("bulk:")

    path = tmp_path / "labelled.csv"
    path.write_text("text,label,language\n" + "\n".join(f'"{t}",{y},{g}' for t, y, g in rows))
    t2, y2, g2 = read_labelled(path)
    assert t2 == texts and y2 == labels and g2 == langs
    assert eval_text_main([str(path), "--engine", "bulk", "--n-boot", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["n"] == 6

    jl = tmp_path / "l.jsonl"
    jl.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y, _ in rows))
    assert read_labelled(jl)[2] is None


def test_mismatched_lengths():
    with pytest.raises(ValueError):
        evaluate_sentiment(["a"], ["positive", "negative"], engine="bulk")


@given(st.lists(st.sampled_from(["en", "pt", "no", "tl", "gl", "qu"]), max_size=60),
       st.integers(1, 8))
def test_rare_languages_pool_as_other_and_the_rest_stay(langs: list[str], min_n: int) -> None:
    from custdyn.text.evaluation import pool_rare_languages

    pooled = pool_rare_languages(langs, min_n)
    assert len(pooled) == len(langs)
    for before, after in zip(langs, pooled, strict=True):
        assert after == (before if langs.count(before) >= min_n else "other")


def test_progress_reaches_every_text_in_order(monkeypatch):
    import custdyn.text.analyzer as an

    monkeypatch.setattr(an, "_DETECT_CHUNK", 7)  # several chunks, several batches in each
    texts = [f"Muito bom, obrigado {i}!" if i % 5 else "" for i in range(30)]
    seen: list[tuple[int, int]] = []
    ta = an.TextAnalyzer(engine="bulk", batch_size=3)
    table = ta.analyze(texts, progress=lambda d, t: seen.append((d, t)))
    assert table.num_rows == 30
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 30 and {t for _, t in seen} == {30}
    assert len(seen) > 10  # per batch, not only at the end
    report = evaluate_sentiment(texts[1:4], ["positive"] * 3, engine=ta, n_boot=10,
                                progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3) and report["overall"]["n"] == 3


class _Fixed:
    """An engine that answers the given sentiments, in order."""

    name, version = "fixed", "fixed:1"

    def __init__(self, answers: list[int]) -> None:
        self.answers = answers

    def predict(self, texts, languages):  # type: ignore[no-untyped-def]
        from custdyn.text.engines import EngineOutput

        out = np.zeros((len(texts), 3), np.float32)
        out[np.arange(len(texts)), self.answers[: len(texts)]] = 1.0
        return EngineOutput(out, None)


def test_confusion_matrix_and_per_class_f1():
    truth = ["negative", "negative", "neutral", "neutral", "positive", "positive"]
    answers = [0, 1, 1, 1, 2, 0]  # one negative read neutral, one positive read negative
    report = evaluate_sentiment([f"text {i}" for i in range(6)], truth, ["en"] * 6,
                                engine=_Fixed(answers), n_boot=20)  # fmt: skip
    s = report["overall"]
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert s["predicted"] == {"negative": 2, "neutral": 3, "positive": 1}
    assert s["f1"] == pytest.approx({"negative": 0.5, "neutral": 0.8, "positive": 2 / 3})
    assert np.mean(list(s["f1"].values())) == pytest.approx(s["macro_f1"])
    text = render_report(report)
    assert "true (rows) against predicted (columns)" in text
    assert text.splitlines()[-1].split() == ["positive", "1", "0", "1", "0.667"]


def test_a_two_class_file_is_scored_as_two_classes(tmp_path):
    """Labels without 'neutral' (binary datasets): each text is the likelier of negative and
    positive, so an engine's 'neutral' answers are not all counted as errors."""
    from typer.testing import CliRunner

    from custdyn.cli import app
    from custdyn.text import TextAnalyzer

    rows = [("I love it, fantastic service", "positive"), ("Great, thank you!", "positive"),
            ("The parcel came on Tuesday.", "positive"), ("We ordered two chairs.", "negative"),
            ("Terrible, I want my money back", "negative"), ("Awful support.", "negative"),
            ("It is a phone.", "positive"), ("Broken on arrival, never again", "negative")]  # fmt: skip
    texts, labels = [r[0] for r in rows], [r[1] for r in rows]
    ta = TextAnalyzer("bulk")
    t = ta.analyze(texts, language="en")
    assert "neutral" in t["sentiment"].to_pylist()  # the engine answers neutral for some
    two = evaluate_sentiment(texts, labels, ["en"] * 8, engine=ta, n_boot=20)
    three = evaluate_sentiment(texts, labels, ["en"] * 8, engine=ta, n_boot=20, two_class=False)
    assert two["classes"] == ["negative", "positive"] and len(three["classes"]) == 3
    pos = sum(s > 0 for s in t["sentiment_score"].to_pylist())
    assert two["overall"]["predicted"] == {"negative": 8 - pos, "neutral": 0, "positive": pos}
    assert three["overall"]["predicted"]["neutral"] > 0
    assert two["overall"]["macro_f1"] > three["overall"]["macro_f1"]
    assert "two classes" in render_report(two) and "two classes" not in render_report(three)
    with pytest.raises(ValueError, match="without 'neutral'"):
        evaluate_sentiment(texts[:2], ["positive", "neutral"], engine=ta, two_class=True)
    p = tmp_path / "binary.csv"
    p.write_text("text,label\n" + "".join(f'"{a}",{b}\n' for a, b in rows))
    base = ["eval-text", str(p), "--engine", "bulk", "--json", "--n-boot", "20",
            "--languages", "en"]  # fmt: skip
    r2 = CliRunner().invoke(app, base)
    r3 = CliRunner().invoke(app, [*base, "--three-way"])
    assert r2.exit_code == 0 and r3.exit_code == 0, r2.output + r3.output
    assert json.loads(r2.output)["classes"] == ["negative", "positive"]
    assert json.loads(r3.output)["classes"] == ["negative", "neutral", "positive"]


def test_emotions_in_a_labelled_file_are_scored_too(tmp_path, capsys):
    """A file with an ``emotions`` column: the report says how the engine reads them, over the
    labels that carry them (an empty field says nothing, ``none`` says none); the CLI prints
    and --json carries the same."""
    from typer.testing import CliRunner

    from custdyn.cli import app

    rows = [
        ("I am furious, the parcel is lost again and nobody answers", "negative", "en", "anger"),
        ("I am so happy with the new phone, thank you!", "positive", "en", "joy"),
        ("I am scared my card was charged twice", "negative", "en", "fear"),
        ("What time do you open on Saturday?", "neutral", "en", "none"),
        ("Estou muito feliz com a compra, obrigado!", "positive", "pt", "joy"),
        ("Estou furioso, cobraram duas vezes", "negative", "pt", "anger"),
        ("Qual é o prazo de entrega?", "neutral", "pt", ""),
    ]
    texts, labels, langs, emo = (list(c) for c in zip(*rows, strict=True))
    from custdyn.text.labelled import parse_emotions

    emotions = [parse_emotions(e) for e in emo]
    report = evaluate_sentiment(texts, labels, langs, engine="bulk", n_boot=20,
                                emotions=emotions)  # fmt: skip
    e = report["emotions"]
    assert e["overall"]["n"] == 6 and e["overall"]["with_emotion"] == 5
    assert e["per_language"]["pt"]["n"] == 2 and e["per_language"]["en"]["n"] == 4
    assert 0 <= e["overall"]["top_emotion_right"] <= 1
    assert 0 < e["overall"]["average_precision"] <= 1
    assert "emotions: likeliest" in render_report(report)
    plain = evaluate_sentiment(texts, labels, langs, engine="bulk", n_boot=20,
                               emotions=[None] * len(texts))  # fmt: skip
    assert "emotions" not in plain and "emotions:" not in render_report(plain)
    with pytest.raises(ValueError, match="emotion labels"):
        evaluate_sentiment(texts, labels, langs, engine="bulk", emotions=emotions[:2])

    path = tmp_path / "l.csv"
    path.write_text("text,label,language,emotions\n"
                    + "\n".join(f'"{t}",{y},{g},{m}' for t, y, g, m in rows), encoding="utf-8")
    r = CliRunner().invoke(app, ["eval-text", str(path), "--engine", "bulk", "--n-boot", "20",
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["emotions"]["overall"]["n"] == 6
    assert out["emotions"]["overall"]["top_emotion_right"] == pytest.approx(
        e["overall"]["top_emotion_right"])
    r = CliRunner().invoke(app, ["eval-text", str(path), "--engine", "bulk", "--n-boot", "20"])
    assert r.exit_code == 0 and "likeliest emotion right" in r.output
    # the text room's own runner reads them as well
    assert eval_text_main([str(path), "--engine", "bulk", "--n-boot", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["emotions"]["overall"]["n"] == 6


def test_train_on_a_file_with_emotions_learns_them(small_demo, tmp_path):
    """``eval-text HELD --train-on LABELS`` on the demo's labelled sample (it carries the
    planted emotions): the model trained on one half reads the other half's emotions better
    than the shipped engine."""
    import csv

    from typer.testing import CliRunner

    from custdyn.cli import app

    with open(small_demo / "sources" / "truth" / "labelled.csv", newline="",
              encoding="utf-8") as fh:  # fmt: skip
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) >= {"text", "label", "language", "emotions"}
    half = len(rows) // 2
    for name, part in (("train.csv", rows[:half]), ("held.csv", rows[half:])):
        with open(tmp_path / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(part)
    run = CliRunner()
    got = {}
    for how, extra in (("shipped", []), ("trained", ["--train-on", str(tmp_path / "train.csv")])):
        r = run.invoke(app, ["eval-text", str(tmp_path / "held.csv"), "--n-boot", "20",
                             "--json", *extra])  # fmt: skip
        assert r.exit_code == 0, r.output
        got[how] = json.loads(r.output)["emotions"]["overall"]
    assert got["trained"]["n"] == got["shipped"]["n"] > 100
    assert got["trained"]["top_emotion_right"] > got["shipped"]["top_emotion_right"] + 0.05, got
    assert got["trained"]["average_precision"] > got["shipped"]["average_precision"], got
