"""The runtime's test models and how each is compiled, shared by tests, golden vectors and
benchmarks so that all three measure the very same programs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verinfer.runtime.compiler import compile_model
from verinfer.runtime.program import Program

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "models"


@dataclass(frozen=True)
class TestModel:
    name: str
    onnx: Path
    sample: Path
    tolerance: float  # max abs error vs onnxruntime, in output units (see docs/runtime-spec.md)

    def inputs(self) -> np.ndarray[Any, Any]:
        return np.load(self.sample)

    def feed(self) -> Mapping[str, Any]:
        import onnx

        model = onnx.load(self.onnx, load_external_data=False)
        init = {i.name for i in model.graph.initializer}
        (name,) = [i.name for i in model.graph.input if i.name not in init]
        return {name: self.inputs()}

    def compile(self, batch: int | None = None) -> Program:
        x = self.inputs()
        return compile_model(self.onnx, x, batch=batch or x.shape[0])


TEST_MODELS = {
    m.name: m
    for m in (
        TestModel("digits_mlp", EXAMPLES / "digits_mlp.onnx", EXAMPLES / "digits_sample.npy", 2e-3),
        TestModel(
            "digits_cnn", EXAMPLES / "digits_cnn.onnx", EXAMPLES / "digits_cnn_sample.npy", 2e-3
        ),
        TestModel(
            "sigmoid_mlp", EXAMPLES / "sigmoid_mlp.onnx", EXAMPLES / "sigmoid_mlp_sample.npy", 2e-4
        ),
        TestModel(
            "transformer_block",
            EXAMPLES / "transformer_block.onnx",
            EXAMPLES / "transformer_block_sample.npy",
            5e-4,
        ),
        TestModel(
            "shape_ops", EXAMPLES / "shape_ops.onnx", EXAMPLES / "shape_ops_sample.npy", 5e-4
        ),
    )
}
