"""The audit log's API (`/audit/...`, master key): the workspace's public key, signed tree
heads, inclusion and consistency proofs (RFC 6962 §2.1.1 and §2.1.2), and what the check found.
Hashes and keys are base64; the engine is audit/log.py."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response
from quart_schema import document_querystring, document_response

from audit.log import AuditLedger, BadTreeSize, NotSealed
from audit.signing import ALGORITHM, b64
from models.timestamps import iso
from web.auth import master_key_for_workspace
from web.errors import APIError, error_response
from web.jsonio import parse_query
from web.responses import json_response
from web.services import services

blueprint = Blueprint("audit", __name__, url_prefix="/api/v1/workspaces/<workspace_id>/audit")

TREE_SIZE = Field(default=None, ge=0, le=2**62)


class PublicKeyOut(BaseModel):
    algorithm: str
    public_key: str
    request_id: str


class TreeHeadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tree_size: int | None = TREE_SIZE


class TreeHeadOut(BaseModel):
    workspace_id: str
    tree_size: int
    root_hash: str
    timestamp: str
    signature: str
    request_id: str


class ProofQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(min_length=1, max_length=64)
    tree_size: int | None = TREE_SIZE


class ProofOut(BaseModel):
    leaf_index: int
    tree_size: int
    audit_path: list[str]
    request_id: str


class ConsistencyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first: int = Field(ge=0, le=2**62)
    second: int = Field(ge=0, le=2**62)


class ConsistencyOut(BaseModel):
    first: int
    second: int
    proof: list[str]
    request_id: str


class Mismatch(BaseModel):
    leaf_index: int
    event_id: str
    kind: str
    found_at: str


class Subtree(BaseModel):
    level: int
    index: int
    hash: str


class RemovedRange(BaseModel):
    first_leaf: int
    last_leaf: int
    removed_at: str
    subtrees: list[Subtree]


class RemovedOut(BaseModel):
    tree_size: int
    ranges: list[RemovedRange]
    request_id: str


class StatusOut(BaseModel):
    tree_size: int
    sealed_at: str | None
    checked_leaves: int
    check_passes: int
    checked_at: str | None
    removed_leaves: int
    mismatch_count: int
    mismatches: list[Mismatch]
    request_id: str


def ledger() -> AuditLedger:
    return AuditLedger(services().sessions)


@blueprint.errorhandler(BadTreeSize)
async def bad_tree_size(exc: BadTreeSize) -> Response:
    return error_response(APIError(422, "invalid_tree_size", str(exc)))


@blueprint.errorhandler(NotSealed)
async def not_sealed(exc: NotSealed) -> Response:
    return error_response(APIError(404, "event_not_sealed", str(exc)))


@blueprint.get("/public-key")
@master_key_for_workspace
@document_response(PublicKeyOut)
async def public_key(workspace_id: uuid.UUID) -> Response:
    """The Ed25519 key that signs this workspace's tree heads: 32 raw bytes, base64."""
    return json_response({"algorithm": ALGORITHM, "public_key": b64(await ledger().public_key(workspace_id))})


@blueprint.get("/tree-head")
@master_key_for_workspace
@document_querystring(TreeHeadQuery)
@document_response(TreeHeadOut)
async def tree_head(workspace_id: uuid.UUID) -> Response:
    """The latest signed tree head, or the one signed at `tree_size`. The signature (Ed25519,
    base64) covers the four other fields as JSON, keys sorted, no spaces."""
    query: TreeHeadQuery = parse_query(TreeHeadQuery)
    head = await ledger().tree_head(workspace_id, query.tree_size)
    if head is None:
        raise APIError(404, "tree_head_not_found", "No tree head was signed at that size (one is signed per seal).")
    return json_response(head)


@blueprint.get("/proof")
@master_key_for_workspace
@document_querystring(ProofQuery)
@document_response(ProofOut)
async def inclusion_proof(workspace_id: uuid.UUID) -> Response:
    """An event's audit path in the tree of `tree_size` leaves (default: the latest)."""
    query: ProofQuery = parse_query(ProofQuery)
    proof = await ledger().proof(workspace_id, query.event_id, query.tree_size)
    return json_response({"leaf_index": proof.leaf_index, "tree_size": proof.tree_size,
                          "audit_path": [b64(value) for value in proof.audit_path]})


@blueprint.get("/consistency")
@master_key_for_workspace
@document_querystring(ConsistencyQuery)
@document_response(ConsistencyOut)
async def consistency_proof(workspace_id: uuid.UUID) -> Response:
    """The proof that the tree of `first` leaves is a prefix of the tree of `second`."""
    query: ConsistencyQuery = parse_query(ConsistencyQuery)
    proof = await ledger().consistency(workspace_id, query.first, query.second)
    return json_response({"first": query.first, "second": query.second, "proof": [b64(value) for value in proof]})


@blueprint.get("/removed")
@master_key_for_workspace
@document_querystring(TreeHeadQuery)
@document_response(RemovedOut)
async def removed_leaves(workspace_id: uuid.UUID) -> Response:
    """The leaves (below `tree_size`, default the latest) whose events retention deleted, and
    when; with each range, the complete subtrees (level, index, hash) that stand in for its
    leaves when the tree is rebuilt from an export: `headwater audit verify --removed`."""
    query: TreeHeadQuery = parse_query(TreeHeadQuery)
    size, ranges = await ledger().removed(workspace_id, query.tree_size)
    return json_response({"tree_size": size, "ranges": [
        {**r, "removed_at": iso(r["removed_at"]),
         "subtrees": [{**t, "hash": b64(t["hash"])} for t in r["subtrees"]]} for r in ranges]})


@blueprint.get("/status")
@master_key_for_workspace
@document_response(StatusOut)
async def status(workspace_id: uuid.UUID) -> Response:
    """How far sealing and the check have gone, and every leaf whose stored event the check
    found altered or missing since it was sealed (the first 100; `mismatch_count` counts all)."""
    audit_log, removed, count, found = await ledger().status(workspace_id, 100)
    return json_response({
        "tree_size": audit_log.tree_size, "sealed_at": iso(audit_log.sealed_at),
        "checked_leaves": audit_log.checked_leaves, "check_passes": audit_log.check_passes,
        "checked_at": iso(audit_log.checked_at), "removed_leaves": removed, "mismatch_count": count,
        "mismatches": [{"leaf_index": m.leaf_index, "event_id": m.event_id, "kind": m.kind,
                        "found_at": iso(m.found_at)} for m in found]})
