"""The operations endpoint's liveness, and the log filter that keeps a library's repeated warning from flooding."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from shared.observability.logging import RepeatedWarnings
from shared.observability.ops import ops_app

pytestmark = pytest.mark.unit


async def passes() -> None:
    return None


async def stalled() -> None:
    raise RuntimeError("herald.ingest: no progress for 130 s")


def test_health_answers_503_naming_the_liveness_check_that_failed() -> None:
    app = ops_app({"kafka": passes}, liveness={"consumer herald.ingest": stalled, "consumer herald.other": passes})
    with TestClient(app) as client:
        health = client.get("/health")
        ready = client.get("/ready")
    assert health.status_code == 503
    assert health.json()["checks"]["consumer herald.other"] == "ok"
    assert "no progress for 130 s" in health.json()["checks"]["consumer herald.ingest"]
    # Readiness has checks of its own: a stalled consumer is restarted, not taken out of rotation.
    assert ready.status_code == 200


def test_health_answers_200_when_every_liveness_check_passes() -> None:
    with TestClient(ops_app({}, liveness={"consumer herald.ingest": passes})) as client:
        assert client.get("/health").status_code == 200
    with TestClient(ops_app({})) as client:
        assert client.get("/health").json() == {"status": "ok", "checks": {}}


async def providers_down() -> None:
    raise ConnectionError("no provider is healthy: smtp: error")


def test_a_degraded_dependency_is_reported_by_ready_without_making_it_fail() -> None:
    with TestClient(ops_app({"kafka": passes}, reported={"providers": providers_down})) as client:
        ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"kafka": "ok"}
    assert "no provider is healthy" in ready.json()["degraded"]["providers"]
    with TestClient(ops_app({"kafka": stalled}, reported={"providers": passes})) as client:
        failing = client.get("/ready")
    assert failing.status_code == 503
    assert failing.json()["degraded"] == {"providers": "ok"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warning(template: str, *args: object, name: str = "aiokafka.consumer.group_coordinator") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, template, args, None)


def test_a_repeated_warning_is_shown_once_a_window_with_how_many_were_held_back() -> None:
    clock = Clock()
    repeated = RepeatedWarnings(10.0, clock=clock)
    template = "OffsetCommit failed for group %s on partition %s: %s"
    shown = [repeated.filter(warning(template, "g", p, "UnknownTopicOrPartitionError")) for p in range(600)]
    assert shown.count(True) == 1

    clock.now += 10.0
    record = warning(template, "g", 7, "UnknownTopicOrPartitionError")
    assert repeated.filter(record)
    assert record.getMessage() == (
        "OffsetCommit failed for group g on partition 7: UnknownTopicOrPartitionError "
        "(599 more like it in the last 10 s not shown)"
    )


def test_other_warnings_and_info_lines_are_not_held_back() -> None:
    repeated = RepeatedWarnings(10.0, clock=Clock())
    assert repeated.filter(warning("OffsetCommit failed for group %s", "g"))
    assert repeated.filter(warning("Unable connect to node with id %s", 111))
    assert repeated.filter(warning("OffsetCommit failed for group %s", "g", name="aiokafka.other"))
    info = logging.LogRecord("aiokafka", logging.INFO, __file__, 1, "joined %s", ("g",), None)
    assert all(repeated.filter(info) for _ in range(5))
