"""The forwarding workflow's loop on its own: its activity replaced by a test double, on
Temporal's time-skipping test server (idle, wake, hold, stop, continue-as-new, rule gone); and
every workflow replayed against histories recorded from it (tests/histories/), so a change
that breaks determinism fails here, not in production."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from devstack.temporal import binary
from worker import WORKFLOWS
from workflows.forwarding import LINGER_SECONDS, ForwardingWorkflow
from workflows.params import (
    BatchState,
    ForwardBatchInput,
    ForwardBatchResult,
    ForwardingInput,
    ForwardingStatus,
    RuleState,
)

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture(scope="module")
async def env():
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary("temporal-test-server"))
    yield env
    await env.shutdown()


class Script:
    """The test double of `forward_batch`: answers each call with the next result (the last
    one repeats) and notes the (simulated) time and input of each call."""

    def __init__(self, env: WorkflowEnvironment, *results: ForwardBatchResult) -> None:
        self.env, self.results = env, list(results)
        self.calls: list[tuple[datetime, ForwardBatchInput, str]] = []

    @property
    def activity(self) -> Callable:
        @activity.defn(name="forward_batch")
        async def forward_batch(params: ForwardBatchInput) -> ForwardBatchResult:
            self.calls.append((await self.env.get_current_time(), params, activity.info().workflow_run_id))
            return self.results.pop(0) if len(self.results) > 1 else self.results[0]

        return forward_batch


OK = ForwardBatchResult(state=BatchState.OK)
FULL = ForwardBatchResult(state=BatchState.OK, more=True)
GONE = ForwardBatchResult(state=BatchState.GONE)


async def run(env: WorkflowEnvironment, script: Script, params: ForwardingInput | None = None,
              ) -> tuple[WorkflowHandle, Worker]:
    queue = f"forwarding-{uuid.uuid4()}"
    worker = Worker(env.client, task_queue=queue, workflows=[ForwardingWorkflow], activities=[script.activity])
    params = params or ForwardingInput(rule_id="r", workspace_id="w", idle_seconds=60)
    handle = await env.client.start_workflow(ForwardingWorkflow.run, params, id=f"forward-{uuid.uuid4()}",
                                             task_queue=queue)
    return handle, worker


async def until_state(handle: WorkflowHandle, state: RuleState, timeout: float = 10.0) -> ForwardingStatus:
    """Poll the `status` query until the workflow is in `state` (fails after `timeout` s)."""
    for _ in range(int(timeout / 0.05)):
        status = await handle.query(ForwardingWorkflow.status)
        if status.state == state:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {state} within {timeout} s: {status}")


async def test_a_caught_up_rule_waits_its_idle_time_then_reads_again_lingering(env):
    script = Script(env, OK, OK, GONE)
    handle, worker = await run(env, script)
    async with worker:
        status = await handle.result()
    assert status.state == RuleState.STOPPED and status.batches == 3
    (first, p1, _), (second, p2, _), _ = script.calls
    assert second - first >= timedelta(seconds=60)  # waited the idle time (no wake came)
    assert p1.linger_seconds == 0 and p2.linger_seconds == LINGER_SECONDS  # a partial batch lingers next


async def test_a_full_batch_goes_again_at_once(env):
    script = Script(env, FULL, FULL, GONE)
    handle, worker = await run(env, script)
    async with worker:
        await handle.result()
    times = [at for at, _, _ in script.calls]
    assert times[-1] - times[0] < timedelta(seconds=5) and all(p.linger_seconds == 0 for _, p, _ in script.calls)


async def test_a_wake_signal_ends_the_idle_wait(env):
    script = Script(env, OK, GONE)
    handle, worker = await run(env, script, ForwardingInput(rule_id="r", workspace_id="w", idle_seconds=3600))
    with env.auto_time_skipping_disabled():
        async with worker:
            await until_state(handle, RuleState.WAITING)
            await handle.signal(ForwardingWorkflow.wake)
            await handle.result()
    assert script.calls[1][0] - script.calls[0][0] < timedelta(minutes=1)


async def test_a_held_rule_waits_its_hold_and_stop_ends_it_at_once(env):
    held = ForwardBatchResult(state=BatchState.HELD, hold_seconds=300, last_error="HTTP 503", head_attempts=1,
                              lag_seconds=12.5)
    script = Script(env, held, OK, GONE)
    handle, worker = await run(env, script)
    async with worker:
        await handle.result()
    assert script.calls[1][0] - script.calls[0][0] >= timedelta(seconds=300)

    script = Script(env, held)
    handle, worker = await run(env, script)
    with env.auto_time_skipping_disabled():
        async with worker:
            status = await until_state(handle, RuleState.HELD)
            assert status.last_error == "HTTP 503" and status.lag_seconds == 12.5 and status.attempts == 1
            await handle.signal(ForwardingWorkflow.stop)
            result = await handle.result()
    assert result.state == RuleState.STOPPED and len(script.calls) == 1


@pytest.mark.parametrize("ending", [BatchState.GONE, BatchState.DISABLED])
async def test_a_gone_or_disabled_rule_ends_its_workflow(env, ending):
    script = Script(env, ForwardBatchResult(state=ending))
    handle, worker = await run(env, script)
    async with worker:
        assert (await handle.result()).state == RuleState.STOPPED
    assert len(script.calls) == 1


async def test_continue_as_new_after_its_batches(env):
    script = Script(env, FULL, FULL, FULL, FULL, GONE)
    handle, worker = await run(env, script, ForwardingInput(rule_id="r", workspace_id="w", batches_per_run=2))
    async with worker:
        await handle.result()
    runs = [run_id for _, _, run_id in script.calls]
    assert runs[0] == runs[1] != runs[2] == runs[3] != runs[4]


# --- replay: today's code against histories recorded from it ---------------------------------

@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_workflow_code_replays_its_recorded_histories(path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


def test_there_are_histories_of_every_workflow():
    recorded = {path.stem.split("--")[0] for path in HISTORIES.glob("*.json")}
    assert recorded == {workflow.__name__ for workflow in WORKFLOWS}
