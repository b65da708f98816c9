"""ONNX validation: one test per kind of bad file, plus the models verinfer must accept."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from verinfer.errors import ModelError
from verinfer.models.onnx_check import OnnxSpec, TensorSpec, bind_batch, inspect_onnx

DIGITS = Path(__file__).resolve().parents[3] / "examples" / "models" / "digits_mlp.onnx"

Dims = Sequence[int | str | None] | None


def _linear(
    in_shape: Dims = ("batch", 4),
    out_shape: Dims = ("batch", 3),
    *,
    opset: int = 17,
    ir_version: int = 9,
    nodes: list[onnx.NodeProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
) -> onnx.ModelProto:
    """A one-Gemm model x[batch, 4] -> y[batch, 3], with the parts a test wants changed."""
    graph = helper.make_graph(
        nodes or [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        outputs
        if outputs is not None
        else [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w"),
            numpy_helper.from_array(np.zeros(3, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _error(path: Path, batch: int = 1) -> ModelError:
    with pytest.raises(ModelError) as info:
        inspect_onnx(path, batch)
    err = info.value
    assert str(path) in err.message
    assert err.hint
    return err


# --- files that are not models -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    err = _error(tmp_path / "nope.onnx")
    assert "does not exist" in err.message
    assert "check the path" in (err.hint or "")


def test_directory(tmp_path: Path) -> None:
    err = _error(tmp_path)
    assert "is a directory" in err.message
    assert ".onnx file itself" in (err.hint or "")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    err = _error(path)
    assert "empty" in err.message
    assert "re-export" in (err.hint or "")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    err = _error(path)
    assert "not a valid ONNX model" in err.message
    assert "re-export" in (err.hint or "")
    assert isinstance(err.__cause__, Exception)  # the DecodeError, chained, never raised raw


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is a README, not a model\n")
    err = _error(path)
    assert "not a valid ONNX model: it is a text file" in err.message
    assert "onnx.save_model" in (err.hint or "")


def test_text_that_protobuf_happens_to_parse(tmp_path: Path) -> None:
    # "(\n" decodes as a ModelProto with model_version = 10 and nothing else.
    path = tmp_path / "tiny.onnx"
    path.write_bytes(b"(\n")
    err = _error(path)
    assert "not a valid ONNX model" in err.message
    assert "no IR version or graph" in err.message


def test_git_lfs_pointer(tmp_path: Path) -> None:
    path = tmp_path / "lfs.onnx"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 10064\n")
    err = _error(path)
    assert "Git LFS pointer" in err.message
    assert "git lfs pull" in (err.hint or "")


def test_truncated_onnx(tmp_path: Path) -> None:
    data = DIGITS.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    err = _error(path)
    assert "not a valid ONNX model" in err.message
    assert "truncated" in err.message


def test_every_truncation_is_a_model_error(tmp_path: Path) -> None:
    data = DIGITS.read_bytes()
    path = tmp_path / "cut.onnx"
    for cut in range(1, len(data), 97):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelError):
            inspect_onnx(path)


# --- models that are ONNX but not acceptable -----------------------------------------------


def test_checker_failure(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["missing", "w", "b"], ["y"], transB=1)]
    err = _error(_save(tmp_path, _linear(nodes=nodes)))
    assert "fails onnx.checker" in err.message
    assert "'missing'" in err.message
    assert "\n" not in err.message
    assert "re-export" in (err.hint or "")


def test_unknown_operator_fails_checker(tmp_path: Path) -> None:
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"])]
    err = _error(_save(tmp_path, _linear(nodes=nodes)))
    assert "fails onnx.checker" in err.message
    assert "Frobnicate" in err.message


def test_opset_below_13(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(opset=12)))
    assert "opset 12 is too old" in err.message
    assert "opset >= 13" in (err.hint or "")
    assert "onnx.version_converter" in (err.hint or "")


def test_no_default_domain_opset(tmp_path: Path) -> None:
    model = _linear()
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    err = _error(_save(tmp_path, model))
    assert "no default-domain" in err.message
    assert "opset >= 13" in (err.hint or "")


def test_ir_version_too_new(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(ir_version=14)))
    assert "IR version 14" in err.message
    assert "model.ir_version" in (err.hint or "")


def test_no_inputs(tmp_path: Path) -> None:
    # The only graph input is an initializer: nothing is fed at run time.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "constant",
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[numpy_helper.from_array(np.ones(3, dtype=np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    err = _error(_save(tmp_path, model))
    assert "no inputs" in err.message
    assert "input tensor" in (err.hint or "")


def test_no_outputs(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(outputs=[])))
    assert "no outputs" in err.message
    assert "graph output" in (err.hint or "")


def test_dynamic_non_batch_dimension(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(in_shape=("batch", "features"))))
    assert "input 'x'" in err.message
    assert "'features'" in err.message
    assert "axis 1" in err.message
    assert "fixed size" in (err.hint or "")


def test_unknown_non_batch_dimension(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(in_shape=(1, None))))
    assert "input 'x'" in err.message
    assert "of unknown size at axis 1" in err.message


def test_output_dynamic_dimension_that_inference_cannot_fix(tmp_path: Path) -> None:
    # NonZero's output length depends on the data: no batch binding can make it static.
    nonzero = helper.make_tensor_value_info("y", TensorProto.INT64, [2, "nnz"])
    nodes = [helper.make_node("NonZero", ["x"], ["y"])]
    err = _error(_save(tmp_path, _linear(nodes=nodes, outputs=[nonzero])))
    assert "output 'y'" in err.message
    assert "'nnz' at axis 1" in err.message


def test_declared_output_shape_contradicts_graph(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(out_shape=("batch", 11))), batch=2)
    assert "output 'y'" in err.message
    assert "[batch, 11]" in err.message
    assert "[2, 3]" in err.message
    assert "declared output shape" in (err.hint or "")


def test_zero_sized_dimension(tmp_path: Path) -> None:
    err = _error(_save(tmp_path, _linear(in_shape=(0, 4))))
    assert "size 0 at axis 0" in err.message


def test_external_data(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        _linear(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").exists()
    err = _error(path)
    assert "external file ('weights.bin')" in err.message
    assert "initializer 'w'" in err.message
    assert "self-contained" in err.message
    assert "save_as_external_data=False" in (err.hint or "")


def test_sequence_output(tmp_path: Path) -> None:
    seq = helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("SequenceConstruct", ["x"], ["y"])]
    err = _error(_save(tmp_path, _linear(nodes=nodes, outputs=[seq])))
    assert "output 'y' is a sequence_type, not a tensor" in err.message
    assert "zipmap" in (err.hint or "")


@pytest.mark.parametrize("batch", [0, -1, True, 1.5])
def test_bad_batch(batch: object) -> None:
    with pytest.raises(ModelError) as info:
        inspect_onnx(DIGITS, batch)  # type: ignore[arg-type]
    assert "invalid batch size" in info.value.message
    assert info.value.hint


# --- models that verinfer accepts ----------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 4])
def test_digits_model(batch: int) -> None:
    spec = inspect_onnx(DIGITS, batch)
    assert isinstance(spec, OnnxSpec)
    assert spec.inputs == (TensorSpec("input", (batch, 64), "float"),)
    assert spec.outputs == (TensorSpec("logits", (batch, 10), "float"),)
    assert spec.opset == 17
    assert spec.ir_version == 9
    assert spec.op_types == ("Gemm", "Relu")
    assert spec.batch == batch
    assert spec.batch_bound
    assert spec.data == DIGITS.read_bytes()
    assert spec.size_bytes == len(spec.data)
    assert spec.non_numeric == ()
    assert "data" not in repr(spec)


def test_static_model_keeps_its_shapes(tmp_path: Path) -> None:
    spec = inspect_onnx(_save(tmp_path, _linear(in_shape=(2, 4), out_shape=(2, 3))), batch=5)
    assert spec.inputs[0].shape == (2, 4)
    assert spec.outputs[0].shape == (2, 3)
    assert not spec.batch_bound


def test_unknown_batch_dim_and_inferred_output(tmp_path: Path) -> None:
    # Leading dim without a name, output declared with a dynamic class axis: inference fixes it.
    spec = inspect_onnx(_save(tmp_path, _linear(in_shape=(None, 4), out_shape=("N", "k"))), 3)
    assert spec.inputs[0].shape == (3, 4)
    assert spec.outputs[0].shape == (3, 3)
    assert spec.outputs[0].size == 9


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path: Path) -> None:
    model = _linear()
    for init in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
        )
    spec = inspect_onnx(_save(tmp_path, model))
    assert [t.name for t in spec.inputs] == ["x"]


def test_non_numeric_types_are_reported(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Not", ["mask"], ["flipped"])],
        "mask",
        [helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 3])],
        [helper.make_tensor_value_info("flipped", TensorProto.BOOL, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    spec = inspect_onnx(_save(tmp_path, model), batch=2)
    assert spec.inputs == (TensorSpec("mask", (2, 3), "bool"),)
    assert [t.name for t in spec.non_numeric] == ["mask", "flipped"]


def test_skl2onnx_model(tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    model = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 4]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(clf): {"zipmap": False}},
    )
    model.ir_version = 9
    spec = inspect_onnx(_save(tmp_path, model), batch=6)
    assert spec.inputs == (TensorSpec("input", (6, 4), "float"),)
    assert spec.outputs == (
        TensorSpec("label", (6,), "int64"),
        TensorSpec("probabilities", (6, 3), "float"),
    )
    assert spec.batch_bound
    assert spec.opset >= 13
    assert "ai.onnx.ml::LinearClassifier" in spec.op_types


def test_bind_batch_copies() -> None:
    model = onnx.load(str(DIGITS))
    bound = bind_batch(model, 7)
    assert bound.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 7
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with pytest.raises(ModelError):
        bind_batch(model, 0)
