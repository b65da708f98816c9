"""A Relu right after a dense/conv2d/matmul step is folded into it (one step, one committed
tensor fewer) only when nothing else reads the pre-activation; results stay the same."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from verinfer.runtime.compiler import compile_proto

F = TensorProto.FLOAT


def _model(extra_nodes: list[onnx.NodeProto], outputs: list[str]) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 6)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="gemm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "fusion",
        [helper.make_tensor_value_info("x", F, [2, 4])],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _check(model: onnx.ModelProto, ops: list[str]) -> np.ndarray:
    x = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)
    program = compile_proto(model, x, batch=2)
    assert [s.op for s in program.steps] == ops
    execution = program.run(x)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for got, want in zip(execution.outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3)
    assert len(execution.step_roots) == len(program.steps)
    return execution.outputs[0]


def test_relu_folds_into_the_dense_step() -> None:
    assert (_check(_model([], ["r"]), ["dense"]) >= 0).all()
    program = compile_proto(_model([], ["r"]), None, batch=2)
    assert program.steps[0].attrs["relu"] == 1 and program.steps[0].output == "r"
    assert "h" not in program.tensors


def test_relu_stays_separate_when_the_pre_activation_is_read_elsewhere() -> None:
    also_read = [helper.make_node("Add", ["h", "r"], ["y"], name="add")]
    _check(_model(also_read, ["y"]), ["dense", "relu", "add"])


def test_relu_stays_separate_when_the_pre_activation_is_an_output() -> None:
    _check(_model([], ["r", "h"]), ["dense", "relu"])
