"""The API description, completed: quart-schema describes what the route decorators declare;
this adds, for every operation, its tag (one per resource), the security it takes, the error
answers it can give (all in the one error envelope), the bodies of the doors that read their
JSON themselves (`/v1/*`, the streams), and the formats of path parameters."""

from __future__ import annotations

import re
from typing import Any

from quart_schema.openapi import OpenAPIProvider

from models.canonical import AuditEventIn, EventType

# (path pattern, tag), first match wins.
TAGS = [
    (r"^/v1/", "Ingestion (Segment-compatible)"),
    (r"^/api/v1/streams", "Anonymous streams"),
    (r"^/api/v1/viewer|/viewer-tokens", "Customer viewer"),
    (r"/audit/", "Audit log"),
    (r"/events", "Events"),
    (r"/event-keys", "Event sources"),
    (r"/event-contracts", "Contracts"),
    (r"/event-transformations", "Transformations"),
    (r"/destinations", "Destinations"),
    (r"/event-forwarding-rules", "Forwarding rules"),
    (r"^/api/v1/workspaces", "Workspaces and master keys"),
    (r"", "Health"),
]
WRITE_KEY: list[dict[str, list[str]]] = [{"writeKeyHeader": []}, {"writeKeyBasic": []}, {"writeKeyQuery": []}]
MASTER_KEY: list[dict[str, list[str]]] = [{"masterKey": []}]
ERROR = {"$ref": "#/components/responses/Error"}
PATH_FORMATS = {"token": {"type": "string", "format": "uuid"},
                "event_id": {"type": "string", "pattern": "^evt_[0-9A-Z]{26}$"}}

SEGMENT_MESSAGE = {
    "type": "object", "additionalProperties": True,
    "description": "A Segment/RudderStack message; camelCase or snake_case field names. `user_id` or "
                   "`anonymous_id` is required; `track` needs `event`, `group` `group_id`, `alias` `previous_id`.",
    "properties": {
        "type": {"type": "string", "enum": [t.value for t in EventType]},
        "event": {"type": "string"}, "userId": {"type": "string"}, "anonymousId": {"type": "string"},
        "messageId": {"type": "string"}, "groupId": {"type": "string"}, "previousId": {"type": "string"},
        "properties": {"type": "object"}, "traits": {"type": "object"}, "context": {"type": "object"},
        "integrations": {"type": "object"}, "timestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"}, "writeKey": {"type": "string"},
    },
}


def _tag(path: str) -> str:
    return next(tag for pattern, tag in TAGS if re.search(pattern, path))


def _security(path: str, method: str) -> list[dict[str, list[str]]]:
    if path.startswith("/v1/"):
        return WRITE_KEY
    if path.startswith("/api/v1/viewer"):
        return [{"viewerToken": []}]
    if path == "/api/v1/workspaces" and method == "post":
        return [{"operatorToken": []}]
    if path.startswith("/api/v1/workspaces") or path == "/api/v1/streams/claim":
        return MASTER_KEY
    return []  # the anonymous streams, health


def _errors(path: str, method: str, security: list) -> dict[str, Any]:
    codes = ["400", "503"]
    if security:
        codes.append("401")
    if "{" in path or path == "/api/v1/streams/claim":
        codes.append("404")
    if method in ("post", "put"):
        codes += ["415", "422"]
    if method == "post" and path.startswith("/api/v1/"):
        codes.append("409")  # an Idempotency-Key still in use (and conflicts)
    if path.startswith(("/v1/", "/api/v1/streams")):
        codes += ["413", "429"]
    return dict.fromkeys(sorted(codes), ERROR)


def _body(path: str, schemas: dict[str, Any]) -> dict[str, Any] | None:
    if path == "/v1/batch":
        schema: dict[str, Any] = {"type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "maxItems": 2500, "items": SEGMENT_MESSAGE},
            "context": {"type": "object"}, "integrations": {"type": "object"},
            "sentAt": {"type": "string", "format": "date-time"}}}
    elif path.startswith("/v1/"):
        schema = SEGMENT_MESSAGE
    elif path.endswith("/events") and path.startswith("/api/v1/streams"):
        audit = AuditEventIn.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(audit.pop("$defs", {}))
        schemas["AuditEvent"] = audit
        event = {"$ref": "#/components/schemas/AuditEvent"}
        schema = {"oneOf": [event, {"type": "object", "required": ["events"], "additionalProperties": False,
                                    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 100,
                                                              "items": event}}}]}
    elif path == "/api/v1/streams/claim":
        schema = {"type": "object", "required": ["claim_token"],
                  "properties": {"claim_token": {"type": "string", "format": "uuid"}}}
    else:
        return None
    # text/plain too: what navigator.sendBeacon and fetch(…, {keepalive}) send.
    return {"required": True, "content": {"application/json": {"schema": schema}, "text/plain": {"schema": schema}}}


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {}).update({
        "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
        "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "the write key as the username"},
        "writeKeyQuery": {"type": "apiKey", "in": "query", "name": "writeKey"},
    })
    schemas["Error"] = {"type": "object", "required": ["error", "request_id"], "properties": {
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}},
        "request_id": {"type": "string"}}}
    components["responses"] = {"Error": {"description": "An error, in the one error envelope.", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
    # The API only: not the docs, nor the files of the console's and the viewer's pages.
    spec["paths"] = {path: item for path, item in spec["paths"].items()
                     if not path.startswith(("/docs", "/console/", "/viewer/"))}
    spec["tags"] = [{"name": tag} for _, tag in TAGS]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            security = _security(path, method)
            operation["tags"] = [_tag(path)]
            operation["security"] = security
            responses = operation["responses"] = {str(code): answer for code, answer
                                                   in operation.get("responses", {}).items()}
            if not any(code.startswith("2") for code in responses):
                responses["204" if method == "delete" else "200"] = {"description": "Done."}
            for code, error in _errors(path, method, security).items():
                responses.setdefault(code, error)
            if "requestBody" not in operation and (body := _body(path, schemas)) is not None:
                operation["requestBody"] = body
            parameters = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
            for name in re.findall(r"{(\w+)}", path):  # every id in a path is a UUID but an event's
                schema = PATH_FORMATS.get(name, {"type": "string", "format": "uuid"})
                parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
            operation["parameters"] = parameters
    return spec


# `<converter:name>` → `{name}`. quart-schema's own pattern lets the converter part run across
# an earlier `>`, which turns `/w/<workspace_id>/events/<event_id:event_id>` into `/w/{event_id}`.
_PATH_PARAMETER = re.compile(r"<(?:[^:<>]*:)?([^<>]+)>")


class HeadwaterOpenAPI(OpenAPIProvider):
    def build_paths(self, rule: Any) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        return {_PATH_PARAMETER.sub(r"{\1}", rule.rule): item for item in paths.values()}, components

    def schema(self) -> dict[str, Any]:
        return complete(super().schema())
