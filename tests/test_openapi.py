"""/openapi.json is a valid OpenAPI 3.1 description that says, for every operation, its
resource (tag), the security it takes, its error answers in the one envelope, and its body."""

from __future__ import annotations

from openapi_spec_validator import validate

# Operations that take no body.
BODYLESS = {
    ("post", "/api/v1/workspaces/{workspace_id}/destinations/{destination_id}/rotate-secret"),
    ("post", "/api/v1/workspaces/{workspace_id}/event-keys/{key_id}/test-event"),
    ("post", "/api/v1/workspaces/{workspace_id}/events/live-token"),
}


async def spec_of(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return await response.get_json()


async def test_the_description_is_valid_and_complete(client):
    spec = await spec_of(client)
    validate(spec)
    operations = [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) >= 55
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert op["tags"] and op["tags"][0] in {t["name"] for t in spec["tags"]}, where
        assert "security" in op, where
        errors = {code for code in op["responses"] if code[0] in "45"}
        assert {"400", "503"} <= errors, where
        if op["security"]:
            assert "401" in errors, where
        if method in ("post", "put") and (method, path) not in BODYLESS:
            assert "requestBody" in op, where
        for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
            assert f"{{{name}}}" in path, where


async def test_doors_and_auth_are_described_as_a_client_needs_them(client):
    spec = await spec_of(client)
    paths = spec["paths"]
    track = paths["/v1/track"]["post"]
    assert {"writeKeyHeader": []} in track["security"] and "text/plain" in track["requestBody"]["content"]
    assert paths["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["batch"]
    stream = paths["/api/v1/streams/{token}/events"]["post"]
    assert stream["security"] == [] and "AuditEvent" in spec["components"]["schemas"]
    assert paths["/api/v1/workspaces"]["post"]["security"] == [{"operatorToken": []}]
    assert paths["/api/v1/workspaces/{workspace_id}/events"]["get"]["security"] == [{"masterKey": []}]
    parameters = {p["name"]: p for p in paths["/api/v1/workspaces/{workspace_id}/events/{event_id}"]["get"]["parameters"]
                  if p["in"] == "path"}
    assert parameters["workspace_id"]["schema"]["format"] == "uuid"
    assert parameters["event_id"]["schema"]["pattern"].startswith("^evt_")
    assert not any(path.startswith("/docs") for path in paths)
