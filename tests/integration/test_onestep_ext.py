"""OneStepVerifierExt.sol on a real anvil: lookup tables, leaky_relu, clip, where, casts,
argmax, softmax and layer norm rows, reduces over inner axes and the shape ops. For many
random elements of every step of the sigmoid MLP, the transformer block and shape_ops, the
contract recomputes exactly the runtime's value, directly and through StepRouter; the
MiniLM-sized rows stay far under the EIP-7825 cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache, partial
from typing import Any

import numpy as np
import pytest
from onestep_kit import misc_program, rows_program, run_test_model
from web3.contract.contract import Contract

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.devnet import DevnetInfo
from verinfer.optimistic import OneStepProver, OneStepRevertError, UnsupportedStepError
from verinfer.optimistic.descriptors import OP_UNSUPPORTED, build_descriptors, unsupported_steps
from verinfer.optimistic.onestep import EXT_OPS, OneStepCall
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program

pytestmark = pytest.mark.integration

EIP7825_TX_GAS_CAP = 16_777_216
ELEMENTS_PER_STEP = 12
MODELS = ("sigmoid_mlp", "transformer_block", "shape_ops")


@pytest.fixture(scope="module")
def contracts(anvil: DevnetInfo) -> Iterator[tuple[Chain, Contract, Contract]]:
    chain = Chain(anvil.rpc_url, dev_account(0))
    verifier, _ = chain.deploy("OneStepVerifier")
    ext, _ = chain.deploy("OneStepVerifierExt")
    router, _ = chain.deploy("StepRouter", verifier, ext)
    yield (
        chain,
        chain.contract("OneStepVerifierExt", ext),
        chain.contract("StepRouter", router),
    )


PROGRAMS: dict[str, Callable[[], tuple[Program, Execution]]] = {
    **{name: partial(run_test_model, name) for name in MODELS},
    "minilm_rows": rows_program,
    "misc": misc_program,
}


@cache
def prover(name: str) -> OneStepProver:
    return OneStepProver(*PROGRAMS[name]())


def _routed(router: Contract, p: OneStepProver, step: int, call: OneStepCall) -> Any:
    """The same element through StepRouter.recompute (one opening per operand)."""
    d = p.descriptors[step]
    openings = [o.abi() for o in call.openings[: len(d.operands)]]
    return router.functions.recompute(d.abi(), call.j, openings)


def _fn(contract: Contract, call: OneStepCall) -> Any:
    return getattr(contract.functions, call.function)(*call.args)


@pytest.mark.parametrize("name", MODELS)
def test_every_step_is_supported(name: str) -> None:
    assert unsupported_steps(build_descriptors(prover(name).program)) == []


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_step_recomputes_the_runtime_value(
    contracts: tuple[Chain, Contract, Contract], name: str, record_property: Any
) -> None:
    chain, ext, router = contracts
    p = prover(name)
    rng = np.random.default_rng(7)
    largest = 0
    for i, step in enumerate(p.program.steps):
        if p.descriptors[i].op == OP_UNSUPPORTED:  # misc's ReduceSum over axes 0 and 2
            with pytest.raises(UnsupportedStepError):
                p.prove(i, 0)
            continue
        size = p.program.tensors[step.output].size
        sample = rng.integers(0, size, ELEMENTS_PER_STEP).tolist() if size > 40 else range(size)
        gas = 0
        for j in {0, size - 1, *sample}:
            call = p.prove(i, j)
            runtime = int(p.execution.values[step.output].reshape(-1)[j])
            assert call.expected == runtime
            if call.packed:
                assert chain.call(_fn(ext, call)) == runtime, f"{name} step {i} ({step.op}) {j}"
            got = chain.call(_routed(router, p, i, call))
            assert got == runtime, f"{name} step {i} ({step.op}) element {j} via the router"
            gas = max(gas, _routed(router, p, i, call).estimate_gas())
        record_property(f"gas_{i}_{step.op}", gas)
        largest = max(largest, gas)
    record_property("gas_largest_one_step", largest)
    print(f"\n{name}: largest one-step gas {largest:,}")  # noqa: T201
    assert largest < EIP7825_TX_GAS_CAP // 4


def test_every_ext_op_is_covered() -> None:
    ops = {s.op for name in PROGRAMS for s in prover(name).program.steps}
    assert set(EXT_OPS) <= ops


def test_tampered_row_opening_reverts(contracts: tuple[Chain, Contract, Contract]) -> None:
    chain, ext, _ = contracts
    p = prover("transformer_block")
    i = next(k for k, s in enumerate(p.program.steps) if s.op == "softmax")
    call = p.prove(i, 5)
    x = call.openings[0]
    chunk = bytearray(x.proof.chunks[0])
    chunk[3] ^= 1
    bad = call.with_opening(0, replace(x, proof=replace(x.proof, chunks=(bytes(chunk),))))
    with pytest.raises(OneStepRevertError) as info:
        chain.call(_fn(ext, bad))
    assert info.value.name == "VerinferRootMismatch"
    # a valid opening of the table that lacks entries the row reads
    t = call.openings[1]
    assert len(t.proof.chunk_ids) > 1
    other = p.open(p.program.steps[i].inputs[1], [t.proof.chunk_ids[0] * 128])
    with pytest.raises(OneStepRevertError) as info:
        chain.call(_fn(ext, call.with_opening(1, other)))
    assert info.value.name == "VerinferValueNotOpened"
    # a claim off by one is caught: the contract returns the runtime's value only
    assert chain.call(_fn(ext, call)) == call.expected
