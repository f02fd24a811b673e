"""`/docs`: Swagger UI on `/openapi.json`, its assets served from the `swagger-ui-bundle`
package installed with Headwater, so the reference works offline and loads nothing from
another host."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

blueprint = Blueprint("docs", __name__, url_prefix="/docs")

PAGE = Path(__file__).parent / "static" / "docs"
ASSETS = Path(str(swagger_ui_path))


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
