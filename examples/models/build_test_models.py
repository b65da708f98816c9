"""Build the runtime's test models: four small ONNX graphs written with the ``onnx`` helper API.

The deterministic fixed-point runtime must agree with onnxruntime on these models; each one
exercises a different set of operators (see ``TEST_MODELS.md``):

    digits_cnn.onnx         Conv, BatchNormalization, MaxPool, AveragePool, depthwise Conv,
                            GlobalAveragePool, Flatten, Gemm        (trained on digits)
    sigmoid_mlp.onnx        Sub, Div, MatMul + Add, Gemm, Sigmoid, Tanh, LeakyRelu, Clip, Mul,
                            Softmax                                 (trained on digits)
    transformer_block.onnx  a pre-LN encoder block: Gather, Concat, LayerNormalization, the
                            decomposed LayerNorm, attention, Erf GELU, Slice (random weights)
    shape_ops.onnx          Transpose, Reshape, Slice with steps, Gather, Concat, Identity,
                            Cast, Exp, Where, Unsqueeze, Squeeze, Flatten, ArgMax

Each model comes with ``<name>_sample.npy``, a few real inputs (batch 4 or 8), and is checked
here: ``onnx.checker`` (full check), then onnxruntime against a float64 numpy forward pass of
the exported (float32) weights.

Reproducible: fixed seeds, training in float64 (plain numpy, hand-written backprop and Adam),
and the parameters are rounded to float32 values after every epoch, so the last-bit
differences of BLAS kernels or thread counts stay far below float32 resolution and cannot
compound over training; two runs write byte-identical files.

Usage: python examples/models/build_test_models.py [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Single-threaded BLAS unless the caller says otherwise (the files do not depend on it).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

OPSET = 17
IR_VERSION = 9  # onnx 1.23 writes IR 14 by default; onnxruntime 1.31 accepts at most 13
PRODUCER = "verinfer-examples"
# onnxruntime (float32 arithmetic) against the float64 reference forward pass: np.allclose
RTOL = ATOL = 1e-5

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Built:
    """What one builder made: the model, its sample input, and how it was checked."""

    name: str
    model: onnx.ModelProto
    sample: np.ndarray
    params: int
    accuracy: float | None
    max_abs_diff: float


# ---------------------------------------------------------------------------------------------
# shared helpers


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits images as float64 [n, 64] in [0, 1], split 80/20 (stratified, fixed seed)."""
    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def to_f32(params: Params) -> Params:
    """Round every parameter to the nearest float32 value (kept as float64 for arithmetic)."""
    return {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}


class Adam:
    """Adam (with optional decoupled weight decay) over a dict of float64 arrays."""

    def __init__(self, params: Params, lr: float, weight_decay: float = 0.0) -> None:
        self.lr, self.wd = lr, weight_decay
        self.b1, self.b2, self.eps, self.t = 0.9, 0.999, 1e-8, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: Params, grads: Params) -> None:
        self.t += 1
        c1, c2 = 1.0 - self.b1**self.t, 1.0 - self.b2**self.t
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1.0 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1.0 - self.b2) * g * g
            update = (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)
            params[k] -= self.lr * (update + self.wd * params[k])  # decoupled decay (AdamW)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def xent_grad(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d(logits)."""
    g = softmax(logits)
    g[np.arange(len(y)), y] -= 1.0
    return np.asarray(g / len(y))


def train_loop(
    params: Params,
    grad_fn: Callable[[Params, np.ndarray, np.ndarray], Params],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch: int,
    lr: float,
    rng: np.random.Generator,
    weight_decay: float = 0.0,
) -> Params:
    """Minibatch Adam with a cosine learning-rate decay; parameters snap to float32 per epoch."""
    opt = Adam(params, lr, weight_decay)
    for epoch in range(epochs):
        opt.lr = lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            opt.step(params, grad_fn(params, x[idx], y[idx]))
        params = to_f32(params)
    return params


def initializers(params: Params) -> list[onnx.TensorProto]:
    """float32 initializers, in the dict's order."""
    return [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]


def const(name: str, value: object, dtype: type = np.float32) -> onnx.TensorProto:
    """A constant initializer (scalar or array) of the given numpy dtype."""
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def make_model(
    name: str,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto],
    doc: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def node(op: str, inputs: list[str], output: str, **attrs: object) -> onnx.NodeProto:
    """One node named after its (single) output."""
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def float_param_count(model: onnx.ModelProto) -> int:
    """Number of float elements held in initializers (weights, biases, statistics, constants)."""
    return sum(
        int(np.prod(t.dims, dtype=np.int64))
        for t in model.graph.initializer
        if t.data_type == TensorProto.FLOAT
    )


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, feeds)]


def compare(name: str, got: np.ndarray, want: np.ndarray) -> float:
    """Max abs diff between onnxruntime's output and the reference; fail if not allclose."""
    if got.shape != want.shape:
        raise SystemExit(f"{name}: onnxruntime shape {got.shape} != reference {want.shape}")
    diff = float(np.abs(got.astype(np.float64) - want).max())
    if not np.isfinite(got).all() or not np.allclose(got, want, rtol=RTOL, atol=ATOL):
        raise SystemExit(f"{name}: onnxruntime differs from the numpy reference by {diff:.2e}")
    return diff


# ---------------------------------------------------------------------------------------------
# 1. digits_cnn: Conv -> BatchNorm -> Relu -> MaxPool -> Conv -> Relu -> AveragePool
#                -> depthwise Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm

CNN_SEED = 1
BN_EPS = 1e-5


def _shifts(x: np.ndarray) -> np.ndarray:
    """The 9 shifted views of a 3x3, pad-1, stride-1 window: [N, C, 9, H, W]."""
    _, _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return np.stack([xp[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=2)


def _unshift(d: np.ndarray) -> np.ndarray:
    """Adjoint of ``_shifts``: add the 9 window gradients back into the input's positions."""
    n, c, _, h, w = d.shape
    dxp = np.zeros((n, c, h + 2, w + 2))
    for k in range(9):
        i, j = divmod(k, 3)
        dxp[:, :, i : i + h, j : j + w] += d[:, :, k]
    return dxp[:, :, 1:-1, 1:-1]


def _conv_fwd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, tuple]:
    n, c, h, wd = x.shape
    o = w.shape[0]
    cols = _shifts(x).transpose(0, 3, 4, 1, 2).reshape(n * h * wd, c * 9)
    out = cols @ w.reshape(o, c * 9).T
    if b is not None:
        out = out + b
    return out.reshape(n, h, wd, o).transpose(0, 3, 1, 2), (cols, x.shape)


def _conv_bwd(dout: np.ndarray, w: np.ndarray, cache: tuple) -> tuple[np.ndarray, ...]:
    cols, (n, c, h, wd) = cache
    o = w.shape[0]
    d = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (d.T @ cols).reshape(w.shape)
    dcols = (d @ w.reshape(o, c * 9)).reshape(n, h, wd, c, 9).transpose(0, 3, 4, 1, 2)
    return _unshift(dcols), dw, d.sum(axis=0)


def _dwconv_fwd(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = _shifts(x)
    out = np.einsum("nckhw,ck->nchw", s, w.reshape(len(w), 9)) + b[:, None, None]
    return out, s


def _dwconv_bwd(dout: np.ndarray, w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    wk = w.reshape(len(w), 9)
    dw = np.einsum("nchw,nckhw->ck", dout, s).reshape(w.shape)
    dx = _unshift(dout[:, :, None] * wk[None, :, :, None, None])
    return dx, dw, dout.sum(axis=(0, 2, 3))


def _windows(x: np.ndarray) -> np.ndarray:
    """Non-overlapping 2x2 windows: [N, C, H/2, W/2, 4]."""
    n, c, h, w = x.shape
    return (
        x.reshape(n, c, h // 2, 2, w // 2, 2)
        .transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, c, h // 2, w // 2, 4)
    )


def _unwindows(d: np.ndarray) -> np.ndarray:
    n, c, h2, w2, _ = d.shape
    return d.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h2 * 2, w2 * 2)


def cnn_forward(p: Params, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, dict]:
    """The CNN in float64; ``train`` normalises with batch statistics, else with p's bn.mean/var.

    ``x`` is [N, 1, 8, 8]. Returns the logits and the intermediate values backprop needs.
    """
    c: dict = {}
    a1, c["conv1"] = _conv_fwd(x, p["conv1.weight"], None)
    if train:
        mean, var = a1.mean(axis=(0, 2, 3)), a1.var(axis=(0, 2, 3))
    else:
        mean, var = p["bn.mean"], p["bn.var"]
    inv = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (a1 - mean[:, None, None]) * inv[:, None, None]
    bn = p["bn.scale"][:, None, None] * xhat + p["bn.bias"][:, None, None]
    r1 = np.maximum(bn, 0.0)
    win = _windows(r1)
    arg = win.argmax(axis=-1)
    m1 = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    a2, c["conv2"] = _conv_fwd(m1, p["conv2.weight"], p["conv2.bias"])
    r2 = np.maximum(a2, 0.0)
    ap = _windows(r2).mean(axis=-1)
    a3, c["dw"] = _dwconv_fwd(ap, p["dw.weight"], p["dw.bias"])
    r3 = np.maximum(a3, 0.0)
    gap = r3.mean(axis=(2, 3))
    logits = gap @ p["fc.weight"].T + p["fc.bias"]
    c.update(xhat=xhat, inv=inv, bn=bn, arg=arg, win_shape=win.shape, a2=a2, a3=a3, r3=r3)
    c.update(gap=gap)
    return logits, c


def cnn_grads(p: Params, x: np.ndarray, y: np.ndarray) -> Params:
    logits, c = cnn_forward(p, x, train=True)
    g: Params = {}
    d = xent_grad(logits, y)
    g["fc.weight"], g["fc.bias"] = d.T @ c["gap"], d.sum(axis=0)
    dgap = d @ p["fc.weight"]
    h3, w3 = c["r3"].shape[2:]
    dr3 = np.broadcast_to(dgap[:, :, None, None] / (h3 * w3), c["r3"].shape)
    da3 = dr3 * (c["a3"] > 0)
    dap, g["dw.weight"], g["dw.bias"] = _dwconv_bwd(da3, p["dw.weight"], c["dw"])
    dr2 = _unwindows(np.repeat(dap[..., None] / 4.0, 4, axis=-1))
    da2 = dr2 * (c["a2"] > 0)
    dm1, g["conv2.weight"], g["conv2.bias"] = _conv_bwd(da2, p["conv2.weight"], c["conv2"])
    dwin = np.zeros(c["win_shape"])
    np.put_along_axis(dwin, c["arg"][..., None], dm1[..., None], axis=-1)
    dbn = _unwindows(dwin) * (c["bn"] > 0)
    xhat, inv = c["xhat"], c["inv"]
    g["bn.scale"], g["bn.bias"] = (dbn * xhat).sum(axis=(0, 2, 3)), dbn.sum(axis=(0, 2, 3))
    dxhat = dbn * p["bn.scale"][:, None, None]
    mean_d = dxhat.mean(axis=(0, 2, 3), keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True)
    da1 = (dxhat - mean_d - xhat * mean_dx) * inv[:, None, None]
    _, g["conv1.weight"], _ = _conv_bwd(da1, p["conv1.weight"], c["conv1"])
    return g


def build_digits_cnn() -> Built:
    x_train, x_test, y_train, y_test = load_data()
    x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(CNN_SEED)
    p: Params = {
        "conv1.weight": rng.normal(0.0, math.sqrt(2.0 / 9), (8, 1, 3, 3)),
        "bn.scale": np.ones(8),
        "bn.bias": np.zeros(8),
        "conv2.weight": rng.normal(0.0, math.sqrt(2.0 / 72), (16, 8, 3, 3)),
        "conv2.bias": np.zeros(16),
        "dw.weight": rng.normal(0.0, math.sqrt(2.0 / 9), (16, 1, 3, 3)),
        "dw.bias": np.full(16, 0.1),
        "fc.weight": rng.normal(0.0, math.sqrt(1.0 / 16), (10, 16)),
        "fc.bias": np.zeros(10),
    }
    p = train_loop(
        to_f32(p),
        cnn_grads,
        x_train,
        y_train,
        epochs=40,
        batch=32,
        lr=0.01,
        rng=rng,
        weight_decay=0.2,
    )
    # Inference statistics: the conv1 outputs' mean and (biased) variance over the whole
    # training set, with the final weights.
    a1, _ = _conv_fwd(x_train, p["conv1.weight"], None)
    p["bn.mean"], p["bn.var"] = a1.mean(axis=(0, 2, 3)), a1.var(axis=(0, 2, 3))
    p = to_f32(p)

    order = ["conv1.weight", "bn.scale", "bn.bias", "bn.mean", "bn.var"]
    order += ["conv2.weight", "conv2.bias", "dw.weight", "dw.bias", "fc.weight", "fc.bias"]
    inits = initializers({k: p[k] for k in order})
    conv3 = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
    pool2 = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]}
    nodes = [
        node("Conv", ["input", "conv1.weight"], "conv1", group=1, **conv3),
        node(
            "BatchNormalization",
            ["conv1", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
            "bn1",
            epsilon=BN_EPS,
            momentum=0.9,
        ),
        node("Relu", ["bn1"], "relu1"),
        node("MaxPool", ["relu1"], "pool1", dilations=[1, 1], ceil_mode=0, **pool2),
        node("Conv", ["pool1", "conv2.weight", "conv2.bias"], "conv2", group=1, **conv3),
        node("Relu", ["conv2"], "relu2"),
        node("AveragePool", ["relu2"], "pool2", ceil_mode=0, count_include_pad=0, **pool2),
        node("Conv", ["pool2", "dw.weight", "dw.bias"], "dwconv", group=16, **conv3),
        node("Relu", ["dwconv"], "relu3"),
        node("GlobalAveragePool", ["relu3"], "gap"),
        node("Flatten", ["gap"], "flat", axis=1),
        node("Gemm", ["flat", "fc.weight", "fc.bias"], "logits", transB=1),
    ]
    model = make_model(
        "digits_cnn",
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
        "Small CNN on scikit-learn digits (input = pixels / 16, [batch, 1, 8, 8]); "
        "output logits [batch, 10]",
    )

    x32 = x_test.astype(np.float32)
    want, _ = cnn_forward(p, x32.astype(np.float64))
    accuracy = float((want.argmax(axis=1) == y_test).mean())
    (got,) = run_ort(model, {"input": x32})
    diff = compare("digits_cnn", got, want)
    return Built("digits_cnn", model, x32[:8].copy(), float_param_count(model), accuracy, diff)


# ---------------------------------------------------------------------------------------------
# 2. sigmoid_mlp: (x - mean) / std -> MatMul + Add -> Sigmoid -> Gemm -> Tanh -> Gemm
#                 -> LeakyRelu -> Clip -> Gemm -> Mul -> Softmax

MLP_SEED = 2
LEAKY_ALPHA = 0.1
CLIP_LO, CLIP_HI = -4.0, 4.0
LOGIT_SCALE = 0.5  # a fixed temperature, applied in training too
STD_FLOOR = 0.1  # pixels that never vary (corners) would otherwise divide by ~0


def mlp_forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """The MLP in float64 on raw pixels / 16 [N, 64]; returns logits (pre-softmax) and caches."""
    z0 = (x - p["norm.mean"]) / p["norm.std"]
    h1 = 1.0 / (1.0 + np.exp(-(z0 @ p["fc1.weight"] + p["fc1.bias"])))
    h2 = np.tanh(h1 @ p["fc2.weight"].T + p["fc2.bias"])
    a3 = h2 @ p["fc3.weight"].T + p["fc3.bias"]
    l3 = np.where(a3 >= 0, a3, LEAKY_ALPHA * a3)
    c3 = np.clip(l3, CLIP_LO, CLIP_HI)
    logits = (c3 @ p["fc4.weight"].T + p["fc4.bias"]) * LOGIT_SCALE
    return logits, {"z0": z0, "h1": h1, "h2": h2, "a3": a3, "l3": l3, "c3": c3}


def mlp_grads(p: Params, x: np.ndarray, y: np.ndarray) -> Params:
    logits, c = mlp_forward(p, x)
    g: Params = {}
    d4 = xent_grad(logits, y) * LOGIT_SCALE
    g["fc4.weight"], g["fc4.bias"] = d4.T @ c["c3"], d4.sum(axis=0)
    dc3 = d4 @ p["fc4.weight"]
    dl3 = dc3 * ((c["l3"] > CLIP_LO) & (c["l3"] < CLIP_HI))
    da3 = dl3 * np.where(c["a3"] >= 0, 1.0, LEAKY_ALPHA)
    g["fc3.weight"], g["fc3.bias"] = da3.T @ c["h2"], da3.sum(axis=0)
    dh2 = da3 @ p["fc3.weight"]
    da2 = dh2 * (1.0 - c["h2"] ** 2)
    g["fc2.weight"], g["fc2.bias"] = da2.T @ c["h1"], da2.sum(axis=0)
    dh1 = da2 @ p["fc2.weight"]
    da1 = dh1 * c["h1"] * (1.0 - c["h1"])
    g["fc1.weight"], g["fc1.bias"] = c["z0"].T @ da1, da1.sum(axis=0)
    return g


def build_sigmoid_mlp() -> Built:
    x_train, x_test, y_train, y_test = load_data()
    rng = np.random.default_rng(MLP_SEED)

    def glorot(n_in: int, n_out: int, shape: tuple[int, int]) -> np.ndarray:
        return rng.normal(0.0, math.sqrt(2.0 / (n_in + n_out)), shape)

    p: Params = {
        # Normalisation constants: fixed, from the training set (not trained).
        "norm.mean": x_train.mean(axis=0),
        "norm.std": np.maximum(x_train.std(axis=0), STD_FLOOR),
        "fc1.weight": glorot(64, 32, (64, 32)),  # [in, out]: used by MatMul
        "fc1.bias": np.zeros(32),
        "fc2.weight": glorot(32, 32, (32, 32)),  # [out, in]: Gemm transB=1
        "fc2.bias": np.zeros(32),
        "fc3.weight": glorot(32, 16, (16, 32)),
        "fc3.bias": np.zeros(16),
        "fc4.weight": glorot(16, 10, (10, 16)),
        "fc4.bias": np.zeros(10),
    }
    p = train_loop(
        to_f32(p),
        mlp_grads,
        x_train,
        y_train,
        epochs=40,
        batch=32,
        lr=0.01,
        rng=rng,
        weight_decay=0.2,
    )

    inits = initializers(p)
    inits += [
        const("clip.min", CLIP_LO),
        const("clip.max", CLIP_HI),
        const("logit_scale", LOGIT_SCALE),
    ]
    nodes = [
        node("Sub", ["input", "norm.mean"], "centered"),
        node("Div", ["centered", "norm.std"], "normalized"),
        node("MatMul", ["normalized", "fc1.weight"], "fc1.matmul"),
        node("Add", ["fc1.matmul", "fc1.bias"], "fc1"),
        node("Sigmoid", ["fc1"], "act1"),
        node("Gemm", ["act1", "fc2.weight", "fc2.bias"], "fc2", transB=1),
        node("Tanh", ["fc2"], "act2"),
        node("Gemm", ["act2", "fc3.weight", "fc3.bias"], "fc3", transB=1),
        node("LeakyRelu", ["fc3"], "act3", alpha=LEAKY_ALPHA),
        node("Clip", ["act3", "clip.min", "clip.max"], "clipped"),
        node("Gemm", ["clipped", "fc4.weight", "fc4.bias"], "fc4", transB=1),
        node("Mul", ["fc4", "logit_scale"], "logits"),
        node("Softmax", ["logits"], "probs", axis=-1),
    ]
    model = make_model(
        "sigmoid_mlp",
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        inits,
        "64-32-32-16-10 MLP (Sigmoid, Tanh, LeakyRelu, Clip) on scikit-learn digits; "
        "input = pixels / 16, normalised in the graph; output class probabilities",
    )

    x32 = x_test.astype(np.float32)
    logits, _ = mlp_forward(p, x32.astype(np.float64))
    want = softmax(logits)
    accuracy = float((want.argmax(axis=1) == y_test).mean())
    (got,) = run_ort(model, {"input": x32})
    diff = compare("sigmoid_mlp", got, want)
    return Built("sigmoid_mlp", model, x32[:8].copy(), float_param_count(model), accuracy, diff)


# ---------------------------------------------------------------------------------------------
# 3. transformer_block: one pre-LN encoder block (random weights), with a summary token
#    prepended to the sequence (Concat) and sliced away again at the end (Slice).

TF_SEED = 3
SEQ, D, HEADS, FF, POS_TABLE = 16, 64, 4, 256, 32
HEAD = D // HEADS
LN_EPS = 1e-5


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return np.asarray((x - mu) / np.sqrt(var + LN_EPS) * gamma + beta)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.vectorize(math.erf, otypes=[np.float64])(x))


def transformer_forward(p: Params, x: np.ndarray) -> np.ndarray:
    """The block in float64: x [N, SEQ, D] -> y [N, SEQ, D]."""
    n = len(x)
    h0 = x + p["pos.table"][np.arange(SEQ)]
    tok = h0.mean(axis=1) + p["summary.bias"]
    h = np.concatenate([tok[:, None, :], h0], axis=1)  # [N, SEQ + 1, D]
    t = SEQ + 1
    ln1 = _layer_norm(h, p["ln1.weight"], p["ln1.bias"])

    def heads(name: str) -> np.ndarray:
        z = ln1 @ p[f"attn.{name}.weight"] + p[f"attn.{name}.bias"]
        return z.reshape(n, t, HEADS, HEAD).transpose(0, 2, 1, 3)

    q, k, v = heads("q"), heads("k"), heads("v")
    att = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(HEAD))
    ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, D)
    r1 = h + ctx @ p["attn.out.weight"] + p["attn.out.bias"]
    ln2 = _layer_norm(r1, p["ln2.weight"], p["ln2.bias"])
    f1 = ln2 @ p["ffn.fc1.weight"] + p["ffn.fc1.bias"]
    gelu = f1 * 0.5 * (1.0 + _erf(f1 / math.sqrt(2.0)))
    r2 = r1 + gelu @ p["ffn.fc2.weight"] + p["ffn.fc2.bias"]
    return r2[:, 1:]


def build_transformer_block() -> Built:
    rng = np.random.default_rng(TF_SEED)
    p: Params = {
        "pos.table": rng.normal(0.0, 0.1, (POS_TABLE, D)),
        "summary.bias": rng.normal(0.0, 0.1, D),
        "ln1.weight": 1.0 + rng.normal(0.0, 0.1, D),
        "ln1.bias": rng.normal(0.0, 0.05, D),
        "ln2.weight": 1.0 + rng.normal(0.0, 0.1, D),
        "ln2.bias": rng.normal(0.0, 0.05, D),
    }
    for name, std in (("q", 0.1), ("k", 0.1), ("v", 0.08), ("out", 0.08)):
        p[f"attn.{name}.weight"] = rng.normal(0.0, std, (D, D))  # [in, out] for MatMul
        p[f"attn.{name}.bias"] = rng.normal(0.0, 0.02, D)
    p["ffn.fc1.weight"] = rng.normal(0.0, 0.06, (D, FF))
    p["ffn.fc1.bias"] = rng.normal(0.0, 0.02, FF)
    p["ffn.fc2.weight"] = rng.normal(0.0, 0.03, (FF, D))
    p["ffn.fc2.bias"] = rng.normal(0.0, 0.02, D)
    p = to_f32(p)
    x = rng.normal(0.0, 1.0, (32, SEQ, D)).astype(np.float32)

    t = SEQ + 1
    inits = initializers(p)
    inits += [
        const("pos.indices", np.arange(SEQ), np.int64),
        const("axes.seq", [1], np.int64),
        const("heads.shape", [0, t, HEADS, HEAD], np.int64),
        const("merged.shape", [0, t, D], np.int64),
        const("attn.scale", math.sqrt(HEAD)),
        const("ln2.eps", LN_EPS),
        const("two", 2.0),
        const("slice.starts", [1], np.int64),
        const("slice.ends", [t], np.int64),
    ]
    nodes = [
        # learned position embeddings, gathered with constant indices 0..SEQ-1
        node("Gather", ["pos.table", "pos.indices"], "pos", axis=0),
        node("Add", ["x", "pos"], "h0"),
        # a summary token (sequence mean + learned offset), prepended to the sequence
        node("ReduceMean", ["h0"], "summary.mean", axes=[1], keepdims=1),
        node("Squeeze", ["summary.mean", "axes.seq"], "summary.squeezed"),
        node("Add", ["summary.squeezed", "summary.bias"], "summary.token"),
        node("Unsqueeze", ["summary.token", "axes.seq"], "summary"),
        node("Concat", ["summary", "h0"], "h", axis=1),
        # pre-LN multi-head self-attention
        node("LayerNormalization", ["h", "ln1.weight", "ln1.bias"], "ln1", axis=-1, epsilon=LN_EPS),
    ]
    for name in ("q", "k", "v"):
        perm = [0, 2, 3, 1] if name == "k" else [0, 2, 1, 3]
        nodes += [
            node("MatMul", ["ln1", f"attn.{name}.weight"], f"{name}.matmul"),
            node("Add", [f"{name}.matmul", f"attn.{name}.bias"], name),
            node("Reshape", [name, "heads.shape"], f"{name}.heads"),
            node("Transpose", [f"{name}.heads"], f"{name}.t", perm=perm),
        ]
    nodes += [
        node("MatMul", ["q.t", "k.t"], "scores.raw"),
        node("Div", ["scores.raw", "attn.scale"], "scores"),
        node("Softmax", ["scores"], "attn", axis=-1),
        node("MatMul", ["attn", "v.t"], "ctx.heads"),
        node("Transpose", ["ctx.heads"], "ctx.t", perm=[0, 2, 1, 3]),
        node("Reshape", ["ctx.t", "merged.shape"], "ctx"),
        node("MatMul", ["ctx", "attn.out.weight"], "attn.out.matmul"),
        node("Add", ["attn.out.matmul", "attn.out.bias"], "attn.out"),
        node("Add", ["h", "attn.out"], "r1"),
        # second LayerNorm, decomposed the way old torch.onnx exports write it
        node("ReduceMean", ["r1"], "ln2.mean", axes=[-1], keepdims=1),
        node("Sub", ["r1", "ln2.mean"], "ln2.centered"),
        node("Pow", ["ln2.centered", "two"], "ln2.sq"),
        node("ReduceMean", ["ln2.sq"], "ln2.var", axes=[-1], keepdims=1),
        node("Add", ["ln2.var", "ln2.eps"], "ln2.var_eps"),
        node("Sqrt", ["ln2.var_eps"], "ln2.std"),
        node("Div", ["ln2.centered", "ln2.std"], "ln2.normed"),
        node("Mul", ["ln2.normed", "ln2.weight"], "ln2.scaled"),
        node("Add", ["ln2.scaled", "ln2.bias"], "ln2"),
        # FFN with the exact (Erf) GELU; its scalars are Constant nodes, as torch exports them
        node("MatMul", ["ln2", "ffn.fc1.weight"], "ffn.fc1.matmul"),
        node("Add", ["ffn.fc1.matmul", "ffn.fc1.bias"], "ffn.fc1"),
        helper.make_node(
            "Constant", [], ["gelu.sqrt2"], name="gelu.sqrt2", value=const("v", math.sqrt(2.0))
        ),
        helper.make_node("Constant", [], ["gelu.one"], name="gelu.one", value=const("v", 1.0)),
        helper.make_node("Constant", [], ["gelu.half"], name="gelu.half", value=const("v", 0.5)),
        node("Div", ["ffn.fc1", "gelu.sqrt2"], "gelu.scaled"),
        node("Erf", ["gelu.scaled"], "gelu.erf"),
        node("Add", ["gelu.erf", "gelu.one"], "gelu.erf1"),
        node("Mul", ["ffn.fc1", "gelu.erf1"], "gelu.prod"),
        node("Mul", ["gelu.prod", "gelu.half"], "gelu"),
        node("MatMul", ["gelu", "ffn.fc2.weight"], "ffn.fc2.matmul"),
        node("Add", ["ffn.fc2.matmul", "ffn.fc2.bias"], "ffn.fc2"),
        node("Add", ["r1", "ffn.fc2"], "r2"),
        # drop the summary token again
        node("Slice", ["r2", "slice.starts", "slice.ends", "axes.seq"], "y"),
    ]
    model = make_model(
        "transformer_block",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SEQ, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SEQ, D])],
        inits,
        f"One pre-LN transformer encoder block (d={D}, {HEADS} heads, FFN {FF}, GELU) with "
        "random weights; x [batch, 16, 64] -> y [batch, 16, 64]",
    )

    want = transformer_forward(p, x.astype(np.float64))
    (got,) = run_ort(model, {"x": x})
    diff = compare("transformer_block", got, want)
    return Built("transformer_block", model, x[:4].copy(), float_param_count(model), None, diff)


# ---------------------------------------------------------------------------------------------
# 4. shape_ops: data movement and a few element-wise ops, with a float and an int64 output

SHAPE_SEED = 4
GATHER_INDICES = [0, -1, 3, 3]  # a negative and a repeated index


def _where_mask() -> np.ndarray:
    """The constant Where condition [4, 9]: a fixed checkerboard-like pattern."""
    i, j = np.meshgrid(np.arange(4), np.arange(9), indexing="ij")
    return np.asarray((i + 2 * j) % 3 != 0)


def shape_ops_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [N, 3, 4, 4] -> (features [N, 36] float, argmax [N] int64), in float64."""
    n = len(x)
    r = x.transpose(0, 2, 3, 1).reshape(n, -1, 6)  # [N, 8, 6]
    a = r[:, 0:8:2, 5::-2]  # [N, 4, 3]
    b = r[:, GATHER_INDICES, :]  # [N, 4, 6]
    c = np.concatenate([a, b], axis=-1)  # [N, 4, 9]
    w = np.where(_where_mask(), c, np.exp(c))
    features = w.reshape(n, -1)
    return features, features.argmax(axis=1)


def build_shape_ops() -> Built:
    rng = np.random.default_rng(SHAPE_SEED)
    x = rng.normal(0.0, 1.0, (16, 3, 4, 4)).astype(np.float32)
    inits = [
        const("reshape.shape", [0, -1, 6], np.int64),
        const("slice.starts", [0, 5], np.int64),
        const("slice.ends", [8, -7], np.int64),
        const("slice.axes", [1, 2], np.int64),
        const("slice.steps", [2, -2], np.int64),
        const("gather.indices", GATHER_INDICES, np.int64),
        numpy_helper.from_array(_where_mask(), "where.cond"),
        const("unsqueeze.axes", [1, 4], np.int64),
        const("squeeze.axes", [-1, 1], np.int64),
    ]
    nodes = [
        node("Transpose", ["x"], "nhwc", perm=[0, 2, 3, 1]),
        node("Reshape", ["nhwc", "reshape.shape"], "rows"),
        node(
            "Slice",
            ["rows", "slice.starts", "slice.ends", "slice.axes", "slice.steps"],
            "strided",
        ),
        node("Gather", ["rows", "gather.indices"], "gathered", axis=1),
        node("Concat", ["strided", "gathered"], "joined", axis=-1),
        node("Identity", ["joined"], "joined.id"),
        node("Cast", ["joined.id"], "joined.f", to=TensorProto.FLOAT),
        node("Exp", ["joined.f"], "exp"),
        node("Where", ["where.cond", "joined.f", "exp"], "mixed"),
        node("Unsqueeze", ["mixed", "unsqueeze.axes"], "expanded"),
        node("Squeeze", ["expanded", "squeeze.axes"], "squeezed"),
        node("Flatten", ["squeezed"], "features", axis=1),
        node("ArgMax", ["features"], "argmax", axis=1, keepdims=0),
    ]
    model = make_model(
        "shape_ops",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 36]),
            helper.make_tensor_value_info("argmax", TensorProto.INT64, ["batch"]),
        ],
        inits,
        "Shape and data-movement ops; x [batch, 3, 4, 4] -> features [batch, 36] (float), "
        "argmax [batch] (int64)",
    )

    want, want_arg = shape_ops_forward(x.astype(np.float64))
    got, got_arg = run_ort(model, {"x": x})
    diff = compare("shape_ops", got, want)
    if got_arg.dtype != np.int64 or not np.array_equal(got_arg, want_arg):
        raise SystemExit("shape_ops: onnxruntime's argmax differs from the reference")
    return Built("shape_ops", model, x[:4].copy(), float_param_count(model), None, diff)


# ---------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[], Built]] = {
    "digits_cnn": build_digits_cnn,
    "sigmoid_mlp": build_sigmoid_mlp,
    "transformer_block": build_transformer_block,
    "shape_ops": build_shape_ops,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output directory"
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BUILDERS), help="build only these models"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    total = time.perf_counter()
    for name in args.only or list(BUILDERS):
        start = time.perf_counter()
        built = BUILDERS[name]()
        data = built.model.SerializeToString()
        (args.out / f"{name}.onnx").write_bytes(data)
        np.save(args.out / f"{name}_sample.npy", np.ascontiguousarray(built.sample))
        ops = sorted({n.op_type for n in built.model.graph.node})
        if built.accuracy is not None:
            print(f"{name}: test accuracy: {built.accuracy:.4f}")
        print(
            f"{name}: onnxruntime vs numpy float64 reference: max abs diff {built.max_abs_diff:.2e}"
        )
        print(
            f"{name}: {built.params} float parameters, {len(data)} bytes, "
            f"sample {list(built.sample.shape)}, {time.perf_counter() - start:.1f} s"
        )
        print(f"{name}: ops {' '.join(ops)}")
    print(f"total {time.perf_counter() - total:.1f} s; wrote to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
