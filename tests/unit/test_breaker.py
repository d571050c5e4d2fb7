"""CircuitBreaker: opens on the failure rate, probes while half-open, exports every state change."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from shared.observability.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS
from shared.providers.breaker import BUCKET_WIDTH_S, BreakerPolicy, BreakerState, CircuitBreaker, DestinationBreakers
from tests.factories import DestinationScriptedProvider

pytestmark = pytest.mark.unit

POLICY = BreakerPolicy(failure_rate_threshold=0.5, minimum_calls=10, window_s=30.0, open_for_s=30.0, half_open_probes=3)


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    # A name of its own per test, so the process-wide metrics of one test never leak into another.
    return CircuitBreaker(f"provider-{uuid.uuid4().hex[:8]}", POLICY, clock=clock)


def record(breaker: CircuitBreaker, *, successes: int = 0, failures: int = 0) -> None:
    for _ in range(successes):
        breaker.record_success()
    for _ in range(failures):
        breaker.record_failure()


def open_breaker(breaker: CircuitBreaker) -> None:
    record(breaker, failures=POLICY.minimum_calls)
    assert breaker.state is BreakerState.OPEN


def half_open_breaker(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(POLICY.open_for_s)
    assert breaker.state is BreakerState.HALF_OPEN


def gauge(breaker: CircuitBreaker) -> BreakerState:
    """The state labelled 1 in ``herald_circuit_state`` (every other state 0)."""
    values = {
        state: CIRCUIT_STATE.labels(provider=breaker.name, state=state.value)._value.get() for state in BreakerState
    }
    assert sorted(values.values()) == [0, 0, 1], values
    return next(state for state, value in values.items() if value == 1)


def transitions(breaker: CircuitBreaker, to: BreakerState) -> float:
    value: float = CIRCUIT_TRANSITIONS.labels(provider=breaker.name, to=to.value)._value.get()
    return value


def test_stays_closed_below_minimum_calls(breaker: CircuitBreaker) -> None:
    record(breaker, failures=POLICY.minimum_calls - 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_stays_closed_below_the_failure_rate(breaker: CircuitBreaker) -> None:
    record(breaker, successes=6, failures=4)
    assert breaker.state is BreakerState.CLOSED


def test_opens_when_the_failure_rate_reaches_the_threshold(breaker: CircuitBreaker) -> None:
    record(breaker, successes=5, failures=4)
    assert breaker.allow()  # 9 calls: below minimum_calls
    breaker.record_failure()  # 5 failures in 10 calls: exactly the threshold
    assert breaker.state is BreakerState.OPEN


def test_an_open_breaker_refuses_and_says_when_to_retry(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    assert not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(POLICY.open_for_s)
    clock.advance(10.0)
    assert not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(POLICY.open_for_s - 10.0)


def test_a_closed_breaker_has_nothing_to_wait_for(breaker: CircuitBreaker) -> None:
    assert breaker.retry_after_s() == 0.0


def test_half_opens_after_open_for_s(breaker: CircuitBreaker, clock: Clock) -> None:
    open_breaker(breaker)
    clock.advance(POLICY.open_for_s - 0.5)
    assert not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(0.5)
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after_s() == 0.0
    assert breaker.allow()


def test_closes_after_every_probe_succeeds(breaker: CircuitBreaker, clock: Clock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(POLICY.half_open_probes):
        assert breaker.allow()
    record(breaker, successes=POLICY.half_open_probes - 1)
    assert not breaker.allow()  # still half-open, every probe slot taken
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_failed_probe_reopens_for_another_open_for_s(breaker: CircuitBreaker, clock: Clock) -> None:
    half_open_breaker(breaker, clock)
    assert breaker.allow()
    assert breaker.allow()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after_s() == pytest.approx(POLICY.open_for_s)


def test_probe_slots_are_limited(breaker: CircuitBreaker, clock: Clock) -> None:
    half_open_breaker(breaker, clock)
    allowed = [breaker.allow() for _ in range(POLICY.half_open_probes + 2)]
    assert allowed == [True] * POLICY.half_open_probes + [False, False]
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_success_without_a_probe_does_not_close(breaker: CircuitBreaker, clock: Clock) -> None:
    """Late successes of calls allowed before the breaker opened say nothing about recovery."""
    half_open_breaker(breaker, clock)
    record(breaker, successes=POLICY.half_open_probes)
    assert breaker.state is BreakerState.HALF_OPEN


def test_outcomes_inside_the_window_count(breaker: CircuitBreaker, clock: Clock) -> None:
    record(breaker, failures=POLICY.minimum_calls - 1)
    clock.advance(POLICY.window_s - 0.5)
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_old_outcomes_fall_out_of_the_window(breaker: CircuitBreaker, clock: Clock) -> None:
    record(breaker, failures=POLICY.minimum_calls - 1)
    clock.advance(POLICY.window_s + BUCKET_WIDTH_S)
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_closing_forgets_the_failures_that_opened_it(breaker: CircuitBreaker, clock: Clock) -> None:
    half_open_breaker(breaker, clock)
    for _ in range(POLICY.half_open_probes):
        assert breaker.allow()
    record(breaker, successes=POLICY.half_open_probes)
    breaker.record_failure()  # the opening failures are still inside window_s, but no longer count
    assert breaker.state is BreakerState.CLOSED


def test_every_state_change_is_exported(breaker: CircuitBreaker, clock: Clock) -> None:
    assert gauge(breaker) is BreakerState.CLOSED
    open_breaker(breaker)
    assert gauge(breaker) is BreakerState.OPEN
    clock.advance(POLICY.open_for_s)
    assert breaker.state is BreakerState.HALF_OPEN
    assert gauge(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    breaker.record_failure()
    assert gauge(breaker) is BreakerState.OPEN
    clock.advance(POLICY.open_for_s)
    for _ in range(POLICY.half_open_probes):
        assert breaker.allow()
    record(breaker, successes=POLICY.half_open_probes)
    assert gauge(breaker) is BreakerState.CLOSED
    assert transitions(breaker, BreakerState.OPEN) == 2
    assert transitions(breaker, BreakerState.HALF_OPEN) == 2
    assert transitions(breaker, BreakerState.CLOSED) == 1


def test_every_state_change_is_logged(breaker: CircuitBreaker, clock: Clock) -> None:
    with capture_logs() as logs:
        open_breaker(breaker)
        clock.advance(POLICY.open_for_s)
        assert breaker.state is BreakerState.HALF_OPEN
    expected: list[dict[str, Any]] = [
        {"event": "circuit_state_changed", "provider": breaker.name, "from": "closed", "to": "open"},
        {"event": "circuit_state_changed", "provider": breaker.name, "from": "open", "to": "half_open"},
    ]
    assert [{k: v for k, v in entry.items() if k != "log_level"} for entry in logs] == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": 1.5},
        {"minimum_calls": 0},
        {"window_s": 0.0},
        {"open_for_s": -1.0},
        {"half_open_probes": 0},
    ],
)
def test_policy_refuses_values_that_make_no_sense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BreakerPolicy(**bad)


# --- breakers per destination -------------------------------------------------------------------------


def test_each_destination_has_its_own_breaker_and_only_the_most_recent_are_kept(clock: Clock) -> None:
    provider = DestinationScriptedProvider(f"hooks-{uuid.uuid4().hex[:8]}", [])
    breakers = DestinationBreakers(provider, POLICY, capacity=2, clock=clock)
    dead, healthy = breakers.get("dead.example:443"), breakers.get("healthy.example:443")
    open_breaker(dead)
    assert healthy.state is BreakerState.CLOSED
    assert breakers.get("dead.example:443") is dead  # now the most recently used
    breakers.get("third.example:443")  # over capacity: healthy.example, the least recently used, is dropped
    assert len(breakers) == 2
    assert breakers.get("dead.example:443") is dead
    assert breakers.get("healthy.example:443") is not healthy


def test_a_destinations_breaker_is_counted_under_its_provider_and_never_labels_a_metric(clock: Clock) -> None:
    provider = DestinationScriptedProvider(f"hooks-{uuid.uuid4().hex[:8]}", [])
    breaker = DestinationBreakers(provider, POLICY, clock=clock).get("dead.example:443")
    with capture_logs() as logs:
        open_breaker(breaker)
    assert transitions(breaker, BreakerState.OPEN) == 1
    # No state gauge: one per destination would be unbounded, and one for them all meaningless.
    assert not [
        state
        for state in BreakerState
        if REGISTRY.get_sample_value("herald_circuit_state", {"provider": provider.name, "state": state.value})
        is not None
    ]
    assert [(entry["provider"], entry["destination"], entry["to"]) for entry in logs] == [
        (provider.name, "dead.example:443", "open")
    ]
