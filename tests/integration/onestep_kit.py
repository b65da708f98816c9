"""Small programs for the one-step verifier's tests: element-wise ops and a matmul of
activations (built with the onnx helper API), and MiniLM's FFN-sized dense step."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from verinfer.runtime.compiler import compile_proto
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS


def run_test_model(name: str) -> tuple[Program, Execution]:
    """A committed test model (runtime.testmodels), compiled and run on its sample."""
    model = TEST_MODELS[name]
    program = model.compile()
    return program, program.run(model.inputs())


def _model(nodes: list[Any], inputs: list[Any], output: Any, inits: list[Any]) -> Any:
    graph = helper.make_graph(nodes, "onestep", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def elementwise_program(seed: int = 0) -> tuple[Program, Execution]:
    """X [2,16,24] @ Y [2,24,12] (batched) and X @ Z [24,12] (2-D b), then Add (a broadcast
    constant), Sub, Mul of activations, Mul by a constant vector, Pow(2), Relu."""
    rng = np.random.default_rng(seed)
    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("X", f, [2, 16, 24]),
        helper.make_tensor_value_info("Y", f, [2, 24, 12]),
        helper.make_tensor_value_info("Z", f, [24, 12]),
    ]
    inits = [
        numpy_helper.from_array(rng.normal(size=12).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.normal(size=12).astype(np.float32), "gain"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "Y"], ["P"]),
        helper.make_node("MatMul", ["X", "Z"], ["Q"]),
        helper.make_node("Add", ["P", "bias"], ["P1"]),
        helper.make_node("Sub", ["P1", "Q"], ["R"]),
        helper.make_node("Mul", ["R", "Q"], ["M"]),
        helper.make_node("Mul", ["M", "gain"], ["G"]),
        helper.make_node("Pow", ["G", "two"], ["S"]),
        helper.make_node("Sub", ["S", "G"], ["T"]),
        helper.make_node("Relu", ["T"], ["out"]),
    ]
    out = helper.make_tensor_value_info("out", f, [2, 16, 12])
    model = _model(nodes, inputs, out, inits)
    feed = {
        "X": rng.normal(size=(2, 16, 24)).astype(np.float32),
        "Y": rng.normal(size=(2, 24, 12)).astype(np.float32),
        "Z": rng.normal(size=(24, 12)).astype(np.float32),
    }
    program = compile_proto(model, feed, batch=2)
    return program, program.run(feed)


def conv_program(seed: int = 0) -> tuple[Program, Execution]:
    """A grouped, strided, dilated, asymmetrically padded Conv with bias and a fused Relu on
    x [1, 4, 16, 16] (two chunks per channel, so a window's chunks are not contiguous), then
    a padded MaxPool, an AveragePool counting its padding, and a ReduceSum."""
    rng = np.random.default_rng(seed)
    f = TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(rng.normal(size=(6, 2, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "B"),
    ]
    conv = helper.make_node(
        "Conv",
        ["x", "W", "B"],
        ["c"],
        group=2,
        strides=[2, 1],
        dilations=[1, 2],
        pads=[1, 2, 0, 1],
        kernel_shape=[3, 3],
    )
    pools = [
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node(
            "MaxPool", ["r"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "AveragePool",
            ["mp"],
            ["ap"],
            kernel_shape=[2, 2],
            strides=[1, 1],
            pads=[0, 1, 1, 0],
            count_include_pad=1,
        ),
        helper.make_node("ReduceSum", ["ap", "axes"], ["y"], keepdims=0),
    ]
    inits.append(numpy_helper.from_array(np.array([3], dtype=np.int64), "axes"))
    model = _model(
        [conv, *pools],
        [helper.make_tensor_value_info("x", f, [1, 4, 16, 16])],
        helper.make_tensor_value_info("y", f, [1, 6, 4]),
        inits,
    )
    feed = {"x": rng.normal(size=(1, 4, 16, 16)).astype(np.float32)}
    program = compile_proto(model, feed, batch=1)
    return program, program.run(feed)


def wide_dense_program(
    k: int = 1536, n: int = 384, rows: int = 1, seed: int = 0
) -> tuple[Program, Execution]:
    """One Gemm with bias, x [rows, k] -> [rows, n]; by default of MiniLM's FFN size."""
    rng = np.random.default_rng(seed)
    f = TensorProto.FLOAT
    w = (rng.normal(size=(n, k)) / np.sqrt(k)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(rng.normal(size=n).astype(np.float32), "B"),
    ]
    node = helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)
    model = _model(
        [node],
        [helper.make_tensor_value_info("x", f, [rows, k])],
        helper.make_tensor_value_info("y", f, [rows, n]),
        inits,
    )
    feed = {"x": rng.normal(size=(rows, k)).astype(np.float32)}
    program = compile_proto(model, feed, batch=rows)
    return program, program.run(feed)


def rows_program(
    width: int = 384, softmax_width: int = 128, rows: int = 2, seed: int = 0
) -> tuple[Program, Execution]:
    """MiniLM's row ops: LayerNormalization over ``width`` values and Softmax over
    ``softmax_width`` (attention scores of a 128-token sequence), then Gelu (a table)."""
    rng = np.random.default_rng(seed)
    f = TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(rng.normal(1.0, 0.1, size=width).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.normal(0.0, 0.1, size=width).astype(np.float32), "beta"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1),
        helper.make_node("Gelu", ["ln"], ["g"], domain=""),
        helper.make_node("Softmax", ["s"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "rows",
        [
            helper.make_tensor_value_info("x", f, [rows, width]),
            helper.make_tensor_value_info("s", f, [rows, softmax_width]),
        ],
        [
            helper.make_tensor_value_info("g", f, [rows, width]),
            helper.make_tensor_value_info("y", f, [rows, softmax_width]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    feed = {
        "x": rng.normal(size=(rows, width)).astype(np.float32),
        "s": (4 * rng.normal(size=(rows, softmax_width))).astype(np.float32),
    }
    program = compile_proto(model, feed, batch=rows)
    return program, program.run(feed)


def misc_program(seed: int = 0) -> tuple[Program, Execution]:
    """The ops the test models lack: Tile, Expand, a ReduceMean / ReduceSum over leading
    axes, the casts (float -> int truncates, -> bool, int -> float copies), and an
    unsupported layout: a ReduceSum over the non-adjacent axes 0 and 2."""
    rng = np.random.default_rng(seed)
    f, i32 = TensorProto.FLOAT, TensorProto.INT32
    inits = [
        numpy_helper.from_array(np.array([1, 2, 1], dtype=np.int64), "reps"),
        numpy_helper.from_array(np.array([2, 3, 4], dtype=np.int64), "shape"),
        numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "axes01"),
        numpy_helper.from_array(np.array([0, 2], dtype=np.int64), "axes02"),
    ]
    nodes = [
        helper.make_node("Tile", ["x", "reps"], ["tiled"]),
        helper.make_node("ReduceMean", ["x"], ["mean0"], axes=[0], keepdims=1),
        helper.make_node("Expand", ["mean0", "shape"], ["expanded"]),
        helper.make_node("ReduceSum", ["x", "axes01"], ["sum01"], keepdims=0),
        helper.make_node("ReduceSum", ["x", "axes02"], ["sum02"], keepdims=0),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("Cast", ["sq"], ["ints"], to=i32),
        helper.make_node("Cast", ["x"], ["bools"], to=TensorProto.BOOL),
        helper.make_node("Cast", ["ints"], ["floats"], to=f),
    ]
    outputs = [
        helper.make_tensor_value_info("tiled", f, [2, 6, 4]),
        helper.make_tensor_value_info("expanded", f, [2, 3, 4]),
        helper.make_tensor_value_info("sum01", f, [4]),
        helper.make_tensor_value_info("sum02", f, [3]),
        helper.make_tensor_value_info("bools", TensorProto.BOOL, [2, 3, 4]),
        helper.make_tensor_value_info("floats", f, [2, 3, 4]),
    ]
    graph = helper.make_graph(
        nodes, "misc", [helper.make_tensor_value_info("x", f, [2, 3, 4])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = 3 * rng.normal(size=(2, 3, 4)).astype(np.float32)
    x[0, 0, 0] = 0.0  # a false bool
    feed = {"x": x}
    program = compile_proto(model, feed, batch=2)
    return program, program.run(feed)
