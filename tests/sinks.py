"""Fake third-party destinations for the forwarding tests: real HTTP/1.1 servers on 127.0.0.1,
in the test process, that record every request and answer as a test script says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from devstack.processes import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self):
        return orjson.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


Script = Callable[[Received], Reply | Awaitable[Reply]]


class Sink:
    """`script(request) -> Reply` decides each answer (default 200). `stop()` closes the port
    (connection refused), `start()` opens it again."""

    def __init__(self, script: Script | None = None) -> None:
        self.port = free_port()
        self.script = script or (lambda request: Reply())
        self.received: list[Received] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Sink:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def events(self) -> list[dict]:
        """Every event received, batches flattened, in arrival order (only 2xx-answered ones
        are what a receiver keeps, but a test usually wants what arrived)."""
        out = []
        for request in self.received:
            body = request.json()
            if isinstance(body, list):
                out.extend(body)
            elif isinstance(body, dict) and "batch" in body:
                out.extend(body["batch"])
            else:
                out.append(body)
        return out

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; received {len(self.received)} requests")
            await asyncio.sleep(0.02)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = Received(method, path, headers, body)
                self.received.append(request)
                reply = self.script(request)
                if asyncio.iscoroutine(reply):
                    reply = await reply
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                head = [f"HTTP/1.1 {reply.status} X", f"content-length: {len(reply.body)}",
                        *(f"{k}: {v}" for k, v in reply.headers.items())]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()
