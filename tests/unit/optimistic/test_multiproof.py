"""Sparse multiproofs (verinfer.optimistic.multiproof) against the spec's trees and proofs:
every proof verifies in the reference verifier, and any tampering is rejected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verinfer.optimistic import CommittedTensor, SparseProof, chunk_ids_for, verify_sparse
from verinfer.optimistic.multiproof import sparse_siblings
from verinfer.runtime.commit import (
    ZERO_HASHES,
    CommitmentError,
    MerkleTree,
    chunk_leaves,
    element_proof,
    range_proof,
    tensor_root,
)


@st.composite
def tensors_and_chunks(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...]]:
    n = draw(st.integers(1, 2500))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(-(2**31), 2**31, size=n, dtype=np.int64)
    k = -(-n // 128)
    ids = draw(st.sets(st.integers(0, k - 1), min_size=1, max_size=k))
    return values, tuple(sorted(ids))


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


@settings(max_examples=150, deadline=None)
@given(case=tensors_and_chunks(), bit=st.integers(0, 4095), pick=st.integers(0, 10**6))
def test_every_sparse_proof_verifies_and_a_flipped_bit_fails(
    case: tuple[np.ndarray, tuple[int, ...]], bit: int, pick: int
) -> None:
    values, ids = case
    t = CommittedTensor(values)
    assert t.root == tensor_root(values)
    proof = t.prove([c * 128 for c in ids])
    assert proof.chunk_ids == ids
    assert verify_sparse(t.root, t.n, proof)
    for c in ids:  # the opened values are the tensor's
        i = min(c * 128 + pick % 128, t.n - 1)
        assert proof.value(i) == values[i]
    chunks = list(proof.chunks)
    at = pick % len(chunks)
    chunks[at] = _flip(chunks[at], bit)
    assert not verify_sparse(t.root, t.n, SparseProof(ids, tuple(chunks), proof.siblings))
    if proof.siblings:
        sibs = list(proof.siblings)
        sibs[pick % len(sibs)] = _flip(sibs[pick % len(sibs)], bit)
        assert not verify_sparse(t.root, t.n, SparseProof(ids, proof.chunks, tuple(sibs)))
        assert not verify_sparse(t.root, t.n, SparseProof(ids, proof.chunks, proof.siblings[:-1]))
    extra = SparseProof(ids, proof.chunks, (*proof.siblings, bytes(32)))
    assert not verify_sparse(t.root, t.n, extra)


@settings(max_examples=60, deadline=None)
@given(case=tensors_and_chunks())
def test_contiguous_and_single_chunks_match_the_spec_proofs(
    case: tuple[np.ndarray, tuple[int, ...]],
) -> None:
    values, ids = case
    t = CommittedTensor(values)
    first, last = ids[0], ids[-1]
    run = t.prove(range(first * 128, min((last + 1) * 128, t.n)))
    spec = range_proof(values, first * 128, min((last + 1) * 128, t.n))
    assert run.chunks == spec.chunks and run.siblings == spec.siblings
    one = t.prove([first * 128])
    elem = element_proof(values, first * 128)
    assert one.chunks == (elem.chunk,) and one.siblings == elem.siblings


def test_worked_example_of_the_spec() -> None:
    z = np.arange(-150, 150)
    t = CommittedTensor(z)
    assert t.root.hex() == "90ed5acf15747b504b857d357f88d4dbfc1c55869a35dccb1c6218f9853e5381"
    assert t.prove(range(100, 300)).siblings == (ZERO_HASHES[0],)
    sparse = t.prove([5, 290])  # chunks 0 and 2: L1 at level 0, then nothing more
    assert sparse.chunk_ids == (0, 2)
    assert sparse.siblings == (t.tree.node(0, 1), ZERO_HASHES[0])
    assert verify_sparse(t.root, 300, sparse)
    assert sparse.value(290) == 140


@pytest.mark.parametrize("n", [3, 130, 300])
def test_bad_chunk_lengths_and_nonzero_padding_are_rejected(n: int) -> None:
    values = np.arange(1, n + 1)
    t = CommittedTensor(values)
    last = t.n_chunks - 1
    proof = t.prove([n - 1])
    assert verify_sparse(t.root, n, proof)
    longer = SparseProof(proof.chunk_ids, (proof.chunks[0] + bytes(32),), proof.siblings)
    assert not verify_sparse(t.root, n, longer)
    # Non-zero padding under a root that commits to it: only the padding rule rejects it.
    words = bytearray(t.words)
    words[-1] = 1
    tree = MerkleTree(chunk_leaves(bytes(words)))
    bad = bytes(words[last * 512 :])
    forged = SparseProof((last,), (bad,), sparse_siblings(tree, (last,)))
    assert not verify_sparse(tree.root, n, forged)
    assert verify_sparse(tree.root, n + (n % 8 != 0) * (8 - n % 8), forged)  # as a bigger tensor


def test_bad_chunk_sets_are_rejected() -> None:
    t = CommittedTensor(np.arange(1000))
    proof = t.prove([0, 300])
    swapped = SparseProof(proof.chunk_ids[::-1], proof.chunks[::-1], proof.siblings)
    assert not verify_sparse(t.root, t.n, swapped)
    assert not verify_sparse(t.root, t.n, SparseProof((), (), ()))
    assert not verify_sparse(t.root, 0, proof)
    assert chunk_ids_for([300, 5, 130, 7]) == (0, 1, 2)
    with pytest.raises(CommitmentError):
        t.prove([1000])
    with pytest.raises(CommitmentError):
        proof.value(200)
