"""The Quart application: `create_app()` wires settings, storage, Temporal, blueprints and
error handling. Run it with `hypercorn 'web:create_app()'`."""

from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from quart import Quart, Response, g, request
from quart_schema import Info, QuartSchema

import telemetry.metrics
from activities.sandbox import SandboxLimits
from activities.sandbox_process import SandboxProcess
from ingest.contracts import ContractBook
from ingest.group_commit import GroupCommitter
from ingest.write_keys import WriteKeyCache
from models.db import create_engine, session_factory
from settings import Settings, get_settings
from telemetry import logs, tracing
from web.cors import CORS
from web.errors import register_error_handlers
from web.events import EventIdConverter
from web.idempotency import register_idempotency
from web.ingest import PATHS
from web.ingest_lane import IngestLane
from web.live_hub import LiveHub
from web.openapi import HeadwaterOpenAPI
from web.responses import new_request_id
from web.services import Services, TemporalGateway

access_log = logging.getLogger("headwater.access")


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or get_settings()
    app = Quart("headwater")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["QUART_SCHEMA_CONVERT_CASING"] = False
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # `/events/<event_id>` matches event ids only, so `/events/live-token`, `/events/export`
    # and `/events/volume` are never taken for an event (OPTIONS and 405s say their own methods).
    app.url_map.converters["event_id"] = EventIdConverter
    QuartSchema(
        app,
        info=Info(title="Headwater", version="0.1.0",
                  description="Self-hosted event platform: anonymous audit streams and "
                              "Segment-compatible ingestion, one durable pipeline."),
        security_schemes={
            "masterKey": {"type": "http", "scheme": "bearer", "bearer_format": "mk_..."},
            "operatorToken": {"type": "http", "scheme": "bearer", "bearer_format": "HEADWATER_ADMIN_TOKEN"},
            "viewerToken": {"type": "http", "scheme": "bearer", "bearer_format": "vt_... (POST .../viewer-tokens)"},
        },
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,  # web.docs serves it from installed assets (quart-schema's loads a CDN)
        openapi_provider_class=HeadwaterOpenAPI,
    )

    @app.before_serving
    async def start_services() -> None:
        if settings.metrics_token:
            telemetry.metrics.enable()  # counted only where they are served (telemetry/metrics.py)
        engine = create_engine(settings)
        sessions = session_factory(engine)
        committer = GroupCommitter(settings.postgres_dsn)
        await committer.start()
        app.extensions["headwater"] = Services(
            settings=settings, engine=engine, sessions=sessions, temporal=TemporalGateway(settings),
            committer=committer, write_keys=WriteKeyCache(sessions), contracts=ContractBook(sessions),
            sandbox=SandboxProcess(SandboxLimits.from_settings(settings)), live=LiveHub(settings.postgres_dsn),
        )

    @app.after_serving
    async def stop_services() -> None:
        svc: Services = app.extensions["headwater"]
        await svc.committer.close()
        await svc.live.close()
        await asyncio.to_thread(svc.sandbox.close)
        await svc.engine.dispose()

    @app.before_request
    async def assign_request_id() -> None:
        g.request_id = new_request_id()
        g.started = time.perf_counter()
        logs.request_id.set(g.request_id)

    @app.after_request
    async def tag_and_log(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-Id"] = request_id
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        span = trace.get_current_span()
        if span.is_recording() and request.url_rule is not None:  # name the request's span by its route
            span.update_name(f"{request.method} {request.url_rule.rule}")
            span.set_attribute("http.route", request.url_rule.rule)
        access_log.info("%s %s %s %.1fms %s", request.method, request.path, response.status_code,
                        elapsed_ms, request_id, extra={"method": request.method, "path": request.path,
                                                       "status": response.status_code,
                                                       "duration_ms": round(elapsed_ms, 1)})
        return response

    register_error_handlers(app)
    register_idempotency(app)

    from web import (
        audit,
        console,
        contracts,
        destinations,
        docs,
        events,
        forwarding_rules,
        health,
        ingest,
        live,
        metrics,
        sources,
        streams,
        transformations,
        viewer,
        workspaces,
    )

    for blueprint in (docs.blueprint, health.blueprint, workspaces.blueprint, streams.blueprint, events.blueprint, live.blueprint,
                      sources.blueprint, contracts.blueprint, transformations.blueprint, destinations.blueprint,
                      forwarding_rules.blueprint, ingest.blueprint, console.root, console.blueprint,
                      metrics.blueprint, audit.blueprint, viewer.tokens, viewer.api, viewer.page):
        app.register_blueprint(blueprint)
    if settings.ingest_lane:
        app.asgi_app = IngestLane(app, app.asgi_app)  # type: ignore[method-assign,assignment]
    app.asgi_app = CORS(app.asgi_app, PATHS, settings.cors_origins)  # type: ignore[method-assign,assignment]
    traces = tracing.tracer_provider(settings, "headwater-api")
    if traces is not None:
        app.asgi_app = OpenTelemetryMiddleware(  # type: ignore[method-assign,assignment]
            app.asgi_app, tracer_provider=traces, exclude_spans=["receive", "send"])

        @app.after_serving
        async def flush_traces() -> None:
            await asyncio.to_thread(traces.shutdown)
    return app
