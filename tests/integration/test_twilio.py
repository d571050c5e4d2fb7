"""The Twilio SMS provider, driven by the official SDK, against Twilio's own API contract.

Prism serves Twilio's OpenAPI description and refuses (422) any request that breaks it, so a
Delivered here means the SDK's request is one Twilio accepts. The description defines no error
answers (``Prefer: code=400`` gets Prism's own 404), so error classification runs against a small
local server answering in Twilio's error shape (``{"code", "message", "status"}``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from infra.local.processes import free_port, wait_until
from infra.standins.prism import PrismMock
from services.sender_sms.twilio_sms import MAX_BODY_CHARS, TwilioConfig, TwilioSmsProvider
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.messages import SmsDelivery
from shared.providers.base import ProviderConfigError
from tests.factories import sms_delivery

# On one xdist worker: Prism takes about 2 s of CPU to start, once per worker that runs one of these tests.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prism")]

SPEC = Path(__file__).resolve().parents[2] / "infra" / "standins" / "contracts" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TO = "+14155552671"


def twilio_config(base_url: str, **overrides: Any) -> TwilioConfig:
    return replace(
        TwilioConfig(
            account_sid=ACCOUNT_SID,
            auth_token="test-token",
            from_number="+14155550100",
            status_callback_url="https://herald.example.com/callbacks/twilio",
            base_url=base_url,
            timeout_s=5.0,
            max_connections=4,
        ),
        **overrides,
    )


def sms(**overrides: Any) -> SmsDelivery:
    return sms_delivery(**{"to": TO, **overrides})


# --- against Twilio's contract (Prism) ------------------------------------------------------------


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismMock]:
    """Prism serving the API description (it keeps no state between requests), once per xdist worker."""
    with PrismMock(SPEC) as mock:
        yield mock


@pytest.fixture
async def provider(prism: PrismMock) -> AsyncIterator[TwilioSmsProvider]:
    twilio = TwilioSmsProvider(twilio_config(prism.url))
    twilio.validate_config()
    try:
        yield twilio
    finally:
        await twilio.close()


async def test_a_valid_message_passes_the_contract_and_is_delivered(provider: TwilioSmsProvider) -> None:
    outcome = await provider.send(sms())
    assert isinstance(outcome, Delivered)
    assert outcome.provider == "twilio"
    assert outcome.detail is not None
    assert outcome.detail.startswith("SM")  # the message SID from the contract's example


async def test_a_messaging_service_sender_passes_the_contract(prism: PrismMock) -> None:
    twilio = TwilioSmsProvider(twilio_config(prism.url, from_number=None, messaging_service_sid="MG" + "ab" * 16))
    twilio.validate_config()
    try:
        assert isinstance(await twilio.send(sms()), Delivered)
    finally:
        await twilio.close()


async def test_long_bodies_go_as_one_message_up_to_the_limit(provider: TwilioSmsProvider) -> None:
    assert isinstance(await provider.send(sms(body="a" * MAX_BODY_CHARS)), Delivered)
    outcome = await provider.send(sms(body="a" * (MAX_BODY_CHARS + 1)))
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "1601 characters" in outcome.detail


async def test_the_sdk_missing_the_required_to_is_refused_by_the_contract(prism: PrismMock) -> None:
    # The SDK leaves None parameters out, so this request has no To, which the contract requires.
    http_client = AsyncTwilioHttpClient()
    client = Client(ACCOUNT_SID, "test-token", http_client=http_client, environment={})
    client.api.base_url = prism.url
    try:
        with pytest.raises(TwilioRestException) as caught:
            await client.api.v2010.accounts(ACCOUNT_SID).messages.create_async(to=None, body="hi", from_="+14155550100")
    finally:
        await http_client.close()
    assert caught.value.status == 422
    # The same request without the SDK, to see Prism's reason.
    async with httpx.AsyncClient() as raw:
        answer = await raw.post(
            f"{prism.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            data={"Body": "hi", "From": "+14155550100"},
            auth=(ACCOUNT_SID, "test-token"),
        )
    assert answer.status_code == 422
    assert "must have required property 'To'" in answer.text


async def test_a_request_breaking_the_contract_surfaces_as_failed(prism: PrismMock) -> None:
    config = twilio_config(prism.url, from_number=None, messaging_service_sid="MG-not-a-service-sid")
    twilio = TwilioSmsProvider(config)
    with pytest.raises(ProviderConfigError, match="HERALD_TWILIO_MESSAGING_SERVICE_SID"):
        twilio.validate_config()
    # Sent anyway, the SDK passes it through and Prism refuses it: a rejection, never retried.
    try:
        outcome = await twilio.send(sms())
    finally:
        await twilio.close()
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.PROVIDER_REJECTED
    assert "HTTP 422" in outcome.detail


async def test_health_fetches_the_account(provider: TwilioSmsProvider) -> None:
    await provider.health()


# --- error classification (a local server in Twilio's error shape) --------------------------------

# The answer the fake Twilio gives for each recipient: (HTTP status, body).
ERRORS: dict[str, tuple[int, dict[str, Any] | str]] = {
    "+15005550001": (400, {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400}),
    "+15005550002": (400, {"code": 21614, "message": "'To' number is not a valid mobile number", "status": 400}),
    "+15005550003": (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}),
    "+15005550004": (400, {"code": 21408, "message": "Permission to send an SMS has not been enabled", "status": 400}),
    "+15005550005": (429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
    "+15005550006": (400, {"code": 21611, "message": "This 'From' number has exceeded the queue", "status": 400}),
    "+15005550007": (500, {"code": 20500, "message": "Internal Server Error", "status": 500}),
    "+15005550008": (503, "<html>Service Unavailable</html>"),
    "+15005550009": (401, {"code": 20003, "message": "Authenticate", "status": 401}),
    "+15005550010": (
        400,
        {
            "type": "https://www.twilio.com/docs/errors/21211",
            "title": "Invalid 'To' Phone Number",
            "status": 400,
            "code": 21211,
            "detail": "The 'To' number is not a valid phone number.",
        },
    ),
}


async def _messages(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())
    status, body = ERRORS[form["To"][0]]
    if isinstance(body, str):
        return PlainTextResponse(body, status_code=status)
    return JSONResponse(body, status_code=status)


async def _account(request: Request) -> Response:
    return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)


@pytest.fixture(scope="module")
def fake_twilio() -> Iterator[str]:
    """A local HTTP server answering Twilio's Messages and Account routes with errors only."""
    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", _messages, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}.json", _account, methods=["GET"]),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="fake-twilio", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10.0, what="the fake Twilio listens")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)


@pytest.fixture
async def erring_provider(fake_twilio: str) -> AsyncIterator[TwilioSmsProvider]:
    twilio = TwilioSmsProvider(twilio_config(fake_twilio))
    try:
        yield twilio
    finally:
        await twilio.close()


@pytest.mark.parametrize(
    ("to", "kind", "reason", "code"),
    [
        ("+15005550001", Failed, DeadLetterReason.INVALID_ADDRESS, "21211"),
        ("+15005550002", Failed, DeadLetterReason.INVALID_ADDRESS, "21614"),
        ("+15005550003", Failed, DeadLetterReason.RECIPIENT_OPTED_OUT, "21610"),
        ("+15005550004", Failed, DeadLetterReason.PROVIDER_REJECTED, "21408"),
        ("+15005550005", Retry, "rate_limited", "20429"),
        ("+15005550006", Retry, "rate_limited", "21611"),
        ("+15005550007", Retry, "provider_unavailable", "20500"),
        ("+15005550008", Retry, "provider_unavailable", "503"),
        ("+15005550009", Retry, "provider_unavailable", "20003"),
        ("+15005550010", Failed, DeadLetterReason.INVALID_ADDRESS, "21211"),
    ],
)
async def test_twilio_errors_are_classified(
    erring_provider: TwilioSmsProvider, to: str, kind: type[Retry | Failed], reason: str, code: str
) -> None:
    outcome = await erring_provider.send(sms(to=to))
    assert isinstance(outcome, kind)
    assert outcome.reason == reason
    assert f"Twilio error {code}" in outcome.detail
    assert f"HTTP {ERRORS[to][0]}," in outcome.detail


async def test_health_raises_when_twilio_refuses_the_account(erring_provider: TwilioSmsProvider) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await erring_provider.health()
    assert caught.value.code == 20003


async def test_unreachable_twilio_is_retry() -> None:
    twilio = TwilioSmsProvider(twilio_config(f"http://127.0.0.1:{free_port()}"))
    try:
        outcome = await twilio.send(sms())
    finally:
        await twilio.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert "cannot reach Twilio" in outcome.detail


async def test_a_twilio_that_never_answers_is_retry_within_the_timeout() -> None:
    # Listening without ever accepting: the connection opens, no answer ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        twilio = TwilioSmsProvider(twilio_config(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5))
        try:
            outcome = await twilio.send(sms())
        finally:
            await twilio.close()
    assert isinstance(outcome, Retry)
    assert "cannot reach Twilio" in outcome.detail


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"account_sid": "AC123"}, "HERALD_TWILIO_ACCOUNT_SID"),
        ({"auth_token": ""}, "HERALD_TWILIO_AUTH_TOKEN"),
        ({"from_number": None}, "HERALD_TWILIO_FROM_NUMBER"),
        ({"status_callback_url": "https://my_host.example.com/cb"}, "HERALD_TWILIO_STATUS_CALLBACK_URL"),
        ({"status_callback_url": "/callbacks/twilio"}, "HERALD_TWILIO_STATUS_CALLBACK_URL"),
        ({"base_url": "localhost:4010"}, "HERALD_TWILIO_BASE_URL"),
        ({"max_connections": 0}, "HERALD_TWILIO_MAX_CONNECTIONS"),
    ],
)
def test_validate_config_names_the_variable(overrides: dict[str, Any], variable: str) -> None:
    with pytest.raises(ProviderConfigError, match=variable):
        TwilioSmsProvider(replace(twilio_config("http://127.0.0.1:1"), **overrides)).validate_config()
