"""The rounding rules, checked against exact rational arithmetic (Hypothesis)."""

from __future__ import annotations

from fractions import Fraction
from math import floor, isqrt

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from verinfer.runtime.fixed import (
    ACT_MAX,
    WEIGHT_MAX,
    div_round,
    quantize_real,
    rescale,
    saturate,
    scale_for,
    shr_round,
)
from verinfer.runtime.fixed import (
    isqrt as vec_isqrt,
)

ints = st.integers(min_value=-(2**50), max_value=2**50)


@given(ints, st.integers(min_value=-8, max_value=40))
def test_shr_round_is_round_half_up(x: int, k: int) -> None:
    got = int(shr_round(np.array([x], dtype=np.int64), k)[0])
    assert got == floor(Fraction(x, 2**k) + Fraction(1, 2)) if k >= 0 else got == x * 2**-k


@given(ints, st.integers(min_value=1, max_value=2**20))
def test_div_round_is_round_half_up(num: int, den: int) -> None:
    assert int(div_round(np.array([num], dtype=np.int64), den)[0]) == floor(
        Fraction(num, den) + Fraction(1, 2)
    )


@given(st.integers(min_value=0, max_value=2**52 - 1))
def test_isqrt_is_exact_floor(x: int) -> None:
    assert int(vec_isqrt(np.array([x], dtype=np.int64))[0]) == isqrt(x)


@given(st.lists(st.integers(min_value=-(2**30), max_value=2**30), min_size=1, max_size=50))
def test_saturate_clamps_and_counts(values: list[int]) -> None:
    out, clamped = saturate(np.array(values, dtype=np.int64))
    assert clamped == sum(abs(v) > ACT_MAX for v in values)
    assert out.tolist() == [max(-ACT_MAX, min(ACT_MAX, v)) for v in values]


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(0, 30))
def test_quantize_real_rounds_half_up(v: float, scale: int) -> None:
    assert int(quantize_real(v, scale)) == floor(Fraction(v) * 2**scale + Fraction(1, 2))


@given(st.floats(min_value=1e-6, max_value=1e6))
def test_scale_for_is_the_largest_that_fits(m: float) -> None:
    for limit in (ACT_MAX, WEIGHT_MAX):
        s = scale_for(m, limit)
        if -32 < s < 40:
            assert m * 2.0**s <= limit < m * 2.0 ** (s + 1)


def test_rescale_up_is_exact_and_down_rounds() -> None:
    x = np.array([-3, -2, -1, 0, 1, 2, 3], dtype=np.int64)
    assert rescale(x, 4, 6).tolist() == (x * 4).tolist()
    assert rescale(x, 1, 0).tolist() == [-1, -1, 0, 0, 1, 1, 2]  # halves go up
