"""`GET /metrics`: the API process's Prometheus metrics (telemetry/metrics.py).

Behind `HEADWATER_METRICS_TOKEN` (`Authorization: Bearer <token>`, which Prometheus sends with
`authorization: {credentials: ...}`), and off (404) while the token is unset: the metrics say
how much flows and what fails, which is not for the public internet, and the API usually *is*
on it. A token works the same behind any proxy, where "only from this network" would not.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response
from quart_schema import hide

from telemetry.metrics import API
from web.auth import bearer_token
from web.errors import APIError
from web.services import services

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    expected = services().settings.metrics_token
    if not expected:
        raise APIError(404, "not_found", "No such route (set HEADWATER_METRICS_TOKEN to serve metrics).")
    if not hmac.compare_digest(bearer_token().encode(), expected.encode()):
        raise APIError(401, "invalid_metrics_token", "The metrics token is not valid.",
                       headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(API), content_type=CONTENT_TYPE_LATEST)
