"""Phone numbers and SMS text: E.164 normalization and the segment count providers bill."""

from __future__ import annotations

import phonenumbers

from shared.errors import InvalidRequest

# GSM 03.38 default alphabet: one septet each.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: sent as ESC + character, so two septets each.
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67


def normalize_e164(raw: str, default_region: str | None = None) -> str:
    """``raw`` as an E.164 number (``+14155550100``); ``default_region`` (``"US"``) reads national numbers.

    Raises:
        InvalidRequest: on ``recipient/phone`` when ``raw`` is not a valid, dialable number.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidRequest("recipient/phone", f"not a phone number: {error}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidRequest("recipient/phone", "not a valid number for its country")
    if number.extension:
        # E.164 has no extensions: dropping it would text a switchboard, not the person.
        raise InvalidRequest("recipient/phone", "an extension cannot receive SMS")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sms_segments(body: str) -> int:
    """How many SMS ``body`` is sent (and billed) as: GSM-7 160/153 septets, else UCS-2 70/67 units."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in body):
        sizes = [2 if c in _GSM7_EXTENSION else 1 for c in body]
        single, part = _GSM7_SINGLE, _GSM7_PART
    else:
        # UCS-2 counts UTF-16 code units: an emoji outside the BMP is a surrogate pair, two units.
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in body]
        single, part = _UCS2_SINGLE, _UCS2_PART
    if sum(sizes) <= single:
        return 1
    # Concatenated parts lose room to the UDH, and an escape sequence or surrogate pair is never
    # split across two parts, so a part can end a unit short: fill them one character at a time.
    segments, used = 1, 0
    for size in sizes:
        if used + size > part:
            segments, used = segments + 1, 0
        used += size
    return segments
