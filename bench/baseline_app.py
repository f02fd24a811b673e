"""The ingest benchmark's baseline: a minimal Quart app that parses the JSON body and does
one INSERT per request (asyncpg pool), served by hypercorn like Headwater.

    DATABASE_URL=... python -m bench.baseline_app PORT
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import asyncpg
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, request

from settings import get_settings

app = Quart("baseline")
pool: asyncpg.Pool | None = None


@app.before_serving
async def connect() -> None:
    global pool  # noqa: PLW0603 — the baseline is meant to be the plainest app
    url = get_settings().database_url
    pool = await asyncpg.create_pool(url, min_size=10, max_size=10)
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_baseline (id bigserial PRIMARY KEY, body jsonb NOT NULL)")


@app.post("/v1/track")
async def track():
    body = await request.get_json()
    await pool.execute("INSERT INTO bench_baseline (body) VALUES ($1)", json.dumps(body))
    return {"success": True}


async def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
