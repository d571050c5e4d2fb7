"""A TLS terminator: TLS (and, if asked, client certificates) on one port, plain TCP to another.

Tansu 0.6 cannot serve TLS itself (its ``--cert`` and ``--key`` flags refuse each other, and ``--cert``
alone leaves the listener plain), so the tests put this in front of it: the broker advertises the
terminator's port, and every Kafka connection goes through TLS as it would to a managed cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

from infra.local.processes import StartsAndStops, free_port


class TlsTerminator(StartsAndStops):
    """Accepts TLS on ``127.0.0.1:port`` with ``context`` and relays each connection to ``upstream_port``.

    The relay runs on an event loop of its own, in a thread, so tests and their services may block.
    """

    def __init__(self, context: ssl.SSLContext, upstream_port: int, port: int | None = None) -> None:
        self.context = context
        self.upstream_port = upstream_port
        self.port = port if port is not None else free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen; returns once the port accepts connections."""
        loop = asyncio.new_event_loop()
        listening = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context)
            )
            listening.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name=f"tls-terminator-{self.port}", daemon=True)
        self._thread.start()
        if not listening.wait(10):
            raise RuntimeError(f"the TLS terminator did not listen on {self.port}")

    def stop(self) -> None:
        """Close the port and every relayed connection."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._server = self._thread = None

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
