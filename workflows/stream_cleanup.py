"""StreamCleanupWorkflow, started hourly by the `stream-cleanup` schedule: expire streams
whose timers never ran and prune old rate-limit counters."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_stubs import sweep_expired_streams
    from workflows.params import StreamCleanupInput, StreamCleanupResult

SCHEDULE_ID = "stream-cleanup"
MAX_ROUNDS = 100  # bounded history: a larger backlog waits for the next hour


@workflow.defn
class StreamCleanupWorkflow:
    @workflow.run
    async def run(self, params: StreamCleanupInput) -> StreamCleanupResult:
        total = StreamCleanupResult()
        for _ in range(MAX_ROUNDS):
            result = await workflow.execute_activity(
                sweep_expired_streams,
                params,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10),
            )
            total.streams_expired += result.streams_expired
            total.counters_pruned += result.counters_pruned
            total.idempotency_keys_pruned += result.idempotency_keys_pruned
            if result.streams_expired < params.batch_size:
                break
        workflow.logger.info("cleanup expired %d streams, pruned %d counters",
                             total.streams_expired, total.counters_pruned)
        return total
