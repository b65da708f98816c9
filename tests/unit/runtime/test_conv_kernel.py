"""The C conv2d and pooling kernels of ``_fixed`` against the numpy kernels they replace
(Hypothesis): every integer and every clamped count must be identical, for any geometry.
Plus the argument checks of the C entry points."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from verinfer.runtime import fused
from verinfer.runtime.fixed import ACT_MAX, EXACT_FLOAT, INT32_MAX, WEIGHT_MAX, saturate
from verinfer.runtime.ops import FUSED, KERNELS, PLANNERS
from verinfer.runtime.ops.linear import conv2d_reference
from verinfer.runtime.ops.pooling import POOL_FILL, axis_counts
from verinfer.runtime.program import Step

pytestmark = pytest.mark.skipif(
    fused._fixed is None, reason="verinfer.runtime._fixed did not build; pip install -e ."
)

LIMITS = st.sampled_from([0, 1, 7, 1000, ACT_MAX, INT32_MAX])
SMALL_BATCH = st.integers(1, 3)


def ints(bound: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, -1, bound, -bound]), st.integers(-bound, bound))


def out_size(size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    return (size + p0 + p1 - (k - 1) * d - 1) // s + 1


def each_conv_impl() -> Iterator[str]:
    """Runs the caller's check once per conv product variant this CPU has (portable, AVX2,
    AVX-512): each must give the same integers. Restores the chosen one."""
    chosen = fused._fixed.get_conv_impl()
    try:
        for name in fused._fixed.conv_impls():
            fused._fixed.set_conv_impl(name)
            yield name
    finally:
        fused._fixed.set_conv_impl(chosen)


def same(got: tuple[np.ndarray, int] | None, want: tuple[np.ndarray, int]) -> None:
    assert got is not None
    assert got[0].dtype == np.int64 and got[0].shape == want[0].shape
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


# ---- conv2d ---------------------------------------------------------------------------------


@st.composite
def conv_cases(
    draw: st.DrawFn, batch: st.SearchStrategy[int] = SMALL_BATCH, depthwise: bool = False
) -> tuple[Any, ...]:
    group, cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    if depthwise or draw(st.booleans()):  # depthwise, the numpy reference's own branch
        cg, mg = 1, 1
    n, h, w = draw(batch), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    oh = out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    ow = out_size(w, kw, strides[1], dilations[1], pads[1], pads[3])
    assume(oh >= 1 and ow >= 1)
    # activations and weights as the compiler bounds them, or (int64 path in C) far larger
    x_bound, w_bound = draw(st.sampled_from([(ACT_MAX, WEIGHT_MAX), (1 << 30, 1 << 21)]))
    x = draw(hnp.arrays(np.int64, (n, group * cg, h, w), elements=ints(x_bound)))
    weight = draw(hnp.arrays(np.int64, (group * mg, cg, kh, kw), elements=ints(w_bound)))
    bias = draw(st.none() | hnp.arrays(np.int64, (group * mg,), elements=ints(INT32_MAX)))
    k = cg * kh * kw
    per_term = max(x_bound * w_bound, 1)  # ops.linear.chunk_for, for these bounds
    chunk = 0 if k * per_term + INT32_MAX < EXACT_FLOAT else (EXACT_FLOAT - 1) // per_term
    attrs = {
        "shift": draw(st.integers(-3, 40)),
        "bias_shift": draw(st.integers(0, 12)),
        "chunk": chunk,
        "strides": strides,
        "dilations": dilations,
        "pads": pads,
        "group": group,
    }
    if draw(st.booleans()):  # a Relu the compiler folded into the step
        attrs["relu"] = 1
    return x, weight, bias, attrs, draw(LIMITS)


def reference(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, attrs: dict[str, Any], limit: int
) -> tuple[np.ndarray, int]:
    """What the conv2d step computes: the numpy reference, saturated, then its fused Relu."""
    done = saturate(conv2d_reference(x, w, bias, attrs), limit)
    return fused.then_relu(done, bool(attrs.get("relu")))


def planned(step: Step, program: Any, args: list[np.ndarray], limit: int) -> tuple[Any, int]:
    """The step run by the kernel the executor plans for it (PLANNERS), which must exist."""
    run = PLANNERS[step.op](step, program, limit)
    assert run is not None
    return run(step, args, program, limit)


def _conv_step(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, attrs: dict[str, Any]
) -> tuple[Step, Any, list[np.ndarray]]:
    consts = {"w": w} if bias is None else {"w": w, "b": bias}
    program = SimpleNamespace(
        tensors={"x": SimpleNamespace(shape=x.shape)}, constants=consts, const=consts.get
    )
    return Step("conv2d", ("x", *consts), "y", attrs), program, [x, *consts.values()]


@settings(max_examples=400, deadline=None)
@given(conv_cases())
def test_conv2d_matches_numpy(case: tuple[Any, ...]) -> None:
    x, w, bias, attrs, limit = case
    want = reference(x, w, bias, attrs, limit)
    for _ in each_conv_impl():
        same(fused.conv2d(x, w, bias, attrs, limit), want)
    same(planned(*_conv_step(x, w, bias, attrs), limit), want)
    # non-contiguous inputs go through a copy, with the same result
    wide = np.repeat(x, 2, axis=-1)[..., ::2]
    same(fused.conv2d(wide, w, bias, attrs, limit), want)


@settings(max_examples=80, deadline=None)
@given(conv_cases(batch=st.sampled_from([16, 32, 47, 64, 100]), depthwise=True))
def test_depthwise_conv2d_over_a_batch_matches_numpy(case: tuple[Any, ...]) -> None:
    """A depthwise conv over a batch runs with the images in SIMD lanes (two passes and a
    partial one at 100 images with AVX-512); the blocked path below half a pass of lanes and
    with the portable variant."""
    x, w, bias, attrs, limit = case
    want = reference(x, w, bias, attrs, limit)
    for _ in each_conv_impl():
        same(fused.conv2d(x, w, bias, attrs, limit), want)


def test_conv_impls_can_be_chosen() -> None:
    names = fused._fixed.conv_impls()
    assert names[0] == "f64x2" and fused._fixed.get_conv_impl() == names[-1]  # the best
    with pytest.raises(ValueError, match="no usable conv implementation"):
        fused._fixed.set_conv_impl("f64x16")


def test_conv2d_int64_sums_wrap_like_numpy() -> None:
    """Beyond the compiler's bounds the C kernel sums in int64, wrapping as numpy does."""
    x = np.full((1, 2, 2, 2), 1 << 40, dtype=np.int64)
    w = np.full((1, 2, 2, 2), 1 << 22, dtype=np.int64)
    attrs = {"shift": 0, "bias_shift": 0, "strides": (1, 1), "dilations": (1, 1)}
    attrs |= {"pads": (0, 0, 0, 0), "group": 1}
    out, clamped = fused.conv2d(x, w, None, attrs, (1 << 63) - 1) or (None, 0)
    assert out is not None and clamped == 0
    assert out.item() == np.einsum("nchw,mchw->nm", x, w).item()  # 8 * 2**62 wraps to 0


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_conv2d_step_runs_numpy_without_the_extension(case: tuple[Any, ...]) -> None:
    x, w, bias, attrs, limit = case
    consts = {"w": w}
    program: Any = SimpleNamespace(const=lambda name, dtype="int64": consts[name])
    step = Step("conv2d", ("x", "w", "b") if bias is not None else ("x", "w"), "y", attrs)
    args = [x, w] if bias is None else [x, w, bias]
    want = fused.then_relu(
        saturate(KERNELS["conv2d"](step, args, program), limit), bool(attrs.get("relu"))
    )
    same(FUSED["conv2d"](step, args, program, limit), want)
    saved, fused._fixed = fused._fixed, None
    try:
        assert fused.conv2d(x, w, bias, attrs, limit) is None
        same(FUSED["conv2d"](step, args, program, limit), want)
    finally:
        fused._fixed = saved


# ---- pooling --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from([1, 4, 5, 8, 13, 16]), st.integers(1, 3))
def test_conv2d_with_unit_stride_rows_matches_numpy(data: st.DataObject, ow: int, kw: int) -> None:
    """With a horizontal stride of 1 the C kernel copies each output row's inputs as a run
    (constant-width code for 4 and 8 outputs, vector pieces and a tail for the others), over
    enough images for several column blocks and their padding columns."""
    n = data.draw(st.sampled_from([1, 3, 17, 64]))
    pl, pr = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))
    dw = data.draw(st.integers(1, 2))
    w = ow + (kw - 1) * dw - pl - pr
    assume(w >= 1)
    c, m, h = (
        data.draw(st.integers(1, 3)),
        data.draw(st.integers(1, 5)),
        data.draw(st.integers(1, 5)),
    )
    x = data.draw(hnp.arrays(np.int64, (n, c, h, w), elements=ints(ACT_MAX)))
    weight = data.draw(hnp.arrays(np.int64, (m, c, 3, kw), elements=ints(WEIGHT_MAX)))
    attrs = {
        "shift": data.draw(st.integers(0, 30)),
        "bias_shift": 0,
        "chunk": 0,
        "strides": (data.draw(st.integers(1, 2)), 1),
        "dilations": (1, dw),
        "pads": (1, pl, 1, pr),
        "group": 1,
    }
    want = reference(x, weight, None, attrs, ACT_MAX)
    assert want[0].shape[-1] == ow
    for _ in each_conv_impl():
        same(fused.conv2d(x, weight, None, attrs, ACT_MAX), want)


@st.composite
def pool_cases(draw: st.DrawFn) -> tuple[Any, ...]:
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(4))
    outs = []
    for i, size in enumerate((h, w)):
        out = out_size(size, kernel[i], strides[i], dilations[i], pads[i], pads[i + 2])
        assume(out >= 1)
        counts = axis_counts(size, kernel[i], strides[i], dilations[i], pads[i], out)
        assume(int(counts.min()) >= 1)  # the compiler refuses windows in the padding only
        outs.append(out)
    bound = draw(st.sampled_from([ACT_MAX, INT32_MAX, 1 << 52]))
    x = draw(hnp.arrays(np.int64, (n, c, h, w), elements=ints(bound)))
    geometry = {"kernel": kernel, "strides": strides, "dilations": dilations, "pads": pads}
    shape = (n, c, outs[0], outs[1])
    return x, geometry, shape, draw(LIMITS)


def _pool_step(
    op: str, attrs: dict[str, Any], shape: tuple[int, ...], x_shape: tuple[int, ...] = ()
) -> tuple[Step, Any]:
    shapes = {"y": shape, "x": x_shape}
    program = SimpleNamespace(tensors={k: SimpleNamespace(shape=v) for k, v in shapes.items()})
    return Step(op, ("x",), "y", attrs), program


@settings(max_examples=300, deadline=None)
@given(pool_cases(), st.sampled_from(["max_pool", "avg_pool", "avg_pool_include_pad"]))
def test_pooling_matches_numpy(case: tuple[Any, ...], kind: str) -> None:
    x, geometry, shape, limit = case
    op = "max_pool" if kind == "max_pool" else "avg_pool"
    attrs = geometry if op == "max_pool" else {**geometry, "count_include_pad": int("pad" in kind)}
    step, program = _pool_step(op, attrs, shape, x.shape)
    want = saturate(KERNELS[op](step, [x], program), limit)
    mode = {"max_pool": "max", "avg_pool": "avg", "avg_pool_include_pad": "avg_include_pad"}
    same(fused.pool2d(x, mode[kind], POOL_FILL if op == "max_pool" else 0, attrs, limit), want)
    same(FUSED[op](step, [x], program, limit), want)
    same(planned(step, program, [x], limit), want)


@settings(max_examples=200, deadline=None)
@given(
    st.data(),
    st.integers(1, 4),
    st.sampled_from([1, 2, 3, 4, 5, 8]),
    st.sampled_from(["max_pool", "avg_pool"]),
)
def test_pooling_windows_that_tile_the_planes_match_numpy(
    data: st.DataObject, kh: int, kw: int, op: str
) -> None:
    """Stride = kernel, no padding, planes a whole number of windows: the C kernel's
    contiguous path (constant-width code for rows of 4 and 8 values), over enough planes for
    several row blocks, and at values whose sums need the exact division."""
    oh, ow = data.draw(st.integers(1, 4)), data.draw(st.sampled_from([1, 2, 4, 8]))
    planes = data.draw(st.sampled_from([1, 5, 130, 600]))
    bound = data.draw(st.sampled_from([ACT_MAX, 1 << 52]))
    x = data.draw(hnp.arrays(np.int64, (1, planes, oh * kh, ow * kw), elements=ints(bound)))
    limit = data.draw(LIMITS)
    geometry = {"kernel": (kh, kw), "strides": (kh, kw), "dilations": (1, 1), "pads": (0,) * 4}
    attrs = geometry if op == "max_pool" else {**geometry, "count_include_pad": 0}
    step, program = _pool_step(op, attrs, (1, planes, oh, ow), x.shape)
    want = saturate(KERNELS[op](step, [x], program), limit)
    same(FUSED[op](step, [x], program, limit), want)
    same(planned(step, program, [x], limit), want)


def test_one_dimensional_pooling_runs_as_a_height_of_one() -> None:
    x = np.arange(-20, 20, dtype=np.int64).reshape(2, 2, 10)
    attrs = {"kernel": (1, 3), "strides": (1, 2), "dilations": (1, 1), "pads": (0, 1, 0, 1)}
    for op, extra in (("max_pool", {}), ("avg_pool", {"count_include_pad": 0})):
        step, program = _pool_step(op, attrs | extra, (2, 2, 5), x.shape)
        want = saturate(KERNELS[op](step, [x], program), 7)
        same(FUSED[op](step, [x], program, 7), want)
        same(planned(step, program, [x], 7), want)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.int64,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
        elements=ints(1 << 40),
    ),
    st.data(),
    LIMITS,
)
def test_reduce_mean_matches_numpy(x: np.ndarray, data: st.DataObject, limit: int) -> None:
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, x.ndim - 1), min_size=1))))
    keepdims = data.draw(st.sampled_from([0, 1]))
    shape = np.mean(x, axis=axes, keepdims=bool(keepdims)).shape
    step, program = _pool_step("reduce_mean", {"axes": axes, "keepdims": keepdims}, shape, x.shape)
    want = saturate(KERNELS["reduce_mean"](step, [x], program), limit)
    same(FUSED["reduce_mean"](step, [x], program, limit), want)
    trailing = axes == tuple(range(x.ndim - len(axes), x.ndim))
    assert (PLANNERS["reduce_mean"](step, program, limit) is not None) == trailing
    if trailing:  # a C pooling call planned once; other axes run FUSED's numpy path
        same(planned(step, program, [x], limit), want)


# ---- argument checks ------------------------------------------------------------------------


def _conv_args(**change: Any) -> list[Any]:
    args: dict[str, Any] = {
        "x": np.zeros((1, 2, 4, 4), dtype=np.int64),
        "w": np.zeros((3, 2, 3, 3), dtype=np.int64),
        "bias": np.zeros(3, dtype=np.int64),
        "dst": np.empty((1, 3, 2, 2), dtype=np.int64),
        "geometry": [1, 1, 1, 1, 0, 0, 0, 0, 1],  # strides, dilations, pads, group
        "bias_shift": 0,
        "shift": 0,
        "limit": ACT_MAX,
        "relu": 0,
    }
    args.update(change)
    return [args["x"], args["w"], args["bias"], args["dst"], *args["geometry"]] + [
        args["bias_shift"],
        args["shift"],
        args["limit"],
        args["relu"],
    ]


def test_conv2d_accepts_good_arguments() -> None:
    assert fused._fixed.conv2d(*_conv_args()) == 0
    assert fused._fixed.conv2d(*_conv_args(bias=None)) == 0


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"x": np.zeros((1, 2, 4, 4))}, TypeError, "x must be a 4-D int64 array"),
        ({"x": np.zeros((2, 4, 4), dtype=np.int64)}, TypeError, "x must be a 4-D int64"),
        ({"x": np.zeros((1, 2, 4, 8), dtype=np.int64)[..., ::2]}, ValueError, "contiguous"),
        ({"w": np.zeros((3, 2, 3, 3), dtype=np.int32)}, TypeError, "w must be a 4-D int64"),
        ({"bias": np.zeros(4, dtype=np.int64)}, ValueError, "one value per output channel"),
        ({"bias": np.zeros((3, 1), dtype=np.int64)}, TypeError, "bias must be a 1-D"),
        ({"dst": np.empty((1, 3, 3, 3), dtype=np.int64)}, ValueError, "dst shape"),
        ({"w": np.zeros((3, 1, 3, 3), dtype=np.int64)}, ValueError, "C/group"),
        ({"geometry": [1, 1, 1, 1, 0, 0, 0, 0, 2]}, ValueError, "C/group"),
        ({"geometry": [0, 1, 1, 1, 0, 0, 0, 0, 1]}, ValueError, "sh=0 is outside"),
        ({"geometry": [1, 1, 1, 1, -1, 0, 0, 0, 1]}, ValueError, "pt=-1 is outside"),
        ({"shift": 64}, ValueError, "shift=64 is outside"),
        ({"bias_shift": -1}, ValueError, "bias_shift=-1 is outside"),
        ({"limit": -1}, ValueError, "limit=-1 is outside"),
        ({"relu": 2}, ValueError, "relu=2 is outside"),
    ],
)
def test_conv2d_rejects_bad_arguments(change: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        fused._fixed.conv2d(*_conv_args(**change))


def test_conv2d_rejects_a_read_only_dst_and_a_wrong_call() -> None:
    dst = np.empty((1, 3, 2, 2), dtype=np.int64)
    dst.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        fused._fixed.conv2d(*_conv_args(dst=dst))
    with pytest.raises(TypeError, match="conv2d\\(x, w, bias, dst"):
        fused._fixed.conv2d(*_conv_args()[:-1])


def _pool_args(**change: Any) -> list[Any]:
    args: dict[str, Any] = {
        "x": np.zeros((1, 2, 4, 4), dtype=np.int64),
        "dst": np.empty((1, 2, 2, 2), dtype=np.int64),
        "mode": 0,
        "fill": POOL_FILL,
        "geometry": [2, 2, 2, 2, 1, 1, 0, 0, 0, 0],  # kernel, strides, dilations, pads
        "limit": ACT_MAX,
    }
    args.update(change)
    return [args["x"], args["dst"], args["mode"], args["fill"], *args["geometry"], args["limit"]]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"x": np.zeros((1, 2, 4, 4))}, TypeError, "x must be a 4-D int64 array"),
        ({"dst": np.empty((2, 2, 2), dtype=np.int64)}, TypeError, "dst must be a 4-D int64"),
        ({"dst": np.empty((1, 2, 3, 2), dtype=np.int64)}, ValueError, "dst shape"),
        ({"mode": 3}, ValueError, "mode=3 is outside"),
        ({"geometry": [0, 2, 2, 2, 1, 1, 0, 0, 0, 0]}, ValueError, "kh=0 is outside"),
        ({"geometry": [9, 2, 2, 2, 1, 1, 0, 0, 0, 0]}, ValueError, "dst shape"),
        ({"limit": -1}, ValueError, "limit=-1 is outside"),
    ],
)
def test_pool2d_rejects_bad_arguments(change: dict[str, Any], error: type, match: str) -> None:
    assert fused._fixed.pool2d(*_pool_args()) == 0
    with pytest.raises(error, match=match):
        fused._fixed.pool2d(*_pool_args(**change))
    with pytest.raises(TypeError, match="pool2d\\(x, dst, mode"):
        fused._fixed.pool2d(*_pool_args()[:-1])
