"""The official Segment and RudderStack Python SDKs, unchanged, pointed at a running Headwater
API process with a write key, deliver their events."""

from __future__ import annotations

import asyncio

import pytest
import rudderstack.analytics
import segment.analytics

from tests.conftest import WorkspaceKey


def drive(client) -> None:
    """What an application does with either SDK."""
    client.identify("user-42", {"email_domain": "example.com", "plan": "enterprise"})
    client.track("user-42", "Order Completed", {"order_id": "ORD-456", "total": 99.99, "currency": "USD"})
    client.page("user-42", "Docs", "Pricing", {"url": "https://example.com/pricing"})
    client.screen("user-42", "App", "Home", {"tab": "feed"})
    client.group("user-42", "company-456", {"name": "Acme", "employees": 250})
    client.alias("anon-17", "user-42")  # (previous_id, user_id)
    client.track(anonymous_id="anon-99", event="Signed Up", properties={"source": "ad"})
    client.flush()


@pytest.mark.parametrize(("vendor", "make_client"), [
    ("segment", lambda key, host, errors: segment.analytics.Client(
        key, host=host, on_error=lambda e, batch: errors.append(e), max_retries=2)),
    ("rudderstack", lambda key, host, errors: rudderstack.analytics.Client(
        key, host=host, gzip=True, on_error=lambda e, batch: errors.append(e), max_retries=2)),
])
async def test_official_sdk_delivers(api_processes, workspace: WorkspaceKey, vendor, make_client):
    api = api_processes[0]
    async with api.client() as http:
        source = (await http.post(f"/api/v1/workspaces/{workspace.id}/event-keys", json={"name": vendor},
                                  headers=workspace.headers)).json()
        errors: list = []
        client = make_client(source["key"], api.base_url, errors)
        await asyncio.to_thread(drive, client)
        await asyncio.to_thread(client.shutdown)
        assert errors == []

        events = (await http.get(f"/api/v1/workspaces/{workspace.id}/events?limit=100",
                                 headers=workspace.headers)).json()["data"]
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert sorted(by_type) == ["alias", "group", "identify", "page", "screen", "track"]
    assert len(events) == 7
    assert all(e["source_id"] == source["id"] and e["message_id"] for e in events)
    assert all(e["context"]["library"]["name"] for e in events)  # the SDK's context, kept
    assert all(e["sent_at"] is not None for e in events)

    order = next(e for e in by_type["track"] if e["event"] == "Order Completed")
    assert order["user_id"] == "user-42"
    assert order["properties"] == {"order_id": "ORD-456", "total": 99.99, "currency": "USD"}
    signed_up = next(e for e in by_type["track"] if e["event"] == "Signed Up")
    assert signed_up["anonymous_id"] == "anon-99" and signed_up["user_id"] is None
    assert by_type["identify"][0]["traits"] == {"email_domain": "example.com", "plan": "enterprise"}
    page = by_type["page"][0]
    assert page["name"] == "Pricing" and page["category"] == "Docs"
    assert page["properties"]["url"] == "https://example.com/pricing"
    assert by_type["screen"][0]["name"] == "Home"
    assert by_type["group"][0]["group_id"] == "company-456"
    assert by_type["group"][0]["traits"] == {"name": "Acme", "employees": 250}
    assert by_type["alias"][0]["previous_id"] == "anon-17" and by_type["alias"][0]["user_id"] == "user-42"
