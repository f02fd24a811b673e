"""OpenTelemetry traces, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the
standard `OTEL_EXPORTER_OTLP_*` variables itself; `OTEL_SERVICE_NAME` names the process).

What is traced: every management request (a span per request, web/app.py); ingest — the `/v1`
doors and the anonymous streams — sampled at `HEADWATER_TRACE_INGEST_RATIO`, because at
thousands of requests a second every span would cost more than the request; in the worker,
Temporal's interceptor spans (workflow and activity runs) with the forwarding batch's
transformation and each delivery request inside, and the W3C `traceparent` header sent to
webhook destinations so a receiver can continue the trace.

Off, nothing is installed: the engine's spans go to a no-op tracer.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from settings import Settings

INGEST_PATHS = ("/v1/", "/api/v1/streams/")


class IngestSampler(Sampler):
    """Root spans of ingest requests at `ratio`, everything else always (a span's parent
    decides for it: see ParentBased)."""

    def __init__(self, ratio: float) -> None:
        self._ingest = TraceIdRatioBased(ratio)

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
                      attributes: Attributes = None, links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        attributes = attributes or {}
        path = str(attributes.get("url.path") or attributes.get("http.target") or "")
        sampler = self._ingest if path.startswith(INGEST_PATHS) else ALWAYS_ON
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"IngestSampler{{{self._ingest.get_description()}}}"


def tracer_provider(settings: Settings, service_name: str, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """The process's tracer provider, or None when tracing is off. `exporter` (tests) replaces
    the OTLP exporter and exports each span as it ends."""
    if exporter is None and not settings.otel_exporter_otlp_endpoint:
        return None
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name or service_name})
    provider = TracerProvider(resource=resource, sampler=ParentBased(IngestSampler(settings.trace_ingest_ratio)))
    provider.add_span_processor(SimpleSpanProcessor(exporter) if exporter is not None
                                else BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_of(provider: TracerProvider | None) -> trace.Tracer:
    return provider.get_tracer("headwater") if provider is not None else trace.NoOpTracer()
