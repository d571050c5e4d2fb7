"""OpenTelemetry tracing with the W3C ``traceparent`` carried in Kafka headers.

A notification's trace starts at the gateway (or at the upstream producer) and every service
continues it from the ``traceparent`` header of the message it consumed, so one trace id follows the
notification through ingest, router, sender and status. Spans are recorded for a sampled fraction
(``HERALD_TRACE_SAMPLE_RATIO``); ids are propagated for all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def configure_tracing(service: str, sample_ratio: float, otlp_endpoint: str | None) -> None:
    """Install the global tracer provider; export over OTLP when an endpoint is configured."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"herald-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)


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


@cache
def _tracer() -> trace.Tracer:
    # Looked up once: get_tracer builds a new instrumentation scope on every call.
    return trace.get_tracer("herald")


@contextmanager
def span(name: str, traceparent: bytes | None = None, **attributes: str) -> Iterator[bytes | None]:
    """Run a block in a span continuing ``traceparent``; yields the traceparent to put on outputs."""
    with _tracer().start_as_current_span(name, context=context_from(traceparent), attributes=attributes):
        yield current_traceparent() or traceparent
