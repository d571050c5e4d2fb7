"""The notification status vocabulary and its monotonic order.

A status may only be replaced by one of higher rank, and never once it is terminal, so a late
``sent`` never overwrites ``delivered`` whatever order the events arrive in.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

ACCEPTED: Final = "accepted"
ROUTED: Final = "routed"
RETRYING: Final = "retrying"
SENT: Final = "sent"
DELIVERED: Final = "delivered"
REJECTED: Final = "rejected"
FAILED: Final = "failed"

RANKS: Final = MappingProxyType(
    {
        ACCEPTED: 10,
        ROUTED: 20,
        RETRYING: 30,
        SENT: 40,
        DELIVERED: 50,
        REJECTED: 60,
        FAILED: 60,
    }
)

TERMINAL: Final = frozenset({DELIVERED, REJECTED, FAILED})


def rank(status: str) -> int:
    """The rank of ``status``; raises ValueError for a status outside the vocabulary."""
    try:
        return RANKS[status]
    except KeyError:
        raise ValueError(f"unknown notification status: {status!r}") from None


def advances(current: str | None, new: str) -> bool:
    """True when ``new`` may replace ``current``: no status yet, or a higher rank over a non-terminal one."""
    new_rank = rank(new)
    if current is None:
        return True
    return current not in TERMINAL and new_rank > rank(current)
