"""Trace/weights commitments: packing, keccak (C and fallback), trees, proofs, tampering."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from eth_hash.auto import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verinfer.errors import ProofError
from verinfer.runtime import commit
from verinfer.runtime.commit import (
    ZERO_HASHES,
    CommitmentError,
    ElementProof,
    ListProof,
    MerkleTree,
    RangeProof,
    commit_list,
    commit_tensor,
    element_proof,
    keccak256,
    list_proof,
    merkle_root,
    n_chunks,
    n_words,
    pack_words,
    range_proof,
    tensor_leaf,
    tensor_root,
    tree_depth,
    unpack_words,
    verify_element,
    verify_list,
    verify_range,
)

try:
    from verinfer.runtime import _keccak

    C_IMPLS: tuple[str, ...] = _keccak.impls()
except ImportError:
    C_IMPLS = ()
HASHERS = ["python", *(f"c:{impl}" for impl in C_IMPLS)]

int32s = st.integers(-(2**31), 2**31 - 1)
# Mostly small values, so that equal words (and so colliding subtrees) happen too.
elements = st.one_of(st.integers(-2, 2), int32s)
tensors = hnp.arrays(
    np.int32, hnp.array_shapes(min_dims=0, max_dims=3, max_side=7), elements=elements
)
# Up to 5 chunks (128 values each), so that proofs cross chunk boundaries and tree levels.
flat_tensors = hnp.arrays(np.int32, st.integers(1, 600), elements=elements)
words32 = st.binary(min_size=32, max_size=32)


@contextmanager
def using(hasher: str) -> Iterator[None]:
    """Run commit.py on one backend ("python", "c:scalar", "c:avx2", ...)."""
    saved_hasher = commit._hasher
    saved_impl = _keccak.get_impl() if commit._C_HASHER else None
    if hasher == "python":
        commit._hasher = commit._PY_HASHER
    else:
        assert commit._C_HASHER is not None
        commit._hasher = commit._C_HASHER
        _keccak.set_impl(hasher.removeprefix("c:"))
    try:
        yield
    finally:
        commit._hasher = saved_hasher
        if saved_impl is not None:
            _keccak.set_impl(saved_impl)


def flip(data: bytes, bit: int) -> bytes:
    bit %= 8 * len(data)
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def reference_root(words: bytes) -> bytes:
    """The spec read literally: pad with zero WORDS to a power of two, hash every node."""
    leaves = [words[i : i + 32] for i in range(0, len(words), 32)]
    while len(leaves) & (len(leaves) - 1):
        leaves.append(bytes(32))
    while len(leaves) > 1:
        leaves = [eth_keccak(leaves[i] + leaves[i + 1]) for i in range(0, len(leaves), 2)]
    return leaves[0]


def reference_tensor_root(words: bytes) -> bytes:
    """Chunks of 16 words hashed into leaves, then the tree above, hashing every node."""
    return reference_root(
        b"".join(eth_keccak(words[i : i + 512]) for i in range(0, len(words), 512))
    )


# ---- keccak -------------------------------------------------------------------------------


def test_c_extension_is_built() -> None:
    assert commit._C_HASHER is not None, "verinfer.runtime._keccak did not build; pip install -e ."
    assert commit.hash_backend().startswith("c:")


@pytest.mark.parametrize("hasher", HASHERS)
def test_keccak_known_vectors(hasher: str) -> None:
    with using(hasher):
        assert keccak256(b"").hex() == (
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        )
        assert keccak256(b"abc").hex() == (
            "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
        )
        # Deposit-contract zero hashes, i.e. keccak256(0^64) and the next level.
        assert commit.merkle_root(bytes(64)).hex() == (
            "ad3228b676f7d3cd4284a5443f17f1962b36e491b30a40b2405849e597ba5fb5"
        )
        assert commit.merkle_root(bytes(128)).hex() == (
            "b4c11951957c6f8f642c4af61cd6b24640fec6dc7fc607ee8206a99e92410d30"
        )


@pytest.mark.parametrize("length", [0, 1, 63, 64, 65, 135, 136, 137, 271, 272, 273, 5000])
@pytest.mark.parametrize("hasher", HASHERS)
def test_keccak_block_boundaries_match_eth_hash(hasher: str, length: int) -> None:
    data = bytes((7 * i + length) % 256 for i in range(length))
    with using(hasher):
        assert keccak256(data) == eth_keccak(data)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_keccak_matches_eth_hash(data: bytes) -> None:
    for hasher in HASHERS:
        with using(hasher):
            assert keccak256(data) == eth_keccak(data)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 21).flatmap(lambda n: st.binary(min_size=64 * n, max_size=64 * n)))
def test_hash_pairs_c_equals_fallback(buf: bytes) -> None:
    expected = commit._py_hash_pairs(buf)
    assert expected == b"".join(eth_keccak(buf[i : i + 64]) for i in range(0, len(buf), 64))
    for impl in C_IMPLS:
        with using(f"c:{impl}"):
            assert _keccak.hash_pairs(buf) == expected
            assert _keccak.hash_pairs(bytearray(buf)) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)))
def test_merkle_root_c_equals_fallback_and_reference(words: bytes) -> None:
    expected = reference_root(words)
    for hasher in HASHERS:
        with using(hasher):
            assert merkle_root(words) == expected
            assert MerkleTree(words).root == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 90).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)))
def test_chunk_leaves_and_words_root_c_equal_fallback(words: bytes) -> None:
    leaves = b"".join(eth_keccak(words[i : i + 512]) for i in range(0, len(words), 512))
    assert commit._py_chunk_leaves(words) == leaves
    assert commit._py_words_root(words) == reference_tensor_root(words)
    for impl in C_IMPLS:
        with using(f"c:{impl}"):
            assert _keccak.chunk_leaves(words) == leaves
            assert _keccak.words_root(words) == reference_tensor_root(words)


def test_c_rejects_bad_lengths() -> None:
    if not C_IMPLS:
        pytest.skip("no C extension")
    with pytest.raises(ValueError):
        _keccak.hash_pairs(bytes(65))
    with pytest.raises(ValueError):
        _keccak.merkle_root(b"")
    for fn in (_keccak.chunk_leaves, _keccak.words_root):
        for bad in (b"", bytes(33)):
            with pytest.raises(ValueError):
                fn(bad)
    with pytest.raises(ValueError):
        _keccak.set_impl("no-such-impl")


# ---- packing --------------------------------------------------------------------------------


@given(tensors)
def test_pack_round_trip(values: np.ndarray) -> None:
    words = pack_words(values)
    assert len(words) == 32 * n_words(values.size)
    assert np.array_equal(unpack_words(words, values.size), values.reshape(-1))


@given(flat_tensors, st.data())
def test_packed_value_reads_as_in_solidity(values: np.ndarray, data: st.DataObject) -> None:
    words = pack_words(values)
    i = data.draw(st.integers(0, values.size - 1))
    word = int.from_bytes(words[32 * (i // 8) : 32 * (i // 8) + 32], "big")
    k = i % 8
    raw = (word >> (224 - 32 * k)) & 0xFFFFFFFF  # uint32(uint256(word) >> (224 - 32*k))
    assert raw - (1 << 32 if raw >> 31 else 0) == values[i]  # int32(...)


def test_packing_layout_and_c_order() -> None:
    values = np.array([[1, -1, 2], [-2, 3, 2**31 - 1], [-(2**31), 0, 7]], dtype=np.int32)
    assert pack_words(values).hex() == (
        "00000001ffffffff00000002fffffffe000000037fffffff800000000000000000000007" + "00" * 28
    )
    assert pack_words(values.T) == pack_words(np.ascontiguousarray(values.T))
    assert pack_words(np.int32(5)) == (5).to_bytes(4, "big") + bytes(28)


def test_packing_accepts_other_integer_dtypes_in_range() -> None:
    expected = pack_words(np.array([0, -3, 7], dtype=np.int32))
    assert pack_words([0, -3, 7]) == expected
    assert pack_words(np.array([0, -3, 7], dtype=np.int8)) == expected
    assert pack_words(np.array([2**31 - 1], dtype=np.uint32)) == pack_words([2**31 - 1])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(0, dtype=np.int32),
        np.zeros((3, 0), dtype=np.int32),
        [],
        np.array([1.5]),
        np.array([True]),
        np.array([2**31], dtype=np.int64),
        np.array([-(2**31) - 1], dtype=np.int64),
        np.array([2**32 - 1], dtype=np.uint32),
        [2**70],
    ],
)
def test_packing_refuses_bad_tensors(bad: object) -> None:
    with pytest.raises(CommitmentError) as info:
        pack_words(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, ProofError)
    with pytest.raises(ValueError):
        tensor_root(bad)  # type: ignore[arg-type]


def test_unpack_refuses_bad_input() -> None:
    with pytest.raises(CommitmentError):
        unpack_words(bytes(32), 9)
    with pytest.raises(CommitmentError):
        unpack_words(bytes(32), 0)
    with pytest.raises(CommitmentError, match="padding"):
        unpack_words(bytes(31) + b"\x01", 7)


# ---- roots -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_values", [1, 9, 128, 129, 300, 1100])
@pytest.mark.parametrize("hasher", HASHERS)
def test_chunks_and_zero_subtree_padding(hasher: str, n_values: int) -> None:
    values = np.arange(1, n_values + 1, dtype=np.int32) * -7919
    words = pack_words(values)
    h = eth_keccak
    with using(hasher):
        root = tensor_root(values)
        assert root == reference_tensor_root(words)
        if n_values <= 128:
            assert root == h(words)  # one chunk: its hash is the root
        if n_values == 300:  # chunks of 16, 16 and 6 words; the third next to Z[0]
            c = [h(words[i : i + 512]) for i in (0, 512, 1024)]
            assert root == h(h(c[0] + c[1]) + h(c[2] + ZERO_HASHES[0]))
        if n_values == 1100:  # 9 chunks, 16 leaves: the last chunk next to Z[0], Z[1], Z[2]
            tree = MerkleTree(commit.chunk_leaves(words))
            assert tree.depth == 4 == tree_depth(n_chunks(n_values))
            assert [tree.node(k, 2 ** (3 - k) + 1) for k in range(3)] == list(ZERO_HASHES[:3])


def test_zero_hashes() -> None:
    assert ZERO_HASHES[0] == bytes(32)
    for k in range(1, 10):
        assert ZERO_HASHES[k] == eth_keccak(ZERO_HASHES[k - 1] * 2)


@settings(max_examples=40, deadline=None)
@given(tensors, st.integers(-(2**31), 2**31 - 1))
def test_c_and_fallback_commit_identically(values: np.ndarray, scale: int) -> None:
    results = set()
    for hasher in HASHERS:
        with using(hasher):
            results.add((tensor_root(values), commit_tensor(values, scale)))
    assert len(results) == 1


def test_tensor_leaf_encoding() -> None:
    root = bytes(range(32))
    encoded = root + bytes([2]) + (3).to_bytes(4, "big") + (5).to_bytes(4, "big")
    assert tensor_leaf(root, (3, 5), -8) == eth_keccak(encoded + bytes.fromhex("fffffff8"))
    assert tensor_leaf(root, (), 0) == eth_keccak(root + b"\x00" + bytes(4))
    assert tensor_leaf(root, np.array([3, 5]), np.int64(-8)) == tensor_leaf(root, [3, 5], -8)
    values = np.ones((3, 5), dtype=np.int32)
    assert commit_tensor(values, 8) == tensor_leaf(tensor_root(values), (3, 5), 8)
    assert commit_tensor(values, 8) != commit_tensor(values.reshape(5, 3), 8)
    assert commit_tensor(values, 8) != commit_tensor(values, 7)


@pytest.mark.parametrize(
    ("root", "shape", "scale"),
    [
        (bytes(31), (1,), 0),
        (bytes(32), (0,), 0),
        (bytes(32), (2**32,), 0),
        (bytes(32), (1,) * 256, 0),
        (bytes(32), (1,), 2**31),
        (bytes(32), (1,), -(2**31) - 1),
        (bytes(32), (1.0,), 0),
        (bytes(32), (1,), 0.5),
    ],
    ids=[
        "short-root",
        "zero-dim",
        "huge-dim",
        "256-dims",
        "scale-high",
        "scale-low",
        "float-dim",
        "float-scale",
    ],
)
def test_tensor_leaf_refuses_bad_input(root: bytes, shape: tuple[int, ...], scale: int) -> None:
    with pytest.raises(CommitmentError):
        tensor_leaf(root, shape, scale)


def test_commit_list() -> None:
    leaves = [eth_keccak(bytes([i])) for i in range(5)]
    assert commit_list(leaves) == reference_root(b"".join(leaves))
    assert commit_list(leaves[:1]) == leaves[0]
    with pytest.raises(CommitmentError, match="empty"):
        commit_list([])
    with pytest.raises(CommitmentError):
        commit_list([bytes(31)])


# ---- proofs ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(flat_tensors)
def test_every_element_proof_verifies(values: np.ndarray) -> None:
    root = tensor_root(values)
    depth = tree_depth(n_chunks(values.size))
    for index in {*range(0, values.size, 7), values.size - 1}:
        proof = element_proof(values, index)
        assert proof.value == values[index]
        assert len(proof.siblings) == depth
        assert verify_element(root, values.size, proof)


@settings(max_examples=80, deadline=None)
@given(flat_tensors, st.data())
def test_random_range_proofs_verify(values: np.ndarray, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, values.size - 1))
    end = data.draw(st.integers(start + 1, values.size))
    proof = range_proof(values, start, end)
    assert np.array_equal(proof.values, values[start:end])
    assert len(proof.chunks) == (end - 1) // 128 - start // 128 + 1
    assert len(proof.siblings) <= 2 * tree_depth(n_chunks(values.size))
    assert verify_range(tensor_root(values), values.size, proof)


def _chunk_bytes(n: int, c: int) -> int:
    return 32 * min(16, n_words(n) - 16 * c)


def _expected_for_n(values: np.ndarray, first: int, last: int, n: int) -> bool:
    """Whether a proof of chunks first..last made for `values` is valid for a tensor of n
    values: same depth, in range, chunks of the sizes n implies, and any slot it would make
    padding is zero."""
    if n < 1 or tree_depth(n_chunks(n)) != tree_depth(n_chunks(values.size)):
        return False
    if last >= n_chunks(n):
        return False
    if any(_chunk_bytes(n, c) != _chunk_bytes(values.size, c) for c in range(first, last + 1)):
        return False
    if last == n_chunks(n) - 1:
        return not np.any(values[n : 8 * n_words(n)])
    return True


@settings(max_examples=80, deadline=None)
@given(flat_tensors, st.data())
def test_tampered_element_proofs_fail(values: np.ndarray, data: st.DataObject) -> None:
    n = values.size
    root = tensor_root(values)
    index = data.draw(st.integers(0, n - 1))
    proof = element_proof(values, index)
    bit = data.draw(st.integers(0, 255))
    assert not verify_element(flip(root, bit), n, proof)
    bit_in_chunk = data.draw(st.integers(0, 8 * len(proof.chunk) - 1))
    assert not verify_element(
        root, n, dataclasses.replace(proof, chunk=flip(proof.chunk, bit_in_chunk))
    )
    assert not verify_element(root, n, dataclasses.replace(proof, chunk=proof.chunk[:-32]))
    if proof.siblings:
        k = data.draw(st.integers(0, len(proof.siblings) - 1))
        siblings = list(proof.siblings)
        siblings[k] = flip(siblings[k], bit)
        assert not verify_element(root, n, dataclasses.replace(proof, siblings=tuple(siblings)))
        assert not verify_element(root, n, dataclasses.replace(proof, siblings=proof.siblings[1:]))
    assert not verify_element(root, n, dataclasses.replace(proof, siblings=(*proof.siblings, root)))
    # A changed index may only verify if the word really holds that value there (soundness).
    other = index ^ (1 << data.draw(st.integers(0, 12)))
    moved = dataclasses.replace(proof, index=other)
    if verify_element(root, n, moved):
        assert other < n and moved.value == values[other]
    # A wrong length verifies exactly when it describes a tensor with the same words.
    m = data.draw(st.integers(-1, 2 * n + 9))
    c = index // 128
    expected = index < m and _expected_for_n(values, c, c, m)
    assert verify_element(root, m, proof) == expected


@settings(max_examples=80, deadline=None)
@given(flat_tensors, st.data())
def test_tampered_range_proofs_fail(values: np.ndarray, data: st.DataObject) -> None:
    n = values.size
    root = tensor_root(values)
    start = data.draw(st.integers(0, n - 1))
    end = data.draw(st.integers(start + 1, n))
    proof = range_proof(values, start, end)
    bit = data.draw(st.integers(0, 255))
    assert not verify_range(flip(root, bit), n, proof)
    k = data.draw(st.integers(0, len(proof.chunks) - 1))
    chunks = list(proof.chunks)
    chunks[k] = flip(chunks[k], data.draw(st.integers(0, 8 * len(chunks[k]) - 1)))
    assert not verify_range(root, n, dataclasses.replace(proof, chunks=tuple(chunks)))
    assert not verify_range(root, n, dataclasses.replace(proof, chunks=proof.chunks[:-1]))
    if proof.siblings:
        k = data.draw(st.integers(0, len(proof.siblings) - 1))
        siblings = list(proof.siblings)
        siblings[k] = flip(siblings[k], bit)
        assert not verify_range(root, n, dataclasses.replace(proof, siblings=tuple(siblings)))
        assert not verify_range(root, n, dataclasses.replace(proof, siblings=proof.siblings[:-1]))
        swapped = dataclasses.replace(proof, siblings=proof.siblings[::-1])
        if swapped.siblings != proof.siblings:
            assert not verify_range(root, n, swapped)
    # Changed bounds may only verify if the words really hold those values (soundness).
    new_start = data.draw(st.integers(-1, n))
    new_end = data.draw(st.integers(-1, n + 9))
    moved = dataclasses.replace(proof, start=new_start, end=new_end)
    if verify_range(root, n, moved):
        assert np.array_equal(moved.values, values[new_start:new_end])
    m = data.draw(st.integers(-1, 2 * n + 9))
    first, last = start // 128, (end - 1) // 128
    expected = end <= m and _expected_for_n(values, first, last, m)
    assert verify_range(root, m, proof) == expected


def test_nonzero_padding_is_rejected() -> None:
    """A root built over a last word with garbage padding proves nothing in that word."""
    values = np.arange(1, 140, dtype=np.int32)  # 139 values: chunk 1 has 2 words, 5 padding
    words = bytearray(pack_words(values))
    words[-1] = 1
    tree = MerkleTree(commit.chunk_leaves(bytes(words)))
    root = tree.root
    last = bytes(words[512:])
    forged = ElementProof(130, last, tree.siblings(1, 1))
    assert not verify_element(root, 139, forged)
    assert verify_element(root, 144, forged)  # as a 144-value tensor, that slot is a value
    forged_range = RangeProof(0, 139, (bytes(words[:512]), last), tree.siblings(0, 1))
    assert not verify_range(root, 139, forged_range)


def test_proof_requests_out_of_range() -> None:
    values = np.arange(10, dtype=np.int32)
    for index in (-1, 10):
        with pytest.raises(CommitmentError):
            element_proof(values, index)
    for start, end in ((0, 0), (3, 2), (-1, 4), (0, 11)):
        with pytest.raises(CommitmentError):
            range_proof(values, start, end)
    with pytest.raises(CommitmentError):
        list_proof([bytes(32)], 1)
    with pytest.raises(CommitmentError):
        MerkleTree(bytes(32)).node(1, 0)


def test_matmul_row_proof_size() -> None:
    """K = 1,536 contiguous weights of one output element: one multiproof, ~6.5 KB."""
    k = 1536
    weights = np.arange(384 * k, dtype=np.int32).reshape(384, k) % 1000 - 500
    root = tensor_root(weights)
    proof = range_proof(weights, 100 * k, 101 * k)
    assert np.array_equal(proof.values, weights[100])
    assert len(proof.chunks) == k // 128
    assert len(proof.siblings) <= 2 * tree_depth(n_chunks(weights.size))
    assert verify_range(root, weights.size, proof)
    assert sum(map(len, proof.chunks)) + 32 * len(proof.siblings) < 7000


@settings(max_examples=60, deadline=None)
@given(st.lists(words32, min_size=1, max_size=20), st.data())
def test_list_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    root = commit_list(leaves)
    n = len(leaves)
    for index in range(n):
        assert verify_list(root, n, list_proof(leaves, index))
    index = data.draw(st.integers(0, n - 1))
    proof = list_proof(leaves, index)
    bit = data.draw(st.integers(0, 255))
    assert not verify_list(flip(root, bit), n, proof)
    assert not verify_list(root, n, dataclasses.replace(proof, leaf=flip(proof.leaf, bit)))
    if proof.siblings:
        siblings = (flip(proof.siblings[0], bit), *proof.siblings[1:])
        assert not verify_list(root, n, dataclasses.replace(proof, siblings=siblings))
    other = data.draw(st.integers(-1, 2 * n))
    moved = dataclasses.replace(proof, index=other)
    if verify_list(root, n, moved):
        assert leaves[other] == proof.leaf
    m = data.draw(st.integers(-1, 2 * n + 1))
    if verify_list(root, m, proof):
        assert index < m and tree_depth(m) == tree_depth(n)
    assert not verify_list(root, n, ListProof(index, proof.leaf[:31], proof.siblings))


# ---- the worked example of docs/runtime-commitments.md ------------------------------------


def test_worked_example_of_the_docs() -> None:
    h = eth_keccak
    x = np.arange(20, dtype=np.int32).reshape(2, 10) - 5  # [[-5..4], [5..14]], scale 4
    words = pack_words(x)
    assert [words[i : i + 32].hex() for i in range(0, 96, 32)] == [
        "fffffffbfffffffcfffffffdfffffffeffffffff000000000000000100000002",
        "000000030000000400000005000000060000000700000008000000090000000a",
        "0000000b0000000c0000000d0000000e00000000000000000000000000000000",
    ]
    root = tensor_root(x)
    assert root == h(words)  # one chunk
    assert root.hex() == "3512dba997333eb844211b84b4c93eb742fc9db1b7337db98123fc2d1c66bc75"
    leaf_x = commit_tensor(x, 4)
    assert leaf_x.hex() == "4383bae40970ef6bf53923026c44d20c289c6778803e772c9613fbc928f622cd"
    y = np.array([7, -1], dtype=np.int32)
    assert tensor_root(y).hex() == (
        "902189f4b10829f3d13089615e0ec08217647862f09487457d170ef4fc7087fd"
    )
    leaf_y = commit_tensor(y, 0)
    assert leaf_y.hex() == "50e3b913cda8641ddfff552ac50c99083ceda5f1f76f844b4c7c5c1fd4aea895"
    trace_root = commit_list([leaf_x, leaf_y])
    assert trace_root.hex() == "dc37812630fef710c4b716499f93605d147cc1c76f6a06749dfd5e6dec145a20"
    assert list_proof([leaf_x, leaf_y], 1).siblings == (leaf_x,)
    element = element_proof(x, 13)  # x[1, 3] = 8: the whole chunk, no siblings
    assert (element.value, element.chunk, element.siblings) == (8, words, ())
    assert verify_element(root, 20, element)

    z = np.arange(300, dtype=np.int32) - 150  # 38 words: chunks of 16, 16 and 6 words
    zw = pack_words(z)
    c = [h(zw[i : i + 512]) for i in (0, 512, 1024)]
    assert [leaf.hex() for leaf in c] == [
        "551a9d046cc495188eea46ac14d1feb0ba3ee797b4ef019d9c36239fc73c5c84",
        "5be87d4647dbf5fdb7bfc474c5287b603c02ddeb8a2d154f1143a4ce373eb10d",
        "da82bd5906c0f425b056955043c9facd5839c897897a854b9bad395f7c64c1e9",
    ]
    n11 = h(c[2] + ZERO_HASHES[0])
    assert n11.hex() == "e35b2808531f51c8c76e97812bbe7d55e8c6f3bf03711a55f38acdb45106a41b"
    z_root = tensor_root(z)
    assert z_root == h(h(c[0] + c[1]) + n11)
    assert z_root.hex() == "90ed5acf15747b504b857d357f88d4dbfc1c55869a35dccb1c6218f9853e5381"
    element = element_proof(z, 200)  # z[200] = 50, in chunk 1
    assert (element.value, element.chunk, element.siblings) == (50, zw[512:1024], (c[0], n11))
    assert verify_element(z_root, 300, element)
    row = range_proof(z, 100, 300)  # chunks 0..2: the right sibling at level 1 is Z[0]
    assert row.chunks == (zw[:512], zw[512:1024], zw[1024:])
    assert row.siblings == (ZERO_HASHES[0],)
    assert verify_range(z_root, 300, row)


def test_docs_show_the_same_example() -> None:
    doc = Path(__file__).parents[3] / "docs" / "runtime-commitments.md"
    if not doc.exists():
        pytest.skip("docs not shipped here")
    text = doc.read_text()
    x = np.arange(20, dtype=np.int32).reshape(2, 10) - 5
    y = np.array([7, -1], dtype=np.int32)
    z = np.arange(300, dtype=np.int32) - 150
    leaves = [commit_tensor(x, 4), commit_tensor(y, 0)]
    z_leaves = commit.chunk_leaves(pack_words(z))
    z_chunks = [z_leaves[i : i + 32] for i in (0, 32, 64)]
    shown = (tensor_root(x), *leaves, commit_list(leaves), tensor_root(z), *z_chunks)
    for value in (*shown, *ZERO_HASHES[:4]):
        assert value.hex() in text
