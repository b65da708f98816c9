"""OneStepVerifier.sol (and TensorProofs.sol through its harness) on a real anvil: for many
elements of every supported step of the test models, the contract recomputes exactly the
runtime's value from proven operands; tampered proofs revert with Verinfer errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onestep_kit import conv_program, elementwise_program, run_test_model, wide_dense_program
from web3.contract.contract import Contract

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.devnet import DevnetInfo
from verinfer.errors import ContractRevertError
from verinfer.optimistic import (
    SUPPORTED_OPS,
    CommittedTensor,
    OneStepCall,
    OneStepProver,
    OneStepRevertError,
    Opening,
    SparseProof,
)
from verinfer.optimistic.multiproof import sparse_siblings
from verinfer.optimistic.onestep import EXT_OPS
from verinfer.runtime.commit import MerkleTree, chunk_leaves
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program

pytestmark = pytest.mark.integration

EIP7825_TX_GAS_CAP = 16_777_216
ELEMENTS_PER_STEP = 10


@pytest.fixture(scope="module")
def contracts(anvil: DevnetInfo) -> Iterator[tuple[Chain, Contract, Contract]]:
    chain = Chain(anvil.rpc_url, dev_account(0))
    verifier, _ = chain.deploy("OneStepVerifier")
    harness, _ = chain.deploy("TensorProofsHarness")
    yield (
        chain,
        chain.contract("OneStepVerifier", verifier),
        chain.contract("TensorProofsHarness", harness),
    )


PROGRAMS: dict[str, Callable[[], tuple[Program, Execution]]] = {
    "digits_mlp": lambda: run_test_model("digits_mlp"),
    "digits_cnn": lambda: run_test_model("digits_cnn"),
    "elementwise": elementwise_program,
    "conv": conv_program,
    # K = 12: rows start mid-word (the word-wise dot); K = 13: misaligned rows (gather)
    "dense_k12": lambda: wide_dense_program(12, 5, rows=3),
    "dense_k13": lambda: wide_dense_program(13, 7, rows=2),
    # K = 200: the rows of x and w cross chunk boundaries at different words
    "dense_k200": lambda: wide_dense_program(200, 3, rows=2),
}


@cache
def prover(name: str) -> OneStepProver:
    return OneStepProver(*PROGRAMS[name]())


def _fn(verifier: Contract, call: OneStepCall) -> Any:
    return getattr(verifier.functions, call.function)(*call.args)


def _reverts(chain: Chain, verifier: Contract, call: OneStepCall) -> str:
    with pytest.raises(OneStepRevertError) as info:
        chain.call(_fn(verifier, call))
    return info.value.name


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_contract_recomputes_every_supported_step(
    contracts: tuple[Chain, Contract, Contract], name: str, record_property: Any
) -> None:
    chain, verifier, _ = contracts
    p = prover(name)
    rng = np.random.default_rng(1)
    checked = set()
    for i, step in enumerate(p.program.steps):
        if step.op not in SUPPORTED_OPS or step.op in EXT_OPS:
            continue
        size = p.program.tensors[step.output].size
        sample = rng.integers(0, size, ELEMENTS_PER_STEP).tolist() if size > 40 else range(size)
        for j in {0, size - 1, *sample}:
            call = p.prove(i, j)
            got = chain.call(_fn(verifier, call))
            assert got == call.expected, f"{name} step {i} ({step.op}) element {j}"
            assert got != call.expected + 1  # a claim off by one is caught
        record_property(f"gas_{i}_{step.op}", _fn(verifier, call).estimate_gas())
        checked.add(step.op)
    assert checked


def test_all_ops_covered() -> None:
    """OneStepVerifier's ops; EXT_OPS (OneStepVerifierExt) are in test_onestep_ext.py."""
    ops = {s.op for name in PROGRAMS for s in prover(name).program.steps}
    assert set(SUPPORTED_OPS) - set(EXT_OPS) <= ops


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at % len(b)] ^= 0x01
    return bytes(b)


def _with_proof(call: OneStepCall, position: int, **changes: Any) -> OneStepCall:
    opening = call.openings[position]
    return call.with_opening(position, replace(opening, proof=replace(opening.proof, **changes)))


def test_tampered_proofs_revert(contracts: tuple[Chain, Contract, Contract]) -> None:
    chain, verifier, _ = contracts
    p = prover("conv")
    call = p.prove(0, 37)  # x is opened with two non-contiguous chunks and 3 siblings
    x = call.openings[0].proof
    assert len(x.chunk_ids) > 1 and x.siblings
    assert chain.call(_fn(verifier, call)) == call.expected
    flipped_chunk = _with_proof(call, 0, chunks=(_flip(x.chunks[0], 77), *x.chunks[1:]))
    assert _reverts(chain, verifier, flipped_chunk) == "VerinferRootMismatch"
    flipped_sib = _with_proof(call, 0, siblings=(_flip(x.siblings[0], 5), *x.siblings[1:]))
    assert _reverts(chain, verifier, flipped_sib) == "VerinferRootMismatch"
    short = _with_proof(call, 0, siblings=x.siblings[:-1])
    assert _reverts(chain, verifier, short) == "VerinferBadSiblingCount"
    long = _with_proof(call, 0, siblings=(*x.siblings, bytes(32)))
    assert _reverts(chain, verifier, long) == "VerinferBadSiblingCount"
    cut = _with_proof(call, 0, chunks=(x.chunks[0][:-32], *x.chunks[1:]))
    assert _reverts(chain, verifier, cut) == "VerinferBadChunkLength"
    unsorted = _with_proof(call, 0, chunk_ids=x.chunk_ids[::-1], chunks=x.chunks[::-1])
    assert _reverts(chain, verifier, unsorted) == "VerinferBadChunkSet"
    w = call.openings[1]
    wrong_root = call.with_opening(1, replace(w, root=_flip(w.root, 0)))
    assert _reverts(chain, verifier, wrong_root) == "VerinferRootMismatch"
    # A valid proof of other chunks: the window's values are not opened.
    other = p.open(p.program.steps[0].inputs[0], [1023])
    assert _reverts(chain, verifier, call.with_opening(0, other)) == "VerinferValueNotOpened"
    wrong_size = call.with_opening(1, replace(w, n=w.n + 1))
    assert _reverts(chain, verifier, wrong_size) == "VerinferBadStepShape"


def test_nonzero_padding_reverts(contracts: tuple[Chain, Contract, Contract]) -> None:
    chain, verifier, harness = contracts
    p = prover("digits_mlp")
    call = p.prove(1, 9)  # bias of 10 values: one chunk of two words, 6 padding slots
    bias = call.openings[2]
    words = bytearray(bias.proof.chunks[0])
    words[-1] = 1  # padding, under a root that commits to it
    tree = MerkleTree(chunk_leaves(bytes(words)))
    forged = Opening(tree.root, bias.n, SparseProof((0,), (bytes(words),), ()))
    assert _reverts(chain, verifier, call.with_opening(2, forged)) == "VerinferNonZeroPadding"
    with pytest.raises(ContractRevertError, match="VerinferNonZeroPadding"):
        chain.call(harness.functions.open(forged.abi(), [0]))


@st.composite
def tensors_and_indices(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    n = draw(st.integers(1, 1500))
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(-(2**31), 2**31, size=n, dtype=np.int64)
    indices = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=12, unique=True))
    return values, sorted(indices)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=tensors_and_indices(), bit=st.integers(0, 4095))
def test_harness_opens_what_python_proves(
    contracts: tuple[Chain, Contract, Contract], case: tuple[np.ndarray, list[int]], bit: int
) -> None:
    chain, _, harness = contracts
    values, indices = case
    t = CommittedTensor(values)
    proof = t.prove(indices)
    opening = Opening(t.root, t.n, proof)
    assert harness.functions.open(opening.abi(), indices).call() == values[indices].tolist()
    assert sparse_siblings(t.tree, proof.chunk_ids) == proof.siblings
    at = bit % len(proof.chunks)
    chunks = list(proof.chunks)
    chunks[at] = _flip(chunks[at], bit // 8)
    bad = Opening(t.root, t.n, replace(proof, chunks=tuple(chunks)))
    with pytest.raises(ContractRevertError):
        chain.call(harness.functions.open(bad.abi(), indices))


def test_dense_k1536_gas_is_far_under_the_eip7825_cap(
    contracts: tuple[Chain, Contract, Contract], record_property: Any
) -> None:
    chain, verifier, _ = contracts
    p = OneStepProver(*wide_dense_program(1536, 384))
    for j in (0, 383, 200):
        call = p.prove(0, j)
        assert chain.call(_fn(verifier, call)) == call.expected
    gas = _fn(verifier, call).estimate_gas()
    record_property("gas_dense_k1536", gas)
    assert gas < EIP7825_TX_GAS_CAP // 16
