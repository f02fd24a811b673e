"""Browsers send, in a real Chromium: a page served from another origin on 127.0.0.1 posts
with fetch, with sendBeacon on `pagehide`, with Segment's analytics.js and RudderStack's
JavaScript SDK (local copies from npm, told to fetch nothing from their CDNs), and with our
own JavaScript SDK; and /docs' "Authorize" then "Try it out" work for a master-key route and
an ingest route. Each page may talk to its own origin and Headwater's, nothing else."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest

from tests.browser import Site
from tests.conftest import ApiProcess, WorkspaceKey, holds_by, make_workspace
from tests.tools import BROWSER_PAGES, built_sdk, npm_packages


@pytest.fixture(scope="module")
def api(settings, worker, tmp_path_factory):
    process = ApiProcess(settings, tmp_path_factory.mktemp("browsers"), HEADWATER_STREAM_REQUESTS_PER_MINUTE="100000",
                         HEADWATER_TRUSTED_PROXIES="")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    served = Site(tmp_path_factory.mktemp("site"))
    yield served
    served.close()


@pytest.fixture
async def account(sessions) -> WorkspaceKey:
    return await make_workspace(sessions, "browser")


@pytest.fixture
async def write_key(api, account) -> str:
    async with api.client() as http:
        response = await http.post(account.url("/event-keys"), json={"name": "Web"}, headers=account.headers)
        return response.json()["key"]


async def events_of(api: ApiProcess, account: WorkspaceKey) -> list[dict]:
    async with api.client() as http:
        response = await http.get(account.url("/events?limit=1000"), headers=account.headers)
        return response.json()["data"]


async def arrive(api: ApiProcess, account: WorkspaceKey, names: set[str], within: float = 10) -> list[dict]:
    found: list[dict] = []

    async def arrived() -> bool:
        found[:] = await events_of(api, account)
        return names <= {e.get("event") or e.get("name") or e["type"] for e in found}

    await holds_by(time.monotonic() + within, arrived, f"events {sorted(names)} arriving")
    return found


async def test_fetch_from_another_origin(api, site, open_page, account, write_key):
    url = site.page("fetch.html", f"""<script type=module>
      const answer = await fetch({json.dumps(api.base_url + "/v1/track")}, {{
        method: "POST", headers: {{ "Content-Type": "application/json", "X-Write-Key": {json.dumps(write_key)} }},
        body: JSON.stringify({{ event: "Fetched", anonymousId: "a-1" }}) }});
      document.title = answer.status + " " + answer.headers.get("X-Request-Id");
    </script>""")
    page, _ = await open_page(site.origin, api.base_url)
    await page.goto(url)
    await page.wait_for_function("document.title.startsWith('200 ')")  # the answer is readable cross-origin
    await arrive(api, account, {"Fetched"})


async def test_send_beacon_on_pagehide(api, site, open_page, account, write_key):
    url = site.page("beacon.html", f"""<script type=module>
      addEventListener("pagehide", () => {{
        navigator.sendBeacon({json.dumps(f"{api.base_url}/v1/track?writeKey={write_key}")},
          JSON.stringify({{ event: "Left By Beacon", anonymousId: "a-1" }}));
        fetch({json.dumps(api.base_url + "/v1/page")}, {{ method: "POST", keepalive: true,
          headers: {{ "Content-Type": "text/plain" }},
          body: JSON.stringify({{ name: "Left By Keepalive", anonymousId: "a-1", writeKey: {json.dumps(write_key)} }}) }});
      }});
      document.title = "ready";
    </script>""")
    page, guard = await open_page(site.origin, api.base_url)
    await page.goto(url)
    await page.wait_for_function("document.title === 'ready'")
    guard.leave()
    await page.goto("about:blank")  # the page goes away: pagehide
    await arrive(api, account, {"Left By Beacon", "Left By Keepalive"})


async def test_segment_analytics_js(api, site, open_page, account, write_key):
    """The official analytics-next, loaded from a local copy, its settings inline (so it fetches
    nothing from Segment's CDN) and its apiHost pointed at Headwater."""
    packages = npm_packages(BROWSER_PAGES)
    shutil.copy(packages / "@segment/analytics-next/dist/umd/index.js", site.root / "analytics-next.js")
    host = api.base_url.removeprefix("http://") + "/v1"
    settings = {"integrations": {"Segment.io": {"apiKey": write_key, "apiHost": host, "protocol": "http"}},
                "metrics": {"sampleRate": 0}, "plan": {}}
    url = site.page("segment.html", f"""<script src="analytics-next.js"></script>
      <script type=module>
      const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
        {{ writeKey: {json.dumps(write_key)}, cdnSettings: {json.dumps(settings)}, cdnURL: location.origin }},
        {{ integrations: {{ "Segment.io": {{ apiHost: {json.dumps(host)}, protocol: "http" }} }} }});
      await analytics.identify("u-42", {{ plan: "pro" }});
      await analytics.track("Signed Up", {{ plan: "pro" }});
      await analytics.page("Pricing");
      document.title = "sent";
    </script>""")
    page, _ = await open_page(site.origin, api.base_url)
    await page.goto(url)
    await page.wait_for_function("document.title === 'sent'", timeout=15_000)
    events = await arrive(api, account, {"Signed Up", "Pricing", "identify"})
    track = next(e for e in events if e.get("event") == "Signed Up")
    assert track["user_id"] == "u-42" and track["properties"] == {"plan": "pro"}
    assert track["context"]["library"]["name"] == "analytics.js"


async def test_rudderstack_javascript_sdk(api, site, open_page, account, write_key):
    """RudderStack's v3 SDK, bundled build (plugins inside, so no plugin CDN), its source
    config given by `getSourceConfig` instead of fetched from RudderStack's control plane."""
    packages = npm_packages(BROWSER_PAGES)
    shutil.copy(packages / "@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js", site.root / "rudder.js")
    source_config = {"source": {"id": "headwater", "name": "Headwater", "workspaceId": "headwater", "enabled": True,
                                "config": {}, "destinations": []}}
    url = site.page("rudder.html", f"""<script src="rudder.js"></script>
      <script type=module>
      const analytics = new rudderanalytics.RudderAnalytics();
      analytics.load({json.dumps(write_key)}, {json.dumps(api.base_url)}, {{
        getSourceConfig: () => ({json.dumps(source_config)}),
        loadIntegration: false, destSDKBaseURL: location.origin, pluginsSDKBaseURL: location.origin,
        polyfillIfRequired: false, sendAdblockPage: false, consentManagement: {{ enabled: false }},
        queueOptions: {{ batch: {{ enabled: false }} }}, uaChTrackLevel: "none",
        onLoaded: () => {{
          analytics.identify("u-7", {{ plan: "team" }});
          analytics.track("Rudder Clicked", {{ button: "buy" }});
          document.title = "sent";
        }},
      }});
    </script>""")
    page, _ = await open_page(site.origin, api.base_url)
    await page.goto(url)
    await page.wait_for_function("document.title === 'sent'", timeout=15_000)
    events = await arrive(api, account, {"Rudder Clicked"})
    track = next(e for e in events if e.get("event") == "Rudder Clicked")
    assert track["user_id"] == "u-7" and track["properties"] == {"button": "buy"}


async def test_our_javascript_sdk_in_the_browser(api, site, open_page):
    """sdk/js as published, imported as an ES module: log + close, then the final flush on pagehide."""
    dist = built_sdk()
    shutil.copytree(dist, site.root / "sdk", dirs_exist_ok=True)
    token = str(uuid.uuid4())
    url = site.page("sdk.html", f"""<script type=module>
      import {{ stream }} from "./sdk/index.js";
      const audit = stream({{ baseUrl: {json.dumps(api.base_url)}, token: {json.dumps(token)}, flushIntervalMs: 60000 }});
      for (let i = 0; i < 3; i++)
        audit.log({{ action: "doc.viewed", category: "access", actor: {{ id: "u" + i, type: "user" }}, tenant_id: "acme" }});
      await audit.flush();
      audit.log({{ action: "doc.closed", category: "access", actor: {{ id: "u9", type: "user" }}, tenant_id: "acme" }});
      document.title = "queued " + (await audit.info()).event_count;
    </script>""")
    page, guard = await open_page(site.origin, api.base_url)
    await page.goto(url)
    await page.wait_for_function("document.title === 'queued 3'")
    guard.leave()
    await page.goto("about:blank")  # pagehide: the fourth goes with keepalive

    async def four() -> bool:
        async with api.client() as http:
            return (await http.get(f"/api/v1/streams/{token}/info")).json().get("event_count") == 4

    await holds_by(time.monotonic() + 10, four, "the pagehide flush")


async def test_swagger_authorize_and_try_it_out(api, open_page, account, write_key):
    page, _ = await open_page(api.base_url)
    await page.goto(api.base_url + "/docs")
    await page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    master = dialog.locator(".auth-container").filter(has_text="masterKey")
    await master.locator("input").fill(account.key)
    await master.locator("button.authorize").click()
    write = dialog.locator(".auth-container").filter(has_text="writeKeyHeader")
    await write.locator("input").fill(write_key)
    await write.locator("button.authorize").click()
    await dialog.locator("button.btn-done").first.click()

    async def try_it(operation_id: str, body: str | None = None) -> str:
        block = page.locator(f".opblock[id$='-{operation_id}']")
        await block.locator(".opblock-summary").first.click()
        await block.get_by_role("button", name="Try it out").click()
        if body is not None:
            await block.locator("textarea.body-param__text").fill(body)
        for field in await block.locator("tr[data-param-name='workspace_id'] input").all():
            await field.fill(account.id)
        await block.get_by_role("button", name="Execute").click()
        status = block.locator(".live-responses-table .response .response-col_status").first
        await status.wait_for()
        return (await status.inner_text()).strip()

    assert await try_it("post_ingest_track", json.dumps({"event": "Tried It Out", "anonymousId": "a-1"})) == "200"
    assert await try_it("get_list_sources") == "200"
    await arrive(api, account, {"Tried It Out"})
