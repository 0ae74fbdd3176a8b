"""The Merkle tree against RFC 9162 §2.1: published vectors, the RFC recursion, mutations, reads."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import StorageError, VerificationError
from ledger.log.hasher import EMPTY_ROOT, leaf_hash
from ledger.log.tree import (
    Coord,
    Frontier,
    MemoryNodes,
    consistency_proof,
    inclusion_proof,
    perfect_subtrees,
    root_at,
)
from ledger.log.verify import (
    ProofShapeError,
    RootMismatchError,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)


def h(hex_digits: str) -> bytes:
    return bytes.fromhex(hex_digits)


# =============================================================================================
# The published test tree
#
# RFC 6962 reference test vectors as used by certificate-transparency (merkle_tree_test) and
# transparency-dev/merkle (proof/verify_test.go): an 8-leaf tree, the root of every prefix of it,
# and inclusion and consistency proofs within it. Those sources number leaves from 1; the
# indices below are 0-based, as in RFC 9162.

LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

ROOTS = {
    1: h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    2: h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    3: h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    4: h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    5: h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    6: h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    7: h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    8: h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
}

# fmt: off
# (leaf index, tree size, PATH)
INCLUSION_PROOFS = [
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]

# (first size, second size, PROOF)
CONSISTENCY_PROOFS = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
# fmt: on

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def appended(entries: Sequence[bytes]) -> tuple[MemoryNodes, Frontier]:
    """A tree grown the way the log grows: Frontier.append, storing every node it completes."""
    nodes, frontier = MemoryNodes(), Frontier()
    for entry in entries:
        nodes.put_all(frontier.append(leaf_hash(entry)))
    return nodes, frontier


def test_the_empty_tree_hashes_to_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert Frontier().root() == EMPTY_ROOT
    assert root_at(0, MemoryNodes()) == EMPTY_ROOT


def test_a_one_leaf_tree_is_its_leaf_hash() -> None:
    assert leaf_hash(LEAVES[0]) == ROOTS[1]


def test_growing_the_published_tree_passes_through_every_published_root() -> None:
    nodes, frontier = MemoryNodes(), Frontier()
    for size, entry in enumerate(LEAVES, 1):
        nodes.put_all(frontier.append(leaf_hash(entry)))
        assert frontier.size == size
        assert frontier.root() == ROOTS[size], f"frontier root at size {size}"
    for size, root in ROOTS.items():
        assert root_at(size, nodes) == root, f"stored-node root at size {size}"


def test_building_in_one_pass_gives_the_same_nodes_as_appending() -> None:
    built = MemoryNodes.from_leaf_hashes(leaf_hash(entry) for entry in LEAVES)
    grown, _ = appended(LEAVES)
    assert built.size == grown.size == 8
    for size, root in ROOTS.items():
        assert root_at(size, built) == root
    every_node = [(level, index) for level in range(4) for index in range(8 >> level)]
    assert built.get_nodes(every_node) == grown.get_nodes(every_node)


def test_a_frontier_reloaded_from_storage_keeps_growing_the_same_tree() -> None:
    nodes, _ = appended(LEAVES[:5])
    frontier = Frontier.load(5, nodes)
    assert frontier.hashes == (nodes.get(2, 0), nodes.get(0, 4))
    for size, entry in enumerate(LEAVES[5:], 6):
        nodes.put_all(frontier.append(leaf_hash(entry)))
        assert frontier.root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_PROOFS)
def test_published_inclusion_proofs_are_built_and_verify(
    index: int, size: int, path: list[bytes]
) -> None:
    nodes, _ = appended(LEAVES)
    assert inclusion_proof(index, size, nodes) == path
    leaf = leaf_hash(LEAVES[index])
    assert root_from_inclusion_proof(index, size, leaf, path) == ROOTS[size]
    verify_inclusion(index, size, leaf, path, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_PROOFS)
def test_published_consistency_proofs_are_built_and_verify(
    first: int, second: int, proof: list[bytes]
) -> None:
    nodes, _ = appended(LEAVES)
    assert consistency_proof(first, second, nodes) == proof
    verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


# Mutations of a published inclusion proof, in the spirit of transparency-dev/merkle's
# corruptInclusionProof: each returns (index, size, leaf, proof, root) that must not verify.
InclusionCase = tuple[int, int, bytes, list[bytes], bytes]
INCLUSION_MUTATIONS: dict[str, Callable[[int, int, bytes, list[bytes], bytes], InclusionCase]] = {
    "index - 1": lambda i, n, leaf, p, r: (i - 1, n, leaf, p, r),
    "index + 1": lambda i, n, leaf, p, r: (i + 1, n, leaf, p, r),
    "index ^ 2": lambda i, n, leaf, p, r: (i ^ 2, n, leaf, p, r),
    "size * 2": lambda i, n, leaf, p, r: (i, n * 2, leaf, p, r),
    "size // 2": lambda i, n, leaf, p, r: (i, n // 2, leaf, p, r),
    "another leaf": lambda i, n, leaf, p, r: (i, n, leaf_hash(b"WrongLeaf"), p, r),
    "empty-tree root": lambda i, n, leaf, p, r: (i, n, leaf, p, EMPTY_ROOT),
    "random root": lambda i, n, leaf, p, r: (i, n, leaf, p, SOME_HASH),
    "trailing empty hash": lambda i, n, leaf, p, r: (i, n, leaf, [*p, b""], r),
    "trailing root": lambda i, n, leaf, p, r: (i, n, leaf, [*p, r], r),
    "preceding empty hash": lambda i, n, leaf, p, r: (i, n, leaf, [b"", *p], r),
    "preceding root": lambda i, n, leaf, p, r: (i, n, leaf, [r, *p], r),
    "last element removed": lambda i, n, leaf, p, r: (i, n, leaf, p[:-1], r),
    "element inserted": lambda i, n, leaf, p, r: (i, n, leaf, [*p[:1], SOME_HASH, *p[1:]], r),
}


@pytest.mark.parametrize("mutation", INCLUSION_MUTATIONS)
@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_PROOFS[1:])
def test_a_mutated_published_inclusion_proof_fails(
    index: int, size: int, path: list[bytes], mutation: str
) -> None:
    case = INCLUSION_MUTATIONS[mutation](index, size, leaf_hash(LEAVES[index]), path, ROOTS[size])
    with pytest.raises(VerificationError):
        verify_inclusion(*case)


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_PROOFS[1:])
def test_a_published_inclusion_proof_with_any_bit_flipped_fails(
    index: int, size: int, path: list[bytes]
) -> None:
    for position in range(len(path)):
        for bit in range(256):
            forged = list(path)
            forged[position] = flip(path[position], bit)
            with pytest.raises(RootMismatchError):
                verify_inclusion(index, size, leaf_hash(LEAVES[index]), forged, ROOTS[size])


ConsistencyCase = tuple[int, int, bytes, bytes, list[bytes]]
CONSISTENCY_MUTATIONS: dict[
    str, Callable[[int, int, bytes, bytes, list[bytes]], ConsistencyCase]
] = {
    "first - 1": lambda m, n, r1, r2, p: (m - 1, n, r1, r2, p),
    "first + 1": lambda m, n, r1, r2, p: (m + 1, n, r1, r2, p),
    "first ^ 2": lambda m, n, r1, r2, p: (m ^ 2, n, r1, r2, p),
    "second * 2": lambda m, n, r1, r2, p: (m, n * 2, r1, r2, p),
    "second // 2": lambda m, n, r1, r2, p: (m, n // 2, r1, r2, p),
    "wrong first root": lambda m, n, r1, r2, p: (m, n, SOME_HASH, r2, p),
    "wrong second root": lambda m, n, r1, r2, p: (m, n, r1, SOME_HASH, p),
    "swapped roots": lambda m, n, r1, r2, p: (m, n, r2, r1, p),
    "empty proof": lambda m, n, r1, r2, p: (m, n, r1, r2, []),
    "trailing empty hash": lambda m, n, r1, r2, p: (m, n, r1, r2, [*p, b""]),
    "trailing first root": lambda m, n, r1, r2, p: (m, n, r1, r2, [*p, r1]),
    "trailing second root": lambda m, n, r1, r2, p: (m, n, r1, r2, [*p, r2]),
    "preceding empty hash": lambda m, n, r1, r2, p: (m, n, r1, r2, [b"", *p]),
    "preceding first root": lambda m, n, r1, r2, p: (m, n, r1, r2, [r1, *p]),
    "preceding second root": lambda m, n, r1, r2, p: (m, n, r1, r2, [r2, *p]),
    "preceding proof[0]": lambda m, n, r1, r2, p: (m, n, r1, r2, [p[0], *p]),
    "truncated": lambda m, n, r1, r2, p: (m, n, r1, r2, p[:-1]),
}


@pytest.mark.parametrize("mutation", CONSISTENCY_MUTATIONS)
@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_PROOFS[1:])
def test_a_mutated_published_consistency_proof_fails(
    first: int, second: int, proof: list[bytes], mutation: str
) -> None:
    case = CONSISTENCY_MUTATIONS[mutation](first, second, ROOTS[first], ROOTS[second], proof)
    with pytest.raises(VerificationError):
        verify_consistency(*case)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_PROOFS[1:])
def test_a_published_consistency_proof_with_any_bit_flipped_fails(
    first: int, second: int, proof: list[bytes]
) -> None:
    for position in range(len(proof)):
        for bit in range(256):
            forged = list(proof)
            forged[position] = flip(proof[position], bit)
            with pytest.raises(RootMismatchError):
                verify_consistency(first, second, ROOTS[first], ROOTS[second], forged)


def test_trivial_consistency_needs_an_empty_proof_and_matching_roots() -> None:
    # Same size: the trees are the same tree, so the proof is empty and the roots equal.
    verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    with pytest.raises(RootMismatchError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    with pytest.raises(ProofShapeError):
        verify_consistency(3, 3, ROOTS[3], ROOTS[3], [EMPTY_ROOT])
    # From the empty tree: a prefix of everything, proven by nothing.
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    with pytest.raises(ProofShapeError):
        verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [EMPTY_ROOT])
    with pytest.raises(RootMismatchError):  # a "size 0" tree whose root is not the empty hash
        verify_consistency(0, 5, SOME_HASH, ROOTS[5], [])
    # Time does not run backwards.
    with pytest.raises(ProofShapeError):
        verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])


def test_inclusion_in_impossible_positions_fails_by_shape() -> None:
    leaf = leaf_hash(LEAVES[0])
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(ProofShapeError):
            verify_inclusion(index, size, leaf, [], ROOTS[1])
    with pytest.raises(ProofShapeError):  # a leaf "hash" of the wrong width
        verify_inclusion(0, 1, b"", [], ROOTS[1])
    with pytest.raises(ProofShapeError):  # a root of the wrong width
        verify_inclusion(0, 1, leaf, [], b"")


def test_builders_refuse_impossible_requests() -> None:
    nodes, _ = appended(LEAVES)
    for index, size in [(0, 0), (8, 8), (-1, 8)]:
        with pytest.raises(ValueError):
            inclusion_proof(index, size, nodes)
    for first, second in [(0, 8), (5, 4), (-1, 8)]:
        with pytest.raises(ValueError):
            consistency_proof(first, second, nodes)
    with pytest.raises(ValueError):
        root_at(-1, nodes)
    with pytest.raises(StorageError):  # leaves 8 and 9 were never appended
        root_at(10, nodes)


def test_storage_refuses_to_change_a_perfect_subtree() -> None:
    nodes, _ = appended(LEAVES)
    nodes.put(1, 0, nodes.get(1, 0) or b"")  # storing the same hash again is harmless
    with pytest.raises(ValueError):
        nodes.put(1, 0, SOME_HASH)


def test_range_decomposition_follows_the_tree() -> None:
    assert perfect_subtrees(0, 0) == []
    assert perfect_subtrees(0, 8) == [(3, 0)]
    assert perfect_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert perfect_subtrees(4, 7) == [(1, 2), (0, 6)]
    assert perfect_subtrees(1, 8) == [(0, 1), (1, 1), (2, 1)]
    # [0, n): one perfect subtree per set bit of n, largest first, tiling the range.
    coords = perfect_subtrees(0, 1_000_003)
    assert [level for level, _ in coords] == [b for b in range(20, -1, -1) if 1_000_003 >> b & 1]
    assert tiles(coords) == (0, 1_000_003)


def tiles(coords: Sequence[Coord]) -> tuple[int, int]:
    """The leaf range that adjacent perfect subtrees cover, checking that they do tile it."""
    begin = end = coords[0][1] << coords[0][0]
    for level, index in coords:
        assert index << level == end, "gap or overlap"
        end += 1 << level
    return begin, end


@given(st.integers(0, 5000), st.integers(1, 5000))
def test_any_range_is_tiled_by_aligned_perfect_subtrees(begin: int, width: int) -> None:
    coords = perfect_subtrees(begin, begin + width)
    assert tiles(coords) == (begin, begin + width)
    assert len(coords) <= 2 * width.bit_length()


def flip(value: bytes, bit: int) -> bytes:
    forged = bytearray(value)
    forged[bit // 8] ^= 1 << (bit % 8)
    return bytes(forged)


# =============================================================================================
# A reference written straight from RFC 9162 §2.1, recursion and all, on lists of entries.


def ref_mth(d: Sequence[bytes]) -> bytes:
    """§2.1.1 MTH(D[n])."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """§2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """§2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return ref_subproof(m, d, True)


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def entries(count: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(count)]


class CountingReader:
    """Wraps a NodeReader and records each batch asked of it."""

    def __init__(self, inner: MemoryNodes) -> None:
        self.inner = inner
        self.calls: list[Sequence[Coord]] = []

    def get_nodes(self, coords: Sequence[Coord]) -> Mapping[Coord, bytes]:
        self.calls.append(list(coords))
        return self.inner.get_nodes(coords)


def log2_ceil(n: int) -> int:
    return (n - 1).bit_length()


def test_every_root_path_and_proof_up_to_64_leaves_matches_the_rfc_recursion() -> None:
    d = entries(64)
    nodes, _ = appended(d)
    reader = CountingReader(nodes)
    for n in range(1, 65):
        assert root_at(n, nodes) == ref_mth(d[:n]), f"MTH of {n}"
        for m in range(n):
            reader.calls.clear()
            path = inclusion_proof(m, n, reader)
            assert path == ref_path(m, d[:n]), f"PATH({m}, D[{n}])"
            assert len(reader.calls) <= 1
            assert sum(map(len, reader.calls)) <= 2 * log2_ceil(n)
            verify_inclusion(m, n, leaf_hash(d[m]), path, ref_mth(d[:n]))
        for m in range(1, n + 1):
            reader.calls.clear()
            proof = consistency_proof(m, n, reader)
            assert proof == ref_proof(m, d[:n]), f"PROOF({m}, D[{n}])"
            assert len(reader.calls) <= 1
            assert sum(map(len, reader.calls)) <= 2 * log2_ceil(n) + 1
            verify_consistency(m, n, ref_mth(d[:m]), ref_mth(d[:n]), proof)


# =============================================================================================
# Random trees of up to a few thousand leaves: honest proofs verify, damaged ones do not.

MAX_LEAVES = 3000


@cache
def big_tree() -> tuple[MemoryNodes, list[bytes]]:
    leaves = [leaf_hash(entry) for entry in entries(MAX_LEAVES)]
    return MemoryNodes.from_leaf_hashes(leaves), leaves


@cache
def root_of(size: int) -> bytes:
    return root_at(size, big_tree()[0])


@st.composite
def positions(draw: st.DrawFn) -> tuple[int, int]:
    """(index, size) with 0 <= index < size <= MAX_LEAVES."""
    size = draw(st.integers(1, MAX_LEAVES))
    return draw(st.integers(0, size - 1)), size


@st.composite
def growth(draw: st.DrawFn) -> tuple[int, int]:
    """(first, second) with 0 < first < second <= MAX_LEAVES: a proof with something in it."""
    second = draw(st.integers(2, MAX_LEAVES))
    return draw(st.integers(1, second - 1)), second


def other_than(value: int, low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high).filter(lambda x: x != value)


@settings(deadline=None)
@given(positions())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    index, size = case
    nodes, leaves = big_tree()
    verify_inclusion(index, size, leaves[index], inclusion_proof(index, size, nodes), root_of(size))


@settings(deadline=None)
@given(growth())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    verify_consistency(first, second, root_of(first), root_of(second), proof)


@settings(deadline=None)
@given(positions(), st.data())
def test_inclusion_with_a_flipped_bit_in_any_proof_hash_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    if not proof:  # a one-leaf tree: no hash to damage
        return
    position = data.draw(st.integers(0, len(proof) - 1), label="proof element")
    bit = data.draw(st.integers(0, 255), label="bit")
    proof[position] = flip(proof[position], bit)
    with pytest.raises(RootMismatchError):
        verify_inclusion(index, size, leaves[index], proof, root_of(size))


@settings(deadline=None)
@given(positions(), st.data())
def test_inclusion_claimed_at_another_index_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    wrong = data.draw(other_than(index, -1, size), label="claimed index")  # -1, size: outside
    with pytest.raises(VerificationError):
        verify_inclusion(wrong, size, leaves[index], proof, root_of(size))


@settings(deadline=None)
@given(positions(), st.data())
def test_inclusion_claimed_in_a_tree_of_another_size_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    # The claim "leaf i is in the tree of size n' with root R(n')" made with the proof for n.
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    wrong = data.draw(other_than(size, 0, MAX_LEAVES), label="claimed size")
    with pytest.raises(VerificationError):
        verify_inclusion(index, wrong, leaves[index], proof, root_of(wrong))


@settings(deadline=None)
@given(positions(), st.sampled_from(["truncated", "extended", "prefixed"]))
def test_inclusion_with_a_proof_of_the_wrong_length_fails(
    case: tuple[int, int], damage: str
) -> None:
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    if damage == "truncated":
        if not proof:
            return
        proof = proof[:-1]
    elif damage == "extended":
        proof = [*proof, root_of(size)]
    else:
        proof = [leaves[index], *proof]
    with pytest.raises(ProofShapeError):
        verify_inclusion(index, size, leaves[index], proof, root_of(size))


@settings(deadline=None)
@given(positions(), st.data())
def test_inclusion_against_the_root_of_another_tree_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    other = data.draw(other_than(size, 0, MAX_LEAVES), label="size whose root is swapped in")
    with pytest.raises(RootMismatchError):
        verify_inclusion(index, size, leaves[index], proof, root_of(other))


@settings(deadline=None)
@given(positions(), st.data())
def test_inclusion_of_another_leaf_fails(case: tuple[int, int], data: st.DataObject) -> None:
    index, size = case
    nodes, leaves = big_tree()
    proof = inclusion_proof(index, size, nodes)
    other = data.draw(other_than(index, 0, MAX_LEAVES - 1), label="other leaf")
    with pytest.raises(RootMismatchError):
        verify_inclusion(index, size, leaves[other], proof, root_of(size))


@settings(deadline=None)
@given(growth(), st.data())
def test_consistency_with_a_flipped_bit_in_any_proof_hash_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    position = data.draw(st.integers(0, len(proof) - 1), label="proof element")
    bit = data.draw(st.integers(0, 255), label="bit")
    proof[position] = flip(proof[position], bit)
    with pytest.raises(RootMismatchError):
        verify_consistency(first, second, root_of(first), root_of(second), proof)


@settings(deadline=None)
@given(growth(), st.data())
def test_consistency_claimed_from_another_old_size_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    wrong = data.draw(other_than(first, 0, second), label="claimed old size")
    with pytest.raises(VerificationError):
        verify_consistency(wrong, second, root_of(wrong), root_of(second), proof)


@settings(deadline=None)
@given(growth(), st.data())
def test_consistency_claimed_to_another_new_size_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    wrong = data.draw(other_than(second, first, MAX_LEAVES), label="claimed new size")
    with pytest.raises(VerificationError):
        verify_consistency(first, wrong, root_of(first), root_of(wrong), proof)


@settings(deadline=None)
@given(growth(), st.sampled_from(["truncated", "extended", "prefixed"]))
def test_consistency_with_a_proof_of_the_wrong_length_fails(
    case: tuple[int, int], damage: str
) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    if damage == "truncated":
        proof = proof[:-1]
    elif damage == "extended":
        proof = [*proof, root_of(second)]
    else:
        proof = [root_of(first), *proof]
    with pytest.raises(ProofShapeError):
        verify_consistency(first, second, root_of(first), root_of(second), proof)


@settings(deadline=None)
@given(growth())
def test_consistency_with_the_roots_swapped_fails(case: tuple[int, int]) -> None:
    first, second = case
    proof = consistency_proof(first, second, big_tree()[0])
    with pytest.raises(RootMismatchError):
        verify_consistency(first, second, root_of(second), root_of(first), proof)


# =============================================================================================
# Storage cost: every proof is one batched read of O(log n) stored nodes.

HUGE = 1_000_003


class FakeHugeTree:
    """A NodeReader standing for a 1,000,003-leaf log: any existing node, hashed from its place."""

    def __init__(self) -> None:
        self.calls: list[list[Coord]] = []

    def get_nodes(self, coords: Sequence[Coord]) -> Mapping[Coord, bytes]:
        self.calls.append(list(coords))
        for level, index in coords:
            # Only perfect subtrees that are complete at this size can have been stored.
            assert level >= 0 and 0 <= index and (index + 1) << level <= HUGE, (level, index)
        return {coord: hashlib.sha256(repr(coord).encode()).digest() for coord in coords}


BOUND = 2 * math.ceil(math.log2(HUGE)) + 2
SAMPLE = sorted(
    {0, 1, 2, 3, 2**19 - 1, 2**19, 2**19 + 1, 999_999, HUGE - 3, HUGE - 2, HUGE - 1}
    | set(random.Random(9162).sample(range(HUGE), 30))
)


def one_small_read(reader: FakeHugeTree) -> None:
    assert len(reader.calls) == 1, f"{len(reader.calls)} get_nodes calls"
    coords = reader.calls[0]
    assert len(coords) <= BOUND, f"{len(coords)} nodes read, bound {BOUND}"
    assert len(set(coords)) == len(coords), "a node was asked for twice"


def test_a_root_is_one_read_of_at_most_one_node_per_level() -> None:
    for size in [1, 2, 2**19, 999_999, HUGE]:
        reader = FakeHugeTree()
        root_at(size, reader)
        one_small_read(reader)
        assert len(reader.calls[0]) == size.bit_count()


@pytest.mark.parametrize("index", SAMPLE)
def test_an_inclusion_proof_is_one_read_of_o_log_n_nodes(index: int) -> None:
    reader = FakeHugeTree()
    proof = inclusion_proof(index, HUGE, reader)
    one_small_read(reader)
    assert len(reader.calls[0]) <= 2 * math.ceil(math.log2(HUGE))
    assert len(proof) <= math.ceil(math.log2(HUGE))


@pytest.mark.parametrize("first", [m for m in SAMPLE if m > 0])
def test_a_consistency_proof_is_one_read_of_o_log_n_nodes(first: int) -> None:
    reader = FakeHugeTree()
    consistency_proof(first, HUGE, reader)
    one_small_read(reader)


def test_a_frontier_loads_in_one_read() -> None:
    reader = FakeHugeTree()
    frontier = Frontier.load(HUGE, reader)
    one_small_read(reader)
    assert frontier.size == HUGE and len(frontier.hashes) == HUGE.bit_count()
