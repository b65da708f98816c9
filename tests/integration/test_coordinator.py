"""InferenceCoordinator against a real anvil: both modes end to end, fee splits to the wei,
refunds, slashing, and a typed error for every bad input."""

from __future__ import annotations

import pytest
from coordinator_kit import (
    DEPLOYER,
    DISSENT_SLASH,
    INPUT,
    MIN_DEADLINE,
    MIN_STAKE,
    MODE_CONSENSUS,
    MODE_NONE,
    NO_SHOW_SLASH,
    OUTPUT,
    PRICE,
    PROTOCOL_FEE_BPS,
    ROYALTY_BPS,
    STATUS_FULFILLED,
    STATUS_PENDING,
    STATUS_REFUNDED,
    STATUS_REVEALING,
    Kit,
    account,
    by_address,
    commitment,
)
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from verinfer.chain.client import Chain
from verinfer.chain.coordinator_errors import (
    AlreadyCommittedError,
    AlreadyRevealedError,
    CallbackGasTooHighError,
    DeadlineNotPassedError,
    DeadlinePassedError,
    DeadlineTooFarError,
    DeadlineTooSoonError,
    EmptyInputError,
    FeeAboveMaxError,
    InputTooLargeError,
    InvalidConfigError,
    InvalidRedundancyError,
    ModelNotServableError,
    NoEligibleNodeError,
    NotAssignedError,
    NotCommittedError,
    NotEligibleError,
    NothingToWithdrawError,
    OnlyOwnerError,
    RevealMismatchError,
    RevealNotOpenError,
    UnknownRequestError,
    UnsupportedModeError,
    WindowClosedError,
    WrongModeError,
    WrongStatusError,
)
from verinfer.chain.deployments import AddressBook
from verinfer.models.registry import Mode, RegistryClient, UnknownModelError

pytestmark = pytest.mark.integration

FEE = 2_000
TREASURY = account(90)
REQUESTER = account(91)
SALT = b"\x11" * 32
OTHER = bytes.fromhex("01" + "00" + "00000001" + "00000007")


@pytest.fixture
def kit(chain: Chain, book: AddressBook) -> Kit:
    kit = Kit(chain, book)
    kit.send(None, "InferenceCoordinator", "setProtocolFee", TREASURY.address, PROTOCOL_FEE_BPS)
    return kit


def escrow(k: int, price: int = PRICE, fee: int = FEE) -> int:
    base = price + k * fee
    return base + base * PROTOCOL_FEE_BPS // 10_000


def royalty(price: int = PRICE) -> int:
    return price * ROYALTY_BPS // 10_000


def nodes_for(kit: Kit, model_id: int, n: int, first: int = 1) -> list[LocalAccount]:
    accounts = [account(first + i) for i in range(n)]
    for a in accounts:
        kit.add_node(a, model_id, fee=FEE)
    return accounts


# ---------------------------------------------------------------- mode none


def test_none_request_fulfil_pays_the_exact_split(kit: Kit) -> None:
    model = kit.register_model()
    (node,) = nodes_for(kit, model, 1)
    assert kit.quote(model) == escrow(1) == 12_240
    request_id, assigned, receipt = kit.request(REQUESTER, model)
    assert assigned == [node.address]
    (ev,) = kit.events("InferenceRequested", receipt)
    assert (ev["modelId"], ev["requester"], ev["mode"], ev["fee"], ev["input"]) == (
        model, REQUESTER.address, MODE_NONE, 12_240, INPUT,
    )  # fmt: skip
    assert kit.balance(kit.coordinator.address) == 12_240 and kit.balance(REQUESTER.address) == 0
    req = kit.get_request(request_id)
    assert (req["status"], req["escrow"], req["nodeFee"], req["redundancy"]) == (
        STATUS_PENDING, 12_240, FEE, 1,
    )  # fmt: skip
    # The input is not stored, nor its hash: it travels in the event (modes none and consensus
    # never check it on-chain; a mode that does stores the hash itself).
    assert req["inputHash"] == b"\0" * 32
    assert req["assignedUntil"] == kit.now() + 60

    receipt = kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    (ev,) = kit.events("InferenceFulfilled", receipt)
    assert ev == {"requestId": request_id, "outputHash": keccak(OUTPUT), "output": OUTPUT}
    # node: F + (P - R) = 2,000 + 9,500; owner: R = 500; treasury: T = 240; requester: 0.
    assert kit.owed(node.address) == 11_500
    assert kit.owed(DEPLOYER.address) == 500
    assert kit.owed(TREASURY.address) == 240
    assert kit.owed(REQUESTER.address) == 0
    req = kit.get_request(request_id)
    assert (req["status"], req["escrow"]) == (STATUS_FULFILLED, 0)

    with pytest.raises(WrongStatusError):
        kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    receipt = kit.send(node, "InferenceCoordinator", "withdraw")
    assert kit.events("Paid", receipt) == [{"account": node.address, "amount": 11_500}]
    assert kit.balance(node.address) == 11_500 and kit.owed(node.address) == 0
    with pytest.raises(NothingToWithdrawError):
        kit.send(node, "InferenceCoordinator", "withdraw")
    with pytest.raises(WrongModeError):
        kit.send(node, "InferenceCoordinator", "commit", request_id, b"\0" * 32)


def test_late_answer_by_any_eligible_node_and_the_no_show_penalty(kit: Kit) -> None:
    model = kit.register_model()
    a, b = nodes_for(kit, model, 2)
    unstaked = account(9)
    kit.send(unstaked, "NodeRegistry", "register")
    kit.send(unstaked, "NodeRegistry", "setService", model, MODE_NONE, 1)
    request_id, (assigned,), _ = kit.request(REQUESTER, model)
    other = b if assigned == a.address else a
    with pytest.raises(NotAssignedError) as err:
        kit.send(other, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert err.value.args_by_name == {"requestId": request_id, "node": other.address}
    kit.advance(61)
    with pytest.raises(NotEligibleError):
        kit.send(unstaked, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    kit.send(other, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert kit.owed(other.address) == 11_500
    assert kit.owed(assigned) == 0
    assert kit.node_stake(assigned) == (MIN_STAKE - NO_SHOW_SLASH, 0)
    assert kit.owed(REQUESTER.address) == NO_SHOW_SLASH
    assert kit.balance(kit.coordinator.address) == 11_500 + 500 + 240 + NO_SHOW_SLASH


def test_refund_after_the_deadline_slashes_the_assigned_node(kit: Kit) -> None:
    model = kit.register_model()
    (node,) = nodes_for(kit, model, 1)
    deadline = kit.now() + MIN_DEADLINE + 10
    request_id, _, _ = kit.request(REQUESTER, model, deadline=deadline)
    with pytest.raises(DeadlineNotPassedError):
        kit.send(REQUESTER, "InferenceCoordinator", "refund", request_id)
    kit.advance(MIN_DEADLINE + 20)
    with pytest.raises(DeadlinePassedError):
        kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    receipt = kit.send(account(50), "InferenceCoordinator", "refund", request_id)  # anyone may
    assert kit.events("Refunded", receipt) == [{"requestId": request_id, "amount": 12_240}]
    assert kit.owed(REQUESTER.address) == 12_240 + NO_SHOW_SLASH
    assert kit.get_request(request_id)["status"] == STATUS_REFUNDED
    with pytest.raises(WrongStatusError):
        kit.send(REQUESTER, "InferenceCoordinator", "refund", request_id)
    kit.send(REQUESTER, "InferenceCoordinator", "withdraw")
    assert kit.balance(REQUESTER.address) == 12_240 + NO_SHOW_SLASH
    assert kit.balance(kit.coordinator.address) == 0


def test_node_fee_is_the_highest_quote_among_all_eligible_nodes(kit: Kit) -> None:
    """The node fee does not depend on which node is picked: it is the highest quote among the
    eligible nodes, exactly what quote() prices, and follows quote changes and eligibility."""
    model = kit.register_model()
    cheap, dear = account(1), account(2)
    kit.add_node(cheap, model, fee=1_000)
    kit.add_node(dear, model, fee=3_000)
    worst = escrow(1, fee=3_000)
    assert kit.quote(model) == worst
    picked: set[str] = set()
    for _ in range(30):  # whoever is picked, the fee is the quote
        request_id, (assigned,), receipt = kit.request(REQUESTER, model, max_fee=worst)
        picked.add(assigned)
        (ev,) = kit.events("InferenceRequested", receipt)
        assert ev["fee"] == worst and kit.get_request(request_id)["nodeFee"] == 3_000
        if len(picked) == 2:
            break
    assert picked == {cheap.address, dear.address}
    # Whichever node answers is paid the request's node fee, 3,000 (the cheap one too).
    request_id, (assigned,), _ = kit.request(REQUESTER, model, max_fee=worst)
    node = cheap if assigned == cheap.address else dear
    before = kit.owed(node.address)
    kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert kit.owed(node.address) - before == 3_000 + PRICE - royalty()
    with pytest.raises(FeeAboveMaxError) as err:
        kit.request(REQUESTER, model, max_fee=worst - 1)
    assert err.value.args_by_name["maxFee"] == worst - 1
    # The dearest node lowers its quote: the fee is now the other node's.
    kit.send(dear, "NodeRegistry", "setService", model, MODE_NONE | MODE_CONSENSUS, 500)
    assert kit.quote(model) == escrow(1, fee=1_000)
    _, _, receipt = kit.request(REQUESTER, model, max_fee=escrow(1, fee=1_000))
    assert kit.events("InferenceRequested", receipt)[0]["fee"] == escrow(1, fee=1_000)
    # A node that is not eligible (unstaked below the minimum) does not count.
    kit.send(dear, "NodeRegistry", "setService", model, MODE_NONE | MODE_CONSENSUS, 5_000)
    assert kit.quote(model) == escrow(1, fee=5_000)
    kit.send(dear, "NodeRegistry", "requestUnstake", 1)
    assert kit.quote(model) == escrow(1, fee=1_000)
    _, (assigned,), receipt = kit.request(REQUESTER, model, max_fee=escrow(1, fee=1_000))
    assert assigned == cheap.address
    assert kit.events("InferenceRequested", receipt)[0]["fee"] == escrow(1, fee=1_000)


def test_royalty_rate_is_fixed_at_request_time_and_paid_to_the_owner_at_settlement(
    kit: Kit,
) -> None:
    model = kit.register_model()
    (node,) = nodes_for(kit, model, 1)
    request_id, _, _ = kit.request(REQUESTER, model)
    new_owner = account(70)
    kit.send(None, "ModelRegistry", "setRoyalty", model, 0)  # too late for this request
    kit.send(None, "ModelRegistry", "transferFrom", DEPLOYER.address, new_owner.address, model)
    kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert kit.owed(new_owner.address) == royalty() == 500
    assert kit.owed(DEPLOYER.address) == 0
    assert kit.owed(node.address) == FEE + PRICE - royalty()
    request_id, _, _ = kit.request(REQUESTER, model)  # new requests use the new rate
    kit.send(node, "InferenceCoordinator", "fulfil", request_id, OUTPUT)
    assert kit.owed(new_owner.address) == 500
    assert kit.owed(node.address) == 2 * FEE + 2 * PRICE - royalty()


def test_request_gas_does_not_depend_on_the_picked_node(kit: Kit) -> None:
    """Whichever node the block's randomness picks, a request costs the same (up to the walk
    over the stakes), so a gas estimate made before the block stays valid."""
    model = kit.register_model()
    cheap, dear = account(1), account(2)
    kit.add_node(cheap, model, fee=1_000)
    kit.add_node(dear, model, fee=3_000)
    # The same token bookkeeping for every request: a standing balance and allowance.
    kit.mint(REQUESTER.address, 10**9)
    kit.approve(REQUESTER, kit.coordinator.address, 2**256 - 1)
    worst = escrow(1, fee=3_000)
    kit.request(REQUESTER, model, max_fee=worst, fund=False)  # stores this profile
    gas: dict[str, list[int]] = {cheap.address: [], dear.address: []}
    for _ in range(12):
        _, (assigned,), receipt = kit.request(REQUESTER, model, max_fee=worst, fund=False)
        gas[assigned].append(int(receipt["gasUsed"]))
    assert gas[cheap.address] and gas[dear.address]
    every = gas[cheap.address] + gas[dear.address]
    assert max(every) - min(every) < 2_000


# ---------------------------------------------------------------- mode consensus


def consensus(kit: Kit, n_nodes: int = 3) -> tuple[int, int, list[LocalAccount]]:
    model = kit.register_model()
    pool = by_address(nodes_for(kit, model, n_nodes))
    request_id, assigned, _ = kit.request(REQUESTER, model, MODE_CONSENSUS, 3)
    return model, request_id, [pool[a] for a in assigned]


def commit(kit: Kit, request_id: int, node: LocalAccount, output: bytes = OUTPUT) -> None:
    kit.send(
        node, "InferenceCoordinator", "commit", request_id,
        commitment(request_id, node.address, output, SALT),
    )  # fmt: skip


def reveal(kit: Kit, request_id: int, node: LocalAccount, output: bytes = OUTPUT) -> TxReceipt:
    return kit.send(node, "InferenceCoordinator", "reveal", request_id, output, SALT)


def test_consensus_all_agree(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    assert kit.get_request(request_id)["escrow"] == escrow(3) == 16_320
    for node in (n0, n1):
        commit(kit, request_id, node)
    with pytest.raises(AlreadyCommittedError):
        commit(kit, request_id, n0)
    with pytest.raises(RevealNotOpenError):
        reveal(kit, request_id, n0)
    commit(kit, request_id, n2)
    assert kit.get_request(request_id)["status"] == STATUS_REVEALING
    reveal(kit, request_id, n0)
    with pytest.raises(AlreadyRevealedError):
        reveal(kit, request_id, n0)
    receipt = reveal(kit, request_id, n1)  # the strict majority (2 of 3) delivers at once
    assert kit.events("InferenceFulfilled", receipt)[0]["output"] == OUTPUT
    assert kit.get_request(request_id)["status"] == STATUS_FULFILLED
    assert kit.owed(n0.address) == 0  # payments settle when the ballot closes
    receipt = reveal(kit, request_id, n2)
    assert kit.events("ConsensusClosed", receipt) == [
        {"requestId": request_id, "delivered": True, "agreeing": 3}
    ]
    # P - R = 9,500 split three ways: 3,166 each, the first agreeing node gets the 2 wei dust.
    assert [kit.owed(n.address) for n in (n0, n1, n2)] == [2_000 + 3_168, 5_166, 5_166]
    assert kit.owed(DEPLOYER.address) == 500 and kit.owed(TREASURY.address) == 320
    assert kit.owed(REQUESTER.address) == 0
    assert kit.balance(kit.coordinator.address) == 16_320
    with pytest.raises(WrongStatusError):
        kit.send(n0, "InferenceCoordinator", "finalize", request_id)
    # The request stays readable after settlement; only the escrow reads 0.
    req = kit.get_request(request_id)
    assert (req["status"], req["escrow"], req["nodeFee"], req["redundancy"], req["mode"]) == (
        STATUS_FULFILLED, 0, FEE, 3, MODE_CONSENSUS,
    )  # fmt: skip
    assert req["revealDeadline"] == req["assignedUntil"] + 120
    assert kit.call("InferenceCoordinator", "assignedNodes", request_id) == [
        n.address for n in (n0, n1, n2)
    ]
    # n1's reveal made the majority: majority = its index + 1.
    assert tuple(kit.call("InferenceCoordinator", "getBallot", request_id)) == (7, 7, 2, True)


def test_consensus_dissenter_is_slashed(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    commit(kit, request_id, n0, OTHER)
    commit(kit, request_id, n1)
    commit(kit, request_id, n2)
    with pytest.raises(RevealMismatchError) as err:
        reveal(kit, request_id, n0)  # n0 committed OTHER
    assert err.value.args_by_name == {"requestId": request_id, "node": n0.address}
    reveal(kit, request_id, n0, OTHER)
    reveal(kit, request_id, n1)
    receipt = reveal(kit, request_id, n2)
    assert kit.events("InferenceFulfilled", receipt)[0]["output"] == OUTPUT
    assert kit.events("ConsensusClosed", receipt)[0]["agreeing"] == 2
    # P - R = 9,500 split two ways; the dissenter's F = 2,000 goes back with its slash.
    assert [kit.owed(n.address) for n in (n0, n1, n2)] == [0, 6_750, 6_750]
    assert kit.owed(REQUESTER.address) == 2_000 + DISSENT_SLASH
    assert kit.node_stake(n0.address) == (MIN_STAKE - DISSENT_SLASH, 0)
    assert kit.owed(DEPLOYER.address) == 500 and kit.owed(TREASURY.address) == 320


def test_consensus_no_show_is_slashed(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    commit(kit, request_id, n0)
    commit(kit, request_id, n1)
    with pytest.raises(RevealNotOpenError):  # not all committed, assignment window still open
        reveal(kit, request_id, n0)
    kit.advance(61)
    with pytest.raises(WindowClosedError):
        commit(kit, request_id, n2)
    with pytest.raises(NotCommittedError):
        reveal(kit, request_id, n2)
    reveal(kit, request_id, n0)
    receipt = reveal(kit, request_id, n1)  # delivers and closes: every committer revealed
    assert kit.events("ConsensusClosed", receipt)[0] == {
        "requestId": request_id, "delivered": True, "agreeing": 2,
    }  # fmt: skip
    assert kit.node_stake(n2.address) == (MIN_STAKE - NO_SHOW_SLASH, 0)
    assert kit.owed(REQUESTER.address) == 2_000 + NO_SHOW_SLASH
    assert [kit.owed(n.address) for n in (n0, n1, n2)] == [6_750, 6_750, 0]


def test_consensus_committer_that_never_reveals_is_slashed_at_finalize(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    for node in (n0, n1, n2):
        commit(kit, request_id, node)
    reveal(kit, request_id, n0)
    reveal(kit, request_id, n1)  # delivered; n2 may still reveal until the reveal deadline
    with pytest.raises(DeadlineNotPassedError):
        kit.send(n0, "InferenceCoordinator", "finalize", request_id)
    kit.advance(60 + 120 + 1)
    with pytest.raises(WindowClosedError):
        reveal(kit, request_id, n2)
    kit.send(n0, "InferenceCoordinator", "finalize", request_id)
    assert kit.node_stake(n2.address) == (MIN_STAKE - NO_SHOW_SLASH, 0)
    assert kit.owed(REQUESTER.address) == 2_000 + NO_SHOW_SLASH
    assert kit.get_request(request_id)["status"] == STATUS_FULFILLED


def test_consensus_without_majority_refunds(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    commit(kit, request_id, n0, OTHER)
    commit(kit, request_id, n1)
    kit.advance(61)
    reveal(kit, request_id, n0, OTHER)
    receipt = reveal(kit, request_id, n1)  # 1 vs 1: no strict majority of 3
    assert kit.events("InferenceFulfilled", receipt) == []
    assert kit.events("ConsensusClosed", receipt)[0]["delivered"] is False
    assert kit.events("Refunded", receipt) == [{"requestId": request_id, "amount": 16_320}]
    assert kit.owed(REQUESTER.address) == 16_320 + NO_SHOW_SLASH
    assert kit.node_stake(n0.address) == (MIN_STAKE, 0)  # revealers are not slashed
    assert kit.node_stake(n2.address) == (MIN_STAKE - NO_SHOW_SLASH, 0)
    assert kit.get_request(request_id)["status"] == STATUS_REFUNDED
    assert kit.balance(kit.coordinator.address) == 16_320 + NO_SHOW_SLASH


def test_consensus_refund_after_the_deadline_when_too_few_committed(kit: Kit) -> None:
    _, request_id, (n0, n1, n2) = consensus(kit)
    commit(kit, request_id, n0)
    kit.advance(61)
    with pytest.raises(RevealNotOpenError):  # 1 of 3 is no majority
        reveal(kit, request_id, n0)
    kit.advance(3600)
    kit.send(REQUESTER, "InferenceCoordinator", "refund", request_id)
    assert kit.owed(REQUESTER.address) == 16_320 + 3 * NO_SHOW_SLASH
    for node in (n0, n1, n2):
        assert kit.node_stake(node.address) == (MIN_STAKE - NO_SHOW_SLASH, 0)


def test_consensus_commit_by_an_unassigned_node(kit: Kit) -> None:
    model = kit.register_model()
    pool = nodes_for(kit, model, 4)
    request_id, assigned, _ = kit.request(REQUESTER, model, MODE_CONSENSUS, 3)
    (outsider,) = [n for n in pool if n.address not in assigned]
    with pytest.raises(NotAssignedError):
        commit(kit, request_id, outsider)
    with pytest.raises(WrongModeError):
        kit.send(outsider, "InferenceCoordinator", "fulfil", request_id, OUTPUT)


# ---------------------------------------------------------------- bad requests


def test_every_bad_request_has_a_typed_error(kit: Kit) -> None:
    model = kit.register_model(modes=Mode.NONE)
    nodes_for(kit, model, 1)
    now = kit.now()
    kit.mint(REQUESTER.address, 10**9)
    kit.approve(REQUESTER, kit.coordinator.address, 10**9)

    def req(**kw: object) -> None:
        args: dict[str, object] = dict(
            model_id=model, data=INPUT, mode=MODE_NONE, max_fee=10**9, deadline=now + 3600,
            cb=100_000, k=1,
        )  # fmt: skip
        args.update(kw)
        kit.send(
            REQUESTER, "InferenceCoordinator", "request", args["model_id"], args["data"],
            args["mode"], args["max_fee"], args["deadline"], args["cb"], args["k"],
        )  # fmt: skip

    with pytest.raises(UnknownModelError):
        req(model_id=99)
    with pytest.raises(ModelNotServableError):
        req(mode=MODE_CONSENSUS, k=3)  # the model does not allow consensus
    with pytest.raises(UnsupportedModeError):
        req(mode=16)
    with pytest.raises(InvalidRedundancyError):
        req(k=2)
    with pytest.raises(EmptyInputError):
        req(data=b"")
    with pytest.raises(InputTooLargeError) as err:
        req(data=b"\1" * (16 * 1024 + 1))
    assert err.value.args_by_name == {"size": 16 * 1024 + 1, "max": 16 * 1024}
    with pytest.raises(CallbackGasTooHighError):
        req(cb=2_000_001)
    with pytest.raises(DeadlineTooSoonError):
        req(deadline=now + 10)
    with pytest.raises(DeadlineTooFarError):
        req(deadline=now + 31 * 24 * 3600)
    with pytest.raises(FeeAboveMaxError):
        req(max_fee=kit.quote(model) - 1)
    with pytest.raises(NoEligibleNodeError):
        req(model_id=kit.register_model())
    RegistryClient(kit.chain, kit.book.address("ModelRegistry")).set_deprecated(model)
    with pytest.raises(ModelNotServableError):
        req()
    with pytest.raises(ModelNotServableError):
        kit.quote(model)
    with pytest.raises(UnknownRequestError):
        kit.get_request(12345)


def test_consensus_redundancy_bounds(kit: Kit) -> None:
    model = kit.register_model()
    nodes_for(kit, model, 3)
    for k in (1, 2, 4, 9):
        with pytest.raises(InvalidRedundancyError):
            kit.quote(model, MODE_CONSENSUS, k)
    with pytest.raises(NoEligibleNodeError):
        kit.quote(model, MODE_CONSENSUS, 5)
    with pytest.raises(DeadlineTooSoonError):  # consensus needs the reveal window too
        kit.request(REQUESTER, model, MODE_CONSENSUS, 3, deadline=kit.now() + 150)


def test_admin_setters_are_owner_only_and_bounded(kit: Kit) -> None:
    stranger = account(60)
    with pytest.raises(OnlyOwnerError):
        kit.send(stranger, "InferenceCoordinator", "setProtocolFee", stranger.address, 0)
    with pytest.raises(InvalidConfigError):
        kit.send(None, "InferenceCoordinator", "setProtocolFee", TREASURY.address, 1_001)
    with pytest.raises(InvalidConfigError):
        kit.send(None, "InferenceCoordinator", "setTiming", 0, 1, 1)
    receipt = kit.send(None, "InferenceCoordinator", "setTiming", 30, 40, 100)
    assert kit.events("TimingUpdated", receipt) == [
        {"assignmentWindow": 30, "revealWindow": 40, "minDeadline": 100}
    ]
    receipt = kit.send(None, "InferenceCoordinator", "setSlashAmounts", 1, 2)
    assert kit.events("SlashAmountsUpdated", receipt) == [{"noShowSlash": 1, "dissentSlash": 2}]
    cfg, slashing = kit.call("InferenceCoordinator", "config")
    assert tuple(cfg) == (TREASURY.address, PROTOCOL_FEE_BPS, 30, 40, 100)
    assert tuple(slashing) == (1, 2)
