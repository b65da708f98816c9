"""The example dApps' models: deterministic scripts, committed files, and sane behaviour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from verinfer.runtime import compile_model

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MODELS = {
    "amm": ("volatility_model.py", ("volatility_mlp.onnx", "volatility_sample.npy")),
    "lending": ("risk_model.py", ("risk_mlp.onnx", "risk_sample.npy")),
}


def test_scripts_rebuild_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    runs = {(name, i): tmp_path / f"{name}-{i}" for name in MODELS for i in (0, 1)}
    procs = {
        key: subprocess.Popen(
            [sys.executable, str(EXAMPLES / key[0] / MODELS[key[0]][0]), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, out in runs.items()
    }
    for key, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{key}: {stderr}"
    for name, (_, files) in MODELS.items():
        for file in files:
            first, second = ((runs[(name, i)] / file).read_bytes() for i in (0, 1))
            assert first == second, f"{name}/{file} differs between two runs"
            assert first == (EXAMPLES / name / file).read_bytes(), f"committed {file} is stale"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_are_small_and_the_runtime_agrees_with_onnxruntime(name: str) -> None:
    model_file, sample_file = (EXAMPLES / name / f for f in MODELS[name][1])
    assert model_file.stat().st_size < 50_000
    sample = np.load(sample_file)
    assert sample.dtype == np.float32 and sample.ndim == 2
    program = compile_model(model_file, sample, batch=1)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: sample})
    got = np.concatenate([program.run(row[None, :], trace=False).outputs[0] for row in sample])
    tolerance = {"amm": 0.05, "lending": 2e-3}[name]  # bps / probability
    assert np.abs(got - expected).max() < tolerance
    # The contracts encode activations in 24 bits at the program's input scale.
    assert 0 <= program.inputs[0].scale <= 30


def test_volatility_model_charges_more_in_a_stressed_market() -> None:
    session = ort.InferenceSession(
        str(EXAMPLES / "amm" / "volatility_mlp.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    calm = (0.002 * rng.standard_normal((256, 16))).astype(np.float32)
    stressed = (0.025 * rng.standard_normal((256, 16))).astype(np.float32)
    (fee_calm,), (fee_stressed,) = (
        session.run(None, {"returns": x})[0].T for x in (calm, stressed)
    )
    assert np.median(fee_calm) < 15 < 40 < np.median(fee_stressed)


def test_risk_model_rises_with_volatility_and_leverage() -> None:
    session = ort.InferenceSession(
        str(EXAMPLES / "lending" / "risk_mlp.onnx"), providers=["CPUExecutionProvider"]
    )
    base = np.array([[0.5, 0.3, 1.0, 0.5, 0.9, 0.2, 0.3, 0.01]], dtype=np.float32)

    def p(**changes: float) -> float:
        x = base.copy()
        for index, value in changes.items():
            x[0, int(index[1:])] = value
        return float(session.run(None, {"features": x})[0][0, 0])

    assert 0 < p() < 1
    assert p(f0=1.4) > p()  # more volatile collateral
    assert p(f5=0.8) > p()  # more leverage
    assert p(f4=0.0) > p()  # nothing repaid
