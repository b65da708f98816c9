"""Calibration: the largest magnitude each tensor takes on sample inputs (float, onnxruntime).

Scales are chosen from these ranges, so calibration decides precision, never correctness:
values beyond the calibrated range saturate, and the executor reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from verinfer.errors import ModelError

Feeds = Sequence[Mapping[str, Any]]
DEFAULT_SAMPLES = 8
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


def default_feeds(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> Feeds:
    """Without samples: standard-normal float inputs (seed 0) and all-zero integer inputs.

    This is a sane default for normalized inputs; real samples give better precision.
    """
    rng = np.random.default_rng(0)
    initializers = {i.name for i in model.graph.initializer}
    feeds: list[dict[str, Any]] = []
    for _ in range(DEFAULT_SAMPLES):
        feed: dict[str, Any] = {}
        for vi in model.graph.input:
            if vi.name in initializers:
                continue
            elem = vi.type.tensor_type.elem_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
            shape = shapes[vi.name]
            if elem in _FLOAT_TYPES:
                feed[vi.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feed[vi.name] = np.zeros(shape, dtype=dtype)
        feeds.append(feed)
    return feeds


def as_feeds(model: onnx.ModelProto, calibration: Any) -> Feeds | None:
    """Accept a feed dict, a list of feed dicts, or (single-input models) an array."""
    if calibration is None:
        return None
    if isinstance(calibration, Mapping):
        return [calibration]
    if isinstance(calibration, np.ndarray):
        initializers = {i.name for i in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in initializers]
        if len(names) != 1:
            raise ModelError("an array calibration needs a single-input model; pass feed dicts")
        return [{names[0]: calibration}]
    return list(calibration)


def tensor_ranges(model: onnx.ModelProto, feeds: Feeds) -> dict[str, float]:
    """Max |x| of every float tensor (inputs, intermediates, outputs) over all feeds."""
    inferred = onnx.shape_inference.infer_shapes(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(inferred)
    present = {o.name for o in probe.graph.output}
    for vi in inferred.graph.value_info:
        if vi.type.tensor_type.elem_type in _FLOAT_TYPES and vi.name not in present:
            probe.graph.output.append(vi)
            present.add(vi.name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load the model for calibration: {exc}") from exc
    names = [o.name for o in session.get_outputs()]
    ranges: dict[str, float] = {}
    for feed in feeds:
        try:
            results = session.run(names, {k: np.asarray(v) for k, v in feed.items()})
        except Exception as exc:
            raise ModelError(
                f"calibration run failed: {exc}", hint="check the calibration inputs' names/shapes"
            ) from exc
        for name, value in [*zip(names, results, strict=True), *feed.items()]:
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and arr.size:
                if not np.all(np.isfinite(arr)):
                    raise ModelError(f"tensor {name!r} is not finite on a calibration input")
                ranges[name] = max(ranges.get(name, 0.0), float(np.max(np.abs(arr))))
    return ranges
