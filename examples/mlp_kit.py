"""Shared steps of the example model scripts: a one-hidden-layer ReLU MLP, trained with
scikit-learn in float64 and written as ONNX with the ``onnx`` helper API.

Importing this module first pins BLAS to one thread (float summation order then cannot depend
on the machine's core count), so two runs of a script write byte-identical files.

* ``train_mlp``: fit a scikit-learn MLP (ReLU, Adam) for a fixed epoch budget.
* ``sklearn_weights`` / ``mlp_forward``: the weights as [out, in] and the float64 forward pass.
* ``mlp_to_onnx``: ``Gemm(W1, b1, transB=1) -> Relu -> Gemm(W2, b2, transB=1) [-> Sigmoid]``.
* ``parse_out_dir`` / ``ort_session`` / ``write_files``: the scripts' command line and output.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

OPSET = 17
IR_VERSION = 9  # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 accepts at most 13

Weights = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def train_mlp(
    estimator: type[Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    hidden: int,
    seed: int,
    **options: Any,
) -> Any:
    """Fit ``estimator`` (MLPClassifier or MLPRegressor): one ReLU hidden layer, Adam."""
    model = estimator(
        hidden_layer_sizes=(hidden,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        learning_rate_init=1e-3,
        random_state=seed,
        **options,
    )
    with warnings.catch_warnings():
        # A fixed epoch budget is the point (speed, reproducibility), not full convergence.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return model


def sklearn_weights(model: Any) -> Weights:
    """A fitted scikit-learn MLP's float64 weights, stored [out, in] (W1, b1, W2, b2)."""
    return model.coefs_[0].T, model.intercepts_[0], model.coefs_[1].T, model.intercepts_[1]


def mlp_forward(weights: Weights, x: np.ndarray) -> np.ndarray:
    """The network's output before any final activation, in float64 ([n, out])."""
    w1, b1, w2, b2 = weights
    return np.asarray(np.maximum(x @ w1.T + b1, 0) @ w2.T + b2)


def mlp_to_onnx(
    weights: Weights,
    *,
    graph_name: str,
    input_name: str,
    output_name: str,
    doc_string: str,
    sigmoid_from: str | None = None,
) -> onnx.ModelProto:
    """The MLP as an ONNX graph with a dynamic batch dimension; weights rounded to float32.

    With ``sigmoid_from``, the second Gemm writes that tensor and a Sigmoid gives the output.
    """
    w1, b1, w2, b2 = (np.ascontiguousarray(w, dtype=np.float32) for w in weights)
    initializers = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    fc2_out = sigmoid_from or output_name
    nodes = [
        helper.make_node(
            "Gemm", [input_name, "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1
        ),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node(
            "Gemm", ["relu1", "fc2.weight", "fc2.bias"], [fc2_out], name="fc2", transB=1
        ),
    ]
    if sigmoid_from is not None:
        nodes.append(helper.make_node("Sigmoid", [sigmoid_from], [output_name], name="sigmoid"))
    graph = helper.make_graph(
        nodes,
        graph_name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", w1.shape[1]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", w2.shape[0]])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="verinfer-examples",
        producer_version="1",
        doc_string=doc_string,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def parse_out_dir(doc: str, default: Path, argv: list[str] | None) -> Path:
    """The scripts' one option: ``--out DIR`` (default: the script's own directory)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default, help="output directory")
    out: Path = parser.parse_args(argv).out
    return out


def ort_session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def write_files(
    out: Path, model_file: str, data: bytes, sample_file: str, sample: np.ndarray, what: str
) -> None:
    """Write the ONNX bytes and the (float32) calibration sample to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / model_file
    sample_path = out / sample_file
    model_path.write_bytes(data)
    np.save(sample_path, sample)
    print(f"wrote {model_path} ({len(data)} bytes)")
    print(f"wrote {sample_path} ({what})")
