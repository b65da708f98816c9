"""Non-linear ops as exact integer rules: table ops (Sigmoid, Tanh, Erf, Exp, Gelu), Softmax
and LayerNormalization (docs/runtime-spec.md gives each rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx

from verinfer.runtime import fused as c_kernels
from verinfer.runtime.fixed import (
    ACT_MAX,
    INT32_MAX,
    INT64_SAFE,
    IntArray,
    div_round,
    isqrt,
    quantize_real,
    saturate,
    scale_for,
    shr_round,
)
from verinfer.runtime.ops import FusedKernel, attr, kernel, lowering, planner
from verinfer.runtime.program import Program, Step
from verinfer.runtime.tables import build_table, lookup, table_spec

if TYPE_CHECKING:
    from verinfer.runtime.compiler import CompileContext

# Domains outside which each function is flat to far below one output unit.
_DOMAINS = {
    "sigmoid": (-16.0, 16.0),
    "tanh": (-8.0, 8.0),
    "erf": (-6.0, 6.0),
    "phi": (-8.0, 8.0),
    "phi_tanh": (-8.0, 8.0),
}
SOFTMAX_EXP_SCALE = 20  # exp(x - max) in [0, 1] as q / 2**20
SOFTMAX_EXP_DOMAIN = -24.0  # exp(-24) < 2**-34: below one unit
NORM_SCALE = 16  # layer norm's normalized values (x - mean) / std as q / 2**16


def emit_table(
    ctx: CompileContext,
    func: str,
    x_name: str,
    out_scale: int,
    domain: tuple[float, float],
    output: str | None = None,
    grid_bits: int = 7,
) -> str:
    """A lookup step ``func(x)``; the table is a committed constant."""
    x = ctx.tensor(x_name)
    spec = table_spec(func, x.scale, out_scale, domain[0], domain[1], grid_bits)
    table = ctx.add_const(f"table_{func}", np.array(build_table(spec), np.int64), out_scale)
    bound = int(np.max(np.abs(ctx.constants[table].values)))
    name = output or ctx.node.output[0]
    ctx.emit(
        "lut",
        [x.name, table],
        scale=out_scale,
        bound=bound,
        attrs=spec.attrs(),
        output=name,
        shape=ctx.shape(x_name) if output else None,
    )
    return name


@kernel("lut")
def run_lut(step: Step, args: list[IntArray], program: Program) -> IntArray:
    a = step.attrs
    return lookup(args[0], args[1], a["lo"], a["shift"], a["intervals"])


def _prepared_table(step: Step, program: Program, softmax: bool) -> c_kernels.PreparedTable | None:
    a = step.attrs
    if step.inputs[1] not in program.constants:
        return None
    table = program.const(step.inputs[1])
    scale = a["out_scale"] if softmax else None
    return c_kernels.prepare_table(table, a["lo"], a["shift"], a["intervals"], scale)


@planner("lut")
def plan_lut(step: Step, program: Program, limit: int) -> FusedKernel | None:
    """The lookup and its saturation in one C pass, the table checked once."""
    prepared = _prepared_table(step, program, softmax=False)
    if prepared is None:
        return None

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if args[0].dtype != np.int64:
            return saturate(run_lut(step, args, program), limit)
        return c_kernels.run_lut(prepared, args[0], limit)

    return run


@lowering("Sigmoid", "Tanh", "Erf")
def lower_bounded(node: onnx.NodeProto, ctx: CompileContext) -> None:
    func = node.op_type.lower()
    emit_table(ctx, func, node.input[0], ctx.act_scale(node.output[0]), _DOMAINS[func])


@lowering("Exp")
def lower_exp(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    reach = min(ctx.ranges.get(node.input[0], 1.0) * 2.0, 40.0)  # calibrated, with headroom
    emit_table(ctx, "exp", x.name, ctx.act_scale(node.output[0]), (max(-reach, -32.0), reach))


@lowering("Gelu")
def lower_gelu(node: onnx.NodeProto, ctx: CompileContext) -> None:
    """GELU(x) = x·Φ(x): Φ from a table, then one exact product."""
    approximate = attr(node, "approximate", "none")
    func = {"none": "phi", "tanh": "phi_tanh"}.get(approximate)
    if func is None:
        raise ctx.fail(f"approximate={approximate!r} is not supported")
    x = ctx.tensor(node.input[0])
    phi_scale = scale_for(1.0, ACT_MAX)
    phi = emit_table(ctx, func, x.name, phi_scale, _DOMAINS[func], output=f"{node.output[0]}::phi")
    out_scale = ctx.act_scale(node.output[0])
    ctx.emit(
        "mul", [x.name, phi], scale=out_scale, attrs={"shift": x.scale + phi_scale - out_scale}
    )


@lowering("Softmax")
def lower_softmax(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    rank = len(x.shape)
    axis = int(attr(node, "axis", -1)) % rank
    spec = table_spec("exp", x.scale, SOFTMAX_EXP_SCALE, SOFTMAX_EXP_DOMAIN, 0.0, grid_bits=8)
    table = ctx.add_const("table_exp", np.array(build_table(spec), np.int64), SOFTMAX_EXP_SCALE)
    out_scale = scale_for(1.0, ACT_MAX)
    n = x.shape[axis]
    if n * (1 << SOFTMAX_EXP_SCALE) << out_scale >= INT64_SAFE:
        raise ctx.fail(f"softmax over {n} values could overflow int64")
    ctx.emit(
        "softmax",
        [x.name, table],
        scale=out_scale,
        bound=1 << out_scale,
        attrs={**spec.attrs(), "axis": axis, "out_scale": out_scale},
    )


@kernel("softmax")
def run_softmax(step: Step, args: list[IntArray], program: Program) -> IntArray:
    """e = exp_table(x - max); out = round(e · 2**out_scale / Σe) along the axis."""
    a = step.attrs
    x = np.moveaxis(args[0], a["axis"], -1)
    d = x - x.max(axis=-1, keepdims=True)
    e = lookup(d, args[1], a["lo"], a["shift"], a["intervals"])
    total = e.sum(axis=-1, keepdims=True)  # >= exp(0) = 2**20 > 0: the max is always there
    out = div_round(e << a["out_scale"], total)
    return np.ascontiguousarray(np.moveaxis(out, -1, a["axis"]))


@planner("softmax")
def plan_softmax(step: Step, program: Program, limit: int) -> FusedKernel | None:
    """Each row's softmax in one C pass (the axis moved last first, if it is not)."""
    prepared = _prepared_table(step, program, softmax=True)
    shape = program.tensors[step.inputs[0]].shape
    axis, out_scale = step.attrs["axis"], step.attrs["out_scale"]
    if prepared is None or shape[axis] < 1:
        return None
    last = axis == len(shape) - 1

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        if args[0].dtype != np.int64:
            return saturate(run_softmax(step, args, program), limit)
        x = args[0] if last else np.moveaxis(args[0], axis, -1)
        out, clamped = c_kernels.run_softmax(prepared, x.reshape(-1, x.shape[-1]), out_scale, limit)
        out = out.reshape(x.shape)
        return (out if last else np.ascontiguousarray(np.moveaxis(out, -1, axis))), clamped

    return run


@lowering("LayerNormalization")
def lower_layernorm(node: onnx.NodeProto, ctx: CompileContext) -> None:
    x = ctx.tensor(node.input[0])
    rank = len(x.shape)
    axis = int(attr(node, "axis", -1)) % rank
    n = int(np.prod(x.shape[axis:]))
    if n * (2 * x.bound + 1) ** 2 >= INT64_SAFE:
        raise ctx.fail(f"the variance of {n} values of up to {x.bound} could overflow int64")
    eps = float(attr(node, "epsilon", 1e-5))
    eps_q = int(quantize_real(eps, 2 * x.scale)) if 2 * x.scale < 62 else INT32_MAX
    gamma = ctx.const(node.input[1]).astype(np.float64).reshape(-1)
    beta = (
        ctx.const(node.input[2]).astype(np.float64).reshape(-1)
        if len(node.input) > 2 and node.input[2]
        else np.zeros_like(gamma)
    )
    g_name, g_scale = ctx.add_weight("gamma", np.broadcast_to(gamma, (n,)))
    acc_scale = NORM_SCALE + g_scale
    b_scale = min(acc_scale, scale_for(float(np.max(np.abs(beta))), INT32_MAX // 2))
    b_name = ctx.add_const("beta", quantize_real(np.broadcast_to(beta, (n,)), b_scale), b_scale)
    out_scale = ctx.act_scale(node.output[0])
    ctx.emit(
        "layernorm",
        [x.name, g_name, b_name],
        scale=out_scale,
        attrs={
            "axis": axis,
            "eps": eps_q,
            "beta_shift": acc_scale - b_scale,
            "shift": acc_scale - out_scale,
        },
    )


@kernel("layernorm")
def run_layernorm(step: Step, args: list[IntArray], program: Program) -> IntArray:
    """mean = round(Σx/n); var = round(Σ(x-mean)²/n); r = max(isqrt(var + eps), 1);
    norm = round((x-mean)·2**16 / r); y = round((norm·γ + β·2**beta_shift) / 2**shift)."""
    a = step.attrs
    x = args[0]
    shape = x.shape
    rows = x.reshape(int(np.prod(shape[: a["axis"]], dtype=np.int64)), -1)
    n = rows.shape[1]
    mean = div_round(rows.sum(axis=1, keepdims=True), n)
    d = rows - mean
    var = div_round((d * d).sum(axis=1, keepdims=True), n)
    r = np.maximum(isqrt(var + a["eps"]), 1)
    norm = div_round(d << NORM_SCALE, r)
    y = norm * args[1] + (args[2] << a["beta_shift"])
    return shr_round(y, a["shift"]).reshape(shape)


@planner("layernorm")
def plan_layernorm(step: Step, program: Program, limit: int) -> FusedKernel | None:
    """Row by row in C, gamma and beta checked once; numpy for a call whose variance the C
    square root cannot take exactly (which the compiler's bounds rule out)."""
    a = step.attrs
    shape = program.tensors[step.inputs[0]].shape
    rows = int(np.prod(shape[: a["axis"]], dtype=np.int64))
    n = int(np.prod(shape[a["axis"] :], dtype=np.int64))
    if not all(name in program.constants for name in step.inputs[1:]) or rows < 1 or n < 1:
        return None
    gamma, beta = program.const(step.inputs[1]), program.const(step.inputs[2])
    if gamma.shape != (n,):
        return None
    prepared = c_kernels.prepare_layernorm(
        gamma, beta, a["eps"], a["beta_shift"], a["shift"], limit
    )
    if prepared is None:
        return None

    def run(step: Step, args: list[IntArray], program: Program, limit: int) -> tuple[IntArray, int]:
        x = args[0]
        done = (
            c_kernels.run_layernorm(prepared, x.reshape(rows, n)) if x.dtype == np.int64 else None
        )
        if done is None:
            return saturate(run_layernorm(step, args, program), limit)
        return done[0].reshape(x.shape), done[1]

    return run
