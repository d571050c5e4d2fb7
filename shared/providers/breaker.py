"""Circuit breakers: stop calling a provider (or a customer's endpoint) whose recent calls mostly fail.

Like sony/gobreaker, but it opens on the failure *rate* over a sliding time window, so one bad
minute opens it whatever the traffic, and a few failures at low traffic do not.

    closed --(failures/calls >= threshold, calls >= minimum)--> open
    open --(open_for_s passed)--> half_open
    half_open --(every probe succeeded)--> closed
    half_open --(any probe failed)--> open

Callers ask :meth:`CircuitBreaker.allow` before each call and record exactly one outcome for each
call it allowed. Not thread-safe: one breaker lives in one event loop.

A provider that calls endpoints its deliveries name (webhooks) has a breaker per destination
(:class:`DestinationBreakers`), so one customer's dead endpoint does not stop everyone's deliveries.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import structlog

from shared.observability.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS
from shared.providers.base import DestinationProvider

log = structlog.get_logger(__name__)

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])
# Outcomes are counted per second rather than kept one by one, so memory stays bounded at any call rate.
BUCKET_WIDTH_S = 1.0
# Destinations whose breakers are kept per provider; past this, the least recently used one's is dropped.
MAX_DESTINATION_BREAKERS = 1024


class BreakerState(StrEnum):
    """Where a breaker stands; the values appear in logs and metric labels."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how it recovers."""

    failure_rate_threshold: float = 0.5  # open when failures/calls in the window reach this
    minimum_calls: int = 10  # fewer calls than this in the window never open the breaker
    window_s: float = 30.0  # how far back outcomes count
    open_for_s: float = 30.0  # how long an open breaker refuses calls before probing
    half_open_probes: int = 3  # calls let through while half-open; all must succeed to close

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate_threshold <= 1:
            raise ValueError(f"failure_rate_threshold must be in (0, 1], got {self.failure_rate_threshold}")
        if self.minimum_calls < 1:
            raise ValueError(f"minimum_calls must be at least 1, got {self.minimum_calls}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        if self.open_for_s < 0:
            raise ValueError(f"open_for_s must not be negative, got {self.open_for_s}")
        if self.half_open_probes < 1:
            raise ValueError(f"half_open_probes must be at least 1, got {self.half_open_probes}")


@dataclass
class _Bucket:
    """Outcomes recorded in one second of the window."""

    start_s: float
    calls: int = 0
    failures: int = 0


class CircuitBreaker:
    """The breaker of one provider, or of one ``destination`` of it; ``clock`` returns seconds and is injectable.

    A destination's breaker counts its transitions under the provider's name and has no state gauge:
    destinations are customers' hosts, too many to be metric labels.
    """

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = BreakerPolicy(),
        clock: Callable[[], float] = time.monotonic,
        destination: str | None = None,
    ) -> None:
        self.name = name
        self.destination = destination
        self.policy = policy
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._buckets: deque[_Bucket] = deque()
        self._opened_at_s = 0.0
        self._probes_taken = 0
        self._probe_successes = 0
        self._set_gauge(BreakerState.CLOSED)

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker becomes half-open here once ``open_for_s`` has passed."""
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at_s + self.policy.open_for_s:
            self._move_to(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the provider now; while half-open, this takes one probe slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes_taken < self.policy.half_open_probes:
            self._probes_taken += 1
            return True
        return False

    def record_success(self) -> None:
        """Record that an allowed call succeeded."""
        state = self.state
        if state is BreakerState.CLOSED:
            self._count(failed=False)
        # A success with no probe outstanding is a call allowed before the breaker opened: it says
        # nothing about whether the provider has recovered.
        elif state is BreakerState.HALF_OPEN and self._probe_successes < self._probes_taken:
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_probes:
                self._move_to(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """Record that an allowed call failed in a way that blames the provider."""
        state = self.state
        if state is BreakerState.CLOSED:
            self._count(failed=True)
            if self._should_open():
                self._move_to(BreakerState.OPEN)
        elif state is BreakerState.HALF_OPEN:
            self._move_to(BreakerState.OPEN)

    def retry_after_s(self) -> float:
        """Seconds until an open breaker half-opens; 0 when it is not open."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return self._opened_at_s + self.policy.open_for_s - self._clock()

    def _count(self, *, failed: bool) -> None:
        now_s = self._clock()
        start_s = math.floor(now_s / BUCKET_WIDTH_S) * BUCKET_WIDTH_S
        if not self._buckets or self._buckets[-1].start_s != start_s:
            self._buckets.append(_Bucket(start_s))
        bucket = self._buckets[-1]
        bucket.calls += 1
        if failed:
            bucket.failures += 1
        # A bucket leaves once all of it is older than the window, so the window reaches back
        # between window_s and window_s + BUCKET_WIDTH_S.
        while self._buckets[0].start_s + BUCKET_WIDTH_S <= now_s - self.policy.window_s:
            self._buckets.popleft()

    def _should_open(self) -> bool:
        calls = sum(bucket.calls for bucket in self._buckets)
        failures = sum(bucket.failures for bucket in self._buckets)
        return calls >= self.policy.minimum_calls and failures / calls >= self.policy.failure_rate_threshold

    def _set_gauge(self, state: BreakerState) -> None:
        if self.destination is None:
            for each in BreakerState:
                CIRCUIT_STATE.labels(provider=self.name, state=each.value).set(1 if each is state else 0)

    def _move_to(self, to: BreakerState) -> None:
        where = {"provider": self.name} | ({} if self.destination is None else {"destination": self.destination})
        log.info("circuit_state_changed", **where, **{"from": self._state.value, "to": to.value})
        self._set_gauge(to)
        CIRCUIT_TRANSITIONS.labels(provider=self.name, to=to.value).inc()
        self._state = to
        self._probes_taken = 0
        self._probe_successes = 0
        if to is BreakerState.OPEN:
            self._opened_at_s = self._clock()
        if to is BreakerState.CLOSED:
            # The failures that opened the breaker are history once the provider has recovered.
            self._buckets.clear()


class DestinationBreakers(Generic[DeliveryT]):
    """A breaker per destination of ``provider`` (a customer's ``host:port``), for the ``capacity`` most
    recently used destinations: a forgotten destination starts again closed."""

    def __init__(
        self,
        provider: DestinationProvider[DeliveryT],
        policy: BreakerPolicy,
        capacity: int = MAX_DESTINATION_BREAKERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._policy = policy
        self._capacity = capacity
        self._clock = clock
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._breakers)

    def get(self, destination: str) -> CircuitBreaker:
        """``destination``'s breaker, made closed if it has none (or had one that was dropped)."""
        breaker = self._breakers.get(destination)
        if breaker is None:
            breaker = CircuitBreaker(self._provider.name, self._policy, self._clock, destination=destination)
            self._breakers[destination] = breaker
            if len(self._breakers) > self._capacity:
                self._breakers.popitem(last=False)
        else:
            self._breakers.move_to_end(destination)
        return breaker

    def for_delivery(self, delivery: DeliveryT) -> CircuitBreaker:
        """The breaker of where ``delivery`` goes."""
        return self.get(self._provider.destination(delivery))
