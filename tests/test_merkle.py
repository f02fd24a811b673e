"""audit/merkle.py against RFC 6962 §2.1 written out literally (recursion over lists), for every
tree size up to 70 and every leaf and older size in it; and the verifiers refuse what is wrong."""

from __future__ import annotations

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    aligned_blocks,
    audit_path_ranges,
    complete_subtrees,
    consistency_ranges,
    leaf_hash,
    node_hash,
    range_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return leaf_hash(d[0])
    k = k_of(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = k_of(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = k_of(len(d))
    return [*subproof(m, d[:k], b), mth(d[k:])] if m <= k else [*subproof(m - k, d[k:], False), mth(d[:k])]


LEAVES = [f"event {i}".encode() for i in range(70)]
HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def stored(level: int, index: int) -> bytes:
    """A complete subtree's hash, as the store would give it."""
    assert level >= 0
    return root_of(HASHES[index << level:(index + 1) << level])


@pytest.mark.parametrize("n", range(1, 71))
def test_roots_paths_and_proofs_match_the_rfc(n):
    d = LEAVES[:n]
    assert root_of(HASHES[:n]) == mth(d) == range_hash(0, n, stored)
    frontier = Frontier.empty()
    for value in HASHES[:n]:
        frontier.append(value, keep_from_level=1)
    assert frontier.root() == mth(d)
    for level, index, value in frontier.completed:
        assert value == stored(level, index)
    for m in range(n):
        expected = path(m, d)
        assert [range_hash(a, b, stored) for a, b in audit_path_ranges(m, n)] == expected
        assert verify_inclusion(HASHES[m], m, n, expected, mth(d))
        assert not verify_inclusion(HASHES[m], (m + 1) % n, n, expected, mth(d)) or n == 1
    for m in range(1, n + 1):
        expected = subproof(m, d, True)
        assert [range_hash(a, b, stored) for a, b in consistency_ranges(m, n)] == expected
        assert verify_consistency(m, n, mth(d[:m]), mth(d), expected)
        if m < n:
            assert not verify_consistency(m, n, mth(d[:m - 1]) if m > 1 else b"x" * 32, mth(d), expected)


def test_ranges_decompose_into_aligned_complete_subtrees():
    assert complete_subtrees(0, 8) == [(3, 0)]
    assert complete_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert complete_subtrees(8, 13) == [(2, 2), (0, 12)]


def test_a_tampered_leaf_or_path_fails():
    n = 13
    proof = path(5, LEAVES[:n])
    root = mth(LEAVES[:n])
    assert verify_inclusion(HASHES[5], 5, n, proof, root)
    assert not verify_inclusion(leaf_hash(b"changed"), 5, n, proof, root)
    assert not verify_inclusion(HASHES[5], 5, n, proof[:-1], root)
    assert not verify_inclusion(HASHES[5], 5, n, [*proof, proof[0]], root)


@pytest.mark.parametrize("n", [1, 2, 7, 13, 64, 70])
def test_removed_ranges_stand_in_as_aligned_subtrees(n):
    """A tree rebuilt from the leaves that remain and, for each removed range, its aligned
    subtrees has the same root."""
    for a in range(n):
        for b in range(a + 1, n + 1):
            frontier = Frontier.empty()
            for value in HASHES[:a]:
                frontier.append(value)
            blocks = aligned_blocks(a, b)
            assert sum(1 << level for level, _ in blocks) == b - a
            for level, index in blocks:
                frontier.append_subtree(level, stored(level, index))
            for value in HASHES[b:n]:
                frontier.append(value)
            assert frontier.root() == root_of(HASHES[:n]), (a, b)
