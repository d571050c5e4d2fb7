"""Structured JSON logs on stdout, one object a line, with context bound per message.

Bind ``notification_id``, ``tenant`` and ``trace_id`` with :func:`bind_message_context` (context
variables, so concurrent tasks keep their own) and every log line in that task carries them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

# A library repeating one warning (aiokafka logs each retry of a refused offset commit, ten a second) is
# shown once per this many seconds.
REPEAT_WINDOW_S = 10.0


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


# Tracebacks as JSON without each frame's local variables: those hold messages' addresses and content
# (personal data has no place in logs), and rendering them made one poison message cost a second of CPU.
_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False, max_frames=20, use_rich=False)
)


class RepeatedWarnings(logging.Filter):
    """Lets a standard-library warning or error through once per ``window_s`` for each logger and message
    template; the next one shown says how many were held back meanwhile."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        # (logger, template) -> (when one was last shown, how many were held back since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        shown_at, held_back = self._seen.get(key, (-math.inf, 0))
        if now - shown_at < self._window_s:
            self._seen[key] = (shown_at, held_back + 1)
            return False
        self._seen[key] = (now, 0)
        if held_back:
            record.msg = f"{record.getMessage()} ({held_back} more like it in the last {self._window_s:g} s not shown)"
            record.args = None
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the standard library's logging to JSON lines on stdout."""
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            _TRACEBACKS,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
            foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(RepeatedWarnings(REPEAT_WINDOW_S))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance step at INFO; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def bind_message_context(*, notification_id: str | None, tenant: str | None, traceparent: bytes | None) -> None:
    """Attach a message's identity and trace ids to every log line of the current task."""
    trace_id = span_id = None
    if traceparent:
        parts = traceparent.split(b"-")
        if len(parts) == 4:
            trace_id, span_id = parts[1].decode(), parts[2].decode()
    structlog.contextvars.bind_contextvars(
        notification_id=notification_id, tenant=tenant, trace_id=trace_id, span_id=span_id
    )
