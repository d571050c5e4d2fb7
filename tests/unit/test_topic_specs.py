"""Topics as code: the declarations derived from ``Topics``, and the plan that brings a cluster's topics to them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.kafka.admin import AdminSettings, TopicsReport
from shared.kafka.topic_specs import (
    DAY_MS,
    TopicSpec,
    TopicState,
    declared_topics,
    plan_topics,
)
from shared.topics import Topics

pytestmark = pytest.mark.unit

TOPICS = Topics("herald")


DECLARED_CONFIGS = {"retention.ms": "1000", "cleanup.policy": "delete"}


def spec(name: str = "herald.send.email.v1", partitions: int = 8, configs: dict[str, str] | None = None) -> TopicSpec:
    return TopicSpec(name, partitions, 1, DECLARED_CONFIGS if configs is None else configs)


def state(partitions: int = 8, replication_factor: int = 1, configs: dict[str, str] | None = None) -> TopicState:
    """An existing topic; by default with the configs ``spec`` declares."""
    return TopicState(partitions, replication_factor, DECLARED_CONFIGS if configs is None else configs)


def test_every_topic_of_topics_is_declared_once_in_its_order() -> None:
    specs = declared_topics(TOPICS, partitions=8, replication_factor=1)
    assert [s.name for s in specs] == TOPICS.all()
    assert {s.partitions for s in specs} == {8}
    assert {s.replication_factor for s in specs} == {1}


def test_a_topic_added_to_topics_alone_is_refused_by_name() -> None:
    class MoreTopics(Topics):
        def all(self) -> list[str]:
            return [*super().all(), self._name("send.carrier-pigeon")]

    with pytest.raises(ValueError, match=r"send\.carrier-pigeon"):
        declared_topics(MoreTopics("herald"), partitions=8, replication_factor=1)


def test_retention_is_longer_for_status_and_dead_letters_and_nothing_is_compacted() -> None:
    configs = {s.name: s.configs for s in declared_topics(TOPICS, partitions=8, replication_factor=1)}
    retention_days = {name: int(c["retention.ms"]) // DAY_MS for name, c in configs.items()}
    lanes = [*TOPICS.lanes("requests"), *TOPICS.lanes("routable")]
    lanes += [topic for channel in ("email", "sms", "push", "webhook") for topic in TOPICS.lanes(f"send.{channel}")]
    assert retention_days == {TOPICS.delay: 7, TOPICS.status: 14, TOPICS.dlq: 14, **{lane: 7 for lane in lanes}}
    assert {c["cleanup.policy"] for c in configs.values()} == {"delete"}


@pytest.mark.parametrize(("replication_factor", "min_insync"), [(1, None), (2, None), (3, "2"), (5, "2")])
def test_min_insync_replicas_is_declared_from_three_replicas(replication_factor: int, min_insync: str | None) -> None:
    specs = declared_topics(TOPICS, partitions=8, replication_factor=replication_factor)
    assert {s.configs.get("min.insync.replicas") for s in specs} == {min_insync}


def test_a_topic_named_in_partitions_by_name_gets_its_own_count() -> None:
    specs = declared_topics(TOPICS, partitions=8, replication_factor=1, partitions_by_name={"send.email": 24})
    counts = {s.name: s.partitions for s in specs}
    assert counts.pop(TOPICS.send("email")) == 24
    assert set(counts.values()) == {8}


def test_the_settings_refuse_partitions_for_a_topic_herald_does_not_have(clean_environment: None) -> None:
    specs = AdminSettings(kafka_topic_partitions_by_name={"dlq": 2}).topic_specs()
    assert {s.name: s.partitions for s in specs}[TOPICS.dlq] == 2
    with pytest.raises(ValidationError, match=r"names no topic of Herald: \['send\.mail'\]"):
        AdminSettings(kafka_topic_partitions_by_name={"send.mail": 24})
    with pytest.raises(ValidationError):
        AdminSettings(kafka_topic_partitions_by_name={"dlq": 0})


def test_missing_topics_are_created_and_existing_ones_left_to_compare() -> None:
    wanted, present = spec("a"), spec("b")
    plan = plan_topics([wanted, present], {"b": state()})
    assert plan.create == (wanted,)
    assert not plan.add_partitions
    assert not plan.set_configs
    assert not plan.changes_nothing


def test_topics_as_declared_change_nothing() -> None:
    declared = spec()
    plan = plan_topics([declared], {declared.name: state()})
    assert plan.changes_nothing
    assert plan.warnings == ()


def test_partitions_are_raised_to_the_declared_count_never_lowered() -> None:
    fewer, more = spec("fewer", partitions=8), spec("more", partitions=8)
    plan = plan_topics([fewer, more], {"fewer": state(4), "more": state(12)})
    assert plan.add_partitions == {"fewer": 8}
    (warning,) = plan.warnings
    assert warning.startswith("more has 12 partitions, 8 declared")


def test_only_declared_configs_that_differ_are_set() -> None:
    declared = spec(configs={"retention.ms": "1000", "cleanup.policy": "delete", "min.insync.replicas": "2"})
    current = state(configs={"retention.ms": "5", "cleanup.policy": "delete", "segment.ms": "600000"})
    plan = plan_topics([declared], {declared.name: current})
    # segment.ms is not Herald's: left alone. cleanup.policy already matches.
    assert plan.set_configs == {declared.name: {"retention.ms": "1000", "min.insync.replicas": "2"}}


def test_another_replication_factor_is_reported_not_changed() -> None:
    declared = TopicSpec("t", 8, 3, {})
    plan = plan_topics([declared], {"t": state(8, replication_factor=1, configs={})})
    assert plan.changes_nothing
    (warning,) = plan.warnings
    assert "replication factor 1, 3 declared" in warning


def test_the_report_says_what_changed_or_that_nothing_did() -> None:
    assert TopicsReport(10).summary() == "nothing to change: the 10 topics are as declared"
    report = TopicsReport(10, created=["a", "b"], configs_changed={"c": {"retention.ms": "1"}})
    assert report.summary() == "of 10 topics: created 2, changed configs of 1"
    held_back = TopicsReport(10, unsupported=["the broker does not support CreatePartitions: ..."])
    assert not held_back.changed
    assert held_back.summary() == "of 10 topics: changed nothing; some are not as declared (see the warnings)"
