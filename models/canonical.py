"""The canonical event: one stored form for every event, whatever front door it came in by.

`normalize()` turns a Segment/RudderStack wire message (camelCase or snake_case) into it:

    {"id", "type", "name", "workspace_id", "source_id", "message_id", "user_id",
     "anonymous_id", "event" | "properties" | "traits" | "group_id" | "previous_id",
     "context", "integrations", "timestamp", "original_timestamp", "sent_at", "received_at"}

Audit events (stream fields: action, category, actor, tenant_id, target, metadata) have their
own shape, built by `audit_body()`. Pure functions: no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
)

from models.timestamps import iso, parse_iso


class EventType(StrEnum):
    """Every type of event Headwater stores: Segment's six, and audit events. The one list."""

    TRACK = "track"
    IDENTIFY = "identify"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"
    AUDIT = "audit"


EVENT_TYPES = tuple(EventType)
SEGMENT_TYPES = tuple(t for t in EventType if t is not EventType.AUDIT)
MAX_EVENT_BYTES = 32 * 1024
MAX_NAME_LENGTH = 512
MAX_ID_LENGTH = 512

# Segment's camelCase names and ours. Either is accepted; the canonical form is snake_case.
ALIASES = {
    "userId": "user_id", "anonymousId": "anonymous_id", "messageId": "message_id", "groupId": "group_id",
    "previousId": "previous_id", "sentAt": "sent_at", "originalTimestamp": "original_timestamp",
}
# Accepted on the way in, not stored as given (the server sets or derives these).
IGNORED = {"writeKey", "write_key", "receivedAt", "received_at", "_metadata", "channel", "version", "id",
           "workspace_id", "source_id"}


CATEGORIES = ("auth", "access", "mutation", "admin", "security", "system")
ACTION_PATTERN = r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$"
METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8
CLAIM_WAIT_SECONDS = 30

Text256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Text256
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Text256 | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Text256 | None = None
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    name: Text256 | None = None


class AuditEventIn(BaseModel):
    """One audit event as an SDK sends it."""

    model_config = ConfigDict(extra="forbid")
    action: Annotated[str, StringConstraints(max_length=128, pattern=ACTION_PATTERN)]
    category: Literal["auth", "access", "mutation", "admin", "security", "system"]
    actor: Actor
    tenant_id: Text256
    target: Target | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: Text256 | None = None

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if _depth(value) > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata nests deeper than {METADATA_MAX_DEPTH} levels")
        if len(orjson.dumps(value)) > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is larger than {METADATA_MAX_BYTES} bytes as JSON")
        return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class EventRejected(Exception):
    """One event is invalid. `code` and `message` go back to the caller (as a per-event
    rejection in a batch, or as the error of a single-event request)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(slots=True)
class CanonicalEvent:
    """A normalized event: its canonical JSON body, and what the ingest path reads beside it
    (the group commit reads the row's columns out of the body itself)."""

    id: str
    workspace_id: uuid.UUID
    source_id: uuid.UUID | None
    type: str
    name: str | None
    message_id: str | None
    received_at: datetime
    body: dict[str, Any]


def _rename(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in IGNORED:
            continue
        name = ALIASES.get(key, key)
        if name in out and out[name] not in (None, "") and key in ALIASES:
            continue  # both spellings given: the snake_case one wins
        out[name] = value
    return out


def _identifier(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EventRejected("validation_failed", f"{field} must be a string", field)
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise EventRejected("validation_failed", f"{field} is longer than {MAX_ID_LENGTH} characters", field)
    return text


def _object(message: dict[str, Any], field: str) -> dict[str, Any] | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EventRejected("validation_failed", f"{field} must be an object", field)
    return value


def _string(message: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = message.get(field)
    if value is None or value == "":
        if required:
            raise EventRejected("validation_failed", f"{field} is required", field)
        return None
    if not isinstance(value, str):
        raise EventRejected("validation_failed", f"{field} must be a string", field)
    if len(value) > MAX_NAME_LENGTH:
        raise EventRejected("validation_failed", f"{field} is longer than {MAX_NAME_LENGTH} characters", field)
    return value


def _time(message: dict[str, Any], field: str) -> datetime | None:
    value = message.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventRejected("validation_failed", f"{field} must be an ISO 8601 string", field)
    try:
        return parse_iso(value)
    except ValueError:
        raise EventRejected("validation_failed", f"{field} is not an ISO 8601 timestamp", field) from None


def event_time(received_at: datetime, client_time: datetime | None, sent_at: datetime | None) -> datetime:
    """The event's time. With `sentAt`, the client's clock skew is removed:
    timestamp = received_at - (sent_at - client timestamp)."""
    if client_time is None:
        return received_at
    if sent_at is None:
        return client_time
    try:
        return received_at - (sent_at - client_time)
    except OverflowError:  # e.g. sentAt in the year 6427: no clock is that far off
        raise EventRejected("validation_failed", "sentAt and timestamp are too far apart to correct the client's "
                            "clock (the corrected time would fall outside years 1-9999)", "sentAt") from None


@dataclass(frozen=True)
class Arrival:
    """Where and when a request's events arrived: the same for every event of a batch, so
    its string forms are computed once per request, not once per event."""

    workspace_id: uuid.UUID
    source_id: uuid.UUID | None
    received_at: datetime
    client_ip: str | None
    envelope: dict[str, Any] | None = None  # a batch's `context`, `integrations`, `sentAt`
    workspace: str = field(init=False)
    source: str | None = field(init=False)
    received: str = field(init=False)
    inherited: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: computed once here
        set_(self, "workspace", str(self.workspace_id))
        set_(self, "source", str(self.source_id) if self.source_id else None)
        set_(self, "received", iso(self.received_at))
        set_(self, "inherited", _rename(self.envelope or {}))


def normalize(message: dict[str, Any], *, event_type: str | None, event_id: str, arrival: Arrival) -> CanonicalEvent:
    """Validate one wire message and build its canonical form. Raises EventRejected.

    `event_type` is fixed by the endpoint (`/v1/track` …) or None to take it from the body.
    Items of a batch inherit its envelope's `context`, `integrations` and `sentAt`.
    """
    if not isinstance(message, dict):
        raise EventRejected("validation_failed", "an event must be a JSON object")
    if len(orjson.dumps(message)) > MAX_EVENT_BYTES:
        raise EventRejected("event_too_large", f"an event may be at most {MAX_EVENT_BYTES // 1024} KB")
    raw = _rename(message)
    kind = event_type or raw.get("type")
    if kind not in EVENT_TYPES:
        raise EventRejected("validation_failed", f"type must be one of {', '.join(EVENT_TYPES)}", "type")
    envelope = arrival.inherited
    workspace_id, source_id, received_at = arrival.workspace_id, arrival.source_id, arrival.received_at

    context = _object(raw, "context")
    inherited = _object(envelope, "context") or {}
    context = {**inherited, **(context or {})}
    if arrival.client_ip and "ip" not in context:
        context["ip"] = arrival.client_ip
    integrations = {**(_object(envelope, "integrations") or {}), **(_object(raw, "integrations") or {})}

    message_id = _identifier(raw, "message_id") or event_id  # unique, and cheaper than a uuid4
    original = _time(raw, "timestamp") or _time(raw, "original_timestamp")
    sent_at = _time(raw, "sent_at") or _time(envelope, "sent_at")
    timestamp = event_time(received_at, original, sent_at)
    common = {
        "id": event_id, "type": kind, "workspace_id": arrival.workspace, "source_id": arrival.source,
        "message_id": message_id,
    }
    times = {"timestamp": arrival.received if timestamp is received_at else iso(timestamp),
             "original_timestamp": iso(original), "sent_at": iso(sent_at),
             "received_at": arrival.received}

    if kind == "audit":
        return _audit(raw, common, times, context, integrations, received_at, workspace_id, source_id)

    user_id = _identifier(raw, "user_id")
    anonymous_id = _identifier(raw, "anonymous_id")
    if user_id is None and anonymous_id is None:
        raise EventRejected("validation_failed", "user_id or anonymous_id is required", "user_id")
    if kind == "track":  # most events: built directly in jsonb's key order (see _jsonb_key_order)
        name = _string(raw, "event", required=True)
        body = {"id": event_id, "name": name, "type": kind, "event": name, "context": context,
                "sent_at": times["sent_at"], "user_id": user_id, "source_id": arrival.source,
                "timestamp": times["timestamp"], "message_id": message_id,
                "properties": _object(raw, "properties") or {}, "received_at": arrival.received,
                "anonymous_id": anonymous_id, "integrations": integrations, "workspace_id": arrival.workspace,
                "original_timestamp": times["original_timestamp"]}
    else:
        body = {**common, "name": None, "user_id": user_id, "anonymous_id": anonymous_id}
        if kind in ("page", "screen"):
            body["name"] = _string(raw, "name")
            body["category"] = _string(raw, "category")
            body["properties"] = _object(raw, "properties") or {}
        elif kind == "identify":
            # RudderStack's SDKs send identify traits in context.traits; Segment's at the root.
            body["traits"] = _object(raw, "traits") or _object(context, "traits") or {}
        elif kind == "group":
            body["group_id"] = _identifier(raw, "group_id")
            if body["group_id"] is None:
                raise EventRejected("validation_failed", "group_id is required", "group_id")
            body["traits"] = _object(raw, "traits") or {}
        elif kind == "alias":
            body["previous_id"] = _identifier(raw, "previous_id")
            if body["previous_id"] is None:
                raise EventRejected("validation_failed", "previous_id is required", "previous_id")
        body.update(context=context, integrations=integrations, **times)
        body = {key: body[key] for key in sorted(body, key=_jsonb_key_order)}
    event_name = body["name"]
    assert event_name is None or isinstance(event_name, str)
    return CanonicalEvent(event_id, workspace_id, source_id, kind, event_name, message_id, received_at, body)


# jsonb keeps an object's keys sorted by length, then bytes, and sorts every object it parses:
# a body whose keys already come in that order costs Postgres's group commit one pass of
# comparisons instead of a sort (measured: the sort was 7% of the statement's time).
def _jsonb_key_order(key: str) -> tuple[int, str]:
    return len(key), key


def _audit(raw: dict[str, Any], common: dict[str, Any], times: dict[str, Any], context: dict[str, Any],
           integrations: dict[str, Any], received_at: datetime, workspace_id: uuid.UUID,
           source_id: uuid.UUID | None) -> CanonicalEvent:
    fields = {k: v for k, v in raw.items()
              if k not in ("type", "message_id", "timestamp", "original_timestamp", "sent_at", "context",
                           "integrations")}
    try:
        audit = AuditEventIn.model_validate(fields).model_dump(exclude_none=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise EventRejected("validation_failed", f"{field}: {first['msg']}", field) from None
    body = {**common, **audit_body(audit), "context": context, "integrations": integrations, **times}
    return CanonicalEvent(id=common["id"], workspace_id=workspace_id, source_id=source_id, type="audit",
                          name=audit["action"], message_id=common["message_id"], received_at=received_at, body=body)


def audit_body(event: dict[str, Any]) -> dict[str, Any]:
    """The audit-specific part of the canonical form."""
    return {
        "name": event["action"],
        "action": event["action"],
        "category": event["category"],
        "actor": event["actor"],
        "tenant_id": event["tenant_id"],
        "target": event.get("target"),
        "metadata": event.get("metadata") or {},
        "idempotency_key": event.get("idempotency_key"),
    }
