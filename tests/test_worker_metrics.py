"""The worker's metrics port: per rule delivered / retried / dead-lettered events, attempts by
status class, the commit → 2xx latency histogram, pending and lag gauges that an operator can
alert on, the sandbox's runs, failures and restarts, and the Temporal SDK's own metrics on the
same `/metrics`. Against a worker process and an API process of their own (tests/conftest.py's
isolated stack), so no other worker takes a batch of these rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from telemetry import metrics
from tests.conftest import eventually, isolated_stack
from tests.sinks import Reply, Sink

TOKEN = "metrics-token"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
async def stack(settings, postgres_server_url, tmp_path_factory):
    async with isolated_stack(settings, postgres_server_url, tmp_path_factory.mktemp("worker-metrics"), apis=1,
                              workers=1, api_env={"HEADWATER_METRICS_TOKEN": TOKEN}) as running:
        yield running


async def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_forwarding_sandbox_and_temporal_metrics(stack):
    workspace = await stack.workspace()
    worker = stack.workers[0].metrics_url
    good = await Sink().start()
    answers = iter([Reply(500), Reply(500)])
    flaky = await Sink(lambda request: next(answers, Reply(200))).start()
    refusing = await Sink(lambda request: Reply(400, body=b"no")).start()
    try:
        async with stack.apis[0].client() as http:
            h = workspace.headers
            source = (await http.post(workspace.url("/event-keys"), json={"name": "w"}, headers=h)).json()
            transformation = (await http.post(workspace.url("/event-transformations"), headers=h, json={
                "name": "t", "status": "active",
                "source_code": "function transform(e) { if (e.properties.boom) throw new Error('boom'); return e; }"})).json()
            rules = {}
            for name, sink, extra in (("good", good, {"transformation_id": transformation["id"]}),
                                      ("flaky", flaky, {}), ("refusing", refusing, {})):
                destination = (await http.post(workspace.url("/destinations"), headers=h, json={
                    "name": name, "type": "webhook", "config": {"url": sink.url, "mode": "batch"}})).json()
                rule = await http.post(workspace.url("/event-forwarding-rules"), headers=h, json={
                    "name": name, "destination_id": destination["id"], **extra})
                assert rule.status_code == 201, rule.text
                rules[name] = rule.json()["id"]
            batch = [{"type": "track", "event": "Bought", "userId": "u", "properties": {"n": i}} for i in range(5)]
            batch.append({"type": "track", "event": "Bought", "userId": "u", "properties": {"boom": True}})
            sent = await http.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})
            assert sent.status_code == 200, sent.text

        async def forwarded():
            samples = await scrape(worker)
            good_rule, flaky_rule, refusing_rule = rules["good"], rules["flaky"], rules["refusing"]
            assert value(samples, "headwater_forward_delivered_events_total", rule_id=good_rule) == 5
            assert value(samples, "headwater_forward_dead_lettered_events_total", rule_id=good_rule) == 1  # boom
            assert value(samples, "headwater_forward_attempts_total", rule_id=good_rule, status_class="2xx") >= 1
            assert value(samples, "headwater_forward_delivered_events_total", rule_id=flaky_rule) == 6
            assert value(samples, "headwater_forward_retried_events_total", rule_id=flaky_rule) >= 6
            assert value(samples, "headwater_forward_attempts_total", rule_id=flaky_rule, status_class="5xx") == 2
            assert value(samples, "headwater_forward_dead_lettered_events_total", rule_id=refusing_rule) == 6
            assert value(samples, "headwater_forward_attempts_total", rule_id=refusing_rule, status_class="4xx") >= 1
            assert value(samples, "headwater_forward_delivery_latency_seconds_count", rule_id=flaky_rule) == 6
            assert value(samples, "headwater_forward_delivery_latency_seconds_sum", rule_id=flaky_rule) > 0
            assert value(samples, "headwater_sandbox_runs_total") == 6
            assert value(samples, "headwater_sandbox_failures_total") == 1
            return samples

        samples = await eventually(forwarded, timeout=30)
        assert ("headwater_sandbox_restarts_total", ()) in samples
        # The Temporal SDK's own metrics, through the same endpoint.
        assert any(name.startswith("temporal_") for name, _ in samples), sorted({n for n, _ in samples})
        assert not any("Bought" in str(labels) for _, labels in samples)  # no event names in labels

        # Backlog gauges: caught up is 0; a destination that is down shows lag that grows.
        async def caught_up():
            samples = await scrape(worker)
            for rule_id in rules.values():
                assert ("headwater_forward_lag_seconds", (("rule_id", rule_id),)) in samples
                assert value(samples, "headwater_forward_pending_events", rule_id=rule_id) == 0

        await eventually(caught_up, timeout=30)
        await good.stop()
        async with stack.apis[0].client() as http:
            await http.post("/v1/track", json={"event": "Late", "userId": "u"}, headers={"X-Write-Key": source["key"]})

        async def lagging():
            samples = await scrape(worker)
            assert value(samples, "headwater_forward_pending_events", rule_id=rules["good"]) == 1
            assert value(samples, "headwater_forward_lag_seconds", rule_id=rules["good"]) > 0

        await eventually(lagging, timeout=30)
    finally:
        for sink in (good, flaky, refusing):
            await sink.stop()


async def test_contract_violations_by_mode(stack):
    workspace = await stack.workspace()
    async with stack.apis[0].client() as http:
        h = workspace.headers
        before = await scrape(f"{stack.apis[0].base_url}/metrics", Authorization=f"Bearer {TOKEN}")
        source = (await http.post(workspace.url("/event-keys"), json={"name": "c"}, headers=h)).json()
        for name, mode in (("Warned", "warn"), ("Blocked", "block")):
            contract = await http.post(workspace.url("/event-contracts"), headers=h, json={
                "name": name, "event_type": "track", "event_name": name, "enforcement_mode": mode,
                "schema_definition": {"properties": {"price": {"type": "number", "required": True}}}})
            assert contract.status_code == 201, contract.text
        for name in ("Warned", "Blocked", "Blocked"):
            await http.post("/v1/track", json={"event": name, "userId": "u", "properties": {}},
                            headers={"X-Write-Key": source["key"]})
        after = await scrape(f"{stack.apis[0].base_url}/metrics", Authorization=f"Bearer {TOKEN}")
    grew = {mode: value(after, "headwater_contract_violations_total", mode=mode)
            - value(before, "headwater_contract_violations_total", mode=mode) for mode in ("warn", "block")}
    assert grew == {"warn": 1, "block": 2}


METRIC = re.compile(r"\b((?:headwater|temporal)_[a-z0-9_]+)")


def queried_metrics() -> set[str]:
    """Every metric the Grafana dashboard and the alert rules in deploy/ query."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/headwater.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    expressions += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    return {name for expression in expressions for name in METRIC.findall(expression)}


def declared(registry) -> set[str]:
    """What a registry's families are exposed as, labelled children or not (yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}


async def test_the_dashboard_and_alerts_query_only_metrics_that_exist(stack):
    """After the tests above have made the metrics move: each name the dashboard or an alert
    queries is in a real scrape of the API or the worker, or declared by Headwater's registries."""
    exposed = {name for name, _ in await scrape(stack.workers[0].metrics_url)}
    exposed |= {name for name, _ in await scrape(f"{stack.apis[0].base_url}/metrics", Authorization=f"Bearer {TOKEN}")}
    exposed |= declared(metrics.API) | declared(metrics.WORKER)
    queried = queried_metrics()
    assert any(name.startswith("temporal_") for name in queried)
    assert not queried - exposed, (sorted(queried - exposed), sorted(n for n in exposed if n.startswith("temporal_")))
