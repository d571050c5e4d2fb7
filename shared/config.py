"""Settings every Herald service shares, read from ``HERALD_*`` environment variables.

Each service subclasses :class:`HeraldSettings` in its own ``settings.py`` and adds what only it
needs. Settings are validated once at start-up by :func:`load_settings`, which turns pydantic's
errors into one readable message naming each bad variable.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal, NoReturn, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "HERALD_"
_SECRET_NAME = re.compile(r"KEY|PASSWORD|TOKEN|SECRET|CREDENTIALS")


def _split_commas(value: object) -> object:
    # HERALD_EMAIL_PROVIDERS=sendgrid,smtp reads better than a JSON list.
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


# A list setting from a comma-separated variable (blanks dropped).
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class HeraldSettings(BaseSettings):
    """What every service needs: where Kafka, Postgres and Redis are, and how to report."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Topic names are "<prefix>.<name>.v<version>"; tests use a unique prefix per run.
    topic_prefix: str = Field(default="herald", pattern=r"^[A-Za-z0-9._-]+$")
    # Apache Kafka: on. Tansu's memory storage refuses InitProducerId, so the local stack turns it off.
    kafka_idempotent_producer: bool = True
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # /health answers 503 once a consumer loop has neither committed nor been caught up for this long
    # (its topics are gone, or it cannot get a batch through): Kubernetes then restarts the service.
    kafka_consumer_stall_s: float = Field(default=120.0, gt=0)
    database_url: str = "postgresql://postgres@127.0.0.1:5432/herald"
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections per process; a command that finds them all busy waits up to redis_pool_timeout_s for
    # one (then fails as Redis being unreachable would), so a burst queues instead of failing at once.
    redis_max_connections: int = Field(default=100, ge=1)
    redis_pool_timeout_s: float = Field(default=5.0, gt=0)
    # Every Redis key starts with this, so several Herald installations (or tests) can share a Redis.
    redis_namespace: str = Field(default="herald", pattern=r"^[A-Za-z0-9._:-]+$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Port of the operations endpoint (/health, /ready, /metrics) of services that have no HTTP API.
    ops_port: int = Field(default=9000, ge=0, le=65535)
    ops_host: str = "0.0.0.0"
    # Fraction of notifications whose trace is recorded (0..1); trace ids are propagated regardless.
    trace_sample_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    otlp_endpoint: str | None = None
    # The consumer loop's dead-letter guard (shared.kafka.guard): when at least this share of the last
    # dlq_guard_min_messages messages went to the DLQ for a reason that points at the environment (a
    # dependency or provider failing, not the message), consumption pauses dlq_guard_pause_s (0: never).
    dlq_guard_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    dlq_guard_min_messages: int = Field(default=50, ge=1)
    dlq_guard_pause_s: float = Field(default=30.0, ge=0.0)
    # How close a recurring notification's occurrences may come (gateway and ingest refuse closer ones).
    recurrence_min_interval_s: float = Field(default=900.0, gt=0.0)
    # Personal data at rest (shared.crypto): "<key id>:<base64 32 bytes>,...", the first encrypts; and
    # the blind index key (base64 32 bytes). Services storing personal data refuse to start without them.
    encryption_keys: SecretStr | None = None
    blind_index_key: SecretStr | None = None

    @field_validator("encryption_keys", "blind_index_key")
    @classmethod
    def _check_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Imported here: shared.crypto builds on these settings.
        from shared.crypto import parse_index_key, parse_keys

        if value is not None:
            (parse_keys if info.field_name == "encryption_keys" else parse_index_key)(value.get_secret_value())
        return value


class WebhookSettings(HeraldSettings):
    """What the services that sign webhooks (sender-webhook) or hand out their secrets (gateway) share."""

    # Every tenant's and endpoint's signing secret is derived from this key (keep it secret; rotate by re-keying).
    webhook_signing_key: SecretStr | None = Field(default=None, min_length=32)
    # Allow webhook URLs that resolve to loopback or private addresses (shared.ssrf); only tests and local stacks.
    webhook_allow_private_networks: bool = False


class WebPushSettings(HeraldSettings):
    """What the services that register (gateway) or push to (sender-push) Web Push subscriptions share."""

    # Allow subscriptions whose endpoint resolves to loopback or private addresses (shared.ssrf): the
    # push service stand-in of tests and local stacks only.
    webpush_allow_private_networks: bool = False


SettingsT = TypeVar("SettingsT", bound=HeraldSettings)


class ConfigurationError(SystemExit):
    """Raised at start-up for a bad setting; exits the process with a readable message."""


def describe_errors(error: ValidationError) -> str:
    """One line per bad variable: ``HERALD_SMTP_PORT: Input should be a valid integer (got 'abc')``."""
    lines = []
    for item in error.errors():
        name = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        # A secret's value is not echoed to the logs.
        shown = "" if _SECRET_NAME.search(name) else f" (got {item.get('input')!r})"
        lines.append(f"  {name}: {item['msg']}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build ``cls`` from the environment, or exit with a message naming every bad variable."""
    try:
        return cls()
    except ValidationError as error:
        refuse_configuration(describe_errors(error))


def refuse_configuration(message: str) -> NoReturn:
    """Stop start-up with ``message`` on stderr (before logging is set up) and exit status 2."""
    print(message, file=sys.stderr)
    raise ConfigurationError(2)


def reveal(secret: SecretStr | None) -> str:
    """The secret's value, or "" when it is not set (providers then refuse the empty value by name)."""
    return secret.get_secret_value() if secret is not None else ""
