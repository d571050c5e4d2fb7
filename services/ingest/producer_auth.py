"""Ingest's first step: a request produced to Kafka must be signed by a live producer key of the tenant it
names (:mod:`shared.producer_keys`), or it goes to the DLQ as ``unauthenticated_producer``.

Nothing else happens to a refused request: no status event (it would let a producer mark another
tenant's notification failed), no idempotency claim (nor burn another tenant's keys), nothing sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.errors import DeadLetterReason
from shared.kafka.records import SIGNATURE, Consumed, Handler, Output, Reject
from shared.messages import NotificationRequest
from shared.observability import metrics
from shared.producer_keys import INTERNAL_KEY_ID, SignatureError, verify
from shared.storage.producer_keys import LiveProducerKeys


class SignedRequests:
    """Passes on to ``handler`` the requests signed by a live key of their tenant; dead-letters the rest."""

    def __init__(self, master_key: bytes, keys: LiveProducerKeys, handler: Handler[NotificationRequest]) -> None:
        self._master_key = master_key
        self._keys = keys
        self._handler = handler

    async def __call__(self, batch: Sequence[Consumed[NotificationRequest]]) -> list[Output]:
        refused: list[Output] = []
        signed: list[tuple[Consumed[NotificationRequest], tuple[str, str]]] = []
        for message in batch:
            tenant_id = message.value["tenant_id"]
            try:
                key_id = verify(self._master_key, tenant_id, message.header(SIGNATURE), message.raw)
            except SignatureError as error:
                why = "unsigned" if message.header(SIGNATURE) is None else "bad_signature"
                refused.append(_refuse(message, why, str(error)))
                continue
            signed.append((message, (tenant_id, key_id)))
        live = await self._keys.live({key for _, key in signed if key[1] != INTERNAL_KEY_ID})
        accepted: list[Consumed[NotificationRequest]] = []
        for message, key in signed:
            if key[1] == INTERNAL_KEY_ID or key in live:
                accepted.append(message)
            else:
                refused.append(_refuse(message, "key_not_live", f"producer key {key[1]!r} is revoked or unknown"))
        return refused + list(await self._handler(accepted) if accepted else [])


def _refuse(message: Consumed[NotificationRequest], why: str, detail: str) -> Reject:
    metrics.REQUESTS_UNAUTHENTICATED.labels(reason=why).inc()
    request = message.value
    return Reject(
        message,
        DeadLetterReason.UNAUTHENTICATED_PRODUCER,
        detail,
        tenant_id=request["tenant_id"],
        notification_id=request["notification_id"],
    )
