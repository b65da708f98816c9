"""Step descriptors: one per step, ABI round trip, stepsRoot, unsupported ops; the game's
parties commit to exactly the execution's trace."""

from __future__ import annotations

from dataclasses import replace
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


@pytest.mark.parametrize("name", ["sigmoid_mlp", "transformer_block", "shape_ops"])
def test_every_step_of_the_other_test_models_is_supported(name: str) -> None:
    program, _ = run(name)
    ds = build_descriptors(program)
    assert unsupported_steps(ds) == []
    for d, step in zip(ds, program.steps, strict=True):
        if step.op in ("reduce_sum", "reduce_mean") and d.op != OP_IDS[step.op]:
            assert d.op == OP_IDS["reduce_axes"]  # an inner axis: OneStepVerifierExt
        else:
            assert d.op == OP_IDS[step.op]
    for s, d in zip(program.steps, ds, strict=True):
        if s.op == "lut":
            assert d.attrs == (s.attrs["lo"], s.attrs["shift"], s.attrs["intervals"])
            assert d.operands[1].kind == KIND_CONST  # the table: a leaf of weightsRoot


def test_unsupported_steps_still_have_descriptors() -> None:
    program, _ = run("transformer_block")
    step = program.steps[1]  # reduce_mean over axis 1 of [4, 16, 64]
    weird = replace(step, attrs={**step.attrs, "axes": (0, 2)})
    steps = (*program.steps[:1], weird, *program.steps[2:])
    ds = build_descriptors(replace(program, steps=steps))
    bad = unsupported_steps(ds)
    assert bad == [1] and ds[1].op == OP_UNSUPPORTED and ds[1].attrs == ()
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
