"""ONNX -> fixed-point Program: validate, rewrite the graph, calibrate, lower every node.

Lowerings (in ``ops/``) choose each tensor's scale from calibration and prove from bit widths
that no intermediate overflows; when a proof fails they name the node and the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from verinfer.errors import ModelError
from verinfer.models.onnx_check import bind_batch, inspect_onnx
from verinfer.runtime.calibrate import as_feeds, default_feeds, tensor_ranges
from verinfer.runtime.fixed import (
    ACT_MAX,
    INT32_MAX,
    WEIGHT_MAX,
    quantize_real,
    scale_for,
)
from verinfer.runtime.graph import Graph, prepare
from verinfer.runtime.ops import LOWERINGS, RELU_FUSES_INTO
from verinfer.runtime.program import Constant, Kind, Program, Step, Tensor

HEADROOM = 2.0  # one bit above the largest calibrated magnitude
_INT_TYPES = {
    onnx.TensorProto.INT64,
    onnx.TensorProto.INT32,
    onnx.TensorProto.INT16,
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.BOOL,
}


class UnsupportedModelError(ModelError):
    """The model uses ops (or op settings) the deterministic runtime does not implement."""


class CompileContext:
    """What a lowering sees: shapes, constants, calibrated ranges, and where to emit steps."""

    def __init__(self, graph: Graph, ranges: Mapping[str, float]) -> None:
        self.graph = graph
        self.ranges = ranges
        self.tensors: dict[str, Tensor] = {}
        self.constants: dict[str, Constant] = {}
        self.steps: list[Step] = []
        self.node: onnx.NodeProto = onnx.NodeProto()

    # --- reading the graph -------------------------------------------------------------
    def fail(self, reason: str, hint: str | None = None) -> ModelError:
        node = self.node
        return UnsupportedModelError(
            f"node {node.name or '?'!r} ({node.op_type}): {reason}", hint=hint
        )

    def tensor(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise self.fail(
                f"input {name!r} is not a computed tensor (a constant where an "
                "activation was expected?)"
            )
        return self.tensors[name]

    def is_const(self, name: str) -> bool:
        return self.graph.is_const(name)

    def const(self, name: str) -> NDArray[Any]:
        return np.asarray(self.graph.consts[name])

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.graph.shapes:
            raise self.fail(f"the shape of {name!r} is not static after binding the batch")
        return self.graph.shapes[name]

    def act_scale(self, name: str) -> int:
        """The scale of an activation from its calibrated range (with one bit of headroom)."""
        return scale_for(self.ranges.get(name, 0.0) * HEADROOM, ACT_MAX)

    # --- building the program -----------------------------------------------------------
    def add_const(self, suffix: str, values: NDArray[Any], scale: int) -> str:
        """Store integer constant values (int32) under a name derived from the node."""
        q = np.asarray(values, dtype=np.int64)
        if q.size and int(np.max(np.abs(q))) > INT32_MAX:
            raise self.fail(f"constant {suffix} does not fit int32 at scale {scale}")
        name = f"{self.node.output[0]}::{suffix}"
        self.constants[name] = Constant(name, q.astype(np.int32), scale)
        return name

    def add_weight(self, suffix: str, values: NDArray[Any]) -> tuple[str, int]:
        """Quantize float weights to 16 bits with a per-tensor power-of-two scale."""
        v = np.asarray(values, dtype=np.float64)
        scale = scale_for(float(np.max(np.abs(v))) if v.size else 0.0, WEIGHT_MAX)
        return self.add_const(suffix, quantize_real(v, scale), scale), scale

    def emit(
        self,
        op: str,
        inputs: list[str],
        *,
        scale: int,
        kind: Kind = "fx",
        bound: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        output: str | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> Tensor:
        """Append a step; by default it produces the node's first ONNX output."""
        name = output or self.node.output[0]
        limit = ACT_MAX if kind == "fx" else INT32_MAX
        tensor = Tensor(
            name,
            shape if shape is not None else self.shape(name),
            scale,
            kind,
            min(bound if bound is not None else limit, limit),
        )
        self.steps.append(Step(op, tuple(inputs), name, dict(attrs or {}), self.node.name))
        self.tensors[name] = tensor
        return tensor

    def foldable_last(self, name: str, ops: Collection[str]) -> Step | None:
        """The step just emitted, if it is one of ``ops``, produced ``name``, and nothing but
        the current node reads ``name`` (no other node, not a graph output): a step the
        current node can be folded into, one step and one committed tensor fewer."""
        last = self.steps[-1] if self.steps else None
        if (
            last is None
            or last.output != name
            or last.op not in ops
            or name in self.graph.outputs
            or len(self.graph.consumers(name)) != 1
        ):
            return None
        return last

    def fold_into_last(
        self,
        name: str,
        attrs: Mapping[str, Any],
        *,
        inputs: tuple[str, ...] = (),
        scale: int | None = None,
    ) -> None:
        """Make the last step (see foldable_last) produce the current node's output in place
        of ``name``, with ``attrs``, ``inputs`` appended to its own, and ``scale`` if given."""
        last, out = self.steps[-1], self.node.output[0]
        tensor = self.tensors.pop(name)
        self.tensors[out] = dataclasses.replace(
            tensor, name=out, scale=tensor.scale if scale is None else scale
        )
        self.steps[-1] = dataclasses.replace(
            last, inputs=(*last.inputs, *inputs), output=out, attrs=dict(attrs)
        )

    def fuse_relu(self, name: str) -> bool:
        """Fold a Relu of ``name`` into the dense, conv2d or matmul step that just produced
        it, if nothing else reads ``name``. Returns whether it did."""
        last = self.foldable_last(name, RELU_FUSES_INTO)
        if last is None:
            return False
        self.fold_into_last(name, {**last.attrs, "relu": 1})
        return True

    def alias(self, name: str, tensor: Tensor) -> None:
        """``name`` is the same tensor (Identity, float->float Cast): no step, no trace entry."""
        self.tensors[name] = tensor


def compile_model(path: Path | str, calibration: Any = None, *, batch: int = 1) -> Program:
    """Compile an ONNX file into a deterministic fixed-point Program.

    ``calibration``: sample inputs (a feed dict, a list of them, or an array for one-input
    models) used to choose scales; without it, standard-normal inputs are used.
    """
    spec = inspect_onnx(Path(path), batch=batch)
    model = onnx.load_from_string(spec.data)
    return compile_proto(model, calibration, batch=batch)


def compile_proto(model: onnx.ModelProto, calibration: Any = None, *, batch: int = 1) -> Program:
    graph = prepare(bind_batch(model, batch))
    _refuse_unsupported(graph)
    feeds = as_feeds(model, calibration) or default_feeds(model, graph.shapes)
    ranges = tensor_ranges(model, feeds)
    for name, factor in graph.range_factors.items():
        if name in ranges:
            ranges[name] *= factor
    ctx = CompileContext(graph, ranges)
    inputs: list[Tensor] = []
    dtypes: dict[str, str] = {}
    for name in graph.inputs:
        elem = graph.elem_types.get(name, onnx.TensorProto.FLOAT)
        dtypes[name] = onnx.helper.tensor_dtype_to_np_dtype(elem).name
        is_int = elem in _INT_TYPES
        tensor = Tensor(
            name,
            graph.shapes[name],
            0 if is_int else ctx.act_scale(name),
            "int" if is_int else "fx",
            INT32_MAX if is_int else ACT_MAX,
        )
        ctx.tensors[name] = tensor
        inputs.append(tensor)
    for node in graph.nodes:
        ctx.node = node
        LOWERINGS[node.op_type](node, ctx)
    outputs = []
    for name in graph.outputs:
        if name not in ctx.tensors:
            raise UnsupportedModelError(f"output {name!r} is a constant, not computed from inputs")
        outputs.append(ctx.tensors[name])
    used = {n for s in ctx.steps for n in s.inputs}
    constants = {k: v for k, v in ctx.constants.items() if k in used}
    tensors = {t.name: t for t in ctx.tensors.values()}  # aliases resolve to their tensor
    return Program(tuple(inputs), tuple(outputs), tensors, constants, tuple(ctx.steps), dtypes)


def _refuse_unsupported(graph: Graph) -> None:
    bad = [
        f"{n.op_type} ({n.name or 'unnamed'})" for n in graph.nodes if n.op_type not in LOWERINGS
    ]
    if bad:
        raise UnsupportedModelError(
            f"the model uses {len(bad)} unsupported op(s): {', '.join(bad)}",
            hint="see docs/runtime-spec.md for the supported ops",
        )
