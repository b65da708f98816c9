"""Run one request: decode the input bytes, run the model's program, encode the output.

The program comes from the store (or is compiled from the registered ONNX) and is checked
against the registry's ``programHash`` (``verinfer.models.programs``); it is cached per model.
Inputs arrive already quantized (int32 values at the program's input scales), so the node
runs exactly the integers the requester committed to, whatever float they started from.

An input no node can run (malformed encoding, wrong tensor count, size or scale, values the
runtime refuses such as an out-of-vocabulary token id) raises ``InvalidRequestInputError``:
the node answers it with the empty output (docs/protocol-requests.md), a deterministic
verdict every honest node reaches. Failures that are the node's own (a program or a
referenced input missing from its store) raise other errors and are never answered so.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from verinfer.chain.codec import (
    CID_REFERENCE,
    INLINE,
    decode_reference,
    decode_tensors,
    encode_tensors,
    payload_kind,
)
from verinfer.errors import ModelError, StoreError, VerinferError
from verinfer.models.programs import ProgramCache
from verinfer.models.registry import ModelRecord, RegistryClient
from verinfer.runtime import Program, RuntimeInputError
from verinfer.runtime.ops.shape import IndexOutOfRangeError
from verinfer.store.local import Store

__all__ = [
    "Executor",
    "InputUnavailableError",
    "InvalidRequestInputError",
    "decode_for_program",
    "encode_outputs",
]

INVALID_INPUT_OUTPUT = b""  # the protocol's answer to an input no node can run


class InvalidRequestInputError(ModelError):
    """The request's input bytes do not fit the model's program (count, scale or encoding)."""


class InputUnavailableError(ModelError):
    """A CID-referenced input is not in this node's store (the node's problem, not the input's)."""


def decode_for_program(program: Program, data: bytes) -> dict[str, NDArray[Any]]:
    """The runtime's input dict for encoded ``data``; checks count, sizes and scales."""
    try:
        tensors = decode_tensors(data)
    except VerinferError as exc:
        raise InvalidRequestInputError(f"the input is not a valid tensor encoding: {exc}") from exc
    except (ValueError, TypeError, IndexError) as exc:  # defensive: the codec should not leak these
        raise InvalidRequestInputError(f"the input is not a valid tensor encoding: {exc}") from exc
    if len(tensors) != len(program.inputs):
        raise InvalidRequestInputError(
            f"the input holds {len(tensors)} tensor(s), the model takes {len(program.inputs)}"
        )
    feeds: dict[str, NDArray[Any]] = {}
    for tensor, (values, scale) in zip(program.inputs, tensors, strict=True):
        flat = np.asarray(values, dtype=np.int64).reshape(-1)
        if flat.size != tensor.size:
            raise InvalidRequestInputError(
                f"input {tensor.name!r} has {flat.size} values, the model takes {tensor.size} "
                f"(shape {list(tensor.shape)})"
            )
        if int(scale) != tensor.scale:
            raise InvalidRequestInputError(
                f"input {tensor.name!r} is quantized at scale {scale}, the model's program "
                f"uses {tensor.scale}"
            )
        q = flat.reshape(tensor.shape)
        # q * 2**-scale is exact in float64 and the runtime's quantize_real maps it back to q.
        feeds[tensor.name] = q if tensor.kind == "int" else np.ldexp(q.astype(np.float64), -scale)
    return feeds


def encode_outputs(program: Program, outputs_q: list[NDArray[np.int32]]) -> bytes:
    return encode_tensors(
        [(q.reshape(-1), t.scale) for t, q in zip(program.outputs, outputs_q, strict=True)]
    )


class Executor:
    """Computes outputs for the models a node serves; programs and records are cached."""

    def __init__(self, registry: RegistryClient, store: Store) -> None:
        self.registry = registry
        self.programs = ProgramCache(store)
        self._records: dict[int, ModelRecord] = {}
        self._lock = threading.Lock()

    def record(self, model_id: int) -> ModelRecord:
        with self._lock:
            if model_id not in self._records:
                self._records[model_id] = self.registry.get(model_id)
            return self._records[model_id]

    def program(self, model_id: int) -> Program:
        return self.programs.get(self.record(model_id))

    def run(self, model_id: int, input_bytes: bytes) -> bytes:
        """The encoded output of ``model_id`` on ``input_bytes``.

        An input no node can run: InvalidRequestInputError. A referenced input missing from
        the store: InputUnavailableError. Anything else (the program) is a ModelError.
        """
        return self.run_traced(model_id, input_bytes, trace=False)[0]

    def run_traced(
        self, model_id: int, input_bytes: bytes, *, trace: bool = True
    ) -> tuple[bytes, bytes]:
        """The encoded output and (optimistic mode) the execution's 32-byte trace root."""
        program = self.program(model_id)
        feeds = decode_for_program(program, self.inline(input_bytes))
        try:
            execution = program.run(feeds, trace=trace)
        except (RuntimeInputError, IndexOutOfRangeError) as exc:
            raise InvalidRequestInputError(f"the runtime refuses the input: {exc}") from exc
        root = bytes.fromhex(execution.trace_root[2:]) if trace else b""
        return encode_outputs(program, execution.outputs_q), root

    def inline(self, input_bytes: bytes) -> bytes:
        """The inline tensor bytes: ``input_bytes`` itself, or the stored file it references."""
        try:
            if payload_kind(input_bytes) != CID_REFERENCE:
                return input_bytes
            cid = decode_reference(input_bytes)
        except ModelError as exc:
            raise InvalidRequestInputError(
                f"the input is not a valid tensor encoding: {exc}"
            ) from exc
        try:
            data = self.programs.store.get(cid)
        except StoreError as exc:
            raise InputUnavailableError(
                f"the referenced input {cid} is not in this node's store: {exc}",
                hint="point VERINFER_STORE at a store (IPFS node) that holds it",
            ) from exc
        if data[:1] != bytes([INLINE]):
            raise InvalidRequestInputError(
                f"the referenced input {cid} does not hold inline tensors"
            )
        return data
