"""zk mode's pure parts: the cost rule, limits, SRS checks, calldata, worker-failure mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi.abi import decode

from verinfer.verify import ZkLimits
from verinfer.verify.backend import FIELD_MODULUS, felt_to_float, int_to_felt
from verinfer.verify.errors import (
    SrsError,
    ZkOutOfMemoryError,
    ZkStepError,
    ZkUnsupportedModelError,
)
from verinfer.verify.zk_chain import encode_calldata, vka_digest, vka_words
from verinfer.verify.zk_estimate import CALIBRATION, circuit_class, extrapolate
from verinfer.verify.zk_jobs import _raise_failure
from verinfer.verify.zk_srs import check_srs_file, expected_size


def test_estimate_doubles_per_logrow_and_matches_its_calibration_point() -> None:
    e15, e16 = extrapolate(15, "plain", 74), extrapolate(16, "plain", 74)
    assert e16.prove_seconds == pytest.approx(2 * e15.prove_seconds, rel=0.02)
    assert e16.pk_bytes == pytest.approx(2 * e15.pk_bytes, rel=1e-6)
    mlp = next(p for p in CALIBRATION if p.name.startswith("digits_mlp"))
    assert mlp.prove_seconds <= e15.prove_seconds <= 2 * mlp.prove_seconds  # with 8-16-3's
    assert e15.peak_memory_bytes == mlp.peak_memory_bytes  # the largest rate of its class
    assert e15.verify_gas == pytest.approx(mlp.verify_gas, rel=0.01)


def test_lookup_rule_predicts_lenet_from_the_cnn_within_2x() -> None:
    cnn_only = [p for p in CALIBRATION if p.name.startswith("digits_cnn")][0]
    rows = 1 << 19
    predicted_prove = cnn_only.prove_seconds / (1 << cnn_only.logrows) * rows
    assert 242 / 2 <= predicted_prove <= 242 * 2  # TOOLCHAIN.md's LeNet-5 at logrows 19


def test_circuit_class() -> None:
    assert circuit_class({"num_shuffles": 0, "required_lookups": []}) == "plain"
    assert circuit_class({"num_shuffles": 128}) == "lookup"
    assert circuit_class({"required_lookups": [{"ReLU": 1}]}) == "lookup"


def test_limits_give_every_reason() -> None:
    est = extrapolate(19, "lookup", 74)
    reasons = ZkLimits(max_memory_bytes=2**30, max_prove_seconds=60).exceeded(est)
    assert len(reasons) == 2 and "GiB exceeds" in reasons[0] and "s exceeds" in reasons[1]
    assert ZkLimits().exceeded(est) == []


def test_srs_header_and_size_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "k3.srs"
    good.write_bytes((3).to_bytes(4, "little") + bytes(expected_size(3) - 4))
    check_srs_file(good, 3)
    with pytest.raises(SrsError, match="logrows 3, but this circuit needs logrows 4"):
        check_srs_file(good, 4)
    good.write_bytes(good.read_bytes()[:-1])
    with pytest.raises(SrsError, match="truncated"):
        check_srs_file(good, 3)
    with pytest.raises(SrsError, match="cannot read"):
        check_srs_file(tmp_path / "missing.srs", 3)


def test_calldata_encoding() -> None:
    dedicated = encode_calldata("dedicated", b"\x01" * 40, (1, FIELD_MODULUS - 1))
    assert dedicated[:4].hex() == "1e8e1e13"
    assert decode(["bytes", "uint256[]"], dedicated[4:]) == (b"\x01" * 40, (1, FIELD_MODULUS - 1))
    vka = bytes(range(64))
    reusable = encode_calldata("reusable", b"p", (7,), vka)
    assert reusable[:4].hex() == "3409fc9f"
    assert decode(["bytes", "uint256[]", "bytes32[]"], reusable[4:])[2] == tuple(vka_words(vka))
    assert vka_digest(vka).startswith("0x") and len(vka_digest(vka)) == 66


def test_felts_are_signed_fixed_point() -> None:
    assert felt_to_float(int_to_felt(-1024), 13) == -0.125
    assert felt_to_float(1024, 13) == 0.125


def test_worker_failures_map_to_typed_errors() -> None:
    tail = "verinfer-zk-step: compile_circuit\n"
    with pytest.raises(ZkUnsupportedModelError, match="compile_circuit") as exc:
        _raise_failure("setup", {"error": "RuntimeError: unsupported operation: Foo"}, tail, None)
    assert exc.value.step == "compile_circuit"
    with pytest.raises(ZkOutOfMemoryError):
        _raise_failure("setup", {"error": "MemoryError: ", "memory_error": True}, tail, 2**30)
    with pytest.raises(ZkStepError, match="boom"):
        _raise_failure("setup", {"error": "RuntimeError: boom"}, tail, None)


def test_unimplemented_tract_op_is_named() -> None:
    error = (
        'RuntimeError: Failed to generate settings: [graph] [tract] Translating node #1 "y" '
        "Unimplemented(Gelu) ToTypedTranslator"
    )
    with pytest.raises(ZkUnsupportedModelError, match=r"does not support the ONNX op Gelu"):
        _raise_failure("settings", {"error": error}, "verinfer-zk-step: gen_settings\n", None)
