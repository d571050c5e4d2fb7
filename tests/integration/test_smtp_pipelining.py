"""The SMTP wire (services.sender_email.smtp_wire): RFC 2920 PIPELINING, proved on the wire.

A small scripted SMTP server records every read it gets, can hold its replies to MAIL, RCPT and DATA
until all three have arrived (a client that waits for each reply then times out), and can drop the
connection. The mail sink (aiosmtpd) checks dot-stuffing and line endings with a real parser.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest
import uvloop

from infra.local.mail_sink import MailSink, SinkSecurity
from infra.standins.tls import local_server_context
from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp import SmtpProvider
from services.sender_email.smtp_wire import SmtpWire
from shared.delivery import Delivered, Retry
from tests.factories import email_delivery

pytestmark = pytest.mark.integration

ENVELOPE = (b"MAIL FROM:", b"RCPT TO:", b"DATA")


@dataclass
class Script:
    """How the scripted server behaves, and what it saw."""

    pipelining: bool
    # Answer MAIL, RCPT and DATA only once all three have arrived.
    hold_envelope: bool = False
    # Close the connection, unanswered, on the first command starting with this.
    drop_at: bytes | None = None
    # Close the connection on the command after this many mails on it.
    drop_after_mails: int | None = None
    # Sent unasked after each mail's final reply, the connection left open.
    unsolicited: bytes | None = None
    reads: list[list[bytes]] = field(default_factory=list)  # per connection, each read as it came
    mails: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a client closed its connection


class ScriptedSmtp(asyncio.Protocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.reads: list[bytes] = []
        script.reads.append(self.reads)
        self.buffer = b""
        self.in_data = False
        self.held: list[bytes] = []
        self.mails = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"220 scripted ESMTP\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.script.closed.set()

    def data_received(self, data: bytes) -> None:
        self.reads.append(data)
        self.buffer += data
        while not self.transport.is_closing():
            if self.in_data:
                body, found, self.buffer = self.buffer.partition(b"\r\n.\r\n")
                if not found:
                    self.buffer = body
                    return
                self.in_data = False
                self.mails += 1
                self.script.mails.append(body + b"\r\n")
                # In the same write as the reply, so it is there before the client's next command.
                unsolicited = b"\r\n" + self.script.unsolicited if self.script.unsolicited else b""
                self.reply(b"250 2.0.0 queued" + unsolicited)
                continue
            line, found, self.buffer = self.buffer.partition(b"\r\n")
            if not found:
                self.buffer = line
                return
            self.command(line)

    def command(self, line: bytes) -> None:
        script = self.script
        if (script.drop_at and line.startswith(script.drop_at)) or self.mails == script.drop_after_mails:
            self.transport.close()
        elif line.startswith(b"EHLO"):
            self.reply(b"250-scripted\r\n250-PIPELINING" if script.pipelining else b"250-scripted\r\n250-8BITMIME")
            self.reply(b"250 SIZE 100000000")
        elif line.startswith(ENVELOPE):
            self.in_data = line == b"DATA"
            answer = b"354 go ahead" if self.in_data else b"250 2.1.0 ok"
            if not script.hold_envelope:
                self.reply(answer)
                return
            self.held.append(answer)
            if self.in_data:
                # All three at once, in one write: the replies a pipelining client must all keep.
                self.reply(b"\r\n".join(self.held))
                self.held = []
        elif line.startswith(b"QUIT"):
            self.reply(b"221 bye")
            self.transport.close()
        else:  # RSET, NOOP
            self.reply(b"250 ok")

    def reply(self, text: bytes) -> None:
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(text + b"\r\n")


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[int]:
    """The scripted server on this event loop; yields its port."""
    server = await asyncio.get_running_loop().create_server(lambda: ScriptedSmtp(script), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def settings_for(port: int, **overrides: object) -> EmailSenderSettings:
    options: dict[str, object] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_from": "Herald Tests <noreply@herald.test>",
        "smtp_timeout_s": 2.0,
        "smtp_pool_size": 1,
    }
    return EmailSenderSettings(**(options | overrides))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def provider_for(port: int, **overrides: object) -> AsyncIterator[SmtpProvider]:
    smtp = SmtpProvider(settings_for(port, **overrides))
    try:
        yield smtp
    finally:
        smtp.close()


def envelope_reads(reads: list[bytes]) -> list[bytes]:
    """The reads that carried MAIL, RCPT or DATA."""
    return [read for read in reads if any(command in read for command in ENVELOPE)]


async def test_mail_rcpt_and_data_go_in_one_write_when_the_server_offers_pipelining() -> None:
    """The server answers nothing until all three commands are there: a client that waits for each reply
    times out. Its three replies then come in one write, and the client must keep all of them."""
    script = Script(pipelining=True, hold_envelope=True)
    async with scripted(script) as port, provider_for(port) as smtp:
        for n in range(2):
            assert await smtp.send(email_delivery(subject=f"mail {n}")) == Delivered("smtp")
    [reads] = script.reads
    [first, second] = envelope_reads(reads)
    assert first.startswith(b"MAIL FROM:<noreply@herald.test> SIZE=")
    assert first.endswith(b"\r\nRCPT TO:<ada@example.com>\r\nDATA\r\n")
    assert second.startswith(b"MAIL FROM:")
    assert len(script.mails) == 2


async def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    script = Script(pipelining=False)
    async with scripted(script) as port, provider_for(port) as smtp:
        assert await smtp.send(email_delivery()) == Delivered("smtp")
    [reads] = script.reads
    assert [read.split(b":")[0].strip() for read in envelope_reads(reads)] == [b"MAIL FROM", b"RCPT TO", b"DATA"]
    assert len(script.mails) == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_server_that_drops_the_connection_mid_mail_is_retried(pipelining: bool) -> None:
    script = Script(pipelining=pipelining, drop_at=b"MAIL")
    async with scripted(script) as port, provider_for(port) as smtp:
        outcome = await smtp.send(email_delivery())
    assert isinstance(outcome, Retry)
    assert "disconnected" in outcome.detail
    # The first connection, then one fresh try.
    assert len(script.reads) == 2
    assert script.mails == []


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_pooled_connection_the_server_closed_is_replaced_by_a_fresh_one(pipelining: bool) -> None:
    script = Script(pipelining=pipelining, drop_after_mails=1)
    async with scripted(script) as port, provider_for(port) as smtp:
        for n in range(2):
            assert await smtp.send(email_delivery(subject=f"mail {n}")) == Delivered("smtp")
    assert len(script.reads) == 2
    assert len(script.mails) == 2


@pytest.mark.parametrize("pipelining", [True, False])
async def test_an_unsolicited_reply_is_never_taken_for_the_next_commands(pipelining: bool) -> None:
    """A reply that came between mails would pass for the next MAIL's: that connection is dropped instead."""
    script = Script(pipelining=pipelining, unsolicited=b"421 4.4.2 idle for too long")
    async with scripted(script) as port, provider_for(port) as smtp:
        for n in range(2):
            assert await smtp.send(email_delivery(subject=f"mail {n}")) == Delivered("smtp")
    assert len(script.reads) == 2
    assert len(script.mails) == 2


async def test_a_silent_server_times_out_as_a_retry() -> None:
    """A server that offers no PIPELINING but holds its replies: the wire gives up after the timeout."""
    script = Script(pipelining=False, hold_envelope=True)
    async with scripted(script) as port, provider_for(port, smtp_timeout_s=0.5) as smtp:
        outcome = await smtp.send(email_delivery())
    assert isinstance(outcome, Retry)
    assert "SMTPReadTimeoutError" in outcome.detail


async def test_a_send_the_caller_gives_up_on_closes_its_connection() -> None:
    """The provider chain cancels a send past its own timeout: the connection must not stay open, unowned."""
    script = Script(pipelining=False, hold_envelope=True)
    async with scripted(script) as port, provider_for(port, smtp_timeout_s=30.0) as smtp:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await smtp.send(email_delivery())
        async with asyncio.timeout(5):
            await script.closed.wait()


async def wire_to(sink: MailSink) -> SmtpWire:
    client = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, timeout=5)
    await client.connect()
    await client.ehlo()
    return SmtpWire.take_over(client, 5.0)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_dots_at_line_starts_and_lone_line_endings_arrive_as_sent(pipelining: bool) -> None:
    """RFC 5321 4.5.2: lines starting with "." are sent with one more; the server takes it off again."""
    message = b".first\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.leading\nlone LF\rlone CR\r\nlast line without an ending"
    with MailSink(pipelining=pipelining) as sink:
        wire = await wire_to(sink)
        try:
            assert wire.pipelining is pipelining
            await wire.send("noreply@herald.test", "ada@example.com", message, smtputf8=False)
            await wire.noop()
        finally:
            wire.close()
        [mail] = await sink.wait_for(1)
    assert mail.raw == (
        b".first\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.leading\r\n"
        b"lone LF\r\nlone CR\r\nlast line without an ending\r\n"
    )


@pytest.mark.parametrize("address", ["ada@example.com>", "ada@example.com\r\nRSET", "<ada@example.com"])
async def test_an_unsafe_address_is_refused_before_anything_is_written(address: str) -> None:
    script = Script(pipelining=True)
    async with scripted(script) as port:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
        await client.connect()
        await client.ehlo()
        wire = SmtpWire.take_over(client, 5.0)
        try:
            with pytest.raises(ValueError, match="SMTP command line"):
                await wire.send("noreply@herald.test", address, b"Subject: x\r\n\r\nx\r\n", smtputf8=False)
            assert wire.is_connected
        finally:
            wire.close()
    assert envelope_reads(script.reads[0]) == []


@pytest.mark.parametrize("tls", ["plain", "starttls", "implicit"])
def test_the_hand_over_works_on_uvloop_with_and_without_tls(tls: str, tmp_path: Path) -> None:
    """The services run on uvloop: its transports, TLS ones included, must take the wire as their protocol."""
    security = (
        None if tls == "plain" else SinkSecurity(local_server_context(tmp_path, "SMTP test CA"), tls == "implicit")
    )
    options = {"smtp_start_tls": tls == "starttls", "smtp_use_tls": tls == "implicit"}
    if security is not None:
        options["smtp_ca_file"] = str(tmp_path / "ca.pem")  # type: ignore[assignment]

    async def two_mails(port: int) -> list[object]:
        async with provider_for(port, **options) as smtp:
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            return [await smtp.send(email_delivery(subject=f"mail {n}")) for n in range(2)]

    with MailSink(security=security) as sink:
        assert uvloop.run(two_mails(sink.port)) == [Delivered("smtp"), Delivered("smtp")]
        mails = sink.wait_for_blocking(2)
    assert [m.subject for m in mails] == ["mail 0", "mail 1"]
    assert len({m.peer for m in mails}) == 1
