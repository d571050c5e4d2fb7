"""The FCM provider through the official SDK (firebase-admin) against the local FCM v1 stand-in.

The SDK runs its real auth flow: google-auth signs a JWT with the service account's key, the
stand-in verifies it and issues the access token that every send must then carry.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from firebase_admin import credentials

from infra.local.processes import free_port
from infra.standins.fcm import FcmStandIn
from services.sender_push.fcm import FcmConfig, FcmProvider
from shared.delivery import Delivered, Failed, Retry, token_is_dead
from shared.errors import DeadLetterReason
from shared.messages import PushDelivery
from shared.providers.base import ProviderConfigError
from tests.factories import push_delivery

pytestmark = [
    pytest.mark.integration,
    # firebase-admin 7.7 deprecates Message.token for Message.fid (an installation ID); Herald holds
    # registration tokens, which FCM still takes in message.token.
    pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning"),
]

PROJECT = "herald-test"
TOKEN = "fcm-token_abc:123"


def push(**overrides: Any) -> PushDelivery:
    return push_delivery(**{"token": TOKEN, "collapse_key": "orders", **overrides})


@pytest.fixture(scope="module")
def standin() -> Iterator[FcmStandIn]:
    with FcmStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def key_file(standin: FcmStandIn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fcm") / "service-account.json"
    standin.write_service_account(path, PROJECT)
    return path


@pytest.fixture
def fcm(standin: FcmStandIn) -> FcmStandIn:
    standin.reset()
    return standin


@pytest.fixture
async def provider(fcm: FcmStandIn, key_file: Path) -> AsyncIterator[FcmProvider]:
    provider = FcmProvider(FcmConfig(credentials=str(key_file), base_url=fcm.url, timeout_s=2.0))
    try:
        yield provider
    finally:
        await provider.close()


# --- delivered --------------------------------------------------------------------------------------


async def test_android_push_is_delivered_with_its_android_config(fcm: FcmStandIn, provider: FcmProvider) -> None:
    outcome = await provider.send(push())
    [accepted] = fcm.messages
    assert outcome == Delivered("fcm", accepted.name)
    assert accepted.project == PROJECT
    assert accepted.message == {
        "token": TOKEN,
        "notification": {"title": "Your order shipped", "body": "It is on its way."},
        "data": {"order_id": "42"},
        "android": {"ttl": "3600s", "collapse_key": "orders", "priority": "high"},
    }


async def test_ios_push_carries_apns_headers(fcm: FcmStandIn, provider: FcmProvider) -> None:
    before = int(time.time())
    outcome = await provider.send(push(platform="ios", priority="low", data={}))
    assert isinstance(outcome, Delivered)
    [accepted] = fcm.messages
    assert "android" not in accepted.message
    assert "data" not in accepted.message
    headers = accepted.message["apns"]["headers"]
    assert headers["apns-priority"] == "5"
    assert headers["apns-collapse-id"] == "orders"
    assert headers["apns-push-type"] == "alert"
    assert before + 3600 <= int(headers["apns-expiration"]) <= int(time.time()) + 3600


async def test_web_push_carries_webpush_headers(fcm: FcmStandIn, provider: FcmProvider) -> None:
    outcome = await provider.send(push(platform="web", priority="normal", title=None, ttl_s=60))
    assert isinstance(outcome, Delivered)
    [accepted] = fcm.messages
    assert accepted.message["notification"] == {"body": "It is on its way."}
    assert accepted.message["webpush"] == {"headers": {"Urgency": "normal", "TTL": "60", "Topic": "orders"}}


async def test_the_client_is_reused_for_many_concurrent_sends(fcm: FcmStandIn, provider: FcmProvider) -> None:
    outcomes = await asyncio.gather(*(provider.send(push(data={"n": str(n)})) for n in range(20)))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert sorted(int(m.message["data"]["n"]) for m in fcm.messages) == list(range(20))


# --- FCM's refusals -----------------------------------------------------------------------------------


async def test_unregistered_token_fails_permanently_and_is_recognisable(fcm: FcmStandIn, provider: FcmProvider) -> None:
    fcm.fail_next(404, "UNREGISTERED", message="Requested entity was not found.")
    outcome = await provider.send(push())
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.UNREGISTERED_TOKEN
    assert outcome.detail.startswith("unregistered token")
    assert token_is_dead(outcome)
    assert fcm.messages == []


async def test_malformed_token_is_refused_by_the_standin_and_fails_permanently(
    fcm: FcmStandIn, provider: FcmProvider
) -> None:
    outcome = await provider.send(push(token="not a token!"))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_TOKEN
    assert outcome.detail.startswith("invalid token")
    assert token_is_dead(outcome)


async def test_other_invalid_argument_is_rejected(fcm: FcmStandIn, provider: FcmProvider) -> None:
    fcm.fail_next(400, "INVALID_ARGUMENT", message="Message is too big", field="message")
    outcome = await provider.send(push())
    assert outcome == Failed("fcm", "INVALID_ARGUMENT Message is too big", DeadLetterReason.PROVIDER_REJECTED)


async def test_quota_exceeded_is_rate_limited_retry(fcm: FcmStandIn, provider: FcmProvider) -> None:
    fcm.fail_next(429, "QUOTA_EXCEEDED", retry_after_s=30)
    outcome = await provider.send(push())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "rate_limited"
    assert outcome.after_s == 30.0


@pytest.mark.parametrize(("status", "code"), [(503, "UNAVAILABLE"), (500, "INTERNAL")])
async def test_server_trouble_is_retry_without_silent_resends(
    fcm: FcmStandIn, provider: FcmProvider, status: int, code: str
) -> None:
    fcm.fail_next(status, code)
    outcome = await provider.send(push())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    # The SDK would have retried by itself; the provider leaves retries to Herald's retry service.
    assert fcm.messages == []


async def test_third_party_auth_error_fails_over(fcm: FcmStandIn, provider: FcmProvider) -> None:
    # google-auth answers a 401 by refreshing its token and trying again, up to twice more.
    fcm.fail_next(401, "THIRD_PARTY_AUTH_ERROR", times=3)
    outcome = await provider.send(push(platform="ios"))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"


# --- reaching FCM and authenticating ------------------------------------------------------------------


async def test_unreachable_fcm_is_retry(fcm: FcmStandIn, key_file: Path) -> None:
    provider = FcmProvider(FcmConfig(credentials=str(key_file), base_url=f"http://127.0.0.1:{free_port()}"))
    try:
        outcome = await provider.send(push())
    finally:
        await provider.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"


async def test_unreachable_token_endpoint_is_retry(tmp_path: Path) -> None:
    # A stand-in that is gone: its service account's token_uri no longer answers.
    with FcmStandIn() as gone:
        gone.write_service_account(tmp_path / "key.json", PROJECT)
        url = gone.url
    provider = FcmProvider(FcmConfig(credentials=str(tmp_path / "key.json"), base_url=url))
    try:
        outcome = await provider.send(push())
        with pytest.raises(Exception, match=r"Connection refused|Failed to establish"):
            await provider.health()
    finally:
        await provider.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"


async def test_standin_refuses_missing_and_invalid_bearer_tokens(fcm: FcmStandIn) -> None:
    body = {"message": {"token": TOKEN, "notification": {"title": "t", "body": "b"}}}
    async with httpx.AsyncClient(base_url=fcm.url) as client:
        for headers in ({}, {"Authorization": "Bearer ya29.forged"}):
            response = await client.post(f"/v1/projects/{PROJECT}/messages:send", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert fcm.messages == []


async def test_standin_validates_the_message_shape(fcm: FcmStandIn, key_file: Path) -> None:
    async with httpx.AsyncClient(base_url=fcm.url) as client:
        token = _access_token(key_file)
        body = {"message": {"token": TOKEN, "data": {"n": 1}, "android": {"priority": "URGENT"}}}
        response = await client.post(
            f"/v1/projects/{PROJECT}/messages:send", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"][0] == {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "INVALID_ARGUMENT",
    }
    assert error["details"][1]["fieldViolations"][0]["field"] == "message.data[n]"


async def test_a_key_the_token_endpoint_does_not_trust_fails_over(fcm: FcmStandIn, tmp_path: Path) -> None:
    key = tmp_path / "untrusted.json"
    fcm.write_service_account(key, PROJECT, trusted=False)
    provider = FcmProvider(FcmConfig(credentials=key.read_text(), base_url=fcm.url))
    try:
        outcome = await provider.send(push())
        with pytest.raises(Exception, match="Invalid JWT Signature"):
            await provider.health()
    finally:
        await provider.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert fcm.messages == []


async def test_health_passes(provider: FcmProvider) -> None:
    await provider.health()


# --- configuration ------------------------------------------------------------------------------------


async def test_valid_config_passes(provider: FcmProvider) -> None:
    provider.validate_config()


def test_credentials_that_are_not_a_key_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="HERALD_FCM_CREDENTIALS"):
        FcmProvider(FcmConfig(credentials=str(tmp_path / "missing.json")))
    with pytest.raises(ProviderConfigError, match="HERALD_FCM_CREDENTIALS"):
        FcmProvider(FcmConfig(credentials='{"type": "authorized_user"}'))


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [({"base_url": "fcm.googleapis.com"}, "HERALD_FCM_BASE_URL"), ({"timeout_s": 0}, "HERALD_PROVIDER_TIMEOUT_S")],
)
async def test_validate_config_names_the_variable(key_file: Path, overrides: dict[str, Any], variable: str) -> None:
    provider = FcmProvider(FcmConfig(credentials=str(key_file), **overrides))
    try:
        with pytest.raises(ProviderConfigError, match=variable):
            provider.validate_config()
    finally:
        await provider.close()


def test_a_key_without_a_project_needs_the_project_id(
    fcm: FcmStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.delenv("GCLOUD_PROJECT", raising=False)
    info = fcm.write_service_account(tmp_path / "key.json", PROJECT)
    del info["project_id"]
    with pytest.raises(ProviderConfigError, match="HERALD_FCM_PROJECT_ID"):
        FcmProvider(FcmConfig(credentials=json.dumps(info)))


def test_no_threads_is_refused_at_once(key_file: Path) -> None:
    with pytest.raises(ProviderConfigError, match="HERALD_FCM_MAX_CONCURRENCY"):
        FcmProvider(FcmConfig(credentials=str(key_file), max_concurrency=0))


def _access_token(key_file: Path) -> str:
    """An access token for ``key_file`` through the SDK's own flow (google-auth's JWT grant)."""
    return str(credentials.Certificate(str(key_file)).get_access_token().access_token)
