"""Outcomes of a delivery attempt: which ones mark a push token dead, and which retry policy a message gets."""

from __future__ import annotations

import pytest

from shared.delivery import Delivered, Failed, Outcome, Retry, RetryPolicies, RetryPolicy, token_is_dead
from shared.errors import DeadLetterReason

pytestmark = pytest.mark.unit

# The provider said the token will never work again (APNs Unregistered/BadDeviceToken, FCM UNREGISTERED,
# Web Push 404/410): the device is removed. Every other refusal leaves the device registered.
DEAD = {DeadLetterReason.UNREGISTERED_TOKEN, DeadLetterReason.INVALID_TOKEN}


@pytest.mark.parametrize("reason", list(DeadLetterReason))
def test_only_token_refusals_mark_a_token_dead(reason: DeadLetterReason) -> None:
    assert token_is_dead(Failed("fcm", "refused", reason)) is (reason in DEAD)


@pytest.mark.parametrize(
    "outcome",
    [
        Delivered("fcm"),
        Retry("fcm", "503 from the provider"),
        # A retry is never the end of a token, whatever its reason says.
        Retry("fcm", "unregistered, maybe", reason=DeadLetterReason.UNREGISTERED_TOKEN),
    ],
)
def test_an_outcome_other_than_a_failure_never_marks_a_token_dead(outcome: Outcome) -> None:
    assert token_is_dead(outcome) is False


OTP = RetryPolicy(max_attempts=2, base_delay_s=1.0, max_delay_s=10.0)
CHANNEL = RetryPolicy()


def test_a_message_type_with_its_own_policy_gets_it() -> None:
    policies = RetryPolicies(default=CHANNEL, by_type={"otp": OTP})
    assert policies.for_message({"type": "otp", "campaign": "spring"}) is OTP


@pytest.mark.parametrize("metadata", [{}, {"type": "marketing"}, {"campaign": "otp"}])
def test_other_messages_get_the_channels_policy(metadata: dict[str, str]) -> None:
    policies = RetryPolicies(default=CHANNEL, by_type={"otp": OTP})
    assert policies.for_message(metadata) is CHANNEL
