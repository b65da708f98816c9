"""NodeRegistry against a real anvil: staking, unbonding, services, slashing, node picking."""

from __future__ import annotations

from collections import Counter

import pytest
from coordinator_kit import (
    MIN_STAKE,
    MODE_CONSENSUS,
    MODE_NONE,
    TUSD,
    Kit,
    account,
)

from verinfer.chain.client import Chain
from verinfer.chain.coordinator_errors import (
    AlreadyRegisteredError,
    FeeTooHighError,
    InsufficientStakeError,
    NotAuthorizedModuleError,
    NotRegisteredError,
    OnlyOwnerError,
    TooManyNodesError,
    UnbondingNotReadyError,
    ZeroAmountError,
)
from verinfer.chain.deployments import AddressBook
from verinfer.models.registry import InvalidModesError

pytestmark = pytest.mark.integration
DAY = 24 * 3600
REASON = b"test".ljust(32, b"\0")


@pytest.fixture
def kit(chain: Chain, book: AddressBook) -> Kit:
    return Kit(chain, book)


def test_stake_unbond_withdraw(kit: Kit) -> None:
    node = account(1)
    kit.mint(node.address, 300 * TUSD)
    kit.approve(node, kit.nodes.address, 300 * TUSD)
    with pytest.raises(NotRegisteredError):
        kit.send(node, "NodeRegistry", "stake", MIN_STAKE)
    receipt = kit.send(node, "NodeRegistry", "register")
    assert kit.events("NodeRegistered", receipt, "NodeRegistry") == [{"node": node.address}]
    with pytest.raises(AlreadyRegisteredError):
        kit.send(node, "NodeRegistry", "register")
    with pytest.raises(ZeroAmountError):
        kit.send(node, "NodeRegistry", "stake", 0)
    receipt = kit.send(node, "NodeRegistry", "stake", 300 * TUSD)
    assert kit.events("Staked", receipt, "NodeRegistry") == [
        {"node": node.address, "amount": 300 * TUSD, "stake": 300 * TUSD}
    ]
    assert kit.balance(node.address) == 0
    with pytest.raises(InsufficientStakeError) as err:
        kit.send(node, "NodeRegistry", "requestUnstake", 301 * TUSD)
    assert err.value.args_by_name == {"available": 300 * TUSD, "requested": 301 * TUSD}
    receipt = kit.send(node, "NodeRegistry", "requestUnstake", 120 * TUSD)
    (ev,) = kit.events("UnstakeRequested", receipt, "NodeRegistry")
    assert ev["amount"] == 120 * TUSD and ev["readyAt"] == kit.now() + DAY
    assert kit.node_stake(node.address) == (180 * TUSD, 120 * TUSD)
    with pytest.raises(UnbondingNotReadyError):
        kit.send(node, "NodeRegistry", "withdraw")
    kit.advance(DAY)
    receipt = kit.send(node, "NodeRegistry", "withdraw")
    assert kit.events("Withdrawn", receipt, "NodeRegistry") == [
        {"node": node.address, "amount": 120 * TUSD}
    ]
    assert kit.balance(node.address) == 120 * TUSD
    assert kit.node_stake(node.address) == (180 * TUSD, 0)
    with pytest.raises(ZeroAmountError):
        kit.send(node, "NodeRegistry", "withdraw")


def test_services_list_and_unlist_nodes(kit: Kit) -> None:
    a, b = account(1), account(2)
    kit.add_node(a, 7, fee=1_000)
    kit.add_node(b, 7, modes=MODE_NONE, fee=3_000)
    assert kit.call("NodeRegistry", "nodesOf", 7) == [a.address, b.address]
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_NONE) == [3_000, 2]
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_CONSENSUS) == [1_000, 1]
    assert kit.call("NodeRegistry", "isEligible", b.address, 7, MODE_NONE) is True
    assert kit.call("NodeRegistry", "isEligible", b.address, 7, MODE_CONSENSUS) is False
    with pytest.raises(InvalidModesError):
        kit.send(a, "NodeRegistry", "setService", 7, 16, 0)
    kit.send(a, "NodeRegistry", "setService", 7, 0, 0)
    assert kit.call("NodeRegistry", "nodesOf", 7) == [b.address]
    # Below the minimum stake a node stays listed but is not eligible.
    kit.send(b, "NodeRegistry", "requestUnstake", 1)
    assert kit.call("NodeRegistry", "isEligible", b.address, 7, MODE_NONE) is False
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_NONE) == [0, 0]


def test_quotes_follow_service_updates_and_are_capped(kit: Kit) -> None:
    a, b = account(1), account(2)
    kit.add_node(a, 7, fee=1_000)
    kit.add_node(b, 7, fee=3_000)
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_NONE) == [3_000, 2]
    kit.send(b, "NodeRegistry", "setService", 7, MODE_NONE, 500)  # lowers its quote
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_NONE) == [1_000, 2]
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_CONSENSUS) == [1_000, 1]
    assert kit.nodes.functions.pickNodes(7, MODE_NONE, 1, 3).call()[1] == 1_000
    cap = kit.call("NodeRegistry", "MAX_FEE")
    assert cap == 2**88 - 1
    kit.send(a, "NodeRegistry", "setService", 7, MODE_NONE, cap)
    assert kit.call("NodeRegistry", "maxQuote", 7, MODE_NONE) == [cap, 2]
    with pytest.raises(FeeTooHighError) as err:
        kit.send(a, "NodeRegistry", "setService", 7, MODE_NONE, cap + 1)
    assert err.value.args_by_name == {"fee": cap + 1, "max": cap}


def test_only_authorized_modules_slash_stake_then_unbonding(kit: Kit) -> None:
    node, victim, stranger = account(1), account(2), account(3)
    kit.add_node(node, 1, stake=150 * TUSD)
    with pytest.raises(NotAuthorizedModuleError):
        kit.send(stranger, "NodeRegistry", "slash", node.address, 1, victim.address, REASON)
    with pytest.raises(OnlyOwnerError):
        kit.send(stranger, "NodeRegistry", "setModule", stranger.address, True)
    receipt = kit.send(None, "NodeRegistry", "setModule", stranger.address, True)
    assert kit.events("ModuleAuthorized", receipt, "NodeRegistry") == [
        {"module": stranger.address, "authorized": True}
    ]
    # Unbonding does not escape: the slash takes the stake first, then the unbonding amount.
    kit.send(node, "NodeRegistry", "requestUnstake", 100 * TUSD)
    receipt = kit.send(
        stranger, "NodeRegistry", "slash", node.address, 70 * TUSD, victim.address, REASON
    )
    (ev,) = kit.events("Slashed", receipt, "NodeRegistry")
    assert (ev["node"], ev["amount"], ev["recipient"]) == (node.address, 70 * TUSD, victim.address)
    assert kit.node_stake(node.address) == (0, 80 * TUSD)
    assert kit.balance(victim.address) == 70 * TUSD
    kit.send(stranger, "NodeRegistry", "slash", node.address, 500 * TUSD, victim.address, REASON)
    assert kit.node_stake(node.address) == (0, 0)
    assert kit.balance(victim.address) == 150 * TUSD
    kit.send(None, "NodeRegistry", "setModule", stranger.address, False)
    with pytest.raises(NotAuthorizedModuleError):
        kit.send(stranger, "NodeRegistry", "slash", node.address, 1, victim.address, REASON)


def test_coordinator_is_the_authorized_module(kit: Kit) -> None:
    assert kit.call("NodeRegistry", "isModule", kit.coordinator.address) is True
    assert kit.call("NodeRegistry", "minStake") == MIN_STAKE
    assert kit.call("NodeRegistry", "unbondingDelay") == DAY


def test_pick_nodes_is_distinct_eligible_and_stake_weighted(kit: Kit) -> None:
    heavy, light, third, unstaked = account(1), account(2), account(3), account(4)
    kit.add_node(heavy, 5, stake=900 * TUSD, fee=100)
    kit.add_node(light, 5, stake=100 * TUSD, fee=700)
    kit.add_node(third, 5, stake=100 * TUSD, fee=300)
    kit.send(unstaked, "NodeRegistry", "register")
    kit.send(unstaked, "NodeRegistry", "setService", 5, MODE_NONE | MODE_CONSENSUS, 1)
    pick = kit.nodes.functions.pickNodes
    firsts: Counter[str] = Counter()
    for seed in range(300):
        nodes, max_fee = pick(5, MODE_NONE, 3, seed).call()
        assert sorted(nodes) == sorted([heavy.address, light.address, third.address])
        assert max_fee == 700
        firsts[nodes[0]] += 1
    # P(heavy first) = 900/1100 = 0.82; 300 draws put it well above 0.7.
    assert firsts[heavy.address] > 0.7 * 300
    assert pick(5, MODE_NONE, 3, 42).call() == pick(5, MODE_NONE, 3, 42).call()
    # The fee is the highest quote among all eligible nodes, whichever are drawn.
    for seed in range(20):
        nodes, max_fee = pick(5, MODE_NONE, 1, seed).call()
        assert len(nodes) == 1 and max_fee == 700
    assert pick(5, MODE_NONE, 9, 1).call()[0].__len__() == 3  # fewer than k: all eligible
    assert pick(6, MODE_NONE, 1, 1).call() == [[], 0]


def test_model_list_is_capped_and_unstaked_nodes_are_evicted(kit: Kit) -> None:
    cap = kit.call("NodeRegistry", "MAX_NODES_PER_MODEL")
    nodes = [account(100 + i) for i in range(cap)]
    for node in nodes:
        kit.add_node(node, 3, modes=MODE_NONE, fee=1)
    newcomer = account(99)
    kit.add_node(newcomer, 4, modes=MODE_NONE)  # registered and staked, on another model
    with pytest.raises(TooManyNodesError) as err:
        kit.send(newcomer, "NodeRegistry", "setService", 3, MODE_NONE, 1)
    assert err.value.args_by_name == {"modelId": 3, "max": cap}
    kit.send(nodes[5], "NodeRegistry", "requestUnstake", 1)  # now below the minimum stake
    receipt = kit.send(newcomer, "NodeRegistry", "setService", 3, MODE_NONE, 1)
    updates = kit.events("ServiceUpdated", receipt, "NodeRegistry")
    assert updates[0] == {"node": nodes[5].address, "modelId": 3, "modes": 0, "fee": 0}
    listed = kit.call("NodeRegistry", "nodesOf", 3)
    assert len(listed) == cap and newcomer.address in listed and nodes[5].address not in listed
