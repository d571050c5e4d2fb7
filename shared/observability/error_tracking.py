"""Error tracking with Sentry, on when ``SENTRY_DSN`` is set.

Events carry the release (``herald@<version>``), the environment (``SENTRY_ENVIRONMENT``), a ``service``
tag and, where a message is being handled, the ``tenant`` and ``notification_id`` bound for the logs
(:func:`shared.observability.logging.bind_message_context`). Errors logged with structlog
(``log.exception``, ``log.error(..., exc_info=...)``) are reported too: a consumer loop logs the handler
failures it dead-letters rather than letting them escape.

Personal data stays out: the integrations collect nothing personal (no bodies, headers or local
variables), and :func:`scrub_event` replaces email addresses, phone numbers and recipient fields
everywhere in an event before it is sent.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import version
from typing import Any

import sentry_sdk
import structlog
from sentry_sdk.types import Event, Hint

FILTERED = "[Filtered]"
# Fields of Herald's messages that hold a recipient's address or a message's content.
PERSONAL_KEYS = frozenset(
    {"recipient", "recipients", "email", "phone", "to", "token", "webhook_url", "content", "body", "variables_json"}
)
# A top-level domain is letters: "herald@0.1.0" (the release) is no address.
_EMAIL = re.compile(r"[\w.%+-]+@(?:[\w-]+\.)+[A-Za-z]{2,}\b")
# Herald stores and sends phone numbers in E.164; a looser pattern would eat offsets and ids.
_PHONE = re.compile(r"\+[1-9]\d{6,14}\b")
# Log context bound per message, copied onto events as tags.
_CONTEXT_TAGS = ("tenant", "notification_id")
_ERROR_METHODS = frozenset({"error", "exception", "critical"})


def scrub(value: Any) -> Any:
    """``value`` with email addresses and phone numbers masked and personal fields replaced, at any depth."""
    if isinstance(value, str):
        return _PHONE.sub(FILTERED, _EMAIL.sub(FILTERED, value))
    if isinstance(value, dict):
        return {key: FILTERED if key in PERSONAL_KEYS else scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def scrub_event(event: Event, hint: Hint) -> Event:
    """Sentry's ``before_send``: tag the event with the bound message context, then scrub all of it."""
    bound = structlog.contextvars.get_contextvars()
    tags = event.setdefault("tags", {})
    for name in _CONTEXT_TAGS:
        if bound.get(name):
            tags.setdefault(name, bound[name])
    scrubbed: Event = scrub(event)
    return scrubbed


def report_logged_errors(logger: Any, method_name: str, event_dict: Any) -> Any:
    """A structlog processor that sends an error logged with an exception to Sentry."""
    exc_info = event_dict.get("exc_info")
    if exc_info and method_name in _ERROR_METHODS:
        error = sys.exc_info()[1] if exc_info is True else exc_info
        if error is not None:
            sentry_sdk.capture_exception(error)
    return event_dict


def configure_error_tracking(service: str) -> bool:
    """Start reporting to Sentry when ``SENTRY_DSN`` is set (call after logging is configured); True if on."""
    dsn = os.environ.get("SENTRY_DSN")
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        release=os.environ.get("SENTRY_RELEASE") or f"herald@{version('herald')}",
        environment=os.environ.get("SENTRY_ENVIRONMENT") or "production",
        # Nothing personal from the integrations (what send_default_pii=False meant before 2.76):
        # recipients and content travel in the gateway's bodies and queries, Kafka messages and locals.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "off"}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        },
        before_send=scrub_event,
        # Traces go through OpenTelemetry (shared.observability.tracing).
        traces_sample_rate=None,
    )
    sentry_sdk.get_global_scope().set_tag("service", service)
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[report_logged_errors, *processors])
    return True
