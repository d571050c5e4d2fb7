"""The status store's personal columns: written by the gateway and the status service, read by the
gateway's API, archived by the archiver, cleared by erasure and resealed here (see
:mod:`shared.storage.sealed`).

A provider's answer (``detail``) can quote an address, a phone number, a token or a URL: it is sealed on
the event, and the status service copies the event's sealed bytes to its delivery and notification as
their ``last_detail``, so the three share one context. The caller's idempotency key is sealed too; Postgres
never looks a notification up by it (deduplication happens in Redis, by ingest).
"""

from __future__ import annotations

from shared.crypto import Encryptor
from shared.storage.database import Pool
from shared.storage.sealed import SealedColumn, reseal

_DETAIL_CONTEXT = "status.detail"
EVENT_DETAIL = SealedColumn("notification_events", "detail", context_name=_DETAIL_CONTEXT)
DELIVERY_DETAIL = SealedColumn("deliveries", "last_detail", context_name=_DETAIL_CONTEXT)
NOTIFICATION_DETAIL = SealedColumn("notifications", "last_detail", context_name=_DETAIL_CONTEXT)
IDEMPOTENCY_KEY = SealedColumn("notifications", "idempotency_key")
NOTIFICATION_COLUMNS = (NOTIFICATION_DETAIL, IDEMPOTENCY_KEY)


async def reseal_status_store(pool: Pool, encryptor: Encryptor) -> dict[str, int]:
    """Reseal the notifications, their events and their deliveries; the rows rewritten per table."""
    return {
        "notifications": await reseal(pool, encryptor, NOTIFICATION_COLUMNS, "uuid"),
        "notification_events": await reseal(pool, encryptor, [EVENT_DETAIL], "bigint"),
        "deliveries": await reseal(pool, encryptor, [DELIVERY_DETAIL], "uuid"),
    }
