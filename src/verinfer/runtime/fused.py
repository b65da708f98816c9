"""Fused kernels: quantize, requantize (+ bias, shift, saturate) and relu+saturate in one pass.

Each is the composition of the primitives in ``verinfer.runtime.fixed``; the ``numpy_*``
functions below are that composition written out, and are the reference. When the optional C
extension ``_fixed`` is built, the public functions run it instead: same integers, same
clamped counts, a fraction of the per-call overhead (tests/unit/runtime/test_fused.py checks
the two agree). Without a C compiler the numpy versions are used.
"""

from __future__ import annotations

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
    acc: NDArray[Any], bias: IntArray | None, bias_shift: int, shift: int, limit: int
) -> tuple[IntArray, int]:
    """A dot product's accumulator (float64 holding exact integers, or int64) to the output
    tensor: add ``bias << bias_shift``, ``shr_round`` by ``shift``, saturate. (out, clamped)."""
    if (
        _fixed is None
        or not 0 <= bias_shift <= _SHIFT_MAX
        or not -_SHIFT_MAX <= shift <= _SHIFT_MAX
        or not 0 <= limit < 1 << 63
        or (bias is not None and (bias.ndim != 1 or acc.shape[-1:] != bias.shape))
        or acc.dtype.char not in "dlq"
        or (bias is not None and bias.dtype.char not in "lq")
    ):
        return numpy_requantize(acc, bias, bias_shift, shift, limit)
    acc = np.ascontiguousarray(acc)
    out = np.empty(acc.shape, dtype=np.int64)
    if bias is not None:
        bias = np.ascontiguousarray(bias)
    return out, _fixed.requantize(acc, bias, bias_shift, shift, limit, out)


def relu_saturate(x: IntArray, limit: int) -> tuple[IntArray, int]:
    """``saturate(max(x, 0), limit)``: (out, clamped)."""
    if _fixed is None or x.dtype.char not in "lq" or not 0 <= limit < 1 << 63:
        return numpy_relu_saturate(x, limit)
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, dtype=np.int64)
    return out, _fixed.relu_saturate(src, out, limit)
