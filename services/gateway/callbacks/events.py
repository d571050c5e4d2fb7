"""What a provider's callback event means for Herald: a status for a delivery, addresses to suppress."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.kafka.records import Produce, message_key
from shared.status_events import StatusReporter
from shared.storage.suppressions import Suppression

# Status reasons of the callbacks (the others are DeadLetterReason values): the recipient marked the mail
# as spam. Not a dead-letter reason: nothing is dead-lettered for it.
RECIPIENT_COMPLAINED = "recipient_complained"
# Why an address was suppressed.
BOUNCED = "bounced"
COMPLAINED = "complained"
OPTED_OUT = "opted_out"
NOT_MOBILE = "not_mobile"


@dataclass(frozen=True)
class Herald:
    """The ids Herald gave a message, as they came back with the provider's event."""

    notification_id: str
    delivery_id: str | None
    tenant_id: str

    @classmethod
    def of(cls, notification_id: object, delivery_id: object, tenant_id: object) -> Herald | None:
        """The ids, or None unless they are Herald's: UUIDs (the status store's keys) and a tenant.

        A provider account may send mail for other systems too; their events are not ours to record.
        """
        if not (isinstance(tenant_id, str) and tenant_id and _is_uuid(notification_id)):
            return None
        return cls(str(notification_id), str(delivery_id) if _is_uuid(delivery_id) else None, tenant_id)


@dataclass(frozen=True)
class ProviderEvent:
    """One event a provider reported about a delivery.

    ``status`` None records no status (an event Herald has nothing to say about, e.g. a soft bounce);
    ``suppress`` names the addresses never to send to again, for ``suppress_reason``.
    """

    ids: Herald
    channel: str
    provider: str
    status: str | None
    reason: str | None = None
    detail: str | None = None
    # Tells apart events otherwise alike (each clicked URL), as the status event id is derived from the event.
    distinct_by: str | None = None
    suppress: tuple[str, ...] = ()
    suppress_reason: str = BOUNCED

    def status_event(self, reporter: StatusReporter) -> Produce | None:
        """The status event to produce, or None. Its id is derived from the event, so a provider's retry is
        stored once."""
        if self.status is None:
            return None
        ids = self.ids
        return reporter.event(
            notification_id=ids.notification_id,
            tenant_id=ids.tenant_id,
            status=self.status,
            key=message_key(ids.tenant_id, ids.notification_id),
            channel=self.channel,
            provider=self.provider,
            reason=self.reason,
            detail=self.detail,
            delivery_id=ids.delivery_id,
            distinct_by=self.distinct_by,
        )

    def suppressions(self) -> list[Suppression]:
        return [
            Suppression(
                tenant_id=self.ids.tenant_id,
                channel=self.channel,
                address=address,
                reason=self.suppress_reason,
                detail=self.detail,
                provider=self.provider,
            )
            for address in self.suppress
            if address
        ]


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
