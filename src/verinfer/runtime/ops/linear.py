"""Dot-product ops: Gemm, MatMul, Conv (2-D). The only ops that use float64 BLAS.

Integer products are summed in float64 only where the compiler proved every partial sum is
below 2**53, so the result is the exact integer whatever order BLAS adds in. Where the proof
fails for the whole reduction, it is split into chunks that each pass, summed in int64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from verinfer.runtime.fixed import (
    EXACT_FLOAT,
    INT32_MAX,
    INT64_SAFE,
    IntArray,
    quantize_real,
    saturate,
    scale_for,
    shr_round,
)
from verinfer.runtime.fused import conv2d as conv2d_c
from verinfer.runtime.fused import (
    prepare_conv2d,
    prepare_requantize,
    prepare_small_dense,
    requantize,
    run_requantize,
    run_small_dense,
    then_relu,
)
from verinfer.runtime.fused import run_conv2d as run_conv2d_c
from verinfer.runtime.ops import FusedKernel, attr, fused, kernel, lowering, planner
from verinfer.runtime.program import Program, Step

if TYPE_CHECKING:
    from verinfer.runtime.compiler import CompileContext


def chunk_for(ctx: CompileContext, k: int, bound_a: int, bound_b: int) -> int:
    """The reduction chunk (0 = whole) that keeps float64 sums exact; proves int64 safety."""
    per_term = max(bound_a * bound_b, 1)
    if k * per_term + INT32_MAX < EXACT_FLOAT:
        return 0
    if k * per_term >= INT64_SAFE:
        raise ctx.fail(
            f"a dot product of {k} terms of up to {bound_a} x {bound_b} could overflow int64"
        )
    chunk = (EXACT_FLOAT - 1) // per_term
    if chunk < 1:
        raise ctx.fail("single products exceed 2**53")
    return int(chunk)


def _bias(ctx: CompileContext, bias: Any, acc_scale: int) -> tuple[list[str], int]:
    """Bias as int32 at a scale <= the accumulator's, shifted up exactly when added."""
    if bias is None:
        return [], 0
    b = np.asarray(bias, dtype=np.float64).reshape(-1)
    scale = min(acc_scale, scale_for(float(np.max(np.abs(b))) if b.size else 0.0, INT32_MAX // 2))
    return [ctx.add_const("bias", quantize_real(b, scale), scale)], acc_scale - scale


def lower_dense(ctx: CompileContext, x_name: str, w_nk: Any, bias: Any) -> None:
    """y = x @ W.T + b with W stored [N, K]: the K weights of one output are contiguous."""
    x = ctx.tensor(x_name)
    w_name, w_scale = ctx.add_weight("weight", w_nk)
    acc_scale = x.scale + w_scale
    bias_inputs, bias_shift = _bias(ctx, bias, acc_scale)
    out_scale = ctx.act_scale(ctx.node.output[0])
    w_bound = ctx.constants[w_name].bound
    chunk = chunk_for(ctx, int(w_nk.shape[1]), x.bound, w_bound)
    ctx.emit(
        "dense",
        [x.name, w_name, *bias_inputs],
        scale=out_scale,
        attrs={"shift": acc_scale - out_scale, "bias_shift": bias_shift, "chunk": chunk},
    )


def fold_bias(ctx: CompileContext, node: onnx.NodeProto) -> bool:
    """Fold ``node``, an Add or Sub of a per-output constant, into the bias-free dense step
    that just produced its other operand, if nothing else reads that step's output: one step
    and one committed tensor fewer, and one rounding fewer. This is MatMul + Add, as torch
    exports ``nn.Linear`` on inputs of more than two dimensions. Returns whether it did."""
    a, b = node.input
    if node.op_type == "Add" and ctx.is_const(a):
        a, b = b, a
    last = ctx.foldable_last(a, ("dense",))
    if last is None or len(last.inputs) != 2 or last.attrs.get("relu") or not ctx.is_const(b):
        return False
    c = ctx.const(b).astype(np.float64)
    n = ctx.tensors[a].shape[-1]
    per_output = c.ndim <= len(ctx.tensors[a].shape) and all(d == 1 for d in c.shape[:-1])
    if not per_output or (c.ndim and c.shape[-1] not in (1, n)):
        return False
    bias = np.broadcast_to(c.reshape(-1), (n,)) * (-1.0 if node.op_type == "Sub" else 1.0)
    acc_scale = ctx.tensors[last.inputs[0]].scale + ctx.constants[last.inputs[1]].scale
    bias_inputs, bias_shift = _bias(ctx, bias, acc_scale)
    out_scale = ctx.act_scale(node.output[0])
    attrs = {**last.attrs, "shift": acc_scale - out_scale, "bias_shift": bias_shift}
    ctx.fold_into_last(a, attrs, inputs=tuple(bias_inputs), scale=out_scale)
    return True


@lowering("Gemm")
def lower_gemm(node: onnx.NodeProto, ctx: CompileContext) -> None:
    a, b = node.input[0], node.input[1]
    if attr(node, "transA", 0):
        raise ctx.fail("transA=1 is not supported", hint="transpose the input before the Gemm")
    if not ctx.is_const(b):
        raise ctx.fail("the second operand must be a constant weight matrix")
    w = ctx.const(b).astype(np.float64) * float(attr(node, "alpha", 1.0))
    w_nk = w if attr(node, "transB", 0) else w.T
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = ctx.const(node.input[2]).astype(np.float64) * float(attr(node, "beta", 1.0))
        n = w_nk.shape[0]
        if c.size not in (1, n):
            raise ctx.fail(f"bias of shape {c.shape} is not per-output")
        bias = np.broadcast_to(c.reshape(-1), (n,))
    lower_dense(ctx, a, w_nk, bias)


@lowering("MatMul")
def lower_matmul(node: onnx.NodeProto, ctx: CompileContext) -> None:
    a, b = node.input
    if ctx.is_const(a):
        raise ctx.fail("a constant left operand is not supported", hint="swap the operands")
    if ctx.is_const(b):
        w = ctx.const(b)
        if w.ndim != 2:
            raise ctx.fail("constant right operands must be 2-D")
        lower_dense(ctx, a, w.astype(np.float64).T, None)
        return
    x, y = ctx.tensor(a), ctx.tensor(b)
    acc_scale = x.scale + y.scale
    out_scale = ctx.act_scale(node.output[0])
    chunk = chunk_for(ctx, ctx.shape(a)[-1], x.bound, y.bound)
    ctx.emit(
        "matmul",
        [x.name, y.name],
        scale=out_scale,
        attrs={"shift": acc_scale - out_scale, "chunk": chunk},
    )


def _dot(x: np.ndarray, w_t: np.ndarray, chunk: int) -> IntArray:
    """Exact integer x @ w_t via float64 BLAS, chunked over K when needed."""
    if not chunk:
        return np.matmul(x, w_t).astype(np.int64)
    k = x.shape[-1]
    total = np.matmul(x[..., :chunk], w_t[..., :chunk, :]).astype(np.int64)
    for start in range(chunk, k, chunk):
        total += np.matmul(
            x[..., start : start + chunk], w_t[..., start : start + chunk, :]
        ).astype(np.int64)
    return total


@kernel("dense")
def run_dense(step: Step, args: list[IntArray], program: Program) -> IntArray:
    x = args[0].astype(np.float64)
    w = program.const(step.inputs[1], "float64")
    acc = _dot(x, w.T, step.attrs["chunk"])
    if len(args) > 2:
        acc += args[2] << step.attrs["bias_shift"]
    return shr_round(acc, step.attrs["shift"])


def _weight_t(program: Program, name: str) -> np.ndarray:
    """The [K, N] float64 transpose of a dense weight, made once per program."""
    key = (name, "float64.T")
    w_t = program._prepared.get(key)
    if w_t is None:
        w_t = np.ascontiguousarray(program.constants[name].values.T, dtype=np.float64)
        program._prepared[key] = w_t
    return w_t


@fused("dense")
def run_dense_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """``run_dense``, the saturation and a fused Relu in one pass over the accumulator."""
    a = step.attrs
    x = args[0].astype(np.float64)
    chunk = a["chunk"]
    if chunk:
        acc = _dot(x, program.const(step.inputs[1], "float64").T, chunk)
    else:  # W.T contiguous: BLAS's NN kernel is faster here than NT on a strided view
        acc = np.matmul(x, _weight_t(program, step.inputs[1]))
    bias = args[2] if len(args) > 2 else None
    return requantize(acc, bias, a["bias_shift"], a["shift"], limit, bool(a.get("relu")))


@planner("dense")
def plan_dense(step: Step, program: Program, limit: int) -> FusedKernel | None:
    """Unchunked: the transposed weights and the requantization's C call prepared once; a
    small layer runs as one C call (product included), a large one through BLAS."""
    a = step.attrs
    if a["chunk"] or not all(n in program.constants for n in step.inputs[1:]):
        return None
    w_t = _weight_t(program, step.inputs[1])
    bias = program.const(step.inputs[2]) if len(step.inputs) > 2 else None
    prepared = prepare_requantize(
        w_t.shape[1:], bias, a["bias_shift"], a["shift"], limit, bool(a.get("relu"))
    )
    if prepared is None:
        return None
    small = prepare_small_dense(w_t, prepared, program.tensors[step.inputs[0]].shape)

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if small is not None and (done := run_small_dense(small, args[0])) is not None:
            return done
        return run_requantize(prepared, np.matmul(args[0].astype(np.float64), w_t))

    return run


@kernel("matmul")
def run_matmul(step: Step, args: list[IntArray], program: Program) -> IntArray:
    acc = _dot(args[0].astype(np.float64), args[1].astype(np.float64), step.attrs["chunk"])
    return shr_round(acc, step.attrs["shift"])


@fused("matmul")
def run_matmul_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    x, y, chunk = args[0].astype(np.float64), args[1].astype(np.float64), step.attrs["chunk"]
    acc = np.matmul(x, y) if not chunk else _dot(x, y, chunk)
    return requantize(acc, None, 0, step.attrs["shift"], limit, bool(step.attrs.get("relu")))


@lowering("Conv")
def lower_conv(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x_name, w_name = node.input[0], node.input[1]
    if not ctx.is_const(w_name):
        raise ctx.fail("the weights must be constant")
    w = ctx.const(w_name).astype(np.float64)
    if w.ndim != 4:
        raise ctx.fail("only 2-D convolutions are supported")
    x = ctx.tensor(x_name)
    _, _, h, wd = ctx.shape(x_name)
    kh, kw = w.shape[2], w.shape[3]
    strides = tuple(attr(node, "strides", [1, 1]))
    dilations = tuple(attr(node, "dilations", [1, 1]))
    pads = _conv_pads(ctx, node, (h, wd), (kh, kw), strides, dilations)
    group = int(attr(node, "group", 1))
    weight, w_scale = ctx.add_weight("weight", w)  # [M, C/g, kh, kw]: one output's K contiguous
    acc_scale = x.scale + w_scale
    bias = ctx.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    bias_inputs, bias_shift = _bias(ctx, bias, acc_scale)
    out_scale = ctx.act_scale(node.output[0])
    k = int(w.shape[1] * kh * kw)
    chunk = chunk_for(ctx, k, x.bound, ctx.constants[weight].bound)
    ctx.emit(
        "conv2d",
        [x.name, weight, *bias_inputs],
        scale=out_scale,
        attrs={
            "shift": acc_scale - out_scale,
            "bias_shift": bias_shift,
            "chunk": chunk,
            "strides": strides,
            "dilations": dilations,
            "pads": pads,
            "group": group,
        },
    )


def _conv_pads(
    ctx: CompileContext,
    node: onnx.NodeProto,
    size: tuple[int, int],
    kernel_hw: tuple[int, int],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
) -> tuple[int, int, int, int]:
    """Explicit (top, left, bottom, right) pads, resolving auto_pad like onnxruntime."""
    auto = attr(node, "auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        p = attr(node, "pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0, 0, 0, 0]
        return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad={auto} is not supported")
    begin, end = [], []
    for dim, k, s, d in zip(size, kernel_hw, strides, dilations, strict=True):
        out = -(-dim // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - dim, 0)
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return (begin[0], begin[1], end[0], end[1])


def windows(
    x: IntArray,
    kernel_hw: tuple[int, int],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: tuple[int, ...],
    fill: int = 0,
) -> np.ndarray:
    """(N, C, OH, OW, kh, kw) view of the padded input's sliding windows."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    kh, kw = kernel_hw
    span_h, span_w = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    view = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    return view[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]


def conv2d_reference(
    x: IntArray, w: IntArray, bias: IntArray | None, a: Mapping[str, Any]
) -> IntArray:
    """The conv2d step in numpy (im2col + exact float64 BLAS): the reference for the C kernel."""
    m, cg, kh, kw = w.shape
    g = a["group"]
    if cg == 1 and m == g:  # depthwise: a few exact int64 multiply-adds beat im2col
        acc = _depthwise(x, w, a)
    else:
        win = windows(x.astype(np.float64), (kh, kw), a["strides"], a["dilations"], a["pads"])
        n, c, oh, ow = win.shape[:4]
        mg = m // g
        # (g, N·OH·OW, Cg·kh·kw) @ (g, Cg·kh·kw, Mg): one batched BLAS call for all groups.
        cols = win.reshape(n, g, cg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
        cols = cols.reshape(g, n * oh * ow, cg * kh * kw)
        w_t = w.astype(np.float64).reshape(g, mg, cg * kh * kw).transpose(0, 2, 1)
        dot = _dot(cols, w_t, a["chunk"])
        acc = dot.reshape(g, n, oh, ow, mg).transpose(1, 0, 4, 2, 3).reshape(n, m, oh, ow)
    if bias is not None:
        acc = acc + (bias << a["bias_shift"]).reshape(1, -1, 1, 1)
    return shr_round(np.ascontiguousarray(acc), a["shift"])


@kernel("conv2d")
def run_conv2d(step: Step, args: list[IntArray], program: Program) -> IntArray:
    bias = args[2] if len(args) > 2 else None
    return conv2d_reference(args[0], program.const(step.inputs[1]), bias, step.attrs)


@fused("conv2d")
def run_conv2d_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """The C kernel (exact sums, bias, shift, saturation and a fused Relu in one pass), else
    numpy."""
    bias = args[2] if len(args) > 2 else None
    done = conv2d_c(args[0], program.const(step.inputs[1]), bias, step.attrs, limit)
    if done is not None:
        return done
    return then_relu(saturate(run_conv2d(step, args, program), limit), bool(step.attrs.get("relu")))


@planner("conv2d")
def plan_conv2d(step: Step, program: Program, limit: int) -> FusedKernel | None:
    """The C call prepared once: weights and bias contiguous, geometry checked and converted."""
    if not all(n in program.constants for n in step.inputs[1:]):
        return None
    w = np.ascontiguousarray(program.const(step.inputs[1]))
    bias = np.ascontiguousarray(program.const(step.inputs[2])) if len(step.inputs) > 2 else None
    prepared = prepare_conv2d(program.tensors[step.inputs[0]].shape, w.shape, step.attrs, limit)
    if prepared is None:
        return None

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if args[0].dtype != np.int64:
            return run_conv2d_saturated(step, args, program, limit)
        return run_conv2d_c(prepared, args[0], w, bias)

    return run


def _depthwise(x: IntArray, w: IntArray, a: Mapping[str, Any]) -> IntArray:
    """Σ over the kernel taps of shifted inputs times one weight per channel (exact int64)."""
    top, left, bottom, right = a["pads"]
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (sh, sw), (dh, dw) = a["strides"], a["dilations"]
    kh, kw = w.shape[2], w.shape[3]
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    acc = np.zeros((x.shape[0], x.shape[1], oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            tap = xp[
                :,
                :,
                i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                j * dw : j * dw + (ow - 1) * sw + 1 : sw,
            ]
            acc += tap * w[:, 0, i, j].reshape(1, -1, 1, 1)
    return acc
