"""Herald's topics as code: each topic's partitions, replication and configs, declared once, and the plan
that brings a cluster's topics to them.

Pure: the topics job (:mod:`shared.kafka.admin`) describes the cluster, asks :func:`plan_topics` what to
change and applies it. Names come from :class:`shared.topics.Topics`; only the configs Herald declares
here are ever set, so whatever else an operator sets on a topic stays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.topics import CHANNELS, LANES, Topics

DAY_MS = 24 * 60 * 60 * 1000
# Topics read within seconds (requests, routable, the send topics, delay): retention is the window to
# bring back a consumer that was down over a long weekend, or to replay a group from an earlier offset
# after a bad release. No longer: their records carry addresses and content, which an erasure cannot
# reach in Kafka (docs/operations/erasure.md). The delay topic needs no more, however far ahead a send is
# scheduled: the retry service stores each delayed message in Postgres at once, where its due time lives.
WORK_RETENTION_MS = 7 * DAY_MS
# Status events are small, carry no address, and are the record of what happened to each delivery:
# twice the window lets the status service's rows be rebuilt by replaying the topic after an incident
# found late (a status-service bug, a Postgres restore).
STATUS_RETENTION_MS = 14 * DAY_MS
# The dead-letters service keeps each dead letter in Postgres for HERALD_DLQ_RETENTION_DAYS (14 by
# default); one it could not store stays only in the topic, which therefore keeps them as long.
DEAD_LETTER_RETENTION_MS = 14 * DAY_MS

LANED_STREAMS = ("requests", "routable", *(f"send.{channel}" for channel in CHANNELS))
RETENTION_MS_BY_NAME: Mapping[str, int] = {
    # Each lane of a stream (shared.topics.LANES) as the stream: normal is the stream's own name.
    **{
        stream if lane == "normal" else f"{stream}.{lane}": WORK_RETENTION_MS
        for stream in LANED_STREAMS
        for lane in LANES
    },
    "delay": WORK_RETENTION_MS,
    "status": STATUS_RETENTION_MS,
    "dlq": DEAD_LETTER_RETENTION_MS,
}
# Every topic is a stream of events keyed by person (tenant:recipient): compaction would keep only each
# key's newest record and drop that person's other notifications.
CLEANUP_POLICY = "delete"
# With three replicas or more, a write acknowledged with acks=all is on two brokers at least, and the
# topic still takes writes with one broker down. Below three replicas it is left to the broker.
MIN_INSYNC_REPLICAS = 2
MIN_INSYNC_FROM_REPLICATION = 3


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Herald declares it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicState:
    """One existing topic as the broker describes it; ``configs`` holds the values the broker reports."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class TopicPlan:
    """What brings the cluster to the declared topics; ``warnings`` name what the job does not change."""

    create: Sequence[TopicSpec] = ()
    # Topic -> its declared partition count, above the current one.
    add_partitions: Mapping[str, int] = field(default_factory=dict)
    # Topic -> the declared configs whose current value differs (or is missing), with their declared value.
    set_configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    warnings: Sequence[str] = ()

    @property
    def changes_nothing(self) -> bool:
        return not (self.create or self.add_partitions or self.set_configs)


def topic_configs(name: str, replication_factor: int) -> dict[str, str]:
    """The configs Herald declares for the topic ``name`` (without prefix and version: ``send.email``)."""
    configs = {"retention.ms": str(RETENTION_MS_BY_NAME[name]), "cleanup.policy": CLEANUP_POLICY}
    if replication_factor >= MIN_INSYNC_FROM_REPLICATION:
        configs["min.insync.replicas"] = str(MIN_INSYNC_REPLICAS)
    return configs


def declared_topics(
    topics: Topics, *, partitions: int, replication_factor: int, partitions_by_name: Mapping[str, int] | None = None
) -> list[TopicSpec]:
    """Every topic of ``topics`` as declared: ``partitions`` each unless ``partitions_by_name`` names it.

    Raises:
        ValueError: a topic of ``topics`` has no declaration here (a topic added to ``Topics`` alone).
    """
    names = topics.by_name()
    undeclared = sorted(set(names) - set(RETENTION_MS_BY_NAME))
    if undeclared:
        raise ValueError(f"topics without a declaration in shared/kafka/topic_specs.py: {undeclared}")
    counts = partitions_by_name or {}
    return [
        TopicSpec(full, counts.get(name, partitions), replication_factor, topic_configs(name, replication_factor))
        for name, full in names.items()
    ]


def plan_topics(specs: Sequence[TopicSpec], current: Mapping[str, TopicState]) -> TopicPlan:
    """The changes that bring the topics described by ``current`` (the existing ones) to ``specs``.

    Partitions are only ever added: removing some is impossible in Kafka, and a topic with more than
    declared is reported. The replication factor is reported too, never changed (that is a reassignment
    of replicas to brokers, an operator's decision). Only declared configs are compared.
    """
    create: list[TopicSpec] = []
    add_partitions: dict[str, int] = {}
    set_configs: dict[str, dict[str, str]] = {}
    warnings: list[str] = []
    for spec in specs:
        state = current.get(spec.name)
        if state is None:
            create.append(spec)
            continue
        if state.partitions < spec.partitions:
            add_partitions[spec.name] = spec.partitions
        elif state.partitions > spec.partitions:
            warnings.append(
                f"{spec.name} has {state.partitions} partitions, {spec.partitions} declared: partitions are never "
                "removed; declare at least as many to silence this"
            )
        if state.replication_factor != spec.replication_factor:
            warnings.append(
                f"{spec.name} has replication factor {state.replication_factor}, {spec.replication_factor} "
                "declared: the topics job does not move replicas (kafka-reassign-partitions does)"
            )
        differing = {key: value for key, value in spec.configs.items() if state.configs.get(key) != value}
        if differing:
            set_configs[spec.name] = differing
    return TopicPlan(tuple(create), add_partitions, set_configs, tuple(warnings))
