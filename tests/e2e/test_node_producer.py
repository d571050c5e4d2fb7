"""The Node.js example producer (examples/node-producer, written from the documentation alone), run as its
README says with a producer key made through the API: its record is what the contract says, and it is sent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid

import pytest

from infra.local.stack import REPO_ROOT
from shared.messages import NOTIFICATION_REQUEST
from tests.e2e.conftest import Pipeline
from tests.kafka_helpers import find_record

pytestmark = pytest.mark.e2e

EXAMPLE = REPO_ROOT / "examples" / "node-producer"
TENANT = "dev"  # the tenant of the gateway's dev key


def node_command() -> list[str]:
    """How to run the example; fails (CI must run it, not skip it) when Node.js or its packages are missing."""
    node = shutil.which("node")
    packages = json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    missing = [name for name in packages if not (EXAMPLE / "node_modules" / name).is_dir()]
    if node is None or missing:
        pytest.fail(f"the Node.js example needs node and its packages ({node=}, {missing=}): run `make install`")
    return [node, str(EXAMPLE / "produce.mjs")]


async def run_example(pipeline: Pipeline, credential: str, email: str) -> str:
    """Run the example once against the pipeline's broker and topics; the notification id it printed."""
    process = await asyncio.create_subprocess_exec(
        *node_command(),
        email,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "HERALD_KAFKA_BOOTSTRAP_SERVERS": pipeline.broker.bootstrap_servers,
            "HERALD_TOPIC_PREFIX": pipeline.namespace,
            "HERALD_TENANT": TENANT,
            "HERALD_PRODUCER_KEY": credential,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().strip()


async def test_the_node_example_produces_a_signed_request_that_is_delivered(pipeline: Pipeline) -> None:
    async with pipeline.client() as client:
        created = await client.post("/api/v1/producer-keys", json={"name": "node example"})
    assert created.status_code == 201, created.text
    key = created.json()
    email = f"node-{uuid.uuid4().hex[:8]}@example.com"

    notification_id = await run_example(pipeline, key["credential"], email)

    assert str(uuid.UUID(notification_id)) == notification_id
    await pipeline.wait_for_status(notification_id, "sent", timeout=60)
    mail = await pipeline.wait_for_mail(notification_id)
    assert (mail.rcpt_tos, mail.subject) == ((email,), "Hello Ada")
    # The record as produced: the documented key and headers, decoded with Herald's own contract.
    record = await find_record(
        pipeline.broker.bootstrap_servers, pipeline.topics.requests, lambda r: r.key == f"{TENANT}:{email}".encode()
    )
    request = NOTIFICATION_REQUEST.decode(record.value)
    assert (request["notification_id"], request["tenant_id"], request["recipient"]["email"]) == (
        notification_id,
        TENANT,
        email,
    )
    headers = {name: value.decode() for name, value in record.headers}
    assert (headers["herald-tenant"], headers["herald-kind"]) == (TENANT, "notification_request")
    assert headers["herald-signature"].startswith(f"v1,{key['id']},")
