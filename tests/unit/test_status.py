"""The status vocabulary: ranks and which transitions advance."""

from __future__ import annotations

import pytest

from shared import status

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (status.ACCEPTED, 10),
        (status.SCHEDULED, 15),
        (status.ROUTED, 20),
        (status.REQUEUED, 25),
        (status.RETRYING, 30),
        (status.CANCELLED, 35),
        (status.SENT, 40),
        (status.DELIVERED, 50),
        (status.OPENED, 52),
        (status.CLICKED, 54),
        (status.REJECTED, 60),
        (status.FAILED, 60),
    ],
)
def test_rank(name: str, expected: int) -> None:
    assert status.rank(name) == expected


def test_every_status_has_its_rank_tested() -> None:
    """A status added to the vocabulary without a rank here fails, rather than going unchecked."""
    tested = {
        status.ACCEPTED,
        status.SCHEDULED,
        status.ROUTED,
        status.REQUEUED,
        status.RETRYING,
        status.CANCELLED,
        status.SENT,
        status.DELIVERED,
        status.OPENED,
        status.CLICKED,
        status.REJECTED,
        status.FAILED,
    }
    assert set(status.RANKS) == tested


def test_rank_of_unknown_status_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        status.rank("bogus")


def test_terminal_statuses() -> None:
    assert {status.DELIVERED, status.REJECTED, status.FAILED} == status.TERMINAL


def test_final_reached_and_engagement_statuses() -> None:
    assert {status.REJECTED, status.FAILED} == status.FINAL
    assert {status.DELIVERED, status.OPENED, status.CLICKED} == status.REACHED
    assert {status.OPENED, status.CLICKED} == status.ENGAGEMENT


def test_failures_rank_above_everything_else() -> None:
    """A failure is never hidden by a later (or reordered) engagement event."""
    highest = max(rank for name, rank in status.RANKS.items() if name not in (status.FAILED, status.REJECTED))
    assert status.rank(status.FAILED) == status.rank(status.REJECTED) > highest


@pytest.mark.parametrize("new", sorted(status.RANKS))
def test_any_status_advances_from_none(new: str) -> None:
    assert status.advances(None, new)


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (status.ACCEPTED, status.ROUTED, True),
        (status.ROUTED, status.SENT, True),
        (status.RETRYING, status.SENT, True),
        (status.SENT, status.DELIVERED, True),
        (status.SENT, status.FAILED, True),
        (status.ACCEPTED, status.REJECTED, True),
        # Engagement moves a sent mail on: opened, then clicked; never back; it proves the mail arrived.
        (status.SENT, status.OPENED, True),
        (status.OPENED, status.CLICKED, True),
        (status.SENT, status.CLICKED, True),
        (status.CLICKED, status.OPENED, False),
        (status.OPENED, status.SENT, False),
        (status.CLICKED, status.FAILED, False),
        (status.OPENED, status.FAILED, False),
        # A failure is only ever followed by a requeue by hand, which the next attempt then moves on.
        (status.FAILED, status.REQUEUED, True),
        (status.REJECTED, status.REQUEUED, True),
        (status.REQUEUED, status.SENT, True),
        (status.SENT, status.REQUEUED, False),
        (status.DELIVERED, status.REQUEUED, False),
        (status.SENT, status.RETRYING, False),
        (status.SENT, status.SENT, False),
        (status.ROUTED, status.ACCEPTED, False),
        # Held until send_at, then routed, or cancelled while it waits; a send under way beats a cancel.
        (status.ACCEPTED, status.SCHEDULED, True),
        (status.SCHEDULED, status.ROUTED, True),
        (status.SCHEDULED, status.CANCELLED, True),
        (status.RETRYING, status.CANCELLED, True),
        (status.CANCELLED, status.SENT, True),
        (status.CANCELLED, status.SCHEDULED, False),
        (status.CANCELLED, status.RETRYING, False),
        (status.SENT, status.CANCELLED, False),
        (status.ROUTED, status.SCHEDULED, False),
        # Terminal statuses never change, even to a higher rank...
        (status.DELIVERED, status.SENT, False),
        (status.DELIVERED, status.FAILED, False),
        # ...but for the recipient reading a delivered mail.
        (status.DELIVERED, status.OPENED, True),
        (status.DELIVERED, status.CLICKED, True),
        (status.FAILED, status.REJECTED, False),
        (status.REJECTED, status.DELIVERED, False),
    ],
)
def test_advances(current: str, new: str, expected: bool) -> None:
    assert status.advances(current, new) is expected


def test_advances_rejects_unknown_new_status() -> None:
    with pytest.raises(ValueError, match="bogus"):
        status.advances(status.SENT, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        status.advances(None, "bogus")
    with pytest.raises(ValueError, match="bogus"):
        status.advances(status.DELIVERED, "bogus")
