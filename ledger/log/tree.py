"""RFC 9162 §2.1 roots, inclusion paths (§2.1.3.1), consistency proofs (§2.1.4.1) from stored nodes.

Storage keeps only hashes of *perfect* subtrees, addressed as `(level, index)`: level 0 holds
the leaf hashes and node (l, i) is the root of the perfect subtree over leaves
[i·2^l, (i+1)·2^l). Such a node never changes once its last leaf exists, so it can be written
once at append time. Every hash an RFC 9162 tree of any size needs is either one of those nodes
or a right-edge node over [x, size), which is folded here from the perfect subtrees covering it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, cast

from ledger.errors import StorageError
from ledger.log.hasher import EMPTY_ROOT, HASH_SIZE, node_hash

Coord = tuple[int, int]
"""(level, index) of a perfect subtree: leaves [index·2^level, (index+1)·2^level)."""

NewNode = tuple[int, int, bytes]
"""(level, index, hash) of a node that became complete on append and should be stored."""


class NodeReader(Protocol):
    """Batch read of stored perfect-subtree hashes."""

    def get_nodes(self, coords: Sequence[Coord]) -> Mapping[Coord, bytes]:
        """Return the hash of every requested coordinate, or raise; never a partial answer."""
        ...


def perfect_subtrees(begin: int, end: int) -> list[Coord]:
    """Split the leaf range [begin, end) into maximal aligned perfect subtrees, left to right.

    Precondition: 0 <= begin <= end (ValueError otherwise).

    For [0, n) this is one subtree per set bit of n, largest first. For a range that is itself
    a node of an RFC 9162 tree (a perfect block, or a right-edge range [x, n) where x is a
    multiple of a power of two >= n - x) folding the hashes right to left gives its MTH.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"need 0 <= begin <= end, got [{begin}, {end})")
    coords: list[Coord] = []
    while begin < end:
        # The block starting at `begin` can be no larger than what remains of the range...
        level = (end - begin).bit_length() - 1
        if begin:
            # ...and must start on a multiple of its own size to be a node of the tree.
            level = min(level, (begin & -begin).bit_length() - 1)
        coords.append((level, begin >> level))
        begin += 1 << level
    return coords


def _split(width: int) -> int:
    """RFC 9162 §2.1.1's k: the largest power of two smaller than `width` (width >= 2)."""
    return 1 << ((width - 1).bit_length() - 1)


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of adjacent perfect subtrees given largest first: the right fold of node_hash."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def _read(reader: NodeReader, coords: Sequence[Coord]) -> Mapping[Coord, bytes]:
    """One batched read, checked: a missing or malformed node means the store is inconsistent."""
    found = reader.get_nodes(coords)
    for coord in coords:
        value = found.get(coord)
        if value is None or len(value) != HASH_SIZE:
            raise StorageError(f"node store returned no valid hash for node (level, index) {coord}")
    return found


def _range_hashes(ranges: Sequence[tuple[int, int]], reader: NodeReader) -> list[bytes]:
    """MTH of each leaf range, all from a single get_nodes call (none when `ranges` is empty)."""
    plans = [perfect_subtrees(begin, end) for begin, end in ranges]
    coords = [coord for plan in plans for coord in plan]
    if not coords:
        return []
    found = _read(reader, coords)
    return [_fold([found[coord] for coord in plan]) for plan in plans]


def root_at(size: int, reader: NodeReader) -> bytes:
    """RFC 9162 MTH(D[size]) of the first `size` leaves; one get_nodes call of popcount(size) nodes.

    Precondition: size >= 0 (ValueError otherwise); size 0 gives EMPTY_ROOT without a read.
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes([(0, size)], reader)[0]


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]), siblings from the leaf up; one get_nodes call.

    Precondition: 0 <= index < size (ValueError otherwise). Reads at most 2·ceil(log2 size)
    nodes: one per level, plus the perfect pieces of the single right-edge sibling.
    """
    if not 0 <= index < size:
        raise ValueError(f"need 0 <= index < size, got index {index}, size {size}")
    # Walk the RFC's recursion top-down over absolute leaf ranges: each step keeps the half
    # holding `index` and records the other half, whose MTH is the proof element at that level.
    siblings: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()  # PATH lists the deepest sibling first.
    return _range_hashes(siblings, reader)


def inclusion_proofs(
    indexes: Sequence[int], size: int, reader: NodeReader, chunk: int = 10_000
) -> dict[int, list[bytes]]:
    """inclusion_proof for many leaves of one tree, reading each needed node once.

    Precondition: 0 <= index < size for every index (ValueError otherwise). Proofs of
    nearby leaves share most of their upper siblings, so the nodes are gathered, deduplicated
    and read in batches of at most `chunk` coordinates: an evidence bundle of ten thousand
    entries costs a few queries, not ten thousand.
    """
    paths: dict[int, list[Coord]] = {}  # (-1, lo) stands for the right-edge sibling [lo, size)
    edges: dict[int, list[Coord]] = {}  # right-edge siblings [lo, size), by lo
    for index in indexes:
        if not 0 <= index < size:
            raise ValueError(f"need 0 <= index < size, got index {index}, size {size}")
        # The walk of inclusion_proof. A sibling left of the path, or right of it below
        # the right edge, is one perfect subtree; only a sibling that ends at `size` is
        # folded from several, and there are at most log2(size) of those in all.
        siblings: list[Coord] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)  # _split, inlined: the hot loop
            if index < lo + k:
                if hi == size and (hi - lo - k) & (hi - lo - k - 1):
                    siblings.append((-1, lo + k))
                    if lo + k not in edges:
                        edges[lo + k] = perfect_subtrees(lo + k, size)
                else:
                    level = (hi - lo - k).bit_length() - 1
                    siblings.append((level, (lo + k) >> level))
                hi = lo + k
            else:
                level = k.bit_length() - 1
                siblings.append((level, lo >> level))
                lo += k
        siblings.reverse()
        paths[index] = siblings
    coords = {c for path in paths.values() for c in path if c[0] >= 0}
    coords.update(c for plan in edges.values() for c in plan)
    wanted = sorted(coords)
    found: dict[Coord, bytes] = {}
    for start in range(0, len(wanted), chunk):
        found.update(_read(reader, wanted[start : start + chunk]))
    folded = {lo: _fold([found[c] for c in plan]) for lo, plan in edges.items()}
    return {
        index: [found[c] if c[0] >= 0 else folded[c[1]] for c in path]
        for index, path in paths.items()
    }


def consistency_proof(first: int, second: int, reader: NodeReader) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(first, D[second]); one get_nodes call (none when first == second).

    Precondition: 0 < first <= second (ValueError otherwise); first == second gives [].
    Reads at most 2·ceil(log2 second) + 1 nodes.
    """
    if not 0 < first <= second:
        raise ValueError(f"need 0 < first <= second, got first {first}, second {second}")
    # SUBPROOF(m, D[lo:hi], whole) unrolled top-down; `whole` is the RFC's flag b, true while the
    # old tree is all of [lo, hi) so its root is the verifier's own first_root and is left out.
    parts: list[tuple[int, int]] = []
    lo, hi, whole = 0, second, True
    while first != hi:
        k = _split(hi - lo)
        if first - lo <= k:
            parts.append((lo + k, hi))
            hi = lo + k
        else:
            parts.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        parts.append((lo, hi))
    parts.reverse()  # SUBPROOF appends on the way back up, so the deepest part comes first.
    return _range_hashes(parts, reader)


class Frontier:
    """The right edge of an append-only tree: hashes of the perfect subtrees of [0, size).

    That is all appending needs: a new leaf merges with each equal-sized subtree on its left.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Precondition: `hashes` are the perfect_subtrees(0, size) hashes, largest first.

        Checked: size >= 0, len(hashes) == popcount(size), each hash HASH_SIZE bytes (ValueError).
        """
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} perfect subtrees, got {len(hashes)}"
            )
        for position, value in enumerate(hashes):
            if len(value) != HASH_SIZE:
                raise ValueError(f"subtree hash {position} is {len(value)} bytes, not {HASH_SIZE}")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def load(cls, size: int, reader: NodeReader) -> Frontier:
        """The frontier of the first `size` stored leaves, from one get_nodes call.

        Precondition: size >= 0 (ValueError otherwise).
        """
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        coords = perfect_subtrees(0, size)
        if not coords:
            return cls()
        found = _read(reader, coords)
        return cls(size, [found[coord] for coord in coords])

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Hashes of perfect_subtrees(0, size), largest first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[NewNode]:
        """Append one leaf hash; return the nodes it completes, leaf first, then each new parent.

        Precondition: `leaf` is a HASH_SIZE-byte leaf hash (ValueError otherwise), e.g.
        hasher.leaf_hash(entry_bytes).
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")
        index = self._size
        created: list[NewNode] = [(0, index, leaf)]
        current, level, position = leaf, 0, index
        # Each trailing 1 bit of the old size is a perfect subtree exactly as tall as `current`
        # ending right before it: merging them completes their parent, one level up.
        while position & 1:
            current = node_hash(self._hashes.pop(), current)
            level += 1
            position >>= 1
            created.append((level, position, current))
        self._hashes.append(current)
        self._size = index + 1
        return created

    def root(self) -> bytes:
        """RFC 9162 MTH of the leaves appended so far (EMPTY_ROOT when none)."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT


class MemoryNodes:
    """A NodeReader held in memory: one list of hashes per level, indexed by position."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        # Lists, not a dict keyed by tuples: nodes arrive in index order per level, and a list
        # slot costs 8 bytes where a dict entry plus its tuple key costs over 100.
        self._levels: list[list[bytes | None]] = []

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MemoryNodes:
        """Every perfect subtree over the given leaf hashes, built level by level.

        Precondition: each leaf hash is HASH_SIZE bytes (ValueError otherwise).
        """
        level: list[bytes] = []
        for position, value in enumerate(leaf_hashes):
            if len(value) != HASH_SIZE:
                raise ValueError(f"leaf hash {position} is {len(value)} bytes, not {HASH_SIZE}")
            level.append(value)
        nodes = cls()
        while level:
            # cast, not copy: these rows are complete, so they never hold the None placeholder.
            nodes._levels.append(cast("list[bytes | None]", level))
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        return nodes

    @property
    def size(self) -> int:
        """One past the highest leaf stored (the tree size when leaves were stored in order)."""
        return len(self._levels[0]) if self._levels else 0

    def put(self, level: int, index: int, value: bytes) -> None:
        """Store node (level, index).

        Preconditions (ValueError): level, index >= 0; value is HASH_SIZE bytes; a node already
        stored is only ever stored again with the same hash, since perfect subtrees never change.
        """
        if level < 0 or index < 0:
            raise ValueError(f"node coordinates must be >= 0, got ({level}, {index})")
        if len(value) != HASH_SIZE:
            raise ValueError(f"node hash must be {HASH_SIZE} bytes, got {len(value)}")
        while len(self._levels) <= level:
            self._levels.append([])
        row = self._levels[level]
        if index == len(row):  # the append-in-order case
            row.append(value)
        elif index > len(row):
            row.extend([None] * (index - len(row)))
            row.append(value)
        elif row[index] is None:
            row[index] = value
        elif row[index] != value:
            raise ValueError(f"node ({level}, {index}) is already stored with a different hash")

    def put_all(self, nodes: Iterable[NewNode]) -> None:
        """Store every (level, index, hash), e.g. the result of Frontier.append."""
        for level, index, value in nodes:
            self.put(level, index, value)

    def get(self, level: int, index: int) -> bytes | None:
        """The stored hash of node (level, index), or None."""
        if level < 0 or index < 0 or level >= len(self._levels):
            return None
        row = self._levels[level]
        return row[index] if index < len(row) else None

    def get_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        """NodeReader: every requested hash, or StorageError naming the first one missing."""
        found: dict[Coord, bytes] = {}
        for level, index in coords:
            value = self.get(level, index)
            if value is None:
                raise StorageError(f"node (level, index) ({level}, {index}) is not stored")
            found[(level, index)] = value
        return found
