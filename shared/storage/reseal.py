"""``python -m shared.storage.reseal``: seal every stored personal value under the primary key.

Step two of a key rotation (see the README's "Data at rest"), and the backfill of values written in
clear before migrations 0011, 0019 and 0022. Safe to run while the services run, and again.
"""

from __future__ import annotations

import asyncio

import structlog

from shared.config import HeraldSettings, load_settings
from shared.crypto import Encryptor
from shared.storage.database import Pool, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.delayed_jobs import DelayedJobStore
from shared.storage.devices import DeviceRepository
from shared.storage.notifications import reseal_status_store
from shared.storage.recipients import RecipientRepository
from shared.storage.suppressions import SuppressionRepository
from shared.storage.webhook_endpoints import WebhookEndpointRepository

logger = structlog.get_logger(__name__)


async def reseal_all(pool: Pool, encryptor: Encryptor) -> dict[str, int]:
    """Reseal each table holding personal data; returns the rows rewritten per table."""
    recipients = RecipientRepository(pool, encryptor)
    webhook_endpoints = WebhookEndpointRepository(pool, encryptor)
    return {
        "devices": await DeviceRepository(pool, encryptor).reseal(),
        "suppressions": await SuppressionRepository(pool, encryptor).reseal(),
        "dead_letters": await DeadLetterRepository(pool, encryptor).reseal(),
        "delayed_jobs": await DelayedJobStore(pool, encryptor).reseal(),
        "webhook_endpoints": await webhook_endpoints.reseal(),
        "webhook_endpoint_deliveries": await webhook_endpoints.reseal_deliveries(),
        "recipients": await recipients.reseal(),
        # After the recipients: a preference's user id index must name one.
        "preferences": await recipients.reseal_preferences(),
        **await reseal_status_store(pool, encryptor),
    }


async def reseal_database(settings: HeraldSettings) -> dict[str, int]:
    """:func:`reseal_all` on the database the settings name."""
    pool = await create_pool(settings.database_url, 2)
    try:
        return await reseal_all(pool, Encryptor.from_settings(settings))
    finally:
        await pool.close()


def main() -> None:
    rewritten = asyncio.run(reseal_database(load_settings(HeraldSettings)))
    logger.info("reseal_done", rewritten=rewritten)


if __name__ == "__main__":
    main()
