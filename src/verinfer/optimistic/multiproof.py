"""Sparse multiproofs: one proof for an arbitrary sorted set of chunks of a committed tensor.

A tensor's tree is the one of ``docs/runtime-commitments.md`` (section 2): 16-word chunks of
packed int32 values are the leaves, padded with zero subtrees. A :class:`SparseProof` carries
the chunks ``chunk_ids`` (strictly increasing) and, per level bottom-up and left to right,
one sibling for every known node whose sibling the known set does not already supply
(padding siblings ``Z[level]`` included). For a contiguous run of chunks this is exactly the
range proof of section 5.2; for one chunk, the element proof of 5.1. A conv window touches
non-contiguous values: its chunks share the upper part of their paths, sent once.

``contracts/src/optimistic/TensorProofs.sol`` verifies the same proofs; :func:`verify_sparse`
is the Python reference of that verifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from verinfer.runtime.commit import (
    CHUNK_BYTES,
    VALUES_PER_CHUNK,
    WORD_BYTES,
    CommitmentError,
    MerkleTree,
    chunk_leaves,
    keccak256,
    n_chunks,
    n_words,
    pack_words,
    tree_depth,
)


@dataclass(frozen=True)
class SparseProof:
    """Chunks ``chunk_ids`` (strictly increasing) of a tensor and their sparse multiproof."""

    chunk_ids: tuple[int, ...]
    chunks: tuple[bytes, ...]
    siblings: tuple[bytes, ...]

    def value(self, index: int) -> int:
        """Value ``index`` (flat, C order), from the chunk that holds it."""
        c = index // VALUES_PER_CHUNK
        if c not in self.chunk_ids:
            raise CommitmentError(f"value {index} is not in the opened chunks {self.chunk_ids}")
        chunk = self.chunks[self.chunk_ids.index(c)]
        offset = 4 * (index % VALUES_PER_CHUNK)
        return int.from_bytes(chunk[offset : offset + 4], "big", signed=True)


def chunk_ids_for(indices: Iterable[int]) -> tuple[int, ...]:
    """The sorted, distinct chunks that hold the values at flat ``indices``."""
    return tuple(sorted({int(i) // VALUES_PER_CHUNK for i in indices}))


class CommittedTensor:
    """A tensor's packed words and chunk tree, kept to answer many proofs."""

    def __init__(self, values: npt.ArrayLike) -> None:
        self.n = int(np.size(values))
        self.words = pack_words(values)
        self.tree = MerkleTree(chunk_leaves(self.words))

    @property
    def root(self) -> bytes:
        return self.tree.root

    @cached_property
    def n_chunks(self) -> int:
        return n_chunks(self.n)

    def prove(self, indices: Iterable[int]) -> SparseProof:
        """A sparse multiproof of the chunks holding the values at flat ``indices``."""
        bad = [i for i in indices if not 0 <= int(i) < self.n]
        ids = chunk_ids_for(indices)
        if bad or not ids:
            raise CommitmentError(
                f"cannot open values {bad[:4] or 'none'} of a tensor of {self.n} values"
            )
        chunks = tuple(self.words[c * CHUNK_BYTES : (c + 1) * CHUNK_BYTES] for c in ids)
        return SparseProof(ids, chunks, sparse_siblings(self.tree, ids))


def sparse_siblings(tree: MerkleTree, ids: Sequence[int]) -> tuple[bytes, ...]:
    """The siblings that prove leaves ``ids`` (strictly increasing), in the order the
    verifier consumes them: per level bottom-up, left to right, only where needed."""
    known, out = list(ids), []
    for level in range(tree.depth):
        parents, r = [], 0
        while r < len(known):
            i = known[r]
            if i % 2:  # a right child whose left sibling is not known
                out.append(tree.node(level, i - 1))
                r += 1
            elif r + 1 < len(known) and known[r + 1] == i + 1:
                r += 2
            else:
                out.append(tree.node(level, i + 1))
                r += 1
            parents.append(i // 2)
        known = parents
    return tuple(out)


def verify_sparse(root: bytes, n: int, proof: SparseProof) -> bool:
    """True iff ``proof`` opens chunks of the tensor (``root``, ``n`` values): the reference
    of ``TensorProofs.verify`` (chunk set, exact chunk lengths, zero padding, exact sibling
    count, root)."""
    if n < 1 or not proof.chunk_ids or len(proof.chunk_ids) != len(proof.chunks):
        return False
    k, words = n_chunks(n), n_words(n)
    ids = list(proof.chunk_ids)
    if any(not 0 <= c < k for c in ids) or any(b <= a for a, b in zip(ids, ids[1:], strict=False)):
        return False
    hashes = []
    for c, chunk in zip(ids, proof.chunks, strict=True):
        if len(chunk) != WORD_BYTES * min(16, words - 16 * c):
            return False
        if c == k - 1:
            used = n - 8 * (words - 1)
            if any(chunk[len(chunk) - WORD_BYTES + 4 * used :]):
                return False
        hashes.append(keccak256(chunk))
    sib, used_sib = proof.siblings, 0
    for _ in range(tree_depth(k)):
        nxt_ids, nxt_h, r = [], [], 0
        while r < len(ids):
            i = ids[r]
            if i % 2 or not (r + 1 < len(ids) and ids[r + 1] == i + 1):
                if used_sib == len(sib):
                    return False
                s = sib[used_sib]
                used_sib += 1
                pair = s + hashes[r] if i % 2 else hashes[r] + s
                r += 1
            else:
                pair = hashes[r] + hashes[r + 1]
                r += 2
            nxt_ids.append(i // 2)
            nxt_h.append(keccak256(pair))
        ids, hashes = nxt_ids, nxt_h
    return used_sib == len(sib) and hashes == [root]
