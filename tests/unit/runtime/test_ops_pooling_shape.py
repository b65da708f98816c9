"""Pooling, reductions and shape ops: compiled programs against onnxruntime, the integer rules
against naive pure-Python re-implementations (Hypothesis), and every refusal path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import verinfer.runtime.ops.pooling
import verinfer.runtime.ops.shape  # noqa: F401  (registers the ops even if __init__ does not)
from verinfer.errors import ModelError
from verinfer.runtime import compiler
from verinfer.runtime.compiler import UnsupportedModelError, compile_proto
from verinfer.runtime.executor import Execution
from verinfer.runtime.fixed import ACT_MAX
from verinfer.runtime.ops.shape import IndexOutOfRangeError
from verinfer.runtime.program import Program

F, I64 = TensorProto.FLOAT, TensorProto.INT64
Spec = tuple[str, int, Sequence[int] | None]
SLOW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers --------------------------------------------------------------------------------


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[Spec],
    outputs: list[Spec],
    inits: Mapping[str, Any] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def grid(rng: np.random.Generator, shape: Sequence[int], limit: int = 4) -> np.ndarray:
    """Multiples of 1/64 in [-limit, limit]: exact at every scale the tests produce."""
    return (rng.integers(-limit * 64, limit * 64 + 1, tuple(shape)) / 64).astype(np.float32)


def check_attrs(program: Program) -> None:
    """Step attributes hold only Python ints, strings and tuples of ints."""
    for step in program.steps:
        for value in step.attrs.values():
            if isinstance(value, tuple):
                assert all(type(v) is int for v in value), (step.op, value)
            else:
                assert type(value) in (int, str), (step.op, value)


def run_ort(model: onnx.ModelProto, feed: Mapping[str, Any]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(v) for v in session.run(None, dict(feed))]


def run_both(
    model: onnx.ModelProto, feed: Mapping[str, Any], calibration: Any = None
) -> tuple[Program, Execution, list[np.ndarray]]:
    program = compile_proto(model, dict(feed) if calibration is None else calibration)
    check_attrs(program)
    return program, program.run(feed), run_ort(model, feed)


def assert_exact(
    model: onnx.ModelProto, feed: Mapping[str, Any], calibration: Any = None
) -> Program:
    program, ex, expected = run_both(model, feed, calibration)
    assert not ex.saturated
    for ours, theirs in zip(ex.outputs, expected, strict=True):
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs.astype(np.float64))
    return program


@contextmanager
def fixed_ranges(ranges: Mapping[str, float]) -> Iterator[None]:
    """Compile without onnxruntime calibration: every tensor's range is given."""
    with mock.patch.object(compiler, "tensor_ranges", lambda model, feeds: dict(ranges)):
        yield


def compile_fast(model: onnx.ModelProto, ranges: Mapping[str, float] | None = None) -> Program:
    with fixed_ranges(ranges or {}):
        program = compile_proto(model)
    check_attrs(program)
    return program


def run_q(program: Program, q: np.ndarray) -> np.ndarray:
    """Run a one-input fixed-point program on the integers ``q`` (fed as exact floats)."""
    x = program.inputs[0]
    ex = program.run({x.name: np.ldexp(q.astype(np.float64), -x.scale).astype(np.float32)})
    return ex.values[program.outputs[0].name]


def ops(program: Program) -> list[str]:
    return [s.op for s in program.steps]


# --- MaxPool --------------------------------------------------------------------------------

POOL_CASES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 2, 1]),
    dict(kernel_shape=[2, 2], strides=[1, 2], dilations=[2, 1], pads=[0, 1, 1, 0]),
    dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(kernel_shape=[3, 3], auto_pad="VALID"),
]


@pytest.mark.parametrize("attrs", POOL_CASES)
@pytest.mark.parametrize("negative", [False, True])
def test_maxpool_matches_onnxruntime(attrs: dict[str, Any], negative: bool) -> None:
    rng = np.random.default_rng(1)
    x = grid(rng, (2, 3, 7, 6))
    if negative:  # every real value is below the zero a naive padding would use
        x = -np.abs(x) - np.float32(1 / 64)
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    program = assert_exact(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    assert ops(program) == ["max_pool"]
    assert program.outputs[0].scale == program.inputs[0].scale
    assert program.outputs[0].bound == program.inputs[0].bound


def test_maxpool_1d() -> None:
    x = grid(np.random.default_rng(2), (1, 2, 9))
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1])
    assert_exact(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})


# --- AveragePool, GlobalAveragePool -----------------------------------------------------------


def assert_close(
    model: onnx.ModelProto, feed: Mapping[str, Any], calibration: Any = None
) -> Program:
    """Within one unit of the output scale (div_round's half unit, plus float32 noise)."""
    program, ex, expected = run_both(model, feed, calibration)
    for tensor, ours, theirs in zip(program.outputs, ex.outputs, expected, strict=True):
        assert ours.shape == theirs.shape
        assert np.max(np.abs(ours - theirs)) <= 2.0**-tensor.scale
    return program


@pytest.mark.parametrize("attrs", [a for a in POOL_CASES if "dilations" not in a])
@pytest.mark.parametrize("include", [0, 1])
def test_avgpool_matches_onnxruntime(attrs: dict[str, Any], include: int) -> None:
    x = grid(np.random.default_rng(3), (2, 3, 7, 6))
    node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=include, **attrs)
    program = assert_close(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    assert ops(program) == ["avg_pool"]
    assert program.outputs[0].scale == program.inputs[0].scale


@pytest.mark.parametrize("include", [0, 1])
def test_avgpool_dilations_opset19(include: int) -> None:
    x = grid(np.random.default_rng(4), (1, 2, 8, 7))
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        kernel_shape=[2, 3],
        dilations=[2, 2],
        pads=[1, 2, 1, 0],
        strides=[1, 2],
        count_include_pad=include,
    )
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], opset=19)
    assert_close(model, {"x": x})


def test_avgpool_1d() -> None:
    x = grid(np.random.default_rng(5), (2, 3, 10))
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[4], strides=[3], pads=[2, 1])
    assert_close(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})


def test_global_average_pool() -> None:
    x = grid(np.random.default_rng(6), (2, 5, 4, 3))
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    program = assert_close(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    assert program.outputs[0].shape == (2, 5, 1, 1)
    assert ops(program) == ["reduce_mean"]


def test_global_average_pool_exact_rule() -> None:
    node = helper.make_node("GlobalAveragePool", ["x"], ["y"])
    program = compile_fast(make_model([node], [("x", F, (1, 2, 2, 3))], [("y", F, None)]))
    q = np.array([[[[1, 2, 3], [4, 5, 6]], [[-1, -2, -3], [-4, -5, -4]]]], dtype=np.int64)
    # sums 21 and -19 over 6: 21/6 = 3.5 rounds up to 4, -19/6 = -3.17 rounds to -3
    assert run_q(program, q).reshape(-1).tolist() == [4, -3]


# --- ReduceMean, ReduceSum --------------------------------------------------------------------

REDUCE_CASES = [([1], 1), ([-1], 0), ([1, 2], 1), ([0, 2], 0), (None, 1), (None, 0)]


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
@pytest.mark.parametrize("opset", [11, 17, 18])
@pytest.mark.parametrize(("axes", "keepdims"), REDUCE_CASES)
def test_reduce_matches_onnxruntime(
    op: str, opset: int, axes: list[int] | None, keepdims: int
) -> None:
    x = grid(np.random.default_rng(7), (2, 3, 4))
    inits: dict[str, Any] = {}
    as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if axes is not None and as_input:
        node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)
        inits["axes"] = np.array(axes, dtype=np.int64)
    elif axes is not None:
        node = helper.make_node(op, ["x"], ["y"], axes=axes, keepdims=keepdims)
    else:
        node = helper.make_node(op, ["x"], ["y"], keepdims=keepdims)
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], inits, opset=opset)
    # Sums keep the input scale: calibrate on 24x the input so 24-term sums do not saturate.
    check = assert_exact if op == "ReduceSum" else assert_close
    program = check(model, {"x": x}, {"x": x * 24})
    assert ops(program) == ["reduce_mean" if op == "ReduceMean" else "reduce_sum"]
    x_t, y_t = program.inputs[0], program.outputs[0]
    assert y_t.scale == x_t.scale
    n = x_t.size // y_t.size
    assert y_t.bound == (x_t.bound if op == "ReduceMean" else min(x_t.bound * n, ACT_MAX))


def test_reduce_noop_with_empty_axes() -> None:
    x = grid(np.random.default_rng(8), (2, 3))
    node = helper.make_node("ReduceSum", ["x"], ["y"], noop_with_empty_axes=1)
    program = assert_exact(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    assert ops(program) == ["reshape"]


def test_reduce_sum_of_integers_stays_integer() -> None:
    node = helper.make_node("ReduceSum", ["m", "axes"], ["s"], keepdims=0)
    model = make_model(
        [node], [("m", I64, (2, 5))], [("s", I64, None)], {"axes": np.array([1], np.int64)}
    )
    program = compile_fast(model)
    assert program.outputs[0].kind == "int" and program.outputs[0].scale == 0
    m = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int64)
    assert program.run({"m": m}).values["s"].tolist() == [3, 5]


def test_reduce_sum_saturates_like_any_step() -> None:
    x = np.full((1, 64), 3.0, dtype=np.float32)
    node = helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)
    program = compile_proto(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    ex = program.run(x)
    assert ex.saturated == {"y": 1}
    assert ex.values["y"].tolist() == ACT_MAX


# --- reshape-like ops, Transpose ----------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "attrs", "inputs", "inits", "opset"),
    [
        ("Flatten", {"axis": 2}, ["x"], {}, 17),
        ("Flatten", {"axis": -3}, ["x"], {}, 17),
        ("Flatten", {}, ["x"], {}, 17),
        ("Reshape", {}, ["x", "s"], {"s": np.array([0, -1, 2], np.int64)}, 17),
        ("Reshape", {}, ["x", "s"], {"s": np.array([4, 3, 2, 1], np.int64)}, 17),
        ("Unsqueeze", {}, ["x", "a"], {"a": np.array([0, -1], np.int64)}, 17),
        ("Unsqueeze", {"axes": [1]}, ["x"], {}, 11),
        ("Squeeze", {}, ["x", "a"], {"a": np.array([0], np.int64)}, 17),
        ("Squeeze", {"axes": [0]}, ["x"], {}, 11),
        ("Squeeze", {}, ["x"], {}, 17),
    ],
)
def test_reshape_like(
    op: str, attrs: dict[str, Any], inputs: list[str], inits: dict[str, Any], opset: int
) -> None:
    x = grid(np.random.default_rng(9), (1, 2, 3, 4))
    node = helper.make_node(op, inputs, ["y"], **attrs)
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], inits, opset=opset)
    program = assert_exact(model, {"x": x})
    assert ops(program) == ["reshape"]  # a real step, not an alias: the shape changes
    y = program.outputs[0]
    assert y.name == "y" and y.shape == program.run({"x": x}).outputs[0].shape
    assert (y.scale, y.kind, y.bound) == (program.inputs[0].scale, "fx", program.inputs[0].bound)


def test_reshape_chain_keeps_integer_kind() -> None:
    """The attention-mask pattern: int64 mask -> Unsqueeze -> Unsqueeze -> Cast(float)."""
    nodes = [
        helper.make_node("Unsqueeze", ["m", "a1"], ["m1"]),
        helper.make_node("Unsqueeze", ["m1", "a2"], ["m2"]),
        helper.make_node("Cast", ["m2"], ["y"], to=F),
    ]
    inits = {"a1": np.array([1], np.int64), "a2": np.array([2], np.int64)}
    model = make_model(nodes, [("m", I64, (2, 5))], [("y", F, None)], inits)
    m = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int64)
    program = assert_exact(model, {"m": m})
    assert program.tensors["m2"].kind == "int" and program.tensors["m2"].shape == (2, 1, 1, 5)


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
def test_transpose(perm: list[int] | None) -> None:
    x = grid(np.random.default_rng(10), (1, 2, 3, 4))
    attrs = {} if perm is None else {"perm": perm}
    node = helper.make_node("Transpose", ["x"], ["y"], **attrs)
    program = assert_exact(make_model([node], [("x", F, x.shape)], [("y", F, None)]), {"x": x})
    assert ops(program) == ["transpose"]


# --- Concat -----------------------------------------------------------------------------------


def test_concat_mixed_scales_and_constant() -> None:
    rng = np.random.default_rng(11)
    a = grid(rng, (2, 3), limit=2)  # fine scale
    b = grid(rng, (2, 4), limit=900)  # coarse scale
    c = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5) * 3
    node = helper.make_node("Concat", ["a", "c", "b"], ["y"], axis=-1)
    model = make_model([node], [("a", F, a.shape), ("b", F, b.shape)], [("y", F, None)], {"c": c})
    program = assert_exact(model, {"a": a, "b": b})
    sa, sb = program.tensors["a"].scale, program.tensors["b"].scale
    assert sa > sb
    y = program.outputs[0]
    step = program.steps[0]
    assert y.scale == sb and step.attrs["shifts"] == (sa - sb, 0, 0)
    assert y.bound == max(program.tensors["b"].bound, -(-program.tensors["a"].bound >> (sa - sb)))


def test_concat_constant_lowers_the_scale_to_fit() -> None:
    node = helper.make_node("Concat", ["x", "c"], ["y"], axis=0)
    c = np.array([1000.0], dtype=np.float32)
    model = make_model([node], [("x", F, (2,))], [("y", F, None)], {"c": c})
    program = compile_fast(model, {"x": 1.0})
    y = program.outputs[0]
    assert y.scale < program.inputs[0].scale
    assert 1000 * 2**y.scale <= ACT_MAX
    assert program.run({"x": np.array([0.5, -0.25], np.float32)}).outputs[0].tolist() == [
        0.5,
        -0.25,
        1000.0,
    ]


def test_concat_integers() -> None:
    node = helper.make_node("Concat", ["i", "c"], ["y"], axis=1)
    c = np.array([[101], [102]], dtype=np.int64)
    model = make_model([node], [("i", I64, (2, 3))], [("y", I64, None)], {"c": c})
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    program = assert_exact(model, {"i": ids})
    assert program.outputs[0].kind == "int" and program.outputs[0].scale == 0


# --- Slice ------------------------------------------------------------------------------------

SLICE_CASES = [
    ([1], [3], [1], None),
    ([0, 1], [-1, 1000], [0, 2], None),
    ([-2], [-100], [2], [-1]),  # negative step, end clamped to "before index 0"
    ([2**62], [-(2**62)], [3], [-2]),  # start clamped to dim - 1
    ([-(2**62)], [2**62], [-1], [3]),
    ([4, 0], [0, 3], [1, 2], [-1, 2]),
]


@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), SLICE_CASES)
def test_slice_matches_onnxruntime(
    starts: list[int], ends: list[int], axes: list[int], steps: list[int] | None
) -> None:
    x = grid(np.random.default_rng(12), (2, 5, 6, 7))
    inits = {
        "s": np.array(starts, np.int64),
        "e": np.array(ends, np.int64),
        "a": np.array(axes, np.int64),
    }
    inputs = ["x", "s", "e", "a"]
    if steps is not None:
        inits["t"] = np.array(steps, np.int64)
        inputs.append("t")
    node = helper.make_node("Slice", inputs, ["y"])
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], inits)
    program = assert_exact(model, {"x": x})
    assert ops(program) == ["slice"]


def test_slice_opset9_attributes() -> None:
    x = grid(np.random.default_rng(13), (3, 4))
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[0, 1])
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], opset=9)
    assert_exact(model, {"x": x})


BOUNDARY = st.integers(-9, 9) | st.sampled_from([2**63 - 1, -(2**63), 2**31 - 1, -(2**31)])


@st.composite
def slice_axis(draw: st.DrawFn) -> tuple[int, int, int]:
    """(start, end, step), usually ordered along the step so the slice is not empty."""
    start, end = draw(BOUNDARY), draw(BOUNDARY)
    step = draw(st.sampled_from([1, 2, 3, -1, -2, -3]))
    if draw(st.integers(0, 3)):
        lo, hi = sorted((start, end), key=lambda v: v + 5 if -(2**40) < v < 0 else v)
        start, end = (lo, hi) if step > 0 else (hi, lo)
    return start, end, step


@SLOW
@given(st.lists(slice_axis(), min_size=3, max_size=3), st.permutations([0, 1, 2]))
def test_slice_rules_property(spec: list[tuple[int, int, int]], axes: list[int]) -> None:
    shape = (4, 5, 6)
    ref = np.arange(120, dtype=np.int64).reshape(shape)
    starts, ends, steps = (list(v) for v in zip(*spec, strict=True))
    # onnxruntime reads end = INT32_MAX / INT64_MAX with a negative step as "through index 0";
    # the ONNX spec (and ONNX shape inference, and verinfer) clamps it to dim - 1.
    assume(not any(t < 0 and e in (2**31 - 1, 2**63 - 1) for e, t in zip(ends, steps, strict=True)))
    expected = ort_slice(ref.astype(np.float32), starts, ends, axes, steps)
    inits = {
        "s": np.array(starts, np.int64),
        "e": np.array(ends, np.int64),
        "a": np.array(axes, np.int64),
        "t": np.array(steps, np.int64),
    }
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    model = make_model([node], [("x", F, shape)], [("y", F, None)], inits)
    event("empty" if expected.size == 0 else "non-empty")
    if expected.size == 0:  # committed tensors are never empty: refused at compile time
        with pytest.raises(UnsupportedModelError, match="empty"):
            compile_fast(model)
        return
    np.testing.assert_array_equal(run_q(compile_fast(model), ref), expected.astype(np.int64))


def ort_slice(
    x: np.ndarray, starts: list[int], ends: list[int], axes: list[int], steps: list[int]
) -> np.ndarray:
    """Slice with run-time starts/ends/axes/steps in onnxruntime (ONNX's numpy reference
    evaluator is not used: it slices like numpy, not with the spec's clamping)."""
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])
    graph = helper.make_graph(
        [node],
        "s",
        [
            helper.make_tensor_value_info(n, t, None)
            for n, t in [("x", F), ("s", I64), ("e", I64), ("a", I64), ("t", I64)]
        ],
        [helper.make_tensor_value_info("y", F, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    feed = {
        "x": x,
        "s": np.array(starts, np.int64),
        "e": np.array(ends, np.int64),
        "a": np.array(axes, np.int64),
        "t": np.array(steps, np.int64),
    }
    return run_ort(model, feed)[0]


# --- Gather -----------------------------------------------------------------------------------


def embedding_model(table: np.ndarray, ids_shape: tuple[int, ...]) -> onnx.ModelProto:
    node = helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)
    return make_model([node], [("ids", I64, ids_shape)], [("y", F, None)], {"table": table})


def test_gather_embedding() -> None:
    rng = np.random.default_rng(14)
    table = grid(rng, (50, 8), limit=3)
    ids = np.array([[0, 49, 7, -1, -50]], dtype=np.int64)
    program = assert_exact(embedding_model(table, ids.shape), {"ids": ids})
    assert ops(program) == ["gather"]
    y = program.outputs[0]
    const = next(iter(program.constants.values()))
    assert const.shape == (50, 8) and const.scale == y.scale
    assert y.bound == const.bound <= ACT_MAX and 3 * 2**y.scale <= ACT_MAX < 3 * 2 ** (y.scale + 1)


def test_gather_embedding_rounds_to_the_table_scale() -> None:
    table = np.random.default_rng(15).standard_normal((20, 4)).astype(np.float32)
    ids = np.array([[3, 19, 0]], dtype=np.int64)
    program, ex, expected = run_both(embedding_model(table, ids.shape), {"ids": ids})
    assert np.max(np.abs(ex.outputs[0] - expected[0])) <= 2.0 ** -(program.outputs[0].scale + 1)


def test_gather_out_of_range_id_raises_model_error() -> None:
    table = grid(np.random.default_rng(16), (10, 4))
    program = compile_proto(embedding_model(table, (1, 3)), {"ids": np.zeros((1, 3), np.int64)})
    for bad in (10, -11, 2**31 - 1):
        with pytest.raises(IndexOutOfRangeError, match=f"index {bad} is out of range") as info:
            program.run({"ids": np.array([[1, bad, 2]], dtype=np.int64)})
        assert isinstance(info.value, ModelError)
        assert "size 10" in str(info.value)


@pytest.mark.parametrize(
    ("axis", "indices"),
    [
        (1, np.array(0, np.int64)),
        (1, np.array(-1, np.int64)),
        (-1, np.array([[2, -4], [0, 1]])),
        (0, np.array([1, 1, 0])),
    ],
)
def test_gather_constant_indices(axis: int, indices: np.ndarray) -> None:
    x = grid(np.random.default_rng(17), (2, 3, 4))
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    model = make_model([node], [("x", F, x.shape)], [("y", F, None)], {"i": indices})
    program = assert_exact(model, {"x": x})
    index_const = program.constants[program.steps[0].inputs[1]]
    assert index_const.scale == 0 and index_const.shape == indices.shape


def test_gather_integer_data() -> None:
    """Picking a column of token ids keeps them integers."""
    node = helper.make_node("Gather", ["ids", "i"], ["y"], axis=1)
    model = make_model(
        [node], [("ids", I64, (2, 4))], [("y", I64, None)], {"i": np.array(0, np.int64)}
    )
    ids = np.array([[101, 5, 6, 102], [101, 7, 102, 0]], dtype=np.int64)
    program = assert_exact(model, {"ids": ids})
    assert program.outputs[0].kind == "int"


def test_gather_activation_indices() -> None:
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    model = make_model([node], [("x", F, (2, 5)), ("i", I64, (3,))], [("y", F, None)])
    x = grid(np.random.default_rng(18), (2, 5))
    assert_exact(model, {"x": x, "i": np.array([4, -5, 2], np.int64)})


@SLOW
@given(st.lists(st.integers(-12, 11), min_size=1, max_size=6))
def test_gather_negative_indices_property(ids: list[int]) -> None:
    table = (np.arange(12 * 2, dtype=np.float32).reshape(12, 2) - 7) / 4
    program = compile_fast(embedding_model(table, (len(ids),)))
    out = program.run({"ids": np.array(ids, np.int64)}).values["y"]
    scale = program.outputs[0].scale
    expected = [[int(v * 2**scale) for v in table[i]] for i in ids]  # Python's own -i indexing
    assert out.tolist() == expected


# --- ArgMax -------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
def test_argmax_matches_onnxruntime(axis: int, keepdims: int, last: int) -> None:
    x = (np.random.default_rng(19).integers(-2, 3, (3, 4, 5)) / 4).astype(np.float32)  # many ties
    node = helper.make_node(
        "ArgMax", ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last
    )
    program = assert_exact(make_model([node], [("x", F, x.shape)], [("y", I64, None)]), {"x": x})
    y = program.outputs[0]
    assert (y.kind, y.scale, y.bound) == ("int", 0, x.shape[axis] - 1)


@SLOW
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=8), st.booleans())
def test_argmax_ties_property(values: list[int], last: bool) -> None:
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=0, keepdims=0, select_last_index=int(last))
    model = make_model([node], [("x", F, (len(values),))], [("y", I64, None)])
    program = compile_fast(model, {"x": 4.0})
    best = max(values)
    hits = [i for i, v in enumerate(values) if v == best]
    assert int(run_q(program, np.array(values, np.int64))) == (hits[-1] if last else hits[0])


# --- Expand, Tile -------------------------------------------------------------------------------


def test_expand() -> None:
    x = grid(np.random.default_rng(20), (3, 1))
    node = helper.make_node("Expand", ["x", "s"], ["y"])
    model = make_model(
        [node], [("x", F, x.shape)], [("y", F, None)], {"s": np.array([2, 1, 4], np.int64)}
    )
    program = assert_exact(model, {"x": x})
    assert program.outputs[0].shape == (2, 3, 4)


def test_tile() -> None:
    x = grid(np.random.default_rng(21), (2, 3))
    node = helper.make_node("Tile", ["x", "r"], ["y"])
    model = make_model(
        [node], [("x", F, x.shape)], [("y", F, None)], {"r": np.array([2, 3], np.int64)}
    )
    assert_exact(model, {"x": x})


# --- Hypothesis: the integer rules of pooling and reductions -------------------------------------


@st.composite
def pool_geometry(draw: st.DrawFn) -> dict[str, Any]:
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    k = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    s = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    d = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    pads = [draw(st.integers(0, k[i % 2] - 1)) for i in range(4)]
    return {"hw": (h, w), "kernel_shape": k, "strides": s, "dilations": d, "pads": pads}


def naive_pool(q: np.ndarray, g: dict[str, Any], mode: str) -> list[Any]:
    """Window by window in pure Python: max over real positions, or div_round(sum, count)."""
    n, c, h, w = q.shape
    (kh, kw), (sh, sw), (dh, dw) = g["kernel_shape"], g["strides"], g["dilations"]
    top, left, bottom, right = g["pads"]
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((n, c, oh, ow), dtype=object)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        real = [
            int(q[b, ch, r, col])
            for r in (i * sh - top + a * dh for a in range(kh))
            for col in (j * sw - left + e * dw for e in range(kw))
            if 0 <= r < h and 0 <= col < w
        ]
        if mode == "max":
            out[b, ch, i, j] = max(real)
        else:
            count = kh * kw if mode == "avg_include" else len(real)
            out[b, ch, i, j] = (sum(real) + count // 2) // count
    result: list[Any] = out.tolist()
    return result


def _valid(g: dict[str, Any]) -> bool:
    """Every output window holds at least one real position (else the lowering refuses)."""
    (h, w), (kh, kw), (sh, sw), (dh, dw) = g["hw"], g["kernel_shape"], g["strides"], g["dilations"]
    top, left, bottom, right = g["pads"]
    oh = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    ow = (w + left + right - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        return False
    rows = all(any(0 <= i * sh - top + a * dh < h for a in range(kh)) for i in range(oh))
    cols = all(any(0 <= j * sw - left + e * dw < w for e in range(kw)) for j in range(ow))
    return rows and cols


@SLOW
@given(pool_geometry(), st.sampled_from(["max", "avg_include", "avg_exclude"]), st.data())
def test_pool_rules_property(g: dict[str, Any], mode: str, data: st.DataObject) -> None:
    assume(_valid(g))
    shape = (1, 2, *g["hw"])
    limit = 2**21
    q = np.array(
        data.draw(
            st.lists(
                st.integers(-limit, limit),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            )
        ),
        dtype=np.int64,
    ).reshape(shape)
    attrs = {k: v for k, v in g.items() if k != "hw"}
    if mode == "max":
        node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    else:
        node = helper.make_node(
            "AveragePool", ["x"], ["y"], count_include_pad=int(mode == "avg_include"), **attrs
        )
    model = make_model([node], [("x", F, shape)], [("y", F, None)], opset=19)
    program = compile_fast(model, {"x": 1.0})
    assert program.inputs[0].scale == 21  # q values up to 2**21 fit without saturation
    assert run_q(program, q).tolist() == naive_pool(q, g, mode)


@SLOW
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
        lambda dims: st.tuples(
            st.just(tuple(dims)),
            st.sets(st.integers(0, len(dims) - 1), min_size=1),
            st.integers(0, 1),
            st.lists(
                st.integers(-(2**21), 2**21),
                min_size=int(np.prod(dims)),
                max_size=int(np.prod(dims)),
            ),
        )
    ),
    st.sampled_from(["ReduceMean", "ReduceSum"]),
)
def test_reduce_rules_property(case: tuple[Any, ...], op: str) -> None:
    shape, axes, keepdims, flat = case
    q = np.array(flat, dtype=np.int64).reshape(shape)
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)
    model = make_model(
        [node],
        [("x", F, shape)],
        [("y", F, None)],
        {"axes": np.array(sorted(axes), np.int64)},
        opset=18,
    )
    program = compile_fast(model, {"x": 1.0})
    out = run_q(program, q)
    kept = [a for a in range(len(shape)) if a not in axes]
    n = int(np.prod([shape[a] for a in axes]))
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in itertools.product(*(range(d) for d in shape)):
        groups.setdefault(tuple(index[a] for a in kept), []).append(int(q[index]))
    for key, members in groups.items():
        total = sum(members)
        want = (total + n // 2) // n if op == "ReduceMean" else max(-ACT_MAX, min(total, ACT_MAX))
        where = tuple(key[kept.index(a)] if a in kept else 0 for a in range(len(shape)))
        got = out[where] if keepdims else out[key]
        assert int(got) == want


@SLOW
@given(st.integers(0, 8), st.lists(st.integers(-(2**22), 2**22), min_size=1, max_size=6))
def test_concat_rescale_property(extra_bits: int, values: list[int]) -> None:
    """The finer input is rescaled with shr_round: floor((q + 2**(k-1)) / 2**k)."""
    node = helper.make_node("Concat", ["a", "b"], ["y"], axis=0)
    n = len(values)
    model = make_model([node], [("a", F, (n,)), ("b", F, (1,))], [("y", F, None)])
    program = compile_fast(model, {"a": 1.0, "b": float(2**extra_bits)})
    sa, sb = program.tensors["a"].scale, program.tensors["b"].scale
    assert sa - sb == extra_bits
    feed = {
        "a": np.ldexp(np.array(values, np.float64), -sa).astype(np.float32),
        "b": np.zeros(1, np.float32),
    }
    out = program.run(feed).values["y"].tolist()
    k = extra_bits
    assert out[:n] == [(v + (1 << (k - 1))) // (1 << k) if k else v for v in values]


# --- refusals -----------------------------------------------------------------------------------


def refused(model: onnx.ModelProto, match: str, ranges: Mapping[str, float] | None = None) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        compile_fast(model, ranges)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_refuses_ceil_mode(op: str) -> None:
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    model = make_model([node], [("x", F, (1, 1, 5, 5))], [("y", F, None)])
    refused(model, "ceil_mode")
    with pytest.raises(UnsupportedModelError, match="ceil_mode"):  # with real calibration too
        compile_proto(model, {"x": grid(np.random.default_rng(0), (1, 1, 5, 5))})


def test_refuses_maxpool_indices_output() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    model = make_model([node], [("x", F, (1, 1, 4, 4))], [("y", F, None), ("i", I64, None)])
    refused(model, "Indices")


def test_refuses_3d_pooling() -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2])
    refused(make_model([node], [("x", F, (1, 1, 4, 4, 4))], [("y", F, None)]), "2-D")


def test_refuses_window_entirely_in_padding() -> None:
    node = helper.make_node(
        "MaxPool", ["x"], ["y"], kernel_shape=[1, 2], dilations=[1, 2], pads=[0, 1, 0, 1]
    )
    refused(make_model([node], [("x", F, (1, 1, 3, 1))], [("y", F, None)]), "padding")


@pytest.mark.parametrize("op", ["ReduceMean", "GlobalAveragePool", "AveragePool"])
def test_refuses_averaging_integers(op: str) -> None:
    attrs = {"kernel_shape": [1, 1]} if op == "AveragePool" else {}
    node = helper.make_node(op, ["m"], ["y"], **attrs)
    refused(make_model([node], [("m", I64, (1, 2, 2, 2))], [("y", I64, None)]), "integer")


def test_refuses_non_constant_axes() -> None:
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)
    model = make_model([node], [("x", F, (2, 3)), ("axes", I64, (1,))], [("y", F, (2, 1))])
    refused(model, "axes input 'axes' must be a constant")


def test_refuses_constant_gather_index_out_of_range() -> None:
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    model = make_model([node], [("x", F, (2, 3))], [("y", F, None)], {"i": np.array([1, 3])})
    refused(model, "index 3 is out of range for axis 1 of size 3")


def test_refuses_empty_slice() -> None:
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"])
    model = make_model(
        [node],
        [("x", F, (4,))],
        [("y", F, None)],
        {"s": np.array([3], np.int64), "e": np.array([1], np.int64)},
    )
    refused(model, "empty")


# --- serialization ------------------------------------------------------------------------------


def test_program_round_trip_keeps_every_step() -> None:
    rng = np.random.default_rng(22)
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Slice", ["t", "s", "e", "ax", "st"], ["sl"]),
        helper.make_node("Flatten", ["sl"], ["f"], axis=1),
        helper.make_node("Concat", ["f", "f"], ["c"], axis=1),
        helper.make_node("Gather", ["c", "gi"], ["g"], axis=1),
        helper.make_node("ReduceMean", ["g"], ["r"], axes=[1], keepdims=1),
        helper.make_node("ArgMax", ["c"], ["am"], axis=1),
    ]
    inits = {
        "s": np.array([-1], np.int64),
        "e": np.array([-100], np.int64),
        "ax": np.array([1], np.int64),
        "st": np.array([-2], np.int64),
        "gi": np.array([0, -1, 3], np.int64),
    }
    x = grid(rng, (1, 2, 5, 5))
    model = make_model(nodes, [("x", F, x.shape)], [("r", F, None), ("am", I64, None)], inits)
    program, ex, expected = run_both(model, {"x": x})
    np.testing.assert_array_equal(ex.outputs[1], expected[1])
    loaded = Program.from_bytes(program.to_bytes())
    assert loaded.program_hash == program.program_hash
    again = loaded.run({"x": x})
    assert again.trace_root == ex.trace_root
    for ours, theirs in zip(again.outputs_q, ex.outputs_q, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_concat_skips_empty_constants() -> None:
    node = helper.make_node("Concat", ["e", "x"], ["y"], axis=0)
    model = make_model(
        [node], [("x", F, (3,))], [("y", F, None)], {"e": np.zeros((0,), np.float32)}
    )
    program = assert_exact(model, {"x": np.array([0.5, -1.0, 2.0], np.float32)})
    assert program.steps[0].inputs == ("x",) and not program.constants
