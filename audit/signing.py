"""Signed tree heads: `{"workspace_id", "tree_size", "root_hash", "timestamp"}`, signed with the
workspace's Ed25519 key over the UTF-8 bytes of that object with its keys sorted and no spaces;
the signature travels base64 beside it (`"signature"`)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALGORITHM = "ed25519"
SIGNED_FIELDS = ("root_hash", "timestamp", "tree_size", "workspace_id")


def new_key_pair() -> tuple[bytes, bytes]:
    """(public, private) key, 32 raw bytes each."""
    private = Ed25519PrivateKey.generate()
    return (private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def now_timestamp() -> str:
    """RFC 3339, UTC, milliseconds: `2026-12-03T14:00:00.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_bytes(head: dict[str, Any]) -> bytes:
    """What the signature covers: the four fields, keys sorted, no spaces, UTF-8."""
    return json.dumps({name: head[name] for name in SIGNED_FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def tree_head(workspace_id: str, tree_size: int, root_hash: bytes, timestamp: str) -> dict[str, Any]:
    return {"workspace_id": workspace_id, "tree_size": tree_size, "root_hash": b64(root_hash), "timestamp": timestamp}


def sign(private_key: bytes, head: dict[str, Any]) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private_key).sign(signed_bytes(head))


def verify(public_key: bytes, head: dict[str, Any]) -> bool:
    """Whether `head["signature"]` (base64) signs the head's fields under `public_key`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(head["signature"]), signed_bytes(head))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True
