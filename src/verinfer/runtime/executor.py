"""Run a Program: quantize inputs, execute every step in integers, commit the trace.

Each kernel returns int64 values; the executor alone saturates them to the output tensor's
range (reporting how many were clamped) and checks shapes, so no kernel can wrap silently.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

from verinfer.errors import ModelError
from verinfer.runtime import fused
from verinfer.runtime.commit import commit_list, keccak256, leaf_suffix, tensor_root
from verinfer.runtime.commit import native as native_commit
from verinfer.runtime.fixed import ACT_MAX, INT32_MAX, IntArray, dequantize, saturate
from verinfer.runtime.ops import FUSED, KERNELS, PLANNERS, RELU_FUSES_INTO, FusedKernel, Kernel
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
    # Each step output's tensor root and the trace root, once made (by the native committer
    # during the run, or by _commit on first use).
    _trace: tuple[list[bytes], bytes] | None = field(default=None, repr=False)

    @property
    def outputs_q(self) -> list[NDArray[np.int32]]:
        return [self.values[t.name].astype(np.int32) for t in self.program.outputs]

    @property
    def outputs(self) -> list[NDArray[np.float64]]:
        return [dequantize(self.values[t.name], t.scale) for t in self.program.outputs]

    def trace_tensors(self) -> list[Tensor]:
        """The committed tensors in order: each step's output. The inputs are not in the
        trace: the request commits to them (its input hash or CID)."""
        p = self.program
        return [p.tensors[s.output] for s in p.steps]

    @property
    def step_roots(self) -> list[str]:
        return ["0x" + r.hex() for r in self._commit()[0]]

    @property
    def trace_root(self) -> str:
        return "0x" + self._commit()[1].hex()

    def _commit(self) -> tuple[list[bytes], bytes]:
        """Each step output's tensor root, and the trace root over them (made once)."""
        if self._trace is not None:
            return self._trace
        plan = _plan(self.program)
        roots: list[bytes] = []
        for t, same in zip(self.trace_tensors(), plan.shared_roots, strict=True):
            roots.append(roots[same] if same is not None else _root(self.values[t.name]))
        leaves = [keccak256(r + sfx) for r, sfx in zip(roots, plan.leaf_suffixes, strict=True)]
        # the tensor_leaf of each, in a list; no step computes anything: nothing to commit
        root = commit_list(leaves) if leaves else bytes(32)
        self._trace = (roots, root)
        return self._trace


def _root(values: IntArray) -> bytes:
    return tensor_root(values.astype(np.int32))


# Tensors are hashed on a native worker thread (commit.native) while the next steps execute;
# the last one is hashed on the caller's thread, which has nothing else left to do. A BLAS
# whose idle threads busy-wait long after each call (OpenBLAS by default: 2**28 cycles, ~0.1
# s) would take the hasher's core for most of a run, so during a traced run of a model with
# large tensors such a library gets one thread. OpenBLAS with a short wait (verinfer sets
# OPENBLAS_THREAD_TIMEOUT when imported before numpy) keeps its threads and the OS shares the
# cores: MiniLM traced 83.7 -> 80.9 ms on two cores (BENCHMARKS.md). Exact either way.
_LARGE_VALUES = 16_384
_SHORT_WAIT = 18  # OPENBLAS_THREAD_TIMEOUT (log2 of the cycles) up to which BLAS keeps threads


def _waits_long(lib: Any) -> bool:
    """Whether a BLAS library's idle threads busy-wait long: all but an OpenBLAS that read an
    OPENBLAS_THREAD_TIMEOUT of at most _SHORT_WAIT when it loaded."""
    if lib.internal_api != "openblas":
        return True
    try:
        timeout = lib.dynlib.openblas_thread_timeout
    except AttributeError:  # an OpenBLAS too old to say
        return True
    timeout.restype = ctypes.c_uint
    return not 0 < timeout() <= _SHORT_WAIT


# The BLAS libraries that a traced run limits to one thread, found once: threadpoolctl's
# limit() context looks them up again on every call, which cost 7 us a run.
_THROTTLED_BLAS = [
    lib for lib in ThreadpoolController().select(user_api="blas").lib_controllers
    if _waits_long(lib)
]  # fmt: skip
# A run that commits at most this many values is hashed at its end, on the caller's thread,
# all tensors at once (native trace_batched): handing each small tensor to the worker costs
# more than hashing it, and together they fill the SIMD lanes (measured: BENCHMARKS.md).
_BATCHED_TRACE_VALUES = 2_048
# Steps whose output holds the same values in the same order as their first input, so the
# same packed words and the same tensor root (only the shape differs, bound by tensor_leaf).
_SAME_VALUES_OPS = frozenset({"reshape"})


# glibc malloc settings (mallopt parameters) that make freed large blocks reusable: every run
# allocates its tensors afresh, and by default glibc serves blocks over 128 KB with mmap (its
# adaptive threshold moves with the order of earlier allocations) and gives freed memory back
# to the kernel, so the next run takes a page fault per 4 KB: measured 23,000-25,000 per
# MiniLM run (+30% time) and 9,000 per traced transformer block at batch 64.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 512 << 20))
_malloc_tuned = False


def _keep_freed_memory() -> None:
    """Apply _MALLOC_SETTINGS once per process (a process-wide setting; no-op off glibc)."""
    global _malloc_tuned
    _malloc_tuned = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc (macOS, Windows)
        return
    for param, value in _MALLOC_SETTINGS:
        mallopt(param, value)


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
#  saturation limit, position in the trace of the tensor whose root it shares, if any)
_PlannedStep = tuple[
    Step, FusedKernel, tuple[tuple[str, IntArray | None], ...], tuple[int, ...], int, int | None
]


@dataclass(frozen=True)
class _Plan:
    """What ``execute`` needs per program, worked out once (cached on the Program)."""

    input_names: frozenset[str]
    large: bool  # some tensor is large enough that BLAS should leave a core to the hasher
    steps: tuple[_PlannedStep, ...]
    shared_roots: tuple[int | None, ...]  # per trace tensor, the earlier one with its root
    job_order: list[int]  # per trace tensor, its job in the native committer
    last_root: int  # the last trace tensor with a root of its own: hashed on the caller's thread
    leaf_suffixes: tuple[bytes, ...]  # per trace tensor, its shape and scale for tensor_leaf
    job_outputs: tuple[str, ...]  # the trace tensors with a root of their own, in job order
    batched: bool  # few values: the whole trace hashed at the end (trace_batched)


def _saturating(
    kernel: Kernel, step: Step, args: list[IntArray], program: Program, limit: int
) -> tuple[IntArray, int]:
    """A kernel with no fused form, then the saturation (bound with ``partial``: picklable)."""
    return saturate(kernel(step, args, program), limit)


def _plan(program: Program) -> _Plan:
    if program._plan:
        plan: _Plan = program._plan[0]
        return plan
    inputs = {t.name for t in program.inputs}
    position: dict[str, int] = {}  # step output -> its place in the trace
    shared: list[int | None] = []
    steps: list[_PlannedStep] = []
    for step in program.steps:
        out = program.tensors[step.output]
        limit = ACT_MAX if out.kind == "fx" else INT32_MAX
        planned = PLANNERS[step.op](step, program, limit) if step.op in PLANNERS else None
        run = planned or FUSED.get(step.op) or partial(_saturating, KERNELS[step.op])
        if step.attrs.get("relu") and step.op not in RELU_FUSES_INTO:
            raise ModelError(f"step {step.op} ({step.node}) cannot carry a fused Relu")
        ins = tuple(
            (n, None if n in position or n in inputs else program.const(n)) for n in step.inputs
        )
        same = position.get(step.inputs[0]) if step.op in _SAME_VALUES_OPS else None
        steps.append((step, run, ins, out.shape, limit, same))
        position[step.output] = len(shared)
        shared.append(same)
    own_roots = tuple(
        s.output for s, same in zip(program.steps, shared, strict=True) if same is None
    )
    plan = _Plan(
        input_names=frozenset(t.name for t in program.inputs),
        large=any(t.size >= _LARGE_VALUES for t in program.tensors.values()),
        steps=tuple(steps),
        shared_roots=tuple(shared),
        job_order=_job_order(shared),
        last_root=max((i for i, same in enumerate(shared) if same is None), default=-1),
        leaf_suffixes=tuple(
            leaf_suffix(program.tensors[s.output].shape, program.tensors[s.output].scale)
            for s in program.steps
        ),
        job_outputs=own_roots,
        batched=sum(program.tensors[name].size for name in own_roots) <= _BATCHED_TRACE_VALUES,
    )
    program._plan.append(plan)
    return plan


def _job_order(shared: list[int | None]) -> list[int]:
    """Per trace tensor, its job in the native committer: jobs are added in step order, one
    per tensor with a root of its own, and a tensor that shares a root shares its job."""
    order: list[int] = []
    jobs = 0
    for same in shared:
        if same is None:
            order.append(jobs)
            jobs += 1
        else:
            order.append(order[same])
    return order


def execute(
    program: Program, inputs: Mapping[str, Any] | NDArray[Any], *, trace: bool = True
) -> Execution:
    if not _malloc_tuned:
        _keep_freed_memory()
    plan = _plan(program)
    if not (trace and plan.large and native_commit is not None and _THROTTLED_BLAS):
        return _execute(program, plan, inputs, trace=trace)
    before = [lib.get_num_threads() for lib in _THROTTLED_BLAS]
    for lib in _THROTTLED_BLAS:
        lib.set_num_threads(1)
    try:
        return _execute(program, plan, inputs, trace=trace)
    finally:
        for lib, threads in zip(_THROTTLED_BLAS, before, strict=True):
            lib.set_num_threads(threads)


def _execute(
    program: Program, plan: _Plan, inputs: Mapping[str, Any] | NDArray[Any], *, trace: bool
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
    for tensor in program.inputs:
        if tensor.name not in given:
            raise RuntimeInputError(f"missing input {tensor.name!r}")
        values[tensor.name], clamped = quantize_input(tensor, given[tensor.name])
        if clamped:
            saturated[tensor.name] = clamped
    native = native_commit if trace else None
    committer = native.Committer() if native is not None and not plan.batched else None
    committed: tuple[list[bytes], bytes] | None = None
    for position, (step, run, ins, shape, limit, same) in enumerate(plan.steps):
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
        if committer is None or same is not None:
            continue
        # queued for the worker, but the last is hashed here: nothing is left to overlap it with
        last = position == plan.last_root
        commit = committer.hash if last else committer.add
        suffix = plan.leaf_suffixes[position]
        try:  # a kernel's output is C-contiguous int64, all but always
            commit(out, suffix)
        except ValueError:  # another layout or dtype: converted for the committer
            commit(np.ascontiguousarray(out, dtype=np.int64), suffix)
        if last:  # waits for the worker, before BLAS threads return
            committed = committer.trace(plan.job_order, plan.leaf_suffixes)
    if native is not None and plan.batched and plan.job_outputs:
        committed = _trace_batched(native, plan, [values[name] for name in plan.job_outputs])
    if saturated:
        log.warning("runtime.saturated", tensors=saturated)
    execution = Execution(program, values, saturated, _trace=committed)
    if trace:
        execution._commit()  # made above, or here without the native committer
    return execution


def _trace_batched(
    native: ModuleType, plan: _Plan, arrays: list[IntArray]
) -> tuple[list[bytes], bytes]:
    """Every step root and the trace root, hashed now, all tensors together."""
    try:  # kernel outputs are C-contiguous int64, all but always
        roots, root = native.trace_batched(arrays, plan.job_order, plan.leaf_suffixes)
    except ValueError:  # another layout or dtype: converted (values outside int32 raise again)
        converted = [np.ascontiguousarray(a, dtype=np.int64) for a in arrays]
        roots, root = native.trace_batched(converted, plan.job_order, plan.leaf_suffixes)
    return roots, root
