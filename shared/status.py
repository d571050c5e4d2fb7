"""The notification status vocabulary and its monotonic order.

A status may only be replaced by one of higher rank: never after a failure, and once the recipient
was reached (delivered, opened, clicked) only by engagement. So a late ``sent`` never overwrites
``delivered``, nor a bounce a click, whatever order the events arrive in.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

ACCEPTED: Final = "accepted"
# Held back until send_at (or, for a recurring series, its next occurrence) by the retry service.
SCHEDULED: Final = "scheduled"
ROUTED: Final = "routed"
RETRYING: Final = "retrying"
# Cancelled while it waited: the retry service drops its held work. Ranked below sent, so a send that
# was already under way when the cancellation came still shows as sent.
CANCELLED: Final = "cancelled"
# Sent again by hand after it failed (a dead letter replayed): the one status that may follow a failure.
REQUEUED: Final = "requeued"
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
        SCHEDULED: 15,
        ROUTED: 20,
        REQUEUED: 25,
        RETRYING: 30,
        CANCELLED: 35,
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
    """True when ``new`` may replace ``current``: no status yet, or a higher rank, never after a failure
    (but a requeue by hand), and only engagement once the recipient was reached."""
    new_rank = rank(new)
    if current is None:
        return True
    if new == REQUEUED and current in FINAL:
        return True
    movable = current not in FINAL and (current not in REACHED or new in ENGAGEMENT)
    return movable and new_rank > rank(current)


# Not a status: ingest reports each request it dropped as a repeat of a notification's idempotency key
# with an event of this name. The status service counts them (GET shows ``duplicates``); they move nothing.
DUPLICATE: Final = "duplicate"
