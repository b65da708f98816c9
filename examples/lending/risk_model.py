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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# mlp_kit first: it pins BLAS to one thread before numpy loads (byte-identical files).
import mlp_kit  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
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
    clf: MLPClassifier = mlp_kit.train_mlp(
        MLPClassifier,
        x_train,
        y_train,
        hidden=HIDDEN,
        seed=SEED,
        batch_size=128,
        max_iter=60,
        tol=1e-6,
        n_iter_no_change=20,
    )
    return clf


def probability(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """The network's P(default) (float64 [n]), tied to scikit-learn's predict_proba."""
    logit = mlp_kit.mlp_forward(mlp_kit.sklearn_weights(clf), x)[:, 0]
    p = 1.0 / (1.0 + np.exp(-logit))
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
    return mlp_kit.mlp_to_onnx(
        mlp_kit.sklearn_weights(clf),
        graph_name="risk_mlp",
        input_name="features",
        output_name="p_default",
        sigmoid_from="logit",
        doc_string="8-16-1 MLP, sigmoid output: borrower features -> probability of default; "
        "features: " + ", ".join(FEATURES),
    )


def main(argv: list[str] | None = None) -> int:
    out = mlp_kit.parse_out_dir(__doc__, Path(__file__).resolve().parent, argv)

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
    session = mlp_kit.ort_session(data)
    (ort_p,) = session.run(["p_default"], {"features": x_test.astype(np.float32)})
    max_err = float(np.abs(ort_p[:, 0] - p).max())
    if max_err > 1e-5:
        raise SystemExit(f"onnxruntime probabilities differ from scikit-learn's by {max_err:.2e}")
    print(f"onnxruntime vs scikit-learn probabilities: max abs diff {max_err:.2e}")

    sample = np.ascontiguousarray(x_test[:N_SAMPLES], dtype=np.float32)
    what = f"float32 [{N_SAMPLES}, {len(FEATURES)}] borrowers"
    mlp_kit.write_files(out, MODEL_FILE, data, SAMPLE_FILE, sample, what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
