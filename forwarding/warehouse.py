"""The `postgres` destination: events loaded into tables of another Postgres, as Segment's
warehouses lay them out and as Jitsu's bulker loads them.

- Tables: with `table_per: event`, one per track event name (`order_completed`) plus
  `identifies`, `pages`, `screens`, `groups`, `aliases`, `audits`; with `type`, one per type
  (`tracks`, …). In the destination's `schema` (default `headwater`).
- Columns: the common fields (`id`, `message_id`, `received_at`, `timestamp`, `user_id`,
  `anonymous_id`, `source_id`, …); `properties` and `traits` flattened to columns of their own
  name, `context` and any other object with its name in front (`context_page_url`), nested
  levels joined with `_`; names in lowercase snake_case, cut to Postgres's 63 bytes with a hash
  so two long names never meet; and the whole event in `body` (jsonb), for what flattening lost.
- Types: inferred from the values (bigint, double precision, boolean, timestamptz for ISO-8601
  strings, text, jsonb for arrays). A value that does not fit its column's type goes into a
  column of its own named for its type (`price_text`), never failing the batch.
- A load: in one transaction per table, under an advisory lock on the table's name (two
  workers loading into one table take turns instead of deadlocking on its DDL): tables and
  columns added as the events need them, the rows COPYed into a temporary table, then
  `INSERT … SELECT … ON CONFLICT (id) DO NOTHING`, so a batch loaded twice (a worker killed
  mid-load, a retry) leaves no duplicate.
- Errors: connection trouble, deadlocks and the like are retried; what will not pass on retry
  (permission denied, a bad value) is permanent: the events become dead letters carrying the
  database's message.
"""

from __future__ import annotations

import functools
import hashlib
import re
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from forwarding.delivery import Answer, Delivery, Outcome

TYPE_TABLES = {"track": "tracks", "identify": "identifies", "page": "pages", "screen": "screens", "group": "groups",
               "alias": "aliases", "audit": "audits"}
BASE_COLUMNS = {"id": "text", "message_id": "text", "type": "text", "event": "text", "name": "text",
                "received_at": "timestamptz", "timestamp": "timestamptz", "original_timestamp": "timestamptz",
                "sent_at": "timestamptz", "user_id": "text", "anonymous_id": "text", "source_id": "text",
                "workspace_id": "text", "body": "jsonb"}
FLAT = ("properties", "traits")  # flattened to columns of their own name (Segment's warehouses)
SKIPPED = ("integrations",)
SUFFIX = {"text": "text", "bigint": "int", "double precision": "float", "boolean": "bool", "timestamptz": "ts",
          "jsonb": "json"}
# A column of the type on the left takes values inferred as those on the right.
TYPE_NAMES = {"timestamp with time zone": "timestamptz"}  # format_type's name → ours
ACCEPTS = {"text": {"text", "timestamptz"}, "double precision": {"double precision", "bigint"},
           "bigint": {"bigint"}, "boolean": {"boolean"}, "timestamptz": {"timestamptz"}, "jsonb": {"jsonb"}}
ISO_8601 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)?")
MAX_NAME_BYTES = 63
EXCERPT = 500


# --- names, flattening and types --------------------------------------------------------------

CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
NOT_NAME = re.compile(r"[^a-z0-9_]+")


@functools.lru_cache(maxsize=65_536)  # the same few names, event after event
def identifier(name: str) -> str:
    """lowercase snake_case, at most 63 bytes; a longer name keeps a hash of the whole, so
    two long names that share their first 54 bytes still differ."""
    snake = NOT_NAME.sub("_", CAMEL.sub("_", name).lower()).strip("_") or "_"
    if snake[0].isdigit():
        snake = "_" + snake
    if len(snake.encode()) > MAX_NAME_BYTES:
        snake = snake[:54] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return snake


def flatten(body: dict[str, Any]) -> dict[str, Any]:
    """An event's columns and values (None values left out: NULL needs no column)."""
    row: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                put(f"{prefix}_{key}" if prefix else key, inner)
        elif value is not None:
            row.setdefault(identifier(prefix), value)

    for key, value in body.items():
        if key in SKIPPED or key in BASE_COLUMNS:
            continue
        if key in FLAT and isinstance(value, dict):
            for inner_key, inner in value.items():  # a property named like a common field keeps its prefix
                put(f"{key}_{inner_key}" if identifier(inner_key) in BASE_COLUMNS else inner_key, inner)
        else:
            put(key, value)
    return row


def inferred(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -2**63 <= value < 2**63 else "double precision"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, str):
        if ISO_8601.fullmatch(value):
            try:
                datetime.fromisoformat(value)
                return "timestamptz"
            except ValueError:
                pass
        return "text"
    return "jsonb"


def as_text(value: Any) -> str:
    """The value as the text Postgres casts to its column's type."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(value).decode()


def table_of(body: dict[str, Any], table_per: str) -> str:
    kind = body.get("type", "track")
    if table_per == "event" and kind == "track":
        name = identifier(str(body.get("event") or body.get("name") or "track"))
        return f"track_{name}"[:MAX_NAME_BYTES] if name in TYPE_TABLES.values() else name
    return TYPE_TABLES.get(kind, identifier(str(kind)))


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def masked_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***` (what reads show)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- loading ---------------------------------------------------------------------------------

class WarehousePools:
    """One small asyncpg pool per DSN, for the worker's life."""

    def __init__(self) -> None:
        self._pools: dict[str, asyncpg.Pool] = {}

    async def get(self, dsn: str, timeout: float) -> asyncpg.Pool:
        pool = self._pools.get(dsn)
        if pool is None:
            pool = self._pools[dsn] = await asyncpg.create_pool(dsn, min_size=0, max_size=4, timeout=timeout,
                                                                command_timeout=max(timeout, 60))
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()


class WarehouseLoader:
    """A `postgres` destination's deliveries: each a batch of events loaded as the module says.
    The same interface as forwarding.delivery.Sender, so the engine treats it as any other."""

    def __init__(self, pools: WarehousePools, config: dict[str, Any]) -> None:
        self.pools, self.config = pools, config
        self.schema = config.get("schema", "headwater")
        self.table_per = config.get("table_per", "event")
        self.timeout = config.get("timeout_ms", 10_000) / 1000

    @property
    def url(self) -> str:
        """Where it loads, without the password (the private-address guard reads the host)."""
        return masked_dsn(self.config["dsn"])

    @property
    def host(self) -> str:
        return urlsplit(self.config["dsn"]).hostname or ""

    def group(self, event_ids: list[str], bodies: list[str], message_ids: list[str]) -> list[Delivery]:
        size = self.config.get("max_batch_size", 10_000)
        return [Delivery(event_ids[i:i + size], bodies[i:i + size], message_ids[i:i + size])
                for i in range(0, len(bodies), size)]

    async def send(self, delivery: Delivery) -> Answer:
        started = time.perf_counter()
        tables: dict[str, list[dict[str, Any]]] = {}
        for body_json, message_id in zip(delivery.bodies, delivery.message_ids, strict=True):
            body = orjson.loads(body_json)
            body["id"] = message_id  # a fanned-out event's copies: evt_….0, evt_….1
            tables.setdefault(table_of(body, self.table_per), []).append(body)
        try:
            pool = await self.pools.get(self.config["dsn"], self.timeout)
            async with pool.acquire(timeout=self.timeout) as conn:
                for table, events in tables.items():
                    await self._load(conn, table, events)
        except asyncpg.PostgresError as exc:
            return self._refused(exc, started)
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            return Answer(Outcome.RETRY, None, f"postgres: {type(exc).__name__}: {exc}"[:EXCERPT],
                          duration_ms=(time.perf_counter() - started) * 1000)
        return Answer(Outcome.DELIVERED, None, duration_ms=(time.perf_counter() - started) * 1000)

    @staticmethod
    def _refused(exc: asyncpg.PostgresError, started: float) -> Answer:
        state = getattr(exc, "sqlstate", "") or ""
        # 08 connection, 40 rollback (deadlock, serialization), 53 resources, 57 operator, 58 system: again later
        retry = state[:2] in ("08", "40", "53", "57", "58")
        return Answer(Outcome.RETRY if retry else Outcome.PERMANENT, None, f"postgres {state}: {exc}"[:EXCERPT],
                      duration_ms=(time.perf_counter() - started) * 1000)

    async def _load(self, conn: asyncpg.Connection, table: str, events: list[dict[str, Any]]) -> None:
        schema, target = quoted(self.schema), f"{quoted(self.schema)}.{quoted(table)}"
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{self.schema}.{table}")
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            columns = ", ".join(f"{quoted(name)} {kind}" for name, kind in BASE_COLUMNS.items() if name != "id")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {target} (id text PRIMARY KEY, {columns})")
            known = {row[0]: TYPE_NAMES.get(row[1], row[1]) for row in await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped", target)}
            rows, added = self._rows(events, known)
            for name, kind in added.items():
                await conn.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quoted(name)} {kind}")
            types = {**known, **added}
            names = sorted({name for row in rows for name in row})
            # Every value travels as text and Postgres casts it (in C): cheaper than Python
            # making each value the type the binary COPY wants.
            await conn.execute("CREATE TEMP TABLE _headwater_load ("
                               + ", ".join(f"{quoted(name)} text" for name in names) + ") ON COMMIT DROP")
            await conn.copy_records_to_table("_headwater_load", columns=names,
                                             records=[tuple(row.get(name) for name in names) for row in rows])
            listed = ", ".join(quoted(name) for name in names)
            cast = ", ".join(f"{quoted(name)}::{types[name]}" for name in names)
            await conn.execute(f"INSERT INTO {target} ({listed}) SELECT {cast} FROM _headwater_load "
                               "ON CONFLICT (id) DO NOTHING")

    @staticmethod
    def _rows(events: Iterable[dict[str, Any]], known: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Each event's row, with values as their columns take them; the columns to add."""
        columns = dict(known)
        added: dict[str, str] = {}
        rows = []
        for body in events:
            row = {name: as_text(body[name]) for name in BASE_COLUMNS if name != "body" and body.get(name) is not None}
            row["body"] = orjson.dumps(body).decode()
            for name, value in flatten(body).items():
                kind = inferred(value)
                column = name
                if column in columns and kind not in ACCEPTS.get(columns[column], ()):
                    column = identifier(f"{name}_{SUFFIX[kind]}")  # price_text: the type changed
                    if column in columns and kind not in ACCEPTS.get(columns[column], ()):
                        column, kind = identifier(f"{name}_text"), "text"
                if column not in columns:
                    columns[column] = added[column] = kind
                row[column] = as_text(value)
            rows.append(row)
        return rows, added
