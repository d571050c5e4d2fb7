"""SMTP with STARTTLS, implicit TLS and AUTH against a real SMTP server that demands them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.mail_sink import MailSink, SinkSecurity
from infra.standins.tls import local_server_context
from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp import SmtpProvider
from shared.delivery import Delivered, Retry
from tests.factories import email_delivery

pytestmark = pytest.mark.integration

CREDENTIALS = ("herald", "s3cret-password")


def provider_for(sink: MailSink, ca_file: Path | None, **settings: object) -> SmtpProvider:
    return SmtpProvider(
        EmailSenderSettings(
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_ca_file=str(ca_file) if ca_file else None,
            smtp_from="Herald Tests <noreply@herald.test>",
            **settings,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def starttls_sink(tls_dir: Path) -> Iterator[MailSink]:
    security = SinkSecurity(tls=local_server_context(tls_dir, "SMTP test CA"), credentials=CREDENTIALS)
    with MailSink(security=security) as sink:
        yield sink


@pytest.fixture
def implicit_tls_sink(tls_dir: Path) -> Iterator[MailSink]:
    security = SinkSecurity(tls=local_server_context(tls_dir, "SMTP test CA"), implicit_tls=True)
    with MailSink(security=security) as sink:
        yield sink


async def test_starttls_and_auth_deliver(starttls_sink: MailSink, tls_dir: Path) -> None:
    smtp = provider_for(
        starttls_sink,
        tls_dir / "ca.pem",
        smtp_start_tls=True,
        smtp_username=CREDENTIALS[0],
        smtp_password=CREDENTIALS[1],
    )
    try:
        smtp.validate_config()
        assert await smtp.send(email_delivery(to="ada@example.com")) == Delivered("smtp")
        await starttls_sink.wait_for(1)
    finally:
        smtp.close()


async def test_wrong_credentials_are_refused_and_nothing_is_sent(starttls_sink: MailSink, tls_dir: Path) -> None:
    smtp = provider_for(
        starttls_sink,
        tls_dir / "ca.pem",
        smtp_start_tls=True,
        smtp_username="herald",
        smtp_password="wrong",
        smtp_timeout_s=2.0,
    )
    try:
        outcome = await smtp.send(email_delivery())
    finally:
        smtp.close()
    # The account's credentials, not the message: retryable, so another provider may still send it.
    assert isinstance(outcome, Retry)
    assert starttls_sink.messages == []


async def test_a_server_that_requires_starttls_refuses_plain_text(starttls_sink: MailSink) -> None:
    smtp = provider_for(starttls_sink, None)
    try:
        outcome = await smtp.send(email_delivery())
    finally:
        smtp.close()
    assert not isinstance(outcome, Delivered)
    assert starttls_sink.messages == []


async def test_implicit_tls_delivers(implicit_tls_sink: MailSink, tls_dir: Path) -> None:
    smtp = provider_for(implicit_tls_sink, tls_dir / "ca.pem", smtp_use_tls=True)
    try:
        assert await smtp.send(email_delivery()) == Delivered("smtp")
        await implicit_tls_sink.wait_for(1)
    finally:
        smtp.close()


async def test_an_untrusted_certificate_is_not_sent_to(implicit_tls_sink: MailSink) -> None:
    smtp = provider_for(implicit_tls_sink, None, smtp_use_tls=True)
    try:
        outcome = await smtp.send(email_delivery())
    finally:
        smtp.close()
    assert isinstance(outcome, Retry)
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.detail
    assert implicit_tls_sink.messages == []
