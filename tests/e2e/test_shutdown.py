"""SIGTERM to a service while notifications stream through: it hands over cleanly, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.requests import build_request
from tests.e2e.conftest import Pipeline, eventually
from tests.kafka_helpers import wait_until_drained

pytestmark = [pytest.mark.e2e, pytest.mark.fault, pytest.mark.timeout(240)]

COUNT = 400
RATE_PER_S = 200


async def stream_requests(pipeline: Pipeline, ids: list[str], started: asyncio.Event) -> None:
    """Produce COUNT requests at RATE_PER_S, so the stream is still flowing when the signal lands."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.broker.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        for batch_start in range(0, COUNT, RATE_PER_S // 10):
            futures = []
            for _ in range(RATE_PER_S // 10):
                request = build_request(
                    tenant_id="dev",
                    channels=["email"],
                    recipient={"email": f"r{uuid.uuid4().hex[:10]}@example.com"},
                    content={"subject": "stream", "text": "x"},
                )
                ids.append(request["notification_id"])
                record = pipeline.request_record(request)
                futures.append(
                    await producer.send(record.topic, record.value, key=record.key, headers=list(record.headers))
                )
            await asyncio.gather(*futures)
            if batch_start >= COUNT // 4:
                started.set()
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()


async def statuses(database_url: str, ids: list[str]) -> dict[str | None, int]:
    """How many of ``ids`` are in each status (None: no row at all)."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT id::text, status FROM notifications WHERE id = ANY($1::uuid[])", ids)
    finally:
        await connection.close()
    found = {row["id"]: row["status"] for row in rows}
    return dict(Counter(found.get(i) for i in ids))


async def sent_count(database_url: str, ids: list[str]) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM notifications WHERE id = ANY($1::uuid[]) AND status = 'sent'", ids
        )
        return count
    finally:
        await connection.close()


@pytest.mark.parametrize("service", ["ingest", "router", "sender-email", "status"])
async def test_sigterm_mid_stream_loses_nothing_and_sends_nothing_twice(pipeline: Pipeline, service: str) -> None:
    ids: list[str] = []
    flowing = asyncio.Event()
    stream = asyncio.create_task(stream_requests(pipeline, ids, flowing))
    await asyncio.wait_for(flowing.wait(), 30)

    process = pipeline.processes[service]
    process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(process.wait, 30)
    assert exit_code == 0, f"{service} did not shut down cleanly: {process.output_tail(20)}"
    # From this (the main) thread: a child started from a worker thread dies when that thread ends.
    pipeline.restart(service)
    await stream

    try:
        await eventually(
            lambda: True if set(ids) <= pipeline.mailed().keys() else None, 60, f"all {COUNT} mails after {service}"
        )
    except AssertionError:
        mailed = pipeline.mailed()
        missing = [i for i in ids if i not in mailed]
        found = await statuses(pipeline.database_url, missing)
        raise AssertionError(f"{len(missing)} of {COUNT} never delivered; their statuses: {found}") from None

    async def all_sent() -> bool | None:
        return True if await sent_count(pipeline.database_url, ids) == COUNT else None

    await eventually(all_sent, 60, "every status to be stored as sent")
    # Once every consumer committed everything, nothing can be redelivered: the counts are final.
    topics, bootstrap = pipeline.topics, pipeline.broker.bootstrap_servers
    for group, topic in [
        ("ingest", topics.requests),
        ("router", topics.routable),
        ("sender-email", topics.send("email")),
        ("status", topics.status),
    ]:
        await wait_until_drained(bootstrap, topics.group(group), topic)

    mails = pipeline.mailed()
    delivered = sum(1 for i in ids if mails[i] >= 1)
    duplicated = sum(1 for i in ids if mails[i] > 1)
    lost = COUNT - delivered
    print(f"SIGTERM {service}: sent {COUNT}, delivered {delivered}, duplicated {duplicated}, lost {lost}")
    assert (delivered, duplicated, lost) == (COUNT, 0, 0)
