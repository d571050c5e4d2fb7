"""``/api/v1/callbacks/``: the providers' delivery reports (Twilio, SendGrid, SES through SNS).

Providers cannot send an API key: each request's signature authenticates it instead, and one that does
not verify is a 403 with nothing recorded. What a verified event means (a status, addresses to suppress)
is decided by :mod:`services.gateway.feedback`; here the suppressions are stored and the status events
produced to the status topic, before answering 2xx (a failure answers 5xx, and the provider retries).
A callback whose provider is not configured answers 404.

FCM and APNs have no delivery callbacks: dead tokens come back in the send's answer (sender-push).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
from fastapi import APIRouter, Request, Response
from starlette.datastructures import ImmutableMultiDict

from services.gateway.feedback import sendgrid, ses, sns, twilio
from services.gateway.feedback.events import ProviderEvent
from services.gateway.problems import Problem
from services.gateway.settings import GatewaySettings
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter

log = structlog.get_logger(__name__)

SERVICE = "gateway"
PREFIX = "/api/v1/callbacks"
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not what the provider sends (problem+json)"},
    403: {"description": "The signature does not verify (problem+json); nothing was recorded"},
    404: {"description": "Callbacks from this provider are not configured (problem+json)"},
}

# What each provider posts, for the OpenAPI document (the routes read the raw body: its signature covers it).
TWILIO_BODY = {
    "type": "object",
    "description": "Twilio's status callback form (MessageSid, MessageStatus, ErrorCode, ...).",
    "additionalProperties": {"type": "string"},
}
SENDGRID_BODY = {
    "type": "array",
    "description": "SendGrid Event Webhook events.",
    "items": {"type": "object"},
}
SNS_BODY = {
    "type": "object",
    "description": "An SNS message (SNS posts it as text/plain): a Notification or a SubscriptionConfirmation.",
    "required": ["Type"],
    "properties": {"Type": {"type": "string"}, "TopicArn": {"type": "string"}, "Message": {"type": "string"}},
}


def _body(media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {media_type: {"schema": schema}}}}


def routes(settings: GatewaySettings) -> APIRouter:
    """The callback routes, each verifying with its provider's settings (unset: that route answers 404)."""
    router = APIRouter(prefix=PREFIX, tags=["callbacks"], responses=RESPONSES)
    twilio_token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    sendgrid_events = (
        sendgrid.SignedEvents(settings.sendgrid_webhook_public_key) if settings.sendgrid_webhook_public_key else None
    )
    sns_verifier = (
        sns.SnsVerifier(
            topic_arns=settings.ses_sns_topic_arns,
            hosts=settings.sns_cert_host_pattern,
            guard=OutboundGuard(allow_private_networks=settings.sns_allow_private_networks),
            ca_file=settings.sns_ca_file,
        )
        if settings.ses_sns_topic_arns
        else None
    )

    @router.post("/twilio", status_code=204, openapi_extra=_body("application/x-www-form-urlencoded", TWILIO_BODY))
    async def twilio_status(request: Request) -> Response:
        """Twilio's message status callback (form fields; Herald's ids in the URL's query)."""
        if twilio_token is None:
            raise _not_configured("twilio")
        form = ImmutableMultiDict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        url = twilio.public_url(settings.public_base_url, str(request.url), request.url.path, request.url.query)
        if not twilio.verify(twilio_token, url, form, request.headers.get(twilio.SIGNATURE_HEADER, "")):
            raise _forbidden("twilio", f"X-Twilio-Signature does not sign {url} and its form")
        event = twilio.interpret(form, request.query_params)
        await _record(request, [event] if event else [])
        return Response(status_code=204)

    @router.post("/sendgrid", status_code=204, openapi_extra=_body("application/json", SENDGRID_BODY))
    async def sendgrid_events_webhook(request: Request) -> Response:
        """SendGrid's signed Event Webhook (a JSON array of events)."""
        if sendgrid_events is None:
            raise _not_configured("sendgrid")
        body = await request.body()
        signature = request.headers.get(sendgrid.SIGNATURE_HEADER, "")
        if not sendgrid_events.verify(body, signature, request.headers.get(sendgrid.TIMESTAMP_HEADER, "")):
            raise _forbidden("sendgrid", f"{sendgrid.SIGNATURE_HEADER} does not sign the timestamp and body")
        await _record(request, sendgrid.interpret(_json(body)))
        return Response(status_code=204)

    @router.post("/ses", status_code=204, openapi_extra=_body("application/json", SNS_BODY))
    async def ses_notifications(request: Request) -> Response:
        """SES's notifications through an SNS HTTP(S) subscription; also confirms the subscription."""
        if sns_verifier is None:
            raise _not_configured("ses")
        message = _json(await request.body())
        if not isinstance(message, dict):
            raise _forbidden("ses", "not an SNS message")
        try:
            await sns_verifier.verify(message)
            if message["Type"] == sns.SUBSCRIPTION_CONFIRMATION:
                await sns_verifier.confirm(message)
                log.info("sns_subscription_confirmed", topic=message["TopicArn"])
        except sns.NotFromSns as error:
            raise _forbidden("ses", str(error)) from None
        if message["Type"] == sns.NOTIFICATION:
            await _record(request, ses.interpret(_json(str(message.get("Message", "")).encode())))
        return Response(status_code=204)

    return router


async def _record(request: Request, events: Sequence[ProviderEvent]) -> None:
    """Store the suppressions, then produce the status events (a retried callback repeats neither)."""
    state = request.app.state
    reporter = StatusReporter(state.topics.status, SERVICE)
    await state.suppressions.add([suppression for event in events for suppression in event.suppressions()])
    records = [record for event in events if (record := event.status_event(reporter)) is not None]
    if records:
        await state.producer.produce(records)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "Bad request", "the body is not JSON") from None


def _forbidden(provider: str, detail: str) -> Problem:
    log.warning("callback_refused", provider=provider, detail=detail)
    return Problem(403, "Forbidden", detail)


def _not_configured(provider: str) -> Problem:
    return Problem(404, "Not found", f"callbacks from {provider} are not configured")
