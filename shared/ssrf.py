"""Keeping URLs that callers hand Herald (webhook endpoints, attachments) out of Herald's own network.

A URL is checked when it is about to be called, by resolving its host: one that resolves to a
loopback, private, link-local or otherwise non-global address is refused (server-side request
forgery). The check and the connection resolve separately, so a DNS answer that changes in between
(rebinding) is not caught; that would take pinning the connection to the checked address.
"""

from __future__ import annotations

import asyncio
import ipaddress
from urllib.parse import urlsplit


class NonPublicAddress(ValueError):
    """The URL's host resolves to an address that is not on the public internet."""


async def ensure_public(url: str) -> None:
    """Return if every address ``url``'s host resolves to is global.

    Raises:
        NonPublicAddress: one of them is not (loopback, private, link-local, reserved...).
        OSError: the host does not resolve (DNS trouble may pass: worth retrying).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for info in await asyncio.get_running_loop().getaddrinfo(host, port):
        # An IPv6 link-local address may come with its zone ("fe80::1%eth0").
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise NonPublicAddress(f"{host} resolves to the non-public address {address}")
