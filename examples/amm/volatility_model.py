"""Train the AMM example's volatility model: last 16 log-returns -> swap fee in bps, as ONNX.

Synthetic, deterministic data (fixed seed): one long random walk of log-prices whose per-step
volatility switches between three regimes (calm 0.2 %, normal 0.8 %, stressed 2.5 %) with a
Markov chain that stays in its regime with probability 0.97. The target is the fee an LP would
want for the *next* 16 steps:

    fee_bps = clip(FEE_PER_VOL * realized_vol(next 16 log-returns), 5, 100)

(2500 bps per unit of per-step volatility: calm ~5 bps, normal ~20 bps, stressed ~62 bps).
The MLP only sees the *last* 16 log-returns, so it learns to recognise the regime.

The ONNX graph is written with the ``onnx`` helper API from the trained weights:

    input  "returns" float32 [batch, 16]   log-returns, oldest first (ln(p_t / p_{t-1}))
    Gemm(W1, b1, transB=1) -> Relu -> Gemm(W2, b2, transB=1)
    output "fee_bps" float32 [batch, 1]    predicted swap fee in basis points (not clamped)

Training runs on standardized data (returns / 0.01, fee / 100) in float64; the scaling is
folded into the first and last layers, so the file takes raw log-returns and gives raw bps.
Two runs write byte-identical files (float64 training, single-threaded BLAS, fixed seeds).

Usage: python examples/amm/volatility_model.py [--out DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# mlp_kit first: it pins BLAS to one thread before numpy loads (byte-identical files).
import mlp_kit  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402

SEED = 7
WINDOW = 16  # log-returns in, = the pool's observation window minus one
HORIZON = 16  # the target looks this many steps ahead
REGIME_VOLS = (0.002, 0.008, 0.025)  # per-step volatility of each regime
STAY = 0.97  # probability of staying in the current regime
STEPS = 48_000
FEE_PER_VOL = 2500.0  # bps per unit of per-step volatility
FEE_MIN, FEE_MAX = 5.0, 100.0  # what the contract clamps to
RETURN_UNIT = 0.01  # inputs are divided by this for training (folded into layer 1)
FEE_UNIT = 100.0  # targets are divided by this for training (folded into layer 2)
HIDDEN = 32
N_SAMPLES = 64
MODEL_FILE = "volatility_mlp.onnx"
SAMPLE_FILE = "volatility_sample.npy"


def simulate(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """A regime-switching random walk: (log-returns [steps], regime index [steps])."""
    regimes = np.empty(steps, dtype=np.int64)
    state = 0
    switches = rng.random(steps)
    jumps = rng.integers(1, len(REGIME_VOLS), size=steps)
    for t in range(steps):
        if switches[t] > STAY:  # leave for one of the other regimes, uniformly
            state = (state + int(jumps[t])) % len(REGIME_VOLS)
        regimes[t] = state
    vols = np.asarray(REGIME_VOLS)[regimes]
    return vols * rng.standard_normal(steps), regimes


def windows(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(last WINDOW returns, fee target from the next HORIZON returns) for every time step."""
    n = len(returns) - WINDOW - HORIZON + 1
    idx = np.arange(n)[:, None]
    x = returns[idx + np.arange(WINDOW)]
    future = returns[idx + WINDOW + np.arange(HORIZON)]
    realized = np.sqrt(np.mean(future**2, axis=1))
    y = np.clip(FEE_PER_VOL * realized, FEE_MIN, FEE_MAX)
    return x, y


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train on the first 80 % of the path, test on the rest (no overlap across the cut)."""
    rng = np.random.default_rng(SEED)
    returns, _ = simulate(rng, STEPS)
    cut = int(STEPS * 0.8)
    x_train, y_train = windows(returns[:cut])
    x_test, y_test = windows(returns[cut:])
    return x_train, x_test, y_train, y_test


def train(x_train: np.ndarray, y_train: np.ndarray) -> MLPRegressor:
    """Fit the MLP on standardized data (returns / RETURN_UNIT, fee / FEE_UNIT)."""
    reg: MLPRegressor = mlp_kit.train_mlp(
        MLPRegressor,
        x_train / RETURN_UNIT,
        y_train / FEE_UNIT,
        hidden=HIDDEN,
        seed=SEED,
        batch_size=128,
        max_iter=80,
        tol=1e-6,
        n_iter_no_change=20,
        shuffle=True,
    )
    return reg


def folded_weights(reg: MLPRegressor) -> mlp_kit.Weights:
    """float64 weights [out, in] taking raw returns and giving raw bps."""
    w1, b1, w2, b2 = mlp_kit.sklearn_weights(reg)
    return w1 / RETURN_UNIT, b1, w2 * FEE_UNIT, b2 * FEE_UNIT


def predict(weights: mlp_kit.Weights, x: np.ndarray) -> np.ndarray:
    """The folded network's forward pass in float64 ([n] fees in bps)."""
    return mlp_kit.mlp_forward(weights, x)[:, 0]


def to_onnx(weights: mlp_kit.Weights) -> onnx.ModelProto:
    return mlp_kit.mlp_to_onnx(
        weights,
        graph_name="volatility_mlp",
        input_name="returns",
        output_name="fee_bps",
        doc_string=f"{WINDOW}-{HIDDEN}-1 ReLU MLP: last {WINDOW} log-returns -> swap fee (bps)",
    )


def main(argv: list[str] | None = None) -> int:
    out = mlp_kit.parse_out_dir(__doc__, Path(__file__).resolve().parent, argv)

    x_train, x_test, y_train, y_test = load_data()
    reg = train(x_train, y_train)
    weights = folded_weights(reg)
    pred = predict(weights, x_test)
    mae = float(np.abs(np.clip(pred, FEE_MIN, FEE_MAX) - y_test).mean())
    baseline = float(np.abs(np.median(y_train) - y_test).mean())
    print(
        f"test MAE: {mae:.2f} bps (constant-fee baseline {baseline:.2f} bps, {reg.n_iter_} epochs)"
    )

    model = to_onnx(weights)
    data = model.SerializeToString()
    session = mlp_kit.ort_session(data)
    # A spread of regimes for the sample: every (len/N)-th test window.
    sample = np.ascontiguousarray(x_test[:: len(x_test) // N_SAMPLES][:N_SAMPLES], np.float32)
    (ort_fee,) = session.run(["fee_bps"], {"returns": x_test.astype(np.float32)})
    max_err = float(np.abs(ort_fee[:, 0] - pred).max())
    if max_err > 1e-2:
        raise SystemExit(f"onnxruntime fees differ from the float64 network's by {max_err:.2e}")
    print(f"onnxruntime vs float64 network: max abs diff {max_err:.2e} bps")

    what = f"float32 [{N_SAMPLES}, {WINDOW}] log-return windows"
    mlp_kit.write_files(out, MODEL_FILE, data, SAMPLE_FILE, sample, what)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
