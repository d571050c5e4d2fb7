"""Watching a provider's circuit breaker in tests: its metrics, and waiting for a state."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from shared.providers.breaker import BreakerState, CircuitBreaker


def circuit_state(provider: str) -> BreakerState:
    """The state ``herald_circuit_state`` reports for ``provider`` on /metrics: the one label at 1, the others 0."""
    values = {
        state: REGISTRY.get_sample_value("herald_circuit_state", {"provider": provider, "state": state.value}) or 0.0
        for state in BreakerState
    }
    assert sorted(values.values()) == [0, 0, 1], f"herald_circuit_state for {provider}: one state at 1: {values}"
    current = [state for state, value in values.items() if value == 1]
    return current[0]


def transitions(provider: str, to: BreakerState) -> float:
    """How often ``provider``'s circuit has entered ``to`` in this process (``herald_circuit_transitions_total``)."""
    value = REGISTRY.get_sample_value("herald_circuit_transitions_total", {"provider": provider, "to": to.value})
    return value or 0.0


async def wait_for_state(breaker: CircuitBreaker, state: BreakerState, timeout: float = 10.0) -> None:
    """Wait until ``breaker`` is in ``state`` (an open breaker half-opens when its state is next read)."""
    deadline = time.monotonic() + timeout
    while breaker.state is not state:
        assert time.monotonic() < deadline, f"the {breaker.name} circuit never became {state.value}"
        await asyncio.sleep(0.05)
