"""Transformations as forwarding runs them: a batch takes one version's snapshot, runs every
event through it in the sandbox process, and records how many failed (enough consecutive
failures set the transformation's status to `error`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.sandbox import TransformOutcome
from activities.sandbox_process import SandboxProcess
from models.transformations import RunTally, TransformationRepository, TransformationSnapshot
from settings import Settings
from telemetry import metrics


def tally(outcomes: list[TransformOutcome]) -> RunTally:
    failures = trailing = 0
    succeeded = False
    last_error = None
    for outcome in outcomes:
        if outcome.error is None:
            succeeded, trailing = True, 0
        else:
            failures, trailing, last_error = failures + 1, trailing + 1, outcome.error
    return RunTally(failures=failures, trailing_failures=trailing, succeeded_any=succeeded, last_error=last_error)


class Transformer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], sandbox: SandboxProcess, settings: Settings) -> None:
        self.sessions = sessions
        self.sandbox = sandbox
        self.error_threshold = settings.transform_error_threshold
        self._deaths_counted = 0  # the sandbox's deaths already in the metrics

    async def snapshot(self, transformation_id: uuid.UUID) -> TransformationSnapshot | None:
        """The current version, fixed for a whole batch."""
        async with self.sessions() as session:
            return await TransformationRepository(session).snapshot(transformation_id)

    async def run(self, snapshot: TransformationSnapshot, events: list[dict[str, Any]],
                  meta: dict[str, Any]) -> list[TransformOutcome]:
        """Every event through `snapshot`'s version, in order; the failures are counted."""
        outcomes, _ = await self.sandbox.transform(snapshot.key, snapshot.source_code, events, meta)
        runs = tally(outcomes)
        deaths, self._deaths_counted = self.sandbox.deaths - self._deaths_counted, self.sandbox.deaths
        metrics.count_sandbox(len(outcomes), runs.failures, deaths)
        async with self.sessions() as session, session.begin():
            await TransformationRepository(session).record_runs(snapshot, runs, self.error_threshold)
        return outcomes
