"""Sending failed deliveries again by hand: one dead letter, a notification's newest, or many by filter."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from services.dead_letters.replayer import Replayer
from services.gateway.settings import GatewaySettings
from shared import status
from shared.kafka.producer import MessageProducer
from shared.messages import EMAIL_DELIVERY, STATUS_EVENT
from shared.status_events import StatusReporter
from shared.storage.database import Pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.replays import ReplayStore
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import assert_problem, auth
from tests.integration.test_dead_letters import seed, stored_letter
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

API = "/api/v1/dead-letters"


def letter_ids(client: TestClient) -> list[str]:
    return [item["id"] for item in client.get(API, headers=auth()).json()["items"]]


def test_a_dead_lettered_delivery_is_sent_again_once_one_attempt_on(
    client: TestClient, gateway_settings: GatewaySettings, database_url: str
) -> None:
    topics = Topics(gateway_settings.topic_prefix)
    letter = stored_letter(original_topic=topics.send("email"))
    seed(database_url, [letter])
    [letter_id] = letter_ids(client)

    first = client.post(f"{API}/{letter_id}/retry", headers=auth())
    again = client.post(f"{API}/{letter_id}/retry", headers=auth())

    assert first.status_code == 202, first.text
    assert first.json() == {"dead_letter_id": letter_id, "status": "requeued"}
    assert_problem(again, 409)
    bootstrap = gateway_settings.kafka_bootstrap_servers
    [sent] = asyncio.run(read_topic(bootstrap, topics.send("email"), 1))
    before = EMAIL_DELIVERY.decode(letter.original_payload)
    assert EMAIL_DELIVERY.decode(sent.value) == {**before, "attempt": before["attempt"] + 1}
    [event] = [STATUS_EVENT.decode(r.value) for r in asyncio.run(read_topic(bootstrap, topics.status, 1))]
    assert (event["status"], event["delivery_id"], event["attempt"]) == (
        status.REQUEUED,
        before["delivery_id"],
        before["attempt"] + 1,
    )


def test_a_failed_request_is_not_sent_again_and_stays_unsent(
    client: TestClient, gateway_settings: GatewaySettings, database_url: str
) -> None:
    topics = Topics(gateway_settings.topic_prefix)
    seed(database_url, [stored_letter(original_topic=topics.requests)])
    [letter_id] = letter_ids(client)

    problem = assert_problem(client.post(f"{API}/{letter_id}/retry", headers=auth()), 409)

    assert "only failed deliveries" in problem["detail"]
    # Still unsent: the refusal rolled the mark back.
    assert_problem(client.post(f"{API}/{letter_id}/retry", headers=auth()), 409)
    assert_problem(client.post(f"{API}/{uuid.uuid4()}/retry", headers=auth()), 404)


def test_a_notification_is_sent_again_from_its_newest_dead_letter(
    client: TestClient, gateway_settings: GatewaySettings, database_url: str
) -> None:
    topics = Topics(gateway_settings.topic_prefix)
    letter = stored_letter(original_topic=topics.send("email"))
    seed(database_url, [letter])
    assert letter.notification_id is not None

    response = client.post(f"/api/v1/notifications/{letter.notification_id}/retry", headers=auth())

    assert response.status_code == 202, response.text
    assert response.json()["dead_letter_id"] == letter_ids(client)[0]
    # Nothing left to send again; an unknown notification is a 404.
    assert_problem(client.post(f"/api/v1/notifications/{letter.notification_id}/retry", headers=auth()), 404)
    assert_problem(client.post(f"/api/v1/notifications/{uuid.uuid4()}/retry", headers=auth()), 404)


async def test_a_replay_sends_every_matching_delivery_again_and_counts_the_rest(
    client: TestClient, gateway_settings: GatewaySettings, db_pool: Pool, database_url: str
) -> None:
    topics = Topics(gateway_settings.topic_prefix)
    deliveries = [stored_letter(original_topic=topics.send("email")) for _ in range(3)]
    # A request that failed matches no channel filter; unfiltered, it is counted as skipped.
    await DeadLetterRepository(db_pool, ENCRYPTOR).store([*deliveries, stored_letter(original_topic=topics.routable)])
    asked = client.post(f"{API}/replays", json={}, headers=auth())
    assert asked.status_code == 202, asked.text
    assert (asked.json()["status"], asked.headers["Location"]) == ("pending", asked.json()["links"]["self"])
    # Dead-lettered after the replay was asked for: not part of it.
    await DeadLetterRepository(db_pool, ENCRYPTOR).store([stored_letter(original_topic=topics.send("email"))])

    producer = MessageProducer(gateway_settings, client_id="test-replayer")
    await producer.start()
    try:
        replayer = Replayer(
            DeadLetterRepository(db_pool, ENCRYPTOR),
            ReplayStore(db_pool),
            producer,
            topics,
            StatusReporter(topics.status, "dead-letters"),
            batch_size=2,
        )
        replay = await ReplayStore(db_pool).claim(stale_after_s=60)
        assert replay is not None
        await replayer.finish(replay)
    finally:
        await producer.stop()

    progress = client.get(asked.json()["links"]["self"], headers=auth()).json()
    assert (progress["status"], progress["requeued"], progress["skipped"]) == ("done", 3, 1)
    sent = await read_topic(gateway_settings.kafka_bootstrap_servers, topics.send("email"), 3)
    assert {EMAIL_DELIVERY.decode(r.value)["delivery_id"] for r in sent} == {
        EMAIL_DELIVERY.decode(d.original_payload)["delivery_id"] for d in deliveries
    }
    assert await ReplayStore(db_pool).claim(stale_after_s=60) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/replays/not-a-uuid"),
        ("POST", f"{API}/not-a-number/retry"),
        ("DELETE", f"{API}/not-a-number"),
        ("DELETE", "/api/v1/recipients/ada/devices/not-a-uuid"),
    ],
)
def test_an_id_that_cannot_name_anything_is_404(client: TestClient, method: str, path: str) -> None:
    assert_problem(client.request(method, path, headers=auth()), 404)


async def test_a_replay_keeps_its_time_bounds(client: TestClient, db_pool: Pool) -> None:
    after = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    asked = client.post(f"{API}/replays", json={"created_after": after.isoformat()}, headers=auth())
    assert asked.status_code == 202, asked.text
    replay = await ReplayStore(db_pool).claim(stale_after_s=60)
    assert replay is not None
    assert (replay.where.created_after, replay.where.created_before) == (after, None)
