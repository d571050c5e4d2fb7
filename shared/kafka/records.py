"""What the consumer loop hands to handlers and what handlers hand back."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from shared.errors import DeadLetterReason

T = TypeVar("T")
Headers = tuple[tuple[str, bytes], ...]

# Header names carried on every Herald message (docs/reference/kafka.md lists them with each topic).
TRACEPARENT = "traceparent"
TENANT = "herald-tenant"
KIND = "herald-kind"
# A request's proof of its tenant: v1,<producer key id>,<HMAC-SHA256 of the value> (shared.producer_keys).
SIGNATURE = "herald-signature"
# Where the service level clock starts, in milliseconds since the epoch: when ingest accepted the notification,
# or when a scheduled one fell due. Set by ingest, carried by the router and by retries to the sender, which
# observes accepted->sent from it.
ACCEPTED_AT = "herald-accepted-at"


@dataclass(frozen=True, slots=True)
class Consumed(Generic[T]):
    """One decoded message with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    raw: bytes
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        """The first header called ``name``, if any."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Produce:
    """A message a handler wants produced; the loop commits the input only after it is acknowledged."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """A handler's verdict that a message can never be processed: the loop sends it to the DLQ."""

    message: Consumed[Any]
    reason: DeadLetterReason
    detail: str
    tenant_id: str | None = None
    notification_id: str | None = None


Output = Produce | Reject
# What a service gives the consumer loop: a batch of decoded messages in, records and verdicts out.
Handler = Callable[[Sequence[Consumed[T]]], Awaitable[Sequence[Output]]]
# What the loop outputs for a message the handler failed on: its dead letter, and for messages about a
# notification, that notification's "failed" status (see StatusReporter.give_up).
RejectHook = Callable[[Consumed[Any], DeadLetterReason, str], Sequence[Output]]


def dead_letter_only(message: Consumed[Any], reason: DeadLetterReason, detail: str) -> Sequence[Output]:
    """The default :data:`RejectHook`: the dead letter alone."""
    return [Reject(message, reason, detail)]


@dataclass(slots=True)
class BatchResult:
    """Everything produced for one batch, and the offsets to commit once it is acknowledged."""

    outputs: list[Produce] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # The reason of each of the batch's dead letters (the loop's dead-letter guard counts them).
    dead_letter_reasons: list[str] = field(default_factory=list)
    # The tenants with a message that went through, and with one dead-lettered for the environment.
    succeeded_tenants: set[str] = field(default_factory=set)
    failing_tenants: set[str] = field(default_factory=set)

    def track(self, messages: Sequence[Consumed[object]]) -> None:
        """Remember the next offset to commit for each partition in ``messages``."""
        for message in messages:
            key = (message.topic, message.partition)
            self.offsets[key] = max(self.offsets.get(key, 0), message.offset + 1)


def headers_for(tenant_id: str, kind: str, traceparent: bytes | None, accepted_at: bytes | None = None) -> Headers:
    """The standard headers of a Herald message."""
    headers: list[tuple[str, bytes]] = [(TENANT, tenant_id.encode()), (KIND, kind.encode())]
    if traceparent:
        headers.append((TRACEPARENT, traceparent))
    if accepted_at:
        headers.append((ACCEPTED_AT, accepted_at))
    return tuple(headers)


def accepted_at_header(moment: datetime) -> bytes:
    """The :data:`ACCEPTED_AT` header value for ``moment``."""
    # Truncated: a clock read a fraction of a millisecond late never shows a wait shorter than it was.
    return str(int(moment.timestamp() * 1000)).encode()


def seconds_since_accepted(message: Consumed[Any]) -> float | None:
    """Seconds since ``message``'s :data:`ACCEPTED_AT`; None without one (a record from before it existed)."""
    value = message.header(ACCEPTED_AT)
    if value is None or not value.isdigit():
        return None
    return max(0.0, time.time() - int(value) / 1000)


def message_key(tenant_id: str, recipient: str) -> bytes:
    """``tenant:recipient``: one person's notifications stay in order on one partition."""
    return f"{tenant_id}:{recipient}".encode()
