"""Optimistic mode (4) through the InferenceCoordinator on a real anvil: the assigned node
claims the digits MLP's real output and trace, the DisputeGame deployed by ``deploy_suite``
decides disputes, and ``finalizeOptimistic`` / ``refund`` settle the request."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from coordinator_kit import (
    DEPLOYER,
    DISSENT_SLASH,
    MIN_STAKE,
    MODE_NONE,
    PRICE,
    ROYALTY_BPS,
    Kit,
    account,
)
from dispute_kit import RandomChallenger, corrupted_values
from eth_utils.crypto import keccak
from web3.contract.contract import Contract

from verinfer.chain.client import Chain
from verinfer.chain.coordinator_errors import (
    ClaimNotDeliverableError,
    InvalidConfigError,
    ModelNotServableError,
    NotAssignedError,
    OutputMismatchError,
    UnsupportedModeError,
    WrongModeError,
    WrongStatusError,
    ZkInputNotInlineError,
)
from verinfer.chain.deploy import SuiteParams
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient, InferenceMode, RequestStatus
from verinfer.models.registry import (
    Mode,
    ModelInput,
    OptimisticConfigMissingError,
    RegistryClient,
)
from verinfer.optimistic.descriptors import build_descriptors, steps_root
from verinfer.optimistic.errors import DisputeRevertError
from verinfer.optimistic.game import (
    ChallengerParty,
    ClaimerParty,
    DisputeDriver,
    input_bytes,
    output_bytes,
)
from verinfer.runtime.commit import commit_list
from verinfer.runtime.executor import Execution
from verinfer.runtime.program import Program
from verinfer.runtime.testmodels import TEST_MODELS

pytestmark = pytest.mark.integration

MODE_OPTIMISTIC = 4
FEE = 2_000
CALLBACK_GAS = 600_000  # the consumer stores the 326-byte output
PROTOCOL_FEE_BPS = 200
NODE = account(1)
OTHER_NODE = account(2)
CHALLENGER = account(3)
TREASURY = account(90)
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
GAME = SuiteParams()
CLAIM_OPEN, CLAIM_FINALIZED, CLAIM_CHALLENGER_WON = 1, 3, 5


@cache
def digits() -> tuple[Program, Execution]:
    model = TEST_MODELS["digits_mlp"]
    program = model.compile()
    return program, program.run(model.inputs())


@dataclass(frozen=True)
class Setup:
    kit: Kit
    model_id: int
    consumer: Contract
    node: CoordinatorClient  # signs as NODE
    game: Contract
    program: Program
    execution: Execution

    @property
    def input(self) -> bytes:
        return input_bytes(self.program, self.execution.values)

    @property
    def output(self) -> bytes:
        return output_bytes(self.program, self.execution.values)

    @property
    def trace_root(self) -> bytes:
        return bytes.fromhex(self.execution.trace_root[2:])


def _model_input(program: Program, **overrides: Any) -> ModelInput:
    fields: dict[str, Any] = {
        "name": "digits", "cid": CID,
        "input_shapes": [list(t.shape) for t in program.inputs],
        "output_shapes": [list(t.shape) for t in program.outputs],
        "price": PRICE, "royalty_bps": ROYALTY_BPS, "modes": Mode.NONE | Mode.OPTIMISTIC,
        "program_hash": program.program_hash, "weights_root": program.weights_root,
        "steps_root": "0x" + steps_root(build_descriptors(program)).hex(),
        "n_steps": len(program.steps), "n_constants": len(program.constants),
    }  # fmt: skip
    fields.update(overrides)
    return ModelInput(**fields)


def optimistic_setup(
    chain: Chain, book: AddressBook, consumer: str = "TestConsumer", stake: int = MIN_STAKE
) -> Setup:
    """The digits MLP registered for modes none and optimistic, NODE serving it with ``stake``,
    and a funded consumer contract ``consumer`` (its constructor takes the coordinator)."""
    program, execution = digits()
    kit = Kit(chain, book)
    kit.send(None, "InferenceCoordinator", "setProtocolFee", TREASURY.address, PROTOCOL_FEE_BPS)
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    model_id, _ = registry.register(_model_input(program))
    kit.add_node(NODE, model_id, modes=MODE_NONE | MODE_OPTIMISTIC, fee=FEE, stake=stake)
    address, _ = chain.deploy(consumer, kit.coordinator.address)
    kit.mint(address, 10**9)
    node = CoordinatorClient(kit.as_(NODE), kit.coordinator.address)
    game = chain.contract("DisputeGame", book.address("DisputeGame"))
    return Setup(kit, model_id, chain.contract(consumer, address), node, game, program, execution)


@pytest.fixture
def opt(chain: Chain, book: AddressBook) -> Setup:
    return optimistic_setup(chain, book)


def request(s: Setup, data: bytes | None = None, mode: int = MODE_OPTIMISTIC) -> int:
    kit = s.kit
    fee = kit.quote(s.model_id, mode)
    fn = s.consumer.functions.requestInference(
        s.model_id, s.input if data is None else data, mode, fee, kit.now() + 3600, CALLBACK_GAS, 1
    )
    (event,) = kit.events("InferenceRequested", kit.chain.transact(fn))
    assert event["assigned"] == [NODE.address] and event["mode"] == mode
    return int(event["requestId"])


def ledger(s: Setup) -> tuple[int, ...]:
    accounts = (NODE.address, DEPLOYER.address, TREASURY.address, s.consumer.address)
    return tuple(s.kit.owed(a) for a in accounts)


def claim_status(s: Setup, claim_id: int) -> int:
    return int(s.kit.chain.call(s.game.functions.claims(claim_id))[2])


def driver(s: Setup) -> DisputeDriver:
    return DisputeDriver(s.kit.as_(NODE), s.kit.as_(CHALLENGER), s.game.address)


def expect_paid_as_mode_none(s: Setup, rid: int, output: bytes) -> None:
    royalty = PRICE * ROYALTY_BPS // 10_000
    protocol_fee = (PRICE + FEE) * PROTOCOL_FEE_BPS // 10_000
    assert ledger(s) == (FEE + PRICE - royalty, royalty, protocol_fee, 0)
    assert s.kit.chain.call(s.consumer.functions.lastOutput()) == output
    assert int(s.kit.chain.call(s.consumer.functions.lastRequestId())) == rid
    info = s.kit.get_request(rid)
    assert info["status"] == RequestStatus.FULFILLED and info["escrow"] == 0
    assert info["inputHash"] == b"\0" * 32


def test_registry_records_the_optimistic_config(opt: Setup) -> None:
    registry = RegistryClient(opt.kit.chain, opt.kit.book.address("ModelRegistry"))
    record = registry.get(opt.model_id)
    expected = _model_input(opt.program)
    assert (record.steps_root, record.n_steps, record.n_constants) == (
        expected.steps_root, expected.n_steps, expected.n_constants,
    )  # fmt: skip
    assert registry.optimistic_config(opt.model_id) == (
        opt.program.weights_root, expected.steps_root, expected.n_steps, expected.n_constants,
    )  # fmt: skip
    # Mode optimistic needs the program's commitments: on-chain and in the Python check.
    bad = _model_input(opt.program, steps_root="0x" + "00" * 32)
    with pytest.raises(OptimisticConfigMissingError):
        bad.validate()
    fn = registry.contract.functions.register(bad.as_tuple())
    with pytest.raises(OptimisticConfigMissingError):
        opt.kit.chain.transact(fn)
    plain, _ = registry.register(_model_input(opt.program, modes=Mode.NONE, n_steps=0))
    with pytest.raises(OptimisticConfigMissingError):
        registry.set_modes(plain, Mode.NONE | Mode.OPTIMISTIC)


def test_undisputed_claim_finalizes_after_the_window(opt: Setup) -> None:
    kit = opt.kit
    assert opt.trace_root == commit_list(ClaimerParty(opt.program, opt.execution.values).leaves)
    rid = request(opt)
    info = kit.get_request(rid)
    assert info["inputHash"] == keccak(opt.input) and info["mode"] == MODE_OPTIMISTIC
    claim_id, receipt = opt.node.claim(rid, opt.output, opt.trace_root)
    claim_gas = int(receipt["gasUsed"])
    assert opt.node.claim_of(rid) == claim_id
    assert kit.get_request(rid)["status"] == RequestStatus.CLAIMED
    claim = kit.chain.call(opt.game.functions.claims(claim_id))
    assert claim[0] == NODE.address and claim[2] == CLAIM_OPEN
    assert (claim[3], claim[4]) == (len(opt.program.steps), len(opt.program.constants))
    assert claim[9] == keccak(opt.input) and claim[10] == keccak(opt.output)
    assert not kit.events("InferenceFulfilled", receipt)

    with pytest.raises(DisputeRevertError) as err:  # the challenge window is open
        opt.node.finalize_optimistic(rid, opt.output)
    assert err.value.name == "VerinferChallengeWindowOpen"
    kit.advance(GAME.challenge_window_s + 1)
    with pytest.raises(OutputMismatchError):
        opt.node.finalize_optimistic(rid, opt.output[:-1] + b"\x07")
    anyone = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address)
    receipt = anyone.finalize_optimistic(rid, opt.output)
    finalize_gas = int(receipt["gasUsed"])
    (event,) = kit.events("InferenceFulfilled", receipt)
    assert event["output"] == opt.output
    expect_paid_as_mode_none(opt, rid, opt.output)
    assert claim_status(opt, claim_id) == CLAIM_FINALIZED
    assert int(kit.chain.call(opt.game.functions.credits(NODE.address))) == GAME.claim_bond_wei
    with pytest.raises(WrongStatusError):
        anyone.finalize_optimistic(rid, opt.output)
    with pytest.raises(WrongStatusError):
        anyone.refund(rid)

    # Steady state: every balance and the consumer's slots already non-zero.
    rid2 = request(opt)
    _, receipt = opt.node.claim(rid2, opt.output, opt.trace_root)
    kit.advance(GAME.challenge_window_s + 1)
    gas2 = int(opt.node.finalize_optimistic(rid2, opt.output)["gasUsed"])
    # Mode none on the same model and output, for the honest path's overhead.
    fulfil_gas = int(opt.node.fulfil(request(opt, mode=MODE_NONE), opt.output)["gasUsed"])
    print(  # noqa: T201
        f"\noptimistic gas (digits MLP): claim {claim_gas:,} (steady {int(receipt['gasUsed']):,}),"
        f" finalizeOptimistic {finalize_gas:,} (steady {gas2:,}); mode none fulfil of the same"
        f" output (steady) {fulfil_gas:,}"
    )


def test_lost_claim_slashes_the_node_and_refunds_the_requester(opt: Setup) -> None:
    kit, program, execution = opt.kit, opt.program, opt.execution
    values = corrupted_values(program, execution, 0, 100, 5, propagate=True)
    claimer = ClaimerParty(program, values)
    wrong = output_bytes(program, values)
    assert wrong != opt.output
    rid = request(opt)
    fee = kit.get_request(rid)["escrow"]
    claim_id, _ = opt.node.claim(rid, wrong, commit_list(claimer.leaves))
    d = driver(opt)
    d.challenge(claim_id)
    record = d.play(claim_id, claimer, ChallengerParty(program, execution), wrong)
    assert record.claimer_won is False
    assert claim_status(opt, claim_id) == CLAIM_CHALLENGER_WON

    with pytest.raises(ClaimNotDeliverableError) as err:
        opt.node.finalize_optimistic(rid, wrong)
    assert err.value.args_by_name["claimStatus"] == CLAIM_CHALLENGER_WON
    stake_before, _ = kit.node_stake(NODE.address)
    receipt = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address).refund(rid)
    assert not kit.events("InferenceFulfilled", receipt)
    (event,) = kit.events("Refunded", receipt)
    assert event["amount"] == fee
    stake_after, _ = kit.node_stake(NODE.address)
    assert stake_before - stake_after == DISSENT_SLASH
    assert ledger(opt) == (0, 0, 0, fee + DISSENT_SLASH)
    info = kit.get_request(rid)
    assert info["status"] == RequestStatus.REFUNDED and info["escrow"] == 0
    assert int(kit.chain.call(opt.consumer.functions.deliveries())) == 0
    with pytest.raises(WrongStatusError):
        opt.node.finalize_optimistic(rid, wrong)


def test_honest_claim_survives_a_dishonest_challenger(opt: Setup) -> None:
    kit = opt.kit
    rid = request(opt)
    claim_id, _ = opt.node.claim(rid, opt.output, opt.trace_root)
    d = driver(opt)
    d.challenge(claim_id)
    with pytest.raises(ClaimNotDeliverableError):  # disputed: not yet
        opt.node.finalize_optimistic(rid, opt.output)
    with pytest.raises(WrongStatusError):  # a claim that has not lost is not refundable
        opt.node.refund(rid)
    claimer = ClaimerParty(opt.program, opt.execution.values)
    challenger = RandomChallenger(opt.program, opt.execution, seed=7)
    record = d.play(claim_id, claimer, challenger, opt.output)
    assert record.claimer_won is True
    assert claim_status(opt, claim_id) == CLAIM_OPEN  # upheld: open to others until its window ends
    with pytest.raises(DisputeRevertError):
        opt.node.finalize_optimistic(rid, opt.output)  # VerinferChallengeWindowOpen
    kit.advance(GAME.challenge_window_s + 1)
    receipt = opt.node.finalize_optimistic(rid, opt.output)
    (event,) = kit.events("InferenceFulfilled", receipt)
    assert event["output"] == opt.output
    expect_paid_as_mode_none(opt, rid, opt.output)


def test_claim_rules(opt: Setup) -> None:
    kit = opt.kit
    rid = request(opt)
    stranger = CoordinatorClient(kit.as_(OTHER_NODE), kit.coordinator.address)
    with pytest.raises(NotAssignedError):
        stranger.claim(rid, opt.output, opt.trace_root)
    none_rid = request(opt, mode=MODE_NONE)
    with pytest.raises(WrongModeError):
        opt.node.claim(none_rid, opt.output, opt.trace_root)
    with pytest.raises(WrongModeError):
        opt.node.finalize_optimistic(none_rid, opt.output)
    with pytest.raises(WrongStatusError):  # not claimed yet
        opt.node.finalize_optimistic(rid, opt.output)
    reference = b"\x02" + bytes.fromhex("01551220") + b"\x07" * 32
    fee = kit.quote(opt.model_id, MODE_OPTIMISTIC)
    fn = opt.consumer.functions.requestInference(
        opt.model_id, reference, MODE_OPTIMISTIC, fee, kit.now() + 3600, 200_000, 1
    )
    with pytest.raises(ZkInputNotInlineError):
        kit.chain.transact(fn)
    opt.node.claim(rid, opt.output, opt.trace_root)
    with pytest.raises(WrongStatusError):  # one claim per request
        opt.node.claim(rid, opt.output, opt.trace_root)
    # An unclaimed optimistic request is refunded after its deadline, as in mode none.
    rid3 = request(opt)
    kit.advance(3601)
    opt.node.refund(rid3)
    assert kit.get_request(rid3)["inputHash"] == b"\0" * 32


def test_python_client_requests_in_mode_optimistic(opt: Setup) -> None:
    kit = opt.kit
    assert InferenceMode.parse("optimistic") == InferenceMode.OPTIMISTIC == MODE_OPTIMISTIC
    requester = account(4)
    client = CoordinatorClient(kit.as_(requester), kit.coordinator.address)
    fee = client.quote(opt.model_id, "optimistic")
    kit.mint(requester.address, fee)
    kit.approve(requester, kit.coordinator.address, fee)
    sent = client.request(
        opt.model_id, opt.input, "optimistic", max_fee=fee, deadline=kit.now() + 3600
    )
    assert sent.assigned == [NODE.address]
    info = client.get_request(sent.request_id)
    assert info.mode == InferenceMode.OPTIMISTIC and info.status == RequestStatus.PENDING


def test_mode_optimistic_needs_a_dispute_game(chain: Chain, book: AddressBook) -> None:
    """A coordinator without a game refuses mode 4 (quote and request); the game is set once."""
    address, _ = chain.deploy(
        "InferenceCoordinator",
        book.address("ModelRegistry"),
        book.address("NodeRegistry"),
        book.address("PaymentToken"),
        TREASURY.address,
        PROTOCOL_FEE_BPS,
        [60, 120, 300],
        [0, 0],
    )
    coordinator = chain.contract("InferenceCoordinator", address)
    with pytest.raises(UnsupportedModeError):
        chain.call(coordinator.functions.quote(1, MODE_OPTIMISTIC, 1))
    with pytest.raises(InvalidConfigError):
        chain.transact(coordinator.functions.setDisputeGame("0x" + "00" * 20))
    chain.transact(coordinator.functions.setDisputeGame(book.address("DisputeGame")))
    assert chain.call(coordinator.functions.disputeGame()) == book.address("DisputeGame")
    with pytest.raises(InvalidConfigError):
        chain.transact(coordinator.functions.setDisputeGame(book.address("DisputeGame")))


def test_a_claim_against_a_model_deprecated_since_is_still_disputed(opt: Setup) -> None:
    """Deprecating a model stops new requests, not the claims already made: a wrong claim is
    still proven wrong against the commitments it was opened with."""
    kit, program, execution = opt.kit, opt.program, opt.execution
    rid = request(opt)
    registry = RegistryClient(kit.chain, kit.book.address("ModelRegistry"))
    registry.set_deprecated(opt.model_id, True)
    with pytest.raises(ModelNotServableError):
        request(opt)
    values = corrupted_values(program, execution, 1, 3, -4, propagate=True)
    claimer = ClaimerParty(program, values)
    wrong = output_bytes(program, values)
    claim_id, _ = opt.node.claim(rid, wrong, commit_list(claimer.leaves))
    d = driver(opt)
    d.challenge(claim_id)
    record = d.play(claim_id, claimer, ChallengerParty(program, execution), wrong)
    assert record.claimer_won is False
    assert claim_status(opt, claim_id) == CLAIM_CHALLENGER_WON
    stake_before, _ = kit.node_stake(NODE.address)
    opt.node.refund(rid)
    assert kit.node_stake(NODE.address)[0] == stake_before - DISSENT_SLASH
    assert kit.get_request(rid)["status"] == RequestStatus.REFUNDED
