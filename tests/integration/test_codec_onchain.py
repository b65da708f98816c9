"""TensorCodec.sol (through contracts/src/test/TensorCodecHarness.sol) agrees with the Python
codec: the same bytes, the same values, the same rejections."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.contract.contract import Contract

import verinfer.chain.coordinator_errors  # noqa: F401 - registers the codec's errors
from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors, encode_reference, encode_tensors
from verinfer.chain.coordinator_errors import TensorCodecError
from verinfer.chain.devnet import DevnetInfo
from verinfer.store.cid import CID

pytestmark = pytest.mark.integration

int32s = st.integers(-(2**31), 2**31 - 1)
tensors = st.lists(st.tuples(st.lists(int32s, max_size=12), st.integers(-128, 127)), max_size=4)


@pytest.fixture(scope="module")
def harness(anvil: DevnetInfo) -> Iterator[tuple[Chain, Contract]]:
    chain = Chain(anvil.rpc_url, dev_account(0))
    address, _ = chain.deploy("TensorCodecHarness")
    yield chain, chain.contract("TensorCodecHarness", address)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ts=tensors)
def test_solidity_and_python_agree(
    harness: tuple[Chain, Contract], ts: list[tuple[list[int], int]]
) -> None:
    chain, h = harness
    f = h.functions
    data = encode_tensors([(np.array(v, dtype=np.int64), s) for v, s in ts])
    assert f.encode([s for _, s in ts], [v for v, _ in ts]).call() == data
    scales, values = f.decode(data).call()
    assert list(zip([list(v) for v in values], scales, strict=True)) == [(v, s) for v, s in ts]
    assert f.tensorCount(data).call() == len(ts)
    for t, (v, s) in enumerate(ts):
        assert f.scale(data, t).call() == s
        assert f.count(data, t).call() == len(v)
        if v:
            assert f.valueAt(data, t, len(v) - 1).call() == v[-1]
        with pytest.raises(TensorCodecError):
            chain.call(f.valueAt(data, t, len(v)))
    if len(ts) == 1:
        assert f.encodeOne(ts[0][1], ts[0][0]).call() == data


@pytest.mark.parametrize(
    "data", [b"", b"\x03", b"\x01\x00\x00\x00", b"\x01\x00\x00\x00\x00\x02\x00\x00\x00\x01"]
)
def test_both_reject_malformed_bytes(harness: tuple[Chain, Contract], data: bytes) -> None:
    chain, h = harness
    with pytest.raises(TensorCodecError):
        chain.call(h.functions.decode(data))
    with pytest.raises(Exception):  # noqa: B017 - ModelError on the Python side
        decode_tensors(data)


def test_cid_reference_and_range(harness: tuple[Chain, Contract]) -> None:
    chain, h = harness
    cid = CID.of(b"tensors")
    assert h.functions.cid(encode_reference(cid)).call() == bytes(cid)
    assert h.functions.kind(encode_reference(cid)).call() == 2
    with pytest.raises(TensorCodecError):
        chain.call(h.functions.cid(encode_tensors([])))
    with pytest.raises(TensorCodecError):
        chain.call(h.functions.encodeOne(0, [2**31]))
