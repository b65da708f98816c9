"""Bad models and bad inputs: typed errors with clear messages; the CLI exits 1 cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from verinfer.cli import app
from verinfer.errors import ModelError
from verinfer.runtime import RuntimeInputError, UnsupportedModelError, compile_model, compile_proto
from verinfer.runtime.testmodels import TEST_MODELS

runner = CliRunner()
MLP = TEST_MODELS["digits_mlp"]


def model_with(nodes: list[onnx.NodeProto], dims: list[object] | None = None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims or ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims or ["batch", 4])
    graph = helper.make_graph(nodes, "bad", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_unsupported_ops_are_all_listed_with_their_nodes() -> None:
    model = model_with([
        helper.make_node("Sin", ["x"], ["a"], name="first_sin"),
        helper.make_node("Relu", ["a"], ["b"], name="fine"),
        helper.make_node("Cos", ["b"], ["y"], name="then_cos"),
    ])  # fmt: skip
    with pytest.raises(UnsupportedModelError) as err:
        compile_proto(model)
    assert "2 unsupported op(s)" in str(err.value)
    assert "Sin (first_sin)" in str(err.value) and "Cos (then_cos)" in str(err.value)
    assert err.value.hint and "runtime-spec" in err.value.hint


def test_division_by_a_tensor_names_the_node() -> None:
    model = model_with([helper.make_node("Div", ["x", "x"], ["y"], name="ratio")])
    with pytest.raises(UnsupportedModelError, match="'ratio' .*division by a computed tensor"):
        compile_proto(model)


def test_wrong_input_shape_dtype_and_names() -> None:
    program = MLP.compile(batch=2)
    good = MLP.inputs()[:2]
    with pytest.raises(RuntimeInputError, match=r"shape \(3, 64\).*expects \(2, 64\)"):
        program.run(MLP.inputs()[:3])
    with pytest.raises(RuntimeInputError, match="must be numeric"):
        program.run(good.astype(str))
    with pytest.raises(RuntimeInputError, match="unknown input"):
        program.run({"input": good, "extra": good})
    with pytest.raises(RuntimeInputError, match="missing input"):
        program.run({})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    program = MLP.compile(batch=1)
    x = MLP.inputs()[:1].copy()
    x[0, 5] = bad
    with pytest.raises(RuntimeInputError, match="NaN or infinity"):
        program.run(x)


def test_values_beyond_the_calibrated_range_saturate_and_are_reported() -> None:
    program = MLP.compile(batch=1)
    x = MLP.inputs()[:1] * 1e6  # far outside the [0, 1] pixels it was calibrated on
    execution = program.run(x)
    assert execution.saturated.get("input") == int(np.count_nonzero(x))
    limit = 2**23 - 1
    assert all(int(np.max(np.abs(v))) <= limit for v in execution.values.values())


def test_truncated_onnx_is_a_model_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(MLP.onnx.read_bytes()[:300])
    with pytest.raises(ModelError, match="not a valid ONNX"):
        compile_model(cut)


def test_dynamic_non_batch_dimension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dyn.onnx"
    onnx.save(model_with([helper.make_node("Relu", ["x"], ["y"])], ["batch", "width"]), path)
    with pytest.raises(ModelError, match="width"):
        compile_model(path)
    assert compile_model(MLP.onnx, batch=3).inputs[0].shape == (3, 64)  # batch dims are fine


def test_cli_check_run_and_failures(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, MLP.inputs()[:1])
    ok = runner.invoke(app, ["runtime", "run", str(MLP.onnx), "--input", str(x), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"trace_root": "0x' in ok.stdout and '"program_hash"' in ok.stdout
    assert runner.invoke(app, ["runtime", "check", str(MLP.onnx)]).exit_code == 0
    sin = tmp_path / "sin.onnx"
    onnx.save(model_with([helper.make_node("Sin", ["x"], ["y"], name="s")]), sin)
    refused = runner.invoke(app, ["runtime", "check", str(sin)])
    assert refused.exit_code == 1 and "Sin (s)" in refused.output
    assert "Traceback" not in refused.output
    (tmp_path / "bad.npy").write_text("no")
    bad = runner.invoke(
        app, ["runtime", "run", str(MLP.onnx), "--input", str(tmp_path / "bad.npy")]
    )
    assert bad.exit_code == 1 and "not a valid .npy" in bad.output
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 5), np.float32))
    shape = runner.invoke(app, ["runtime", "run", str(MLP.onnx), "--input", str(wrong)])
    assert shape.exit_code == 1 and "expects (1, 64)" in shape.output
