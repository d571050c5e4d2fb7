"""Wires the archiver: Postgres -> archive objects (a folder or S3), one pass (a CronJob) or a pass every
``HERALD_ARCHIVE_INTERVAL_S`` (a service with an ops endpoint)."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog

from services.archiver.archiver import Archiver
from services.archiver.settings import ArchiverSettings
from services.archiver.store import open_store
from shared import service
from shared.config import load_settings
from shared.crypto import Encryptor
from shared.storage.database import check, create_pool

SERVICE = "archiver"

log = structlog.get_logger(__name__)


async def archive_once(archiver: Archiver) -> None:
    """One pass; SIGTERM or SIGINT ends it after the batch in hand. Exits with status 1 if it fails."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await archiver.archive(stopping=stopping)
    except Exception:
        # Nothing of the failed batch was deleted: the next run archives it.
        log.exception("archive_failed")
        raise SystemExit(1) from None


async def serve() -> None:
    settings = load_settings(ArchiverSettings)
    # Dead letters still in clear (not resealed yet) are sealed before they are archived.
    encryptor = Encryptor.from_settings(settings)
    service.setup(SERVICE, settings)
    store = open_store(settings.archive_url, endpoint_url=settings.archive_endpoint_url, region=settings.archive_region)
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    archiver = Archiver(
        pool,
        store,
        encryptor,
        retention=timedelta(days=settings.retention_days),
        batch_size=settings.archive_batch_size,
    )
    try:
        if settings.archive_interval_s == 0:
            await archive_once(archiver)
        else:
            await service.serve_consumers(
                settings,
                [],
                checks={"postgres": lambda: check(pool)},
                background=[lambda stopping: archiver.run(stopping, settings.archive_interval_s)],
            )
    finally:
        await pool.close()


def main() -> None:
    service.run(serve)
