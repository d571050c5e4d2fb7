"""The accepted->delivered service level indicator, from the status store on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from services.status.main import status_writer
from shared import status
from shared.config import HeraldSettings
from shared.kafka.records import Consumed
from shared.storage.database import Pool
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.factories import status_event

pytestmark = pytest.mark.integration


def delivered_observations(channel: str) -> tuple[float, float]:
    """(count, sum) of ``herald_accepted_to_delivered_seconds`` for ``channel`` in this process."""
    labels = {"channel": channel}
    count = REGISTRY.get_sample_value("herald_accepted_to_delivered_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("herald_accepted_to_delivered_seconds_sum", labels) or 0.0
    return count, total


async def test_delivery_is_timed_from_acceptance_and_a_scheduled_notification_is_left_out(
    db_pool: Pool, settings: HeraldSettings
) -> None:
    writer = status_writer(db_pool, ENCRYPTOR, Topics(settings.topic_prefix), endpoints_cache_s=0)
    channel = f"email-{uuid.uuid4().hex[:6]}"  # a label of this test's own: other tests observe email
    accepted_at = datetime.now(UTC) - timedelta(minutes=5)
    prompt, scheduled = str(uuid.uuid4()), str(uuid.uuid4())
    earlier = [
        status_event(prompt, status.ACCEPTED, accepted_at),
        status_event(scheduled, status.ACCEPTED, accepted_at),
        status_event(scheduled, status.SCHEDULED, accepted_at),
    ]
    later = [
        status_event(prompt, status.DELIVERED, accepted_at + timedelta(seconds=42), channel=channel, attempt=1),
        status_event(scheduled, status.DELIVERED, accepted_at + timedelta(hours=2), channel=channel, attempt=1),
    ]
    assert await writer([Consumed("status", 0, i, None, e, b"") for i, e in enumerate(earlier)]) == []
    assert await writer([Consumed("status", 0, 10 + i, None, e, b"") for i, e in enumerate(later)]) == []
    count, total = delivered_observations(channel)
    assert (count, round(total, 3)) == (1, 42)
