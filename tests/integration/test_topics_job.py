"""The topics job against the real broker: it creates the declared topics, brings drifted ones back to their
declared configs, leaves other configs alone, says what it cannot do, and a second run changes nothing.

Tansu 0.6, the broker here, answers CreateTopics (configs kept), DescribeConfigs (all of a topic's configs;
naming some makes it drop the connection) and IncrementalAlterConfigs; it has no AlterConfigs and no
CreatePartitions (neither is in its ApiVersions; a CreatePartitions sent anyway gets the connection closed).
So raising partitions is tested here as "unsupported, said so, the rest done"; the plan behind it is tested
in tests/unit/test_topic_specs.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import ApiVersionRequest
from structlog.testing import capture_logs

from infra.local.broker import Broker
from shared.kafka.admin import AdminSettings, apply_topics, log_report
from shared.topics import Topics
from tests.kafka_helpers import delete_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4
CREATE_PARTITIONS_API_KEY = 37
# A config Herald does not declare, set by an operator: the job must leave it.
OPERATORS_CONFIG = ("segment.ms", "600000")


@pytest.fixture
async def job_settings(broker: Broker, namespace: str) -> AsyncIterator[AdminSettings]:
    """The topics job's settings on the session broker, under the test's own prefix (its topics deleted after)."""
    yield AdminSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=namespace, kafka_topic_partitions=PARTITIONS
    )
    await delete_topics(broker.bootstrap_servers, Topics(namespace).all())


async def create_undeclared(settings: AdminSettings, partitions: Mapping[str, int], configs: Mapping[str, str]) -> None:
    """Create the prefix's topics as someone else would have: ``partitions`` each (default PARTITIONS), no configs
    but ``configs`` on the requests topic."""
    topics = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    partitions.get(name, PARTITIONS),
                    1,
                    topic_configs=dict(configs) if name == topics.requests else {},
                )
                for name in topics.all()
            ]
        )
    finally:
        await admin.close()


async def broker_view(settings: AdminSettings) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    """Each topic's partition count and configs as the broker reports them, read without the job's code."""
    names = Topics(settings.topic_prefix).all()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        partitions = {topic["topic"]: len(topic["partitions"]) for topic in await admin.describe_topics(names)}
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
    configs = {
        resource["resource_name"]: {
            entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
        }
        for resource in response.to_object()["resources"]
    }
    return partitions, configs


async def broker_api_keys(bootstrap_servers: str) -> set[int]:
    """The requests the broker says it implements (its ApiVersions answer)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers)
    await client.bootstrap()
    try:
        response = await client.send(client.get_random_node(), ApiVersionRequest())
    finally:
        await client.close()
    return {api_key for api_key, _, _ in response.api_versions}


def assert_as_declared(settings: AdminSettings, configs: Mapping[str, Mapping[str, str]]) -> None:
    for spec in settings.topic_specs():
        assert spec.configs.items() <= configs[spec.name].items(), spec.name


async def test_the_job_creates_every_topic_as_declared_and_a_second_run_changes_nothing(
    job_settings: AdminSettings,
) -> None:
    first = await apply_topics(job_settings)
    assert first.created == Topics(job_settings.topic_prefix).all()
    partitions, configs = await broker_view(job_settings)
    assert set(partitions.values()) == {PARTITIONS}
    assert_as_declared(job_settings, configs)

    second = await apply_topics(job_settings)
    assert not second.changed
    assert (second.unsupported, second.warnings) == ([], [])
    with capture_logs() as logs:
        log_report(second)
    count = len(first.created)
    assert [(line["event"], line["summary"]) for line in logs] == [
        ("topics_ready", f"nothing to change: the {count} topics are as declared")
    ]


async def test_drifted_configs_are_set_back_and_an_operators_own_config_stays(job_settings: AdminSettings) -> None:
    requests = Topics(job_settings.topic_prefix).requests
    await create_undeclared(job_settings, {}, {"retention.ms": "1000", OPERATORS_CONFIG[0]: OPERATORS_CONFIG[1]})

    report = await apply_topics(job_settings)
    assert report.created == []
    assert report.configs_changed[requests]["retention.ms"] == str(7 * 24 * 3600 * 1000)
    _, configs = await broker_view(job_settings)
    assert_as_declared(job_settings, configs)
    assert configs[requests][OPERATORS_CONFIG[0]] == OPERATORS_CONFIG[1]

    assert not (await apply_topics(job_settings)).changed


async def test_a_broker_without_create_partitions_is_named_and_the_rest_is_done(job_settings: AdminSettings) -> None:
    assert CREATE_PARTITIONS_API_KEY not in await broker_api_keys(job_settings.kafka_bootstrap_servers), (
        "the broker now claims CreatePartitions: test that the job raises partitions instead"
    )
    topics = Topics(job_settings.topic_prefix)
    await create_undeclared(job_settings, {topics.send("email"): 2, topics.dlq: 6}, {})

    report = await apply_topics(job_settings)
    assert report.partitions_raised == {}
    (unsupported,) = report.unsupported
    assert unsupported.startswith("the broker does not support CreatePartitions: ")
    assert f"{topics.send('email')} has 2 of 4" in unsupported
    (warning,) = report.warnings
    assert warning.startswith(f"{topics.dlq} has 6 partitions, 4 declared")
    partitions, configs = await broker_view(job_settings)
    assert (partitions[topics.send("email")], partitions[topics.dlq]) == (2, 6)
    assert_as_declared(job_settings, configs)
    with capture_logs() as logs:
        log_report(report)
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("topics_broker_unsupported", "warning"),
        ("topic_not_as_declared", "warning"),
        ("topics_ready", "info"),
    ]
    count = len(topics.all())
    assert (
        logs[-1]["summary"]
        == f"of {count} topics: changed configs of {count}; some are not as declared (see the warnings)"
    )
