"""The C dense kernel of ``_fixed`` (a small Gemm/MatMul with constant weights: product,
bias and requantization in one call) against the numpy rule it replaces (Hypothesis): every
integer and every clamped count identical, for each product variant the CPU has. Plus its
refusals: sums it cannot show exact in float64, and arguments that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv_kernel import each_conv_impl, same  # this directory is on sys.path (pytest)

from verinfer.runtime import fused
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, WEIGHT_MAX
from verinfer.runtime.ops import linear
from verinfer.runtime.testmodels import TEST_MODELS

pytestmark = pytest.mark.skipif(
    fused._fixed is None, reason="verinfer.runtime._fixed did not build; pip install -e ."
)


def numpy_dense(
    x: np.ndarray, w_t: np.ndarray, bias: np.ndarray | None, bias_shift: int, shift: int,
    limit: int, relu: bool,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """The rule: the exact integer product (int64: the test's values keep it exact), then
    requantize's numpy reference and a fused Relu (which counts what saturation clamped)."""
    acc = np.einsum("...k,kn->...n", x, w_t.astype(np.int64))
    return fused.then_relu(fused.numpy_requantize(acc, bias, bias_shift, shift, limit), relu)


def prepare(
    w_t: np.ndarray, bias: np.ndarray | None, bias_shift: int, shift: int, limit: int,
    relu: bool, x_shape: tuple[int, ...],
) -> fused.PreparedDense | None:  # fmt: skip
    """As plan_dense prepares a step: the requantization, then the kernel."""
    requant = fused.prepare_requantize((w_t.shape[1],), bias, bias_shift, shift, limit, relu)
    return None if requant is None else fused.prepare_small_dense(w_t, requant, x_shape)


@st.composite
def dense_cases(draw: st.DrawFn) -> tuple:
    lead = draw(st.lists(st.integers(1, 9), min_size=0, max_size=2))
    k, n = draw(st.integers(1, 70)), draw(st.integers(1, 40))
    # |x| * |w| * k < 2**52: the kernel's float64 path
    x_max = draw(st.sampled_from([1, 7, ACT_MAX]))
    w_max = draw(st.sampled_from([1, 255, WEIGHT_MAX]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.integers(-x_max, x_max + 1, (*lead, k))
    w_t = rng.integers(-w_max, w_max + 1, (k, n)).astype(np.float64)
    bias = rng.integers(-(2**31), 2**31, n) if draw(st.booleans()) else None
    bias_shift = draw(st.integers(0, 20))
    shift = draw(st.integers(-4, 40))
    limit = draw(st.sampled_from([0, 1, 1000, ACT_MAX, INT32_MAX]))
    return x, w_t, bias, bias_shift, shift, limit, draw(st.booleans())


@settings(max_examples=150, deadline=None)
@given(dense_cases())
def test_small_dense_matches_numpy(case: tuple) -> None:
    x, w_t, bias, bias_shift, shift, limit, relu = case
    prepared = prepare(w_t, bias, bias_shift, shift, limit, relu, x.shape)
    assert prepared is not None
    want = numpy_dense(x, w_t, bias, bias_shift, shift, limit, relu)
    for _ in each_conv_impl():
        same(fused.run_small_dense(prepared, x), want)


def test_sums_past_float64_are_refused_and_the_step_still_exact() -> None:
    """k * max|x| * max|w| >= 2**52: the kernel returns -2, run_small_dense None, and a
    planned dense step takes the BLAS path (whose result is exact here: int64 check)."""
    k, n = 64, 8
    x = np.full((4, k), 2**31 - 1, dtype=np.int64)
    w_t = np.full((k, n), 2**21, dtype=np.float64)  # 64 * 2**31 * 2**21 = 2**58
    prepared = prepare(w_t, None, 0, 40, 2**62, False, x.shape)
    assert prepared is not None
    assert fused.run_small_dense(prepared, x) is None
    out = np.empty((4, n), dtype=np.int64)
    w = prepared[0]
    assert fused._fixed.dense(x, w, None, 0, 40, 2**62, 0, out) == -2
    # one value over the bound is enough, wherever it is
    x_ok = np.ones((4, k), dtype=np.int64)
    assert fused.run_small_dense(prepared, x_ok) is not None
    x_ok[3, 63] = 2**31
    assert fused.run_small_dense(prepared, x_ok) is None
    w_nan = w.copy()
    w_nan[0, 0] = np.nan
    assert fused._fixed.dense(np.ones((4, k), np.int64), w_nan, None, 0, 0, 10, 0, out) == -2


def test_large_layers_and_odd_parameters_are_not_prepared() -> None:
    w_t = np.ones((384, 384))
    assert prepare(w_t, None, 0, 8, ACT_MAX, False, (128, 384)) is None
    assert prepare(w_t, None, 0, 8, ACT_MAX, False, (2, 384)) is not None
    assert prepare(w_t, None, 0, 99, ACT_MAX, False, (2, 384)) is None
    assert prepare(w_t, None, 0, 8, ACT_MAX, False, (2, 383)) is None


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "bias_len", "out_shape", "error"),
    [
        ((4, 8), (8, 15), None, (4, 10), ValueError),  # columns not padded to 16
        ((4, 8), (8, 32), None, (4, 10), ValueError),  # padded too far
        ((4, 8), (9, 16), None, (4, 10), ValueError),  # k differs
        ((4, 8), (8, 16), None, (5, 10), ValueError),  # rows differ
        ((4, 8), (8, 16), 9, (4, 10), ValueError),  # bias length
        ((4, 0), (0, 16), None, (4, 10), ValueError),  # k = 0
    ],
)
def test_dense_refuses_shapes_that_do_not_fit(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_len: int | None,
    out_shape: tuple[int, ...],
    error: type[Exception],
) -> None:
    bias = None if bias_len is None else np.zeros(bias_len, dtype=np.int64)
    out = np.empty(out_shape, dtype=np.int64)
    with pytest.raises(error):
        fused._fixed.dense(np.zeros(x_shape, np.int64), np.zeros(w_shape), bias, 0, 0, 1, 0, out)


def test_dense_refuses_other_dtypes_and_parameters() -> None:
    x, w, out = np.zeros((2, 4), np.int64), np.zeros((4, 16)), np.empty((2, 3), np.int64)
    with pytest.raises(TypeError):
        fused._fixed.dense(x.astype(np.float64), w, None, 0, 0, 1, 0, out)
    with pytest.raises(TypeError):
        fused._fixed.dense(x, w.astype(np.int64), None, 0, 0, 1, 0, out)
    with pytest.raises(TypeError):
        fused._fixed.dense(x, w, None, 0, 0, 1, 0, out.astype(np.float64))
    with pytest.raises(ValueError):
        fused._fixed.dense(x, w, None, 64, 0, 1, 0, out)  # bias_shift
    with pytest.raises(ValueError):
        fused._fixed.dense(x, w, None, 0, 64, 1, 0, out)  # shift
    with pytest.raises(ValueError):
        fused._fixed.dense(x, w, None, 0, 0, 1, 2, out)  # relu
    with pytest.raises(TypeError):
        fused._fixed.dense(x, w, None, 0, 0, 1, 0)


def test_the_test_models_dense_steps_run_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test model's dense steps are small: they run the C kernel, and every run equals
    the BLAS path's (the golden vectors pin the integers as well)."""
    calls = []

    def counted(prepared: fused.PreparedDense, x: np.ndarray) -> tuple[np.ndarray, int] | None:
        calls.append(x.shape)
        return fused.run_small_dense(prepared, x)

    for name in ("digits_mlp", "sigmoid_mlp", "transformer_block"):
        model = TEST_MODELS[name]
        monkeypatch.setattr(linear, "run_small_dense", counted)
        calls.clear()
        kernel = model.compile().run(model.feed())
        n_dense = sum(s.op == "dense" for s in kernel.program.steps)
        assert len(calls) == n_dense > 0
        monkeypatch.setattr(linear, "prepare_small_dense", lambda *args: None)
        blas = model.compile().run(model.feed())
        monkeypatch.undo()
        assert (kernel.step_roots, kernel.trace_root) == (blas.step_roots, blas.trace_root)
