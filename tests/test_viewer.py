"""The viewer for your customers: a token shows one tenant's audit events and nothing else,
whatever the query says (every parameter tried with another tenant's values); tokens expire,
are bounded, die with the master key that made them and cannot be edited; and the page itself,
in a real Chromium, embedded by an allowed origin: list, search, filters, detail, CSV."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from datetime import datetime

import pytest
from sqlalchemy import select

from models.workspaces import MasterKey
from tests.browser import Site
from tests.conftest import ApiProcess, WorkspaceKey
from tests.test_console import SHOTS
from web import key_tokens


def audit(tenant: str, action: str, actor: str, **extra) -> dict:
    return {"type": "audit", "action": action, "category": extra.pop("category", "access"),
            "actor": {"id": actor, "type": "user", "name": f"{actor} name"}, "tenant_id": tenant,
            "target": {"id": f"doc-{tenant}", "type": "document", "name": f"Plan of {tenant}"}, **extra}


async def seed(http, workspace: WorkspaceKey) -> dict[str, list[str]]:
    source = (await http.post(workspace.url("/event-keys"), json={"name": "v", "redact": "off"},
                              headers=workspace.headers)).json()
    batch = [audit("acme", "document.viewed", "alice"), audit("acme", "document.shared", "bob", category="mutation"),
             audit("acme", "member.invited", "alice", category="admin", metadata={"role": "editor"}),
             audit("globex", "document.deleted", "mallory", metadata={"secret": "globex-only-secret"}),
             {"type": "track", "event": "acme track", "userId": "alice", "properties": {"tenant_id": "acme"}}]
    answer = (await http.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})).json()
    assert len(answer["ids"]) == 5, answer
    ids = answer["ids"]
    return {"acme": ids[:3], "globex": [ids[3]], "track": [ids[4]]}


async def token_for(http, workspace: WorkspaceKey, tenant: str, headers: dict | None = None, **fields) -> dict:
    response = await http.post(workspace.url("/viewer-tokens"), json={"tenant_id": tenant, **fields},
                               headers=headers or workspace.headers)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    served = Site(tmp_path_factory.mktemp("embedder"))
    yield served
    served.close()


@pytest.fixture(scope="module")
def api(settings, worker, site, tmp_path_factory):
    process = ApiProcess(settings, tmp_path_factory.mktemp("viewer"), HEADWATER_VIEWER_FRAME_ANCESTORS=site.origin)
    yield process
    process.stop()


async def test_a_token_shows_its_tenant_and_nothing_else(api, workspace):
    async with api.client() as http:
        ids = await seed(http, workspace)
        token = (await token_for(http, workspace, "acme"))["token"]
        bearer = {"Authorization": f"Bearer {token}"}

        async def listed(query: str = "") -> set[str]:
            response = await http.get(f"/api/v1/viewer/events{query}", headers=bearer)
            assert response.status_code == 200, (query, response.text)
            return {event["id"] for event in response.json()["data"]}

        assert await listed() == set(ids["acme"])
        # Every way to name another tenant, workspace or type is refused, or finds nothing of it.
        for query in ("?tenant_id=globex", "?workspace_id=" + workspace.id, "?type=track", "?tenant=globex",
                      "?name=document.deleted", "?source_id=x", "?user_id=alice", "?tenant_id=acme&tenant_id=globex"):
            assert (await http.get(f"/api/v1/viewer/events{query}", headers=bearer)).status_code == 400, query
        for query in ("?q=globex", "?q=globex-only-secret", "?action=document.deleted", "?actor_id=mallory",
                      "?q=acme%20track", "?category=mutation&q=mallory", "?q=%25"):  # % is a letter, not LIKE's
            assert await listed(query) == set(), query
        after_everything = base64.urlsafe_b64encode(("evt_" + "Z" * 26).encode()).decode().rstrip("=")
        assert await listed(f"?cursor={after_everything}") == set(ids["acme"])
        assert await listed("?action=document.shared") == {ids["acme"][1]}
        assert await listed("?q=EDITOR") == {ids["acme"][2]}  # any case, metadata included
        assert await listed("?category=admin&actor_id=alice") == {ids["acme"][2]}
        for event_id in (ids["globex"][0], ids["track"][0], "evt_nope"):
            assert (await http.get(f"/api/v1/viewer/events/{event_id}", headers=bearer)).status_code == 404, event_id
        one = await http.get(f"/api/v1/viewer/events/{ids['acme'][0]}", headers=bearer)
        assert one.json()["tenant_id"] == "acme"

        export = await http.get("/api/v1/viewer/events/export", headers=bearer)
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(export.text, newline="")))
        assert {r["id"] for r in rows} == set(ids["acme"]) and {r["tenant_id"] for r in rows} == {"acme"}
        for query in ("?tenant_id=globex", "?format=ndjson", "?type=track"):
            assert (await http.get(f"/api/v1/viewer/events/export{query}", headers=bearer)).status_code == 400, query
        # The viewer token opens nothing of the master key's API.
        assert (await http.get(workspace.url("/events"), headers=bearer)).status_code == 401


async def test_tokens_expire_are_bounded_and_die_with_their_key(api, workspace, other_workspace, sessions):
    async with api.client() as http:
        made = await token_for(http, workspace, "acme")
        assert abs(time.time() + 3600 - epoch(made["expires_at"])) < 5
        assert made["url"] == f"/viewer?token={made['token']}"
        day = await token_for(http, workspace, "acme", ttl_seconds=86400)
        assert abs(time.time() + 86400 - epoch(day["expires_at"])) < 5
        for ttl in (0, 59, 86401, "long"):
            response = await http.post(workspace.url("/viewer-tokens"), json={"tenant_id": "acme", "ttl_seconds": ttl},
                                       headers=workspace.headers)
            assert response.status_code in (400, 422), ttl
        assert (await http.post(workspace.url("/viewer-tokens"), json={"tenant_id": "acme"},
                                headers=other_workspace.headers)).status_code == 404

        async def refused(token: str) -> bool:
            response = await http.get("/api/v1/viewer/events", headers={"Authorization": f"Bearer {token}"})
            return response.status_code == 401

        payload, signature = made["token"].removeprefix("vt_").split(".")  # the tenant edited, the signature kept
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        forged = base64.urlsafe_b64encode(json.dumps({**claims, "t": "globex"}).encode()).decode().rstrip("=")
        assert await refused(f"vt_{forged}.{signature}")
        live = (await http.post(workspace.url("/events/live-token"), headers=workspace.headers)).json()["token"]
        assert await refused(live)  # another kind of token
        async with sessions() as session:
            key = (await session.scalars(select(MasterKey).where(MasterKey.workspace_id == workspace.id))).first()
        assert await refused(key_tokens.sign("vt_", key, int(time.time()) - 1, t="acme"))  # expired
        spare = (await http.post(workspace.url("/master-keys"), json={"name": "viewer"},
                                 headers=workspace.headers)).json()
        by_spare = await token_for(http, workspace, "acme", headers={"Authorization": f"Bearer {spare['key']}"})
        assert not await refused(by_spare["token"])
        await http.delete(workspace.url(f"/master-keys/{spare['id']}"), headers=workspace.headers)
        assert await refused(by_spare["token"])  # its master key revoked
        page = await http.get(by_spare["url"])
        assert page.status_code == 401 and "expired" in page.text


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_the_viewer_in_a_browser_embedded_by_an_allowed_origin(api, site, workspace, open_page, tmp_path):
    async with api.client() as http:
        ids = await seed(http, workspace)
        made = await token_for(http, workspace, "acme")
        shell = await http.get(made["url"])
    csp = shell.headers["content-security-policy"]
    assert f"frame-ancestors {site.origin}" in csp and "script-src 'self'" in csp
    assert shell.headers["referrer-policy"] == "no-referrer" and shell.headers["cache-control"] == "no-store"

    embedding = site.page("app.html", f'<h1>Customer app</h1><iframe title="Audit log" '
                                      f'src="{api.base_url}{made["url"]}" width="1200" height="700"></iframe>')
    page, guard = await open_page(site.origin, api.base_url)
    await page.goto(embedding)
    frame = page.frame_locator("iframe")
    rows = frame.locator("#events tbody tr")
    await frame.locator("#shown").filter(has_text="3 shown").wait_for()
    assert await rows.count() == 3 and await frame.locator("#more").is_hidden()  # one page: no "Older events"
    assert await frame.locator("#tenant").text_content() == "acme"
    shown = await frame.locator("#events").text_content()
    assert "mallory" not in shown and "document.deleted" not in shown
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / "viewer-embedded.png", full_page=True)

    await frame.get_by_label("Search").fill("editor")
    await frame.get_by_role("button", name="Apply").click()
    await frame.locator("#shown").filter(has_text="1 shown").wait_for()
    await frame.get_by_role("button", name="Show member.invited", exact=False).click()
    await frame.locator("#detail").wait_for()
    assert "editor" in await frame.locator("#detail-json").text_content()
    assert ids["acme"][2] in await frame.locator("#detail-fields").text_content()
    await frame.get_by_role("button", name="Close").click()

    await frame.get_by_label("Search").fill("")
    await frame.get_by_label("Category").select_option("mutation")
    await frame.get_by_role("button", name="Apply").click()
    await frame.locator("#shown").filter(has_text="1 shown").wait_for()
    async with page.expect_download() as downloading:
        await frame.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "audit.csv"
    await (await downloading.value).save_as(path)
    assert [r["action"] for r in csv.DictReader(io.StringIO(path.read_text(), newline=""))] == ["document.shared"]
    assert not guard.problems, guard.problems
