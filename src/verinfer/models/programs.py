"""The fixed-point program of a registered model, found through the store and checked.

Nodes and clients must run (and quantize for) exactly the program the registry names, so
both get it here: the compiled program named in the model's manifest (``metadataURI`` =
``ipfs://<manifest cid>``), else the registered ONNX compiled with the default calibration.
Either way its ``program_hash`` must equal the registry's ``programHash``, or it is refused.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import onnx
import structlog
from numpy.typing import NDArray

from verinfer.errors import ModelError, StoreError
from verinfer.models.registry import ZERO_HASH, ModelRecord
from verinfer.runtime import Program, compile_proto
from verinfer.runtime.executor import quantize_input
from verinfer.store.local import Store

__all__ = ["ProgramCache", "load_program", "quantize_inputs"]

log = structlog.get_logger(__name__)
IPFS_PREFIX = "ipfs://"


def _manifest_program_cid(record: ModelRecord, store: Store) -> str | None:
    if not record.metadata_uri.startswith(IPFS_PREFIX):
        return None
    try:
        manifest: dict[str, Any] = json.loads(store.get(record.metadata_uri[len(IPFS_PREFIX) :]))
    except (StoreError, ValueError) as exc:
        log.info("program.manifest_unavailable", model_id=record.model_id, error=str(exc))
        return None
    program = manifest.get("program")
    cid = program.get("cid") if isinstance(program, dict) else None
    return cid if isinstance(cid, str) and cid else None


def _batch(record: ModelRecord) -> int:
    shapes = record.input_shapes
    return int(shapes[0][0]) if shapes and shapes[0] and shapes[0][0] > 0 else 1


def load_program(record: ModelRecord, store: Store) -> Program:
    """The program of ``record``, verified against its on-chain ``programHash``."""
    if record.program_hash == ZERO_HASH:
        raise ModelError(
            f"model {record.model_id} has no programHash on-chain, so no node can prove what "
            "it runs",
            hint="register the model with `verinfer model add`, which compiles it",
        )
    program: Program | None = None
    program_cid = _manifest_program_cid(record, store)
    if program_cid is not None:
        try:
            program = Program.from_bytes(store.get(program_cid))
        except (StoreError, ModelError) as exc:
            log.warning("program.stored_unusable", model_id=record.model_id, error=str(exc))
    if program is None or program.program_hash != record.program_hash:
        try:
            onnx_bytes = store.get(record.cid)
        except StoreError as exc:
            raise ModelError(
                f"model {record.model_id}: neither its compiled program nor its ONNX file "
                f"({record.cid}) is in the store: {exc}",
                hint="fetch it (`verinfer store get`) or point VERINFER_STORE at its IPFS node",
            ) from exc
        program = compile_proto(onnx.load_from_string(onnx_bytes), batch=_batch(record))
    if program.program_hash != record.program_hash:
        raise ModelError(
            f"model {record.model_id}: the program built from the store has hash "
            f"{program.program_hash}, the registry says {record.program_hash}",
            hint="the model was compiled with a custom calibration whose program is not in this "
            "store; fetch the program named in its manifest",
        )
    return program


class ProgramCache:
    """Programs per model id, loaded once (thread-safe)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._programs: dict[int, Program] = {}
        self._lock = threading.Lock()

    def get(self, record: ModelRecord) -> Program:
        with self._lock:
            program = self._programs.get(record.model_id)
            if program is None or program.program_hash != record.program_hash:
                program = load_program(record, self.store)
                self._programs[record.model_id] = program
            return program


def quantize_inputs(
    program: Program, inputs: NDArray[Any] | dict[str, Any]
) -> list[tuple[NDArray[np.int32], int]]:
    """(int32 values, scale) per program input, quantized exactly as the runtime does."""
    if not isinstance(inputs, dict):
        if len(program.inputs) != 1:
            names = ", ".join(t.name for t in program.inputs)
            raise ModelError(
                f"model has {len(program.inputs)} inputs ({names}); a single array was given",
                hint="pass a dict {input name: array}",
            )
        inputs = {program.inputs[0].name: inputs}
    unknown = set(inputs) - {t.name for t in program.inputs}
    if unknown:
        raise ModelError(
            f"unknown input(s): {', '.join(sorted(unknown))}",
            hint="inputs are: " + ", ".join(t.name for t in program.inputs),
        )
    result: list[tuple[NDArray[np.int32], int]] = []
    for tensor in program.inputs:
        if tensor.name not in inputs:
            raise ModelError(f"missing input {tensor.name!r}")
        q, clamped = quantize_input(tensor, inputs[tensor.name])
        if clamped:
            log.warning("input.saturated", input=tensor.name, clamped=clamped)
        result.append((q.astype(np.int32), tensor.scale))
    return result
