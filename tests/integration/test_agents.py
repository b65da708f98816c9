"""Agents paying the x402 gateway with a wallet under a spending policy, over real HTTP on
loopback, settled on anvil. The policy is enforced before anything is signed; every receipt
is verified; money is checked to the unit, in the wallet's ledger and on-chain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_kit import RunningNode, node_config, setup_node
from test_gateway_pay import COST, PAYER, Gateway, _payment_required, _sample, gateway
from x402.schemas.hooks import AbortResult, PaymentCreatedContext, PaymentCreationContext

from verinfer.agents import (
    AgentClient,
    GatewayCallError,
    PolicyError,
    SpendingPolicy,
    SpendLedger,
    Wallet,
)
from verinfer.agents.client import _CALL, _Call
from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.gateway.idempotency import REPLAYED_HEADER
from verinfer.gateway.receipts import ReceiptError

pytestmark = pytest.mark.integration
__all__ = ["gateway"]

ROOT = Path(__file__).resolve().parents[2]


def _wallet(gw: Gateway, ledger: Path, **limits: Any) -> Wallet:
    rules: dict[str, Any] = {
        "max_per_call": COST, "max_per_day": 3 * COST, "asset": gw.token.address,
        "network": gw.network,
    }  # fmt: skip
    rules.update(limits)
    policy = SpendingPolicy.of(**rules)
    return Wallet.from_key(ANVIL_DEV_KEYS[PAYER], policy, SpendLedger(ledger))


def _signatures(agent: AgentClient) -> list[int]:
    """Counts every payload the SDK signs for ``agent`` (after-creation hook)."""
    signed: list[int] = []

    def count(context: PaymentCreatedContext) -> None:
        signed.append(1)

    agent.x402.on_after_payment_creation(count)
    return signed


class Wire(httpx.AsyncBaseTransport):
    """The HTTP transport under the payment layer: records every request that leaves (and
    can drop the answer to the first paid one, as a broken connection would)."""

    def __init__(self, sent: list[httpx.Request], drop_paid: int = 0) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent = sent
        self.drop = drop_paid  # how many paid answers are lost

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = await self.inner.handle_async_request(request)
        if _paid(request) and sum(map(_paid, self.sent)) <= self.drop:
            await response.aread()  # the gateway delivered and settled; we never hear it
            raise httpx.ReadError("connection reset", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _paid(request: httpx.Request) -> bool:
    return "payment-signature" in request.headers


def test_agent_pays_verifies_receipts_and_stops_exactly_at_its_daily_cap(
    gateway: Gateway, tmp_path: Path
) -> None:
    payer0, payee0 = gateway.balances()
    ledger = tmp_path / "ledger.json"
    agent = AgentClient(gateway.url, _wallet(gateway, ledger))
    signed = _signatures(agent)
    for _ in range(3):
        answer = agent.infer(gateway.model_id, _sample())
        assert answer.receipt.payer == gateway.payer.address
        assert answer.receipt.price == COST and answer.outputs
    with pytest.raises(PolicyError, match="over the daily limit") as refused:
        agent.infer(gateway.model_id, _sample())
    assert refused.value.limit == "max_per_day"
    assert len(signed) == 3  # the refused call was never signed
    assert gateway.balances() == (payer0 - 3 * COST, payee0 + 3 * COST)
    assert agent.wallet.spent_today() == 3 * COST

    restarted = AgentClient(gateway.url, _wallet(gateway, ledger))  # same ledger file
    with pytest.raises(PolicyError, match="max_per_day|daily"):
        restarted.infer(gateway.model_id, _sample())
    assert gateway.balances() == (payer0 - 3 * COST, payee0 + 3 * COST)


@pytest.mark.parametrize(
    ("limits", "limit"),
    [
        ({"max_per_call": COST - 1}, "max_per_call"),
        ({"payees": ["0x" + "ab" * 20]}, "payee"),
        ({"models": [999]}, "model"),
        ({"asset": "0x" + "cd" * 20}, "asset"),
        ({"network": "eip155:8453"}, "network"),
    ],
)
def test_policy_refuses_before_signing(
    gateway: Gateway, tmp_path: Path, limits: dict[str, Any], limit: str
) -> None:
    before = gateway.balances()
    sent: list[httpx.Request] = []
    wallet = _wallet(gateway, tmp_path / "l.json", **limits)
    agent = AgentClient(gateway.url, wallet, transport=lambda: Wire(sent))
    signed = _signatures(agent)
    with pytest.raises(PolicyError) as refused:
        agent.infer(gateway.model_id, _sample())
    assert refused.value.limit == limit
    assert signed == [] and agent.wallet.spent_today() == 0
    assert len(sent) == 1 and not _paid(sent[0])  # only the unpaid ask for the terms left
    assert gateway.balances() == before


def test_the_model_paid_for_is_the_one_in_the_resource_url(
    gateway: Gateway, tmp_path: Path
) -> None:
    """A gateway that asks payment for another model than the one called is refused."""
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json"))
    asked = httpx.post(f"{gateway.infer_url()}?mode=none", json={"input": _sample()})
    required = _payment_required(asked)
    assert asked.status_code == 402 and required.resource is not None
    elsewhere = required.resource.url.replace(
        f"/v1/models/{gateway.model_id}/", f"/v1/models/{gateway.model_id + 1}/"
    )
    resource = required.resource.model_copy(update={"url": elsewhere})
    cases = [(required, None), (required.model_copy(update={"resource": resource}), "model")]
    for i, (req, refusal) in enumerate(cases):
        call = _Call(f"pay_agent_resource_{i:016d}", gateway.model_id)
        token = _CALL.set(call)
        try:
            verdict = agent._reserve(PaymentCreationContext(req, req.accepts[0]))
        finally:
            _CALL.reset(token)
        if refusal is None:
            assert verdict is None and call.reserved == COST
        else:
            assert isinstance(verdict, AbortResult) and verdict.reason == refusal
            assert call.refused is not None and "not for model" in call.refused.message
    assert agent.wallet.spent_today() == COST  # the accepted one only


def test_async_agents_await_ainfer(gateway: Gateway, tmp_path: Path) -> None:
    payer0, payee0 = gateway.balances()
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json"))

    async def two_at_once() -> list[Any]:
        calls = [agent.ainfer(gateway.model_id, _sample()) for _ in range(2)]
        return list(await asyncio.gather(*calls))

    answers = asyncio.run(two_at_once())
    assert len({a.receipt.payment for a in answers}) == 2  # two payments, two nonces
    assert agent.wallet.spent_today() == 2 * COST
    assert gateway.balances() == (payer0 - 2 * COST, payee0 + 2 * COST)


def test_a_refused_call_is_released_and_not_charged(gateway: Gateway, tmp_path: Path) -> None:
    before = gateway.balances()
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json"))
    with pytest.raises(GatewayCallError) as failed:
        agent.infer(gateway.model_id, [[0.5] * 63])  # the model takes 64 values
    assert failed.value.status == 422 and "64" in failed.value.reason
    assert agent.wallet.spent_today() == 0
    assert gateway.balances() == before


def test_retry_under_the_same_payment_id_is_charged_once(gateway: Gateway, tmp_path: Path) -> None:
    payer0, payee0 = gateway.balances()
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json"))
    call = _Call("pay_agent_retry_0123456789", gateway.model_id)
    url = f"{gateway.url}/v1/models/{gateway.model_id}/infer?mode=none"
    first = asyncio.run(agent._send(call, url, {"input": _sample()}))
    again = asyncio.run(agent._send(call, url, {"input": _sample()}))  # as after a dropped link
    assert first.status_code == again.status_code == 200
    assert again.headers[REPLAYED_HEADER] == "true" and again.json() == first.json()
    assert agent.wallet.spent_today() == COST
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_a_dropped_answer_is_retried_under_the_same_payment_id_and_charged_once(
    gateway: Gateway, tmp_path: Path
) -> None:
    payer0, payee0 = gateway.balances()
    sent: list[httpx.Request] = []
    wallet = _wallet(gateway, tmp_path / "l.json")
    agent = AgentClient(gateway.url, wallet, transport=lambda: Wire(sent, drop_paid=1))
    signed = _signatures(agent)
    answer = agent.infer(gateway.model_id, _sample())
    paid = [r for r in sent if _paid(r)]
    assert len(paid) == 2 and len(signed) == 2  # two authorizations signed and sent...
    assert answer.receipt.price == COST
    assert gateway.balances() == (payer0 - COST, payee0 + COST)  # ...one charged
    assert agent.wallet.spent_today() == COST


def test_a_call_never_answered_stays_counted_as_it_may_have_settled(
    gateway: Gateway, tmp_path: Path
) -> None:
    payer0, payee0 = gateway.balances()
    sent: list[httpx.Request] = []
    wallet = _wallet(gateway, tmp_path / "l.json")
    agent = AgentClient(gateway.url, wallet, transport=lambda: Wire(sent, drop_paid=99))
    with pytest.raises(GatewayCallError, match="no answer after 3 attempts") as failed:
        agent.infer(gateway.model_id, _sample())
    assert failed.value.status == 0 and len([r for r in sent if _paid(r)]) == 3
    assert gateway.balances() == (payer0 - COST, payee0 + COST)  # the first one settled
    assert wallet.spent_today() == COST  # counted, though never confirmed to the agent


def test_a_receipt_that_does_not_hold_is_rejected(gateway: Gateway, tmp_path: Path) -> None:
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json"))
    answer = agent.infer(gateway.model_id, _sample())
    terms = agent.terms(gateway.model_id)
    good = answer.document
    flipped = good["output"][:-1] + ("0" if good["output"][-1] != "0" else "1")
    cases = [
        ({**good, "output": flipped}, terms, "output hash differs"),
        (good, {**terms, "node": gateway.payee}, "not by the node"),
        ({**good, "receipt": {**good["receipt"], "signature": "0x" + "00" * 65}}, terms,
         "cannot be recovered|signature is by"),
    ]  # fmt: skip
    for document, claimed, reason in cases:
        with pytest.raises(ReceiptError, match=reason):
            agent._verified(document, claimed, gateway.model_id, "none")
    with pytest.raises(ReceiptError, match="another model or mode"):
        agent._verified(good, terms, gateway.model_id, "zk")


def test_onchain_request_counts_against_the_same_daily_cap(
    gateway: Gateway, chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    """The wallet asks the coordinator directly (a staked node answers in mode none); the fee
    is reserved under the policy and settled in the same ledger as gateway calls."""
    setup_node(anvil.rpc_url, book, 1, gateway.model_id)
    config = node_config(
        anvil.rpc_url, tmp_path / "n1", 1, gateway.model_id, start_block=chain.w3.eth.block_number
    )
    coordinator = CoordinatorClient(chain, book.address("InferenceCoordinator"))
    fee = coordinator.quote(gateway.model_id, InferenceMode.NONE)
    limits = {"max_per_call": max(COST, fee), "max_per_day": COST + fee}
    agent = AgentClient(gateway.url, _wallet(gateway, tmp_path / "l.json", **limits))
    token0 = gateway.token.balance_of(gateway.payer.address)
    running = RunningNode(config)
    try:
        result = agent.request_onchain(gateway.model_id, _sample(), "none", rpc_url=anvil.rpc_url)
    finally:
        running.stop()
    assert result.status == "fulfilled" and result.outputs is not None
    assert agent.wallet.spent_today() == fee
    assert gateway.token.balance_of(gateway.payer.address) == token0 - fee
    agent.infer(gateway.model_id, _sample())  # COST more: exactly the cap
    assert agent.wallet.spent_today() == COST + fee
    with pytest.raises(PolicyError, match="daily limit"):
        agent.infer(gateway.model_id, _sample())
    nonce = chain.w3.eth.get_transaction_count(gateway.payer.address)
    with pytest.raises(PolicyError, match=f"{fee} over the daily limit"):
        agent.request_onchain(gateway.model_id, _sample(), "none", rpc_url=anvil.rpc_url)
    assert chain.w3.eth.get_transaction_count(gateway.payer.address) == nonce  # nothing sent
    assert gateway.token.balance_of(gateway.payer.address) == token0 - fee - COST


def test_the_example_agent_runs_to_its_budget(
    gateway: Gateway, tmp_path: Path, anvil: DevnetInfo
) -> None:
    env = {
        **os.environ,
        "VERINFER_RPC_URL": anvil.rpc_url,  # for `receipt verify --rerun`
        "VERINFER_GATEWAY_URL": gateway.url,
        "VERINFER_AGENT_KEY": ANVIL_DEV_KEYS[PAYER],
        "AGENT_MODEL": str(gateway.model_id),
        "AGENT_BUDGET": str(2.5 * COST / 1e6),  # two calls fit, the third does not
        "AGENT_CALLS": "5",
        "AGENT_OUT": str(tmp_path),
    }
    payer0, payee0 = gateway.balances()
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent" / "agent.py")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("receipt verified") == 2
    assert "verinfer receipt verify: valid receipt" in run.stdout
    assert "stopping:" in run.stdout and "max_per_day" in run.stdout
    assert gateway.balances() == (payer0 - 2 * COST, payee0 + 2 * COST)
    saved = json.loads((tmp_path / "answer-1.json").read_text())
    assert saved["receipt"]["receipt"]["payer"] == dev_account(PAYER).address

    again = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "agent" / "agent.py")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{2 * COST} already spent" in again.stdout  # the ledger outlived the process
    assert "stopping:" in again.stdout and "0 calls paid" in again.stdout
    assert gateway.balances() == (payer0 - 2 * COST, payee0 + 2 * COST)
