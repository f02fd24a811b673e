"""`GET /metrics` of an API process: behind HEADWATER_METRICS_TOKEN (off without it), with
events by door, type and outcome, group commits, 503s by cause, stream limit refusals and live
clients; labels never carry an event name."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telemetry import metrics
from telemetry.metrics import API
from tests.conftest import ApiProcess
from web.errors import APIError, error_payload

TOKEN = "metrics-token"


@pytest.fixture(scope="module")
def api(settings, worker, tmp_path_factory):
    process = ApiProcess(settings, tmp_path_factory.mktemp("metrics"), HEADWATER_METRICS_TOKEN=TOKEN,
                         HEADWATER_STREAM_EVENTS_PER_DAY="2")
    yield process
    process.stop()


async def scrape(http) -> dict[tuple[str, tuple], float]:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_token(api, client):
    assert (await client.get("/metrics")).status_code == 404  # the in-process app has no token: off
    async with api.client() as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_what_the_api_counts(api, workspace):
    async with api.client() as http:
        before = await scrape(http)
        source = (await http.post(workspace.url("/event-keys"), json={"name": "m"}, headers=workspace.headers)).json()
        key = {"X-Write-Key": source["key"], "X-Forwarded-For": "10.99.0.1"}
        await http.post("/v1/track", json={"event": "Secret Event Name", "userId": "u", "messageId": "m-1"}, headers=key)
        await http.post("/v1/track", json={"event": "Secret Event Name", "userId": "u", "messageId": "m-1"}, headers=key)
        await http.post("/v1/batch", headers=key, json={"batch": [
            {"type": "identify", "userId": "u"}, {"type": "page", "name": "Home", "anonymousId": "a"},
            {"type": "track"}, {"type": {"not": "hashable"}}]})  # the last two are rejected
        token = str(uuid.uuid4())
        event = {"action": "doc.read", "category": "access", "actor": {"id": "u", "type": "user"}, "tenant_id": "t"}
        await http.post(f"/api/v1/streams/{token}/events", json={"events": [event, event]},
                        headers={"X-Forwarded-For": "10.99.0.2"})
        refused = await http.post(f"/api/v1/streams/{token}/events", json=event, headers={"X-Forwarded-For": "10.99.0.2"})
        assert refused.status_code == 429
        live = await http.post(workspace.url("/events/live-token"), headers=workspace.headers)
        async with http.stream("GET", workspace.url(f"/events/live?token={live.json()['token']}")) as stream:
            # The first chunk, from an iterator kept open: leaving an `async for` would close
            # the stream, and the server would count the client gone before the scrape.
            chunks = stream.aiter_bytes()
            first = await anext(chunks)
            assert stream.status_code == 200, first
            during = await scrape(http)
        after = await scrape(http)

    def grew(name: str, by: float, **labels) -> None:
        assert value(after, name, **labels) - value(before, name, **labels) == by, (name, labels)

    grew("headwater_events_total", 1, door="v1", type="track", outcome="accepted")
    grew("headwater_events_total", 1, door="v1", type="track", outcome="deduplicated")
    grew("headwater_events_total", 1, door="v1", type="identify", outcome="accepted")
    grew("headwater_events_total", 1, door="v1", type="page", outcome="accepted")
    grew("headwater_events_total", 1, door="v1", type="track", outcome="rejected")
    grew("headwater_events_total", 1, door="v1", type="unknown", outcome="rejected")  # found by schemathesis: a 500
    grew("headwater_events_total", 2, door="stream", type="audit", outcome="accepted")
    assert value(after, "headwater_group_commit_events_count") - value(before, "headwater_group_commit_events_count") >= 3
    assert value(after, "headwater_group_commit_seconds_sum") > value(before, "headwater_group_commit_seconds_sum")
    assert sum(v for (name, labels), v in after.items() if name == "headwater_stream_limit_refusals_total") > sum(
        v for (name, labels), v in before.items() if name == "headwater_stream_limit_refusals_total")
    assert value(during, "headwater_live_clients") >= 1
    assert not any("Secret Event Name" in str(labels) for _, labels in after)  # names never become labels


def test_every_503_answer_is_counted_by_its_cause():
    """Both the Quart handlers and the ingest lane render errors through error_payload."""
    def count() -> float:
        return API.get_sample_value("headwater_unavailable_responses_total", {"cause": "commit_failed"}) or 0.0

    was_on = metrics.enabled()
    metrics.enable()
    try:
        before = count()
        error_payload(APIError(503, "commit_failed", "nothing stored"))
        error_payload(APIError(422, "validation_failed", "not a 503"))
        assert count() == before + 1
    finally:
        metrics.enable(was_on)


def test_a_process_that_serves_no_metrics_counts_nothing():
    """Off (no token, no port) is free: nothing is counted."""
    assert not metrics.enabled()  # the in-process app has no metrics token
    before = API.get_sample_value("headwater_unavailable_responses_total", {"cause": "commit_failed"})
    error_payload(APIError(503, "commit_failed", "nothing stored"))
    metrics.count_events("v1", "accepted", ["track"])
    assert API.get_sample_value("headwater_unavailable_responses_total", {"cause": "commit_failed"}) == before
    assert API.get_sample_value("headwater_events_total", {"door": "v1", "type": "track", "outcome": "accepted"}) is None
