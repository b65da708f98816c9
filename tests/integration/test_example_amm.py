"""The dynamic-fee AMM example against a real anvil: the real contracts, model and runtime.

A node (anvil dev account 1) stakes and serves the volatility model; the pool's ``updateFee()``
request is answered with the deterministic runtime's output (or by the node daemon itself),
and the fee the callback sets must be the documented mapping of that output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from example_fixtures import example_fixtures, kit, load_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors
from verinfer.chain.inference import CoordinatorClient, RequestStatus
from verinfer.errors import ContractRevertError

pytestmark = pytest.mark.integration


def snapshot(chain: Chain) -> str:
    return str(chain.w3.provider.make_request("evm_snapshot", [])["result"])


def revert(chain: Chain, snap: str) -> None:
    chain.w3.provider.make_request("evm_revert", [snap])


amm = load_example("amm/run_on_devnet.py", "example_amm_run_on_devnet")
model, node, coordinator = example_fixtures(amm, "amm-volatility")

WAD, TUSD = 10**18, 10**6


def fee_from_output(q: int, scale: int) -> int:
    """The contract's documented mapping: round_half_up(q / 2^scale), clamped to [5, 100]."""
    fee = (q + (1 << (scale - 1))) >> scale if scale > 0 else q << -scale
    return min(max(fee, 5), 100)


@pytest.fixture
def pool(chain: Chain, model: Any, node: Chain) -> Any:
    return amm.deploy_pool(chain, model)


def revert_name(exc: pytest.ExceptionInfo[ContractRevertError]) -> str:
    return exc.value.name


@pytest.mark.parametrize(("regime", "low", "high"), [("calm", 5, 15), ("stressed", 35, 100)])
def test_update_fee_sets_the_fee_the_model_computes(
    pool: Any,
    model: Any,
    node: Chain,
    coordinator: CoordinatorClient,
    regime: str,
    low: int,
    high: int,
) -> None:
    amm.trade(pool, regime)
    contract = pool.contract
    assert contract.functions.swapFeeBps().call() == amm.INITIAL_FEE_BPS

    request_id = amm.update_fee(pool)
    assert kit.assigned_nodes(coordinator, request_id) == [node.address]
    input_bytes = kit.request_input(coordinator, request_id)
    # The input is the 16 log-returns of the recorded prices, at the program's input scale.
    ((values, scale),) = decode_tensors(input_bytes)
    assert scale == model.input_scale
    prices = [int(p) for p in contract.functions.observations().call()]
    expected = [math.log(b / a) * 2**scale for a, b in zip(prices, prices[1:], strict=False)]
    assert np.abs(np.asarray(values, dtype=np.float64) - expected).max() <= 2

    output = kit.answer_with_runtime(node, coordinator.address, request_id, model.program)
    assert coordinator.get_request(request_id).status == RequestStatus.FULFILLED
    (((q,), out_scale),) = decode_tensors(output)
    assert out_scale == model.output_scale
    fee = contract.functions.swapFeeBps().call()
    assert fee == fee_from_output(int(q), out_scale)
    assert low <= fee <= high, f"{regime} market got {fee} bps"
    assert contract.functions.pendingRequestId().call() == 0
    (event,) = contract.events.FeeUpdated().get_logs(from_block=0)
    assert event["args"]["newFeeBps"] == fee and event["args"]["rawOutput"] == q
    # The new fee applies to the next swap.
    r0, r1 = contract.functions.reserve0().call(), contract.functions.reserve1().call()
    amount = WAD
    want = amount * (10_000 - fee) * r1 // (r0 * 10_000 + amount * (10_000 - fee))
    assert contract.functions.quoteSwap(pool.weth, amount).call() == want


def test_the_node_daemon_answers_update_fee(
    pool: Any, model: Any, node: Chain, coordinator: CoordinatorClient
) -> None:
    amm.trade(pool, "stressed")
    with kit.run_node(node, model.model_id, amm.NODE_FEE):
        request_id = amm.update_fee(pool)
        info = kit.wait_settled(coordinator, request_id, timeout=60)
    assert info.status == RequestStatus.FULFILLED
    expected = kit.compute_output(model.program, kit.request_input(coordinator, request_id))
    (((q,), scale),) = decode_tensors(expected)
    assert pool.contract.functions.swapFeeBps().call() == fee_from_output(int(q), scale)


def test_update_fee_guards(
    chain: Chain, pool: Any, model: Any, node: Chain, coordinator: CoordinatorClient
) -> None:
    contract = pool.contract
    with pytest.raises(ContractRevertError) as exc:
        chain.transact(contract.functions.updateFee())
    assert revert_name(exc) == "VerinferNotEnoughObservations"

    amm.trade(pool, "calm", swaps=17)
    request_id = amm.update_fee(pool)
    with pytest.raises(ContractRevertError) as exc:
        chain.transact(contract.functions.updateFee())
    assert revert_name(exc) == "VerinferUpdatePending"

    # Unanswered past its deadline: the request stops blocking, the refund returns to the budget.
    deadline = contract.functions.pendingDeadline().call()
    chain.w3.provider.make_request("evm_mine", [{"timestamp": deadline + 1}])
    budget = contract.functions.feeBudget().call()
    coordinator.refund(request_id)
    chain.transact(contract.functions.withdrawRefunds())
    assert contract.functions.feeBudget().call() > budget
    kit.serve_model(node, model.model_id, fee=amm.NODE_FEE)  # the no-show was slashed: top up
    second = amm.update_fee(pool)
    assert second != request_id


def test_update_fee_needs_a_budget(chain: Chain, model: Any, node: Chain) -> None:
    pool = amm.deploy_pool(chain, model, budget=0)
    amm.trade(pool, "calm", swaps=17)
    with pytest.raises(ContractRevertError) as exc:
        chain.transact(pool.contract.functions.updateFee())
    assert revert_name(exc) == "VerinferInsufficientBudget"


def test_only_the_coordinator_may_deliver(chain: Chain, pool: Any) -> None:
    with pytest.raises(ContractRevertError) as exc:
        chain.transact(pool.contract.functions.onInference(1, b"\x01"))
    assert revert_name(exc) == "VerinferOnlyCoordinator"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.integers(-(2**31), 2**31 - 1), scale=st.integers(-8, 30))
def test_fee_mapping_matches_the_documented_rule(pool: Any, q: int, scale: int) -> None:
    assert pool.contract.functions.feeFromOutput(q, scale).call() == fee_from_output(q, scale)


swaps = st.lists(
    st.tuples(st.booleans(), st.integers(1, 10**6)),  # (sell WETH?, size in ppm of the reserve)
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trades=swaps, fee=st.integers(5, 100))
def test_swaps_keep_the_constant_product_and_charge_the_fee(
    chain: Chain, pool: Any, trades: list[tuple[bool, int]], fee: int
) -> None:
    snap = snapshot(chain)
    try:
        # A fresh pool whose (initial) fee is the drawn one.
        coordinator = pool.contract.functions.COORDINATOR().call()
        address, _ = chain.deploy("DynamicFeeAMM", coordinator, pool.weth, pool.tusd, 1, 20, fee)
        fresh = chain.contract("DynamicFeeAMM", address)
        weth = chain.contract("TestToken", pool.weth)
        tusd = chain.contract("TestUSD", pool.tusd)
        chain.transact(weth.functions.approve(address, 2**256 - 1))
        chain.transact(tusd.functions.approve(address, 2**256 - 1))
        chain.transact(fresh.functions.addLiquidity(10 * WAD, 20_000 * TUSD, 0))
        for sell_weth, ppm in trades:
            r0, r1 = fresh.functions.reserve0().call(), fresh.functions.reserve1().call()
            token, r_in, r_out = (pool.weth, r0, r1) if sell_weth else (pool.tusd, r1, r0)
            amount = max(r_in * ppm // 10**6, 1)
            after_fee = amount * (10_000 - fee)
            want = after_fee * r_out // (r_in * 10_000 + after_fee)
            if want == 0:
                continue
            chain.transact(fresh.functions.swap(token, amount, want))
            n0, n1 = fresh.functions.reserve0().call(), fresh.functions.reserve1().call()
            assert n0 * n1 >= r0 * r1  # k never falls: the fee stays in the pool
            got_in, got_out = (n0 - r0, r1 - n1) if sell_weth else (n1 - r1, r0 - n0)
            assert (got_in, got_out) == (amount, want)
            # Without the fee the same trade would pay at least as much.
            assert want <= amount * r_out // (r_in + amount)
        # Reserves are exactly what the pool holds (no tokens appear or vanish).
        assert weth.functions.balanceOf(address).call() == fresh.functions.reserve0().call()
        budget = fresh.functions.feeBudget().call()
        assert (
            tusd.functions.balanceOf(address).call() == fresh.functions.reserve1().call() + budget
        )
    finally:
        revert(chain, snap)
