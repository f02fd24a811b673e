"""`/docs`: Swagger UI on `/openapi.json`, its assets served from the `swagger-ui-py`
package installed with Headwater, so the reference works offline and loads nothing from
another host.

The assets come from `swagger-ui-py`, which ships Swagger UI 5: our description is OpenAPI 3.1,
and Swagger UI 4 (what `swagger-ui-bundle` ships) refuses to render 3.1 ("does not specify a
valid version field"). We use its static files only, not its framework glue."""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from quart import Blueprint, Response, send_from_directory

blueprint = Blueprint("docs", __name__, url_prefix="/docs")

PAGE = Path(__file__).parent / "static" / "docs"
ASSETS = Path(swagger_ui.__file__).parent / "static"


@blueprint.get("")
async def docs_page() -> Response:
    return await send_from_directory(PAGE, "index.html")


@blueprint.get("/headwater.js")
async def docs_script() -> Response:
    return await send_from_directory(PAGE, "headwater.js")


@blueprint.get("/assets/<path:name>")
async def docs_asset(name: str) -> Response:
    response = await send_from_directory(ASSETS, name)
    response.cache_control.max_age = 86_400
    return response
