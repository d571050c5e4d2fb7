"""SMTP provider: sends over a pool of persistent connections and classifies every failure."""

from __future__ import annotations

import asyncio
import email.errors
import re
from email.utils import parseaddr

import aiosmtplib

from services.sender_email.mime import build_message
from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp_wire import SmtpWire
from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import EmailDelivery
from shared.providers.base import ProviderConfigError

# An enhanced status code (RFC 3463) at the start of a reply: class.subject.detail, e.g. 5.1.1.
_ENHANCED_STATUS = re.compile(r"^\s*[245]\.(\d{1,3})\.\d{1,3}")


class SmtpProvider:
    """Delivers :class:`EmailDelivery` records to one SMTP server."""

    name = "smtp"

    def __init__(self, settings: EmailSenderSettings) -> None:
        self._settings = settings
        self._sender = settings.smtp_from
        self._envelope_from = parseaddr(settings.smtp_from)[1]
        self._idle: asyncio.Queue[SmtpWire] = asyncio.Queue()
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)

    async def send(self, delivery: EmailDelivery) -> Outcome:
        """Send one email; a 4xx or a connection problem is retryable, a 5xx is permanent."""
        try:
            message = build_message(delivery, self._sender)
        except (ValueError, email.errors.MessageError) as error:
            # E.g. a line break in a header: sending it could inject headers, and it never gets better.
            return Failed(self.name, f"cannot build the message: {error}", DeadLetterReason.INVALID_PAYLOAD)
        to = delivery["to"]
        # An internationalised address (RFC 6531) travels only with SMTPUTF8, and only if the server offers it.
        smtputf8 = not (to.isascii() and self._envelope_from.isascii())
        async with self._slots:
            # A pooled connection the server has since closed fails at once: try one fresh one before giving up.
            for fresh_try in (False, True):
                try:
                    connection = await self._connection(fresh=fresh_try)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                    return Retry(self.name, f"cannot connect to the SMTP server: {error!r}")
                try:
                    # Each reply is awaited at most HERALD_SMTP_TIMEOUT_S.
                    await connection.send(self._envelope_from, to, message, smtputf8=smtputf8)
                except ValueError as error:
                    # Refused before anything was written: the connection is as good as before.
                    self._idle.put_nowait(connection)
                    return Failed(self.name, str(error), DeadLetterReason.INVALID_ADDRESS)
                except aiosmtplib.SMTPNotSupported:
                    # Likewise refused before MAIL FROM was written.
                    self._idle.put_nowait(connection)
                    detail = "the recipient's address is not ASCII and the SMTP server does not offer SMTPUTF8"
                    return Failed(self.name, detail, DeadLetterReason.INVALID_ADDRESS)
                except aiosmtplib.SMTPServerDisconnected as error:
                    connection.close()
                    if fresh_try:
                        return Retry(self.name, f"SMTP server disconnected: {error!r}")
                    continue
                except aiosmtplib.SMTPRecipientsRefused as error:
                    self._release(connection)
                    refused = error.recipients[0]
                    return _by_code(refused.code, refused.message)
                except aiosmtplib.SMTPResponseException as error:
                    self._release(connection)
                    return _by_code(error.code, error.message)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                    connection.close()
                    return Retry(self.name, f"SMTP failure: {error!r}")
                self._idle.put_nowait(connection)
                return Delivered(self.name)
        raise AssertionError("unreachable: the second try always returns")

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        settings = self._settings
        if not settings.smtp_host:
            raise ProviderConfigError("HERALD_SMTP_HOST: required for the smtp provider")
        if settings.smtp_use_tls and settings.smtp_start_tls:
            raise ProviderConfigError("HERALD_SMTP_USE_TLS and HERALD_SMTP_START_TLS: choose one")
        if bool(settings.smtp_username) != bool(settings.smtp_password):
            raise ProviderConfigError("HERALD_SMTP_USERNAME and HERALD_SMTP_PASSWORD: give both or neither")
        if not self._envelope_from or any(c in settings.smtp_from for c in "\r\n"):
            raise ProviderConfigError(f"HERALD_SMTP_FROM: not an address: {settings.smtp_from!r}")

    async def health(self) -> None:
        """Readiness: the SMTP server accepts a connection and answers NOOP."""
        connection = await self._connection(fresh=False)
        try:
            await connection.noop()
        finally:
            self._release(connection)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    def _release(self, connection: SmtpWire) -> None:
        # Back to the pool unless closed: after a refusal the wire reset the transaction, or closed it if it could not.
        if connection.is_connected:
            self._idle.put_nowait(connection)

    async def _connection(self, *, fresh: bool) -> SmtpWire:
        while not fresh and not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection.is_connected:
                return connection
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_use_tls,
            start_tls=settings.smtp_start_tls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout_s,
            cert_bundle=settings.smtp_ca_file,
        )
        # aiosmtplib does the rare part (greeting, EHLO, TLS, AUTH); the mails go over Herald's pipelining wire.
        await client.connect()
        try:
            # connect() says EHLO only when it needs the extensions (STARTTLS, AUTH); the wire needs them too.
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()  # a server without ESMTP: no extensions, one command at a time
            return SmtpWire.take_over(client, settings.smtp_timeout_s)
        except BaseException:
            client.close()
            raise


def _by_code(code: int, message: str) -> Outcome:
    detail = f"{code} {message}"
    if 400 <= code < 500:
        return Retry(SmtpProvider.name, detail, reason="provider_deferred")
    return Failed(SmtpProvider.name, detail, _rejection_reason(code, message))


def _rejection_reason(code: int, message: str) -> DeadLetterReason:
    """Why a server refused a mail for good, from its enhanced status code (RFC 3463) or its reply code."""
    enhanced = _ENHANCED_STATUS.match(message)
    if enhanced:
        subject = enhanced.group(1)
        # X.1.* is about addresses; X.6.* media and X.7.* security or policy (spam filters); X.3.4 too big.
        if subject == "1":
            return DeadLetterReason.INVALID_ADDRESS
        if subject in ("6", "7") or enhanced.group(0).strip().startswith("5.3.4"):
            return DeadLetterReason.REJECTED_CONTENT
        return DeadLetterReason.PROVIDER_REJECTED
    if code in (550, 551, 553):  # mailbox unavailable, not local, name not allowed
        return DeadLetterReason.INVALID_ADDRESS
    if code in (552, 554):  # exceeded storage allocation (too big), transaction failed (often content)
        return DeadLetterReason.REJECTED_CONTENT
    return DeadLetterReason.PROVIDER_REJECTED
