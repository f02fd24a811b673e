"""The worker's metrics port (`HEADWATER_WORKER_METRICS_PORT`): Headwater's worker metrics
(telemetry.metrics.WORKER) and the Temporal SDK's own, on one `/metrics`.

The Temporal SDK exports its metrics (task slots, poll latencies, activity failures...) through
its Rust core, which can only serve them itself: it serves them on a loopback port of its own,
and a collector here reads them from there at each scrape, so Prometheus has one target per
worker. The port is a port of its own, never the API's, so it is off the public path; it needs no
token (the compose file does not publish it).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from telemetry import metrics

log = logging.getLogger("headwater.metrics")


class TemporalSDKMetrics(Collector):
    """The Temporal SDK's metrics, read from the core's own endpoint at each scrape."""

    def __init__(self, url: str) -> None:
        self.url = url

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                text = response.read().decode()
        except OSError as exc:
            log.warning("cannot read the Temporal SDK's metrics at %s: %s", self.url, exc)
            return
        yield from text_string_to_metric_families(text)


def temporal_runtime(address: str) -> tuple[Runtime, str]:
    """A Temporal runtime whose core serves its metrics on `address` (loopback); their URL."""
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=address, counters_total_suffix=True, durations_as_seconds=True)))
    return runtime, f"http://{address}/metrics"


def serve(host: str, port: int, temporal_metrics_url: str | None) -> WSGIServer:
    """Start counting and serve the worker's metrics on host:port (a daemon thread)."""
    metrics.enable()
    if temporal_metrics_url is not None:
        metrics.WORKER.register(TemporalSDKMetrics(temporal_metrics_url))
    server, _ = start_http_server(port, host, registry=metrics.WORKER)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server
