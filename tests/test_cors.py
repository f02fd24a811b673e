"""Browsers can send: the public doors (/v1/*, the anonymous streams) answer any origin's
preflight and requests without credentials, as Segment's and RudderStack's APIs do, and
accept sendBeacon's text/plain bodies; the management API answers only the origins in
HEADWATER_CORS_ORIGINS. Over real HTTP, through the ingest lane."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import ApiProcess

PAGE = "http://127.0.0.1:5999"  # the origin of a page elsewhere
CONSOLE = "https://console.example"


@pytest.fixture(scope="module")
def api(settings, worker, tmp_path_factory):
    process = ApiProcess(settings, tmp_path_factory.mktemp("cors"), HEADWATER_CORS_ORIGINS=CONSOLE)
    yield process
    process.stop()


def preflight(origin: str, method: str = "POST", headers: str = "content-type, x-write-key") -> dict:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


@pytest.fixture
async def write_key(client, workspace) -> str:
    response = await client.post(workspace.url("/event-keys"), json={"name": "Browser"}, headers=workspace.headers)
    return (await response.get_json())["key"]


async def test_the_public_doors_answer_any_origin(api, write_key, workspace):
    token = str(uuid.uuid4())
    async with api.client() as http:
        for path, method in (("/v1/track", "POST"), ("/v1/batch", "POST"), (f"/api/v1/streams/{token}/events", "POST"),
                             (f"/api/v1/streams/{token}/info", "GET")):
            response = await http.options(path, headers=preflight(PAGE, method))
            assert response.status_code == 204, path
            assert response.headers["access-control-allow-origin"] == "*"
            assert method in response.headers["access-control-allow-methods"]
            allowed = response.headers["access-control-allow-headers"].lower()
            assert all(h in allowed for h in ("content-type", "authorization", "x-write-key", "content-encoding"))
            assert "access-control-allow-credentials" not in response.headers
        # The request itself carries the header (and says which headers a page may read).
        response = await http.post("/v1/track", json={"event": "clicked", "anonymousId": "a1"},
                                   headers={"Origin": PAGE, "X-Write-Key": write_key})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert "X-Request-Id" in response.headers["access-control-expose-headers"]
        # An error answer carries it too, so the page can read the error.
        response = await http.post("/v1/track", json={"event": "clicked"}, headers={"Origin": PAGE})
        assert response.status_code == 401 and response.headers["access-control-allow-origin"] == "*"


async def test_beacon_bodies_are_accepted(api, write_key, workspace):
    """navigator.sendBeacon sends text/plain (no preflight); so does fetch(..., {keepalive})."""
    token = str(uuid.uuid4())
    async with api.client() as http:
        response = await http.post(f"/v1/track?writeKey={write_key}", headers={"Origin": PAGE, "Content-Type":
                                   "text/plain;charset=UTF-8"}, content=b'{"event":"left","anonymousId":"a1"}')
        assert response.status_code == 200, response.text
        body = ('{"action":"page.left","category":"access","tenant_id":"t","actor":{"id":"u","type":"user"}}')
        response = await http.post(f"/api/v1/streams/{token}/events", content=body.encode(),
                                    headers={"Origin": PAGE, "Content-Type": "text/plain;charset=UTF-8",
                                             "X-Forwarded-For": f"10.77.{uuid.uuid4().int % 250}.1"})
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == "*"


async def test_the_management_api_answers_only_listed_origins(api, workspace):
    async with api.client() as http:
        path = f"/api/v1/workspaces/{workspace.id}/events"
        refused = await http.options(path, headers=preflight(PAGE, "GET", "authorization"))
        assert "access-control-allow-origin" not in refused.headers
        response = await http.get(path, headers={"Origin": PAGE, **workspace.headers})
        assert "access-control-allow-origin" not in response.headers  # the browser will not let the page read it
        allowed = await http.options(path, headers=preflight(CONSOLE, "GET", "authorization"))
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == CONSOLE and allowed.headers["vary"] == "Origin"
        assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
        response = await http.get(path, headers={"Origin": CONSOLE, **workspace.headers})
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == CONSOLE


async def test_public_preflight_allows_the_headers_sdks_ask_for(api):
    """RudderStack's SDK sends AnonymousId and RSA-* retry headers; the public doors allow any
    well-formed header a preflight names (no credentials ride on them), the management API does not."""
    async with api.client() as http:
        response = await http.options("/v1/track", headers=preflight(PAGE, headers="content-type, anonymousid, rsa-since-last-attempt"))
        allowed = [h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")]
        assert {"anonymousid", "rsa-since-last-attempt", "x-write-key", "content-type"} <= set(allowed)
        assert len(allowed) == len(set(allowed))
        response = await http.options("/v1/track", headers=preflight(PAGE, headers="bad header, x-ok"))
        assert "bad" not in response.headers["access-control-allow-headers"]
        response = await http.options("/api/v1/workspaces", headers=preflight(CONSOLE, headers="anonymousid"))
        assert "anonymousid" not in response.headers["access-control-allow-headers"].lower()
