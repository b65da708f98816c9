"""Receipts and idempotent retries of the x402 gateway, over real HTTP on loopback, on anvil.

Every paid answer carries an EIP-712 receipt signed by the gateway's node account; anyone can
check it in-process or with ``verinfer receipt verify`` (which, with ``--rerun``, re-executes
the input). A retry that names the same payment identifier (the SDK's ``payment-identifier``
extension) is answered from the first delivery and never charged again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from node_kit import DIGITS_SAMPLE, NODE_FEE, RunningNode, fund, register_digits
from test_gateway_pay import (
    COST,
    PAYEE,
    PAYER,
    Gateway,
    _client,
    _payment_required,
    _sample,
    gateway,
    serving,
)
from test_node_optimistic import setup
from x402 import x402Client
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
)
from x402.http import x402HTTPClient
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, InferenceMode
from verinfer.chain.token import Token
from verinfer.gateway.idempotency import REPLAYED_HEADER
from verinfer.gateway.receipts import (
    ReceiptError,
    SignedReceipt,
    digest,
    verify_receipt,
)

pytestmark = pytest.mark.integration
__all__ = ["gateway"]  # the fixture, imported for pytest

GATEWAY_SIGNER = dev_account(0).address  # gateway_from_chain signs with the chain's account


def _headers(gw: Gateway, body: dict[str, Any], payment_id: str | None) -> dict[str, str]:
    """A freshly signed payment (new EIP-3009 nonce) for ``body``, naming ``payment_id``."""
    http = x402HTTPClient(_client(gw))
    required = _payment_required(httpx.post(gw.infer_url(), json=body))
    if payment_id is not None:
        extensions = dict(required.extensions or {})
        assert PAYMENT_IDENTIFIER in extensions  # the gateway declares the extension
        append_payment_identifier_to_extensions(extensions, payment_id)
        required = PaymentRequired.model_validate(
            {**required.model_dump(by_alias=True), "extensions": extensions}
        )
    payload = asyncio.run(http.create_payment_payload(required))
    return http.encode_payment_signature_header(payload)


def _paid(gw: Gateway, body: dict[str, Any], payment_id: str | None = None) -> httpx.Response:
    return httpx.post(gw.infer_url(), json=body, headers=_headers(gw, body, payment_id), timeout=60)


def test_answer_carries_a_receipt_anyone_can_verify(gateway: Gateway) -> None:
    body = {"input": _sample()}
    headers = _headers(gateway, body, None)
    nonce = json.loads(base64.b64decode(headers["PAYMENT-SIGNATURE"]))["payload"]["authorization"][
        "nonce"
    ]
    response = httpx.post(gateway.infer_url(), json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    signed = SignedReceipt.from_json(answer["receipt"])
    receipt = verify_receipt(
        signed,
        node=GATEWAY_SIGNER,
        input=bytes.fromhex(answer["input"][2:]),
        output=bytes.fromhex(answer["output"][2:]),
    )
    assert receipt.model_id == gateway.model_id
    assert receipt.mode == int(InferenceMode.NONE) and receipt.request_id == 0
    assert receipt.price == COST
    assert receipt.payer.lower() == gateway.payer.address.lower()
    assert receipt.payment.lower() == nonce.lower()
    assert receipt.output_hash == digest(bytes.fromhex(answer["output"][2:]))
    terms = httpx.get(f"{gateway.url}/v1/models/{gateway.model_id}").json()
    assert terms["node"] == GATEWAY_SIGNER

    with pytest.raises(ReceiptError, match="not by the node"):
        verify_receipt(signed, node=gateway.payee)
    with pytest.raises(ReceiptError, match="output hash differs"):
        verify_receipt(signed, output=b"\x00" + bytes.fromhex(answer["output"][2:]))
    forged = SignedReceipt.from_json(
        {**signed.to_json(), "receipt": {**signed.to_json()["receipt"], "price": 1}}
    )
    with pytest.raises(ReceiptError, match="signature is by"):
        verify_receipt(forged)


def _verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verinfer", "receipt", "verify", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_receipt_verify_cli_checks_signature_bytes_and_rerun(
    gateway: Gateway, tmp_path: Path, anvil: Any
) -> None:
    response = _paid(gateway, {"input": _sample()})
    assert response.status_code == 200, response.text
    saved = tmp_path / "answer.json"
    saved.write_text(response.text)
    ok = _verify_cli(str(saved), "--node", GATEWAY_SIGNER, "--rerun", "--rpc-url", anvil.rpc_url)
    assert ok.returncode == 0, ok.stderr
    assert "checked signature, input, output, rerun" in ok.stdout

    answer = response.json()
    wrong_output = answer["output"][:-2] + ("00" if answer["output"][-2:] != "00" else "01")
    (tmp_path / "bad.json").write_text(json.dumps({**answer, "output": wrong_output}))
    bad = _verify_cli(str(tmp_path / "bad.json"))
    assert bad.returncode == 1 and "output hash differs" in bad.stderr

    other = _verify_cli(str(saved), "--node", gateway.payee)
    assert other.returncode == 1 and "not by the node" in other.stderr
    (tmp_path / "junk.json").write_text("{not json")
    junk = _verify_cli(str(tmp_path / "junk.json"))
    assert junk.returncode == 1 and "is not JSON" in junk.stderr


def test_retry_with_the_same_payment_id_is_answered_once_and_charged_once(
    gateway: Gateway,
) -> None:
    payer0, payee0 = gateway.balances()
    body = {"input": _sample()}
    first = _paid(gateway, body, "pay_retry_0123456789abcdef")
    assert first.status_code == 200, first.text
    # The agent timed out and retries: a new signature (new nonce), the same payment id.
    again = _paid(gateway, body, "pay_retry_0123456789abcdef")
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.json() == first.json()
    assert gateway.balances() == (payer0 - COST, payee0 + COST)

    other_body = {"input": [[0.25] * 64]}
    conflict = _paid(gateway, other_body, "pay_retry_0123456789abcdef")
    assert conflict.status_code == 409
    assert "another request" in conflict.json()["error"]
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_copies_in_flight_with_one_payment_id_settle_once(gateway: Gateway) -> None:
    payer0, payee0 = gateway.balances()
    body = {"input": _sample()}
    signed = [_headers(gateway, body, "pay_twins_0123456789abcdef") for _ in range(3)]

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            sends = [client.post(gateway.infer_url(), json=body, headers=h) for h in signed]
            return list(await asyncio.gather(*sends))

    responses = asyncio.run(all_at_once())
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get(REPLAYED_HEADER) == "true" for r in responses) == 2
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


def test_a_failed_call_can_be_retried_with_its_payment_id(gateway: Gateway) -> None:
    before = gateway.balances()
    bad = _paid(gateway, {"input": [[0.5] * 63]}, "pay_fails_0123456789abcdef")
    assert bad.status_code == 422
    assert gateway.balances() == before
    good = _paid(gateway, {"input": [[0.5] * 63]}, "pay_fails_0123456789abcdef")
    assert good.status_code == 422  # the same bad input fails again: run anew, not replayed
    assert REPLAYED_HEADER not in good.headers
    assert gateway.balances() == before


def test_a_stolen_payment_id_without_the_payers_key_gets_nothing(gateway: Gateway) -> None:
    body = {"input": _sample()}
    assert _paid(gateway, body, "pay_stolen_0123456789abcdef").status_code == 200
    headers = _headers(gateway, body, "pay_stolen_0123456789abcdef")
    payload = json.loads(base64.b64decode(headers["PAYMENT-SIGNATURE"]))
    payload["payload"]["signature"] = "0x" + "11" * 65  # not the payer's signature
    forged = base64.b64encode(json.dumps(payload).encode()).decode()
    response = httpx.post(
        gateway.infer_url(), json=body, headers={"PAYMENT-SIGNATURE": forged}, timeout=60
    )
    assert response.status_code == 409
    assert "another payer" in response.json()["error"]


def test_modes_without_a_serving_node_are_refused_before_payment(gateway: Gateway) -> None:
    before = gateway.balances()
    refusals = [
        ("zk", "not sold in mode zk"),
        ("optimistic", "not sold in mode optimistic"),
        ("fast", "unknown inference mode"),
    ]
    for mode, reason in refusals:
        response = httpx.post(
            gateway.infer_url(), params={"mode": mode}, json={"input": _sample()}, timeout=60
        )
        assert response.status_code == 400, response.text
        assert reason in response.json()["error"]
    terms = httpx.get(f"{gateway.url}/v1/models/{gateway.model_id}").json()
    assert terms["modes"] == ["none"]  # consensus is registered, but no node serves it
    assert terms["prices"] == {"none": str(COST)}
    assert gateway.balances() == before


def test_optimistic_call_is_relayed_on_chain_and_answers_with_the_nodes_claim(
    gateway: Gateway, chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    """The gateway (account 0) pays the coordinator's quote for an on-chain optimistic request;
    a staked node claims it; the answer names the claim, provisional until its window ends."""
    model_id, node, config, client = setup(chain, book, anvil, tmp_path)
    program = client.program(model_id)
    coordinator = CoordinatorClient(chain, book.address("InferenceCoordinator"))
    quote = coordinator.quote(model_id, InferenceMode.OPTIMISTIC)
    price = quote + NODE_FEE
    terms = httpx.get(f"{gateway.url}/v1/models/{model_id}").json()
    assert terms["prices"] == {"none": str(COST), "optimistic": str(price)}

    payer0, payee0 = gateway.balances()
    relayer0 = gateway.token.balance_of(chain.address)
    running = RunningNode(config)
    try:
        url = f"{gateway.url}/v1/models/{model_id}/infer?mode=optimistic"
        response = asyncio.run(_pay_capped(gateway, url, {"input": _sample()}, price))
    finally:
        running.stop()
    assert response.status_code == 200, response.text
    answer = response.json()
    claim = answer["anchor"]
    assert claim["claimer"].lower() == node.lower() and claim["claim_id"] > 0
    assert claim["status"] == "claimed"
    expected = program.run(np.load(DIGITS_SAMPLE)[:1])
    assert answer["outputs"] == [o.reshape(-1).tolist() for o in expected.outputs]
    assert claim["trace_root"] == expected.trace_root
    assert claim["output_hash"] == digest(bytes.fromhex(answer["output"][2:]))
    receipt = verify_receipt(SignedReceipt.from_json(answer["receipt"]), node=GATEWAY_SIGNER)
    assert receipt.mode == int(InferenceMode.OPTIMISTIC)
    assert receipt.request_id == claim["request_id"] and receipt.price == price
    assert coordinator.get_request(claim["request_id"]).input_hash == receipt.input_hash
    assert gateway.balances() == (payer0 - price, payee0 + price)
    assert gateway.token.balance_of(chain.address) == relayer0 - quote  # paid the coordinator


async def _pay_capped(gw: Gateway, url: str, body: dict[str, Any], cap: int) -> httpx.Response:
    client = x402Client()
    client.set_spend_controls(
        {
            "allowed_assets": [
                {"network": gw.network, "asset": gw.token.address,
                 "max_amount_per_payment": str(cap)}
            ]
        }
    )  # fmt: skip
    register_exact_evm_client(client, gw.payer)
    async with x402HttpxClient(client, timeout=120) as http:
        return await http.post(url, json=body)


def test_a_retry_after_a_gateway_restart_is_still_answered_once(
    anvil: DevnetInfo, chain: Chain, book: AddressBook
) -> None:
    """The delivered answer is kept on disk: a new gateway process on the same state answers
    the retry (a fresh signature, the same payment id) without charging again."""
    model = register_digits(chain, book)
    payer = dev_account(PAYER)
    fund(chain, book, payer.address, tokens=1)
    token = Token(chain, book.address("PaymentToken"))
    body = {"input": _sample()}
    answers = []
    balances = []
    for _ in range(2):  # two gateway instances, one after the other, on one $VERINFER_HOME
        with serving(anvil, chain, book) as (url, network):
            payee = str(dev_account(PAYEE).address)
            gw = Gateway(url, model.model_id, model.program, token, payer, payee, network)
            balances.append(gw.balances())
            answers.append(_paid(gw, body, "pay_restart_0123456789abcdef"))
    first, again = answers
    assert first.status_code == again.status_code == 200
    assert again.headers[REPLAYED_HEADER] == "true" and again.json() == first.json()
    payer0, payee0 = balances[0]
    assert gw.balances() == (payer0 - COST, payee0 + COST)
