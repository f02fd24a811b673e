"""Headwater's settings: one typed object read from the environment.

No other module reads ``os.environ``; everything takes a ``Settings`` (or the value it needs).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore", populate_by_name=True)

    # Where things run. Unset DATABASE_URL / TEMPORAL_ADDRESS mean "start the local stack"
    # (embedded Postgres, Temporal dev server) for `make run` and `make test`.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    temporal_address: str | None = Field(
        default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS", "temporal_address")
    )
    temporal_namespace: str = Field(
        default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "temporal_namespace")
    )
    task_queue: str = "headwater"

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (telemetry/logs.py)
    # Traces (telemetry/tracing.py): on when the standard OTLP endpoint variable is set; ingest
    # requests are sampled at this ratio, management requests and forwarding always traced.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"))
    otel_service_name: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_SERVICE_NAME", "otel_service_name"))
    trace_ingest_ratio: float = Field(default=0.01, ge=0, le=1)
    metrics_token: str | None = None  # GET /metrics answers only with it (web/metrics.py); unset: off
    admin_token: str | None = None

    # The local stack (`make run`): where it keeps data and which ports it takes.
    data_dir: Path = Path(".data")
    pg_port: int = 54329
    temporal_port: int = 7233
    temporal_ui_port: int = 8233

    db_pool_size: int = 10
    max_body_bytes: int = 1024 * 1024
    ingest_lane: bool = True  # serve /v1/* through web.ingest_lane (false: through Quart)

    # Anonymous streams (defaults from the API reference).
    stream_ttl_seconds: int = 7 * 24 * 3600
    stream_requests_per_minute: int = 30
    stream_events_per_day: int = 100
    stream_lifetime_events: int = 500
    stream_creations_per_day: int = 10
    stream_max_batch: int = 100
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Origins whose pages may call the management API from a browser (comma-separated; `*`
    # for any). The public doors (/v1/*, the anonymous streams) answer every origin anyway.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Transformations (user JavaScript in quickjs): limits per call, and how many consecutive
    # run-time failures turn a transformation's status to `error`.
    transform_memory_mb: int = Field(default=16, ge=1, le=1024)
    transform_time_ms: int = Field(default=100, ge=1, le=60_000)
    transform_error_threshold: int = Field(default=50, ge=1)

    # The live event stream (SSE), per client: keep-alive period, events per second and
    # unsent events it may hold before the rest are dropped (and counted); token lifetime.
    live_keepalive_seconds: float = Field(default=15.0, gt=0)
    live_max_events_per_second: int = Field(default=2000, ge=1)
    live_queue_events: int = Field(default=5000, ge=1)
    live_token_ttl_seconds: int = Field(default=300, ge=10)

    # Forwarding: events per batch, the retry backoff (base
    # doubling per attempt, with jitter, up to the cap) and how long an idle rule waits for a
    # wake-up before it looks again anyway.
    allow_private_destinations: bool = False
    forward_batch_size: int = Field(default=1000, ge=1, le=10_000)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    forward_idle_seconds: float = Field(default=5.0, gt=0)
    # The worker touches this file every few seconds while it runs (docker-compose's healthcheck).
    worker_heartbeat_file: Path | None = None
    # The worker's Prometheus metrics (and Temporal SDK's) on a port of their own; unset: off.
    # All interfaces by default: Prometheus scrapes it from another host or container, and the
    # port is never the public API's (telemetry/worker_endpoint.py).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"

    # The audit log (audit/): events are sealed into each workspace's Merkle tree at most this
    # long after their commit; the check re-hashes this many leaves per workspace and run.
    seal_interval_seconds: float = Field(default=10.0, ge=1)
    audit_check_interval_seconds: float = Field(default=300.0, ge=1)
    audit_check_leaves: int = Field(default=200_000, ge=1)

    # The customer viewer (/viewer): the origins allowed to embed it in a frame (CSP
    # frame-ancestors, comma-separated, e.g. `https://app.example.com`); none: not embeddable.
    viewer_frame_ancestors: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The console (/console/). Sign-up is closed unless "open"; an operator can always sign a
    # workspace up with the admin token. Sessions last this long (a revoked key ends them at once).
    signup: Literal["closed", "open"] = "closed"
    signups_per_day: int = Field(default=10, ge=1)  # per client IP, when sign-up is open
    console_session_hours: float = Field(default=12.0, gt=0)
    temporal_ui_url: str | None = None  # links rules to their workflow in the Temporal UI

    @field_validator("trusted_proxies", "cors_origins", "viewer_frame_ancestors", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("viewer_frame_ancestors")
    @classmethod
    def _check_frame_ancestors(cls, value: list[str]) -> list[str]:
        for source in value:  # goes into a header: only what a CSP source may be
            if not re.fullmatch(r"'self'|https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?", source):
                raise ValueError(f"not an origin for frame-ancestors: {source!r} (e.g. https://app.example.com)")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL as SQLAlchemy wants it (asyncpg driver), whatever scheme it was given in.
        Unset, it is the local stack's embedded Postgres (what `make run` starts)."""
        return to_asyncpg_url(self.database_url or self.local_database_url)

    @property
    def postgres_dsn(self) -> str:
        """DATABASE_URL as asyncpg itself wants it (`postgresql://...`)."""
        return "postgresql://" + self.sqlalchemy_url.partition("://")[2]

    @property
    def local_database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/headwater"

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"


def to_asyncpg_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        scheme = "postgresql+asyncpg"
    return f"{scheme}://{rest}"


def environment_variables() -> dict[str, str]:
    """Every setting's environment variable name, by field name."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        first = alias.choices[0] if isinstance(alias, AliasChoices) else None
        names[field_name] = first if isinstance(first, str) else f"HEADWATER_{field_name.upper()}"
    return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
