"""The runtime's test models: the build script is deterministic, the committed files are its
output, and onnxruntime runs every committed model on its committed sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from verinfer.models.onnx_check import inspect_onnx

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "models"
SCRIPT = EXAMPLE_DIR / "build_test_models.py"

# name -> (sample shape, {output name: (shape, dtype)}, operators the model must contain)
MODELS: dict[str, tuple[tuple[int, ...], dict[str, tuple[tuple[int, ...], str]], set[str]]] = {
    "digits_cnn": (
        (8, 1, 8, 8),
        {"logits": ((8, 10), "float32")},
        {"Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool"}
        | {"GlobalAveragePool", "Flatten", "Gemm"},
    ),
    "sigmoid_mlp": (
        (8, 64),
        {"probs": ((8, 10), "float32")},
        {"Sub", "Div", "MatMul", "Add", "Sigmoid", "Gemm", "Tanh", "LeakyRelu", "Clip", "Mul"}
        | {"Softmax"},
    ),
    "transformer_block": (
        (4, 16, 64),
        {"y": ((4, 16, 64), "float32")},
        {"Gather", "Add", "ReduceMean", "Squeeze", "Unsqueeze", "Concat", "LayerNormalization"}
        | {"MatMul", "Reshape", "Transpose", "Div", "Softmax", "Sub", "Pow", "Sqrt", "Mul"}
        | {"Constant", "Erf", "Slice"},
    ),
    "shape_ops": (
        (4, 3, 4, 4),
        {"features": ((4, 36), "float32"), "argmax": ((4,), "int64")},
        {"Transpose", "Reshape", "Slice", "Gather", "Concat", "Identity", "Cast", "Exp"}
        | {"Where", "Unsqueeze", "Squeeze", "Flatten", "ArgMax"},
    ),
}
MIN_ACCURACY = {"digits_cnn": 0.95, "sigmoid_mlp": 0.9}


def test_script_is_deterministic_and_matches_committed_files(tmp_path: Path) -> None:
    # Two independent processes side by side, one with a single BLAS thread and one with two:
    # both must reproduce the committed files byte for byte.
    runs = {tmp_path / "one_thread": "1", tmp_path / "two_threads": "2"}
    procs = []
    for out, threads in runs.items():
        env = dict(os.environ)
        env.update(OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        env.update(MKL_NUM_THREADS=threads)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        for name, floor in MIN_ACCURACY.items():
            match = re.search(rf"{name}: test accuracy: ([0-9.]+)", stdout)
            assert match, stdout
            assert float(match.group(1)) >= floor
        assert stdout.count("max abs diff") == len(MODELS), stdout

    for name in MODELS:
        for file in (f"{name}.onnx", f"{name}_sample.npy"):
            committed = (EXAMPLE_DIR / file).read_bytes()
            for out in runs:
                assert (out / file).read_bytes() == committed, f"{file} differs from {out}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_committed_model_runs_on_its_sample(name: str) -> None:
    sample_shape, outputs, ops = MODELS[name]
    sample = np.load(EXAMPLE_DIR / f"{name}_sample.npy")
    assert sample.dtype == np.float32
    assert sample.shape == sample_shape
    assert np.isfinite(sample).all()

    path = EXAMPLE_DIR / f"{name}.onnx"
    assert path.stat().st_size < 1_000_000
    spec = inspect_onnx(path, batch=len(sample))
    assert spec.batch_bound
    assert spec.opset == 17
    assert ops <= set(spec.op_types), sorted(ops - set(spec.op_types))
    assert [t.shape for t in spec.inputs] == [sample.shape]
    assert {t.name: t.shape for t in spec.outputs} == {k: v[0] for k, v in outputs.items()}

    session = ort.InferenceSession(spec.data, providers=["CPUExecutionProvider"])
    feed = {spec.inputs[0].name: sample}
    results = dict(zip(outputs, session.run(list(outputs), feed), strict=True))
    for out_name, (shape, dtype) in outputs.items():
        value = results[out_name]
        assert value.shape == shape
        assert value.dtype == np.dtype(dtype)
        assert np.isfinite(value).all()

    # The batch dimension really is dynamic: one row at a time gives the same results.
    one = session.run(list(outputs), {spec.inputs[0].name: sample[1:2]})
    row = dict(zip(outputs, one, strict=True))
    for out_name, value in results.items():
        np.testing.assert_allclose(row[out_name][0], value[1], rtol=1e-5, atol=1e-6)

    if name == "sigmoid_mlp":
        np.testing.assert_allclose(results["probs"].sum(axis=1), 1.0, rtol=1e-5)
