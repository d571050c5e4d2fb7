"""The topics job, ``python -m shared.kafka.admin``: brings the cluster's topics to their declarations.

It creates the missing topics (shared/kafka/topic_specs.py says with what), raises the partition count
of existing ones to the declared one (never lowers it) and sets the declared configs where they differ,
leaving every other config alone; run again, it changes nothing and says so. A broker that does not
implement a request it needs (Tansu 0.6 has no CreatePartitions) is named in one log line, and the rest
is still done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String
from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from shared.config import HeraldSettings, load_settings
from shared.kafka.connection import client_options
from shared.kafka.topic_specs import TopicSpec, TopicState, declared_topics, plan_topics
from shared.observability.logging import configure_logging
from shared.topics import Topics

log = structlog.get_logger(__name__)

# A short fetch that only asks for high watermarks (Tansu leaves every topic out of the answer to a
# fetch that may not wait at all).
FETCH_MAX_WAIT_MS = 10
FETCH_MAX_BYTES = 64 * 1024
# Kafka error codes the job expects: a topic missing from a metadata answer, and one that another run of
# the job created in the meantime.
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36
# IncrementalAlterConfigs' operation that sets a value (the others delete, append to or subtract from one).
SET_CONFIG = 0


class AdminSettings(HeraldSettings):
    kafka_topic_partitions: int = Field(
        default=8,
        ge=1,
        description=(
            "Partitions per topic: they bound how many members of one consumer group can share the work. The topics"
            " job raises an existing topic's count to it, never lowers it."
        ),
    )
    kafka_topic_partitions_by_name: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description=(
            "Partitions of particular topics, by name without prefix and version, over HERALD_KAFKA_TOPIC_PARTITIONS:"
            ' JSON, e.g. {"send.email": 24} for more sender-email replicas than the other services have.'
        ),
    )
    kafka_replication_factor: int = Field(
        default=1,
        ge=1,
        description=(
            "Replicas per topic. Production: 3, and min.insync.replicas=2 is then set, so acks=all survives one broker"
            " down."
        ),
    )

    @field_validator("kafka_topic_partitions_by_name")
    @classmethod
    def _known_topics(cls, counts: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        """Refuse a partition count for a topic Herald does not have (a typo would go unnoticed)."""
        names = Topics(info.data.get("topic_prefix", "herald")).by_name()
        unknown = sorted(set(counts) - set(names))
        if unknown:
            raise ValueError(f"names no topic of Herald: {unknown}; its topics: {sorted(names)}")
        return counts

    def topic_specs(self) -> list[TopicSpec]:
        """Every topic as declared for this installation."""
        return declared_topics(
            Topics(self.topic_prefix),
            partitions=self.kafka_topic_partitions,
            replication_factor=self.kafka_replication_factor,
            partitions_by_name=self.kafka_topic_partitions_by_name,
        )


class TopicsJobError(Exception):
    """The topics job cannot bring the topics to their declarations; the message says why."""


class StrayRecordsError(TopicsJobError):
    """The broker holds records for topics it does not have: creating those topics now would lose records."""


@dataclass
class TopicsReport:
    """What one run of the topics job did, and what it could not do."""

    topics: int
    created: list[str] = field(default_factory=list)
    partitions_raised: dict[str, int] = field(default_factory=dict)
    configs_changed: dict[str, dict[str, str]] = field(default_factory=dict)
    # One line per request the broker does not implement, naming what was therefore left undone.
    unsupported: list[str] = field(default_factory=list)
    # What differs from the declarations and the job does not change (see plan_topics).
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.partitions_raised or self.configs_changed)

    def summary(self) -> str:
        """One sentence: what changed, or that nothing did, and whether anything is left unlike its declaration."""
        if not (self.changed or self.unsupported or self.warnings):
            return f"nothing to change: the {self.topics} topics are as declared"
        done = [
            f"created {len(self.created)}" if self.created else "",
            f"raised the partitions of {len(self.partitions_raised)}" if self.partitions_raised else "",
            f"changed configs of {len(self.configs_changed)}" if self.configs_changed else "",
        ]
        changes = ", ".join(part for part in done if part) or "changed nothing"
        left = "; some are not as declared (see the warnings)" if self.unsupported or self.warnings else ""
        return f"of {self.topics} topics: {changes}{left}"


async def records_without_topic(settings: AdminSettings, partitions: Mapping[str, int]) -> dict[str, int]:
    """How many records the broker holds for each topic of ``partitions`` (topic -> its partition count), topics
    it does not have.

    Apache Kafka holds none: it refuses records for a missing topic. Tansu 0.6 acknowledges and keeps
    them (a producer still writing to a topic the broker lost when it restarted empty), and a topic
    created later starts at offset 0 on top of them: its first produces are refused
    (``ObjectStore(AlreadyExists)``) and a record acknowledged at an offset inside one of their batches
    is never read. A fetch from offset 0 asks, for each partition, how far the broker's log goes.
    """
    client = AIOKafkaClient(**client_options(settings))
    await client.bootstrap()
    try:
        wanted = [(name, [(partition, 0, 1) for partition in range(count)]) for name, count in partitions.items()]
        request = FetchRequest(FETCH_MAX_WAIT_MS, 0, FETCH_MAX_BYTES, 0, wanted)
        response = await client.send(client.get_random_node(), request)
    finally:
        await client.close()
    held = {
        # (partition, error code, high watermark, ...): Kafka answers a missing topic with an error.
        topic: sum(answer[2] for answer in answers if answer[1] == 0 and answer[2] > 0)
        for topic, answers in response.topics
    }
    return {topic: count for topic, count in held.items() if count}


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                ("configs", Array(("name", String("utf-8")), ("config_operation", Int8), ("value", String("utf-8")))),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """Set topic configs, each key on its own (Kafka 2.3+): aiokafka 0.14 has only AlterConfigs, which
    replaces a topic's whole config set, so keys Herald does not declare would fall back to their defaults."""

    API_KEY = 44

    def __init__(self, configs: Mapping[str, Mapping[str, str]]) -> None:
        self._resources = [
            (ConfigResourceType.TOPIC, topic, [(key, SET_CONFIG, value) for key, value in values.items()])
            for topic, values in configs.items()
        ]

    def build(self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]) -> IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


class TopicsAdmin:
    """The requests of the topics job, on one admin client."""

    def __init__(self, admin: AIOKafkaAdminClient) -> None:
        self._admin = admin

    async def describe(self, names: Sequence[str]) -> dict[str, TopicState]:
        """Each of ``names`` that exists, with its partitions, replication factor and configs.

        Configs are asked for whole (no names): Tansu 0.6 drops the connection when a DescribeConfigs names
        the configs it wants.
        """
        existing = {}
        for topic in await self._admin.describe_topics(list(names)):
            if topic["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
                continue
            refuse_on_error(topic["error_code"], f"describing {topic['topic']}")
            existing[topic["topic"]] = topic["partitions"]
        configs: dict[str, dict[str, str]] = {name: {} for name in existing}
        if existing:
            resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in existing]
            for response in await self._admin.describe_configs(resources):
                for resource in response.to_object()["resources"]:
                    refuse_on_error(resource["error_code"], f"reading the configs of {resource['resource_name']}")
                    configs[resource["resource_name"]] = {
                        entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
                    }
        return {
            name: TopicState(len(partitions), len(partitions[0]["replicas"]) if partitions else 0, configs[name])
            for name, partitions in existing.items()
        }

    async def create(self, specs: Sequence[TopicSpec]) -> None:
        response = await self._admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs)) for s in specs]
        )
        for topic, code, message in response.topic_errors:
            # Another run of the job created it meanwhile, from the same declaration.
            if code != TOPIC_ALREADY_EXISTS:
                refuse_on_error(code, f"creating {topic}", message)

    async def add_partitions(self, counts: Mapping[str, int]) -> None:
        try:
            await self._admin.create_partitions({topic: NewPartitions(count) for topic, count in counts.items()})
        except IncompatibleBrokerVersion:
            raise  # a KafkaError too, but one the caller reports as unsupported
        except KafkaError as error:
            raise TopicsJobError(f"the broker refused to add partitions: {error}") from error

    async def set_configs(self, configs: Mapping[str, Mapping[str, str]]) -> None:
        # The admin client's own way to send a request it has no method for (any broker takes topic configs).
        response = await self._admin._send_request(IncrementalAlterConfigsRequest(configs))
        for code, message, _, topic in response.responses:
            refuse_on_error(code, f"setting the configs of {topic}", message)


def refuse_on_error(code: int, doing: str, message: str | None = None) -> None:
    """Raise :class:`TopicsJobError` naming the Kafka error ``code`` (0 is none) met while ``doing``."""
    if code:
        error = for_code(code)
        raise TopicsJobError(f"the broker refused {doing}: {error.__name__} ({message or error.description})")


async def supported(
    report: TopicsReport, request: str, leaves: str, step: Callable[[], Coroutine[Any, Any, None]]
) -> bool:
    """Run ``step``; if the broker does not implement ``request``, note in ``report`` that this ``leaves`` something
    undone, and return False."""
    try:
        await step()
    except IncompatibleBrokerVersion:
        report.unsupported.append(f"the broker does not support {request}: {leaves}")
        return False
    return True


async def apply_topics(settings: AdminSettings) -> TopicsReport:
    """Bring the cluster's topics to their declarations (see the module's docstring).

    Raises:
        StrayRecordsError: the broker holds records for a missing topic (see :func:`records_without_topic`).
        TopicsJobError: the broker refused a change, or does not implement a request the job cannot do without.
    """
    specs = settings.topic_specs()
    report = TopicsReport(topics=len(specs))
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        topics = TopicsAdmin(admin)
        current = await topics.describe([spec.name for spec in specs])
        plan = plan_topics(specs, current)
        report.warnings.extend(plan.warnings)
        if plan.create:
            held = await records_without_topic(settings, {spec.name: spec.partitions for spec in plan.create})
            if held:
                raise StrayRecordsError(
                    f"the broker holds records for topics it does not have ({held}): it accepted them after "
                    "losing its topics (Tansu 0.6 with memory storage does); restart the broker, then run "
                    "the topics job again"
                )
            await topics.create(plan.create)
            report.created = [spec.name for spec in plan.create]
        # A cluster that cannot raise partitions or set configs still has every topic: say what is left undone.
        if plan.add_partitions and await supported(
            report,
            "CreatePartitions",
            "partitions left below their declared count: "
            + ", ".join(
                f"{name} has {current[name].partitions} of {count}" for name, count in plan.add_partitions.items()
            ),
            lambda: topics.add_partitions(plan.add_partitions),
        ):
            report.partitions_raised = dict(plan.add_partitions)
        if plan.set_configs and await supported(
            report,
            "IncrementalAlterConfigs",
            f"configs left as they are, declared: {dict(plan.set_configs)}",
            lambda: topics.set_configs(plan.set_configs),
        ):
            report.configs_changed = {name: dict(values) for name, values in plan.set_configs.items()}
        return report
    except IncompatibleBrokerVersion as error:
        raise TopicsJobError(f"the broker does not support a request the topics job needs: {error}") from None
    finally:
        await admin.close()


async def create_topics(settings: AdminSettings) -> list[str]:
    """:func:`apply_topics`, for callers that want only the names of the topics it created (tests, benchmarks)."""
    return (await apply_topics(settings)).created


def log_report(report: TopicsReport) -> None:
    """The job's log: one line of what it did, and one per thing it could not do or does not change."""
    for line in report.unsupported:
        log.warning("topics_broker_unsupported", detail=line)
    for line in report.warnings:
        log.warning("topic_not_as_declared", detail=line)
    log.info(
        "topics_ready",
        summary=report.summary(),
        created=report.created,
        partitions_raised=report.partitions_raised,
        configs_changed=report.configs_changed,
    )


def main() -> None:
    settings = load_settings(AdminSettings)
    configure_logging("admin", settings.log_level)
    try:
        report = asyncio.run(apply_topics(settings))
    except TopicsJobError as error:
        log.error("topics_refused", reason=str(error))
        raise SystemExit(1) from None
    log_report(report)


if __name__ == "__main__":
    main()
