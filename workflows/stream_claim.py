"""StreamClaimWorkflow (`stream-claim-{token}`): move a stream's events into a workspace in
one transaction, then end the stream's expiry workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import claim_stream
    from workflows.params import ClaimState, ClaimStreamInput, ClaimStreamResult
    from workflows.stream_expiry import StreamExpiryWorkflow
    from workflows.stream_expiry import workflow_id as expiry_workflow_id


def workflow_id(token: str) -> str:
    return f"stream-claim-{token}"


@workflow.defn
class StreamClaimWorkflow:
    @workflow.run
    async def run(self, params: ClaimStreamInput) -> ClaimStreamResult:
        result = await workflow.execute_activity(
            claim_stream,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200),
                                     maximum_interval=timedelta(seconds=5), maximum_attempts=20),
        )
        workflow.logger.info("claim of stream %s by %s: %s (%d events)", params.token,
                             params.workspace_id, result.outcome, result.event_count)
        if result.outcome == ClaimState.CLAIMED:
            expiry = workflow.get_external_workflow_handle_for(
                StreamExpiryWorkflow.run, expiry_workflow_id(params.token)
            )
            try:
                await expiry.signal(StreamExpiryWorkflow.stream_claimed)
            except ApplicationError:
                # No running expiry workflow (Temporal was down when the stream was made, or
                # a retried claim): nothing to end, and the sweep never touches claimed streams.
                workflow.logger.info("no expiry workflow to end for stream %s", params.token)
        return result
