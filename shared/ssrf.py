"""The one way Herald calls a URL that someone else gave it: a guard against server-side request forgery.

Webhook and status-event endpoints, attachment URLs, Web Push subscriptions and SNS's certificate and
confirmation URLs come from outside. Each is called through an httpx client made by
:meth:`OutboundGuard.client`, whose every new connection (each redirect hop included) goes through
:class:`PinnedNetwork`: the host is resolved once, every address it resolves to is checked, and the
socket connects to a checked address, never to what a second lookup might answer (DNS rebinding).
TLS still sends the URL's host name as SNI and verifies the certificate against that name, and the
Host header is the URL's. Proxies from the environment are ignored, so none can carry a request past
the check.

A refused address raises :class:`NonPublicAddress` out of the client's request: a permanent failure
for the caller. A name that does not resolve raises ``httpx.ConnectError``, like any unreachable host:
worth retrying.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from ssl import SSLContext
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.tls import default_client_context

IPAddress = IPv4Address | IPv6Address
# host, port -> the addresses the host resolves to.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

# The kinds of non-public address that allow_private_networks lets through: this machine and the
# organisation's own networks. Link-local (where clouds serve instance metadata, 169.254.169.254),
# multicast, unspecified and reserved addresses stay refused whatever the setting.
PRIVATE_KINDS = frozenset({"loopback", "private", "shared (CGNAT)"})
_SHARED = ip_network("100.64.0.0/10")
# A server picks its reason phrase; only this much of it is repeated in a delivery's detail.
MAX_REASON_CHARS = 64


class NonPublicAddress(ValueError):
    """The URL's host resolves to an address that Herald must not call (loopback, private, link-local...)."""


def non_public_kind(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is (``loopback``, ``link-local``...), or None for a public one."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6"
        if address.sixtofour is not None:
            # Judged by the IPv4 address it carries, which a relay would reach, and not by is_private: Python
            # 3.11 releases disagree on 2002::/16 (the CVE-2024-4032 fix counts all of it as private).
            return "6to4 IPv6" if non_public_kind(address.sixtofour) is not None else None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address in _SHARED:
        return "shared (CGNAT)"
    if address.is_private:
        return "private"
    return None if address.is_global else "reserved"


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, as the operating system answers (an IP literal is its own answer)."""
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # An IPv6 link-local address may come with its zone ("fe80::1%eth0").
    return list(dict.fromkeys(ip_address(str(answer[4][0]).split("%", 1)[0]) for answer in answers))


@dataclass(frozen=True)
class OutboundGuard:
    """Which addresses outbound requests may reach, and the clients that hold them to it.

    ``resolver`` and ``network`` are the system's by default; tests give their own (a name whose
    answer changes between lookups; public addresses routed to local servers).
    """

    allow_private_networks: bool = False
    resolver: Resolver = system_resolver
    network: httpcore.AsyncNetworkBackend = field(default_factory=httpcore.AnyIOBackend)

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` once; its addresses, if every one of them may be called.

        Raises:
            NonPublicAddress: one of them may not (a name that also resolves to 127.0.0.1 is refused).
            OSError: the host does not resolve (DNS trouble may pass: worth retrying).
        """
        addresses = list(await self.resolver(host, port))
        if not addresses:
            raise socket.gaierror(f"{host} resolves to no address")
        for address in addresses:
            kind = non_public_kind(address)
            if kind is not None and not (self.allow_private_networks and kind in PRIVATE_KINDS):
                raise NonPublicAddress(f"{host} resolves to the non-public address {address} ({kind})")
        return addresses

    async def check(self, url: str) -> None:
        """Raise as :meth:`checked_addresses` does for ``url``'s host: for refusing a URL before storing it."""
        parts = urlsplit(url)
        await self.checked_addresses(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))

    def client(
        self,
        *,
        timeout: float,
        limits: httpx.Limits | None = None,
        verify: SSLContext | bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        """An httpx client whose connections go only to checked addresses; it never follows redirects itself."""
        return httpx.AsyncClient(
            transport=_PinnedTransport(PinnedNetwork(self), verify=verify, limits=limits or httpx.Limits()),
            timeout=timeout,
            headers=headers,
            follow_redirects=False,
            trust_env=False,
        )


class PinnedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network as the guard allows it: each connection to the address the host was checked at."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface, called with these names
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._guard.checked_addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"{host} did not resolve within {timeout} s") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        unreachable = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            try:
                return await self._guard.network.connect_tcp(
                    str(address), port, timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as error:
                unreachable = error
        raise unreachable

    async def sleep(self, seconds: float) -> None:
        await self._guard.network.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport over a :class:`PinnedNetwork`."""

    def __init__(self, network: PinnedNetwork, *, verify: SSLContext | bool, limits: httpx.Limits) -> None:
        ssl_context = default_client_context() if verify is True else httpx.create_ssl_context(verify=verify)
        super().__init__(verify=ssl_context, limits=limits)
        # httpx 0.28 cannot be given a network backend (encode/httpx#3749 would add it): the pool it
        # built is replaced by the same pool over the pinned network.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network,
        )


def status_line(response: httpx.Response) -> str:
    """``404 Not Found``: the status and a bounded reason phrase, all of an answer a delivery's detail repeats.

    The body stays out: from a server that is not what it was meant to be, it may be anything.
    """
    return f"{response.status_code} {response.reason_phrase[:MAX_REASON_CHARS]}".rstrip()
