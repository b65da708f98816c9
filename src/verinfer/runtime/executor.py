"""Run a Program: quantize inputs, execute every step in integers, commit the trace.

Each kernel returns int64 values; the executor alone saturates them to the output tensor's
range (reporting how many were clamped) and checks shapes, so no kernel can wrap silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

from verinfer.errors import ModelError
from verinfer.runtime import fused
from verinfer.runtime.commit import commit_list, tensor_leaf, tensor_root
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, IntArray, dequantize, saturate
from verinfer.runtime.ops import FUSED, KERNELS, FusedKernel, Kernel
from verinfer.runtime.program import Program, Step, Tensor

log = structlog.get_logger(__name__)


class RuntimeInputError(ModelError):
    """An input has the wrong name, shape, dtype, or holds NaN/inf."""


@dataclass
class Execution:
    """The result of one run: every tensor's integer values, outputs, and the trace root."""

    program: Program
    values: dict[str, IntArray]  # inputs and every step output, int64
    saturated: dict[str, int]  # tensor name -> how many values were clamped
    pending_roots: dict[str, Future[bytes]] = field(default_factory=dict, repr=False)

    @property
    def outputs_q(self) -> list[NDArray[np.int32]]:
        return [self.values[t.name].astype(np.int32) for t in self.program.outputs]

    @property
    def outputs(self) -> list[NDArray[np.float64]]:
        return [dequantize(self.values[t.name], t.scale) for t in self.program.outputs]

    def trace_tensors(self) -> list[Tensor]:
        """The committed tensors in order: the quantized inputs, then each step's output."""
        p = self.program
        return [*p.inputs, *(p.tensors[s.output] for s in p.steps)]

    @cached_property
    def step_roots(self) -> list[str]:
        return ["0x" + r.hex() for r in self._roots]

    @cached_property
    def _roots(self) -> list[bytes]:
        pending, self.pending_roots = self.pending_roots, {}
        return [
            pending[t.name].result() if t.name in pending else _root(self.values[t.name])
            for t in self.trace_tensors()
        ]

    @cached_property
    def trace_root(self) -> str:
        leaves = [
            tensor_leaf(root, t.shape, t.scale)
            for root, t in zip(self._roots, self.trace_tensors(), strict=True)
        ]
        return "0x" + commit_list(leaves).hex()


def _root(values: IntArray) -> bytes:
    return tensor_root(values.astype(np.int32))


# Large tensors are hashed on a second thread while the next steps execute: the keccak C
# extension releases the GIL. BLAS then gets one thread, leaving a core to the hasher; on two
# cores this costs MiniLM ~15% instead of ~110% (BENCHMARKS.md). Results are exact either way.
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verinfer-trace")
_BACKGROUND_MIN_VALUES = 16_384
_BLAS = ThreadpoolController()


def _as_mapping(program: Program, inputs: Mapping[str, Any] | NDArray[Any]) -> Mapping[str, Any]:
    if isinstance(inputs, Mapping):
        return inputs
    if len(program.inputs) != 1:
        names = ", ".join(t.name for t in program.inputs)
        raise RuntimeInputError(
            f"the model has {len(program.inputs)} inputs ({names}); a single array was given",
            hint="pass a dict {input name: array}",
        )
    return {program.inputs[0].name: inputs}


def quantize_input(tensor: Tensor, value: Any) -> tuple[IntArray, int]:
    """Check one input against its tensor and quantize it; returns (values, clamped count)."""
    arr = np.asarray(value)
    if arr.shape != tensor.shape:
        raise RuntimeInputError(
            f"input {tensor.name!r} has shape {arr.shape}, the program expects {tensor.shape}",
            hint="reshape the input, or compile the model for this shape (--batch)",
        )
    if tensor.kind == "int":
        if arr.dtype.kind not in "iub":
            raise RuntimeInputError(
                f"input {tensor.name!r} must hold integers, got {arr.dtype}",
                hint="pass token ids / indices as an integer array",
            )
        q = arr.astype(np.int64)
        if q.size and (q.max() > INT32_MAX or q.min() < -INT32_MAX):
            raise RuntimeInputError(f"input {tensor.name!r} has values outside int32")
        return q, 0
    if arr.dtype.kind not in "fiu":
        raise RuntimeInputError(f"input {tensor.name!r} must be numeric, got {arr.dtype}")
    try:  # one pass: floor(v * 2**scale + 1/2), saturation count, NaN/inf check
        return fused.quantize(arr, tensor.scale, ACT_MAX)
    except ValueError:
        raise RuntimeInputError(
            f"input {tensor.name!r} contains NaN or infinity",
            hint="clean the input: the fixed-point runtime has no NaN",
        ) from None


# (step, kernel fused with saturation, inputs as (name, constant or None), output shape,
#  saturation limit, whether the output is large enough to hash on the second thread)
_PlannedStep = tuple[
    Step, FusedKernel, tuple[tuple[str, IntArray | None], ...], tuple[int, ...], int, bool
]


@dataclass(frozen=True)
class _Plan:
    """What ``execute`` needs per program, worked out once (cached on the Program)."""

    input_names: frozenset[str]
    background: bool  # some tensor is large enough to hash on the second thread
    steps: tuple[_PlannedStep, ...]


def _saturating(
    kernel: Kernel, step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """A kernel with no fused form, then the saturation (bound with ``partial``: picklable)."""
    return saturate(kernel(step, args, program), limit)


def _plan(program: Program) -> _Plan:
    if program._plan:
        plan: _Plan = program._plan[0]
        return plan
    produced = {t.name for t in program.inputs}
    steps: list[_PlannedStep] = []
    for step in program.steps:
        out = program.tensors[step.output]
        run = FUSED.get(step.op) or partial(_saturating, KERNELS[step.op])
        ins = tuple((n, None if n in produced else program.const(n)) for n in step.inputs)
        limit = ACT_MAX if out.kind == "fx" else INT32_MAX
        steps.append((step, run, ins, out.shape, limit, out.size >= _BACKGROUND_MIN_VALUES))
        produced.add(step.output)
    plan = _Plan(
        input_names=frozenset(t.name for t in program.inputs),
        background=any(t.size >= _BACKGROUND_MIN_VALUES for t in program.tensors.values()),
        steps=tuple(steps),
    )
    program._plan.append(plan)
    return plan


def execute(
    program: Program, inputs: Mapping[str, Any] | NDArray[Any], *, trace: bool = True
) -> Execution:
    plan = _plan(program)
    if not (trace and plan.background):
        return _execute(program, plan, inputs, trace=trace, background=False)
    with _BLAS.limit(limits=1, user_api="blas"):
        return _execute(program, plan, inputs, trace=trace, background=True)


def _execute(
    program: Program,
    plan: _Plan,
    inputs: Mapping[str, Any] | NDArray[Any],
    *,
    trace: bool,
    background: bool,
) -> Execution:
    given = _as_mapping(program, inputs)
    if not plan.input_names.issuperset(given):
        unknown = set(given) - plan.input_names
        raise RuntimeInputError(
            f"unknown input(s): {', '.join(sorted(unknown))}",
            hint="inputs are: " + ", ".join(t.name for t in program.inputs),
        )
    values: dict[str, IntArray] = {}
    saturated: dict[str, int] = {}
    pending: dict[str, Future[bytes]] = {}
    for tensor in program.inputs:
        if tensor.name not in given:
            raise RuntimeInputError(f"missing input {tensor.name!r}")
        values[tensor.name], clamped = quantize_input(tensor, given[tensor.name])
        if clamped:
            saturated[tensor.name] = clamped
    for step, run, ins, shape, limit, large in plan.steps:
        args = [values[n] if c is None else c for n, c in ins]
        out, clamped = run(step, args, program, limit)
        if out.shape != shape:
            raise ModelError(
                f"step {step.op} ({step.node}) produced shape {out.shape}, "
                f"expected {shape}: a compiler bug"
            )
        if clamped:
            saturated[step.output] = clamped
        values[step.output] = out
        if background and large:
            pending[step.output] = _HASHER.submit(_root, out)
    if saturated:
        log.warning("runtime.saturated", tensors=saturated)
    execution = Execution(program, values, saturated, pending)
    if trace:
        _ = execution.trace_root  # joins the background hashing before BLAS threads return
    return execution
