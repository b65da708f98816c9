"""OneStepProver: the right operand values are opened, against the right roots, for every
supported step of the test models; bad requests raise typed errors."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from verinfer.optimistic import (
    SUPPORTED_OPS,
    ElementIndexError,
    OneStepProver,
    UnsupportedStepError,
    verify_sparse,
)
from verinfer.runtime.commit import tensor_root
from verinfer.runtime.compiler import compile_proto
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS


def _program_with_reduce_over_axes_0_and_2() -> tuple[Program, Execution]:
    """ReduceSum over non-adjacent axes: a layout with no one-step rule."""
    f = TensorProto.FLOAT
    axes = numpy_helper.from_array(np.array([0, 2], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
        "reduce02",
        [helper.make_tensor_value_info("x", f, [2, 3, 4])],
        [helper.make_tensor_value_info("y", f, [3])],
        [axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    feed = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    program = compile_proto(model, feed, batch=2)
    return program, program.run(feed)


def test_ext_ops_open_what_the_kernels_read() -> None:
    """The row of a softmax / layer norm, the table entries of a lookup, one value of a
    concat's operand (the others: root and size only), a gather's index and source."""
    program, p = prover("transformer_block")
    ops = {s.op: i for i, s in enumerate(program.steps)}
    call = p.prove(ops["softmax"], 17 * 3 + 5)  # row 3 of head 0, position 5
    assert call.packed and call.function == "recompute"
    assert call.openings[0].proof.chunk_ids == (0,)
    ln = p.prove(ops["layernorm"], 64 * 5 + 7)
    assert [ln.openings[0].proof.value(64 * 5 + t) for t in range(64)] == (
        p.execution.values[program.steps[ops["layernorm"]].inputs[0]].reshape(-1)[320:384].tolist()
    )
    concat = p.prove(ops["concat"], 64 * 3)  # row 3 of batch 0: from h0, not the summary
    assert not concat.openings[0].proof.chunk_ids and concat.openings[1].proof.chunk_ids
    shapes, sp = prover("shape_ops")
    g = next(i for i, s in enumerate(shapes.steps) if s.op == "gather")
    call = sp.prove(g, 6 * 2 + 1)  # batch 0, index position 2, column 1
    idx = int(shapes.constants[shapes.steps[g].inputs[1]].values[2])
    assert call.openings[1].proof.value(2) == idx
    assert call.openings[0].proof.value(idx * 6 + 1) == call.expected


@cache
def prover(name: str) -> tuple[Program, OneStepProver]:
    model = TEST_MODELS[name]
    program = model.compile()
    return program, OneStepProver(program, program.run(model.inputs()))


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
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
                # an operand that the element does not read (concat) carries root and size only
                assert verify_sparse(opening.root, opening.n, opening.proof) or (
                    call.packed and not opening.proof.chunk_ids
                )
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
    assert all(step.op in SUPPORTED_OPS for step in program.steps)
    reduce02 = _program_with_reduce_over_axes_0_and_2()
    with pytest.raises(UnsupportedStepError, match="reduce_sum"):
        OneStepProver(*reduce02).prove(0, 0)
    with pytest.raises(ElementIndexError):
        p.prove(len(program.steps), 0)
    with pytest.raises(ElementIndexError):
        p.prove(0, program.tensors[program.steps[0].output].size)
    with pytest.raises(ElementIndexError):
        p.prove(0, -1)
