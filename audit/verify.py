"""Offline checks, as `headwater audit verify` runs them: an NDJSON export against a signed tree
head (every line a leaf, in order; the root recomputed; the signature checked), and an older
tree head against a newer one with a consistency proof. Nothing here talks to a server."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from audit import merkle, signing


def export_problems(lines: Iterable[bytes], head: dict[str, Any], public_key: bytes,
                    removed: list[dict[str, Any]] | None = None) -> list[str]:
    """What is wrong with `lines` (an export's lines, without newlines) as the leaves of the
    tree `head` signs; empty when nothing is. `removed` (GET .../audit/removed): the ranges of
    leaves whose events retention deleted, each with the subtrees that stand in for them."""
    problems = [] if signing.verify(public_key, head) else ["the tree head's signature does not verify"]
    gaps = sorted(removed or [], key=lambda r: r["first_leaf"])
    frontier = merkle.Frontier.empty()

    def fill_gaps() -> None:
        while gaps and gaps[0]["first_leaf"] == frontier.size:
            for subtree in gaps.pop(0)["subtrees"]:
                frontier.append_subtree(int(subtree["level"]), base64.b64decode(subtree["hash"]))

    try:
        for line in lines:
            fill_gaps()
            frontier.append(merkle.leaf_hash(line))
        fill_gaps()
    except ValueError as exc:  # a removed range's subtrees that do not fit where it says
        return [*problems, f"the removed ranges do not fit the export: {exc}"]
    if frontier.size != head.get("tree_size"):
        problems.append(f"the export has {frontier.size} lines; the tree head is of {head.get('tree_size')} leaves")
    elif frontier.root() != base64.b64decode(head.get("root_hash", "")):
        problems.append("the root hash of the export's lines differs from the tree head's: "
                        "a line was changed, removed, added or moved")
    return problems


def consistency_problems(older: dict[str, Any], newer: dict[str, Any], proof: list[str],
                         public_key: bytes) -> list[str]:
    problems = [f"the {name} tree head's signature does not verify"
                for name, head in (("older", older), ("newer", newer)) if not signing.verify(public_key, head)]
    if older.get("workspace_id") != newer.get("workspace_id"):
        problems.append("the tree heads are of different workspaces")
    if not merkle.verify_consistency(int(older["tree_size"]), int(newer["tree_size"]),
                                     base64.b64decode(older["root_hash"]), base64.b64decode(newer["root_hash"]),
                                     [base64.b64decode(value) for value in proof]):
        problems.append(f"the tree of {older['tree_size']} leaves is not a prefix of the tree of "
                        f"{newer['tree_size']}: the log was rewritten")
    return problems
