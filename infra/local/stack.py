"""The whole of Herald on one machine, no containers: ``python -m infra.local.stack`` (``make up``).

Postgres and Redis (the configured ones if they answer, else Herald's own), a Tansu broker unless
one answers at ``HERALD_KAFKA_BOOTSTRAP_SERVERS``, the mail sink with its web page unless an SMTP
server answers at ``HERALD_SMTP_HOST``:``HERALD_SMTP_PORT`` (then mail goes there), migrations,
topics, then every service as its own process, each output line prefixed with its name, and a
Prometheus scraping them with the alert rules loaded (infra.local.prometheus). A process that dies is
started again (infra.local.supervisor), the broker with the topics job after it. Ctrl-C or SIGTERM
stops everything it started: Prometheus and the services first, then the sink, the broker and the
datastores.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

import structlog
from dotenv import dotenv_values
from pydantic import Field

from infra.local.broker import Broker, S3Storage, kafka_reachable, parse_bootstrap_servers
from infra.local.datastores import (
    LOOPBACK_HOSTS,
    Datastores,
    DatastoreUnavailable,
    RedisServer,
    ensure_datastores,
    redact,
)
from infra.local.processes import (
    LineSink,
    ManagedProcess,
    ProcessError,
    port_accepts,
    print_prefixed,
    python_module,
    stop_all,
)
from infra.local.prometheus import LocalPrometheus
from infra.local.supervisor import Backoff, Supervised, Supervisor
from infra.standins.messaging import MessagingStandIns
from infra.standins.push import PushStandIns
from shared.config import HeraldSettings, load_settings

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Herald on one machine (never in production): well-known signing keys for webhooks and tracked
# links, and webhook receivers and attachment URLs on this machine allowed. Defaults only: under
# `make up` a variable set in the environment wins (see LocalStack.service_environment).
LOCAL_ENVIRONMENT = {
    "HERALD_WEBHOOK_SIGNING_KEY": "local-webhook-signing-key-change-me-0123456789",
    # Requests on Kafka are signed with producer keys derived from it (shared.producer_keys).
    "HERALD_PRODUCER_SIGNING_KEY": "local-producer-signing-key-change-me-0123456789",
    "HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "HERALD_TRACKING_SIGNING_KEY": "local-tracking-signing-key-change-me-0123456789",
    "HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS": "true",
    # Well-known keys for personal data at rest (shared.crypto): local use only, never in production.
    "HERALD_ENCRYPTION_KEYS": "local-1:bG9jYWwtZW5jcnlwdGlvbi1rZXktY2hhbmdlLW1lISE=",
    "HERALD_BLIND_INDEX_KEY": "bG9jYWwtYmxpbmQtaW5kZXgta2V5LWNoYW5nZS1tZSE=",
    # The archiver runs as a service here: a pass an hour, into a folder (README "Retention and archives").
    "HERALD_ARCHIVE_URL": (REPO_ROOT / "var" / "archives").as_uri(),
    "HERALD_ARCHIVE_INTERVAL_S": "3600",
}
DEFAULT_DEV_API_KEY = "dev-local-key-change-me"
# How often the broker's S3 storage drops the batches every consumer group has read (S3Storage.trim).
BROKER_TRIM_INTERVAL_S = 10.0


def configured_environment(
    env_file: Path = REPO_ROOT / ".env", environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The variables set for Herald: ``environ``, and ``env_file``'s where ``environ`` has none (as the
    services, started in the repository, read their ``.env``)."""
    from_file = {name: value for name, value in dotenv_values(env_file).items() if value is not None}
    return from_file | dict(environ)


class LocalStackSettings(HeraldSettings):
    """What the local stack needs beyond the shared settings (all ``HERALD_*``)."""

    gateway_port: int = Field(default=8080, ge=1, le=65535, description="The gateway's port.")
    dev_api_key: str = Field(
        default=DEFAULT_DEV_API_KEY, min_length=16, description="The admin API key the gateway creates for tenant dev."
    )
    smtp_host: str = Field(
        default="127.0.0.1",
        description=(
            "The SMTP server sender-email sends through. If one answers at HERALD_SMTP_HOST:HERALD_SMTP_PORT the stack "
            "uses it and starts no mail sink; otherwise it starts its mail sink there (on this machine only)."
        ),
    )
    smtp_port: int = Field(default=1025, ge=1, le=65535, description="The SMTP server's port (see HERALD_SMTP_HOST).")
    mail_web_port: int = Field(default=8025, ge=1, le=65535, description="The mail sink's web page and JSON API.")
    sms_stand_in_port: int = Field(
        default=5055,
        ge=1,
        le=65535,
        description="The SNS stand-in (moto), unless HERALD_SNS_ENDPOINT_URL is set (infra.standins.messaging).",
    )
    twilio_stand_in_port: int = Field(
        default=4010,
        ge=1,
        le=65535,
        description="Prism serving Twilio's API description, unless HERALD_TWILIO_BASE_URL is set.",
    )
    sendgrid_stand_in_port: int = Field(
        default=4011,
        ge=1,
        le=65535,
        description="Prism serving SendGrid's API description, unless HERALD_SENDGRID_BASE_URL is set.",
    )
    local_var_dir: Path = Field(
        default=Path("var"),
        description="Private Postgres data and received mail (.eml) go here; relative to the repository.",
    )
    local_ready_timeout_s: float = Field(
        default=90.0, gt=0, description="How long the stack waits for every service to answer /ready."
    )
    local_ops_ports_start: int = Field(
        default=9101,
        ge=1,
        le=65526,
        description="The non-gateway services' operations ports (/ready, /metrics): this and the next nine.",
    )
    local_stop_grace_s: float = Field(
        default=25.0,
        ge=0,
        description=(
            "How long a stopping service may take: above the gateway's own 20 s graceful shutdown, so it is never "
            "SIGKILLed mid-drain."
        ),
    )
    local_restart_backoff_s: float = Field(
        default=1.0,
        gt=0,
        description="A process that exits is started again this long after, doubling for each exit in a row.",
    )
    local_restart_backoff_max_s: float = Field(default=30.0, gt=0, description="The longest wait before a restart.")
    local_restart_reset_after_s: float = Field(
        default=60.0, gt=0, description="A process that stayed up this long is restarted after the first wait again."
    )
    local_broker_storage: Literal["memory", "s3"] = Field(
        default="s3",
        description=(
            "Where the broker the stack starts keeps its topics, records and committed offsets: in a local S3 (moto, "
            "on HERALD_LOCAL_BROKER_S3_PORT), which outlives a broker restart but not the stack, or in memory (gone "
            "when the broker restarts; produces about 15 times faster)."
        ),
    )
    local_broker_s3_port: int = Field(
        default=5056, ge=1, le=65535, description="The local S3 (moto) of HERALD_LOCAL_BROKER_STORAGE=s3."
    )
    local_prometheus_port: int = Field(
        default=9090,
        ge=1,
        le=65535,
        description=(
            "The local Prometheus' web page and API, unless something answers there (then a free port: the banner "
            "says which). Started when a prometheus program is installed (Debian's package)."
        ),
    )
    local_prometheus_scrape_interval_s: float = Field(
        default=5.0,
        ge=0.5,
        description="How often the local Prometheus scrapes each service and evaluates the alert rules.",
    )


@dataclass(frozen=True)
class ServiceSpec:
    """One Herald service: its process name, module, and where it answers ``/ready``."""

    name: str
    module: str
    port: int
    # The gateway serves /ready on its API port; the others on their operations port.
    uses_ops_port: bool = True

    @property
    def ready_url(self) -> str:
        """``http://127.0.0.1:PORT/ready``."""
        return f"http://127.0.0.1:{self.port}/ready"

    def environment(self, common: Mapping[str, str]) -> dict[str, str]:
        """``common`` plus the port this service listens on (``HERALD_OPS_PORT`` or ``HERALD_GATEWAY_PORT``)."""
        return {**common, "HERALD_OPS_PORT" if self.uses_ops_port else "HERALD_GATEWAY_PORT": str(self.port)}


# The services that listen on an operations port (all but the gateway), in start order; their
# default HERALD_OPS_PORTs are 9101, 9102, ... in this order.
WORKERS = (
    "ingest",
    "router",
    "sender-email",
    "retry",
    "status",
    "sender-sms",
    "sender-webhook",
    "sender-push",
    "dead-letters",
    "archiver",
)


def herald_services(
    gateway_port: int = 8080, ops_ports: Sequence[int] = range(9101, 9101 + len(WORKERS))
) -> list[ServiceSpec]:
    """Every service, in start order, with its ports (the e2e tests start them the same way)."""
    if len(ops_ports) != len(WORKERS):
        raise ValueError(f"give one operations port for each of {', '.join(WORKERS)}")
    workers = [
        ServiceSpec(name, "services." + name.replace("-", "_"), port)
        for name, port in zip(WORKERS, ops_ports, strict=True)
    ]
    return [ServiceSpec("gateway", "services.gateway", gateway_port, uses_ops_port=False), *workers]


def service_process(
    spec: ServiceSpec, environment: Mapping[str, str], *, line_sink: LineSink | None = print_prefixed
) -> ManagedProcess:
    """The (not yet started) process of one service: this process's environment, then ``environment``."""
    return python_module(spec.name, spec.module, env=spec.environment(environment), cwd=REPO_ROOT, line_sink=line_sink)


def start_services(
    specs: Sequence[ServiceSpec],
    environment: Mapping[str, str],
    *,
    ready_timeout: float = 90.0,
    line_sink: LineSink | None = print_prefixed,
    per_service: Mapping[str, Mapping[str, str]] | None = None,
) -> list[ManagedProcess]:
    """Start every service, then wait until each answers ``/ready`` (one shared deadline).
    ``per_service`` adds variables to one service's ``environment`` (by service name).

    On failure the started processes are stopped and :class:`ProcessError` names the service, its
    last answer and its last log lines.
    """
    own = per_service or {}
    processes = [
        service_process(spec, {**environment, **own.get(spec.name, {})}, line_sink=line_sink) for spec in specs
    ]
    try:
        for process in processes:
            process.start()
        # Started together, they get ready together: waiting in turn costs the slowest, not the sum.
        deadline = time.monotonic() + ready_timeout
        for spec, process in zip(specs, processes, strict=True):
            process.wait_http_ready(spec.ready_url, timeout=max(0.1, deadline - time.monotonic()))
            log.info("service ready", service=spec.name, url=spec.ready_url)
    except BaseException:
        stop_all(processes, grace=10)
        raise
    return processes


def broker_supervised(broker: Broker, environment: Mapping[str, str]) -> Supervised:
    """The broker, started again with the topics job after it: a broker in memory comes back empty,
    and the services are of no use until their topics exist again (with a durable one, the job finds
    them and only keeps their configs)."""

    def start() -> None:
        if not broker.running:
            broker.start()
        try:
            run_step("topics", "shared.kafka.admin", environment)
        except ProcessError:
            # Started again later with the job, rather than left up without topics.
            broker.kill()
            raise

    return Supervised("broker", lambda: broker.process, start)


def run_step(name: str, module: str, environment: Mapping[str, str], timeout: float = 120.0) -> None:
    """Run ``python -m module`` to completion; raise :class:`ProcessError` with its output if it fails."""
    process = python_module(name, module, env=environment, cwd=REPO_ROOT)
    process.start()
    try:
        code = process.wait(timeout)
    except ProcessError:
        process.kill()
        raise
    if code != 0:
        raise ProcessError(process.describe_failure(f"`python -m {module}` failed"))


class StackError(RuntimeError):
    """The stack could not start; the message says why and what to do."""


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # Once: a second signal (a second Ctrl-C, or one forwarded by a wrapper) must not interrupt the shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _StopRequested


class LocalStack:
    """Everything ``make up`` runs; :meth:`start`, then :meth:`supervise`, and :meth:`stop` in any case."""

    def __init__(self, settings: LocalStackSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        # What `make up` was started with (.env included): its variables win over the stack's defaults.
        self.environ = configured_environment() if environ is None else environ
        var_dir = settings.local_var_dir
        self.var_dir = var_dir if var_dir.is_absolute() else REPO_ROOT / var_dir
        first = settings.local_ops_ports_start
        self.services = herald_services(settings.gateway_port, range(first, first + len(WORKERS)))
        self.datastores: Datastores | None = None
        self.broker: Broker | None = None
        self.broker_storage = (
            S3Storage(settings.local_broker_s3_port) if settings.local_broker_storage == "s3" else None
        )
        self.mail_sink: ManagedProcess | None = None
        # Whether an SMTP server answered at the configured address, so mail goes there and no sink starts.
        self.smtp_configured = False
        # Twilio (Prism), SNS (moto) and SendGrid (Prism), for the providers not pointed elsewhere.
        self.messaging = MessagingStandIns(
            twilio_port=settings.twilio_stand_in_port,
            sns_port=settings.sms_stand_in_port,
            sendgrid_port=settings.sendgrid_stand_in_port,
            environ=self.environ,
        )
        # FCM, APNs and Web Push stand-ins unless HERALD_FCM_CREDENTIALS points at a real Firebase project.
        self.push_stand_ins: PushStandIns | None = None
        self.prometheus = LocalPrometheus(
            {spec.name: spec.port for spec in self.services},
            settings.local_prometheus_port,
            interval_s=settings.local_prometheus_scrape_interval_s,
        )
        self.processes: list[ManagedProcess] = []
        self.environment: dict[str, str] = {}
        self._stopping = threading.Event()

    @property
    def mail_web_url(self) -> str:
        """The mail sink's web page."""
        return f"http://127.0.0.1:{self.settings.mail_web_port}/"

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def _check_ports_free(self) -> None:
        wanted = {spec.name: spec.port for spec in self.services}
        if not self.smtp_configured:
            wanted |= {"mail sink (SMTP)": self.settings.smtp_port, "mail sink (web)": self.settings.mail_web_port}
        wanted |= self.messaging.ports()
        if self.broker_storage is not None and not kafka_reachable(self.settings.kafka_bootstrap_servers):
            # Started only with the stack's own broker.
            wanted["broker storage (S3)"] = self.broker_storage.s3.port
        busy = [f"{name} port {port}" for name, port in wanted.items() if port_accepts("127.0.0.1", port)]
        if busy:
            raise StackError(
                "already in use: " + ", ".join(busy) + ". Is another `make up` still running? Stop it, or "
                "choose other ports (HERALD_GATEWAY_PORT, HERALD_SMTP_PORT, HERALD_MAIL_WEB_PORT, "
                "HERALD_LOCAL_BROKER_S3_PORT)."
            )

    def _ensure_broker(self) -> tuple[str, bool]:
        bootstrap = self.settings.kafka_bootstrap_servers
        if kafka_reachable(bootstrap):
            log.info("using the broker that answers", bootstrap_servers=bootstrap)
            return bootstrap, False
        host, port = parse_bootstrap_servers(bootstrap)[0]
        if host not in LOOPBACK_HOSTS:
            raise StackError(
                f"no Kafka broker answers at {bootstrap} and it is not on this machine, so Herald cannot start "
                "one there: start it, or unset HERALD_KAFKA_BOOTSTRAP_SERVERS to use a local broker"
            )
        if self.broker_storage is not None:
            self.broker_storage.start()
        self.broker = Broker(port, storage=self.broker_storage)
        self.broker.start()
        return self.broker.bootstrap_servers, True

    def service_environment(self, bootstrap: str, started_broker: bool) -> dict[str, str]:
        """What every service gets: where the stack's broker and datastores are, then local defaults.

        The first part is the stack's to say (it found or started them, from the same settings); a
        default is left out when the environment sets that variable, so the environment's value
        reaches the services (``HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS=false make up``).
        """
        assert self.datastores is not None
        idempotent = "false"
        if not started_broker and "HERALD_KAFKA_IDEMPOTENT_PRODUCER" in self.environ:
            # Someone else's broker may be a real Kafka: their explicit choice stands.
            idempotent = self.environ["HERALD_KAFKA_IDEMPOTENT_PRODUCER"]
        found = {
            "HERALD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            # Tansu refuses InitProducerId (in memory and on S3 alike), which the idempotent producer needs.
            "HERALD_KAFKA_IDEMPOTENT_PRODUCER": idempotent,
            "HERALD_DATABASE_URL": self.datastores.database_url,
            "HERALD_REDIS_URL": self.datastores.redis_url,
            "HERALD_SMTP_HOST": self.settings.smtp_host,
            "HERALD_SMTP_PORT": str(self.settings.smtp_port),
            "HERALD_DEV_API_KEY": self.settings.dev_api_key,
        }
        defaults = {
            **LOCAL_ENVIRONMENT,
            "HERALD_ARCHIVE_URL": (self.var_dir / "archives").as_uri(),
            # Tracked links and the open pixel point at this stack's gateway.
            "HERALD_TRACKING_BASE_URL": self.gateway_url,
            # A laptop's stack, with a well-known dev key, listens on loopback unless told otherwise.
            "HERALD_GATEWAY_HOST": "127.0.0.1",
            "HERALD_OPS_HOST": "127.0.0.1",
        }
        return found | self.unless_set(defaults)

    def unless_set(self, defaults: Mapping[str, str]) -> dict[str, str]:
        """``defaults`` less the variables the environment sets (which the services inherit instead)."""
        return {name: value for name, value in defaults.items() if name not in self.environ}

    def _find_smtp_server(self) -> None:
        """Use the SMTP server that answers at the configured address; else the sink is started there."""
        host, port = self.settings.smtp_host, self.settings.smtp_port
        self.smtp_configured = port_accepts(host, port)
        if self.smtp_configured:
            log.info("using the SMTP server that answers", host=host, port=port)
        elif host not in LOOPBACK_HOSTS:
            raise StackError(
                f"no SMTP server answers at {host}:{port} and it is not on this machine, so Herald cannot start its "
                "mail sink there: start it, or unset HERALD_SMTP_HOST to use the local mail sink"
            )

    def start(self) -> None:
        """Bring everything up, in dependency order; raise :class:`StackError`/:class:`ProcessError` if not."""
        self._find_smtp_server()
        self._check_ports_free()
        try:
            self.datastores = ensure_datastores(
                self.settings.database_url, self.settings.redis_url, var_dir=self.var_dir
            )
        except DatastoreUnavailable as error:
            raise StackError(str(error)) from error
        bootstrap, started_broker = self._ensure_broker()
        self.environment = self.service_environment(bootstrap, started_broker)

        if not self.smtp_configured:
            self.mail_sink = python_module(
                "mail-sink",
                "infra.local.mail_sink",
                "--host",
                self.settings.smtp_host,
                "--smtp-port",
                str(self.settings.smtp_port),
                "--http-port",
                str(self.settings.mail_web_port),
                "--maildir",
                str(self.var_dir / "mail"),
                cwd=REPO_ROOT,
            )
            self.mail_sink.start()
            self.mail_sink.wait_http_ready(f"{self.mail_web_url}health", timeout=30)

        self.messaging.start()
        self.environment |= self.messaging.environment()

        if "HERALD_FCM_CREDENTIALS" not in self.environ:
            self.push_stand_ins = PushStandIns(line_sink=print_prefixed)
            self.push_stand_ins.start()
            self.environment |= self.unless_set(self.push_stand_ins.environment())

        run_step("migrate", "shared.storage.migrate", self.environment)
        run_step("topics", "shared.kafka.admin", self.environment)
        # Before the services: Prometheus takes about 5 s (not configurable) to scrape its first targets,
        # hidden by the services' start-up. One scraped before it listens shows down, and
        # HeraldServiceDown pending, until it answers.
        self.prometheus.start()
        self.processes = start_services(
            self.services, self.environment, ready_timeout=self.settings.local_ready_timeout_s
        )

    def supervised(self) -> list[Supervised]:
        """Every process the stack started, each with how to start it again.

        Not a private Postgres (``pg_ctl`` runs it detached) nor the push stand-ins (threads of this
        process).
        """
        children = [Supervised.of(process) for process in self.processes]
        if self.prometheus.process is not None:
            children.append(Supervised.of(self.prometheus.process))
        if self.mail_sink is not None:
            children.append(Supervised.of(self.mail_sink))
        children.extend(Supervised.of(process) for process in self.messaging.processes())
        started = self.datastores.started if self.datastores is not None else []
        private_redis = next((server for server in started if isinstance(server, RedisServer)), None)
        if private_redis is not None:
            children.append(Supervised("redis", lambda: private_redis.process, private_redis.start))
        if self.broker is not None:
            broker, broker_child = self.broker, broker_supervised(self.broker, self.environment)
            children.append(broker_child)
            if self.broker_storage is not None:
                storage = self.broker_storage

                def start_storage() -> None:
                    # An empty bucket: what the broker stored is gone, as with a broker in memory.
                    storage.start()
                    broker.kill()
                    broker_child.start()

                children.append(Supervised.of(storage.process, start_storage))
        return children

    def supervise(self) -> None:
        """Keep every process running until Ctrl-C or SIGTERM (see :mod:`infra.local.supervisor`)."""
        settings = self.settings
        backoff = Backoff(
            settings.local_restart_backoff_s, settings.local_restart_backoff_max_s, settings.local_restart_reset_after_s
        )
        if self.broker is not None and self.broker_storage is not None:
            storage = self.broker_storage
            threading.Thread(target=self._trim, args=(storage,), name="broker-storage-trim", daemon=True).start()
        Supervisor(self.supervised(), backoff).run()

    def _trim(self, storage: S3Storage) -> None:
        """Trim the broker's storage every :data:`BROKER_TRIM_INTERVAL_S` until :meth:`stop`."""
        while not self._stopping.wait(BROKER_TRIM_INTERVAL_S):
            try:
                trimmed = storage.trim()
            except Exception as error:  # moto restarting, for one: the next round will do
                log.warning("broker storage not trimmed", error=repr(error))
                continue
            if trimmed:
                log.info("broker storage trimmed", batches=trimmed)

    def stop(self) -> None:
        """Stop what was started: Prometheus, services (SIGTERM, grace period), then mail sink, broker,
        datastores."""
        self._stopping.set()
        # First: it would only record the services going down.
        self.prometheus.stop()
        stop_all(self.processes, grace=self.settings.local_stop_grace_s)
        if self.mail_sink is not None:
            self.mail_sink.stop(grace=5)
        self.messaging.stop()
        if self.push_stand_ins is not None:
            self.push_stand_ins.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.broker_storage is not None:
            self.broker_storage.stop()
        if self.datastores is not None:
            self.datastores.stop()

    def _providers(self, channel: str, default: str) -> str:
        """The providers a sender uses: as set by hand, else as the stack set them, else its default."""
        variable = f"HERALD_{channel}_PROVIDERS"
        return self.environ.get(variable) or self.environment.get(variable) or default

    def _broker_storage(self) -> str:
        """Where the broker the stack started keeps its records, for the banner."""
        if self.broker is None:
            return ""
        if self.broker_storage is None:
            return " (Tansu in memory: a broker restart loses every topic; HERALD_LOCAL_BROKER_STORAGE)"
        return f" (Tansu on a local S3, {self.broker_storage.s3.url}: kept across broker restarts, until Ctrl-C)"

    def _mail_destination(self) -> str:
        if self.smtp_configured:
            return (
                f"to the SMTP server at {self.settings.smtp_host}:{self.settings.smtp_port} "
                "(HERALD_SMTP_HOST, HERALD_SMTP_PORT); no mail sink started"
            )
        return self.mail_web_url

    def banner(self) -> str:
        """What a person needs to try the stack."""
        key = self.settings.dev_api_key
        body = (
            '{"channels":["email"],"recipient":{"email":"ada@example.com"},'
            '"content":{"subject":"Hello {{ name }}","text":"Hi {{ name }}!"},"variables":{"name":"Ada"}}'
        )
        sms_body = (
            '{"channels":["sms"],"recipient":{"phone":"+14155550123"},'
            '"content":{"text":"Your code is {{ code }}"},"variables":{"code":"1234"}}'
        )
        assert self.datastores is not None
        push: list[str] = []
        if self.push_stand_ins is not None:
            stand_ins = self.push_stand_ins
            device = json.dumps({"platform": "web", "token": stand_ins.web_subscription()})
            push_body = (
                '{"channels":["push"],"recipient":{"user_id":"ada"},'
                '"content":{"subject":"Hello {{ name }}","text":"Your order shipped"},"variables":{"name":"Ada"}}'
            )
            push = [
                "Or a push: register a device for user ada (a browser subscribed to the Web Push stand-in), then send:",
                f"  curl -sS -X POST {self.gateway_url}/api/v1/recipients/ada/devices "
                f'-H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
                f"-d '{device}'",
                f"  curl -sS -X POST {self.gateway_url}/api/v1/notifications "
                f'-H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
                f"-d '{push_body}'",
            ]
        return "\n".join(
            [
                "",
                "Herald is up.",
                f"  Gateway:    {self.gateway_url}",
                f"  API docs:   {self.gateway_url}/docs",
                f"  Dev key:    {key}",
                f"  Mail:       {self._mail_destination()}",
                f"  Email via:  {self._providers('EMAIL', 'smtp')} "
                "(HERALD_EMAIL_PROVIDERS; sendgrid,smtp sends through SendGrid's stand-in)",
                f"  SMS via:    {self._providers('SMS', 'twilio')} (HERALD_SMS_PROVIDERS)",
                *self.messaging.describe(),
                *(
                    [
                        f"  Push:       FCM {self.push_stand_ins.fcm.url}, APNs https://127.0.0.1:"
                        f"{self.push_stand_ins.apns.port}, Web Push {self.push_stand_ins.web.origin} (stand-ins; "
                        "each delivery's provider answer shows in the notification's deliveries)"
                    ]
                    if self.push_stand_ins
                    else []
                ),
                f"  Kafka:      {self.environment['HERALD_KAFKA_BOOTSTRAP_SERVERS']}{self._broker_storage()}",
                f"  Postgres:   {redact(self.datastores.database_url)}",
                f"  Redis:      {redact(self.datastores.redis_url)}",
                *self.prometheus.describe(),
                "",
                "Send one:",
                f"  curl -sS -X POST {self.gateway_url}/api/v1/notifications "
                f'-H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
                f"-d '{body}'",
                "Or a text message:",
                f"  curl -sS -X POST {self.gateway_url}/api/v1/notifications "
                f'-H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
                f"-d '{sms_body}'",
                *push,
                "Then look it up (use the id from the answer):",
                f'  curl -sS {self.gateway_url}/api/v1/notifications/ID -H "Authorization: Bearer {key}"',
                "",
                "Ctrl-C stops everything.",
                "",
            ]
        )


def main() -> int:
    """Run the stack until Ctrl-C or SIGTERM; non-zero if it could not start."""
    settings = load_settings(LocalStackSettings)
    stack = LocalStack(settings)
    # Set explicitly: a shell that starts us in the background leaves SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_stop)
    status = 0
    try:
        stack.start()
        print(stack.banner(), flush=True)
        stack.supervise()
    except _StopRequested:
        log.info("stopping")
    except (StackError, ProcessError) as error:
        print(f"\nHerald's local stack could not start: {error}", file=sys.stderr, flush=True)
        status = 1
    finally:
        # Shutdown is bounded by the grace periods; a second Ctrl-C must not leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
