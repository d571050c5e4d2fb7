"""The notification status vocabulary and its monotonic order.

A status may only be replaced by one of higher rank: never after a failure, and once the recipient
was reached (delivered, opened, clicked) only by engagement. So a late ``sent`` never overwrites
``delivered``, nor a bounce a click, whatever order the events arrive in.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

ACCEPTED: Final = "accepted"
ROUTED: Final = "routed"
RETRYING: Final = "retrying"
SENT: Final = "sent"
DELIVERED: Final = "delivered"
# Engagement, recorded by the gateway's tracking routes: the recipient opened the mail, followed a link.
OPENED: Final = "opened"
CLICKED: Final = "clicked"
REJECTED: Final = "rejected"
FAILED: Final = "failed"

RANKS: Final = MappingProxyType(
    {
        ACCEPTED: 10,
        ROUTED: 20,
        RETRYING: 30,
        SENT: 40,
        DELIVERED: 50,
        OPENED: 52,
        CLICKED: 54,
        REJECTED: 60,
        FAILED: 60,
    }
)

TERMINAL: Final = frozenset({DELIVERED, REJECTED, FAILED})
# Nothing follows a failure.
FINAL: Final = frozenset({REJECTED, FAILED})
# Proof the recipient got it: from here on only engagement moves the status (a later bounce does not).
REACHED: Final = frozenset({DELIVERED, OPENED, CLICKED})
ENGAGEMENT: Final = frozenset({OPENED, CLICKED})


def rank(status: str) -> int:
    """The rank of ``status``; raises ValueError for a status outside the vocabulary."""
    try:
        return RANKS[status]
    except KeyError:
        raise ValueError(f"unknown notification status: {status!r}") from None


def advances(current: str | None, new: str) -> bool:
    """True when ``new`` may replace ``current``: no status yet, or a higher rank, never after a failure,
    and only engagement once the recipient was reached."""
    new_rank = rank(new)
    if current is None:
        return True
    movable = current not in FINAL and (current not in REACHED or new in ENGAGEMENT)
    return movable and new_rank > rank(current)
