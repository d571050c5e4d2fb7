"""``/api/v1/callbacks/``: the providers' delivery reports (Twilio, SendGrid, SES through SNS).

Providers cannot send an API key: each request's signature authenticates it instead, and one that does
not verify is a 403 with nothing recorded. What a verified event means (a status, addresses to suppress)
is decided by the provider modules beside this one; :mod:`.service` stores the suppressions and produces the
status events to the status topic, before answering 2xx (a failure answers 5xx, and the provider retries).
A callback whose provider is not configured answers 404.

FCM and APNs have no delivery callbacks: dead tokens come back in the send's answer (sender-push).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
import structlog
from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import ImmutableMultiDict

from services.gateway.callbacks import sendgrid, ses, sns, twilio
from services.gateway.callbacks.service import EventRecorder, forbidden, not_configured
from services.gateway.deps import CallbacksDep, ProducerDep, SettingsDep, StatusDep, SuppressionsDep
from services.gateway.http.problems import Problem

log = structlog.get_logger(__name__)

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


router = APIRouter(prefix=PREFIX, tags=["callbacks"], responses=RESPONSES)


async def _recorder(suppressions: SuppressionsDep, producer: ProducerDep, reporter: StatusDep) -> EventRecorder:
    return EventRecorder(suppressions, producer, reporter)


Recorder = Annotated[EventRecorder, Depends(_recorder)]


@router.post("/twilio", status_code=204, openapi_extra=_body("application/x-www-form-urlencoded", TWILIO_BODY))
async def twilio_status(
    request: Request, verifiers: CallbacksDep, settings: SettingsDep, recorder: Recorder
) -> Response:
    """Twilio's message status callback (form fields; Herald's ids in the URL's query)."""
    if verifiers.twilio_token is None:
        raise not_configured("twilio")
    form = ImmutableMultiDict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    url = twilio.public_url(settings.public_base_url, str(request.url), request.url.path, request.url.query)
    if not twilio.verify(verifiers.twilio_token, url, form, request.headers.get(twilio.SIGNATURE_HEADER, "")):
        raise forbidden("twilio", f"X-Twilio-Signature does not sign {url} and its form")
    event = twilio.interpret(form, request.query_params)
    await recorder.record([event] if event else [])
    return Response(status_code=204)


@router.post("/sendgrid", status_code=204, openapi_extra=_body("application/json", SENDGRID_BODY))
async def sendgrid_events_webhook(request: Request, verifiers: CallbacksDep, recorder: Recorder) -> Response:
    """SendGrid's signed Event Webhook (a JSON array of events)."""
    if verifiers.sendgrid is None:
        raise not_configured("sendgrid")
    body = await request.body()
    signature = request.headers.get(sendgrid.SIGNATURE_HEADER, "")
    if not verifiers.sendgrid.verify(body, signature, request.headers.get(sendgrid.TIMESTAMP_HEADER, "")):
        raise forbidden("sendgrid", f"{sendgrid.SIGNATURE_HEADER} does not sign the timestamp and body")
    await recorder.record(sendgrid.interpret(_json(body)))
    return Response(status_code=204)


@router.post("/ses", status_code=204, openapi_extra=_body("application/json", SNS_BODY))
async def ses_notifications(request: Request, verifiers: CallbacksDep, recorder: Recorder) -> Response:
    """SES's notifications through an SNS HTTP(S) subscription; also confirms the subscription."""
    if verifiers.sns is None:
        raise not_configured("ses")
    message = _json(await request.body())
    if not isinstance(message, dict):
        raise forbidden("ses", "not an SNS message")
    try:
        await verifiers.sns.verify(message)
        if message["Type"] == sns.SUBSCRIPTION_CONFIRMATION:
            await verifiers.sns.confirm(message)
            log.info("sns_subscription_confirmed", topic=message["TopicArn"])
    except sns.NotFromSns as error:
        raise forbidden("ses", str(error)) from None
    if message["Type"] == sns.NOTIFICATION:
        await recorder.record(ses.interpret(_json(str(message.get("Message", "")).encode())))
    return Response(status_code=204)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Problem(400, "Bad request", "the body is not JSON") from None
