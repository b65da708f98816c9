"""Data-movement ops: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Slice, Gather,
ArgMax, Expand, Tile (docs/runtime-spec.md, "Shape ops").

None of them does arithmetic except Concat, which brings its inputs to one scale with
``shr_round``; all keep their input's scale, kind and bound. Reshape-like ops emit a
``reshape`` copy step (never an alias: an alias would keep the old shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from verinfer.errors import ModelError
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, IntArray, quantize_real, scale_for, shr_round
from verinfer.runtime.ops import attr, fused, kernel, lowering
from verinfer.runtime.program import Kind, Program, Step, Tensor

if TYPE_CHECKING:
    from verinfer.runtime.compiler import CompileContext


class IndexOutOfRangeError(ModelError):
    """A Gather index (a token id, a position) is outside the table it indexes."""


# --- helpers shared with pooling.py -------------------------------------------------------


def const_ints(ctx: CompileContext, name: str, what: str) -> list[int]:
    """A constant integer input (axes, starts, shape ...) as a flat list of Python ints."""
    if not ctx.is_const(name):
        raise ctx.fail(f"the {what} input {name!r} must be a constant")
    value = ctx.const(name)
    if value.dtype.kind not in "iub":
        raise ctx.fail(f"the {what} input {name!r} must hold integers, got {value.dtype}")
    return [int(v) for v in value.reshape(-1)]


def optional_input(node: onnx.NodeProto, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def axes_arg(node: onnx.NodeProto, ctx: CompileContext, index: int) -> list[int] | None:
    """``axes`` from the attribute (older opsets) or from constant input ``index`` (newer)."""
    value = attr(node, "axes")
    if value is not None:
        return [int(v) for v in value]
    name = optional_input(node, index)
    return None if name is None else const_ints(ctx, name, "axes")


def norm_axis(ctx: CompileContext, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.fail(f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank


def norm_axes(ctx: CompileContext, axes: list[int], rank: int) -> tuple[int, ...]:
    """Axes made non-negative and sorted; repeated axes are refused."""
    out = sorted(norm_axis(ctx, a, rank) for a in axes)
    if len(set(out)) != len(out):
        raise ctx.fail(f"axes {axes} repeat an axis")
    return tuple(out)


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# --- reshape-like ops ---------------------------------------------------------------------


def emit_reshape(ctx: CompileContext, x: Tensor) -> None:
    """Copy ``x`` into the node output's static shape (Flatten, Reshape, Squeeze, Unsqueeze)."""
    shape = ctx.shape(ctx.node.output[0])
    if _size(shape) != x.size:
        raise ctx.fail(f"cannot reshape {x.shape} into {shape}")
    ctx.emit("reshape", [x.name], scale=x.scale, kind=x.kind, bound=x.bound, attrs={"shape": shape})


@lowering("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def lower_reshape(node: onnx.NodeProto, ctx: CompileContext) -> None:
    # The static output shape is authoritative: shape inference already applied the op's
    # axis / shape / axes arguments, so the lowering need not re-derive them.
    emit_reshape(ctx, ctx.tensor(node.input[0]))


@kernel("reshape")
def run_reshape(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return args[0].reshape(step.attrs["shape"]).copy()


@fused("reshape")
def run_reshape_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """Nothing to saturate: the values are the input's, of the same kind (emit_reshape), so
    already within the limit of that kind."""
    return run_reshape(step, args, program), 0


# --- Transpose ------------------------------------------------------------------------------


@lowering("Transpose")
def lower_transpose(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    rank = len(x.shape)
    perm = tuple(int(p) for p in attr(node, "perm", list(range(rank))[::-1]))
    if sorted(perm) != list(range(rank)):
        raise ctx.fail(f"perm {list(perm)} is not a permutation of the {rank} axes")
    ctx.emit("transpose", [x.name], scale=x.scale, kind=x.kind, bound=x.bound, attrs={"perm": perm})


@kernel("transpose")
def run_transpose(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return np.ascontiguousarray(np.transpose(args[0], step.attrs["perm"]))


# --- Concat ---------------------------------------------------------------------------------


@lowering("Concat")
def lower_concat(node: onnx.NodeProto, ctx: CompileContext) -> None:
    out_shape = ctx.shape(node.output[0])
    if attr(node, "axis") is None:
        raise ctx.fail("the axis attribute is missing")
    axis = norm_axis(ctx, int(attr(node, "axis")), len(out_shape))
    # Empty constant inputs add nothing (and an empty constant cannot be committed).
    names = [n for n in node.input if n and not (ctx.is_const(n) and ctx.const(n).size == 0)]
    acts = [ctx.tensor(n) for n in names if not ctx.is_const(n)]
    if not acts:
        raise ctx.fail("every input is a constant (it should have been folded)")
    kinds = {t.kind for t in acts}
    if len(kinds) > 1:
        raise ctx.fail("it mixes integer and fixed-point inputs")
    kind = acts[0].kind
    consts = {n: ctx.const(n) for n in names if ctx.is_const(n)}
    if kind == "int":
        out_scale = 0
        for n, c in consts.items():
            if c.dtype.kind == "f" and not np.all(c == np.round(c)):
                raise ctx.fail(f"constant input {n!r} is not integer-valued")
    else:
        # The coarsest activation scale, lowered further if a constant would not fit 24 bits.
        out_scale = min(t.scale for t in acts)
        for c in consts.values():
            c_max = float(np.max(np.abs(c.astype(np.float64)))) if c.size else 0.0
            out_scale = min(out_scale, scale_for(c_max, ACT_MAX))
    inputs: list[str] = []
    shifts: list[int] = []
    bound = 0
    for i, n in enumerate(names):
        if n in consts:
            c = consts[n]
            q = c.astype(np.int64) if kind == "int" else quantize_real(c, out_scale)
            inputs.append(ctx.add_const(f"input{i}", q, out_scale))
            shifts.append(0)
            bound = max(bound, ctx.constants[inputs[-1]].bound)
        else:
            t = ctx.tensor(n)
            shift = t.scale - out_scale
            inputs.append(t.name)
            shifts.append(shift)
            bound = max(bound, int(shr_round(np.array(t.bound, dtype=np.int64), shift)))
    ctx.emit(
        "concat",
        inputs,
        scale=out_scale,
        kind=kind,
        bound=bound,
        attrs={"axis": axis, "shifts": tuple(shifts)},
    )


@kernel("concat")
def run_concat(step: Step, args: list[IntArray], program: Program) -> IntArray:
    parts = [shr_round(a, s) for a, s in zip(args, step.attrs["shifts"], strict=True)]
    return np.concatenate(parts, axis=step.attrs["axis"])


# --- Slice ----------------------------------------------------------------------------------


def _slice_args(node: onnx.NodeProto, ctx: CompileContext) -> tuple[list[int], ...]:
    if attr(node, "starts") is not None:  # opset < 10: attributes
        starts = [int(v) for v in attr(node, "starts")]
        ends = [int(v) for v in attr(node, "ends")]
        axes_attr = attr(node, "axes")
        axes = [int(v) for v in axes_attr] if axes_attr is not None else list(range(len(starts)))
        return starts, ends, axes, [1] * len(starts)
    starts = const_ints(ctx, node.input[1], "starts")
    ends = const_ints(ctx, node.input[2], "ends")
    axes_name, steps_name = optional_input(node, 3), optional_input(node, 4)
    axes = list(range(len(starts))) if axes_name is None else const_ints(ctx, axes_name, "axes")
    steps = [1] * len(starts) if steps_name is None else const_ints(ctx, steps_name, "steps")
    return starts, ends, axes, steps


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


@lowering("Slice")
def lower_slice(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    rank = len(x.shape)
    starts, ends, axes, steps = _slice_args(node, ctx)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail("starts, ends, axes and steps have different lengths")
    norm_axes(ctx, axes, rank)  # refuses out-of-range and repeated axes
    full_starts, full_ends, full_steps = [0] * rank, list(x.shape), [1] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        a = axis % rank
        dim = x.shape[a]
        if step == 0:
            raise ctx.fail("a slice step is 0")
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = _clamp(start, 0, dim), _clamp(end, 0, dim)
        else:
            start, end = _clamp(start, 0, dim - 1), _clamp(end, -1, dim - 1)
        full_starts[a], full_ends[a], full_steps[a] = start, end, step
    shape = tuple(
        len(range(s, e, t)) for s, e, t in zip(full_starts, full_ends, full_steps, strict=True)
    )
    if shape != ctx.shape(node.output[0]):
        raise ctx.fail(
            f"the slice gives shape {shape}, shape inference says {ctx.shape(node.output[0])}"
        )
    if 0 in shape:
        raise ctx.fail(f"the slice is empty (shape {shape})")
    ctx.emit(
        "slice",
        [x.name],
        scale=x.scale,
        kind=x.kind,
        bound=x.bound,
        attrs={"starts": tuple(full_starts), "ends": tuple(full_ends), "steps": tuple(full_steps)},
    )


@kernel("slice")
def run_slice(step: Step, args: list[IntArray], program: Program) -> IntArray:
    a = step.attrs
    # end == -1 only occurs with a negative step and means "through index 0".
    index = tuple(
        slice(s, e if e >= 0 else None, t)
        for s, e, t in zip(a["starts"], a["ends"], a["steps"], strict=True)
    )
    return np.ascontiguousarray(args[0][index])


# --- Gather ---------------------------------------------------------------------------------


@lowering("Gather")
def lower_gather(node: onnx.NodeProto, ctx: CompileContext) -> None:
    data_name, idx_name = node.input[0], node.input[1]
    data_shape = ctx.shape(data_name)
    axis = norm_axis(ctx, int(attr(node, "axis", 0)), len(data_shape))
    dim = data_shape[axis]
    if ctx.is_const(data_name):  # a lookup table (embeddings) indexed by run-time integers
        idx = ctx.tensor(idx_name)
        if idx.kind != "int":
            raise ctx.fail("the indices of a constant table must be an integer tensor")
        table = ctx.const(data_name)
        kind: Kind
        if table.dtype.kind in "iub":
            q, scale, kind = table.astype(np.int64), 0, "int"
            if q.size and int(np.max(np.abs(q))) > INT32_MAX:
                raise ctx.fail("the integer table does not fit int32")
        else:
            t_max = float(np.max(np.abs(table.astype(np.float64)))) if table.size else 0.0
            scale, kind = scale_for(t_max, ACT_MAX), "fx"
            q = quantize_real(table, scale)
        data = ctx.add_const("table", q, scale)
        ctx.emit(
            "gather",
            [data, idx.name],
            scale=scale,
            kind=kind,
            bound=ctx.constants[data].bound,
            attrs={"axis": axis},
        )
        return
    x = ctx.tensor(data_name)
    if ctx.is_const(idx_name):
        values = const_ints(ctx, idx_name, "indices")
        bad = [v for v in values if not -dim <= v < dim]
        if bad:
            raise ctx.fail(f"index {bad[0]} is out of range for axis {axis} of size {dim}")
        indices = ctx.add_const("indices", ctx.const(idx_name).astype(np.int64), 0)
    else:
        idx = ctx.tensor(idx_name)
        if idx.kind != "int":
            raise ctx.fail("the indices must be an integer tensor")
        indices = idx.name
    ctx.emit(
        "gather", [x.name, indices], scale=x.scale, kind=x.kind, bound=x.bound, attrs={"axis": axis}
    )


@kernel("gather")
def run_gather(step: Step, args: list[IntArray], program: Program) -> IntArray:
    data, idx = args
    axis = step.attrs["axis"]
    dim = int(data.shape[axis])
    bad = (idx < -dim) | (idx >= dim)
    if np.any(bad):
        first = int(idx[bad].reshape(-1)[0])
        raise IndexOutOfRangeError(
            f"step gather ({step.node or '?'}): index {first} is out of range for axis {axis} "
            f"of size {dim} (valid indices are {-dim} .. {dim - 1})",
            hint="check the input ids / indices against the model's table size (vocabulary)",
        )
    taken: IntArray = np.take(data, np.where(idx < 0, idx + dim, idx), axis=axis)
    return taken


# --- ArgMax ---------------------------------------------------------------------------------


@lowering("ArgMax")
def lower_argmax(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    axis = norm_axis(ctx, int(attr(node, "axis", 0)), len(x.shape))
    ctx.emit(
        "argmax",
        [x.name],
        scale=0,
        kind="int",
        bound=max(x.shape[axis] - 1, 0),
        attrs={
            "axis": axis,
            "keepdims": int(attr(node, "keepdims", 1)),
            "select_last_index": int(attr(node, "select_last_index", 0)),
        },
    )


@kernel("argmax")
def run_argmax(step: Step, args: list[IntArray], program: Program) -> IntArray:
    x, axis = args[0], step.attrs["axis"]
    if step.attrs["select_last_index"]:
        idx = x.shape[axis] - 1 - np.argmax(np.flip(x, axis), axis=axis)
    else:
        idx = np.argmax(x, axis=axis)
    if step.attrs["keepdims"]:
        idx = np.expand_dims(idx, axis)
    return np.asarray(idx, dtype=np.int64)


# --- Expand, Tile ---------------------------------------------------------------------------


@lowering("Expand")
def lower_expand(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    const_ints(ctx, node.input[1], "shape")  # must be constant; the static output shape wins
    ctx.emit(
        "expand",
        [x.name],
        scale=x.scale,
        kind=x.kind,
        bound=x.bound,
        attrs={"shape": ctx.shape(node.output[0])},
    )


@kernel("expand")
def run_expand(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return np.broadcast_to(args[0], step.attrs["shape"]).copy()


@lowering("Tile")
def lower_tile(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    repeats = const_ints(ctx, node.input[1], "repeats")
    if len(repeats) != len(x.shape) or min(repeats, default=1) < 1:
        raise ctx.fail(f"repeats {repeats} must give one count >= 1 per axis of {x.shape}")
    ctx.emit(
        "tile",
        [x.name],
        scale=x.scale,
        kind=x.kind,
        bound=x.bound,
        attrs={"repeats": tuple(repeats)},
    )


@kernel("tile")
def run_tile(step: Step, args: list[IntArray], program: Program) -> IntArray:
    tiled: IntArray = np.tile(args[0], step.attrs["repeats"])
    return tiled
