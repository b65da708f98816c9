"""Fused kernels: each step's integer rule and its saturation in one pass of C (quantize,
requantize, relu, conv, pooling, element-wise ops, tables, softmax, layer norm).

Each is the composition of the primitives in ``verinfer.runtime.fixed``; the reference is
numpy: the ``numpy_*`` functions below, or the op's kernel in ``ops`` (``KERNELS``). When the
optional C extension ``_fixed`` is built, the public functions run it instead: same integers,
same clamped counts, a fraction of the per-call overhead (the tests check the two agree on
every kernel). Without a C compiler, or where a ``prepare_*`` returns None, numpy runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from verinfer.runtime.fixed import IntArray, saturate, shr_round

try:
    from verinfer.runtime import _fixed
except ImportError:  # installed without a C compiler: the numpy reference
    _fixed = None  # type: ignore[assignment]

_SHIFT_MAX = 63  # the C kernels take |shift| <= 63; numpy handles anything else


def backend() -> str:
    """``"c"`` when the compiled kernels are in use, else ``"numpy"``."""
    return "c" if _fixed is not None else "numpy"


# ---- numpy reference ----------------------------------------------------------------------


def numpy_quantize(values: NDArray[Any], scale: int, limit: int) -> tuple[IntArray, int]:
    """``saturate(floor(v * 2**scale + 1/2))`` in float64; raises ValueError on NaN/inf.

    Values beyond the limit are clamped in float64 before the cast, so even ones too large
    for int64 saturate to the right sign."""
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError("NaN or infinity")
    f = np.floor(np.ldexp(v, scale) + 0.5)
    np.clip(f, -limit - 1, limit + 1, out=f)
    return saturate(f.astype(np.int64), limit)


def numpy_requantize(
    acc: NDArray[Any], bias: IntArray | None, bias_shift: int, shift: int, limit: int
) -> tuple[IntArray, int]:
    """``saturate(shr_round(int64(acc) + (bias << bias_shift), shift), limit)``; the bias
    broadcasts over the last axis."""
    x = acc.astype(np.int64) if acc.dtype != np.int64 else acc
    if bias is not None:
        x = x + (bias << bias_shift)
    return saturate(shr_round(x, shift), limit)


def numpy_relu_saturate(x: IntArray, limit: int) -> tuple[IntArray, int]:
    return saturate(np.maximum(x, 0), limit)


# ---- dispatch -----------------------------------------------------------------------------


def quantize(values: NDArray[Any], scale: int, limit: int) -> tuple[IntArray, int]:
    """Quantize real values at ``scale`` (in float64, as ``fixed.quantize_real``) and saturate
    to ``[-limit, limit]``: (q, clamped). Raises ValueError if any value is NaN or infinite."""
    if _fixed is None or not -1000 <= scale <= 1000 or not 0 <= limit < 1 << 31:
        return numpy_quantize(values, scale, limit)
    src = np.ascontiguousarray(values)  # float32 is widened exactly in C
    if src.dtype != np.float32:
        src = src.astype(np.float64, copy=False)
    out = np.empty(src.shape, dtype=np.int64)
    clamped = _fixed.quantize(src, out, scale, limit)
    if clamped < 0:
        raise ValueError("NaN or infinity")
    return out, clamped


def requantize(
    acc: NDArray[Any],
    bias: IntArray | None,
    bias_shift: int,
    shift: int,
    limit: int,
    relu: bool = False,
) -> tuple[IntArray, int]:
    """A dot product's accumulator (float64 holding exact integers, or int64) to the output
    tensor: add ``bias << bias_shift``, ``shr_round`` by ``shift``, saturate, and with
    ``relu`` max(0, .) (a Relu the compiler fused into the step). (out, clamped)."""
    prepared = prepare_requantize(acc.shape[-1:], bias, bias_shift, shift, limit, relu)
    if prepared is None or acc.dtype.char not in "dlq":
        return then_relu(numpy_requantize(acc, bias, bias_shift, shift, limit), relu)
    return run_requantize(prepared, acc)


# requantize's C arguments after the accumulator: (bias, bias_shift, shift, limit, relu).
PreparedRequantize = tuple[IntArray | None, int, int, int, int]


def prepare_requantize(
    last_axis: tuple[int, ...],
    bias: IntArray | None,
    bias_shift: int,
    shift: int,
    limit: int,
    relu: bool,
) -> PreparedRequantize | None:
    """requantize's C call for accumulators whose last axis is ``last_axis`` (one entry, or
    none for a scalar), or None where only numpy applies."""
    if (
        _fixed is None
        or not 0 <= bias_shift <= _SHIFT_MAX
        or not -_SHIFT_MAX <= shift <= _SHIFT_MAX
        or not 0 <= limit < 1 << 63
        or (bias is not None and (bias.ndim != 1 or tuple(last_axis) != bias.shape))
        or (bias is not None and bias.dtype.char not in "lq")
    ):
        return None
    bias = None if bias is None else np.ascontiguousarray(bias)
    return bias, bias_shift, shift, limit, 1 if relu else 0


def run_requantize(prepared: PreparedRequantize, acc: NDArray[Any]) -> tuple[IntArray, int]:
    """A prepared requantize of a float64 or int64 accumulator: (out, clamped)."""
    acc = np.ascontiguousarray(acc)
    out = np.empty(acc.shape, dtype=np.int64)
    bias, bias_shift, shift, limit, relu = prepared
    return out, _fixed.requantize(acc, bias, bias_shift, shift, limit, out, relu)


# The C dense kernel pads the weight columns to a multiple of this (CONV_LANES in _fixed.c).
_DENSE_LANES = 16
# Products per call up to which it runs: above, BLAS (with its threads) is as fast or faster
# (measured: 1024 x 64 x 64 the same, 128 x 384 x 384 2.5x slower).
_SMALL_DENSE_MAX = 1 << 21

# (weights padded, bias, bias_shift, shift, limit, relu, output shape)
PreparedDense = tuple[NDArray[np.float64], IntArray | None, int, int, int, int, tuple[int, ...]]


def prepare_small_dense(
    w_t: NDArray[Any], requant: PreparedRequantize, x_shape: tuple[int, ...]
) -> PreparedDense | None:
    """The C dense kernel (product, bias, requantization in one call) for inputs of shape
    ``x_shape`` (..., k) times the constant ``w_t`` (k, n, integer-valued), with the
    requantization ``prepare_requantize`` made for its output rows; None where BLAS is the
    better path (large layers)."""
    k, n = w_t.shape
    rows = int(np.prod(x_shape[:-1], dtype=np.int64))
    if not x_shape or x_shape[-1] != k or rows * k * n > _SMALL_DENSE_MAX:
        return None
    w = np.zeros((k, -(-n // _DENSE_LANES) * _DENSE_LANES))
    w[:, :n] = w_t
    return (w, *requant, (*x_shape[:-1], n))


def run_small_dense(prepared: PreparedDense, x: IntArray) -> tuple[IntArray, int] | None:
    """A prepared small dense step on int64 ``x`` of the prepared shape: (out, clamped), or
    None when the kernel cannot show the float64 sums exact (then the caller's BLAS path)."""
    w, bias, bias_shift, shift, limit, relu, out_shape = prepared
    out = np.empty(out_shape, dtype=np.int64)
    clamped = _fixed.dense(
        np.ascontiguousarray(x, dtype=np.int64), w, bias, bias_shift, shift, limit, relu, out
    )
    return None if clamped < 0 else (out, clamped)


def then_relu(done: tuple[IntArray, int], relu: bool) -> tuple[IntArray, int]:
    """A saturated (out, clamped) with a fused Relu applied when ``relu``: the numpy paths'
    form of what the C kernels do in their last pass. A new array: ``out`` may be the
    caller's own (saturate and shr_round by 0 return their input)."""
    return (np.maximum(done[0], 0), done[1]) if relu else done


def relu_saturate(x: IntArray, limit: int) -> tuple[IntArray, int]:
    """``saturate(max(x, 0), limit)``: (out, clamped)."""
    if _fixed is None or x.dtype.char not in "lq" or not 0 <= limit < 1 << 63:
        return numpy_relu_saturate(x, limit)
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, dtype=np.int64)
    return out, _fixed.relu_saturate(src, out, limit)


# ---- convolution and pooling (the numpy references are the op kernels in ``ops``) --------

_GEOM_MAX = 1 << 16  # kernel sizes, strides, dilations, pads and groups the C kernels accept


def _geometry_ok(positive: tuple[int, ...], pads: tuple[int, ...]) -> bool:
    return all(1 <= v <= _GEOM_MAX for v in positive) and all(0 <= p <= _GEOM_MAX for p in pads)


def _int64(x: IntArray) -> bool:
    return x.dtype.char in "lq"


def _out_hw(
    size: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, ...],
) -> tuple[int, int]:
    """Output height and width of a 2-D window op with (top, left, bottom, right) pads."""
    (h, wd), (kh, kw), (sh, sw), (dh, dw) = size, kernel, strides, dilations
    oh = (h + pads[0] + pads[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dw - 1) // sw + 1
    return oh, ow


# The C kernels' integer arguments for one step, worked out once per program: (the output
# shape, the arguments after the arrays). The prepare_* functions return None where the C
# kernel does not apply (no extension, odd geometry or ranges): the caller runs numpy.
Prepared = tuple[tuple[int, ...], tuple[int, ...]]


def prepare_conv2d(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: Mapping[str, Any], limit: int
) -> Prepared | None:
    """The conv2d step's C call for inputs of these shapes (see ``conv2d``)."""
    a = attrs
    (sh, sw), (dh, dw), pads, group = a["strides"], a["dilations"], a["pads"], a["group"]
    if (
        _fixed is None
        or len(x_shape) != 4
        or len(w_shape) != 4
        or 0 in w_shape
        or not _geometry_ok((sh, sw, dh, dw, group), tuple(pads))
        or not 0 <= a["bias_shift"] <= _SHIFT_MAX
        or not -_SHIFT_MAX <= a["shift"] <= _SHIFT_MAX
        or not 0 <= limit < 1 << 63
    ):
        return None
    n, _, h, wd = x_shape
    m, _, kh, kw = w_shape
    oh, ow = _out_hw((h, wd), (kh, kw), (sh, sw), (dh, dw), pads)
    if oh < 1 or ow < 1:
        return None
    geometry = (sh, sw, dh, dw, pads[0], pads[1], pads[2], pads[3], group)
    tail = (a["bias_shift"], a["shift"], limit, 1 if a.get("relu") else 0)
    return (n, m, oh, ow), geometry + tail


def run_conv2d(
    prepared: Prepared, x: IntArray, w: IntArray, bias: IntArray | None
) -> tuple[IntArray, int]:
    """A prepared conv2d call on int64 arrays (w and bias C-contiguous): (out, clamped)."""
    out = np.empty(prepared[0], dtype=np.int64)
    return out, _fixed.conv2d(np.ascontiguousarray(x), w, bias, out, *prepared[1])


def conv2d(
    x: IntArray,
    w: IntArray,
    bias: IntArray | None,
    attrs: Mapping[str, Any],
    limit: int,
) -> tuple[IntArray, int] | None:
    """The conv2d step (``ops.linear.conv2d_reference``), its saturation and its fused Relu
    (``attrs["relu"]``) in C: (out, clamped), or None where the C kernel does not apply (no
    extension, odd dtypes or ranges), and the caller runs the numpy reference."""
    if not (_int64(x) and _int64(w) and (bias is None or _int64(bias))):
        return None
    prepared = prepare_conv2d(x.shape, w.shape, attrs, limit)
    if prepared is None:
        return None
    bias = None if bias is None else np.ascontiguousarray(bias)
    return run_conv2d(prepared, x, np.ascontiguousarray(w), bias)


POOL_MODES = {"max": 0, "avg": 1, "avg_include_pad": 2}


def prepare_pool2d(
    x_shape: tuple[int, ...], mode: str, fill: int, attrs: Mapping[str, Any], limit: int
) -> Prepared | None:
    """The pooling C call for an (N, C, H, W) input of this shape (see ``pool2d``)."""
    (kh, kw), (sh, sw), (dh, dw), pads = (
        attrs["kernel"],
        attrs["strides"],
        attrs["dilations"],
        attrs["pads"],
    )
    if (
        _fixed is None
        or len(x_shape) != 4
        or not _geometry_ok((kh, kw, sh, sw, dh, dw), tuple(pads))
        or not -(1 << 63) <= fill < 1 << 63
        or not 0 <= limit < 1 << 63
    ):
        return None
    n, c, h, wd = x_shape
    oh, ow = _out_hw((h, wd), (kh, kw), (sh, sw), (dh, dw), pads)
    if oh < 1 or ow < 1:
        return None
    pt, pl, pb, pr = pads
    return (n, c, oh, ow), (POOL_MODES[mode], fill, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, limit)


def run_pool2d(prepared: Prepared, x: IntArray) -> tuple[IntArray, int]:
    """A prepared pooling call on an int64 (N, C, H, W) array: (out, clamped)."""
    out = np.empty(prepared[0], dtype=np.int64)
    return out, _fixed.pool2d(np.ascontiguousarray(x), out, *prepared[1])


def pool2d(
    x: IntArray, mode: str, fill: int, attrs: Mapping[str, Any], limit: int
) -> tuple[IntArray, int] | None:
    """Max or average pooling of (N, C, H, W) and its saturation in C: (out, clamped), or None
    where the C kernel does not apply. ``fill`` is what max pooling reads in the padding."""
    if not _int64(x):
        return None
    prepared = prepare_pool2d(x.shape, mode, fill, attrs, limit)
    return None if prepared is None else run_pool2d(prepared, x)


# ---- table steps (the numpy references are tables.lookup and ops.nonlinear.run_softmax) ---

# lut's and softmax's C arguments after the input: (table, lo, shift, intervals).
PreparedTable = tuple[IntArray, int, int, int]
_LO_MAX = 1 << 61  # the C kernels take |lo| <= 2**61 and intervals << shift < 2**61
_SOFTMAX_SCALE_MAX = 30  # and, for softmax, out_scale <= 30 and entries in [0, 2**31)


def prepare_table(
    table: IntArray, lo: int, shift: int, intervals: int, softmax_scale: int | None = None
) -> PreparedTable | None:
    """The C arguments of a table step (``softmax_scale``: softmax's out_scale), or None where
    only numpy applies: no extension, or a table or grid outside what the C kernels index."""
    if (
        _fixed is None
        or table.ndim != 1
        or not _int64(table)
        or len(table) != intervals + 1
        or not 0 <= shift <= 62
        or not 1 <= intervals <= (_LO_MAX - 1) >> shift
        or not -_LO_MAX <= lo < _LO_MAX
    ):
        return None
    if softmax_scale is not None and (
        not 0 <= softmax_scale <= _SOFTMAX_SCALE_MAX
        or int(table.min()) < 0
        or int(table.max()) >= 1 << 31
    ):
        return None
    return np.ascontiguousarray(table), lo, shift, intervals


def run_lut(prepared: PreparedTable, x: IntArray, limit: int) -> tuple[IntArray, int]:
    """``saturate(tables.lookup(x, ...), limit)`` of an int64 array in one pass."""
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, dtype=np.int64)
    return out, _fixed.lut(src, *prepared, limit, out)


def run_softmax(
    prepared: PreparedTable, rows: IntArray, out_scale: int, limit: int
) -> tuple[IntArray, int]:
    """The softmax step of each row of an int64 (rows, n) array, saturated: (out, clamped).
    ``prepared`` must come from prepare_table with a softmax_scale (the table it checked)."""
    src = np.ascontiguousarray(rows)
    out = np.empty(src.shape, dtype=np.int64)
    clamped = _fixed.softmax(src, *prepared, out_scale, limit, out)
    if clamped < 0:
        raise ValueError("softmax: a table entry outside [0, 2**31); use prepare_table")
    return out, clamped


# ---- element-wise steps (the numpy references are ops.elementwise's add, mul and where) ---

EW_OPS = {"add": 0, "mul": 1, "where": 2}
# elementwise's C arguments: (op, limit, shift_a, shift_b, sign, geometry), and the output
# shape.
PreparedElementwise = tuple[tuple[int, int, int, int, int, IntArray], tuple[int, ...]]


def broadcast_geometry(
    shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]
) -> IntArray | None:
    """Operands of these shapes broadcast to ``out_shape`` as at most 3 merged dims: int64
    ``[n0, n1, n2]`` then each operand's element strides ``(s0, s1, s2)``, for 3 operands
    (missing leading ones all 0). None when they need more dims (or do not broadcast)."""
    rank = len(out_shape)
    if len(shapes) > 3 or 0 in out_shape or any(len(s) > rank for s in shapes):
        return None
    per_operand: list[list[int]] = []
    for shape in shapes:
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        strides, step = [0] * rank, 1
        for axis in reversed(range(rank)):
            if padded[axis] == out_shape[axis]:
                strides[axis] = step
            elif padded[axis] != 1:
                return None
            step *= padded[axis]
        per_operand.append(strides)
    merged: list[tuple[int, list[int]]] = []  # (size, stride per operand), outermost first
    for axis, size in enumerate(out_shape):
        strides = [s[axis] for s in per_operand]
        if size == 1:
            continue
        if merged and all(o == i * size for o, i in zip(merged[-1][1], strides, strict=True)):
            merged[-1] = (merged[-1][0] * size, strides)
        else:
            merged.append((size, strides))
    if len(merged) > 3:
        return None
    merged = [(1, [0] * len(shapes))] * (3 - len(merged)) + merged
    sizes = [size for size, _ in merged]
    missing = [0, 0, 0] * (3 - len(shapes))  # no condition operand: its strides are all 0
    strides = [s[j] for j in range(len(shapes)) for _, s in merged]  # operand by operand
    return np.array(sizes + missing + strides, dtype=np.int64)


def prepare_elementwise(
    op: str,
    shapes: list[tuple[int, ...]],
    out_shape: tuple[int, ...],
    shift_a: int,
    shift_b: int = 0,
    sign: int = 1,
    limit: int = 0,
) -> PreparedElementwise | None:
    """The C call of an add (``sign`` -1: sub), mul or where step on operands of these shapes
    (where: the condition first), or None where only numpy applies."""
    if (
        _fixed is None
        or not all(-_SHIFT_MAX <= s <= _SHIFT_MAX for s in (shift_a, shift_b))
        or sign not in (1, -1)
        or not 0 <= limit < 1 << 63
        or len(shapes) != (3 if op == "where" else 2)
    ):
        return None
    try:
        if np.broadcast_shapes(*shapes) != tuple(out_shape):
            return None  # numpy's result would have another shape: leave the error to it
    except ValueError:
        return None
    geometry = broadcast_geometry(shapes, out_shape)
    if geometry is None:
        return None
    return (EW_OPS[op], limit, shift_a, shift_b, sign, geometry), tuple(out_shape)


def run_elementwise(
    prepared: PreparedElementwise, operands: list[IntArray]
) -> tuple[IntArray, int]:
    """A prepared element-wise step on int64 operands: (out, clamped)."""
    args, out_shape = prepared
    out = np.empty(out_shape, dtype=np.int64)
    xs = [np.ascontiguousarray(x) for x in operands]
    return out, _fixed.elementwise(*args, out, *xs)


# ---- layer normalization (the numpy reference is ops.nonlinear.run_layernorm) -------------

# layernorm's C arguments after the rows: (gamma, beta, eps, beta_shift, shift, limit).
PreparedLayernorm = tuple[IntArray, IntArray, int, int, int, int]


def prepare_layernorm(
    gamma: IntArray, beta: IntArray, eps: int, beta_shift: int, shift: int, limit: int
) -> PreparedLayernorm | None:
    """The C arguments of a layernorm step, or None where only numpy applies."""
    if (
        _fixed is None
        or gamma.ndim != 1
        or beta.shape != gamma.shape
        or not (_int64(gamma) and _int64(beta))
        or not 0 <= beta_shift <= _SHIFT_MAX
        or not -_SHIFT_MAX <= shift <= _SHIFT_MAX
        or not 0 <= limit < 1 << 63
        or not -(1 << 63) <= eps < 1 << 63
    ):
        return None
    return np.ascontiguousarray(gamma), np.ascontiguousarray(beta), eps, beta_shift, shift, limit


def run_layernorm(prepared: PreparedLayernorm, rows: IntArray) -> tuple[IntArray, int] | None:
    """The layernorm of each row of an int64 (rows, n) array, saturated: (out, clamped), or
    None if a row's variance is outside the range where the C square root is exact."""
    src = np.ascontiguousarray(rows)
    out = np.empty(src.shape, dtype=np.int64)
    clamped = _fixed.layernorm(src, *prepared, out)
    return None if clamped < 0 else (out, clamped)
