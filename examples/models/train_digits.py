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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# mlp_kit first: it pins BLAS to one thread before numpy loads, so float summation order cannot
# depend on the machine's core count.
import mlp_kit  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

SEED = 0
HIDDEN = 32
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
    clf: MLPClassifier = mlp_kit.train_mlp(
        MLPClassifier, x_train, y_train, hidden=HIDDEN, seed=SEED, batch_size=64, max_iter=200
    )
    return clf


def sklearn_logits(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """The network's scores before softmax (float64), from scikit-learn's own weights."""
    logits = mlp_kit.mlp_forward(mlp_kit.sklearn_weights(clf), x)
    # Tie the hand-written forward pass to scikit-learn's: softmax(logits) == predict_proba.
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba = exp / exp.sum(axis=1, keepdims=True)
    if not np.allclose(proba, clf.predict_proba(x), rtol=1e-9, atol=1e-12):
        raise SystemExit("hand-written forward pass disagrees with scikit-learn's predict_proba")
    return logits


def to_onnx(clf: MLPClassifier) -> onnx.ModelProto:
    """Build the ONNX graph from the trained weights with the onnx helper API."""
    return mlp_kit.mlp_to_onnx(
        mlp_kit.sklearn_weights(clf),
        graph_name="digits_mlp",
        input_name="input",
        output_name="logits",
        doc_string="64-32-10 ReLU MLP on scikit-learn digits; input = pixels / 16; output logits",
    )


def main(argv: list[str] | None = None) -> int:
    out = mlp_kit.parse_out_dir(__doc__, Path(__file__).resolve().parent, argv)

    x_train, x_test, y_train, y_test = load_data()
    clf = train(x_train, y_train)
    accuracy = float((clf.predict(x_test) == y_test).mean())
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} images, {clf.n_iter_} epochs)")

    model = to_onnx(clf)
    data = model.SerializeToString()
    session = mlp_kit.ort_session(data)
    x_test32 = x_test.astype(np.float32)
    (ort_logits,) = session.run(["logits"], {"input": x_test32})
    expected = sklearn_logits(clf, x_test)
    max_err = float(np.abs(ort_logits - expected).max())
    # float32 weights and arithmetic against float64: agreement to ~1e-5 is all one can ask.
    if not np.allclose(ort_logits, expected, rtol=1e-5, atol=1e-5):
        raise SystemExit(f"onnxruntime logits differ from scikit-learn's by {max_err:.2e}")
    print(f"onnxruntime vs scikit-learn logits: max abs diff {max_err:.2e}")

    sample = np.ascontiguousarray(x_test32[:N_SAMPLES])
    what = f"{N_SAMPLES} test images, float32 [{N_SAMPLES}, 64]"
    mlp_kit.write_files(out, MODEL_FILE, data, SAMPLE_FILE, sample, what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
