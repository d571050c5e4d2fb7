"""The email sender against a real SMTP server (the mail sink) and a real Redis, without Kafka.

The handler is called directly with hand-built ``Consumed`` messages; what it returns (status events,
delayed retries, DLQ verdicts) is decoded and checked.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from infra.local.mail_sink import MailSink
from services.sender_email.attachments import AttachmentFetcher, WithAttachments
from services.sender_email.smtp import SmtpProvider
from shared import status
from shared.config import HeraldSettings
from shared.delivery import Delivered, Failed, Outcome, Retry, RetryPolicies, RetryPolicy
from shared.errors import DeadLetterReason
from shared.kafka.records import KIND, TRACEPARENT, Consumed, Output, Produce, Reject
from shared.messages import DELAYED_MESSAGE, EMAIL_DELIVERY, STATUS_EVENT, Attachment, EmailDelivery, StatusEvent
from shared.providers.base import Provider
from shared.providers.breaker import BreakerPolicy
from shared.providers.chain import ProviderChain, ProviderLimits
from shared.providers.ratelimit import SendRateLimiter
from shared.redis import key
from shared.sender import DeliveryHandler, DeliveryLedger
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
from shared.topics import Topics
from tests.factories import ScriptedProvider, inline_attachment, send_message, smtp_settings
from tests.factories import email_delivery as delivery
from tests.outbound import METADATA_ADDRESS, PUBLIC_ADDRESS, LocalInternet, ScriptedResolver, guard
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration

TRACE = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
MAX_ATTEMPTS = 3
BASE_DELAY_S = 60.0


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[MailSink]:
    """The mail sink; offering PIPELINING unless a test parametrises it with ``BOTH_WAYS``."""
    with MailSink(pipelining=getattr(request, "param", True)) as running:
        yield running


# The provider's tests run against a server that offers PIPELINING (MAIL, RCPT and DATA in one write)
# and one that does not (each command waits for its reply): two code paths of the SMTP wire.
BOTH_WAYS = pytest.mark.parametrize("sink", [True, False], ids=["pipelining", "one-at-a-time"], indirect=True)


@pytest.fixture
async def provider(settings: HeraldSettings, sink: MailSink) -> AsyncIterator[SmtpProvider]:
    smtp = SmtpProvider(smtp_settings(settings, sink.port))
    try:
        yield smtp
    finally:
        smtp.close()


@pytest.fixture
def topics(settings: HeraldSettings) -> Topics:
    return Topics(settings.topic_prefix)


@pytest.fixture
def handler(
    provider: SmtpProvider, redis: Redis, settings: HeraldSettings, topics: Topics
) -> DeliveryHandler[EmailDelivery]:
    return delivery_handler(provider, redis, settings, topics)


def delivery_handler(
    provider: Provider[EmailDelivery], redis: Redis, settings: HeraldSettings, topics: Topics
) -> DeliveryHandler[EmailDelivery]:
    return DeliveryHandler(
        channel="email",
        provider=provider,
        contract=EMAIL_DELIVERY,
        ledger=DeliveryLedger(redis, key(settings, "delivered", "email")),
        reporter=StatusReporter(topics.status, "sender-email"),
        policies=RetryPolicies(
            RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay_s=BASE_DELAY_S, max_delay_s=600.0),
            {"otp": RetryPolicy(max_attempts=1)},
        ),
        delay_topic=topics.delay,
        concurrency=4,
    )


# --- helpers --------------------------------------------------------------------------------------


def consumed(value: EmailDelivery, topics: Topics, offset: int = 0) -> Consumed[EmailDelivery]:
    return send_message(value, EMAIL_DELIVERY, topics, "email", value["to"], offset, TRACE)


def status_events(outputs: list[Output], topics: Topics) -> list[StatusEvent]:
    return [STATUS_EVENT.decode(o.value) for o in outputs if isinstance(o, Produce) and o.topic == topics.status]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- SmtpProvider ---------------------------------------------------------------------------------


@BOTH_WAYS
async def test_provider_delivers(provider: SmtpProvider, sink: MailSink) -> None:
    item = delivery(subject="Grüße, Ada")
    outcome = await provider.send(item)
    assert outcome == Delivered("smtp")
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ada@example.com",)
    assert mail.mail_from == "noreply@herald.test"
    assert mail.header("To") == "ada@example.com"
    assert mail.subject == "Grüße, Ada"
    assert mail.header("Message-ID") == f"<{item['delivery_id']}@herald>"
    assert mail.text is not None
    assert "It is on its way." in mail.text


@BOTH_WAYS
async def test_an_internationalised_address_is_sent_with_smtputf8(provider: SmtpProvider, sink: MailSink) -> None:
    """RFC 6531: a non-ASCII local part travels in a MAIL FROM with SMTPUTF8 (it once raised
    UnicodeEncodeError inside the sender, a processing error that paused the service)."""
    outcome = await provider.send(delivery(to="jürgen@exämple.de"))
    assert outcome == Delivered("smtp")
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("jürgen@exämple.de",)
    assert mail.header("To") == "jürgen@exämple.de"


@pytest.mark.parametrize("pipelining", [True, False])
async def test_an_internationalised_address_is_refused_for_a_server_without_smtputf8(
    settings: HeraldSettings, pipelining: bool
) -> None:
    with MailSink(smtputf8=False, pipelining=pipelining) as ascii_only:
        smtp = SmtpProvider(smtp_settings(settings, ascii_only.port))
        try:
            refused = await smtp.send(delivery(to="jürgen@example.de"))
            # The connection is still good for the next mail.
            delivered = await smtp.send(delivery(to="ada@example.com"))
        finally:
            smtp.close()
        assert isinstance(refused, Failed)
        assert refused.reason == DeadLetterReason.INVALID_ADDRESS
        assert "SMTPUTF8" in refused.detail
        assert delivered == Delivered("smtp")
        assert [mail.rcpt_tos for mail in await ascii_only.wait_for(1)] == [("ada@example.com",)]


@BOTH_WAYS
async def test_provider_reuses_its_connection(provider: SmtpProvider, sink: MailSink) -> None:
    """Several sends in a row all arrive (the pooled connection is reused, not broken)."""
    for n in range(3):
        assert isinstance(await provider.send(delivery(subject=f"mail {n}")), Delivered)
    mails = await sink.wait_for(3)
    assert [m.subject for m in mails] == ["mail 0", "mail 1", "mail 2"]
    assert len({m.peer for m in mails}) == 1


@BOTH_WAYS
async def test_provider_temporary_refusal_is_retry(provider: SmtpProvider, sink: MailSink) -> None:
    sink.refuse_next(1)
    outcome = await provider.send(delivery())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_deferred"
    assert outcome.detail.startswith("451")
    assert sink.messages == []
    # The refusal was one-off: the next send goes through.
    assert isinstance(await provider.send(delivery()), Delivered)
    await sink.wait_for(1)


@BOTH_WAYS
async def test_provider_refused_recipient_is_failed(provider: SmtpProvider, sink: MailSink) -> None:
    sink.refuse_recipients("nobody@example.com")
    outcome = await provider.send(delivery(to="nobody@example.com"))
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_ADDRESS
    assert outcome.detail.startswith("550")
    assert sink.messages == []
    # The transaction was reset (RSET), so the same connection carries the next mail.
    assert await provider.send(delivery(to="ada@example.com", subject="after")) == Delivered("smtp")
    assert await provider.send(delivery(to="ada@example.com", subject="again")) == Delivered("smtp")
    mails = await sink.wait_for(2)
    assert [m.subject for m in mails] == ["after", "again"]
    assert len({m.peer for m in mails}) == 1


async def test_an_address_that_would_inject_smtp_parameters_is_failed_unsent(
    provider: SmtpProvider, sink: MailSink
) -> None:
    """Ingest validates addresses; the SMTP wire still refuses one that could close its angle brackets."""
    outcome = await provider.send(delivery(to="ada@example.com> NOTIFY=NEVER"))
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_ADDRESS
    assert await provider.send(delivery()) == Delivered("smtp")
    assert [m.rcpt_tos for m in await sink.wait_for(1)] == [("ada@example.com",)]


@BOTH_WAYS
async def test_an_8_mb_message_arrives_whole(provider: SmtpProvider, sink: MailSink) -> None:
    data = random.Random(14).randbytes(6 * 1024 * 1024)  # 8 MB of base64 on the wire
    outcome = await provider.send(delivery(attachments=[inline_attachment("big.bin", data)]))
    assert outcome == Delivered("smtp")
    [mail] = await sink.wait_for(1)
    assert len(mail.raw) > 8 * 1000 * 1000
    [part] = email.message_from_bytes(mail.raw, policy=email.policy.default).iter_attachments()
    assert part.get_payload(decode=True) == data


async def test_provider_unreachable_server_is_retry(settings: HeraldSettings) -> None:
    smtp = SmtpProvider(smtp_settings(settings, closed_port()))
    try:
        outcome = await smtp.send(delivery())
    finally:
        smtp.close()
    assert isinstance(outcome, Retry)
    assert "connect" in outcome.detail


# --- DeliveryHandler with SmtpProvider ------------------------------------------------------------


async def test_delivered_reports_sent(handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics) -> None:
    item = delivery()
    message = consumed(item, topics)
    outputs = await handler([message])
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ada@example.com",)
    assert len(outputs) == 1
    produce = outputs[0]
    assert isinstance(produce, Produce)
    assert produce.topic == topics.status
    assert produce.key == message.key
    assert dict(produce.headers)[TRACEPARENT] == TRACE
    [event] = status_events(outputs, topics)
    assert event["status"] == status.SENT
    assert event["notification_id"] == item["notification_id"]
    assert (event["channel"], event["attempt"], event["provider"]) == ("email", 1, "smtp")


async def test_already_delivered_is_not_sent_again(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    """A redelivery of a delivered message sends no second mail and reports the same ``sent`` event."""
    message = consumed(delivery(), topics)
    first = status_events(await handler([message]), topics)
    await sink.wait_for(1)
    again = status_events(await handler([message]), topics)
    assert len(sink.messages) == 1
    assert [e["status"] for e in again] == [status.SENT]
    assert again[0]["event_id"] == first[0]["event_id"]
    assert again[0]["detail"] == "already delivered"


async def test_ledger_entry_skips_the_send(
    handler: DeliveryHandler[EmailDelivery], redis: Redis, settings: HeraldSettings, sink: MailSink, topics: Topics
) -> None:
    """An id recorded in the ledger (by another replica, say) is skipped; the rest of the batch is sent."""
    done, fresh = delivery(to="done@example.com"), delivery(to="fresh@example.com")
    await DeliveryLedger(redis, key(settings, "delivered", "email")).record([done["delivery_id"]])
    outputs = await handler([consumed(done, topics, 0), consumed(fresh, topics, 1)])
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("fresh@example.com",)
    events = status_events(outputs, topics)
    assert [(e["notification_id"], e["status"]) for e in events] == [
        (done["notification_id"], status.SENT),
        (fresh["notification_id"], status.SENT),
    ]
    assert len(sink.messages) == 1


async def test_an_attempt_and_its_retry_in_one_batch_send_one_mail(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    """After a crash the re-read backlog can hold a delivery's first attempt (refused then) and its retry
    in one batch: the latest attempt is sent, once, and alone reports (the kill -9 fault test found it)."""
    first, other = delivery(), delivery(to="other@example.com")
    retry: EmailDelivery = {**first, "attempt": 2}
    outputs = await handler([consumed(first, topics, 0), consumed(other, topics, 1), consumed(retry, topics, 2)])
    await sink.wait_for(2)
    assert sorted(m.rcpt_tos for m in sink.messages) == [("ada@example.com",), ("other@example.com",)]
    events = status_events(outputs, topics)
    assert [(e["notification_id"], e["status"], e["attempt"]) for e in events] == [
        (other["notification_id"], status.SENT, 1),
        (first["notification_id"], status.SENT, 2),
    ]


class HeldBackProvider:
    """Delivers at once, except the mail to ``held`` which waits for ``release``."""

    name = "held"

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()

    def validate_config(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def send(self, delivery: EmailDelivery) -> Outcome:
        if delivery["to"] == self.held:
            await self.release.wait()
        return Delivered(self.name)


async def test_each_delivery_is_remembered_as_soon_as_it_is_accepted_not_at_the_end_of_the_batch(
    redis: Redis, settings: HeraldSettings, topics: Topics
) -> None:
    """A crash while one mail of a batch hangs must not send the batch's accepted mails again."""
    provider = HeldBackProvider(held="slow@example.com")
    handler = delivery_handler(provider, redis, settings, topics)
    ledger = DeliveryLedger(redis, key(settings, "delivered", "email"))
    fast, slow = delivery(to="fast@example.com"), delivery(to="slow@example.com")

    batch = asyncio.create_task(handler([consumed(fast, topics, 0), consumed(slow, topics, 1)]))
    try:
        deadline = time.monotonic() + 10
        while not await ledger.delivered([fast["delivery_id"]]):
            assert time.monotonic() < deadline, "the accepted mail was not remembered while the batch ran"
            await asyncio.sleep(0.01)
        assert not batch.done()
        assert await ledger.delivered([slow["delivery_id"]]) == set()
    finally:
        provider.release.set()
    await batch
    assert await ledger.delivered([slow["delivery_id"]]) == {slow["delivery_id"]}


async def test_a_message_type_with_one_attempt_gives_up_on_a_temporary_refusal(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    """The handler's policies give "otp" one attempt: a code that comes late is worthless."""
    sink.refuse_next(1)
    outputs = await handler([consumed(delivery(metadata={"type": "otp"}), topics)])
    assert not any(isinstance(o, Produce) and o.topic == topics.delay for o in outputs)
    [reject] = [o for o in outputs if isinstance(o, Reject)]
    assert reject.reason is DeadLetterReason.MAX_ATTEMPTS_EXCEEDED


async def test_temporary_refusal_is_delayed_for_a_retry(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    item = delivery()
    message = consumed(item, topics, offset=7)
    sink.refuse_next(1)
    before = datetime.now(UTC)
    outputs = await handler([message])
    after = datetime.now(UTC)
    assert sink.messages == []
    assert not any(isinstance(o, Reject) for o in outputs)
    [delayed] = [o for o in outputs if isinstance(o, Produce) and o.topic == topics.delay]
    assert delayed.key == message.key
    assert dict(delayed.headers)[KIND] == b"delayed"
    job = DELAYED_MESSAGE.decode(delayed.value)
    assert job["target_topic"] == topics.send("email")
    assert job["tenant_id"] == "acme"
    assert job["notification_id"] == item["notification_id"]
    assert job["key"] == message.key
    assert job["headers"][TRACEPARENT] == TRACE
    assert job["reason"] == "provider_deferred"
    # Attempt 2 waits between half the base delay and the base delay.
    assert before + timedelta(seconds=BASE_DELAY_S / 2) <= job["due_at"] <= after + timedelta(seconds=BASE_DELAY_S)
    again = EMAIL_DELIVERY.decode(job["payload"])
    assert again == {**item, "attempt": 2}
    [event] = status_events(outputs, topics)
    assert event["status"] == status.RETRYING
    assert event["attempt"] == 1
    assert event["reason"] == "provider_deferred"


async def test_retry_job_id_is_stable_per_attempt(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    """A redelivered failing message schedules the same job, so the retry store keeps one."""
    message = consumed(delivery(), topics)
    sink.refuse_next(2)
    first, again = await handler([message]), await handler([message])

    def job_id(outputs: list[Output]) -> str:
        [delayed] = [o for o in outputs if isinstance(o, Produce) and o.topic == topics.delay]
        return DELAYED_MESSAGE.decode(delayed.value)["job_id"]

    assert job_id(first) == job_id(again)
    later = consumed({**message.value, "attempt": 2}, topics)
    sink.refuse_next(1)
    assert job_id(await handler([later])) != job_id(first)


async def test_exhausted_attempts_go_to_the_dlq(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    item = delivery(attempt=MAX_ATTEMPTS)
    message = consumed(item, topics)
    sink.refuse_next(1)
    outputs = await handler([message])
    assert sink.messages == []
    [reject] = [o for o in outputs if isinstance(o, Reject)]
    assert reject.message is message
    assert reject.reason is DeadLetterReason.MAX_ATTEMPTS_EXCEEDED
    assert f"after {MAX_ATTEMPTS} attempts" in reject.detail
    assert (reject.tenant_id, reject.notification_id) == ("acme", item["notification_id"])
    assert not any(isinstance(o, Produce) and o.topic == topics.delay for o in outputs)
    [event] = status_events(outputs, topics)
    assert event["status"] == status.FAILED
    assert event["reason"] == DeadLetterReason.MAX_ATTEMPTS_EXCEEDED.value
    assert event["attempt"] == MAX_ATTEMPTS


async def test_permanent_refusal_goes_to_the_dlq(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    sink.refuse_recipients("@bounce.example")
    item = delivery(to="gone@bounce.example")
    message = consumed(item, topics)
    outputs = await handler([message])
    assert sink.messages == []
    [reject] = [o for o in outputs if isinstance(o, Reject)]
    assert reject.reason is DeadLetterReason.INVALID_ADDRESS
    assert reject.detail.startswith("550")
    assert not any(isinstance(o, Produce) and o.topic == topics.delay for o in outputs)
    [event] = status_events(outputs, topics)
    assert event["status"] == status.FAILED
    assert event["reason"] == DeadLetterReason.INVALID_ADDRESS.value


async def test_failed_sends_are_not_recorded_as_delivered(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    """After a refused attempt, the same delivery is sent for real when retried."""
    item = delivery()
    sink.refuse_next(1)
    await handler([consumed(item, topics)])
    outputs = await handler([consumed({**item, "attempt": 2}, topics)])
    [mail] = await sink.wait_for(1)
    assert mail.header("Message-ID") == f"<{item['delivery_id']}@herald>"
    assert [e["status"] for e in status_events(outputs, topics)] == [status.SENT]


async def test_mixed_batch_keeps_message_order(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    sink.refuse_recipients("bad@example.com")
    good, bad = delivery(to="good@example.com"), delivery(to="bad@example.com")
    outputs = await handler([consumed(good, topics, 0), consumed(bad, topics, 1)])
    await sink.wait_for(1)
    assert [(e["notification_id"], e["status"]) for e in status_events(outputs, topics)] == [
        (good["notification_id"], status.SENT),
        (bad["notification_id"], status.FAILED),
    ]


# --- unsendable messages stay confined to themselves ----------------------------------------------

INJECTED_SUBJECT = "Hello Ada\r\nBcc: evil@example.com"


async def test_provider_subject_with_line_break_is_failed(provider: SmtpProvider, sink: MailSink) -> None:
    outcome = await provider.send(delivery(subject=INJECTED_SUBJECT))
    assert isinstance(outcome, Failed)
    assert sink.messages == []


async def test_one_unsendable_message_does_not_resend_its_batch(
    handler: DeliveryHandler[EmailDelivery], sink: MailSink, topics: Topics
) -> None:
    good, bad = delivery(to="good@example.com"), delivery(to="bad@example.com", subject=INJECTED_SUBJECT)
    outputs = await handler([consumed(good, topics, 0), consumed(bad, topics, 1)])
    await sink.wait_for(1)
    assert [(e["notification_id"], e["status"]) for e in status_events(outputs, topics)] == [
        (good["notification_id"], status.SENT),
        (bad["notification_id"], status.FAILED),
    ]
    # A redelivery of the good one is recognised as already delivered.
    await handler([consumed(good, topics, 0)])
    assert len(sink.messages) == 1


async def test_a_rate_limiter_whose_redis_is_away_delays_the_delivery_instead_of_failing_it(
    provider: SmtpProvider, redis: Redis, settings: HeraldSettings, sink: MailSink, topics: Topics
) -> None:
    """The send-rate limiter's Redis is a dependency: while it is away a delivery waits for a retry, unsent."""
    away = Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1)
    limited = ProviderChain(
        [provider],
        breaker_policy=BreakerPolicy(),
        limits={provider.name: ProviderLimits(rate_per_s=100, burst=10)},
        limiter=SendRateLimiter(away, key(settings, "send-rate")),
    )
    handler = delivery_handler(limited, redis, settings, topics)
    try:
        outputs = await handler([consumed(delivery(), topics)])
    finally:
        await away.aclose()
    assert [e["status"] for e in status_events(outputs, topics)] == [status.RETRYING]
    assert [o.topic for o in outputs if isinstance(o, Produce)] == [topics.delay, topics.status]
    assert not [o for o in outputs if isinstance(o, Reject)]
    assert sink.messages == []


# --- attachments: inline, and fetched by URL when sending -------------------------------------------

CSV = b"order,total\n42,9.99\n"


@pytest.fixture(scope="module")
def file_server() -> Iterator[ScriptedServer]:
    with ScriptedServer().serving() as server:
        yield server


@pytest.fixture
def files(file_server: ScriptedServer) -> ScriptedServer:
    """A local file server: 404 unless a test scripts a path."""
    file_server.reply = Reply(404, body=b"no such file")
    file_server.scripted.clear()
    file_server.requests.clear()
    return file_server


def fetcher(**overrides: Any) -> AttachmentFetcher:
    # The file server is on loopback: the SSRF guard has to let it through, except where a test checks it.
    options: dict[str, Any] = {
        "max_bytes": 1024 * 1024,
        "timeout_s": 5.0,
        "guard": OutboundGuard(allow_private_networks=True),
    }
    return AttachmentFetcher(**(options | overrides))


def chain(*providers: Provider[EmailDelivery]) -> ProviderChain[EmailDelivery]:
    return ProviderChain(list(providers), breaker_policy=BreakerPolicy(), limits={}, limiter=None)


def url_file(files: ScriptedServer, path: str, filename: str = "report.csv") -> Attachment:
    return {"filename": filename, "content_type": "text/csv", "url": f"{files.url}{path}", "content_base64": None}


@pytest.fixture
async def attachment_handler(
    provider: SmtpProvider, redis: Redis, settings: HeraldSettings, topics: Topics
) -> AsyncIterator[DeliveryHandler[EmailDelivery]]:
    """The email sender as main.py wires it: attachments fetched in front of the chain, SMTP behind it."""
    sending = WithAttachments(chain(provider), fetcher())
    try:
        yield delivery_handler(sending, redis, settings, topics)
    finally:
        await sending.close()


async def test_inline_and_url_attachments_arrive_in_the_mail(
    attachment_handler: DeliveryHandler[EmailDelivery], files: ScriptedServer, sink: MailSink, topics: Topics
) -> None:
    files.script("/files/report.csv", Reply(200, {"Content-Type": "text/csv"}, CSV))
    pdf = b"%PDF-1.7 " + bytes(range(256))
    item = delivery(
        attachments=[
            inline_attachment("Übersicht März.pdf", pdf, "application/pdf"),
            url_file(files, "/files/report.csv"),
        ]
    )
    outputs = await attachment_handler([consumed(item, topics)])
    assert [e["status"] for e in status_events(outputs, topics)] == [status.SENT]
    [mail] = await sink.wait_for(1)
    message = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/mixed"
    assert mail.text is not None
    assert "It is on its way." in mail.text
    assert mail.html is not None
    assert "<p>It is on its way.</p>" in mail.html
    assert [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    ] == [("Übersicht März.pdf", "application/pdf", pdf), ("report.csv", "text/csv", CSV)]
    [fetched] = files.requests
    assert (fetched.method, fetched.path) == ("GET", "/files/report.csv")


async def test_a_failover_does_not_fetch_again(files: ScriptedServer, provider: SmtpProvider, sink: MailSink) -> None:
    files.script("/files/report.csv", Reply(200, body=CSV))
    down = ScriptedProvider("down", [Retry("down", "unavailable")])
    sending = WithAttachments(chain(down, provider), fetcher())
    try:
        assert await sending.send(delivery(attachments=[url_file(files, "/files/report.csv")])) == Delivered("smtp")
    finally:
        await sending.close()
    assert down.calls == 1
    assert len(files.requests) == 1
    [mail] = await sink.wait_for(1)
    [part] = email.message_from_bytes(mail.raw, policy=email.policy.default).iter_attachments()
    assert part.get_payload(decode=True) == CSV


@pytest.mark.parametrize("status_code", [404, 410, 403])
async def test_an_attachment_that_is_gone_fails_the_notification(
    attachment_handler: DeliveryHandler[EmailDelivery],
    files: ScriptedServer,
    sink: MailSink,
    topics: Topics,
    status_code: int,
) -> None:
    files.script("/files/report.csv", Reply(status_code))
    message = consumed(delivery(attachments=[url_file(files, "/files/report.csv")]), topics)
    outputs = await attachment_handler([message])
    assert sink.messages == []
    [reject] = [o for o in outputs if isinstance(o, Reject)]
    assert reject.reason is DeadLetterReason.PERMANENT_FAILURE
    assert reject.detail.startswith(f"attachment 'report.csv' unavailable: {status_code}")
    [event] = status_events(outputs, topics)
    assert (event["status"], event["provider"]) == (status.FAILED, "attachments")
    assert event["detail"] == reject.detail


@pytest.mark.parametrize("status_code", [503, 429])
async def test_an_attachment_server_in_trouble_is_retried_later(
    attachment_handler: DeliveryHandler[EmailDelivery],
    files: ScriptedServer,
    sink: MailSink,
    topics: Topics,
    status_code: int,
) -> None:
    files.script("/files/report.csv", Reply(status_code))
    item = delivery(attachments=[url_file(files, "/files/report.csv")])
    outputs = await attachment_handler([consumed(item, topics)])
    assert sink.messages == []
    assert not any(isinstance(o, Reject) for o in outputs)
    [event] = status_events(outputs, topics)
    assert (event["status"], event["reason"]) == (status.RETRYING, "attachment_unavailable")
    [delayed] = [o for o in outputs if isinstance(o, Produce) and o.topic == topics.delay]
    # The retry carries the URL, not the file: the record stays small and the next attempt fetches anew.
    again = EMAIL_DELIVERY.decode(DELAYED_MESSAGE.decode(delayed.value)["payload"])
    assert again["attachments"] == item["attachments"]


async def test_a_failed_fetch_never_reaches_a_provider(files: ScriptedServer) -> None:
    """An attachment server's trouble is not a provider's: no provider is called, so no breaker counts it."""
    behind = ScriptedProvider("smtp", [Delivered("smtp")])
    sending = WithAttachments(chain(behind), fetcher())
    try:
        for status_code in (503, 404):
            files.script("/files/report.csv", Reply(status_code))
            outcome = await sending.send(delivery(attachments=[url_file(files, "/files/report.csv")]))
            assert outcome.provider == "attachments"
    finally:
        await sending.close()
    assert behind.calls == 0


async def test_a_slow_attachment_server_is_retried(files: ScriptedServer) -> None:
    files.script("/files/report.csv", Reply(200, body=CSV, delay_s=2.0))
    slow = fetcher(timeout_s=0.3)
    try:
        outcome = await slow.inline(delivery(attachments=[url_file(files, "/files/report.csv")]))
    finally:
        await slow.aclose()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "attachment_unavailable"


async def test_url_attachments_past_the_size_limit_fail(files: ScriptedServer) -> None:
    """Each file fits alone; together they pass the limit, and the one that does is named."""
    files.script("/files/a.csv", Reply(200, body=b"a" * 600))
    files.script("/files/b.csv", Reply(200, body=b"b" * 600))
    small = fetcher(max_bytes=1000)
    try:
        item = delivery(
            attachments=[url_file(files, "/files/a.csv", "a.csv"), url_file(files, "/files/b.csv", "b.csv")]
        )
        outcome = await small.inline(item)
    finally:
        await small.aclose()
    assert isinstance(outcome, Failed)
    assert "'b.csv'" in outcome.detail
    assert "HERALD_ATTACHMENT_MAX_BYTES" in outcome.detail


async def inline_guarded(guard: OutboundGuard, url: str) -> EmailDelivery | Retry | Failed:
    """A mail with one attachment at ``url``, made inline by a fetcher behind ``guard``."""
    attachment: Attachment = {"filename": "report.csv", "content_type": "text/csv", "url": url, "content_base64": None}
    guarded = fetcher(guard=guard)
    try:
        return await guarded.inline(delivery(attachments=[attachment]))
    finally:
        await guarded.aclose()


async def test_an_attachment_on_a_private_address_is_refused_unfetched(files: ScriptedServer) -> None:
    internet = LocalInternet()
    outcome = await inline_guarded(guard(internet=internet), f"{files.url}/files/report.csv")
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "non-public address 127.0.0.1 (loopback)" in outcome.detail
    assert (internet.attempts, files.requests) == ([], [])


async def test_an_attachment_at_the_cloud_metadata_address_is_refused_before_connecting() -> None:
    internet = LocalInternet()
    url = f"http://{METADATA_ADDRESS}/latest/meta-data/iam/security-credentials/"
    outcome = await inline_guarded(guard(internet=internet), url)
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "(link-local)" in outcome.detail
    assert internet.attempts == []


@pytest.mark.parametrize("target", ["loopback", "metadata"])
async def test_a_redirect_to_a_private_address_is_refused_and_that_address_never_reached(
    files: ScriptedServer, target: str
) -> None:
    """The file server is on the internet (a public address routed to it); it redirects into Herald's network."""
    with ScriptedServer().serving() as internal:
        internal.reply = Reply(200, body=b"internal secret")
        location = {
            "loopback": f"http://127.0.0.1:{internal.server_address[1]}/secret",
            "metadata": f"http://{METADATA_ADDRESS}/latest/meta-data/",
        }[target]
        files.script("/files/report.csv", Reply(302, {"Location": location}))
        internet = LocalInternet({PUBLIC_ADDRESS: files.server_address[1]})
        resolver = ScriptedResolver({"files.example.test": [[PUBLIC_ADDRESS]]})
        outcome = await inline_guarded(guard(resolver, internet), "http://files.example.test/files/report.csv")
        assert internal.requests == []
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "attachment 'report.csv' refused" in outcome.detail
    assert internet.attempts == [(PUBLIC_ADDRESS, 80)]
    assert [request.path for request in files.requests] == ["/files/report.csv"]


async def test_a_rebinding_name_is_fetched_from_the_address_it_was_checked_at(files: ScriptedServer) -> None:
    """The name resolves to a public address, then to 127.0.0.1: the file comes from the public one, and
    the local listener on the URL's port is never asked (so its answer is never mailed)."""
    files.script("/files/report.csv", Reply(200, body=CSV))
    with ScriptedServer().serving() as internal:
        internal.reply = Reply(200, body=b"internal secret")
        port = internal.server_address[1]
        internet = LocalInternet({PUBLIC_ADDRESS: files.server_address[1]})
        resolver = ScriptedResolver({"files.rebind.test": [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
        fetched = await inline_guarded(guard(resolver, internet), f"http://files.rebind.test:{port}/files/report.csv")
        assert internal.requests == []
    assert not isinstance(fetched, Retry | Failed)
    [inlined] = fetched["attachments"]
    assert base64.b64decode(inlined["content_base64"] or "") == CSV
    assert internet.attempts == [(PUBLIC_ADDRESS, port)]
    assert resolver.lookups == ["files.rebind.test"]


async def test_redirects_are_followed_within_reason(files: ScriptedServer) -> None:
    files.script("/old.csv", Reply(302, {"Location": "/files/report.csv"}))
    files.script("/files/report.csv", Reply(200, body=CSV))
    files.script("/elsewhere", Reply(301, {"Location": "ftp://files.example.com/report.csv"}))
    files.reply = Reply(302, {"Location": "/loop"})
    follower = fetcher()
    try:
        moved = await follower.inline(delivery(attachments=[url_file(files, "/old.csv")]))
        to_ftp = await follower.inline(delivery(attachments=[url_file(files, "/elsewhere")]))
        looping = await follower.inline(delivery(attachments=[url_file(files, "/loop")]))
    finally:
        await follower.aclose()
    assert not isinstance(moved, Retry | Failed)
    [attachment] = moved["attachments"]
    assert (attachment["url"], base64.b64decode(attachment["content_base64"] or "")) == (None, CSV)
    assert isinstance(to_ftp, Failed)
    assert "non-http(s)" in to_ftp.detail
    assert isinstance(looping, Failed)
    assert "redirects" in looping.detail
