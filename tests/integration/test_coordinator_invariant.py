"""Hypothesis stateful test: whatever nodes and requesters do, in any order and at any time,
the coordinator holds exactly the open escrows plus the unpaid balances (nothing stuck,
nothing created)."""

from __future__ import annotations

from typing import Any

import pytest
from coordinator_kit import (
    DEPLOYER,
    MODE_CONSENSUS,
    MODE_NONE,
    OUTPUT,
    Kit,
    account,
    by_address,
    commitment,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.errors import ContractRevertError

pytestmark = pytest.mark.integration

OTHER = bytes.fromhex("01" + "00" + "00000001" + "00000007")
SALT = b"\x22" * 32


def run_machine(kit: Kit, model: int, nodes: list[Any], requesters: list[Any]) -> None:
    pool = by_address(nodes)
    accounts = [a.address for a in nodes + requesters] + [DEPLOYER.address]

    class CoordinatorMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snap = kit.chain.w3.provider.make_request("evm_snapshot", [])["result"]
            self.requests: dict[int, dict[str, Any]] = {}

        def teardown(self) -> None:
            kit.chain.w3.provider.make_request("evm_revert", [self.snap])

        def _try(self, who: Any, fn: str, *args: Any) -> bool:
            try:
                kit.send(who, "InferenceCoordinator", fn, *args)
                return True
            except ContractRevertError:
                return False

        @rule(consensus=st.booleans(), who=st.integers(0, len(requesters) - 1))
        def request(self, consensus: bool, who: int) -> None:
            mode, k = (MODE_CONSENSUS, 3) if consensus else (MODE_NONE, 1)
            rid, assigned, _ = kit.request(requesters[who], model, mode, k)
            self.requests[rid] = {"mode": mode, "assigned": assigned, "outputs": {}}

        @rule(data=st.data())
        def fulfil(self, data: st.DataObject) -> None:
            open_ = [r for r, v in self.requests.items() if v["mode"] == MODE_NONE]
            if not open_:
                return
            rid = data.draw(st.sampled_from(open_))
            node = data.draw(st.sampled_from(nodes))
            self._try(node, "fulfil", rid, OUTPUT)

        @rule(data=st.data(), dissent=st.booleans())
        def commit(self, data: st.DataObject, dissent: bool) -> None:
            open_ = [r for r, v in self.requests.items() if v["mode"] == MODE_CONSENSUS]
            if not open_:
                return
            rid = data.draw(st.sampled_from(open_))
            node = pool[data.draw(st.sampled_from(self.requests[rid]["assigned"]))]
            output = OTHER if dissent else OUTPUT
            if self._try(node, "commit", rid, commitment(rid, node.address, output, SALT)):
                self.requests[rid]["outputs"][node.address] = output

        @rule(data=st.data())
        def reveal(self, data: st.DataObject) -> None:
            committed = [
                (r, a, o) for r, v in self.requests.items() for a, o in v["outputs"].items()
            ]
            if not committed:
                return
            rid, node, output = data.draw(st.sampled_from(committed))
            self._try(pool[node], "reveal", rid, output, SALT)

        @rule(data=st.data(), finalize=st.booleans())
        def settle(self, data: st.DataObject, finalize: bool) -> None:
            if not self.requests:
                return
            rid = data.draw(st.sampled_from(sorted(self.requests)))
            self._try(requesters[0], "finalize" if finalize else "refund", rid)

        @rule(who=st.sampled_from(nodes + requesters + [DEPLOYER]))
        def withdraw(self, who: Any) -> None:
            self._try(who, "withdraw")

        @rule(seconds=st.sampled_from([30, 61, 200, 4_000]))
        def advance(self, seconds: int) -> None:
            kit.advance(seconds)

        @invariant()
        def holdings_match_obligations(self) -> None:
            held = kit.balance(kit.coordinator.address)
            escrows = sum(kit.get_request(r)["escrow"] for r in self.requests)
            owed = sum(kit.owed(a) for a in accounts)
            assert held == escrows + owed

    run_state_machine_as_test(
        CoordinatorMachine,
        settings=settings(
            max_examples=8,
            stateful_step_count=14,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_coordinator_holds_exactly_escrows_plus_balances(chain: Chain, book: AddressBook) -> None:
    kit = Kit(chain, book)
    model = kit.register_model()
    nodes = [account(200 + i) for i in range(4)]
    for node in nodes:
        kit.add_node(node, model, fee=1_000 + 500 * nodes.index(node))
    requesters = [account(300), account(301)]
    for r in requesters:
        kit.as_(r)  # gas money, set before the machine's snapshots
    run_machine(kit, model, nodes, requesters)
