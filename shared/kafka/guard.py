"""The consumer loop's dead-letter guard: stop draining a stream into the DLQ when the fault is not the messages'.

A poison message goes to the DLQ and the loop moves on; that is right for one bad message, and wrong
when a dependency breaks in a way that makes every message fail: the loop would then dead-letter the
whole stream at full speed. The guard watches what share of the recent messages were dead-lettered
for a reason that points at the environment and, past ``ratio``, tells the loop to pause.

Environmental reasons (:data:`ENVIRONMENTAL_REASONS`):

* ``processing_error``: a handler raised on the message (a bug, or a dependency failing in a way
  ``is_transient`` does not recognise: a broken provider client, a missing table);
* ``max_attempts_exceeded``: a provider stayed unavailable through every retry.

Not environmental: ``undecodable`` and ``invalid_payload`` (the message is bad), and the provider's
verdicts about one message or recipient (``invalid_address``, ``rejected_content``,
``recipient_opted_out``, the push token reasons, ``permanent_failure``, ``provider_rejected``,
``message_too_large``): a burst of those is one tenant's bad data or one customer's broken webhook,
and pausing for it would hold up every other tenant's notifications.

An environmental reason is still only a guess: an unexpected exception may come from one tenant's
content as well as from a broken dependency. A broken dependency fails everyone, so the guard does
not pause while some tenant without such failures had a message go through within the last
``clean_window_s``: failures confined to other tenants are those tenants' messages' fate (dead
letters they can replay), not a reason to hold up the service for all.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from shared.errors import DeadLetterReason

ENVIRONMENTAL_REASONS = frozenset({DeadLetterReason.PROCESSING_ERROR, DeadLetterReason.MAX_ATTEMPTS_EXCEEDED})
# Tenants whose recent successes the guard remembers; beyond that the oldest are forgotten.
MAX_REMEMBERED_TENANTS = 10_000


class DeadLetterGuard:
    """Counts handled messages and their environmental dead letters over the last ``min_messages`` or so.

    The window is the fewest recent batches holding at least ``min_messages`` messages, so an outage
    shows within about one window however long things went well before.
    """

    def __init__(
        self,
        *,
        ratio: float,
        min_messages: int,
        pause_s: float,
        clean_window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pause_s = pause_s
        self._ratio = ratio
        self._min_messages = min_messages
        self._clean_window_s = clean_window_s
        self._clock = clock
        self._batches: deque[tuple[int, Counter[str], frozenset[str]]] = deque()
        self._messages = 0
        # tenant -> when a message of theirs last went through without an environmental failure
        self._succeeded_at: dict[str, float] = {}

    def observe(
        self,
        messages: int,
        reasons: Iterable[str],
        *,
        succeeded: Iterable[str] = (),
        failing: Iterable[str] = (),
    ) -> str | None:
        """Count a batch of ``messages`` whose dead letters had ``reasons``; ``succeeded`` are the
        tenants with a message that went through, ``failing`` those with an environmental failure.

        Returns the most common environmental reason when the loop should pause (the window then
        starts afresh), else None. A guard with ``pause_s`` 0 never pauses.
        """
        if self.pause_s <= 0:
            return None
        now = self._clock()
        failing_now = frozenset(failing)
        for tenant in succeeded:
            if tenant not in failing_now:
                self._succeeded_at.pop(tenant, None)  # re-inserted last: the dict stays oldest first
                self._succeeded_at[tenant] = now
        while len(self._succeeded_at) > MAX_REMEMBERED_TENANTS:
            del self._succeeded_at[next(iter(self._succeeded_at))]
        self._batches.append((messages, Counter(r for r in reasons if r in ENVIRONMENTAL_REASONS), failing_now))
        self._messages += messages
        while self._batches and self._messages - self._batches[0][0] >= self._min_messages:
            self._messages -= self._batches.popleft()[0]
        if self._messages < self._min_messages:
            return None
        failures: Counter[str] = sum((counts for _, counts, _ in self._batches), Counter())
        if failures.total() < self._ratio * self._messages or self._others_go_through(now):
            return None
        self._batches.clear()
        self._messages = 0
        return failures.most_common(1)[0][0]

    def _others_go_through(self, now: float) -> bool:
        """Whether a tenant without environmental failures in the window had a message go through lately."""
        failing = frozenset().union(*(tenants for _, _, tenants in self._batches))
        return any(
            now - at <= self._clean_window_s and tenant not in failing for tenant, at in self._succeeded_at.items()
        )
