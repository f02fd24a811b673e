"""Postgres storage: typed SQLAlchemy 2 models and the repositories that read and write them.

Repositories take an `AsyncSession` and never commit: the request handler or the activity
that calls them owns the transaction.
"""

from models.audit import AuditChunk, AuditLog, AuditMismatch, AuditNode, AuditRemoval, AuditTreeHead
from models.base import Base
from models.console_sessions import ConsoleSession
from models.contracts import ContractViolationBatch, EventContract
from models.events import Event
from models.forwarding import (
    DeadLetter,
    DeliveryAttempt,
    Destination,
    ForwardingRetry,
    ForwardingRule,
    RuleVolumeHourly,
)
from models.idempotency import IdempotencyKey
from models.rate_limits import RateLimitCounter
from models.sources import EventSource
from models.streams import Stream, StreamEvent
from models.transformations import EventTransformation, TransformationVersion
from models.volume import EventVolumeHourly
from models.workspaces import MasterKey, Workspace

__all__ = ["AuditChunk", "AuditLog", "AuditMismatch", "AuditNode", "AuditRemoval", "AuditTreeHead", "Base", "ConsoleSession", "ContractViolationBatch", "DeadLetter", "DeliveryAttempt", "Destination", "Event", "EventContract",
           "EventSource", "EventTransformation", "EventVolumeHourly", "ForwardingRetry", "ForwardingRule",
           "IdempotencyKey", "MasterKey", "RateLimitCounter", "RuleVolumeHourly", "Stream", "StreamEvent", "TransformationVersion", "Workspace"]
