"""Mode zk end to end on anvil: the digits MLP's real EZKL proof checked by its real verifier.

One EZKL setup and two proofs per session (input A and input B, both digits samples); every
test deploys the circuit's dedicated verifier, registers the model with its circuit, stakes a
node for mode zk and requests through a TestConsumer (snapshot/revert isolates the chain).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from coordinator_kit import DEPLOYER, INPUT, MODE_NONE, PRICE, ROYALTY_BPS, Kit, account
from eth_utils.crypto import keccak
from web3.contract.contract import Contract

from verinfer.chain.client import Chain
from verinfer.chain.codec import encode_tensors
from verinfer.chain.coordinator_errors import (
    InputMismatchError,
    InvalidProofError,
    InvalidRedundancyError,
    NotAssignedError,
    WrongModeError,
    WrongStatusError,
    ZkInputNotInlineError,
    ZkMalformedTensorError,
    ZkScaleMismatchError,
)
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.chain.token import Token
from verinfer.models.registry import Mode, ModelInput, RegistryClient, ZkCircuit
from verinfer.store import LocalStore
from verinfer.verify import Proof, ZkArtifacts, ZkModel
from verinfer.verify.backend import felt_to_int, int_to_felt
from verinfer.verify.zk import EzklBackend, ZkOptions
from verinfer.verify.zk_chain import deploy_bytecode
from verinfer.verify.zk_srs import SRS_DIR_ENV

pytestmark = [pytest.mark.integration, pytest.mark.zk]

MODELS = Path(__file__).resolve().parents[2] / "examples" / "models"
MODE_ZK = 8
FEE = 2_000
PROTOCOL_FEE_BPS = 200
NODE = account(1)
STRANGER = account(2)
TREASURY = account(90)
STATUS_PENDING, STATUS_FULFILLED = 1, 3
ZK_FULFIL_GAS_TARGET = 700_000


@dataclass(frozen=True)
class Answer:
    """A request input and the node's answer: the output bytes and the proof."""

    input: bytes
    output: bytes
    proof: Proof


@dataclass(frozen=True)
class Circuit:
    store: LocalStore
    artifacts: ZkArtifacts
    artifacts_cid: str
    a: Answer  # digits sample 0
    b: Answer  # digits sample 1


def _answer(backend: EzklBackend, artifacts: ZkArtifacts, sample: np.ndarray) -> Answer:
    """What a zk node does: quantize the input at the circuit's scale, prove, and encode the
    proof's output instances as the output tensor."""
    q = np.round(sample * 2**artifacts.input_scale).astype(np.int64)
    proof = backend.prove(artifacts, (q / 2**artifacts.input_scale).tolist())
    n_in = artifacts.n_inputs
    assert proof.instances[:n_in] == tuple(int_to_felt(int(v)) for v in q)
    out_q = np.array([felt_to_int(f) for f in proof.instances[n_in:]], dtype=np.int64)
    return Answer(
        input=encode_tensors([(q, artifacts.input_scale)]),
        output=encode_tensors([(out_q, artifacts.output_scale)]),
        proof=proof,
    )


@pytest.fixture(scope="session")
def circuit(tmp_path_factory: pytest.TempPathFactory) -> Circuit:
    root = tmp_path_factory.mktemp("zk-coordinator")
    srs_dir = Path(os.environ.get(SRS_DIR_ENV) or root / "srs")
    store = LocalStore(root / "store")
    backend = EzklBackend(store, ZkOptions(srs_dir=srs_dir), work_dir=root / "work")
    samples = np.load(MODELS / "digits_sample.npy").astype(np.float64)
    model = ZkModel(MODELS / "digits_mlp.onnx", tuple(tuple(map(float, r)) for r in samples))
    artifacts = backend.setup(model)
    artifacts_cid = str(store.put(json.dumps(artifacts.to_json(), sort_keys=True).encode()))
    a = _answer(backend, artifacts, samples[0])
    b = _answer(backend, artifacts, samples[1])
    assert a.output != b.output and a.input != b.input
    return Circuit(store, artifacts, artifacts_cid, a, b)


@dataclass(frozen=True)
class ZkSetup:
    kit: Kit
    model_id: int
    verifier: str
    consumer: Contract
    node: CoordinatorClient  # signs as NODE


@pytest.fixture
def zk(chain: Chain, book: AddressBook, circuit: Circuit) -> ZkSetup:
    kit = Kit(chain, book)
    kit.send(None, "InferenceCoordinator", "setProtocolFee", TREASURY.address, PROTOCOL_FEE_BPS)
    a = circuit.artifacts
    verifier = deploy_bytecode(chain, circuit.store.get(a.verifier.bytecode_cid)).address
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    model_id, _ = registry.register(
        ModelInput(
            name="digits", cid=a.model_cid, input_shapes=[list(a.input_shape)],
            output_shapes=[list(a.output_shape)], price=PRICE, royalty_bps=ROYALTY_BPS,
            modes=Mode.NONE | Mode.ZK,
            zk=ZkCircuit.from_artifacts(verifier, a, circuit.artifacts_cid),
        )
    )  # fmt: skip
    kit.add_node(NODE, model_id, modes=MODE_NONE | MODE_ZK, fee=FEE)
    address, _ = chain.deploy("TestConsumer", kit.coordinator.address)
    kit.mint(address, 10**9)
    consumer = chain.contract("TestConsumer", address)
    node = CoordinatorClient(kit.as_(NODE), kit.coordinator.address)
    return ZkSetup(kit, model_id, verifier, consumer, node)


def request(zk: ZkSetup, data: bytes, mode: int = MODE_ZK) -> int:
    """The consumer requests ``data`` in ``mode``; returns the request id."""
    kit = zk.kit
    fee = kit.quote(zk.model_id, mode)
    fn = zk.consumer.functions.requestInference(
        zk.model_id, data, mode, fee, kit.now() + 3600, 200_000, 1
    )
    (event,) = kit.events("InferenceRequested", kit.chain.transact(fn))
    assert event["assigned"] == [NODE.address] and event["mode"] == mode
    return int(event["requestId"])


def ledger(zk: ZkSetup) -> tuple[int, ...]:
    kit = zk.kit
    accounts = (NODE.address, DEPLOYER.address, TREASURY.address, zk.consumer.address)
    return tuple(kit.owed(a) for a in accounts)


def expect_nothing_paid(zk: ZkSetup, request_id: int, before: tuple[int, ...]) -> None:
    info = zk.kit.get_request(request_id)
    assert info["status"] == STATUS_PENDING and info["escrow"] > 0
    assert ledger(zk) == before
    assert int(zk.kit.chain.call(zk.consumer.functions.deliveries())) == 0


def test_zk_config_is_the_circuit(zk: ZkSetup, circuit: Circuit) -> None:
    registry = RegistryClient(zk.kit.chain, zk.kit.book.address("ModelRegistry"))
    a = circuit.artifacts
    assert registry.zk_config(zk.model_id) == (zk.verifier, a.input_scale, a.output_scale)
    record = registry.get(zk.model_id)
    assert record.zk.vk_hash == a.vk_hash and record.zk.settings_hash == a.settings_hash
    assert record.zk.artifacts_cid == circuit.artifacts_cid


def test_fulfil_zk_delivers_a_proved_output_and_pays(zk: ZkSetup, circuit: Circuit) -> None:
    kit, a = zk.kit, circuit.a
    rid = request(zk, a.input)
    info = kit.get_request(rid)
    assert info["inputHash"] == keccak(a.input) and info["redundancy"] == 1
    assert info["mode"] == MODE_ZK and info["nodeFee"] == FEE
    escrow = info["escrow"]
    receipt = zk.node.fulfil_zk(rid, a.input, a.output, a.proof.proof)
    gas_first = int(receipt["gasUsed"])

    (event,) = kit.events("InferenceFulfilled", receipt)
    assert event["output"] == a.output and event["outputHash"] == keccak(a.output)
    assert kit.chain.call(zk.consumer.functions.lastOutput()) == a.output
    assert int(kit.chain.call(zk.consumer.functions.lastRequestId())) == rid
    # Settled as mode none: the node gets F + (P - R), the owner R, the treasury T.
    royalty = PRICE * ROYALTY_BPS // 10_000
    protocol_fee = (PRICE + FEE) * PROTOCOL_FEE_BPS // 10_000
    assert escrow == PRICE + FEE + protocol_fee
    assert ledger(zk) == (FEE + PRICE - royalty, royalty, protocol_fee, 0)
    info = kit.get_request(rid)
    assert info["status"] == STATUS_FULFILLED and info["escrow"] == 0
    assert info["inputHash"] == b"\0" * 32  # the slot was deleted

    # Steady state: the same input again (a proof binds input and output, not the request),
    # with every balance and the consumer's output slots already non-zero.
    rid2 = request(zk, a.input)
    gas = int(zk.node.fulfil_zk(rid2, a.input, a.output, a.proof.proof)["gasUsed"])
    print(f"\nfulfilZk gas (digits MLP): first {gas_first:,}, steady state {gas:,}")  # noqa: T201
    assert gas <= ZK_FULFIL_GAS_TARGET
    with pytest.raises(WrongStatusError):
        zk.node.fulfil_zk(rid2, a.input, a.output, a.proof.proof)


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def _bump_output(output: bytes, index: int = 0) -> bytes:
    """The output with value ``index`` changed by one."""
    offset = 6 + 4 * index
    v = int.from_bytes(output[offset : offset + 4], "big", signed=True) + 1
    return output[:offset] + v.to_bytes(4, "big", signed=True) + output[offset + 4 :]


def test_bad_proofs_pay_nothing_and_leave_the_request_open(zk: ZkSetup, circuit: Circuit) -> None:
    a, b = circuit.a, circuit.b
    rid = request(zk, a.input)
    before = ledger(zk)
    cases = [
        ("tampered proof byte", a.input, a.output, _flip(a.proof.proof, 100), InvalidProofError),
        # A valid proof of input B, submitted with request A's input: instances mismatch.
        ("proof of another input", a.input, b.output, b.proof.proof, InvalidProofError),
        ("output A with proof B", a.input, a.output, b.proof.proof, InvalidProofError),
        # The same proof with input B as the `input` argument: not the request's input.
        ("another input", b.input, b.output, b.proof.proof, InputMismatchError),
        ("output off by one", a.input, _bump_output(a.output), a.proof.proof, InvalidProofError),
    ]
    for label, data, output, proof, error in cases:
        with pytest.raises(error) as err:
            zk.node.fulfil_zk(rid, data, output, proof)
        assert err.value.args_by_name["requestId"] == rid, label
        expect_nothing_paid(zk, rid, before)
    # The node may still deliver before the deadline.
    zk.node.fulfil_zk(rid, a.input, a.output, a.proof.proof)
    assert zk.kit.chain.call(zk.consumer.functions.lastOutput()) == a.output


def test_tensor_shape_and_scale_errors(zk: ZkSetup, circuit: Circuit) -> None:
    a, art = circuit.a, circuit.artifacts
    rid = request(zk, a.input)
    before = ledger(zk)
    wrong_scale = a.output[:1] + bytes([(art.output_scale + 1) & 0xFF]) + a.output[2:]
    with pytest.raises(ZkScaleMismatchError) as err:
        zk.node.fulfil_zk(rid, a.input, wrong_scale, a.proof.proof)
    assert err.value.args_by_name == {
        "requestId": rid, "isOutput": True, "expected": art.output_scale,
        "got": art.output_scale + 1,
    }  # fmt: skip
    two_tensors = a.output + a.output[1:]
    short = a.output[:-1]
    cid_kind = b"\x02" + a.output[1:]
    for bad in (two_tensors, short, cid_kind, b"\x01"):
        with pytest.raises(ZkMalformedTensorError) as malformed:
            zk.node.fulfil_zk(rid, a.input, bad, a.proof.proof)
        assert malformed.value.args_by_name == {"requestId": rid, "isOutput": True}
    expect_nothing_paid(zk, rid, before)

    # The input's scale is checked against the circuit too (a request at the wrong scale can
    # never be proved; it is refunded after the deadline).
    other = a.input[:1] + bytes([(art.input_scale + 1) & 0xFF]) + a.input[2:]
    rid2 = request(zk, other)
    with pytest.raises(ZkScaleMismatchError) as err:
        zk.node.fulfil_zk(rid2, other, a.output, a.proof.proof)
    assert err.value.args_by_name["isOutput"] is False


def test_zk_requests_need_an_inline_input(zk: ZkSetup) -> None:
    kit = zk.kit
    reference = b"\x02" + bytes.fromhex("01551220") + b"\x07" * 32
    fee = kit.quote(zk.model_id, MODE_ZK)
    fn = zk.consumer.functions.requestInference(
        zk.model_id, reference, MODE_ZK, fee, kit.now() + 3600, 200_000, 1
    )
    with pytest.raises(ZkInputNotInlineError) as err:
        kit.chain.transact(fn)
    assert err.value.args_by_name == {"kind": 2}
    assert int(kit.call("InferenceCoordinator", "requestCount")) == 0
    # Redundancy is 1 in mode zk, as in mode none.
    fn = zk.consumer.functions.requestInference(
        zk.model_id, INPUT, MODE_ZK, fee, kit.now() + 3600, 200_000, 3
    )
    with pytest.raises(InvalidRedundancyError):
        kit.chain.transact(fn)


def test_wrong_mode_and_wrong_node(zk: ZkSetup, circuit: Circuit) -> None:
    kit, a = zk.kit, circuit.a
    rid = request(zk, a.input)
    with pytest.raises(WrongModeError) as err:
        zk.node.fulfil(rid, a.output)
    assert err.value.args_by_name == {"requestId": rid, "mode": MODE_ZK}
    stranger = CoordinatorClient(kit.as_(STRANGER), kit.coordinator.address)
    with pytest.raises(NotAssignedError):
        stranger.fulfil_zk(rid, a.input, a.output, a.proof.proof)

    none_rid = request(zk, INPUT, mode=MODE_NONE)
    with pytest.raises(WrongModeError) as err:
        zk.node.fulfil_zk(none_rid, INPUT, a.output, a.proof.proof)
    assert err.value.args_by_name == {"requestId": none_rid, "mode": MODE_NONE}
    assert kit.get_request(none_rid)["inputHash"] == b"\0" * 32


def test_unanswered_zk_request_is_refunded_and_the_hash_deleted(
    zk: ZkSetup, circuit: Circuit
) -> None:
    kit = zk.kit
    rid = request(zk, circuit.a.input)
    escrow = kit.get_request(rid)["escrow"]
    kit.advance(3601)
    CoordinatorClient(kit.chain, kit.coordinator.address).refund(rid)
    info = kit.get_request(rid)
    assert info["inputHash"] == b"\0" * 32 and info["escrow"] == 0
    assert kit.owed(zk.consumer.address) >= escrow  # plus the node's no-show slash
    assert kit.node_stake(NODE.address)[0] < 100 * 10**6


def test_python_client_speaks_mode_zk(zk: ZkSetup, circuit: Circuit) -> None:
    """``CoordinatorClient.request`` takes mode "zk" (an EOA requester: no callback)."""
    kit, a = zk.kit, circuit.a
    requester = account(91)
    client = CoordinatorClient(kit.as_(requester), kit.coordinator.address)
    assert InferenceMode.parse("zk") is InferenceMode.ZK and InferenceMode.parse(8) == 8
    fee = client.quote(zk.model_id, "zk")
    kit.mint(requester.address, fee)
    token = Token(kit.as_(requester), kit.token.address)
    sent = client.request(
        zk.model_id, a.input, "zk", max_fee=fee, deadline=kit.now() + 3600, token=token
    )
    assert sent.assigned == [NODE.address]
    assert client.get_request(sent.request_id).input_hash == "0x" + keccak(a.input).hex()
    zk.node.fulfil_zk(sent.request_id, a.input, a.output, a.proof.proof)
    assert client.get_request(sent.request_id).status.settled
