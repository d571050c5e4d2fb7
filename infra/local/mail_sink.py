"""A real SMTP server that keeps what it receives: the local stack's mailbox and the tests' provider.

One implementation, two ways to run it:

* in-process, for tests: ``MailSink`` runs the servers on its own event loop in a thread;
* as a process, for the local stack: ``python -m infra.local.mail_sink --smtp-port 1025 --http-port 8025
  [--maildir var/mail]``, which adds a web page for people and a JSON API (see ``create_web_app``).

It can refuse the next N messages with ``451 4.3.0 try again later`` (to exercise retries) and
refuse chosen recipients, or whole ``@domains``, permanently with ``550``. It offers PIPELINING
(RFC 2920) unless made with ``pipelining=False``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import itertools
import signal
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import structlog
import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from infra.local.processes import StartsAndStops

log = structlog.get_logger(__name__)

TEMPORARY_FAILURE = "451 4.3.0 try again later"
DEFAULT_MAX_MESSAGES = 10_000
# Generous, so a test of large messages hits the sender's limits, not ours.
DATA_SIZE_LIMIT = 50 * 1024 * 1024
_PARSER = BytesParser(policy=email.policy.default)
# Header values as they are in the mail, neither decoded nor parsed: a quarter of the default policy's cost
# to read a mail's headers, and a thirtieth of it for each value asked for again.
_AS_SENT_PARSER = BytesParser(policy=email.policy.compat32)


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the sink received it: the SMTP envelope and the raw bytes, whose parts are parsed when
    first read. Malformed mail is kept, with what could be read. Parsing every header and body as mail
    arrived was most of the CPU a fault test's own process spent, when it reads one header of each."""

    id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime
    peer: str

    @cached_property
    def parsed(self) -> EmailMessage:
        message: EmailMessage = _PARSER.parsebytes(self.raw)
        return message

    @cached_property
    def _head(self) -> EmailMessage:
        # The headers alone: what most readers want, without walking the body's MIME parts.
        message: EmailMessage = _PARSER.parsebytes(self.raw, headersonly=True)
        return message

    @cached_property
    def subject(self) -> str:
        return str(self._head.get("subject", ""))

    @cached_property
    def text(self) -> str | None:
        return _body(self.parsed, "plain")

    @cached_property
    def html(self) -> str | None:
        return _body(self.parsed, "html")

    @cached_property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return tuple((key, str(value)) for key, value in self._head.items())

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), if any."""
        value = self._head.get(name)
        return None if value is None else str(value)

    @cached_property
    def _head_as_sent(self) -> Message:
        return _AS_SENT_PARSER.parsebytes(self.raw, headersonly=True)

    def header_as_sent(self, name: str) -> str | None:
        """The first header called ``name`` as the mail has it: no encoded word decoded, no address parsed.
        What :meth:`header` gives for a plain ASCII value such as an id, for a fraction of the CPU: for tests
        that look up one id in each of thousands of mails, again and again while they wait."""
        value = self._head_as_sent.get(name)
        return None if value is None else str(value)

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /api/messages`` (without the raw bytes)."""
        return {
            "id": self.id,
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.subject,
            "received_at": self.received_at.isoformat(),
            "text": self.text,
            "html": self.html,
            "headers": [list(pair) for pair in self.headers],
            "size": len(self.raw),
        }


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError) as error:  # an unknown charset or a broken transfer encoding
        return f"(undecodable {subtype} part: {error})"
    return content if isinstance(content, str) else None


class MailStore:
    """Received messages and the refusal policy, safe to use from any thread.

    ``wait_for`` counts messages received since the last ``clear()``, even past ``max_messages``
    (beyond which the oldest are dropped, so a long-running stack does not grow without bound).
    """

    def __init__(self, *, maildir: Path | None = None, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.maildir = maildir
        if maildir is not None:
            maildir.mkdir(parents=True, exist_ok=True)
        self._messages: deque[ReceivedMessage] = deque(maxlen=max_messages)
        self._received = 0
        self._ids = itertools.count(1)
        self._refuse_next = 0
        self._refused_recipients: set[str] = set()
        self._changed = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], int]] = []

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the stored messages, oldest first."""
        with self._changed:
            return list(self._messages)

    def get(self, message_id: str) -> ReceivedMessage | None:
        """The stored message with this id, if still stored."""
        return next((message for message in self.messages if message.id == message_id), None)

    def clear(self) -> None:
        """Forget every message (the refusal policy stays)."""
        with self._changed:
            self._messages.clear()
            self._received = 0

    def refuse_next(self, count: int) -> None:
        """Answer the next ``count`` messages' DATA with ``451 4.3.0 try again later``."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._changed:
            self._refuse_next = count

    def refuse_recipients(self, *addresses: str) -> None:
        """Refuse these recipients with 550 from now on; an entry ``@example.org`` refuses a domain."""
        with self._changed:
            self._refused_recipients.update(address.lower() for address in addresses)

    @property
    def refused_recipients(self) -> list[str]:
        """The recipients and ``@domains`` refused permanently."""
        with self._changed:
            return sorted(self._refused_recipients)

    @property
    def refusing_next(self) -> int:
        """How many more messages will be refused with a 4xx."""
        with self._changed:
            return self._refuse_next

    def reset_refusals(self) -> None:
        """Accept everything again."""
        with self._changed:
            self._refuse_next = 0
            self._refused_recipients.clear()

    def recipient_refused(self, address: str) -> bool:
        """Whether ``address`` is refused permanently."""
        address = address.lower()
        domain = "@" + address.rpartition("@")[2]
        with self._changed:
            return address in self._refused_recipients or domain in self._refused_recipients

    def take_refusal(self) -> bool:
        """Whether to refuse the message being received now (counts it against ``refuse_next``)."""
        with self._changed:
            if self._refuse_next <= 0:
                return False
            self._refuse_next -= 1
            return True

    def add(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, peer: str = "") -> ReceivedMessage:
        """Store a received message (and write it to the maildir), then wake up waiters."""
        message = ReceivedMessage(str(next(self._ids)), mail_from, tuple(rcpt_tos), raw, datetime.now(UTC), peer)
        if self.maildir is not None:
            # Small, local files: writing inline keeps the order of files the order of arrival.
            stamp = message.received_at.strftime("%Y%m%dT%H%M%S.%f")
            (self.maildir / f"{stamp}-{message.id}.eml").write_bytes(raw)
        with self._changed:
            self._messages.append(message)
            self._received += 1
            self._changed.notify_all()
            ready = [waiter for waiter in self._async_waiters if waiter[2] <= self._received]
        for loop, future, _ in ready:
            # The waiter's loop is closed if it gave up and went away; nothing to wake then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)
        return message

    def wait_for_blocking(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until ``count`` messages were received since the last clear; return the stored ones."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._received >= count, timeout):
                raise TimeoutError(f"expected {count} messages within {timeout:g} s, got {self._received}")
            return list(self._messages)

    # A timeout argument (not asyncio.timeout) so a forgotten deadline cannot hang a test.
    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:  # noqa: ASYNC109
        """Wait (from any event loop) until ``count`` messages were received; return the stored ones."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (loop, future, count)
        with self._changed:
            if self._received >= count:
                return list(self._messages)
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"expected {count} messages within {timeout:g} s, got {self._received}") from None
        finally:
            with self._changed:
                self._async_waiters.remove(waiter)
        return self.messages


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SinkHandler:
    """The aiosmtpd handler: applies the store's refusals and stores accepted messages."""

    def __init__(self, store: MailStore, *, pipelining: bool = True) -> None:
        self.store = store
        self.pipelining = pipelining

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd's EHLO lines, with PIPELINING (RFC 2920) if asked: it reads commands a line at a time from
        a buffered stream, so commands that arrive together are answered in order, as the RFC wants."""
        session.host_name = hostname  # aiosmtpd leaves this to a handler that has its own handle_EHLO
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept a recipient unless it is refused permanently."""
        if self.store.recipient_refused(address):
            return f"550 5.1.1 <{address}>: recipient refused by the mail sink"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message, or refuse it for now if told to."""
        if self.store.take_refusal():
            return TEMPORARY_FAILURE
        raw = envelope.original_content or b""
        peer = session.peer if isinstance(session.peer, str) else ":".join(map(str, session.peer or ()))
        message = self.store.add(envelope.mail_from or "", envelope.rcpt_tos, raw, peer)
        log.debug("mail received", id=message.id, to=message.rcpt_tos, size=len(raw))
        return "250 OK"


_TEMPLATES = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE_HEAD = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: .35em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
tr:hover td { background: #f6f8fa; } a { color: #0b5cad; } pre { white-space: pre-wrap; background: #f6f8fa;
padding: 1em; } iframe { width: 100%; height: 30em; border: 1px solid #ddd; } .muted { color: #777; }
</style>{% if refresh %}<meta http-equiv="refresh" content="5">{% endif %}</head><body>"""
_LIST_PAGE = _TEMPLATES.from_string(
    _PAGE_HEAD
    + """<h1>Herald mail sink</h1>
<p class="muted">{{ messages|length }} message(s), newest first; this page refreshes every 5 s.
SMTP on port {{ smtp_port }}. JSON: <a href="/api/messages">/api/messages</a></p>
<form method="post" action="/clear"><button>Delete all</button></form>
<table><tr><th>Received (UTC)</th><th>From</th><th>To</th><th>Subject</th></tr>
{% for m in messages %}<tr><td>{{ m.received_at.strftime("%H:%M:%S") }}</td><td>{{ m.mail_from }}</td>
<td>{{ m.rcpt_tos|join(", ") }}</td><td><a href="/messages/{{ m.id }}">{{ m.subject or "(no subject)" }}</a></td>
</tr>{% else %}<tr><td colspan="4" class="muted">No mail yet.</td></tr>{% endfor %}
</table></body></html>"""
)
_MESSAGE_PAGE = _TEMPLATES.from_string(
    _PAGE_HEAD
    + """<p><a href="/">&larr; all mail</a> &middot; <a href="/api/messages/{{ m.id }}/raw">raw .eml</a></p>
<h1>{{ m.subject or "(no subject)" }}</h1>
<table>{% for name, value in m.headers %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
<tr><th>Envelope</th><td>from {{ m.mail_from }} to {{ m.rcpt_tos|join(", ") }}, received
{{ m.received_at.isoformat() }} from {{ m.peer }}</td></tr></table>
{% if m.html is not none %}<h2>HTML</h2>
{# sandbox without allow-scripts: the mail's own markup is shown, its scripts never run #}
<iframe sandbox srcdoc="{{ m.html }}"></iframe>{% endif %}
{% if m.text is not none %}<h2>Text</h2><pre>{{ m.text }}</pre>{% endif %}
</body></html>"""
)


def create_web_app(store: MailStore, smtp_port: int) -> Starlette:
    """The sink's web page and JSON API.

    ``GET /`` lists mail (newest first), ``GET /messages/{id}`` shows one; ``GET /api/messages``
    (oldest first), ``GET /api/messages/{id}``, ``GET /api/messages/{id}/raw``, ``DELETE
    /api/messages``, ``POST /api/refuse-next?count=N``, ``POST /api/refuse-recipient?address=A``,
    ``DELETE /api/refusals`` and ``GET /health``.
    """

    def found(request: Request) -> ReceivedMessage:
        message = store.get(request.path_params["message_id"])
        if message is None:
            raise _NotFound
        return message

    async def index(request: Request) -> Response:
        html = _LIST_PAGE.render(
            title="Herald mail sink",
            refresh=True,
            messages=list(reversed(store.messages)),
            smtp_port=smtp_port,
        )
        return HTMLResponse(html)

    async def show(request: Request) -> Response:
        message = found(request)
        return HTMLResponse(_MESSAGE_PAGE.render(title=message.subject, refresh=False, m=message))

    async def clear_form(request: Request) -> Response:
        store.clear()
        return RedirectResponse("/", status_code=303)

    async def list_messages(request: Request) -> Response:
        return JSONResponse([message.to_json() for message in store.messages])

    async def get_message(request: Request) -> Response:
        return JSONResponse(found(request).to_json())

    async def get_raw(request: Request) -> Response:
        return Response(found(request).raw, media_type="message/rfc822")

    async def delete_messages(request: Request) -> Response:
        store.clear()
        return Response(status_code=204)

    async def refuse_next(request: Request) -> Response:
        raw_count = request.query_params.get("count", "1")
        if not raw_count.isdigit():
            return JSONResponse({"detail": "count must be a whole number >= 0"}, status_code=400)
        store.refuse_next(int(raw_count))
        return JSONResponse({"refuse_next": store.refusing_next})

    async def refuse_recipient(request: Request) -> Response:
        address = request.query_params.get("address", "").strip()
        if "@" not in address:
            return JSONResponse({"detail": "address must be an address or an @domain"}, status_code=400)
        store.refuse_recipients(address)
        return JSONResponse({"refused_recipients": store.refused_recipients})

    async def reset_refusals(request: Request) -> Response:
        store.reset_refusals()
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "messages": len(store.messages)})

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": "no such message"}, status_code=404)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/messages/{message_id}", show),
            Route("/clear", clear_form, methods=["POST"]),
            Route("/api/messages", list_messages, methods=["GET"]),
            Route("/api/messages", delete_messages, methods=["DELETE"]),
            Route("/api/messages/{message_id}", get_message),
            Route("/api/messages/{message_id}/raw", get_raw),
            Route("/api/refuse-next", refuse_next, methods=["POST"]),
            Route("/api/refuse-recipient", refuse_recipient, methods=["POST"]),
            Route("/api/refusals", reset_refusals, methods=["DELETE"]),
            Route("/health", health),
        ],
        exception_handlers={_NotFound: not_found},
    )


class _NotFound(Exception):
    pass


class _OwnerStoppedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Whoever runs the sink decides when it stops (and stops SMTP too): uvicorn must not take
        # over SIGINT/SIGTERM, nor re-raise them after shutting down.
        yield


@dataclass(frozen=True)
class SinkSecurity:
    """TLS and authentication the sink demands, to test a client's STARTTLS, implicit TLS and AUTH."""

    tls: ssl.SSLContext
    # True: TLS from the first byte (port 465 style); False: plain until STARTTLS, which is required.
    implicit_tls: bool = False
    # (username, password) that AUTH PLAIN/LOGIN must present; None: no authentication.
    credentials: tuple[str, str] | None = None

    def authenticator(self) -> Callable[..., AuthResult] | None:
        if self.credentials is None:
            return None
        expected = self.credentials

        def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
            given = (data.login.decode(), data.password.decode()) if isinstance(data, LoginPassword) else None
            return AuthResult(success=given == expected)

        return check


class SinkServers:
    """The SMTP server and, when ``http_port`` is given, the web app, on the running event loop.

    Port 0 picks a free port; the bound ports are in ``smtp_port`` and ``http_port`` after ``start()``.
    """

    def __init__(
        self,
        store: MailStore,
        *,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        http_port: int | None = None,
        security: SinkSecurity | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self.store = store
        self.security = security
        self.smtputf8 = smtputf8
        self.pipelining = pipelining
        self.host = host
        self.smtp_port = smtp_port
        self.http_port = http_port
        self._smtp: asyncio.Server | None = None
        self._http: _OwnerStoppedServer | None = None
        self._http_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and start serving."""
        loop = asyncio.get_running_loop()
        handler = SinkHandler(self.store, pipelining=self.pipelining)
        security = self.security
        starttls = security is not None and not security.implicit_tls
        self._smtp = await loop.create_server(
            # A fixed hostname: the default asks DNS for this machine's FQDN, slow without a network.
            lambda: SMTP(
                handler,
                hostname="herald-mail-sink",
                enable_SMTPUTF8=self.smtputf8,
                data_size_limit=DATA_SIZE_LIMIT,
                loop=loop,
                tls_context=security.tls if starttls and security else None,
                require_starttls=starttls,
                authenticator=security.authenticator() if security else None,
                auth_required=bool(security and security.credentials),
                auth_require_tls=True,
            ),
            host=self.host,
            port=self.smtp_port,
            ssl=security.tls if security and security.implicit_tls else None,
        )
        self.smtp_port = self._smtp.sockets[0].getsockname()[1]
        if self.http_port is not None:
            # Bound and listening before uvicorn starts, so the port is known and connects at once.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.http_port))
            except OSError:
                sock.close()
                await self.stop()
                raise
            sock.listen(128)
            self.http_port = sock.getsockname()[1]
            config = uvicorn.Config(
                create_web_app(self.store, self.smtp_port),
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
            self._http = _OwnerStoppedServer(config)
            self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (or the web server fails), then stop."""
        stop_task = asyncio.create_task(stop.wait())
        watched: set[asyncio.Task[Any]] = {stop_task}
        if self._http_task is not None:
            watched.add(self._http_task)
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
            await self.stop()

    async def stop(self) -> None:
        """Stop both servers; re-raise what made the web server fail, if it did."""
        if self._smtp is not None:
            self._smtp.close()
            await self._smtp.wait_closed()
            self._smtp = None
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            task, self._http, self._http_task = self._http_task, None, None
            await task


class MailSink(StartsAndStops):
    """An in-process SMTP sink for tests: its servers run on their own event loop in a thread.

    >>> with MailSink() as sink:  # doctest: +SKIP
    ...     send_to("127.0.0.1", sink.port)
    ...     [message] = sink.wait_for_blocking(1)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        http_port: int | None = None,
        maildir: Path | None = None,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        security: SinkSecurity | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        """``smtputf8=False`` makes a server that does not offer SMTPUTF8 (internationalised addresses),
        ``pipelining=False`` one that does not offer PIPELINING (clients then wait for each reply)."""
        self.store = MailStore(maildir=maildir, max_messages=max_messages)
        self._servers = SinkServers(
            self.store,
            host=host,
            smtp_port=port,
            http_port=http_port,
            security=security,
            smtputf8=smtputf8,
            pipelining=pipelining,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def host(self) -> str:
        """The address the SMTP server listens on."""
        return self._servers.host

    @property
    def port(self) -> int:
        """The SMTP port (known after ``start()``)."""
        return self._servers.smtp_port

    @property
    def http_url(self) -> str | None:
        """The web page and API's base URL, if started with ``http_port``."""
        port = self._servers.http_port
        return None if port is None else f"http://{self.host}:{port}"

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The stored messages, oldest first."""
        return self.store.messages

    def clear(self) -> None:
        """Forget every message."""
        self.store.clear()

    def refuse_next(self, count: int) -> None:
        """Refuse the next ``count`` messages with ``451 4.3.0 try again later``."""
        self.store.refuse_next(count)

    def refuse_recipients(self, *addresses: str) -> None:
        """Refuse these recipients (or ``@domains``) with 550 from now on."""
        self.store.refuse_recipients(*addresses)

    # A timeout argument (not asyncio.timeout) so a forgotten deadline cannot hang a test.
    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:  # noqa: ASYNC109
        """Wait until ``count`` messages were received since the last clear; return the stored ones."""
        return await self.store.wait_for(count, timeout)

    def wait_for_blocking(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Like :meth:`wait_for`, for synchronous code."""
        return self.store.wait_for_blocking(count, timeout)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving on a background thread; return once the ports are bound (again, after a stop)."""
        # Forget a previous run's signal, or a restart would return before its ports are bound.
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="mail-sink", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the mail sink did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._servers.start()
        except OSError as error:  # e.g. the port is taken: start() re-raises it in the caller's thread
            self._error = error
            return
        finally:
            self._started.set()
        await self._servers.serve_until(self._stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._loop is not None and self._stop is not None:
            # The loop is already closed if the thread ended on its own: nothing to stop then.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)


async def serve(
    *,
    host: str,
    smtp_port: int,
    http_port: int,
    maildir: Path | None,
    refused_recipients: Sequence[str] = (),
) -> None:
    """Run the sink with its web app until SIGINT or SIGTERM (what ``python -m`` does)."""
    store = MailStore(maildir=maildir)
    store.refuse_recipients(*refused_recipients)
    servers = SinkServers(store, host=host, smtp_port=smtp_port, http_port=http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await servers.start()
    log.info(
        "mail sink ready",
        smtp=f"{host}:{servers.smtp_port}",
        web=f"http://{host}:{servers.http_port}/",
        maildir=str(maildir) if maildir else None,
    )
    await servers.serve_until(stop)
    log.info("mail sink stopped", received=len(store.messages))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m infra.local.mail_sink``."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.mail_sink", description="Herald's local SMTP sink")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--smtp-port", type=int, default=1025, help="SMTP port (default 1025; 0 = any free)")
    parser.add_argument("--http-port", type=int, default=8025, help="web page and API port (default 8025)")
    parser.add_argument("--maildir", type=Path, help="also write each message to this folder as .eml")
    parser.add_argument(
        "--refuse-recipient",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="answer 550 for this recipient, or @domain (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(
            serve(
                host=args.host,
                smtp_port=args.smtp_port,
                http_port=args.http_port,
                maildir=args.maildir,
                refused_recipients=args.refuse_recipient,
            )
        )
    except OSError as error:
        log.error("mail sink cannot start", error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
