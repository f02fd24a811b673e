"""The console in a real Chromium, against a real API process: the journey a new user lives
(sign up, a source, events from the official Segment SDK seen live, a stream claimed and its
events found), a test per page, and the session's rules (CSRF, sign-out, a revoked key). Every
page is photographed at desktop and phone size into the folder the session prints."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
import segment.analytics
from playwright.async_api import expect

from tests.browser import DESKTOP, PHONE
from tests.conftest import ADMIN_TOKEN, ApiProcess, WorkspaceKey, make_workspace
from tests.sinks import Reply, Sink

SHOTS = Path(__file__).resolve().parent.parent / ".data" / "screenshots"


@pytest.fixture(scope="module")
def api(settings, worker, tmp_path_factory):
    process = ApiProcess(settings, tmp_path_factory.mktemp("console"), HEADWATER_SIGNUP="open",
                         HEADWATER_ALLOW_PRIVATE_DESTINATIONS="true", HEADWATER_RETRY_BASE_SECONDS="0.2",
                         HEADWATER_TEMPORAL_UI_URL="http://127.0.0.1:8233",
                         HEADWATER_STREAM_REQUESTS_PER_MINUTE="100000", HEADWATER_TRUSTED_PROXIES="")
    yield process
    process.stop()


@pytest.fixture(scope="module", autouse=True)
def screenshots():
    """The suite's summary names the folder (tests/conftest.py: pytest_terminal_summary)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


async def shoot(page, name: str) -> None:
    """The page at desktop and phone size."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        # Nothing may stick out sideways, but what is inside its own scroller (a wide table).
        culprits = await page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.parentElement.closest('.scroll, pre'))
            .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)""")
        assert not culprits, f"{name} is wider than a {label} screen: {culprits}"
        await page.screenshot(path=SHOTS / f"{name}-{label}.png", full_page=True)
    await page.set_viewport_size(DESKTOP)


async def sign_in(page, api: ApiProcess, account: WorkspaceKey) -> None:
    await page.goto(api.base_url + "/console/sign-in")
    await page.get_by_label("Master key").fill(account.key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(api.base_url + "/console/")
    await ready(page)


async def ready(page) -> None:
    await page.wait_for_selector("body[data-ready=true]")


async def add_sink_destination(page, url: str):
    """Opens Destinations and rules and adds a webhook destination called Sink; returns its form."""
    await page.get_by_role("link", name="Destinations and rules").click()
    await ready(page)
    form = page.locator("#new-destination")
    await form.get_by_label("Name", exact=True).fill("Sink")
    await form.get_by_label("URL").fill(url)
    await form.get_by_role("button", name="Add destination").click()
    return form


@pytest.fixture
async def account(sessions) -> WorkspaceKey:
    return await make_workspace(sessions, f"console-{uuid.uuid4().hex[:6]}")


async def test_the_journey_of_a_new_user(api, open_page):
    page, guard = await open_page(api.base_url)
    # Sign up: the master key is shown once, with a copy button, and we are signed in.
    await page.goto(api.base_url + "/")
    await page.wait_for_url(re.compile(r".*/console/sign-in$"))
    await page.get_by_role("link", name="Create a workspace").click()
    await page.get_by_label("Workspace name").fill(f"Journey {uuid.uuid4().hex[:6]}")
    await page.get_by_role("button", name="Create workspace").click()
    secret = await page.get_by_label("Master key").input_value()
    assert secret.startswith("mk_")
    await shoot(page, "signed-up")
    await page.get_by_role("link", name="Continue to the console").click()
    await ready(page)

    # A source, its key and a snippet.
    await page.get_by_role("link", name="Sources").click()
    await ready(page)
    await page.get_by_label("New source").fill("Web app")
    await page.get_by_role("button", name="Create source").click()
    key_field = page.get_by_label("Write key")
    await key_field.wait_for()
    write_key = await key_field.input_value()
    assert write_key.startswith("wk_")
    assert write_key in await page.locator("#snippet").inner_text()
    await shoot(page, "sources")

    # The live debugger is open; the official Segment SDK sends; the events show within 2 s.
    await page.get_by_role("link", name="Live debugger").click()
    await ready(page)
    client = segment.analytics.Client(write_key, host=api.base_url, max_retries=1)
    client.track("user_1", "Journey Started", {"plan": "pro"})
    client.identify("user_1", {"email": "jane@example.com"})
    sent = time.monotonic()
    await asyncio.to_thread(client.flush)
    await page.get_by_text("track · Journey Started").wait_for(timeout=5_000)
    assert time.monotonic() - sent < 2.5
    await page.locator("#feed").get_by_text("identify · ").wait_for()
    await shoot(page, "live")

    # Claim a stream posted anonymously, then find its events.
    token = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        for i in range(3):
            await http.post(f"/api/v1/streams/{token}/events", json={
                "action": "doc.shared", "category": "access", "actor": {"id": f"u{i}", "type": "user"},
                "tenant_id": "acme"})
    await page.get_by_role("link", name="Claim a stream").click()
    await page.get_by_label("Claim token").fill(token)
    await page.get_by_role("button", name="Look it up").click()
    await page.locator("#count").filter(has_text="3").wait_for()
    await page.get_by_role("button", name="Claim into this workspace").click()
    await page.get_by_text("Claimed: 3 events moved").wait_for()
    await shoot(page, "claim")
    await page.get_by_role("link", name="See them").click()
    await ready(page)
    assert await page.locator("#events tbody tr").count() == 3
    await shoot(page, "events")

    await page.get_by_role("link", name="Overview").click()
    await ready(page)
    assert await page.locator("#week").inner_text() == "5"
    await shoot(page, "overview")

    # A contract, and its violation.
    await page.get_by_role("link", name="Contracts").click()
    await ready(page)
    form = page.locator("#contract")
    await form.get_by_label("Name", exact=True).fill("Journey")
    await form.get_by_label("Event name").fill("Journey Started")
    await page.get_by_label("Schema").fill('{"type": "object", "properties": {"plan": {"type": "integer"}}}')
    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#contract-title")).to_contain_text("Edit Journey")
    client.track("user_1", "Journey Started", {"plan": "pro"})
    await asyncio.to_thread(client.flush)
    await page.reload()
    await expect(page.locator("#groups tbody")).to_contain_text("type_mismatch")

    # A transformation, tested and activated.
    await page.get_by_role("link", name="Transformations").click()
    await ready(page)
    await page.get_by_label("Name", exact=True).fill("Tag")
    await page.get_by_label("Code").fill("function transform(event) {\n  event.properties.tagged = true;\n  return event;\n}")
    await page.get_by_role("button", name="Run test").click()
    await expect(page.locator("#output")).to_contain_text('"tagged": true')
    await page.get_by_role("button", name="Activate").click()
    await expect(page.locator("#status")).to_contain_text("active")

    # A webhook on 127.0.0.1 and a rule through the transformation; delivered; then the sink
    # refuses, dead letters appear, and "redrive all matching" delivers them.
    refusing = False
    sink = await Sink(lambda request: Reply(400 if refusing else 200)).start()
    try:
        await add_sink_destination(page, sink.url)
        await expect(page.locator("#destinations tbody")).to_contain_text("Sink")
        rule_form = page.locator("#new-rule")
        await rule_form.get_by_label("Name", exact=True).fill("Journeys to sink")
        await rule_form.get_by_label("Event names").fill("Journey Started")
        await rule_form.get_by_label("Transformation").select_option(label="Tag (active)")
        await rule_form.get_by_role("button", name="Add rule").click()
        client.track("user_2", "Journey Started", {"plan": 1})
        await asyncio.to_thread(client.flush)
        await expect(page.locator("#funnel [data-step=delivered] strong")).to_have_text("1", timeout=20_000)
        assert sink.received[-1].json()["properties"] == {"plan": 1, "tagged": True}
        refusing = True
        for n in range(3):
            client.track("user_3", "Journey Started", {"plan": n})
        await asyncio.to_thread(client.flush)
        await expect(page.locator("#dead-total")).to_contain_text("3 match", timeout=20_000)
        refusing = False
        await page.get_by_role("button", name="Redrive all matching").click()
        await page.get_by_role("button", name="Redrive them").click()
        await expect(page.locator("#funnel [data-step=delivered] strong")).to_have_text("4", timeout=20_000)
        await expect(page.locator("#dead-total")).to_contain_text("0 match")
    finally:
        await sink.stop()
    assert not guard.problems


async def test_sign_in_session_csrf_and_sign_out(api, open_page, account, sessions):
    page, guard = await open_page(api.base_url)
    # A wrong key is refused in words.
    await page.goto(api.base_url + "/console/sign-in")
    await page.get_by_label("Master key").fill("mk_wrong")
    with guard.expecting(401):
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_text("Unknown or revoked master key.").wait_for()
    await shoot(page, "sign-in")
    await sign_in(page, api, account)
    cookie = next(c for c in await page.context.cookies() if c["name"] == "hw_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here
    assert account.key not in cookie["value"]

    # The session works the API, but a state change without the CSRF token does not.
    jar = {"hw_session": cookie["value"]}
    async with httpx.AsyncClient(base_url=api.base_url, cookies=jar) as http:
        assert (await http.get(account.url("/event-keys"))).status_code == 200
        refused = await http.post(account.url("/event-keys"), json={"name": "x"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        csrf = await page.evaluate("document.body.dataset.csrf")
        assert (await http.post(account.url("/event-keys"), json={"name": "x"},
                                headers={"X-CSRF-Token": csrf})).status_code == 201
        # A sign-in form posted from another site is refused.
        forged = await http.post("/console/sign-in", data={"master_key": account.key},
                                 headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403

    # Every console answer carries the headers.
    response = await page.goto(api.base_url + "/console/")
    headers = response.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"

    # Sign out ends the session server-side.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(api.base_url + "/console/sign-in")
    async with httpx.AsyncClient(base_url=api.base_url, cookies=jar) as http:
        assert (await http.get(account.url("/event-keys"))).status_code == 401


async def test_revoking_the_key_ends_its_sessions(api, open_page, account):
    page, _ = await open_page(api.base_url)
    await sign_in(page, api, account)
    await ready(page)
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        second = (await http.post(account.url("/master-keys"), json={"name": "other"}, headers=account.headers)).json()
        keys = (await http.get(account.url("/master-keys"), headers=account.headers)).json()["data"]
        first_id = next(k["id"] for k in keys if k["id"] != second["id"])
        revoked = await http.delete(account.url(f"/master-keys/{first_id}"),
                                    headers={"Authorization": f"Bearer {second['key']}"})
        assert revoked.status_code == 200
    await page.goto(api.base_url + "/console/sources")
    await page.wait_for_url(api.base_url + "/console/sign-in")


async def test_sign_up_is_closed_unless_opened_or_the_operator_signs_up(settings, worker, open_page, tmp_path):
    closed = ApiProcess(settings, tmp_path)  # HEADWATER_SIGNUP unset: closed
    try:
        page, guard = await open_page(closed.base_url)
        await page.goto(closed.base_url + "/console/sign-up")
        await page.get_by_label("Workspace name").fill(f"Closed {uuid.uuid4().hex[:6]}")
        await page.get_by_label("Operator token").fill("wrong")
        with guard.expecting(401):
            await page.get_by_role("button", name="Create workspace").click()
            await page.get_by_text("The operator token is not valid.").wait_for()
        await page.get_by_label("Operator token").fill(ADMIN_TOKEN)
        await page.get_by_role("button", name="Create workspace").click()
        assert (await page.get_by_label("Master key").input_value()).startswith("mk_")
        async with httpx.AsyncClient(base_url=closed.base_url) as http:
            refused = await http.post("/console/sign-up", data={"workspace": "no token"})
            assert refused.status_code == 403 and "Sign-up is closed" in refused.text
    finally:
        closed.stop()


async def test_claim_page_messages(api, open_page, account):
    page, guard = await open_page(api.base_url)
    await sign_in(page, api, account)
    await page.goto(api.base_url + "/console/claim")
    with guard.expecting(400, 404):
        await page.get_by_label("Claim token").fill("not-a-token")
        await page.get_by_role("button", name="Look it up").click()
        await page.get_by_text("A claim token is a UUID").wait_for()
        await page.get_by_label("Claim token").fill(str(uuid.uuid4()))
        await page.get_by_role("button", name="Look it up").click()
        await page.get_by_text("No stream has this claim token").wait_for()


async def test_events_page_filters_pages_and_exports(api, open_page, account):
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        source = (await http.post(account.url("/event-keys"), json={"name": "s"}, headers=account.headers)).json()
        batch = [{"type": "track", "event": "Clicked" if i % 2 else "Viewed", "userId": f"u{i}"} for i in range(120)]
        assert (await http.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})).status_code == 200
    page, _ = await open_page(api.base_url)
    await sign_in(page, api, account)
    await page.goto(api.base_url + "/console/events")
    await ready(page)
    assert await page.locator("#events tbody tr").count() == 50
    await page.get_by_role("button", name="Older events").click()
    await page.locator("#events tbody tr").nth(99).wait_for()
    await page.get_by_label("Name").fill("Clicked")
    await page.get_by_role("button", name="Apply").click()
    await page.get_by_text("50 shown").wait_for()
    assert "name=Clicked" in page.url
    await page.locator("#events tbody button").first.click()
    assert '"event": "Clicked"' in await page.locator("#detail-json").inner_text()
    await page.keyboard.press("Escape")
    href = await page.get_by_role("link", name="Export these (NDJSON)").get_attribute("href")
    assert "name=Clicked" in href
    async with page.expect_download() as download:
        await page.get_by_role("link", name="Export these (NDJSON)").click()
    saved = Path(await (await download.value).path())
    lines = (await asyncio.to_thread(saved.read_text)).splitlines()
    assert len(lines) == 60 and all('"Clicked"' in line for line in lines)


async def test_live_debugger_pauses_counts_and_keeps_500(api, open_page, account):
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        source = (await http.post(account.url("/event-keys"), json={"name": "s"}, headers=account.headers)).json()
        page, _ = await open_page(api.base_url)
        await sign_in(page, api, account)
        await page.goto(api.base_url + "/console/live")
        await page.get_by_text("live", exact=True).wait_for()
        await page.get_by_role("button", name="Pause").click()
        send = lambda n, name: http.post("/v1/batch", headers={"X-Write-Key": source["key"]},  # noqa: E731
                                          json={"batch": [{"type": "track", "event": name, "userId": f"u{i}",
                                                           "properties": {"needle": i == 7}} for i in range(n)]})
        await send(30, "While Paused")
        await page.locator("#waiting").filter(has_text="30").wait_for()
        assert await page.locator("#feed li").count() == 0
        await page.get_by_role("button", name="Resume").click()
        await page.locator("#feed li").nth(29).wait_for()
        # A burst: the page keeps the newest 500 and counts them all.
        for _ in range(3):
            await send(250, "Burst")
        await page.locator("#received").filter(has_text="780").wait_for(timeout=10_000)
        assert await page.locator("#feed li").count() == 500
        await page.get_by_label("Search").fill('"needle": true')  # one per burst; the newest 500 hold two bursts
        await expect(page.locator("#feed li")).to_have_count(2)


async def test_sources_page_test_event_and_revoke(api, open_page, account):
    page, _ = await open_page(api.base_url)
    await sign_in(page, api, account)
    await page.goto(api.base_url + "/console/sources")
    await ready(page)
    await page.get_by_label("New source").fill("Backend")
    await page.get_by_role("button", name="Create source").click()
    await page.get_by_role("button", name="Send a test event with Backend").click()
    await page.get_by_text("Test event sent with Backend").wait_for()
    await page.get_by_role("button", name="Revoke Backend").click()
    await page.get_by_role("button", name="Cancel").click()
    await page.get_by_role("button", name="Revoke Backend").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    await page.get_by_text("Backend revoked").wait_for()
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        keys = (await http.get(account.url("/event-keys"), headers=account.headers)).json()["data"]
        assert [k["status"] for k in keys if k["name"] == "Backend"] == ["revoked"]


async def test_pages_in_the_dark_and_by_keyboard(api, open_page, account):
    page, _ = await open_page(api.base_url, color_scheme="dark")
    await sign_in(page, api, account)
    await ready(page)
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(16, 18, 23)"
    await shoot(page, "overview-dark")
    # Keyboard: the skip link first, then the navigation.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    # Every control on every page has a label.
    for path in ("", "claim", "events", "live", "sources", "contracts", "transformations", "rules"):
        await page.goto(api.base_url + f"/console/{path}")
        await ready(page)
        unlabeled = await page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label')).map(e => e.name || e.id)""")
        assert unlabeled == [], (path, unlabeled)


async def test_destinations_rules_funnel_dead_letters_and_redrive_all_matching(api, open_page, account):
    """A webhook sink on 127.0.0.1 and a rule made in the console; the delivered count; the sink
    fails; dead letters appear; "redrive all matching" shows the count, then sends every one."""
    failing = True
    sink = await Sink(lambda request: Reply(400 if failing else 200, body=b"account suspended")).start()
    try:
        async with httpx.AsyncClient(base_url=api.base_url) as http:
            source = (await http.post(account.url("/event-keys"), json={"name": "s"}, headers=account.headers)).json()
        page, guard = await open_page(api.base_url)
        await sign_in(page, api, account)
        form = await add_sink_destination(page, sink.url)
        await page.get_by_role("button", name="Reveal the signing secret of Sink").click()
        await expect(page.get_by_role("textbox", name="Signing secret")).to_have_value(re.compile("^whsec_"))
        rule_form = page.locator("#new-rule")
        await rule_form.get_by_label("Name", exact=True).fill("All to sink")
        await rule_form.get_by_label("Destination").select_option(label="Sink")
        await rule_form.get_by_role("button", name="Add rule").click()
        await page.locator("#rule-name").filter(has_text="All to sink").wait_for()
        link = await page.get_by_role("link", name="Workflow in the Temporal UI").get_attribute("href")
        assert re.fullmatch(r"http://127\.0\.0\.1:8233/namespaces/default/workflows/forward-[0-9a-f-]{36}", link), link

        async def send(n: int) -> None:
            async with httpx.AsyncClient(base_url=api.base_url) as http:
                batch = [{"type": "track", "event": "Paid", "userId": f"u{i}"} for i in range(n)]
                assert (await http.post("/v1/batch", json={"batch": batch},
                                        headers={"X-Write-Key": source["key"]})).status_code == 200

        # The sink refuses (a 400 is permanent): dead letters at once.
        await send(4)
        await page.locator("#dead-total").filter(has_text="4 match").wait_for(timeout=20_000)
        await page.locator("#funnel [data-step=dead_lettered] strong").filter(has_text="4").wait_for()
        await shoot(page, "rules")

        failing = False
        with guard.expecting():
            await page.get_by_role("button", name="Redrive all matching").click()
            await page.get_by_text("4 dead letters match: all of them will be sent again").wait_for()
            await page.get_by_role("button", name="Redrive them").click()
        await page.locator("#dead-total").filter(has_text="0 match").wait_for(timeout=20_000)
        await page.locator("#funnel [data-step=delivered] strong").filter(has_text="4").wait_for(timeout=20_000)
        await page.locator("#attempts tbody tr").first.wait_for()
        assert "delivered" in await page.locator("#attempts tbody").inner_text()

        # Edit: the destination's address, the rule's names, and disable/enable.
        await page.get_by_role("button", name="Edit Sink").click()
        await form.get_by_label("URL").fill(sink.url + "/v2")
        await form.get_by_role("button", name="Save destination").click()
        await expect(page.locator("#destinations tbody")).to_contain_text("/hook/v2")
        await page.get_by_role("button", name="Edit All to sink").click()
        await rule_form.get_by_label("Event names").fill("Paid, Refunded")
        await rule_form.get_by_role("button", name="Save rule").click()
        await page.get_by_role("button", name="Disable All to sink").click()
        await page.get_by_role("button", name="Enable All to sink").wait_for()
        async with httpx.AsyncClient(base_url=api.base_url) as http:
            rule = (await http.get(account.url("/event-forwarding-rules"), headers=account.headers)).json()["data"][0]
            assert rule["event_names"] == ["Paid", "Refunded"] and rule["enabled"] is False
    finally:
        await sink.stop()


async def test_transformations_editor_test_save_activate_versions(api, open_page, account):
    page, guard = await open_page(api.base_url)
    await sign_in(page, api, account)
    await page.get_by_role("link", name="Transformations").click()
    await ready(page)
    await page.get_by_label("Name", exact=True).fill("Mark seen")
    editor = page.get_by_label("Code")
    await editor.fill("function transform(event) {\nevent.seen = true;\nreturn event;\n}")
    await editor.press("Control+Home")
    await editor.press("Tab")  # Tab indents inside the editor
    assert (await editor.input_value()).startswith("  function")
    assert (await page.locator("#gutter").inner_text()).split() == ["1", "2", "3", "4"]
    await page.get_by_role("button", name="Run test").click()
    await expect(page.locator("#output")).to_contain_text('"seen": true')
    await expect(page.locator("#duration")).to_contain_text("Version 1")

    with guard.expecting(422):
        await editor.fill("function transform(event) {\n  return event +;\n}")
        await page.get_by_role("button", name="Run test").click()
        await expect(page.locator("#error")).to_contain_text("Line 2, column")
        await editor.fill("function transform(event) {\n  event.seen = true;\n  return event;\n}")
        await page.get_by_label("Expected output").fill('{"type": "track", "event": "Signed Up", "properties": {}}')
        await page.get_by_role("button", name="Activate").click()
        await expect(page.locator("#error")).to_contain_text("cannot be active")
    await page.get_by_label("Expected output").fill(
        '{"type": "track", "event": "Signed Up", "properties": {}, "seen": true}')
    await page.get_by_role("button", name="Activate").click()
    await expect(page.locator("#status")).to_contain_text("active")
    await expect(page.locator("#versions li")).to_have_count(2)
    await shoot(page, "transformations")


async def test_contracts_page_fault_at_its_line_and_violations_grouped(api, open_page, account):
    page, guard = await open_page(api.base_url)
    await sign_in(page, api, account)
    await page.get_by_role("link", name="Contracts").click()
    await ready(page)
    form = page.locator("#contract")
    await form.get_by_label("Name", exact=True).fill("Orders")
    await form.get_by_label("Event name").fill("Order Completed")
    schema = page.get_by_label("Schema")
    await schema.fill('{\n  "type": "object",\n  "properties": {\n    "total": {\n      "type": "nmber"\n    }\n  }\n}')
    with guard.expecting(422):
        await form.get_by_role("button", name="Save").click()
        await expect(page.locator("#fault")).to_contain_text("Line 5 (/properties/total/type)")
    await schema.fill('{\n  "type": "object",\n  "required": ["order_id"],\n  "properties": {\n'
                      '    "order_id": {"type": "string"},\n    "total": {"type": "number"}\n  }\n}')
    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#contract-title")).to_contain_text("Edit Orders")
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        source = (await http.post(account.url("/event-keys"), json={"name": "s"}, headers=account.headers)).json()
        batch = [{"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": "ten"}}
                 for _ in range(3)]
        assert (await http.post("/v1/batch", json={"batch": batch}, headers={"X-Write-Key": source["key"]})).status_code == 200
    await page.reload()
    await ready(page)
    groups = page.locator("#groups tbody")
    await expect(groups).to_contain_text("/properties/total")
    await expect(groups.locator("tr").filter(has_text="type_mismatch")).to_contain_text("3")
    await expect(groups.locator("tr").filter(has_text="required_missing")).to_contain_text("/properties/order_id")
    await expect(page.locator("#samples tbody tr")).to_have_count(6)
    await shoot(page, "contracts")


async def test_open_sign_up_is_rate_limited_per_ip_and_cookies_are_secure_over_https(settings, worker, tmp_path):
    """HEADWATER_SIGNUP=open: at most HEADWATER_SIGNUPS_PER_DAY workspaces a day from one address;
    behind a proxy that says https, the session cookie is Secure."""
    proxied = ApiProcess(settings, tmp_path, HEADWATER_SIGNUP="open", HEADWATER_SIGNUPS_PER_DAY="2")
    try:
        async with httpx.AsyncClient(base_url=proxied.base_url) as http:
            ip = f"10.77.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
            answers = []
            for i in range(3):
                response = await http.post("/console/sign-up", data={"workspace": f"Limited {uuid.uuid4().hex[:6]} {i}"},
                                           headers={"X-Forwarded-For": ip, "X-Forwarded-Proto": "https"})
                answers.append(response.status_code)
                if response.status_code == 201:
                    cookie = response.headers["set-cookie"]
                    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
            assert answers == [201, 201, 429]
            assert "Too many sign-ups" in response.text
            other = await http.post("/console/sign-up", data={"workspace": f"Elsewhere {uuid.uuid4().hex[:6]}"},
                                    headers={"X-Forwarded-For": "10.78.0.1"})
            assert other.status_code == 201 and "Secure" not in other.headers["set-cookie"]
    finally:
        proxied.stop()
