"""Validate an ONNX file before verinfer registers or serves it, and read its tensor shapes.

verinfer runs models with fixed shapes, so this module checks what a registered model must
satisfy and reports its interface:

- a readable, non-empty, self-contained ONNX file (no external weight files) that passes
  ``onnx.checker``, with a default-domain opset >= 13 and an IR version onnxruntime can load;
- at least one input and one output, each a tensor with a known rank;
- every dimension static, except a dynamic *leading* (batch) dimension, as skl2onnx and
  torch.onnx export it: that one is bound to the ``batch`` the caller asks for, and output
  shapes are then derived with ONNX shape inference.

Every failure is a ``ModelError`` naming the file and the problem, with a hint naming the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from onnx import shape_inference

from verinfer.errors import ModelError

__all__ = [
    "MAX_IR_VERSION",
    "MIN_OPSET",
    "OnnxSpec",
    "TensorSpec",
    "bind_batch",
    "inspect_onnx",
]

#: Lowest default-domain opset the runtime compiles (opset 13 fixed the semantics of
#: Softmax, ReduceSum axes and friends that the runtime relies on).
MIN_OPSET = 13
#: Highest ONNX IR version onnxruntime 1.31 loads (onnx 1.23 writes 14 unless told otherwise).
MAX_IR_VERSION = 13

_DEFAULT_DOMAINS = ("", "ai.onnx")
_NUMERIC_KINDS = ("float", "bfloat", "int", "uint")
_EXPORT_HINT = "export a model file with onnx.save_model, torch.onnx.export or skl2onnx"
_LFS_MAGIC = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, shape (batch bound) and element type name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numeric(self) -> bool:
        """True for float and integer element types; False for e.g. bool or string."""
        return self.dtype.startswith(_NUMERIC_KINDS)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class OnnxSpec:
    """What ``inspect_onnx`` found in a valid ONNX file.

    ``op_types`` lists each operator once, sorted; operators outside the default ONNX domain
    are qualified as ``domain::OpType`` (e.g. ``ai.onnx.ml::LinearClassifier``).
    ``batch_bound`` says whether a dynamic leading dimension was bound to ``batch``; a model
    with fully static shapes keeps them whatever ``batch`` was asked for.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    ir_version: int
    size_bytes: int
    op_types: tuple[str, ...]
    batch: int
    batch_bound: bool
    data: bytes = field(repr=False)

    @property
    def non_numeric(self) -> tuple[TensorSpec, ...]:
        """Inputs and outputs whose element type is neither float nor integer."""
        return tuple(t for t in self.inputs + self.outputs if not t.numeric)


def inspect_onnx(path: Path, batch: int = 1) -> OnnxSpec:
    """Validate the ONNX file at ``path`` and describe its inputs and outputs.

    A dynamic leading dimension is bound to ``batch`` (>= 1). Raises ``ModelError`` for a
    missing, empty, corrupt, non-self-contained or unsupported model.
    """
    path = Path(path)
    _check_batch(batch)
    data = _read(path)
    model = _parse(path, data)
    _check_self_contained(path, model)
    opset = _check_versions(path, model)
    _run_checker(path, model)

    real_inputs = _real_inputs(model.graph)
    if not real_inputs:
        raise ModelError(
            f"{path}: the model has no inputs (initializers listed as inputs do not count)",
            hint="export the model with at least one runtime input tensor",
        )
    if len(model.graph.output) == 0:
        raise ModelError(
            f"{path}: the model has no outputs",
            hint="export the model with at least one graph output",
        )

    inputs: list[TensorSpec] = []
    batch_bound = False
    for vi in real_inputs:
        spec, bound = _tensor_spec(path, vi, "input", batch, bind_leading=True)
        inputs.append(spec)
        batch_bound = batch_bound or bound

    outputs = _output_specs(path, model, batch, batch_bound)
    return OnnxSpec(
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        opset=opset,
        ir_version=int(model.ir_version),
        size_bytes=len(data),
        op_types=tuple(sorted(_op_types(model))),
        batch=batch,
        batch_bound=batch_bound,
        data=data,
    )


def bind_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs' dynamic leading dimension is ``batch``.

    Only dimensions without a value (a ``dim_param`` such as ``"batch"``, or unknown) at axis 0
    of real inputs (not initializers) are bound; the caller's model is left untouched. Output
    shapes are not changed here: run ONNX shape inference on the result to get them.
    """
    _check_batch(batch)
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    for vi in _real_inputs(bound.graph):
        tensor_type = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if len(dims) > 0 and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch  # setting the value clears the dim_param (a oneof)
    return bound


def _check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ModelError(
            f"invalid batch size {batch!r}: it must be an integer >= 1",
            hint="pass batch=1 for single requests, or the number of rows per request",
        )


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(
            f"{path}: the ONNX file does not exist",
            hint=f"check the path, or {_EXPORT_HINT} first",
        )
    if path.is_dir():
        raise ModelError(
            f"{path}: is a directory, not an ONNX file",
            hint="pass the .onnx file itself, not the folder that holds it",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"{path}: cannot read the ONNX file: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from exc
    if not data:
        raise ModelError(
            f"{path}: the ONNX file is empty (0 bytes)",
            hint="re-export the model; the file was probably cut off while being written",
        )
    return data


def _parse(path: Path, data: bytes) -> onnx.ModelProto:
    if data.startswith(_LFS_MAGIC):
        raise ModelError(
            f"{path}: is a Git LFS pointer, not the ONNX model itself",
            hint="fetch the real file with `git lfs pull`",
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise _not_onnx(path, data, f"protobuf decoding failed: {exc}") from exc
    # Protobuf accepts many short byte strings as a message with a few unknown fields, so a
    # successful parse alone does not make a model: a real one has an IR version and a graph.
    if model.ir_version < 1 or not model.HasField("graph"):
        raise _not_onnx(path, data, "no IR version or graph in it")
    return model


def _not_onnx(path: Path, data: bytes, detail: str) -> ModelError:
    if _looks_like_text(data):
        return ModelError(
            f"{path}: is not a valid ONNX model: it is a text file ({detail})",
            hint=f"{_EXPORT_HINT}; ONNX text format converts with "
            "onnx.parser.parse_model and onnx.save_model",
        )
    return ModelError(
        f"{path}: is not a valid ONNX model: not ONNX at all, or truncated ({detail})",
        hint=f"re-export or re-download the model; {_EXPORT_HINT}",
    )


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut in two at the 4 KiB mark
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _check_self_contained(path: Path, model: onnx.ModelProto) -> None:
    for where, tensor in _graph_tensors(model.graph, ""):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            name = f" '{tensor.name}'" if tensor.name else ""
            raise ModelError(
                f"{path}: {where}{name} keeps its data in an external file "
                f"('{location}'); verinfer registers self-contained ONNX files only",
                hint=(
                    "load it with onnx.load(path) and save a single file with "
                    "onnx.save_model(model, out, save_as_external_data=False) (models < 2 GB)"
                ),
            )


def _check_versions(path: Path, model: onnx.ModelProto) -> int:
    if model.ir_version > MAX_IR_VERSION:
        raise ModelError(
            f"{path}: ONNX IR version {model.ir_version} is newer than onnxruntime supports "
            f"(max {MAX_IR_VERSION})",
            hint=f"set model.ir_version = 9 (any value <= {MAX_IR_VERSION}) before saving",
        )
    versions = [int(o.version) for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(
            f"{path}: the model imports no default-domain (ai.onnx) opset",
            hint=f"re-export with an ai.onnx opset >= {MIN_OPSET}",
        )
    opset = max(versions)
    if opset < MIN_OPSET:
        raise ModelError(
            f"{path}: opset {opset} is too old; verinfer needs opset >= {MIN_OPSET}",
            hint=(
                f"re-export with opset >= {MIN_OPSET} (torch.onnx.export(opset_version=17), "
                f"skl2onnx target_opset), or convert with "
                f"onnx.version_converter.convert_version(model, {MIN_OPSET})"
            ),
        )
    return opset


def _run_checker(path: Path, model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(
            f"{path}: fails onnx.checker: {_one_line(exc)}",
            hint="fix the graph in the exporter and re-export; "
            "onnx.checker.check_model(model, full_check=True) shows the details",
        ) from exc


def _output_specs(
    path: Path, model: onnx.ModelProto, batch: int, batch_bound: bool
) -> list[TensorSpec]:
    """Output specs with the batch bound, from ONNX shape inference checked against the
    declared output shapes (which inference alone would keep, even when they are wrong)."""
    bound = bind_batch(model, batch)
    declared = []
    for vi in bound.graph.output:
        kept = onnx.ValueInfoProto()
        kept.CopyFrom(vi)
        declared.append(kept)
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    inferred = {vi.name: vi for vi in _infer(path, bound).graph.output}
    specs = []
    for vi in declared:
        merged = _merge_shape(path, vi, inferred.get(vi.name))
        specs.append(_tensor_spec(path, merged, "output", batch, bind_leading=batch_bound)[0])
    return specs


def _merge_shape(
    path: Path, declared: onnx.ValueInfoProto, inferred: onnx.ValueInfoProto | None
) -> onnx.ValueInfoProto:
    """``declared`` with every dimension that shape inference computed filled in."""
    if (
        inferred is None
        or not declared.type.HasField("tensor_type")
        or not inferred.type.HasField("tensor_type")
        or not inferred.type.tensor_type.HasField("shape")
    ):
        return declared
    got = inferred.type.tensor_type.shape
    if not declared.type.tensor_type.HasField("shape"):
        declared.type.tensor_type.shape.CopyFrom(got)
        return declared
    dims = declared.type.tensor_type.shape.dim
    mismatch = len(dims) != len(got.dim) or any(
        d.HasField("dim_value") and g.HasField("dim_value") and d.dim_value != g.dim_value
        for d, g in zip(dims, got.dim, strict=False)
    )
    if mismatch:
        raise ModelError(
            f"{path}: output '{declared.name}' is declared with shape {_fmt_shape(dims)} "
            f"but the graph computes {_fmt_shape(got.dim)}",
            hint="fix the declared output shape in the exporter (or drop it) and re-export",
        )
    for d, g in zip(dims, got.dim, strict=True):
        if g.HasField("dim_value"):
            d.dim_value = g.dim_value
    return declared


def _fmt_shape(dims: Iterable[onnx.TensorShapeProto.Dimension]) -> str:
    parts = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return "[" + ", ".join(parts) + "]"


def _infer(path: Path, model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: ONNX shape inference failed: {_one_line(exc)}",
            hint="check that the declared output shapes match what the graph computes, "
            "then re-export",
        ) from exc


def _one_line(exc: BaseException) -> str:
    """The error text on one line (onnx spreads node dumps over several), at most 300 chars."""
    line = " ".join(str(exc).split()) or type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are fed at run time (old exporters also list initializers as inputs)."""
    initializers = {t.name for t in graph.initializer}
    initializers.update(s.values.name for s in graph.sparse_initializer)
    return [vi for vi in graph.input if vi.name not in initializers]


def _tensor_spec(
    path: Path, vi: onnx.ValueInfoProto, role: str, batch: int, *, bind_leading: bool
) -> tuple[TensorSpec, bool]:
    """The spec of one input or output, and whether its leading dimension was bound."""
    kind = vi.type.WhichOneof("value")
    if kind != "tensor_type":
        hint = "verinfer models take and return plain tensors"
        if role == "output" and kind == "sequence_type":
            hint += (
                "; for a skl2onnx classifier convert with options={id(model): {'zipmap': False}}"
            )
        raise ModelError(
            f"{path}: {role} '{vi.name}' is a {kind or 'value of unknown type'}, not a tensor",
            hint=hint,
        )
    tensor_type = vi.type.tensor_type
    dtype = _dtype_name(int(tensor_type.elem_type))
    if not tensor_type.HasField("shape"):
        raise ModelError(
            f"{path}: {role} '{vi.name}' has no shape (unknown rank)",
            hint="export the model with a declared shape for every input and output",
        )
    shape: list[int] = []
    bound = False
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            if dim.dim_value < 1:
                raise ModelError(
                    f"{path}: {role} '{vi.name}' has size {dim.dim_value} at axis {axis}",
                    hint="every dimension must be >= 1; re-export with real sizes",
                )
            shape.append(int(dim.dim_value))
        elif axis == 0 and bind_leading:
            shape.append(batch)
            bound = True
        else:
            name = f"'{dim.dim_param}'" if dim.dim_param else "of unknown size"
            raise ModelError(
                f"{path}: {role} '{vi.name}' has a dynamic dimension {name} at axis {axis}; "
                "only the leading (batch) dimension may be dynamic",
                hint="re-export with a fixed size for that axis (torch.onnx.export: leave it "
                "out of dynamic_axes; skl2onnx: give the full shape in initial_types)",
            )
    return TensorSpec(name=vi.name, shape=tuple(shape), dtype=dtype), bound


def _dtype_name(elem_type: int) -> str:
    try:
        return str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    except ValueError:
        return f"unknown({elem_type})"


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _walk_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for sub in _subgraphs(node):
            yield from _walk_nodes(sub)


def _op_types(model: onnx.ModelProto) -> set[str]:
    ops: set[str] = set()
    nodes = list(_walk_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    for node in nodes:
        default = node.domain in _DEFAULT_DOMAINS
        ops.add(node.op_type if default else f"{node.domain}::{node.op_type}")
    return ops


def _graph_tensors(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for tensor in graph.initializer:
        yield f"{where}initializer", tensor
    for sparse in graph.sparse_initializer:
        yield f"{where}sparse initializer", sparse.values
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{where}constant in node '{node.name or node.op_type}'", attr.t
            for tensor in attr.tensors:
                yield f"{where}constant in node '{node.name or node.op_type}'", tensor
        for sub in _subgraphs(node):
            yield from _graph_tensors(sub, f"{where}subgraph ")
