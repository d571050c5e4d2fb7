"""The Web Push provider (pywebpush's encryption, py_vapid's signatures) against the local push service.

Real HTTP and real crypto: the stand-in subscribes as a browser does, verifies each VAPID token
with the key it names (and the key the subscription is bound to), and decrypts each body with the
subscription's private key, so a Delivered outcome means a browser would have read the payload.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from py_vapid import Vapid
from pywebpush import WebPusher

from infra.local.processes import free_port
from infra.standins.webpush import PushService
from services.sender_push.webpush import DEFAULT_TTL_S, MAX_BODY_BYTES, WebPushConfig, WebPushProvider
from shared.delivery import Delivered, Failed, Retry, token_is_dead
from shared.errors import DeadLetterReason
from shared.messages import PushDelivery
from shared.providers.base import ProviderConfigError
from shared.ssrf import MAX_REASON_CHARS, OutboundGuard
from tests.factories import push_delivery
from tests.outbound import METADATA_ADDRESS, PUBLIC_ADDRESS, LocalInternet, ScriptedResolver, guard
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration

SUBJECT = "mailto:ops@herald.example"
# RFC 8188/8291 framing of a one-record aes128gcm body: a 86-byte header (16 salt, 4 record size,
# 1 key id length, the 65-byte sender key), then the padding delimiter and the 16-byte AES-GCM tag.
AES128GCM_OVERHEAD = 86 + 1 + 16


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


VAPID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_VAPID_KEY = ec.generate_private_key(ec.SECP256R1())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def config(**overrides: Any) -> WebPushConfig:
    """The provider's configuration; its guard lets it reach the push service stand-in on this machine."""
    values: dict[str, Any] = {
        "vapid_private_key": private_pem(VAPID_KEY),
        "vapid_subject": SUBJECT,
        "timeout_s": 5.0,
        "guard": OutboundGuard(allow_private_networks=True),
    }
    return WebPushConfig(**{**values, **overrides})


def push(subscription: dict[str, Any] | str, **overrides: Any) -> PushDelivery:
    token = subscription if isinstance(subscription, str) else json.dumps(subscription)
    return push_delivery(**{"platform": "web", "token": token, **overrides})


@pytest.fixture(scope="module")
def service_server() -> Iterator[PushService]:
    with PushService() as server:
        yield server


@pytest.fixture
def service(service_server: PushService) -> PushService:
    service_server.reset()
    return service_server


@pytest.fixture
async def provider() -> AsyncIterator[WebPushProvider]:
    webpush = WebPushProvider(config())
    webpush.validate_config()
    try:
        yield webpush
    finally:
        await webpush.close()


@pytest.fixture
def subscription(service: PushService, provider: WebPushProvider) -> dict[str, Any]:
    """A subscription bound to the provider's VAPID key, as a browser makes it with that key."""
    return service.subscribe(application_server_key=provider.public_key)


# --- delivered -----------------------------------------------------------------------------------------


async def test_push_is_delivered_and_the_service_decrypts_exactly_the_payload(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    delivery = push(subscription, data={"order_id": "42", "emoji": "📦"})
    before = time.time()
    outcome = await provider.send(delivery)
    [message] = service.received(subscription)
    assert outcome == Delivered("webpush", message.location)
    assert message.json() == {
        "notification_id": delivery["notification_id"],
        "title": "Your order shipped",
        "body": "It is on its way.",
        "data": {"order_id": "42", "emoji": "📦"},
    }
    # Encrypted as aes128gcm in one record: the body is the payload and its fixed framing, no more.
    assert message.body_bytes == len(message.payload) + AES128GCM_OVERHEAD
    assert message.headers["content-encoding"] == "aes128gcm"
    assert message.headers["ttl"] == "3600"
    assert message.headers["urgency"] == "high"
    assert message.headers["topic"] == "order-42"
    # What the stand-in verified the ES256 signature of.
    assert message.vapid_key == provider.public_key == public_key_of(VAPID_KEY)
    assert message.vapid_claims["aud"] == service.origin
    assert message.vapid_claims["sub"] == SUBJECT
    assert before < message.vapid_claims["exp"] <= time.time() + 24 * 3600


async def test_defaults_and_optional_fields(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    delivery = push(subscription, ttl_s=None, priority="low", title=None, collapse_key=None, data={})
    assert isinstance(await provider.send(delivery), Delivered)
    [message] = service.received(subscription)
    assert message.headers["ttl"] == str(DEFAULT_TTL_S) == "2419200"
    assert message.headers["urgency"] == "low"
    assert "topic" not in message.headers
    assert message.json() == {
        "notification_id": delivery["notification_id"],
        "title": None,
        "body": "It is on its way.",
        "data": {},
    }


async def test_normal_priority_and_zero_ttl(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    assert isinstance(await provider.send(push(subscription, priority="normal", ttl_s=0)), Delivered)
    [message] = service.received(subscription)
    assert (message.headers["urgency"], message.headers["ttl"]) == ("normal", "0")


@pytest.mark.parametrize("collapse_key", ["order 42!", "x" * 33, "commande-née"])
async def test_a_collapse_key_that_cannot_be_a_topic_is_dropped(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any], collapse_key: str
) -> None:
    # Sent as it is, the stand-in (like push services) would refuse the whole push with a 400.
    outcome = await provider.send(push(subscription, collapse_key=collapse_key))
    assert isinstance(outcome, Delivered)
    [message] = service.received(subscription)
    assert "topic" not in message.headers


async def test_the_vapid_token_is_signed_once_per_origin(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    for _ in range(2):
        assert isinstance(await provider.send(push(subscription)), Delivered)
    first, second = service.received(subscription)
    assert first.vapid_token == second.vapid_token
    # Another push service (another origin) gets a token of its own.
    with PushService() as elsewhere:
        other = elsewhere.subscribe(application_server_key=provider.public_key)
        assert isinstance(await provider.send(push(other)), Delivered)
        [third] = elsewhere.received(other)
    assert third.vapid_claims["aud"] == elsewhere.origin != service.origin
    assert third.vapid_token != first.vapid_token


async def test_concurrent_sends_share_the_client(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    outcomes = await asyncio.gather(*(provider.send(push(subscription, data={"n": str(n)})) for n in range(20)))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert sorted(int(m.json()["data"]["n"]) for m in service.received(subscription)) == list(range(20))


async def test_the_largest_payload_push_services_take_is_sent_and_one_byte_more_is_not(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    assert isinstance(await provider.send(push(subscription, data={"pad": ""})), Delivered)
    [empty] = service.received(subscription)
    room = MAX_BODY_BYTES - AES128GCM_OVERHEAD - len(empty.payload)
    assert isinstance(await provider.send(push(subscription, data={"pad": "a" * room})), Delivered)
    assert service.received(subscription)[-1].body_bytes == MAX_BODY_BYTES
    attempts = service.attempts

    outcome = await provider.send(push(subscription, data={"pad": "a" * (room + 1)}))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_PAYLOAD
    assert outcome.detail.startswith("payload too large")
    assert not token_is_dead(outcome)
    # Refused before any request.
    assert service.attempts == attempts


# --- gone and unusable subscriptions ---------------------------------------------------------------------


async def test_an_expired_subscription_fails_for_good_as_unregistered(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    service.expire(subscription)
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.UNREGISTERED_TOKEN
    assert outcome.detail.startswith("unregistered token: 410")
    assert token_is_dead(outcome)
    assert service.received() == []


async def test_a_404_is_unregistered_too(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any]
) -> None:
    service.fail_next(404)
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.UNREGISTERED_TOKEN
    assert outcome.detail.startswith("unregistered token: 404")
    assert token_is_dead(outcome)


def _with(subscription: dict[str, Any], **changes: Any) -> str:
    keys = {**subscription["keys"], **changes.pop("keys", {})}
    return json.dumps({**subscription, **changes, "keys": keys})


@pytest.mark.parametrize(
    ("make_token", "why"),
    [
        (lambda s: "not json {", "not a PushSubscription"),
        (lambda s: json.dumps([s]), "not a PushSubscription"),
        (lambda s: json.dumps({"keys": s["keys"]}), "no endpoint"),
        (lambda s: _with(s, endpoint="ftp://127.0.0.1/push/x"), "not an http(s) URL"),
        (lambda s: _with(s, endpoint="https://"), "not an http(s) URL"),
        (lambda s: json.dumps({"endpoint": s["endpoint"]}), "keys.p256dh and keys.auth are required"),
        (lambda s: _with(s, keys={"auth": None}), "keys.p256dh and keys.auth are required"),
        (lambda s: _with(s, keys={"p256dh": "not base64!"}), "keys.p256dh is not base64url"),
        (lambda s: _with(s, keys={"p256dh": b64url(b"\x04" + b"\x01" * 64)}), "not a point on P-256"),
        (lambda s: _with(s, keys={"p256dh": b64url(b"\x02" + b"\x01" * 32)}), "not an uncompressed P-256 point"),
        (lambda s: _with(s, keys={"auth": b64url(b"12345678")}), "not a 16-byte secret"),
    ],
    ids=[
        "garbage",
        "not-an-object",
        "no-endpoint",
        "ftp-endpoint",
        "no-host",
        "no-keys",
        "no-auth",
        "p256dh-not-base64",
        "p256dh-off-curve",
        "p256dh-compressed",
        "auth-too-short",
    ],
)
async def test_an_unusable_subscription_fails_as_invalid_and_is_disabled(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any], make_token: Any, why: str
) -> None:
    outcome = await provider.send(push(make_token(subscription)))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_TOKEN
    assert outcome.detail.startswith("invalid token")
    assert why in outcome.detail
    assert token_is_dead(outcome)
    assert service.attempts == 0


async def test_other_platforms_are_invalid(provider: WebPushProvider, subscription: dict[str, Any]) -> None:
    outcome = await provider.send(push(subscription, platform="android"))
    assert outcome == Failed("webpush", "webpush sends to web subscriptions only", DeadLetterReason.INVALID_PAYLOAD)


# --- the push service's other answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected_s"), [("120", 120.0), ("in 90 s", 90.0), ("soon", None)], ids=["seconds", "date", "bad"]
)
async def test_too_many_requests_is_rate_limited_with_the_wait(
    service: PushService,
    provider: WebPushProvider,
    subscription: dict[str, Any],
    retry_after: str,
    expected_s: float | None,
) -> None:
    if retry_after == "in 90 s":
        retry_after = formatdate(time.time() + 90, usegmt=True)
    service.fail_next(429, headers={"Retry-After": retry_after})
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "rate_limited"
    if expected_s is None:
        assert outcome.after_s is None
    else:
        # An HTTP date has whole seconds.
        assert outcome.after_s == pytest.approx(expected_s, abs=2)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_trouble_is_retry_and_the_next_push_goes_through(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any], status: int
) -> None:
    service.fail_next(status)
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert outcome.detail.startswith(str(status))
    assert isinstance(await provider.send(push(subscription)), Delivered)
    assert len(service.received(subscription)) == 1


@pytest.mark.parametrize("status", [400, 413])
async def test_a_refused_message_fails_but_keeps_the_subscription(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any], status: int
) -> None:
    service.fail_next(status)
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_PAYLOAD
    assert f"{status} " in outcome.detail
    assert not token_is_dead(outcome)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_vapid_token_fails_over_and_is_signed_again(
    service: PushService, provider: WebPushProvider, subscription: dict[str, Any], status: int
) -> None:
    assert isinstance(await provider.send(push(subscription)), Delivered)
    service.fail_next(status)
    outcome = await provider.send(push(subscription))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert "HERALD_WEBPUSH_VAPID_PRIVATE_KEY" in outcome.detail
    assert isinstance(await provider.send(push(subscription)), Delivered)
    first, again = service.received(subscription)
    assert first.vapid_token != again.vapid_token


async def test_a_push_signed_with_another_key_than_the_subscriptions_fails_over(
    service: PushService, subscription: dict[str, Any]
) -> None:
    other = WebPushProvider(config(vapid_private_key=private_pem(OTHER_VAPID_KEY)))
    try:
        outcome = await other.send(push(subscription))
    finally:
        await other.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert outcome.detail.startswith("403")
    assert service.received() == []


# --- not reached ------------------------------------------------------------------------------------------


async def test_an_unreachable_push_service_is_retry(provider: WebPushProvider, subscription: dict[str, Any]) -> None:
    token = _with(subscription, endpoint=f"http://127.0.0.1:{free_port()}/push/gone")
    outcome = await provider.send(push(token))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert "cannot reach the push service" in outcome.detail


async def test_a_push_service_that_never_answers_is_retry_within_the_timeout(subscription: dict[str, Any]) -> None:
    # Listening without ever accepting: the connection opens, no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        token = _with(subscription, endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}/push/x")
        webpush = WebPushProvider(config(timeout_s=0.5))
        started = time.monotonic()
        try:
            outcome = await webpush.send(push(token))
        finally:
            await webpush.close()
        elapsed = time.monotonic() - started
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert "no answer" in outcome.detail
    assert 0.5 <= elapsed < 2.0


# --- the SSRF guard: only public push services, and nothing of their answers but the status ----------------


async def guarded_send(
    token: dict[str, Any] | str, internet: LocalInternet, resolver: ScriptedResolver | None = None
) -> object:
    """What a provider guarded as in production (public push services only) makes of a push to ``token``."""
    webpush = WebPushProvider(config(guard=guard(resolver, internet)))
    try:
        return await webpush.send(push(token))
    finally:
        await webpush.close()


async def test_a_subscription_on_a_loopback_address_is_refused_and_disabled(
    service: PushService, subscription: dict[str, Any]
) -> None:
    internet = LocalInternet()
    outcome = await guarded_send(subscription, internet)
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_TOKEN
    assert "non-public address 127.0.0.1 (loopback)" in outcome.detail
    assert token_is_dead(outcome)
    assert (internet.attempts, service.attempts) == ([], 0)


async def test_a_subscription_at_the_cloud_metadata_address_is_refused_before_connecting(
    subscription: dict[str, Any],
) -> None:
    internet = LocalInternet()
    outcome = await guarded_send(_with(subscription, endpoint=f"http://{METADATA_ADDRESS}/push/x"), internet)
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_TOKEN
    assert "(link-local)" in outcome.detail
    assert internet.attempts == []


async def test_a_rebinding_push_service_is_posted_to_the_address_it_was_checked_at(
    service: PushService, subscription: dict[str, Any]
) -> None:
    """The endpoint's name resolves to a public address, then to 127.0.0.1, where the stand-in listens on
    the endpoint's port: the push goes to the public address, and the stand-in never sees it."""
    port = service.port
    endpoint = subscription["endpoint"].replace(service.origin, f"http://push.rebind.test:{port}")
    with ScriptedServer().serving() as public:
        public.reply = Reply(201, {"Location": "https://push.rebind.test/m/1"})
        internet = LocalInternet({PUBLIC_ADDRESS: public.server_address[1]})
        resolver = ScriptedResolver({"push.rebind.test": [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
        outcome = await guarded_send(_with(subscription, endpoint=endpoint), internet, resolver)
        [request] = public.requests
    assert outcome == Delivered("webpush", "https://push.rebind.test/m/1")
    assert service.attempts == 0
    assert internet.attempts == [(PUBLIC_ADDRESS, port)]
    assert request.headers["Host"] == f"push.rebind.test:{port}"


@pytest.mark.parametrize(("status", "outcome_type"), [(400, Failed), (404, Failed), (500, Retry), (418, Failed)])
async def test_an_answer_keeps_only_its_status_never_its_body(
    subscription: dict[str, Any], status: int, outcome_type: type
) -> None:
    """Whatever answers at the endpoint (here an internal admin page's error), the detail stored with the
    delivery holds its status and a bounded reason phrase, not a byte of its body."""
    long_reason = "Internal " + "x" * 300
    with ScriptedServer().serving() as public:
        public.reply = Reply(status, body=b"db password: hunter2", reason=long_reason)
        internet = LocalInternet({PUBLIC_ADDRESS: public.server_address[1]})
        resolver = ScriptedResolver({"push.example.test": [[PUBLIC_ADDRESS]]})
        outcome = await guarded_send(
            _with(subscription, endpoint="http://push.example.test/push/x"), internet, resolver
        )
    assert isinstance(outcome, outcome_type)
    assert isinstance(outcome, Failed | Retry)
    assert "hunter2" not in outcome.detail
    assert f"{status} {long_reason[:MAX_REASON_CHARS]}" in outcome.detail
    assert long_reason[: MAX_REASON_CHARS + 1] not in outcome.detail


# --- the stand-in checks what push services check --------------------------------------------------------


def vapid_header(key: ec.EllipticCurvePrivateKey, claims: dict[str, Any], k: str | None = None) -> str:
    header: str = Vapid(private_key=key).sign({"exp": int(time.time()) + 3600, **claims})["Authorization"]
    if k is not None:  # name another key than the one that signed
        header = header.split(",k=")[0] + f",k={k}"
    return header


@pytest.mark.parametrize(
    ("make_headers", "status", "why"),
    [
        (lambda origin: {}, 401, "VAPID Authorization header is required"),
        (
            lambda origin: {
                "Authorization": vapid_header(
                    OTHER_VAPID_KEY, {"aud": origin, "sub": SUBJECT}, k=public_key_of(VAPID_KEY)
                )
            },
            401,
            "Signature verification failed",
        ),
        (
            lambda origin: {
                "Authorization": vapid_header(VAPID_KEY, {"aud": "https://push.example.com", "sub": SUBJECT})
            },
            401,
            "Audience doesn't match",
        ),
        (
            lambda origin: {
                "Authorization": vapid_header(VAPID_KEY, {"aud": origin, "sub": SUBJECT, "exp": int(time.time()) - 600})
            },
            401,
            "expired",
        ),
        (
            lambda origin: {
                "Authorization": vapid_header(
                    VAPID_KEY, {"aud": origin, "sub": SUBJECT, "exp": int(time.time()) + 25 * 3600}
                )
            },
            401,
            "more than 24 hours",
        ),
        (
            lambda origin: {"Authorization": vapid_header(OTHER_VAPID_KEY, {"aud": origin, "sub": SUBJECT})},
            403,
            "not the one the subscription was created with",
        ),
    ],
    ids=["no-vapid", "forged-signature", "other-audience", "expired", "too-long-lived", "other-key"],
)
async def test_the_standin_refuses_bad_vapid_tokens(
    service: PushService, subscription: dict[str, Any], make_headers: Any, status: int, why: str
) -> None:
    body = WebPusher(subscription).encode(b'{"body": "hi"}', "aes128gcm")["body"]
    headers = {"TTL": "60", "Content-Encoding": "aes128gcm", **make_headers(service.origin)}
    async with httpx.AsyncClient() as client:
        response = await client.post(subscription["endpoint"], content=body, headers=headers)
    assert response.status_code == status
    assert why in response.json()["message"]
    assert service.received() == []


@pytest.mark.parametrize(
    ("headers", "body", "status", "why"),
    [
        ({"Content-Encoding": "aes128gcm"}, None, 400, "TTL"),
        ({"TTL": "60", "Content-Encoding": "aesgcm"}, None, 400, "Content-Encoding"),
        ({"TTL": "60", "Content-Encoding": "aes128gcm", "Topic": "not a topic"}, None, 400, "Topic"),
        ({"TTL": "60", "Content-Encoding": "aes128gcm", "Urgency": "urgent"}, None, 400, "Urgency"),
        ({"TTL": "60", "Content-Encoding": "aes128gcm"}, b"\x00" * 200, 400, "cannot decrypt"),
        ({"TTL": "60", "Content-Encoding": "aes128gcm"}, b"\x00" * (MAX_BODY_BYTES + 1), 413, "larger than"),
    ],
    ids=["no-ttl", "old-encoding", "bad-topic", "bad-urgency", "undecryptable", "too-large"],
)
async def test_the_standin_refuses_bad_pushes(
    service: PushService,
    subscription: dict[str, Any],
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    why: str,
) -> None:
    content = body if body is not None else WebPusher(subscription).encode(b'{"body": "hi"}', "aes128gcm")["body"]
    authorization = vapid_header(VAPID_KEY, {"aud": service.origin, "sub": SUBJECT})
    async with httpx.AsyncClient() as client:
        response = await client.post(
            subscription["endpoint"], content=content, headers={**headers, "Authorization": authorization}
        )
    assert response.status_code == status
    assert why in response.json()["message"]
    assert service.received() == []


async def test_the_standin_runs_standalone_and_prints_what_it_decrypts(provider: WebPushProvider) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infra.standins.webpush",
        "--port",
        str(free_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        subscription = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert isinstance(await provider.send(push(subscription, collapse_key="news")), Delivered)
        printed = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
    finally:
        process.terminate()
        await process.wait()
    assert printed["topic"] == "news"
    assert json.loads(printed["payload"])["body"] == "It is on its way."


# --- health and configuration -----------------------------------------------------------------------------


async def test_health_passes_until_closed() -> None:
    webpush = WebPushProvider(config())
    await webpush.health()
    await webpush.close()
    with pytest.raises(RuntimeError, match="closed"):
        await webpush.health()


async def test_the_key_is_read_as_pem_a_file_raw_base64url_or_der(tmp_path: Path) -> None:
    pem_file = tmp_path / "vapid.pem"
    pem_file.write_text(private_pem(VAPID_KEY))
    raw = b64url(VAPID_KEY.private_numbers().private_value.to_bytes(32, "big"))
    der = base64.b64encode(
        VAPID_KEY.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    ).decode()
    for value in (private_pem(VAPID_KEY), f"\n{private_pem(VAPID_KEY)}\n\n", str(pem_file), raw, der):
        webpush = WebPushProvider(config(vapid_private_key=value))
        try:
            assert webpush.public_key == public_key_of(VAPID_KEY)
        finally:
            await webpush.close()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not a key",
        "/nonexistent/vapid.pem",
        b64url(b"\x01" * 16),
        private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        private_pem(ec.generate_private_key(ec.SECP384R1())),
    ],
    ids=["empty", "text", "missing-file", "short-raw", "rsa", "p384"],
)
def test_an_unusable_key_names_the_variable(key: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"^HERALD_WEBPUSH_VAPID_PRIVATE_KEY: "):
        WebPushProvider(config(vapid_private_key=key))


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"vapid_subject": "ops@herald.example"}, "HERALD_WEBPUSH_SUBJECT"),
        ({"vapid_subject": "mailto:"}, "HERALD_WEBPUSH_SUBJECT"),
        ({"vapid_subject": "http://herald.example"}, "HERALD_WEBPUSH_SUBJECT"),
        ({"vapid_subject": "https://"}, "HERALD_WEBPUSH_SUBJECT"),
        ({"vapid_subject": ""}, "HERALD_WEBPUSH_SUBJECT"),
        ({"timeout_s": 0}, "HERALD_PROVIDER_TIMEOUT_S"),
        ({"max_connections": 0}, "HERALD_WEBPUSH_MAX_CONNECTIONS"),
    ],
)
async def test_validate_config_names_the_variable(overrides: dict[str, Any], variable: str) -> None:
    webpush = WebPushProvider(config(**overrides))
    try:
        with pytest.raises(ProviderConfigError, match=f"^{variable}: "):
            webpush.validate_config()
    finally:
        await webpush.close()


@pytest.mark.parametrize("subject", [SUBJECT, "https://herald.example", "https://herald.example/contact"])
async def test_an_https_subject_with_a_path_is_accepted_and_sent(
    service: PushService, subject: str, subscription: dict[str, Any]
) -> None:
    webpush = WebPushProvider(config(vapid_subject=subject))
    try:
        webpush.validate_config()
        assert isinstance(await webpush.send(push(subscription)), Delivered)
    finally:
        await webpush.close()
    [message] = service.received(subscription)
    assert message.vapid_claims["sub"] == subject
