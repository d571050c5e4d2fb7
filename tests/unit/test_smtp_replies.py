"""What a permanent SMTP refusal means: its reason, from the enhanced status code or the reply code."""

from __future__ import annotations

import pytest

from services.sender_email.smtp import _by_code
from shared.delivery import Failed, Retry
from shared.errors import DeadLetterReason

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        (550, "5.1.1 <gone@example.com>: no such user", DeadLetterReason.INVALID_ADDRESS),
        (550, "5.7.1 Message rejected as spam", DeadLetterReason.REJECTED_CONTENT),
        (552, "5.3.4 Message size exceeds fixed limit", DeadLetterReason.REJECTED_CONTENT),
        (554, "5.6.0 Bad content", DeadLetterReason.REJECTED_CONTENT),
        (550, "5.2.1 Mailbox disabled", DeadLetterReason.PROVIDER_REJECTED),
        (553, "Requested action not taken: mailbox name not allowed", DeadLetterReason.INVALID_ADDRESS),
        (554, "Transaction failed", DeadLetterReason.REJECTED_CONTENT),
        (541, "Rejected by the recipient's policy", DeadLetterReason.PROVIDER_REJECTED),
    ],
)
def test_a_permanent_smtp_refusal_says_why(code: int, message: str, reason: DeadLetterReason) -> None:
    outcome = _by_code(code, message)
    assert isinstance(outcome, Failed)
    assert outcome.reason is reason
    assert outcome.detail == f"{code} {message}"


def test_a_temporary_refusal_is_retried() -> None:
    assert isinstance(_by_code(451, "4.7.1 Try again later"), Retry)
