"""Pay-per-call inference over x402 on anvil: the SDK's own client pays the gateway over real
HTTP on loopback, and a facilitator built on the SDK settles EIP-3009 transfers in TestUSD.

Every case checks balances to the unit: a delivered result is charged exactly once, and a
refused payment or a failed computation is not charged at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from node_kit import DIGITS_SAMPLE, NODE_FEE, PRICE, fund, register_digits
from x402 import x402Client
from x402.http import x402HTTPClient
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.constants import ERR_NONCE_ALREADY_USED
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.token import Token
from verinfer.gateway import (
    GatewayConfig,
    ServerThread,
    create_facilitator_app,
    devnet_facilitator,
    gateway_from_chain,
)
from verinfer.models.registry import RegistryClient
from verinfer.runtime import Program

pytestmark = pytest.mark.integration

COST = PRICE + NODE_FEE
PAYER, PAYEE, FACILITATOR = 3, 4, 2  # anvil dev accounts


@dataclass
class Gateway:
    url: str
    model_id: int
    program: Program
    token: Token
    payer: LocalAccount
    payee: str
    network: str

    def balances(self) -> tuple[int, int]:
        return self.token.balance_of(self.payer.address), self.token.balance_of(self.payee)

    def infer_url(self, model_id: int | None = None) -> str:
        return f"{self.url}/v1/models/{model_id or self.model_id}/infer"


@contextmanager
def serving(
    anvil: DevnetInfo, chain: Chain, book: AddressBook, **gateway: Any
) -> Iterator[tuple[str, str]]:
    """A devnet facilitator (account 2) and a gateway (``gateway_from_chain`` with
    ``gateway``'s options, paid to account 4) on loopback: yields (gateway URL, network)."""
    network = f"eip155:{chain.chain_id}"
    facilitator = ServerThread(
        create_facilitator_app(
            devnet_facilitator(anvil.rpc_url, ANVIL_DEV_KEYS[FACILITATOR], network)
        )
    )
    try:
        payee = str(dev_account(PAYEE).address)
        config = GatewayConfig(network=network, pay_to=payee, facilitator_url=facilitator.url)
        server = ServerThread(gateway_from_chain(chain, book, config, node_fee=NODE_FEE, **gateway))
        try:
            yield server.url, network
        finally:
            server.stop()
    finally:
        facilitator.stop()


@pytest.fixture
def gateway(anvil: DevnetInfo, chain: Chain, book: AddressBook) -> Iterator[Gateway]:
    model = register_digits(chain, book)
    payer, payee = dev_account(PAYER), str(dev_account(PAYEE).address)
    fund(chain, book, payer.address, tokens=1)
    token = Token(chain, book.address("PaymentToken"))
    with serving(anvil, chain, book) as (url, network):
        yield Gateway(url, model.model_id, model.program, token, payer, payee, network)


def _client(gw: Gateway) -> x402Client:
    """The SDK's client, opted in to TestUSD (it allows only known USDCs by default), capped
    at one call's price."""
    client = x402Client()
    client.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": gw.network,
                    "asset": gw.token.address,
                    "max_amount_per_payment": str(COST),
                }
            ]
        }
    )
    return register_exact_evm_client(client, gw.payer)


def _sample(rows: int = 1) -> list[Any]:
    return np.load(DIGITS_SAMPLE)[:rows].tolist()  # type: ignore[no-any-return]


def _payment_required(response: httpx.Response) -> PaymentRequired:
    required = x402HTTPClient(x402Client()).get_payment_required_response(
        response.headers.get, response.json() if response.content else None
    )
    assert isinstance(required, PaymentRequired)
    return required


async def _pay(gw: Gateway, body: dict[str, Any]) -> httpx.Response:
    async with x402HttpxClient(_client(gw), timeout=60) as client:
        return await client.post(gw.infer_url(), json=body)


def test_sdk_client_pays_and_gets_the_runtime_output(gateway: Gateway) -> None:
    payer0, payee0 = gateway.balances()
    response = asyncio.run(_pay(gateway, {"input": _sample()}))
    assert response.status_code == 200, response.text
    assert response.headers.get("PAYMENT-RESPONSE")
    result = response.json()
    expected = gateway.program.run(np.load(DIGITS_SAMPLE)[:1])
    assert result["outputs"] == [o.reshape(-1).tolist() for o in expected.outputs]
    assert result["trace_root"] == expected.trace_root
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_missing_payment_is_402_with_the_terms_and_no_charge(gateway: Gateway) -> None:
    before = gateway.balances()
    response = httpx.post(gateway.infer_url(), json={"input": _sample()})
    assert response.status_code == 402
    required = _payment_required(response)
    assert required.error == "Payment required"
    assert response.json()["error"] == "Payment required"
    assert response.json()["accepts"][0]["amount"] == str(COST)
    (accept,) = required.accepts
    assert accept.amount == str(COST)
    assert accept.asset.lower() == gateway.token.address.lower()
    assert accept.pay_to.lower() == gateway.payee.lower()
    assert accept.extra is not None and accept.extra["name"] == "Test USD"
    assert gateway.balances() == before


def test_replayed_payment_is_refused_and_charged_once(gateway: Gateway) -> None:
    payer0, payee0 = gateway.balances()
    http = x402HTTPClient(_client(gateway))
    body = {"input": _sample()}
    required = _payment_required(httpx.post(gateway.infer_url(), json=body))
    payload = asyncio.run(http.create_payment_payload(required))
    headers = http.encode_payment_signature_header(payload)

    first = httpx.post(gateway.infer_url(), json=body, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    replay = httpx.post(gateway.infer_url(), json=body, headers=headers, timeout=60)
    assert replay.status_code == 402
    reason = _payment_required(replay).error
    assert reason == ERR_NONCE_ALREADY_USED
    assert replay.json()["error"] == ERR_NONCE_ALREADY_USED  # the reason is in the body too
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_failed_computation_is_not_charged(gateway: Gateway) -> None:
    before = gateway.balances()
    bad = {"input": [[0.5] * 63]}  # the model takes 64 values
    response = asyncio.run(_pay(gateway, bad))
    assert response.status_code == 422, response.text
    assert "64" in response.json()["detail"]
    assert gateway.balances() == before


def test_unknown_model_is_404_before_any_payment(gateway: Gateway) -> None:
    before = gateway.balances()
    response = asyncio.run(
        _pay_url(gateway, gateway.infer_url(gateway.model_id + 99), {"input": _sample()})
    )
    assert response.status_code == 404
    assert "unknown model" in response.json()["error"]
    assert gateway.balances() == before


async def _pay_url(gw: Gateway, url: str, body: dict[str, Any]) -> httpx.Response:
    async with x402HttpxClient(_client(gw), timeout=60) as client:
        return await client.post(url, json=body)


def test_one_payment_sent_twice_at_once_is_charged_once(gateway: Gateway) -> None:
    """Both copies can pass verification before either settles; only one settlement can
    land on-chain, and the copy whose settlement fails gets a 402, not the result."""
    payer0, payee0 = gateway.balances()
    http = x402HTTPClient(_client(gateway))
    body = {"input": _sample()}
    required = _payment_required(httpx.post(gateway.infer_url(), json=body))
    headers = http.encode_payment_signature_header(
        asyncio.run(http.create_payment_payload(required))
    )

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            send = [client.post(gateway.infer_url(), json=body, headers=headers) for _ in range(2)]
            return list(await asyncio.gather(*send))

    statuses = sorted(r.status_code for r in asyncio.run(both()))
    assert statuses == [200, 402]
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_model_terms_are_free_to_read(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/models/{gateway.model_id}")
    assert response.status_code == 200
    terms = response.json()
    assert terms["price"]["amount"] == str(COST)
    assert terms["price"]["network"] == gateway.network
    assert terms["program_hash"] == gateway.program.program_hash


def test_model_list_leaves_deprecated_models_out_and_refuses_them(
    gateway: Gateway, chain: Chain, book: AddressBook
) -> None:
    retired = register_digits(chain, book).model_id
    RegistryClient(chain, book.address("ModelRegistry")).set_deprecated(retired)
    listed = httpx.get(f"{gateway.url}/v1/models").json()["models"]
    assert [m["model_id"] for m in listed] == [gateway.model_id]
    assert listed[0]["price"]["amount"] == str(COST)
    before = gateway.balances()
    response = asyncio.run(_pay_to(gateway, retired, {"input": _sample()}))
    assert response.status_code == 410 and "deprecated" in response.json()["error"]
    assert gateway.balances() == before
    bad = httpx.get(f"{gateway.url}/v1/models", params={"limit": 0})
    assert bad.status_code == 400


async def _pay_to(gw: Gateway, model_id: int, body: dict[str, Any]) -> httpx.Response:
    async with x402HttpxClient(_client(gw), timeout=60) as client:
        return await client.post(gw.infer_url(model_id), json=body)
