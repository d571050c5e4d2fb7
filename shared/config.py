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
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.kafka.connection import KafkaConnectionSettings

ENV_PREFIX = "HERALD_"
_SECRET_NAME = re.compile(r"KEY|PASSWORD|TOKEN|SECRET|CREDENTIALS")


def _split_commas(value: object) -> object:
    # HERALD_EMAIL_PROVIDERS=sendgrid,smtp reads better than a JSON list.
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


# A list setting from a comma-separated variable (blanks dropped).
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]

OPS_PORT_DESCRIPTION = (
    "Port of the operations endpoint (/health, /ready, /metrics) of a service without an HTTP API. Each service "
    "has its own default, so all of them can run on one machine; docker-compose.yml and the Helm chart "
    "set 9000, and make up numbers them from HERALD_LOCAL_OPS_PORTS_START."
)


def ops_port_field(default: int) -> int:
    """``HERALD_OPS_PORT`` with a service's own default (each service its own, so they can share a machine)."""
    port: int = Field(default=default, ge=0, le=65535, description=OPS_PORT_DESCRIPTION)
    return port


class HeraldSettings(KafkaConnectionSettings):
    """What every service needs: where Kafka (and how to connect to it), Postgres and Redis are, and how to
    report."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    topic_prefix: str = Field(
        default="herald",
        pattern=r"^[A-Za-z0-9._-]+$",
        description=(
            'First part of every topic and consumer group name: topics are "<prefix>.<name>.v<version>"; '
            "tests use a unique prefix per run."
        ),
    )
    kafka_idempotent_producer: bool = Field(
        default=True,
        description=(
            "The idempotent producer: on for Apache Kafka. Tansu refuses InitProducerId (in memory and on S3 "
            "alike), so the local stack turns it off."
        ),
    )
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, description="Consumer group session timeout.")
    kafka_fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=5_000,
        description=(
            "How long the broker may hold a consumer's fetch while it has no new records. Apache Kafka answers "
            "as soon as records arrive, so there a longer wait (its default is 500) costs no latency and spares "
            "the broker idle fetches; Tansu 0.6 answers when the wait is over, so with it this bounds the latency "
            "of each hop, and each idle consumer sends the broker 1000/this fetches a second."
        ),
    )
    kafka_consumer_stall_s: float = Field(
        default=120.0,
        gt=0,
        description=(
            "/health answers 503 once a consumer loop has neither committed nor been caught up for this long "
            "(its topics are gone, or it cannot get a batch through): Kubernetes then restarts the service."
        ),
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/herald",
        description="Postgres: used by the gateway, router, status, retry, sender-push, dead-letters and the archiver.",
    )
    database_pool_size: int = Field(default=10, ge=1, description="Postgres connections per process.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis: used by the gateway, ingest and the senders (dedup, rate limits, delivered ids).",
    )
    redis_max_connections: int = Field(
        default=100,
        ge=1,
        description=(
            "Redis connections per process; a command that finds them all busy waits up to "
            "HERALD_REDIS_POOL_TIMEOUT_S for one, so a burst queues instead of failing at once."
        ),
    )
    redis_pool_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How long a command waits for a free Redis connection, then fails as Redis being unreachable would "
            "(the gateway's keyed requests answer 503)."
        ),
    )
    redis_namespace: str = Field(
        default="herald",
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Every Redis key starts with this, so several Herald installations (or tests) can share a Redis.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    ops_port: int = Field(default=9000, ge=0, le=65535, description=OPS_PORT_DESCRIPTION)
    ops_host: str = Field(default="0.0.0.0", description="Address the operations endpoint listens on.")
    metrics_tenant_labels: bool = Field(
        default=False,
        description="Label metrics with each tenant's id; off, their `tenant` label reads `all` (a series per "
        "tenant and metric costs Prometheus memory on a large installation).",
    )
    trace_sample_ratio: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded when spans are exported (0 to 1), unless OTEL_TRACES_SAMPLER is "
        "set; a trace that arrives sampled is always recorded. Trace ids are propagated regardless.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="Full OTLP/HTTP traces URL (…:4318/v1/traces), used when no OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT "
        "is set; unset: spans are not exported.",
    )
    dlq_guard_ratio: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description=(
            "The consumer loop's dead-letter guard (shared.kafka.guard): when at least this share of the last "
            "HERALD_DLQ_GUARD_MIN_MESSAGES messages or so went to the DLQ for a reason that points at the "
            "environment (a dependency or provider failing, not the message), consumption pauses."
        ),
    )
    dlq_guard_min_messages: int = Field(
        default=50, ge=1, description="How many recent messages the dead-letter guard looks at."
    )
    dlq_guard_pause_s: float = Field(
        default=30.0, ge=0.0, description="How long the dead-letter guard pauses consumption (0: the guard is off)."
    )
    recurrence_min_interval_s: float = Field(
        default=900.0,
        gt=0.0,
        description=(
            "How close a recurring notification's occurrences may come (checked over the first 50): the gateway "
            "answers 422 and ingest rejects closer ones."
        ),
    )
    encryption_keys: SecretStr | None = Field(
        default=None,
        description=(
            'Personal data at rest (shared.crypto): "<key id>:<base64 of 32 bytes>", comma-separated; the first '
            "encrypts, every listed key decrypts. The services that store or read personal data (gateway, router, "
            "sender-push, dead-letters, retry, status, the archiver and the migrate job) refuse to start without it."
        ),
    )
    blind_index_key: SecretStr | None = Field(
        default=None,
        description=(
            "Base64 of 32 bytes: the HMAC key of the blind indexes that find a token, address or user id by "
            "value. Required wherever HERALD_ENCRYPTION_KEYS is."
        ),
    )

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

    webhook_signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Master key (32+ characters) from which every tenant's and webhook endpoint's signing secret is "
            "derived; keep it secret, and know that re-keying changes every secret. Required by sender-webhook; "
            "unset on the gateway, registering an endpoint or rotating its secret answers 503."
        ),
    )
    webhook_allow_private_networks: bool = Field(
        default=False,
        description=(
            "Allow webhook URLs that resolve to loopback, private or CGNAT addresses (shared.ssrf): tests, local "
            "stacks, receivers in your own network. Off, the gateway refuses such an endpoint URL at "
            "registration (422)."
        ),
    )


class RequestSigningSettings(HeraldSettings):
    """What the services that sign requests (gateway, ingest for recurring ones) or verify them (ingest) share."""

    producer_signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Master key (32+ characters) from which every producer key's secret is derived (shared.producer_keys); "
            "the gateway and ingest sign with it, ingest verifies. Required while HERALD_REQUIRE_SIGNED_REQUESTS is "
            "true; re-keying invalidates every producer key."
        ),
    )
    require_signed_requests: bool = Field(
        default=True,
        description=(
            "Ingest dead-letters (unauthenticated_producer) every request on the requests topic that is not signed by "
            "a live producer key of the tenant it names. false only where every producer is trusted with every tenant."
        ),
    )

    def request_signing_key(self) -> bytes | None:
        """The master key, if set."""
        return self.producer_signing_key.get_secret_value().encode() if self.producer_signing_key else None

    def check_request_signing(self) -> None:
        """Refuse to start without a master key while signatures are required."""
        if self.producer_signing_key is None and self.require_signed_requests:
            refuse_configuration(
                "invalid configuration:\n  HERALD_PRODUCER_SIGNING_KEY is required (32+ characters) while "
                "HERALD_REQUIRE_SIGNED_REQUESTS is true: requests on Kafka must prove their tenant"
            )


class WebPushSettings(HeraldSettings):
    """What the services that register (gateway) or push to (sender-push) Web Push subscriptions share."""

    webpush_allow_private_networks: bool = Field(
        default=False,
        description=(
            "Allow Web Push subscriptions whose endpoint resolves to loopback, private or CGNAT addresses "
            "(shared.ssrf): the push service stand-in of tests and local stacks. Off, the gateway refuses such "
            "a web device at registration (422)."
        ),
    )


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
