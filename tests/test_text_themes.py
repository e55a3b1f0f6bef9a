"""Feedback themes on a planted multilingual set: the same complaint in different languages is
one theme. Purity and adjusted Rand index thresholds were measured on this set."""

from __future__ import annotations

import pytest

from custdyn.text.themes import ThemeModel, adjusted_rand_index, purity

PLANTED = {
    "delivery": [
        ("en", "My parcel is two weeks late and still not delivered."),
        ("en", "The delivery never arrived, where is my package?"),
        ("pt", "A minha encomenda está atrasada há duas semanas e ainda não chegou."),
        ("pt", "A entrega nunca chegou, onde está o meu pacote?"),
        ("no", "Pakken min er to uker forsinket og fortsatt ikke levert."),
        ("no", "Leveringen kom aldri, hvor er pakken min?"),
        ("tl", "Dalawang linggo nang late ang parcel ko at hindi pa rin dumarating."),
        ("tl", "Hindi dumating ang delivery, nasaan na ang package ko?"),
    ],
    "billing": [
        ("en", "You charged my credit card twice for the same order."),
        ("en", "There is a wrong amount on my invoice, I was overcharged."),
        ("pt", "Cobraram o meu cartão de crédito duas vezes pela mesma encomenda."),
        ("pt", "A fatura tem um valor errado, cobraram a mais."),
        ("no", "Dere har belastet kredittkortet mitt to ganger for samme bestilling."),
        ("no", "Fakturaen har feil beløp, jeg ble belastet for mye."),
        ("tl", "Dalawang beses ninyong siningil ang credit card ko sa parehong order."),
        ("tl", "Mali ang halaga sa invoice ko, sobra ang singil."),
    ],
    "app": [
        ("en", "The app crashes every time I try to log in."),
        ("en", "I cannot log into the mobile app, it keeps freezing."),
        ("pt", "O aplicativo fecha sozinho toda vez que tento fazer login."),
        ("pt", "Não consigo entrar no aplicativo, ele trava sempre."),
        ("no", "Appen krasjer hver gang jeg prøver å logge inn."),
        ("no", "Jeg får ikke logget inn i appen, den fryser hele tiden."),
        ("tl", "Nagka-crash ang app tuwing susubukan kong mag-log in."),
        ("tl", "Hindi ako makapag-log in sa app, lagi itong nagfi-freeze."),
    ],
    "staff": [
        ("en", "The staff in the store were rude and unhelpful."),
        ("en", "Your customer service agent was very impolite to me."),
        ("pt", "Os funcionários da loja foram mal-educados e não ajudaram."),
        ("pt", "O atendente foi muito grosseiro comigo."),
        ("no", "De ansatte i butikken var frekke og lite hjelpsomme."),
        ("no", "Kundeservicemedarbeideren var veldig uhøflig mot meg."),
        ("tl", "Bastos at hindi nakakatulong ang mga staff sa tindahan."),
        ("tl", "Sobrang bastos sa akin ng customer service agent ninyo."),
    ],
}


def _flatten():
    texts, langs, truth, customers = [], [], [], []
    for k, (theme, rows) in enumerate(PLANTED.items()):
        for j, (lang, text) in enumerate(rows):
            texts.append(text)
            langs.append(lang)
            truth.append(theme)
            customers.append(f"C{k}-{j % 3}")
    return texts, langs, truth, customers


@pytest.fixture(scope="module")
def fitted():
    texts, langs, truth, customers = _flatten()
    model = ThemeModel(min_size=3).fit(texts, customer_ids=customers, languages=langs)
    return model, texts, langs, truth


def test_metrics_reference_values():
    assert purity(["a", "a", "b", "b"], [1, 1, 2, 2]) == 1.0
    assert adjusted_rand_index(["a", "a", "b", "b"], [1, 1, 2, 2]) == pytest.approx(1.0)
    assert adjusted_rand_index(["a", "a", "b", "b"], [1, 2, 1, 2]) < 0.0
    assert purity(["a", "b"], [1, 1]) == 0.5


def test_planted_themes_found_across_languages(fitted):
    model, texts, langs, truth = fitted
    pred = [lab or "none" for lab in model.labels_]
    assert purity(truth, pred) >= 0.85
    assert adjusted_rand_index(truth, pred) >= 0.6
    # A theme holds the same complaint in several languages.
    multi = [t for t in model.themes_ if len(t["languages"]) >= 3]
    assert len(multi) >= 3


def test_themes_are_described(fitted):
    model = fitted[0]
    assert 3 <= len(model.themes_) <= 8
    for t in model.themes_:
        assert t["id"].startswith("T")
        assert t["name"] and t["key_phrases"]
        assert t["examples"] and all("language" in e and e["text"] for e in t["examples"])
        assert 1 <= t["n_customers"] <= t["n_texts"]
    assert "themes" in model.summary()


def test_assign_new_texts_incrementally(fitted):
    model = fitted[0]
    texts, _, truth, _ = _flatten()
    by_theme = {}
    for lab, tr in zip(model.labels_, truth, strict=True):
        if lab:
            by_theme.setdefault(tr, lab)
    before = {t["id"]: t["n_texts"] for t in model.themes_}
    new = [
        "Pakken har ikke kommet enda, den er over en uke forsinket.",
        "I was billed twice on my card this month.",
        "Lorem ipsum quantum chromodynamics lecture notes on gluon fields.",
    ]
    got = model.assign(new, languages=["no", "en", "en"])
    assert got[0] == by_theme["delivery"]
    assert got[1] == by_theme["billing"]
    assert got[2] is None
    after = {t["id"]: t["n_texts"] for t in model.themes_}
    assert after[got[0]] == before[got[0]] + 1


def test_empty_and_tiny_inputs():
    model = ThemeModel(embed=lambda ts: __import__("numpy").eye(len(ts), 8, dtype="float32"))
    model.fit([])
    assert model.themes_ == [] and model.labels_ == []
    assert model.assign(["x"], languages=["en"]) == [None]
