"""Inputs no node can run are InvalidRequestInputError (answered with the empty output);
the node's own failures (a referenced input missing from its store) are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from verinfer.chain.codec import encode_reference, encode_tensors
from verinfer.node.executor import Executor, InputUnavailableError, InvalidRequestInputError
from verinfer.runtime import Program, compile_proto
from verinfer.store.local import LocalStore


def embedding() -> Program:
    """ids (int64, 1 x 3) -> Gather from a 5 x 2 table: ids must lie in -5 .. 4."""
    table = numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(5, 2) / 8, "table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return compile_proto(model, {"ids": np.array([[0, 1, 4]], dtype=np.int64)})


@pytest.fixture
def executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Executor:
    ex = Executor(registry=Any, store=LocalStore(tmp_path / "store"))  # type: ignore[arg-type]
    program = embedding()
    monkeypatch.setattr(ex, "program", lambda _model_id: program)
    return ex


def ids(*values: int, scale: int = 0) -> bytes:
    return encode_tensors([(np.array(values, dtype=np.int32), scale)])


def test_valid_input_runs(executor: Executor) -> None:
    assert executor.run(1, ids(0, 1, 4)).startswith(b"\x01")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x09", "unknown tensor encoding kind"),
        (b"\x01\x00\x00\x00\x00\x07", "declares 7 values"),
        (ids(0, 1), "has 2 values"),
        (ids(0, 1, 2, scale=3), "scale"),
        (ids(0, 1, 5), "out of range"),  # the runtime refuses: token id past the table
        (ids(0, -6, 1), "out of range"),
        (ids(0, -(2**31), 1), "outside int32"),  # the runtime refuses: not a valid id
        (b"\x02\x01", "not a valid CIDv1"),
    ],
)
def test_inputs_no_node_can_run(executor: Executor, data: bytes, why: str) -> None:
    with pytest.raises(InvalidRequestInputError, match=why):
        executor.run(1, data)


def test_referenced_input(executor: Executor) -> None:
    store = executor.programs.store
    good = store.put(ids(4, 3, 2))
    assert executor.run(1, encode_reference(good)) == executor.run(1, ids(4, 3, 2))
    nested = store.put(encode_reference(good))
    with pytest.raises(InvalidRequestInputError, match="does not hold inline tensors"):
        executor.run(1, encode_reference(nested))
    missing = "bafkreibltzdvaqdndndbqdkyk2ohnxzx6fi35p5gdxf76a6eewjdnvrahu"
    with pytest.raises(InputUnavailableError, match="not in this node's store"):
        executor.run(1, encode_reference(missing))
