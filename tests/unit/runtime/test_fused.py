"""The C kernels of ``_fixed`` against their numpy reference in ``fused`` (Hypothesis), and
whole models run both ways: every integer, clamped count and trace root must be identical."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verinfer.runtime import fused
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, quantize_real, saturate
from verinfer.runtime.testmodels import TEST_MODELS

pytestmark = pytest.mark.skipif(
    fused._fixed is None, reason="verinfer.runtime._fixed did not build; pip install -e ."
)

LIMITS = st.sampled_from([0, 1, 7, 1000, ACT_MAX, INT32_MAX])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9)


def edge_ints(limit_bits: int = 40) -> st.SearchStrategy[int]:
    """Small numbers, numbers at and around the saturation limits, and large ones, +/-."""
    edges = [0, 1, -1, ACT_MAX, ACT_MAX + 1, -ACT_MAX, -ACT_MAX - 1, INT32_MAX, -INT32_MAX - 1]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(-1000, 1000),
        st.integers(-(2**limit_bits), 2**limit_bits),
    )


def int_arrays(shape: Any, bits: int = 40) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int64, shape, elements=edge_ints(bits))


@st.composite
def float_inputs(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    elements = st.one_of(
        st.floats(-1e3, 1e3, width=32),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.sampled_from([0.5, -0.5, 1.5, -1.5, -0.0, 2.0**-30, 8.0, -8.0, 7.99999]),
    )
    return draw(hnp.arrays(dtype, draw(SHAPES), elements=elements))


def same(got: tuple[np.ndarray, int], want: tuple[np.ndarray, int]) -> None:
    assert got[0].dtype == np.int64 and got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


@settings(max_examples=300, deadline=None)
@given(float_inputs(), st.integers(-20, 40), LIMITS)
def test_quantize_matches_numpy(values: np.ndarray, scale: int, limit: int) -> None:
    got = fused.quantize(values, scale, limit)
    same(got, fused.numpy_quantize(values, scale, limit))
    finite_big = np.abs(np.ldexp(values.astype(np.float64), scale)) < 2.0**62
    if finite_big.all():  # the executor's former formulation, where it is defined
        same(got, saturate(quantize_real(values, scale), limit))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_quantize_refuses_nan_and_infinity(bad: float, dtype: Any) -> None:
    values = np.array([0.0, 1.0, bad, 2.0], dtype=dtype)
    for fn in (fused.quantize, fused.numpy_quantize):
        with pytest.raises(ValueError, match="NaN"):
            fn(values, 8, ACT_MAX)


def test_quantize_saturates_huge_values_to_the_right_sign() -> None:
    values = np.array([1e300, -1e300, 3e38, -3e38, 8388607.4, -8388607.6])
    for fn in (fused.quantize, fused.numpy_quantize):
        q, clamped = fn(values, 0, ACT_MAX)
        assert q.tolist() == [ACT_MAX, -ACT_MAX, ACT_MAX, -ACT_MAX, ACT_MAX, -ACT_MAX]
        assert clamped == 5


@st.composite
def requant_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    shape = draw(SHAPES)
    acc = draw(int_arrays(shape, 52))
    if draw(st.booleans()):
        acc = acc.astype(np.float64)  # BLAS's exact-integer float64 accumulators
    bias = draw(st.none() | int_arrays((shape[-1],), 31))
    bias_shift = draw(st.integers(0, 20))
    shift = draw(st.integers(-10, 40))
    return acc, bias, bias_shift, shift, draw(LIMITS)


@settings(max_examples=400, deadline=None)
@given(requant_cases(), st.booleans())
def test_requantize_matches_numpy(case: tuple[Any, ...], relu: bool) -> None:
    """With ``relu`` (a Relu fused into the step), as saturate-then-Relu: the values below
    -limit count as clamped and become 0."""
    acc, bias, bias_shift, shift, limit = case
    want = fused.then_relu(fused.numpy_requantize(*case), relu)
    same(fused.requantize(*case, relu), want)
    # a non-contiguous accumulator takes the same path through a copy
    wide = np.repeat(acc, 2, axis=-1)[..., ::2]
    same(fused.requantize(wide, bias, bias_shift, shift, limit, relu), want)
    # and without the extension, numpy does the same
    saved, fused._fixed = fused._fixed, None
    try:
        same(fused.requantize(*case, relu), want)
    finally:
        fused._fixed = saved


@settings(max_examples=200, deadline=None)
@given(SHAPES.flatmap(lambda s: int_arrays(s, 62)), LIMITS)
def test_relu_saturate_matches_numpy(x: np.ndarray, limit: int) -> None:
    same(fused.relu_saturate(x, limit), fused.numpy_relu_saturate(x, limit))


@pytest.fixture
def numpy_only() -> Iterator[None]:
    saved = fused._fixed
    fused._fixed = None
    try:
        yield
    finally:
        fused._fixed = saved


def run_both(name: str, request: pytest.FixtureRequest, batch: int) -> tuple[Any, Any]:
    model = TEST_MODELS[name]
    feed = {k: np.concatenate([v] * batch) for k, v in model.feed().items()}
    program = model.compile(batch=batch * len(next(iter(model.feed().values()))))
    with_c = program.run(feed)
    request.getfixturevalue("numpy_only")
    assert fused.backend() == "numpy"
    without = model.compile(batch=batch * len(next(iter(model.feed().values())))).run(feed)
    return with_c, without


@pytest.mark.parametrize("name", sorted(TEST_MODELS))
def test_models_run_identically_without_the_extension(
    name: str, request: pytest.FixtureRequest
) -> None:
    with_c, without = run_both(name, request, 3)
    assert with_c.trace_root == without.trace_root
    assert with_c.saturated == without.saturated
    for key, value in with_c.values.items():
        np.testing.assert_array_equal(value, without.values[key], err_msg=key)


def test_saturation_is_counted_identically_without_the_extension(
    request: pytest.FixtureRequest,
) -> None:
    model = TEST_MODELS["digits_mlp"]
    program = model.compile()
    feed = {k: np.asarray(v) * 40.0 for k, v in model.feed().items()}  # far beyond calibration
    with_c = program.run(feed)
    assert with_c.saturated
    request.getfixturevalue("numpy_only")
    without = model.compile().run(feed)
    assert with_c.saturated == without.saturated
    assert with_c.trace_root == without.trace_root
