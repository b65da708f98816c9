"""OneStepProver: the right operand values are opened, against the right roots, for every
supported step of the test models; bad requests raise typed errors."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from verinfer.optimistic import (
    SUPPORTED_OPS,
    ElementIndexError,
    OneStepProver,
    UnsupportedStepError,
    verify_sparse,
)
from verinfer.runtime.commit import tensor_root
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS


@cache
def prover(name: str) -> tuple[Program, OneStepProver]:
    model = TEST_MODELS[name]
    program = model.compile()
    return program, OneStepProver(program, program.run(model.inputs()))


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_openings_verify_against_trace_and_constant_roots(name: str) -> None:
    program, p = prover(name)
    rng = np.random.default_rng(0)
    roots = {s.output: p.execution.step_roots[i] for i, s in enumerate(program.steps)}
    for i, step in enumerate(program.steps):
        if step.op not in SUPPORTED_OPS:
            continue
        size = program.tensors[step.output].size
        for j in {0, size - 1, *rng.integers(0, size, 8).tolist()}:
            call = p.prove(i, j)
            assert call.expected == p.execution.values[step.output].reshape(-1)[j]
            for name_, opening in zip(step.inputs, call.openings, strict=False):
                assert verify_sparse(opening.root, opening.n, opening.proof)
                if name_ in program.constants:
                    assert opening.root == tensor_root(program.constants[name_].values)
                elif name_ in roots:
                    assert "0x" + opening.root.hex() == roots[name_]


def test_dense_opens_the_input_row_and_the_weight_row() -> None:
    program, p = prover("digits_mlp")
    step = program.steps[0]
    n, k = program.constants[step.inputs[1]].shape
    call = p.prove(0, 3 * n + 5)
    x, w, b = call.openings
    xs = p.execution.values[step.inputs[0]].reshape(-1)
    ws = program.constants[step.inputs[1]].values.reshape(-1)
    assert [x.proof.value(3 * k + t) for t in range(k)] == xs[3 * k : 4 * k].tolist()
    assert [w.proof.value(5 * k + t) for t in range(k)] == ws[5 * k : 6 * k].tolist()
    assert b.proof.value(5) == program.constants[step.inputs[2]].values[5]


def test_bad_requests_raise_typed_errors() -> None:
    program, p = prover("shape_ops")
    for i, step in enumerate(program.steps):
        if step.op not in SUPPORTED_OPS:
            with pytest.raises(UnsupportedStepError, match=step.op):
                p.prove(i, 0)
    with pytest.raises(ElementIndexError):
        p.prove(len(program.steps), 0)
    with pytest.raises(ElementIndexError):
        p.prove(0, program.tensors[program.steps[0].output].size)
    with pytest.raises(ElementIndexError):
        p.prove(0, -1)
