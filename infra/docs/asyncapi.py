"""The AsyncAPI 3 document of Herald's Kafka topics, made from what the Kafka reference is made from.

Each topic (``shared.topics``) is a channel; its contract is the payload, an Avro schema the document
refers to beside it (``schemas/<Name>.avsc``, as ``schemas/`` holds it); its key, headers, producers and
consumers come from ``infra.docs.kafka``: each service that produces or consumes a topic is an operation.
``python -m infra.docs.asyncapi DIR`` writes the document and its schemas under DIR as the docs site
ships them, for ``make contract`` to validate.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from infra.docs.kafka import CLOCK_HEADERS, ENCODING, HEADERS, REQUEST_HEADERS, TOPIC_DOCS, TopicDoc, load, topic_names
from shared.codec import SCHEMA_DIR
from shared.config import HeraldSettings
from shared.kafka.connection import KafkaConnectionSettings
from shared.kafka.records import KIND
from shared.topics import CONTRACT_VERSION, Topics

# Where the site serves the document, and the schemas it refers to, relative to it.
DOCUMENT_PATH = "reference/asyncapi.yaml"
SCHEMA_REFS = "schemas"
AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"
KAFKA_BINDING_VERSION = "0.5.0"
PREFIX = HeraldSettings.model_fields["topic_prefix"]
BOOTSTRAP = KafkaConnectionSettings.model_fields["kafka_bootstrap_servers"].default


def _message(doc: TopicDoc) -> dict[str, Any]:
    headers: dict[str, dict[str, Any]] = {
        name: {"type": "string", "description": what} for name, what in HEADERS.items()
    }
    headers[KIND]["examples"] = [doc.kind]
    if doc.contract == "NotificationRequest":
        headers |= {name: {"type": "string", "description": what} for name, what in REQUEST_HEADERS.items()}
    if doc.contract == "RoutableNotification" or doc.contract.endswith("Delivery"):
        headers |= {name: {"type": "string", "description": what} for name, what in CLOCK_HEADERS.items()}
    return {
        "name": doc.contract,
        "title": doc.contract,
        "summary": load(doc.contract).get("doc", ""),
        "description": f"{ENCODING}. Produced by: {'; '.join(map(str, doc.producers))}.",
        "contentType": "application/octet-stream",
        "headers": {"type": "object", "properties": headers},
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": {"$ref": f"{SCHEMA_REFS}/{doc.contract}.avsc"}},
        "bindings": {
            "kafka": {"key": {"type": "string", "description": doc.key}, "bindingVersion": KAFKA_BINDING_VERSION}
        },
    }


def _operation(service: str, action: str, name: str, doc: TopicDoc, case: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{doc.contract}"}],
        "tags": [{"name": service}],
    }
    if case:
        operation["summary"] = case
    if action == "receive":
        group = {"type": "string", "description": "`<prefix>.<service>`", "examples": [Topics("herald").group(service)]}
        operation["bindings"] = {"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def document() -> dict[str, Any]:
    """The AsyncAPI document: every topic, its message and each service's operation on it."""
    addresses = topic_names(Topics("{prefix}"))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, doc in TOPIC_DOCS.items():
        channels[name] = {
            "address": addresses[name],
            "title": name,
            "description": f"Consumed by {doc.consumers}; key: {doc.key}.",
            "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
            "messages": {doc.contract: {"$ref": f"#/components/messages/{doc.contract}"}},
        }
        for writers in doc.producers:
            for service in writers.services:
                operations[f"{service}.send.{name}"] = _operation(service, "send", name, doc, writers.case)
        operations[f"{doc.consumers}.receive.{name}"] = _operation(doc.consumers, "receive", name, doc, "")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Herald",
            "version": str(CONTRACT_VERSION),
            "description": (
                "Herald's Kafka topics: what each carries, who produces and consumes it. "
                f"{ENCODING}; the payload schemas are Herald's `schemas/*.avsc`. Keys and headers are UTF-8."
            ),
        },
        "servers": {
            "local": {
                "host": BOOTSTRAP,
                "protocol": "kafka",
                "description": "The local stack's broker (`make up`); `HERALD_KAFKA_BOOTSTRAP_SERVERS` names another.",
            }
        },
        "defaultContentType": "application/octet-stream",
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "prefix": {"default": PREFIX.default, "examples": [PREFIX.default], "description": PREFIX.description}
            },
            "messages": {doc.contract: _message(doc) for doc in TOPIC_DOCS.values()},
        },
    }


def render() -> str:
    """The document as YAML."""
    text: str = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=120)
    return text


def site_files() -> dict[str, bytes]:
    """The document and the schemas it refers to, by their paths in the site."""
    folder = f"{Path(DOCUMENT_PATH).parent}/{SCHEMA_REFS}"
    schemas = {f"{folder}/{path.name}": path.read_bytes() for path in sorted(SCHEMA_DIR.glob("*.avsc"))}
    return {DOCUMENT_PATH: render().encode(), **schemas}


def write(directory: Path) -> Path:
    """Write :func:`site_files` under ``directory``; the document's path."""
    for path, content in site_files().items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return directory / DOCUMENT_PATH


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
