"""Compile-time fusions that cut steps and committed tensors without changing results:
MatMul + Add of a per-output constant becomes one dense step with a bias, the exact GELU that
torch spells out with Erf becomes one Gelu (a table and one product), and a Mul or Div by a
scalar folds into the weights of the linear chain before it. Each happens only when nothing
else reads the intermediate values."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from verinfer.runtime.compiler import compile_proto
from verinfer.runtime.program import Program

F = TensorProto.FLOAT
X_SHAPE = (2, 3, 4)


def _model(
    nodes: list[onnx.NodeProto], outputs: list[str], consts: dict[str, np.ndarray]
) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 6)).astype(np.float32), "w")]
    inits += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in consts.items()]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"), *nodes],
        "fusion",
        [helper.make_tensor_value_info("x", F, list(X_SHAPE))],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _check(model: onnx.ModelProto, ops: list[str], atol: float = 3e-3) -> Program:
    """Compile, check the step list, and agree with onnxruntime on every output, unsaturated."""
    x = np.random.default_rng(5).normal(size=X_SHAPE).astype(np.float32)
    program = compile_proto(model, x, batch=2)
    assert [s.op for s in program.steps] == ops
    execution = program.run(x)
    assert not execution.saturated
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    for got, want in zip(execution.outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=atol)
    assert len(execution.step_roots) == len(program.steps)
    return program


BIAS = {"b": np.linspace(-2.0, 3.0, 6)}


def _add(a: str, b: str, out: str = "y", op: str = "Add") -> onnx.NodeProto:
    return helper.make_node(op, [a, b], [out], name=f"{op.lower()}_{out}")


# --- bias folding ---------------------------------------------------------------------------


def test_matmul_then_bias_add_is_one_dense_step_with_a_bias() -> None:
    program = _check(_model([_add("h", "b")], ["y"], BIAS), ["dense"])
    step = program.steps[0]
    assert step.output == "y" and len(step.inputs) == 3 and "h" not in program.tensors


def test_bias_on_the_left_and_a_broadcast_shape_fold_too() -> None:
    left = {"b": BIAS["b"].reshape(1, 1, 6)}
    _check(_model([_add("b", "h")], ["y"], left), ["dense"])
    scalar = {"b": np.array([1.5])}
    _check(_model([_add("h", "b")], ["y"], scalar), ["dense"])


def test_subtracting_a_constant_folds_as_a_negated_bias() -> None:
    _check(_model([_add("h", "b", op="Sub")], ["y"], BIAS), ["dense"])


def test_constant_minus_the_product_is_not_a_bias() -> None:
    _check(_model([_add("b", "h", op="Sub")], ["y"], BIAS), ["dense", "add"])


def test_a_constant_that_varies_along_other_axes_is_not_a_bias() -> None:
    per_row = {"b": np.linspace(-1.0, 1.0, 18).reshape(3, 6)}
    _check(_model([_add("h", "b")], ["y"], per_row), ["dense", "add"])


def test_bias_stays_separate_when_the_product_is_read_elsewhere_or_is_an_output() -> None:
    also_read = [_add("h", "b"), _add("h", "y", "z")]
    _check(_model(also_read, ["z"], BIAS), ["dense", "add", "add"])
    _check(_model([_add("h", "b")], ["y", "h"], BIAS), ["dense", "add"])


def test_a_relu_after_the_folded_bias_still_folds_into_the_same_step() -> None:
    relu = helper.make_node("Relu", ["y"], ["r"], name="relu")
    program = _check(_model([_add("h", "b"), relu], ["r"], BIAS), ["dense"])
    assert program.steps[0].attrs["relu"] == 1 and program.steps[0].output == "r"


# --- GELU -----------------------------------------------------------------------------------

GELU_CONSTS = {
    "root2": np.array(np.sqrt(2.0)),
    "inv_root2": np.array(1.0 / np.sqrt(2.0)),
    "one": np.array(1.0),
    "half": np.array(0.5),
}


def _gelu(
    scale_node: onnx.NodeProto, *, half_first: bool, half: str = "half"
) -> list[onnx.NodeProto]:
    """x·0.5·(1 + Erf(x/√2)) on the MatMul output h, in the given spelling."""
    tail = [
        helper.make_node("Erf", ["s"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["p"], name="one_plus"),
    ]
    if half_first:
        tail += [
            helper.make_node("Mul", ["h", half], ["hh"], name="halve"),
            helper.make_node("Mul", ["hh", "p"], ["g"], name="product"),
        ]
    else:
        tail += [
            helper.make_node("Mul", ["h", "p"], ["hp"], name="product"),
            helper.make_node("Mul", ["hp", half], ["g"], name="halve"),
        ]
    return [scale_node, *tail]


DIV = helper.make_node("Div", ["h", "root2"], ["s"], name="div")
MUL = helper.make_node("Mul", ["inv_root2", "h"], ["s"], name="mul")


def test_the_spelled_out_gelu_becomes_one_table_and_one_product_in_every_spelling() -> None:
    for scale_node in (DIV, MUL):
        for half_first in (False, True):
            nodes = _gelu(scale_node, half_first=half_first)
            program = _check(_model(nodes, ["g"], GELU_CONSTS), ["dense", "lut", "mul"])
            assert program.steps[-1].output == "g" and "e" not in program.tensors


def test_gelu_is_not_fused_when_an_intermediate_is_read_elsewhere() -> None:
    nodes = _gelu(DIV, half_first=False)
    unfused = ["dense", "mul", "lut", "add", "mul", "mul"]
    program = _check(_model(nodes, ["g", "e"], GELU_CONSTS), unfused)
    assert "e" in program.tensors


def test_gelu_is_not_fused_when_a_constant_differs() -> None:
    consts = {**GELU_CONSTS, "other": np.array(0.25)}
    nodes = _gelu(DIV, half_first=True, half="other")
    program = _check(_model(nodes, ["g"], consts), ["dense", "mul", "lut", "add", "mul", "mul"])
    assert "e" in program.tensors


# --- scalar factors -------------------------------------------------------------------------

EIGHT = {"c": np.array(8.0), "eighth": np.array(0.125)}


def test_a_scalar_factor_after_a_matmul_or_gemm_folds_into_its_weights() -> None:
    for op, c in (("Mul", "c"), ("Div", "eighth")):
        program = _check(_model([_add("h", c, op=op)], ["y"], EIGHT), ["dense"])
        assert program.steps[0].output == "y" and "h" not in program.tensors
    scaled_bias = [_add("h", "b"), _add("c", "y", "z", op="Mul")]
    _check(_model(scaled_bias, ["z"], {**BIAS, **EIGHT}), ["dense"])


def _heads(weight: str, perm: list[int], out: str) -> list[onnx.NodeProto]:
    """[2, 3, 6] activations of x·weight, as 2 heads of 3: [2, 2, 3, 3] after ``perm``."""
    return [
        helper.make_node("MatMul", ["x", weight], [f"{out}_lin"], name=f"{out}_lin"),
        helper.make_node("Reshape", [f"{out}_lin", "heads"], [f"{out}_split"], name=f"{out}_r"),
        helper.make_node("Transpose", [f"{out}_split"], [out], name=f"{out}_t", perm=perm),
    ]


def _attention(scale: onnx.NodeProto, outputs: list[str]) -> onnx.ModelProto:
    """Scores of two heads, q·kᵀ, scaled, then Softmax; h (the model's MatMul) is unused."""
    consts = {
        "wk": np.random.default_rng(4).normal(size=(4, 6)),
        "heads": np.array([2, 3, 2, 3]),
        **EIGHT,
    }
    nodes = [
        *_heads("w", [0, 2, 1, 3], "q"),
        *_heads("wk", [0, 2, 3, 1], "kt"),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        scale,
        helper.make_node("Softmax", ["scaled"], ["attn"], name="softmax", axis=-1),
    ]
    model = _model(nodes, outputs, consts)
    heads = next(i for i in model.graph.initializer if i.name == "heads")
    heads.CopyFrom(numpy_helper.from_array(np.array([2, 3, 2, 3], np.int64), "heads"))
    return model


def test_a_scale_after_q_kt_folds_into_the_query_weights_with_their_ranges() -> None:
    """Times 8 grows q and the scores eightfold: their scales come from the calibrated ranges
    times 8, or the run would saturate (which _check refuses)."""
    chain = ["dense", "reshape", "transpose"]
    for scale in (
        helper.make_node("Mul", ["scores", "c"], ["scaled"], name="scale"),
        helper.make_node("Div", ["scores", "eighth"], ["scaled"], name="scale"),
    ):
        program = _check(_attention(scale, ["attn"]), [*chain, *chain, "matmul", "softmax"])
        assert "scores" not in program.tensors and program.steps[-2].output == "scaled"


def test_a_scale_stays_separate_when_the_chain_is_read_elsewhere_or_not_linear() -> None:
    scale = helper.make_node("Mul", ["scores", "c"], ["scaled"], name="scale")
    unfolded = ["dense", "reshape", "transpose"] * 2 + ["matmul", "mul", "softmax"]
    _check(_attention(scale, ["attn", "scores"]), unfolded)
    both_heads_read = ["attn", "q", "kt"]  # q and kt are outputs: neither side may change
    _check(_attention(scale, both_heads_read), unfolded)
    relu = [helper.make_node("Relu", ["h"], ["r"], name="relu"), _add("r", "c", op="Mul")]
    _check(_model(relu, ["y"], EIGHT), ["dense", "mul"])
    per_column = {"c": np.linspace(0.5, 2.0, 6)}
    _check(_model([_add("h", "c", op="Mul")], ["y"], per_column), ["dense", "mul"])
    adds_a_dimension = {"c": np.full((1, 1, 1, 1), 8.0)}  # y is [1, 2, 3, 6], h [2, 3, 6]
    _check(_model([_add("h", "c", op="Mul")], ["y"], adds_a_dimension), ["dense", "mul"])


def test_a_weight_shared_with_another_matmul_is_scaled_as_a_copy() -> None:
    other = helper.make_node("MatMul", ["x", "w"], ["h2"], name="other")
    _check(_model([other, _add("h", "c", op="Mul")], ["y", "h2"], EIGHT), ["dense", "dense"])
