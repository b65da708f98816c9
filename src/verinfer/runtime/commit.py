"""Trace and weights commitments: int32 tensors in keccak256 Merkle trees, and their proofs.

The byte layout is specified in ``docs/runtime-commitments.md`` so that a Solidity verifier
can reproduce it; in short:

* a tensor's int32 values, flattened in C order, are packed 8 per 32-byte word, big-endian
  two's complement (value ``i`` at byte ``4 * (i % 8)`` of word ``i // 8``), the last word
  zero-padded;
* the words are cut in chunks of 16 (512 bytes, 128 values; the last chunk may be shorter)
  and each chunk's keccak256 is a leaf of a binary tree with ``keccak256(left || right)``
  nodes, padded up to a power of two with zero subtrees ``Z[0] = 0^32``,
  ``Z[k+1] = keccak256(Z[k] || Z[k])``; one leaf is its own root. A 512-byte chunk costs
  four keccak permutations where sixteen raw-word leaves cost fifteen: committing a trace
  costs a third of what it would, and a proof still opens any value;
* ``tensor_leaf`` binds a tensor root to its shape and fixed-point scale, and ``commit_list``
  puts such leaves in the same kind of tree (trace root, weights root);
* proofs carry sibling hashes bottom-up and verify without rebuilding the tree.

Hashing runs in the C extension ``_keccak`` (written for verinfer: a whole tree level per
call, SIMD lanes where the CPU has them, and a worker thread for the executor's trace); without
it, pycryptodome does the same work, slower.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from Crypto.Hash import keccak as _pycryptodome_keccak

from verinfer.errors import ProofError

WORD_BYTES = 32
VALUES_PER_WORD = 8
CHUNK_WORDS = 16  # words per leaf of a tensor tree
CHUNK_BYTES = WORD_BYTES * CHUNK_WORDS
VALUES_PER_CHUNK = VALUES_PER_WORD * CHUNK_WORDS
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class CommitmentError(ProofError, ValueError):
    """A commitment or proof cannot be built from these inputs (empty tensor, bad index ...)."""


# ---- hashing backends ------------------------------------------------------------------


@dataclass(frozen=True)
class _Hasher:
    name: str
    keccak256: Callable[[bytes], bytes]
    hash_pairs: Callable[[bytes], bytes]  # keccak256 of each 64-byte chunk, concatenated
    merkle_root: Callable[[bytes], bytes]  # root of the padded tree over 32-byte words
    chunk_leaves: Callable[[bytes], bytes]  # keccak256 of each 16-word chunk, concatenated
    words_root: Callable[[bytes], bytes]  # tensor root of packed words


def _py_keccak256(data: bytes) -> bytes:
    return _pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def _py_hash_pairs(buf: bytes) -> bytes:
    if len(buf) % 64:
        raise ValueError(f"hash_pairs needs a multiple of 64 bytes, got {len(buf)}")
    new = _pycryptodome_keccak.new
    return b"".join(
        new(digest_bits=256, data=buf[i : i + 64]).digest() for i in range(0, len(buf), 64)
    )


def _zero_hashes(levels: int) -> tuple[bytes, ...]:
    zeros = [bytes(WORD_BYTES)]
    for _ in range(levels - 1):
        zeros.append(_py_keccak256(zeros[-1] * 2))
    return tuple(zeros)


ZERO_HASHES: tuple[bytes, ...] = _zero_hashes(64)
"""``ZERO_HASHES[k]`` is the root of a depth-k subtree of zero words (Z[k] in the spec)."""


def _py_merkle_root(words: bytes) -> bytes:
    if not words or len(words) % WORD_BYTES:
        raise ValueError(f"merkle_root needs a non-zero multiple of 32 bytes, got {len(words)}")
    level, buf = 0, bytes(words)
    while len(buf) > WORD_BYTES:
        if len(buf) % 64:
            buf += ZERO_HASHES[level]
        buf = _py_hash_pairs(buf)
        level += 1
    return buf


def _py_chunk_leaves(words: bytes) -> bytes:
    if not words or len(words) % WORD_BYTES:
        raise ValueError(f"chunk_leaves needs a non-zero multiple of 32 bytes, got {len(words)}")
    return b"".join(
        _py_keccak256(words[i : i + CHUNK_BYTES]) for i in range(0, len(words), CHUNK_BYTES)
    )


def _py_words_root(words: bytes) -> bytes:
    return _py_merkle_root(_py_chunk_leaves(words))


_PY_HASHER = _Hasher(
    "python", _py_keccak256, _py_hash_pairs, _py_merkle_root, _py_chunk_leaves, _py_words_root
)
try:
    from verinfer.runtime import _keccak

    _C_HASHER: _Hasher | None = _Hasher(
        "c",
        _keccak.keccak256,
        _keccak.hash_pairs,
        _keccak.merkle_root,
        _keccak.chunk_leaves,
        _keccak.words_root,
    )
except ImportError:  # installed without a C compiler: the pycryptodome fallback
    _C_HASHER = None
_hasher: _Hasher = _C_HASHER or _PY_HASHER

native: Any = _keccak if _C_HASHER is not None else None
"""The C extension, whose ``Committer`` hashes tensors on a worker thread (None without it)."""


def hash_backend() -> str:
    """Which keccak implementation is in use: ``"c:avx512"``, ``"c:scalar"``, ``"python"`` ..."""
    if _hasher is _C_HASHER:
        return f"c:{_keccak.get_impl()}"
    return _hasher.name


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak256 (original Keccak padding, not SHA3-256) of ``data``."""
    return _hasher.keccak256(data)


def tree_depth(n_leaves: int) -> int:
    """Depth of the padded tree over ``n_leaves >= 1`` leaves: ``ceil(log2(n_leaves))``."""
    if n_leaves < 1:
        raise CommitmentError(f"a tree needs at least one leaf, got {n_leaves}")
    return (n_leaves - 1).bit_length()


def n_words(n_values: int) -> int:
    """Number of 32-byte words that hold ``n_values`` packed int32 values."""
    return -(-n_values // VALUES_PER_WORD)


def n_chunks(n_values: int) -> int:
    """Number of leaves (16-word chunks) of the tree of a tensor of ``n_values`` values."""
    return -(-n_values // VALUES_PER_CHUNK)


# ---- packing -------------------------------------------------------------------------


def _as_int32(values: npt.ArrayLike) -> npt.NDArray[np.int32]:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise CommitmentError(
            f"tensor values must be integers, got dtype {arr.dtype}",
            hint="quantize the tensor to int32 first",
        )
    if arr.size == 0:
        raise CommitmentError(
            f"cannot commit to an empty tensor (shape {arr.shape})",
            hint="every committed tensor holds at least one value",
        )
    if not np.can_cast(arr.dtype, np.int32) and (
        int(arr.min()) < _INT32_MIN or int(arr.max()) > _INT32_MAX
    ):
        raise CommitmentError(
            f"tensor values must fit in int32, got range [{arr.min()}, {arr.max()}]",
            hint="saturate or rescale the tensor before committing",
        )
    return arr.astype(np.int32, copy=False)


def pack_words(values: npt.ArrayLike) -> bytes:
    """Pack int32 values (flattened in C order) 8 per 32-byte word, big-endian, zero-padded."""
    flat = _as_int32(values).reshape(-1)
    packed = flat.astype(">i4").tobytes()
    pad = (-flat.size) % VALUES_PER_WORD
    return packed + bytes(4 * pad) if pad else packed


def unpack_words(words: bytes, n_values: int) -> npt.NDArray[np.int32]:
    """Inverse of :func:`pack_words`: the first ``n_values`` values, as a flat int32 array."""
    if n_values < 1 or len(words) != WORD_BYTES * n_words(n_values):
        raise CommitmentError(
            f"{len(words)} bytes cannot hold exactly {n_values} packed values",
            hint="expect 32 * ceil(n_values / 8) bytes",
        )
    if any(words[4 * n_values :]):
        raise CommitmentError("the padding of the last word is not zero")
    return np.frombuffer(words, dtype=">i4", count=n_values).astype(np.int32)


# ---- roots and leaves ----------------------------------------------------------------


def merkle_root(words: bytes) -> bytes:
    """Root of the zero-subtree-padded keccak tree over concatenated 32-byte leaves."""
    if not words or len(words) % WORD_BYTES:
        raise CommitmentError(f"need a non-zero multiple of 32 bytes, got {len(words)}")
    return _hasher.merkle_root(words)


def chunk_leaves(words: bytes) -> bytes:
    """The leaves of a tensor tree: keccak256 of each 16-word chunk of packed words."""
    if not words or len(words) % WORD_BYTES:
        raise CommitmentError(f"need a non-zero multiple of 32 bytes, got {len(words)}")
    return _hasher.chunk_leaves(words)


def tensor_root(values: npt.ArrayLike) -> bytes:
    """Root of the Merkle tree over the 16-word chunks of an int32 tensor's packed words."""
    return _hasher.words_root(pack_words(values))


def tensor_leaf(root: bytes, shape: Sequence[int], scale: int) -> bytes:
    """``keccak256(root || uint8 ndim || uint32 dim_0 .. dim_{n-1} || int32 scale)``, packed."""
    if len(root) != WORD_BYTES:
        raise CommitmentError(f"a tensor root is 32 bytes, got {len(root)}")
    return _hasher.keccak256(root + leaf_suffix(shape, scale))


def leaf_suffix(shape: Sequence[int], scale: int) -> bytes:
    """What :func:`tensor_leaf` hashes after the root: a tensor's shape and scale, encoded
    (the executor works it out once per program)."""
    try:  # numpy integers too, never floats
        dims = [operator.index(d) for d in shape]
        scale = operator.index(scale)
    except TypeError as exc:
        raise CommitmentError(f"shape {shape!r} and scale {scale!r} must be integers") from exc
    if len(dims) > 255 or any(not 1 <= d < 2**32 for d in dims):
        raise CommitmentError(
            f"cannot commit shape {tuple(dims)}",
            hint="at most 255 dimensions, each between 1 and 2**32 - 1",
        )
    if not _INT32_MIN <= scale <= _INT32_MAX:
        raise CommitmentError(f"scale {scale} does not fit in int32")
    return b"".join(
        [bytes([len(dims)]), *(d.to_bytes(4, "big") for d in dims)]
        + [scale.to_bytes(4, "big", signed=True)]
    )


def commit_tensor(values: npt.ArrayLike, scale: int) -> bytes:
    """``tensor_leaf(tensor_root(values), shape of values, scale)``."""
    arr = _as_int32(values)
    return tensor_leaf(tensor_root(arr), arr.shape, scale)


def _join_leaves(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        raise CommitmentError(
            "cannot commit to an empty list of leaves",
            hint="a trace has at least one input; a model without constants has no weights root",
        )
    if any(len(leaf) != WORD_BYTES for leaf in leaves):
        raise CommitmentError("every leaf of a committed list is 32 bytes")
    return b"".join(leaves)


def commit_list(leaves: Sequence[bytes]) -> bytes:
    """Root of the padded keccak tree over a non-empty list of 32-byte leaves (in order)."""
    return _hasher.merkle_root(_join_leaves(leaves))


# ---- the tree, for making proofs -------------------------------------------------------


class MerkleTree:
    """Every level of the padded tree over 32-byte leaves, to answer for any node.

    ``node(level, index)`` is what a bisection game asks for; nodes past the stored ones are
    zero subtrees. Level 0 holds the leaves and level ``depth`` the root.
    """

    def __init__(self, leaves: bytes) -> None:
        if not leaves or len(leaves) % WORD_BYTES:
            raise CommitmentError(f"need a non-zero multiple of 32 bytes, got {len(leaves)}")
        self.n_leaves = len(leaves) // WORD_BYTES
        self.depth = tree_depth(self.n_leaves)
        levels = [bytes(leaves)]
        for level in range(self.depth):
            buf = levels[-1]
            if len(buf) % 64:
                buf += ZERO_HASHES[level]
            levels.append(_hasher.hash_pairs(buf))
        self._levels = levels

    @property
    def root(self) -> bytes:
        return self._levels[-1]

    def node(self, level: int, index: int) -> bytes:
        """Node ``index`` (from the left, 0-based) at ``level`` (0 = leaves)."""
        if not 0 <= level <= self.depth or not 0 <= index < 2 ** (self.depth - level):
            raise CommitmentError(f"no node {index} at level {level} in a depth-{self.depth} tree")
        start = WORD_BYTES * index
        stored = self._levels[level]
        return stored[start : start + WORD_BYTES] if start < len(stored) else ZERO_HASHES[level]

    def siblings(self, first: int, last: int) -> tuple[bytes, ...]:
        """Sibling hashes that prove leaves ``first..last`` (inclusive), in the order a
        verifier consumes them: per level, bottom-up, the left one (if any) then the right."""
        if not 0 <= first <= last < self.n_leaves:
            raise CommitmentError(f"leaves {first}..{last} are not in a {self.n_leaves}-leaf tree")
        out: list[bytes] = []
        for level in range(self.depth):
            if first % 2:
                out.append(self.node(level, first - 1))
            if last % 2 == 0:
                out.append(self.node(level, last + 1))
            first, last = first // 2, last // 2
        return tuple(out)


# ---- proofs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ElementProof:
    """Value ``index`` of a tensor: the chunk (up to 16 words) holding it and the chunk's
    sibling path, bottom-up."""

    index: int
    chunk: bytes
    siblings: tuple[bytes, ...]

    @property
    def value(self) -> int:
        offset = 4 * (self.index % VALUES_PER_CHUNK)
        return int.from_bytes(self.chunk[offset : offset + 4], "big", signed=True)


@dataclass(frozen=True)
class RangeProof:
    """Values ``start..end-1`` of a tensor: the chunks covering them and one multiproof."""

    start: int
    end: int
    chunks: tuple[bytes, ...]
    siblings: tuple[bytes, ...]

    @property
    def values(self) -> npt.NDArray[np.int32]:
        skip = self.start % VALUES_PER_CHUNK
        flat = np.frombuffer(b"".join(self.chunks), dtype=">i4")
        return flat[skip : skip + self.end - self.start].astype(np.int32)


@dataclass(frozen=True)
class ListProof:
    """Leaf ``index`` of a committed list and its sibling path, bottom-up."""

    index: int
    leaf: bytes
    siblings: tuple[bytes, ...]


def _chunks(words: bytes, first: int, last: int) -> tuple[bytes, ...]:
    return tuple(words[c * CHUNK_BYTES : (c + 1) * CHUNK_BYTES] for c in range(first, last + 1))


def element_proof(values: npt.ArrayLike, index: int) -> ElementProof:
    """Prove the value at flat (C-order) ``index`` of a tensor against its :func:`tensor_root`."""
    words = pack_words(values)
    n_values = np.size(values)
    if not 0 <= index < n_values:
        raise CommitmentError(f"index {index} is outside a tensor of {n_values} values")
    tree = MerkleTree(chunk_leaves(words))
    c = index // VALUES_PER_CHUNK
    return ElementProof(index, _chunks(words, c, c)[0], tree.siblings(c, c))


def range_proof(values: npt.ArrayLike, start: int, end: int) -> RangeProof:
    """Prove the contiguous values ``[start, end)`` (flat C order) with one multiproof."""
    words = pack_words(values)
    n_values = np.size(values)
    if not 0 <= start < end <= n_values:
        raise CommitmentError(f"range [{start}, {end}) is not a non-empty part of [0, {n_values})")
    tree = MerkleTree(chunk_leaves(words))
    first, last = start // VALUES_PER_CHUNK, (end - 1) // VALUES_PER_CHUNK
    return RangeProof(start, end, _chunks(words, first, last), tree.siblings(first, last))


def list_proof(leaves: Sequence[bytes], index: int) -> ListProof:
    """Prove leaf ``index`` of a list against its :func:`commit_list` root."""
    tree = MerkleTree(_join_leaves(leaves))
    if not 0 <= index < tree.n_leaves:
        raise CommitmentError(f"index {index} is outside a list of {tree.n_leaves} leaves")
    return ListProof(index, tree.node(0, index), tree.siblings(index, index))


# ---- verification, as a Solidity verifier does it ------------------------------------------


def _fold(
    first: int, nodes: Sequence[bytes], siblings: Sequence[bytes], depth: int
) -> bytes | None:
    """Hash the contiguous nodes ``first..`` up to the root, taking siblings in order.

    Returns None when the siblings do not fit the shape (too few, or some left over)."""
    if any(len(node) != WORD_BYTES for node in (*nodes, *siblings)):
        return None
    level_nodes, used = list(nodes), 0
    for _ in range(depth):
        last = first + len(level_nodes) - 1
        if first % 2:
            if used == len(siblings):
                return None
            level_nodes.insert(0, siblings[used])
            used, first = used + 1, first - 1
        if last % 2 == 0:
            if used == len(siblings):
                return None
            level_nodes.append(siblings[used])
            used += 1
        hashed = _hasher.hash_pairs(b"".join(level_nodes))
        level_nodes = [hashed[i : i + WORD_BYTES] for i in range(0, len(hashed), WORD_BYTES)]
        first //= 2
    if used != len(siblings) or len(level_nodes) != 1:
        return None
    return level_nodes[0]


def _verify_chunks(
    root: bytes, n_values: int, first: int, chunks: Sequence[bytes], siblings: Sequence[bytes]
) -> bool:
    """Chunks ``first..`` of a tensor of ``n_values`` values: each of the exact size its
    position calls for, zero padding after the last value, and a path up to ``root``."""
    total_words = n_words(n_values)
    for c, chunk in enumerate(chunks, start=first):
        size = WORD_BYTES * min(CHUNK_WORDS, total_words - c * CHUNK_WORDS)
        if size <= 0 or len(chunk) != size:
            return False
    if first + len(chunks) == n_chunks(n_values) and any(
        chunks[-1][4 * (n_values % VALUES_PER_CHUNK or VALUES_PER_CHUNK) :]
    ):
        return False  # padding slots of a tensor's last word must be zero
    leaves = [_hasher.keccak256(chunk) for chunk in chunks]
    return _fold(first, leaves, siblings, tree_depth(n_chunks(n_values))) == root


def verify_element(root: bytes, n_values: int, proof: ElementProof) -> bool:
    """True iff ``proof`` shows ``proof.value`` at ``proof.index`` of the tensor of
    ``n_values`` values whose root is ``root``."""
    if n_values < 1 or not 0 <= proof.index < n_values:
        return False
    return _verify_chunks(
        root, n_values, proof.index // VALUES_PER_CHUNK, [proof.chunk], proof.siblings
    )


def verify_range(root: bytes, n_values: int, proof: RangeProof) -> bool:
    """True iff ``proof`` shows ``proof.values`` at ``[start, end)`` of the tensor of
    ``n_values`` values whose root is ``root``."""
    if not 0 <= proof.start < proof.end <= n_values:
        return False
    first, last = proof.start // VALUES_PER_CHUNK, (proof.end - 1) // VALUES_PER_CHUNK
    if len(proof.chunks) != last - first + 1:
        return False
    return _verify_chunks(root, n_values, first, proof.chunks, proof.siblings)


def verify_list(root: bytes, n_leaves: int, proof: ListProof) -> bool:
    """True iff ``proof`` shows ``proof.leaf`` at ``proof.index`` of the ``n_leaves``-leaf list
    committed by ``root``."""
    if not 0 <= proof.index < n_leaves:
        return False
    return _fold(proof.index, [proof.leaf], proof.siblings, tree_depth(n_leaves)) == root
