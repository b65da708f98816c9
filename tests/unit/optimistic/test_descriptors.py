"""Step descriptors: one per step, ABI round trip, stepsRoot, unsupported ops; the game's
parties commit to exactly the execution's trace."""

from __future__ import annotations

from functools import cache

import pytest
from eth_abi.abi import decode

from verinfer.optimistic.descriptors import (
    DESCRIPTOR_ABI,
    KIND_CONST,
    KIND_INPUT,
    KIND_STEP,
    OP_IDS,
    OP_UNSUPPORTED,
    build_descriptors,
    steps_root,
    unsupported_steps,
)
from verinfer.optimistic.game import ChallengerParty, ClaimerParty
from verinfer.runtime.commit import commit_list, keccak256
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS


@cache
def run(name: str) -> tuple[Program, Execution]:
    model = TEST_MODELS[name]
    program = model.compile()
    return program, program.run(model.inputs())


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_descriptors_of_supported_models(name: str) -> None:
    program, _ = run(name)
    ds = build_descriptors(program)
    assert len(ds) == len(program.steps) and not unsupported_steps(ds)
    assert ds[0].operands[0].kind == KIND_INPUT
    assert {o.kind for d in ds for o in d.operands} == {KIND_INPUT, KIND_STEP, KIND_CONST}
    assert [d.output for d in ds] == [-1] * (len(ds) - 1) + [0]
    for d, step in zip(ds, program.steps, strict=True):
        assert d.op == OP_IDS[step.op]
        assert d.shape == program.tensors[step.output].shape
        (back,) = decode([DESCRIPTOR_ABI], d.encode())
        assert back[0] == d.op and list(back[4]) == list(d.shape) and list(back[7]) == list(d.attrs)
        assert d.leaf == keccak256(d.encode())
    assert steps_root(ds) == commit_list([d.leaf for d in ds])


def test_unsupported_steps_still_have_descriptors() -> None:
    program, _ = run("shape_ops")
    ds = build_descriptors(program)
    bad = unsupported_steps(ds)
    assert bad and all(ds[i].op == OP_UNSUPPORTED and ds[i].attrs == () for i in bad)
    assert all(ds[i].operands for i in bad)
    assert len(steps_root(ds)) == 32


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_parties_commit_to_the_execution_trace(name: str) -> None:
    program, execution = run(name)
    claimer = ClaimerParty(program, execution.values)
    assert commit_list(claimer.leaves) == bytes.fromhex(execution.trace_root[2:])
    assert [r.hex() for r in claimer.roots] == [r[2:] for r in execution.step_roots]
    challenger = ChallengerParty(program, execution)
    assert challenger.leaves == claimer.leaves
