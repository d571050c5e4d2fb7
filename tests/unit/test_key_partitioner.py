"""Herald's producer partitions as Kafka's default partitioner does (Java's murmur2), only faster for repeats."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka.producer import KeyPartitioner

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("partitions", [1, 3, 4, 12, 64])
def test_every_key_lands_where_kafkas_default_partitioner_puts_it(partitions: int) -> None:
    all_partitions = list(range(partitions))
    ours, kafkas = KeyPartitioner(), DefaultPartitioner()
    keys = [f"acme:user-{index}@example.com".encode() for index in range(2_000)] + [b"", "ünï:cödé".encode()]
    for key in keys + keys:  # the second time from the cache
        assert ours(key, all_partitions, all_partitions) == kafkas(key, all_partitions, all_partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2, 3], [2]) == 2
