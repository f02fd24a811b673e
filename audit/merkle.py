"""RFC 6962 Merkle trees (§2.1), exactly: leaf hash SHA-256(0x00 ‖ leaf), node hash
SHA-256(0x01 ‖ left ‖ right), a tree of n leaves split at the largest power of two below n.

A stored tree keeps only *complete* subtrees (aligned: `size` leaves from a multiple of
`size`, size a power of two), which never change once complete. Every hash a root, an audit
path or a consistency proof needs is a range [a, b) of leaves, and each such range decomposes
into a few complete subtrees (`complete_subtrees`): a proof is planned as ranges, the subtrees
they need are fetched at once, and the ranges are hashed from them (`range_hash`).

Appending uses the compact form of a tree: the roots of its complete subtrees, one for each
set bit of its size, largest (leftmost) first (`Frontier`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = tuple[int, int]  # (level, index): leaves [index·2^level, (index+1)·2^level)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: list[bytes]) -> bytes:
    """MTH of a list of leaf hashes, in memory."""
    if not hashes:
        return EMPTY_ROOT
    frontier = Frontier.empty()
    for value in hashes:
        frontier.append(value)
    return frontier.root()


# --- planning: ranges, and the complete subtrees they are made of ------------------------------


def complete_subtrees(a: int, b: int) -> list[Subtree]:
    """The complete subtrees that make up leaves [a, b) as RFC 6962 splits them."""
    n = b - a
    if n & (n - 1) == 0 and a % n == 0:
        return [(n.bit_length() - 1, a // n)]
    k = split(n)
    return complete_subtrees(a, a + k) + complete_subtrees(a + k, b)


def range_hash(a: int, b: int, subtree: Callable[[int, int], bytes]) -> bytes:
    """MTH of leaves [a, b) from `subtree(level, index)`."""
    n = b - a
    if n & (n - 1) == 0 and a % n == 0:
        return subtree(n.bit_length() - 1, a // n)
    k = split(n)
    return node_hash(range_hash(a, a + k, subtree), range_hash(a + k, b, subtree))


def audit_path_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form leaf m's audit path in a tree of n leaves (§2.1.1), in
    the order the path lists them (from the leaf up)."""

    def path(m: int, a: int, b: int) -> list[tuple[int, int]]:
        if b - a <= 1:
            return []
        k = split(b - a)
        if m < k:
            return [*path(m, a, a + k), (a + k, b)]
        return [*path(m - k, a + k, b), (a, a + k)]

    return path(m, 0, n)


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form the consistency proof between the trees of m and n
    leaves (§2.1.2), in order."""

    def subproof(m: int, a: int, b: int, whole: bool) -> list[tuple[int, int]]:
        n = b - a
        if m == n:
            return [] if whole else [(a, b)]
        k = split(n)
        if m <= k:
            return [*subproof(m, a, a + k, whole), (a + k, b)]
        return [*subproof(m - k, a + k, b, False), (a, a + k)]

    if not 0 < m <= n:
        return []
    return subproof(m, 0, n, True)


def aligned_blocks(a: int, b: int) -> list[Subtree]:
    """Leaves [a, b) as complete subtrees from left to right, each starting at a multiple of
    its size: what a tree being built leaf by leaf can take whole (`Frontier.append_subtree`)
    in place of the leaves — how `audit verify` stands in for leaves removed by retention."""
    blocks = []
    while a < b:
        level = (a & -a).bit_length() - 1 if a else (b - a).bit_length() - 1
        while 1 << level > b - a:
            level -= 1
        blocks.append((level, a >> level))
        a += 1 << level
    return blocks


def needed(ranges: Iterable[tuple[int, int]]) -> set[Subtree]:
    return {subtree for a, b in ranges for subtree in complete_subtrees(a, b)}


# --- the compact form: appending --------------------------------------------------------------


class Frontier:
    """The roots of a tree's complete subtrees, one per set bit of its size, largest first:
    enough to append leaves and to compute the root. `completed` collects every complete
    subtree an append made, (level, index, hash), for storing."""

    def __init__(self, size: int, hashes: list[bytes]) -> None:
        assert len(hashes) == (size).bit_count()
        self.size, self.hashes = size, hashes
        self.completed: list[tuple[int, int, bytes]] = []

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, [])

    def append(self, value: bytes, *, keep_from_level: int | None = None) -> None:
        """Add one leaf hash. Subtrees completed at `keep_from_level` or above go to
        `completed` (None: keep none)."""
        index, level = self.size, 0
        while index & 1:  # the leaf closes the subtree on its left at this level
            value = node_hash(self.hashes.pop(), value)
            index, level = index >> 1, level + 1
            if keep_from_level is not None and level >= keep_from_level:
                self.completed.append((level, index, value))
        self.hashes.append(value)
        self.size += 1

    def append_subtree(self, level: int, value: bytes) -> None:
        """Add a complete subtree of 2^level leaves at once; the tree's size must be a
        multiple of its size (see `aligned_blocks`)."""
        size = 1 << level
        if self.size % size:
            raise ValueError(f"a subtree of {size} leaves cannot start at leaf {self.size}")
        index = self.size >> level
        while index & 1:  # as `append`, from this subtree's level up
            value = node_hash(self.hashes.pop(), value)
            index >>= 1
        self.hashes.append(value)
        self.size += size

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value


# --- verification (what a client runs: RFC 9162 §2.1.3.2 and §2.1.4.2) -------------------------


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]) -> bool:
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof
    if first > second or not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: the first tree's root starts the proof
        proof = [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root
