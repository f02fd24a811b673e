"""`/docs` works offline: the page and every script, style and icon it loads are served by
Headwater from the installed swagger-ui-py package, and nothing points at another host."""

from __future__ import annotations

import re


async def test_the_docs_page_loads_only_what_headwater_serves(client):
    page = await client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = (await page.get_data()).decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4 and all(asset.startswith("/docs/") for asset in assets), assets
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        body = await response.get_data()
        assert body, asset
        if asset.endswith(".js"):
            assert response.mimetype in ("text/javascript", "application/javascript"), asset
    script = (await (await client.get("/docs/headwater.js")).get_data()).decode()
    assert '"/openapi.json"' in script and "http" not in script
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs/assets/../../settings.py")).status_code == 404
