"""Signed tokens for Herald's open and click tracking: the router puts them in mails, the gateway checks them.

A token carries what the gateway must know without a lookup (tenant, notification and, for a click,
the target URL) and an HMAC-SHA256 over it, so nobody can forge an event or turn the click route
into an open redirect. It is URL-safe base64 (no padding) of ``mac || payload``; the payload is a
JSON array ``[version, kind, tenant_id, notification_id(, url)]``. Tokens do not expire: a mail may
be opened years after it was sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import orjson

VERSION = 1
OPEN: Literal["o"] = "o"
CLICK: Literal["c"] = "c"
# HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows it): forgery stays out of reach, links stay short.
MAC_BYTES = 16
MIN_KEY_BYTES = 32
# A click token holds its URL (at most 2,048 characters in an href worth tracking), plus a little.
MAX_TOKEN_CHARACTERS = 4096
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def is_web_url(url: str) -> bool:
    """An absolute http(s) URL: the links worth tracking (not mailto:, tel:, #anchors or relative ones)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


class InvalidToken(ValueError):
    """Not a token this key signed (malformed, tampered with, or signed with another key)."""


@dataclass(frozen=True)
class Tracked:
    """What a verified token says happened: an open, or a click through to ``url``."""

    kind: Literal["o", "c"]
    tenant_id: str
    notification_id: str
    url: str | None = None


class TrackingTokens:
    """Signs and verifies tracking tokens with one secret key (``HERALD_TRACKING_SIGNING_KEY``)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a tracking signing key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def open_token(self, tenant_id: str, notification_id: str) -> str:
        """The token of the open pixel of one notification."""
        return self._sign([VERSION, OPEN, tenant_id, notification_id])

    def click_token(self, tenant_id: str, notification_id: str, url: str) -> str:
        """The token of one tracked link: following it records a click and redirects to ``url``."""
        return self._sign([VERSION, CLICK, tenant_id, notification_id, url])

    def verify(self, token: str) -> Tracked:
        """The event a token stands for.

        Raises:
            InvalidToken: the token is malformed or its signature does not match.
        """
        if len(token) > MAX_TOKEN_CHARACTERS or not _URL_SAFE.fullmatch(token):
            raise InvalidToken("not a tracking token")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidToken("not a tracking token") from None
        mac, payload = raw[:MAC_BYTES], raw[MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidToken("bad signature")
        # Signed by this key, so written by Herald; the shape is still checked rather than trusted.
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise InvalidToken("not a tracking token") from None
        match fields:  # version 1 (VERSION) is the only one so far
            case [1, "o", str(tenant_id), str(notification_id)]:
                return Tracked(OPEN, tenant_id, notification_id)
            case [1, "c", str(tenant_id), str(notification_id), str(url)]:
                return Tracked(CLICK, tenant_id, notification_id, url)
        raise InvalidToken("unknown token version or kind")

    def _sign(self, fields: list[object]) -> str:
        payload = orjson.dumps(fields)
        return base64.urlsafe_b64encode(self._mac(payload) + payload).rstrip(b"=").decode("ascii")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]
