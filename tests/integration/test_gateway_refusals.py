"""Every bad payment and bad request at the x402 gateway, over real HTTP on loopback, on anvil.

Each case checks the HTTP status, the reason in the JSON body (for payment refusals the x402
SDK's own reason codes, which the devnet facilitator can give because verinfer installs a
Multicall3 on the devnet), and that neither the payer's nor the payee's balance moved, to
the unit.

Bad payments are made from a real one: the SDK's client signs a valid authorization, then one
field is changed, and re-signed with the payer's key where the signature must stay valid (so
the refusal is about that field, not about the signature).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from node_kit import TOKENS, fund
from test_gateway_pay import COST, Gateway, _client, _payment_required, _sample, gateway
from web3 import Web3
from x402.http import x402HTTPClient
from x402.mechanisms.evm import ExactEIP3009Authorization, FacilitatorWeb3Signer
from x402.mechanisms.evm.constants import (
    ERR_AUTHORIZATION_VALUE_MISMATCH,
    ERR_INSUFFICIENT_BALANCE,
    ERR_INVALID_SIGNATURE,
    ERR_RECIPIENT_MISMATCH,
    ERR_VALID_AFTER_FUTURE,
    ERR_VALID_BEFORE_EXPIRED,
)
from x402.mechanisms.evm.constants import MULTICALL3_ADDRESS as SDK_MULTICALL3_ADDRESS
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.multicall import MulticallCall, multicall

from verinfer.chain.accounts import ANVIL_DEV_KEYS
from verinfer.chain.artifacts import load_artifact
from verinfer.chain.client import Chain
from verinfer.chain.deploy import MULTICALL3_ADDRESS, install_devnet_multicall
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.home import store_dir

pytestmark = pytest.mark.integration
__all__ = ["gateway"]

PAYER_KEY = ANVIL_DEV_KEYS[3]  # test_gateway_pay.PAYER
STRANGER_KEY = "0x" + "42" * 32  # an account that never holds TestUSD
ELSEWHERE = str(Account.from_key("0x" + "43" * 32).address)
Payload = dict[str, Any]


def _signed_payload(gw: Gateway) -> Payload:
    """A valid payment payload for one call, as the SDK's client makes it (JSON form)."""
    http = x402HTTPClient(_client(gw))
    required = _payment_required(httpx.post(gw.infer_url(), json={"input": _sample()}))
    payload = asyncio.run(http.create_payment_payload(required))
    header = http.encode_payment_signature_header(payload)["PAYMENT-SIGNATURE"]
    return json.loads(base64.b64decode(header))  # type: ignore[no-any-return]


def _resign(gw: Gateway, payload: Payload, key: str = PAYER_KEY) -> Payload:
    """Sign the payload's (changed) authorization again, as ``key``, over the token's domain."""
    auth = payload["payload"]["authorization"]
    digest = hash_eip3009_authorization(
        ExactEIP3009Authorization(
            from_address=auth["from"], to=auth["to"], value=auth["value"],
            valid_after=auth["validAfter"], valid_before=auth["validBefore"], nonce=auth["nonce"],
        ),
        int(gw.network.split(":")[1]), gw.token.address, "Test USD", "1",
    )  # fmt: skip
    payload["payload"]["signature"] = (
        "0x" + bytes(Account.unsafe_sign_hash(digest, key).signature).hex()
    )
    return payload


def _encode(payload: Payload) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _send(gw: Gateway, header: str, body: Any = None) -> httpx.Response:
    return httpx.post(
        gw.infer_url(), json=body if body is not None else {"input": _sample()},
        headers={"PAYMENT-SIGNATURE": header}, timeout=60,
    )  # fmt: skip


@pytest.fixture
def unchanged(gateway: Gateway) -> Iterator[Gateway]:
    """The gateway; after the test, asserts that no money moved."""
    before = gateway.balances()
    yield gateway
    assert gateway.balances() == before


def test_the_devnet_has_our_multicall3_where_the_sdk_looks(chain: Chain) -> None:
    assert MULTICALL3_ADDRESS == SDK_MULTICALL3_ADDRESS
    assert _multicall_code(chain) == load_artifact("DevnetMulticall")["deployedBytecode"]


def test_multicall3_install_is_idempotent_and_keeps_existing_code(chain: Chain) -> None:
    install_devnet_multicall(chain)  # already there: nothing changes, no error
    assert chain.has_code(MULTICALL3_ADDRESS)
    other = "0x6001600055"  # some other contract already at the address (e.g. a fork's)
    chain.w3.provider.make_request("anvil_setCode", [MULTICALL3_ADDRESS, other])  # type: ignore[arg-type]
    install_devnet_multicall(chain)
    assert _multicall_code(chain) == other


def _multicall_code(chain: Chain) -> str:
    code = chain.w3.eth.get_code(Web3.to_checksum_address(MULTICALL3_ADDRESS))
    return "0x" + code.hex().removeprefix("0x")


def test_the_sdk_batches_reads_through_it(
    anvil: DevnetInfo, chain: Chain, book: AddressBook
) -> None:
    """The SDK's own multicall helper, as its facilitator calls it: each call's result, and a
    failed call reported as failed (with its revert) without failing the others."""
    signer = FacilitatorWeb3Signer(private_key=ANVIL_DEV_KEYS[2], rpc_url=anvil.rpc_url)
    token = book.address("PaymentToken")
    holder = ELSEWHERE
    fund(chain, book, holder, tokens=3)
    balance_of = [
        {"type": "function", "name": "balanceOf", "stateMutability": "view",
         "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]}
    ]  # fmt: skip
    name = [
        {"type": "function", "name": "name", "stateMutability": "view", "inputs": [],
         "outputs": [{"name": "", "type": "string"}]}
    ]  # fmt: skip
    results = multicall(
        signer,
        [
            MulticallCall(token, balance_of, "balanceOf", (holder,)),
            MulticallCall(token, name, "name"),
            MulticallCall(token, call_data=bytes.fromhex("deadbeef")),  # no such function
        ],
    )
    assert [r.success for r in results] == [True, True, False]
    assert results[0].result == 3 * TOKENS
    assert results[1].result == "Test USD"
    assert str(results[2].error) == "execution reverted"


MALFORMED_PREFIX = "malformed payment header: not base64 JSON of an x402 payment payload"
MALFORMED = {
    "%%% not base64 %%%": f"{MALFORMED_PREFIX} (Invalid base64-encoded string: number of data "
    "characters (9) cannot be 1 more than a multiple of 4)",
    base64.b64encode(b"not json").decode(): f"{MALFORMED_PREFIX} (Expecting value: line 1 "
    "column 1 (char 0))",
    _encode({"wrong": "shape"}): f"{MALFORMED_PREFIX} (2 validation errors for PaymentPayload)",
}


@pytest.mark.parametrize(
    "header",
    ["%%% not base64 %%%", base64.b64encode(b"not json").decode(), _encode({"wrong": "shape"})],
    ids=["not-base64", "not-json", "wrong-shape"],
)
def test_malformed_payment_header_is_400(unchanged: Gateway, header: str) -> None:
    response = _send(unchanged, header)
    assert response.status_code == 400
    assert response.json() == {"error": MALFORMED[header]}
    assert "PAYMENT-REQUIRED" not in response.headers


def _auth(field: str, value: Callable[[], str]) -> Callable[[Gateway, Payload], Payload]:
    """Change one authorization field and re-sign with the payer's key."""

    def change(gw: Gateway, payload: Payload) -> Payload:
        payload["payload"]["authorization"][field] = value()
        return _resign(gw, payload)

    return change


def _accepted(field: str, value: str) -> Callable[[Gateway, Payload], Payload]:
    """Claim other terms than the price (the signed authorization is untouched)."""

    def change(gw: Gateway, payload: Payload) -> Payload:
        payload["accepted"][field] = value
        return payload

    return change


def _tamper(field: str, value: str) -> Callable[[Gateway, Payload], Payload]:
    """Change one authorization field after signing (the signature no longer matches)."""

    def change(gw: Gateway, payload: Payload) -> Payload:
        payload["payload"]["authorization"][field] = value
        return payload

    return change


def _other_signer(gw: Gateway, payload: Payload) -> Payload:
    return _resign(gw, payload, STRANGER_KEY)


def _no_funds(gw: Gateway, payload: Payload) -> Payload:
    """A well-signed authorization from an account that holds no TestUSD."""
    payload["payload"]["authorization"]["from"] = str(Account.from_key(STRANGER_KEY).address)
    return _resign(gw, payload, STRANGER_KEY)


def _in(seconds: int) -> Callable[[], str]:
    return lambda: str(int(time.time()) + seconds)


def _less() -> str:
    return str(COST - 1)


MISMATCH = "payment_{0}_mismatch: {0}: offered {1}, required {2}"
BAD_PAYMENTS: dict[str, tuple[Callable[[Gateway, Payload], Payload], str]] = {
    "expired": (_auth("validBefore", _in(-60)), ERR_VALID_BEFORE_EXPIRED),
    "not-yet-valid": (_auth("validAfter", _in(3600)), ERR_VALID_AFTER_FUTURE),
    "authorizes-too-little": (_auth("value", _less), ERR_AUTHORIZATION_VALUE_MISMATCH),
    "pays-someone-else": (_auth("to", lambda: ELSEWHERE), ERR_RECIPIENT_MISMATCH),
    "amount-below-price": (
        _accepted("amount", _less()), MISMATCH.format("amount", _less(), COST)
    ),
    "other-asset": (_accepted("asset", ELSEWHERE), MISMATCH.format("asset", ELSEWHERE, "{asset}")),
    "other-network": (
        _accepted("network", "eip155:8453"),
        MISMATCH.format("network", "eip155:8453", "eip155:31337"),
    ),
    "other-payee": (_accepted("payTo", ELSEWHERE), MISMATCH.format("payee", ELSEWHERE, "{payee}")),
    "nonce-changed-after-signing": (_tamper("nonce", "0x" + "11" * 32), ERR_INVALID_SIGNATURE),
    "value-changed-after-signing": (
        _tamper("value", str(COST * 2)), ERR_AUTHORIZATION_VALUE_MISMATCH
    ),
    "signed-by-another-key": (_other_signer, ERR_INVALID_SIGNATURE),
    "insufficient-balance": (_no_funds, ERR_INSUFFICIENT_BALANCE),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_PAYMENTS))
def test_bad_payment_is_402_with_its_reason(unchanged: Gateway, case: str) -> None:
    change, reason = BAD_PAYMENTS[case]
    reason = reason.format(asset=unchanged.token.address, payee=unchanged.payee)
    response = _send(unchanged, _encode(change(unchanged, _signed_payload(unchanged))))
    assert response.status_code == 402, response.text
    assert response.json()["error"] == reason
    assert response.json()["accepts"][0]["amount"] == str(COST)  # the terms to pay on
    assert response.headers.get("PAYMENT-REQUIRED")  # and the SDK's header, for x402 clients


def test_a_good_payment_still_pays_after_the_bad_ones(gateway: Gateway) -> None:
    """The control case: the untouched payload the bad ones are made from is accepted."""
    payer0, payee0 = gateway.balances()
    response = _send(gateway, _encode(_signed_payload(gateway)))
    assert response.status_code == 200, response.text
    assert gateway.balances() == (payer0 - COST, payee0 + COST)


TOO_BIG = {"error": "request body over 1048576 bytes", "max_bytes": 1048576}


def test_oversized_body_is_413_before_any_payment(unchanged: Gateway) -> None:
    """Over the cap, with a valid payment attached: refused before the payment is verified
    (no terms asked, nothing settled), whether the length is declared or not."""
    paid = {"PAYMENT-SIGNATURE": _encode(_signed_payload(unchanged))}
    for headers in ({}, paid):
        big = {"input": [[0.5] * 64] * 20_000}  # ~1.3 MB of JSON
        response = httpx.post(unchanged.infer_url(), json=big, headers=headers, timeout=60)
        assert response.status_code == 413
        assert response.json() == TOO_BIG
        assert "PAYMENT-REQUIRED" not in response.headers  # refused before payment was asked

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"input": ['
            for _ in range(20_000):
                yield b"[" + b"0.5," * 63 + b"0.5],"
            yield b"[0.5]]}"

        streamed = httpx.post(
            unchanged.infer_url(), content=chunks(), timeout=60,
            headers={"content-type": "application/json", **headers},
        )  # fmt: skip
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        assert streamed.json() == TOO_BIG
        assert "PAYMENT-REQUIRED" not in streamed.headers


def test_malformed_json_body_with_a_payment_is_422_and_not_charged(unchanged: Gateway) -> None:
    header = _encode(_signed_payload(unchanged))
    response = httpx.post(
        unchanged.infer_url(), content=b'{"input": [[0.5, ', timeout=60,
        headers={"PAYMENT-SIGNATURE": header, "content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["type"], error["msg"]) == ("json_invalid", "JSON decode error")
    wrong_shape = _send(unchanged, _encode(_signed_payload(unchanged)), {"inputs": [1]})
    assert wrong_shape.status_code == 422
    assert [(e["type"], e["loc"]) for e in wrong_shape.json()["detail"]] == [
        ("missing", ["body", "input"])
    ]


def test_computation_failure_is_5xx_and_not_charged(unchanged: Gateway) -> None:
    """The model's program is gone from the gateway's store: a real fault, after payment."""
    shutil.rmtree(store_dir())
    response = _send(unchanged, _encode(_signed_payload(unchanged)))
    assert response.status_code == 503, response.text
    assert response.json()["detail"].startswith("the model's program is unavailable here: ")
    assert "PAYMENT-RESPONSE" not in response.headers  # nothing was settled
