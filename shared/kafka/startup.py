"""Starting a service's Kafka clients without a crash loop.

A service whose cluster refuses it (a wrong password, an unknown user, an untrusted certificate) or is
not there yet would, if it exited, be restarted by Kubernetes again and again, each time with the same
result. Instead it stays up: :class:`KafkaStartup` tries again with back-off, logs one line naming the
settings to check (again only when the cause changes, or every :data:`REMINDER_S`), and keeps readiness
false meanwhile, so no traffic reaches the service and ``kubectl describe`` shows why. Liveness stays
true: restarting would not fix a setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka.errors import KafkaError

from shared.kafka.connection import KafkaConnectionSettings, connection_problem
from shared.observability import metrics
from shared.observability.ops import Check

log = structlog.get_logger(__name__)

# Errors of starting a client that a setting or the cluster explain. aiokafka 0.14 raises KeyError on a
# SCRAM server-final message carrying an error (a refused login); connection_problem tells those apart.
START_ERRORS = (KafkaError, OSError, ssl.SSLError, KeyError)
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
# An unchanged cause is logged again this often, so a log search of the last minutes still finds it.
REMINDER_S = 300.0

Start = Callable[[], Awaitable[None]]


class KafkaNotStarted(KafkaError):  # type: ignore[misc]
    """The service's Kafka clients have not started: the cluster refused them or does not answer."""


class KafkaStartup:
    """Runs ``starts`` (a producer's, then its consumers') in order until all succeed.

    ``check`` is the readiness check that fails with the cause until then.
    """

    def __init__(
        self,
        settings: KafkaConnectionSettings,
        starts: Sequence[Start],
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self._settings = settings
        self._pending = list(starts)
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self.problem: str | None = "starting"
        # Set once the first try has ended, either way: what waits for a healthy cluster waits no longer.
        self.tried = asyncio.Event()

    @property
    def started(self) -> bool:
        return self.problem is None

    async def check(self) -> None:
        """Readiness: every client started."""
        if self.problem is not None:
            raise KafkaNotStarted(self.problem)

    def readiness(self, check: Check) -> Check:
        """``check``, which fails with the cause until the clients have started."""

        async def gated() -> object:
            await self.check()
            return await check()

        return gated

    def liveness(self, check: Check) -> Check:
        """``check``, which passes until the clients have started: it measures progress, which there
        cannot be before, and a restart would not start them any sooner."""

        async def gated() -> object:
            return await check() if self.started else None

        return gated

    async def run(self, stopping: asyncio.Event) -> bool:
        """Start every client, trying again with back-off; False if ``stopping`` is set first."""
        delay = self._backoff_initial_s
        logged: tuple[str, float] | None = None
        while self._pending:
            if stopping.is_set():
                return False
            try:
                await self._pending[0]()
            except START_ERRORS as error:
                problem = await connection_problem(self._settings)
                if problem is None and isinstance(error, KeyError):
                    raise
                self.problem = problem or f"starting a Kafka client failed: {error!r}"
                self.tried.set()
                metrics.KAFKA_START_FAILURES.inc()
                if logged is None or logged[0] != self.problem or time.monotonic() - logged[1] >= REMINDER_S:
                    log.error("cannot use Kafka", problem=self.problem, retry_in_s=delay)
                    logged = (self.problem, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, self._backoff_max_s)
                continue
            self._pending.pop(0)
        if logged is not None:
            log.info("kafka_started", after_problem=logged[0])
        self.problem = None
        self.tried.set()
        return True
