"""A small HTTP/1.1 load generator (raw asyncio sockets, keep-alive), run as its own process.

    python -m bench.loadgen URL --body FILE [--header K:V] --connections 64 --seconds 10 [--rate R]

Closed loop (default): each connection sends the next request when the last one answers.
Open loop (--rate): requests are scheduled at a fixed rate and latency is measured from the
scheduled time, so a stalled server shows up in the percentiles (no coordinated omission).
Prints one JSON line: requests, errors, seconds, rps, p50/p90/p99/max latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *headers, "", ""]
    return parts.hostname, parts.port, "\r\n".join(lines).encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, body: bytes, headers: list[str], connections: int, seconds: float,
              rate: float | None) -> dict:
    host, port, request = build_request(url, body, headers)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    queue: asyncio.Queue[float] | None = asyncio.Queue() if rate else None

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                if queue is not None:
                    scheduled = await queue.get()
                    if scheduled < 0:
                        return
                else:
                    scheduled = time.perf_counter()
                    if scheduled >= deadline:
                        return
                writer.write(request)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - scheduled)
                if status >= 300:
                    errors += 1
        finally:
            writer.close()

    async def scheduler() -> None:
        assert queue is not None and rate
        started = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < deadline:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            queue.put_nowait(due)
            n += 1
        for _ in range(connections):
            queue.put_nowait(-1.0)

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    if queue is not None:
        tasks.append(asyncio.create_task(scheduler()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 2) if latencies else 0.0

    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": pct(0.50), "p90_ms": pct(0.90),
            "p99_ms": pct(0.99), "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        body = f.read()
    result = asyncio.run(run(args.url, body, args.header, args.connections, args.seconds, args.rate))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
