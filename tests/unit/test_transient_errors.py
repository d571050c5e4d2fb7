"""Which failures are waited out (a dependency's) and which are the message's."""

from __future__ import annotations

import asyncpg
import pytest
import redis.exceptions

from shared.errors import InvalidRequest, is_transient

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
        redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
        redis.exceptions.ConnectionError("Connection refused"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.SerializationError("could not serialize access due to concurrent update"),
        ConnectionResetError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_dependency_that_is_full_failing_over_or_away_is_waited_out(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        InvalidRequest("recipient.email", "not an address"),
        FileNotFoundError("template.html"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failure_of_the_message_or_the_code_is_not(error: Exception) -> None:
    assert not is_transient(error)
