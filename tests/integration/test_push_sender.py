"""sender-push's providers as the service builds them: a chain per platform against real stand-ins.

FCM, APNs (HTTP/2, JWT) and a Web Push service that decrypts, with the device registry in Postgres:
each platform reaches its provider, iOS fails over from APNs to FCM, FCM's breaker is one across
platforms while Web Push has one per push service, and a token a provider calls dead is disabled for good.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from infra.standins.apns import ApnsStandIn, generate_signing_key
from infra.standins.fcm import FcmStandIn
from infra.standins.webpush import PushService
from services.sender_push.main import platform_chains
from services.sender_push.platforms import PlatformChains
from services.sender_push.settings import PushSenderSettings
from services.sender_push.webpush import WebPushProvider
from shared.delivery import Delivered, Failed
from shared.errors import DeadLetterReason
from shared.messages import PushDelivery
from shared.providers.breaker import BreakerState
from shared.storage.database import Pool
from shared.storage.devices import DeviceRepository, Platform
from tests.breakers import circuit_state, wait_for_state
from tests.conftest import ENCRYPTOR
from tests.factories import push_delivery

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning"),
]

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.herald.app"
SIGNING_KEY = generate_signing_key()
VAPID_KEY = generate_signing_key()  # an EC P-256 key, as VAPID wants
IOS_TOKEN = "ab" * 32


@pytest.fixture(scope="module")
def fcm() -> Iterator[FcmStandIn]:
    with FcmStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def apns() -> Iterator[ApnsStandIn]:
    with ApnsStandIn(team_id=TEAM_ID, key_id=KEY_ID, signing_key_pem=SIGNING_KEY, topic=TOPIC) as server:
        yield server


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushService]:
    with PushService() as server:
        yield server


@pytest.fixture
def push_settings(fcm: FcmStandIn, apns: ApnsStandIn, push_service: PushService, tmp_path: Path) -> PushSenderSettings:
    fcm.reset()
    apns.reset()
    push_service.reset()
    account = tmp_path / "service-account.json"
    fcm.write_service_account(account)
    return PushSenderSettings(
        fcm_credentials=SecretStr(str(account)),
        fcm_base_url=fcm.url,
        apns_key=SecretStr(SIGNING_KEY),
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
        apns_host=apns.host,
        apns_port=apns.port,
        apns_ca_file=apns.ca_path,
        webpush_vapid_private_key=SecretStr(VAPID_KEY),
        webpush_subject="mailto:push@herald.test",
        # The Web Push stand-in is on this machine.
        webpush_allow_private_networks=True,
        provider_timeout_s=5.0,
        breaker_minimum_calls=2,
        breaker_failure_rate=0.5,
        breaker_open_s=60.0,
    )


@pytest.fixture
async def providers(push_settings: PushSenderSettings, db_pool: Pool) -> AsyncIterator[PlatformChains]:
    chains = platform_chains(push_settings, DeviceRepository(db_pool, ENCRYPTOR), None)
    try:
        yield chains
    finally:
        await chains.close()


async def registered(db_pool: Pool, platform: Platform, token: str) -> PushDelivery:
    """A device registered for a fresh user, and a push to it."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    await DeviceRepository(db_pool, ENCRYPTOR).register("acme", user, platform, token)
    return push_delivery(tenant_id="acme", platform=platform, token=token, metadata={"user": user})


async def active_tokens(db_pool: Pool, delivery: PushDelivery) -> list[str]:
    devices = await DeviceRepository(db_pool, ENCRYPTOR).for_user("acme", delivery["metadata"]["user"])
    return [device.token for device in devices]


async def test_each_platform_reaches_its_own_provider(
    providers: PlatformChains, db_pool: Pool, fcm: FcmStandIn, apns: ApnsStandIn, push_service: PushService
) -> None:
    web = providers.chain("web").providers[0]
    assert isinstance(web, WebPushProvider)
    subscription = push_service.subscribe(application_server_key=web.public_key)

    android = await providers.send(await registered(db_pool, "android", "fcm-token-1"))
    ios = await providers.send(await registered(db_pool, "ios", IOS_TOKEN))
    browser = await providers.send(await registered(db_pool, "web", _json(subscription)))

    assert [type(o) for o in (android, ios, browser)] == [Delivered, Delivered, Delivered]
    assert (android.provider, ios.provider, browser.provider) == ("fcm", "apns", "webpush")
    assert [m.message["token"] for m in fcm.messages] == ["fcm-token-1"]
    assert [n.device_token for n in apns.notifications] == [IOS_TOKEN]
    [pushed] = push_service.received(subscription)
    assert pushed.json()["body"] == "It is on its way."


async def test_ios_fails_over_from_apns_to_fcm(
    providers: PlatformChains, db_pool: Pool, fcm: FcmStandIn, apns: ApnsStandIn
) -> None:
    apns.fail_next(503, "ServiceUnavailable")

    outcome = await providers.send(await registered(db_pool, "ios", IOS_TOKEN))

    assert isinstance(outcome, Delivered)
    assert outcome.provider == "fcm"
    [message] = fcm.messages
    assert message.message["token"] == IOS_TOKEN
    assert "apns" in message.message


async def test_fcm_has_one_breaker_for_every_platform(
    providers: PlatformChains, db_pool: Pool, fcm: FcmStandIn
) -> None:
    fcm.fail_next(503, "UNAVAILABLE", times=2)
    for _ in range(2):
        await providers.send(await registered(db_pool, "android", f"fcm-{uuid.uuid4().hex}"))

    assert providers.chain("android").breaker("fcm").state is BreakerState.OPEN
    assert providers.chain("ios").breaker("fcm") is providers.chain("android").breaker("fcm")


async def test_a_failing_push_service_opens_only_its_own_circuit(
    providers: PlatformChains, db_pool: Pool, push_service: PushService
) -> None:
    """Web Push has a breaker per push service: one that keeps failing (or a made-up one a subscription
    names) sends its subscriptions to FCM, while another push service's subscriptions still get Web Push."""
    web = providers.chain("web").providers[0]
    assert isinstance(web, WebPushProvider)
    with PushService() as healthy:
        failing = push_service.subscribe(application_server_key=web.public_key)
        working = healthy.subscribe(application_server_key=web.public_key)
        push_service.fail_next(503, count=2)
        for _ in range(2):
            outcome = await providers.send(await registered(db_pool, "web", _json(failing)))
            assert outcome.provider == "fcm"
        assert providers.chain("web").breaker("webpush", push_service.origin).state is BreakerState.OPEN

        outcome = await providers.send(await registered(db_pool, "web", _json(working)))
        assert (type(outcome), outcome.provider) == (Delivered, "webpush")
        assert len(healthy.received(working)) == 1
    assert providers.chain("web").breaker("webpush", healthy.origin).state is BreakerState.CLOSED


async def test_apns_breaker_opens_while_ios_goes_through_fcm_and_closes_after_recovery(
    push_settings: PushSenderSettings, db_pool: Pool, fcm: FcmStandIn, apns: ApnsStandIn
) -> None:
    quick = push_settings.model_copy(update={"breaker_open_s": 0.5, "breaker_half_open_probes": 1})
    providers = platform_chains(quick, DeviceRepository(db_pool, ENCRYPTOR), None)
    breaker = providers.chain("ios").breaker("apns")
    try:
        for _ in range(2):
            apns.fail_next(503, "ServiceUnavailable")
            outcome = await providers.send(await registered(db_pool, "ios", IOS_TOKEN))
            assert (type(outcome), outcome.provider) == (Delivered, "fcm")
        assert breaker.state is BreakerState.OPEN
        assert circuit_state("apns") is BreakerState.OPEN

        # Open: APNs is not even tried (the scripted failure stays queued), FCM takes the push.
        apns.fail_next(503, "ServiceUnavailable")
        outcome = await providers.send(await registered(db_pool, "ios", IOS_TOKEN))
        assert outcome.provider == "fcm"
        apns.reset()

        await wait_for_state(breaker, BreakerState.HALF_OPEN)
        probe = await providers.send(await registered(db_pool, "ios", IOS_TOKEN))
        assert probe.provider == "apns"
        assert providers.chain("ios").breaker("apns").state is BreakerState.CLOSED
        assert len(apns.notifications) == 1
    finally:
        await providers.close()


@pytest.mark.parametrize(
    ("platform", "token", "script", "reason"),
    [
        ("android", "fcm-dead", lambda s: s["fcm"].fail_next(404, "UNREGISTERED"), DeadLetterReason.UNREGISTERED_TOKEN),
        ("android", "not a token!", lambda s: None, DeadLetterReason.INVALID_TOKEN),
        ("ios", IOS_TOKEN, lambda s: s["apns"].fail_next(410, "Unregistered"), DeadLetterReason.UNREGISTERED_TOKEN),
        ("web", "subscription", lambda s: s["push"].expire(s["subscription"]), DeadLetterReason.UNREGISTERED_TOKEN),
        ("web", "{not json", lambda s: None, DeadLetterReason.INVALID_TOKEN),
    ],
)
async def test_a_dead_token_is_disabled_for_good(
    providers: PlatformChains,
    db_pool: Pool,
    fcm: FcmStandIn,
    apns: ApnsStandIn,
    push_service: PushService,
    platform: Platform,
    token: str,
    script: Any,
    reason: DeadLetterReason,
) -> None:
    web = providers.chain("web").providers[0]
    assert isinstance(web, WebPushProvider)
    subscription = push_service.subscribe(application_server_key=web.public_key)
    if token == "subscription":
        token = _json(subscription)
    delivery = await registered(db_pool, platform, token)
    script({"fcm": fcm, "apns": apns, "push": push_service, "subscription": subscription})

    outcome = await providers.send(delivery)

    assert isinstance(outcome, Failed)
    assert outcome.reason == reason
    assert await active_tokens(db_pool, delivery) == []
    devices = await DeviceRepository(db_pool, ENCRYPTOR).for_user(
        "acme", delivery["metadata"]["user"], active_only=False
    )
    disabled_reason = next(device.disabled_reason for device in devices if device.token == token)
    assert disabled_reason is not None
    assert disabled_reason.startswith(outcome.provider)


async def test_a_retryable_failure_keeps_the_token(providers: PlatformChains, db_pool: Pool, fcm: FcmStandIn) -> None:
    fcm.fail_next(503, "UNAVAILABLE")
    delivery = await registered(db_pool, "android", "fcm-token-2")

    outcome = await providers.send(delivery)

    assert not isinstance(outcome, Delivered | Failed)
    assert await active_tokens(db_pool, delivery) == ["fcm-token-2"]


def _json(subscription: dict[str, Any]) -> str:
    return json.dumps(subscription)
