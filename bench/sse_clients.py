"""N live-stream clients in one process, for bench/observe.py: each reads its SSE stream with
plain asyncio streams and records, per event, the lag from the send time stamped in the event
(`properties.sent_ns`) to its arrival. Prints one JSON line: lags, received and dropped counts.

    python -m bench.sse_clients PORT WORKSPACE_ID MASTER_KEY CLIENTS SECONDS
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from bench.stamps import send_times


async def client(port: int, path: str, key: str, seconds: float, lags: list[float], counts: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    deadline = time.monotonic() + seconds
    buffer = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            now_ns = time.time_ns()
            buffer += chunk
            *messages, buffer = buffer.split(b"\n\n")
            for message in messages:
                stamps = send_times(message)
                if stamps:
                    lags.extend((now_ns - sent) / 1e6 for sent in stamps)
                    counts["received"] += len(stamps)
                elif b"event: dropped" in message:
                    counts["dropped"] += orjson.loads(message.split(b"data: ", 1)[1])["count"]
    finally:
        writer.close()


async def main_async(port: int, workspace_id: str, key: str, clients: int, seconds: float) -> None:
    lags: list[float] = []
    counts = {"received": 0, "dropped": 0}
    path = f"/api/v1/workspaces/{workspace_id}/events/live?types=track"
    await asyncio.gather(*(client(port, path, key, seconds, lags, counts) for _ in range(clients)))
    print(orjson.dumps({"lags_ms": lags, **counts}).decode())


if __name__ == "__main__":
    port, workspace_id, key, clients, seconds = sys.argv[1:6]
    asyncio.run(main_async(int(port), workspace_id, key, int(clients), float(seconds)))
