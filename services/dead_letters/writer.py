"""The consumer loop's handler: every batch of DLQ records stored in one statement.

This service consumes the DLQ topic, and its consumer loop dead-letters onto that same topic: what it
cannot decode or store comes back to it wrapped in a new dead letter. That ends after one round:

* undecodable bytes come back as a well-formed dead letter (reason ``undecodable``, the bytes as its
  payload), which is stored like any other;
* a record whose storing fails comes back as a ``processing_error`` dead letter of this service; if
  storing that one fails too, it is logged, counted (``herald_dead_letters_dropped_total``) and left
  in the topic instead of being dead-lettered a second time, which would repeat forever.

A dependency failure (Postgres down) is transient: the loop pauses and retries, nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from shared.codec import UndecodableMessage
from shared.errors import is_transient
from shared.kafka.records import TENANT, Consumed, Output
from shared.messages import DELAYED_MESSAGE, DeadLetter
from shared.observability import metrics
from shared.storage.dead_letters import DeadLetterRepository, NewDeadLetter
from shared.topics import Topics

log = structlog.get_logger(__name__)


def channel_of(topics: Topics, letter: DeadLetter) -> str | None:
    """The channel the message was on its way to, when its topic (or a delayed message's target) says."""
    topic = letter["original_topic"]
    if topic == topics.delay:
        try:
            topic = DELAYED_MESSAGE.decode(letter["original_payload"])["target_topic"]
        except UndecodableMessage:
            return None
    return topics.channel_of(topic)


def stored_form(message: Consumed[DeadLetter], topics: Topics) -> NewDeadLetter:
    """The row a DLQ record is stored as."""
    letter = message.value
    tenant = letter["tenant_id"]
    if tenant is None and (header := message.header(TENANT)) is not None:
        tenant = header.decode(errors="replace")
    return NewDeadLetter(
        tenant_id=tenant,
        notification_id=letter["notification_id"],
        reason=letter["reason_category"],
        detail=letter["reason"],
        service=letter["service"],
        channel=channel_of(topics, letter),
        original_topic=letter["original_topic"],
        original_partition=letter["original_partition"],
        original_offset=letter["original_offset"],
        original_key=letter["original_key"],
        original_headers=letter["original_headers"],
        original_payload=letter["original_payload"],
        created_at=letter["failed_at"],
        dlq_topic=message.topic,
        dlq_partition=message.partition,
        dlq_offset=message.offset,
    )


class DeadLetterWriter:
    """Stores each batch of DLQ records in one statement; a redelivered record is stored once."""

    def __init__(self, repository: DeadLetterRepository, topics: Topics, service: str) -> None:
        self._repository = repository
        self._topics = topics
        self._service = service

    async def __call__(self, batch: Sequence[Consumed[DeadLetter]]) -> list[Output]:
        try:
            await self._repository.store([stored_form(message, self._topics) for message in batch])
        except Exception as error:
            # The loop hands a failing batch back one message at a time; drop only a lone record that
            # is already this service's own dead letter.
            if len(batch) == 1 and self._is_own(batch[0]) and not is_transient(error):
                message = batch[0]
                log.error(
                    "dead_letter_unstorable",
                    partition=message.partition,
                    offset=message.offset,
                    error=repr(error),
                )
                metrics.DEAD_LETTERS_DROPPED.inc()
                return []
            raise
        return []

    def _is_own(self, message: Consumed[DeadLetter]) -> bool:
        """A dead letter this service made of a record of the topic it consumes."""
        return message.value["service"] == self._service and message.value["original_topic"] == message.topic
