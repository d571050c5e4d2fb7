"""Provider callbacks on the real gateway: signed Twilio, SendGrid and SNS/SES requests become status events
on the status topic and suppressions in Postgres; a bad signature is a 403 and records nothing. Also the
suppression API, and the router refusing a suppressed address."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from infra.standins.tls import local_server_context
from services.gateway.app import create_app
from services.gateway.callbacks.settings import SNS_HOSTS
from services.gateway.callbacks.sns import NotFromSns, SnsVerifier
from services.gateway.settings import GatewaySettings
from services.router.handlers import RouterHandler, with_batch_lookups
from shared import status
from shared.kafka.records import Consumed, Produce, Reject
from shared.messages import ROUTABLE_NOTIFICATION, STATUS_EVENT, RoutableNotification, StatusEvent
from shared.status import rank
from shared.status_events import StatusReporter
from shared.storage.database import Pool, create_pool
from shared.storage.devices import DeviceRepository
from shared.storage.suppressions import Suppression, SuppressionRepository
from shared.templates import TemplateRenderer
from shared.topics import Topics
from tests.callback_signing import (
    TOPIC_ARN,
    TWILIO_TOKEN,
    SendGridSigner,
    SnsSigner,
    herald_ids,
    sendgrid_event,
    ses_bounce,
    ses_complaint,
    sns_notification,
    sns_subscription_confirmation,
    twilio_form,
    twilio_signature,
)
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import DEV_TENANT, assert_problem, auth
from tests.kafka_helpers import read_topic
from tests.outbound import METADATA_ADDRESS, PUBLIC_ADDRESS, LocalInternet, ScriptedResolver, guard
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration

PUBLIC_BASE = "https://herald.example.com"
TWILIO = "/api/v1/callbacks/twilio"
SENDGRID = "/api/v1/callbacks/sendgrid"
SES = "/api/v1/callbacks/ses"
SUPPRESSIONS = "/api/v1/suppressions"
T = TypeVar("T")


@pytest.fixture
def sendgrid_signer() -> SendGridSigner:
    return SendGridSigner()


@pytest.fixture
def sns_signer() -> SnsSigner:
    return SnsSigner()


@pytest.fixture
def aws_host(tmp_path: Path, sns_signer: SnsSigner) -> Iterator[ScriptedServer]:
    """SNS's HTTPS host, on 127.0.0.1 with a CA of the test's own: serves the signing certificate, and
    records the subscription confirmation."""
    server = ScriptedServer()
    server.socket = local_server_context(tmp_path, "SNS test CA").wrap_socket(server.socket, server_side=True)
    server.reply = Reply(200, {"Content-Type": "application/x-pem-file"}, sns_signer.certificate_pem)
    with server.serving():
        yield server


def https_url(server: ScriptedServer, path: str) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}{path}"


def callbacks_settings(
    gateway_settings: GatewaySettings, sendgrid_signer: SendGridSigner, tmp_path: Path, *, allow_private: bool
) -> GatewaySettings:
    """Every provider's callback configured; SNS's host is ``aws_host``, on this machine."""
    return gateway_settings.model_copy(
        update={
            "public_base_url": PUBLIC_BASE,
            "twilio_auth_token": SecretStr(TWILIO_TOKEN),
            "sendgrid_webhook_public_key": sendgrid_signer.public_key,
            "ses_sns_topic_arns": [TOPIC_ARN],
            "sns_cert_host_pattern": r"127\.0\.0\.1",
            "sns_ca_file": str(tmp_path / "ca.pem"),
            "sns_allow_private_networks": allow_private,
        }
    )


@pytest.fixture
def callbacks_client(
    gateway_settings: GatewaySettings, sendgrid_signer: SendGridSigner, aws_host: ScriptedServer, tmp_path: Path
) -> Iterator[TestClient]:
    with TestClient(
        create_app(callbacks_settings(gateway_settings, sendgrid_signer, tmp_path, allow_private=True))
    ) as running:
        yield running


def status_events(settings: GatewaySettings, count: int) -> list[StatusEvent]:
    """The status topic's events, ordered by their rank (partitions keep no order between notifications)."""
    records = asyncio.run(read_topic(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix).status, count))
    events = [STATUS_EVENT.decode(record.value) for record in records]
    return sorted(events, key=lambda e: (rank(e["status"]), e["reason"] or ""))


def suppressed(client: TestClient, **query: str) -> list[tuple[str, str, str]]:
    response = client.get(SUPPRESSIONS, params=query, headers=auth())
    assert response.status_code == 200, response.text
    return [(s["channel"], s["address"], s["reason"]) for s in response.json()]


# --- Twilio ---------------------------------------------------------------------------------------


def post_twilio(client: TestClient, ids: dict[str, str], form: dict[str, str], signed_url: str | None = None) -> Any:
    query = urlencode({"n": ids["notification_id"], "d": ids["delivery_id"], "t": ids["tenant_id"]})
    # Twilio signs the public URL it called, not the address the gateway listens on.
    signature = twilio_signature(signed_url or f"{PUBLIC_BASE}{TWILIO}?{query}", form)
    return client.post(f"{TWILIO}?{query}", data=form, headers={"X-Twilio-Signature": signature})


def test_twilio_status_callbacks_record_delivered_and_failed(
    callbacks_client: TestClient, gateway_settings: GatewaySettings
) -> None:
    delivered_ids, failed_ids = herald_ids(DEV_TENANT), herald_ids(DEV_TENANT)
    assert post_twilio(callbacks_client, delivered_ids, twilio_form("sent")).status_code == 204
    assert post_twilio(callbacks_client, delivered_ids, twilio_form("delivered")).status_code == 204
    stop = twilio_form("undelivered", error_code="21610", to="+1 415 555 0100")
    assert post_twilio(callbacks_client, failed_ids, stop).status_code == 204

    delivered, failed = status_events(gateway_settings, 2)
    assert (delivered["status"], delivered["notification_id"], delivered["delivery_id"]) == (
        status.DELIVERED,
        delivered_ids["notification_id"],
        delivered_ids["delivery_id"],
    )
    assert (delivered["provider"], delivered["channel"], delivered["service"]) == ("twilio", "sms", "gateway")
    assert (failed["status"], failed["reason"], failed["delivery_id"]) == (
        status.FAILED,
        "recipient_opted_out",
        failed_ids["delivery_id"],
    )
    assert "21610" in (failed["detail"] or "")
    # The recipient replied STOP: the number, in E.164, is never texted again.
    assert suppressed(callbacks_client) == [("sms", "+14155550100", "opted_out")]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda ids, form: ({**ids, "tenant_id": "other"}, form, None), id="ids-changed"),
        pytest.param(lambda ids, form: (ids, {**form, "MessageStatus": "failed"}, None), id="form-changed"),
        pytest.param(
            lambda ids, form: (ids, form, f"http://testserver{TWILIO}?n={ids['notification_id']}"), id="other-url"
        ),
    ],
)
def test_a_twilio_callback_with_a_bad_signature_is_403_and_records_nothing(
    callbacks_client: TestClient, gateway_settings: GatewaySettings, tamper: Any
) -> None:
    ids, form = herald_ids(DEV_TENANT), twilio_form("undelivered", error_code="21610")
    query = urlencode({"n": ids["notification_id"], "d": ids["delivery_id"], "t": ids["tenant_id"]})
    signature = twilio_signature(f"{PUBLIC_BASE}{TWILIO}?{query}", form)
    changed_ids, changed_form, signed_url = tamper(ids, form)
    if signed_url:
        signature = twilio_signature(signed_url, form)
    changed_query = urlencode(
        {"n": changed_ids["notification_id"], "d": changed_ids["delivery_id"], "t": changed_ids["tenant_id"]}
    )
    response = callbacks_client.post(
        f"{TWILIO}?{changed_query}", data=changed_form, headers={"X-Twilio-Signature": signature}
    )
    assert_problem(response, 403)
    assert_problem(callbacks_client.post(TWILIO, data=form), 403)
    # Nothing was recorded: the only event is the valid callback sent after them, and nothing is suppressed.
    other = herald_ids(DEV_TENANT)
    assert post_twilio(callbacks_client, other, twilio_form("delivered")).status_code == 204
    [event] = status_events(gateway_settings, 1)
    assert (event["notification_id"], event["status"]) == (other["notification_id"], status.DELIVERED)
    assert suppressed(callbacks_client) == []


def test_callbacks_of_a_provider_not_configured_are_404(client: TestClient) -> None:
    assert_problem(client.post(TWILIO, data=twilio_form("delivered")), 404)
    assert_problem(client.post(SENDGRID, content=b"[]"), 404)
    assert_problem(client.post(SES, content=b"{}"), 404)


# --- SendGrid -------------------------------------------------------------------------------------


def test_sendgrid_events_record_statuses_and_suppress_bounces_and_complaints(
    callbacks_client: TestClient, gateway_settings: GatewaySettings, sendgrid_signer: SendGridSigner
) -> None:
    ids = herald_ids(DEV_TENANT)
    url = "https://shop.example.com/orders/42"
    body = json.dumps(
        [
            sendgrid_event("processed", ids),
            sendgrid_event("delivered", ids),
            sendgrid_event("open", ids),
            sendgrid_event("click", ids, url=url),
            sendgrid_event("bounce", herald_ids(DEV_TENANT), email="Gone@Example.com", type="bounce", reason="550"),
            sendgrid_event("spamreport", herald_ids(DEV_TENANT), email="angry@example.com"),
        ]
    ).encode()
    response = callbacks_client.post(SENDGRID, content=body, headers=sendgrid_signer.headers(body))
    assert response.status_code == 204, response.text

    events = status_events(gateway_settings, 5)
    assert [(e["status"], e["reason"], e["provider"]) for e in events] == [
        (status.DELIVERED, None, "sendgrid"),
        (status.OPENED, None, "sendgrid"),
        (status.CLICKED, None, "sendgrid"),
        (status.FAILED, "invalid_address", "sendgrid"),
        (status.FAILED, "recipient_complained", "sendgrid"),
    ]
    assert {e["delivery_id"] for e in events[:3]} == {ids["delivery_id"]}
    assert events[2]["detail"] == url
    assert sorted(suppressed(callbacks_client)) == [
        ("email", "angry@example.com", "complained"),
        ("email", "gone@example.com", "bounced"),
    ]


def test_a_sendgrid_request_with_a_bad_signature_is_403_and_records_nothing(
    callbacks_client: TestClient, gateway_settings: GatewaySettings, sendgrid_signer: SendGridSigner
) -> None:
    body = json.dumps([sendgrid_event("bounce", herald_ids(DEV_TENANT), type="bounce")]).encode()
    headers = sendgrid_signer.headers(body)
    tampered = body.replace(b"ada@example.com", b"eve@example.com")
    assert_problem(callbacks_client.post(SENDGRID, content=tampered, headers=headers), 403)
    other_key = SendGridSigner().headers(body)
    assert_problem(callbacks_client.post(SENDGRID, content=body, headers=other_key), 403)
    assert_problem(callbacks_client.post(SENDGRID, content=body), 403)

    valid = json.dumps([sendgrid_event("delivered", herald_ids(DEV_TENANT))]).encode()
    assert callbacks_client.post(SENDGRID, content=valid, headers=sendgrid_signer.headers(valid)).status_code == 204
    [event] = status_events(gateway_settings, 1)
    assert event["status"] == status.DELIVERED
    assert suppressed(callbacks_client) == []


# --- SES through SNS ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status"), [(b"[]", 403), (b"{", 400)], ids=["not-an-object", "not-json"])
def test_an_sns_body_that_is_no_message_is_refused_before_any_fetch(
    callbacks_client: TestClient, aws_host: ScriptedServer, body: bytes, status: int
) -> None:
    assert_problem(callbacks_client.post(SES, content=body), status)
    assert aws_host.requests == []


def test_an_sns_subscription_is_confirmed_at_its_subscribe_url(
    callbacks_client: TestClient, aws_host: ScriptedServer, sns_signer: SnsSigner
) -> None:
    subscribe = f"/?Action=ConfirmSubscription&TopicArn={TOPIC_ARN}&Token={uuid.uuid4().hex}"
    message = sns_subscription_confirmation(https_url(aws_host, subscribe), https_url(aws_host, "/cert.pem"))
    response = callbacks_client.post(SES, content=json.dumps(sns_signer.sign(message)))
    assert response.status_code == 204, response.text
    assert [(r.method, r.path) for r in aws_host.requests] == [("GET", "/cert.pem"), ("GET", subscribe)]


def test_ses_bounces_and_complaints_fail_the_notification_and_suppress_the_address(
    callbacks_client: TestClient, gateway_settings: GatewaySettings, aws_host: ScriptedServer, sns_signer: SnsSigner
) -> None:
    cert = https_url(aws_host, "/cert.pem")
    bounced_ids, complained_ids = herald_ids(DEV_TENANT), herald_ids(DEV_TENANT)
    for ses_message, version in [
        (ses_bounce(bounced_ids, "gone@example.com"), "1"),
        (ses_bounce(herald_ids(DEV_TENANT), "full@example.com", bounce_type="Transient"), "2"),
        (ses_complaint(complained_ids, "angry@example.com"), "2"),
    ]:
        envelope = sns_signer.sign(sns_notification(ses_message, cert), version)
        response = callbacks_client.post(SES, content=json.dumps(envelope))
        assert response.status_code == 204, response.text

    bounced, complained = status_events(gateway_settings, 2)
    assert (bounced["status"], bounced["reason"], bounced["provider"], bounced["delivery_id"]) == (
        status.FAILED,
        "invalid_address",
        "ses",
        bounced_ids["delivery_id"],
    )
    assert (complained["notification_id"], complained["reason"]) == (
        complained_ids["notification_id"],
        "recipient_complained",
    )
    assert sorted(suppressed(callbacks_client)) == [
        ("email", "angry@example.com", "complained"),
        ("email", "gone@example.com", "bounced"),
    ]
    # The certificate was fetched once, then kept.
    assert [r.path for r in aws_host.requests] == ["/cert.pem"]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda signer, m: SnsSigner().sign(m), id="other-key"),
        pytest.param(lambda signer, m: {**signer.sign(m), "Timestamp": "2026-11-26T00:00:00.000Z"}, id="edited"),
        pytest.param(lambda signer, m: signer.sign({**m, "TopicArn": "arn:aws:sns:us-east-1:1:theirs"}), id="topic"),
        pytest.param(
            lambda signer, m: signer.sign({**m, "SigningCertURL": m["SigningCertURL"].replace("https", "http")}),
            id="http-cert",
        ),
        pytest.param(
            lambda signer, m: signer.sign({**m, "SigningCertURL": "https://localhost:1/cert.pem"}), id="cert-host"
        ),
    ],
)
def test_an_sns_message_that_does_not_verify_is_403_and_records_nothing(
    callbacks_client: TestClient,
    gateway_settings: GatewaySettings,
    aws_host: ScriptedServer,
    sns_signer: SnsSigner,
    forge: Any,
) -> None:
    cert = https_url(aws_host, "/cert.pem")
    message = sns_notification(ses_bounce(herald_ids(DEV_TENANT), "gone@example.com"), cert)
    assert_problem(callbacks_client.post(SES, content=json.dumps(forge(sns_signer, message))), 403)
    subscription = sns_subscription_confirmation(https_url(aws_host, "/subscribe"), cert)
    assert_problem(callbacks_client.post(SES, content=json.dumps(forge(sns_signer, subscription))), 403)
    assert "/subscribe" not in [r.path for r in aws_host.requests]

    ids = herald_ids(DEV_TENANT)
    valid = sns_signer.sign(sns_notification(ses_complaint(ids, "angry@example.com"), cert))
    assert callbacks_client.post(SES, content=json.dumps(valid)).status_code == 204
    [event] = status_events(gateway_settings, 1)
    assert event["notification_id"] == ids["notification_id"]
    assert suppressed(callbacks_client) == [("email", "angry@example.com", "complained")]


# --- the suppression API and the router -----------------------------------------------------------


def on_suppressions(database_url: str, use: Callable[[SuppressionRepository], Awaitable[T]]) -> T:
    """Run ``use`` on the test database's suppressions from a synchronous test (the client has its own loop)."""

    async def run() -> T:
        pool = await create_pool(database_url, 1)
        try:
            return await use(SuppressionRepository(pool, ENCRYPTOR))
        finally:
            await pool.close()

    return asyncio.run(run())


def test_suppressions_are_listed_and_removed_within_the_tenant(callbacks_client: TestClient, database_url: str) -> None:
    on_suppressions(
        database_url,
        lambda repository: repository.add(
            [
                Suppression(DEV_TENANT, "email", "Gone@Example.com", "bounced", "550", "ses"),
                Suppression(DEV_TENANT, "sms", "+14155550100", "opted_out", None, "twilio"),
                Suppression("globex", "email", "gone@example.com", "bounced"),
            ]
        ),
    )
    assert_problem(callbacks_client.get(SUPPRESSIONS), 401)
    assert sorted(suppressed(callbacks_client)) == [
        ("email", "gone@example.com", "bounced"),
        ("sms", "+14155550100", "opted_out"),
    ]
    assert suppressed(callbacks_client, channel="email", address="GONE@example.com") == [
        ("email", "gone@example.com", "bounced")
    ]
    remove = {"channel": "email", "address": "gone@example.com"}
    response = callbacks_client.delete(SUPPRESSIONS, params=remove, headers={**auth(), "Idempotency-Key": "rm-1"})
    assert response.status_code == 204
    assert suppressed(callbacks_client) == [("sms", "+14155550100", "opted_out")]
    again = callbacks_client.delete(SUPPRESSIONS, params=remove, headers={**auth(), "Idempotency-Key": "rm-2"})
    assert_problem(again, 404)
    # A soft delete: no longer applied to routing, and a new bounce suppresses the address again.
    targets = {(DEV_TENANT, "email", "gone@example.com"), (DEV_TENANT, "sms", "+14155550100")}
    assert on_suppressions(database_url, lambda repository: repository.suppressed(targets)) == {
        (DEV_TENANT, "sms", "+14155550100")
    }
    bounced = Suppression(DEV_TENANT, "email", "gone@example.com", "complained", None, "sendgrid")
    on_suppressions(database_url, lambda repository: repository.add([bounced, bounced]))
    assert sorted(suppressed(callbacks_client)) == [
        ("email", "gone@example.com", "complained"),
        ("sms", "+14155550100", "opted_out"),
    ]
    # Another tenant's suppression of the same address is its own.
    globex = on_suppressions(database_url, lambda repository: repository.for_tenant("globex"))
    assert [s.address for s in globex] == ["gone@example.com"]


def routable(tenant_id: str, channel: str, recipient: dict[str, str]) -> Consumed[RoutableNotification]:
    value: RoutableNotification = {
        "notification_id": str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "accepted_at": datetime.now(UTC),
        "priority": "normal",
        "channels": [channel],
        "recipient": {"user_id": None, "email": None, "phone": None, "locale": None, "webhook_url": None},
        "content": {
            "subject": "Hi",
            "text": "Hi",
            "html": None,
            "attachments": [],
            "provider_templates": {},
            "template": None,
        },
        "variables_json": "{}",
        "metadata": {},
        "tracking": {"opens": False, "clicks": False},
    }
    value["recipient"].update(recipient)  # type: ignore[typeddict-item]
    return Consumed("t.routable.v1", 0, 0, b"k", value, ROUTABLE_NOTIFICATION.encode(value))


async def test_the_router_fails_a_notification_to_a_suppressed_address(db_pool: Pool) -> None:
    suppressions = SuppressionRepository(db_pool, ENCRYPTOR)
    await suppressions.add(
        [Suppression("acme", "email", "gone@example.com", "bounced"), Suppression("acme", "sms", "+14155550100", "x")]
    )
    topics = Topics("t")
    handler = RouterHandler(
        renderer=TemplateRenderer(), reporter=StatusReporter(topics.status, "router"), topics=topics
    )
    handle = with_batch_lookups(handler, DeviceRepository(db_pool, ENCRYPTOR), suppressions)
    batch = [
        routable("acme", "email", {"email": "Gone@Example.com"}),
        routable("acme", "sms", {"phone": "+1 (415) 555-0100"}),
        routable("acme", "email", {"email": "ada@example.com"}),
        routable("globex", "email", {"email": "gone@example.com"}),
    ]
    outputs = await handle(batch)
    rejected = [o for o in outputs if isinstance(o, Reject)]
    assert [(r.reason, r.message.value["notification_id"]) for r in rejected] == [
        ("recipient_suppressed", batch[0].value["notification_id"]),
        ("recipient_suppressed", batch[1].value["notification_id"]),
    ]
    sent = [o for o in outputs if isinstance(o, Produce) and o.topic == topics.send("email")]
    assert len(sent) == 2  # ada, and globex's own (not suppressed there) gone@example.com


# --- SNS's URLs through the SSRF guard ---------------------------------------------------------------

SNS_HOST = "sns.us-east-1.amazonaws.com"
CERT_URL = f"https://{SNS_HOST}/SimpleNotificationService-abc.pem"


def test_an_sns_certificate_on_a_private_address_is_403_and_never_fetched(
    gateway_settings: GatewaySettings,
    sendgrid_signer: SendGridSigner,
    aws_host: ScriptedServer,
    sns_signer: SnsSigner,
    tmp_path: Path,
) -> None:
    """As in production (private networks not allowed), a certificate URL on this machine is refused."""
    settings = callbacks_settings(gateway_settings, sendgrid_signer, tmp_path, allow_private=False)
    cert = https_url(aws_host, "/cert.pem")
    envelope = sns_signer.sign(sns_notification(ses_bounce(herald_ids(DEV_TENANT), "gone@example.com"), cert))
    with TestClient(create_app(settings)) as production:
        problem = assert_problem(production.post(SES, content=json.dumps(envelope)), 403)
    assert "non-public address 127.0.0.1 (loopback)" in problem["detail"]
    assert aws_host.requests == []


def sns_host(directory: Path, sni: list[str], signer: SnsSigner) -> ScriptedServer:
    """An HTTPS server with a certificate for SNS's host name only (no IP address), recording the SNI it gets."""
    directory.mkdir()
    context = local_server_context(directory, "SNS test CA", hosts=(SNS_HOST,))
    context.sni_callback = lambda connection, name, _: sni.append(name)
    server = ScriptedServer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.reply = Reply(200, {"Content-Type": "application/x-pem-file"}, signer.certificate_pem)
    return server


def verifier(directory: Path, resolver: ScriptedResolver, internet: LocalInternet, **rule: bool) -> SnsVerifier:
    return SnsVerifier(
        topic_arns=[TOPIC_ARN],
        hosts=SNS_HOSTS,
        guard=guard(resolver, internet, allow_private=rule.get("allow_private", False)),
        ca_file=str(directory / "ca.pem"),
    )


async def test_an_sns_host_name_at_the_metadata_address_is_refused_before_connecting(
    tmp_path: Path, sns_signer: SnsSigner
) -> None:
    internet = LocalInternet()
    resolver = ScriptedResolver({SNS_HOST: [[METADATA_ADDRESS]]})
    local_server_context(tmp_path, "SNS test CA")
    message = sns_signer.sign(sns_notification(ses_bounce(herald_ids(DEV_TENANT), "a@example.com"), CERT_URL))
    with pytest.raises(NotFromSns, match=r"non-public address 169\.254\.169\.254 \(link-local\)"):
        await verifier(tmp_path, resolver, internet).verify(message)
    assert internet.attempts == []


async def test_a_rebinding_sns_host_is_fetched_from_the_address_it_was_checked_at(
    tmp_path: Path, sns_signer: SnsSigner
) -> None:
    """SNS's name resolves to a public address, then to 127.0.0.1 where something listens on the URL's
    port: the certificate comes from the public address, over TLS for the name, and nothing local is
    connected to."""
    sni: list[str] = []
    with (
        socket.create_server(("127.0.0.1", 0)) as internal,
        sns_host(tmp_path / "tls", sni, sns_signer).serving() as public,
    ):
        port = internal.getsockname()[1]
        internet = LocalInternet({PUBLIC_ADDRESS: public.server_address[1]})
        resolver = ScriptedResolver({SNS_HOST: [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
        cert_url = f"https://{SNS_HOST}:{port}/cert.pem"
        message = sns_signer.sign(sns_notification(ses_bounce(herald_ids(DEV_TENANT), "a@example.com"), cert_url))
        await verifier(tmp_path / "tls", resolver, internet).verify(message)
        internal.setblocking(False)
        with pytest.raises(BlockingIOError):
            internal.accept()  # no connection ever came
        [request] = public.requests
    assert internet.attempts == [(PUBLIC_ADDRESS, port)]
    assert (sni, request.headers["Host"]) == ([SNS_HOST], f"{SNS_HOST}:{port}")


async def test_a_pinned_connection_keeps_the_host_name_for_sni_and_certificate_checks(
    tmp_path: Path, sns_signer: SnsSigner
) -> None:
    """Private networks allowed (as in the local stack): the name is pinned to 127.0.0.1, and TLS still
    speaks and verifies the name; a name the certificate does not cover fails, at the same address."""
    sni: list[str] = []
    with sns_host(tmp_path / "tls", sni, sns_signer).serving() as local:
        port = local.server_address[1]
        internet = LocalInternet()
        other = "sns.eu-west-1.amazonaws.com"
        resolver = ScriptedResolver({SNS_HOST: [["127.0.0.1"]], other: [["127.0.0.1"]]})
        pinned = verifier(tmp_path / "tls", resolver, internet, allow_private=True)
        for host in (SNS_HOST, other):
            cert_url = f"https://{host}:{port}/cert.pem"
            message = sns_signer.sign(sns_notification(ses_bounce(herald_ids(DEV_TENANT), "a@example.com"), cert_url))
            if host == SNS_HOST:
                await pinned.verify(message)
            else:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await pinned.verify(message)
        [request] = local.requests
    assert internet.attempts == [("127.0.0.1", port), ("127.0.0.1", port)]
    assert (sni, request.headers["Host"]) == ([SNS_HOST, other], f"{SNS_HOST}:{port}")
