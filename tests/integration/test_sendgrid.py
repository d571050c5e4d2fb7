"""The SendGrid provider against Prism serving SendGrid's official v3 description, which validates each request.

Prism can only give the answers the description defines (mail/send has no 429), and the official client
has no safe per-request header for ``Prefer: code=...`` (it merges such headers into its shared defaults
for good), so classification is tested against a scripted local HTTP server instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.processes import free_port
from infra.standins.prism import PrismMock
from services.sender_email.sendgrid import SendGridConfig, SendGridProvider
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.messages import Attachment
from shared.providers.base import ProviderConfigError
from tests.factories import email_delivery as delivery
from tests.factories import inline_attachment
from tests.scripted_http import Reply, ScriptedServer

# On one xdist worker: Prism takes about 2 s of CPU to start, once per worker that runs one of these tests.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prism")]

SPEC = Path(__file__).resolve().parents[2] / "infra" / "standins" / "contracts" / "sendgrid_v3_swagger2.json"
API_KEY = "SG.test-key"
SENDER = "Herald Tests <noreply@herald.test>"


INVOICE = inline_attachment("Rechnung März.pdf", b"%PDF-1.7 invoice", "application/pdf")
NOTE = inline_attachment("note.txt", b"hi", "text/plain")


def config(base_url: str = "https://api.sendgrid.com", **overrides: Any) -> SendGridConfig:
    return SendGridConfig(**{"api_key": API_KEY, "from_address": SENDER, "base_url": base_url, **overrides})


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismMock]:
    """Prism serving the API description (it keeps no state between requests), once per xdist worker."""
    with PrismMock(SPEC) as mock:
        yield mock


@pytest.fixture
def provider(prism: PrismMock) -> Iterator[SendGridProvider]:
    sendgrid = SendGridProvider(config(prism.url))
    try:
        yield sendgrid
    finally:
        sendgrid.close()


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer().serving() as server:
        yield server


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> ScriptedServer:
    scripted_server.reply = Reply(202)
    scripted_server.requests.clear()
    return scripted_server


@pytest.fixture
def scripted_provider(scripted: ScriptedServer) -> Iterator[SendGridProvider]:
    sendgrid = SendGridProvider(config(scripted.url, timeout_s=0.3))
    try:
        yield sendgrid
    finally:
        sendgrid.close()


# --- against Prism: the official contract ---------------------------------------------------------


async def test_text_and_html_mail_is_delivered(provider: SendGridProvider) -> None:
    # Prism answers 202 only to a request that passed validation (see the next test for a refusal).
    outcome = await provider.send(delivery(metadata={"category": "orders"}))
    assert outcome == Delivered("sendgrid")


async def test_text_only_mail_is_delivered(provider: SendGridProvider) -> None:
    assert await provider.send(delivery(html=None)) == Delivered("sendgrid")


async def test_prism_refuses_a_request_that_breaks_the_contract(prism: PrismMock) -> None:
    body = {
        "from": {"email": "noreply@herald.test"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    async with httpx.AsyncClient(base_url=prism.url) as client:
        response = await client.post("/v3/mail/send", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    # The spec defines a 400 for mail/send, so Prism answers with it and lists the violations in a header.
    assert response.status_code == 400
    violations = json.loads(response.headers["sl-violations"])
    assert any("personalizations" in violation["message"] for violation in violations)


async def test_mail_with_attachments_is_delivered(provider: SendGridProvider) -> None:
    outcome = await provider.send(delivery(attachments=[INVOICE, NOTE]))
    assert outcome == Delivered("sendgrid")


TEMPLATED = {"provider_templates": {"sendgrid": "d-13b8f94fbcae4ec6b75270d6cb59f932"}}


async def test_mail_from_a_sendgrid_template_passes_the_contract(provider: SendGridProvider) -> None:
    outcome = await provider.send(delivery(**TEMPLATED, template_data_json='{"name": "Ada", "items": [1, 2]}'))
    assert outcome == Delivered("sendgrid")


async def test_health_passes(provider: SendGridProvider) -> None:
    await provider.health()


# --- against the scripted server: the request, and every kind of answer ----------------------------


async def test_request_carries_ids_category_and_tracking(scripted: ScriptedServer) -> None:
    mail = delivery(metadata={"category": "orders"})
    sendgrid = SendGridProvider(config(scripted.url, open_tracking=True))
    try:
        await sendgrid.send(mail)
    finally:
        sendgrid.close()
    [request] = scripted.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.body) == {
        "personalizations": [
            {
                "to": [{"email": mail["to"]}],
                "custom_args": {
                    "notification_id": mail["notification_id"],
                    "delivery_id": mail["delivery_id"],
                    "tenant_id": mail["tenant_id"],
                },
            }
        ],
        "from": {"email": "noreply@herald.test", "name": "Herald Tests"},
        "subject": mail["subject"],
        "content": [{"type": "text/plain", "value": mail["text"]}, {"type": "text/html", "value": mail["html"]}],
        "tracking_settings": {"open_tracking": {"enable": True}, "click_tracking": {"enable": False}},
        "categories": ["orders"],
    }


async def test_a_sendgrid_template_is_named_with_the_variables_over_herald_content(
    scripted: ScriptedServer, scripted_provider: SendGridProvider
) -> None:
    await scripted_provider.send(delivery(**TEMPLATED, template_data_json='{"name": "Ada", "items": [1, 2]}'))
    [request] = scripted.requests
    body = json.loads(request.body)
    assert body["template_id"] == "d-13b8f94fbcae4ec6b75270d6cb59f932"
    assert body["personalizations"][0]["dynamic_template_data"] == {"name": "Ada", "items": [1, 2]}
    # Herald's rendering stays in the body: the contract requires it, and the template overrides it.
    assert body["subject"] == "Your order shipped"


async def test_attachments_are_sent_inline_as_base64(
    scripted: ScriptedServer, scripted_provider: SendGridProvider
) -> None:
    await scripted_provider.send(delivery(attachments=[INVOICE, NOTE]))
    [request] = scripted.requests
    assert json.loads(request.body)["attachments"] == [
        {
            "content": INVOICE["content_base64"],
            "filename": "Rechnung März.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        },
        {"content": "aGk=", "filename": "note.txt", "type": "text/plain", "disposition": "attachment"},
    ]


async def test_an_attachment_not_fetched_is_not_sent(
    scripted: ScriptedServer, scripted_provider: SendGridProvider
) -> None:
    unfetched: Attachment = {**NOTE, "url": "https://files.example.com/note.txt", "content_base64": None}
    outcome = await scripted_provider.send(delivery(attachments=[unfetched]))
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert scripted.requests == []


async def test_accepted_mail_reports_the_message_id(
    scripted: ScriptedServer, scripted_provider: SendGridProvider
) -> None:
    scripted.reply = Reply(202, {"X-Message-Id": "msg-123"})
    assert await scripted_provider.send(delivery()) == Delivered("sendgrid", "msg-123")


@pytest.mark.parametrize(
    ("retry_after", "reset_in_s", "after_s"),
    [("7", None, 7.0), (None, 30, 30.0), (None, None, None)],
)
async def test_rate_limit_is_retry_after_its_wait(
    scripted: ScriptedServer,
    scripted_provider: SendGridProvider,
    retry_after: str | None,
    reset_in_s: int | None,
    after_s: float | None,
) -> None:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if reset_in_s is not None:
        headers["X-RateLimit-Reset"] = str(int(time.time()) + reset_in_s)
    scripted.reply = Reply(429, headers, b'{"errors":[{"message":"too many requests"}]}')
    outcome = await scripted_provider.send(delivery())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "rate_limited"
    assert "too many requests" in outcome.detail
    if after_s is None:
        assert outcome.after_s is None
    else:
        assert outcome.after_s == pytest.approx(after_s, abs=2)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_is_retry(
    scripted: ScriptedServer, scripted_provider: SendGridProvider, status: int
) -> None:
    scripted.reply = Reply(status, body=b"upstream trouble")
    outcome = await scripted_provider.send(delivery())
    assert outcome == Retry("sendgrid", f"{status} upstream trouble")


@pytest.mark.parametrize(
    ("status", "error", "detail", "reason"),
    [
        (
            400,
            {"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email"},
            "400 Does not contain a valid address. (personalizations.0.to.0.email)",
            DeadLetterReason.INVALID_ADDRESS,
        ),
        (
            403,
            {"message": "The from address does not match a verified Sender Identity.", "field": "from"},
            "403 The from address does not match a verified Sender Identity. (from)",
            DeadLetterReason.PROVIDER_REJECTED,
        ),
        (
            413,
            {"message": "The JSON payload is too large.", "field": None},
            "413 The JSON payload is too large.",
            DeadLetterReason.REJECTED_CONTENT,
        ),
    ],
)
async def test_refusal_is_failed_with_sendgrid_message(
    scripted: ScriptedServer,
    scripted_provider: SendGridProvider,
    status: int,
    error: dict[str, Any],
    detail: str,
    reason: DeadLetterReason,
) -> None:
    scripted.reply = Reply(status, body=json.dumps({"errors": [error]}).encode())
    outcome = await scripted_provider.send(delivery())
    assert outcome == Failed("sendgrid", detail, reason)


async def test_a_bad_api_key_fails_over_and_is_named(
    scripted: ScriptedServer, scripted_provider: SendGridProvider
) -> None:
    scripted.reply = Reply(
        401, body=b'{"errors":[{"field":null,"message":"The provided authorization grant is invalid"}]}'
    )
    outcome = await scripted_provider.send(delivery())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_account"
    assert "invalid API key" in outcome.detail
    with pytest.raises(ConnectionError, match="invalid API key"):
        await scripted_provider.health()


async def test_slow_answer_is_retry(scripted: ScriptedServer, scripted_provider: SendGridProvider) -> None:
    scripted.reply = Reply(202, delay_s=1.0)
    outcome = await scripted_provider.send(delivery())
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"
    assert "timed out" in outcome.detail


async def test_unreachable_server_is_retry() -> None:
    sendgrid = SendGridProvider(config(f"http://127.0.0.1:{free_port()}"))
    try:
        outcome = await sendgrid.send(delivery())
    finally:
        sendgrid.close()
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_unavailable"


async def test_health_needs_the_mail_send_scope(scripted: ScriptedServer, scripted_provider: SendGridProvider) -> None:
    scripted.reply = Reply(200, body=b'{"scopes":["alerts.read"]}')
    with pytest.raises(PermissionError, match=r"mail\.send"):
        await scripted_provider.health()
    assert scripted.requests[0].path == "/v3/scopes"


# --- without a server ------------------------------------------------------------------------------


async def test_mail_without_a_body_is_invalid() -> None:
    sendgrid = SendGridProvider(config("http://127.0.0.1:9"))
    try:
        outcome = await sendgrid.send(delivery(text=None, html=None))
    finally:
        sendgrid.close()
    assert isinstance(outcome, Failed)
    assert outcome.reason == DeadLetterReason.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"api_key": ""}, "HERALD_SENDGRID_API_KEY"),
        ({"from_address": "not an address"}, "HERALD_SENDGRID_FROM"),
        ({"from_address": "a@b.test\r\nBcc: x@y.test"}, "HERALD_SENDGRID_FROM"),
        ({"base_url": "api.sendgrid.com"}, "HERALD_SENDGRID_BASE_URL"),
    ],
)
def test_validate_config_names_the_variable(overrides: dict[str, str], variable: str) -> None:
    sendgrid = SendGridProvider(config(**overrides))
    try:
        with pytest.raises(ProviderConfigError, match=variable):
            sendgrid.validate_config()
    finally:
        sendgrid.close()


def test_valid_config_passes() -> None:
    sendgrid = SendGridProvider(config())
    try:
        sendgrid.validate_config()
    finally:
        sendgrid.close()
