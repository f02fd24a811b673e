"""The foundation: health, errors for every kind of bad input, master keys, sign-up,
isolation between workspaces, OpenAPI."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import ADMIN_TOKEN, WorkspaceKey

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def assert_error(body: dict, code: str) -> None:
    assert set(body) == {"error", "request_id"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["request_id"].startswith("req_")


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ok"
    assert response.headers["X-Request-Id"].startswith("req_")


async def test_readyz_when_both_answer(client):
    response = await client.get("/readyz")
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["checks"] == {"postgres": "ok", "temporal": "ok"}


async def test_readyz_names_the_part_that_failed(settings):
    from web import create_app

    broken = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    async with create_app(broken).test_app() as app:
        response = await app.test_client().get("/readyz")
        body = await response.get_json()
    assert response.status_code == 503
    assert body["checks"] == {"postgres": "ok", "temporal": "failed"}
    assert "temporal" in body["error"]["message"]


async def test_unknown_route_is_json_404(client):
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert_error(await response.get_json(), "not_found")
    assert response.headers["X-Request-Id"] == (await response.get_json())["request_id"]


async def test_wrong_method_is_json_405(client):
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert_error(await response.get_json(), "method_not_allowed")


# --- sign-up through the operator token -----------------------------------------------------

async def test_admin_creates_workspace_and_first_key(client):
    response = await client.post("/api/v1/workspaces", json={"name": "Acme"}, headers=ADMIN)
    body = await response.get_json()
    assert response.status_code == 201, body
    assert body["workspace"]["name"] == "Acme"
    assert body["master_key"].startswith("mk_") and len(body["master_key"]) >= 3 + 43
    workspace_id = body["workspace"]["id"]
    got = await client.get(f"/api/v1/workspaces/{workspace_id}",
                           headers={"Authorization": f"Bearer {body['master_key']}"})
    assert got.status_code == 200
    assert (await got.get_json())["id"] == workspace_id
    assert (await got.get_json())["created_at"].endswith("Z")


async def test_admin_route_refuses_wrong_token(client):
    response = await client.post("/api/v1/workspaces", json={"name": "x"},
                                 headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert_error(await response.get_json(), "invalid_admin_token")


async def test_admin_route_is_off_without_admin_token(settings):
    from web import create_app

    async with create_app(settings.model_copy(update={"admin_token": None})).test_app() as app:
        response = await app.test_client().post("/api/v1/workspaces", json={"name": "x"}, headers=ADMIN)
    assert response.status_code == 404


# --- master keys -----------------------------------------------------------------------------

async def test_master_key_lifecycle(client, workspace: WorkspaceKey):
    created = await client.post(workspace.url("/master-keys"), json={"name": "ci"}, headers=workspace.headers)
    body = await created.get_json()
    assert created.status_code == 201, body
    new_key = body["key"]
    assert new_key.startswith(body["prefix"]) and body["name"] == "ci"

    listed = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    assert {k["name"] for k in listed["data"]} == {"test", "ci"}
    assert all("key" not in k and "key_hash" not in k for k in listed["data"])
    assert listed["next_cursor"] is None

    # The new key works, and last_used_at moves when it is used.
    assert (await client.get(workspace.url(), headers={"Authorization": f"Bearer {new_key}"})).status_code == 200
    listed = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    assert next(k for k in listed["data"] if k["name"] == "ci")["last_used_at"] is not None

    revoked = await client.delete(workspace.url(f"/master-keys/{body['id']}"), headers=workspace.headers)
    assert revoked.status_code == 200
    assert (await revoked.get_json())["revoked_at"] is not None
    response = await client.get(workspace.url(), headers={"Authorization": f"Bearer {new_key}"})
    assert response.status_code == 401
    assert_error(await response.get_json(), "invalid_key")


async def test_last_live_key_cannot_be_revoked(client, workspace: WorkspaceKey):
    keys = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    only = keys["data"][0]["id"]
    response = await client.delete(workspace.url(f"/master-keys/{only}"), headers=workspace.headers)
    assert response.status_code == 409
    assert_error(await response.get_json(), "last_master_key")


async def test_unknown_key_id_is_404(client, workspace: WorkspaceKey):
    for key_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await client.delete(workspace.url(f"/master-keys/{key_id}"), headers=workspace.headers)
        assert response.status_code == 404


# --- isolation -------------------------------------------------------------------------------

async def test_workspaces_are_isolated(client, workspace: WorkspaceKey, other_workspace: WorkspaceKey):
    for path in ("", "/master-keys", "/events"):
        response = await client.get(other_workspace.url(path), headers=workspace.headers)
        assert response.status_code == 404, path
        assert_error(await response.get_json(), "workspace_not_found")
    # ... exactly like a workspace that does not exist, so existence does not leak.
    missing = await client.get(f"/api/v1/workspaces/{uuid.uuid4()}", headers=workspace.headers)
    assert missing.status_code == 404
    assert_error(await missing.get_json(), "workspace_not_found")
    # Revoking another workspace's key through your own workspace id finds nothing.
    theirs = await (await client.get(other_workspace.url("/master-keys"), headers=other_workspace.headers)).get_json()
    response = await client.delete(workspace.url(f"/master-keys/{theirs['data'][0]['id']}"), headers=workspace.headers)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_credentials"),
        ("Bearer", "invalid_authorization"),
        ("Basic dXNlcjpwYXNz", "invalid_authorization"),
        ("Bearer mk_unknown_key_that_does_not_exist_000000000000", "invalid_key"),
        ("Bearer not-a-master-key", "invalid_key"),
        ("Bearer two words", "invalid_authorization"),
    ],
)
async def test_bad_authorization_is_401(client, workspace: WorkspaceKey, header, code):
    headers = {"Authorization": header} if header else {}
    response = await client.get(workspace.url(), headers=headers)
    assert response.status_code == 401
    assert_error(await response.get_json(), code)
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- bad bodies ------------------------------------------------------------------------------

BAD_BODIES = [
    (b"", "application/json", 400, "empty_body"),
    (b"{not json", "application/json", 400, "invalid_json"),
    (b"[1, 2]", "application/json", 400, "body_not_object"),
    (b'"a string"', "application/json", 400, "body_not_object"),
    (b"null", "application/json", 400, "body_not_object"),
    (b'{"name": "a\\u0000b"}', "application/json", 400, "invalid_string"),
    (b'{"name\\u0000": "x"}', "application/json", 400, "invalid_string"),
    (b'{"name": "\xff\xfe"}', "application/json", 400, "invalid_json"),
    (b'{"name": "\\ud800"}', "application/json", 400, "invalid_json"),
    (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"name": "x"}', "text/html", 415, "unsupported_media_type"),
    (b'{"name": 5}', "application/json", 422, "validation_failed"),
    (b'{"name": ""}', "application/json", 422, "validation_failed"),
    (b'{"name": "x", "extra": 1}', "application/json", 422, "validation_failed"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "code"), BAD_BODIES)
async def test_bad_bodies_get_json_errors_and_store_nothing(client, workspace: WorkspaceKey, raw, content_type,
                                                            status, code):
    before = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    response = await client.post(workspace.url("/master-keys"), data=raw,
                                 headers={**workspace.headers, "Content-Type": content_type})
    assert response.status_code == status
    assert_error(await response.get_json(), code)
    after = await (await client.get(workspace.url("/master-keys"), headers=workspace.headers)).get_json()
    assert len(after["data"]) == len(before["data"])


async def test_validation_errors_name_the_field(client, workspace: WorkspaceKey):
    response = await client.post(workspace.url("/master-keys"), json={"name": 5}, headers=workspace.headers)
    body = await response.get_json()
    assert body["error"]["details"][0]["field"] == "name"


async def test_ten_megabyte_body_is_413(client, workspace: WorkspaceKey):
    raw = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = await client.post(workspace.url("/master-keys"), data=raw,
                                 headers={**workspace.headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert_error(await response.get_json(), "payload_too_large")


async def test_bad_query_string_is_400(client, workspace: WorkspaceKey):
    for query in ("limit=0", "limit=1001", "limit=abc", "since=yesterday", "cursor=zzz", "bogus=1",
                  "limit=1&limit=2"):
        response = await client.get(workspace.url(f"/events?{query}"), headers=workspace.headers)
        assert response.status_code == 400, query
        assert (await response.get_json())["error"]["code"] in ("invalid_query", "invalid_cursor")


# --- OpenAPI -----------------------------------------------------------------------------

async def test_openapi_describes_every_route(app, client):
    spec = await (await client.get("/openapi.json")).get_json()
    paths = spec["paths"]
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    for rule in app.app.url_map.iter_rules():
        if rule.endpoint in ("static", "openapi", "swagger_ui") or rule.endpoint.startswith(("quart_schema", "docs.")):
            continue
        if rule.endpoint.endswith(".static"):  # the console's and the viewer's files
            continue
        # Hidden on purpose: the console's and the viewer's pages, analytics.js's one-letter
        # aliases of /v1/*, the metrics.
        if getattr(app.app.view_functions[rule.endpoint], "_quart_schema_hidden", False):
            assert rule.endpoint.startswith(("console", "viewer.", "ingest.ingest_short_", "metrics.")), rule.endpoint
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    claim = paths["/api/v1/streams/claim"]["post"]
    assert "200" in claim["responses"]
    assert "requestBody" in paths["/api/v1/workspaces/{workspace_id}/master-keys"]["post"]


async def test_the_events_routes_are_not_taken_for_an_event(client, workspace):
    """`/events/<event_id>` matches `evt_…` only: the live-token route answers for itself."""
    url = workspace.url("/events/live-token")
    for method in ("GET", "OPTIONS"):
        response = await client.open(url, method=method, headers=workspace.headers)
        assert response.status_code == 405 and response.headers["Allow"] == "POST", method
    missing = await client.get(workspace.url("/events/evt_01ABCDEFGHJKMNPQRSTVWXYZ00"), headers=workspace.headers)
    assert missing.status_code == 404 and (await missing.get_json())["error"]["code"] == "event_not_found"
