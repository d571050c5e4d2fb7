"""Failover and circuit breaking across real email providers: SES (moto) first, SMTP second.

SES goes down: every mail still arrives, through SMTP, and SES's circuit opens. SES comes back:
after the open interval the circuit lets probes through, they succeed and it closes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest

from infra.local.mail_sink import MailSink
from infra.standins.aws import MotoServer
from services.sender_email.ses import SesProvider
from services.sender_email.smtp import SmtpProvider
from shared.config import HeraldSettings
from shared.delivery import Delivered
from shared.providers.breaker import BreakerPolicy, BreakerState
from shared.providers.chain import ProviderChain, ProviderLimits
from tests.breakers import circuit_state, wait_for_state
from tests.factories import REGION, email_delivery, ses_config, smtp_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POLICY = BreakerPolicy(failure_rate_threshold=0.5, minimum_calls=3, window_s=30, open_for_s=1.0, half_open_probes=2)


def verify_sender(endpoint_url: str) -> None:
    client: Any = boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_email_identity(EmailIdentity="noreply@herald.test")


@pytest.fixture
def ses_server() -> Iterator[MotoServer]:
    with MotoServer(line_sink=None) as server:
        verify_sender(server.url)
        yield server


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with MailSink() as running:
        yield running


@pytest.fixture
async def chain(settings: HeraldSettings, ses_server: MotoServer, sink: MailSink) -> AsyncIterator[ProviderChain[Any]]:
    ses = SesProvider(ses_config(ses_server.url, timeout_s=1.0))
    smtp = SmtpProvider(smtp_settings(settings, sink.port))
    providers: ProviderChain[Any] = ProviderChain(
        [ses, smtp], breaker_policy=POLICY, limits={"ses": ProviderLimits(timeout_s=3.0)}, limiter=None
    )
    try:
        yield providers
    finally:
        await providers.close()


async def test_a_failing_primary_fails_over_opens_its_circuit_and_closes_after_recovery(
    chain: ProviderChain[Any], ses_server: MotoServer, sink: MailSink
) -> None:
    first = await chain.send(email_delivery())
    assert isinstance(first, Delivered)
    assert first.provider == "ses"

    ses_server.stop()
    for _ in range(POLICY.minimum_calls):
        outcome = await chain.send(email_delivery())
        assert isinstance(outcome, Delivered)
        assert outcome.provider == "smtp"
    assert chain.breaker("ses").state is BreakerState.OPEN
    assert circuit_state("ses") is BreakerState.OPEN
    await sink.wait_for(POLICY.minimum_calls)

    # While open, SES is not tried: the mail goes straight to SMTP and the circuit stays open.
    outcome = await chain.send(email_delivery())
    assert isinstance(outcome, Delivered)
    assert outcome.provider == "smtp"
    assert chain.breaker("ses").state is BreakerState.OPEN

    ses_server.start()
    verify_sender(ses_server.url)
    await wait_for_state(chain.breaker("ses"), BreakerState.HALF_OPEN)
    for _ in range(POLICY.half_open_probes):
        outcome = await chain.send(email_delivery())
        assert isinstance(outcome, Delivered)
        assert outcome.provider == "ses"
    assert chain.breaker("ses").state is BreakerState.CLOSED
    assert circuit_state("ses") is BreakerState.CLOSED
