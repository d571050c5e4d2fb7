"""The internet as tests of the outbound guard see it: names that answer what a test scripts, public
addresses that lead to local servers, and a record of every connection attempt.

Connections are real TCP (and TLS) to servers on 127.0.0.1; none ever leaves this machine.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_address

import httpcore

from shared.ssrf import IPAddress, OutboundGuard

# A global address (not documentation, not private): the guard lets it through, and LocalInternet
# routes it to a local server. Nothing here ever connects to the real one.
PUBLIC_ADDRESS = "93.184.215.14"
METADATA_ADDRESS = "169.254.169.254"


class ScriptedResolver:
    """Answers each lookup of a scripted name with its next answer (the last one repeating), as a name
    whose owner changes its DNS records between lookups would; IP literals answer themselves."""

    def __init__(self, answers: Mapping[str, Sequence[Sequence[str]]]) -> None:
        self._answers = {name: [list(answer) for answer in script] for name, script in answers.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        try:
            return [ip_address(host)]
        except ValueError:
            pass
        script = self._answers.get(host)
        if not script:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no such name in this test")
        answer = script.pop(0) if len(script) > 1 else script[0]
        return [ip_address(address) for address in answer]


class LocalInternet(httpcore.AnyIOBackend):
    """httpcore's network, with the public addresses of ``routes`` leading to local ports; any other
    address that is not loopback cannot be reached. ``attempts`` lists every (address, port) asked for."""

    def __init__(self, routes: Mapping[str, int] | None = None) -> None:
        self._routes = dict(routes or {})
        self.attempts: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.attempts.append((host, port))
        if host in self._routes:
            host, port = "127.0.0.1", self._routes[host]
        elif not ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"{host} is not on this machine, and tests stay on it")
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


def guard(
    resolver: ScriptedResolver | None = None, internet: LocalInternet | None = None, *, allow_private: bool = False
) -> OutboundGuard:
    """The guard as production builds it, over this test's names and network."""
    return OutboundGuard(
        allow_private_networks=allow_private,
        resolver=resolver or ScriptedResolver({}),
        network=internet or LocalInternet(),
    )
