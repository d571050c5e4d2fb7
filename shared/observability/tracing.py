"""OpenTelemetry tracing with the W3C ``traceparent`` carried in Kafka headers.

A notification's trace starts at the gateway (continuing the caller's ``traceparent`` when spans are
exported) or at the upstream producer, and every service continues it from the ``traceparent`` header of
the message it consumed, so one trace id follows the notification through ingest, router, sender and
status. The consumer loop makes a CONSUMER span per message (:func:`processing`); producers make PRODUCER
spans (:func:`producing`); a provider call is a CLIENT span with its outcome (:func:`provider_call`);
requests to the gateway, Postgres queries, Redis commands and HTTP calls get theirs from OpenTelemetry's
instrumentation packages.

The standard ``OTEL_*`` variables configure it (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ...); ``HERALD_OTLP_ENDPOINT`` and
``HERALD_TRACE_SAMPLE_RATIO`` stay as fallbacks. Spans are exported only when an endpoint is set;
trace ids are propagated for every message.

Kafka's spans are Herald's own, not ``opentelemetry-instrumentation-aiokafka``'s. That package wraps
``send`` and ``getmany`` per record: it added 25 us to each ``send`` (8.7 -> 34 us, measured sampled out,
as it works out the partition a second time), appends a second ``traceparent`` header to records that
carry one, puts the record key (tenant and recipient) on spans, and makes zero-length "receive" spans
whose context the processing never sees, so a notification's chain would break at every topic.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.delivery import Delivered, Failed, Outcome
from shared.kafka.records import TRACEPARENT, Consumed

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

T = TypeVar("T")

_propagator = TraceContextTextMapPropagator()
# The variables that name an OTLP traces endpoint; the exporter reads them itself.
_STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

# Messaging semantic conventions (https://opentelemetry.io/docs/specs/semconv/messaging/kafka/).
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
PARTITION = "messaging.destination.partition.id"
OFFSET = "messaging.kafka.offset"
CONSUMER_GROUP = "messaging.consumer.group.name"
BATCH_COUNT = "messaging.batch.message_count"


class _Recording:
    """Whether a span can be recorded at all: lets the per-message paths skip the SDK when none would be."""

    exporting = False
    # The sampler follows a parent's decision not to sample (ParentBased's default): such a message's span
    # need not be made.
    follows_unsampled_parent = True


def configure_tracing(service: str, sample_ratio: float, otlp_endpoint: str | None) -> None:
    """Install the global tracer provider (:func:`tracer_provider`); when it exports, instrument asyncpg, Redis
    and httpx."""
    provider, exporting = tracer_provider(service, sample_ratio, otlp_endpoint)
    trace.set_tracer_provider(provider)
    _Recording.exporting = exporting
    described = provider.sampler.get_description()
    _Recording.follows_unsampled_parent = "remoteParentNotSampled:AlwaysOffSampler" in described
    if exporting:
        # Not otherwise: each wrapped call would pay a few microseconds for spans nobody records.
        _instrument_libraries()


def tracer_provider(service: str, sample_ratio: float, otlp_endpoint: str | None) -> tuple[TracerProvider, bool]:
    """The tracer provider for ``service``, and whether it exports.

    ``OTEL_*`` variables win over ``sample_ratio`` (``HERALD_TRACE_SAMPLE_RATIO``) and ``otlp_endpoint``
    (``HERALD_OTLP_ENDPOINT``, the full URL of the traces endpoint): the SDK reads them when given no value.
    Without an endpoint nothing is recorded, but trace ids are still made and propagated (the logs carry them).
    """
    environ = os.environ
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name.
    resource = Resource.create({"service.name": f"herald-{service}"}).merge(OTELResourceDetector().detect())
    standard = any(environ.get(name) for name in _STANDARD_ENDPOINTS)
    exporting = bool(standard or otlp_endpoint) and environ.get("OTEL_TRACES_EXPORTER", "otlp") != "none"
    sampler: Sampler | None = ALWAYS_OFF
    if exporting:
        # None: the SDK builds the sampler OTEL_TRACES_SAMPLER (and _ARG) names.
        sampler = None if environ.get("OTEL_TRACES_SAMPLER") else ParentBased(TraceIdRatioBased(sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter() if standard else OTLPSpanExporter(endpoint=otlp_endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporting


def _unrecorded(traceparent: bytes | None) -> bool:
    """Whether a span continuing ``traceparent`` would certainly not be recorded."""
    if not _Recording.exporting:
        return True
    return _Recording.follows_unsampled_parent and traceparent is not None and traceparent.endswith(b"-00")


def _instrument_libraries() -> None:
    """Spans for every Postgres query, Redis command and outgoing HTTP request (without their values)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (asyncpg, RedisInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def instrument_app(app: FastAPI) -> None:
    """Continue each request's ``traceparent`` in what the gateway's FastAPI ``app`` produces for it.

    When spans are exported, a SERVER span for each request (OpenTelemetry's FastAPI instrumentation: probes
    and scrapes make none, nor do the ASGI receive/send steps, one span each per body chunk). Otherwise only
    the caller's trace context is attached, as that middleware costs about 80 us a request even when nothing
    is recorded, so the trace id still travels from the caller through the pipeline and its logs.
    """
    if not _Recording.exporting:
        app.add_middleware(_CallersTrace)
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/health,/ready,/metrics", exclude_spans=["receive", "send"])


class _CallersTrace:
    """ASGI middleware: a request's ``traceparent`` header becomes the current trace context while it is handled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"traceparent":
                    token = otel_context.attach(_propagator.extract({"traceparent": value.decode("latin-1")}))
                    try:
                        await self.app(scope, receive, send)
                    finally:
                        otel_context.detach(token)
                    return
        await self.app(scope, receive, send)


def context_from(traceparent: bytes | None) -> Context | None:
    """The trace context a message's ``traceparent`` header carries, if any."""
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent.decode(errors="replace")})


def current_traceparent() -> bytes | None:
    """The ``traceparent`` of the current span, for the headers of a message produced now."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent")
    return value.encode() if value else None


def _traceparent_of(span: trace.Span) -> bytes | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    value = carrier.get("traceparent")
    return value.encode() if value else None


@cache
def _tracer() -> trace.Tracer:
    # Looked up once: get_tracer builds a new instrumentation scope on every call.
    return trace.get_tracer("herald")


def new_traceparent() -> bytes:
    """A ``traceparent`` starting a trace, not sampled: ids for the logs of a message that came without one."""
    # Not os.urandom: a system call per message (2 % of the router's CPU); ids need to be unique, not secret
    # (OpenTelemetry's own generator uses the random module too).
    ids = f"{random.getrandbits(192):048x}"
    return f"00-{ids[:32]}-{ids[32:]}-00".encode()


@contextmanager
def span(name: str, traceparent: bytes | None = None, **attributes: str) -> Iterator[bytes | None]:
    """Run a block in a span continuing ``traceparent``; yields the traceparent to put on outputs."""
    if not _Recording.exporting:
        # No span to record: the SDK's non-recording one cost the router 10 % of its CPU for ids alone.
        yield traceparent or new_traceparent()
        return
    if traceparent is not None and _unrecorded(traceparent):
        yield traceparent
        return
    with _tracer().start_as_current_span(name, context=context_from(traceparent), attributes=attributes):
        yield current_traceparent() or traceparent


def _messaging(destination: str, operation: str, **more: str) -> dict[str, str | int]:
    """A Kafka span's attributes under the messaging semantic conventions (``operation``: send or process)."""
    return {
        MESSAGING_SYSTEM: "kafka",
        DESTINATION: destination,
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
        **more,
    }


@contextmanager
def producing(topics: Iterable[str], messages: int = 1, **attributes: str) -> Iterator[bytes | None]:
    """A PRODUCER span (``send <topic>``) for messages produced in the block; yields their ``traceparent``."""
    names = sorted(set(topics))
    destination = names[0] if len(names) == 1 else ", ".join(names)
    details = _messaging(destination, "send", **attributes)
    if messages != 1:
        details[BATCH_COUNT] = messages
    with _tracer().start_as_current_span(f"send {destination}", kind=SpanKind.PRODUCER, attributes=details):
        yield current_traceparent()


def sent_on(traceparent: bytes, topic: str) -> bytes:
    """The ``traceparent`` for a message produced now to ``topic`` in the trace of ``traceparent``, through a
    PRODUCER span of its own (the retry service firing a job stored with its message's trace context)."""
    if _unrecorded(traceparent):
        return traceparent
    span_ = _tracer().start_span(
        f"send {topic}",
        context=context_from(traceparent),
        kind=SpanKind.PRODUCER,
        attributes=_messaging(topic, "send"),
    )
    if not span_.is_recording():
        return traceparent
    span_.end()
    return _traceparent_of(span_) or traceparent


class TracedBatch(Generic[T]):
    """A consumed batch with a CONSUMER span per message; the messages carry their span's ``traceparent``,
    so what a handler produces from a message continues the trace from its span."""

    def __init__(self, messages: list[Consumed[T]], spans: dict[tuple[str, int, int], trace.Span]) -> None:
        self.messages = messages
        self._spans = spans

    def failed(self, message: Consumed[Any], reason: str) -> None:
        """Mark ``message``'s span as failed (it went to the DLQ for ``reason``)."""
        found = self._spans.get((message.topic, message.partition, message.offset))
        if found is not None:
            found.set_status(Status(StatusCode.ERROR, reason))


@contextmanager
def processing(batch: Sequence[Consumed[T]], group: str) -> Iterator[TracedBatch[T]]:
    """CONSUMER spans (``process <topic>``) for a batch a consumer loop handles in the block.

    One span per message, each a child of the message's ``traceparent``: a notification's trace stays one
    chain through the services, which a single span for the batch would cut. The handler's work for the
    batch as a whole (one query, one Redis round trip) runs under a span of its own, linked to them.
    Messages whose span is not recorded (sampled out, or no exporter's sampler keeps it) are handed on as
    they came, so an untraced batch costs a sampling decision per message and nothing more.
    """
    tracer = _tracer()
    messages: list[Consumed[T]] = []
    spans: dict[tuple[str, int, int], trace.Span] = {}
    for message in batch:
        traceparent = message.header(TRACEPARENT)
        if _unrecorded(traceparent):
            messages.append(message)
            continue
        span_ = tracer.start_span(
            f"process {message.topic}",
            context=context_from(traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                **_messaging(message.topic, "process"),
                CONSUMER_GROUP: group,
                PARTITION: str(message.partition),
                OFFSET: message.offset,
            },
        )
        if not span_.is_recording():
            messages.append(message)
            continue
        spans[(message.topic, message.partition, message.offset)] = span_
        headers = tuple((k, v) for k, v in message.headers if k != TRACEPARENT)
        continued = _traceparent_of(span_)
        messages.append(replace(message, headers=(*headers, (TRACEPARENT, continued)) if continued else headers))
    traced = TracedBatch(messages, spans)
    if not spans:
        yield traced
        return
    recorded = list(spans.values())
    if len(batch) == 1:
        current = recorded[0]
    else:
        # Parented to a message's span so that it is sampled (and shown) with the messages it worked for.
        current = tracer.start_span(
            f"process {batch[0].topic}",
            context=trace.set_span_in_context(recorded[0]),
            kind=SpanKind.CONSUMER,
            links=[Link(s.get_span_context()) for s in recorded[1:]],
            attributes={**_messaging(batch[0].topic, "process"), CONSUMER_GROUP: group, BATCH_COUNT: len(batch)},
        )
        recorded.append(current)
    try:
        with trace.use_span(current, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield traced
    except BaseException as error:
        for span_ in recorded:
            span_.record_exception(error)
            span_.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        for span_ in recorded:
            span_.end()


class ProviderCall:
    """The span of one provider call, which records the call's :data:`~shared.delivery.Outcome`."""

    def __init__(self, span_: trace.Span) -> None:
        self._span = span_

    def record(self, outcome: Outcome) -> None:
        """Name the outcome (``delivered``, ``retry``, ``failed``) and the provider that gave it."""
        if not self._span.is_recording():
            return
        self._span.set_attribute("herald.provider", outcome.provider)
        self._span.set_attribute("herald.outcome", type(outcome).__name__.lower())
        if isinstance(outcome, Delivered):
            self._span.set_status(Status(StatusCode.OK))
            return
        # The reason, not the detail: a provider's answer may quote the recipient's address.
        reason = outcome.reason.value if isinstance(outcome, Failed) else outcome.reason
        self._span.set_attribute("herald.outcome.reason", reason)
        self._span.set_status(Status(StatusCode.ERROR, reason))


@contextmanager
def provider_call(channel: str, provider: str, traceparent: bytes | None) -> Iterator[ProviderCall]:
    """A CLIENT span (``<channel> send``) around a call to a channel's provider, continuing ``traceparent``."""
    if _unrecorded(traceparent):
        yield ProviderCall(trace.INVALID_SPAN)
        return
    with _tracer().start_as_current_span(
        f"{channel} send",
        context=context_from(traceparent),
        kind=SpanKind.CLIENT,
        attributes={"herald.channel": channel, "herald.provider": provider},
    ) as span_:
        yield ProviderCall(span_)
