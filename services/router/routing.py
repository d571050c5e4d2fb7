"""Choosing the channel a notification goes out on."""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import InvalidRequest
from shared.messages import Recipient

# Which recipient field each channel delivers to.
ADDRESS_FIELD = {"email": "email", "sms": "phone", "webhook": "webhook_url"}


def choose_channel(channels: Sequence[str], recipient: Recipient) -> tuple[str, str]:
    """The first requested channel the recipient can be reached on, with the address to use."""
    for channel in channels:
        field = ADDRESS_FIELD.get(channel)
        address = recipient.get(field) if field else None
        if address:
            return channel, str(address)
    raise InvalidRequest("channels", f"the recipient has no address for any of {', '.join(channels)}")
