"""Train the example model: a 64 -> 32 -> 10 ReLU MLP on scikit-learn's digits, exported to ONNX.

The digits data set ships with scikit-learn, so this runs offline in a few seconds. The ONNX
graph is written with the ``onnx`` helper API straight from the trained weights (no torch):

    input "input"  float32 [batch, 64]   pixels / 16, in [0, 1]
    Gemm(W1, b1, transB=1) -> Relu -> Gemm(W2, b2, transB=1)
    output "logits" float32 [batch, 10]  scores before softmax

Weights are stored [out, in] with ``transB=1`` (the layout torch.onnx gives ``nn.Linear``), so the
K weights of one output element are contiguous. Fixed seeds make it reproducible: two runs write
byte-identical files. Training runs in float64 and only the result is rounded to float32: the
last-bit differences between BLAS kernels (CPU types) then vanish in the rounding, so the files
are also identical across the OpenBLAS kernels we tried (SkylakeX, Haswell, Sandybridge, Prescott),
which float32 training is not.

Usage: python examples/models/train_digits.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

# Single-threaded BLAS: float summation order then cannot depend on the machine's core count.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

SEED = 0
HIDDEN = 32
OPSET = 17
IR_VERSION = 9  # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 accepts at most 13
N_SAMPLES = 8
MODEL_FILE = "digits_mlp.onnx"
SAMPLE_FILE = "digits_sample.npy"


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits images as float64 in [0, 1], split 80/20 (stratified, fixed seed)."""
    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(x_train: np.ndarray, y_train: np.ndarray) -> MLPClassifier:
    """Fit the MLP (in float64, the dtype of the inputs)."""
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=200,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        # A fixed epoch budget is the point (speed, reproducibility), not full convergence.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return clf


def sklearn_logits(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """The network's scores before softmax (float64), from scikit-learn's own weights."""
    hidden = np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0)
    logits = hidden @ clf.coefs_[1] + clf.intercepts_[1]
    # Tie the hand-written forward pass to scikit-learn's: softmax(logits) == predict_proba.
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba = exp / exp.sum(axis=1, keepdims=True)
    if not np.allclose(proba, clf.predict_proba(x), rtol=1e-9, atol=1e-12):
        raise SystemExit("hand-written forward pass disagrees with scikit-learn's predict_proba")
    return np.asarray(logits)


def to_onnx(clf: MLPClassifier) -> onnx.ModelProto:
    """Build the ONNX graph from the trained weights with the onnx helper API."""
    w1, w2 = (np.ascontiguousarray(w.T, dtype=np.float32) for w in clf.coefs_)
    b1, b2 = (np.asarray(b, dtype=np.float32) for b in clf.intercepts_)
    initializers = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    nodes = [
        helper.make_node(
            "Gemm", ["input", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1
        ),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node(
            "Gemm", ["relu1", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", w1.shape[1]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", w2.shape[0]])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="verinfer-examples",
        producer_version="1",
        doc_string="64-32-10 ReLU MLP on scikit-learn digits; input = pixels / 16; output logits",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output directory"
    )
    args = parser.parse_args(argv)

    x_train, x_test, y_train, y_test = load_data()
    clf = train(x_train, y_train)
    accuracy = float((clf.predict(x_test) == y_test).mean())
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} images, {clf.n_iter_} epochs)")

    model = to_onnx(clf)
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x_test32 = x_test.astype(np.float32)
    (ort_logits,) = session.run(["logits"], {"input": x_test32})
    expected = sklearn_logits(clf, x_test)
    max_err = float(np.abs(ort_logits - expected).max())
    # float32 weights and arithmetic against float64: agreement to ~1e-5 is all one can ask.
    if not np.allclose(ort_logits, expected, rtol=1e-5, atol=1e-5):
        raise SystemExit(f"onnxruntime logits differ from scikit-learn's by {max_err:.2e}")
    print(f"onnxruntime vs scikit-learn logits: max abs diff {max_err:.2e}")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / MODEL_FILE
    sample_path = args.out / SAMPLE_FILE
    model_path.write_bytes(data)
    np.save(sample_path, np.ascontiguousarray(x_test32[:N_SAMPLES]))
    print(f"wrote {model_path} ({len(data)} bytes)")
    print(f"wrote {sample_path} ({N_SAMPLES} test images, float32 [{N_SAMPLES}, 64])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
