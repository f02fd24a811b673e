"""Starting, waking and stopping forwarding workflows from outside Temporal (the API, the
worker's reconciler and waker); never called from inside a workflow."""

from __future__ import annotations

import uuid

from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from settings import Settings
from workflows.forwarding import ForwardingWorkflow, workflow_id
from workflows.params import ForwardingInput

WORKSPACE_ID = SearchAttributeKey.for_keyword("WorkspaceId")
RULE_ID = SearchAttributeKey.for_keyword("RuleId")


async def start_forwarding(client: Client, settings: Settings, rule_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
    """Start `forward-{rule_id}` unless it runs (harmless to repeat), tagged for the UI's filters."""
    await client.start_workflow(
        ForwardingWorkflow.run,
        ForwardingInput(rule_id=str(rule_id), workspace_id=str(workspace_id), batch_size=settings.forward_batch_size,
                        idle_seconds=settings.forward_idle_seconds),
        id=workflow_id(rule_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(WORKSPACE_ID, str(workspace_id)),
                                                 SearchAttributePair(RULE_ID, str(rule_id))]),
    )


async def stop_forwarding(client: Client, rule_id: uuid.UUID) -> None:
    """Ask `forward-{rule_id}` to end after its batch in flight; nothing to do if it is not running."""
    try:
        await client.get_workflow_handle_for(ForwardingWorkflow.run, workflow_id(rule_id)).signal(ForwardingWorkflow.stop)
    except RPCError:
        pass


async def wake_forwarding(client: Client, rule_id: uuid.UUID) -> None:
    try:
        await client.get_workflow_handle_for(ForwardingWorkflow.run, workflow_id(rule_id)).signal(ForwardingWorkflow.wake)
    except RPCError:
        pass
