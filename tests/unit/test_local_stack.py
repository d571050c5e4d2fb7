"""The environment ``make up`` gives its services (its defaults, the environment winning over them), and
the back-off of its restarts."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from infra.local.datastores import Datastores
from infra.local.stack import (
    LOCAL_ENVIRONMENT,
    LocalStack,
    LocalStackSettings,
    configured_environment,
    service_process,
)
from infra.local.supervisor import Backoff

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]

BOOTSTRAP = "127.0.0.1:19092"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/herald"
REDIS_URL = "redis://127.0.0.1:6379/0"
KEY = base64.b64encode(b"k" * 32).decode()
# A value of the environment's own for every default the stack sets.
FROM_THE_ENVIRONMENT = {
    "HERALD_WEBHOOK_SIGNING_KEY": "a-webhook-signing-key-of-my-own-0123456789",
    "HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false",
    "HERALD_TRACKING_SIGNING_KEY": "a-tracking-signing-key-of-my-own-0123456789",
    "HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS": "false",
    "HERALD_ENCRYPTION_KEYS": f"mine-1:{KEY}",
    "HERALD_BLIND_INDEX_KEY": KEY,
    "HERALD_ARCHIVE_URL": "file:///srv/herald-archives",
    "HERALD_ARCHIVE_INTERVAL_S": "60",
    "HERALD_TRACKING_BASE_URL": "https://herald.example.org",
    "HERALD_GATEWAY_HOST": "0.0.0.0",
    "HERALD_OPS_HOST": "0.0.0.0",
}


def gateway_environment(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> dict[str, str]:
    """The environment the stack's gateway process would start with, ``environ`` set beforehand."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # The environment alone: not the .env of the checkout the tests run in.
    stack = LocalStack(LocalStackSettings(), dict(os.environ))
    stack.datastores = Datastores(database_url=DATABASE_URL, redis_url=REDIS_URL)
    gateway = next(spec for spec in stack.services if spec.name == "gateway")
    return service_process(gateway, stack.service_environment(BOOTSTRAP, started_broker=True)).env


def test_unset_the_local_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = gateway_environment(monkeypatch, {})

    assert {name: environment[name] for name in LOCAL_ENVIRONMENT if name != "HERALD_ARCHIVE_URL"} == {
        name: value for name, value in LOCAL_ENVIRONMENT.items() if name != "HERALD_ARCHIVE_URL"
    }
    assert environment["HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] == "true"
    assert environment["HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS"] == "true"
    assert environment["HERALD_TRACKING_BASE_URL"] == "http://127.0.0.1:8080"
    assert environment["HERALD_ARCHIVE_URL"].endswith("/var/archives")
    assert (environment["HERALD_GATEWAY_HOST"], environment["HERALD_OPS_HOST"]) == ("127.0.0.1", "127.0.0.1")
    # Every default has a case below.
    assert set(FROM_THE_ENVIRONMENT) <= set(environment)


def test_the_environment_wins_over_every_local_default(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = gateway_environment(monkeypatch, FROM_THE_ENVIRONMENT)

    assert {name: environment[name] for name in FROM_THE_ENVIRONMENT} == FROM_THE_ENVIRONMENT


def test_a_variable_in_the_env_file_wins_too(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS=false\nHERALD_TRACKING_BASE_URL=https://a.example\n")
    environ = configured_environment(env_file, {"HERALD_TRACKING_BASE_URL": "https://b.example"})
    stack = LocalStack(LocalStackSettings(), environ)
    stack.datastores = Datastores(database_url=DATABASE_URL, redis_url=REDIS_URL)

    environment = stack.service_environment(BOOTSTRAP, started_broker=True)

    # Left to the services, which read the same .env (or inherit the variable).
    assert "HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS" not in environment
    assert "HERALD_TRACKING_BASE_URL" not in environment
    assert environ["HERALD_TRACKING_BASE_URL"] == "https://b.example"
    assert environment["HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] == "true"


def test_what_the_stack_found_or_started_stays_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its broker is Tansu (on S3 or in memory), which refuses the idempotent producer; the datastores are
    # the configured ones when they answer, else private ones on other addresses.
    environment = gateway_environment(
        monkeypatch,
        {"HERALD_KAFKA_IDEMPOTENT_PRODUCER": "true", "HERALD_REDIS_URL": "redis://127.0.0.1:1/0"},
    )

    assert environment["HERALD_KAFKA_BOOTSTRAP_SERVERS"] == BOOTSTRAP
    assert environment["HERALD_KAFKA_IDEMPOTENT_PRODUCER"] == "false"
    assert environment["HERALD_REDIS_URL"] == REDIS_URL
    assert environment["HERALD_GATEWAY_PORT"] == "8080"


def test_the_restart_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first_s=1.0, max_s=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
