"""StreamExpiryWorkflow (`stream-expiry-{token}`): a durable timer until the stream's expiry,
then its events are deleted, unless a claim signals first."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import expire_stream
    from workflows.params import (
        ExpireStreamInput,
        ExpiryOutcome,
        StreamExpiryInput,
        StreamExpiryResult,
    )


def workflow_id(token: str) -> str:
    return f"stream-expiry-{token}"


@workflow.defn
class StreamExpiryWorkflow:
    def __init__(self) -> None:
        self._claimed = False

    @workflow.run
    async def run(self, params: StreamExpiryInput) -> StreamExpiryResult:
        delay = max(datetime.fromisoformat(params.expires_at) - workflow.now(), timedelta(0))
        try:
            await workflow.wait_condition(lambda: self._claimed, timeout=delay)
            workflow.logger.info("stream %s claimed; expiry cancelled", params.token)
            return StreamExpiryResult(outcome=ExpiryOutcome.CLAIMED)
        except TimeoutError:
            pass
        result = await workflow.execute_activity(
            expire_stream,
            ExpireStreamInput(token=params.token),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)),
        )
        workflow.logger.info("stream %s expired, %d events deleted", params.token, result.events_deleted)
        return StreamExpiryResult(outcome=ExpiryOutcome.EXPIRED, events_deleted=result.events_deleted)

    @workflow.signal
    def stream_claimed(self) -> None:
        self._claimed = True
