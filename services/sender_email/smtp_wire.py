"""Mail transactions on a connection aiosmtplib opened, pipelined (RFC 2920) where the server offers it.

aiosmtplib connects, says EHLO, starts TLS and authenticates: rare work that it does well. Per mail,
though, it writes and waits once per command (MAIL, RCPT, DATA, body: four round trips), and its
protocol keeps one reply per read and drops the rest, so it cannot pipeline. Once a connection is up,
:meth:`SmtpWire.take_over` moves its transport to this protocol, which keeps every reply that arrives
and, with PIPELINING, writes MAIL, RCPT and DATA at once: two round trips and two writes a mail.
Failures raise aiosmtplib's exceptions, so callers classify them as they would aiosmtplib's own.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import cast

import aiosmtplib

# A reply line longer than this, or a reply left unfinished past it, is not SMTP (RFC 5321 allows 512).
MAX_REPLY_BYTES = 32 * 1024
# Any line ending: the body goes out with CRLF only, as aiosmtplib's normalize_message_line_endings does.
_LINE_ENDING = re.compile(rb"\r\n|\n|\r")
# Characters that could end an address's angle brackets or the command line, and so inject commands or
# parameters. Ingest validated the addresses; this is the last guard before the wire, not a parser.
_UNSAFE_IN_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")
_DATA = b"DATA\r\n"


class SmtpWire(asyncio.Protocol):
    """One SMTP connection after its greeting, EHLO, TLS and AUTH; one transaction at a time."""

    def __init__(self, transport: asyncio.Transport, *, timeout_s: float, extensions: set[str]) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self.pipelining = "pipelining" in extensions
        self.smtputf8 = "smtputf8" in extensions
        self._size = "size" in extensions
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines read so far of a multi-line reply
        self._replies: deque[tuple[int, str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: aiosmtplib.SMTPException | None = None

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, timeout_s: float) -> SmtpWire:
        """Move a connected client's transport (plain or TLS) to a new wire; the client is not used again."""
        if client.transport is None or client.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost before the hand-over")
        transport = cast(asyncio.Transport, client.transport)
        wire = cls(transport, timeout_s=timeout_s, extensions=set(client.esmtp_extensions))
        transport.set_protocol(wire)
        return wire

    @property
    def is_connected(self) -> bool:
        return self._error is None and not self._transport.is_closing()

    async def send(self, envelope_from: str, to: str, message: bytes, *, smtputf8: bool) -> None:
        """Send one mail to one recipient; nothing is written if the addresses or SMTPUTF8 forbid it.

        Raises:
            ValueError: an address holds a control character or an angle bracket.
            aiosmtplib.SMTPNotSupported: SMTPUTF8 is needed and the server does not offer it.
            aiosmtplib.SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError: the server refused.
            aiosmtplib.SMTPServerDisconnected, SMTPReadTimeoutError: the connection is gone or silent.
        """
        mail_from, rcpt_to = _address(envelope_from), _address(to)
        if smtputf8 and not self.smtputf8:
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        body = message
        # build_message writes CRLF only: three counts at C speed spare it the regex (a quarter of the CPU a mail).
        if not body.count(b"\r\n") == body.count(b"\n") == body.count(b"\r"):
            body = _LINE_ENDING.sub(b"\r\n", body)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        options = (f" SIZE={len(body)}" if self._size else "") + (" SMTPUTF8" if smtputf8 else "")
        envelope = [f"MAIL FROM:<{mail_from}>{options}\r\n".encode(), f"RCPT TO:<{rcpt_to}>\r\n".encode(), _DATA]
        replies = await self._envelope(envelope)
        refusal = _refusal(replies, envelope_from, to)
        if refusal is not None:
            if replies[-1][0] == 354:
                # DATA accepted after a refused MAIL or RCPT (RFC 2920 forbids it): the server waits for a body.
                self.close()
            else:
                await self._reset()
            raise refusal
        # RFC 5321 4.5.2: a line that starts with "." gets one more, so it cannot end the mail early.
        if body.startswith(b"."):
            body = b"." + body
        self._write(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, text = await self._reply()
        if not 200 <= code < 300:
            # After the final reply the transaction is over either way: no RSET needed.
            raise aiosmtplib.SMTPDataError(code, text)

    async def noop(self) -> None:
        """NOOP: the server is there and answers."""
        self._write(b"NOOP\r\n")
        code, text = await self._reply()
        if not 200 <= code < 300:
            raise aiosmtplib.SMTPResponseException(code, text)

    def close(self) -> None:
        self._transport.close()

    async def _envelope(self, commands: list[bytes]) -> list[tuple[int, str]]:
        """Each command's reply; without PIPELINING one command at a time, stopping at the first refusal."""
        if self.pipelining:
            self._write(b"".join(commands))
            return [await self._reply() for _ in commands]
        replies: list[tuple[int, str]] = []
        for command in commands:
            self._write(command)
            replies.append(await self._reply())
            if replies[-1][0] >= 400:
                break
        return replies

    async def _reset(self) -> None:
        # A refused envelope leaves the server mid-transaction: RSET, or the connection is no good.
        try:
            self._write(b"RSET\r\n")
            code, _ = await self._reply()
        except aiosmtplib.SMTPException:
            code = 0
        if not 200 <= code < 300:
            self.close()

    def _write(self, data: bytes) -> None:
        if self._replies:
            # A reply nobody asked for (a server's idle-timeout 421, say) would pass for this command's.
            code, text = self._replies[0]
            self._fail(aiosmtplib.SMTPServerDisconnected(f"Out of step: unsolicited reply {code} {text}"))
        if not self.is_connected:
            raise self._error or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def _reply(self) -> tuple[int, str]:
        """The next reply, waiting at most the connection's timeout for it."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._waiter
            except TimeoutError:
                # A reply may still come and would be taken for the next command's: this connection is done.
                self.close()
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
            except asyncio.CancelledError:
                # Likewise when the caller gives up (the provider chain's timeout): close rather than leak it.
                self.close()
                raise
            finally:
                self._waiter = None
        return self._replies.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        # Several replies may arrive in one read (that is the point of pipelining): keep each of them.
        self._buffer += data
        start = 0
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start : end + 1]).rstrip(b"\r\n")
            start = end + 1
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self._fail(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP reply line: {line[:100]!r}"))
                return
            self._lines.append(line[4:].decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":  # "ddd text" ends a reply, "ddd-text" continues it (RFC 5321 4.2.1)
                self._replies.append((int(code), "\n".join(self._lines)))
                self._lines = []
        del self._buffer[:start]
        if len(self._buffer) > MAX_REPLY_BYTES or sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._fail(aiosmtplib.SMTPResponseException(-1, "SMTP reply too long"))
            return
        if self._replies:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        error = aiosmtplib.SMTPServerDisconnected("Connection lost")
        error.__cause__ = exc
        # Replies read before the loss are still handed out; the error comes after them.
        self._error = self._error or error
        self._wake()

    def _fail(self, error: aiosmtplib.SMTPException) -> None:
        self._error = error
        self._transport.close()
        self._wake()


def _address(address: str) -> str:
    if _UNSAFE_IN_ADDRESS.search(address):
        raise ValueError(f"not an address that can go on an SMTP command line: {address!r}")
    return address


def _refusal(replies: list[tuple[int, str]], envelope_from: str, to: str) -> aiosmtplib.SMTPException | None:
    """The exception for the first refused command of MAIL, RCPT and DATA, as aiosmtplib names them."""
    (mail_code, mail_text), *rest = replies
    if not 200 <= mail_code < 300:
        return aiosmtplib.SMTPSenderRefused(mail_code, mail_text, envelope_from)
    rcpt_code, rcpt_text = rest[0]
    if not 200 <= rcpt_code < 300:
        return aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(rcpt_code, rcpt_text, to)])
    data_code, data_text = rest[1]
    if data_code != 354:
        return aiosmtplib.SMTPDataError(data_code, data_text)
    return None
