"""The verinfer tensor encoding of model inputs and outputs (Python twin of TensorCodec.sol).

Byte 0 is the kind: ``0x01`` inline, ``0x02`` CID reference.

- inline: then, per tensor, ``int8 scale``, ``uint32 count`` (big-endian) and ``count`` int32
  values (big-endian, two's complement); tensors follow each other to the end of the bytes.
  The real value of q is q / 2^scale. Zero tensors, and tensors with zero values, are valid.
- CID reference: then the binary CIDv1 of a file in the content-addressed store that holds
  the inline encoding, for inputs too large for calldata.

Shapes are not encoded (the ModelRegistry records them); arrays are flattened in C order.
Written by hand: it is the on-chain format, a few lines of ``struct`` and numpy.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from verinfer.errors import ModelError, StoreError
from verinfer.store.cid import CID

__all__ = [
    "CID_REFERENCE",
    "INLINE",
    "decode_reference",
    "decode_tensors",
    "encode_reference",
    "encode_tensors",
    "payload_kind",
]

INLINE = 0x01
CID_REFERENCE = 0x02
_HEADER = struct.Struct(">bI")  # int8 scale, uint32 count
_INT32 = np.dtype(">i4")
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_MAX_COUNT = 2**32 - 1


def encode_tensors(tensors: Sequence[tuple[npt.ArrayLike, int]]) -> bytes:
    """The inline encoding of ``(values, scale)`` pairs; values must be integers in int32."""
    parts = [bytes([INLINE])]
    for index, (values, scale) in enumerate(tensors):
        if isinstance(scale, bool) or not isinstance(scale, int | np.integer):
            raise ModelError(f"tensor {index}: scale {scale!r} is not an integer")
        if not -128 <= int(scale) <= 127:
            raise ModelError(f"tensor {index}: scale {scale} does not fit int8 (-128..127)")
        array = np.asarray(values)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ModelError(
                f"tensor {index}: values of dtype {array.dtype} are not integers",
                hint="quantize first: q = round(x * 2^scale)",
            )
        flat = array.reshape(-1)
        if flat.size > _MAX_COUNT:
            raise ModelError(f"tensor {index}: {flat.size} values exceed a uint32 count")
        if flat.size and (int(flat.min()) < _I32_MIN or int(flat.max()) > _I32_MAX):
            raise ModelError(f"tensor {index}: a value does not fit int32")
        parts.append(_HEADER.pack(int(scale), flat.size))
        parts.append(flat.astype(_INT32).tobytes())
    return b"".join(parts)


def decode_tensors(data: bytes) -> list[tuple[npt.NDArray[np.int32], int]]:
    """The ``(values, scale)`` pairs of inline ``data``; malformed bytes raise ModelError."""
    view = memoryview(data)
    kind = payload_kind(data)
    if kind != INLINE:
        raise ModelError(
            "the tensor bytes are a CID reference, not inline tensors",
            hint="fetch the referenced file from the store and decode its contents",
        )
    tensors: list[tuple[npt.NDArray[np.int32], int]] = []
    offset = 1
    while offset < len(view):
        if offset + _HEADER.size > len(view):
            raise ModelError(f"truncated tensor header at byte {offset} of {len(view)}")
        scale, count = _HEADER.unpack_from(view, offset)
        start = offset + _HEADER.size
        end = start + 4 * count
        if end > len(view):
            raise ModelError(
                f"tensor {len(tensors)} at byte {offset} declares {count} values, "
                f"but only {(len(view) - start) // 4} follow"
            )
        values = np.frombuffer(view[start:end], dtype=_INT32).astype(np.int32)
        tensors.append((values, int(scale)))
        offset = end
    return tensors


def payload_kind(data: bytes) -> int:
    """The kind byte: INLINE or CID_REFERENCE; anything else raises ModelError."""
    if not data:
        raise ModelError("the tensor bytes are empty", hint="the first byte is the kind (1 or 2)")
    if data[0] not in (INLINE, CID_REFERENCE):
        raise ModelError(f"unknown tensor encoding kind 0x{data[0]:02x}", hint="expected 1 or 2")
    return data[0]


def encode_reference(cid: CID | str) -> bytes:
    """A CID-reference payload pointing at a stored file that holds an inline encoding."""
    return bytes([CID_REFERENCE]) + bytes(CID.coerce(cid))


def decode_reference(data: bytes) -> CID:
    """The CID of a CID-reference payload; anything else raises ModelError."""
    if payload_kind(data) != CID_REFERENCE:
        raise ModelError("the tensor bytes are inline tensors, not a CID reference")
    try:
        return CID.from_bytes(data[1:])
    except (StoreError, ValueError) as exc:
        raise ModelError(f"the CID reference is not a valid CIDv1: {exc}") from exc
