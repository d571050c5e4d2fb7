"""The SNS SMS provider against moto's SNS, driven by boto3 over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.local.processes import free_port
from infra.standins.aws import MotoServer
from services.sender_sms.sns import SnsSmsProvider, classify
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.messages import SmsDelivery
from shared.providers.base import ProviderConfigError
from tests.factories import sms_delivery, sns_config

pytestmark = pytest.mark.integration

TO = "+14155552671"


def sms(**overrides: Any) -> SmsDelivery:
    return sms_delivery(**{"to": TO, **overrides})


@pytest.fixture
def provider(aws: MotoServer) -> Iterator[SnsSmsProvider]:
    sns = SnsSmsProvider(sns_config(aws.url, sender_id="Herald"))
    try:
        yield sns
    finally:
        sns.close()


def sent_sms(aws: MotoServer) -> list[dict[str, Any]]:
    # moto keeps each SMS published to a phone number as an ``SMS`` model of the sns backend.
    messages: list[dict[str, Any]] = aws.model_data().get("sns", {}).get("SMS", [])
    return messages


async def test_publish_is_delivered_and_recorded(aws: MotoServer, provider: SnsSmsProvider) -> None:
    body = "Ünïcode and € are fine: 😀"
    outcome = await provider.send(sms(body=body))
    assert isinstance(outcome, Delivered)
    assert outcome.provider == "sns"
    assert sent_sms(aws) == [{"message_id": outcome.detail, "phone_number": TO, "message": body}]


async def test_a_number_sns_refuses_is_failed(aws: MotoServer, provider: SnsSmsProvider) -> None:
    outcome = await provider.send(sms(to="+0 415 555"))
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_ADDRESS
    assert "InvalidParameter" in outcome.detail
    assert sent_sms(aws) == []


async def test_unreachable_endpoint_is_retry() -> None:
    sns = SnsSmsProvider(sns_config(f"http://127.0.0.1:{free_port('127.0.0.1')}", timeout_s=1.0))
    try:
        outcome = await sns.send(sms())
        assert isinstance(outcome, Retry)
        assert outcome.reason == "provider_unavailable"
        with pytest.raises(Exception, match="Could not connect"):
            await sns.health()
    finally:
        sns.close()


async def test_an_endpoint_that_never_answers_is_retry_within_the_timeout() -> None:
    # Listening without ever accepting: the connection opens, no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        sns = SnsSmsProvider(sns_config(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5))
        try:
            outcome = await sns.send(sms())
        finally:
            sns.close()
    assert isinstance(outcome, Retry)
    assert "timeout" in outcome.detail.lower()


async def test_health_passes(provider: SnsSmsProvider) -> None:
    await provider.health()


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "from SNS"},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "HostId": "",
                "RequestId": "test",
                "RetryAttempts": 0,
            },
        },
        "Publish",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "reason"),
    [
        ("Throttled", 400, Retry, "rate_limited"),
        ("ThrottlingException", 400, Retry, "rate_limited"),
        ("KMSThrottling", 400, Retry, "rate_limited"),
        ("InternalError", 500, Retry, "provider_unavailable"),
        ("ServiceUnavailable", 503, Retry, "provider_unavailable"),
        ("AuthorizationError", 403, Retry, "provider_unavailable"),
        ("InvalidParameter", 400, Failed, DeadLetterReason.PROVIDER_REJECTED),
        ("OptedOut", 400, Failed, DeadLetterReason.RECIPIENT_OPTED_OUT),
        ("ParameterValueInvalid", 400, Failed, DeadLetterReason.PROVIDER_REJECTED),
    ],
)
def test_classification(code: str, status: int, kind: type[Retry | Failed], reason: str) -> None:
    outcome = classify(client_error(code, status))
    assert isinstance(outcome, kind)
    assert outcome.reason == reason
    assert code in outcome.detail


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"sender_id": "Herald-Notify"}, "HERALD_SNS_SENDER_ID"),
        ({"sender_id": "123456"}, "HERALD_SNS_SENDER_ID"),
        ({"endpoint_url": "localhost:4566"}, "HERALD_SNS_ENDPOINT_URL"),
        ({"secret_access_key": None}, "HERALD_SNS_ACCESS_KEY_ID"),
        ({"region": ""}, "HERALD_SNS_REGION"),
    ],
)
def test_bad_config_is_refused_naming_the_variable(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ProviderConfigError, match=variable):
        SnsSmsProvider(replace(sns_config("http://127.0.0.1:1"), **overrides))
