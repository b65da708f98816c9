"""Train the lending example's risk model: 8 borrower features -> probability of default, as ONNX.

Synthetic, deterministic data (fixed seed). Each borrower has the 8 features `LendingRisk.sol`
computes on-chain (same order, same units; all are plain ratios, mostly in [0, 1]):

    0 collateral_vol   annualized volatility of the collateral asset (owner-set), e.g. 0.8
    1 utilization      pool-wide borrowed / supplied
    2 age_years        time since the borrower's first collateral deposit, in years, cap 4
    3 repayments       number of repayments / 10, cap 2
    4 repaid_ratio     total repaid / total ever borrowed (0 for a new borrower)
    5 leverage         current debt / collateral value
    6 size             collateral value / the market's size unit, cap 1
    7 concentration    the borrower's debt / total supplied

A hidden "true" default model (a logistic function of the features with one interaction,
volatility x leverage) draws the labels; a 8-16-1 MLP with a sigmoid output learns it:

    input  "features" float32 [batch, 8]
    Gemm(W1, b1, transB=1) -> Relu -> Gemm(W2, b2, transB=1) -> Sigmoid
    output "p_default" float32 [batch, 1]   probability of default in (0, 1)

The contract maps p to a collateral factor: 8500 - 5500 * p bps, clamped to [3000, 8500].
Two runs write byte-identical files (float64 training, single-threaded BLAS, fixed seeds).

Usage: python examples/lending/risk_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

SEED = 11
N_TRAIN, N_TEST = 24_000, 6_000
FEATURES = (
    "collateral_vol",
    "utilization",
    "age_years",
    "repayments",
    "repaid_ratio",
    "leverage",
    "size",
    "concentration",
)
# The hidden truth: logit = BIAS + TRUE_WEIGHTS . x + INTERACTION * vol * leverage.
BIAS = -3.0
TRUE_WEIGHTS = np.array([1.5, 1.2, -0.7, -0.8, -1.4, 2.5, -0.6, 3.0])
INTERACTION = 2.0
HIDDEN = 16
OPSET = 17
IR_VERSION = 9  # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 accepts at most 13
N_SAMPLES = 32
MODEL_FILE = "risk_mlp.onnx"
SAMPLE_FILE = "risk_sample.npy"


def borrowers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n synthetic borrowers' features, float64 [n, 8], in the contract's units."""
    vol = rng.uniform(0.2, 1.5, n)
    util = rng.beta(2.0, 2.5, n)
    age = np.minimum(rng.exponential(0.8, n), 4.0)
    new = rng.random(n) < 0.3  # a third have no history at all
    repayments = np.where(new, 0.0, np.minimum(rng.poisson(4.0 * (1 + age)) / 10.0, 2.0))
    repaid = np.where(new | (repayments == 0), 0.0, rng.beta(6.0, 1.5, n))
    leverage = rng.beta(1.5, 3.0, n) * 0.9
    size = rng.beta(1.2, 3.0, n)
    concentration = np.minimum(leverage * size * rng.uniform(0.0, 0.3, n), 1.0)
    return np.stack([vol, util, age, repayments, repaid, leverage, size, concentration], axis=1)


def true_probability(x: np.ndarray) -> np.ndarray:
    logit = BIAS + x @ TRUE_WEIGHTS + INTERACTION * x[:, 0] * x[:, 5]
    return 1.0 / (1.0 + np.exp(-logit))


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = borrowers(rng, N_TRAIN + N_TEST)
    y = (rng.random(len(x)) < true_probability(x)).astype(np.int64)
    return x[:N_TRAIN], x[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:]


def train(x_train: np.ndarray, y_train: np.ndarray) -> MLPClassifier:
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=128,
        learning_rate_init=1e-3,
        max_iter=60,
        tol=1e-6,
        n_iter_no_change=20,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget on purpose
        clf.fit(x_train, y_train)
    return clf


def probability(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """The network's P(default) (float64 [n]), tied to scikit-learn's predict_proba."""
    hidden = np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0)
    p = 1.0 / (1.0 + np.exp(-(hidden @ clf.coefs_[1] + clf.intercepts_[1])[:, 0]))
    if not np.allclose(p, clf.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12):
        raise SystemExit("hand-written forward pass disagrees with scikit-learn's predict_proba")
    return p


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (rank statistic; ties get average ranks)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def to_onnx(clf: MLPClassifier) -> onnx.ModelProto:
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
            "Gemm", ["features", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1
        ),
        helper.make_node("Relu", ["fc1"], ["relu1"], name="relu1"),
        helper.make_node(
            "Gemm", ["relu1", "fc2.weight", "fc2.bias"], ["logit"], name="fc2", transB=1
        ),
        helper.make_node("Sigmoid", ["logit"], ["p_default"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "risk_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        [helper.make_tensor_value_info("p_default", TensorProto.FLOAT, ["batch", 1])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="verinfer-examples",
        producer_version="1",
        doc_string="8-16-1 MLP, sigmoid output: borrower features -> probability of default; "
        "features: " + ", ".join(FEATURES),
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
    p = probability(clf, x_test)
    model_auc, true_auc = auc(p, y_test), auc(true_probability(x_test), y_test)
    print(
        f"test AUC: {model_auc:.4f} (the true model's: {true_auc:.4f}; "
        f"default rate {y_test.mean():.3f}, {clf.n_iter_} epochs)"
    )

    model = to_onnx(clf)
    data = model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (ort_p,) = session.run(["p_default"], {"features": x_test.astype(np.float32)})
    max_err = float(np.abs(ort_p[:, 0] - p).max())
    if max_err > 1e-5:
        raise SystemExit(f"onnxruntime probabilities differ from scikit-learn's by {max_err:.2e}")
    print(f"onnxruntime vs scikit-learn probabilities: max abs diff {max_err:.2e}")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / MODEL_FILE
    sample_path = args.out / SAMPLE_FILE
    model_path.write_bytes(data)
    np.save(sample_path, np.ascontiguousarray(x_test[:N_SAMPLES], dtype=np.float32))
    print(f"wrote {model_path} ({len(data)} bytes)")
    print(f"wrote {sample_path} (float32 [{N_SAMPLES}, {len(FEATURES)}] borrowers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
