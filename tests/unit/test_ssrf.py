"""The SSRF guard's address rules: which addresses are public, and what allowing private networks lets through."""

from __future__ import annotations

import re
import socket
from ipaddress import ip_address

import pytest

from shared.ssrf import NonPublicAddress, non_public_kind
from tests.outbound import ScriptedResolver, guard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),
        ("2002:7f00:1::", "6to4 IPv6"),
        ("2002:5db8:d70e::", None),
        ("64:ff9b::7f00:1", "reserved"),
    ],
)
def test_each_kind_of_address(address: str, kind: str | None) -> None:
    assert non_public_kind(ip_address(address)) == kind


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "100.64.0.1", "fd00::1"])
async def test_allowing_private_networks_lets_this_machine_and_private_ranges_through(address: str) -> None:
    resolver = ScriptedResolver({"receiver.internal": [[address]]})
    assert await guard(resolver, allow_private=True).checked_addresses("receiver.internal", 443) == [
        ip_address(address)
    ]
    with pytest.raises(NonPublicAddress, match=re.escape(address)):
        await guard(resolver).checked_addresses("receiver.internal", 443)


@pytest.mark.parametrize("address", ["169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "::ffff:127.0.0.1"])
async def test_link_local_multicast_unspecified_and_mapped_addresses_stay_refused_even_then(address: str) -> None:
    resolver = ScriptedResolver({"receiver.internal": [[address]]})
    with pytest.raises(NonPublicAddress, match=re.escape(str(ip_address(address)))):
        await guard(resolver, allow_private=True).checked_addresses("receiver.internal", 443)


async def test_a_name_without_an_address_is_a_resolution_error_not_a_refusal() -> None:
    resolver = ScriptedResolver({"empty.test": [[]]})
    with pytest.raises(socket.gaierror):
        await guard(resolver).checked_addresses("empty.test", 443)
    with pytest.raises(socket.gaierror):
        await guard(resolver).check("https://unknown.test/hook")
