"""The tensor encoding: Hypothesis round trips and malformed bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verinfer.chain.codec import (
    CID_REFERENCE,
    INLINE,
    decode_reference,
    decode_tensors,
    encode_reference,
    encode_tensors,
    payload_kind,
)
from verinfer.errors import ModelError
from verinfer.store.cid import CID

int32s = st.integers(-(2**31), 2**31 - 1)
tensors = st.lists(st.tuples(st.lists(int32s, max_size=20), st.integers(-128, 127)), max_size=5)


@given(tensors)
def test_round_trip(ts: list[tuple[list[int], int]]) -> None:
    data = encode_tensors([(np.array(v, dtype=np.int64), s) for v, s in ts])
    assert data[0] == INLINE
    assert len(data) == 1 + sum(5 + 4 * len(v) for v, _ in ts)
    decoded = decode_tensors(data)
    assert [(a.tolist(), s) for a, s in decoded] == ts
    assert all(a.dtype == np.int32 for a, _ in decoded)


@given(tensors, st.data())
def test_truncated_or_extended_bytes_are_rejected(
    ts: list[tuple[list[int], int]], data: st.DataObject
) -> None:
    encoded = encode_tensors([(np.array(v, dtype=np.int64), s) for v, s in ts])
    cut = data.draw(st.integers(1, len(encoded)))
    if cut < len(encoded):
        # A prefix is valid only if it ends exactly at a tensor boundary.
        boundaries = {1}
        offset = 1
        for v, _ in ts:
            offset += 5 + 4 * len(v)
            boundaries.add(offset)
        if cut in boundaries:
            decode_tensors(encoded[:cut])
        else:
            with pytest.raises(ModelError):
                decode_tensors(encoded[:cut])
    with pytest.raises(ModelError):
        decode_tensors(encoded + b"\x00")  # a lone byte is a truncated header


def test_known_vector() -> None:
    data = encode_tensors([(np.array([[1, -2], [3, 4]]), 4), ([], -1)])
    assert data.hex() == "01040000000400000001fffffffe0000000300000004ff00000000"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([(np.array([2**31]), 0)], "int32"),
        ([(np.array([-(2**31) - 1]), 0)], "int32"),
        ([(np.array([1]), 128)], "int8"),
        ([(np.array([1.5]), 0)], "not integers"),
        ([(np.array([1]), 1.0)], "not an integer"),
        ([(np.array([1]), True)], "not an integer"),
    ],
)
def test_encode_rejects_bad_values(bad: list[tuple[object, object]], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        encode_tensors(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [b"", b"\x03", b"\x01\x00\x00\x00", b"\x01\x00\x00\x00\x00\x02\x00\x00\x00\x01"]
)
def test_decode_rejects_malformed_bytes(data: bytes) -> None:
    with pytest.raises(ModelError):
        decode_tensors(data)


def test_cid_reference_round_trip() -> None:
    cid = CID.of(encode_tensors([(np.arange(10), 0)]))
    data = encode_reference(cid)
    assert payload_kind(data) == CID_REFERENCE and data[1:] == bytes(cid)
    assert decode_reference(data) == cid
    with pytest.raises(ModelError, match="CID reference"):
        decode_tensors(data)
    with pytest.raises(ModelError):
        decode_reference(b"\x02\x01\x55")
    with pytest.raises(ModelError):
        decode_reference(encode_tensors([]))
