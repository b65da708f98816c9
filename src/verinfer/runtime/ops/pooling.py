"""Pooling and reductions: MaxPool, AveragePool, GlobalAveragePool, ReduceMean, ReduceSum
(docs/runtime-spec.md, "Pooling and reductions").

All keep their input's scale. Averages are one ``div_round(sum, count)`` per output, with
``count`` a static number of positions, so a contract recomputes any element from its window.
Pooling is 2-D; 1-D pooling runs as 2-D pooling over a height of 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from verinfer.runtime import fused as c_kernels
from verinfer.runtime.fixed import INT32_MAX, IntArray, div_round, saturate
from verinfer.runtime.ops import FUSED, KERNELS, FusedKernel, attr, fused, kernel, lowering, planner
from verinfer.runtime.ops.linear import windows
from verinfer.runtime.ops.shape import axes_arg, emit_reshape, norm_axes
from verinfer.runtime.program import Program, Step

if TYPE_CHECKING:
    from verinfer.runtime.compiler import CompileContext

POOL_FILL = -(INT32_MAX + 1)  # -2**31: MaxPool's padding, below every value a tensor can hold


def axis_counts(size: int, k: int, s: int, d: int, pad_begin: int, out: int) -> IntArray:
    """For each output index o on one axis: how many of the k window positions
    ``o*s - pad_begin + j*d`` (j < k) fall inside the unpadded input ``[0, size)``."""
    pos = np.arange(out, dtype=np.int64)[:, None] * s - pad_begin + np.arange(k)[None, :] * d
    counts: IntArray = ((pos >= 0) & (pos < size)).sum(axis=1).astype(np.int64)
    return counts


def _pads(
    ctx: CompileContext,
    node: onnx.NodeProto,
    sizes: tuple[int, ...],
    kernel_shape: list[int],
    strides: list[int],
    dilations: list[int],
) -> list[int]:
    """ONNX pads ``[begin..., end...]``, resolving auto_pad as onnxruntime does."""
    rank = len(sizes)
    auto = attr(node, "auto_pad", "NOTSET")
    if auto == "NOTSET":
        return [int(p) for p in attr(node, "pads", [0] * (2 * rank))]
    if auto == "VALID":
        return [0] * (2 * rank)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"auto_pad={auto} is not supported")
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel_shape, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin + end


def _geometry(node: onnx.NodeProto, ctx: CompileContext) -> dict[str, Any]:
    """kernel/strides/dilations (2 each) and pads (top, left, bottom, right), lifted to 2-D."""
    x_shape = ctx.shape(node.input[0])
    rank = len(x_shape) - 2
    if rank not in (1, 2):
        raise ctx.fail(f"only 1-D and 2-D pooling is supported, the input has rank {rank + 2}")
    if int(attr(node, "ceil_mode", 0)) != 0:
        raise ctx.fail(
            "ceil_mode=1 is not supported",
            hint="export the model with ceil_mode=False (floor output sizes)",
        )
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail("the Indices output of MaxPool is not supported")
    kernel_shape = [int(k) for k in attr(node, "kernel_shape", [])]
    strides = [int(s) for s in attr(node, "strides", [1] * rank)]
    dilations = [int(d) for d in attr(node, "dilations", [1] * rank)]
    if not len(kernel_shape) == len(strides) == len(dilations) == rank:
        raise ctx.fail("kernel_shape, strides and dilations must have one entry per spatial axis")
    if min(kernel_shape + strides + dilations) < 1:
        raise ctx.fail("kernel_shape, strides and dilations must be >= 1")
    sizes = tuple(x_shape[2:])
    pads = _pads(ctx, node, sizes, kernel_shape, strides, dilations)
    if len(pads) != 2 * rank or min(pads) < 0:
        raise ctx.fail(f"pads {pads} must be 2 non-negative entries per spatial axis")
    if rank == 1:  # (N, C, L) pools as (N, C, 1, L)
        sizes, kernel_shape, strides = (1, *sizes), [1, *kernel_shape], [1, *strides]
        dilations, pads = [1, *dilations], [0, pads[0], 0, pads[1]]
    outs = []
    for i in range(2):
        span = (kernel_shape[i] - 1) * dilations[i] + 1
        outs.append((sizes[i] + pads[i] + pads[i + 2] - span) // strides[i] + 1)
    expected = ctx.shape(node.output[0])[2:]
    if tuple(outs[2 - rank :]) != tuple(expected) or min(outs) < 1:
        raise ctx.fail(
            f"pooling {x_shape} gives spatial size {outs[2 - rank :]}, shape "
            f"inference says {list(expected)}"
        )
    for i in range(2):
        counts = axis_counts(sizes[i], kernel_shape[i], strides[i], dilations[i], pads[i], outs[i])
        if int(counts.min()) < 1:
            raise ctx.fail("a pooling window lies entirely in the padding")
    return {
        "kernel": tuple(kernel_shape),
        "strides": tuple(strides),
        "dilations": tuple(dilations),
        "pads": tuple(pads),
    }


def _windows(step: Step, x: IntArray, fill: int) -> np.ndarray:
    a = step.attrs
    x4 = x[:, :, None, :] if x.ndim == 3 else x
    return windows(x4, a["kernel"], a["strides"], a["dilations"], a["pads"], fill=fill)


def _taps(step: Step, x: IntArray, fill: int) -> list[np.ndarray]:
    """The window as kh·kw strided views of the padded input, one per kernel position.

    Reducing across these few views is the same as reducing each window (as `_windows` does),
    but numpy does it an order of magnitude faster than a reduction over small window axes."""
    win = _windows(step, x, fill)
    kh, kw = win.shape[-2:]
    return [win[..., i, j] for i in range(kh) for j in range(kw)]


@lowering("MaxPool")
def lower_maxpool(node: onnx.NodeProto, ctx: CompileContext) -> None:
    geometry = _geometry(node, ctx)
    x = ctx.tensor(node.input[0])
    ctx.emit("max_pool", [x.name], scale=x.scale, kind=x.kind, bound=x.bound, attrs=geometry)


@kernel("max_pool")
def run_max_pool(step: Step, args: list[IntArray], program: Program) -> IntArray:
    taps = _taps(step, args[0], POOL_FILL)
    out: IntArray = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(out, tap, out=out)
    return out.reshape(program.tensors[step.output].shape)


def _pool_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int, mode: str, fill: int
) -> tuple[IntArray, int]:
    """One C pass (window reduction and saturation) when the extension applies, else the
    numpy kernel (the reference) and ``saturate``."""
    x = args[0]
    done = c_kernels.pool2d(x[:, :, None, :] if x.ndim == 3 else x, mode, fill, step.attrs, limit)
    if done is None:
        return saturate(KERNELS[step.op](step, args, program), limit)
    return done[0].reshape(program.tensors[step.output].shape), done[1]


def _planned_pool(
    step: Step,
    program: Program,
    limit: int,
    shape4: tuple[int, ...],
    mode: str,
    fill: int,
    window: dict[str, Any],
) -> FusedKernel | None:
    """The pooling C call prepared once, for the step's input seen as ``shape4`` (N, C, H,
    W); FUSED's kernel for an input of another dtype."""
    prepared = c_kernels.prepare_pool2d(shape4, mode, fill, window, limit)
    if prepared is None:
        return None
    out_shape = program.tensors[step.output].shape

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if args[0].dtype != np.int64:
            return FUSED[step.op](step, args, program, limit)
        out, clamped = c_kernels.run_pool2d(prepared, args[0].reshape(shape4))
        return out.reshape(out_shape), clamped

    return run


def _nchw(program: Program, step: Step) -> tuple[int, ...]:
    """The step's input shape, a 1-D pooling's (N, C, L) as (N, C, 1, L)."""
    shape = program.tensors[step.inputs[0]].shape
    return (shape[0], shape[1], 1, shape[2]) if len(shape) == 3 else tuple(shape)


@planner("max_pool")
def plan_max_pool(step: Step, program: Program, limit: int) -> FusedKernel | None:
    shape4 = _nchw(program, step)
    return _planned_pool(step, program, limit, shape4, "max", POOL_FILL, dict(step.attrs))


@planner("avg_pool")
def plan_avg_pool(step: Step, program: Program, limit: int) -> FusedKernel | None:
    mode = "avg_include_pad" if step.attrs["count_include_pad"] else "avg"
    return _planned_pool(step, program, limit, _nchw(program, step), mode, 0, dict(step.attrs))


@fused("max_pool")
def run_max_pool_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    return _pool_saturated(step, args, program, limit, "max", POOL_FILL)


@lowering("AveragePool")
def lower_avgpool(node: onnx.NodeProto, ctx: CompileContext) -> None:
    geometry = _geometry(node, ctx)
    x = ctx.tensor(node.input[0])
    if x.kind != "fx":
        raise ctx.fail("averaging an integer tensor is not supported")
    include = int(attr(node, "count_include_pad", 0))
    ctx.emit(
        "avg_pool",
        [x.name],
        scale=x.scale,
        bound=x.bound,
        attrs={**geometry, "count_include_pad": 1 if include else 0},
    )


@kernel("avg_pool")
def run_avg_pool(step: Step, args: list[IntArray], program: Program) -> IntArray:
    a = step.attrs
    taps = _taps(step, args[0], 0)
    sums: IntArray = taps[0].copy()
    for tap in taps[1:]:
        sums += tap
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    if a["count_include_pad"]:
        counts: IntArray | int = kh * kw
    else:
        h, w = (1, args[0].shape[-1]) if args[0].ndim == 3 else args[0].shape[-2:]
        oh, ow = sums.shape[-2:]
        ch = axis_counts(h, kh, sh, dh, a["pads"][0], oh)
        cw = axis_counts(w, kw, sw, dw, a["pads"][1], ow)
        counts = ch[:, None] * cw[None, :]
    return div_round(sums, counts).reshape(program.tensors[step.output].shape)


@fused("avg_pool")
def run_avg_pool_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    mode = "avg_include_pad" if step.attrs["count_include_pad"] else "avg"
    return _pool_saturated(step, args, program, limit, mode, 0)


# --- reductions -----------------------------------------------------------------------------


@lowering("GlobalAveragePool")
def lower_global_avgpool(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    if len(x.shape) < 3:
        raise ctx.fail(f"the input must be (N, C, spatial...), got shape {x.shape}")
    if x.kind != "fx":
        raise ctx.fail("averaging an integer tensor is not supported")
    ctx.emit(
        "reduce_mean",
        [x.name],
        scale=x.scale,
        bound=x.bound,
        attrs={"axes": tuple(range(2, len(x.shape))), "keepdims": 1},
    )


@lowering("ReduceMean", "ReduceSum")
def lower_reduce(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    rank = len(x.shape)
    axes = axes_arg(node, ctx, 1)
    if not axes:
        if int(attr(node, "noop_with_empty_axes", 0)):
            emit_reshape(ctx, x)  # ONNX: the input unchanged
            return
        axes = list(range(rank))
    norm = norm_axes(ctx, axes, rank)
    n = int(np.prod([x.shape[a] for a in norm], dtype=np.int64))
    if n < 1:
        raise ctx.fail("the reduction is over an empty axis")
    mean = node.op_type == "ReduceMean"
    if mean and x.kind != "fx":
        raise ctx.fail("averaging an integer tensor is not supported")
    ctx.emit(
        "reduce_mean" if mean else "reduce_sum",
        [x.name],
        scale=x.scale,
        kind=x.kind,
        bound=x.bound if mean else x.bound * n,
        attrs={"axes": norm, "keepdims": 1 if int(attr(node, "keepdims", 1)) else 0},
    )


def _sum(step: Step, x: IntArray) -> IntArray:
    total = np.sum(x, axis=step.attrs["axes"], keepdims=bool(step.attrs["keepdims"]))
    return np.asarray(total, dtype=np.int64)


@kernel("reduce_sum")
def run_reduce_sum(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return _sum(step, args[0])


@kernel("reduce_mean")
def run_reduce_mean(step: Step, args: list[IntArray], program: Program) -> IntArray:
    n = int(np.prod([args[0].shape[a] for a in step.attrs["axes"]], dtype=np.int64))
    return div_round(_sum(step, args[0]), n)


def _mean_window(step: Step, shape: tuple[int, ...]) -> tuple[tuple[int, ...], dict[str, Any]]:
    """A mean over trailing axes as average pooling: the input seen as (1, rows, 1, inner) and
    one window of the inner values per row; ((), {}) for other axes."""
    axes, k = tuple(step.attrs["axes"]), len(step.attrs["axes"])
    if not k or axes != tuple(range(len(shape) - k, len(shape))):
        return (), {}
    inner = int(np.prod(shape[len(shape) - k :], dtype=np.int64))
    rows = int(np.prod(shape[: len(shape) - k], dtype=np.int64))
    window = {"kernel": (1, inner), "strides": (1, 1), "dilations": (1, 1), "pads": (0,) * 4}
    return (1, rows, 1, inner), window


@planner("reduce_mean")
def plan_reduce_mean(step: Step, program: Program, limit: int) -> FusedKernel | None:
    shape4, window = _mean_window(step, program.tensors[step.inputs[0]].shape)
    return _planned_pool(step, program, limit, shape4, "avg", 0, window) if window else None


@fused("reduce_mean")
def run_reduce_mean_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """Over trailing axes (GlobalAveragePool's case) the mean is one average-pooling window
    per leading index: the C pooling kernel, one pass. Other axes: the numpy kernel."""
    shape4, window = _mean_window(step, args[0].shape)
    if window:
        done = c_kernels.pool2d(args[0].reshape(shape4), "avg", 0, window, limit)
        if done is not None:
            return done[0].reshape(program.tensors[step.output].shape), done[1]
    return saturate(run_reduce_mean(step, args, program), limit)
