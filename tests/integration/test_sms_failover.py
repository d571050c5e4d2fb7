"""The SMS channel's failure handling against real wire protocols: Twilio first, SNS (moto) second.

sender-sms is configured as in production (``HERALD_SMS_PROVIDERS=twilio,sns`` and the Twilio and
SNS variables). Twilio is either Prism serving Twilio's official API description, which refuses any
request that breaks it, or a scripted server answering with Twilio's own status codes and error
bodies; SNS is moto, reached by boto3 over HTTP.

Failover and circuit breaking (the provider chain built from those settings): Twilio goes down
(connection refused, or 503) and every message still arrives, through SNS, while Twilio's circuit
opens; Twilio comes back and, after the open interval, probes go through and the circuit closes.

Through sender-sms itself (its own process, its real Kafka consumer): a message Twilio refuses for
good goes to the DLQ at once with Twilio's reason and is marked failed, never retried nor sent
through SNS; a message no provider can take now (Twilio 429 or 503, SNS down) is scheduled for a
delayed retry and marked retrying.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from infra.local.broker import Broker
from infra.local.processes import free_port, stop_all
from infra.local.stack import ServiceSpec, start_services
from infra.standins.aws import MotoServer
from infra.standins.prism import PrismMock
from services.sender_sms.main import available_providers
from services.sender_sms.settings import SmsSenderSettings
from shared.codec import Contract
from shared.delivery import Delivered
from shared.errors import DeadLetterReason
from shared.kafka.admin import AdminSettings, create_topics
from shared.kafka.records import message_key
from shared.messages import DEAD_LETTER, DELAYED_MESSAGE, SMS_DELIVERY, STATUS_EVENT, SmsDelivery
from shared.providers.breaker import BreakerState
from shared.providers.chain import ProviderChain
from shared.providers.factory import build_chain
from shared.topics import Topics
from tests.breakers import circuit_state, transitions, wait_for_state
from tests.conftest import REDIS_URL
from tests.factories import sms_delivery
from tests.kafka_helpers import find_record, high_watermarks, produce_raw, read_topic, wait_until_drained
from tests.scripted_http import Reply, ScriptedServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONTRACT = Path(__file__).resolve().parents[2] / "infra" / "standins" / "contracts" / "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
# The breaker of the failover tests: opens after 3 failed calls, probes after 1 s, closes after 2 probes.
MINIMUM_CALLS = 3
OPEN_S = 1.0
HALF_OPEN_PROBES = 2
RETRY_BASE_DELAY_S = 60.0


def sms_sender_environment(twilio_url: str, sns: MotoServer) -> dict[str, str]:
    """The variables that make sender-sms send through Twilio at ``twilio_url``, then SNS on ``sns``."""
    return sns.sms_environment() | {
        "HERALD_SMS_PROVIDERS": "twilio,sns",
        "HERALD_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "HERALD_TWILIO_AUTH_TOKEN": "test-token",
        "HERALD_TWILIO_FROM_NUMBER": "+14155550100",
        "HERALD_TWILIO_BASE_URL": twilio_url,
        "HERALD_PROVIDER_TIMEOUT_S": "3",
    }


def twilio_json(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def twilio_error(status: int, code: int, message: str) -> Reply:
    """An error answer as Twilio's 2010 API gives it."""
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return twilio_json(status, {"code": code, "message": message, "more_info": more_info, "status": status})


def created() -> Reply:
    """201 with the Message resource from Twilio's own description of the call."""
    operation = json.loads(CONTRACT.read_text())["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    return twilio_json(201, operation["responses"]["201"]["content"]["application/json"]["examples"]["create"]["value"])


UNAVAILABLE = twilio_error(503, 20503, "Service Unavailable")


def texts(count: int) -> list[SmsDelivery]:
    """``count`` text messages, each to its own number with its own body."""
    return [sms_delivery(to=f"+1415555{n:04d}", body=f"Your code is {n:04d}") for n in range(count)]


# --- failover and circuit breaking ----------------------------------------------------------------


class TwilioStandIn(Protocol):
    """Twilio's API on a local port, which a test can take down and bring back."""

    url: str

    def go_down(self) -> None: ...

    def recover(self) -> None: ...


class RefusingTwilio:
    """Twilio's contract on Prism; down, nothing listens: connections are refused."""

    def __init__(self, prism: PrismMock) -> None:
        self._prism = prism
        self.url = prism.url

    def go_down(self) -> None:
        self._prism.stop()

    def recover(self) -> None:
        self._prism.start()  # on the same port


class FailingTwilio:
    """Twilio answering 201 with a Message; down, it answers 503 with Twilio's error body."""

    def __init__(self, server: ScriptedServer) -> None:
        self._server = server
        self._server.reply = created()
        self.url = server.url

    def go_down(self) -> None:
        self._server.reply = UNAVAILABLE

    def recover(self) -> None:
        self._server.reply = created()


@pytest.fixture(params=["connection refused", "503"])
def twilio(request: pytest.FixtureRequest) -> Iterator[TwilioStandIn]:
    if request.param == "503":
        with ScriptedServer().serving() as server:
            yield FailingTwilio(server)
    else:
        with PrismMock(CONTRACT) as prism:
            yield RefusingTwilio(prism)


@pytest.fixture
async def chain(
    twilio: TwilioStandIn, aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ProviderChain[SmsDelivery]]:
    """sender-sms's provider chain, built from its variables as the service builds it."""
    environment = sms_sender_environment(twilio.url, aws) | {
        "HERALD_BREAKER_MINIMUM_CALLS": str(MINIMUM_CALLS),
        "HERALD_BREAKER_OPEN_S": str(OPEN_S),
        "HERALD_BREAKER_HALF_OPEN_PROBES": str(HALF_OPEN_PROBES),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = SmsSenderSettings()
    providers = build_chain("sms", settings.sms_providers, available_providers(settings), settings, limiter=None)
    yield providers  # pytest runs what follows whatever the test's outcome
    await providers.close()


async def test_twilio_down_fails_over_to_sns_opens_its_circuit_and_closes_after_recovery(
    chain: ProviderChain[SmsDelivery], twilio: TwilioStandIn, aws: MotoServer
) -> None:
    assert [provider.name for provider in chain.providers] == ["twilio", "sns"]
    first = await chain.send(sms_delivery())
    assert first == Delivered("twilio", "SM" + "a" * 32)  # the message SID of the contract's example
    opened, closed = transitions("twilio", BreakerState.OPEN), transitions("twilio", BreakerState.CLOSED)

    twilio.go_down()
    down = texts(MINIMUM_CALLS + 1)
    outcomes = [await chain.send(text) for text in down[:MINIMUM_CALLS]]
    assert [outcome.provider for outcome in outcomes] == ["sns"] * MINIMUM_CALLS
    assert chain.breaker("twilio").state is BreakerState.OPEN
    assert circuit_state("twilio") is BreakerState.OPEN
    assert transitions("twilio", BreakerState.OPEN) == opened + 1
    # While open, Twilio is not tried: the message goes straight to SNS and the circuit stays open.
    outcomes.append(await chain.send(down[-1]))
    assert outcomes[-1].provider == "sns"
    assert chain.breaker("twilio").state is BreakerState.OPEN

    # Every message sent while Twilio was down is an SMS SNS sent, to its number, with its body.
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert aws.sent_sms() == [
        {"message_id": outcome.detail, "phone_number": text["to"], "message": text["body"]}
        for outcome, text in zip(outcomes, down, strict=True)
    ]

    twilio.recover()
    await wait_for_state(chain.breaker("twilio"), BreakerState.HALF_OPEN)
    assert circuit_state("twilio") is BreakerState.HALF_OPEN
    for text in texts(HALF_OPEN_PROBES):
        assert await chain.send(text) == Delivered("twilio", "SM" + "a" * 32)
    assert chain.breaker("twilio").state is BreakerState.CLOSED
    assert circuit_state("twilio") is BreakerState.CLOSED
    assert transitions("twilio", BreakerState.CLOSED) == closed + 1
    assert len(aws.sent_sms()) == len(down)


# --- through sender-sms's Kafka consumer ----------------------------------------------------------


@dataclass
class SmsSender:
    """sender-sms running as its own process on its own topics."""

    bootstrap: str
    topics: Topics

    async def send(self, text: SmsDelivery) -> bytes:
        """Produce ``text`` to the send.sms topic, as the router does; the bytes produced."""
        raw = SMS_DELIVERY.encode(text)
        key = message_key(text["tenant_id"], text["to"])
        await produce_raw(self.bootstrap, self.topics.send("sms"), [raw], key=key)
        return raw

    async def first(self, topic: str, contract: Contract[Any], text: SmsDelivery) -> dict[str, Any]:
        """The first record of ``topic`` about ``text``'s notification, waiting for it."""
        record = await find_record(
            self.bootstrap, topic, lambda r: contract.decode(r.value)["notification_id"] == text["notification_id"]
        )
        found: dict[str, Any] = contract.decode(record.value)
        return found

    async def all_about(self, topic: str, contract: Contract[Any], text: SmsDelivery) -> list[dict[str, Any]]:
        """Every record about ``text``'s notification in ``topic``, once sender-sms has committed it.

        Commits come only after everything produced for a message is acknowledged, so once the
        message is committed nothing more about it can appear.
        """
        await wait_until_drained(self.bootstrap, self.topics.group("sender-sms"), self.topics.send("sms"))
        total = sum((await high_watermarks(self.bootstrap, topic)).values())
        records = await read_topic(self.bootstrap, topic, total) if total else []
        values = [contract.decode(record.value) for record in records]
        return [value for value in values if value["notification_id"] == text["notification_id"]]


@pytest.fixture(scope="module")
def erring_twilio() -> Iterator[ScriptedServer]:
    """Twilio's API answering whatever the test scripts."""
    with ScriptedServer().serving() as server:
        yield server


@pytest.fixture(scope="module")
def sms_sender(broker: Broker, erring_twilio: ScriptedServer, moto_server: MotoServer) -> Iterator[SmsSender]:
    """sender-sms as its own process, Twilio then SNS, on topics of its own (nothing is delivered, so
    its Redis ledger stays empty)."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    admin = AdminSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=namespace, kafka_topic_partitions=1
    )
    asyncio.run(create_topics(admin))
    environment = sms_sender_environment(erring_twilio.url, moto_server) | {
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HERALD_TOPIC_PREFIX": namespace,
        "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "HERALD_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_REDIS_NAMESPACE": namespace,
        "HERALD_RETRY_BASE_DELAY_S": str(RETRY_BASE_DELAY_S),
        "HERALD_OPS_HOST": "127.0.0.1",
    }
    spec = ServiceSpec("sender-sms", "services.sender_sms", free_port())
    # Ready once Kafka, Redis and one provider (SNS) answer: Twilio's account check may fail here.
    processes = start_services([spec], environment, ready_timeout=60, line_sink=None)
    try:
        yield SmsSender(broker.bootstrap_servers, Topics(namespace))
    finally:
        stop_all(processes, grace=20)


def messages_to(twilio: ScriptedServer, to: str) -> int:
    """How many send requests Twilio got for ``to``."""
    form = f"To={to.replace('+', '%2B')}"  # the SDK posts a form, URL-encoded
    return sum(1 for request in twilio.requests if request.path == MESSAGES_PATH and form in request.body.decode())


async def test_a_message_twilio_refuses_goes_to_the_dlq_at_once_and_nowhere_else(
    sms_sender: SmsSender, erring_twilio: ScriptedServer, moto_server: MotoServer
) -> None:
    text = sms_delivery(to="+15005550001")
    erring_twilio.reply = twilio_error(400, 21211, f"The 'To' number {text['to']} is not a valid phone number.")
    asked_before = messages_to(erring_twilio, text["to"])
    raw = await sms_sender.send(text)

    letter = await sms_sender.first(sms_sender.topics.dlq, DEAD_LETTER, text)
    assert letter["reason_category"] == DeadLetterReason.INVALID_ADDRESS
    assert letter["reason"].startswith("HTTP 400, Twilio error 21211: ")
    assert letter["reason"].endswith("The 'To' number +15005550001 is not a valid phone number.")
    assert (letter["original_topic"], letter["original_payload"]) == (sms_sender.topics.send("sms"), raw)
    assert (letter["service"], letter["tenant_id"]) == ("sender-sms", text["tenant_id"])

    [event] = await sms_sender.all_about(sms_sender.topics.status, STATUS_EVENT, text)
    assert (event["status"], event["channel"], event["attempt"]) == ("failed", "sms", 1)
    assert (event["provider"], event["reason"]) == ("twilio", DeadLetterReason.INVALID_ADDRESS.value)
    assert "Twilio error 21211" in event["detail"]
    # Not retried, and not failed over: SNS would refuse the number too.
    assert await sms_sender.all_about(sms_sender.topics.delay, DELAYED_MESSAGE, text) == []
    assert messages_to(erring_twilio, text["to"]) == asked_before + 1
    assert [sms for sms in moto_server.sent_sms() if sms["phone_number"] == text["to"]] == []


@pytest.mark.parametrize(
    ("answer", "twilio_error_code"),
    [(twilio_error(429, 20429, "Too Many Requests"), 20429), (UNAVAILABLE, 20503)],
    ids=["429", "503"],
)
async def test_a_message_no_provider_can_take_now_is_retried_later(
    sms_sender: SmsSender, erring_twilio: ScriptedServer, moto_server: MotoServer, answer: Reply, twilio_error_code: int
) -> None:
    text = sms_delivery(to="+15005550002")
    erring_twilio.reply = answer
    asked_before = messages_to(erring_twilio, text["to"])
    moto_server.stop()  # SNS down too, or the message would simply go through SNS
    try:
        before = datetime.now(UTC)
        await sms_sender.send(text)
        job = await sms_sender.first(sms_sender.topics.delay, DELAYED_MESSAGE, text)
        [event] = await sms_sender.all_about(sms_sender.topics.status, STATUS_EVENT, text)
    finally:
        moto_server.start()

    assert job["target_topic"] == sms_sender.topics.send("sms")
    assert SMS_DELIVERY.decode(job["payload"]) == {**text, "attempt": 2}
    assert job["reason"] == "provider_unavailable"
    # The second attempt waits between half the base delay and the base delay (equal jitter).
    assert job["due_at"] >= before + timedelta(seconds=RETRY_BASE_DELAY_S / 2)
    assert (event["status"], event["channel"], event["attempt"]) == ("retrying", "sms", 1)
    assert event["reason"] == "provider_unavailable"
    # The detail says why each provider could not take it.
    twilio_said, sns_said = event["detail"].split("; ")
    assert twilio_said.startswith(f"twilio: HTTP {answer.status}, Twilio error {twilio_error_code}: ")
    assert sns_said.startswith("sns: cannot reach SNS")
    assert await sms_sender.all_about(sms_sender.topics.dlq, DEAD_LETTER, text) == []
    assert messages_to(erring_twilio, text["to"]) == asked_before + 1
