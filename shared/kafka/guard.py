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
``recipient_opted_out``, the push token reasons, ``permanent_failure``, ``provider_rejected``): a
burst of those is one tenant's bad data or one customer's broken webhook, and pausing for it would
hold up every other tenant's notifications.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from shared.errors import DeadLetterReason

ENVIRONMENTAL_REASONS = frozenset({DeadLetterReason.PROCESSING_ERROR, DeadLetterReason.MAX_ATTEMPTS_EXCEEDED})


class DeadLetterGuard:
    """Counts handled messages and their environmental dead letters over the last ``min_messages`` or so.

    The window is the fewest recent batches holding at least ``min_messages`` messages, so an outage
    shows within about one window however long things went well before.
    """

    def __init__(self, *, ratio: float, min_messages: int, pause_s: float) -> None:
        self.pause_s = pause_s
        self._ratio = ratio
        self._min_messages = min_messages
        self._batches: deque[tuple[int, Counter[str]]] = deque()
        self._messages = 0

    def observe(self, messages: int, reasons: Iterable[str]) -> str | None:
        """Count a batch of ``messages`` whose dead letters had ``reasons``.

        Returns the most common environmental reason when the loop should pause (the window then
        starts afresh), else None. A guard with ``pause_s`` 0 never pauses.
        """
        if self.pause_s <= 0:
            return None
        self._batches.append((messages, Counter(r for r in reasons if r in ENVIRONMENTAL_REASONS)))
        self._messages += messages
        while self._batches and self._messages - self._batches[0][0] >= self._min_messages:
            self._messages -= self._batches.popleft()[0]
        if self._messages < self._min_messages:
            return None
        failures: Counter[str] = sum((counts for _, counts in self._batches), Counter())
        if failures.total() < self._ratio * self._messages:
            return None
        self._batches.clear()
        self._messages = 0
        return failures.most_common(1)[0][0]
