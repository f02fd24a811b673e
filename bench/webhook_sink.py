"""Webhook sinks for bench/forward.py, in their own process: one HTTP/1.1 server per port,
answering 200 at once and recording, per event, the lag from the send time stamped in it
(`properties.sent_ns`) to its arrival. `GET /_stats` on any port answers every port's counts
and lags so far, and starts over.

    python -m bench.webhook_sink PORT [PORT ...]
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

from bench.stamps import send_times

stats: dict[int, dict] = {}


def record(port: int, body: bytes) -> None:
    now = time.time_ns()
    entry = stats.setdefault(port, {"events": 0, "requests": 0, "lags_ms": [], "last_ns": 0})
    entry["requests"] += 1
    entry["last_ns"] = now
    stamps = send_times(body)
    entry["lags_ms"].extend((now - sent) / 1e6 for sent in stamps)
    entry["events"] += len(stamps)


def take_stats() -> bytes:
    out = {str(port): {"events": s["events"], "requests": s["requests"], "lags_ms": s["lags_ms"],
                       "last_ns": s["last_ns"]} for port, s in stats.items()}
    stats.clear()
    return orjson.dumps(out)


def serve(port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _method, path, _ = line.split(b" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if path == b"/_stats":
                    payload = take_stats()
                else:
                    record(port, body)
                    payload = b"ok"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    return asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)


async def main_async(ports: list[int]) -> None:
    servers = [await serve(port) for port in ports]
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main_async([int(p) for p in sys.argv[1:]]))
