"""Lookup tables with linear interpolation: the exact integer rule for every non-linearity.

Table entries are computed once with Python's ``decimal`` (software arithmetic, identical on
every machine) and rounded half-to-even, so two compilers always produce the same table and
the same program hash. At run time a lookup is pure integer arithmetic that Solidity can
repeat: find the interval, interpolate with one rounding shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from functools import cache

import numpy as np

from verinfer.runtime.fixed import IntArray, shr_round

PRECISION = 32  # decimal digits: far beyond the 2**-24 the entries keep (and deterministic anyway)
MAX_ENTRIES = 1 << 14


@cache
def _pi() -> Decimal:
    """π to PRECISION digits by Machin's formula (decimal has no built-in π)."""

    def atan_inv(n: int) -> Decimal:
        x, total, term, k = Decimal(1) / n, Decimal(0), Decimal(1) / n, 0
        while term != 0:
            total += term / (2 * k + 1) * (-1 if k % 2 else 1)
            term *= x * x
            k += 1
        return total

    with localcontext() as ctx:
        ctx.prec = PRECISION + 10
        return 16 * atan_inv(5) - 4 * atan_inv(239)


def _erf(x: Decimal) -> Decimal:
    """erf by the all-positive series 2/√π·e^(-x²)·Σ x·(2x²)^n/(2n+1)!! (no cancellation)."""
    if x < 0:
        return -_erf(-x)
    if x > 9:
        return Decimal(1)
    term, total, n = x, x, 0
    while term > Decimal(10) ** -(PRECISION + 5):
        n += 1
        term = term * 2 * x * x / (2 * n + 1)
        total += term
    return 2 / _pi().sqrt() * (-x * x).exp() * total


def _sigmoid(x: Decimal) -> Decimal:
    return 1 / (1 + (-x).exp())


def _tanh(x: Decimal) -> Decimal:
    e = (2 * x).exp()
    return (e - 1) / (e + 1)


def _phi(x: Decimal) -> Decimal:
    """Standard normal CDF: GELU(x) = x·Φ(x)."""
    return (1 + _erf(x / Decimal(2).sqrt())) / 2


def _phi_tanh(x: Decimal) -> Decimal:
    """The tanh approximation of Φ used by GELU(approximate="tanh")."""
    c = (2 / _pi()).sqrt()
    return (1 + _tanh(c * (x + Decimal("0.044715") * x * x * x))) / 2


FUNCTIONS: dict[str, Callable[[Decimal], Decimal]] = {
    "exp": lambda x: x.exp(),
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "erf": _erf,
    "phi": _phi,
    "phi_tanh": _phi_tanh,
}


@dataclass(frozen=True)
class TableSpec:
    """Entry j is f((lo + j·2**shift) / 2**in_scale) · 2**out_scale, for j = 0..intervals."""

    func: str
    in_scale: int
    out_scale: int
    lo: int  # first grid point, in input units
    shift: int  # log2 of the grid step in input units (0: one entry per input value)
    intervals: int

    def attrs(self) -> dict[str, int | str]:
        return {"lo": self.lo, "shift": self.shift, "intervals": self.intervals}


def table_spec(
    func: str, in_scale: int, out_scale: int, lo: float, hi: float, grid_bits: int = 7
) -> TableSpec:
    """A grid of step 2**-grid_bits (or one entry per input value if coarser) over [lo, hi]."""
    shift = max(in_scale - grid_bits, 0)
    lo_q = (int(np.floor(lo * 2.0**in_scale)) >> shift) << shift
    hi_q = int(np.ceil(hi * 2.0**in_scale))
    intervals = max(-(-(hi_q - lo_q) // (1 << shift)), 1)
    while intervals > MAX_ENTRIES:  # keep tables small: coarsen the grid
        shift += 1
        lo_q = (lo_q >> shift) << shift
        intervals = max(-(-(hi_q - lo_q) // (1 << shift)), 1)
    return TableSpec(func, in_scale, out_scale, lo_q, shift, intervals)


@cache
def build_table(spec: TableSpec) -> tuple[int, ...]:
    f = FUNCTIONS[spec.func]
    out: list[int] = []
    with localcontext() as ctx:
        ctx.prec = PRECISION
        unit = Decimal(2) ** -spec.in_scale
        scale_out = Decimal(2) ** spec.out_scale
        for j in range(spec.intervals + 1):
            x = (spec.lo + j * (1 << spec.shift)) * unit
            out.append(int((f(x) * scale_out).to_integral_value(rounding=ROUND_HALF_EVEN)))
    return tuple(out)


def lookup(x: IntArray, table: IntArray, lo: int, shift: int, intervals: int) -> IntArray:
    """T[i] + round((T[i+1] - T[i]) · frac / 2**shift); clamped to T[0] / T[last] outside."""
    u = x - lo
    last = intervals << shift
    inside = np.clip(u, 0, last - 1)
    i = inside >> shift
    frac = inside - (i << shift)
    left = table[i]
    y = left + shr_round((table[i + 1] - left) * frac, shift)
    y = np.where(u < 0, table[0], y)
    return np.where(u >= last, table[intervals], y)
