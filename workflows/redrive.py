"""RedriveWorkflow (`redrive-{rule_id}-{n}`): move a rule's dead letters (all, or some) back
to be retried now, then wake the rule's forwarding workflow to send them."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import redrive_dead_letters
    from workflows.forwarding import ForwardingWorkflow, workflow_id
    from workflows.params import RedriveInput, RedriveResult


@workflow.defn
class RedriveWorkflow:
    @workflow.run
    async def run(self, params: RedriveInput) -> RedriveResult:
        result = await workflow.execute_activity(
            redrive_dead_letters, params, start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
                                     maximum_attempts=20),
        )
        try:
            await workflow.get_external_workflow_handle_for(ForwardingWorkflow.run, workflow_id(params.rule_id)).signal(
                ForwardingWorkflow.wake)
        except ApplicationError:  # the rule is disabled: its retries wait for it
            workflow.logger.info("rule %s is not running; redriven events wait for it", params.rule_id)
        return result
