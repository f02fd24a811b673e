"""Every list of things a workspace makes pages like the events list: `limit`, and
`next_cursor` passed back as `cursor`, in creation order, none lost or repeated."""

from __future__ import annotations

import pytest

from tests.conftest import make_workspace

TRANSFORM = "function transform(e) { return e; }"


async def make(client, workspace, kind: str, n: int, destination_id: str | None) -> dict:
    bodies = {
        "event-keys": {"name": f"source {n}"},
        "destinations": {"name": f"dest {n}", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
        "event-forwarding-rules": {"name": f"rule {n}", "destination_id": destination_id, "enabled": False},
        "event-contracts": {"name": f"contract {n}", "event_type": "track", "event_name": f"e{n}",
                            "schema_definition": {"properties": {"x": {"type": "string"}}}},
        "event-transformations": {"name": f"transform {n}", "source_code": TRANSFORM},
        "master-keys": {"name": f"key {n}"},
    }
    response = await client.post(workspace.url(f"/{kind}"), json=bodies[kind], headers=workspace.headers)
    assert response.status_code == 201, await response.get_data()
    body = await response.get_json()
    return body.get("master_key", body) if kind == "master-keys" else body


@pytest.mark.parametrize("kind", ["event-keys", "destinations", "event-forwarding-rules", "event-contracts",
                                  "event-transformations", "master-keys"])
async def test_every_list_pages(client, sessions, kind):
    workspace = await make_workspace(sessions)
    destination = await make(client, workspace, "destinations", 0, None) if kind == "event-forwarding-rules" else None
    made = [(await make(client, workspace, kind, n, destination and destination["id"]))["id"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(workspace.url(f"/{kind}{query}"), headers=workspace.headers)
        assert response.status_code == 200
        page = await response.get_json()
        assert len(page["data"]) <= 2
        seen += [item["id"] for item in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Master keys: the workspace's first key comes before the five made here.
    assert seen == made or (kind == "master-keys" and seen[1:] == made and len(seen) == 6), seen
    assert pages == (len(seen) + 1) // 2
    bad = await client.get(workspace.url(f"/{kind}?cursor=nonsense"), headers=workspace.headers)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["code"] == "invalid_cursor"
    assert (await client.get(workspace.url(f"/{kind}?limit=0"), headers=workspace.headers)).status_code == 400
