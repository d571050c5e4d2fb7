"""A local HTTP server that answers what a test scripts and records every request it gets."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    # The reason phrase; None: the standard one for the status.
    reason: str | None = None


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer(ThreadingHTTPServer):
    """Answers each request with the next reply scripted for its path, else ``reply``; records them all."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.reply = Reply(202)
        self.scripted: dict[str, deque[Reply]] = {}
        self.requests: list[Recorded] = []

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, in order, then fall back to ``reply``."""
        self.scripted.setdefault(path, deque()).extend(replies)

    @contextmanager
    def serving(self) -> Iterator[ScriptedServer]:
        """Serve on a background thread until the block ends."""
        thread = threading.Thread(target=self.serve_forever, name="scripted-http", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone away before the delayed answer: expected, not worth a traceback.
        pass


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
        queue = self.server.scripted.get(self.path)
        reply = queue.popleft() if queue else self.server.reply
        time.sleep(reply.delay_s)
        self.send_response(reply.status, reply.reason)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass
