"""The error types every service shares, and which failures are worth waiting out.

The consumer loop maps each to its fate (see ``shared/kafka/consumer.py``):

* an undecodable message, or one a handler rejects, goes to the DLQ with its reason;
* a *transient* failure (a database, Redis or the broker unreachable) pauses consumption and the
  batch is tried again after a backoff, so an outage delays notifications but loses none;
* any other exception is isolated to the one message that causes it, which goes to the DLQ as a
  ``processing_error``: a poison message never stalls a partition.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

import asyncpg
import redis.exceptions
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NotEnoughReplicasError


class DeadLetterReason(StrEnum):
    """Why a message went to the DLQ; stored with it and shown by the API."""

    UNDECODABLE = "undecodable"
    INVALID_PAYLOAD = "invalid_payload"
    PERMANENT_FAILURE = "permanent_failure"
    PROVIDER_REJECTED = "provider_rejected"
    MAX_ATTEMPTS_EXCEEDED = "max_attempts_exceeded"
    PROCESSING_ERROR = "processing_error"
    # A push token the provider no longer knows (the app was uninstalled), or one it says is malformed:
    # either way the device is disabled and never used again.
    UNREGISTERED_TOKEN = "unregistered_token"
    INVALID_TOKEN = "invalid_token"
    # The provider refused the recipient's address (no such mailbox, not a phone number).
    INVALID_ADDRESS = "invalid_address"
    # The provider refused the content (spam or policy filters, too large).
    REJECTED_CONTENT = "rejected_content"
    # The recipient asked the provider to stop (an SMS STOP, an opt-out list).
    RECIPIENT_OPTED_OUT = "recipient_opted_out"
    # The address is suppressed (it bounced, or its owner complained): the router does not send to it.
    RECIPIENT_SUPPRESSED = "recipient_suppressed"
    # What the message made (a rendered email, say) is larger than Kafka takes.
    MESSAGE_TOO_LARGE = "message_too_large"
    # A request on Kafka not signed by a live producer key of the tenant it names (shared.producer_keys).
    UNAUTHENTICATED_PRODUCER = "unauthenticated_producer"


class InvalidRequest(ValueError):
    """A request that can never be processed as it is (bad address, unknown channel, broken template)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # A server shutting down or crashing, a primary turned replica in a failover, a transaction that lost
    # a race (serialization failure, deadlock): the same statement succeeds later.
    asyncpg.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.TransactionRollbackError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # A full Redis refusing writes (maxmemory with noeviction), a replica after a failover, a cluster moving.
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotEnoughReplicasError,
)


def is_transient(error: BaseException) -> bool:
    """True when waiting and trying again can succeed: the failure is in a dependency, not the message."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | PermissionError):
        return True
    return isinstance(error, _TRANSIENT)
