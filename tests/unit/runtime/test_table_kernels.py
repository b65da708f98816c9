"""The C kernels of the table steps (lut, softmax) against their numpy reference (Hypothesis):
the planned kernels the executor runs must give the same integers and clamped counts as
``saturate(KERNELS[op](...))``, on any table, grid and input, and fall back where C does not
apply."""

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
