"""OpenTelemetry traces: a forwarded batch is one trace (Temporal's activity span, then the
transformation and the delivery request inside it, the delivery's traceparent sent to the
webhook), recorded by an in-memory exporter; and an API process configured only by the
standard OTEL_* variables exports a span per management request over OTLP/HTTP to a collector
on 127.0.0.1, with ingest sampled (here: never)."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from models.db import create_engine, session_factory
from telemetry import tracing
from tests.conftest import ApiProcess, isolated_stack
from tests.sinks import Sink
from worker import build_worker, connect


async def test_a_forwarded_batch_is_one_trace(settings, postgres_server_url, tmp_path_factory):
    exporter = InMemorySpanExporter()
    tracer = tracing.tracer_of(tracing.tracer_provider(settings, "headwater-worker", exporter))
    sink = await Sink().start()
    async with isolated_stack(settings, postgres_server_url, tmp_path_factory.mktemp("tracing"), apis=1,
                              workers=0) as stack:
        engine = create_engine(stack.settings, pool_size=3)
        client = await connect(stack.settings, tracer=tracer)
        try:
            async with build_worker(client, session_factory(engine), stack.settings, tracer):
                workspace = await stack.workspace()
                async with stack.apis[0].client() as http:
                    h = workspace.headers
                    source = (await http.post(workspace.url("/event-keys"), json={"name": "t"}, headers=h)).json()
                    transformation = (await http.post(workspace.url("/event-transformations"), headers=h, json={
                        "name": "t", "status": "active", "source_code": "function transform(e) { return e; }"})).json()
                    destination = (await http.post(workspace.url("/destinations"), headers=h, json={
                        "name": "d", "type": "webhook", "config": {"url": sink.url, "mode": "batch"}})).json()
                    rule = await http.post(workspace.url("/event-forwarding-rules"), headers=h, json={
                        "name": "r", "destination_id": destination["id"], "transformation_id": transformation["id"]})
                    assert rule.status_code == 201, rule.text
                    sent = await http.post("/v1/batch", headers={"X-Write-Key": source["key"]}, json={"batch": [
                        {"type": "track", "event": "Traced", "userId": "u"} for _ in range(3)]})
                    assert sent.status_code == 200
                await sink.wait_for(lambda: len(sink.events()) == 3, timeout=30)
        finally:
            await engine.dispose()
            await sink.stop()

    spans = exporter.get_finished_spans()
    deliver = next(s for s in spans if s.name == "deliver")
    transform = next(s for s in spans if s.name == "transform")
    activity = next(s for s in spans if s.context.span_id == deliver.parent.span_id)
    assert activity.name == "RunActivity:forward_batch"
    assert transform.parent.span_id == activity.context.span_id
    assert {s.context.trace_id for s in (activity, transform, deliver)} == {activity.context.trace_id}
    assert deliver.attributes["http.response.status_code"] == 200 and deliver.attributes["headwater.events"] == 3
    assert transform.attributes["headwater.events"] == 3
    # The webhook was told the trace: traceparent = version-trace id-span id-flags, the delivery's span.
    version, trace_id, span_id, flags = sink.received[-1].headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{deliver.context.trace_id:032x}", f"{deliver.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled


async def test_an_api_process_exports_spans_by_the_standard_variables(settings, workspace, tmp_path):
    collector = await Sink().start()
    api = await asyncio.to_thread(ApiProcess, settings, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.base,
                                  OTEL_SERVICE_NAME="headwater-api-test", OTEL_BSP_SCHEDULE_DELAY="100",
                                  HEADWATER_TRACE_INGEST_RATIO="0")
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        async with api.client() as http:
            source = (await http.post(workspace.url("/event-keys"), json={"name": "o"},
                                      headers=workspace.headers)).json()
            for _ in range(5):
                await http.post("/v1/track", json={"event": "x", "userId": "u"}, headers={"X-Write-Key": source["key"]})
            await http.get(workspace.url(), headers={**workspace.headers,
                                                     "traceparent": f"00-{parent_trace}-00f067aa0ba902b7-01"})

        def spans() -> list:
            found = []
            for request in collector.received:
                assert request.path == "/v1/traces"
                export = ExportTraceServiceRequest.FromString(request.body)
                for resource_spans in export.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
                    found += [(service, span) for scope in resource_spans.scope_spans for span in scope.spans]
            return found

        deadline = time.monotonic() + 15
        while not any(span.name == "GET /api/v1/workspaces/<workspace_id>" for _, span in spans()):
            assert time.monotonic() < deadline, [span.name for _, span in spans()]
            await asyncio.sleep(0.1)
    finally:
        api.stop()
        await collector.stop()
    names = [span.name for _, span in spans()]
    assert "POST /api/v1/workspaces/<workspace_id>/event-keys" in names
    assert not any("/v1/track" in name for name in names), names  # ingest sampled at 0
    workspace_span = next(span for _, span in spans() if span.name == "GET /api/v1/workspaces/<workspace_id>")
    assert workspace_span.trace_id.hex() == parent_trace  # the caller's traceparent continued
    assert {service for service, _ in spans()} == {"headwater-api-test"}
