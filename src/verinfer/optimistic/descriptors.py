"""Step descriptors: what the dispute game knows about each step of a program.

One :class:`StepDescriptor` per program step, in step order; ``abi.encode`` of it (the
Solidity struct ``StepDescriptors.Descriptor``) is hashed into a leaf, and
``steps_root = commit_list(leaves)`` is recorded with the model. The exact encoding is in
``docs/optimistic.md`` ("Step descriptors"). A step whose op (or operand layout) has no
on-chain rule gets ``OP_UNSUPPORTED``, so the root is always defined; a dispute on such a
step cannot be resolved on-chain (the challenger's last move reverts, so it times out and
the claimer wins): :func:`unsupported_steps` lets a registry refuse such models for
optimistic mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_abi.abi import encode

from verinfer.runtime.commit import commit_list, keccak256
from verinfer.runtime.program import Program, Step

KIND_INPUT, KIND_STEP, KIND_CONST = 0, 1, 2
OP_UNSUPPORTED = 0
EXT_FIRST_OP = 10  # ops from here on are recomputed by OneStepVerifierExt
OP_IDS = {
    "dense": 1,
    "matmul": 2,
    "conv2d": 3,
    "add": 4,
    "mul": 5,
    "relu": 6,
    "max_pool": 7,
    "avg_pool": 7,
    "reduce_sum": 8,
    "reduce_mean": 8,
    "reshape": 9,
    # 10 and above: OneStepVerifierExt, which reads the descriptor itself
    "lut": 10,
    "leaky_relu": 11,
    "clip": 12,
    "copy": 13,  # the casts: attrs [mode, shift]
    "truncate": 13,
    "to_bool": 13,
    "where": 14,
    "argmax": 15,
    "reduce_axes": 16,  # reduce_sum / reduce_mean over inner (non-trailing) axes
    "softmax": 17,
    "layernorm": 18,
    "concat": 19,
    "gather": 20,
    "transpose": 21,
    "slice": 22,
    "expand": 23,
    "tile": 24,
}
CAST_COPY, CAST_TRUNCATE, CAST_BOOL = 0, 1, 2
DESCRIPTOR_ABI = "(uint8,bool,bool,int32,uint32[],int32,(uint8,uint32,uint32[],int32)[],int256[])"
POOL_MAX, POOL_AVG, POOL_AVG_INCLUDE_PAD = 0, 1, 2


@dataclass(frozen=True)
class Operand:
    """``StepDescriptors.Operand``: a request input, an earlier step's output or a constant."""

    kind: int
    index: int
    shape: tuple[int, ...]
    scale: int

    def abi(self) -> tuple[int, int, list[int], int]:
        return (self.kind, self.index, list(self.shape), self.scale)


@dataclass(frozen=True)
class StepDescriptor:
    """``StepDescriptors.Descriptor`` of one step."""

    op: int
    relu: bool
    int_out: bool
    output: int  # index among the program's outputs, or -1
    shape: tuple[int, ...]
    scale: int
    operands: tuple[Operand, ...]
    attrs: tuple[int, ...]

    def abi(self) -> tuple[Any, ...]:
        return (
            self.op,
            self.relu,
            self.int_out,
            self.output,
            list(self.shape),
            self.scale,
            [o.abi() for o in self.operands],
            list(self.attrs),
        )

    def encode(self) -> bytes:
        """``abi.encode(descriptor)``."""
        return encode([DESCRIPTOR_ABI], [self.abi()])

    @property
    def leaf(self) -> bytes:
        """``keccak256(abi.encode(descriptor))``, its leaf in ``stepsRoot``."""
        return keccak256(self.encode())


def build_descriptors(program: Program) -> list[StepDescriptor]:
    """One descriptor per step of ``program``, in step order."""
    producer = {s.output: i for i, s in enumerate(program.steps)}
    inputs = {t.name: i for i, t in enumerate(program.inputs)}
    constants = {name: i for i, name in enumerate(program.constants)}
    outputs = {t.name: i for i, t in enumerate(program.outputs)}

    def operand(name: str) -> Operand:
        if name in constants:
            c = program.constants[name]
            return Operand(KIND_CONST, constants[name], c.shape, c.scale)
        t = program.tensors[name]
        if name in inputs:
            return Operand(KIND_INPUT, inputs[name], t.shape, t.scale)
        return Operand(KIND_STEP, producer[name], t.shape, t.scale)

    out = []
    for step in program.steps:
        t = program.tensors[step.output]
        operands = tuple(operand(n) for n in step.inputs)
        op, attrs = _op_and_attrs(step, operands, t.shape)
        out.append(
            StepDescriptor(
                op=op,
                relu=bool(step.attrs.get("relu")),
                int_out=t.kind == "int",
                output=outputs.get(step.output, -1),
                shape=tuple(t.shape),
                scale=t.scale,
                operands=operands,
                attrs=attrs,
            )
        )
    return out


def steps_root(descriptors: Sequence[StepDescriptor]) -> bytes:
    """``commit_list`` of the descriptors' leaves (32 zero bytes for a program without steps)."""
    leaves = [d.leaf for d in descriptors]
    return commit_list(leaves) if leaves else bytes(32)


def unsupported_steps(descriptors: Sequence[StepDescriptor]) -> list[int]:
    """Indices of the steps whose disputes cannot be resolved on-chain."""
    return [i for i, d in enumerate(descriptors) if d.op == OP_UNSUPPORTED]


def _op_and_attrs(
    step: Step, operands: tuple[Operand, ...], out_shape: tuple[int, ...]
) -> tuple[int, tuple[int, ...]]:
    """The op id and integer attributes, or ``(OP_UNSUPPORTED, ())``; mirrors the layouts
    that ``OneStepProver`` (and so ``OneStepVerifier``) handles."""
    a = step.attrs
    shapes = [o.shape for o in operands]
    op = step.op
    if op == "dense" and len(shapes) in (2, 3) and len(shapes[1]) == 2:
        return OP_IDS[op], (a["shift"], a["bias_shift"])
    if op == "matmul" and len(shapes) == 2 and _matmul_ok(shapes[0], shapes[1], out_shape):
        return OP_IDS[op], (a["shift"],)
    if op == "conv2d" and len(shapes) in (2, 3) and len(shapes[0]) == len(shapes[1]) == 4:
        (sh, sw), (dh, dw), (top, left) = a["strides"], a["dilations"], a["pads"][:2]
        return OP_IDS[op], (sh, sw, dh, dw, top, left, a["group"], a["shift"], a["bias_shift"])
    if op == "add" and len(shapes) == 2:
        return OP_IDS[op], (a["shift_a"], a["shift_b"], a["sign_b"])
    if op == "mul" and len(shapes) == 2:
        return OP_IDS[op], (a["shift"],)
    if op in ("relu", "reshape") and len(shapes) == 1:
        return OP_IDS[op], ()
    if op in ("max_pool", "avg_pool") and len(shapes) == 1 and len(shapes[0]) in (3, 4):
        if op == "max_pool":
            mode = POOL_MAX
        else:
            mode = POOL_AVG_INCLUDE_PAD if a["count_include_pad"] else POOL_AVG
        (kh, kw), (sh, sw), (dh, dw), (top, left) = (
            a["kernel"],
            a["strides"],
            a["dilations"],
            a["pads"][:2],
        )
        return OP_IDS[op], (kh, kw, sh, sw, dh, dw, top, left, mode)
    if op in ("reduce_sum", "reduce_mean") and len(shapes) == 1:
        rank, axes = len(shapes[0]), tuple(a["axes"])
        if axes == tuple(range(rank - len(axes), rank)):
            return OP_IDS[op], (len(axes), int(op == "reduce_mean"))
        if axes and axes == tuple(range(axes[0], axes[0] + len(axes))):
            return OP_IDS["reduce_axes"], (axes[0], len(axes), int(op == "reduce_mean"))
        return OP_UNSUPPORTED, ()
    return _ext_op_and_attrs(step, shapes, out_shape)


def _ext_op_and_attrs(
    step: Step, shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]
) -> tuple[int, tuple[int, ...]]:
    """The ops of ``OneStepVerifierExt`` (ids 10 and above)."""
    a, op, n = step.attrs, step.op, len(shapes)
    table = ("lo", "shift", "intervals")
    if op == "lut" and n == 2:
        return OP_IDS[op], tuple(a[k] for k in table)
    if op == "leaky_relu" and n == 1:
        return OP_IDS[op], (a["alpha"],)
    if op == "clip" and n == 1:
        return OP_IDS[op], (a["lo"], a["hi"])
    if op in ("copy", "truncate", "to_bool") and n == 1:
        mode = {"copy": CAST_COPY, "truncate": CAST_TRUNCATE, "to_bool": CAST_BOOL}[op]
        return OP_IDS[op], (mode, a.get("shift", 0))
    if op == "where" and n == 3:
        return OP_IDS[op], (a["shift_a"], a["shift_b"])
    if op == "argmax" and n == 1:
        return OP_IDS[op], (a["axis"], a["select_last_index"])
    if op == "softmax" and n == 2:
        return OP_IDS[op], (*(a[k] for k in table), a["axis"], a["out_scale"])
    if op == "layernorm" and n == 3:
        return OP_IDS[op], (a["axis"], a["eps"], a["beta_shift"], a["shift"])
    if op == "concat" and n >= 1:
        return OP_IDS[op], (a["axis"], *a["shifts"])
    if op == "gather" and n == 2:
        return OP_IDS[op], (a["axis"],)
    if op == "transpose" and n == 1:
        return OP_IDS[op], tuple(a["perm"])
    if op == "slice" and n == 1:
        return OP_IDS[op], (*a["starts"], *a["steps"])
    if op in ("expand", "tile") and n == 1:
        if op == "tile" and len(shapes[0]) != len(out_shape):
            return OP_UNSUPPORTED, ()
        return OP_IDS[op], ()
    return OP_UNSUPPORTED, ()


def _matmul_ok(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> bool:
    if len(a) < 2 or len(b) < 2:
        return False
    if len(b) > 2 and b[:-2] != a[:-2]:
        return False
    return tuple(out) == (*a[:-1], b[-1]) and bool(np.prod(a) > 0)
