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
