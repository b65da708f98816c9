"""The C kernel of the element-wise steps (add/sub, mul, where) against their numpy kernels
(Hypothesis): on any broadcast of the operands, any shifts and limits, the planned kernel the
executor runs gives the integers and clamped count of ``saturate(KERNELS[op](...))``."""

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
from verinfer.runtime.program import Step

pytestmark = pytest.mark.skipif(
    fused._fixed is None, reason="verinfer.runtime._fixed did not build; pip install -e ."
)

VALUES = st.one_of(
    st.sampled_from([0, 1, -1, ACT_MAX, -ACT_MAX - 1, INT32_MAX, -(2**62), 2**63 - 1]),
    st.integers(-1000, 1000),
    st.integers(-(2**40), 2**40),
)
SHIFTS = st.one_of(st.integers(-4, 24), st.sampled_from([-63, -40, 40, 62, 63]))


def _attrs(op: str, draw: st.DrawFn) -> dict[str, Any]:
    if op == "mul":
        return {"shift": draw(SHIFTS)}
    attrs = {"shift_a": draw(SHIFTS), "shift_b": draw(SHIFTS)}
    return {**attrs, "sign_b": draw(st.sampled_from([1, -1]))} if op == "add" else attrs


@st.composite
def cases(draw: st.DrawFn) -> tuple[Step, Any, list[np.ndarray], int]:
    op = draw(st.sampled_from(["add", "mul", "where"]))
    n = 3 if op == "where" else 2
    shapes, out = draw(hnp.mutually_broadcastable_shapes(num_shapes=n, max_dims=5, max_side=4))
    args = [draw(hnp.arrays(np.int64, s, elements=VALUES)) for s in shapes]
    names = [f"x{i}" for i in range(n)]
    if draw(st.booleans()):  # an operand read twice, as Pow(x, 2) lowers to mul(x, x)
        names[-1], args[-1], shapes = names[0], args[0], (*shapes[:-1], shapes[0])
        out = np.broadcast_shapes(*shapes)
    tensors = {n: SimpleNamespace(shape=tuple(s)) for n, s in zip(names, shapes, strict=True)}
    tensors["y"] = SimpleNamespace(shape=tuple(out))
    program = SimpleNamespace(constants={}, tensors=tensors)
    step = Step(op, tuple(names), "y", _attrs(op, draw))
    return step, program, args, draw(st.sampled_from([0, 5, ACT_MAX, INT32_MAX]))


@settings(max_examples=600, deadline=None)
@given(cases())
def test_elementwise_matches_numpy(case: tuple[Step, Any, list[np.ndarray], int]) -> None:
    step, program, args, limit = case
    with np.errstate(over="ignore"):  # 0-d operands are numpy scalars, which warn on wrap
        want = saturate(KERNELS[step.op](step, args, program), limit)
    run = PLANNERS[step.op](step, program, limit)
    geometry = fused.broadcast_geometry(
        [program.tensors[n].shape for n in step.inputs], program.tensors["y"].shape
    )
    shifts = [v for k, v in step.attrs.items() if k.startswith("shift")]
    # C applies wherever the broadcast merges into 3 dims and the shifts are in range
    assert (run is not None) == (geometry is not None and all(abs(s) <= 63 for s in shifts))
    if run is None:
        return
    got = run(step, args, program, limit)
    assert got[0].dtype == np.int64 and got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


def test_broadcast_geometry_merges_what_it_can() -> None:
    """(B, H, S, S) + a (B, 1, 1, S) mask: 3 dims, the mask read at strides (S, 0, 1)."""
    geometry = fused.broadcast_geometry([(2, 3, 4, 4), (2, 1, 1, 4)], (2, 3, 4, 4))
    assert geometry is not None
    assert geometry.tolist() == [2, 12, 4, 0, 0, 0, 48, 4, 1, 4, 0, 1]
    # broadcast along 4 alternating axes cannot be 3 strided dims
    assert fused.broadcast_geometry([(2, 1, 2, 1), (1, 2, 1, 2)], (2, 2, 2, 2)) is None
    assert fused.broadcast_geometry([(2, 3), (4, 3)], (2, 3)) is None  # does not broadcast


@pytest.mark.parametrize(
    "geometry",
    [
        [1, 1, 7, 0, 0, 0, 0, 0, 1, 0, 0, 1],  # 7 values per row, operands of 6
        [2, 1, 3, 0, 0, 0, 4, 0, 1, 0, 0, 1],  # a's second row ends past its 6 values
        [1, 1, 6, 0, 0, 0, 0, 0, 2, 0, 0, 1],  # an inner stride of 2
        [1, 1, 6, 0, 0, 0, -1, 0, 1, 0, 0, 1],  # a negative stride
        [1, 1, 6, 0, 0, 1, 0, 0, 1, 0, 0, 1],  # a condition's stride for a two-operand op
        [3, 1, 2, 0, 0, 0, 2**62, 0, 1, 0, 0, 1],  # a stride whose offsets overflow int64
        [2**62 + 1, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # dims whose product wraps to 4
    ],
)
def test_c_call_refuses_a_geometry_that_reads_outside_the_operands(geometry: list[int]) -> None:
    a, b = np.arange(6, dtype=np.int64), np.arange(6, dtype=np.int64)
    wrapped = int(np.prod(geometry[:3], dtype=object)) % 2**64  # what int64 arithmetic gives
    dst = np.empty(wrapped, dtype=np.int64)
    with pytest.raises(ValueError, match="geometry"):
        fused._fixed.elementwise(0, ACT_MAX, 0, 0, 1, np.array(geometry), dst, a, b)
