"""HEADWATER_LOG_FORMAT=json: one JSON object per line, with the request id, the workspace and
the rule where the code knows them; the access log too. Text stays the default."""

from __future__ import annotations

import logging

import orjson

from settings import Settings
from telemetry import logs
from tests.conftest import ApiProcess


async def test_an_api_process_logs_json_lines(settings, worker, workspace, tmp_path):
    api = ApiProcess(settings, tmp_path, HEADWATER_LOG_FORMAT="json", HEADWATER_LOG_LEVEL="INFO")
    try:
        async with api.client() as http:
            listed = await http.get(f"/api/v1/workspaces/{workspace.id}/event-keys", headers=workspace.headers)
            source = (await http.post(f"/api/v1/workspaces/{workspace.id}/event-keys", json={"name": "logs"},
                                      headers=workspace.headers)).json()
            tracked = await http.post("/v1/track", json={"event": "logged", "userId": "u"},
                                      headers={"X-Write-Key": source["key"]})
            refused = await http.post("/v1/track", json={"event": "logged"})
    finally:
        api.stop()
    lines = [orjson.loads(line) for line in api.log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, api.log_path.read_text()[-2000:]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "headwater.access"}
    management = access[listed.headers["X-Request-Id"]]
    assert management["method"] == "GET" and management["status"] == 200 and management["workspace_id"] == workspace.id
    assert management["path"] == f"/api/v1/workspaces/{workspace.id}/event-keys" and management["duration_ms"] >= 0
    assert access[tracked.headers["X-Request-Id"]]["path"] == "/v1/track"  # the ingest lane's line
    assert access[refused.headers["X-Request-Id"]]["status"] == 401
    assert lines[0]["time"].endswith("Z")


def test_the_formatter_names_the_rule_and_keeps_text_the_default():
    assert Settings.model_fields["log_format"].default == "text"
    token = logs.rule_id.set("rule-1")
    try:
        record = logging.LogRecord("headwater.forwarding", logging.WARNING, __file__, 1, "held: %s", ("HTTP 503",), None)
        line = orjson.loads(logs.JSONFormatter().format(record))
    finally:
        logs.rule_id.reset(token)
    assert line == {"time": line["time"], "level": "warning", "logger": "headwater.forwarding",
                    "message": "held: HTTP 503", "rule_id": "rule-1"}
