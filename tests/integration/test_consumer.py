"""VerinferConsumer and hostile callbacks: settlement always succeeds, CallbackFailed is bounded."""

from __future__ import annotations

import pytest
from coordinator_kit import DEPLOYER, INPUT, MODE_NONE, OUTPUT, Kit, account
from eth_utils.crypto import keccak
from web3.contract.contract import Contract

from verinfer.chain.client import Chain
from verinfer.chain.contract_errors import decode_revert
from verinfer.chain.coordinator_errors import InsufficientGasError, OnlyCoordinatorError
from verinfer.chain.deployments import AddressBook

pytestmark = pytest.mark.integration

NODE = account(1)


@pytest.fixture
def kit(chain: Chain, book: AddressBook) -> Kit:
    return Kit(chain, book)


def deploy_consumer(kit: Kit, name: str) -> Contract:
    address, _ = kit.chain.deploy(name, kit.coordinator.address)
    kit.mint(address, 10**9)
    return kit.chain.contract(name, address)


def request_via(kit: Kit, consumer: Contract, model: int, callback_gas: int = 300_000) -> int:
    fee = kit.quote(model)
    fn = consumer.functions.requestInference(
        model, INPUT, MODE_NONE, fee, kit.now() + 3600, callback_gas, 1
    )
    receipt = kit.chain.transact(fn)
    (ev,) = kit.events("InferenceRequested", receipt)
    assert ev["requester"] == consumer.address
    return int(ev["requestId"])


@pytest.fixture
def model(kit: Kit) -> int:
    model_id = kit.register_model()
    kit.add_node(NODE, model_id)
    return model_id


def test_consumer_receives_the_output(kit: Kit, model: int) -> None:
    consumer = deploy_consumer(kit, "TestConsumer")
    assert consumer.functions.COORDINATOR().call() == kit.coordinator.address
    assert consumer.functions.PAYMENT_TOKEN().call() == kit.token.address
    request_id = request_via(kit, consumer, model)
    receipt = kit.send(NODE, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert kit.events("CallbackFailed", receipt) == []
    assert consumer.functions.lastOutput().call() == OUTPUT
    assert consumer.functions.lastRequestId().call() == request_id
    with pytest.raises(OnlyCoordinatorError) as err:
        kit.chain.transact(consumer.functions.onInference(request_id, b"forged"))
    assert err.value.args_by_name == {"caller": DEPLOYER.address}


def test_consumer_approves_the_coordinator_once(kit: Kit, model: int) -> None:
    consumer = deploy_consumer(kit, "TestConsumer")
    fee = kit.quote(model)
    approvals = []
    for _ in range(2):
        fn = consumer.functions.requestInference(
            model, INPUT, MODE_NONE, fee, kit.now() + 3600, 100_000, 1
        )
        receipt = kit.chain.transact(fn)
        approvals.append(kit.events("Approval", receipt, contract="TestUSD"))
    assert len(approvals[0]) == 1 and approvals[1] == []  # the allowance covers the second
    assert kit.balance(kit.coordinator.address) == 2 * fee  # each request paid exactly its fee


def test_consumer_pulls_its_refund(kit: Kit, model: int) -> None:
    consumer = deploy_consumer(kit, "TestConsumer")
    before = kit.balance(consumer.address)
    request_id = request_via(kit, consumer, model)
    kit.advance(3601)
    kit.send(None, "InferenceCoordinator", "refund", request_id)
    kit.chain.transact(consumer.functions.withdrawRefunds())
    assert kit.balance(consumer.address) == before + 10 * 10**6  # fee back + the no-show slash


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (1, "MaliciousRevert"),
        (2, "ReentrancyGuardReentrantCall"),
        (3, ""),  # out of gas: no revert data
        (4, "huge"),
    ],
)
def test_hostile_callbacks_cannot_block_settlement(
    kit: Kit, model: int, behaviour: int, expected: str
) -> None:
    consumer = deploy_consumer(kit, "MaliciousConsumer")
    kit.chain.transact(consumer.functions.setBehaviour(behaviour))
    request_id = request_via(kit, consumer, model)
    receipt = kit.send(NODE, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    (failed,) = kit.events("CallbackFailed", receipt)
    reason = failed["reason"]
    if expected == "":
        assert reason == b""
    elif expected == "huge":
        assert reason == b"\0" * 256  # truncated to the bound
    else:
        assert decode_revert(reason).name == expected
    assert kit.events("InferenceFulfilled", receipt)[0]["outputHash"] == keccak(OUTPUT)
    assert kit.get_request(request_id)["status"] == 3
    assert kit.owed(NODE.address) == 11_500  # the node is paid all the same
    assert receipt["gasUsed"] < 600_000


def test_fulfil_must_carry_enough_gas_for_the_callback(kit: Kit, model: int) -> None:
    consumer = deploy_consumer(kit, "MaliciousConsumer")
    kit.chain.transact(consumer.functions.setBehaviour(3))
    request_id = request_via(kit, consumer, model, callback_gas=2_000_000)
    chain = kit.as_(NODE)
    fn = chain.contract("InferenceCoordinator", kit.coordinator.address).functions.fulfil(
        request_id, OUTPUT
    )
    with pytest.raises(InsufficientGasError) as err:
        chain.call(_WithGas(fn, NODE.address, 1_500_000))  # type: ignore[arg-type]
    assert err.value.args_by_name["required"] == 2_000_000 * 64 // 63 + 30_000
    receipt = kit.send(NODE, "InferenceCoordinator", "fulfil", request_id, OUTPUT)  # estimated
    assert len(kit.events("CallbackFailed", receipt)) == 1


class _WithGas:
    """A ContractFunction look-alike: Chain.call of ``fn`` with a gas cap (decoded reverts)."""

    def __init__(self, fn: object, sender: str, gas: int) -> None:
        self.fn, self.sender, self.gas = fn, sender, gas

    def call(self) -> object:
        return self.fn.call({"from": self.sender, "gas": self.gas})  # type: ignore[attr-defined]
