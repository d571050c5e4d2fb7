"""Provider callbacks: recording what verified events mean (what they mean is decided by the
provider modules beside this one), and the verifiers each configured provider gets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from services.gateway.callbacks import sendgrid, sns
from services.gateway.callbacks.events import ProviderEvent
from services.gateway.http.problems import Problem
from services.gateway.settings import GatewaySettings
from shared.kafka.producer import MessageProducer
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
from shared.storage.suppressions import SuppressionRepository

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallbackVerifiers:
    """What authenticates each provider's callbacks; None: that provider's callback is not configured."""

    twilio_token: str | None
    sendgrid: sendgrid.SignedEvents | None
    sns: sns.SnsVerifier | None

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> CallbackVerifiers:
        """The verifiers of every provider ``settings`` configure."""
        return cls(
            twilio_token=settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None,
            sendgrid=sendgrid.SignedEvents(settings.sendgrid_webhook_public_key)
            if settings.sendgrid_webhook_public_key
            else None,
            sns=sns.SnsVerifier(
                topic_arns=settings.ses_sns_topic_arns,
                hosts=settings.sns_cert_host_pattern,
                guard=OutboundGuard(allow_private_networks=settings.sns_allow_private_networks),
                ca_file=settings.sns_ca_file,
            )
            if settings.ses_sns_topic_arns
            else None,
        )


@dataclass(frozen=True)
class EventRecorder:
    """Records what verified events mean: the suppressions stored, then the status events produced
    (a retried callback repeats neither)."""

    suppressions: SuppressionRepository
    producer: MessageProducer
    reporter: StatusReporter

    async def record(self, events: Sequence[ProviderEvent]) -> None:
        await self.suppressions.add([suppression for event in events for suppression in event.suppressions()])
        records = [record for event in events if (record := event.status_event(self.reporter)) is not None]
        if records:
            await self.producer.produce(records)


def forbidden(provider: str, detail: str) -> Problem:
    """A 403 problem for a callback that does not verify (logged: someone may be forging them)."""
    log.warning("callback_refused", provider=provider, detail=detail)
    return Problem(403, "Forbidden", detail)


def not_configured(provider: str) -> Problem:
    """The 404 of a callback whose provider is not configured."""
    return Problem(404, "Not found", f"callbacks from {provider} are not configured")
