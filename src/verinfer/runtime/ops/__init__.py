"""The op table: how each ONNX op lowers to integer steps, and how each step executes.

A *lowering* (compile time) turns one ONNX node into steps, choosing scales and proving
bounds; a *kernel* (run time) executes one step on int64 arrays. Modules register both with
the decorators below; importing this package imports every op module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from verinfer.runtime.fixed import IntArray

if TYPE_CHECKING:
    import onnx

    from verinfer.runtime.compiler import CompileContext
    from verinfer.runtime.program import Program, Step

Kernel = Callable[["Step", list[IntArray], "Program"], IntArray]
# A kernel fused with the executor's saturation: (step, args, program, limit) -> (out, clamped),
# exactly ``saturate(KERNELS[op](step, args, program), limit)``, then max(0, out) when the
# step carries a fused Relu (RELU_FUSES_INTO).
FusedKernel = Callable[["Step", list[IntArray], "Program", int], tuple[IntArray, int]]
Lowering = Callable[["onnx.NodeProto", "CompileContext"], None]
# A step's fused kernel specialized once per program, when the executor plans it: checks and
# argument conversions that depend only on the step and its static shapes are done there, not
# on every run (2-4 us per step of Python on small models). (step, program, limit) -> the
# step's FusedKernel, or None to use FUSED's.
Planner = Callable[["Step", "Program", int], FusedKernel | None]

KERNELS: dict[str, Kernel] = {}
FUSED: dict[str, FusedKernel] = {}
PLANNERS: dict[str, Planner] = {}
# Ops whose fused kernel applies a Relu the compiler folded into the step (attrs["relu"]).
RELU_FUSES_INTO = frozenset({"dense", "conv2d", "matmul"})
LOWERINGS: dict[str, Lowering] = {}


def kernel(name: str) -> Callable[[Kernel], Kernel]:
    def register(fn: Kernel) -> Kernel:
        KERNELS[name] = fn
        return fn

    return register


def fused(name: str) -> Callable[[FusedKernel], FusedKernel]:
    def register(fn: FusedKernel) -> FusedKernel:
        FUSED[name] = fn
        return fn

    return register


def planner(name: str) -> Callable[[Planner], Planner]:
    def register(fn: Planner) -> Planner:
        PLANNERS[name] = fn
        return fn

    return register


def lowering(*onnx_ops: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for op in onnx_ops:
            LOWERINGS[op] = fn
        return fn

    return register


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An ONNX node attribute as a Python value (ints, floats, lists, strings)."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


from verinfer.runtime.ops import (  # noqa: E402,F401  (registration side effects)
    elementwise,
    linear,
    nonlinear,
    pooling,
    shape,
)
