"""The example model: its script is deterministic and the committed files are its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from verinfer.models.onnx_check import inspect_onnx

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "models"
SCRIPT = EXAMPLE_DIR / "train_digits.py"
FILES = ("digits_mlp.onnx", "digits_sample.npy")


def test_script_is_deterministic_and_matches_committed_files(tmp_path: Path) -> None:
    runs = [tmp_path / "a", tmp_path / "b"]
    # Two independent processes, run side by side to keep the test short.
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in runs
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr
        match = re.search(r"test accuracy: ([0-9.]+)", stdout)
        assert match, stdout
        assert float(match.group(1)) >= 0.95
        assert "max abs diff" in stdout

    for name in FILES:
        first, second = ((out / name).read_bytes() for out in runs)
        assert first == second, f"{name} differs between two runs"
        # Training is float64 and only the result is rounded to float32, so the last-bit
        # differences between BLAS kernels do not reach the file: the committed copy matches.
        assert first == (EXAMPLE_DIR / name).read_bytes(), f"committed {name} is stale"


def test_committed_model_runs_on_the_committed_sample() -> None:
    sample = np.load(EXAMPLE_DIR / "digits_sample.npy")
    assert sample.dtype == np.float32
    assert sample.shape == (8, 64)
    assert 0.0 <= sample.min() and sample.max() <= 1.0

    spec = inspect_onnx(EXAMPLE_DIR / "digits_mlp.onnx", batch=len(sample))
    assert spec.inputs[0].shape == sample.shape
    session = ort.InferenceSession(spec.data, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input": sample})
    assert logits.shape == spec.outputs[0].shape == (8, 10)
    assert np.isfinite(logits).all()
    # The batch dimension really is dynamic: one row at a time gives the same scores.
    (row,) = session.run(["logits"], {"input": sample[:1]})
    np.testing.assert_allclose(row[0], logits[0], rtol=1e-6, atol=1e-6)
