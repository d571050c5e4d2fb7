"""Provider callbacks without I/O: each signature check with real keys, and what each provider event means."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.callbacks import sendgrid, ses, sns, twilio
from services.gateway.callbacks.events import BOUNCED, COMPLAINED, RECIPIENT_COMPLAINED, ProviderEvent
from services.sender_sms.twilio_sms import _status_callback
from shared import status
from shared.errors import DeadLetterReason
from shared.messages import STATUS_EVENT
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
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

pytestmark = pytest.mark.unit

IDS = herald_ids("acme")
CALLBACK = "https://herald.example.com/api/v1/callbacks/twilio"


# --- Twilio ---------------------------------------------------------------------------------------


def twilio_query() -> dict[str, str]:
    return {"n": IDS["notification_id"], "d": IDS["delivery_id"], "t": IDS["tenant_id"]}


def test_the_senders_callback_url_carries_herald_ids_the_gateway_reads() -> None:
    delivery: Any = {**IDS, "to": "+14155550100", "body": "hi"}
    url = _status_callback(f"{CALLBACK}?region=eu", delivery)
    assert url is not None
    query = dict(parse_qsl(urlsplit(url).query))
    assert query == {"region": "eu", **twilio_query()}
    event = twilio.interpret(twilio_form("delivered"), query)
    assert event is not None
    assert (event.ids.notification_id, event.ids.delivery_id, event.ids.tenant_id) == tuple(IDS.values())
    assert _status_callback(None, delivery) is None


def test_a_twilio_signature_verifies_only_for_its_url_form_and_token() -> None:
    url = f"{CALLBACK}?n={IDS['notification_id']}&d={IDS['delivery_id']}&t=acme"
    form = twilio_form("delivered")
    signature = twilio_signature(url, form)
    assert twilio.verify(TWILIO_TOKEN, url, form, signature)
    assert not twilio.verify(TWILIO_TOKEN, url.replace("t=acme", "t=other"), form, signature)
    assert not twilio.verify(TWILIO_TOKEN, url, {**form, "MessageStatus": "failed"}, signature)
    assert not twilio.verify("f" * 32, url, form, signature)
    assert not twilio.verify(TWILIO_TOKEN, url, form, "")


def test_the_url_twilio_called_is_the_public_base_url_with_the_path_and_query() -> None:
    received = "http://10.0.0.7:8080/api/v1/callbacks/twilio?n=1"
    assert twilio.public_url(None, received, "/api/v1/callbacks/twilio", "n=1") == received
    public = twilio.public_url("https://herald.example.com/", received, "/api/v1/callbacks/twilio", "n=1")
    assert public == "https://herald.example.com/api/v1/callbacks/twilio?n=1"


@pytest.mark.parametrize(
    ("form", "expected", "reason", "suppressed"),
    [
        (twilio_form("delivered"), status.DELIVERED, None, ()),
        (twilio_form("undelivered", error_code="30007"), status.FAILED, DeadLetterReason.REJECTED_CONTENT, ()),
        (twilio_form("failed", error_code="30006"), status.FAILED, DeadLetterReason.INVALID_ADDRESS, ("+14155550100",)),
        (
            twilio_form("failed", error_code="21610"),
            status.FAILED,
            DeadLetterReason.RECIPIENT_OPTED_OUT,
            ("+14155550100",),
        ),
        (twilio_form("undelivered", error_code="30008"), status.FAILED, DeadLetterReason.PROVIDER_REJECTED, ()),
    ],
)
def test_twilio_statuses_map_to_herald_statuses(
    form: dict[str, str], expected: str, reason: str | None, suppressed: tuple[str, ...]
) -> None:
    event = twilio.interpret(form, twilio_query())
    assert event is not None
    assert (event.status, event.reason, event.suppress, event.channel) == (expected, reason, suppressed, "sms")
    if reason:
        assert form["ErrorCode"] in str(event.detail)


@pytest.mark.parametrize("message_status", ["queued", "sending", "sent", "accepted"])
def test_twilio_progress_short_of_delivery_records_nothing(message_status: str) -> None:
    assert twilio.interpret(twilio_form(message_status), twilio_query()) is None


def test_a_twilio_callback_without_herald_ids_records_nothing() -> None:
    assert twilio.interpret(twilio_form("delivered"), {}) is None
    assert twilio.interpret(twilio_form("delivered"), {**twilio_query(), "n": "not-a-uuid"}) is None


# --- SendGrid -------------------------------------------------------------------------------------


def test_a_sendgrid_signature_verifies_only_for_its_body_timestamp_and_key() -> None:
    signer = SendGridSigner()
    body = json.dumps([sendgrid_event("delivered", IDS)]).encode()
    headers = signer.headers(body, "1764072000")
    signature, timestamp = headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER]
    events = sendgrid.SignedEvents(signer.public_key)
    assert events.verify(body, signature, timestamp)
    assert not events.verify(body.replace(b"delivered", b"bounce"), signature, timestamp)
    assert not events.verify(body, signature, "1764072001")
    assert not sendgrid.SignedEvents(SendGridSigner().public_key).verify(body, signature, timestamp)
    assert not events.verify(body, "not base64!", timestamp)
    assert not events.verify(body, "", timestamp)


def test_sendgrid_events_map_to_statuses_and_suppressions() -> None:
    url = "https://shop.example.com/"
    events = sendgrid.interpret(
        [
            sendgrid_event("processed", IDS),
            sendgrid_event("delivered", IDS),
            sendgrid_event("bounce", IDS, type="bounce", reason="550 5.1.1 no such user"),
            sendgrid_event("bounce", IDS, type="blocked", reason="550 blocked by policy"),
            sendgrid_event("dropped", IDS, reason="Bounced Address"),
            sendgrid_event("spamreport", IDS),
            sendgrid_event("open", IDS),
            sendgrid_event("open", IDS, sg_machine_open=True),
            sendgrid_event("click", IDS, url=url),
            sendgrid_event("delivered", {}),  # not sent by Herald
            "not an event",
        ]
    )
    assert [(e.status, e.reason, e.suppress, e.suppress_reason) for e in events] == [
        (status.DELIVERED, None, (), BOUNCED),
        (status.FAILED, DeadLetterReason.INVALID_ADDRESS, ("ada@example.com",), BOUNCED),
        (status.FAILED, DeadLetterReason.PROVIDER_REJECTED, (), BOUNCED),
        (status.FAILED, DeadLetterReason.PROVIDER_REJECTED, (), BOUNCED),
        (status.FAILED, RECIPIENT_COMPLAINED, ("ada@example.com",), COMPLAINED),
        (status.OPENED, None, (), BOUNCED),
        (status.CLICKED, None, (), BOUNCED),
    ]
    assert events[1].detail == "550 5.1.1 no such user"
    assert (events[-1].detail, events[-1].distinct_by) == (url, url)
    assert sendgrid.interpret({"not": "a list"}) == []


def test_a_provider_event_becomes_one_status_event_of_its_delivery() -> None:
    [event] = sendgrid.interpret([sendgrid_event("bounce", IDS, reason="550 5.1.1")])
    record = event.status_event(StatusReporter("unit.status.v1", "gateway"))
    assert record is not None
    again = event.status_event(StatusReporter("unit.status.v1", "gateway"))
    assert again is not None
    decoded = STATUS_EVENT.decode(record.value)
    assert (decoded["status"], decoded["delivery_id"], decoded["provider"], decoded["reason"]) == (
        status.FAILED,
        IDS["delivery_id"],
        "sendgrid",
        "invalid_address",
    )
    # A provider's retry is the same event: the status store keeps it once.
    assert STATUS_EVENT.decode(again.value)["event_id"] == decoded["event_id"]
    assert record.key == f"acme:{IDS['notification_id']}".encode()
    [suppression] = event.suppressions()
    assert (suppression.tenant_id, suppression.channel, suppression.address) == ("acme", "email", "ada@example.com")
    assert ProviderEvent(event.ids, "email", "sendgrid", None).status_event(StatusReporter("t", "g")) is None


# --- SNS and SES ----------------------------------------------------------------------------------

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"


class KnownCertificate(sns.SnsVerifier):
    """The verifier with the certificate already fetched (the fetch itself is an integration test)."""

    def __init__(self, signer: SnsSigner, **options: Any) -> None:
        super().__init__(
            topic_arns=[TOPIC_ARN], hosts=r"sns\.[a-z0-9-]+\.amazonaws\.com", guard=OutboundGuard(), **options
        )
        self.key = signer.key.public_key()

    async def _certificate(self, url: str) -> rsa.RSAPublicKey:
        assert url == CERT_URL
        return self.key


@pytest.mark.parametrize("version", ["1", "2"])
async def test_an_sns_signature_verifies_for_both_versions(version: str) -> None:
    signer = SnsSigner()
    verifier = KnownCertificate(signer)
    message = signer.sign(sns_notification(ses_bounce(IDS, "ada@example.com"), CERT_URL), version)
    await verifier.verify(message)
    subscription = signer.sign(sns_subscription_confirmation("https://sns.us-east-1.amazonaws.com/?x", CERT_URL))
    await verifier.verify(subscription)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: {**m, "Message": m["Message"].replace("Permanent", "Transient")}, id="message-changed"),
        pytest.param(lambda m: {**m, "Signature": "AAAA" + m["Signature"][4:]}, id="signature-changed"),
        pytest.param(lambda m: {**m, "Signature": "%%%"}, id="signature-not-base64"),
        pytest.param(lambda m: {**m, "SignatureVersion": "3"}, id="unknown-version"),
        pytest.param(lambda m: {**m, "TopicArn": "arn:aws:sns:us-east-1:999999999999:theirs"}, id="other-topic"),
        pytest.param(lambda m: {**m, "SigningCertURL": "http://sns.us-east-1.amazonaws.com/c.pem"}, id="cert-http"),
        pytest.param(lambda m: {**m, "SigningCertURL": "https://sns.evil.com/c.pem"}, id="cert-other-host"),
        pytest.param(
            lambda m: {**m, "SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.com/c.pem"}, id="cert-suffix"
        ),
        pytest.param(lambda m: {**m, "Type": "Other"}, id="unknown-type"),
    ],
)
async def test_an_sns_message_that_does_not_verify_is_refused(change: Any) -> None:
    signer = SnsSigner()
    message = signer.sign(sns_notification(ses_bounce(IDS, "ada@example.com"), CERT_URL))
    with pytest.raises(sns.NotFromSns):
        await KnownCertificate(signer).verify(change(message))


async def test_a_message_signed_with_another_key_is_refused() -> None:
    message = SnsSigner().sign(sns_notification(ses_bounce(IDS, "ada@example.com"), CERT_URL))
    with pytest.raises(sns.NotFromSns):
        await KnownCertificate(SnsSigner()).verify(message)


def test_only_https_urls_on_sns_hosts_are_trusted() -> None:
    verifier = KnownCertificate(SnsSigner())
    assert verifier.trusted_url(CERT_URL) == CERT_URL
    for url in ["http://sns.us-east-1.amazonaws.com/x", "https://example.com/x", None, "https://sns.amazonaws.com/x"]:
        with pytest.raises(sns.NotFromSns):
            verifier.trusted_url(url)


def test_ses_bounces_complaints_and_deliveries_map_to_statuses_and_suppressions() -> None:
    [bounce] = ses.interpret(ses_bounce(IDS, "Ada@Example.com"))
    assert (bounce.status, bounce.reason, bounce.suppress, bounce.provider) == (
        status.FAILED,
        DeadLetterReason.INVALID_ADDRESS,
        ("Ada@Example.com",),
        "ses",
    )
    assert bounce.ids.delivery_id == IDS["delivery_id"]
    [complaint] = ses.interpret(ses_complaint(IDS, "ada@example.com"))
    assert (complaint.status, complaint.reason, complaint.suppress_reason) == (
        status.FAILED,
        RECIPIENT_COMPLAINED,
        COMPLAINED,
    )
    delivery = {"eventType": "Delivery", "delivery": {"smtpResponse": "250 ok"}, "mail": ses_bounce(IDS, "a")["mail"]}
    [delivered] = ses.interpret(delivery)
    assert (delivered.status, delivered.detail) == (status.DELIVERED, "250 ok")
    # SES retries a transient bounce itself; a mail without Herald's tags is not Herald's.
    assert ses.interpret(ses_bounce(IDS, "ada@example.com", bounce_type="Transient")) == []
    assert ses.interpret({**ses_bounce(IDS, "ada@example.com"), "mail": {"messageId": "x"}}) == []
    assert ses.interpret("not a notification") == []
