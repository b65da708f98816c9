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
flat_tensors = hnp.arrays(np.int32, st.integers(1, 140), elements=elements)
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


def test_c_rejects_bad_lengths() -> None:
    if not C_IMPLS:
        pytest.skip("no C extension")
    with pytest.raises(ValueError):
        _keccak.hash_pairs(bytes(65))
    with pytest.raises(ValueError):
        _keccak.merkle_root(b"")
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


@pytest.mark.parametrize("n_words_", [1, 2, 3, 8, 9])
@pytest.mark.parametrize("hasher", HASHERS)
def test_zero_subtree_padding(hasher: str, n_words_: int) -> None:
    values = np.arange(1, 8 * n_words_ + 1, dtype=np.int32) * -7919
    words = pack_words(values)
    with using(hasher):
        root = tensor_root(values)
        assert root == reference_root(words)
        assert tree_depth(n_words_) == (n_words_ - 1).bit_length()
        if n_words_ == 1:
            assert root == words  # one word is its own root, unhashed
        if n_words_ == 3:
            h = eth_keccak
            assert root == h(h(words[:32] + words[32:64]) + h(words[64:] + ZERO_HASHES[0]))
        if n_words_ == 9:  # 16 leaves: the last word next to Z[0], Z[1], Z[2]
            tree = MerkleTree(words)
            assert tree.depth == 4
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
    depth = tree_depth(n_words(values.size))
    for index in range(values.size):
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
    assert len(proof.words) == (end - 1) // 8 - start // 8 + 1
    assert len(proof.siblings) <= 2 * tree_depth(n_words(values.size))
    assert verify_range(tensor_root(values), values.size, proof)


def _expected_for_n(values: np.ndarray, first: int, last: int, n: int) -> bool:
    """Whether a proof of words first..last made for `values` is valid for a tensor of n
    values: same depth, in range, and any slot it would make padding is zero."""
    if n < 1 or tree_depth(n_words(n)) != tree_depth(n_words(values.size)):
        return False
    if last >= n_words(n):
        return False
    if last == n_words(n) - 1:
        return not np.any(values[n : 8 * (last + 1)])
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
    assert not verify_element(root, n, dataclasses.replace(proof, word=flip(proof.word, bit)))
    if proof.siblings:
        k = data.draw(st.integers(0, len(proof.siblings) - 1))
        siblings = list(proof.siblings)
        siblings[k] = flip(siblings[k], bit)
        assert not verify_element(root, n, dataclasses.replace(proof, siblings=tuple(siblings)))
        assert not verify_element(root, n, dataclasses.replace(proof, siblings=proof.siblings[1:]))
    assert not verify_element(root, n, dataclasses.replace(proof, siblings=(*proof.siblings, root)))
    # A changed index may only verify if the word really holds that value there (soundness).
    other = index ^ (1 << data.draw(st.integers(0, 10)))
    moved = dataclasses.replace(proof, index=other)
    if verify_element(root, n, moved):
        assert other < n and moved.value == values[other]
    # A wrong length verifies exactly when it describes a tensor with the same words.
    m = data.draw(st.integers(-1, 2 * n + 9))
    w = index // 8
    expected = index < m and _expected_for_n(values, w, w, m)
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
    k = data.draw(st.integers(0, len(proof.words) - 1))
    words = list(proof.words)
    words[k] = flip(words[k], bit)
    assert not verify_range(root, n, dataclasses.replace(proof, words=tuple(words)))
    assert not verify_range(root, n, dataclasses.replace(proof, words=proof.words[:-1]))
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
    first, last = start // 8, (end - 1) // 8
    expected = end <= m and _expected_for_n(values, first, last, m)
    assert verify_range(root, m, proof) == expected


def test_nonzero_padding_is_rejected() -> None:
    """A root built over a last word with garbage padding proves nothing in that word."""
    values = np.arange(1, 12, dtype=np.int32)  # 11 values: word 1 has 5 padding slots
    words = bytearray(pack_words(values))
    words[-1] = 1
    root = merkle_root(bytes(words))
    tree = MerkleTree(bytes(words))
    forged = ElementProof(9, tree.node(0, 1), tree.siblings(1, 1))
    assert not verify_element(root, 11, forged)
    assert verify_element(root, 16, forged)  # as a 16-value tensor, that slot is a value
    forged_range = RangeProof(0, 11, (tree.node(0, 0), tree.node(0, 1)), tree.siblings(0, 1))
    assert not verify_range(root, 11, forged_range)


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
    assert len(proof.words) == k // 8
    assert len(proof.siblings) <= 2 * tree_depth(n_words(weights.size))
    assert verify_range(root, weights.size, proof)
    assert 32 * (len(proof.words) + len(proof.siblings)) < 7000


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
    x = np.arange(20, dtype=np.int32).reshape(2, 10) - 5  # [[-5..4], [5..14]], scale 4
    words = pack_words(x)
    assert [words[i : i + 32].hex() for i in range(0, 96, 32)] == [
        "fffffffbfffffffcfffffffdfffffffeffffffff000000000000000100000002",
        "000000030000000400000005000000060000000700000008000000090000000a",
        "0000000b0000000c0000000d0000000e00000000000000000000000000000000",
    ]
    tree = MerkleTree(words)
    n10 = "adb7f55d1e077c70c6469b12f2973a4f63d06da7471927b9e32a63a8ebeeb61b"
    n11 = "a9b1e8c60f4c9fad9464c687520cdb32c574991b6ee25d423f318239bc5ffe00"
    assert (tree.node(1, 0).hex(), tree.node(1, 1).hex()) == (n10, n11)
    root = tensor_root(x)
    assert root.hex() == "5a23b702224f053f04e728a64a8828cba5635f0946e01d962c4d5d2fa3681d9a"
    leaf_x = commit_tensor(x, 4)
    assert leaf_x.hex() == "061e20f6d5bd91489870a9311efa66de433f07011fdd0a950f17f03d2ba11486"
    y = np.array([7, -1], dtype=np.int32)
    assert tensor_root(y).hex() == "00000007ffffffff" + "00" * 24
    leaf_y = commit_tensor(y, 0)
    assert leaf_y.hex() == "ee9a0133a5f3ff7084ede303a85f44ef99e96c8017ef20dd18c9dad7c943b8b0"
    trace_root = commit_list([leaf_x, leaf_y])
    assert trace_root.hex() == "86821bb9c544b738486956c8afad12719ba4dc1ccb24d0459253837094e94ddb"
    assert list_proof([leaf_x, leaf_y], 1).siblings == (leaf_x,)

    element = element_proof(x, 13)  # x[1, 3] = 8
    assert (element.value, element.word) == (8, words[32:64])
    assert element.siblings == (words[:32], bytes.fromhex(n11))
    assert verify_element(root, 20, element)
    row = range_proof(x, 10, 20)  # x[1, :], words 1 and 2
    assert row.words == (words[32:64], words[64:])
    assert row.siblings == (words[:32], ZERO_HASHES[0])
    assert verify_range(root, 20, row)


def test_docs_show_the_same_example() -> None:
    doc = Path(__file__).parents[3] / "docs" / "runtime-commitments.md"
    if not doc.exists():
        pytest.skip("docs not shipped here")
    text = doc.read_text()
    x = np.arange(20, dtype=np.int32).reshape(2, 10) - 5
    y = np.array([7, -1], dtype=np.int32)
    leaves = [commit_tensor(x, 4), commit_tensor(y, 0)]
    for value in (tensor_root(x), *leaves, commit_list(leaves), *ZERO_HASHES[:4]):
        assert value.hex() in text
