"""E.164 normalization and SMS segment counting."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequest
from shared.phone import normalize_e164, sms_segments

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155552671", None, "+14155552671"),
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("0170 1234567", "DE", "+491701234567"),
        ("00 33 6 12 34 56 78", "FR", "+33612345678"),
    ],
)
def test_normalizes_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert normalize_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("", None),
        ("not a number", None),
        ("4155552671", None),  # national, and no region to read it with
        ("+1415555267", None),  # a digit short
        ("+999 123 456", None),  # no such country code
        ("+1 415 555 2671 ext. 12", None),
        ("12", "US"),
        ("+" + "1" * 300, None),
    ],
)
def test_rejects_what_cannot_be_texted(raw: str, region: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_e164(raw, region)
    assert caught.value.field == "recipient/phone"
    assert caught.value.detail


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("@£$¥èé" * 26 + "Ä" * 4, 1),  # 160 characters of the GSM-7 default alphabet
        ("€" * 80, 1),  # extension characters count two septets
        ("€" * 81, 2),
        ("a" * 159 + "[", 2),
        # 152 septets then an escape sequence: it moves whole to the next part, not split 153/1.
        ("a" * 152 + "€" + "a" * 152, 3),
        ("é" * 160, 1),  # in GSM-7, unlike the similar "í"
        ("í" * 70, 1),
        ("í" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("a" * 159 + "ж", 3),  # one non-GSM character turns the whole message into UCS-2
        ("😀" * 35, 1),  # an emoji is a surrogate pair: two UCS-2 units
        ("😀" * 36, 2),
        # 66 units then an emoji: the pair is not split, so the second part starts with it.
        ("a" * 66 + "😀" + "a" * 66, 3),
    ],
)
def test_segments(body: str, segments: int) -> None:
    assert sms_segments(body) == segments


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("+1415555267", "not a valid number for its country"),
        ("+1 415 555 2671 ext. 12", "an extension cannot receive SMS"),
    ],
)
def test_rejection_says_why(raw: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_e164(raw)
    assert caught.value.detail == detail


# GSM 03.38 (3GPP TS 23.038) default alphabet in code order, 0x00 to 0x7F; 0x1B is the escape to the
# extension table, not a character. Written out here independently of shared.phone's set.
GSM7_BY_CODE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "\f^{}\\[~]|€"


def test_the_whole_gsm7_default_alphabet_is_one_septet_a_character() -> None:
    assert len(GSM7_BY_CODE) == 128
    alphabet = GSM7_BY_CODE.replace("\x1b", "")
    body = alphabet + "a" * (160 - len(alphabet))
    assert sms_segments(body) == 1
    assert sms_segments(body + "a") == 2


@pytest.mark.parametrize("character", list(GSM7_EXTENSION))
def test_each_extension_character_is_two_septets(character: str) -> None:
    assert sms_segments(character * 80) == 1
    assert sms_segments(character * 81) == 2


@pytest.mark.parametrize("character", ["\x1b", "í", "ú", "ç", "Ì", "`", "ÿ", "\t", "\u00a0", "ё"])
def test_a_character_outside_gsm7_makes_the_message_ucs2(character: str) -> None:
    """70 characters fit one UCS-2 SMS, 71 do not: the GSM-7 limit of 160 no longer applies."""
    assert sms_segments(character + "a" * 69) == 1
    assert sms_segments(character + "a" * 70) == 2


def test_the_last_bmp_character_is_one_ucs2_unit_and_the_first_beyond_it_two() -> None:
    assert sms_segments("\uffff" * 70) == 1
    assert sms_segments("\U00010000" * 35) == 1
    assert sms_segments("\U00010000" * 36) == 2
