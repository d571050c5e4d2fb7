"""The SES provider against moto's SES, driven by boto3 over real HTTP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from infra.local.processes import free_port
from infra.standins.aws import MotoServer
from services.sender_email.ses import SesProvider, classify
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.providers.base import ProviderConfigError
from tests.factories import REGION, SENDER, inline_attachment, ses_config
from tests.factories import email_delivery as delivery

pytestmark = pytest.mark.integration


@pytest.fixture
def provider(aws: MotoServer) -> Iterator[SesProvider]:
    ses = SesProvider(ses_config(aws.url))
    try:
        yield ses
    finally:
        ses.close()


def verify_identity(aws: MotoServer, identity: str) -> None:
    client = boto3.client(
        "sesv2",
        endpoint_url=aws.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_email_identity(EmailIdentity=identity)


def sent_messages(aws: MotoServer) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = aws.model_data().get("ses", {}).get("RawMessage", [])
    return messages


async def test_a_verified_sender_delivers_the_mime_message(aws: MotoServer, provider: SesProvider) -> None:
    verify_identity(aws, "noreply@herald.test")
    mail = delivery(to="ada@example.com", subject="Your order shipped")

    outcome = await provider.send(mail)

    assert isinstance(outcome, Delivered)
    [sent] = sent_messages(aws)
    assert sent["id"] == outcome.detail
    assert sent["source"] == SENDER
    assert "ada@example.com" in sent["destinations"]
    raw = sent["raw_data"]
    assert "Subject: Your order shipped\r\n" in raw
    assert "To: ada@example.com\r\n" in raw
    assert f"Message-ID: <{mail['delivery_id']}@herald>" in raw


async def test_a_mail_with_an_attachment_goes_as_raw_mime(aws: MotoServer, provider: SesProvider) -> None:
    verify_identity(aws, "noreply@herald.test")
    pdf = b"%PDF-1.7 " + bytes(range(256))
    invoice = inline_attachment("Rechnung März.pdf", pdf, "application/pdf")

    outcome = await provider.send(delivery(attachments=[invoice]))

    assert isinstance(outcome, Delivered)
    [sent] = sent_messages(aws)
    message = email.message_from_string(sent["raw_data"], policy=email.policy.default)
    assert message.get_content_type() == "multipart/mixed"
    [part] = message.iter_attachments()
    assert (part.get_filename(), part.get_content_type()) == ("Rechnung März.pdf", "application/pdf")
    assert part.get_payload(decode=True) == pdf


async def test_a_verified_domain_covers_its_addresses(aws: MotoServer, provider: SesProvider) -> None:
    verify_identity(aws, "herald.test")
    assert isinstance(await provider.send(delivery()), Delivered)


async def test_concurrent_sends_all_arrive(aws: MotoServer, provider: SesProvider) -> None:
    verify_identity(aws, "noreply@herald.test")
    outcomes = await asyncio.gather(*(provider.send(delivery(to=f"user{i}@example.com")) for i in range(12)))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert len(sent_messages(aws)) == 12


async def test_an_unverified_sender_is_rejected_for_good(aws: MotoServer, provider: SesProvider) -> None:
    outcome = await provider.send(delivery())

    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.PROVIDER_REJECTED
    assert outcome.detail.startswith("MessageRejected: ")
    assert "noreply@herald.test" in outcome.detail
    assert sent_messages(aws) == []


async def test_an_unbuildable_message_is_an_invalid_payload(provider: SesProvider) -> None:
    outcome = await provider.send(delivery(subject="Hi\r\nBcc: everyone@example.com"))

    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_PAYLOAD


async def test_an_unreachable_endpoint_is_retried() -> None:
    ses = SesProvider(ses_config(f"http://127.0.0.1:{free_port()}"))
    try:
        outcome = await ses.send(delivery())
        assert isinstance(outcome, Retry)
        assert outcome.reason == "provider_unavailable"
        assert outcome.detail.startswith("EndpointConnectionError: ")
        with pytest.raises(EndpointConnectionError):
            await ses.health()
    finally:
        ses.close()


async def test_a_silent_endpoint_times_out_once_and_is_retried() -> None:
    # The kernel completes the connection into the backlog; nothing ever answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        ses = SesProvider(ses_config(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5))
        try:
            started = time.monotonic()
            outcome = await ses.send(delivery())
            elapsed = time.monotonic() - started
        finally:
            ses.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert outcome.detail.startswith("ReadTimeoutError: ")
    # One attempt only: botocore's retries are off, Herald retries itself.
    assert elapsed < 1.5


async def test_health_passes_when_ses_answers(provider: SesProvider) -> None:
    await provider.health()


def client_error(code: str, status: int) -> ClientError:
    # Only the fields classify() reads; botocore's stubs would want every response field.
    response: Any = {"Error": {"Code": code, "Message": "why"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "SendEmail")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("Throttling", 400), Retry("ses", "Throttling: why", reason="rate_limited")),
        (client_error("TooManyRequestsException", 429), Retry("ses", "TooManyRequestsException: why", "rate_limited")),
        (client_error("LimitExceededException", 400), Retry("ses", "LimitExceededException: why", "rate_limited")),
        (client_error("ServiceUnavailable", 503), Retry("ses", "ServiceUnavailable: why")),
        (client_error("InternalFailure", 500), Retry("ses", "InternalFailure: why")),
        (client_error("MessageRejected", 400), Failed("ses", "MessageRejected: why")),
        (
            client_error("AccountSuspendedException", 400),
            Retry("ses", "AccountSuspendedException: why", "provider_account"),
        ),
        (client_error("BadRequestException", 400), Failed("ses", "BadRequestException: why")),
        (client_error("NotFoundException", 404), Retry("ses", "NotFoundException: why", "provider_account")),
    ],
)
def test_classify_aws_errors(error: ClientError, expected: Retry | Failed) -> None:
    assert classify(error) == expected


@pytest.mark.parametrize(
    "error", [ConnectTimeoutError(endpoint_url="http://ses"), ReadTimeoutError(endpoint_url="http://ses")]
)
def test_timeouts_are_retried(error: ConnectTimeoutError | ReadTimeoutError) -> None:
    outcome = classify(error)
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"region": ""}, "HERALD_SES_REGION"),
        ({"sender": "not an address"}, "HERALD_SES_FROM"),
        ({"sender": "a@b.test\r\nBcc: c@d.test"}, "HERALD_SES_FROM"),
        ({"secret_access_key": None}, "HERALD_SES_SECRET_ACCESS_KEY"),
        ({"endpoint_url": "localhost:4566"}, "HERALD_SES_ENDPOINT_URL"),
        ({"timeout_s": 0.0}, "HERALD_SES_TIMEOUT_S"),
        ({"max_concurrency": 0}, "HERALD_SES_MAX_CONCURRENCY"),
    ],
)
def test_a_broken_configuration_names_its_variable(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ProviderConfigError, match=variable):
        SesProvider(ses_config(**{"endpoint_url": "http://127.0.0.1:1", **overrides}))
