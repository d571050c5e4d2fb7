"""The Celery baseline's application: one task that does, for one request, what Herald's pipeline does.

Per task: pydantic validation of the request, a Redis de-duplication claim (``SET NX EX`` on the
idempotency key), subject, text and html rendered by sandboxed Jinja2 (html autoescaped, compiled
templates cached by source), a MIME message sent with smtplib, and an upsert of the ``sent`` status
in Postgres. Each worker process keeps its own Postgres, SMTP and Redis connections for its whole life
(``worker_process_init``) and reconnects when one breaks. ``acks_late``: a task is acknowledged once it
has run, so a worker killed mid-task gets it redelivered (at-least-once, like Herald).

The workers learn where everything is from ``BENCH_CELERY_*`` environment variables (see
:func:`worker_environment`); the driver process calls :func:`configure` instead.
"""

from __future__ import annotations

import os
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from functools import lru_cache
from typing import Annotated, Any, Literal
from uuid import UUID

import psycopg
from celery import Celery, Task
from celery.signals import worker_process_init
from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from psycopg import sql
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

QUEUE = "notifications"
SENDER = "Herald bench <bench@example.com>"
# A request repeated within this time (same tenant and idempotency key) is not sent again.
DEDUP_SECONDS = 86_400
# Each worker process holds this many tasks ahead: enough to keep it busy between Redis round trips.
PREFETCH_MULTIPLIER = 8
# A dropped or broken connection; an SMTP answer refusing the message is not one of them.
_RECONNECT_ERRORS = (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError)

app = Celery("herald_bench_celery")


@dataclass(frozen=True)
class Settings:
    """Where the baseline's broker, de-duplication keys, database table and SMTP sink are."""

    broker_url: str
    key_prefix: str
    database_url: str
    table: str
    smtp_host: str
    smtp_port: int


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker ``settings``."""
    return {
        "BENCH_CELERY_BROKER_URL": settings.broker_url,
        "BENCH_CELERY_KEY_PREFIX": settings.key_prefix,
        "BENCH_CELERY_DATABASE_URL": settings.database_url,
        "BENCH_CELERY_TABLE": settings.table,
        "BENCH_CELERY_SMTP_HOST": settings.smtp_host,
        "BENCH_CELERY_SMTP_PORT": str(settings.smtp_port),
    }


def configure(settings: Settings) -> None:
    """Point the app at ``settings``: Redis as broker, every key under ``key_prefix``, no result backend."""
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options={"global_keyprefix": settings.key_prefix, "visibility_timeout": 3600},
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        # Nothing here is controlled remotely: no broadcast traffic beside the tasks.
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
    )
    _state.settings = settings


class _State:
    """One worker process's settings and persistent connections."""

    settings: Settings | None = None
    database: psycopg.Connection[Any] | None = None
    smtp: smtplib.SMTP | None = None
    redis: Redis | None = None


_state = _State()


def _settings() -> Settings:
    assert _state.settings is not None, "configure() first"
    return _state.settings


def _settings_from_environment() -> Settings | None:
    environment = os.environ
    if "BENCH_CELERY_BROKER_URL" not in environment:
        return None
    return Settings(
        broker_url=environment["BENCH_CELERY_BROKER_URL"],
        key_prefix=environment["BENCH_CELERY_KEY_PREFIX"],
        database_url=environment["BENCH_CELERY_DATABASE_URL"],
        table=environment["BENCH_CELERY_TABLE"],
        smtp_host=environment["BENCH_CELERY_SMTP_HOST"],
        smtp_port=int(environment["BENCH_CELERY_SMTP_PORT"]),
    )


@lru_cache(maxsize=1)
def _upsert(table: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (id, tenant_id, status, enqueued_at, sent_at, updated_at) "
        "VALUES (%s, %s, 'sent', %s, clock_timestamp(), clock_timestamp()) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, sent_at = excluded.sent_at, "
        "updated_at = excluded.updated_at"
    ).format(sql.Identifier(table))


def create_table_sql(table: str) -> sql.Composed:
    """The baseline's own status table."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, tenant_id text NOT NULL, status text NOT NULL, "
        "enqueued_at timestamptz NOT NULL, sent_at timestamptz, updated_at timestamptz NOT NULL)"
    ).format(sql.Identifier(table))


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(max_length=255)] | None = None
    email: EmailStr | None = None
    phone: Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = None
    locale: Annotated[str, Field(pattern=r"^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$")] | None = None
    webhook_url: Annotated[str, Field(max_length=2048)] | None = None


class Content(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Annotated[str, Field(max_length=998)] | None = None
    text: Annotated[str, Field(max_length=1_000_000)] | None = None
    html: Annotated[str, Field(max_length=1_000_000)] | None = None


class Tracking(BaseModel):
    opens: bool = False
    clicks: bool = False


class Dedup(BaseModel):
    window_s: Annotated[int, Field(ge=1, le=7 * 86_400)] | None = None
    bypass: bool = False


class NotificationRequest(BaseModel):
    """The fields of Herald's request (``shared.messages.NotificationRequest``), with its basic rules."""

    model_config = ConfigDict(extra="forbid")

    notification_id: UUID
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    created_at: datetime
    priority: Literal["high", "normal", "low"] = "normal"
    channels: Annotated[list[Literal["email", "sms", "push", "webhook", "in_app"]], Field(min_length=1)]
    recipient: Recipient
    content: Content
    variables: dict[str, Any] = {}
    metadata: dict[str, Annotated[str, Field(max_length=512)]] = {}
    tracking: Tracking = Tracking()
    send_at: datetime | None = None
    timezone: str | None = None
    recurrence: dict[str, Any] | None = None
    dedup: Dedup = Dedup()


_html = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_plain = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool) -> Template:
    return (_html if html else _plain).from_string(source)


def _render(source: str | None, variables: dict[str, Any], *, html: bool = False) -> str | None:
    return None if source is None else _compiled(source, html).render(variables)


def _database() -> psycopg.Connection[Any]:
    if _state.database is None or _state.database.closed or _state.database.broken:
        _state.database = psycopg.connect(_settings().database_url, autocommit=True)
    return _state.database


def _smtp() -> smtplib.SMTP:
    if _state.smtp is None:
        settings = _settings()
        _state.smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
        _state.smtp.ehlo()
    return _state.smtp


def _redis() -> Redis:
    if _state.redis is None:
        settings = _settings()
        _state.redis = Redis.from_url(settings.broker_url, socket_timeout=30)
    return _state.redis


def _send(message: EmailMessage) -> None:
    """Send on this process's connection; a connection the sink dropped is reopened once."""
    try:
        _smtp().send_message(message)
    except _RECONNECT_ERRORS:
        _drop_smtp()
        _smtp().send_message(message)


def _drop_smtp() -> None:
    if _state.smtp is not None:
        try:
            _state.smtp.close()
        finally:
            _state.smtp = None


def _open_connections(**_: object) -> None:
    """Each prefork child opens its connections once, at start."""
    _database()
    _smtp()
    _redis().ping()


def _build_message(request: NotificationRequest, to: str) -> EmailMessage:
    variables = request.variables
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = _render(request.content.subject, variables) or ""
    message["Message-ID"] = make_msgid(domain="bench.example.com")
    message.set_content(_render(request.content.text, variables) or "")
    html = _render(request.content.html, variables, html=True)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def _claimed(key: str, task_id: str) -> bool:
    """Whether this task holds the request's claim: it took it now, or took it before a retry or redelivery."""
    redis = _redis()
    return bool(redis.set(key, task_id, nx=True, ex=DEDUP_SECONDS)) or redis.get(key) == task_id.encode()


def _send_notification(task: Task, payload: dict[str, Any], enqueued_at: float) -> str:
    """Validate, de-duplicate, render, send and record one request; what happened to it."""
    request = NotificationRequest.model_validate(payload)
    if request.recipient.email is None:
        return "no email address"
    settings = _settings()
    key = f"{settings.key_prefix}dedup:{request.tenant_id}:{request.idempotency_key or request.notification_id}"
    if not request.dedup.bypass and not _claimed(key, task.request.id):
        return "duplicate"
    try:
        _send(_build_message(request, request.recipient.email))
        _database().execute(
            _upsert(settings.table),
            (request.notification_id, request.tenant_id, datetime.fromtimestamp(enqueued_at, UTC)),
        )
    except BaseException:
        # Not sent or not recorded: the same request sent again later must not be taken for a duplicate.
        _redis().delete(key)
        raise
    return "sent"


worker_process_init.connect(_open_connections)
send_notification = app.task(
    _send_notification,
    bind=True,
    name="bench.send_notification",
    acks_late=True,
    autoretry_for=(OSError, psycopg.OperationalError, RedisConnectionError),
    retry_backoff=True,
    max_retries=5,
)


_from_environment = _settings_from_environment()
if _from_environment is not None:
    # A worker: its main process needs the broker before any child starts.
    configure(_from_environment)
