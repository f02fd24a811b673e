"""ForwardingWorkflow (`forward-{rule_id}`): one long-lived workflow per enabled forwarding rule.

Loop: one activity moves the next batch (read after the cursor, transform, deliver, record,
advance) and returns counts and the new cursor — never event bodies. When the rule is caught
up it waits for a `wake` signal (sent by the worker's waker at the workspace's next commit) or
a short timer; when the destination refuses whole batches it holds for the backoff the
activity asks for. `stop` ends it (the rule was disabled or deleted); continue-as-new keeps
the history small.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import forward_batch
    from workflows.params import BatchState, ForwardBatchInput, ForwardingInput, ForwardingStatus, RuleState

# After a batch that was not full, the next one lingers this long before reading: a trickle of
# events then costs a few batches a second per rule, not one per commit (Temporal's dev server
# runs a few hundred activities a second for all rules together).
LINGER_SECONDS = 0.1


def workflow_id(rule_id: object) -> str:
    return f"forward-{rule_id}"


async def wait(condition: Callable[[], bool], seconds: float) -> None:
    """Until `condition` holds or `seconds` pass, whichever comes first."""
    try:
        await workflow.wait_condition(condition, timeout=timedelta(seconds=seconds))
    except TimeoutError:
        pass


@workflow.defn
class ForwardingWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._stop = False
        self._status: ForwardingStatus | None = None

    @workflow.run
    async def run(self, params: ForwardingInput) -> ForwardingStatus:
        status = self._status = ForwardingStatus(rule_id=params.rule_id)
        linger = 0.0
        for _ in range(params.batches_per_run):
            if self._stop:
                return self._stopped()
            self._wake = False  # a signal from here on is news the next wait must not miss
            status.state, status.batch_in_flight = RuleState.DELIVERING, True
            result = await workflow.execute_activity(
                forward_batch,
                ForwardBatchInput(rule_id=params.rule_id, max_events=params.batch_size, linger_seconds=linger),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                         maximum_interval=timedelta(seconds=30)),
            )
            status.batch_in_flight, status.batches = False, status.batches + 1
            status.delivered += result.delivered
            status.cursor = result.cursor or status.cursor
            status.lag_seconds, status.attempts = result.lag_seconds, result.head_attempts
            status.last_error = result.last_error or status.last_error
            linger = 0.0 if result.more else LINGER_SECONDS
            if result.state in (BatchState.GONE, BatchState.DISABLED):
                return self._stopped()
            if result.state == BatchState.HELD:
                status.state = RuleState.HELD
                await wait(lambda: self._stop, result.hold_seconds)
            elif not (result.more or result.news):
                status.state = RuleState.WAITING
                await wait(lambda: self._wake or self._stop, params.idle_seconds)
            if workflow.info().is_continue_as_new_suggested():
                break
        if self._stop:
            return self._stopped()
        workflow.continue_as_new(params)

    def _stopped(self) -> ForwardingStatus:
        assert self._status is not None
        self._status.state = RuleState.STOPPED
        return self._status

    @workflow.signal
    def wake(self) -> None:
        """New events in the rule's workspace."""
        self._wake = True

    @workflow.signal
    def stop(self) -> None:
        """The rule was disabled or deleted: finish the batch in flight, then end."""
        self._stop = True

    @workflow.query
    def status(self) -> ForwardingStatus:
        return self._status or ForwardingStatus(rule_id="")
