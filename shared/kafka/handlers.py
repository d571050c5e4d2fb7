"""Adapters that turn a per-message function into the batch handler the consumer loop runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from shared.kafka.records import TENANT, TRACEPARENT, Consumed, Handler, Output
from shared.observability.logging import bind_message_context

T = TypeVar("T", bound=Mapping[str, Any])
MessageFunction = Callable[[Consumed[T]], Awaitable[Sequence[Output]]]


def bind_context(message: Consumed[Any]) -> None:
    """Bind the message's notification id, tenant and trace ids to the logs of the current task."""
    tenant = message.header(TENANT)
    bind_message_context(
        notification_id=message.value.get("notification_id"),
        tenant=tenant.decode() if tenant else None,
        traceparent=message.header(TRACEPARENT),
    )


def for_each(function: MessageFunction[T], concurrency: int = 1) -> Handler[T]:
    """Run ``function`` on every message of a batch, at most ``concurrency`` at a time, outputs in order."""

    async def one(message: Consumed[T]) -> Sequence[Output]:
        bind_context(message)
        return await function(message)

    async def handle(batch: Sequence[Consumed[T]]) -> Sequence[Output]:
        if concurrency == 1:
            results = [await one(message) for message in batch]
        else:
            gate = asyncio.Semaphore(concurrency)

            async def gated(message: Consumed[T]) -> Sequence[Output]:
                async with gate:
                    return await one(message)

            results = list(await asyncio.gather(*(gated(message) for message in batch)))
        return [output for outputs in results for output in outputs]

    return handle
