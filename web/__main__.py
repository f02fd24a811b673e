"""`python -m web`: serve the API with hypercorn on HEADWATER_HOST:HEADWATER_PORT, stopping
gracefully on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config

from web.asgi import app, settings


async def main() -> None:
    # Everything imported so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, which otherwise walk it all and show up as latency spikes.
    gc.freeze()
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = 5
    config.accesslog = None  # the app logs one line per request itself
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


if __name__ == "__main__":
    asyncio.run(main())
