"""Calldata for ``OneStepVerifier.sol`` and ``OneStepVerifierExt.sol``: recompute one
element of one step on-chain.

In a dispute, bisection narrows a disagreement down to element ``j`` of step ``i``'s output.
:class:`OneStepProver` works out which operand values that element reads (a dense step's
input row and weight row, a conv window, a broadcast source ...), opens them with one
:class:`~verinfer.optimistic.multiproof.SparseProof` per operand tensor, and packs the step's
parameters, so that ``getattr(verifier.functions, call.function)(*call.args)`` returns the
element. Operand roots come from ``execution.step_roots`` (step outputs) or from
``tensor_root`` of the quantized values (request inputs, constants); binding them to
``traceRoot`` and ``weightsRoot`` is the dispute game's job. Ops of ``EXT_OPS`` (descriptor
op 10 and above: lookup tables, softmax / layer norm rows, shape ops ...) call
``OneStepVerifierExt.recompute(descriptor, j, openings)``, one opening per operand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from verinfer.errors import ProofError
from verinfer.optimistic.descriptors import (
    EXT_FIRST_OP,
    OP_UNSUPPORTED,
    StepDescriptor,
    build_descriptors,
)
from verinfer.optimistic.ext_reads import ext_reads
from verinfer.optimistic.multiproof import CommittedTensor, SparseProof
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program, Step

_BASE_OPS = (
    "dense",
    "matmul",
    "conv2d",
    "add",
    "mul",
    "relu",
    "max_pool",
    "avg_pool",
    "reduce_sum",
    "reduce_mean",
    "reshape",
)
# Recomputed by OneStepVerifierExt.recompute(descriptor, j, openings) (descriptor ops >= 10).
EXT_OPS = (
    "lut",
    "leaky_relu",
    "clip",
    "copy",
    "truncate",
    "to_bool",
    "where",
    "argmax",
    "softmax",
    "layernorm",
    "concat",
    "gather",
    "transpose",
    "slice",
    "expand",
    "tile",
)
SUPPORTED_OPS: tuple[str, ...] = (*_BASE_OPS, *EXT_OPS)
POOL_MODES = {"max": 0, "avg": 1, "avg_include_pad": 2}  # OneStepVerifier.POOL_*


class OneStepError(ProofError):
    """A one-step proof cannot be built for this request."""


class UnsupportedStepError(OneStepError):
    """The step's op (or its operand layout) has no on-chain one-step rule yet."""


class ElementIndexError(OneStepError, IndexError):
    """The step index or the element index is out of range."""


@dataclass(frozen=True)
class Opening:
    """A ``TensorProofs.Opening``: a tensor's root and size, and a sparse multiproof
    (empty for an absent operand, such as a missing bias)."""

    root: bytes
    n: int
    proof: SparseProof = field(default_factory=lambda: SparseProof((), (), ()))

    def abi(self) -> tuple[bytes, int, list[int], list[bytes], list[bytes]]:
        p = self.proof
        return (self.root, self.n, list(p.chunk_ids), list(p.chunks), list(p.siblings))


NO_OPERAND = Opening(bytes(32), 0)


@dataclass(frozen=True)
class OneStepCall:
    """One call of ``OneStepVerifier``: ``function(*head, j, *openings, *tail)``, or with
    ``packed`` (``OneStepVerifierExt.recompute(descriptor, j, openings)``) the openings as
    one list; the runtime's value of the element is ``expected``."""

    function: str
    head: tuple[Any, ...]
    j: int
    openings: tuple[Opening, ...]
    tail: tuple[Any, ...] = ()
    expected: int = 0
    packed: bool = False

    @property
    def args(self) -> tuple[Any, ...]:
        if self.packed:
            return (*self.head, self.j, [o.abi() for o in self.openings], *self.tail)
        return (*self.head, self.j, *(o.abi() for o in self.openings), *self.tail)

    def with_opening(self, position: int, opening: Opening) -> OneStepCall:
        """The same call with opening ``position`` replaced (tests tamper with proofs)."""
        openings = list(self.openings)
        openings[position] = opening
        return replace(self, openings=tuple(openings))


class OneStepProver:
    """Builds :class:`OneStepCall` s for the steps of one execution (tensor trees cached)."""

    def __init__(self, program: Program, execution: Execution) -> None:
        self.program = program
        self.execution = execution
        self._producer = {s.output: i for i, s in enumerate(program.steps)}
        self._trees: dict[str, CommittedTensor] = {}
        self._descriptors: list[StepDescriptor] | None = None

    @property
    def descriptors(self) -> list[StepDescriptor]:
        """The program's step descriptors (built once)."""
        if self._descriptors is None:
            self._descriptors = build_descriptors(self.program)
        return self._descriptors

    def prove(self, step_index: int, j: int) -> OneStepCall:
        """The call that recomputes element ``j`` (flat, C order) of step ``step_index``."""
        steps = self.program.steps
        if not 0 <= step_index < len(steps):
            raise ElementIndexError(f"step {step_index} is not in a program of {len(steps)}")
        step = steps[step_index]
        out = self.program.tensors[step.output]
        if not 0 <= j < out.size:
            raise ElementIndexError(
                f"element {j} is outside step {step_index}'s output of {out.size} values"
            )
        op = self.descriptors[step_index].op
        build = getattr(self, f"_{step.op}", None)
        call: OneStepCall
        if op >= EXT_FIRST_OP:
            call = self._ext(step_index, j)
        elif op != OP_UNSUPPORTED and build is not None:
            call = build(step, j)
        else:
            raise UnsupportedStepError(
                f"step {step_index} ({step.op}) has no one-step rule",
                hint=f"supported: {', '.join(SUPPORTED_OPS)}",
            )
        expected = int(self.execution.values[step.output].reshape(-1)[j])
        return replace(call, expected=expected)

    # ---- operands ------------------------------------------------------------------------

    def _values(self, name: str) -> np.ndarray[Any, Any]:
        if name in self.program.constants:
            return self.program.constants[name].values
        return self.execution.values[name]

    def _shape(self, name: str) -> tuple[int, ...]:
        if name in self.program.constants:
            return self.program.constants[name].shape
        return self.program.tensors[name].shape

    def _tree(self, name: str) -> CommittedTensor:
        if name not in self._trees:
            tree = CommittedTensor(self._values(name))
            if name in self._producer:  # a step output: its committed root in the trace
                committed = bytes.fromhex(self.execution.step_roots[self._producer[name]][2:])
                if committed != tree.root:
                    raise OneStepError(f"tensor {name} does not match its committed root")
            self._trees[name] = tree
        return self._trees[name]

    def open(self, name: str, indices: Sequence[int] | range) -> Opening:
        """An opening of the values at flat ``indices`` of tensor or constant ``name``."""
        tree = self._tree(name)
        return Opening(tree.root, tree.n, tree.prove(indices))

    def _bias(self, step: Step, o: int) -> Opening:
        return self.open(step.inputs[2], [o]) if len(step.inputs) > 2 else NO_OPERAND

    # ---- ops (each mirrors the function of the same name in OneStepVerifier.sol) ----------

    def _dense(self, step: Step, j: int) -> OneStepCall:
        n, k = self._shape(step.inputs[1])
        a = step.attrs
        r, o = divmod(j, n)
        params = (k, n, a["shift"], a["bias_shift"], len(step.inputs) > 2, bool(a.get("relu")))
        x = self.open(step.inputs[0], range(r * k, (r + 1) * k))
        w = self.open(step.inputs[1], range(o * k, (o + 1) * k))
        return OneStepCall("dense", (params,), j, (x, w, self._bias(step, o)))

    def _matmul(self, step: Step, j: int) -> OneStepCall:
        a_shape, b_shape = self._shape(step.inputs[0]), self._shape(step.inputs[1])
        if len(a_shape) < 2 or len(b_shape) < 2:
            raise UnsupportedStepError("matmul of vectors has no one-step rule")
        m, k = a_shape[-2:]
        n = b_shape[-1]
        batched = len(b_shape) > 2
        if batched and b_shape[:-2] != a_shape[:-2]:
            raise UnsupportedStepError(
                f"matmul of {a_shape} by {b_shape}: only equal batch dimensions, or a 2-D b"
            )
        if tuple(self._shape(step.output)) != (*a_shape[:-1], n):
            raise UnsupportedStepError("matmul broadcasting a's batch dimensions")
        batch, rem = divmod(j, m * n)
        i, c = divmod(rem, n)
        b0 = (batch * k * n if batched else 0) + c
        params = (m, k, n, batched, step.attrs["shift"], bool(step.attrs.get("relu")))
        a_open = self.open(step.inputs[0], range(batch * m * k + i * k, batch * m * k + i * k + k))
        b_open = self.open(step.inputs[1], range(b0, b0 + k * n, n))
        return OneStepCall("matmul", (params,), j, (a_open, b_open))

    def _conv2d(self, step: Step, j: int) -> OneStepCall:
        _, c, h, w = self._shape(step.inputs[0])
        m, cg, kh, kw = self._shape(step.inputs[1])
        _, _, oh, ow = self._shape(step.output)
        a = step.attrs
        (sh, sw), (dh, dw), (top, left) = a["strides"], a["dilations"], a["pads"][:2]
        g = a["group"]
        nb, mo, y, x0 = np.unravel_index(j, (self._shape(step.output)[0], m, oh, ow))
        base = (int(nb) * c + (int(mo) // (m // g)) * cg) * h * w
        window = [
            base + (ci * h + ih) * w + iw
            for ci in range(cg)
            for ih in (int(y) * sh + t * dh - top for t in range(kh))
            if 0 <= ih < h
            for iw in (int(x0) * sw + t * dw - left for t in range(kw))
            if 0 <= iw < w
        ]
        kk = cg * kh * kw
        params = (
            *(c, h, w, m, kh, kw, oh, ow),
            (sh, sw),
            (dh, dw),
            (top, left),
            g,
            a["shift"],
            a["bias_shift"],
            len(step.inputs) > 2,
            bool(a.get("relu")),
        )
        weights = self.open(step.inputs[1], range(int(mo) * kk, (int(mo) + 1) * kk))
        # A window of padding only reads no input value; any valid opening will do.
        x = self.open(step.inputs[0], window or [0])
        return OneStepCall("conv2d", (params,), j, (x, weights, self._bias(step, int(mo))))

    def _broadcast(self, step: Step, j: int, shift_a: int, shift_b: int) -> tuple[Any, ...]:
        out = self._shape(step.output)
        shapes, openings = [], []
        for name in step.inputs[:2]:
            s = self._shape(name)
            aligned = (1,) * (len(out) - len(s)) + tuple(s)
            coords = np.unravel_index(j, out) if out else ()
            src = tuple(0 if d == 1 else int(i) for d, i in zip(aligned, coords, strict=True))
            shapes.append(list(aligned))
            flat = int(np.ravel_multi_index(src, aligned)) if aligned else 0
            openings.append(self.open(name, [flat]))
        kind_int = self.program.tensors[step.output].kind == "int"
        params = (list(out), shapes[0], shapes[1], shift_a, shift_b, kind_int)
        return params, tuple(openings)

    def _add(self, step: Step, j: int) -> OneStepCall:
        a = step.attrs
        params, openings = self._broadcast(step, j, a["shift_a"], a["shift_b"])
        return OneStepCall("add", (params, a["sign_b"]), j, openings)

    def _mul(self, step: Step, j: int) -> OneStepCall:
        params, openings = self._broadcast(step, j, step.attrs["shift"], 0)
        return OneStepCall("mul", (params,), j, openings)

    def _relu(self, step: Step, j: int) -> OneStepCall:
        kind_int = self.program.tensors[step.output].kind == "int"
        return OneStepCall("relu", (), j, (self.open(step.inputs[0], [j]),), (kind_int,))

    def _pool(self, step: Step, j: int, mode: str) -> OneStepCall:
        x_shape, out_shape = self._shape(step.inputs[0]), self._shape(step.output)
        c, h, w = x_shape[1], (x_shape[2] if len(x_shape) == 4 else 1), x_shape[-1]
        oh, ow = (out_shape[2] if len(out_shape) == 4 else 1), out_shape[-1]
        a = step.attrs
        (kh, kw), (sh, sw), (dh, dw), (top, left) = (
            a["kernel"],
            a["strides"],
            a["dilations"],
            a["pads"][:2],
        )
        plane, rem = divmod(j, oh * ow)
        y, x0 = divmod(rem, ow)
        window = [
            (plane * h + ih) * w + iw
            for ih in (y * sh + t * dh - top for t in range(kh))
            if 0 <= ih < h
            for iw in (x0 * sw + t * dw - left for t in range(kw))
            if 0 <= iw < w
        ]
        kind_int = self.program.tensors[step.output].kind == "int"
        params = (
            *(c, h, w, oh, ow),
            (kh, kw),
            (sh, sw),
            (dh, dw),
            (top, left),
            POOL_MODES[mode],
            kind_int,
        )
        return OneStepCall("pool2d", (params,), j, (self.open(step.inputs[0], window),))

    def _max_pool(self, step: Step, j: int) -> OneStepCall:
        return self._pool(step, j, "max")

    def _avg_pool(self, step: Step, j: int) -> OneStepCall:
        return self._pool(step, j, "avg_include_pad" if step.attrs["count_include_pad"] else "avg")

    def _reduce(self, step: Step, j: int, mean: bool) -> OneStepCall:
        shape = self._shape(step.inputs[0])
        axes = tuple(step.attrs["axes"])
        if axes != tuple(range(len(shape) - len(axes), len(shape))):
            raise UnsupportedStepError(
                f"{step.op} over axes {axes} of {shape}: only trailing axes have a one-step rule"
            )
        n = int(np.prod(shape[len(shape) - len(axes) :], dtype=np.int64))
        kind_int = self.program.tensors[step.output].kind == "int"
        x = self.open(step.inputs[0], range(j * n, (j + 1) * n))
        return OneStepCall("reduceTrailing", (n, mean), j, (x,), (kind_int,))

    def _reduce_sum(self, step: Step, j: int) -> OneStepCall:
        return self._reduce(step, j, mean=False)

    def _reduce_mean(self, step: Step, j: int) -> OneStepCall:
        return self._reduce(step, j, mean=True)

    def _reshape(self, step: Step, j: int) -> OneStepCall:
        return OneStepCall("reshape", (), j, (self.open(step.inputs[0], [j]),))

    # ---- OneStepVerifierExt: the descriptor is the parameter --------------------------------

    def _ext(self, step_index: int, j: int) -> OneStepCall:
        step = self.program.steps[step_index]
        reads = ext_reads(self.program, step, j, self._values, self._shape)
        openings = tuple(
            self.open(name, r) if r else self._unopened(name)
            for name, r in zip(step.inputs, reads, strict=True)
        )
        d = self.descriptors[step_index]
        return OneStepCall("recompute", (d.abi(),), j, openings, packed=True)

    def _unopened(self, name: str) -> Opening:
        """Root and size only: an operand that the element does not read."""
        tree = self._tree(name)
        return Opening(tree.root, tree.n)
