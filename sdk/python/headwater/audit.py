"""Checking that an event is in a workspace's tamper-evident audit log, with nothing but the
standard library: the event's line from the NDJSON export, its proof (`GET .../audit/proof`)
and the tree head it was proven against (`GET .../audit/tree-head?tree_size=N`).

    from headwater.audit import verify_inclusion
    assert verify_inclusion(line, proof, tree_head)

Hashes as RFC 6962 §2.1 (leaf SHA-256(0x00 ‖ line), node SHA-256(0x01 ‖ left ‖ right)); the
audit path checked as RFC 9162 §2.1.3.2 says. Checking the tree head's Ed25519 signature
against the workspace's public key is the other half of trusting it (`headwater audit verify`,
or any Ed25519 library: the signed bytes are the head's four fields as JSON, keys sorted, no
spaces).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any


def leaf_hash(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """The root that `path` proves `leaf` (a leaf hash) at `index` of a tree of `size`
    leaves into, or None if the path cannot be one."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(line: bytes | str, proof: dict[str, Any], tree_head: dict[str, Any]) -> bool:
    """Whether `line` (an event's export line, without its newline) is leaf
    `proof["leaf_index"]` of the tree `tree_head` describes."""
    if isinstance(line, str):
        line = line.encode()
    if proof.get("tree_size") != tree_head.get("tree_size"):
        return False
    path = [base64.b64decode(value) for value in proof["audit_path"]]
    root = root_from_path(leaf_hash(line.rstrip(b"\n")), int(proof["leaf_index"]), int(proof["tree_size"]), path)
    return root is not None and root == base64.b64decode(tree_head["root_hash"])
