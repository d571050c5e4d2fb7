"""Traces: one notification sent over HTTP with a ``traceparent`` is one trace, gateway -> ingest -> router ->
sender -> status, exported by every service over OTLP/HTTP (the standard ``OTEL_*`` variables) to a receiver
the test runs."""

from __future__ import annotations

import gzip
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from infra.local.broker import Broker
from tests.e2e.conftest import Pipeline, eventually, running_pipeline
from tests.e2e.test_pipeline import email_request, unique_address

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

# The services one email passes through (retry, the other senders and the rest are not needed).
SERVICES = ("gateway", "ingest", "router", "sender-email", "status")


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    status: int


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (protobuf bodies at ``/v1/traces``) keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                received.extend(
                    ReceivedSpan(
                        service=resource.get("service.name", ""),
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        status=span.status.code,
                    )
                    for span in scope_spans.spans
                )
        with self._lock:
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def traced(broker: Broker) -> Iterator[tuple[Pipeline, OtlpReceiver]]:
    """The services an email passes through, every one exporting every span to the receiver."""
    with OtlpReceiver() as receiver:
        overrides = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            # Exported within a fifth of a second, not the default five.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        with running_pipeline(broker, services=SERVICES, overrides=overrides) as pipeline:
            yield pipeline, receiver


async def test_one_notification_is_one_trace_through_every_service(traced: tuple[Pipeline, OtlpReceiver]) -> None:
    pipeline, receiver = traced
    trace_id, caller_span = uuid.uuid4().hex, os.urandom(8).hex()
    async with pipeline.client() as client:
        accepted = await client.post(
            "/api/v1/notifications",
            json=email_request(unique_address()),
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
    assert accepted.status_code == 202, accepted.text
    await pipeline.wait_for_status(accepted.json()["id"], "sent")
    topics = pipeline.topics
    # Each service's span for the notification: (service, name, kind); each a child of the one before it.
    chain = [
        ("herald-gateway", "POST /api/v1/notifications", Span.SPAN_KIND_SERVER),
        ("herald-gateway", f"send {topics.requests_for('normal')}", Span.SPAN_KIND_PRODUCER),
        ("herald-ingest", f"process {topics.requests_for('normal')}", Span.SPAN_KIND_CONSUMER),
        ("herald-router", f"process {topics.routable_for('normal')}", Span.SPAN_KIND_CONSUMER),
        ("herald-sender-email", f"process {topics.send_for('email', 'normal')}", Span.SPAN_KIND_CONSUMER),
        ("herald-status", f"process {topics.status}", Span.SPAN_KIND_CONSUMER),
    ]

    missing: list[str] = []

    def whole_chain() -> list[ReceivedSpan] | None:
        """The chain's spans, each a descendant of the one before it, once every one has arrived."""
        spans = receiver.trace(trace_id)
        by_id = {span.span_id: span for span in spans}

        def descends(span: ReceivedSpan, ancestor: ReceivedSpan) -> bool:
            while span.parent_id in by_id:
                span = by_id[span.parent_id]
                if span is ancestor:
                    return True
            return False

        found: list[ReceivedSpan] = []
        for service, name, kind in chain:
            # The status service also stores the events of ingest and router: the one below the sender's span.
            following = [
                s
                for s in spans
                if (s.service, s.name, s.kind) == (service, name, kind) and (not found or descends(s, found[-1]))
            ]
            if not following:
                missing[:] = [f"{service}'s {name!r} below the last of {[(f.service, f.name) for f in found]}"]
                return None
            found.append(following[0])
        return found

    try:
        found = await eventually(whole_chain, 30, f"the chain of spans in trace {trace_id}")
    except AssertionError as error:
        raise AssertionError(f"{error}, missing {missing}") from None
    spans = receiver.trace(trace_id)
    server = found[0]
    assert server.parent_id == caller_span, "the gateway continues the caller's traceparent"
    for span in found[2:]:
        assert span.attributes["messaging.system"] == "kafka"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.destination.name"] == span.name.removeprefix("process ")
    sender = found[4]
    calls = [s for s in spans if (s.name, s.kind, s.parent_id) == ("email send", Span.SPAN_KIND_CLIENT, sender.span_id)]
    assert len(calls) == 1, "the provider call is a span of the sender's"
    call = calls[0]
    assert call.attributes["herald.outcome"] == "delivered"
    assert call.attributes["herald.provider"]
    assert call.status == Status.STATUS_CODE_OK
