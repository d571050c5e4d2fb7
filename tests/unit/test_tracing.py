"""Tracing's configuration (the standard OTEL_* variables win over Herald's) and the consumer loop's spans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.kafka.records import TRACEPARENT, Consumed
from shared.observability import tracing

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()
NOT_SAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-00".encode()
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture(autouse=True)
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _exporter_endpoint(provider: TracerProvider) -> str:
    (processor,) = provider._active_span_processor._span_processors
    return str(processor.span_exporter._endpoint)  # type: ignore[attr-defined]


def test_without_an_endpoint_nothing_is_recorded_but_ids_are_made() -> None:
    provider, exporting = tracing.tracer_provider("router", 1.0, None)
    assert not exporting
    assert provider.resource.attributes["service.name"] == "herald-router"
    span = provider.get_tracer("t").start_span("s")
    assert not span.is_recording()
    assert span.get_span_context().is_valid


def test_herald_variables_apply_when_no_otel_variable_is_set() -> None:
    provider, exporting = tracing.tracer_provider("router", 0.25, "http://collector:4318/v1/traces")
    assert exporting
    assert _exporter_endpoint(provider) == "http://collector:4318/v1/traces"
    assert provider.sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.25}")


def test_otel_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "notifications-router")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    provider, exporting = tracing.tracer_provider("router", 0.25, "http://collector:4318/v1/traces")
    assert exporting
    assert _exporter_endpoint(provider) == "http://otel:4318/v1/traces"
    assert provider.sampler.get_description() == "AlwaysOnSampler"
    assert provider.resource.attributes["service.name"] == "notifications-router"
    assert provider.resource.attributes["deployment.environment"] == "prod"


def test_otel_traces_exporter_none_turns_export_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.tracer_provider("router", 1.0, None)[1]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The module's spans go to memory, as if an exporter were configured (the global provider is left alone)."""
    exporter = InMemorySpanExporter()
    provider, _ = tracing.tracer_provider("test", 1.0, None)
    provider = TracerProvider(resource=provider.resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("herald"))
    monkeypatch.setattr(tracing._Recording, "exporting", True)
    return exporter


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def _message(offset: int, traceparent: bytes | None) -> Consumed[dict[str, str]]:
    headers = (("herald-tenant", b"t"), (TRACEPARENT, traceparent)) if traceparent else (("herald-tenant", b"t"),)
    return Consumed("herald.status.v1", 2, offset, b"k", {}, b"", headers)


def test_each_message_gets_a_consumer_span_its_outputs_continue(recorded: InMemorySpanExporter) -> None:
    batch = [_message(7, SAMPLED), _message(8, SAMPLED), _message(9, NOT_SAMPLED)]
    with tracing.processing(batch, "herald.status") as traced:
        traced.failed(traced.messages[1], "invalid_payload")
    finished = recorded.get_finished_spans()
    spans = {_attributes(span)["messaging.kafka.offset"]: span for span in finished if span.parent and span.links == ()}
    (batch_span,) = (span for span in finished if "messaging.batch.message_count" in _attributes(span))
    assert set(spans) == {7, 8}, "a message whose trace is not sampled gets no span"
    for offset, message in zip((7, 8), traced.messages, strict=False):
        span = spans[offset]
        assert span.kind == SpanKind.CONSUMER
        assert span.name == "process herald.status.v1"
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
        assert _attributes(span)["messaging.system"] == "kafka"
        assert _attributes(span)["messaging.operation.type"] == "process"
        assert _attributes(span)["messaging.destination.partition.id"] == "2"
        assert _attributes(span)["messaging.consumer.group.name"] == "herald.status"
        assert message.header(TRACEPARENT) == f"00-{TRACE_ID}-{span.context.span_id:016x}-01".encode()
        assert [name for name, _ in message.headers].count(TRACEPARENT) == 1
    assert spans[8].status.status_code == StatusCode.ERROR
    assert traced.messages[2] is batch[2]
    assert batch_span.parent is not None
    assert batch_span.parent.span_id == spans[7].context.span_id
    assert [link.context.span_id for link in batch_span.links] == [spans[8].context.span_id]


def test_without_an_exporter_a_batch_is_handed_on_as_it_came() -> None:
    batch = [_message(1, SAMPLED), _message(2, None)]
    with tracing.processing(batch, "g") as traced:
        assert traced.messages == batch


def test_without_an_exporter_a_step_keeps_the_trace_it_was_given_or_starts_one_for_the_logs() -> None:
    with tracing.span("router.route", SAMPLED) as continued:
        assert continued == SAMPLED
    with tracing.span("router.route", None) as started, tracing.span("router.route", None) as another:
        assert started is not None
        version, trace_id, span_id, flags = started.decode().split("-")
        assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "00")
        assert int(trace_id, 16) > 0
        assert int(span_id, 16) > 0
        assert another is not None
        assert another.split(b"-")[1] != trace_id.encode(), "each message without a trace starts its own"


def test_a_provider_call_records_its_outcome(recorded: InMemorySpanExporter) -> None:
    from shared.delivery import Failed

    with tracing.provider_call("sms", "twilio", SAMPLED) as call:
        call.record(Failed("sns", "+4915112345678 is unreachable"))
    (span,) = recorded.get_finished_spans()
    assert (span.name, span.kind) == ("sms send", SpanKind.CLIENT)
    assert _attributes(span)["herald.provider"] == "sns"
    assert _attributes(span)["herald.outcome"] == "failed"
    assert _attributes(span)["herald.outcome.reason"] == "provider_rejected"
    assert span.status.status_code == StatusCode.ERROR
    assert "+4915112345678" not in str(_attributes(span)) + str(span.status.description)


def test_a_fired_job_continues_its_stored_trace_from_a_producer_span(recorded: InMemorySpanExporter) -> None:
    fired = tracing.sent_on(SAMPLED, "herald.send.email.v1")
    (span,) = recorded.get_finished_spans()
    assert (span.name, span.kind) == ("send herald.send.email.v1", SpanKind.PRODUCER)
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert fired == f"00-{TRACE_ID}-{span.context.span_id:016x}-01".encode()
    assert tracing.sent_on(NOT_SAMPLED, "herald.send.email.v1") == NOT_SAMPLED
