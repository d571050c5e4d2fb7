"""Sending a failed delivery again by hand: its dead letter back to its channel's send topic.

Only deliveries are requeued. A request or routable record that failed did so for a reason about the
request itself (invalid, no address), which sending it again would not change: fix and resubmit it.
The delivery goes back one attempt further on, so its events are new ones (a repeat of the first
failure would be taken for a redelivered event and dropped), with a ``requeued`` status event, the
one status that may follow ``failed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from shared import status
from shared.codec import Contract
from shared.kafka.records import TRACEPARENT, Produce
from shared.messages import EMAIL_DELIVERY, PUSH_DELIVERY, SMS_DELIVERY, WEBHOOK_DELIVERY
from shared.status_events import StatusReporter
from shared.storage.dead_letters import OriginalMessage
from shared.topics import Topics

DELIVERY_CONTRACTS: Mapping[str, Contract[Any]] = {
    "email": EMAIL_DELIVERY,
    "sms": SMS_DELIVERY,
    "push": PUSH_DELIVERY,
    "webhook": WEBHOOK_DELIVERY,
}


class NotRequeueable(ValueError):
    """The dead letter is not a delivery (or no longer readable): it cannot be sent again as it is."""


@dataclass(frozen=True)
class Requeue:
    """What sends a dead-lettered delivery again. Produce ``status`` first and ``delivery`` once it is
    acknowledged: the attempt's own events then come after the ``requeued`` that makes them count."""

    status: Produce
    delivery: Produce


def requeue(original: OriginalMessage, topics: Topics, reporter: StatusReporter) -> Requeue:
    """The records that send the dead-lettered delivery again: its status, and the delivery one attempt on."""
    channel = topics.channel_of(original.topic)
    if channel is None or channel not in DELIVERY_CONTRACTS:
        raise NotRequeueable(f"only failed deliveries are sent again; this failed on {original.topic}")
    contract = DELIVERY_CONTRACTS[channel]
    try:
        delivery = cast(dict[str, Any], contract.decode(original.payload))
    except ValueError as error:
        raise NotRequeueable(f"the dead-lettered delivery cannot be read: {error}") from error
    delivery["attempt"] = int(delivery["attempt"]) + 1
    traceparent = dict(original.headers).get(TRACEPARENT)
    return Requeue(
        delivery=Produce(original.topic, contract.encode(delivery), key=original.key, headers=original.headers),
        status=reporter.event(
            notification_id=delivery["notification_id"],
            tenant_id=delivery["tenant_id"],
            status=status.REQUEUED,
            key=original.key,
            traceparent=traceparent,
            channel=channel,
            attempt=delivery["attempt"],
            delivery_id=delivery["delivery_id"],
            deliveries=int(delivery.get("deliveries", 1)),
            endpoint_id=delivery.get("endpoint_id"),
            detail="sent again by hand",
        ),
    )
