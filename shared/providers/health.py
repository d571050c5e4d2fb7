"""Periodic provider health checks, whose last results readiness and metrics report."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from shared.background import repeat
from shared.observability import metrics
from shared.providers.base import Provider

log = structlog.get_logger(__name__)


class ProviderHealth:
    """Checks every provider each ``interval_s``; ready while at least one passed its last check."""

    def __init__(self, providers: Sequence[Provider[Any]], interval_s: float, timeout_s: float = 5.0) -> None:
        self._providers = list(providers)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._last: dict[str, str] = {}

    @property
    def last_results(self) -> dict[str, str]:
        """Each provider's last result: ``ok`` or the error its check raised."""
        return dict(self._last)

    async def check_all(self) -> dict[str, str]:
        """Check every provider now (concurrently) and record the results."""
        results = await asyncio.gather(*(self._check(provider) for provider in self._providers))
        for provider, result in zip(self._providers, results, strict=True):
            if self._last.get(provider.name) != result:
                log.info("provider_health_changed", provider=provider.name, result=result)
            self._last[provider.name] = result
            metrics.PROVIDER_UP.labels(provider=provider.name).set(1 if result == "ok" else 0)
        return self.last_results

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every ``interval_s`` until ``stopping`` is set."""

        async def step() -> None:
            await self.check_all()

        await repeat(step, stopping, idle_s=self._interval_s, name="provider_health")

    async def ready(self) -> None:
        """Readiness: raise unless some provider passed its last check (checking now if never checked)."""
        results = self._last or await self.check_all()
        if not any(result == "ok" for result in results.values()):
            raise ConnectionError("no provider is healthy: " + "; ".join(f"{k}: {v}" for k, v in results.items()))

    async def _check(self, provider: Provider[Any]) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                await provider.health()
        except Exception as error:
            return f"error: {error!r}"
        return "ok"
