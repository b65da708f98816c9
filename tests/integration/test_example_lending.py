"""The lending risk example against a real anvil: the real contracts, model and runtime.

A node (anvil dev account 1) serves the risk model; a borrower (account 2) pays for a score,
the request is answered with the deterministic runtime's output, and borrowing must then be
allowed exactly up to collateral value x the factor the output maps to, and blocked without a
score, beyond the limit, and once the score is stale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from example_fixtures import example_fixtures, kit, load_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import decode_tensors
from verinfer.chain.inference import RequestStatus
from verinfer.chain.token import Token
from verinfer.errors import ContractRevertError

pytestmark = pytest.mark.integration

lending = load_example("lending/run_on_devnet.py", "example_lending_run_on_devnet")
model, node, coordinator = example_fixtures(lending, "risk")

WAD, TUSD = 10**18, 10**6


def factor_from_output(q: int, scale: int) -> int:
    """The documented mapping: 8500 - round_half_up(5500 * q / 2^scale), clamped [3000, 8500]."""
    cut = (5500 * q + (1 << (scale - 1))) >> scale if scale > 0 else 5500 * q << -scale
    return min(max(8500 - cut, 3000), 8500)


@pytest.fixture
def market(chain: Chain, model: Any, node: Chain) -> Any:
    return lending.deploy_market(chain, model)


@pytest.fixture
def borrower(chain: Chain, market: Any) -> Chain:
    who = Chain(chain.rpc_url, dev_account(2))
    lending.open_account(who, market, 10 * WAD)
    return who


def reverts(chain: Chain, fn: Any, name: str) -> dict[str, object]:
    with pytest.raises(ContractRevertError) as exc:
        chain.transact(fn)
    assert exc.value.name == name, exc.value
    return exc.value.args_by_name


def score(borrower: Chain, market: Any, model: Any, node: Chain, coordinator: Any) -> int:
    """requestScore + the node's runtime answer; returns the factor the output maps to."""
    request_id = lending.request_score(borrower, market)
    assert kit.assigned_nodes(coordinator, request_id) == [node.address]
    output = kit.answer_with_runtime(node, coordinator.address, request_id, model.program)
    assert coordinator.get_request(request_id).status == RequestStatus.FULFILLED
    (((q,), scale),) = decode_tensors(output)
    assert scale == model.output_scale
    return factor_from_output(int(q), scale)


def test_borrowing_follows_the_score(
    chain: Chain, market: Any, borrower: Chain, model: Any, node: Chain, coordinator: Any
) -> None:
    lend = market.contract(borrower)
    reverts(borrower, lend.functions.borrow(1), "VerinferNoScore")

    # The input is the borrower's 8 on-chain features at the program's input scale.
    request_id = lending.request_score(borrower, market)
    ((values, scale),) = decode_tensors(kit.request_input(coordinator, request_id))
    assert scale == model.input_scale
    features = np.asarray(lend.functions.features(borrower.address).call(), dtype=object)
    assert list(values) == [int(f) * 2**scale // WAD for f in features]
    assert features[0] == int(0.8 * WAD) and features[6] == WAD // 5  # vol; 20k of 100k

    output = kit.answer_with_runtime(node, coordinator.address, request_id, model.program)
    (((q,), out_scale),) = decode_tensors(output)
    factor = factor_from_output(int(q), out_scale)
    stored = lend.functions.scores(borrower.address).call()
    assert stored[0] == factor and 3000 <= factor <= 8500
    # The runtime's fixed-point P(default) agrees with onnxruntime's float one.
    session = ort.InferenceSession(str(lending.MODEL_FILE), providers=["CPUExecutionProvider"])
    x = np.asarray([values], dtype=np.float64) / 2**scale
    (p_float,) = session.run(["p_default"], {"features": x.astype(np.float32)})
    assert abs(int(q) / 2**out_scale - float(p_float[0, 0])) < 5e-3

    limit = lend.functions.maxBorrow(borrower.address).call()
    assert limit == 10 * lending.WETH_PRICE * factor // 10_000
    args = reverts(borrower, lend.functions.borrow(limit + 1), "VerinferBorrowTooLarge")
    assert args["maxDebt"] == limit
    before = Token(borrower, market.tusd).balance_of(borrower.address)
    borrower.transact(lend.functions.borrow(limit))
    assert Token(borrower, market.tusd).balance_of(borrower.address) == before + limit
    # Collateral backing the debt cannot leave.
    reverts(borrower, lend.functions.withdrawCollateral(WAD), "VerinferUndercollateralized")

    # A stale score blocks borrowing (and withdrawing) until a new score arrives.
    ttl = lend.functions.scoreTtl().call()
    chain.w3.provider.make_request("evm_increaseTime", [ttl + 1])
    chain.w3.provider.make_request("evm_mine", [])
    borrower.transact(lend.functions.repay(limit // 2))
    reverts(borrower, lend.functions.borrow(1), "VerinferStaleScore")
    again = score(borrower, market, model, node, coordinator)
    assert lend.functions.scores(borrower.address).call()[0] == again
    # Features changed (history, leverage): the new limit is the new factor's.
    assert lend.functions.maxBorrow(borrower.address).call() == (
        10 * lending.WETH_PRICE * again // 10_000
    )


def test_a_riskier_collateral_gets_a_lower_factor(
    chain: Chain, market: Any, borrower: Chain, model: Any, node: Chain, coordinator: Any
) -> None:
    calm = score(borrower, market, model, node, coordinator)
    owner = market.contract(chain)
    chain.transact(
        owner.functions.setMarket(lending.WETH_PRICE, int(1.5 * WAD), 100_000 * TUSD, 86_400)
    )
    risky = score(borrower, market, model, node, coordinator)
    assert risky < calm
    assert market.contract(borrower).functions.scores(borrower.address).call()[0] == risky


def test_an_unanswered_score_is_refunded_to_the_borrower(
    chain: Chain, market: Any, borrower: Chain, coordinator: Any
) -> None:
    lend = market.contract(borrower)
    token = Token(borrower, market.tusd)
    before = token.balance_of(borrower.address)
    request_id = lending.request_score(borrower, market)
    paid = before - token.balance_of(borrower.address)
    assert paid == lend.functions.scoreRequests(request_id).call()[1] > 0
    reverts(borrower, lend.functions.requestScore(), "VerinferScorePending")
    reverts(borrower, lend.functions.claimRefund(request_id), "VerinferNotRefunded")

    deadline = coordinator.get_request(request_id).deadline
    chain.w3.provider.make_request("evm_mine", [{"timestamp": deadline + 1}])
    coordinator.refund(request_id)
    other = Chain(chain.rpc_url, dev_account(3))
    reverts(other, market.contract(other).functions.claimRefund(request_id), "VerinferNotRequester")
    borrower.transact(lend.functions.claimRefund(request_id))
    assert token.balance_of(borrower.address) == before
    reverts(borrower, lend.functions.claimRefund(request_id), "VerinferNotRequester")
    reverts(borrower, lend.functions.borrow(1), "VerinferNoScore")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.integers(-(2**31), 2**31 - 1), scale=st.integers(-8, 30))
def test_factor_mapping_matches_the_documented_rule(market: Any, q: int, scale: int) -> None:
    assert market.contract().functions.factorFromOutput(q, scale).call() == factor_from_output(
        q, scale
    )
