"""Forwarding rules (`/api/v1/workspaces/{id}/event-forwarding-rules`, master key): CRUD with
live stats, replay, dead letters and their redrive, recent delivery attempts.

Each enabled rule has one long-lived workflow, `forward-{rule_id}` (workflows/forwarding.py):
creating or enabling a rule starts it, disabling or deleting ends it. If Temporal does not
answer within `CONTROL_BUDGET_SECONDS` the rule is still saved and the answer says
`"workflow": "pending"`; the worker's reconciler starts it within a minute.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_response
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy

from models.canonical import EventType
from models.forwarding import (
    DeadLetter,
    DeadLetterFilter,
    DeliveryAttempt,
    ForwardingRepository,
    ForwardingRule,
    RuleStats,
)
from models.paging import decode_seq_cursor
from models.timestamps import iso
from models.transformations import ACTIVE, TransformationRepository
from orchestration.forwarding import start_forwarding, stop_forwarding
from web.auth import master_key_for_workspace, parse_uuid
from web.errors import APIError
from web.jsonio import (
    IsoDateTime,
    PageQuery,
    decoded_cursor,
    json_body,
    parse_created_page,
    parse_query,
    reject_nulls,
)
from web.responses import json_response
from web.services import Services, TemporalUnavailable, services
from workflows.params import RedriveInput, ReplayInput
from workflows.redrive import RedriveWorkflow
from workflows.replay import ReplayWorkflow

log = logging.getLogger("headwater.web")

blueprint = Blueprint("forwarding_rules", __name__,
                      url_prefix="/api/v1/workspaces/<workspace_id>/event-forwarding-rules")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class CreateRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    destination_id: uuid.UUID
    event_types: list[EventType] = Field(default_factory=list, max_length=10)  # empty: all
    event_names: list[EventName] = Field(default_factory=list, max_length=500)  # empty: all
    transformation_id: uuid.UUID | None = None
    enabled: bool = True


class UpdateRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    destination_id: uuid.UUID | None = None
    event_types: list[EventType] | None = Field(default=None, max_length=10)
    event_names: list[EventName] | None = Field(default=None, max_length=500)
    transformation_id: uuid.UUID | None = None
    enabled: bool | None = None


class WorkflowState(StrEnum):
    """What a create or update did to the rule's workflow, as its answer says."""

    RUNNING = "running"  # started, or was already running
    STOPPED = "stopped"  # asked to end after its batch in flight
    PENDING = "pending"  # Temporal did not answer in time: the worker's reconciler starts it (or
    #                      a disabled rule's workflow ends itself at its next batch)


class RuleStatsOut(BaseModel):
    healthy: bool  # not held, and the last thing that happened was a delivery, not an error
    delivered: int
    dead_lettered: int  # dead letters now (a redrive takes them back)
    dead_lettered_total: int  # ever
    pending: int
    lag_seconds: float  # how long the oldest event still to deliver has been waiting
    last_error: str | None
    last_error_at: str | None
    last_delivered_at: str | None


class RuleOut(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    destination_id: uuid.UUID
    event_types: list[str]
    event_names: list[str]
    transformation_id: uuid.UUID | None
    enabled: bool
    stats: RuleStatsOut
    created_at: str
    updated_at: str
    # In the answers of create and of an update that sets `enabled`: running, stopped, or
    # pending (Temporal did not answer in time; the reconciler catches up within a minute).
    workflow: WorkflowState | None = None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: IsoDateTime


class DeadLetterMatch(BaseModel):
    """Which dead letters: the last status code, text in the error or response excerpt
    (case-insensitive), a range of the last attempt. Nothing given: all of them."""

    model_config = ConfigDict(extra="forbid")
    status: int | None = Field(default=None, ge=100, le=599)
    error: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None

    def filter(self) -> DeadLetterFilter:
        return DeadLetterFilter(status=self.status, error=self.error, since=self.since, until=self.until)


class DeadLetterQuery(DeadLetterMatch):
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None


class RedriveRequest(DeadLetterMatch):
    """`{"ids": [...]}` (dead letter ids or event ids), or a filter: every dead letter that
    matches it, not only a page of them."""

    ids: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(default=None,
                                                                                          max_length=10_000)


class RecentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=1000)


def rule_not_found() -> APIError:
    return APIError(404, "rule_not_found", "No such forwarding rule.")


def rule_json(rule: ForwardingRule, stats: RuleStats) -> dict[str, Any]:
    return {
        "id": str(rule.id), "workspace_id": str(rule.workspace_id), "name": rule.name,
        "destination_id": str(rule.destination_id), "event_types": rule.event_types, "event_names": rule.event_names,
        "transformation_id": str(rule.transformation_id) if rule.transformation_id else None, "enabled": rule.enabled,
        "stats": {"healthy": stats.healthy, "delivered": stats.delivered, "dead_lettered": stats.dead_lettered,
                  "dead_lettered_total": stats.dead_lettered_total, "pending": stats.pending,
                  "lag_seconds": stats.lag_seconds, "last_error": stats.last_error,
                  "last_error_at": iso(stats.last_error_at), "last_delivered_at": iso(stats.last_delivered_at)},
        "created_at": iso(rule.created_at), "updated_at": iso(rule.updated_at),
    }


async def with_stats(session: AsyncSession, rule: ForwardingRule) -> dict[str, Any]:
    stats = await ForwardingRepository(session).stats([rule])
    return rule_json(rule, stats[rule.id])


async def check_references(session: AsyncSession, workspace_id: uuid.UUID, destination_id: uuid.UUID | None,
                           transformation_id: uuid.UUID | None) -> None:
    """The destination and the transformation must be this workspace's; the transformation active."""
    if destination_id is not None and await ForwardingRepository(session).destination(workspace_id, destination_id) is None:
        raise APIError(422, "destination_not_found", "destination_id is not a destination of this workspace.",
                       [{"field": "destination_id", "message": "no such destination in this workspace"}])
    if transformation_id is not None:
        transformation = await TransformationRepository(session).get(workspace_id, transformation_id)
        if transformation is None or transformation.status != ACTIVE:
            raise APIError(422, "transformation_not_active", "transformation_id must be an active transformation of "
                           "this workspace.", [{"field": "transformation_id",
                                                "message": "not found" if transformation is None
                                                else f"status is {transformation.status}"}])


async def run_or_stop(svc: Services, rule: ForwardingRule) -> WorkflowState:
    """Start or stop the rule's workflow to match `enabled`, waiting for Temporal at most
    `CONTROL_BUDGET_SECONDS`: the rule is saved either way, and what happened is said."""
    try:
        if rule.enabled:
            await svc.temporal.run(lambda client: start_forwarding(client, svc.settings, rule.id, rule.workspace_id))
            return WorkflowState.RUNNING
        await svc.temporal.run(lambda client: stop_forwarding(client, rule.id))
        return WorkflowState.STOPPED
    except TemporalUnavailable as exc:
        log.warning("Temporal unavailable (%s): rule %s saved; its workflow follows when Temporal is back", exc,
                    rule.id)
        return WorkflowState.PENDING


async def _get(session: AsyncSession, workspace_id: uuid.UUID, rule_id: str, *, for_update: bool = False) -> ForwardingRule:
    rule = await ForwardingRepository(session).rule(workspace_id, parse_uuid(rule_id, rule_not_found()),
                                                    for_update=for_update)
    if rule is None:
        raise rule_not_found()
    return rule


@blueprint.get("")
@master_key_for_workspace
@document_querystring(PageQuery)
async def list_rules(workspace_id: uuid.UUID) -> Response:
    """The workspace's rules with their stats, oldest first, keyset-paginated."""
    query, after = parse_created_page()
    async with services().transaction() as session:
        repository = ForwardingRepository(session)
        rules, next_cursor = await repository.rules(workspace_id, query.limit, after)
        stats = await repository.stats(rules)
    return json_response({"data": [rule_json(rule, stats[rule.id]) for rule in rules], "next_cursor": next_cursor})


@blueprint.post("")
@master_key_for_workspace
@json_body(CreateRule)
@document_response(RuleOut, 201)
async def create_rule(workspace_id: uuid.UUID, body: CreateRule) -> Response:
    """Create a rule; it forwards events committed after its creation (`replay` sends older ones)."""
    svc = services()
    async with svc.transaction() as session:
        await check_references(session, workspace_id, body.destination_id, body.transformation_id)
        repository = ForwardingRepository(session)
        rule = await repository.add(ForwardingRule(
            id=uuid.uuid4(), workspace_id=workspace_id, cursor_xid=await repository.horizon(), cursor_id="",
            head_attempts=0, delivered=0, dead_lettered=0, **body.model_dump()))
        out = await with_stats(session, rule)
    out["workflow"] = await run_or_stop(svc, rule)
    return json_response(out, 201)


@blueprint.get("/<rule_id>")
@master_key_for_workspace
@document_response(RuleOut)
async def get_rule(workspace_id: uuid.UUID, rule_id: str) -> Response:
    async with services().transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
        return json_response(await with_stats(session, rule))


@blueprint.put("/<rule_id>")
@master_key_for_workspace
@json_body(UpdateRule)
@document_response(RuleOut)
async def update_rule(workspace_id: uuid.UUID, rule_id: str, body: UpdateRule) -> Response:
    """Change any fields; the rule's next batch uses them. `enabled` starts or ends its workflow."""
    changes = body.model_dump(exclude_unset=True)
    reject_nulls(changes, ("name", "destination_id", "event_types", "event_names", "enabled"))
    svc = services()
    async with svc.transaction() as session:
        rule = await _get(session, workspace_id, rule_id, for_update=True)
        await check_references(session, workspace_id, changes.get("destination_id"), changes.get("transformation_id"))
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.updated_at = datetime.now(UTC)
        await session.flush()
        out = await with_stats(session, rule)
    if "enabled" in changes:
        out["workflow"] = await run_or_stop(svc, rule)
    return json_response(out)


@blueprint.delete("/<rule_id>")
@master_key_for_workspace
async def delete_rule(workspace_id: uuid.UUID, rule_id: str) -> Response:
    """Delete a rule with its retries, dead letters and attempt log; its workflow ends."""
    svc = services()
    async with svc.transaction() as session:
        rule = await _get(session, workspace_id, rule_id, for_update=True)
        await ForwardingRepository(session).delete_rule(rule)
    try:
        await svc.temporal.run(lambda client: stop_forwarding(client, rule.id))
    except TemporalUnavailable:
        pass  # the workflow finds its rule gone at its next batch and ends
    return Response(status=204)


def request_workflow_id(kind: str, rule: ForwardingRule, body: BaseModel) -> str:
    """`{kind}-{rule id}-{digest}`, the digest of the request (its Idempotency-Key if it has
    one, else its body): a retried POST joins the workflow the first one started."""
    key = request.headers.get("Idempotency-Key") or body.model_dump_json()
    return f"{kind}-{rule.id}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


async def _start(svc: Services, workflow_run: Any, params: Any, workflow_id: str) -> None:
    """Start (or join, if it runs) `workflow_id`; nothing is saved otherwise, so Temporal away is a 503."""
    try:
        await svc.temporal.run(lambda client: client.start_workflow(
            workflow_run, params, id=workflow_id, task_queue=svc.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING))
    except TemporalUnavailable:
        raise APIError(503, "temporal_unavailable", "The workflow service is unavailable; nothing was started. "
                       "Try again shortly.", headers={"Retry-After": "5"}) from None


@blueprint.post("/<rule_id>/replay")
@master_key_for_workspace
@json_body(ReplayRequest)
async def replay(workspace_id: uuid.UUID, rule_id: str, body: ReplayRequest) -> Response:
    """Re-send the rule's matching events received since `since` (a backfill, in commit order,
    up to where the rule stands now). Runs as a workflow; answers 202 with its id."""
    svc = services()
    async with svc.transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
    workflow_id = request_workflow_id("replay", rule, body)
    await _start(svc, ReplayWorkflow.run, ReplayInput(rule_id=str(rule.id), since=body.since.isoformat(),
                                                      upper_xid=rule.cursor_xid, upper_id=rule.cursor_id), workflow_id)
    return json_response({"workflow_id": workflow_id, "since": iso(body.since)}, 202)


def dead_letter_json(d: DeadLetter) -> dict[str, Any]:
    return {"id": str(d.id), "event_id": d.event_id, "attempts": d.attempts, "last_status": d.last_status,
            "response_excerpt": d.response_excerpt, "error": d.error, "first_attempt_at": iso(d.first_attempt_at),
            "last_attempt_at": iso(d.last_attempt_at)}


@blueprint.get("/<rule_id>/dead-letters")
@master_key_for_workspace
@document_querystring(DeadLetterQuery)
async def dead_letters(workspace_id: uuid.UUID, rule_id: str) -> Response:
    """Events given up on, newest first, keyset-paginated; filtered by `status`, `error` (text
    in the error or the response), `since`/`until` (the last attempt)."""
    query: DeadLetterQuery = parse_query(DeadLetterQuery)
    before = decoded_cursor(query.cursor, decode_seq_cursor)
    async with services().transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
        rows, next_cursor = await ForwardingRepository(session).dead_letters(rule.id, query.limit, before,
                                                                             query.filter())
    return json_response({"data": [dead_letter_json(d) for d in rows], "next_cursor": next_cursor})


class CountOut(BaseModel):
    count: int
    request_id: str


@blueprint.get("/<rule_id>/dead-letters/count")
@master_key_for_workspace
@document_querystring(DeadLetterMatch)
@document_response(CountOut)
async def count_dead_letters(workspace_id: uuid.UUID, rule_id: str) -> Response:
    """How many dead letters match the filter: what a redrive with the same filter would send."""
    query: DeadLetterMatch = parse_query(DeadLetterMatch)
    async with services().transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
        count = await ForwardingRepository(session).count_dead_letters(rule.id, query.filter())
    return json_response({"count": count})


@blueprint.post("/<rule_id>/dead-letters/redrive")
@master_key_for_workspace
@json_body(RedriveRequest, optional=True)
async def redrive(workspace_id: uuid.UUID, rule_id: str, body: RedriveRequest) -> Response:
    """Send dead letters again: all, `{"ids": [...]}` (dead letter ids or event ids), or every one
    matching a filter (`status`, `error`, `since`, `until`, as the list takes them). Runs as a
    workflow; answers 202 with its id."""
    svc = services()
    if body.ids is not None and body.model_dump(exclude={"ids"}, exclude_none=True):
        raise APIError(422, "validation_failed", "Give either ids or a filter, not both.",
                       [{"field": "ids", "message": "not together with a filter"}])
    async with svc.transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
    workflow_id = request_workflow_id("redrive", rule, body)
    await _start(svc, RedriveWorkflow.run, RedriveInput(
        rule_id=str(rule.id), event_ids=body.ids, status=body.status, error=body.error,
        since=iso(body.since) if body.since else None, until=iso(body.until) if body.until else None), workflow_id)
    return json_response({"workflow_id": workflow_id}, 202)


class FunnelQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: IsoDateTime | None = None  # default: 24 hours ago
    until: IsoDateTime | None = None  # default: now


class FunnelOut(BaseModel):
    since: str
    until: str
    matched: int
    dropped: int
    delivered: int
    retried: int
    retrying_now: int
    dead_lettered: int
    request_id: str


@blueprint.get("/<rule_id>/funnel")
@master_key_for_workspace
@document_querystring(FunnelQuery)
@document_response(FunnelOut)
async def funnel(workspace_id: uuid.UUID, rule_id: str) -> Response:
    """The rule's delivery funnel, by whole hours (UTC) from `since`'s hour to `until`'s: events
    that `matched` its filters, `dropped` by its transformation, `delivered`, `retried` (attempts
    that failed and were scheduled again), `dead_lettered`; and the events `retrying_now`."""
    query: FunnelQuery = parse_query(FunnelQuery)
    until = query.until or datetime.now(UTC)
    since = query.since or until - timedelta(hours=24)
    if since > until:
        raise APIError(400, "invalid_query", "since must not be after until.", [{"field": "since", "message": "after until"}])
    async with services().transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
        counts = await ForwardingRepository(session).funnel(rule, since, until)
    return json_response({"since": iso(since), "until": iso(until), **counts})


def attempt_json(a: DeliveryAttempt) -> dict[str, Any]:
    return {"attempted_at": iso(a.attempted_at), "event_ids": a.event_ids, "event_count": len(a.event_ids),
            "outcome": a.outcome, "status_code": a.status_code, "error": a.error,
            "response_excerpt": a.response_excerpt, "duration_ms": a.duration_ms}


@blueprint.get("/<rule_id>/deliveries")
@master_key_for_workspace
@document_querystring(RecentQuery)
async def deliveries(workspace_id: uuid.UUID, rule_id: str) -> Response:
    """Recent delivery attempts (one per request to the destination), newest first."""
    query: RecentQuery = parse_query(RecentQuery)
    async with services().transaction() as session:
        rule = await _get(session, workspace_id, rule_id)
        rows = await ForwardingRepository(session).deliveries(rule.id, query.limit)
    return json_response({"data": [attempt_json(a) for a in rows], "next_cursor": None})
