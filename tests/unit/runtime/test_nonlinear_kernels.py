"""The C kernels of the non-linear steps (lut, softmax, layernorm) against their numpy
reference (Hypothesis): the planned kernels the executor runs must give the same integers and
clamped counts as ``saturate(KERNELS[op](...))``, on any table, grid, parameters and input,
and fall back where C does not apply."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verinfer.runtime import fused
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, saturate
from verinfer.runtime.ops import KERNELS, PLANNERS
from verinfer.runtime.ops.nonlinear import SOFTMAX_EXP_DOMAIN, SOFTMAX_EXP_SCALE
from verinfer.runtime.program import Step
from verinfer.runtime.tables import build_table, table_spec

pytestmark = pytest.mark.skipif(
    fused._fixed is None, reason="verinfer.runtime._fixed did not build; pip install -e ."
)

LIMITS = st.sampled_from([0, 1, 1000, ACT_MAX, INT32_MAX])
EDGES = [0, 1, -1, ACT_MAX, -ACT_MAX - 1, INT32_MAX, -INT32_MAX - 1, 2**40, -(2**40)]


def _ints(bits: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(EDGES), st.integers(-1000, 1000), st.integers(-(2**bits), 2**bits)
    )


def _table_step(op: str, x: np.ndarray, table: np.ndarray, attrs: dict[str, Any]) -> Any:
    program = SimpleNamespace(
        tensors={"x": SimpleNamespace(shape=x.shape)},
        constants={"t": table},
        const=lambda name: table,
    )
    return Step(op, ("x", "t"), "y", attrs), program


def _both(op: str, x: np.ndarray, table: np.ndarray, attrs: dict[str, Any], limit: int) -> Any:
    """(planned C result, numpy reference result); the planner must have applied."""
    step, program = _table_step(op, x, table, attrs)
    run = PLANNERS[op](step, program, limit)
    assert run is not None
    got = run(step, [x, table], program, limit)
    with np.errstate(divide="ignore"):  # a row of zeros divides by 0 (giving 0, as C does)
        want = saturate(KERNELS[op](step, [x, table], program), limit)
    return got, want


def _same(got: tuple[np.ndarray, int], want: tuple[np.ndarray, int]) -> None:
    assert got[0].dtype == np.int64 and got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


@st.composite
def lut_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int]:
    intervals = draw(st.integers(1, 40))
    shift = draw(st.sampled_from([0, 1, 3, 7, 12, 20]))
    table = np.array(draw(st.lists(_ints(31), min_size=intervals + 1, max_size=intervals + 1)))
    lo = draw(st.integers(-(2**30), 2**30))
    span = intervals << shift
    near = st.integers(lo - 3 * span - 5, lo + 3 * span + 5)  # below, inside and above
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=7))
    x = draw(hnp.arrays(np.int64, shape, elements=st.one_of(near, _ints(40))))
    attrs = {"lo": lo, "shift": shift, "intervals": intervals}
    return x, table.astype(np.int64), attrs, draw(LIMITS)


@settings(max_examples=400, deadline=None)
@given(lut_cases())
def test_lut_matches_numpy(case: tuple[Any, ...]) -> None:
    x, table, attrs, limit = case
    _same(*_both("lut", x, table, attrs, limit))
    # a non-contiguous input is copied, with the same result
    _same(*_both("lut", np.asfortranarray(x[..., ::-1]), table, attrs, limit))


@st.composite
def softmax_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int]:
    intervals = draw(st.integers(1, 30))
    shift = draw(st.sampled_from([0, 2, 8]))
    big = st.integers(0, INT32_MAX)
    table = draw(st.lists(st.one_of(st.integers(0, 2**20), big), min_size=intervals + 1,
                          max_size=intervals + 1))  # fmt: skip
    span = intervals << shift
    lo = -span + draw(st.integers(-2, 2))  # x - max <= 0: the grid ends at or around 0
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    x = draw(hnp.arrays(np.int64, shape, elements=st.one_of(st.integers(-span - 9, 9), _ints(30))))
    axis = draw(st.integers(0, len(shape) - 1))
    out_scale = draw(st.sampled_from([0, 1, 21, 22, 30]))
    attrs = {"lo": lo, "shift": shift, "intervals": intervals, "axis": axis,
             "out_scale": out_scale}  # fmt: skip
    return x, np.array(table, dtype=np.int64), attrs, draw(LIMITS)


@settings(max_examples=400, deadline=None)
@given(softmax_cases())
def test_softmax_matches_numpy(case: tuple[Any, ...]) -> None:
    x, table, attrs, limit = case
    _same(*_both("softmax", x, table, attrs, limit))


def test_softmax_with_the_compilers_exp_table_matches_numpy() -> None:
    """The table lower_softmax builds, on wide rows of attention-like scores."""
    spec = table_spec("exp", 16, SOFTMAX_EXP_SCALE, SOFTMAX_EXP_DOMAIN, 0.0, grid_bits=8)
    table = np.array(build_table(spec), dtype=np.int64)
    x = np.random.default_rng(7).integers(-(2**21), 2**21, size=(3, 4, 128))
    for axis in (2, 1):
        attrs = {**spec.attrs(), "axis": axis, "out_scale": 22}
        got, want = _both("softmax", x, table, attrs, ACT_MAX)
        _same(got, want)
        assert got[0].sum(axis=axis).min() > (1 << 22) - 128  # each row sums to about one


@pytest.mark.parametrize(
    ("table", "out_scale"),
    [
        (np.array([5, -1, 3], dtype=np.int64), 22),  # a negative entry
        (np.array([5, 2**31, 3], dtype=np.int64), 22),  # an entry of 2**31
        (np.array([5, 4, 3], dtype=np.int64), 31),  # out_scale above 30
        (np.array([5, 4, 3, 2], dtype=np.int64), 22),  # intervals + 2 entries
    ],
)
def test_softmax_outside_the_c_kernels_range_runs_numpy(table: np.ndarray, out_scale: int) -> None:
    attrs = {"lo": -2, "shift": 0, "intervals": 2, "axis": 0, "out_scale": out_scale}
    step, program = _table_step("softmax", np.zeros(4, dtype=np.int64), table, attrs)
    assert PLANNERS["softmax"](step, program, ACT_MAX) is None


def test_softmax_c_call_declines_an_entry_outside_its_range() -> None:
    """A table the planner would refuse, given to the C call anyway: it checks the entries it
    reads (-1, then a ValueError), not the whole table on every call."""
    table = np.array([5, -1, 3], dtype=np.int64)
    prepared = (table, -2, 0, 2)  # what prepare_table would return, had it accepted it
    with pytest.raises(ValueError, match="outside"):
        fused.run_softmax(prepared, np.array([[0, -1]], dtype=np.int64), 22, ACT_MAX)
    out, clamped = fused.run_softmax(prepared, np.array([[0, -5]], dtype=np.int64), 22, ACT_MAX)
    assert out.tolist() == [[(3 << 22) // 8 + 0, (5 << 22) // 8]] and clamped == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros(3, np.int64), 0, 0, 3), "intervals \\+ 1"),  # table too short
        ((np.zeros(4, np.int64), 0, 63, 3), "shift"),
        ((np.zeros(4, np.int64), 0, 60, 3), "intervals << shift"),
        ((np.zeros(4, np.int64), 2**62, 0, 3), "lo"),
    ],
)
def test_lut_c_call_refuses_tables_it_cannot_index(args: tuple[Any, ...], message: str) -> None:
    x = np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match=message):
        fused._fixed.lut(x, *args, ACT_MAX, np.empty_like(x))


@st.composite
def layernorm_cases(draw: st.DrawFn) -> tuple[Step, Any, list[np.ndarray], int]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=9))
    axis = draw(st.integers(0, len(shape) - 1))
    n = int(np.prod(shape[axis:]))
    bits = draw(st.sampled_from([4, 12, 24, 31, 40]))  # 31 and 40: variances past 2**52
    x = draw(hnp.arrays(np.int64, shape, elements=st.integers(-(2**bits), 2**bits)))
    gamma = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(2**15), 2**15)))
    beta = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(2**31), 2**31)))
    attrs = {
        "axis": axis,
        "eps": draw(st.one_of(st.integers(0, 2**20), st.sampled_from([0, 1, 2**52 - 1]))),
        "beta_shift": draw(st.integers(0, 20)),
        "shift": draw(st.integers(-2, 40)),
    }
    consts = {"g": gamma, "b": beta}
    program = SimpleNamespace(
        tensors={"x": SimpleNamespace(shape=shape)}, constants=consts, const=consts.get
    )
    return Step("layernorm", ("x", "g", "b"), "y", attrs), program, [x, gamma, beta], draw(LIMITS)


@settings(max_examples=400, deadline=None)
@given(layernorm_cases())
def test_layernorm_matches_numpy(case: tuple[Step, Any, list[np.ndarray], int]) -> None:
    step, program, args, limit = case
    run = PLANNERS["layernorm"](step, program, limit)
    assert run is not None
    with np.errstate(invalid="ignore", over="ignore"):  # a wrapped variance: numpy's own
        want = saturate(KERNELS["layernorm"](step, args, program), limit)
        got = run(step, args, program, limit)  # which falls back to numpy past C's range
    _same(got, want)


def test_layernorm_c_call_declines_a_variance_past_its_exact_range() -> None:
    """Rows whose variance + eps reaches 2**52 are left to numpy (-1), not approximated."""
    gamma, beta = np.ones(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    x = np.array([[-(2**27), 2**27]], dtype=np.int64)  # variance 2**54
    prepared = fused.prepare_layernorm(gamma, beta, 0, 0, 0, INT32_MAX)
    assert prepared is not None
    assert fused.run_layernorm(prepared, x) is None
    assert fused.run_layernorm(prepared, x // 8) is not None  # variance 2**48


def test_layernorm_divides_exactly_past_the_float_range() -> None:
    """|x - mean| >= 2**33 (reachable only through a wrapped variance): numerators pass 2**53,
    where a float64 quotient would be off by more than one, so C divides in int64."""
    m = 200 << 32  # 2**39.6: a float64 quotient of m * 2**16 / 3 would be 2 off
    x = np.array([[0, 2 * m]], dtype=np.int64)  # mean m, d = -m and m: 2 m**2 wraps to 0
    gamma, beta = np.ones(2, dtype=np.int64), np.zeros(2, dtype=np.int64)
    consts = {"g": gamma, "b": beta}
    program = SimpleNamespace(
        tensors={"x": SimpleNamespace(shape=x.shape)}, constants=consts, const=consts.get
    )
    attrs = {"axis": 1, "eps": 9, "beta_shift": 0, "shift": 0}  # r = isqrt(0 + 9) = 3
    step = Step("layernorm", ("x", "g", "b"), "y", attrs)
    run = PLANNERS["layernorm"](step, program, 2**63 - 1)
    assert run is not None
    out, clamped = run(step, [x, gamma, beta], program, 2**63 - 1)
    expected = [((d << 16) + 1) // 3 for d in (-m, m)]  # div_round(d * 2**16, 3)
    assert out.tolist() == [expected] and clamped == 0
