"""The Kafka reference: every topic (from ``shared.topics``) with its key, headers and schema (``schemas/``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from infra.docs.markdown import code, table
from shared.codec import HISTORY_DIR, SCHEMA_DIR
from shared.kafka.records import ACCEPTED_AT, KIND, SIGNATURE, TENANT, TRACEPARENT
from shared.topics import CHANNELS, LANES, Topics

# The key most records carry: one person's notifications share a partition and stay in order.
PERSON_KEY = "`tenant:person`: the recipient's user id, else email, else phone, else the notification id"
INHERITED_KEY = "the key of the message it is about"
SENDERS = tuple(f"sender-{channel}" for channel in CHANNELS)
# What a value is, on every topic.
ENCODING = (
    "Every value is an Avro record, single-object encoded: `C3 01`, the writer schema's 8-byte CRC-64-AVRO "
    "fingerprint (little-endian), then the Avro binary body"
)
HEADERS: Mapping[str, str] = {
    TENANT: "the tenant id (UTF-8); Herald's producers set it on every message",
    KIND: "what the record is, UTF-8 (each topic's kind is given with it)",
    TRACEPARENT: "the W3C trace context, when the message is part of a trace",
}
# Only records on the way to a provider carry it (routable and deliveries).
CLOCK_HEADERS: Mapping[str, str] = {
    ACCEPTED_AT: "routable and delivery records only: when ingest accepted the notification (or a scheduled one "
    "fell due), milliseconds since the epoch in ASCII digits; the sender measures accepted->sent from it",
}
# Only a request carries it: ingest dead-letters one without a valid one (docs/guides/producer-keys.md).
REQUEST_HEADERS: Mapping[str, str] = {
    SIGNATURE: "requests only: the request's proof of its tenant, `v1,<producer key id>,<base64url HMAC-SHA256 of "
    "the value>` made with a producer key of the tenant it names",
}


@dataclass(frozen=True)
class Writers:
    """Services that produce to a topic, in what case; ``label`` names them on the page instead of their list."""

    services: tuple[str, ...]
    case: str = ""
    label: str = ""

    def __str__(self) -> str:
        named = self.label or ", ".join(self.services)
        return f"{named} ({self.case})" if self.case else named


@dataclass(frozen=True)
class TopicDoc:
    """What a topic carries, who writes and reads it."""

    contract: str
    key: str
    kind: str
    producers: tuple[Writers, ...]
    consumers: str


def _send_topic(channel: str) -> TopicDoc:
    producers = [
        Writers(("router",)),
        Writers(("retry",), "a retry when due"),
        Writers(("gateway", "dead-letters"), "a dead letter sent again"),
    ]
    if channel == "webhook":
        case = "webhook endpoints' events, keyed `tenant:endpoint id`, kind `webhook_delivery`"
        producers.append(Writers(("status",), case))
    return TopicDoc(
        f"{channel.capitalize()}Delivery", INHERITED_KEY, f"delivery.{channel}", tuple(producers), f"sender-{channel}"
    )


# Every topic but the DLQ, whose producers are all of these topics' consumers.
_PIPELINE_DOCS: Mapping[str, TopicDoc] = {
    "requests": TopicDoc(
        "NotificationRequest",
        PERSON_KEY,
        "notification_request",
        (
            Writers(("gateway",)),
            Writers(("upstream",), "`shared.client` or any Kafka client", label="upstream services"),
            Writers(("retry",), "each occurrence of a recurring series, kind `request`"),
        ),
        "ingest",
    ),
    "routable": TopicDoc(
        "RoutableNotification",
        INHERITED_KEY,
        "routable",
        (Writers(("ingest",)), Writers(("retry",), "a `send_at` notification when due")),
        "router",
    ),
    **{f"send.{channel}": _send_topic(channel) for channel in CHANNELS},
    "status": TopicDoc(
        "StatusEvent",
        f"{INHERITED_KEY}; the gateway's own events (tracking, provider callbacks, cancellations) "
        "`tenant:notification id`",
        "status_event",
        (Writers(("gateway", "ingest", "router", *SENDERS, "dead-letters"), "each step of a notification"),),
        "status",
    ),
    "delay": TopicDoc(
        "DelayedMessage",
        INHERITED_KEY,
        "delayed",
        (
            Writers(SENDERS, "retries with backoff", label="senders"),
            Writers(("ingest",), "`send_at` and recurring notifications"),
        ),
        "retry",
    ),
}
# The high and low lanes of a prioritised stream carry what its normal lane (the stream's own name) does.
_LANE_DOCS: Mapping[str, TopicDoc] = {
    f"{stream}.{lane}": _PIPELINE_DOCS[stream]
    for stream in ("requests", "routable", *(f"send.{channel}" for channel in CHANNELS))
    for lane in LANES
    if lane != "normal"
}
# The topic names come from shared.topics; a test fails when one of them is missing here.
TOPIC_DOCS: Mapping[str, TopicDoc] = {
    **_PIPELINE_DOCS,
    **_LANE_DOCS,
    "dlq": TopicDoc(
        "DeadLetter",
        INHERITED_KEY,
        "dead_letter",
        (
            Writers(
                (*(doc.consumers for doc in _PIPELINE_DOCS.values()), "dead-letters"),
                "the consumer loop, with the original's topic, partition, offset, key, headers and bytes",
                label="every consumer",
            ),
        ),
        "dead-letters",
    ),
}


def topic_names(topics: Topics) -> dict[str, str]:
    """Each topic's name in ``TOPIC_DOCS`` (``send.email``) and its full name (``herald.send.email.v1``)."""
    prefix, suffix = f"{topics.prefix}.", f".v{topics.requests.rsplit('.v', 1)[1]}"
    return {name.removeprefix(prefix).removesuffix(suffix): name for name in topics.all()}


def load(name: str) -> Any:
    """A contract's current schema as written in ``schemas/<name>.avsc``."""
    return orjson.loads((SCHEMA_DIR / f"{name}.avsc").read_bytes())


def _type(schema: Any) -> str:
    if isinstance(schema, list):
        others = [_type(branch) for branch in schema if branch != "null"]
        return ("optional " if "null" in schema else "") + " or ".join(others)
    if isinstance(schema, str):
        return schema
    if schema.get("logicalType") == "timestamp-millis":
        return "timestamp (ms)"
    kind = schema["type"]
    if kind == "enum":
        return "enum " + ", ".join(schema["symbols"])
    if kind == "array":
        return f"array of {_type(schema['items'])}"
    if kind == "map":
        return f"map of {_type(schema['values'])}"
    if kind == "record":
        return f"record {schema['name']}"
    return str(kind)


def _records(schema: Any) -> Iterator[Any]:
    branches = schema if isinstance(schema, list) else [schema]
    for branch in branches:
        if isinstance(branch, dict):
            if branch.get("type") == "record":
                yield branch
            elif branch.get("type") == "array":
                yield from _records(branch["items"])
            elif branch.get("type") == "map":
                yield from _records(branch["values"])


def _fields(record: Any, path: str = "") -> Iterator[list[str]]:
    for field in record["fields"]:
        name = f"{path}{field['name']}"
        default = code(orjson.dumps(field["default"]).decode()) if "default" in field else "required"
        yield [code(name), _type(field["type"]), default, field.get("doc", "")]
        for nested in _records(field["type"]):
            yield from _fields(nested, f"{name}.")


def _schema_section(name: str) -> str:
    schema = load(name)
    versions = sorted(path.stem for path in (HISTORY_DIR / name).glob("v*.avsc"))
    lines = [
        f"### {name}",
        f"{schema.get('doc', '')} Namespace `{schema['namespace']}`; released versions: {', '.join(versions)} "
        f"(`schemas/history/{name}/`), all readable by the current schema (`schemas/{name}.avsc`).",
        table(["field", "type", "default", "what"], list(_fields(schema))),
    ]
    return "\n\n".join(lines)


def render() -> str:
    """The whole Kafka reference page."""
    names = topic_names(Topics("herald"))
    rows = [
        [
            code(names[name]),
            f"[{doc.contract}](#{doc.contract.lower()})",
            doc.key,
            code(doc.kind),
            "; ".join(map(str, doc.producers)),
            doc.consumers,
        ]
        for name, doc in TOPIC_DOCS.items()
    ]
    headers_table = table(
        ["header", "value"],
        [[code(name), what] for name, what in {**HEADERS, **REQUEST_HEADERS, **CLOCK_HEADERS}.items()],
    )
    contracts = sorted({doc.contract for doc in TOPIC_DOCS.values()})
    parts = [
        "# Kafka reference",
        "Generated from `shared/topics.py`, `shared/kafka/records.py` and `schemas/*.avsc` "
        "(`infra/docs/kafka.py`). Topic names are `<HERALD_TOPIC_PREFIX>.<name>.v1`, shown with the default "
        "prefix `herald`; each service's consumer group is `<prefix>.<service>` (`herald.router`), and its "
        f"replicas share the topic's partitions. {ENCODING} (`schemas/README.md` has the rules for changing a "
        "schema, [Kafka from another language](../getting-started/kafka-other-languages.md) a producer in "
        "Node.js). The same contract as an [AsyncAPI 3 document](asyncapi.yaml), for code generators and "
        "other tools, is made from the same sources (`infra/docs/asyncapi.py`).",
        "## Topics",
        "Requests, routable notifications and each channel's deliveries flow in three priority lanes, by the "
        "record's `priority`: the normal lane is the stream's own topic (`herald.send.email.v1`, where a producer "
        "that knows no lanes writes), high and low have their own (`herald.send.email.high.v1`). One consumer "
        "group reads a stream's three lanes and takes each batch from the highest lane with records waiting, "
        "with one batch in eight kept for each lower lane so none starves (`shared/kafka/lanes.py`); a retry "
        "goes back to the lane it came from.",
        table(["topic", "schema", "key", f"{code(KIND)} header", "produced by", "consumed by"], rows),
        "## Headers",
        headers_table,
        "A dead letter keeps only `traceparent` and `herald-tenant` of the original's headers (all of them "
        "are inside the record, in `original_headers`).",
        "## Schemas",
        *(_schema_section(name) for name in contracts),
    ]
    return "\n\n".join(parts) + "\n"
