"""Keep the local stack's processes running, as Kubernetes keeps a pod's containers running.

A process that exits, for whatever reason (``kill -9``, a crash, a clean exit), is started again
after a back-off: ``first_s`` after its first exit, doubling with each further exit in a row up to
``max_s``, and back to ``first_s`` once the process had stayed up ``reset_after_s``. Each exit and
each restart is logged. Only :meth:`Supervisor.stop` (``make up``: Ctrl-C or SIGTERM) ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from infra.local.processes import ManagedProcess, ProcessError, wait_any, wake_waiters

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before starting an exited process again (seconds)."""

    first_s: float = 1.0
    max_s: float = 30.0
    # An exit after the process stayed up this long counts as a first exit again.
    reset_after_s: float = 60.0

    def delay(self, exits_in_a_row: int) -> float:
        """The wait before the restart that follows the ``exits_in_a_row``-th exit in a row (1, 2, ...)."""
        return float(min(self.max_s, self.first_s * 2 ** max(0, exits_in_a_row - 1)))


@dataclass
class Supervised:
    """One thing kept running: its current process, and how to start it again.

    ``start`` may do more than start the process (the broker's re-creates the topics too) and may
    raise :class:`ProcessError`, which counts as another exit.
    """

    name: str
    process: Callable[[], ManagedProcess | None]
    start: Callable[[], object]
    exits_in_a_row: int = 0
    started_at: float = field(default_factory=time.monotonic)
    # When the next start is due; None while the process runs.
    restart_at: float | None = None
    # The back-off chosen after each exit, in order (what the log said), and the restarts that worked.
    delays: list[float] = field(default_factory=list)
    restarts: int = 0

    @classmethod
    def of(cls, process: ManagedProcess, start: Callable[[], object] | None = None) -> Supervised:
        """``process``, started again with ``start`` (default: ``process.start``)."""
        return cls(process.name, lambda: process, start or process.start)


class Supervisor:
    """Restarts each of ``children`` that exits, with :class:`Backoff`, until :meth:`stop`."""

    def __init__(self, children: Sequence[Supervised], backoff: Backoff | None = None) -> None:
        self.children = {child.name: child for child in children}
        self.backoff = backoff or Backoff()
        self._stopping = False

    def run(self) -> None:
        """Supervise until :meth:`stop` is called (from another thread or a signal handler)."""
        now = time.monotonic()
        for child in self.children.values():
            child.started_at = now
        while not self._stopping:
            for child in self.children.values():
                if child.restart_at is None and self._exited(child):
                    self._schedule_restart(child)
                elif child.restart_at is not None and child.restart_at <= time.monotonic():
                    self._restart(child)
            pending = [child.restart_at for child in self.children.values() if child.restart_at is not None]
            running = [
                process
                for child in self.children.values()
                if child.restart_at is None and (process := child.process()) is not None
            ]
            timeout = max(0.0, min(pending) - time.monotonic()) if pending else None
            wait_any(running, timeout, unless=lambda: self._stopping)

    def stop(self) -> None:
        """End :meth:`run` (the processes keep running: their owner stops them)."""
        self._stopping = True
        wake_waiters()

    @staticmethod
    def _exited(child: Supervised) -> bool:
        process = child.process()
        return process is None or process.returncode is not None

    def _schedule_restart(self, child: Supervised, failure: str | None = None) -> None:
        now = time.monotonic()
        if now - child.started_at >= self.backoff.reset_after_s:
            child.exits_in_a_row = 0
        child.exits_in_a_row += 1
        delay = self.backoff.delay(child.exits_in_a_row)
        child.delays.append(delay)
        child.restart_at = now + delay
        process = child.process()
        log.warning(
            "process exited, restarting it" if failure is None else "process could not start again, retrying",
            process=child.name,
            exit_status=process.returncode if process is not None else None,
            restart_in_s=delay,
            exits_in_a_row=child.exits_in_a_row,
            **({"error": failure} if failure is not None else {}),
        )

    def _restart(self, child: Supervised) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.start()
        except ProcessError as error:
            self._schedule_restart(child, failure=str(error).splitlines()[0])
            return
        child.restarts += 1
        process = child.process()
        log.info("process restarted", process=child.name, pid=process.pid if process is not None else None)
