"""Choosing the channel a notification goes out on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import InvalidRequest
from shared.messages import Recipient
from shared.storage.devices import Device

# Which recipient field each addressed channel delivers to; push goes to the user's devices instead.
ADDRESS_FIELD = {"email": "email", "sms": "phone", "webhook": "webhook_url"}


@dataclass(frozen=True)
class Route:
    """Where a notification goes: a channel and its address, or for push the user's active devices."""

    channel: str
    address: str = ""
    devices: Sequence[Device] = ()


def choose_route(channels: Sequence[str], recipient: Recipient, devices: Sequence[Device] = ()) -> Route:
    """The first requested channel the recipient can be reached on.

    ``devices`` are the recipient's active push devices: push is reachable only when there is one,
    so a user without a registered device gets the next channel in the request's list.
    """
    for channel in channels:
        if channel == "push":
            if devices:
                return Route(channel, devices=devices)
            continue
        field = ADDRESS_FIELD.get(channel)
        address = recipient.get(field) if field else None
        if address:
            return Route(channel, str(address))
    reachable = "no active push device or address" if "push" in channels else "no address"
    raise InvalidRequest("channels", f"the recipient has {reachable} for any of {', '.join(channels)}")
