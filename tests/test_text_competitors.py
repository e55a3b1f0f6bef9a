from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custdyn.text.competitors import CompetitorMatcher, fold, intent_to_switch

COMPETITORS = [
    {"name": "Nordvik", "aliases": ["nordviks", "nordvik.no"]},
    {"name": "São Telecom", "aliases": ["SaoTel"]},
    {"name": "Globe", "aliases": []},
    {"name": "Fjord Energi", "aliases": ["fjordenergi"]},
]


@pytest.fixture(scope="module")
def matcher() -> CompetitorMatcher:
    return CompetitorMatcher(COMPETITORS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We are moving to NORDVIK next month", "Nordvik"),
        ("Nordviks tilbud er bedre", "Nordvik"),  # genitive
        ("nordvikene er billigere", "Nordvik"),  # definite plural
        ("see nordvik.no for details", "Nordvik"),
        ("Vou para a sao telecom", "São Telecom"),  # accents folded
        ("a SÃO-TELECOM ligou", "São Telecom"),  # hyphen for space, case
        ("saotel is cheaper", "São Telecom"),
        ("Lilipat na ako sa Globe", "Globe"),
        ("mag-Globe na lang tayo", "Globe"),  # Tagalog affix
        ("Fjord  Energi ga meg et bedre tilbud", "Fjord Energi"),
    ],
)
def test_finds_inflected_and_folded_mentions(matcher, text, expected):
    hits = matcher.find(text)
    assert [h["competitor"] for h in hits] == [expected]
    h = hits[0]
    assert 0 <= h["start"] < h["end"] <= len(text)
    assert fold(text[h["start"] : h["end"]])[0][:2] == fold(h["alias"])[0][:2]
    assert h["snippet"]


@pytest.mark.parametrize(
    "text",
    ["globetrotters unite", "Globex is great", "Nordvikingar", "saotelefonen", ""],
)
def test_respects_word_boundaries(matcher, text):
    assert matcher.find(text) == []


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I'm switching to Nordvik, your prices are a joke", "en"),
        ("I want to cancel my subscription", "en"),
        ("Vou mudar de operadora amanhã", "pt"),
        ("Quero cancelar o meu plano", "pt"),
        ("Jeg bytter til Nordvik neste måned", "no"),
        ("Vi kommer til å si opp avtalen", "no"),
        ("Lilipat na ako sa Globe kasi ang bagal", "tl"),
        ("Ipa-cancel ko na yung subscription ko", "tl"),
        ("I'll switch na talaga, ang mahal niyo", "tl"),  # Taglish: English phrase, tl text
    ],
)
def test_intent_to_switch(text, language):
    assert intent_to_switch(text, language)
    assert intent_to_switch(text)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Thank you, the delivery was fast", "en"),
        ("Adorei o atendimento", "pt"),
        ("Takk for hjelpen, alt fungerer", "no"),
        ("Salamat po, ang bilis ng delivery", "tl"),
    ],
)
def test_no_intent_in_plain_feedback(text, language):
    assert not intent_to_switch(text, language)


def test_mention_carries_intent_and_snippet(matcher):
    text = "Honestly the app is fine. " * 10 + "But I am switching to Nordvik because of price."
    (hit,) = matcher.find(text, "en")
    assert hit["intent"] is True
    assert "Nordvik" in hit["snippet"]
    assert len(hit["snippet"]) < len(text)
    far = "I am switching to a new phone. " + "Lorem ipsum dolor sit amet. " * 10 + "Nordvik ok"
    assert matcher.find(far, "en")[0]["intent"] is False


def test_several_mentions_in_order(matcher):
    hits = matcher.find("Globe or Nordvik? Globe's cheaper.")
    assert [h["competitor"] for h in hits] == ["Globe", "Nordvik", "Globe"]
    assert hits[0]["start"] < hits[1]["start"] < hits[2]["start"]


def test_empty_matcher():
    assert CompetitorMatcher([]).find("anything at all") == []
    assert CompetitorMatcher().intent_to_switch("vou cancelar o plano", "pt")


@given(st.text(max_size=200))
def test_never_crashes_and_offsets_are_valid(text):
    m = CompetitorMatcher(COMPETITORS)
    for h in m.find(text):
        assert 0 <= h["start"] < h["end"] <= len(text)


@given(st.text(max_size=40))
def test_fold_index_maps_back(text):
    folded, index = fold(text)
    assert len(folded) == len(index)
    assert all(0 <= i < len(text) for i in index)


def _fold_one_char_at_a_time(text: str) -> tuple[str, list[int]]:
    """The folding rule spelled out per character (NFKD, marks dropped, casefolded)."""
    import unicodedata

    from custdyn.text.competitors import _SPECIAL

    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        special = _SPECIAL.get(ch)
        if special is not None:
            pieces = special
        else:
            pieces = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            ).casefold()
        for c in pieces:
            out.append(c)
            index.append(i)
    return "".join(out), index


@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="aÅøß’ıİﬁǅΣςÃo\u0301 -.", max_size=40),
        st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
    )
)
def test_fold_equals_the_per_character_rule(text):
    assert fold(text) == _fold_one_char_at_a_time(text)


MENTION_WORDS = ["Nordvik", "NORDVIKS", "nordvik.no", "São-Telecom", "SaoTel", "mag-Globe", "Ø",
                 "Globe’s", "vou", "cancelar", "o", "plano", "ﬁm", "é", "x", "-", ".", "Ǆ"]  # fmt: skip


@given(st.lists(st.sampled_from(MENTION_WORDS), max_size=20).map(" ".join))
def test_mentions_equal_the_per_character_fold(text):
    import re

    from custdyn.text.competitors import _intent_regex

    m = CompetitorMatcher(COMPETITORS)
    folded, index = _fold_one_char_at_a_time(text)
    want = []
    for hit in m._regex.finditer(folded) if m._regex is not None else []:
        group = next(k for k, v in hit.groupdict().items() if v is not None)
        want.append((index[hit.start(group)], index[hit.end() - 1] + 1))
    got = [(h["start"], h["end"]) for h in m.find(text, "pt")]
    assert got == want
    if "Nordvik" in text.split():
        assert got
    assert intent_to_switch(text, "pt") == (re.search(_intent_regex("pt"), folded) is not None)
