"""Element-wise ops with numpy broadcasting: Add, Sub, Mul, Div (by a constant), Relu,
LeakyRelu, Clip, Where, Cast, Identity, Pow (square)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from verinfer.runtime import fused as c_kernels
from verinfer.runtime.fixed import (
    INT32_MAX,
    IntArray,
    quantize_real,
    rescale,
    saturate,
    shr_round,
)
from verinfer.runtime.fused import relu_saturate
from verinfer.runtime.ops import KERNELS, FusedKernel, attr, fused, kernel, lowering, planner
from verinfer.runtime.ops.linear import fold_bias
from verinfer.runtime.program import Program, Step

if TYPE_CHECKING:
    from verinfer.runtime.compiler import CompileContext

ALPHA_SCALE = 16  # LeakyRelu's slope as q / 2**16
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


def operand(ctx: CompileContext, name: str, out_scale: int, suffix: str) -> tuple[str, int]:
    """An Add/Where operand at the output scale: (step input name, shift to apply at run time).

    Constants are quantized directly at the output scale (shift 0); activations shift."""
    if ctx.is_const(name):
        return ctx.add_const(suffix, quantize_real(ctx.const(name), out_scale), out_scale), 0
    t = ctx.tensor(name)
    return t.name, t.scale - out_scale


@lowering("Add", "Sub")
def lower_add(node: onnx.NodeProto, ctx: CompileContext) -> None:
    if fold_bias(ctx, node):
        return
    out_scale = ctx.act_scale(node.output[0])
    a, shift_a = operand(ctx, node.input[0], out_scale, "a")
    b, shift_b = operand(ctx, node.input[1], out_scale, "b")
    ctx.emit(
        "add",
        [a, b],
        scale=out_scale,
        attrs={
            "shift_a": shift_a,
            "shift_b": shift_b,
            "sign_b": -1 if node.op_type == "Sub" else 1,
        },
    )


@kernel("add")
def run_add(step: Step, args: list[IntArray], program: Program) -> IntArray:
    a = shr_round(args[0], step.attrs["shift_a"])
    b = shr_round(args[1], step.attrs["shift_b"])
    return a + b if step.attrs["sign_b"] > 0 else a - b


def _planned(
    step: Step, program: Program, limit: int, shift_a: int, shift_b: int = 0, sign: int = 1
) -> FusedKernel | None:
    """The step's one-pass C call, its broadcast worked out once; None where only numpy
    applies (then the executor runs the kernel below and saturates)."""
    shapes = [
        program.constants[n].shape if n in program.constants else program.tensors[n].shape
        for n in step.inputs
    ]
    out_shape = program.tensors[step.output].shape
    prepared = c_kernels.prepare_elementwise(
        step.op, shapes, out_shape, shift_a, shift_b, sign, limit
    )
    if prepared is None:
        return None

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if any(x.dtype != np.int64 for x in args):
            return saturate(KERNELS[step.op](step, args, program), limit)
        return c_kernels.run_elementwise(prepared, args)

    return run


@planner("add")
def plan_add(step: Step, program: Program, limit: int) -> FusedKernel | None:
    a = step.attrs
    return _planned(step, program, limit, a["shift_a"], a["shift_b"], a["sign_b"])


def lower_scale_by(ctx: CompileContext, x_name: str, factor: np.ndarray) -> None:
    """x * constant: the constant as a 16-bit weight, then one rounding shift."""
    x = ctx.tensor(x_name)
    c_name, c_scale = ctx.add_weight("factor", factor)
    out_scale = ctx.act_scale(ctx.node.output[0])
    ctx.emit(
        "mul", [x.name, c_name], scale=out_scale, attrs={"shift": x.scale + c_scale - out_scale}
    )


@lowering("Mul")
def lower_mul(node: onnx.NodeProto, ctx: CompileContext) -> None:
    a, b = node.input
    if ctx.is_const(a):
        a, b = b, a
    if ctx.is_const(b):
        lower_scale_by(ctx, a, ctx.const(b).astype(np.float64))
        return
    x, y = ctx.tensor(a), ctx.tensor(b)
    out_scale = ctx.act_scale(node.output[0])
    ctx.emit(
        "mul", [x.name, y.name], scale=out_scale, attrs={"shift": x.scale + y.scale - out_scale}
    )


@kernel("mul")
def run_mul(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return shr_round(args[0] * args[1], step.attrs["shift"])


@planner("mul")
def plan_mul(step: Step, program: Program, limit: int) -> FusedKernel | None:
    return _planned(step, program, limit, step.attrs["shift"])


@lowering("Div")
def lower_div(node: onnx.NodeProto, ctx: CompileContext) -> None:
    if not ctx.is_const(node.input[1]):
        raise ctx.fail("division by a computed tensor is not supported (only by a constant)")
    divisor = ctx.const(node.input[1]).astype(np.float64)
    if np.any(divisor == 0):
        raise ctx.fail("division by zero")
    lower_scale_by(ctx, node.input[0], 1.0 / divisor)


@lowering("Pow")
def lower_pow(node: onnx.NodeProto, ctx: CompileContext) -> None:
    exponent = ctx.const(node.input[1]) if ctx.is_const(node.input[1]) else None
    if exponent is None or exponent.size != 1 or float(exponent.reshape(-1)[0]) != 2.0:
        raise ctx.fail("only Pow(x, 2) is supported")
    x = ctx.tensor(node.input[0])
    out_scale = ctx.act_scale(node.output[0])
    ctx.emit("mul", [x.name, x.name], scale=out_scale, attrs={"shift": 2 * x.scale - out_scale})


@lowering("Relu")
def lower_relu(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    if not ctx.fuse_relu(x.name):
        ctx.emit("relu", [x.name], scale=x.scale, bound=x.bound)


@kernel("relu")
def run_relu(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return np.maximum(args[0], 0)


@fused("relu")
def run_relu_saturated(
    step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    return relu_saturate(args[0], limit)


@lowering("LeakyRelu")
def lower_leaky_relu(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    alpha = int(quantize_real(float(attr(node, "alpha", 0.01)), ALPHA_SCALE))
    ctx.emit("leaky_relu", [x.name], scale=x.scale, bound=x.bound, attrs={"alpha": alpha})


@kernel("leaky_relu")
def run_leaky_relu(step: Step, args: list[IntArray], program: Program) -> IntArray:
    x = args[0]
    return np.where(x >= 0, x, shr_round(x * step.attrs["alpha"], ALPHA_SCALE))


@lowering("Clip")
def lower_clip(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    lo, hi = attr(node, "min"), attr(node, "max")
    if len(node.input) > 1 and node.input[1]:
        lo = float(ctx.const(node.input[1]))
    if len(node.input) > 2 and node.input[2]:
        hi = float(ctx.const(node.input[2]))
    q_lo = -INT32_MAX if lo is None else int(quantize_real(lo, x.scale))
    q_hi = INT32_MAX if hi is None else int(quantize_real(hi, x.scale))
    ctx.emit(
        "clip",
        [x.name],
        scale=x.scale,
        bound=min(x.bound, max(abs(q_lo), abs(q_hi))),
        attrs={"lo": q_lo, "hi": q_hi},
    )


@kernel("clip")
def run_clip(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return np.clip(args[0], step.attrs["lo"], step.attrs["hi"])


@lowering("Identity")
def lower_identity(node: onnx.NodeProto, ctx: CompileContext) -> None:
    ctx.alias(node.output[0], ctx.tensor(node.input[0]))


@lowering("Cast")
def lower_cast(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    to = int(attr(node, "to"))
    if to == onnx.TensorProto.BOOL:
        ctx.emit("to_bool", [x.name], scale=0, kind="int", bound=1)
    elif to in _FLOAT_TYPES:
        if x.kind == "fx":
            ctx.alias(node.output[0], x)
        else:  # integers become fixed-point values at scale 0
            ctx.emit("copy", [x.name], scale=0, bound=x.bound)
    elif x.kind == "int":
        ctx.alias(node.output[0], x)
    else:  # float -> integer truncates toward zero, as ONNX Cast does
        ctx.emit("truncate", [x.name], scale=0, kind="int", attrs={"shift": x.scale})


@kernel("to_bool")
def run_to_bool(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return (args[0] != 0).astype(np.int64)


@kernel("copy")
def run_copy(step: Step, args: list[IntArray], program: Program) -> IntArray:
    return args[0].copy()


@kernel("truncate")
def run_truncate(step: Step, args: list[IntArray], program: Program) -> IntArray:
    shift = step.attrs["shift"]
    if shift <= 0:
        return args[0] << -shift
    magnitude = np.abs(args[0]) >> shift
    return np.where(args[0] < 0, -magnitude, magnitude)


@lowering("Where")
def lower_where(node: onnx.NodeProto, ctx: CompileContext) -> None:
    cond_name = node.input[0]
    if ctx.is_const(cond_name):
        cond = ctx.add_const("cond", ctx.const(cond_name).astype(np.int64) != 0, 0)
    else:
        cond = ctx.tensor(cond_name).name
    out_scale = ctx.act_scale(node.output[0])
    a, shift_a = operand(ctx, node.input[1], out_scale, "a")
    b, shift_b = operand(ctx, node.input[2], out_scale, "b")
    ctx.emit("where", [cond, a, b], scale=out_scale, attrs={"shift_a": shift_a, "shift_b": shift_b})


@kernel("where")
def run_where(step: Step, args: list[IntArray], program: Program) -> IntArray:
    a = shr_round(args[1], step.attrs["shift_a"])
    b = shr_round(args[2], step.attrs["shift_b"])
    return np.where(args[0] != 0, a, b)


@planner("where")
def plan_where(step: Step, program: Program, limit: int) -> FusedKernel | None:
    return _planned(step, program, limit, step.attrs["shift_a"], step.attrs["shift_b"])


__all__ = ["operand", "lower_scale_by", "rescale"]
