"""Integer primitives of the fixed-point semantics (docs/runtime-spec.md, "Primitives").

Every tensor value is an integer ``q`` meaning ``q / 2**scale``. All arithmetic here is on
int64 numpy arrays; these few functions are the only places where rounding happens, so the
spec and a Solidity re-implementation have exactly one rule to copy for each.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from verinfer.errors import ModelError

IntArray = NDArray[np.int64]

ACT_BITS = 24  # activations: |q| <= 2**23 - 1
WEIGHT_BITS = 16  # weights and constants: |q| <= 2**15 - 1
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
WEIGHT_MAX = (1 << (WEIGHT_BITS - 1)) - 1
INT32_MAX = (1 << 31) - 1
EXACT_FLOAT = 1 << 53  # every integer below this is exact in float64
INT64_SAFE = 1 << 62


def shr_round(x: IntArray, k: int) -> IntArray:
    """Divide by 2**k rounding half up: ``(x + 2**(k-1)) >> k`` (arithmetic shift = floor).

    A negative ``k`` multiplies by ``2**-k`` exactly. This is Solidity's ``(x + h) >> k`` on
    int256, so a contract reproduces it bit for bit.
    """
    if k > 0:
        return (x + (1 << (k - 1))) >> k
    if k < 0:
        return x << (-k)
    return x


def rescale(x: IntArray, scale_from: int, scale_to: int) -> IntArray:
    """The same real values at another scale (rounded half up when precision is dropped)."""
    return shr_round(x, scale_from - scale_to)


def div_round(num: IntArray, den: IntArray | int) -> IntArray:
    """``floor((num + floor(den/2)) / den)`` for den > 0: division rounding half up."""
    return (num + np.floor_divide(den, 2)) // den


def saturate(x: IntArray, limit: int = ACT_MAX) -> tuple[IntArray, int]:
    """Clamp to ``[-limit, limit]``; returns the clamped array and how many values were clamped.

    Saturation is reported, never silent, and never wraps.
    """
    over = int(np.count_nonzero((x > limit) | (x < -limit)))
    if over:
        x = np.clip(x, -limit, limit)
    return x, over


def isqrt(x: IntArray) -> IntArray:
    """Floor square root of non-negative integers below 2**52, exactly."""
    r = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    r -= (r * r > x).astype(np.int64)
    r += ((r + 1) * (r + 1) <= x).astype(np.int64)
    return r


def quantize_real(values: NDArray[np.floating] | float, scale: int) -> IntArray:
    """``floor(v * 2**scale + 1/2)`` computed in float64 (exact: a power-of-two product)."""
    v = np.asarray(values, dtype=np.float64)
    return np.floor(np.ldexp(v, scale) + 0.5).astype(np.int64)


def scale_for(max_abs: float, limit: int) -> int:
    """The largest scale at which ``max_abs`` still fits ``limit`` (``q = v * 2**scale``)."""
    if not np.isfinite(max_abs):
        raise ModelError(f"a tensor's calibrated range is not finite ({max_abs})")
    if max_abs <= 0:
        return 16
    scale = int(np.floor(np.log2(limit / max_abs)))
    while max_abs * 2.0**scale > limit:  # guard against log2 rounding at exact powers of two
        scale -= 1
    return max(-32, min(scale, 40))


def dequantize(q: IntArray, scale: int) -> NDArray[np.float64]:
    return np.ldexp(q.astype(np.float64), -scale)
