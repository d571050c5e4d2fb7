"""The APNs provider through aioapns against the APNs stand-in, over real HTTP/2 and TLS.

The stand-in verifies each provider token with the public half of a key generated here, so a
Delivered outcome means Apple would have accepted the request's authentication, headers and payload.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.processes import free_port
from infra.standins.apns import ApnsStandIn, generate_signing_key
from services.sender_push.apns import ApnsConfig, ApnsProvider
from shared.delivery import Delivered, Failed, Retry, token_is_dead
from shared.errors import DeadLetterReason
from shared.messages import PushDelivery
from shared.providers.base import ProviderConfigError
from tests.factories import push_delivery

pytestmark = pytest.mark.integration

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.herald.app"
DEVICE_TOKEN = "a1b2c3d4" * 8
SIGNING_KEY = generate_signing_key()


def push(**overrides: Any) -> PushDelivery:
    return push_delivery(**{"platform": "ios", "token": DEVICE_TOKEN, **overrides})


def config(standin: ApnsStandIn | None = None, **overrides: Any) -> ApnsConfig:
    values: dict[str, Any] = {"key_id": KEY_ID, "team_id": TEAM_ID, "topic": TOPIC, "key_pem": SIGNING_KEY}
    if standin is not None:
        values.update(host=standin.host, port=standin.port, ca_file=standin.ca_path, timeout_s=5.0)
    return ApnsConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def standin_server() -> Iterator[ApnsStandIn]:
    with ApnsStandIn(team_id=TEAM_ID, key_id=KEY_ID, signing_key_pem=SIGNING_KEY, topic=TOPIC) as server:
        yield server


@pytest.fixture
def standin(standin_server: ApnsStandIn) -> ApnsStandIn:
    standin_server.reset()
    return standin_server


@pytest.fixture
async def provider(standin: ApnsStandIn) -> AsyncIterator[ApnsProvider]:
    apns = ApnsProvider(config(standin))
    apns.validate_config()
    try:
        yield apns
    finally:
        await apns.close()


# --- accepted ----------------------------------------------------------------------------------------


async def test_alert_is_delivered_with_apples_headers_and_payload(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    delivery = push()
    outcome = await provider.send(delivery)
    assert outcome == Delivered("apns", delivery["delivery_id"])
    [notification] = standin.notifications
    assert notification.device_token == DEVICE_TOKEN
    assert notification.apns_id == delivery["delivery_id"]
    headers = notification.headers
    assert headers["apns-topic"] == TOPIC
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "order-42"
    assert int(headers["apns-expiration"]) == pytest.approx(time.time() + 3600, abs=5)
    assert notification.payload == {
        "order_id": "42",
        "aps": {"alert": {"title": "Your order shipped", "body": "It is on its way."}},
    }
    # The stand-in verified the ES256 signature; these are what it verified.
    assert notification.token_header["kid"] == KEY_ID
    assert notification.token_header["alg"] == "ES256"
    assert notification.token_claims["iss"] == TEAM_ID


async def test_optional_headers_are_left_out(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    delivery = push(title=None, ttl_s=None, collapse_key=None, priority="low", data={"aps": "not this"})
    assert isinstance(await provider.send(delivery), Delivered)
    [notification] = standin.notifications
    assert notification.headers["apns-priority"] == "5"
    assert not {"apns-expiration", "apns-collapse-id"} & notification.headers.keys()
    # Custom data cannot replace what the device displays.
    assert notification.payload == {"aps": {"alert": {"body": "It is on its way."}}}


async def test_a_delivery_id_that_is_no_uuid_gets_a_stable_apns_id(
    standin: ApnsStandIn, provider: ApnsProvider
) -> None:
    for _ in range(2):
        assert isinstance(await provider.send(push(delivery_id="delivery-7")), Delivered)
    first, second = standin.notifications
    assert first.apns_id == second.apns_id
    assert str(uuid.UUID(first.apns_id)) == first.apns_id


async def test_concurrent_sends_share_the_connection(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    outcomes = await asyncio.gather(*(provider.send(push()) for _ in range(20)))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert len(standin.notifications) == 20


async def test_health_passes(provider: ApnsProvider) -> None:
    await provider.health()


# --- refused by Apple ----------------------------------------------------------------------------------


async def test_unregistered_token_is_failed_for_good(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    standin.fail_next(410, "Unregistered")
    outcome = await provider.send(push())
    assert outcome == Failed("apns", "unregistered token: 410 Unregistered", DeadLetterReason.UNREGISTERED_TOKEN)
    assert token_is_dead(outcome)
    assert standin.notifications == []


async def test_bad_device_token_is_failed_as_invalid(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    # Not hex: the stand-in itself refuses it, as Apple does.
    outcome = await provider.send(push(token="not-a-device-token"))
    assert outcome == Failed("apns", "invalid token: 400 BadDeviceToken", DeadLetterReason.INVALID_TOKEN)
    assert token_is_dead(outcome)


async def test_token_of_another_app_is_failed_but_kept(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    standin.fail_next(400, "DeviceTokenNotForTopic")
    outcome = await provider.send(push())
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.PERMANENT_FAILURE
    assert not token_is_dead(outcome)


async def test_other_bad_request_is_rejected(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    outcome = await provider.send(push(collapse_key="x" * 65))
    assert outcome == Failed("apns", "400 BadCollapseId", DeadLetterReason.PROVIDER_REJECTED)


async def test_too_many_requests_is_rate_limited(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    standin.fail_next(429, "TooManyRequests")
    assert await provider.send(push()) == Retry("apns", "429 TooManyRequests", reason="rate_limited")


@pytest.mark.parametrize(("status", "reason"), [(500, "InternalServerError"), (503, "ServiceUnavailable")])
async def test_server_error_is_retry(standin: ApnsStandIn, provider: ApnsProvider, status: int, reason: str) -> None:
    standin.fail_next(status, reason)
    assert await provider.send(push()) == Retry("apns", f"{status} {reason}")
    # The connection survives an error answer.
    assert isinstance(await provider.send(push()), Delivered)


async def test_expired_provider_token_is_a_provider_account_retry(standin: ApnsStandIn, provider: ApnsProvider) -> None:
    standin.fail_next(403, "ExpiredProviderToken")
    outcome = await provider.send(push())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert outcome.detail.startswith("403 ExpiredProviderToken")


@pytest.mark.parametrize(
    "overrides",
    [{"key_pem": generate_signing_key()}, {"key_id": "OTHERKEY12"}, {"team_id": "OTHERTEAM1"}],
    ids=["other-key", "other-key-id", "other-team"],
)
async def test_a_token_apple_cannot_verify_is_a_provider_account_retry(
    standin: ApnsStandIn, overrides: dict[str, str]
) -> None:
    apns = ApnsProvider(config(standin, **overrides))
    try:
        outcome = await apns.send(push())
    finally:
        await apns.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert outcome.detail.startswith("403 InvalidProviderToken")
    assert standin.notifications == []


async def test_a_slow_answer_is_retry_and_the_connection_lives_on(standin: ApnsStandIn) -> None:
    apns = ApnsProvider(config(standin, timeout_s=0.3))
    try:
        standin.answer_delay_s = 0.6
        outcome = await apns.send(push())
        assert outcome == Retry("apns", "no answer from APNs within 0.3s")
        standin.answer_delay_s = 0.0
        # The abandoned request's late answer arrives on the same connection without harm.
        await asyncio.sleep(0.5)
        assert isinstance(await apns.send(push()), Delivered)
    finally:
        await apns.close()
    # APNs accepted the abandoned one too: a timeout is no proof it was not delivered.
    assert len(standin.notifications) == 2


# --- not sent ------------------------------------------------------------------------------------------


async def test_unreachable_apns_is_retry() -> None:
    apns = ApnsProvider(config(host="127.0.0.1", port=free_port(), max_connection_attempts=1, timeout_s=5.0))
    try:
        outcome = await apns.send(push())
        with pytest.raises(ConnectionRefusedError):
            await apns.health()
    finally:
        await apns.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert "cannot reach APNs" in outcome.detail


async def test_an_untrusted_certificate_is_retry(standin: ApnsStandIn) -> None:
    # Without the stand-in's CA the system's CAs are used, and they do not know it.
    apns = ApnsProvider(config(standin, ca_file=None, max_connection_attempts=1))
    try:
        outcome = await apns.send(push())
    finally:
        await apns.close()
    assert isinstance(outcome, Retry)
    assert standin.notifications == []


async def test_other_platforms_are_invalid() -> None:
    apns = ApnsProvider(config(host="127.0.0.1", port=9))
    outcome = await apns.send(push(platform="android"))
    assert outcome == Failed("apns", "apns sends to ios devices only", DeadLetterReason.INVALID_PAYLOAD)


# --- configuration ---------------------------------------------------------------------------------


def test_key_can_be_read_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(SIGNING_KEY)
    ApnsProvider(config(key_pem=None, key_path=str(key_file))).validate_config()


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"key_id": "short"}, "HERALD_APNS_KEY_ID"),
        ({"team_id": ""}, "HERALD_APNS_TEAM_ID"),
        ({"topic": ""}, "HERALD_APNS_TOPIC"),
        ({"key_pem": None}, "HERALD_APNS_KEY or HERALD_APNS_KEY_PATH"),
        ({"key_path": "/tmp/AuthKey.p8"}, "HERALD_APNS_KEY or HERALD_APNS_KEY_PATH"),
        ({"key_pem": "not a key"}, "HERALD_APNS_KEY"),
        ({"key_pem": None, "key_path": "/nonexistent/AuthKey.p8"}, "HERALD_APNS_KEY_PATH"),
        ({"port": 0}, "HERALD_APNS_PORT"),
        ({"ca_file": "/nonexistent/ca.pem"}, "HERALD_APNS_CA_FILE"),
        ({"timeout_s": 0}, "HERALD_PROVIDER_TIMEOUT_S"),
        ({"max_connections": 0}, "HERALD_APNS_MAX_CONNECTIONS"),
    ],
)
def test_validate_config_names_the_variable(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ProviderConfigError, match=variable):
        ApnsProvider(config(**overrides)).validate_config()
