"""The status vocabulary: ranks and which transitions advance."""

from __future__ import annotations

import pytest

from shared import status

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (status.ACCEPTED, 10),
        (status.ROUTED, 20),
        (status.RETRYING, 30),
        (status.SENT, 40),
        (status.DELIVERED, 50),
        (status.REJECTED, 60),
        (status.FAILED, 60),
    ],
)
def test_rank(name: str, expected: int) -> None:
    assert status.rank(name) == expected


def test_rank_of_unknown_status_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        status.rank("bogus")


def test_terminal_statuses() -> None:
    assert {status.DELIVERED, status.REJECTED, status.FAILED} == status.TERMINAL


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
        (status.SENT, status.RETRYING, False),
        (status.SENT, status.SENT, False),
        (status.ROUTED, status.ACCEPTED, False),
        # Terminal statuses never change, even to a higher rank.
        (status.DELIVERED, status.SENT, False),
        (status.DELIVERED, status.FAILED, False),
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
