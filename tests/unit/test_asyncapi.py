"""The AsyncAPI document: every topic a channel, every contract a payload read from the file the site ships."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.docs import asyncapi
from shared.codec import SCHEMA_DIR
from shared.kafka.records import ACCEPTED_AT, KIND, SIGNATURE, TENANT, TRACEPARENT
from shared.topics import Topics

pytestmark = pytest.mark.unit

SCHEMA_NAMES = {path.stem for path in SCHEMA_DIR.glob("*.avsc")}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The document as the site ships it, written out with its schemas, and its path."""
    path = asyncapi.write(tmp_path_factory.mktemp("site"))
    return path, yaml.safe_load(path.read_text())


def references(node: Any) -> Iterator[str]:
    """Every ``$ref`` in a part of the document."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_topic_is_a_channel(shipped: tuple[Path, Any]) -> None:
    _, document = shipped
    assert document["asyncapi"] == "3.0.0"
    assert sorted(channel["address"] for channel in document["channels"].values()) == sorted(Topics("{prefix}").all())


def test_every_schema_is_a_payload_read_from_the_file_beside_the_document(shipped: tuple[Path, Any]) -> None:
    path, document = shipped
    messages = document["components"]["messages"]
    assert set(messages) == SCHEMA_NAMES
    for name, message in messages.items():
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/vnd.apache.avro;version=1.9.0"
        assert (path.parent / payload["schema"]["$ref"]).read_bytes() == (SCHEMA_DIR / f"{name}.avsc").read_bytes()


def test_every_reference_inside_the_document_resolves(shipped: tuple[Path, Any]) -> None:
    _, document = shipped
    inside = [ref for ref in references(document) if ref.startswith("#/")]
    assert len(inside) > 3 * len(SCHEMA_NAMES)
    for ref in inside:
        node = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]


def test_every_message_names_its_key_and_headers(shipped: tuple[Path, Any]) -> None:
    _, document = shipped
    request = document["components"]["messages"]["NotificationRequest"]
    # A request alone carries its proof of its tenant.
    assert set(request["headers"]["properties"]) == {TENANT, KIND, TRACEPARENT, SIGNATURE}
    assert request["headers"]["properties"][KIND]["examples"] == ["notification_request"]
    assert request["bindings"]["kafka"]["key"]["description"].startswith("`tenant:person`")
    for name, message in document["components"]["messages"].items():
        if name == "RoutableNotification" or name.endswith("Delivery"):
            # On the way to a provider: the clock of the accepted->sent service level indicator.
            assert set(message["headers"]["properties"]) == {TENANT, KIND, TRACEPARENT, ACCEPTED_AT}
        elif name != "NotificationRequest":
            assert set(message["headers"]["properties"]) == {TENANT, KIND, TRACEPARENT}
        assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_each_service_has_its_operations(shipped: tuple[Path, Any]) -> None:
    _, document = shipped
    operations = document["operations"]
    upstream = operations["upstream.send.requests"]
    assert upstream["action"] == "send"
    assert upstream["messages"] == [{"$ref": "#/channels/requests/messages/NotificationRequest"}]
    ingest = operations["ingest.receive.requests"]
    assert ingest["bindings"]["kafka"]["groupId"]["examples"] == ["herald.ingest"]
    assert operations["sender-sms.receive.send.sms"]["channel"] == {"$ref": "#/channels/send.sms"}
    assert operations["status.send.send.webhook"]["action"] == "send"
    # The DLQ: every service that consumes a topic can dead-letter a message from it.
    receivers = {operation["tags"][0]["name"] for operation in operations.values() if operation["action"] == "receive"}
    dead_letterers = {
        operation["tags"][0]["name"]
        for operation in operations.values()
        if operation["action"] == "send" and operation["channel"] == {"$ref": "#/channels/dlq"}
    }
    assert dead_letterers == receivers
