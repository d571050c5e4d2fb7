"""How a suppressed address is stored, so that what a provider reports and what a request names match."""

from __future__ import annotations

import pytest

from shared.storage.suppressions import normalise

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("channel", "address", "stored"),
    [
        ("email", "  Ada@Example.COM ", "ada@example.com"),
        ("sms", "+44 20 7946 0958", "+442079460958"),
        # Not a phone number: kept as given, so it matches only itself.
        ("sms", " not a number ", "not a number"),
    ],
)
def test_an_address_is_stored_in_the_form_providers_report(channel: str, address: str, stored: str) -> None:
    assert normalise(channel, address) == stored
