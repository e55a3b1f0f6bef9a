from __future__ import annotations

import pytest

from custdyn.text import detect_language


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("The delivery was late and nobody answered my emails.", "en"),
        ("A entrega atrasou e ninguém respondeu aos meus e-mails.", "pt"),
        ("Leveransen kom for sent og ingen svarte på e-postene mine.", "no"),
        ("Huli na dumating ang delivery at walang sumagot sa mga email ko.", "tl"),
        ("Grabe, super late ng delivery ko, sobrang disappointed ako", "tl"),  # Taglish
        ("La entrega llegó tarde y nadie respondió a mis correos.", "es"),
    ],
)
def test_detects_supported_languages(text, code):
    lang, conf = detect_language(text)
    assert lang == code
    assert 0.0 < conf <= 1.0


@pytest.mark.parametrize("text", ["", "   ", "12345 !!!", None, "https://t.co/x @user"])
def test_no_language_without_letters(text):
    assert detect_language(text) == (None, 0.0)
