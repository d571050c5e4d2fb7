"""The SMTP client's wire ceiling: how many messages a second Herald's SMTP client (aiosmtplib to connect, then
``SmtpWire``: pipelined where the sink offers it) gets through to the sink when nothing else is done, prebuilt
message bytes over persistent connections."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from importlib.metadata import version
from typing import Any

import aiosmtplib

from infra.bench.timeline import Timeline, bucket
from services.sender_email.smtp_wire import SmtpWire

CONNECTIONS = 32
SENDER = "bench@example.com"
RECIPIENT = "user1@example.com"


@dataclass(frozen=True)
class SmtpCeiling:
    """``messages`` sent over ``connections`` connections in ``seconds``."""

    client: str
    messages: int
    message_bytes: int
    connections: int
    seconds: float
    timeline: Timeline

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"per_s": round(self.per_s, 1), "timeline": self.timeline.to_json()}


def _message() -> bytes:
    """A message like the pipeline's: subject, text and html alternatives."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "Hello User 1"
    message.set_content("Hi User 1!")
    message.add_alternative("<p>Hi User 1</p>", subtype="html")
    return message.as_bytes()


async def measure_smtp_ceiling(host: str, port: int, count: int, connections: int = CONNECTIONS) -> SmtpCeiling:
    """Send ``count`` copies of one prebuilt message over ``connections`` connections opened before the clock."""
    message = _message()
    clients = [aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=30) for _ in range(connections)]
    await asyncio.gather(*(client.connect() for client in clients))
    await asyncio.gather(*(client.ehlo() for client in clients))
    wires = [SmtpWire.take_over(client, timeout_s=30) for client in clients]
    samples: list[tuple[float, float]] = []
    try:
        started = time.perf_counter()

        async def send(wire: SmtpWire, messages: int) -> None:
            for _ in range(messages):
                sending = time.perf_counter()
                await wire.send(SENDER, RECIPIENT, message, smtputf8=False)
                done = time.perf_counter()
                samples.append((done - started, done - sending))

        shares = [count // connections + (index < count % connections) for index in range(connections)]
        await asyncio.gather(*(send(wire, share) for wire, share in zip(wires, shares, strict=True)))
        seconds = time.perf_counter() - started
    finally:
        for wire in wires:
            wire.close()
    counts, p99 = bucket(samples)
    pipelined = "pipelined" if all(wire.pipelining for wire in wires) else "one command a round trip"
    return SmtpCeiling(
        client=f"aiosmtplib {version('aiosmtplib')} + SmtpWire ({pipelined})",
        messages=count,
        message_bytes=len(message),
        connections=connections,
        seconds=seconds,
        timeline=Timeline(
            latency_basis="one mail (MAIL, RCPT, DATA, body)", rates={"sent/s": counts}, latency_p99_ms={"sent": p99}
        ),
    )
