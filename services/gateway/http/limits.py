"""Limits on what an HTTP client may make the gateway hold: the size and count of request headers, and
the time a partial request may take.

uvicorn's httptools protocol has neither (a client once sent 10 MB of headers, or 20,000 of them, and
got a 200; a request sent a byte at a time would keep its connection for ever). This subclass counts
as the parser reads:

* the request line and headers together over ``max_header_bytes``, or more than ``max_headers``
  headers: 431 problem, connection closed, nothing more read;
* headers not complete within ``header_timeout_s`` of the connection or of the request's first byte
  (slowloris): 408 problem, connection closed; an idle connection that never sends closes the same way;
* a body not complete within ``body_timeout_s`` of its headers: the connection is closed (the route,
  already running, sees the client go).

The limits are per connection; a reverse proxy in front may well have its own, and that is fine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.gateway.http.problems import PROBLEM_JSON, Problem, problem_document
from shared.observability import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RequestLimits:
    """What one HTTP request may hold and take (seconds, bytes)."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


# How long a refused request's connection still reads (and drops) what the client sends (seconds).
LINGER_S = 2.0


class _Refused(Exception):
    """Stops the parser: the request was answered with a problem and the connection is closing."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within :attr:`limits` (set by :func:`protocol_with`)."""

    limits = RequestLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: Problem | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._refusal is None:
            super().data_received(data)
        # Else the rest of a refused request, read and dropped while the connection lingers.

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # A request's first byte (on a kept-alive connection too): its headers' clock starts.
        super().on_message_begin()
        self._header_bytes = self._header_count = 0
        self._arm(self.limits.header_timeout_s, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(
                Problem(431, "Request header fields too large", f"more than {self.limits.max_headers} headers")
            )
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.limits.body_timeout_s, self._body_too_slow)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with a 400; a refusal of ours was answered already.
        if self._refusal is None:
            super().send_400_response(msg)

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            detail = f"the request line and headers are limited to {self.limits.max_header_bytes} bytes"
            self._refuse(Problem(431, "Request header fields too large", detail))

    def _refuse(self, problem: Problem) -> None:
        self._answer(problem)
        raise _Refused(problem.detail)

    def _answer(self, problem: Problem) -> None:
        """Write ``problem`` and close: the rest of the request is never parsed.

        The close lingers: the answer goes first, then our end of the connection (FIN), and whatever the
        client still sends is read and dropped for a moment. Closing at once with its bytes unread
        would reset the connection, and the client would lose the answer.
        """
        self._refusal = problem
        self._disarm()
        metrics.HTTP_REQUESTS.labels(method="unknown", route="unmatched", status=str(problem.status)).inc()
        body = orjson.dumps(problem_document(problem, "/"))
        head = (
            f"HTTP/1.1 {problem.status} {problem.title}\r\ncontent-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        if self.transport.is_closing():
            return
        self.transport.write(head.encode() + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_S, self.transport.close)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None and self._header_bytes == 0:
            self.transport.close()  # connected, and nothing sent: nobody to tell
            return
        detail = f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s"
        self._answer(Problem(408, "Request timeout", detail))

    def _body_too_slow(self) -> None:
        self._deadline = None
        log.info("request_body_timeout", timeout_s=self.limits.body_timeout_s)
        self.transport.close()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def protocol_with(limits: RequestLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn should make connections with, holding ``limits``."""
    return type("GatewayHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
